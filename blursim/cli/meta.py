"""``blursim meta-train`` (meta-learn a genome: evolution strategies or gradient descent) and
``blursim evaluate`` (a genome's learning curve)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from blursim.cli.common import add_backend_args, parse_options, print_json, require_memory


def add_parser(sub) -> None:
    p = sub.add_parser(
        "meta-train", help="meta-train a genome with an evolution strategy or by gradient (experiment JSON)",
        description="Meta-train a BLUR genome as described by an experiment document "
                    "(blursim schema experiment): with an evolution strategy, or by gradient descent "
                    "through the unroll (strategy 'gradient', needs the jax extra). Writes log.jsonl, best_genome.json, "
                    "mean_genome.json, a checkpoint and meta_training.png into the output "
                    "directory; a stopped run continues with --resume DIR.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT.json", help="experiment document")
    p.add_argument("--out", metavar="DIR",
                   help="output directory, new or empty (default: the experiment's 'output', else "
                        "runs/NAME; those must lie inside the current directory)")
    p.add_argument("--generations", type=int, metavar="N",
                   help="total number of generations, or gradient steps (default: the experiment's)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the run in DIR from its checkpoint, or restart it if it stopped "
                        "before one (DIR must have been made by this experiment)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no progress lines, no summary")
    p.add_argument("--progress-every", type=float, default=20.0, metavar="SECONDS",
                   help="when stdout is not a terminal (nohup, SLURM, CI, > log.txt): write a plain "
                        "progress line at least this often (default 20)")
    p.add_argument("--memory-budget", type=float, metavar="MB",
                   help="memory per population chunk (default: the experiment's execution.memory_budget_mb)")
    p.add_argument("--dask-scheduler", metavar="ADDRESS",
                   help="evaluate population chunks on this Dask scheduler (pip install 'blursim[distributed]')")
    p.add_argument("--dask-workers", type=int, metavar="N",
                   help="evaluate population chunks on a local Dask cluster of N worker processes "
                        "(at most 64)")
    p.add_argument("--dask-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for --dask-scheduler to answer (default 10)")
    p.set_defaults(func=cmd_meta_train)

    p = sub.add_parser(
        "evaluate", help="a genome's held-out accuracy curve per step, mean and spread over replicas",
    )
    p.add_argument("spec", metavar="SPEC", help="network spec JSON")
    p.add_argument("--genome", required=True, metavar="FILE",
                   help="genome JSON (e.g. best_genome.json of a meta-training run)")
    p.add_argument("--task", required=True, help="dataset name (blursim list datasets)")
    p.add_argument("--task-opt", action="append", metavar="KEY=VALUE",
                   help="dataset option, e.g. --task-opt seed=3 (repeatable)")
    p.add_argument("--steps", type=int, default=100, metavar="T", help="training steps (default 100)")
    p.add_argument("--replicas", type=int, default=5, metavar="R",
                   help="independent synapse initialisations (default 5)")
    p.add_argument("--batch", type=int, default=32, help="training batch size (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisations and batches (default 0)")
    p.add_argument("--split", choices=["test", "train"], default="test",
                   help="evaluate on the held-out test split (default) or the training split")
    p.add_argument("--query-batches", type=int, metavar="N",
                   help="evaluate on N seeded query batches instead of the whole split")
    p.add_argument("--eval-every", type=int, default=1, metavar="N", help="evaluate every N steps")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_backend_args(p)
    p.set_defaults(func=cmd_evaluate)


def _positive(name: str, v: int | None, minimum: int = 1) -> None:
    from blursim.errors import SpecError

    if v is not None and v < minimum:
        raise SpecError(f"{name} must be >= {minimum}", value=v, path=name)


def cmd_meta_train(args) -> int:
    from blursim.errors import BlursimError
    from blursim.meta import meta_train, prepare_experiment
    from blursim.meta.distributed import make_executor
    from blursim.meta.observers import ProgressBar, summary_line
    from blursim.meta.progress import ProgressLines, unit_of

    _positive("--generations", args.generations, 0)
    if not args.progress_every > 0:
        raise BlursimError(f"--progress-every must be > 0 seconds (got {args.progress_every})")
    _positive("--dask-workers", args.dask_workers)
    if args.memory_budget is not None and args.memory_budget <= 0:
        raise BlursimError(f"--memory-budget must be > 0 (got {args.memory_budget})")
    setup = prepare_experiment(args.experiment)  # every check before any compute
    exp = setup.experiment
    if args.resume:
        if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
            raise BlursimError("--resume DIR continues the run in DIR; --out must be omitted or the same")
        out = Path(args.resume)
    elif args.out:
        out = Path(args.out)  # the command line may write anywhere
    else:
        out = _document_output(setup)
    total = args.generations if args.generations is not None else exp.generations
    bar = ProgressBar(total, quiet=args.quiet)
    lines = ProgressLines(total, every=args.progress_every, quiet=args.quiet)
    executor = None
    if args.dask_scheduler or args.dask_workers:
        executor = make_executor(scheduler=args.dask_scheduler, local_workers=args.dask_workers,
                                 timeout=args.dask_timeout)
    unit = unit_of(exp.strategy.name)
    try:
        with _sigterm_as_interrupt():
            res = meta_train(setup, out=out, generations=total, resume=bool(args.resume),
                             executor=executor, observers=[bar, lines], memory_budget_mb=args.memory_budget)
    except KeyboardInterrupt as e:
        what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        done = _checkpointed(out)
        saved = f"; checkpoint at {unit} {done}" if done is not None else ""
        print(f"blursim: {what}{saved}; continue with: blursim meta-train {args.experiment} --resume {out}",
              file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    finally:
        if executor is not None:
            executor.close()
    if not args.quiet:
        print(f"{setup.name}: {res.state.generation} {unit}s ({res.seconds:.1f} s) -> {out}")
        print(summary_line(res.records))
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM (what schedulers and ``kill`` send), handled as Ctrl-C: the run stops after
    checkpointing its last completed generation."""


class _sigterm_as_interrupt:
    """While inside: the first SIGTERM raises :class:`Terminated` in the main thread; later ones
    are ignored, so that a repeated signal does not cut short the checkpoint being written
    (outside the main thread, or where signals cannot be set, nothing changes)."""

    def __enter__(self):
        import signal
        import threading

        self._old = None
        self._fired = False
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM"):
            self._old = signal.signal(signal.SIGTERM, self._raise)
        return self

    def _raise(self, signum, frame):
        if not self._fired:
            self._fired = True
            raise Terminated()

    def __exit__(self, *exc):
        import signal

        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
        return False


def _checkpointed(out: Path) -> int | None:
    """The generation of ``out``'s checkpoint, if it has a readable one."""
    import json

    try:
        return int(json.loads((out / "checkpoint.json").read_text())["generation"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _document_output(setup) -> Path:
    """The output directory the experiment names (``output``, else ``runs/NAME``), which must stay
    inside the current directory, symbolic links followed."""
    from blursim.errors import SpecError
    from blursim.limits import is_inside
    from blursim.spec.loading import relocate

    exp = setup.experiment
    out = Path(exp.output) if exp.output else Path("runs") / setup.name
    if not is_inside(out, Path.cwd()):
        err = SpecError(
            f"the output directory {str(out)!r} leads outside the current directory (through a "
            "symbolic link); give --out DIR on the command line to write there",
            path="$.output" if exp.output else "$.name",
        )
        raise relocate(err, exp)
    return out


def cmd_evaluate(args) -> int:
    from blursim.data import load_dataset
    from blursim.graph import check_dataset_fit, compile_network
    from blursim.sim import make_simulator, train_and_evaluate
    from blursim.spec import load_genome, load_network

    _positive("--steps", args.steps, 0)
    _positive("--replicas", args.replicas)
    _positive("--batch", args.batch)
    _positive("--eval-every", args.eval_every)
    _positive("--query-batches", args.query_batches)
    spec = load_network(args.spec)
    prog = compile_network(spec)
    ds = load_dataset(args.task, parse_options(args.task_opt), path="--task")
    check_dataset_fit(spec, ds, args.task)
    genome = load_genome(args.genome)
    rows = args.batch if args.query_batches else (ds.n_test if args.split == "test" else ds.n_train)
    require_memory(spec, batch=args.batch, rows=rows, replicas=args.replicas, dtype=args.dtype,
                   source=args.spec)
    sim = make_simulator(prog, args.backend, args.dtype)
    evals = sorted(set(range(0, args.steps + 1, args.eval_every)) | {args.steps})
    res = train_and_evaluate(
        sim, [genome], ds, steps=args.steps, batch_size=args.batch, replicas=args.replicas,
        seed=args.seed, eval_steps=evals, n_query_batches=args.query_batches,
        query_batch_size=args.batch if args.query_batches else None, split=args.split,
    )
    # class labels: accuracy (and cross-entropy); target vectors: the mean squared error
    name, m = ("mse", res.mse[0]) if res.mse is not None else ("accuracy", res.accuracy[0])  # (R, E)
    ce_mean = None
    if res.cross_entropy is not None:
        ce = res.cross_entropy[0]
        ce_mean = np.where(np.isfinite(ce), ce, np.nan).mean(0)
    if args.json:
        out = {
            "spec": args.spec, "genome": args.genome, "task": args.task,
            "task_options": ds.meta.get("options", {}), "split": args.split, "seed": args.seed,
            "batch": args.batch, "replicas": args.replicas,
            "backend": sim.backend.name, "dtype": sim.backend.dtype_name,
            "steps": res.steps.tolist(),
            f"{name}_mean": m.mean(0).tolist(), f"{name}_std": m.std(0).tolist(),
            f"{name}_min": m.min(0).tolist(), f"{name}_max": m.max(0).tolist(), name: m.tolist(),
            f"final_{name}_mean": float(m[:, -1].mean()), f"final_{name}_std": float(m[:, -1].std()),
            "diverged_replicas": int(res.diverged[0].sum()), "seconds": res.seconds,
        }
        if ce_mean is not None:
            out["cross_entropy_mean"] = [None if not np.isfinite(v) else float(v) for v in ce_mean]
        print_json(out)
        return 0
    n = len(ds.y_test) if args.split == "test" else len(ds.y_train)
    where = f"{args.query_batches} query batches of {args.batch}" if args.query_batches else f"{n} examples"
    what = "; mean squared error of state 0" if name == "mse" else ""
    print(f"# {args.genome} on {args.task} ({args.split} split, {where}{what}); {args.spec}, "
          f"batch={args.batch}, replicas={args.replicas}, seed={args.seed}, "
          f"backend={sim.backend.name}/{sim.backend.dtype_name}")
    # column widths and number formats: mean, std, min, max
    cols = [(10, ".6g")] * 4 if name == "mse" else [(7, ".4f"), (6, ".4f"), (6, ".4f"), (6, ".4f")]
    heads = ("mean", "± std", "min", "max")
    print(f"{'step':>6}" + "".join(f"  {h:>{w}}" for h, (w, _) in zip(heads, cols))
          + ("" if ce_mean is None else f"  {'x-entropy':>9}"))
    for e, s in enumerate(res.steps):
        a = m[:, e]
        vals = (a.mean(), a.std(), a.min(), a.max())
        print(f"{int(s):>6}" + "".join(f"  {v:{w}{g}}" for v, (w, g) in zip(vals, cols))
              + ("" if ce_mean is None else f"  {ce_mean[e]:9.4f}"))
    if res.diverged.any():
        print(f"# warning: {int(res.diverged.sum())} replica(s) diverged (non-finite synapses)")
    g = cols[0][1]
    print(f"# final {name} {m[:, -1].mean():{g}} ± {m[:, -1].std():{g}} over {args.replicas} "
          f"replicas after {args.steps} steps ({res.seconds:.2f} s)")
    return 0
