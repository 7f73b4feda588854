"""A pool of reward worker processes: per-evaluation timeouts, failed items scored, workers replaced.

Workers start with 'forkserver' (default) or 'spawn', never 'fork': the parent has JAX loaded and
its threads running, and forking a multi-threaded process can deadlock the child. The forkserver
is a fresh interpreter that imports `rl_reason.rewards` (and the main module) once; workers fork
from it in milliseconds.

Protocol: the parent sends a worker the reward records it needs (acknowledged), then chunks of
items (index, text, meta, reward names). The worker evaluates each (item, reward) under the soft
SIGALRM deadline of `scoring.evaluate` and sends results back in batches (at least every
FLUSH_S, and at the end of the chunk). Through two shared-memory numbers it also publishes how
many evaluations of the chunk it has finished and when the current one started, so the parent
knows which evaluation runs and since when without a message per evaluation. An evaluation
still running `timeout_s + HARD_KILL_GRACE_S` after its start (C code that ignores signals, a
deadlock), or whose worker died, is scored as failed; the worker is killed and replaced, and the
chunk's other unanswered evaluations go back to the queue. Training never waits longer than that
for one evaluation.
"""

from __future__ import annotations

import atexit
import collections
import math
import multiprocessing
import multiprocessing.connection
import pickle
import signal
import time
from collections.abc import Mapping, Sequence
from typing import Any

from absl import logging

from rl_reason.rewards import registry, scoring

HARD_KILL_GRACE_S = 2.0  # past the soft deadline, before the parent kills a worker
STARTUP_TIMEOUT_S = 120.0  # for a worker to import the modules of the rewards it is sent
MAX_CHUNK = 256  # items per message to one worker
FLUSH_S = 0.05  # a worker sends the results it holds at least this often
MAX_START_FAILURES = 3  # workers in a row that die before answering anything: the pool cannot work
START_METHODS = ('forkserver', 'spawn')
PRELOAD = ['__main__', 'rl_reason.rewards']
_DONE, _STARTED = 0, 1  # slots of a worker's shared progress array


def _worker_main(conn: multiprocessing.connection.Connection, progress: Any) -> None:
  """A worker's loop: install reward tables, evaluate chunks, send results back in batches."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
  table: dict[str, registry.RewardFn] = {}
  while True:
    try:
      message = conn.recv()
    except EOFError:
      return  # the parent has gone
    except Exception as e:  # pylint: disable=broad-except  (e.g. a meta that does not unpickle)
      conn.send(('recv_error', f'{type(e).__name__}: {e}'))
      continue
    kind = message[0]
    if kind == 'stop':
      return
    if kind == 'rewards':
      registry.install(message[1])
      table = {reward.name: reward for reward in message[1]}
      conn.send(('rewards_ok',))
    elif kind == 'items':
      _, timeout_s, items = message
      done, batch, flushed = 0, [], time.monotonic()
      for index, text, meta, names in items:
        for name in names:
          batch.append((index, name, scoring.evaluate(table[name], text, meta, timeout_s)))
          done += 1
          now = time.monotonic()
          progress[_STARTED] = now  # the next evaluation starts now; written before the count moves
          progress[_DONE] = done
          if now - flushed > FLUSH_S:
            conn.send(('results', batch))
            batch, flushed = [], now
      conn.send(('results', batch))


class _Worker:
  """One worker process, the chunk of evaluations it was given, and how much of it came back."""

  def __init__(self, ctx: Any):
    self.conn, child = ctx.Pipe(duplex=True)
    self.progress = ctx.RawArray('d', 2)  # [evaluations of the chunk done, start time of the current one]
    self.process = ctx.Process(target=_worker_main, args=(child, self.progress), daemon=True,
                               name='rl_reason-reward-worker')
    self.process.start()
    child.close()
    self.table: list[registry.RewardFn] | None = None
    self.chunk: list[tuple[int, str]] = []  # (item, reward) in evaluation order
    self.received = 0  # results of the chunk received so far
    self.answered = False  # has it ever replied (so it did start)?

  @property
  def busy(self) -> bool:
    return self.received < len(self.chunk)

  def running(self) -> tuple[int, float]:
    """(position in the chunk of the evaluation running now, when it started)."""
    started = self.progress[_STARTED]
    return int(self.progress[_DONE]), started

  def kill(self) -> None:
    if self.process.is_alive():
      self.process.kill()
    self.process.join(5.0)
    self.conn.close()


class RewardPool:
  """Reward worker processes; `run` scores a batch and survives workers that raise, hang or die."""

  def __init__(self, workers: int, *, start_method: str = 'forkserver', hard_kill_grace_s: float = HARD_KILL_GRACE_S):
    if workers < 1:
      raise ValueError(f'a reward pool needs at least one worker, got {workers}')
    if start_method not in START_METHODS:
      raise ValueError(f'start_method must be one of {START_METHODS} (never fork: JAX threads), got {start_method!r}')
    self.num_workers = workers
    self.hard_kill_grace_s = hard_kill_grace_s
    self._ctx = multiprocessing.get_context(start_method)
    if start_method == 'forkserver':
      self._ctx.set_forkserver_preload(PRELOAD)
    self._workers: list[_Worker] = []
    self.restarts = 0  # workers replaced because they died or hung, over the pool's life
    self._start_failures = 0

  def __enter__(self) -> RewardPool:
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()

  def close(self) -> None:
    for worker in self._workers:
      try:
        worker.conn.send(('stop',))
      except OSError:
        pass  # already gone
    deadline = time.monotonic() + 5.0
    for worker in self._workers:
      worker.process.join(max(deadline - time.monotonic(), 0.0))
      worker.kill()
    self._workers = []

  def _replace(self, slot: int, why: str) -> None:
    worker = self._workers[slot]
    logging.warning('reward worker pid %s %s; replacing it', worker.process.pid, why)
    worker.kill()
    self._start_failures = 0 if worker.answered else self._start_failures + 1
    if self._start_failures >= MAX_START_FAILURES:
      raise RuntimeError(f'{self._start_failures} reward workers in a row died before answering (the last {why}); '
                         'see their stderr above. Score with workers=0, or fix what the workers import.')
    self._workers[slot] = _Worker(self._ctx)
    self.restarts += 1

  def _send_table(self, slot: int, table: list[registry.RewardFn]) -> None:
    worker = self._workers[slot]
    worker.conn.send(('rewards', table))
    if not worker.conn.poll(STARTUP_TIMEOUT_S):
      raise RuntimeError(f'reward worker did not load the rewards {[r.name for r in table]} within '
                         f'{STARTUP_TIMEOUT_S:g} s')
    reply = worker.conn.recv()
    worker.answered = True
    if reply[0] != 'rewards_ok':
      raise ValueError(f'a reward worker could not load the rewards {[r.name for r in table]}: {reply[1]}. '
                       'Rewards must be importable (defined at module level) to run in a pool; or use workers=0.')
    worker.table = table

  def run(self, rewards: Sequence[registry.RewardFn], completions: Sequence[str],
          metas: Sequence[Mapping[str, Any]], timeout_s: float | None) -> list[list[scoring.Result]]:
    """Results [reward][item] of every reward on every completion, as `scoring.evaluate` gives them."""
    names = tuple(reward.name for reward in rewards)
    column = {name: r for r, name in enumerate(names)}
    table = [registry.get(part) for name in names for part in registry.components(name)]
    table = list({reward.name: reward for reward in table}.values())
    try:
      pickle.dumps(table)
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f'rewards {list(names)} cannot be sent to worker processes ({type(e).__name__}: {e}); '
                       'define reward functions at module level, or score with workers=0') from e
    results: list[list[scoring.Result | None]] = [[None] * len(completions) for _ in rewards]
    queue: collections.deque[tuple[int, tuple[str, ...]]] = collections.deque(
        (i, names) for i in range(len(completions)))
    while len(self._workers) < self.num_workers:
      self._workers.append(_Worker(self._ctx))
    hard_s = None if timeout_s is None else timeout_s + self.hard_kill_grace_s

    def requeue(evaluations: Sequence[tuple[int, str]]) -> None:
      groups: list[tuple[int, list[str]]] = []
      for item, name in evaluations:
        if groups and groups[-1][0] == item:
          groups[-1][1].append(name)
        else:
          groups.append((item, [name]))
      queue.extendleft((item, tuple(rest)) for item, rest in reversed(groups))

    def fail_running(slot: int, status: str, message: str) -> None:
      """Scores the running evaluation as failed and requeues the chunk's other unanswered ones."""
      worker = self._workers[slot]
      position, _ = worker.running()
      position = max(position, worker.received)
      if position < len(worker.chunk):
        index, name = worker.chunk[position]
        results[column[name]][index] = (status, rewards[column[name]].failure_value, None, message)
        requeue(worker.chunk[worker.received:position] + worker.chunk[position + 1:])
      else:  # it died after finishing but before sending: nothing to blame
        requeue(worker.chunk[worker.received:])
      worker.chunk, worker.received = [], 0

    while queue or any(worker.busy for worker in self._workers):
      for slot, worker in enumerate(self._workers):
        if worker.busy or not queue:
          continue
        size = min(MAX_CHUNK, max(1, math.ceil(len(queue) / (2 * self.num_workers))))
        chunk = [queue.popleft() for _ in range(min(size, len(queue)))]
        message = ('items', timeout_s,
                   [(index, completions[index], metas[index], chunk_names) for index, chunk_names in chunk])
        try:
          payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # pylint: disable=broad-except
          raise ValueError(f'task metas must be picklable to score in worker processes: {type(e).__name__}: '
                           f'{e}') from e
        try:
          if worker.table != table:
            self._send_table(slot, table)
          worker.chunk = [(index, name) for index, chunk_names in chunk for name in chunk_names]
          worker.received = 0
          worker.progress[_DONE], worker.progress[_STARTED] = 0, time.monotonic()
          worker.conn.send_bytes(payload)
        except (EOFError, OSError):  # the worker died while idle: nothing of this chunk ran
          worker.chunk, worker.received = [], 0
          queue.extendleft(reversed(chunk))
          self._replace(slot, f'was found dead (exit code {worker.process.exitcode})')
      busy = [slot for slot, worker in enumerate(self._workers) if worker.busy]
      if not busy:
        continue  # every dispatch found its worker dead; the replacements take the queue
      wait_s = None
      if hard_s is not None:
        wait_s = max(0.0, min(self._workers[s].running()[1] + hard_s for s in busy) - time.monotonic())
      multiprocessing.connection.wait([self._workers[s].conn for s in busy] +
                                      [self._workers[s].process.sentinel for s in busy], timeout=wait_s)
      for slot in busy:
        worker = self._workers[slot]
        try:
          while worker.busy and worker.conn.poll():
            reply = worker.conn.recv()
            worker.answered = True
            if reply[0] == 'recv_error':
              for index, name in worker.chunk[worker.received:]:
                results[column[name]][index] = (scoring.ERROR, rewards[column[name]].failure_value, None,
                                                f'the worker could not read the items: {reply[1]}')
              worker.chunk, worker.received = [], 0
              break
            for index, name, result in reply[1]:
              if (index, name) != worker.chunk[worker.received]:
                raise RuntimeError(f'reward worker answered {(index, name)}, expected {worker.chunk[worker.received]}')
              results[column[name]][index] = result
              worker.received += 1
        except (EOFError, OSError):
          pass  # the worker died mid-message; handled below
        if not worker.busy:
          continue
        if not worker.process.is_alive() or worker.conn.closed:
          worker.process.join(1.0)
          fail_running(slot, scoring.ERROR, f'the reward worker died (exit code {worker.process.exitcode})')
          self._replace(slot, f'died (exit code {worker.process.exitcode})')
        elif hard_s is not None and time.monotonic() - worker.running()[1] > hard_s:
          fail_running(slot, scoring.TIMEOUT, f'still running {hard_s:g} s after it started (hard kill)')
          self._replace(slot, f'hung for more than {hard_s:g} s')
    return results  # type: ignore[return-value]  (every slot is filled)


_SHARED: dict[tuple[int, str], RewardPool] = {}


def shared_pool(workers: int, start_method: str = 'forkserver') -> RewardPool:
  """The process-wide pool of this size (created on first use, closed at exit)."""
  key = (workers, start_method)
  if key not in _SHARED:
    _SHARED[key] = RewardPool(workers, start_method=start_method)
  return _SHARED[key]


def close_shared_pools() -> None:
  for pool in _SHARED.values():
    pool.close()
  _SHARED.clear()


atexit.register(close_shared_pools)
