"""The paper authors' published code: genome layout, settings, and their step against blursim's.

The arrays in tests/data/authors/ were produced by running the authors' code
(google-research/google-research, blur/; PROVENANCE.json says which commits,
functions, inputs and settings). blursim's step, with the settings that
docs/authors_layout.md lists (:func:`blursim.authors.authors_network`), must
reproduce them to 1e-10 relative in float64.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blursim.authors import (
    authors_network,
    export_authors_genome,
    import_authors_genome,
    nest_authors,
    read_authors_file,
    synapses_from_authors,
    synapses_to_authors,
    write_authors_file,
)
from blursim.cli.main import main
from blursim.errors import GenomeError, SpecError
from blursim.genome import backprop_genome, random_genome
from blursim.graph import compile_network
from blursim.sim import Simulator
from blursim.spec import load_genome
from blursim.spec.network import Rules

DATA = Path(__file__).parent / "data" / "authors"
PROVENANCE = json.loads((DATA / "PROVENANCE.json").read_text())
CONFIGS = {name[: -len(".npz")]: f["settings"] for name, f in PROVENANCE["files"].items()}
RTOL = 1e-10


def _load(name):
    with np.load(DATA / f"{name}.npz") as z:
        return {k: z[k] for k in z.files}


def _their_genome(d):
    return {k[len("genome/"):]: v for k, v in d.items() if k.startswith("genome/")}


def _rel(got, exp):
    return float(np.abs(got - exp).max() / max(np.abs(exp).max(), 1e-300))


def _setup(name, **override):
    """blursim's network, genomes and simulator for one configuration, with the documented settings."""
    c = CONFIGS[name]
    act = lambda n: n.split(",") if "," in n else n  # noqa: E731
    spec = authors_network(
        c["sizes"], c["k"], forward_activation=act(c["hidden_forward"]),
        backward_activation=act(c["hidden_backward"]), last_layer_activation=act(c["output_forward"]),
        backward_update=c["backward_update"], symmetric_in_out_synapses=c["symmetric_in_out_synapses"],
        symmetric_states_synapses=c["symmetric_states_synapses"],
        ojas=None if c["oja"] == "none" else c["oja"],
        synapse_normalization=None if c["synapse_normalization"] == "none" else c["synapse_normalization"],
        zero_out_neurons=c["zero_out_neurons"], targets=c["targets"])
    if override:
        spec = spec.model_copy(update={"rules": spec.rules.model_copy(update=override)})
    d = _load(name)
    genomes = import_authors_genome(_their_genome(d))
    if c["synapse_normalization"] != "none" and not c["rescale"]:
        # their normalisation without `rescale` ignores rescale_to: blursim's rescale is then 1
        genomes = [g.model_copy(update={"groups": {"default": g.groups["default"].model_copy(
            update={"rescale": 1.0})}}) for g in genomes]
    prog = compile_network(spec)
    sim = Simulator(prog, dtype="float64", threads=1)
    L = len(c["sizes"]) - 1
    st = synapses_from_authors(prog, [d[f"synapse_initial/{i}"] for i in range(L)])
    return c, d, prog, sim, sim.prepare(genomes), st


def _blocks(c, i, tied):
    n = c["sizes"]
    fwd = (slice(None), slice(None), slice(0, n[i] + 1), slice(n[i] + 1, None))
    bwd = (slice(None), slice(None), slice(n[i] + 1, None), slice(0, n[i]))
    return [fwd] if tied else [fwd, bwd]


def _synapse_error(c, prog, st, d, key):
    got = synapses_to_authors(prog, st)
    errs = [_rel(got[i][blk], d[f"{key}/{i}"][blk])
            for i in range(len(got)) for blk in _blocks(c, i, c["symmetric_in_out_synapses"])]
    return float(np.max(errs))  # propagates a NaN, which max() could skip


# ------------------------------------------------------------------ the step
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_blursim_step_equals_the_authors_network_step(name):
    c, d, prog, sim, genes, st = _setup(name)
    sim.train_step(st, genes, d["x/0"], d["labels/0"])
    assert _synapse_error(c, prog, st, d, "step/synapse") <= RTOL


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_their_T_unroll_steps_are_T_minus_1_learning_steps_and_a_forward_pass(name):
    """unroll_graph's T steps: T - 1 with learning, the last forward only (docs/authors_layout.md)."""
    from blursim.sim import Monitor

    c, d, prog, sim, genes, st = _setup(name)
    T = c["unroll_steps"]
    mon = Monitor(sim, "states@backward")  # the states a run without reset carries to the next step
    for t in range(1, T):
        sim.train_step(st, genes, d[f"x/{t - 1}"], d[f"labels/{t - 1}"], monitor=mon)
        assert _synapse_error(c, prog, st, d, f"unroll/{t}/synapse") <= RTOL, t
        if not c["zero_out_neurons"]:  # (reset_neurons: false): they start step t + 1
            for i, p in enumerate(prog.pops[1:], start=1):
                kept = mon[f"states:{p.name}@backward"].sel(step=t).values
                assert _rel(kept, d[f"unroll/{t}/layers/{i}"]) <= RTOL
    out = np.asarray(sim.forward(st, genes, d[f"x/{T - 1}"])[0])
    theirs = d["unroll/final/output"][..., 0]
    if c["synapse_normalization"] == "stored" or not c["zero_out_neurons"]:
        # their forward-only step normalises the stored synapses and keeps the neuron states;
        # blursim's evaluation does neither (documented difference)
        assert _rel(out, theirs) > 1e-3
    else:
        assert _rel(out, theirs) <= RTOL


def test_symmetric_single_state_needs_channel0_not_the_mean():
    """Their symmetric-states synapses copy channel 0's update; the channel mean is another rule."""
    name = "symmetric_single_state_backprop_like"
    c, d, prog, sim, genes, st = _setup(name, shared_update="mean")
    sim.train_step(st, genes, d["x/0"], d["labels/0"])
    assert _synapse_error(c, prog, st, d, "step/synapse") > 1e-3


def test_shared_update_needs_shared_channels():
    with pytest.raises(Exception, match="shared_channels"):
        Rules(shared_update="channel0")
    assert Rules(shared_channels=True, shared_update="channel0").shared_update == "channel0"


# ------------------------------------------------------------------ genomes
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_import_then_export_is_bit_identical(name, tmp_path):
    theirs = _their_genome(_load(name))
    back = export_authors_genome(import_authors_genome(theirs))
    assert list(back) == list(theirs)
    for key, a in theirs.items():
        assert back[key].dtype == a.dtype and back[key].shape == a.shape and np.array_equal(back[key], a), key
    # through files: NPZ and nested JSON
    write_authors_file(tmp_path / "g.npz", theirs)
    write_authors_file(tmp_path / "g.json", theirs)
    for f in ("g.npz", "g.json"):
        flat = read_authors_file(tmp_path / f)
        again = export_authors_genome(import_authors_genome(flat))
        assert all(np.array_equal(again[k], flat[k]) and again[k].dtype == flat[k].dtype for k in flat)
    j = json.loads((tmp_path / "g.json").read_text())
    assert set(j) == {"neuron", "synapse", "forward_synapse"} and "pre" in j["synapse"]["transform"]


def test_float32_genomes_come_back_float32():
    theirs = {k: v.astype(np.float32) for k, v in _their_genome(_load("untied_additive_k3")).items()}
    back = export_authors_genome(import_authors_genome(theirs))
    assert all(back[k].dtype == np.float32 and np.array_equal(back[k], theirs[k]) for k in theirs)


def test_field_mapping_by_hand():
    """nu = T[:k, k:]^T, mu = T[k:, :k]^T, pre -> nu_tilde, post -> mu_tilde, gates by name."""
    k = 2
    T = np.arange(16.0).reshape(4, 4)
    theirs = {"neuron": {"transform": T, "keep": 0.5, "update": 2.0},
              "synapse": {"transform": {"pre": [[1.0, 2.0], [3.0, 4.0]], "post": [[5.0, 6.0], [7.0, 8.0]],
                                        "ojas_multiplier": 0.25},
                          "keep": 0.9, "update": -0.01, "rescale_to": 3.0}}
    (g,) = import_authors_genome(theirs)
    p = g.groups["default"]
    assert p.nu == [[2.0, 6.0], [3.0, 7.0]]  # T[:2, 2:] = [[2, 3], [6, 7]], transposed
    assert p.mu == [[8.0, 12.0], [9.0, 13.0]]  # T[2:, :2] = [[8, 9], [12, 13]], transposed
    assert p.nu_tilde == [[1.0, 2.0], [3.0, 4.0]] and p.mu_tilde == [[5.0, 6.0], [7.0, 8.0]]
    assert (p.f, p.eta, p.f_tilde, p.eta_tilde, p.oja_alpha, p.rescale) == (0.5, 2.0, 0.9, -0.01, 0.25, 3.0)
    assert g.k == k and g.meta["authors"]["extra"]["neuron/transform:diagonal_blocks"]
    back = export_authors_genome(g)
    assert np.array_equal(back["neuron/transform"], T)


def test_export_of_a_blursim_genome_has_their_whole_structure_and_imports_back():
    g = backprop_genome(lr=0.05)
    flat = export_authors_genome(g)
    assert flat["neuron/transform"].shape == (4, 4) and flat["synapse/update"] == 0.05
    assert flat["forward_synapse/transform/pre"].tolist() == flat["synapse/transform/pre"].tolist()
    assert flat["synapse/synapse_init_std"] == 0.1 and flat["neuron/norm_multiplier"].shape == ()
    (again,) = import_authors_genome(flat)
    assert again.groups["default"] == g.groups["default"].model_copy(
        update={"norm_gain": [1.0, 1.0], "norm_shift": [0.0, 0.0], "oja_alpha": 0.0, "saturation": 1.0,
                "rescale": 1.0})
    two = export_authors_genome([random_genome(k=3, seed=1), random_genome(k=3, seed=2)], dtype="float32")
    assert two["neuron/transform"].shape == (2, 6, 6) and two["synapse/keep"].shape == (2,)
    assert two["synapse/keep"].dtype == np.float32


def test_species_and_layers_are_picked():
    theirs = _their_genome(_load("symmetric_single_state_oja_weights"))  # shared scalars: shape ()
    both = import_authors_genome(theirs)
    one = import_authors_genome(theirs, species=1)[0]
    assert len(both) == 2 and one.groups == both[1].groups
    assert export_authors_genome(one)["synapse/transform/pre"].shape == (3, 3)
    layered = {k: np.stack([v, v + 1.0]) for k, v in theirs.items()}  # a layer axis of 2 in front
    with pytest.raises(GenomeError, match="per-layer genome"):
        import_authors_genome(layered)
    l1 = import_authors_genome(layered, layer=1)
    assert l1[0].groups["default"].f_tilde == both[0].groups["default"].f_tilde + 1.0
    # one value shared by every species in their file must stay shared
    changed = [both[0], both[1].model_copy(update={"groups": {"default": both[1].groups["default"].model_copy(
        update={"f_tilde": 0.123})}})]
    with pytest.raises(GenomeError, match="one value for every species"):
        export_authors_genome(changed)


@pytest.mark.parametrize("bad, message", [
    ({"neuron": {"transform": np.zeros((4, 4))}}, "synapse/transform/pre"),
    ({"neuron": {"transform": np.zeros((3, 3)), "keep": 1.0, "update": 1.0},
      "synapse": {"transform": {"pre": np.eye(2), "post": np.eye(2)}, "keep": 1.0, "update": 1.0}},
     "must have shape"),
    ({"neuron": {"transform": np.full((4, 4), np.nan), "keep": 1.0, "update": 1.0},
      "synapse": {"transform": {"pre": np.eye(2), "post": np.eye(2)}, "keep": 1.0, "update": 1.0}},
     "NaN"),
    ({"neuron": {"transform": np.zeros((4, 4)), "keep": 1.0},
      "synapse": {"transform": {"pre": np.eye(2), "post": np.eye(2)}, "keep": 1.0, "update": 1.0}},
     "neuron/update"),
    ([1, 2], "dictionary"),
])
def test_bad_genomes_get_one_line_errors(bad, message):
    with pytest.raises(GenomeError, match=message) as e:
        import_authors_genome(bad)
    assert "\n" not in str(e.value)


def test_npz_with_pickled_objects_is_refused(tmp_path):
    np.savez(tmp_path / "p.npz", **{"neuron/transform": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(GenomeError, match="without pickle"):
        read_authors_file(tmp_path / "p.npz")
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(GenomeError, match="neither an NPZ"):
        read_authors_file(tmp_path / "t.txt")


def test_cli_import_export_round_trip(tmp_path, capsys):
    theirs = _their_genome(_load("untied_additive_k3"))
    write_authors_file(tmp_path / "theirs.npz", theirs)
    assert main(["genome", "import", str(tmp_path / "theirs.npz"), "-o", str(tmp_path / "g.json")]) == 0
    assert (tmp_path / "g_0.json").exists() and (tmp_path / "g_1.json").exists()
    load_genome(tmp_path / "g_0.json")  # a valid blursim genome document
    assert main(["genome", "export", str(tmp_path / "g_0.json"), str(tmp_path / "g_1.json"),
                 "-o", str(tmp_path / "back.npz")]) == 0
    back = read_authors_file(tmp_path / "back.npz")
    assert list(back) == list(theirs) and all(np.array_equal(back[k], theirs[k]) for k in theirs)
    assert main(["genome", "import", str(tmp_path / "theirs.npz"), "-o", str(tmp_path / "x.json"),
                 "--species", "5"]) == 2
    assert "has no species 5" in capsys.readouterr().err


def test_nested_and_flat_forms_agree():
    flat = _their_genome(_load("symmetric_single_state_backprop_like"))
    a = import_authors_genome(flat)
    b = import_authors_genome(nest_authors(flat))
    assert [g.groups for g in a] == [g.groups for g in b]


def test_spec_settings_outside_their_code_are_refused():
    with pytest.raises(GenomeError, match="ojas"):
        authors_network([2, 3, 2], 2, ojas="both")
    with pytest.raises(SpecError):
        authors_network([2, 3, 2], 2, backward_update="sideways")
