"""The package's layers point one way, and modules use each other's public names only.

Read from the source (every ``import`` statement, function-local ones
included), so a new dependency that breaks a layer fails here, not in a
newcomer's head.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from blursim.graph import compile_network
from blursim.graph.connectivity import CONNECTIVITY
from blursim.spec import load_network

ROOT = Path(__file__).resolve().parent.parent / "blursim"

#: package -> packages it must never import (directly or inside a function).
FORBIDDEN = {
    "errors": {"spec", "vocab", "graph", "backend", "sim", "genome", "meta", "analysis", "cli"},
    "registry": {"spec", "vocab", "graph", "backend", "sim", "genome", "meta", "analysis", "cli"},
    "vocab": {"spec", "graph", "backend", "sim", "genome", "meta", "analysis", "cli"},
    "spec": {"vocab", "graph", "backend", "sim", "genome", "meta", "analysis", "cli"},
    "graph": {"backend", "sim", "genome", "meta", "analysis", "cli"},
    "backend": {"spec", "vocab", "graph", "sim", "genome", "meta", "analysis", "cli"},
    "sim": {"meta", "analysis", "cli", "baselines", "testing"},
    "genome": {"graph", "backend", "sim", "meta", "analysis", "cli"},
}


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield path, parts, ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree, parts):
    """``(module, names)`` of every import in the tree, relative imports resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = ["blursim", *parts[: len(parts) - node.level]]
                mod = ".".join(pkg + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield mod, [a.name for a in node.names]


def test_layers_point_one_way():
    bad = []
    for path, parts, tree in _modules():
        pkg = parts[0]
        for mod, _ in _imports(tree, parts):
            if not mod.startswith("blursim."):
                continue
            target = mod.split(".")[1]
            if target in FORBIDDEN.get(pkg, ()):
                bad.append(f"{path.relative_to(ROOT.parent)}: {pkg} imports {mod}")
    assert not bad, "\n".join(bad)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_private_names_across_modules():
    """A private name (``_x``) is its module's own; a private module (``backend/_cblas.py``) is its
    package's own: neither is imported from elsewhere."""
    bad = []
    for path, parts, tree in _modules():
        here = ".".join(["blursim", *parts[:-1]])  # the importing module's package
        for mod, names in _imports(tree, parts):
            if not mod.startswith("blursim"):
                continue
            pkg_dir = ROOT.joinpath(*mod.split(".")[1:])
            for n in names:
                own_module = mod == here and (pkg_dir / f"{n}.py").exists()
                if _private(n) and not own_module:
                    bad.append(f"{path.relative_to(ROOT.parent)}: from {mod} import {n}")
            private_mods = [p for p in mod.split(".") if _private(p)]
            if private_mods and not mod.startswith(here + "."):
                bad.append(f"{path.relative_to(ROOT.parent)}: imports the private module {mod}")
    assert not bad, "\n".join(bad)


SPEC = {"k": 2, "populations": [
    {"name": "in", "size": 6, "role": "input"},
    {"name": "h", "size": 5, "role": "hidden", "forward_activation": ["tanh", "tanh_derivative"]},
    {"name": "out", "size": 2, "role": "output"}],
    "projections": [{"from": "in", "to": "h", "connectivity": {"kind": "fixed_probability", "p": 0.5}},
                    {"from": "h", "to": "out"}]}


def test_masks_are_built_once_per_compile(monkeypatch):
    calls = []
    real = CONNECTIVITY.get("fixed_probability")

    def counted(*a):
        calls.append(a)
        return real(*a)

    monkeypatch.setitem(CONNECTIVITY._items, "fixed_probability", counted)
    prog = compile_network(load_network(SPEC))
    assert len(calls) == 1
    assert prog.projs[0].mask is not None and prog.projs[0].mask.shape == (6, 5)


def test_program_holds_names_not_functions():
    """The compiled program is data: activation names (resolved by the simulator), no callables."""
    prog = compile_network(load_network(SPEC))

    def callables(x):
        if callable(x) and not isinstance(x, type):
            yield x
        elif isinstance(x, dict):
            for v in x.values():
                yield from callables(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                yield from callables(v)

    for p in prog.pops:
        assert not list(callables(dataclasses.asdict(p))), p.name
    assert prog.pops[1].fwd_names == ["tanh", "tanh_derivative"]


@pytest.mark.parametrize("rules, kw, shared", [({}, 2, False), ({"shared_channels": True}, 1, True)])
def test_program_knows_its_channel_layout(rules, kw, shared):
    prog = compile_network(load_network(dict(SPEC, rules=rules)))
    assert (prog.kw, prog.shared) == (kw, shared)
