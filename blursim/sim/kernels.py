"""Kernel sets: the named primitives that the BLUR step (:mod:`blursim.sim.step`) is written over.

The orchestrator in :mod:`blursim.sim.step` holds the phase order, the
schedules and every ``rules`` branch of one step (paper eq. 5-8, Sec. 3.3-3.4,
App. C.6). It computes nothing itself: every array operation is one of the
primitives below, called on a *kernel set*. Two sets implement them:

- the reference set (:class:`blursim.sim.reference.ReferenceKernels`): each
  primitive a pure array-API function (NumPy, ``jax.numpy`` under ``jit``,
  CuPy), states ``(S, R, B, n, k)``, synapses ``(S, R, n_src, n_dst, k)``;
- the fast set (:class:`blursim.sim.fast.FastKernels`): the same primitives
  on the Simulator's channel-major storage, with the genome's scalars folded
  into BLAS ``alpha``/``beta``, block tiles, per-thread workspaces and threads.

Primitives (every one takes the kernel set's per-chunk ``run`` first)::

    synapses(run)                                  the stored synapses of the run
    normalize_synapses(run, syn, eps, copy)        App. C.6: rescale E / sqrt(sum_src E^2 + eps)
    start(run, keep)                               reset (or keep) neuron states, write inputs
    drive(run, p, syn, direction, keep, rate, buffer)
                                                   keep a_p + rate sum_q (W_q^T (nu abar_i)) [forward, eq. 5]
                                                   keep a_p + rate sum_q (V_q (mu a_j))      [backward, eq. 6]
    gate(run, p, y, first, keep, buffer)           [keep a^0..a^{first-1}, a^c y^c for c >= first]
    normalize(run, x, p, eps)                      N of Sec. 3.4 (gain/shift of p's group)
    activate(run, x, names)                        sigma per state (eq. 4's generalised phi)
    set_state(run, p, x)                           a_p <- x
    feedback(run, o, kind)                         Sec. 3.3: states 1.. of output o from the targets
    record(run, phase)                             hand the states to a monitor (no-op without one)
    run_jobs(run, jobs, fn)                        fn(job) for every synapse job (independent: may overlap)
    column_sq(run, job, syn)                       sum_src E^2 (+ bias^2)          [eq. 8 "weights"]
    activity_sq(run, job)                          rho_b Q_b^2                      [App. B "activity"]
    oja_keep(run, job, n2)                         D = f~ - |eta~| |alpha| n2       [eq. 8]
    hebbian_update(run, job, syn, keep)            E <- D E + eta~ rho sum_b P_b Q_b  (bias row too) [eq. 7]
    saturate(run, job, syn)                        E <- s tanh(E / s)               [Sec. 3.4]
    record_hebbian(run, job)                       hand the Hebbian term H to a monitor (no-op without one)

Kernels never read :class:`~blursim.spec.network.Rules`: the orchestrator
passes the equation's parameters (which gates, which batch reduction, which
channel reduction) as arguments.

Replacing one primitive (mutation tests plant a bug this way, a user tries
a faster kernel)::

    K = sim.kernels.replace(activate=my_activate)    # same signature: my_activate(run, x, names)
    sim.kernels = K                                  # or Simulator(..., kernels=K)

A rule variant written once as a reference *Hebbian kernel* (see
:data:`blursim.sim.step.HEBBIAN_KERNELS` and docs/rule_variants.md) runs on
both sets: the fast set runs the reference kernel on its own arrays where it
has no fast kernel of that name.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

#: The primitives of a kernel set, in the order the step first uses them.
PRIMITIVES = ("synapses", "normalize_synapses", "start", "drive", "gate", "normalize", "activate",
              "set_state", "feedback", "record", "run_jobs", "column_sq", "activity_sq", "oja_keep",
              "hebbian_update", "saturate", "record_hebbian")


class KernelSet:
    """Base of the kernel sets: the primitive names and :meth:`replace`."""

    name = "kernels"

    def replace(self, **primitives: Callable[..., Any]) -> "KernelSet":
        """A copy of this kernel set with the named primitives replaced by plain functions of the
        same signature (``fn(run, ...)``, without ``self``); unknown names are an error naming the
        primitives."""
        bad = sorted(set(primitives) - set(PRIMITIVES))
        if bad:
            raise ValueError(f"unknown primitive(s) {', '.join(bad)}; the primitives are: {', '.join(PRIMITIVES)}")
        new = copy.copy(self)
        for name, fn in primitives.items():
            if not callable(fn):
                raise TypeError(f"primitive {name!r} must be callable, got {type(fn).__name__}")
            setattr(new, name, fn)
        new.name = f"{self.name}+{'+'.join(sorted(primitives))}"
        return new

    def primitive(self, name: str) -> Callable[..., Any]:
        """The bound primitive ``name`` (what the orchestrator calls)."""
        if name not in PRIMITIVES:
            raise ValueError(f"unknown primitive {name!r}; the primitives are: {', '.join(PRIMITIVES)}")
        return getattr(self, name)


__all__ = ["KernelSet", "PRIMITIVES"]
