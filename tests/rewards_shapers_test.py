"""The shaping schemes the loop applies (rewards.shapers): config validation, terms by hand, spans, state."""

import dataclasses
import math

import numpy as np
import pytest

from configs import llm_grpo, vlm_grpo
from configs.recipes import rulereasoner
from rl_reason import run_config
from rl_reason.rewards import shapers


def _inputs(total, lengths, groups, *, scores=None, tokens=None, logprobs=None, step=0, text=None):
  lengths = np.asarray(lengths)
  width = int(lengths.max()) if tokens is None else np.asarray(tokens).shape[1]
  tokens = np.zeros((len(lengths), width), np.int32) if tokens is None else np.asarray(tokens)
  logprobs = np.zeros(tokens.shape) if logprobs is None else np.asarray(logprobs, np.float64)
  return shapers.StepInputs(total=np.asarray(total, np.float64), scores=scores or {}, lengths=lengths, tokens=tokens,
                            logprobs=logprobs, num_generations=groups, step=step,
                            token_text=text or (lambda t: 'x'))


def _shaper(section, max_new_tokens=16):
  return shapers.Shaper(shapers.parse(section, max_new_tokens=max_new_tokens))


# ------------------------------------------------------------------ config errors
@pytest.mark.parametrize('section,match', [
    ({'dapo': {}}, r"shaping.dapo: unknown shaping scheme; valid: \['alp', 'co_reward', 'confidence', 'dapo_overlong'"),
    ({'dapo_overlong': {}}, r"shaping.dapo_overlong: missing required field\(s\) \['cache_length'\]"),
    ({'dapo_overlong': {'cache_length': 4, 'cache': 1}}, r"shaping.dapo_overlong: unknown field\(s\) \['cache'\]; "
                                                         r"valid fields: \['cache_length', 'max_length'"),
    ({'dapo_overlong': {'cache_length': 17}},
     r'shaping.dapo_overlong: need 0 < cache_length <= max_length, got 17, 16'),
    ({'dapo_overlong': 4}, r'shaping.dapo_overlong must be a mapping'),
    ({'dapo_overlong': {'cache_length': 4, 'end_step': -1}}, r'shaping.dapo_overlong.end_step must be'),
    ({'listener': {}}, r"shaping.listener: missing required field\(s\) \['weight'\]"),
    ({'listener': {'weight': -0.5}}, r'shaping.listener: weight must be finite and in \[0.0, None\]'),
    ({'co_reward': {'coef': -1.0}}, r'shaping.co_reward: coef must be finite and in \[0.0, None\]'),
    ({'pear': {'lambda_think': -0.1}}, r'shaping.pear: lambda_think must be'),
    ({'kimi_length': {'correct': 'no_such_reward'}}, r"shaping.kimi_length: correct: reward 'no_such_reward' unknown"),
    ({'trust_grpo': {'thinking': 'jigsaw_r1'}}, r"thinking: reward 'jigsaw_r1' ranges over \[0.0, 1.5\]"),
    ({'trust_grpo': {}}, r"shaping.trust_grpo: set one of thinking .* and judge .*, got thinking='', judge=''"),
    ({'trust_grpo': {'thinking': 'rouge_l', 'judge': '/nowhere'}}, r'set one of thinking'),
    ({'trust_grpo': {'thinking': 'rouge_l', 'judge_max_new_tokens': 8}},
     r"judge_template, judge_max_new_tokens and judge_batch_size apply to a judge, not to the reward "
     r"thinking='rouge_l'"),
    ({'trust_grpo': {'thinking': 'rouge_l', 'judge_batch_size': 8}}, r'judge_batch_size apply to a judge'),
    ({'confidence': {'mode': 'median'}}, r"shaping.confidence: mode 'median' unknown"),
    ({'grpo_lambda': {'correct': 'math_equiv', 'fraction': 1.5}}, r'shaping.grpo_lambda: fraction must be'),
    ({'laser_d': {'correct': 'math_equiv', 'lower_bound': 4, 'upper_bound': 15, 'interval': 4}},
     r'shaping.laser_d: laser_d: upper_bound - lower_bound \(11\) must be a multiple of interval'),
    ({'laser': {'correct': 'math_equiv', 'target_length': 8},
      'laser_de': {'correct': 'math_equiv', 'lower_bound': 4, 'upper_bound': 8, 'interval': 4}},
     r"shaping: \['laser', 'laser_de'\] add overlapping terms"),
], ids=lambda v: str(v)[:40])
def test_config_errors_name_the_key(section, match):
  config = vlm_grpo.get_config()
  config.shaping = section
  with pytest.raises(ValueError, match=match):
    run_config.from_config_dict(config)


def test_a_scheme_the_loop_cannot_feed_is_refused_when_it_registers():
  with pytest.raises(ValueError, match=r"shaping scheme 'needs_a_scorer' needs \['scorer'\], which the training loop "
                                       r'does not provide'):
    shapers.register('needs_a_scorer', shapers.DapoOverlongConfig, needs=('scores', 'scorer'), source='test')
  assert 'needs_a_scorer' not in shapers.names()


def test_per_reward_advantages_would_ignore_shaping_and_are_refused():
  config = llm_grpo.get_config()
  config.shaping = {'kimi_length': {'correct': 'math_equiv'}}
  config.rl.advantage = 'normalize_then_sum'
  with pytest.raises(ValueError, match=r"shaping \['kimi_length'\] .* rl.advantage='normalize_then_sum'"):
    run_config.from_config_dict(config)
  config.rl.advantage = 'grpo'
  assert [s.name for s in run_config.from_config_dict(config).shaping] == ['kimi_length']


def test_co_reward_needs_paired_groups_and_refuses_what_would_split_them():
  config = llm_grpo.get_config()
  config.shaping = {'co_reward': {}}
  assert [s.name for s in run_config.from_config_dict(config).shaping] == ['co_reward']
  config.rollout.batch_size = 24  # 3 prompts of G = 8
  with pytest.raises(ValueError, match=r"shaping \['co_reward'\] pairs each prompt .* = 3\) must be even"):
    run_config.from_config_dict(config)
  config = llm_grpo.get_config()
  config.shaping = {'co_reward': {}}
  config.dynamic_sampling.metric = 'accuracy'
  with pytest.raises(ValueError, match=r'which dynamic sampling would split .* dynamic_sampling.metric'):
    run_config.from_config_dict(config)
  config = rulereasoner.get_config('tiny')
  config.dynamic_sampling.metric = ''
  config.shaping = {'co_reward': {}}
  with pytest.raises(ValueError, match=r"the curriculum 'domain_weighted' draws each prompt's domain"):
    run_config.from_config_dict(config)


def test_co_reward_votes_across_each_question_and_its_rephrasing():
  """Groups 2k and 2k+1 are a question and its rephrasing; answers vote by math_answer.answer_key."""
  texts = [r'\boxed{4}', r'\boxed{5}', r'so \boxed{4.0}', 'no answer',  # pair 0: 4 wins both ties (seen first)
           '<answer>1/2</answer>', r'\boxed{\frac{1}{2}}', r'\boxed{0.5}', r'\boxed{3}']  # pair 1: 1/2 = 0.5
  x = dataclasses.replace(_inputs(np.zeros(8), [3] * 8, 2), texts=texts)
  term, metrics = _shaper({'co_reward': {'coef': 0.5}}).schemes[0][1].term(x)
  np.testing.assert_array_equal(term, 0.5 * np.array([1, 0, 1, 0, 1, 1, 1, 0]))
  assert metrics == {'answered_frac': 7 / 8, 'agreement_mean': 5 / 8}
  with pytest.raises(ValueError, match=r'co_reward: 3 groups do not pair'):
    _shaper({'co_reward': {}}).apply(dataclasses.replace(_inputs(np.zeros(6), [3] * 6, 2), texts=texts[:6]))
  with pytest.raises(ValueError, match=r'co_reward: 7 completion texts for 8 rows'):
    _shaper({'co_reward': {}}).apply(dataclasses.replace(x, texts=texts[:7]))


def test_listener_term_is_the_weighted_probability_where_applicable():
  x = dataclasses.replace(_inputs(np.zeros(4), [3] * 4, 2), listener=np.array([0.25, np.nan, 1.0, 0.5]))
  shaped, metrics = _shaper({'listener': {'weight': 0.4}}).apply(x)
  np.testing.assert_allclose(shaped, [0.1, 0.0, 0.4, 0.2])
  assert metrics['shaping/listener/applicable'] == 0.75
  assert metrics['shaping/listener/p_mean'] == pytest.approx(1.75 / 3)
  with pytest.raises(ValueError, match=r'listener: \(3,\) probabilities for 4 rows'):
    _shaper({'listener': {'weight': 0.4}}).apply(dataclasses.replace(x, listener=np.ones(3)))


def test_config_section_becomes_frozen_validated_entries():
  config = llm_grpo.get_config()
  assert run_config.from_config_dict(config).shaping == ()
  config.shaping = {'dapo_overlong': {'cache_length': 4, 'end_step': 10}, 'alp': {'correct': 'math_equiv', 'beta': 0.1}}
  cfg = run_config.from_config_dict(config)
  assert [s.name for s in cfg.shaping] == ['alp', 'dapo_overlong']
  alp, dapo = cfg.shaping
  assert alp.config.length_norm == 16 and dapo.config.max_length == 16  # 0 = rollout.max_new_tokens
  assert dapo.end_step == 10 and alp.end_step == 0
  with pytest.raises(Exception):  # frozen
    dapo.config.cache_length = 8


# ------------------------------------------------------------------ terms through Shaper.apply
def test_dapo_overlong_term_and_metrics():
  shaper = _shaper({'dapo_overlong': {'cache_length': 4, 'max_length': 20}})
  total = np.array([1.0, 0.0, 1.0, 0.5])
  shaped, metrics = shaper.apply(_inputs(total, [10, 18, 20, 16], 2))
  np.testing.assert_allclose(shaped, total + [0.0, -0.5, -1.0, 0.0])
  assert metrics['reward_shaped_mean'] == pytest.approx(np.mean(total + [0.0, -0.5, -1.0, 0.0]))
  assert metrics['shaping/dapo_overlong/term_mean'] == pytest.approx(-0.375)
  assert metrics['shaping/dapo_overlong/penalized_frac'] == 0.5


def test_no_schemes_leave_the_reward_alone():
  shaped, metrics = shapers.Shaper(()).apply(_inputs([1.0, 2.0], [3, 4], 2))
  np.testing.assert_array_equal(shaped, [1.0, 2.0])
  assert metrics == {'reward_shaped_mean': 1.5}


def test_end_step_turns_a_scheme_off():
  shaper = _shaper({'dapo_overlong': {'cache_length': 4, 'max_length': 8, 'end_step': 3}})
  before, _ = shaper.apply(_inputs([0.0, 0.0], [8, 2], 2, step=2))
  after, metrics = shaper.apply(_inputs([0.0, 0.0], [8, 2], 2, step=3))
  np.testing.assert_array_equal(before, [-1.0, 0.0])
  np.testing.assert_array_equal(after, [0.0, 0.0])
  assert 'shaping/dapo_overlong/term_mean' not in metrics


def test_correctness_is_a_column_at_or_above_correct_at():
  # LASER with C = laser_correctness (+1 / -0.5 / -1): only +1 rows are correct; NaN never is.
  scores = {'laser_correctness': np.array([1.0, -0.5, 1.0, np.nan])}
  shaper = _shaper({'laser': {'correct': 'laser_correctness', 'target_length': 5}})
  shaped, _ = shaper.apply(_inputs([1.0, -0.5, 1.0, 0.0], [4, 4, 9, 1], 2, scores=scores))
  np.testing.assert_allclose(shaped, [1.5, -0.5, 1.0, 0.0])
  assert shaper.reward_names == ('laser_correctness',)


def test_length_terms_match_their_formulas():
  correct = np.array([1.0, 1.0, 0.0, 1.0, 0.0, 0.0])
  lengths = np.array([4, 8, 6, 10, 2, 6])
  scores = {'math_equiv': correct}
  # ALP: - beta / N * max(p_solved, 1/G) * |y|; group solve rates 2/3 and 1/3.
  shaped, _ = _shaper({'alp': {'correct': 'math_equiv', 'beta': 0.5, 'length_norm': 10}}).apply(
      _inputs(correct, lengths, 3, scores=scores))
  np.testing.assert_allclose(shaped, correct - 0.05 * np.repeat([2 / 3, 1 / 3], 3) * lengths)
  # Kimi: lambda = 0.5 - (L - L_min) / (L_max - L_min): group 1 0.5, -0.5, 0; group 2 -0.5, 0.5, 0, and
  # wrong answers keep only min(0, lambda).
  shaped, _ = _shaper({'kimi_length': {'correct': 'math_equiv', 'coef': 0.4}}).apply(
      _inputs(correct, lengths, 3, scores=scores))
  np.testing.assert_allclose(shaped, correct + 0.4 * np.array([0.5, -0.5, 0.0, -0.5, 0.0, 0.0]), atol=1e-6)
  # GRPO-lambda with fraction 0.5: only the most correct group (the first) gets the Kimi term.
  shaped, metrics = _shaper({'grpo_lambda': {'correct': 'math_equiv', 'fraction': 0.5}}).apply(
      _inputs(correct, lengths, 3, scores=scores))
  np.testing.assert_allclose(shaped, correct + 0.4 * np.array([0.5, -0.5, 0.0, 0.0, 0.0, 0.0]), atol=1e-6)
  assert metrics['shaping/grpo_lambda/selected_groups'] == 0.5


def test_dast_reads_the_task_total():
  # One group of 2: a full-reward answer (3.0) of 4 tokens and a wrong one of 12; p = 1/2, L_r = 4,
  # L_b = 0.5 * 4 + 0.5 * 16 = 10; lambdas -0.6 and 0.2.
  shaped, _ = _shaper({'dast': {'max_length': 16}}).apply(_inputs([3.0, 1.0], [4, 12], 2))
  np.testing.assert_allclose(shaped, [3.0 + max(-0.5 * -0.6 + 0.5, 0.1), 1.0 + min(0.9 * 0.2 - 0.1, -0.1)])


def test_trust_grpo_mixes_an_annealed_thinking_column():
  outcome = np.array([1.0, 0.0, 1.0, 0.0])
  thinking = np.array([0.8, 0.4, 0.2, 0.6])  # group 2: right answers think worse than wrong ones
  scores = {'exact_match': outcome, 'rouge_l': thinking}
  shaper = _shaper({'trust_grpo': {'thinking': 'rouge_l', 'outcome': 'exact_match', 'anneal_steps': 100.0}})
  assert set(shaper.reward_names) == {'rouge_l', 'exact_match'}
  shaped, metrics = shaper.apply(_inputs(np.zeros(4), [1, 1, 1, 1], 2, scores=scores, step=50))
  weight = 0.3 * math.exp(-0.5)
  # R^t counts only where R^o >= 0.2, so the wrong answers' R^t is 0: mu_c >= mu_w = 0 and gamma = 1.
  np.testing.assert_allclose(shaped - 0.0, [weight * 0.8, 0.0, weight * 0.2, 0.0])
  assert metrics['shaping/trust_grpo/weight'] == pytest.approx(weight)
  assert metrics['shaping/trust_grpo/gamma_mean'] == 1.0
  # query_threshold 0: every R^t counts, and group 2's right answer thinks worse: gamma = exp(0.2 - 0.6).
  shaper = _shaper({'trust_grpo': {'thinking': 'rouge_l', 'outcome': 'exact_match', 'anneal_steps': 100.0,
                                   'query_threshold': 0.0}})
  shaped, _ = shaper.apply(_inputs(np.zeros(4), [1, 1, 1, 1], 2, scores=scores, step=50))
  np.testing.assert_allclose(shaped, weight * np.array([0.8, 0.4, 0.2 * math.exp(-0.4), 0.6 * math.exp(-0.4)]))


def test_trust_grpo_with_a_judge_reads_its_scores_and_needs_them(tmp_path):
  with pytest.raises(ValueError, match=r'judge_template must hold \{reasoning\} exactly once'):
    _shaper({'trust_grpo': {'judge': str(tmp_path), 'judge_template': 'rate {question}'}})
  with pytest.raises(ValueError, match=r'judge_max_new_tokens must be a positive int'):
    _shaper({'trust_grpo': {'judge': str(tmp_path), 'judge_max_new_tokens': 0}})
  with pytest.raises(ValueError, match=r'judge_batch_size must be a positive integer, got -4'):
    _shaper({'trust_grpo': {'judge': str(tmp_path), 'judge_batch_size': -4}})
  judged = _shaper({'trust_grpo': {'judge': str(tmp_path), 'anneal_steps': 100.0}})
  assert 'judge' in judged.needs and judged.reward_names == ()
  assert 'judge' not in _shaper({'trust_grpo': {'thinking': 'rouge_l'}}).needs  # a reward column: no judge run
  outcome = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 1.0])
  judge = np.array([0.8, np.nan, 0.2, np.nan, np.nan, np.nan])  # the rows it was not asked about: NaN
  shaped, metrics = judged.apply(dataclasses.replace(_inputs(outcome, [1] * 6, 2, step=50), judge=judge))
  weight = 0.3 * math.exp(-0.5)
  np.testing.assert_allclose(shaped - outcome, [weight * 0.8, 0.0, weight * 0.2, 0.0, 0.0, 0.0])
  assert metrics['shaping/trust_grpo/judged_frac'] == pytest.approx(2 / 6)
  assert metrics['shaping/trust_grpo/judge_mean'] == pytest.approx(0.5)
  trust = judged.schemes[0][1]
  np.testing.assert_array_equal(trust.judged_rows(outcome, {}, 2), [True, False, True, False, False, False])
  with pytest.raises(ValueError, match=r'trust_grpo: \(5,\) judge scores for 6 rows'):
    judged.apply(dataclasses.replace(_inputs(outcome, [1] * 6, 2), judge=judge[:5]))


def _vocab(*pieces):
  return lambda t: pieces[t]


def test_answer_mask_and_confidence_on_the_answer_tokens():
  # Tokens: 0 '<think>', 1 'hm', 2 '</think>', 3 '<answer>', 4 '4', 5 '2', 6 '</answer>', 7 '' (EOS).
  text = _vocab('<think>', 'hm', '</think>', '<answer>', '4', '2', '</answer>', '')
  tokens = np.array([[0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 1, 7, 7, 7, 7]])
  lengths = np.array([8, 5])
  x = _inputs([1.0, 0.0], lengths, 2, tokens=tokens, text=text,
              logprobs=np.log(np.array([[0.9, 0.9, 0.9, 0.9, 0.5, 0.25, 0.9, 0.9]] * 2)))
  mask = shapers.answer_mask(x, '<answer>', '</answer>')
  np.testing.assert_array_equal(mask, [[0, 0, 0, 0, 1, 1, 0, 0], [0] * 8])  # row 2 has no answer
  np.testing.assert_array_equal(shapers.answer_mask(x, '', '')[0], [1, 1, 1, 1, 1, 1, 1, 0])  # EOS has no text
  shaped, metrics = _shaper({'confidence': {'coef': 2.0}}).apply(x)
  np.testing.assert_allclose(shaped, [1.0 + 2.0 * 0.375, 0.0])
  assert metrics['shaping/confidence/applicable'] == 0.5
  assert metrics['shaping/confidence/confidence_mean'] == pytest.approx(0.375)
  shaped, _ = _shaper({'confidence': {'mode': 'geometric'}}).apply(x)
  assert shaped[0] == pytest.approx(1.0 + math.sqrt(0.125))


def test_phase_masks_split_at_the_marker():
  text = _vocab('<think>', 'hm', '</think>', 'ok', '')
  x = _inputs([0.0, 0.0], [5, 3], 2, tokens=np.array([[0, 1, 2, 3, 4], [0, 1, 1, 4, 4]]), text=text)
  think, answer = shapers.phase_masks(x, '</think>')
  np.testing.assert_array_equal(think, [[1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])  # no marker: all thinking
  np.testing.assert_array_equal(answer, [[0, 0, 0, 1, 0], [0, 0, 0, 0, 0]])


def test_laser_de_explores_long_wrong_answers_without_repetition():
  # One group of 3 (accuracy 1/3: medium); targets start at upper_bound 8.
  scores = {'math_equiv': np.array([1.0, 0.0, 0.0]), 'laser_correctness': np.array([1.0, -0.5, -0.5])}
  tokens = np.zeros((3, 12), np.int32)
  tokens[1] = np.arange(12)  # no repetition
  tokens[2] = [1, 2] * 6  # a loop
  shaper = _shaper({'laser_de': {'correct': 'math_equiv', 'lower_bound': 4, 'upper_bound': 8, 'interval': 4}})
  shaped, metrics = shaper.apply(_inputs([1.0, -0.5, -0.5], [6, 12, 12], 3, scores=scores, tokens=tokens))
  np.testing.assert_allclose(shaped, [1.5, 0.0, -0.5])
  assert metrics['shaping/laser_de/repetitive_frac'] == pytest.approx(1 / 3)


# ------------------------------------------------------------------ state
def _laser_d(**fields):
  return _shaper({'laser_d': {'correct': 'math_equiv', 'lower_bound': 2, 'upper_bound': 8, 'interval': 2,
                              'update_every': 1, **fields}})


def test_laser_d_targets_evolve_and_round_trip_through_state():
  scores = {'math_equiv': np.array([1.0, 1.0, 1.0, 0.0])}
  shaper = _laser_d()
  first, metrics = shaper.apply(_inputs(np.zeros(4), [3, 5, 7, 7], 4, scores=scores, step=0))
  assert metrics['shaping/laser_d/target/easy'] == 8  # no update seen yet: the largest budget
  np.testing.assert_allclose(first, [0.5, 0.5, 0.5, 0.0])
  # The update after step 0: easy bucket (3/4 right), n = floor(8/3) = 2 needs half the group right within L: 6.
  second, metrics = shaper.apply(_inputs(np.zeros(4), [3, 5, 7, 7], 4, scores=scores, step=1))
  assert metrics['shaping/laser_d/target/easy'] == 6
  np.testing.assert_allclose(second, [0.5, 0.5, 0.0, 0.0])
  state = shaper.state()
  assert [entry['scheme']['name'] for entry in state] == ['laser_d']
  fresh = _laser_d()
  fresh.restore(state)
  again, _ = fresh.apply(_inputs(np.zeros(4), [3, 5, 7, 7], 4, scores=scores, step=2))
  replay, _ = shaper.apply(_inputs(np.zeros(4), [3, 5, 7, 7], 4, scores=scores, step=2))
  np.testing.assert_array_equal(again, replay)
  with pytest.raises(ValueError, match='holds no state for shaping scheme'):
    _laser_d(alpha=0.25).restore(state)  # saved with other fields
  with pytest.raises(ValueError, match='holds no state for shaping scheme'):
    _laser_d().restore(None)  # a checkpoint from before shaping
  assert _shaper({'dapo_overlong': {'cache_length': 4}}).state() == []  # stateless: nothing to save
  _shaper({'dapo_overlong': {'cache_length': 4}}).restore(None)


def test_a_recipes_shaping_fields_override_from_the_command_line():
  """As main.py loads a config (by path, locked): a selected scheme's field is overridable, a typo is not."""
  import os  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs', 'recipes',
                      'dapo_math.py')

  def parse(*argv):
    values = flags.FlagValues()
    config_flags.DEFINE_config_file('config', None, 'recipe', flag_values=values, lock_config=True,
                                    sys_argv=['prog', *argv])
    values(['prog', *argv])
    return values.config

  cfg = run_config.from_config_dict(parse(f'--config={path}', '--config.shaping.dapo_overlong.cache_length=5'))
  assert cfg.shaping[0].config.cache_length == 5
  with pytest.raises(Exception, match='cache_lenght'):
    parse(f'--config={path}', '--config.shaping.dapo_overlong.cache_lenght=5')
