"""Fuzzing: mutated documents and files never crash blursim.

Hypothesis mutates the shipped network specs, experiments and genomes -- structurally (a
field replaced by a hostile value: huge or negative numbers, NaN, Infinity, long or
multi-line strings, paths to devices and directories, deep or long lists; fields deleted,
unknown fields added, list items repeated) and as text (truncated, bytes inserted, not
UTF-8, a key repeated, a 5000-digit integer, nesting 64 to 5000 deep) -- and IDX dataset
files byte by byte. Each mutant goes through the loaders (load, compile or prepare) and
through the command line (``validate``, ``graph``, ``run``), which must end in success or in
blursim's own error (exit 2, one line, no traceback) -- never another exception -- and never
allocate beyond the memory estimate: compiling an accepted network stays within
``estimate(...).build`` (tracemalloc), and the machine is capped at 256 MiB
(``$BLURSIM_MAX_MEMORY``) so that anything claiming more is refused, not attempted.

The default suite runs a few hundred mutants; ``pytest -m slow tests/test_fuzz.py -s``
runs thousands and prints the statistics (docs/design.md, "Limits").
"""

from __future__ import annotations

import collections
import copy
import gzip
import io
import json
import os
import re
import struct
import tempfile
import tracemalloc
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_meta_train import TINY_NETWORK, tiny_experiment

from blursim.cli.main import main
from blursim.errors import BlursimError

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

#: Outcomes per (harness, document kind): "ok", "error" (blursim's own). Anything else fails.
STATS: collections.Counter = collections.Counter()
#: Every mutant is written below this directory, removed when the module is done.
_TMP = tempfile.TemporaryDirectory(prefix="blursim-fuzz-")


def _new_dir() -> Path:
    return Path(tempfile.mkdtemp(dir=_TMP.name))


def _networks():
    out = {}
    for p in sorted(SPECS.glob("*.json")):
        d = json.loads(p.read_text())
        if str(d.get("format", "")).startswith("blursim.network"):
            out[p.name] = d
    out["tiny"] = copy.deepcopy(TINY_NETWORK)
    return out


def _experiments():
    out = {"tiny": tiny_experiment(generations=2)}
    for p in sorted((SPECS / "experiments").glob("*.json")):
        d = json.loads(p.read_text())
        if isinstance(d.get("network"), str):  # absolute, so that a copy elsewhere still finds it
            d["network"] = str((p.parent / d["network"]).resolve())
        for t in d.get("training_tasks", []) + d.get("validation_tasks", []):
            if isinstance(t.get("network"), str):
                t["network"] = str((p.parent / t["network"]).resolve())
        out[p.name] = d
    return out


def _genomes():
    from blursim.genome import backprop_genome, random_genome

    out = {p.name: json.loads(p.read_text()) for p in sorted((ROOT / "docs" / "results").glob("*genome*.json"))}
    out["random"] = json.loads(random_genome(k=3, seed=1, groups=["default", "hidden"]).model_dump_json())
    out["backprop"] = json.loads(backprop_genome().model_dump_json())
    return out


BASES = {"network": _networks(), "experiment": _experiments(), "genome": _genomes()}

HOSTILE = [
    0, -1, 1, 2, 3, 7, 2**31, 2**63, 10**25, -(10**25), 0.5, 1e308, -1e308, 1e-320,
    float("nan"), float("inf"), float("-inf"), True, False, None, "", "x" * 20_000,
    'a"b\\c\nd\u202e', "tanh", "default", "in", "out", "hidden", "all_to_all", "local2d",
    "/dev/zero", "/", ".", "..", "../../../../etc/passwd", "a" * 5000, "tcp://127.0.0.1:1",
    [], {}, [0], [1, 2], [[1, 2], [3]], list(range(3000)), {"kind": "local2d", "radius": 1e7},
    {"kind": "block_random", "block": [2**24, 1], "p": 1.0}, {"kind": "fixed_probability", "p": 0.5},
    {"kind": "from_list", "edges": [[0, 0], [0, 0]]}, {"kind": "one_to_one"},
]


def _vocabulary() -> list[str]:
    """Every name a document may use: registry entries and the literal values of the models."""
    from blursim.data import DATASETS
    from blursim.genome import PRESETS
    from blursim.graph.connectivity import CONNECTIVITY
    from blursim.meta.strategies import STRATEGIES
    from blursim.sim import ACTIVATIONS, FEEDBACK

    words = set()
    for reg in (DATASETS, PRESETS, CONNECTIVITY, STRATEGIES, ACTIVATIONS, FEEDBACK):
        words.update(reg.names())
    words.update(["input", "hidden", "output", "none", "forward", "backward", "both", "additive",
                  "multiplicative", "multiplicative_second_state", "pm1", "onehot", "weights", "activity",
                  "activations", "stored", "sum", "mean", "topological", "synchronous", "normal", "uniform",
                  "zeros", "same", "accuracy", "cross_entropy", "preset", "file", "random", "numpy",
                  "cupy", "float32", "float64", "blursim.network/1", "blursim.genome/1",
                  "blursim.experiment/1", "f", "eta", "nu", "mu_tilde", "oja_alpha", "norm_gain"])
    return sorted(words)


#: Any JSON value, small: what a careless edit may leave in a field.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 50) | st.integers() | st.floats()
    | st.text(max_size=12) | st.sampled_from(_vocabulary()),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _paths(node, path=()):
    """Every JSON path of a document (containers and leaves)."""
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node[:50]):
            yield from _paths(v, path + (i,))


def _get(node, path):
    for k in path:
        node = node[k]
    return node


def _deep(n):
    v = 1
    for _ in range(n):
        v = [v]
    return v


@st.composite
def structural(draw, kind):
    """A document of ``kind`` with one to three structural mutations."""
    name = draw(st.sampled_from(sorted(BASES[kind])))
    doc = copy.deepcopy(BASES[kind][name])
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _get(doc, path[:-1]), path[-1]
        op = draw(st.sampled_from(["replace", "replace", "value", "value", "delete", "add", "repeat", "scale",
                                   "deep"]))
        if op == "replace":
            parent[key] = copy.deepcopy(draw(st.sampled_from(HOSTILE)))
        elif op == "value":
            parent[key] = draw(JSON_VALUES)
        elif op == "delete":
            del parent[key]
        elif op == "add" and isinstance(_get(doc, path), dict):
            _get(doc, path)[draw(st.sampled_from(["kind", "format", "name", "size", "extra", "x" * 300]))] = \
                copy.deepcopy(draw(st.sampled_from(HOSTILE)))
        elif op == "repeat" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif op == "scale" and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
            parent[key] = parent[key] * draw(st.sampled_from([-1, 10**6, 10**12, 1e-9, 2**40]))
        elif op == "deep":
            parent[key] = _deep(draw(st.sampled_from([8, 63, 70, 200])))
    return name, doc


@st.composite
def plausible_networks(draw):
    """A small network for the 2-D tasks (2 inputs, 2 outputs) with every rule, activation,
    normalisation, connectivity and size drawn: mostly valid, so that it reaches the simulator."""
    from blursim.sim import ACTIVATIONS, FEEDBACK

    k = draw(st.sampled_from([1, 2, 2, 2, 3, 4]))
    acts = st.sampled_from(ACTIVATIONS.names())
    right = st.lists(acts, min_size=k, max_size=k)
    wrong = draw(st.integers(0, 9)) == 0  # now and then a list of the wrong length
    act = st.one_of(acts, right, st.lists(acts, min_size=1, max_size=5)) if wrong else st.one_of(acts, right)
    n_hidden = draw(st.integers(1, 3))
    sizes = [draw(st.integers(1, 9)) for _ in range(n_hidden)]
    pops = [{"name": "in", "size": 2, "role": "input", "grid": [1, 2]}]
    for i, n in enumerate(sizes):
        pops.append({"name": f"h{i}", "size": n, "role": "hidden", "grid": [1, n],
                     "forward_activation": draw(act), "backward_activation": draw(act),
                     "normalization": draw(st.sampled_from(["none", "forward", "backward", "both"])),
                     "genome": draw(st.sampled_from(["default", "g2"]))})
    pops.append({"name": "out", "size": draw(st.sampled_from([1, 2, 2, 3])), "role": "output",
                 "forward_activation": draw(act), "backward_activation": draw(act)})
    pops[-1]["grid"] = [1, pops[-1]["size"]]
    conn = st.sampled_from([
        {"kind": "all_to_all"}, {"kind": "one_to_one"}, {"kind": "fixed_probability", "p": 0.5},
        {"kind": "fixed_probability", "p": 0.0}, {"kind": "local2d", "radius": 1.0},
        {"kind": "block_random", "block": [2, 2], "p": 0.7}, {"kind": "from_list", "edges": [[0, 0]]},
    ])
    names = [p["name"] for p in pops]
    projs = [{"from": names[i], "to": names[i + 1], "connectivity": draw(conn), "bias": draw(st.booleans())}
             for i in range(len(names) - 1)]
    for _ in range(draw(st.integers(0, 2))):
        a, b = draw(st.sampled_from(names[1:])), draw(st.sampled_from(names[1:]))
        projs.append({"from": a, "to": b, "name": f"extra{len(projs)}", "connectivity": draw(conn)})
    rules = {
        "backward_update": draw(st.sampled_from(["additive", "multiplicative", "multiplicative_second_state"])),
        "tied": draw(st.booleans()), "shared_channels": draw(st.booleans()),
        "feedback": draw(st.sampled_from(FEEDBACK.names())),
        "target_coding": draw(st.sampled_from(["pm1", "onehot"])),
        "oja": draw(st.sampled_from(["none", "weights", "activity"])),
        "synapse_normalization": draw(st.sampled_from(["none", "activations", "stored"])),
        "saturation": draw(st.booleans()), "reset_neurons": draw(st.booleans()),
        "batch_reduction": draw(st.sampled_from(["sum", "mean"])),
        "schedule": draw(st.sampled_from(["topological", "synchronous"])), "sweeps": draw(st.integers(1, 3)),
        "synapse_init": {"distribution": draw(st.sampled_from(["normal", "uniform", "zeros"])),
                         "scale": draw(st.sampled_from([0.0, 1.0, 1000.0])), "bias": draw(st.sampled_from(["zeros", "same"]))},
    }
    return "plausible", {"k": k, "seed": draw(st.integers(0, 2**64 - 1)), "populations": pops,
                         "projections": projs, "rules": rules}


def _dump_repeating(doc, target) -> str:
    """JSON text of ``doc`` in which the object at ``target`` lists its first key twice."""
    def dump(node, path):
        if isinstance(node, dict):
            items = [f"{json.dumps(k)}: {dump(v, path + (k,))}" for k, v in node.items()]
            if path == target and items:
                items.append(items[0])
            return "{" + ", ".join(items) + "}"
        if isinstance(node, list):
            return "[" + ", ".join(dump(v, path + (i,)) for i, v in enumerate(node)) + "]"
        return json.dumps(node)
    return dump(doc, ())


@st.composite
def textual(draw, kind):
    """The raw bytes of a document of ``kind`` mutated as text."""
    name = draw(st.sampled_from(sorted(BASES[kind])))
    doc = BASES[kind][name]
    text = json.dumps(doc, indent=draw(st.sampled_from([None, 1, 2])))
    op = draw(st.sampled_from(["truncate", "insert", "repeat_key", "long_int", "nest", "bom", "utf16",
                               "control"]))
    if op == "truncate":
        data = text.encode()[: draw(st.integers(0, len(text)))]
    elif op == "insert":
        i = draw(st.integers(0, len(text)))
        junk = draw(st.binary(min_size=1, max_size=8) | st.sampled_from([b"\xff", b"\x00", b"{", b"]", b",", b'"']))
        data = text.encode()[:i] + junk + text.encode()[i:]
    elif op == "repeat_key":
        dicts = [p for p in _paths(doc) if isinstance(_get(doc, p), dict) and _get(doc, p)]
        data = _dump_repeating(doc, draw(st.sampled_from(dicts))).encode()
    elif op == "long_int":
        nums = [m.span() for m in re.finditer(r"(?<![\w.\"])-?\d+(?![\w.])", text)]
        if not nums:
            nums = [(0, 0)]
        a, b = draw(st.sampled_from(nums))
        data = (text[:a] + "9" * draw(st.sampled_from([31, 400, 5000])) + text[b:]).encode()
    elif op == "nest":
        n = draw(st.sampled_from([64, 65, 1000, 5000]))
        data = ("[" * n + text + "]" * n).encode()
    elif op == "bom":
        data = b"\xef\xbb\xbf" + text.encode()
    elif op == "utf16":
        data = text.encode("utf-16")
    else:  # a control character inside a string
        i = text.find('"', draw(st.integers(0, max(0, len(text) - 1))))
        data = (text[: i + 1] + "\u0007\n" + text[i + 1:]).encode() if i >= 0 else text.encode()
    return name, data


# ------------------------------------------------------------------- harnesses
@pytest.fixture(autouse=True)
def _small_machine(monkeypatch):
    monkeypatch.setenv("BLURSIM_MAX_MEMORY", "256MiB")
    monkeypatch.delenv("BLURSIM_DEBUG", raising=False)


def through_loaders(path: Path, kind: str) -> str:
    """Load (and compile or prepare) a document file: ``"ok"`` or ``"error"`` (blursim's own);
    any other exception propagates and fails the test."""
    from blursim.graph import compile_network
    from blursim.graph.memory import estimate
    from blursim.meta import prepare_experiment
    from blursim.spec import GenomeSpec, NetworkSpec, load_any

    try:
        doc = load_any(path)
        if isinstance(doc, NetworkSpec):
            budget = estimate(doc, batch=1).build
            compile_network(doc)  # once unmeasured: first uses import modules and fill caches
            tracemalloc.start()
            try:
                compile_network(doc)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert peak <= budget, f"compiling allocated {peak} bytes, estimate {budget}"
        elif isinstance(doc, GenomeSpec):
            from blursim.genome import stack_genomes

            stack_genomes([doc], k=doc.k, groups=list(doc.groups))
        else:
            prepare_experiment(doc)
    except BlursimError as e:
        msg = str(e)
        assert "\n" not in msg and len(msg) <= 2000, msg[:300]
        return "error"
    return "ok"


def through_cli(argv: list[str]) -> str:
    """Run ``blursim argv`` in process: exit 0, or exit 2 with one line of blursim's own."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(argv)
    text = err.getvalue()
    assert "Traceback" not in out.getvalue() + text
    if rc == 0:
        return "ok"
    assert rc == 2, (rc, text)
    assert text.startswith("blursim: error: ") and text.count("\n") == 1 and len(text) < 2100, text[:500]
    return "error"


def _write(data: bytes | str) -> Path:
    p = _new_dir() / "doc.json"
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


def _document(kind, mutant, textual_mutant) -> Path:
    name, value = mutant
    if textual_mutant:
        return _write(value)
    return _write(json.dumps(value, indent=1))  # NaN and Infinity as Python writes them


def _run_within_estimate(path: Path, loaded: str) -> str:
    """``blursim run`` on a network file; when the network loaded, it must not allocate more than
    its estimate for the run's batch (the whole xor test split) and two replicas, plus 16 MiB
    for the dataset, the document and the interpreter."""
    from blursim.data import load_dataset
    from blursim.graph.memory import estimate
    from blursim.spec import load_any

    argv = ["run", str(path), "--task", "xor", "--preset", "random", "--steps", "2", "--replicas", "2", "--json"]
    if loaded != "ok":
        return through_cli(argv)
    need = estimate(load_any(path), batch=max(32, load_dataset("xor").n_test)).total(1, 2)
    tracemalloc.start()
    try:
        outcome = through_cli(argv)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= need + 16 * 2**20, f"run allocated {peak} bytes, estimate {need}"
    return outcome


def check_document(kind: str, path: Path, *, cli: bool) -> None:
    loaded = through_loaders(path, kind)
    STATS[("loaders", kind, loaded)] += 1
    if cli:
        STATS[("cli validate", kind, through_cli(["validate", str(path)]))] += 1
        if kind == "network":
            STATS[("cli graph", kind, through_cli(["graph", str(path), "--dot", str(path.with_suffix(".dot"))]))] += 1
            STATS[("cli run", kind, _run_within_estimate(path, loaded))] += 1
        elif kind == "genome":
            STATS[("cli run", kind, through_cli(["run", str(SPECS / "toy_blur.json"), "--task", "xor", "--genome",
                                                  str(path), "--steps", "2", "--json"]))] += 1


KINDS = ["network", "experiment", "genome"]
FAST = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
LONG = settings(max_examples=1500, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def _mutants():
    return st.sampled_from(KINDS + ["plausible"]).flatmap(
        lambda k: st.tuples(st.just("network"), plausible_networks().map(lambda m: (m, False))) if k == "plausible"
        else st.tuples(st.just(k), st.one_of(structural(k).map(lambda m: (m, False)),
                                             textual(k).map(lambda m: (m, True)))))


@FAST
@given(m=_mutants())
def test_mutated_documents_through_loaders(m):
    kind, (mutant, text) = m
    check_document(kind, _document(kind, mutant, text), cli=False)


@settings(FAST, max_examples=100)
@given(m=_mutants())
def test_mutated_documents_through_the_command_line(m):
    kind, (mutant, text) = m
    check_document(kind, _document(kind, mutant, text), cli=True)


# ------------------------------------------------------------------ files
def _special_file(what: str) -> Path:
    d = _new_dir()
    p = d / "doc.json"
    if what == "directory":
        p.mkdir()
    elif what == "fifo":
        os.mkfifo(p)
    elif what == "device":
        p.symlink_to("/dev/zero")
    elif what == "loop":
        p.symlink_to(p)
    elif what == "huge":
        with open(p, "wb") as fh:
            fh.truncate(64 * 2**20)
    elif what == "empty":
        p.write_bytes(b"")
    elif what == "missing":
        pass
    elif what == "long_name":
        p = d / ("n" * 300 + ".json")
    return p


@pytest.mark.parametrize("what", ["directory", "fifo", "device", "loop", "huge", "empty", "missing", "long_name"])
@pytest.mark.parametrize("kind", KINDS)
def test_files_that_are_not_documents(what, kind):
    path = _special_file(what)
    assert through_loaders(path, kind) == "error"
    assert through_cli(["validate", str(path)]) == "error"


@settings(FAST, max_examples=20)
@given(kind=st.sampled_from(KINDS), what=st.sampled_from(["directory", "fifo", "device", "huge"]),
       field=st.sampled_from(["network", "genome", "task"]))
def test_documents_naming_files_that_are_not_documents(kind, what, field):
    """An experiment whose network, genome file or task data directory is a device, a FIFO,
    a directory or a huge file."""
    exp = copy.deepcopy(BASES["experiment"]["tiny"])
    special = str(_special_file(what))
    if field == "network":
        exp["network"] = special
    elif field == "genome":
        exp["genome"]["init"] = {"kind": "file", "path": special}
    else:
        exp["training_tasks"][0] = {"name": "mnist", "options": {"data_dir": special}}
    path = _write(json.dumps(exp))
    assert through_loaders(path, "experiment") == "error"
    assert through_cli(["validate", str(path)]) == "error"


# ------------------------------------------------------------------- IDX files
def _idx_file() -> bytes:
    rng = np.random.default_rng(0)
    body = rng.integers(0, 256, 3 * 4 * 4, dtype=np.uint8).tobytes()
    return struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", 3, 4, 4) + body


@settings(FAST, max_examples=100)
@given(edits=st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)), max_size=4),
       cut=st.none() | st.integers(0, 60), dims=st.none() | st.lists(st.integers(0, 2**32 - 1), min_size=1,
                                                                         max_size=4),
       gz=st.booleans(), garble_gz=st.booleans())
def test_mutated_idx_files(edits, cut, dims, gz, garble_gz):
    from blursim.data.idx import read_idx
    from blursim.errors import DataError

    raw = bytearray(_idx_file())
    if dims is not None:
        raw = bytearray(struct.pack(">HBB", 0, 0x08, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
                        + bytes(raw[16:]))
    for i, b in edits:
        if i < len(raw):
            raw[i] = b
    if cut is not None:
        raw = raw[:cut]
    data = bytes(raw)
    if gz:
        data = gzip.compress(data)
        if garble_gz and len(data) > 12:
            data = data[:10] + bytes([data[10] ^ 0xFF]) + data[11:]
    path = _write(data).with_suffix("")
    os.rename(path.with_suffix(".json"), path)
    tracemalloc.start()
    try:
        try:
            arr = read_idx(path)
            outcome = "ok"
            assert arr.nbytes <= len(_idx_file()) * 2 + 2**20
        except DataError as e:
            assert "\n" not in str(e)
            outcome = "error"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20  # never what the header claims, never a decompression bomb
    STATS[("idx", "idx", outcome)] += 1


# ------------------------------------------------------------------ long runs
@pytest.mark.slow
@LONG
@given(m=_mutants())
def test_many_mutated_documents_through_loaders(m):
    kind, (mutant, text) = m
    check_document(kind, _document(kind, mutant, text), cli=False)


@pytest.mark.slow
@settings(LONG, max_examples=600)
@given(m=_mutants())
def test_many_mutated_documents_through_the_command_line(m):
    kind, (mutant, text) = m
    check_document(kind, _document(kind, mutant, text), cli=True)


def teardown_module(module):
    """Print what the mutants came to (``pytest -s``): no outcome other than ok/error exists."""
    _TMP.cleanup()
    if not STATS:
        return
    rows = collections.defaultdict(collections.Counter)
    for (harness, kind, outcome), n in STATS.items():
        rows[(harness, kind)][outcome] += n
    print("\nfuzz statistics (mutants: ok / blursim's own error / any other outcome)")
    for (harness, kind), c in sorted(rows.items()):
        print(f"  {harness:<14} {kind:<11} {sum(c.values()):>6}: {c['ok']:>5} ok, {c['error']:>5} errors, 0 other")
