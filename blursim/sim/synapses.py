"""Synapses as a simulator stores them, and the initial draw (DESIGN §1-2).

:class:`SynapseState` holds the synapses of ``S x R`` networks (species x
replicas) in the storage layout of each projection's operator
(:mod:`blursim.sim.operators`: dense ``(n_pre, n_post)`` or block tiles), channel-major
``(S, R, kw, ...)`` with ``kw`` the program's stored channels (1 with shared
channels). :meth:`SynapseState.get`/:meth:`SynapseState.set` speak the dense
layout; :meth:`SynapseState.forward_synapses` returns DESIGN's layout
``(S, R, n_pre + bias, n_post, k)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: SeedSequence stream tag of the initial synapses (DESIGN §2, Randomness).
TAG_INIT = 0x696E6974


class Layout:
    """How a simulator stores each projection's synapses: its operators (:mod:`blursim.sim.operators`),
    which convert to and from the dense layout."""

    def __init__(self, wops, vops, backend) -> None:
        self.wops, self.vops, self.backend = wops, vops, backend
        self.key = tuple((type(o).__name__, getattr(o, "tail", None)) for o in wops) + tuple(
            None if o is None else (type(o).__name__, o.tail) for o in vops)

    def op(self, q: int, which: str):
        return self.wops[q] if which == "W" else self.vops[q] if which == "V" else None

    def adopt(self, st: "SynapseState") -> None:
        """Bring a state made elsewhere (dense arrays, another layout or dtype) into this layout, in place."""
        if st.layout is self:
            return
        dt = np.dtype(self.backend.dtype)
        same = st.layout is not None and st.layout.key == self.key
        for q in range(len(self.wops)):
            for which, lst in (("W", st.W), ("b", st.b), ("V", st.V)):
                if lst[q] is None:
                    continue
                if np.dtype(lst[q].dtype).kind == "c" and dt.kind != "c":
                    raise TypeError("complex synapses need a simulator with dtype='complex128'")
                if same or which == "b":
                    lst[q] = self.backend.asarray(lst[q])
                else:
                    lst[q] = self.op(q, which).from_dense(self.backend.asarray(SynapseState.get(st, q, which)))
        st.layout = self


@dataclass
class SynapseState:
    """Synapses (and persistent neuron states) of ``S x R`` networks.

    ``W[q]``: forward synapses ``(S, R, kw, ...)`` in projection ``q``'s storage
    layout (dense ``(n_pre, n_post)`` for all-to-all and masked dense
    projections, tiles for block-sparse ones); ``b[q]``: ``(S, R, kw, n_post)``
    or ``None``; ``V[q]``: backward synapses or ``None`` when tied. Read and
    write them through :meth:`get` / :meth:`set`, which always speak the dense
    layout. ``a``: neuron states ``(S, R, k, B, n)`` kept between steps when
    ``reset_neurons`` is off. ``steps``: training steps taken.

    A training step updates the arrays in place.
    """

    W: list[Any]
    b: list[Any]
    V: list[Any]
    a: list[Any] | None = None
    steps: int = 0
    meta: dict = field(default_factory=dict)
    layout: Any = field(default=None, repr=False, compare=False)

    def copy(self) -> "SynapseState":
        c = lambda x: None if x is None else x.copy()  # noqa: E731
        return SynapseState(
            [c(w) for w in self.W], [c(x) for x in self.b], [c(v) for v in self.V],
            None if self.a is None else [c(x) for x in self.a], self.steps, dict(self.meta), self.layout,
        )

    @property
    def shape_SR(self) -> tuple[int, int]:
        return int(self.W[0].shape[0]), int(self.W[0].shape[1])

    def _op(self, q: int, which: str):
        return None if self.layout is None else self.layout.op(q, which)

    def get(self, q: int, which: str = "W"):
        """A dense copy of projection ``q``'s ``W``, ``b`` or ``V`` (internal layout).

        ``W``: ``(S, R, kw, n_pre, n_post)`` (zeros outside the mask), ``b``:
        ``(S, R, kw, n_post)`` or None, ``V``: ``(S, R, kw, n_post, n_pre)`` or None.
        The result is a new array (block-sparse storage is gathered); write
        changes back with :meth:`set`.
        """
        arr = {"W": self.W, "b": self.b, "V": self.V}[which][q]
        if arr is None:
            return None
        op = self._op(q, which)
        return arr.copy() if op is None else op.to_dense(arr)

    def set(self, q: int, which: str, value) -> None:
        """Replace projection ``q``'s ``W``/``b``/``V`` with a dense internal-layout array.

        The value is cast to the stored dtype (a complex value into real
        synapses is an error: use ``Simulator(..., dtype="complex128")``) and
        entries outside the mask are dropped.
        """
        lists = {"W": self.W, "b": self.b, "V": self.V}
        old = lists[which][q]
        if value is None:
            lists[which][q] = None
            return
        op = self._op(q, which)
        xp = op.xp if op is not None else (self.layout.backend.xp if self.layout is not None else np)
        v = xp.asarray(value)
        dt = old.dtype if old is not None else v.dtype
        if np.dtype(v.dtype).kind == "c" and np.dtype(dt).kind != "c":
            raise TypeError(
                f"cannot store complex synapses in {np.dtype(dt).name} storage; "
                "create the simulator with dtype='complex128'")
        v = v.astype(dt, copy=True)
        lists[which][q] = v if op is None else op.from_dense(v)

    def forward_synapses(self, q: int, k: int, to_numpy=np.asarray) -> np.ndarray:
        """Projection ``q``'s forward synapses in DESIGN's layout ``(S, R, n_pre + bias, n_post, k)``."""
        W = to_numpy(self.get(q, "W"))
        S, R, kw, n_pre, n_post = W.shape
        W = np.broadcast_to(W, (S, R, k, n_pre, n_post))
        if self.b[q] is not None:
            b = np.broadcast_to(to_numpy(self.get(q, "b")), (S, R, k, n_post))
            W = np.concatenate([W, b[:, :, :, None, :]], axis=3)
        return np.array(np.moveaxis(W, 2, -1), order="C", copy=True)

    def backward_synapses(self, q: int, k: int, to_numpy=np.asarray) -> np.ndarray | None:
        """Projection ``q``'s backward synapses ``(S, R, n_post, n_pre, k)``; ``None`` when tied."""
        if self.V[q] is None:
            return None
        V = to_numpy(self.get(q, "V"))
        S, R, kw, n_post, n_pre = V.shape
        return np.array(np.moveaxis(np.broadcast_to(V, (S, R, k, n_post, n_pre)), 2, -1), order="C", copy=True)


def draw(rng: np.random.Generator, shape: tuple[int, ...], init, fan: int) -> np.ndarray:
    """One array of initial synapses (float64): ``normal`` or ``uniform`` on ``[-1, 1]`` times
    ``init.scale / sqrt(fan)`` (``init.fan_in``), or zeros (DESIGN §2 / docs/design.md)."""
    s = init.scale / (np.sqrt(fan) if init.fan_in else 1.0)
    if init.distribution == "normal":
        return rng.standard_normal(shape) * s
    if init.distribution == "uniform":
        return rng.uniform(-1.0, 1.0, shape) * s
    return np.zeros(shape)
