"""Listener-rewarded thinking: a frozen listener's probability of the right answer, given the thought.

For completion b of prompt p the listener reads the prompt (its images included) and the
completion's reasoning, the text before its first `<answer>` (all of it when there is none),
followed by `<answer>`, and scores each candidate answer c by the summed log-probs of c's tokens
(temperature 1). p_listener(b) = softmax over the candidates, at the right one. The prefix and
each candidate are tokenised apart and joined, so a candidate's tokens are the same after every
thought.

Candidates come from the example's meta: 'options' (a list of strings) with 'answer' one of them
(CLS-RL classification), or 'answer' a single letter naming an option (single-choice questions);
anything else (a multi-letter answer, no options) is not applicable: NaN.

The listener is any model that reads the policy's token ids and image patches, with frozen
parameters: the loop passes the KL reference (the post-warm-up policy by default) or a checkpoint
of its own (shaping.listener.path). Each prompt runs once through the decoder and its cache is
shared by its G x C continuations, as in the learner.

Shapes: P prompts, G completions per prompt, B = P * G, C candidates (padded to the most of any
prompt), L listener tokens per continuation (a multiple of LENGTH_STEP).
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rl_reason.parallel import multihost
from rl_reason.parallel import sharding as shd
from rl_reason.rl import learner as learner_lib

ANSWER_TAG = '<answer>'
LENGTH_STEP = 16  # listener lengths are rounded up to this: few compilations


def candidates(meta: Mapping[str, Any]) -> tuple[list[str], int] | None:
  """(candidate answers, index of the right one) from an example's meta, or None when not applicable."""
  options = meta.get('options')
  if not isinstance(options, (list, tuple)) or not options or not all(isinstance(o, str) for o in options):
    return None
  answer = str(meta.get('answer', ''))
  if answer in options:
    return list(options), list(options).index(answer)
  letters = list(string.ascii_uppercase[:len(options)])
  if answer in letters:
    return letters, letters.index(answer)
  return None


def reasoning(text: str) -> str:
  """The completion's text before its first <answer> (all of it without one)."""
  cut = text.find(ANSWER_TAG)
  return text if cut < 0 else text[:cut]


def _choice_logprobs(graphdef: nnx.GraphDef, params: Any, batch: dict[str, Any], groups: int) -> jax.Array:
  """[R] summed log-probs of the masked tokens of each continuation (R = P * groups)."""
  model = nnx.merge(graphdef, params)
  hidden = learner_lib.completion_hidden(model, batch, groups)
  logp, _ = learner_lib.token_logprobs(model.logits(hidden), batch['tokens'], 1.0)
  return jnp.sum(logp * batch['mask'], axis=-1)


class Listener:
  """Scores completions with a frozen listener: `probabilities(params, prompt, examples, texts)`."""

  def __init__(self, graphdef: nnx.GraphDef, tokenizer, *, pad_id: int, mesh: jax.sharding.Mesh,
               rules=shd.DEFAULT_RULES):
    self.tokenizer = tokenizer
    self.pad_id = pad_id
    self.mesh = mesh
    self.rules = rules
    self._scores = jax.jit(lambda params, batch, groups: _choice_logprobs(graphdef, params, batch, groups),
                           static_argnums=2)

  def _encode(self, text: str) -> list[int]:
    return self.tokenizer.encode(text, add_special_tokens=False)

  def probabilities(self, params: Any, prompt: dict[str, Any], examples: Sequence[Mapping[str, Any]],
                    texts: Sequence[str]) -> np.ndarray:
    """[B] float64 p_listener of this process's completions; NaN where the example has no candidates.

    Args:
      params: the listener's parameters (frozen).
      prompt: the P prompts' model inputs as global device arrays (the rollout's, rows over the mesh).
      examples: this process's P examples (their meta holds the candidates).
      texts: this process's B = P * G decoded completions, G per prompt, in prompt order.
    """
    groups = len(texts) // len(examples)
    if groups * len(examples) != len(texts):
      raise ValueError(f'{len(texts)} completions do not split into groups of the {len(examples)} prompts')
    options = [candidates(e['meta']) for e in examples]
    width = multihost.agree_max(max((len(c[0]) for c in options if c is not None), default=1))[0]
    choice_ids = [[self._encode(choice) for choice in c[0]] if c is not None else [] for c in options]
    rows = []  # (prefix ids, choice ids) per (prompt, completion, candidate)
    for p, text in enumerate(texts):
      prefix = self._encode(reasoning(text) + ANSWER_TAG)
      ids = choice_ids[p // groups]
      rows.extend((prefix, ids[c] if c < len(ids) else []) for c in range(width))
    longest = max(len(prefix) + len(choice) for prefix, choice in rows)
    length = multihost.agree_max(-(-longest // LENGTH_STEP) * LENGTH_STEP)[0]
    tokens = np.full((len(rows), length), self.pad_id, np.int32)
    mask = np.zeros((len(rows), length), np.float32)
    for r, (prefix, choice) in enumerate(rows):
      tokens[r, :len(prefix) + len(choice)] = prefix + choice
      mask[r, len(prefix):len(prefix) + len(choice)] = 1.0
    batch = dict(shd.host_to_global(dict(tokens=tokens, mask=mask), self.mesh, self.rules), prompt=prompt)
    scores = shd.host_rows(self._scores(params, batch, groups * width)).reshape(len(texts), width)
    out = np.full(len(texts), np.nan)
    for b in range(len(texts)):
      option = options[b // groups]
      if option is None:
        continue
      valid = scores[b, :len(option[0])].astype(np.float64)
      logp = valid - np.logaddexp.reduce(valid)
      out[b] = float(np.exp(logp[option[1]]))
    return out
