"""The published JSON Schemas (issue 26 item 3): every property described, registered names as
enums generated from the registries, ``$schema`` accepted, the shipped documents valid under
an independent validator (the ``jsonschema`` package)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import blursim.meta.experiment  # noqa: F401  (registers the experiment document)
from blursim.cli.main import main
from blursim.errors import SpecError
from blursim.spec import SCHEMAS, document_kind, load_any, load_network, schema_json

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted((ROOT / "specs").glob("*.json")) + sorted((ROOT / "specs" / "experiments").glob("*.json"))
NAMES = ("network", "genome", "experiment")


def _properties(node, path="$"):
    """Every ``(path, property schema)`` under ``properties`` anywhere in a schema ($defs,
    alternatives and nested objects included)."""
    if isinstance(node, dict):
        for key, sub in (node.get("properties") or {}).items():
            yield f"{path}.{key}", sub
        for key, sub in node.items():
            yield from _properties(sub, f"{path}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from _properties(sub, f"{path}[{i}]")


def _def(schema, name):
    return schema["$defs"][name]


@pytest.mark.parametrize("name", NAMES)
def test_every_property_has_a_description(name):
    props = list(_properties(schema_json(name)))
    assert len(props) > 15  # the walk finds the nested definitions
    missing = [p for p, sub in props if not (isinstance(sub, dict) and str(sub.get("description", "")).strip())]
    assert not missing, f"{len(missing)} of {len(props)} properties have no description: {missing[:10]}"


@pytest.mark.parametrize("name", NAMES)
def test_schema_names_its_dialect_id_and_schema_key(name):
    sch = schema_json(name)
    assert sch["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert sch["$id"] == f"urn:blursim:{name}/1"
    assert sch["properties"]["$schema"]["type"] == "string"


def _enum_of(prop):
    """The enum of a string property, or of the strings of a string-or-list property."""
    if "enum" in prop:
        return prop["enum"]
    for alt in prop.get("anyOf", []):
        if "enum" in alt:
            return alt["enum"]
    raise AssertionError(f"no enum in {prop}")


def test_registry_names_are_enums_of_the_registries():
    from blursim.data import DATASETS
    from blursim.genome import PRESETS
    from blursim.graph.connectivity import CONNECTIVITY
    from blursim.meta.strategies import STRATEGIES
    from blursim.vocab import ACTIVATIONS, FEEDBACK

    net = schema_json("network")
    pop = _def(net, "Population")["properties"]
    assert _enum_of(pop["forward_activation"]) == ACTIVATIONS.names()
    assert _enum_of(pop["backward_activation"]) == ACTIVATIONS.names()
    per_state = next(a for a in pop["forward_activation"]["anyOf"] if a.get("type") == "array")
    assert per_state["items"]["enum"] == ACTIVATIONS.names()
    assert _def(net, "Rules")["properties"]["feedback"]["enum"] == FEEDBACK.names()
    # the connectivity union: one alternative per registered kind, each with its kind as a constant
    alts = _def(net, "Projection")["properties"]["connectivity"]["oneOf"]
    kinds = {_def(net, a["$ref"].split("/")[-1])["properties"]["kind"]["const"] for a in alts}
    assert kinds == set(CONNECTIVITY.names())

    exp = schema_json("experiment")
    for defn, reg in (("TaskSpec", DATASETS), ("StrategySpec", STRATEGIES), ("InitPreset", PRESETS)):
        node = _def(exp, defn)
        assert node["properties"]["name"]["enum"] == reg.names(), defn
        consts = [alt["properties"]["name"]["const"] for alt in node["oneOf"]]
        assert consts == reg.names(), defn


def test_a_newly_registered_name_appears_in_the_schema(monkeypatch):
    """The enums are read from the registries when the schema is made, not listed by hand."""
    from blursim.vocab import ACTIVATIONS, FEEDBACK

    monkeypatch.setitem(ACTIVATIONS._items, "plugin_activation", lambda x, xp: x)
    monkeypatch.setitem(FEEDBACK._items, "plugin_feedback", lambda *a: a[0])
    net = schema_json("network")
    assert "plugin_activation" in _enum_of(_def(net, "Population")["properties"]["forward_activation"])
    assert "plugin_feedback" in _def(net, "Rules")["properties"]["feedback"]["enum"]


def test_an_unregistered_activation_keeps_its_error_message():
    """The enum is for editors; blursim's own check (the compiler's message with the valid
    choices) is unchanged."""
    from blursim.graph import compile_network

    spec = load_network({"k": 2, "populations": [{"name": "x", "size": 2, "role": "input"},
                                                  {"name": "y", "size": 2, "role": "output",
                                                   "forward_activation": "tahn"}],
                         "projections": [{"from": "x", "to": "y"}]})
    with pytest.raises(SpecError) as e:
        compile_network(spec)
    assert "unknown activation 'tahn'" in str(e.value) and "tanh" in str(e.value)


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: p.name)
def test_shipped_documents_are_valid_under_jsonschema(doc):
    jsonschema = pytest.importorskip("jsonschema")
    data = json.loads(doc.read_text())
    sch = schema_json(document_kind(data))
    jsonschema.Draft202012Validator.check_schema(sch)
    errors = [e.message for e in jsonschema.Draft202012Validator(sch).iter_errors(data)]
    assert not errors, errors[:3]


def test_jsonschema_refuses_what_the_enums_exclude():
    jsonschema = pytest.importorskip("jsonschema")
    data = json.loads((ROOT / "specs" / "toy_blur.json").read_text())
    data["populations"][-1]["forward_activation"] = "tahn"
    data["rules"] = {"feedback": "error_mae"}
    v = jsonschema.Draft202012Validator(schema_json("network"))
    bad = sorted(list(e.absolute_path)[-1] for e in v.iter_errors(data))
    assert bad == ["feedback", "forward_activation"]
    exp = json.loads((ROOT / "specs" / "experiments" / "toy.json").read_text())
    exp["training_tasks"][0]["name"] = "no_such_dataset"
    assert list(jsonschema.Draft202012Validator(schema_json("experiment")).iter_errors(exp))


@pytest.mark.parametrize("rel", ["specs/toy_blur.json", "specs/experiments/toy.json"])
def test_a_document_with_schema_key_validates(tmp_path, rel):
    jsonschema = pytest.importorskip("jsonschema")
    src = ROOT / rel
    data = json.loads(src.read_text())
    kind = document_kind(data)
    data = {"$schema": f"./{kind}.schema.json", **data}
    if kind == "experiment":  # keep the network path relative to the original file
        data["network"] = str((src.parent / data["network"]).resolve())
    path = tmp_path / src.name
    path.write_text(json.dumps(data, indent=2))
    got, want = load_any(path).model_dump(), load_any(src).model_dump()
    if kind == "experiment":
        assert got.pop("network") == data["network"]
        want.pop("network")
    assert got == want
    assert not list(jsonschema.Draft202012Validator(schema_json(kind)).iter_errors(data))
    genome = {"$schema": "genome.schema.json", "k": 1, "groups": {"default": {
        "f": 1, "eta": 1, "f_tilde": 1, "eta_tilde": 1, "nu": [[1]], "mu": [[1]], "nu_tilde": [[1]],
        "mu_tilde": [[1]]}}}
    (tmp_path / "g.json").write_text(json.dumps(genome))
    assert load_any(tmp_path / "g.json").k == 1


def test_a_schema_key_that_is_not_a_string_is_a_located_error(tmp_path):
    path = tmp_path / "net.json"
    path.write_text('{\n  "k": 1,\n  "$schema": 3,\n  "populations": []\n}\n')
    with pytest.raises(SpecError) as e:
        load_any(path)
    msg = str(e.value)
    assert "net.json, line 3" in msg and "$schema" in msg and "must be a string" in msg


def test_cli_schema_out_writes_every_document_schema(tmp_path, capsys):
    assert main(["schema", "--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(f"{n}.schema.json" for n in SCHEMAS.names())
    for n in SCHEMAS.names():
        assert json.loads((tmp_path / f"{n}.schema.json").read_text()) == schema_json(n)
    capsys.readouterr()
    assert main(["schema", "network", "genome"]) != 0
    assert "name one document type" in capsys.readouterr().err
