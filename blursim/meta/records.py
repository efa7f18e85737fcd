"""What a meta-training run hands from step to step and to its observers: :class:`TrainerState`
(everything a checkpoint holds) and :class:`Generation` (one step's record and genomes).

The bottom of the meta-training modules: the loop (:mod:`blursim.meta.trainer`), the steps of
each kind of strategy (:class:`~blursim.meta.trainer.EvolutionStep`,
:class:`~blursim.meta.gradient_step.GradientStep`) and the observers
(:mod:`blursim.meta.observers`) import it, and it imports none of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def num(x: Any) -> float | None:
    """A JSON-safe float: ``None`` for NaN/Inf."""
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class TrainerState:
    """Where a meta-training run stands: everything a checkpoint holds.

    ``generation``: generations completed; ``strategy_state``: the strategy's
    explicit state; ``records``: the log so far (record 0 = initial genome).
    """

    generation: int
    strategy_state: Any
    records: list[dict] = field(default_factory=list)


@dataclass
class Generation:
    """What observers receive after each generation (and for the initial record)."""

    record: dict
    best_x: np.ndarray | None
    mean_x: np.ndarray
    state: TrainerState
    error: BaseException | None = None  # raised after the observers have this generation
