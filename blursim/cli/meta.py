"""``blursim meta-train`` (meta-learn a genome: evolution strategies or gradient descent) and
``blursim evaluate`` (a genome's learning curve)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blursim.cli.common import add_backend_args, load_genome_for, parse_options, print_json, require_memory
from blursim.errors import BlursimError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "meta-train", help="meta-train a genome with an evolution strategy or by gradient (experiment JSON)",
        description="Meta-train a BLUR genome as described by an experiment document "
                    "(blursim schema experiment): with an evolution strategy, or by gradient descent "
                    "through the unroll (strategy 'gradient', needs the jax extra). Writes log.jsonl, best_genome.json, "
                    "mean_genome.json, a checkpoint and meta_training.png into the output "
                    "directory; a stopped run continues with --resume DIR. Ctrl-C or SIGTERM stops it "
                    "after checkpointing the last completed generation (step) and prints the command "
                    "that resumes it.",
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
        "evaluate", help="genomes' held-out accuracy per step on tasks, side by side (mean and spread over replicas)",
        description="Train from fresh synapses with each genome on each task and measure the held-out "
                    "accuracy (mean squared error for target vectors) per step. --genome, --preset and "
                    "--task repeat: every genome is evaluated on every task, with the same seeds, and a "
                    "table compares them. Given an experiment document instead of a network spec, "
                    "the genomes are evaluated on the experiment's validation tasks (its training "
                    "tasks' test split when it has none) under its validation protocol and seeds -- "
                    "the numbers of its run's log.",
    )
    p.add_argument("spec", metavar="SPEC",
                   help="network spec JSON, or an experiment document (blursim.experiment/1)")
    p.add_argument("--genome", action="append", metavar="FILE",
                   help="genome JSON (e.g. best_genome.json of a meta-training run); repeatable")
    p.add_argument("--preset", action="append", metavar="NAME",
                   help="genome preset (backprop, random, ...: blursim list presets); repeatable")
    p.add_argument("--lr", type=float, default=None, help="eta_tilde of the backprop preset (default 0.1)")
    p.add_argument("--genome-seed", type=int, default=0, help="seed of the random preset")
    p.add_argument("--task", action="append", metavar="NAME",
                   help="dataset name (blursim list datasets); repeatable (with a network spec: at least one; "
                        "with an experiment: a selection of its validation tasks, by label)")
    p.add_argument("--task-opt", action="append", metavar="KEY=VALUE",
                   help="dataset option for every --task, e.g. --task-opt seed=3 (repeatable)")
    p.add_argument("--steps", type=int, metavar="T",
                   help="training steps (default 100; an experiment: its validation steps, else its "
                        "last unroll)")
    p.add_argument("--replicas", type=int, metavar="R",
                   help="independent synapse initialisations (default 5; an experiment: its validation "
                        "replicas)")
    p.add_argument("--batch", type=int, metavar="B",
                   help="training batch size (default 32; an experiment: inner.batch_size)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of initialisations and batches (default 0; an experiment: its validation "
                        "seed of each task)")
    p.add_argument("--split", choices=["test", "train"], default="test",
                   help="evaluate on the held-out test split (default) or the training split")
    p.add_argument("--query-batches", type=int, metavar="N",
                   help="evaluate on N seeded query batches instead of the whole split")
    p.add_argument("--eval-every", type=int, default=1, metavar="N", help="evaluate every N steps")
    p.add_argument("--curves", action="store_true",
                   help="several genomes or tasks: also print each pair's per-step table")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_backend_args(p)
    p.set_defaults(func=cmd_evaluate)


def _positive(name: str, v: int | None, minimum: int = 1) -> None:
    from blursim.errors import SpecError

    if v is not None and v < minimum:
        raise SpecError(f"{name} must be >= {minimum}", value=v, path=name)


def cmd_meta_train(args) -> int:
    from blursim.limits import MAX_MEMORY_BUDGET_MB
    from blursim.meta import meta_train, prepare_experiment
    from blursim.meta.distributed import make_executor
    from blursim.meta.observers import ProgressBar, summary_line
    from blursim.meta.progress import ProgressLines, unit_of

    _positive("--generations", args.generations, 0)
    if not args.progress_every > 0:
        raise BlursimError(f"--progress-every must be > 0 seconds (got {args.progress_every})")
    _positive("--dask-workers", args.dask_workers)
    if args.memory_budget is not None and not 0 < args.memory_budget <= MAX_MEMORY_BUDGET_MB:
        raise BlursimError(f"--memory-budget must be > 0 and at most {MAX_MEMORY_BUDGET_MB:.0f} MB "
                           f"(got {args.memory_budget})")
    # every check before any compute; the memory check uses --memory-budget when given
    setup = prepare_experiment(args.experiment, memory_budget_mb=args.memory_budget)
    exp = setup.experiment
    if not (args.dask_scheduler or args.dask_workers or exp.execution.dask):
        _require_local_memory(setup, args)  # before the run directory is made
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
        print(summary_line(res.records, res.end_validation))
    return 0


def _require_local_memory(setup, args) -> None:
    """Refuse a run whose chunk of genomes (evaluated in this process) does not fit the memory this
    process may use: RAM, cgroup, ``ulimit -v``, ``$BLURSIM_MAX_MEMORY``."""
    from blursim.errors import SpecError
    from blursim.graph.memory import require
    from blursim.spec.loading import relocate

    plan = setup.memory
    flag = "--memory-budget" if args.memory_budget is not None else "$.execution.memory_budget_mb"
    try:
        require(plan.chunk_bytes, what=f"a chunk of {plan.chunk} genome(s)", path=flag,
                hint="Lower the memory budget so that chunks are smaller.")
    except SpecError as e:
        raise (e if args.memory_budget is not None else relocate(e, setup.experiment)) from None


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


@dataclass
class _EvalTask:
    """One task of ``blursim evaluate``: its label, dataset, network and seed."""

    label: str
    dataset: Any
    spec: Any
    program: Any
    seed: int
    source: str


def _read_format(path: str) -> str | None:
    """The ``format`` of the JSON document at ``path``, or None when it cannot tell (the loader
    that reads it then says why)."""
    import json

    from blursim.limits import MAX_DOCUMENT_BYTES, read_regular_file

    try:
        doc = json.loads(read_regular_file(path, limit=MAX_DOCUMENT_BYTES, what="document",
                                           error=BlursimError).decode("utf-8"))
    except (BlursimError, OSError, ValueError):
        return None
    return doc.get("format") if isinstance(doc, dict) and isinstance(doc.get("format"), str) else None


def _experiment_plan(args) -> tuple[list[_EvalTask], dict, str]:
    """The tasks, protocol and description of ``evaluate EXPERIMENT``: its validation tasks (its
    training tasks' test split when it has none) under its validation protocol after its last
    generation, with its validation seeds (:func:`blursim.meta.seeds.validation_seeds`)."""
    from blursim.errors import SpecError
    from blursim.meta import prepare_experiment
    from blursim.meta.seeds import validation_seeds

    setup = prepare_experiment(args.spec)
    exp = setup.experiment
    which = setup.val_tasks or setup.train_tasks
    proto = setup.validation_protocol(max(exp.generations - 1, 0))
    seeds = validation_seeds(exp.seed, len(which))
    if args.seed is not None:
        seeds = [args.seed] * len(which)
    tasks = [_EvalTask(t.label, t.dataset, setup.networks[t.network], setup.programs[t.network], int(sd),
                       args.spec) for t, sd in zip(which, seeds)]
    if args.task:  # a selection of those, by label
        labels = [t.label for t in tasks]
        for name in args.task:
            if name not in labels:
                raise SpecError(f"the experiment has no validation task labelled {name!r}", path="--task",
                                value=name, choices=labels,
                                hint="--task with an experiment picks among its validation tasks.")
        tasks = [t for t in tasks if t.label in args.task]
    plan = {"steps": proto.steps, "batch": proto.batch_size, "replicas": proto.replicas,
            "query_batches": proto.query_batches, "query_batch_size": proto.query_size,
            "backend": exp.execution.backend, "dtype": exp.execution.dtype}
    kind = "validation" if setup.val_tasks else "training (their test split)"
    return tasks, plan, f"experiment {setup.name!r}: its {kind} tasks and validation protocol"


def _spec_plan(args) -> tuple[list[_EvalTask], dict, str]:
    from blursim.data import load_dataset
    from blursim.errors import SpecError
    from blursim.graph import check_dataset_fit, compile_network
    from blursim.spec import load_network

    if not args.task:
        raise SpecError("evaluate SPEC needs at least one --task NAME (repeatable)", path="--task")
    spec = load_network(args.spec)
    prog = compile_network(spec)
    opts = parse_options(args.task_opt)
    tasks = []
    for i, name in enumerate(args.task):
        if name in args.task[:i]:
            raise SpecError(f"--task {name} is given twice", path="--task", value=name)
        ds = load_dataset(name, dict(opts), path="--task")
        check_dataset_fit(spec, ds, name)
        tasks.append(_EvalTask(name, ds, spec, prog, args.seed or 0, args.spec))
    plan = {"steps": 100, "batch": 32, "replicas": 5, "query_batches": None, "query_batch_size": None,
            "backend": None, "dtype": None}
    return tasks, plan, args.spec


def _genomes(args, program) -> list[tuple[str, Any]]:
    """``(label, GenomeSpec)`` of every --genome and --preset, in the order given."""
    import math

    from blursim.errors import SpecError
    from blursim.genome import make_preset
    from blursim.genome.requirements import preset_spec

    out = [(g, load_genome_for(g, program)) for g in args.genome or []]
    kw = {}
    if args.lr is not None:
        if not math.isfinite(args.lr) or abs(args.lr) > 1e30:
            raise SpecError("--lr must be a finite number", value=args.lr, path="--lr")
        kw["lr"] = args.lr
    for name in args.preset or []:
        preset_spec(name, program.spec, source=args.spec,  # refuses a spec without the preset's rules
                    flag="--apply-preset-rules to `blursim run` (evaluate takes the spec as it is)")
        out.append((f"preset:{name}", make_preset(name, k=program.k, groups=program.groups,
                                                  seed=args.genome_seed, **kw)))
    if not out:
        raise SpecError("say which genome(s) to evaluate: --genome FILE and/or --preset NAME "
                        "(each repeatable)", path="--genome")
    labels = [lab for lab, _ in out]
    for i, lab in enumerate(labels):
        if lab in labels[:i]:
            raise SpecError(f"genome {lab} is given twice", path="--genome" if i < len(args.genome or []) else "--preset",
                            value=lab)
    return out


def cmd_evaluate(args) -> int:
    from blursim.sim import make_simulator, train_and_evaluate

    _positive("--steps", args.steps, 0)
    _positive("--replicas", args.replicas)
    _positive("--batch", args.batch)
    _positive("--eval-every", args.eval_every)
    _positive("--query-batches", args.query_batches)
    _positive("--seed", args.seed, 0)
    experiment = _read_format(args.spec) == "blursim.experiment/1"
    tasks, plan, where = (_experiment_plan if experiment else _spec_plan)(args)
    for key in ("steps", "batch", "replicas", "backend", "dtype"):
        if getattr(args, key) is not None:
            plan[key] = getattr(args, key)
    if args.query_batches is not None:
        plan["query_batches"] = args.query_batches
    if plan["query_batches"] is not None and plan["query_batch_size"] is None:
        plan["query_batch_size"] = plan["batch"]
    genomes = _genomes(args, tasks[0].program)
    steps, batch, replicas = plan["steps"], plan["batch"], plan["replicas"]
    for t in tasks:
        rows = batch if plan["query_batches"] else (t.dataset.n_test if args.split == "test" else t.dataset.n_train)
        require_memory(t.spec, batch=batch, rows=rows, replicas=replicas, genomes=len(genomes),
                       dtype=plan["dtype"], source=t.source)
    evals = sorted(set(range(0, steps + 1, args.eval_every)) | {steps})
    sims: dict[int, Any] = {}
    results = []
    for t in tasks:
        sim = sims.get(id(t.program))
        if sim is None:
            sim = sims[id(t.program)] = make_simulator(t.program, plan["backend"], plan["dtype"])
        results.append(train_and_evaluate(
            sim, [g for _, g in genomes], t.dataset, steps=steps, batch_size=batch, replicas=replicas,
            seed=t.seed, eval_steps=evals, n_query_batches=plan["query_batches"],
            query_batch_size=plan["query_batch_size"], split=args.split))
    backend = f"{sim.backend.name}/{sim.backend.dtype_name}"
    if len(genomes) == 1 and len(tasks) == 1 and not experiment:
        return _evaluate_one(args, tasks[0], genomes[0][0], results[0], sim, plan)
    return _evaluate_many(args, tasks, genomes, results, plan, where, backend)


def _metric(res, s: int) -> tuple[str, np.ndarray, np.ndarray | None]:
    """``(name, (R, E) values, per-step mean cross-entropy or None)`` of genome ``s`` of a result:
    accuracy for class labels, the mean squared error for target vectors."""
    name, m = ("mse", res.mse[s]) if res.mse is not None else ("accuracy", res.accuracy[s])
    ce_mean = None
    if res.cross_entropy is not None:
        ce = res.cross_entropy[s]
        ce_mean = np.where(np.isfinite(ce), ce, np.nan).mean(0)
    return name, m, ce_mean


def _curve_json(res, s: int) -> dict:
    name, m, ce_mean = _metric(res, s)
    out = {
        "steps": res.steps.tolist(),
        f"{name}_mean": m.mean(0).tolist(), f"{name}_std": m.std(0).tolist(),
        f"{name}_min": m.min(0).tolist(), f"{name}_max": m.max(0).tolist(), name: m.tolist(),
        f"final_{name}_mean": float(m[:, -1].mean()), f"final_{name}_std": float(m[:, -1].std()),
        "diverged_replicas": int(res.diverged[s].sum()),
    }
    if ce_mean is not None:
        out["cross_entropy_mean"] = [None if not np.isfinite(v) else float(v) for v in ce_mean]
    return out


def _print_curve(res, s: int) -> None:
    """The per-step table of genome ``s``: mean, std, min, max over replicas (and cross-entropy)."""
    name, m, ce_mean = _metric(res, s)
    # column widths and number formats: mean, std, min, max
    cols = [(10, ".6g")] * 4 if name == "mse" else [(7, ".4f"), (6, ".4f"), (6, ".4f"), (6, ".4f")]
    heads = ("mean", "± std", "min", "max")
    print(f"{'step':>6}" + "".join(f"  {h:>{w}}" for h, (w, _) in zip(heads, cols))
          + ("" if ce_mean is None else f"  {'x-entropy':>9}"))
    for e, st in enumerate(res.steps):
        a = m[:, e]
        vals = (a.mean(), a.std(), a.min(), a.max())
        print(f"{int(st):>6}" + "".join(f"  {v:{w}{g}}" for v, (w, g) in zip(vals, cols))
              + ("" if ce_mean is None else f"  {ce_mean[e]:9.4f}"))


def _evaluate_one(args, task: _EvalTask, label: str, res, sim, plan: dict) -> int:
    """One genome on one task of a network spec: the per-step table (or its JSON)."""
    ds = task.dataset
    name, m, _ = _metric(res, 0)
    if args.json:
        print_json({
            "spec": args.spec, "genome": label, "task": task.label,
            "task_options": ds.meta.get("options", {}), "split": args.split, "seed": task.seed,
            "batch": plan["batch"], "replicas": plan["replicas"],
            "backend": sim.backend.name, "dtype": sim.backend.dtype_name,
            **_curve_json(res, 0), "seconds": res.seconds,
        })
        return 0
    n = len(ds.y_test) if args.split == "test" else len(ds.y_train)
    q = plan["query_batches"]
    where = f"{q} query batches of {plan['query_batch_size']}" if q else f"{n} examples"
    what = "; mean squared error of state 0" if name == "mse" else ""
    print(f"# {label} on {task.label} ({args.split} split, {where}{what}); {args.spec}, "
          f"batch={plan['batch']}, replicas={plan['replicas']}, seed={task.seed}, "
          f"backend={sim.backend.name}/{sim.backend.dtype_name}")
    _print_curve(res, 0)
    if res.diverged.any():
        print(f"# warning: {int(res.diverged.sum())} replica(s) diverged (non-finite synapses)")
    g = ".6g" if name == "mse" else ".4f"
    print(f"# final {name} {m[:, -1].mean():{g}} ± {m[:, -1].std():{g}} over {plan['replicas']} "
          f"replicas after {plan['steps']} steps ({res.seconds:.2f} s)")
    return 0


def _evaluate_many(args, tasks, genomes, results, plan: dict, where: str, backend: str) -> int:
    """Every genome on every task: a table of final numbers, genomes by tasks (or JSON)."""
    name = _metric(results[0], 0)[0]
    seconds = float(sum(r.seconds for r in results))
    if args.json:
        print_json({
            "source": args.spec, "evaluated_on": where, "split": args.split, "steps_trained": plan["steps"],
            "batch": plan["batch"], "replicas": plan["replicas"], "query_batches": plan["query_batches"],
            "backend": backend, "metric": name, "genomes": [lab for lab, _ in genomes],
            "tasks": [{"label": t.label, "name": t.dataset.name, "options": t.dataset.meta.get("options", {}),
                       "seed": t.seed} for t in tasks],
            "results": [{"genome": lab, "task": t.label, **_curve_json(res, s)}
                        for t, res in zip(tasks, results) for s, (lab, _) in enumerate(genomes)],
            "seconds": seconds,
        })
        return 0
    finals = np.array([[_metric(res, s)[1][:, -1] for res in results] for s in range(len(genomes))])  # (G, T, R)
    mean, std = finals.mean(-1), finals.std(-1)
    lower = name == "mse"
    q = plan["query_batches"]
    print(f"# {len(genomes)} genome(s) x {len(tasks)} task(s) from {where}")
    print(f"# final {name} after {plan['steps']} steps, mean ± std over {plan['replicas']} replicas "
          f"({args.split} split, {f'{q} query batches' if q else 'whole split'}); batch={plan['batch']}, "
          f"seeds={','.join(str(t.seed) for t in tasks)}, backend={backend}; * marks the best per task "
          f"({'lower' if lower else 'higher'} is better)")
    lw = max(len("genome"), *(len(lab) for lab, _ in genomes))
    cw = max(16, *(len(t.label) for t in tasks))
    print(f"{'genome':<{lw}}" + "".join(f"  {t.label:>{cw}}" for t in tasks) + f"  {'mean':>8}")
    best = mean.argmin(0) if lower else mean.argmax(0)
    fmt = ".4g" if lower else ".4f"
    for s, (lab, _) in enumerate(genomes):
        cells = []
        for j in range(len(tasks)):
            mark = "*" if best[j] == s and len(genomes) > 1 else " "
            cells.append(f"{mean[s, j]:{fmt}} ± {std[s, j]:{fmt}}{mark}")
        print(f"{lab:<{lw}}" + "".join(f"  {c:>{cw}}" for c in cells) + f"  {mean[s].mean():8{fmt}}")
    diverged = sum(int(r.diverged.sum()) for r in results)
    if diverged:
        print(f"# warning: {diverged} replica(s) diverged (non-finite synapses)")
    if args.curves:
        for t, res in zip(tasks, results):
            for s, (lab, _) in enumerate(genomes):
                print(f"\n# {lab} on {t.label}")
                _print_curve(res, s)
    print(f"# {seconds:.2f} s")
    return 0
