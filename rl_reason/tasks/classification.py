"""CLS-RL image classification: a class question plus the bracketed candidate list, on procedural classes.

Option-list rule (CLS-RL few-shot data): the list holds floor(0.4 C) of the C class names; if that
is below 30, all C are listed; it is capped at 100. Names are drawn at random; the true class
replaces the last one if it was not drawn; the list is shuffled. The prompt is

    {question}\\n Please choose one from list [ c1, c2, ..., cn].\\n Please output the thinking ...

with CLS-RL's think instruction, or No-Thinking-CLS-RL's "Please directly output the answer."
With show_options False the list line is left out (the tiny recipes: see ClassificationConfig).
The procedural classes are shapes, colours or (colour, shape) pairs of one solid object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rl_reason.tasks import base
from rl_reason.tasks import shapes as shapes_lib

CLASS_KINDS = ('shape', 'color', 'shape_color')
THINK = 'Please output the thinking process in <think> </think> and final answer in <answer> </answer> tags.'
NO_THINK = 'Please directly output the answer.'
DEFAULT_QUESTIONS = {
    'shape': 'What shape is in the photo?',
    'color': 'What colour is the object in the photo?',
    'shape_color': 'What type of object is in the photo?',
}


def num_options(num_classes: int) -> int:
  """CLS-RL: floor(0.4 C); all C if that is below 30; at most 100."""
  count = int(num_classes * 0.4)
  if count < 30:
    count = num_classes
  return min(count, 100)


def option_list(class_names: Sequence[str], label: str, rng: np.random.Generator) -> list[str]:
  """The shuffled candidate names for one example; always contains `label` exactly once."""
  names = list(class_names)
  if len(set(names)) != len(names):
    raise ValueError('class names must be distinct')
  if label not in names:
    raise ValueError(f'label {label!r} is not a class name')
  chosen = [names[i] for i in rng.permutation(len(names))[:num_options(len(names))]]
  if label not in chosen:
    chosen[-1] = label
  return [chosen[i] for i in rng.permutation(len(chosen))]


def render_prompt(question: str, options: Sequence[str], *, think: bool, show_options: bool = True) -> str:
  """CLS-RL's wording, spaces included: '[ a, b, c].' and a leading space before each instruction.

  show_options False drops the candidate-list line and keeps the rest of the wording.
  """
  instruction = f' {THINK if think else NO_THINK}'
  if not show_options:
    return f'{question}\n{instruction}'
  choice = ' Please choose one from list [ ' + ', '.join(options) + '].'
  return f'{question}\n{choice}\n{instruction}'


@dataclasses.dataclass(frozen=True)
class ClassificationConfig:
  """Classification task settings.

  Attributes:
    classes: 'shape', 'color' or 'shape_color' (the class is the pair, named 'red circle').
    shapes: shape kinds (shapes.SHAPES).
    colors: colour names (shapes.COLORS).
    image_size: (height, width).
    object_size: (min, max) object side in pixels.
    question: the class question; '' uses a default per class kind.
    think: CLS-RL (think, then answer in tags) or No-Thinking-CLS-RL (the class name only).
    show_options: CLS-RL's candidate list in the prompt. False leaves it out: a 2-layer decoder from
      random init learns to copy a name from the list (shuffled per prompt, so a random class)
      instead of reading the image; supervised on the correct colour labels (100 steps of 64) it
      reached greedy accuracy 0.97 without the list, 0.53 with the list in a fixed order and 0.20
      with CLS-RL's shuffled list (chance 0.125). With every class listed (below 30 classes) the
      list tells a model nothing the task does not.
  """

  classes: str = 'shape'
  shapes: tuple[str, ...] = shapes_lib.SHAPES
  colors: tuple[str, ...] = tuple(shapes_lib.COLORS)
  image_size: tuple[int, int] = (32, 32)
  object_size: tuple[int, int] = (12, 28)
  question: str = ''
  think: bool = True
  show_options: bool = True

  def __post_init__(self):
    for name in ('shapes', 'colors', 'image_size', 'object_size'):
      object.__setattr__(self, name, tuple(getattr(self, name)))
    if self.classes not in CLASS_KINDS:
      raise ValueError(f'classes {self.classes!r} unknown; valid: {list(CLASS_KINDS)}')
    shapes_lib.check_names(self.shapes, self.colors)
    if len(self.class_names) < 2:
      raise ValueError(f'need at least 2 classes, got {self.class_names}')
    shapes_lib.place_boxes(np.random.default_rng(0), 1, *self.image_size, self.object_size)

  @property
  def class_names(self) -> list[str]:
    if self.classes == 'shape':
      return list(self.shapes)
    if self.classes == 'color':
      return list(self.colors)
    return [f'{c} {s}' for c in self.colors for s in self.shapes]


@base.register('classification', ClassificationConfig)
class ClassificationTask:
  """meta: answer (class name), label (its index in class_names), options, box, think."""

  def __init__(self, cfg: ClassificationConfig):
    self.cfg = cfg
    self.class_names = cfg.class_names

  @property
  def reward_names(self) -> tuple[str, ...]:
    if self.cfg.think:  # CLS-RL: acc (case-insensitive match or math-verify) + format
      return ('cls_accuracy', 'think_answer_format')
    return ('equality_strict',)  # No-Thinking-CLS-RL: the whole completion equals the label

  @property
  def reward_weights(self) -> tuple[float, ...]:
    return (1.0, 1.0) if self.cfg.think else (1.0,)

  def example(self, seed: int) -> dict[str, Any]:
    cfg = self.cfg
    rng = np.random.default_rng(seed)
    label = int(rng.integers(len(self.class_names)))
    if cfg.classes == 'shape':
      kind, color = self.class_names[label], str(cfg.colors[int(rng.integers(len(cfg.colors)))])
    elif cfg.classes == 'color':
      kind, color = str(cfg.shapes[int(rng.integers(len(cfg.shapes)))]), self.class_names[label]
    else:
      color, kind = divmod(label, len(cfg.shapes))
      color, kind = cfg.colors[color], cfg.shapes[kind]
    (box,) = shapes_lib.place_boxes(rng, 1, *cfg.image_size, cfg.object_size)
    background = shapes_lib.BACKGROUNDS[int(rng.integers(len(shapes_lib.BACKGROUNDS)))]
    image = shapes_lib.draw([shapes_lib.Shape(kind=kind, color=color, box=box)], *cfg.image_size, background)
    options = option_list(self.class_names, self.class_names[label], rng)
    question = cfg.question or DEFAULT_QUESTIONS[cfg.classes]
    meta = {'answer': self.class_names[label], 'label': label, 'options': options, 'box': list(box),
            'think': cfg.think}
    prompt = render_prompt(question, options, think=cfg.think, show_options=cfg.show_options)
    return {'prompt': prompt, 'images': [image], 'meta': meta}

  def random_answer_completion(self, meta: Mapping[str, Any], seed: int) -> str:
    options = meta['options']
    answer = options[int(base.completion_rng(seed).integers(len(options)))]
    return f'<think></think><answer>{answer}</answer>' if self.cfg.think else answer
