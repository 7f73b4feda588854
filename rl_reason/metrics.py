"""Run bookkeeping: metrics.jsonl + TensorBoard, decoded samples, a PNG plot, a progress bar, a summary.

metrics.jsonl holds one JSON object per `write` call: {"step": int, name: float | null, ...}; NaN and
infinities are written as null (strict JSON) and read back as NaN.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable, Mapping

import tqdm
from matplotlib.figure import Figure

METRICS_FILE = 'metrics.jsonl'
SAMPLES_FILE = 'samples.jsonl'


def _json_number(value: Any) -> float | None:
  value = float(value)
  return value if math.isfinite(value) else None


def _append_line(path: str, record: Mapping[str, Any]) -> None:
  # Opened per call: a crash loses at most this line, and a file rewritten by `truncate_after`
  # is never shadowed by a stale handle.
  with open(path, 'a', encoding='utf-8') as f:
    f.write(json.dumps(record, allow_nan=False) + '\n')
    f.flush()


def _finite_points(rows: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
  return [(row['step'], row[key]) for row in rows if key in row and not math.isnan(row[key])]


class MetricsWriter:
  """Appends scalars to workdir/metrics.jsonl (and TensorBoard in workdir/tb).

  `active=False` is the writer of every process but the first in a multi-process run: the run's
  files are written once, by process 0, and the others' calls write nothing.
  """

  def __init__(self, workdir: str, *, tensorboard: bool = True, active: bool = True):
    self.active = active
    self._tb = None
    if not active:
      return
    os.makedirs(workdir, exist_ok=True)
    self.metrics_path = os.path.join(workdir, METRICS_FILE)
    self.samples_path = os.path.join(workdir, SAMPLES_FILE)
    self._tb = None
    if tensorboard:
      import tensorboardX  # pylint: disable=g-import-not-at-top  # slow import, only when used
      self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, 'tb'))

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.active:
      return
    record = {'step': int(step), **{name: _json_number(value) for name, value in scalars.items()}}
    _append_line(self.metrics_path, record)
    if self._tb is not None:
      for name, value in record.items():
        if name != 'step' and value is not None:
          self._tb.add_scalar(name, value, int(step))
      self._tb.flush()

  def write_texts(self, step: int, texts: list[str], name: str = 'samples') -> None:
    if not self.active:
      return
    _append_line(self.samples_path, {'step': int(step), 'name': name, 'texts': list(texts)})
    if self._tb is not None:
      # TensorBoard renders text as markdown; code fences keep the model output verbatim.
      self._tb.add_text(name, '\n\n'.join(f'```\n{text}\n```' for text in texts), int(step))
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def read_metrics(path: str) -> list[dict[str, Any]]:
  """Rows of a metrics.jsonl (null -> NaN); a torn last line from a crash mid-write is skipped."""
  with open(path, encoding='utf-8') as f:
    lines = [line for line in f.read().splitlines() if line.strip()]
  rows = []
  for index, line in enumerate(lines):
    try:
      row = json.loads(line)
    except json.JSONDecodeError:
      if index == len(lines) - 1:
        break
      raise ValueError(f'{path}: line {index + 1} is not valid JSON: {line[:80]!r}') from None
    rows.append({k: float('nan') if v is None else v for k, v in row.items()})
  return rows


def truncate_after(path: str, step: int) -> None:
  """Drops rows with step > `step` (logged after the checkpoint a resumed run restarts from)."""
  if not os.path.exists(path):
    return
  kept = [row for row in read_metrics(path) if row['step'] <= step]
  tmp_path = path + '.tmp'
  with open(tmp_path, 'w', encoding='utf-8') as f:
    for row in kept:
      f.write(json.dumps({k: _json_number(v) if isinstance(v, float) else v for k, v in row.items()},
                         allow_nan=False) + '\n')
  os.replace(tmp_path, path)  # atomic: a crash leaves the old or the new file, never half of it


def plot_metrics(metrics_path: str, out_png: str,
                 keys: Iterable[str] = ('reward_mean', 'solve_rate', 'eval_solve_rate')) -> list[str]:
  """PNG of `keys` against step; keys absent from every row are skipped. Returns the plotted keys."""
  rows = read_metrics(metrics_path)
  figure = Figure(figsize=(7, 4), dpi=100)  # no pyplot: no global state, no GUI backend
  axes = figure.subplots()
  plotted = []
  for key in keys:
    points = _finite_points(rows, key)
    if not points:
      continue
    steps, values = zip(*points)
    # Eval rows are sparse: markers keep isolated points visible.
    axes.plot(steps, values, label=key, marker='o' if len(points) < 50 else None, markersize=3)
    plotted.append(key)
  axes.set_xlabel('step')
  if plotted:
    axes.legend()
  else:
    axes.set_title('no data for ' + ', '.join(keys))
  axes.grid(alpha=0.3)
  figure.tight_layout()
  figure.savefig(out_png)
  return plotted


class ProgressBar:
  """tqdm over training steps showing a few scalars; by default silent when stderr is not a terminal."""

  def __init__(self, total: int, initial: int = 0, *, disable: bool | None = None):
    self._bar = tqdm.tqdm(total=total, initial=initial, unit='step', dynamic_ncols=True, disable=disable)

  def update(self, step: int, postfix: Mapping[str, float]) -> None:
    self._bar.set_postfix({name: f'{float(value):.3g}' for name, value in postfix.items()}, refresh=False)
    self._bar.update(step - self._bar.n)

  def close(self) -> None:
    self._bar.close()


def format_summary(rows: list[dict[str, Any]]) -> str:
  """A few lines: reward mean first -> last, best eval solve rate, summed step time."""
  if not rows:
    return 'no metrics recorded'
  lines = [f'steps {rows[0]["step"]}..{rows[-1]["step"]} ({len(rows)} rows)']
  reward = _finite_points(rows, 'reward_mean')
  if reward:
    (first_step, first), (last_step, last) = reward[0], reward[-1]
    lines.append(f'reward_mean: {first:.3f} (step {first_step}) -> {last:.3f} (step {last_step})')
  solve = _finite_points(rows, 'eval_solve_rate')
  if solve:
    best_step, best = max(solve, key=lambda point: point[1])
    lines.append(f'eval_solve_rate: best {best:.3f} at step {best_step}, last {solve[-1][1]:.3f}')
  step_times = _finite_points(rows, 'time_step')
  if step_times:
    lines.append(f'time_step: {sum(t for _, t in step_times):.1f} s total over {len(step_times)} logged steps')
  return '\n'.join(lines)
