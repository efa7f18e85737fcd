"""``blursim validate``, ``schema``, ``graph`` and ``list``."""

from __future__ import annotations

import json
import sys

from blursim.cli.common import atomic_write_text, parse_options
from blursim.errors import SpecError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "validate", help="validate network, genome and experiment documents; print their memory estimate",
        description="Check documents completely (network specs compile, experiments are prepared: tasks, "
                    "genome, strategy, memory), each by the kind its \"format\" names, without running "
                    "anything. Prints one line per document, with the memory it needs.",
    )
    p.add_argument("specs", nargs="+", metavar="DOCUMENT")
    p.add_argument("--task", help="also check that network specs fit this dataset")
    p.add_argument("--task-opt", action="append", metavar="KEY=VALUE")
    p.add_argument("--batch", type=int, default=32,
                   help="batch size of a network's memory estimate (default 32, as blursim run)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "schema", help="print (or write) the JSON Schema of a document type",
        description="The JSON Schema (draft 2020-12) of network, genome and experiment documents: every "
                    "field described, registered names as enums. Editors use it to check and complete "
                    "documents (docs/schemas.md shows the VS Code settings).",
    )
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="network, genome, experiment (with --out: default all three)")
    p.add_argument("--out", metavar="DIR", help="write NAME.schema.json into DIR instead of printing")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("graph", help="summarise a network spec; export DOT or GraphML")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--dot", metavar="FILE", help="write Graphviz DOT")
    p.add_argument("--graphml", metavar="FILE", help="write GraphML")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("list", help="list registered names (datasets, presets and strategies "
                       "with their options and defaults)")
    p.add_argument("what", nargs="?", default="all",
                   choices=["all", "activations", "connectivity", "feedback", "datasets",
                            "presets", "schemas", "strategies"])
    p.add_argument("-v", "--verbose", action="store_true",
                   help="one line per option: name, default and what it does")
    p.set_defaults(func=cmd_list)


def cmd_validate(args) -> int:
    from blursim.data import load_dataset
    from blursim.errors import SpecError
    from blursim.graph import check_dataset_fit, compile_network
    from blursim.graph.memory import estimate
    from blursim.limits import MAX_BATCH
    from blursim.spec import GenomeSpec, NetworkSpec, load_any

    if not 1 <= args.batch <= MAX_BATCH:
        raise SpecError(f"--batch must be in 1..{MAX_BATCH}", value=args.batch, path="--batch")
    _load_extra_schemas()
    ds = None
    if args.task:
        ds = load_dataset(args.task, parse_options(args.task_opt), path="--task")
    for path in args.specs:
        doc = load_any(path)
        if isinstance(doc, NetworkSpec):
            prog = compile_network(doc)
            if ds is not None:
                check_dataset_fit(doc, ds, args.task)
            n_syn = sum(q.n_synapses for q in prog.projs)
            est = estimate(doc, batch=args.batch)
            # what `run` refuses (one network, one replica, float32) validate refuses too (exit 2)
            _require(est.total(), path, f"one network with batches of {args.batch}", "--batch",
                     "Use a smaller network or --batch (or a machine with more memory).")
            print(f"{path}: ok (network, k={prog.k}, {len(prog.pops)} populations, {len(prog.projs)} "
                  f"projections, {n_syn} forward synapses per channel; {est.describe()})")
        elif args.task:
            raise SpecError("--task checks network specs only; this document is not one", source=path,
                            path="$.format")
        elif isinstance(doc, GenomeSpec):
            print(f"{path}: ok (genome, k={doc.k}, groups {', '.join(doc.groups)})")
        else:
            _validate_experiment(path, doc)
    return 0


def _require(need: int, source: str, what: str, flag: str, hint: str) -> None:
    """Refuse (exit 2, as ``run`` and ``meta-train`` would) a document needing more than the memory
    this process may use (RAM, cgroup, ``ulimit -v``, ``$BLURSIM_MAX_MEMORY``)."""
    from blursim.graph.memory import require

    try:
        require(need, what=what, path=flag, hint=hint)
    except SpecError as e:
        raise type(e)(e.message, path=e.path, hint=e.hint, source=source) from None


def _validate_experiment(path: str, doc) -> None:
    from blursim.meta import prepare_experiment

    setup = prepare_experiment(doc)
    exp, plan = setup.experiment, setup.memory
    if exp.execution.dask is None:
        # evaluated in this process: meta-train refuses a chunk that does not fit it
        _require(plan.chunk_bytes, path, f"a chunk of {plan.chunk} genome(s)", "$.execution.memory_budget_mb",
                 "Lower the memory budget so that chunks are smaller.")
    if exp.strategy.popsize is not None:
        how = f"{exp.strategy.name} with popsize {exp.strategy.popsize}, {exp.generations} generations"
    else:  # gradient meta-training
        how = f"{exp.strategy.name} with {setup.strategy.runs} run(s), {exp.generations} steps"
    print(f"{path}: ok (experiment {setup.name!r}: {len(setup.train_tasks)} training and "
          f"{len(setup.val_tasks)} validation task(s), genome of {setup.layout.size} values, "
          f"{how}; {plan.describe()})")


def cmd_schema(args) -> int:
    from pathlib import Path

    from blursim.errors import SpecError
    from blursim.spec import SCHEMAS, schema_json

    _load_extra_schemas()
    names = args.names or (SCHEMAS.names() if args.out else [])
    if len(names) != 1 and not args.out:
        raise SpecError("name one document type to print, or give --out DIR to write several", path="NAME",
                        choices=SCHEMAS.names())
    texts = {name: json.dumps(schema_json(name), indent=2) + "\n" for name in names}
    if not args.out:
        for text in texts.values():
            sys.stdout.write(text)
        return 0
    out = Path(args.out)
    if not out.is_dir():
        raise SpecError(f"--out {args.out!r} is not a directory; create it first", path="--out")
    for name, text in texts.items():
        atomic_write_text(out / f"{name}.schema.json", text)
        print(f"wrote {out / f'{name}.schema.json'}")
    return 0


def _load_extra_schemas() -> None:
    try:  # the experiment document registers itself when the meta package is present
        import blursim.meta.experiment  # noqa: F401
    except ImportError:
        pass


def dot_string(text: str) -> str:
    """``text`` as a quoted Graphviz ID: backslashes and quotes escaped, line breaks as ``\\n``,
    so a population name can never end the string and inject statements."""
    body = str(text).replace("\\", "\\\\").replace('"', '\\"')
    body = body.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")
    return f'"{body}"'


def _dot(g, prog) -> str:
    lines = [f"digraph {dot_string(prog.spec.name or 'network')} {{", "  rankdir=LR;"]
    shapes = {"input": "box", "hidden": "ellipse", "output": "doubleoctagon"}
    for p in prog.pops:
        label = dot_string(p.name)[:-1] + f'\\n{p.role} n={p.size}"'
        lines.append(f"  {dot_string(p.name)} [shape={shapes[p.role]}, label={label}];")
    for q in prog.projs:
        style = "solid" if q.mask is None else "dashed"
        src, dst = q.pre, q.post
        if q.pathway == "feedback":  # backward pass only, drawn in the direction it carries
            style, src, dst = "dotted", q.post, q.pre
        label = dot_string(q.name)[:-1] + f'\\n{q.kind}"'
        lines.append(
            f"  {dot_string(prog.pops[src].name)} -> {dot_string(prog.pops[dst].name)} "
            f"[label={label}, style={style}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def cmd_graph(args) -> int:
    from blursim.graph import build_graph, compile_network
    from blursim.spec import load_network

    spec = load_network(args.spec)
    prog = compile_network(spec)
    print(prog.summary())
    g = build_graph(spec)
    if args.dot:
        atomic_write_text(args.dot, _dot(g, prog))
        print(f"wrote {args.dot}")
    if args.graphml:
        import io

        import networkx as nx

        buf = io.BytesIO()
        nx.write_graphml(g, buf)
        atomic_write_text(args.graphml, buf.getvalue().decode())
        print(f"wrote {args.graphml}")
    return 0


def cmd_list(args) -> int:
    from blursim.data import DATASETS
    from blursim.genome import PRESETS
    from blursim.genome.presets import PRESET_REQUIREMENTS
    from blursim.spec.options import option_table
    from blursim.graph.connectivity import CONNECTIVITY
    from blursim.sim import ACTIVATIONS, FEEDBACK
    from blursim.spec import SCHEMAS

    _load_extra_schemas()
    regs = {"activations": ACTIVATIONS, "connectivity": CONNECTIVITY, "feedback": FEEDBACK,
            "datasets": DATASETS, "presets": PRESETS, "schemas": SCHEMAS}
    try:
        from blursim.meta.strategies import STRATEGIES

        regs["strategies"] = STRATEGIES
    except ImportError:
        pass
    for name, reg in regs.items():
        if args.what not in ("all", name):
            continue
        print(f"{name}:")
        for item, doc in reg.describe().items():
            model = reg.options(item)
            table = option_table(model) if model is not None else []
            extra = ""
            if table and not args.verbose:
                extra = "  [" + ", ".join(shown for _, shown, _ in table) + "]"
            print(f"  {item:<22} {doc}{extra}")
            if args.verbose:
                for _, shown, what in table:
                    print(f"      {shown:<30} {what}")
                if name == "presets" and item in PRESET_REQUIREMENTS:  # the rules it needs (docs/zoo.md)
                    print(f"      needs: {PRESET_REQUIREMENTS[item].note}")
    sys.stdout.flush()
    return 0
