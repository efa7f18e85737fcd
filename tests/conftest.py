import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings

# tests/reference (the independent backprop) is imported as a plain package.
sys.path.insert(0, str(Path(__file__).parent))

# Compiled JAX programs (blursim.meta.jax_cache) go to a cache of this test session's own, removed
# at its end: the suite never writes to the user's ~/.cache, and a user's cache never changes what
# the suite measures; subprocesses of the suite inherit it (the cache test sets its own).
if "BLURSIM_JAX_CACHE" not in os.environ:
    _JAX_CACHE = tempfile.mkdtemp(prefix="blursim-test-jax-cache-")
    os.environ["BLURSIM_JAX_CACHE"] = _JAX_CACHE
    atexit.register(shutil.rmtree, _JAX_CACHE, ignore_errors=True)

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile(
    "ci", deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("ci" if os.environ.get("CI") else "default")

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def chain_spec(n_in, n_h, n_out, k, rules, conn1=None, conn2=None, bias=True, **hidden):
    """in -> h -> out, with optional connectivities."""
    h = {"name": "h", "size": n_h, "role": "hidden", "forward_activation": "tanh",
         "backward_activation": "tanh"}
    h.update(hidden)
    return {
        "k": k,
        "populations": [
            {"name": "in", "size": n_in, "role": "input"},
            h,
            {"name": "out", "size": n_out, "role": "output", "forward_activation": "tanh",
             "backward_activation": "identity"},
        ],
        "projections": [
            {"from": "in", "to": "h", "bias": bias, "connectivity": conn1 or {"kind": "all_to_all"}},
            {"from": "h", "to": "out", "bias": bias, "connectivity": conn2 or {"kind": "all_to_all"}},
        ],
        "rules": rules,
    }


def all_synapses(sim, state):
    """Every forward and backward synapse, DESIGN layout, as one list of arrays."""
    out = []
    for q in range(len(sim.program.projs)):
        out.append(state.forward_synapses(q, sim.k))
        v = state.backward_synapses(q, sim.k)
        if v is not None:
            out.append(v)
    return out


def kill_meta_train_at(args, out: Path, generation: int, timeout: float):
    """Start ``blursim meta-train ARGS`` in another process, SIGKILL it once ``out``'s checkpoint
    has reached ``generation`` (or after ``timeout`` s); returns ``(killed, stderr)``: whether it
    was still running when killed, and what it wrote to stderr."""
    import json
    import signal
    import subprocess
    import time

    proc = subprocess.Popen([sys.executable, "-m", "blursim.cli.main", "meta-train", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if json.loads((out / "checkpoint.json").read_text())["generation"] >= generation:
                    break
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.005)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    return killed, proc.stderr.read().decode(errors="replace")
