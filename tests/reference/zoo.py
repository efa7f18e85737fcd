"""The classical learning rules of DESIGN §6 on a layered network, in plain float64 NumPy.

An independent yardstick: nothing here imports ``blursim`` (nor ``backprop.py``'s
internals beyond the activations); every rule is written from its textbook
definition, with the notation of DESIGN §6:

    z_l = W_l x_{l-1} (+ b_l),   x_l = f_l(z_l),   e = ∂L/∂z_L,   δ_l = ∂L/∂z_l (or its stand-in)

- backprop:   δ_L = e,  δ_l = (W_{l+1}ᵀ δ_{l+1}) ⊙ f_l'(z_l)
- feedback alignment (Lillicrap et al. 2016): δ_l = (B_{l+1} δ_{l+1}) ⊙ f_l'(z_l), B fixed
- direct feedback alignment (Nøkland 2016):    δ_l = (B_l e) ⊙ f_l'(z_l), B_l fixed, B_L = I
- Kolen-Pollack (Kolen & Pollack 1994; Akrout et al. 2019): the FA deltas, and
  ΔW_l = −η δ_l x_{l-1}ᵀ − λ W_l,  ΔB_l = −η x_{l-1} δ_lᵀ − λ B_l
- Hebbian: ΔW_l = η x_l x_{l-1}ᵀ;  Oja (1982): Δw_i = η y_i (x − y_i w_i), y = x_l, x = x_{l-1}

and for every rule but Kolen-Pollack's decay ``ΔW_l = −η δ_l x_{l-1}ᵀ``.

Layout (as ``backprop.py`` and blursim): ``W[l]`` has shape ``(n_{l-1} + bias, n_l)``, the
bias row last (the bias unit's activity is 1), so ``z_l = [x_{l-1}, 1] @ W_l`` on a batch
``(B, n)`` (rows are examples, so every matrix product of DESIGN §6 appears transposed).
Feedback matrices are stored in the layout of the synapses they stand in for: FA/KP's
``B_l`` (DESIGN's ``B_l`` is ``(n_{l-1}, n_l)``, the shape of ``W_lᵀ`` in math layout) as
``(n_{l-1}, n_l)``, used as ``δ_{l-1} = (δ_l @ B_lᵀ) ⊙ f'``; DFA's ``B_l`` (``n_l x n_L``)
as ``(n_l, n_L)``, used as ``δ_l = (e @ B_lᵀ) ⊙ f'``.
Batches are summed (``reduction="sum"``) or averaged (``"mean"``) in the loss, so ``e`` and
every update carry that factor. Biases receive updates like any weight row (input 1);
``B`` has no bias row (the bias unit sends nothing backwards).
"""

from __future__ import annotations

import numpy as np

from .backprop import activation, activation_derivative

RULES = ("backprop", "feedback_alignment", "direct_feedback_alignment", "kolen_pollack")


def with_ones(x, bias):
    return np.concatenate([x, np.ones((x.shape[0], 1))], axis=1) if bias else x


def forward(acts, W, x, bias):
    """Pre-activations ``z[l]`` and activities ``h[l]`` (``h[0] = x``) of the layered net."""
    h, z = [np.asarray(x, dtype=np.float64)], [None]
    for l, w in enumerate(W, start=1):
        z.append(with_ones(h[-1], bias) @ w)
        h.append(activation(acts[l - 1], z[-1]))
    return z, h


def output_error(h_out, target, loss, reduction):
    """``e = ∂L/∂z_L`` for identity outputs: softmax cross-entropy (integer labels) or
    ``½‖h − T‖²`` (target rows), batch summed or averaged."""
    B = h_out.shape[0]
    if loss == "softmax":
        s = h_out - h_out.max(axis=1, keepdims=True)
        p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
        p[np.arange(B), np.asarray(target, dtype=np.int64)] -= 1.0
        e = p
    elif loss == "mse":
        e = h_out - np.asarray(target, dtype=np.float64)
    else:
        raise ValueError(loss)
    return e / B if reduction == "mean" else e


def deltas(rule, acts, W, Bk, z, h, e):
    """``δ_l`` for layers ``1..L`` (index ``l``; ``δ_L = e``) under ``rule``. ``Bk``: the
    feedback matrices (FA/KP: ``Bk[l]`` ``(n_{l-1}, n_l)`` carries ``δ_l`` to layer ``l-1``;
    DFA: ``Bk[l]`` ``(n_l, n_L)`` carries ``e`` to hidden layer ``l``)."""
    L = len(W)
    d = [None] * (L + 1)
    d[L] = e
    for l in range(L - 1, 0, -1):
        fp = activation_derivative(acts[l - 1], z[l], h[l])
        n = h[l].shape[1]
        if rule == "backprop":
            down = d[l + 1] @ W[l][:n].T  # W_{l+1}ᵀ δ_{l+1}   (W stored 0-based: W[l] is W_{l+1})
        elif rule in ("feedback_alignment", "kolen_pollack"):
            down = d[l + 1] @ Bk[l + 1].T  # B_{l+1} δ_{l+1}
        elif rule == "direct_feedback_alignment":
            down = e @ Bk[l].T  # B_l e
        else:
            raise ValueError(rule)
        d[l] = down * fp
    return d


def step(rule, acts, W, Bk, x, target, lr, *, bias=True, loss="softmax", reduction="sum", decay=0.0):
    """One step of ``rule`` on the batch ``(x, target)``: returns the new ``(W, Bk)`` (lists of
    fresh arrays; ``Bk`` unchanged except under Kolen-Pollack). ``W`` is 0-based: ``W[l-1]``
    is ``W_l``; ``Bk`` is 1-based (``Bk[0]`` unused)."""
    z, h = forward(acts, W, x, bias)
    e = output_error(h[-1], target, loss, reduction)
    d = deltas(rule, acts, W, Bk, z, h, e)
    newW = []
    for l in range(1, len(W) + 1):
        grad = with_ones(h[l - 1], bias).T @ d[l]  # δ_l x_{l-1}ᵀ in the (n_{l-1}+bias, n_l) layout
        newW.append(W[l - 1] - lr * grad - decay * W[l - 1])
    newB = [None if b is None else np.array(b, dtype=np.float64) for b in Bk]
    if rule == "kolen_pollack":
        for l in range(1, len(W) + 1):
            if Bk[l] is not None:
                newB[l] = Bk[l] - lr * (h[l - 1].T @ d[l]) - decay * Bk[l]  # −η x_{l-1} δ_lᵀ − λ B_l
    return newW, newB


def hebbian_step(acts, W, x, lr, *, bias=True, oja=False, reduction="sum"):
    """Hebb: ``ΔW_l = η Σ_b x_{l-1} x_lᵀ``; Oja (1982): ``Δw_ij = η Σ_b y_j (x_i − y_j w_ij)``
    (``x`` with a 1 for the bias row), every layer from the same forward pass."""
    _, h = forward(acts, W, x, bias)
    scale = 1.0 / h[0].shape[0] if reduction == "mean" else 1.0
    out = []
    for l in range(1, len(W) + 1):
        xin, y = with_ones(h[l - 1], bias), h[l]
        dW = xin.T @ y
        if oja:
            dW = dW - W[l - 1] * (y * y).sum(axis=0)[None, :]
        out.append(W[l - 1] + lr * scale * dW)
    return out
