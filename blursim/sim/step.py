r"""One BLUR training step, written once (DESIGN §2; paper eq. 5-8, Sec. 3.3-3.4, App. C.6).

This module is the step: the phase order, the schedules and every branch on
:class:`~blursim.spec.network.Rules` that changes what a step computes. It
reads ``program.rules`` and nothing else in :mod:`blursim.sim` does (the
engines ask it: :func:`tied`, :func:`keeps_states`). It performs no array
arithmetic of its own: every operation is a primitive of a kernel set
(:mod:`blursim.sim.kernels`), so that the same lines run

- on the reference kernels (:class:`blursim.sim.reference.ReferenceKernels`:
  NumPy, ``jax.numpy`` under ``jit`` -- the JAX engine --, CuPy), and
- on the fast kernels (:class:`blursim.sim.fast.FastKernels`: BLAS with the
  genome folded into ``alpha``/``beta``, block tiles, threads).

Reading it is reading the paper (symbols of Table 1; DESIGN §1)::

    1. reset                      a_p <- 0                   (rules.reset_neurons; else kept)
    2. input                      a_in^0 <- x
    3. forward  (eq. 5)           a_j <- sigma_fwd( N( f a_j + eta z_j ) ),  z_j = sum_q W_q^T (nu abar_i)
    4. feedback (Sec. 3.3)        a_o^1.. <- targets (rules.feedback)
    5. backward (eq. 6)           y_i = sum_q V_q (mu a_j)            (V_q = W_q^T when tied)
                                  additive:       a_i <- sigma_bwd( N( f a_i + eta y_i ) )
                                  multiplicative: a_i <- sigma_bwd( f a_i * y_i )
                                  mult. 2nd st.:  a_i <- sigma_bwd( f [a_i^0, a_i^1 y_i^1, ...] )
    6. synapses (eq. 7, 8)        E <- f~ E + eta~ (H + O),  H = rho_b P_b Q_b,  P = nu~^T a_src, Q = mu~ a_dst
                                    = D E + eta~ H,  D = f~ - |eta~| |alpha| n2   (O, rules.oja)
                                  then mask, saturation (Sec. 3.4)
       App. C.6                   synapse normalisation of the stored synapses, or of copies
                                  used by the activations (rules.synapse_normalization)

Schedules: ``topological`` visits the populations in (reverse) topological
order, each update seeing the previous ones; ``synchronous`` runs
``rules.sweeps`` sweeps, each computing every population from the previous
sweep's states.

Rule variants (docs/rule_variants.md): a variant of eq. (7) is a Hebbian
kernel written once over reference-layout arrays and registered in
:data:`HEBBIAN_KERNELS`; a Rules option chooses it in :func:`synapse_jobs`.
Kernel sets that have no fast kernel of that name run the reference kernel.
``rules.backward_synapses`` is the first such option: ``"learned"`` (eq. 7
with the roles swapped, the default), ``"frozen"`` (untied ``V`` never
changes: feedback alignment's fixed ``B``) and ``"mirror"`` (``V`` receives the
transpose of ``W``'s Hebbian term: Kolen-Pollack).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from blursim.sim.targets import check_targets, coded_targets, target_tables
from blursim.vocab.feedback import FEEDBACK

__all__ = ["SynapseJob", "HEBBIAN_KERNELS", "hebbian_kernel", "train_step", "evaluate", "forward_pass",
           "backward_pass", "apply_feedback", "learns_backward", "feedback_kind", "hebbian_form", "update_synapses", "synapse_update", "synapse_jobs", "tied",
           "keeps_states", "normalizes_for_evaluation", "targets", "target_codes", "check_labels"]


# ------------------------------------------------------------ what engines ask
def tied(program) -> bool:
    """Whether ``V_q`` is ``W_q^T`` (no backward synapses stored)."""
    return bool(program.rules.tied)


def learns_backward(program) -> bool:
    """Whether untied backward synapses ``V`` are updated (``rules.backward_synapses`` not frozen)."""
    return not program.rules.tied and program.rules.backward_synapses != "frozen"


def keeps_states(program) -> bool:
    """Whether neuron states persist from one training step to the next (``reset_neurons`` off)."""
    return not program.rules.reset_neurons


def targets(program, y, pop, xp, dtype):
    """``(coded, onehot)`` ``(B, n)`` targets of output ``pop`` for labels or target vectors ``y``
    (checked; :func:`blursim.sim.targets.coded_targets` by ``rules.target_coding``)."""
    rules = program.rules
    return coded_targets(y, pop.size, rules.target_coding, population=pop.name, feedback=rules.feedback,
                         xp=xp, dtype=dtype)


def feedback_kind(program):
    """The feedback function of ``rules.feedback`` (:data:`blursim.vocab.feedback.FEEDBACK`)."""
    return FEEDBACK.get(program.rules.feedback)


def check_labels(program, y, pop) -> None:
    """Labels or target vectors ``y`` fit output ``pop`` under ``rules.feedback`` (else a one-line
    :class:`~blursim.errors.DataError`; :func:`blursim.sim.targets.check_targets`)."""
    check_targets(y, pop.size, pop.name, program.rules.feedback)


def target_codes(program, pop):
    """The coding tables ``(coded, onehot)`` of :func:`blursim.sim.targets.target_tables` (traced labels)."""
    return target_tables(pop.size, program.rules.target_coding)


def normalizes_for_evaluation(program) -> bool:
    """Whether an evaluation forward pass uses normalised copies of the synapses (App. C.6)."""
    return program.rules.synapse_normalization == "activations"


# ---------------------------------------------------------- synapse jobs
@dataclass(frozen=True)
class SynapseJob:
    """One synapse array's update (eq. 7): projection ``q``'s forward synapses (``which = "W"``:
    ``src = pre``, ``dst = post``, with the bias row when ``bias``) or its backward synapses
    (``"V"``: ``src = post``, ``dst = pre``).

    Parameters of the equation, decided here from the rules and passed to the kernels:
    ``batch_mean`` (``rho`` is the batch mean, else the sum), ``channels`` (how a stored channel
    comes from eq. 7's ``k``: ``"all"`` -- one each --, ``"mean"`` or ``"first"`` for shared
    channels) and ``hebbian`` (the Hebbian kernel: ``"eq7"``, i.e. ``P = nu~^T a_src``,
    ``Q = mu~ a_dst``, or a variant of :data:`HEBBIAN_KERNELS`).
    """

    q: int
    which: str
    src: int
    dst: int
    group: str
    bias: bool
    batch_mean: bool
    channels: str
    hebbian: str = "eq7"


#: Rule variants of eq. (7)'s Hebbian term, written once over reference-layout arrays:
#: ``fn(g, a_src, a_dst) -> H`` with ``g`` the projection's genome group (``{field: (S, ...)}``),
#: states ``(S, R, B, n, k)`` (``a_src`` with the bias unit for a ``W`` with a bias) and
#: ``H[s, r, i, j, c]`` the batch *sum* ``(S, R, n_src, n_dst, k)``; the step applies ``rho``,
#: ``eta~``, the keep factor, the channel reduction, the mask and saturation. ``"eq7"`` is the
#: paper's own term, built into every kernel set.
HEBBIAN_KERNELS: dict[str, Callable[..., Any] | None] = {"eq7": None}


def hebbian_kernel(name: str):
    """Register a reference Hebbian kernel under ``name`` (decorator; docs/rule_variants.md)."""
    def register(fn):
        if name in HEBBIAN_KERNELS:
            raise ValueError(f"a Hebbian kernel named {name!r} exists already")
        HEBBIAN_KERNELS[name] = fn
        return fn
    return register


def _einsum_namespace(*arrays):
    from blursim.sim.reference import namespace

    return namespace(*arrays)


@hebbian_kernel("mirror")
def mirror_hebbian(g, a_src, a_dst):
    """Kolen-Pollack's backward update (Akrout et al. 2019; DESIGN §6): ``V`` receives the
    transpose of ``W``'s Hebbian term, ``H_V[j, i, c] = sum_b (mu~ a_j)_b[j, c] (nu~^T a_i)_b[i, c]``
    -- for ``V`` the source is the postsynaptic population ``j`` and the destination ``i``."""
    xp = _einsum_namespace(a_src, a_dst)
    Q = xp.einsum("scd,srbjd->srbjc", g["mu_tilde"], a_src)  # mu~ a_j
    P = xp.einsum("sec,srbie->srbic", g["nu_tilde"], a_dst)  # nu~^T a_i
    return xp.einsum("srbjc,srbic->srjic", Q, P)


def hebbian_form(program) -> tuple[bool, str]:
    """``(batch_mean, channels)`` of every synapse job (:class:`SynapseJob`): ``rho`` is the batch
    mean (``rules.batch_reduction``), and how shared channels store eq. (7)'s ``k`` updates
    (``rules.shared_update``)."""
    rules = program.rules
    channels = "all" if not program.shared else ("first" if rules.shared_update == "channel0" else "mean")
    return rules.batch_reduction == "mean", channels


_JOBS: dict[int, tuple] = {}


def synapse_jobs(program) -> list[SynapseJob]:
    """The synapse updates of one step: every ``W``, and every untied ``V`` that learns (made once
    per program)."""
    hit = _JOBS.get(id(program))
    if hit is not None and hit[0] is program:
        return hit[1]
    if len(_JOBS) > 64:
        _JOBS.clear()
    rules = program.rules
    mean, channels = hebbian_form(program)
    jobs = []
    for q in program.projs:
        if q.pathway != "feedback":  # a feedback pathway has no forward synapses (DESIGN §6)
            jobs.append(SynapseJob(q.index, "W", q.pre, q.post, q.group, bool(q.bias), mean, channels))
        if not learns_backward(program) or q.pathway == "forward":
            continue  # no V (tied), feedback alignment's fixed B (frozen), or a V no backward pass reads
        heb = "mirror" if rules.backward_synapses == "mirror" else "eq7"
        jobs.append(SynapseJob(q.index, "V", q.post, q.pre, q.group, False, mean, channels, heb))
    _JOBS[id(program)] = (program, jobs)
    return jobs


# ------------------------------------------------------------- one step
def train_step(K, run, program) -> Any:
    """One training step (DESIGN §2) on the kernel set ``K`` and its per-chunk ``run``; returns
    the synapses the step updated (the kernels' own form)."""
    rules = program.rules
    syn = K.synapses(run)
    eps = rules.synapse_norm_eps
    if rules.synapse_normalization == "stored":  # App. C.6, written back at the start of the step
        syn = K.normalize_synapses(run, syn, eps, False)
    act = K.normalize_synapses(run, syn, eps, True) if rules.synapse_normalization == "activations" else syn
    K.start(run, not rules.reset_neurons)  # steps 1-2
    forward_pass(K, run, program, act)  # step 3, eq. (5)
    K.record(run, "forward")
    apply_feedback(K, run, program)  # step 4, Sec. 3.3
    K.record(run, "feedback")
    backward_pass(K, run, program, act)  # step 5, eq. (6)
    K.record(run, "backward")
    return update_synapses(K, run, program, syn)  # step 6, eq. (7)-(8)


def evaluate(K, run, program) -> None:
    """DESIGN §2 step 7: a forward pass from reset states (the outputs' state 0 is read by the engine)."""
    syn = K.synapses(run)
    if normalizes_for_evaluation(program):
        syn = K.normalize_synapses(run, syn, program.rules.synapse_norm_eps, True)
    K.start(run, False)
    forward_pass(K, run, program, syn)


def _sweeps(program):
    """``(sweep, buffer)`` pairs: one in-order pass, or ``sweeps`` synchronous sweeps whose
    results go to alternating buffers (each sweep reads the previous one's states)."""
    rules = program.rules
    if rules.schedule == "synchronous":
        return [(s, s % 2) for s in range(rules.sweeps)]
    return [(0, None)]


def forward_pass(K, run, program, syn) -> None:
    """Eq. (5) for every non-input population ``j``: ``a_j <- sigma_fwd(N(f a_j + eta z_j))``,
    ``z_j^c = sum_{q: i -> j} sum_i W_q[i, j, c] (nu_q abar_i)^c``."""
    eps = program.rules.norm_eps
    for _, buf in _sweeps(program):
        new = {}
        for j in program.forward_order:
            p = program.pops[j]
            x = K.drive(run, j, syn, "forward", "f", "eta", 0 if buf is None else buf)
            if p.norm_fwd:
                x = K.normalize(run, x, j, eps)
            x = K.activate(run, x, p.fwd_names)
            if buf is None:
                K.set_state(run, j, x)
            else:
                new[j] = x
        for j, x in new.items():
            K.set_state(run, j, x)


def apply_feedback(K, run, program) -> None:
    """Sec. 3.3: the targets into every output population (``rules.feedback``)."""
    kind = feedback_kind(program)
    for o in program.outputs:
        K.feedback(run, o, kind)


def backward_pass(K, run, program, syn) -> None:
    """Eq. (6) for the non-input populations with outgoing projections, in reverse order:
    ``y_i^c = sum_{q: i -> j} sum_j V_q[j, i, c] (mu_q a_j)^c`` and ``rules.backward_update``."""
    rules = program.rules
    mode = rules.backward_update
    for _, buf in _sweeps(program):
        new = {}
        for i in program.backward_order:
            p = program.pops[i]
            if mode == "additive":  # f a_i + eta y_i
                x = K.drive(run, i, syn, "backward", "f", "eta", buf)
                if p.norm_bwd:
                    x = K.normalize(run, x, i, rules.norm_eps)
            else:  # f y_i, then a^c (f y^c) for c >= first, f a^c below
                y = K.drive(run, i, syn, "backward", None, "f", "y")
                x = K.gate(run, i, y, 0 if mode == "multiplicative" else 1, "f", buf)
            x = K.activate(run, x, p.bwd_names)
            if buf is None:
                K.set_state(run, i, x)
            else:
                new[i] = x
        for i, x in new.items():
            K.set_state(run, i, x)


def update_synapses(K, run, program, syn) -> Any:
    """Eq. (7)-(8) for every synapse job (:func:`synapse_jobs`); they only read neuron states, so
    a kernel set may run them side by side."""
    return K.run_jobs(run, synapse_jobs(program), lambda job: synapse_update(K, run, program, syn, job))


def synapse_update(K, run, program, syn, job: SynapseJob) -> None:
    """Eq. (7) with eq. (8)'s Oja term and saturation (Sec. 3.4) for one synapse array::

        E <- f~ E + eta~ (H + O) = D E + eta~ H,   D = f~ - |eta~| |alpha| n2   (D = f~ without O)
        n2 = sum_src E^2 (bias row included)        ("weights": eq. 8's first term)
        n2 = rho_b Q_b^2                            ("activity": App. B)
        E <- s tanh(E / s)                          (rules.saturation)
    """
    rules = program.rules
    K.record_hebbian(run, job)  # a monitor's H (no-op unless recorded)
    keep = None
    if rules.oja == "weights":
        keep = K.oja_keep(run, job, K.column_sq(run, job, syn))
    elif rules.oja == "activity":
        keep = K.oja_keep(run, job, K.activity_sq(run, job))
    K.hebbian_update(run, job, syn, keep)
    if rules.saturation:
        K.saturate(run, job, syn)
