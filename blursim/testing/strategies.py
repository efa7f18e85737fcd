"""Hypothesis strategies for everything a BLUR rule is made of: rules, specs, genomes, data, synapses.

Requires ``hypothesis`` (``pip install blursim[test]``). docs/testing.md walks through them.

* rules: :func:`rules` draws every option of ``Rules``; named families in :data:`RULE_PROFILES`
  (``"default"``, ``"paper"``, ``"paper_asymmetric"``, ``"paper_family"``, ``"backprop"``);
* specs: :func:`network_specs` (acyclic, or recurrent under ``synchronous``), and
  :func:`paper_network_specs`, :func:`backprop_network_specs`, :func:`sparse_network_specs`,
  :func:`recurrent_network_specs`;
* genomes: :func:`genomes` (random, every value drawn with ``values=True``, ``near=`` a preset,
  ``fixed=`` fields, ``optional=`` fields), :func:`perturbed_genomes`;
* data and synapses: :func:`data_batches`, :func:`synapse_states` (``values=True``: every number
  drawn, so failures shrink to small readable ones).

Topologies are random DAGs built over an ordering inputs < hidden < outputs:
every edge goes forward in that order, so the graph is acyclic by
construction; every hidden population gets at least one incoming and one
outgoing projection and every output at least one incoming, so validation
(no orphan hidden population, a path to an output) holds.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from hypothesis import strategies as st

from hypothesis.extra.numpy import arrays

from blursim.genome import GenomeLayout, make_preset, random_genome
from blursim.graph import as_program
from blursim.sim import Simulator
from blursim.spec.genome import ALL_FIELDS, GenomeSpec, field_shape

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
    "backward_synapses": ("learned", "frozen", "mirror"),
    "shared_channels": (False, True),
    "shared_update": ("mean", "channel0"),
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


#: Named rule families for :func:`rules` (``profile=``): option -> value, or a strategy to draw
#: it from. Options a profile does not name are drawn from :data:`RULE_CHOICES`.
RULE_PROFILES: dict[str, dict[str, Any]] = {
    # Every option at its Rules default: the rules of a spec that says nothing.
    "default": {**{name: v[0] for name, v in RULE_CHOICES.items()}, "sweeps": 1,
                "synapse_init": {"distribution": "normal", "scale": 1.0, "fan_in": True, "bias": "zeros"}},
    # The paper's general rule family as its runs use it. App. C.7: "the most general version of the
    # algorithm that is used in most experiments in the paper is 'Additive, symmetric, multistate,
    # random init'" -- additive backward update, tied (symmetric) multi-channel synapses; ±1 target
    # feedback (Sec. 3.3); the Oja term with a learnable multiplier (Sec. 3.4 / eq. 8); batch mean.
    # Populations: see paper_network_specs (normalisation on both passes, Sec. 3.4).
    "paper": {"backward_update": "additive", "tied": True, "shared_channels": False,
              "feedback": "target", "target_coding": "pm1", "oja": "weights",
              "synapse_normalization": "none", "saturation": False, "reset_neurons": True,
              "batch_reduction": "mean", "schedule": "topological", "sweeps": 1, "norm_eps": 1e-5,
              "synapse_norm_eps": 1e-8,
              "synapse_init": {"distribution": "normal", "scale": 1.0, "fan_in": True, "bias": "zeros"}},
    # The same with Sec. 3.2's asymmetric synapses (w_ij != w_ji): the rules of blursim's
    # reproduction specs (specs/toy_blur.json, digits_es_512.json, repro_digits_blur_64.json).
    "paper_asymmetric": None,  # filled below
    # The variants the paper ablates or offers as alternatives around that family: backward update
    # (App. C.7), symmetric or not, single- or multi-state synapses (Sec. 4.5, App. C.7), Oja or
    # not (App. C.5), synapse normalisation for activations (App. C.6), saturation (Sec. 3.4).
    "paper_family": {"backward_update": st.sampled_from(RULE_CHOICES["backward_update"]),
                     "tied": st.booleans(), "shared_channels": st.booleans(), "feedback": "target",
                     "target_coding": "pm1", "oja": st.sampled_from(["weights", "none"]),
                     "synapse_normalization": st.sampled_from(["none", "activations"]),
                     "saturation": st.booleans(), "reset_neurons": True,
                     "batch_reduction": "mean", "schedule": "topological", "sweeps": 1},
    # DESIGN §3: the rules under which the backprop genome is exactly SGD (either feedback, either
    # batch reduction).
    "backprop": {"backward_update": "multiplicative_second_state", "tied": True, "shared_channels": True,
                 "feedback": st.sampled_from(["error_softmax", "error_mse"]), "target_coding": "onehot",
                 "oja": "none", "synapse_normalization": "none", "saturation": False,
                 "reset_neurons": True, "batch_reduction": st.sampled_from(["sum", "mean"]),
                 "schedule": "topological", "sweeps": 1, "norm_eps": 1e-5, "synapse_norm_eps": 1e-8,
                 "synapse_init": {"distribution": "normal", "scale": 1.0, "fan_in": True, "bias": "same"}},
}


RULE_PROFILES["paper_asymmetric"] = dict(RULE_PROFILES["paper"], tied=False)


@st.composite
def rules(draw, *, profile: str | None = None, recurrent: bool = False, output_size: int | None = None,
          max_sweeps: int = 3, **pin) -> dict:
    """A ``rules`` object drawing every option of :class:`~blursim.spec.network.Rules`.

    ``profile`` names a rule family of :data:`RULE_PROFILES` — ``"default"``
    (every option at its default), ``"paper"`` (the paper's family as most of
    its runs use it, App. C.7: additive, symmetric, multi-state, with Oja),
    ``"paper_asymmetric"`` (the same untied, Sec. 3.2; blursim's reproduction
    specs), ``"paper_family"`` (its ablated variants drawn) or ``"backprop"``
    (DESIGN §3, feedback and batch reduction drawn) — whose values pin
    options; keywords override the profile.

    Each option is drawn from :data:`RULE_CHOICES` (``sweeps`` from 1 to
    ``max_sweeps`` under the synchronous schedule, 1 otherwise;
    ``synapse_init`` from :func:`synapse_inits`). Keywords pin an option to
    a value, or draw it from a strategy given instead, e.g.
    ``rules(tied=True, oja=st.sampled_from(["none", "weights"]))``.

    Constraints so that a drawn spec compiles: ``shared_update`` is drawn only
    with ``shared_channels`` (``"mean"`` otherwise); ``recurrent=True`` (a graph
    that may have cycles) pins the synchronous schedule; ``output_size``
    (the smallest output population) of 1 leaves out ``error_softmax``,
    which needs at least 2 output neurons. The spec's ``k`` must be >= 2:
    every feedback kind writes state 1.
    """
    names = set(RULE_CHOICES) | {"sweeps", "synapse_init"}
    if profile is not None:
        if profile not in RULE_PROFILES:
            raise ValueError(f"rules: unknown profile {profile!r}; valid: {sorted(RULE_PROFILES)}")
        pin = {**RULE_PROFILES[profile], **pin}
        if recurrent:
            pin.pop("schedule", None)
            pin.pop("sweeps", None)
        if output_size is not None and output_size < 2 and isinstance(pin.get("feedback"), st.SearchStrategy):
            pin["feedback"] = pin["feedback"].filter(lambda f: f != "error_softmax")
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
    su = pin.get("shared_update")
    if su is not None and not isinstance(su, st.SearchStrategy) and su != "mean":
        if pin.get("shared_channels", True) is not True:
            raise ValueError(f"rules(shared_update={su!r}) needs shared_channels=True")
        pin = {**pin, "shared_channels": True}
    out = {}
    for name, options in choices.items():
        v = pin.get(name)
        if name not in pin:
            v = st.sampled_from(options)
        out[name] = draw(v) if isinstance(v, st.SearchStrategy) else v
    if not out["shared_channels"]:
        out["shared_update"] = "mean"  # it says how shared channels update: only with shared_channels
    if out["tied"]:
        out["backward_synapses"] = "learned"  # it says how untied V learns: only without tied
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
    normalization: Any = "none",
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
    ``backward_activation="same"`` gives each population its forward
    activation on the backward pass too (the paper's unitary activation,
    Sec. 3.2). ``normalization`` (a value, or a tuple of choices drawn per
    population) applies to hidden populations.
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

    def population(name, size, role, fwd):
        fwd = list(fwd) if isinstance(fwd, tuple) else fwd
        p = {"name": name, "size": size, "role": role, "forward_activation": fwd,
             "backward_activation": fwd if backward_activation == "same" else backward_activation}
        if role == "hidden":
            norm = pick(normalization)
            if norm != "none":
                p["normalization"] = norm
        return p

    for h in range(n_hid):
        pops.append(population(f"h{h}", draw(st.integers(*sizes)), "hidden", pick(hidden_activation)))
    for o in range(n_out):
        pops.append(population(f"out{o}", n_classes, "output", pick(output_activation)))
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


@functools.lru_cache(maxsize=None)
def _rounded(lo: float, hi: float, digits: int) -> st.SearchStrategy:
    """Floats in ``[lo, hi]`` rounded to ``digits`` decimals: short to read, shrinking towards 0."""
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False).map(
        lambda v: min(max(round(v, digits), lo), hi) + 0.0)


@st.composite
def data_batches(draw, n_features: int, n_classes: int, batch: tuple[int, int] = (1, 6), scale: float = 1.0,
                 *, values: bool = False):
    """A batch ``(x, y)``, ``y`` in ``0..C-1``.

    Default: ``x`` standard normal times ``scale`` from a drawn seed (generic data; shrinks to a
    smaller seed). ``values=True``: every entry of ``x`` (in ``±3·scale``, two decimals) and
    every label is drawn by Hypothesis, so a failing batch shrinks to a small, readable one
    (zeros and class 0 where they do not matter).
    """
    B = draw(st.integers(*batch))
    if values:
        x = draw(arrays(np.float64, (B, n_features), elements=_rounded(-3.0 * scale, 3.0 * scale, 2)))
        y = np.asarray(draw(st.lists(st.integers(0, n_classes - 1), min_size=B, max_size=B)), dtype=np.int64)
        return x, y
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.normal(0.0, scale, (B, n_features)), rng.integers(0, n_classes, B)


#: Ranges :func:`genomes` draws scalar fields from with ``values=True`` (those of the ``random``
#: preset); mixing-matrix entries lie in ``±2·scale``.
GENOME_RANGES = {"f": (0.0, 1.0), "eta": (0.5, 1.5), "f_tilde": (0.9, 1.0), "eta_tilde": (0.005, 0.05)}

#: Ranges of the optional genome fields (drawn only when asked: ``optional=``).
OPTIONAL_RANGES = {"norm_gain": (0.5, 2.0), "norm_shift": (-0.5, 0.5), "oja_alpha": (0.0, 1.0),
                   "saturation": (0.5, 3.0), "init_scale": (0.5, 2.0), "rescale": (0.5, 2.0)}

CORE_FIELDS = ("f", "eta", "f_tilde", "eta_tilde", "nu", "mu", "nu_tilde", "mu_tilde")


@functools.lru_cache(maxsize=None)
def _field_strategy(name: str, k: int, lo: float, hi: float, digits: int = 3) -> st.SearchStrategy:
    shape = field_shape(name, k)
    v = _rounded(lo, hi, digits)
    if not shape:
        return v
    if len(shape) == 1:
        return st.lists(v, min_size=k, max_size=k)
    return st.lists(st.lists(v, min_size=k, max_size=k), min_size=k, max_size=k)


def _set_field(groups: dict, key: str, value) -> None:
    """``fixed`` keys: ``"field"`` (every group) or ``"group.field"``."""
    gname, _, fname = key.rpartition(".")
    if fname not in ALL_FIELDS:
        raise ValueError(f"genomes: unknown genome field {fname!r} in fixed; valid: {', '.join(ALL_FIELDS)}")
    targets = [gname] if gname else list(groups)
    for g in targets:
        if g not in groups:
            raise ValueError(f"genomes: fixed names group {g!r}, which the genome lacks ({sorted(groups)})")
        v = np.asarray(value, dtype=float).tolist()
        groups[g][fname] = v


@st.composite
def genomes(draw, k: int = 2, groups: tuple[str, ...] = ("default",), scale: float = 0.5, lr: float | None = None,
            *, values: bool = False, near: Any = None, fixed: dict | None = None,
            optional: bool | tuple[str, ...] = False):
    """A genome document (``GenomeSpec``) for ``k`` states and the genome ``groups``.

    * default: the ``random`` preset from a drawn seed (a *generic* genome: mixing matrices
      ``N(0, scale²)``, gates as in :func:`~blursim.genome.random_genome`). It shrinks only to a
      smaller seed — right for properties about generic genomes ("a random genome is not
      gradient-like"), which are false for the degenerate genomes value-shrinking finds.
    * ``values=True``: every field drawn by Hypothesis — gates from :data:`GENOME_RANGES`, mixing
      entries in ``±2·scale``, three decimals — so a failure shrinks to a short, readable genome
      (zeros where they do not matter). Use it for laws, which hold for *every* genome.
    * ``near``: a genome or a preset name (``"backprop"``): that genome plus drawn offsets in
      ``±scale`` on its core fields; shrinks to ``near`` itself.
    * ``fixed``: ``{"field": value}`` (every group) or ``{"group.field": value}`` set after
      drawing, e.g. ``fixed={"eta_tilde": 0.0, "f_tilde": 1.0}`` (frozen plasticity).
    * ``optional``: ``True`` or a tuple of names from :data:`OPTIONAL_RANGES` (``oja_alpha``,
      ``saturation``, ``norm_gain`` ...): each is drawn or left out (its neutral default);
      shrinks to left out.

    ``lr`` fixes ``eta_tilde`` (as the preset's ``lr``).
    """
    groups = tuple(groups)
    if near is not None:
        base = make_preset(near, k=k, groups=groups) if isinstance(near, str) else near
        if not isinstance(base, GenomeSpec):
            base = GenomeSpec.model_validate(base)
        doc = base.model_dump(mode="json", exclude_none=True)
        doc.pop("meta", None)  # no longer the preset
        for g in doc["groups"]:
            for name in CORE_FIELDS:
                off = draw(_field_strategy(name, base.k, -scale, scale))
                doc["groups"][g][name] = (np.asarray(doc["groups"][g][name]) + np.asarray(off)).round(6).tolist()
    elif values:
        doc = {"k": k, "groups": {}}
        for g in groups:
            params = {}
            for name in CORE_FIELDS:
                lo, hi = GENOME_RANGES.get(name, (-2.0 * scale, 2.0 * scale))
                params[name] = draw(_field_strategy(name, k, lo, hi))
            doc["groups"][g] = params
    else:
        doc = random_genome(k=k, seed=draw(st.integers(0, 2**31 - 1)), groups=groups, scale=scale,
                            lr=lr).model_dump(mode="json", exclude_none=True)
    kk = doc["k"]
    if lr is not None:
        _set_field(doc["groups"], "eta_tilde", lr)
    names = tuple(OPTIONAL_RANGES) if optional is True else tuple(optional or ())
    for name in names:
        if name not in OPTIONAL_RANGES:
            raise ValueError(f"genomes: unknown optional field {name!r}; valid: {', '.join(OPTIONAL_RANGES)}")
        for g in doc["groups"]:
            v = draw(st.none() | _field_strategy(name, kk, *OPTIONAL_RANGES[name]))
            if v is not None:
                doc["groups"][g][name] = v
            else:
                doc["groups"][g].pop(name, None)
    for key, value in (fixed or {}).items():
        _set_field(doc["groups"], key, value)
        fname = key.rpartition(".")[2]
        if np.shape(value) != field_shape(fname, kk):
            raise ValueError(f"genomes: fixed[{key!r}] has shape {np.shape(value)}, needs {field_shape(fname, kk)}")
    return GenomeSpec.model_validate(doc)


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
    draw, feedback: str | None = "error_softmax", reduction: str | None = "sum", *, n_features: int = 3,
    n_classes: int = 3, **kw
) -> dict:
    """A random acyclic network under the rules of DESIGN §3, on which the backprop genome is SGD.

    Hidden populations draw a ``(σ, σ')`` pair from :data:`BACKPROP_HIDDEN`;
    outputs are ``(identity, one)``; other keywords go to :func:`network_specs`.
    ``feedback``/``reduction`` ``None``: drawn (``error_mse``/``error_softmax``, ``sum``/``mean``).
    """
    if feedback is None:
        feedback = draw(st.sampled_from(["error_softmax", "error_mse"]))
    if reduction is None:
        reduction = draw(st.sampled_from(["sum", "mean"]))
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
def synapse_states(draw, spec, genome=None, *, replicas: int = 1, scale: tuple[float, float] = (0.5, 2.0),
                   values: bool = False):
    """A float64 ``SynapseState`` (``S = 1``) for the network ``spec`` (dict, path, spec or Program).

    Default: the simulator's seeded init with a drawn seed, every synapse multiplied by a factor
    drawn from ``scale`` (so masked entries stay 0); ``genome`` (default: the ``random`` preset)
    only supplies ``init_scale``. ``values=True``: every synapse (``W``, bias, ``V``; entries
    outside the mask stay 0) is drawn in ``±scale[1]`` with two decimals, so a failing state
    shrinks to a readable one.
    """
    prog = as_program(spec)
    if genome is None:
        genome = random_genome(k=prog.k, groups=prog.groups)
    sim = Simulator(prog, backend="numpy", dtype="float64")
    genes = sim.prepare([genome])
    state = sim.init_synapses(genes, replicas=replicas, seed=draw(st.integers(0, 2**31 - 1)) if not values else 0)
    if values:
        hi = float(scale[1])
        for i in range(len(prog.projs)):
            for which in ("W", "b", "V"):
                a = state.get(i, which)
                if a is not None:
                    state.set(i, which, draw(arrays(np.float64, np.shape(a), elements=_rounded(-hi, hi, 2))))
        return state
    factor = draw(st.floats(*scale))
    for i in range(len(prog.projs)):
        for which in ("W", "b", "V"):
            a = state.get(i, which)
            if a is not None:
                state.set(i, which, np.asarray(a) * factor)
    return state


@st.composite
def paper_network_specs(draw, *, family: bool = False, k: int = 2, n_features: int = 3, n_classes: int = 3,
                        **kw) -> dict:
    """A random network in the paper's general family (Sec. 3.2-3.4, Sec. 4; App. C.1 uses
    ``k`` = 2-8 states): :func:`rules` ``profile="paper"`` (or ``"paper_family"`` with
    ``family=True``; pass ``rules=`` for another), hidden populations with one activation on both passes drawn from
    ``relu_tanh``/``tanh`` (App. C.2) and batch normalisation on both passes (Sec. 3.4),
    ``tanh`` outputs. Other keywords go to :func:`network_specs`."""
    kw.setdefault("hidden_activation", ("relu_tanh", "tanh"))
    kw.setdefault("output_activation", "tanh")
    kw.setdefault("backward_activation", "same")
    kw.setdefault("normalization", "both")
    kw.setdefault("rules", rules(profile="paper_family" if family else "paper"))
    return draw(network_specs(k=k, n_features=n_features, n_classes=n_classes, **kw))


#: Connectivity kinds other than all-to-all.
SPARSE_CONNECTIVITY = tuple(c for c in ALL_CONNECTIVITY if c != "all_to_all")


@st.composite
def sparse_network_specs(draw, **kw) -> dict:
    """:func:`network_specs` whose projections draw sparse kinds (:data:`SPARSE_CONNECTIVITY`:
    fixed probability, blocks, edge lists, one-to-one, local 2-D fields where they fit)."""
    kw.setdefault("connectivity", SPARSE_CONNECTIVITY)
    return draw(network_specs(**kw))


@st.composite
def recurrent_network_specs(draw, *, recurrent_p: float = 0.4, **kw) -> dict:
    """:func:`network_specs` under the synchronous schedule with back edges and self-loops
    (each with probability ``recurrent_p``): graphs that may have cycles (DESIGN §2,
    Schedules). ``rules`` may be a dict or strategy; its schedule is forced to synchronous."""
    r = kw.pop("rules", None)
    if r is None:
        r = rules(recurrent=True)
    if isinstance(r, st.SearchStrategy):
        r = draw(r)
    r = dict(r, schedule="synchronous")
    r.setdefault("sweeps", 2)
    return draw(network_specs(recurrent_p=recurrent_p, rules=r, **kw))


# ------------------------------------------------------------- generic and law-domain specs
def _activation_choices(k: int, identity_first: bool = False) -> tuple:
    """Hidden activations to draw from: one function for all states, or per-state lists with an
    identity state (the normalisation and backward-pass laws read states through it)."""
    mixed = ["identity"] + ["tanh", "sigmoid", "relu_tanh"][: k - 1]
    while len(mixed) < k:
        mixed.append("tanh")
    one = ("tanh", "sigmoid", "relu_tanh", "identity")
    return ("identity", tuple(mixed), "tanh") if identity_first else one + ("identity", tuple(mixed))


@st.composite
def generic_network_specs(draw, *, k: int | None = None, n_features: int = 3, n_classes: int = 3,
                          recurrent_p: float = 0.3, identity_first: bool = False, **kw) -> dict:
    """A *generic* network: every rule option drawn (:func:`rules`: Oja, saturation, shared
    channels, synapse normalisation, tied or not, every feedback and backward update, both
    schedules — recurrent graphs under the synchronous one), population normalisation on either
    pass (Sec. 3.4), one or per-state activations (an identity state included), biases drawn,
    every connectivity kind, ``k`` drawn from 2-3 unless given. Keywords go to
    :func:`network_specs` (``rules=`` a dict of pins for :func:`rules`, or a strategy)."""
    k = draw(st.integers(2, 3)) if k is None else k
    r = kw.pop("rules", None)
    if not isinstance(r, st.SearchStrategy):
        r = rules(**(r or {}))
    kw.setdefault("hidden_activation", _activation_choices(k, identity_first))
    kw.setdefault("output_activation", ("tanh", "identity"))
    kw.setdefault("backward_activation", draw(st.sampled_from(["identity", "same"])))
    kw.setdefault("normalization", ("none", "forward", "backward", "both"))
    kw.setdefault("connectivity", ALL_CONNECTIVITY)
    kw.setdefault("sizes", (1, 4))
    kw.setdefault("hidden", (1, 3))
    kw.setdefault("bias", None)
    return draw(network_specs(k=k, n_features=n_features, n_classes=n_classes, recurrent_p=recurrent_p,
                              rules=r, **kw))


#: Per law of :data:`blursim.testing.laws.LAWS`: how :func:`law_network_specs` draws inside its
#: rules domain — ``rules`` pins for :func:`rules` (values or strategies) and ``spec`` keywords
#: for :func:`generic_network_specs`. Laws not listed hold under every rule set; the backprop
#: laws draw from :func:`backprop_network_specs`. A law with a *genome* domain gets its genomes
#: through ``law.conform``.
LAW_DOMAINS: dict[str, dict[str, dict]] = {
    "masked_synapses_stay_zero": {"spec": {"connectivity": SPARSE_CONNECTIVITY}},
    "frozen_plasticity": {"rules": {"saturation": False,
                                    "synapse_normalization": st.sampled_from(["none", "activations"])}},
    "saturation_bounds_synapses": {"rules": {"saturation": True}},
    "tied_synapses_stay_tied": {"rules": {"tied": False, "oja": "none",
                                          "backward_synapses": st.sampled_from(["learned", "mirror"]),
                                          "synapse_normalization": st.sampled_from(["none", "activations"])}},
    "normalisation_batch_statistics": {
        "rules": {"backward_update": st.sampled_from(["additive", "additive", "multiplicative"]),
                  "schedule": "topological"},
        "spec": {"normalization": ("forward", "both", "backward"), "identity_first": True,
                 "backward_activation": "identity", "hidden": (1, 2)}},
    "forward_pass_closed_form": {"rules": {"schedule": "topological"}},
    "backward_pass_closed_form": {"rules": {"schedule": "topological",
                                            "backward_synapses": st.sampled_from(["learned", "mirror"])}},
    "synapse_update_closed_form": {"rules": {"backward_synapses": st.sampled_from(["learned", "mirror"])}},
    "oja_scales_by_exact_factor": {"rules": {"oja": st.sampled_from(["weights", "activity"]),
                                             "backward_synapses": st.sampled_from(["learned", "mirror"])}},
    "untied_feedback_drives_backward": {
        "rules": {"tied": False, "schedule": "topological", "synapse_normalization": "none"},
        "spec": {"backward_activation": "identity", "normalization": ("none", "forward"), "recurrent_p": 0.0}},
}

#: The laws whose domain is DESIGN §3 (drawn from :func:`backprop_network_specs`).
BACKPROP_LAWS = ("backprop_equals_sgd", "backprop_is_gradient_like")


@st.composite
def law_network_specs(draw, law: str, *, n_features: int = 3, n_classes: int = 3, **kw) -> dict:
    """A network spec inside law ``law``'s rules domain (:data:`LAW_DOMAINS`), otherwise generic
    (:func:`generic_network_specs`; the backprop laws: :func:`backprop_network_specs`). Pair it
    with ``law.conform(genome)`` for laws with a genome domain. blursim's suite checks that each
    law applies to at least half of these draws."""
    name = getattr(law, "name", law)
    if name in BACKPROP_LAWS:
        return draw(backprop_network_specs(None, None, n_features=n_features, n_classes=n_classes, sizes=(1, 3),
                                           hidden=(1, 3), **kw))
    dom = LAW_DOMAINS.get(name, {})
    spec_kw = {**dom.get("spec", {}), **kw}
    pins = dict(dom.get("rules", {}))
    if isinstance(spec_kw.get("rules"), dict):
        pins.update(spec_kw.pop("rules"))
    spec_kw["rules"] = rules(**pins)
    return draw(generic_network_specs(n_features=n_features, n_classes=n_classes, **spec_kw))
