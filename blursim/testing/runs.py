"""A short seeded run whose every number can be compared across simulators."""

from __future__ import annotations

from typing import Any

import numpy as np


def trajectory(sim, genome: Any, *, S: int = 3, R: int = 2, steps: int = 3, batch: int = 5,
               query: int = 4, seed: int = 4) -> list[np.ndarray]:
    """Train ``S`` copies of ``genome`` (``R`` replicas each) for ``steps`` steps on seeded random
    batches of ``batch`` examples, then run a forward pass on ``query`` more; returns every stored
    synapse (``W``, ``b``, ``V`` in the dense layout) and every output, as host arrays.

    Two simulators of the same program that agree on this list agree on the whole step: use it
    to compare backends, dtypes, thread counts or block-sparse against masked dense storage.
    """
    genes = sim.prepare([genome] * S)
    st = sim.init_synapses(genes, replicas=R, seed=seed)
    rng = np.random.default_rng(0)
    nf = sim.program.n_features
    n_out = sim.program.pops[sim.program.outputs[0]].size
    for _ in range(steps):
        x = rng.normal(size=(batch, nf))
        sim.train_step(st, genes, x, rng.integers(0, max(2, n_out), batch))
    outs = sim.forward(st, genes, rng.normal(size=(query, nf)))
    syn = [st.get(q, w) for q in range(len(sim.program.projs)) for w in "WbV"]
    return [sim.backend.to_numpy(a) for a in syn + list(outs) if a is not None]
