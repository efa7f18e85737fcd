"""Trajectory properties: laws and invariants checked along runs of training steps that Hypothesis
drives (a ``RuleBasedStateMachine``).

A law of :mod:`blursim.testing.laws` or an invariant is a statement about *runs*: it must hold
after every step, however many steps and whichever batches (the same batch again, batches of
other sizes). :func:`law_machine` builds a state machine that draws a spec and a genome once,
then lets Hypothesis choose a sequence of training steps, checking every law and invariant after
each; a failure shrinks to the shortest sequence of steps (and the smallest spec, genome and
batches) that breaks it, and the :class:`~blursim.testing.report.LawViolation` carries the
counterexample (``blursim replay DIR``)::

    from blursim.testing import strategies as bst
    from blursim.testing.stateful import law_machine

    TestRuns = law_machine(
        bst.network_specs(n_features=3, rules=bst.rules(profile="paper")),
        laws=["masked_synapses_stay_zero", "species_independence"],
        invariants=[unchanged_in_frozen_group],      # (initial, state, program) -> bool
    ).TestCase
    TestRuns.settings = settings(max_examples=10, stateful_step_count=6, deadline=None)

An invariant is a function ``(state, program)`` or ``(initial, state, program)`` — ``initial``
is the synapses before the first step — that returns a truthy value when it holds (or raises
``AssertionError``); an ``explain`` attribute with the same arguments may say where it fails.
Laws are skipped for drawn specs and genomes outside their domain (each law's genome is
``law.conform(genome)`` first, so a law with a genome domain still runs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from blursim.graph import compile_network
from blursim.spec import load_network
from blursim.testing.laws import LAWS, InvariantLaw, Law, LawRun
from blursim.testing.strategies import data_batches
from blursim.testing.strategies import genomes as genome_strategy

__all__ = ["LawMachine", "law_machine"]


def _as_law(x) -> Law:
    if isinstance(x, Law):
        return x
    if isinstance(x, str):
        return LAWS.get(x, path="laws")
    raise TypeError(f"laws: expected a law name or a Law, got {type(x).__name__}")


class LawMachine(RuleBasedStateMachine):
    """Draws a network and a genome, then training steps; checks laws and invariants after each.

    Configure a subclass through :func:`law_machine` (or set the class attributes
    ``spec_strategy``, ``genome_strategy``, ``checked_laws``, ``checked_invariants``,
    ``batch_sizes``, ``batch_values``, ``replicas`` yourself; Hypothesis reserves ``rules`` and
    ``invariants``).
    """

    spec_strategy: Any = None
    genome_strategy: Any = None  # a strategy, or program -> strategy
    checked_laws: tuple = ()
    checked_invariants: tuple = ()
    batch_sizes: tuple[int, int] = (1, 5)
    batch_values: bool = True
    replicas: int | None = None

    @initialize(data=st.data())
    def draw_network_and_genome(self, data) -> None:
        spec = data.draw(self.spec_strategy, label="spec")
        self.program = compile_network(load_network(spec))
        g = self.genome_strategy
        if g is None:
            g = genome_strategy(k=self.program.k, groups=tuple(self.program.groups), values=True,
                                optional=True)
        elif callable(g) and not isinstance(g, st.SearchStrategy):
            g = g(self.program)
        self.genome = data.draw(g, label="genome")
        self.seed = data.draw(st.integers(0, 2**16), label="seed")
        self.runs: list[LawRun] = []
        for law in [_as_law(x) for x in self.checked_laws] + [InvariantLaw(f) for f in self.checked_invariants]:
            genome = law.conform(self.genome)
            if law.applies(self.program, genome):
                self.runs.append(law.start(self.program, genome, seed=self.seed, replicas=self.replicas))
        self.n_classes = max(2, max(self.program.pops[o].size for o in self.program.outputs))

    def _batch(self, data):
        return data.draw(data_batches(self.program.n_features, self.n_classes, batch=self.batch_sizes,
                                      values=self.batch_values), label="batch")

    @rule(data=st.data())
    def train_step(self, data) -> None:
        """One training step of every run on a drawn batch."""
        x, y = self._batch(data)
        for run in self.runs:
            run.step(x, y)

    @rule(data=st.data(), times=st.integers(2, 4))
    def train_on_one_batch_repeatedly(self, data, times) -> None:
        """Several steps on the same batch (long runs at the cost of one draw)."""
        x, y = self._batch(data)
        for _ in range(times):
            for run in self.runs:
                run.step(x, y)

    @invariant()
    def laws_hold(self) -> None:
        for run in getattr(self, "runs", ()):
            if run.t > 0 or run.law.check_initial:
                run.check()


def law_machine(specs, genomes=None, laws: Sequence[str | Law] = (), invariants: Sequence[Callable] = (), *,
                batch: tuple[int, int] = (1, 5), values: bool = True, replicas: int | None = None,
                name: str = "LawRuns") -> type[LawMachine]:
    """A :class:`LawMachine` subclass: ``specs`` a strategy of network specs, ``genomes`` a strategy
    or a function ``program -> strategy`` (default: every genome value drawn, optional fields
    included), ``laws`` names or :class:`~blursim.testing.laws.Law` objects, ``invariants``
    functions ``(state, program)`` or ``(initial, state, program)``. Batches have ``batch`` =
    ``(min, max)`` examples, values drawn (``values=True``) or seeded. Use its ``TestCase``."""
    if not laws and not invariants:
        raise ValueError("law_machine needs at least one law or invariant")
    for x in laws:
        _as_law(x)  # unknown names fail here, with the valid choices
    if callable(genomes) and not isinstance(genomes, st.SearchStrategy):
        genomes = staticmethod(genomes)  # a function program -> strategy, not a method
    attrs = {"spec_strategy": specs, "genome_strategy": genomes, "checked_laws": tuple(laws),
             "checked_invariants": tuple(invariants), "batch_sizes": tuple(batch), "batch_values": values,
             "replicas": replicas}
    return type(name, (LawMachine,), attrs)
