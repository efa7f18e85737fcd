"""The Hypothesis strategies for rules and for recurrent/sparse specs (blursim.testing.strategies).

They are the input of the property tests (tests/test_reference_step.py and the
testing kit): what they draw must compile, every option must be reachable,
and pinned options must hold.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import find as _find
from hypothesis import strategies as st

from blursim.graph import compile_network
from blursim.graph.build import build_graph
from blursim.spec import load_network
from blursim.spec.network import Rules
from blursim.testing.strategies import ALL_CONNECTIVITY, RULE_CHOICES, network_specs, rules

# These tests ask whether an example exists, not for the smallest one: shrinking
# network specs (each candidate compiled) took over a minute of the suite.
_NO_SHRINK = settings(phases=[Phase.generate], database=None, max_examples=2000)


def find(strategy, condition):
    return _find(strategy, condition, settings=_NO_SHRINK)


def _spec(output_size=2, **kw):
    return network_specs(k=2, n_features=3, n_classes=output_size, sizes=(1, 4), hidden=(1, 3),
                         connectivity=ALL_CONNECTIVITY, recurrent_p=0.3,
                         rules=rules(output_size=output_size, **kw))


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(spec=_spec(), one=st.booleans(), data=st.data())
def test_drawn_specs_compile(spec, one, data):
    if one:  # one-neuron outputs never get error_softmax
        spec = data.draw(_spec(output_size=1))
        assert spec["rules"]["feedback"] != "error_softmax"
    Rules.model_validate(spec["rules"])  # every drawn option is a valid Rules value
    prog = compile_network(load_network(spec))
    assert prog.rules.model_dump() == Rules.model_validate(spec["rules"]).model_dump()
    if spec["rules"]["schedule"] == "topological":
        assert nx.is_directed_acyclic_graph(build_graph(prog.spec))


@pytest.mark.parametrize("name", sorted(RULE_CHOICES))
def test_every_rule_option_is_drawn(name):
    for value in RULE_CHOICES[name]:
        assert find(rules(), lambda r, v=value: r[name] == v)[name] == value
    # the choices are exactly the values the spec accepts (a new Rules option must be added here)
    field = Rules.model_fields[name]
    if getattr(field.annotation, "__args__", None) and name not in ("norm_eps", "synapse_norm_eps"):
        assert set(field.annotation.__args__) == set(RULE_CHOICES[name])


def test_rules_strategy_covers_every_rules_field():
    assert set(Rules.model_fields) == set(RULE_CHOICES) | {"sweeps", "synapse_init"}
    assert find(rules(), lambda r: r["sweeps"] == 3)["schedule"] == "synchronous"
    assert find(rules(), lambda r: r["synapse_init"]["bias"] == "same")


@settings(max_examples=20)
@given(r=rules(tied=True, oja=st.sampled_from(["weights", "activity"]), recurrent=True))
def test_pinned_options_hold(r):
    assert r["tied"] is True and r["oja"] in ("weights", "activity")
    assert r["schedule"] == "synchronous" and 1 <= r["sweeps"] <= 3


def test_bad_pins_are_refused():
    with pytest.raises(TypeError, match="unknown option"):
        find(rules(tide=True), lambda r: True)
    with pytest.raises(ValueError, match="synchronous"):
        find(rules(recurrent=True, schedule="topological"), lambda r: True)
    with pytest.raises(ValueError, match="error_softmax"):
        find(rules(output_size=1, feedback="error_softmax"), lambda r: True)


def test_recurrent_and_sparse_specs_are_drawn():
    def cyclic(spec):
        return not nx.is_directed_acyclic_graph(build_graph(load_network(spec)))

    spec = find(_spec(schedule="synchronous"), cyclic)
    assert spec["rules"]["schedule"] == "synchronous"
    assert any(p["from"] == p["to"] for p in find(_spec(schedule="synchronous"), lambda s: any(
        p["from"] == p["to"] for p in s["projections"]))["projections"])
    for kind in ALL_CONNECTIVITY:
        spec = find(_spec(), lambda s, kind=kind: any(
            p["connectivity"]["kind"] == kind for p in s["projections"]))
        prog = compile_network(load_network(spec))
        q = next(q for q in prog.projs if q.kind == kind)
        if kind != "all_to_all":
            # local2d/one_to_one/from_list masks may be full (compiled to None) on tiny grids
            assert q.mask is None or (q.mask.dtype == bool and not q.mask.all())
    o2o = find(_spec(), lambda s: any(p["connectivity"]["kind"] == "one_to_one" for p in s["projections"]))
    prog = compile_network(load_network(o2o))
    q = next(q for q in prog.projs if q.kind == "one_to_one")
    assert q.n_pre == q.n_post and (q.mask is None or np.array_equal(q.mask, np.eye(q.n_pre, dtype=bool)))


def test_shared_update_is_drawn_only_with_shared_channels():
    r = find(rules(), lambda r: r["shared_update"] == "channel0")
    assert r["shared_channels"] is True
    assert find(rules(shared_update="channel0"), lambda r: True)["shared_channels"] is True
    with pytest.raises(ValueError, match="shared_channels"):
        find(rules(shared_update="channel0", shared_channels=False), lambda r: True)
