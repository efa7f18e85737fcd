"""NPZ archives read as hostile data: every member checked from its headers before it is inflated.

``numpy.load`` trusts an archive: a 200-byte member may declare a shape of
``(2**20, 2**20)`` (8 TiB), a deflated member may inflate to gigabytes, and an
object array is a pickle. :func:`read_npz` reads an NPZ held in memory (read
with :func:`blursim.limits.read_regular_file`, so the raw size is bounded)
and, before inflating anything, checks

* the archive: a ZIP whose central directory lists at most ``max_members``
  members, none encrypted, stored or deflated, each named ``KEY.npy``, no name twice;
* the inflated size each member declares in the ZIP headers: together at most
  ``max_bytes``;
* each member's ``.npy`` header (read by inflating only its first bytes): format
  1.0 or 2.0, a plain numeric dtype (no Python objects, i.e. no pickle, no
  structured records), at most ``max_ndim`` axes, and a shape whose bytes are
  exactly what the member holds after its header.

Only then is the member read, and it can yield no more than the bytes its header
declared (:mod:`zipfile` stops there and checks the CRC). Any problem is one error
of the caller's class naming the file, the member and what to do.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from typing import Any

import numpy as np

from blursim.errors import BlursimError, SpecError, shorten

#: Most members of one archive.
MAX_MEMBERS = 4096
#: Longest ``.npy`` header accepted (NumPy writes 128 bytes for any ordinary array).
MAX_HEADER_BYTES = 4096
#: Most axes of one array.
MAX_NDIM = 8
#: dtype kinds accepted by default: bool, signed and unsigned integers, floats.
NUMERIC = "biuf"

_MAGIC = b"\x93NUMPY"


def read_npz(raw: bytes, *, name: str, max_bytes: int, error: type[BlursimError] = SpecError,
             kinds: str = NUMERIC, max_members: int = MAX_MEMBERS, max_ndim: int = MAX_NDIM,
             what: str = "NPZ archive") -> dict[str, np.ndarray]:
    """The arrays of the NPZ archive ``raw`` (the bytes of file ``name``), in archive order.

    Refuses (``error``, naming ``name`` and the member) anything but a plain archive of numeric
    arrays whose inflated size, declared in the ZIP headers and checked before inflating, is at
    most ``max_bytes`` in all; arrays come back in native byte order.
    """
    fail = _failer(error, name, what)
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, NotImplementedError):
        raise fail("cannot be read: it is not an NPZ (ZIP) archive",
                   "Write it with numpy.savez (or blursim, which wrote it).") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise fail(f"has {len(infos)} members, more than the limit of {max_members}")
        seen: set[str] = set()
        total = 0
        for info in infos:
            member = info.filename
            if member in seen:
                raise fail(f"holds member {_q(member)} twice")
            seen.add(member)
            if not member.endswith(".npy") or len(member) <= 4:
                raise fail(f"holds member {_q(member)}, which is not an array (KEY.npy)",
                           "An NPZ holds only arrays written by numpy.savez.")
            if info.flag_bits & 0x1:
                raise fail(f"member {_q(member)} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise fail(f"member {_q(member)} uses ZIP compression method {info.compress_type}; "
                           "only stored and deflated members are read")
            total += info.file_size
        if total > max_bytes:
            from blursim.limits import format_bytes

            raise fail(f"would inflate to {format_bytes(total)}, more than the limit of "
                       f"{format_bytes(max_bytes)} (sizes declared in its ZIP headers; nothing was inflated)")
        out: dict[str, np.ndarray] = {}
        for info in infos:
            out[info.filename[:-4]] = _read_member(zf, info, fail, kinds, max_ndim)
    return out


def read_npy(raw: bytes, *, name: str, max_bytes: int, error: type[BlursimError] = SpecError,
             kinds: str = NUMERIC, max_ndim: int = MAX_NDIM, what: str = "NPY file's") -> np.ndarray:
    """The array of the ``.npy`` file ``raw`` (the bytes of file ``name``), checked as one member
    of :func:`read_npz` is: header, dtype, and shape against the bytes present, before copying."""
    fail = _failer(error, name, what)
    if len(raw) > max_bytes:
        from blursim.limits import format_bytes

        raise fail(f"size is larger than the limit of {format_bytes(max_bytes)}")
    return _read_array(io.BytesIO(raw), len(raw), "array", fail, kinds, max_ndim)  # "NPY file's array ..."


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, fail, kinds: str, max_ndim: int) -> np.ndarray:
    try:
        with zf.open(info) as f:
            return _read_array(f, info.file_size, f"member {_q(info.filename)}", fail, kinds, max_ndim)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError,
            NotImplementedError) as e:
        if isinstance(e, BlursimError):
            raise
        raise fail(f"member {_q(info.filename)} is corrupt ({shorten(e, 80)})") from None


def _read_array(f, size: int, member: str, fail, kinds: str, max_ndim: int) -> np.ndarray:
    """One ``.npy`` array of ``size`` bytes from stream ``f``: header first, then exactly its data."""
    head = f.read(12)
    if len(head) < 10 or head[:6] != _MAGIC:
        raise fail(f"{member} is not a .npy array (no NumPy magic string)")
    major = head[6]
    if major == 1:
        hlen, start = int.from_bytes(head[8:10], "little"), 10
    elif major == 2 and len(head) == 12:
        hlen, start = int.from_bytes(head[8:12], "little"), 12
    else:
        raise fail(f"{member} has .npy format version {head[6]}.{head[7]}; "
                   "versions 1.0 and 2.0 are read")
    if hlen > MAX_HEADER_BYTES:
        raise fail(f"{member} has a .npy header of {hlen} bytes, more than the "
                   f"limit of {MAX_HEADER_BYTES}")
    header = head + f.read(start + hlen - len(head))
    if len(header) != start + hlen:
        raise fail(f"{member} ends inside its .npy header")
    shape, fortran, dtype = _parse_header(header, major, member, fail)
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise fail(f"{member} holds Python objects or records ({_q(str(dtype))}); it is "
                   "read without pickle: only plain numeric arrays",
                   "Store plain numeric arrays (numpy.savez with numeric dtypes).")
    if dtype.kind not in kinds:
        raise fail(f"{member} has dtype {_q(dtype.name)}; expected numbers")
    if len(shape) > max_ndim:
        raise fail(f"{member} has {len(shape)} axes, more than the limit of {max_ndim}")
    count = 1
    for n in shape:
        count *= n
    nbytes = count * dtype.itemsize
    if nbytes != size - len(header):
        raise fail(f"{member} declares shape {list(shape)} ({nbytes} bytes of "
                   f"{dtype.name}) but holds {size - len(header)} bytes after its header")
    data = f.read(nbytes)
    if len(data) != nbytes or f.read(1):
        raise fail(f"{member} is truncated")
    arr = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _parse_header(header: bytes, major: int, member: str, fail) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of a ``.npy`` header, parsed by NumPy's literal parser."""
    fp = io.BytesIO(header)
    try:
        np.lib.format.read_magic(fp)
        reader = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(fp, max_header_size=MAX_HEADER_BYTES + 16)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as e:
        raise fail(f"{member} has a malformed .npy header ({shorten(e, 80)})") from None
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise fail(f"{member} has a malformed .npy header (shape {_q(str(shape))})")
    return tuple(int(n) for n in shape), bool(fortran), np.dtype(dtype)


def _q(text: Any) -> str:
    """A member name or dtype quoted for a message: short, one line, control characters escaped."""
    return repr(shorten(text, 60))


def _failer(error: type[BlursimError], name: str, what: str):
    def fail(message: str, hint: str | None = None) -> BlursimError:
        if issubclass(error, SpecError):
            return error(f"{what} {message}", source=name, hint=hint)
        return error(f"{shorten(name, 200)}: {what} {message}." + (f" {hint}" if hint else ""))
    return fail
