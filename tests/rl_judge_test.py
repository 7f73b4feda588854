"""Trust-GRPO's thinking reward model (rl/judge.py): its prompt, the reading of its score, the rows it
judges, and its answers against a plain greedy loop."""

import jax
import numpy as np
import pytest
from flax import nnx

from rl_reason import models
from rl_reason.data import image_processor, processor, tokenizer as tokenizer_lib
from rl_reason.parallel import sharding as shd
from rl_reason.rewards import model_signals, shaping
from rl_reason.rl import judge as judge_lib

import judge_case  # pylint: disable=g-bad-import-order  (tests/judge_case.py: the tiny VL judge)


@pytest.mark.parametrize('text, score', [
    ('<answer>0.7</answer>', 0.7),
    (r'The reasoning is sound. \boxed{0.9}', 0.9),
    (r'\box{1} and later <answer>0.2</answer>', 1.0),  # a boxed score comes first
    ('first 0.4 then <answer>0.6</answer>', 0.6),  # then the tagged one
    ('<think>2 wrong steps</think> 0.3', 1.0),  # then the first number standing alone, clipped
    ('score: 0.75.', 0.75),
    ('v2 and x1.5.2 then .5', 0.5),  # numbers inside words or dotted runs are not scores
    ('<answer>7</answer>', 1.0),
    ('-0.4', 0.4),  # the minus sign is not part of the number read
    ('no score at all', 0.0),
    ('', 0.0),
])
def test_judge_score_reads_the_first_score_written(text, score):
  assert model_signals.judge_score(text) == pytest.approx(score)


def test_judge_prompt_fills_each_field_once_and_checks_templates():
  filled = model_signals.judge_prompt('Q: {question}\nR: {reasoning}', 'why {reasoning}?', 'because {question}')
  assert filled == 'Q: why {reasoning}?\nR: because {question}'  # one pass: the texts are left as written
  model_signals.check_judge_template(model_signals.JUDGE_TEMPLATE)
  assert model_signals.judge_template_head('Rate it. {reasoning} after {question}') == 'Rate it. '
  head = model_signals.judge_template_head(model_signals.JUDGE_TEMPLATE)
  assert head.startswith('You are an expert judge') and head.endswith('\nQuestion: ')
  assert model_signals.JUDGE_TEMPLATE.endswith('Your response format: <answer>your_score</answer>')
  with pytest.raises(ValueError, match=r'judge_template must hold \{reasoning\} exactly once, got 0'):
    model_signals.check_judge_template('Q: {question}')
  with pytest.raises(ValueError, match=r'judge_template must hold \{question\} exactly once, got 2'):
    model_signals.check_judge_template('{question} {question} {reasoning}')


def test_thinking_rows_are_the_rows_trust_grpo_uses():
  rng = np.random.default_rng(0)
  outcome = rng.choice([0.0, 0.1, 0.3, 0.5, 0.95, 1.0], size=(50, 4))
  outcome[:5] = 1.0  # all right
  outcome[5:10] = 0.0  # all wrong
  for zero_extreme in (True, False):
    got = shaping.thinking_rows(outcome.reshape(-1), 4, query_threshold=0.2, zero_extreme_groups=zero_extreme)
    for p in range(50):
      extreme = (outcome[p] >= 0.9).all() or (outcome[p] <= 0.1).all()
      for g in range(4):
        assert got[4 * p + g] == (outcome[p, g] >= 0.2 and not (zero_extreme and extreme))
  # rows left out are exactly the ones whose R^t the scheme zeroes: judging them could not change the term
  thinking = rng.uniform(size=200)
  rows = shaping.thinking_rows(outcome.reshape(-1), 4)
  full, _ = shaping.trust_grpo(outcome.reshape(-1), np.where(shaping.thinking_query_mask(outcome.reshape(-1)),
                                                             thinking, 0.0), 4, 3)
  only, _ = shaping.trust_grpo(outcome.reshape(-1), np.where(rows, thinking, 0.0), 4, 3)
  np.testing.assert_allclose(only, full)


def test_padded_rows_are_a_power_of_two_split_over_the_mesh():
  judge = object.__new__(judge_lib.ThinkingJudge)  # call_rows reads batch_rows and row_multiple alone
  judge.row_multiple = 2
  for batch_rows, counts in ((0, {1: 2, 5: 8, 16: 16}), (6, {1: 2, 3: 4, 5: 4, 40: 4}), (8, {40: 8})):
    judge.batch_rows = batch_rows
    assert {count: judge.call_rows(count) for count in counts} == counts, batch_rows
  assert [judge_lib._padded_rows(n, 1) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, 16]
  assert [judge_lib._padded_rows(n, 8) for n in (1, 3, 9)] == [8, 8, 16]
  assert judge_lib._padded_rows(3, 6) == 6


def _greedy(model, tokenizer, text, steps):
  """The judge's answer by a plain loop: the whole sequence through the model for every token."""
  ids = processor.encode_prompt(tokenizer, text, [], 1)
  eos = tokenizer_lib.special_ids(tokenizer)['eos_id']
  out = []
  for _ in range(steps):
    seq = np.array([ids + out])
    token = int(np.argmax(np.asarray(models.forward(model, seq, np.ones_like(seq)))[0, -1]))
    out.append(token)
    if token == eos:
      break
  return tokenizer.decode(out, skip_special_tokens=True)


@pytest.mark.parametrize('devices, batch_rows', [(1, 0), (1, 3), (8, 0)])
def test_judge_answers_as_a_plain_greedy_loop_on_the_asked_rows_only(devices, batch_rows):
  """With batch_rows 3 the 4 rows go through in two calls of 2 (a power of two up to it)."""
  tokenizer = tokenizer_lib.build_tiny_tokenizer()
  graphdef, params = nnx.split(models.create(models.get_preset('tiny_lm'), seed=5))
  # weights x4: a random model this small answers '\n' to everything; sharper, its answers depend on the prompt
  model = nnx.merge(graphdef, jax.tree.map(lambda x: x * 4 if x.ndim >= 2 else x, params))
  mesh = shd.make_mesh(shd.MeshConfig(num_devices=devices))
  encode = judge_lib.prompt_encoder(tokenizer, model.cfg, None)
  template = ('You are a judge: rate how sound the reasoning below is, from 0 to 1. ' * 2
              + 'Rate: {question} | {reasoning} ->')
  judge = judge_lib.ThinkingJudge(model, tokenizer, encode, template=template, max_new_tokens=6, mesh=mesh,
                                  batch_rows=batch_rows)
  examples = [{'prompt': 'what is 2+2', 'images': [], 'meta': {}}, {'prompt': 'name a colour', 'images': [], 'meta': {}}]
  texts = ['<think>2+2=4</think><answer>4</answer>', 'four', '5', '<think>add</think>',
           'red', '<answer>blue</answer>', 'a colour is green', '']
  rows = np.array([0, 1, 0, 1, 1, 0, 0, 1], bool)  # 4 rows: with 8 devices padded to 8
  calls = judge.sampler.calls
  got = judge.scores(examples, texts, rows)
  assert judge.sampler.calls - calls == (2 if batch_rows else 1)
  assert np.isnan(got[~rows]).all()
  assert encode(judge.prompts(examples, texts, [0, 1]))['prefix_ids'].shape[1] == judge_lib.PREFIX_STEP  # head once
  expected = [_greedy(model, tokenizer, model_signals.judge_prompt(template, examples[b // 4]['prompt'], texts[b]), 6)
              for b in np.flatnonzero(rows)]
  assert judge.last_answers == expected
  assert len(set(expected)) > 1  # the rows' answers differ: each row read its own prompt
  np.testing.assert_array_equal(got[rows], [model_signals.judge_score(a) for a in expected])
  assert np.isnan(judge.scores(examples, texts, np.zeros(8, bool))).all() and judge.last_answers == []
  with pytest.raises(ValueError, match=r'rows \(7,\) for 8 completions'):
    judge.scores(examples, texts, np.ones(7, bool))
  if devices == 8:
    with pytest.raises(ValueError, match="judge_batch_size 4 is below the 8 rows of each process's share"):
      judge_lib.ThinkingJudge(model, tokenizer, encode, template=template, max_new_tokens=6, mesh=mesh, batch_rows=4)


def _greedy_with_images(model, tokenizer, image_cfg, text, images, steps):
  """The judge's answer with the prompt's images after its text, by the same plain loop."""
  processed = image_processor.preprocess(images, image_cfg)
  grids = [tuple(g) for g in processed['image_grid_thw']]
  ids = processor.encode_prompt(tokenizer, text, grids, image_cfg.merge_size, images_first=False)
  eos = tokenizer_lib.special_ids(tokenizer)['eos_id']
  out = []
  for _ in range(steps):
    seq = np.array([ids + out])
    logits = models.forward(model, seq, np.ones_like(seq), pixel_values=processed['pixel_values'],
                            image_grid_thw=processed['image_grid_thw'])
    out.append(int(np.argmax(np.asarray(logits)[0, -1])))
    if out[-1] == eos:
      break
  return tokenizer.decode(out, skip_special_tokens=True)


@pytest.mark.parametrize('devices', [1, 8])
def test_judge_with_images_encodes_each_prompts_images_once_and_answers_as_a_plain_loop(devices):
  """Three completions of one prompt and one of another, each prompt with an image: the vision tower sees two
  image sets on one device (padded to the 8 rows of the mesh on 8), and every answer is the plain loop's."""
  template = 'Rate: {question} | {reasoning} ->'
  judge = judge_case.make_judge(shd.make_mesh(shd.MeshConfig(num_devices=devices)), template=template,
                                max_new_tokens=5)
  model, tokenizer, image_cfg = judge_case.vl_judge_parts()  # the same weights, for the plain loop
  rng = np.random.default_rng(3)
  examples = [{'prompt': q, 'images': [rng.integers(0, 255, (24, 16 + 8 * i, 3), np.uint8)], 'meta': {}}
              for i, q in enumerate(['what is drawn', 'which colour'])]
  texts = ['a cat', '<think>fur</think>a dog', 'none', 'red', 'blue', 'green']
  rows = np.array([1, 1, 1, 0, 0, 1], bool)
  seen = []
  sampler = judge.sampler
  judge.sampler = lambda params, prompt, *args: seen.append(prompt['vision']['patches'].shape[0]) or sampler(
      params, prompt, *args)
  got = judge.scores(examples, texts, rows)
  assert seen == [2 if devices == 1 else 8]  # 4 judge prompts, 2 image sets
  expected = [_greedy_with_images(model, tokenizer, image_cfg,
                                  model_signals.judge_prompt(template, examples[b // 3]['prompt'], texts[b]),
                                  examples[b // 3]['images'], 5) for b in np.flatnonzero(rows)]
  assert judge.last_answers == expected
  assert len(set(expected)) > 1
  np.testing.assert_array_equal(got[rows], [model_signals.judge_score(a) for a in expected])
