r"""Laws of the rule zoo (docs/zoo.md): what the classical rules are known to do, as laws.

They are :class:`~blursim.testing.laws.Law` s like those of :mod:`blursim.testing.laws`
(same call, same :class:`~blursim.testing.report.LawViolation`, counterexamples replayed by
``blursim replay``, which finds them through this module), for the presets of
:mod:`blursim.genome.presets` under the rules those presets need. They are listed in their own
:data:`ZOO_LAWS`, not in :data:`~blursim.testing.laws.LAWS`: ``check_all`` runs the laws of
every BLUR step, and ``feedback_alignment_aligns`` is an empirical law that needs its warm-up.

``oja_norms_stay_bounded``  (Oja, J. Math. Biol. 1982)
    For a linear neuron ``y = wᵀx`` (bias row included as an input of 1) the batch update of
    the ``oja`` preset is ``w' = (1 − a) w + η C w`` with ``C = ρ_b x̄_b x̄_bᵀ`` and
    ``a = η wᵀCw``. With ``c = η λ_max(C)`` and ``n = ‖w‖²``:
    ``‖w'‖² = (1 − a)² n + 2a(1 − a) + η²‖Cw‖² ≤ (1 − a)² n + 2a(1 − a) + a c``. If ``a ≤ 1``
    this is ``≤ n`` when ``n ≥ 1 + c`` and ``≤ 1 + c`` otherwise. So every neuron's
    ``‖w_j‖²`` stays below ``M_t = max(M_{t−1}, 1 + η λ_max(C_t))``, ``M_0 = ‖w_j(0)‖²``,
    as long as ``η λ_max(C_t) M_{t−1} ≤ 1`` (then ``a ≤ 1``). The law checks that step-size
    condition on the batches it is given (it refuses the run, :class:`LawNotApplicable`,
    where a batch breaks it: the bound is not claimed there) and the bound after every step.
    Plain Hebb has no such bound (its norms grow; ``tests/test_reference_zoo.py``).

``mirrored_synapses_converge``  (Kolen & Pollack 1994; Akrout et al. 2019)
    With ``rules.backward_synapses: "mirror"`` the backward synapses receive the transpose of
    the forward Hebbian term with the same keep gate: ``W ← f̃ W + η̃ H``, ``V ← f̃ V + η̃ Hᵀ``
    (eq. 7; masks transposed alike). So ``W − Vᵀ`` (bias row left out) is multiplied by ``f̃``
    at every step whatever the genome and the data: ``W_t − V_tᵀ = f̃ᵗ (W_0 − V_0ᵀ)``, and
    with the ``kolen_pollack`` preset's ``f̃ = 1 − λ`` the two converge. Not with an Oja
    term, saturation or stored synapse normalisation (each treats ``V``'s rows differently).

``feedback_alignment_aligns``  (Lillicrap et al. 2016, Fig. 2)
    Under feedback alignment the update of the hidden layers' forward synapses comes to point
    downhill: after ``after`` warm-up steps, the angle between that update and the true
    negative gradient of the loss (softmax cross-entropy of the outputs' state 0, the
    gradient of :class:`blursim.baselines.FeedForwardNet`) is below 90° at every step. This
    is an empirical law (alignment emerges as ``W`` learns to agree with the fixed ``B``; it
    is not a theorem for every batch): it is checked on the runs it is given and states the
    angle it saw; gradient *ascent* (``η̃ < 0``) breaks it at once.
"""

from __future__ import annotations

import numpy as np

from blursim.registry import Registry
from blursim.testing.laws import Law, LawNotApplicable
from blursim.testing.report import Where

#: The zoo's laws by name (their own registry; see the module docstring).
ZOO_LAWS: Registry[Law] = Registry("zoo law")

__all__ = ["ZOO_LAWS", "oja_norms_stay_bounded", "OjaNormsStayBounded", "mirrored_synapses_converge",
           "MirroredSynapsesConverge", "feedback_alignment_aligns", "FeedbackAlignmentAligns"]


def register_law(law: Law) -> Law:
    ZOO_LAWS.register(law.name, law, doc=law.statement)
    return law


def _weights(run) -> list[np.ndarray]:
    """Channel-0 forward synapses with the bias row, ``(S, R, n_pre + bias, n_post)`` per projection."""
    out = []
    for qi, q in enumerate(run.program.projs):
        W = np.array(run.state.get(qi, "W"))[:, :, 0]
        if q.bias:
            W = np.concatenate([W, np.array(run.state.get(qi, "b"))[:, :, 0][:, :, None, :]], axis=2)
        out.append(W)
    return out


def _presynaptic(run, W: list[np.ndarray], x: np.ndarray) -> list[np.ndarray]:
    """``x̄`` ``(S, R, B, n_pre + bias)`` of every projection on batch ``x``, for linear neurons
    (state 0 after the forward pass is ``z``: identity activation, ``f = η = 1``, reset)."""
    prog = run.program
    S, R = W[0].shape[:2]
    h = {i: np.broadcast_to(x[:, prog.pops[i].in_slice], (S, R) + x[:, prog.pops[i].in_slice].shape)
         for i in prog.inputs}

    def bar(qi):
        q = prog.projs[qi]
        a = h[q.pre]
        return np.concatenate([a, np.ones(a.shape[:-1] + (1,))], axis=-1) if q.bias else a

    for j in prog.forward_order:
        h[j] = sum(bar(qi) @ W[qi] for qi in prog.pops[j].incoming)
    return [bar(qi) for qi in range(len(prog.projs))]


class OjaNormsStayBounded(Law):
    """Oja (1982): the norm of a linear neuron's weights is self-limiting (module docstring)."""

    name = "oja_norms_stay_bounded"
    statement = ("under Oja's rule every linear neuron's squared weight norm stays <= max(its initial "
                 "value, 1 + η̃ λ_max(C)) (Oja 1982)")
    holds_under = ("the rules the oja preset needs (docs/zoo.md), identity forward activations, the oja "
                   "genome with eta_tilde > 0, batches with eta_tilde * lambda_max(C) * bound <= 1")
    rtol = 1e-9

    def why_not_program(self, prog):
        from blursim.genome.presets import PRESET_REQUIREMENTS
        from blursim.genome.requirements import describe_changes

        changes = PRESET_REQUIREMENTS["oja"].changes(prog.spec)
        if changes:
            return f"the oja preset needs {describe_changes(changes)}"
        for p in prog.pops:
            if p.role != "input" and p.fwd_names[0] != "identity":
                return f"population {p.name!r} is not linear (forward activation {p.fwd_names[0]!r})"
        return None

    def why_not_genome(self, prog, genome):
        from blursim.genome.presets import oja_genome

        for g in prog.groups:
            p = genome.groups[g]
            if not p.eta_tilde > 0:
                return f"genome group {g!r} has eta_tilde = {p.eta_tilde} (the law needs > 0)"
            want = oja_genome(k=prog.k, lr=p.eta_tilde).groups["default"]
            for key in ("f", "eta", "f_tilde", "nu", "mu", "nu_tilde", "mu_tilde", "oja_alpha"):
                if not np.array_equal(np.asarray(getattr(p, key), dtype=float), np.asarray(getattr(want, key))):
                    return f"genome group {g!r} is not the oja genome: {key} = {getattr(p, key)}"
        return None

    def conform(self, genome):
        from blursim.genome.presets import oja_genome
        from blursim.spec import load_genome

        g = load_genome(genome)
        return g.model_copy(update={"groups": {n: oja_genome(k=g.k, lr=abs(p.eta_tilde) or 0.01).groups["default"]
                                               for n, p in g.groups.items()}})

    def setup(self, run):
        super().setup(run)
        run.bound = [(w * w).sum(axis=2) for w in _weights(run)]  # (S, R, n_post) per projection

    def advance(self, run, x, y):
        W = _weights(run)
        reduction = run.program.rules.batch_reduction
        for qi, xb in enumerate(_presynaptic(run, W, x)):
            C = np.einsum("srbi,srbk->srik", xb, xb)
            if reduction == "mean":
                C = C / x.shape[0]
            eta = float(run.genome.groups[run.program.projs[qi].group].eta_tilde)
            lam = np.linalg.eigvalsh(C)[..., -1][..., None]  # (S, R, 1)
            if np.any(eta * lam * run.bound[qi] > 1.0):
                raise LawNotApplicable(
                    f"law {self.name!r}: step {run.t} of projection {run.program.projs[qi].name!r} has "
                    f"η̃ λ_max(C) · bound = {float(np.max(eta * lam * run.bound[qi])):.3g} > 1; the bound "
                    "holds only for smaller steps (a smaller eta_tilde or smaller inputs)")
            run.bound[qi] = np.maximum(run.bound[qi], 1.0 + eta * lam)
        super().advance(run, x, y)

    def check(self, run):
        for qi, w in enumerate(_weights(run)):
            n = (w * w).sum(axis=2)
            over = n - run.bound[qi] * (1 + self.rtol)
            if np.any(over > 0):
                s, r, j = np.unravel_index(int(np.argmax(over)), over.shape)
                where = Where(variable="W", projection=run.program.projs[qi].name, index={"post": int(j)},
                              extra="(squared norm of the neuron's incoming weights, bias included)",
                              species=int(s), replica=int(r), step=run.t)
                run.fail(where, value=float(n[s, r, j]), expected=float(run.bound[qi][s, r, j]),
                         tolerance=f"rtol {self.rtol:g}", value_label="‖w_j‖²", expected_label="bound")


oja_norms_stay_bounded = register_law(OjaNormsStayBounded())


# ------------------------------------------------------------------ Kolen-Pollack
class MirroredSynapsesConverge(Law):
    """Kolen-Pollack: ``W_t − V_tᵀ = f̃ᵗ (W_0 − V_0ᵀ)`` under mirrored backward updates (module docstring)."""

    name = "mirrored_synapses_converge"
    statement = "with mirrored backward updates W − Vᵀ shrinks by f̃ every step: W_t − V_tᵀ = f̃ᵗ (W_0 − V_0ᵀ)"
    holds_under = ("untied synapses with backward_synapses mirror, oja none, no saturation, no stored "
                   "synapse normalisation; every genome")
    rtol = 1e-9

    def why_not_program(self, prog):
        r = prog.rules
        if r.tied or r.backward_synapses != "mirror":
            return "the law is about untied synapses with rules.backward_synapses = 'mirror'"
        for key, ok in (("oja", r.oja == "none"), ("saturation", not r.saturation),
                        ("synapse_normalization", r.synapse_normalization != "stored")):
            if not ok:
                return f"rules.{key} = {getattr(r, key)!r} changes V's rows otherwise than W's columns"
        return None

    def _gaps(self, run) -> dict:
        out = {}
        for qi, q in enumerate(run.program.projs):
            if q.pathway != "both":  # a pathway has no W (feedback) or a V nothing updates (forward)
                continue
            W = np.array(run.state.get(qi, "W"))
            V = np.array(run.state.get(qi, "V"))
            out[(qi, "W")] = W - np.swapaxes(V, -1, -2)
        return out

    def setup(self, run):
        super().setup(run)
        run.gap0 = self._gaps(run)

    def check(self, run):
        gaps = self._gaps(run)
        want = {}
        scale = 1.0
        for (qi, w), g0 in run.gap0.items():
            ft = float(run.genome.groups[run.program.projs[qi].group].f_tilde)
            want[(qi, w)] = ft ** run.t * g0
            scale = max(scale, float(np.abs(run.state.get(qi, "W")).max()))
        run.compare(gaps, want, atol=self.rtol * scale, rtol=self.rtol, value_label="W − Vᵀ",
                    expected_label="f̃ᵗ (W₀ − V₀ᵀ)")


mirrored_synapses_converge = register_law(MirroredSynapsesConverge())


# ------------------------------------------------------------ feedback alignment
class FeedbackAlignmentAligns(Law):
    """Lillicrap et al. 2016: the hidden layers' update comes to point downhill (module docstring)."""

    name = "feedback_alignment_aligns"
    statement = ("under feedback alignment the hidden layers' weight update makes an angle below 90° with "
                 "the true negative gradient after a warm-up (Lillicrap et al. 2016)")
    holds_under = ("the rules the feedback_alignment preset needs with error_softmax feedback, the "
                   "backprop genome with eta_tilde > 0; checked after the option 'after' (warm-up steps)")

    def why_not_program(self, prog):
        from blursim.genome.presets import PRESET_REQUIREMENTS
        from blursim.genome.requirements import describe_changes

        changes = PRESET_REQUIREMENTS["feedback_alignment"].changes(prog.spec)
        if changes:
            return f"the feedback_alignment preset needs {describe_changes(changes)}"
        if prog.rules.feedback != "error_softmax":
            return "the true gradient is that of softmax cross-entropy: the law needs feedback error_softmax"
        if not any(prog.pops[q.post].role == "hidden" for q in prog.projs):
            return "the network has no hidden population"
        return None

    def why_not_genome(self, prog, genome):
        from blursim.genome.presets import backprop_genome

        want = backprop_genome(lr=0.1).groups["default"]
        for g in prog.groups:
            p = genome.groups[g]
            if not p.eta_tilde > 0:
                return f"genome group {g!r} has eta_tilde = {p.eta_tilde} (the law needs > 0)"
            for key in ("f", "eta", "f_tilde", "nu", "mu", "nu_tilde", "mu_tilde"):
                if not np.array_equal(np.asarray(getattr(p, key), dtype=float), np.asarray(getattr(want, key))):
                    return f"genome group {g!r} is not the backprop genome: {key} = {getattr(p, key)}"
        return None

    def resolve_options(self, run, options):
        (after,) = self.take_options(options, "after")
        return {"after": 0 if after is None else int(after)}

    def setup(self, run):
        from blursim.baselines import FeedForwardNet

        super().setup(run)
        run.net = FeedForwardNet(run.program, dtype="float64")
        run.hidden = [qi for qi, q in enumerate(run.program.projs)
                      if q.pathway != "feedback" and run.program.pops[q.post].role == "hidden"]
        run.angles = []
        run.cos = None

    def advance(self, run, x, y):
        before = _weights(run)
        _, grads = run.net.loss_and_grad([w[0] for w in before], x, y)  # species 0 (one genome)
        super().advance(run, x, y)
        after = _weights(run)
        d = np.concatenate([(after[qi] - before[qi])[0].reshape(before[qi].shape[1], -1) for qi in run.hidden], 1)
        g = np.concatenate([-grads[qi].reshape(grads[qi].shape[0], -1) for qi in run.hidden], 1)
        with np.errstate(all="ignore"):
            run.cos = (d * g).sum(1) / (np.linalg.norm(d, axis=1) * np.linalg.norm(g, axis=1))
        run.angles.append(np.degrees(np.arccos(np.clip(run.cos, -1, 1))).tolist())

    def check(self, run):
        if run.cos is None or run.t <= run.options["after"]:
            return
        bad = np.flatnonzero(~(run.cos > 0))
        if bad.size:
            r = int(bad[0])
            angle = float(np.degrees(np.arccos(np.clip(run.cos[r], -1, 1))))
            where = Where(variable="update of the hidden layers' W", replica=r, step=run.t,
                          extra=f"(projections {', '.join(run.program.projs[q].name for q in run.hidden)})")
            run.fail(where, value=angle, expected=90.0, tolerance="angle < 90°", value_label="angle (°)",
                     expected_label="bound")


feedback_alignment_aligns = register_law(FeedbackAlignmentAligns())
