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


def _read_int(path: str | Path) -> int | None:
    """The number in a small ``/sys`` or ``/proc`` file (``None``: absent, ``max`` or unreadable)."""
    try:
        text = Path(path).read_text()[:100].strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and len(text) < 25 else None


def cgroup_limit() -> int | None:
    """The memory limit of this process's cgroup (v2 ``memory.max`` of its own cgroup and the
    root's, v1 ``memory.limit_in_bytes``); ``None`` when there is none."""
    files = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
    try:
        for line in Path("/proc/self/cgroup").read_text()[:10_000].splitlines():
            hier, _, rest = line.partition(":")
            ctrl, _, rel = rest.partition(":")
            rel = rel.strip().lstrip("/")
            if not rel or ".." in rel.split("/"):
                continue
            if ctrl == "":  # cgroup v2
                files.append(f"/sys/fs/cgroup/{rel}/memory.max")
            elif "memory" in ctrl.split(","):
                files.append(f"/sys/fs/cgroup/memory/{rel}/memory.limit_in_bytes")
    except OSError:
        pass
    limits = [n for n in map(_read_int, files) if n is not None and n < 2**62]
    return min(limits) if limits else None


def address_space_left() -> int | None:
    """Bytes of address space this process may still map under ``ulimit -v`` (``RLIMIT_AS``,
    less what it maps now); ``None`` when unlimited."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        return None
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    used = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                used = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    return max(int(soft) - used, 0)


def memory_cap() -> int | None:
    """``$BLURSIM_MAX_MEMORY`` in bytes (``None`` when unset); refuses (one line) a value that is
    not a positive size such as ``8GiB``."""
    env = os.environ.get(MEMORY_ENV)
    if env is None or not env.strip():
        return None
    cap = parse_size(env)
    if cap is None or cap <= 0:
        from blursim.errors import SpecError, shorten

        raise SpecError(f"${MEMORY_ENV} must be a positive size such as 8GiB or 512MiB",
                        value=shorten(env, 40), hint="Unset it to use what the machine allows.")
    return cap


def memory_limits() -> dict[str, int]:
    """Each limit on the memory this process may use, in bytes: ``physical`` RAM, the ``cgroup``
    limit, the ``address space`` left under ``ulimit -v``, ``$BLURSIM_MAX_MEMORY``; absent ones
    are left out."""
    out: dict[str, int] = {}
    try:
        out["physical memory"] = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        pass
    cg = cgroup_limit()
    if cg is not None:
        out["cgroup limit"] = cg
    left = address_space_left()
    if left is not None:
        out["address space left under ulimit -v"] = left
    cap = memory_cap()
    if cap is not None:
        out[f"${MEMORY_ENV}"] = cap
    return out


def memory_bytes() -> int:
    """Memory this process may use: the least of the machine's RAM, its cgroup's limit, the
    address space left under its ``ulimit -v`` and ``$BLURSIM_MAX_MEMORY``. Runs that would need
    more are refused before they start."""
    limits = memory_limits()
    return min(limits.values()) if limits else 2**40


def memory_bound() -> tuple[int, str]:
    """``(bytes, what sets it)``: :func:`memory_bytes` and the name of the limit that is least."""
    limits = memory_limits()
    if not limits:
        return 2**40, "assumed"
    name = min(limits, key=limits.get)
    return limits[name], name


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
