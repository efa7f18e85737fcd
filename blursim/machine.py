"""Where a number was measured: the CPU, the usable cores and the blursim commit.

Benchmarks (:mod:`blursim.cli.bench`) and the reproduction scripts
(``tools/repro_*.py``) record these next to every figure they report.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

#: The directory holding the ``blursim`` package (the repository root in a checkout).
CHECKOUT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere what :mod:`platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def git_commit() -> dict[str, Any]:
    """``{"commit": full hash or None, "blursim_modified": uncommitted changes under blursim/ or None}``
    for the checkout blursim runs from (``None`` outside a git checkout)."""
    def _git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=CHECKOUT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = _git("rev-parse", "HEAD") or None
    status = _git("status", "--porcelain", "--untracked-files=no", "--", "blursim")
    return {"commit": commit, "blursim_modified": bool(status) if status is not None else None}
