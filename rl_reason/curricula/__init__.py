"""Host-side curricula and schedules: `curricula.get(name, cfg)`, `curricula.names()` (interface in base.py).

Importing the package registers every curriculum: staged, threshold (SATURN), domain_weighted
(RuleReasoner), reward_annealing, laser_d. Paper presets are in `presets`; DAPO dynamic sampling,
which acts inside one step rather than across steps, is in `dynamic_sampling`.
"""

from rl_reason.curricula import annealing as _annealing  # noqa: F401  (each import registers its curriculum)
from rl_reason.curricula import domain_weighted as _domain_weighted  # noqa: F401
from rl_reason.curricula import laser as _laser  # noqa: F401
from rl_reason.curricula import staged as _staged  # noqa: F401
from rl_reason.curricula import threshold as _threshold  # noqa: F401
from rl_reason.curricula import dynamic_sampling, presets
from rl_reason.curricula.base import (Curriculum, Plan, check, combine, config_class, from_spec, get, make_config,
                                      merge_plans, names, resolve_task)

__all__ = ['Curriculum', 'Plan', 'check', 'combine', 'config_class', 'dynamic_sampling', 'from_spec', 'get',
           'make_config', 'merge_plans', 'names', 'presets', 'resolve_task']
