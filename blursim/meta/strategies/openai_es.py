"""OpenAI-ES (Salimans et al. 2017, "Evolution Strategies as a Scalable
Alternative to Reinforcement Learning"), registered as ``openai_es``.

One generation:

1. antithetic sampling: ``popsize/2`` directions ``e ~ N(0, I)`` and their
   mirrors, ``eps = [e; -e]``; candidates ``X = clip(mean + sigma * eps)``;
2. fitness shaping: cost (:func:`fitness_to_cost`) turned into centred ranks
   ``u`` in ``[-0.5, 0.5]`` (:func:`centred_ranks`);
3. gradient estimate of the expected cost,
   ``g = eps.T @ u / (popsize * sigma) + weight_decay * mean``;
4. an Adam step downhill on ``g`` (:func:`blursim.baselines.optimizers.adam_step`, the
   ``eps_hat`` form: ``adam_eps`` is Kingma & Ba's epsilon-hat); the mean is clipped into the bounds;
   ``sigma`` and the learning rate decay geometrically to their floors.

The state is plain data: mean, Adam moments, sigma, learning rate and the
sampler's ``bit_generator.state`` dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from pydantic import Field

from blursim.baselines.optimizers import adam_step
from blursim.errors import SpecError
from blursim.meta.strategies.base import (
    CheckpointError,
    Strategy,
    StrategyOptions,
    readonly,
    fitness_to_cost,
    register,
    update_best,
)


def centred_ranks(x: Any) -> np.ndarray:
    """Ranks of ``x`` scaled to ``[-0.5, 0.5]`` (smallest -> -0.5, largest -> 0.5).

    Tied values share their average rank, so two equal values (e.g. two
    failed evaluations) get equal weight. A single value gets 0.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    n = x.size
    if n < 2:
        return np.zeros(n)
    order = np.argsort(x, kind="stable")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(n)
    ranks[order] = np.repeat(first + (counts - 1) / 2.0, counts)
    return ranks / (n - 1) - 0.5


@dataclass(frozen=True, eq=False)
class OpenAIESState:
    """State of an OpenAI-ES run (all plain data).

    ``m``/``v`` are Adam's moment estimates, ``generation`` the number of
    ``tell`` calls (Adam's step count); ``pending``/``pending_eps`` the asked
    population and its unit perturbations awaiting ``tell``.
    """

    config: Any
    generation: int
    mean: np.ndarray
    m: np.ndarray
    v: np.ndarray
    sigma: float
    lr: float
    rng_state: Mapping[str, Any]
    pending: np.ndarray | None
    pending_eps: np.ndarray | None
    best_x: np.ndarray | None
    best_fitness: float


class OpenAIESOptions(StrategyOptions):
    """Options of ``openai_es``."""

    learning_rate: float = Field(0.01, gt=0.0, description="Adam learning rate")
    beta1: float = Field(0.9, ge=0.0, lt=1.0, description="Adam first-moment decay")
    beta2: float = Field(0.999, ge=0.0, lt=1.0, description="Adam second-moment decay")
    adam_eps: float = Field(1e-8, gt=0.0, description="Adam denominator epsilon")
    weight_decay: float = Field(
        0.0, ge=0.0, description="L2 coefficient added to the gradient (pulls the mean to 0)"
    )
    sigma_decay: float = Field(1.0, gt=0.0, le=1.0, description="sigma multiplier per generation")
    sigma_min: float = Field(0.0, ge=0.0, description="floor of the decaying sigma")
    lr_decay: float = Field(
        1.0, gt=0.0, le=1.0, description="learning-rate multiplier per generation"
    )
    lr_min: float = Field(0.0, ge=0.0, description="floor of the decaying learning rate")


@register("openai_es")
class OpenAIES(Strategy):
    """OpenAI-ES: antithetic sampling, centred ranks, Adam on the gradient estimate."""

    Options = OpenAIESOptions

    def _check_popsize(self, popsize: int) -> None:
        if popsize % 2:
            raise SpecError(
                "popsize of strategy 'openai_es' must be even (antithetic pairs)",
                path="popsize",
                value=popsize,
            )

    def init(self) -> OpenAIESState:
        zeros = readonly(np.zeros(self.dim))
        return OpenAIESState(
            config=self.config,
            generation=0,
            mean=self.config.x0,
            m=zeros,
            v=zeros,
            sigma=self.config.sigma0,
            lr=float(self.options["learning_rate"]),
            rng_state=self.config.seed.generator().bit_generator.state,
            pending=None,
            pending_eps=None,
            best_x=None,
            best_fitness=-np.inf,
        )

    def ask(self, state: OpenAIESState) -> tuple[np.ndarray, OpenAIESState]:
        self._own(state)
        if state.pending is not None:
            raise ValueError("ask(): this state already has a population pending; tell() it first")
        rng = np.random.Generator(np.random.PCG64(0))
        rng.bit_generator.state = state.rng_state
        half = rng.standard_normal((self.popsize // 2, self.dim))
        eps = np.concatenate([half, -half])
        X = self._clip(state.mean + state.sigma * eps)
        new = replace(
            state,
            rng_state=rng.bit_generator.state,
            pending=readonly(X),
            pending_eps=readonly(eps),
        )
        return X, new

    def tell(self, state: OpenAIESState, X: Any, fitness: Any) -> OpenAIESState:
        X, fitness = self._checked_tell(state, X, fitness)
        o = self.options
        u = centred_ranks(fitness_to_cost(fitness))
        grad = state.pending_eps.T @ u / (self.popsize * state.sigma)
        if o["weight_decay"]:
            grad = grad + o["weight_decay"] * state.mean
        t = state.generation + 1
        step, m, v = adam_step(grad, state.m, state.v, t, state.lr, o["beta1"], o["beta2"], o["adam_eps"],
                               eps_hat=True)
        mean = self._clip(state.mean - step)
        best_x, best_fitness = update_best(state.best_x, state.best_fitness, state.pending, fitness)
        return replace(
            state,
            generation=t,
            mean=readonly(mean),
            m=readonly(m),
            v=readonly(v),
            sigma=max(o["sigma_min"], state.sigma * o["sigma_decay"]),
            lr=max(o["lr_min"], state.lr * o["lr_decay"]),
            pending=None,
            pending_eps=None,
            best_x=best_x,
            best_fitness=best_fitness,
        )

    def mean(self, state: OpenAIESState) -> np.ndarray:
        self._own(state)
        return np.array(state.mean)

    def step_size(self, state: OpenAIESState) -> float:
        self._own(state)
        return state.sigma

    def _clip(self, X: np.ndarray) -> np.ndarray:
        if self.config.bounds is None:
            return X
        return np.clip(X, self.config.lower, self.config.upper)

    # ---- checkpoint data ------------------------------------------------------

    def _payload_to_data(self, state: OpenAIESState) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        data = {
            "generation": state.generation,
            "sigma": state.sigma,
            "lr": state.lr,
            "rng_state": state.rng_state,
            "best_fitness": state.best_fitness if np.isfinite(state.best_fitness) else None,
            "pending": state.pending is not None,
        }
        arrays = {"mean": state.mean, "m": state.m, "v": state.v}
        if state.pending is not None:
            arrays["pending"] = state.pending
            arrays["pending_eps"] = state.pending_eps
        if state.best_x is not None:
            arrays["best_x"] = state.best_x
        return data, {k: np.array(a) for k, a in arrays.items()}

    def _payload_from_data(
        self, data: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> OpenAIESState:
        d, n = self.dim, self.popsize
        shapes = {"mean": (d,), "m": (d,), "v": (d,), "best_x": (d,), "pending": (n, d), "pending_eps": (n, d)}
        for k, a in arrays.items():
            if k in shapes and a.shape != shapes[k]:
                raise CheckpointError(f"'openai_es' checkpoint array {k!r} has shape {a.shape}, expected {shapes[k]}")
        rng_state = data["rng_state"]
        try:  # reject a malformed generator state now rather than at the next ask
            np.random.Generator(np.random.PCG64(0)).bit_generator.state = rng_state
        except (TypeError, ValueError, KeyError) as e:
            raise CheckpointError(f"'openai_es' checkpoint has a bad rng_state ({e})") from None
        best = data["best_fitness"]
        pending = bool(data["pending"])
        return OpenAIESState(
            config=self.config,
            generation=int(data["generation"]),
            mean=readonly(arrays["mean"]),
            m=readonly(arrays["m"]),
            v=readonly(arrays["v"]),
            sigma=float(data["sigma"]),
            lr=float(data["lr"]),
            rng_state=rng_state,
            pending=readonly(arrays["pending"]) if pending else None,
            pending_eps=readonly(arrays["pending_eps"]) if pending else None,
            best_x=readonly(arrays["best_x"]) if best is not None else None,
            best_fitness=float(best) if best is not None else -np.inf,
        )
