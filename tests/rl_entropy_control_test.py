"""Adaptive entropy control (Skywork-OR1) against a plain numpy reference of the recursion."""

import numpy as np
import pytest

from rl_reason.rl import entropy_control


def _reference(entropies, target, delta, max_coef, coef0):
  """c_k = clip(c_{k-1} + delta * sign(target - e_k), 0, max); alpha_k = c_k * [e_k < target]."""
  c, applied = coef0, []
  for e in entropies:
    c = min(max(c + delta * np.sign(target - e), 0.0), max_coef)
    applied.append(c if e < target else 0.0)
  return np.array(applied), c


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_controller_matches_reference(seed):
  rng = np.random.default_rng(seed)
  # A collapse, a rebound above the target, and a stretch exactly at it.
  entropies = np.concatenate([np.linspace(0.5, 0.01, 40), rng.uniform(0.0, 0.4, 60), np.full(5, 0.2)])
  ctl = entropy_control.EntropyController(target=0.2, delta=0.004, max_coef=0.05, coef=0.01)
  got = np.array([ctl.step(e) for e in entropies])
  expected, final = _reference(entropies, 0.2, 0.004, 0.05, 0.01)
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
  assert ctl.coef == pytest.approx(final)
  assert got.max() <= 0.05 and got.min() >= 0.0


def test_bonus_grows_while_below_target_and_is_off_above():
  ctl = entropy_control.EntropyController(target=0.3, delta=0.01, max_coef=0.03)
  assert [round(ctl.step(0.1), 6) for _ in range(5)] == [0.01, 0.02, 0.03, 0.03, 0.03]  # clipped at the max
  assert ctl.step(0.5) == 0.0 and ctl.coef == pytest.approx(0.02)  # above: no bonus, coefficient decays
  assert ctl.step(0.1) == pytest.approx(0.03)


def test_state_round_trip():
  a = entropy_control.EntropyController(target=0.2, delta=0.003, max_coef=0.05)
  for e in (0.1, 0.05, 0.3, 0.1):
    a.step(e)
  b = entropy_control.EntropyController(target=0.2, delta=0.003, max_coef=0.05)
  b.restore(a.state())
  assert [a.step(e) for e in (0.1, 0.25, 0.0)] == [b.step(e) for e in (0.1, 0.25, 0.0)]


def test_mean_entropy_averages_the_real_tokens_and_the_estimate_agrees_in_expectation():
  entropies = np.array([[0.5, 1.5, 9.0], [2.0, 9.0, 9.0]])
  mask = np.array([[1, 1, 0], [1, 0, 0]])
  assert entropy_control.mean_entropy(entropies, mask) == pytest.approx(4.0 / 3)
  assert entropy_control.mean_entropy(entropies, np.zeros_like(mask)) == 0.0
  # per-token distributions of different entropies: the sampled estimate converges to the exact mean
  rng = np.random.default_rng(1)
  dists = rng.dirichlet(np.ones(5) * 0.5, size=30)  # [N, 5]
  exact = -(dists * np.log(dists)).sum(-1)  # [N]
  draws = np.stack([rng.choice(5, size=4000, p=p) for p in dists], axis=1)  # [4000, N]
  logp = np.log(dists)[np.arange(30)[None], draws]
  ones = np.ones_like(draws)
  assert entropy_control.sampled_entropy(logp, ones) == pytest.approx(
      entropy_control.mean_entropy(np.broadcast_to(exact, draws.shape), ones), rel=0.02)


def test_sampled_entropy_is_the_mean_negative_logprob_over_real_tokens():
  logprobs = np.array([[-0.5, -1.5, 0.0], [-2.0, 0.0, 0.0]])
  mask = np.array([[1, 1, 0], [1, 0, 0]])
  assert entropy_control.sampled_entropy(logprobs, mask) == pytest.approx(4.0 / 3)
  # Unbiased: sampling from a known distribution recovers its entropy.
  rng = np.random.default_rng(0)
  p = np.array([0.7, 0.2, 0.1])
  draws = rng.choice(3, size=(400, 50), p=p)
  estimate = entropy_control.sampled_entropy(np.log(p)[draws], np.ones_like(draws))
  assert estimate == pytest.approx(-(p * np.log(p)).sum(), rel=0.02)


@pytest.mark.parametrize('kwargs,message', [
    ({'target': 0.0, 'delta': 0.001, 'max_coef': 0.05}, 'target, delta, max_coef > 0'),
    ({'target': 0.2, 'delta': 0.001, 'max_coef': 0.05, 'coef': 0.5}, 'initial entropy coefficient'),
])
def test_bad_settings_are_errors(kwargs, message):
  with pytest.raises(ValueError, match=message):
    entropy_control.EntropyController(**kwargs)
