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
from blursim.spec.loading import load_model, locate, read_json, relocate, validate_document
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


def schema_json(name: str) -> dict[str, Any]:
    """JSON Schema of the document type ``name``."""
    model = SCHEMAS.get(name)
    sch = model.model_json_schema(by_alias=True)
    sch["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    sch.setdefault("title", model.__name__)
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
