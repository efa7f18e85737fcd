"""The fast kernel set: the primitives of :mod:`blursim.sim.kernels` on the Simulator's storage.

States are channel-major ``(c, R, k, B, n)`` for a chunk of ``c`` species and
``R`` replicas; synapses ``(c, R, kw, ...)`` in the storage layout of their
operator (:mod:`blursim.sim.operators`: dense ``(n_src, n_dst)`` or block
tiles). The orchestrator (:mod:`blursim.sim.step`) says what to compute; this
module says how, without changing it (docs/benchmarks.md):

- every scalar of the genome is folded into the ``alpha``/``beta`` of a
  matrix product or into a ``k x k`` mixing matrix, never applied as a pass
  over a large array (``eta z`` is ``alpha = eta``, ``f~ W + eta~ H`` is one
  ``gemm`` with ``beta = f~``, ``f a + eta y`` one ``gemm`` into ``a``);
- input populations hold only state 0 (the data), shared by every species,
  so their mixed states ``(nu x)^c = nu[c, 0] x`` are never materialised;
- activations run in place for real dtypes (complex128 uses the registered,
  complex-step-safe functions);
- mixed states ``M a_p`` are computed once per population and workspace
  (:class:`StepRun`), buffers come from the executor's per-thread workspaces,
  and the synapse updates run as independent jobs on the executor's threads;
- a projection from an input whose ``W`` and ``V`` both learn by eq. (7)
  shares one product per state: both Hebbian terms are mixtures of
  ``G^d = x^T a_post^d`` (:meth:`FastKernels._shared_hebbian`), so a step
  computes ``k`` products of ``x`` with the postsynaptic states instead of
  ``2k`` (docs/benchmarks.md, "Larger products").

A Hebbian kernel of a rule variant (:data:`blursim.sim.step.HEBBIAN_KERNELS`)
without a fast kernel here runs as written, on this chunk's arrays viewed in
the reference layout (:meth:`FastKernels._reference_hebbian`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from blursim.sim.coefficients import ChunkCoefficients
from blursim.sim.kernels import PRIMITIVES, KernelSet
from blursim.vocab import ACTIVATIONS
from blursim.vocab.activations import INPLACE


#: The environment variable that turns the shared input products on by default (``1``).
SHARED_PRODUCTS_ENV = "BLURSIM_SHARED_PRODUCTS"


def shared_products_default() -> bool:
    """Whether :attr:`FastKernels.share_input_products` starts on: ``BLURSIM_SHARED_PRODUCTS=1``
    (read at import). **Decision** (issue 25 item 5): off by default, so that the NumPy engine's
    trajectories stay bit-identical to those every reproduction on docs/results.md was made with;
    the shared products round differently (docs/benchmarks.md, "Larger products")."""
    return os.environ.get(SHARED_PRODUCTS_ENV, "0").strip().lower() in ("1", "on", "true", "yes")


class FastKernels(KernelSet):
    """The primitives on a :class:`~blursim.sim.Simulator`'s operators, backend and executor."""

    name = "fast"
    #: Hebbian kernels this set computes itself; any other registered one runs as reference code.
    fast_hebbian = ("eq7",)
    #: Whether a projection from an input computes its ``W`` and ``V`` Hebbian terms from shared
    #: products (:meth:`_shared_hebbian`); ``False`` (the default, see
    #: :func:`shared_products_default`): one product per update (the same sums, rounded
    #: differently; ``tools/shared_products_ab.py`` times both).
    share_input_products = shared_products_default()

    def __init__(self, sim) -> None:
        self.sim = sim
        self.program = sim.program
        self.k = sim.k
        self.kw = sim.kw
        self.xp = sim.xp
        self.backend = sim.backend
        self.ops, self.vops = sim.ops, sim.vops
        self._real = np.dtype(self.backend.dtype).kind != "c"
        self._is_input = [p.role == "input" for p in self.program.pops]
        self._fns: dict[tuple, list] = {}
        self._shared_mats: dict[tuple, tuple] = {}

    def bind(self, sim) -> "FastKernels":
        """This set on ``sim``'s operators and executor, with the same replaced primitives."""
        if sim is self.sim:
            return self
        new = FastKernels(sim)
        new.__dict__.update({n: v for n, v in self.__dict__.items() if n in PRIMITIVES})
        new.name = self.name
        new.share_input_products = self.share_input_products
        return new

    # ------------------------------------------------------------ synapses
    def synapses(self, run):
        """The chunk's views ``(W, b, V)`` of the stored synapses."""
        st, ch = run.st, run.ch
        sl = (slice(ch.s0, ch.s1), slice(ch.r0, ch.r1))
        return ([w[sl] for w in st.W], [None if x is None else x[sl] for x in st.b],
                [None if v is None else v[sl] for v in st.V])

    def normalize_synapses(self, run, syn, eps, copy):
        """App. C.6: ``W' = rescale * W / sqrt(sum_i W^2 (+ b^2) + eps)`` per postsynaptic neuron and
        channel (``V`` likewise per presynaptic neuron); in place unless ``copy``."""
        xp, cf = self.xp, run.cf
        W, b, V = syn
        We, be, Ve = [], [], []
        for qi, q in enumerate(self.program.projs):
            resc = cf.proj(qi).rescale.b(4)
            n2 = self.ops[qi].colsq(W[qi])
            if b[qi] is not None:
                n2 = n2 + b[qi] * b[qi]
            inv = resc / xp.sqrt(n2 + eps)
            w = W[qi].copy() if copy else W[qi]
            self.ops[qi].scale_dst(w, inv)
            We.append(w)
            if b[qi] is None:
                be.append(None)
            else:
                bb = b[qi].copy() if copy else b[qi]
                bb *= inv
                be.append(bb)
            if V[qi] is None:
                Ve.append(None)
            else:
                nv = self.vops[qi].colsq(V[qi])
                v = V[qi].copy() if copy else V[qi]
                self.vops[qi].scale_dst(v, resc / xp.sqrt(nv + eps))
                Ve.append(v)
        return We, be, Ve

    # -------------------------------------------------------------- states
    def start(self, run, keep) -> None:
        """Reset states are implicit (a population absent from ``run.a`` is zero); kept states
        (``keep``) are copied into this thread's buffers. Inputs are in ``run.inputs``."""
        if not keep:
            return
        for p in run.kept or ():
            buf = run.ws.get(("a0", p), run.shape(p))
            buf[...] = run.st.a[p][run.ch.s0:run.ch.s1, run.ch.r0:run.ch.r1]
            run.a[p] = buf

    def set_state(self, run, p, x) -> None:
        run.set(p, x)

    def record(self, run, phase) -> None:
        if run.tap is not None:
            run.tap.states(phase, run.ch.s0, run.ch.r0, run.state)

    def feedback(self, run, o, kind) -> None:
        """States ``1..k-1`` of output ``o`` from its coded targets (state 0 is never changed)."""
        coded, onehot = run.targets[o]
        a = run.state(o)
        old = [a[:, :, c] for c in range(self.k)]
        new = kind(old, coded, onehot, self.xp)
        for c in range(1, self.k):
            if new[c] is not old[c]:
                a[:, :, c] = new[c]

    # ------------------------------------------------------------ eq. (5), (6)
    def drive(self, run, p, syn, direction, keep, rate, buffer):
        if direction == "forward":
            return self._forward_drive(run, p, syn, keep, rate, buffer)
        return self._backward_drive(run, p, syn, keep, rate, buffer)

    def _forward_drive(self, run, j, syn, keep, rate, buffer):
        """``keep a_j + rate z_j`` into a fresh buffer: ``rate`` folded into each product's
        ``alpha``; an input holds only state 0, so its ``(nu x)^c = nu[c, 0] x`` goes into
        ``alpha`` too; the bias unit's ``(nu 1)^c b_q`` is added once."""
        prog, cf = self.program, run.cf
        W, b, _ = syn
        p = prog.pops[j]
        if rate != "eta":
            raise ValueError(f"the fast forward drive folds eta into its products (eq. 5), got rate {rate!r}")
        z = run.ws.get(("z", j, buffer), run.shape(j))
        eta = cf.pop(j).eta
        beta = 0
        for qi in p.incoming:
            q = prog.projs[qi]
            X, alpha = self._fwd_operand(run, q, eta)
            if X is None:  # presynaptic states are all zero
                continue
            self.ops[qi].apply(X, W[qi], z, alpha, beta)
            beta = 1
        bias = self._bias_total(run, j, b)
        if bias is not None:
            if beta:
                z += bias
            else:
                z[...] = bias
            beta = 1
        if keep is not None and j in run.a:  # + f a_j (zero after a reset: skipped)
            fa = run.a[j] * getattr(cf.pop(j), keep).b(5)
            if beta:
                z += fa
            else:
                z[...] = fa
            beta = 1
        if beta == 0:
            z.fill(0)
        return z

    def _fwd_operand(self, run, q, eta):
        """Presynaptic operand of eq. (5) and its gemm ``alpha``: ``(nu a_i)`` with ``eta`` folded in."""
        if self._is_input[q.pre]:  # (nu a)^c = nu[c, 0] x: scale the product, not x
            return run.inputs[q.pre]["x"], run.cf.proj(q.index).forward_input
        if q.pre not in run.a:
            return None, None
        return run.mix(q.pre, q.group, "nu"), eta

    def _bias_total(self, run, j, b):
        """``eta sum_q (nu 1)^c b_q`` for population ``j``: ``(c, R, k, 1, n)`` or ``None``."""
        total = None
        for qi in self.program.pops[j].incoming:
            if not self.program.projs[qi].bias:
                continue
            t = run.cf.proj(qi).forward_bias * b[qi][:, :, :, None, :]
            total = t if total is None else total + t
        return total

    def _backward_drive(self, run, i, syn, keep, rate, buffer):
        """``keep a_i + rate y_i``: one gemm per projection into ``a_i`` itself (``beta = keep``)
        unless ``buffer`` names a fresh one (synchronous sweeps; ``"y"``: ``y`` alone)."""
        W, _, V = syn
        coef = run.cf.pop(i)
        alpha = getattr(coef, rate)
        if keep is None:
            Y = run.ws.get(("y", i), run.shape(i))
            self._backward_products(run, i, W, V, Y, alpha, 0)
            return Y
        f = getattr(coef, keep)
        old = run.state(i)
        if buffer is None:  # in place: a_i <- f a_i + eta y_i
            self._backward_products(run, i, W, V, old, alpha, f)
            return old
        C = run.ws.get(("b", i, buffer), run.shape(i))
        self.xp.multiply(old, f.b(5), out=C)
        self._backward_products(run, i, W, V, C, alpha, 1)
        return C

    def _backward_products(self, run, i, W, V, C, alpha, beta) -> None:
        """``C <- beta C + alpha y_i`` with ``y_i = sum_q (V_q or W_q^T)(mu a_j)``."""
        prog = self.program
        for qi in prog.pops[i].outgoing:
            q = prog.projs[qi]
            if q.post not in run.a:
                continue
            m = run.mix(q.post, q.group, "mu")
            if V[qi] is None:
                self.ops[qi].apply_t(m, W[qi], C, alpha, beta)
            else:
                self.vops[qi].apply(m, V[qi], C, alpha, beta)
            beta = 1
        if beta == 0:
            C.fill(0)

    def gate(self, run, i, y, first, keep, buffer):
        """``[keep a^0 .. a^{first-1}, a^first y^first, ...]`` (``keep`` folded into ``y``
        already by the drive's rate), in place unless ``buffer``."""
        xp = self.xp
        old = run.state(i)
        C = old if buffer is None else run.ws.get(("b", i, buffer), run.shape(i))
        if first == 0:
            xp.multiply(old, y, out=C)
        else:
            xp.multiply(old[:, :, first:], y[:, :, first:], out=C[:, :, first:])
            xp.multiply(old[:, :, :first], getattr(run.cf.pop(i), keep).b(5), out=C[:, :, :first])
        return C

    def normalize(self, run, x, p, eps):
        """N of Sec. 3.4 in place: per neuron and state over the batch, then gain/shift from the genome."""
        xp, coef = self.xp, run.cf.pop(p)
        gain, shift = coef.norm_gain, coef.norm_shift
        x -= xp.mean(x, axis=-2, keepdims=True)
        var = xp.mean(x * x, axis=-2, keepdims=True)
        x *= gain / xp.sqrt(var + eps)
        x += shift
        return x

    def activate(self, run, x, names):
        """The per-state activations ``names`` on ``x (c, R, k, B, n)``, in place."""
        xp = self.xp
        names = tuple(names)
        fns = self._fns.get(names)
        if fns is None:
            fns = self._fns[names] = [ACTIVATIONS.get(n) for n in names]
        if all(n == names[0] for n in names):
            fast = INPLACE.get(names[0]) if self._real else None
            if fast is not None:
                fast(x, xp)
            else:
                x[...] = fns[0](x, xp)
            return x
        for c, fn in enumerate(fns):
            xc = x[:, :, c]
            fast = INPLACE.get(names[c]) if self._real else None
            if fast is not None:
                fast(xc, xp)
            else:
                xc[...] = fn(xc, xp)
        return x

    # ---------------------------------------------------- eq. (7), (8)
    def _op(self, job):
        return self.ops[job.q] if job.which == "W" else self.vops[job.q]

    @staticmethod
    def _arrays(job, syn):
        W, b, V = syn
        return (W[job.q], b[job.q]) if job.which == "W" else (V[job.q], None)

    def run_jobs(self, run, jobs, fn) -> None:
        """The synapse jobs on the executor: independent, each preparing its own operands (mixed
        states are cached per workspace, i.e. per thread); jobs reading the same mixed states are
        best run by one thread (``needs``)."""
        if any(job.channels != "all" for job in jobs):
            for i in self.program.inputs:  # shared cache, filled before any job runs
                self._tiled(run.inputs[i])
        run.shared = self.shared_projections(jobs)
        work = []
        for job in jobs:
            if job.q in run.shared:  # W and V read the same G^d (_shared_hebbian)
                needs = {(self.program.projs[job.q].post, "xh", job.q)}
            else:
                needs = {(job.dst, job.group, "mu_tilde")} if not self._is_input[job.dst] else set()
                if not self._is_input[job.src]:
                    needs.add((job.src, job.group, "nu_tilde_t"))
            work.append((self._op(job).stored, needs, lambda job=job: fn(job)))
        self.sim.executor.run_jobs(work)

    def shared_projections(self, jobs) -> frozenset:
        """Projections whose ``W`` and ``V`` Hebbian terms come from one product per state
        (:meth:`_shared_hebbian`): from an input, both updated by eq. (7) itself with one update
        per channel, both stored dense, on a real dtype whose backend transposes with BLAS."""
        if not (self.share_input_products and self._real and getattr(self.backend, "fast_transpose", False)):
            return frozenset()
        seen: dict[int, set] = {}
        for job in jobs:
            if job.hebbian == "eq7" and job.channels == "all" and self._op(job).kind == "dense":
                seen.setdefault(job.q, set()).add(job.which)
        return frozenset(q for q, sides in seen.items()
                         if sides == {"W", "V"} and self._is_input[self.program.projs[q].pre])

    def _shared_mat(self, run, job):
        """``(M, f)`` of :meth:`_shared_hebbian` (made once per chunk coefficients): the
        ``(c, 1, k, k)`` matrix ``M``, ``rate^c mu~[c, d]`` for ``W`` (its rate holds ``nu~[0, c]``)
        or ``rate^c nu~[d, c]`` for ``V`` (its rate holds ``mu~[c, 0]``), in float64 before the
        cast; and ``f~`` as a scale against the product's leading axes ``(c, R)``."""
        cf = run.cf
        key = (id(cf), job.q, job.which)
        hit = self._shared_mats.get(key)
        if hit is not None and hit[0] is cf:
            return hit[1]
        if len(self._shared_mats) > 256:
            self._shared_mats.clear()
        g = cf.h[job.group]
        mix = g["mu_tilde"] if job.which == "W" else np.swapaxes(g["nu_tilde"], 1, 2)
        rate = self._side(cf, job).rate.host  # (c, 1, k)
        M = self.backend.asarray(np.ascontiguousarray((rate[:, 0, :, None] * mix)[:, None]))
        f = self.backend.scale(cf.proj(job.q).f_tilde.host[..., 0])  # (c, 1)
        self._shared_mats[key] = (cf, (M, f))
        return M, f

    def _shared_hebbian(self, run, job, E, keep) -> bool:
        """Eq. (7) for ``W`` or ``V`` of a projection from an input, through the products the two
        share (``keep``: eq. (8)'s ``D``, applied to ``E`` already, else ``f~``). With ``x`` the
        input (its states above 0 are zero) and ``a`` the postsynaptic states, ``P = nu~^T a_src``
        and ``Q = mu~ a_dst`` give

            H_W^c = nu~[0, c] x^T (mu~ a)^c = sum_d nu~[0, c] mu~[c, d] G^d,   G^d = x^T a^d
            H_V^c = mu~[c, 0] (nu~^T a)^{cT} x = sum_d mu~[c, 0] nu~[d, c] G^{dT}

        so ``E <- f~ E + sum_d M[c, d] G^d`` is one ``gemm`` over the states (``K = k``) after
        ``k`` products ``G^d`` per genome and replica, shared by ``W`` and ``V`` (and ``G^T`` a
        BLAS copy), instead of ``k`` products for each. The sums are the same; their rounding is
        not (docs/benchmarks.md, "Larger products"). ``False`` (nothing done) if ``E`` cannot be
        viewed as ``(c, R, kw, n_src n_dst)``."""
        it = E.itemsize
        if E.strides[-1] != it or E.strides[-2] != it * E.shape[-1]:
            return False
        G = run.shared_product(self.program.projs[job.q], job.which == "V")
        sh = E.shape[:3] + (E.shape[3] * E.shape[4],)
        M, f = self._shared_mat(run, job)
        self.backend.gemm(M, G.reshape(sh), E.reshape(sh), 1.0, f if keep is None else 1)
        return True

    def _tiled(self, inp: dict):
        """Input data repeated over the ``k`` channels along the batch: ``(1, 1, 1, k B, n)``."""
        if inp["tiled"] is None:
            x = inp["x"]
            inp["tiled"] = self.xp.ascontiguousarray(
                self.xp.broadcast_to(x, (1, 1, self.k) + x.shape[-2:]).reshape((1, 1, 1, -1, x.shape[-1])))
        return inp["tiled"]

    @staticmethod
    def _side(cf, job):
        """The job's :class:`~blursim.sim.coefficients.SynapseCoefficients` (device view)."""
        proj = cf.proj(job.q)
        return proj.W if job.which == "W" else proj.V

    def _operands(self, run, job):
        """``(P, Q)`` of eq. (7): ``P = nu~^T a_src``, ``Q = mu~ a_dst`` as gemm operands (an
        input's coefficient is in the job's ``rate`` unless channels are shared)."""
        g = job.group
        shared, first = job.channels != "all", job.channels == "first"
        q = self.program.projs[job.q]
        if self._is_input[q.pre]:  # input states: x in state 0, zeros elsewhere (only a pre can be an input)
            x = run.inputs[q.pre]
            if shared:
                mixed = run.mix(q.post, g, "mu_tilde_in" if job.which == "W" else "nu_tilde_t_in")
                if first:
                    mixed, xs = mixed[:, :, 0:1], x["x"]
                else:
                    mixed, xs = run.flat(mixed), x["tiled"]
                return (xs, mixed) if job.which == "W" else (mixed, xs)
            if job.which == "W":  # (nu~^T x)^c = nu~[0, c] x
                return x["x"], run.mix(q.post, g, "mu_tilde")
            return run.mix(q.post, g, "nu_tilde_t"), x["x"]  # (mu~ x)^c = mu~[c, 0] x
        P, Q = run.mix(job.src, g, "nu_tilde_t"), run.mix(job.dst, g, "mu_tilde")
        if first:
            return P[:, :, 0:1], Q[:, :, 0:1]
        if shared:
            return run.flat(P), run.flat(Q)
        return P, Q

    def record_hebbian(self, run, job) -> None:
        """A monitor's ``H = rho_b P_b Q_b`` (the stored channel's), from the same operands."""
        if run.tap is None or not run.tap.wants_hebbian(job.q, job.which):
            return
        op, side = self._op(job), self._side(run.cf, job)
        q = self.program.projs[job.q]
        E, bq = self._arrays(job, self.synapses(run))
        if job.hebbian not in self.fast_hebbian:
            H, Hb = self._reference_hebbian(run, job, side.unit_plain)
            H = op.to_dense(op.from_dense(H))
        else:
            P, Q = self._operands(run, job)
            H = self.xp.zeros_like(E)
            op.hebbian_update(P, Q, H, side.unit, 0)
            H = op.to_dense(H)
            Hb = None if bq is None else self.xp.matmul(side.bias_unit, run.asum(q.post))
        run.tap.hebbian(job.q, job.which, run.ch.s0, run.ch.r0, H, Hb)

    def column_sq(self, run, job, syn):
        """``sum_src E^2`` per destination neuron (the bias row included): ``(c, R, kw, n_dst)``."""
        E, bq = self._arrays(job, syn)
        n2 = self._op(job).colsq(E)
        if bq is not None:
            n2 = n2 + bq * bq
        return n2

    def activity_sq(self, run, job):
        """``rho_b (Q_b)^2`` with ``Q = mu~ a_dst``, reduced to the stored channels: ``(c, R, kw, n)``."""
        p = job.dst
        if self._is_input[p]:  # Q^c = mu~[c, 0] x
            x = run.inputs[p]["x"][0, 0, 0]
            xsq = (x * x).sum(axis=0)
            n2 = run.cf.proj(job.q).mu0sq * xsq
        else:
            Q = run.mix(p, job.group, "mu_tilde")
            n2 = (Q * Q).sum(axis=-2)
        if job.batch_mean:
            n2 = n2 / run.B
        if job.channels != "all":
            n2 = n2[:, :, 0:1] if job.channels == "first" else n2.mean(axis=2, keepdims=True)
        return n2

    def oja_keep(self, run, job, n2):
        """``D = f~ - |eta~| |alpha| n2`` of eq. (8): ``(c, R, kw, n_dst)``."""
        proj = run.cf.proj(job.q)
        return proj.f_tilde4 - proj.oja * n2

    def hebbian_update(self, run, job, syn, keep) -> None:
        """``E <- D E + eta~ H`` as one gemm into ``E`` (``beta = f~`` when ``keep`` is ``None``,
        else ``E`` is scaled by ``D`` first); the bias row likewise, with ``P^c = sum_e nu~[e, c]``
        for the bias unit (all its states are 1), so its ``rho_b Q_b = mu~ (rho_b a_post)``."""
        E, bq = self._arrays(job, syn)
        op, proj, side = self._op(job), run.cf.proj(job.q), self._side(run.cf, job)
        q = self.program.projs[job.q]
        if keep is not None:
            op.scale_dst(E, keep)
        if job.hebbian not in self.fast_hebbian:  # a rule variant's reference kernel
            H, Hb = self._reference_hebbian(run, job, side.rate_plain)
            if keep is None:
                E *= proj.f_tilde.b(E.ndim)
            E += op.from_dense(H)
        else:
            bsum = run.asum(q.post) if bq is not None else None  # rho_b a_post, for the bias row
            if not (job.q in run.shared and self._shared_hebbian(run, job, E, keep)):
                P, Q = self._operands(run, job)
                op.hebbian_update(P, Q, E, side.rate, proj.f_tilde if keep is None else 1)
            if bq is None:
                return
            Hb = self.xp.matmul(side.bias, bsum)
        if bq is not None:
            bq *= proj.f_tilde.b(4) if keep is None else keep
            bq += Hb

    def saturate(self, run, job, syn) -> None:
        """``E <- s tanh(E / s)`` in place, ``s = |saturation|`` of the job's genome group (Sec. 3.4)."""
        E, bq = self._arrays(job, syn)
        s = run.cf.proj(job.q).saturation
        for X in (E, bq):
            if X is None:
                continue
            X /= s.b(X.ndim)
            self.xp.tanh(X, out=X)
            X *= s.b(X.ndim)

    # ----------------------------------------------- rule variants (reference kernels)
    def _reference_states(self, run, p):
        """Population ``p``'s states in the reference layout ``(c, R|1, B, n, k)`` (inputs: the
        data in state 0, zeros above)."""
        xp = self.xp
        if self._is_input[p]:
            x = run.inputs[p]["x"]  # (1, 1, 1, B, n)
            a = xp.zeros(x.shape[:2] + (self.k,) + x.shape[3:], dtype=x.dtype)
            a[:, :, 0] = x[:, :, 0]
            a = xp.moveaxis(a, 2, -1)
            return xp.broadcast_to(a, (run.c, run.R) + a.shape[2:])
        return xp.moveaxis(run.state(p), 2, -1)

    def _reference_hebbian(self, run, job, base):
        """A variant's Hebbian kernel run as written (:data:`blursim.sim.step.HEBBIAN_KERNELS`):
        ``base``-scaled (``(c, 1, 1, 1, 1)``: ``eta~ rho``, 1/k for the channel mean), reduced to the stored channels,
        as ``(H (c, R, kw, n_src, n_dst) dense, bias row (c, R, kw, n_dst) or None)``."""
        from blursim.sim.step import HEBBIAN_KERNELS

        xp, cf = self.xp, run.cf
        a_src, a_dst = self._reference_states(run, job.src), self._reference_states(run, job.dst)
        if job.bias:
            ones = xp.ones(a_src.shape[:3] + (1,) + a_src.shape[4:], dtype=a_src.dtype)
            a_src = xp.concatenate([a_src, ones], axis=3)
        g = {f: self.backend.asarray(v) for f, v in cf.h[job.group].items()}
        H = HEBBIAN_KERNELS[job.hebbian](g, a_src, a_dst)  # (c, R, n_src (+1), n_dst, k)
        if job.channels == "first":
            H = H[..., 0:1]
        elif job.channels == "mean":
            H = H.sum(axis=-1, keepdims=True)  # base holds the 1/k
        H = xp.moveaxis(H, -1, 2) * base
        H = H.astype(self.backend.dtype)
        if job.bias:
            return H[:, :, :, :-1], H[:, :, :, -1]
        return H, None


class StepRun:
    """Neuron states of one chunk during one step, with cached mixed states.

    ``a[p]``: the state of population ``p`` (absent while it is known to be
    zero, e.g. right after a reset). ``mix(p, g, name)`` returns ``M a_p``
    for the genome group's ``k x k`` matrix ``name`` and caches it until
    ``a_p`` changes. Mixes and batch sums are computed and cached per
    workspace (the executor gives each thread its own), so that the
    independent synapse updates may run side by side; states only change
    between those phases, in the thread that drives the step.
    """

    def __init__(self, sim, st, cf: ChunkCoefficients, ch, inputs, B: int, *, targets=None, kept=None,
                 tap=None) -> None:
        self.sim, self.st, self.cf, self.ch, self.inputs, self.B = sim, st, cf, ch, inputs, B
        self.targets, self.kept, self.tap = targets, kept, tap
        self.ws = sim.executor.workspace()
        self.c, self.R = ch.s1 - ch.s0, ch.r1 - ch.r0
        self.a: dict[int, Any] = {}
        #: projections whose W and V share their Hebbian products (set by ``run_jobs``)
        self.shared: frozenset = frozenset()
        self._mix: dict = {}
        self._asum: dict = {}

    def shape(self, p: int) -> tuple:
        return (self.c, self.R, self.sim.k, self.B, self.sim.program.pops[p].size)

    def state(self, p: int):
        if p not in self.a:
            self.a[p] = self.ws.get(("zero", p), self.shape(p), zero=True)
        return self.a[p]

    def set(self, p: int, value) -> None:
        self.a[p] = value
        for cache in (self._mix, self._asum):
            for key in [k for k in cache if k[0] == p]:
                del cache[key]

    def mix(self, p: int, g: str, name: str):
        ws = self.sim.executor.workspace()  # this thread's: update jobs may run side by side
        key = (p, g, name, id(ws))
        out = self._mix.get(key)
        if out is None:
            a = self.state(p)
            sh = a.shape
            out = ws.get(("mix", p, g, name), sh)
            self.sim.backend.matmul_into(self.cf.mat(g, name), a.reshape(sh[:3] + (sh[3] * sh[4],)),
                                         out.reshape(sh[:3] + (sh[3] * sh[4],)))
            self._mix[key] = out
        return out

    def shared_product(self, q, transposed: bool):
        """``G^d = x^T a_post^d`` of projection ``q`` from an input: ``(c, R, k, n_pre, n_post)``,
        or its transpose ``(c, R, k, n_post, n_pre)`` (cached like the mixes, per workspace)."""
        ws = self.sim.executor.workspace()
        key = (q.post, "xh", q.index, transposed, id(ws))
        out = self._mix.get(key)
        if out is None:
            sh = (self.c, self.R, self.sim.k, q.n_pre, q.n_post)
            if transposed:
                G = self.shared_product(q, False)
                out = ws.get(("hx", q.index), sh[:3] + sh[:2:-1])
                self.sim.backend.transpose_into(G, out)
            else:
                out = ws.get(("xh", q.index), sh)
                self.sim.backend.gemm(self.inputs[q.pre]["x"].swapaxes(-1, -2), self.state(q.post), out)
            self._mix[key] = out
        return out

    def flat(self, X):
        """``(c, R, k, B, n)`` -> ``(c, R, 1, k B, n)``: all channels as one batch (shared-channel Hebbians)."""
        s = X.shape
        return X.reshape(s[0], s[1], 1, s[2] * s[3], s[4])

    def asum(self, p: int):
        """``sum_b a_p``: ``(c, R, k, n)``."""
        key = (p, id(self.sim.executor.workspace()))
        s = self._asum.get(key)
        if s is None:
            s = self._asum[key] = self.state(p).sum(axis=-2)
        return s
