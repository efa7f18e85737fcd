"""Base class of every spec model (unknown fields are errors, numbers finite; provenance is
kept), the bounded name, text and seed types of documents, and :func:`error_at`, the way a
validator reports an error at a location inside its model."""

from __future__ import annotations

import importlib
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from blursim.limits import MAX_NAME_CHARS, MAX_SEED, MAX_TEXT_CHARS

#: What a string pattern of a model means, for error messages (pattern -> requirement).
PATTERN_TEXT: dict[str, str] = {
    r"^[^\x00-\x1f\x7f]+$": "must be one line without control characters",
    r"^[^\x00-\x1f\x7f]*$": "must be one line without control characters",
}
#: A name in a document (population, projection, genome group, label): one line, bounded.
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS, pattern=r"^[^\x00-\x1f\x7f]+$")]
#: A name that may be empty (a document's ``name``).
Label = Annotated[str, Field(max_length=MAX_NAME_CHARS, pattern=r"^[^\x00-\x1f\x7f]*$")]
#: Free text (``description``).
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
#: A seed: a non-negative integer that fits 64 bits.
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


class RegistryNames:
    """JSON Schema of a name taken from a registry: an ``enum`` of the registry's names.

    Used as ``Annotated[str, RegistryNames("blursim.vocab", "ACTIVATIONS")]``. The enum is
    read from the registry each time a schema is made, so it lists what is registered then
    (entries added by plug-ins included) and cannot fall behind. Validation is not changed:
    the compiler checks the name and its error lists the valid choices.
    """

    def __init__(self, module: str, attr: str) -> None:
        self.module, self.attr = module, attr

    def registry(self) -> Any:
        return getattr(importlib.import_module(self.module), self.attr)

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        out = handler(core_schema)
        out["enum"] = self.registry().names()
        return out

    def __repr__(self) -> str:
        return f"RegistryNames({self.module!r}, {self.attr!r})"


class Strict(BaseModel):
    """A spec model: extra fields forbidden, aliases accepted, every float finite (NaN and
    Infinity are refused wherever a number is expected), source remembered."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    # (file name, file text) of the document this object was loaded from.
    _source: Any = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        """Equal when the documents are equal, wherever they were loaded from."""
        if type(self) is not type(other):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    __hash__ = None  # mutable documents are not hashable


def error_at(
    loc: tuple | list, message: str, *, value: Any = None, choices: Any = None
) -> ValidationError:
    """A validation error at ``loc``, relative to the model being validated.

    Raised from a (model or field) validator, pydantic merges it into the
    document's errors with ``loc`` appended to the validator's own location, so
    the error points at the offending entry (for example ``("groups", "default",
    "nu", 1)`` from a validator of the whole genome) and is located by file,
    line and JSON path like any other. ``choices`` (valid alternatives) travel
    in the error's context.
    """
    ctx = {"choices": [str(c) for c in choices]} if choices is not None else None
    err = PydanticCustomError("blursim", message, ctx)
    return ValidationError.from_exception_data(
        "blursim", [InitErrorDetails(type=err, loc=tuple(loc), input=value)]
    )
