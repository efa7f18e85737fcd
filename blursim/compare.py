"""Learning rules side by side: genomes, presets and gradient optimizers x tasks x horizons.

The comparison a researcher runs before believing a meta-learned genome (issue 21;
paper Sec. 4.3, Fig. 6 and 9): every *entry* -- a BLUR genome, a preset of the
rule zoo (``blursim list presets``) or a gradient optimizer (SGD, momentum,
Nesterov, Adam on the plain network, :mod:`blursim.baselines`) -- is trained on
every task for every horizon ``T`` (training steps) and scored by held-out
accuracy after ``T`` steps.

Fair by construction:

- **same networks**: every entry runs on the task's network spec; a preset runs
  on it with the rules it needs applied (:func:`~blursim.genome.requirements.apply_preset_rules`,
  recorded in the result), an optimizer on its plain feed-forward net;
- **same batches**: the training batch of step ``t`` depends only on ``(seed, t)``
  (:func:`blursim.sim.run.train_batch`) for every entry;
- **same initial synapses**: the forward synapses of seed ``s``, replica ``r`` are
  the task spec's draw for ``(s, r)`` (:meth:`FeedForwardNet.initial_weights`) for
  every entry and channel, times a genome's own ``init_scale``; untied backward
  synapses are each spec's own draw;
- **learning rates tuned per horizon, never on the test split**: an optimizer (and
  a preset that takes ``lr`` when none is given) is tuned on a validation split
  carved from the training split (:func:`~blursim.baselines.train.validation_split`),
  on a half-decade grid extended while the best rate lies at its edge
  (:func:`~blursim.baselines.train.tune_lr`), separately for each horizon; the
  chosen rate is then trained on the whole training split and scored on the
  test split. Genomes keep their own ``eta_tilde`` (it is part of what was
  meta-learned).

Statistics: the unit is one **seed** (its data batches and ``replicas`` synapse
initialisations; the seed's value is the mean test accuracy over those
replicas). Each cell reports the mean and sample standard deviation over seeds
and a 95% confidence interval of the mean (Student's t with ``n - 1`` degrees of
freedom).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from blursim.errors import SpecError

__all__ = ["Entry", "Task", "CompareResult", "compare", "parse_entry", "QUICK", "QUICK_SPEC", "DEFAULT_GRID"]

#: Default learning-rate grid: half decades from 1e-3 to 1 (extended at the edges when needed).
DEFAULT_GRID: tuple[float, float] = (1e-3, 1.0)
OPTIMIZER_NAMES = ("sgd", "momentum", "nesterov", "adam")


@dataclass(frozen=True)
class Entry:
    """One contender. ``kind``: ``"genome"`` (``genome``: a GenomeSpec or a file),
    ``"preset"`` (``name`` and its ``options``; ``lr`` tuned when the preset is a rule of the
    zoo that takes one and ``options`` does not give it; ``random`` keeps its drawn rate) or ``"optimizer"`` (``name`` in sgd, momentum, nesterov,
    adam; ``options``: its hyper-parameters, e.g. ``{"beta": 0.5}``, and ``lr`` to fix the
    learning rate instead of tuning it). ``label``: its name in
    the table (default: derived)."""

    kind: str
    name: str
    genome: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def title(self) -> str:
        if self.label:
            return self.label
        opts = ",".join(f"{k}={v}" for k, v in self.options.items())
        name = f"{self.name}({opts})" if opts else self.name
        return {"genome": f"genome {self.name}", "preset": f"preset {name}"}.get(self.kind, name)


@dataclass(frozen=True)
class Task:
    """A dataset by name with its options (``blursim list datasets``), or a loaded
    :class:`~blursim.data.Dataset` given as ``dataset`` (``name`` then labels it)."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    dataset: Any = None

    @property
    def title(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name}({opts})" if opts else self.name

    def load(self) -> Any:
        from blursim.data import load_dataset

        return self.dataset if self.dataset is not None else load_dataset(self.name, dict(self.options), path="tasks")


def parse_entry(text: str | Entry) -> Entry:
    """``"sgd"``/``"opt:adam"`` -> optimizer, ``"backprop"``/``"preset:oja"`` -> preset,
    ``"genome:FILE"`` or an existing ``*.json`` file -> genome."""
    from blursim.genome import PRESETS

    if isinstance(text, Entry):
        return text
    kind, _, rest = str(text).partition(":")
    if rest and kind in ("opt", "optimizer", "preset", "genome"):
        kind = {"opt": "optimizer"}.get(kind, kind)
        return Entry(kind, rest if kind != "genome" else Path(rest).stem,
                     genome=rest if kind == "genome" else None)
    if text in OPTIMIZER_NAMES:
        return Entry("optimizer", text)
    if text in PRESETS:
        return Entry("preset", text)
    if str(text).endswith(".json") or Path(text).is_file():
        return Entry("genome", Path(text).stem, genome=str(text))
    raise SpecError("unknown comparison entry", value=text, path="entries",
                    choices=list(OPTIMIZER_NAMES) + PRESETS.names() + ["genome:FILE"])


# ------------------------------------------------------------------ the runs
@dataclass
class _Setting:
    """What every run of one task shares."""

    spec: Any
    prog: Any
    dataset: Any
    validation: Any
    horizons: list[int]
    steps: list[int]  # the test runs' evaluation steps: the horizons and any curve steps
    seeds: list[int]
    replicas: int
    batch_size: int
    backend: str | None
    dtype: str
    init: dict[int, list[np.ndarray]]  # seed -> forward synapses (R, n_pre + bias, n_post) per projection


def _common_init(setting: _Setting, seed: int) -> list[np.ndarray]:
    """The task network's forward synapses for ``seed`` (channel 0, bias row last), the draw of
    :func:`blursim.sim.oracle.reference_draws` that the baselines start from too."""
    if seed not in setting.init:
        from blursim.sim.oracle import reference_draws

        setting.init[seed] = [np.array(w[0, ..., 0]) for w in
                              reference_draws(setting.prog, setting.replicas, seed)[0]]
    return setting.init[seed]


def _blur_curves(setting: _Setting, spec: Any, genomes: list, data: Any,
                 steps: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and cross-entropy ``(seeds, S, R, E)`` of BLUR ``genomes`` (species) on ``spec``,
    trained on ``data``'s training split and scored on its test split after each of ``steps``."""
    from blursim.graph import compile_network
    from blursim.sim import make_simulator
    from blursim.sim.run import evaluate_batches, query_batches, train_batch

    prog = compile_network(spec)
    sim = make_simulator(prog, setting.backend, setting.dtype)
    genes = sim.prepare(genomes)
    H = max(steps)
    acc = np.zeros((len(setting.seeds), len(genomes), setting.replicas, len(steps)))
    ce = np.zeros_like(acc)
    for si, seed in enumerate(setting.seeds):
        st = sim.init_synapses(genes, replicas=setting.replicas, seed=seed)
        _adopt_init(sim, st, genes, _common_init(setting, seed))
        qb = query_batches(data.x_test, data.y_test, seed, None, None)
        for t in range(H + 1):
            if t in steps:
                m = evaluate_batches(sim, st, genes, qb)
                e = steps.index(t)
                acc[si, :, :, e], ce[si, :, :, e] = m["accuracy"], m["cross_entropy"]
            if t < H:
                x, y = train_batch(data.x_train, data.y_train, t, seed, setting.batch_size)
                sim.train_step(st, genes, x, y)
    return acc, ce


def _adopt_init(sim: Any, st: Any, genes: Any, common: list[np.ndarray]) -> None:
    """Forward synapses (and biases) of every species and channel := the common draw, times each
    species' ``init_scale`` (as :meth:`Simulator.init_synapses` scales its own draw); feedback
    pathways a preset appended keep their own (zero) ``W``. The NumPy
    and CuPy simulators take dense internal-layout arrays (``SynapseState.set``); the JAX engine's
    state holds DESIGN-layout arrays ``(S, R, n_pre + bias, n_post, k)``."""
    blur = getattr(st, "blur", None)
    newW = []
    for qi, q in enumerate(sim.program.projs):
        if qi >= len(common) or q.pathway == "feedback":  # a pathway a preset added: no forward synapses
            if blur is not None:
                newW.append(np.asarray(blur.W[qi]))
            continue
        batch = getattr(genes, "batch", None)  # JAX genes keep the host GenomeBatch
        scale = np.asarray(batch.arrays[q.group]["init_scale"] if batch is not None else genes[q.group].init_scale,
                           dtype=np.float64)
        w = common[qi]  # (R, n_pre + bias, n_post)
        if blur is not None:
            S, R, rows, cols, k = blur.W[qi].shape
            newW.append(scale.reshape(S, 1, 1, 1, 1) * np.broadcast_to(w[None, ..., None], (S, R, rows, cols, k)))
            continue
        W = st.get(qi, "W")
        S, R, kw = W.shape[:3]
        scale = scale.reshape(S, 1, 1, 1, 1)
        st.set(qi, "W", scale * np.broadcast_to(w[:, None, : q.n_pre, :], (S, R, kw, q.n_pre, q.n_post)))
        if q.bias:
            st.set(qi, "b", scale[..., 0] * np.broadcast_to(w[:, None, q.n_pre, :], (S, R, kw, q.n_post)))
    if blur is not None:
        import jax.numpy as jnp

        from blursim.sim.jax_engine import precision

        with precision(sim.dtype_name):
            st.blur = blur._replace(W=tuple(jnp.asarray(w, dtype=blur.W[0].dtype) for w in newW))


def _optimizer_curves(setting: _Setting, entry: Entry, lrs: list[float] | None, data: Any,
                      steps: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and cross-entropy ``(seeds, L, R, E)`` of an optimizer at each learning rate after each of ``steps``."""
    from blursim.baselines import train_baseline

    hyper = {k: v for k, v in entry.options.items() if k != "lr"}
    lrs = [float(entry.options["lr"])] if lrs is None else lrs
    acc = np.zeros((len(setting.seeds), len(lrs), setting.replicas, len(steps)))
    ce = np.zeros_like(acc)
    for si, seed in enumerate(setting.seeds):
        for li, lr in enumerate(lrs):
            r = train_baseline(setting.prog, data, entry.name, lr, steps=max(steps),
                               batch_size=setting.batch_size, replicas=setting.replicas, seed=seed,
                               eval_steps=steps, dtype="float64",
                               optimizer_options=hyper)
            acc[si, li], ce[si, li] = r.accuracy, r.cross_entropy
    return acc, ce


def _preset_spec(setting: _Setting, entry: Entry) -> tuple[Any, list]:
    from blursim.genome.requirements import apply_preset_rules

    return apply_preset_rules(entry.name, setting.spec)


def _preset_genomes(setting: _Setting, entry: Entry, spec: Any, lrs: list[float] | None) -> list:
    from blursim.genome import make_preset
    from blursim.graph import compile_network

    prog = compile_network(spec)
    if lrs is None:
        return [make_preset(entry.name, k=prog.k, groups=prog.groups, **dict(entry.options))]
    return [make_preset(entry.name, k=prog.k, groups=prog.groups, **{**dict(entry.options), "lr": lr})
            for lr in lrs]


def _tuned(entry: Entry) -> bool:
    from blursim.genome import PRESETS

    if entry.kind == "optimizer":
        return "lr" not in entry.options
    if entry.kind == "preset":  # a rule of the zoo; the random genome keeps its drawn eta_tilde
        from blursim.genome.presets import PRESET_REQUIREMENTS

        return (entry.name in PRESET_REQUIREMENTS and "lr" in PRESETS.options(entry.name).model_fields
                and "lr" not in entry.options)
    return False


def _curves(setting: _Setting, entry: Entry, lrs: list[float] | None, data: Any, steps: list[int]):
    """``(seeds, L, R, E)`` accuracy and cross-entropy of ``entry`` after each of ``steps``
    (``L`` = 1 without ``lrs``)."""
    if entry.kind == "optimizer":
        return _optimizer_curves(setting, entry, lrs, data, steps)
    if entry.kind == "preset":
        spec, _ = _preset_spec(setting, entry)
        return _blur_curves(setting, spec, _preset_genomes(setting, entry, spec, lrs), data, steps)
    return _blur_curves(setting, setting.spec, [entry.genome], data, steps)


def _curve_record(steps: list[int], lrs: list[float | None], acc: np.ndarray, ce: np.ndarray) -> dict[str, Any]:
    """The test curves of one entry (``acc``, ``ce`` ``(seeds, L, R, E)``) as :attr:`CompareResult.curves`
    holds them: per learning rate, the per-seed mean over replicas, the sd over every
    initialisation (seeds x replicas) and the diverged initialisations (a diverged replica scores 0)."""
    a = np.nan_to_num(acc, nan=0.0)
    flat = np.moveaxis(a, 1, 0).reshape(a.shape[1], -1, a.shape[3])  # (L, seeds * R, E)
    return {"steps": list(steps), "lrs": list(lrs), "per_seed": np.moveaxis(a.mean(axis=2), 1, 0).tolist(),
            "mean": flat.mean(axis=1).tolist(), "sd_over_inits": flat.std(axis=1).tolist(),
            "diverged": (~np.isfinite(np.moveaxis(ce, 1, 0))).any(axis=-1).sum(axis=(1, 2)).tolist()}


def _summary(values: np.ndarray) -> dict[str, Any]:
    """Mean, sample sd and the 95% t-interval of the mean of per-seed values."""
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if n > 1 else float("nan")
    if n > 1:
        from scipy.stats import t as student_t

        half = float(student_t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        ci = [mean - half, mean + half]
    else:
        ci = [float("nan"), float("nan")]
    return {"mean": mean, "sd": sd, "ci95": ci, "n_seeds": n}


# ------------------------------------------------------------------ result
@dataclass
class CompareResult:
    """Rows ``{task, entry, kind, horizon, lr, per_seed, mean, sd, ci95, n_seeds, diverged}``
    (``per_seed``: mean test accuracy over replicas, one per seed), the tuning of every tuned
    entry, the spec changes applied for presets, the settings, and ``curves``: per
    ``"task/entry"``, the test curves ``{steps, lrs, per_seed (L, seeds, E), mean (L, E),
    sd_over_inits (L, E), diverged (L,)}`` at the rates chosen for some horizon (``lrs``:
    ascending; ``[None]`` for an untuned entry without a rate) -- or at every rate tried on
    the validation split with ``sweep=True``, for display only: nothing is chosen on them."""

    rows: list[dict[str, Any]]
    tuning: dict[str, Any]
    spec_changes: dict[str, list[str]]
    settings: dict[str, Any]
    seconds: float
    curves: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from blursim.io import json_ready

        return json_ready({
            "format": "blursim.compare/1", "statistics": STATISTICS, "settings": self.settings,
            "rows": self.rows, "tuning": self.tuning, "spec_changes": self.spec_changes,
            "curves": self.curves, "seconds": self.seconds,
        })

    def table(self) -> str:
        """A plain-text table: one line per (task, horizon, entry)."""
        wt = max([16] + [len(r["task"]) for r in self.rows])
        we = max([22] + [len(r["entry"]) for r in self.rows])
        lines = [f"# held-out test accuracy after T steps; {STATISTICS}",
                 f"{'task':<{wt}} {'T':>6}  {'entry':<{we}} {'lr':>9}  {'mean':>7} {'± sd':>7}  {'95% CI':<17} {'seeds':>5}"]
        for r in self.rows:
            lr = f"{r['lr']:.3g}" if r["lr"] is not None else "-"
            ci = ("[" + ", ".join(f"{c:.4f}" for c in r["ci95"]) + "]") if np.isfinite(r["ci95"][0]) else "-"
            lines.append(f"{r['task']:<{wt}} {r['horizon']:>6}  {r['entry']:<{we}} {lr:>9}  {r['mean']:7.4f} "
                         f"{r['sd']:7.4f}  {ci:<17} {r['n_seeds']:>5}"
                         + (f"  ({r['diverged']} diverged)" if r["diverged"] else ""))
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """One panel per task: test accuracy (mean over seeds, 95% CI bars) against the horizon."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from blursim.io import atomic_write_bytes

        tasks = list(dict.fromkeys(r["task"] for r in self.rows))
        entries = list(dict.fromkeys(r["entry"] for r in self.rows))
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.8 * len(tasks) + 1.6, 3.8), squeeze=False)
        n = len(entries)
        horizons = sorted({r["horizon"] for r in self.rows})
        for ax, task in zip(axes[0], tasks):
            for i, name in enumerate(entries):
                rs = sorted((r for r in self.rows if r["task"] == task and r["entry"] == name),
                            key=lambda r: r["horizon"])
                if not rs:
                    continue
                # entries side by side within a horizon, so that the bars do not hide each other
                xs = np.array([horizons.index(r["horizon"]) for r in rs]) + (i - (n - 1) / 2) * 0.7 / max(n, 1)
                m = np.array([r["mean"] for r in rs])
                lo = np.clip([r["ci95"][0] for r in rs], 0.0, 1.0)  # accuracy lies in [0, 1]
                hi = np.clip([r["ci95"][1] for r in rs], 0.0, 1.0)
                err = np.vstack([np.nan_to_num(m - lo), np.nan_to_num(hi - m)])
                ax.errorbar(xs, m, yerr=err, fmt="o-", ms=4, capsize=3, label=name)
            ax.set_xticks(range(len(horizons)), [str(h) for h in horizons])
            ax.set_xlabel("training steps T (horizon)")
            ax.set_ylabel("test accuracy")
            ax.set_title(task)
            ax.grid(alpha=0.3)
        seeds = self.rows[0]["n_seeds"] if self.rows else 0
        fig.suptitle(f"mean over {seeds} seeds; bars: 95% CI of the mean, clipped to [0, 1]\n"
                     f"(unit: one seed = the mean of {self.settings['replicas']} initialisations)", fontsize=9)
        axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
        fig.tight_layout()
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        plt.close(fig)
        path = Path(path)
        atomic_write_bytes(path, buf.getvalue())
        return path


STATISTICS = ("unit: one seed (its batches and initialisations; value = mean test accuracy over its "
              "replicas); mean and sample sd over seeds; 95% CI = mean ± t(0.975, n-1)·sd/√n")


# ------------------------------------------------------------------ compare
def compare(
    spec: Any,
    entries: Sequence[str | Entry],
    tasks: Sequence[str | Task],
    *,
    horizons: Sequence[int],
    seeds: Sequence[int] | int = 3,
    replicas: int = 2,
    batch_size: int = 32,
    grid: Sequence[float] | None = None,
    val_fraction: float = 0.2,
    val_seed: int = 0,
    backend: str | None = None,
    dtype: str = "float64",
    curve_steps: Sequence[int] = (),
    sweep: bool = False,
    log: Callable[[str], None] | None = None,
) -> CompareResult:
    """Compare ``entries`` on ``tasks`` at every horizon (training steps) on network ``spec``.

    ``spec``: a network spec (file, dict or NetworkSpec) used for every task, or a mapping
    task name -> spec. ``entries``: :class:`Entry` objects or strings (:func:`parse_entry`:
    ``"sgd"``, ``"adam"``, ``"backprop"``, ``"genome:best.json"``). ``tasks``: :class:`Task`
    objects (a dataset name with options, or a loaded dataset) or dataset names. ``seeds``: a list, or a count (seeds ``0..n-1``). ``grid``: the
    initial learning rates of tuned entries (default half decades 1e-3 .. 1; extended at an
    edge by :func:`~blursim.baselines.train.tune_lr`). ``val_fraction``/``val_seed``: the
    validation split carved from each task's training split. ``curve_steps``: further
    training steps (besides the horizons) at which the test runs are scored, for
    :attr:`CompareResult.curves` only (rates are tuned at the horizons alone). ``sweep``: also
    train every rate a tuned entry tried on the validation split on the whole training split and
    keep its test curve (a display of the sweep; it changes no choice and no row). ``log``:
    progress lines.
    """
    from blursim.baselines.train import half_decade_grid, tune_lr, validation_split
    from blursim.graph import check_dataset_fit, compile_network
    from blursim.spec import load_genome, load_network

    t0 = time.perf_counter()
    say = log or (lambda msg: None)
    entries = [parse_entry(e) for e in entries]
    tasks = [t if isinstance(t, Task) else Task(str(t)) for t in tasks]
    if not entries or not tasks:
        raise SpecError("compare needs at least one entry and one task", path="entries" if not entries else "tasks")
    titles = [e.title for e in entries]
    if len(set(titles)) != len(titles):
        raise SpecError("two comparison entries have the same label", value=titles, path="entries",
                        hint="Give each entry its own label.")
    horizons = sorted({int(h) for h in horizons})
    if not horizons or horizons[0] < 1:
        raise SpecError("horizons must be training step counts >= 1", value=horizons, path="horizons")
    if any(int(s) < 0 for s in curve_steps):
        raise SpecError("curve steps must be training step counts >= 0", value=list(curve_steps), path="curve_steps")
    steps = sorted(set(horizons) | {int(s) for s in curve_steps})
    seeds = list(range(int(seeds))) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    if not seeds or int(replicas) < 1 or int(batch_size) < 1:
        raise SpecError("compare needs >= 1 seed, replica and batch row",
                        value={"seeds": seeds, "replicas": replicas, "batch_size": batch_size}, path="seeds")
    entries = [Entry(e.kind, e.name, load_genome(e.genome), e.options, e.label) if e.kind == "genome" else e
               for e in entries]
    for e in entries:
        if e.kind == "optimizer":
            from blursim.baselines import make_optimizer

            make_optimizer(e.name, **{k: v for k, v in e.options.items() if k != "lr"})
    grid = [float(v) for v in (grid if grid is not None else half_decade_grid(*DEFAULT_GRID))]

    rows: list[dict[str, Any]] = []
    tuning: dict[str, Any] = {}
    changes: dict[str, list[str]] = {}
    curves: dict[str, Any] = {}
    for task in tasks:
        tspec = load_network(spec[task.name] if isinstance(spec, Mapping) and task.name in spec else spec)
        data = task.load()
        if data.targets != "labels":
            raise SpecError(f"compare scores accuracy; task {task.name!r} has real-valued targets", path="tasks")
        check_dataset_fit(tspec, data, task.name)
        setting = _Setting(tspec, compile_network(tspec), data, validation_split(data, val_fraction, val_seed),
                           horizons, steps, seeds, int(replicas), int(batch_size), backend, dtype, {})
        for e in entries:
            if e.kind == "preset":
                changes[f"{task.title}/{e.title}"] = [str(c) for c in _preset_spec(setting, e)[1]]
            if _tuned(e):
                say(f"{task.title}: tuning {e.title} on the validation split")
                tune = tune_lr(lambda lrs, e=e: _validation_score(setting, e, lrs), grid, horizons)
                tuning[f"{task.title}/{e.title}"] = tune.to_dict()
                chosen = sorted(tune.lrs) if sweep else sorted(set(tune.chosen.values()))
                say(f"{task.title}: {e.title} on the test split, lr {', '.join(f'{v:.3g}' for v in chosen)}")
                acc, ce = _curves(setting, e, chosen, setting.dataset, steps)
                for h in horizons:
                    li, hi = chosen.index(tune.chosen[h]), steps.index(h)
                    rows.append(_row(task, e, h, tune.chosen[h], acc[:, li, :, hi], ce[:, li, :, hi]))
            else:
                say(f"{task.title}: {e.title} on the test split")
                acc, ce = _curves(setting, e, None, setting.dataset, steps)
                lr = e.options.get("lr") if e.kind != "genome" else None
                chosen = [lr]
                for h in horizons:
                    hi = steps.index(h)
                    rows.append(_row(task, e, h, lr, acc[:, 0, :, hi], ce[:, 0, :, hi]))
            curves[f"{task.title}/{e.title}"] = _curve_record(steps, chosen, acc, ce)
    settings = {"spec": None if isinstance(spec, Mapping) and not hasattr(spec, "model_dump") else _spec_name(spec),
                "entries": [{"label": e.title, "kind": e.kind, "name": e.name, "options": dict(e.options)}
                            for e in entries],
                "tasks": [{"name": t.name, "options": dict(t.options), "given": t.dataset is not None}
                          for t in tasks],
                "horizons": horizons, "curve_steps": steps, "sweep": bool(sweep), "seeds": seeds, "replicas": int(replicas), "batch_size": int(batch_size),
                "grid": grid, "val_fraction": float(val_fraction), "val_seed": int(val_seed),
                "backend": backend or "numpy", "dtype": dtype}
    return CompareResult(rows, tuning, changes, settings, time.perf_counter() - t0, curves)


def _spec_name(spec: Any) -> str:
    if isinstance(spec, (str, Path)):
        return str(spec)
    return getattr(spec, "name", "") or "(network spec)"


def _validation_score(setting: _Setting, entry: Entry, lrs: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Mean validation accuracy and cross-entropy ``(L, H)`` over seeds and replicas."""
    acc, ce = _curves(setting, entry, lrs, setting.validation, setting.horizons)
    with np.errstate(all="ignore"):
        return acc.mean(axis=(0, 2)), np.nan_to_num(ce, nan=np.inf).mean(axis=(0, 2))


def _row(task: Task, e: Entry, horizon: int, lr: float | None, acc: np.ndarray, ce: np.ndarray) -> dict[str, Any]:
    """One cell: ``acc``, ``ce`` ``(seeds, R)`` test accuracies and cross-entropies (a diverged
    replica -- non-finite outputs -- scores accuracy 0 and infinite cross-entropy)."""
    per_seed = np.nan_to_num(acc, nan=0.0).mean(axis=1)
    return {"task": task.title, "entry": e.title, "kind": e.kind, "horizon": int(horizon),
            "lr": None if lr is None else float(lr), "per_seed": per_seed.tolist(), **_summary(per_seed),
            "diverged": int((~np.isfinite(ce)).sum())}


#: ``--quick``: a 2-D task, small network, few seeds, a short grid (under a minute on one core).
QUICK: dict[str, Any] = {
    "tasks": ["cross"], "entries": ["backprop", "sgd", "momentum", "adam"], "horizons": [30, 100],
    "seeds": 3, "replicas": 2, "batch_size": 32, "grid": (1e-2, 1.0),
}

#: The network of ``--quick`` when no spec is given: 2 -> 16 (tanh) -> 2 with the paper's general
#: rules (untied, additive backward update, target feedback): presets apply their own rules.
QUICK_SPEC: dict[str, Any] = {
    "format": "blursim.network/1", "name": "quick_2d", "k": 2,
    "populations": [
        {"name": "in", "size": 2, "role": "input"},
        {"name": "hidden", "size": 16, "role": "hidden", "forward_activation": "tanh"},
        {"name": "out", "size": 2, "role": "output", "forward_activation": "identity"},
    ],
    "projections": [{"from": "in", "to": "hidden"}, {"from": "hidden", "to": "out"}],
}
