"""Errors that blursim raises for bad user input.

Every error a user can provoke through a spec, a genome, a dataset or a file
is a :class:`BlursimError`. Its message is one paragraph that names *where*
(file and JSON path), *what* (the bad value) and *what to do* (the valid
choices). The command line prints ``str(error)`` and exits with code 2.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

#: Longest user-supplied text (a name, a value, a file name) echoed in an error message.
MAX_ECHO = 80
#: Longest error message printed; the rest is cut (a message is one line, whatever it quotes).
MAX_MESSAGE = 2000
#: At most this many valid choices are listed.
MAX_CHOICES = 40
#: ... and at most about this many characters of them.
MAX_CHOICES_CHARS = 400

_BREAKS = re.compile(r"[ \t]*[\r\n\x0b\x0c\x85\u2028\u2029]+[ \t]*")
#: Characters a terminal interprets (ANSI escapes start with ESC), and the bidirectional overrides
#: that reorder what is shown: escaped in every message (``\x1b``), never printed raw.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
#: A run of this many characters without a space in a message is an echoed value (a key, a name):
#: it is cut to an excerpt.
MAX_TOKEN = 100
_TOKEN = re.compile(r"\S{%d,}" % (MAX_TOKEN + 1))


def _escape(m: re.Match) -> str:
    c = ord(m.group(0))
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def _clean(s: str) -> str:
    return _CONTROL.sub(_escape, _BREAKS.sub(" ", s).replace("\t", " "))


def shorten(text: Any, limit: int = MAX_ECHO) -> str:
    """``text`` on one line and at most ``limit`` characters (the middle cut out), with control
    characters (ANSI escape sequences, bidirectional overrides) escaped as ``\\x1b``."""
    s = str(text)
    if len(s) > 2 * limit + 16:  # cut before cleaning: a 100 MB message costs no more than a short one
        s = _clean(s[: limit + 8]) + " ... " + _clean(s[-(limit + 8):])
    else:
        s = _clean(s)
    if len(s) <= limit:
        return s
    keep = limit - 5
    return s[: keep - keep // 3] + " ... " + s[len(s) - keep // 3 :]


def excerpt_tokens(text: str, limit: int = MAX_TOKEN) -> str:
    """``text`` with every run of more than ``limit`` non-space characters (an echoed key or value)
    cut to an excerpt of ``limit`` characters."""
    return _TOKEN.sub(lambda m: shorten(m.group(0), limit), text) if len(text) > limit else text


def printable(text: Any, limit: int = 4000) -> str:
    """``text`` (from a file) safe to print: line breaks kept, other control characters escaped,
    at most ``limit`` characters (the middle cut out)."""
    lines = str(text)[: 4 * limit].splitlines()
    out = "\n".join(_CONTROL.sub(_escape, line.replace("\t", " ")) for line in lines)
    if len(out) <= limit:
        return out
    keep = limit - 5
    return out[: keep - keep // 3] + " ... " + out[len(out) - keep // 3 :]


def one_line(text: Any, limit: int = MAX_MESSAGE) -> str:
    """A message as one line of at most ``limit`` characters (what the command line prints)."""
    return shorten(text, limit)


class BlursimError(Exception):
    """Base class of every user-facing blursim error."""


def _fmt_path(path: Iterable[Any] | str | None) -> str:
    if path is None:
        return ""
    if isinstance(path, str):
        return path
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}"
    return out


class SpecError(BlursimError, ValueError):
    """A spec (network, genome, experiment) is malformed or inconsistent.

    Parameters
    ----------
    message:
        What is wrong, in words.
    path:
        JSON path of the offending field, as a string (``$.projections[2].to``)
        or a sequence of keys and indices.
    value:
        The offending value (omitted from the message when ``None``).
    choices:
        Valid alternatives, listed sorted in the message.
    source:
        The file the spec came from, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Iterable[Any] | str | None = None,
        value: Any = None,
        choices: Iterable[Any] | None = None,
        source: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = _fmt_path(path)
        self.value = value
        self.choices = sorted(str(c) for c in choices) if choices is not None else None
        self.source = source
        self.hint = hint
        super().__init__(self._render())

    def with_source(self, source: str) -> "SpecError":
        """Return a copy of this error that names the file it came from."""
        return SpecError(
            self.message,
            path=self.path or None,
            value=self.value,
            choices=self.choices,
            source=source,
            hint=self.hint,
        )

    def _render(self) -> str:
        # Every part that may quote user input is capped, so a message stays one short line
        # whatever the document holds (a 1 MB name, a list of 10,000 choices).
        where = []
        if self.source:
            where.append(shorten(self.source, 4 * MAX_ECHO))
        if self.path:
            where.append(f"at {shorten(self.path, MAX_ECHO)}")
        head = (" ".join(where) + ": ") if where else ""
        msg = head + shorten(excerpt_tokens(str(self.message)), MAX_MESSAGE // 2)
        if self.value is not None:
            msg += f" (got {shorten(_safe_repr(self.value))})"
        if not msg.endswith("."):
            msg += "."
        if self.choices is not None:
            shown: list[str] = []
            for c in self.choices[:MAX_CHOICES]:
                c = shorten(c, 40)
                if sum(len(x) + 2 for x in shown) + len(c) > MAX_CHOICES_CHARS:
                    break
                shown.append(c)
            more = len(self.choices) - len(shown)
            msg += " Valid choices: " + ", ".join(shown) + (f" and {more} more" if more > 0 else "") + "."
        if self.hint:
            msg += " " + shorten(excerpt_tokens(str(self.hint)), MAX_MESSAGE // 4)
        return one_line(msg)

    def __str__(self) -> str:  # keep it current if source was attached
        return self._render()


def _safe_repr(value: Any) -> str:
    """``repr(value)`` without building a huge string (a 10**6-digit int, a long list)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, (str, bytes)) and len(value) > 4 * MAX_ECHO:
        return repr(value[: 2 * MAX_ECHO]) + f" ... ({len(value)} characters)"
    if isinstance(value, (list, tuple, dict, set)) and len(value) > 50:
        return f"a {type(value).__name__} of {len(value)} items"
    return repr(value)


class GenomeError(SpecError):
    """A genome has the wrong shape, unknown fields, or non-finite values."""


class MemoryLimitError(SpecError):
    """A network, a batch or a population would need more memory than the budget or the
    machine allows; raised before anything is allocated (the message says "needs X GiB")."""


class DataError(BlursimError, ValueError):
    """A dataset is missing, malformed, or does not fit the network."""


class BackendError(BlursimError, RuntimeError):
    """The requested array backend (e.g. CuPy) is unavailable."""
