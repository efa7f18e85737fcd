"""Training unrolls and evaluation on held-out query batches.

Randomness (DESIGN §2): the training batch of step ``t`` depends only on
``(seed, t)`` and query batch ``q`` only on ``(seed, q)``; both are shared by
every species and replica (common random numbers).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from blursim.errors import SpecError
from blursim.sim.simulator import TAG_DATA, TAG_QUERY, Simulator, SynapseState


def train_batch(x: np.ndarray, y: np.ndarray, step: int, seed: int, batch_size: int):
    """The training batch of ``step``: ``batch_size`` rows drawn from ``(x, y)`` by ``(seed, step)``."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), TAG_DATA, int(step)]))
    n = x.shape[0]
    idx = rng.choice(n, size=batch_size, replace=batch_size > n)
    return x[idx], y[idx]


def training_batches(x: np.ndarray, y: np.ndarray, steps: int, seed: int, batch_size: int) -> list:
    """The batches of training steps ``0 .. steps - 1`` (:func:`train_batch`)."""
    return [train_batch(x, y, t, seed, batch_size) for t in range(steps)]


def train_unroll(sim: Any, st: Any, genes: Any, x: np.ndarray, y: np.ndarray, steps: int, seed: int,
                 batch_size: int) -> Any:
    """``steps`` training steps of ``sim`` on the batches :func:`train_batch` draws from ``(x, y)``:
    one step at a time, or the whole unroll in one call where the simulator has
    ``train_steps`` (the JAX engine's ``lax.scan``). Returns ``st``."""
    many = getattr(sim, "train_steps", None)
    if many is not None:
        return many(st, genes, training_batches(x, y, steps, seed, batch_size))
    for t in range(steps):
        xb, yb = train_batch(x, y, t, seed, batch_size)
        sim.train_step(st, genes, xb, yb)
    return st


def query_batches(
    x: np.ndarray, y: np.ndarray, seed: int, n_batches: int | None, batch_size: int | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Held-out evaluation batches: the whole split (``n_batches=None``) or seeded batches."""
    if n_batches is None:
        return [(x, y)]
    out = []
    for q in range(n_batches):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), TAG_QUERY, q]))
        bs = batch_size or min(128, x.shape[0])
        idx = rng.choice(x.shape[0], size=bs, replace=bs > x.shape[0])
        out.append((x[idx], y[idx]))
    return out


def eval_step_list(eval_steps: Sequence[int] | str, steps: int) -> list[int]:
    """``"all"`` -> 0..steps, ``"end"`` -> [steps], or the given step counts within 0..steps."""
    if eval_steps == "all":
        return list(range(steps + 1))
    if eval_steps == "end":
        return [steps]
    if isinstance(eval_steps, str):
        raise SpecError("eval_steps must be 'all', 'end' or a list of step counts",
                        value=eval_steps, path="eval_steps")
    return sorted({int(s) for s in eval_steps if 0 <= int(s) <= steps})


@dataclass
class RunResult:
    """Metrics ``(S, R, E)`` at the evaluated steps ``(E,)``.

    Class labels: ``accuracy`` and ``cross_entropy`` (``mse`` is ``None``);
    real-valued target vectors: ``mse``, the mean squared error of state 0
    (``accuracy`` and ``cross_entropy`` are ``None``).
    """

    steps: np.ndarray
    accuracy: np.ndarray | None
    cross_entropy: np.ndarray | None
    diverged: np.ndarray  # (S, R)
    state: SynapseState
    seconds: float
    mse: np.ndarray | None = None

    @property
    def metrics(self) -> dict[str, np.ndarray]:
        """The metrics this run measured, by name."""
        return {k: v for k, v in (("accuracy", self.accuracy), ("cross_entropy", self.cross_entropy),
                                  ("mse", self.mse)) if v is not None}

    def final(self) -> dict[str, np.ndarray]:
        return {k: v[..., -1] for k, v in self.metrics.items()}


def evaluate_batches(sim: Simulator, st: SynapseState, genes, batches) -> dict[str, np.ndarray]:
    """Each metric of :meth:`Simulator.evaluate` averaged over the query batches, ``(S, R)`` each."""
    total: dict[str, Any] = {}
    for xq, yq in batches:
        for k, v in sim.evaluate(st, genes, xq, yq).items():
            total[k] = total.get(k, 0.0) + v
    return {k: v / len(batches) for k, v in total.items()}


def train_and_evaluate(
    sim: Simulator,
    genomes: Any,
    dataset: Any,
    *,
    steps: int,
    batch_size: int,
    replicas: int = 1,
    seed: int = 0,
    eval_steps: Sequence[int] | str = "all",
    n_query_batches: int | None = None,
    query_batch_size: int | None = None,
    split: str = "test",
    on_step: Callable[[int], None] | None = None,
    monitor: Any = None,
) -> RunResult:
    """Train ``steps`` BLUR steps from fresh synapses and evaluate on held-out data.

    ``eval_steps``: ``"all"`` (0..steps), ``"end"`` (only after the last step),
    or an explicit list of step counts (0 = before training).
    ``split``: evaluate on ``"test"`` (held out, default) or ``"train"`` data.
    ``monitor``: a :class:`~blursim.sim.monitor.Monitor` recording the run (its memory is
    planned before the first step; step 0 records the initial synapses).
    """
    t0 = time.perf_counter()
    genes = sim.prepare(genomes)
    st = sim.init_synapses(genes, replicas=replicas, seed=seed)
    if monitor is not None:
        monitor.plan(sim, S=st.shape_SR[0], R=replicas, B=batch_size, steps=steps)
        monitor.record_synapses(sim, st)
    evals = eval_step_list(eval_steps, steps)
    xq, yq = (dataset.x_test, dataset.y_test) if split == "test" else (dataset.x_train, dataset.y_train)
    qb = query_batches(xq, yq, seed, n_query_batches, query_batch_size)
    seen: dict[str, list] = {}

    def _eval():
        for k, v in evaluate_batches(sim, st, genes, qb).items():
            seen.setdefault(k, []).append(v)

    if 0 in evals:
        _eval()
    for t in range(steps):
        x, y = train_batch(dataset.x_train, dataset.y_train, t, seed, batch_size)
        sim.train_step(st, genes, x, y, monitor=monitor)
        if on_step is not None:
            on_step(t + 1)
        if t + 1 in evals:
            _eval()
    diverged = ~sim.is_finite(st)
    stacked = {k: np.stack(v, axis=-1) for k, v in seen.items()}
    return RunResult(
        steps=np.asarray(evals),
        accuracy=stacked.get("accuracy"),
        cross_entropy=stacked.get("cross_entropy"),
        diverged=diverged,
        state=st,
        seconds=time.perf_counter() - t0,
        mse=stacked.get("mse"),
    )
