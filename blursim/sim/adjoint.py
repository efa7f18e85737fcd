r"""Exact meta-gradients on NumPy: a reverse pass written over the one-step orchestrator's primitives.

Gradient meta-training (paper Sec. 3.3, App. C.1) differentiates the meta-loss

    L(genome) = mean over replicas, query batches and outputs of CE(state 0 after T steps)

through ``T`` BLUR training steps (eq. 5-8). :mod:`blursim.meta.objective` does it with JAX
(the reference step under ``jax.jit``); on a CPU, XLA runs the step's products three to four
times slower than the fast NumPy engine (docs/benchmarks.md, issue 25). This module computes
the same loss and the same gradient with NumPy's BLAS instead:

- :class:`AdjointKernels` is a kernel set (:mod:`blursim.sim.kernels`): the orchestrator of
  :mod:`blursim.sim.step` -- phase order, schedules, every ``rules`` branch -- runs unchanged on
  it. Each primitive computes its result in a channel-major layout (states ``(R, k, B, n)``,
  synapses ``(R, k, n_src (+ bias), n_dst)``: every product is a stack of ``k x R`` BLAS
  ``gemm``), and records on a *tape* the closure that maps its output's adjoint to its inputs'
  (reverse-mode automatic differentiation, one hand-written derivative per primitive);
- :func:`meta_loss_and_grad` runs ``T`` steps and the query evaluation (DESIGN §2 step 7) on
  that kernel set, seeds the adjoint of the cross-entropy (or squared error) and runs the
  tape backwards: the gradient of every genome field of every group.

Two things make the reverse pass cheaper than differentiating the reference step blindly:

- the input populations hold the data in state 0 only (DESIGN §2 step 2), so the products that
  read them (eq. 5's first drive, eq. 7's presynaptic term) are ``x @ W^c`` and ``x^T Q^c``
  scaled by one genome entry; their adjoints need one product each, not two;
- adjoints are propagated only where the loss depends on a value: the updates of backward
  synapses that no backward pass reads (those leaving an input population) are computed,
  because the finiteness check reads them, but never differentiated.

What it covers (:func:`unsupported` says why not, and callers fall back to JAX): every
topology, both schedules, the three backward updates, tied, untied, frozen and shared
synapses, masks, biases, both Oja forms, saturation, both synapse normalisations,
persistent states, the normalisation N, the built-in activations and feedback kinds,
eq. (7)'s own Hebbian term and Kolen-Pollack's mirrored one (``backward_synapses:
"mirror"``: the same fused update with the two mixing matrices' roles swapped). Other rule
variants registered in :data:`blursim.sim.step.HEBBIAN_KERNELS`, and activations and feedback
kinds registered by a user, have no hand-written derivative here: use the JAX route for them.

Exactness: ``tests/test_adjoint.py`` checks the loss against the reference step (float64, to
rounding), the gradient against JAX's and against the complex step and central differences of
the NumPy :class:`~blursim.sim.Simulator` (:func:`blursim.meta.objective.simulator_meta_loss`),
under many rule sets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blursim.sim import step
from blursim.sim.kernels import KernelSet
from blursim.vocab import feedback as _fb

__all__ = ["AdjointKernels", "Var", "unsupported", "meta_loss_and_grad", "ACTIVATION_DERIVATIVES", "IN_PLACE_DERIVATIVES"]


# ---------------------------------------------------------------- values and the tape
class Var:
    """A value of the unrolled computation: ``val`` (an array), ``grad`` (its adjoint, ``None``
    until something downstream of the loss reads it) and ``tracked`` (whether the loss's
    gradient is wanted through it: constants -- data, targets, reset states -- are not).

    ``zero``: the value is all zeros (reset states: products with it are skipped);
    ``x``: set for input states, which hold ``x (B, n)`` in state 0 and zeros elsewhere
    (``val`` is then built only if a general primitive asks for it)."""

    __slots__ = ("_val", "grad", "own", "tracked", "zero", "x", "shape", "dtype")

    def __init__(self, val=None, tracked: bool = True, *, zero: bool = False, x=None, shape=None, dtype=None):
        self._val, self.grad, self.own, self.tracked, self.zero, self.x = val, None, False, tracked, zero, x
        self.shape = tuple(val.shape) if val is not None else tuple(shape)
        self.dtype = val.dtype if val is not None else np.dtype(dtype)

    @property
    def val(self):
        if self._val is None:
            v = np.zeros(self.shape, dtype=self.dtype)
            if self.x is not None:
                v[:, 0] = self.x
            self._val = v
        return self._val


def _const(val) -> Var:
    return Var(val, tracked=False)


def _acc(v: Var, g, shared: bool = False) -> None:
    """Add ``g`` to the adjoint of ``v`` (tracked values only). ``g`` is a new array that nobody
    else holds unless ``shared`` (another value's adjoint passed through): an adjoint made of new
    arrays is summed in place."""
    if v is None or not v.tracked:
        return
    if v.grad is None:
        v.grad, v.own = g, not shared
    elif v.own:
        v.grad += g
    else:
        v.grad, v.own = v.grad + g, True


def _gacc(v: Var, g) -> None:
    """Add ``g`` to the adjoint of a genome entry (kept in float64)."""
    g = np.asarray(g, dtype=np.float64)
    v.grad = g if v.grad is None else v.grad + g


def _dot(a, b) -> float:
    """``sum(a * b)`` in float64 (a genome entry's adjoint)."""
    return float(np.vdot(a.reshape(-1), b.reshape(-1)))


def _sign(v) -> float:
    """``sign(v)`` (0 at 0): the derivative of the reference's ``|v| = v sign(v)``."""
    return float(np.sign(float(v)))


# ------------------------------------------------------------ activation derivatives
def _d_tanh_derivative(x, y):
    return -2.0 * np.tanh(x) * y


#: ``sigma'`` of the built-in activations (:mod:`blursim.vocab.activations`) as ``fn(x, y)`` with
#: ``y = sigma(x)``; an activation without an entry here is not supported by this module.
ACTIVATION_DERIVATIVES = {
    "identity": lambda x, y: None,  # 1: the adjoint passes unchanged
    "one": lambda x, y: 0,
    "zero": lambda x, y: 0,
    "tanh": lambda x, y: 1 - y * y,
    "tanh_derivative": _d_tanh_derivative,
    "sigmoid": lambda x, y: y * (1 - y),
    "sigmoid_derivative": lambda x, y: y * (1 - 2 * (0.5 * (1 + np.tanh(0.5 * x)))),
    "relu": lambda x, y: y > 0,
    "relu_derivative": lambda x, y: 0,
    "relu_tanh": lambda x, y: (1 - y * y) * (y > 0),  # y > 0 exactly where x > 0 (np.where is 10x slower)
    "leaky_relu": lambda x, y: 0.01 + 0.99 * (x > 0),
    "softplus": lambda x, y: (0.5 * (1 + np.tanh(0.5 * x))).astype(x.dtype),
    "softplus_derivative": lambda x, y: y * (1 - y),
    "sin": lambda x, y: np.cos(x),
    "hard_tanh": lambda x, y: ((x >= -1) & (x <= 1)).astype(x.dtype),
}

def _d_tanh_in_place(y, d):
    """``d (1 - y^2)`` in one new array (the fewest passes NumPy allows)."""
    t = np.multiply(y, y)
    np.subtract(1, t, out=t)
    t *= d
    return t


def _d_relu_tanh_in_place(y, d):
    """``d (1 - y^2) [y > 0]`` (``y > 0`` exactly where ``x > 0``) in one new array."""
    t = _d_tanh_in_place(y, d)
    t *= y > 0
    return t


#: Derivatives computed straight into the adjoint's new array (``fn(y, d) -> d sigma'``), for the
#: activations of the common hidden and output populations; the same values as
#: :data:`ACTIVATION_DERIVATIVES` times ``d``, with fewer passes over the states.
IN_PLACE_DERIVATIVES = {"tanh": _d_tanh_in_place, "relu_tanh": _d_relu_tanh_in_place}

#: Activations whose derivative is a function of ``y = sigma(x)`` alone (``x`` is then not kept).
_FROM_Y = frozenset({"identity", "one", "zero", "tanh", "sigmoid", "relu", "relu_derivative", "relu_tanh",
                     "softplus_derivative"})



#: Below this many multiply-adds per training step in the forward products (eq. 5, all
#: replicas) the reverse pass's Python overhead per primitive outweighs its faster products, and
#: ``engine="auto"`` takes JAX. Measured on the project's 2-vCPU machine (T = 10, one replica,
#: docs/benchmarks.md "The meta-gradient on NumPy"): JAX/NumPy time 0.18-0.83x at 0.01-0.6 M,
#: 1.5x at 2.5 M, 2.5x at 14 M, 3.4x at 54 M (paper-es).
AUTO_MIN_FLOPS = 1e6


def step_flops(program, batch: int, replicas: int = 1) -> float:
    """Multiply-adds (x2) of one training step's forward products: ``2 B R k (n_pre + bias) n_post``
    summed over the projections (the measure :data:`AUTO_MIN_FLOPS` is stated in)."""
    k = int(program.k)
    return float(sum(2 * batch * replicas * k * (q.n_pre + int(q.bias)) * q.n_post for q in program.projs))


def unsupported(program) -> str | None:
    """Why this module cannot differentiate ``program``'s step (``None``: it can)."""
    kind = step.feedback_kind(program)
    if _builtin_feedback(kind) is None:
        return f"feedback kind {getattr(kind, '__name__', kind)!r} has no hand-written derivative here"
    for p in program.pops:
        for name in list(p.fwd_names) + list(p.bwd_names):
            if name not in ACTIVATION_DERIVATIVES or not _builtin_activation(name):
                return f"activation {name!r} (population {p.name!r}) has no hand-written derivative here"
    for job in step.synapse_jobs(program):
        if job.hebbian not in ("eq7", "mirror"):
            return f"the Hebbian kernel {job.hebbian!r} has no hand-written derivative here"
    return None


def _builtin_activation(name: str) -> bool:
    from blursim.vocab import activations as acts

    return getattr(acts, name, None) is acts.ACTIVATIONS.get(name)


_BUILTIN_FEEDBACK = {"target": _fb.target, "error_mse": _fb.error_mse, "error_softmax": _fb.error_softmax}


def _builtin_feedback(kind) -> str | None:
    """The name of the built-in feedback kind ``kind`` (the function itself), or ``None``."""
    return next((n for n, fn in _BUILTIN_FEEDBACK.items() if fn is kind), None)


# ------------------------------------------------------------------- the run
class Run:
    """One step's (or evaluation's) values for :class:`AdjointKernels`: ``program``, ``genome``
    (``{group: {field: Var}}``), the synapses ``W``, ``V`` (Vars, channel-major), kept states
    ``kept``, the batch ``x (B, F)`` and labels ``y``, the tape, and what the step writes:
    ``a`` (states), ``newW``, ``newV``."""

    def __init__(self, program, genome, W, V, kept, x, y, tape, R: int, dtype) -> None:
        self.program, self.genome, self.W, self.V, self.kept = program, genome, list(W), list(V), kept
        self.x, self.y, self.tape, self.R, self.dtype = x, y, tape, R, np.dtype(dtype)
        self.a: list | None = None
        self.newW, self.newV = list(W), list(V)
        #: Mixes made in this step, by (matrix, states, transposed): eq. (7)'s ``mu~ a_j`` and
        #: ``nu~^T a_j`` of a population serve two synapse jobs (its incoming W, its outgoing V).
        self.mixes: dict = {}


# --------------------------------------------------------------- the primitives
class AdjointKernels(KernelSet):
    """The primitives of :mod:`blursim.sim.kernels` on :class:`Var` values, channel-major, each
    recording its derivative on ``run.tape`` (see the module docstring)."""

    name = "adjoint"

    # ..................................................... small differentiable pieces
    @staticmethod
    def _g(run, group, field) -> Var:
        return run.genome[group][field]

    def _scale(self, run, s: Var, a: Var) -> Var:
        """``s a`` for a genome scalar ``s``."""
        if a.zero:
            return a
        out = Var(s.val * a.val)

        def back():
            if out.grad is None:
                return
            _gacc(s, _dot(out.grad, a.val))
            _acc(a, s.val * out.grad)
        run.tape.append(back)
        return out

    def _add(self, run, a: Var, b: Var) -> Var:
        if a.zero:
            return b
        if b.zero:
            return a
        out = Var(a.val + b.val)

        def back():
            if out.grad is not None:
                _acc(a, out.grad, shared=True)
                _acc(b, out.grad, shared=True)
        run.tape.append(back)
        return out

    def _mix(self, run, M: Var, a: Var, transpose: bool = False) -> Var:
        """``m^c = sum_d M[c, d] a^d`` (``transpose``: ``sum_e M[e, c] a^e``, eq. 7's ``P``); made once
        per step for the same matrix and states (:attr:`Run.mixes`; its adjoint sums every use)."""
        if run.tape is _NO_TAPE:  # a dead job's mix records no derivative: never shared with a live one
            return self._mix_new(run, M, a, transpose)
        key = (id(M), id(a), transpose)
        hit = run.mixes.get(key)
        if hit is not None and hit[0] is M and hit[1] is a:
            return hit[2]
        out = self._mix_new(run, M, a, transpose)
        run.mixes[key] = (M, a, out)
        return out

    def _mix_new(self, run, M: Var, a: Var, transpose: bool) -> Var:
        Mv = M.val.T if transpose else M.val
        k = Mv.shape[0]
        if a.zero:
            return a
        if a.x is not None:  # input: only state 0
            av = a.x
            m = np.empty(a.shape, dtype=a.dtype)
            np.multiply(Mv[:, 0].astype(a.dtype)[None, :, None, None], av, out=m)
            out = Var(m)

            def back():
                if out.grad is None:
                    return
                g = np.zeros((k, k))
                g[:, 0] = np.einsum("rcbn,bn->c", out.grad, av, dtype=np.float64)
                _gacc(M, g.T if transpose else g)
            run.tape.append(back)
            return out
        # one BLAS product over the channel axis: (k x k) @ (k x B n) per replica
        av = a.val
        R = av.shape[0]
        flat = av.reshape(R, k, -1)
        out = Var(np.matmul(Mv.astype(av.dtype, copy=False), flat).reshape(av.shape))

        def back():
            if out.grad is None:
                return
            dm = out.grad.reshape(R, k, -1)
            g = np.matmul(dm, flat.swapaxes(-1, -2)).sum(axis=0, dtype=np.float64)  # g[c, d] = <dm^c, a^d>
            _gacc(M, g.T if transpose else g)
            if a.tracked:
                Mt = np.ascontiguousarray(Mv.T, dtype=av.dtype)
                if a.grad is not None and a.own and a.grad.flags.c_contiguous:  # a's adjoint += M^T dm, one product
                    _gemm(Mt, dm, a.grad.reshape(R, k, -1), 1.0, 1.0)
                else:
                    _acc(a, np.matmul(Mt, dm).reshape(av.shape))
        run.tape.append(back)
        return out

    def _matmul(self, run, A: Var, B, tB: bool = False) -> Var:
        """``C = A @ B`` (``B^T`` with ``tB``) over the stacked ``(R, k)`` axes; ``B`` a Var or a
        view function's result (see :meth:`drive`)."""
        Bv = B.val.swapaxes(-1, -2) if tB else B.val
        out = Var(_mm(A.val, Bv))

        def back():
            if out.grad is None:
                return
            dC = out.grad
            if A.tracked:
                _acc(A, _mm(dC, Bv.swapaxes(-1, -2)))
            if B.tracked:
                dB = _mm(A.val.swapaxes(-1, -2), dC)
                _acc(B, dB.swapaxes(-1, -2) if tB else dB)
        run.tape.append(back)
        return out

    def _slice_rows(self, run, E: Var, n: int) -> Var:
        """``E[:, :, :n]`` (a synapse array without its bias row); adjoint padded with zeros."""
        if E.shape[2] == n:
            return E
        out = Var(E.val[:, :, :n])

        def back():
            if out.grad is None:
                return
            g = np.zeros(E.shape, dtype=out.grad.dtype)
            g[:, :, :n] = out.grad
            _acc(E, g)
        run.tape.append(back)
        return out

    # ........................................................... primitives
    def synapses(self, run):
        return tuple(run.W), tuple(run.V)

    def normalize_synapses(self, run, syn, eps, copy):
        """App. C.6: ``rescale E / sqrt(sum_rows E^2 + eps)`` (rows: axis 2, bias included)."""
        W, V = syn
        projs = run.program.projs
        We = tuple(self._synapse_normalize(run, w, self._g(run, q.group, "rescale"), eps) for q, w in zip(projs, W))
        Ve = tuple(None if v is None else self._synapse_normalize(run, v, self._g(run, q.group, "rescale"), eps)
                   for q, v in zip(projs, V))
        if not copy:
            run.newW, run.newV = list(We), list(Ve)
        return We, Ve

    def _synapse_normalize(self, run, E: Var, r: Var, eps: float) -> Var:
        Ev = E.val
        s = np.sqrt(np.sum(Ev * Ev, axis=2, keepdims=True) + eps)
        u = Ev / s
        out = Var(r.val * u)

        def back():
            if out.grad is None:
                return
            d = out.grad
            _gacc(r, _dot(d, u))
            if E.tracked:
                du = r.val * d
                _acc(E, (du - u * np.sum(du * u, axis=2, keepdims=True)) / s)
        run.tape.append(back)
        return out

    def start(self, run, keep):
        """Reset states (zeros, not tracked) or the kept ones where their shape fits; the inputs
        in state 0."""
        program, R, k = run.program, run.R, int(run.program.k)
        B = run.x.shape[0]
        a = []
        for p in program.pops:
            shape = (R, k, B, p.size)
            if p.role == "input":
                xi = np.asarray(run.x[:, p.in_slice], dtype=run.dtype)
                a.append(Var(None, tracked=False, x=xi, shape=shape, dtype=run.dtype))
                continue
            kept = run.kept[p.index] if (keep and run.kept is not None) else None
            if kept is not None and kept.shape == shape:
                a.append(kept)
            else:
                a.append(Var(None, tracked=False, zero=True, shape=shape, dtype=run.dtype))
        run.a = a

    def drive(self, run, p, syn, direction, keep, rate, buffer):
        """``keep a_p + rate z_p`` (eq. 5) or ``keep a_p + rate y_p`` (eq. 6)."""
        program = run.program
        W, V = syn
        pop = program.pops[p]
        total = None
        if direction == "forward":
            for qi in pop.incoming:
                q = program.projs[qi]
                z = self._forward_product(run, self._g(run, q.group, "nu"), run.a[q.pre], W[qi], q)
                total = z if total is None else self._add(run, total, z)
        else:
            for qi in pop.outgoing:
                q = program.projs[qi]
                m = self._mix(run, self._g(run, q.group, "mu"), run.a[q.post])
                if m.zero:
                    y = Var(None, tracked=False, zero=True, shape=run.a[p].shape, dtype=run.dtype)
                elif V[qi] is None:
                    y = self._matmul(run, m, self._slice_rows(run, W[qi], q.n_pre), tB=True)
                else:
                    y = self._matmul(run, m, V[qi])
                total = y if total is None else self._add(run, total, y)
        if total is None:
            total = Var(None, tracked=False, zero=True, shape=run.a[p].shape, dtype=run.dtype)
        g = program.pops[p].group
        return self._affine(run, self._g(run, g, rate), total, None if keep is None else self._g(run, g, keep), run.a[p])

    def _affine(self, run, r: Var, z: Var, f: Var | None, a: Var) -> Var:
        """``r z + f a`` for genome scalars ``r``, ``f`` (``f = None``: ``r z``): one pass, one array."""
        if f is None or a.zero:
            return self._scale(run, r, z)
        if z.zero:
            return self._scale(run, f, a)
        out_v = r.val * z.val
        out_v += f.val * a.val
        out = Var(out_v)

        def back():
            if out.grad is None:
                return
            d = out.grad
            _gacc(r, _dot(d, z.val))
            _gacc(f, _dot(d, a.val))
            if z.tracked:
                _acc(z, r.val * d)
            if a.tracked:
                _acc(a, f.val * d)
        run.tape.append(back)
        return out

    def _forward_product(self, run, nu: Var, a: Var, E: Var, q) -> Var:
        """``z^c = sum_i E[i, j, c] (nu abar)^c`` for one projection, the bias row included."""
        n = q.n_pre
        Ev = E.val
        k = nu.shape[0]
        if a.zero and not q.bias:
            return Var(None, tracked=False, zero=True, shape=a.shape[:3] + (Ev.shape[-1],), dtype=a.dtype)
        nb = nu.val.sum(axis=1)  # (nu 1)^c: the bias unit's mixed states
        if a.x is not None:  # input: z^c = nu[c, 0] (x @ E^c)
            xv = a.x
            nu0 = nu.val[:, 0].astype(Ev.dtype)[None, :, None, None]
            base = _mm(xv, Ev[:, :, :n])  # (R, k, B, n_post): kept, <base, dz> is d nu[c, 0]
            z = base * nu0
            if q.bias:
                z += nb[None, :, None, None] * Ev[:, :, n][:, :, None, :]
            out = Var(z)

            def back():
                if out.grad is None:
                    return
                dz = out.grad
                g = np.zeros((k, k))
                for c in range(k):
                    g[c, 0] = _dot(base[:, c], dz[:, c])
                dsum = None
                if q.bias:
                    dsum = dz.sum(axis=2)  # (R, k, n_post)
                    for c in range(k):
                        g[c, :] += _dot(dsum[:, c], Ev[:, c, n])
                _gacc(nu, g)
                if not E.tracked:
                    return
                dzs = dz * nu0  # dE[:n]^c = nu[c, 0] x^T dz^c: one product, summed into E's adjoint
                if E.grad is not None and E.own and E.grad.flags.c_contiguous:
                    _gemm(xv.T[None, None], dzs, E.grad[:, :, :n], 1.0, 1.0)
                    if q.bias:
                        E.grad[:, :, n] += nb[None, :, None] * dsum
                    return
                dE = np.empty_like(Ev)
                _gemm(xv.T[None, None], dzs, dE[:, :, :n], 1.0, 0.0)
                if q.bias:
                    dE[:, :, n] = nb[None, :, None] * dsum
                _acc(E, dE)
            run.tape.append(back)
            return out
        m = self._mix(run, nu, a)
        parts = []
        if not m.zero:
            parts.append(self._matmul(run, m, self._slice_rows(run, E, n)))
        if q.bias:
            parts.append(self._bias_drive(run, nu, E, n, a.shape[2]))
        out = parts[0]
        for extra in parts[1:]:
            out = self._add(run, out, extra)
        return out

    def _bias_drive(self, run, nu: Var, E: Var, n: int, B: int) -> Var:
        """The bias row's drive ``(nu 1)^c E[bias, j, c]`` broadcast over the batch."""
        Ev = E.val
        nb = nu.val.sum(axis=1)
        row = Ev[:, :, n]  # (R, k, n_post)
        out = Var(np.broadcast_to((nb[None, :, None] * row)[:, :, None, :],
                                  row.shape[:2] + (B,) + row.shape[2:]).copy())

        def back():
            if out.grad is None:
                return
            dsum = out.grad.sum(axis=2)
            k = nb.shape[0]
            g = np.zeros((k, k))
            for c in range(k):
                g[c, :] = _dot(dsum[:, c], row[:, c])
            _gacc(nu, g)
            if E.tracked:
                dE = np.zeros_like(Ev)
                dE[:, :, n] = nb[None, :, None] * dsum
                _acc(E, dE)
        run.tape.append(back)
        return out

    def gate(self, run, p, y, first, keep, buffer):
        """``[keep a^0 .. a^{first-1}, a^first y^first, ...]``."""
        a = run.a[p]
        av, yv = a.val, y.val
        kv = self._g(run, run.program.pops[p].group, keep).val if first else None
        out_v = av * yv
        if first:
            out_v[:, :first] = kv * av[:, :first]
        out = Var(out_v)

        def back():
            if out.grad is None:
                return
            d = out.grad
            da = d * yv
            dy = d * av
            if first:
                da[:, :first] = kv * d[:, :first]
                dy[:, :first] = 0
                _gacc(self._g(run, run.program.pops[p].group, keep), _dot(d[:, :first], av[:, :first]))
            _acc(a, da)
            _acc(y, dy)
        run.tape.append(back)
        return out

    def normalize(self, run, x, p, eps):
        """N (Sec. 3.4) over the batch axis, ``gain[c] xhat + shift[c]``."""
        g = run.program.pops[p].group
        gain, shift = self._g(run, g, "norm_gain"), self._g(run, g, "norm_shift")
        xv = x.val
        centred = xv - xv.mean(axis=2, keepdims=True)
        inv = 1.0 / np.sqrt((centred * centred).mean(axis=2, keepdims=True) + eps)
        xh = centred * inv
        gv = gain.val[None, :, None, None].astype(xv.dtype)
        out = Var(gv * xh + shift.val[None, :, None, None].astype(xv.dtype))

        def back():
            if out.grad is None:
                return
            d = out.grad
            _gacc(gain, (d * xh).sum(axis=(0, 2, 3)))
            _gacc(shift, d.sum(axis=(0, 2, 3)))
            if x.tracked:
                dxh = d * gv
                _acc(x, inv * (dxh - dxh.mean(axis=2, keepdims=True)
                               - xh * (dxh * xh).mean(axis=2, keepdims=True)))
        run.tape.append(back)
        return out

    def activate(self, run, x, names):
        """sigma per state; the adjoint through the hand-written derivative of each name."""
        from blursim.vocab.activations import ACTIVATIONS

        xv = x.val
        if all(n == names[0] for n in names):
            yv = _activation(names[0], xv)
        else:
            yv = np.empty_like(xv)
            for c, n in enumerate(names):
                yv[:, c] = _activation(n, xv[:, c])
        out = Var(yv)
        if all(n in _FROM_Y for n in names):
            xv = None  # the derivative needs sigma(x) only: x need not be kept

        def back():
            if out.grad is None or not x.tracked:
                return
            d = out.grad
            if all(n == names[0] for n in names) and names[0] in IN_PLACE_DERIVATIVES:
                dx = IN_PLACE_DERIVATIVES[names[0]](yv, d)
            elif all(n == names[0] for n in names):
                der = ACTIVATION_DERIVATIVES[names[0]](xv, yv)
                dx = d if der is None else d * der
            else:
                dx = np.empty_like(d)
                for c, n in enumerate(names):
                    der = ACTIVATION_DERIVATIVES[n](None if xv is None else xv[:, c], yv[:, c])
                    dx[:, c] = d[:, c] if der is None else d[:, c] * der
            _acc(x, dx, shared=dx is d)
        run.tape.append(back)
        return out

    def set_state(self, run, p, x):
        run.a[p] = x

    def feedback(self, run, o, kind):
        """Sec. 3.3 (the built-in kinds): states 1.. of output ``o`` from the targets."""
        program = run.program
        a = run.a[o]
        coded, onehot = step.targets(program, run.y, program.pops[o], np, a.dtype)
        name = _builtin_feedback(kind)
        av = a.val
        new = av.copy()
        s = None
        if name == "target":
            new[:, 1] = coded
            new[:, 2:] = 0
        elif name == "error_mse":
            new[:, 1] = (coded - av[:, 0]) * av[:, 1]
        else:  # error_softmax
            z = av[:, 0]
            if z.shape[-1] == 1:
                s = 0.5 * (1.0 + np.tanh(0.5 * z))
            else:
                e = np.exp(z - z.max(axis=-1, keepdims=True))
                s = e / e.sum(axis=-1, keepdims=True)
            new[:, 1] = onehot - s
        out = Var(new)

        def back():
            if out.grad is None or not a.tracked:
                return
            d = out.grad
            da = d.copy()
            if name == "target":
                da[:, 1:] = 0
            elif name == "error_mse":
                da[:, 0] -= d[:, 1] * av[:, 1]
                da[:, 1] = d[:, 1] * (coded - av[:, 0])
            else:
                d1 = d[:, 1]
                if av.shape[-1] == 1:
                    da[:, 0] -= d1 * s * (1 - s)
                else:
                    da[:, 0] -= s * (d1 - (d1 * s).sum(axis=-1, keepdims=True))
                da[:, 1] = 0
            _acc(a, da)
        run.tape.append(back)
        run.a[o] = out

    def record(self, run, phase):
        return None

    def record_hebbian(self, run, job):
        return None

    def run_jobs(self, run, jobs, fn):
        """Every synapse job; a job whose result the loss never reads (:func:`dead_job`) records
        nothing on the tape (computed: the finiteness check reads it; never differentiated)."""
        for job in jobs:
            if dead_job(run.program, job):
                tape, run.tape = run.tape, _NO_TAPE
                try:
                    fn(job)
                finally:
                    run.tape = tape
            else:
                fn(job)
        return tuple(run.newW), tuple(run.newV)

    # ....................................................... eq. (7)-(8)
    @staticmethod
    def _stored(syn, job) -> Var:
        return (syn[0] if job.which == "W" else syn[1])[job.q]

    def column_sq(self, run, job, syn):
        """``sum_src E^2`` per destination neuron and channel, ``(R, k, 1, n_dst)``."""
        E = self._stored(syn, job)
        Ev = E.val
        out = Var(np.sum(Ev * Ev, axis=2, keepdims=True))

        def back():
            if out.grad is not None:
                _acc(E, 2 * Ev * out.grad)
        run.tape.append(back)
        return out

    def activity_sq(self, run, job):
        """``rho_b Q_b^2``, ``Q = mu~ a_dst``: ``(R, k, 1, n_dst)``."""
        Q = self._mix(run, self._g(run, job.group, "mu_tilde"), run.a[job.dst])
        if Q.zero:
            return Var(None, tracked=False, zero=True, shape=Q.shape[:2] + (1,) + Q.shape[3:], dtype=Q.dtype)
        Qv = Q.val
        scale = 1.0 / Qv.shape[2] if job.batch_mean else 1.0
        out = Var(np.sum(Qv * Qv, axis=2, keepdims=True) * scale)

        def back():
            if out.grad is not None:
                _acc(Q, (2 * scale) * Qv * out.grad)
        run.tape.append(back)
        return out

    def oja_keep(self, run, job, n2):
        """``D = f~ - |eta~| |alpha| n2`` (eq. 8)."""
        ft, et, al = (self._g(run, job.group, f) for f in ("f_tilde", "eta_tilde", "oja_alpha"))
        coef = abs(float(et.val)) * abs(float(al.val))
        n2v = np.zeros(n2.shape, dtype=n2.dtype) if n2.zero else n2.val
        out = Var((ft.val - coef * n2v).astype(n2v.dtype))

        def back():
            if out.grad is None:
                return
            d = out.grad
            _gacc(ft, float(d.sum(dtype=np.float64)))
            dn = _dot(d, n2v)
            _gacc(et, -_sign(et.val) * abs(float(al.val)) * dn)
            _gacc(al, -_sign(al.val) * abs(float(et.val)) * dn)
            if not n2.zero:
                _acc(n2, (-coef) * d)
        run.tape.append(back)
        return out

    def hebbian_update(self, run, job, syn, keep):
        """``E <- M (D E + eta~ H)`` (eq. 7), ``H^c = rho sum_b P_b^c (x) Q_b^c``, ``P = nu~^T a_src`` (bias
        row: ``sum_e nu~[e, c]``), ``Q = mu~ a_dst``, with the channel reduction of shared channels.

        One fused operation: ``H`` is never kept. Its adjoint ``eta~ dE`` enters the products
        directly: ``dQ = eta~ rho P dE`` and ``dP = eta~ rho Q dE^T`` (one ``gemm`` each; for an
        input source only the first: ``P^c = nu~[0, c] x``), and ``d eta~ = <dE, H> = rho <Q, P dE>``
        reuses the first."""
        g = job.group
        E = self._stored(syn, job)
        ft, et = self._g(run, g, "f_tilde"), self._g(run, g, "eta_tilde")
        nt, mt = self._g(run, g, "nu_tilde"), self._g(run, g, "mu_tilde")
        src = run.a[job.src]
        mirror = job.hebbian == "mirror"  # Kolen-Pollack: P = mu~ a_src, Q = nu~^T a_dst (W's term, transposed)
        Q = self._mix(run, nt, run.a[job.dst], transpose=True) if mirror else self._mix(run, mt, run.a[job.dst])
        Ev = E.val
        R, k, rows, n_dst = Ev.shape
        n_src = rows - (1 if job.bias else 0)
        scale = 1.0 / src.shape[2] if job.batch_mean else 1.0
        D = ft if keep is None else keep
        Dv = D.val
        etv = et.val
        P = None
        scalar_d = keep is None
        live = not (Q.zero or (src.zero and not job.bias))
        # new = D E + eta~ H: with a scalar D, E is copied in and the product added by BLAS's beta
        new = Ev.copy() if scalar_d else np.empty(Ev.shape, dtype=Ev.dtype)
        beta = float(Dv) if scalar_d else 0.0
        if live:
            Qv = Q.val
            pb = nt.val.sum(axis=0)  # the bias unit's P^c = sum_e nu~[e, c]
            if job.bias:
                qsum = Qv.sum(axis=2)  # (R, k, n_dst)
                bias_row = (etv * scale) * pb[None, :, None] * qsum
                if scalar_d:
                    new[:, :, n_src] *= Dv
                    new[:, :, n_src] += bias_row
                else:
                    new[:, :, n_src] = bias_row
            top = new[:, :, :n_src]
            if src.zero:
                if scalar_d:
                    top *= Dv
                else:
                    top[...] = 0
            elif src.x is not None and not mirror:  # input: P^c = nu~[0, c] x, the genome's factor folded into x
                xs = src.x[None] * (etv * scale * nt.val[0]).astype(Ev.dtype)[:, None, None]  # (k, B, n_src)
                _gemm(xs.swapaxes(-1, -2)[None], Qv, top, 1.0, beta)
            else:
                P = self._mix(run, mt, src) if mirror else self._mix(run, nt, src, transpose=True)
                _gemm(P.val.swapaxes(-1, -2), Qv, top, float(etv * scale), beta)
        elif scalar_d:
            new *= Dv
        else:
            new[...] = 0
        if not scalar_d:
            new += Dv * Ev
        new = self._channels(job, new)
        mask = self._mask(run, job, new.dtype)
        if mask is not None:
            new *= mask
        out = Var(new)

        def back():
            if out.grad is None:
                return
            d = out.grad if mask is None else out.grad * mask
            d = self._channels_adjoint(job, d)
            if keep is None:
                _gacc(ft, _dot(d, Ev))
            else:
                _acc(keep, np.sum(d * Ev, axis=2, keepdims=True))
            _acc(E, Dv * d)
            if not live:
                return
            et_s = float(etv)
            dHn = d[:, :, :n_src]
            g = np.zeros((k, k))
            d_eta = 0.0
            dQ = None
            if job.bias:
                db = d[:, :, n_src] * scale  # (R, k, n_dst)
                for c in range(k):
                    t = _dot(db[:, c], qsum[:, c])
                    d_eta += float(pb[c]) * t
                    g[:, c] += et_s * t
                dQ = ((etv * pb)[None, :, None] * db)[:, :, None, :]  # broadcast over the batch
            if src.zero:
                dQ = None if dQ is None else np.broadcast_to(dQ, Qv.shape).copy()
            elif src.x is not None and not mirror:
                G = _mm(src.x, dHn)  # (R, k, B, n_dst): x dE^c
                for c in range(k):
                    t = scale * _dot(Qv[:, c], G[:, c])
                    d_eta += float(nt.val[0, c]) * t
                    g[0, c] += et_s * t
                G *= (etv * scale * nt.val[0])[None, :, None, None]
                if dQ is not None:
                    G += dQ
                dQ = G
            else:
                Pd = _mm(P.val, dHn)  # (R, k, B, n_dst): P dE^c
                d_eta += scale * _dot(Qv, Pd)
                Pd *= etv * scale
                if dQ is not None:
                    Pd += dQ
                dQ = Pd
                if P.tracked:
                    dP = _mm(Qv, dHn.swapaxes(-1, -2))
                    dP *= etv * scale
                    _acc(P, dP)
            _gacc(et, d_eta)
            _gacc(nt, g)
            if dQ is not None:
                _acc(Q, dQ)
        run.tape.append(back)
        (run.newW if job.which == "W" else run.newV)[job.q] = out

    @staticmethod
    def _channels(job, E):
        if job.channels == "first":
            return np.broadcast_to(E[:, :1], E.shape).copy()
        if job.channels == "mean":
            return np.broadcast_to(E.mean(axis=1, keepdims=True), E.shape).copy()
        return E

    @staticmethod
    def _channels_adjoint(job, d):
        if job.channels == "first":
            out = np.zeros_like(d)
            out[:, 0] = d.sum(axis=1)
            return out
        if job.channels == "mean":
            return np.broadcast_to(d.mean(axis=1, keepdims=True), d.shape)
        return d

    @staticmethod
    def _mask(run, job, dtype):
        """The job's mask as ``dtype`` (``W``'s with the bias row's ones, ``V``'s transposed), or
        ``None``; made once per projection, direction and dtype."""
        q = run.program.projs[job.q]
        if q.mask is None:
            return None
        key = (id(q.mask), job.which, np.dtype(dtype).str)
        hit = _MASKS.get(key)
        if hit is None or hit[0] is not q.mask:
            from blursim.sim.reference import forward_mask

            mask = forward_mask(q) if job.which == "W" else q.mask.T
            if len(_MASKS) > 256:
                _MASKS.clear()
            hit = _MASKS[key] = (q.mask, np.ascontiguousarray(mask, dtype=dtype))
        return hit[1]

    def saturate(self, run, job, syn):
        """``E <- s tanh(E / s)``, ``s = max(|saturation|, 1e-12)`` (Sec. 3.4)."""
        new = run.newW if job.which == "W" else run.newV
        E = new[job.q]
        sat = self._g(run, job.group, "saturation")
        a = abs(float(sat.val))
        s = a if a > 1e-12 else 1e-12
        Ev = E.val
        u = Ev / np.asarray(s, dtype=Ev.dtype)
        t = np.tanh(u)
        out = Var((s * t).astype(Ev.dtype, copy=False))

        def back():
            if out.grad is None:
                return
            d = out.grad
            sech2 = 1 - t * t
            if a > 1e-12:
                _gacc(sat, _sign(sat.val) * _dot(d, t - u * sech2))
            _acc(E, d * sech2)
        run.tape.append(back)
        new[job.q] = out


def _activation(name: str, x):
    """``sigma(x)`` as a new array: the in-place form of :data:`blursim.vocab.activations.INPLACE`
    where there is one (the fast engine's operations: the same values), else the registered one."""
    from blursim.vocab.activations import ACTIVATIONS, INPLACE

    fn = INPLACE.get(name)
    if fn is not None:
        y = x.copy()
        fn(y, np)
        return y
    return np.asarray(ACTIVATIONS.get(name)(x, np), dtype=x.dtype)


_MALLOC_TUNED = [False]


def tune_malloc() -> bool:
    """Keep freed memory in the process for reuse (glibc ``mallopt``: no ``mmap`` below 32 MiB, no
    trimming below 256 MiB), once per process; ``False`` where it was not done.

    Why: the tape allocates a few MiB of new arrays per step; with glibc's defaults, arrays of a
    few hundred KiB come from fresh ``mmap`` pages that fault on first touch and go back to the
    system when freed, so every meta-gradient pays its page faults again (measured on the
    project's 2-vCPU machine: the paper-es meta-gradient through 10 steps took 65 ms without
    and 46 ms with this; docs/benchmarks.md). The cost: a process that frees memory keeps up to
    256 MiB of it. ``BLURSIM_MALLOC=default`` leaves glibc's settings alone; on other C
    libraries nothing is done.
    """
    import os

    if _MALLOC_TUNED[0] or os.environ.get("BLURSIM_MALLOC", "").strip().lower() == "default":
        return _MALLOC_TUNED[0]
    _MALLOC_TUNED[0] = True
    try:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
        if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):
            return False
        M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
        return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20) and mallopt(M_TRIM_THRESHOLD, 256 << 20)
                    and mallopt(M_TOP_PAD, 16 << 20))
    except OSError:
        return False


_BACKEND: list = []
_MASKS: dict = {}


def _mm(A, B):
    """``A @ B`` (stacked, leading axes broadcast) as a new array, through :func:`_gemm`."""
    la, lb = A.shape[:-2], B.shape[:-2]
    lead = la if la == lb else np.broadcast_shapes(la, lb)
    C = np.empty(lead + (A.shape[-2], B.shape[-1]), dtype=A.dtype if A.dtype == B.dtype else np.result_type(A, B))
    _gemm(A, B, C, 1.0, 0.0)
    return C


def _backend():
    """The fast engine's NumPy backend (one per process): its ``gemm`` and its thread policy."""
    if not _BACKEND:
        from blursim.backend.numpy_backend import NumpyBackend

        _BACKEND.append(NumpyBackend("float64"))
    return _BACKEND[0]


#: Below this many multiply-adds a product is not worth the binding's planning (NumPy's ``matmul``).
SMALL_GEMM = 32**3


def _gemm(A, B, C, alpha: float, beta: float) -> None:
    """``C <- alpha A @ B + beta C`` (stacked): BLAS ``gemm`` through the fast engine's binding
    (:mod:`blursim.backend._cblas`), or NumPy's ``matmul`` for small products and without it."""
    if C.shape[-2] * C.shape[-1] * A.shape[-1] < SMALL_GEMM:
        P = np.matmul(A, B)
        if alpha != 1.0:
            P *= alpha
        if beta == 0.0:
            C[...] = P
        else:
            if beta != 1.0:
                C *= beta
            C += P
        return
    _backend().gemm(A, B, C, alpha, beta)


class _NoTape:
    """A tape that records nothing (the jobs of :func:`dead_job`)."""

    @staticmethod
    def append(fn) -> None:
        return None


_NO_TAPE = _NoTape()


def dead_job(program, job) -> bool:
    """Whether the meta-loss never reads what ``job`` computes: the backward synapses ``V`` of a
    projection leaving an input population (eq. 6 runs on no input population, and nothing else
    reads ``V``)."""
    return job.which == "V" and program.pops[job.dst].role == "input"


KERNELS = AdjointKernels()


# ------------------------------------------------------------------ the meta-loss
def _channel_major(a, dtype) -> np.ndarray:
    """A reference-layout synapse array of one species ``(1, R, n_src, n_dst, k)`` as
    ``(R, k, n_src, n_dst)`` (a copy in ``dtype``)."""
    return np.ascontiguousarray(np.moveaxis(np.asarray(a)[0], -1, 1), dtype=dtype)


def _copy_inputs(W, V, kept):
    """Fresh values equal to a step's inputs (the recomputation's leaves)."""
    W = [Var(w.val) for w in W]
    V = [None if v is None else Var(v.val) for v in V]
    if kept is not None:
        kept = [None if (a is None or not a.tracked) else Var(a.val) for a in kept]
    return W, V, kept


def _reverse_steps(program, G, saved, outputs, xs, ys, R, dt):
    """The reverse pass with recomputation: step ``t`` again from its saved inputs on a tape of its
    own, its outputs seeded with the adjoints of step ``t + 1``'s inputs (``outputs``: the last
    step's, their adjoints set by the query batches); returns step 0's input synapses ``(W, V)``
    with their adjoints."""
    outW, outV, outKept = outputs
    for t in range(len(saved) - 1, -1, -1):
        W, V, kept = _copy_inputs(*saved[t])
        tape: list = []
        run = Run(program, G, W, V, kept, np.asarray(xs[t]), ys[t], tape, R, dt)
        newW, newV = step.train_step(KERNELS, run, program)
        for new, out in zip(list(newW) + list(newV), list(outW) + list(outV)):
            if new is not None and out is not None and out.grad is not None:
                _acc(new, out.grad, shared=True)
        if outKept is not None:
            for new, out in zip(run.a, outKept):
                if new is not None and out is not None and out.grad is not None:
                    _acc(new, out.grad, shared=True)
        while tape:
            tape.pop()()
        outW, outV, outKept = W, V, kept
    return outW, outV


#: Above this estimate of the tape's memory (every step's arrays kept for the reverse pass),
#: :func:`meta_loss_and_grad` keeps only each step's input states and recomputes the step's tape
#: during the reverse pass (one more forward pass; the same numbers).
REMAT_BYTES = 1 << 30


def tape_bytes(program, R: int, B: int, T: int, dtype) -> int:
    """An estimate of the tape's memory through ``T`` steps: four times the step's states (synapses
    and neuron states) per step -- the paper-es workload measured 3.0x (6.5 MiB per step,
    tracemalloc, float32)."""
    k, it = int(program.k), np.dtype(dtype).itemsize
    syn = sum((q.n_pre + int(q.bias)) * q.n_post * 2 for q in program.projs)
    neurons = sum(p.size for p in program.pops if p.role != "input") * B
    return int(4 * T * R * k * it * (syn + neurons))


def meta_loss_and_grad(program, genome: dict, s0, xs, ys, xq, yq, *, kind: str = "cross_entropy",
                       dtype="float32", draws=None, grad: bool = True, remat: bool | None = None):
    """The meta-loss of one task, and its gradient, on NumPy: :func:`_meta_loss_and_grad` with the
    fast engine's thread policy -- BLAS single-threaded, a large product's slices (channels and
    replicas) split over BLAS's own threads while that is faster than one thread
    (:meth:`blursim.backend.numpy_backend.NumpyBackend.parallel_gemm`). Multi-threaded BLAS calls
    were 20-40x slower than single-threaded ones on the project's 2-vCPU machine while another
    process ran (paper-es, T = 10: 0.98-2.3 s against 57 ms)."""
    be = _backend()
    with be.parallel_gemm(None, be.workers), np.errstate(all="ignore"):
        return _meta_loss_and_grad(program, genome, s0, xs, ys, xq, yq, kind=kind, dtype=dtype, draws=draws,
                                   grad=grad, remat=remat)


def _meta_loss_and_grad(program, genome: dict, s0, xs, ys, xq, yq, *, kind: str = "cross_entropy",
                        dtype="float32", draws=None, grad: bool = True, remat: bool | None = None):
    """The meta-loss of one task, and its gradient, on NumPy (see the module docstring).

    ``genome``: ``{group: {field: array of the field's shape}}`` (one genome); ``s0``: the
    initial synapses (a :class:`~blursim.sim.reference.BlurState` of one species, reference
    layout: ``draws x init_scale`` as stored); ``xs (T, B, F)``, ``ys``: the training batches;
    ``xq (Q, B_q, F)``, ``yq``: the query batches (labels, or target vectors for
    ``kind = "mse"``); ``draws``: the unit draws when ``init_scale`` is differentiated (its
    adjoint is ``sum <dL/dW0, draws>``); ``remat``: keep only each step's inputs and recompute
    its tape in the reverse pass (default: when :func:`tape_bytes` exceeds :data:`REMAT_BYTES`).

    Returns ``(loss, grads, (accuracy, metric, finite))``: ``grads`` is ``{group: {field:
    float64 array}}`` (``None`` without ``grad``), ``metric`` the cross-entropy (or MSE) --
    the loss itself --, ``finite`` whether every logit and every synapse stayed finite.
    """
    from blursim.sim.metrics import logits_of, predicted_class, softmax_cross_entropy

    reason = unsupported(program)
    if reason is not None:
        raise NotImplementedError(reason)
    tune_malloc()
    dt = np.dtype(dtype)
    G = {g: {f: Var(np.asarray(v, dtype=dt)) for f, v in fields.items()} for g, fields in genome.items()}
    R = np.asarray(s0.W[0]).shape[1]
    W = [Var(_channel_major(w, dt)) for w in s0.W]
    V = [None if v is None else Var(_channel_major(v, dt)) for v in s0.V]
    W0, V0 = list(W), list(V)
    T = len(xs)
    if remat is None:
        remat = bool(grad and T and tape_bytes(program, R, np.shape(xs)[1], T, dt) > REMAT_BYTES)
    tape = [] if grad and not remat else _NO_TAPE
    K = KERNELS
    keeps = step.keeps_states(program)
    kept = None
    saved = []  # remat: each step's inputs
    for t in range(T):
        if remat:
            saved.append((W, V, kept))
        run = Run(program, G, W, V, kept, np.asarray(xs[t]), ys[t], tape, R, dt)
        newW, newV = step.train_step(K, run, program)
        W, V = list(newW), list(newV)
        kept = run.a if keeps else None
    if grad and remat:
        tape = []  # the query batches' tape
    n_q, n_out = len(xq), len(program.outputs)
    total, acc = 0.0, 0.0
    finite = all(np.isfinite(w.val).all() for w in W) and all(np.isfinite(v.val).all() for v in V if v is not None)
    for b in range(n_q):
        run = Run(program, G, W, V, None, np.asarray(xq[b]), None, tape, R, dt)
        step.evaluate(K, run, program)
        for o in program.outputs:
            a = run.a[o]
            out = a.val[:, 0]  # (R, B, n)
            finite = finite and bool(np.isfinite(out).all())
            weight = 1.0 / (n_q * n_out * R * out.shape[1])
            if kind == "mse":
                y = np.asarray(yq[b], dtype=dt)
                diff = out - y
                per = (diff * diff).mean(axis=(-1, -2))
                total += float(per.mean()) / (n_q * n_out)
                dout = (2.0 / out.shape[2]) * diff * weight
            else:
                y = np.asarray(yq[b], dtype=np.int64)
                z = logits_of(out)
                per = softmax_cross_entropy(z, y)  # (R, B)
                total += float(per.mean()) / (n_q * n_out)
                acc += float((predicted_class(z) == y).mean()) / (n_q * n_out)
                zf = z - z.max(axis=-1, keepdims=True)
                p = np.exp(zf)
                p /= p.sum(axis=-1, keepdims=True)
                onehot = np.zeros_like(p)
                np.put_along_axis(onehot, y[None, :, None].repeat(p.shape[0], 0), 1.0, axis=-1)
                dz = (p - onehot) * weight
                dout = dz[..., 1:] if out.shape[-1] == 1 else dz
            if grad:
                d = np.zeros(a.shape, dtype=dt)
                d[:, 0] = dout
                _acc(a, d)
    if kind == "mse":
        acc = float("nan")
    grads = None
    if grad:
        while tape:  # each closure is dropped once run: its arrays are freed as the pass goes back
            tape.pop()()
        if remat:
            W0, V0 = _reverse_steps(program, G, saved, (W, V, kept), xs, ys, R, dt)
        grads = {g: {f: (np.zeros(v.shape) if v.grad is None else np.asarray(v.grad, dtype=np.float64).reshape(v.shape))
                     for f, v in fields.items()} for g, fields in G.items()}
        if draws is not None:  # W0 = draws x init_scale: d init_scale = sum <dL/dW0, draws>
            for q, w0, d in zip(program.projs, W0, draws.W):
                if w0.grad is not None:
                    grads[q.group]["init_scale"] = grads[q.group]["init_scale"] + _dot(w0.grad, _channel_major(d, np.float64))
            for q, v0, d in zip(program.projs, V0, draws.V):
                if v0 is not None and v0.grad is not None:
                    grads[q.group]["init_scale"] = grads[q.group]["init_scale"] + _dot(v0.grad, _channel_major(d, np.float64))
    return total, grads, (acc, total, finite)
