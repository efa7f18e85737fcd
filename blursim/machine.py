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


#: Environment variable capping the memory blursim assumes it may use (e.g. ``8GiB``).
MEMORY_ENV = "BLURSIM_MAX_MEMORY"

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 1000**2,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1000**3, "gib": 1 << 30, "t": 1 << 40, "tb": 1000**4,
          "tib": 1 << 40}


def parse_size(text: str) -> int | None:
    """``"512MiB"``, ``"2G"``, ``"1000000"`` -> bytes; ``None`` when ``text`` is not such a size."""
    import re

    m = re.fullmatch(r"\s*([0-9]{1,15}(?:\.[0-9]{0,15})?)\s*([A-Za-z]{0,3})\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        return None
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def memory_bytes() -> int:
    """Memory this process may use: the machine's RAM, or less where a cgroup limit or
    ``$BLURSIM_MAX_MEMORY`` says so. Runs that would need more are refused before they start."""
    sizes = []
    try:
        sizes.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        pass
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(f).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**62:
            sizes.append(int(text))
    env = os.environ.get(MEMORY_ENV)
    if env:
        cap = parse_size(env)
        if cap is None:
            from blursim.errors import SpecError

            raise SpecError(f"${MEMORY_ENV} must be a size such as 8GiB or 512MiB", value=env)
        sizes.append(cap)
    return min(sizes) if sizes else 2**40


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
