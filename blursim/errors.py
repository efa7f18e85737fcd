"""Errors that blursim raises for bad user input.

Every error a user can provoke through a spec, a genome, a dataset or a file
is a :class:`BlursimError`. Its message is one paragraph that names *where*
(file and JSON path), *what* (the bad value) and *what to do* (the valid
choices). The command line prints ``str(error)`` and exits with code 2.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


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
        where = []
        if self.source:
            where.append(self.source)
        if self.path:
            where.append(f"at {self.path}")
        head = (" ".join(where) + ": ") if where else ""
        msg = head + self.message
        if self.value is not None:
            v = repr(self.value)
            if len(v) > 120:
                v = v[:117] + "..."
            msg += f" (got {v})"
        if not msg.endswith("."):
            msg += "."
        if self.choices is not None:
            msg += " Valid choices: " + ", ".join(self.choices) + "."
        if self.hint:
            msg += " " + self.hint
        return msg

    def __str__(self) -> str:  # keep it current if source was attached
        return self._render()


class GenomeError(SpecError):
    """A genome has the wrong shape, unknown fields, or non-finite values."""


class DataError(BlursimError, ValueError):
    """A dataset is missing, malformed, or does not fit the network."""


class BackendError(BlursimError, RuntimeError):
    """The requested array backend (e.g. CuPy) is unavailable."""
