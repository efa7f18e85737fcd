"""Runs that cannot be lost: locked run directories, checkpoints checked against everything,
restarts, and a run killed at every one of its file writes resumes to the uninterrupted result.

Every run here is the tiny experiment of ``test_meta_train`` (2 -> 6 -> 2, populations of 6).
Real processes are killed here (two processes on one directory) and in
``test_meta_train.test_killed_process_resumes_to_the_uninterrupted_result``; the kill at
every file write is simulated in process (:func:`killed_at`), which makes each write fail and
every later one with it, as a dead process would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_meta_train import files_of, tiny_experiment

import blursim.io as bio
from blursim.cli.main import main
from blursim.meta import meta_train, prepare_experiment
from blursim.meta.io import RunDirError, RunLock, read_log
from blursim.meta.observers import RunDirectory


def cli(capsys, argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(capsys, argv) -> str:
    rc, out, err = cli(capsys, argv)
    assert rc == 2, (rc, out, err)
    assert err.startswith("blursim: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def setup2():
    """A prepared two-generation experiment (prepared once: runs below only differ in files)."""
    return prepare_experiment(tiny_experiment(generations=2))


@pytest.fixture(scope="module")
def full2(setup2, tmp_path_factory):
    """The uninterrupted two-generation run."""
    out = tmp_path_factory.mktemp("full") / "run"
    meta_train(setup2, out=out)
    return out


# ---------------------------------------------------------------------- the lock
def test_a_locked_directory_is_refused(tmp_path, setup2):
    out = tmp_path / "run"
    first = RunDirectory(out)
    first.create(setup2)
    try:
        with pytest.raises(RunDirError, match=r"is in use by another blursim process \(pid \d+"):
            meta_train(setup2, out=out)
        with pytest.raises(RunDirError, match="in use by another"):
            meta_train(setup2, out=out, resume=True)
        with pytest.raises(RunDirError, match="in use by another"):
            RunLock(out).acquire()
    finally:
        first.close()
    assert meta_train(setup2, out=out, resume=True).state.generation == 2  # free again


def _start(tmp_path, exp, out, *extra):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(exp))
    proc = subprocess.Popen([sys.executable, "-m", "blursim.cli.main", "meta-train", str(path), "--out",
                             str(out), "--quiet", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return path, proc


def _wait_for(proc, cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if cond():
            return True
        time.sleep(0.01)
    return False


def _records(out):
    try:
        return len(read_log(out / "log.jsonl"))
    except RunDirError:
        return 0


def test_two_processes_on_one_directory(tmp_path, capsys):
    """A second meta-train on the directory of a running one is refused at once, whatever
    experiment it brings; the first run's directory stays consistent and resumable."""
    exp = tiny_experiment(generations=200)
    out = tmp_path / "run"
    path, proc = _start(tmp_path, exp, out)
    try:
        assert _wait_for(proc, lambda: _records(out) >= 2), proc.stderr.read()
        err = one_line_error(capsys, ["meta-train", path, "--out", out, "--quiet"])
        assert f"{out} is in use by another blursim process (pid {proc.pid}" in err
        err = one_line_error(capsys, ["meta-train", path, "--resume", out, "--quiet"])
        assert "is in use by another" in err
        other = tmp_path / "other.json"
        other.write_text(json.dumps(tiny_experiment(generations=3, seed=99)))
        err = one_line_error(capsys, ["meta-train", other, "--out", out, "--quiet"])
        assert "is in use by another" in err
        assert proc.poll() is None  # the first run is untouched and still running
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    # killed: the lock went with the process; the directory resumes to a consistent run
    done = json.loads((out / "checkpoint.json").read_text())["generation"]
    r = meta_train(exp, out=out, resume=True, generations=done + 1)
    assert r.state.generation == done + 1
    assert [x["generation"] for x in read_log(out / "log.jsonl")] == list(range(done + 2))


# ------------------------------------------------------------ restarts and foreign dirs
def test_a_run_killed_before_its_first_checkpoint_is_restarted(tmp_path, capsys):
    """Killed after its first log line, before its first checkpoint (the third file write):
    a plain meta-train says how to restart it, and ``--resume`` restarts it to the
    uninterrupted result."""
    exp = tiny_experiment(generations=3)
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(exp))
    meta_train(exp, out=tmp_path / "full")
    out = tmp_path / "killed"
    with killed_at(3), pytest.raises(Killed):
        meta_train(exp, out=out)
    assert sorted(p for p in os.listdir(out) if not p.endswith(".tmp")) == ["experiment.json",
                                                                           "log.jsonl"]
    err = one_line_error(capsys, ["meta-train", path, "--out", out, "--quiet"])
    assert "stopped before its first checkpoint: restart it with --resume" in err
    rc, _, err = cli(capsys, ["meta-train", path, "--resume", out, "--quiet"])
    assert rc == 0, err
    assert files_of(tmp_path / "full") == files_of(out)
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]


def test_restart_refuses_another_experiment(tmp_path, setup2):
    out = tmp_path / "run"
    rd = RunDirectory(out)
    rd.create(setup2)  # killed right after experiment.json
    rd.close()
    other = prepare_experiment(tiny_experiment(generations=2, seed=3))
    with pytest.raises(RunDirError, match=r"different experiment \(differs in: seed\)"):
        meta_train(other, out=out, resume=True)


def test_foreign_and_empty_directories(tmp_path, setup2, capsys):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(RunDirError, match=r"is not empty and holds no blursim run \(holiday.jpg\)"):
        meta_train(setup2, out=foreign)
    assert os.listdir(foreign) == ["holiday.jpg"]  # nothing written, not even a lock
    with pytest.raises(RunDirError, match="holds no checkpoint.json"):
        meta_train(setup2, out=foreign, resume=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert meta_train(setup2, out=empty).state.generation == 2  # an empty directory is fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="exists and is not a directory"):
        meta_train(setup2, out=tmp_path / "file")


def test_document_output_stays_in_the_working_tree(tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    outside = tmp_path / "outside"
    outside.mkdir()
    (work / "link").symlink_to(outside)
    exp = tiny_experiment(generations=1, output="link/run")
    path = work / "exp.json"
    path.write_text(json.dumps(exp, indent=2))
    err = one_line_error(capsys, ["meta-train", path, "--quiet"])
    assert f"{path}, line" in err and "at $.output:" in err and "--out DIR" in err
    assert os.listdir(outside) == []
    # on the command line the user may write anywhere
    rc, _, err = cli(capsys, ["meta-train", path, "--quiet", "--out", outside / "run"])
    assert rc == 0, err
    exp = tiny_experiment(generations=1, name="mine")
    path.write_text(json.dumps(exp, indent=2))
    rc, _, err = cli(capsys, ["meta-train", path, "--quiet"])
    assert rc == 0 and (work / "runs" / "mine" / "log.jsonl").exists(), err


# ------------------------------------------------------------- checkpoint checks
def _tampered(tmp_path, full2, edit):
    out = tmp_path / "run"
    out.mkdir()
    for f in os.listdir(full2):
        if f != ".lock":
            (out / f).write_bytes((full2 / f).read_bytes())
    edit(out)
    return out


def _edit_ck(fn):
    def edit(out):
        ck = json.loads((out / "checkpoint.json").read_text())
        fn(ck, out)
        (out / "checkpoint.json").write_text(json.dumps(ck))
    return edit


def _set(*path, value):
    def fn(ck, out):
        node = ck
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return _edit_ck(fn)


def _off_by_one(ck, out):
    ck["generation"] -= 1
    ck["log"]["records"] -= 1
    ck["arrays"]["file"] = f"checkpoint-g{ck['generation']:07d}.npz"
    os.rename(out / "checkpoint-g0000002.npz", out / ck["arrays"]["file"])


def _log_cut(ck, out):  # a consistent checkpoint of generation 1 over the log of generation 2
    _off_by_one(ck, out)
    lines = (out / "log.jsonl").read_text().splitlines(keepends=True)
    import hashlib

    ck["log"]["sha256"] = hashlib.sha256("".join(lines[:2]).encode()).hexdigest()


def _outside(ck, out):
    (out.parent / "elsewhere.npz").write_bytes((out / ck["arrays"]["file"]).read_bytes())
    ck["arrays"]["file"] = "../elsewhere.npz"


def _symlink(ck, out):
    target = out.parent / "elsewhere.npz"
    os.rename(out / ck["arrays"]["file"], target)
    os.symlink(target, out / ck["arrays"]["file"])


def _log_edited(out):
    lines = (out / "log.jsonl").read_text().splitlines(keepends=True)
    rec = json.loads(lines[1])
    rec["fitness"]["best"] = 1.0
    lines[1] = json.dumps(rec, separators=(",", ":")) + "\n"
    (out / "log.jsonl").write_text("".join(lines))


def _evaluations(ck, out):  # a log whose counts disagree, with a checksum to match
    import hashlib

    lines = (out / "log.jsonl").read_text().splitlines(keepends=True)
    rec = json.loads(lines[2])
    rec["evaluations"] = 7
    lines[2] = json.dumps(rec, separators=(",", ":")) + "\n"
    (out / "log.jsonl").write_text("".join(lines))
    ck["log"]["sha256"] = hashlib.sha256("".join(lines).encode()).hexdigest()


def _strategy_generation(ck, out):
    ck["strategy"]["state"]["generation"] = 1


def _not_utf8(out):
    (out / "checkpoint.json").write_bytes(b"\xff\xfe")


def _npz_corrupt(out):
    raw = bytearray((out / "checkpoint-g0000002.npz").read_bytes())
    raw[100] ^= 0xFF
    (out / "checkpoint-g0000002.npz").write_bytes(bytes(raw))


@pytest.mark.parametrize("edit, match", [
    (_edit_ck(_off_by_one), "does not hold the 2 records|inconsistent"),
    (_edit_ck(_log_cut), "the strategy's state is after 2 generation"),
    (_set("generation", value=3), "generation 3 but 3 log records"),
    (_set("log", "records", value="three"), r"malformed at \$\.log\.records"),
    (_set("arrays", value=None), r"malformed at \$\.arrays"),
    (_set("strategy", value={}), "strategy"),
    (_set("strategy", "state", value={"generation": "x"}), "strategy's state is malformed|checkpoint"),
    (_set("spec_hash", value="0" * 64), "different experiment"),
    (_set("seed", value=8), "seed 8"),
    (_set("format_version", value=99), "format version 99"),
    (_edit_ck(_outside), "names the arrays file '../elsewhere.npz'"),
    (_edit_ck(_symlink), "is not a regular file"),
    (_edit_ck(_strategy_generation), "strategy|checkpoint"),
    (_edit_ck(_evaluations), "counts 7 evaluations, but 2 generations of 6 make 12"),
    (_log_edited, "does not hold the 3 records"),
    (_not_utf8, "not UTF-8"),
    (_npz_corrupt, "checksum differs"),
    (lambda out: (out / "checkpoint.json").write_text("[]"), "is not a blursim meta-training checkpoint"),
    (lambda out: (out / "log.jsonl").write_text("{}\n"), "not the record of generation 0"),
    (lambda out: os.remove(out / "checkpoint-g0000002.npz"), "is missing"),
])
def test_a_checkpoint_that_disagrees_is_refused(edit, match, tmp_path, full2, setup2, capsys):
    out = _tampered(tmp_path, full2, edit)
    with pytest.raises(RunDirError, match=match):
        meta_train(setup2, out=out, resume=True, generations=3)
    assert json.loads((out / "experiment.json").read_text())  # nothing was changed or run


def test_a_tampered_checkpoint_through_the_command_line(tmp_path, full2, capsys):
    out = _tampered(tmp_path, full2, _edit_ck(_off_by_one))
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(tiny_experiment(generations=2)))
    err = one_line_error(capsys, ["meta-train", path, "--resume", out, "--quiet"])
    assert "cannot resume" in err


# ------------------------------------------------------------------ best genome
def test_best_genome_is_removed_when_a_whole_generation_diverges(tmp_path, monkeypatch):
    """Generation 1 has a best candidate; every candidate of generation 2 diverges: the
    directory must not keep generation 1's best as if it were the latest."""
    from blursim.meta.evaluate import EvalResult

    real = EvalResult.fitness
    diverge = {"on": False}

    def fitness(self, metric):
        f = real(self, metric)
        return np.full_like(f, np.nan) if diverge["on"] and f.size == 6 else f

    class After1:
        def on_generation(self, trainer, gen):
            diverge["on"] = gen.record["generation"] >= 1

    monkeypatch.setattr(EvalResult, "fitness", fitness)
    out = tmp_path / "run"
    r = meta_train(tiny_experiment(generations=1), out=out, observers=[After1()])
    assert json.loads((out / "best_genome.json").read_text())["meta"]["generation"] == 1
    r = meta_train(tiny_experiment(generations=2), out=out, resume=True, observers=[After1()])
    assert r.records[2]["best"] is None and r.records[2]["diverged"] == 6
    assert not (out / "best_genome.json").exists() and r.best_genome is None


# ------------------------------------------------------- killed at every file write
class Killed(BaseException):
    """The process died (a BaseException: nothing may catch it on the way out)."""


@contextlib.contextmanager
def killed_at(n: int):
    """Kill the run at its ``n``-th file write (1-based; a replace into place or a removal):
    that write and every later one never happen, as if the process had died just before it.
    Yields the counter (``count["n"]``: writes attempted)."""
    count = {"n": 0, "dead": False}
    real_replace, real_unlink = bio._replace, bio._unlink

    def gate():
        if count["dead"]:
            raise Killed
        count["n"] += 1
        if count["n"] == n:
            count["dead"] = True
            raise Killed

    def replace(a, b):
        gate()
        real_replace(a, b)

    def unlink(p):
        gate()
        real_unlink(p)

    bio._replace, bio._unlink = replace, unlink
    try:
        yield count
    finally:
        bio._replace, bio._unlink = real_replace, real_unlink


def _continue(setup, out):
    """What a user does after a kill: resume (or restart) a run that has begun, else start it."""
    if (out / "experiment.json").exists():
        return meta_train(setup, out=out, resume=True)
    return meta_train(setup, out=out)


@pytest.mark.parametrize("checkpoint_every, generations", [
    (1, 2),  # ~19 writes: experiment, log, genomes, checkpoint arrays and JSON, old arrays, plot
    pytest.param(2, 3, marks=pytest.mark.slow),  # logs written between checkpoints, too
])
def test_killed_at_every_file_write_resumes_to_the_uninterrupted_run(checkpoint_every, generations,
                                                                     tmp_path, monkeypatch):
    import blursim.meta.plot as plot

    monkeypatch.setattr(plot, "plot_records", lambda records, **kw: b"\x89PNG stub")  # the write, not the art
    exp = tiny_experiment(generations=generations)
    exp["execution"] = {"checkpoint_every": checkpoint_every}
    setup = prepare_experiment(exp)
    meta_train(setup, out=tmp_path / "full")
    with killed_at(10**9) as count:
        meta_train(setup, out=tmp_path / "count")
    writes = count["n"]
    assert writes >= 6 * generations
    for n in range(1, writes + 1):
        out = tmp_path / f"killed-{n}"
        with killed_at(n), pytest.raises(Killed):
            meta_train(setup, out=out)
        r = _continue(setup, out)
        assert r.state.generation == generations, n
        assert files_of(tmp_path / "full") == files_of(out), f"killed at write {n}"
        names = os.listdir(out)
        assert not [p for p in names if p.endswith(".tmp")], (n, names)
        assert [p for p in names if p.endswith(".npz")] == [f"checkpoint-g{generations:07d}.npz"], (n, names)
