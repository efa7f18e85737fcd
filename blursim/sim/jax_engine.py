r"""The JAX engine: the reference BLUR step jitted, scanned over the unroll and differentiated.

:mod:`blursim.sim.reference` writes one training step (DESIGN §2; paper
eq. 5-8, Sec. 3.3-3.4, App. C.6) as pure functions over whatever array
module its inputs come from. This module runs *that same code* on
``jax.numpy``; there is no second step here:

- :func:`unroll` -- ``T`` steps as one ``jax.lax.scan`` whose body is the
  reference step under ``jax.checkpoint`` (reverse mode keeps one synapse
  state per step and recomputes a step's internals when it needs them);
- :class:`JaxSimulator` -- the public API of :class:`~blursim.sim.Simulator`
  that the call sites use (``prepare``, ``init_synapses``, ``train_step``,
  ``forward``, ``evaluate``, ``is_finite``) plus :meth:`JaxSimulator.train_steps`
  (a whole unroll in one call). ``blursim.sim.make_simulator(program, "jax")``
  builds it; ``--backend jax`` on the command line and
  ``execution.backend: "jax"`` in an experiment choose it;
- the meta-gradient of the paper's meta-loss (Sec. 3.3) lives in
  :mod:`blursim.meta.objective`, built from :func:`unroll` and
  :func:`query_losses`.

Species ``S`` and replicas ``R`` are the leading axes of every array, as in
the reference. Initial synapses come from :func:`blursim.sim.oracle.initial_draws`,
drawn on the host from the same seed as the NumPy simulator's
(:func:`initial_state`: identical values), so the two engines start every
run from the same synapses.

Precision
---------
float32 by default, float64 on request (``dtype="float64"``). JAX computes
in 32 bits unless its 64-bit mode is on; the engine turns that mode on only
around its own float64 work (:func:`precision`, a context manager) and never
changes the process-wide setting, so importing or using blursim does not
change what a user's other JAX code computes.

Differentiability (DESIGN §4; docs/design.md)
----------------------------------------------
Where the step is not differentiable, the derivative is what JAX's rules
give for the code as written, which is also what a complex step of the
NumPy simulator gives: ``relu``, ``relu_tanh``, ``leaky_relu``, ``hard_tanh``
and ``softplus`` branch with ``where`` on the real part, so at a kink the
derivative is the branch the comparison selects (``relu'(0) = 0``);
``sign`` has derivative 0; ``|x|`` of a genome entry is ``x sign(x)``
(derivative ``sign(x)``, 0 at 0); the saturation floor
``max(|s|, 1e-12)`` takes the floor's derivative (0) below it.

Missing JAX gives :class:`~blursim.errors.BackendError` with the install
command (:func:`require_jax`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blursim.errors import BackendError, SpecError
from blursim.sim import reference as ref
from blursim.sim import step
from blursim.sim.oracle import reference_draws, step_flops
from blursim.sim.step import keeps_states

#: What installs the optional extra (README, docs).
INSTALL = 'pip install -e ".[jax]"'
#: The dtypes the engine computes in.
DTYPES = ("float32", "float64")


def require_jax():
    """The ``jax`` module, or a one-line :class:`~blursim.errors.BackendError` naming the
    install command when the optional extra is missing."""
    try:
        import jax
        import jax.numpy  # noqa: F401
    except ImportError as e:
        raise BackendError(
            f"the JAX engine (backend 'jax') needs the optional JAX extra, which is not installed "
            f"({e}); install it with: {INSTALL}") from None
    return jax


@contextmanager
def precision(dtype: str):
    """Run the body with JAX's 64-bit mode on for ``"float64"`` and off for ``"float32"``,
    restoring the caller's setting afterwards (scoped; the global flag is never changed)."""
    jax = require_jax()
    ctx = getattr(jax, "enable_x64", None)
    if ctx is None or not callable(ctx):  # older JAX: the experimental context managers
        from jax.experimental import disable_x64, enable_x64

        cm = enable_x64() if dtype == "float64" else disable_x64()
    else:
        cm = ctx(dtype == "float64")
    with cm:
        yield


def check_dtype(dtype: str | None, path: str = "dtype") -> str:
    """``dtype`` (default: ``$BLURSIM_DTYPE`` or float32) if the engine computes in it."""
    dtype = dtype or os.environ.get("BLURSIM_DTYPE", "float32")
    if dtype not in DTYPES:
        raise SpecError("the JAX engine computes in float32 or float64", value=dtype, choices=DTYPES,
                        path=path)
    return dtype


_COMPILED: OrderedDict = OrderedDict()
_MAX_COMPILED = 64


def compiled(program, name: Any, make):
    """The jitted function ``name`` of ``program``, built by ``make()`` on first use and shared by
    every engine of an equal program (same ``spec_hash``): JAX caches compilations per function
    object, so reusing it skips compiling again (e.g. a new evaluation engine per process)."""
    key = (program.spec_hash, name)
    fn = _COMPILED.get(key)
    if fn is None:
        fn = _COMPILED[key] = make()
        while len(_COMPILED) > _MAX_COMPILED:
            _COMPILED.popitem(last=False)
    else:
        _COMPILED.move_to_end(key)
    return fn


# ------------------------------------------------------------- initial synapses
def unit_draws(program, replicas: int, seed: int) -> ref.BlurState:
    """The initial synapses for ``init_scale = 1`` (:func:`blursim.sim.oracle.reference_draws`):
    float64, one species ``(1, R, ...)``, in the reference layout. Replica ``r`` depends only on
    ``seed`` and ``r`` (DESIGN §2, Randomness): every engine starts from these draws."""
    W, V = reference_draws(program, replicas, seed)
    return ref.BlurState(W, V, None)


def scale_draws(program, draws: ref.BlurState, init_scale: dict[str, np.ndarray], dtype) -> ref.BlurState:
    """``draws`` (one species) times each species' ``init_scale`` of the projection's genome
    group, computed in float64 and stored in ``dtype`` -- exactly what the NumPy simulator
    stores. ``init_scale``: ``{group: (S,)}``."""
    def scaled(a, s):
        out = np.empty((len(s),) + a.shape[1:], dtype=dtype)
        for i, f in enumerate(s):
            out[i] = a[0] * f
        return out

    W = tuple(scaled(w, init_scale[q.group]) for q, w in zip(program.projs, draws.W))
    V = tuple(None if v is None else scaled(v, init_scale[q.group]) for q, v in zip(program.projs, draws.V))
    return ref.BlurState(W, V, None)


def initial_state(program, batch, replicas: int, seed: int, dtype) -> ref.BlurState:
    """Fresh synapses of the genomes ``batch`` (a :class:`~blursim.genome.GenomeBatch`) as host
    arrays in ``dtype``, identical to :meth:`Simulator.init_synapses` for the same seed."""
    scales = {g: np.asarray(batch.arrays[g]["init_scale"], dtype=np.float64) for g in program.groups}
    return scale_draws(program, unit_draws(program, replicas, seed), scales, dtype)


def kept_states(program, state: ref.BlurState, B: int, xp) -> ref.BlurState:
    """``state`` with a neuron-state carry for every population (``reset_neurons: false``): the
    kept states where their shape fits batches of ``B``, zeros elsewhere (what the reference
    step starts from in either case), so that ``lax.scan`` sees one carry structure."""
    if not keeps_states(program):
        return ref.BlurState(tuple(state.W), tuple(state.V), None)
    S, R = state.W[0].shape[:2]
    zeros = ref.zero_neurons(program, S, R, B, state.W[0].dtype, xp)
    kept = state.a or (None,) * len(zeros)
    a = tuple(z if (z is None or k is None or tuple(k.shape) != tuple(z.shape)) else k
              for z, k in zip(zeros, kept))
    return ref.BlurState(tuple(state.W), tuple(state.V), a)


# --------------------------------------------------------------------- unrolls
def unroll(program, genome, state: ref.BlurState, xs, ys, *, remat: bool = True,
           kernels=ref.KERNELS) -> ref.BlurState:
    """``T`` reference training steps on the stacked batches ``xs (T, B, F)``, ``ys (T, B)``
    (or target vectors ``(T, B, n)``) as one ``lax.scan``; the step is wrapped in
    ``jax.checkpoint`` (``remat``) so that reverse mode stores one state per step. Traceable:
    call it inside ``jax.jit``/``jax.grad``. ``kernels``: the reference kernel set
    (:func:`blursim.sim.jax_blas.kernels_for`: XLA's products or NumPy's BLAS)."""
    jax = require_jax()
    import jax.numpy as jnp

    def body(s, xy):
        return ref.train_step(program, genome, s, xy[0], xy[1], kernels), None

    if remat:
        body = jax.checkpoint(body, prevent_cse=False)
    state = kept_states(program, state, xs.shape[1], jnp)
    out, _ = jax.lax.scan(body, state, (xs, ys))
    return out


def query_losses(program, genome, state: ref.BlurState, xq, yq, kind: str = "cross_entropy",
                 kernels=ref.KERNELS):
    """Per query batch and ``(S, R)``: ``(loss, accuracy, finite)`` of state 0 of the outputs
    after ``state`` (DESIGN §2 step 7, §4), averaged over the output populations.

    ``kind``: ``"cross_entropy"`` -- the paper's meta-loss, softmax cross-entropy of state-0
    logits (one neuron: logits ``[0, a]``) for class labels ``yq (Q, B)`` -- or ``"mse"`` for
    target vectors ``yq (Q, B, n)`` (accuracy is then NaN). ``xq (Q, B, F)``. Arrays
    ``(Q, S, R)``; ``finite``: every logit finite. Traceable (``lax.map`` over the batches).
    ``kernels`` as in :func:`unroll`.
    """
    jax = require_jax()
    import jax.numpy as jnp

    from blursim.sim.metrics import logits_of, predicted_class, softmax_cross_entropy

    def one(xy):
        x, y = xy
        losses, accs, fin = [], [], []
        for out in ref.evaluate(program, genome, state, x, kernels):
            fin.append(jnp.isfinite(out).all(axis=(-1, -2)))
            if kind == "mse":
                losses.append(((out - y) ** 2).mean(axis=(-1, -2)))
                accs.append(jnp.full(out.shape[:2], jnp.nan, out.dtype))
            else:
                z = logits_of(out, jnp)
                losses.append(softmax_cross_entropy(z, y, jnp).mean(axis=-1))
                accs.append((predicted_class(z, jnp) == y).astype(out.dtype).mean(axis=-1))
        n = len(losses)
        return sum(losses) / n, sum(accs) / n, jnp.stack(fin).all(axis=0)

    return jax.lax.map(one, (xq, yq))


def synapses_finite(state: ref.BlurState):
    """``(S, R)``: every synapse finite (traceable)."""
    import jax.numpy as jnp

    ok = None
    for a in tuple(state.W) + tuple(v for v in state.V if v is not None):
        f = jnp.isfinite(a).reshape(a.shape[0], a.shape[1], -1).all(axis=-1)
        ok = f if ok is None else ok & f
    return ok


def check_labels(program, y) -> None:
    """Host check of labels or target vectors ``y`` (any leading axes) for every output -- the
    check the NumPy simulator makes at every step; traced labels cannot be checked."""
    y = np.asarray(y)
    flat = y.reshape(-1) if y.dtype.kind in "iu" else y.reshape(-1, y.shape[-1])
    for o in program.outputs:
        step.check_labels(program, flat, program.pops[o])


def label_array(y):
    """Labels as int32 (JAX's default integer) and target vectors as they are."""
    y = np.asarray(y)
    return y.astype(np.int32) if y.dtype.kind in "iu" else y


# ------------------------------------------------------------------ simulator
class _Info:
    """What the call sites read of a simulator's ``backend``: name, dtype, host transfers."""

    name = "jax"

    def __init__(self, dtype: str) -> None:
        self.dtype_name = dtype
        self.dtype = np.dtype(dtype).type
        jax = require_jax()
        self.device = jax.devices()[0]
        self.on_host = self.device.platform == "cpu"

    def to_numpy(self, x) -> np.ndarray:
        return np.asarray(x)

    def asarray(self, x, dtype=None):
        import jax.numpy as jnp

        with precision(self.dtype_name):
            return jnp.asarray(np.asarray(x, dtype=dtype or self.dtype))

    def synchronize(self) -> None:
        pass

    def describe(self) -> dict:
        jax = require_jax()
        return {"jax": jax.__version__, "jax_device": str(self.device), "jax_platform": self.device.platform}


@dataclass
class JaxGenes:
    """Genomes prepared for the JAX engine: ``arrays`` ``{group: {field: (S, ...)}}`` on the
    device, ``batch`` the host :class:`~blursim.genome.GenomeBatch` (for initial synapses)."""

    arrays: dict
    batch: Any

    @property
    def S(self) -> int:
        return self.batch.S


@dataclass
class JaxState:
    """Synapses (and kept neuron states) of ``S x R`` networks on the JAX engine: ``blur`` is a
    :class:`~blursim.sim.reference.BlurState` of device arrays. A training step replaces
    ``blur`` (JAX arrays are immutable); ``steps`` counts them."""

    blur: ref.BlurState
    program: Any = field(repr=False)
    steps: int = 0

    @property
    def shape_SR(self) -> tuple[int, int]:
        return int(self.blur.W[0].shape[0]), int(self.blur.W[0].shape[1])

    def copy(self) -> "JaxState":
        return JaxState(self.blur, self.program, self.steps)

    def to_simulator(self):
        """The state as a NumPy :class:`~blursim.sim.SynapseState` (dense copies)."""
        return ref.to_simulator(self.blur, self.program)

    def get(self, q: int, which: str = "W"):
        """A dense copy of projection ``q``'s ``W``, ``b`` or ``V`` in the simulator's internal
        layout (:meth:`SynapseState.get`)."""
        return self.to_simulator().get(q, which)

    def forward_synapses(self, q: int, k: int | None = None, to_numpy=np.asarray) -> np.ndarray:
        """Projection ``q``'s forward synapses ``(S, R, n_pre + bias, n_post, k)`` (the first ``k``
        channels: all by default, one for a monitor of shared channels, which are all equal)."""
        return np.array(np.asarray(self.blur.W[q])[..., :k])

    def backward_synapses(self, q: int, k: int | None = None, to_numpy=np.asarray) -> np.ndarray | None:
        """Projection ``q``'s backward synapses ``(S, R, n_post, n_pre, k)``; ``None`` when tied."""
        V = self.blur.V[q]
        return None if V is None else np.array(np.asarray(V)[..., :k])


class _HostView:
    """What a :class:`~blursim.sim.Monitor` reads of a simulator: the program, the backend (dtype,
    host transfers) and the host array module its hooks assemble recordings with."""

    xp = np

    def __init__(self, sim) -> None:
        self.program, self.backend = sim.program, sim.backend


class JaxSimulator:
    """A :class:`~blursim.graph.compile.Program` on the JAX engine, with the public API of
    :class:`~blursim.sim.Simulator` that runs, evaluations and benchmarks use.

    Every rules option of the reference step runs (nothing is refused); ``sparse`` and
    ``threads`` are accepted for the common signature and change nothing (masks are dense
    multipliers; XLA picks its threads). A :class:`~blursim.sim.Monitor` records a run as on
    the NumPy simulator (:meth:`train_step`).

    ``products``: ``"xla"`` (default) -- the step's products are XLA's dots -- or ``"blas"``
    -- eq. 5-7's products go to NumPy's BLAS through a host callback with an exact
    derivative (:mod:`blursim.sim.jax_blas`; on the CPU only: elsewhere it is ``"xla"``).

    ``kernels``: the reference kernel set the step runs on (default: the product route's), e.g.
    ``blursim.sim.reference.KERNELS.replace(activate=my_activate)`` -- a primitive of your own,
    traced and jitted like the rest, as :class:`~blursim.sim.Simulator`'s ``kernels=`` on NumPy
    (``docs/rule_variants.md``). It must be a reference kernel set (pure array functions); the
    fast engine's is refused.
    """

    def __init__(self, program, dtype: str | None = None, *, sparse: str = "auto", threads: int | None = None,
                 products: str | None = None, kernels=None):
        require_jax()
        from blursim.sim.jax_blas import kernels_for, resolve_products

        self.products = resolve_products(products)
        if kernels is not None and not isinstance(kernels, ref.ReferenceKernels):
            raise SpecError("the JAX engine runs a reference kernel set: blursim.sim.reference.KERNELS or "
                            "its .replace(...), not the fast engine's", value=type(kernels).__name__, path="kernels")
        #: The kernel set the step runs on; ``None`` in the compile key for the route's own.
        self.kernels = kernels if kernels is not None else kernels_for(self.products)
        self._kernels_key = kernels
        self.program = program
        self.k = program.k
        self.rules = program.rules
        self.sparse = sparse
        self.dtype_name = check_dtype(dtype)
        self.dtype = np.dtype(self.dtype_name)
        self.backend = _Info(self.dtype_name)

    # ------------------------------------------------------------- compiled
    def jitted(self, name: str):
        """The jitted ``"step"`` ``(genome, state, x, y) -> state``, ``"steps"`` (the unroll of
        stacked batches), ``"forward"`` ``(genome, state, x) -> outputs`` or ``"finite"``; call
        them inside :func:`precision` with device arrays (:meth:`device_data`)."""
        jax = require_jax()
        prog, K = self.program, self.kernels
        make = {
            "step": lambda: lambda G, s, x, y: ref.train_step(prog, G, s, x, y, K),
            "steps": lambda: lambda G, s, xs, ys: unroll(prog, G, s, xs, ys, remat=False, kernels=K),
            "forward": lambda: lambda G, s, x: ref.evaluate(prog, G, s, x, K),
            "finite": lambda: synapses_finite,
        }[name]
        return compiled(prog, ("sim", name, self.products, self._kernels_key), lambda: jax.jit(make()))

    def _call(self, name: str, *args):
        with precision(self.dtype_name):
            return self.jitted(name)(*args)

    def device_data(self, x):
        """Inputs (or target vectors) as a device array in the engine's dtype."""
        import jax.numpy as jnp

        with precision(self.dtype_name):
            return jnp.asarray(np.asarray(x, dtype=self.dtype))

    def device_labels(self, y):
        """Labels (checked against every output) or target vectors as a device array."""
        import jax.numpy as jnp

        check_labels(self.program, y)
        with precision(self.dtype_name):
            y = label_array(y)
            return jnp.asarray(y.astype(self.dtype) if y.dtype.kind == "f" else y)

    # -------------------------------------------------------------- genomes
    def prepare(self, genomes) -> JaxGenes:
        """Genome documents or a :class:`~blursim.genome.GenomeBatch` -> device arrays."""
        import jax.numpy as jnp

        from blursim.genome.arrays import GenomeBatch, stack_genomes

        if not isinstance(genomes, GenomeBatch) or genomes.k != self.k or any(
                g not in genomes.arrays for g in self.program.groups):
            genomes = stack_genomes(genomes if not isinstance(genomes, GenomeBatch) else [genomes.species(0)],
                                    k=self.k, groups=self.program.groups)
        with precision(self.dtype_name):
            arrays = {g: {f: jnp.asarray(np.asarray(v, dtype=self.dtype)) for f, v in genomes.arrays[g].items()}
                      for g in self.program.groups}
        return JaxGenes(arrays, genomes)

    def init_synapses(self, genes: JaxGenes, replicas: int = 1, seed: int = 0) -> JaxState:
        """Fresh synapses, identical to the NumPy simulator's for the same seed."""
        import jax.numpy as jnp

        host = initial_state(self.program, genes.batch, replicas, seed, self.dtype)
        with precision(self.dtype_name):
            blur = ref.BlurState(tuple(jnp.asarray(w) for w in host.W),
                                 tuple(None if v is None else jnp.asarray(v) for v in host.V), None)
        return JaxState(blur, self.program)

    # ---------------------------------------------------------------- steps
    def train_step(self, st: JaxState, genes: JaxGenes, x, y, monitor=None) -> JaxState:
        """One BLUR training step (DESIGN §2) on ``(x, y)``; replaces ``st.blur``.

        ``monitor``: a :class:`~blursim.sim.monitor.Monitor`; at a step it records, the jitted
        step also returns the states after each phase and the Hebbian terms it was asked for
        (:func:`blursim.sim.reference.train_step` with ``record``), handed to the monitor's hooks
        on the host -- the same variables, in the same layouts, as the NumPy simulator records."""
        import jax.numpy as jnp

        x = self.device_data(x)
        with precision(self.dtype_name):  # kept states as one structure from the first step on (one trace)
            blur = kept_states(self.program, st.blur, x.shape[0], jnp)
        host = _HostView(self)
        tap = None if monitor is None else monitor.begin_step(host, st, int(x.shape[0]))
        if tap is None:
            st.blur = self._call("step", genes.arrays, blur, x, self.device_labels(y))
        else:
            phases = frozenset(tap.phases) | (frozenset({"forward"}) if tap.outputs else frozenset())
            heb = frozenset(tap.heb)
            with precision(self.dtype_name):
                st.blur, rec = self.recording_step(phases, heb)(genes.arrays, blur, x, self.device_labels(y))
            self._feed(tap, rec)
        st.steps += 1
        if tap is not None:
            monitor.end_step(host, st, y, tap)
        return st

    def recording_step(self, phases: frozenset, hebbian: frozenset):
        """The jitted step that also returns what a monitor records: the states after ``phases``
        and the Hebbian terms of ``hebbian`` (``(q, which)`` pairs)."""
        jax = require_jax()
        prog, K = self.program, self.kernels
        record = {"phases": phases, "hebbian": hebbian}
        return compiled(prog, ("sim", "record", phases, hebbian, self.products, self._kernels_key), lambda: jax.jit(
            lambda G, s, x, y: ref.train_step(prog, G, s, x, y, K, record=record)))

    def _feed(self, tap, rec) -> None:
        """Hand a recording step's arrays to a monitor's hooks in the simulator's layouts:
        states ``(S, R, k, B, n)``, ``H`` ``(S, R, kw, n_src, n_dst)`` and its bias row."""
        for phase in ("forward", "feedback", "backward"):
            if phase in rec:
                states = rec[phase]
                tap.states(phase, 0, 0, lambda p, states=states: np.moveaxis(np.asarray(states[p]), -1, 2))
        kw = self.program.kw
        for q, which in tap.heb:
            H = np.moveaxis(np.asarray(rec[f"H:{q}:{which}"])[..., :kw], -1, 2)
            if which == "W" and self.program.projs[q].bias:
                tap.hebbian(q, which, 0, 0, H[:, :, :, :-1], H[:, :, :, -1])
            else:
                tap.hebbian(q, which, 0, 0, H, None)

    def train_steps(self, st: JaxState, genes: JaxGenes, batches) -> JaxState:
        """The training steps of ``batches`` (a list of ``(x, y)`` of one batch size) as one
        ``lax.scan`` (:func:`unroll`): what :meth:`train_step` in a loop computes."""
        if not batches:
            return st
        xs = np.stack([np.asarray(x) for x, _ in batches])
        ys = np.stack([np.asarray(y) for _, y in batches])
        st.blur = self._call("steps", genes.arrays, st.blur, self.device_data(xs), self.device_labels(ys))
        st.steps += len(batches)
        return st

    def forward(self, st: JaxState, genes: JaxGenes, x) -> list:
        """Forward pass only (neurons reset); state 0 of every output, ``(S, R, B, n_out)``."""
        return list(self._call("forward", genes.arrays, st.blur, self.device_data(x)))

    def evaluate(self, st: JaxState, genes: JaxGenes, x, y) -> dict[str, np.ndarray]:
        """The metrics of :meth:`Simulator.evaluate` (the same host code on the outputs)."""
        from blursim.sim.metrics import task_metrics
        from blursim.sim.targets import check_targets

        for o in self.program.outputs:
            check_targets(y, self.program.pops[o].size, self.program.pops[o].name)
        return task_metrics([np.asarray(o) for o in self.forward(st, genes, x)], np.asarray(y))

    def is_finite(self, st: JaxState) -> np.ndarray:
        """``(S, R)`` bool: all synapses finite."""
        return np.asarray(self._call("finite", st.blur))

    # ------------------------------------------------------------ accounting
    def flops(self, B: int, train: bool = True) -> dict[str, float]:
        """The minimal FLOPs of :meth:`Simulator.flops` with dense storage (:func:`blursim.sim.oracle.step_flops`)."""
        return step_flops(self.program, B, train)

    def synapse_bytes(self, st: JaxState) -> int:
        """Bytes of the stored synapses (all ``k`` channels, as the reference layout keeps them)."""
        return int(sum(a.nbytes for a in tuple(st.blur.W) + tuple(st.blur.V) if a is not None))
