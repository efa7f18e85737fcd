"""The strategy interface: ask/tell on explicit state, options, checkpoints.

A strategy is a small class, one file each, registered by name in
:data:`STRATEGIES`. An instance holds only its configuration (x0, sigma0,
popsize, seed, bounds, options); everything that changes during a run lives in
the *state* object that ``init``/``ask``/``tell`` return::

    strategy = make_strategy("cma_es", dim=10, x0=np.zeros(10), sigma0=0.5,
                             popsize=80, seed=1)
    state = strategy.init()
    for generation in range(400):
        X, state = strategy.ask(state)                    # (popsize, dim) float64
        state = strategy.tell(state, X, fitness_of(X))    # higher is better
    x, f = strategy.best(state)

States are immutable values: ``ask``/``tell`` never change the state they are
given, so a state can be kept, checkpointed or continued twice.

**blursim maximises fitness.** The one place that turns fitness into the cost
the strategies minimise is :func:`fitness_to_cost`; non-finite fitness (NaN,
+inf, -inf) is the worst possible value there and is never reported as best.

**Checkpoints are data**, never pickles: :meth:`Strategy.state_to_data` gives
a JSON-ready dict and a dict of NumPy arrays; :func:`save_state` writes them
as ``strategy.json`` and ``strategy.npz`` (each atomically, the JSON last and
holding a checksum of the NPZ); :func:`load_state` reads them back and refuses
other formats, versions or strategies with a :class:`CheckpointError`.
"""

from __future__ import annotations

import abc
import hashlib
import io
import json
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Protocol

import numpy as np

from blursim.errors import BlursimError, SpecError
from blursim.io import atomic_write_bytes, fsync_dir
from blursim.registry import Registry
from blursim.spec.options import Options, validate_options

FORMAT = "blursim.strategy_state"
"""Value of the ``format`` field of every strategy checkpoint."""

FORMAT_VERSION = 1
"""Version of the checkpoint layout; a file with another version is refused."""

JSON_NAME = "strategy.json"
NPZ_NAME = "strategy.npz"

STRATEGIES: Registry[type["Strategy"]] = Registry("strategy")
"""Strategy name -> strategy class (see :func:`register`)."""


class CheckpointError(BlursimError, ValueError):
    """A strategy checkpoint is missing, malformed, of another format or
    version, or does not reproduce (e.g. written with another ``cma``)."""


# --------------------------------------------------------------------------
# The one place where "blursim maximises fitness" is decided
# --------------------------------------------------------------------------


def fitness_to_cost(fitness: Any) -> np.ndarray:
    """Turn fitness (higher is better) into cost (lower is better).

    Every strategy minimises this cost. ``cost = -fitness`` for finite
    fitness; a non-finite fitness (NaN, +inf or -inf: a diverged or failed
    evaluation) gets a cost worse than every finite one of the population:
    ``w + max(1, |w|)`` where ``w`` is the largest finite cost, or ``0.0``
    when no fitness is finite. All non-finite entries tie.

    Returns a new float64 array of the same shape, always finite.
    """
    f = np.array(fitness, dtype=np.float64)
    cost = -f
    bad = ~np.isfinite(f)
    if bad.any():
        finite = cost[~bad]
        if finite.size:
            worst = float(finite.max())
            penalty = worst + max(1.0, abs(worst))
            if not math.isfinite(penalty):  # |worst| near the float maximum
                penalty = worst
        else:
            penalty = 0.0
        cost[bad] = penalty
    return cost


def update_best(
    best_x: np.ndarray | None, best_fitness: float, X: np.ndarray, fitness: np.ndarray
) -> tuple[np.ndarray | None, float]:
    """Best-so-far bookkeeping shared by all strategies (fitness is maximised).

    Only finite fitness can become best; on ties the earlier candidate stays.
    """
    f = np.where(np.isfinite(fitness), fitness, -np.inf)
    i = int(np.argmax(f))
    if f[i] > best_fitness:
        return readonly(X[i]), float(f[i])
    return best_x, best_fitness


# --------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------


class StrategyOptions(Options):
    """Base of every strategy's options model (its ``Options`` class attribute).

    Each strategy declares its options once, as fields of a subclass: type,
    default, allowed range and a one-line description. Documents (an
    experiment's ``strategy.options``) and :func:`make_strategy` are validated
    against it, and the experiment's JSON Schema lists it.
    """


def resolve_options(strategy: str, model: type[StrategyOptions], given: Any) -> dict[str, Any]:
    """Every option of ``model``: defaults overridden by ``given``, all validated.

    ``given`` is a mapping, ``None`` or an instance of ``model``. A bad or
    unknown option is a SpecError at ``options.<name>`` listing the valid ones.
    """
    opts = validate_options(model, given, what=f"strategy {strategy!r}")
    return opts.model_dump()


# --------------------------------------------------------------------------
# Configuration (what a strategy instance holds)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    """A :class:`numpy.random.SeedSequence` as plain data."""

    entropy: int | tuple[int, ...]
    spawn_key: tuple[int, ...] = ()
    pool_size: int = 4

    @classmethod
    def of(cls, seed: Any) -> "Seed":
        if isinstance(seed, np.random.SeedSequence):
            ent = seed.entropy
            if ent is None:  # pragma: no cover - SeedSequence always fills entropy
                raise SpecError("seed sequence without entropy", path="seed")
            entropy = int(ent) if isinstance(ent, numbers.Integral) else tuple(int(e) for e in ent)
            return cls(entropy, tuple(int(k) for k in seed.spawn_key), int(seed.pool_size))
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise SpecError(
                "seed must be a non-negative integer or a numpy.random.SeedSequence",
                path="seed",
                value=seed,
            )
        return cls(int(seed))

    def sequence(self) -> np.random.SeedSequence:
        return np.random.SeedSequence(
            self.entropy, spawn_key=self.spawn_key, pool_size=self.pool_size
        )

    def generator(self) -> np.random.Generator:
        """A fresh PCG64 generator; for an int seed this equals ``default_rng(seed)``."""
        return np.random.Generator(np.random.PCG64(self.sequence()))

    def to_data(self) -> dict[str, Any]:
        ent = list(self.entropy) if isinstance(self.entropy, tuple) else self.entropy
        return {"entropy": ent, "spawn_key": list(self.spawn_key), "pool_size": self.pool_size}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> "Seed":
        ent = data["entropy"]
        entropy = tuple(int(e) for e in ent) if isinstance(ent, list) else int(ent)
        return cls(entropy, tuple(int(k) for k in data["spawn_key"]), int(data["pool_size"]))


def differing_fields(a: Any, b: Any, scalars: tuple[str, ...]) -> list[str]:
    """Names of the fields in which two strategy configurations differ: the plain fields
    ``scalars``, then ``x0``, ``lower`` and ``upper`` (arrays or ``None``) and ``options``."""
    out = [f for f in scalars if getattr(a, f) != getattr(b, f)]
    if not np.array_equal(a.x0, b.x0):
        out.append("x0")
    for field in ("lower", "upper"):
        u, v = getattr(a, field), getattr(b, field)
        if (u is None) != (v is None) or (u is not None and not np.array_equal(u, v)):
            out.append(field)
    if dict(a.options) != dict(b.options):
        out.append("options")
    return out


@dataclass(frozen=True, eq=False)
class StrategyConfig:
    """Everything that defines a strategy run before it starts (validated)."""

    name: str
    x0: np.ndarray
    sigma0: float
    popsize: int
    seed: Seed
    lower: np.ndarray | None
    upper: np.ndarray | None
    options: Mapping[str, Any]

    @property
    def dim(self) -> int:
        return int(self.x0.shape[0])

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.lower is None or self.upper is None:
            return None
        return self.lower, self.upper

    def differences(self, other: "StrategyConfig") -> list[str]:
        """Names of the fields in which two configurations differ."""
        return differing_fields(self, other, ("name", "sigma0", "popsize", "seed"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StrategyConfig) and not self.differences(other)

    __hash__ = None  # type: ignore[assignment]

    def to_data(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        data = {
            "dim": self.dim,
            "sigma0": self.sigma0,
            "popsize": self.popsize,
            "seed": self.seed.to_data(),
            "bounds": self.lower is not None,
            "options": dict(self.options),
        }
        arrays = {"x0": np.array(self.x0)}
        if self.lower is not None and self.upper is not None:
            arrays["lower"] = np.array(self.lower)
            arrays["upper"] = np.array(self.upper)
        return data, arrays


# --------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------


def register(name: str):
    """Class decorator: register a :class:`Strategy` subclass under ``name``."""

    def deco(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        return STRATEGIES.register(name, options=cls.Options)(cls)

    return deco


class MetaOptimizer(Protocol):
    """What the trainer, the run directory and the experiment ask of every registered strategy,
    evolution strategy (:class:`Strategy`) or gradient meta-training
    (:class:`~blursim.meta.strategies.gradient.GradientDescent`): its kind and settings as class
    attributes, its state as plain data. How a step uses it belongs to the kind's step
    (:data:`blursim.meta.trainer.STEPS`)."""

    name: ClassVar[str]
    kind: ClassVar[str]
    experiment_fields: ClassVar[tuple[str, ...]]

    @classmethod
    def from_experiment(cls, exp: Any, *, dim: int, x0: Any, seed: Any,
                        bounds: tuple[Any, Any] | None) -> "MetaOptimizer": ...

    @property
    def popsize(self) -> int: ...

    def init(self) -> Any: ...

    def mean(self, state: Any) -> np.ndarray: ...

    def step_size(self, state: Any) -> float: ...

    def best(self, state: Any) -> tuple[np.ndarray | None, float]: ...

    def state_to_data(self, state: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]: ...

    def state_from_data(self, data: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Any: ...


class Strategy(abc.ABC):
    """An evolution strategy with an ask/tell interface on explicit state.

    Parameters
    ----------
    dim:
        Number of parameters (genome length).
    x0:
        Initial mean, shape ``(dim,)``, finite, inside the bounds.
    sigma0:
        Initial step size (standard deviation of the search distribution).
    popsize:
        Candidates per generation.
    seed:
        Non-negative int or :class:`numpy.random.SeedSequence`; the
        strategy's only source of randomness (never the global NumPy RNG).
    bounds:
        ``None`` or ``(lower, upper)``, each shape ``(dim,)``; entries may be
        ``-inf``/``inf`` for unbounded coordinates.
    options:
        Strategy-specific options; see the class's ``Options`` model for names,
        defaults, ranges and meanings. Unknown names are a :class:`SpecError`.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[StrategyOptions]] = StrategyOptions
    #: The kind of strategy: which step the trainer runs (:data:`blursim.meta.trainer.STEPS`).
    kind: ClassVar[str] = "evolution"
    #: The experiment's strategy settings this kind needs (``strategy.sigma0``, ``strategy.popsize``);
    #: the experiment refuses the others (:class:`blursim.meta.experiment.StrategySpec`).
    experiment_fields: ClassVar[tuple[str, ...]] = ("sigma0", "popsize")

    def __init__(
        self,
        dim: int,
        x0: Any,
        sigma0: float,
        popsize: int,
        seed: int | np.random.SeedSequence,
        bounds: tuple[Any, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = self._make_config(dim, x0, sigma0, popsize, seed, bounds, options)

    # ---- construction ---------------------------------------------------

    @classmethod
    def from_experiment(cls, exp: Any, *, dim: int, x0: Any, seed: Any,
                        bounds: tuple[Any, Any] | None) -> "Strategy":
        """The strategy of an experiment document (its ``strategy`` section; validated there)."""
        return cls(dim=dim, x0=x0, sigma0=exp.strategy.sigma0, popsize=exp.strategy.popsize, seed=seed,
                   bounds=bounds, options=exp.strategy.options)

    @classmethod
    def from_config(cls, config: StrategyConfig) -> "Strategy":
        """Rebuild a strategy from its configuration (re-validated)."""
        cls_ = STRATEGIES.get(config.name, path="strategy")
        if cls is not Strategy and cls_ is not cls:
            raise SpecError(f"configuration is for strategy {config.name!r}, not {cls.name!r}")
        return cls_(
            dim=config.dim,
            x0=config.x0,
            sigma0=config.sigma0,
            popsize=config.popsize,
            seed=config.seed.sequence(),
            bounds=config.bounds,
            options=config.options,
        )

    def _check_popsize(self, popsize: int) -> None:
        """Hook for strategy-specific population-size rules."""

    def _make_config(self, dim, x0, sigma0, popsize, seed, bounds, options) -> StrategyConfig:
        name = type(self).name
        if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, numbers.Integral) or dim < 1:
            raise SpecError("dim must be a positive integer", path="dim", value=dim)
        dim = int(dim)
        x0 = checked_vector(x0, dim, "x0", allow_inf=False)
        if isinstance(sigma0, (bool, np.bool_)) or not isinstance(sigma0, numbers.Real) or not (
            math.isfinite(sigma0) and sigma0 > 0
        ):
            raise SpecError("sigma0 must be a finite number > 0", path="sigma0", value=sigma0)
        if isinstance(popsize, (bool, np.bool_)) or not isinstance(popsize, numbers.Integral) or popsize < 2:
            raise SpecError("popsize must be an integer >= 2", path="popsize", value=popsize)
        popsize = int(popsize)
        self._check_popsize(popsize)
        lower = upper = None
        if bounds is not None:
            if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
                raise SpecError("bounds must be None or a pair (lower, upper)", path="bounds")
            lower = checked_vector(bounds[0], dim, "bounds[0]", allow_inf=True)
            upper = checked_vector(bounds[1], dim, "bounds[1]", allow_inf=True)
            if not np.all(lower < upper):
                i = int(np.argmin(lower < upper))
                raise SpecError(
                    "every lower bound must be smaller than its upper bound",
                    path=f"bounds[1][{i}]",
                    value=(float(lower[i]), float(upper[i])),
                )
            outside = (x0 < lower) | (x0 > upper)
            if outside.any():
                i = int(np.argmax(outside))
                raise SpecError(
                    "x0 must lie inside the bounds", path=f"x0[{i}]", value=float(x0[i])
                )
        return StrategyConfig(
            name=name,
            x0=x0,
            sigma0=float(sigma0),
            popsize=popsize,
            seed=Seed.of(seed),
            lower=lower,
            upper=upper,
            options=MappingProxyType(resolve_options(name, self.Options, options)),
        )

    # ---- shortcuts ------------------------------------------------------

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def popsize(self) -> int:
        return self.config.popsize

    @property
    def options(self) -> Mapping[str, Any]:
        return self.config.options

    # ---- the ask/tell interface -------------------------------------------

    @abc.abstractmethod
    def init(self) -> Any:
        """The state before the first generation."""

    @abc.abstractmethod
    def ask(self, state: Any) -> tuple[np.ndarray, Any]:
        """Sample a population: ``(X of shape (popsize, dim), new state)``."""

    @abc.abstractmethod
    def tell(self, state: Any, X: Any, fitness: Any) -> Any:
        """Update on the fitness (maximised) of the population ``X`` from ``ask``."""

    @abc.abstractmethod
    def mean(self, state: Any) -> np.ndarray:
        """The current centre of the search distribution, shape ``(dim,)``."""

    @abc.abstractmethod
    def step_size(self, state: Any) -> float:
        """The current step size (sigma), for logging."""

    def best(self, state: Any) -> tuple[np.ndarray | None, float]:
        """Best candidate told so far and its fitness; ``(None, -inf)`` until a
        finite fitness has been told."""
        self._own(state)
        x = None if state.best_x is None else np.array(state.best_x)
        return x, float(state.best_fitness)

    # ---- checkpoint data --------------------------------------------------

    @abc.abstractmethod
    def _payload_to_data(self, state: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The state's own fields as (JSON-ready dict, arrays)."""

    @abc.abstractmethod
    def _payload_from_data(self, data: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Any:
        """Inverse of :meth:`_payload_to_data`."""

    def state_to_data(self, state: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The state as versioned data: a JSON-ready dict and named arrays."""
        self._own(state)
        cdata, carrays = self.config.to_data()
        pdata, parrays = self._payload_to_data(state)
        data = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "strategy": self.name,
            "config": cdata,
            "state": pdata,
        }
        arrays = {f"config.{k}": v for k, v in carrays.items()}
        arrays.update({f"state.{k}": np.asarray(v) for k, v in parrays.items()})
        return data, arrays

    def state_from_data(self, data: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Any:
        """Inverse of :meth:`state_to_data`; the data must come from a strategy
        configured exactly like this one."""
        check_header(data, expect=self.name)
        try:
            config = strategy_from_data(data, arrays).config
        except SpecError as e:
            raise CheckpointError(f"checkpoint configuration is invalid: {e}") from None
        diff = self.config.differences(config)
        if diff:
            raise CheckpointError(
                f"checkpoint of strategy {self.name!r} was configured differently "
                f"from this strategy (differs in: {', '.join(diff)})"
            )
        state_arrays = {k[6:]: v for k, v in arrays.items() if k.startswith("state.")}
        try:
            return self._payload_from_data(data["state"], state_arrays)
        except (KeyError, TypeError, IndexError) as e:
            raise CheckpointError(f"malformed {self.name!r} checkpoint state: missing or bad {e}") from None

    # ---- helpers for subclasses -------------------------------------------

    def _own(self, state: Any) -> None:
        cfg = getattr(state, "config", None)
        if cfg is not self.config and cfg != self.config:
            raise ValueError(f"this state does not belong to this {self.name!r} strategy")

    def _checked_tell(self, state: Any, X: Any, fitness: Any) -> tuple[np.ndarray, np.ndarray]:
        """Validate ``tell`` arguments against the population pending in ``state``."""
        self._own(state)
        if state.pending is None:
            raise ValueError(
                "tell() needs the population returned by ask(); this state has none pending"
            )
        X = np.asarray(X, dtype=np.float64)
        if X.shape != state.pending.shape or not np.array_equal(X, state.pending):
            raise ValueError(
                "tell(): X is not the population returned by the ask() that produced this state"
            )
        try:
            fitness = np.array(fitness, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("tell(): fitness must be an array of numbers") from None
        if fitness.shape != (self.popsize,):
            raise ValueError(
                f"tell(): fitness must have shape ({self.popsize},), got {fitness.shape}"
            )
        return X, fitness


# --------------------------------------------------------------------------
# Construction and checkpoint files
# --------------------------------------------------------------------------


def make_strategy(name: str, **kwargs: Any) -> Strategy:
    """``STRATEGIES.get(name)(**kwargs)``; an unknown name lists the valid ones."""
    return STRATEGIES.get(name, path="strategy")(**kwargs)


def strategy_for(state: Any) -> Strategy:
    """A strategy instance able to continue ``state`` (built from its config)."""
    return Strategy.from_config(state.config)


def check_header(data: Any, expect: str | None = None) -> None:
    """Raise CheckpointError unless ``data`` is a strategy checkpoint of this
    format version (and, if given, of strategy ``expect``)."""
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise CheckpointError(f"not a blursim strategy checkpoint (format should be {FORMAT!r})")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"strategy checkpoint has format version {version!r}; this blursim reads "
            f"version {FORMAT_VERSION} only"
        )
    if expect is not None and data.get("strategy") != expect:
        raise CheckpointError(
            f"checkpoint holds strategy {data.get('strategy')!r}, not {expect!r}"
        )


def strategy_from_data(data: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Strategy:
    """The strategy (re-validated) that a checkpoint's header and config describe."""
    check_header(data)
    cls = STRATEGIES.get(data.get("strategy"), path="strategy")
    try:
        c = data["config"]
        bounds = (arrays["config.lower"], arrays["config.upper"]) if c["bounds"] else None
        return cls(
            dim=c["dim"],
            x0=arrays["config.x0"],
            sigma0=c["sigma0"],
            popsize=c["popsize"],
            seed=Seed.from_data(c["seed"]).sequence(),
            bounds=bounds,
            options=c["options"],
        )
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"malformed strategy checkpoint config: missing or bad {e}") from None


def save_state(directory: str | os.PathLike, state: Any) -> None:
    """Write ``state`` to ``directory/strategy.npz`` and ``directory/strategy.json``.

    Each file is written to a temporary file in the same directory, fsynced
    and moved into place with ``os.replace``; the JSON goes last and holds the
    SHA-256 of the NPZ, so a torn pair is detected by :func:`load_state`.
    """
    strategy = strategy_for(state)
    data, arrays = strategy.state_to_data(state)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    raw = buf.getvalue()
    data = dict(data, arrays_sha256=hashlib.sha256(raw).hexdigest())
    text = json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n"
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _atomic_write(d / NPZ_NAME, raw)
    _atomic_write(d / JSON_NAME, text.encode("utf-8"))
    _fsync_dir(d)


def load_state(directory: str | os.PathLike, strategy: Strategy | None = None) -> Any:
    """Read a state written by :func:`save_state`.

    With ``strategy`` given, the checkpoint must have been written by a
    strategy configured identically; without, the strategy is rebuilt from the
    checkpoint (``strategy_for(state)`` gives it back).
    """
    d = Path(directory)
    jpath, npath = d / JSON_NAME, d / NPZ_NAME
    try:
        data = json.loads(jpath.read_text(encoding="utf-8"))
        raw = npath.read_bytes()
    except FileNotFoundError as e:
        raise CheckpointError(f"{d}: no strategy checkpoint ({e.filename} is missing)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{jpath}: not valid JSON ({e})") from None
    try:
        check_header(data, expect=None if strategy is None else strategy.name)
        if data.get("arrays_sha256") != hashlib.sha256(raw).hexdigest():
            raise CheckpointError(
                f"{NPZ_NAME} does not match {JSON_NAME} (checksum differs): the checkpoint "
                "was interrupted or its files come from different saves"
            )
        from blursim.npz import read_npz

        # checked from the ZIP and .npy headers before anything is inflated (issue 24)
        arrays = read_npz(raw, name=str(npath), max_bytes=max(64 * len(raw), 1 << 20), error=CheckpointError,
                          what="strategy checkpoint")
        if strategy is None:
            strategy = strategy_from_data(data, arrays)
        return strategy.state_from_data(data, arrays)
    except CheckpointError as e:
        raise CheckpointError(f"{jpath}: {e}") from None


_atomic_write = atomic_write_bytes
_fsync_dir = fsync_dir


# --------------------------------------------------------------------------
# Small array helpers
# --------------------------------------------------------------------------


def readonly(a: Any) -> np.ndarray:
    """A read-only float64 copy (state arrays are never mutated in place)."""
    out = np.array(a, dtype=np.float64)
    out.setflags(write=False)
    return out


def checked_vector(v: Any, dim: int, path: str, *, allow_inf: bool) -> np.ndarray:
    """``v`` as a read-only float64 vector of ``dim`` entries, finite (``allow_inf``: not NaN), or a
    SpecError at ``path``."""
    try:
        a = np.array(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpecError(f"{path} must be an array of {dim} numbers", path=path) from None
    if a.shape != (dim,):
        raise SpecError(f"{path} must have shape ({dim},), got {a.shape}", path=path)
    ok = ~np.isnan(a) if allow_inf else np.isfinite(a)
    if not ok.all():
        i = int(np.argmin(ok))
        raise SpecError(
            f"{path} must be {'non-NaN' if allow_inf else 'finite'}",
            path=f"{path}[{i}]",
            value=float(a[i]),
        )
    a.setflags(write=False)
    return a
