"""Helpers shared by sub-commands: task options, genome selection, atomic writes."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from blursim.errors import BlursimError, SpecError
from blursim.io import atomic_write_text, json_ready  # noqa: F401  (re-exported for commands)


def parse_options(pairs: list[str] | None, flag: str = "--task-opt") -> dict[str, Any]:
    """``["seed=3", "classes=[0,1]"]`` -> ``{"seed": 3, "classes": [0, 1]}`` (values parsed as JSON)."""
    out: dict[str, Any] = {}
    for item in pairs or []:
        if "=" not in item:
            raise SpecError(f"{flag} expects KEY=VALUE", value=item, path=flag)
        key, val = item.split("=", 1)
        try:
            out[key] = json.loads(val)
        except json.JSONDecodeError:
            out[key] = val
    return out


def add_genome_args(p) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--genome", metavar="FILE", help="genome JSON file")
    g.add_argument("--preset", metavar="NAME", help="genome preset: backprop or random")
    p.add_argument("--lr", type=float, default=None,
                   help="eta_tilde of the backprop preset (default 0.1)")
    p.add_argument("--genome-seed", type=int, default=0, help="seed of the random preset")


def add_backend_args(p) -> None:
    p.add_argument("--backend", choices=["numpy", "cupy"], default=None,
                   help="array backend (default: $BLURSIM_BACKEND or numpy)")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None,
                   help="floating point precision (default float32)")


def genome_from_args(args, program):
    from blursim.genome import make_preset
    from blursim.spec import load_genome

    if args.genome:
        return load_genome(args.genome)
    kw = {}
    if args.lr is not None:
        if not math.isfinite(args.lr) or abs(args.lr) > 1e30:
            raise SpecError("--lr must be a finite number", value=args.lr, path="--lr")
        kw["lr"] = args.lr
    return make_preset(args.preset, k=program.k, groups=program.groups, seed=args.genome_seed, **kw)


def ensure_writable_dir(path: str | Path) -> Path:
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise BlursimError(f"{p} exists and is not a directory; choose another output directory.")
    p.mkdir(parents=True, exist_ok=True)
    return p


def print_json(obj: Any) -> None:
    """``obj`` as strict JSON on stdout: NaN and infinities become ``null`` (never ``NaN`` or
    ``Infinity``, which JSON does not have)."""
    json.dump(json_ready(obj), sys.stdout, indent=2, allow_nan=False)
    print()


def require_memory(spec: Any, *, batch: int, rows: int = 0, replicas: int = 1, genomes: int = 1,
                   dtype: str | None = "float32", source: str | None = None, flag: str = "--batch") -> None:
    """Refuse, before anything is allocated, a run of ``genomes`` x ``replicas`` networks that
    cannot fit this machine (:func:`blursim.graph.memory.estimate`; ``rows``: the largest
    evaluation batch, e.g. a whole test split)."""
    import numpy as np

    from blursim.graph.memory import estimate, require

    itemsize = np.dtype(dtype or "float32").itemsize
    est = estimate(spec, batch=max(batch, rows), itemsize=itemsize)
    what = (f"training {genomes} network(s) x {replicas} replica(s) with batches of {batch}"
            + (f" and evaluating {rows} rows at once" if rows > batch else ""))
    try:
        require(est.total(genomes, replicas), what=what, path=flag,
                hint=f"Use a smaller {flag} or fewer replicas.")
    except SpecError as e:
        raise type(e)(e.message, path=e.path, hint=e.hint, source=source) from None


def _flag_ranges() -> dict[str, tuple[float, float]]:
    from blursim import limits as L

    return {  # inclusive, as for the same numbers in documents (docs/design.md, "Limits")
        "steps": (0, L.MAX_STEPS), "batch": (1, L.MAX_BATCH), "replicas": (1, L.MAX_REPLICAS),
        "eval_every": (1, L.MAX_STEPS), "seed": (0, L.MAX_SEED), "genome_seed": (0, L.MAX_SEED),
        "generations": (0, L.MAX_GENERATIONS), "query_batches": (1, L.MAX_QUERY_BATCHES),
        "dask_workers": (1, L.MAX_LOCAL_WORKERS), "dask_timeout": (1e-3, 3600.0),
        "memory_budget": (1e-6, L.MAX_MEMORY_BUDGET_MB), "metric_states": (0, 1000), "metric_max_n": (0, 10_000),
    }


def check_flags(args: Any) -> None:
    """Refuse a numeric command-line flag outside its range (or NaN, or infinite) before any work:
    the same limits as the same numbers in a document."""
    for name, (lo, hi) in _flag_ranges().items():
        v = getattr(args, name, None)
        if v is None or isinstance(v, (str, bool)):
            continue
        if not math.isfinite(v) or not lo <= v <= hi:
            flag = "--" + name.replace("_", "-")
            lo_text = f"{lo:g}" if isinstance(lo, float) else str(lo)
            raise SpecError(f"{flag} must be in {lo_text}..{hi:g}", value=v, path=flag)
