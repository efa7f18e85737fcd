"""Genomes as arrays: a species axis for batched simulation, flat vectors for ES."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from blursim.errors import GenomeError
from blursim.spec.genome import (
    ALL_FIELDS,
    OPTIONAL_DEFAULTS,
    GenomeParams,
    GenomeSpec,
    field_shape,
)


def field_array(params: GenomeParams, name: str, k: int) -> np.ndarray:
    v = getattr(params, name)
    if v is None:
        return np.full(field_shape(name, k), OPTIONAL_DEFAULTS[name], dtype=np.float64)
    return np.asarray(v, dtype=np.float64)


@dataclass
class GenomeBatch:
    """``S`` genomes, field arrays with a leading species axis.

    ``arrays[group][field]`` has shape ``(S, *field_shape)`` in float64 on the
    host; the simulator casts it to its own backend and dtype.
    """

    k: int
    arrays: dict[str, dict[str, np.ndarray]]

    @property
    def S(self) -> int:
        g = next(iter(self.arrays.values()))
        return int(g["f"].shape[0])

    @property
    def groups(self) -> list[str]:
        return list(self.arrays)

    def species(self, s: int) -> GenomeSpec:
        """Genome ``s`` as a document."""
        groups = {}
        for g, fields in self.arrays.items():
            groups[g] = GenomeParams(
                **{
                    name: (fields[name][s].tolist() if fields[name].ndim > 1 else float(fields[name][s]))
                    for name in ALL_FIELDS
                }
            )
        return GenomeSpec(k=self.k, groups=groups)

    def take(self, idx: Sequence[int] | slice) -> "GenomeBatch":
        """A sub-batch of species."""
        return GenomeBatch(
            self.k, {g: {n: a[idx] for n, a in f.items()} for g, f in self.arrays.items()}
        )

    def is_finite(self) -> np.ndarray:
        """Boolean ``(S,)``: every value of genome ``s`` is finite."""
        ok = np.ones(self.S, dtype=bool)
        for fields in self.arrays.values():
            for a in fields.values():
                ok &= np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1)
        return ok


def stack_genomes(
    genomes: GenomeSpec | Sequence[GenomeSpec], *, k: int | None = None,
    groups: Iterable[str] | None = None, source: str = "genome",
) -> GenomeBatch:
    """Stack genome documents along the species axis, checking ``k`` and groups."""
    if isinstance(genomes, GenomeSpec):
        genomes = [genomes]
    if not genomes:
        raise GenomeError("no genomes given", path=source)
    k0 = genomes[0].k
    if k is not None and k0 != k:
        raise GenomeError(
            f"the genome has k={k0} states but the network has k={k}",
            path=f"{source}.k", value=k0,
            hint="Use a genome made for this network (e.g. --preset random) or change the spec's k.",
        )
    need = list(groups) if groups is not None else list(genomes[0].groups)
    arrays: dict[str, dict[str, list]] = {g: {n: [] for n in ALL_FIELDS} for g in need}
    for s, gen in enumerate(genomes):
        if gen.k != k0:
            raise GenomeError("genomes in one batch must share k", path=f"{source}[{s}].k", value=gen.k)
        for g in need:
            if g not in gen.groups:
                raise GenomeError(
                    f"the network uses genome group {g!r}, which the genome does not define",
                    path=f"{source}.groups", choices=gen.groups,
                    hint="Add that group to the genome file or change the spec's genome fields.",
                )
            for name in ALL_FIELDS:
                arrays[g][name].append(field_array(gen.groups[g], name, k0))
    return GenomeBatch(k0, {g: {n: np.stack(v) for n, v in f.items()} for g, f in arrays.items()})


@dataclass(frozen=True)
class GenomeLayout:
    """Which genome entries form a flat real vector (for ES and analysis).

    ``fields`` lists field names; every group in ``groups`` contributes every
    listed field, in that order, flattened row-major.
    """

    k: int
    groups: tuple[str, ...]
    fields: tuple[str, ...]

    def __post_init__(self):
        bad = [f for f in self.fields if f not in ALL_FIELDS]
        if bad:
            raise GenomeError(
                f"unknown genome field {bad[0]!r}", path="fields", choices=ALL_FIELDS
            )

    @property
    def size(self) -> int:
        return len(self.groups) * sum(int(np.prod(field_shape(f, self.k))) for f in self.fields)

    def labels(self) -> list[str]:
        """One name per vector entry, e.g. ``default.nu[0,1]``."""
        out = []
        for g in self.groups:
            for f in self.fields:
                shape = field_shape(f, self.k)
                if not shape:
                    out.append(f"{g}.{f}")
                else:
                    for idx in np.ndindex(*shape):
                        out.append(f"{g}.{f}[{','.join(map(str, idx))}]")
        return out

    def to_vector(self, genome: GenomeSpec) -> np.ndarray:
        b = stack_genomes(genome, k=self.k, groups=self.groups)
        return self.batch_to_matrix(b)[0]

    def batch_to_matrix(self, batch: GenomeBatch) -> np.ndarray:
        parts = []
        for g in self.groups:
            for f in self.fields:
                a = batch.arrays[g][f]
                parts.append(a.reshape(a.shape[0], -1))
        return np.concatenate(parts, axis=1)

    def matrix_to_batch(self, X: np.ndarray, base: GenomeSpec) -> GenomeBatch:
        """Genomes equal to ``base`` except for the fields in this layout, taken from rows of X
        (float64; complex rows stay complex128, for complex-step derivatives). Every group of
        ``base`` is kept, also those the layout does not search (a network needs them all)."""
        X = np.asarray(X, dtype=np.complex128 if np.iscomplexobj(X) else np.float64)
        if X.ndim != 2 or X.shape[1] != self.size:
            raise GenomeError(
                f"expected a (P, {self.size}) matrix of genome vectors", value=X.shape
            )
        P = X.shape[0]
        b = stack_genomes(base, k=self.k, groups=list(dict.fromkeys([*self.groups, *base.groups])))
        arrays = {g: {n: np.repeat(a, P, axis=0) for n, a in f.items()} for g, f in b.arrays.items()}
        col = 0
        for g in self.groups:
            for f in self.fields:
                shape = field_shape(f, self.k)
                n = int(np.prod(shape))
                arrays[g][f] = X[:, col : col + n].reshape((P, *shape)).copy()
                col += n
        return GenomeBatch(self.k, arrays)

    def from_vector(self, x: np.ndarray, base: GenomeSpec) -> GenomeSpec:
        return self.matrix_to_batch(np.asarray(x)[None, :], base).species(0)
