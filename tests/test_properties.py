"""Property tests of the simulator's invariants (DESIGN §1-2).

Each property is checked against an expectation computed independently of
the simulator: a hand-written NumPy step for tied/untied synapses, known
masks for the connectivity kinds, a run of each genome or replica on its own,
a permuted copy of the initial synapses, known answers for schedules.
Every test also checks that the comparison can fail (a perturbed input gives
a different answer), so that none of them passes vacuously.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import all_synapses, chain_spec

from blursim.genome import backprop_genome, random_genome, stack_genomes
from blursim.graph import compile_network
from blursim.sim import Simulator
from blursim.spec import dump_json, load_genome, load_network
from blursim.testing.strategies import (
    BACKPROP_HIDDEN,
    backprop_rules,
    data_batches,
    genomes,
    network_specs,
)

SPECS = Path(__file__).resolve().parent.parent / "specs"

# ---------------------------------------------------------------- helpers


def simulator(spec_dict, dtype="float64"):
    prog = compile_network(load_network(copy.deepcopy(spec_dict)))
    return prog, Simulator(prog, backend="numpy", dtype=dtype)




def fix_lists(spec):
    """network_specs may draw per-state activations as tuples; JSON wants lists."""
    for p in spec["populations"]:
        for key in ("forward_activation", "backward_activation"):
            if isinstance(p.get(key), tuple):
                p[key] = list(p[key])
    return spec


# ---------------------------------------------- an independent one-step reference
#
# One BLUR step of DESIGN §2 for the chain in -> h -> out, written from the
# equations with einsum: reset on, topological order, target feedback (±1),
# additive backward update, no normalisation, no Oja, batch sum, unshared
# channels. Layouts are DESIGN's: states (B, n, k), W (n_pre + bias, n_post, k),
# V (n_post, n_pre, k).


def _mix(M, a):  # (M a)^c = sum_d M[c, d] a^d
    return np.einsum("cd,bnd->bnc", M, a)


def _with_bias(a, bias):
    if not bias:
        return a
    return np.concatenate([a, np.ones(a.shape[:1] + (1,) + a.shape[2:])], axis=1)


def reference_step(g, W1, W2, V1, V2, M1, M2, bias, x, y, n_classes, tied):
    k = W1.shape[-1]
    nu, mu = np.asarray(g.nu), np.asarray(g.mu)
    nut, mut = np.asarray(g.nu_tilde), np.asarray(g.mu_tilde)
    B = x.shape[0]
    a_in = np.zeros((B, x.shape[1], k))
    a_in[..., 0] = x
    # forward, eq. (5), from reset states (f * 0 drops out)
    z_h = np.einsum("bic,ijc->bjc", _mix(nu, _with_bias(a_in, bias)), W1)
    a_h = np.tanh(g.eta * z_h)
    z_o = np.einsum("bic,ijc->bjc", _mix(nu, _with_bias(a_h, bias)), W2)
    a_o = np.tanh(g.eta * z_o)
    # target feedback (pm1 coding)
    coded = -np.ones((B, n_classes))
    coded[np.arange(B), y] = 1.0
    a_o[..., 1] = coded
    a_o[..., 2:] = 0.0
    # backward, eq. (6): only h has an outgoing projection
    V2_used = np.transpose(W2[: a_h.shape[1]], (1, 0, 2)) if tied else V2
    y_h = np.einsum("jic,bjc->bic", V2_used, _mix(mu, a_o))
    a_h = np.tanh(g.f * a_h + g.eta * y_h)

    # synapse update, eq. (7)
    def hebb(pre, post):
        P = np.einsum("ec,bie->bic", nut, pre)
        Q = _mix(mut, post)
        return np.einsum("bic,bjc->ijc", P, Q)

    def mask_w(W, M, bias_):
        Mb = np.concatenate([M, np.ones((1, M.shape[1]), bool)]) if bias_ else M
        return W * Mb[..., None]

    W1n = mask_w(g.f_tilde * W1 + g.eta_tilde * hebb(_with_bias(a_in, bias), a_h), M1, bias)
    W2n = mask_w(g.f_tilde * W2 + g.eta_tilde * hebb(_with_bias(a_h, bias), a_o), M2, bias)
    if tied:
        return W1n, W2n, None, None
    V1n = (g.f_tilde * V1 + g.eta_tilde * hebb(a_h, a_in)) * M1.T[..., None]
    V2n = (g.f_tilde * V2 + g.eta_tilde * hebb(a_o, a_h)) * M2.T[..., None]
    return W1n, W2n, V1n, V2n


def _dense_mask(plan):
    return np.ones((plan.n_pre, plan.n_post), bool) if plan.mask is None else plan.mask


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


GENERAL = {"tied": False, "shared_channels": False, "feedback": "target",
           "backward_update": "additive"}


@settings(max_examples=25)
@given(
    k=st.integers(2, 3),
    sizes=st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(2, 4)),
    seed=st.integers(0, 1000),
    steps=st.integers(2, 5),
    bias=st.booleans(),
    data=st.data(),
)
def test_tied_backward_uses_current_forward_transposed(k, sizes, seed, steps, bias, data):
    """Tied synapses: no V is stored, and the backward pass uses W^T of the current W."""
    genome = data.draw(genomes(k=k, scale=0.5))
    n_in, n_h, n_out = sizes
    spec = chain_spec(n_in, n_h, n_out, k, dict(GENERAL, tied=True), bias=bias)
    prog, sim = simulator(spec)
    genes = sim.prepare([genome])
    state = sim.init_synapses(genes, replicas=1, seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        sim.train_step(state, genes, rng.normal(size=(4, n_in)), rng.integers(0, n_out, 4))
    assert state.backward_synapses(0, k) is None and state.backward_synapses(1, k) is None
    W1 = state.forward_synapses(0, k)[0, 0]
    W2 = state.forward_synapses(1, k)[0, 0]
    x, y = rng.normal(size=(5, n_in)), rng.integers(0, n_out, 5)
    g = genome.groups["default"]
    M1, M2 = _dense_mask(prog.projs[0]), _dense_mask(prog.projs[1])
    want1, want2, _, _ = reference_step(g, W1, W2, None, None, M1, M2, bias, x, y, n_out, tied=True)
    sim.train_step(state, genes, x, y)
    got1 = state.forward_synapses(0, k)[0, 0]
    got2 = state.forward_synapses(1, k)[0, 0]
    np.testing.assert_allclose(got1, want1, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got2, want2, rtol=1e-10, atol=1e-12)
    # The check has teeth: a separate backward matrix (W^T plus noise) gives another W1.
    V2 = np.transpose(W2[:n_h], (1, 0, 2)) + 0.1 * rng.normal(size=(n_out, n_h, k))
    other1, _, _, _ = reference_step(g, W1, W2, np.zeros((n_h, n_in, k)), V2, M1, M2, bias,
                                     x, y, n_out, tied=False)
    assert np.max(np.abs(other1 - want1)) > 1e-9


@settings(max_examples=25)
@given(
    sizes=st.tuples(st.integers(2, 4), st.integers(2, 5), st.integers(2, 3)),
    genome=genomes(k=2, scale=0.5),
    seed=st.integers(0, 1000),
    conn=st.sampled_from([
        {"kind": "all_to_all"},
        {"kind": "fixed_probability", "p": 0.5, "seed": 5},
        {"kind": "block_random", "block": [2, 1], "p": 0.6, "seed": 9},
    ]),
)
def test_untied_step_matches_reference(sizes, genome, seed, conn):
    """Untied synapses: W and V follow eq. (5)-(7), V masked with the transpose."""
    n_in, n_h, n_out = sizes
    spec = chain_spec(n_in, n_h, n_out, 2, GENERAL, conn1=conn, conn2=conn)
    prog, sim = simulator(spec)
    genes = sim.prepare([genome])
    state = sim.init_synapses(genes, replicas=1, seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        sim.train_step(state, genes, rng.normal(size=(4, n_in)), rng.integers(0, n_out, 4))
    W1, W2 = (state.forward_synapses(q, 2)[0, 0] for q in (0, 1))
    V1, V2 = (state.backward_synapses(q, 2)[0, 0] for q in (0, 1))
    x, y = rng.normal(size=(3, n_in)), rng.integers(0, n_out, 3)
    M1, M2 = _dense_mask(prog.projs[0]), _dense_mask(prog.projs[1])
    want = reference_step(genome.groups["default"], W1, W2, V1, V2, M1, M2, True, x, y, n_out,
                          tied=False)
    sim.train_step(state, genes, x, y)
    got = [state.forward_synapses(0, 2)[0, 0], state.forward_synapses(1, 2)[0, 0],
           state.backward_synapses(0, 2)[0, 0], state.backward_synapses(1, 2)[0, 0]]
    for g_, w_ in zip(got, want):
        np.testing.assert_allclose(g_, w_, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------ shared channels


@settings(max_examples=20)
@given(
    spec=network_specs(k=3, n_features=3, n_classes=3, hidden=(1, 3), sizes=(1, 4),
                       connectivity=("all_to_all", "fixed_probability"),
                       rules={"tied": False, "shared_channels": True, "feedback": "target"}),
    genome=genomes(k=3, scale=0.5),
    data=st.data(),
)
def test_shared_channels_stay_equal(spec, genome, data):
    prog, sim = simulator(spec)
    genes = sim.prepare([genome])
    state = sim.init_synapses(genes, replicas=2, seed=data.draw(st.integers(0, 99)))
    for _ in range(data.draw(st.integers(1, 6))):
        x, y = data.draw(data_batches(3, 3, batch=(2, 5)))
        sim.train_step(state, genes, x, y)
    for arr in all_synapses(sim, state):
        for c in range(1, 3):
            assert np.array_equal(arr[..., c], arr[..., 0])


def test_unshared_channels_differ():
    """Without shared_channels a random genome makes the k channels diverge."""
    spec = chain_spec(3, 4, 3, 3, dict(GENERAL, shared_channels=False))
    prog, sim = simulator(spec)
    genes = sim.prepare([random_genome(k=3, seed=4)])
    state = sim.init_synapses(genes, seed=1)
    rng = np.random.default_rng(0)
    for _ in range(3):
        sim.train_step(state, genes, rng.normal(size=(4, 3)), rng.integers(0, 3, 4))
    for q in range(2):
        W = state.forward_synapses(q, 3)
        assert np.max(np.abs(W[..., 1] - W[..., 0])) > 1e-6


# ------------------------------------------------------------- masks stay zero


def _local2d_expected(pre_grid, post_grid, radius):
    """Hand computation: pre cell (a, b) feeds post cell (u, v) if its centre is within radius."""
    (pr, pc), (qr, qc) = pre_grid, post_grid
    M = np.zeros((pr * pc, qr * qc), bool)
    for a in range(pr):
        for b in range(pc):
            for u in range(qr):
                for v in range(qc):
                    cu = (u + 0.5) * pr / qr - 0.5
                    cv = (v + 0.5) * pc / qc - 0.5
                    M[a * pc + b, u * qc + v] = (a - cu) ** 2 + (b - cv) ** 2 <= radius**2 + 1e-9
    return M


MASK_CASES = {
    "fixed_probability": dict(n=(6, 8, 4), conn={"kind": "fixed_probability", "p": 0.4, "seed": 3}),
    "block_random": dict(n=(6, 8, 4), conn={"kind": "block_random", "block": [2, 3], "p": 0.5,
                                            "seed": 1}),
    "from_list": dict(n=(3, 4, 4), conn={"kind": "from_list", "edges": [[0, 0], [0, 3], [2, 1],
                                                                        [1, 2], [2, 3]]}),
    "one_to_one": dict(n=(4, 4, 4), conn={"kind": "one_to_one"}),
    "local2d": dict(n=(16, 4, 4), conn={"kind": "local2d", "radius": 1.0},
                    grids=((4, 4), (2, 2), (2, 2))),
}


def _expected_mask(kind, prog):
    """Masks known by hand (seeded kinds: the compiled masks, checked structurally)."""
    case = MASK_CASES[kind]
    if kind == "from_list":  # the same edge list on in (3) -> h (4) and h (4) -> out (4)
        out = []
        for n_pre in (3, 4):
            M = np.zeros((n_pre, 4), bool)
            for i, j in case["conn"]["edges"]:
                M[i, j] = True
            out.append(M)
        return out
    if kind == "one_to_one":
        return [np.eye(4, dtype=bool), np.eye(4, dtype=bool)]
    if kind == "local2d":
        g = case["grids"]
        return [_local2d_expected(g[0], g[1], 1.0), _local2d_expected(g[1], g[2], 1.0)]
    return [_dense_mask(p) for p in prog.projs]


@pytest.mark.parametrize("kind", sorted(MASK_CASES))
def test_masked_entries_stay_zero(kind):
    case = MASK_CASES[kind]
    n_in, n_h, n_out = case["n"]
    spec = chain_spec(n_in, n_h, n_out, 2, GENERAL, conn1=case["conn"], conn2=case["conn"])
    if "grids" in case:
        for p, grid in zip(spec["populations"], case["grids"]):
            p["grid"] = list(grid)
    prog, sim = simulator(spec)
    masks = _expected_mask(kind, prog)
    if kind == "block_random":  # constant on 2x3 blocks, neither empty nor full
        for M in masks:
            for bi in range(0, M.shape[0], 2):
                for bj in range(0, M.shape[1], 3):
                    blk = M[bi:bi + 2, bj:bj + 3]
                    assert blk.all() or not blk.any()
        assert 0 < sum(M.sum() for M in masks) < sum(M.size for M in masks)
    if kind == "fixed_probability":
        assert all(0 < M.sum() < M.size for M in masks)
    if kind == "local2d":  # 4x4 -> 2x2 with radius 1 pools each 2x2 quadrant
        assert masks[0].sum(axis=0).tolist() == [4, 4, 4, 4]
        assert masks[0][[0, 1, 4, 5], 0].all() and masks[0][[10, 11, 14, 15], 3].all()
    for plan, M in zip(prog.projs, masks):  # the compiled wiring is the expected one
        assert np.array_equal(_dense_mask(plan), M)
    genes = sim.prepare([random_genome(k=2, seed=11, scale=0.8)])
    state = sim.init_synapses(genes, replicas=2, seed=2)
    rng = np.random.default_rng(5)
    for _ in range(15):
        sim.train_step(state, genes, rng.normal(size=(6, n_in)), rng.integers(0, n_out, 6))
    for q, M in enumerate(masks):
        W = state.forward_synapses(q, 2)[:, :, : M.shape[0]]  # drop the bias row
        V = state.backward_synapses(q, 2)
        assert np.all(W[:, :, ~M] == 0.0), "forward synapse outside the mask became nonzero"
        assert np.all(V[:, :, ~M.T] == 0.0), "backward synapse outside the mask became nonzero"
        # and those inside are nonzero, so the check is not vacuous
        assert np.all(W[:, :, M] != 0.0) and np.all(V[:, :, M.T] != 0.0)
    assert np.isfinite(sim.forward(state, genes, rng.normal(size=(3, n_in)))[0]).all()


# ------------------------------------------------- species batch = each alone


@settings(max_examples=20)
@given(
    spec=network_specs(k=2, n_features=4, n_classes=3, hidden=(1, 3), sizes=(1, 4),
                       hidden_activation=tuple(tuple(v) for v in BACKPROP_HIDDEN.values()),
                       output_activation=["identity", "one"],
                       connectivity=("all_to_all", "fixed_probability"),
                       rules=backprop_rules("error_softmax", "sum")),
    general=st.booleans(),
    seeds=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
)
def test_species_batch_equals_each_alone(spec, general, seeds):
    spec = fix_lists(spec)
    if general:
        spec["rules"] = {"tied": False, "shared_channels": False, "feedback": "target",
                         "oja": "weights"}
    gens = [random_genome(k=2, seed=seeds[0], scale=0.4), backprop_genome(lr=0.05),
            random_genome(k=2, seed=seeds[1], scale=0.4)]
    gens[2].groups["default"].init_scale = 0.5  # species-specific init scale
    prog, sim = simulator(spec)
    rng = np.random.default_rng(seeds[0])
    batches = [(rng.normal(size=(4, 4)), rng.integers(0, 3, 4)) for _ in range(4)]
    xq = rng.normal(size=(6, 4))

    def run(gs):
        genes = sim.prepare(gs)
        state = sim.init_synapses(genes, replicas=2, seed=seeds[1])
        for x, y in batches:
            sim.train_step(state, genes, x, y)
        return all_synapses(sim, state), sim.forward(state, genes, xq)

    syn_all, out_all = run(gens)
    for s, g in enumerate(gens):
        syn, out = run([g])
        for a, b in zip(syn_all, syn):
            assert np.isfinite(b).all()
            np.testing.assert_allclose(a[s], b[0], rtol=1e-12, atol=1e-12 * np.abs(b).max())
        for a, b in zip(out_all, out):
            np.testing.assert_allclose(a[s], b[0], rtol=1e-12, atol=1e-12 * max(np.abs(b).max(), 1))
    # species 0 and 1 are different genomes: their synapses must differ
    assert max(np.abs(a[0] - a[1]).max() for a in syn_all) > 1e-9


# ------------------------------------------------------ replicas independent


@settings(max_examples=15)
@given(
    spec=network_specs(k=2, n_features=3, n_classes=2, hidden=(1, 2), sizes=(1, 4),
                       rules={"tied": False, "feedback": "target"}),
    genome=genomes(k=2, scale=0.5),
    seed=st.integers(0, 1000),
)
def test_replicas_are_independent(spec, genome, seed):
    prog, sim = simulator(spec)
    genes = sim.prepare([genome])
    s2 = sim.init_synapses(genes, replicas=2, seed=seed)
    s4 = sim.init_synapses(genes, replicas=4, seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(4):
        x, y = rng.normal(size=(3, 3)), rng.integers(0, 2, 3)
        sim.train_step(s2, genes, x, y)
        sim.train_step(s4, genes, x, y)
        for a, b in zip(all_synapses(sim, s2), all_synapses(sim, s4)):
            np.testing.assert_allclose(a, b[:, :2], rtol=1e-12, atol=1e-14)
    syn = all_synapses(sim, s4)
    for r in range(1, 4):
        assert max(np.abs(a[:, r] - a[:, 0]).max() for a in syn) > 1e-9


# ------------------------------------------------------- permutation equivariance


def _permute_hidden(state, perm, w_in, w_out):
    """Apply a permutation of h's neurons to a state, in the simulator's internal layout."""
    p = np.asarray(perm)
    state.set(w_in, "W", state.get(w_in, "W")[..., p])
    if state.get(w_in, "b") is not None:
        state.set(w_in, "b", state.get(w_in, "b")[..., p])
    if state.get(w_in, "V") is not None:
        state.set(w_in, "V", state.get(w_in, "V")[..., p, :])
    state.set(w_out, "W", state.get(w_out, "W")[..., p, :])
    if state.get(w_out, "V") is not None:
        state.set(w_out, "V", state.get(w_out, "V")[..., p])


@settings(max_examples=25)
@given(
    perm=st.permutations(list(range(5))),
    genome=genomes(k=2, scale=0.5),
    seed=st.integers(0, 1000),
    norm=st.sampled_from(["none", "both"]),
    tied=st.booleans(),
)
def test_permuting_hidden_neurons_permutes_result(perm, genome, seed, norm, tied):
    spec = chain_spec(3, 5, 2, 2, dict(GENERAL, tied=tied, oja="weights"), normalization=norm)
    prog, sim = simulator(spec)
    genes = sim.prepare([genome])
    a = sim.init_synapses(genes, replicas=1, seed=seed)
    b = a.copy()
    _permute_hidden(b, perm, 0, 1)
    rng = np.random.default_rng(seed)
    for _ in range(4):
        x, y = rng.normal(size=(4, 3)), rng.integers(0, 2, 4)
        sim.train_step(a, genes, x, y)
        sim.train_step(b, genes, x, y)
    expected = a.copy()
    _permute_hidden(expected, perm, 0, 1)
    for got, want in zip(all_synapses(sim, b), all_synapses(sim, expected)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    xq = rng.normal(size=(5, 3))
    np.testing.assert_allclose(sim.forward(b, genes, xq)[0], sim.forward(a, genes, xq)[0],
                               rtol=1e-12, atol=1e-13)


def test_permutation_check_can_fail():
    """Permuting only the incoming synapses of h (not the outgoing ones) changes the output."""
    spec = chain_spec(3, 5, 2, 2, GENERAL)
    prog, sim = simulator(spec)
    genes = sim.prepare([random_genome(k=2, seed=1)])
    a = sim.init_synapses(genes, seed=0)
    b = a.copy()
    b.set(0, "W", b.get(0, "W")[..., [1, 0, 2, 3, 4]])
    xq = np.random.default_rng(0).normal(size=(5, 3))
    assert np.abs(sim.forward(b, genes, xq)[0] - sim.forward(a, genes, xq)[0]).max() > 1e-6


# ---------------------------------------------------------------- JSON round trip


@settings(max_examples=40)
@given(
    spec=network_specs(k=3, connectivity=("all_to_all", "fixed_probability", "block_random"),
                       hidden_activation=("tanh", ("sigmoid", "relu", "sin")),
                       rules={"tied": True, "oja": "activity", "schedule": "topological",
                              "synapse_init": {"distribution": "uniform", "scale": 0.5}}),
)
def test_network_spec_json_round_trip(spec):
    spec = fix_lists(spec)
    one = load_network(spec)
    text = dump_json(one)
    two = load_network(json.loads(text))
    assert two == one
    assert two.model_dump() == one.model_dump()
    assert dump_json(two) == text
    # the drawn values survive (an independent look at the original dict)
    for p, q in zip(spec["populations"], two.populations):
        assert (q.name, q.size, q.role) == (p["name"], p["size"], p["role"])
    for p, q in zip(spec["projections"], two.projections):
        assert (q.from_, q.to, q.bias) == (p["from"], p["to"], p["bias"])
        assert q.connectivity.model_dump(exclude_none=True) == {
            key: (tuple(v) if isinstance(v, list) else v) for key, v in p["connectivity"].items()}
    assert two.rules.oja == "activity" and two.rules.synapse_init.scale == 0.5


@settings(max_examples=25)
@given(genome=genomes(k=3, groups=("default", "other"), scale=1.0), gain=st.booleans())
def test_genome_json_round_trip(genome, gain):
    if gain:
        genome.groups["other"].norm_gain = [0.5, 1.5, -2.0]
        genome.groups["other"].oja_alpha = 0.125
    text = dump_json(genome)
    again = load_genome(json.loads(text))
    assert again.model_dump() == genome.model_dump()
    assert load_genome(json.loads(dump_json(again))) == again
    assert dump_json(again) == text
    a = stack_genomes(genome, k=3)
    b = stack_genomes(again, k=3)
    for g in a.arrays:
        for name in a.arrays[g]:
            assert np.array_equal(a.arrays[g][name], b.arrays[g][name])
    assert json.loads(text)["groups"]["default"]["nu"] == genome.groups["default"].nu


def test_spec_equality_ignores_where_it_was_loaded_from(tmp_path):
    text = (SPECS / "mlp_2d.json").read_text()
    (tmp_path / "copy.json").write_text(text)
    from_file = load_network(SPECS / "mlp_2d.json")
    from_dict = load_network(json.loads(text))
    assert from_file.model_dump() == from_dict.model_dump()  # same content...
    genome = random_genome(k=2, seed=1)
    assert load_genome(json.loads(dump_json(genome))) == genome  # ...so these must hold too
    assert from_file == from_dict
    assert load_network(tmp_path / "copy.json") == from_file


# ------------------------------------------------------------------ schedules


def test_synchronous_recurrent_spec_runs():
    spec = json.loads((SPECS / "recurrent_2d.json").read_text())
    prog, sim = simulator(spec)
    assert spec["rules"]["schedule"] == "synchronous"
    genes = sim.prepare([random_genome(k=2, seed=0, scale=0.5)])
    state = sim.init_synapses(genes, replicas=2, seed=0)
    before = [w.copy() for w in all_synapses(sim, state)]
    rng = np.random.default_rng(0)
    for _ in range(5):
        sim.train_step(state, genes, rng.normal(size=(8, 2)), rng.integers(0, 2, 8))
    after = all_synapses(sim, state)
    assert all(np.isfinite(w).all() for w in after)
    assert all(np.abs(a - b).max() > 0 for a, b in zip(after, before))
    out = sim.forward(state, genes, rng.normal(size=(4, 2)))[0]
    assert out.shape == (1, 2, 4, 2) and np.isfinite(out).all()


def _chain4(schedule, sweeps, bias):
    pops = [{"name": "in", "size": 3, "role": "input"}]
    for name, n in (("h1", 4), ("h2", 5)):
        pops.append({"name": name, "size": n, "role": "hidden", "forward_activation": "tanh"})
    pops.append({"name": "out", "size": 2, "role": "output", "forward_activation": "tanh"})
    projs = [{"from": a, "to": b, "bias": bias} for a, b in (("in", "h1"), ("h1", "h2"),
                                                              ("h2", "out"))]
    return {"k": 2, "populations": pops, "projections": projs,
            "rules": {"schedule": schedule, "sweeps": sweeps}}


def _f0_genome(seed):
    g = random_genome(k=2, seed=seed, scale=0.7)
    g.groups["default"].f = 0.0
    g.groups["default"].eta = 1.0
    return g


@pytest.mark.parametrize("bias", [False, True])
def test_synchronous_sweeps_equal_depth_match_topological(bias):
    """f = 0, eta = 1, reset on: after depth (= 3) sweeps a chain's forward pass is the
    topological one; with fewer sweeps the output has not been reached by the input."""
    genome = _f0_genome(3)
    x = np.random.default_rng(0).normal(size=(6, 3))
    _, topo = simulator(_chain4("topological", 1, bias))
    genes = topo.prepare([genome])
    st_topo = topo.init_synapses(genes, replicas=2, seed=7)
    want = topo.forward(st_topo, genes, x)[0]
    assert np.abs(want).max() > 1e-3
    outs = {}
    for sweeps in (1, 2, 3, 5):
        _, sync = simulator(_chain4("synchronous", sweeps, bias))
        st_sync = sync.init_synapses(sync.prepare([genome]), replicas=2, seed=7)
        for q in range(3):  # same synapses in both runs
            for which in ("W", "b", "V"):
                v = st_topo.get(q, which)
                if v is not None:
                    st_sync.set(q, which, v.copy())
        outs[sweeps] = sync.forward(st_sync, genes, x)[0]
    np.testing.assert_allclose(outs[3], want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(outs[5], want, rtol=1e-12, atol=1e-14)  # a fixed point
    if not bias:
        # Without biases, an unreached population stays at tanh(0) = 0.
        assert np.all(outs[1] == 0.0) and np.all(outs[2] == 0.0)
    else:
        # With biases, the output after 1 sweep depends only on the out bias, not on x.
        assert np.abs(outs[1] - outs[1][:, :, :1]).max() < 1e-14
        assert np.abs(outs[2] - want).max() > 1e-6
