"""Procedural task generators: `tasks.get(name, cfg)`, `tasks.names()` (the interface is in base.py).

Importing the package registers every task.
"""

from rl_reason.tasks import arithmetic as _arithmetic  # noqa: F401  (registers its task)
from rl_reason.tasks import classification as _classification  # noqa: F401
from rl_reason.tasks import grounding as _grounding  # noqa: F401
from rl_reason.tasks import gui as _gui  # noqa: F401
from rl_reason.tasks import jigsaw as _jigsaw  # noqa: F401
from rl_reason.tasks import multichoice as _multichoice  # noqa: F401
from rl_reason.tasks import rules as _rules  # noqa: F401
from rl_reason.tasks import sat as _sat  # noqa: F401
from rl_reason.tasks.base import Task, check_example, config_class, get, make_config, names

__all__ = ['Task', 'check_example', 'config_class', 'get', 'make_config', 'names']
