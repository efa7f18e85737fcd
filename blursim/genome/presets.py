"""Genome presets: the rule zoo (``backprop``, ``feedback_alignment``,
``direct_feedback_alignment``, ``kolen_pollack``, ``hebbian``, ``oja``) and ``random``.

A preset is a function ``f(k=..., groups=..., **options) -> GenomeSpec``
registered in :data:`PRESETS` with its options model: the options a document
may give (``{"kind": "preset", "name": "random", "options": {"seed": 3}}``)
and ``make_preset`` accepts. ``k`` and ``groups`` come from the network, not
from the options.

A preset of a known learning rule also declares the rules it needs from the
network spec (:data:`PRESET_REQUIREMENTS`, a
:class:`~blursim.genome.requirements.Requirements` per preset): the genome
alone is that rule only under those rules (DESIGN §3, §6). ``blursim run
--preset NAME`` refuses a spec that lacks them, naming each change, or applies
them with ``--apply-preset-rules`` (:func:`~blursim.genome.requirements.with_preset`).
Citations and the mapping of every rule to eq. (5)-(8): ``docs/zoo.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from pydantic import Field

from blursim.errors import GenomeError
from blursim.genome.requirements import (
    Requirements,
    SpecChange,
    backprop_activations,
    identity_backward,
)
from blursim.registry import Registry
from blursim.spec.genome import GenomeParams, GenomeSpec
from blursim.spec.options import Options, validate_options

PRESETS: Registry[Callable[..., GenomeSpec]] = Registry("genome preset")

#: preset name -> the rules it needs from the network spec (presets without an entry need none).
PRESET_REQUIREMENTS: dict[str, Requirements] = {}


class BackpropOptions(Options):
    """Options of the ``backprop`` preset."""

    lr: float = Field(0.1, ge=-1e6, le=1e6, description="learning rate: the synapse update gain eta_tilde")


class RandomOptions(Options):
    """Options of the ``random`` preset."""

    seed: int = Field(0, ge=0, description="seed of the draw")
    scale: float = Field(
        0.5, gt=0.0, le=100.0, description="standard deviation of the mixing matrices"
    )
    lr: float | None = Field(
        None, ge=-1e6, le=1e6, description="eta_tilde of every group (null: drawn from U(0.005, 0.05))"
    )


class HebbianOptions(Options):
    """Options of the ``hebbian`` and ``oja`` presets."""

    lr: float = Field(0.01, ge=-1e6, le=1e6, description="learning rate eta: the synapse update gain eta_tilde")


#: The rules of DESIGN §3 that backprop and its relatives (FA, KP, DFA) share.
_BACKPROP_RULES = {"shared_channels": True, "backward_update": "multiplicative_second_state", "oja": "none",
                   "synapse_normalization": "none", "saturation": False, "reset_neurons": True,
                   "schedule": "topological"}
_ERROR_FEEDBACK = {"feedback": ("error_softmax", "error_mse")}
_BACKPROP_NOTE = ("k = 2, shared channels, multiplicative_second_state, error feedback, hidden [σ, σ'], "
                  "outputs [identity, one], backward identity, no normalisation/Oja/saturation")

PRESET_REQUIREMENTS["backprop"] = Requirements(
    k=2, rules={**_BACKPROP_RULES, "tied": True, "backward_synapses": "learned"}, choices=_ERROR_FEEDBACK,
    populations=backprop_activations, note="DESIGN §3: tied, " + _BACKPROP_NOTE,
)
PRESET_REQUIREMENTS["feedback_alignment"] = Requirements(
    k=2, rules={**_BACKPROP_RULES, "tied": False, "backward_synapses": "frozen"}, choices=_ERROR_FEEDBACK,
    populations=backprop_activations,
    note="Lillicrap et al. 2016 (DESIGN §6): untied backward synapses that never change "
         "(backward_synapses frozen), " + _BACKPROP_NOTE,
)
PRESET_REQUIREMENTS["kolen_pollack"] = Requirements(
    k=2, rules={**_BACKPROP_RULES, "tied": False, "backward_synapses": "mirror"}, choices=_ERROR_FEEDBACK,
    populations=backprop_activations,
    note="Kolen & Pollack 1994, Akrout et al. 2019 (DESIGN §6): untied backward synapses that receive W's "
         "update transposed (backward_synapses mirror), " + _BACKPROP_NOTE,
)



def _direct_feedback(spec) -> list[SpecChange]:
    """Direct feedback alignment (Nøkland 2016; DESIGN §6): the output error reaches every hidden
    population straight through a feedback pathway (one per output and hidden population, added
    where missing), and no backward signal flows through the forward projections
    (``pathway: "forward"``)."""
    out = [SpecChange(f"$.projections[{i}].pathway", "both", "forward")
           for i, q in enumerate(spec.projections) if q.pathway == "both"]
    have = {(q.from_, q.to) for q in spec.projections if q.pathway == "feedback"}
    n = len(spec.projections)
    for o in (p.name for p in spec.populations if p.role == "output"):
        for h in (p.name for p in spec.populations if p.role == "hidden"):
            if (o, h) not in have:
                out.append(SpecChange(f"$.projections[{n}]", None, {"from": o, "to": h, "pathway": "feedback"}))
                n += 1
    return out


PRESET_REQUIREMENTS["direct_feedback_alignment"] = Requirements(
    k=2, rules={**_BACKPROP_RULES, "tied": False, "backward_synapses": "frozen"}, choices=_ERROR_FEEDBACK,
    custom=_direct_feedback, populations=backprop_activations,
    note="Nøkland 2016 (DESIGN §6): a frozen feedback pathway from every output to every hidden population, "
         "forward projections that carry no backward pass, untied frozen backward synapses, " + _BACKPROP_NOTE,
)


class KolenPollackOptions(Options):
    """Options of the ``kolen_pollack`` preset."""

    lr: float = Field(0.1, ge=-1e6, le=1e6, description="learning rate: the synapse update gain eta_tilde")
    decay: float = Field(0.001, ge=0.0, lt=1.0,
                         description="weight decay lambda of W and V: the synapse keep gate f_tilde = 1 - decay")


def _backprop_params(k: int, lr: float, f_tilde: float = 1.0, what: str = "backprop") -> GenomeParams:
    """The genome of eq. (4) (DESIGN §3) with ``η̃ = lr`` and keep gate ``f̃``."""
    if k != 2:
        raise GenomeError(
            f"the {what} preset is defined for k = 2 states", value=k, path="k",
            hint="Use a network spec with \"k\": 2.",
        )
    return GenomeParams(
        f=1.0, eta=1.0, f_tilde=float(f_tilde), eta_tilde=float(lr),
        nu=[[1.0, 0.0], [1.0, 0.0]], mu=[[0.0, 0.0], [0.0, 1.0]],
        nu_tilde=[[1.0, 1.0], [0.0, 0.0]], mu_tilde=[[0.0, 1.0], [0.0, 1.0]],
    )


@PRESETS.register("backprop", options=BackpropOptions)
def backprop_genome(
    k: int = 2, lr: float = 0.1, groups: Iterable[str] = ("default",), seed: int | None = None
) -> GenomeSpec:
    """Backpropagation (Rumelhart, Hinton & Williams 1986): the genome of eq. (4), DESIGN §3 (k = 2).

    ``nu = [[1,0],[1,0]]``, ``mu = [[0,0],[0,1]]``, ``nu_tilde = [[1,1],[0,0]]``,
    ``mu_tilde = [[0,1],[0,1]]``, ``f = eta = f_tilde = 1``, ``eta_tilde = lr``.
    With the rules of DESIGN §3 (tied, shared channels, multiplicative second
    state backward update, per-state activations ``(sigma, sigma')``) one BLUR
    step is one SGD step with learning rate ``lr``.
    """
    params = _backprop_params(k, lr)
    return GenomeSpec(k=2, groups={g: params for g in groups}, meta={"preset": "backprop", "lr": lr})


@PRESETS.register("feedback_alignment", options=BackpropOptions)
def feedback_alignment_genome(k: int = 2, lr: float = 0.1, groups: Iterable[str] = ("default",)) -> GenomeSpec:
    """Feedback alignment (Lillicrap, Cownden, Tweed & Akerman, Nat. Commun. 2016): backprop through fixed random V.

    The backprop genome of eq. (4) on untied synapses whose backward half never changes
    (``rules.backward_synapses: "frozen"``): ``δ_l = (B_{l+1} δ_{l+1}) ⊙ f'(z_l)`` with
    ``B = V`` drawn at initialisation (DESIGN §6).
    """
    params = _backprop_params(k, lr, what="feedback_alignment")
    return GenomeSpec(k=2, groups={g: params for g in groups}, meta={"preset": "feedback_alignment", "lr": lr})


@PRESETS.register("direct_feedback_alignment", options=BackpropOptions)
def direct_feedback_alignment_genome(
    k: int = 2, lr: float = 0.1, groups: Iterable[str] = ("default",)
) -> GenomeSpec:
    """Direct feedback alignment (Nøkland, NeurIPS 2016): the output error sent to every hidden layer by fixed random synapses.

    The backprop genome of eq. (4) on a network whose hidden populations receive the output's
    state 1 (``−e``) through frozen feedback pathways (``pathway: "feedback"``,
    ``rules.backward_synapses: "frozen"``) and nothing through the forward projections
    (``pathway: "forward"``): ``δ_l = (B_l e) ⊙ f'(z_l)`` (DESIGN §6).
    """
    params = _backprop_params(k, lr, what="direct_feedback_alignment")
    return GenomeSpec(k=2, groups={g: params for g in groups},
                      meta={"preset": "direct_feedback_alignment", "lr": lr})


@PRESETS.register("kolen_pollack", options=KolenPollackOptions)
def kolen_pollack_genome(
    k: int = 2, lr: float = 0.1, decay: float = 0.001, groups: Iterable[str] = ("default",)
) -> GenomeSpec:
    """Kolen-Pollack (Kolen & Pollack 1994; Akrout et al., NeurIPS 2019): V learns W's update transposed, both decay.

    The backprop genome of eq. (4) with ``f̃ = 1 − decay`` on untied synapses whose backward
    half receives the transpose of the forward Hebbian term (``rules.backward_synapses:
    "mirror"``): ``ΔW = −η δ xᵀ − λ W``, ``ΔV = −η δ xᵀ − λ V`` in ``V``'s layout, so
    ``W − Vᵀ`` shrinks by ``(1 − λ)`` every step (DESIGN §6).
    """
    params = _backprop_params(k, lr, 1.0 - float(decay), what="kolen_pollack")
    return GenomeSpec(k=2, groups={g: params for g in groups},
                      meta={"preset": "kolen_pollack", "lr": lr, "decay": decay})


def _state0_only_channels(spec) -> list[SpecChange]:
    """Shared channels averaged over ``k`` would divide a state-0 rule by ``k``: with shared
    channels the Hebbian rules need channel 0's update (``shared_update: "channel0"``)."""
    r = spec.rules
    if r.shared_channels and r.shared_update != "channel0":
        return [SpecChange("$.rules.shared_update", r.shared_update, "channel0")]
    return []


_HEBBIAN_RULES = {"synapse_normalization": "none", "saturation": False, "reset_neurons": True,
                  "schedule": "topological"}
_HEBBIAN_NOTE = ("state 0 only: topological schedule, reset neurons, no normalisation/saturation, "
                 "backward_update additive or multiplicative_second_state with backward identity "
                 "(the backward pass leaves state 0 as the forward pass set it)")

PRESET_REQUIREMENTS["hebbian"] = Requirements(
    rules={**_HEBBIAN_RULES, "oja": "none"},
    choices={"backward_update": ("additive", "multiplicative_second_state")},
    custom=_state0_only_channels, populations=identity_backward,
    note="Hebb (1949) on " + _HEBBIAN_NOTE + "; oja none",
)
PRESET_REQUIREMENTS["oja"] = Requirements(
    rules={**_HEBBIAN_RULES, "oja": "activity"},
    choices={"backward_update": ("additive", "multiplicative_second_state")},
    custom=_state0_only_channels, populations=identity_backward,
    note="Oja (1982) on " + _HEBBIAN_NOTE + "; oja activity (eq. 8 / App. B with alpha = 1)",
)


def _hebbian_params(k: int, lr: float, oja: bool) -> GenomeParams:
    """State 0 is the activity: ``ν = μ̃ = ν̃ = e₀e₀ᵀ`` (``z = W x``, ``P = x``, ``Q = y``),
    ``μ = 0`` (nothing flows backwards), ``f = η = f̃ = 1``, ``η̃ = lr``."""
    if k < 2:
        raise GenomeError("the Hebbian presets are defined for k >= 2 states (state 1 takes the feedback)",
                          value=k, path="k", hint="Use a network spec with \"k\": 2.")
    e00 = np.zeros((k, k))
    e00[0, 0] = 1.0
    return GenomeParams(
        f=1.0, eta=1.0, f_tilde=1.0, eta_tilde=float(lr), nu=e00.tolist(), mu=np.zeros((k, k)).tolist(),
        nu_tilde=e00.tolist(), mu_tilde=e00.tolist(), **({"oja_alpha": 1.0} if oja else {}),
    )


@PRESETS.register("hebbian", options=HebbianOptions)
def hebbian_genome(k: int = 2, lr: float = 0.01, groups: Iterable[str] = ("default",)) -> GenomeSpec:
    """Plain Hebbian learning, ΔW = η x_l x_{l-1}ᵀ summed over the batch (Hebb 1949; DESIGN §6).

    On state 0 only: the forward pass computes ``x_l = σ(W x_{l-1})``, nothing flows
    backwards, and eq. (7) with ``P = x_{l-1}``, ``Q = x_l`` is ``H = ρ_b x_{l-1} x_lᵀ``.
    Unsupervised: the feedback written into the outputs' state 1 is never read.
    """
    p = _hebbian_params(k, lr, oja=False)
    return GenomeSpec(k=k, groups={g: p for g in groups}, meta={"preset": "hebbian", "lr": lr})


@PRESETS.register("oja", options=HebbianOptions)
def oja_genome(k: int = 2, lr: float = 0.01, groups: Iterable[str] = ("default",)) -> GenomeSpec:
    """Oja's rule, Δw_i = η y_i (x − y_i w_i) summed over the batch (Oja, J. Math. Biol. 1982; DESIGN §6).

    The ``hebbian`` genome plus eq. (8)'s Oja term in ``activity`` mode with ``α = 1``:
    ``η̃ (H + O) = η̃ ρ_b (x yᵀ − W y²)`` -- exactly Oja's rule for ``η̃ > 0`` (the term is
    multiplied by ``sign(η̃)``, so for ``η̃ < 0`` it is anti-Hebbian with Oja's decay).
    """
    p = _hebbian_params(k, lr, oja=True)
    return GenomeSpec(k=k, groups={g: p for g in groups}, meta={"preset": "oja", "lr": lr})


@PRESETS.register("random", options=RandomOptions)
def random_genome(
    k: int = 2, seed: int = 0, groups: Iterable[str] = ("default",), scale: float = 0.5,
    lr: float | None = None,
) -> GenomeSpec:
    """A random genome drawn from its seed (no rule of its own: runs on any spec).

    Mixing matrices ~ N(0, scale^2); ``f`` ~ U(0, 1); ``eta`` ~ U(0.5, 1.5);
    ``f_tilde`` ~ U(0.9, 1); ``eta_tilde`` ~ U(0.005, 0.05) (``lr`` overrides it).
    Each group gets its own draw.
    """
    if int(seed) < 0:
        raise GenomeError("the random genome's seed must be >= 0", value=seed, path="seed")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x6E6F6D65]))
    out = {}
    for g in groups:
        out[g] = GenomeParams(
            f=float(rng.uniform(0, 1)),
            eta=float(rng.uniform(0.5, 1.5)),
            f_tilde=float(rng.uniform(0.9, 1.0)),
            eta_tilde=float(lr if lr is not None else rng.uniform(0.005, 0.05)),
            nu=(rng.normal(0, scale, (k, k))).tolist(),
            mu=(rng.normal(0, scale, (k, k))).tolist(),
            nu_tilde=(rng.normal(0, scale, (k, k))).tolist(),
            mu_tilde=(rng.normal(0, scale, (k, k))).tolist(),
        )
    return GenomeSpec(k=k, groups=out, meta={"preset": "random", "seed": seed, "scale": scale})


def make_preset(
    name: str, *, k: int, groups: Iterable[str], seed: int = 0, path: str = "--preset", **kw: Any
) -> GenomeSpec:
    """Build preset ``name`` for a network with ``k`` states and the given groups.

    ``kw`` are the preset's options (validated against its options model; an
    error points at ``<path>.options.<option>``); ``seed`` is passed to presets
    that take one (``random``) and ignored by the others.
    """
    fn = PRESETS.get(name, path=path)
    model = PRESETS.options(name)
    if "seed" in model.model_fields:
        kw = {"seed": seed, **kw}
    opts = validate_options(model, kw, what=f"genome preset {name!r}", path=path)
    return fn(k=k, groups=list(groups), **opts.model_dump())
