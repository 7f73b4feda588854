"""Rollouts: taking and joining groups, DAPO dynamic sampling over rounds, and its place in the loop."""

import numpy as np
import pytest

from rl_reason import rollout as rollout_lib
from rl_reason import run_config, train
from rl_reason.curricula import dynamic_sampling
from tests import train_test


def _rollout(totals, tag, width=3, pad_id=0, entropies=False):
  """A rollout whose groups carry the given [P, G] totals; texts name (tag, prompt, sample); with
  `entropies`, row r's per-token entropies are r + 0.5."""
  totals = np.asarray(totals, np.float64)
  prompts, groups = totals.shape
  rows = prompts * groups
  return rollout_lib.Rollout(
      examples=[{'meta': {'id': f'{tag}{p}'}} for p in range(prompts)],
      tokens=np.arange(rows * width, dtype=np.int32).reshape(rows, width) + 1,
      logprobs=-np.ones((rows, width), np.float32), lengths=np.full(rows, width),
      finished=np.ones(rows, bool), texts=[f'{tag}{p}.{g}' for p in range(prompts) for g in range(groups)],
      scores={'total': totals.reshape(-1), 'acc': (totals.reshape(-1) > 0.5).astype(np.float64),
              'failures': np.int64(1)},
      inputs={'input_ids': np.zeros((prompts, 4), np.int32)},
      entropies=np.repeat(np.arange(rows, dtype=np.float32)[:, None] + 0.5, width, 1) if entropies else None)


def test_take_groups_keeps_whole_groups_in_the_given_order():
  part = _rollout([[0, 1], [2, 3], [4, 5]], 'a')
  taken = rollout_lib.take_groups(part, [2, 0])
  assert [e['meta']['id'] for e in taken.examples] == ['a2', 'a0']
  assert taken.texts == ['a2.0', 'a2.1', 'a0.0', 'a0.1']
  np.testing.assert_array_equal(taken.scores['total'], [4, 5, 0, 1])
  np.testing.assert_array_equal(taken.tokens, part.tokens[[4, 5, 0, 1]])
  assert 'failures' not in taken.scores and taken.inputs is None  # counts are per round; prompts re-encoded
  assert taken.entropies is None
  with_entropies = rollout_lib.take_groups(_rollout([[0, 1], [2, 3], [4, 5]], 'a', entropies=True), [2, 0])
  np.testing.assert_array_equal(with_entropies.entropies[:, 0], [4.5, 5.5, 0.5, 1.5])


def test_concat_pads_completions_and_sums_counts():
  joined = rollout_lib.concat([_rollout([[0, 1]], 'a', width=2), _rollout([[1, 1]], 'b', width=4)], pad_id=-7)
  assert joined.tokens.shape == (4, 4) and joined.logprobs.shape == (4, 4)
  np.testing.assert_array_equal(joined.tokens[:2, 2:], -7)
  np.testing.assert_array_equal(joined.logprobs[:2, 2:], 0.0)
  assert int(joined.scores['failures']) == 2 and joined.texts == ['a0.0', 'a0.1', 'b0.0', 'b0.1']
  assert joined.entropies is None
  joined = rollout_lib.concat([_rollout([[0, 1]], 'a', width=2, entropies=True),
                               _rollout([[1, 1]], 'b', width=4, entropies=True)], pad_id=-7)
  np.testing.assert_array_equal(joined.entropies, [[0.5, 0.5, 0, 0], [1.5, 1.5, 0, 0], [0.5] * 4, [1.5] * 4])


def test_dynamic_rollout_trains_on_mixed_groups_and_logs_every_offered_one():
  rounds = [_rollout([[1, 1], [0, 1], [0, 0]], 'r0'), _rollout([[0.5, 0.5], [0.2, 0.9], [1, 0]], 'r1')]
  calls = []

  def generate(index):
    calls.append(index)
    return rounds[index]

  cfg = dynamic_sampling.DynamicSamplingConfig(metric='reward', max_rounds=5)
  trained, offered, metrics = rollout_lib.dynamic_rollout(generate, cfg, num_groups=3, filter_column='total',
                                                          pad_id=0)
  assert calls == [0, 1]  # stops as soon as 3 mixed groups are in
  assert [e['meta']['id'] for e in trained.examples] == ['r01', 'r11', 'r12']
  assert len(offered.texts) == 12 and int(offered.scores['failures']) == 2
  assert metrics['dynamic_sampling/kept'] == 3 and metrics['dynamic_sampling/dropped_uniform'] == 3
  # The binary metric reads another column; graded values there are a clear error naming it.
  with pytest.raises(ValueError, match="column 'total'.*0/1"):
    rollout_lib.dynamic_rollout(lambda i: rounds[1], dynamic_sampling.DynamicSamplingConfig(), 2, 'total', 0)
  trained, _, metrics = rollout_lib.dynamic_rollout(
      lambda i: rounds[i], dynamic_sampling.DynamicSamplingConfig(max_rounds=2), 3, 'acc', 0)
  assert [e['meta']['id'] for e in trained.examples] == ['r01', 'r11', 'r12']


def test_dynamic_sampling_config_errors_are_clear():
  config = train_test._small_config()
  config.dynamic_sampling.max_rounds = 3  # set while off
  with pytest.raises(ValueError, match=r"dynamic_sampling fields \['max_rounds'\] set but .*metric is empty"):
    run_config.from_config_dict(config)
  config.dynamic_sampling.metric = 'acc'
  with pytest.raises(ValueError, match="metric 'acc' unknown"):
    run_config.from_config_dict(config)
  config.dynamic_sampling.metric = 'reward'
  assert run_config.from_config_dict(config).dynamic_sampling.max_rounds == 3


@pytest.mark.slow
def test_dynamic_sampling_in_the_loop_fills_with_mixed_groups_and_resumes_exactly(tmp_path, monkeypatch):
  original = train.Trainer.score

  def score(self, texts, metas, *args):
    # A reward a barely trained model already spreads: the completion's length mod 3 (deterministic,
    # so resuming must reproduce it).
    scores = original(self, texts, metas, *args)
    scores['total'] = np.array([len(t) % 3 for t in texts], np.float64)
    return scores
  monkeypatch.setattr(train.Trainer, 'score', score)

  def config(steps):
    c = train_test._small_config(steps=steps)
    c.warmup.steps = 2
    c.train.eval_every = 0
    c.dynamic_sampling.metric = 'reward'
    c.dynamic_sampling.prompts_per_round = 8
    c.dynamic_sampling.max_rounds = 2
    return c
  straight = [r for r in train.run(config(3), str(tmp_path / 'straight')) if 'reward_mean' in r]
  prompts = 16 // 4
  for row in straight:
    assert row['dynamic_sampling/kept'] + row['dynamic_sampling/filled'] == prompts
    assert 8 <= row['dynamic_sampling/offered'] <= 16
    # Kept groups have a spread in reward, fills do not: the trained batch's zero-std share says so.
    assert row['frac_reward_zero_std'] == pytest.approx(row['dynamic_sampling/filled'] / prompts)
  assert any(row['dynamic_sampling/kept'] > 0 for row in straight)
  train.run(config(2), str(tmp_path / 'resumed'))
  resumed = [r for r in train.run(config(3), str(tmp_path / 'resumed')) if 'reward_mean' in r]
  assert train_test._comparable(resumed) == train_test._comparable(straight)
