"""Name -> object registries.

Specs never hold code: activations, connectivity kinds, feedback kinds,
datasets and strategies are resolved by name through a :class:`Registry`,
so a user can list them (``blursim list``) and an unknown name fails with
the sorted list of valid names.

An entry may come with an *options model* (a pydantic model derived from
:class:`blursim.spec.options.Options`): the options a document gives next to
the name (``{"name": "xor", "options": {"seed": 3}}``). The model is the one
place where those options are declared, documented, defaulted and validated;
the experiment's JSON Schema and ``blursim list`` are generated from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from blursim.errors import SpecError

T = TypeVar("T")


class Registry(Generic[T]):
    """A plain, ordered mapping from names to registered objects."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._docs: dict[str, str] = {}
        self._options: dict[str, Any] = {}

    def register(
        self, name: str, obj: T | None = None, *, doc: str | None = None, options: Any = None
    ):
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted.

        ``options`` is the entry's options model (a subclass of
        :class:`blursim.spec.options.Options`), or ``None`` for an entry without
        options.
        """

        def _add(o: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = o
            if options is not None:
                self._options[name] = options
            d = doc if doc is not None else (getattr(o, "__doc__", None) or "")
            self._docs[name] = d.strip().splitlines()[0] if d.strip() else ""
            return o

        if obj is None:
            return _add
        return _add(obj)

    def get(self, name: str, *, path: str | None = None) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise SpecError(
                f"unknown {self.kind} {name!r}", path=path, choices=self._items
            ) from None

    def options(self, name: str) -> Any:
        """The options model of entry ``name`` (``None`` when it takes no options)."""
        self.get(name)
        return self._options.get(name)

    def names(self) -> list[str]:
        return list(self._items)

    def describe(self) -> dict[str, str]:
        """Name -> first line of its documentation."""
        return dict(self._docs)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


