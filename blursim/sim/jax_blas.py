r"""The JAX engine's large products on the CPU's BLAS, with an exact derivative (issue 25 items 1-2).

XLA runs the reference step's products (eq. 5's forward drive, eq. 6's
backward drive, eq. 7's Hebbian outer product) as batched dots over
species, replicas and channels in the reference's channel-last layout,
which on a CPU costs it about 2x what the same products cost channel-first
(docs/benchmarks.md, "Issue 25 targets"). This module hands those products
to the OpenBLAS library NumPy loaded, through the fast engine's ``gemm`` --
from inside the jitted step:

- :func:`mm` is one product of the step, written on channel-last operands
  ``A (..., a2, a3, c)``, ``B (..., b2, b3, c)``:
  ``C[..., m, n, c] = Σ_k op(A)[m, k, c] op(B)[k, n, c]`` with ``op`` the
  identity or the transpose of the two matrix axes (``ta``, ``tb``). Every
  contraction of the reference step is one of them (:data:`CONTRACTIONS`).
  The host side copies the operands channel first (a stack of plain
  row-major matrices) and calls the fast engine's ``gemm`` (NumPy's OpenBLAS
  directly, :mod:`blursim.backend._cblas`), one per species, replica and
  channel, then copies the result back channel last;
- its derivative is a ``jax.custom_vjp`` whose backward pass is again two
  :func:`mm` (the transposed products): for ``C = op(A) op(B)``,
  ``d op(A) = dC op(B)ᵀ`` and ``d op(B) = op(A)ᵀ dC``. So reverse mode
  through ``lax.scan`` (and the unroll's ``jax.checkpoint``) stays exact: the
  products are computed in the same dtype by the same BLAS, only the order
  of the additions inside a dot differs from XLA's (float rounding);
- :class:`BlasKernels` is the reference kernel set
  (:class:`blursim.sim.reference.ReferenceKernels`) with its
  :meth:`~blursim.sim.reference.ReferenceKernels.contract` routed to
  :func:`mm`; every other primitive (mixing, activations, gates, Oja,
  saturation) stays in XLA. ``JaxSimulator(program, products="blas")`` and
  ``MetaObjective(..., products="blas")`` use it, and so does every JAX engine and gradient
  meta-training run of a process with ``BLURSIM_JAX_PRODUCTS=blas`` in its environment.

Limits: :func:`mm` has a reverse-mode derivative only (``jax.custom_vjp``):
``jax.jvp``/``jax.jacfwd`` through it are refused by JAX. It is a host
callback, so on a GPU it would copy every operand to the host and back: the
engine uses XLA's products there (:func:`resolve_products`). Under
``jax.vmap`` the callback receives the mapped axis as a leading axis
(``vmap_method="expand_dims"``), which the ``gemm`` broadcasts. With the
genomes sharded over several devices (:meth:`MetaObjective.value_and_grad_many
<blursim.meta.objective.MetaObjective.value_and_grad_many>`) the results are
those of one device (checked on 2 forced host devices: <= 3e-16 apart; with
``jax.pure_callback`` XLA gathered every callback's operands on device 0).

The host callback is the module's own primitive (:func:`_primitive`) lowered
straight to XLA's host callback through JAX's internal
``emit_python_callback``, since ``jax.pure_callback`` costs more than the
products (it puts every operand through ``jax.device_put``); without that
internal, or with ``BLURSIM_JAX_BLAS_CALLBACK=pure``, ``jax.pure_callback``.

Measured (docs/benchmarks.md, "JAX products on the CPU's BLAS"): exact, but
slower than XLA's products on the 2-vCPU CPU in every ratio of issue 25 --
with ``jax.pure_callback`` (0.1-0.4 ms fixed cost per product) and with the
primitive (27 us): the copies to and from the channel-last layout, one BLAS
thread, and XLA's work around the products cost more than XLA's dots; XLA
stays the default.
"""

from __future__ import annotations

import os
from functools import partial

import numpy as np

from blursim.errors import SpecError
from blursim.sim.reference import ReferenceKernels

#: The engines' product routes: XLA's own dots, or NumPy's BLAS through a host callback.
PRODUCTS = ("xla", "blas")

#: ``einsum`` spec of the reference step -> ``(first operand, ta, tb)`` of :func:`mm` (``"ab"``: the
#: spec's operands in order; ``"ba"``: swapped). Channel-last, species and replicas leading.
CONTRACTIONS = {
    "srijc,srbic->srbjc": ("ba", False, False),  # eq. 5:  z = (ν ā) W            (B, n_j)
    "srijc,srbjc->srbic": ("ba", False, True),   # eq. 6, tied:   y = (μ a) Wᵀ     (B, n_i)
    "srjic,srbjc->srbic": ("ba", False, False),  # eq. 6, untied: y = (μ a) V      (B, n_i)
    "srbic,srbjc->srijc": ("ab", True, False),   # eq. 7:  H = Pᵀ Q                (n_i, n_j)
}


def resolve_products(products: str | None, path: str = "products") -> str:
    """``products`` (default: ``$BLURSIM_JAX_PRODUCTS`` or ``"xla"``) as the route the engine takes
    on JAX's default device: ``"blas"`` only where that device is the CPU (elsewhere XLA's
    products, on the device)."""
    if not products:
        products, path = os.environ.get("BLURSIM_JAX_PRODUCTS") or "xla", "BLURSIM_JAX_PRODUCTS"
    if products not in PRODUCTS:
        raise SpecError("the JAX engine's products run on XLA or on NumPy's BLAS", value=products,
                        choices=PRODUCTS, path=path)
    if products == "blas":
        import jax

        if jax.devices()[0].platform != "cpu":
            return "xla"
    return products


_BACKENDS: dict = {}


def _backend(dtype):
    """The fast engine's NumPy backend for ``dtype`` (one per process and dtype): its ``gemm`` calls
    NumPy's OpenBLAS directly (:mod:`blursim.backend._cblas`), else ``numpy.matmul``."""
    be = _BACKENDS.get(dtype)
    if be is None:
        from blursim.backend import get_backend

        be = _BACKENDS[dtype] = get_backend("numpy", np.dtype(dtype).name)
    return be


def _host_mm(A, B, ta: bool, tb: bool, dtype):
    """The host side of :func:`mm`: operands copied channel first (row-major matrices that BLAS
    reads, transposed or not, by its ``trans`` flags), one ``gemm`` per species, replica and
    channel through the fast engine's backend (:meth:`NumpyBackend.gemm
    <blursim.backend.numpy_backend.NumpyBackend.gemm>`) with BLAS single-threaded (on the
    loaded 2-vCPU machine, OpenBLAS's own threads made a paper-es product 6-25x slower, and
    splitting a stack over them 4x slower), the result copied back channel last."""
    A, B = _unbytes(np.asarray(A), dtype), _unbytes(np.asarray(B), dtype)
    # (..., a2, a3, c) -> (..., c, a2, a3), or (..., c, a3, a2) where op transposes: BLAS reads that view
    # of the channel-first copy transposed (no second copy)
    A = np.ascontiguousarray(A.transpose(_perm(A.ndim, False))).transpose(_perm(A.ndim, ta, True))
    B = np.ascontiguousarray(B.transpose(_perm(B.ndim, False))).transpose(_perm(B.ndim, tb, True))
    lead = tuple(max(x, y) for x, y in zip(A.shape[:-2], B.shape[:-2]))  # same rank (vmap: 1 or the size)
    C = np.empty(lead + (A.shape[-2], B.shape[-1]), dtype=dtype)
    be = _backend(dtype)
    with be.blas_threads(1):
        be.gemm(A, B, C)
    C = np.ascontiguousarray(C.transpose(_perm(C.ndim, False, back=True)))
    return C.view(np.uint8).reshape(C.shape + (8,)) if _wide(dtype) else C


def _host(A, B, ta: bool, tb: bool, dtype):
    """What the callback calls: :func:`_host_mm`, looked up when called (not when traced), so that a
    profiler can wrap it in a compiled program (``tools/jax_routes.py``'s ``host_share``)."""
    return _host_mm(A, B, ta, tb, dtype)


_PERMS: dict = {}


def _perm(nd: int, t: bool, swap: bool = False, back: bool = False) -> tuple:
    """Axis orders of :func:`_host_mm` (cached): channel first (``(..., c, a2, a3)``), the last two
    swapped on top of a channel-first array (``swap``, where ``t``), or channel back last (``back``)."""
    key = (nd, t, swap, back)
    p = _PERMS.get(key)
    if p is None:
        lead = list(range(nd - 3))
        if back:
            p = lead + [nd - 2, nd - 1, nd - 3]
        elif swap:
            p = lead + ([nd - 3, nd - 1, nd - 2] if t else [nd - 3, nd - 2, nd - 1])
        else:
            p = lead + [nd - 1, nd - 3, nd - 2]
        p = _PERMS[key] = tuple(p)
    return p


def _wide(dtype) -> bool:
    """64-bit operands and results cross the callback as bytes: XLA may run the callback on a
    thread where JAX's (thread-local) 64-bit mode is off, and JAX would then cast float64
    arrays to float32 on their way in and out."""
    return np.dtype(dtype).itemsize == 8


def _unbytes(a, dtype):
    """An operand as :func:`_call` sent it: bytes ``(..., 8)`` back to ``dtype`` where it is wide."""
    return a.view(dtype)[..., 0] if _wide(dtype) else a


def _shape(A, B, ta: bool, tb: bool):
    """``(..., m, n, c)`` of ``mm(A, B, ta, tb)``, with a one-line error for operands that do not fit."""
    import jax.numpy as jnp

    m, ka = (A.shape[-2], A.shape[-3]) if ta else (A.shape[-3], A.shape[-2])
    kb, n = (B.shape[-2], B.shape[-3]) if tb else (B.shape[-3], B.shape[-2])
    if ka != kb or A.shape[-1] != B.shape[-1]:
        raise ValueError(f"mm: operands {A.shape} (ta={ta}) and {B.shape} (tb={tb}) do not contract")
    lead = jnp.broadcast_shapes(A.shape[:-3], B.shape[:-3])
    return lead + (m, n, A.shape[-1])


def _call(A, B, ta: bool, tb: bool):
    import jax
    import jax.numpy as jnp

    dtype = np.dtype(jnp.result_type(A, B))
    shape = _shape(A, B, ta, tb)
    A, B = A.astype(dtype), B.astype(dtype)
    wide = _wide(dtype)
    if wide:
        as_bytes = partial(jax.lax.bitcast_convert_type, new_dtype=jnp.uint8)  # (...) -> (..., 8)
        A, B, shape, out_dtype = as_bytes(A), as_bytes(B), shape + (8,), np.dtype(np.uint8)
    else:
        out_dtype = dtype
    prim = _primitive()
    if prim is not None:
        C = prim.bind(A, B, ta=ta, tb=tb, dtype=dtype, shape=shape, out_dtype=out_dtype)
    else:
        C = jax.pure_callback(partial(_host, ta=ta, tb=tb, dtype=dtype), jax.ShapeDtypeStruct(shape, out_dtype),
                              A, B, vmap_method="expand_dims")
    return jax.lax.bitcast_convert_type(C, dtype) if wide else C


#: ``jax.pure_callback`` hands every operand to ``jax.device_put`` before the host function sees it:
#: measured 90-240 us per call on the 2-vCPU machine, against 5 us for XLA's host callback alone.
#: So, where JAX's internal ``emit_python_callback`` is there (JAX 0.10), the product is a primitive of
#: its own lowered straight to that callback (the host function gets NumPy arrays); elsewhere, and with
#: ``BLURSIM_JAX_BLAS_CALLBACK=pure``, ``jax.pure_callback``.
_PRIM: list = []


def _primitive():
    """The product's own JAX primitive (``blursim_blas_mm``: abstract shape, ``vmap`` rule, CPU
    lowering to XLA's host callback), or ``None`` where JAX lacks the internals it uses."""
    if not _PRIM:
        _PRIM.append(None if os.environ.get("BLURSIM_JAX_BLAS_CALLBACK") == "pure" else _make_primitive())
    return _PRIM[0]


def _make_primitive():
    try:
        from jax._src import core, dispatch
        from jax._src.callback import emit_python_callback
        from jax._src.interpreters import batching, mlir
        from jax.extend.core import Primitive
    except ImportError:
        return None
    prim = Primitive("blursim_blas_mm")

    def abstract(A, B, *, ta, tb, dtype, shape, out_dtype):
        return core.ShapedArray(shape, out_dtype)

    def batch(args, dims, *, ta, tb, dtype, shape, out_dtype):
        """``vmap``: the mapped axis first on both operands (size 1 where one is not mapped), as
        ``vmap_method="expand_dims"`` does; the host side broadcasts it."""
        import jax.numpy as jnp

        unmapped = [d is None or isinstance(d, batching.NotMapped) for d in dims]
        size = next(a.shape[d] for a, d, u in zip(args, dims, unmapped) if not u)
        moved = [a[None] if u else jnp.moveaxis(a, d, 0) for a, d, u in zip(args, dims, unmapped)]
        return prim.bind(*moved, ta=ta, tb=tb, dtype=dtype, shape=(size,) + shape, out_dtype=out_dtype), 0

    def lower(ctx, A, B, *, ta, tb, dtype, shape, out_dtype):
        def host(a, b):
            return (_host(a, b, ta, tb, dtype),)

        out, _, _ = emit_python_callback(ctx, host, None, [A, B], ctx.avals_in, ctx.avals_out,
                                         has_side_effect=False, returns_token=False)
        return out

    prim.def_impl(partial(dispatch.apply_primitive, prim))  # outside jit: compiled on its own
    prim.def_abstract_eval(abstract)
    batching.primitive_batchers[prim] = batch
    mlir.register_lowering(prim, lower, platform="cpu")
    return prim


def _make_mm():
    import jax

    @partial(jax.custom_vjp, nondiff_argnums=(2, 3))
    def mm(A, B, ta, tb):
        return _call(A, B, ta, tb)

    def fwd(A, B, ta, tb):
        return _call(A, B, ta, tb), (A, B)

    def bwd(ta, tb, res, dC):
        A, B = res
        # d op(A) = dC op(B)ᵀ and d op(B) = op(A)ᵀ dC, each transposed back where op transposed
        dA = mm(B, dC, tb, True) if ta else mm(dC, B, False, not tb)
        dB = mm(dC, A, True, ta) if tb else mm(A, dC, not ta, False)
        return _sum_to(dA, A), _sum_to(dB, B)

    mm.defvjp(fwd, bwd)
    return mm


def _sum_to(d, like):
    """``d`` summed over the leading axes that broadcasting added to ``like`` (and cast to its dtype)."""
    extra = d.ndim - like.ndim
    if extra:
        d = d.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, (n, m) in enumerate(zip(like.shape, d.shape)) if n == 1 and m != 1)
    if axes:
        d = d.sum(axis=axes, keepdims=True)
    return d.astype(like.dtype)


_MM = []


def mm(A, B, ta: bool = False, tb: bool = False):
    """``C[..., m, n, c] = Σ_k op(A)[m, k, c] op(B)[k, n, c]`` on channel-last operands, computed by
    NumPy's BLAS in a host callback (:func:`_primitive`, else ``jax.pure_callback``) with a
    ``jax.custom_vjp`` whose backward pass is two more :func:`mm`; ``op`` transposes the two matrix
    axes (``-3``, ``-2``) where ``ta``/``tb``."""
    if not _MM:
        _MM.append(_make_mm())
    return _MM[0](A, B, bool(ta), bool(tb))


def contract(spec: str, a, b):
    """The reference step's ``einsum(spec, a, b)`` for a spec of :data:`CONTRACTIONS`, by :func:`mm`."""
    try:
        order, ta, tb = CONTRACTIONS[spec]
    except KeyError:
        raise ValueError(f"no BLAS route for the contraction {spec!r}; routed: {', '.join(CONTRACTIONS)}") from None
    return mm(a, b, ta, tb) if order == "ab" else mm(b, a, ta, tb)


class BlasKernels(ReferenceKernels):
    """The reference kernel set with the step's products (eq. 5, 6, 7) on NumPy's BLAS (:func:`mm`)."""

    name = "reference+blas"

    def contract(self, spec, a, b):
        return contract(spec, a, b)


#: The BLAS-product kernel set (stateless: one instance serves every step).
BLAS_KERNELS = BlasKernels()


def kernels_for(products: str):
    """The reference kernel set of a product route (:data:`PRODUCTS`)."""
    from blursim.sim.reference import KERNELS

    return BLAS_KERNELS if products == "blas" else KERNELS


__all__ = ["PRODUCTS", "CONTRACTIONS", "resolve_products", "mm", "contract", "BlasKernels", "BLAS_KERNELS",
           "kernels_for"]
