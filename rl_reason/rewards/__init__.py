"""Rule-based rewards: a registry of named, host-side reward functions and crash-proof batch scoring.

Importing the package registers every built-in reward. Per-completion rewards (one module per
family): format, match, math_answer, jigsaw, grounding, ui, sat, text_sim, spurious, and the
paper recipes in combinators. Group-aware shaping (lengths, group accuracy) is in `shaping`;
rewards from model signals (injected scorers, logprobs) in `model_signals`; the named, configured
schemes the training loop applies (the `shaping` config section) in `shapers`; the worker pool in
`pool`.
"""

from rl_reason.rewards import format as _format  # noqa: F401  (each import registers its rewards)
from rl_reason.rewards import grounding as _grounding  # noqa: F401
from rl_reason.rewards import jigsaw as _jigsaw  # noqa: F401
from rl_reason.rewards import match as _match  # noqa: F401
from rl_reason.rewards import math_answer as _math_answer  # noqa: F401
from rl_reason.rewards import sat as _sat  # noqa: F401
from rl_reason.rewards import spurious as _spurious  # noqa: F401
from rl_reason.rewards import text_sim as _text_sim  # noqa: F401
from rl_reason.rewards import ui as _ui  # noqa: F401
from rl_reason.rewards import combinators as _combinators  # noqa: F401  (after the rewards it combines)
from rl_reason.rewards import shapers  # noqa: F401  (after every reward: its configs name rewards)
from rl_reason.rewards.combinators import REDUCTIONS, reward_columns
from rl_reason.rewards.grounding import IOU_REWARDS, iou_column
from rl_reason.rewards.registry import RewardFn, check_meta, exists, get, names, register
from rl_reason.rewards.scoring import DEFAULT_TIMEOUT_S, batch_metrics, score_batch

__all__ = ['DEFAULT_TIMEOUT_S', 'IOU_REWARDS', 'REDUCTIONS', 'RewardFn', 'batch_metrics', 'check_meta', 'exists',
           'get', 'iou_column', 'names', 'register', 'reward_columns', 'score_batch', 'shapers']
