"""Bad input gives a located SpecError, never another exception or a traceback.

Part 1 mutates the example specs at random (Hypothesis) and checks that the
error names the mutated JSON path, and, when read from a file, the file and a
line that shows the mutation. Part 2 has one hand-written case per validation
rule; part 3 covers genomes; part 4 the command line.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blursim.cli.main import main
from blursim.errors import GenomeError, SpecError
from blursim.genome import random_genome
from blursim.graph import check_task_fit, compile_network
from blursim.sim import Simulator
from blursim.spec import load_genome, load_network

SPECS = Path(__file__).resolve().parent.parent / "specs"
EXAMPLES = {
    p.name: json.loads(p.read_text())
    for p in sorted(SPECS.glob("*.json"))
    if str(json.loads(p.read_text()).get("format", "")).startswith("blursim.network")
}
BAD = "not_a_valid_choice_xyz"
UNKNOWN_POP = "no_such_population"


def fmt(path) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def get_at(doc, path):
    for key in path:
        doc = doc[key]
    return doc


def leaves(node, path=()):
    """(path, value) of every JSON scalar in a document."""
    if isinstance(node, dict):
        for key, v in node.items():
            yield from leaves(v, path + (key,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from leaves(v, path + (i,))
    else:
        yield path, node


def wrong_type(value):
    """A value of a type no field holding ``value`` accepts (pydantic's lax mode included)."""
    if isinstance(value, bool):
        return "maybe"
    if isinstance(value, (int, float)):
        return "not-a-number"
    if isinstance(value, str):
        return 12345
    return {"unexpected": "object"}


def load_and_compile(src):
    return compile_network(load_network(src))


# ------------------------------------------------------------------ mutations


@st.composite
def mutations(draw):
    """(spec name, mutated document, JSON path the error must name, text on the error's line).

    The text is None when the error points at the parent object of a deleted
    key (its line starts with '{' or names the parent).
    """
    name = draw(st.sampled_from(sorted(EXAMPLES)))
    doc = copy.deepcopy(EXAMPLES[name])
    pops, projs = doc["populations"], doc["projections"]
    kind = draw(st.sampled_from(["delete", "wrong_type", "bad_reference", "bad_enum", "unknown_field",
                                 "duplicate_population"]))
    if kind == "delete":
        options = [("k",), ("populations",)]
        for i, _ in enumerate(pops):
            options += [("populations", i, key) for key in ("name", "size", "role")]
        for i, q in enumerate(projs):
            options += [("projections", i, "from"), ("projections", i, "to")]
            conn = q.get("connectivity")
            if conn:
                required = {"fixed_probability": ["p", "kind"], "from_list": ["edges", "kind"],
                            "local2d": ["radius", "kind"], "block_random": ["block", "p", "kind"],
                            "one_to_one": ["kind"]}.get(conn["kind"], [])
                options += [("projections", i, "connectivity", key) for key in required]
        path = draw(st.sampled_from(options))
        del get_at(doc, path[:-1])[path[-1]]
        if path[-1] == "kind":  # without its tag the connectivity object itself is reported
            path = path[:-1]
        return name, doc, path, None
    if kind == "wrong_type":
        path, value = draw(st.sampled_from(list(leaves(doc))))
        new = wrong_type(value)
        get_at(doc, path[:-1])[path[-1]] = new
        return name, doc, path, json.dumps(new) if not isinstance(new, dict) else json.dumps(path[-1])
    if kind == "bad_reference":
        i = draw(st.integers(0, len(projs) - 1))
        end = draw(st.sampled_from(["from", "to"]))
        projs[i][end] = UNKNOWN_POP
        return name, doc, ("projections", i, end), UNKNOWN_POP
    if kind == "bad_enum":
        options = [("rules", key) for key in ("backward_update", "feedback", "target_coding", "oja",
                                              "synapse_normalization", "schedule", "batch_reduction")]
        for i, p in enumerate(pops):
            options += [("populations", i, "role"), ("populations", i, "normalization")]
            if p["role"] != "input":  # an input's activations are never applied
                for key in ("forward_activation", "backward_activation"):
                    v = p.get(key)
                    if isinstance(v, list):
                        options += [("populations", i, key, c) for c in range(len(v))]
                    else:
                        options.append(("populations", i, key))
        for i, q in enumerate(projs):
            if "connectivity" in q:
                options.append(("projections", i, "connectivity", "kind"))
        if "synapse_init" in doc["rules"]:
            options.append(("rules", "synapse_init", "distribution"))
        path = draw(st.sampled_from(options))
        get_at(doc, path[:-1])[path[-1]] = BAD
        return name, doc, path, BAD
    if kind == "unknown_field":
        parents = [(), ("rules",)]
        parents += [("populations", i) for i in range(len(pops))]
        parents += [("projections", i) for i in range(len(projs))]
        parents += [("projections", i, "connectivity") for i, q in enumerate(projs) if "connectivity" in q]
        if "synapse_init" in doc["rules"]:
            parents.append(("rules", "synapse_init"))
        parent = draw(st.sampled_from(parents))
        key = draw(st.sampled_from(["unknown_field", "Size", "projection", "learning_rate"]))
        get_at(doc, parent)[key] = 1
        return name, doc, parent + (key,), json.dumps(key)
    # duplicate a population under the same name, appended at the end
    i = draw(st.integers(0, len(pops) - 1))
    pops.append(copy.deepcopy(pops[i]))
    return name, doc, ("populations", len(pops) - 1, "name"), json.dumps(pops[i]["name"])


def _check_message(err: BaseException, path):
    assert isinstance(err, SpecError), f"{type(err).__name__}: {err}"
    msg = str(err)
    assert f"at {fmt(path)}:" in msg, f"message does not name {fmt(path)}: {msg}"
    assert "\n" not in msg
    return msg


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(m=mutations())
def test_mutated_spec_raises_spec_error_naming_the_path(m):
    name, doc, path, _ = m
    try:
        load_and_compile(doc)
    except Exception as e:  # noqa: BLE001 - any other type is the failure we look for
        _check_message(e, path)
    else:
        pytest.fail(f"{name} mutated at {fmt(path)} was accepted")


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(m=mutations(), indent=st.sampled_from([1, 2, 4]))
def test_mutated_spec_file_error_names_file_and_line(m, indent, tmp_path):
    name, doc, path, marker = m
    f = tmp_path / f"mutated_{name}"
    text = json.dumps(doc, indent=indent)
    f.write_text(text)
    with pytest.raises(Exception) as info:
        load_and_compile(f)
    msg = _check_message(info.value, path)
    found = re.match(re.escape(str(f)) + r", line (\d+) at ", msg)
    assert found, f"file and line missing: {msg}"
    line = int(found.group(1))
    lines = text.splitlines()
    assert 1 <= line <= len(lines)
    if marker is not None:
        assert marker in lines[line - 1], (msg, lines[line - 1])
    else:  # a deleted key: the line where its parent object starts
        assert lines[line - 1].rstrip().endswith("{"), (msg, lines[line - 1])


def test_mutations_cover_every_example_spec():
    assert len(EXAMPLES) >= 5
    assert {"mlp_2d.json", "recurrent_2d.json", "toy_blur.json"} <= set(EXAMPLES)


# ---------------------------------------------------------- one case per rule


def base():
    return {
        "k": 2,
        "populations": [
            {"name": "in", "size": 2, "role": "input"},
            {"name": "h", "size": 3, "role": "hidden"},
            {"name": "out", "size": 2, "role": "output"},
        ],
        "projections": [{"from": "in", "to": "h"}, {"from": "h", "to": "out"}],
    }


def error_of(doc) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_and_compile(doc)
    return info.value


def test_base_spec_is_valid():
    assert len(load_and_compile(base()).projs) == 2


def test_unknown_population_lists_valid_names():
    d = base()
    d["projections"][1]["to"] = "outt"
    msg = str(error_of(d))
    assert "at $.projections[1].to:" in msg and "'outt'" in msg
    assert "Valid choices: h, in, out." in msg


def test_duplicate_population_names():
    d = base()
    d["populations"].append({"name": "h", "size": 4, "role": "hidden"})
    msg = str(error_of(d))
    assert "at $.populations[3].name:" in msg and "'h'" in msg and "$.populations[1]" in msg


def test_no_input_population():
    d = base()
    d["populations"][0]["role"] = "hidden"
    msg = str(error_of(d))
    assert "no input population" in msg and "at $.populations:" in msg


def test_no_output_population():
    d = base()
    d["populations"][2]["role"] = "hidden"
    assert "no output population" in str(error_of(d))


def test_hidden_population_without_path_to_output():
    d = base()
    d["populations"].append({"name": "dead_end", "size": 3, "role": "hidden"})
    d["projections"].append({"from": "in", "to": "dead_end"})
    msg = str(error_of(d))
    assert "at $.populations[3]:" in msg and "'dead_end'" in msg and "no path to an output" in msg


def test_hidden_population_receiving_nothing():
    d = base()
    d["populations"].append({"name": "orphan", "size": 3, "role": "hidden"})
    d["projections"].append({"from": "orphan", "to": "out"})
    msg = str(error_of(d))
    assert "'orphan'" in msg and "receives no projection" in msg


def test_cycle_under_topological_schedule_names_its_populations():
    d = base()
    d["populations"].insert(2, {"name": "h2", "size": 3, "role": "hidden"})
    d["projections"] += [{"from": "h", "to": "h2"}, {"from": "h2", "to": "h"}]
    msg = str(error_of(d))
    assert "cycle" in msg and "at $.rules.schedule:" in msg
    cycle = re.search(r"cycle ([\w >-]+),", msg).group(1).split(" -> ")
    assert set(cycle) == {"h", "h2"} and cycle[0] == cycle[-1]
    d["rules"] = {"schedule": "synchronous", "sweeps": 2}  # accepted when synchronous
    assert load_and_compile(d)


def test_self_loop_is_a_cycle():
    d = base()
    d["projections"].append({"from": "h", "to": "h", "name": "self"})
    assert "h -> h" in str(error_of(d))


def test_projection_into_an_input():
    d = base()
    d["projections"].append({"from": "h", "to": "in"})
    msg = str(error_of(d))
    assert "at $.projections[2].to:" in msg and "input" in msg


def test_spec_must_fit_the_task_features():
    spec = load_network(base())
    with pytest.raises(SpecError) as info:
        check_task_fit(spec, 3, 2, "xor3")
    msg = str(info.value)
    assert "3 input features" in msg and "2 neurons" in msg and "at $.populations[0].size:" in msg


def test_spec_must_fit_the_task_classes():
    spec = load_network(base())
    with pytest.raises(SpecError) as info:
        check_task_fit(spec, 2, 10, "digits2d")
    msg = str(info.value)
    assert "10 classes" in msg and "at $.populations[2].size:" in msg
    check_task_fit(spec, 2, 2, "xor")  # fits
    d = base()
    d["populations"][2]["size"] = 1
    check_task_fit(load_network(d), 2, 2, "xor")  # one neuron suffices for two classes


def test_task_fit_error_from_file_names_file_and_line(tmp_path):
    f = tmp_path / "net.json"
    f.write_text(json.dumps(base(), indent=2))
    with pytest.raises(SpecError) as info:
        check_task_fit(load_network(f), 64, 10, "digits")
    msg = str(info.value)
    line = int(re.match(re.escape(str(f)) + r", line (\d+) ", msg).group(1))
    assert '"size": 2' in f.read_text().splitlines()[line - 1]


def test_unknown_activation_lists_valid_ones():
    d = base()
    d["populations"][1]["forward_activation"] = "tahn"
    msg = str(error_of(d))
    assert "at $.populations[1].forward_activation:" in msg and "'tahn'" in msg
    assert "tanh" in msg and "sigmoid" in msg and "relu" in msg


def test_unknown_activation_in_per_state_list():
    d = base()
    d["populations"][1]["backward_activation"] = ["tanh", "sigmoid_deriv"]
    msg = str(error_of(d))
    assert "at $.populations[1].backward_activation[1]:" in msg and "sigmoid_derivative" in msg


def test_per_state_activation_list_of_wrong_length():
    d = base()
    d["populations"][1]["forward_activation"] = ["tanh", "tanh_derivative", "tanh"]
    msg = str(error_of(d))
    assert "at $.populations[1].forward_activation:" in msg and "k=2" in msg and "3" in msg


def test_unknown_connectivity_kind():
    d = base()
    d["projections"][0]["connectivity"] = {"kind": "all2all"}
    msg = str(error_of(d))
    assert "at $.projections[0].connectivity.kind:" in msg and "all_to_all" in msg
    assert "one_to_one" in msg and "'all2all'" in msg


def test_one_to_one_size_mismatch():
    d = base()
    d["projections"][0]["connectivity"] = {"kind": "one_to_one"}
    msg = str(error_of(d))
    assert "at $.projections[0].connectivity:" in msg and "'in' has 2" in msg and "'h' has 3" in msg


def test_local2d_without_grid():
    d = base()
    d["populations"][1]["size"] = 4
    d["populations"][1]["grid"] = [2, 2]
    d["projections"][0]["connectivity"] = {"kind": "local2d", "radius": 1.0}
    msg = str(error_of(d))
    assert "at $.projections[0].connectivity:" in msg and "'in'" in msg and "grid" in msg
    d["populations"][0]["grid"] = [1, 2]
    assert load_and_compile(d)


def test_grid_must_hold_the_population():
    d = base()
    d["populations"][1]["grid"] = [2, 2]
    msg = str(error_of(d))
    assert "at $.populations[1]" in msg and "grid" in msg


def test_from_list_edge_out_of_range():
    d = base()
    d["projections"][0]["connectivity"] = {"kind": "from_list", "edges": [[0, 0], [1, 3]]}
    msg = str(error_of(d))
    assert "at $.projections[0].connectivity.edges[1]:" in msg


def test_error_softmax_with_one_output_neuron_is_valid():
    """One output neuron with error_softmax is logistic cross-entropy (its logits are [0, a]);
    tests/test_targets.py checks the step against SGD on that loss."""
    d = base()
    d["populations"][2]["size"] = 1
    for feedback in ("error_softmax", "error_mse", "target"):
        d["rules"] = {"feedback": feedback}
        assert load_and_compile(d)


@pytest.mark.parametrize("feedback", ["target", "error_mse", "error_softmax"])
def test_k1_with_feedback(feedback):
    d = base()
    d["k"] = 1
    d["rules"] = {"feedback": feedback}
    msg = str(error_of(d))
    assert "at $.k:" in msg and "k >= 2" in msg


def test_unknown_feedback_kind():
    d = base()
    d["rules"] = {"feedback": "targets"}
    msg = str(error_of(d))
    assert "at $.rules.feedback:" in msg and "error_softmax" in msg


def test_invalid_json_syntax_names_line_and_column(tmp_path):
    f = tmp_path / "broken.json"
    f.write_text('{\n  "k": 2,\n  "populations": [\n    {"name": "in",, "size": 2}\n  ]\n}\n')
    with pytest.raises(SpecError) as info:
        load_network(f)
    msg = str(info.value)
    assert str(f) in msg and "line 4" in msg and "column 19" in msg


def test_empty_file_is_not_json(tmp_path):
    f = tmp_path / "empty.json"
    f.write_text("")
    with pytest.raises(SpecError, match="not valid JSON"):
        load_network(f)


def test_document_must_be_an_object(tmp_path):
    f = tmp_path / "list.json"
    f.write_text("[1, 2]")
    with pytest.raises(SpecError, match="JSON object"):
        load_network(f)


def test_missing_file(tmp_path):
    with pytest.raises(SpecError) as info:
        load_network(tmp_path / "nope.json")
    assert "file not found" in str(info.value) and "nope.json" in str(info.value)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(SpecError, match="directory"):
        load_network(tmp_path)


NEGATIVE_SEED_BUG = (
    "BUG: a negative seed passes validation and then crashes with numpy's bare ValueError "
    "'expected non-negative integer' in build_masks (blursim/graph/connectivity.py, "
    "np.random.SeedSequence / default_rng): NetworkSpec.seed, FixedProbability.seed and "
    "BlockRandom.seed (blursim/spec/network.py) need ge=0")


@pytest.mark.parametrize("where", ["network", "fixed_probability", "block_random"])
def test_negative_seed_is_a_spec_error(where):
    d = base()
    if where == "network":
        d["seed"] = -1
        path = "$.seed"
    else:
        conn = {"kind": where, "p": 0.5, "seed": -3}
        if where == "block_random":
            conn["block"] = [1, 1]
        d["projections"][0]["connectivity"] = conn
        path = "$.projections[0].connectivity.seed"
    try:
        load_and_compile(d)
    except SpecError as e:
        assert f"at {path}:" in str(e)
    else:
        pytest.fail("a negative seed was accepted")


# ------------------------------------------------------------------- genomes


def genome_doc(k=2):
    return json.loads(random_genome(k=k, seed=3).model_dump_json())


def net_program(groups=("default",)):
    d = base()
    d["populations"][1]["genome"] = groups[-1]
    return compile_network(load_network(d))


def test_genome_with_wrong_k_for_the_network():
    sim = Simulator(net_program(), backend="numpy")
    with pytest.raises(GenomeError) as info:
        sim.prepare([load_genome(genome_doc(k=3))])
    msg = str(info.value)
    assert "k=3" in msg and "k=2" in msg and ".k" in msg


def test_genome_missing_a_group_the_network_uses():
    sim = Simulator(net_program(groups=("default", "hidden_group")), backend="numpy")
    with pytest.raises(GenomeError) as info:
        sim.prepare([load_genome(genome_doc())])
    msg = str(info.value)
    assert "'hidden_group'" in msg and "groups" in msg


@pytest.mark.parametrize("bad", [[[1, 2, 3], [4, 5, 6]], [[1, 2]], [[1, 2], [3, 4], [5, 6]]])
def test_genome_matrix_of_wrong_shape(bad):
    d = genome_doc()
    d["groups"]["default"]["nu"] = bad
    with pytest.raises(SpecError) as info:
        load_genome(d)
    msg = str(info.value)
    assert "groups.default.nu" in msg and "2x2" in msg


def test_genome_vector_of_wrong_length():
    d = genome_doc()
    d["groups"]["default"]["norm_gain"] = [1.0, 1.0, 1.0]
    msg = str(pytest.raises(SpecError, load_genome, d).value)
    assert "norm_gain" in msg and "k=2" in msg


def test_genome_ragged_matrix_message_is_not_self_contradictory():
    d = genome_doc()
    d["groups"]["default"]["mu"] = [[1.0, 2.0], [3.0]]
    msg = str(pytest.raises(SpecError, load_genome, d).value)
    assert "groups.default.mu" in msg
    assert "got 2x2" not in msg


def test_genome_shape_error_from_file_points_at_the_field(tmp_path):
    d = genome_doc()
    d["groups"]["default"]["nu"] = [[1, 2, 3], [4, 5, 6]]
    f = tmp_path / "genome.json"
    text = json.dumps(d, indent=2)
    f.write_text(text)
    msg = str(pytest.raises(SpecError, load_genome, f).value)
    assert "at $.groups.default.nu" in msg
    line = int(re.search(r", line (\d+) ", msg).group(1))
    lines = text.splitlines()
    start = next(i for i, t in enumerate(lines) if '"nu"' in t)
    end = next(i for i, t in enumerate(lines) if i > start and '"mu"' in t)
    assert start <= line - 1 < end  # the line is inside the "nu" value


@pytest.mark.parametrize("field, where", [("f", None), ("eta_tilde", None), ("mu", (1, 0)),
                                          ("norm_shift", 1)])
def test_genome_nan_or_inf_names_the_field(field, where, tmp_path):
    d = genome_doc()
    g = d["groups"]["default"]
    if field == "norm_shift":
        g[field] = [0.0, float("inf")]
    elif where is None:
        g[field] = float("nan")
    else:
        g[field][where[0]][where[1]] = float("nan")
    f = tmp_path / "g.json"
    f.write_text(json.dumps(d, indent=2))  # Python writes NaN/Infinity, which json accepts
    for src in (d, f):
        with pytest.raises(SpecError) as info:
            load_genome(src)
        msg = str(info.value)
        assert f"'{field}'" in msg and "NaN or Inf" in msg and "$.groups.default" in msg
    assert str(f) in msg


def test_genome_unknown_field():
    d = genome_doc()
    d["groups"]["default"]["eta_tlide"] = 0.1
    msg = str(pytest.raises(SpecError, load_genome, d).value)
    assert "at $.groups.default.eta_tlide:" in msg and "eta_tilde" in msg


def test_genome_missing_field():
    d = genome_doc()
    del d["groups"]["default"]["mu_tilde"]
    msg = str(pytest.raises(SpecError, load_genome, d).value)
    assert "at $.groups.default.mu_tilde:" in msg and "missing" in msg


def test_genome_without_groups():
    d = genome_doc()
    d["groups"] = {}
    msg = str(pytest.raises(SpecError, load_genome, d).value)
    assert "at $.groups:" in msg


def test_genome_wrong_format():
    d = genome_doc()
    d["format"] = "blursim.network/1"
    msg = str(pytest.raises(SpecError, load_genome, d).value)
    assert "at $.format:" in msg


# ------------------------------------------------------------- command line


def _cli_error(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, (rc, out, err)
    assert err.startswith("blursim: error: "), err
    assert err.strip().count("\n") == 0, f"not one paragraph: {err!r}"
    assert "Traceback" not in out + err
    return err


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(m=mutations())
def test_cli_validate_mutated_spec(m, tmp_path, capsys):
    name, doc, path, _ = m
    f = tmp_path / f"bad_{name}"
    f.write_text(json.dumps(doc, indent=2))
    err = _cli_error(capsys, ["validate", str(f)])
    assert str(f) in err and f"at {fmt(path)}:" in err


def test_cli_errors_in_process(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BLURSIM_DEBUG", raising=False)
    bad = tmp_path / "bad.json"
    d = base()
    d["projections"][0]["to"] = "hidden"
    bad.write_text(json.dumps(d, indent=2))
    assert "unknown population 'hidden'" in _cli_error(capsys, ["validate", str(bad)])
    assert "file not found" in _cli_error(capsys, ["validate", str(tmp_path / "missing.json")])
    assert "not valid JSON" in _cli_error(capsys, ["graph", str(_write(tmp_path, "x.json", "{"))])
    mlp = str(SPECS / "mlp_2d.json")
    err = _cli_error(capsys, ["run", mlp, "--task", "digits", "--preset", "random", "--steps", "1"])
    assert "64 input features" in err
    err = _cli_error(capsys, ["run", mlp, "--task", "xorr", "--preset", "random", "--steps", "1"])
    assert "unknown dataset 'xorr'" in err and "xor" in err
    err = _cli_error(capsys, ["run", mlp, "--task", "xor", "--preset", "sgd", "--steps", "1"])
    assert "backprop" in err and "random" in err
    err = _cli_error(capsys, ["run", mlp, "--task", "xor", "--preset", "random", "--steps", "-1"])
    assert "--steps" in err
    g = genome_doc(k=3)
    err = _cli_error(capsys, ["run", mlp, "--task", "xor", "--steps", "1", "--genome",
                              str(_write(tmp_path, "g3.json", json.dumps(g)))])
    assert "k=3" in err
    g = genome_doc()
    g["groups"]["default"]["f"] = float("nan")
    err = _cli_error(capsys, ["run", mlp, "--task", "xor", "--steps", "1", "--genome",
                              str(_write(tmp_path, "gnan.json", json.dumps(g)))])
    assert "'f'" in err and "gnan.json" in err
    err = _cli_error(capsys, ["schema", "nonsense"])
    assert "network" in err and "genome" in err


@pytest.mark.parametrize("flag", ["--seed", "--genome-seed"])
def test_cli_negative_seed(flag, capsys):
    err = _cli_error(capsys, ["run", str(SPECS / "mlp_2d.json"), "--task", "xor", "--preset",
                              "random", "--steps", "1", flag, "-1"])
    assert flag in err


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def _cyclic_file(tmp_path):
    bad = tmp_path / "cyclic.json"
    d = base()
    d["projections"].append({"from": "out", "to": "h"})
    bad.write_text(json.dumps(d, indent=2))
    return bad


def _console_script():
    exe = Path(sys.executable).parent / "blursim"
    return [str(exe)] if exe.exists() else [sys.executable, "-c",
                                            "import sys; from blursim.cli import main; sys.exit(main())"]


def _check_subprocess_error(cmd, bad):
    env = {k: v for k, v in os.environ.items() if k != "BLURSIM_DEBUG"}
    r = subprocess.run(cmd + ["validate", str(bad)], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    assert str(bad) in r.stderr and "cycle" in r.stderr and "$.rules.schedule" in r.stderr
    assert r.stderr.startswith("blursim: error: "), r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr


def test_cli_error_via_console_script(tmp_path):
    _check_subprocess_error(_console_script(), _cyclic_file(tmp_path))


def test_cli_error_via_python_m(tmp_path):
    _check_subprocess_error([sys.executable, "-m", "blursim.cli.main"], _cyclic_file(tmp_path))
