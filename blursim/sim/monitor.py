"""Monitors: record what a BLUR run does, step by step (Brian2's ``StateMonitor`` for BLUR).

Say *what* to record, *at which steps* and *for whom* (species, replicas); get arrays
with named axes back::

    mon = Monitor(sim, ["states:hidden", "H:in->hidden", "norms", "loss"], steps=10)
    res = train_and_evaluate(sim, genome, ds, steps=100, batch_size=32, monitor=mon)
    h = mon["states:hidden@forward"]        # Recording: .values, .dims, .coords
    h.dims                                  # ('step', 'species', 'replica', 'batch', 'neuron', 'state')

Variables (one string each; ``*`` or no target means every population or projection):

=======================================  ================================================================
``states:POP`` / ``states:POP@PHASE``    the population's neuron states after the ``forward`` pass (eq. 5),
                                         after the ``feedback`` (Sec. 3.3) or after the ``backward`` pass
                                         (eq. 6); no phase: forward and backward. ``states:POP[0,1]``
                                         keeps states 0 and 1. Dims ``step, species, replica, batch,
                                         neuron, state``.
``feedback`` / ``feedback:POP``          the output populations' states after the feedback
                                         (``states:OUT@feedback``).
``weights:PROJ`` / ``weights:V:PROJ``    the stored synapses after the step: ``W`` in DESIGN's layout
                                         (dims ``..., pre, post, channel``, the bias row last in
                                         ``pre``) or the backward synapses ``V`` (``..., post, pre,
                                         channel``; untied networks).
``norms:PROJ`` / ``norms:V:PROJ``        ``sqrt(sum_pre W^2)`` per postsynaptic neuron and channel (bias
                                         row included) / ``sqrt(sum_post V^2)`` per presynaptic neuron.
``H:PROJ`` / ``H:V:PROJ``                the Hebbian term of eq. (7) in this step,
                                         ``H[i, j, c] = rho_b P_b[i, c] Q_b[j, c]`` (``rho`` the batch sum
                                         or mean), from the simulator's own operands, in the layout of
                                         the synapses; for shared channels the stored channel's term
                                         (the channel mean, or channel 0 under ``shared_update:
                                         channel0``). The update is ``W <- f~ W + eta~ (H + O)``.
``loss``, ``accuracy``                   the training batch's metrics from the forward pass of the step
                                         (before the update): softmax cross-entropy of state-0 logits and
                                         accuracy, or the mean squared error for target vectors (accuracy
                                         then NaN). Dims ``step, species, replica``.
=======================================  ================================================================

Steps are counted as :attr:`~blursim.sim.SynapseState.steps` after the step: step ``t``
is the ``t``-th training step (1-based); step 0 holds the synapse variables of the
initial synapses (:meth:`Monitor.record_synapses`, called by
:func:`~blursim.sim.train_and_evaluate`). ``steps``: ``"all"``, an integer ``N`` (every
``N``-th step, 0 included) or a list of step numbers.

A monitor costs nothing at steps it does not record (one comparison per step), and only
the copies it makes at the steps it records. Memory is bounded before work:
:meth:`Monitor.plan` (which :func:`~blursim.sim.train_and_evaluate` calls) refuses a
recording larger than ``max_bytes``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blursim.errors import MemoryLimitError, SpecError
from blursim.sim.metrics import task_metrics
from blursim.sim.step import learns_backward, tied

PHASES = ("forward", "feedback", "backward")
KINDS = ("states", "feedback", "weights", "norms", "H", "loss", "accuracy")
#: Default memory bound of one monitor's recordings.
DEFAULT_MAX_BYTES = 2 << 30
#: What ``--record default`` records.
DEFAULT_RECORD = ("states", "norms", "loss", "accuracy")

_ITEM = re.compile(r"^(?P<kind>[A-Za-z]+)(?::(?P<target>.*?))?(?:\[(?P<idx>[0-9,\s]*)\])?(?:@(?P<phase>[a-z]+))?$")


@dataclass
class Recording:
    """One recorded variable: ``values`` with one name per axis in ``dims`` and the labels of each
    axis in ``coords`` (``coords["step"]`` the step numbers, ``coords["species"]`` the species
    indices, ...)."""

    name: str
    values: np.ndarray
    dims: tuple[str, ...]
    coords: dict[str, np.ndarray] = field(default_factory=dict)

    def axis(self, dim: str) -> int:
        """The position of axis ``dim``."""
        try:
            return self.dims.index(dim)
        except ValueError:
            raise KeyError(f"{self.name} has no axis {dim!r}; its axes: {', '.join(self.dims)}") from None

    def sel(self, **where) -> "Recording":
        """The recording at the given labels, e.g. ``sel(step=10, species=0)`` (an axis indexed by
        one label is dropped)."""
        values, dims, coords = self.values, list(self.dims), dict(self.coords)
        for dim, label in where.items():
            ax = dims.index(dim) if dim in dims else self.axis(dim)
            labels = coords.get(dim, np.arange(values.shape[ax]))
            hits = np.flatnonzero(labels == label)
            if not hits.size:
                raise KeyError(f"{self.name}: no {dim} {label!r}; recorded: {labels.tolist()}")
            values = np.take(values, hits[0], axis=ax)
            del dims[ax]
            coords.pop(dim, None)
        return Recording(self.name, values, tuple(dims), coords)


@dataclass(frozen=True)
class Variable:
    """One thing to record (parsed from a string such as ``"states:hidden@forward"``)."""

    kind: str  # states, weights, norms, H, loss, accuracy
    name: str
    pop: int | None = None
    phase: str | None = None
    states: tuple[int, ...] | None = None
    proj: int | None = None
    which: str = "W"  # W or V

    @property
    def step_internal(self) -> bool:
        return self.kind in ("states", "H", "loss", "accuracy")


def parse_variables(items: str | Iterable[str], program) -> list[Variable]:
    """Variables from strings (or one comma-separated string; ``"default"`` is
    :data:`DEFAULT_RECORD`), checked against ``program``; errors name the item and the choices."""
    if isinstance(items, str):
        items = [items]
    flat: list[str] = []
    for it in items:
        for part in _split(str(it)):
            flat.extend(DEFAULT_RECORD if part == "default" else [part])
    out: dict[str, Variable] = {}
    for item in flat:
        for v in _parse_one(item, program):
            out.setdefault(v.name, v)
    if not out:
        raise SpecError("nothing to record", path="--record", hint=f"Record one of: {', '.join(KINDS)}.")
    return list(out.values())


def _split(text: str) -> list[str]:
    """Split at commas that are not inside ``[...]``."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return [p for p in parts if p]


def _parse_one(item: str, program) -> list[Variable]:
    m = _ITEM.match(item)
    if not m or m.group("kind") not in KINDS:
        raise SpecError("unknown variable to record", value=item, path="--record", choices=KINDS,
                        hint="e.g. states:hidden@forward, H:in->hidden, norms, loss")
    kind, target, idx, phase = m.group("kind"), m.group("target"), m.group("idx"), m.group("phase")
    target = None if target in (None, "", "*") else target
    pops, projs = program.pops, program.projs
    if kind in ("loss", "accuracy"):
        if target or idx is not None or phase:
            raise SpecError(f"{kind} takes no target, state or phase", value=item, path="--record")
        return [Variable(kind, kind)]
    if kind in ("states", "feedback"):
        if kind == "feedback":
            if phase:
                raise SpecError("feedback is the states after the feedback; it takes no phase", value=item,
                                path="--record")
            phases = ("feedback",)
            candidates = [pops[o] for o in program.outputs]
        else:
            if phase is not None and phase not in PHASES:
                raise SpecError("unknown phase", value=phase, path="--record", choices=PHASES)
            phases = (phase,) if phase else ("forward", "backward")
            candidates = [p for p in pops if p.role != "input"]
        if target is not None:
            named = [p for p in pops if p.name == target]
            if not named:
                raise SpecError("unknown population", value=target, path="--record",
                                choices=[p.name for p in pops])
            if named[0].role == "input":
                raise SpecError(f"{target!r} is an input population: it holds the data in state 0 and is "
                                "never updated", value=item, path="--record",
                                choices=[p.name for p in candidates])
            if kind == "feedback" and named[0].role != "output":
                raise SpecError("feedback is written into output populations", value=target, path="--record",
                                choices=[p.name for p in candidates])
            candidates = named
        states = None
        if idx is not None:
            try:
                states = tuple(int(c) for c in idx.split(",") if c.strip())
            except ValueError:
                states = ()
            if not states or any(not 0 <= c < program.k for c in states):
                raise SpecError(f"state indices must be 0..{program.k - 1}", value=item, path="--record")
        suffix = "" if states is None else "[" + ",".join(map(str, states)) + "]"
        return [Variable("states", f"states:{p.name}{suffix}@{ph}", pop=p.index, phase=ph, states=states)
                for p in candidates for ph in phases]
    # synapse variables
    if idx is not None or phase:
        raise SpecError(f"{kind} takes a projection, not a state or a phase", value=item, path="--record")
    which = "W"
    if target is not None and target.startswith("V:"):
        which, target = "V", target[2:]
    labels = [q.name for q in projs]
    if target is None:
        chosen = list(range(len(projs)))
    elif target in labels:
        chosen = [labels.index(target)]
    else:
        raise SpecError("unknown projection", value=target, path="--record", choices=labels)
    if which == "V" and tied(program):
        raise SpecError("tied synapses store no V (it is W transposed)", value=item, path="--record")
    no_hv = kind == "H" and not tied(program) and not learns_backward(program)
    if no_hv and which == "V":
        raise SpecError("frozen backward synapses have no Hebbian term (rules.backward_synapses: frozen)",
                        value=item, path="--record")
    out = []
    for qi in chosen:
        for w in ([which] if target is not None or tied(program) or no_hv else ["W", "V"]):
            tag = labels[qi] if w == "W" else f"V:{labels[qi]}"
            pathway = projs[qi].pathway  # a feedback pathway updates no W, a forward-only one no V
            if kind == "H" and ((w == "W" and pathway == "feedback") or (w == "V" and pathway == "forward")):
                if target is not None:
                    raise SpecError(f"projection {labels[qi]!r} ({pathway} pathway) has no Hebbian term for {w}",
                                    value=item, path="--record")
                continue
            out.append(Variable(kind, f"{kind}:{tag}", proj=qi, which=w))
    return out


def _steps_predicate(steps) -> Any:
    if steps == "all":
        return lambda t: True
    if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool):
        if steps < 1:
            raise SpecError("a monitor's step interval must be >= 1", value=int(steps), path="steps")
        return lambda t, n=int(steps): t % n == 0
    if isinstance(steps, str):
        raise SpecError("steps must be 'all', an interval or a list of step numbers", value=steps, path="steps")
    chosen = {int(t) for t in steps}
    return lambda t: t in chosen


def _index(sel, n: int, what: str, one: str) -> np.ndarray:
    if sel is None:
        return np.arange(n)
    arr = np.atleast_1d(np.asarray(sel, dtype=np.int64))
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        raise SpecError(f"the run has {n} {what}; there is no {one} {int(bad[0])}", value=int(bad[0]), path=what)
    return arr


class Monitor:
    """Records variables of a run (see the module documentation for the variables).

    Parameters
    ----------
    sim:
        The :class:`~blursim.sim.Simulator` (or its compiled program) the run uses.
    variables:
        Strings naming what to record (or one comma-separated string).
    steps:
        ``"all"``, an interval ``N`` or a list of step numbers (step 0: initial synapses).
    species, replicas:
        Indices to record (default: all).
    max_bytes:
        Largest recording :meth:`plan` accepts.
    """

    def __init__(self, sim, variables: str | Iterable[str] = "default", *, steps="all",
                 species: Sequence[int] | None = None, replicas: Sequence[int] | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.program = getattr(sim, "program", sim)
        self.variables = parse_variables(variables, self.program)
        self._wanted = _steps_predicate(steps)
        self.steps_spec = steps
        self.species, self.replicas = species, replicas
        self.max_bytes = int(max_bytes)
        self._data: dict[str, list[np.ndarray]] = {v.name: [] for v in self.variables}
        self._steps: dict[str, list[int]] = {v.name: [] for v in self.variables}
        self._sel: tuple[np.ndarray, np.ndarray] | None = None
        self._bytes = 0
        self._internal = [v for v in self.variables if v.step_internal]
        self._synaptic = [v for v in self.variables if not v.step_internal]
        self.batch: int | None = None

    # ------------------------------------------------------------ public API
    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variables]

    def wants(self, step: int) -> bool:
        """Whether step ``step`` is recorded."""
        return bool(self._wanted(int(step)))

    def plan(self, sim, *, S: int, R: int, B: int, steps: int) -> int:
        """The bytes the recording of ``steps`` training steps will take; raises
        :class:`~blursim.errors.MemoryLimitError` beyond ``max_bytes`` (before any work)."""
        s_idx, r_idx = self._selection(S, R)
        recorded = [t for t in range(steps + 1) if self.wants(t)]
        per_step = self._step_bytes(sim, len(s_idx), len(r_idx), B, internal=True)
        per_init = self._step_bytes(sim, len(s_idx), len(r_idx), B, internal=False)
        total = sum(per_step if t > 0 else per_init for t in recorded)
        if total > self.max_bytes:
            from blursim.limits import format_bytes

            raise MemoryLimitError(
                f"the monitor's recording needs {format_bytes(total)}, more than its limit of "
                f"{format_bytes(self.max_bytes)} ({len(recorded)} recorded steps)", path="--record",
                hint="Record fewer variables, steps (an interval), species or replicas, or raise max_bytes.")
        return total

    def record_synapses(self, sim, st) -> None:
        """Record the synapse variables of ``st`` now, as step ``st.steps`` (if it is one of the steps)."""
        if self._synaptic and self.wants(st.steps):
            self._record_synapses(sim, st, int(st.steps))

    def __getitem__(self, name: str) -> Recording:
        if name not in self._data:
            raise KeyError(f"nothing recorded as {name!r}; recorded: {', '.join(self.names)}")
        v = next(v for v in self.variables if v.name == name)
        rows = self._data[name]
        s_idx, r_idx = self._sel if self._sel is not None else (np.arange(0), np.arange(0))
        values = np.stack(rows) if rows else np.zeros((0,))
        dims, coords = self._dims(v, values)
        coords.update(step=np.asarray(self._steps[name], dtype=np.int64), species=s_idx, replica=r_idx)
        return Recording(name, values, dims, coords)

    def recordings(self) -> dict[str, Recording]:
        """Every recorded variable by name."""
        return {n: self[n] for n in self.names}

    def save(self, path) -> None:
        """Write every recording to one NPZ file (no pickle): ``NAME`` the values,
        ``NAME#dims`` the axis names, ``NAME#coord:DIM`` the labels of each axis."""
        from blursim.io import atomic_write_bytes

        arrays: dict[str, np.ndarray] = {}
        for name, rec in self.recordings().items():
            arrays[name] = rec.values
            arrays[f"{name}#dims"] = np.asarray(rec.dims, dtype=str)
            for dim, lab in rec.coords.items():
                arrays[f"{name}#coord:{dim}"] = np.asarray(lab)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())

    # ------------------------------------------------- the simulator's hooks
    def begin_step(self, sim, st, B: int):
        """Called by :meth:`Simulator.train_step` before the step: the hooks for this step, or
        ``None`` when it is not recorded."""
        step = int(st.steps) + 1
        if not self.wants(step):
            return None
        S, R = st.shape_SR
        s_idx, r_idx = self._selection(S, R)
        self.batch = B
        return _Tap(self, sim, s_idx, r_idx, B)

    def end_step(self, sim, st, y, tap: "_Tap") -> None:
        """Called by :meth:`Simulator.train_step` after the step with the hooks of :meth:`begin_step`."""
        step = int(st.steps)
        for v in self._internal:
            if v.kind == "states" or v.kind == "H":
                self._append(v.name, step, tap.buf[v.name])
        if tap.outputs:
            m = task_metrics([tap.outputs[o] for o in sorted(tap.outputs)], np.asarray(y))
            for v in self._internal:
                if v.kind == "loss":
                    self._append(v.name, step, m["mse"] if "mse" in m else m["cross_entropy"])
                elif v.kind == "accuracy":
                    acc = m.get("accuracy")
                    self._append(v.name, step, np.full(tap.shape_sr, np.nan) if acc is None else acc)
        if self._synaptic:
            self._record_synapses(sim, st, step)

    # ---------------------------------------------------------------- inside
    def _selection(self, S: int, R: int) -> tuple[np.ndarray, np.ndarray]:
        sel = (_index(self.species, S, "species", "species"), _index(self.replicas, R, "replicas", "replica"))
        if self._sel is not None and (not np.array_equal(sel[0], self._sel[0])
                                      or not np.array_equal(sel[1], self._sel[1])):
            raise SpecError("a monitor records one run: its species and replicas changed between steps")
        self._sel = sel
        return sel

    def _append(self, name: str, step: int, arr: np.ndarray) -> None:
        arr = np.asarray(arr)
        self._bytes += arr.nbytes
        if self._bytes > self.max_bytes:
            from blursim.limits import format_bytes

            raise MemoryLimitError(f"the monitor's recording passed its limit of {format_bytes(self.max_bytes)}",
                                   path="--record", hint="Record fewer variables, steps, species or replicas.")
        self._data[name].append(arr)
        self._steps[name].append(step)

    def _record_synapses(self, sim, st, step: int) -> None:
        s_idx, r_idx = self._selection(*st.shape_SR)
        kw = self.program.kw
        cache: dict = {}
        for v in self._synaptic:
            key = (v.proj, v.which)
            if key not in cache:
                host = sim.backend.to_numpy
                full = (st.forward_synapses(v.proj, kw, to_numpy=host) if v.which == "W"
                        else st.backward_synapses(v.proj, kw, to_numpy=host))
                cache[key] = full[np.ix_(s_idx, r_idx)]
            W = cache[key]  # (s, r, src (+ bias), dst, kw)
            if v.kind == "weights":
                self._append(v.name, step, W.copy())
            else:  # norms: over the source axis (the presynaptic rows of W, the postsynaptic of V)
                self._append(v.name, step, np.sqrt((np.asarray(W, dtype=np.float64) ** 2).sum(axis=2)))

    def _step_bytes(self, sim, nS: int, nR: int, B: int, internal: bool) -> int:
        it = np.dtype(sim.backend.dtype).itemsize if hasattr(sim, "backend") else 8
        prog, total = self.program, 0
        for v in self.variables:
            if v.step_internal and not internal:
                continue
            if v.kind == "states":
                n = len(v.states) if v.states is not None else prog.k
                total += nS * nR * B * prog.pops[v.pop].size * n * it
            elif v.kind in ("loss", "accuracy"):
                total += nS * nR * 8
            else:
                q = prog.projs[v.proj]
                rows = (q.n_pre + (1 if q.bias else 0)) if v.which == "W" else q.n_post
                cols = q.n_post if v.which == "W" else q.n_pre
                total += nS * nR * prog.kw * (cols if v.kind == "norms" else rows * cols) * (8 if v.kind == "norms" else it)
        return total

    def _dims(self, v: Variable, values: np.ndarray) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
        coords: dict[str, np.ndarray] = {}
        if v.kind == "states":
            coords["state"] = np.asarray(v.states if v.states is not None else range(self.program.k))
            return ("step", "species", "replica", "batch", "neuron", "state"), coords
        if v.kind in ("loss", "accuracy"):
            return ("step", "species", "replica"), coords
        coords["channel"] = np.arange(self.program.kw)
        src, dst = ("pre", "post") if v.which == "W" else ("post", "pre")
        if v.kind == "norms":
            return ("step", "species", "replica", dst, "channel"), coords
        return ("step", "species", "replica", src, dst, "channel"), coords


class _Tap:
    """The hooks of one recorded step: buffers for the selected species and replicas, filled by
    the simulator chunk by chunk (chunks cover disjoint species/replicas, so threads do not clash)."""

    def __init__(self, mon: Monitor, sim, s_idx: np.ndarray, r_idx: np.ndarray, B: int) -> None:
        self.sim, self.s_idx, self.r_idx = sim, s_idx, r_idx
        self.shape_sr = (len(s_idx), len(r_idx))
        self.buf: dict[str, np.ndarray] = {}
        self.phases: dict[str, list[Variable]] = {}
        self.heb: dict[tuple[int, str], Variable] = {}
        dt = np.dtype(sim.backend.dtype)
        prog = mon.program
        for v in mon._internal:
            if v.kind == "states":
                n = len(v.states) if v.states is not None else prog.k
                self.buf[v.name] = np.zeros(self.shape_sr + (B, prog.pops[v.pop].size, n), dtype=dt)
                self.phases.setdefault(v.phase, []).append(v)
            elif v.kind == "H":
                q = prog.projs[v.proj]
                rows = (q.n_pre + (1 if q.bias else 0)) if v.which == "W" else q.n_post
                cols = q.n_post if v.which == "W" else q.n_pre
                self.buf[v.name] = np.zeros(self.shape_sr + (rows, cols, prog.kw), dtype=dt)
                self.heb[(v.proj, v.which)] = v
        self.outputs: dict[int, np.ndarray] = {}
        if any(v.kind in ("loss", "accuracy") for v in mon._internal):
            for o in prog.outputs:
                self.outputs[o] = np.zeros(self.shape_sr + (B, prog.pops[o].size), dtype=dt)

    def _rows(self, start: int, count: int, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in the recording, positions in the chunk) of the chosen indices in a chunk."""
        hit = (chosen >= start) & (chosen < start + count)
        return np.flatnonzero(hit), chosen[hit] - start

    def _put(self, dest: np.ndarray, s0: int, r0: int, arr) -> None:
        """``dest[sel] = arr`` for a chunk ``arr`` whose leading axes are species from ``s0`` and
        replicas from ``r0``."""
        ds, cs = self._rows(s0, arr.shape[0], self.s_idx)
        dr, cr = self._rows(r0, arr.shape[1], self.r_idx)
        if not ds.size or not dr.size:
            return
        host = self.sim.backend.to_numpy(arr[cs][:, cr])
        dest[np.ix_(ds, dr)] = host

    def states(self, phase: str, s0: int, r0: int, state) -> None:
        for v in self.phases.get(phase, ()):
            a = state(v.pop)  # (c, R, k, B, n)
            if v.states is not None:
                a = a[:, :, list(v.states)]
            self._put(self.buf[v.name], s0, r0, a.swapaxes(2, 3).swapaxes(3, 4))
        if phase == "forward":
            for o, dest in self.outputs.items():
                self._put(dest, s0, r0, state(o)[:, :, 0])

    def wants_hebbian(self, qi: int, which: str) -> bool:
        return (qi, which) in self.heb

    def hebbian(self, qi: int, which: str, s0: int, r0: int, H, Hb) -> None:
        """``H`` dense ``(c, R, kw, n_src, n_dst)``, ``Hb`` the bias row's ``(c, R, kw, n_post)`` or None."""
        v = self.heb[(qi, which)]
        full = H if Hb is None else self.sim.xp.concatenate([H, Hb[:, :, :, None, :]], axis=3)
        self._put(self.buf[v.name], s0, r0, self.sim.xp.moveaxis(full, 2, -1))


def load_recordings(path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Recording]:
    """The recordings of a file written by :meth:`Monitor.save`. The file is read as hostile
    (:func:`blursim.npz.read_npz`): a regular file, a plain NPZ of numeric and text arrays (no
    pickles) whose inflated size, declared in its headers, is at most ``max_bytes``; anything else
    is a one-line :class:`~blursim.errors.SpecError` naming the file."""
    from blursim.limits import read_regular_file
    from blursim.npz import NUMERIC, read_npz

    raw = read_regular_file(path, limit=max_bytes, what="recording")
    z = read_npz(raw, name=str(path), max_bytes=max_bytes, kinds=NUMERIC + "U", what="recording")
    out: dict[str, Recording] = {}
    try:
        for name in (k for k in z if "#" not in k):
            dims = tuple(str(d) for d in z[f"{name}#dims"])
            coords = {k.split("#coord:", 1)[1]: z[k] for k in z if k.startswith(f"{name}#coord:")}
            if len(dims) != z[name].ndim:
                raise ValueError(f"{name!r} has {z[name].ndim} axes but {len(dims)} dimension names")
            out[name] = Recording(name, z[name], dims, coords)
    except (KeyError, ValueError) as e:
        raise SpecError(f"{path}: not a blursim recording ({e})",
                        hint="Read files written by Monitor.save / blursim run --record.") from None
    return out


def describe(recordings: dict[str, Recording]) -> str:
    """One line per recording: name, dims and shape (for a run directory's summary)."""
    return "\n".join(f"{n}: {' x '.join(f'{d}={s}' for d, s in zip(r.dims, r.values.shape))}"
                     for n, r in recordings.items())


def recordings_meta(mon: Monitor) -> dict:
    """JSON-ready description of a monitor (what, when, for whom)."""
    spec = mon.steps_spec
    steps = spec if isinstance(spec, (str, int, np.integer)) else sorted(int(t) for t in spec)
    return {"variables": mon.names, "steps": steps if not isinstance(steps, np.integer) else int(steps),
            "species": None if mon.species is None else list(map(int, mon.species)),
            "replicas": None if mon.replicas is None else list(map(int, mon.replicas)), "batch": mon.batch}


__all__ = ["Monitor", "Recording", "Variable", "parse_variables", "load_recordings", "describe",
           "recordings_meta", "DEFAULT_RECORD", "PHASES", "KINDS"]
