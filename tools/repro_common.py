"""Shared helpers of the reproduction scripts ``tools/repro_*.py``.

Every script records, next to its numbers, the exact command line, the seeds,
the wall time and the machine (CPU model, cores, library versions, git
commit; :mod:`blursim.machine`), and writes its files atomically
(:mod:`blursim.io`).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from blursim.io import atomic_write_text, json_ready
from blursim.machine import cpu_model, git_commit, usable_cpus

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "docs" / "figures"
RESULTS = ROOT / "docs" / "results"
SPECS = ROOT / "specs"


# --------------------------------------------------------------------- machine
#: Distributions whose versions decide the digits of a result (recorded when installed).
VERSIONED = ("numpy", "scipy", "jax", "jaxlib", "cma", "scikit-learn", "matplotlib", "mnist1d", "threadpoolctl")


def library_versions() -> dict[str, str | None]:
    """Installed version of each of :data:`VERSIONED` (``None``: not installed)."""
    import importlib.metadata as md

    out: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def blas_info() -> list[dict[str, Any]]:
    """The BLAS / OpenMP libraries NumPy and SciPy loaded (threadpoolctl): API, library,
    version, CPU kernel architecture and threads; ``[]`` without threadpoolctl."""
    try:
        import scipy.linalg  # noqa: F401  (loads SciPy's BLAS too, so both are listed)
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("user_api", "internal_api", "version", "architecture", "threading_layer", "num_threads")
    return [{**{k: i.get(k) for k in keys}, "library": Path(i.get("filepath", "")).name}
            for i in threadpool_info()]


def machine() -> dict[str, Any]:
    """Where and with what a result was made: CPU model and usable cores, Python and the library
    versions that decide its digits (NumPy, SciPy, JAX / jaxlib, pycma, ...), the BLAS NumPy
    uses, the platform and the git commit (with whether ``blursim/`` had uncommitted changes)."""
    import blursim

    return {
        "cpu": cpu_model(),
        "cores": usable_cpus(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blursim": getattr(blursim, "__version__", "unknown"),
        "platform": platform.platform(),
        "versions": library_versions(),
        "blas": blas_info(),
        **git_commit(),
        "tools_modified": tools_modified(),
        # the settings that choose engines and routes (e.g. BLURSIM_META_ENGINE: which engine computed
        # the meta-gradients), as the command's environment gave them
        "environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith("BLURSIM_")},
    }


def tools_modified() -> bool | None:
    """Whether ``tools/`` (these scripts) had uncommitted changes (``None`` outside a git checkout)."""
    import subprocess

    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "tools"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def command_line() -> str:
    """The command that ran this script, relative to the repository root when possible."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_s = str(script.relative_to(ROOT))
    except ValueError:
        script_s = str(script)
    return " ".join(["python", shlex.quote(script_s)] + [shlex.quote(a) for a in sys.argv[1:]])


# ---------------------------------------------------------------------- output
def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    path = Path(path)
    atomic_write_text(path, json.dumps(json_ready(data), indent=1, sort_keys=False) + "\n")
    return path


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically (temporary file + os.replace)."""
    import matplotlib.pyplot as plt

    from blursim.io import atomic_path

    path = Path(path)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    finally:
        plt.close(fig)
    return path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# -------------------------------------------------------------------- running
def add_common_args(p, name: str) -> None:
    p.add_argument("--seed", type=int, default=0, help="root seed (default 0)")
    p.add_argument("--quick", action="store_true", help="a tiny smoke run (seconds); not a result")
    p.add_argument("--fig-dir", default=str(FIGURES), help="figure directory (default docs/figures)")
    p.add_argument("--out", default=str(RESULTS / f"{name}.json"),
                   help=f"numbers (default docs/results/{name}.json)")
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"], help="array backend (default numpy)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_es_args(p, *, seeds: int, generations: int, popsize: int, width: int = 32, replicas: int,
                per: str = "cell", replicas_help: str = "synapse initialisations") -> None:
    """The meta-training options the CMA-ES sweeps share (``--seeds`` per ``per``,
    ``--generations``, ``--popsize``, ``--width``, ``--replicas``), with each script's defaults."""
    p.add_argument("--seeds", type=int, default=seeds, help=f"meta-training seeds per {per} (default {seeds})")
    p.add_argument("--generations", type=int, default=generations,
                   help=f"generations per run (default {generations})")
    p.add_argument("--popsize", type=int, default=popsize, help=f"CMA-ES population (default {popsize})")
    p.add_argument("--width", type=int, default=width, help=f"hidden width (default {width})")
    p.add_argument("--replicas", type=int, default=replicas, help=f"{replicas_help} (default {replicas})")


def progress(total: int, desc: str, quiet: bool = False, unit: str = "it"):
    """A tqdm bar on stderr, silent when ``quiet`` or stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                disable=quiet or not sys.stderr.isatty())


def estimate(what: str, seconds: float) -> None:
    """Print the time estimate first (stdout, flushed)."""
    m, s = divmod(int(round(seconds)), 60)
    print(f"[estimate] {what}: about {m} min {s:02d} s on this machine", flush=True)


class Timer:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0


def envelope(name: str, args: Any, timer: Timer, seeds: Any, scale: dict[str, Any],
             results: dict[str, Any], figures: list[str]) -> dict[str, Any]:
    """The common header of every docs/results/<name>.json."""
    def rel(p: str | Path) -> str:
        p = Path(p).resolve()
        try:
            return str(p.relative_to(ROOT))
        except ValueError:
            return str(p)

    return {
        "format": "blursim.repro/1",
        "name": name,
        "command": command_line(),
        "quick": bool(getattr(args, "quick", False)),
        "seeds": seeds,
        "scale": scale,
        "started": timer.started,
        "wall_seconds": round(timer.seconds, 1),
        "machine": machine(),
        "figures": [rel(f) for f in figures],
        "results": results,
    }


def experiment_dict(path: str | Path, **overrides: Any) -> dict[str, Any]:
    """An experiment document as a dict, its relative network paths made absolute.

    ``overrides`` replace top-level sections (dicts are merged one level deep).
    """
    path = Path(path).resolve()
    doc = json.loads(path.read_text())
    base = path.parent

    def absolute(v: Any) -> Any:
        return str((base / v).resolve()) if isinstance(v, str) else v

    doc["network"] = absolute(doc["network"])
    for key in ("training_tasks", "validation_tasks"):
        for t in doc.get(key, []):
            if "network" in t:
                t["network"] = absolute(t["network"])
    init = doc.get("genome", {}).get("init", {})
    if init.get("kind") == "file":
        init["path"] = absolute(init["path"])
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(doc.get(k), dict):
            doc[k] = {**doc[k], **v}
        else:
            doc[k] = v
    return doc


def load_spec(path: str | Path):
    from blursim.spec import load_network

    return load_network(Path(path))


def evaluate_genome(network, genome, task: str, *, steps: int, replicas: int, seed: int,
                    batch_size: int, backend: str = "numpy", options: dict | None = None,
                    eval_steps: Any = "all", split: str = "test", record: list[str] | None = None,
                    record_steps: Any = "all") -> dict[str, Any]:
    """Held-out accuracy of ``genome`` (or a list of genomes) trained from fresh synapses on ``task``.

    Returns ``{"steps", "mean" (S, E), "std" (S, E), "diverged" (S,)}`` over
    ``replicas`` initialisations (synapses and batches drawn from ``seed``). With
    ``record`` (monitor variables, :mod:`blursim.sim.monitor`, e.g. ``["norms"]``) a
    monitor records them at ``record_steps`` and ``"recordings"`` holds them by name.
    """
    from blursim.data import load_dataset
    from blursim.graph import compile_network
    from blursim.sim import Simulator, train_and_evaluate
    from blursim.spec import NetworkSpec

    spec = network if isinstance(network, NetworkSpec) else load_spec(network)
    genomes = genome if isinstance(genome, list) else [genome]
    prog = compile_network(spec)
    sim = Simulator(prog, backend=backend, dtype="float32")
    data = load_dataset(task, dict(options or {}))
    mon = None
    if record:
        from blursim.sim.monitor import Monitor

        mon = Monitor(sim, record, steps=record_steps)
    res = train_and_evaluate(sim, genomes, data, steps=steps, batch_size=batch_size, replicas=replicas,
                             seed=seed, eval_steps=eval_steps, split=split, monitor=mon)
    acc = np.nan_to_num(res.accuracy, nan=0.0)  # (S, R, E); the simulator's own accuracy
    out = {
        "steps": res.steps,
        "mean": acc.mean(axis=1),
        "std": acc.std(axis=1),
        "diverged": res.diverged.sum(axis=1),
    }
    if mon is not None:
        out["recordings"] = mon.recordings()
    return out


# ---------------------------------------------------------------- meta-training
def run_meta(doc: dict[str, Any], *, generations: int, quiet: bool = False, out: str | Path | None = None):
    """:func:`blursim.meta.meta_train` with a progress bar (silent when not a terminal)."""
    from blursim.meta import meta_train
    from blursim.meta.observers import ProgressBar

    bar = ProgressBar(generations, quiet=quiet or not sys.stderr.isatty())
    return meta_train(doc, out=out, generations=generations, observers=[bar], plot=False)


def seconds_per_generation(doc: dict[str, Any], quick: bool = False) -> float:
    """Measure one generation of ``doc`` (no files written): the basis of the printed estimate.
    A smoke run (``quick``) measures nothing and says 0.05 s."""
    from blursim.meta import meta_train

    if quick:
        return 0.05

    r = meta_train({**doc, "validation": {**doc.get("validation", {}), "every": 10**6}},
                   out=None, generations=1, plot=False)
    return float(r.records[-1]["time"]["seconds"])


def gradient_step_seconds(doc: dict[str, Any], quick: bool = False, steps: int = 2) -> tuple[float, float]:
    """Measure a ``gradient`` experiment's steps (no files written): ``(first, steady)``, the
    first step's seconds (it compiles the unroll) and the mean of the next ``steps``; the basis
    of the printed estimate. A smoke run (``quick``) measures nothing: ``(0.05, 0.05)``."""
    from blursim.meta import prepare_experiment
    from blursim.meta.trainer import make_trainer

    if quick:
        return 0.05, 0.05
    trainer = make_trainer(prepare_experiment({**doc, "validation": {**doc.get("validation", {}), "every": 10**6}}))
    state = trainer.start().state
    t0 = time.perf_counter()
    state = trainer.step(state).state
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        state = trainer.step(state).state
    return first, (time.perf_counter() - t0) / steps


def unroll_factor(doc: dict[str, Any], generations: int) -> float:
    """Mean unroll over ``generations`` relative to the first (curriculum), for the estimate."""
    inner, cur = doc["inner"], doc.get("curriculum")
    t0 = inner["steps"]
    if not cur or generations <= 0:
        return 1.0
    ts = [min(cur.get("max_steps") or 10**9, t0 + cur["increment"] * (g // cur["every"]))
          for g in range(generations)]
    return float(np.mean(ts)) / t0


def curve(records: list[dict]) -> dict[str, list]:
    """The meta-training curve of a run's log records, column-wise."""
    def g(rec, *path):
        for p in path:
            if rec is None:
                return None
            rec = rec.get(p)
        return rec

    cols = {
        "generation": [r["generation"] for r in records],
        "unroll": [r["unroll"] for r in records],
        "fitness_best": [g(r, "fitness", "best") for r in records],
        "fitness_mean": [g(r, "fitness", "mean") for r in records],
        "fitness_median": [g(r, "fitness", "median") for r in records],
        "mean_genome_train": [g(r, "mean", "train_mean") for r in records],
        "mean_genome_validation": [g(r, "mean", "validation_mean") for r in records],
        "best_genome_validation": [g(r, "best", "validation_mean") for r in records],
        "diverged": [r.get("diverged") for r in records],
    }
    return json_ready(cols)


def genome_json(genome) -> str:
    from blursim.spec import dump_json

    return dump_json(genome)


def write_text(path: str | Path, text: str) -> Path:
    """Atomic text write, world-readable (:func:`blursim.io.atomic_write_text`)."""
    path = Path(path)
    atomic_write_text(path, text)
    return path


CORE_FIELDS = ["f", "eta", "f_tilde", "eta_tilde", "nu", "mu", "nu_tilde", "mu_tilde"]
CORE_BOUNDS = {"f_tilde": [0, 1.2], "eta_tilde": [-1, 1]}


def meta_experiment(name: str, network: Any, init: dict, args, *, tasks: list[dict] | None = None,
                    validation_tasks: list[dict] | None = None, fields: list[str] | None = None,
                    bounds: dict | None = None, set_: dict | None = None, inner: dict | None = None,
                    curriculum: dict | None = None, validation: dict | None = None) -> dict:
    """A CMA-ES experiment document (training-split accuracy fitness); ``args`` supplies
    popsize, generations, seed and backend. Defaults: the digits, unroll 10, the eight core
    fields with the bounds of every reproduction script."""
    doc = {
        "format": "blursim.experiment/1",
        "name": name,
        "network": network,
        "training_tasks": tasks if tasks is not None else [{"name": "digits"}],
        "validation_tasks": (validation_tasks if validation_tasks is not None
                             else [{"name": "digits", "label": "digits_test"}]),
        "inner": inner or {"steps": 10, "batch_size": 32, "query_batches": 4, "query_batch_size": 128,
                           "replicas": 1},
        "genome": {"init": init, "fields": list(fields or CORE_FIELDS), "bounds": dict(bounds or CORE_BOUNDS)},
        "strategy": {"name": "cma_es", "sigma0": 0.1, "popsize": args.popsize},
        "fitness": {"metric": "accuracy"},
        "validation": validation or {"every": 10, "replicas": 2},
        "generations": args.generations,
        "seed": args.seed,
        "execution": {"backend": args.backend, "dtype": "float32"},
    }
    if set_:
        doc["genome"]["set"] = dict(set_)
    if curriculum:
        doc["curriculum"] = dict(curriculum)
    return doc


def digits_experiment(name: str, network: dict, init: dict, args) -> dict:
    """A small CMA-ES experiment on the digits (training-split fitness, unroll 10), as used by
    the depth and ablation scripts; ``args`` supplies popsize, generations, seed and backend."""
    return meta_experiment(name, network, init, args)


def mlp_network(name: str, n_in: int, hidden: list[int], n_out: int, *, k: int = 2,
                activation: Any = "relu_tanh", backward_activation: Any = None, output_activation: Any = "tanh",
                normalization: str = "both", rules: dict | None = None) -> dict:
    """A chain network document ``n_in -> hidden... -> n_out`` with the paper's general rule
    family by default (relu o tanh on both passes, normalisation on both passes, additive
    backward update, untied multi-channel synapses, +-1 target feedback, Oja term in
    ``weights`` mode -- which does nothing unless the genome's ``oja_alpha`` is non-zero);
    ``rules`` entries replace the defaults."""
    h = {"role": "hidden", "forward_activation": activation,
         "backward_activation": activation if backward_activation is None else backward_activation,
         "normalization": normalization}
    pops = [{"name": "in", "size": n_in, "role": "input"}]
    pops += [{"name": f"h{i + 1}", **h, "size": w} for i, w in enumerate(hidden)]
    pops += [{"name": "out", "size": n_out, "role": "output", "forward_activation": output_activation,
              "backward_activation": output_activation}]
    projs = [{"from": pops[i]["name"], "to": pops[i + 1]["name"]} for i in range(len(pops) - 1)]
    base = {"backward_update": "additive", "tied": False, "shared_channels": False,
            "feedback": "target", "oja": "weights", "batch_reduction": "mean"}
    return {"format": "blursim.network/1", "name": name, "k": k, "populations": pops, "projections": projs,
            "rules": {**base, **(rules or {})}}


def resized_network(spec, n_in: int | None = None, n_out: int | None = None):
    """A copy of network ``spec`` (a NetworkSpec) with other input and/or output sizes (one
    input and one output population), e.g. to apply a genome to another dataset."""
    from blursim.spec import NetworkSpec

    d = spec.model_dump(mode="json", by_alias=True)
    for p in d["populations"]:
        if p["role"] == "input" and n_in is not None:
            p["size"] = n_in
            p["grid"] = None
        if p["role"] == "output" and n_out is not None:
            p["size"] = n_out
            p["grid"] = None
    return NetworkSpec.model_validate(d)


# ------------------------------------------------------- cells x seeds
def with_seed(args, seed: int):
    """A copy of the parsed ``args`` with another root seed."""
    import argparse

    return argparse.Namespace(**{**vars(args), "seed": seed})


def run_cells(cells: dict[str, Any], seeds: list[int], args, evaluate, desc: str) -> dict[str, list[dict]]:
    """Meta-train every cell for every seed and evaluate each run.

    ``cells`` maps a label to ``make_doc(seed) -> experiment document``; ``evaluate(label,
    result)`` returns a dict of numbers for one run (a :class:`blursim.meta.MetaResult`).
    Returns ``{label: [one dict per seed: seed, final training fitness of the mean genome, its
    meta-training curve, the mean genome, and evaluate's numbers]}``.
    """
    out: dict[str, list[dict]] = {}
    bar = progress(len(cells) * len(seeds), desc, args.quiet, "run")
    for label, make in cells.items():
        for s in seeds:
            res = run_meta(make(s), generations=args.generations, quiet=True)
            # a gradient run (:func:`by_gradient`) measures its current genome only at validation
            # steps: its curve is the training accuracy of each step's own forward pass
            grad = res.records[-1].get("meta_loss") is not None
            extra = {"meta_loss": [r["meta_loss"]["mean"] for r in res.records[1:]]} if grad else {}
            out.setdefault(label, []).append({
                "seed": s, "final_training_fitness": res.records[-1]["mean"]["fitness"],
                "curve": ([r["fitness"]["best"] for r in res.records[1:]] if grad
                          else curve(res.records)["mean_genome_train"]),
                "genome": res.mean_genome.model_dump(mode="json")["groups"], **extra,
                **evaluate(label, res)})
            bar.update(1)
    bar.close()
    return out


def add_gradient_args(p, *, seeds: int, steps: int, learning_rate: float, width: int = 32,
                      replicas: int = 8) -> None:
    """The options of the gradient sweeps (:func:`by_gradient`): ``--seeds``, ``--generations``
    (gradient steps), ``--learning-rate``, ``--sync-runs``, ``--width``, ``--replicas``."""
    p.add_argument("--seeds", type=int, default=seeds, help=f"meta-training seeds per cell (default {seeds})")
    p.add_argument("--generations", type=int, default=steps, help=f"gradient steps per run (default {steps})")
    p.add_argument("--learning-rate", type=float, default=learning_rate,
                   help=f"Adam's meta learning rate (default {learning_rate})")
    p.add_argument("--sync-runs", type=int, default=1, help="synchronised runs per meta-training run (default 1)")
    p.add_argument("--width", type=int, default=width, help=f"hidden width (default {width})")
    p.add_argument("--replicas", type=int, default=replicas, help=f"synapse initialisations (default {replicas})")
    p.set_defaults(popsize=0)  # read by meta_experiment, replaced by by_gradient


def by_gradient(doc: dict[str, Any], args) -> dict[str, Any]:
    """A :func:`meta_experiment` document meta-trained by gradient (paper Sec. 3.3) instead of
    CMA-ES: Adam at ``args.learning_rate`` on the exact meta-gradient of the query batches'
    cross-entropy, clipping 10, ``args.sync_runs`` synchronised runs; the current genome is
    measured on the training split at the last step (``validation.every = generations``). With
    ``args.quick``, a short unroll (:data:`QUICK_GRADIENT_INNER`: it compiles in seconds)."""
    doc["strategy"] = {"name": "gradient", "options": {"learning_rate": args.learning_rate,
                                                       "runs": args.sync_runs}}
    doc["validation"] = {"every": max(1, args.generations), "replicas": 2}
    if getattr(args, "quick", False):
        doc["inner"] = dict(QUICK_GRADIENT_INNER)
    return doc


#: The inner loop of :func:`by_gradient`'s ``--quick`` runs (repro_es_vs_gradient.py's quick one: with 8 hidden
#: neurons its compiled program is shared through the JAX cache).
QUICK_GRADIENT_INNER = {"steps": 3, "batch_size": 32, "query_batches": 2, "replicas": 1}


def cell_table(runs: dict[str, list[dict]], key: str) -> dict[str, Any]:
    """Per cell, the spread over seeds of ``key``; the ranking by mean; and, for every other
    cell, whether its difference from the best cell is larger than the spread
    (:func:`separation`)."""
    stats = {c: spread([r[key] for r in rows]) for c, rows in runs.items()}
    order = sorted(stats, key=lambda c: -stats[c]["mean"])
    best = order[0]
    return {"stats": stats, "ranking": order, "best": best,
            "vs_best": {c: separation(stats[best]["values"], stats[c]["values"]) for c in order[1:]}}


def digits_cells(cells: dict[str, Any], seeds: list[int], args, desc: str, *, eval_steps: int = 10) -> tuple:
    """:func:`run_cells` with the evaluation of the ablation-style sweeps: the initial and the
    final CMA-ES mean genome of each run train fresh copies of the run's own network on the
    digits for ``eval_steps`` steps (test split, ``args.replicas`` initialisations, evaluation
    seed ``1000 + args.seed`` for every run). Returns ``(runs, table)`` with
    :func:`cell_table` of ``final_accuracy`` and, per cell, ``initial`` spreads."""
    seed = 1000 + args.seed

    def evaluate(label, res):
        r = evaluate_genome(res.setup.networks[0], [res.setup.base_genome, res.mean_genome], "digits",
                            steps=eval_steps, replicas=args.replicas, seed=seed, batch_size=32,
                            backend=args.backend, eval_steps="end")
        return {"initial_accuracy": float(r["mean"][0, -1]), "initial_std": float(r["std"][0, -1]),
                "final_accuracy": float(r["mean"][1, -1]), "final_std": float(r["std"][1, -1]),
                "final_diverged_replicas": int(r["diverged"][1])}

    runs = run_cells(cells, seeds, args, evaluate, desc)
    table = cell_table(runs, "final_accuracy")
    table["initial"] = {c: spread([r["initial_accuracy"] for r in rows]) for c, rows in runs.items()}
    table["training_fitness"] = {c: spread([r["final_training_fitness"] for r in rows]) for c, rows in runs.items()}
    return runs, table


def plot_cells(runs: dict, table: dict, path: str | Path, *, title: str, generations: int,
               ylabel: str = "digits test accuracy after 10 steps", order: list[str] | None = None,
               unit: str = "generations") -> Path:
    """Bars of the initial and final accuracy of every cell (final: mean +- std over seeds, one
    dot per seed), in ``order`` (default: ranked); ``unit``: what ``generations`` counts."""
    plt = pyplot()
    order = order or table["ranking"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(order) + 2), 4.2))
    xs = np.arange(len(order))
    ax.bar(xs - 0.2, [table["initial"][c]["mean"] for c in order], 0.4, color="lightgray", label="initial genome")
    n = len(next(iter(runs.values())))
    ax.bar(xs + 0.2, [table["stats"][c]["mean"] for c in order], 0.4, yerr=[table["stats"][c]["std"] for c in order],
           color="tab:blue", capsize=2, label=f"after {generations} {unit} (mean ± std over {n} seeds)")
    for x, c in zip(xs, order):
        ax.scatter(np.full(len(runs[c]), x + 0.2), [r["final_accuracy"] for r in runs[c]], s=6, color="k", zorder=3)
    ax.set_xticks(xs, order, rotation=60, ha="right", fontsize=7)
    ax.set(ylabel=ylabel, ylim=(0, 1), title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)


# ---------------------------------------------------------------- statistics
def spread(values) -> dict[str, Any]:
    """Mean and sample standard deviation (``ddof=1``; 0 for a single value) of per-seed values,
    with the values."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size),
            "values": v.tolist()}


def separation(a, b) -> dict[str, Any]:
    """Is the difference of two cells' per-seed values larger than their spread?

    ``separated`` holds when both (a) the intervals mean +- std (sample standard deviations)
    of the two cells do not overlap and (b) Welch's two-sided t-test gives p < 0.05;
    ``welch_p`` is that p-value (``None`` with fewer than two values per cell or no spread
    at all, and then ``separated`` is false).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = float(a.mean() - b.mean())
    p = None
    if a.size >= 2 and b.size >= 2 and (a.std() > 0 or b.std() > 0):
        import warnings

        from scipy.stats import ttest_ind

        with warnings.catch_warnings():  # nearly equal samples: scipy warns about precision, p is still right
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(ttest_ind(a, b, equal_var=False).pvalue)
    apart = p is not None and abs(d) > float(a.std(ddof=1) + b.std(ddof=1))
    return {"difference": d, "separated": bool(apart and p < 0.05), "welch_p": p}


# ------------------------------------------------- tuned comparison (validation split)
#: Half-decade learning-rate grid 1e-4 .. 10**0.5; :func:`tune_on_validation` extends it upward
#: while a horizon's best rate is the grid's top.
HALF_DECADE = [float(10 ** (e / 2)) for e in range(-8, 2)]
MAX_LR = 1e3


def validation_split(data, fraction: float = 0.2, seed: int = 0):
    """``(tune, final)``: two views of ``data`` that train on the same part of its training split.

    A stratified ``fraction`` of the **training** split (:func:`blursim.data.base.stratified_split`,
    seed ``seed``) is carved off as the validation split: ``tune`` trains on the rest and
    evaluates on it ("test" = validation); ``final`` trains on the same rest and evaluates on the
    untouched test split. Nothing chooses anything on ``final``'s test split.
    """
    from blursim.data import Dataset
    from blursim.data.base import stratified_split

    tr, va = stratified_split(data.y_train, fraction, seed)
    meta = {**data.meta, "validation": {"fraction": fraction, "seed": seed, "n_fit": int(tr.size),
                                        "n_validation": int(va.size)}}
    tune = Dataset(name=data.name, x_train=data.x_train[tr], y_train=data.y_train[tr], x_test=data.x_train[va],
                   y_test=data.y_train[va], n_classes=data.n_classes, meta=meta)
    final = Dataset(name=data.name, x_train=data.x_train[tr], y_train=data.y_train[tr], x_test=data.x_test,
                    y_test=data.y_test, n_classes=data.n_classes, meta=meta)
    return tune, final


def tune_on_validation(prog, tune, *, optimizer: str, lrs, horizons: list[int], batch_size: int,
                       replicas: int, seed: int, max_lr: float = MAX_LR) -> dict[str, Any]:
    """Choose ``optimizer``'s learning rate separately for each horizon by **validation** accuracy
    (``tune`` from :func:`validation_split`) after that many steps, over ``lrs``; while the best
    rate of some horizon is the grid's top, the grid grows by half a decade (up to ``max_lr``), so
    the chosen rate always has a larger neighbour that did worse (unless ``max_lr`` stopped it:
    ``"top_reached"``). Returns ``{"lrs", "validation" (L, H), "selected": {h: lr}, "extended",
    "top_reached"}``."""
    from blursim.baselines import lr_sweep

    lrs = sorted(float(x) for x in lrs)

    def sweep(rates):
        r = lr_sweep(prog, tune, optimizers=[optimizer], lrs=rates, steps=max(horizons), batch_size=batch_size,
                     replicas=replicas, seed=seed, eval_steps=horizons, split="test")
        return list(np.nan_to_num(r.accuracy[0].mean(axis=1), nan=0.0))  # L x (H,)

    rows = sweep(lrs)
    extended = False
    while True:
        top = [int(np.argmax([row[j] for row in rows])) == len(lrs) - 1 for j in range(len(horizons))]
        e = 2 * np.log10(lrs[-1])  # on the half-decade lattice: the next exact power, else x sqrt(10)
        nxt = float(10 ** ((round(e) + 1) / 2)) if abs(e - round(e)) < 1e-9 else lrs[-1] * 10 ** 0.5
        if not any(top) or nxt > max_lr * 1.0001:
            break
        lrs.append(float(nxt))
        rows += sweep([nxt])
        extended = True
    val = np.asarray(rows)  # (L, H)
    sel = {h: lrs[int(np.argmax(val[:, j]))] for j, h in enumerate(horizons)}
    return {"lrs": lrs, "validation": val, "selected": sel, "extended": extended,
            "top_reached": any(sel[h] == lrs[-1] for h in horizons)}


def t_interval(values, level: float = 0.95) -> dict[str, Any]:
    """Mean and two-sided Student-t confidence interval of ``values`` (``None`` bounds for n < 2)."""
    v = np.asarray(values, dtype=float)
    m = float(v.mean())
    if v.size < 2:
        return {"mean": m, "low": None, "high": None, "n": int(v.size)}
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return {"mean": m, "low": m - half, "high": m + half, "n": int(v.size)}


def compare_tuned(methods: dict[str, dict], tasks: dict[str, dict], *, baseline_network, optimizers,
                  lrs=HALF_DECADE, horizons: list[int], replicas: int, seed: int, batch_size: int = 32,
                  validation_fraction: float = 0.2, quiet: bool = True) -> dict[str, Any]:
    """BLUR genomes against SGD / momentum / Adam tuned per horizon on a validation split.

    The older engine (``--engine repro``), kept only to rerun the archived results made with it
    (docs/results/archive): the results page's comparisons use :func:`compare_zoo`.

    ``methods``: label -> ``{"network": NetworkSpec (any in/out sizes), "genomes": [genome, ...]}``
    (e.g. one genome per meta-training seed). ``tasks``: label -> ``{"dataset", "options",
    "horizons" (optional, else ``horizons``)}``. Per task: networks resized to its inputs and
    classes; :func:`validation_split` carves the validation split; every method and baseline
    trains on the same fitting part with the batches and initial weights of seed ``seed``
    (``replicas`` initialisations) and is scored on the test split; each optimizer's rate is
    chosen per horizon by :func:`tune_on_validation` on ``baseline_network`` (its state-0 path).

    Per-seed differences: for each method, genome (seed) ``g`` and horizon ``h``, BLUR's test
    accuracy (mean over the initialisations) minus the tuned optimizer's (mean over the same
    initialisations); ``"over_seeds"`` is the t-interval over genomes, ``"over_inits"`` the
    t-interval over initialisations of the genome-mean minus the optimizer, paired by
    initialisation. Returns ``{task: {...}}`` (JSON-ready after :func:`blursim.io.json_ready`).
    """
    from blursim.baselines import train_baseline
    from blursim.data import load_dataset
    from blursim.graph import compile_network
    from blursim.sim import Simulator, train_and_evaluate

    out = {}
    n = len(tasks) * (len(methods) + len(optimizers))
    bar = progress(n, "comparison", quiet, "run")
    for tname, t in tasks.items():
        hs = sorted(t.get("horizons", horizons))
        data = load_dataset(t["dataset"], dict(t.get("options", {})))
        tune, final = validation_split(data, validation_fraction, seed)
        entry: dict[str, Any] = {"dataset": t["dataset"], "options": dict(t.get("options", {})), "horizons": hs,
                                 "n_fit": final.n_train, "n_validation": tune.n_test, "n_test": final.n_test,
                                 "n_classes": data.n_classes, "methods": {}, "baselines": {}, "differences": {}}
        for label, m in methods.items():
            spec = resized_network(m["network"], data.n_features, data.n_classes)
            sim = Simulator(compile_network(spec), backend="numpy", dtype="float32")
            r = train_and_evaluate(sim, list(m["genomes"]), final, steps=max(hs), batch_size=batch_size,
                                   replicas=replicas, seed=seed, eval_steps=hs, split="test")
            acc = np.nan_to_num(r.accuracy, nan=0.0)  # (G, R, H)
            entry["methods"][label] = {"test": acc, "per_seed": acc.mean(axis=1),
                                       "diverged": r.diverged.sum(axis=1)}
            bar.update(1)
        prog = compile_network(resized_network(baseline_network, data.n_features, data.n_classes))
        for opt in optimizers:
            tv = tune_on_validation(prog, tune, optimizer=opt, lrs=lrs, horizons=hs, batch_size=batch_size,
                                    replicas=replicas, seed=seed)
            test = np.zeros((replicas, len(hs)))
            for lr in sorted(set(tv["selected"].values())):
                r = train_baseline(prog, final, opt, lr, steps=max(hs), batch_size=batch_size, replicas=replicas,
                                   seed=seed, eval_steps=hs, split="test")
                a = np.nan_to_num(r.accuracy, nan=0.0)  # (R, H)
                for j, h in enumerate(hs):
                    if tv["selected"][h] == lr:
                        test[:, j] = a[:, j]
            entry["baselines"][opt] = {**tv, "selected": {str(h): v for h, v in tv["selected"].items()},
                                       "test": test, "test_mean": test.mean(axis=0)}
            bar.update(1)
        for label, mres in entry["methods"].items():
            acc = mres["test"]
            entry["differences"][label] = {
                opt: {str(h): {"over_seeds": t_interval(acc[:, :, j].mean(axis=1) - b["test"][:, j].mean()),
                               "over_inits": t_interval(acc[:, :, j].mean(axis=0) - b["test"][:, j])}
                      for j, h in enumerate(hs)}
                for opt, b in entry["baselines"].items()}
        out[tname] = entry
    bar.close()
    return out


def explicit(argv, flag: str, current: Any) -> Any:
    """The value of ``flag`` when the command line (``argv``, default ``sys.argv[1:]``) gives it,
    else ``current``: a ``--quick`` run keeps an explicit ``--runs 1`` / ``--seeds 1`` (so a
    one-run smoke test is possible) while choosing its own sizes otherwise."""
    import argparse

    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(flag, dest="value", nargs="+", default=None)
    known, _ = p.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if known.value is None:
        return current
    vals = [type(current[0] if isinstance(current, list) else current)(v) for v in known.value]
    return vals if isinstance(current, list) else vals[0]


#: evaluation seeds of :func:`compare_zoo` (``seed``, ``seed + 1``, ...)
ZOO_EVAL_SEEDS = 2


def compare_zoo(methods: dict[str, dict], tasks: dict[str, dict], *, baseline_network, optimizers,
                presets=(), lrs=HALF_DECADE, horizons: list[int], replicas: int, seed: int, batch_size: int = 32,
                validation_fraction: float = 0.2, eval_seeds: int = ZOO_EVAL_SEEDS, curve_steps=(),
                sweep: bool = False, quiet: bool = True) -> dict[str, Any]:
    """BLUR genomes against tuned optimizers and rules of the zoo, made by the rule zoo's
    ``blursim.compare.compare`` (issue 21); :func:`compare_tuned`'s arguments and result shape,
    so a script swaps one call for the other.

    ``methods``: label -> ``{"network": NetworkSpec, "genomes": [genome, ...]}`` (e.g. one genome
    per meta-training seed; each genome is its own entry). ``optimizers`` (SGD, momentum, Adam, ...)
    run on ``baseline_network``'s plain net, ``presets`` (rules of the zoo, e.g.
    ``feedback_alignment``) on ``baseline_network`` itself with the preset's rules applied; both
    are ``"baselines"`` (keyed by their name), their rate tuned separately for each horizon on a
    validation split carved from the training split (``validation_fraction``, carve seed
    ``seed``; highest validation accuracy, ties by the lowest validation cross-entropy, grid
    ``lrs`` extended at an edge), then trained on the *whole* training split and scored on the
    test split, in float64, like every genome. The unit of the statistics is an evaluation seed
    (``eval_seeds`` of them, seeds ``seed ..``, each ``max(1, replicas // eval_seeds)``
    initialisations): ``"test"`` holds per-evaluation-seed means (methods ``(G, seeds, H)``,
    baselines ``(seeds, H)``), ``"over_inits"`` is over evaluation seeds, ``"over_seeds"`` the
    t-interval over genomes. ``curve_steps``/``sweep``: test curves
    (:attr:`blursim.compare.CompareResult.curves`) under ``"curves"`` of every method (one per
    genome) and baseline."""
    from blursim.compare import Entry, Task, compare
    from blursim.data import load_dataset

    seeds = [seed + i for i in range(eval_seeds)]
    reps = max(1, replicas // eval_seeds)
    bar = progress(len(tasks) * (len(methods) + 1), "comparison", quiet, "run")
    out = {}
    for tname, t in tasks.items():
        hs = sorted(t.get("horizons", horizons))
        task = Task(t["dataset"], dict(t.get("options", {})))
        data = load_dataset(t["dataset"], dict(t.get("options", {})))
        tune, final = validation_split(data, validation_fraction, seed)
        common = dict(horizons=hs, seeds=seeds, replicas=reps, batch_size=batch_size, grid=list(lrs),
                      val_fraction=validation_fraction, val_seed=seed, curve_steps=list(curve_steps), sweep=sweep)
        entry: dict[str, Any] = {"dataset": t["dataset"], "options": dict(task.options), "horizons": hs,
                                 "n_fit": data.n_train, "n_validation": tune.n_test, "n_test": data.n_test,
                                 "n_classes": data.n_classes, "methods": {}, "baselines": {}, "differences": {},
                                 "engine": "blursim.compare (zoo)"}

        def cells(res, title):
            rows = {r["horizon"]: r for r in res.rows if r["entry"] == title}
            return rows, np.array([rows[h]["per_seed"] for h in hs]).T  # (seeds, H)

        for label, m in methods.items():
            spec = resized_network(m["network"], data.n_features, data.n_classes)
            ents = [Entry("genome", f"g{i}", genome=g, label=f"{label} #{i}") for i, g in enumerate(m["genomes"])]
            res = compare(spec, ents, [task], **common)
            test = np.stack([cells(res, e.title)[1] for e in ents])  # (G, seeds, H)
            entry["methods"][label] = {"test": test, "per_seed": test.mean(axis=1),
                                       "diverged": [sum(cells(res, e.title)[0][h]["diverged"] for h in hs)
                                                    for e in ents],
                                       "curves": [res.curves[f"{task.title}/{e.title}"] for e in ents]}
            bar.update(1)
        spec = resized_network(baseline_network, data.n_features, data.n_classes)
        ents = [Entry("optimizer", o) for o in optimizers] + [Entry("preset", p, label=p) for p in presets]
        res = compare(spec, ents, [task], **common)
        for e in ents:
            rows, test = cells(res, e.title)
            tuning = res.tuning[f"{task.title}/{e.title}"]
            entry["baselines"][e.name] = {
                "kind": e.kind, "lrs": tuning["lrs"], "validation": np.asarray(tuning["validation_accuracy"]),
                "validation_cross_entropy": tuning["validation_cross_entropy"],
                "selected": {str(h): rows[h]["lr"] for h in hs}, "extended": bool(tuning["extended"]),
                "test": test, "top_reached": any(rows[h]["lr"] == tuning["lrs"][-1] for h in hs),
                "test_mean": test.mean(axis=0), "curves": res.curves[f"{task.title}/{e.title}"],
                "spec_changes": res.spec_changes.get(f"{task.title}/{e.title}", [])}
        bar.update(1)
        for label, mres in entry["methods"].items():
            acc = mres["test"]
            entry["differences"][label] = {
                o: {str(h): {"over_seeds": t_interval(acc[:, :, j].mean(axis=1) - b["test"][:, j].mean()),
                             "over_inits": t_interval(acc[:, :, j].mean(axis=0) - b["test"][:, j])}
                    for j, h in enumerate(hs)}
                for o, b in entry["baselines"].items()}
        out[tname] = entry
    bar.close()
    return out


def script_main(main, argv=None) -> int:
    """Run a script's ``main``; bad input (a :class:`blursim.errors.BlursimError`) is one line on
    stderr and exit status 2, never a traceback."""
    from blursim.errors import BlursimError

    try:
        return main(argv)
    except BlursimError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def zoo_selection(validation_fraction: float = 0.2) -> str:
    """How :func:`compare_zoo` chose each rate, in one line (the ``selection`` field of the JSONs)."""
    return (f"blursim.compare: validation split ({validation_fraction:.0%} of the training split, the rest "
            "trains), highest validation accuracy per horizon (ties: lowest validation cross-entropy), "
            "half-decade grid extended at an edge; then trained on the whole training split")


def cell_at(curve: dict, lr: float | None, step: int, key: str = "mean") -> float:
    """One value of a :attr:`blursim.compare.CompareResult.curves` record: ``key`` (``mean`` or
    ``sd_over_inits``) at learning rate ``lr`` after ``step`` training steps."""
    return float(curve[key][curve["lrs"].index(lr)][curve["steps"].index(step)])


#: ``--engine``: the comparison behind a script's baselines (same arguments, same result shape).
ENGINES = {"zoo": compare_zoo, "repro": compare_tuned}


def add_engine_arg(p, default: str = "zoo") -> None:
    """``--engine zoo|repro`` for a script that compares against tuned optimizers."""
    p.add_argument("--engine", choices=list(ENGINES), default=default,
                   help=f"(default {default}) zoo: the rule zoo's blursim compare (issue 21; rates tuned per horizon "
                        "on a validation split carved from the training split, then the chosen rate and every "
                        "genome train on the whole training split, float64, two evaluation seeds) through "
                        "repro_common.compare_zoo; repro: the older repro_common.compare_tuned (everything "
                        "trains on the 80 %% fitting part, float32, one evaluation seed)")


def engine_seeds(engine: str, seed: int) -> int | list[int]:
    """The evaluation seed(s) ``--engine`` uses for evaluation seed ``seed`` (for the JSON's ``seeds``)."""
    return seed if engine == "repro" else [seed + i for i in range(ZOO_EVAL_SEEDS)]
