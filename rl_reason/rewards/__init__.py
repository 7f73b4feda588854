"""Rule-based rewards: a registry of named, host-side reward functions and batch scoring.

Importing the package registers every built-in reward (format and jigsaw).
"""

from rl_reason.rewards import format as _format  # noqa: F401  (registers its rewards)
from rl_reason.rewards import jigsaw as _jigsaw  # noqa: F401
from rl_reason.rewards.registry import check_meta, get, names, register, score_batch

__all__ = ['check_meta', 'get', 'names', 'register', 'score_batch']
