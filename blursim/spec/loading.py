"""Reading spec documents from JSON with errors that point at the bad line.

Every failure becomes a :class:`~blursim.errors.SpecError` naming the file,
the line, the JSON path, the bad value and (where there is a closed set) the
valid choices.
"""

from __future__ import annotations

import json
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from blursim.errors import SpecError
from blursim.spec.jsonpos import line_of

M = TypeVar("M", bound=BaseModel)

_QUOTED = re.compile(r"'([^']*)'")


def _unwrap(tp: Any) -> Any:
    """Strip Annotated/Optional wrappers."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _model_at(model: type[BaseModel], keys: list, data: Any) -> type[BaseModel] | None:
    """The pydantic model class that validates the object at ``keys`` (best effort)."""
    tp: Any = model
    node = data
    for key in keys:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            tp = _pick_union(tp, node)
            if tp is None:
                return None
            tp = _unwrap(tp)
            origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            hook = getattr(tp, "field_model", None)
            sub = hook(key, node) if hook is not None else None
            if sub is not None:  # e.g. the options model of a named registry entry
                tp = sub
                node = node[key] if isinstance(node, (dict, list)) and _has(node, key) else None
                continue
            fld = None
            for name, info in tp.model_fields.items():
                if key in (name, info.alias):
                    fld = info
                    break
            if fld is None:
                return None
            tp = fld.annotation
        elif origin in (list, tuple):
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
        node = node[key] if isinstance(node, (dict, list)) and _has(node, key) else None
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = _pick_union(tp, node)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _has(node: Any, key: Any) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(key, int) and 0 <= key < len(node)


def _pick_union(tp: Any, node: Any) -> Any:
    members = [_unwrap(a) for a in typing.get_args(tp) if a is not type(None)]
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    if isinstance(node, dict) and "kind" in node:
        for m in models:
            f = m.model_fields.get("kind")
            if f is not None and node["kind"] in (f.default, *typing.get_args(f.annotation)):
                return m
    return models[0] if len(models) == 1 else None


def _json_path(loc: tuple, data: Any) -> list:
    """Drop the union-member labels pydantic inserts into ``loc``."""
    if data is None:  # a model built in code: its location is the path
        return list(loc)
    keys: list = []
    node = data
    for i, elem in enumerate(loc):
        if isinstance(node, list) and isinstance(elem, int):
            keys.append(elem)
            node = node[elem] if 0 <= elem < len(node) else None
        elif isinstance(node, dict):
            if elem in node:
                keys.append(elem)
                node = node[elem]
            elif i == len(loc) - 1 or not isinstance(elem, str) or elem.isidentifier() and elem in (
                "kind",
            ):
                keys.append(elem)
                node = None
            else:
                continue  # a union member tag such as 'fixed_probability' or 'list[str]'
        else:
            if i == len(loc) - 1 and not keys:
                keys.append(elem)
            continue
    return keys


def spec_error(err: ValidationError, model: type[BaseModel], data: Any) -> SpecError:
    """The most specific error of a pydantic ``ValidationError`` as a SpecError.

    Its path is pydantic's own location of the error (``loc``) in ``data``; an
    error raised with :func:`blursim.spec.base.error_at` carries its valid
    choices; an unknown or bad *option* (a field of an
    :class:`~blursim.spec.options.Options` model) is reported as such, with the
    option's description and default as the hint.
    """
    from blursim.spec.options import Options, option_defaults

    errors = err.errors(include_url=False)
    # Prefer the most specific error: the one with the longest path.
    e = max(errors, key=lambda x: len(_json_path(x["loc"], data)))
    keys = _json_path(e["loc"], data)
    etype = e["type"]
    ctx = e.get("ctx") or {}
    msg = e["msg"]
    choices = None
    value = e.get("input")
    if etype == "literal_error":
        choices = _QUOTED.findall(str(ctx.get("expected", ""))) or None
        msg = "invalid value"
    elif etype in ("union_tag_invalid", "union_tag_not_found"):
        choices = _QUOTED.findall(str(ctx.get("expected_tags", ""))) or None
        what = "connectivity kind" if keys and keys[-1] == "connectivity" else "kind"
        msg = f"unknown {what}" if etype == "union_tag_invalid" else "missing 'kind'"
        if etype == "union_tag_invalid":
            keys = keys + ["kind"]
            value = ctx.get("tag")
    elif etype == "blursim":  # raised by a blursim validator (error_at / PydanticCustomError)
        choices = ctx.get("choices")
    elif etype == "extra_forbidden":
        parent = _model_at(model, keys[:-1], data)
        is_option = isinstance(parent, type) and issubclass(parent, Options)
        msg = f"unknown {'option' if is_option else 'field'} {keys[-1]!r}"
        value = None
        if parent is not None:
            choices = [info.alias or name for name, info in parent.model_fields.items()]
    elif etype == "missing":
        msg = f"required field {keys[-1]!r} is missing"
        value = None
    elif etype == "string_pattern_mismatch":
        from blursim.spec.base import PATTERN_TEXT

        msg = PATTERN_TEXT.get(str(ctx.get("pattern")), msg)
    elif etype == "int_parsing_size":
        msg = "must be an integer of sensible size"
    elif etype == "finite_number":
        field = next((k for k in reversed(keys) if isinstance(k, str)), "value")
        msg = f"field {field!r} must be a finite number, not NaN or Inf"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if msg.startswith("Input should be "):
        msg = "must be " + msg[len("Input should be "):]
    elif msg.startswith("String should have "):
        msg = "must have " + msg[len("String should have "):]
    hint = None
    if keys and etype != "extra_forbidden" and isinstance(keys[-1], str):
        parent = _model_at(model, keys[:-1], data)
        if isinstance(parent, type) and issubclass(parent, Options) and keys[-1] in parent.model_fields:
            info = parent.model_fields[keys[-1]]
            if etype == "missing":
                msg = f"required option {keys[-1]!r} is missing"
            else:
                msg = f"option {keys[-1]!r}: {msg}"
            if info.description:
                default = option_defaults(parent)[keys[-1]]
                hint = f"{keys[-1]}: {info.description}" + (
                    "." if info.is_required() else f" (default {default!r})."
                )
    if isinstance(value, (dict, list)) and (len(value) > 20 or len(repr(value)) > 80):
        value = None
    more = len(errors) - 1
    if more:
        more_text = f"({more} more problem{'s' if more > 1 else ''} in this document.)"
        hint = f"{hint} {more_text}" if hint else more_text
    return SpecError(msg, path=keys, value=value, choices=choices, hint=hint)


def locate(err: SpecError, source: str | None, text: str | None, keys: list | None) -> SpecError:
    """Attach file name and line number to ``err``."""
    where = source
    if where and text is not None and keys is not None:
        line = line_of(text, tuple(keys))
        if line is not None:
            where = f"{source}, line {line}"
    return SpecError(
        err.message,
        path=err.path or None,
        value=err.value,
        choices=err.choices,
        source=where,
        hint=err.hint,
    )


def parse_path(path: str) -> list:
    """``$.a[2].b`` -> ``['a', 2, 'b']``."""
    keys: list = []
    for m in re.finditer(r"\.([^.\[]+)|\[(\d+)\]", path):
        keys.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
    return keys


def read_json(path: str | Path, *, where: str | None = None) -> tuple[Any, str]:
    """Read a JSON document; every way it can be unreadable is a located SpecError.

    The file must be a regular file of at most :data:`~blursim.limits.MAX_DOCUMENT_BYTES`
    (:func:`~blursim.limits.read_regular_file`), UTF-8 text (a leading byte-order mark is
    allowed) and JSON nested at most :data:`~blursim.limits.MAX_DEPTH` deep, with integer
    literals of at most :data:`~blursim.limits.MAX_INT_DIGITS` digits and no key repeated
    within an object (JSON would silently keep the last). ``where``: the JSON path of the
    field that named this file in another document (e.g. an experiment's ``$.network``).
    """
    from blursim.limits import MAX_DOCUMENT_BYTES, read_regular_file

    raw = read_regular_file(path, limit=MAX_DOCUMENT_BYTES, what="JSON document", where=where)
    source = str(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise SpecError(
            f"not UTF-8 text: byte 0x{raw[e.start]:02x} at line {line} (offset {e.start}) cannot be "
            "decoded; save the document as UTF-8 JSON", source=source,
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return parse_json(text, source), text


class _LongInteger(Exception):
    pass


class _RepeatedKey(Exception):
    pass


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')


def _int_parser(digits: int):
    def parse(literal: str) -> int:
        if len(literal) > digits + 1 and len(literal.lstrip("-")) > digits:
            raise _LongInteger(literal)
        return int(literal)

    return parse


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _RepeatedKey
    return out


def max_depth(text: str) -> int:
    """Deepest nesting of arrays and objects in a JSON text (brackets inside strings ignored)."""
    import numpy as np

    outside = _STRING.sub("", text).encode("utf-8", "replace")
    b = np.frombuffer(outside, dtype=np.uint8)
    step = ((b == 0x5B) | (b == 0x7B)).astype(np.int32) - ((b == 0x5D) | (b == 0x7D))
    return int(np.cumsum(step).max()) if step.size else 0


def parse_json(text: str, source: str | None = None, *, max_int_digits: int | None = None) -> Any:
    """``json.loads`` within the limits of :func:`read_json`, errors naming ``source`` and the line.

    ``max_int_digits``: longest integer literal (default
    :data:`~blursim.limits.MAX_INT_DIGITS`; a checkpoint holds 128-bit generator states).
    """
    from blursim.limits import MAX_DEPTH, MAX_INT_DIGITS

    digits = max_int_digits or MAX_INT_DIGITS
    from blursim.spec.jsonpos import duplicate_keys, line_at, value_offsets

    where = source or "document"
    depth = max_depth(text)
    if depth > MAX_DEPTH:
        raise SpecError(f"JSON nested {depth} levels deep, more than the limit of {MAX_DEPTH}",
                        source=source)
    try:
        return json.loads(text, parse_int=_int_parser(digits), object_pairs_hook=_no_repeats)
    except json.JSONDecodeError as e:
        raise SpecError(
            f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}", source=where
        ) from None
    except RecursionError:
        raise SpecError(f"JSON nested more than {MAX_DEPTH} levels deep", source=source) from None
    except _LongInteger as e:
        m = re.search(r"-?\d{%d,}" % (digits + 1), _STRING.sub(lambda s: " " * len(s.group()), text))
        line, path = "", None
        if m:
            line = f", line {line_at(text, m.start())}"
            path = next((list(p) for p, o in value_offsets(text).items() if o == m.start()), None)
        raise SpecError(
            f"an integer literal of {len(str(e.args[0]).lstrip('-'))} digits, more than the limit of "
            f"{digits}", source=f"{where}{line}", path=path,
        ) from None
    except _RepeatedKey:
        dups = duplicate_keys(text)
        if not dups:  # pragma: no cover - the scanner finds what json found
            raise SpecError("a key appears twice in one JSON object", source=where) from None
        path, offset = dups[0]
        raise SpecError(
            f"key {path[-1]!r} appears twice in the same object (JSON would silently keep the last)",
            source=f"{where}, line {line_at(text, offset)}", path=list(path),
            hint="Remove one of them.",
        ) from None


#: The key by which a document names its JSON Schema (for editors); not part of the document.
SCHEMA_KEY = "$schema"


def validate_document(
    model: type[M], data: Any, *, source: str | None = None, text: str | None = None
) -> M:
    """Validate ``data`` against ``model``, raising a located SpecError on failure.

    A top-level ``"$schema"`` key (a string: the URI or path of the document's JSON Schema,
    which tells an editor how to check and complete the file) is accepted and ignored.
    """
    if not isinstance(data, dict):
        raise SpecError(
            f"a {model.__name__} document must be a JSON object", value=type(data).__name__,
            source=source,
        )
    if SCHEMA_KEY in data:
        if not isinstance(data[SCHEMA_KEY], str):
            err = SpecError(f"{SCHEMA_KEY} must be a string: the URI or path of the document's JSON Schema",
                            path=[SCHEMA_KEY], value=data[SCHEMA_KEY],
                            hint="blursim schema NAME --out DIR writes the schemas; see docs/schemas.md.")
            raise locate(err, source, text, [SCHEMA_KEY])
        data = {k: v for k, v in data.items() if k != SCHEMA_KEY}
    try:
        obj = model.model_validate(data)
    except ValidationError as e:
        err = spec_error(e, model, data)
        raise locate(err, source, text, parse_path(err.path)) from None
    obj._source = (source, text)
    return obj


def load_document(model: type[M], path: str | Path, *, where: str | None = None) -> M:
    """A ``model`` document read from ``path`` (``where``: the JSON path that named the file)."""
    data, text = read_json(path, where=where)
    return validate_document(model, data, source=str(path), text=text)


def load_model(model: type[M], src: Any) -> M:
    """A ``model`` document from an existing instance (returned as is), a dict, or a JSON file path."""
    if isinstance(src, model):
        return src
    if isinstance(src, dict):
        return validate_document(model, src)
    return load_document(model, src)


def source_of(obj: BaseModel) -> tuple[str | None, str | None]:
    return getattr(obj, "_source", None) or (None, None)


def relocate(err: SpecError, obj: BaseModel) -> SpecError:
    """Attach the file/line of ``obj`` (a loaded document) to a semantic error."""
    source, text = source_of(obj)
    if source is None or err.source:
        return err
    return locate(err, source, text, parse_path(err.path) if err.path else [])
