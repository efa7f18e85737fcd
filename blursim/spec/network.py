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
from blursim.spec.base import Label, Name, RegistryNames, Seed, Text
from blursim.spec.base import Strict as _Strict
from blursim.spec.base import error_at

FORMAT_NETWORK = "blursim.network/1"


# ---------------------------------------------------------------- connectivity
_KIND = "connectivity kind (blursim list connectivity): which presynaptic neurons reach which postsynaptic ones"
_SEED = ("seed of this projection's random wiring; omitted: derived from the network's seed and "
         "the projection's position, so two unseeded projections never share their wiring")


class AllToAll(_Strict):
    """Every presynaptic neuron connects to every postsynaptic neuron."""

    kind: Literal["all_to_all"] = Field("all_to_all", description=_KIND)


class OneToOne(_Strict):
    """Neuron ``i`` connects to neuron ``i``; both populations have the same size."""

    kind: Literal["one_to_one"] = Field(description=_KIND)


class FixedProbability(_Strict):
    """Each pair is connected independently with probability ``p``.

    ``seed`` fixes the wiring; when omitted it is derived from the network's
    ``seed`` and the projection's position, so two unseeded projections never
    share their wiring.
    """

    kind: Literal["fixed_probability"] = Field(description=_KIND)
    p: float = Field(ge=0.0, le=1.0, description="probability that a (pre, post) pair is connected, drawn independently per pair")
    seed: Seed | None = Field(None, description=_SEED)


class FromList(_Strict):
    """An explicit list of ``[pre, post]`` neuron index pairs."""

    kind: Literal["from_list"] = Field(description=_KIND)
    edges: list[tuple[Annotated[int, Field(ge=0, lt=MAX_POPULATION)], Annotated[int, Field(ge=0, lt=MAX_POPULATION)]]] = Field(
        description="the synapses as [pre, post] pairs of 0-based neuron indices into the 'from' and 'to' populations")


class Local2D(_Strict):
    """Receptive fields on 2-D grids.

    Both populations are laid out on grids (their ``grid`` field, ``[rows,
    cols]``); a postsynaptic neuron at grid position ``(u, v)`` is mapped into
    presynaptic grid coordinates (scaled when the grids differ in size) and
    connects to every presynaptic neuron within Euclidean distance ``radius``
    (in presynaptic grid units).
    """

    kind: Literal["local2d"] = Field(description=_KIND)
    radius: float = Field(gt=0.0, le=MAX_RADIUS, description="receptive-field radius, in presynaptic grid units: a postsynaptic neuron connects to every presynaptic neuron within this Euclidean distance of its position mapped onto the presynaptic grid")


class BlockRandom(_Strict):
    """Blocks of ``block`` = ``[rows, cols]`` neurons connected with probability ``p``.

    The pre x post matrix is tiled into blocks; each block is fully connected
    with probability ``p`` or absent. ``seed`` as for ``fixed_probability``.
    """

    kind: Literal["block_random"] = Field(description=_KIND)
    block: tuple[Annotated[int, Field(ge=1, le=MAX_POPULATION)], Annotated[int, Field(ge=1, le=MAX_POPULATION)]] = Field(
        description="block shape [rows, cols]: rows of presynaptic and columns of postsynaptic neurons per tile")
    p: float = Field(ge=0.0, le=1.0, description="probability that a block is present (fully connected); absent blocks have no synapses")
    seed: Seed | None = Field(None, description=_SEED)


Connectivity = Annotated[
    Union[AllToAll, OneToOne, FixedProbability, FromList, Local2D, BlockRandom],
    Field(discriminator="kind"),
]


# ------------------------------------------------------------------ populations
#: An activation function's name (``blursim list activations``).
ActivationName = Annotated[Name, RegistryNames("blursim.vocab", "ACTIVATIONS")]
ActivationSpec = Union[ActivationName, Annotated[list[ActivationName], Field(max_length=64)]]


class Population(_Strict):
    """A population of ``size`` neurons, each with ``k`` states (DESIGN §1).

    ``forward_activation``/``backward_activation`` name one activation for all
    states, or a list of ``k`` names, one per state (the generalised phi of
    eq. 4, e.g. ``["sigmoid", "sigmoid_derivative"]``). ``normalization``
    applies the batch normalisation N of Sec. 3.4 on the forward pass, the
    (additive) backward pass, or both. ``genome`` names the genome group that
    supplies the neuron gates ``f``, ``eta`` and the normalisation gain/shift.
    """

    name: Name = Field(description="the population's name, unique in the network; projections name it in 'from' and 'to'")
    size: int = Field(ge=1, le=MAX_POPULATION, description="number of neurons n_p (each has k states)")
    role: Literal["input", "hidden", "output"] = Field(
        description="input: state 0 is written by the data, never updated by the rules; hidden: "
        "updated by eq. (5)-(6); output: also receives the feedback (Sec. 3.3) and gives the "
        "prediction (state 0)")
    forward_activation: ActivationSpec = Field(
        "tanh", description="sigma_fwd of the forward pass, eq. (5): one activation for all k states, or a "
        "list of k names, one per state (the generalised phi of eq. 4, e.g. [\"sigmoid\", \"sigmoid_derivative\"])")
    backward_activation: ActivationSpec = Field(
        "identity", description="sigma_bwd of the backward pass, eq. (6): one activation for all k states, "
        "or a list of k names, one per state")
    normalization: Literal["none", "forward", "backward", "both"] = Field(
        "none", description="batch normalisation N (Sec. 3.4; per neuron and state over the batch, then "
        "the genome's norm_gain and norm_shift) on the forward pass, the additive backward pass, or both")
    genome: Name = Field("default", description="the genome group that gives this population its neuron "
                         "gates f, eta and its norm_gain, norm_shift")
    grid: tuple[Annotated[int, Field(ge=1, le=MAX_POPULATION)], Annotated[int, Field(ge=1, le=MAX_POPULATION)]] | None = Field(
        None, description="[rows, cols] layout of the neurons on a 2-D grid, rows * cols = size (needed by "
        "local2d connectivity)")

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
    """Synapses from population ``from`` to population ``to`` (DESIGN §1).

    ``pathway`` (DESIGN §6; docs/zoo.md): ``"both"`` (default) carries the forward pass
    (eq. 5, synapses ``W``) and the backward pass (eq. 6, ``V`` or ``Wᵀ``); ``"forward"``
    carries only the forward pass (no backward signal flows back through it); ``"feedback"``
    carries only the backward pass, from ``from`` to ``to``: it adds to the backward drive of
    ``to`` the states of ``from`` through its own untied synapses (``rules.tied`` false) and
    has no forward synapses and no bias -- e.g. the output -> hidden pathways of direct
    feedback alignment, frozen with ``rules.backward_synapses: "frozen"``.
    """

    name: Name | None = Field(None, description="the projection's name in messages and recordings (default \"FROM->TO\")")
    from_: Name = Field(alias="from", description="presynaptic population i")
    to: Name = Field(description="postsynaptic population j")
    connectivity: Connectivity = Field(default_factory=AllToAll, description="the connectivity mask M_q "
                                       "(default all_to_all); entries outside it are 0 and stay 0")
    bias: bool = Field(True, description="append a bias unit (every state 1) as an extra presynaptic row "
                       "of the forward synapses W_q (DESIGN §1)")
    genome: Name = Field("default", description="the genome group that gives this projection nu, mu, "
                         "nu_tilde, mu_tilde, f_tilde, eta_tilde and the optional synapse parameters")
    pathway: Literal["both", "forward", "feedback"] = Field(
        "both", description="which passes the projection carries: both (forward W and backward V), "
        "forward only, or feedback: the backward pass only, from 'from' to 'to' (no forward synapses, "
        "no bias; needs untied synapses)")

    @model_validator(mode="after")
    def _feedback_has_no_bias(self):
        if self.pathway == "feedback":
            if self.bias and "bias" in self.model_fields_set:
                raise error_at(("bias",), "a feedback pathway has no forward synapses, so no bias; "
                               "remove \"bias\" or set it to false")
            self.bias = False
        return self

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

    distribution: Literal["normal", "uniform", "zeros"] = Field(
        "normal", description="distribution of the initial synapses: standard normal, uniform on [-1, 1], or all zero")
    scale: float = Field(default=1.0, ge=0.0, le=MAX_INIT_SCALE, description="multiplier of the drawn values")
    fan_in: bool = Field(True, description="divide the scale by sqrt(fan): fan = n_pre + bias for W, n_post for V")
    bias: Literal["zeros", "same"] = Field("zeros", description="bias synapses start at zero, or are drawn like the others")


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

    backward_update: Literal["additive", "multiplicative", "multiplicative_second_state"] = Field(
        "additive", description="the backward neuron update, eq. (6): additive a <- sigma_bwd(N(f a + eta y)); "
        "multiplicative a <- sigma_bwd(f a * y); multiplicative_second_state keeps state 0 and multiplies "
        "states >= 1 by y (the backprop genome's mode, eq. 4)"
    )
    tied: bool = Field(False, description="the paper's symmetric synapses: V is not stored, it is always the "
                       "transpose of W (bias row excluded)")
    backward_synapses: Literal["learned", "frozen", "mirror"] = Field(
        "learned", description="untied V (docs/rule_variants.md): learned by eq. (7) with the roles swapped; "
        "frozen: never changes (feedback alignment's fixed B); mirror: receives the transpose of W's "
        "Hebbian term (Kolen-Pollack)")
    shared_channels: bool = Field(False, description="the paper's single-state synapses: all k channels of a "
                                  "synapse hold one value")
    shared_update: Literal["mean", "channel0"] = Field(
        "mean", description="with shared_channels, the stored update: the mean over channels of eq. (7)'s "
        "updates (exactly SGD for the backprop genome), or channel 0's (the authors' published code)")
    feedback: Annotated[Name, RegistryNames("blursim.vocab", "FEEDBACK")] = Field(
        "target", description="what the output populations receive before the backward pass (Sec. 3.3; "
        "blursim list feedback): target writes the coded targets into state 1; error_mse and "
        "error_softmax write the negative loss gradient")
    target_coding: Literal["pm1", "onehot"] = Field(
        "pm1", description="coding of class targets: +1 for the true class and -1 (pm1) or 0 (onehot) otherwise")
    oja: Literal["none", "weights", "activity"] = Field(
        "none", description="the Oja-like decay O of eq. (8), scaled by the genome's oja_alpha: weights "
        "-|alpha| W sum W^2 (eq. 8), activity -|alpha| W rho_b Q_b^2 (classic Oja); none: no term")
    synapse_normalization: Literal["none", "activations", "stored"] = Field(
        "none", description="App. C.6: W' = rescale * W / sqrt(sum W^2 + eps) per postsynaptic neuron and "
        "channel, used only when computing activations, or written to the stored synapses each step")
    saturation: bool = Field(False, description="Sec. 3.4: after each update W <- s tanh(W / s), s the "
                             "genome's saturation")
    reset_neurons: bool = Field(True, description="set every non-input state to 0 at the start of each "
                                "training step (evaluation always starts from reset states)")
    batch_reduction: Literal["sum", "mean"] = Field(
        "sum", description="rho of eq. (7): the Hebbian term H sums (the paper) or averages over the batch")
    schedule: Literal["topological", "synchronous"] = Field(
        "topological", description="topological: populations in graph order (the graph must be acyclic); "
        "synchronous: every population updated at once from the previous sweep's states (any graph, "
        "recurrent ones included)")
    sweeps: int = Field(default=1, ge=1, le=MAX_SWEEPS, description="with the synchronous schedule, forward "
                        "(and backward) sweeps per step; use at least the network's depth")
    synapse_init: SynapseInit = Field(default_factory=SynapseInit, description="how initial synapses are drawn")
    norm_eps: float = Field(default=1e-5, gt=0.0, le=1.0, description="epsilon of the normalisation N "
                            "(Sec. 3.4), added to the batch variance")
    synapse_norm_eps: float = Field(default=1e-8, gt=0.0, le=1.0, description="epsilon of synapse "
                                    "normalisation (App. C.6), added to the sum of squares")

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

    format: Literal["blursim.network/1"] = Field(FORMAT_NETWORK, description="document type and version (may be omitted in a network spec)")
    name: Label = Field("", description="the network's name (shown in summaries and graphs)")
    description: Text = Field("", description="free text for the reader")
    k: int = Field(ge=1, le=64, description="states per neuron (the paper's k; 2 for the backprop genome)")
    seed: Seed = Field(0, description="root seed of the random wiring (synapse initialisation and data "
                       "take their seeds from the run)")
    populations: list[Population] = Field(min_length=1, description="groups of neurons")
    projections: list[Projection] = Field(default_factory=list, description="synapses between populations")
    rules: Rules = Field(default_factory=Rules, description="how one BLUR step is computed (DESIGN §2; eq. 5-8)")
