"""Plain float64 backpropagation on a DAG of populations (independent reference).

This module deliberately does not import anything from ``blursim``.  It is
written to be as simple and obvious as possible, and is itself checked
against central finite differences in ``tests/test_reference_backprop.py``.

Network description (plain data)
--------------------------------
``desc = {"populations": [...], "projections": [...]}`` where

* each population is ``{"name": str, "size": int,
  "role": "input" | "hidden" | "output",
  "activation": "sigmoid" | "tanh" | "identity" | "softplus"}``
  (``activation`` is ignored, and may be absent, for inputs);
* each projection is ``{"name": str, "from": str, "to": str, "bias": bool,
  "mask": None | array of shape (n_from, n_to) with 0/1 entries}``
  (``mask`` may be absent, meaning ``None``).

Populations may be listed in any order; the graph must be acyclic, inputs
have no incoming projections, outputs have no outgoing projections, and every
non-input population has at least one incoming projection.

Weights
-------
``weights[proj_name]`` has shape ``(n_from + bias, n_to)``; when ``bias`` is
true the LAST row holds the bias weights (the bias unit's activation is 1).
With a mask, the effective weight is ``W * mask`` on the non-bias rows and the
gradient is masked the same way (masked entries of the gradient are exactly 0).

Forward
-------
For each non-input population ``j`` in topological order::

    x_j = sum over projections q: i -> j of  [h_i, 1] @ W_q   (the 1 only with bias)
    h_j = act_j(x_j)

Loss (summed over all output populations, per example, then reduced over the
batch by ``reduction`` = "sum" or "mean")

* ``"mse"``: ``0.5 * ||h_o - T_o||^2``; ``targets[o]`` is a (B, n_o) array.
* ``"softmax"``: softmax cross-entropy with ``h_o`` as the logits;
  ``targets[o]`` is a (B,) integer label array.
* ``"logistic"``: binary cross-entropy of each output neuron with ``h_o`` as
  its logit, ``log(1 + exp(h)) - t h`` summed over the neurons;
  ``targets[o]`` is a (B, n_o) array of 0/1 (one neuron: logistic regression).

Backward (reverse mode, by hand)
--------------------------------
``delta_j = -dL/dx_j`` is accumulated over all downstream projections of ``j``
(skip connections included) and ``dL/dW_q = -[h_i, 1]^T delta_j`` (masked).
"""

from __future__ import annotations

import numpy as np

ACTIVATIONS = ("sigmoid", "tanh", "identity", "softplus")
ROLES = ("input", "hidden", "output")
LOSSES = ("mse", "softmax", "logistic")
REDUCTIONS = ("sum", "mean")


# --------------------------------------------------------------------------
# Activations and their derivatives, written out explicitly.
# --------------------------------------------------------------------------


def sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    # 1 / (1 + exp(-x)) written in a form that never overflows.
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def activation(name, x):
    """h = act(x)."""
    x = np.asarray(x, dtype=np.float64)
    if name == "identity":
        return x.copy()
    if name == "sigmoid":
        return sigmoid(x)
    if name == "tanh":
        return np.tanh(x)
    if name == "softplus":
        # log(1 + exp(x)), computed without overflow.
        return np.logaddexp(0.0, x)
    raise ValueError(f"unknown activation {name!r}")


def activation_derivative(name, x, h):
    """d act(x) / dx, given both the pre-activation x and h = act(x)."""
    if name == "identity":
        return np.ones_like(x)
    if name == "sigmoid":
        return h * (1.0 - h)  # s' = s (1 - s)
    if name == "tanh":
        return 1.0 - h * h  # tanh' = 1 - t^2
    if name == "softplus":
        return sigmoid(x)  # softplus' = sigmoid
    raise ValueError(f"unknown activation {name!r}")


# --------------------------------------------------------------------------
# Graph helpers
# --------------------------------------------------------------------------


def _populations_by_name(desc):
    pops = {}
    for pop in desc["populations"]:
        name = pop["name"]
        if name in pops:
            raise ValueError(f"duplicate population name {name!r}")
        if pop["role"] not in ROLES:
            raise ValueError(f"population {name!r}: unknown role {pop['role']!r}")
        if int(pop["size"]) < 1:
            raise ValueError(f"population {name!r}: size must be >= 1")
        if pop["role"] != "input" and pop["activation"] not in ACTIVATIONS:
            raise ValueError(
                f"population {name!r}: unknown activation {pop['activation']!r}"
            )
        pops[name] = pop
    return pops


def _check_projections(desc, pops):
    seen = set()
    for proj in desc["projections"]:
        name = proj["name"]
        if name in seen:
            raise ValueError(f"duplicate projection name {name!r}")
        seen.add(name)
        src, dst = proj["from"], proj["to"]
        if src not in pops or dst not in pops:
            raise ValueError(f"projection {name!r}: unknown endpoint")
        if pops[dst]["role"] == "input":
            raise ValueError(f"projection {name!r}: inputs take no projections")
        if pops[src]["role"] == "output":
            raise ValueError(f"projection {name!r}: outputs send no projections")
        mask = proj.get("mask")
        if mask is not None:
            shape = (pops[src]["size"], pops[dst]["size"])
            if np.shape(mask) != shape:
                raise ValueError(
                    f"projection {name!r}: mask shape {np.shape(mask)} != {shape}"
                )
    for pop_name, pop in pops.items():
        if pop["role"] != "input":
            if not any(p["to"] == pop_name for p in desc["projections"]):
                raise ValueError(f"population {pop_name!r} has no incoming projection")


def topological_order(desc):
    """Population names in an order where every projection goes forward.

    Kahn's algorithm; ties are broken by the order populations are listed in.
    Raises ValueError if the graph has a cycle.
    """
    names = [pop["name"] for pop in desc["populations"]]
    n_incoming = {name: 0 for name in names}
    for proj in desc["projections"]:
        n_incoming[proj["to"]] += 1
    order = []
    done = set()
    while len(order) < len(names):
        ready = [n for n in names if n not in done and n_incoming[n] == 0]
        if not ready:
            raise ValueError("the projection graph has a cycle")
        name = ready[0]
        order.append(name)
        done.add(name)
        for proj in desc["projections"]:
            if proj["from"] == name:
                n_incoming[proj["to"]] -= 1
    return order


def _with_bias_column(h, bias):
    if not bias:
        return h
    ones = np.ones((h.shape[0], 1), dtype=np.float64)
    return np.concatenate([h, ones], axis=1)


def effective_weight(proj, w, n_from):
    """W with the mask applied to its non-bias rows (bias row untouched)."""
    w = np.asarray(w, dtype=np.float64)
    expected = (n_from + (1 if proj["bias"] else 0),)
    if w.ndim != 2 or w.shape[0] != expected[0]:
        raise ValueError(
            f"projection {proj['name']!r}: weight shape {w.shape} has wrong row count"
        )
    mask = proj.get("mask")
    if mask is None:
        return w
    w = w.copy()
    w[:n_from, :] = w[:n_from, :] * np.asarray(mask, dtype=np.float64)
    return w


# --------------------------------------------------------------------------
# Forward pass and loss
# --------------------------------------------------------------------------


def forward(desc, weights, inputs):
    """Returns (order, x, h): topological order, pre-activations, activations.

    ``x`` has an entry for every non-input population, ``h`` for every
    population; all arrays are (B, size) float64.
    """
    pops = _populations_by_name(desc)
    _check_projections(desc, pops)
    order = topological_order(desc)

    h = {}
    x = {}
    batch = None
    for name, pop in pops.items():
        if pop["role"] == "input":
            if name not in inputs:
                raise ValueError(f"missing input {name!r}")
            value = np.asarray(inputs[name], dtype=np.float64)
            if value.ndim != 2 or value.shape[1] != pop["size"]:
                raise ValueError(f"input {name!r}: bad shape {value.shape}")
            if batch is None:
                batch = value.shape[0]
            elif value.shape[0] != batch:
                raise ValueError("inputs disagree on the batch size")
            h[name] = value

    for name in order:
        pop = pops[name]
        if pop["role"] == "input":
            continue
        total = np.zeros((batch, pop["size"]), dtype=np.float64)
        for proj in desc["projections"]:
            if proj["to"] != name:
                continue
            src = proj["from"]
            w = effective_weight(proj, weights[proj["name"]], pops[src]["size"])
            if w.shape[1] != pop["size"]:
                raise ValueError(f"projection {proj['name']!r}: wrong column count")
            total = total + _with_bias_column(h[src], proj["bias"]) @ w
        x[name] = total
        h[name] = activation(pop["activation"], total)
    return order, x, h


def _output_loss_and_gradient(kind, out, target):
    """Per-example loss (B,) and dLoss_per_example/d out (B, n)."""
    if kind == "mse":
        target = np.asarray(target, dtype=np.float64)
        if target.shape != out.shape:
            raise ValueError(f"target shape {target.shape} != output {out.shape}")
        diff = out - target
        return 0.5 * np.sum(diff * diff, axis=1), diff
    if kind == "softmax":
        labels = np.asarray(target)
        if labels.shape != (out.shape[0],):
            raise ValueError(f"labels shape {labels.shape} != ({out.shape[0]},)")
        labels = labels.astype(np.int64)
        rows = np.arange(out.shape[0])
        shifted = out - np.max(out, axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = np.sum(exp, axis=1, keepdims=True)
        probs = exp / total
        log_sum_exp = np.log(total[:, 0])
        per_example = log_sum_exp - shifted[rows, labels]
        grad = probs.copy()
        grad[rows, labels] -= 1.0
        return per_example, grad
    if kind == "logistic":
        target = np.asarray(target, dtype=np.float64)
        if target.shape != out.shape:
            raise ValueError(f"target shape {target.shape} != output {out.shape}")
        # log(1 + exp(h)) written without overflow; its derivative is sigmoid(h)
        per_example = np.sum(np.logaddexp(0.0, out) - target * out, axis=1)
        return per_example, sigmoid(out) - target
    raise ValueError(f"unknown loss {kind!r}")


def _reduction_scale(reduction, batch):
    if reduction == "sum":
        return 1.0
    if reduction == "mean":
        return 1.0 / batch
    raise ValueError(f"unknown reduction {reduction!r}")


def loss_value(desc, weights, inputs, targets, loss="mse", reduction="sum"):
    """The scalar loss only (forward pass; used for finite differences)."""
    value, _ = _loss_and_output_gradients(desc, weights, inputs, targets, loss, reduction)
    return value


def _loss_and_output_gradients(desc, weights, inputs, targets, loss, reduction):
    order, x, h = forward(desc, weights, inputs)
    pops = _populations_by_name(desc)
    batch = next(iter(h.values())).shape[0]
    scale = _reduction_scale(reduction, batch)
    total = 0.0
    dl_dh = {}
    for name in order:
        if pops[name]["role"] != "output":
            continue
        if name not in targets:
            raise ValueError(f"missing target for output {name!r}")
        per_example, grad = _output_loss_and_gradient(loss, h[name], targets[name])
        total += scale * float(np.sum(per_example))
        dl_dh[name] = scale * grad
    return total, (order, x, h, dl_dh)


# --------------------------------------------------------------------------
# Backward pass
# --------------------------------------------------------------------------


def loss_and_grads(desc, weights, inputs, targets, loss="mse", reduction="sum"):
    """(loss, grads) with grads[proj_name] = dL/dW, same shape as the weight."""
    total, (order, x, h, dl_dh) = _loss_and_output_gradients(
        desc, weights, inputs, targets, loss, reduction
    )
    pops = _populations_by_name(desc)

    # g_h[j] = dL/dh_j, accumulated from the loss and from every downstream
    # projection of j.
    g_h = {name: np.zeros_like(h[name]) for name in order}
    for name, grad in dl_dh.items():
        g_h[name] = g_h[name] + grad

    grads = {}
    for name in reversed(order):
        pop = pops[name]
        if pop["role"] == "input":
            continue
        # delta_j = -dL/dx_j = -(dL/dh_j) * act'(x_j)
        delta = -g_h[name] * activation_derivative(pop["activation"], x[name], h[name])
        for proj in desc["projections"]:
            if proj["to"] != name:
                continue
            src = proj["from"]
            n_from = pops[src]["size"]
            w = effective_weight(proj, weights[proj["name"]], n_from)
            pre = _with_bias_column(h[src], proj["bias"])
            grad_w = -(pre.T @ delta)
            mask = proj.get("mask")
            if mask is not None:
                grad_w[:n_from, :] = grad_w[:n_from, :] * np.asarray(mask, dtype=np.float64)
            grads[proj["name"]] = grad_w
            # dL/dh_src += dL/dx_j @ W_eff^T (bias row excluded: bias is constant)
            g_h[src] = g_h[src] - delta @ w[:n_from, :].T
    return total, grads


def sgd(desc, weights, batches, lr, loss="mse", reduction="sum"):
    """Plain SGD: for each (inputs, targets) batch, W <- W - lr * dL/dW.

    Returns the list of weight dicts after each step (fresh copies; the
    ``weights`` argument is not modified).
    """
    current = {name: np.array(w, dtype=np.float64) for name, w in weights.items()}
    history = []
    for inputs, targets in batches:
        _, grads = loss_and_grads(desc, current, inputs, targets, loss, reduction)
        current = {name: current[name] - lr * grads[name] for name in current}
        history.append({name: w.copy() for name, w in current.items()})
    return history
