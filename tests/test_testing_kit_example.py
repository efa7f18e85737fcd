"""Property-testing an update rule with blursim.testing (the README shows this file)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from blursim.genome import backprop_genome
from blursim.spec import GenomeSpec
from blursim.testing import assert_gradient_like, assert_not_gradient_like, laws
from blursim.testing import strategies as bst


def my_rule(lr=0.1, leak=0.5):
    """A rule of one's own: the backprop genome whose backward pass also hears state 0 (mu[1][0])."""
    doc = backprop_genome(lr=lr).model_dump()
    doc["groups"]["default"]["mu"][1][0] = leak
    return GenomeSpec.model_validate(doc)


@settings(max_examples=5, deadline=None)
@given(spec=bst.backprop_network_specs("error_mse", n_features=3, sizes=(1, 3)), data=st.data())
def test_backprop_is_a_gradient_and_my_rule_is_not(spec, data):
    x, y = data.draw(bst.data_batches(n_features=3, n_classes=3, batch=(2, 6)))
    assert_gradient_like(spec, backprop_genome(lr=0.1), x, y)  # Q = -lr * Hessian: symmetric
    assert_not_gradient_like(spec, my_rule(), x, y, min_margin=1e3)


@settings(max_examples=5, deadline=None)
@given(spec=bst.paper_network_specs(n_features=3, connectivity=bst.SPARSE_CONNECTIVITY), data=st.data())
def test_my_rule_keeps_every_law_of_the_papers_rule_family(spec, data):
    batches = [data.draw(bst.data_batches(n_features=3, n_classes=3, values=True)) for _ in range(3)]
    checked = laws.check_all(spec, my_rule(), batches)  # masked synapses stay 0, equivariance, ...
    assert "masked_synapses_stay_zero" in checked
