"""Compile a validated network spec into an execution :class:`Program`.

One walk over the spec produces ordered plans for populations and
projections: topological forward order, reverse order for the backward pass,
connectivity masks (built once, by the validation), genome-group indices,
activation names (the simulator resolves them, :mod:`blursim.vocab`) and the
synapses' channel layout (``kw``, ``shared``). Nothing here depends on genome
values, so one program serves every genome (DESIGN: compile once, evaluate
many genomes).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np

from blursim.graph.build import validated
from blursim.graph.tiling import BlockPlan, tile_mask
from blursim.spec import load_network
from blursim.spec.network import NetworkSpec


@dataclass
class PopPlan:
    """How one population is simulated."""

    name: str
    index: int
    size: int
    role: str
    group: str
    fwd_names: list[str]  # k activation names (resolved by the simulator, blursim.vocab)
    bwd_names: list[str]
    norm_fwd: bool
    norm_bwd: bool
    incoming: list[int] = field(default_factory=list)  # projection indices
    outgoing: list[int] = field(default_factory=list)
    in_slice: slice | None = None  # feature columns for inputs


@dataclass
class ProjPlan:
    """How one projection is simulated."""

    name: str
    index: int
    pre: int
    post: int
    n_pre: int
    n_post: int
    bias: bool
    group: str
    kind: str
    mask: np.ndarray | None  # bool (n_pre, n_post); None = all-to-all
    #: Which passes it carries (spec ``pathway``): ``"both"``, ``"forward"`` (in ``post``'s
    #: ``incoming`` only) or ``"feedback"`` (in ``pre``'s ``outgoing`` only). A feedback pathway
    #: ``from -> to`` of the spec is compiled as ``pre = to``, ``post = from``: its backward synapses
    #: ``V (n_post, n_pre)`` carry ``from``'s states into ``to``'s backward drive like those of a
    #: projection ``to -> from``; its ``W`` is stored as zeros and never used nor updated.
    pathway: str = "both"
    _tiles: dict = field(default_factory=dict, repr=False, compare=False)

    def block_plan(self, transposed: bool = False, **pin) -> BlockPlan | None:
        """Block tiling of the mask (``transposed``: of ``mask.T``, for backward synapses).

        ``None`` for all-to-all projections. ``pin`` (``bd``, ``mode``, ``run``)
        fixes choices of :func:`blursim.graph.tiling.tile_mask`. Cached.
        """
        if self.mask is None:
            return None
        key = (transposed, tuple(sorted(pin.items())))
        if key not in self._tiles:
            self._tiles[key] = tile_mask(self.mask.T if transposed else self.mask, **pin)
        return self._tiles[key]

    @property
    def n_synapses(self) -> int:
        """Forward synapses (mask entries plus bias row); 0 for a feedback pathway."""
        if self.pathway == "feedback":
            return 0
        body = self.n_pre * self.n_post if self.mask is None else int(self.mask.sum())
        return body + (self.n_post if self.bias else 0)

    @property
    def density(self) -> float:
        return 1.0 if self.mask is None else float(self.mask.mean())


@dataclass
class Program:
    """A compiled network: everything the simulator needs except genome and synapse values."""

    spec: NetworkSpec
    k: int
    pops: list[PopPlan]
    projs: list[ProjPlan]
    forward_order: list[int]  # non-input populations
    backward_order: list[int]  # non-input populations with outgoing projections
    inputs: list[int]
    outputs: list[int]
    groups: list[str]  # genome groups used, sorted
    spec_hash: str
    #: Channels each synapse stores: 1 with ``rules.shared_channels`` (the paper's single-state
    #: synapse), else ``k``. Synapse arrays are ``(S, R, kw, ...)``.
    kw: int
    #: ``kw == 1 < k``: one stored value serves all ``k`` channels, and its update is the mean over
    #: channels of eq. (7)'s per-channel updates (docs/design.md, **Decision** on shared channels).
    shared: bool

    @property
    def rules(self):
        return self.spec.rules

    @property
    def n_features(self) -> int:
        return sum(self.pops[i].size for i in self.inputs)

    def pop(self, name: str) -> PopPlan:
        for p in self.pops:
            if p.name == name:
                return p
        raise KeyError(name)

    def summary(self) -> str:
        """A short text description (``blursim graph``)."""
        lines = [
            f"network {self.spec.name or '(unnamed)'}: k={self.k}, {len(self.pops)} populations, "
            f"{len(self.projs)} projections, schedule={self.rules.schedule}"
            + (f" ({self.rules.sweeps} sweeps)" if self.rules.schedule == "synchronous" else ""),
            "populations:",
        ]
        for p in self.pops:
            if p.role == "input":
                lines.append(f"  {p.name:<16} {p.role:<7} n={p.size:<6} features {p.in_slice.start}..{p.in_slice.stop - 1}")
                continue
            fwd = "/".join(p.fwd_names) if len(set(p.fwd_names)) > 1 else p.fwd_names[0]
            bwd = "/".join(p.bwd_names) if len(set(p.bwd_names)) > 1 else p.bwd_names[0]
            norm = {(False, False): "", (True, False): " norm=fwd", (False, True): " norm=bwd",
                    (True, True): " norm=both"}[(p.norm_fwd, p.norm_bwd)]
            lines.append(
                f"  {p.name:<16} {p.role:<7} n={p.size:<6} fwd={fwd} bwd={bwd}{norm} genome={p.group}"
            )
        lines.append("projections:")
        total = 0
        for q in self.projs:
            total += q.n_synapses
            if q.pathway == "feedback":
                n_v = q.n_pre * q.n_post if q.mask is None else int(q.mask.sum())
                lines.append(
                    f"  {q.name:<16} {self.pops[q.post].name} => {self.pops[q.pre].name} (feedback pathway, "
                    f"backward pass only): {q.kind}, density={q.density:.3f}, backward synapses={n_v}, "
                    f"genome={q.group}")
                continue
            only = " (forward pass only)" if q.pathway == "forward" else ""
            lines.append(
                f"  {q.name:<16} {self.pops[q.pre].name} -> {self.pops[q.post].name}{only}: {q.kind}, "
                f"density={q.density:.3f}, bias={'yes' if q.bias else 'no'}, synapses={q.n_synapses}, "
                f"genome={q.group}"
            )
        lines.append(f"forward order: {' -> '.join(self.pops[i].name for i in self.forward_order)}")
        lines.append(f"forward synapses: {total} per channel")
        return "\n".join(lines)


def spec_hash(spec: NetworkSpec) -> str:
    """SHA-256 of the canonical JSON of ``spec`` (identity of a network)."""
    text = json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def compile_network(spec: NetworkSpec) -> Program:
    """Validate ``spec`` and compile it into a :class:`Program`."""
    g, masks = validated(spec)
    k = spec.k
    index = {p.name: i for i, p in enumerate(spec.populations)}
    pops: list[PopPlan] = []
    col = 0
    for i, p in enumerate(spec.populations):
        fwd_names = [p.forward_activation] * k if isinstance(p.forward_activation, str) else list(p.forward_activation)
        bwd_names = [p.backward_activation] * k if isinstance(p.backward_activation, str) else list(p.backward_activation)
        plan = PopPlan(
            name=p.name, index=i, size=p.size, role=p.role, group=p.genome,
            fwd_names=fwd_names, bwd_names=bwd_names,
            norm_fwd=p.normalization in ("forward", "both"),
            norm_bwd=p.normalization in ("backward", "both"),
        )
        if p.role == "input":
            plan.in_slice = slice(col, col + p.size)
            col += p.size
        pops.append(plan)
    projs: list[ProjPlan] = []
    for i, q in enumerate(spec.projections):
        pre, post = index[q.from_], index[q.to]
        m = masks[i]
        if m is not None and m.all():
            m = None  # a full mask is dense
        if q.pathway == "feedback":  # the backward half of a projection to -> from (DESIGN §6)
            pre, post = post, pre
            m = None if m is None else np.ascontiguousarray(m.T)
        projs.append(
            ProjPlan(
                name=q.label, index=i, pre=pre, post=post, n_pre=pops[pre].size,
                n_post=pops[post].size, bias=q.bias and q.pathway != "feedback", group=q.genome,
                kind=q.connectivity.kind, mask=m, pathway=q.pathway,
            )
        )
        if q.pathway != "forward":
            pops[pre].outgoing.append(i)
        if q.pathway != "feedback":
            pops[post].incoming.append(i)
    if spec.rules.schedule == "topological":
        topo = list(nx.lexicographical_topological_sort(g, key=lambda n: index[n]))
        order = [index[n] for n in topo]
    else:
        order = list(range(len(pops)))
    forward_order = [i for i in order if pops[i].role != "input"]
    backward_order = [i for i in reversed(order) if pops[i].role != "input" and pops[i].outgoing]
    groups = sorted({p.group for p in pops if p.role != "input"} | {q.group for q in projs})
    return Program(
        spec=spec, k=k, pops=pops, projs=projs, forward_order=forward_order,
        backward_order=backward_order,
        inputs=[i for i, p in enumerate(pops) if p.role == "input"],
        outputs=[i for i, p in enumerate(pops) if p.role == "output"],
        groups=groups, spec_hash=spec_hash(spec),
        kw=1 if spec.rules.shared_channels else k, shared=bool(spec.rules.shared_channels and k > 1),
    )


def as_program(network) -> Program:
    """A compiled :class:`Program` from a Program (returned as is), a :class:`NetworkSpec`, a dict or a
    JSON file path (what :func:`blursim.spec.load_network` reads)."""
    if isinstance(network, Program):
        return network
    if isinstance(network, (str, Path, dict, NetworkSpec)):
        return compile_network(load_network(network))
    raise TypeError(f"expected a network spec (path, dict, NetworkSpec) or a compiled Program, "
                    f"got {type(network).__name__}")
