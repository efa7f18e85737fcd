"""Failures that explain themselves: where a law broke, by how much, and how to replay it.

A :class:`LawViolation` is an ``AssertionError`` whose message names

* the law (its registered name and its one-sentence statement),
* the variable and its index — ``W`` of a projection at ``[pre, post]`` (or
  the bias row), ``b`` at ``[post]``, ``V`` at ``[post, pre]``, the state
  channel ``c``, the species ``s``, the replica ``r`` and the training step,
* the value found, the value the law expects, the tolerance, and how many
  entries broke it,

and carries the :class:`~blursim.testing.counterexample.Counterexample`
(spec, genome, data, law) that reproduces it: ``err.save(DIR)`` writes it,
``blursim replay DIR`` replays it.

Synapse arrays are compared in *label layout*, the internal dense layout with
the channel axis moved last (DESIGN §1's index order): ``W`` ``(S, R, n_pre,
n_post, kw)``, ``b`` ``(S, R, n_post, kw)``, ``V`` ``(S, R, n_post, n_pre,
kw)``, ``kw = 1`` with shared channels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Environment variable: when set to a folder, every law violation is saved to ``$DIR/<law>/``.
SAVE_ENV = "BLURSIM_COUNTEREXAMPLES"

_AXES = {"W": ("pre", "post"), "b": ("post",), "V": ("post", "pre")}


@dataclass
class Where:
    """The place a law broke: variable, projection, synapse index, channel, species, replica, step."""

    variable: str  # "W", "b", "V", or a free-form name ("Q", "invariant")
    projection: str | None = None
    index: dict[str, int] = field(default_factory=dict)  # e.g. {"pre": 1, "post": 0}
    channel: int | None = None
    shared_channels: bool = False
    species: int | None = None
    n_species: int | None = None
    replica: int | None = None
    step: int | None = None
    extra: str = ""
    population: str | None = None  # neuron states: the population's name
    state: int | None = None  # neuron states: the state index c

    def __str__(self) -> str:
        names = {"W": "forward synapse W", "b": "bias b", "V": "backward synapse V", "a": "neuron state a"}
        parts = [names.get(self.variable, self.variable)]
        if self.projection is not None:
            parts[0] += f" of projection {self.projection!r}"
        if self.population is not None:
            parts[0] += f" of population {self.population!r}"
        if self.index:
            parts[0] += " [" + ", ".join(f"{k}={v}" for k, v in self.index.items()) + "]"
        if self.extra:
            parts[0] += " " + self.extra
        if self.state is not None:
            parts.append(f"state {self.state}")
        if self.channel is not None:
            parts.append("channel shared by all states" if self.shared_channels else f"channel {self.channel}")
        if self.species is not None:
            parts.append(f"species {self.species}" + (f" of {self.n_species}" if self.n_species else ""))
        if self.replica is not None:
            parts.append(f"replica {self.replica}")
        if self.step is not None:
            parts.append("before the first step" if self.step == 0 else f"after step {self.step}")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        d = {"variable": self.variable, "projection": self.projection, "population": self.population,
             "index": dict(self.index), "state": self.state, "channel": self.channel, "species": self.species, "replica": self.replica, "step": self.step}
        return {k: v for k, v in d.items() if v is not None and v != {}}


def label_arrays(state, program, which: tuple[str, ...] = ("W", "b", "V")) -> Iterator[tuple[int, str, np.ndarray]]:
    """``(projection index, "W"|"b"|"V", array in label layout)`` for every stored synapse array."""
    for q in range(len(program.projs)):
        for w in which:
            a = state.get(q, w)
            if a is not None:
                yield q, w, np.moveaxis(np.asarray(a), 2, -1)


def where_of(program, q: int, which: str, idx: tuple[int, ...], *, step: int | None = None,
             n_species: int | None = None, species_map=None, replica_map=None) -> Where:
    """The :class:`Where` of entry ``idx`` (label layout) of projection ``q``'s ``which`` array.

    ``species_map``/``replica_map`` translate an array's species/replica index into the one the
    user knows (e.g. a single-species run that stands for species ``s`` of a batch)."""
    s, r, *rest = (int(i) for i in idx)
    c = rest.pop()
    return Where(
        variable=which, projection=program.projs[q].name, index=dict(zip(_AXES[which], rest)),
        channel=c, shared_channels=bool(program.rules.shared_channels and program.k > 1),
        species=species_map(s) if species_map else s, n_species=n_species,
        replica=replica_map(r) if replica_map else r, step=step,
    )


def _fmt(v: float) -> str:
    return f"{v:.6g}" if np.isfinite(v) else str(v)


class LawViolation(AssertionError):
    """A law of :mod:`blursim.testing.laws` (or an invariant) does not hold.

    Attributes: ``law`` (name), ``statement``, ``equation`` (the paper's equation or section the
    law checks, e.g. ``"eq. (7)"``), ``where`` (:class:`Where`),
    ``value``, ``expected``, ``tolerance``, ``count`` (entries beyond
    tolerance, of ``total``), ``counterexample`` (or ``None``), ``saved_to``
    (the folder it was written to, if any). ``core`` is the message without
    the hint on saving, which ``blursim replay`` prints unchanged.
    """

    def __init__(self, law: str, statement: str, where: Where, *, value: Any = None, expected: Any = None,
                 tolerance: str = "", count: int | None = None, total: int | None = None,
                 value_label: str = "value", expected_label: str = "expected", detail: str = "",
                 rules: str = "", counterexample=None, equation: str = "") -> None:
        self.law, self.statement, self.where = law, statement, where
        self.equation = equation
        self.value, self.expected, self.tolerance = value, expected, tolerance
        self.count, self.total = count, total
        self.counterexample = counterexample
        self.saved_to = None
        eq = f" ({equation})" if equation else ""
        lines = [f"law {law!r}{eq} broken: {statement}", f"  where: {where}"]
        if value is not None or expected is not None:
            v = f"  {value_label}: {_fmt(float(value))}" if value is not None else "  "
            if expected is not None:
                v += f", {expected_label}: {_fmt(float(expected))}"
                if value is not None:
                    v += f" (|difference| {_fmt(abs(float(value) - float(expected)))})"
            if tolerance:
                v += f", tolerance {tolerance}"
            lines.append(v)
        if count is not None and total is not None:
            lines.append(f"  {count} of {total} entries beyond tolerance (the worst one is shown)")
        if detail:
            lines.extend("  " + ln for ln in detail.splitlines())
        if rules:
            lines.append(f"  rules: {rules}")
        self.core = "\n".join(lines)
        super().__init__(self.core + "\n" + self._hint())

    def _hint(self) -> str:
        if self.counterexample is None:
            return ""
        if self.saved_to is not None:
            return f"  counterexample saved to {self.saved_to}; replay it with: blursim replay {self.saved_to}"
        return (f"  save this counterexample with err.save(DIR) (or run the tests with {SAVE_ENV}=DIR), "
                "then replay it with: blursim replay DIR")

    def save(self, path) -> str:
        """Write the counterexample to folder ``path``; returns the folder."""
        if self.counterexample is None:
            raise ValueError("this violation carries no counterexample")
        out = self.counterexample.save(path)
        self.saved_to = str(out)
        self.args = (self.core + "\n" + self._hint(),)
        return self.saved_to


def rules_summary(program) -> str:
    """The network's rules that differ from the defaults, as ``key=value`` pairs."""
    d = program.rules.model_dump(mode="json", exclude_defaults=True)
    if not d:
        return "all defaults"
    return ", ".join(f"{k}={v}" for k, v in d.items())


def worst_entry(got: np.ndarray, want: np.ndarray, atol: float, rtol: float):
    """``(count, index, excess)`` of entries with ``|got − want| > atol + rtol·|want|``
    (NaN or Inf where the other is not counts as infinitely far; NaN vs NaN as equal);
    ``index`` is the entry that breaks the tolerance by most, or ``None``."""
    got = np.asarray(got)
    want = np.asarray(want)
    same_nan = np.isnan(got) & np.isnan(want)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(got - want)
        lim = atol + rtol * np.abs(want)
        same_inf = np.isinf(got) & (got == want)
        excess = np.where(same_nan | same_inf, -np.inf, np.where(np.isnan(diff), np.inf, diff - lim))
    bad = excess > 0
    n = int(bad.sum())
    if n == 0:
        return 0, None, 0.0
    idx = np.unravel_index(int(np.argmax(excess)), excess.shape)
    return n, idx, float(excess[idx])
