"""Golden values for every per-completion reward, hand-worked from the papers' definitions.

The jigsaw rewards' goldens are in rewards_test.py. Each case names the corner it covers.
"""

import math

import numpy as np
import pytest

from rl_reason import rewards
from rl_reason.rewards import combinators, grounding, math_answer, parsing, text_sim

TA = '<think>t</think><answer>{}</answer>'


def score(name, text, **meta):
  return rewards.get(name).fn(text, meta)


# ------------------------------------------------------------------ format
@pytest.mark.parametrize('text, prefill, strict, search, tw, ordered', [
    ('<think>a</think><answer>b</answer>', False, 1.0, 1.0, 1.0, 0.0),
    ('<think>a</think>\n\n<answer>b</answer>', False, 1.0, 1.0, 1.0, 0.0),
    ('<think>a</think><answer>b</answer> !\n!', False, 0.0, 1.0, 1.0, 0.0),  # TW-GRPO allows trailing '!'
    ('<think>a</think><answer>b</answer>.', False, 0.0, 1.0, 0.0, 0.0),
    ('So: <think>a</think><answer>b</answer>', False, 0.0, 1.0, 0.0, 0.0),  # text before
    ('<think>a</think>x<answer>b</answer>', False, 0.0, 0.0, 0.0, 0.0),  # text between: in order, not adjacent
    ('<think>a</think><think>b</think><answer>c</answer>', False, 0.0, 0.0, 0.0, -1.0),  # repeated think
    ('<think>a</think><answer>b</answer><answer>c</answer>', False, 0.0, 0.0, 0.0, -1.0),  # repeated answer
    ('<think>a<answer>b</answer></think><answer>c</answer>', False, 0.0, 0.0, 0.0, -1.0),  # nested
    ('<answer>b</answer><think>a</think>', False, 0.0, 0.0, 0.0, -1.0),  # wrong order
    ('<think>a</think><answer>b', False, 0.0, 0.0, 0.0, -1.0),  # unbalanced
    ('a</think><answer>b</answer>', True, 1.0, 1.0, 1.0, 0.0),  # prefilled <think>
    ('a</think><answer>b</answer>', False, 0.0, 0.0, 0.0, -1.0),  # ... not prefilled
    ('<think>a</think><answer>b</answer>', True, 0.0, 0.0, 0.0, -1.0),  # prefilled and repeated by the model
    ('<think></think><answer></answer>', False, 1.0, 1.0, 1.0, 0.0),  # empty blocks are well formed
    ('', False, 0.0, 0.0, 0.0, -1.0),
])
def test_format_checkers(text, prefill, strict, search, tw, ordered):
  meta = {'prefill_think': prefill}
  assert score('think_answer_format', text, **meta) == strict
  assert score('think_answer_search', text, **meta) == search
  assert score('tw_grpo_format', text, **meta) == tw
  assert score('ordered_tags_format', text, **meta) == ordered


@pytest.mark.parametrize('text, meta, expected', [
    ('<think>x</think><answer>(10,20),(30,40)</answer>', {}, 1.0),
    ('<think>x</think> <answer>(10, 20), (30, 40)</answer>\n', {}, 1.0),
    ('<think>x</think><answer>(10,20),(30,40)</answer> ok', {}, 0.0),
    ('<think>x</think><answer>[10,20,30,40]</answer>', {}, 0.0),  # UniVG wants the pair form
    ('<think>x</think><answer>(1.5,2),(3,4)</answer>', {}, 0.0),  # integers only
    ('<think>x</think><answer>(١,2),(3,4)</answer>', {}, 0.0),  # ASCII digits only
    ('(10,20),(30,40)', {'think': False}, 1.0),  # no-CoT COCO items: the bare box
    ('(10,20),(30,40)', {}, 0.0),
])
def test_univg_format(text, meta, expected):
  assert score('univg_format', text, **meta) == expected


@pytest.mark.parametrize('answer, answer_type, extra, expected', [
    ('7', 'digit', {}, 1.0), ('07', 'digit', {}, 1.0), ('7.0', 'digit', {}, 0.0), ('', 'digit', {}, 0.0),
    ('B', 'letter', {}, 1.0), ('b', 'letter', {}, 0.0), ('AB', 'letter', {}, 0.0),
    ('-3.5e2', 'number', {}, 1.0), ('1e999', 'number', {}, 0.0), ('nan', 'number', {}, 0.0),
    ('(1,2),(3,4)', 'bbox', {}, 1.0), ('[1, 2, 3, 4]', 'bbox', {}, 1.0), ('(1,2)', 'bbox', {}, 0.0),
    ('(5, 6)', 'point', {}, 1.0), ('5 6', 'point', {}, 0.0),
    ('2 1\n4 3', 'grid', {'rows': 2, 'cols': 2}, 1.0), ('2 1 4', 'grid', {'rows': 2, 'cols': 2}, 0.0),
    ('2 1 4 9', 'grid', {}, 1.0),  # without a size, any integer grid
])
def test_answer_type_format(answer, answer_type, extra, expected):
  assert score('answer_type_format', TA.format(answer), answer_type=answer_type, **extra) == expected
  assert score('answer_type_format', answer, answer_type=answer_type, think=False, **extra) == expected
  assert score('answer_type_format', 'x' + TA.format(answer), answer_type=answer_type, **extra) == 0.0


def test_answer_type_format_rejects_an_unknown_type():
  with pytest.raises(ValueError, match='unknown answer_type'):
    score('answer_type_format', TA.format('1'), answer_type='haiku')


# ------------------------------------------------------------------ matching
@pytest.mark.parametrize('text, label, exact, exact_ci, strict', [
    (TA.format(' Paris '), 'Paris', 1.0, 1.0, 0.0),
    (TA.format('paris'), 'Paris', 0.0, 1.0, 0.0),
    ('Paris', 'Paris', 1.0, 1.0, 1.0),  # no tags: the whole completion is the answer
    ('Paris ', 'Paris', 1.0, 1.0, 0.0),  # No-Thinking equality is exact
    (TA.format('Paris') + '<answer>Rome</answer>', 'Paris', 0.0, 0.0, 0.0),  # repeated answer: no answer
    ('<answer>Paris', 'Paris', 0.0, 0.0, 0.0),  # unbalanced
    (TA.format(''), 'Paris', 0.0, 0.0, 0.0),  # empty answer
    (TA.format('STRASSE'), 'straße', 0.0, 1.0, 0.0),  # casefold, not lower
])
def test_exact_and_strict(text, label, exact, exact_ci, strict):
  assert score('exact_match', text, answer=label) == exact
  assert score('exact_match_ci', text, answer=label) == exact_ci
  assert score('equality_strict', text, answer=label) == strict


@pytest.mark.parametrize('text, label, letter, digit', [
    (TA.format('C'), 'C', 1.0, 0.0), (TA.format(' C\n'), 'C', 1.0, 0.0), (TA.format('c'), 'C', 0.0, 0.0),
    (TA.format('(C)'), 'C', 0.0, 0.0), (TA.format('CD'), 'C', 0.0, 0.0), ('C', 'C', 1.0, 0.0),
    (TA.format('12'), '12', 0.0, 1.0), (TA.format('012'), '12', 0.0, 1.0), (TA.format('12.0'), '12', 0.0, 0.0),
    (TA.format('１２'), '12', 0.0, 0.0),  # fullwidth digits are not ASCII digits
    (TA.format('9' * 400), '9' * 400, 0.0, 0.0),  # overflowing digit strings are refused, not parsed
    (TA.format('-3'), '-3', 0.0, 0.0),
])
def test_letter_and_digit(text, label, letter, digit):
  assert score('letter', text, answer=label) == letter
  assert score('digit', text, answer=label) == digit


@pytest.mark.parametrize('answer, label, expected', [
    ('A, C', 'A, C', 1.0), ('C,A', ['A', 'C'], 1.0), ('A', 'A, C', 0.5), ('(A)', 'A,B,C,D', 0.25),
    ('A, E', 'A, C', 0.0),  # not a subset: nothing
    ('A, A', 'A, C', 0.5),  # duplicated letters count once
    ('', 'A, C', 0.0), ('A and C', 'A, C', 0.0), ('a', 'A', 0.0),
])
def test_set_subset_soft(answer, label, expected):
  assert score('set_subset_soft', TA.format(answer), answer=label) == pytest.approx(expected)


@pytest.mark.parametrize('answer, label, f1', [
    ('Alice, Bob', 'alice,bob', 1.0),
    ('Alice', ['alice', 'bob'], 2 * 1 * 0.5 / 1.5),  # P = 1, R = 1/2
    ('alice, carol', 'alice; bob', 0.5),  # P = R = 1/2
    ('alice, alice', 'alice', 1.0),
    ('dave', 'alice', 0.0), ('', 'alice', 0.0),
])
def test_set_f1_and_rule_acc(answer, label, f1):
  assert score('set_f1', TA.format(answer), answer=label) == pytest.approx(f1)
  expected_acc = f1 if isinstance(label, list) else float(answer.strip().casefold() == str(label).casefold())
  assert score('rule_acc', TA.format(answer), answer=label) == pytest.approx(expected_acc)


# ------------------------------------------------------------------ math
@pytest.mark.parametrize('text, label, expected', [
    (r'so \boxed{\frac{1}{2}}', '0.5', 1.0),
    (r'so \boxed{0.5}', r'\frac{1}{2}', 1.0),
    (r'\boxed{1} then \boxed{2}', '2', 1.0),  # the last box counts
    (r'\boxed{2} then \boxed{1}', '2', 0.0),
    (r'\boxed{\frac{\sqrt{2}}{2}}', r'\sqrt{2}/2', 1.0),  # needs math-verify
    (r'\boxed{ 3 }.', '3', 1.0),
    (r'\boxed{10.0}', '10', 1.0),
    (r'\boxed{3', '3', 0.0),  # unclosed box, no answer block
    (TA.format('42'), 42, 1.0),  # no box: the answer block; a numeric label
    ('the answer is 42', '42', 0.0),  # neither box nor block
    (r'\boxed{}', '0', 0.0),  # empty answer
    (r'\boxed{1e999}', 'inf', 0.0),  # overflow is not infinity
    (r'\boxed{nan}', 'nan', 1.0),  # equal strings are equal (no arithmetic involved)
    (r'\boxed{' + '9' * 500 + '}', '9' * 500, 1.0),  # too long for math-verify, equal as strings
    (r'\boxed{' + '9' * 500 + '}', '1', 0.0),
])
def test_math_equiv(text, label, expected):
  assert score('math_equiv', text, answer=label) == expected


def test_math_helpers():
  assert math_answer.final_answer(r'x \boxed{a{b}c} y') == 'a{b}c'
  assert math_answer.as_number('3/4') == 0.75 and math_answer.as_number(r'\frac{3}{4}') == 0.75
  assert math_answer.as_number('1/0') is None and math_answer.as_number('1e999') is None
  assert math_answer.normalize(r' \left( 1,\!2 \right). ') == '(1,2)'
  # Co-Reward's voting key: equal numbers vote together, other answers by their normalised text
  keys = [math_answer.answer_key(t) for t in (r'\boxed{1/2}', r'\boxed{\dfrac{1}{2}}', '<answer>0.5</answer>')]
  assert keys == ['0.5'] * 3
  assert math_answer.answer_key(r'\boxed{-0}') == math_answer.answer_key(r'\boxed{0}') == '0.0'
  assert math_answer.answer_key(r'\boxed{ x + 1 }') == 'x+1'
  assert math_answer.answer_key('no answer') is None and math_answer.answer_key(r'\boxed{ }') is None


@pytest.mark.parametrize('text, expected', [
    (TA.format('golden retriever'), 1.0), (TA.format('Golden Retriever '), 1.0), ('golden retriever', 1.0),
    (TA.format('poodle'), 0.0), (TA.format('x') + '<answer>golden retriever</answer>', 0.0),
])
def test_cls_accuracy(text, expected):
  assert score('cls_accuracy', text, answer='golden retriever') == expected


@pytest.mark.parametrize('text, expected', [
    (r'\boxed{6}', 1.0), (r'\boxed{7}', -0.5),
    ('<answer>6</answer>', 0.5),  # correct, not boxed
    ('so it is 6.', 0.5),  # the last number, not boxed
    ('so it is 7.', -1.0), ('no idea', -1.0),
])
def test_simplerl_independent(text, expected):
  assert score('simplerl_independent', text, answer='6') == expected


@pytest.mark.parametrize('text, prefill, expected', [
    (r'<think>a</think> \boxed{6}', False, 1.0), (r'<think>a</think> \boxed{5}', False, -0.5),
    (r'<think>a \boxed{6}', False, -1.0),  # truncated inside the thinking
    ('<think>a</think> 6', False, -1.0),  # no box
    (r'a</think> \boxed{6}', True, 1.0),
])
def test_laser_correctness(text, prefill, expected):
  assert score('laser_correctness', text, answer='6', prefill_think=prefill) == expected


# ------------------------------------------------------------------ grounding
def test_iou_univg_formula_by_hand():
  # inter: x from max(0,5)=5 to min(10,15)-1=9 -> 5 px; y likewise -> 25; union = 100 + 100 - 25.
  assert grounding.iou_univg([0, 0, 10, 10], [5, 5, 15, 15]) == pytest.approx(25 / 175)
  assert grounding.iou_continuous([0, 0, 10, 10], [5, 5, 15, 15]) == pytest.approx(25 / 175)
  assert grounding.iou_univg([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
  # Overlap of exactly one pixel column: UniVG's strict test gives 0, the continuous IoU does not.
  assert grounding.iou_univg([0, 0, 10, 10], [9, 0, 19, 10]) == 0.0
  assert grounding.iou_continuous([0, 0, 10, 10], [9, 0, 19, 10]) == pytest.approx(10 / 190)
  assert grounding.iou_univg([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
  assert grounding.iou_univg([5, 5, 5, 5], [5, 5, 5, 5]) == 0.0  # empty union: 0, not a ZeroDivisionError
  assert grounding.iou_continuous([10, 10, 0, 0], [0, 0, 10, 10]) == 0.0  # inverted


@pytest.mark.parametrize('answer, meta, inclusive, continuous', [
    ('(0,0),(10,10)', {}, 1.0, 1.0),
    ('[0, 0, 10, 10]', {}, 1.0, 1.0),
    ('(5,5),(15,15)', {}, 25 / 175, 25 / 175),
    # The model saw a 50x50 resize of a 100x100 image: (0,0),(5,5) is (0,0),(10,10) in the original.
    ('(0,0),(5,5)', {'image_size': (100, 100), 'resized_size': (50, 50)}, 1.0, 1.0),
    # Partly outside the 20x20 image: clipped to (10,10),(20,20) before the IoU.
    ('(10,10),(40,40)', {'image_size': (20, 20)}, 0.0, 0.0),
    ('(-10,-10),(10,10)', {'image_size': (20, 20)}, 1.0, 1.0),
    ('(30,30),(40,40)', {'image_size': (20, 20)}, 0.0, 0.0),  # wholly outside
    ('(10,10),(0,0)', {}, 0.0, 0.0),  # inverted
    ('(0,0),(1e999,10)', {}, 0.0, 0.0),  # overflow: no box
    ('no box', {}, 0.0, 0.0),
])
def test_iou_rewards(answer, meta, inclusive, continuous):
  text = TA.format(answer)
  assert score('iou_box_inclusive', text, gt_box=[0, 0, 10, 10], **meta) == pytest.approx(inclusive)
  assert score('iou_box', text, gt_box=[0, 0, 10, 10], **meta) == pytest.approx(continuous)


@pytest.mark.parametrize('answer, meta, expected', [
    ('(5, 5)', {}, 1.0), ('[10, 10]', {}, 1.0), ('(0,0)', {}, 1.0),  # inclusive edges
    ('(10.5, 5)', {}, 0.0),
    ('(3, 3)', {'image_size': (100, 100), 'resized_size': (50, 50)}, 1.0),  # (6, 6) in the original
    ('(6, 6)', {'image_size': (100, 100), 'resized_size': (50, 50)}, 0.0),  # (12, 12)
    ('(1e999, 5)', {}, 0.0), ('', {}, 0.0),
])
def test_point_in_box(answer, meta, expected):
  assert score('point_in_box', TA.format(answer), gt_box=[0, 0, 10, 10], **meta) == expected


# ------------------------------------------------------------------ UI-R1
UI_META = {'gt_action': 'click', 'gt_bbox': [100, 100, 200, 150], 'image_size': (1000, 800),
           'resized_size': (500, 400)}


@pytest.mark.parametrize('answer, action_type, coord, fmt', [
    ("[{'action': 'click', 'coordinate': [60, 60]}]", 1.0, 1.0, 1.0),  # (120, 120) in the original
    ('[{"action": "click", "coordinate": [60.5, 74.9]}]', 1.0, 1.0, 1.0),
    ("[{'action': 'click', 'coordinate': [120, 120]}]", 1.0, 0.0, 1.0),  # not rescaled: outside
    ("[{'action': 'scroll', 'coordinate': [60, 60]}]", 0.0, 0.0, 1.0),
    ("[{'action': 'click'}]", 1.0, 0.0, 1.0),  # a click without a point
    ("[{'coordinate': [60, 60]}]", 0.0, 0.0, 1.0),
    ('', 0.0, 0.0, 1.0),
])
def test_ui_rewards(answer, action_type, coord, fmt):
  text = TA.format(answer)
  assert score('ui_action_type', text, **UI_META) == action_type
  assert score('ui_coord', text, **UI_META) == coord
  combined = score('ui_r1', text, **UI_META)
  assert combined == {'action_type': action_type, 'coordinate': coord, 'format': fmt,
                      'overall': action_type + coord + fmt}


def test_ui_non_click_needs_only_the_type():
  meta = {'gt_action': 'navigate_back'}
  assert score('ui_coord', TA.format("[{'action': 'navigate_back', 'coordinate': [0, 0]}]"), **meta) == 1.0
  assert score('ui_coord', TA.format("[{'action': 'navigate_back'}]"), **meta) == 1.0
  assert score('ui_r1', 'oops', **meta)['overall'] == 0.0
  with pytest.raises(ValueError, match='gt_bbox'):
    score('ui_coord', TA.format("[{'action': 'click', 'coordinate': [1, 1]}]"), gt_action='click')


# ------------------------------------------------------------------ SAT
SAT = {'clauses': 'A!B!C & !AB & BC', 'k': 3}  # (A|~B|~C) & (~A|B) & (B|C)


@pytest.mark.parametrize('text, expected', [
    (r'\boxed{110}', 1.0),  # A=1 B=1 C=0: all three hold
    (r'\boxed{111}', 1.0),
    (r'\boxed{011}', 0.0),  # A=0 B=1 C=1 breaks the first clause
    (r'\boxed{100}', 0.0),  # breaks ~A|B
    (r'\boxed{ 110 }', 1.0), (r'\boxed{11}', 0.0), (r'\boxed{1100}', 0.0), (r'\boxed{11x}', 0.0),
    (r'\boxed{011} then \boxed{110}', 1.0),  # the last box
    ('110', -1.0), (r'\boxed{110', -1.0), ('', -1.0),
])
def test_sat_assignment(text, expected):
  assert score('sat_assignment', text, **SAT) == expected


def test_sat_meta_errors_are_raised():
  with pytest.raises(ValueError, match='malformed SAT clause'):
    score('sat_assignment', r'\boxed{1}', clauses='A|B', k=2)
  with pytest.raises(ValueError, match='beyond k'):
    score('sat_assignment', r'\boxed{1}', clauses='AD', k=2)
  assert score('sat_assignment', r'\boxed{01}', clauses=['A', '!AB'], k=2) == 0.0


# ------------------------------------------------------------------ text similarity
def _lcs_dp(a, b):
  table = np.zeros((len(a) + 1, len(b) + 1), int)
  for i, x in enumerate(a):
    for j, y in enumerate(b):
      table[i + 1, j + 1] = table[i, j] + 1 if x == y else max(table[i, j + 1], table[i + 1, j])
  return int(table[-1, -1])


def _edit_dp(a, b):
  row = list(range(len(b) + 1))
  for i, x in enumerate(a, 1):
    previous, row[0] = row[0], i
    for j, y in enumerate(b, 1):
      previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
  return row[-1]


def test_bit_parallel_lcs_and_edit_distance_match_dynamic_programming():
  rng = np.random.default_rng(0)
  for _ in range(300):
    a = list(rng.integers(0, 4, rng.integers(0, 12)))
    b = list(rng.integers(0, 4, rng.integers(0, 12)))
    assert text_sim.lcs_length(a, b) == _lcs_dp(a, b)
    assert text_sim.edit_distance(a, b) == _edit_dp(a, b)
  long = list(rng.integers(0, 50, 300))
  assert text_sim.edit_distance(long, long[::-1]) == _edit_dp(long, long[::-1])  # more than 64 bits


def test_rouge_by_hand():
  pred, ref = text_sim.rouge_tokens('The cat sat.'), text_sim.rouge_tokens('the cat sat on the mat')
  assert pred == ['the', 'cat', 'sat']
  # ROUGE-1: overlap 3, P = 1, R = 1/2; ROUGE-2: {the cat, cat sat} overlap 2, P = 1, R = 2/5; LCS 3.
  r1, r2, rl = 2 / 3, 2 * 0.4 / 1.4, 2 / 3
  assert text_sim.rouge_n(pred, ref, 1) == pytest.approx(r1)
  assert text_sim.rouge_n(pred, ref, 2) == pytest.approx(r2)
  assert text_sim.rouge_l(pred, ref) == pytest.approx(rl)
  got = score('rouge_mean', TA.format('The cat sat.'), answer='the cat sat on the mat')
  assert got == pytest.approx({'rouge1': r1, 'rouge2': r2, 'rouge_l': rl, 'overall': (r1 + r2 + rl) / 3})
  assert score('rouge_l', TA.format('The cat sat.'), answer='the cat sat on the mat') == pytest.approx(rl)
  assert score('rouge_l', TA.format(''), answer='x') == 0.0 and score('rouge_l', TA.format('日本'), answer='日本') == 0.0
  assert score('rouge_mean', 'a<answer>', answer='a')['overall'] == 0.0


@pytest.mark.parametrize('answer, label, wer', [
    ('hello world', 'hello world', 0.0),
    ('hello there world', 'hello world', 0.5),  # one insertion / 2 words
    ('Hello world', 'hello world', 0.5),  # case-sensitive, as jiwer
    ('', 'hello world', 1.0),
    ('a b c d', 'x', 4.0),  # above 1: exp(-4) for the code's form, capped at -1 for the paper's
    ('', '', 0.0),
])
def test_wer_rewards(answer, label, wer):
  assert text_sim.wer(answer, label) == pytest.approx(wer)
  assert score('ocr_exp_neg_wer', TA.format(answer), answer=label) == pytest.approx(math.exp(-wer))
  assert score('ocr_neg_wer', TA.format(answer), answer=label) == pytest.approx(-min(wer, 1.0))


def test_wer_of_an_empty_reference():
  assert text_sim.wer('x', '') == math.inf
  assert score('ocr_exp_neg_wer', 'x', answer='') == 0.0 and score('ocr_neg_wer', 'x', answer='') == -1.0


# ------------------------------------------------------------------ spurious
def test_spurious_bernoulli_is_seeded_from_meta_and_text():
  texts = [f'completion {i}' for i in range(4000)]
  draws = np.array([score('spurious_bernoulli', t, seed=7) for t in texts])
  assert set(np.unique(draws)) == {0.0, 1.0} and abs(draws.mean() - 0.5) < 0.03
  assert np.mean([score('spurious_bernoulli', t, seed=7, spurious_p=0.1) for t in texts]) == pytest.approx(0.1, abs=0.02)
  again = np.array([score('spurious_bernoulli', t, seed=7) for t in texts])
  other_seed = np.array([score('spurious_bernoulli', t, seed=8) for t in texts])
  assert (draws == again).all() and (draws != other_seed).any()
  assert score('spurious_bernoulli', 'x', seed=1, spurious_p=0.0) == 0.0
  assert score('spurious_bernoulli', 'x', seed=1, spurious_p=1.0) == 1.0
  with pytest.raises(ValueError, match='spurious_p'):
    score('spurious_bernoulli', 'x', seed=1, spurious_p=1.5)


# ------------------------------------------------------------------ combinations
def test_paper_recipes():
  jig = {'rows': 2, 'cols': 2, 'gt': [2, 1, 4, 3]}
  assert score('jigsaw_r1', TA.format('2 1\n3 4'), **jig) == {'jigsaw_grid': 0.5, 'jigsaw_format': 1.0,
                                                                'overall': 0.5 + 0.5}
  assert score('lmm_r1', r'<think>a</think><answer>\boxed{2}</answer>', answer='2')['overall'] == 1.5
  assert score('cls_rl', TA.format('cat'), answer='cat')['overall'] == 2.0
  assert score('univg_r1', TA.format('(0,0),(10,10)'), gt_box=[0, 0, 10, 10])['overall'] == 2.0
  assert score('tw_grpo', TA.format('A'), answer='A, B')['overall'] == 1.5
  assert score('rule_reasoner', 'A', answer='A')['overall'] == 1.0 - 1.0  # right answer, no tags
  assert score('rule_reasoner', TA.format('a'), answer='A')['overall'] == 1.0


@pytest.mark.parametrize('text, expected', [
    (TA.format('42'), 1.0),
    ('42', 0.0),  # right answer, format failed: gated to 0
    (TA.format('41'), 0.0),
])
def test_format_gated_outcome(text, expected):
  got = score('sophia_exact', text, answer='42')
  assert got['overall'] == expected and got['format'] == float(text.startswith('<think>'))


def test_sophia_ocr_and_free_form():
  assert score('sophia_ocr', TA.format('a b'), answer='a b c')['overall'] == pytest.approx(math.exp(-1 / 3))
  assert score('sophia_free_form', 'a b', answer='a b')['overall'] == 0.0


def test_combination_ranges_and_meta_come_from_parts():
  assert rewards.get('jigsaw_r1').range == (0.0, 1.5)
  assert rewards.get('rule_reasoner').range == (-1.0, 1.0)
  assert rewards.get('univg_r1').required_meta == ('gt_box',)
  with pytest.raises(ValueError, match=r"reward 'jigsaw_r1' needs meta keys \['gt'\]"):
    rewards.check_meta(['jigsaw_r1'], {'rows': 2, 'cols': 2})
  # A combination registered by hand, without declaring meta keys, is still checked through its parts.
  rewards.register('test_combo')(combinators.WeightedSum((('think_answer_format', 1.0), ('jigsaw_grid', 1.0))))
  try:
    with pytest.raises(ValueError, match=r"reward 'test_combo' \(through its component 'jigsaw_grid'\) needs"):
      rewards.check_meta(['test_combo'], {'rows': 2, 'cols': 2})
  finally:
    rewards.registry.unregister('test_combo')
  weighted = combinators.WeightedSum((('exact_match', -2.0), ('ordered_tags_format', 1.0)))
  assert weighted.range() == (-3.0, 0.0)


def test_weighted_sum_skips_parts_that_do_not_apply():
  rewards.register('test_never_applies')(lambda text, meta: None)
  try:
    weighted = combinators.WeightedSum((('test_never_applies', 1.0), ('think_answer_format', 2.0)))
    got = weighted(TA.format('x'), {})
    assert math.isnan(got['test_never_applies']) and got['overall'] == 2.0
    assert combinators.WeightedSum((('test_never_applies', 1.0),))('x', {})['overall'] is None
  finally:
    rewards.registry.unregister('test_never_applies')


def test_reward_columns_for_per_reward_normalisation():
  scores = {'a': np.array([1.0, np.nan]), 'b': np.array([0.0, 2.0])}
  names, columns, weights = rewards.reward_columns(scores, {'a': 1.0, 'b': 0.5})
  assert names == ['a', 'b']
  np.testing.assert_array_equal(columns, [[1.0, 0.0], [0.0, 2.0]])
  np.testing.assert_array_equal(weights, [1.0, 0.5])
  assert rewards.REDUCTIONS == ('sum', 'none')


def test_parsing_helpers_for_new_rewards():
  assert parsing.answer_text('no tags') == 'no tags'
  assert parsing.answer_text('<answer>a</answer>') == 'a' and parsing.answer_text('</answer>') is None
  assert parsing.parse_box('x (1, 2), (3.5, 4) y') == (1.0, 2.0, 3.5, 4.0)
  assert parsing.parse_point('at [3, -4]') == (3.0, -4.0)
  assert parsing.parse_letters('(A), c') is None and parsing.parse_letters('B; A') == frozenset('AB')
  assert parsing.last_number('1 then 2.5e1 then x') == 25.0 and parsing.last_number('none') is None
  assert parsing.to_float('1e999') is None and parsing.to_float('9' * 41) is None
  assert parsing.with_prefill('a', {'prefill_think': True}) == '<think>a'


@pytest.mark.parametrize('text, prefill, expected', [
    ('look</think><answer>2 1\n4 3</answer>', True, 1.0),  # the prompt ended with '<think>'
    ('look</think><answer>2 1\n4 3</answer>', False, 0.0),
    ('<think>look</think><answer>2 1\n4 3</answer>', True, 0.0),  # a second '<think>' after the prefill
])
def test_jigsaw_format_with_prefilled_think(text, prefill, expected):
  meta = {'rows': 2, 'cols': 2, 'gt': [2, 1, 4, 3], 'prefill_think': prefill}
  assert score('jigsaw_format', text, **meta) == expected
  assert score('jigsaw_grid', text, **meta) == 1.0  # accuracy reads the answer block either way
