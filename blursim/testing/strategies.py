"""Hypothesis strategies for BLUR network specs, genomes, data and synapse states.

Requires ``hypothesis`` (``pip install blursim[test]``).

Topologies are random DAGs built over an ordering inputs < hidden < outputs:
every edge goes forward in that order, so the graph is acyclic by
construction; every hidden population gets at least one incoming and one
outgoing projection and every output at least one incoming, so validation
(no orphan hidden population, a path to an output) holds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

#: Rules under which the backprop genome is exactly SGD (DESIGN §3).
BACKPROP_RULES = {
    "tied": True,
    "shared_channels": True,
    "backward_update": "multiplicative_second_state",
    "feedback": "error_softmax",
    "target_coding": "onehot",
    "synapse_init": {"distribution": "normal", "scale": 1.0, "bias": "same"},
}

#: Per-state activation pairs (sigma, sigma') usable with the backprop genome.
BACKPROP_HIDDEN = {
    "tanh": ["tanh", "tanh_derivative"],
    "sigmoid": ["sigmoid", "sigmoid_derivative"],
    "softplus": ["softplus", "softplus_derivative"],
}


def backprop_rules(feedback: str = "error_softmax", reduction: str = "sum", **extra) -> dict:
    """Rules of DESIGN §3 with the given feedback and batch reduction."""
    r = dict(BACKPROP_RULES, feedback=feedback, batch_reduction=reduction)
    r.update(extra)
    return r


@st.composite
def connectivities(draw, kinds=("all_to_all", "fixed_probability", "block_random")) -> dict:
    """A connectivity object for a projection (no grid-based kinds)."""
    kind = draw(st.sampled_from(list(kinds)))
    if kind == "fixed_probability":
        return {"kind": kind, "p": draw(st.floats(0.3, 1.0)), "seed": draw(st.integers(0, 2**16))}
    if kind == "block_random":
        return {
            "kind": kind,
            "block": [draw(st.integers(1, 3)), draw(st.integers(1, 3))],
            "p": draw(st.floats(0.3, 1.0)),
            "seed": draw(st.integers(0, 2**16)),
        }
    return {"kind": kind}


@st.composite
def network_specs(
    draw,
    *,
    k: int = 2,
    inputs: tuple[int, int] = (1, 2),
    hidden: tuple[int, int] = (1, 4),
    outputs: tuple[int, int] = (1, 2),
    sizes: tuple[int, int] = (1, 5),
    n_features: int | None = None,
    n_classes: int = 3,
    skip_p: float = 0.3,
    bias: bool | None = None,
    connectivity: tuple[str, ...] = ("all_to_all",),
    hidden_activation: Any = "tanh",
    output_activation: Any = "identity",
    backward_activation: Any = "identity",
    rules: dict | None = None,
) -> dict:
    """A random acyclic network spec (a JSON-ready dict).

    ``n_features`` fixes the total input size (split over the inputs);
    outputs all have ``n_classes`` neurons. ``bias=None`` draws a bias flag
    per projection. ``hidden_activation`` may be a name, a per-state list, or
    a list of choices given as a tuple (one is drawn per population).
    """
    n_in = draw(st.integers(*inputs))
    n_hid = draw(st.integers(*hidden))
    n_out = draw(st.integers(*outputs))
    pops: list[dict] = []
    if n_features is None:
        in_sizes = [draw(st.integers(*sizes)) for _ in range(n_in)]
    else:
        n_in = min(n_in, n_features)
        cuts = sorted(draw(st.sets(st.integers(1, n_features - 1), min_size=n_in - 1, max_size=n_in - 1))) if n_in > 1 else []
        bounds = [0, *cuts, n_features]
        in_sizes = [bounds[i + 1] - bounds[i] for i in range(n_in)]
    for i, s in enumerate(in_sizes):
        pops.append({"name": f"in{i}", "size": s, "role": "input"})

    def pick(act):
        return draw(st.sampled_from(list(act))) if isinstance(act, tuple) else act

    for h in range(n_hid):
        pops.append({
            "name": f"h{h}", "size": draw(st.integers(*sizes)), "role": "hidden",
            "forward_activation": pick(hidden_activation),
            "backward_activation": backward_activation,
        })
    for o in range(n_out):
        pops.append({
            "name": f"out{o}", "size": n_classes, "role": "output",
            "forward_activation": pick(output_activation),
            "backward_activation": backward_activation,
        })
    names = [p["name"] for p in pops]
    order = {n: i for i, n in enumerate(names)}
    ins, hids, outs = names[:n_in], names[n_in : n_in + n_hid], names[n_in + n_hid :]
    edges: set[tuple[str, str]] = set()
    for i, h in enumerate(hids):  # an incoming edge for every hidden population
        edges.add((draw(st.sampled_from(ins + hids[:i])), h))
    for i, h in enumerate(hids):  # a path onwards to an output
        edges.add((h, draw(st.sampled_from(hids[i + 1 :] + outs))))
    for o in outs:
        if not any(e[1] == o for e in edges):
            edges.add((draw(st.sampled_from(ins + hids)), o))
    for i in ins:
        if not any(e[0] == i for e in edges):
            edges.add((i, draw(st.sampled_from(hids + outs))))
    for a in names:  # random skip connections, forward in the ordering
        for b in names:
            if order[a] < order[b] and b not in ins and a not in outs and (a, b) not in edges:
                if draw(st.floats(0, 1)) < skip_p:
                    edges.add((a, b))
    projs = []
    for a, b in sorted(edges, key=lambda e: (order[e[1]], order[e[0]])):
        projs.append({
            "from": a, "to": b,
            "bias": draw(st.booleans()) if bias is None else bias,
            "connectivity": draw(connectivities(connectivity)),
        })
    spec = {"k": k, "seed": draw(st.integers(0, 2**16)), "populations": pops, "projections": projs}
    if rules is not None:
        spec["rules"] = rules
    return spec


@st.composite
def data_batches(draw, n_features: int, n_classes: int, batch: tuple[int, int] = (1, 6), scale: float = 1.0):
    """A batch ``(x, y)``: ``x`` standard normal times ``scale`` from a drawn seed, ``y`` in ``0..C-1``."""
    B = draw(st.integers(*batch))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.normal(0.0, scale, (B, n_features)), rng.integers(0, n_classes, B)


@st.composite
def genomes(draw, k: int = 2, groups: tuple[str, ...] = ("default",), scale: float = 0.5, lr: float | None = None):
    """A random genome document (via the seeded ``random`` preset)."""
    from blursim.genome import random_genome

    return random_genome(k=k, seed=draw(st.integers(0, 2**31 - 1)), groups=groups, scale=scale, lr=lr)


@st.composite
def perturbed_genomes(draw, base, scale: float = 0.1, fields: tuple[str, ...] | None = None):
    """``base`` with Gaussian noise of size ``scale`` added to the chosen fields."""
    from blursim.genome import GenomeLayout

    fields = fields or ("f", "eta", "f_tilde", "eta_tilde", "nu", "mu", "nu_tilde", "mu_tilde")
    layout = GenomeLayout(base.k, tuple(base.groups), tuple(fields))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = layout.to_vector(base) + rng.normal(0.0, scale, layout.size)
    return layout.from_vector(x, base)


@st.composite
def backprop_network_specs(
    draw, feedback: str = "error_softmax", reduction: str = "sum", *, n_features: int = 3,
    n_classes: int = 3, **kw
) -> dict:
    """A random acyclic network under the rules of DESIGN §3, on which the backprop genome is SGD.

    Hidden populations draw a ``(σ, σ')`` pair from :data:`BACKPROP_HIDDEN`;
    outputs are ``(identity, one)``; other keywords go to :func:`network_specs`.
    """
    kw.setdefault("hidden_activation", tuple(tuple(v) for v in BACKPROP_HIDDEN.values()))
    spec = draw(network_specs(
        n_features=n_features, n_classes=n_classes, output_activation=["identity", "one"],
        backward_activation="identity", rules=backprop_rules(feedback, reduction), **kw,
    ))
    for p in spec["populations"]:
        if isinstance(p.get("forward_activation"), tuple):
            p["forward_activation"] = list(p["forward_activation"])
    return spec


@st.composite
def synapse_states(draw, spec, genome=None, *, replicas: int = 1, scale: tuple[float, float] = (0.5, 2.0)):
    """A float64 ``SynapseState`` (``S = 1``) for the network ``spec`` (dict, path, spec or Program).

    The simulator's seeded init with a drawn seed, every synapse multiplied by
    a factor drawn from ``scale`` (so masked entries stay 0); ``genome``
    (default: the ``random`` preset) only supplies ``init_scale``.
    """
    from blursim.analysis.blur_map import _load_program
    from blursim.genome import random_genome
    from blursim.sim import Simulator

    prog = _load_program(spec)
    if genome is None:
        genome = random_genome(k=prog.k, groups=prog.groups)
    sim = Simulator(prog, backend="numpy", dtype="float64")
    genes = sim.prepare([genome])
    state = sim.init_synapses(genes, replicas=replicas, seed=draw(st.integers(0, 2**31 - 1)))
    factor = draw(st.floats(*scale))
    for i in range(len(prog.projs)):
        for which in ("W", "b", "V"):
            a = state.get(i, which)
            if a is not None:
                state.set(i, which, np.asarray(a) * factor)
    return state
