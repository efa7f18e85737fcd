"""Limits before work: every reproducer of issue 12 is one clear error, never a crash.

Each case writes a hostile or careless input and runs the command line in process: the exit
code must be 2 and stderr one line that starts with ``blursim: error:`` and names the file and
the field (any other exception fails the test, since ``main`` lets only blursim's own errors
through). Then: the memory estimate as an upper bound of what is allocated, ``validate`` for
every document kind, DOT escaping and strict JSON output.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import re
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from test_meta_train import TINY_NETWORK, tiny_experiment

from blursim.cli.main import main
from blursim.errors import DataError, MemoryLimitError, SpecError
from blursim.graph import compile_network
from blursim.graph.memory import estimate
from blursim.spec import load_network

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
MLP = json.loads((SPECS / "mlp_2d.json").read_text())


def cli_error(capsys, argv) -> str:
    """Run ``blursim argv``; it must fail with one line of blursim's own (exit 2)."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 2, (rc, out, err)
    assert err.startswith("blursim: error: "), err
    assert err.count("\n") == 1 and err.endswith("\n"), f"not one line: {err!r}"
    assert "Traceback" not in out + err
    assert len(err) < 2100, len(err)
    return err


def write(path: Path, doc, raw: str | None = None) -> Path:
    path.write_text(raw if raw is not None else json.dumps(doc, indent=2))
    return path


def network(**edit):
    d = copy.deepcopy(MLP)
    for key, value in edit.items():
        d[key] = value
    return d


def experiment(tmp_path, **edit):
    """The tiny test experiment with its network in a file, edited at dotted paths."""
    exp = tiny_experiment(generations=1)
    exp["network"] = str(write(tmp_path / "net.json", TINY_NETWORK))
    for dotted, value in edit.items():
        node = exp
        keys = dotted.split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return exp


# --------------------------------------------------------------- reading documents
def test_not_utf8(tmp_path, capsys):
    f = tmp_path / "b.json"
    f.write_bytes(b"\xff\xfe{}")
    err = cli_error(capsys, ["validate", f])
    assert str(f) in err and "not UTF-8" in err and "0xff" in err


def test_utf8_byte_order_mark_is_accepted(tmp_path, capsys):
    f = tmp_path / "bom.json"
    f.write_bytes(b"\xef\xbb\xbf" + json.dumps(MLP).encode())
    assert main(["validate", str(f)]) == 0


def test_deep_nesting(tmp_path, capsys):
    f = write(tmp_path / "deep.json", None, "[" * 5000 + "]" * 5000)
    err = cli_error(capsys, ["validate", f])
    assert str(f) in err and "nested 5000 levels deep" in err
    brackets = '{"k": 2, "x": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}'
    err = cli_error(capsys, ["validate", write(tmp_path / "s.json", None, brackets)])
    assert "nested" not in err  # brackets inside a string are not nesting


def test_long_integer_literal_names_the_field(tmp_path, capsys):
    f = write(tmp_path / "big.json", None, json.dumps(MLP, indent=1).replace('"k": 2', '"k": ' + "9" * 5000))
    err = cli_error(capsys, ["validate", f])
    assert f"{f}, line 5 at $.k:" in err and "5000 digits" in err


def test_long_path(tmp_path, capsys):
    err = cli_error(capsys, ["validate", "a" * 5000 + ".json"])
    assert "5005 characters long" in err
    err = cli_error(capsys, ["validate", "a" * 300 + ".json"])  # a name too long for the file system
    assert "cannot read" in err and "aaaa" in err


@pytest.mark.parametrize("kind", ["device", "fifo", "directory", "too_large"])
def test_only_regular_files_of_bounded_size_are_read(kind, tmp_path, capsys):
    if kind == "device":
        f, want = Path("/dev/zero"), "is a device, not a regular file"
    elif kind == "fifo":
        f, want = tmp_path / "pipe.json", "is a FIFO, not a regular file"
        os.mkfifo(f)  # nothing ever writes to it: opening it would block for ever
    elif kind == "directory":
        f, want = tmp_path, "is a directory"
    else:
        f, want = tmp_path / "huge.json", "larger than the limit of 16 MiB"
        with open(f, "wb") as fh:  # sparse: the size is refused before a byte is read
            fh.truncate(17 * 2**20)
    err = cli_error(capsys, ["validate", f])
    assert str(f) in err and want in err


def test_duplicate_keys_are_refused(tmp_path, capsys):
    raw = json.dumps(MLP, indent=1).replace('"name": "hidden",', '"name": "hidden", "size": 3,')
    err = cli_error(capsys, ["validate", write(tmp_path / "dup.json", None, raw)])
    assert "dup.json, line" in err and "at $.populations[1].size:" in err and "appears twice" in err


def test_experiment_network_is_a_device(tmp_path, capsys):
    f = write(tmp_path / "exp.json", experiment(tmp_path, network="/dev/zero"))
    err = cli_error(capsys, ["meta-train", f, "--out", tmp_path / "r", "--quiet"])
    assert f"{f}, line" in err and "at $.network:" in err and "not a regular file" in err
    assert not (tmp_path / "r").exists()


def test_experiment_genome_file_is_a_directory(tmp_path, capsys):
    f = write(tmp_path / "exp.json", experiment(tmp_path, **{"genome.init": {"kind": "file", "path": "."}}))
    err = cli_error(capsys, ["validate", f])
    assert f"{f}, line" in err and "at $.genome.init.path:" in err and "is a directory" in err


# ------------------------------------------------------------- ranges of networks
@pytest.mark.parametrize("edit, path", [
    (lambda d: d["populations"][1].update(size=10**9), "$.populations[1].size"),
    (lambda d: d["populations"][1].update(size=1e30), "$.populations[1].size"),
    (lambda d: d["rules"].update(schedule="synchronous", sweeps=10**9), "$.rules.sweeps"),
    (lambda d: d["rules"]["synapse_init"].update(scale=1e308), "$.rules.synapse_init.scale"),
    (lambda d: d.update(seed=2**70), "$.seed"),
    (lambda d: d["populations"][1].update(name="h\nidden"), "$.populations[1].name"),
    (lambda d: d["projections"][0].update(connectivity={"kind": "block_random", "block": [2147483648, 32],
                                                        "p": 0.5}),
     "$.projections[0].connectivity.block[0]"),
    (lambda d: (d["populations"][0].update(grid=[1, 2]), d["populations"][1].update(grid=[4, 5]),
                d["projections"][0].update(connectivity={"kind": "local2d", "radius": 1e200})),
     "$.projections[0].connectivity.radius"),
    (lambda d: d["populations"][0].update(forward_activation="bogus"), "$.populations[0].forward_activation"),
])
def test_network_values_are_range_checked(edit, path, tmp_path, capsys):
    d = network()
    edit(d)
    f = write(tmp_path / "net.json", d)
    err = cli_error(capsys, ["validate", f])
    assert f"{f}, line" in err and f"at {path}:" in err


def test_large_but_legal_block_and_radius_build_small_masks(tmp_path):
    d = network()
    d["populations"][0]["grid"], d["populations"][1]["grid"] = [1, 2], [4, 5]
    d["projections"][0]["connectivity"] = {"kind": "local2d", "radius": 1e7}
    d["projections"][1]["connectivity"] = {"kind": "block_random", "block": [2**24, 2**24], "p": 1.0}
    tracemalloc.start()
    try:
        prog = compile_network(load_network(d))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20
    assert prog.projs[0].mask is None and prog.projs[1].mask is None  # everything connected


def test_long_strings_are_capped_in_messages(tmp_path, capsys):
    d = network()
    d["populations"][1]["name"] = "x" * 10**6
    d["projections"][0]["to"] = "y" * 10**6
    err = cli_error(capsys, ["validate", write(tmp_path / "long.json", d)])
    assert "at $.populations[1].name:" in err and "1000000 characters" in err
    e = SpecError("unknown population " + repr("z" * 10**6), path="$.x", value="v" * 10**6,
                  choices=[f"c{i}" * 50 for i in range(10_000)], hint="h" * 10**6, source="s" * 10**6)
    msg = str(e)
    # every echo is an excerpt: the source, the message's long word, the value, 400 characters of
    # choices (9990 left unnamed, counted), the hint
    assert len(msg) <= 1200 and "\n" not in msg, len(msg)
    shown = msg.split("Valid choices: ")[1].split(" and ")[0].split(", ")
    assert 1 <= len(shown) < 40 and f"and {10_000 - len(shown)} more" in msg


# ---------------------------------------------------------- ranges of experiments
@pytest.mark.parametrize("edit, path", [
    ({"genome.set": {"nu": [[1, 2], [3]]}}, "$.genome.set.nu"),
    ({"genome.init": {"kind": "preset", "name": "random", "options": {"seed": "x"}}}, "$.genome.init.options.seed"),
    ({"genome.init": {"kind": "preset", "name": "random", "options": {"lr": float("nan")}}},
     "$.genome.init.options.lr"),
    ({"genome.init": {"kind": "preset", "name": "random", "options": {"scale": 1e300}}},
     "$.genome.init.options.scale"),
    ({"genome.init": {"kind": "preset", "name": "random", "options": {"colour": 1}}},
     "$.genome.init.options.colour"),
    ({"genome.init": {"kind": "random", "seed": 0, "scale": 1e308}}, "$.genome.init.scale"),
    ({"genome.set": {"f": 1e308, "f_tilde": float("inf")}}, "$.genome.set.f_tilde"),
    ({"genome.groups": ["default", "default"]}, "$.genome.groups"),
    ({"strategy.sigma0": 1e308}, "$.strategy.sigma0"),
    ({"strategy.popsize": 10**9}, "$.strategy.popsize"),
    ({"inner.batch_size": 10**100}, "$.inner.batch_size"),
    ({"inner.query_batch_size": 10**9}, "$.inner.query_batch_size"),
    ({"execution.memory_budget_mb": float("inf")}, "$.execution.memory_budget_mb"),
    ({"execution.memory_budget_mb": 0.01}, "$.execution.memory_budget_mb"),
    ({"execution.dask": {"scheduler": "tcp://10.0.0.5:8786"}}, "$.execution.dask.scheduler"),
    ({"execution.dask": {"local_workers": 1000}}, "$.execution.dask.local_workers"),
    ({"output": "/tmp/elsewhere"}, "$.output"),
    ({"output": "runs/../../elsewhere"}, "$.output"),
    ({"name": "../../escape"}, "$.name"),
    ({"curriculum": {"increment": 10**7, "every": 1}}, "$.curriculum.increment"),
])
def test_experiment_values_are_range_checked(edit, path, tmp_path, capsys):
    f = write(tmp_path / "exp.json", experiment(tmp_path, **edit))
    for argv in (["validate", f], ["meta-train", f, "--out", tmp_path / "r", "--quiet"]):
        err = cli_error(capsys, argv)
        assert f"{f}, line" in err and f"at {path}:" in err
    assert not (tmp_path / "r").exists()


def test_budget_refusal_says_what_one_genome_needs(tmp_path, capsys):
    f = write(tmp_path / "exp.json", experiment(tmp_path, **{"execution.memory_budget_mb": 0.01}))
    err = cli_error(capsys, ["validate", f])
    assert re.search(r"one genome needs [0-9.]+ KiB, more than the memory budget of 10\.2 KiB", err)
    f = write(tmp_path / "ok.json", experiment(tmp_path))
    err = cli_error(capsys, ["meta-train", f, "--memory-budget", "0.01", "--out", tmp_path / "r", "--quiet"])
    assert "at --memory-budget:" in err and "one genome needs" in err


def test_runs_that_cannot_fit_the_machine_are_refused_before_allocating(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BLURSIM_MAX_MEMORY", "64MiB")
    d = network()
    d["populations"][1]["size"] = 2**22  # 4M hidden neurons: about 1 GiB of synapses per genome
    f = write(tmp_path / "wide.json", d)
    # a valid network, for a larger machine: validate fails as run would (exit 2)
    err = cli_error(capsys, ["validate", f])
    assert re.search(r"one network with batches of 32 needs [0-9.]+ GiB, more than the 64 MiB this "
                     r"process may use \(\$BLURSIM_MAX_MEMORY\)", err), err
    tracemalloc.start()
    try:
        err = cli_error(capsys, ["run", f, "--task", "xor", "--preset", "random", "--steps", "1"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"{f} at --batch:" in err and re.search(r"needs [0-9.]+ GiB, more than the 64 MiB", err)
    assert peak < 16 * 2**20  # refused before the synapses were allocated
    # a network whose masks alone cannot be built here is refused by validate itself
    d = network()
    d["populations"][1]["size"] = 2**14
    d["projections"][0]["connectivity"] = {"kind": "fixed_probability", "p": 0.5}
    d["populations"][0]["size"] = 2**14
    err = cli_error(capsys, ["validate", write(tmp_path / "masks.json", d)])
    assert "masks.json, line" in err and "at $.projections[0].connectivity:" in err and "needs" in err


# ------------------------------------------------------------------ IDX files
def _idx(dims, body: bytes, code=0x08) -> bytes:
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + body


def test_idx_dimensions_whose_product_overflows(tmp_path):
    from blursim.data.idx import read_idx

    f = tmp_path / "x-idx3-ubyte"
    f.write_bytes(_idx([2**32 - 1, 2**32 - 1, 2**32 - 1], b"\x00" * 16))
    with pytest.raises(DataError, match=r"declares an array of dimensions .* more than the limit"):
        read_idx(f)


def test_idx_gzip_bomb_is_never_inflated(tmp_path):
    from blursim.data.idx import read_idx

    f = tmp_path / "bomb-idx1-ubyte.gz"
    f.write_bytes(gzip.compress(_idx([10], b"\x00" * (64 * 2**20)), compresslevel=9))
    assert f.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="trailing bytes"):
            read_idx(f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20
    f.write_bytes(gzip.compress(_idx([6, 2**30], b"\x00" * 1024)))  # declares 6 GiB
    with pytest.raises(DataError, match="6 GiB of data, more than the limit"):
        read_idx(f)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_header_claiming_more_than_the_file_holds(gz, tmp_path):
    from blursim.data.idx import read_idx

    f = tmp_path / "short-idx3-ubyte"
    data = _idx([2**15, 2**15], b"\x00" * 16)  # declares 1 GiB, holds 16 bytes
    f.write_bytes(gzip.compress(data) if gz else data)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="is truncated"):
            read_idx(f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


def test_idx_error_through_the_command_line(tmp_path, capsys):
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(_idx([2**31, 2**31, 2**31], b""))
    err = cli_error(capsys, ["run", SPECS / "mlp_2d.json", "--task", "mnist", "--task-opt",
                             f"data_dir={tmp_path}", "--preset", "random", "--steps", "1"])
    assert "train-images-idx3-ubyte" in err and "more than the limit" in err
    err = cli_error(capsys, ["run", SPECS / "mlp_2d.json", "--task", "mnist", "--task-opt",
                             "data_dir=" + "d" * 5000, "--preset", "random", "--steps", "1"])
    assert "data_dir" in err and "characters long" in err


# --------------------------------------------------------------- memory estimate
@pytest.mark.parametrize("conn, grids", [
    ({"kind": "all_to_all"}, None),
    ({"kind": "local2d", "radius": 2.0}, ([12, 12], [12, 12])),
    ({"kind": "fixed_probability", "p": 0.3}, None),
    ({"kind": "block_random", "block": [8, 8], "p": 0.4}, None),
    ({"kind": "one_to_one"}, None),
])
@pytest.mark.parametrize("tied", [False, True])
def test_memory_estimate_bounds_what_is_allocated(conn, grids, tied):
    """The estimate is an upper bound: compile, fresh synapses, two training steps and an
    evaluation of S genomes x R replicas never allocate more than ``estimate(...).total(S, R)``."""
    from blursim.genome import random_genome
    from blursim.sim import Simulator

    d = {"k": 2, "populations": [{"name": "in", "size": 144, "role": "input"},
                                 {"name": "h", "size": 144, "role": "hidden", "normalization": "both"},
                                 {"name": "out", "size": 3, "role": "output"}],
         "projections": [{"from": "in", "to": "h", "connectivity": conn}, {"from": "h", "to": "out"}],
         "rules": {"tied": tied, "shared_channels": tied, "oja": "weights"}}
    if grids:
        d["populations"][0]["grid"], d["populations"][1]["grid"] = grids
    spec = load_network(d)
    S, R, B = 3, 2, 64
    est = estimate(spec, batch=B, itemsize=4)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((B, 144)), rng.integers(0, 3, B)
    tracemalloc.start()
    try:
        prog = compile_network(spec)
        built = tracemalloc.get_traced_memory()[1]
        # two threads whatever the machine: the peak depends on how species are spread over
        # threads (on one CPU the one_to_one case allocated 8.5x less than the estimate)
        sim = Simulator(prog, backend="numpy", dtype="float32", threads=2)
        genes = sim.prepare([random_genome(k=2, seed=s, groups=prog.groups) for s in range(S)])
        st = sim.init_synapses(genes, replicas=R, seed=0)
        sim.train_step(st, genes, x, y)
        sim.train_step(st, genes, x, y)
        sim.evaluate(st, genes, x, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert built <= est.build
    assert peak <= est.total(S, R), (peak, est)
    # and it is not vacuous: within a small factor of the measurement
    assert est.chunk(S, R) < 8 * peak  # measured: 3-7 times the peak at these sizes


def test_bytes_per_species_is_the_estimate_of_one_genome():
    from blursim.meta.evaluate import Protocol, bytes_per_species

    prog = compile_network(load_network(TINY_NETWORK))
    p = Protocol(3, 16, 2, 40, 3, "train")
    assert bytes_per_species(prog, p, 4) == 3 * estimate(prog.spec, batch=40, itemsize=4).per_genome
    # by hand: 2 -> 6 -> 2, k=2, untied, bias: W+V = 2*2*((2+1)*6 + (6+1)*2) = 128 numbers,
    # Hebbian 2*2*(2*6 + 6*2) = 96; states 2*40*(6+2) = 640
    e = estimate(prog.spec, batch=40, itemsize=4)
    assert (e.synapses, e.states, e.workspaces) == (4 * 128, 4 * 640, 4 * (3 * 128 + 4 * 96 + 7 * 640))


# ------------------------------------------------------------------- validate
@pytest.mark.parametrize("path", sorted(SPECS.glob("*.json")) + sorted((SPECS / "experiments").glob("*.json")),
                         ids=lambda p: p.name)
def test_validate_reads_every_shipped_document(path, capsys):
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: ok (") and "memory" in out and "per genome" in out


def test_validate_dispatches_on_format(tmp_path, capsys):
    from blursim.genome import random_genome

    g = tmp_path / "g.json"
    g.write_text(random_genome(k=2, seed=1).model_dump_json())
    assert main(["validate", str(g)]) == 0
    assert "ok (genome, k=2, groups default)" in capsys.readouterr().out
    bad = dict(MLP, format="blursim.recipe/1")
    err = cli_error(capsys, ["validate", write(tmp_path / "x.json", bad)])
    assert "x.json, line 2 at $.format: unknown document format" in err and "blursim.experiment/1" in err
    err = cli_error(capsys, ["validate", g, "--task", "xor"])
    assert "g.json" in err and "--task checks network specs only" in err


# ------------------------------------------------------------ outputs of commands
def test_dot_output_escapes_names(tmp_path, capsys):
    d = network()
    evil = 'hidden" ]; "injected" [shape=box]; "x\\'
    d["populations"][1]["name"] = evil
    for q in d["projections"]:
        for end in ("from", "to"):
            if q[end] == "hidden":
                q[end] = evil
    f = write(tmp_path / "evil.json", d)
    dot = tmp_path / "g.dot"
    assert main(["graph", str(f), "--dot", str(dot)]) == 0
    text = dot.read_text()
    statements = [line.strip() for line in text.splitlines()[2:-1]]
    assert len(statements) == 5  # 3 nodes + 2 edges, nothing injected
    quoted = re.compile(r'"(?:[^"\\]|\\.)*"')
    for s in statements:  # outside quoted strings only the DOT syntax we wrote remains
        rest = quoted.sub("Q", s)
        assert re.fullmatch(r"Q \[shape=\w+, label=Q\];|Q -> Q \[label=Q, style=\w+\];", rest), s
    assert '"hidden\\" ]; \\"injected\\" [shape=box]; \\"x\\\\"' in text


def test_json_output_is_strict_json(tmp_path, capsys):
    from blursim.genome import random_genome

    g = random_genome(k=2, seed=0)
    g.groups["default"].f_tilde = 1e30  # synapses overflow at once: infinite cross-entropy
    g.groups["default"].eta_tilde = 1e30
    gf = tmp_path / "g.json"
    gf.write_text(g.model_dump_json())

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))

    for cmd in (["run"], ["evaluate"]):
        assert main(cmd + [str(SPECS / "toy_blur.json"), "--task", "xor", "--genome", str(gf),
                           "--steps", "2", "--replicas", "1", "--json"]) == 0
        res = strict(capsys.readouterr().out)
        assert res["diverged_replicas"] == 1 and None in res["cross_entropy_mean"]


def test_lr_must_be_finite(capsys):
    err = cli_error(capsys, ["run", SPECS / "mlp_2d.json", "--task", "xor", "--preset", "backprop",
                             "--lr", "nan", "--steps", "1"])
    assert "at --lr:" in err


# ----------------------------------------------------------------------- Dask
def test_dask_scheduler_that_does_not_answer(tmp_path, capsys):
    pytest.importorskip("distributed")
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    f = write(tmp_path / "exp.json", experiment(tmp_path))
    err = cli_error(capsys, ["meta-train", f, "--out", tmp_path / "r", "--quiet", "--dask-scheduler",
                             f"tcp://127.0.0.1:{port}", "--dask-timeout", "1"])
    assert "cannot connect to the Dask scheduler" in err and "within 1 s" in err
    err = cli_error(capsys, ["meta-train", f, "--out", tmp_path / "r", "--dask-scheduler", "not an address"])
    assert "--dask-scheduler must be an address" in err
    err = cli_error(capsys, ["meta-train", f, "--out", tmp_path / "r", "--dask-workers", "1000"])
    assert "--dask-workers must be in 1..64" in err


def test_memory_limit_error_is_a_spec_error():
    assert issubclass(MemoryLimitError, SpecError)
