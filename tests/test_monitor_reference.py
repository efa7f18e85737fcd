"""A monitor's states and H against blursim.sim.reference, on drawn networks, rules and genomes.

The reference step (one function per equation of the paper, independent of the Simulator) is
composed phase by phase here -- inputs, forward pass (eq. 5), feedback (Sec. 3.3), backward pass
(eq. 6), Hebbian term (eq. 7) -- and a monitor on the Simulator must record the same states after
each phase and the same H.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, note, settings
from hypothesis import strategies as st

from blursim.graph import compile_network
from blursim.sim import Monitor, Simulator
from blursim.sim import reference as ref
from blursim.spec import load_network

from test_reference_step import parity_cases, rel

TOL = 1e-9


def reference_phases(prog, G, state, x, y):
    """States after the forward pass, the feedback and the backward pass, and eq. (7)'s H per
    projection (stored channels: the channel mean, or channel 0), from the reference's functions."""
    rules, xp = prog.rules, np
    W, V = state.W, state.V
    S, R = W[0].shape[:2]
    if rules.synapse_normalization == "activations":
        eps = rules.synapse_norm_eps
        W = tuple(ref.synapse_normalize(w, G[q.group]["rescale"], eps) for q, w in zip(prog.projs, W))
        V = tuple(None if v is None else ref.synapse_normalize(v, G[q.group]["rescale"], eps)
                  for q, v in zip(prog.projs, V))
    a = list(ref.zero_neurons(prog, S, R, x.shape[0], np.float64, xp))
    for i, v in ref.input_states(prog, x, S, R, np.float64).items():
        a[i] = v
    fwd = ref.forward_pass(prog, G, W, a)
    fb = ref.feedback(prog, fwd, y)
    bwd = ref.backward_pass(prog, G, W, V, fb)

    def stored(H):
        if not rules.shared_channels:
            return H
        return H[..., :1] if rules.shared_update == "channel0" else H.mean(axis=-1, keepdims=True)

    H = {}
    for qi, q in enumerate(prog.projs):
        g = G[q.group]
        pre = ref.with_bias(bwd[q.pre]) if q.bias else bwd[q.pre]
        h = ref.hebbian(ref.presynaptic(g["nu_tilde"], pre), ref.postsynaptic(g["mu_tilde"], bwd[q.post]),
                        rules.batch_reduction)
        if q.mask is not None:  # entries outside the mask are never updated
            m = np.concatenate([q.mask, np.ones((1, q.n_post), bool)]) if q.bias else q.mask
            h = h * m[..., None]
        H[f"H:{q.name}"] = stored(h)
        if state.V[qi] is not None:
            if rules.backward_synapses == "mirror":  # W's term transposed (Kolen-Pollack)
                hv = ref.hebbian(ref.postsynaptic(g["mu_tilde"], bwd[q.post]), ref.presynaptic(g["nu_tilde"], bwd[q.pre]),
                                 rules.batch_reduction)
            else:
                hv = ref.hebbian(ref.presynaptic(g["nu_tilde"], bwd[q.post]), ref.postsynaptic(g["mu_tilde"], bwd[q.pre]),
                                 rules.batch_reduction)
            if q.mask is not None:
                hv = hv * q.mask.T[..., None]
            H[f"H:V:{q.name}"] = stored(hv)
    return {"forward": fwd, "feedback": fb, "backward": bwd}, H


@settings(max_examples=30, deadline=None)
@given(case=parity_cases(reset_neurons=True, synapse_normalization=st.sampled_from(["none", "activations"])))
def test_monitor_records_what_the_reference_step_computes(case):
    prog = compile_network(load_network(case["spec"]))
    sim = Simulator(prog, dtype="float64", sparse=case["sparse"], threads=1)
    genes = sim.prepare(case["genomes"])
    st_ = sim.init_synapses(genes, replicas=case["R"], seed=case["seed"])
    G = ref.genome_arrays(case["genomes"], prog)
    state = ref.from_simulator(st_, prog)
    x, y = case["batches"][0]
    phases, H = reference_phases(prog, G, state, x, y)
    mon = Monitor(sim, "states@forward,states@backward,feedback,H")
    sim.train_step(st_, genes, x, y, monitor=mon)
    checked = 0
    for name in mon.names:
        got = mon[name].values[0]
        if name.startswith("H:"):
            want = H[name]
        else:
            pop = name.split(":")[1].split("@")[0]
            want = phases[name.split("@")[1]][next(p.index for p in prog.pops if p.name == pop)]
        if not (np.isfinite(want).all() and np.abs(want).max(initial=0) < 1e8):
            continue  # an unstable drawn rule: nothing to compare
        note(f"{name}: rel {rel(got, want):.3g}")
        assert rel(got, want) <= TOL, name
        checked += 1
    assert checked or not mon.names
