"""Block-sparse operators agree with masked dense execution, on every connectivity kind.

Layers: the tiling (every synapse stored exactly once, windows are what
they claim), the operators (each product against the masked dense operator,
float64, over random masks, block widths and layouts), the simulator (whole
training steps, ``sparse="blocks"`` vs ``sparse="masked"``), and the
backprop-genome = SGD identity of DESIGN §3 on sparse topologies run as
blocks.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blursim.backend import NumpyBackend
from blursim.genome import backprop_genome, random_genome
from blursim.graph import compile_network
from blursim.graph.tiling import tile_mask
from blursim.sim import Simulator
from blursim.sim.operators import BlockOperator, MaskedDenseOperator
from blursim.spec import load_network
from blursim.testing.strategies import backprop_rules

TOL = 1e-12

# ------------------------------------------------------------------ masks


@st.composite
def masks(draw, max_n: int = 24):
    """Random masks of several structures: Bernoulli, aligned blocks, bands, empty columns, full."""
    n_src, n_dst = draw(st.integers(1, max_n)), draw(st.integers(1, max_n))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    kind = draw(st.sampled_from(["bernoulli", "blocks", "band", "sparse_cols", "full", "empty"]))
    if kind == "bernoulli":
        m = rng.random((n_src, n_dst)) < draw(st.floats(0.05, 0.9))
    elif kind == "blocks":
        br, bc = draw(st.integers(1, 6)), draw(st.integers(1, 6))
        present = rng.random((-(-n_src // br), -(-n_dst // bc))) < 0.4
        m = np.repeat(np.repeat(present, br, 0), bc, 1)[:n_src, :n_dst]
    elif kind == "band":
        w = draw(st.integers(0, 4))
        i, j = np.meshgrid(np.arange(n_src), np.arange(n_dst), indexing="ij")
        m = np.abs(i * n_dst / n_src - j) <= w
    elif kind == "sparse_cols":
        m = (rng.random((n_src, n_dst)) < 0.5) & (rng.random(n_dst) < 0.3)[None, :]
    elif kind == "full":
        m = np.ones((n_src, n_dst), dtype=bool)
    else:
        m = np.zeros((n_src, n_dst), dtype=bool)
    return m


@st.composite
def plans(draw):
    m = draw(masks())
    n_src, n_dst = m.shape
    bd = draw(st.sampled_from([d for d in range(1, n_dst + 1) if n_dst % d == 0]))
    mode = draw(st.sampled_from(["windows", "gather"]))
    run = draw(st.sampled_from([r for r in range(1, n_src + 1) if n_src % r == 0])) if mode == "gather" else None
    return m, tile_mask(m, bd=bd, mode=mode, run=run)


@settings(max_examples=150, deadline=None)
@given(plans())
def test_tiling_stores_every_synapse_once(mp):
    m, p = mp
    slot, rows, cols = p.slots()
    got = np.zeros_like(m)
    got[rows, cols] = True
    assert (got == m).all()
    assert len(slot) == m.sum() == len(set(zip(rows.tolist(), cols.tolist())))
    assert p.mask.shape == (p.nD, p.K, p.bd) and p.src_index.shape == (p.nD, p.K)
    assert p.src_index.min() >= 0 and p.src_index.max() < p.n_src
    if p.windows is not None:
        covered = []
        for d0, count, start, step in p.windows:
            for t in range(count):
                s = start + step * t
                assert 0 <= s and s + p.K <= p.n_src
                assert (p.src_index[d0 + t] == s + np.arange(p.K)).all()
                covered.append(d0 + t)
        assert covered == list(range(p.nD))
    else:
        assert (p.src_index.reshape(p.nD, -1, p.run) % p.run == np.arange(p.run)).all()


def test_auto_tiling_prefers_blocks_only_when_they_pay():
    from blursim.graph.connectivity import local2d
    from types import SimpleNamespace as NS

    g = NS(name="g", size=784, grid=(28, 28))
    p = tile_mask(local2d(NS(radius=2.0), g, g, None, ""))
    assert p.mode == "windows" and p.density < 0.3 and p.speedup > 1
    rnd = np.random.default_rng(0).random((64, 64)) < 0.3  # unstructured: tiles would be dense
    assert tile_mask(rnd).speedup < 1


# -------------------------------------------------------------- operators


def _scale(be, rng, lead, per_channel):
    shape = (lead[0], 1, lead[2] if per_channel else 1)
    return be.scale(rng.uniform(0.5, 1.5, shape))


@settings(max_examples=120, deadline=None)
@given(mp=plans(), data=st.data())
def test_block_operator_matches_masked_dense(mp, data):
    m, plan = mp
    be = data.draw(st.sampled_from([NumpyBackend("float64"), NumpyBackend("float64", fast=False)]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    n_src, n_dst = m.shape
    c, R, k = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3))
    kw = data.draw(st.sampled_from([1, k]))
    B = data.draw(st.integers(1, 5))
    tplan = tile_mask(m.T, bd=data.draw(st.sampled_from([d for d in range(1, n_src + 1) if n_src % d == 0])))
    blk = BlockOperator(plan, be, transposed=tplan)
    ref = MaskedDenseOperator(n_src, n_dst, be, m)
    D = rng.standard_normal((c, R, kw, n_src, n_dst)) * m
    E = blk.from_dense(D)
    np.testing.assert_array_equal(blk.to_dense(E), D)
    assert E.shape == (c, R, kw) + blk.tail
    # forward, with a shared (broadcast) operand or a per-species one, alpha per channel, beta
    shared = data.draw(st.booleans())
    X = rng.standard_normal((1, 1, 1, B, n_src) if shared else (c, R, k, B, n_src))
    alpha = _scale(be, rng, (c, R, k), True)
    beta = data.draw(st.sampled_from([0, 1, "scale"]))
    if beta == "scale":
        beta = _scale(be, rng, (c, R, k), False)
    out0 = rng.standard_normal((c, R, k, B, n_dst))
    o1, o2 = out0.copy(), out0.copy()
    ref.apply(X, D, o1, alpha, beta)
    blk.apply(X, E, o2, alpha, beta)
    np.testing.assert_allclose(o2, o1, rtol=TOL, atol=TOL)
    # tied backward through W^T
    Y = rng.standard_normal((c, R, k, B, n_dst))
    y0 = rng.standard_normal((c, R, k, B, n_src))
    y1, y2 = y0.copy(), y0.copy()
    ref.apply_t(Y, D, y1, alpha, beta)
    blk.apply_t(Y, E, y2, alpha, beta)
    np.testing.assert_allclose(y2, y1, rtol=TOL, atol=TOL)
    # Hebbian update (channels flattened into the batch when kw = 1)
    P = rng.standard_normal((1, 1, 1, B * (k if kw == 1 else 1), n_src) if shared
                            else (c, R, kw, B * (k if kw == 1 else 1), n_src))
    Q = rng.standard_normal((c, R, kw, P.shape[-2], n_dst))
    a2 = _scale(be, rng, (c, R, kw), True)
    b2 = _scale(be, rng, (c, R, kw), False)
    D1 = D.copy()
    ref.hebbian_update(P, Q, D1, a2, b2)
    blk.hebbian_update(P, Q, E, a2, b2)
    np.testing.assert_allclose(blk.to_dense(E), D1, rtol=TOL, atol=TOL)
    assert (blk.to_dense(E)[..., ~m] == 0).all()
    # column norms and column scaling
    np.testing.assert_allclose(blk.colsq(E), ref.colsq(D1), rtol=TOL, atol=TOL)
    v = rng.uniform(0.5, 2.0, (c, R, kw, n_dst))
    ref.scale_dst(D1, v)
    blk.scale_dst(E, v)
    np.testing.assert_allclose(blk.to_dense(E), D1, rtol=TOL, atol=TOL)


# -------------------------------------------------------------- simulator

POPS_GRID = [
    {"name": "in", "size": 16, "role": "input", "grid": [4, 4]},
    {"name": "h1", "size": 16, "role": "hidden", "grid": [4, 4], "forward_activation": "tanh",
     "backward_activation": "tanh", "genome": "hid"},
    {"name": "h2", "size": 12, "role": "hidden", "grid": [3, 4], "forward_activation": "relu_tanh",
     "backward_activation": "identity"},
    {"name": "out", "size": 3, "role": "output", "forward_activation": "tanh"},
]

CONNECTIVITY = {
    "all_to_all": {"kind": "all_to_all"},
    "one_to_one": {"kind": "one_to_one"},
    "fixed_probability": {"kind": "fixed_probability", "p": 0.4, "seed": 3},
    "from_list": {"kind": "from_list", "edges": [[0, 0], [3, 5], [7, 15], [8, 1], [15, 15], [2, 9]]},
    "local2d": {"kind": "local2d", "radius": 1.5},
    "block_random": {"kind": "block_random", "block": [4, 2], "p": 0.5, "seed": 1},
}


def grid_spec(kind: str, rules: dict) -> dict:
    conn = CONNECTIVITY[kind]
    h2conn = {"kind": "local2d", "radius": 1.0} if kind in ("one_to_one", "from_list") else conn
    return {
        "k": 3 if rules.get("feedback") == "target" else 2, "seed": 5, "populations": POPS_GRID,
        "projections": [
            {"from": "in", "to": "h1", "connectivity": conn, "genome": "hid"},
            {"from": "h1", "to": "h2", "connectivity": h2conn, "bias": False},
            {"from": "in", "to": "h2", "connectivity": {"kind": "block_random", "block": [2, 3], "p": 0.6}},
            {"from": "h2", "to": "out"},
        ],
        "rules": rules,
    }


RULES = st.fixed_dictionaries({
    "backward_update": st.sampled_from(["additive", "multiplicative", "multiplicative_second_state"]),
    "tied": st.booleans(),
    "shared_channels": st.booleans(),
    "feedback": st.sampled_from(["target", "error_mse", "error_softmax"]),
    "oja": st.sampled_from(["none", "weights", "activity"]),
    "synapse_normalization": st.sampled_from(["none", "activations", "stored"]),
    "saturation": st.booleans(),
    "reset_neurons": st.booleans(),
    "batch_reduction": st.sampled_from(["sum", "mean"]),
})


def _run(sim, genome, steps, seed, S=2):
    genes = sim.prepare([genome] * S)
    st_ = sim.init_synapses(genes, replicas=2, seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = rng.normal(size=(int(rng.integers(1, 5)), 16))
        sim.train_step(st_, genes, x, rng.integers(0, 3, x.shape[0]))
    outs = sim.forward(st_, genes, rng.normal(size=(3, 16)))
    syn = [st_.get(q, w) for q in range(len(sim.program.projs)) for w in "WbV"]
    return [a for a in syn if a is not None] + list(outs)


@pytest.mark.parametrize("kind", sorted(CONNECTIVITY))
@settings(max_examples=6, deadline=None)
@given(rules=RULES, seed=st.integers(0, 1000))
def test_blocks_and_masked_dense_agree(kind, rules, seed):
    prog = compile_network(load_network(grid_spec(kind, rules)))
    genome = random_genome(k=prog.k, groups=prog.groups, seed=seed, scale=0.4)
    for g in genome.groups.values():
        g.oja_alpha, g.saturation, g.rescale = 0.05, 2.0, 1.5
    want = _run(Simulator(prog, dtype="float64", sparse="masked"), genome, 3, seed)
    for sim in (Simulator(prog, dtype="float64", sparse="blocks"),
                Simulator(prog, dtype="float64", sparse="blocks", threads=2),
                Simulator(prog, backend=NumpyBackend("float64", fast=False), sparse="blocks")):
        assert any(op.kind == "block" for op in sim.ops)
        got = _run(sim, genome, 3, seed)
        for a, b in zip(want, got):
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10)


def test_block_storage_holds_only_tiles_and_same_initial_synapses():
    spec = {
        "k": 2, "populations": [
            {"name": "in", "size": 144, "role": "input", "grid": [12, 12]},
            {"name": "h", "size": 144, "role": "hidden", "grid": [12, 12]},
            {"name": "out", "size": 3, "role": "output"},
        ],
        "projections": [{"from": "in", "to": "h", "connectivity": {"kind": "local2d", "radius": 1.5}},
                        {"from": "h", "to": "out"}],
    }
    prog = compile_network(load_network(spec))
    blk, msk = Simulator(prog, dtype="float64", sparse="blocks"), Simulator(prog, dtype="float64", sparse="masked")
    genome = random_genome(k=prog.k, groups=prog.groups)
    sb = blk.init_synapses(blk.prepare([genome]), replicas=2, seed=7)
    sm = msk.init_synapses(msk.prepare([genome]), replicas=2, seed=7)
    for q in range(len(prog.projs)):
        for w in "WbV":
            a, b = sb.get(q, w), sm.get(q, w)
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(a, b)
    assert blk.ops[0].kind == "block" and blk.vops[0].kind == "block"
    assert sb.W[0].size == 2 * prog.k * blk.ops[0].stored < sm.W[0].size
    assert blk.synapse_bytes(sb) < msk.synapse_bytes(sm)
    # set() scatters into tiles and drops entries outside the mask
    W = sb.get(0, "W") + 1.0
    sb.set(0, "W", W)
    np.testing.assert_array_equal(sb.get(0, "W"), W * prog.projs[0].mask)


# ------------------------------------------------------ backprop identity

N_FEATURES, N_CLASSES, LR = 16, 3, 0.05


def _reference_sgd(prog, st_, batches, reduction):
    try:
        from tests.reference.backprop import sgd
    except ImportError:
        from reference.backprop import sgd
    desc = {
        "populations": [{"name": p.name, "size": p.size, "role": p.role,
                         "activation": {"tanh": "tanh", "sigmoid": "sigmoid", "identity": "identity"}[p.fwd_names[0]]}
                        for p in prog.pops],
        "projections": [{"name": q.name, "from": prog.pops[q.pre].name, "to": prog.pops[q.post].name,
                         "bias": q.bias, "mask": None if q.mask is None else q.mask.astype(float)}
                        for q in prog.projs],
    }
    W0 = {q.name: st_.forward_synapses(i, 2)[0, 0, :, :, 0] for i, q in enumerate(prog.projs)}
    inputs = [({"in": x}, {"out": y}) for x, y in batches]
    return sgd(desc, W0, inputs, LR, loss="softmax", reduction=reduction)


@pytest.mark.parametrize("kind", ["local2d", "block_random", "one_to_one", "from_list"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_backprop_genome_is_sgd_on_block_sparse_topologies(kind, reduction):
    conn = CONNECTIVITY[kind]
    spec = {
        "k": 2, "seed": 1,
        "populations": [
            {"name": "in", "size": 16, "role": "input", "grid": [4, 4]},
            {"name": "h1", "size": 16, "role": "hidden", "grid": [4, 4], "forward_activation": ["tanh", "tanh_derivative"]},
            {"name": "h2", "size": 8, "role": "hidden", "grid": [2, 4], "forward_activation": ["sigmoid", "sigmoid_derivative"]},
            {"name": "out", "size": 3, "role": "output", "forward_activation": ["identity", "one"]},
        ],
        "projections": [
            {"from": "in", "to": "h1", "connectivity": conn},
            {"from": "h1", "to": "h2", "connectivity": {"kind": "local2d", "radius": 1.5}, "bias": False},
            {"from": "in", "to": "h2", "connectivity": {"kind": "block_random", "block": [4, 2], "p": 0.5}},
            {"from": "h2", "to": "out"},
        ],
        "rules": backprop_rules("error_softmax", reduction),
    }
    prog = compile_network(load_network(spec))
    sim = Simulator(prog, dtype="float64", sparse="blocks")
    assert sum(op.kind == "block" for op in sim.ops) >= 2
    genes = sim.prepare([backprop_genome(lr=LR)])
    st_ = sim.init_synapses(genes, seed=11)
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(4, N_FEATURES)), rng.integers(0, N_CLASSES, 4)) for _ in range(8)]
    ref = _reference_sgd(prog, st_, batches, reduction)
    for t, (x, y) in enumerate(batches):
        sim.train_step(st_, genes, x, y)
        for i, q in enumerate(prog.projs):
            w = st_.forward_synapses(i, 2)[0, 0]
            want = ref[t][q.name]
            assert np.abs(w[..., 0] - want).max() <= 1e-10 * max(1.0, np.abs(want).max())
            np.testing.assert_array_equal(w[..., 0], w[..., 1])
    assert sum(np.abs(ref[-1][q.name] - ref[0][q.name]).sum() for q in prog.projs) > 1e-3


def test_complex_step_through_block_operators():
    """complex128 runs the block path; its real part equals float64 and the imaginary part is a derivative."""
    spec = grid_spec("local2d", {"feedback": "error_softmax"})
    prog = compile_network(load_network(spec))
    genome = random_genome(k=prog.k, groups=prog.groups, seed=2, scale=0.3)
    sim64 = Simulator(prog, dtype="float64", sparse="blocks")
    simc = Simulator(prog, dtype="complex128", sparse="blocks")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 16)), rng.integers(0, 3, 4)

    def step(sim, h):
        genes = sim.prepare([genome])
        st_ = sim.init_synapses(genes, seed=3)
        W = st_.get(0, "W").astype(sim.backend.dtype)
        W[0, 0, 0, 5, 6] += h  # inside the local2d mask (radius 1.5 on a 4x4 grid)
        st_.set(0, "W", W)
        sim.train_step(st_, genes, x, y)
        return st_.get(3, "W")

    h = 1e-20
    Wc = step(simc, 1j * h)
    np.testing.assert_allclose(Wc.real, step(sim64, 0.0), rtol=1e-12, atol=1e-12)
    eps = 1e-6
    fd = (step(sim64, eps) - step(sim64, -eps)) / (2 * eps)
    np.testing.assert_allclose(Wc.imag / h, fd, rtol=1e-5, atol=1e-7)
