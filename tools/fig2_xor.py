#!/usr/bin/env python
"""Reproduce the paper's Fig. 2 (Sec. 3.5) and the App. A metric experiment on xor.

Fig. 2: ``ln |∂Δw_k/∂w_m − ∂Δw_m/∂w_k|`` for the flattened forward synapses
of a two-state network with one hidden layer of 20 learning the 2-input
Boolean task xor — here for a genome of the paper's general rule family on
``specs/toy_blur.json`` (a random genome, or a meta-learned one with
``--genome FILE``) next to the backprop genome on ``specs/mlp_2d.json`` (the
same shape under the rules of DESIGN §3), with a shared colour scale and the
projection boundaries marked.  Writes ``docs/figures/fig2_xor.png`` and the
numbers (relative asymmetry, noise floor, margin, FD-vs-complex agreement,
circulation slope, App. A counts) to ``docs/figures/fig2_xor.json``.

App. A: the constant-metric search of eq. (13) on the same network with a
hidden layer of 5 (as in the paper), fitted at the base state and validated
at ``--metric-states`` other random states.

    python tools/fig2_xor.py [--genome FILE] [--genome-seed N] [--state trained:20] [--batch 64]

Prints a time estimate first; about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from blursim.analysis import (  # noqa: E402
    BlurUpdateMap,
    asymmetry_report,
    base_state,
    circulation_test,
    estimate_evaluations,
    fd_complex_agreement,
    jacobian_fd,
    metric_search,
    plot_asymmetry_heatmap,
    time_per_evaluation,
)
from blursim.analysis.report import complex_jacobian  # noqa: E402
from blursim.data import load_dataset  # noqa: E402
from blursim.genome import backprop_genome, random_genome  # noqa: E402
from blursim.graph import compile_network  # noqa: E402
from blursim.sim import train_batch  # noqa: E402
from blursim.io import atomic_write_json, json_ready  # noqa: E402
from blursim.spec import load_genome, load_network  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--genome", help="genome JSON for the left panel (default: the random preset)")
    p.add_argument("--genome-seed", type=int, default=0, help="seed of the random preset (default 0)")
    p.add_argument("--lr", type=float, default=0.1, help="learning rate of the backprop genome (default 0.1)")
    p.add_argument("--state", default="trained:20", help="base point: random or trained:N (default trained:20)")
    p.add_argument("--batch", type=int, default=64, help="the full batch: B xor points (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of synapse init and batches (default 0)")
    p.add_argument("--metric-states", type=int, default=8, help="App. A validation states (default 8)")
    p.add_argument("--no-appendix-a", action="store_true", help="skip the App. A metric search")
    p.add_argument("--out-dir", default=str(ROOT / "docs" / "figures"), help="output directory")
    return p.parse_args(argv)


def panel(spec, genome, ds, x, y, args, label):
    prog = compile_network(load_network(spec))
    st = base_state(prog, genome, args.state, dataset=ds, batch_size=args.batch, seed=args.seed)
    m = BlurUpdateMap(prog, genome, x, y, variables="forward", state=st)
    return {"label": label, "prog": prog, "map": m}


def run_panel(pn, args):
    m = pn["map"]
    t0 = time.perf_counter()
    J = complex_jacobian(m, m.w0, None)
    fd = jacobian_fd(m, m.w0)
    rep = asymmetry_report(J, top=5)
    circ = circulation_test(m, m.w0, n_planes=3, rng=args.seed, jacobian=J)
    agree = fd_complex_agreement(fd, J)
    ratio = np.abs(circ.circulation) / np.maximum(circ.noise_floor, np.finfo(float).tiny)
    pn.update(J=J, rep=rep)
    return {
        "network": m.program.spec.name,
        "n": m.n,
        "blocks": [list(b) for b in m.blocks],
        "q_fro": rep.q_fro,
        "asym_fro": rep.asym_fro,
        "rel_asymmetry": rep.rel_asymmetry,
        "noise_floor": rep.noise_floor,
        "rel_noise_floor": rep.rel_noise_floor,
        "margin": rep.margin,
        "verdict": rep.verdict,
        "max_ln_abs_asymmetry": float(np.log(max(np.abs(J.Q - J.Q.T).max(), 1e-300))),
        "top": [e.to_dict() for e in rep.top[:3]],
        "fd_vs_complex": agree,
        "fd_step": fd.step,
        "circulation": {
            "slope": circ.slope,
            "is_zero": circ.is_zero,
            "max_over_floor": float(ratio.max()),
            "eps": circ.eps.tolist(),
            "abs_circulation_plane0": np.abs(circ.circulation[0]).tolist(),
            "stokes_plane0": None if circ.predicted is None else np.abs(circ.predicted[0]).tolist(),
            "verdict": circ.verdict,
        },
        "seconds": time.perf_counter() - t0,
    }


def appendix_a(genome, ds, x, y, args):
    spec = json.loads((ROOT / "specs" / "toy_blur.json").read_text())
    spec = copy.deepcopy(spec)
    spec["name"] = "toy_blur_hidden5"
    for p in spec["populations"]:
        if p["name"] == "hidden":
            p["size"] = 5
    prog = compile_network(load_network(spec))
    st = base_state(prog, genome, args.state, dataset=ds, batch_size=args.batch, seed=args.seed)
    m = BlurUpdateMap(prog, genome, x, y, variables="forward", state=st)
    t0 = time.perf_counter()
    J = complex_jacobian(m, m.w0, None)
    val = [complex_jacobian(m, m.state_to_vector(base_state(prog, genome, "random", seed=args.seed + 1 + i)), None)
           for i in range(args.metric_states)]
    res = metric_search(J, val)
    return {
        "network": "toy_blur with a hidden layer of 5",
        "n": m.n,
        "unknowns": m.n * (m.n + 1) // 2,
        "equations_per_Q": m.n * (m.n - 1) // 2,
        "null_dim_at_base_state": res.null_dim,
        "basis_survivors": res.basis_survivors,
        "surviving_dim": res.surviving_dim,
        "validation_states": res.n_validate,
        "pd_found": res.pd_found,
        "best_min_eig_ratio": res.best_min_eig_ratio,
        "candidate_eigs": res.candidate_eigs,
        "verdict": res.verdict,
        "seconds": time.perf_counter() - t0,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    ds = load_dataset("xor", {"seed": args.seed})
    kind_n = args.state.split(":")
    step = int(kind_n[1]) if kind_n[0] == "trained" else 0
    x, y = train_batch(ds.x_train, ds.y_train, step, args.seed, args.batch)
    if args.genome:
        learned, learned_name = load_genome(args.genome), f"genome {args.genome}"
    else:
        learned, learned_name = random_genome(k=2, seed=args.genome_seed), f"random genome (seed {args.genome_seed})"
    left = panel(ROOT / "specs" / "toy_blur.json", learned, ds, x, y, args, learned_name)
    right = panel(ROOT / "specs" / "mlp_2d.json", backprop_genome(lr=args.lr), ds, x, y, args,
                  f"backprop genome (lr {args.lr:g})")

    # time estimate from a timed probe of each map
    est = 0.0
    for pn in (left, right):
        n = pn["map"].n
        est += estimate_evaluations(n, method="complex", check_fd=True) * time_per_evaluation(pn["map"])
    if not args.no_appendix_a:
        n5 = (2 + 1) * 5 * 2 + (5 + 1) * 2 * 2
        rows = n5 * (n5 + 1) // 2  # eq. 13 unknowns: one SVD of ~rows² entries (timed at ~0.5 ns per rows³)
        est += (1 + args.metric_states) * n5 * time_per_evaluation(left["map"]) + 5e-10 * rows**3 * (1 + args.metric_states / 8)
    print(f"fig2_xor: n = {left['map'].n} ({learned_name}, toy_blur) and {right['map'].n} (backprop, mlp_2d) "
          f"forward synapses, batch {args.batch}, state {args.state}; estimated time ≈ {est:.0f} s", flush=True)

    numbers = {
        "task": "xor", "batch": args.batch, "state": args.state, "seed": args.seed,
        "method": "complex step (complex128 simulation), checked against central finite differences",
        "panels": {},
    }
    for key, pn in (("learned", left), ("backprop", right)):
        numbers["panels"][key] = {"genome": pn["label"], **run_panel(pn, args)}
        r = numbers["panels"][key]
        print(f"  {pn['label']:<28} n={r['n']:<4} rel. asymmetry {r['rel_asymmetry']:.3g}, noise floor "
              f"{r['rel_noise_floor']:.2g} (rel.), margin {r['margin']:.3g}, circulation slope "
              f"{r['circulation']['slope']:.3g}, FD-vs-complex |ΔQ|_F {r['fd_vs_complex']['diff_fro']:.2g} "
              f"(FD estimate {r['fd_vs_complex']['fd_error_fro']:.2g})", flush=True)
    if not args.no_appendix_a:
        numbers["appendix_a"] = appendix_a(learned, ds, x, y, args)
        a = numbers["appendix_a"]
        print(f"  App. A (hidden 5, n={a['n']}): null space {a['null_dim_at_base_state']} at the base state, "
              f"{a['basis_survivors']} basis vectors survive {a['validation_states']} other states "
              f"(surviving dim {a['surviving_dim']}); {a['verdict']}", flush=True)

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    Jl, Jr = left["J"], right["J"]
    # entries below the Jacobians' own error estimate are drawn at that level (bottom of the colour scale)
    floor = max(float(np.max(J.error_estimate + J.error_estimate.T)) for J in (Jl, Jr))
    plot_asymmetry_heatmap(
        Jl, Jl.blocks, out / "fig2_xor.png",
        f"{left['label']} on toy_blur (n={Jl.n})\nrel. asymmetry {left['rep'].rel_asymmetry:.2g}, "
        f"margin {left['rep'].margin:.2g} × noise",
        compare=Jr, compare_title=f"{right['label']} on mlp_2d (n={Jr.n})\nrel. asymmetry "
                                   f"{right['rep'].rel_asymmetry:.2g} (floor: error estimate)",
        floor=floor,
    )
    numbers["heatmap_floor"] = floor
    numbers["seconds"] = time.perf_counter() - t_start
    numbers["estimated_seconds"] = est
    numbers["command"] = "python tools/fig2_xor.py " + " ".join(sys.argv[1:] if argv is None else argv)
    atomic_write_json(out / "fig2_xor.json", json_ready(numbers))
    print(f"wrote {out / 'fig2_xor.png'} and {out / 'fig2_xor.json'} ({numbers['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
