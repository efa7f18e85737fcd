"""The command line: validate, schema, graph, list, run (and the issue's acceptance run)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import networkx as nx
import pytest

from blursim.cli.main import main
from blursim.data import DATASETS
from blursim.genome import PRESETS, backprop_genome, random_genome
from blursim.graph.connectivity import CONNECTIVITY
from blursim.sim import ACTIVATIONS, FEEDBACK
from blursim.spec import dump_json

SPECS = Path(__file__).resolve().parent.parent / "specs"
NETWORK_SPECS = [p for p in sorted(SPECS.glob("*.json"))
                 if str(json.loads(p.read_text()).get("format", "")).startswith("blursim.network")]


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------- validate


def test_validate_all_example_specs(capsys):
    assert len(NETWORK_SPECS) >= 5
    rc, out, err = cli(capsys, "validate", *NETWORK_SPECS)
    assert rc == 0, err
    assert err == ""
    lines = out.strip().splitlines()
    assert len(lines) == len(NETWORK_SPECS)
    for path, line in zip(NETWORK_SPECS, lines):
        assert line.startswith(f"{path}: ok")


def test_validate_with_task(capsys):
    rc, out, _ = cli(capsys, "validate", SPECS / "mlp_2d.json", "--task", "xor")
    assert rc == 0 and ": ok" in out
    rc, out, err = cli(capsys, "validate", SPECS / "digits_backprop.json", "--task", "xor")
    assert rc == 2 and "2 input features" in err


# --------------------------------------------------------------------- schema


def _resolve(root, ref):
    assert ref.startswith("#/")
    node = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def mini_validate(schema, doc, root=None, path="$"):
    """Errors of ``doc`` against ``schema``: a small JSON Schema subset written for this test
    (the keywords pydantic emits), so the check needs no third-party package."""
    root = root if root is not None else schema
    errors = []
    if "$ref" in schema:
        errors += mini_validate(_resolve(root, schema["$ref"]), doc, root, path)
    t = schema.get("type")
    if t == "integer":
        ok = isinstance(doc, int) and not isinstance(doc, bool)
    elif t == "number":
        ok = isinstance(doc, (int, float)) and not isinstance(doc, bool)
    elif t is not None:
        ok = isinstance(doc, _TYPES[t])
    else:
        ok = True
    if not ok:
        return errors + [f"{path}: expected {t}"]
    if "const" in schema and doc != schema["const"]:
        errors.append(f"{path}: expected {schema['const']!r}")
    if "enum" in schema and doc not in schema["enum"]:
        errors.append(f"{path}: {doc!r} not in {schema['enum']}")
    if "pattern" in schema and not re.search(schema["pattern"], doc):
        errors.append(f"{path}: does not match {schema['pattern']}")
    if "minLength" in schema and len(doc) < schema["minLength"]:
        errors.append(f"{path}: too short")
    if "minimum" in schema and doc < schema["minimum"]:
        errors.append(f"{path}: below minimum")
    if "maximum" in schema and doc > schema["maximum"]:
        errors.append(f"{path}: above maximum")
    if "exclusiveMinimum" in schema and doc <= schema["exclusiveMinimum"]:
        errors.append(f"{path}: not above exclusive minimum")
    if isinstance(doc, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in doc:
                errors.append(f"{path}: missing {key}")
        if "minProperties" in schema and len(doc) < schema["minProperties"]:
            errors.append(f"{path}: too few properties")
        patterns = schema.get("patternProperties", {})
        for key, v in doc.items():
            matching = [sub for pat, sub in patterns.items() if re.search(pat, key)]
            if key in props:
                errors += mini_validate(props[key], v, root, f"{path}.{key}")
            elif matching:
                for sub in matching:
                    errors += mini_validate(sub, v, root, f"{path}.{key}")
            elif patterns:
                errors.append(f"{path}: key {key!r} matches no pattern")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unexpected {key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += mini_validate(schema["additionalProperties"], v, root, f"{path}.{key}")
    if isinstance(doc, list):
        if "minItems" in schema and len(doc) < schema["minItems"]:
            errors.append(f"{path}: too few items")
        if "maxItems" in schema and len(doc) > schema["maxItems"]:
            errors.append(f"{path}: too many items")
        prefix = schema.get("prefixItems", [])
        for i, v in enumerate(doc):
            sub = prefix[i] if i < len(prefix) else schema.get("items")
            if isinstance(sub, dict):
                errors += mini_validate(sub, v, root, f"{path}[{i}]")
    for key in ("anyOf", "oneOf"):
        if key in schema:
            matches = [s for s in schema[key] if not mini_validate(s, doc, root, path)]
            if not matches or (key == "oneOf" and len(matches) > 1):
                errors.append(f"{path}: {len(matches)} of the {key} alternatives match")
    for sub in schema.get("allOf", []):
        errors += mini_validate(sub, doc, root, path)
    return errors


def _schema(capsys, name):
    rc, out, err = cli(capsys, "schema", name)
    assert rc == 0, err
    sch = json.loads(out)
    assert sch["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert sch["type"] == "object"
    return sch


def _genome_docs():
    return [json.loads(dump_json(g)) for g in
            (backprop_genome(lr=0.3), random_genome(k=3, seed=1, groups=("default", "g2")))]


def _bad_networks():
    good = json.loads((SPECS / "mlp_2d.json").read_text())
    bad = []
    for mutate in (
        lambda d: d.pop("k"),
        lambda d: d["populations"][0].__setitem__("role", "sensor"),
        lambda d: d["projections"][0].__setitem__("connectivity", {"kind": "fixed_probability"}),
        lambda d: d["rules"].__setitem__("unknown_rule", 1),
        lambda d: d.__setitem__("k", "two"),
        lambda d: d["populations"][1].__setitem__("size", 0),
    ):
        d = json.loads(json.dumps(good))
        mutate(d)
        bad.append(d)
    return bad


def test_schema_network_accepts_examples_and_rejects_bad_documents(capsys):
    sch = _schema(capsys, "network")
    assert {"k", "populations"} <= set(sch["required"])
    for p in NETWORK_SPECS:
        assert mini_validate(sch, json.loads(p.read_text())) == [], p.name
    for d in _bad_networks():
        assert mini_validate(sch, d) != []


def test_schema_genome_accepts_genomes_and_rejects_bad_documents(capsys):
    sch = _schema(capsys, "genome")
    for d in _genome_docs():
        assert mini_validate(sch, d) == []
    d = _genome_docs()[0]
    del d["groups"]["default"]["mu"]
    assert mini_validate(sch, d) != []
    d = _genome_docs()[0]
    d["groups"]["default"]["extra"] = 1
    assert mini_validate(sch, d) != []


def test_schemas_with_jsonschema(capsys):
    jsonschema = pytest.importorskip("jsonschema")
    net = _schema(capsys, "network")
    gen = _schema(capsys, "genome")
    for sch in (net, gen):
        jsonschema.Draft202012Validator.check_schema(sch)
    v = jsonschema.Draft202012Validator(net)
    for p in NETWORK_SPECS:
        assert list(v.iter_errors(json.loads(p.read_text()))) == [], p.name
    for d in _bad_networks():
        assert list(v.iter_errors(d)) != []
    v = jsonschema.Draft202012Validator(gen)
    for d in _genome_docs():
        assert list(v.iter_errors(d)) == []


def test_mini_validator_is_sound():
    """The helper itself: a few known answers."""
    sch = {"type": "object", "required": ["a"], "additionalProperties": False,
           "properties": {"a": {"type": "integer", "minimum": 1},
                          "b": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}
    assert mini_validate(sch, {"a": 1, "b": None}) == []
    assert mini_validate(sch, {"a": 0}) and mini_validate(sch, {"b": "x"})
    assert mini_validate(sch, {"a": 1, "c": 2}) and mini_validate(sch, {"a": True})
    assert mini_validate(sch, {"a": 1, "b": 3})


# ---------------------------------------------------------------------- graph


def test_graph_summary_and_exports(capsys, tmp_path):
    dot, graphml = tmp_path / "out" / "net.dot", tmp_path / "net.graphml"
    rc, out, err = cli(capsys, "graph", SPECS / "mlp_2d.json", "--dot", dot, "--graphml", graphml)
    assert rc == 0, err
    # mlp_2d: in (2) -> hidden (20) -> out (2), both with bias: 2*20+20 + 20*2+2 = 102
    assert "k=2, 3 populations, 2 projections" in out
    assert re.search(r"hidden\s+hidden\s+n=20", out)
    assert "forward order: hidden -> out" in out
    assert "forward synapses: 102 per channel" in out
    assert f"wrote {dot}" in out and f"wrote {graphml}" in out
    text = dot.read_text()
    assert text.startswith("digraph") and text.rstrip().endswith("}")
    assert '"in" -> "hidden"' in text and '"hidden" -> "out"' in text
    g = nx.read_graphml(graphml)
    assert set(g.nodes) == {"in", "hidden", "out"}
    assert sorted((a, b) for a, b, *_ in g.edges) == [("hidden", "out"), ("in", "hidden")]
    assert g.nodes["hidden"]["role"] == "hidden" and int(g.nodes["hidden"]["size"]) == 20


def test_graph_of_a_multigraph(capsys, tmp_path):
    """recurrent_2d: a self-loop and a back projection, exported without loss."""
    spec = json.loads((SPECS / "recurrent_2d.json").read_text())
    graphml = tmp_path / "r.graphml"
    rc, out, _ = cli(capsys, "graph", SPECS / "recurrent_2d.json", "--graphml", graphml)
    assert rc == 0 and "schedule=synchronous (3 sweeps)" in out
    g = nx.read_graphml(graphml, force_multigraph=True)
    assert g.number_of_edges() == len(spec["projections"])
    assert g.has_edge("h2", "h2") and g.has_edge("h2", "h1")


# ----------------------------------------------------------------------- list


def test_list_prints_the_registries(capsys):
    rc, out, _ = cli(capsys, "list")
    assert rc == 0
    for section, reg in (("activations", ACTIVATIONS), ("connectivity", CONNECTIVITY),
                         ("feedback", FEEDBACK), ("datasets", DATASETS), ("presets", PRESETS)):
        assert f"{section}:" in out
        block = out.split(f"{section}:\n", 1)[1]
        listed = []
        for line in block.splitlines():
            if not line.startswith("  "):
                break
            listed.append(line.split()[0])
        assert listed == reg.names(), section
    for name in ("relu_tanh", "local2d", "error_softmax", "xor", "digits", "backprop"):
        assert re.search(rf"^  {name}\s", out, re.M)


def test_list_one_registry(capsys):
    rc, out, _ = cli(capsys, "list", "feedback")
    assert rc == 0
    assert out.splitlines()[0] == "feedback:"
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["target", "error_mse",
                                                                  "error_softmax"]


def test_no_command_prints_help(capsys):
    rc, out, _ = cli(capsys)
    assert rc == 2 and "validate" in out and "run" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert re.match(r"blursim \d", capsys.readouterr().out)


# ------------------------------------------------------------------------ run


RUN_KEYS = {"spec", "task", "task_options", "genome", "seed", "steps", "batch", "replicas",
            "backend", "dtype", "accuracy_mean", "accuracy_std", "cross_entropy_mean",
            "final_accuracy", "diverged_replicas", "seconds"}


def test_run_json(capsys):
    rc, out, err = cli(capsys, "run", SPECS / "toy_blur.json", "--task", "xor", "--preset", "random",
                       "--steps", "7", "--eval-every", "3", "--replicas", "2", "--batch", "8",
                       "--seed", "4", "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert RUN_KEYS <= set(res)
    assert res["steps"] == [0, 3, 6, 7]
    n = len(res["steps"])
    assert len(res["accuracy_mean"]) == len(res["accuracy_std"]) == len(res["cross_entropy_mean"]) == n
    assert res["final_accuracy"] == pytest.approx(res["accuracy_mean"][-1])
    assert all(0.0 <= a <= 1.0 for a in res["accuracy_mean"])
    assert all(s >= 0.0 for s in res["accuracy_std"])
    assert (res["task"], res["seed"], res["batch"], res["replicas"]) == ("xor", 4, 8, 2)
    assert res["genome"] == "preset:random" and res["backend"] == "numpy"
    assert res["dtype"] == "float32" and res["diverged_replicas"] == 0


def test_run_with_genome_file_and_task_option(capsys, tmp_path):
    g = tmp_path / "g.json"
    g.write_text(dump_json(backprop_genome(lr=0.2)))
    rc, out, err = cli(capsys, "run", SPECS / "mlp_2d.json", "--task", "xor", "--task-opt",
                       "seed=3", "--genome", g, "--steps", "2", "--json", "--dtype", "float64")
    assert rc == 0, err
    res = json.loads(out)
    assert res["genome"] == str(g) and res["dtype"] == "float64"
    assert res["task_options"]["seed"] == 3


def test_run_table_output(capsys):
    rc, out, err = cli(capsys, "run", SPECS / "mlp_2d.json", "--task", "xor", "--preset", "random",
                       "--steps", "4", "--eval-every", "2")
    assert rc == 0, err
    rows = [line.split() for line in out.splitlines() if not line.startswith("#")]
    assert rows[0][0] == "step"
    assert [int(r[0]) for r in rows[1:]] == [0, 2, 4]
    assert re.search(r"^# final accuracy [01]\.\d{4} after 4 steps", out, re.M)


def test_acceptance_backprop_learns_xor(capsys):
    """The issue's acceptance criterion, run exactly as written there."""
    rc, out, err = cli(capsys, "run", "specs/mlp_2d.json" if Path("specs/mlp_2d.json").exists()
                       else SPECS / "mlp_2d.json", "--task", "xor", "--preset", "backprop",
                       "--lr", "0.5", "--steps", "200")
    assert rc == 0, err
    final = float(re.search(r"^# final accuracy ([0-9.]+) after 200 steps", out, re.M).group(1))
    assert final >= 0.9
    rows = [line.split() for line in out.splitlines() if line and not line.startswith("#")][1:]
    assert len(rows) == 11 and float(rows[0][1]) < 0.75  # it learned; it did not start there
    assert [int(r[0]) for r in rows] == list(range(0, 201, 20))  # a summary: every 20th step
    assert "11 of 201 evaluated steps shown; --table shows every one" in out
    # --table: every step
    rc, full, err = cli(capsys, "run", SPECS / "mlp_2d.json", "--task", "xor", "--preset", "backprop",
                        "--lr", "0.5", "--steps", "200", "--table")
    table = [line.split() for line in full.splitlines() if line and not line.startswith("#")][1:]
    assert len(table) == 201 and [r for r in table if r[0] in {x[0] for x in rows}] == rows
