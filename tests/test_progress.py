"""Progress lines off a terminal (blursim.meta.progress) and SIGTERM handled like Ctrl-C in
``blursim meta-train`` (issue 26, item 2)."""

import io
import json
import signal
import subprocess
import sys
import time

from test_meta_train import tiny_experiment

from blursim.meta import meta_train
from blursim.meta.io import read_log
from blursim.meta.progress import ProgressLines, duration


class Ticking:
    """A clock that advances ``dt`` seconds at each reading: every generation 'takes' a while."""

    def __init__(self, dt):
        self.t, self.dt = 0.0, dt

    def __call__(self):
        self.t += self.dt
        return self.t


def test_lines_name_the_generation_fitness_validation_rate_and_eta():
    out = io.StringIO()
    lines = ProgressLines(4, every=1e9, stream=out, clock=Ticking(1.0), heartbeat=False)
    meta_train(tiny_experiment(generations=4), observers=[lines])
    text = out.getvalue().splitlines()
    # the first record and the last generation only: 'every' is never reached
    assert len(text) == 2, text
    assert text[0].startswith("tiny: generation 0/4 (0%)") and "validation" in text[0]
    last = text[1]
    assert last.startswith("tiny: generation 4/4 (100%)")
    assert "fitness best" in last and "validation" in last and "(at 4)" in last  # validated at the end
    assert "s/generation" in last and "ETA" not in last  # nothing left


def test_a_line_at_least_every_interval_and_not_more():
    out = io.StringIO()
    clock = Ticking(10.0)  # each reading 10 s later: about one generation per reading
    lines = ProgressLines(5, every=25.0, stream=out, clock=clock, heartbeat=False)
    meta_train(tiny_experiment(generations=5), observers=[lines])
    text = out.getvalue().splitlines()
    assert 2 < len(text) < 6, text  # not one line per generation, but more than first and last
    assert any("ETA" in t for t in text)


def test_a_long_generation_gets_under_way_lines():
    class Slow:
        def on_generation(self, trainer, gen):
            if gen.record["generation"] == 1:
                time.sleep(0.5)  # generation 2 'takes' half a second

    out = io.StringIO()
    lines = ProgressLines(2, every=0.1, stream=out)
    meta_train(tiny_experiment(generations=2), observers=[lines, Slow()])
    assert "tiny: generation 2/2 under way for" in out.getvalue(), out.getvalue()


def test_silent_on_a_terminal_or_when_quiet():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    meta_train(tiny_experiment(generations=1), observers=[ProgressLines(1, stream=tty)])
    assert tty.getvalue() == ""
    quiet = io.StringIO()
    meta_train(tiny_experiment(generations=1), observers=[ProgressLines(1, stream=quiet, quiet=True)])
    assert quiet.getvalue() == ""


def test_gradient_vocabulary_is_steps():
    import pytest

    pytest.importorskip("jax")
    pytest.importorskip("optax")
    out = io.StringIO()
    exp = tiny_experiment(strategy={"name": "gradient", "options": {"learning_rate": 0.01}}, generations=2,
                          validation={"every": 5})
    exp["inner"]["replicas"] = 1
    r = meta_train(exp, observers=[ProgressLines(2, stream=out, every=1e9)])
    assert "tiny: step 2/2" in out.getvalue() and "meta-loss" in out.getvalue()
    # the last step is validated at the end although validation.every (5) does not divide 2; the
    # log keeps its schedule
    assert r.records[-1]["mean"] is None and r.records[1]["mean"] is None
    assert r.end_validation["generation"] == 2 and r.mean_genome.meta["validation_mean"] is not None
    assert "validation" in out.getvalue().splitlines()[-1] and "at step 2 (validated at the end)" in out.getvalue()


def test_duration():
    assert duration(42.4) == "42 s"
    assert duration(425) == "7 min 05 s"
    assert duration(7380) == "2 h 03 min"


def test_sigterm_checkpoints_says_how_to_resume_and_the_run_resumes(tmp_path):
    """``meta-train > file`` writes progress lines; ``kill -TERM`` leaves a resumable run."""
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(tiny_experiment(generations=2000)))
    out = tmp_path / "run"
    log = tmp_path / "stdout.txt"
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "blursim.cli.main", "meta-train", str(path), "--out", str(out),
             "--progress-every", "0.2"], stdout=f, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if json.loads((out / "checkpoint.json").read_text())["generation"] >= 2:
                        break
                except (FileNotFoundError, json.JSONDecodeError, KeyError):
                    pass
                time.sleep(0.01)
            assert proc.poll() is None, "the run ended before it could be terminated"
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
    err = proc.stderr.read().decode()
    assert rc == 143, err
    assert "terminated (SIGTERM)" in err and f"--resume {out}" in err
    done = json.loads((out / "checkpoint.json").read_text())["generation"]
    assert f"checkpoint at generation {done};" in err
    assert len(read_log(out / "log.jsonl")) >= done + 1
    progress = [ln for ln in log.read_text().splitlines() if ln.startswith("tiny: generation")]
    assert progress, log.read_text()
    from blursim.cli.main import main

    assert main(["meta-train", str(path), "--resume", str(out), "--generations", str(done + 2),
                 "--quiet"]) == 0
    assert len(read_log(out / "log.jsonl")) == done + 3
