"""Meta-training runs as objects: list, summarise and compare run directories; compare genomes.

A run directory is what ``blursim meta-train`` writes (:mod:`blursim.meta.observers`,
:mod:`blursim.meta.io`): ``experiment.json``, ``log.jsonl`` (one record per generation,
record 0 the initial genome), ``best_genome.json``, ``mean_genome.json``, a checkpoint and
``meta_training.png``. :class:`Run` reads one (nothing is written, nothing is locked)::

    from blursim.runs import Run, find_runs

    run = Run("runs/toy")
    run.status                  # "finished", "stopped", "interrupted" or "running"
    run.done, run.total         # generations (gradient: steps) done, and the experiment's
    run.best_validation         # (value, generation) of the best validated mean genome
    log = run.arrays()          # the log as NumPy arrays, NaN where a record has no number
    log["generation"], log["validation"], log["fitness_best"]
    run.genome("mean")          # a GenomeSpec (blursim.spec)

    ranked = sorted(find_runs(["runs"]), key=Run.sort_key)   # best validation first

The vocabulary follows the run: one record of an evolution strategy's log is a
*generation*, one record of a gradient run's log a *step* (:attr:`Run.unit`).

Status: ``running`` while a process holds the directory's lock
(:class:`~blursim.meta.io.RunLock`); else ``finished`` when the log reached the
experiment's ``generations`` (or more, with ``--generations``); ``stopped`` when the run
ended as asked after fewer generations (``--generations N`` below the experiment's);
else ``interrupted`` (stopped by Ctrl-C, SIGTERM or an error). A stopped or interrupted
run goes on with ``blursim meta-train EXPERIMENT --resume DIR``.

"Better" is higher for accuracy and minus cross-entropy, lower for the mean squared error
(fitness metric ``mse``, whose validation numbers are MSE).

:func:`genome_diff` compares two genome documents field by field (the distance is the
Euclidean norm of the difference of every entry, optional fields at their defaults).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blursim.errors import BlursimError
from blursim.meta import io as mio

#: The log's numbers that :meth:`Run.arrays` returns, by name: a path into a record.
SERIES: dict[str, tuple[str, ...]] = {
    "generation": ("generation",),
    "unroll": ("unroll",),
    "evaluations": ("evaluations",),
    "fitness_best": ("fitness", "best"),
    "fitness_mean": ("fitness", "mean"),
    "fitness_median": ("fitness", "median"),
    "fitness_worst": ("fitness", "worst"),
    "fitness_best_ever": ("fitness", "best_ever"),
    "diverged": ("diverged",),
    "step_size": ("step_size",),
    "train": ("mean", "train_mean"),  # the mean (gradient: current) genome
    "validation": ("mean", "validation_mean"),
    "best_train": ("best", "train_mean"),  # the generation's best candidate
    "best_validation": ("best", "validation_mean"),
    "meta_loss": ("meta_loss", "mean"),  # gradient runs
    "grad_norm": ("grad_norm", "mean"),
    "seconds": ("time", "seconds"),
}


def _get(rec: dict, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(rec, dict):
            return None
        rec = rec.get(key)
    return rec


class Run:
    """A meta-training run directory, read (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise mio.RunDirError(f"{self.path} is not a directory")
        if not (self.path / mio.EXPERIMENT).exists():
            raise mio.RunDirError(f"{self.path} is not a meta-training run directory (it has no "
                                  f"{mio.EXPERIMENT}; blursim meta-train writes one)")
        doc = mio.read_json_file(self.path / mio.EXPERIMENT, what="run description")
        exp = doc.get("experiment") if isinstance(doc, dict) else None
        if not isinstance(exp, dict):
            raise mio.RunDirError(f"{self.path / mio.EXPERIMENT} is not the description of a "
                                  "blursim meta-training run")
        self.description = doc
        self.experiment: dict = exp
        self.source: str | None = doc.get("source")
        log = self.path / mio.LOG
        self.records: list[dict] = mio.read_log(log) if log.exists() else []

    # ------------------------------------------------------------- what it is
    @property
    def name(self) -> str:
        """The experiment's name, else its file's stem, else the directory's name."""
        if self.experiment.get("name"):
            return str(self.experiment["name"])
        return Path(self.source).stem if self.source else self.path.name

    @property
    def strategy(self) -> str:
        return str((self.experiment.get("strategy") or {}).get("name", "?"))

    @property
    def unit(self) -> str:
        """``"step"`` for gradient meta-training, ``"generation"`` for an evolution strategy."""
        from blursim.meta.progress import unit_of

        return unit_of(self.strategy)

    @property
    def metric(self) -> str:
        return str((self.experiment.get("fitness") or {}).get("metric", "accuracy"))

    @property
    def higher_is_better(self) -> bool:
        return self.metric != "mse"

    @property
    def done(self) -> int:
        """Generations (steps) in the log."""
        return self.records[-1]["generation"] if self.records else 0

    @property
    def total(self) -> int | None:
        """The experiment's ``generations``."""
        g = self.experiment.get("generations")
        return g if isinstance(g, int) else None

    @property
    def running(self) -> bool:
        """Whether a process holds the run's lock now (tested without creating anything)."""
        lock = self.path / mio.LOCK
        try:
            fd = os.open(lock, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return False
        try:
            if not mio._try_lock(fd):
                return True
            mio._unlock(fd)
            return False
        finally:
            os.close(fd)

    @property
    def status(self) -> str:
        if self.running:
            return "running"
        if self.records and self.total is not None and self.done >= self.total:
            return "finished"
        if self.records and self._completed_at() == self.done:
            return "stopped"
        return "interrupted"

    def _completed_at(self) -> int | None:
        """The generation at which the run ended by reaching the generations it was asked for
        (``checkpoint.json``'s ``completed``), else None; a missing or unreadable checkpoint is
        None (``status`` reads it; resuming checks it fully)."""
        try:
            ck = json.loads((self.path / mio.CHECKPOINT_JSON).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        if isinstance(ck, dict) and ck.get("completed") is True and type(ck.get("generation")) is int:
            return ck["generation"]
        return None

    # -------------------------------------------------------------- its numbers
    def series(self, path: str | Sequence[str]) -> np.ndarray:
        """One number per record: a name of :data:`SERIES` or a dotted path into the records
        (e.g. ``"mean.validation.center_circle"``); NaN where a record has none."""
        keys = SERIES.get(path, tuple(path.split("."))) if isinstance(path, str) else tuple(path)
        out = []
        for r in self.records:
            v = _get(r, keys)
            out.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan)
        return np.asarray(out, dtype=np.float64)

    def arrays(self) -> dict[str, np.ndarray]:
        """The log as NumPy arrays (one entry per record), every name of :data:`SERIES`."""
        return {name: self.series(keys) for name, keys in SERIES.items()}

    def validated(self) -> list[tuple[int, float]]:
        """``(generation, validation of the mean genome)`` of every validated record of the log
        (:attr:`end_validation` aside)."""
        v = self.series("validation")
        return [(int(r["generation"]), float(x)) for r, x in zip(self.records, v) if np.isfinite(x)]

    @property
    def end_validation(self) -> tuple[float, int] | None:
        """``(value, generation)`` of the final mean genome validated at the end of the run, when
        its schedule did not validate the last generation (``mean_genome.json``, not the log:
        :meth:`blursim.meta.MetaTrainer.validate_end`)."""
        path = self.path / "mean_genome.json"
        if not path.exists():
            return None
        doc = mio.read_json_file(path, what="genome")
        meta = doc.get("meta") if isinstance(doc, dict) else None
        if not isinstance(meta, dict) or not meta.get("validated_at_end") or meta.get("generation") != self.done:
            return None
        v = meta.get("validation_mean")
        return (float(v), self.done) if isinstance(v, (int, float)) else None

    def _validations(self) -> list[tuple[int, float]]:
        end = self.end_validation
        return self.validated() + ([] if end is None else [(end[1], end[0])])

    @property
    def last_validation(self) -> tuple[float, int] | None:
        """``(value, generation)`` of the latest validation of the mean genome (the log's, or the
        one at the end of the run)."""
        val = self._validations()
        return (val[-1][1], val[-1][0]) if val else None

    @property
    def best_validation(self) -> tuple[float, int] | None:
        """``(value, generation)`` of the best validation of the mean genome (the earliest on
        ties), the one at the end of the run included."""
        val = self._validations()
        if not val:
            return None
        pick = max if self.higher_is_better else min
        g, v = pick(val, key=lambda gv: gv[1])
        return v, g

    @property
    def seconds(self) -> float:
        """Compute time: the sum of the records' ``time.seconds`` (pauses between resumes not
        counted)."""
        s = self.series("seconds")
        return float(np.nansum(s)) if s.size else 0.0

    def genome(self, which: str = "mean") -> Any:
        """``best_genome.json`` or ``mean_genome.json`` as a :class:`~blursim.spec.GenomeSpec`."""
        from blursim.spec import load_genome

        if which not in ("best", "mean"):
            raise BlursimError(f"a run has a 'best' and a 'mean' genome (got {which!r})")
        path = self.path / f"{which}_genome.json"
        if not path.exists():
            raise mio.RunDirError(f"{path} does not exist (the run has no {which} genome yet)")
        return load_genome(path)

    def summary(self) -> dict[str, Any]:
        """What :func:`blursim runs list` shows, as plain data."""
        best, last = self.best_validation, self.last_validation
        return {
            "path": str(self.path), "experiment": self.name, "strategy": self.strategy, "unit": self.unit,
            "status": self.status, "done": self.done, "total": self.total, "metric": self.metric,
            "best_validation": None if best is None else {"value": best[0], "at": best[1]},
            "last_validation": None if last is None else {"value": last[0], "at": last[1]},
            "seconds": self.seconds,
        }

    def sort_key(self) -> tuple:
        """Best validation first (runs without validation last)."""
        b = self.best_validation
        if b is None:
            return (1, 0.0, str(self.path))
        return (0, -b[0] if self.higher_is_better else b[0], str(self.path))

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}: {self.name}, {self.strategy}, {self.status}, {self.done} {self.unit}s)"


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / mio.EXPERIMENT).is_file()


def find_runs(paths: Iterable[str | Path]) -> list[Run]:
    """The runs among ``paths``: each a run directory, or a directory whose subdirectories
    (one level down) include run directories. Refuses a path that is neither."""
    runs: list[Run] = []
    for p in map(Path, paths):
        if is_run_dir(p):
            runs.append(Run(p))
            continue
        if not p.is_dir():
            raise mio.RunDirError(f"{p} is not a directory")
        inside = sorted(q for q in p.iterdir() if q.is_dir() and is_run_dir(q))
        if not inside:
            raise mio.RunDirError(f"{p} is not a meta-training run directory and holds none "
                                  "(blursim meta-train --out DIR makes one)")
        runs.extend(Run(q) for q in inside)
    return runs


# --------------------------------------------------------------------- genomes
@dataclass
class FieldDiff:
    """How one field of one group differs: largest absolute difference and the field's norm of
    the difference."""

    group: str
    field: str
    max_abs: float
    norm: float


@dataclass
class GenomeDiff:
    """:func:`genome_diff`'s answer."""

    k: tuple[int, int]
    only_a: list[str]  # groups only in A
    only_b: list[str]
    fields: list[FieldDiff]  # the fields that differ, in document order
    distance: float  # Euclidean norm over every entry of the common groups
    max_abs: float
    compared: int  # entries compared

    @property
    def equal(self) -> bool:
        return not self.fields and not self.only_a and not self.only_b and self.k[0] == self.k[1]


def genome_diff(a: Any, b: Any, *, tol: float = 0.0) -> GenomeDiff:
    """Compare genomes ``a`` and ``b`` (:class:`~blursim.spec.GenomeSpec`) field by field over
    the groups both have; optional fields a genome leaves out count at their neutral values.
    A field differs when some entry differs by more than ``tol``. Genomes of different ``k``
    cannot be compared entry by entry (``fields`` empty, ``distance`` NaN)."""
    from blursim.genome.arrays import field_array
    from blursim.spec.genome import ALL_FIELDS

    only_a = sorted(set(a.groups) - set(b.groups))
    only_b = sorted(set(b.groups) - set(a.groups))
    if a.k != b.k:
        return GenomeDiff((a.k, b.k), only_a, only_b, [], math.nan, math.nan, 0)
    diffs, sq, mx, n = [], 0.0, 0.0, 0
    for g in (g for g in a.groups if g in b.groups):
        for f in ALL_FIELDS:
            d = field_array(a.groups[g], f, a.k) - field_array(b.groups[g], f, b.k)
            d = np.abs(np.asarray(d, dtype=np.float64))
            n += d.size
            sq += float(np.sum(d * d))
            m = float(d.max()) if d.size else 0.0
            mx = max(mx, m)
            if m > tol:
                diffs.append(FieldDiff(g, f, m, float(np.sqrt(np.sum(d * d)))))
    return GenomeDiff((a.k, b.k), only_a, only_b, diffs, math.sqrt(sq), mx, n)


__all__ = ["SERIES", "FieldDiff", "GenomeDiff", "Run", "find_runs", "genome_diff", "is_run_dir"]
