"""Genome presets: ``backprop`` and ``random``.

A preset is a function ``f(k=..., groups=..., **options) -> GenomeSpec``
registered in :data:`PRESETS` with its options model: the options a document
may give (``{"kind": "preset", "name": "random", "options": {"seed": 3}}``)
and ``make_preset`` accepts. ``k`` and ``groups`` come from the network, not
from the options.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from pydantic import Field

from blursim.errors import GenomeError
from blursim.registry import Registry
from blursim.spec.genome import GenomeParams, GenomeSpec
from blursim.spec.options import Options, validate_options

PRESETS: Registry[Callable[..., GenomeSpec]] = Registry("genome preset")


class BackpropOptions(Options):
    """Options of the ``backprop`` preset."""

    lr: float = Field(0.1, ge=-1e6, le=1e6, description="learning rate: the synapse update gain eta_tilde")


class RandomOptions(Options):
    """Options of the ``random`` preset."""

    seed: int = Field(0, ge=0, description="seed of the draw")
    scale: float = Field(
        0.5, gt=0.0, le=100.0, description="standard deviation of the mixing matrices"
    )
    lr: float | None = Field(
        None, ge=-1e6, le=1e6, description="eta_tilde of every group (null: drawn from U(0.005, 0.05))"
    )


@PRESETS.register("backprop", options=BackpropOptions)
def backprop_genome(
    k: int = 2, lr: float = 0.1, groups: Iterable[str] = ("default",), seed: int | None = None
) -> GenomeSpec:
    """The backpropagation genome of eq. (4) / DESIGN §3 (k = 2).

    ``nu = [[1,0],[1,0]]``, ``mu = [[0,0],[0,1]]``, ``nu_tilde = [[1,1],[0,0]]``,
    ``mu_tilde = [[0,1],[0,1]]``, ``f = eta = f_tilde = 1``, ``eta_tilde = lr``.
    With the rules of DESIGN §3 (tied, shared channels, multiplicative second
    state backward update, per-state activations ``(sigma, sigma')``) one BLUR
    step is one SGD step with learning rate ``lr``.
    """
    if k != 2:
        raise GenomeError(
            "the backprop preset is defined for k = 2 states", value=k, path="k",
            hint="Use a network spec with \"k\": 2.",
        )
    params = GenomeParams(
        f=1.0,
        eta=1.0,
        f_tilde=1.0,
        eta_tilde=float(lr),
        nu=[[1.0, 0.0], [1.0, 0.0]],
        mu=[[0.0, 0.0], [0.0, 1.0]],
        nu_tilde=[[1.0, 1.0], [0.0, 0.0]],
        mu_tilde=[[0.0, 1.0], [0.0, 1.0]],
    )
    return GenomeSpec(k=2, groups={g: params for g in groups}, meta={"preset": "backprop", "lr": lr})


@PRESETS.register("random", options=RandomOptions)
def random_genome(
    k: int = 2, seed: int = 0, groups: Iterable[str] = ("default",), scale: float = 0.5,
    lr: float | None = None,
) -> GenomeSpec:
    """A random genome drawn from ``seed``.

    Mixing matrices ~ N(0, scale^2); ``f`` ~ U(0, 1); ``eta`` ~ U(0.5, 1.5);
    ``f_tilde`` ~ U(0.9, 1); ``eta_tilde`` ~ U(0.005, 0.05) (``lr`` overrides it).
    Each group gets its own draw.
    """
    if int(seed) < 0:
        raise GenomeError("the random genome's seed must be >= 0", value=seed, path="seed")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x6E6F6D65]))
    out = {}
    for g in groups:
        out[g] = GenomeParams(
            f=float(rng.uniform(0, 1)),
            eta=float(rng.uniform(0.5, 1.5)),
            f_tilde=float(rng.uniform(0.9, 1.0)),
            eta_tilde=float(lr if lr is not None else rng.uniform(0.005, 0.05)),
            nu=(rng.normal(0, scale, (k, k))).tolist(),
            mu=(rng.normal(0, scale, (k, k))).tolist(),
            nu_tilde=(rng.normal(0, scale, (k, k))).tolist(),
            mu_tilde=(rng.normal(0, scale, (k, k))).tolist(),
        )
    return GenomeSpec(k=k, groups=out, meta={"preset": "random", "seed": seed, "scale": scale})


def make_preset(
    name: str, *, k: int, groups: Iterable[str], seed: int = 0, path: str = "--preset", **kw: Any
) -> GenomeSpec:
    """Build preset ``name`` for a network with ``k`` states and the given groups.

    ``kw`` are the preset's options (validated against its options model; an
    error points at ``<path>.options.<option>``); ``seed`` is passed to presets
    that take one (``random``) and ignored by the others.
    """
    fn = PRESETS.get(name, path=path)
    model = PRESETS.options(name)
    if "seed" in model.model_fields:
        kw = {"seed": seed, **kw}
    opts = validate_options(model, kw, what=f"genome preset {name!r}", path=path)
    return fn(k=k, groups=list(groups), **opts.model_dump())
