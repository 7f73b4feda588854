"""Group-aware shaping and model-signal rewards: hand-worked values, reference ports, properties."""

import collections
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rl_reason.rewards import model_signals, shaping


# ------------------------------------------------------------------ DAPO
def test_dapo_overlong_by_hand():
  # L_max = 20, L_c = 4: free up to 16 tokens, linear to -1 at 20, -1 beyond.
  got = shaping.dapo_overlong([10, 16, 18, 20, 21], max_length=20, cache_length=4)
  np.testing.assert_allclose(got, [0.0, 0.0, -0.5, -1.0, -1.0])
  np.testing.assert_allclose(shaping.dapo_overlong([18], 20, 4, penalty_factor=2.0), [-1.0])
  with pytest.raises(ValueError, match='cache_length'):
    shaping.dapo_overlong([1], 4, 8)
  with pytest.raises(ValueError, match='non-negative'):
    shaping.dapo_overlong([-1], 20, 4)


# ------------------------------------------------------------------ LASER family
def test_laser_by_hand():
  base, correct, lengths = [1.0, -0.5, -1.0, 1.0], [1, 0, 0, 1], [5, 5, 5, 15]
  np.testing.assert_allclose(shaping.laser(base, correct, lengths, target_length=10), [1.5, -0.5, -1.0, 1.0])


def test_difficulty_buckets_and_laser_d():
  correct = [1, 1, 0, 1, 0, 0, 0, 0, 0]  # accuracies 2/3 (easy), 1/3 (medium), 0 (hard)
  np.testing.assert_array_equal(shaping.difficulty_buckets(correct, 3), [0, 0, 0, 1, 1, 1, 2, 2, 2])
  base = [1.0, 1.0, -0.5, 1.0, -0.5, -0.5, -0.5, -1.0, -0.5]
  lengths = [4, 6, 9, 9, 12, 3, 30, 40, 10]
  targets = {'easy': 5, 'medium': 10, 'hard': 20}
  np.testing.assert_allclose(shaping.laser_d(base, correct, lengths, 3, targets),
                             [1.5, 1.0, -0.5, 1.5, -0.5, -0.5, -0.5, -1.0, -0.5])
  # LASER-DE: wrong (-0.5) and longer than the target, not a repetition loop: +alpha.
  repetitive = [False] * 6 + [True, False, False]
  np.testing.assert_allclose(shaping.laser_de(base, correct, lengths, 3, targets, repetitive),
                             [1.5, 1.0, 0.0, 1.5, 0.0, -0.5, -0.5, -1.0, -0.5])
  with pytest.raises(ValueError, match='missing'):
    shaping.laser_d(base, correct, lengths, 3, {'easy': 5})


def test_laser_d_target_lengths_by_hand():
  # G = 3. Easy group (acc 2/3): correct lengths 4 and 8; n_easy = 2, so floor(ratio * 2) >= 1
  # needs ratio >= 1/2: 2/3 of the bucket is correct and <= 8 tokens, only 1/3 at <= 4: target 8.
  # Medium (acc 1/3) and hard buckets need ratio 1 (n_b = 1): never reached, so the largest candidate.
  correct = [1, 1, 0, 1, 0, 0]
  lengths = [4, 8, 2, 6, 1, 1]
  got = shaping.laser_d_target_lengths(correct, lengths, 3, candidates=[10, 2, 4, 6, 8])
  assert got == {'easy': 8, 'medium': 10, 'hard': 10}
  got = shaping.laser_d_target_lengths([1] * 6, [3, 5, 7, 1, 2, 9], 3, candidates=[2, 4, 6, 8, 10])
  assert got['easy'] == 4  # 3/6 correct within 4 tokens: floor(0.5 * 2) = 1


def _laser_repetition_reference(tokens, n=4):
  """A line-by-line port of the Laser code's detect_token_ngram_repetition_optimized_reversed."""
  if len(tokens) <= n * 2:
    return len(tokens)
  if len(tokens) < 30:
    n = 2
  elif len(tokens) < 100:
    n = 3
  else:
    n = min(4, n)
  positions = collections.defaultdict(list)
  threshold = 2 if len(tokens) < 200 else 3
  for i in range(len(tokens) - n, -1, -1):
    ngram = tuple(tokens[i:i + n])
    if len(set(ngram)) == 1 and len(ngram) > 2:
      continue
    positions[ngram].append(i)
    if len(positions[ngram]) >= threshold:
      found = sorted(positions[ngram])
      for j in range(len(found) - 1):
        if found[j + 1] - found[j] < len(tokens) // 3:
          return min(found)
  if len(tokens) >= n * 4:
    seen = {}
    for i in range(len(tokens) - n * 2, -1, -1):
      pattern = tuple(tokens[i:i + n * 2])
      if pattern in seen:
        return min(i, seen[pattern])
      seen[pattern] = i
  return len(tokens)


def test_ngram_repetition_by_hand():
  assert shaping.ngram_repetition_start(list(range(50))) == 50  # no repetition
  assert shaping.ngram_repetition_start([1, 2, 3] * 20) == 54  # (1,2,3) at 57 and 54: 3 apart < 60 // 3
  assert shaping.ngram_repetition_start([7] * 8) == 8  # too short to judge


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=260), st.integers(2, 5))
def test_ngram_repetition_matches_the_laser_code(tokens, n):
  assert shaping.ngram_repetition_start(tokens, n) == _laser_repetition_reference(tokens, n)


# ------------------------------------------------------------------ length terms
def test_kimi_length_term_by_hand():
  # lambda = 0.5 - (L - 10) / 20 = 0.5, 0, -0.5; wrong rows keep only the negative part.
  np.testing.assert_allclose(shaping.kimi_length_term([1, 0, 1], [10, 20, 30], 3), [0.2, 0.0, -0.2], atol=1e-6)
  np.testing.assert_allclose(shaping.kimi_length_term([0, 0, 1], [30, 10, 20], 3), [-0.2, 0.0, 0.0], atol=1e-6)
  np.testing.assert_array_equal(shaping.kimi_length_term([1, 0], [7, 7], 2), [0.0, 0.0])  # equal lengths
  np.testing.assert_array_equal(shaping.kimi_length_term([1], [7], 1), [0.0])  # singleton group


def test_alp_by_hand():
  # p_solved = 1/2 = max(1/2, 1/K); r = 1[correct] - (0.1 / 100) * 0.5 * L.
  np.testing.assert_allclose(shaping.alp([1, 0], [100, 200], 2, beta=0.1, length_norm=100), [0.95, -0.1])
  # Unsolved group: max(0, 1/K) = 1/2 still charges length.
  np.testing.assert_allclose(shaping.alp([0, 0], [100, 0], 2, beta=0.1, length_norm=100), [-0.05, 0.0])


def test_grpo_lambda_selects_the_most_correct_groups():
  correct = [1, 1, 1, 0, 0, 0]
  lengths = [10, 20, 10, 20, 10, 20]
  rewards, selected = shaping.grpo_lambda(correct, lengths, 2, fraction=1 / 3)
  np.testing.assert_array_equal(selected, [True, False, False])
  np.testing.assert_allclose(rewards, [1.2, 0.8, 1.0, 0.0, 0.0, 0.0], atol=1e-6)
  _, none = shaping.grpo_lambda(correct, lengths, 2, fraction=0.0)
  _, everything = shaping.grpo_lambda(correct, lengths, 2, fraction=1.0)
  assert not none.any() and everything.all()


def test_dast_by_hand():
  # p = 1/2, L_r = 100, L_b = 0.5 * 100 + 0.5 * 1000 = 550; lambda = -450/550, -250/550.
  got = shaping.dast([3.0, 1.0], [100, 300], 2, max_length=1000)
  lam = np.array([-450 / 550, -250 / 550])
  np.testing.assert_allclose(got, [max(-0.5 * lam[0] + 0.5, 0.1), min(0.9 * lam[1] - 0.1, -0.1)])
  # No full-reward response: L_b = L_max; a response at L_max gets min(-0.1, -0.1).
  np.testing.assert_allclose(shaping.dast([0.0, 2.0], [1000, 0], 2, max_length=1000), [-0.1, -1.0])
  # Long full-reward responses still get at least 0.1.
  assert shaping.dast([3.0, 3.0], [10, 5000], 2, max_length=1000)[1] == pytest.approx(0.1)


# ------------------------------------------------------------------ Trust-GRPO
def test_trust_grpo_by_hand():
  outcome = [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
  thinking = [0.2, 0.4, 0.8, 0.6, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1]
  rewards, gamma = shaping.trust_grpo(outcome, thinking, 4, step=0, alpha=0.3, anneal_steps=100)
  # Group 0: mu_c = 0.3 < mu_w = 0.7 -> gamma = exp(-0.4). Group 1: all correct -> R^t zeroed.
  # Group 2: mu_c = 0.9 >= mu_w = 0.1 -> gamma = 1.
  np.testing.assert_allclose(gamma, [math.exp(-0.4), 1.0, 1.0])
  expected = np.array(outcome)
  expected[:4] += math.exp(-0.4) * 0.3 * np.array(thinking[:4])
  expected[8:] += 0.3 * np.array(thinking[8:])
  np.testing.assert_allclose(rewards, expected)
  annealed, _ = shaping.trust_grpo(outcome, thinking, 4, step=100, alpha=0.3, anneal_steps=100)
  np.testing.assert_allclose(annealed - outcome, (expected - outcome) * math.exp(-1))
  kept, _ = shaping.trust_grpo(outcome, thinking, 4, step=0, alpha=0.3, anneal_steps=100, zero_extreme_groups=False)
  np.testing.assert_allclose(kept[4:8], np.array(outcome[4:8]) + 0.3 * 0.9)


class RecordingScorer:
  """A stub thinking reward model: returns 0.5 and records what it was asked."""

  def __init__(self, value=0.5):
    self.calls, self.value = [], value

  def score(self, prompts, completions):
    self.calls.append((list(prompts), list(completions)))
    return [self.value] * len(prompts)


def test_thinking_rewards_query_only_plausible_answers():
  scorer = RecordingScorer()
  assert isinstance(scorer, model_signals.Scorer)
  outcome = [1.0, 0.1, 0.2, 0.0]
  values = model_signals.thinking_rewards(scorer, ['p'] * 4, ['a', 'b', 'c', 'd'], outcome)
  np.testing.assert_array_equal(values, [0.5, 0.0, 0.5, 0.0])
  assert scorer.calls == [(['p', 'p'], ['a', 'c'])]
  rewards, gamma = model_signals.trust_grpo_rewards(scorer, ['p'] * 4, ['a', 'b', 'c', 'd'], outcome, 4, step=0)
  assert gamma.shape == (1,) and rewards.shape == (4,)


@pytest.mark.parametrize('bad, match', [([0.5], 'shape'), ([0.5, float('nan')], 'finite'), ([0.5, 1.5], r'\[0.0, 1.0\]')])
def test_a_scorer_that_breaks_its_contract_is_an_error(bad, match):
  class Bad:

    def score(self, prompts, completions):
      return bad

  with pytest.raises(ValueError, match=match):
    model_signals.query(Bad(), ['p', 'q'], ['a', 'b'])


def test_listener_rewards():
  np.testing.assert_allclose(model_signals.listener_rewards(RecordingScorer(0.25), ['p', 'q'], ['t', 'u'], [1.0, 0.0],
                                                            weight=2.0), [1.5, 0.5])


# ------------------------------------------------------------------ Co-Reward
def test_co_reward_by_hand():
  original, rephrased = shaping.co_reward(['4', '4', '5', 'a', None, 'b'], ['4', '5', '5', None, None, None], 3)
  # Group 0: the rephrased majority is '5', the original majority '4'. Group 1: no rephrased answer.
  np.testing.assert_array_equal(original, [0, 0, 1, 0, 0, 0])
  np.testing.assert_array_equal(rephrased, [1, 0, 0, 0, 0, 0])
  tie, _ = shaping.co_reward(['x', 'y'], ['y', 'x'], 2)  # tie in the rephrased votes: 'y' was seen first
  np.testing.assert_array_equal(tie, [0, 1])


# ------------------------------------------------------------------ logprob and entropy rewards
def test_confidence_by_hand():
  logprobs = np.log([[0.5, 0.25, 1.0], [0.9, 0.9, 0.9]])
  mask = np.array([[1, 1, 0], [0, 0, 0]])
  mean_prob = model_signals.confidence(logprobs, mask, 'mean_prob')
  geometric = model_signals.confidence(logprobs, mask, 'geometric')
  assert mean_prob[0] == pytest.approx(0.375) and geometric[0] == pytest.approx(math.sqrt(0.125))
  assert math.isnan(mean_prob[1]) and math.isnan(geometric[1])  # no answer token: not applicable
  with pytest.raises(ValueError, match='mode'):
    model_signals.confidence(logprobs, mask, 'median')


def test_pear_by_hand():
  entropies = np.array([[1.0, 3.0, 2.0], [1.0, 1.0, 1.0]])
  think = np.array([[1, 1, 0], [0, 0, 0]])
  answer = np.array([[0, 0, 1], [1, 1, 1]])
  got = model_signals.pear([1.0, 0.0], entropies, think, answer, lambda_think=0.1, lambda_answer=0.05)
  np.testing.assert_allclose(got, [1.0 - 0.1 * 2.0 + 0.05 * 2.0, 0.0 + 0.05 * 1.0])
  with pytest.raises(ValueError, match='non-negative'):
    model_signals.pear([1.0], entropies[:1], think[:1], answer[:1], lambda_think=-1.0)


# ------------------------------------------------------------------ properties
GROUPS = st.integers(1, 4).flatmap(lambda g: st.integers(1, 4).map(lambda p: (g, p)))


@settings(max_examples=300, deadline=None)
@given(GROUPS.flatmap(lambda gp: st.tuples(st.just(gp[0]), st.lists(st.booleans(), min_size=gp[0] * gp[1],
                                                                      max_size=gp[0] * gp[1]),
                                           st.lists(st.integers(0, 10**6), min_size=gp[0] * gp[1],
                                                    max_size=gp[0] * gp[1]))))
def test_length_shaping_bounds(case):
  g, correct, lengths = case
  correct = np.array(correct, float)
  kimi = shaping.kimi_length_term(correct, lengths, g)
  assert (np.abs(kimi) <= 0.2 + 1e-9).all() and (kimi[correct == 0] <= 0).all()
  overlong = shaping.dapo_overlong(lengths, 4096, 1024)
  assert ((overlong <= 0) & (overlong >= -1)).all()
  dast = shaping.dast(correct * 3, lengths, g, max_length=4096)
  assert (dast[correct == 1] >= 0.1).all() and (dast[correct == 0] <= -0.1).all() and np.isfinite(dast).all()
  alp = shaping.alp(correct, lengths, g, beta=0.1, length_norm=4096)
  assert (alp <= correct).all()
  base = np.where(correct == 1, 1.0, -0.5)
  targets = {'easy': 100, 'medium': 1000, 'hard': 10**5}
  laser_d = shaping.laser_d(base, correct, lengths, g, targets)
  laser_de = shaping.laser_de(base, correct, lengths, g, targets, np.zeros(len(base), bool))
  assert (laser_de >= laser_d).all() and (laser_d >= base).all()
  rewards, selected = shaping.grpo_lambda(correct, lengths, g, fraction=0.5)
  assert selected.sum() == math.ceil(0.5 * (len(correct) // g))
  ratio = correct.reshape(-1, g).mean(axis=1)
  assert not selected.any() or ratio[selected].min() >= ratio[~selected].max(initial=-1.0)
  np.testing.assert_allclose(rewards, correct + np.where(np.repeat(selected, g), kimi, 0.0))


@settings(max_examples=300, deadline=None)
@given(GROUPS.flatmap(lambda gp: st.tuples(
    st.just(gp[0]), st.lists(st.floats(0, 1), min_size=gp[0] * gp[1], max_size=gp[0] * gp[1]),
    st.lists(st.floats(0, 1), min_size=gp[0] * gp[1], max_size=gp[0] * gp[1]))), st.integers(0, 10**6))
def test_trust_grpo_stays_between_outcome_and_full_bonus(case, step):
  g, outcome, thinking = case
  rewards, gamma = shaping.trust_grpo(outcome, thinking, g, step)
  outcome, thinking = np.array(outcome), np.array(thinking)
  assert ((gamma > 0) & (gamma <= 1)).all()
  assert (rewards >= outcome - 1e-12).all() and (rewards <= outcome + 0.3 * thinking + 1e-12).all()


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4).flatmap(lambda g: st.tuples(
    st.just(g), st.lists(st.sampled_from(['1', '2', None]), min_size=g * 2, max_size=g * 2),
    st.lists(st.sampled_from(['1', '2', None]), min_size=g * 2, max_size=g * 2))))
def test_co_reward_is_binary_and_symmetric(case):
  g, answers, rephrased = case
  a, b = shaping.co_reward(answers, rephrased, g)
  assert set(np.unique(a)) <= {0.0, 1.0} and set(np.unique(b)) <= {0.0, 1.0}
  b_swapped, a_swapped = shaping.co_reward(rephrased, answers, g)
  np.testing.assert_array_equal(a, a_swapped)
  np.testing.assert_array_equal(b, b_swapped)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(-1e4, 0.0), min_size=1, max_size=8).flatmap(
    lambda lp: st.tuples(st.just(lp), st.lists(st.booleans(), min_size=len(lp), max_size=len(lp)))))
def test_confidence_is_a_probability(case):
  logprobs, mask = case
  for mode in ('mean_prob', 'geometric'):
    value = model_signals.confidence(np.array([logprobs]), np.array([mask], float), mode)[0]
    assert math.isnan(value) if not any(mask) else 0.0 <= value <= 1.0


def test_shaping_rejects_bad_inputs():
  with pytest.raises(ValueError, match='NaN'):
    shaping.laser([float('nan')], [1], [1], 10)
  with pytest.raises(ValueError, match='0/1'):
    shaping.alp([0.5], [1], 1, 0.1, 1)
  with pytest.raises(ValueError, match='groups'):
    shaping.kimi_length_term([1, 0, 1], [1, 2, 3], 2)
  with pytest.raises(ValueError, match='answers'):
    shaping.co_reward(['a'], [], 1)
