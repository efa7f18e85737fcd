"""The paper authors' published code, seen from blursim (docs/authors_layout.md).

Sandler et al. published their BLUR implementation with the paper. This module
converts its genomes and synapses to and from blursim's, and writes the network
spec whose step equals their ``network_step`` (:func:`authors_network`).

Genomes
-------
Their genome
is a nested structure of arrays -- ``neuron``, ``synapse`` and
``forward_synapse`` parts -- that users store as NPZ (keys joined by ``/``,
e.g. ``neuron/transform``) or as nested JSON. This module converts between
that structure and blursim's genome document (:class:`~blursim.spec.GenomeSpec`,
DESIGN §1). It is written from the documented structure; no code of theirs is
used.

Field by field (``k`` states; ``T`` is their ``neuron/transform``)::

    theirs                              blursim (paper symbol)
    neuron/transform  [2k x 2k]         nu = T[:k, k:]^T (eq. 5), mu = T[k:, :k]^T (eq. 6)
    neuron/keep, neuron/update          f, eta
    neuron/norm_multiplier, norm_shift  norm_gain, norm_shift (Sec. 3.4; a scalar -> every state)
    synapse/transform/pre               nu_tilde (indexed [e, c] as in eq. 7)
    synapse/transform/post              mu_tilde
    synapse/transform/ojas_multiplier   oja_alpha (eq. 8 / App. B)
    synapse/keep, synapse/update        f_tilde, eta_tilde
    synapse/saturation, rescale_to      saturation, rescale

Their ``T`` is indexed ``[source state, destination state]`` with the
presynaptic states in the first ``k`` rows/columns: the forward mix reads
``T[:k, k:]`` and the backward mix ``T[k:, :k]``, each the transpose of the
paper's ``nu``/``mu``. The diagonal blocks of ``T`` are not read by their
step. Entries without a blursim counterpart (``synapse_init_std``,
``synapse_init_xavier_std``, the ``forward_synapse`` part, nonzero diagonal
blocks, unknown keys) travel in the genome's ``meta["authors"]`` together
with every key's shape and dtype, so that :func:`export_authors_genome` of an
imported genome gives back the same arrays, bit for bit.

Leading axes: their arrays may carry a species axis and, for per-layer
genomes, a layer axis in front of it. :func:`import_authors_genome` returns
one genome per species (a list) and selects a layer or a species on request.

Synapses
--------
Their synapses of layer ``i -> i+1`` are one ``(S, R, N, N, k)`` array with
``N = n_i + 1 + n_{i+1}``: rows and columns list the presynaptic neurons, the
bias unit, then the postsynaptic neurons. The forward synapses are the block
``[:n_i + 1, n_i + 1:]`` (DESIGN's ``W`` with its bias row last), the backward
synapses the block ``[n_i + 1:, :n_i]`` (DESIGN's ``V``). The other blocks are
not read by their step (:func:`synapses_from_authors`,
:func:`synapses_to_authors`).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from blursim.errors import GenomeError, SpecError
from blursim.spec.genome import OPTIONAL_DEFAULTS, GenomeParams, GenomeSpec

#: ``meta["authors"]["format"]`` of an imported genome.
AUTHORS_FORMAT = "google-research/blur genome"

#: Largest authors' genome file read (a genome is a few kB; a layer axis of 1000 is < 10 MB), and
#: the most its NPZ members may inflate to (declared in their headers, checked before inflating).
MAX_AUTHORS_FILE_BYTES = 64 << 20
MAX_AUTHORS_INFLATED_BYTES = 64 << 20
#: Largest ``k`` (blursim's genome document allows 1..64 states).
MAX_K = 64
#: Most genome files one import writes (one per species when no species is picked).
MAX_IMPORT_FILES = 256
#: dtypes an exported genome may be written in.
EXPORT_DTYPES = ("float16", "float32", "float64")

#: Keys blursim computes from its own fields: key -> (blursim field, kind).
#: kind ``scalar``: per genome; ``matrix``: k x k; ``vector``: per state (a scalar is broadcast).
_DERIVED = {
    "neuron/keep": ("f", "scalar"),
    "neuron/update": ("eta", "scalar"),
    "neuron/norm_multiplier": ("norm_gain", "vector"),
    "neuron/norm_shift": ("norm_shift", "vector"),
    "synapse/transform/pre": ("nu_tilde", "matrix"),
    "synapse/transform/post": ("mu_tilde", "matrix"),
    "synapse/transform/ojas_multiplier": ("oja_alpha", "scalar"),
    "synapse/keep": ("f_tilde", "scalar"),
    "synapse/update": ("eta_tilde", "scalar"),
    "synapse/saturation": ("saturation", "scalar"),
    "synapse/rescale_to": ("rescale", "scalar"),
}
_TRANSFORM = "neuron/transform"
_DIAGONAL = "neuron/transform:diagonal_blocks"
_REQUIRED = (_TRANSFORM, "synapse/transform/pre", "synapse/transform/post")
#: Keys blursim has no field for, carried in ``meta.authors.extra``: key -> kind.
_CARRIED = {"synapse/synapse_init_std": "scalar", "synapse/synapse_init_xavier_std": "scalar"}
_CARRIED.update({"forward_synapse/" + key[len("synapse/"):]: kind
                 for key, (_, kind) in _DERIVED.items() if key.startswith("synapse/")})
_CARRIED.update({"forward_synapse/" + key[len("synapse/"):]: kind
                 for key, kind in list(_CARRIED.items()) if key.startswith("synapse/")})
#: Every key of their genome structure (others are refused).
KNOWN_KEYS = (_TRANSFORM, *_DERIVED, *_CARRIED)

#: What their genome constructor fills in for a genome that never was theirs (exported from blursim).
_THEIR_DEFAULTS = {
    "neuron/transform": None, "neuron/keep": None, "neuron/update": None,
    "neuron/norm_multiplier": None, "neuron/norm_shift": None,
    "synapse/transform/pre": None, "synapse/transform/post": None,
    "synapse/transform/ojas_multiplier": None,
    "synapse/synapse_init_std": 0.1, "synapse/synapse_init_xavier_std": 0.0,
    "synapse/keep": None, "synapse/update": None, "synapse/saturation": None,
    "synapse/rescale_to": None,
}


# ------------------------------------------------------------------ structure
def flatten_authors(tree: Mapping[str, Any], *, source: str = "authors genome") -> dict[str, np.ndarray]:
    """A nested dictionary (or one whose keys are already ``a/b/c`` paths) as ``{"a/b/c": array}``,
    in the order the keys appear."""
    out: dict[str, np.ndarray] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, f"{prefix}{key}/")
            return
        key = prefix[:-1]
        try:
            arr = np.asarray(node)
        except Exception:  # ragged lists
            raise GenomeError("is not a number or a regular array of numbers",
                              source=source, path=f"{key}") from None
        if arr.dtype.kind not in "biuf":
            raise GenomeError(f"must hold numbers, not {arr.dtype.name} values", source=source, path=f"{key}",
                              hint="Store the genome's arrays as numbers (float32 or float64).")
        if not np.isfinite(arr).all():
            raise GenomeError("holds NaN or infinite values", source=source, path=f"{key}",
                              hint="A genome must be finite; export it again from a run that did not diverge.")
        out[key] = arr

    if not isinstance(tree, Mapping) or not tree:
        raise GenomeError("is not a dictionary of genome arrays", source=source,
                          hint="Give the authors' genome as nested JSON objects or an NPZ of arrays "
                          "named like neuron/transform.")
    walk(tree, "")
    return out


def nest_authors(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a/b": x}`` -> ``{"a": {"b": x}}`` (the JSON form of their genome)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


# -------------------------------------------------------------------- files
def read_authors_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Their genome from an ``.npz`` (arrays named ``neuron/transform``, ...) or a ``.json`` (nested
    objects) file, as ``{"a/b/c": array}``. NPZ files are read without pickle."""
    from blursim.limits import read_regular_file
    from blursim.spec.loading import parse_json

    name = os.fspath(path)
    raw = read_regular_file(path, limit=MAX_AUTHORS_FILE_BYTES, what="genome file in the authors' layout",
                            error=GenomeError)
    if name.lower().endswith(".json"):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise GenomeError("is not UTF-8 JSON text", source=name) from None
        return flatten_authors(parse_json(text, name), source=name)
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        raise GenomeError("is neither an NPZ archive nor a .json file", source=name,
                          hint="Save their genome with numpy.savez (keys such as neuron/transform) "
                          "or as nested JSON in a file named *.json.")
    from blursim.npz import read_npz

    arrays = read_npz(raw, name=name, max_bytes=MAX_AUTHORS_INFLATED_BYTES, error=GenomeError,
                      max_members=4 * len(KNOWN_KEYS), what="authors' genome NPZ")
    return flatten_authors(arrays, source=name)


def write_authors_file(path: str | os.PathLike, flat: Mapping[str, np.ndarray]) -> None:
    """Write their genome as ``.npz`` (flat keys) or ``.json`` (nested objects), by the file's suffix."""
    from blursim.io import atomic_write_bytes, atomic_write_text

    name = os.fspath(path)
    if name.lower().endswith(".json"):
        nested = nest_authors({k: np.asarray(v).tolist() for k, v in flat.items()})
        atomic_write_text(name, json.dumps(nested, indent=1) + "\n")
        return
    if not name.lower().endswith(".npz"):
        raise GenomeError("the output file must end in .npz or .json", source=name)
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in flat.items()})
    atomic_write_bytes(name, buf.getvalue())


# ------------------------------------------------------------------- import
def _lead(flat: Mapping[str, np.ndarray], source: str) -> tuple[int, tuple[int, ...]]:
    """``k`` and the leading axes (layer and/or species) read from ``synapse/transform/pre``."""
    for key in _REQUIRED:
        if key not in flat:
            raise GenomeError(f"has no {key!r} array", source=source, choices=sorted(flat),
                              hint="An authors' genome has neuron/transform, synapse/transform/pre and "
                              "synapse/transform/post at least.")
    unknown = [key for key in flat if key not in KNOWN_KEYS]
    if unknown:
        raise GenomeError(f"holds {len(unknown)} array(s) that are not part of their genome structure, "
                          f"e.g. {unknown[0]!r}", source=source,
                          hint="Remove them: only the keys of their genome are imported (neuron/transform, "
                          "synapse/keep, ...: docs/authors_layout.md lists them).")
    pre = flat["synapse/transform/pre"]
    if pre.ndim < 2 or pre.shape[-1] != pre.shape[-2] or pre.ndim > 4:
        raise GenomeError("must be k x k matrices (with at most a layer and a species axis in front)",
                          source=source, path="synapse/transform/pre", value=list(pre.shape))
    k, lead = int(pre.shape[-1]), tuple(int(n) for n in pre.shape[:-2])
    if not 1 <= k <= MAX_K:
        raise GenomeError(f"has k = {k} states; a blursim genome has 1..{MAX_K}",
                          source=source, path="synapse/transform/pre", value=list(pre.shape))
    if 0 in lead:
        raise GenomeError("has an empty layer or species axis", source=source, path="synapse/transform/pre",
                          value=list(pre.shape))
    for key, core in (("synapse/transform/post", (k, k)), (_TRANSFORM, (2 * k, 2 * k))):
        if tuple(flat[key].shape) != lead + core:
            raise GenomeError(f"must have shape {list(lead + core)} to match synapse/transform/pre",
                              source=source, path=f"{key}", value=list(flat[key].shape))
    return k, lead


def _carried(key: str, arr: np.ndarray, k: int, lead: tuple[int, ...]) -> int:
    """How many of the leading axes ``lead`` (layer, species) the array carries in front.

    Their genome puts the layer axis first and the species axis second, and a scalar shared by
    every species (their ``shared_update_params``) has no species axis: an array carries a
    prefix of ``lead``. Matrices and ``neuron/transform`` carry all of it; a per-state vector
    (``norm_multiplier``/``norm_shift``) may end in ``k``; any other array carries the longest
    prefix of ``lead`` its shape starts with."""
    if key in (_TRANSFORM, "synapse/transform/pre", "synapse/transform/post"):
        return len(lead)
    n = arr.ndim
    m = 0
    while m < min(n, len(lead)) and arr.shape[m] == lead[m]:
        m += 1
    if key in ("neuron/norm_multiplier", "neuron/norm_shift") and n == m and m and arr.shape[-1] == k \
            and n - 1 < len(lead) and tuple(arr.shape[:n - 1]) == lead[:n - 1] and lead[n - 1] != k:
        m = n - 1  # (..., k): per state, not per species
    return m


def import_authors_genome(
    tree: Mapping[str, Any], *, layer: int | None = None, species: int | None = None,
    group: str = "default", source: str = "authors genome",
) -> list[GenomeSpec]:
    """Blursim genome documents from the authors' genome structure: one per species.

    ``tree``: their genome as a nested dictionary, or flat with ``a/b/c`` keys (what
    :func:`read_authors_file` returns). Without leading axes the result has one genome. A
    species axis gives one genome per species (``species=i`` keeps only species ``i``); a per-layer
    genome (a layer axis in front) needs ``layer=i``. Each genome has one group, ``group``, and
    records in ``meta["authors"]`` what :func:`export_authors_genome` needs to give back the same
    arrays.
    """
    flat = flatten_authors(tree, source=source)
    k, lead = _lead(flat, source)
    carried = {key: _carried(key, a, k, lead) for key, a in flat.items()}
    if len(lead) == 2 and layer is None:
        raise GenomeError(f"is a per-layer genome ({lead[0]} layers of {lead[1]} species)", source=source,
                          hint="Pick one layer (--layer INDEX, or layer=INDEX in Python).")
    if layer is not None:
        if len(lead) != 2 and not (len(lead) == 1 and species is None):
            raise GenomeError(f"has no layer axis to pick layer {layer} from", source=source, value=layer)
        if not 0 <= layer < lead[0]:
            raise GenomeError(f"has no layer {layer} (it has {lead[0]})", source=source, value=layer)
        flat = {key: (a[layer] if carried[key] else a) for key, a in flat.items()}
        carried = {key: max(m - 1, 0) for key, m in carried.items()}
        lead = lead[1:]
    S = lead[0] if lead else None
    if species is not None and not (S is not None and 0 <= species < S):
        raise GenomeError(f"has no species {species}" + (f" (it has {S})" if S else " (no species axis)"),
                          source=source, value=species)
    keep_axis = S is not None and species is None
    if keep_axis and S > MAX_IMPORT_FILES:
        raise GenomeError(f"has {S} species, more than the {MAX_IMPORT_FILES} genome files one import writes",
                          source=source, value=S, hint="Import one species at a time (--species INDEX).")
    keys = {key: {"shape": list(a.shape[carried[key]:]), "species": bool(carried[key]) and keep_axis,
                  "dtype": a.dtype.name} for key, a in flat.items()}
    picked = [species] if species is not None else (range(S) if S is not None else [None])
    out = []
    for s in picked:
        one = {key: (a[s] if s is not None and carried[key] else a) for key, a in flat.items()}
        meta = {"format": AUTHORS_FORMAT, "keys": keys}
        if keep_axis:
            meta["species"] = S
        out.append(_genome_from_one(one, k, group, source, meta))
    return out


def _genome_from_one(one: dict[str, np.ndarray], k: int, group: str, source: str, meta: dict) -> GenomeSpec:
    T = one[_TRANSFORM].astype(np.float64)
    fields: dict[str, Any] = {"nu": T[:k, k:].T.tolist(), "mu": T[k:, :k].T.tolist()}
    extra: dict[str, Any] = {}
    diag = [T[:k, :k], T[k:, k:]]
    if any(np.any(b != 0) or np.any(np.signbit(b)) for b in diag):  # -0.0 too: the round trip keeps bits
        extra[_DIAGONAL] = [b.tolist() for b in diag]
    for key, arr in one.items():
        if key == _TRANSFORM:
            continue
        kind = _DERIVED[key][1] if key in _DERIVED else _CARRIED[key]
        a = arr.astype(np.float64)
        if kind == "scalar" and a.ndim:
            raise GenomeError("must be one number per genome", source=source, path=f"{key}", value=list(arr.shape))
        if kind == "vector" and (a.ndim > 1 or (a.ndim == 1 and a.shape[0] != k)):
            raise GenomeError(f"must be a number or {k} numbers (one per state)", source=source, path=f"{key}",
                              value=list(arr.shape))
        if kind == "matrix" and a.shape != (k, k):
            raise GenomeError(f"must be a {k} x {k} matrix", source=source, path=f"{key}", value=list(arr.shape))
        if key not in _DERIVED:
            extra[key] = arr.tolist()
            continue
        name = _DERIVED[key][0]
        fields[name] = float(a) if kind == "scalar" else np.broadcast_to(a, (k,) if kind == "vector" else a.shape).tolist()
    for name in ("f", "eta", "f_tilde", "eta_tilde"):
        if name not in fields:
            key = next(key for key, v in _DERIVED.items() if v[0] == name)
            raise GenomeError(f"has no {key!r} value", source=source,
                              hint="Their genome structure always has neuron/keep, neuron/update, "
                              "synapse/keep and synapse/update.")
    from blursim.spec.loading import validate_document

    doc = {"k": k, "groups": {group: fields}, "meta": {"authors": {**meta, "extra": extra}}}
    try:
        return validate_document(GenomeSpec, doc)
    except GenomeError as e:
        raise GenomeError(e.message, path=e.path, value=e.value, choices=e.choices, hint=e.hint,
                          source=source) from None
    except SpecError as e:
        raise GenomeError(f"does not make a valid blursim genome: {e.message}", path=e.path, value=e.value,
                          choices=e.choices, hint=e.hint, source=source) from None


# ------------------------------------------------------------------- export
def export_authors_genome(
    genomes: GenomeSpec | Sequence[GenomeSpec], *, group: str | None = None, dtype: str | None = None,
) -> dict[str, np.ndarray]:
    """The authors' genome structure (flat ``a/b/c`` keys) of one genome, or of several stacked along
    a species axis.

    A genome imported by :func:`import_authors_genome` is written back with the keys, shapes and
    dtypes it came with; values that their file held once for every species must still be equal
    across the species. Other genomes get every key of their genome structure: a zero diagonal in
    ``neuron/transform``, their default initialisation values, the ``forward_synapse`` part equal
    to ``synapse`` (as their genome class fills it in), one number for a per-state value whose
    states agree, and ``dtype`` (default float64). ``group``: the genome group to export (default:
    the only one).
    """
    many = not isinstance(genomes, GenomeSpec)
    gs = list(genomes) if many else [genomes]
    if not gs:
        raise GenomeError("no genome to export")
    k = gs[0].k
    if any(g.k != k for g in gs):
        raise GenomeError("genomes stacked along a species axis must share k")
    if group is None:
        if len(gs[0].groups) != 1:
            raise GenomeError("the genome has several groups; their layout holds one",
                              choices=list(gs[0].groups), hint="Pick one with --group NAME (group=NAME in Python).")
        group = next(iter(gs[0].groups))
    for g in gs:
        if group not in g.groups:
            raise GenomeError(f"the genome has no group {group!r}", choices=list(g.groups))
    metas = [_check_meta(g.meta.get("authors"), k) if isinstance(g.meta.get("authors"), dict) else None
             for g in gs]
    if dtype is not None and dtype not in EXPORT_DTYPES:
        raise GenomeError("unsupported dtype", value=dtype, choices=EXPORT_DTYPES)
    meta = metas[0]
    if meta is not None and any(m is None or m.get("keys") != meta.get("keys") for m in metas):
        raise GenomeError("genomes stacked along a species axis must come from the same authors' genome "
                          "(their meta.authors.keys differ)")
    per = [_one_flat(g.groups[group], m, k) for g, m in zip(gs, metas)]
    out: dict[str, np.ndarray] = {}
    for key in per[0]:
        info = meta["keys"][key] if meta is not None else {"shape": None, "species": True,
                                                           "dtype": "float64"}
        vals = [_to_shape(np.asarray(p[key]), info["shape"], key) for p in per]
        if many and info["species"]:
            arr = np.stack(vals)
        else:
            if any(not np.array_equal(vals[0], v) for v in vals[1:]):
                raise GenomeError(f"{key} is one value for every species in the original genome, but "
                                  "the genomes differ there", path=key)
            arr = vals[0]
        out[key] = arr.astype(dtype or info["dtype"])
    return out


def _check_meta(meta: dict, k: int) -> dict:
    """``meta.authors`` of a genome document (data from a file): its keys, shapes, dtypes and
    extra values must be those an import writes, so that exporting allocates nothing unbounded
    and writes plain numeric arrays only."""
    def bad(path: str, what: str, value: Any = None) -> GenomeError:
        return GenomeError(what, path=f"$.meta.authors.{path}", value=value,
                           hint="meta.authors is written by 'blursim genome import'; do not edit it.")

    keys = meta.get("keys")
    if not isinstance(keys, dict) or not keys or len(keys) > len(KNOWN_KEYS):
        raise bad("keys", f"must map at most {len(KNOWN_KEYS)} of their genome's keys to shapes and dtypes")
    for key, info in keys.items():
        if key not in KNOWN_KEYS:
            raise bad("keys", "names a key that is not part of their genome structure", key)
        shape = info.get("shape") if isinstance(info, dict) else None
        allowed = [[2 * k, 2 * k]] if key == _TRANSFORM else [[], [k], [k, k]]
        if shape not in allowed or any(isinstance(n, bool) for n in shape):
            raise bad(f"keys.{key}.shape", f"must be one of {allowed} (one genome's shape for k={k})", shape)
        if info.get("dtype") not in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                                     "uint64", *EXPORT_DTYPES):
            raise bad(f"keys.{key}.dtype", "must be a numeric dtype", info.get("dtype"))
        if not isinstance(info.get("species"), bool):
            raise bad(f"keys.{key}.species", "must be true or false", info.get("species"))
    extra = meta.get("extra", {})
    if not isinstance(extra, dict) or any(key not in KNOWN_KEYS and key != _DIAGONAL for key in extra):
        raise bad("extra", "must hold values of their genome's keys only")
    for key, v in extra.items():
        try:
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise bad(f"extra.{key}", "must be numbers") from None
        if a.size > 2 * k * k or not np.isfinite(a).all():
            raise bad(f"extra.{key}", f"must be finite numbers of one genome (at most {2 * k * k})")
    return meta


def _to_shape(v: np.ndarray, shape: list | None, key: str) -> np.ndarray:
    """A per-state vector written as the one number their genome held (all states equal)."""
    if shape is None or tuple(v.shape) == tuple(shape):
        return v
    if v.size and np.all(v == v.reshape(-1)[0]) and int(np.prod(shape, dtype=np.int64)) == 1:
        return np.full(tuple(shape), v.reshape(-1)[0])
    raise GenomeError(f"{key} has shape {list(v.shape)} here but {list(shape)} in the imported genome "
                      "(a value per state where theirs held one number?)", path=key)


def _one_flat(p: GenomeParams, meta: Any, k: int) -> dict[str, Any]:
    """One genome group's values under their keys (no leading axes)."""
    meta = meta if isinstance(meta, dict) else None
    extra = dict(meta.get("extra", {})) if meta else {}
    diag = extra.pop(_DIAGONAL, None)
    T = np.zeros((2 * k, 2 * k))
    if diag is not None:
        T[:k, :k], T[k:, k:] = np.asarray(diag[0]), np.asarray(diag[1])
    T[:k, k:] = np.asarray(p.nu).T
    T[k:, :k] = np.asarray(p.mu).T
    def value(name):
        v = getattr(p, name)
        return OPTIONAL_DEFAULTS[name] if v is None else v

    vals: dict[str, Any] = {_TRANSFORM: T}
    for key, (name, kind) in _DERIVED.items():
        v = np.asarray(value(name), dtype=np.float64)
        if kind == "vector":
            v = np.broadcast_to(v, (k,))
            if meta is None and np.all(v == v[0]):
                v = v[0]  # their genome holds one number unless the states differ
        vals[key] = np.asarray(v)
    if meta is None:
        order = list(_THEIR_DEFAULTS)
        flat = {key: (vals[key] if key in vals else np.asarray(_THEIR_DEFAULTS[key])) for key in order}
        for key in order:  # their Genome fills forward_synapse with the synapse genome
            if key.startswith("synapse/"):
                flat["forward_synapse/" + key[len("synapse/"):]] = flat[key]
        return flat
    flat = {}
    for key in meta["keys"]:
        if key in vals:
            flat[key] = vals[key]
        elif key in extra:
            flat[key] = np.asarray(extra[key])
        else:
            raise GenomeError(f"the genome's meta.authors lists {key!r} but holds no value for it",
                              path="meta.authors.extra")
    return flat


# ------------------------------------------------------------ network spec
def authors_network(
    sizes: Sequence[int], k: int, *,
    forward_activation: str | list[str] = "relu_tanh",
    backward_activation: str | list[str] = "relu_tanh",
    last_layer_activation: str | list[str] = "tanh",
    backward_update: str = "additive",
    symmetric_in_out_synapses: bool = False,
    symmetric_states_synapses: bool = False,
    ojas: str | None = None,
    synapse_normalization: str | None = None,
    zero_out_neurons: bool = True,
    targets: str = "onehot",
):
    """The network spec whose training step is their ``network_step`` (docs/authors_layout.md).

    ``sizes``: their layer sizes ``(n_input, *hidden_layers, n_output)``; every layer feeds the next
    through a projection with a bias. Keywords are their ``NetworkSpec`` settings under their names
    (activations by blursim's registered names, ``None`` for none being ``"identity"``; a list of
    ``k`` names for a per-state function): ``ojas`` is ``None``, ``"activity"`` (their ``OjasSpec``
    with ``use_synapse_weights=False``) or ``"weights"`` (``True``), with ``use_multiplier=True`` and
    ``extra_multiplier=1``; ``synapse_normalization`` is ``None``, ``"stored"`` (their
    ``normalize_synapses``) or ``"activations"`` (``normalize_in_activations``); ``targets`` says
    how their ground truth codes classes: ``"onehot"`` (0/1) or ``"pm1"`` (+-1). Settings their
    code has but blursim does not (``forward_synapse_update``, ``supervised_every``,
    ``use_forward_activations_for_synapse_update``, ``synapse_activation_fn``, their ``exp_update``
    saturation) must stay at their defaults to use this spec.
    """
    from blursim.spec import load_network

    sizes = [int(n) for n in sizes]
    if len(sizes) < 2:
        raise GenomeError("their network needs at least an input and an output layer", value=sizes)
    names = ["in"] + [f"h{i}" for i in range(1, len(sizes) - 1)] + ["out"]
    pops = [{"name": "in", "size": sizes[0], "role": "input"}]
    for name, n in zip(names[1:-1], sizes[1:-1]):
        pops.append({"name": name, "size": n, "role": "hidden", "forward_activation": forward_activation,
                     "backward_activation": backward_activation})
    pops.append({"name": "out", "size": sizes[-1], "role": "output", "forward_activation": last_layer_activation,
                 "backward_activation": "identity"})
    projs = [{"from": a, "to": b, "bias": True} for a, b in zip(names, names[1:])]
    if ojas not in (None, "activity", "weights"):
        raise GenomeError("ojas must be None, 'activity' or 'weights'", value=ojas)
    if synapse_normalization not in (None, "stored", "activations"):
        raise GenomeError("synapse_normalization must be None, 'stored' or 'activations'", value=synapse_normalization)
    if targets not in ("onehot", "pm1"):
        raise GenomeError("targets must be 'onehot' (0/1) or 'pm1' (+-1)", value=targets)
    rules = {
        "backward_update": backward_update,
        "tied": bool(symmetric_in_out_synapses),
        "shared_channels": bool(symmetric_states_synapses),
        "feedback": "target",
        "target_coding": targets,
        "oja": ojas or "none",
        "synapse_normalization": synapse_normalization or "none",
        "synapse_norm_eps": 1e-9,  # their normalize_synapses: W / sqrt(sum W^2 + 1e-9)
        "saturation": False,
        "reset_neurons": bool(zero_out_neurons),
        "batch_reduction": "sum",  # their Hebbian einsum sums over the batch
        "schedule": "topological",
    }
    if symmetric_states_synapses:
        rules["shared_update"] = "channel0"  # their sync_states_synapse copies channel 0's update
    return load_network({"k": int(k), "populations": pops, "projections": projs, "rules": rules})


# ------------------------------------------------------------------ synapses
def synapses_from_authors(program, synapses: Sequence[Any]):
    """Their per-layer ``(S, R, N, N, k)`` synapse arrays as a blursim
    :class:`~blursim.sim.SynapseState` for ``program`` (e.g. compiled from :func:`authors_network`).

    Shared channels keep channel 0; tied synapses keep only the forward block (blursim's ``V`` is
    ``W^T``); the blocks their step does not read are dropped."""
    from blursim.sim import SynapseState

    projs = program.projs
    if len(synapses) != len(projs):
        raise GenomeError(f"their network has {len(synapses)} synapse arrays but this network has "
                          f"{len(projs)} projections")
    W, b, V = [], [], []
    for qi, (q, syn) in enumerate(zip(projs, synapses)):
        a = np.asarray(syn)
        n_in, n_out = q.n_pre, q.n_post
        N = n_in + 1 + n_out
        if a.ndim != 5 or a.shape[2:4] != (N, N) or a.shape[4] != program.k:
            raise GenomeError(f"synapse {qi} must have shape (S, R, {N}, {N}, {program.k})",
                              value=list(a.shape), path=f"synapses[{qi}]")
        fwd = np.moveaxis(a[:, :, : n_in + 1, n_in + 1 :, : program.kw], -1, 2)  # (S, R, kw, n_in + 1, n_out)
        W.append(np.ascontiguousarray(fwd[:, :, :, :n_in]))
        b.append(np.ascontiguousarray(fwd[:, :, :, n_in]) if q.bias else None)
        if program.rules.tied:
            V.append(None)
        else:
            V.append(np.ascontiguousarray(np.moveaxis(a[:, :, n_in + 1 :, :n_in, : program.kw], -1, 2)))
    return SynapseState(W, b, V)


def synapses_to_authors(program, st, k: int | None = None) -> list[np.ndarray]:
    """A :class:`~blursim.sim.SynapseState` as their per-layer ``(S, R, N, N, k)`` arrays (float64):
    forward block with the bias row, backward block (``W^T`` with the bias column when tied, as their
    ``sync_in_and_out_synapse`` writes it; zero bias column otherwise), zeros elsewhere, shared
    channels repeated over the ``k`` states."""
    k = program.k if k is None else k
    out = []
    for qi, q in enumerate(program.projs):
        n_in, n_out = q.n_pre, q.n_post
        W = np.asarray(st.forward_synapses(qi, k, to_numpy=_host), dtype=np.float64)  # (S, R, n_in + bias, n_out, k)
        S, R = W.shape[:2]
        full = np.zeros((S, R, n_in + 1 + n_out, n_in + 1 + n_out, k))
        full[:, :, : W.shape[2], n_in + 1 :] = W
        if program.rules.tied:
            full[:, :, n_in + 1 :, : W.shape[2]] = np.swapaxes(W, 2, 3)
        else:
            full[:, :, n_in + 1 :, :n_in] = st.backward_synapses(qi, k, to_numpy=_host)
        out.append(full)
    return out


def _host(x):
    return x.get() if hasattr(x, "__cuda_array_interface__") else np.asarray(x)
