"""Laws for each equation and option of the BLUR step, read off the step's public outputs.

Each law here states one equation of the step (paper eq. 5-8, Sec. 3.3-3.4, DESIGN §2) as a
relation between numbers the public :class:`~blursim.sim.Simulator` API shows — the synapses
before and after :meth:`~blursim.sim.Simulator.train_step` and the neuron states a
:class:`~blursim.sim.Monitor` records after the forward pass, the feedback and the backward
pass — so that it needs no second implementation of the step:

=====================================  ===========================================================
``forward_pass_closed_form``           eq. (5): each forward state is ``σ(N(f·a + η·Σ W (ν ā)))``
                                       of the recorded presynaptic states
``backward_pass_closed_form``          eq. (6): each backward state is ``σ(N(f·a + η·Σ V (μ a)))``
                                       (or its multiplicative forms) of the recorded states
``normalisation_batch_statistics``     Sec. 3.4: a normalised neuron's state is
                                       ``gain·(x − mean_b x)/sqrt(var_b x + ε) + shift`` of its
                                       un-normalised state ``x`` (read from a twin network with
                                       that one normalisation switched off): batch mean = shift,
                                       batch spread = gain (up to ε)
``feedback_sets_output_states``        Sec. 3.3: after the feedback, output state 1 is the coded
                                       target (``target``), ``(T − a⁰)·a¹`` (``error_mse``) or
                                       ``onehot − softmax(a⁰)`` (``error_softmax``)
``synapse_update_closed_form``         eq. (7)-(8): every synapse's one-step change is
                                       ``f̃·w + η̃·(ρ_b P_b Q_b + O)`` of the recorded states, then the
                                       mask and saturation; shared channels store the channel mean
                                       (or channel 0)
``oja_scales_by_exact_factor``         eq. (8): with no Hebbian term (ν̃ = 0) every synapse is
                                       multiplied by ``f̃ − |η̃||α| n²``
``untied_feedback_drives_backward``    eq. (6): perturbing an untied ``V_q`` by δ leaves every
                                       forward state unchanged and moves the backward state of
                                       ``q``'s presynaptic population by exactly ``η·Σ_j δ[j,i,c](μ a_j)^c``
``unroll_equals_single_steps``         DESIGN §2, §4: an unroll of n steps (``train_unroll``,
                                       ``train_and_evaluate``) ends where n single steps end
=====================================  ===========================================================

They are registered in :data:`blursim.testing.laws.LAWS` like the other laws (and reachable as
``laws.<name>``); docs/testing.md lists their domains.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from blursim.graph import compile_network
from blursim.sim import Monitor, Simulator
from blursim.sim import run as _run  # the unroll functions, looked up at call time
from blursim.spec import load_network
from blursim.testing.laws import Law, LawRun, register_law
from blursim.testing.report import Where, worst_entry

PHASES = ("forward", "feedback", "backward")


# ---------------------------------------------------------------- observing a step
def observed_step(sim: Simulator, state, genes, x, y) -> dict[str, dict[int, np.ndarray]]:
    """One :meth:`Simulator.train_step`, with a :class:`Monitor` recording every non-input
    population's states after each phase: ``{phase: {population index: (S, R, B, n, k)}}``."""
    prog = sim.program
    mon = Monitor(sim, [f"states:*@{ph}" for ph in PHASES])
    sim.train_step(state, genes, x, y, monitor=mon)
    out: dict[str, dict[int, np.ndarray]] = {ph: {} for ph in PHASES}
    for p in prog.pops:
        if p.role != "input":
            for ph in PHASES:
                out[ph][p.index] = np.asarray(mon[f"states:{p.name}@{ph}"].values[0], dtype=np.float64)
    return out


def input_states(program, x, shape_sr=(1, 1)) -> dict[int, np.ndarray]:
    """Input populations' states (DESIGN §2 step 2): the data in state 0, every other state 0;
    ``(S, R, B, n, k)``."""
    x = np.asarray(x, dtype=np.float64)
    out = {}
    for i in program.inputs:
        xi = x[:, program.pops[i].in_slice]
        a = np.zeros(shape_sr + xi.shape + (program.k,))
        a[..., 0] = xi
        out[i] = a
    return out


def compare_states(run: LawRun, got: dict, want: dict, *, atol: float, rtol: float, value_label="value",
                   expected_label="expected", detail: str = "", scale: dict | None = None) -> None:
    """Fail at the neuron state of ``got`` farthest beyond ``|got − want| ≤ atol·scale + rtol·|want|``.
    Keys ``(population index, phase)``, arrays ``(S, R, B, n, k)``; ``scale[key]`` (default 1)
    multiplies ``atol``."""
    total, count, worst = 0, 0, None
    for key, g in got.items():
        w = want[key]
        a = atol * (scale or {}).get(key, 1.0)
        n, idx, excess = worst_entry(g, w, a, rtol)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            frac = np.abs(g - w) / (a + rtol * np.abs(w))
        if frac.size and np.all(np.isfinite(frac)):
            run.worst = max(run.worst, float(frac.max()))
        total += g.size
        count += n
        if idx is not None and (worst is None or excess > worst[0]):
            worst = (excess, key, idx, g[idx], w[idx], a)
    if worst is None:
        return
    _, (p, phase), (s, r, b, n, c), gv, wv, a = worst
    where = Where(variable="a", population=run.program.pops[p].name, index={"example": int(b), "neuron": int(n)},
                  extra=f"after the {phase}" + ("" if phase == "feedback" else " pass"), state=int(c),
                  species=int(s), replica=int(r), step=run.t)
    tol = f"{a:.3g} + {rtol:g}·|expected| = {a + rtol * abs(float(wv)):.3g}"
    run.fail(where, value=gv, expected=wv, tolerance=tol, count=count, total=total, value_label=value_label,
             expected_label=expected_label, detail=detail)


def _spec_doc(program) -> dict:
    return program.spec.model_dump(mode="json", by_alias=True)


def _copy_into(run: LawRun, sim: Simulator, genes, state):
    """A state of ``sim`` holding a copy of ``state``'s synapses (and kept neuron states)."""
    st = sim.init_synapses(genes, replicas=state.shape_SR[1], seed=run.seed)
    for q in range(len(run.program.projs)):
        for w in ("W", "b", "V"):
            a = state.get(q, w)
            if a is not None:
                st.set(q, w, a)
    st.a = None if state.a is None else [None if a is None else a.copy() for a in state.a]
    st.steps = state.steps
    return st


def _group(run: LawRun, name: str):
    return run.genome.groups[name]


# ------------------------------------------------------------- Sec. 3.4 normalisation
def _identity_states(names) -> list[int]:
    return [c for c, n in enumerate(names) if n == "identity"]


def _norm_checks(prog) -> list[tuple[int, str, list[int]]]:
    """``(population, "forward"|"backward", states with the identity activation)`` for every
    normalised pass whose result the states show (identity activation; the backward pass
    normalises only under the additive update)."""
    out = []
    for p in prog.pops:
        if p.role == "input":
            continue
        if p.norm_fwd and _identity_states(p.fwd_names):
            out.append((p.index, "forward", _identity_states(p.fwd_names)))
        if (p.norm_bwd and prog.rules.backward_update == "additive" and p.index in prog.backward_order
                and _identity_states(p.bwd_names)):
            out.append((p.index, "backward", _identity_states(p.bwd_names)))
    return out


class NormalisationBatchStatistics(Law):
    """Sec. 3.4 / DESIGN §2: the normalisation ``N`` of a population's forward (eq. 5) or additive
    backward (eq. 6) update is batch normalisation per neuron and state,
    ``N(x) = gain[c]·(x − mean_b x)/sqrt(var_b x + ε) + shift[c]`` (``ε = rules.norm_eps``), so the
    normalised neuron has batch mean ``shift[c]`` and batch standard deviation
    ``|gain[c]|·sqrt(v/(v + ε))`` (→ ``|gain[c]|``). The un-normalised ``x`` is read from a twin
    network, identical except that this one normalisation is off, started from the same synapses
    (and kept states) at every step; the law compares every entry of the states whose activation
    is the identity (so the state is ``N(x)`` itself)."""

    name = "normalisation_batch_statistics"
    equation = "Sec. 3.4 normalisation"
    statement = ("a normalised neuron state is gain·(x − mean_b x)/sqrt(var_b x + ε) + shift: batch mean = shift, "
                 "batch spread = gain")
    holds_under = ("the topological schedule (or one synchronous sweep); networks with a normalised pass (a population's normalization forward/backward/both; the backward "
                   "one under backward_update additive) whose activation is the identity for some state; any genome")
    atol = 1e-9
    rtol = 1e-9
    check_initial = False

    def why_not_program(self, prog):
        if prog.rules.schedule == "synchronous" and prog.rules.sweeps > 1:
            return ("rules.schedule = 'synchronous' with several sweeps: a sweep reads the previous sweep's "
                    "normalised states, so the twin without normalisation does not show x")
        if not _norm_checks(prog):
            return ("no population normalises a pass whose activation is the identity (normalization forward/both "
                    "with an identity forward activation, or backward/both with an identity backward activation "
                    "and backward_update additive)")
        return None

    def setup(self, run):
        super().setup(run)
        run.twins = []
        prog = run.program
        for p, phase, states in _norm_checks(prog):
            doc = _spec_doc(prog)
            pop = prog.pops[p]
            off = {"forward": {"forward": "none", "both": "backward"},
                   "backward": {"backward": "none", "both": "forward"}}[phase]
            entry = next(d for d in doc["populations"] if d["name"] == pop.name)
            entry["normalization"] = off[entry.get("normalization", "none")]
            tprog = compile_network(load_network(doc))
            tsim = Simulator(tprog, backend="numpy", dtype="float64")
            run.twins.append((p, phase, states, tsim, tsim.prepare([run.genome])))

    def advance(self, run, x, y):
        run.pre_norm = []
        for p, phase, states, tsim, tgenes in run.twins:
            twin = _copy_into(run, tsim, tgenes, run.state)
            run.pre_norm.append((p, phase, states, observed_step(tsim, twin, tgenes, x, y)[phase][p]))
        run.seen = observed_step(run.sim, run.state, run.genes, x, y)

    def check(self, run):
        got, want, scale = {}, {}, {}
        eps = run.program.rules.norm_eps
        for p, phase, states, x in run.pre_norm:
            g = _group(run, run.program.pops[p].group)
            gain = np.ones(run.program.k) if g.norm_gain is None else np.asarray(g.norm_gain, dtype=float)
            shift = np.zeros(run.program.k) if g.norm_shift is None else np.asarray(g.norm_shift, dtype=float)
            mean = x.mean(axis=2, keepdims=True)
            var = ((x - mean) ** 2).mean(axis=2, keepdims=True)
            expect = gain * (x - mean) / np.sqrt(var + eps) + shift
            key = (p, phase)
            got[key] = run.seen[phase][p][..., states]
            want[key] = expect[..., states]
            # rounding of x − mean is amplified by 1/sqrt(var + ε): scale the absolute tolerance
            scale[key] = float(np.max(np.abs(gain)) * max(1.0, np.abs(x).max(initial=0.0)) / np.sqrt(eps))
        compare_states(run, got, want, atol=self.atol * 1e-3, rtol=self.rtol, scale=scale,
                       expected_label="gain·(x − mean)/sqrt(var + ε) + shift",
                       detail="x: the state with this normalisation switched off (a twin network, same synapses)")


# --------------------------------------------------------------------- Sec. 3.3 feedback
class FeedbackSetsOutputStates(Law):
    """Sec. 3.3 / DESIGN §2 step 4: the feedback writes each output population's state 1 and
    leaves state 0 (the prediction): ``target`` writes the coded targets ``T`` (1 for the true
    class, −1 or 0 otherwise by ``target_coding``; a single output neuron carries the label) and
    zeros into states ≥ 2; ``error_mse`` writes ``(T − a⁰)·a¹``; ``error_softmax`` writes
    ``onehot(y) − softmax(a⁰)`` over the neurons (``t − sigmoid(a⁰)`` for one neuron). Checked
    against the states the forward pass left (recorded by a monitor)."""

    name = "feedback_sets_output_states"
    equation = "Sec. 3.3 feedback"
    statement = "after the feedback, output state 1 holds the targets (or the error signal) and state 0 is unchanged"
    atol = 1e-12
    rtol = 1e-12
    check_initial = False

    def advance(self, run, x, y):
        run.seen = observed_step(run.sim, run.state, run.genes, x, y)
        run.labels = np.asarray(y)

    def check(self, run):
        prog, rules = run.program, run.program.rules
        got, want = {}, {}
        y = run.labels
        for o in prog.outputs:
            n = prog.pops[o].size
            fwd, fb = run.seen["forward"][o], run.seen["feedback"][o]
            hot = (y == 1).astype(float)[:, None] if n == 1 else np.eye(n)[y]
            T = np.where(hot > 0, 1.0, -1.0 if rules.target_coding == "pm1" else 0.0)
            exp = fwd.copy()
            a0 = fwd[..., 0]
            if rules.feedback == "target":
                exp[..., 1] = T
                exp[..., 2:] = 0.0
            elif rules.feedback == "error_mse":
                exp[..., 1] = (T - a0) * fwd[..., 1]
            elif n == 1:
                exp[..., 1] = hot[:, 0][:, None] - 1.0 / (1.0 + np.exp(-a0))
            else:
                e = np.exp(a0 - a0.max(axis=-1, keepdims=True))
                exp[..., 1] = hot - e / e.sum(axis=-1, keepdims=True)
            got[(o, "feedback")], want[(o, "feedback")] = fb, exp
        compare_states(run, got, want, atol=run.atol, rtol=run.rtol,
                       expected_label=f"{rules.feedback} feedback of the forward states",
                       detail=f"labels of step {run.t}: {y.tolist()}")


# ------------------------------------------------------------------ App. C.6, eq. (5)-(6)
def normalised_synapses(run: LawRun, arrays: dict) -> dict:
    """App. C.6 on dense synapse arrays: ``W' = r·W/sqrt(Σ_pre W² + b² + ε)`` per postsynaptic
    neuron and channel (the bias row too), ``V' = r·V/sqrt(Σ_post V² + ε)`` per presynaptic neuron;
    ``r`` the genome group's ``rescale`` (default 1), ``ε = rules.synapse_norm_eps``."""
    prog = run.program
    eps = prog.rules.synapse_norm_eps
    out = dict(arrays)
    for qi, q in enumerate(prog.projs):
        g = _group(run, q.group)
        r = 1.0 if g.rescale is None else g.rescale
        W, b = arrays[(qi, "W")], arrays.get((qi, "b"))
        n2 = (W * W).sum(axis=3) + (0.0 if b is None else b * b)
        inv = r / np.sqrt(n2 + eps)
        out[(qi, "W")] = W * inv[:, :, :, None, :]
        if b is not None:
            out[(qi, "b")] = b * inv
        if (qi, "V") in arrays:
            V = arrays[(qi, "V")]
            out[(qi, "V")] = V * (r / np.sqrt((V * V).sum(axis=3) + eps))[:, :, :, None, :]
    return out


def _effective(run: LawRun, before: dict) -> dict:
    """The synapses the neuron passes read: normalised copies (``synapse_normalization``
    ``activations``), the normalised stored ones (``stored``), or the stored ones."""
    return before if run.program.rules.synapse_normalization == "none" else normalised_synapses(run, before)


def _activate(names, x):
    from blursim.sim import ACTIVATIONS

    out = np.empty_like(x)
    for c, n in enumerate(names):
        out[..., c] = ACTIVATIONS.get(n)(x[..., c], np)
    return out


def _batch_norm(run: LawRun, x, group: str):
    g = _group(run, group)
    k = run.program.k
    gain = np.ones(k) if g.norm_gain is None else np.asarray(g.norm_gain, dtype=float)
    shift = np.zeros(k) if g.norm_shift is None else np.asarray(g.norm_shift, dtype=float)
    d = x - x.mean(axis=2, keepdims=True)
    return gain * d / np.sqrt((d * d).mean(axis=2, keepdims=True) + run.program.rules.norm_eps) + shift


def _mixed(M, a):
    """``(M a)^c = Σ_d M[c,d] a^d`` on states ``(S, R, B, n, k)``."""
    return np.einsum("cd,srbnd->srbnc", np.asarray(M, dtype=float), a)


class _PassClosedForm(Law):
    """Shared domain and driving of the eq. (5) / eq. (6) laws."""

    atol = 1e-10
    rtol = 1e-9
    check_initial = False

    def why_not_program(self, prog):
        r = prog.rules
        if r.schedule != "topological":
            return "rules.schedule = 'synchronous': each sweep reads the previous sweep's states, which are not recorded"
        return None

    def advance(self, run, x, y):
        run.before = run.dense(run.state)
        run.kept = None if run.state.a is None else [None if a is None else np.moveaxis(np.array(a), 2, -1)
                                                     for a in run.state.a]
        run.seen = observed_step(run.sim, run.state, run.genes, x, y)
        run.inputs = input_states(run.program, x, run.state.shape_SR)

    def _scale(self, run, want):
        """Absolute tolerances: ``atol·max|expected|``, ``/sqrt(ε)`` where a normalisation amplifies
        the rounding of ``x − mean``."""
        eps = run.program.rules.norm_eps
        out = {}
        for (p, ph), w in want.items():
            pop = run.program.pops[p]
            norm = pop.norm_fwd if ph == "forward" else pop.norm_bwd
            out[(p, ph)] = max(1.0, float(np.abs(w[np.isfinite(w)]).max(initial=0.0))) / (np.sqrt(eps) if norm else 1.0)
        return out


class ForwardPassClosedForm(_PassClosedForm):
    """Eq. (5) / DESIGN §2 step 3, population by population in topological order: from the
    recorded forward states of the presynaptic populations (inputs: the data in state 0; the bias
    unit all ones) and the synapses before the step (normalised by App. C.6 when the rules say
    so), each population's forward state is ``σ_fwd(N(f·a_j + η·Σ_q Σ_i W_q[i,j,c](ν ā_i)^c))``
    (``a_j`` 0 after a reset, else the kept state; ``N`` only when the population normalises its
    forward pass; ``ν`` of the projection's genome group, ``f, η`` of the population's)."""

    name = "forward_pass_closed_form"
    equation = "eq. (5) forward pass"
    statement = "each forward neuron state is σ(N(f·a + η·Σ W (ν ā))) of the recorded presynaptic states"
    holds_under = "the topological schedule; any other rules and genome"

    def check(self, run):
        prog = run.program
        syn = _effective(run, run.before)
        a = {**run.inputs, **run.seen["forward"]}
        got, want = {}, {}
        for j in prog.forward_order:
            p = prog.pops[j]
            g = _group(run, p.group)
            z = 0.0
            for qi in p.incoming:
                q = prog.projs[qi]
                m = _mixed(_group(run, q.group).nu, a[q.pre])  # (S, R, B, n_pre, k)
                W = np.moveaxis(syn[(qi, "W")], 2, -1)  # (S, R, n_pre, n_post, kw)
                z = z + np.einsum("srbic,srijc->srbjc", m, np.broadcast_to(W, W.shape[:4] + (prog.k,)))
                if q.bias:
                    nu1 = np.asarray(_group(run, q.group).nu, dtype=float).sum(axis=1)  # (ν 1)^c
                    b = np.moveaxis(syn[(qi, "b")], 2, -1)  # (S, R, n_post, kw)
                    z = z + nu1 * b[:, :, None]
            x = g.eta * z
            kept = None if run.kept is None else run.kept[j]
            if kept is not None and kept.shape == a[j].shape:  # reset_neurons off: the kept state
                x = x + g.f * kept
            if p.norm_fwd:
                x = _batch_norm(run, x, p.group)
            got[(j, "forward")] = a[j]
            want[(j, "forward")] = _activate(p.fwd_names, np.broadcast_to(x, a[j].shape))
        compare_states(run, got, want, atol=run.atol, rtol=run.rtol, scale=self._scale(run, want),
                       expected_label="σ(N(f·a + η·Σ W (ν ā))) (eq. 5)")


class BackwardPassClosedForm(_PassClosedForm):
    """Eq. (6) / DESIGN §2 step 5, population by population in reverse topological order: from
    the recorded states of the postsynaptic populations after the backward pass (outputs: after
    the feedback) and the synapses before the step (``V_q``, or ``W_qᵀ`` when tied; normalised by
    App. C.6 when the rules say so), ``y_i^c = Σ_q Σ_j V_q[j,i,c](μ a_j)^c`` and the backward
    state is ``σ_bwd(N(f·a_i + η·y_i))`` (additive), ``σ_bwd(f·a_i ⊙ y_i)`` (multiplicative) or
    ``σ_bwd(f·[a_i^0, a_i^1 y_i^1, ...])`` (multiplicative_second_state), ``a_i`` the state after
    the feedback."""

    name = "backward_pass_closed_form"
    equation = "eq. (6) backward pass"
    statement = "each backward neuron state is σ(N(f·a + η·Σ V (μ a))) (or its multiplicative form) of the recorded states"
    holds_under = ("the topological schedule, not stored synapse normalisation with a frozen V (whether App. C.6 "
                   "rewrites a fixed V is not settled); any other rules and genome")

    def why_not_program(self, prog):
        r = prog.rules
        if r.synapse_normalization == "stored" and not r.tied and r.backward_synapses == "frozen":
            return "rules.synapse_normalization = 'stored' with backward_synapses = 'frozen': not settled for a fixed V"
        if not prog.backward_order:
            return "no population is updated by the backward pass"
        return super().why_not_program(prog)

    def check(self, run):
        prog, mode = run.program, run.program.rules.backward_update
        syn = _effective(run, run.before)
        back = run.seen["backward"]
        got, want = {}, {}
        for i in prog.backward_order:
            p = prog.pops[i]
            g = _group(run, p.group)
            y = 0.0
            for qi in p.outgoing:
                q = prog.projs[qi]
                m = _mixed(_group(run, q.group).mu, back[q.post])  # (S, R, B, n_post, k)
                if (qi, "V") in syn:
                    V = np.moveaxis(syn[(qi, "V")], 2, -1)  # (S, R, n_post, n_pre, kw)
                else:
                    V = np.swapaxes(np.moveaxis(syn[(qi, "W")], 2, -1), 2, 3)
                y = y + np.einsum("srbjc,srjic->srbic", m, np.broadcast_to(V, V.shape[:4] + (prog.k,)))
            prev = run.seen["feedback"][i]
            if mode == "additive":
                x = g.f * prev + g.eta * y
                if p.norm_bwd:
                    x = _batch_norm(run, x, p.group)
            else:
                x = g.f * prev * y
                if mode == "multiplicative_second_state":
                    x[..., 0] = g.f * prev[..., 0]
            got[(i, "backward")] = back[i]
            want[(i, "backward")] = _activate(p.bwd_names, np.broadcast_to(x, back[i].shape).copy())
        compare_states(run, got, want, atol=run.atol, rtol=run.rtol, scale=self._scale(run, want),
                       expected_label="σ(N(f·a + η·Σ V (μ a))) (eq. 6)")


# --------------------------------------------------------------- eq. (7)-(8) closed form
def expected_update(run: LawRun, qi: int, which: str, before: dict, a_src, a_dst, B: int):
    """Eq. (7)-(8), DESIGN §2 step 6, for projection ``qi``'s ``W`` (with its bias row) or untied
    ``V`` from the synapses ``before`` the step and the neuron states after the backward pass:
    ``(E, b)`` in the dense internal layout ``(S, R, kw, n_src, n_dst)`` / ``(S, R, kw, n_post)``.

    ``P^c = Σ_e ν̃[e,c] a_src^e``, ``Q^c = Σ_d μ̃[c,d] a_dst^d``, ``H = ρ_b P_b Q_b``;
    ``E ← D·E + η̃·H`` with ``D = f̃ − |η̃||α| n²`` (``n²`` of eq. 8: ``Σ_src E²`` for ``oja:
    weights``, ``ρ_b Q_b²`` for ``activity``; ``D = f̃`` without Oja); masked; ``s·tanh(E/s)``.
    Shared channels: the mean over channels of the ``k`` updates (or channel 0's). Untied ``V``
    under ``rules.backward_synapses``: ``frozen`` never changes; ``mirror`` (Kolen-Pollack) takes
    the transpose of ``W``'s Hebbian term, ``H_V[j,i,c] = ρ_b (μ̃ a_j)^c (ν̃ᵀ a_i)^c``, with the same
    keep factor (its ``activity`` n² still ``ρ_b (μ̃ a_i)²``)."""
    prog = run.program
    rules, q = prog.rules, prog.projs[qi]
    g = _group(run, q.group)
    nt, mt = np.asarray(g.nu_tilde, dtype=float), np.asarray(g.mu_tilde, dtype=float)
    rho = 1.0 / B if rules.batch_reduction == "mean" else 1.0
    E = before[(qi, which)]
    bq = before.get((qi, "b")) if which == "W" else None
    if which == "V" and rules.backward_synapses == "frozen":  # feedback alignment's fixed B
        return E, None
    P = np.einsum("srbne,ec->srbnc", a_src, nt)
    Q = np.einsum("srbnd,cd->srbnc", a_dst, mt)
    if which == "V" and rules.backward_synapses == "mirror":  # Kolen-Pollack: (W's Hebbian term)ᵀ
        Hsrc = np.einsum("srbnd,cd->srbnc", a_src, mt)  # μ̃ a_post
        Hdst = np.einsum("srbne,ec->srbnc", a_dst, nt)  # ν̃ᵀ a_pre
    else:
        Hsrc, Hdst = P, Q
    H = rho * np.einsum("srbic,srbjc->srcij", Hsrc, Hdst)  # (S, R, k, n_src, n_dst)
    Hb = None if bq is None else rho * np.einsum("c,srbjc->srcj", nt.sum(axis=0), Q)
    alpha = abs(g.oja_alpha or 0.0)
    if rules.oja == "weights":
        n2 = (E * E).sum(axis=3)
        if bq is not None:
            n2 = n2 + bq * bq
    elif rules.oja == "activity":
        n2 = rho * np.moveaxis((Q * Q).sum(axis=2), -1, 2)  # (S, R, k, n_dst)
    else:
        n2 = np.zeros(E.shape[:3] + E.shape[4:])
    D = g.f_tilde - abs(g.eta_tilde) * alpha * n2  # (S, R, kw or k, n_dst)
    new = D[:, :, :, None, :] * E + g.eta_tilde * H
    newb = None if bq is None else D * bq + g.eta_tilde * Hb
    if prog.kw == 1:  # shared channels: the channel mean of eq. (7), or channel 0's update
        pick = (lambda a: a[:, :, :1]) if rules.shared_update == "channel0" else (lambda a: a.mean(axis=2, keepdims=True))
        new = pick(new)
        newb = None if newb is None else pick(newb)
    if q.mask is not None:
        new = new * (q.mask if which == "W" else q.mask.T)
    if rules.saturation:
        s = max(abs(1.0 if g.saturation is None else g.saturation), 1e-12)
        new = s * np.tanh(new / s)
        newb = None if newb is None else s * np.tanh(newb / s)
    return new, newb


class SynapseUpdateClosedForm(Law):
    """Eq. (7)-(8) with DESIGN §2 step 6: given the neuron states after the backward pass (recorded
    by a monitor; inputs hold the data in state 0), every synapse's one-step change is the closed
    form of :func:`expected_update`: ``W ← f̃·W + η̃·(H + O)`` with the Hebbian product
    ``H[i,j,c] = ρ_b (ν̃ᵀ a_i)^c (μ̃ a_j)^c`` (the bias row's presynaptic states all 1), the Oja
    term ``O`` of eq. (8) (``−sign(η̃)|α| W n²``), the mask, then saturation ``s·tanh(W/s)``
    (Sec. 3.4); an untied ``V`` the same with pre and post swapped (no bias; unchanged under
    ``backward_synapses: frozen``, ``W``'s Hebbian term transposed under ``mirror``); shared channels the
    mean of the ``k`` channel updates (or channel 0's). Under stored synapse normalisation the
    synapses the update starts from are the stored ones normalised by App. C.6
    (:func:`normalised_synapses`)."""

    name = "synapse_update_closed_form"
    equation = "eq. (7)-(8)"
    statement = "each synapse's one-step change is eq. (7)-(8)'s closed form of the recorded neuron states"
    holds_under = ("every rule set (not stored synapse normalisation with a frozen V, whether App. C.6 rewrites a "
                   "fixed V is not settled); any genome")
    atol = 1e-12
    rtol = 1e-9
    check_initial = False

    def why_not_program(self, prog):
        r = prog.rules
        if r.synapse_normalization == "stored" and not r.tied and r.backward_synapses == "frozen":
            return "rules.synapse_normalization = 'stored' with backward_synapses = 'frozen': not settled for a fixed V"
        return None

    def advance(self, run, x, y):
        run.before = run.dense(run.state)
        if run.program.rules.synapse_normalization == "stored":  # App. C.6 rewrites them first
            run.before = normalised_synapses(run, run.before)
        run.seen = observed_step(run.sim, run.state, run.genes, x, y)
        run.inputs = input_states(run.program, x, run.state.shape_SR)
        run.B = len(y)

    def expected(self, run):
        prog = run.program
        a = {**run.inputs, **run.seen["backward"]}
        want = {}
        for qi, q in enumerate(prog.projs):
            want[(qi, "W")], b = expected_update(run, qi, "W", run.before, a[q.pre], a[q.post], run.B)
            if b is not None:
                want[(qi, "b")] = b
            if (qi, "V") in run.before:
                want[(qi, "V")], _ = expected_update(run, qi, "V", run.before, a[q.post], a[q.pre], run.B)
        return want

    def check(self, run):
        want = self.expected(run)
        cur = run.dense(run.state)
        scale = max(1.0, max((float(np.abs(w[np.isfinite(w)]).max(initial=0.0)) for w in want.values()), default=1.0))
        run.compare(cur, want, atol=run.atol * scale, expected_label=f"eq. (7)-(8) of the states ({self.equation})")


class OjaScalesByExactFactor(SynapseUpdateClosedForm):
    """Eq. (8) alone: with no Hebbian term (ν̃ = 0, so ``P = 0`` for every neuron and the bias
    unit) a step multiplies every synapse by its exact factor ``D = f̃ − |η̃||α| n²``
    (``n² = Σ_pre W²`` with the bias row for ``oja: weights``; ``ρ_b (μ̃ a_post)²`` for
    ``activity``), then saturation. The sign of η̃ does not matter: ``η̃·O`` always shrinks
    ``|W|`` (DESIGN §2)."""

    name = "oja_scales_by_exact_factor"
    equation = "eq. (8) Oja term"
    statement = "with no Hebbian term (ν̃ = 0) each synapse is multiplied by f̃ − |η̃||α|·n² (eq. 8)"
    holds_under = ("oja: weights or activity (not stored synapse normalisation with a frozen V); genomes with "
                   "nu_tilde = 0 and an Oja term (oja_alpha ≠ 0, eta_tilde ≠ 0)")

    def why_not_program(self, prog):
        if prog.rules.oja == "none":
            return "rules.oja = 'none': there is no Oja term"
        return super().why_not_program(prog)

    def why_not_genome(self, prog, genome):
        for g in prog.groups:
            p = genome.groups[g]
            if np.any(np.asarray(p.nu_tilde) != 0):
                return f"genome group {g!r} has a Hebbian term (nu_tilde ≠ 0; the law needs nu_tilde = 0)"
            if not p.oja_alpha or not p.eta_tilde:
                return (f"genome group {g!r} has no Oja term (oja_alpha = {p.oja_alpha}, eta_tilde = {p.eta_tilde}; "
                        "the law needs both nonzero)")
        return None

    def conform(self, genome):
        g = super().conform(genome)
        return g.model_copy(update={"groups": {
            n: p.model_copy(update={"nu_tilde": np.zeros((g.k, g.k)).tolist(), "oja_alpha": p.oja_alpha or 0.5,
                                    "eta_tilde": p.eta_tilde or 0.05})
            for n, p in g.groups.items()}})

    def check(self, run):
        want = self.expected(run)
        cur = run.dense(run.state)
        scale = max(1.0, max((float(np.abs(w[np.isfinite(w)]).max(initial=0.0)) for w in want.values()), default=1.0))
        run.compare(cur, want, atol=run.atol * scale, expected_label="D·w, D = f̃ − |η̃||α|n² (eq. 8)")


# ------------------------------------------------------------------- eq. (6) feedback synapses
def _feedback_targets(prog) -> list[int]:
    """Projections whose untied ``V`` the law perturbs: the presynaptic population is updated by
    the backward pass, with the identity backward activation and no backward normalisation."""
    out = []
    for qi, q in enumerate(prog.projs):
        p = prog.pops[q.pre]
        if q.pre in prog.backward_order and all(n == "identity" for n in p.bwd_names) and not p.norm_bwd:
            out.append(qi)
    return out


class UntiedFeedbackDrivesBackward(Law):
    """Eq. (6) with untied synapses: the backward pass reads ``V_q``, and only it. Perturbing
    ``V_q`` by ``δ`` (a twin started from the same synapses at every step) leaves every forward
    and feedback state unchanged, leaves the backward states of the populations the backward
    pass updates before ``q``'s presynaptic population ``i`` unchanged, and moves ``i``'s
    backward state by exactly ``Δa_i^c = κ^c Σ_j δ[j,i,c] (μ a_j)^c`` — ``κ = η`` (additive),
    ``f·a_i`` (multiplicative, ``a_i`` before the backward pass), the same for states ≥ 1 and 0
    for state 0 (multiplicative_second_state) — because ``y_i`` is linear in ``V`` and ``i``'s
    backward activation is the identity.

    Option ``scale`` (default 0.5): the size of the seeded Gaussian ``δ`` (on the mask)."""

    name = "untied_feedback_drives_backward"
    equation = "eq. (6) backward pass"
    statement = ("perturbing untied feedback synapses V changes the backward state they feed by exactly "
                 "η·Σ δ·(μ a) and nothing in the forward pass")
    holds_under = ("tied: false, schedule topological, synapse_normalization none, a projection whose presynaptic population the backward pass "
                   "updates with the identity backward activation and no backward normalisation; genomes with "
                   "mu ≠ 0 and eta ≠ 0 (additive) or f ≠ 0 (multiplicative)")
    atol = 1e-10
    rtol = 1e-8
    check_initial = False

    def why_not_program(self, prog):
        r = prog.rules
        if r.tied:
            return "rules.tied = true: there are no feedback synapses V (the backward pass reads Wᵀ)"
        if r.schedule != "topological":
            return "rules.schedule = 'synchronous': the backward sweeps feed perturbations around cycles"
        if r.synapse_normalization != "none":
            return (f"rules.synapse_normalization = {r.synapse_normalization!r}: the backward pass reads V "
                    "normalised (App. C.6), not linear in V")
        if not _feedback_targets(prog):
            return ("no projection's presynaptic population is updated by the backward pass with the identity "
                    "backward activation and no backward normalisation")
        return None

    def why_not_genome(self, prog, genome):
        gate = "eta" if prog.rules.backward_update == "additive" else "f"
        for qi in _feedback_targets(prog):
            q = prog.projs[qi]
            if not np.any(np.asarray(genome.groups[q.group].mu)):
                return f"genome group {q.group!r} has mu = 0: the backward pass reads nothing through V"
            if not getattr(genome.groups[prog.pops[q.pre].group], gate):
                return f"genome group {prog.pops[q.pre].group!r} has {gate} = 0: the backward states ignore y"
        return None

    def conform(self, genome):
        g = super().conform(genome)
        return g.model_copy(update={"groups": {
            n: p.model_copy(update={"mu": p.mu if np.any(np.asarray(p.mu)) else np.eye(g.k).tolist(),
                                    "eta": p.eta or 1.0, "f": p.f or 1.0})
            for n, p in g.groups.items()}})

    def resolve_options(self, run, options):
        (scale,) = self.take_options(options, "scale")
        return {"scale": 0.5 if scale is None else float(scale)}

    def setup(self, run):
        super().setup(run)
        run.targets = _feedback_targets(run.program)

    def advance(self, run, x, y):
        prog = run.program
        rng = np.random.default_rng(np.random.SeedSequence([run.seed, 0x66656564, run.t]))
        run.twins = []
        for qi in run.targets:
            twin = run.state.copy()
            V = np.asarray(run.state.get(qi, "V"))
            delta = run.options["scale"] * rng.normal(size=V.shape)
            if prog.projs[qi].mask is not None:
                delta = delta * prog.projs[qi].mask.T
            twin.set(qi, "V", V + delta)
            run.twins.append((qi, delta, twin))
        seen = [(qi, d, observed_step(run.sim, tw, run.genes, x, y)) for qi, d, tw in run.twins]
        run.seen = observed_step(run.sim, run.state, run.genes, x, y)
        run.twin_seen = seen

    def check(self, run):
        prog, rules = run.program, run.program.rules
        for qi, delta, tw in run.twin_seen:
            q = prog.projs[qi]
            i, j = q.pre, q.post
            g = _group(run, q.group)
            pg = _group(run, prog.pops[i].group)
            got, want = {}, {}
            for ph in ("forward", "feedback"):
                for p, a in run.seen[ph].items():
                    got[(p, ph)], want[(p, ph)] = tw[ph][p], a
            order = prog.backward_order
            for p in order[: order.index(i)]:
                got[(p, "backward")], want[(p, "backward")] = tw["backward"][p], run.seen["backward"][p]
            aj = run.seen["backward"][j]  # (S, R, B, n_j, k): j is final before i is updated
            m = np.einsum("srbjd,cd->srbjc", aj, np.asarray(g.mu, dtype=float))
            dy = np.einsum("srcji,srbjc->srbic", delta, m)  # δ is (S, R, k, n_post, n_pre)
            if rules.backward_update == "additive":
                dA = pg.eta * dy
            else:
                dA = pg.f * run.seen["feedback"][i] * dy
                if rules.backward_update == "multiplicative_second_state":
                    dA[..., 0] = 0.0
            got[(i, "backward")] = tw["backward"][i]
            want[(i, "backward")] = run.seen["backward"][i] + dA
            scale = {k: max(1.0, float(np.abs(v).max(initial=0.0))) for k, v in want.items()}
            compare_states(run, got, want, atol=run.atol, rtol=run.rtol, scale=scale,
                           value_label=f"with V of {q.name!r} perturbed",
                           expected_label="unperturbed (+ η·Σ δ·(μ a) for the state V feeds)",
                           detail=f"perturbed: backward synapses V of projection {q.name!r} (δ of scale "
                                  f"{run.options['scale']:g}); it feeds population {prog.pops[i].name!r}")


# ---------------------------------------------------------------------------- unrolls
class UnrollEqualsSingleSteps(Law):
    """DESIGN §2, §4: a run of ``n`` training steps is ``n`` single steps. ``blursim.sim.run``'s
    unrolls — :func:`~blursim.sim.run.train_unroll` and
    :func:`~blursim.sim.run.train_and_evaluate` — from fresh synapses on data ``(X, Y)`` end
    with the synapses (and step count) of ``n`` calls of :meth:`Simulator.train_step` on the
    batches :func:`~blursim.sim.run.train_batch` draws for steps ``0 .. n − 1``. ``X, Y``: the
    law's batches so far, stacked; batch size that of the first batch; data seed = ``seed``."""

    name = "unroll_equals_single_steps"
    equation = "DESIGN §2 step loop"
    statement = "an unroll of n steps ends where n single training steps end"
    atol = 1e-12
    rtol = 1e-12
    check_initial = False

    def advance(self, run, x, y):
        run.pool = getattr(run, "pool", []) + [(x, y)]

    def check(self, run):
        X = np.concatenate([x for x, _ in run.pool])
        Y = np.concatenate([y for _, y in run.pool])
        B, n, sim = len(run.pool[0][1]), run.t, run.sim
        genes, single = run.fresh(sim, [run.genome])
        for t in range(n):
            sim.train_step(single, genes, *_run.train_batch(X, Y, t, run.seed, B))
        run.state = single
        want = run.dense(single)
        _, unrolled = run.fresh(sim, [run.genome])
        _run.train_unroll(sim, unrolled, genes, X, Y, n, run.seed, B)
        data = SimpleNamespace(x_train=X, y_train=Y, x_test=X, y_test=Y)
        res = _run.train_and_evaluate(sim, [run.genome], data, steps=n, batch_size=B, replicas=run.replicas,
                                      seed=run.seed, eval_steps="end")
        for label, st in (("train_unroll", unrolled), ("train_and_evaluate", res.state)):
            run.compare(run.dense(st), want, value_label=f"after {label}({n} steps)",
                        expected_label=f"after {n} single steps")
            if st.steps != single.steps:
                run.fail(Where(variable="steps taken", extra=f"by {label}", step=n), value=st.steps,
                         expected=single.steps, tolerance="0", expected_label=f"{n} single steps")


forward_pass_closed_form = register_law(ForwardPassClosedForm())
backward_pass_closed_form = register_law(BackwardPassClosedForm())
normalisation_batch_statistics = register_law(NormalisationBatchStatistics())
feedback_sets_output_states = register_law(FeedbackSetsOutputStates())
synapse_update_closed_form = register_law(SynapseUpdateClosedForm())
oja_scales_by_exact_factor = register_law(OjaScalesByExactFactor())
untied_feedback_drives_backward = register_law(UntiedFeedbackDrivesBackward())
unroll_equals_single_steps = register_law(UnrollEqualsSingleSteps())
