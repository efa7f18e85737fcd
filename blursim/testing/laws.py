"""Laws of BLUR: properties that hold for every genome under stated rules, as one-line assertions.

A *law* is a named, documented property of the BLUR step (DESIGN §1-3; paper
eq. 5-8, Sec. 3.3-3.5) that holds for **every** genome within a stated
domain of rules (and, for a few laws, of genomes). Each law is a callable::

    from blursim.testing import laws
    laws.masked_synapses_stay_zero(spec, genome, batches)   # raises LawViolation if broken

It trains on ``batches`` (one ``(x, y)`` batch or a list, one step per batch
unless ``n_steps`` cycles them), in float64 on NumPy, and checks the law
after every step. A broken law raises :class:`~blursim.testing.report.LawViolation`
naming the law, the variable, its index (projection, synapse, channel,
species, replica, step), the value, the expected value and the tolerance,
with the counterexample attached (``err.save(DIR)`` writes it, replayed
by ``blursim replay DIR``). A law called outside its domain raises
:class:`LawNotApplicable` (a ``ValueError``) saying why, unless
``check_domain=False`` — then it runs, and is expected to break.

``law.why_not(spec, genome)`` is the reason a law does not hold there
(``None`` inside its domain), ``law.applies(spec, genome)`` the boolean,
``law.conform(genome)`` the nearest genome inside its genome domain (the
identity for most laws). :data:`LAWS` lists every law by name;
:func:`applicable_laws` and :func:`check_all` run those that hold for a rule.

Which law holds under which rules (docs/testing.md has the full table):

================================  ==========================================================
``masked_synapses_stay_zero``     every rule set and genome
``frozen_plasticity``             genomes with η̃ = 0, f̃ = 1 in every group; not under
                                  ``saturation`` or ``synapse_normalization: stored``
``saturation_bounds_synapses``    ``saturation: true`` (after the first step)
``tied_synapses_stay_tied``       untied and V learning, ``oja: none``, no stored normalisation;
                                  genomes whose Hebbian term is symmetric (e.g. μ̃ = ν̃ᵀ)
``tied_channels_stay_tied``       every rule set; genomes whose eq. (7) product is the same
                                  for every channel (e.g. equal ν̃ columns and μ̃ rows)
``hidden_relabelling_equivariance`` every rule set and genome
``species_independence``          every rule set and genome
``replica_independence``          every rule set and genome
``batch_order_invariance``        every rule set and genome (sum or mean reduction)
``backprop_is_gradient_like``     DESIGN §3 rules, the backprop genome (any learning rate)
``backprop_equals_sgd``           DESIGN §3 rules, the backprop genome (any learning rate)
================================  ==========================================================

and one law per equation of the step, read through the public Simulator API
(:mod:`blursim.testing.step_laws`, registered here): ``forward_pass_closed_form`` (eq. 5),
``backward_pass_closed_form`` (eq. 6), ``normalisation_batch_statistics`` (Sec. 3.4),
``feedback_sets_output_states`` (Sec. 3.3), ``synapse_update_closed_form`` (eq. 7-8),
``oja_scales_by_exact_factor`` (eq. 8), ``untied_feedback_drives_backward`` (eq. 6, untied V),
``unroll_equals_single_steps``. Every failure names the law's equation (``Law.equation``).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blursim.analysis import BlurUpdateMap, asymmetry_report, jacobian
from blursim.genome import random_genome
from blursim.graph import as_program, compile_network
from blursim.errors import SpecError
from blursim.registry import Registry
from blursim.sim import Simulator
from blursim.spec import load_genome, load_network
from blursim.testing.assertions import cycle_batches, invariant_arity
from blursim.testing.counterexample import Counterexample
from blursim.testing.report import (
    SAVE_ENV,
    LawViolation,
    Where,
    rules_summary,
    where_of,
    worst_entry,
)

__all__ = [
    "LAWS",
    "InvariantLaw",
    "Law",
    "LawNotApplicable",
    "LawRun",
    "law_named",
    "builtin_laws",
    "replay",
    "applicable_laws",
    "check_all",
    "masked_synapses_stay_zero",
    "frozen_plasticity",
    "saturation_bounds_synapses",
    "tied_synapses_stay_tied",
    "tied_channels_stay_tied",
    "hidden_relabelling_equivariance",
    "species_independence",
    "replica_independence",
    "batch_order_invariance",
    "backprop_is_gradient_like",
    "backprop_equals_sgd",
    "forward_pass_closed_form",
    "backward_pass_closed_form",
    "normalisation_batch_statistics",
    "feedback_sets_output_states",
    "synapse_update_closed_form",
    "oja_scales_by_exact_factor",
    "untied_feedback_drives_backward",
    "unroll_equals_single_steps",
    "step_laws",
]


class LawNotApplicable(ValueError):
    """A law was asked to hold outside its domain (rules or genome); the message says why."""


LAWS: Registry["Law"] = Registry("law")

_Key = tuple[int, str]  # (projection index, "W" | "b" | "V")


def _program(spec):
    return as_program(spec)


def _genome(genome):
    return load_genome(genome)


def _dense(state, n_proj: int) -> dict[_Key, np.ndarray]:
    """Every stored synapse array, dense internal layout ``(S, R, kw, ...)``, as host float64 copies."""
    out = {}
    for q in range(n_proj):
        for w in ("W", "b", "V"):
            a = state.get(q, w)
            if a is not None:
                out[(q, w)] = np.array(a)
    return out


def _load_dense(state, arrays: dict[_Key, np.ndarray]) -> None:
    for (q, w), a in arrays.items():
        state.set(q, w, a)


def _batches(batches: Any, n_steps: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64))
            for x, y in cycle_batches(batches, n_steps)]


# ------------------------------------------------------------------- a running law
class LawRun:
    """One law being checked along a run of training steps (what a law call, a state machine and
    a replay all drive): :meth:`step` trains every simulation the law compares on one batch,
    :meth:`check` raises :class:`LawViolation` if the law is broken now.

    Attributes: ``law``, ``program``, ``genome`` (``GenomeSpec``), ``seed``, ``replicas``,
    ``options`` (resolved, JSON-ready), ``t`` (steps taken), ``batches`` (taken so far),
    ``initial`` and ``current`` (dense synapse arrays of the main simulation, keyed by
    ``(projection, "W"|"b"|"V")``), ``worst`` (largest deviation seen, as a fraction of the
    tolerance).
    """

    def __init__(self, law: "Law", program, genome, *, seed: int = 0, replicas: int | None = None,
                 state=None, atol: float | None = None, rtol: float | None = None,
                 check_domain: bool = True, save: Any = None, options: dict | None = None) -> None:
        self.law, self.program, self.genome = law, program, genome
        self.seed = int(seed)
        self.replicas = int(replicas if replicas is not None else law.replicas)
        self.atol = law.atol if atol is None else float(atol)
        self.rtol = law.rtol if rtol is None else float(rtol)
        self.check_domain, self.save_to = check_domain, save
        self.given_state = None if state is None else _given_state(state, len(program.projs))
        if self.given_state is not None:
            self.replicas = int(next(iter(self.given_state.values())).shape[1])
        self.t = 0
        self.batches: list[tuple[np.ndarray, np.ndarray]] = []
        self.worst = 0.0
        self.sim = Simulator(program, backend="numpy", dtype="float64")
        self.options = law.resolve_options(self, dict(options or {}))
        law.setup(self)

    # ---- helpers for laws
    def fresh(self, sim, genomes, replicas: int | None = None):
        """``(genes, state)``: ``genomes`` prepared for ``sim`` and their initial synapses (the given
        state, repeated over species, or the seeded init)."""
        genes = sim.prepare(list(genomes))
        R = self.replicas if replicas is None else replicas
        st = sim.init_synapses(genes, replicas=R, seed=self.seed)
        if self.given_state is not None:
            S = next(iter(genes.values())).S
            _load_dense(st, {k: np.repeat(v[:1], S, axis=0) for k, v in self.given_state.items()})
        return genes, st

    def dense(self, state) -> dict[_Key, np.ndarray]:
        return _dense(state, len(self.program.projs))

    # ---- driving
    def step(self, x, y) -> None:
        """One training step on batch ``(x, y)`` of every simulation the law compares."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        self.batches.append((x, y))
        self.t += 1
        self.law.advance(self, x, y)

    def check(self) -> None:
        """Raise :class:`LawViolation` if the law is broken after the steps taken so far."""
        self.law.check(self)

    # ---- failing
    def counterexample(self, message: str = "") -> Counterexample:
        spec = self.program.spec.model_dump(mode="json", by_alias=True)
        return Counterexample(
            law=self.law.name, spec=spec, genome=self.genome.model_dump(mode="json", exclude_none=True),
            batches=list(self.batches), options=copy.deepcopy(self.options), seed=self.seed,
            replicas=self.replicas, atol=self.atol, rtol=self.rtol, check_domain=self.check_domain,
            state=None if self.given_state is None else {f"{w}_{q}": a for (q, w), a in self.given_state.items()},
            message=message, module=getattr(self.law, "module", None) or type(self.law).__module__,
        )

    def fail(self, where: Where, **kw) -> None:
        """Raise the law's :class:`LawViolation` at ``where`` (keywords as for the exception)."""
        kw.setdefault("rules", rules_summary(self.program))
        kw.setdefault("equation", self.law.equation)
        err = LawViolation(self.law.name, self.law.statement, where, **kw)
        err.counterexample = self.counterexample(err.core)
        err.args = (err.core + "\n" + err._hint(),)
        target = self.save_to
        if target is None and os.environ.get(SAVE_ENV) and not _shrinking():
            target = Path(os.environ[SAVE_ENV]) / self.law.name
        if target:
            err.save(target)
        raise err

    def compare(self, got: dict[_Key, np.ndarray], want: dict[_Key, np.ndarray], *, atol: float | None = None,
                rtol: float | None = None, value_label: str = "value", expected_label: str = "expected",
                species_map=None, replica_map=None, n_species: int | None = None, detail: str = "",
                program=None) -> None:
        """Fail at the entry of ``got`` farthest beyond ``|got − want| ≤ atol + rtol·|want|``
        (dense internal arrays, compared in label layout)."""
        atol = self.atol if atol is None else atol
        rtol = self.rtol if rtol is None else rtol
        prog = program or self.program
        total, count, worst = 0, 0, None
        for key in got:
            g = np.moveaxis(got[key], 2, -1)
            w = np.moveaxis(want[key], 2, -1)
            n, idx, excess = worst_entry(g, w, atol, rtol)
            total += g.size
            count += n
            if idx is not None and (worst is None or excess > worst[0]):
                worst = (excess, key, idx, g[idx], w[idx])
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                lim = atol + rtol * np.abs(w)
                frac = np.abs(g - w) / np.where(lim > 0, lim, np.inf)
            if frac.size and np.all(np.isfinite(frac)):
                self.worst = max(self.worst, float(frac.max()))
        if worst is None:
            return
        _, (q, which), idx, gv, wv = worst
        where = where_of(prog, q, which, idx, step=self.t, n_species=n_species,
                         species_map=species_map, replica_map=replica_map)
        tol = f"{atol:g} + {rtol:g}·|expected| = {atol + rtol * abs(float(wv)):.3g}" if rtol else f"{atol:g}"
        self.fail(where, value=gv, expected=wv, tolerance=tol, count=count, total=total,
                  value_label=value_label, expected_label=expected_label, detail=detail)


def _shrinking() -> bool:
    """True while Hypothesis is still searching or shrinking (not on the final run it reports):
    ``$BLURSIM_COUNTEREXAMPLES`` then saves only the failure Hypothesis reports."""
    try:
        from hypothesis.control import current_build_context, currently_in_test_context

        return currently_in_test_context() and not current_build_context().is_final
    except Exception:  # no Hypothesis, or another version's internals
        return False


def _given_state(state, n_proj: int) -> dict[_Key, np.ndarray]:
    if isinstance(state, dict):  # as saved in a counterexample: {"W_0": ...}
        out = {}
        for name, a in state.items():
            w, q = name.split("_")
            out[(int(q), w)] = np.asarray(a)
        return out
    return _dense(state, n_proj)


# ---------------------------------------------------------------------- the laws
class Law:
    """Base class of a law. Subclasses set ``name``, ``statement`` and ``holds_under`` and implement
    :meth:`setup`, :meth:`advance` and :meth:`check` (and :meth:`why_not` / :meth:`conform` when
    the law has a domain). Register an instance in :data:`LAWS` to make it replayable by name."""

    name = ""
    statement = ""
    #: The paper's equation or section (or DESIGN's) the law checks, named in every failure.
    equation = ""
    holds_under = "every rule set and genome"
    atol = 0.0
    rtol = 0.0
    replicas = 1
    #: Checked before the first step too (``False`` for laws that only hold after one).
    check_initial = True

    # ---- domain
    def why_not_program(self, program) -> str | None:
        """Why the law does not hold under these rules / this network (``None``: it holds)."""
        return None

    def why_not_genome(self, program, genome) -> str | None:
        """Why the law does not hold for this genome (``None``: it holds)."""
        return None

    def why_not(self, spec, genome) -> str | None:
        """Why the law does not hold for ``spec`` and ``genome``; ``None`` inside its domain."""
        prog = _program(spec)
        return self.why_not_program(prog) or self.why_not_genome(prog, _genome(genome))

    def applies(self, spec, genome) -> bool:
        """True inside the law's domain (use with ``hypothesis.assume``)."""
        return self.why_not(spec, genome) is None

    def conform(self, genome):
        """The genome moved into the law's genome domain (identity unless the law restricts genomes)."""
        return _genome(genome)

    # ---- running
    def take_options(self, options: dict, *names: str) -> list:
        """The values of the options ``names`` (``None`` when not given); others are an error."""
        extra = sorted(set(options) - set(names))
        if extra:
            valid = ", ".join(repr(n) for n in names) or "none"
            raise TypeError(f"law {self.name!r} takes the options {valid}; got {extra}")
        return [options.get(n) for n in names]

    def resolve_options(self, run: LawRun, options: dict) -> dict:
        """The law's options, complete and JSON-ready (recorded in counterexamples)."""
        self.take_options(options)
        return {}

    def setup(self, run: LawRun) -> None:
        run.genes, run.state = run.fresh(run.sim, [run.genome])
        run.initial = run.dense(run.state)

    def advance(self, run: LawRun, x, y) -> None:
        run.sim.train_step(run.state, run.genes, x, y)

    def check(self, run: LawRun) -> None:
        raise NotImplementedError

    def start(self, spec, genome, *, seed: int = 0, replicas: int | None = None, state=None,
              atol: float | None = None, rtol: float | None = None, check_domain: bool = True,
              save: Any = None, **options) -> LawRun:
        """A :class:`LawRun` at step 0 (for state machines and custom drivers)."""
        prog = _program(spec)
        g = _genome(genome)
        if check_domain:
            why = self.why_not_program(prog) or self.why_not_genome(prog, g)
            if why:
                raise LawNotApplicable(
                    f"law {self.name!r} does not hold here: {why}. It holds under: {self.holds_under}. "
                    "(Pass check_domain=False to run it anyway.)")
        return LawRun(self, prog, g, seed=seed, replicas=replicas, state=state, atol=atol, rtol=rtol,
                      check_domain=check_domain, save=save, options=options)

    def __call__(self, spec, genome, batches, n_steps: int | None = None, *, seed: int = 0,
                 replicas: int | None = None, state=None, atol: float | None = None,
                 rtol: float | None = None, check_domain: bool = True, save: Any = None, **options) -> LawRun:
        """Assert the law on ``spec`` and ``genome`` along a run over ``batches``.

        ``batches``: one ``(x, y)`` batch or a list, cycled for ``n_steps`` steps (default one
        step per batch). ``seed``: synapse init. ``replicas``: independent initialisations.
        ``state``: initial synapses (a ``SynapseState``, species 0 used) instead of the seeded
        init. ``atol``/``rtol``: tolerance ``|got − expected| ≤ atol + rtol·|expected|``.
        ``save``: folder to write a counterexample to on failure (default: ``$BLURSIM_COUNTEREXAMPLES/<law>``
        when that variable is set; ``False``: never). Other keywords are the law's options.
        Returns the finished :class:`LawRun`.
        """
        run = self.start(spec, genome, seed=seed, replicas=replicas, state=state, atol=atol, rtol=rtol,
                         check_domain=check_domain, save=save, **options)
        if self.check_initial:
            run.check()
        for x, y in _batches(batches, n_steps):
            run.step(x, y)
            run.check()
        return run

    def __repr__(self) -> str:
        return f"<law {self.name}: {self.statement}>"


def register_law(law: Law) -> Law:
    LAWS.register(law.name, law, doc=law.statement)
    return law


# -------------------------------------------------------------- masked stay zero
class MaskedSynapsesStayZero(Law):
    """DESIGN §1: entries outside a projection's connectivity mask are 0 and stay 0 after every
    update (eq. 7's Hebbian product is masked, every other term of eq. 7-8 is proportional to the
    synapse itself, saturation maps 0 to 0)."""

    name = "masked_synapses_stay_zero"
    equation = "DESIGN §1 mask; eq. (7)-(8)"
    statement = "synapses outside the connectivity mask are exactly 0 and stay 0 after every step"

    def check(self, run):
        cur = run.dense(run.state)
        want = {}
        for (q, w), a in cur.items():
            mask = run.program.projs[q].mask
            if mask is None or w == "b":
                want[(q, w)] = a
            else:
                want[(q, w)] = a * (mask if w == "W" else mask.T)
        run.compare(cur, want, atol=0.0, rtol=0.0, expected_label="expected (outside the mask)")


# ------------------------------------------------------------- frozen plasticity
class FrozenPlasticity(Law):
    """Eq. (7): with ``η̃ = 0`` and ``f̃ = 1`` the update is ``W ← 1·W + 0·(H + O)`` = ``W``
    exactly, for every other genome value and rule — except saturation (Sec. 3.4), which maps
    ``W`` to ``s·tanh(W/s)`` after every update, and stored synapse normalisation (App. C.6),
    which rewrites ``W`` at the start of every step. (Neuron states must stay finite: ``0·∞``
    is not 0.)"""

    name = "frozen_plasticity"
    equation = "eq. (7) with η̃ = 0, f̃ = 1"
    statement = "with η̃ = 0 and f̃ = 1 (frozen plasticity) no synapse ever changes"
    holds_under = ("genomes with eta_tilde = 0 and f_tilde = 1 in every group; any rules except "
                   "saturation: true and synapse_normalization: stored")

    def why_not_program(self, prog):
        if prog.rules.saturation:
            return "rules.saturation = true rescales every synapse (W ← s·tanh(W/s)) even without plasticity"
        if prog.rules.synapse_normalization == "stored":
            return ("rules.synapse_normalization = 'stored' rewrites the synapses at the start of every "
                    "step (App. C.6)")
        return None

    def why_not_genome(self, prog, genome):
        for g in prog.groups:
            p = genome.groups[g]
            if p.eta_tilde != 0 or p.f_tilde != 1:
                return f"genome group {g!r} has eta_tilde = {p.eta_tilde:g}, f_tilde = {p.f_tilde:g} (needs 0 and 1)"
        return None

    def conform(self, genome):
        g = _genome(genome)
        return g.model_copy(update={"groups": {
            n: p.model_copy(update={"eta_tilde": 0.0, "f_tilde": 1.0}) for n, p in g.groups.items()}})

    def check(self, run):
        run.compare(run.dense(run.state), run.initial, atol=0.0, rtol=0.0,
                    expected_label="initial value")


# ------------------------------------------------------------ saturation bounds
class SaturationBoundsSynapses(Law):
    """Sec. 3.4: with ``saturation: true`` every update ends with ``W ← s·tanh(W/s)``,
    ``s = |saturation|`` of the projection's genome group, so after any step every synapse
    (``W``, bias, ``V``) satisfies ``|W| ≤ s``, whatever the genome (a frozen ``V``,
    ``backward_synapses: frozen``, gets no eq. (7) update, so no saturation either)."""

    name = "saturation_bounds_synapses"
    equation = "Sec. 3.4 saturation"
    statement = "with saturation every synapse satisfies |w| ≤ s = |saturation| after every step"
    holds_under = ("saturation: true (any genome); checked after each step, not at the initialisation (a fixed V of "
                   "backward_synapses: frozen is never updated, so not checked)")
    rtol = 1e-12
    check_initial = False

    def why_not_program(self, prog):
        if not prog.rules.saturation:
            return "rules.saturation is false: nothing bounds the synapses"
        return None

    def check(self, run):
        cur = run.dense(run.state)
        if run.program.rules.backward_synapses == "frozen":  # fixed V is never updated, so never saturated
            cur = {k: a for k, a in cur.items() if k[1] != "V"}
        bound = {}
        for (q, w), a in cur.items():
            grp = run.program.projs[q].group
            s = run.genome.groups[grp].saturation
            s = abs(1.0 if s is None else s)
            bound[(q, w)] = np.clip(a, -s, s)
        run.compare(cur, bound, atol=0.0, expected_label="bound (clipped to ±s)")


# --------------------------------------------------------------- tied stay tied
def _hebbian_asymmetry(p) -> float:
    """``max_{c,d,e} |ν̃[e,c] μ̃[c,d] − ν̃[d,c] μ̃[c,e]|``: 0 iff eq. (7)'s product for ``W[i,j]``
    equals that for ``V[j,i]`` for all neuron states."""
    nt, mt = np.asarray(p.nu_tilde), np.asarray(p.mu_tilde)
    K = np.einsum("ec,cd->ced", nt, mt)  # K[c] = ν̃[:, c] ⊗ μ̃[c, :]
    return float(np.abs(K - np.swapaxes(K, 1, 2)).max())


class TiedSynapsesStayTied(Law):
    """Untied backward synapses that start as the transposed forward ones, ``V_q = W_qᵀ`` (bias row
    excluded), stay so (DESIGN §1-2). Eq. (7) updates ``W[i,j,c]`` by ``ρ_b (ν̃ᵀa_i)^c (μ̃a_j)^c``
    and ``V[j,i,c]`` by ``ρ_b (ν̃ᵀa_j)^c (μ̃a_i)^c`` from the same neuron states: equal for all
    states iff ``ν̃[:, c]`` is parallel to ``μ̃[c, :]`` for every channel ``c`` (e.g. ``μ̃ = ν̃ᵀ``),
    the genome domain. The keep gate and saturation act elementwise. The Oja term (eq. 8) and
    stored synapse normalisation (App. C.6) normalise ``W`` over presynaptic and ``V`` over
    postsynaptic neurons, so they break the law."""

    name = "tied_synapses_stay_tied"
    equation = "eq. (7) for W and untied V"
    statement = "backward synapses that start as the transposed forward ones (V = Wᵀ) stay so"
    holds_under = ("untied networks (tied: false) whose V learns (backward_synapses learned or mirror), oja: none, "
                   "synapse_normalization other than 'stored'; under 'learned' genomes with ν̃[:, c] parallel to "
                   "μ̃[c, :] for every c (e.g. mu_tilde = nu_tildeᵀ), under 'mirror' every genome")
    atol = 1e-12
    rtol = 1e-10

    def why_not_program(self, prog):
        r = prog.rules
        if r.tied:
            return "rules.tied = true: V is not stored, it is Wᵀ by construction (nothing to test)"
        if r.backward_synapses == "frozen":
            return "rules.backward_synapses = 'frozen': V never changes while W learns"
        if r.oja != "none":
            return f"rules.oja = {r.oja!r}: the Oja term normalises W and V over different neurons"
        if r.synapse_normalization == "stored":
            return "rules.synapse_normalization = 'stored' normalises W and V over different neurons"
        return None

    def why_not_genome(self, prog, genome):
        if prog.rules.backward_synapses == "mirror":  # V gets W's Hebbian term transposed: any genome
            return None
        for g in prog.groups:
            a = _hebbian_asymmetry(genome.groups[g])
            scale = max(1.0, float(np.abs(genome.groups[g].nu_tilde).max() * np.abs(genome.groups[g].mu_tilde).max()))
            if a > 1e-12 * scale:
                return (f"genome group {g!r}: eq. (7)'s product is not symmetric in pre and post "
                        f"(max |ν̃[e,c]μ̃[c,d] − ν̃[d,c]μ̃[c,e]| = {a:.3g}; make mu_tilde = nu_tildeᵀ)")
        return None

    def conform(self, genome):
        g = _genome(genome)
        return g.model_copy(update={"groups": {
            n: p.model_copy(update={"mu_tilde": np.asarray(p.nu_tilde).T.tolist()}) for n, p in g.groups.items()}})

    def setup(self, run):
        run.genes, run.state = run.fresh(run.sim, [run.genome])
        for q in range(len(run.program.projs)):
            run.state.set(q, "V", np.swapaxes(np.asarray(run.state.get(q, "W")), -1, -2))
        run.initial = run.dense(run.state)

    def check(self, run):
        cur = run.dense(run.state)
        got = {k: a for k, a in cur.items() if k[1] == "V"}
        want = {(q, "V"): np.swapaxes(cur[(q, "W")], -1, -2) for q, _ in got}
        run.compare(got, want, expected_label="Wᵀ")


class TiedChannelsStayTied(Law):
    """All ``k`` channels of every synapse that start equal stay equal (DESIGN §1's
    ``shared_channels`` is this law made structural). Eq. (7)'s update of channel ``c`` is
    ``ρ_b Σ_{e,d} ν̃[e,c] μ̃[c,d] a_i^e a_j^d``: the same for every channel, whatever the states,
    iff ``K_c = ν̃[:, c] ⊗ μ̃[c, :]`` does not depend on ``c`` (with ``oja: activity`` also
    ``|μ̃[c, :]|`` must not); the keep gate, the Oja term of eq. (8), synapse normalisation and
    saturation act per channel alike. The backprop genome is inside this domain."""

    name = "tied_channels_stay_tied"
    equation = "eq. (7) per channel"
    statement = "the k channels of a synapse that start equal stay equal"
    holds_under = ("every rule set; genomes whose ν̃[:, c] ⊗ μ̃[c, :] is the same for every channel c "
                   "(e.g. equal nu_tilde columns and equal mu_tilde rows; with oja: activity, equal |mu_tilde| rows)")
    atol = 1e-12
    rtol = 1e-10

    def why_not_genome(self, prog, genome):
        for g in prog.groups:
            p = genome.groups[g]
            nt, mt = np.asarray(p.nu_tilde), np.asarray(p.mu_tilde)
            K = np.einsum("ec,cd->ced", nt, mt)
            a = float(np.abs(K - K[:1]).max())
            scale = max(1.0, float(np.abs(K).max()))
            if a > 1e-12 * scale:
                return (f"genome group {g!r}: eq. (7)'s product differs between channels "
                        f"(max |ν̃[e,c]μ̃[c,d] − ν̃[e,0]μ̃[0,d]| = {a:.3g})")
            if prog.rules.oja == "activity" and np.abs(np.abs(mt) - np.abs(mt[:1])).max() > 1e-12 * scale:
                return f"genome group {g!r}: with oja = 'activity' the rows of mu_tilde must be equal up to sign"
        return None

    def conform(self, genome):
        g = _genome(genome)
        out = {}
        for n, p in g.groups.items():
            nt, mt = np.asarray(p.nu_tilde), np.asarray(p.mu_tilde)
            out[n] = p.model_copy(update={"nu_tilde": np.repeat(nt[:, :1], g.k, axis=1).tolist(),
                                          "mu_tilde": np.repeat(mt[:1], g.k, axis=0).tolist()})
        return g.model_copy(update={"groups": out})

    def setup(self, run):
        run.genes, run.state = run.fresh(run.sim, [run.genome])
        for (q, w), a in run.dense(run.state).items():
            run.state.set(q, w, np.repeat(a[:, :, :1], a.shape[2], axis=2))
        run.initial = run.dense(run.state)

    def check(self, run):
        cur = run.dense(run.state)
        want = {k: np.broadcast_to(a[:, :, :1], a.shape) for k, a in cur.items()}
        run.compare(cur, want, expected_label="channel 0")


# ----------------------------------------------------------------- equivariance
def _perm_arrays(arrays: dict[_Key, np.ndarray], program, perms: dict[int, np.ndarray]) -> dict[_Key, np.ndarray]:
    """Relabel neurons: population ``p``'s new neuron ``n`` is the old neuron ``perms[p][n]``."""
    out = {}
    for (q, w), a in arrays.items():
        proj = program.projs[q]
        pre = perms.get(proj.pre)
        post = perms.get(proj.post)
        if w == "W":  # (..., n_pre, n_post)
            a = a[..., pre, :] if pre is not None else a
            a = a[..., post] if post is not None else a
        elif w == "b":  # (..., n_post)
            a = a[..., post] if post is not None else a
        else:  # V (..., n_post, n_pre)
            a = a[..., post, :] if post is not None else a
            a = a[..., pre] if pre is not None else a
        out[(q, w)] = np.ascontiguousarray(a)
    return out


class HiddenRelabellingEquivariance(Law):
    """Neurons of a population are interchangeable (DESIGN §1: every neuron of a population runs
    the same eq. 5-8 with the same genome; normalisation is per neuron, the Oja and synapse
    normalisation sums run over whole rows or columns). So relabelling the neurons of hidden
    populations — permuting their synapses and their connectivity masks — and training on the
    same data gives the original result relabelled the same way. (Input and output neurons are
    tied to features and classes, so they keep their labels.)

    Option ``permutations``: ``{population name: [new neuron n is old neuron perm[n], ...]}``
    (default: a seeded random permutation of every hidden population)."""

    name = "hidden_relabelling_equivariance"
    equation = "eq. (5)-(8) per neuron"
    statement = "relabelling hidden neurons relabels the result the same way (permutation equivariance)"
    atol = 1e-10
    rtol = 1e-9

    def resolve_options(self, run, options):
        (perms,) = self.take_options(options, "permutations")
        prog = run.program
        if perms is None:
            rng = np.random.default_rng(np.random.SeedSequence([run.seed, 0x7065726D]))
            perms = {}
            for p in prog.pops:
                if p.role == "hidden":
                    perm = rng.permutation(p.size)
                    if p.size > 1 and np.array_equal(perm, np.arange(p.size)):
                        perm = perm[::-1]  # never the identity: that would test nothing
                    perms[p.name] = perm.tolist()
        out = {}
        for name, perm in perms.items():
            p = prog.pop(name)
            if p.role != "hidden":
                raise ValueError(f"permutations: population {name!r} is a {p.role} population; relabel hidden ones")
            perm = [int(i) for i in perm]
            if sorted(perm) != list(range(p.size)):
                raise ValueError(f"permutations[{name!r}] = {perm} is not a permutation of 0..{p.size - 1}")
            out[name] = perm
        return {"permutations": out}

    def setup(self, run):
        prog = run.program
        run.perms = {prog.pop(n).index: np.asarray(p) for n, p in run.options["permutations"].items()}
        spec = prog.spec.model_dump(mode="json", by_alias=True)
        for q in prog.projs:
            if q.mask is not None and (q.pre in run.perms or q.post in run.perms):
                m = q.mask
                if q.pre in run.perms:
                    m = m[run.perms[q.pre], :]
                if q.post in run.perms:
                    m = m[:, run.perms[q.post]]
                spec["projections"][q.index]["connectivity"] = {
                    "kind": "from_list", "edges": np.argwhere(m).tolist()}
        run.twin_program = compile_network(load_network(spec))
        run.twin_sim = Simulator(run.twin_program, backend="numpy", dtype="float64")
        run.genes, run.state = run.fresh(run.sim, [run.genome])
        run.twin_genes, run.twin = run.fresh(run.twin_sim, [run.genome])
        _load_dense(run.twin, _perm_arrays(run.dense(run.state), prog, run.perms))
        run.initial = run.dense(run.state)

    def advance(self, run, x, y):
        run.sim.train_step(run.state, run.genes, x, y)
        run.twin_sim.train_step(run.twin, run.twin_genes, x, y)

    def check(self, run):
        want = _perm_arrays(run.dense(run.state), run.program, run.perms)
        got = _dense(run.twin, len(run.program.projs))
        perms = ", ".join(f"{n}: {p}" for n, p in run.options["permutations"].items())
        run.compare(got, want, value_label="relabelled network", expected_label="original, relabelled",
                    detail=f"relabelling (new neuron n = old neuron perm[n]): {perms}; indices are the "
                           "relabelled network's", program=run.twin_program)


# ------------------------------------------------------------ species and replicas
def _wild_genome(k: int, groups, seed: int):
    """A genome whose synapses overflow within a few steps (a neighbour that produces Inf/NaN)."""
    g = random_genome(k=k, seed=seed, groups=groups, scale=3.0, lr=1e150)
    return g.model_copy(update={"groups": {n: p.model_copy(update={"f_tilde": 1e150, "eta": 5.0, "oja_alpha": 1.0})
                                           for n, p in g.groups.items()}})


class SpeciesIndependence(Law):
    """DESIGN §1: species are genomes evaluated side by side; nothing couples them (every
    genome-dependent factor of eq. 5-8 carries the species axis; normalisation runs per species).
    So a genome trained in a batch of species — next to other genomes, including one whose
    synapses overflow to Inf/NaN — gets exactly the synapses it gets alone (to rounding).

    Options: ``others`` (genome documents for the other species; default: a random genome and a
    wild one that overflows), ``position`` (the tested genome's species index; default 1)."""

    name = "species_independence"
    equation = "DESIGN §1 species"
    statement = "one species' result does not depend on the other species in the batch"
    atol = 1e-10
    rtol = 1e-9

    def resolve_options(self, run, options):
        others, position = self.take_options(options, "others", "position")
        prog = run.program
        if others is None:
            others = [random_genome(k=prog.k, seed=run.seed + 1, groups=prog.groups),
                      _wild_genome(prog.k, prog.groups, run.seed + 2)]
        others = [_genome(o).model_dump(mode="json", exclude_none=True) for o in others]
        position = 1 if position is None else int(position)
        if not 0 <= position <= len(others):
            raise ValueError(f"position must be in 0..{len(others)}, got {position}")
        return {"others": others, "position": position}

    def setup(self, run):
        others = [_genome(o) for o in run.options["others"]]
        pos = run.options["position"]
        run.batch_genomes = others[:pos] + [run.genome] + others[pos:]
        run.genes, run.state = run.fresh(run.sim, run.batch_genomes)
        run.solo_genes, run.solo = run.fresh(run.sim, [run.genome])
        run.initial = run.dense(run.solo)

    def advance(self, run, x, y):
        run.sim.train_step(run.state, run.genes, x, y)
        run.sim.train_step(run.solo, run.solo_genes, x, y)

    def check(self, run):
        pos = run.options["position"]
        got = {k: a[pos : pos + 1] for k, a in run.dense(run.state).items()}
        run.compare(got, run.dense(run.solo), value_label=f"in a batch of {len(run.batch_genomes)} species",
                    expected_label="the same genome alone", species_map=lambda s: pos,
                    n_species=len(run.batch_genomes))


class ReplicaIndependence(Law):
    """DESIGN §1-2: replicas are independent synapse initialisations sharing a genome; nothing in
    eq. 5-8 mixes them. So replica ``r`` of a run with ``R`` replicas ends with the synapses a run
    of that replica alone (from the same initial synapses) ends with."""

    name = "replica_independence"
    equation = "DESIGN §1-2 replicas"
    statement = "one replica's result does not depend on the other replicas"
    atol = 1e-10
    rtol = 1e-9
    replicas = 3

    def setup(self, run):
        run.genes, run.state = run.fresh(run.sim, [run.genome])
        run.initial = run.dense(run.state)
        run.solos = []
        for r in range(run.replicas):
            st = run.sim.init_synapses(run.genes, replicas=1, seed=run.seed)
            _load_dense(st, {k: a[:, r : r + 1] for k, a in run.initial.items()})
            run.solos.append(st)

    def advance(self, run, x, y):
        run.sim.train_step(run.state, run.genes, x, y)
        for st in run.solos:
            run.sim.train_step(st, run.genes, x, y)

    def check(self, run):
        cur = run.dense(run.state)
        for r, st in enumerate(run.solos):
            run.compare({k: a[:, r : r + 1] for k, a in cur.items()}, run.dense(st),
                        value_label=f"in a run of {run.replicas} replicas", expected_label="the replica alone",
                        replica_map=lambda _, r=r: r)


# ------------------------------------------------------------------ batch order
class BatchOrderInvariance(Law):
    """Eq. (7) reduces over the batch (``ρ_b``: sum, or mean = sum/B); the normalisation of
    Sec. 3.4 uses the batch mean and variance; feedback and every other operation act per
    example. So permuting the examples of a batch (the same permutation for every batch of a
    size, so that kept neuron states follow their examples when ``reset_neurons`` is off) leaves
    the result unchanged, to rounding.

    Option ``permutations``: one list per step (default: a seeded permutation per batch size)."""

    name = "batch_order_invariance"
    equation = "eq. (7) batch reduction, Sec. 3.4 batch statistics"
    statement = "the result does not depend on the order of the examples in a batch"
    holds_under = "every rule set and genome (batch_reduction sum or mean)"
    atol = 1e-10
    rtol = 1e-9

    def resolve_options(self, run, options):
        (perms,) = self.take_options(options, "permutations")
        return {"permutations": [[int(i) for i in p] for p in (perms or [])]}

    def setup(self, run):
        run.genes, run.state = run.fresh(run.sim, [run.genome])
        run.initial = run.dense(run.state)
        _, run.twin = run.fresh(run.sim, [run.genome])
        run.by_size = {}

    def advance(self, run, x, y):
        perms = run.options["permutations"]
        B = len(y)
        if len(perms) < run.t:
            p = run.by_size.get(B)
            if p is None:
                rng = np.random.default_rng(np.random.SeedSequence([run.seed, 0x6F726472, B]))
                p = rng.permutation(B)
                if B > 1 and np.array_equal(p, np.arange(B)):
                    p = p[::-1]  # never the identity
                p = run.by_size[B] = p.tolist()
            perms.append(p)
        p = np.asarray(perms[run.t - 1])
        if sorted(p.tolist()) != list(range(B)):
            raise ValueError(f"permutations[{run.t - 1}] = {p.tolist()} is not a permutation of 0..{B - 1}")
        run.sim.train_step(run.state, run.genes, x, y)
        run.sim.train_step(run.twin, run.genes, x[p], y[p])

    def check(self, run):
        run.compare(run.dense(run.twin), run.dense(run.state), value_label="examples permuted",
                    expected_label="original order",
                    detail=f"permutation of step {run.t}: {run.options['permutations'][run.t - 1]}" if run.t else "")


# -------------------------------------------------------------------- backprop
_BACKPROP = {"f": 1.0, "eta": 1.0, "f_tilde": 1.0, "nu": [[1.0, 0.0], [1.0, 0.0]], "mu": [[0.0, 0.0], [0.0, 1.0]],
             "nu_tilde": [[1.0, 1.0], [0.0, 0.0]], "mu_tilde": [[0.0, 1.0], [0.0, 1.0]]}

#: Activations the independent SGD reference of :data:`backprop_equals_sgd` knows (complex-safe NumPy).
REFERENCE_ACTIVATIONS = {
    "tanh": np.tanh,
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "softplus": lambda z: np.log(1.0 + np.exp(z)),
}


def _backprop_why_not_program(prog) -> str | None:
    """DESIGN §3: the rules and activations under which one BLUR step of the backprop genome is SGD."""
    r = prog.rules
    need = {"tied": True, "shared_channels": True, "backward_update": "multiplicative_second_state",
            "oja": "none", "synapse_normalization": "none", "saturation": False, "reset_neurons": True,
            "schedule": "topological"}
    if prog.k != 2:
        return f"DESIGN §3 needs k = 2 (the network has k = {prog.k})"
    for key, v in need.items():
        if getattr(r, key) != v:
            return f"DESIGN §3 needs rules.{key} = {v!r} (got {getattr(r, key)!r})"
    if r.feedback not in ("error_mse", "error_softmax"):
        return f"DESIGN §3 needs feedback error_mse or error_softmax (got {r.feedback!r})"
    for p in prog.pops:
        if p.role == "input":
            continue
        if p.norm_fwd or p.norm_bwd:
            return f"population {p.name!r} has normalisation; DESIGN §3 has none"
        if any(n != "identity" for n in p.bwd_names):
            return f"population {p.name!r} needs backward_activation identity (DESIGN §3)"
        if p.role == "hidden":
            s = p.fwd_names[0]
            if s not in REFERENCE_ACTIVATIONS or p.fwd_names != [s, s + "_derivative"]:
                return (f"hidden population {p.name!r} needs forward_activation [σ, σ_derivative] with σ in "
                        f"{sorted(REFERENCE_ACTIVATIONS)} (got {p.fwd_names})")
        else:
            if p.fwd_names != ["identity", "one"]:
                return f"output population {p.name!r} needs forward_activation ['identity', 'one'] (got {p.fwd_names})"
            if p.outgoing:
                return f"output population {p.name!r} projects onwards; DESIGN §3's identity has outputs last"
    return None


def _backprop_why_not_genome(prog, genome) -> str | None:
    """DESIGN §3 / eq. (4): the backprop genome (any eta_tilde) in every group."""
    for g in prog.groups:
        p = genome.groups[g]
        for key, v in _BACKPROP.items():
            if not np.array_equal(np.asarray(getattr(p, key), dtype=float), np.asarray(v)):
                return f"genome group {g!r} is not the backprop genome: {key} = {getattr(p, key)} (needs {v})"
    return None


class _BackpropLaw(Law):
    holds_under = ("DESIGN §3: k = 2, tied, shared_channels, multiplicative_second_state, error_mse or "
                   "error_softmax feedback, no normalisation/Oja/saturation, hidden [σ, σ'], outputs "
                   "[identity, one], backward identity; the backprop genome with any eta_tilde")

    def why_not_program(self, prog):
        return _backprop_why_not_program(prog)

    def why_not_genome(self, prog, genome):
        return _backprop_why_not_genome(prog, genome)

    def conform(self, genome):
        g = _genome(genome)
        return g.model_copy(update={"groups": {n: p.model_copy(update=copy.deepcopy(_BACKPROP))
                                               for n, p in g.groups.items()}})


class BackpropIsGradientLike(_BackpropLaw):
    """DESIGN §3 / paper eq. (4): under these rules one BLUR step of the backprop genome is an SGD
    step, ``Δw = −η̃ ∇L``, so its Jacobian ``Q = ∂Δw/∂w = −η̃ ∇²L`` is symmetric (eq. 10). Checked
    before every step, at the current synapses, on that step's batch (complex-step Jacobian of
    :mod:`blursim.analysis`; symmetric within ``noise_factor`` × its noise floor).

    Option ``noise_factor`` (default 10)."""

    name = "backprop_is_gradient_like"
    equation = "eq. (4), eq. (10)"
    statement = "one step of the backprop genome is gradient-like: Q = ∂Δw/∂w is symmetric (eq. 10)"
    check_initial = False

    def resolve_options(self, run, options):
        (nf,) = self.take_options(options, "noise_factor")
        return {"noise_factor": 10.0 if nf is None else float(nf)}

    def advance(self, run, x, y):
        run.reports = []
        for r in range(run.replicas):
            m = BlurUpdateMap(run.program, run.genome, x, y, state=run.state, replica=r)
            rep = asymmetry_report(jacobian(m, m.w0, method="complex"), noise_factor=run.options["noise_factor"])
            run.reports.append(rep)
        run.sim.train_step(run.state, run.genes, x, y)

    def check(self, run):
        for r, rep in enumerate(run.reports):
            if rep.q_fro == 0 or rep.is_symmetric:
                run.worst = max(run.worst, rep.margin / rep.noise_factor if np.isfinite(rep.margin) else 0.0)
                continue
            e = rep.top[0]
            run.fail(Where(variable="Q = ∂Δw/∂w", extra=f"[{e.label_i}, {e.label_j}] of training step {run.t}",
                           species=0, replica=r),
                     value=e.q_ij, expected=e.q_ji, value_label=f"Q[{e.label_i}, {e.label_j}]",
                     expected_label="its transpose entry",
                     tolerance=f"‖Q − Qᵀ‖_F ≤ {rep.noise_factor:g} × noise floor {rep.noise_floor:.3g}",
                     detail=f"‖Q − Qᵀ‖_F = {rep.asym_fro:.3g} = {rep.margin:.3g} × noise floor; "
                            f"‖Q‖_F = {rep.q_fro:.3g}, n = {rep.n}")


def reference_loss(program, weights: dict[int, np.ndarray], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The loss DESIGN §3's BLUR step descends, written from scratch (no simulator code).

    ``weights[q]``: ``(P, n_pre + bias, n_post)`` for projection ``q`` (``P`` parameter points;
    real or complex). Hidden neurons ``h = σ(Σ_q ā_pre W_q)``, outputs the identity; the loss
    is summed over output populations: ``½‖z − T‖²`` (``error_mse``, ``T`` the coded targets) or
    softmax cross-entropy of ``z`` (``error_softmax``), summed over the batch (or averaged with
    ``batch_reduction: mean``). Returns ``(P,)``."""
    rules = program.rules
    P = next(iter(weights.values())).shape[0]
    B = x.shape[0]
    a: dict[int, np.ndarray] = {}
    for i in program.inputs:
        a[i] = np.broadcast_to(x[:, program.pops[i].in_slice], (P,) + x[:, program.pops[i].in_slice].shape)
    for j in program.forward_order:
        pop = program.pops[j]
        z = 0
        for qi in pop.incoming:
            q = program.projs[qi]
            pre = a[q.pre]
            if q.bias:
                pre = np.concatenate([pre, np.ones((P, B, 1))], axis=2)
            z = z + np.einsum("pbi,pij->pbj", pre, weights[qi])
        a[j] = REFERENCE_ACTIVATIONS[pop.fwd_names[0]](z) if pop.role == "hidden" else z
    loss = 0
    for o in program.outputs:
        z = a[o]
        n = program.pops[o].size
        if rules.feedback == "error_mse":
            low = -1.0 if rules.target_coding == "pm1" else 0.0
            hot = (y == 1)[:, None].astype(float) if n == 1 else np.eye(n)[y]
            T = np.where(hot > 0, 1.0, low)
            loss = loss + 0.5 * ((z - T) ** 2).sum(axis=(1, 2))
        else:
            m = z.real.max(axis=2, keepdims=True)
            lse = np.log(np.exp(z - m).sum(axis=2)) + m[..., 0]
            loss = loss + (lse - np.take_along_axis(z, np.broadcast_to(y[None, :, None], (P, B, 1)), 2)[..., 0]).sum(axis=1)
    return loss / B if rules.batch_reduction == "mean" else loss


def reference_gradient(program, weights: dict[int, np.ndarray], x, y, h: float = 1e-30) -> dict[int, np.ndarray]:
    """``∇L`` of :func:`reference_loss` at ``weights[q]`` ``(n_pre + bias, n_post)`` by complex step
    (``Im L(w + i h e_k) / h``, exact to rounding): a gradient no BLUR code computed. Entries
    outside a projection's mask get 0 (they are not parameters)."""
    coords = []
    for qi, w in weights.items():
        q = program.projs[qi]
        live = np.ones(w.shape, dtype=bool)
        if q.mask is not None:
            live[: q.n_pre] = q.mask
        coords.extend((qi, idx) for idx in zip(*np.nonzero(live)))
    P = len(coords)
    pts = {qi: np.repeat(w[None].astype(complex), P, axis=0) for qi, w in weights.items()}
    for p, (qi, idx) in enumerate(coords):
        pts[qi][(p, *idx)] += 1j * h
    L = reference_loss(program, pts, np.asarray(x, dtype=float), np.asarray(y))
    grads = {qi: np.zeros(w.shape) for qi, w in weights.items()}
    for p, (qi, idx) in enumerate(coords):
        grads[qi][idx] = L[p].imag / h
    return grads


class BackpropEqualsSGD(_BackpropLaw):
    """DESIGN §3 / paper eq. (4): under these rules one BLUR step of the backprop genome with
    ``η̃ = lr`` is one SGD step, ``W ← W − lr ∇L`` on the batch-summed (or averaged) loss, for
    every synapse and both channels. The gradient is *not* computed by blursim's simulator:
    :func:`reference_gradient` differentiates :func:`reference_loss` (a plain forward pass
    written here) by complex step. Checked after every step against the step's starting synapses.
    """

    name = "backprop_equals_sgd"
    equation = "eq. (4), DESIGN §3"
    statement = "one step of the backprop genome is one SGD step, W ← W − η̃ ∇L (DESIGN §3)"
    atol = 1e-12
    rtol = 1e-9

    def advance(self, run, x, y):
        before = run.dense(run.state)
        run.expected = {}
        for key in before:
            run.expected[key] = np.array(before[key])
        for r in range(run.replicas):
            w = {}
            for qi, q in enumerate(run.program.projs):
                W = before[(qi, "W")][0, r, 0]
                if q.bias:
                    W = np.concatenate([W, before[(qi, "b")][0, r, 0][None, :]], axis=0)
                w[qi] = W
            g = reference_gradient(run.program, w, x, y)
            for qi, q in enumerate(run.program.projs):
                lr = run.genome.groups[q.group].eta_tilde
                run.expected[(qi, "W")][0, r, 0] -= lr * g[qi][: q.n_pre]
                if q.bias:
                    run.expected[(qi, "b")][0, r, 0] -= lr * g[qi][q.n_pre]
        run.sim.train_step(run.state, run.genes, x, y)

    def check(self, run):
        if run.t == 0:
            return
        cur = run.dense(run.state)
        scale = max(1.0, max(float(np.abs(a).max()) for a in cur.values()))
        run.compare(cur, run.expected, atol=run.atol * scale, expected_label="SGD (independent gradient)")


masked_synapses_stay_zero = register_law(MaskedSynapsesStayZero())
frozen_plasticity = register_law(FrozenPlasticity())
saturation_bounds_synapses = register_law(SaturationBoundsSynapses())
tied_synapses_stay_tied = register_law(TiedSynapsesStayTied())
tied_channels_stay_tied = register_law(TiedChannelsStayTied())
hidden_relabelling_equivariance = register_law(HiddenRelabellingEquivariance())
species_independence = register_law(SpeciesIndependence())
replica_independence = register_law(ReplicaIndependence())
batch_order_invariance = register_law(BatchOrderInvariance())
backprop_is_gradient_like = register_law(BackpropIsGradientLike())
backprop_equals_sgd = register_law(BackpropEqualsSGD())


class InvariantLaw(Law):
    """An invariant ``(state, program)`` or ``(initial, state, program)`` run as a law: it drives
    one simulation and fails with a :class:`~blursim.testing.report.LawViolation` (counterexample
    attached). Replayable by name when ``fn`` is a module-level function of an importable module."""

    def __init__(self, fn, name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "invariant")
        self.module = getattr(fn, "__module__", None)
        doc = (getattr(fn, "__doc__", None) or "").strip()
        self.statement = doc.splitlines()[0] if doc else f"invariant {self.name} holds after every step"
        self.three = invariant_arity(fn) >= 3

    def setup(self, run: LawRun) -> None:
        run.genes, run.state = run.fresh(run.sim, [run.genome])
        run.initial_state = run.state.copy()
        run.initial = run.dense(run.state)

    def check(self, run: LawRun) -> None:
        args = (run.initial_state, run.state, run.program) if self.three else (run.state, run.program)
        try:
            ok = self.fn(*args)
            why = ""
        except AssertionError as e:
            ok, why = False, str(e)
        if ok:
            return
        explain = getattr(self.fn, "explain", None)
        if not why and explain is not None:
            why = str(explain(*args))
        run.fail(Where(variable="synapses", step=run.t), detail=why or f"{self.name} returned {ok!r}")


def builtin_laws() -> dict[str, Law]:
    """blursim's own laws by name: the step's (this module, :mod:`~blursim.testing.step_laws`) and
    the rule zoo's (:mod:`~blursim.testing.zoo_laws`), without any registered by other code."""
    from blursim.testing.zoo_laws import ZOO_LAWS

    return {n: reg.get(n) for reg in (LAWS, ZOO_LAWS) for n in reg
            if type(reg.get(n)).__module__.startswith("blursim.testing.")}


def law_named(name: str, module: str | None = None) -> Law:
    """The law ``name`` registered in :data:`LAWS` or in the rule zoo's
    :data:`~blursim.testing.zoo_laws.ZOO_LAWS` (a fixed module of blursim's own). ``module`` (where a
    counterexample says the law was defined) is never imported: a file must not run code. Import
    the module of a law of your own and register the law before replaying its counterexample."""
    if name not in LAWS:
        from blursim.testing.zoo_laws import ZOO_LAWS  # blursim's own module, named here, not by the file

        if name in ZOO_LAWS:
            return ZOO_LAWS.get(name, path="$.law")
    if name not in LAWS and module and module != __name__:
        raise SpecError(f"unknown law {name!r} (its counterexample names module {module!r}, which is never "
                        "imported)", path="$.law", choices=LAWS,
                        hint="Import that module and register the law in blursim.testing.laws.LAWS first.")
    return LAWS.get(name, path="$.law")


def replay(counterexample) -> LawRun:
    """Run a counterexample (a :class:`Counterexample` or its folder) again: raises its
    :class:`LawViolation` if the law still breaks, else returns the finished :class:`LawRun`."""
    cx = counterexample if isinstance(counterexample, Counterexample) else Counterexample.load(counterexample)
    law = law_named(cx.law, cx.module)
    return law(cx.spec, cx.genome, cx.batches, seed=cx.seed, replicas=cx.replicas, state=cx.state,
               atol=cx.atol, rtol=cx.rtol, check_domain=cx.check_domain, save=False, **cx.options)


def applicable_laws(spec, genome) -> list[Law]:
    """The registered laws whose domain holds ``spec``'s rules and ``genome``."""
    return [LAWS.get(n) for n in LAWS if LAWS.get(n).applies(spec, genome)]


def check_all(spec, genome, batches, n_steps: int | None = None, *, laws: Sequence[str] | None = None,
              conform: bool = False, **kw) -> list[str]:
    """Assert every registered law (or those named in ``laws``) that holds for ``spec`` and
    ``genome``; returns the names of the laws checked. Keywords go to every law call.

    ``conform=True``: a law whose rules hold runs on ``law.conform(genome)`` (the genome moved
    into its genome domain, e.g. η̃ = 0 for frozen plasticity) instead of being skipped when the
    genome is outside that domain — so the laws with genome domains run on every draw."""
    names = list(laws) if laws is not None else list(LAWS)
    prog = _program(spec)
    g0 = _genome(genome)
    done = []
    for n in names:
        law = LAWS.get(n)
        if law.why_not_program(prog) is not None:
            continue
        g = law.conform(g0) if conform else g0
        if law.why_not_genome(prog, g) is None:
            law(spec, g, batches, n_steps, **kw)
            done.append(n)
    return done


# the laws of each equation and option of the step (registered in LAWS on import)
from blursim.testing import step_laws  # noqa: E402
from blursim.testing.step_laws import (  # noqa: E402
    backward_pass_closed_form,
    feedback_sets_output_states,
    forward_pass_closed_form,
    normalisation_batch_statistics,
    oja_scales_by_exact_factor,
    synapse_update_closed_form,
    unroll_equals_single_steps,
    untied_feedback_drives_backward,
)
