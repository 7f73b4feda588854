"""Shape scenes: grounding boxes on the drawn object, CLS-RL option lists, multi-choice with QA inversion."""

import collections
import string

import numpy as np
import pytest

from rl_reason.tasks import classification, grounding, multichoice, shapes


def _color_mask(image, color):
  return (image == np.asarray(shapes.COLORS[color], np.uint8)).all(-1)


def _check_object_drawn_in_box(image, kind, color, box):
  """The colour's pixels inside the box are exactly the shape; the 1-pixel ring around it is background."""
  x1, y1, x2, y2 = box
  inside = _color_mask(image[y1:y2, x1:x2], color)
  np.testing.assert_array_equal(inside, shapes.shape_mask(kind, y2 - y1, x2 - x1))
  assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()  # tight
  ring = np.zeros(image.shape[:2], bool)
  ring[max(y1 - 1, 0):y2 + 1, max(x1 - 1, 0):x2 + 1] = True
  ring[y1:y2, x1:x2] = False
  background = image[0, 0]
  assert (image[ring] == background).all()


def test_shape_masks_touch_every_side_of_their_box():
  for kind in shapes.SHAPES:
    for h in range(1, 25):
      for w in range(1, 25):
        mask = shapes.shape_mask(kind, h, w)
        assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any(), (kind, h, w)
  with pytest.raises(ValueError, match='unknown'):
    shapes.shape_mask('star', 4, 4)


def _relation_holds(relation, a, b):
  return {'to the left of': a[2] <= b[0], 'to the right of': a[0] >= b[2],
          'above': a[3] <= b[1], 'below': a[1] >= b[3]}[relation]


@pytest.mark.parametrize('answer', ['box', 'point'])
def test_grounding_box_and_point_lie_on_the_referred_object(answer):
  task = grounding.GroundingTask(grounding.GroundingConfig(answer=answer))
  kinds = collections.Counter()
  for seed in range(40):
    example = task.example(seed)
    meta, image = example['meta'], example['images'][0]
    objects = meta['objects']
    assert len({(o['shape'], o['color']) for o in objects}) == len(objects)
    for o in objects:
      _check_object_drawn_in_box(image, o['shape'], o['color'], o['box'])
    target = objects[meta['target']]
    assert meta['gt_box'] == target['box']
    x, y = meta['point']
    assert tuple(image[y, x]) == shapes.COLORS[target['color']]  # the point is on the object
    x1, y1, x2, y2 = meta['gt_box']
    assert x1 <= x < x2 and y1 <= y < y2
    expression = meta['expression']
    if meta['expression_type'] == 'attribute':
      assert [o for o in objects if f"the {o['color']} {o['shape']}" == expression] == [target]
    else:
      relation = next(r for r in grounding.RELATIONS if f' {r} the ' in expression)
      anchor_name = expression.split(f' {relation} the ')[1]
      (anchor,) = [o for o in objects if f"{o['color']} {o['shape']}" == anchor_name]
      kind = expression[len('the '):].split(f' {relation}')[0]
      matches = [o for o in objects if o is not anchor and o['shape'] == kind
                 and _relation_holds(relation, o['box'], anchor['box'])]
      assert matches == [target]
    assert expression in example['prompt'] and 'pixels wide' not in example['prompt']
    assert meta['answer'] == (f'({x1},{y1}),({x2},{y2})' if answer == 'box' else f'({x},{y})')
    assert meta['image_size'] == [image.shape[1], image.shape[0]]
    kinds[meta['expression_type']] += 1
  assert set(kinds) == {'attribute', 'relation'}


def test_grounding_can_state_the_image_size():
  prompt = grounding.GroundingTask(grounding.GroundingConfig(image_size=(40, 56), tell_size=True)).example(0)['prompt']
  assert 'The image is 56 pixels wide and 40 pixels high.' in prompt


def test_grounding_relation_expressions_prefer_ambiguous_shapes():
  task = grounding.GroundingTask(grounding.GroundingConfig(expression_types=('relation',), shapes=('circle', 'square'),
                                                           num_objects=(3, 4)))
  ambiguous = 0
  for seed in range(30):
    meta = task.example(seed)['meta']
    kind = meta['objects'][meta['target']]['shape']
    ambiguous += sum(o['shape'] == kind for o in meta['objects']) > 1
  assert ambiguous == 30  # with 3+ objects of 2 shapes a shape always repeats


@pytest.mark.parametrize('count, expected', [(5, 5), (40, 40), (74, 74), (75, 30), (100, 40), (300, 100)])
def test_cls_rl_option_list_rule(count, expected):
  names = [f'class{i}' for i in range(count)]
  positions = set()
  for seed in range(20):
    label = names[seed * 7 % count]
    options = classification.option_list(names, label, np.random.default_rng(seed))
    assert len(options) == expected == classification.num_options(count)
    assert len(set(options)) == expected and set(options) <= set(names) and options.count(label) == 1
    positions.add(options.index(label))
  assert len(positions) > 3  # shuffled


@pytest.mark.parametrize('classes', ['shape', 'color', 'shape_color'])
def test_classification_image_shows_the_labelled_class(classes):
  task = classification.ClassificationTask(classification.ClassificationConfig(classes=classes))
  labels = set()
  for seed in range(30):
    example = task.example(seed)
    meta, image = example['meta'], example['images'][0]
    name = meta['answer']
    assert name == task.class_names[meta['label']]
    drawn = [(k, c) for k in shapes.SHAPES for c in shapes.COLORS if _color_mask(image, c).any()]
    assert len({c for _, c in drawn}) == 1
    color = drawn[0][1]
    kind = {'shape': name, 'color': None, 'shape_color': name.split(' ')[-1]}[classes]
    if classes == 'color':
      assert color == name
    if classes == 'shape_color':
      assert color == name.split(' ')[0]
    if kind is not None:
      _check_object_drawn_in_box(image, kind, color, meta['box'])
    assert example['prompt'] == classification.render_prompt(
        classification.DEFAULT_QUESTIONS[classes], meta['options'], think=True)
    labels.add(meta['label'])
  assert len(labels) > 3


def test_classification_prompt_is_cls_rls_wording():
  prompt = classification.render_prompt('What type of object is in the photo?', ['cat', 'dog'], think=True)
  assert prompt == ('What type of object is in the photo?\n Please choose one from list [ cat, dog].\n'
                    ' Please output the thinking process in <think> </think> and final answer in <answer> </answer> '
                    'tags.')
  assert classification.render_prompt('Q?', ['a'], think=False).endswith('\n Please directly output the answer.')


@pytest.mark.parametrize('think', [True, False])
def test_classification_without_options_names_no_class_and_keeps_the_rest(think):
  """show_options=False (tiny recipes): no class name a decoder could copy; same image, label and meta."""
  listed = classification.ClassificationTask(classification.ClassificationConfig(classes='color', think=think))
  unlisted = classification.ClassificationTask(
      classification.ClassificationConfig(classes='color', think=think, show_options=False))
  for seed in range(10):
    with_list, without = listed.example(seed), unlisted.example(seed)
    assert without['meta'] == with_list['meta']
    np.testing.assert_array_equal(without['images'][0], with_list['images'][0])
    assert not any(name in without['prompt'] for name in unlisted.class_names), without['prompt']
    instruction = classification.THINK if think else classification.NO_THINK
    assert without['prompt'] == f'{classification.DEFAULT_QUESTIONS["color"]}\n {instruction}'


def test_multichoice_answers_follow_the_image_and_inversion():
  task = multichoice.MultiChoiceTask(multichoice.MultiChoiceConfig(attributes=('color',), num_objects=(1, 3)))
  inverted_count, option_counts = 0, set()
  for seed in range(60):
    example = task.example(seed)
    meta, image = example['meta'], example['images'][0]
    present = {c for c in shapes.COLORS if _color_mask(image, c).any()}  # read from the pixels
    letters = meta['answer'].split(',')
    options = meta['options']
    right = [string.ascii_uppercase[i] for i, o in enumerate(options) if (o in present) != meta['inverted']]
    assert letters == right
    if meta['inverted']:
      inverted_count += 1
      assert sum(o in present for o in options) == 1 and 1 <= len(letters) == len(options) - 1
      assert 'not' in example['prompt'] and meta['question_type'] == 'multiple'
      option_counts.add(len(options))
    else:
      assert len(letters) == 1 and len(options) == 4 and meta['question_type'] == 'single'
    for i, o in enumerate(options):
      assert f'{string.ascii_uppercase[i]}. {o}' in example['prompt']
  assert 15 <= inverted_count <= 45
  assert len(option_counts) > 1  # random drop varies the number of kept options


def test_multichoice_shape_and_object_questions_use_the_scene():
  task = multichoice.MultiChoiceTask(multichoice.MultiChoiceConfig(inversion_prob=0.0, random_drop=False))
  for seed in range(30):
    meta = task.example(seed)['meta']
    values = {'shape': lambda o: o['shape'], 'color': lambda o: o['color'],
              'object': lambda o: f"{o['color']} {o['shape']}"}[meta['attribute']]
    in_scene = {values(o) for o in meta['objects']}
    (letter,) = meta['answer'].split(',')
    assert [o in in_scene for o in meta['options']].count(True) == 1
    assert meta['options'][ord(letter) - 65] in in_scene


@pytest.mark.parametrize('cls, kwargs, message', [
    (grounding.GroundingConfig, {'num_objects': (1, 2)}, 'num_objects'),
    (grounding.GroundingConfig, {'answer': 'mask'}, 'answer'),
    (grounding.GroundingConfig, {'colors': ('pink',)}, 'unknown shapes/colours'),
    (grounding.GroundingConfig, {'object_size': (40, 80)}, 'does not fit'),
    (classification.ClassificationConfig, {'classes': 'texture'}, 'classes'),
    (classification.ClassificationConfig, {'shapes': ('circle',)}, 'at least 2 classes'),
    (multichoice.MultiChoiceConfig, {'attributes': ('shape',), 'num_objects': (1, 3)}, 'surely absent'),
    (multichoice.MultiChoiceConfig, {'inversion_prob': 1.5}, 'inversion_prob'),
])
def test_config_validation(cls, kwargs, message):
  with pytest.raises(ValueError, match=message):
    cls(**kwargs)
