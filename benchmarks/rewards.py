"""Reward scoring throughput: items/s of jigsaw_grid, iou_box and math_equiv through rewards.score_batch.

  python benchmarks/rewards.py --items=2048 --repeats=3 --workers=0,2 --out=/tmp/rewards.json

Completions and metas come from the task generators (jigsaw 2x2, grounding boxes, arithmetic
difficulty 3), each completion a random answer in the task's own format (`random_answer_completion`),
so every reward parses a real answer and scores it. math_equiv is measured twice: on the arithmetic
task's integer answers (its numeric fast path) and on LaTeX answers (fractions of square roots, half
of them equal to the label in another form), which go through math-verify. One reward per call,
`--items` completions. Each (case, workers) cell makes one untimed call first (with workers > 0 it
starts the pool's forkserver and the workers' imports; reported as first_call_s), then `--repeats`
timed calls; items/s is items / median time. Every call scores fresh items (math_equiv caches
math-verify results per (label, answer) pair, in the workers too). workers = 0 scores in this
process, k > 0 in rewards.pool's k worker processes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rl_reason import rewards, tasks  # pylint: disable=wrong-import-position
from rl_reason.rewards import pool as pool_lib  # pylint: disable=wrong-import-position


def _task_items(task_name: str, task_cfg: dict):
  def make(seeds: range) -> tuple[list[str], list[dict]]:
    task = tasks.get(task_name, task_cfg)
    metas = [task.example(seed)['meta'] for seed in seeds]
    return [task.random_answer_completion(meta, seed) for seed, meta in zip(seeds, metas)], metas
  return make


def _latex_items(seeds: range) -> tuple[list[str], list[dict]]:
  texts, metas = [], []
  for seed in seeds:
    rng = random.Random(seed)
    # p = seed + 1: no (label, answer) pair repeats across calls, so math-verify's cache never answers.
    p, q, r, k = seed + 1, rng.randint(2, 999), rng.choice((2, 3, 5, 7, 11, 13)), rng.randint(2, 5)
    gold = f'\\frac{{{p}\\sqrt{{{r}}}}}{{{q}}}'
    if seed % 2:  # the same value written another way
      pred = f'\\frac{{{k * p}}}{{{k * q}}}\\sqrt{{{r}}}'
    else:
      pred = f'\\frac{{{p + 1}\\sqrt{{{r}}}}}{{{q}}}'
    texts.append(f'<think>so the answer is {pred}</think> \\boxed{{{pred}}}')
    metas.append({'answer': gold})
  return texts, metas


# case -> (reward, items for a range of seeds).
CASES = {
    'jigsaw_grid': ('jigsaw_grid', _task_items('jigsaw', {'rows': 2, 'cols': 2})),
    'iou_box': ('iou_box', _task_items('grounding', {'answer': 'box'})),
    'math_equiv': ('math_equiv', _task_items('arithmetic', {'difficulty': 3, 'think': True})),
    'math_equiv_latex': ('math_equiv', _latex_items),
}


def measure(case: str, count: int, workers: int, repeats: int) -> dict[str, float]:
  reward, make = CASES[case]

  def call(index: int) -> float:
    texts, metas = make(range(index * count, (index + 1) * count))  # fresh items: no cache hits
    start = time.perf_counter()
    scores = rewards.score_batch(texts, metas, {reward: 1.0}, workers=workers)
    seconds = time.perf_counter() - start
    if int(scores['failures']):
      raise RuntimeError(f'{case}: {int(scores["failures"])} evaluations failed; the timing would be wrong')
    return seconds

  first = call(0)
  runs = [call(i + 1) for i in range(repeats)]
  median = statistics.median(runs)
  return {'case': case, 'reward': reward, 'workers': workers, 'items': count, 'first_call_s': first,
          'runs_s': runs, 'median_s': median, 'items_per_s': count / median}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--items', type=int, default=2048)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--workers', default='0,2', help='comma-separated worker counts (0: in-process)')
  parser.add_argument('--cases', default=','.join(CASES), help=f'comma-separated, of {list(CASES)}')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  workers = [int(w) for w in args.workers.split(',')]
  chosen = args.cases.split(',')
  unknown = sorted(set(chosen) - set(CASES))
  if unknown:
    parser.error(f'unknown cases {unknown}; valid: {list(CASES)}')
  rows = []
  try:
    for case in chosen:
      for count in workers:
        rows.append(measure(case, args.items, count, args.repeats))
  finally:
    pool_lib.close_shared_pools()
  print(f'{args.items} items per call, median of {args.repeats} (after one untimed call), {os.cpu_count()} CPUs:')
  print(f'  {"case":<17} {"workers":>7} {"items/s":>10} {"median s":>9} {"first call s":>13}')
  for row in rows:
    print(f'  {row["case"]:<17} {row["workers"]:>7} {row["items_per_s"]:>10.0f} {row["median_s"]:>9.3f} '
          f'{row["first_call_s"]:>13.3f}')
  if args.out:
    with open(args.out, 'w') as f:
      json.dump({'settings': {'items': args.items, 'repeats': args.repeats, 'workers': workers,
                              'cpus': os.cpu_count()}, 'results': rows}, f, indent=2)


if __name__ == '__main__':
  main()
