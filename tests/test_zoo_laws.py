"""Laws of the rule zoo (blursim.testing.zoo_laws): they hold on drawn networks and catch the
rule they are about being replaced by another."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blursim.genome import make_preset
from blursim.genome.requirements import with_preset
from blursim.testing.laws import LAWS, LawNotApplicable, law_named
from blursim.testing.report import LawViolation
from blursim.testing.zoo_laws import oja_norms_stay_bounded


def _linear_chain(sizes, bias, reduction):
    pops = [{"name": "p0", "size": sizes[0], "role": "input"}]
    for l in range(1, len(sizes)):
        pops.append({"name": f"p{l}", "size": sizes[l], "role": "output" if l == len(sizes) - 1 else "hidden",
                     "forward_activation": "identity"})
    projs = [{"from": f"p{l - 1}", "to": f"p{l}", "bias": bias} for l in range(1, len(sizes))]
    return with_preset({"k": 2, "populations": pops, "projections": projs,
                        "rules": {"batch_reduction": reduction}}, "oja", apply_rules=True, lr=0.01)


def _batches(rng, n_in, n_out, steps, scale=1.0):
    out = []
    for _ in range(steps):
        B = int(rng.integers(1, 6))
        out.append((scale * rng.normal(size=(B, n_in)), rng.integers(0, max(n_out, 2), B)))
    return out


@settings(max_examples=15)
@given(sizes=st.lists(st.integers(1, 4), min_size=2, max_size=3), bias=st.booleans(),
       reduction=st.sampled_from(["sum", "mean"]), seed=st.integers(0, 2**31))
def test_oja_norms_stay_bounded_on_drawn_linear_networks(sizes, bias, reduction, seed):
    setup = _linear_chain(sizes, bias, reduction)
    rng = np.random.default_rng(seed)
    run = oja_norms_stay_bounded(setup.spec, setup.genome, _batches(rng, sizes[0], sizes[-1], 25), seed=seed % 97)
    assert run.t == 25


def test_plain_hebb_breaks_the_oja_bound_and_the_counterexample_replays(tmp_path):
    from blursim.testing.laws import replay

    setup = _linear_chain([3, 2], True, "sum")
    hebb = make_preset("hebbian", k=2, groups=["default"], lr=0.01)
    rng = np.random.default_rng(0)
    with pytest.raises(LawViolation) as e:
        oja_norms_stay_bounded(setup.spec, hebb, _batches(rng, 3, 2, 200), check_domain=False, save=tmp_path)
    assert "oja_norms_stay_bounded" in str(e.value) and "‖w_j‖²" in str(e.value)
    with pytest.raises(LawViolation):
        replay(tmp_path)


def test_domain_is_stated():
    setup = _linear_chain([2, 2], False, "sum")
    assert oja_norms_stay_bounded.why_not(setup.spec, setup.genome) is None
    from blursim.testing.zoo_laws import ZOO_LAWS

    assert "oja_norms_stay_bounded" in ZOO_LAWS and "oja_norms_stay_bounded" not in LAWS
    assert law_named("oja_norms_stay_bounded", "blursim.testing.zoo_laws") is oja_norms_stay_bounded  # replay
    tanh = setup.spec.model_copy(deep=True)
    tanh.populations[1].forward_activation = "tanh"
    assert "not linear" in oja_norms_stay_bounded.why_not(tanh, setup.genome)
    assert "not the oja genome" in oja_norms_stay_bounded.why_not(setup.spec, make_preset("hebbian", k=2, groups=["default"]))
    with pytest.raises(LawNotApplicable):  # a step too large for the bound is refused, not judged
        oja_norms_stay_bounded(setup.spec, setup.genome, _batches(np.random.default_rng(1), 2, 2, 3, scale=100.0))


# ------------------------------------------------------------------ Kolen-Pollack
@settings(max_examples=15)
@given(sizes=st.lists(st.integers(1, 4), min_size=2, max_size=4), bias=st.booleans(),
       shared=st.booleans(), seed=st.integers(0, 10**6), additive=st.booleans())
def test_mirrored_synapses_converge_for_every_genome(sizes, bias, shared, seed, additive):
    from blursim.genome import random_genome
    from blursim.testing.zoo_laws import mirrored_synapses_converge

    pops = [{"name": "p0", "size": sizes[0], "role": "input"}]
    for l in range(1, len(sizes)):
        pops.append({"name": f"p{l}", "size": sizes[l], "role": "output" if l == len(sizes) - 1 else "hidden"})
    spec = {"k": 2, "populations": pops,
            "projections": [{"from": f"p{l - 1}", "to": f"p{l}", "bias": bias} for l in range(1, len(sizes))],
            "rules": {"backward_synapses": "mirror", "shared_channels": shared,
                      "backward_update": "additive" if additive else "multiplicative_second_state"}}
    genome = random_genome(k=2, seed=seed, scale=0.3, lr=0.05)
    rng = np.random.default_rng(seed)
    mirrored_synapses_converge(spec, genome, _batches(rng, sizes[0], sizes[-1], 5), seed=seed % 13)


def test_learned_backward_synapses_break_the_mirror_law():
    from blursim.genome import random_genome
    from blursim.testing.zoo_laws import mirrored_synapses_converge

    spec = {"k": 2, "populations": [{"name": "in", "size": 3, "role": "input"},
                                    {"name": "h", "size": 4, "role": "hidden"},
                                    {"name": "out", "size": 2, "role": "output"}],
            "projections": [{"from": "in", "to": "h"}, {"from": "h", "to": "out"}],
            "rules": {"backward_synapses": "learned"}}
    rng = np.random.default_rng(0)
    with pytest.raises(LawViolation) as e:
        mirrored_synapses_converge(spec, random_genome(k=2, seed=1, lr=0.05), _batches(rng, 3, 2, 3),
                                   check_domain=False, save=False)
    assert "W − Vᵀ" in str(e.value)
    assert "mirror" in mirrored_synapses_converge.why_not(spec, random_genome(k=2, seed=1))


# ------------------------------------------------------------- feedback alignment
def _fa_run(lr, steps, after, check_domain=True):
    from blursim.data import load_dataset
    from blursim.sim.run import train_batch
    from blursim.testing.zoo_laws import feedback_alignment_aligns

    from conftest import SPECS

    ds = load_dataset("two_moons")
    setup = with_preset(SPECS / "mlp_2d.json", "feedback_alignment", apply_rules=True, lr=abs(lr))
    genome = setup.genome
    if lr < 0:
        genome = genome.model_copy(update={"groups": {g: p.model_copy(update={"eta_tilde": lr})
                                                      for g, p in genome.groups.items()}})
    batches = [train_batch(ds.x_train, ds.y_train, t, 0, 32) for t in range(steps)]
    return feedback_alignment_aligns(setup.spec, genome, batches, after=after, replicas=4,
                                     check_domain=check_domain, save=False)


def test_feedback_alignment_comes_to_point_downhill():
    """two_moons, 2-20-2 tanh, lr 0.5 (batch mean): measured angles ~87° over the first steps,
    below 76° at every step from step 20 to 60 in each of 4 replicas."""
    run = _fa_run(0.5, 60, after=20)
    angles = np.array(run.angles)
    assert angles[:3].mean() > 80  # it starts near 90° (B is random): the law is not trivial
    assert angles[20:].max() < 90


def test_gradient_ascent_breaks_the_alignment_law():
    with pytest.raises(LawViolation) as e:
        _fa_run(-0.5, 5, after=0, check_domain=False)
    assert "angle" in str(e.value)
