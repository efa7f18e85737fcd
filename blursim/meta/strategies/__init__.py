"""Meta-optimizers: evolution strategies behind one ask/tell interface with explicit state,
and gradient meta-training.

Strategies are registered by name in :data:`STRATEGIES`: the evolution
strategies ``cma_es``, ``sep_cma_es``, ``openai_es`` (:class:`Strategy`
subclasses; see :mod:`blursim.meta.strategies.base` for the interface, the
fitness convention -- maximised, decided in :func:`fitness_to_cost` -- and the
checkpoint format) and ``gradient`` (:mod:`blursim.meta.strategies.gradient`:
Adam on the meta-gradient, the same checkpoint format). Every strategy class says
what it is through class attributes, so that no caller branches on its name:
``kind`` (``"evolution"`` or ``"gradient"``: the trainer's step,
:data:`blursim.meta.trainer.STEPS`), ``experiment_fields`` (the experiment's
``strategy.sigma0`` / ``popsize`` it takes) and ``from_experiment`` (built from
an experiment document); :class:`MetaOptimizer` lists what every strategy offers.
"""

from blursim.meta.strategies.base import (
    FORMAT,
    FORMAT_VERSION,
    STRATEGIES,
    CheckpointError,
    MetaOptimizer,
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
from blursim.meta.strategies import gradient  # noqa: E402  (registered after the evolution strategies)
from blursim.meta.strategies.cma_es import CMAES, CMAState, SepCMAES
from blursim.meta.strategies.gradient import GradientDescent, GradientState
from blursim.meta.strategies.openai_es import OpenAIES, OpenAIESState, centred_ranks


__all__ = [
    "CMAES",
    "FORMAT",
    "FORMAT_VERSION",
    "GradientDescent",
    "GradientState",
    "STRATEGIES",
    "CMAState",
    "CheckpointError",
    "MetaOptimizer",
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
    "gradient",
    "load_state",
    "make_strategy",
    "openai_es",
    "save_state",
    "strategy_for",
]
