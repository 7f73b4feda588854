"""A spurious reward: Bernoulli(p), independent of correctness ("Exploration v.s. Exploitation")."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from typing import Any

from rl_reason.rewards.registry import register

DEFAULT_P = 0.5


def uniform(seed: Any, text: str) -> float:
  """A uniform draw in [0, 1) that depends only on (seed, text): the same in every process and run.

  Python's hash() is salted per process, so pool workers would disagree; BLAKE2 is not.
  """
  digest = hashlib.blake2b(f'{seed!r}\x00'.encode() + text.encode('utf-8', 'surrogatepass'), digest_size=8).digest()
  return (struct.unpack('<Q', digest)[0] >> 11) / float(1 << 53)


@register('spurious_bernoulli', range=(0.0, 1.0), required_meta=('seed',), optional_meta=('spurious_p',),
          source='Exploration v.s. Exploitation (arXiv 2512.16912)')
def spurious_bernoulli(text: str, meta: Mapping[str, Any]) -> float:
  """1.0 with probability meta spurious_p (default 0.5), drawn from (meta seed, completion): no signal.

  The G completions of one prompt share the meta, so the draw also hashes the completion text;
  identical completions of one prompt get the same reward.
  """
  p = float(meta.get('spurious_p', DEFAULT_P))
  if not 0.0 <= p <= 1.0:
    raise ValueError(f'spurious_p must be in [0, 1], got {p}')
  return float(uniform(meta['seed'], text) < p)
