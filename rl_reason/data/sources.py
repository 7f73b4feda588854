"""Where a run's prompts come from: the task's procedural generator, a TFDS dataset or JSONL files.

The config section `data` (`DataConfig`) selects a registered source by name:

    procedural  (default) the task section's generator, `task.example(seed)`: pipeline.PromptStream
    tfds        a prepared TFDS image dataset through `tfds.data_source` (tfds_source.TfdsSource):
                classification (CLS-RL prompts), jigsaw (the task section's puzzle settings) or
                CLEVR-style counting
    jsonl       users' own rows: prompt, image paths, answer (jsonl_source.JsonlSource)

A row source runs as a `SourceTask` (rewards, warm-up answers, a probe example) and
`pipeline.SourceStream`s over three instances of it, one per role (train, eval, warm-up), each
seeded apart: every process reads only its share of the rows, prompts longer than the largest
prompt bucket are dropped whole (`jsonl_source.PromptBudget`, counted), and the train stream's
position is in the checkpoint. Missing names, paths and files are config errors.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

from rl_reason.tasks import base as tasks_base
from rl_reason.tasks import templates

PROCEDURAL = 'procedural'
TFDS_MODES = ('classification', 'jigsaw', 'counting')
# Fields each row source reads; any other non-default field is a config error (it would be ignored).
_FIELDS = {
    PROCEDURAL: (),
    'tfds': ('tfds_name', 'tfds_dir', 'split', 'eval_split', 'tfds_mode', 'image_key', 'label_key', 'objects_key',
             'class_names', 'question', 'think', 'shuffle'),
    'jsonl': ('jsonl_path', 'eval_jsonl_path', 'think', 'jsonl_instruction', 'shuffle'),
}


def _paths(value: str) -> list[str]:
  return [p.strip() for p in value.split(',') if p.strip()]


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The `data` config section (README, Configuration).

  Attributes:
    source: 'procedural' (the task's generator), 'tfds' or 'jsonl'.
    tfds_name: TFDS dataset name, optionally with config and version ('mnist', 'clevr:3.1.0').
    tfds_dir: the folder the dataset was prepared in ('' = TFDS's default, ~/tensorflow_datasets);
      nothing is downloaded.
    split: TFDS split of the training prompts (slices allowed: 'train[:90%]').
    eval_split: TFDS split of the held-out evaluation prompts ('' = `split`, evaluating on training rows).
    tfds_mode: classification | jigsaw | counting; '' = from the task section (task.name jigsaw or
      classification).
    image_key, label_key, objects_key: TFDS feature names of the image, the ClassLabel (classification)
      and the object annotations (counting).
    class_names: classification: names replacing the ClassLabel's (() = the dataset's).
    question: classification: the question before the option list.
    jsonl_path: JSONL file(s) of the training prompts, comma-separated (format: README).
    eval_jsonl_path: JSONL file(s) of the evaluation prompts ('' = jsonl_path).
    think: think mode of the prompts and of the warm-up answers (TFDS jigsaw: must equal task.think).
    jsonl_instruction: append the think / no-think instruction to each JSONL prompt (False: as written).
    shuffle: a fresh row order each epoch (seeded).
  """

  source: str = PROCEDURAL
  tfds_name: str = ''
  tfds_dir: str = ''
  split: str = 'train'
  eval_split: str = ''
  tfds_mode: str = ''
  image_key: str = 'image'
  label_key: str = 'label'
  objects_key: str = 'objects'
  class_names: tuple[str, ...] = ()
  question: str = 'What type of object is in the photo?'
  jsonl_path: str = ''
  eval_jsonl_path: str = ''
  think: bool = True
  jsonl_instruction: bool = True
  shuffle: bool = True

  def __post_init__(self):
    object.__setattr__(self, 'class_names', tuple(str(n) for n in self.class_names))
    if self.source not in SOURCES:
      raise ValueError(f'data.source {self.source!r} unknown; valid: {names()}')
    stray = sorted(f.name for f in dataclasses.fields(self) if f.name != 'source'
                   and f.name not in _FIELDS[self.source] and getattr(self, f.name) != f.default)
    if stray:
      raise ValueError(f'data fields {stray} do not apply to data.source={self.source!r} (its fields: '
                       f'{list(_FIELDS[self.source])})')
    if self.source == 'tfds':
      if not self.tfds_name:
        raise ValueError("data.source='tfds' needs data.tfds_name (a dataset prepared in data.tfds_dir)")
      if self.tfds_dir and not os.path.isdir(self.tfds_dir):
        raise ValueError(f'data.tfds_dir {self.tfds_dir} is not a directory')
      if self.tfds_mode not in ('', *TFDS_MODES):
        raise ValueError(f"data.tfds_mode {self.tfds_mode!r} unknown; valid: {list(TFDS_MODES)} or '' (the task's)")
      if not self.split:
        raise ValueError('data.split must name a TFDS split')
    if self.source == 'jsonl':
      if not _paths(self.jsonl_path):
        raise ValueError("data.source='jsonl' needs data.jsonl_path (one or more JSONL files, comma-separated)")
      for key in ('jsonl_path', 'eval_jsonl_path'):
        for path in _paths(getattr(self, key)):
          if not os.path.isfile(path):
            raise ValueError(f'data.{key}: file {path} not found')

  def mode(self, task_name: str) -> str:
    """The TFDS mode: tfds_mode, or the task's when that is a TFDS mode."""
    if self.tfds_mode:
      return self.tfds_mode
    if task_name in TFDS_MODES:
      return task_name
    raise ValueError(f"data.tfds_mode is '' (the task's), but task.name {task_name!r} is no TFDS mode; set "
                     f'data.tfds_mode to one of {list(TFDS_MODES)}')


def check(cfg: DataConfig, task_name: str, task_cfg: Any, reward_weights: Mapping[str, float],
          curriculum_controls: frozenset[str]) -> None:
  """Config-time checks across sections: what a row source needs from the task, rewards and curriculum."""
  if cfg.source == PROCEDURAL:
    return
  if cfg.source == 'tfds' and cfg.mode(task_name) == 'jigsaw':
    if task_name != 'jigsaw':
      raise ValueError(f"data.tfds_mode='jigsaw' cuts the dataset's images with the task section's puzzle settings: "
                       f'set task.name=jigsaw (got {task_name!r})')
    if task_cfg.think != cfg.think:
      raise ValueError(f'data.think={cfg.think} but task.think={task_cfg.think}: the puzzles follow the task '
                       'section; set both alike')
  if cfg.source == 'jsonl' and not reward_weights:
    raise ValueError("data.source='jsonl': the rows carry answers, not rewards; set reward.weights (e.g. "
                     "{'exact_match': 1.0, 'think_answer_format': 0.5})")
  switching = sorted(c for c in curriculum_controls if c == 'task' or c.startswith('task.') or c == 'domains')
  if switching:
    raise ValueError(f'the curriculum sets {switching}, which only the procedural tasks can follow; '
                     f'data.source={cfg.source!r} reads fixed rows')


# ---------------------------------------------------------------------------- registry
Builder = Callable[..., Any]
SOURCES: dict[str, Builder | None] = {PROCEDURAL: None}


def register(name: str) -> Callable[[Builder], Builder]:
  """Registers `builder(cfg, role, *, task_name, task_cfg, seed, process_index, process_count, keep)` -> an
  `IndexedSource` with the role's rows (role: train, eval or warmup)."""
  def decorator(builder: Builder) -> Builder:
    if name in SOURCES:
      raise ValueError(f'data source {name!r} is already registered')
    SOURCES[name] = builder
    return builder
  return decorator


def names() -> list[str]:
  return sorted(SOURCES)


def role_seed(seed: int, role: str) -> int:
  """The row order's seed of one role: train, eval and warm-up shuffle apart."""
  from rl_reason.data import pipeline  # pylint: disable=g-import-not-at-top  (pipeline imports the models)
  return pipeline.example_seed(seed, role, 0)


@register('tfds')
def _tfds(cfg: DataConfig, role: str, *, task_name: str, task_cfg: Any, seed: int, process_index: int,
          process_count: int, keep=None):
  from rl_reason.data import tfds_source  # pylint: disable=g-import-not-at-top  (TFDS is a heavy import)
  mode = cfg.mode(task_name)
  split = cfg.eval_split or cfg.split if role == 'eval' else cfg.split
  try:
    return tfds_source.TfdsSource(
        cfg.tfds_name, split=split, mode=mode, data_dir=cfg.tfds_dir or None, seed=role_seed(seed, role),
        shuffle=cfg.shuffle, process_index=process_index, process_count=process_count, think=cfg.think,
        image_key=cfg.image_key, label_key=cfg.label_key, class_names=cfg.class_names or None,
        question=cfg.question, objects_key=cfg.objects_key, jigsaw_cfg=task_cfg if mode == 'jigsaw' else None,
        keep=keep)
  except (ValueError, FileNotFoundError) as error:
    raise ValueError(f'data.tfds_name {cfg.tfds_name!r}, split {split!r}, in '
                     f'{cfg.tfds_dir or "the default TFDS folder"}: {error}') from error
  except Exception as error:  # TFDS's own errors (dataset not found, not prepared): name what was asked for
    if type(error).__module__.startswith('tensorflow_datasets'):
      raise ValueError(f'data.tfds_name {cfg.tfds_name!r}, split {split!r}: not available in '
                       f'{cfg.tfds_dir or "the default TFDS folder"} ({type(error).__name__}: {error})') from error
    raise


@register('jsonl')
def _jsonl(cfg: DataConfig, role: str, *, task_name: str, task_cfg: Any, seed: int, process_index: int,
           process_count: int, keep=None):
  from rl_reason.data import jsonl_source  # pylint: disable=g-import-not-at-top
  del task_name, task_cfg
  paths = _paths(cfg.eval_jsonl_path or cfg.jsonl_path if role == 'eval' else cfg.jsonl_path)
  return jsonl_source.JsonlSource(paths, seed=role_seed(seed, role), shuffle=cfg.shuffle,
                                  process_index=process_index, process_count=process_count,
                                  think=cfg.think if cfg.jsonl_instruction else None, keep=keep)


def build(cfg: DataConfig, role: str, **kwargs):
  """The role's IndexedSource of a row source (keyword arguments: see `register`)."""
  builder = SOURCES[cfg.source]
  if builder is None:
    raise ValueError(f'data.source {cfg.source!r} has no rows; its prompts come from the task')
  return builder(cfg, role, **kwargs)


# ---------------------------------------------------------------------------- the loop's view
class SourceTask:
  """A row source as the loop's task: its rewards, a probe example and format-only warm-up answers.

  Attributes:
    source: the training rows' IndexedSource (unfiltered; the streams build their own instances).
  """

  def __init__(self, cfg: DataConfig, source, *, task_name: str, task_cfg: Any):
    self.cfg = cfg
    self.source = source
    self.name = f'{cfg.source}:{cfg.tfds_name or cfg.jsonl_path}'
    self.mode = cfg.mode(task_name) if cfg.source == 'tfds' else ''
    self.puzzles = getattr(source, 'puzzles', None)  # TFDS jigsaw: the puzzle task (its answers and metrics)

  @property
  def reward_names(self) -> tuple[str, ...]:
    return tuple(getattr(self.source, 'reward_names', ()))  # JSONL: none (reward.weights is required)

  @property
  def reward_weights(self) -> tuple[float, ...]:
    return tuple(getattr(self.source, 'reward_weights', ()))

  @property
  def metric_rewards(self) -> dict[str, str] | None:
    return self.puzzles.metric_rewards if self.puzzles is not None else None

  def example(self, seed: int) -> dict[str, Any]:
    """The example of this process's row `seed` (mod its rows) in epoch 0: a pure function of the seed."""
    rows = self.source.rows
    return self.source.example_at(0, rows[seed % len(rows)])

  def random_answer_completion(self, meta: Mapping[str, Any], seed: int) -> str:
    """A well-formed answer that is usually wrong: teaches the format, never the rows' answers."""
    if self.puzzles is not None:
      return self.puzzles.random_answer_completion(meta, seed)
    rng = tasks_base.completion_rng(seed)
    if self.mode == 'classification':
      answer = meta['options'][int(rng.integers(len(meta['options'])))]
    elif self.mode == 'counting':
      answer = str(int(rng.integers(10)))
    else:  # JSONL: the answer of another row of this process
      answer = self.source.read_row(int(self.source.rows[int(rng.integers(len(self.source.rows)))]))['answer']
      answer = ', '.join(map(str, answer)) if isinstance(answer, list) else str(answer)
    return templates.format_completion(answer, think=self.cfg.think)


def source_task(cfg: DataConfig, *, task_name: str, task_cfg: Any, seed: int, process_index: int,
                process_count: int) -> SourceTask:
  source = build(cfg, 'train', task_name=task_name, task_cfg=task_cfg, seed=seed, process_index=process_index,
                 process_count=process_count)
  return SourceTask(cfg, source, task_name=task_name, task_cfg=task_cfg)
