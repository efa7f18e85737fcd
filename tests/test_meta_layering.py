"""The meta layer's modules import one another without a circle (issue 20 item 6), counting the
imports inside functions too (a function-level import only hides a circle), and no caller
branches on whether a strategy is an evolution strategy."""

import ast
from pathlib import Path

import blursim

PACKAGE = Path(blursim.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(prefix: str) -> dict[str, set[str]]:
    """``module -> modules it imports`` for the modules under ``prefix`` (every import statement,
    at any depth; ``from package import module`` counts as importing the module)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        if not mod.startswith(prefix):
            continue
        out = graph.setdefault(mod, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = {f"{node.module}.{a.name}" for a in node.names} & files.keys()
                out |= subs or {node.module}
            elif isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
        out &= {m for m in files if m.startswith(prefix)}
        out.discard(mod)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle found by a depth-first search (one per back edge)."""
    found, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_search_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_meta_modules_import_each_other_without_a_circle():
    graph = import_graph("blursim.meta")
    assert {"blursim.meta.trainer", "blursim.meta.gradient_step", "blursim.meta.observers"} <= set(graph)
    assert "blursim.meta.gradient_step" in graph["blursim.meta.trainer"]  # the graph sees real imports
    assert cycles(graph) == []


def test_no_caller_asks_whether_a_strategy_is_an_evolution_strategy():
    hits = [p for p in PACKAGE.rglob("*.py") if "is_evolution" in p.read_text(encoding="utf-8")]
    assert hits == []


def test_every_strategy_offers_the_interface_and_has_a_step():
    """Each registered strategy says its kind, its experiment settings and how it is built, and
    the trainer has a step for its kind: no caller needs to know which strategy it holds."""
    import inspect

    from blursim.meta.strategies import STRATEGIES, MetaOptimizer
    from blursim.meta.trainer import STEPS

    members = [n for n, _ in inspect.getmembers(MetaOptimizer) if not n.startswith("_")]
    assert {"kind", "experiment_fields", "from_experiment", "init", "mean", "state_to_data"} <= set(
        members + list(MetaOptimizer.__annotations__))
    kinds = set()
    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        for attr in set(members) | set(MetaOptimizer.__annotations__):
            assert hasattr(cls, attr), (name, attr)
        assert set(cls.experiment_fields) <= {"sigma0", "popsize"} and cls.kind in STEPS
        kinds.add(cls.kind)
    assert kinds == set(STEPS) == {"evolution", "gradient"}
