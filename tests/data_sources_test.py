"""Data sources: a TFDS dataset built here (ArrayRecord, no TensorFlow) and JSONL files written here.

Checks content against what was written, determinism, resume from a saved state, 2-process
sharding, and the prompt-length filter.
"""

import io
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from rl_reason.data import image_processor, jsonl_source, processor, tfds_source
from rl_reason.data import tokenizer as tokenizer_lib
from rl_reason import tasks
from rl_reason.tasks import jigsaw

NUM_ROWS = 10
COLORS = ['red', 'green', 'blue']
SHAPES = ['cube', 'sphere']
LABELS = ['cat', 'dog', 'bird']


def _image(i):
  """A 24x24 image that identifies its row (and is not symmetric, so jigsaw pieces differ)."""
  rng = np.random.default_rng(1000 + i)
  return rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)


def _objects(i):
  return {'color': [(i + j) % 3 for j in range(i % 4)], 'shape': [(i * j) % 2 for j in range(i % 4)]}


def _png(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='PNG')
  return buffer.getvalue()


class TinyScenes(tfds.core.GeneratorBasedBuilder):
  """Images with a class label, an integer id and CLEVR-like object annotations."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        'image': tfds.features.Image(shape=(24, 24, 3)),
        'label': tfds.features.ClassLabel(names=LABELS),
        'id': tfds.features.Scalar(dtype=np.int64),
        'objects': tfds.features.Sequence({'color': tfds.features.ClassLabel(names=COLORS),
                                           'shape': tfds.features.ClassLabel(names=SHAPES)}),
    }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(NUM_ROWS)}

  def _generate_examples(self, count):
    for i in range(count):
      # The Image feature encodes arrays with TensorFlow; PNG bytes go in as they are.
      yield str(i), {'image': _png(_image(i)), 'label': i % 3, 'id': i, 'objects': _objects(i)}


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('tfds'))
  TinyScenes(data_dir=path, file_format='array_record').download_and_prepare()
  return path


def _source(data_dir, mode, **kwargs):
  return tfds_source.TfdsSource('tiny_scenes', split='train', mode=mode, data_dir=data_dir, seed=3, **kwargs)


def _record(data_dir, row):
  return tfds.data_source('tiny_scenes', split='train', data_dir=data_dir)[row]


def test_tfds_classification_uses_the_label_names(data_dir):
  source = _source(data_dir, 'classification')
  assert source.class_names == LABELS and source.reward_names == ('cls_accuracy', 'think_answer_format')
  for example in source.take(NUM_ROWS):
    tasks.check_example(example)
    record = _record(data_dir, example['meta']['source_index'])
    np.testing.assert_array_equal(example['images'][0], _image(int(record['id'])))
    assert example['meta']['answer'] == LABELS[int(record['id']) % 3] == LABELS[example['meta']['label']]
    assert sorted(example['meta']['options']) == sorted(LABELS)  # 3 classes: all listed (CLS-RL rule)
    assert '[ ' + ', '.join(example['meta']['options']) + '].' in example['prompt']


def test_tfds_jigsaw_puzzles_reassemble_the_dataset_image(data_dir):
  for question_type in ('full', 'single', 'box'):
    cfg = jigsaw.JigsawConfig(rows=2, cols=2, question_type=question_type, image_size=(24, 24))
    source = _source(data_dir, 'jigsaw', jigsaw_cfg=cfg)
    for example in source.take(4):
      meta = example['meta']
      original = _image(int(_record(data_dir, meta['source_index'])['id']))
      if question_type == 'box':
        restored = jigsaw.reassemble_boxes(example['images'][0], meta['boxes'], meta['box_sources'])
      else:
        restored = jigsaw.reassemble(example['images'][0], meta['gt'], meta['rows'], meta['cols'])
      np.testing.assert_array_equal(restored, original)


def test_tfds_counting_from_object_annotations(data_dir):
  source = _source(data_dir, 'counting')
  assert source.attributes == {'color': COLORS, 'shape': SHAPES}
  questions = set()
  for example in source.take(3 * NUM_ROWS):
    tasks.check_example(example)
    meta = example['meta']
    objects = _objects(int(_record(data_dir, meta['source_index'])['id']))
    if meta['attribute'] is None:
      assert meta['count'] == len(objects['color'])
      assert 'How many objects are there?' in example['prompt']
    else:
      names = {'color': COLORS, 'shape': SHAPES}[meta['attribute']]
      assert meta['count'] == sum(names[v] == meta['value'] for v in objects[meta['attribute']]) >= 1
      assert f'How many {meta["value"]} objects are there?' in example['prompt']
    assert meta['answer'] == str(meta['count'])
    questions.add(meta['attribute'])
  assert questions == {None, 'color', 'shape'}


def test_tfds_mode_requirements_are_checked(data_dir):
  with pytest.raises(ValueError, match='no ClassLabel feature'):
    _source(data_dir, 'classification', label_key='id')
  with pytest.raises(ValueError, match='Sequence-of-dict'):
    _source(data_dir, 'counting', objects_key='label')
  with pytest.raises(ValueError, match='mode'):
    _source(data_dir, 'captioning')
  with pytest.raises(ValueError, match='2 class names for 3 classes'):
    _source(data_dir, 'classification', class_names=['a', 'b'])


def _rows(examples):
  return [e['meta']['source_index'] for e in examples]


def test_tfds_stream_is_deterministic_resumable_and_sharded(data_dir):
  a, b = _source(data_dir, 'classification'), _source(data_dir, 'classification')
  first = a.take(13)
  assert [e['prompt'] for e in first] == [e['prompt'] for e in b.take(13)]
  assert sorted(_rows(first[:NUM_ROWS])) == list(range(NUM_ROWS))  # one epoch visits every row once
  assert _rows(first[:NUM_ROWS]) != list(range(NUM_ROWS))  # shuffled
  state = json.loads(json.dumps(a.state()))
  rest = a.take(9)
  resumed = _source(data_dir, 'classification')
  resumed.restore(state)
  again = resumed.take(9)
  assert _rows(again) == _rows(rest) and [e['meta'] for e in again] == [e['meta'] for e in rest]
  shards = [_source(data_dir, 'classification', process_index=p, process_count=2) for p in (0, 1)]
  for p, shard in enumerate(shards):
    rows = _rows(shard.take(NUM_ROWS))  # two epochs of 5 rows
    assert all(r % 2 == p for r in rows) and sorted(rows[:5]) == list(range(p, NUM_ROWS, 2))
  with pytest.raises(ValueError, match='other settings'):
    shards[0].restore(state)


def test_tfds_mock_data_without_tensorflow():
  with tfds.testing.mock_data(num_examples=6):
    source = tfds_source.TfdsSource('mnist', split='train', mode='classification', think=False)
    examples = source.take(6)
  assert source.class_names == [str(d) for d in range(10)] and source.reward_names == ('equality_strict',)
  for example in examples:
    image = example['images'][0]
    assert image.shape == (28, 28, 3) and image.dtype == np.uint8  # grey repeated to RGB
    assert (image[..., 0] == image[..., 2]).all()
    assert example['meta']['answer'] in source.class_names
    assert example['prompt'].endswith('Please directly output the answer.')


# JSONL.


@pytest.fixture
def jsonl_files(tmp_path):
  (tmp_path / 'imgs').mkdir()
  images = {}
  for i in range(3):
    array = np.random.default_rng(i).integers(0, 256, size=(8 + i, 12, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / 'imgs' / f'{i}.png')
    images[i] = array
  grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
  Image.fromarray(grey).save(tmp_path / 'grey.png')
  rows_a = [
      {'prompt': 'How many?', 'images': ['imgs/0.png'], 'answer': '3', 'answer_type': 'digit'},
      {'prompt': 'Compare.', 'images': ['imgs/1.png', 'imgs/2.png'], 'answer': 'A', 'difficulty': 2},
      {'prompt': 'Just text.', 'answer': ['x', 'y']},
  ]
  rows_b = [{'prompt': 'Grey.', 'images': [str(tmp_path / 'grey.png')], 'answer': 'g'}]
  rows_b += [{'prompt': f'Q{i}', 'answer': str(i), 'rows': 2} for i in range(4)]
  with open(tmp_path / 'a.jsonl', 'w') as f:
    f.write('\n'.join(json.dumps(r) for r in rows_a) + '\n\n')  # a trailing blank line
  with open(tmp_path / 'b.jsonl', 'w') as f:
    f.write(json.dumps(rows_b[0]) + '\n   \n' + '\n'.join(json.dumps(r) for r in rows_b[1:]))
  return [str(tmp_path / 'a.jsonl'), str(tmp_path / 'b.jsonl')], rows_a + rows_b, images, grey


def test_jsonl_rows_become_examples(jsonl_files):
  paths, rows, images, grey = jsonl_files
  source = jsonl_source.JsonlSource(paths, shuffle=False)
  assert source.num_rows == len(rows) == 8
  examples = source.take(8)
  assert _rows(examples) == list(range(8))
  for example, row in zip(examples, rows):
    tasks.check_example(example)
    assert example['prompt'] == row['prompt']
    expected_meta = {k: v for k, v in row.items() if k not in ('prompt', 'images')}
    assert example['meta'] == dict(expected_meta, source_index=examples.index(example))
  np.testing.assert_array_equal(examples[0]['images'][0], images[0])
  assert [i.shape for i in examples[1]['images']] == [(9, 12, 3), (10, 12, 3)]
  np.testing.assert_array_equal(examples[1]['images'][1], images[2])
  assert examples[2]['images'] == []
  np.testing.assert_array_equal(examples[3]['images'][0], np.repeat(grey[..., None], 3, axis=-1))


def test_jsonl_think_instruction(jsonl_files):
  paths, rows, _, _ = jsonl_files
  example = jsonl_source.JsonlSource(paths, shuffle=False, think=True).next()
  assert example['prompt'].startswith(rows[0]['prompt'] + '\n') and '<think>' in example['prompt']
  assert example['meta']['think'] is True
  assert 'paraphrase' not in example['meta']


def test_jsonl_paraphrase_gets_the_think_instruction_too(tmp_path):
  """Co-Reward's rephrased prompt (meta 'paraphrase') is asked for in the same way as the prompt."""
  path = tmp_path / 'pairs.jsonl'
  path.write_text(json.dumps({'prompt': 'What is 2+3?', 'paraphrase': 'Add 3 to 2.', 'answer': '5'}) + '\n')
  example = jsonl_source.JsonlSource([str(path)], shuffle=False, think=True).next()
  suffix = example['prompt'][len('What is 2+3?'):]
  assert suffix and example['meta']['paraphrase'] == 'Add 3 to 2.' + suffix


def test_jsonl_resume_and_two_process_sharding(jsonl_files):
  paths, _, _, _ = jsonl_files
  source = jsonl_source.JsonlSource(paths, seed=5)
  source.take(6)
  state = source.state()
  rest = source.take(10)
  resumed = jsonl_source.JsonlSource(paths, seed=5)
  resumed.restore(state)
  assert _rows(resumed.take(10)) == _rows(rest)
  seen = []
  for p in (0, 1):
    shard = jsonl_source.JsonlSource(paths, seed=5, process_index=p, process_count=2)
    rows = _rows(shard.take(8))
    assert all(r % 2 == p for r in rows) and sorted(rows[:4]) == list(range(p, 8, 2))
    seen += rows[:4]
  assert sorted(seen) == list(range(8))
  odd = jsonl_source.JsonlSource(paths, process_index=2, process_count=3)
  assert odd.rows.tolist() == [2, 5] and odd.rows_left_out == 2  # rows 6, 7 left out so shards stay equal


def test_jsonl_shard_reads_only_its_rows(jsonl_files, tmp_path):
  paths, _, _, _ = jsonl_files
  with open(paths[1], 'a') as f:
    f.write('\n{not json\n')  # row 8: process 0 of 3 would read it, process 1 never does
  ok = jsonl_source.JsonlSource(paths, shuffle=False, process_index=1, process_count=3)
  assert _rows(ok.take(6)) == [1, 4, 7] * 2
  bad = jsonl_source.JsonlSource(paths, shuffle=False, process_index=2, process_count=3)
  with pytest.raises(ValueError, match=r'b\.jsonl:7: not valid JSON'):
    bad.take(3)


@pytest.mark.parametrize('row, message', [
    ({'answer': '1'}, '"prompt" must be'),
    ({'prompt': 'x'}, '"answer" is missing'),
    ({'prompt': 'x', 'answer': '1', 'images': 'a.png'}, '"images" must be a list'),
    ({'prompt': 'x', 'answer': '1', 'source_index': 4}, 'reserved'),
    ([1, 2], 'JSON object'),
])
def test_jsonl_bad_rows_are_errors(tmp_path, row, message):
  path = tmp_path / 'bad.jsonl'
  path.write_text(json.dumps(row) + '\n')
  with pytest.raises(ValueError, match=message):
    jsonl_source.JsonlSource(str(path)).next()


def test_jsonl_missing_image_is_an_error(tmp_path):
  path = tmp_path / 'x.jsonl'
  path.write_text(json.dumps({'prompt': 'p', 'answer': 'a', 'images': ['nope.png']}) + '\n')
  with pytest.raises(FileNotFoundError, match='nope.png'):
    jsonl_source.JsonlSource(str(path)).next()


# Over-long prompts.

IMAGE_CFG = image_processor.ImageProcessorConfig(patch_size=4, merge_size=2, min_pixels=64, max_pixels=1024)


def test_prompt_budget_counts_image_tokens_like_the_processor(jsonl_files):
  paths, _, _, _ = jsonl_files
  tokenizer = tokenizer_lib.build_tiny_tokenizer()
  budget = jsonl_source.PromptBudget(tokenizer, 10**6, IMAGE_CFG)
  for example in jsonl_source.JsonlSource(paths, shuffle=False).take(8):
    grids = ([tuple(g) for g in image_processor.preprocess(example['images'], IMAGE_CFG)['image_grid_thw']]
             if example['images'] else [])
    assert budget.length(example) == len(processor.encode_prompt(tokenizer, example['prompt'], grids, 2))
  with pytest.raises(ValueError, match='no image_cfg'):
    jsonl_source.PromptBudget(tokenizer, 100).length(jsonl_source.JsonlSource(paths, shuffle=False).next())


def test_prompt_budget_drops_long_examples_whole_and_counts_them(jsonl_files):
  paths, _, _, _ = jsonl_files
  tokenizer = tokenizer_lib.build_tiny_tokenizer()
  lengths = {e['meta']['source_index']: jsonl_source.PromptBudget(tokenizer, 1, IMAGE_CFG).length(e)
             for e in jsonl_source.JsonlSource(paths, shuffle=False).take(8)}
  limit = sorted(lengths.values())[4]
  too_long = {r for r, n in lengths.items() if n > limit}
  assert too_long
  budget = jsonl_source.PromptBudget(tokenizer, limit, IMAGE_CFG)
  source = jsonl_source.JsonlSource(paths, seed=1, keep=budget)
  kept = source.take(10)
  assert not {e['meta']['source_index'] for e in kept} & too_long
  for example in kept:  # kept prompts are whole: nothing was truncated
    assert example['prompt'] in {'How many?', 'Compare.', 'Just text.', 'Grey.'} | {f'Q{i}' for i in range(4)}
  assert source.dropped == budget.rejected >= len(too_long)
  state = source.state()
  assert state['dropped'] == source.dropped
  resumed = jsonl_source.JsonlSource(paths, seed=1, keep=jsonl_source.PromptBudget(tokenizer, limit, IMAGE_CFG))
  resumed.restore(state)
  rest, again = source.take(5), resumed.take(5)
  assert _rows(rest) == _rows(again) and resumed.dropped == source.dropped
  kept_list, dropped = jsonl_source.filter_examples(jsonl_source.JsonlSource(paths, shuffle=False).take(8),
                                                    jsonl_source.PromptBudget(tokenizer, limit, IMAGE_CFG))
  assert dropped == len(too_long) and len(kept_list) == 8 - len(too_long)


def test_a_filter_that_rejects_everything_is_an_error(jsonl_files):
  paths, _, _, _ = jsonl_files
  source = jsonl_source.JsonlSource(paths, keep=lambda example: False)
  with pytest.raises(ValueError, match='nothing passes'):
    source.next()


def test_indexed_source_validation():
  make = lambda row, rng: {'prompt': 'p', 'images': [], 'meta': {'answer': row}}  # noqa: E731
  with pytest.raises(ValueError, match='process_index'):
    jsonl_source.IndexedSource(4, make, seed=0, process_index=2, process_count=2)
  with pytest.raises(ValueError, match='cannot feed'):
    jsonl_source.IndexedSource(1, make, seed=0, process_count=2)
  source = jsonl_source.IndexedSource(4, make, seed=0)
  with pytest.raises(ValueError, match='outside'):
    source.restore(dict(source.state(), position=9))
  assert os.path.basename(__file__) == 'data_sources_test.py'


# Runs that read their prompts from the config's data section.


def _run_config(steps=2):
  """configs/vlm_grpo.py's tiny 2x1 variant at test size (its task section is the jigsaw one)."""
  from configs import vlm_grpo  # pylint: disable=g-import-not-at-top
  config = vlm_grpo.get_config('tiny_2x1')
  config.warmup.steps, config.warmup.batch_size = 2, 8
  config.rollout.batch_size, config.rollout.num_generations, config.rollout.max_new_tokens = 8, 4, 12
  config.train.steps, config.train.eval_every, config.train.eval_size = steps, 0, 8
  config.train.sample_every, config.train.checkpoint_every = 0, 2
  return config


class _Recorder:
  """Wraps a stream's next() and keeps every batch of examples it hands out."""

  def __init__(self, stream):
    self.stream, self.batches = stream, []

  def __call__(self, *args, **kwargs):
    batch = self.stream.__class__.next(self.stream, *args, **kwargs)
    self.batches.append(batch.examples)
    return batch


def _trainer(config, workdir):
  from rl_reason import run_config, train  # pylint: disable=g-import-not-at-top
  return train.Trainer(run_config.from_config_dict(config), run_config.plain(config), workdir)


@pytest.mark.slow
def test_run_trains_on_a_tfds_dataset_named_in_the_config(data_dir, tmp_path):
  """data.source=tfds: the loop's prompts are the dataset's rows (CLS-RL prompts on its images and labels),
  and the source's position is in the checkpoint."""
  config = _run_config()
  config.data.source, config.data.tfds_name, config.data.tfds_dir = 'tfds', 'tiny_scenes', data_dir
  config.data.tfds_mode = 'classification'
  config.reward.weights = {}  # the source's rewards: cls_accuracy + think_answer_format
  trainer = _trainer(config, str(tmp_path / 'run'))
  assert trainer.reward_weights == {'cls_accuracy': 1.0, 'think_answer_format': 1.0}
  record = _Recorder(trainer.train_stream)
  trainer.train_stream.next = record
  rows = [r for r in trainer.run() if 'reward_mean' in r]
  assert [r['step'] for r in rows] == [1, 2] and all(np.isfinite(r['loss']) for r in rows)
  assert rows[-1]['data/dropped'] == 0
  seen = [e for batch in record.batches for e in batch]
  assert len(seen) == 4 and len({e['meta']['source_index'] for e in seen}) == 4  # 2 steps x 2 prompts, no repeat
  for example in seen:
    row = _record(data_dir, example['meta']['source_index'])
    np.testing.assert_array_equal(example['images'][0], _image(int(row['id'])))
    assert example['meta']['answer'] == LABELS[int(row['id']) % 3] and 'Please choose one from list' in example['prompt']
  # The checkpoint holds the source's position: a trainer restored from it reads on from there.
  resumed = _trainer(config, str(tmp_path / 'run'))
  assert resumed.maybe_restore() and resumed.train_stream.source.position == 4
  fresh = tfds_source.TfdsSource('tiny_scenes', split='train', mode='classification', data_dir=data_dir,
                                 seed=resumed.train_stream.source.seed)
  fresh.take(4)
  assert _rows(resumed.train_stream.next().examples) == _rows(fresh.take(2))


@pytest.mark.slow
def test_run_trains_on_jsonl_rows_and_drops_over_long_prompts(tmp_path):
  """data.source=jsonl with images: the prompts are the file's rows; a prompt longer than the largest bucket
  (256 tokens) is dropped whole and counted."""
  (tmp_path / 'imgs').mkdir()
  rows = []
  for i in range(6):
    Image.fromarray(_image(i)).save(tmp_path / 'imgs' / f'{i}.png')
    rows.append({'prompt': f'Which animal is this? ({i})', 'images': [f'imgs/{i}.png'], 'answer': LABELS[i % 3]})
  rows.append({'prompt': 'Describe. ' + 'word ' * 400, 'images': ['imgs/0.png'], 'answer': 'cat'})  # row 6: too long
  path = tmp_path / 'train.jsonl'
  path.write_text('\n'.join(json.dumps(r) for r in rows) + '\n')
  config = _run_config()
  config.data.source, config.data.jsonl_path = 'jsonl', str(path)
  config.reward.weights = {'exact_match_ci': 1.0, 'think_answer_format': 0.5}
  trainer = _trainer(config, str(tmp_path / 'run'))
  record = _Recorder(trainer.train_stream)
  trainer.train_stream.next = record
  out = [r for r in trainer.run() if 'reward_mean' in r]
  assert [r['step'] for r in out] == [1, 2]
  seen = [e for batch in record.batches for e in batch]
  assert len(seen) == 4 and all(e['meta']['source_index'] < 6 for e in seen)
  for example in seen:
    row = rows[example['meta']['source_index']]
    assert example['prompt'].startswith(row['prompt'] + '\n') and example['meta']['answer'] == row['answer']
    np.testing.assert_array_equal(example['images'][0], _image(example['meta']['source_index']))
  # The 7 rows in shuffled order: 4 kept prompts were read, and the long row if it came before the 4th.
  order = trainer.train_stream.source._epoch_order(0).tolist()  # pylint: disable=protected-access
  assert out[-1]['data/dropped'] == float(order.index(6) < order.index(seen[-1]['meta']['source_index'])) == 1.0


def test_data_section_errors_are_clear(tmp_path, data_dir):
  from rl_reason import run_config  # pylint: disable=g-import-not-at-top
  config = _run_config()
  config.data.source = 'parquet'
  with pytest.raises(ValueError, match=r"data.source 'parquet' unknown; valid: \['jsonl', 'procedural', 'tfds'\]"):
    run_config.from_config_dict(config)
  config = _run_config()
  config.data.source, config.data.jsonl_path = 'jsonl', str(tmp_path / 'missing.jsonl')
  config.reward.weights = {'exact_match': 1.0}
  with pytest.raises(ValueError, match=r'data.jsonl_path: file .*missing.jsonl not found'):
    run_config.from_config_dict(config)
  (tmp_path / 'ok.jsonl').write_text(json.dumps({'prompt': 'p', 'answer': 'a'}) + '\n')
  config.data.jsonl_path = str(tmp_path / 'ok.jsonl')
  config.reward.weights = {}
  with pytest.raises(ValueError, match='set reward.weights'):
    run_config.from_config_dict(config)
  config = _run_config()
  config.data.tfds_name = 'mnist'  # a TFDS field while the source is procedural: it would be ignored
  with pytest.raises(ValueError, match=r"\['tfds_name'\] do not apply to data.source='procedural'"):
    run_config.from_config_dict(config)
  config = _run_config()
  config.data.source = 'tfds'
  with pytest.raises(ValueError, match='needs data.tfds_name'):
    run_config.from_config_dict(config)
  config.data.tfds_name, config.data.tfds_dir = 'tiny_scenes', str(tmp_path / 'no_such_dir')
  with pytest.raises(ValueError, match='no_such_dir is not a directory'):
    run_config.from_config_dict(config)
  config.data.tfds_dir = data_dir
  config.curriculum = {'name': 'threshold', 'levels': ({'cols': 1}, {'cols': 2}), 'threshold': 0.5}
  with pytest.raises(ValueError, match="only the procedural tasks can follow; data.source='tfds'"):
    run_config.from_config_dict(config)
  config.curriculum = {'name': ''}
  config.data.tfds_name = 'not_prepared_here'  # valid config; the trainer names what it could not open
  with pytest.raises(ValueError, match=r"data.tfds_name 'not_prepared_here', split 'train'"):
    _trainer(config, str(tmp_path / 'run'))


def test_data_keys_override_from_the_command_line(tmp_path):
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  from rl_reason import run_config  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'rows.jsonl'
  path.write_text(json.dumps({'prompt': 'p', 'answer': 'a'}) + '\n')
  values = flags.FlagValues()
  argv = ['prog', f'--config={os.path.dirname(os.path.dirname(__file__))}/configs/vlm_grpo.py',
          '--config.data.source=jsonl', f'--config.data.jsonl_path={path}', '--config.data.think=False']
  config_flags.DEFINE_config_file('config', None, 'run', flag_values=values, lock_config=True, sys_argv=argv)
  values(argv)
  cfg = run_config.from_config_dict(values.config)  # the default reward.weights (jigsaw) are still set
  assert (cfg.data.source, cfg.data.jsonl_path, cfg.data.think) == ('jsonl', str(path), False)
