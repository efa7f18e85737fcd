"""Property-testing an update rule with blursim.testing (the README shows this file)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from blursim.genome import backprop_genome
from blursim.testing import assert_gradient_like, assert_invariant, assert_not_gradient_like
from blursim.testing import masked_entries_are_zero
from blursim.testing import strategies as bst


@settings(max_examples=5, deadline=None)
@given(spec=bst.backprop_network_specs("error_mse", n_features=3, sizes=(1, 3)), data=st.data())
def test_backprop_is_a_gradient_and_a_perturbed_rule_is_not(spec, data):
    x, y = data.draw(bst.data_batches(n_features=3, n_classes=3, batch=(2, 6)))
    assert_gradient_like(spec, backprop_genome(lr=0.1), x, y)  # Q = -lr * Hessian: symmetric
    mutant = data.draw(bst.perturbed_genomes(backprop_genome(lr=0.1), scale=0.3))
    assert_not_gradient_like(spec, mutant, x, y, min_margin=1e3)


@settings(max_examples=5, deadline=None)
@given(spec=bst.network_specs(n_features=3, connectivity=("fixed_probability",)),
       genome=bst.genomes(), data=st.data())
def test_sparse_synapses_stay_sparse(spec, genome, data):
    batches = [data.draw(bst.data_batches(n_features=3, n_classes=3)) for _ in range(3)]
    assert_invariant(spec, genome, batches, masked_entries_are_zero, n_steps=6)
