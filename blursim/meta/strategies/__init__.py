"""Evolution strategies behind one ask/tell interface with explicit state.

Strategies are registered by name in :data:`STRATEGIES` (``cma_es``,
``sep_cma_es``, ``openai_es``); see :mod:`blursim.meta.strategies.base` for
the interface, the fitness convention (maximised, decided in
:func:`fitness_to_cost`) and the checkpoint format.
"""

from blursim.meta.strategies.base import (
    FORMAT,
    FORMAT_VERSION,
    STRATEGIES,
    CheckpointError,
    Seed,
    Strategy,
    StrategyConfig,
    StrategyOptions,
    fitness_to_cost,
    load_state,
    make_strategy,
    save_state,
    strategy_for,
)
from blursim.meta.strategies import cma_es, openai_es  # noqa: E402  (registers them)
from blursim.meta.strategies.cma_es import CMAES, CMAState, SepCMAES
from blursim.meta.strategies.openai_es import OpenAIES, OpenAIESState, centred_ranks

__all__ = [
    "CMAES",
    "FORMAT",
    "FORMAT_VERSION",
    "STRATEGIES",
    "CMAState",
    "CheckpointError",
    "OpenAIES",
    "OpenAIESState",
    "Seed",
    "SepCMAES",
    "Strategy",
    "StrategyConfig",
    "StrategyOptions",
    "centred_ranks",
    "cma_es",
    "fitness_to_cost",
    "load_state",
    "make_strategy",
    "openai_es",
    "save_state",
    "strategy_for",
]
