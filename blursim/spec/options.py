"""Options of registered entries -- datasets, ES strategies, genome presets -- as pydantic models.

A document names a registered entry together with its options, e.g. a task
``{"name": "two_moons", "options": {"noise": 0.2}}`` or a strategy
``{"name": "openai_es", "options": {"learning_rate": 0.03}}``. Each entry
declares its options once, as a subclass of :class:`Options` registered with
it (``Registry.register(name, options=Model)``): field types, defaults,
ranges and one-line descriptions. From that one declaration

- documents are validated by pydantic itself, so a bad option is reported at
  its own location (``$.training_tasks[0].options.noise``, with file and line);
- the JSON Schema of a document lists every option of every registered entry
  (:class:`Choice` publishes one alternative per entry, generated from the
  registry when the schema is made, so it cannot fall behind the registry);
- ``blursim list`` prints each entry's options with defaults and descriptions.

Options are strict: a boolean is not an integer, a string is not a number, an
integer-valued float is not an integer, and NaN or infinity is never a valid
number (NumPy scalars and arrays given from Python are read as the plain
values they hold).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator
from pydantic_core import PydanticCustomError

from blursim.errors import SpecError
from blursim.registry import Registry
from blursim.spec.base import Strict

__all__ = ["Options", "NoOptions", "Choice", "option_defaults", "option_table", "validate_options"]


def _plain(value: Any) -> Any:
    """NumPy scalars/arrays, tuples and paths as the JSON-like values they stand for."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


class Options(BaseModel):
    """Base of every options model: unknown options are errors, types are strict,
    numbers are finite, instances are read-only."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _plain_values(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not isinstance(data, BaseModel):
            return {k: _plain(v) for k, v in data.items()}
        return data


class NoOptions(Options):
    """An entry that takes no options."""


def option_defaults(model: type[Options]) -> dict[str, Any]:
    """Option name -> default value (``None`` for an option without a default)."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        out[name] = info.get_default(call_default_factory=True) if not info.is_required() else None
    return out


def option_table(model: type[Options]) -> list[tuple[str, str, str]]:
    """``(name, "name=default" or "name (required)", description)`` of every option, in
    declaration order (what ``blursim list`` prints)."""
    defaults = option_defaults(model)
    return [
        (n, f"{n} (required)" if info.is_required() else f"{n}={defaults[n]!r}", info.description or "")
        for n, info in model.model_fields.items()
    ]


def validate_options(
    model: type[Options], given: Any, *, what: str, path: str | None = None
) -> Options:
    """``given`` (a mapping, ``None`` or an instance of ``model``) validated as ``model``.

    For Python callers (``load_dataset``, ``make_strategy``, ``make_preset``);
    documents are validated by :class:`Choice`. A failure is a
    :class:`~blursim.errors.SpecError` at ``<path>.options.<option>`` (pydantic's
    location of the error), whose message names ``what`` (e.g. ``dataset 'xor'``).
    """
    from blursim.spec.loading import spec_error

    if given is None:
        given = {}
    if isinstance(given, model):
        return given
    base = f"{path}.options" if path else "options"
    if not isinstance(given, Mapping):
        raise SpecError(
            f"options of {what} must be an object mapping option names to values",
            path=base,
            value=given,
            hint=f"Valid options: {', '.join(model.model_fields) or '(none)'}.",
        )
    try:
        return model.model_validate(dict(given))
    except ValidationError as e:
        err = spec_error(e, model, dict(given))
        sub = err.path[1:] if err.path.startswith("$") else err.path
        raise SpecError(
            f"{what}: {err.message}", path=base + sub, value=err.value, choices=err.choices,
            hint=err.hint,
        ) from None


# ---------------------------------------------------------------------------
# a registered entry named in a document


class Choice(Strict):
    """``{"name": ..., "options": {...}}``: an entry of a registry and its options.

    Subclasses say which registry (:meth:`registry`) and may add fields; the
    name is checked against the registry and the options against the entry's
    options model while the document is validated, so both are errors of the
    document at their own location. After validation ``options`` is an instance
    of that model (every option, defaults included). The JSON Schema is one
    alternative per registered entry, each with the entry's own options.
    """

    #: What the entries are called in messages (e.g. ``"dataset"``).
    what: ClassVar[str] = "entry"

    name: str = Field(min_length=1, description="the registered entry's name")
    options: Any = Field(default_factory=dict, validate_default=True,
                         description="the entry's options (blursim list -v); omitted ones take their defaults")

    @classmethod
    def registry(cls) -> Registry:
        raise NotImplementedError

    @classmethod
    def options_model(cls, name: Any) -> type[Options] | None:
        """The options model of entry ``name``; ``None`` when it is not registered."""
        reg = cls.registry()
        if not isinstance(name, str) or name not in reg:
            return None
        return reg.options(name) or NoOptions

    @classmethod
    def field_model(cls, field: str, node: Any) -> type[BaseModel] | None:
        """The model that validates ``field`` of the object ``node`` (for error messages)."""
        if field == "options" and isinstance(node, Mapping):
            return cls.options_model(node.get("name", cls.model_fields["name"].default))
        return None

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        reg = cls.registry()
        if v not in reg:
            raise PydanticCustomError(
                "blursim", f"unknown {reg.kind} {v!r}", {"choices": reg.names()}
            )
        return v

    @field_validator("options")
    @classmethod
    def _options(cls, v: Any, info) -> Any:
        model = cls.options_model(info.data.get("name"))
        if model is None:  # the name itself is wrong; that error is reported
            return v
        if isinstance(v, model):
            return v
        if not isinstance(v, Mapping):
            raise PydanticCustomError(
                "blursim", "options must be an object mapping option names to values"
            )
        return model.model_validate(v)

    def given_options(self) -> dict[str, Any]:
        """The options the document spelt out (JSON-ready), without the defaults."""
        if isinstance(self.options, Options):
            return self.options.model_dump(mode="json", exclude_unset=True)
        return dict(self.options)

    # ---- the published JSON Schema -----------------------------------------

    _variants: ClassVar[dict] = {}

    @classmethod
    def variant(cls, name: str) -> type[BaseModel]:
        """The model of this document part for entry ``name`` (its JSON Schema alternative)."""
        model = cls.options_model(name)
        key = (cls, name, model)
        cached = Choice._variants.get(key)
        if cached is not None:
            return cached
        fields: dict[str, Any] = {}
        doc = cls.registry().describe().get(name, "")
        for fname, info in cls.model_fields.items():
            if fname == "name":
                default = name if info.default == name else ...
                what = f"{cls.what} {name!r}" + (f": {doc}" if doc else "")
                fields[fname] = (Literal[name], Field(default, description=what))
            elif fname == "options":
                fields[fname] = (model, Field(default_factory=dict, description=f"options of {cls.what} {name!r}"))
            else:
                field = cls.variant_field(name, fname, info)
                if field is not None:
                    fields[fname] = field
        out = create_model(
            f"{cls.__name__}_{name}", __base__=Strict, __doc__=doc or None, **fields
        )
        Choice._variants[key] = out
        return out

    @classmethod
    def variant_field(cls, name: str, field: str, info: Any) -> tuple[Any, Any] | None:
        """``(annotation, FieldInfo)`` of ``field`` in the alternative of entry ``name``, or
        ``None`` when that entry does not take the field (subclasses whose extra fields
        depend on the entry override this)."""
        return info.annotation, info

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Callable) -> dict[str, Any]:
        alternatives = [handler(cls.variant(n).__pydantic_core_schema__) for n in cls.registry()]
        # The names also as one enum, so that an editor completes them and reports an unknown
        # name as such (not as "matches none of the alternatives").
        names = {"type": "string", "enum": cls.registry().names(),
                 "description": f"the {cls.what} (blursim list)"}
        out: dict[str, Any] = {"type": "object", "properties": {"name": names}, "oneOf": alternatives}
        if cls.__doc__:
            out["description"] = " ".join(cls.__doc__.split())
        return out
