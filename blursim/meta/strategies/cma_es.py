"""CMA-ES through pycma: ``cma_es`` (full covariance) and ``sep_cma_es`` (diagonal).

The BLUR paper (Sec. 4.4) meta-trains genomes with pycma's CMA-ES, population
80, on a non-differentiable accuracy fitness. These strategies drive
:class:`cma.CMAEvolutionStrategy` through the blursim ask/tell interface.

Randomness
    pycma draws every normal sample through its ``randn`` option; we pass
    :class:`_Randn`, which draws from a :class:`numpy.random.Generator` seeded
    from the strategy's seed, and ``seed=nan`` (pycma: "do nothing"), so pycma
    neither seeds nor draws from the global ``np.random``. Only the options
    of ``CMAES.Options`` are exposed: some other pycma settings (TPA step-size
    adaptation, ``CMA_diagonal`` given as an iteration count) fall back to the
    global RNG.

Quiet
    ``verbose=-9``, ``verb_disp=0``, ``verb_log=0``: nothing is printed and
    no ``outcmaes`` files are written.

State and resume
    A pycma object is large and not data. The state records the complete
    input stream that object received: every population it asked (exactly)
    and the costs it was told, plus the sampler's bit-generator state. The
    live pycma object is only a cache attached to the newest state; whenever a
    state without a matching cache is used (after :func:`load_state`, or when
    an older state is continued a second time) the object is rebuilt from
    ``x0`` and the run is replayed, checking that each replayed population,
    the final mean, sigma and RNG state equal the recorded ones. A mismatch
    means a pycma that computes differently from the one that wrote the
    checkpoint, and raises :class:`CheckpointError`. A replay costs about what
    the run's own ask/tell calls cost (about 1.5 s for 400 generations of 80
    candidates in 60 dimensions), paid once per load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from pydantic import Field

from blursim.meta.strategies.base import (
    CheckpointError,
    Strategy,
    StrategyOptions,
    readonly,
    fitness_to_cost,
    register,
    update_best,
)


def _cma():
    """pycma, imported when a CMA-ES strategy first runs: importing it loads matplotlib and
    scipy.stats (1.5-2 s here), which ``blursim list``, ``schema`` and ``validate`` -- they only
    read the strategies' options -- should not wait for."""
    import cma

    return cma


class _Randn:
    """pycma's ``randn(*shape)``, drawing from a Generator we own."""

    def __init__(self, generator: np.random.Generator) -> None:
        self.generator = generator

    def __call__(self, *shape: int) -> np.ndarray:
        return self.generator.standard_normal(shape)


class _Live:
    """The pycma object of a run, valid for the state whose token is ``owner``."""

    __slots__ = ("es", "generator", "solutions", "owner")

    def __init__(self, es: cma.CMAEvolutionStrategy, generator: np.random.Generator) -> None:
        self.es = es
        self.generator = generator
        self.solutions: list[np.ndarray] | None = None  # exactly what es.ask() returned
        self.owner: object | None = None


@dataclass(frozen=True, eq=False)
class CMAState:
    """State of a (sep-)CMA-ES run.

    ``asked[g]``/``costs[g]`` are the population asked and the costs told in
    generation ``g``; ``pending`` is the population asked but not yet told.
    ``mean`` is pycma's ``xfavorite`` (the distribution mean, inside the
    bounds); ``sigma`` its step size; ``rng_state`` the sampler's
    ``bit_generator.state`` after the last draw.
    """

    config: Any
    generation: int
    asked: tuple[np.ndarray, ...]
    costs: tuple[np.ndarray, ...]
    pending: np.ndarray | None
    mean: np.ndarray
    sigma: float
    best_x: np.ndarray | None
    best_fitness: float
    rng_state: Mapping[str, Any]
    cma_version: str
    live: _Live | None = field(default=None, repr=False)
    token: object = field(default_factory=object, repr=False)


class CMAESOptions(StrategyOptions):
    """Options of ``cma_es`` and ``sep_cma_es``: names and defaults are pycma's own
    (see ``cma.CMAOptions()``)."""

    CMA_active: bool = Field(True, description="active (negative) covariance update")
    CMA_elitist: bool = Field(False, description="keep the best solution in the population")
    CMA_cmean: float = Field(1.0, gt=0.0, description="learning rate of the mean")
    CMA_rankmu: float = Field(
        1.0, ge=0.0, description="multiplier of the rank-mu covariance learning rate"
    )
    CMA_rankone: float = Field(
        1.0, ge=0.0, description="multiplier of the rank-one covariance learning rate"
    )
    CSA_dampfac: float = Field(1.0, gt=0.0, description="multiplier of the step-size damping")


@register("cma_es")
class CMAES(Strategy):
    """CMA-ES with full covariance (pycma), as in the BLUR paper, Sec. 4.4."""

    DIAGONAL = False

    Options = CMAESOptions

    def cma_options(self, randn: Any) -> dict[str, Any]:
        """The exact options handed to :class:`cma.CMAEvolutionStrategy`."""
        opts: dict[str, Any] = {
            "popsize": self.popsize,
            "CMA_diagonal": self.DIAGONAL,
            "randn": randn,
            "seed": float("nan"),  # pycma: leave np.random alone
            "verbose": -9,
            "verb_disp": 0,
            "verb_log": 0,
            "signals_filename": "",  # never look for a cma_signals.in file
        }
        opts.update(self.options)
        if self.config.bounds is not None:
            opts["bounds"] = [self.config.lower.tolist(), self.config.upper.tolist()]
        return opts

    # ---- ask / tell ---------------------------------------------------------

    def init(self) -> CMAState:
        live = self._build()
        state = CMAState(
            config=self.config,
            generation=0,
            asked=(),
            costs=(),
            pending=None,
            mean=readonly(live.es.result.xfavorite),
            sigma=float(live.es.sigma),
            best_x=None,
            best_fitness=-np.inf,
            rng_state=live.generator.bit_generator.state,
            cma_version=_cma().__version__,
            live=live,
        )
        live.owner = state.token
        return state

    def ask(self, state: CMAState) -> tuple[np.ndarray, CMAState]:
        self._own(state)
        if state.pending is not None:
            raise ValueError("ask(): this state already has a population pending; tell() it first")
        live = self._live_for(state)
        solutions = live.es.ask()
        live.solutions = solutions
        X = readonly(solutions)
        new = replace(
            state,
            pending=X,
            rng_state=live.generator.bit_generator.state,
            live=live,
            token=object(),
        )
        live.owner = new.token
        return np.array(X), new

    def tell(self, state: CMAState, X: Any, fitness: Any) -> CMAState:
        X, fitness = self._checked_tell(state, X, fitness)
        live = self._live_for(state)
        cost = fitness_to_cost(fitness)
        live.es.tell(live.solutions, cost.tolist())
        live.solutions = None
        best_x, best_fitness = update_best(state.best_x, state.best_fitness, state.pending, fitness)
        new = replace(
            state,
            generation=state.generation + 1,
            asked=state.asked + (state.pending,),
            costs=state.costs + (readonly(cost),),
            pending=None,
            mean=readonly(live.es.result.xfavorite),
            sigma=float(live.es.sigma),
            best_x=best_x,
            best_fitness=best_fitness,
            rng_state=live.generator.bit_generator.state,
            live=live,
            token=object(),
        )
        live.owner = new.token
        return new

    def mean(self, state: CMAState) -> np.ndarray:
        self._own(state)
        return np.array(state.mean)

    def step_size(self, state: CMAState) -> float:
        self._own(state)
        return state.sigma

    # ---- the live pycma object ----------------------------------------------

    def _build(self) -> _Live:
        generator = self.config.seed.generator()
        es = _cma().CMAEvolutionStrategy(
            np.array(self.config.x0), self.config.sigma0, self.cma_options(_Randn(generator))
        )
        return _Live(es, generator)

    def _live_for(self, state: CMAState) -> _Live:
        live = state.live
        if live is not None and live.owner is state.token:
            return live
        live = self._replay(state)
        object.__setattr__(state, "live", live)  # a cache; the recorded data is unchanged
        live.owner = state.token
        return live

    def _replay(self, state: CMAState) -> _Live:
        live = self._build()
        es = live.es

        def check(g: int, solutions: list[np.ndarray], recorded: np.ndarray) -> None:
            if not np.array_equal(np.array(solutions), recorded):
                raise CheckpointError(
                    f"replaying the recorded {self.name!r} run diverged at generation {g}: "
                    f"pycma {_cma().__version__} does not reproduce the populations recorded "
                    f"with pycma {state.cma_version}; resume with that pycma version"
                )

        for g in range(state.generation):
            solutions = es.ask()
            check(g, solutions, state.asked[g])
            es.tell(solutions, state.costs[g].tolist())
        if state.pending is not None:
            live.solutions = es.ask()
            check(state.generation, live.solutions, state.pending)
        if (
            live.generator.bit_generator.state != state.rng_state
            or float(es.sigma) != state.sigma
            or not np.array_equal(es.result.xfavorite, state.mean)
        ):
            raise CheckpointError(
                f"replaying the recorded {self.name!r} run did not reproduce its final "
                f"mean, sigma and sampler state (pycma {_cma().__version__}, recorded with "
                f"pycma {state.cma_version})"
            )
        return live

    # ---- checkpoint data ------------------------------------------------------

    def _payload_to_data(self, state: CMAState) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        n, d = self.popsize, self.dim
        data = {
            "generation": state.generation,
            "sigma": state.sigma,
            "best_fitness": state.best_fitness if np.isfinite(state.best_fitness) else None,
            "rng_state": state.rng_state,
            "cma_version": state.cma_version,
            "pending": state.pending is not None,
        }
        arrays = {
            "asked": np.array(state.asked).reshape(state.generation, n, d),
            "costs": np.array(state.costs).reshape(state.generation, n),
            "mean": np.array(state.mean),
        }
        if state.best_x is not None:
            arrays["best_x"] = np.array(state.best_x)
        if state.pending is not None:
            arrays["pending"] = np.array(state.pending)
        return data, arrays

    def _payload_from_data(
        self, data: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> CMAState:
        g, n, d = int(data["generation"]), self.popsize, self.dim
        asked, costs = arrays["asked"], arrays["costs"]
        if asked.shape != (g, n, d) or costs.shape != (g, n) or arrays["mean"].shape != (d,):
            raise CheckpointError(
                f"{self.name!r} checkpoint arrays have wrong shapes for {g} generations"
            )
        best = data["best_fitness"]
        state = CMAState(
            config=self.config,
            generation=g,
            asked=tuple(readonly(a) for a in asked),
            costs=tuple(readonly(c) for c in costs),
            pending=readonly(arrays["pending"]) if data["pending"] else None,
            mean=readonly(arrays["mean"]),
            sigma=float(data["sigma"]),
            best_x=readonly(arrays["best_x"]) if best is not None else None,
            best_fitness=float(best) if best is not None else -np.inf,
            rng_state=data["rng_state"],
            cma_version=str(data["cma_version"]),
        )
        self._live_for(state)  # replay now: a checkpoint that does not reproduce fails at load
        return state


@register("sep_cma_es")
class SepCMAES(CMAES):
    """Separable CMA-ES: diagonal covariance (pycma ``CMA_diagonal=True``), linear cost in dim."""

    DIAGONAL = True
