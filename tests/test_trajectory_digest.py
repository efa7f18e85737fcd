"""tools/trajectory_digest.py: the bit-identity check used when the simulator is restructured."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("trajectory_digest", ROOT / "tools" / "trajectory_digest.py")
td = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(td)


def test_digest_sees_every_bit():
    a = np.linspace(-1, 1, 12).reshape(3, 4)
    b = a.copy()
    b.flat[5] = np.nextafter(b.flat[5], 2.0)  # one ulp
    assert td.digest(a) == td.digest(a.copy())
    assert td.digest(a) != td.digest(b)
    assert td.digest(a) != td.digest(a.reshape(4, 3))  # same bytes, other shape
    assert td.digest(a) != td.digest(a.astype(np.float32).astype(np.float64))


def test_compare_counts_and_flags_differences(tmp_path, capsys):
    base = {"cases": {"n|spec|random|float64|S1R1B5|t1|auto": ["a", "b"], "m|x": ["c"]}, "skipped": {}}
    other = json.loads(json.dumps(base))
    (tmp_path / "a.json").write_text(json.dumps(base))
    (tmp_path / "b.json").write_text(json.dumps(base))
    assert td.compare(str(tmp_path / "a.json"), str(tmp_path / "b.json")) == 0
    assert "3 arrays compared, 3 bit-identical, 0 different" in capsys.readouterr().out
    other["cases"]["m|x"] = ["d"]
    (tmp_path / "b.json").write_text(json.dumps(other))
    assert td.compare(str(tmp_path / "a.json"), str(tmp_path / "b.json")) == 1
    assert "2 bit-identical, 1 different" in capsys.readouterr().out
    del other["cases"]["m|x"]
    (tmp_path / "b.json").write_text(json.dumps(other))
    assert td.compare(str(tmp_path / "a.json"), str(tmp_path / "b.json")) == 1  # a case went missing


def test_cases_cover_the_rules_and_threads_agree():
    """One network, one shape: every rule variant runs, and 1 and 2 threads give the same bits (the
    simulator's promise, docs/benchmarks.md), so the digests of a case do not depend on the machine's
    thread count."""
    res = td.collect(quick=True, only="toy_blur", log=lambda s: None)
    keys = res["cases"]
    assert not res["skipped"]
    assert {k.split("|")[1] for k in keys} == set(td.VARIANTS)
    genomes = {k.split("|")[2] for k in keys}
    assert "random" in genomes and "repro_toy_genome" in genomes
    for k, v in keys.items():
        if k.endswith("|t1|auto"):
            assert keys[k.replace("|t1|", "|t2|")] == v, k
