"""Files of a meta-training run: atomic writes, the lock, the JSON-lines log, checkpoints.

Every file is written to a temporary file in the same directory, fsynced and
moved into place with :func:`os.replace`, so a killed run never leaves a
half-written file.

A checkpoint is versioned data, never a pickle: ``checkpoint.json`` (format,
version, library version, spec hash, generation, root seed, the strategy's
state as JSON, the number and SHA-256 of the log records it covers) and the
strategy's arrays in ``checkpoint-gNNNNNNN.npz`` (named by generation; the
JSON holds its SHA-256). The NPZ is written first and the JSON, which names
it, last; older NPZ files are removed afterwards. So ``checkpoint.json``
always names a complete NPZ, whenever the run is killed.

Reading a checkpoint back trusts nothing in it (:func:`read_checkpoint`): every
file is a bounded regular file, the JSON is checked field by field, the NPZ it
names must be the one of its generation *inside* the run directory (never a
path elsewhere, never a symbolic link), and the generation, the log records,
their checksum and the strategy's own state must all agree; any disagreement is
a :class:`RunDirError` saying which, never another exception.

A run directory is locked (:class:`RunLock`, an exclusive ``flock`` on its
``.lock`` file, never followed through a symbolic link) while a process creates,
resumes or runs it: a second process is refused at once, the lock goes with the
process however it ends, and a run that finishes removes the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from blursim import __version__
from blursim.errors import BlursimError, SpecError, shorten
from blursim.io import atomic_write_bytes, atomic_write_text, fsync_dir, remove_file
from blursim.limits import MAX_DOCUMENT_BYTES, MAX_GENERATIONS, MAX_RUN_FILE_BYTES, read_regular_file

CHECKPOINT_FORMAT = "blursim.meta_checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_JSON = "checkpoint.json"
LOG = "log.jsonl"
EXPERIMENT = "experiment.json"
LOCK = ".lock"
NPZ_PATTERN = re.compile(r"checkpoint-g[0-9]{7,}\.npz")

#: The most a checkpoint's arrays may inflate to (declared in the NPZ headers, checked first).
MAX_CHECKPOINT_INFLATED = 2**31

#: Longest integer literal in a run's files (generator states are 128-bit: 39 digits).
_RUN_INT_DIGITS = 80


class RunDirError(BlursimError):
    """A run directory cannot be created, resumed or read."""


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


def npz_name(generation: int) -> str:
    """The name of the arrays file of the checkpoint of ``generation``."""
    return f"checkpoint-g{generation:07d}.npz"


def is_temporary(name: str) -> bool:
    """A temporary file of :func:`blursim.io.atomic_path` (left behind by a killed writer)."""
    return name.startswith(".") and name.endswith(".tmp")


# ------------------------------------------------------------------------ lock
class RunLock:
    """An exclusive, non-blocking lock on a run directory (``flock`` on ``DIR/.lock``).

    ``flock`` locks belong to the open file, so a second :class:`RunLock` on the same
    directory is refused even in the same process, and the lock is released when the
    process ends, however (a killed run never leaves its directory locked).

    The lock file is data in a directory someone else may have prepared: it is opened without
    following a symbolic link (``O_NOFOLLOW``), and refused unless it is a regular file with no
    other name (a hard link), so locking never writes to another file. :meth:`release` removes
    it (a finished run leaves no lock file; a killed one leaves an unlocked, harmless one). A
    process that locked a file another one removed in the meantime opens the new one again.
    """

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / LOCK
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        for _ in range(10):
            fd = self._open()
            if not _try_lock(fd):
                try:
                    holder = os.read(fd, 200).decode("utf-8", "replace").strip()
                except OSError:
                    holder = ""
                os.close(fd)
                who = f" ({shorten(holder, 80)})" if holder else ""
                raise RunDirError(
                    f"{self.path.parent} is in use by another blursim process{who}; two runs in one "
                    "directory would overwrite each other's files. Wait for it to finish (or stop it), "
                    "or choose another directory."
                )
            if self._is_current(fd):
                break
            _unlock(fd)  # the holder removed this file as we opened it: lock the new one
            os.close(fd)
        else:  # pragma: no cover - ten runs finishing in a row under us
            raise RunDirError(f"cannot lock {self.path.parent}: its lock file keeps being replaced")
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {os.uname().nodename if hasattr(os, 'uname') else '?'}\n".encode())
        except OSError:  # pragma: no cover - the lock holds without the note
            pass
        self._fd = fd
        return self

    def _open(self) -> int:
        """The lock file, opened (created if needed) without following a link; refused unless a
        regular file with one name."""
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0) \
            | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as e:
            if os.path.islink(self.path):
                raise RunDirError(
                    f"cannot lock {self.path.parent}: {self.path} is a symbolic link; blursim never follows a "
                    "link for its lock file (it could write elsewhere). Remove it, or choose another directory."
                ) from None
            raise RunDirError(f"cannot lock {self.path.parent}: {e.strerror or e}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            what = "a hard link to another file" if stat.S_ISREG(st.st_mode) else "not a regular file"
            raise RunDirError(
                f"cannot lock {self.path.parent}: {self.path} is {what}; blursim writes its lock only into "
                "a file of its own. Remove it, or choose another directory."
            )
        return fd

    def _is_current(self, fd: int) -> bool:
        """Whether ``fd`` is still the file named ``.lock`` (not one a releasing run removed)."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self) -> None:
        """Remove the lock file (while still holding it) and release the lock."""
        if self._fd is not None:
            if self._is_current(self._fd):
                try:  # (not blursim.io's unlink: removing the lock is no change to the run's files)
                    os.unlink(self.path)
                except OSError:  # pragma: no cover - the lock goes with the file descriptor anyway
                    pass
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _unlock(fd: int) -> None:
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass


# ------------------------------------------------------------------------ log
def log_line(record: dict) -> str:
    """One record as one line of JSON (no NaN/Inf: they are written as null)."""
    return json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"


def log_text(records: list[dict]) -> str:
    return "".join(log_line(r) for r in records)


def read_json_file(path: str | Path, *, what: str, limit: int = MAX_DOCUMENT_BYTES) -> Any:
    """A JSON file of a run directory (bounded, UTF-8, JSON); any problem is a RunDirError."""
    from blursim.spec.loading import parse_json

    try:
        raw = read_regular_file(path, limit=limit, what=what, error=RunDirError)
        return parse_json(raw.decode("utf-8"), str(path), max_int_digits=_RUN_INT_DIGITS)
    except UnicodeDecodeError as e:
        raise RunDirError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except SpecError as e:
        raise RunDirError(f"{what} {e}") from None


def read_log(path: str | Path) -> list[dict]:
    """The records of a ``log.jsonl`` (each a JSON object whose ``generation`` is its position)."""
    p = Path(path)
    raw = read_regular_file(p, limit=MAX_RUN_FILE_BYTES, what="log", error=RunDirError)
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise RunDirError(f"{p}: not UTF-8 text (byte {e.start})") from None
    from blursim.spec.loading import parse_json

    records = []
    for i, line in enumerate(x for x in lines if x.strip()):
        try:
            rec = parse_json(line, max_int_digits=_RUN_INT_DIGITS)
        except SpecError as e:
            raise RunDirError(f"{p}, line {i + 1}: not a JSON record ({e.message})") from None
        if not isinstance(rec, dict) or rec.get("generation") != i:
            raise RunDirError(f"{p}, line {i + 1}: not the record of generation {i}")
        records.append(rec)
    return records


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


# ----------------------------------------------------------------- checkpoints
def write_checkpoint(directory: str | Path, trainer: Any, state: Any, *, completed: bool = False) -> None:
    """Checkpoint ``state`` (a :class:`~blursim.meta.trainer.TrainerState`) into ``directory``.

    ``completed``: the run ended because it reached the generations it was asked for (the
    experiment's, or fewer with ``--generations``), not by an interruption; recorded as
    ``"completed": true`` so that :attr:`blursim.runs.Run.status` can tell the two apart."""
    d = Path(directory)
    data, arrays = trainer.strategy.state_to_data(state.strategy_state)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    raw = buf.getvalue()
    npz = npz_name(state.generation)
    atomic_write_bytes(d / npz, raw)
    ck = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "blursim_version": __version__,
        "experiment": trainer.setup.name,
        "spec_hash": trainer.setup.spec_hash,
        "generation": state.generation,
        "seed": trainer.exp.seed,
        "log": {"records": len(state.records), "sha256": _sha(log_text(state.records))},
        "strategy": data,
        "arrays": {"file": npz, "sha256": _sha(raw)},
        "completed": bool(completed),
    }
    atomic_write_text(d / CHECKPOINT_JSON, json.dumps(ck, indent=1, allow_nan=False) + "\n")
    fsync_dir(d)
    for old in sorted(d.glob("checkpoint-g*.npz")):
        if old.name != npz:
            remove_file(old)


_HEX = r"^[0-9a-f]{64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)


class _LogRef(_Strict):
    records: int = Field(ge=1, le=MAX_GENERATIONS + 1)
    sha256: str = Field(pattern=_HEX)


class _ArraysRef(_Strict):
    file: str = Field(max_length=100)
    sha256: str = Field(pattern=_HEX)


class CheckpointDoc(_Strict):
    """The fields of ``checkpoint.json`` that resuming relies on, each checked."""

    format: Literal["blursim.meta_checkpoint"]
    format_version: int
    blursim_version: str = Field(max_length=100)
    spec_hash: str = Field(pattern=_HEX)
    generation: int = Field(ge=0, le=MAX_GENERATIONS)
    seed: int = Field(ge=0)
    log: _LogRef
    strategy: dict[str, Any]
    arrays: _ArraysRef


def _check_doc(ck: Any, jpath: Path) -> CheckpointDoc:
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise RunDirError(f"{jpath} is not a blursim meta-training checkpoint")
    if ck.get("format_version") != CHECKPOINT_VERSION:
        raise RunDirError(
            f"{jpath} has checkpoint format version {shorten(repr(ck.get('format_version')))}; this "
            f"blursim ({__version__}) reads version {CHECKPOINT_VERSION}"
        )
    try:
        return CheckpointDoc.model_validate(ck)
    except ValidationError as e:
        from blursim.spec.loading import spec_error

        err = spec_error(e, CheckpointDoc, ck)
        raise RunDirError(f"{jpath} is malformed at {err.path}: {err.message}") from None


def checkpoint_bytes_bound(setup: Any, generation: int) -> int:
    """Bytes a checkpoint's arrays may hold for ``setup``'s strategy after ``generation``
    generations: a generous bound on what any strategy keeps (covariance-sized matrices of the
    genome's dimension, and a record of every generation's population, which CMA-ES replays),
    at most :data:`MAX_CHECKPOINT_INFLATED` and half the memory this process may use."""
    from blursim.machine import memory_bytes

    dim = int(setup.layout.size)
    pop = int(getattr(setup.strategy, "popsize", None) or 1) + int(getattr(setup.strategy, "runs", None) or 1)
    need = (1 << 20) + 8 * (16 * dim * dim + 8 * (generation + 2) * pop * dim + 64 * dim)
    return min(need, MAX_CHECKPOINT_INFLATED, memory_bytes() // 2)


def _read_npz(d: Path, doc: CheckpointDoc, jpath: Path, limit: int) -> dict[str, np.ndarray]:
    """The arrays of the checkpoint: the NPZ of its generation, a regular file in ``d``, whose
    members inflate to at most ``limit`` bytes (declared in their headers, checked first)."""
    name = doc.arrays.file
    if name != npz_name(doc.generation):
        raise RunDirError(
            f"{jpath} names the arrays file {shorten(repr(name))}, but the checkpoint of generation "
            f"{doc.generation} keeps its arrays in {npz_name(doc.generation)} inside the run directory"
        )
    npz = d / name
    try:
        st = os.lstat(npz)
    except FileNotFoundError:
        raise RunDirError(f"cannot resume: {npz} named by {jpath} is missing") from None
    except OSError as e:
        raise RunDirError(f"cannot resume: {npz}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise RunDirError(f"cannot resume: {npz} is not a regular file (a link or a directory)")
    raw = read_regular_file(npz, limit=MAX_RUN_FILE_BYTES, what="checkpoint", error=RunDirError)
    if _sha(raw) != doc.arrays.sha256:
        raise RunDirError(f"cannot resume: {npz} does not match {jpath} (checksum differs)")
    from blursim.npz import read_npz

    return read_npz(raw, name=str(npz), max_bytes=limit, error=RunDirError,
                    what="checkpoint arrays")


def check_experiment_file(directory: str | Path, setup: Any) -> dict:
    """``experiment.json`` of a run directory; refuses a run made by a different experiment
    (naming the sections that differ)."""
    from blursim.meta.experiment import differing_sections

    d = Path(directory)
    doc = read_json_file(d / EXPERIMENT, what="run description")
    if not isinstance(doc, dict) or not isinstance(doc.get("spec_hash"), str):
        raise RunDirError(f"{d / EXPERIMENT} is not the description of a blursim meta-training run")
    if doc["spec_hash"] != setup.spec_hash:
        diff = ""
        old = doc.get("hashed")
        if isinstance(old, dict):
            sections = differing_sections(old, setup.hashed)
            if sections:
                diff = f" (differs in: {', '.join(sections)})"
        raise RunDirError(
            f"cannot resume {d}: it was made by a different experiment{diff}. Resume it with "
            f"the experiment that made it ({d / EXPERIMENT} holds a copy), or start a new run "
            "in another directory."
        )
    return doc


def read_checkpoint(directory: str | Path, setup: Any) -> tuple[int, Any, list[dict]]:
    """``(generation, strategy state, log records)`` of the run in ``directory``.

    Refuses (:class:`RunDirError`) a directory without a checkpoint, another checkpoint format
    or version, a malformed checkpoint, an arrays file that is not the checkpoint's own (named
    by its generation, a regular file inside the directory, with the recorded checksum), a run
    made by a different experiment (naming the sections that differ), a log that does not hold
    the records the checkpoint was written with (count and checksum), and a strategy state that
    does not match the experiment's strategy or the checkpoint's generation.
    """
    d = Path(directory)
    jpath = d / CHECKPOINT_JSON
    if not d.is_dir():
        raise RunDirError(f"cannot resume: {d} is not a directory")
    if not jpath.exists():
        raise RunDirError(
            f"cannot resume: {d} holds no {CHECKPOINT_JSON}; it is not a meta-training run "
            "directory, or its run stopped before the first checkpoint (start it afresh)"
        )
    doc = _check_doc(read_json_file(jpath, what="checkpoint"), jpath)
    if doc.spec_hash != setup.spec_hash:
        check_experiment_file(d, setup)  # names the differing sections
        raise RunDirError(f"cannot resume {d}: it was made by a different experiment")
    if doc.seed != setup.experiment.seed:
        raise RunDirError(f"cannot resume {d}: {jpath} was written with seed {doc.seed}, the "
                          f"experiment has seed {setup.experiment.seed}")
    if doc.log.records != doc.generation + 1:
        raise RunDirError(
            f"cannot resume: {jpath} is inconsistent: generation {doc.generation} but "
            f"{doc.log.records} log records (record 0 is the initial genome, so they must be "
            f"{doc.generation + 1})"
        )
    arrays = _read_npz(d, doc, jpath, checkpoint_bytes_bound(setup, doc.generation))
    records = read_log(d / LOG)
    n = doc.log.records
    if len(records) < n or _sha(log_text(records[:n])) != doc.log.sha256:
        raise RunDirError(
            f"cannot resume: {d / LOG} does not hold the {n} records the checkpoint was written with"
        )
    evaluations = records[n - 1].get("evaluations")
    if evaluations != doc.generation * setup.strategy.popsize:
        raise RunDirError(
            f"cannot resume: the log's record {n - 1} counts {shorten(repr(evaluations))} evaluations, "
            f"but {doc.generation} generations of {setup.strategy.popsize} make "
            f"{doc.generation * setup.strategy.popsize}"
        )
    sstate = _strategy_state(setup, doc, arrays, jpath)
    return doc.generation, sstate, records[:n]


def _strategy_state(setup: Any, doc: CheckpointDoc, arrays: dict[str, np.ndarray], jpath: Path) -> Any:
    """The strategy's state, rebuilt from the checkpoint and checked against its generation."""
    from blursim.meta.strategies import CheckpointError

    try:
        sstate = setup.strategy.state_from_data(doc.strategy, arrays)
    except (CheckpointError, SpecError) as e:
        raise RunDirError(f"cannot resume: {jpath}: {e}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError, AssertionError) as e:
        # the strategy's payload is data from a file: any shape of wrongness is malformed data
        raise RunDirError(
            f"cannot resume: {jpath}: the strategy's state is malformed ({type(e).__name__}: {shorten(e)})"
        ) from None
    told = getattr(sstate, "generation", doc.generation)
    if told != doc.generation or getattr(sstate, "pending", None) is not None:
        raise RunDirError(
            f"cannot resume: {jpath} is inconsistent: the strategy's state is after {told} "
            f"generation(s), the checkpoint says {doc.generation}"
        )
    # the arrays file holds exactly what this state writes: a member nobody reads is not ignored
    _, written = setup.strategy.state_to_data(sstate)
    extra = sorted(set(arrays) - set(written))
    if extra:
        names = ", ".join(shorten(repr(k)) for k in extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise RunDirError(
            f"cannot resume: {jpath.parent / doc.arrays.file} holds member(s) {names} that a "
            f"{setup.strategy.name} checkpoint does not have; it was not written by blursim for this run "
            "(start the run afresh in another directory)"
        )
    return sstate
