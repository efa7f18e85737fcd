"""Shared helpers of the reproduction scripts ``tools/repro_*.py``.

Every script records, next to its numbers, the exact command line, the seeds,
the wall time and the machine (CPU model, cores, library versions, git
commit; :mod:`blursim.machine`), and writes its files atomically
(:mod:`blursim.io`).
"""

from __future__ import annotations

import json
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
def machine() -> dict[str, Any]:
    import blursim

    return {
        "cpu": cpu_model(),
        "cores": usable_cpus(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blursim": getattr(blursim, "__version__", "unknown"),
        "platform": platform.platform(),
        **git_commit(),
    }


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
                    eval_steps: Any = "all", split: str = "test") -> dict[str, Any]:
    """Held-out accuracy of ``genome`` (or a list of genomes) trained from fresh synapses on ``task``.

    Returns ``{"steps", "mean" (S, E), "std" (S, E), "diverged" (S,)}`` over
    ``replicas`` initialisations, with the dataset drawn from ``seed`` too.
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
    res = train_and_evaluate(sim, genomes, data, steps=steps, batch_size=batch_size, replicas=replicas,
                             seed=seed, eval_steps=eval_steps, split=split)
    acc = np.nan_to_num(res.accuracy, nan=0.0)  # (S, R, E); the simulator's own accuracy
    return {
        "steps": res.steps,
        "mean": acc.mean(axis=1),
        "std": acc.std(axis=1),
        "diverged": res.diverged.sum(axis=1),
    }


# ---------------------------------------------------------------- meta-training
def run_meta(doc: dict[str, Any], *, generations: int, quiet: bool = False, out: str | Path | None = None):
    """:func:`blursim.meta.meta_train` with a progress bar (silent when not a terminal)."""
    from blursim.meta import meta_train
    from blursim.meta.observers import ProgressBar

    bar = ProgressBar(generations, quiet=quiet or not sys.stderr.isatty())
    return meta_train(doc, out=out, generations=generations, observers=[bar], plot=False)


def seconds_per_generation(doc: dict[str, Any]) -> float:
    """Measure one generation of ``doc`` (no files written): the basis of the printed estimate."""
    from blursim.meta import meta_train

    r = meta_train({**doc, "validation": {**doc.get("validation", {}), "every": 10**6}},
                   out=None, generations=1, plot=False)
    return float(r.records[-1]["time"]["seconds"])


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


def digits_experiment(name: str, network: dict, init: dict, args) -> dict:
    """A small CMA-ES experiment on the digits (training-split fitness, unroll 10), as used by
    the depth and ablation scripts; ``args`` supplies popsize, generations, seed and backend."""
    return {
        "format": "blursim.experiment/1",
        "name": name,
        "network": network,
        "training_tasks": [{"name": "digits"}],
        "validation_tasks": [{"name": "digits", "label": "digits_test"}],
        "inner": {"steps": 10, "batch_size": 32, "query_batches": 4, "query_batch_size": 128, "replicas": 1},
        "genome": {"init": init,
                   "fields": ["f", "eta", "f_tilde", "eta_tilde", "nu", "mu", "nu_tilde", "mu_tilde"],
                   "bounds": {"f_tilde": [0, 1.2], "eta_tilde": [-1, 1]}},
        "strategy": {"name": "cma_es", "sigma0": 0.1, "popsize": args.popsize},
        "fitness": {"metric": "accuracy"},
        "validation": {"every": 10, "replicas": 2},
        "generations": args.generations,
        "seed": args.seed,
        "execution": {"backend": args.backend, "dtype": "float32"},
    }
