"""Files of a meta-training run: atomic writes, the JSON-lines log, checkpoints.

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
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from blursim import __version__
from blursim.errors import BlursimError
from blursim.io import atomic_write_bytes, atomic_write_text, fsync_dir  # noqa: F401

CHECKPOINT_FORMAT = "blursim.meta_checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_JSON = "checkpoint.json"
LOG = "log.jsonl"
EXPERIMENT = "experiment.json"


class RunDirError(BlursimError):
    """A run directory cannot be created, resumed or read."""


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


# ------------------------------------------------------------------------ log
def log_line(record: dict) -> str:
    """One record as one line of JSON (no NaN/Inf: they are written as null)."""
    return json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"


def log_text(records: list[dict]) -> str:
    return "".join(log_line(r) for r in records)


def read_log(path: str | Path) -> list[dict]:
    """The records of a ``log.jsonl``."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise RunDirError(f"{p} not found") from None
    try:
        return [json.loads(line) for line in lines if line.strip()]
    except json.JSONDecodeError as e:
        raise RunDirError(f"{p}: not JSON lines ({e})") from None


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


# ----------------------------------------------------------------- checkpoints
def write_checkpoint(directory: str | Path, trainer: Any, state: Any) -> None:
    """Checkpoint ``state`` (a :class:`~blursim.meta.trainer.TrainerState`) into ``directory``."""
    d = Path(directory)
    data, arrays = trainer.strategy.state_to_data(state.strategy_state)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    raw = buf.getvalue()
    npz = f"checkpoint-g{state.generation:07d}.npz"
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
    }
    atomic_write_text(d / CHECKPOINT_JSON, json.dumps(ck, indent=1, allow_nan=False) + "\n")
    fsync_dir(d)
    for old in d.glob("checkpoint-g*.npz"):
        if old.name != npz:
            try:
                old.unlink()
            except FileNotFoundError:
                pass


def read_checkpoint(directory: str | Path, setup: Any) -> tuple[int, Any, list[dict]]:
    """``(generation, strategy state, log records)`` of the run in ``directory``.

    Refuses (:class:`RunDirError`) a directory without a checkpoint, another
    checkpoint format or version, files that do not match, and a run made by
    a different experiment (naming the sections that differ).
    """
    from blursim.meta.experiment import differing_sections

    d = Path(directory)
    jpath = d / CHECKPOINT_JSON
    if not d.is_dir():
        raise RunDirError(f"cannot resume: {d} is not a directory")
    if not jpath.exists():
        raise RunDirError(
            f"cannot resume: {d} holds no {CHECKPOINT_JSON}; it is not a meta-training run "
            "directory, or its run stopped before the first checkpoint (start it afresh)"
        )
    try:
        ck = json.loads(jpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RunDirError(f"{jpath}: not valid JSON ({e})") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise RunDirError(f"{jpath} is not a blursim meta-training checkpoint")
    if ck.get("format_version") != CHECKPOINT_VERSION:
        raise RunDirError(
            f"{jpath} has checkpoint format version {ck.get('format_version')!r}; this blursim "
            f"({__version__}) reads version {CHECKPOINT_VERSION}"
        )
    if ck.get("spec_hash") != setup.spec_hash:
        diff = ""
        try:
            old = json.loads((d / EXPERIMENT).read_text(encoding="utf-8"))["hashed"]
            sections = differing_sections(old, setup.hashed)
            if sections:
                diff = f" (differs in: {', '.join(sections)})"
        except (OSError, KeyError, ValueError):
            pass
        raise RunDirError(
            f"cannot resume {d}: it was made by a different experiment{diff}. Resume it with "
            f"the experiment that made it ({d / EXPERIMENT} holds a copy), or start a new run "
            "in another directory."
        )
    npz = d / ck["arrays"]["file"]
    try:
        raw = npz.read_bytes()
    except FileNotFoundError:
        raise RunDirError(f"cannot resume: {npz} named by {jpath} is missing") from None
    if _sha(raw) != ck["arrays"]["sha256"]:
        raise RunDirError(f"cannot resume: {npz} does not match {jpath} (checksum differs)")
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    sstate = setup.strategy.state_from_data(ck["strategy"], arrays)
    records = read_log(d / LOG)
    n = int(ck["log"]["records"])
    if len(records) < n or _sha(log_text(records[:n])) != ck["log"]["sha256"]:
        raise RunDirError(
            f"cannot resume: {d / LOG} does not hold the {n} records the checkpoint was written with"
        )
    return int(ck["generation"]), sstate, records[:n]
