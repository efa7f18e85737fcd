"""Counterexamples to laws: written to a folder, replayed from the command line.

A counterexample folder (``err.save(DIR)`` on a
:class:`~blursim.testing.report.LawViolation`) holds everything a law needs to run again:

================== ==========================================================
``law.json``       format tag, the law's name (and the module that registers
                   it), its options, seed, replicas, tolerances, whether the
                   law's domain was checked, the message seen when it broke
``network.json``   the network spec (a ``blursim.network/1`` document)
``genome.json``    the genome (a ``blursim.genome/1`` document)
``data.npz``       the training batches in order: ``x_0, y_0, x_1, y_1, ...``
``state.npz``      (only if the law started from given synapses) the initial
                   synapses ``W_q``, ``b_q``, ``V_q`` of projection ``q`` in
                   the simulator's dense layout ``(S, R, kw, ...)``
================== ==========================================================

``blursim replay DIR`` (or :func:`blursim.testing.laws.replay` in Python) runs the law again on
exactly these inputs: it prints the same message and exits with status 1 if
the law still breaks, or says that it holds and exits with 0. The network and
genome files are ordinary documents, so ``blursim run DIR/network.json
--genome DIR/genome.json --task ...`` trains the same network with the same
genome.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from blursim.errors import SpecError
from blursim.io import atomic_write_json, json_ready

FORMAT = "blursim.counterexample/1"

#: The files of a folder (``state.npz`` is optional); any other file is ignored, never read.
FILES = ("law.json", "network.json", "genome.json", "data.npz")
#: Largest ``law.json`` (its ``message`` is at most :data:`MAX_MESSAGE_CHARS` characters).
MAX_LAW_BYTES = 1 << 20
MAX_MESSAGE_CHARS = 20_000
#: Training steps of a replayed counterexample (a shrunk one has a few).
MAX_REPLAY_STEPS = 10_000
#: Inflated size of ``data.npz`` and of ``state.npz`` (declared in their headers, checked first).
MAX_REPLAY_ARRAY_BYTES = 256 << 20
#: Memory a replay may use (the law's simulations together), and its work in multiply-adds.
MAX_REPLAY_MEMORY = 1 << 30
MAX_REPLAY_WORK = 2 * 10**9
#: Training steps of all the law's simulations together (each costs about 10 ms of overhead
#: however small the network: 500 take seconds).
MAX_REPLAY_SIM_STEPS = 500
#: Other species a law's options may add (``species_independence``'s ``others``).
MAX_OTHER_SPECIES = 64

_LAW_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_BATCH = re.compile(r"([xy])_(0|[1-9][0-9]{0,5})")
_STATE = re.compile(r"([WbV])_(0|[1-9][0-9]{0,3})")


@dataclass
class Counterexample:
    """A law, and the spec, genome and data on which it broke."""

    law: str
    spec: dict
    genome: dict
    batches: list[tuple[np.ndarray, np.ndarray]]
    options: dict = field(default_factory=dict)
    seed: int = 0
    replicas: int = 1
    atol: float | None = None
    rtol: float | None = None
    check_domain: bool = True
    state: dict[str, np.ndarray] | None = None
    message: str = ""
    module: str = "blursim.testing.laws"

    def save(self, path) -> Path:
        """Write the folder ``path`` (created if needed; files in it are replaced)."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "law.json", json_ready({
            "format": FORMAT, "law": self.law, "module": self.module, "options": self.options,
            "seed": self.seed, "replicas": self.replicas, "atol": self.atol, "rtol": self.rtol,
            "check_domain": self.check_domain, "steps": len(self.batches), "message": self.message,
        }))
        atomic_write_json(out / "network.json", self.spec)
        atomic_write_json(out / "genome.json", self.genome)
        arrays = {}
        for t, (x, y) in enumerate(self.batches):
            arrays[f"x_{t}"] = np.asarray(x, dtype=np.float64)
            arrays[f"y_{t}"] = np.asarray(y, dtype=np.int64)
        np.savez(out / "data.npz", **arrays)
        state = out / "state.npz"
        if self.state is not None:
            np.savez(state, **self.state)
        elif state.exists():
            state.unlink()
        return out

    @classmethod
    def load(cls, path) -> "Counterexample":
        """Read a folder written by :meth:`save`, trusting nothing in it: every file is a bounded
        regular file, ``law.json`` is checked field by field, the network and genome are validated
        documents, and the arrays of ``data.npz``/``state.npz`` are checked (names, dtypes, shapes,
        sizes from their headers) before they are inflated. Anything wrong is a one-line
        :class:`SpecError` naming the file and the field. Nothing a file names is imported or run."""
        from blursim.limits import check_path_text
        from blursim.spec import load_genome, load_network

        d = Path(check_path_text(path, what="counterexample folder"))
        if not d.is_dir():
            raise SpecError(f"{d} is not a counterexample folder (it does not exist or is not a directory)",
                            hint="Give the folder that err.save(DIR) wrote.")
        for name in FILES:
            if not (d / name).exists():
                raise SpecError(f"{d} is not a counterexample folder: {name} is missing",
                                hint="A counterexample folder holds law.json, network.json, genome.json "
                                     "and data.npz.")
        meta = _read_law(d / "law.json")
        spec_doc = load_network(d / "network.json")
        genome_doc = load_genome(d / "genome.json")
        batches = _read_batches(d / "data.npz", meta["steps"])
        state = None
        if (d / "state.npz").exists() or (d / "state.npz").is_symlink():
            state = _read_state(d / "state.npz")
        return cls(law=meta["law"], spec=spec_doc.model_dump(mode="json", by_alias=True),
                   genome=genome_doc.model_dump(mode="json", exclude_none=True), batches=batches,
                   options=meta["options"], seed=meta["seed"], replicas=meta["replicas"], atol=meta["atol"],
                   rtol=meta["rtol"], check_domain=meta["check_domain"], state=state, message=meta["message"],
                   module=meta["module"])


# ------------------------------------------------------------------ law.json
def _law_fields():
    from pydantic import BaseModel, ConfigDict, Field

    from blursim.limits import MAX_REPLICAS, MAX_SEED

    class LawDoc(BaseModel):
        """The fields of ``law.json``, each typed and bounded."""

        model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
        format: str = Field(pattern="^" + re.escape(FORMAT) + "$")
        law: str = Field(pattern="^" + _LAW_NAME.pattern + "$")
        module: str | None = Field(default=None, max_length=200)
        options: dict[str, Any] | None = None
        seed: int = Field(default=0, ge=0, le=MAX_SEED)
        replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS)
        atol: float | None = Field(default=None, ge=0.0)
        rtol: float | None = Field(default=None, ge=0.0)
        check_domain: bool = True
        steps: int = Field(ge=0, le=MAX_REPLAY_STEPS)
        message: str = Field(default="", max_length=MAX_MESSAGE_CHARS)

    return LawDoc


def _read_law(path: Path) -> dict[str, Any]:
    """``law.json``, bounded, as strict JSON, checked field by field."""
    from pydantic import ValidationError

    from blursim.limits import read_regular_file
    from blursim.spec.loading import locate, parse_json, parse_path, spec_error

    raw = read_regular_file(path, limit=MAX_LAW_BYTES, what="counterexample's law.json")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"not UTF-8 text (byte {e.start})", source=str(path)) from None
    data = parse_json(text, str(path))
    if not isinstance(data, dict):
        raise SpecError("must be a JSON object (format, law, steps, ...)", source=str(path),
                        value=type(data).__name__, hint="The folder was not written by err.save(DIR).")
    if data.get("format") != FORMAT:
        raise SpecError("not a counterexample written by this version of blursim", source=str(path),
                        path="$.format", value=data.get("format"), choices=[FORMAT])
    model = _law_fields()
    try:
        doc = model.model_validate(data)
    except ValidationError as e:
        err = spec_error(e, model, data)
        raise locate(err, str(path), text, parse_path(err.path)) from None
    out = doc.model_dump()
    out["options"] = out["options"] or {}
    others = out["options"].get("others")
    if others is not None:  # genome documents, never paths (a file names no other file to read)
        if not isinstance(others, list) or len(others) > MAX_OTHER_SPECIES:
            raise SpecError(f"must be a list of at most {MAX_OTHER_SPECIES} genome documents", source=str(path),
                            path="$.options.others", value=others if not isinstance(others, list) else None)
        from blursim.spec import GenomeSpec
        from blursim.spec.loading import validate_document

        for i, g in enumerate(others):
            try:
                validate_document(GenomeSpec, g)
            except SpecError as e:
                inner = (e.path or "$")[1:]
                raise SpecError(e.message, source=str(path), path=f"$.options.others[{i}]{inner}",
                                value=e.value, choices=e.choices) from None
    return out


# --------------------------------------------------------------------- arrays
def _read_arrays(path: Path, what: str) -> dict[str, np.ndarray]:
    from blursim.limits import read_regular_file
    from blursim.npz import read_npz

    raw = read_regular_file(path, limit=MAX_REPLAY_ARRAY_BYTES, what=what)
    return read_npz(raw, name=str(path), max_bytes=MAX_REPLAY_ARRAY_BYTES, what=what)


def _read_batches(path: Path, steps: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The batches ``x_0, y_0, ...`` of ``data.npz``: exactly ``steps`` of them, ``x`` a 2-D array of
    numbers, ``y`` as many integer class labels."""
    arrays = _read_arrays(path, "counterexample's data.npz")
    for key in arrays:
        m = _BATCH.fullmatch(key)
        if m is None or int(m.group(2)) >= steps:
            want = f"x_0, y_0 ... x_{steps - 1}, y_{steps - 1}" if steps else "no arrays"
            raise SpecError(f"holds an unknown array {key!r}; law.json's steps = {steps} calls for {want}",
                            source=str(path), hint="The folder was changed after err.save(DIR) wrote it.")
    batches = []
    for t in range(steps):
        x, y = arrays.get(f"x_{t}"), arrays.get(f"y_{t}")
        for key, a in ((f"x_{t}", x), (f"y_{t}", y)):
            if a is None:
                raise SpecError(f"lacks batch {key!r} (law.json says steps = {steps})", source=str(path),
                                hint="The folder is incomplete.")
        if x.ndim != 2 or x.shape[0] < 1 or x.dtype.kind not in "biuf":
            raise SpecError(f"array 'x_{t}' must be a (batch, features) array of numbers", source=str(path),
                            value=f"shape {list(x.shape)}, dtype {x.dtype.name}")
        if y.ndim != 1 or y.dtype.kind not in "biu" or y.shape[0] != x.shape[0]:
            raise SpecError(f"array 'y_{t}' must hold one integer class label per row of 'x_{t}' "
                            f"({x.shape[0]})", source=str(path), value=f"shape {list(y.shape)}, dtype {y.dtype.name}")
        batches.append((x.astype(np.float64), y.astype(np.int64)))
    return batches


def _read_state(path: Path) -> dict[str, np.ndarray]:
    """The initial synapses of ``state.npz``: arrays ``W_q``, ``b_q``, ``V_q`` of floats, at least
    ``(S, R)`` in front; their shapes are checked against the network by :func:`check_replay`."""
    arrays = _read_arrays(path, "counterexample's state.npz")
    if not arrays:
        raise SpecError("holds no arrays", source=str(path))
    R = None
    for key, a in arrays.items():
        if _STATE.fullmatch(key) is None:
            raise SpecError(f"holds an unknown array {key!r}; expected W_q, b_q, V_q (q a projection index)",
                            source=str(path))
        if a.dtype.kind not in "biuf" or a.ndim < 3 or a.shape[0] < 1 or a.shape[1] < 1:
            raise SpecError(f"array {key!r} must be synapses of shape (species, replicas, ...)", source=str(path),
                            value=f"shape {list(a.shape)}, dtype {a.dtype.name}")
        if R is not None and a.shape[1] != R:
            raise SpecError(f"array {key!r} has {a.shape[1]} replicas, the others {R}", source=str(path))
        R = a.shape[1]
    return {k: a.astype(np.float64) for k, a in arrays.items()}


# ------------------------------------------------------------- before replaying
def check_replay(cx: Counterexample, folder: str | Path | None = None):
    """The compiled network of ``cx``, after checking (before anything is simulated) that the
    batches, the initial state and the genome fit it and that replaying stays within
    :data:`MAX_REPLAY_MEMORY`, :data:`MAX_REPLAY_WORK` and :data:`MAX_REPLAY_SIM_STEPS` (and the
    memory this process may use).
    ``folder`` names the files in messages."""
    from blursim.graph import compile_network
    from blursim.graph.memory import estimate, require
    from blursim.spec import load_network

    d = Path(folder) if folder is not None else None
    src = (lambda name: str(d / name)) if d is not None else (lambda name: name)
    spec = load_network(cx.spec)
    inputs = sum(p.size for p in spec.populations if p.role == "input")
    n_classes = min((max(p.size, 2) for p in spec.populations if p.role == "output"), default=2)
    for t, (x, y) in enumerate(cx.batches):
        if x.shape[1] != inputs:
            raise SpecError(f"batch 'x_{t}' has {x.shape[1]} features but the network's input populations "
                            f"hold {inputs} neurons", source=src("data.npz"))
        if y.size and (int(y.min()) < 0 or int(y.max()) >= n_classes):
            raise SpecError(f"batch 'y_{t}' holds labels outside 0..{n_classes - 1} (the network's classes)",
                            source=src("data.npz"), value=[int(y.min()), int(y.max())])
    # memory and work, from sizes only (before masks or synapses are built)
    others = cx.options.get("others") if isinstance(cx.options, dict) else None
    species = 1 + (len(others) if isinstance(others, list) else 2)
    replicas = cx.replicas if cx.state is None else next(iter(cx.state.values())).shape[1]
    B = max((len(y) for _, y in cx.batches), default=1)
    est = estimate(spec, batch=B, itemsize=8)
    n_syn = est.synapses // est.itemsize + 1
    # the law's simulations, at most: one per replica alone, a Jacobian's worth of steps
    sims = 2 + (replicas if cx.law == "replica_independence" else 0) + (
        n_syn if cx.law == "backprop_is_gradient_like" else 0)
    steps = len(cx.batches)
    if steps * sims > MAX_REPLAY_SIM_STEPS:
        raise SpecError(f"replaying law {cx.law!r} would run {sims} simulations for {steps} steps, more than "
                        f"the {MAX_REPLAY_SIM_STEPS} simulation steps of a replay", source=src("law.json"),
                        path="$.steps", hint="A counterexample is meant to be small; replay a large one in "
                                             "Python (blursim.testing.laws.replay).")
    need = est.build + sims * est.total(species, replicas)
    try:
        require(need, what=f"replaying law {cx.law!r} ({species} species x {replicas} replica(s), batches "
                f"of {B})", budget=MAX_REPLAY_MEMORY, budget_name="the limit of a replay", path="$.replicas",
                hint="A counterexample is meant to be small; replay a large one in Python "
                     "(blursim.testing.laws.replay).")
    except SpecError as e:
        raise type(e)(e.message, path=e.path, hint=e.hint, source=src("law.json")) from None
    work = sims * species * replicas * sum(len(y) for _, y in cx.batches) * n_syn
    if work > MAX_REPLAY_WORK:
        raise SpecError(f"replaying law {cx.law!r} would take about {work:.2g} multiply-adds, more than the "
                        f"limit of {MAX_REPLAY_WORK:.0e} of a replay", source=src("law.json"), path="$.steps",
                        hint="A counterexample is meant to be small; replay a large one in Python "
                             "(blursim.testing.laws.replay).")
    program = compile_network(spec)
    _check_groups(program, cx, src("genome.json"))
    if cx.state is not None:
        _check_state(program, cx, src("state.npz"))
    return program


def _check_groups(program, cx: Counterexample, source: str) -> None:
    missing = [g for g in program.groups if g not in cx.genome.get("groups", {})]
    if missing:
        raise SpecError(f"the genome has no group {missing[0]!r}, which the network uses", source=source,
                        path="$.groups", choices=list(cx.genome.get("groups", {})),
                        hint="Give a group of that name (or rename the network's genome groups).")


def _check_state(program, cx: Counterexample, source: str) -> None:
    from blursim.sim import Simulator
    from blursim.spec import load_genome

    sim = Simulator(program, backend="numpy", dtype="float64")
    genes = sim.prepare([load_genome(cx.genome)])
    st = sim.init_synapses(genes, replicas=1, seed=0)
    for key, a in cx.state.items():
        w, q = key.split("_")
        want = st.get(int(q), w) if int(q) < len(program.projs) else None
        if want is None:
            raise SpecError(f"holds {key!r}, but the network has no such synapses", source=source)
        if tuple(a.shape[2:]) != tuple(np.shape(want)[2:]):
            raise SpecError(f"array {key!r} has shape {list(a.shape)}; the network's synapses are "
                            f"(species, replicas, {', '.join(map(str, np.shape(want)[2:]))})", source=source)
