"""Plain-text progress lines for a meta-training run that is not watched on a terminal.

With its output redirected (``nohup``, SLURM, CI, ``> log.txt``) a run has no progress
bar (:class:`~blursim.meta.observers.ProgressBar` draws only on a terminal).
:class:`ProgressLines` writes instead, to a stream that is not a terminal, one line

- at the first record and after the last generation;
- after a generation when ``every`` seconds have passed since the last line;
- from a background thread, when ``every`` seconds passed without a line: the
  latest generation's line again, or, when one generation takes longer than
  ``every``, which generation is under way and for how long -- so that a log
  never stays silent for more than ``every`` seconds (plus about one second).

A line names the generation (a gradient run says "step": one optimizer step of
:mod:`blursim.meta.gradient` is one record of the log), the best and mean fitness
of the generation, the meta-loss of a gradient step, the latest validation
accuracy with the generation it was measured at, the rate and an estimate of the
time left (from the mean duration of the generations of this process), e.g.::

    toy: generation 12/40 (30%) | fitness best 0.7812 mean 0.7102 | validation 0.7421 (at 10) | 1.9 s/generation | ETA 53 s
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any


def unit_of(strategy_name: str) -> str:
    """What one record of the log is called: ``"step"`` for gradient meta-training (strategy
    ``gradient``: one optimizer step), ``"generation"`` for an evolution strategy."""
    return "step" if strategy_name == "gradient" else "generation"


def duration(seconds: float) -> str:
    """``seconds`` for a person: ``42 s``, ``7 min 05 s``, ``2 h 03 min``."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class ProgressLines:
    """Observer of :meth:`~blursim.meta.trainer.MetaTrainer.run` that writes progress lines (see
    the module docstring).

    ``total``: the generations (steps) the run is to reach; ``every``: the most seconds between
    two lines; ``stream``: where to write (default ``sys.stdout``); silent when ``quiet`` or when
    ``stream`` is a terminal (unless ``force``). ``clock``: a monotonic clock in seconds;
    ``heartbeat``: whether a background thread writes the "under way" lines of a long generation.
    """

    def __init__(self, total: int, *, every: float = 20.0, stream: Any = None, quiet: bool = False,
                 force: bool = False, clock: Any = time.monotonic, heartbeat: bool = True) -> None:
        self.total = total
        self.every = float(every)
        self.stream = stream if stream is not None else sys.stdout
        tty = getattr(self.stream, "isatty", lambda: False)()
        self.enabled = not quiet and (force or not tty)
        self.clock = clock
        self.heartbeat = heartbeat
        self.lines = 0
        self._records = 0  # records seen by this observer
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._name = ""
        self._unit = "generation"
        self._done = 0  # generations completed
        self._first = None  # (clock, done) at the first record of this process
        self._last_line = 0.0
        self._gen_started = 0.0
        self._validation: tuple[float, int] | None = None
        self._last_rec: dict | None = None

    # ------------------------------------------------------------------ observer
    def on_start(self, trainer: Any, state: Any) -> None:
        if not self.enabled:
            return
        self._name = trainer.setup.name
        self._unit = unit_of(trainer.exp.strategy.name)
        self._done = 0 if state is None else state.generation
        now = self.clock()
        self._last_line = self._gen_started = now
        if state is not None:  # resumed: its latest validation so far
            self._remember_validation(state.records)
            self._first = (now, self._done)
            self._write(f"{self._name}: resumed at {self._unit} {self._done}/{self.total}")
        if self.heartbeat:
            self._thread = threading.Thread(target=self._beat, name="blursim-progress", daemon=True)
            self._thread.start()

    def on_generation(self, trainer: Any, gen: Any) -> None:
        if not self.enabled:
            return
        rec = gen.record
        now = self.clock()
        with self._lock:
            self._done = rec["generation"]
            self._gen_started = now
            self._remember_validation([rec])
            self._last_rec = rec
            if self._first is None:
                self._first = (now, self._done)
            self._records += 1
            due = (self._records == 1 or self._done >= self.total or now - self._last_line >= self.every)
        if due:
            self._write(self.line(rec, now))

    def on_end(self, trainer: Any, state: Any, completed: bool) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        end = getattr(trainer, "end_validation", None) if completed else None
        if self.enabled and end is not None:
            self._write(f"{self._name}: validation {end['validation_mean']:.4f} at {self._unit} "
                        f"{end['generation']} (validated at the end)")

    # --------------------------------------------------------------------- lines
    def line(self, rec: dict, now: float) -> str:
        """The progress line after record ``rec``."""
        g, unit = rec["generation"], self._unit
        parts = [f"{self._name}: {unit} {g}/{self.total}"
                 + (f" ({100 * g / self.total:.0f}%)" if self.total else "")]
        fit = rec.get("fitness") or {}
        if fit.get("best") is not None:
            parts.append(f"fitness best {fit['best']:.4f} mean {fit['mean']:.4f}")
        elif (rec.get("mean") or {}).get("fitness") is not None:
            parts.append(f"fitness {rec['mean']['fitness']:.4f}")
        loss = (rec.get("meta_loss") or {}).get("mean")
        if loss is not None:
            parts.append(f"meta-loss {loss:.4f}")
        if self._validation is not None:
            v, at = self._validation
            parts.append(f"validation {v:.4f} (at {at})")
        if rec.get("diverged"):
            parts.append(f"{rec['diverged']} diverged")
        rate = self._rate(now)
        if rate is not None:
            parts.append(f"{rate:.3g} s/{unit}")
            if g < self.total:
                parts.append(f"ETA {duration(rate * (self.total - g))}")
        return " | ".join(parts)

    def _rate(self, now: float) -> float | None:
        """Mean seconds per generation in this process (None before a generation completed)."""
        if self._first is None:
            return None
        t0, g0 = self._first
        return (now - t0) / (self._done - g0) if self._done > g0 else None

    def _remember_validation(self, records: list[dict]) -> None:
        for r in records:
            v = (r.get("mean") or {}).get("validation_mean")
            if v is not None:
                self._validation = (v, r["generation"])

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.every / 4)):
            now = self.clock()
            with self._lock:
                quiet_for = now - self._last_line
                if quiet_for < self.every or self._done >= self.total:
                    continue
                busy = now - self._gen_started
                if busy < self.every and self._last_rec is not None:  # quick generations: the latest
                    msg = self.line(self._last_rec, now)
                else:
                    what = (f"{self._unit} {self._done + 1}/{self.total}" if self._records
                            else "the initial genome's measurement")  # record 0 of a fresh run
                    msg = f"{self._name}: {what} under way for {duration(busy)}"
            self._write(msg)

    def _write(self, text: str) -> None:
        with self._lock:
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # a closed or broken stream: progress is not worth a crash
                self.enabled = False
                self._stop.set()
            self.lines += 1
            self._last_line = self.clock()


__all__ = ["ProgressLines", "duration", "unit_of"]
