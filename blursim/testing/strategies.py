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

from blursim.genome import GenomeLayout, random_genome
from blursim.graph import as_program
from blursim.sim import Simulator

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


#: The choices :func:`rules` draws from, the :class:`~blursim.spec.network.Rules` default first
#: (Hypothesis shrinks towards the first choice).
RULE_CHOICES: dict[str, tuple] = {
    "backward_update": ("additive", "multiplicative", "multiplicative_second_state"),
    "tied": (False, True),
    "shared_channels": (False, True),
    "feedback": ("target", "error_mse", "error_softmax"),
    "target_coding": ("pm1", "onehot"),
    "oja": ("none", "weights", "activity"),
    "synapse_normalization": ("none", "activations", "stored"),
    "saturation": (False, True),
    "reset_neurons": (True, False),
    "batch_reduction": ("sum", "mean"),
    "schedule": ("topological", "synchronous"),
    "norm_eps": (1e-5, 1e-2, 0.5),
    "synapse_norm_eps": (1e-8, 1e-3, 0.5),
}


@st.composite
def synapse_inits(draw, **pin) -> dict:
    """A ``synapse_init`` object; keywords pin fields (a value) or draw them (a strategy)."""
    choices = {
        "distribution": st.sampled_from(["normal", "uniform", "zeros"]),
        "scale": st.sampled_from([1.0, 0.5, 2.0]),
        "fan_in": st.sampled_from([True, False]),
        "bias": st.sampled_from(["zeros", "same"]),
    }
    unknown = set(pin) - set(choices)
    if unknown:
        raise TypeError(f"synapse_inits: unknown field(s) {sorted(unknown)}")
    out = {}
    for name, default in choices.items():
        v = pin.get(name, default)
        out[name] = draw(v) if isinstance(v, st.SearchStrategy) else v
    return out


@st.composite
def rules(draw, *, recurrent: bool = False, output_size: int | None = None,
          max_sweeps: int = 3, **pin) -> dict:
    """A ``rules`` object drawing every option of :class:`~blursim.spec.network.Rules`.

    Each option is drawn from :data:`RULE_CHOICES` (``sweeps`` from 1 to
    ``max_sweeps`` under the synchronous schedule, 1 otherwise;
    ``synapse_init`` from :func:`synapse_inits`). Keywords pin an option to
    a value, or draw it from a strategy given instead, e.g.
    ``rules(tied=True, oja=st.sampled_from(["none", "weights"]))``.

    Constraints so that a drawn spec compiles: ``recurrent=True`` (a graph
    that may have cycles) pins the synchronous schedule; ``output_size``
    (the smallest output population) of 1 leaves out ``error_softmax``,
    which needs at least 2 output neurons. The spec's ``k`` must be >= 2:
    every feedback kind writes state 1.
    """
    names = set(RULE_CHOICES) | {"sweeps", "synapse_init"}
    unknown = set(pin) - names
    if unknown:
        raise TypeError(f"rules: unknown option(s) {sorted(unknown)}; valid: {sorted(names)}")
    choices = {name: list(v) for name, v in RULE_CHOICES.items()}
    if recurrent:
        if pin.get("schedule", "synchronous") != "synchronous":
            raise ValueError("rules(recurrent=True) needs the synchronous schedule")
        choices["schedule"] = ["synchronous"]
    if output_size is not None and output_size < 2:
        if pin.get("feedback") == "error_softmax":
            raise ValueError("error_softmax feedback needs output populations of >= 2 neurons")
        choices["feedback"].remove("error_softmax")
    out = {}
    for name, options in choices.items():
        v = pin.get(name)
        if name not in pin:
            v = st.sampled_from(options)
        out[name] = draw(v) if isinstance(v, st.SearchStrategy) else v
    if out["schedule"] == "synchronous":
        v = pin.get("sweeps", st.integers(1, max_sweeps))
    else:
        v = pin.get("sweeps", 1)
    out["sweeps"] = draw(v) if isinstance(v, st.SearchStrategy) else v
    v = pin.get("synapse_init", synapse_inits())
    out["synapse_init"] = draw(v) if isinstance(v, st.SearchStrategy) else v
    return out


#: Every connectivity kind (``local2d`` needs grids: :func:`network_specs` draws them when asked).
ALL_CONNECTIVITY = ("all_to_all", "one_to_one", "fixed_probability", "from_list", "local2d",
                    "block_random")


@st.composite
def connectivities(draw, kinds=("all_to_all", "fixed_probability", "block_random"), pre=None,
                   post=None) -> dict:
    """A connectivity object for a projection.

    ``pre``/``post``: the two population dicts; with them, kinds that cannot
    fit are left out (``one_to_one`` needs equal sizes, ``local2d`` grids on
    both) and ``from_list`` draws edges in range (it needs the sizes).
    Without them only kinds that fit any pair are drawn.
    """
    def fits(kind):
        if kind == "one_to_one":
            return pre is not None and post is not None and pre["size"] == post["size"]
        if kind == "local2d":
            return pre is not None and post is not None and "grid" in pre and "grid" in post
        if kind == "from_list":
            return pre is not None and post is not None
        return True

    usable = [k for k in kinds if fits(k)] or ["all_to_all"]
    kind = draw(st.sampled_from(usable))
    if kind == "fixed_probability":
        return {"kind": kind, "p": draw(st.floats(0.3, 1.0)), "seed": draw(st.integers(0, 2**16))}
    if kind == "block_random":
        return {
            "kind": kind,
            "block": [draw(st.integers(1, 3)), draw(st.integers(1, 3))],
            "p": draw(st.floats(0.3, 1.0)),
            "seed": draw(st.integers(0, 2**16)),
        }
    if kind == "from_list":
        pairs = [[i, j] for i in range(pre["size"]) for j in range(post["size"])]
        edges = draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=len(pairs), unique_by=tuple))
        return {"kind": kind, "edges": sorted(edges)}
    if kind == "local2d":
        return {"kind": kind, "radius": draw(st.sampled_from([1.0, 0.5, 1.5, 2.5]))}
    return {"kind": kind}


def _grid(draw, size: int) -> list[int]:
    rows = draw(st.sampled_from([r for r in range(1, size + 1) if size % r == 0]))
    return [rows, size // rows]


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
    rules: dict | st.SearchStrategy | None = None,
    recurrent_p: float = 0.0,
    grids: bool | None = None,
) -> dict:
    """A random network spec (a JSON-ready dict): acyclic, or recurrent under ``synchronous``.

    ``n_features`` fixes the total input size (split over the inputs);
    outputs all have ``n_classes`` neurons. ``bias=None`` draws a bias flag
    per projection. ``hidden_activation`` may be a name, a per-state list, or
    a list of choices given as a tuple (one is drawn per population).
    ``connectivity`` lists the kinds to draw from (:data:`ALL_CONNECTIVITY`:
    ``one_to_one`` is drawn only between populations of equal size,
    ``local2d`` only between populations with grids). ``grids`` gives every
    population a drawn 2-D ``grid`` (default: when ``local2d`` is listed).
    ``rules``: a rules dict, or a strategy such as :func:`rules` (drawn
    first). When the rules' schedule is ``synchronous``, back edges and
    self-loops between non-input populations are added with probability
    ``recurrent_p`` each (the graph may then have cycles).
    """
    if isinstance(rules, st.SearchStrategy):
        rules = draw(rules)
    if grids is None:
        grids = "local2d" in connectivity
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
    if grids:
        for p in pops:
            p["grid"] = _grid(draw, p["size"])
    by_name = {p["name"]: p for p in pops}
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
    if recurrent_p > 0 and (rules or {}).get("schedule") == "synchronous":
        for a in hids + outs:  # back edges and self-loops: cycles, fine for the synchronous schedule
            for b in hids + outs:
                if order[a] >= order[b] and draw(st.floats(0, 1)) < recurrent_p:
                    edges.add((a, b))
    projs = []
    for a, b in sorted(edges, key=lambda e: (order[e[1]], order[e[0]])):
        projs.append({
            "from": a, "to": b,
            "bias": draw(st.booleans()) if bias is None else bias,
            "connectivity": draw(connectivities(connectivity, pre=by_name[a], post=by_name[b])),
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
    return random_genome(k=k, seed=draw(st.integers(0, 2**31 - 1)), groups=groups, scale=scale, lr=lr)


@st.composite
def perturbed_genomes(draw, base, scale: float = 0.1, fields: tuple[str, ...] | None = None):
    """``base`` with Gaussian noise of size ``scale`` added to the chosen fields."""
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
    prog = as_program(spec)
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
