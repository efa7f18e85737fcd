"""The genome document: the shared meta-parameters of BLUR (paper Table 1).

Field names follow the paper's symbols (DESIGN §1): ``f``, ``eta`` (neuron
keep/update gates of eq. 5-6), ``f_tilde``, ``eta_tilde`` (synapse keep/update
gates of eq. 7), ``nu``, ``mu`` (forward/backward neuron mixing, eq. 5-6),
``nu_tilde``, ``mu_tilde`` (pre-/post-synaptic mixing, eq. 7, with ``nu_tilde``
indexed ``[e, c]`` as in the paper). Optional parts default to their neutral
values when absent (see :data:`OPTIONAL_DEFAULTS`).

A genome holds one parameter set per *genome group*; every population and
projection of a network names the group it takes its parameters from
(``"default"`` unless the spec says otherwise).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from blursim.spec.base import Name, Strict, error_at

FORMAT_GENOME = "blursim.genome/1"

SCALAR_FIELDS = ("f", "eta", "f_tilde", "eta_tilde")
MATRIX_FIELDS = ("nu", "mu", "nu_tilde", "mu_tilde")
VECTOR_FIELDS = ("norm_gain", "norm_shift")
OPTIONAL_SCALAR_FIELDS = ("oja_alpha", "saturation", "init_scale", "rescale")

#: Value used for an optional field that a genome leaves out.
OPTIONAL_DEFAULTS = {
    "norm_gain": 1.0,  # per state
    "norm_shift": 0.0,  # per state
    "oja_alpha": 0.0,
    "saturation": 1.0,
    "init_scale": 1.0,
    "rescale": 1.0,
}

ALL_FIELDS = SCALAR_FIELDS + MATRIX_FIELDS + VECTOR_FIELDS + OPTIONAL_SCALAR_FIELDS


def field_shape(name: str, k: int) -> tuple[int, ...]:
    """Shape of one genome field for ``k`` states (no species axis)."""
    if name in MATRIX_FIELDS:
        return (k, k)
    if name in VECTOR_FIELDS:
        return (k,)
    if name in SCALAR_FIELDS or name in OPTIONAL_SCALAR_FIELDS:
        return ()
    raise KeyError(name)


class GenomeParams(Strict):
    """One genome group's parameters (every value finite: NaN and Infinity are refused)."""

    f: float
    eta: float
    f_tilde: float
    eta_tilde: float
    nu: list[list[float]]
    mu: list[list[float]]
    nu_tilde: list[list[float]]
    mu_tilde: list[list[float]]
    norm_gain: list[float] | None = None
    norm_shift: list[float] | None = None
    oja_alpha: float | None = None
    saturation: float | None = None
    init_scale: float | None = None
    rescale: float | None = None


class GenomeSpec(Strict):
    """A genome file: ``k`` and one :class:`GenomeParams` per group."""

    format: str = Field(default=FORMAT_GENOME, pattern=r"^blursim\.genome/1$")
    k: int = Field(ge=1, le=64)
    groups: dict[Name, GenomeParams] = Field(min_length=1)
    meta: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shapes(self):
        k = self.k
        for gname, g in self.groups.items():
            for name in MATRIX_FIELDS:
                m = getattr(g, name)
                if len(m) != k:
                    raise error_at(
                        ("groups", gname, name),
                        f"{name} must be a {k}x{k} matrix for k={k}, but it has {len(m)} rows",
                    )
                for r, row in enumerate(m):
                    if len(row) != k:
                        raise error_at(
                            ("groups", gname, name, r),
                            f"{name} must be a {k}x{k} matrix for k={k}, but row {r} has "
                            f"{len(row)} entries",
                        )
            for name in VECTOR_FIELDS:
                v = getattr(g, name)
                if v is not None and len(v) != k:
                    raise error_at(
                        ("groups", gname, name), f"{name} must have length k={k}, got {len(v)}"
                    )
        return self
