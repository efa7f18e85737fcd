"""The genome folded once (blursim.sim.coefficients.fold) against the equations it folds.

Each named coefficient is recomputed here from the genome's fields by the equation it stands
for (paper eq. 5-8, DESIGN §2), in plain NumPy loops over species and states.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from blursim.backend import get_backend
from blursim.genome import random_genome
from blursim.genome.arrays import stack_genomes
from blursim.graph import compile_network
from blursim.sim.coefficients import ChunkCoefficients, fold
from blursim.spec import load_network

SPEC = {"k": 3, "seed": 1,
        "populations": [{"name": "in", "size": 2, "role": "input"},
                        {"name": "h", "size": 4, "role": "hidden", "genome": "g1"},
                        {"name": "out", "size": 2, "role": "output"}],
        "projections": [{"from": "in", "to": "h", "genome": "g1"},  # an input, a bias row
                        {"from": "h", "to": "out", "bias": False}]}


@pytest.fixture(scope="module")
def batch():
    prog = compile_network(load_network(SPEC))
    gens = [random_genome(k=3, seed=s, groups=["default", "g1"]) for s in range(3)]
    for i, g in enumerate(gens):
        g.groups["g1"].oja_alpha = -0.2 * (i + 1)
        g.groups["g1"].saturation = [-2.0, 1e-14, 0.5][i]
        g.groups["default"].eta_tilde = -0.1 * i
    arrays = stack_genomes(gens, k=3, groups=prog.groups).arrays
    return prog, {g: {n: np.asarray(v, dtype=np.float64) for n, v in a.items()} for g, a in arrays.items()}


@pytest.mark.parametrize("batch_mean", [False, True])
@pytest.mark.parametrize("channels", ["all", "mean", "first"])
def test_fold_is_the_equations(batch, batch_mean, channels):
    prog, G = batch
    before = copy.deepcopy(G)
    B, k, S = 7, 3, 3
    F = fold(G, prog, B, batch_mean=batch_mean, channels=channels)
    for g in G:  # pure: the genome is not changed
        assert all(np.array_equal(G[g][n], before[g][n]) for n in G[g])
    rho = 1.0 / B if batch_mean else 1.0
    per_mean = k if channels == "mean" else 1
    rng = np.random.default_rng(0)
    for p in prog.pops:
        g = G[p.group]
        assert np.array_equal(F.pops[p.index].eta.reshape(S), g["eta"])
        assert np.array_equal(F.pops[p.index].f.reshape(S), g["f"])
    for q in prog.projs:
        g, eta_post = G[q.group], G[prog.pops[q.post].group]["eta"]
        P = F.projs[q.index]
        for s in range(S):
            for c in range(k):
                # eq. (5): an input's (nu x)^c = nu[c, 0] x, times eta; the bias unit's (nu 1)^c
                assert P.forward_input[s, 0, c] == pytest.approx(eta_post[s] * g["nu"][s, c, 0], rel=1e-15)
                assert P.forward_bias[s, 0, c, 0, 0] == pytest.approx(eta_post[s] * sum(g["nu"][s, c, :]), rel=1e-14)
            # eq. (8): eta~ O = -|eta~| |alpha| W n2
            assert P.oja[s].item() == pytest.approx(abs(g["eta_tilde"][s]) * abs(g["oja_alpha"][s]), rel=1e-15)
            assert P.saturation[s].item() == max(abs(g["saturation"][s]), 1e-12)
        # eq. (7): the Hebbian product's alpha
        for which, coef in (("W", lambda s, c: g["nu_tilde"][s, 0, c]), ("V", lambda s, c: g["mu_tilde"][s, c, 0])):
            rate = getattr(P, which).rate
            for s in range(S):
                base = g["eta_tilde"][s] * rho / per_mean
                want = [base * coef(s, c) for c in range(k)] if (q.pre == 0 and channels == "all") else [base]
                np.testing.assert_allclose(rate[s].reshape(-1), want, rtol=1e-14, atol=0)
        if q.bias:  # the bias row: eta~ rho_b sum_e nu~[e, c] (mu~ a_b)^c, reduced to the stored channels
            a = rng.normal(size=(B, q.n_post, k))
            H = np.zeros((S, k, q.n_post))
            for s in range(S):
                for c in range(k):
                    Pc = g["nu_tilde"][s, :, c].sum()
                    Q = np.einsum("d,bjd->bj", g["mu_tilde"][s, c, :], a)
                    H[s, c] = g["eta_tilde"][s] * rho * Pc * Q.sum(axis=0)
            want = {"all": H, "mean": H.mean(axis=1, keepdims=True), "first": H[:, :1]}[channels]
            got = np.einsum("scd,dj->scj", P.W.bias[:, 0], a.sum(axis=0).T)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
            got_unit = np.einsum("scd,dj->scj", P.W.bias_unit[:, 0], a.sum(axis=0).T)
            scale = np.where(g["eta_tilde"] == 0, np.nan, g["eta_tilde"])[:, None, None]
            np.testing.assert_allclose(got_unit[g["eta_tilde"] != 0], (want / scale)[g["eta_tilde"] != 0], rtol=1e-12)
    # mixing: nu~^T, and the input-scaled matrices of shared channels
    m = F.mixing["g1"]
    np.testing.assert_array_equal(m.nu_tilde_t[:, 0], np.swapaxes(G["g1"]["nu_tilde"], 1, 2))
    np.testing.assert_allclose(m.mu_tilde_in[:, 0], G["g1"]["nu_tilde"][:, 0, :, None] * G["g1"]["mu_tilde"])


def test_a_chunk_reads_its_species_on_the_device(batch):
    prog, G = batch
    F = fold(G, prog, 5, batch_mean=False, channels="all")
    cf = ChunkCoefficients(get_backend("numpy", "float64"), F, 1, 3)
    assert cf.c == 2
    np.testing.assert_array_equal(cf.proj(0).W.rate.host, F.projs[0].W.rate[1:3])
    np.testing.assert_array_equal(cf.pop(1).norm_gain, F.pops[1].norm_gain[1:3])
    np.testing.assert_array_equal(cf.mat("default", "mu"), F.mixing["default"].mu[1:3])
    assert cf.proj(0).W is cf.proj(0).W  # converted once
    with pytest.raises(AttributeError):
        cf.proj(0).not_a_field
