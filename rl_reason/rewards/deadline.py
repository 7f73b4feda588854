"""Wall-clock deadlines for reward calls: SIGALRM (ITIMER_REAL) based, nestable, main thread only.

A deadline raises `RewardTimeout` inside whatever Python code is running when it expires. It
derives from BaseException so that a reward's (or a library's) `except Exception` cannot swallow
it. Deadlines nest: an inner one (math-verify's own budget inside a reward's per-item budget) arms
the timer for the earlier of the two, and an outer deadline that expires inside an inner one is
delivered to the outer. Limits, by construction of signals:

- only the main thread can receive signals, so `deadline` does nothing (and says so by yielding
  False) in any other thread;
- C code that never returns to the interpreter (a long C loop that does not check signals) is
  not interrupted; the pool's hard kill covers that case (see `rewards.pool`).

An expired deadline keeps firing, every REDELIVER_S, until its block exits: a signal handler's
exception can be swallowed where Python cannot propagate it (a `__del__`, a gc callback, a bare
`except BaseException: pass` in a library), and the body must still stop.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar('T')
_SLACK_S = 1e-3  # a timer may fire this much before the deadline it was armed for
REDELIVER_S = 0.05  # an expired deadline raises again this often until its block exits


class RewardTimeout(BaseException):  # noqa: N818  (a control-flow signal, like KeyboardInterrupt)
  """A reward call ran past its wall-clock deadline."""

  def __init__(self, seconds: float, token: object):
    super().__init__(f'reward call exceeded its {seconds:g} s deadline')
    self.seconds = seconds
    self.token = token


def available() -> bool:
  """Whether deadlines can be enforced here (POSIX timers, main thread)."""
  return hasattr(signal, 'setitimer') and threading.current_thread() is threading.main_thread()


class deadline:  # pylint: disable=invalid-name  (used as a context manager, like contextlib's)
  """Raises `RewardTimeout` in the body once `seconds` of wall time have passed.

  `with deadline(s) as token:` yields a token identifying this deadline (`RewardTimeout.token` of
  the exception it raises), or None when no deadline is enforced (`seconds` is None, or
  `available()` is False). A class rather than a generator: it wraps every reward evaluation.
  """

  __slots__ = ('seconds', 'token', 'end', 'outer_end', 'old_handler', 'old_interval')

  def __init__(self, seconds: float | None):
    self.seconds = seconds
    self.token = None

  def __enter__(self) -> object | None:
    if self.seconds is None or not available():
      return None
    self.token = object()
    start = time.monotonic()
    self.end = start + max(float(self.seconds), 0.0)
    self.old_handler = signal.getsignal(signal.SIGALRM)
    old_remaining, self.old_interval = signal.getitimer(signal.ITIMER_REAL)
    self.outer_end = start + old_remaining if old_remaining > 0 else None
    signal.signal(signal.SIGALRM, self._handler)
    first = self.end if self.outer_end is None else min(self.end, self.outer_end)
    signal.setitimer(signal.ITIMER_REAL, max(first - start, 1e-6))
    return self.token

  def _handler(self, signum: int, frame: Any) -> None:
    now = time.monotonic()
    if now >= self.end - _SLACK_S:
      signal.setitimer(signal.ITIMER_REAL, REDELIVER_S)  # again, should this one be swallowed
      raise RewardTimeout(self.seconds, self.token)
    outer_end = self.outer_end
    signal.setitimer(signal.ITIMER_REAL, max(self.end - now, 1e-6))  # wait again for our own deadline
    if outer_end is not None and now >= outer_end - _SLACK_S:
      # An outer deadline stays due (its handler re-arms the timer, and exit re-arms it), so a
      # swallowed outer timeout is raised again; a foreign SIGALRM handler is called once.
      if not isinstance(getattr(self.old_handler, '__self__', None), deadline):
        self.outer_end = None
      if callable(self.old_handler):
        self.old_handler(signum, frame)  # an outer deadline raises its own RewardTimeout here

  def __exit__(self, *exc: Any) -> None:
    if self.token is None:
      return
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, self.old_handler)
    if self.outer_end is not None:
      signal.setitimer(signal.ITIMER_REAL, max(self.outer_end - time.monotonic(), 1e-6), self.old_interval)


def call_with_deadline(fn: Callable[[], T], seconds: float | None, on_timeout: T) -> T:
  """fn(), or `on_timeout` if this deadline expires first; an outer deadline still propagates."""
  limit = deadline(seconds)
  try:
    with limit:  # caught outside the block: its exit stops the re-delivery first
      return fn()
  except RewardTimeout as e:
    if limit.token is None or e.token is not limit.token:
      raise
    return on_timeout
