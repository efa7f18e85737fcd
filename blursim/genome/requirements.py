"""What a genome preset needs from the network spec: rules, activations, ``k``.

A preset is a genome *and* the rules under which that genome means what its
name says: the backprop genome of eq. (4) is SGD only with tied, shared-channel
synapses, the ``multiplicative_second_state`` backward update, error feedback
and per-state activations ``(σ, σ')`` (DESIGN §3); Oja's rule needs the
``activity`` Oja term of eq. (8). Run on a spec with the paper's general rules
the same numbers compute something else, silently. So every preset declares
its :class:`Requirements`, and

- :func:`check_preset_rules` lists the :class:`SpecChange` s a spec needs
  (empty: the spec is fine as it is);
- :func:`apply_preset_rules` returns the spec with those changes made;
- :func:`with_preset` is what ``blursim run --preset NAME`` does: the genome,
  and the spec as it is, or with the preset's rules applied when asked
  (``apply_rules=True``, the ``--apply-preset-rules`` flag), or a
  :class:`PresetRulesError` naming every change, on one line.

Requirements name only what the preset's definition needs; everything else
(batch reduction, synapse initialisation, connectivity, sizes) stays the
user's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from blursim.errors import SpecError

__all__ = [
    "SpecChange",
    "Requirements",
    "PresetRulesError",
    "PresetSetup",
    "check_preset_rules",
    "apply_preset_rules",
    "preset_spec",
    "with_preset",
    "describe_changes",
]


@dataclass(frozen=True)
class SpecChange:
    """One field of a network spec that a preset needs changed: ``path`` (JSON path, e.g.
    ``$.rules.tied``), the value the spec ``have`` s and the value the preset ``want`` s."""

    path: str
    have: Any
    want: Any

    def __str__(self) -> str:
        if self.have is None:  # a new entry (e.g. a feedback pathway appended to the projections)
            return f"{self.path}: add {json.dumps(self.want)}"
        return f"{self.path}: {json.dumps(self.have)} -> {json.dumps(self.want)}"


def describe_changes(changes: Iterable[SpecChange]) -> str:
    """``"$.rules.tied: false -> true; $.k: 3 -> 2"`` (one line)."""
    return "; ".join(str(c) for c in changes)


# ----------------------------------------------------------------- requirements
def _names(act: Any) -> list[str]:
    return [act] if isinstance(act, str) else list(act)


def _has_outgoing(spec: Any, name: str) -> bool:
    """Whether population ``name`` is updated by the backward pass (eq. 6): it sends a projection
    that carries the backward pass, or receives a feedback pathway (DESIGN §6)."""
    return any((q.from_ == name and q.pathway == "both") or (q.to == name and q.pathway == "feedback")
               for q in spec.projections)


@dataclass(frozen=True)
class Requirements:
    """What a preset needs from a network spec.

    ``k``: the number of states (``None``: any). ``rules``: Rules fields that must
    equal the given value. ``choices``: Rules fields that must take one of the
    listed values (the first is the one applied). ``populations``: a function
    ``(spec, population index) -> [SpecChange]`` for per-population needs
    (activations, normalisation). ``custom``: ``spec -> [SpecChange]`` for needs that
    involve several fields. ``note``: one line on why (``blursim list -v``,
    docs/zoo.md).
    """

    k: int | None = None
    rules: dict[str, Any] = field(default_factory=dict)
    choices: dict[str, Sequence[Any]] = field(default_factory=dict)
    populations: Callable[[Any, int], list[SpecChange]] | None = None
    custom: Callable[[Any], list[SpecChange]] | None = None
    note: str = ""

    def changes(self, spec: Any) -> list[SpecChange]:
        """Every change ``spec`` needs (empty when it meets the requirements)."""
        out: list[SpecChange] = []
        if self.k is not None and spec.k != self.k:
            out.append(SpecChange("$.k", spec.k, self.k))
        r = spec.rules
        for key, want in self.rules.items():
            have = getattr(r, key)
            if have != want:
                out.append(SpecChange(f"$.rules.{key}", have, want))
        for key, allowed in self.choices.items():
            have = getattr(r, key)
            if have not in allowed:
                out.append(SpecChange(f"$.rules.{key}", have, allowed[0]))
        if self.custom is not None:
            out.extend(self.custom(spec))
        if self.populations is not None:
            for i in range(len(spec.populations)):
                if spec.populations[i].role != "input":
                    out.extend(self.populations(spec, i))
        return out


def identity_backward(spec: Any, i: int, everywhere: bool = False) -> list[SpecChange]:
    """A population with outgoing projections keeps the states of its backward pass only with
    ``backward_activation`` identity (``everywhere``: every population, as DESIGN §3 states it,
    although an output's is never used); no normalisation anywhere (DESIGN §3, §6)."""
    p = spec.populations[i]
    out = []
    if p.normalization != "none":
        out.append(SpecChange(f"$.populations[{i}].normalization", p.normalization, "none"))
    used = everywhere or _has_outgoing(spec, p.name)
    if used and any(n != "identity" for n in _names(p.backward_activation)):
        out.append(SpecChange(f"$.populations[{i}].backward_activation", p.backward_activation, "identity"))
    return out


def backprop_activations(spec: Any, i: int) -> list[SpecChange]:
    """DESIGN §3: hidden populations ``[σ, σ_derivative]`` (state 1 carries σ'(z)), outputs
    ``["identity", "one"]`` (or ``[σ, σ_derivative]`` under ``error_mse``, whose feedback
    multiplies the error by state 1), backward activation identity, no normalisation. A hidden
    activation without a registered derivative (e.g. ``relu_tanh``) is replaced by
    ``["tanh", "tanh_derivative"]`` -- a change of the model that the change list shows."""
    from blursim.vocab.activations import ACTIVATIONS

    p = spec.populations[i]
    out = identity_backward(spec, i, everywhere=True)
    where = f"$.populations[{i}].forward_activation"
    names = _names(p.forward_activation)
    sigma = names[0]
    derivative = f"{sigma}_derivative"
    paired = derivative in ACTIVATIONS and names == [sigma, derivative]
    if p.role == "output":
        if names != ["identity", "one"] and not (paired and spec.rules.feedback == "error_mse"):
            out.append(SpecChange(where, p.forward_activation, ["identity", "one"]))
    elif _has_outgoing(spec, p.name) and not paired:
        # an activation without a registered derivative cannot carry σ' in state 1: tanh can
        want = [sigma, derivative] if derivative in ACTIVATIONS else ["tanh", "tanh_derivative"]
        out.append(SpecChange(where, p.forward_activation, want))
    return out


# ------------------------------------------------------------------- checking
class PresetRulesError(SpecError):
    """A preset was asked to run on a spec whose rules it does not have (the message lists
    every change, and how to have them applied)."""


def _requirements(name: str) -> Requirements | None:
    from blursim.genome.presets import PRESET_REQUIREMENTS, PRESETS

    PRESETS.get(name, path="--preset")
    return PRESET_REQUIREMENTS.get(name)


def check_preset_rules(name: str, spec: Any) -> list[SpecChange]:
    """The changes network ``spec`` needs before preset ``name`` means what its name says
    (empty: none; presets without requirements, e.g. ``random``, never need any)."""
    from blursim.spec import load_network

    req = _requirements(name)
    return [] if req is None else req.changes(load_network(spec))


def _set(doc: dict, path: str, value: Any) -> None:
    """Write ``value`` at JSON path ``$.a.b[3].c`` of the plain document ``doc``."""
    import re

    parts = re.findall(r"\.([A-Za-z_][A-Za-z_0-9]*)|\[(\d+)\]", path[1:])
    node: Any = doc
    keys = [k if k else int(i) for k, i in parts]
    for key in keys[:-1]:
        node = node[key]
    if isinstance(node, list) and keys[-1] == len(node):  # one past the end: append
        node.append(value)
    else:
        node[keys[-1]] = value


def apply_preset_rules(name: str, spec: Any) -> tuple[Any, list[SpecChange]]:
    """``(new spec, changes)``: ``spec`` with every change preset ``name`` needs made (the
    input is not modified); ``changes`` is what was changed (empty: ``spec`` itself)."""
    from blursim.spec import NetworkSpec, load_network

    spec = load_network(spec)
    changes = check_preset_rules(name, spec)
    if not changes:
        return spec, []
    doc = spec.model_dump(mode="json", by_alias=True)
    for c in changes:
        _set(doc, c.path, c.want)
    new = NetworkSpec.model_validate(doc)
    if new.k != spec.k:  # per-state activation lists must follow k
        new = apply_preset_rules(name, new)[0]
    left = check_preset_rules(name, new)
    if left:  # a requirement that applying cannot meet: a bug in the requirement, say so
        raise SpecError(f"preset {name!r}: applying its rules left {describe_changes(left)}",
                        path="--apply-preset-rules")
    return new, changes


def preset_spec(
    name: str, spec: Any, *, apply_rules: bool = False, source: str | None = None,
    flag: str = "--apply-preset-rules",
) -> tuple[Any, list[SpecChange]]:
    """``(spec to run, changes made)`` for preset ``name`` on network ``spec``: ``spec`` itself
    when it has the rules the preset needs; with ``apply_rules`` the spec with them applied;
    otherwise a :class:`PresetRulesError` naming each change on one line (``source``: the
    spec's file, for the message; ``flag``: how the caller asks to apply them)."""
    from blursim.spec import load_network

    spec = load_network(spec)
    changes = check_preset_rules(name, spec)
    if changes and not apply_rules:
        raise PresetRulesError(
            f"preset {name!r} needs rules this network does not have; change {describe_changes(changes)}",
            source=source, hint=f"Edit the spec, or pass {flag} to run with these changes.",
        )
    return apply_preset_rules(name, spec) if changes else (spec, [])


@dataclass(frozen=True)
class PresetSetup:
    """What :func:`with_preset` returns: the spec to run, the genome, and the changes made."""

    spec: Any
    genome: Any
    changes: list[SpecChange]


def with_preset(
    spec: Any, name: str, *, apply_rules: bool = False, seed: int = 0, source: str | None = None,
    flag: str = "apply_rules=True", **options: Any,
) -> PresetSetup:
    """Preset ``name`` (with ``options``, e.g. ``lr``) for network ``spec``: the Python side of
    ``--preset NAME [--apply-preset-rules]``.

    When ``spec`` lacks rules the preset needs: with ``apply_rules`` the preset's rules are
    applied (``changes`` says which); without it a :class:`PresetRulesError` names each change.
    """
    from blursim.genome.presets import make_preset

    spec, changes = preset_spec(name, spec, apply_rules=apply_rules, source=source, flag=flag)
    # the genome groups the compiled program will use (blursim.graph.compile): non-input populations'
    # and projections' (the genome layer sits below the graph layer, so they are read from the spec)
    groups = sorted({p.genome for p in spec.populations if p.role != "input"} | {q.genome for q in spec.projections})
    genome = make_preset(name, k=spec.k, groups=groups, seed=seed, **options)
    return PresetSetup(spec, genome, changes)
