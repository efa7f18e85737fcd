"""Every file blursim reads is hostile (issue 24): replay folders, authors' genome NPZ files,
checkpoints, locks and memory limits.

The fuzzers mutate documents and NPZ bytes; each mutated input must give a one-line
:class:`~blursim.errors.BlursimError` (exit status 2 on the command line) or succeed -- never
another exception, never a large allocation. The other tests pin the attacks of issue 24 one by
one (no code named by a file runs, a ``.lock`` link is never written through, the sign of -0.0
survives a genome round trip, memory limits count ``ulimit -v`` and ``--memory-budget``)."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT

from blursim.authors import export_authors_genome, import_authors_genome, read_authors_file
from blursim.cli.main import main
from blursim.errors import BlursimError, GenomeError, SpecError, shorten
from blursim.genome import random_genome
from blursim.npz import read_npz
from blursim.testing import Counterexample

FUZZ = settings(max_examples=25, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
#: A mutated input may allocate this much at most (the originals are a few kB).
PEAK = 64 * 2**20

CHAIN = {"k": 2, "populations": [
    {"name": "in", "size": 3, "role": "input"},
    {"name": "h", "size": 4, "role": "hidden", "forward_activation": "tanh", "backward_activation": "tanh"},
    {"name": "out", "size": 3, "role": "output", "forward_activation": "tanh"}],
    "projections": [{"from": "in", "to": "h"}, {"from": "h", "to": "out"}]}


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npy_header(shape, descr="<f8") -> bytes:
    h = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode()
    h += b" " * (63 - (len(h) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def mutated(data: bytes, edits) -> bytes:
    """``data`` with byte edits ``(kind, position, value)``: overwrite, delete, insert, truncate."""
    b = bytearray(data)
    for kind, pos, val in edits:
        if not b:
            break
        i = pos % len(b)
        if kind == 0:
            b[i] = val
        elif kind == 1:
            del b[i]
        elif kind == 2:
            b.insert(i, val)
        else:
            del b[i:]
    return bytes(b)


EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**31), st.integers(0, 255)), min_size=1,
                 max_size=6)


def bounded(fn):
    """``fn()``'s result, or the BlursimError it raised; asserts a one-line message and a small
    peak allocation (another exception fails the test)."""
    tracemalloc.start()
    try:
        try:
            out = fn()
        except BlursimError as e:
            out = e
            assert "\n" not in str(e) and len(str(e)) <= 2000, str(e)[:300]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK, peak
    return out


# ------------------------------------------------------------------ replay folders
@pytest.fixture(scope="module")
def cx_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("cx")
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(4, 3)), rng.integers(0, 3, 4)) for _ in range(2)]
    Counterexample(law="masked_synapses_stay_zero", spec=CHAIN,
                   genome=random_genome(seed=1).model_dump(mode="json", exclude_none=True),
                   batches=batches, message="saved by the test").save(d)
    return d


def _refused_in_little_memory(folder, capsys) -> str:
    """``blursim replay folder`` refused (exit 2, one line, no escape codes) while allocating under
    16 MiB at its peak; returns the message."""
    tracemalloc.start()
    try:
        rc = main(["replay", str(folder)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out, err = capsys.readouterr()
    assert rc == 2 and err.startswith("blursim: error: ") and err.count("\n") == 1, (rc, err)
    assert "\x1b" not in out + err and peak < 16 * 2**20, peak
    return err


def _replay(folder, capsys) -> int:
    rc = main(["replay", str(folder)])
    out, err = capsys.readouterr()
    assert rc in (0, 1, 2), rc
    if rc == 2:
        assert err.startswith("blursim: error: ") and err.count("\n") == 1, err
    assert "\x1b" not in out + err
    return rc


def test_the_base_folder_replays(cx_folder, capsys):
    assert _replay(cx_folder, capsys) == 0


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)
LAW_KEYS = ["format", "law", "module", "options", "seed", "replicas", "atol", "rtol", "check_domain", "steps",
            "message", "x" * 300]


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(LAW_KEYS), JSON_VALUES, min_size=1, max_size=3))
def test_fuzz_law_json(cx_folder, tmp_path, capsys, changes):
    import shutil

    d = tmp_path / "cx"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(cx_folder, d)
    law = json.loads((d / "law.json").read_text())
    law.update(changes)
    (d / "law.json").write_text(json.dumps(law))
    bounded(lambda: _replay(d, capsys))


@FUZZ
@given(which=st.sampled_from(["data.npz", "network.json", "genome.json", "state.npz"]), edits=EDITS)
def test_fuzz_replay_files(cx_folder, tmp_path, capsys, which, edits):
    import shutil

    d = tmp_path / "cx"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(cx_folder, d)
    base = (d / which).read_bytes() if which != "state.npz" else npz_bytes(
        W_0=np.zeros((1, 1, 2, 3, 4)), W_1=np.zeros((1, 1, 2, 4, 3)))
    (d / which).write_bytes(mutated(base, edits))
    bounded(lambda: _replay(d, capsys))


@pytest.mark.parametrize("module, law", [("this", "this"), ("os", "system"), ("evil_law", "evil"),
                                         ("evil_law", "masked_synapses_stay_zero")])
def test_replay_never_imports_or_calls_what_a_file_names(cx_folder, tmp_path, module, law):
    """law.json naming a module (even one in the working directory) and a callable runs nothing of it:
    the law is looked up among blursim's own laws by name."""
    import shutil

    d = tmp_path / "cx"
    shutil.copytree(cx_folder, d)
    marker = tmp_path / "PWNED"
    (tmp_path / "evil_law.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nprint('RAN')\n")
    meta = json.loads((d / "law.json").read_text())
    meta.update(module=module, law=law, options={"command": f"touch {marker}"} if law == "system" else {})
    (d / "law.json").write_text(json.dumps(meta))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "blursim", "replay", "cx"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert not marker.exists() and "RAN" not in out.stdout and "Beautiful is better" not in out.stdout
    if law == "masked_synapses_stay_zero":  # blursim's own law: it replays (the module is only quoted)
        assert out.returncode == 0, out.stderr
    else:
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert f"unknown law {law!r} (module {module!r} is never imported)" in out.stderr
        assert "masked_synapses_stay_zero" in out.stderr  # the valid names are listed


@pytest.mark.parametrize("edit, words", [
    ({"steps": "abc"}, ["at $.steps:", "valid integer"]),
    ({"replicas": 0}, ["at $.replicas:", "greater than or equal to 1"]),
    ({"replicas": 10**6}, ["at $.replicas:", "less than or equal to 1024"]),
    ({"law": "L" * 5000}, ["at $.law:"]),
    ({"options": {"others": ["/etc/passwd"]}}, ["at $.options.others[0]", "JSON object"]),
    ({"options": {"others": [{}] * 100}}, ["at $.options.others", "at most 64"]),
])
def test_law_json_fields_are_checked(cx_folder, tmp_path, capsys, edit, words):
    import shutil

    d = tmp_path / "cx"
    shutil.copytree(cx_folder, d)
    meta = json.loads((d / "law.json").read_text())
    meta.update(edit)
    (d / "law.json").write_text(json.dumps(meta))
    assert _replay(d, capsys) == 2
    main(["replay", str(d)])
    err = capsys.readouterr().err
    assert str(d / "law.json") in err and all(w in err for w in words), err
    assert len(err) < 400, len(err)


def test_replay_arrays_are_checked_before_they_are_inflated(cx_folder, tmp_path, capsys):
    import shutil

    d = tmp_path / "cx"
    shutil.copytree(cx_folder, d)
    z = np.load(d / "data.npz")
    arrays = {k: z[k] for k in z.files}
    cases = [
        (zip_of({**{k + ".npy": npz_member(v) for k, v in arrays.items()}, "x_0.npy": npy_header((2**20, 2**20))}),
         "declares shape [1048576, 1048576]"),
        (npz_bytes(**{**arrays, "y_0": np.zeros(7, np.int64)}), "one integer class label per row"),
        (npz_bytes(**{**arrays, "x_0": np.zeros((4, 9))}), "9 features but the network's input populations hold 3"),
        (npz_bytes(**{**arrays, "y_0": np.full(4, 99)}), "labels outside 0..2"),
        (npz_bytes(**{**arrays, "x_0": np.array([{"a": 1}], dtype=object)}), "read without pickle"),
        (npz_bytes(**arrays, extra=np.zeros(3)), "unknown array 'extra'"),
    ]
    for raw, words in cases:
        (d / "data.npz").write_bytes(raw)
        err = _refused_in_little_memory(d, capsys)
        assert words in err and str(d / "data.npz") in err, err


def test_replay_memory_is_estimated_before_simulating(cx_folder, tmp_path, capsys):
    import shutil

    d = tmp_path / "cx"
    shutil.copytree(cx_folder, d)
    wide = json.loads((d / "network.json").read_text())
    wide["populations"].insert(2, {"name": "h2", "size": 20000, "role": "hidden"})
    wide["populations"][1]["size"] = 20000
    wide["projections"] = [{"from": "in", "to": "h"}, {"from": "h", "to": "h2"}, {"from": "h2", "to": "out"}]
    (d / "network.json").write_text(json.dumps(wide))
    err = _refused_in_little_memory(d, capsys)
    assert "needs" in err and "the limit of a replay of 1 GiB" in err, err


def test_a_saved_message_is_printed_escaped(cx_folder, tmp_path, capsys):
    import shutil

    d = tmp_path / "cx"
    shutil.copytree(cx_folder, d)
    meta = json.loads((d / "law.json").read_text())
    meta["message"] = "\x1b[2J\x1b[31mred\x07 \u202eevil" + "m" * 15000
    (d / "law.json").write_text(json.dumps(meta))
    assert main(["replay", str(d)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[2J\\x1b[31mred\\x07 \\u202eevil" in out and len(out) < 5000


def npz_member(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


# -------------------------------------------------------------- authors' genomes
AUTHORS = ROOT / "tests" / "data" / "authors" / "untied_additive_k3.npz"


def their_genome() -> dict[str, np.ndarray]:
    z = np.load(AUTHORS)
    return {k[len("genome/"):]: z[k] for k in z.files if k.startswith("genome/")}


@FUZZ
@given(edits=EDITS)
def test_fuzz_genome_npz_bytes(tmp_path, edits):
    f = tmp_path / "g.npz"
    f.write_bytes(mutated(npz_bytes(**their_genome()), edits))
    bounded(lambda: import_authors_genome(read_authors_file(f), source=str(f)))


@FUZZ
@given(key=st.sampled_from(sorted(their_genome()) + ["neuron/bogus", "x" * 300]),
       shape=st.lists(st.integers(0, 6), max_size=4), dtype=st.sampled_from(["f8", "f4", "i8", "?", "c16", "U3"]))
def test_fuzz_genome_arrays(tmp_path, key, shape, dtype):
    g = their_genome()
    g[key] = np.zeros(shape, dtype=dtype)
    f = tmp_path / "g.npz"
    f.write_bytes(npz_bytes(**g))
    bounded(lambda: import_authors_genome(read_authors_file(f), source=str(f)))


@pytest.mark.parametrize("make, words", [
    (lambda g: {**g, "synapse/transform/pre": np.zeros((2, 0, 0)), "synapse/transform/post": np.zeros((2, 0, 0)),
                "neuron/transform": np.zeros((2, 0, 0))}, "k = 0 states"),
    (lambda g: {**g, "extra": np.zeros(65536)}, "not part of their genome structure"),
    (lambda g: {k: np.repeat(v[:1], 300, 0) if v.ndim and v.shape[0] == 2 else v for k, v in g.items()},
     "300 species, more than the 256 genome files"),
])
def test_genome_import_bounds(tmp_path, capsys, make, words):
    f = tmp_path / "g.npz"
    f.write_bytes(npz_bytes(**make(their_genome())))
    assert main(["genome", "import", str(f), "-o", str(tmp_path / "out" / "g.json")]) == 2
    err = capsys.readouterr().err
    assert words in err and str(f) in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()  # nothing written


def test_genome_npz_declared_sizes_are_checked_before_inflating(tmp_path):
    f = tmp_path / "g.npz"
    big = zip_of({"neuron/transform.npy": npy_header((2**20, 2**20))})
    f.write_bytes(big)
    with pytest.raises(GenomeError, match=r"declares shape \[1048576, 1048576\]"):
        read_authors_file(f)
    # a member deflated from 128 MiB of zeros (128 kB on disk): refused from the ZIP header
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("neuron/transform.npy", "w", force_zip64=True) as m:
            m.write(npy_header((2**24,)))
            for _ in range(8):
                m.write(b"\0" * (2**24))
    f.write_bytes(buf.getvalue())
    tracemalloc.start()
    try:
        with pytest.raises(GenomeError, match="would inflate to 128 MiB, more than the limit of 64 MiB"):
            read_authors_file(f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(buf.getvalue()) + 2**20


def test_authors_round_trip_keeps_the_sign_of_zero(tmp_path, capsys):
    """-0.0 anywhere (the diagonal blocks of neuron/transform included, which their step never
    reads) comes back with its sign: the bytes are identical."""
    g = {k: (v[0] if v.ndim and v.shape[0] == 2 else v).copy() for k, v in their_genome().items()}
    T = g["neuron/transform"]
    T[:3, :3] = -0.0
    T[3:, 3:] = -0.0
    T[0, 4] = -0.0
    g["synapse/keep"] = np.array(-0.0)
    f = tmp_path / "theirs.npz"
    f.write_bytes(npz_bytes(**g))
    back = export_authors_genome(import_authors_genome(read_authors_file(f)))
    assert list(back) == list(g)
    for k, a in g.items():
        assert back[k].dtype == a.dtype and back[k].tobytes() == a.tobytes(), k
    # through the command line and the genome JSON file
    assert main(["genome", "import", str(f), "-o", str(tmp_path / "g.json")]) == 0
    assert main(["genome", "export", str(tmp_path / "g.json"), "-o", str(tmp_path / "back.npz")]) == 0
    again = np.load(tmp_path / "back.npz")
    assert all(again[k].tobytes() == a.tobytes() for k, a in g.items())
    assert np.signbit(again["neuron/transform"][:3, :3]).all()


def test_export_refuses_a_hostile_meta(tmp_path):
    (g,) = import_authors_genome({k: (v[0] if v.ndim and v.shape[0] == 2 else v) for k, v in their_genome().items()})
    for path, value in [("shape", [2**40]), ("dtype", "O"), ("species", "yes")]:
        meta = json.loads(json.dumps(g.meta))
        meta["authors"]["keys"]["synapse/keep"][path] = value
        with pytest.raises(GenomeError, match=rf"at \$\.meta\.authors\.keys\.synapse/keep\.{path}"):
            export_authors_genome(g.model_copy(update={"meta": meta}))


# --------------------------------------------------------------------------- NPZ
def test_npz_reader_refuses_what_numpy_would_trust():
    good = npz_bytes(a=np.arange(3.0))
    assert read_npz(good, name="f.npz", max_bytes=1000)["a"].tolist() == [0.0, 1.0, 2.0]
    be = read_npz(npz_bytes(a=np.arange(3.0).astype(">f8")), name="f.npz", max_bytes=1000)["a"]
    assert be.dtype == np.float64 and be.tolist() == [0.0, 1.0, 2.0]
    fo = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    assert np.array_equal(read_npz(npz_bytes(a=fo), name="f.npz", max_bytes=1000)["a"], fo)
    for raw, words in [
        (good, "would inflate to"),  # max_bytes below
        (npz_bytes(a=np.array([1], dtype=object)), "read without pickle"),
        (zip_of({"a.npy": npy_header((3,), descr="__import__('os')")}), "malformed .npy header"),
        (zip_of({"a.npy": b"\x93NUMPY\x03\x00" + b"\0" * 8}), "versions 1.0 and 2.0"),
        (zip_of({"a.txt": b"hi"}), "not an array"),
        (zip_of({f"m{i}.npy": npz_member(np.zeros(1)) for i in range(5000)}), "5000 members"),
        (b"PK\x03\x04" + b"\0" * 40, "not an NPZ"),
    ]:
        with pytest.raises(SpecError, match=words):
            read_npz(raw, name="f.npz", max_bytes=10 if raw is good else 2**20)


# ----------------------------------------------------------------------- checkpoints
TINY = {"format": "blursim.experiment/1", "name": "tiny",
        "network": {"format": "blursim.network/1", "k": 2,
                    "populations": [{"name": "in", "size": 2, "role": "input"},
                                    {"name": "hidden", "size": 3, "role": "hidden"},
                                    {"name": "out", "size": 2, "role": "output"}],
                    "projections": [{"from": "in", "to": "hidden"}, {"from": "hidden", "to": "out"}]},
        "training_tasks": [{"name": "xor", "options": {"n_train": 32, "n_test": 16}}],
        "inner": {"steps": 1, "batch_size": 4, "query_batches": 1, "replicas": 1},
        "genome": {"init": {"kind": "random", "seed": 0}},
        "strategy": {"name": "cma_es", "sigma0": 0.2, "popsize": 4}, "generations": 1, "seed": 7}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from blursim.meta import meta_train, prepare_experiment

    d = tmp_path_factory.mktemp("run") / "run"
    setup = prepare_experiment(TINY)
    meta_train(setup, out=d)
    return d, setup


def test_a_finished_run_leaves_no_lock_file(run_dir):
    d, _ = run_dir
    assert not (d / ".lock").exists() and (d / "checkpoint.json").exists()


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


@FUZZ
@given(edits=EDITS)
def test_fuzz_checkpoint_arrays(run_dir, tmp_path, edits):
    """Mutated checkpoint NPZ bytes whose checksum was updated (so that the arrays are read)."""
    import hashlib

    from blursim.meta.io import read_checkpoint

    src, setup = run_dir
    d = _copy_run(src, tmp_path / "run")
    ck = json.loads((d / "checkpoint.json").read_text())
    f = d / ck["arrays"]["file"]
    raw = mutated(f.read_bytes(), edits)
    f.write_bytes(raw)
    ck["arrays"]["sha256"] = hashlib.sha256(raw).hexdigest()
    (d / "checkpoint.json").write_text(json.dumps(ck))
    bounded(lambda: read_checkpoint(d, setup))


@FUZZ
@given(key=st.sampled_from(["format", "format_version", "generation", "seed", "log", "strategy", "arrays",
                            "spec_hash", "k" * 300]), value=JSON_VALUES)
def test_fuzz_checkpoint_json(run_dir, tmp_path, key, value):
    from blursim.meta.io import read_checkpoint

    src, setup = run_dir
    d = _copy_run(src, tmp_path / "run")
    ck = json.loads((d / "checkpoint.json").read_text())
    ck[key] = value
    (d / "checkpoint.json").write_text(json.dumps(ck))
    bounded(lambda: read_checkpoint(d, setup))


def test_checkpoint_inflated_size_is_bounded_from_headers(run_dir, tmp_path):
    import hashlib

    from blursim.meta.io import RunDirError, read_checkpoint

    src, setup = run_dir
    d = _copy_run(src, tmp_path / "run")
    ck = json.loads((d / "checkpoint.json").read_text())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("mean.npy", "w", force_zip64=True) as m:
            m.write(npy_header((2**22,)))
            for _ in range(2):
                m.write(b"\0" * 2**24)
    raw = buf.getvalue()
    (d / ck["arrays"]["file"]).write_bytes(raw)
    ck["arrays"]["sha256"] = hashlib.sha256(raw).hexdigest()
    (d / "checkpoint.json").write_text(json.dumps(ck))
    # the bound follows the strategy: genome dimension, population, generations (about 1 MiB here)
    with pytest.raises(RunDirError, match=r"would inflate to 32 MiB, more than the limit of 1\.[0-9]+ MiB"):
        read_checkpoint(d, setup)


def test_checkpoint_arrays_with_an_extra_member_are_refused(run_dir, tmp_path):
    """Every array of the strategy's state is there, plus one nobody reads (checksum updated):
    refused in one line naming the file and the member, not silently ignored."""
    import hashlib

    from blursim.meta.io import RunDirError, read_checkpoint

    src, setup = run_dir
    d = _copy_run(src, tmp_path / "run")
    ck = json.loads((d / "checkpoint.json").read_text())
    f = d / ck["arrays"]["file"]
    with np.load(f) as z:
        arrays = {k: z[k] for k in z.files}
    read_checkpoint(d, setup)  # the untouched copy resumes
    raw = npz_bytes(**arrays, planted=np.zeros(3))
    f.write_bytes(raw)
    ck["arrays"]["sha256"] = hashlib.sha256(raw).hexdigest()
    (d / "checkpoint.json").write_text(json.dumps(ck))
    with pytest.raises(RunDirError, match=r"holds member\(s\) 'planted' that a \w+ checkpoint does not have") as e:
        read_checkpoint(d, setup)
    assert str(f) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("kind", ["symlink", "hard link", "fifo", "directory"])
@pytest.mark.parametrize("fresh", [False, True])
def test_the_lock_never_writes_through_a_link(run_dir, tmp_path, capsys, kind, fresh):
    """A .lock planted in a run directory (or in a new --out holding only it) is refused with one
    line; the file it points to is untouched."""
    src, _ = run_dir
    d = tmp_path / "run"
    if fresh:
        d.mkdir()
    else:
        _copy_run(src, d)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    lock = d / ".lock"
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "hard link":
        os.link(victim, lock)
    elif kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    exp = tmp_path / "exp.json"
    exp.write_text(json.dumps(TINY))
    argv = ["meta-train", str(exp), "--quiet", "--generations", "2"] + (
        ["--out", str(d)] if fresh else ["--resume", str(d)])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot lock {d}" in err, err
    assert victim.read_text() == "precious\n"


# ---------------------------------------------------------------------------- memory
def test_memory_env_must_be_a_positive_size(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "net.json"
    spec.write_text(json.dumps({**CHAIN, "format": "blursim.network/1"}))
    for bad in ("0", "-5GiB", "lots", "0.0MiB"):
        monkeypatch.setenv("BLURSIM_MAX_MEMORY", bad)
        assert main(["validate", str(spec)]) == 2
        err = capsys.readouterr().err
        assert "$BLURSIM_MAX_MEMORY must be a positive size" in err and err.count("\n") == 1, err
    monkeypatch.setenv("BLURSIM_MAX_MEMORY", "1GiB")
    assert main(["validate", str(spec)]) == 0


def test_validate_counts_the_address_space_limit(tmp_path):
    """Under ``ulimit -v`` (RLIMIT_AS) of 3 GiB a network needing about 8 GiB is refused by
    validate, which names the limit (RAM and cgroup may be larger)."""
    net = {**CHAIN, "format": "blursim.network/1"}
    net["populations"] = [dict(p) for p in CHAIN["populations"]]
    net["populations"][0]["size"] = 2**15
    net["populations"][1]["size"] = 2**15
    spec = tmp_path / "net.json"
    spec.write_text(json.dumps(net))
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
            "from blursim.cli.main import main; sys.exit(main(['validate', sys.argv[1]]))")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("BLURSIM_MAX_MEMORY", None)
    out = subprocess.run([sys.executable, "-c", code, str(spec)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stderr
    assert "address space left under ulimit -v" in out.stderr and out.stderr.count("\n") == 1, out.stderr


def test_validate_fails_on_what_meta_train_refuses_for_memory(tmp_path, capsys, monkeypatch):
    exp = tmp_path / "exp.json"
    exp.write_text(json.dumps({**TINY, "execution": {"memory_budget_mb": 1000}, "strategy":
                               {"name": "cma_es", "sigma0": 0.2, "popsize": 10000}}))
    monkeypatch.setenv("BLURSIM_MAX_MEMORY", "8MiB")
    for argv in (["validate", str(exp)], ["meta-train", str(exp), "--out", str(tmp_path / "r"), "--quiet"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "a chunk of" in err and "needs" in err and "($BLURSIM_MAX_MEMORY)" in err, err
    assert not (tmp_path / "r").exists()  # refused before the run directory is made


def test_memory_budget_flag_is_the_budget_the_check_uses(tmp_path, capsys):
    exp = tmp_path / "exp.json"
    exp.write_text(json.dumps({**TINY, "execution": {"memory_budget_mb": 0.001}}))
    assert main(["validate", str(exp)]) == 2
    assert "one genome needs" in capsys.readouterr().err
    assert main(["meta-train", str(exp), "--out", str(tmp_path / "r"), "--quiet", "--memory-budget", "100"]) == 0
    assert main(["meta-train", str(exp), "--out", str(tmp_path / "r2"), "--quiet", "--memory-budget", "0.001"]) == 2
    assert "at --memory-budget: one genome needs" in capsys.readouterr().err


def test_an_allocation_failure_is_one_line(monkeypatch, capsys):
    import blursim.cli.basic as basic

    def boom(args):
        raise MemoryError

    monkeypatch.setattr(basic, "cmd_list", boom)
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("blursim: error: out of memory") and err.count("\n") == 1


def test_runtime_warnings_are_counted_not_printed(monkeypatch, capsys):
    import warnings

    import blursim.cli.basic as basic

    def noisy(args):
        with np.errstate(over="warn"):
            np.float32(np.float64(1e300))  # overflow in cast
        warnings.warn("overflow encountered in multiply", RuntimeWarning)
        return 0

    monkeypatch.setattr(basic, "cmd_list", noisy)
    assert main(["list"]) == 0
    err = capsys.readouterr().err
    assert "RuntimeWarning" not in err and err.count("\n") == 1
    assert "floating-point warning(s) suppressed: overflow" in err


# -------------------------------------------------------------------------- messages
def test_messages_quote_bounded_escaped_excerpts():
    e = SpecError("unknown field " + repr("k" * 5000), path="$.groups." + "k" * 5000, value="v" * 5000,
                  choices=["a", "b"], source="x.json")
    assert len(str(e)) <= 320 and "5000 characters" in str(e)  # three excerpts of at most 100, 80, 80
    assert shorten("a\x1b[31mb\u202ec\x07") == "a\\x1b[31mb\\u202ec\\x07"


@pytest.mark.parametrize("command", ["run", "evaluate"])
def test_a_genome_without_the_networks_group_is_named(tmp_path, capsys, command):
    spec = tmp_path / "net.json"
    spec.write_text(json.dumps(TINY["network"]))
    g = random_genome(seed=0).model_dump(mode="json", exclude_none=True)
    g["groups"] = {"other": g["groups"]["default"]}
    gf = tmp_path / "g.json"
    gf.write_text(json.dumps(g))
    assert main([command, str(spec), "--genome", str(gf), "--task", "xor", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{gf} at $.groups: the network uses genome group 'default'" in err, err
