"""RuleReasoner domain-weighted sampling: hand-worked weights, a numpy reference, draws, determinism, resume."""

import collections
import json
import math

import numpy as np
import pytest

from rl_reason import curricula, tasks
from rl_reason.curricula import domain_weighted as dw
from rl_reason.curricula import presets


def _sampler(**kwargs):
  cfg = {'domains': ('A', 'B'), 'update_every': 2, 'buffer_size': 2, **kwargs}
  return curricula.get('domain_weighted', cfg)


def _observe(c, step, domains, accuracy):
  c.observe(step, {}, {'domain': np.array(domains), 'accuracy': np.array(accuracy, float)})


def _softmax_a(v_a, v_b, eps=0.1, tau=0.3):
  return math.exp((v_a + eps) / tau) / (math.exp((v_a + eps) / tau) + math.exp((v_b + eps) / tau))


def test_harmonic_weights_by_hand():
  c = _sampler()
  np.testing.assert_allclose(c.weights, [0.5, 0.5])
  # K = 2: r_target = 1 * (1 + 1/2) / 2 = 0.75. Step 0 is not an update step (S = 2): nothing changes.
  _observe(c, 0, ['A', 'B'], [[0, 0], [0, 0]])
  np.testing.assert_allclose(c.weights, [0.5, 0.5])
  # Step 1: record A 2/2, B 1/2 -> r = 1.0, 0.5; v = 0, 0.25.
  _observe(c, 1, ['A', 'B'], [[1, 1], [0, 1]])
  np.testing.assert_allclose(c.weights[0], _softmax_a(0.0, 0.25), rtol=1e-12)
  # Step 3: newest record A 0/2, B 2/2 (decay 1), older A 2/2, B 1/2 (decay 1/2), 4 samples each:
  # r_A = (0 + 2/2) / 4 = 0.25, r_B = (2 + 1/2) / 4 = 0.625; v = 0.5, 0.125.
  _observe(c, 2, ['A', 'B'], [[1, 1], [1, 1]])  # not an update step
  _observe(c, 3, ['A', 'B'], [[0, 0], [1, 1]])
  np.testing.assert_allclose(c.weights[0], _softmax_a(0.5, 0.125), rtol=1e-12)
  # Step 5: the step-1 record leaves the buffer (K = 2). Newest A 1/2, B 0/2; older A 0/2, B 2/2:
  # r_A = (1 + 0) / 4 = 0.25, r_B = (0 + 1) / 4 = 0.25 -> equal weights.
  _observe(c, 4, ['A', 'B'], [[0, 0], [0, 0]])
  _observe(c, 5, ['B', 'A'], [[0, 0], [1, 0]])
  np.testing.assert_allclose(c.weights, [0.5, 0.5], rtol=1e-12)
  assert len(c.buffer) == 2


def _reference_weights(records, domains, buffer_size, base=1.0, eps=0.1, tau=0.3):
  """Line-by-line the released compute_weights (harmonic_series), with r_d = 0 for unseen domains."""
  target = base * sum(1 / i for i in range(1, buffer_size + 1)) / buffer_size
  sums, counts = collections.defaultdict(float), collections.defaultdict(int)
  records = records[-buffer_size:]
  for age, record in enumerate(reversed(records)):
    decay = 1.0 if age == 0 else 1.0 / (age + 1)
    for domain, reward in record:
      sums[domain] += reward * decay
      counts[domain] += 1
  values = [max(0.0, target - (sums[d] / counts[d] if counts[d] else 0.0)) for d in domains]
  unnormalized = [math.exp((v + eps) / tau) for v in values]
  return np.array(unnormalized) / sum(unnormalized)


def test_harmonic_weights_match_a_reference_on_random_runs():
  rng = np.random.default_rng(3)
  domains = ('prontoqa', 'proofwriter', 'ordering', 'boxes')
  c = curricula.get('domain_weighted', {'domains': domains, 'update_every': 3, 'buffer_size': 4})
  records = []
  for step in range(40):
    prompt_domains = rng.choice(domains[:3] if step < 20 else domains, size=6)  # 'boxes' unseen at first
    accuracy = (rng.random((6, 4)) < rng.random((6, 1))).astype(float)
    c.observe(step, {}, {'domain': prompt_domains, 'accuracy': accuracy})
    if (step + 1) % 3 == 0:
      records.append([(d, a) for d, row in zip(prompt_domains, accuracy) for a in row])
      np.testing.assert_allclose(c.weights, _reference_weights(records, domains, 4), rtol=1e-12)
  assert c.weights.sum() == pytest.approx(1.0)


def test_unseen_domain_counts_as_zero_reward():
  c = curricula.get('domain_weighted', {'domains': ('A', 'B', 'C'), 'update_every': 1, 'buffer_size': 1})
  _observe(c, 0, ['A', 'B'], [[1, 1], [1, 0]])  # target = 1; v = 0, 0.5, and 1 for unseen C
  raw = np.exp((np.array([0.0, 0.5, 1.0]) + 0.1) / 0.3)
  np.testing.assert_allclose(c.weights, raw / raw.sum(), rtol=1e-12)


def test_ema_variant_by_hand():
  c = _sampler(variant='ema', update_every=1)
  _observe(c, 0, ['A', 'B'], [[1, 1], [0, 1]])  # first means: 1, 0.5; target = base = 1; v = 0, 0.5
  np.testing.assert_allclose(c.weights[0], _softmax_a(0.0, 0.5), rtol=1e-12)
  _observe(c, 1, ['A', 'B'], [[0, 0], [1, 1]])  # EMA 0.5: A 0.5 * 1 + 0.5 * 0 = 0.5, B 0.75; v = 0.5, 0.25
  np.testing.assert_allclose(c.weights[0], _softmax_a(0.5, 0.25), rtol=1e-12)
  _observe(c, 2, ['A', 'A'], [[1, 1], [1, 1]])  # B absent: its EMA stays 0.75; A 0.75; equal
  np.testing.assert_allclose(c.weights, [0.5, 0.5], rtol=1e-12)
  with pytest.raises(ValueError, match='clear_buffer applies to the harmonic variant'):
    _sampler(variant='ema', clear_buffer=True)


def test_clear_buffer_reproduces_the_released_trainer():
  # The released trainer empties the buffer every step: only the newest record counts, target still H_K / K.
  c = _sampler(clear_buffer=True, update_every=1, buffer_size=4)
  _observe(c, 0, ['A', 'B'], [[0, 0], [0, 0]])
  _observe(c, 1, ['A', 'B'], [[1, 1], [1, 0]])  # target = (1 + 1/2 + 1/3 + 1/4) / 4 = 25/48
  target = 25 / 48
  np.testing.assert_allclose(c.weights[0], _softmax_a(0.0, target - 0.5), rtol=1e-12)
  assert len(c.buffer) == 1


def test_initial_weights():
  sizes = (100, 400)
  inverse = curricula.get('domain_weighted', {'domains': ('A', 'B'), 'init': 'inverse_sqrt', 'domain_sizes': sizes})
  np.testing.assert_allclose(inverse.weights, [2 / 3, 1 / 3])  # 1/10 : 1/20
  softmax = curricula.get('domain_weighted', {'domains': ('A', 'B'), 'init': 'softmax_inverse_sqrt',
                                              'domain_sizes': sizes})
  np.testing.assert_allclose(softmax.weights[0], math.exp(0.1) / (math.exp(0.1) + math.exp(0.05)))
  with pytest.raises(ValueError, match='needs one positive size per domain'):
    curricula.get('domain_weighted', {'domains': ('A', 'B'), 'init': 'inverse_sqrt'})
  with pytest.raises(ValueError, match='domain_sizes are used by the inverse_sqrt inits only'):
    curricula.get('domain_weighted', {'domains': ('A', 'B'), 'domain_sizes': sizes})


def test_quota_counts_as_the_released_sampler():
  np.testing.assert_array_equal(dw.quota_counts(np.array([0.5, 0.3, 0.2]), 7), [4, 2, 1])  # 3, 2, 1 + 1 to A
  np.testing.assert_array_equal(dw.quota_counts(np.full(4, 0.25), 6), [2, 2, 1, 1])  # ties: domain order
  np.testing.assert_array_equal(dw.quota_counts(np.array([0.1, 0.9]), 10), [1, 9])


def test_plan_draws_quota_domains_in_a_seeded_order():
  def build(seed):
    c = curricula.get('domain_weighted', {'domains': ('A', 'B', 'C'), 'update_every': 1, 'buffer_size': 2,
                                          'seed': seed})
    _observe(c, 0, ['A', 'B', 'C'], [[1, 1], [0, 0], [1, 0]])
    return c

  c = build(5)
  counts = dw.quota_counts(c.weights, 16)
  # K = 2: target 0.75; v = 0, 0.75, 0.25 -> w ~ (0.065, 0.787, 0.149); 16 w ~ (1.03, 12.59, 2.38)
  assert counts.tolist() == [1, 13, 2]  # floors 1, 12, 2, then the one left to the largest weight
  orders = set()
  for step in range(1, 6):
    plan = c.plan(step, 16)
    assert collections.Counter(plan.domains) == dict(zip('ABC', counts.tolist()))
    assert plan == c.plan(step, 16)  # a function of (seed, step, weights)
    orders.add(plan.domains)
  assert len(orders) > 1  # the order is reshuffled per step
  assert plan.metrics == {f'domain/{d}/weight': pytest.approx(w) for d, w in zip('ABC', c.weights)}
  other_seed = build(6)
  np.testing.assert_array_equal(other_seed.weights, c.weights)
  assert other_seed.plan(1, 16).domains != c.plan(1, 16).domains
  assert sorted(other_seed.plan(1, 16).domains) == sorted(c.plan(1, 16).domains)


def test_sample_allocation_follows_the_weights():
  c = curricula.get('domain_weighted', {'domains': ('A', 'B'), 'update_every': 1, 'allocation': 'sample', 'seed': 1})
  _observe(c, 0, ['A', 'B'], [[1, 1], [0, 0]])
  draws = np.array(c.plan(1, 20000).domains)
  assert abs((draws == 'A').mean() - c.weights[0]) < 0.02
  assert c.plan(1, 50) == c.plan(1, 50) and c.plan(1, 50) != c.plan(2, 50)


def test_observe_checks_its_columns():
  c = _sampler()
  with pytest.raises(ValueError, match="domains \\['Z'\\] not among"):
    _observe(c, 0, ['A', 'Z'], [[1, 1], [0, 1]])
  with pytest.raises(ValueError, match='needs the column "domain"'):
    c.observe(1, {}, {'accuracy': np.ones((2, 2))})
  with pytest.raises(ValueError, match='3 domains for 2 prompts'):
    _observe(c, 2, ['A', 'B', 'A'], [[1, 1], [0, 1]])


def test_restore_mid_buffer_gives_identical_future_draws():
  rng = np.random.default_rng(0)
  feed = [(rng.choice(['A', 'B'], 4), rng.integers(0, 2, (4, 3))) for _ in range(14)]
  reference, resumed = _sampler(), _sampler()
  for step, (domains, accuracy) in enumerate(feed):
    if step == 4:  # the buffer holds two records here
      saved = json.loads(json.dumps(resumed.state()))
      assert len(saved['buffer']) == 2
      resumed = _sampler()
      resumed.restore(saved)
    for c in (reference, resumed):
      _observe(c, step, domains, accuracy)
    assert reference.plan(step + 1, 9) == resumed.plan(step + 1, 9)
  np.testing.assert_array_equal(reference.weights, resumed.weights)


def test_rulereasoner_preset_drives_the_rules_task():
  c = curricula.get(*presets.rulereasoner(seed=2))
  task = tasks.get('rules')
  plan = c.plan(0, 8)
  examples = [task.example_for(domain, seed) for seed, domain in enumerate(plan.domains)]
  assert [e['meta']['domain'] for e in examples] == list(plan.domains)
  assert c.cfg.update_every == 8 and c.cfg.buffer_size == 4 and (c.cfg.epsilon, c.cfg.tau) == (0.1, 0.3)
