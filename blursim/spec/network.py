"""The network spec: populations, projections and rules, as pure data.

A network spec is a JSON document (``blursim schema network`` prints its JSON
Schema). It names no code: activations, connectivity kinds and feedback kinds
are resolved by name through registries (``blursim list``). What a spec
*means* is fixed by ``docs/design.md`` (DESIGN §1-2; paper Sec. 3.2-3.4).
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from blursim.limits import MAX_INIT_SCALE, MAX_POPULATION, MAX_RADIUS, MAX_SWEEPS
from blursim.spec.base import Label, Name, Seed, Text
from blursim.spec.base import Strict as _Strict
from blursim.spec.base import error_at

FORMAT_NETWORK = "blursim.network/1"


# ---------------------------------------------------------------- connectivity
class AllToAll(_Strict):
    """Every presynaptic neuron connects to every postsynaptic neuron."""

    kind: Literal["all_to_all"] = "all_to_all"


class OneToOne(_Strict):
    """Neuron ``i`` connects to neuron ``i``; both populations have the same size."""

    kind: Literal["one_to_one"]


class FixedProbability(_Strict):
    """Each pair is connected independently with probability ``p``.

    ``seed`` fixes the wiring; when omitted it is derived from the network's
    ``seed`` and the projection's position, so two unseeded projections never
    share their wiring.
    """

    kind: Literal["fixed_probability"]
    p: float = Field(ge=0.0, le=1.0)
    seed: Seed | None = None


class FromList(_Strict):
    """An explicit list of ``[pre, post]`` neuron index pairs."""

    kind: Literal["from_list"]
    edges: list[tuple[Annotated[int, Field(ge=0, lt=MAX_POPULATION)], Annotated[int, Field(ge=0, lt=MAX_POPULATION)]]]


class Local2D(_Strict):
    """Receptive fields on 2-D grids.

    Both populations are laid out on grids (their ``grid`` field, ``[rows,
    cols]``); a postsynaptic neuron at grid position ``(u, v)`` is mapped into
    presynaptic grid coordinates (scaled when the grids differ in size) and
    connects to every presynaptic neuron within Euclidean distance ``radius``
    (in presynaptic grid units).
    """

    kind: Literal["local2d"]
    radius: float = Field(gt=0.0, le=MAX_RADIUS)


class BlockRandom(_Strict):
    """Blocks of ``block`` = ``[rows, cols]`` neurons connected with probability ``p``.

    The pre x post matrix is tiled into blocks; each block is fully connected
    with probability ``p`` or absent. ``seed`` as for ``fixed_probability``.
    """

    kind: Literal["block_random"]
    block: tuple[Annotated[int, Field(ge=1, le=MAX_POPULATION)], Annotated[int, Field(ge=1, le=MAX_POPULATION)]]
    p: float = Field(ge=0.0, le=1.0)
    seed: Seed | None = None


Connectivity = Annotated[
    Union[AllToAll, OneToOne, FixedProbability, FromList, Local2D, BlockRandom],
    Field(discriminator="kind"),
]


# ------------------------------------------------------------------ populations
ActivationSpec = Union[Name, Annotated[list[Name], Field(max_length=64)]]


class Population(_Strict):
    """A population of ``size`` neurons, each with ``k`` states (DESIGN §1).

    ``forward_activation``/``backward_activation`` name one activation for all
    states, or a list of ``k`` names, one per state (the generalised phi of
    eq. 4, e.g. ``["sigmoid", "sigmoid_derivative"]``). ``normalization``
    applies the batch normalisation N of Sec. 3.4 on the forward pass, the
    (additive) backward pass, or both. ``genome`` names the genome group that
    supplies the neuron gates ``f``, ``eta`` and the normalisation gain/shift.
    """

    name: Name
    size: int = Field(ge=1, le=MAX_POPULATION)
    role: Literal["input", "hidden", "output"]
    forward_activation: ActivationSpec = "tanh"
    backward_activation: ActivationSpec = "identity"
    normalization: Literal["none", "forward", "backward", "both"] = "none"
    genome: Name = "default"
    grid: tuple[Annotated[int, Field(ge=1, le=MAX_POPULATION)], Annotated[int, Field(ge=1, le=MAX_POPULATION)]] | None = None

    @model_validator(mode="after")
    def _grid_fits(self):
        if self.grid is not None:
            if self.grid[0] < 1 or self.grid[1] < 1 or self.grid[0] * self.grid[1] != self.size:
                raise error_at(
                    ("grid",),
                    f"grid {list(self.grid)} does not hold size {self.size} neurons "
                    "(rows * cols must equal size)",
                )
        return self


class Projection(_Strict):
    """Synapses from population ``from`` to population ``to`` (DESIGN §1)."""

    name: Name | None = None
    from_: Name = Field(alias="from")
    to: Name
    connectivity: Connectivity = Field(default_factory=AllToAll)
    bias: bool = True
    genome: Name = "default"

    @property
    def label(self) -> str:
        return self.name or f"{self.from_}->{self.to}"


# ------------------------------------------------------------------------ rules
class SynapseInit(_Strict):
    """Initial synapses: ``distribution`` with ``scale``.

    With ``fan_in`` the scale is divided by ``sqrt(n_pre + bias)``. Biases start
    at zero unless ``bias`` is ``"same"``. The genome's optional ``init_scale``
    multiplies the result.
    """

    distribution: Literal["normal", "uniform", "zeros"] = "normal"
    scale: float = Field(default=1.0, ge=0.0, le=MAX_INIT_SCALE)
    fan_in: bool = True
    bias: Literal["zeros", "same"] = "zeros"


class Rules(_Strict):
    """How one BLUR step is computed (DESIGN §2; paper eq. 5-8, Sec. 3.3-3.4, App. C.6).

    Defaults are the paper's general rule family: additive backward update,
    untied (asymmetric) multi-channel synapses, ``target`` feedback.

    ``shared_update`` (with ``shared_channels``, the paper's single-state
    synapses): ``"mean"`` stores the mean over channels of eq. (7)'s
    per-channel updates (exactly SGD for the backprop genome); ``"channel0"``
    stores channel 0's update (eq. 7 with the Oja term of eq. 8), as the
    authors' published code does (docs/authors_layout.md).

    ``backward_synapses`` (untied synapses; docs/rule_variants.md): ``"learned"``
    updates ``V`` by eq. (7) with the roles swapped; ``"frozen"`` never changes
    it (feedback alignment's fixed ``B``); ``"mirror"`` gives ``V`` the transpose
    of ``W``'s Hebbian term (Kolen-Pollack).
    """

    backward_update: Literal["additive", "multiplicative", "multiplicative_second_state"] = (
        "additive"
    )
    tied: bool = False
    backward_synapses: Literal["learned", "frozen", "mirror"] = "learned"
    shared_channels: bool = False
    shared_update: Literal["mean", "channel0"] = "mean"
    feedback: Name = "target"
    target_coding: Literal["pm1", "onehot"] = "pm1"
    oja: Literal["none", "weights", "activity"] = "none"
    synapse_normalization: Literal["none", "activations", "stored"] = "none"
    saturation: bool = False
    reset_neurons: bool = True
    batch_reduction: Literal["sum", "mean"] = "sum"
    schedule: Literal["topological", "synchronous"] = "topological"
    sweeps: int = Field(default=1, ge=1, le=MAX_SWEEPS)
    synapse_init: SynapseInit = Field(default_factory=SynapseInit)
    norm_eps: float = Field(default=1e-5, gt=0.0, le=1.0)
    synapse_norm_eps: float = Field(default=1e-8, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _shared_update_needs_shared_channels(self):
        if self.shared_update != "mean" and not self.shared_channels:
            raise error_at(
                ("shared_update",),
                f"shared_update {self.shared_update!r} says how shared channels are updated, but "
                "shared_channels is false; set \"shared_channels\": true or remove shared_update",
            )
        return self

    @model_validator(mode="after")
    def _backward_synapses_need_untied(self):
        if self.backward_synapses != "learned" and self.tied:
            raise error_at(
                ("backward_synapses",),
                f"backward_synapses {self.backward_synapses!r} says how the untied backward synapses V "
                "learn, but tied is true (V is W transposed); set \"tied\": false or remove backward_synapses",
            )
        return self


class NetworkSpec(_Strict):
    """A BLUR network: ``k`` states per neuron, populations, projections, rules."""

    format: Literal["blursim.network/1"] = FORMAT_NETWORK
    name: Label = ""
    description: Text = ""
    k: int = Field(ge=1, le=64)
    seed: Seed = 0
    populations: list[Population] = Field(min_length=1)
    projections: list[Projection] = Field(default_factory=list)
    rules: Rules = Field(default_factory=Rules)
