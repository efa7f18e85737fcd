"""Spec documents: network, genome (and, in :mod:`blursim.meta`, experiment).

Each document has its own pydantic model and exported JSON Schema
(``blursim schema NAME``). Load them with :func:`load_network` /
:func:`load_genome`; errors name the file, line, JSON path, value and valid
choices.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from blursim.registry import Registry
from blursim.spec.genome import FORMAT_GENOME, GenomeParams, GenomeSpec
from blursim.errors import SpecError
from blursim.spec.loading import SCHEMA_KEY, load_model, locate, read_json, relocate, validate_document
from blursim.spec.network import (
    FORMAT_NETWORK,
    AllToAll,
    BlockRandom,
    FixedProbability,
    FromList,
    Local2D,
    NetworkSpec,
    OneToOne,
    Population,
    Projection,
    Rules,
    SynapseInit,
)

#: Document name -> pydantic model, for ``blursim schema NAME``.
SCHEMAS: Registry[type[BaseModel]] = Registry("schema")
SCHEMAS.register("network", NetworkSpec, doc="A network: populations, projections, rules.")
SCHEMAS.register("genome", GenomeSpec, doc="A genome: the shared BLUR meta-parameters.")


#: ``format`` tag -> document name (the experiment registers its own with the meta package).
FORMATS: dict[str, str] = {FORMAT_NETWORK: "network", FORMAT_GENOME: "genome"}


def document_kind(data: Any) -> str:
    """The name of the document type of ``data`` (a parsed JSON object), from its ``format``.

    Without ``format``: an experiment when it has ``training_tasks``, a genome when it has
    ``groups``, else a network (network specs may omit their format tag).
    """
    if isinstance(data, dict) and "format" in data:
        fmt = data["format"]
        if not isinstance(fmt, str) or fmt not in FORMATS:
            raise SpecError("unknown document format", path="$.format", value=fmt, choices=FORMATS,
                            hint="blursim validate reads network, genome and experiment documents.")
        return FORMATS[fmt]
    if isinstance(data, dict) and "training_tasks" in data and "experiment" in SCHEMAS:
        return "experiment"
    if isinstance(data, dict) and "groups" in data:
        return "genome"
    return "network"


def load_any(path: str | Path) -> BaseModel:
    """Any document (network, genome, experiment) from a file, validated against the model its
    ``format`` names (:func:`document_kind`); syntax and types only."""
    data, text = read_json(path)
    try:
        kind = document_kind(data)
    except SpecError as e:
        raise locate(e, str(path), text, ["format"]) from None
    return validate_document(SCHEMAS.get(kind), data, source=str(path), text=text)


#: The JSON Schema dialect of the published schemas.
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_id(name: str) -> str:
    """The ``$id`` of the published schema of document type ``name`` (a URN named after the
    document's ``format`` tag, e.g. ``urn:blursim:network/1``; it locates nothing, it names)."""
    fmt = next((f for f, n in FORMATS.items() if n == name), f"blursim.{name}/1")
    return "urn:" + fmt.replace(".", ":", 1)


def schema_json(name: str) -> dict[str, Any]:
    """JSON Schema of the document type ``name`` (draft 2020-12).

    Generated from the pydantic model each time: every property carries its description,
    names taken from a registry (activations, feedback kinds, datasets, presets,
    strategies) are ``enum``s of what is registered now. A document may name its schema
    in a ``"$schema"`` key, which validation ignores (:func:`~blursim.spec.loading.validate_document`).
    """
    model = SCHEMAS.get(name)
    body = model.model_json_schema(by_alias=True)
    sch: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT, "$id": schema_id(name)}
    sch.update(body)
    sch.setdefault("title", model.__name__)
    sch["properties"] = {
        SCHEMA_KEY: {"type": "string", "description": "the URI or path of this document's JSON Schema "
                     "(blursim schema NAME --out DIR), for editors; ignored by blursim"},
        **sch.get("properties", {}),
    }
    return sch


def load_network(src: str | Path | dict | NetworkSpec) -> NetworkSpec:
    """A :class:`NetworkSpec` from a path, a dict, or an existing spec."""
    return load_model(NetworkSpec, src)


def load_genome(src: str | Path | dict | GenomeSpec) -> GenomeSpec:
    """A :class:`GenomeSpec` from a path, a dict, or an existing genome."""
    return load_model(GenomeSpec, src)


def dump_json(model: BaseModel) -> str:
    """Canonical JSON text of a spec document (aliases, defaults included)."""
    return json.dumps(model.model_dump(mode="json", by_alias=True), indent=2) + "\n"


__all__ = [
    "FORMATS",
    "FORMAT_GENOME",
    "FORMAT_NETWORK",
    "SCHEMAS",
    "AllToAll",
    "BlockRandom",
    "FixedProbability",
    "FromList",
    "GenomeParams",
    "GenomeSpec",
    "Local2D",
    "NetworkSpec",
    "OneToOne",
    "Population",
    "Projection",
    "Rules",
    "SynapseInit",
    "document_kind",
    "dump_json",
    "load_any",
    "load_genome",
    "load_network",
    "relocate",
    "schema_json",
]
