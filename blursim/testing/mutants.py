"""Planted bugs (mutants) of the BLUR step, to measure how strong the laws are.

Each mutant is one realistic bug, planted into the fast NumPy simulator by a small
monkeypatch while a ``with planted(name):`` block runs (and removed after it)::

    from blursim.testing import laws
    from blursim.testing.mutants import MUTANTS, planted

    with planted("oja_factor_sign"):
        laws.check_all(spec, genome, batches, conform=True)   # raises LawViolation if a law catches it

:data:`MUTANTS` lists them by name (:class:`Mutant`: the bug, the paper's equation it breaks,
the law expected to catch it, a fixed example on which it shows); :data:`KEPT` is the set of
twelve that blursim's mutation check measures (``tools/mutation_check.py``, docs/testing.md:
the laws, run by ``check_all`` as the docs show, must catch at least 11 of them).

The patches reach into private internals of :mod:`blursim.sim.simulator` (that is the point of
a planted bug); the *laws* use only the public Simulator API, so they keep working when the
step's internals change, while a mutant may need re-planting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blursim.registry import Registry


class Patches:
    """Attribute replacements undone on :meth:`undo` (a minimal monkeypatch)."""

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, Any]] = []

    def setattr(self, obj, name: str, value) -> None:
        self._saved.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def undo(self) -> None:
        while self._saved:
            obj, name, value = self._saved.pop()
            setattr(obj, name, value)


def _wrap(p, obj, name: str, make: Callable[[Callable], Callable]) -> None:
    """Replace ``obj.name`` by ``make(original)`` through ``p.setattr``."""
    p.setattr(obj, name, make(getattr(obj, name)))


@dataclass
class Mutant:
    """A planted bug: ``plant(patches)`` installs it through ``patches.setattr(obj, name, value)``
    (a :class:`Patches`, or pytest's ``monkeypatch``); ``example()`` returns ``(spec, genome)``
    on which it shows; ``caught_by`` names the law expected to catch it."""

    name: str
    bug: str
    equation: str
    caught_by: str
    plant: Callable[[Patches], None]
    example: Callable[[], tuple[dict, Any]]
    tags: tuple[str, ...] = field(default=())


MUTANTS: Registry[Mutant] = Registry("mutant")


@contextlib.contextmanager
def planted(name: str | Mutant) -> Iterator[Mutant]:
    """Plant mutant ``name`` for the duration of the block."""
    m = name if isinstance(name, Mutant) else MUTANTS.get(name)
    p = Patches()
    try:
        m.plant(p)
        yield m
    finally:
        p.undo()


def example_batches(n: int = 3, B: int = 4, seed: int = 0, n_features: int = 3, n_classes: int = 3):
    """The fixed data of the mutants' examples."""
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(B, n_features)), rng.integers(0, n_classes, B)) for _ in range(n)]


# ------------------------------------------------------------------ example networks
def chain(rules: dict | None = None, *, conn: dict | None = None, k: int = 2, hidden: str = "tanh",
          backward: str = "identity", normalization: str | None = None, bias: bool = True) -> dict:
    """in(3) → h(4) → out(3), a skip in → out; rules and the hidden population as given."""
    h = {"name": "h", "size": 4, "role": "hidden", "forward_activation": hidden, "backward_activation": backward}
    if normalization:
        h["normalization"] = normalization
    return {"k": k, "populations": [
        {"name": "in", "size": 3, "role": "input"}, h,
        {"name": "out", "size": 3, "role": "output", "forward_activation": "tanh"}],
        "projections": [{"from": "in", "to": "h", "bias": bias, "connectivity": conn or {"kind": "all_to_all"}},
                        {"from": "h", "to": "out", "bias": bias}, {"from": "in", "to": "out"}],
        "rules": rules or {}}


def backprop_chain() -> dict:
    from blursim.testing.strategies import backprop_rules

    spec = chain(backprop_rules("error_softmax", "sum"))
    spec["populations"][1].update(forward_activation=["tanh", "tanh_derivative"], backward_activation="identity")
    spec["populations"][2].update(forward_activation=["identity", "one"], backward_activation="identity")
    return spec


def _genome(seed: int = 1, k: int = 2, **fields):
    from blursim.genome import random_genome

    g = random_genome(k=k, seed=seed)
    return g.model_copy(update={"groups": {"default": g.groups["default"].model_copy(update=fields)}})


def _backprop_genome():
    from blursim.genome import backprop_genome

    return backprop_genome(lr=0.1)


def _sim():
    from blursim.sim.simulator import Simulator

    return Simulator


# ------------------------------------------------------------------------ the mutants
# Most mutants replace one primitive of the step's kernel set (blursim.sim.kernels: the extension
# point of the step, ``sim.kernels.replace(name=fn)``); :func:`kernel_mutant` plants the
# replacement into every Simulator built while the mutant is planted. A few bugs live outside
# the kernels (the unroll loop, the sparse operators, species/replica storage) and stay
# monkeypatches.
def kernel_mutant(**factories: Callable[[Any], Callable]) -> Callable[[Any], None]:
    """A ``plant`` function that replaces kernel primitives: ``factories[name](K)`` gets the
    Simulator's kernel set ``K`` and returns the replacement ``fn(run, ...)`` of primitive ``name``
    (it may call ``K.name``, the original). Every :class:`~blursim.sim.Simulator` created while the
    mutant is planted runs ``sim.kernels = sim.kernels.replace(name=fn, ...)``."""
    def plant(p) -> None:
        sim_cls = _sim()

        def make(orig):
            def __init__(self, *args, **kw):
                orig(self, *args, **kw)
                K = self.kernels
                self.kernels = K.replace(**{name: f(K) for name, f in factories.items()})
            return __init__
        _wrap(p, sim_cls, "__init__", make)
    plant.primitives = tuple(factories)
    return plant


def _mutant(name, bug, equation, caught_by, example, plant, tags=("kept",)):
    MUTANTS.register(name, Mutant(name, bug, equation, caught_by, plant, example, tuple(tags)), doc=bug)


def _drive_without(which: str):
    """``drive`` with the backward pass's ``V`` (``which = "V"``: it reads ``Wᵀ``) or the forward
    pass's biases (``"b"``) left out."""
    def factory(K):
        def drive(run, p, syn, direction, keep, rate, buffer):
            W, b, V = syn
            if which == "V" and direction == "backward":
                syn = (W, b, [None] * len(V))
            elif which == "b" and direction == "forward":
                syn = (W, [None if x is None else 0 * x for x in b], V)
            return K.drive(run, p, syn, direction, keep, rate, buffer)
        return drive
    return factory


def _oja_sign(K):
    def oja_keep(run, job, n2):
        return K.oja_keep(run, job, -n2)  # D = f~ + |eta~||alpha| n2
    return oja_keep


def _normalize_over_neurons(K):
    def normalize(run, x, p, eps):
        xp = K.xp
        y = xp.ascontiguousarray(xp.swapaxes(x, -1, -2))  # neurons where the batch was
        y = K.normalize(run, y, p, eps)
        x[...] = xp.swapaxes(y, -1, -2)
        return x
    return normalize


def _v_with_w_rule_transposed(K):
    import dataclasses

    def hebbian_update(run, job, syn, keep):
        if job.which == "V" and job.hebbian == "eq7":
            job = dataclasses.replace(job, hebbian="mirror")  # H_V = (W's Hebbian term)ᵀ
        return K.hebbian_update(run, job, syn, keep)
    return hebbian_update


def _one_sided(K):
    def saturate(run, job, syn):
        before = [None if X is None else X.copy() for X in K._arrays(job, syn)]
        K.saturate(run, job, syn)
        for X, X0 in zip(K._arrays(job, syn), before):
            if X is not None:
                neg = X0 < 0
                X[neg] = X0[neg]  # only positive synapses saturate
    return saturate


def _targets_negated(K):
    def feedback(run, o, kind):
        return K.feedback(run, o, lambda states, coded, onehot, xp: kind(states, -coded, onehot, xp))
    return feedback


def _no_saturation(K):
    return lambda run, job, syn: None


def _threshold(K):
    def activate(run, x, names):
        x += 1e-3 * K.xp.arange(x.shape[-1])  # neuron n gets 1e-3·n
        return K.activate(run, x, names)
    return activate


_mutant("backward_reads_forward_transpose", "the backward pass reads Wᵀ instead of the untied feedback synapses V",
        "eq. (6)", "untied_feedback_drives_backward", lambda: (chain(), _genome()),
        kernel_mutant(drive=_drive_without("V")))
_mutant("oja_factor_sign", "the Oja term of eq. (8) grows the synapses: D = f̃ + |η̃||α|n² instead of f̃ − |η̃||α|n²",
        "eq. (8)", "oja_scales_by_exact_factor", lambda: (chain({"oja": "weights"}), _genome(oja_alpha=0.5)),
        kernel_mutant(oja_keep=_oja_sign))
_mutant("normalisation_wrong_axis", "Sec. 3.4's normalisation over the neurons of each example instead of the batch",
        "Sec. 3.4", "normalisation_batch_statistics",
        lambda: (chain(hidden="identity", normalization="forward"), _genome()),
        kernel_mutant(normalize=_normalize_over_neurons))
_mutant("feedback_rule_transposed", "untied V updated with W's eq. (7) transposed (ν̃ on the presynaptic side) "
        "instead of its own, pre and post swapped", "eq. (7) for V", "synapse_update_closed_form",
        lambda: (chain(), _genome()), kernel_mutant(hebbian_update=_v_with_w_rule_transposed))


def _unroll_short(p) -> None:
    from blursim.sim import run as run_mod

    def make(orig):
        def train_unroll(sim, st, genes, x, y, steps, seed, batch_size):
            return orig(sim, st, genes, x, y, max(int(steps) - 1, 0), seed, batch_size)
        return train_unroll
    _wrap(p, run_mod, "train_unroll", make)


_mutant("unroll_one_step_short", "train_unroll runs n − 1 steps for an unroll of n", "DESIGN §2 step loop",
        "unroll_equals_single_steps", lambda: (chain(), _genome()), _unroll_short)


def _mask(p) -> None:
    from blursim.sim.operators import DenseOperator, MaskedDenseOperator

    p.setattr(MaskedDenseOperator, "hebbian_update", DenseOperator.hebbian_update)


_mutant("mask_not_reapplied", "the Hebbian product of a masked projection is not masked", "DESIGN §1 mask",
        "masked_synapses_stay_zero",
        lambda: (chain(conn={"kind": "fixed_probability", "p": 0.5, "seed": 3}), _genome()), _mask)


def _couple(axis):
    def make(orig):
        def train_step(self, st, genes, x, y, monitor=None):
            orig(self, st, genes, x, y, monitor=monitor)
            for q, W in enumerate(st.W):
                st.W[q] = W + 1e-3 * W.mean(axis=axis, keepdims=True)
            return st
        return train_step
    return lambda p: _wrap(p, _sim(), "train_step", make)


_mutant("species_mixing", "each species' W moves by 1e-3 × the mean over species", "DESIGN §1 species",
        "species_independence", lambda: (chain(), _genome()), _couple(0))
_mutant("replica_mixing", "each replica's W moves by 1e-3 × the mean over replicas", "DESIGN §1-2 replicas",
        "replica_independence", lambda: (chain(), _genome()), _couple(1))
_mutant("one_sided_saturation", "saturation bounds only positive synapses (W ← s·tanh(W/s) for W > 0 only)",
        "Sec. 3.4 saturation", "saturation_bounds_synapses",
        lambda: (chain({"saturation": True}), _genome(saturation=0.05)), kernel_mutant(saturate=_one_sided))


def _misaligned(p) -> None:
    from blursim.sim.fast import StepRun

    def make(orig):
        def mix(self, q, g, name):
            out = orig(self, q, g, name)
            if self.sim.program.shared and name in ("mu_tilde", "mu_tilde_in"):
                return self.sim.xp.roll(out, 1, axis=2)
            return out
        return mix
    _wrap(p, StepRun, "mix", make)


_mutant("shared_channels_misaligned", "with shared channels, channel c's presynaptic factor is paired with channel "
        "c − 1's postsynaptic one", "eq. (7) shared channels", "synapse_update_closed_form",
        lambda: (chain({"shared_channels": True}), _genome()), _misaligned)
_mutant("bias_left_out_of_forward", "the forward pass (eq. 5) leaves out the bias units", "eq. (5)",
        "backprop_equals_sgd", lambda: (backprop_chain(), _backprop_genome()), kernel_mutant(drive=_drive_without("b")))
_mutant("target_sign_flipped", "the feedback writes −T instead of the coded targets T", "Sec. 3.3",
        "feedback_sets_output_states", lambda: (chain(), _genome()), kernel_mutant(feedback=_targets_negated))

# --------------------------------------------------- more mutants (not in the kept twelve)
_mutant("saturation_skipped", "saturation forgotten for the stored synapses", "Sec. 3.4 saturation",
        "saturation_bounds_synapses", lambda: (chain({"saturation": True}), _genome(saturation=0.05)),
        kernel_mutant(saturate=_no_saturation), tags=())
_mutant("position_dependent_threshold", "neuron n gets an extra 1e-3·n before its activation", "eq. (5)-(6)",
        "hidden_relabelling_equivariance", lambda: (chain(), _genome()), kernel_mutant(activate=_threshold), tags=())


def _weighting(p) -> None:
    def make(orig):
        def _input_states(self, x):
            return orig(self, np.asarray(x) * (1 + 0.1 * np.arange(len(x)))[:, None])
        return _input_states
    _wrap(p, _sim(), "_input_states", make)


_mutant("batch_example_weighting", "example b of a batch is weighted by 1 + b/10", "eq. (7) batch reduction",
        "batch_order_invariance", lambda: (chain(), _genome()), _weighting, tags=())


#: The twelve planted bugs blursim's mutation check measures (docs/testing.md).
KEPT = tuple(n for n in MUTANTS if "kept" in MUTANTS.get(n).tags)


# ------------------------------------------------------------------ the mutation check
#: Families of drawn cases the mutation check runs ``check_all`` over (see :func:`drawn_cases`).
FAMILIES = ("generic", "paper_family", "backprop", "domains")


def drawn_cases(family: str, n: int, *, n_features: int = 3, n_classes: int = 3) -> list[tuple[dict, Any, list]]:
    """``n`` derandomized draws ``(spec, genome, batches)`` of a family (``"domains"``: ``n`` per law of
    :data:`~blursim.testing.laws.LAWS`, from its domain strategy
    :func:`~blursim.testing.strategies.law_network_specs`): ``"generic"``
    (:func:`~blursim.testing.strategies.generic_network_specs`, every rule option; genomes with
    every value and optional field drawn), ``"paper_family"``
    (:func:`~blursim.testing.strategies.paper_network_specs` with ``family=True``), ``"backprop"``
    (DESIGN §3 networks with the backprop genome). Genomes are *generic* (the ``random`` preset
    from a drawn seed, optional fields drawn or left out) and batches seeded (2-4 examples, three
    of them): Hypothesis's first, minimal value draws (all-zero mixing matrices and data) would
    make most laws vacuous."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from blursim.genome import backprop_genome
    from blursim.testing import strategies as bst

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; valid: {', '.join(FAMILIES)}")
    if family == "domains":  # n draws from each law's domain strategy
        from blursim.testing.laws import LAWS

        return [c for name in LAWS for c in _law_cases(name, n, n_features, n_classes)]
    cases: list = []

    @settings(max_examples=n, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def draw(data):
        if family == "backprop":
            spec = data.draw(bst.backprop_network_specs(None, None, n_features=n_features, n_classes=n_classes,
                                                        sizes=(1, 3), hidden=(1, 2)))
            genome = backprop_genome(lr=data.draw(st.sampled_from([0.05, 0.1, 0.5])))
        else:
            specs = (bst.generic_network_specs(n_features=n_features, n_classes=n_classes) if family == "generic"
                     else bst.paper_network_specs(family=True, n_features=n_features, n_classes=n_classes,
                                                  hidden=(1, 2), sizes=(1, 4)))
            spec = data.draw(specs)
            genome = data.draw(bst.genomes(k=spec["k"], optional=True))
        batches = [data.draw(bst.data_batches(n_features, n_classes, batch=(2, 4))) for _ in range(3)]
        if len(cases) < n:
            cases.append((spec, genome, batches))

    draw()
    return cases


def _law_cases(name: str, n: int, n_features: int, n_classes: int) -> list:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from blursim.genome import backprop_genome
    from blursim.testing import strategies as bst

    cases: list = []

    @settings(max_examples=n, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def draw(data):
        spec = data.draw(bst.law_network_specs(name, n_features=n_features, n_classes=n_classes))
        genome = (backprop_genome(lr=0.1) if name in bst.BACKPROP_LAWS
                  else data.draw(bst.genomes(k=spec["k"], optional=True)))
        batches = [data.draw(bst.data_batches(n_features, n_classes, batch=(2, 4))) for _ in range(3)]
        if len(cases) < n:
            cases.append((spec, genome, batches))

    draw()
    return cases


@dataclass
class MutantResult:
    """How the laws fared on one mutant: ``caught`` examples of ``runs``, the laws that caught it
    (``{law: examples}``; ``check_all`` stops at the first broken law), ``crashed`` examples where the
    mutant raised something other than a law violation, and the first violation's message."""

    mutant: str
    equation: str = ""
    runs: int = 0
    caught: int = 0
    by_law: dict[str, int] = field(default_factory=dict)
    crashed: int = 0
    first_message: str = ""

    @property
    def is_caught(self) -> bool:
        return self.caught > 0


def check_mutant(mutant: str | Mutant, cases, **law_kw) -> MutantResult:
    """Run ``laws.check_all(spec, genome, batches, conform=True)`` on every case with ``mutant``
    planted; tabulate which laws caught it."""
    from blursim.testing import laws
    from blursim.testing.report import LawViolation

    m = mutant if isinstance(mutant, Mutant) else MUTANTS.get(mutant)
    res = MutantResult(m.name, m.equation)
    law_kw.setdefault("save", False)
    with planted(m):
        for spec, genome, batches in cases:
            res.runs += 1
            try:
                laws.check_all(spec, genome, batches, conform=True, **law_kw)
            except LawViolation as e:
                res.caught += 1
                res.by_law[e.law] = res.by_law.get(e.law, 0) + 1
                res.first_message = res.first_message or e.core
            except Exception:  # noqa: BLE001  (a mutant that crashes the step is not a law's catch)
                res.crashed += 1
    return res


def mutation_table(results: list[MutantResult]) -> str:
    """A Markdown table of :class:`MutantResult` rows."""
    lines = ["| mutant | equation | caught | examples caught | laws that caught it (examples) |",
             "|---|---|---|---|---|"]
    for r in results:
        by = ", ".join(f"`{k}` ({v})" for k, v in sorted(r.by_law.items(), key=lambda kv: -kv[1])) or "—"
        crashed = f" ({r.crashed} crashed)" if r.crashed else ""
        lines.append(f"| `{r.mutant}` | {r.equation} | {'yes' if r.is_caught else '**no**'} | "
                     f"{r.caught} of {r.runs}{crashed} | {by} |")
    n = sum(r.is_caught for r in results)
    lines.append(f"\ncaught: {n} of {len(results)}")
    return "\n".join(lines)
