"""``blursim analyze``: is a genome's update rule a gradient? (paper Sec. 3.5, Fig. 2, App. A)

Takes one full-batch BLUR step as a map ``Δw(w)`` of the chosen synapses,
computes its Jacobian ``Q`` (complex step, cross-checked by finite
differences), tests ``Q = Qᵀ`` (eq. 10) against the numerical noise floor,
searches a constant metric (eq. 13) when the number of variables is small,
and runs the circulation test.  With ``--out DIR`` it writes ``report.json``,
``fig2_asymmetry.png`` and ``circulation.png`` atomically into ``DIR``.
"""

from __future__ import annotations

import sys

from blursim.cli.common import (
    add_genome_args,
    genome_from_args,
    network_for_genome,
    parse_options,
    print_json,
    require_memory,
)

def parse_bytes(text: str) -> int:
    """``"512MiB"``, ``"2G"``, ``"1000000"`` -> bytes."""
    from blursim.errors import SpecError
    from blursim.machine import parse_size

    n = parse_size(text)
    if n is None:
        raise SpecError("expected a size such as 1000000, 512MiB or 2GiB", value=text, path="--memory-budget")
    return n


def add_parser(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="is the genome's update rule a gradient? Jacobian symmetry (Fig. 2), metric, circulation",
        description=(
            "Gradient-equivalence analysis of one full-batch BLUR step (paper Sec. 3.5, App. A): "
            "Jacobian Q = dΔw/dw, symmetry test (eq. 10), constant-metric search (eq. 13), "
            "circulation test. The batch is the training batch the genome would see next "
            "(step N for --state trained:N, step 0 otherwise)."
        ),
    )
    p.add_argument("spec", metavar="SPEC", help="network spec JSON")
    p.add_argument("--task", required=True, help="dataset name (blursim list datasets)")
    p.add_argument("--task-opt", action="append", metavar="KEY=VALUE",
                   help="dataset option, e.g. --task-opt seed=3 (repeatable)")
    add_genome_args(p)
    p.add_argument("--state", default="random", metavar="random|trained:N",
                   help="base point: fresh synapses (default) or after N training steps with the genome")
    p.add_argument("--variables", default="forward", metavar="forward|forward_backward|PROJ[,PROJ]",
                   help="which synapses are the variables: all forward synapses (default, Fig. 2), "
                        "forward and backward, or projections by name (V:PROJ for backward synapses)")
    p.add_argument("--batch", type=int, default=32, help="batch size B of the full batch (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synapse init and the batches")
    p.add_argument("--method", choices=["auto", "complex", "fd"], default="auto",
                   help="Jacobian: complex step (exact, default) or finite differences")
    p.add_argument("--no-fd-check", action="store_true",
                   help="skip the finite-difference cross-check of the complex-step Jacobian")
    p.add_argument("--metric", choices=["auto", "on", "off"], default="auto",
                   help="constant-metric search (eq. 13): auto runs it when n <= --metric-max-n")
    p.add_argument("--metric-max-n", type=int, default=48, help="largest n for --metric auto (default 48)")
    p.add_argument("--metric-states", type=int, default=8,
                   help="other random states the metric must also satisfy (default 8)")
    p.add_argument("--memory-budget", default="1GiB", help="memory budget, e.g. 512MiB (default 1GiB)")
    p.add_argument("--backend", choices=["numpy", "cupy"], default=None,
                   help="array backend (default: $BLURSIM_BACKEND or numpy); always float64/complex128")
    p.add_argument("--out", metavar="DIR", help="write report.json and the plots into DIR")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args) -> int:
    from blursim.analysis import analyze, parse_state
    from blursim.data import load_dataset
    from blursim.errors import SpecError
    from blursim.graph import check_dataset_fit, compile_network
    from blursim.sim import train_batch
    from blursim.spec import load_network

    if args.batch < 1:
        raise SpecError("--batch must be >= 1", value=args.batch, path="--batch")
    if args.metric_states < 0:
        raise SpecError("--metric-states must be >= 0", value=args.metric_states, path="--metric-states")
    budget = parse_bytes(args.memory_budget)
    kind, n_steps = parse_state(args.state)
    spec = network_for_genome(args, load_network(args.spec), source=args.spec)
    prog = compile_network(spec)
    ds = load_dataset(args.task, parse_options(args.task_opt), path="--task")
    check_dataset_fit(spec, ds, args.task, labels_only=True)
    genome = genome_from_args(args, prog)
    require_memory(spec, batch=args.batch, dtype="float64", source=args.spec)
    x, y = train_batch(ds.x_train, ds.y_train, n_steps, args.seed, args.batch)

    def log(msg: str) -> None:
        if not args.json:
            print(f"# {msg}", file=sys.stderr, flush=True)

    metric = {"auto": "auto", "on": True, "off": False}[args.metric]
    report = analyze(
        prog, genome, x, y, variables=args.variables, state=args.state, dataset=ds,
        state_batch_size=args.batch, seed=args.seed, method=args.method, check_fd=not args.no_fd_check,
        metric=metric, metric_max_n=args.metric_max_n, metric_states=args.metric_states,
        out_dir=args.out, memory_budget=budget, backend=args.backend, log=log,
    )
    d = report.to_dict()
    d["inputs"].update({
        "spec": args.spec, "task": args.task, "task_options": ds.meta.get("options", {}),
        "genome_source": args.genome or f"preset:{args.preset}", "batch_step": n_steps,
    })
    if args.out:  # record the command-line inputs in the written report too
        from pathlib import Path

        from blursim.analysis.report import FILES
        from blursim.io import atomic_write_json

        atomic_write_json(Path(args.out) / FILES["report"], d)
    if args.json:
        print_json(d)
        return 0
    print(f"# {args.spec} on {args.task}: genome={args.genome or 'preset ' + args.preset}, "
          f"state={args.state}, batch={args.batch}, seed={args.seed}")
    print(report.summary())
    return 0
