#!/usr/bin/env python
"""Two commits' simulators timed in the same minutes, alternating (issue 13: "no slower than before").

A shared machine drifts by tens of percent from one minute to the next, so two benchmark runs
made at different times cannot say whether a change made a step slower. This script alternates
short measurement processes of an OLD and a NEW checkout (old-new, new-old, old-new, ...), each
timing the ``paper-es`` training step, forward pass and products-only step of
:mod:`blursim.cli.bench` at every ``S``, and reports per key the median of each side and the
median of the back-to-back pair ratios ``new / old``. It also runs each checkout once in one
process for ``--steps`` steps at ``S = 1`` (the steadiest number a single process gives).

    git worktree add /tmp/old <commit>
    python tools/bench_ab.py --old /tmp/old --new . --pairs 5 --species 1,8,80 --out ab.json

Both checkouts must have ``blursim.cli.bench.Workload``, ``PAPER_ES``, ``products_only`` and
``_time`` (every commit since the products-only rows).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

KINDS = ("train", "forward", "products")


def measure(species: list[int], seconds: float, steps: int) -> dict:
    """Run in a child process, inside one checkout: milliseconds per step by key."""
    from blursim.backend import get_backend
    from blursim.cli import bench

    be = get_backend("numpy", "float32")
    out = {}
    for S in species:
        w = bench.Workload(bench.PAPER_ES, S, be)
        for kind in KINDS:
            fn, reset = bench.products_only(w) if kind == "products" else w.step_fn(kind == "train")
            ts = bench._time(fn, be, seconds, reset=reset, max_reps=2000)
            out[f"{kind} S={S}"] = 1e3 * statistics.median(ts)
    if steps:
        fn, _ = bench.Workload(bench.PAPER_ES, 1, be).step_fn(True)
        for _ in range(20):
            fn()
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        out[f"train S=1, {steps} steps in one loop"] = 1e3 * (time.perf_counter() - t0) / steps
    return out


def child(checkout: Path, args, steps: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--species", args.species,
           "--seconds", str(args.seconds), "--steps", str(steps)]
    res = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        sys.exit(f"bench_ab: the measurement in {checkout} failed: {res.stderr.strip().splitlines()[-1:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", type=Path, help="checkout of the old commit")
    p.add_argument("--new", type=Path, default=Path("."), help="checkout of the new commit (default .)")
    p.add_argument("--pairs", type=int, default=5, help="old/new pairs, alternating order (default 5)")
    p.add_argument("--species", default="1,8,80", help="comma-separated S (default 1,8,80)")
    p.add_argument("--seconds", type=float, default=1.5, help="seconds per timed row (default 1.5)")
    p.add_argument("--steps", type=int, default=1000, help="steps of the one-loop S = 1 timing (0: none)")
    p.add_argument("--out", type=Path, help="write every sample and the summary as JSON")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        species = [int(s) for s in args.species.split(",")]
    except ValueError:
        p.error(f"--species: {args.species!r} is not a comma-separated list of integers")
    if args.pairs < 1 or args.seconds <= 0 or args.steps < 0 or min(species) < 1:
        p.error("--pairs and --species must be >= 1, --seconds > 0, --steps >= 0")
    if args.child:
        print(json.dumps(measure(species, args.seconds, args.steps)))
        return 0
    if args.old is None:
        p.error("--old is required")
    for d in (args.old, args.new):
        if not (d / "blursim" / "cli" / "bench.py").is_file():
            p.error(f"{d}: not a blursim checkout (no blursim/cli/bench.py)")
    samples = {"old": [], "new": []}
    for i in range(args.pairs):
        for side in ("old", "new") if i % 2 == 0 else ("new", "old"):
            samples[side].append(child(getattr(args, side).resolve(), args, args.steps if i == 0 else 0))
            print(f"pair {i + 1} {side}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in samples[side][-1].items()),
                  flush=True)
    summary = {}
    for key in samples["old"][0]:
        o = [s[key] for s in samples["old"] if key in s]
        n = [s[key] for s in samples["new"] if key in s]
        summary[key] = {"old_ms": statistics.median(o), "new_ms": statistics.median(n),
                        "pair_ratios": [b / a for a, b in zip(o, n)],
                        "new_over_old": statistics.median([b / a for a, b in zip(o, n)])}
        print(f"{key:34s} old {summary[key]['old_ms']:9.2f} ms  new {summary[key]['new_ms']:9.2f} ms  "
              f"new/old (median of pairs) {summary[key]['new_over_old']:.3f}")
    if args.out:
        doc = {"old": str(args.old), "new": str(args.new), "pairs": args.pairs, "species": species,
               "seconds": args.seconds, "samples": samples, "summary": summary,
               "time": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
