"""Opt-in observers of a meta-training run: the run directory and a progress bar.

:class:`RunDirectory` writes, after every generation (each file atomically):

==========================  =================================================
``experiment.json``         the experiment as given and its resolved, hashed
                            form (written once, when the run is created)
``log.jsonl``               one JSON record per generation (record 0: the
                            initial genome); timing only under ``"time"``
``best_genome.json``        the generation's best candidate (a genome
                            document: ``blursim run --genome``); removed
                            when every candidate of the latest
                            generation diverged
``mean_genome.json``        the strategy's current mean genome
``checkpoint.json`` + NPZ   resumable state (:mod:`blursim.meta.io`), every
                            ``execution.checkpoint_every`` generations and at
                            the end (also when interrupted)
``meta_training.png``       curves of fitness and accuracies (at most every
                            ``plot_interval`` seconds, and at the end)
==========================  =================================================
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from blursim.errors import shorten
from blursim.io import remove_file
from blursim.meta import io as mio
from blursim.meta.records import TrainerState
from blursim.spec import dump_json as dump_spec


class RunDirectory:
    """Writes a run's files into ``path`` (see the module docstring).

    :meth:`create` (a fresh run) and :meth:`resume` lock the directory (:class:`~blursim.meta.io.RunLock`)
    until :meth:`close`, so two processes never share one directory.
    """

    def __init__(self, path: str | Path, *, plot: bool = True, plot_interval: float = 30.0) -> None:
        self.path = Path(path)
        self.plot = plot
        self.plot_interval = plot_interval
        self._last_plot = 0.0
        self._checkpointed: tuple = (-1, None)  # (generation, completed) last written
        self._lock = mio.RunLock(self.path)

    # ------------------------------------------------------------ create/resume
    def _entries(self) -> list[str]:
        """What the directory holds, its lock and temporary files aside."""
        try:
            return sorted(n for n in os.listdir(self.path) if n != mio.LOCK and not mio.is_temporary(n))
        except FileNotFoundError:
            return []
        except OSError as e:
            raise mio.RunDirError(f"cannot read {self.path}: {e.strerror or e}") from None

    def _refuse_occupied(self) -> None:
        entries = self._entries()
        if not entries:
            return
        if mio.EXPERIMENT in entries:
            how = "continue it" if mio.CHECKPOINT_JSON in entries else (
                "it stopped before its first checkpoint: restart it")
            raise mio.RunDirError(
                f"{self.path} already holds a meta-training run; {how} with --resume {self.path}, "
                "or choose another output directory (--out)"
            )
        shown = ", ".join(shorten(n, 40) for n in entries[:5]) + (" ..." if len(entries) > 5 else "")
        raise mio.RunDirError(
            f"{self.path} is not empty and holds no blursim run ({shown}); a run would mix its "
            "files with these. Choose a new or empty output directory."
        )

    def create(self, setup: Any) -> None:
        """Start a fresh run here: the directory must be new or empty (a temporary file or lock
        left by a run killed at its very start aside). Locks it."""
        if self.path.exists() and not self.path.is_dir():
            raise mio.RunDirError(f"{self.path} exists and is not a directory; choose another output directory")
        try:
            if (self.path / mio.LOCK).exists():  # a run directory: is another process in it?
                self._lock.acquire()
            self._refuse_occupied()  # before anything is written into a directory that is not ours
            self.path.mkdir(parents=True, exist_ok=True)
            if not self._lock.held:
                self._lock.acquire()

            self._refuse_occupied()  # again, now that no other process can change it
            self._clear_temporary()
            self._write_experiment(setup)
        except OSError as e:
            self.close()
            raise mio.RunDirError(f"cannot create the run in {self.path}: {e.strerror or e}") from None
        except BaseException:
            self.close()
            raise

    def resume(self, setup: Any) -> Any:
        """Lock the directory and return the :class:`~blursim.meta.trainer.TrainerState` to
        continue from: the checkpoint's, or ``None`` (a fresh start, after clearing the run's
        outputs) when the run stopped before its first checkpoint."""
        if not self.path.is_dir():
            raise mio.RunDirError(f"cannot resume: {self.path} is not a directory")
        self._lock.acquire()
        try:
            if (self.path / mio.CHECKPOINT_JSON).exists():
                state = self.load(setup)
                for name in self._entries():  # arrays of older checkpoints a kill left behind
                    if mio.NPZ_PATTERN.fullmatch(name) and name != mio.npz_name(state.generation):
                        remove_file(self.path / name)
            elif (self.path / mio.EXPERIMENT).exists():  # stopped before its first checkpoint:
                mio.check_experiment_file(self.path, setup)  # start it again (what it wrote is
                state = None  # rewritten, identically, by the fresh run)
            else:
                mio.read_checkpoint(self.path, setup)  # raises: no checkpoint, no run
                state = None  # pragma: no cover
            self._clear_temporary()
            return state
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the directory's lock."""
        self._lock.release()

    def _write_experiment(self, setup: Any) -> None:
        doc = {
            "experiment": setup.experiment.model_dump(mode="json", by_alias=True),
            "source": setup.source,
            "spec_hash": setup.spec_hash,
            "hashed": setup.hashed,
        }
        mio.atomic_write_text(self.path / mio.EXPERIMENT, mio.dump_json(doc))

    def _clear_temporary(self) -> None:
        for name in os.listdir(self.path):
            if mio.is_temporary(name):  # left by a killed writer; never read
                remove_file(self.path / name)

    def load(self, setup: Any) -> Any:
        """The :class:`~blursim.meta.records.TrainerState` checkpointed here."""
        gen, sstate, records = mio.read_checkpoint(self.path, setup)
        self._checkpointed = (gen, None)
        return TrainerState(gen, sstate, records)

    # ---------------------------------------------------------------- observer
    def on_generation(self, trainer: Any, gen: Any) -> None:
        state, rec = gen.state, gen.record
        mio.atomic_write_text(self.path / mio.LOG, mio.log_text(state.records))
        if gen.best_x is not None:
            g = trainer.genome(gen.best_x, kind="best", generation=rec["generation"],
                               fitness=rec["best"]["fitness"],
                               validation_mean=rec["best"]["validation_mean"])
            mio.atomic_write_text(self.path / "best_genome.json", dump_spec(g))
        elif rec["generation"] > 0:  # every candidate diverged: there is no best of this generation
            remove_file(self.path / "best_genome.json")
        measured = rec["mean"] or {}  # gradient steps measure the current genome periodically
        g = trainer.genome(gen.mean_x, kind="mean", generation=rec["generation"],
                           fitness=measured.get("fitness"), validation_mean=measured.get("validation_mean"))
        mio.atomic_write_text(self.path / "mean_genome.json", dump_spec(g))
        if state.generation % trainer.exp.execution.checkpoint_every == 0:
            self._checkpoint(trainer, state)
        if self.plot and time.monotonic() - self._last_plot >= self.plot_interval:
            self._plot(state.records, trainer.exp)

    def on_end(self, trainer: Any, state: Any, completed: bool) -> None:
        end = getattr(trainer, "end_validation", None) if completed else None
        if end is not None:  # the last generation, validated at the end (not in the log)
            measured = state.records[-1]["mean"] or {}
            g = trainer.genome(end["x"], kind="mean", generation=end["generation"],
                               fitness=measured.get("fitness"), validation_mean=end["validation_mean"],
                               validation=end["validation"], validated_at_end=True)
            mio.atomic_write_text(self.path / "mean_genome.json", dump_spec(g))
        self._checkpoint(trainer, state, completed=completed)
        if self.plot:
            self._plot(state.records, trainer.exp)

    def _checkpoint(self, trainer: Any, state: Any, *, completed: bool = False) -> None:
        if self._checkpointed == (state.generation, completed):
            return
        mio.write_checkpoint(self.path, trainer, state, completed=completed)
        self._checkpointed = (state.generation, completed)

    def _plot(self, records: list[dict], exp: Any) -> None:
        from blursim.meta.plot import plot_records

        mio.atomic_write_bytes(self.path / "meta_training.png", plot_records(records, experiment=exp))
        self._last_plot = time.monotonic()


class ProgressBar:
    """A tqdm bar over generations (gradient steps) on stderr; silent when ``quiet`` or stderr is
    not a TTY."""

    def __init__(self, total: int, *, quiet: bool = False, stream: Any = None) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.disable = quiet or not getattr(self.stream, "isatty", lambda: False)()
        self.bar = None

    def on_start(self, trainer: Any, state: Any) -> None:
        from tqdm import tqdm

        done = 0 if state is None else state.generation
        unit = "step" if trainer.exp.strategy.name == "gradient" else "gen"
        self.bar = tqdm(total=self.total, initial=done, desc=trainer.setup.name, unit=unit,
                        file=self.stream, disable=self.disable, dynamic_ncols=True)

    def on_generation(self, trainer: Any, gen: Any) -> None:
        rec = gen.record
        if self.bar is None:
            return
        post = {}
        if rec["fitness"] is not None and rec["fitness"]["best"] is not None:
            post["best"] = f"{rec['fitness']['best']:.3f}"
            post["mean"] = f"{rec['fitness']['mean']:.3f}"
        if (rec.get("meta_loss") or {}).get("mean") is not None:
            post["loss"] = f"{rec['meta_loss']['mean']:.4f}"
        if (rec["mean"] or {}).get("validation_mean") is not None:
            post["val"] = f"{rec['mean']['validation_mean']:.3f}"
        post["T"] = rec["unroll"]
        if rec["diverged"]:
            post["div"] = rec["diverged"]
        if rec.get("skipped"):
            post["skipped"] = rec["skipped"]
        self.bar.set_postfix(post, refresh=False)
        if rec["generation"] > 0:
            self.bar.update(1)

    def on_end(self, trainer: Any, state: Any, completed: bool) -> None:
        if self.bar is not None:
            self.bar.close()


def strip_time(records: list[dict]) -> list[dict]:
    """Records without their ``time`` field (what is equal between identical runs)."""
    return [{k: v for k, v in r.items() if k != "time"} for r in records]


def summary_line(records: list[dict], end: dict | None = None) -> str:
    """One line: accuracies of the initial genome vs the latest (validated) record, or vs the
    last record with ``end``, its validation at the end (:meth:`MetaTrainer.validate_end`)."""
    first = records[0]
    validated = [r for r in records if (r.get("mean") or {}).get("validation_mean") is not None]
    last = validated[-1] if validated and validated[-1]["generation"] > 0 else records[-1]
    if end is not None:
        last = {**records[-1], "mean": {**(records[-1].get("mean") or {}),
                                        "validation_mean": end["validation_mean"]}, "best": None}

    def acc(r: dict, who: str) -> str:
        g = r.get(who) or {}
        parts = []
        if g.get("train_mean") is not None:
            parts.append(f"train {g['train_mean']:.4f}")
        if g.get("validation_mean") is not None:
            parts.append(f"validation {g['validation_mean']:.4f}")
        return ", ".join(parts) or "n/a"

    gradient = "meta_loss" in last
    current, unit = ("current genome", "step") if gradient else ("mean genome", "generation")
    out = (f"{unit} 0 (initial genome): {acc(first, 'mean')}; {unit} {last['generation']}: "
           f"{current} {acc(last, 'mean')}")
    if last.get("best"):
        out += f"; best genome {acc(last, 'best')}"
    return out


__all__ = ["ProgressBar", "RunDirectory", "strip_time", "summary_line"]
