"""Synthetic GUI: the target coordinate is inside the drawn target widget; UI-R1 answer strings."""

import collections

import numpy as np
import pytest

from rl_reason.tasks import gui


def _check_widget_drawn(image, widget, background):
  x1, y1, x2, y2 = widget['box']
  edge = gui.FIELD_BORDER if widget['kind'] == 'field' else None
  region = image[y1:y2, x1:x2]
  edges = np.concatenate([region[0], region[-1], region[:, 0], region[:, -1]])
  if edge is not None:
    assert (edges == edge).all()
  else:
    assert (edges == edges[0]).all() and tuple(edges[0]) in gui.BUTTON_FILLS
  ring = np.concatenate([image[y1 - 1, x1 - 1:x2 + 1], image[y2, x1 - 1:x2 + 1],
                         image[y1 - 1:y2 + 1, x1 - 1], image[y1 - 1:y2 + 1, x2]])
  assert (ring == background).all(), 'widgets are separated by background'


def test_targets_are_inside_their_drawn_widgets():
  task = gui.GuiTask(gui.GuiConfig())
  actions = collections.Counter()
  for seed in range(60):
    example = task.example(seed)
    meta, image = example['meta'], example['images'][0]
    assert meta['image_size'] == [image.shape[1], image.shape[0]]
    background = image[-1, 0]
    labels = [w['label'] for w in meta['widgets']]
    assert len(set(labels)) == len(labels)
    for widget in meta['widgets']:
      _check_widget_drawn(image, widget, background)
    action = meta['gt_action']
    actions[action] += 1
    x, y = meta['coordinate']
    assert meta['answer'] == f"[{{'action': '{action}', 'coordinate': [{x}, {y}]}}]"
    if action in ('click', 'input_text'):
      x, y = meta['coordinate']
      x1, y1, x2, y2 = meta['gt_bbox']
      assert x1 <= x < x2 and y1 <= y < y2
      (target,) = [w for w in meta['widgets'] if w['box'] == meta['gt_bbox']]
      assert target['kind'] == ('button' if action == 'click' else 'field')
      assert f"'{target['label']}'" in meta['instruction'] or f" {target['label']} field" in meta['instruction']
      assert tuple(image[y, x]) != tuple(background)
      if action == 'input_text':
        assert f"'{meta['text']}'" in meta['instruction']
    else:
      assert 'gt_bbox' not in meta and meta['coordinate'] == [0, 0]
      key = {'scroll': 'direction', 'open_app': 'app', 'navigate_back': None}[action]
      if key:
        assert meta[key] in meta['instruction']
    assert meta['instruction'] in example['prompt']
  assert set(actions) == set(gui.ACTIONS)


def test_restricted_actions_and_prompt_modes():
  task = gui.GuiTask(gui.GuiConfig(actions=('click',), think=False))
  for seed in range(10):
    example = task.example(seed)
    assert example['meta']['gt_action'] == 'click'
    assert '<think>' not in example['prompt'] and 'strictly follow the format' in example['prompt']
  think = gui.GuiTask(gui.GuiConfig()).example(0)['prompt']
  assert '<think> ... </think> <answer>' in think and 'pixels wide' not in think
  sized = gui.GuiTask(gui.GuiConfig(tell_size=True)).example(0)['prompt']
  assert 'The screenshot is 96 pixels wide and 128 pixels high.' in sized


@pytest.mark.parametrize('kwargs, message', [
    ({'actions': ('swipe',)}, 'actions'), ({'num_widgets': (1, 3)}, 'num_widgets'),
    ({'image_size': (60, 96), 'num_widgets': (2, 4)}, 'cannot hold 4 widgets'),
    ({'image_size': (128, 30)}, 'label'),
])
def test_config_validation(kwargs, message):
  with pytest.raises(ValueError, match=message):
    gui.GuiConfig(**kwargs)
