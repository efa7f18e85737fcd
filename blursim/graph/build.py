"""Build a networkx graph from a network spec and validate it.

The graph has one node per population and one edge per projection
(a ``MultiDiGraph``: two projections may join the same pair). Validation
raises :class:`~blursim.errors.SpecError` with the JSON path of the offending
field; :func:`~blursim.spec.relocate` adds the file and line.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from blursim.errors import DataError, SpecError
from blursim.graph.connectivity import build_masks
from blursim.graph.memory import estimate, require
from blursim.spec.loading import relocate
from blursim.spec.network import NetworkSpec
from blursim.vocab.activations import resolve as resolve_activation
from blursim.vocab.feedback import FEEDBACK, needs as feedback_needs


def build_graph(spec: NetworkSpec) -> nx.MultiDiGraph:
    """The projection graph of ``spec`` (no validation beyond name lookup)."""
    g = nx.MultiDiGraph(name=spec.name or "network", k=spec.k)
    for i, p in enumerate(spec.populations):
        g.add_node(
            p.name, index=i, size=p.size, role=p.role, genome=p.genome,
            normalization=p.normalization,
        )
    for i, q in enumerate(spec.projections):
        g.add_edge(
            q.from_, q.to, key=q.label, index=i, kind=q.connectivity.kind, bias=q.bias,
            genome=q.genome, pathway=q.pathway,
        )
    return g


def forward_graph(g: nx.MultiDiGraph) -> nx.MultiDiGraph:
    """The projections that carry the forward pass (feedback pathways left out): what orders the
    populations, what a population must receive, what must reach an output."""
    out = nx.MultiDiGraph(**g.graph)
    out.add_nodes_from(g.nodes(data=True))
    out.add_edges_from((u, v, key, d) for u, v, key, d in g.edges(keys=True, data=True)
                       if d.get("pathway") != "feedback")
    return out


def _check_pathways(spec: NetworkSpec, names: dict[str, int]) -> None:
    """Feedback pathways (DESIGN §6) carry backward signals through their own synapses: they need
    untied synapses and a source that has backward states (not an input)."""
    for i, q in enumerate(spec.projections):
        if q.pathway != "feedback":
            continue
        if spec.rules.tied:
            raise SpecError(
                "a feedback pathway carries the backward pass through its own synapses, but rules.tied "
                "is true (backward synapses are the forward ones transposed)",
                path=f"$.projections[{i}].pathway", value=q.pathway,
                hint='Set "tied": false in the rules, or remove the pathway.',
            )
        if spec.populations[names[q.from_]].role == "input":
            raise SpecError(
                f"a feedback pathway sends the backward states of {q.from_!r}, an input population, "
                "which has none (inputs hold data)",
                path=f"$.projections[{i}].from", value=q.from_,
            )


def _check(spec: NetworkSpec) -> nx.MultiDiGraph:
    names: dict[str, int] = {}
    for i, p in enumerate(spec.populations):
        if p.name in names:
            raise SpecError(
                f"population name {p.name!r} is used twice (first at $.populations[{names[p.name]}])",
                path=f"$.populations[{i}].name", value=p.name,
            )
        names[p.name] = i
    labels: dict[str, int] = {}
    for i, q in enumerate(spec.projections):
        for end, key in ((q.from_, "from"), (q.to, "to")):
            if end not in names:
                raise SpecError(
                    f"projection refers to unknown population {end!r}",
                    path=f"$.projections[{i}].{key}", choices=names,
                )
        if q.label in labels:
            raise SpecError(
                f"projection name {q.label!r} is used twice (first at $.projections[{labels[q.label]}])",
                path=f"$.projections[{i}]" + (".name" if q.name else ""),
                hint="Give parallel projections distinct \"name\" fields.",
            )
        labels[q.label] = i
        if spec.populations[names[q.to]].role == "input":
            raise SpecError(
                f"input population {q.to!r} cannot receive a projection: inputs are written by data",
                path=f"$.projections[{i}].to", value=q.to,
            )
    roles = [p.role for p in spec.populations]
    if "input" not in roles:
        raise SpecError("the network has no input population", path="$.populations",
                        hint='Give one population "role": "input".')
    if "output" not in roles:
        raise SpecError("the network has no output population", path="$.populations",
                        hint='Give one population "role": "output".')

    _check_pathways(spec, names)
    g = forward_graph(build_graph(spec))
    k = spec.k
    for i, p in enumerate(spec.populations):
        # inputs too: their activations are never applied, but a misspelt name is still an error
        resolve_activation(p.forward_activation, k, path=f"$.populations[{i}].forward_activation")
        resolve_activation(p.backward_activation, k, path=f"$.populations[{i}].backward_activation")
        if p.role != "input":
            if g.in_degree(p.name) == 0:
                raise SpecError(
                    f"{p.role} population {p.name!r} receives no projection, so its states never change",
                    path=f"$.populations[{i}]",
                    hint="Add a projection into it or remove it.",
                )
    outputs = [p.name for p in spec.populations if p.role == "output"]
    reach_out = set(outputs)
    for o in outputs:
        reach_out |= nx.ancestors(g, o)
    for i, p in enumerate(spec.populations):
        if p.role == "hidden" and p.name not in reach_out:
            raise SpecError(
                f"hidden population {p.name!r} has no path to an output population, so no feedback "
                "can reach it",
                path=f"$.populations[{i}]", choices=outputs,
                hint="Add a projection from it towards an output.",
            )

    rules = spec.rules
    FEEDBACK.get(rules.feedback, path="$.rules.feedback")
    req = feedback_needs(rules.feedback)
    if k < req["min_k"]:
        raise SpecError(
            f"feedback {rules.feedback!r} writes state 1 of the outputs, so it needs k >= 2",
            path="$.k", value=k,
        )
    if rules.schedule == "topological":
        try:
            cycle = nx.find_cycle(g)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            pops = [e[0] for e in cycle] + [cycle[0][0]]
            raise SpecError(
                "the projections form a cycle " + " -> ".join(pops)
                + ", which the topological schedule cannot order",
                path="$.rules.schedule", value="topological",
                hint='Remove a projection on the cycle, or set "schedule": "synchronous" with a '
                "number of \"sweeps\".",
            )
    return g


def validate_network(spec: NetworkSpec) -> nx.MultiDiGraph:
    """Validate ``spec``; return its graph. Errors carry file and line when known."""
    return validated(spec)[0]


def validated(spec: NetworkSpec) -> tuple[nx.MultiDiGraph, list[np.ndarray | None]]:
    """Validate ``spec``; return its graph and every projection's connectivity mask (building the
    masks is part of validation: it raises the connectivity kinds' errors, e.g. sizes, grids, edges)."""
    try:
        g = _check(spec)
        _check_build_memory(spec)
        return g, build_masks(spec)
    except SpecError as e:
        raise relocate(e, spec) from None


def _check_build_memory(spec: NetworkSpec) -> None:
    """Refuse, before any mask is allocated, a network whose masks cannot be built here."""
    sizes = {p.name: p.size for p in spec.populations}
    masked = [(sizes[q.from_] * sizes[q.to], i) for i, q in enumerate(spec.projections)
              if q.connectivity.kind != "all_to_all"]
    if not masked:
        return
    largest = max(masked)[1]
    require(estimate(spec, batch=1).build, what="building the connectivity masks of this network",
            path=f"$.projections[{largest}].connectivity",
            hint="Masked projections cost bytes per (pre, post) pair; use all_to_all or smaller populations.")


def check_task_fit(
    spec: NetworkSpec, n_features: int, n_classes: int, task: str, *, targets: str = "labels"
) -> None:
    """Raise if the task's data do not fit the network's input and output sizes.

    Input populations take consecutive slices of the feature vector in the
    order they are listed. With class labels (``targets="labels"``) every
    output population predicts the task's classes (``n_classes`` neurons, or
    one neuron for a two-class task); with real-valued target vectors
    (``targets="vectors"``, ``n_classes`` = their length) every output
    population has one neuron per target entry, and the feedback must be one
    that takes target values (``target`` or ``error_mse``, not ``error_softmax``).
    """
    inputs = [(i, p) for i, p in enumerate(spec.populations) if p.role == "input"]
    total = sum(p.size for _, p in inputs)
    if total != n_features:
        names = ", ".join(f"{p.name!r} ({p.size})" for _, p in inputs)
        err = SpecError(
            f"task {task!r} has {n_features} input features but the input populations "
            f"{names} hold {total} neurons",
            path=f"$.populations[{inputs[0][0]}].size",
            hint=f"Input sizes must add up to {n_features}.",
        )
        raise relocate(err, spec)
    if targets == "vectors":
        if spec.rules.feedback == "error_softmax":
            raise relocate(SpecError(
                f"task {task!r} has real-valued target vectors, but feedback 'error_softmax' needs "
                "class labels",
                path="$.rules.feedback", value="error_softmax",
                hint='Use "error_mse" (or "target") feedback for target vectors.',
            ), spec)
        for i, p in enumerate(spec.populations):
            if p.role == "output" and p.size != n_classes:
                raise relocate(SpecError(
                    f"output population {p.name!r} has {p.size} neurons but task {task!r} has "
                    f"target vectors of length {n_classes}",
                    path=f"$.populations[{i}].size", value=p.size,
                    hint=f"Use {n_classes} output neurons, one per target entry.",
                ), spec)
        return
    for i, p in enumerate(spec.populations):
        if p.role == "output" and not (p.size == n_classes or (p.size == 1 and n_classes == 2)):
            ok = f"{n_classes}" + (" (or 1 for this two-class task)" if n_classes == 2 else "")
            err = SpecError(
                f"output population {p.name!r} has {p.size} neurons but task {task!r} has "
                f"{n_classes} classes",
                path=f"$.populations[{i}].size", value=p.size,
                hint=f"Use {ok} output neurons.",
            )
            raise relocate(err, spec)


def check_dataset_fit(
    spec: NetworkSpec, dataset, task: str | None = None, *, labels_only: bool = False
) -> None:
    """:func:`check_task_fit` for a :class:`~blursim.data.Dataset` (labels or target vectors).

    ``labels_only``: the caller needs class labels (e.g. the gradient
    baselines and the analysis, which use softmax cross-entropy); a dataset
    of target vectors is then refused with a :class:`~blursim.errors.DataError`.
    """
    name = task or dataset.name
    if labels_only and dataset.targets != "labels":
        raise DataError(
            f"task {name!r} has real-valued target vectors, but this command needs class labels "
            "(it measures softmax cross-entropy); use blursim run or evaluate for target vectors."
        )
    check_task_fit(spec, dataset.n_features, dataset.n_outputs, name, targets=dataset.targets)
