"""Property-testing kit for BLUR update rules: strategies, laws, assertions, replayable failures.

docs/testing.md is the guide. In short:

* :mod:`blursim.testing.strategies` — Hypothesis strategies for rules (every option, named
  profiles such as the paper's family and DESIGN §3's backprop rules), network specs (acyclic,
  sparse, recurrent), genomes (random, every value drawn, near a preset, fields fixed), data
  batches and synapse states (``hypothesis`` must be installed: ``pip install blursim[test]``);
* :mod:`blursim.testing.laws` — named properties that hold for every genome under stated rules,
  each a one-line assertion (``laws.masked_synapses_stay_zero(spec, genome, batches)``);
  :data:`~blursim.testing.laws.LAWS` lists them;
* :class:`LawViolation` — a failure that names the law, the variable, its index (projection,
  synapse, channel, species, replica, step), the value and the tolerance, and carries a
  counterexample that ``err.save(DIR)`` writes and ``blursim replay DIR`` replays;
* :mod:`blursim.testing.stateful` — laws and invariants over runs of training steps that
  Hypothesis drives (``law_machine``);
* assertions (NumPy only): :func:`assert_gradient_like`, :func:`assert_not_gradient_like`
  (paper Sec. 3.5, eq. 10), :func:`assert_tied_stay_tied`, :func:`assert_invariant` (an
  invariant ``(state, program)`` or ``(initial, state, program)``), the invariants
  :func:`masked_entries_are_zero` and :func:`unchanged_since_start`, :func:`forward_synapses`
  (DESIGN's layout), :func:`trajectory` (every number of a short run, to compare simulators).
"""

from blursim.testing import laws
from blursim.testing.assertions import (
    assert_gradient_like,
    assert_invariant,
    assert_not_gradient_like,
    assert_tied_stay_tied,
    forward_synapses,
    gradient_report,
    masked_entries_are_zero,
    unchanged_since_start,
)
from blursim.testing.counterexample import Counterexample
from blursim.testing.laws import LAWS, LawNotApplicable, replay
from blursim.testing.report import LawViolation, Where
from blursim.testing.runs import trajectory

__all__ = [
    "LAWS",
    "Counterexample",
    "LawNotApplicable",
    "LawViolation",
    "Where",
    "assert_gradient_like",
    "assert_not_gradient_like",
    "assert_tied_stay_tied",
    "assert_invariant",
    "forward_synapses",
    "gradient_report",
    "laws",
    "masked_entries_are_zero",
    "replay",
    "trajectory",
    "unchanged_since_start",
]
