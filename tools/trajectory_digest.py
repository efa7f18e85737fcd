#!/usr/bin/env python
"""Digests of many seeded BLUR trajectories, to show that a change to the simulator kept every bit.

    python tools/trajectory_digest.py --out new.json            # run every case, write digests
    python tools/trajectory_digest.py --compare old.json new.json

A *case* is one network, one rule variant, one genome, one dtype, one shape
``(S, R, B)``, one thread count and one sparse-storage mode. Each case trains
``S`` copies of the genome (``R`` replicas) for three steps on seeded random
batches from fresh synapses, then runs a forward pass on a query batch
(float64 and float32), and records the SHA-256 of every stored synapse array
(``W``, ``b``, ``V`` in the dense layout) and every output: the whole state a
step can change. Two commits whose digests agree computed the same bits.

Networks: every example network in ``specs/`` plus two small inline ones
(``local2d`` and ``block_random`` masks, for block-sparse storage). Rule
variants: the spec's own rules and overrides that reach every branch of the
step (the three backward updates, tied, shared channels updated by the
channel mean and by channel 0, both Oja modes,
mean reduction, saturation, both synapse normalisations, persistent neuron
states, the synchronous schedule, every feedback kind, frozen and mirrored
backward synapses); a variant the spec
does not validate under is skipped and counted. Genomes: a seeded random
genome with every optional field away from its neutral value, and (under
the spec's own rules) every reproduction genome in
``docs/results/*genome*.json`` on every network of its ``k`` and groups.
Shapes: ``S, R, B`` = 3, 2, 5 (species chunks across threads), 1, 2, 5
(replica chunks) and 1, 1, 128 (one chunk: products split on threads), each
with 1 and 2 threads.

To compare an older commit, run this file from your checkout against the old
code (it uses only the public API present since the simulator's first
release)::

    git worktree add /tmp/old <commit>
    PYTHONPATH=/tmp/old python tools/trajectory_digest.py --out old.json
    PYTHONPATH=. python tools/trajectory_digest.py --out new.json
    python tools/trajectory_digest.py --compare old.json new.json

A change that reorders sums cannot keep every bit; how far it moves a long
run is measured instead: ``--long N`` trains the benchmark's ``paper-es``
workload (196 -> 512 -> 10, k = 2, batch 128; ``S`` random genomes, 2
replicas) for ``N`` steps in float64 and float32 and saves its synapses at
steps 1, 10, 100, ... and ``N`` and the final query outputs; ``--drift``
reports, per array and snapshot, ``max|a - b| / max|b|`` between two such
files (the largest over species, replicas and entries)::

    PYTHONPATH=/tmp/old python tools/trajectory_digest.py --long 400 --out old.npz
    PYTHONPATH=. python tools/trajectory_digest.py --long 400 --out new.npz
    python tools/trajectory_digest.py --drift old.npz new.npz
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

#: Rule overrides applied on top of each network's own rules ("spec": none).
VARIANTS: dict[str, dict] = {
    "spec": {},
    "additive-untied": {"backward_update": "additive", "tied": False, "shared_channels": False,
                        "feedback": "target"},
    "multiplicative": {"backward_update": "multiplicative"},
    "mss-tied-shared": {"backward_update": "multiplicative_second_state", "tied": True,
                        "shared_channels": True, "feedback": "error_mse"},
    "shared-oja-activity-mean": {"shared_channels": True, "oja": "activity", "batch_reduction": "mean"},
    "shared-channel0-oja-activity": {"shared_channels": True, "shared_update": "channel0", "oja": "activity",
                                     "feedback": "error_mse"},
    "tied-oja-weights-sat": {"tied": True, "oja": "weights", "saturation": True},
    "norm-stored-softmax": {"synapse_normalization": "stored", "feedback": "error_softmax",
                            "target_coding": "onehot"},
    "norm-activations-persistent": {"synapse_normalization": "activations", "reset_neurons": False},
    "synchronous": {"schedule": "synchronous", "sweeps": 2, "oja": "activity"},
    # rule variants of issue 20 (docs/rule_variants.md); commits before it have no such option
    "frozen-backward": {"tied": False, "backward_synapses": "frozen", "synapse_normalization": "stored"},
    "mirror-backward": {"tied": False, "backward_synapses": "mirror", "oja": "activity", "saturation": True},
}

#: (S, R, B): species chunks, replica chunks, one chunk with large products.
SHAPES = ((3, 2, 5), (1, 2, 5), (1, 1, 128))
THREADS = (1, 2)
DTYPES = ("float64", "float32")

INLINE = {
    "inline_local2d": {
        "k": 2, "seed": 1,
        "populations": [
            {"name": "in", "size": 64, "role": "input", "grid": [8, 8]},
            {"name": "h", "size": 64, "role": "hidden", "grid": [8, 8], "forward_activation": "relu_tanh",
             "backward_activation": "relu_tanh", "normalization": "both"},
            {"name": "out", "size": 3, "role": "output", "forward_activation": "tanh"}],
        "projections": [{"from": "in", "to": "h", "connectivity": {"kind": "local2d", "radius": 1.5},
                         "bias": True},
                        {"from": "h", "to": "out"}],
        "rules": {"oja": "weights"}},
    "inline_block_random": {
        "k": 3, "seed": 2,
        "populations": [
            {"name": "in", "size": 48, "role": "input", "grid": [6, 8]},
            {"name": "h", "size": 64, "role": "hidden", "grid": [8, 8], "forward_activation": "tanh",
             "backward_activation": "tanh"},
            {"name": "out", "size": 4, "role": "output"}],
        "projections": [{"from": "in", "to": "h",
                         "connectivity": {"kind": "block_random", "block": [2, 4], "p": 0.4, "seed": 5}},
                        {"from": "h", "to": "out", "bias": True}]},
}


def networks() -> dict[str, dict]:
    out = {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "specs").glob("*.json"))}
    out.update(copy.deepcopy(INLINE))
    return out


def repro_genomes() -> dict[str, Path]:
    return {p.stem: p for p in sorted((ROOT / "docs" / "results").glob("*genome*.json"))}


def full_genome(genome):
    """``genome`` with every optional field set to a seeded value away from its neutral default
    (normalisation gain/shift, Oja multiplier, saturation, init scale, rescale), so that the
    branches using them change the bits."""
    rng = np.random.default_rng(11)
    k = genome.k
    groups = {}
    for name, g in genome.groups.items():
        groups[name] = g.model_copy(update={
            "norm_gain": rng.uniform(0.5, 1.5, k).tolist(), "norm_shift": rng.uniform(-0.3, 0.3, k).tolist(),
            "oja_alpha": float(rng.uniform(0.05, 0.3)), "saturation": float(rng.uniform(1.5, 3.0)),
            "init_scale": float(rng.uniform(0.7, 1.3)), "rescale": float(rng.uniform(0.7, 1.3))})
    return genome.model_copy(update={"groups": groups})


def run_case(prog, genome, *, dtype: str, S: int, R: int, B: int, threads: int, sparse: str) -> list[np.ndarray]:
    """Every synapse (dense layout) and output of a short seeded run (three training steps, one query)."""
    from blursim.sim import Simulator

    sim = Simulator(prog, dtype=dtype, threads=threads, sparse=sparse)
    genes = sim.prepare([genome] * S)
    st = sim.init_synapses(genes, replicas=R, seed=4)
    rng = np.random.default_rng(0)
    nf = prog.n_features
    n_out = prog.pops[prog.outputs[0]].size
    for _ in range(3):
        x = rng.normal(size=(B, nf))
        sim.train_step(st, genes, x, rng.integers(0, max(2, n_out), B))
    outs = sim.forward(st, genes, rng.normal(size=(B, nf)))
    syn = [st.get(q, w) for q in range(len(prog.projs)) for w in "WbV"]
    return [np.ascontiguousarray(sim.backend.to_numpy(a)) for a in syn + list(outs) if a is not None]


def digest(a: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:32]


def collect(quick: bool = False, only: str | None = None, log=print, keep: dict | None = None) -> dict:
    """Run every case; ``{"cases": {key: [digest, ...]}, "skipped": {variant: reason}}``.
    ``keep``: a dict that receives every array as ``key#i``."""
    from blursim.errors import BlursimError
    from blursim.genome import random_genome
    from blursim.graph import compile_network
    from blursim.spec import load_genome, load_network

    cases: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    repro = {name: load_genome(p) for name, p in repro_genomes().items()}
    shapes = SHAPES[:1] if quick else SHAPES
    for net, doc in networks().items():
        if only and only not in net:
            continue
        for vname, over in VARIANTS.items():
            spec = copy.deepcopy(doc)
            spec.setdefault("rules", {}).update(over)
            try:
                prog = compile_network(load_network(spec))
            except BlursimError as e:
                skipped[f"{net}|{vname}"] = str(e).splitlines()[0]
                continue
            genomes = {"random": full_genome(random_genome(k=prog.k, groups=prog.groups, seed=1, scale=0.3))}
            if vname == "spec":
                genomes.update({n: g for n, g in repro.items()
                                if g.k == prog.k and set(prog.groups) <= set(g.groups)})
            masked = any(q.mask is not None for q in prog.projs)
            sparses = ("auto", "blocks", "masked") if masked and vname == "spec" else ("auto",)
            for gname, genome in genomes.items():
                for dtype in DTYPES:
                    for S, R, B in shapes:
                        for t in THREADS:
                            for sparse in sparses:
                                key = f"{net}|{vname}|{gname}|{dtype}|S{S}R{R}B{B}|t{t}|{sparse}"
                                arrays = run_case(prog, genome, dtype=dtype, S=S, R=R, B=B, threads=t,
                                                  sparse=sparse)
                                cases[key] = [digest(a) for a in arrays]
                                if keep is not None:
                                    keep.update({f"{key}#{i}": a for i, a in enumerate(arrays)})
        log(f"# {net}: {sum(k.startswith(net + '|') for k in cases)} cases")
    return {"cases": cases, "skipped": skipped}


def long_run(steps: int, S: int = 4, R: int = 2, B: int = 128, fitness: int = 0,
             repro: bool = False) -> dict[str, np.ndarray]:
    """The ``paper-es`` workload trained ``steps`` steps (seeded batches, float64 and float32):
    ``{"dtype|step|array": values}`` at steps 1, 10, 100, ... and ``steps``, and the query outputs;
    with ``fitness``, also :func:`fitness_metrics` of that many genomes. ``repro``: the
    reproduction genomes of ``docs/results`` with ``k = 2`` (species in name order) instead of
    ``S`` of the benchmark's random ones."""
    from blursim.genome import make_preset
    from blursim.graph import compile_network
    from blursim.sim import Simulator
    from blursim.spec import load_network

    from blursim.bench.workloads import PAPER_ES

    spec = copy.deepcopy(PAPER_ES)
    prog = compile_network(load_network(spec))
    marks = {steps} | {10 ** i for i in range(len(str(steps))) if 10 ** i <= steps}
    out: dict[str, np.ndarray] = {}
    if repro:
        from blursim.spec import load_genome

        genomes = [g for g in map(load_genome, repro_genomes().values()) if g.k == prog.k]
    else:
        genomes = [make_preset("random", k=prog.k, groups=prog.groups, seed=s, lr=0.01) for s in range(S)]
    for dtype in DTYPES:
        sim = Simulator(prog, dtype=dtype)
        genes = sim.prepare(genomes)
        st = sim.init_synapses(genes, replicas=R, seed=0)
        rng = np.random.default_rng(0)
        for t in range(1, steps + 1):
            sim.train_step(st, genes, rng.normal(size=(B, prog.n_features)), rng.integers(0, 10, B))
            if t in marks:
                for q in range(len(prog.projs)):
                    for w in "WbV":
                        a = st.get(q, w)
                        if a is not None:
                            out[f"{dtype}|{t}|{w}{q}"] = np.array(sim.backend.to_numpy(a))
        outs = sim.forward(st, genes, rng.normal(size=(B, prog.n_features)))
        out.update({f"{dtype}|{steps}|out{i}": np.array(sim.backend.to_numpy(o)) for i, o in enumerate(outs)})
    if fitness:
        out.update(fitness_metrics(fitness))
    return out


def fitness_metrics(S: int) -> dict[str, np.ndarray]:
    """The benchmark's Sec. 4.4 fitness evaluation (``blursim.bench.workloads.fitness_workload``:
    15 steps, 20 query batches of 128, float32) of its ``S`` genomes: every metric, ``(S, 1)``."""
    from blursim.backend import get_backend
    from blursim.bench.workloads import PAPER_ES, Workload, synthetic_dataset
    from blursim.sim import train_and_evaluate

    w = Workload(PAPER_ES, S, get_backend("numpy", "float32"))
    res = train_and_evaluate(w.sim, w.genomes, synthetic_dataset(196, 10), steps=15, batch_size=128,
                             eval_steps="end", n_query_batches=20, query_batch_size=128)
    return {f"float32|fitness|{k}": np.asarray(v, dtype=np.float64) for k, v in res.metrics.items()}


def drift(a_path: str, b_path: str) -> int:
    """Per array and snapshot of two :func:`long_run` files: ``max|a - b| / max|b|`` over all
    entries, and the same per species (genomes differ in how much a BLUR run amplifies rounding)."""
    a, b = np.load(a_path), np.load(b_path)
    if set(a.files) != set(b.files):
        print(f"the two runs saved different arrays: {sorted(set(a.files) ^ set(b.files))[:5]}")
        return 1
    rel = lambda x, y: float(np.max(np.abs(x - y))) / max(float(np.max(np.abs(y))), 1e-30)  # noqa: E731
    worst: dict[tuple, list] = {}
    order = lambda k: (k.split("|")[0], int(k.split("|")[1]) if k.split("|")[1].isdigit() else 1 << 62, k)  # noqa: E731
    for key in sorted(a.files, key=order):
        x, y = a[key].astype(np.float64), b[key].astype(np.float64)
        same = "  bit-identical" if np.array_equal(a[key], b[key]) else ""
        if "|fitness|" in key:  # one value per genome: the largest absolute difference
            print(f"{key:<32} max abs. difference {float(np.max(np.abs(x - y))):9.3g} over {x.shape[0]} genomes"
                  f" (values {float(np.min(y)):.4g} .. {float(np.max(y)):.4g}){same}")
            continue
        per = [rel(x[s], y[s]) for s in range(x.shape[0])]
        print(f"{key:<24} max rel. difference {rel(x, y):9.3g}   per species "
              + " ".join(f"{r:9.3g}" for r in per) + same)
        d, step = key.split("|")[:2]
        w = worst.setdefault((d, int(step)), [0.0] * len(per))
        worst[(d, int(step))] = [max(u, v) for u, v in zip(w, per)]
    for (d, step), per in worst.items():
        print(f"{d} after {step:>5} steps: largest relative difference per species "
              + " ".join(f"{r:.3g}" for r in per))
    return 0


def compare(a_path: str, b_path: str) -> int:
    a, b = json.loads(Path(a_path).read_text()), json.loads(Path(b_path).read_text())
    ka, kb = set(a["cases"]), set(b["cases"])
    arrays = same = 0
    bad = []
    for key in sorted(ka & kb):
        da, db = a["cases"][key], b["cases"][key]
        if len(da) != len(db):
            bad.append(f"{key}: {len(da)} arrays vs {len(db)}")
            continue
        arrays += len(da)
        diff = [i for i, (x, y) in enumerate(zip(da, db)) if x != y]
        same += len(da) - len(diff)
        if diff:
            bad.append(f"{key}: arrays {diff} differ")
    print(f"{len(ka & kb)} cases in both ({len(ka - kb)} only in {a_path}, {len(kb - ka)} only in {b_path}); "
          f"{arrays} arrays compared, {same} bit-identical, {arrays - same} different")
    if a.get("skipped") != b.get("skipped"):
        print("the skipped variants differ:", sorted(set(a.get("skipped", {})) ^ set(b.get("skipped", {}))))
        bad.append("skipped")
    for line in bad[:40]:
        print("  DIFF", line)
    return 0 if not bad and ka == kb else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="write the digests here (JSON)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two digest files")
    p.add_argument("--quick", action="store_true", help="one shape only")
    p.add_argument("--only", help="only networks whose name contains this")
    p.add_argument("--arrays", metavar="FILE.npz", help="also save every array (to inspect a difference)")
    p.add_argument("--long", type=int, metavar="N", help="instead: N steps of paper-es, arrays to --out FILE.npz")
    p.add_argument("--species", type=int, default=4, help="genomes of the --long run (default 4)")
    p.add_argument("--fitness", type=int, default=0, help="--long: also the benchmark's fitness of N genomes")
    p.add_argument("--repro", action="store_true", help="--long: the reproduction genomes of docs/results")
    p.add_argument("--drift", nargs=2, metavar=("A", "B"), help="relative differences of two --long files")
    args = p.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    if args.drift:
        return drift(*args.drift)
    if args.long:
        if not args.out:
            p.error("give --out FILE.npz with --long")
        t0 = time.perf_counter()
        arrays = long_run(args.long, S=args.species, fitness=args.fitness, repro=args.repro)
        with open(args.out, "wb") as f:
            np.savez_compressed(f, **arrays)
        print(f"{args.long} steps, {len(arrays)} arrays, {time.perf_counter() - t0:.1f} s -> {args.out}")
        return 0
    if not args.out:
        p.error("give --out FILE or --compare A B")
    t0 = time.perf_counter()
    keep = {} if args.arrays else None
    res = collect(args.quick, args.only, log=lambda s: print(s, file=sys.stderr, flush=True), keep=keep)
    if keep is not None:
        np.savez_compressed(args.arrays, **keep)
    import blursim

    res["blursim"] = str(Path(blursim.__file__).resolve().parent)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.out).write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    n = sum(len(v) for v in res["cases"].values())
    print(f"{len(res['cases'])} cases, {n} arrays, {len(res['skipped'])} variants skipped, "
          f"{res['seconds']} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
