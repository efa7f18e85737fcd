"""The meta-loss of an experiment as a differentiable function of the genome vector (Sec. 3.3).

The paper meta-trains genomes mainly by gradient descent *through* the
unrolled learning process (Sec. 3.3, App. C.1): the meta-loss is the softmax
cross-entropy of the query predictions after ``T`` training steps from fresh
synapses. :class:`MetaObjective` computes it, and its exact gradient, for the
tasks of an experiment:

    L(x) = mean over tasks, replicas, query batches and output populations of
           mean over the query batch of CE(logits of state 0, label)

as a function of the flat genome vector ``x`` in the experiment's
:class:`~blursim.genome.GenomeLayout` order -- the same vector the evolution
strategies search; every other genome entry comes from the experiment's base
genome. One-neuron outputs use the logits ``[0, a]`` (as
:mod:`blursim.sim.metrics`); tasks with real-valued target vectors (fitness
metric ``mse``) use the mean squared error of state 0 instead.

Randomness follows DESIGN §2 and :mod:`blursim.meta.seeds`: a task seed fixes
the initial synapses of every replica and every training and query batch, so
``value_and_grad(x, seeds, proto)`` is a deterministic function of ``x``. The
synapse *draws* and the data are not differentiated (DESIGN §4); the genome's
``init_scale``, which multiplies the draws, is (when it is searched): its
derivative is the draws' contribution.

The unroll runs on the JAX engine (:mod:`blursim.sim.jax_engine`: the
reference step under ``lax.scan`` and ``jax.checkpoint``), one jitted
function per network, compiled again when the protocol's shapes change
(e.g. the curriculum's ``T``). :func:`simulator_meta_loss` computes the same
meta-loss with the NumPy :class:`~blursim.sim.Simulator` in any dtype,
complex128 included: the tests check the JAX gradient against its complex
step and its central differences (``tests/test_meta_gradient.py``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from blursim.errors import SpecError
from blursim.meta import jax_cache
from blursim.sim import reference as ref
from blursim.sim import jax_engine as je


def meta_loss_kind(setup) -> str:
    """The meta-loss of an experiment: ``"mse"`` when its fitness metric is the mean squared error
    (tasks with target vectors), else the paper's ``"cross_entropy"``."""
    return "mse" if setup.experiment.fitness.metric == "mse" else "cross_entropy"


def task_data(dataset, seed: int, proto) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(xs, ys, xq, yq)``: the ``proto.steps`` training batches of ``seed``
    (:func:`~blursim.sim.train_batch`) stacked ``(T, B, ...)``, and its query batches
    (:func:`~blursim.sim.query_batches`) stacked ``(Q, B_q, ...)``."""
    from blursim.sim.run import query_batches, training_batches

    batches = training_batches(dataset.x_train, dataset.y_train, proto.steps, seed, proto.batch_size)
    xq, yq = (dataset.x_train, dataset.y_train) if proto.split == "train" else (dataset.x_test, dataset.y_test)
    qb = query_batches(xq, yq, seed, proto.query_batches, proto.query_size)
    return (np.stack([b[0] for b in batches]), np.stack([b[1] for b in batches]),
            np.stack([b[0] for b in qb]), np.stack([b[1] for b in qb]))


class MetaObjective:
    """Meta-loss of an experiment's training (or validation) tasks as a function of the flat
    genome vector (GenomeLayout order), computed by the JAX engine.

    ``setup``: a :class:`~blursim.meta.experiment.Setup`; ``which``: ``"train"`` (the training
    tasks) or ``"validation"``; ``dtype``: ``"float32"`` (default) or ``"float64"``;
    ``devices``: how many of this process's JAX devices :meth:`value_and_grad_many` uses
    (default: all of them); ``products``: the unroll's products on XLA (``"xla"``, default) or
    on NumPy's BLAS with an exact custom derivative (``"blas"``, CPU only:
    :mod:`blursim.sim.jax_blas`).
    """

    def __init__(self, setup, which: str = "train", *, dtype: str = "float32", devices: int | None = None,
                 products: str | None = None, engine: str | None = None) -> None:
        if which not in ("train", "validation"):
            raise SpecError("which tasks: 'train' or 'validation'", value=which, choices=("train", "validation"))
        self.setup = setup
        self.which = which
        self.tasks = list(setup.train_tasks if which == "train" else setup.val_tasks)
        #: ``"numpy"`` (:mod:`blursim.sim.adjoint`: the reverse pass on NumPy's BLAS) or ``"jax"``
        #: (the reference step under ``jax.jit``); :attr:`engine_note` says why (:func:`resolve_engine`).
        inner = setup.experiment.inner
        self.engine, self.engine_note = resolve_engine(engine, [setup.programs[t.network] for t in self.tasks],
                                                       devices=devices, products=products,
                                                       batch=inner.batch_size, replicas=inner.replicas)
        self.products = None
        self.devices = []
        if self.engine == "jax":
            jax = je.require_jax()
            from blursim.sim.jax_blas import resolve_products

            #: The unroll's product route, ``"xla"`` or ``"blas"`` (:func:`~blursim.sim.jax_blas.resolve_products`).
            self.products = resolve_products(products)
            jax_cache.enable(jax)
            local = list(jax.local_devices())
            if devices is not None and not (isinstance(devices, int) and 1 <= devices <= len(local)):
                raise SpecError(f"devices: between 1 and the {len(local)} JAX device(s) of this process",
                                value=devices, path="devices")
            #: The JAX devices :meth:`value_and_grad_many` shares its genomes over.
            self.devices = local[:devices] if devices else local
        self.dtype_name = je.check_dtype(dtype)
        self.dtype = np.dtype(self.dtype_name)
        self.layout = setup.layout
        self.kind = meta_loss_kind(setup)
        #: The genome that supplies every entry the layout does not search (the experiment's base).
        self.base_genome = setup.base_genome
        self._draws: OrderedDict[tuple, ref.BlurState] = OrderedDict()

    @property
    def dim(self) -> int:
        return self.layout.size

    # ------------------------------------------------------------------ API
    def value_and_grad(self, x: np.ndarray, seeds: Sequence[int], proto) -> tuple[float, np.ndarray, dict]:
        """(meta-loss, d loss / d x as float64 (dim,), metrics) where metrics has 'accuracy' and
        'cross_entropy' per task (n_tasks,) and 'finite' (bool).

        ``seeds``: one task seed per task (:func:`blursim.meta.seeds.train_seeds` /
        ``validation_seeds``); ``proto``: a :class:`~blursim.meta.evaluate.Protocol`. metrics
        also has ``'loss'`` per task, ``'finite_tasks'`` per task and, for target vectors,
        ``'mse'`` per task (then ``'accuracy'`` and ``'cross_entropy'`` are NaN). The loss is
        NaN or infinite (and ``finite`` False) when a simulation diverges.
        """
        loss, grad, m = self._run(x, seeds, proto, grad=True)
        return loss, grad, m

    def value_and_grad_many(self, xs: Sequence[np.ndarray], seeds: Sequence[Sequence[int]], proto
                            ) -> list[tuple[float, np.ndarray, dict]]:
        """:meth:`value_and_grad` of every genome ``xs[p]`` with its task seeds ``seeds[p]``.

        On one device, exactly ``[value_and_grad(x, s, proto) for x, s in zip(xs, seeds)]``.
        With several (:attr:`devices`: e.g. GPUs, or CPU devices made by
        ``XLA_FLAGS=--xla_force_host_platform_device_count=N``), each task's genomes are
        stacked, padded to a multiple of the devices, and evaluated by one ``vmap`` of the loss
        and its gradient whose genome axis is sharded over the devices (``jax.sharding``): each
        device computes its share, in parallel. The numbers are those of the one-device path
        up to the order of floating-point sums inside the batched products (float
        reassociation; ``tests/test_gradient_devices.py`` states the tolerance).
        """
        xs = [self._vector(x) for x in xs]
        if len(xs) != len(seeds):
            raise SpecError(f"expected one list of task seeds per genome ({len(xs)})", value=len(seeds),
                            path="seeds")
        if self.engine == "numpy" or len(self.devices) < 2 or len(xs) < 2:
            return [self.value_and_grad(x, s, proto) for x, s in zip(xs, seeds)]
        return self._run_sharded(xs, [list(s) for s in seeds], proto)

    def value(self, x: np.ndarray, seeds: Sequence[int], proto) -> tuple[float, dict]:
        """(meta-loss, metrics) as :meth:`value_and_grad`, without the gradient."""
        loss, _, m = self._run(x, seeds, proto, grad=False)
        return loss, m

    # ------------------------------------------------------------- internals
    def _vector(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.dim,):
            raise SpecError(f"expected a genome vector of {self.dim} values (the experiment's layout)",
                            value=x.shape, path="x")
        return x

    def _unit_draws(self, network: int, seed: int, replicas: int) -> ref.BlurState:
        key = (network, int(seed), int(replicas))
        d = self._draws.get(key)
        if d is None:
            d = self._draws[key] = je.unit_draws(self.setup.programs[network], replicas, seed)
            while len(self._draws) > 8:
                self._draws.popitem(last=False)
        else:
            self._draws.move_to_end(key)
        return d

    def _run(self, x, seeds, proto, grad: bool):
        x = self._vector(x)
        seeds = list(seeds)
        if len(seeds) != len(self.tasks):
            raise SpecError(f"expected one seed per {self.which} task ({len(self.tasks)})", value=len(seeds),
                            path="seeds")
        n = len(self.tasks)
        per = {key: np.full(n, np.nan) for key in ("loss", "accuracy", "cross_entropy", "mse")}
        fin = np.zeros(n, dtype=bool)
        total_grad = np.zeros(self.dim)
        batch = self.layout.matrix_to_batch(x[None, :], self.base_genome)
        searched_scale = "init_scale" in self.layout.fields
        one = self._task_numpy if self.engine == "numpy" else self._task_jax
        for i, (task, seed) in enumerate(zip(self.tasks, seeds)):
            loss, g, acc, metric, ok = one(task, int(seed), proto, x, batch, searched_scale, grad)
            if g is not None:
                total_grad += g
            per["loss"][i] = loss
            per["accuracy"][i] = acc
            per["mse" if self.kind == "mse" else "cross_entropy"][i] = metric
            fin[i] = bool(ok) and np.isfinite(loss)
        return self._result(per, fin, total_grad)

    def _task_jax(self, task, seed: int, proto, x, batch, searched_scale: bool, grad: bool):
        """``(loss, gradient or None, accuracy, metric, finite)`` of one task on the JAX engine."""
        prog = self.setup.programs[task.network]
        data = task_data(task.dataset, seed, proto)
        draws = self._unit_draws(task.network, seed, proto.replicas)
        fn = loss_function(prog, self.layout, self.kind, grad, searched_scale, self.products)
        with je.precision(self.dtype_name):
            out = fn(*loss_arguments(prog, batch, x, data, draws, self.dtype, self.kind, searched_scale))
        g = None
        if grad:
            (loss, aux), g = out
            g = np.asarray(g, dtype=np.float64)
        else:
            loss, aux = out
        acc, metric, ok = (np.asarray(a) for a in aux)
        return float(loss), g, float(acc), float(metric), bool(ok)

    def _task_numpy(self, task, seed: int, proto, x, batch, searched_scale: bool, grad: bool):
        """:meth:`_task_jax` on :mod:`blursim.sim.adjoint` (the same loss and gradient, no JAX)."""
        from blursim.sim.adjoint import meta_loss_and_grad

        prog = self.setup.programs[task.network]
        xs, ys, xq, yq = task_data(task.dataset, seed, proto)
        je.check_labels(prog, ys)
        je.check_labels(prog, yq)
        draws = self._unit_draws(task.network, seed, proto.replicas)
        s0 = je.scale_draws(prog, draws, {g: batch.arrays[g]["init_scale"] for g in prog.groups}, self.dtype)
        genome = {g: {f: np.asarray(v[0]) for f, v in batch.arrays[g].items()} for g in prog.groups}
        if self.kind == "mse":
            ys, yq = np.asarray(ys, dtype=self.dtype), np.asarray(yq, dtype=self.dtype)
        loss, grads, (acc, metric, ok) = meta_loss_and_grad(
            prog, genome, s0, np.asarray(xs, dtype=self.dtype), ys, np.asarray(xq, dtype=self.dtype), yq,
            kind=self.kind, dtype=self.dtype, draws=draws if searched_scale else None, grad=grad)
        return float(loss), (layout_vector(self.layout, grads) if grad else None), float(acc), float(metric), bool(ok)

    def _result(self, per: dict, fin: np.ndarray, total_grad: np.ndarray) -> tuple[float, np.ndarray, dict]:
        """``(loss, gradient, metrics)`` of one genome from its per-task numbers."""
        n = len(self.tasks)
        loss = float(np.mean(per["loss"])) if n else float("nan")
        metrics = {"accuracy": per["accuracy"], "cross_entropy": per["cross_entropy"], "loss": per["loss"],
                   "finite": bool(fin.all()), "finite_tasks": fin}
        if self.kind == "mse":
            metrics["mse"] = per["mse"]
        return loss, (total_grad / n if n else total_grad), metrics

    def _run_sharded(self, xs: list[np.ndarray], seeds: list[list[int]], proto) -> list[tuple[float, np.ndarray, dict]]:
        """:meth:`value_and_grad_many` on several devices (see there)."""
        jax = je.require_jax()
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        P, n = len(xs), len(self.tasks)
        if any(len(s) != n for s in seeds):
            raise SpecError(f"expected one seed per {self.which} task ({n})", path="seeds")
        n_dev = min(len(self.devices), P)
        pad = (-P) % n_dev
        sharding = NamedSharding(Mesh(np.array(self.devices[:n_dev]), ("genomes",)), PartitionSpec("genomes"))
        per = [{key: np.full(n, np.nan) for key in ("loss", "accuracy", "cross_entropy", "mse")} for _ in xs]
        fin = np.zeros((P, n), dtype=bool)
        total_grad = np.zeros((P, self.dim))
        searched_scale = "init_scale" in self.layout.fields
        for i, task in enumerate(self.tasks):
            prog = self.setup.programs[task.network]
            fn = sharded_loss_function(prog, self.layout, self.kind, searched_scale, self.products)
            with je.precision(self.dtype_name):
                args = []
                for x, s in zip(xs, seeds):
                    batch = self.layout.matrix_to_batch(x[None, :], self.base_genome)
                    data = task_data(task.dataset, int(s[i]), proto)
                    draws = self._unit_draws(task.network, s[i], proto.replicas)
                    args.append(loss_arguments(prog, batch, x, data, draws, self.dtype, self.kind, searched_scale))
                args += args[-1:] * pad
                stacked = jax.tree_util.tree_map(
                    lambda *a: jax.device_put(np.stack([np.asarray(v) for v in a]), sharding), *args)
                (loss, aux), g = fn(*stacked)
            loss, g = np.asarray(loss, dtype=np.float64), np.asarray(g, dtype=np.float64)
            acc, metric, ok = (np.asarray(a) for a in aux)
            for p in range(P):
                total_grad[p] += g[p]
                per[p]["loss"][i] = float(loss[p])
                per[p]["accuracy"][i] = float(acc[p])
                per[p]["mse" if self.kind == "mse" else "cross_entropy"][i] = float(metric[p])
                fin[p, i] = bool(ok[p]) and np.isfinite(float(loss[p]))
        return [self._result(per[p], fin[p], total_grad[p]) for p in range(P)]


#: The meta-gradient engines: the NumPy reverse pass (:mod:`blursim.sim.adjoint`), JAX, or the
#: first where it applies.
ENGINES = ("auto", "numpy", "jax")


def resolve_engine(engine: str | None, programs, *, devices: int | None = None,
                   products: str | None = None, batch: int | None = None, replicas: int = 1) -> tuple[str, str]:
    """``(engine, note)``: which engine computes the meta-gradient, and why.

    ``engine``: ``"numpy"``, ``"jax"`` or ``"auto"`` (default: ``$BLURSIM_META_ENGINE``, else
    ``"auto"``). ``auto`` takes the NumPy reverse pass (:mod:`blursim.sim.adjoint`, on the fast
    engine's BLAS: 2.5-3.4x faster than XLA on a CPU for paper-es-sized steps, docs/benchmarks.md)
    when it differentiates every network of the tasks, a training step's forward products
    (``batch`` examples, ``replicas``) reach :data:`~blursim.sim.adjoint.AUTO_MIN_FLOPS` (below,
    its Python overhead per primitive makes it the slower one) and JAX would run on one CPU
    device -- and JAX otherwise: on small steps, on a GPU,
    with several JAX devices to share genomes over (``devices`` > 1, or all of several), with
    the BLAS product route (``products``, or ``$BLURSIM_JAX_PRODUCTS``, ``"blas"``), or for rule variants, activations or feedback kinds the reverse pass
    has no derivative for (:func:`blursim.sim.adjoint.unsupported`). ``numpy`` where the reverse
    pass cannot is an error naming the reason.
    """
    import os

    from blursim.sim.adjoint import AUTO_MIN_FLOPS, step_flops, unsupported

    path = "engine"
    if not engine:
        engine, path = os.environ.get("BLURSIM_META_ENGINE") or "auto", "BLURSIM_META_ENGINE"
    if engine not in ENGINES:
        raise SpecError("the meta-gradient engine", value=engine, choices=ENGINES, path=path)
    reasons = [r for r in (unsupported(p) for p in programs) if r]
    if engine == "numpy":
        if reasons:
            raise SpecError(f"the NumPy meta-gradient cannot differentiate this network: {reasons[0]}; "
                            "use the JAX engine (engine='jax' or BLURSIM_META_ENGINE=jax)", value=engine, path=path)
        return "numpy", f"{path}=numpy"
    if engine == "jax":
        return "jax", f"{path}=jax"
    if reasons:
        return "jax", f"auto: JAX, since {reasons[0]}"
    if batch is not None:
        flops = max((step_flops(p, batch, replicas) for p in programs), default=0.0)
        if flops < AUTO_MIN_FLOPS:
            return "jax", f"auto: JAX, since a step's products are small ({flops / 1e6:.2g} MFLOP < {AUTO_MIN_FLOPS / 1e6:g})"
    if (products or os.environ.get("BLURSIM_JAX_PRODUCTS")) == "blas":
        return "jax", "auto: JAX, since its BLAS product route was asked for"
    try:
        import jax
    except ImportError:
        return "numpy", "auto: NumPy (JAX is not installed)"
    local = jax.local_devices()
    if local[0].platform != "cpu":
        return "jax", f"auto: JAX on {local[0].platform}"
    n = len(local) if devices is None else devices
    if n > 1:
        return "jax", f"auto: JAX, sharing genomes over {n} devices"
    return "numpy", "auto: NumPy (one CPU device)"


def loss_function(program, layout, kind: str, grad: bool, searched_scale: bool, products: str = "xla"):
    """The jitted loss of one task on ``program`` (:func:`loss_arguments` in, ``(loss, (accuracy,
    metric, finite))`` out, with ``d loss / d x`` when ``grad``), compiled once per process for
    an equal network and layout (:func:`blursim.sim.jax_engine.compiled`); ``products``: the
    unroll's product route (:mod:`blursim.sim.jax_blas`)."""
    key = ("meta", layout, kind, grad, searched_scale, products)
    return je.compiled(program, key, lambda: _compiled_loss(program, layout, kind, grad, searched_scale, products))


def loss_arguments(program, batch, x, data, draws: ref.BlurState, dtype, kind: str, searched_scale: bool) -> tuple:
    """The device arguments of :func:`loss_function` for one task (call inside
    :func:`~blursim.sim.jax_engine.precision`): the genome vector ``x``, the genome ``batch``
    (one species: every other entry), the initial synapses ``draws x init_scale`` as the NumPy
    simulator stores them (and the ``draws`` when ``init_scale`` is searched), the task's
    ``data`` (:func:`task_data`) in ``dtype``; labels checked against every output."""
    import jax.numpy as jnp

    xs, ys, xq, yq = data
    je.check_labels(program, ys)
    je.check_labels(program, yq)
    cast = lambda a: np.asarray(a, dtype=dtype)  # noqa: E731
    target = cast if kind == "mse" else je.label_array  # target vectors or labels
    s0 = je.scale_draws(program, draws, {g: batch.arrays[g]["init_scale"] for g in program.groups}, dtype)
    base = {g: {f: cast(v) for f, v in batch.arrays[g].items()} for g in program.groups}
    args = (cast(x), base, s0, draws if searched_scale else None, cast(xs), target(ys), cast(xq), target(yq))
    return tuple(to_device(a, jnp) for a in args)


def to_device(a, jnp):
    """Host arrays (and dicts/BlurStates of them) as JAX arrays; ``None`` stays."""
    if a is None:
        return None
    if isinstance(a, dict):
        return {k: to_device(v, jnp) for k, v in a.items()}
    if isinstance(a, ref.BlurState):
        return ref.BlurState(*(None if part is None else tuple(to_device(v, jnp) for v in part) for part in a))
    return jnp.asarray(a)


def layout_vector(layout, grads: dict) -> np.ndarray:
    """Per-field gradients ``{group: {field: array}}`` as a vector in ``layout``'s order
    (:func:`genome_of`'s: group, field, row-major entries; zeros for a group ``grads`` lacks)."""
    from blursim.spec.genome import field_shape

    out = np.zeros(layout.size)
    col = 0
    for g in layout.groups:
        for f in layout.fields:
            size = int(np.prod(field_shape(f, layout.k)))
            if g in grads:
                out[col: col + size] = np.asarray(grads[g][f], dtype=np.float64).reshape(-1)
            col += size
    return out


def genome_of(layout, x, base: dict) -> dict:
    """The genome arrays ``{group: {field: (1, ...)}}`` of ``base`` with the fields of ``layout``
    taken from the (traced) vector ``x`` (layout order: group, field, row-major entries)."""
    from blursim.spec.genome import field_shape

    G = {g: dict(f) for g, f in base.items()}
    col = 0
    for g in layout.groups:
        for f in layout.fields:
            shape = field_shape(f, layout.k)
            n = int(np.prod(shape))
            if g in G:
                G[g][f] = x[col: col + n].reshape((1, *shape))
            col += n
    return G


def sharded_loss_function(program, layout, kind: str, searched_scale: bool, products: str = "xla"):
    """:func:`loss_function` with its gradient, over a leading genome axis of every argument
    (``jax.vmap``), jitted: the arguments' sharding over devices decides where each genome
    runs. Compiled once per process for an equal network and layout, and per number of
    genomes and devices."""
    key = ("meta-many", layout, kind, searched_scale, products)

    def make():
        jax = je.require_jax()
        loss = _loss(program, layout, kind, searched_scale, products)
        return jax.jit(jax.vmap(jax.value_and_grad(loss, has_aux=True)))

    return je.compiled(program, key, make)


def _compiled_loss(program, layout, kind: str, grad: bool, searched_scale: bool, products: str = "xla"):
    """The jitted ``(x, base, s0, draws, xs, ys, xq, yq) -> (loss, (accuracy, metric, finite))``
    of one task on ``program`` (with its gradient in ``x`` when ``grad``)."""
    jax = je.require_jax()
    loss_fn = _loss(program, layout, kind, searched_scale, products)
    if grad:
        return jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    return jax.jit(loss_fn)


def _loss(program, layout, kind: str, searched_scale: bool, products: str = "xla"):
    """The meta-loss of one task on ``program`` as a traceable function of
    ``(x, base, s0, draws, xs, ys, xq, yq)``, returning ``(loss, (accuracy, metric, finite))``."""
    jax = je.require_jax()
    import jax.numpy as jnp

    from blursim.sim.jax_blas import kernels_for

    K = kernels_for(products)

    def loss_fn(x, base, s0, draws, xs, ys, xq, yq):
        G = genome_of(layout, x, base)
        if searched_scale:  # W0 = draws x init_scale: the value as stored, the derivative d(scale) x draws
            def moved(w0, d, q):
                s = G[q.group]["init_scale"]
                return w0 + d * (s - jax.lax.stop_gradient(s)).reshape((1,) * (w0.ndim))

            s0 = ref.BlurState(
                tuple(moved(w, d, q) for w, d, q in zip(s0.W, draws.W, program.projs)),
                tuple(None if v is None else moved(v, d, q) for v, d, q in zip(s0.V, draws.V, program.projs)),
                None)
        s = je.unroll(program, G, s0, xs, ys, kernels=K)
        losses, accs, ok = je.query_losses(program, G, s, xq, yq, kind, kernels=K)
        ok = ok.all() & je.synapses_finite(s).all()
        loss = jnp.mean(losses)
        return loss, (jnp.mean(accs), loss, ok)

    return loss_fn


# ------------------------------------------------------------ NumPy reference
def simulator_meta_loss(program, genomes, dataset, seed: int, proto, *, kind: str = "cross_entropy",
                        dtype: str = "float64") -> np.ndarray:
    """The same meta-loss computed by the NumPy :class:`~blursim.sim.Simulator` for the
    genomes ``genomes`` (a :class:`~blursim.genome.GenomeBatch`; complex entries with
    ``dtype="complex128"``): ``(S,)``, the mean over replicas, query batches and outputs of
    the per-batch mean cross-entropy (or squared error). Complex-step safe: with one genome
    entry moved by ``i h``, ``imag(loss) / h`` is its derivative to rounding."""
    from blursim.sim.metrics import logits_of, softmax_cross_entropy
    from blursim.sim.run import query_batches, train_unroll
    from blursim.sim.simulator import Simulator

    sim = Simulator(program, backend="numpy", dtype=dtype, sparse="masked")
    genes = sim.prepare(genomes)
    st = sim.init_synapses(genes, replicas=proto.replicas, seed=seed)
    train_unroll(sim, st, genes, dataset.x_train, dataset.y_train, proto.steps, seed, proto.batch_size)
    xq, yq = (dataset.x_train, dataset.y_train) if proto.split == "train" else (dataset.x_test, dataset.y_test)
    total = 0
    qb = query_batches(xq, yq, seed, proto.query_batches, proto.query_size)
    for xb, yb in qb:
        outs = sim.forward(st, genes, xb)
        if kind == "mse":
            per = [((o - yb) ** 2).mean(axis=(-1, -2)) for o in outs]
        else:
            per = [softmax_cross_entropy(logits_of(o), yb).mean(axis=-1) for o in outs]
        total = total + sum(per) / len(per)
    return (total / len(qb)).mean(axis=1)
