"""Smoke tests of the reproduction scripts (tools/repro_*.py, tools/make_results.py).

Each script runs with ``--quick`` (a tiny population, network and run) into a
temporary directory: it must print its time estimate first, write its JSON with
the command line, seeds, wall time and machine, write its figure(s), and a second
run with the same seed must give the same numbers. The real runs are long and
live in tools/ (see docs/results.md), not in the test suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"


def run(script: str, tmp: Path, *extra: str) -> dict:
    out = tmp / f"{script}.json"
    cmd = [sys.executable, str(TOOLS / f"{script}.py"), "--quick", "--quiet", "--out", str(out),
           "--fig-dir", str(tmp / "figures"), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("[estimate]"), proc.stdout[:500]
    doc = json.loads(out.read_text())
    assert doc["format"] == "blursim.repro/1" and doc["name"] == script and doc["quick"] is True
    assert f"tools/{script}.py" in doc["command"] and "--quick" in doc["command"]
    assert doc["wall_seconds"] >= 0 and doc["machine"]["cores"] >= 1 and doc["machine"]["cpu"]
    for f in doc["figures"]:
        assert Path(f).exists() and Path(f).stat().st_size > 1000, f
    return doc


def strip(doc: dict) -> dict:
    """The numbers of a result document (what must repeat with the same seed)."""
    d = dict(doc["results"])
    for k in ("curve", "curves"):
        d.pop(k, None)
    d.pop("fig2_xor_numbers", None)
    return json.loads(json.dumps(d).replace("NaN", "null"))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("repro")
    return tmp, run("repro_toy", tmp)


def test_repro_toy(toy):
    tmp, doc = toy
    s = doc["results"]["summary"]
    assert set(s["per_task_mean_over_runs"]) == set(s["train_tasks"] + s["validation_tasks"])
    assert (tmp / "repro_toy_genome.json").exists()


def test_repro_digits_es_repeats(tmp_path):
    a = run("repro_digits_es", tmp_path / "a")
    b = run("repro_digits_es", tmp_path / "b")
    assert strip(a) == strip(b)
    assert a["results"]["paper_accuracy"] == 0.84


def test_repro_digits_curriculum(tmp_path):
    doc = run("repro_digits_curriculum", tmp_path)
    s = doc["results"]["summary"]
    assert set(s) == {"digits", "digits_0_4", "digits_5_9"}
    # the lr of each optimizer is chosen on the training split: the record says which
    for e in doc["results"]["per_task"].values():
        for tabs in e["baselines"].values():
            for t in tabs.values():
                assert t["selected_lr"] in t["lrs"] and len(t["train_final_accuracy"]) == len(t["lrs"])


def test_repro_depth(tmp_path):
    doc = run("repro_depth", tmp_path)
    acc = doc["results"]["accuracy"]
    assert set(acc) == {"trained on 1", "trained on 2", "trained on 4", "initial genome"}
    assert all(set(v) == {"1", "2", "3", "4", "10", "dag_skip"} for v in acc.values())


def test_repro_ablation(tmp_path):
    doc = run("repro_ablation", tmp_path)
    assert len(doc["results"]["rows"]) == 2


def test_repro_fig2_and_make_results(toy):
    tmp, _ = toy
    doc = run("repro_fig2", tmp, "--genome", str(tmp / "repro_toy_genome.json"))
    assert set(doc["results"]["summary"]) == {"learned", "backprop"}
    template = tmp / "template.md"
    template.write_text("# R\n{{header:repro_toy}}\n{{table:repro_toy}}\n{{figure:repro_toy}}\n"
                        "{{repro_toy:results.summary.validation_mean_over_runs:.2f}}\n{{table:repro_fig2}}\n"
                        "{{table:repro_depth}}\n")
    out = tmp / "results.md"
    proc = subprocess.run([sys.executable, str(TOOLS / "make_results.py"), "--results", str(tmp),
                           "--template", str(template), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "Smoke run" in text and "tools/repro_toy.py --quick" in text
    assert "no results yet" in text  # repro_depth was not run in this directory
