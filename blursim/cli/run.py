"""``blursim run``: train from fresh synapses, print held-out accuracy per step."""

from __future__ import annotations

import sys

import numpy as np

from blursim.cli.common import (
    add_backend_args,
    add_genome_args,
    genome_from_args,
    parse_options,
    print_json,
    require_memory,
)


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="train a network with a genome and print held-out accuracy per step")
    p.add_argument("spec", metavar="SPEC", help="network spec JSON")
    p.add_argument("--task", required=True, help="dataset name (blursim list datasets)")
    p.add_argument("--task-opt", action="append", metavar="KEY=VALUE",
                   help="dataset option, e.g. --task-opt seed=3 (repeatable)")
    add_genome_args(p)
    p.add_argument("--steps", type=int, default=100, help="training steps T (default 100)")
    p.add_argument("--batch", type=int, default=32, help="batch size B (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed for synapse init and data batches")
    p.add_argument("--replicas", type=int, default=1, help="independent synapse initialisations")
    p.add_argument("--eval-every", type=int, default=1, help="evaluate every N steps (default 1)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rec = p.add_argument_group("recording (blursim.sim.Monitor; docs/design.md, Monitors)")
    rec.add_argument("--record", action="append", metavar="SPEC",
                     help="what to record, comma-separated (repeatable): states[:POP][@forward|feedback|"
                     "backward], feedback, weights[:PROJ|V:PROJ], norms[...], H[...], loss, accuracy, or "
                     "default (states, norms, loss, accuracy); needs --out")
    rec.add_argument("--record-every", type=int, default=1, metavar="N",
                     help="record every N-th step (default 1; step 0: the initial synapses)")
    rec.add_argument("--record-replicas", metavar="LIST", help="replicas to record, e.g. 0,2 (default all)")
    rec.add_argument("--out", metavar="DIR", help="directory for record.npz, record.png and record.json")
    add_backend_args(p)
    p.set_defaults(func=cmd_run)


def _check_positive(name: str, v: int, minimum: int = 1) -> None:
    from blursim.errors import SpecError

    if v < minimum:
        raise SpecError(f"{name} must be >= {minimum}", value=v, path=name)


def cmd_run(args) -> int:
    from blursim.data import load_dataset
    from blursim.graph import check_dataset_fit, compile_network
    from blursim.sim import make_simulator, train_and_evaluate
    from blursim.spec import load_network

    _check_positive("--steps", args.steps, 0)
    _check_positive("--batch", args.batch)
    _check_positive("--replicas", args.replicas)
    _check_positive("--eval-every", args.eval_every)
    _check_positive("--seed", args.seed, 0)
    _check_positive("--genome-seed", args.genome_seed, 0)
    spec = load_network(args.spec)
    prog = compile_network(spec)
    ds = load_dataset(args.task, parse_options(args.task_opt), path="--task")
    check_dataset_fit(spec, ds, args.task)
    genome = genome_from_args(args, prog)
    require_memory(spec, batch=args.batch, rows=ds.n_test, replicas=args.replicas, dtype=args.dtype,
                   source=args.spec)
    sim = make_simulator(prog, args.backend, args.dtype)
    monitor = _monitor(args, sim)
    evals = sorted(set(range(0, args.steps + 1, args.eval_every)) | {args.steps})
    res = train_and_evaluate(
        sim, [genome], ds, steps=args.steps, batch_size=args.batch, replicas=args.replicas,
        seed=args.seed, eval_steps=evals, monitor=monitor,
    )
    recorded = _write_recording(args, monitor) if monitor is not None else None
    if args.json:
        print_json({
            "spec": args.spec, "task": args.task, "task_options": ds.meta.get("options", {}),
            "genome": args.genome or f"preset:{args.preset}", "seed": args.seed,
            "steps": res.steps.tolist(), "batch": args.batch, "replicas": args.replicas,
            "backend": sim.backend.name, "dtype": sim.backend.dtype_name, **_json_metrics(res),
            "diverged_replicas": int(res.diverged[0].sum()), "seconds": res.seconds,
            **({"record": f"{args.out}/record.npz"} if monitor is not None else {}),
        })
        if recorded:
            print(recorded, file=sys.stderr)
        return 0
    print(f"# {args.spec} on {args.task}: genome={args.genome or 'preset ' + args.preset}, "
          f"batch={args.batch}, replicas={args.replicas}, seed={args.seed}, "
          f"backend={sim.backend.name}/{sim.backend.dtype_name}")
    if res.mse is not None:  # real-valued target vectors: the mean squared error, not accuracy
        mse = res.mse[0]  # (R, E)
        print(f"# held-out mean squared error of state 0 (mean ± std over replicas) on {ds.n_test} "
              f"test examples with target vectors of length {ds.n_outputs}")
        print(f"{'step':>6}  {'mse':>10}  {'± std':>10}")
        for e, s in enumerate(res.steps):
            print(f"{int(s):>6}  {mse[:, e].mean():10.6g}  {mse[:, e].std():10.4g}")
        final = f"final mse {mse[:, -1].mean():.6g}"
    else:
        acc, ce = res.accuracy[0], res.cross_entropy[0]  # (R, E)
        print(f"# held-out accuracy (mean ± std over replicas) on {len(ds.y_test)} test examples")
        print(f"{'step':>6}  {'accuracy':>8}  {'± std':>6}  {'x-entropy':>9}")
        for e, s in enumerate(res.steps):
            print(f"{int(s):>6}  {acc[:, e].mean():8.4f}  {acc[:, e].std():6.4f}  {np.mean(ce[:, e]):9.4f}")
        final = f"final accuracy {acc[:, -1].mean():.4f}"
    if res.diverged.any():
        print(f"# warning: {int(res.diverged.sum())} replica(s) diverged (non-finite synapses)")
    print(f"# {final} after {args.steps} steps ({res.seconds:.2f} s)")
    if recorded:
        print(recorded)
    return 0


def _monitor(args, sim):
    """The monitor of ``--record`` (checked before any work), or None."""
    from blursim.errors import SpecError
    from blursim.sim import Monitor

    if not args.record:
        if args.out:
            raise SpecError("--out is where --record writes; say what to record", path="--out",
                            hint="e.g. --record default")
        return None
    if not args.out:
        raise SpecError("--record needs --out DIR", path="--record")
    _check_positive("--record-every", args.record_every)
    replicas = None
    if args.record_replicas:
        try:
            replicas = [int(r) for r in args.record_replicas.split(",") if r.strip()]
        except ValueError:
            raise SpecError("--record-replicas takes replica indices, e.g. 0,2", value=args.record_replicas,
                            path="--record-replicas") from None
    mon = Monitor(sim, args.record, steps=args.record_every, replicas=replicas)
    mon.plan(sim, S=1, R=args.replicas, B=args.batch, steps=args.steps)
    from blursim.cli.common import ensure_writable_dir

    ensure_writable_dir(args.out)
    return mon


def _write_recording(args, monitor) -> str:
    """``record.npz`` (every recording, no pickle), ``record.json`` (what, when, shapes) and the
    default figure ``record.png``; returns the line that says so."""
    from pathlib import Path

    from blursim.errors import BlursimError
    from blursim.io import atomic_write_json
    from blursim.sim.monitor import recordings_meta

    out = Path(args.out)
    monitor.save(out / "record.npz")
    recs = monitor.recordings()
    meta = {"spec": args.spec, "task": args.task, "seed": args.seed, **recordings_meta(monitor),
            "recordings": {n: {"dims": list(r.dims), "shape": list(r.values.shape)} for n, r in recs.items()}}
    atomic_write_json(out / "record.json", meta)
    figure = "record.png"
    try:
        from blursim.analysis.plots import plot_recordings

        plot_recordings(recs, out / figure)
    except BlursimError as e:  # nothing drawable was recorded (e.g. only weights)
        figure = f"no figure ({e})"
    return f"# recorded {len(recs)} variable(s) into {out / 'record.npz'}; {figure}"


def _json_metrics(res) -> dict:
    """The per-step metrics of a one-genome run for ``--json``: accuracy and cross-entropy, or
    (for real-valued target vectors) the mean squared error."""
    if res.mse is not None:
        mse = res.mse[0]
        return {"mse_mean": mse.mean(0).tolist(), "mse_std": mse.std(0).tolist(),
                "final_mse": float(mse[:, -1].mean())}
    acc, ce = res.accuracy[0], res.cross_entropy[0]
    return {"accuracy_mean": acc.mean(0).tolist(), "accuracy_std": acc.std(0).tolist(),
            "cross_entropy_mean": ce.mean(0).tolist(), "final_accuracy": float(acc[:, -1].mean())}
