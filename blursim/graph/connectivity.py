"""Connectivity kinds: a projection's mask ``M_q`` (DESIGN §1), built once at compile time.

Each builder takes the connectivity model, the pre- and postsynaptic
populations and a :class:`numpy.random.SeedSequence` for that projection, and
returns a boolean ``(n_pre, n_post)`` mask, or ``None`` for all-to-all.
Builders run in the compiler, never in the simulation loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from blursim.errors import SpecError
from blursim.registry import Registry

MaskBuilder = Callable[[Any, Any, Any, np.random.SeedSequence, str], "np.ndarray | None"]

CONNECTIVITY: Registry[MaskBuilder] = Registry("connectivity kind")


def _rng(conn, seq: np.random.SeedSequence) -> np.random.Generator:
    seed = getattr(conn, "seed", None)
    return np.random.default_rng(seq if seed is None else seed)


@CONNECTIVITY.register("all_to_all")
def all_to_all(conn, pre, post, seq, path):
    """Every pre neuron to every post neuron (dense)."""
    return None


@CONNECTIVITY.register("one_to_one")
def one_to_one(conn, pre, post, seq, path):
    """Neuron i to neuron i; sizes must match."""
    if pre.size != post.size:
        raise SpecError(
            f"one_to_one needs populations of equal size, but {pre.name!r} has {pre.size} "
            f"and {post.name!r} has {post.size} neurons",
            path=path,
        )
    return np.eye(pre.size, dtype=bool)


@CONNECTIVITY.register("fixed_probability")
def fixed_probability(conn, pre, post, seq, path):
    """Each pair connected independently with probability p (seeded)."""
    return _rng(conn, seq).random((pre.size, post.size)) < conn.p


@CONNECTIVITY.register("from_list")
def from_list(conn, pre, post, seq, path):
    """Explicit [pre, post] index pairs."""
    m = np.zeros((pre.size, post.size), dtype=bool)
    for n, (i, j) in enumerate(conn.edges):
        if not (0 <= i < pre.size and 0 <= j < post.size):
            raise SpecError(
                f"edge [{i}, {j}] is out of range for {pre.name!r} ({pre.size} neurons) -> "
                f"{post.name!r} ({post.size} neurons)",
                path=f"{path}.edges[{n}]",
            )
        if m[i, j]:
            raise SpecError(f"edge [{i}, {j}] is listed twice", path=f"{path}.edges[{n}]")
        m[i, j] = True
    return m


@CONNECTIVITY.register("local2d")
def local2d(conn, pre, post, seq, path):
    """Receptive fields of a given radius between populations laid out on 2-D grids."""
    for p in (pre, post):
        if p.grid is None:
            raise SpecError(
                f"local2d needs population {p.name!r} to declare its 2-D layout",
                path=path,
                hint=f'Add "grid": [rows, cols] with rows * cols = {p.size} to that population.',
            )
    (pr, pc), (qr, qc) = pre.grid, post.grid
    # Post neuron centres mapped into pre grid coordinates (cell centres aligned).
    u = (np.arange(qr) + 0.5) * (pr / qr) - 0.5
    v = (np.arange(qc) + 0.5) * (pc / qc) - 0.5
    pu, pv = np.meshgrid(np.arange(pr), np.arange(pc), indexing="ij")
    qu, qv = np.meshgrid(u, v, indexing="ij")
    d2 = (pu.reshape(-1, 1) - qu.reshape(1, -1)) ** 2 + (pv.reshape(-1, 1) - qv.reshape(1, -1)) ** 2
    # A radius beyond the grid's diagonal connects everything; capping it keeps radius**2 finite.
    radius = min(float(conn.radius), float(np.hypot(pr, pc)) + 1.0)
    return d2 <= radius**2 + 1e-9


@CONNECTIVITY.register("block_random")
def block_random(conn, pre, post, seq, path):
    """Blocks of [rows, cols] neurons, each present with probability p (seeded)."""
    # A block larger than a population covers all of it (and never allocates more than the mask).
    br, bc = min(conn.block[0], pre.size), min(conn.block[1], post.size)
    nbr, nbc = -(-pre.size // br), -(-post.size // bc)
    present = _rng(conn, seq).random((nbr, nbc)) < conn.p
    m = np.repeat(np.repeat(present, br, axis=0), bc, axis=1)
    return m[: pre.size, : post.size]


#: SeedSequence stream tag of the network's connectivity (DESIGN §2, Randomness).
TAG_CONNECTIVITY = 0x636F6E6E


def build_masks(spec) -> list[np.ndarray | None]:
    """Connectivity masks of every projection of a network spec, from its seed (deterministic):
    projection ``i`` draws from ``SeedSequence([spec.seed, TAG_CONNECTIVITY]).spawn(n)[i]`` unless
    its connectivity names its own seed."""
    by_name = {p.name: p for p in spec.populations}
    seqs = np.random.SeedSequence([spec.seed, TAG_CONNECTIVITY]).spawn(len(spec.projections))
    masks = []
    for i, q in enumerate(spec.projections):
        build = CONNECTIVITY.get(q.connectivity.kind, path=f"$.projections[{i}].connectivity.kind")
        masks.append(
            build(q.connectivity, by_name[q.from_], by_name[q.to], seqs[i],
                  f"$.projections[{i}].connectivity")
        )
    return masks
