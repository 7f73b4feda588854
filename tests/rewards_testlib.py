"""Misbehaving rewards for the scoring tests; module-level so pool workers can import them by name.

Nothing here registers itself: tests register these temporarily (`rewards_pool_test.py`).
"""

import os
import signal
import time


def hang_on_marker(text, meta):
  """Sleeps (interruptible by the soft deadline) on 'hang'; raises on 'boom'; else 1.0."""
  del meta
  if 'hang' in text:
    time.sleep(60)
  if 'boom' in text:
    raise RuntimeError('kaboom')
  return 1.0


def hard_hang_on_marker(text, meta):
  """On 'hard', blocks SIGALRM and sleeps: like C code that never checks signals (pool hard kill)."""
  del meta
  if 'hard' in text:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(60)
  return 1.0


def die_on_marker(text, meta):
  """On 'die', the process kills itself (SIGKILL): a segfaulting extension."""
  del meta
  if 'die' in text:
    os.kill(os.getpid(), signal.SIGKILL)
  return 1.0


def exit_on_marker(text, meta):
  """On 'exit', calls SystemExit, which must not end training either."""
  del meta
  if 'exit' in text:
    raise SystemExit(3)
  return 0.5


def swallow_everything(text, meta):
  """Catches Exception around a hang: the deadline (a BaseException) must still get through."""
  del meta
  try:
    if 'hang' in text:
      time.sleep(60)
  except Exception:  # pylint: disable=broad-except
    return 1.0
  return 0.25


def sub_scores(text, meta):
  """A dict reward: sub-scores 'a' (always) and 'b' (only for texts with 'b')."""
  del meta
  out = {'a': 0.5, 'overall': 2.0 if 'big' in text else 0.75}
  if 'b' in text:
    out['b'] = 1.0
  return out


def bad_dicts(text, meta):
  """Broken dict values: without 'overall', with an inf sub-score, or a non-number."""
  del meta
  if 'nooverall' in text:
    return {'a': 1.0}
  if 'inf' in text:
    return {'a': float('inf'), 'overall': 1.0}
  if 'str' in text:
    return 'one'
  return {'overall': None}
