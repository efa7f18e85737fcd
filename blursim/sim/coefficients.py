"""Genomes as the simulator uses them: host arrays per group, and per-chunk coefficients.

:meth:`~blursim.sim.Simulator.prepare` turns genome documents or a
:class:`~blursim.genome.GenomeBatch` into :class:`PreparedGenomes`; a step
reads them through :class:`Coefficients`, which folds the genome's scalars
and ``k x k`` matrices (paper Table 1) into gemm scales and small device
arrays once per chunk of species.
"""

from __future__ import annotations

import numpy as np


class GenomeArrays:
    """One genome group: the genome arrays on the host, ``(S, ...)`` float64 -- complex128 for
    a field given as complex numbers (complex-step derivatives in genome entries, with
    ``dtype="complex128"``; :mod:`blursim.meta.objective`)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.host = {k: np.asarray(v, dtype=np.complex128 if np.iscomplexobj(v) else np.float64)
                     for k, v in arrays.items()}
        self.S = int(self.host["f"].shape[0])
        self.init_scale = self.host["init_scale"]


def genome_abs(v: np.ndarray) -> np.ndarray:
    """``|v|`` of a genome array as ``v sign(Re v)``: the same numbers for real ``v``, and
    complex-step safe for complex ``v`` (``np.abs`` would drop the imaginary direction)."""
    return v * np.sign(np.real(v))


def floor_real(v: np.ndarray, low: float) -> np.ndarray:
    """``max(v, low)`` comparing real parts (``np.maximum`` for real ``v``; complex-step safe)."""
    return np.maximum(v, low) if not np.iscomplexobj(v) else np.where(np.real(v) > low, v, low)


class PreparedGenomes(dict):
    """``{group: GenomeArrays}`` plus per-chunk coefficient caches (what
    :meth:`~blursim.sim.Simulator.prepare` returns)."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.coef_cache: dict = {}


class Coefficients:
    """Genome-derived factors for species ``s0:s1`` as gemm scales and small device arrays.

    Names follow the paper: ``f, eta`` (neurons), ``f_tilde, eta_tilde``
    (synapses), ``nu, mu`` (forward/backward mixing), ``nu_tilde, mu_tilde``
    (pre/postsynaptic mixing); ``h[group][name]`` is the host array of species
    ``s0:s1``. Everything is computed once per chunk and batch size and cached.
    """

    def __init__(self, backend, k: int, genes: dict, s0: int, s1: int, B: int) -> None:
        self.b_ = backend
        self.h = {g: {k: v[s0:s1] for k, v in genes[g].host.items()} for g in genes}
        self.c = s1 - s0
        self.k = k
        self.B = B
        self._cache: dict = {}

    def cached(self, key, make):
        """``make()``, computed once per key."""
        v = self._cache.get(key)
        if v is None:
            v = make()
            self._cache[key] = v
        return v

    # scales, host shape (c, 1, 1) or (c, 1, k): one value per (species, channel) slice
    def scalar(self, g: str, name: str):
        return self.cached(("s", g, name), lambda: self.b_.scale(self.h[g][name].reshape(-1, 1, 1)))

    def scale(self, key, host):
        return self.cached(("x",) + key, lambda: self.b_.scale(host()))

    def mat(self, g: str, name: str):
        """``(c, 1, k, k)`` device matrix acting on the state axis."""
        def make():
            h = self.h[g]
            m = {
                "nu": lambda: h["nu"], "mu": lambda: h["mu"],
                "nu_tilde_t": lambda: np.swapaxes(h["nu_tilde"], 1, 2),
                "mu_tilde": lambda: h["mu_tilde"],
                # rows scaled by the input's coefficient, for shared-channel Hebbians of input projections
                "mu_tilde_in": lambda: h["nu_tilde"][:, 0, :, None] * h["mu_tilde"],
                "nu_tilde_t_in": lambda: h["mu_tilde"][:, :, 0, None] * np.swapaxes(h["nu_tilde"], 1, 2),
            }[name]()
            return self.b_.asarray(np.ascontiguousarray(m[:, None]))
        return self.cached(("m", g, name), make)

    def dev(self, key, host):
        """A small device array computed on the host by ``host()``."""
        return self.cached(("d",) + key, lambda: self.b_.asarray(np.ascontiguousarray(host())))
