"""Limits on what blursim reads, checked before any work (docs/design.md, "Limits").

A document (network, genome, experiment), a run directory's files and a
dataset file are read only when they are *regular* files of bounded size
(never a directory, a device such as ``/dev/zero``, a FIFO or a socket), and
only through :func:`read_regular_file`, which stops reading at the limit
instead of trusting the size the file system reports. JSON is then parsed
with bounded nesting depth and integer length (:mod:`blursim.spec.loading`),
and every size, count and number of a document is range-checked by its
model before anything is built from it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from blursim.errors import BlursimError, SpecError, shorten

#: Largest JSON document read (network, genome, experiment), in bytes.
MAX_DOCUMENT_BYTES = 16 * 2**20
#: Deepest nesting of JSON arrays and objects in a document.
MAX_DEPTH = 64
#: Longest integer literal in a document, in digits (2**64 has 20).
MAX_INT_DIGITS = 30
#: Longest file path accepted (characters).
MAX_PATH_CHARS = 4096
#: Longest name in a document (population, projection, genome group, task label, experiment).
MAX_NAME_CHARS = 100
#: Longest free text in a document (``description``).
MAX_TEXT_CHARS = 20_000

#: Neurons in one population.
MAX_POPULATION = 2**24
#: Largest seed (a 64-bit unsigned integer).
MAX_SEED = 2**64 - 1
#: Synchronous sweeps per step.
MAX_SWEEPS = 1000
#: Rows of one training or query batch.
MAX_BATCH = 2**20
#: Training steps of one unroll (and of a curriculum's increment).
MAX_STEPS = 10**6
#: Query batches, replicas, generations.
MAX_QUERY_BATCHES = 10**5
MAX_REPLICAS = 1024
MAX_GENERATIONS = 10**7
#: Evolution strategy population and initial step size.
MAX_POPSIZE = 10_000
MAX_SIGMA0 = 1e3
#: Scale of a random initial genome and of the initial synapses (``synapse_init.scale``).
MAX_INIT_SCALE = 1e3
#: Memory budget of an experiment, in MB (1 PiB).
MAX_MEMORY_BUDGET_MB = 2.0**30
#: Local Dask worker processes an experiment may ask for.
MAX_LOCAL_WORKERS = 64
#: ``local2d`` radius (larger than any grid's diagonal, i.e. all-to-all).
MAX_RADIUS = 1e8
#: Largest run-directory file read back (a log, a checkpoint's arrays).
MAX_RUN_FILE_BYTES = 2**31


def check_path_text(path: Any, *, what: str = "file", error: type[BlursimError] = SpecError,
                    where: str | None = None) -> str:
    """``str(path)``, or a located error when it is too long or holds a NUL byte."""
    s = os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)
    if isinstance(s, bytes):
        s = s.decode("utf-8", "replace")
    if len(s) > MAX_PATH_CHARS:
        raise _err(error, f"{what} path is {len(s)} characters long, more than the limit of "
                   f"{MAX_PATH_CHARS}", where, value=shorten(s))
    if "\x00" in s:
        raise _err(error, f"{what} path contains a NUL character", where, value=shorten(s))
    return s


def read_regular_file(path: str | os.PathLike, *, limit: int, what: str = "file",
                      error: type[BlursimError] = SpecError, where: str | None = None) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``limit`` bytes.

    Refuses (``error``, naming the file) a missing file, a directory, anything that is not a
    regular file (a device such as ``/dev/zero``, a FIFO, a socket), a file larger than the
    limit, an over-long path and any OS error. A FIFO is never opened (it could block); the
    file is opened non-blocking and checked again after opening, and reading stops one byte
    past the limit whatever the file claims its size is.

    ``where`` (a JSON path, e.g. ``$.network``) is attached to a :class:`SpecError`.
    """
    s = check_path_text(path, what=what, error=error, where=where)
    name = shorten(s, 200)
    try:
        st = os.stat(s)
    except FileNotFoundError:
        raise _err(error, f"file not found: {name}", where,
                   hint="Check the path (relative paths are relative to the current directory or, "
                   "inside a document, to that document's file).") from None
    except OSError as e:
        raise _err(error, f"cannot read {what} {name}: {e.strerror or e}", where) from None
    _check_stat(st, name, what, limit, error, where)
    try:
        fd = os.open(s, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise _err(error, f"cannot open {what} {name}: {e.strerror or e}", where) from None
    try:
        _check_stat(os.fstat(fd), name, what, limit, error, where)  # the file opened, not a swapped one
        chunks, total = [], 0
        while total <= limit:
            try:
                b = os.read(fd, min(1 << 20, limit + 1 - total))
            except OSError as e:
                raise _err(error, f"cannot read {what} {name}: {e.strerror or e}", where) from None
            if not b:
                break
            chunks.append(b)
            total += len(b)
    finally:
        os.close(fd)
    if total > limit:
        raise _too_big(error, name, what, limit, where)
    return b"".join(chunks)


def _check_stat(st: os.stat_result, name: str, what: str, limit: int, error, where) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise _err(error, f"{name} is a directory, expected a {what}", where)
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a file")
        raise _err(error, f"{name} is {kind}, not a regular file; a {what} must be a regular file",
                   where)
    if st.st_size > limit:
        raise _too_big(error, name, what, limit, where)


def _too_big(error, name: str, what: str, limit: int, where) -> BlursimError:
    return _err(error, f"{name} is larger than the limit of {format_bytes(limit)} for a {what}", where)


def _err(error: type[BlursimError], message: str, where: str | None, **kw: Any) -> BlursimError:
    if issubclass(error, SpecError):
        return error(message, path=where, **kw)
    extra = "" if kw.get("value") is None else f" (got {kw['value']!r})"
    hint = f" {kw['hint']}" if kw.get("hint") else ""
    return error(f"{message}{extra}.{hint}")


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``; GiB for anything from 1 GiB up (the unit errors quote)."""
    n = float(n)
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size or unit == "KiB" and n >= 1000:
            return f"{n / size:.3g} {unit}" if n / size < 1000 or unit != "GiB" else f"{n / size:,.0f} GiB"
    return f"{int(n)} bytes"


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path`` resolves (symbolic links followed) to ``root`` or below it."""
    p, r = Path(path).resolve(), Path(root).resolve()
    return p == r or r in p.parents
