"""The meta-loss and its exact gradient on your own arrays (paper Sec. 3.3, App. C.1).

:class:`~blursim.meta.objective.MetaObjective` differentiates an *experiment* (its tasks, seeds
and protocol). :class:`MetaLoss` is the same function with nothing around it: a network, a
genome vector ``x`` and plain arrays --

- ``xs (T, B, F)``, ``ys (T, B)``: the ``T`` training batches of the unroll;
- ``xq (Q, Bq, F)``, ``yq (Q, Bq)``: the query batches the loss is measured on;
- ``synapses``: the initial synapses, per projection its forward weights ``W (R, n_pre + bias,
  n_post, k)`` (bias row last; ``R`` replicas), or the pair ``(W, V)`` with the feedback weights
  ``V (R, n_post, n_pre, k)`` of a network with separate feedback synapses
  (:meth:`MetaLoss.initial_synapses` draws them as the simulator does),

so that a notebook, SciPy or any other optimizer can call it::

    from blursim.meta.loss import MetaLoss

    ml = MetaLoss("specs/toy_blur.json")                 # searched: the 8 fields of Table 1
    x = ml.vector(my_genome)                             # or ml.x0, the base genome's vector
    W0 = ml.initial_synapses(seed=0, replicas=4)
    loss, grad, metrics = ml.value_and_grad(x, xs, ys, xq, yq, W0)
    loss = ml(x, xs, ys, xq, yq, W0)                     # the value alone

The loss (the paper's meta-loss) is the softmax cross-entropy of the state-0 logits of the
outputs after ``T`` BLUR steps (DESIGN §2), averaged over replicas, query batches, query
examples and output populations; for real-valued target vectors (``kind="mse"``; ``ys``/``yq``
then ``(T, B, n)``/``(Q, Bq, n)``) the mean squared error of state 0. The gradient is exact
(reverse mode through the unrolled steps on the JAX engine, :mod:`blursim.sim.jax_engine`), with
respect to the genome entries of ``layout`` (``fields`` of ``groups``, flattened row-major in
:class:`~blursim.genome.GenomeLayout` order); every other entry comes from ``base``. The
initial synapses and the data are inputs, not differentiated (DESIGN §4); ``init_scale``
therefore cannot be searched here (scale the synapses you pass instead).

Needs the ``jax`` extra (``pip install -e ".[jax]"``).
"""

from __future__ import annotations

import os

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blursim.errors import SpecError

#: The genome fields searched by default: the eight of the paper's Table 1.
TABLE1_FIELDS = ("f", "eta", "f_tilde", "eta_tilde", "nu", "mu", "nu_tilde", "mu_tilde")


class MetaLoss:
    """The meta-loss of one network as a function of a genome vector and arrays (see the module
    docstring).

    ``network``: a network spec (path, dict or :class:`~blursim.spec.NetworkSpec`);
    ``fields`` / ``groups``: the searched genome entries (default: the Table 1 fields of every
    genome group of the network); ``base``: the genome that supplies every other entry and
    :attr:`x0` (a :class:`~blursim.spec.GenomeSpec` or a path; default: the ``backprop``
    preset); ``kind``: ``"cross_entropy"`` (class labels) or ``"mse"`` (target vectors);
    ``dtype``: ``"float32"`` or ``"float64"``; ``engine``: the meta-gradient engine, ``"numpy"``
    (:mod:`blursim.sim.adjoint`), ``"jax"`` or ``"auto"`` (default ``$BLURSIM_META_ENGINE`` or
    ``auto``: :func:`blursim.meta.objective.resolve_engine`, sized by each call's batch and replicas).
    """

    def __init__(self, network: Any, *, fields: Sequence[str] = TABLE1_FIELDS,
                 groups: Sequence[str] | None = None, base: Any = None, kind: str = "cross_entropy",
                 dtype: str = "float32", engine: str | None = None) -> None:
        from blursim.genome import GenomeLayout, make_preset
        from blursim.graph import compile_network
        from blursim.sim import jax_engine as je
        from blursim.spec import GenomeSpec, load_genome, load_network
        from blursim.spec.genome import ALL_FIELDS

        if kind not in ("cross_entropy", "mse"):
            raise SpecError("the meta-loss is 'cross_entropy' (class labels) or 'mse' (target vectors)",
                            value=kind, path="kind", choices=("cross_entropy", "mse"))
        self.kind = kind
        self.dtype_name = je.check_dtype(dtype)
        self.dtype = np.dtype(self.dtype_name)
        self.program = compile_network(load_network(network))
        k = self.program.k
        groups = tuple(groups) if groups is not None else tuple(self.program.groups)
        for g in groups:
            if g not in self.program.groups:
                raise SpecError(f"genome group {g!r} is not used by the network", path="groups",
                                choices=tuple(self.program.groups))
        for f in fields:
            if f not in ALL_FIELDS:
                raise SpecError(f"unknown genome field {f!r}", path="fields", choices=ALL_FIELDS)
            if f == "init_scale":
                raise SpecError("init_scale only scales the initial synapses, which MetaLoss takes as "
                                "given: scale the synapses you pass instead", path="fields")
        if base is None:
            base = make_preset("backprop", k=k, groups=self.program.groups)
        elif isinstance(base, (str, Path)):
            base = load_genome(base)
        elif not isinstance(base, GenomeSpec):
            base = GenomeSpec.model_validate(base)
        self.base = base
        self.layout = GenomeLayout(k, groups, tuple(fields))
        self._batch = None  # the base genome as arrays, built on first use
        from blursim.meta.objective import resolve_engine

        #: The requested engine (``auto`` is resolved on each call, by that call's batch and replicas).
        self.engine = engine
        resolved = resolve_engine(engine, [self.program])[0]  # checks the name; "numpy" where it cannot
        self._engine = None if (engine or os.environ.get("BLURSIM_META_ENGINE") or "auto") == "auto" else resolved
        if self._engine == "jax":
            je.require_jax()

    # ------------------------------------------------------------------ genomes
    @property
    def dim(self) -> int:
        """Length of the genome vector."""
        return self.layout.size

    @property
    def x0(self) -> np.ndarray:
        """The base genome's vector."""
        return self.layout.to_vector(self.base)

    def labels(self) -> list[str]:
        """One name per vector entry, e.g. ``default.nu[0,1]``."""
        return self.layout.labels()

    def vector(self, genome: Any) -> np.ndarray:
        """The vector of a genome (GenomeSpec or path)."""
        from blursim.spec import load_genome

        return self.layout.to_vector(genome if not isinstance(genome, (str, Path)) else load_genome(genome))

    def genome(self, x: np.ndarray) -> Any:
        """The genome document of vector ``x`` (every other entry from ``base``)."""
        return self.layout.from_vector(self._x(x), self.base)

    def initial_synapses(self, seed: int, replicas: int = 1) -> list[np.ndarray]:
        """Fresh synapses as the simulator draws them for ``seed`` (times the base genome's
        ``init_scale``), float64: per projection ``W`` or ``(W, V)`` (see the module docstring)."""
        from blursim.sim import jax_engine as je

        scales = {g: np.asarray(self._base_batch().arrays[g]["init_scale"], dtype=np.float64)
                  for g in self.program.groups}
        st = je.scale_draws(self.program, je.unit_draws(self.program, replicas, seed), scales, np.float64)
        if any(v is not None for v in st.V):
            return [(w[0], v[0]) if v is not None else w[0] for w, v in zip(st.W, st.V)]
        return [w[0] for w in st.W]

    # --------------------------------------------------------------------- loss
    def __call__(self, x, xs, ys, xq, yq, synapses) -> float:
        """The meta-loss alone."""
        return self.value(x, xs, ys, xq, yq, synapses)[0]

    def value(self, x, xs, ys, xq, yq, synapses) -> tuple[float, dict]:
        """``(loss, metrics)``; metrics as :meth:`value_and_grad`."""
        out = self._run(x, xs, ys, xq, yq, synapses, grad=False)
        return out[0], out[2]

    def value_and_grad(self, x, xs, ys, xq, yq, synapses) -> tuple[float, np.ndarray, dict]:
        """``(loss, d loss / d x (dim,) float64, metrics)``. metrics: ``accuracy`` of the query
        predictions (NaN for target vectors) and ``finite`` (False when the unroll diverged;
        the loss is then NaN or infinite)."""
        return self._run(x, xs, ys, xq, yq, synapses, grad=True)

    # ---------------------------------------------------------------- internals
    def _x(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.dim,):
            raise SpecError(f"expected a genome vector of {self.dim} values (MetaLoss.layout)",
                            value=x.shape, path="x")
        return x

    def _base_batch(self):
        if self._batch is None:
            from blursim.genome import stack_genomes

            self._batch = stack_genomes(self.base, k=self.program.k, groups=self.program.groups)
        return self._batch

    def _state(self, synapses) -> Any:
        """``synapses`` (per projection ``W`` or ``(W, V)``, a replica axis in front) as the
        engine's one-species state in ``dtype``."""
        from blursim.sim import reference as ref

        projs = self.program.projs
        if len(synapses) != len(projs):
            raise SpecError(f"expected initial synapses for {len(projs)} projection(s)", value=len(synapses),
                            path="synapses")
        W, V = [], []
        for i, (s, q) in enumerate(zip(synapses, projs)):
            w, v = s if isinstance(s, tuple) else (s, None)
            w = np.asarray(w, dtype=self.dtype)
            want = (q.n_pre + int(bool(q.bias)), q.n_post, self.program.k)
            if w.ndim != 4 or w.shape[1:] != want:
                raise SpecError(f"the synapses of projection {i} must have shape (replicas, {want[0]}, "
                                f"{want[1]}, {want[2]})", value=w.shape, path=f"synapses[{i}]")
            W.append(w[None])
            V.append(None if v is None else np.asarray(v, dtype=self.dtype)[None])
        if len({w.shape[1] for w in W}) != 1:
            raise SpecError("every projection's synapses need the same number of replicas", path="synapses")
        return ref.BlurState(tuple(W), tuple(V), None)

    def _run(self, x, xs, ys, xq, yq, synapses, grad: bool):
        from blursim.sim import jax_engine as je

        x = self._x(x)
        xs, xq = np.asarray(xs), np.asarray(xq)
        if xs.ndim != 3 or xq.ndim != 3:
            raise SpecError("xs and xq are stacked batches (T, B, features) and (Q, B, features)",
                            value=(xs.shape, xq.shape), path="xs")
        je.check_labels(self.program, ys)
        je.check_labels(self.program, yq)
        engine = self._engine
        if engine is None:  # auto: sized by this batch and these replicas
            from blursim.meta.objective import resolve_engine

            R = np.asarray(synapses[0][0] if isinstance(synapses[0], tuple) else synapses[0]).shape[0]
            engine = resolve_engine("auto", [self.program], batch=int(xs.shape[1]), replicas=int(R))[0]
        if engine == "numpy":
            return self._run_numpy(x, xs, ys, xq, yq, synapses, grad)
        import jax.numpy as jnp

        from blursim.meta.objective import loss_function, to_device

        je.require_jax()
        cast = lambda a: np.asarray(a, dtype=self.dtype)  # noqa: E731
        target = cast if self.kind == "mse" else je.label_array
        base = {g: {f: cast(v) for f, v in self._base_batch().arrays[g].items()} for g in self.program.groups}
        args = (cast(x), base, self._state(synapses), None, cast(xs), target(ys), cast(xq), target(yq))
        fn = loss_function(self.program, self.layout, self.kind, grad, False)
        with je.precision(self.dtype_name):
            out = fn(*(to_device(a, jnp) for a in args))
        if grad:
            (loss, aux), g = out
            g = np.asarray(g, dtype=np.float64)
        else:
            (loss, aux), g = out, None
        acc, _, ok = (np.asarray(a) for a in aux)
        metrics = {"accuracy": float(acc), "finite": bool(ok) and bool(np.isfinite(float(loss)))}
        return float(loss), g, metrics

    def _run_numpy(self, x, xs, ys, xq, yq, synapses, grad: bool):
        """:meth:`_run` on the NumPy engine (:mod:`blursim.sim.adjoint`)."""
        from blursim.meta.objective import genome_of, layout_vector
        from blursim.sim.adjoint import meta_loss_and_grad

        base = {g: {f: np.asarray(v, dtype=np.float64) for f, v in self._base_batch().arrays[g].items()}
                for g in self.program.groups}
        genome = {g: {f: np.asarray(v)[0] for f, v in fields.items()}
                  for g, fields in genome_of(self.layout, x, base).items()}
        if self.kind == "mse":
            ys, yq = np.asarray(ys, dtype=self.dtype), np.asarray(yq, dtype=self.dtype)
        loss, grads, (acc, _, ok) = meta_loss_and_grad(
            self.program, genome, self._state(synapses), np.asarray(xs, dtype=self.dtype), ys,
            np.asarray(xq, dtype=self.dtype), yq, kind=self.kind, dtype=self.dtype, grad=grad)
        g = layout_vector(self.layout, grads) if grad else None
        metrics = {"accuracy": float(acc), "finite": bool(ok) and bool(np.isfinite(loss))}
        return float(loss), g, metrics


__all__ = ["TABLE1_FIELDS", "MetaLoss"]
