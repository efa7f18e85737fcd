"""Reader for the IDX file format used by MNIST, Fashion-MNIST and EMNIST.

An IDX file is a header followed by the array data, all big-endian:

* bytes 0-1: zero;
* byte 2: the element type -- ``0x08`` unsigned byte, ``0x09`` signed byte,
  ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64;
* byte 3: the number of dimensions ``n``;
* then ``n`` unsigned 32-bit sizes, then the elements in C order.

Files may be gzip-compressed (recognised by their content, whatever their
name). Any deviation -- short header, unknown type code, too little or too
much data, broken gzip stream -- raises :class:`~blursim.errors.DataError`
naming the file.
"""

from __future__ import annotations

import gzip
import math
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np

from blursim.errors import DataError

__all__ = ["read_idx", "IDX_DTYPES"]

#: IDX element type code -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"

#: Largest array an IDX file may declare (bytes of its data); EMNIST's largest is ~0.55 GB.
MAX_IDX_BYTES = 4 * 2**30
_CHUNK = 1 << 22


class _Reader:
    """The file's decompressed bytes, read on demand (never more than asked for)."""

    def __init__(self, fh, name: str) -> None:
        self.name = name
        head = fh.peek(2)[:2] if hasattr(fh, "peek") else b""
        self.stream = gzip.GzipFile(fileobj=fh, mode="rb") if head == _GZIP_MAGIC else fh
        self.gzip = head == _GZIP_MAGIC

    def read(self, n: int) -> bytes:
        try:
            return self.stream.read(n)
        except (OSError, EOFError, zlib.error) as exc:
            if not self.gzip:
                raise DataError(f"IDX file {self.name!r} cannot be read ({exc}); check that it is a "
                                "readable regular file.") from None
            raise DataError(
                f"IDX file {self.name!r} looks gzip-compressed but cannot be decompressed "
                f"({exc}); the download is probably truncated or corrupt, so fetch it again."
            ) from None


def _open(path: Path):
    from blursim.limits import check_path_text

    name = check_path_text(path, what="IDX file", error=DataError)
    try:
        st = os.stat(name)
        if not stat.S_ISREG(st.st_mode):
            raise DataError(f"IDX file {name!r} is not a regular file (a directory, device or FIFO); "
                            "point at the IDX file itself.")
        return open(name, "rb")
    except FileNotFoundError:
        raise DataError(
            f"IDX file {name!r} does not exist; check the path (and whether the "
            "file is stored with or without a .gz suffix)."
        ) from None
    except OSError as exc:
        raise DataError(
            f"IDX file {name!r} cannot be read ({exc.strerror or exc}); "
            "check that it is a readable regular file."
        ) from None


def read_idx(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> np.ndarray:
    """Read an IDX file (plain or gzip) into an array of its dimensions.

    The result has the file's element type in native byte order (``uint8``
    for MNIST images and labels) and is a fresh, writable array. The header is
    read first: an array larger than ``max_bytes`` (default: :data:`MAX_IDX_BYTES`, and
    never more than this machine's memory) is refused before anything is decompressed;
    never more than the declared size (plus one byte, to detect trailing data) is read, so
    a gzip bomb cannot inflate beyond it, and the data are read in chunks, so a header that
    claims more than the file holds costs no more than what the file holds.
    """
    from blursim.limits import format_bytes
    from blursim.machine import memory_bytes

    p = Path(path)
    name = str(p)
    with _open(p) as fh:
        r = _Reader(fh, name)
        head = r.read(4)
        if len(head) < 4:
            raise DataError(
                f"IDX file {name!r} is truncated: it has {len(head)} byte(s), fewer than the "
                "4-byte magic number; the file is corrupt or not an IDX file, so fetch it again."
            )
        zero, code, ndim = struct.unpack(">HBB", head)
        if zero != 0:
            raise DataError(
                f"IDX file {name!r} has magic number 0x{head.hex()}, which does not start with "
                "two zero bytes; it is not an (uncompressed or gzip) IDX file, so check that the "
                "path points at the right file."
            )
        if code not in IDX_DTYPES:
            known = ", ".join(f"0x{c:02X} ({d.name})" for c, d in IDX_DTYPES.items())
            raise DataError(
                f"IDX file {name!r} has unknown element type code 0x{code:02X}; valid codes are "
                f"{known}. The file is corrupt or not an IDX file."
            )
        if ndim == 0:
            raise DataError(
                f"IDX file {name!r} declares 0 dimensions; an IDX array needs at least one, "
                "so the file is corrupt or not an IDX file."
            )
        header_len = 4 + 4 * ndim
        raw_dims = r.read(4 * ndim)
        if len(raw_dims) < 4 * ndim:
            raise DataError(
                f"IDX file {name!r} is truncated: its header declares {ndim} dimension(s) "
                f"({header_len} header bytes) but the file has only {4 + len(raw_dims)} byte(s); "
                "fetch the file again."
            )
        dims = struct.unpack(f">{ndim}I", raw_dims)
        dtype = IDX_DTYPES[code]
        expected = dtype.itemsize * math.prod(dims)  # Python integers: no overflow
        limit = min(MAX_IDX_BYTES if max_bytes is None else max_bytes, memory_bytes())
        if expected > limit:
            raise DataError(
                f"IDX file {name!r} declares an array of dimensions {list(dims)} ({dtype.name}), "
                f"{format_bytes(expected)} of data, more than the limit of {format_bytes(limit)}; "
                "the file is corrupt or not a dataset blursim can hold in memory."
            )
        body = bytearray()  # grown as data arrive, so a header claiming more costs nothing
        while len(body) <= expected:
            chunk = r.read(min(_CHUNK, expected + 1 - len(body)))
            if not chunk:
                break
            body += chunk
    if len(body) != expected:
        what = "truncated" if len(body) < expected else "corrupt (it has trailing bytes)"
        got = f"{len(body)} data byte(s) follow" if len(body) <= expected else "more data bytes follow"
        raise DataError(
            f"IDX file {name!r} is {what}: dimensions {list(dims)} of {dtype.name} need "
            f"{expected} data byte(s) but {got} the header; fetch the file again."
        )
    arr = np.frombuffer(body, dtype=dtype, count=expected // dtype.itemsize)
    return arr.reshape(dims).astype(dtype.newbyteorder("="), copy=True)
