"""One options mechanism: every option of every registered dataset, strategy and genome
preset is in the experiment's JSON Schema, and every option error is located by
pydantic's own location (file, line, JSON path).

The cases are generated from the registries, so a newly registered entry or a
new option is covered without editing this file.
"""

import json
from pathlib import Path

import pytest
from test_cli import mini_validate
from test_meta_train import tiny_experiment

from blursim.cli.main import main
from blursim.data import DATASETS
from blursim.errors import SpecError
from blursim.genome import PRESETS
from blursim.meta import load_experiment
from blursim.meta.strategies import STRATEGIES
from blursim.spec import schema_json

ROOT = Path(__file__).resolve().parent.parent

#: document part -> (its model in $defs, the registry, where its options sit in an experiment)
PARTS = {
    "dataset": ("TaskSpec", DATASETS),
    "strategy": ("StrategySpec", STRATEGIES),
    "preset": ("InitPreset", PRESETS),
}


def _entries():
    return [(part, name) for part, (_, reg) in PARTS.items() for name in reg.names()]


def _deref(schema, node):
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].split("/")[-1]]
    return node


def _alternative(schema, part, name):
    model, _ = PARTS[part]
    alts = [_deref(schema, a) for a in schema["$defs"][model]["oneOf"]]
    found = [a for a in alts if a["properties"]["name"].get("const") == name]
    assert len(found) == 1, f"{model}: {len(found)} schema alternatives for {name!r}"
    return found[0]


@pytest.fixture(scope="module")
def schema():
    return schema_json("experiment")


def test_one_schema_alternative_per_registered_entry(schema):
    for part, (model, reg) in PARTS.items():
        consts = [_deref(schema, a)["properties"]["name"]["const"] for a in schema["$defs"][model]["oneOf"]]
        assert consts == reg.names(), part


@pytest.mark.parametrize("part, name", _entries(), ids=[f"{p}:{n}" for p, n in _entries()])
def test_experiment_schema_lists_every_option(schema, part, name):
    _, reg = PARTS[part]
    model = reg.options(name)
    assert model is not None, f"{part} {name!r} is registered without an options model"
    opts = _deref(schema, _alternative(schema, part, name)["properties"]["options"])
    assert opts.get("additionalProperties") is False
    assert set(opts.get("properties", {})) == set(model.model_fields)
    for opt, info in model.model_fields.items():
        prop = opts["properties"][opt]
        assert prop.get("description"), f"option {opt!r} of {part} {name!r} is undocumented"
        if not info.is_required():
            assert prop["default"] == info.get_default(call_default_factory=True)


def test_schema_options_match_known_answers(schema):
    """Anchors written by hand, independent of the models."""
    xor = _deref(schema, _alternative(schema, "dataset", "xor")["properties"]["options"])
    assert set(xor["properties"]) == {"seed", "n_train", "n_test"}
    assert xor["properties"]["n_train"]["default"] == 1024 and xor["properties"]["seed"]["minimum"] == 0
    es = _deref(schema, _alternative(schema, "strategy", "openai_es")["properties"]["options"])
    assert es["properties"]["learning_rate"] == {**es["properties"]["learning_rate"],
                                                 "default": 0.01, "exclusiveMinimum": 0.0}
    bp = _deref(schema, _alternative(schema, "preset", "backprop")["properties"]["options"])
    assert set(bp["properties"]) == {"lr"}
    # a strategy may be given without a name (cma_es); every other alternative needs one
    assert "name" not in _alternative(schema, "strategy", "cma_es").get("required", [])
    assert "name" in _alternative(schema, "strategy", "openai_es")["required"]


@pytest.mark.parametrize("path", sorted((ROOT / "specs" / "experiments").glob("*.json")),
                         ids=lambda p: p.stem)
def test_example_experiments_satisfy_the_published_schema(schema, path):
    assert mini_validate(schema, json.loads(path.read_text())) == []


def test_schema_rejects_a_misspelt_option(schema):
    exp = tiny_experiment()
    exp["training_tasks"][0]["options"] = {"n_trian": 3}
    assert mini_validate(schema, exp)
    exp["training_tasks"][0]["options"] = {"n_train": 3}
    assert mini_validate(schema, exp) == []


# --------------------------------------------------------------------- errors

BAD = {"not": "an option value"}  # wrong for every option type (numbers, strings, lists, null)


def _required(model):
    """A value for every required option: its declared example (required options must have one)."""
    out = {}
    for opt, info in model.model_fields.items():
        if info.is_required():
            assert info.examples, f"required option {opt!r} of {model.__name__} declares no example"
            out[opt] = info.examples[0]
    return out


def _with_bad_option(part, name, option):
    exp = tiny_experiment()
    if part == "dataset":
        opts = {**_required(DATASETS.options(name)), option: BAD}
        exp["training_tasks"][0] = {"name": name, "options": opts}
        return exp, f"$.training_tasks[0].options.{option}"
    opts = {**_required(PARTS[part][1].options(name)), option: BAD}
    if part == "strategy":
        takes = PARTS[part][1].get(name).experiment_fields  # gradient refuses sigma0 and popsize
        es = {f: v for f, v in (("sigma0", 0.2), ("popsize", 6)) if f in takes}
        exp["strategy"] = {"name": name, **es, "options": opts}
        return exp, f"$.strategy.options.{option}"
    exp["genome"]["init"] = {"kind": "preset", "name": name, "options": opts}
    return exp, f"$.genome.init.options.{option}"


def _option_cases():
    return [(part, name, opt) for part, name in _entries()
            for opt in PARTS[part][1].options(name).model_fields]


@pytest.mark.parametrize("part, name, option", _option_cases(),
                         ids=[f"{p}:{n}.{o}" for p, n, o in _option_cases()])
def test_every_option_error_names_file_line_and_path(tmp_path, part, name, option):
    exp, path = _with_bad_option(part, name, option)
    f = tmp_path / "exp.json"
    text = json.dumps(exp, indent=2)
    f.write_text(text)
    with pytest.raises(SpecError) as info:
        load_experiment(f)
    err = info.value
    assert err.path == path, str(err)
    lines = text.splitlines()
    marker = next(i for i, t in enumerate(lines) if '"not": "an option value"' in t)
    assert lines[marker - 1].strip() == f'"{option}": {{'  # the option's own line, found by hand
    assert err.source == f"{f}, line {marker}", str(err)
    assert "[path=" not in str(err) and f"option {option!r}" in str(err)


@pytest.mark.parametrize("part, name", _entries(), ids=[f"{p}:{n}" for p, n in _entries()])
def test_unknown_option_is_located_and_lists_the_valid_ones(tmp_path, part, name):
    exp, path = _with_bad_option(part, name, "no_such_option")
    f = tmp_path / "exp.json"
    f.write_text(json.dumps(exp, indent=2))
    with pytest.raises(SpecError) as info:
        load_experiment(f)
    err = info.value
    assert err.path == path and ", line " in err.source
    assert "unknown option 'no_such_option'" in err.message
    assert err.choices == sorted(PARTS[part][1].options(name).model_fields)


def test_list_verbose_shows_every_option_with_its_default(capsys):
    assert main(["list", "-v"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for part, name in _entries():
        model = PARTS[part][1].options(name)
        start = next(i for i, t in enumerate(lines) if t.startswith(f"  {name} "))
        end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("      ")),
                   len(lines))
        block = "\n".join(lines[start + 1:end])
        for opt, info in model.model_fields.items():
            if info.is_required():
                shown = f"{opt} (required)"
            else:
                shown = f"{opt}={info.get_default(call_default_factory=True)!r}"
            assert shown in block and info.description in block, (name, opt)
