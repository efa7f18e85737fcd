"""Base class of every spec model: unknown fields are errors; provenance is kept."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr


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
