"""One NumPy Adam (blursim.baselines.optimizers.adam_step) drives both the baselines' ``adam`` and
OpenAI-ES: their trajectories equal, bit for bit, those of a plain NumPy Adam written here with
the operation order each had before they shared it (issue 20 item 6)."""

import numpy as np

from blursim.baselines.optimizers import adam
from blursim.meta.strategies import centred_ranks, make_strategy


def plain_adam(w, m, v, g, t, lr, b1, b2, eps):
    """Kingma & Ba, Algorithm 1: bias-corrected moments, epsilon outside the square root."""
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps), m, v


def plain_adam_eps_hat(w, m, v, g, t, lr, b1, b2, eps):
    """Kingma & Ba, end of Sec. 2: the step size carries the bias corrections, epsilon-hat."""
    m = b1 * m + (1.0 - b1) * g
    v = b2 * v + (1.0 - b2) * g * g
    alpha_t = lr * np.sqrt(1.0 - b2**t) / (1.0 - b1**t)
    return w - alpha_t * m / (np.sqrt(v) + eps), m, v


def test_baseline_adam_trajectory_is_the_plain_one_bit_for_bit():
    rng = np.random.default_rng(7)
    shapes = [(3, 4), (5,), (2, 2, 2)]
    params = [rng.standard_normal(s) for s in shapes]
    ref = [p.copy() for p in params]
    ms = [np.zeros(s) for s in shapes]
    vs = [np.zeros(s) for s in shapes]
    state = None
    for t in range(1, 41):
        grads = [rng.standard_normal(s) * 10.0 ** rng.integers(-4, 3) for s in shapes]
        params, state = adam(params, grads, state, 0.03, beta1=0.85, beta2=0.99, eps=1e-7)
        for i, g in enumerate(grads):
            ref[i], ms[i], vs[i] = plain_adam(ref[i], ms[i], vs[i], g, t, 0.03, 0.85, 0.99, 1e-7)
        assert state.t == t
        for a, b, ma, mb, va, vb in zip(params, ref, state.m, ms, state.v, vs):
            assert np.array_equal(a, b) and np.array_equal(ma, mb) and np.array_equal(va, vb)


def test_openai_es_trajectory_is_the_plain_eps_hat_adam_bit_for_bit():
    dim, n, sigma0 = 6, 8, 0.3
    opts = dict(learning_rate=0.05, beta1=0.8, beta2=0.95, adam_eps=1e-5, weight_decay=0.02)
    lower, upper = np.full(dim, -0.6), np.full(dim, 0.6)
    s = make_strategy("openai_es", dim=dim, x0=np.zeros(dim), sigma0=sigma0, popsize=n, seed=11,
                      bounds=(lower, upper), options=opts)
    state = s.init()
    mean, m, v = np.zeros(dim), np.zeros(dim), np.zeros(dim)
    target = np.linspace(-1.0, 1.0, dim)  # outside the bounds at both ends: the clip acts
    for t in range(1, 31):
        X, state = s.ask(state)
        eps = state.pending_eps
        f = -np.sum((X - target) ** 2, axis=1)
        state = s.tell(state, X, f)
        g = eps.T @ centred_ranks(-f) / (n * sigma0) + 0.02 * mean
        mean, m, v = plain_adam_eps_hat(mean, m, v, g, t, 0.05, 0.8, 0.95, 1e-5)
        mean = np.clip(mean, lower, upper)
        assert np.array_equal(state.mean, mean) and np.array_equal(state.m, m) and np.array_equal(state.v, v)
    assert np.any(mean == upper) and np.any(mean == lower)
