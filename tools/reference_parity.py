"""Measure the parity of the reference step (blursim.sim.reference) with the Simulator.

Runs the property test's comparison (tests/test_reference_step.py: drawn
specs, rules, genomes, S, R, 3-5 steps, evaluation) on N Hypothesis examples
and prints the largest relative difference seen, rel = max|a - b| / max|b|
per array: step-wise (the reference step from the Simulator's state before each
step) and free-running (each from the same initial synapses), and the smallest
difference a 1e-6 genome perturbation caused.

    PYTHONPATH=$PWD python tools/reference_parity.py --examples 2000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import numpy as np  # noqa: E402
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

from test_reference_step import TOL, parity, parity_cases  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0, help="seed of Hypothesis' random draws")
    args = ap.parse_args(argv)
    seen = {"n": 0, "worst": 0.0, "where": "", "mutant_min": float("inf"), "options": {},
            "truncated": 0, "no_step_compared": 0, "trivial": 0, "steps": 0, "free": 0.0,
            "free_where": "", "ratio": 0.0, "free_ratio": 0.0, "tol": 0.0, "free_tol": 0.0,
            "raised": 0, "free_raised": 0}

    @seed(args.seed)
    @settings(max_examples=args.examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=parity_cases())
    def run(case):
        res = parity(case)
        seen["n"] += 1
        seen["steps"] += res["steps"]
        if res["rel"] > seen["worst"]:
            seen["worst"], seen["where"] = res["rel"], res["where"]
        if res["free"]["rel"] > seen["free"]:
            seen["free"], seen["free_where"] = res["free"]["rel"], res["free"]["where"]
        for key, r in (("ratio", res["ratio"]), ("free_ratio", res["free"]["ratio"]),
                       ("tol", res["tol"]), ("free_tol", res["free"]["tol"])):
            seen[key] = max(seen[key], r)
        seen["raised"] += res["tol"] > TOL
        seen["free_raised"] += res["free"]["tol"] > TOL
        seen["truncated"] += res["steps"] < res["T"]
        seen["no_step_compared"] += res["steps"] == 0
        seen["trivial"] += res["trivial"]
        if res["steps"] and not res["trivial"]:
            seen["mutant_min"] = min(seen["mutant_min"], res["mutant"])
        for key, v in case["spec"]["rules"].items():
            if key != "synapse_init":
                seen["options"].setdefault(f"{key}={v}", 0)
                seen["options"][f"{key}={v}"] += 1

    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        run()
    out = {"examples": seen["n"], "max_rel_diff_stepwise": seen["worst"], "where": seen["where"],
           "base_tolerance": TOL, "max_rel_over_tolerance_stepwise": seen["ratio"],
           "examples_with_a_raised_tolerance_stepwise": seen["raised"], "largest_tolerance_stepwise": seen["tol"],
           "max_rel_diff_free_running": seen["free"], "free_where": seen["free_where"],
           "max_rel_over_tolerance_free_running": seen["free_ratio"],
           "examples_with_a_raised_tolerance_free_running": seen["free_raised"],
           "largest_tolerance_free_running": seen["free_tol"],
           "min_mutant_rel_over_tolerance": seen["mutant_min"],
           "compared_steps": seen["steps"],
           "stopped_early_nonfinite": seen["truncated"], "nothing_compared": seen["no_step_compared"],
           "all_zero": seen["trivial"],
           "seconds": round(time.perf_counter() - t0, 1), "option_counts": dict(sorted(seen["options"].items()))}
    print(json.dumps(out, indent=1))
    return 0 if seen["ratio"] <= 1 and seen["free_ratio"] <= 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
