"""Training runs and learning-rate sweeps of the gradient baselines.

:func:`train_baseline` mirrors :func:`blursim.sim.run.train_and_evaluate`:
the training batch of step ``t`` is :func:`~blursim.sim.run.train_batch`
``(seed, t)`` and evaluation uses :func:`~blursim.sim.run.query_batches` on
the same split, with initial weights equal to the BLUR simulation's for the
same seed -- so a baseline curve and a BLUR curve differ only by the update
rule.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from blursim.baselines.network import FeedForwardNet
from blursim.baselines.optimizers import Optimizer, check_lr, make_optimizer
from blursim.errors import SpecError
from blursim.graph import Program, as_program, check_dataset_fit
from blursim.sim.run import eval_step_list, query_batches, train_batch

#: Default learning rates of a sweep: 1e-4 .. 1, one per decade (four orders of magnitude, Fig. 6).
DEFAULT_LRS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@dataclass
class BaselineResult:
    """One (optimizer, lr) run: accuracy and cross-entropy ``(R, E)`` at ``steps`` ``(E,)``.

    ``train_loss`` ``(T, R)``: the training-batch loss before each update;
    ``diverged`` ``(R,)``: non-finite weights at the end; ``weights``: final
    weights, one ``(R, n_pre + bias, n_post)`` array per projection.
    """

    optimizer: str
    lr: float
    steps: np.ndarray
    accuracy: np.ndarray
    cross_entropy: np.ndarray
    train_loss: np.ndarray
    diverged: np.ndarray
    weights: list[np.ndarray]
    seconds: float

    def final(self) -> dict[str, np.ndarray]:
        return {"accuracy": self.accuracy[..., -1], "cross_entropy": self.cross_entropy[..., -1]}


def train_baseline(
    program: Program | Any,
    dataset: Any,
    optimizer: str | Optimizer,
    lr: float,
    *,
    steps: int,
    batch_size: int,
    replicas: int = 1,
    seed: int = 0,
    eval_steps: Sequence[int] | str = "all",
    n_query_batches: int | None = None,
    query_batch_size: int | None = None,
    split: str = "test",
    dtype: str = "float64",
    optimizer_options: dict | None = None,
    on_step: Callable[[int], None] | None = None,
) -> BaselineResult:
    """Train the plain network of ``program`` by gradient descent and evaluate held-out accuracy.

    ``optimizer``: ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"`` or an
    :class:`Optimizer`; ``optimizer_options`` overrides its hyper-parameters
    (e.g. ``{"beta": 0.5}``). ``eval_steps``, ``n_query_batches``,
    ``query_batch_size`` and ``split`` mean what they mean in
    :func:`blursim.sim.run.train_and_evaluate`.
    """
    t0 = time.perf_counter()
    prog = as_program(program)
    opt = make_optimizer(optimizer, **(optimizer_options or {}))
    lr = check_lr(lr)
    for name, v, lo in (("steps", steps, 0), ("batch_size", batch_size, 1), ("replicas", replicas, 1)):
        if int(v) < lo:
            raise SpecError(f"{name} must be >= {lo}", value=v, path=name)
    if split not in ("test", "train"):
        raise SpecError("unknown split", value=split, path="split", choices=["test", "train"])
    check_dataset_fit(prog.spec, dataset, labels_only=True)
    net = FeedForwardNet(prog, dtype=dtype)
    params = net.initial_weights(replicas=replicas, seed=seed)
    evals = eval_step_list(eval_steps, steps)
    xq, yq = (dataset.x_test, dataset.y_test) if split == "test" else (dataset.x_train, dataset.y_train)
    qb = query_batches(xq, yq, seed, n_query_batches, query_batch_size)
    accs, ces, losses = [], [], []

    def _eval():
        m = net.evaluate(params, qb)
        accs.append(m["accuracy"])
        ces.append(m["cross_entropy"])

    state = None
    with np.errstate(all="ignore"):
        if 0 in evals:
            _eval()
        for t in range(steps):
            x, y = train_batch(dataset.x_train, dataset.y_train, t, seed, batch_size)
            loss, grads = net.loss_and_grad(params, x, y)
            losses.append(loss)
            params, state = opt(params, grads, state, lr)
            if on_step is not None:
                on_step(t + 1)
            if t + 1 in evals:
                _eval()
    finite = np.ones(replicas, dtype=bool)
    for w in params:
        finite &= np.isfinite(w.reshape(w.shape[0], -1)).all(axis=1)
    E = len(evals)
    return BaselineResult(
        optimizer=opt.label, lr=lr, steps=np.asarray(evals, dtype=np.int64),
        accuracy=np.stack(accs, axis=-1) if E else np.zeros((replicas, 0)),
        cross_entropy=np.stack(ces, axis=-1) if E else np.zeros((replicas, 0)),
        train_loss=np.asarray(losses, dtype=np.float64).reshape(steps, replicas),
        diverged=~finite, weights=params, seconds=time.perf_counter() - t0,
    )


@dataclass
class SweepTable:
    """Results of :func:`lr_sweep`: arrays indexed ``[optimizer, lr, replica, eval step]``."""

    optimizers: list[str]
    lrs: np.ndarray  # (L,)
    steps: np.ndarray  # (E,)
    accuracy: np.ndarray  # (O, L, R, E)
    cross_entropy: np.ndarray  # (O, L, R, E)
    diverged: np.ndarray  # (O, L, R)
    seconds: float

    def rows(self) -> list[dict[str, Any]]:
        """One row per (optimizer, lr): final and best mean accuracy, final cross-entropy."""
        out = []
        for o, name in enumerate(self.optimizers):
            for li, lr in enumerate(self.lrs):
                acc = self.accuracy[o, li]  # (R, E)
                ce = self.cross_entropy[o, li]
                mean_acc = acc.mean(axis=0)
                out.append({
                    "optimizer": name, "lr": float(lr),
                    "final_accuracy": float(mean_acc[-1]) if mean_acc.size else float("nan"),
                    "final_accuracy_std": float(acc[:, -1].std()) if mean_acc.size else float("nan"),
                    "best_accuracy": float(mean_acc.max()) if mean_acc.size else float("nan"),
                    "best_step": int(self.steps[int(np.argmax(mean_acc))]) if mean_acc.size else -1,
                    "final_cross_entropy": float(ce[:, -1].mean()) if mean_acc.size else float("nan"),
                    "diverged_replicas": int(self.diverged[o, li].sum()),
                })
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: curves (mean and std over replicas) and the summary rows."""
        with np.errstate(all="ignore"):
            curves = [
                {"optimizer": name, "lr": float(lr),
                 "accuracy_mean": self.accuracy[o, li].mean(0).tolist(),
                 "accuracy_std": self.accuracy[o, li].std(0).tolist(),
                 "cross_entropy_mean": [x if np.isfinite(x) else None
                                        for x in self.cross_entropy[o, li].mean(0).tolist()]}
                for o, name in enumerate(self.optimizers) for li, lr in enumerate(self.lrs)
            ]
        rows = [{k: (v if not isinstance(v, float) or np.isfinite(v) else None) for k, v in r.items()}
                for r in self.rows()]
        return {"steps": self.steps.tolist(), "curves": curves, "summary": rows, "seconds": self.seconds}


def lr_sweep(
    program: Program | Any,
    dataset: Any,
    *,
    optimizers: Sequence[str | Optimizer] = ("sgd", "momentum", "adam"),
    lrs: Sequence[float] = DEFAULT_LRS,
    steps: int,
    batch_size: int,
    replicas: int = 1,
    seed: int = 0,
    eval_steps: Sequence[int] | str = "all",
    n_query_batches: int | None = None,
    query_batch_size: int | None = None,
    split: str = "test",
    dtype: str = "float64",
    on_run: Callable[[BaselineResult], None] | None = None,
) -> SweepTable:
    """:func:`train_baseline` for every optimizer and learning rate, on the same batches and initial weights."""
    t0 = time.perf_counter()
    prog = as_program(program)
    lrs = [check_lr(v) for v in lrs]
    if not lrs:
        raise SpecError("lr_sweep needs at least one learning rate", path="lrs")
    opts = [make_optimizer(o) for o in optimizers]
    if not opts:
        raise SpecError("lr_sweep needs at least one optimizer", path="optimizers")
    acc, ce, div = [], [], []
    steps_out = None
    for opt in opts:
        a_row, c_row, d_row = [], [], []
        for lr in lrs:
            r = train_baseline(
                prog, dataset, opt, lr, steps=steps, batch_size=batch_size, replicas=replicas,
                seed=seed, eval_steps=eval_steps, n_query_batches=n_query_batches,
                query_batch_size=query_batch_size, split=split, dtype=dtype,
            )
            steps_out = r.steps
            a_row.append(r.accuracy)
            c_row.append(r.cross_entropy)
            d_row.append(r.diverged)
            if on_run is not None:
                on_run(r)
        acc.append(a_row)
        ce.append(c_row)
        div.append(d_row)
    return SweepTable(
        optimizers=[o.label for o in opts], lrs=np.asarray(lrs), steps=steps_out,
        accuracy=np.asarray(acc), cross_entropy=np.asarray(ce), diverged=np.asarray(div),
        seconds=time.perf_counter() - t0,
    )


# ------------------------------------------------------------------ tuning on a validation split
def validation_split(dataset: Any, fraction: float = 0.2, seed: int = 0) -> Any:
    """A dataset whose training split is ``dataset``'s training split minus a held-out part and
    whose *test* split is that part: the validation split, carved from the training split only
    (the test split is never seen). Labels are split stratified
    (:func:`blursim.data.stratified_split`), target vectors uniformly; ``seed`` fixes the carve.
    """
    from blursim.data import Dataset
    from blursim.data.base import stratified_split

    if not 0.0 < float(fraction) < 1.0:
        raise SpecError("the validation fraction must lie strictly between 0 and 1", value=fraction,
                        path="val_fraction")
    n = dataset.x_train.shape[0]
    if n < 2:
        raise SpecError(f"dataset {dataset.name!r} has {n} training example(s); a validation split needs 2",
                        path="val_fraction")
    if dataset.targets == "labels":
        tr, va = stratified_split(dataset.y_train, fraction, seed)
    else:
        perm = np.random.default_rng(seed).permutation(n)
        k = min(max(int(round(fraction * n)), 1), n - 1)
        va, tr = np.sort(perm[:k]), np.sort(perm[k:])
    meta = {**dataset.meta, "validation": {"fraction": float(fraction), "seed": int(seed),
                                           "n_train": int(tr.size), "n_validation": int(va.size)}}
    return Dataset(dataset.name, dataset.x_train[tr], dataset.y_train[tr], dataset.x_train[va],
                   dataset.y_train[va], n_classes=dataset.n_classes, meta=meta)


def half_decade_grid(lo: float, hi: float) -> list[float]:
    """Learning rates ``10^(m/2)`` from ``lo`` to ``hi`` (both rounded to the nearest half decade)."""
    a, b = round(2 * np.log10(lo)), round(2 * np.log10(hi))
    return [float(10.0 ** (m / 2)) for m in range(int(a), int(b) + 1)]


@dataclass
class LrTuning:
    """What :func:`tune_lr` tried and chose: ``lrs`` ``(L,)`` ascending, validation ``accuracy``
    and ``cross_entropy`` ``(L, H)`` at each horizon, the ``chosen`` learning rate per horizon,
    and the learning rates added beyond the first grid (``extended``)."""

    lrs: list[float]
    horizons: list[int]
    accuracy: np.ndarray
    cross_entropy: np.ndarray
    chosen: dict[int, float]
    extended: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"lrs": self.lrs, "horizons": self.horizons,
                "validation_accuracy": self.accuracy.tolist(),
                "validation_cross_entropy": [[c if np.isfinite(c) else None for c in row]
                                             for row in self.cross_entropy.tolist()],
                "chosen": {str(h): lr for h, lr in self.chosen.items()}, "extended": self.extended}


def _best(acc: np.ndarray, ce: np.ndarray) -> int:
    """Highest validation accuracy; ties (within 1e-12) by the lowest cross-entropy."""
    acc = np.nan_to_num(acc, nan=-1.0)
    top = np.flatnonzero(acc >= acc.max() - 1e-12)
    return int(top[np.argmin(np.nan_to_num(ce[top], nan=np.inf))])


def tune_lr(
    score: Callable[[list[float]], tuple[np.ndarray, np.ndarray]],
    grid: Sequence[float],
    horizons: Sequence[int],
    *,
    bounds: tuple[float, float] = (1e-7, 1e2),
    max_extensions: int = 6,
) -> LrTuning:
    """Choose a learning rate per horizon on validation data, extending a half-decade grid
    where the best one lies at its edge.

    ``score(lrs)`` returns validation ``(accuracy, cross_entropy)`` of shape ``(len(lrs), H)``
    (one column per horizon, the value after that many steps). The best learning rate of a
    horizon has the highest accuracy (ties: the lowest cross-entropy). While it is the
    smallest (largest) one tried, the next half decade below (above) is scored too -- at most
    ``max_extensions`` times, within ``bounds``.
    """
    horizons = [int(h) for h in horizons]
    tried: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    new = sorted({float(v) for v in grid})
    if not new:
        raise SpecError("learning-rate tuning needs at least one learning rate", path="lrs")
    extended: list[float] = []
    for _ in range(max_extensions + 1):
        acc, ce = score(new)
        for i, lr in enumerate(new):
            tried[lr] = (np.asarray(acc[i], dtype=float), np.asarray(ce[i], dtype=float))
        lrs = sorted(tried)
        A = np.stack([tried[v][0] for v in lrs])
        C = np.stack([tried[v][1] for v in lrs])
        best = [_best(A[:, j], C[:, j]) for j in range(len(horizons))]
        new = []
        if any(b == 0 for b in best) and lrs[0] / 10**0.5 >= bounds[0] * (1 - 1e-9):
            new.append(lrs[0] / 10**0.5)
        if any(b == len(lrs) - 1 for b in best) and lrs[-1] * 10**0.5 <= bounds[1] * (1 + 1e-9):
            new.append(lrs[-1] * 10**0.5)
        if not new or len(extended) >= max_extensions:
            break
        extended.extend(new)
    return LrTuning(lrs=lrs, horizons=horizons, accuracy=A, cross_entropy=C,
                    chosen={h: lrs[b] for h, b in zip(horizons, best)}, extended=extended)
