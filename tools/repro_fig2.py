#!/usr/bin/env python
"""Fig. 2 analogue (paper Sec. 3.5) for the best learned genome: is its update rule a
gradient descent? ``ln |dDw_k/dw_m - dDw_m/dw_k|`` on xor, a two-state network with one
hidden layer of 20.

Runs the analysis engineer's ``tools/fig2_xor.py`` (blursim.analysis:
``BlurUpdateMap`` and friends) with ``--genome`` = the genome selected by
``tools/repro_toy.py`` (``docs/results/repro_toy_genome.json``: the toy run with the
highest final *training* fitness), next to the backprop genome, and files its
figure and numbers under the reproduction's names.

    python tools/repro_fig2.py                  # about a minute on 2 cores (needs repro_toy's genome)
    python tools/repro_fig2.py --genome FILE
    python tools/repro_fig2.py --quick          # skips the App. A metric search

Writes docs/figures/repro_fig2.png and docs/results/repro_fig2.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import repro_common as rc

NAME = "repro_fig2"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rc.add_common_args(p, NAME)
    p.add_argument("--genome", default=str(rc.RESULTS / "repro_toy_genome.json"),
                   help="genome to analyse (default: docs/results/repro_toy_genome.json from repro_toy.py)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    timer = rc.Timer()
    genome = Path(args.genome)
    if not genome.exists():
        print(f"repro_fig2: {genome} does not exist; run tools/repro_toy.py first (or pass --genome FILE)",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import fig2_xor

    try:
        gname = str(genome.resolve().relative_to(rc.ROOT))
    except ValueError:
        gname = str(genome)
    fig_args = ["--genome", gname, "--seed", str(args.seed)]
    if args.quick:
        fig_args += ["--no-appendix-a", "--batch", "16"]
    rc.estimate("Fig. 2 Jacobians (complex step) of the learned and the backprop genome"
                + ("" if args.quick else " + App. A metric search"), 20 if args.quick else 90)
    with tempfile.TemporaryDirectory(dir=Path(args.out).resolve().parent if Path(args.out).parent.exists()
                                     else None) as tmp:
        buf = io.StringIO()
        cwd = os.getcwd()
        os.chdir(rc.ROOT)
        try:
            with contextlib.redirect_stdout(buf):
                rc_code = fig2_xor.main(fig_args + ["--out-dir", tmp])
        finally:
            os.chdir(cwd)
        print(buf.getvalue(), end="")
        if rc_code:
            return rc_code
        numbers = json.loads((Path(tmp) / "fig2_xor.json").read_text())
        fig_path = Path(args.fig_dir) / f"{NAME}.png"
        fig_path.parent.mkdir(parents=True, exist_ok=True)
        staged = fig_path.with_name(f".{fig_path.name}.tmp")
        shutil.copyfile(Path(tmp) / "fig2_xor.png", staged)
        os.replace(staged, fig_path)
    pl = numbers["panels"]
    summary = {k: {"genome": v.get("genome"), "n": v.get("n"), "rel_asymmetry": v.get("rel_asymmetry"),
                   "rel_noise_floor": v.get("rel_noise_floor"), "margin": v.get("margin"),
                   "circulation_slope": (v.get("circulation") or {}).get("slope")}
               for k, v in pl.items()}
    results = {"genome": gname, "summary": summary, "appendix_a": numbers.get("appendix_a"),
               "fig2_xor_numbers": numbers,
               "paper": "Fig. 2: the learned rule's Jacobian is visibly asymmetric (|asymmetry| above the e^-4 "
                        "numerical error), so no loss L_equiv exists"}
    scale = {"task": "xor", "network": "2 -> 20 -> 2 (specs/toy_blur.json)", "batch": numbers.get("batch"),
             "state": numbers.get("state"), "appendix_a": not args.quick}
    rc.write_json(args.out, rc.envelope(NAME, args, timer, {"data_and_synapses": args.seed}, scale,
                                        results, [fig_path]))
    print(f"wrote {fig_path} and {args.out} ({timer.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
