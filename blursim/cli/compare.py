"""``blursim compare``: genomes, presets and gradient optimizers x tasks x horizons (:mod:`blursim.compare`)."""

from __future__ import annotations

import sys

from blursim.cli.common import parse_options, print_json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="genomes, zoo presets and SGD/momentum/Adam side by side: tasks x horizons, tuned lrs, CIs",
        description="Train every entry (a genome file, a preset of the rule zoo, a gradient optimizer) on "
                    "every task for every horizon T from the same initial synapses on the same batches, "
                    "several seeds and initialisations each. Learning rates of optimizers (and of presets "
                    "given without --preset-lr) are tuned per horizon on a validation split carved from "
                    "the training split; the test split only scores. Prints a table (mean ± sd and 95%% CI "
                    "over seeds); --out DIR writes compare.json, compare.png and compare.txt.",
    )
    p.add_argument("spec", metavar="SPEC", nargs="?",
                   help="network spec JSON for every task (optional with --quick: a 2-16-2 tanh network)")
    p.add_argument("--task", action="append", metavar="NAME", help="dataset (repeatable; --quick: cross)")
    p.add_argument("--task-opt", action="append", metavar="KEY=VALUE", help="option of every task (repeatable)")
    p.add_argument("--genome", action="append", metavar="FILE", default=[], help="genome JSON (repeatable)")
    p.add_argument("--preset", action="append", metavar="NAME", default=[],
                   help="zoo preset, run with the rules it needs applied (repeatable; blursim list presets)")
    p.add_argument("--preset-lr", type=float, default=None,
                   help="fixed eta_tilde of every preset that takes lr (default: tuned like the optimizers)")
    p.add_argument("--optimizer", nargs="+", default=[], metavar="NAME",
                   choices=["sgd", "momentum", "nesterov", "adam"], help="gradient optimizers")
    p.add_argument("--horizons", nargs="+", type=int, metavar="T", help="training steps to score after")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds 0..N-1 (default 5; --quick 3)")
    p.add_argument("--replicas", type=int, default=None, help="initialisations per seed (default 2)")
    p.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--lr-grid", nargs=2, type=float, metavar=("LO", "HI"), default=None,
                   help="half-decade learning-rate grid LO..HI before edge extension (default 1e-3 1)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of the training split held out for tuning (default 0.2)")
    p.add_argument("--val-seed", type=int, default=0, help="seed of the validation carve (default 0)")
    p.add_argument("--backend", choices=["numpy", "cupy", "jax"], default=None,
                   help="array backend of the BLUR runs (default numpy)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                   help="precision of the BLUR runs (default float64; the optimizers run in float64)")
    p.add_argument("--quick", action="store_true",
                   help="a 2-D task (cross), backprop vs SGD/momentum/Adam, T = 30, 100, 3 seeds: under a minute")
    p.add_argument("--out", metavar="DIR", help="write compare.json, compare.png and compare.txt")
    p.add_argument("--json", action="store_true", help="print the JSON result instead of the table")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    from blursim.baselines.train import half_decade_grid
    from blursim.compare import DEFAULT_GRID, QUICK, QUICK_SPEC, Entry, Task, compare
    from blursim.errors import SpecError

    quick = QUICK if args.quick else {}
    spec = args.spec or (QUICK_SPEC if args.quick else None)
    if spec is None:
        raise SpecError("compare needs a network spec (or --quick)", path="SPEC")
    entries = [Entry("genome", f, genome=f, label=f"genome {f}") for f in args.genome]
    popts = {} if args.preset_lr is None else {"lr": args.preset_lr}
    entries += [Entry("preset", n, options=popts) for n in dict.fromkeys(args.preset)]
    entries += [Entry("optimizer", n) for n in dict.fromkeys(args.optimizer)]
    if not entries:
        if not args.quick:
            raise SpecError("name at least one entry: --genome FILE, --preset NAME or --optimizer NAME",
                            path="--genome")
        entries = list(quick["entries"])
    names = args.task or quick.get("tasks")
    if not names:
        raise SpecError("name at least one task with --task NAME (blursim list datasets)", path="--task")
    topts = parse_options(args.task_opt)
    tasks = [Task(n, topts) for n in names]
    horizons = args.horizons or quick.get("horizons")
    if not horizons:
        raise SpecError("give the horizons (training steps) with --horizons T [T ...]", path="--horizons")
    for flag, v in (("--seeds", args.seeds), ("--replicas", args.replicas), ("--batch", args.batch)):
        if v is not None and v < 1:
            raise SpecError(f"{flag} must be >= 1", value=v, path=flag)
    lo_hi = args.lr_grid or quick.get("grid") or DEFAULT_GRID
    if not 0 < lo_hi[0] <= lo_hi[1]:
        raise SpecError("--lr-grid needs 0 < LO <= HI", value=list(lo_hi), path="--lr-grid")
    out_dir = None
    if args.out:
        from blursim.cli.common import ensure_writable_dir

        out_dir = ensure_writable_dir(args.out)

    def log(msg: str) -> None:
        print(f"# {msg}", file=sys.stderr, flush=True)

    res = compare(
        spec, entries, tasks, horizons=horizons, seeds=args.seeds or quick.get("seeds", 5),
        replicas=args.replicas or quick.get("replicas", 2), batch_size=args.batch,
        grid=half_decade_grid(*lo_hi), val_fraction=args.val_fraction, val_seed=args.val_seed,
        backend=args.backend, dtype=args.dtype, log=log,
    )
    if isinstance(spec, dict):
        res.settings["spec"] = "quick (blursim.compare.QUICK_SPEC)"
    table = res.table()
    notes = [f"# {k}: ran with {'; '.join(v)}" for k, v in res.spec_changes.items() if v]
    if notes:
        table += "\n" + "\n".join(notes)
    table += f"\n# {res.seconds:.1f} s"
    if out_dir is not None:
        from blursim.io import atomic_write_json, atomic_write_text

        atomic_write_json(out_dir / "compare.json", res.to_dict())
        atomic_write_text(out_dir / "compare.txt", table + "\n")
        res.plot(out_dir / "compare.png")
    if args.json:
        print_json(res.to_dict())
    else:
        print(table)
        if out_dir is not None:
            print(f"# wrote {out_dir / 'compare.json'}, compare.png, compare.txt")
    return 0
