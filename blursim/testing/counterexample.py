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

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from blursim.errors import SpecError
from blursim.io import atomic_write_json, json_ready

FORMAT = "blursim.counterexample/1"


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
        """Read a folder written by :meth:`save`; bad folders raise a one-line :class:`SpecError`."""
        d = Path(path)
        if not d.is_dir():
            raise SpecError(f"{d} is not a counterexample folder (it does not exist or is not a directory)",
                            hint="Give the folder that err.save(DIR) wrote.")
        for name in ("law.json", "network.json", "genome.json", "data.npz"):
            if not (d / name).is_file():
                raise SpecError(f"{d} is not a counterexample folder: {name} is missing",
                                hint="A counterexample folder holds law.json, network.json, genome.json "
                                     "and data.npz.")
        try:
            meta = json.loads((d / "law.json").read_text())
            spec = json.loads((d / "network.json").read_text())
            genome = json.loads((d / "genome.json").read_text())
        except json.JSONDecodeError as e:
            raise SpecError(f"{d}: invalid JSON ({e})") from None
        if meta.get("format") != FORMAT:
            raise SpecError("not a counterexample written by this version of blursim",
                            source=str(d / "law.json"), path="$.format", value=meta.get("format"),
                            choices=[FORMAT])
        with np.load(d / "data.npz") as z:
            n = int(meta.get("steps", len(z.files) // 2))
            try:
                batches = [(z[f"x_{t}"], z[f"y_{t}"]) for t in range(n)]
            except KeyError as e:
                raise SpecError(f"{d / 'data.npz'} lacks batch {e}", hint="The folder is incomplete.") from None
        state = None
        if (d / "state.npz").is_file():
            with np.load(d / "state.npz") as z:
                state = {k: z[k] for k in z.files}
        return cls(law=meta["law"], spec=spec, genome=genome, batches=batches,
                   options=meta.get("options") or {}, seed=int(meta.get("seed", 0)),
                   replicas=int(meta.get("replicas", 1)), atol=meta.get("atol"), rtol=meta.get("rtol"),
                   check_domain=bool(meta.get("check_domain", True)), state=state,
                   message=meta.get("message", ""), module=meta.get("module", "blursim.testing.laws"))
