"""A plain feed-forward network built from a compiled blursim :class:`Program`.

Same populations, projections, masks and biases as the BLUR network, but no
neuron states, genome or update rule: population ``j`` computes

    z_j = sum_{q: i -> j} h_i W_q[:n_i] + W_q[n_i]      (bias row last, when present)
    h_j = sigma_j(z_j)

with ``sigma_j`` the population's state-0 forward activation
(``pop.fwd_names[0]``) and ``h_i`` the data columns for an input population.
The loss is softmax cross-entropy of the output activations (the state-0
logits of BLUR), mean over the batch, summed over output populations; a
single output neuron ``a`` stands for the two-class logits ``[0, a]`` as in
:mod:`blursim.sim.metrics`. Gradients are hand-written reverse mode.

Weights are a list with one array per projection in DESIGN's forward layout
minus the channel axis: ``(R, n_pre + bias, n_post)`` with a replica axis
``R`` (independent networks trained side by side on the same batches).
Entries outside a projection's connectivity mask do not exist: the forward
pass multiplies them by the mask and their gradient is 0, so they stay 0.

Normalisation flags of the spec (BLUR's ``N`` with genome gain and shift)
are not part of the baseline network: a baseline is plain gradient descent on
the plain network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from blursim.baselines.derivatives import derivative_of
from blursim.errors import SpecError
from blursim.graph.compile import Program
from blursim.sim.metrics import accuracy_and_ce
from blursim.vocab.activations import ACTIVATIONS


def _topological_order(program: Program) -> list[int]:
    """Population indices in a topological order (ties by listing order), or a cycle error."""
    g = nx.MultiDiGraph()
    g.add_nodes_from(range(len(program.pops)))
    for q in program.projs:
        g.add_edge(q.pre, q.post)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return list(nx.lexicographical_topological_sort(g))
    names = [program.pops[e[0]].name for e in cycle]
    loop = " -> ".join(names + [names[0]])
    sched = program.rules.schedule
    raise SpecError(
        f"gradient baselines need an acyclic (feed-forward) network, but this one has the cycle "
        f"{loop} (schedule {sched!r})",
        path="$.projections",
        hint="Recurrent networks run only under BLUR's synchronous schedule; use a feed-forward "
             "spec (a DAG, skip connections allowed) for the SGD/momentum/Adam baselines.",
    )


@dataclass
class Cache:
    """What the backward pass needs from the forward pass (per population)."""

    z: dict[int, np.ndarray]
    h: dict[int, np.ndarray]


class FeedForwardNet:
    """The baseline network of a compiled program.

    Parameters
    ----------
    program:
        A compiled blursim network; any acyclic topology (several inputs and
        outputs, skip connections, sparse masks, with or without biases).
    dtype:
        ``"float64"`` (default) or ``"float32"``.
    """

    def __init__(self, program: Program, dtype: str = "float64") -> None:
        if dtype not in ("float32", "float64"):
            raise SpecError("the baseline network runs in float32 or float64", value=dtype,
                            path="dtype", choices=["float32", "float64"])
        self.program = program
        self.dtype = np.dtype(dtype)
        order = _topological_order(program)
        self.order = [i for i in order if program.pops[i].role != "input"]
        self.act: dict[int, Any] = {}
        self.dact: dict[int, Any] = {}
        for i in self.order:
            p = program.pops[i]
            name = p.fwd_names[0]
            path = f"$.populations[{i}].forward_activation"
            self.dact[i] = derivative_of(name, path=path)
            self.act[i] = ACTIVATIONS.get(name, path=path)
        self.masks = [None if q.mask is None else q.mask.astype(self.dtype) for q in program.projs]

    # ----------------------------------------------------------------- weights
    def initial_weights(self, replicas: int = 1, seed: int = 0) -> list[np.ndarray]:
        """The BLUR simulation's initial forward synapses (state-0 channel) for ``seed``.

        Drawn by :func:`blursim.sim.oracle.reference_draws` (``init_scale`` 1),
        as :meth:`blursim.sim.Simulator.init_synapses` draws them, so a BLUR run
        and a baseline run with the same seed start from identical weights. Each array is
        ``(R, n_pre + bias, n_post)``.
        """
        from blursim.sim.oracle import reference_draws

        return [np.array(w[0, ..., 0], dtype=self.dtype) for w in reference_draws(self.program, replicas, seed)[0]]

    def zeros_like_weights(self, params: list[np.ndarray]) -> list[np.ndarray]:
        return [np.zeros_like(w) for w in params]

    # ----------------------------------------------------------------- forward
    def _inputs(self, x: np.ndarray) -> dict[int, np.ndarray]:
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != self.program.n_features:
            raise SpecError(
                f"the network takes (batch, {self.program.n_features}) inputs, got shape {x.shape}",
                path="x",
            )
        return {i: x[:, self.program.pops[i].in_slice] for i in self.program.inputs}

    def forward(self, params: list[np.ndarray], x: np.ndarray) -> tuple[list[np.ndarray], Cache]:
        """Output activations ``(R, B, n_o)`` of every output population, and the cache."""
        prog = self.program
        h: dict[int, np.ndarray] = dict(self._inputs(x))
        z: dict[int, np.ndarray] = {}
        for j in self.order:
            total = None
            for qi in prog.pops[j].incoming:
                q = prog.projs[qi]
                W = params[qi]
                Wb = W[:, :q.n_pre] if self.masks[qi] is None else W[:, :q.n_pre] * self.masks[qi]
                term = h[q.pre] @ Wb  # (B|R,B, n_pre) @ (R, n_pre, n_post)
                if q.bias:
                    term = term + W[:, q.n_pre][:, None, :]
                total = term if total is None else total + term
            z[j] = total
            h[j] = self.act[j](total, np)
        return [h[o] for o in prog.outputs], Cache(z=z, h=h)

    # -------------------------------------------------------------------- loss
    @staticmethod
    def _ce_and_grad(out: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Batch-mean softmax cross-entropy ``(R,)`` of one output and its gradient w.r.t. ``out``."""
        B = out.shape[-2]
        single = out.shape[-1] == 1
        logits = np.concatenate([np.zeros_like(out), out], axis=-1) if single else out
        m = logits.max(axis=-1, keepdims=True)
        e = np.exp(logits - m)
        s = e.sum(axis=-1, keepdims=True)
        p = e / s
        lse = (np.log(s) + m)[..., 0]
        idx = np.broadcast_to(y[:, None], logits.shape[:-1] + (1,))
        picked = np.take_along_axis(logits, idx, axis=-1)[..., 0]
        loss = (lse - picked).mean(axis=-1)
        onehot = np.zeros_like(logits)
        np.put_along_axis(onehot, idx, 1.0, axis=-1)
        g = (p - onehot) / B
        if single:
            g = g[..., 1:]  # d/da of logits [0, a]
        return loss, g

    def loss(self, params: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Summed over outputs, batch-mean softmax cross-entropy, per replica ``(R,)``."""
        outs, _ = self.forward(params, x)
        y = np.asarray(y, dtype=np.int64)
        return sum(self._ce_and_grad(o, y)[0] for o in outs)

    def loss_and_grad(
        self, params: list[np.ndarray], x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Loss ``(R,)`` and its gradient w.r.t. every projection's weights (same shapes)."""
        prog = self.program
        outs, cache = self.forward(params, x)
        y = np.asarray(y, dtype=np.int64)
        gh: dict[int, np.ndarray] = {}
        loss = 0.0
        for o, out in zip(prog.outputs, outs):
            l_o, g_o = self._ce_and_grad(out, y)
            loss = loss + l_o
            gh[o] = g_o
        grads: list[np.ndarray | None] = [None] * len(prog.projs)
        for j in reversed(self.order):
            if j not in gh:
                continue  # no path to any output: no gradient flows here
            gz = gh[j] * self.dact[j](cache.z[j], cache.h[j])
            for qi in prog.pops[j].incoming:
                q = prog.projs[qi]
                hi = cache.h[q.pre]
                gW = np.swapaxes(hi, -1, -2) @ gz  # (R, n_pre, n_post), summed over the batch
                if self.masks[qi] is not None:
                    gW = gW * self.masks[qi]
                if q.bias:
                    gW = np.concatenate([gW, gz.sum(axis=-2)[:, None, :]], axis=1)
                grads[qi] = gW
                if prog.pops[q.pre].role != "input":
                    Wb = params[qi][:, :q.n_pre]
                    if self.masks[qi] is not None:
                        Wb = Wb * self.masks[qi]
                    back = gz @ np.swapaxes(Wb, -1, -2)
                    gh[q.pre] = gh[q.pre] + back if q.pre in gh else back
        grads = [np.zeros_like(w) if g is None else g for g, w in zip(grads, params)]
        return np.asarray(loss), grads

    def evaluate(self, params: list[np.ndarray], batches) -> dict[str, np.ndarray]:
        """Mean accuracy / cross-entropy ``(R,)`` over query batches (as the BLUR evaluation)."""
        acc, ce = 0.0, 0.0
        with np.errstate(all="ignore"):
            for xq, yq in batches:
                outs, _ = self.forward(params, xq)
                m = accuracy_and_ce(outs, yq)
                acc = acc + m["accuracy"]
                ce = ce + m["cross_entropy"]
        return {"accuracy": acc / len(batches), "cross_entropy": ce / len(batches)}
