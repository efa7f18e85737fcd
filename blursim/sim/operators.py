"""Projection operators: the ONE place where a projection's products are computed.

For a projection ``q: i -> j`` the simulator needs three products per step
(paper eq. 5, 6, 7):

- forward   ``z_j^c = sum_i W[i, j, c] x_i^c``          (:meth:`forward`)
- backward  ``y_i^c = sum_j V[j, i, c] m_j^c``          (:meth:`backward`), with
  ``V = W^T`` when synapses are tied;
- Hebbian   ``H[i, j, c] = sum_b P_b[i, c] Q_b[j, c]`` (:meth:`hebbian`), restricted
  to the connectivity mask.

Internal layouts (channel-major so that every product is a batched matmul):
states ``(S, R, k, B, n)``, forward synapses ``(S, R, kw, n_pre, n_post)``,
backward synapses ``(S, R, kw, n_post, n_pre)``, with ``kw = 1`` for shared
channels (broadcast over the ``k`` state channels) and ``kw = k`` otherwise.
Bias rows are kept apart by the simulator.

:class:`DenseOperator` serves all-to-all projections; :class:`MaskedDenseOperator`
any other connectivity (dense blocks, masked Hebbian products).
"""

from __future__ import annotations

from typing import Any

from blursim.graph.compile import ProjPlan


class DenseOperator:
    """All-to-all projection: plain batched matrix products."""

    def __init__(self, plan: ProjPlan, backend: Any) -> None:
        self.plan = plan
        self.xp = backend.xp

    def forward(self, x, W):
        """``(.., k, B, n_pre) x (.., kw, n_pre, n_post) -> (.., k, B, n_post)``."""
        return self.xp.matmul(x, W)

    def backward(self, m, W=None, V=None):
        """``(.., k, B, n_post) -> (.., k, B, n_pre)`` through ``V`` or, tied, ``W^T``."""
        if V is not None:
            return self.xp.matmul(m, V)
        return self.xp.matmul(m, W.swapaxes(-1, -2))

    def hebbian(self, P, Q):
        """``sum_b P_b[i, c] Q_b[j, c]``: ``(.., k, B, n_pre), (.., k, B, n_post) -> (.., k, n_pre, n_post)``."""
        return self.xp.matmul(P.swapaxes(-1, -2), Q)

    def hebbian_backward(self, P, Q):
        """Backward-synapse Hebbian ``sum_b P_b[j, c] Q_b[i, c]`` -> ``(.., k, n_post, n_pre)``."""
        return self.xp.matmul(P.swapaxes(-1, -2), Q)

    def mask_forward(self, W):
        return W

    def mask_backward(self, V):
        return V


class MaskedDenseOperator(DenseOperator):
    """Sparse connectivity run as dense blocks with the mask applied to every Hebbian product."""

    def __init__(self, plan: ProjPlan, backend: Any) -> None:
        super().__init__(plan, backend)
        self.mask = backend.asarray(plan.mask)  # (n_pre, n_post)
        self.mask_t = backend.asarray(plan.mask.T.copy())

    def hebbian(self, P, Q):
        return super().hebbian(P, Q) * self.mask

    def hebbian_backward(self, P, Q):
        return super().hebbian_backward(P, Q) * self.mask_t

    def mask_forward(self, W):
        return W * self.mask

    def mask_backward(self, V):
        return V * self.mask_t


def make_operator(plan: ProjPlan, backend: Any) -> DenseOperator:
    """The operator that executes ``plan`` on ``backend``."""
    if plan.mask is None:
        return DenseOperator(plan, backend)
    return MaskedDenseOperator(plan, backend)
