"""Paper schedules as configs of the generic curricula: `presets.get(name, **kwargs) -> (curriculum, config)`.

- jigsaw_r1: grid sizes switching at cumulative sample counts (Jigsaw-R1 `stage`; e.g. 3x1 for
  64,000 samples, then 4x1).
- lmm_r1: LMM-R1's FRE (text-only) stage, then MGT (multimodal) from the same run.
- infi_mmr: Infi-MMR's three phases: text reasoning, caption-augmented multimodal, caption-free
  multimodal. No task here renders captions, so the phases are whatever tasks you name; the
  defaults are CPU stand-ins (rules -> multichoice -> grounding).
- saturn: SAT (n, k, l) levels in increasing D(n, k, l), advanced by validation pass@1 >= epsilon.
- rulereasoner: the domain-weighted sampler over the rule-chain domains (K = 4, S = 8, eps 0.1, tau 0.3).
- laser_d: the LASER-D updater with the Laser scripts' bounds (lower..upper by 1024, every 20 steps).
- sophia_thinking: alpha * exp(-step / T) on a reward's weight (SophiaVL-R1: alpha 0.3, T 12000). Use
  it when the thinking reward is a separate weighted column; `rewards.shaping.trust_grpo` applies
  the same decay itself, so do not combine the two.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rl_reason.curricula import base


def jigsaw_r1(stage_samples: Sequence[int] = (64000,),
              grids: Sequence[tuple[int, int]] = ((3, 1), (4, 1))) -> tuple[str, dict[str, Any]]:
  """Jigsaw grid stages: grids[i] = (rows, cols) from stage_samples[i-1] prompts consumed on."""
  return 'staged', {'boundaries': tuple(stage_samples), 'unit': 'samples',
                    'stages': tuple({'overrides': {'rows': int(r), 'cols': int(c)}} for r, c in grids)}


def lmm_r1(switch_step: int, text: tuple[str, Mapping[str, Any]] = ('arithmetic', {}),
           multimodal: tuple[str, Mapping[str, Any]] = ('grounding', {})) -> tuple[str, dict[str, Any]]:
  """FRE on a text task until switch_step, then MGT on a multimodal task (stand-ins by default)."""
  return 'staged', {'boundaries': (int(switch_step),),
                    'stages': ({'task': text[0], 'overrides': dict(text[1])},
                               {'task': multimodal[0], 'overrides': dict(multimodal[1])})}


def infi_mmr(phase_steps: Sequence[int],
             phases: Sequence[tuple[str, Mapping[str, Any]]] = (('rules', {}), ('multichoice', {}), ('grounding', {})),
             ) -> tuple[str, dict[str, Any]]:
  """Three phases (text; caption-augmented multimodal; caption-free multimodal) starting at 0 and phase_steps."""
  if len(phases) != 3 or len(phase_steps) != 2:
    raise ValueError(f'infi_mmr has three phases and two phase boundaries, got {len(phases)} and {len(phase_steps)}')
  return 'staged', {'boundaries': tuple(int(s) for s in phase_steps),
                    'stages': tuple({'task': task, 'overrides': dict(overrides)} for task, overrides in phases)}


def saturn(levels: Sequence[tuple[int, int, int]] = ((3, 5, 5), (3, 5, 6)), threshold: float = 0.8,
           metric: str = 'eval_accuracy', window: int = 1) -> tuple[str, dict[str, Any]]:
  """SAT levels (n_sat, k, l), sorted by SATURN's D(n, k, l); equal difficulties are an error.

  Released stages: 1.5B (3,5,5) -> (3,5,6); 7B (3,5,13) -> (3,5,15). The threshold epsilon was not
  confirmed (ALGORITHMS.md 1.8); 0.8 is a placeholder to override.
  """
  from rl_reason.tasks import sat  # pylint: disable=g-import-not-at-top
  ordered = sorted((tuple(int(v) for v in level) for level in levels), key=lambda lvl: sat.difficulty(*lvl))
  difficulties = [sat.difficulty(*lvl) for lvl in ordered]
  if any(a == b for a, b in zip(difficulties, difficulties[1:])):
    raise ValueError(f'saturn levels need distinct difficulties D(n, k, l), got {list(zip(ordered, difficulties))}')
  return 'threshold', {'task': 'sat', 'metric': metric, 'threshold': float(threshold), 'window': int(window),
                       'levels': tuple({'n_sat': n, 'k': k, 'l': l} for n, k, l in ordered)}


def rulereasoner(seed: int = 0, variant: str = 'harmonic') -> tuple[str, dict[str, Any]]:
  """The RuleReasoner sampler over every rule-chain domain of the `rules` task."""
  from rl_reason.tasks import rules  # pylint: disable=g-import-not-at-top
  return 'domain_weighted', {'domains': tuple(rules.DOMAINS), 'update_every': 8, 'buffer_size': 4, 'epsilon': 0.1,
                             'tau': 0.3, 'target_base': 1.0, 'variant': variant, 'seed': int(seed)}


def laser_d(lower_bound: int = 4096, upper_bound: int = 16384, interval: int = 1024) -> tuple[str, dict[str, Any]]:
  """LASER-D targets over lower_bound..upper_bound by interval, updated every 20 steps (Laser scripts)."""
  return 'laser_d', {'lower_bound': lower_bound, 'upper_bound': upper_bound, 'interval': interval, 'update_every': 20}


def sophia_thinking(reward: str, alpha: float = 0.3, anneal_steps: int = 12000) -> tuple[str, dict[str, Any]]:
  """weight(step) = alpha * exp(-step / anneal_steps) on `reward`."""
  return 'reward_annealing', {'schedules': {reward: {'start': alpha, 'end': 0.0, 'start_step': 0,
                                                     'end_step': int(anneal_steps), 'kind': 'exponential'}}}


PRESETS: dict[str, Callable[..., tuple[str, dict[str, Any]]]] = {
    'jigsaw_r1': jigsaw_r1, 'lmm_r1': lmm_r1, 'infi_mmr': infi_mmr, 'saturn': saturn,
    'rulereasoner': rulereasoner, 'laser_d': laser_d, 'sophia_thinking': sophia_thinking,
}


def names() -> list[str]:
  return sorted(PRESETS)


def get(name: str, **kwargs) -> tuple[str, dict[str, Any]]:
  """(curriculum name, config mapping) of a preset; build it with `curricula.get(*presets.get(...))`."""
  base.check_choice(name, names(), 'curriculum preset')
  return PRESETS[name](**kwargs)
