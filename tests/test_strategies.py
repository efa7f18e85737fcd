"""Tests of the evolution strategies (blursim.meta.strategies).

- a contract test over every registered strategy (shapes, progress on a
  sphere, bit-identical resume from a checkpoint, NaN fitness as the worst,
  seeding);
- CMA-ES parity: the wrapper's trajectory equals driving
  ``cma.CMAEvolutionStrategy`` directly, exactly;
- OpenAI-ES against a hand-written reference of two generations;
- fitness shaping and the fitness convention against brute-force references;
- the global NumPy RNG is never touched; bad options and bad checkpoints give
  clear errors.
"""

from __future__ import annotations

import json
import os

import cma
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blursim.errors import BlursimError, SpecError
from blursim.meta.strategies import (
    FORMAT,
    FORMAT_VERSION,
    STRATEGIES,
    CheckpointError,
    centred_ranks,
    fitness_to_cost,
    load_state,
    make_strategy,
    save_state,
    strategy_for,
)

ALL = sorted(n for n in STRATEGIES.names() if STRATEGIES.get(n).kind == "evolution")  # gradient: test_gradient_training.py
CMA_KINDS = {"cma_es": False, "sep_cma_es": True}  # name -> pycma CMA_diagonal

DIM = 10
X_STAR = np.linspace(-0.8, 0.8, DIM)


def sphere(X):
    """Fitness to maximise: -||x - x*||^2 (optimum 0 at X_STAR)."""
    return -np.sum((np.asarray(X) - X_STAR) ** 2, axis=1)


def make(name, **kw):
    args = dict(dim=DIM, x0=np.zeros(DIM), sigma0=0.5, popsize=20, seed=1)
    args.update(kw)
    return make_strategy(name, **args)


def run(strategy, state, generations, fitness=sphere):
    """Continue ``state``; return the final state and every asked population."""
    asked = []
    for _ in range(generations):
        X, state = strategy.ask(state)
        asked.append(X)
        state = strategy.tell(state, X, fitness(X))
    return state, asked


def global_rng_state():
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return kind, keys.copy(), pos, has_gauss, cached


def same_global_rng_state(a, b):
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:]


# --------------------------------------------------------------------------
# Contract: every registered strategy
# --------------------------------------------------------------------------


def test_registry_lists_the_three_strategies():
    assert set(ALL) == {"cma_es", "sep_cma_es", "openai_es"}
    assert set(STRATEGIES.names()) - set(ALL) == {"gradient"}


@pytest.mark.parametrize("name", ALL)
def test_ask_tell_shapes_dtypes_and_best(name):
    s = make(name)
    state0 = s.init()
    assert s.best(state0) == (None, -np.inf)
    assert s.mean(state0).shape == (DIM,)
    assert s.step_size(state0) == 0.5
    X, state1 = s.ask(state0)
    assert X.shape == (20, DIM) and X.dtype == np.float64 and np.isfinite(X).all()
    assert state0.pending is None  # ask did not change the state it was given
    f = sphere(X)
    state2 = s.tell(state1, X, f)
    assert state1.pending is not None  # nor did tell
    m = s.mean(state2)
    assert m.shape == (DIM,) and m.dtype == np.float64
    assert isinstance(s.step_size(state2), float) and s.step_size(state2) > 0
    bx, bf = s.best(state2)
    i = int(np.argmax(f))
    assert bf == f[i] and np.array_equal(bx, X[i])
    # misuse is refused
    with pytest.raises(ValueError, match="pending"):
        s.ask(state1)
    with pytest.raises(ValueError, match="none pending"):
        s.tell(state2, X, f)
    with pytest.raises(ValueError, match="not the population"):
        s.tell(state1, X + 1.0, f)
    with pytest.raises(ValueError, match="shape"):
        s.tell(state1, X, f[:-1])


@pytest.mark.parametrize("name", ALL)
def test_bounds_are_respected(name):
    lower, upper = np.full(DIM, -0.3), np.full(DIM, 0.2)
    lower[0], upper[1] = -np.inf, np.inf  # unbounded coordinates are allowed
    s = make(name, bounds=(lower, upper), sigma0=1.0)
    state = s.init()
    for _ in range(10):
        X, state = s.ask(state)
        assert np.all(X >= lower) and np.all(X <= upper)
        state = s.tell(state, X, sphere(X))
        assert np.all(s.mean(state) >= lower) and np.all(s.mean(state) <= upper)


@pytest.mark.parametrize("name", ALL)
def test_improves_sphere_within_budget(name):
    # 150 generations x 20 candidates must shrink ||mean - x*||^2 at least 100-fold
    # (from 2.35 at x0 = 0 to below 0.0235).
    s = make(name)
    state = s.init()
    d0 = np.sum((s.mean(state) - X_STAR) ** 2)
    state, _ = run(s, state, 150)
    d = np.sum((s.mean(state) - X_STAR) ** 2)
    assert d < d0 / 100, (d0, d)
    assert s.best(state)[1] > -d0  # some candidate beat x0


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("mid_generation", [False, True])
def test_checkpoint_resume_is_bit_identical(name, tmp_path, mid_generation):
    s = make(name, popsize=8)
    state, _ = run(s, s.init(), 7)
    if mid_generation:  # checkpoint between ask and tell
        _, state = s.ask(state)
    save_state(tmp_path, state)
    assert sorted(os.listdir(tmp_path)) == ["strategy.json", "strategy.npz"]  # no temp files left

    loaded = load_state(tmp_path)
    loaded_with = load_state(tmp_path, strategy=make(name, popsize=8))

    # the checkpoint data round-trips exactly
    d0, a0 = s.state_to_data(state)
    d1, a1 = strategy_for(loaded).state_to_data(loaded)
    assert d0 == d1 and a0.keys() == a1.keys()
    for k in a0:
        assert a0[k].dtype == a1[k].dtype and np.array_equal(a0[k], a1[k]), k

    def continue_(strategy, st_):
        if st_.pending is not None:
            X = st_.pending.copy()
            st_ = strategy.tell(st_, X, sphere(X))
        st_, asked = run(strategy, st_, 8)
        return asked, strategy.mean(st_), strategy.step_size(st_), strategy.best(st_)

    ref = continue_(s, state)
    for other in (continue_(strategy_for(loaded), loaded), continue_(make(name, popsize=8), loaded_with)):
        for a, b in zip(ref[0], other[0], strict=True):
            assert np.array_equal(a, b)
        assert np.array_equal(ref[1], other[1]) and ref[2] == other[2]
        assert np.array_equal(ref[3][0], other[3][0]) and ref[3][1] == other[3][1]
    # continuing the original state a second time (a branch) also reproduces it
    again = continue_(s, state)
    assert all(np.array_equal(a, b) for a, b in zip(ref[0], again[0], strict=True))


@pytest.mark.parametrize("name", ALL)
def test_nonfinite_fitness_is_treated_as_the_worst(name):
    """A run where some evaluations fail (NaN, +inf, -inf) follows exactly the
    trajectory of a run where those candidates got a fitness below every other
    one; they never become best, even when they are the closest to x*."""
    s = make(name)

    def failing(X, replacement):
        f = sphere(X)
        bad = np.argsort(-f)[:3]  # the three best candidates fail
        out = f.copy()
        if replacement is None:
            out[bad] = [np.nan, np.inf, -np.inf]
        else:
            out[bad] = f.min() - 1e3
        return out

    a, asked_a = run(s, s.init(), 25, lambda X: failing(X, None))
    b, asked_b = run(s, s.init(), 25, lambda X: failing(X, "low"))
    assert all(np.array_equal(x, y) for x, y in zip(asked_a, asked_b, strict=True))
    assert np.array_equal(s.mean(a), s.mean(b)) and s.step_size(a) == s.step_size(b)
    bx, bf = s.best(a)
    assert np.isfinite(bf) and bf == s.best(b)[1] and np.array_equal(bx, s.best(b)[0])
    # the best is a candidate that was told a finite fitness
    told = np.concatenate(asked_a)
    fit = np.concatenate([failing(X, None) for X in asked_a])
    assert bf == np.max(fit[np.isfinite(fit)])
    assert any(np.array_equal(bx, x) for x in told[np.isfinite(fit)])

    # a population where every evaluation failed does not crash
    X, st_ = s.ask(a)
    st_ = s.tell(st_, X, np.full(20, np.nan))
    assert np.isfinite(s.mean(st_)).all() and s.best(st_)[1] == bf


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_trajectory_other_seed_different(name):
    _, a = run(make(name, seed=5), make(name, seed=5).init(), 4)
    _, b = run(make(name, seed=5), make(name, seed=5).init(), 4)
    _, c = run(make(name, seed=6), make(name, seed=6).init(), 4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    # a spawned SeedSequence is a valid seed too and differs from its parent
    child = np.random.SeedSequence(5).spawn(1)[0]
    _, d = run(make(name, seed=child), make(name, seed=child).init(), 1)
    assert not np.array_equal(a[0], d[0])


# --------------------------------------------------------------------------
# CMA-ES: parity with pycma driven directly
# --------------------------------------------------------------------------


SHIFT = np.array([0.5, -0.25, 1.0, 0.75, -0.5])


def shifted_rosenbrock_fitness(x):
    """Fitness to maximise: -rosen(x - SHIFT + 1), optimum 0 at x = SHIFT."""
    return -cma.ff.rosen(np.asarray(x) - SHIFT + 1.0)


@pytest.mark.parametrize("name", sorted(CMA_KINDS))
@pytest.mark.parametrize("popsize", [5, 10])  # popsize 5: pycma mirrors samples
@pytest.mark.parametrize("bounded", [False, True])
def test_cma_trajectory_equals_pycma_driven_directly(name, popsize, bounded):
    dim, seed, sigma0 = 5, 11, 0.3
    x0 = np.full(dim, 0.1)
    bounds = (np.full(dim, -0.4), np.full(dim, 0.6)) if bounded else None

    # through blursim: maximise f
    s = make_strategy(name, dim=dim, x0=x0, sigma0=sigma0, popsize=popsize, seed=seed, bounds=bounds)
    state = s.init()

    # directly: minimise -f with the same x0, sigma0, options and sampler seed
    rng = np.random.default_rng(seed)
    opts = {
        "popsize": popsize,
        "CMA_diagonal": CMA_KINDS[name],
        "randn": lambda lam, n: rng.standard_normal((lam, n)),
        "seed": np.nan,
        "verbose": -9,
    }
    if bounded:
        opts["bounds"] = [list(bounds[0]), list(bounds[1])]
    es = cma.CMAEvolutionStrategy(list(x0), sigma0, opts)

    assert np.array_equal(s.mean(state), es.result.xfavorite) and s.step_size(state) == es.sigma
    for _ in range(20):
        X, state = s.ask(state)
        sols = es.ask()
        assert np.array_equal(X, np.array(sols))
        state = s.tell(state, X, [shifted_rosenbrock_fitness(x) for x in X])
        es.tell(sols, [-shifted_rosenbrock_fitness(x) for x in sols])
        assert np.array_equal(s.mean(state), es.result.xfavorite)
        if not bounded:
            assert np.array_equal(s.mean(state), es.mean)
        assert s.step_size(state) == es.sigma
    bx, bf = s.best(state)
    assert bf == -es.result.fbest and np.array_equal(bx, es.result.xbest)
    # and it is heading for the known optimum
    assert bf > shifted_rosenbrock_fitness(x0)


@pytest.mark.parametrize("name", sorted(CMA_KINDS))
@pytest.mark.parametrize("options", [{}, {"CMA_elitist": True, "CMA_active": False}])
def test_cma_never_touches_global_numpy_rng_nor_writes_files(name, options, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = global_rng_state()
    s = make(name, popsize=8, options=options, bounds=(np.full(DIM, -1.0), np.full(DIM, 1.0)))
    state, _ = run(s, s.init(), 15)
    save_state(tmp_path / "ck", state)
    loaded = load_state(tmp_path / "ck")  # replays the run
    run(strategy_for(loaded), loaded, 3)
    assert same_global_rng_state(before, global_rng_state())
    assert sorted(os.listdir(tmp_path)) == ["ck"]  # no outcmaes* or signal files

    # the check above can fail: pycma with its default options does seed np.random
    try:
        es = cma.CMAEvolutionStrategy(np.zeros(3), 0.5, {"verbose": -9, "seed": 3})
        es.tell(es.ask(), [0.0] * es.popsize)
        assert not same_global_rng_state(before, global_rng_state())
    finally:
        np.random.set_state(before)


def test_cma_replay_detects_a_run_it_cannot_reproduce():
    """A checkpoint whose recorded populations differ from what this pycma
    computes (as one written by another pycma version would) is refused."""
    s = make("cma_es", popsize=8)
    state, _ = run(s, s.init(), 5)
    data, arrays = s.state_to_data(state)
    assert s.state_from_data(data, arrays).generation == 5
    tampered = dict(arrays)
    tampered["state.asked"] = arrays["state.asked"].copy()
    tampered["state.asked"][2, 0, 0] += 1e-12
    with pytest.raises(CheckpointError, match="diverged at generation 2"):
        s.state_from_data(data, tampered)
    tampered = dict(arrays)
    tampered["state.costs"] = arrays["state.costs"].copy()
    tampered["state.costs"][4] = tampered["state.costs"][4][::-1]  # changes the last update only
    with pytest.raises(CheckpointError, match="did not reproduce"):
        s.state_from_data(data, tampered)


# --------------------------------------------------------------------------
# OpenAI-ES against a hand-written reference
# --------------------------------------------------------------------------


def brute_centred_ranks(x):
    x = list(x)
    n = len(x)
    r = [sum(y < v for y in x) + (sum(y == v for y in x) - 1) / 2 for v in x]
    return np.array([ri / (n - 1) - 0.5 for ri in r])


def test_openai_es_two_generations_match_reference():
    dim, n, seed, sigma0 = 4, 6, 3, 0.2
    opts = dict(learning_rate=0.05, beta1=0.8, beta2=0.9, adam_eps=1e-6,
                weight_decay=0.01, sigma_decay=0.5, sigma_min=0.06, lr_decay=0.9)
    x0 = np.array([0.3, -0.2, 0.1, 0.0])
    s = make_strategy("openai_es", dim=dim, x0=x0, sigma0=sigma0, popsize=n, seed=seed, options=opts)
    state = s.init()

    rng = np.random.default_rng(seed)
    mean, m, v, sigma, lr = x0.copy(), np.zeros(dim), np.zeros(dim), sigma0, 0.05
    fit = lambda X: -np.sum((X - 1.0) ** 2, axis=1)  # noqa: E731
    for t in (1, 2):
        e = rng.standard_normal((n // 2, dim))
        eps = np.vstack([e, -e])
        X_ref = mean + sigma * eps
        X, state = s.ask(state)
        np.testing.assert_allclose(X, X_ref, rtol=0, atol=1e-12)
        assert np.allclose(X[: n // 2] + X[n // 2 :], 2 * mean)  # antithetic pairs
        f = fit(X)
        state = s.tell(state, X, f)
        # reference update, written out per coordinate
        u = brute_centred_ranks(-f)  # ranks of cost
        for k in range(dim):
            g = sum(u[i] * eps[i, k] for i in range(n)) / (n * sigma) + 0.01 * mean[k]
            m[k] = 0.8 * m[k] + 0.2 * g
            v[k] = 0.9 * v[k] + 0.1 * g * g
            # textbook Adam (Kingma & Ba, Alg. 1) with bias-corrected moments; OpenAI-ES
            # adds its epsilon to sqrt(v) before bias correction, i.e. eps/sqrt(1 - beta2^t) here
            mhat, vhat = m[k] / (1 - 0.8**t), v[k] / (1 - 0.9**t)
            mean[k] -= lr * mhat / (np.sqrt(vhat) + 1e-6 / np.sqrt(1 - 0.9**t))
        sigma, lr = max(0.06, sigma * 0.5), lr * 0.9
        np.testing.assert_allclose(s.mean(state), mean, rtol=0, atol=1e-12)
        assert s.step_size(state) == sigma and np.isclose(state.lr, lr)
    assert s.step_size(state) == 0.06  # hit the floor: 0.2 -> 0.1 -> max(0.06, 0.05)
    # the update goes uphill in fitness: closer to the optimum at 1.0 (3.74 -> 3.25)
    assert np.sum((s.mean(state) - 1.0) ** 2) < np.sum((x0 - 1.0) ** 2) - 0.3


# --------------------------------------------------------------------------
# Fitness convention and shaping (pure functions)
# --------------------------------------------------------------------------


finite = st.floats(-1e6, 1e6, allow_nan=False)
any_float = st.one_of(finite, st.sampled_from([np.nan, np.inf, -np.inf]))


@settings(max_examples=150, deadline=None)
@given(st.lists(any_float, min_size=1, max_size=12))
def test_fitness_to_cost_negates_and_puts_nonfinite_last(values):
    f = np.array(values)
    cost = fitness_to_cost(f)
    ok = np.isfinite(f)
    assert cost.shape == f.shape and np.isfinite(cost).all()
    assert np.array_equal(cost[ok], -f[ok])
    if (~ok).any():
        assert np.all(cost[~ok] == cost[~ok][0])
        if ok.any():
            assert np.all(cost[~ok][0] > cost[ok])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(-3, 3).map(float) | finite, min_size=2, max_size=12))
def test_centred_ranks_match_brute_force(values):
    r = centred_ranks(values)
    np.testing.assert_allclose(r, brute_centred_ranks(values), rtol=0, atol=1e-12)
    assert r.min() >= -0.5 and r.max() <= 0.5 and abs(r.sum()) < 1e-9


# --------------------------------------------------------------------------
# Errors: options, arguments, checkpoints
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_unknown_option_names_it_and_lists_valid_ones(name):
    with pytest.raises(SpecError) as e:
        make(name, options={"learning_rat": 0.1})
    msg = str(e.value)
    assert "'learning_rat'" in msg and name in msg
    cls = STRATEGIES.get(name)
    assert cls.Options.model_fields and all(k in msg for k in cls.Options.model_fields)


@pytest.mark.parametrize(
    "name, options, fragment",
    [
        ("openai_es", {"learning_rate": -1.0}, "greater than 0"),
        ("openai_es", {"beta1": 1.0}, "less than 1"),
        ("openai_es", {"sigma_decay": "0.9"}, "options.sigma_decay"),
        ("openai_es", {"weight_decay": float("nan")}, "options.weight_decay"),
        ("cma_es", {"CMA_active": 1}, "valid boolean"),
        ("sep_cma_es", {"CMA_cmean": 0.0}, "greater than 0"),
    ],
)
def test_bad_option_values_are_clear_spec_errors(name, options, fragment):
    with pytest.raises(SpecError) as e:
        make(name, options=options)
    assert fragment in str(e.value)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(x0=np.zeros(3)), "x0 must have shape (10,)"),
        (dict(x0=np.full(DIM, np.nan)), "x0 must be finite"),
        (dict(sigma0=0.0), "sigma0"),
        (dict(popsize=1), "popsize"),
        (dict(seed=-1), "seed"),
        (dict(bounds=(np.ones(DIM), np.zeros(DIM))), "lower bound"),
        (dict(bounds=(np.full(DIM, 0.5), np.ones(DIM))), "x0 must lie inside the bounds"),
    ],
)
def test_bad_arguments_are_clear_spec_errors(kwargs, fragment):
    for name in ALL:
        with pytest.raises(SpecError) as e:
            make(name, **kwargs)
        assert fragment in str(e.value)


def test_openai_es_needs_even_popsize_and_unknown_strategy_lists_names():
    with pytest.raises(SpecError, match="even"):
        make("openai_es", popsize=7)
    with pytest.raises(SpecError) as e:
        make_strategy("cmaes", dim=2, x0=[0, 0], sigma0=1.0, popsize=4, seed=0)
    assert all(n in str(e.value) for n in ALL)


@pytest.mark.parametrize("name", ALL)
def test_checkpoint_format_is_versioned_strict_json_and_checked(name, tmp_path):
    s = make(name, popsize=8)
    state, _ = run(s, s.init(), 2)
    save_state(tmp_path, state)
    text = (tmp_path / "strategy.json").read_text()

    def no_constants(c):
        raise AssertionError(f"non-standard JSON constant {c}")

    data = json.loads(text, parse_constant=no_constants)
    assert data["format"] == FORMAT and data["format_version"] == FORMAT_VERSION
    assert data["strategy"] == name

    # another format version is refused
    (tmp_path / "strategy.json").write_text(json.dumps(dict(data, format_version=FORMAT_VERSION + 1)))
    with pytest.raises(CheckpointError, match="format version"):
        load_state(tmp_path)
    (tmp_path / "strategy.json").write_text(text)

    # a strategy configured differently is refused, naming what differs
    with pytest.raises(CheckpointError, match="differs in: seed"):
        load_state(tmp_path, strategy=make(name, popsize=8, seed=2))
    other = "openai_es" if name != "openai_es" else "cma_es"
    with pytest.raises(CheckpointError, match=f"not '{other}'"):
        load_state(tmp_path, strategy=make(other, popsize=8))

    # an NPZ from another save (a torn checkpoint) is refused
    state3, _ = run(s, state, 1)
    save_state(tmp_path / "later", state3)
    (tmp_path / "strategy.npz").write_bytes((tmp_path / "later" / "strategy.npz").read_bytes())
    with pytest.raises(CheckpointError, match="checksum"):
        load_state(tmp_path)
    with pytest.raises(CheckpointError, match="missing"):
        load_state(tmp_path / "nowhere")
    assert issubclass(CheckpointError, BlursimError)
