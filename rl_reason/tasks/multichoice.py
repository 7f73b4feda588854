"""Visual multiple choice with TW-GRPO's question-answer inversion (QAI).

A scene of coloured shapes; the single-choice question asks which of the options (shapes, colours
or "colour shape" objects) appears in the image: exactly one does. With probability
`inversion_prob` the question is inverted ("... does not appear ..."): the originally correct
option becomes wrong and the absent ones become right. As in TW-GRPO, the inverted question keeps
the original answer plus a random number (1 .. all, `random_drop`) of the others, so the count of
right answers does not give the answer away. The answer is the right letters joined by commas
("A,C"), scored by the soft subset reward.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Mapping
from typing import Any

import numpy as np

from rl_reason.tasks import base
from rl_reason.tasks import grounding
from rl_reason.tasks import shapes as shapes_lib
from rl_reason.tasks import templates

ATTRIBUTES = ('shape', 'color', 'object')
NOUNS = {'shape': 'shapes', 'color': 'colours', 'object': 'objects'}


@dataclasses.dataclass(frozen=True)
class MultiChoiceConfig:
  """Multi-choice task settings.

  Attributes:
    image_size: (height, width).
    num_objects: (min, max) objects per scene.
    object_size: (min, max) object side in pixels.
    shapes: shape kinds (shapes.SHAPES).
    colors: colour names (shapes.COLORS).
    attributes: what the options name: 'shape', 'color', 'object' (colour and shape).
    num_options: options of the single-choice question (one right).
    inversion_prob: probability of inverting the question into a multi-answer one.
    random_drop: the inverted question keeps a random number of the formerly wrong options (TW-GRPO);
      False keeps all of them.
    think: think mode (TW-GRPO format) or the bare letters.
  """

  image_size: tuple[int, int] = (48, 48)
  num_objects: tuple[int, int] = (1, 2)
  object_size: tuple[int, int] = (8, 16)
  shapes: tuple[str, ...] = shapes_lib.SHAPES
  colors: tuple[str, ...] = tuple(shapes_lib.COLORS)
  attributes: tuple[str, ...] = ATTRIBUTES
  num_options: int = 4
  inversion_prob: float = 0.5
  random_drop: bool = True
  think: bool = True

  def __post_init__(self):
    for name in ('image_size', 'num_objects', 'object_size', 'shapes', 'colors', 'attributes'):
      object.__setattr__(self, name, tuple(getattr(self, name)))
    shapes_lib.check_names(self.shapes, self.colors)
    if not self.attributes or set(self.attributes) - set(ATTRIBUTES):
      raise ValueError(f'attributes must be a non-empty subset of {ATTRIBUTES}, got {self.attributes}')
    if not 1 <= self.num_objects[0] <= self.num_objects[1]:
      raise ValueError(f'num_objects must be (min, max) with 1 <= min <= max, got {self.num_objects}')
    if not 2 <= self.num_options <= 26:
      raise ValueError(f'num_options must be in [2, 26], got {self.num_options}')
    for attribute in self.attributes:
      absent = len(self.values(attribute)) - self.num_objects[1]
      if absent < self.num_options - 1:
        raise ValueError(f'attribute {attribute!r}: with up to {self.num_objects[1]} objects only {absent} of its '
                         f'{len(self.values(attribute))} values are surely absent, fewer than the '
                         f'{self.num_options - 1} wrong options needed')
    if not 0.0 <= self.inversion_prob <= 1.0:
      raise ValueError(f'inversion_prob must be in [0, 1], got {self.inversion_prob}')
    shapes_lib.place_boxes(np.random.default_rng(0), self.num_objects[1], *self.image_size, self.object_size)

  def values(self, attribute: str) -> list[str]:
    if attribute == 'shape':
      return list(self.shapes)
    if attribute == 'color':
      return list(self.colors)
    return [f'{c} {s}' for c in self.colors for s in self.shapes]


def _value(shape: shapes_lib.Shape, attribute: str) -> str:
  return {'shape': shape.kind, 'color': shape.color, 'object': shape.name}[attribute]


@base.register('multichoice', MultiChoiceConfig)
class MultiChoiceTask:
  """meta: answer ('A' or 'A,C'), options, inverted, question_type ('single' | 'multiple'), attribute,
  present (the attribute values in the image), objects, think."""

  def __init__(self, cfg: MultiChoiceConfig):
    self.cfg = cfg

  @property
  def reward_names(self) -> tuple[str, ...]:
    return ('set_subset_soft', 'tw_grpo_format') if self.cfg.think else ('set_subset_soft',)

  @property
  def reward_weights(self) -> tuple[float, ...]:
    return (1.0, 1.0) if self.cfg.think else (1.0,)

  def example(self, seed: int) -> dict[str, Any]:
    cfg = self.cfg
    rng = np.random.default_rng(seed)
    height, width = cfg.image_size
    count = int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1))
    objects = grounding.random_scene(rng, count, height, width, cfg.object_size, cfg.shapes, cfg.colors)
    background = shapes_lib.BACKGROUNDS[int(rng.integers(len(shapes_lib.BACKGROUNDS)))]
    image = shapes_lib.draw(objects, height, width, background)
    attribute = str(cfg.attributes[int(rng.integers(len(cfg.attributes)))])
    present = sorted({_value(o, attribute) for o in objects})
    absent = [v for v in cfg.values(attribute) if v not in present]
    right = present[int(rng.integers(len(present)))]
    wrong = [absent[i] for i in rng.choice(len(absent), size=cfg.num_options - 1, replace=False)]
    inverted = bool(rng.random() < cfg.inversion_prob)
    noun = NOUNS[attribute]
    if inverted:
      keep = int(rng.integers(1, len(wrong) + 1)) if cfg.random_drop else len(wrong)
      wrong = wrong[:keep]  # already in random order
      question = f'Which of these {noun} do not appear in the image? Select all that apply.'
    else:
      question = f'Which of these {noun} appears in the image?'
    options = [right] + wrong
    options = [options[i] for i in rng.permutation(len(options))]
    correct = [string.ascii_uppercase[i] for i, o in enumerate(options) if (o != right) == inverted]
    listing = '\n'.join(f'{string.ascii_uppercase[i]}. {o}' for i, o in enumerate(options))
    hint = ('The answer is the letters of all correct options, separated by commas.' if inverted
            else 'The answer is a single letter.')
    meta = {'answer': ','.join(correct), 'options': options, 'inverted': inverted,
            'question_type': 'multiple' if inverted else 'single', 'attribute': attribute, 'present': present,
            'objects': [{'shape': o.kind, 'color': o.color, 'box': list(o.box)} for o in objects],
            'think': cfg.think}
    prompt = templates.apply(f'{question}\n{listing}', think=cfg.think, answer_hint=hint)
    return {'prompt': prompt, 'images': [image], 'meta': meta}

  def random_answer_completion(self, meta: Mapping[str, Any], seed: int) -> str:
    rng = base.completion_rng(seed)
    n = len(meta['options'])
    picked = sorted(rng.choice(n, size=int(rng.integers(1, n + 1)), replace=False))
    return templates.format_completion(','.join(string.ascii_uppercase[i] for i in picked), think=self.cfg.think)
