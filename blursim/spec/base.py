"""Base class of every spec model (unknown fields are errors; provenance is kept), and
:func:`error_at`, the way a validator reports an error at a location inside its model."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


class Strict(BaseModel):
    """A spec model: extra fields forbidden, aliases accepted, source remembered."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

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
