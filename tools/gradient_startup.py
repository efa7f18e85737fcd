#!/usr/bin/env python
"""Start-up of a gradient meta-training run in fresh processes, with and without JAX's persistent
compilation cache (issue 25 item 3; docs/benchmarks.md, "Compile once").

    python tools/gradient_startup.py                       # the toy gradient run, 1 step
    python tools/gradient_startup.py --processes 3 --experiment specs/experiments/toy_gradient.json

Runs ``blursim meta-train EXPERIMENT --generations 1`` once with the cache off, then
``--processes`` times with one new, empty cache directory (the first fills it, the others
read it), each in a fresh process, and prints each process's wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one(experiment: str, cache: str) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one fresh ``meta-train`` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, BLURSIM_JAX_CACHE=cache)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "blursim", "meta-train", experiment, "--generations", "1",
                        "--quiet", "--out", str(Path(out) / "run")], check=True, env=env, cwd=ROOT)
        wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", default=str(ROOT / "specs" / "experiments" / "toy_gradient.json"))
    p.add_argument("--processes", type=int, default=2, help="processes sharing one cache (default 2)")
    args = p.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    wall, cpu = one(args.experiment, "off")
    print(f"cache off:            wall {wall:6.1f} s, CPU {cpu:6.1f} s")
    with tempfile.TemporaryDirectory() as cache:
        for i in range(args.processes):
            wall, cpu = one(args.experiment, cache)
            what = "empty cache" if i == 0 else f"cached, process {i + 1}"
            print(f"{what + ':':<21} wall {wall:6.1f} s, CPU {cpu:6.1f} s")
        n = len(list(Path(cache).glob("*-cache")))
        print(f"cache: {n} programs")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
