"""Gradient meta-training compiled once and spread over devices (issue 25 items 3 and 4).

- A second process finds the unroll in the persistent compilation cache
  (:mod:`blursim.meta.jax_cache`) and compiles nothing: JAX's own monitoring events count the
  cache's hits and misses in each process.
- Four JAX devices (CPU devices forced by ``XLA_FLAGS``, which JAX reads when it is first
  imported: hence a subprocess) give the one-device run's numbers up to float reassociation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_meta_train import tiny_experiment

pytest.importorskip("jax")
pytest.importorskip("optax")

from blursim.meta import jax_cache  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

COUNT = """
import json, sys
from jax import monitoring
counts = {}
monitoring.register_event_listener(lambda event, **kw: counts.__setitem__(event, counts.get(event, 0) + 1))
"""

ONE_GRADIENT = COUNT + """
from blursim.meta import prepare_experiment
from blursim.meta.objective import MetaObjective
from blursim.meta.seeds import gradient_seeds
setup = prepare_experiment(sys.argv[1])
loss, grad, _ = MetaObjective(setup, "train").value_and_grad(setup.x0, gradient_seeds(7, 0, 0, 0, 2),
                                                             setup.train_protocol(0))
print(json.dumps({"hits": counts.get("/jax/compilation_cache/cache_hits", 0),
                  "misses": counts.get("/jax/compilation_cache/cache_misses", 0),
                  "loss": loss, "grad": grad.tolist()}))
"""

ON_DEVICES = """
import json, sys
import jax
from blursim.meta import meta_train, prepare_experiment
from blursim.meta.gradient_step import default_objective
from blursim.meta.objective import MetaObjective
setup = prepare_experiment(sys.argv[1])
one = meta_train(setup, objective=MetaObjective(setup, "train", dtype="float64", devices=1), plot=False)
many = meta_train(setup, plot=False)  # the default objective: every device
out = {"devices": jax.device_count(), "used": len(default_objective(setup).devices)}
for name, r in (("one", one), ("many", many)):
    out[name] = {"x": r.state.strategy_state.x.tolist(),
                 "loss": [rec["meta_loss"]["runs"] for rec in r.records[1:]]}
print(json.dumps(out))
"""


def run_python(code: str, *args: str, **env: str) -> dict:
    full = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **env}
    full.pop("JAX_COMPILATION_CACHE_DIR", None)  # a cache of the caller's would take precedence
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=full,
                       timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def gradient_doc(tmp_path: Path, **options) -> str:
    exp = tiny_experiment(generations=2, validation={"every": 100},
                          execution={"dtype": "float64"},
                          strategy={"name": "gradient", "options": {"learning_rate": 0.05, **options}})
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(exp))
    return str(path)


def test_a_second_process_loads_the_unroll_from_the_cache(tmp_path):
    """Two processes, each one meta-gradient of a 2-step unroll (about 5 s of CPU each)."""
    exp = json.loads(Path(gradient_doc(tmp_path)).read_text())
    exp["inner"] = {**exp["inner"], "steps": 2, "query_batches": 1}
    exp["curriculum"] = None
    doc, cache = tmp_path / "small.json", tmp_path / "cache"
    doc.write_text(json.dumps(exp))
    doc = str(doc)
    # the JAX engine (on one CPU device the default engine is the NumPy reverse pass, which compiles nothing)
    first = run_python(ONE_GRADIENT, doc, BLURSIM_JAX_CACHE=str(cache), BLURSIM_META_ENGINE="jax")
    second = run_python(ONE_GRADIENT, doc, BLURSIM_JAX_CACHE=str(cache), BLURSIM_META_ENGINE="jax")
    assert first["misses"] > 0 and first["hits"] == 0
    assert second["misses"] == 0 and second["hits"] == first["misses"]  # nothing compiled again
    assert any(cache.iterdir())
    assert second["loss"] == first["loss"] and second["grad"] == first["grad"]  # the same program


def test_the_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(jax_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert jax_cache.cache_dir() == tmp_path / "blursim" / "jax"
    monkeypatch.setenv(jax_cache.ENV, str(tmp_path / "mine"))
    assert jax_cache.cache_dir() == tmp_path / "mine"
    for off in ("off", "0", "", "No"):
        monkeypatch.setenv(jax_cache.ENV, off)
        assert jax_cache.cache_dir() is None


def test_the_cache_is_off_when_asked_and_a_configured_one_is_kept(monkeypatch, tmp_path):
    class Config:  # what enable() reads and sets of jax.config
        jax_compilation_cache_dir = None

        def update(self, name, value):
            setattr(self, name, value)

    class Jax:
        config = Config()

    monkeypatch.setenv(jax_cache.ENV, "off")
    assert jax_cache.enable(Jax) is None and Jax.config.jax_compilation_cache_dir is None
    monkeypatch.setenv(jax_cache.ENV, str(tmp_path / "c"))
    assert jax_cache.enable(Jax) == tmp_path / "c" and (tmp_path / "c").is_dir()
    assert Jax.config.jax_compilation_cache_dir == str(tmp_path / "c")
    assert Jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    monkeypatch.setenv(jax_cache.ENV, str(tmp_path / "other"))
    assert jax_cache.enable(Jax) == tmp_path / "c"  # already configured: left as it is


@pytest.mark.slow
def test_four_devices_give_the_one_device_run_up_to_reassociation(tmp_path):
    """Two runs x two draws per step = 4 genomes per step, one per device; two steps, float64.

    Tolerance (float reassociation in the batched products): meta-losses to 1e-12 relative,
    genomes to 1e-9 absolute. Measured here: losses bit-equal, genomes 1.1e-12 apart (6.5e-12
    relative) after two Adam steps, which divide tiny gradient differences by sqrt(v). A wrong
    seed, genome or pairing moves them by about the learning rate (0.05). Slow (about 20 s of
    CPU: two processes' worth of compiling): ``python -m pytest -m slow
    tests/test_gradient_devices.py``."""
    doc = gradient_doc(tmp_path, runs=2, meta_batch=2, init_noise=0.05, sync_every=0)
    res = run_python(ON_DEVICES, doc, XLA_FLAGS="--xla_force_host_platform_device_count=4",
                     BLURSIM_JAX_CACHE="off")
    assert res["devices"] == 4 and res["used"] == 4
    one, many = res["one"], res["many"]
    np.testing.assert_allclose(many["loss"], one["loss"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(many["x"], one["x"], rtol=0, atol=1e-9)
    x0 = np.array(one["x"])
    assert np.abs(x0[0] - x0[1]).max() > 1e-3  # the two runs differ: a mix-up would show
