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
from blursim.spec.loading import load_model, relocate
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
    "dump_json",
    "load_genome",
    "load_network",
    "relocate",
    "schema_json",
]
