"""Line numbers for JSON paths, so errors can point at the line of a spec.

``json`` gives no positions, so this is a small scanner that walks an already
valid JSON text and records where each value starts.
"""

from __future__ import annotations

import re
from json.decoder import scanstring

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?|NaN|-?Infinity")


def value_offsets(text: str) -> dict[tuple, int]:
    """Map every JSON path (tuple of keys/indices) to the offset where its value starts."""
    return scan(text)[0]


def duplicate_keys(text: str) -> list[tuple[tuple, int]]:
    """``(path, offset)`` of every key repeated within one JSON object, at its repetition."""
    return scan(text)[1]


def scan(text: str) -> tuple[dict[tuple, int], list[tuple[tuple, int]]]:
    """Value offsets of every JSON path, and the repeated keys (see :func:`duplicate_keys`).

    The scanner recurses once per nesting level: call it only on documents whose depth has been
    bounded (:data:`blursim.limits.MAX_DEPTH`).
    """
    out: dict[tuple, int] = {}
    dups: list[tuple[tuple, int]] = []

    def ws(i: int) -> int:
        return _WS.match(text, i).end()

    def value(i: int, path: tuple) -> int:
        i = ws(i)
        out[path] = i
        c = text[i]
        if c == "{":
            i = ws(i + 1)
            if text[i] == "}":
                return i + 1
            seen = set()
            while True:
                i = ws(i)
                at = i
                key, i = scanstring(text, i + 1)
                if key in seen:
                    dups.append((path + (key,), at))
                seen.add(key)
                i = ws(i)
                i = value(i + 1, path + (key,))  # skip ':'
                i = ws(i)
                if text[i] == ",":
                    i += 1
                    continue
                return i + 1  # '}'
        if c == "[":
            i = ws(i + 1)
            if text[i] == "]":
                return i + 1
            n = 0
            while True:
                i = value(i, path + (n,))
                n += 1
                i = ws(i)
                if text[i] == ",":
                    i += 1
                    continue
                return i + 1  # ']'
        if c == '"':
            _, i = scanstring(text, i + 1)
            return i
        for lit in ("true", "false", "null"):
            if text.startswith(lit, i):
                return i + len(lit)
        m = _NUMBER.match(text, i)
        if m is None:
            raise ValueError(f"not JSON at offset {i}")
        return m.end()

    try:
        value(0, ())
    except (IndexError, ValueError, RecursionError):
        pass  # best effort: positions found so far are still right
    return out, dups


def line_at(text: str, offset: int) -> int:
    """1-based line of character ``offset``."""
    return text.count("\n", 0, offset) + 1


def line_of(text: str, path: tuple) -> int | None:
    """1-based line of the deepest prefix of ``path`` that exists in ``text``."""
    offsets = value_offsets(text)
    p = tuple(path)
    while p not in offsets and p:
        p = p[:-1]
    if p not in offsets:
        return None
    return line_at(text, offsets[p])
