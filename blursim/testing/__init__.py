"""Property-testing kit for BLUR update rules (Hypothesis strategies and assertions).

``from blursim.testing import strategies as bst`` gives Hypothesis strategies
for network specs, genomes, data batches and synapse states (``hypothesis``
must be installed: ``pip install blursim[test]``); blursim's own property
tests use the same strategies.  The assertion helpers need only NumPy:

* :func:`assert_gradient_like`, :func:`assert_not_gradient_like` — the
  update Jacobian is / is not symmetric (paper Sec. 3.5, eq. 10);
* :func:`assert_tied_stay_tied` — ``V = Wᵀ`` or equal channels are preserved;
* :func:`assert_invariant` — a predicate on the synapses holds over n steps
  (e.g. :func:`masked_entries_are_zero`);
* :func:`trajectory` — every synapse and output of a short seeded run, to
  compare two simulators (backends, dtypes, threads, sparse storage).
"""

from blursim.testing.assertions import (
    assert_gradient_like,
    assert_invariant,
    assert_not_gradient_like,
    assert_tied_stay_tied,
    forward_synapses,
    gradient_report,
    masked_entries_are_zero,
)
from blursim.testing.runs import trajectory

__all__ = [
    "assert_gradient_like",
    "assert_not_gradient_like",
    "assert_tied_stay_tied",
    "assert_invariant",
    "forward_synapses",
    "gradient_report",
    "masked_entries_are_zero",
    "trajectory",
]
