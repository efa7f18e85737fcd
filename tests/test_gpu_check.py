"""``tools/gpu_check.py`` stays runnable on a machine without a GPU.

CI has no GPU, so the script's whole flow (backend selection, parity on every
example spec, the benchmark, the table and the JSON) runs here against a
stand-in ``cupy`` module that serves NumPy arrays. This checks the script and
the generic (GPU) code paths of the simulator, not CuPy itself; the real run
needs a GPU (docs/benchmarks.md, "GPU check").
"""

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _fake_cupy() -> types.ModuleType:
    m = types.ModuleType("cupy")
    m.__version__ = "0.0-numpy-stand-in"

    class _Pool:
        def free_all_blocks(self):
            pass

        def total_bytes(self):
            return 0

    pool = _Pool()

    class _Device:
        def __init__(self, i=0):
            self.id = i

        def use(self):
            pass

    class _Stream:
        def synchronize(self):
            pass

    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: 1,
        getDeviceProperties=lambda i: {"name": b"NumPy stand-in"},
        runtimeGetVersion=lambda: 0,
    )
    m.cuda = types.SimpleNamespace(runtime=runtime, Device=_Device, get_current_stream=lambda: _Stream())
    m.asnumpy = np.asarray
    m.get_default_memory_pool = lambda: pool
    m.__getattr__ = lambda name: getattr(np, name)  # everything else: NumPy
    return m


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow  # 15 s of the default suite's 5 minutes; CI has no GPU (python -m pytest -m slow runs it)
def test_gpu_check_runs_end_to_end_on_a_stand_in(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
    out = tmp_path / "gpu.json"
    rc = _load_script().main(["--quick", "--json", str(out)])
    doc = json.loads(out.read_text())
    specs = {p.stem for p in (ROOT / "specs").glob("*.json")}
    checked = {r["spec"] for r in doc["parity"]}
    assert specs | {"paper-es", "local-sparse (blocks)", "local-sparse (masked)"} == checked
    assert {r["dtype"] for r in doc["parity"]} == {"float64", "float32"}
    assert rc == 0 and all(r["ok"] for r in doc["parity"])
    # generic code paths against the fast NumPy path: rounding-level differences, within tolerance
    assert max(r["max_rel_err"] for r in doc["parity"] if r["dtype"] == "float64") <= 1e-9
    assert doc["device"]["device"] == "NumPy stand-in"
    assert doc["bench"]["machine"]["backend"] == "cupy"
    assert any(r["row"] == "paper-es products only S=2" for r in doc["bench"]["rows"])
    text = capsys.readouterr().out
    assert "CuPy vs NumPy parity" in text and "paper-es train S=1" in text and "gpu_check finished" in text
    # JAX on the CPU only: its gradient check is skipped, and says why in one line
    assert doc["gradient"] == []
    assert ("gpu_check: gradient check skipped: JAX has no GPU" in text) or (
        "gpu_check: gradient check skipped: JAX is not installed" in text)


def test_gpu_check_without_cupy_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    out = tmp_path / "gpu.json"
    assert _load_script().main(["--json", str(out)]) == 2
    assert "pip install 'blursim[gpu]'" in capsys.readouterr().out
    assert not out.exists()


@pytest.mark.parametrize("count", [0])
def test_gpu_check_without_a_gpu_says_so(monkeypatch, count, capsys):
    fake = _fake_cupy()
    fake.cuda.runtime.getDeviceCount = lambda: count
    monkeypatch.setitem(sys.modules, "cupy", fake)
    assert _load_script().main(["--skip-bench"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().out


@pytest.mark.slow  # 8 s; the default suite runs the same path in test_gpu_check_gradient_off_by_1e6_fails
def test_gpu_check_jax_path_on_the_cpu_stand_in(monkeypatch, tmp_path, capsys):
    """Without CuPy, ``--jax-cpu`` runs the JAX parity on JAX's CPU (where CI has no GPU); one tiny
    spec keeps it to two compilations. A JAX engine that is off by 1e-6 in its outputs fails it."""
    pytest.importorskip("jax")
    monkeypatch.setitem(sys.modules, "cupy", None)
    out = tmp_path / "gpu.json"
    script = _load_script()
    assert script.main(["--jax-cpu", "--skip-bench", "--specs", "mlp_2d", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["parity"] == [] and doc["device"] is None and doc["jax_device"]["platform"] == "cpu"
    assert [(r["spec"], r["dtype"]) for r in doc["jax_parity"]] == [("mlp_2d", "float64"), ("mlp_2d", "float32")]
    assert all(r["ok"] for r in doc["jax_parity"])
    assert doc["jax_parity"][0]["max_rel_err"] <= 1e-9
    text = capsys.readouterr().out
    assert "JAX (" in text and "CuPy vs NumPy" not in text
    # the gradient path: value_and_grad through 5 steps on JAX's default device (here its CPU)
    # against the CPU in float64, in both precisions, timed
    g = doc["gradient"]
    assert [(r["spec"], r["dtype"], r["unroll"]) for r in g] == [("mlp_2d", "float64", 5), ("mlp_2d", "float32", 5)] * 2
    assert all(r["ok"] and r["seconds_per_value_and_grad"] > 0 and r["grad_dim"] > 0 for r in g)
    assert g[0]["grad_max_rel_err"] <= 1e-12 and 0 < g[1]["grad_max_rel_err"] <= 1e-2  # float32 rounds
    # the NumPy engine (blursim.sim.adjoint): an independent derivative against the same reference
    assert [r["device"].startswith("numpy") for r in g] == [False, False, True, True]
    assert g[2]["grad_max_rel_err"] <= 1e-12 and 0 < g[3]["grad_max_rel_err"] <= 1e-2
    assert "meta-gradient value_and_grad on" in text

    from blursim.sim.jax_engine import JaxSimulator

    forward = JaxSimulator.forward
    monkeypatch.setattr(JaxSimulator, "forward", lambda self, *a: [np.asarray(o) + 1e-6 for o in forward(self, *a)])
    assert script.main(["--jax-cpu", "--skip-bench", "--specs", "mlp_2d"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_gpu_check_jax_on_the_cpu_alone_is_no_gpu(monkeypatch, capsys):
    pytest.importorskip("jax")
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert _load_script().main(["--skip-bench"]) == 2
    text = capsys.readouterr().out
    assert "pip install 'blursim[gpu]'" in text and "--jax-cpu" in text


def test_gpu_check_unknown_spec_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
    assert _load_script().main(["--skip-bench", "--specs", "nope"]) == 2
    assert "--specs: unknown network(s) nope" in capsys.readouterr().out


def test_gpu_check_gradient_off_by_1e6_fails(monkeypatch, capsys):
    """A device gradient off by 1e-6 of its largest entry, in float64, fails the check."""
    pytest.importorskip("jax")
    monkeypatch.setitem(sys.modules, "cupy", None)
    script = _load_script()
    right, calls = script._value_and_grad, []

    def off(gw):  # the CPU float64 reference is the first call, the device's float64 the second
        loss, g = right(gw)
        calls.append(gw.dtype)
        return loss, (g + 1e-6 * np.abs(g).max()) if len(calls) == 2 else g

    monkeypatch.setattr(script, "_value_and_grad", off)
    assert script.main(["--jax-cpu", "--skip-bench", "--quick", "--specs", "mlp_2d"]) == 1
    assert calls == ["float64", "float64", "float32"]
    text = capsys.readouterr().out
    assert "FAIL" in text.split("meta-gradient value_and_grad on")[1].splitlines()[2]
