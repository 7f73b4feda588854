"""The frozen listener (rl/listener.py): candidates from meta, and p_listener against a plain forward pass."""

import jax
import numpy as np
import pytest
from flax import nnx

from rl_reason import models
from rl_reason.data import pipeline, tokenizer as tokenizer_lib
from rl_reason.parallel import sharding as shd
from rl_reason.rl import listener as listener_lib


def test_candidates_come_from_options_and_the_answer():
  assert listener_lib.candidates({'options': ['red', 'blue'], 'answer': 'blue'}) == (['red', 'blue'], 1)
  assert listener_lib.candidates({'options': ['circle', 'square', 'star'], 'answer': 'C'}) == (['A', 'B', 'C'], 2)
  assert listener_lib.candidates({'options': ['a', 'b', 'c'], 'answer': 'A,C'}) is None  # several right answers
  assert listener_lib.candidates({'options': ['a', 'b'], 'answer': 'D'}) is None
  assert listener_lib.candidates({'answer': '12'}) is None
  assert listener_lib.reasoning('<think>two red</think><answer>B</answer>') == '<think>two red</think>'
  assert listener_lib.reasoning('no tags') == 'no tags'


def _reference(model, tokenizer, prompt_ids, continuation_ids, choice_ids):
  """Summed log-prob of the choice's tokens after prompt + continuation, from one unpadded forward pass."""
  ids = np.array([prompt_ids + continuation_ids + choice_ids])
  logits = np.asarray(models.forward(model, ids, np.ones_like(ids)), np.float64)[0]
  logp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
  start = len(prompt_ids) + len(continuation_ids)
  return sum(logp[start + i - 1, t] for i, t in enumerate(choice_ids))


@pytest.mark.parametrize('devices', [1, 8])
def test_listener_probability_of_the_right_answer_matches_a_plain_forward(devices):
  tokenizer = tokenizer_lib.build_tiny_tokenizer()
  model = models.create(models.get_preset('tiny_lm'), seed=3)
  mesh = shd.make_mesh(shd.MeshConfig(num_devices=devices))
  encoder = pipeline.PromptEncoder(tokenizer, model.cfg, None, (64,))
  examples = [{'prompt': 'Which colour? A. red B. blue', 'images': [], 'meta': {'options': ['red', 'blue'],
                                                                               'answer': 'B'}},
              {'prompt': 'Pick one', 'images': [], 'meta': {'options': ['red', 'green', 'blue'], 'answer': 'green'}},
              {'prompt': 'Sum?', 'images': [], 'meta': {'answer': '4'}}]  # no candidates: NaN
  examples.append(dict(examples[0], prompt='Which colour is it?'))
  texts = ['<think>it is blue</think><answer>B</answer>', 'B', '<think>red</think>', '',
           '<think>green</think><answer>green</answer>', '<answer>red', 'x', 'y',
           '4', '5', '<answer>4</answer>', '',
           '<think>a</think><answer>A</answer>', '<think>bb</think>', 'A', 'B']
  inputs = encoder(examples)
  prompt = shd.host_to_global(dict(prompt=inputs), mesh)['prompt']
  _, params = nnx.split(model)
  listener = listener_lib.Listener(nnx.graphdef(model), tokenizer, pad_id=tokenizer.pad_token_id, mesh=mesh)
  got = listener.probabilities(params, prompt, examples, texts)
  encode = lambda text: tokenizer.encode(text, add_special_tokens=False)
  for b, text in enumerate(texts):
    example = examples[b // 4]
    option = listener_lib.candidates(example['meta'])
    if option is None:
      assert np.isnan(got[b])
      continue
    prompt_ids = [t for t, m in zip(inputs['input_ids'][b // 4], inputs['attention_mask'][b // 4]) if m]
    scores = np.array([_reference(model, tokenizer, prompt_ids, encode(listener_lib.reasoning(text) + '<answer>'),
                                  encode(choice)) for choice in option[0]])
    expected = np.exp(scores[option[1]] - np.logaddexp.reduce(scores))
    np.testing.assert_allclose(got[b], expected, rtol=1e-4, err_msg=f'row {b}: {text!r}')
  assert 0 < np.nanmin(got) and np.nanmax(got) < 1 and np.isnan(got).sum() == 4
