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
import os
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


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise DataError(
            f"IDX file {str(path)!r} does not exist; check the path (and whether the "
            "file is stored with or without a .gz suffix)."
        ) from None
    except OSError as exc:
        raise DataError(
            f"IDX file {str(path)!r} cannot be read ({exc.strerror or exc}); "
            "check that it is a readable regular file."
        ) from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"IDX file {str(path)!r} looks gzip-compressed but cannot be decompressed "
                f"({exc}); the download is probably truncated or corrupt, so fetch it again."
            ) from None
    return raw


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (plain or gzip) into an array of its dimensions.

    The result has the file's element type in native byte order (``uint8``
    for MNIST images and labels) and is a fresh, writable array.
    """
    p = Path(path)
    data = _read_bytes(p)
    name = str(p)
    if len(data) < 4:
        raise DataError(
            f"IDX file {name!r} is truncated: it has {len(data)} byte(s), fewer than the "
            "4-byte magic number; the file is corrupt or not an IDX file, so fetch it again."
        )
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise DataError(
            f"IDX file {name!r} has magic number 0x{data[:4].hex()}, which does not start with "
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
    if len(data) < header_len:
        raise DataError(
            f"IDX file {name!r} is truncated: its header declares {ndim} dimension(s) "
            f"({header_len} header bytes) but the file has only {len(data)} byte(s); "
            "fetch the file again."
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = IDX_DTYPES[code]
    expected = dtype.itemsize * int(np.prod(dims, dtype=np.int64))
    body = len(data) - header_len
    if body != expected:
        what = "truncated" if body < expected else "corrupt (it has trailing bytes)"
        raise DataError(
            f"IDX file {name!r} is {what}: dimensions {list(dims)} of {dtype.name} need "
            f"{expected} data byte(s) but {body} follow the header; fetch the file again."
        )
    arr = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header_len)
    return arr.reshape(dims).astype(dtype.newbyteorder("="), copy=True)
