"""Gradient meta-training (paper Sec. 3.3, Sec. 4.2, App. C.1, C.4), registered as ``gradient``.

The meta-optimizer of the paper's main method: the meta-loss (softmax
cross-entropy of the query batches after the ``T``-step unroll, Sec. 3.3) is
differentiated through the unroll (:class:`blursim.meta.objective.MetaObjective`)
and minimised with Adam (learning rate 5e-4) after clipping the gradient's
global norm to 10 (App. C.1).

This module holds the optimizer and its state, as plain data; the trainer's step
(which asks the objective for gradients and measures genomes) is
:class:`blursim.meta.gradient_step.GradientStep`.

``N = options.runs`` runs are trained side by side (Sec. 4.2, App. C.4: "8
identical randomly initialised genomes ... synchronise genomes across all
runs"). **Decision** (docs/meta.md, "Synchronised runs"):

- every run starts from the experiment's initial genome (``genome.init``),
  run ``r > 0`` optionally perturbed by ``options.init_noise``;
- runs differ in their meta-batches: run ``r`` draws its own task seeds
  (synapse initialisations and data batches, :func:`blursim.meta.seeds.gradient_seeds`);
- every ``sync_every`` steps (default: at every curriculum stage change,
  ``curriculum.every``; 0 or no curriculum: never) the run with the best
  mean fitness over the steps since the last synchronisation (runs with a
  skipped step rank after runs without; ties go to the lower index) is the
  *leader*, and every run continues from the leader's genome **and** its
  Adam state;
- between synchronisations the *lead* run (the current genome of the run
  directory, ``mean_genome.json``) is the run that would lead if the stage
  ended now.

One step of one run: its meta-loss and gradient (averaged over
``options.meta_batch`` independent draws of every training task); if the
loss, the gradient or the unroll is NaN or Inf the step is **skipped** (genome
and Adam state unchanged) and counted; otherwise
``x <- clip_to_bounds(x + adam(clip_by_global_norm(g)))``. A run that skips
``options.max_skips`` consecutive steps stops the training with an error.

The optimizer runs in float64 whatever the objective's dtype (optax inside
:func:`blursim.sim.jax_engine.precision`, which never changes JAX's global setting); its state is checkpointed as the leaves of optax's
state tree, stacked over runs, and rebuilt from ``optimizer.init`` (no pickle).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from blursim import limits as L
from blursim.errors import BackendError, SpecError
from blursim.meta import jax_cache
from blursim.meta.strategies.base import (
    FORMAT,
    FORMAT_VERSION,
    STRATEGIES,
    CheckpointError,
    Seed,
    StrategyOptions,
    check_header,
    checked_vector,
    differing_fields,
    readonly,
    resolve_options,
)


class GradientOptions(StrategyOptions):
    """Options of ``gradient``."""

    learning_rate: float = Field(5e-4, gt=0.0, le=1e3, description="Adam learning rate (App. C.1: 5e-4)")
    beta1: float = Field(0.9, ge=0.0, lt=1.0, description="Adam first-moment decay")
    beta2: float = Field(0.999, ge=0.0, lt=1.0, description="Adam second-moment decay")
    adam_eps: float = Field(1e-8, gt=0.0, le=1.0, description="Adam denominator epsilon")
    clip_norm: float = Field(
        10.0, gt=0.0, le=1e30, description="clip the meta-gradient's global norm to this (App. C.1: 10)"
    )
    runs: int = Field(1, ge=1, le=L.MAX_POPSIZE,
                      description="synchronised runs trained side by side (Sec. 4.2: 8)")
    meta_batch: int = Field(
        1, ge=1, le=1000,
        description="independent draws (synapse initialisations and batches) of every training task "
                    "per step and run, their meta-losses and gradients averaged",
    )
    sync_every: int | None = Field(
        None, ge=0, le=L.MAX_GENERATIONS,
        description="synchronise the runs every N steps (null: at every curriculum stage change; "
                    "0: never)",
    )
    init_noise: float = Field(
        0.0, ge=0.0, le=L.MAX_INIT_SCALE,
        description="standard deviation of a Gaussian perturbation of the initial genome of runs "
                    "1..N-1 (0: every run starts from the initial genome)",
    )
    max_skips: int = Field(
        10, ge=1, le=10**6,
        description="stop when a run's meta-gradient is NaN/Inf in this many consecutive steps",
    )


@dataclass(frozen=True, eq=False)
class GradientConfig:
    """Everything that defines a gradient run before it starts (validated)."""

    name: str
    x0: np.ndarray
    seed: Seed
    lower: np.ndarray | None
    upper: np.ndarray | None
    options: Mapping[str, Any]
    sync_every: int  # resolved: 0 = never

    @property
    def dim(self) -> int:
        return int(self.x0.shape[0])

    def differences(self, other: "GradientConfig") -> list[str]:
        """Names of the fields in which two configurations differ."""
        return differing_fields(self, other, ("name", "seed", "sync_every"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GradientConfig) and not self.differences(other)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class GradientState:
    """State of a gradient run (plain data; never changed in place).

    ``x``: ``(N, dim)`` current genomes; ``opt``: the leaves of optax's state tree
    (in ``jax.tree_util`` order), each stacked over the ``N`` runs; ``stage_sum`` /
    ``stage_n`` / ``stage_bad``: per run, the sum and count of finite fitness values and the
    count of skipped steps since the last synchronisation; ``skips``: per run, consecutive
    skipped steps; ``skipped``: skipped run-steps in all; ``best_x`` / ``best_fitness``: the best
    fitness measured so far and its genome; ``generation``: steps done.
    """

    config: Any
    generation: int
    x: np.ndarray
    opt: tuple[np.ndarray, ...]
    stage_sum: np.ndarray
    stage_n: np.ndarray
    stage_bad: np.ndarray
    skips: np.ndarray
    skipped: int
    best_x: np.ndarray | None
    best_fitness: float
    pending: None = None  # never a population in flight (the run directory checks this)


@dataclass
class StepOutcome:
    """What one optimizer step did, for the log."""

    state: GradientState
    ok: np.ndarray  # (N,) bool: runs whose step was taken
    grad_norm: np.ndarray  # (N,) global norm before clipping (NaN when not finite)
    lead: int  # the lead run after the step (before a synchronisation: the leader)
    synchronised: bool
    stalled: list[int]  # runs that reached max_skips consecutive skipped steps


def require_jax():
    """``(jax, optax)``, or a one-line error naming the install command when either is missing.

    Turns JAX's persistent compilation cache on first (:func:`blursim.meta.jax_cache.enable`:
    JAX reads the option when it compiles its first program in a process, the optimizer's state
    included)."""
    from blursim.sim import jax_engine as je

    jax = je.require_jax()
    jax_cache.enable(jax)
    try:
        import optax
    except ImportError as e:
        raise BackendError(f"the gradient strategy needs optax, which is not installed ({e}); install "
                           f"the JAX extra with: {je.INSTALL}") from None
    return jax, optax


@STRATEGIES.register("gradient", options=GradientOptions)
class GradientDescent:
    """Gradient meta-training: Adam on the meta-gradient, global-norm clipping, synchronised runs.

    Parameters
    ----------
    dim, x0, seed, bounds, options:
        as for the evolution strategies (:class:`~blursim.meta.strategies.base.Strategy`);
        ``seed`` drives only ``init_noise``.
    stage:
        Steps per curriculum stage (``curriculum.every``), the default of ``sync_every``;
        ``None`` without a curriculum.
    """

    name: ClassVar[str] = "gradient"
    #: The trainer's step for this kind: :class:`blursim.meta.gradient_step.GradientStep`.
    kind: ClassVar[str] = "gradient"
    Options: ClassVar[type[StrategyOptions]] = GradientOptions
    #: No evolution-strategy settings: the step size is ``options.learning_rate``, the genomes per
    #: step ``options.runs``.
    experiment_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, dim: int, x0: Any, seed: Any, bounds: tuple[Any, Any] | None = None,
                 options: Mapping[str, Any] | None = None, stage: int | None = None) -> None:
        from types import MappingProxyType

        if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise SpecError("dim must be a positive integer", path="dim", value=dim)
        x0 = checked_vector(x0, int(dim), "x0", allow_inf=False)
        lower = upper = None
        if bounds is not None:
            lower = checked_vector(bounds[0], int(dim), "bounds[0]", allow_inf=True)
            upper = checked_vector(bounds[1], int(dim), "bounds[1]", allow_inf=True)
            if not np.all(lower < upper) or np.any((x0 < lower) | (x0 > upper)):
                raise SpecError("bounds must satisfy lower < upper and contain x0", path="bounds")
        opts = resolve_options(self.name, self.Options, options)
        sync = opts["sync_every"]
        if sync is None:
            sync = int(stage) if stage else 0
        self.config = GradientConfig(self.name, x0, Seed.of(seed), lower, upper,
                                     MappingProxyType(opts), int(sync))

    @classmethod
    def from_experiment(cls, exp: Any, *, dim: int, x0: Any, seed: Any,
                        bounds: tuple[Any, Any] | None) -> "GradientDescent":
        """The strategy of an experiment document: synchronised at its curriculum's stages by
        default (``curriculum.every``)."""
        stage = exp.curriculum.every if exp.curriculum is not None else None
        return cls(dim=dim, x0=x0, seed=seed, bounds=bounds, options=exp.strategy.options, stage=stage)

    # ---- shortcuts -----------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def options(self) -> Mapping[str, Any]:
        return self.config.options

    @property
    def runs(self) -> int:
        return int(self.options["runs"])

    @property
    def popsize(self) -> int:
        """Genomes whose meta-gradient is taken per step (the runs): the run directory counts
        ``evaluations = steps x popsize``, as for the evolution strategies."""
        return self.runs

    # ---- optax -----------------------------------------------------------------
    def _hyper(self) -> tuple[float, ...]:
        o = self.options
        return (o["clip_norm"], o["learning_rate"], o["beta1"], o["beta2"], o["adam_eps"])

    def optimizer(self):
        """The optax transformation: ``clip_by_global_norm(clip_norm)`` then Adam (App. C.1)."""
        return _optimizer(self._hyper())

    def _template(self):
        """optax's state of one run (float64) and its tree structure."""
        jax, _ = require_jax()
        from blursim.sim.jax_engine import precision

        with precision("float64"):
            tree = self.optimizer().init(np.zeros(self.dim))
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        return [np.asarray(leaf) for leaf in leaves], treedef

    def _step_fn(self):
        return _jitted_step(self._hyper())

    # ---- state -----------------------------------------------------------------
    def init(self) -> GradientState:
        n, cfg = self.runs, self.config
        x = np.repeat(cfg.x0[None], n, axis=0)
        noise = self.options["init_noise"]
        if noise > 0 and n > 1:
            rng = cfg.seed.generator()
            x[1:] = self._clip(x[1:] + noise * rng.standard_normal((n - 1, self.dim)))
        leaves, _ = self._template()
        opt = tuple(readonly(np.repeat(leaf[None], n, axis=0)) if leaf.dtype.kind == "f"
                    else _frozen(np.repeat(leaf[None], n, axis=0)) for leaf in leaves)
        zeros = readonly(np.zeros(n))
        return GradientState(
            config=cfg, generation=0, x=readonly(x), opt=opt, stage_sum=zeros, stage_n=_frozen(np.zeros(n, np.int64)),
            stage_bad=_frozen(np.zeros(n, np.int64)), skips=_frozen(np.zeros(n, np.int64)), skipped=0, best_x=None,
            best_fitness=-math.inf,
        )

    def step(self, state: GradientState, grads: np.ndarray, ok: np.ndarray, fitness: np.ndarray
             ) -> StepOutcome:
        """One optimizer step of every run.

        ``grads`` ``(N, dim)``: each run's meta-gradient at ``state.x``; ``ok`` ``(N,)``: whether
        the run's loss, gradient and unroll were finite (a run that is not ok is skipped);
        ``fitness`` ``(N,)``: the experiment's fitness of ``state.x`` (NaN when not ok).
        Returns the new state (synchronised when the step ends a stage) and what happened.
        """
        self._own(state)
        jax, _ = require_jax()
        n = self.runs
        grads = np.asarray(grads, dtype=np.float64).reshape(n, self.dim)
        ok = np.asarray(ok, dtype=bool) & np.isfinite(grads).all(axis=1)
        fitness = np.where(ok, np.asarray(fitness, dtype=np.float64), np.nan)
        with np.errstate(over="ignore", invalid="ignore"):
            norms = np.sqrt(np.sum(grads * grads, axis=1))
        _, treedef = self._template()
        x = np.array(state.x)
        opt = [np.array(leaf) for leaf in state.opt]
        fn = self._step_fn()
        from blursim.sim.jax_engine import precision

        with precision("float64"):
            for r in np.flatnonzero(ok):
                s = jax.tree_util.tree_unflatten(treedef, [leaf[r] for leaf in opt])
                xr, s = fn(grads[r], s, x[r])
                x[r] = self._clip(np.asarray(xr, dtype=np.float64))
                for leaf, new in zip(opt, jax.tree_util.tree_leaves(s), strict=True):
                    leaf[r] = np.asarray(new)
        skips = np.where(ok, 0, state.skips + 1).astype(np.int64)
        stage_sum = state.stage_sum + np.where(ok, fitness, 0.0)
        stage_n = (state.stage_n + ok).astype(np.int64)
        stage_bad = (state.stage_bad + ~ok).astype(np.int64)
        best_x, best_f = state.best_x, state.best_fitness
        if ok.any():
            i = int(np.argmax(np.where(ok, fitness, -np.inf)))
            if fitness[i] > best_f:
                best_x, best_f = readonly(state.x[i]), float(fitness[i])
        lead = leader(stage_sum, stage_n, stage_bad)
        g = state.generation + 1
        stage_end = self.config.sync_every > 0 and g % self.config.sync_every == 0
        sync = stage_end and n > 1
        if sync:  # every run continues from the leader's genome and Adam state
            x = np.repeat(x[lead][None], n, axis=0)
            opt = [np.repeat(leaf[lead][None], n, axis=0) for leaf in opt]
        if stage_end:
            stage_sum = np.zeros(n)
            stage_n, stage_bad = np.zeros(n, np.int64), np.zeros(n, np.int64)
        new = replace(
            state, generation=g, x=readonly(x),
            opt=tuple(readonly(a) if a.dtype.kind == "f" else _frozen(a) for a in opt),
            stage_sum=readonly(stage_sum), stage_n=_frozen(stage_n), stage_bad=_frozen(stage_bad),
            skips=_frozen(skips), skipped=state.skipped + int((~ok).sum()), best_x=best_x,
            best_fitness=best_f,
        )
        stalled = [int(r) for r in np.flatnonzero(skips >= self.options["max_skips"])]
        return StepOutcome(new, ok, np.where(np.isfinite(norms), norms, np.nan), lead, sync, stalled)

    def lead(self, state: GradientState) -> int:
        """The run that leads now (the current genome of the run)."""
        self._own(state)
        return leader(state.stage_sum, state.stage_n, state.stage_bad)

    def mean(self, state: GradientState) -> np.ndarray:
        """The current genome: the lead run's (the name is the evolution strategies')."""
        return np.array(state.x[self.lead(state)])

    def step_size(self, state: GradientState) -> float:
        """The learning rate (for the log)."""
        return float(self.options["learning_rate"])

    def best(self, state: GradientState) -> tuple[np.ndarray | None, float]:
        self._own(state)
        return (None if state.best_x is None else np.array(state.best_x)), float(state.best_fitness)

    def _clip(self, x: np.ndarray) -> np.ndarray:
        if self.config.lower is None:
            return x
        return np.clip(x, self.config.lower, self.config.upper)

    def _own(self, state: Any) -> None:
        cfg = getattr(state, "config", None)
        if cfg is not self.config and cfg != self.config:
            raise ValueError("this state does not belong to this 'gradient' strategy")

    # ---- checkpoint data ---------------------------------------------------------
    def state_to_data(self, state: GradientState) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The state as versioned data (the evolution strategies' checkpoint layout): a
        JSON-ready dict and named arrays; optax's state as its leaves ``state.opt.<i>``."""
        self._own(state)
        cfg = self.config
        data = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "strategy": self.name,
            "config": {"dim": cfg.dim, "seed": cfg.seed.to_data(), "bounds": cfg.lower is not None,
                       "options": dict(cfg.options), "sync_every": cfg.sync_every},
            "state": {
                "generation": state.generation,
                "skipped": state.skipped,
                "best_fitness": state.best_fitness if math.isfinite(state.best_fitness) else None,
                "opt_leaves": len(state.opt),
                "pending": False,
            },
        }
        arrays = {"config.x0": np.array(cfg.x0)}
        if cfg.lower is not None:
            arrays["config.lower"], arrays["config.upper"] = np.array(cfg.lower), np.array(cfg.upper)
        own = {"x": state.x, "stage_sum": state.stage_sum, "stage_n": state.stage_n,
               "stage_bad": state.stage_bad, "skips": state.skips}
        own.update({f"opt.{i}": leaf for i, leaf in enumerate(state.opt)})
        if state.best_x is not None:
            own["best_x"] = state.best_x
        arrays.update({f"state.{k}": np.array(v) for k, v in own.items()})
        return data, arrays

    def state_from_data(self, data: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> GradientState:
        """Inverse of :meth:`state_to_data`; the data must come from a gradient strategy
        configured exactly like this one, and every array must have the shape and dtype this
        configuration gives it."""
        check_header(data, expect=self.name)
        try:
            c = data["config"]
            bounds = (arrays["config.lower"], arrays["config.upper"]) if c["bounds"] else None
            other = GradientDescent(dim=c["dim"], x0=arrays["config.x0"], seed=Seed.from_data(c["seed"]).sequence(),
                                    bounds=bounds, options=c["options"], stage=None)
            sync = c["sync_every"]
        except SpecError as e:
            raise CheckpointError(f"checkpoint configuration is invalid: {e}") from None
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"malformed 'gradient' checkpoint config: missing or bad {e}") from None
        cfg = replace(other.config, sync_every=sync)
        diff = self.config.differences(cfg)
        if diff:
            raise CheckpointError(
                "checkpoint of strategy 'gradient' was configured differently from this strategy "
                f"(differs in: {', '.join(diff)})"
            )
        s = data["state"]
        n, d = self.runs, self.dim
        template, _ = self._template()
        if s["opt_leaves"] != len(template):
            raise CheckpointError(f"'gradient' checkpoint has {s['opt_leaves']} optimizer arrays, this optax "
                                  f"state has {len(template)}")
        want = {"x": ((n, d), np.float64), "stage_sum": ((n,), np.float64), "stage_n": ((n,), np.int64),
                "stage_bad": ((n,), np.int64), "skips": ((n,), np.int64)}
        want.update({f"opt.{i}": ((n, *leaf.shape), leaf.dtype) for i, leaf in enumerate(template)})
        best = s["best_fitness"]
        if best is not None:
            want["best_x"] = ((d,), np.float64)
        got = {}
        for k, (shape, dtype) in want.items():
            a = arrays[f"state.{k}"]
            if a.shape != shape or a.dtype != np.dtype(dtype):
                raise CheckpointError(f"'gradient' checkpoint array {k!r} is {a.dtype}{list(a.shape)}, "
                                      f"expected {np.dtype(dtype)}{list(shape)}")
            got[k] = a
        if not np.isfinite(got["x"]).all():
            raise CheckpointError("'gradient' checkpoint holds a non-finite genome")
        return GradientState(
            config=self.config, generation=int(s["generation"]), x=readonly(got["x"]),
            opt=tuple(readonly(got[f"opt.{i}"]) if template[i].dtype.kind == "f" else _frozen(got[f"opt.{i}"])
                      for i in range(len(template))),
            stage_sum=readonly(got["stage_sum"]), stage_n=_frozen(got["stage_n"]),
            stage_bad=_frozen(got["stage_bad"]), skips=_frozen(got["skips"]), skipped=int(s["skipped"]),
            best_x=readonly(got["best_x"]) if best is not None else None,
            best_fitness=float(best) if best is not None else -math.inf,
        )


_OPTIMIZERS: dict[tuple[float, ...], Any] = {}
_STEPS: dict[tuple[float, ...], Any] = {}


def _optimizer(hyper: tuple[float, ...]):
    """optax's ``chain(clip_by_global_norm, adam)`` of ``hyper`` = (clip_norm, learning_rate, beta1,
    beta2, eps), one per process and hyper-parameters."""
    opt = _OPTIMIZERS.get(hyper)
    if opt is None:
        _, optax = require_jax()
        clip, lr, b1, b2, eps = hyper
        opt = _OPTIMIZERS[hyper] = optax.chain(optax.clip_by_global_norm(clip), optax.adam(lr, b1=b1, b2=b2, eps=eps))
    return opt


def _jitted_step(hyper: tuple[float, ...]):
    """The jitted ``(grad, state, x) -> (x, state)`` of :func:`_optimizer`, one per process and
    hyper-parameters: a new run (another seed, a resumed run) reuses its compilation."""
    fn = _STEPS.get(hyper)
    if fn is None:
        jax, optax = require_jax()
        opt = _optimizer(hyper)

        def step(g, s, x):
            u, s = opt.update(g, s, x)
            return optax.apply_updates(x, u), s

        fn = _STEPS[hyper] = jax.jit(step)
    return fn


def leader(stage_sum: np.ndarray, stage_n: np.ndarray, stage_bad: np.ndarray) -> int:
    """The run with the best mean fitness since the last synchronisation: runs without a skipped
    step before runs with one, then the higher mean of its finite fitness values, then the lower
    index (so at the start, and on ties, run 0)."""
    mean = np.where(stage_n > 0, stage_sum / np.maximum(stage_n, 1), -np.inf)
    order = np.lexsort((np.arange(len(mean)), -mean, stage_bad))
    return int(order[0])


def _frozen(a: Any) -> np.ndarray:
    """A read-only copy that keeps its dtype (integer bookkeeping and optax's step count)."""
    out = np.array(a)
    out.setflags(write=False)
    return out
