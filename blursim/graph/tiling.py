"""Block tiling of a connectivity mask: which synapses a block-sparse operator stores.

A mask ``M`` (``n_src x n_dst``; for a forward synapse ``src`` = pre and
``dst`` = post, for a backward synapse the transpose) is cut into ``nD``
destination blocks of ``bd`` consecutive neurons. Destination block ``d``
stores a dense ``K x bd`` tile: ``K`` source rows ``src_index[d]`` (the rows
that connect into the block, padded to a common ``K``) times the block's
``bd`` columns, with ``mask[d]`` marking which of its entries are synapses.
Blocks with no connection are stored with an all-false mask only to keep
one batched shape. So all tiles have the same shape, and forward, backward
and Hebbian products of a projection are each one batched matrix product
over tiles (a block-ELL layout).

How the ``K`` source rows of a tile are fetched decides the cost:

- ``windows``: the rows are a contiguous window ``[start, start + K)``, and
  the windows of consecutive blocks start at regular steps, so the operand
  is a strided *view* of the source states (no copy). Local receptive fields
  (``local2d``), ``one_to_one`` and banded masks tile this way;
- ``gather``: the rows are arbitrary, fetched in aligned runs of ``run``
  rows (``block_random``'s blocks are such runs) into a buffer.

:func:`tile_mask` tries destination block widths and both ways, estimates
the time of each against the masked dense product with a simple cost model
(constants measured on a 2-core AVX-512 machine, see docs/benchmarks.md),
and returns the cheapest tiling with its estimated speed-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Relative cost of one masked-dense synapse slot (products + masking passes).
_DENSE_EXTRA = 0.15
#: Extra passes of a block operator over its stored slots (scale, keep, add).
_BLOCK_EXTRA = 0.45
#: Gather cost per gathered element, in units of one slot's product FLOPs x bd.
_GATHER = 25.0
_GATHER_PER_ELEMENT = 40.0
#: Fixed cost of one batched product call, in slots.
_CALL = 5000.0


@dataclass(eq=False)
class BlockPlan:
    """A block-ELL tiling of one mask (see the module docstring)."""

    n_src: int
    n_dst: int
    bd: int
    K: int
    src_index: np.ndarray  # (nD, K) int64, a valid source row even for padding slots
    mask: np.ndarray  # (nD, K, bd) bool
    windows: tuple[tuple[int, int, int, int], ...] | None  # (d0, count, start, step)
    run: int = 1
    cost: float = 0.0
    dense_cost: float = 0.0
    _slots: tuple | None = field(default=None, repr=False)

    @property
    def nD(self) -> int:
        return self.n_dst // self.bd

    @property
    def mode(self) -> str:
        return "windows" if self.windows is not None else "gather"

    @property
    def stored(self) -> int:
        """Stored slots (tiles x tile size)."""
        return self.nD * self.K * self.bd

    @property
    def density(self) -> float:
        """Block density: stored slots / dense slots."""
        return self.stored / float(self.n_src * self.n_dst)

    @property
    def full(self) -> bool:
        """Every stored slot is a synapse (no masking needed)."""
        return bool(self.mask.all())

    @property
    def speedup(self) -> float:
        """Estimated speed-up over the masked dense product."""
        return self.dense_cost / self.cost if self.cost else 1.0

    def slots(self):
        """``(slot, row, col)``: flat slot index, source row and destination column of every synapse."""
        if self._slots is None:
            d, t, u = np.nonzero(self.mask)
            slot = (d * self.K + t) * self.bd + u
            self._slots = (slot, self.src_index[d, t], d * self.bd + u)
        return self._slots

    def describe(self) -> str:
        how = f"{len(self.windows)} window group(s)" if self.windows is not None else f"gather runs of {self.run}"
        return (f"{self.nD} tiles of {self.K}x{self.bd} ({how}), block density {self.density:.3f}, "
                f"estimated speed-up {self.speedup:.2f}x")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _gemm(rows: int, cols: int) -> float:
    """Relative time per slot of a batched product with tiles ``rows x cols``.

    Narrow tiles run slower, and widths that are not a multiple of the
    16-lane vector kernels waste the remainder (measured with OpenBLAS on
    AVX-512: 112 or 32 wide ~90 % of a dense product, 49 wide ~70 %).
    """
    pad = -(-cols // 16) * 16 / cols
    return pad * (1.0 + 16.0 / cols) + 16.0 / rows


def dense_cost(n_src: int, n_dst: int) -> float:
    """Cost-model time of the masked dense product (in slot units)."""
    return n_src * n_dst * (_gemm(n_src, n_dst) + _DENSE_EXTRA)


def _cost(stored: int, K: int, bd: int, calls: int, gather_run: int | None, full: bool) -> float:
    c = stored * (_gemm(K, bd) + _BLOCK_EXTRA + (0.0 if full else _DENSE_EXTRA))
    if gather_run is not None:
        c += stored * (_GATHER + _GATHER_PER_ELEMENT / gather_run) / bd
    return c + calls * _CALL


def _window_plan(mask: np.ndarray, bd: int):
    n_src, n_dst = mask.shape
    nD = n_dst // bd
    conn = mask.reshape(n_src, nD, bd).any(axis=2)  # (n_src, nD)
    nonempty = conn.any(axis=0)
    lo = np.where(nonempty, np.argmax(conn, axis=0), 0)
    hi = np.where(nonempty, n_src - np.argmax(conn[::-1], axis=0), 0)
    K = int(max(1, (hi - lo).max()))
    # Start of block d's window may lie anywhere in [a_lo, a_hi] and still cover [lo, hi).
    a_lo = np.where(nonempty, np.maximum(0, hi - K), 0)
    a_hi = np.where(nonempty, np.minimum(lo, n_src - K), n_src - K)
    groups = []
    d = 0
    while d < nD:
        start = int(a_hi[d])
        if d + 1 < nD and a_lo[d + 1] <= a_hi[d + 1]:
            target = start + int(lo[d + 1] - lo[d]) if nonempty[d] and nonempty[d + 1] else start
            nxt = int(np.clip(target, a_lo[d + 1], a_hi[d + 1]))
            step = max(0, nxt - start)
        else:
            step = 0
        count = 1
        while d + count < nD:
            s = start + step * count
            if a_lo[d + count] <= s <= a_hi[d + count]:
                count += 1
            else:
                break
        groups.append((d, count, start, step))
        d += count
    starts = np.empty(nD, dtype=np.int64)
    for d0, count, start, step in groups:
        starts[d0 : d0 + count] = start + step * np.arange(count)
    src_index = starts[:, None] + np.arange(K)[None, :]
    return K, src_index, tuple(groups)


def _gather_plan(mask: np.ndarray, bd: int, run: int):
    n_src, n_dst = mask.shape
    nD = n_dst // bd
    conn = mask.reshape(n_src // run, run, nD, bd).any(axis=(1, 3))  # (n_src/run, nD)
    counts = conn.sum(axis=0)
    nr = int(max(1, counts.max()))
    runs = np.zeros((nD, nr), dtype=np.int64)
    for d in range(nD):
        r = np.nonzero(conn[:, d])[0]
        runs[d, : len(r)] = r
        if len(r) < nr:  # padding: repeat a real run (masked out) to keep indices valid
            runs[d, len(r):] = r[-1] if len(r) else 0
    src_index = (runs[:, :, None] * run + np.arange(run)[None, None, :]).reshape(nD, nr * run)
    return nr * run, src_index


def _slot_mask(mask: np.ndarray, bd: int, K: int, src_index: np.ndarray, gather: bool) -> np.ndarray:
    n_src, n_dst = mask.shape
    nD = n_dst // bd
    cols = np.arange(nD)[:, None, None] * bd + np.arange(bd)[None, None, :]
    m = mask[src_index[:, :, None], cols]  # (nD, K, bd)
    if gather:  # padding slots repeat a real row: keep only its first occurrence
        first = np.zeros_like(src_index, dtype=bool)
        for d in range(nD):
            _, idx = np.unique(src_index[d], return_index=True)
            first[d, idx] = True
        m &= first[:, :, None]
    return m


def _candidates(n: int, lo: int = 8, hi: int = 512, most: int = 10) -> list[int]:
    ds = [d for d in _divisors(n) if lo <= d <= hi] or [min(n, max(d for d in _divisors(n) if d <= hi))]
    if len(ds) > most:
        idx = np.unique(np.linspace(0, len(ds) - 1, most).round().astype(int))
        ds = [ds[i] for i in idx]
    return ds


def tile_mask(mask: np.ndarray, bd: int | None = None, mode: str | None = None,
              run: int | None = None) -> BlockPlan:
    """The cheapest block tiling of ``mask`` (``n_src x n_dst`` bool) under the cost model.

    ``bd``, ``mode`` (``"windows"``/``"gather"``) and ``run`` pin a choice
    (tests use them to cover every layout). The plan's ``speedup`` is the
    model's estimate against the masked dense product; the simulator's
    ``sparse="auto"`` uses the tiling only when it is above 1.
    """
    mask = np.asarray(mask, dtype=bool)
    n_src, n_dst = mask.shape
    if bd is not None and (bd < 1 or n_dst % bd):
        raise ValueError(f"block width {bd} does not divide n_dst={n_dst}")
    # Candidates are kept as (cost, width, run) only: the chosen one's rows and slot mask are
    # rebuilt at the end, so tiling never holds more than one candidate's arrays at once.
    cands = []
    for b in ([bd] if bd is not None else _candidates(n_dst)):
        nD = n_dst // b
        if mode in (None, "windows"):
            K, src, groups = _window_plan(mask, b)
            full = bool(_slot_mask(mask, b, K, src, gather=False).all())
            cands.append((_cost(nD * K * b, K, b, len(groups), None, full), b, None))
            src = None
        if mode in (None, "gather"):
            runs = [run] if run is not None else sorted({1, *[r for r in _divisors(n_src) if r <= 64][-6:]})
            for r in runs:
                if n_src % r:
                    continue
                K, src = _gather_plan(mask, b, r)
                full = bool(_slot_mask(mask, b, K, src, gather=True).all())
                cands.append((_cost(nD * K * b, K, b, 1, r, full), b, r))
                src = None
    # The model cannot tell apart tilings within ~10 %: take the widest tiles among those (fewer,
    # larger products: less sensitive to the model's errors, and what a GPU wants).
    lowest = min(c[0] for c in cands)
    c, b, r = max((c for c in cands if c[0] <= 1.1 * lowest), key=lambda c: (c[1], -c[0]))
    if r is None:
        K, src, groups = _window_plan(mask, b)
        r = 1
    else:
        (K, src), groups = _gather_plan(mask, b, r), None
    m = _slot_mask(mask, b, K, src, gather=groups is None)
    return BlockPlan(n_src=n_src, n_dst=n_dst, bd=b, K=K, src_index=src, mask=m, windows=groups, run=r,
                     cost=c, dense_cost=dense_cost(n_src, n_dst))
