"""Any TFDS image dataset as task examples, read with `tfds.data_source` (ArrayRecord, no TensorFlow).

Modes:
- 'classification': CLS-RL prompts; class names from the dataset's ClassLabel feature (or
  `class_names`), candidate list by the CLS-RL rule (`tasks.classification.option_list`).
- 'jigsaw': the image becomes a Jigsaw-R1 puzzle of any question type (`tasks.jigsaw.JigsawConfig`).
- 'counting': CLEVR-style counting from an object-annotation Sequence feature: "How many objects
  are there?" or, for an attribute that is a ClassLabel inside the objects (color, shape, ...),
  "How many <value> objects are there?" about a value present in the image.

The dataset must be prepared in `data_dir` (nothing is downloaded here). Rows are read through
`IndexedSource`: deterministic per seed, process-sharded by row index, resumable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from rl_reason.data.jsonl_source import IndexedSource
from rl_reason.tasks import classification, jigsaw, templates

MODES = ('classification', 'jigsaw', 'counting')


def to_rgb(image: Any, where: str) -> np.ndarray:
  """uint8 [H, W, 3] from a decoded TFDS image (grey is repeated, alpha dropped)."""
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
    raise ValueError(f'{where}: expected a uint8 [H, W, 1|3|4] image, got {image.dtype} {image.shape}')
  if image.shape[-1] == 1:
    return np.repeat(image, 3, axis=-1)
  return image[..., :3]


class TfdsSource(IndexedSource):
  """Task examples from a prepared TFDS dataset (module docstring)."""

  def __init__(self, name: str, *, split: str, mode: str, data_dir: str | None = None, seed: int = 0,
               shuffle: bool = True, process_index: int = 0, process_count: int = 1, think: bool = True,
               image_key: str = 'image', label_key: str = 'label', class_names: Sequence[str] | None = None,
               question: str = 'What type of object is in the photo?', objects_key: str = 'objects',
               count_all_prob: float = 0.5, jigsaw_cfg: jigsaw.JigsawConfig | None = None,
               keep: Callable[[dict[str, Any]], bool] | None = None):
    if mode not in MODES:
      raise ValueError(f'mode {mode!r} unknown; valid: {list(MODES)}')
    self.name, self.split, self.mode, self.think = name, split, mode, think
    self.rows_source = tfds.data_source(name, split=split, data_dir=data_dir)
    features = self.rows_source.dataset_info.features
    where = f'TFDS {name}/{split}'
    if image_key not in features:
      raise ValueError(f'{where}: no image feature {image_key!r}; features: {sorted(features)}')
    self.image_key = image_key
    if mode == 'classification':
      if label_key not in features or not isinstance(features[label_key], tfds.features.ClassLabel):
        raise ValueError(f'{where}: no ClassLabel feature {label_key!r}; features: {sorted(features)}')
      names = list(class_names) if class_names is not None else list(features[label_key].names)
      if len(names) != features[label_key].num_classes:
        raise ValueError(f'{where}: {len(names)} class names for {features[label_key].num_classes} classes')
      self.label_key, self.class_names, self.question = label_key, names, question
    elif mode == 'jigsaw':
      self.puzzles = jigsaw.JigsawTask(jigsaw_cfg or jigsaw.JigsawConfig(think=think))
      if self.puzzles.cfg.think != think:
        raise ValueError(f'think={think} but jigsaw_cfg.think={self.puzzles.cfg.think}')
    else:
      objects = features[objects_key] if objects_key in features else None
      if not isinstance(objects, tfds.features.Sequence) or not isinstance(objects.feature,
                                                                           tfds.features.FeaturesDict):
        raise ValueError(f'{where}: counting needs a Sequence-of-dict feature {objects_key!r} of object '
                         f'annotations; features: {sorted(features)}')
      self.objects_key = objects_key
      self.attributes = {key: list(f.names) for key, f in objects.feature.items()
                         if isinstance(f, tfds.features.ClassLabel)}
      if not 0.0 <= count_all_prob <= 1.0:
        raise ValueError(f'count_all_prob must be in [0, 1], got {count_all_prob}')
      self.count_all_prob = count_all_prob
    super().__init__(len(self.rows_source), self._make_example, seed=seed, shuffle=shuffle,
                     process_index=process_index, process_count=process_count, keep=keep)

  @property
  def reward_names(self) -> tuple[str, ...]:
    if self.mode == 'jigsaw':
      return self.puzzles.reward_names
    if self.mode == 'classification':
      return ('cls_accuracy', 'think_answer_format') if self.think else ('equality_strict',)
    return ('digit', 'answer_type_format')

  @property
  def reward_weights(self) -> tuple[float, ...]:
    if self.mode == 'jigsaw':
      return self.puzzles.reward_weights
    return (1.0,) * len(self.reward_names)

  def _make_example(self, row: int, rng: np.random.Generator) -> dict[str, Any]:
    record = self.rows_source[row]
    image = to_rgb(record[self.image_key], f'TFDS {self.name}/{self.split} row {row}')
    if self.mode == 'jigsaw':
      return self.puzzles.example_from_image(image, rng)
    if self.mode == 'classification':
      label = int(record[self.label_key])
      options = classification.option_list(self.class_names, self.class_names[label], rng)
      meta = {'answer': self.class_names[label], 'label': label, 'options': options, 'think': self.think}
      prompt = classification.render_prompt(self.question, options, think=self.think)
      return {'prompt': prompt, 'images': [image], 'meta': meta}
    return self._counting(record, image, rng)

  def _counting(self, record: dict[str, Any], image: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    objects = record[self.objects_key]
    lengths = {len(v) for v in objects.values()}
    if len(lengths) > 1:
      raise ValueError(f'object annotations of unequal lengths: { {k: len(v) for k, v in objects.items()} }')
    total = lengths.pop() if lengths else 0
    attribute = value = None
    present = [(key, int(v)) for key in self.attributes for v in objects[key]]
    if present and rng.random() >= self.count_all_prob:
      attribute, index = present[int(rng.integers(len(present)))]
      value = self.attributes[attribute][index]
      count = sum(int(v) == index for v in objects[attribute])
      question = f'How many {value} objects are there?'
    else:
      count = total
      question = 'How many objects are there?'
    meta = {'answer': str(count), 'count': count, 'attribute': attribute, 'value': value, 'answer_type': 'digit',
            'think': self.think}
    prompt = templates.apply(question, think=self.think, answer_hint='The answer is a single number.')
    return {'prompt': prompt, 'images': [image], 'meta': meta}
