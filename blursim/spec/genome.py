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

    f: float = Field(description="f, neuron keep gate of eq. (5)-(6): weight of a neuron's previous state")
    eta: float = Field(description="eta, neuron update gate of eq. (5)-(6): weight of the incoming drive")
    f_tilde: float = Field(description="f~, synapse keep gate of eq. (7): W <- f~ W + eta~ (H + O)")
    eta_tilde: float = Field(description="eta~, synapse update gate of eq. (7): the learning rate of the Hebbian term H")
    nu: list[list[float]] = Field(description="nu, k x k forward neuron mix of eq. (5): the presynaptic states "
                                  "sent forward are nu a, (nu a)^c = sum_d nu[c][d] a^d")
    mu: list[list[float]] = Field(description="mu, k x k backward neuron mix of eq. (6): the postsynaptic states "
                                  "sent back are mu a")
    nu_tilde: list[list[float]] = Field(description="nu~, k x k presynaptic mix of eq. (7), indexed [e][c] as in "
                                        "the paper: P^c = sum_e nu~[e][c] a_pre^e")
    mu_tilde: list[list[float]] = Field(description="mu~, k x k postsynaptic mix of eq. (7): Q^c = sum_d "
                                        "mu~[c][d] a_post^d")
    norm_gain: list[float] | None = Field(None, description="per-state gain of the normalisation N "
                                          "(Sec. 3.4), length k; default 1")
    norm_shift: list[float] | None = Field(None, description="per-state shift of the normalisation N "
                                           "(Sec. 3.4), length k; default 0")
    oja_alpha: float | None = Field(None, description="alpha, multiplier of the Oja-like term of eq. (8) "
                                    "(rules.oja); its magnitude is used; default 0")
    saturation: float | None = Field(None, description="s of the synapse saturation W <- s tanh(W / s) "
                                     "(Sec. 3.4, rules.saturation); default 1")
    init_scale: float | None = Field(None, description="multiplier of the initial synapses "
                                     "(rules.synapse_init); default 1")
    rescale: float | None = Field(None, description="target norm of synapse normalisation (App. C.6, "
                                  "rules.synapse_normalization); default 1")


class GenomeSpec(Strict):
    """A genome file: ``k`` and one :class:`GenomeParams` per group."""

    format: str = Field(default=FORMAT_GENOME, pattern=r"^blursim\.genome/1$",
                        description="document type and version")
    k: int = Field(ge=1, le=64, description="states per neuron; every matrix is k x k and every vector has length k")
    groups: dict[Name, GenomeParams] = Field(min_length=1, description="one parameter set per genome group "
                                             "(populations and projections name theirs; \"default\" unless "
                                             "the network says otherwise)")
    meta: dict = Field(default_factory=dict, description="free-form provenance (preset, experiment, "
                       "generation, fitness); never read by the simulator")

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
