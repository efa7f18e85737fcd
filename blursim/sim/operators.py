"""Synapse operators: the ONE place where a projection's products are computed.

For a projection ``q: i -> j`` one BLUR step needs (paper eq. 5, 6, 7):

- forward   ``z_j^c = sum_i W[i, j, c] x_i^c``             (:meth:`apply` on ``W``)
- backward  ``y_i^c = sum_j V[j, i, c] m_j^c``             (:meth:`apply` on ``V``), or
  through ``W^T`` when synapses are tied                (:meth:`apply_t` on ``W``);
- Hebbian   ``W[i, j, c] <- beta W + alpha sum_b P_b[i, c] Q_b[j, c]`` on the
  mask                                                  (:meth:`hebbian_update`).

An operator describes synapses from ``n_src`` to ``n_dst`` neurons under a
mask: a projection's forward synapses ``W`` (src = pre, dst = post) or its
backward synapses ``V`` (src = post, dst = pre, mask transposed). Arrays carry
leading axes ``(S, R, channel)``; states are ``(..., B, n)``.

Three storage layouts, all behind the same methods:

- :class:`DenseOperator` (all-to-all): ``(..., n_src, n_dst)``, products by
  the backend's ``gemm`` with the genome's scalars folded into ``alpha`` and
  the keep gate into ``beta``;
- :class:`MaskedDenseOperator`: the same storage, Hebbian products masked;
- :class:`BlockOperator`: only the tiles of a
  :class:`~blursim.graph.tiling.BlockPlan`, ``(..., nD, K, bd)``; every
  product is one batched matrix product over tiles (sources fetched through
  strided windows or gathered runs), the Hebbian product computed only on
  stored tiles and masked inside them (a sampled dense-dense product).

``to_dense``/``from_dense`` convert storage to and from the dense layout
(entries outside the mask are dropped), for :class:`~blursim.sim.simulator.SynapseState`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blursim.backend.base import combine, const_value, scale_inplace
from blursim.graph.tiling import BlockPlan


def _bshape(a, b) -> tuple:
    return tuple(np.broadcast_shapes(a, b))


class DenseOperator:
    """All-to-all synapses stored dense ``(..., n_src, n_dst)``."""

    kind = "dense"

    def __init__(self, n_src: int, n_dst: int, backend: Any) -> None:
        self.n_src, self.n_dst = int(n_src), int(n_dst)
        self.backend = backend
        self.xp = backend.xp

    # ------------------------------------------------------------------ storage
    @property
    def tail(self) -> tuple[int, ...]:
        """Trailing storage shape."""
        return (self.n_src, self.n_dst)

    @property
    def stored(self) -> int:
        """Stored synapse slots per channel (what the products cost)."""
        return self.n_src * self.n_dst

    def from_dense(self, D, xp=None):
        """Dense ``(..., n_src, n_dst)`` -> storage (a new array)."""
        return (xp or self.xp).array(D, copy=True)

    def to_dense(self, E):
        """Storage -> dense ``(..., n_src, n_dst)`` (a new array)."""
        return E.copy()

    def colsq(self, E):
        """``sum_src E^2`` per destination neuron: ``(..., n_dst)``."""
        return (E * E).sum(axis=-2)

    def scale_dst(self, E, v) -> None:
        """``E[..., i, j] *= v[..., j]`` in place."""
        E *= v[..., None, :]

    # ----------------------------------------------------------------- products
    def apply(self, X, E, out, alpha=1.0, beta=0.0) -> None:
        """``out <- alpha * X @ E + beta * out``: ``(..., B, n_src) -> (..., B, n_dst)``."""
        self.backend.gemm(X, E, out, alpha, beta)

    def apply_t(self, Y, E, out, alpha=1.0, beta=0.0) -> None:
        """``out <- alpha * Y @ E^T + beta * out``: ``(..., B, n_dst) -> (..., B, n_src)`` (tied backward)."""
        self.backend.gemm(Y, E.swapaxes(-1, -2), out, alpha, beta)

    def hebbian_update(self, P, Q, E, alpha=1.0, beta=1.0) -> None:
        """``E <- beta * E + alpha * mask * sum_b P_b^T Q_b`` with ``P (..., B, n_src)``, ``Q (..., B, n_dst)``."""
        self.backend.gemm(P.swapaxes(-1, -2), Q, E, alpha, beta)


class MaskedDenseOperator(DenseOperator):
    """Sparse connectivity stored dense; Hebbian products masked (entries off the mask stay 0)."""

    kind = "masked"

    def __init__(self, n_src: int, n_dst: int, backend: Any, mask: np.ndarray) -> None:
        super().__init__(n_src, n_dst, backend)
        self.mask_host = np.asarray(mask, dtype=bool)
        self.mask = backend.asarray(self.mask_host)

    def from_dense(self, D, xp=None):
        xp = xp or self.xp
        return D * (self.mask if xp is self.xp else self.mask_host.astype(D.dtype))

    def hebbian_update(self, P, Q, E, alpha=1.0, beta=1.0) -> None:
        super().hebbian_update(P, Q, E, alpha, beta)
        E *= self.mask  # E was 0 off the mask, so this keeps beta*E + alpha*mask*H


class BlockOperator:
    """Synapses stored as the tiles of a :class:`BlockPlan`: ``(..., nD, K, bd)``.

    ``transposed`` (the plan of the transposed mask) enables :meth:`apply_t`
    for tied synapses: the tiles of ``W^T`` are gathered from ``W``'s each
    step (a copy of the stored synapses, no batch factor).
    """

    kind = "block"

    def __init__(self, plan: BlockPlan, backend: Any, transposed: BlockPlan | None = None) -> None:
        self.plan = plan
        self.backend = backend
        self.xp = backend.xp
        self.n_src, self.n_dst = plan.n_src, plan.n_dst
        self.nD, self.K, self.bd = plan.nD, plan.K, plan.bd
        self.full = plan.full
        self.mask = backend.asarray(plan.mask)
        slot, rows, cols = plan.slots()
        self._slot_h, self._rows_h, self._cols_h = slot, rows, cols
        self._slot, self._rows, self._cols = backend.index(slot), backend.index(rows), backend.index(cols)
        if plan.windows is None:
            runs = plan.src_index[:, :: plan.run] // plan.run  # (nD, K / run)
            self._runs = backend.index(runs.reshape(-1))
        self.T = None
        if transposed is not None:
            self._init_transposed(transposed)

    # ------------------------------------------------------------------ storage
    @property
    def tail(self) -> tuple[int, ...]:
        return (self.nD, self.K, self.bd)

    @property
    def stored(self) -> int:
        return self.plan.stored

    def from_dense(self, D, xp=None):
        xp = xp or self.xp
        dev = xp is self.xp
        slot = self._slot if dev else self._slot_h
        rows, cols = (self._rows, self._cols) if dev else (self._rows_h, self._cols_h)
        lead = D.shape[:-2]
        E = xp.zeros(lead + (self.nD * self.K * self.bd,), dtype=D.dtype)
        E[..., slot] = D[..., rows, cols]
        return E.reshape(lead + self.tail)

    def to_dense(self, E):
        lead = E.shape[:-3]
        D = self.xp.zeros(lead + (self.n_src, self.n_dst), dtype=E.dtype)
        D[..., self._rows, self._cols] = E.reshape(lead + (-1,))[..., self._slot]
        return D

    def colsq(self, E):
        return (E * E).sum(axis=-2).reshape(E.shape[:-3] + (self.n_dst,))

    def scale_dst(self, E, v) -> None:
        E *= v.reshape(v.shape[:-1] + (self.nD, 1, self.bd))

    # ---------------------------------------------------------------- operands
    def _sources(self, X):
        """``[(d0, count, Xg)]``: source operands ``(..., count, B, K)`` for tile groups."""
        lead, (B, n) = X.shape[:-2], X.shape[-2:]
        if self.plan.windows is not None:
            st = X.strides
            out = []
            for d0, count, start, step in self.plan.windows:
                base = X[..., start:]
                Xg = self.backend.as_strided(
                    base, lead + (count, B, self.K), st[:-2] + (step * st[-1], st[-2], st[-1]))
                out.append((d0, count, Xg))
            return out
        r = self.plan.run
        Xr = X.reshape(lead + (B, n // r, r))
        G = self.xp.take(Xr, self._runs, axis=-2)  # (..., B, nD * K / r, r)
        return [(0, self.nD, G.reshape(lead + (B, self.nD, self.K)).swapaxes(-3, -2))]

    def _dst_view(self, Y):
        """``(..., B, n_dst)`` -> ``(..., nD, B, bd)`` view."""
        return Y.reshape(Y.shape[:-1] + (self.nD, self.bd)).swapaxes(-3, -2)

    # ----------------------------------------------------------------- products
    def apply(self, X, E, out, alpha=1.0, beta=0.0) -> None:
        xp = self.xp
        if not X.flags.c_contiguous and self.plan.windows is None:
            X = xp.ascontiguousarray(X)
        lead = _bshape(X.shape[:-2], E.shape[:-3])
        B = X.shape[-2]
        if not out.flags.c_contiguous:
            raise ValueError("BlockOperator.apply needs a C-contiguous output")
        direct = const_value(beta) == 0 and lead == out.shape[:-2]
        T = self._dst_view(out) if direct else xp.empty(lead + (self.nD, B, self.bd), dtype=out.dtype)
        for d0, count, Xg in self._sources(X):
            self.backend.matmul_into(Xg, E[..., d0 : d0 + count, :, :], T[..., d0 : d0 + count, :, :])
        if direct:
            scale_inplace(out, alpha, out.ndim)
            return
        O = out.reshape(out.shape[:-1] + (self.nD, self.bd))  # (..., B, nD, bd) view
        combine(self.xp, O, T.swapaxes(-3, -2), alpha, beta)

    def apply_t(self, Y, E, out, alpha=1.0, beta=0.0) -> None:
        if self.T is None:
            raise RuntimeError("BlockOperator built without the transposed plan cannot apply W^T")
        lead = E.shape[:-3]
        Et = self.xp.take(E.reshape(lead + (-1,)), self._tmap, axis=-1).reshape(lead + self.T.tail)
        if self._tmask is not None:
            Et *= self._tmask
        self.T.apply(Y, Et, out, alpha, beta)

    def hebbian_update(self, P, Q, E, alpha=1.0, beta=1.0) -> None:
        xp = self.xp
        if not Q.flags.c_contiguous:
            Q = xp.ascontiguousarray(Q)
        if not P.flags.c_contiguous and self.plan.windows is None:
            P = xp.ascontiguousarray(P)
        lead = _bshape(P.shape[:-2], Q.shape[:-2])
        Qv = self._dst_view(Q)
        H = xp.empty(lead + self.tail, dtype=E.dtype)
        for d0, count, Pg in self._sources(P):
            self.backend.matmul_into(Pg.swapaxes(-1, -2), Qv[..., d0 : d0 + count, :, :],
                                     H[..., d0 : d0 + count, :, :])
        self._mask_scale(H, alpha)
        scale_inplace(E, beta, E.ndim)
        E += H

    def _mask_scale(self, H, alpha) -> None:
        """``H *= mask * alpha`` in one pass (the product ``mask * alpha`` is cached on the scale)."""
        if self.full:
            scale_inplace(H, alpha, H.ndim)
            return
        a = const_value(alpha)
        if a is not None:
            H *= self.mask if a == 1 else self.mask * a
            return
        key = ("mask", id(self))
        ma = alpha.cache.get(key)
        if ma is None:
            ma = alpha.cache[key] = self.mask * alpha.b(H.ndim)
        H *= ma

    # -------------------------------------------------------------- transposed
    def _init_transposed(self, tp: BlockPlan) -> None:
        """Map every slot of the transposed tiling to the slot of ``W`` holding the same synapse."""
        p = self.plan
        pos = np.full((p.nD, p.n_src), -1, dtype=np.int64)  # pos[d, src row] = t
        for d in range(p.nD):
            pos[d, p.src_index[d, ::-1]] = np.arange(p.K)[::-1]  # first occurrence wins
        dT, tT, uT = np.meshgrid(np.arange(tp.nD), np.arange(tp.K), np.arange(tp.bd), indexing="ij")
        post = tp.src_index[dT, tT]  # W's destination neuron
        pre = dT * tp.bd + uT  # W's source neuron
        d, u = post // p.bd, post % p.bd
        t = pos[d, pre]
        slot = (d * p.K + np.maximum(t, 0)) * p.bd + u
        ok = tp.mask & (t >= 0)
        ok &= p.mask.reshape(-1)[slot]
        zero = np.flatnonzero(~p.mask.reshape(-1))
        if zero.size:
            tmap, self._tmask = np.where(ok, slot, zero[0]), None
        else:
            tmap, self._tmask = slot, self.backend.asarray(ok)
        self._tmap = self.backend.index(tmap.reshape(-1))
        self.T = BlockOperator(tp, self.backend)


def make_operator(plan, backend: Any, *, transposed: bool = False, sparse: str = "auto",
                  tied: bool = False):
    """The operator for one projection's forward (``transposed=False``) or backward synapses.

    ``sparse``: ``"auto"`` (block tiles when the tiling's estimated speed-up
    exceeds 1), ``"blocks"`` (always, for masked projections) or ``"masked"``
    (masked dense). ``tied``: the forward operator must also apply ``W^T``.
    """
    n_src, n_dst = (plan.n_post, plan.n_pre) if transposed else (plan.n_pre, plan.n_post)
    if plan.mask is None:
        return DenseOperator(n_src, n_dst, backend)
    if sparse not in ("auto", "blocks", "masked"):
        raise ValueError(f"sparse must be 'auto', 'blocks' or 'masked', got {sparse!r}")
    mask = plan.mask.T if transposed else plan.mask
    if sparse != "masked":
        bp = plan.block_plan(transposed)
        if sparse == "blocks" or bp.speedup > 1.0:
            tp = plan.block_plan(not transposed) if tied else None
            return BlockOperator(bp, backend, transposed=tp)
    return MaskedDenseOperator(n_src, n_dst, backend, mask)
