"""Genomes as the simulator uses them: host arrays per group, folded once into typed coefficients.

:meth:`~blursim.sim.Simulator.prepare` turns genome documents or a
:class:`~blursim.genome.GenomeBatch` into :class:`PreparedGenomes`.
:func:`fold` -- one pure function -- turns them and a program into named,
typed coefficients of every population and projection (paper Table 1 and
eq. 5-8, with the fast kernels' folding: a genome scalar becomes the
``alpha`` of a product or a ``k x k`` matrix, never a pass over a large
array). :class:`ChunkCoefficients` is the device view of a chunk of species
that the fast kernels read, by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

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


def _scale(**kw):
    """A field held on the device as a :class:`~blursim.backend.base.Scale` (a product's alpha/beta)."""
    return field(metadata={"as": "scale"}, **kw)


def _array(**kw):
    """A field held on the device as a small array."""
    return field(metadata={"as": "array"}, **kw)


@dataclass(frozen=True)
class NeuronCoefficients:
    """A population's gates (its genome group), species first: eq. (5)-(6) and N (Sec. 3.4)."""

    f: np.ndarray = _scale()  # (S, 1, 1): keep gate f
    eta: np.ndarray = _scale()  # (S, 1, 1): update rate eta
    norm_gain: np.ndarray = _array()  # (S, 1, k, 1, 1): N's gain
    norm_shift: np.ndarray = _array()  # (S, 1, k, 1, 1): N's shift


@dataclass(frozen=True)
class MixingCoefficients:
    """A genome group's ``k x k`` matrices acting on the state axis, ``(S, 1, k, k)``."""

    nu: np.ndarray = _array()  # forward mix (eq. 5)
    mu: np.ndarray = _array()  # backward mix (eq. 6)
    nu_tilde_t: np.ndarray = _array()  # nu~^T: P = nu~^T a (eq. 7)
    mu_tilde: np.ndarray = _array()  # Q = mu~ a (eq. 7)
    #: shared channels, projection from an input x: the other side's matrix with rows scaled by the
    #: input's coefficient (``(nu~^T x)^c = nu~[0, c] x``, ``(mu~ x)^c = mu~[c, 0] x``)
    mu_tilde_in: np.ndarray = _array()
    nu_tilde_t_in: np.ndarray = _array()


@dataclass(frozen=True)
class SynapseCoefficients:
    """One synapse array's update (eq. 7-8): ``W`` of a projection (``src = pre``) or its ``V``."""

    #: the Hebbian product's alpha: eta~ rho (1/k for the channel mean of shared channels), times
    #: the input's coefficient when the source or destination is an input without shared channels
    rate: np.ndarray = _scale()  # (S, 1, 1) or (S, 1, k)
    #: the same without eta~ (a monitor's H)
    unit: np.ndarray = _scale()
    #: eta~ rho (/k) per species, for a variant's reference kernel: (S, 1, 1, 1, 1); its unit twin
    rate_plain: np.ndarray = _array()
    unit_plain: np.ndarray = _array()
    #: the bias row's Hebbian matrix ``rate (nu~^T 1)^c mu~[c, :]``: (S, 1, kw, k); its unit twin
    bias: np.ndarray | None = _array(default=None)
    bias_unit: np.ndarray | None = _array(default=None)


@dataclass(frozen=True)
class ProjectionCoefficients:
    """A projection's coefficients (its genome group; ``eta`` of its postsynaptic population)."""

    forward_input: np.ndarray = _scale()  # (S, 1, k): eta_post nu[:, c, 0], the alpha for an input's x
    forward_bias: np.ndarray = _array()  # (S, 1, k, 1, 1): eta_post sum_d nu[c, d], times the bias row
    f_tilde: np.ndarray = _scale()  # (S, 1, 1): synapse keep gate
    f_tilde4: np.ndarray = _array()  # (S, 1, 1, 1): the same, against (c, R, kw, n)
    oja: np.ndarray = _array()  # (S, 1, 1, 1): |alpha| |eta~| of eq. (8)'s keep factor
    mu0sq: np.ndarray = _array()  # (S, 1, k, 1): mu~[c, 0]^2 (Oja activity of an input)
    saturation: np.ndarray = _scale()  # (S, 1, 1): s = max(|saturation|, 1e-12)
    rescale: np.ndarray = _scale()  # (S, 1, 1): App. C.6's target norm
    W: SynapseCoefficients = None
    V: SynapseCoefficients | None = None


@dataclass(frozen=True)
class StepCoefficients:
    """Everything a step of ``B`` samples reads of a genome batch: per population, per genome
    group (mixing), per projection; ``genes`` the host arrays by group (variants' kernels)."""

    pops: tuple
    mixing: dict
    projs: tuple
    genes: dict


def fold(genes, program, B: int, *, batch_mean: bool, channels: str) -> StepCoefficients:
    """The genome batch ``genes`` (``{group: {field: (S, ...)}}`` host arrays, or
    :class:`PreparedGenomes`) folded for ``program`` at batch size ``B``.

    ``batch_mean``: ``rho`` is the batch mean (else the sum); ``channels``: how a stored channel
    comes from eq. (7)'s ``k`` (``"all"``, ``"mean"``, ``"first"``; :class:`blursim.sim.step.SynapseJob`).
    Pure: the inputs are not changed; every field is a new host array, species first.
    """
    h = {g: (v.host if isinstance(v, GenomeArrays) else v) for g, v in genes.items()}
    k = program.k
    S = len(next(iter(h.values()))["f"])
    col = lambda v: v.reshape(-1, 1, 1)  # noqa: E731
    pops = []
    for p in program.pops:
        g = h[p.group]
        pops.append(NeuronCoefficients(f=col(g["f"]), eta=col(g["eta"]),
                                       norm_gain=g["norm_gain"].reshape(S, 1, k, 1, 1),
                                       norm_shift=g["norm_shift"].reshape(S, 1, k, 1, 1)))
    mixing = {}
    for name, g in h.items():
        nt = np.swapaxes(g["nu_tilde"], 1, 2)
        mats = {"nu": g["nu"], "mu": g["mu"], "nu_tilde_t": nt, "mu_tilde": g["mu_tilde"],
                "mu_tilde_in": g["nu_tilde"][:, 0, :, None] * g["mu_tilde"],
                "nu_tilde_t_in": g["mu_tilde"][:, :, 0, None] * nt}
        mixing[name] = MixingCoefficients(**{n: np.ascontiguousarray(m[:, None]) for n, m in mats.items()})
    inputs = {p.index for p in program.pops if p.role == "input"}
    shared, mean_channels = channels != "all", channels == "mean"
    projs = []
    for q in program.projs:
        g, eta_post = h[q.group], h[program.pops[q.post].group]["eta"]
        sides = {}
        for which in ("W", "V"):
            syn = {}
            for label, gain in (("rate", g["eta_tilde"]), ("unit", np.ones(S))):
                base = gain * (1.0 / B if batch_mean else 1.0) / (k if mean_channels else 1)
                if q.pre in inputs and not shared:  # the input's coefficient goes into alpha
                    coef = g["nu_tilde"][:, 0, :] if which == "W" else g["mu_tilde"][:, :, 0]
                    syn[label] = (base[:, None] * coef)[:, None, :]
                else:
                    syn[label] = base.reshape(-1, 1, 1)
                syn[label + "_plain"] = base.reshape(-1, 1, 1, 1, 1)
                if which == "W" and q.bias:
                    scale = base * (k if mean_channels else 1)  # undo base's 1/k
                    M = (scale[:, None] * g["nu_tilde"].sum(axis=1))[:, :, None] * g["mu_tilde"]  # (S, k, k)
                    if shared:  # (S, 1, k): channel 0, or the channel mean
                        M = M[:, 0:1] if channels == "first" else M.mean(axis=1, keepdims=True)
                    syn["bias" if label == "rate" else "bias_unit"] = M[:, None]
            sides[which] = SynapseCoefficients(**syn)
        projs.append(ProjectionCoefficients(
            forward_input=(eta_post[:, None] * g["nu"][:, :, 0])[:, None, :],
            forward_bias=(eta_post[:, None] * g["nu"].sum(axis=2)).reshape(S, 1, k, 1, 1),
            f_tilde=col(g["f_tilde"]), f_tilde4=g["f_tilde"].reshape(-1, 1, 1, 1),
            oja=(genome_abs(g["oja_alpha"]) * genome_abs(g["eta_tilde"])).reshape(-1, 1, 1, 1),
            mu0sq=(g["mu_tilde"][:, :, 0] ** 2).reshape(S, 1, k, 1),
            saturation=col(floor_real(genome_abs(g["saturation"]), 1e-12)), rescale=col(g["rescale"]),
            W=sides["W"], V=sides["V"]))
    return StepCoefficients(tuple(pops), mixing, tuple(projs), h)


class _DeviceView:
    """The fields of a coefficient dataclass for species ``s0:s1`` on the device, converted on
    first use: a :class:`~blursim.backend.base.Scale` or a contiguous array (field metadata)."""

    def __init__(self, host, backend, s0: int, s1: int) -> None:
        self._host, self._backend, self._s = host, backend, slice(s0, s1)
        self._kinds = {f.name: f.metadata.get("as") for f in fields(host)}

    def __getattr__(self, name: str):
        kinds = self.__dict__.get("_kinds")
        if kinds is None or name not in kinds:
            raise AttributeError(name)
        v = getattr(self._host, name)
        if v is None:
            out = None
        elif kinds[name] == "scale":
            out = self._backend.scale(v[self._s])
        elif kinds[name] == "array":
            out = self._backend.asarray(np.ascontiguousarray(v[self._s]))
        else:  # a nested dataclass
            out = _DeviceView(v, self._backend, self._s.start, self._s.stop)
        self.__dict__[name] = out
        return out


class ChunkCoefficients:
    """:func:`fold`'s coefficients of species ``s0:s1`` as the fast kernels read them:
    ``pop(p).eta``, ``proj(q).W.rate``, ``mat(g, "nu")``, ... (device scales and arrays, made once
    per chunk); ``h[g]`` the host genome arrays of the chunk's species; ``c`` their number."""

    def __init__(self, backend, folded: StepCoefficients, s0: int, s1: int) -> None:
        self.c = s1 - s0
        self.h = {g: {n: v[s0:s1] for n, v in arrays.items()} for g, arrays in folded.genes.items()}
        self._pops = [_DeviceView(p, backend, s0, s1) for p in folded.pops]
        self._projs = [_DeviceView(q, backend, s0, s1) for q in folded.projs]
        self._mixing = {g: _DeviceView(m, backend, s0, s1) for g, m in folded.mixing.items()}

    def pop(self, p: int):
        return self._pops[p]

    def proj(self, q: int):
        return self._projs[q]

    def mat(self, g: str, name: str):
        """Genome group ``g``'s ``(c, 1, k, k)`` matrix ``name`` (:class:`MixingCoefficients`)."""
        return getattr(self._mixing[g], name)
