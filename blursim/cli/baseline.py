"""``blursim baseline``: SGD / momentum / Adam on the same network and batches as ``blursim run``."""

from __future__ import annotations


import numpy as np

from blursim.cli.common import parse_options, print_json, require_memory

_OPTIMIZERS = ["sgd", "momentum", "nesterov", "adam"]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "baseline",
        help="train the network by gradient descent (SGD, momentum, Adam) and print held-out accuracy per step",
        description="Gradient-descent baselines (paper Sec. 4.3, Fig. 6): the spec's network as a plain "
                    "feed-forward net (state-0 activations, softmax cross-entropy), started from the same "
                    "initial synapses and trained on the same batches as 'blursim run' with the same seed.",
    )
    p.add_argument("spec", metavar="SPEC", help="network spec JSON (acyclic)")
    p.add_argument("--task", required=True, help="dataset name (blursim list datasets)")
    p.add_argument("--task-opt", action="append", metavar="KEY=VALUE",
                   help="dataset option, e.g. --task-opt seed=3 (repeatable)")
    p.add_argument("--optimizer", nargs="+", choices=_OPTIMIZERS, default=["sgd"], metavar="NAME",
                   help="one or more of sgd, momentum, nesterov, adam (default sgd)")
    p.add_argument("--lr", nargs="+", type=float, default=None, metavar="LR",
                   help="one or more learning rates (default 1e-4 1e-3 1e-2 1e-1 1)")
    p.add_argument("--beta", type=float, default=None,
                   help="momentum coefficient of momentum/nesterov (default 0.9)")
    p.add_argument("--steps", type=int, default=100, help="training steps T (default 100)")
    p.add_argument("--batch", type=int, default=32, help="batch size B (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed for initial weights and data batches")
    p.add_argument("--replicas", type=int, default=1, help="independent weight initialisations")
    p.add_argument("--eval-every", type=int, default=None,
                   help="evaluate every N steps (default: about 10 evaluations)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                   help="floating point precision (default float64)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=cmd_baseline)


def _check(name: str, v, minimum) -> None:
    from blursim.errors import SpecError

    if v < minimum:
        raise SpecError(f"{name} must be >= {minimum}", value=v, path=name)


def cmd_baseline(args) -> int:
    from blursim.baselines import DEFAULT_LRS, FeedForwardNet, lr_sweep, make_optimizer
    from blursim.baselines.optimizers import check_lr
    from blursim.data import load_dataset
    from blursim.errors import SpecError
    from blursim.graph import check_dataset_fit, compile_network
    from blursim.spec import load_network

    _check("--steps", args.steps, 0)
    _check("--batch", args.batch, 1)
    _check("--replicas", args.replicas, 1)
    every = args.eval_every if args.eval_every is not None else max(1, args.steps // 10)
    _check("--eval-every", every, 1)
    lrs = [check_lr(v, path="--lr") for v in (args.lr or DEFAULT_LRS)]
    opts = []
    for name in dict.fromkeys(args.optimizer):
        hyper = {"beta": args.beta} if args.beta is not None and name in ("momentum", "nesterov") else {}
        opts.append(make_optimizer(name, **hyper))
    spec = load_network(args.spec)
    prog = compile_network(spec)
    try:
        FeedForwardNet(prog, dtype=args.dtype)  # acyclic, every activation differentiable
    except SpecError as e:
        raise e.with_source(args.spec) from None
    ds = load_dataset(args.task, parse_options(args.task_opt), path="--task")
    check_dataset_fit(spec, ds, args.task, labels_only=True)
    require_memory(spec, batch=args.batch, rows=ds.n_test, replicas=args.replicas,
                   genomes=len(opts) * len(lrs), dtype=args.dtype, source=args.spec)
    evals = sorted(set(range(0, args.steps + 1, every)) | {args.steps})
    table = lr_sweep(prog, ds, optimizers=opts, lrs=lrs, steps=args.steps, batch_size=args.batch,
                     replicas=args.replicas, seed=args.seed, eval_steps=evals, dtype=args.dtype)
    if args.json:
        out = {
            "spec": args.spec, "task": args.task, "task_options": ds.meta.get("options", {}),
            "seed": args.seed, "batch": args.batch, "replicas": args.replicas, "dtype": args.dtype,
            "optimizers": table.optimizers, "lrs": table.lrs.tolist(), **table.to_dict(),
        }
        print_json(out)
        return 0
    print(f"# {args.spec} on {args.task}: gradient baselines, batch={args.batch}, "
          f"replicas={args.replicas}, seed={args.seed}, {args.dtype}")
    print(f"# held-out accuracy (mean over replicas) on {len(ds.y_test)} test examples; "
          "same initial weights and batches as 'blursim run' with this seed")
    for o, name in enumerate(table.optimizers):
        print(f"\n## {name}")
        head = "".join(f"  {'lr=' + format(lr, 'g'):>10}" for lr in table.lrs)
        print(f"{'step':>6}{head}")
        for e, s in enumerate(table.steps):
            row = "".join(f"  {table.accuracy[o, li, :, e].mean():10.4f}" for li in range(len(table.lrs)))
            print(f"{int(s):>6}{row}")
        div = table.diverged[o].sum(axis=-1)
        if div.any():
            bad = ", ".join(f"lr={lr:g}" for lr, d in zip(table.lrs, div) if d)
            print(f"# diverged (non-finite weights): {bad}")
    rows = table.rows()
    best = max(rows, key=lambda r: (np.nan_to_num(r["final_accuracy"], nan=-1.0)))
    print(f"\n# best final accuracy {best['final_accuracy']:.4f}: {best['optimizer']} lr={best['lr']:g} "
          f"after {args.steps} steps ({table.seconds:.2f} s)")
    return 0
