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
    g.add_argument("--preset", metavar="NAME",
                   help="genome preset (blursim list presets): backprop, hebbian, oja, random")
    p.add_argument("--apply-preset-rules", action="store_true",
                   help="run the preset with the rules it needs (printed) where the spec's rules differ; "
                        "without it such a spec is refused with the list of changes")
    p.add_argument("--lr", type=float, default=None,
                   help="eta_tilde of the backprop (default 0.1), hebbian and oja (default 0.01) presets")
    p.add_argument("--genome-seed", type=int, default=0, help="seed of the random preset")


def add_backend_args(p) -> None:
    p.add_argument("--backend", choices=["numpy", "cupy", "jax"], default=None,
                   help="array backend: numpy, cupy, or the JAX engine (pip install -e \".[jax]\"); "
                   "default: $BLURSIM_BACKEND or numpy")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None,
                   help="floating point precision (default float32)")


def network_for_genome(args, spec, source: str | None = None):
    """The network spec to run ``--preset NAME`` on: ``spec`` itself when it has the rules the
    preset needs (or with ``--genome``); with ``--apply-preset-rules`` the spec with the
    preset's rules applied, the changes printed (on stderr with ``--json``); otherwise a
    one-line error naming every change (:func:`blursim.genome.requirements.preset_spec`)."""
    from blursim.genome.requirements import describe_changes, preset_spec

    preset = getattr(args, "preset", None)
    if not preset:
        return spec
    spec, changes = preset_spec(preset, spec, apply_rules=getattr(args, "apply_preset_rules", False),
                                source=source)
    if changes:
        print(f"# preset {preset}: applied the rules it needs: {describe_changes(changes)}",
              file=sys.stderr if getattr(args, "json", False) else sys.stdout, flush=True)
    return spec


def load_genome_for(path: str, program):
    """The genome document ``path``, which must define every genome group ``program`` uses (the
    error names the file; the simulator, which would refuse it later, knows no file)."""
    from blursim.spec import load_genome

    genome = load_genome(path)
    missing = [g for g in program.groups if g not in genome.groups]
    if missing:
        raise SpecError(f"the network uses genome group {missing[0]!r}, which the genome does not define",
                        source=path, path="$.groups", choices=genome.groups,
                        hint="Add that group to the genome file or change the spec's genome fields.")
    return genome


def genome_from_args(args, program):
    """The genome of ``--genome FILE`` or ``--preset NAME`` for ``program``. A preset on a
    program whose rules it does not have is refused (commands that accept
    ``--apply-preset-rules`` apply them first, with :func:`network_for_genome`)."""
    from blursim.genome import make_preset
    from blursim.genome.requirements import preset_spec

    if args.genome:
        return load_genome_for(args.genome, program)
    preset_spec(args.preset, program.spec, source=getattr(args, "spec", None))
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
