"""The experiment document: what to meta-learn, on which tasks, with which strategy.

An experiment (``"format": "blursim.experiment/1"``, JSON Schema via
``blursim schema experiment``) names

- the network (a path relative to the experiment file, or an inline network
  object), optionally overridden per task;
- training tasks (fitness) and validation tasks (held-out generalisation),
  each a dataset from the registry with its options;
- the inner loop: unroll steps ``T``, batch size, query batches, replicas, and
  an optional curriculum over ``T`` (paper App. C.4);
- which genome fields are evolved, their initial values (a preset, a genome
  file, or a seeded random genome) and bounds;
- the strategy (``blursim list strategies``) with its options;
- the fitness metric, the number of generations, the root seed, the output
  directory and how to execute (backend, dtype, memory budget, Dask).

:func:`load_experiment` reads and validates the document (syntax and types,
with file/line/JSON path in every error); :func:`prepare_experiment` does every
semantic check (tasks exist and fit the network, fields exist, bounds contain
the initial values, strategy options are valid) and builds the
:class:`Setup` -- all before any simulation runs.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import numpy as np
from pydantic import Field, ValidationError, field_validator, model_validator

from blursim import limits as L
from blursim.errors import SpecError
from blursim.spec import FORMATS, SCHEMAS
from blursim.spec.base import PATTERN_TEXT, Name, Seed, Strict, Text, error_at
from blursim.spec.genome import ALL_FIELDS, GenomeSpec, field_shape
from blursim.spec.loading import load_document, load_model, locate, parse_path, relocate, source_of, spec_error
from blursim.spec.network import NetworkSpec
from blursim.spec.options import Choice

FORMAT_EXPERIMENT = "blursim.experiment/1"

#: Genome fields evolved when an experiment does not list ``genome.fields``:
#: the eight core meta-parameters of eq. (5)-(7).
CORE_FIELDS = ("f", "eta", "f_tilde", "eta_tilde", "nu", "mu", "nu_tilde", "mu_tilde")


# ------------------------------------------------------------------------ parts
_PATH_PATTERN = r"^[^\x00]*$"
_RUN_NAME_PATTERN = r"^([^./\\\x00-\x1f\x7f][^/\\\x00-\x1f\x7f]*)?$"
#: A file path in a document (bounded; relative paths are relative to the document's file).
Path_ = Annotated[str, Field(min_length=1, max_length=L.MAX_PATH_CHARS, pattern=_PATH_PATTERN)]
#: An experiment's name: it names the default output directory ``runs/NAME``, so it is one
#: path component (no separators, no leading dot, no control characters) or empty.
RunName = Annotated[str, Field(max_length=L.MAX_NAME_CHARS, pattern=_RUN_NAME_PATTERN)]
PATTERN_TEXT.update({
    _PATH_PATTERN: "must not contain a NUL character",
    _RUN_NAME_PATTERN: "must be a plain name without '/', '\\', a leading '.' or control characters "
    "(it names the output directory runs/NAME)",
})


def is_local_path(path: str) -> bool:
    """Whether ``path`` is relative and never climbs out of its starting directory (no ``..``)."""
    from pathlib import PurePosixPath, PureWindowsPath

    if not path or PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute() \
            or PureWindowsPath(path).drive or path.startswith("~"):
        return False
    parts = path.replace("\\", "/").split("/")
    return ".." not in parts


class TaskSpec(Choice):
    """A task: a registered dataset (``blursim list datasets``) and its options.

    ``label`` names the task in logs (default: ``name``); labels must be
    unique within the training tasks and within the validation tasks.
    ``network`` optionally replaces the experiment's network for this task (a
    path or an inline network with the same ``k`` and genome groups), e.g. to
    validate a genome on a larger input or another number of classes.
    """

    what: ClassVar[str] = "dataset"

    label: Name | None = Field(None, description="the task's name in logs and summaries (default: name); "
                               "unique among the training and among the validation tasks")
    network: Path_ | NetworkSpec | None = Field(
        None, description="a network for this task only (a path relative to the experiment file, or an "
        "inline network), with the experiment network's k and genome groups")

    @classmethod
    def registry(cls):
        from blursim.data import DATASETS

        return DATASETS

    @property
    def key(self) -> str:
        return self.label or self.name


class InnerLoop(Strict):
    """One fitness evaluation: ``steps`` BLUR training steps from fresh synapses,
    then accuracy / cross-entropy on ``query_batches`` batches.

    ``steps`` is the unroll length ``T`` (the curriculum's start when a
    curriculum is given). ``query_batch_size`` defaults to ``batch_size``.
    Every species sees the same ``replicas`` synapse initialisations and the
    same batches (common random numbers).
    """

    steps: int = Field(ge=1, le=L.MAX_STEPS, description="unroll length T: BLUR training steps from fresh "
                       "synapses before the query batches (the curriculum's start when one is given)")
    batch_size: int = Field(default=128, ge=1, le=L.MAX_BATCH, description="examples per training step")
    query_batches: int = Field(default=20, ge=1, le=L.MAX_QUERY_BATCHES,
                               description="batches, after the T steps, on which accuracy / loss is measured")
    query_batch_size: int | None = Field(default=None, ge=1, le=L.MAX_BATCH,
                                         description="examples per query batch (default: batch_size)")
    replicas: int = Field(default=1, ge=1, le=L.MAX_REPLICAS, description="independent synapse "
                          "initialisations per genome, the same for every genome (common random numbers)")


class Curriculum(Strict):
    """Unroll length at generation ``g`` (0-based):
    ``min(max_steps, inner.steps + increment * (g // every))`` (paper App. C.4:
    start at 10, +5 every N steps)."""

    increment: int = Field(ge=0, le=L.MAX_STEPS, description="steps added to the unroll length T at each increase")
    every: int = Field(ge=1, le=L.MAX_GENERATIONS, description="generations between increases of T")
    max_steps: int | None = Field(default=None, ge=1, le=L.MAX_STEPS, description="largest T (default: no limit)")


class InitPreset(Choice):
    """Initial genome from a preset (``blursim list presets``) with its options."""

    what: ClassVar[str] = "genome preset"

    kind: Literal["preset"] = Field(description="where the initial genome comes from: a preset")

    @classmethod
    def registry(cls):
        from blursim.genome import PRESETS

        return PRESETS


class InitFile(Strict):
    """Initial genome from a genome file (path relative to the experiment file)."""

    kind: Literal["file"] = Field(description="where the initial genome comes from: a genome file")
    path: Path_ = Field(description="the genome file, relative to the experiment file")


class InitRandom(Strict):
    """A random initial genome (the ``random`` preset) drawn from ``seed``."""

    kind: Literal["random"] = Field(description="where the initial genome comes from: random values")
    seed: Seed = Field(0, description="seed of the random genome")
    scale: float = Field(default=0.5, gt=0.0, le=L.MAX_INIT_SCALE, description="scale of the random values")


GenomeInit = Annotated[Union[InitPreset, InitFile, InitRandom], Field(discriminator="kind")]

FieldValue = Union[float, list[float], list[list[float]]]


class GenomeSearch(Strict):
    """Which genome entries are evolved, where they start and where they may go.

    ``fields`` (default: the eight core fields) are evolved in every genome
    group listed in ``groups`` (default: all groups of the network); every other
    entry keeps its initial value. ``set`` overrides initial values in every
    group (e.g. ``{"oja_alpha": 0.1}``). ``bounds`` maps an evolved field to
    ``[low, high]`` (``null`` for an open end), applied to each of its entries.
    """

    init: GenomeInit = Field(description="the initial genome: a preset, a genome file or a random genome")
    set: dict[Name, FieldValue] = Field(default_factory=dict, description="initial values that override the "
                                        "initial genome's, in every group (field -> scalar, vector or matrix)")
    fields: list[Name] = Field(default_factory=lambda: list(CORE_FIELDS), min_length=1, max_length=len(ALL_FIELDS),
                               description="the genome fields that are meta-learned (default: the eight "
                               "core fields of eq. 5-7); the others keep their initial values")
    groups: list[Name] | None = Field(default=None, min_length=1, max_length=1000,
                                      description="the genome groups whose fields are meta-learned (default: all)")
    bounds: dict[Name, tuple[float | None, float | None]] = Field(
        default_factory=dict, description="field -> [low, high] for each of its entries (null: open end)")

    @field_validator("groups")
    @classmethod
    def _distinct(cls, v):
        if v is not None and len(set(v)) != len(v):
            twice = next(g for i, g in enumerate(v) if g in v[:i])
            raise ValueError(f"genome group {twice!r} is listed twice; list each group once")
        return v


#: The fields of an evolution strategy that gradient meta-training does not take.
ES_FIELDS = {
    "sigma0": (float, "the initial step size of the search distribution", dict(gt=0.0, le=L.MAX_SIGMA0)),
    "popsize": (int, "candidates per generation", dict(ge=2, le=L.MAX_POPSIZE)),
}


class StrategySpec(Choice):
    """The meta-optimizer (``blursim list strategies``) and its options (defaults listed by
    each strategy). An evolution strategy (``cma_es``, ``sep_cma_es``, ``openai_es``) needs
    its initial step size ``sigma0`` and population size ``popsize``; ``gradient`` (meta-gradients
    through the unroll, Sec. 3.3) takes neither.

    **Decision.** ``sigma0`` and ``popsize`` given to ``gradient`` are refused (not ignored): a
    document that states them expects them to act, and under gradient descent they would
    not (its step size is ``options.learning_rate``, its genomes per step ``options.runs``).
    """

    what: ClassVar[str] = "strategy"

    name: str = Field(default="cma_es", min_length=1, validate_default=True)
    sigma0: float | None = Field(default=None, gt=0.0, le=L.MAX_SIGMA0,
                                 description="evolution strategies: " + ES_FIELDS["sigma0"][1])
    popsize: int | None = Field(default=None, ge=2, le=L.MAX_POPSIZE,
                                description="evolution strategies: " + ES_FIELDS["popsize"][1])

    @classmethod
    def registry(cls):
        from blursim.meta.strategies import STRATEGIES

        return STRATEGIES

    @model_validator(mode="before")
    @classmethod
    def _fields_of_the_kind(cls, data):
        from blursim.meta.strategies import STRATEGIES

        if not isinstance(data, dict):
            return data
        name = data.get("name", cls.model_fields["name"].default)
        if not isinstance(name, str) or name not in STRATEGIES:
            return data  # the name's own error is reported
        takes = STRATEGIES.get(name).experiment_fields
        for field, (_, what, _) in ES_FIELDS.items():
            if field in takes and data.get(field) is None:
                raise error_at((field,), f"strategy {name!r} needs {field} ({what})")
            if field not in takes and field in data:
                instead = ("options.learning_rate" if field == "sigma0" else "options.runs")
                raise error_at(
                    (field,), f"{field} is a setting of the evolution strategies; strategy {name!r} "
                    f"does not take it (its counterpart is {instead}): remove {field}",
                    value=data[field],
                )
        return data

    @classmethod
    def variant_field(cls, name, field, info):
        from blursim.meta.strategies import STRATEGIES

        if field not in ES_FIELDS:
            return super().variant_field(name, field, info)
        if field not in STRATEGIES.get(name).experiment_fields:
            return None
        typ, what, limits = ES_FIELDS[field]
        return typ, Field(description=what, **limits)


class FitnessSpec(Strict):
    """Fitness (maximised): mean ``accuracy`` or minus mean ``cross_entropy``
    over training tasks, replicas and query batches (DESIGN §4); for tasks
    with real-valued target vectors, minus the mean squared error (``mse``)."""

    metric: Literal["accuracy", "cross_entropy", "mse"] = Field(
        "accuracy", description="what is maximised: accuracy, or minus the cross-entropy / mean squared "
        "error, on the query batches (DESIGN §4)")


class ValidationSpec(Strict):
    """How the best and mean genomes are validated after each generation.

    Every ``every`` generations, on the held-out (test) split of every
    validation task, after ``steps`` training steps (default: the current
    unroll length), over ``replicas`` initialisations (default:
    ``inner.replicas``); ``query_batches`` seeded batches, or (null) the whole
    held-out split.
    """

    every: int = Field(default=1, ge=1, le=L.MAX_GENERATIONS, description="generations between validations")
    steps: int | None = Field(default=None, ge=1, le=L.MAX_STEPS,
                              description="training steps before measuring (default: the current unroll length)")
    replicas: int | None = Field(default=None, ge=1, le=L.MAX_REPLICAS,
                                 description="synapse initialisations (default: inner.replicas)")
    query_batches: int | None = Field(default=None, ge=1, le=L.MAX_QUERY_BATCHES,
                                      description="seeded query batches (default null: the whole held-out split)")
    query_batch_size: int | None = Field(default=None, ge=1, le=L.MAX_BATCH,
                                         description="examples per query batch (default: inner's)")


class DaskSpec(Strict):
    """A local Dask cluster of ``local_workers`` processes on this machine (at most
    :data:`~blursim.limits.MAX_LOCAL_WORKERS`).

    **Decision.** A document cannot name a Dask scheduler to connect to: Dask moves work and
    results with pickle, so where they go is the user's choice on the command line
    (``--dask-scheduler ADDRESS``), never a document's (which a colleague may have sent).
    """

    local_workers: int = Field(ge=1, le=L.MAX_LOCAL_WORKERS, description="worker processes of the local cluster")

    @model_validator(mode="before")
    @classmethod
    def _no_scheduler(cls, data):
        if isinstance(data, dict) and "scheduler" in data:
            raise error_at(
                ("scheduler",),
                "a document cannot name a Dask scheduler (Dask sends work and results as "
                "pickles); give it on the command line: blursim meta-train EXP --dask-scheduler ADDRESS",
            )
        return data


class ExecutionSpec(Strict):
    """Where and how to compute. ``backend`` and ``dtype`` change results; the
    memory budget, checkpoint interval and Dask settings never do. ``backend: "jax"`` evaluates
    populations on the JAX engine (the optional extra; :mod:`blursim.sim.jax_engine`), which
    also reaches GPUs through JAX."""

    backend: Literal["numpy", "cupy", "jax"] = Field("numpy", description="array library of the simulation "
                                                     "(cupy and jax reach GPUs); changes results")
    dtype: Literal["float32", "float64"] = Field("float32", description="floating-point type of the simulation; "
                                                 "changes results")
    memory_budget_mb: float = Field(default=1024.0, gt=0.0, le=L.MAX_MEMORY_BUDGET_MB,
                                    description="memory one batch of species may use; a larger population "
                                    "is evaluated in chunks (results unchanged)")
    checkpoint_every: int = Field(default=1, ge=1, le=L.MAX_GENERATIONS,
                                  description="generations between checkpoints (results unchanged)")
    dask: DaskSpec | None = Field(None, description="evaluate on a local Dask cluster (results unchanged)")


class ExperimentSpec(Strict):
    """A meta-learning experiment (paper Sec. 3.3, 4.1, 4.4)."""

    format: Literal["blursim.experiment/1"] = Field(FORMAT_EXPERIMENT, description="document type and version")
    name: RunName = Field("", description="the experiment's name; names the default output directory runs/NAME")
    description: Text = Field("", description="free text for the reader")
    network: Path_ | NetworkSpec = Field(description="the network spec: a path relative to the experiment "
                                         "file, or an inline network object")
    training_tasks: list[TaskSpec] = Field(min_length=1, max_length=1000,
                                           description="the tasks whose mean result is the fitness")
    validation_tasks: list[TaskSpec] = Field(default_factory=list, max_length=1000,
                                             description="held-out tasks on which best and mean genomes are validated")
    inner: InnerLoop = Field(description="one fitness evaluation: unroll length T, batches, replicas")
    curriculum: Curriculum | None = Field(None, description="a growing unroll length (App. C.4); none: T fixed")
    genome: GenomeSearch = Field(description="which genome entries are meta-learned, from where, within which bounds")
    strategy: StrategySpec = Field(description="the meta-optimizer: an evolution strategy or gradient "
                                   "descent through the unroll (Sec. 3.3)")
    fitness: FitnessSpec = Field(default_factory=FitnessSpec, description="what is maximised")
    validation: ValidationSpec = Field(default_factory=ValidationSpec, description="when and how genomes are validated")
    generations: int = Field(ge=1, le=L.MAX_GENERATIONS, description="generations (evolution strategies) or "
                             "steps (gradient) of meta-training")
    seed: Seed = Field(0, description="root seed: every random stream of the run derives from it "
                       "(blursim.meta.seeds)")
    output: Path_ | None = Field(None, description="output directory, relative and inside the current "
                                 "directory (default runs/NAME; --out overrides it)")
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec, description="where and how to compute")

    @field_validator("network")
    @classmethod
    def _path_not_empty(cls, v):
        if isinstance(v, str) and not v.strip():
            raise ValueError("network must be a path to a network spec or an inline network object")
        return v

    @field_validator("output")
    @classmethod
    def _output_stays_here(cls, v):
        if v is not None and not is_local_path(v):
            raise ValueError(
                "output must be a relative path inside the current directory (not absolute, no "
                "'..'); to write elsewhere, give --out DIR on the command line"
            )
        return v


SCHEMAS.register("experiment", ExperimentSpec, doc="A meta-learning experiment: tasks, genome search, strategy.")
FORMATS[FORMAT_EXPERIMENT] = "experiment"


def load_experiment(src: str | Path | dict | ExperimentSpec) -> ExperimentSpec:
    """An :class:`ExperimentSpec` from a path, a dict or an existing spec (types checked)."""
    return load_model(ExperimentSpec, src)


# ------------------------------------------------------------------------ setup
@dataclass
class Task:
    """A task of an experiment, resolved: its dataset and network index."""

    label: str
    name: str
    options: dict[str, Any]
    network: int  # index into Setup.networks
    dataset: Any  # blursim.data.Dataset
    path: str  # JSON path in the experiment


@dataclass
class Setup:
    """An experiment with everything resolved and checked; nothing simulated yet.

    ``networks[0]`` is the experiment's network; task overrides follow.
    ``x0`` (and ``lower``/``upper``, ``None`` when unbounded) are flat vectors
    in ``layout`` order. ``spec_hash`` identifies everything that determines
    the run's results (see :func:`hashed_document`).
    """

    experiment: ExperimentSpec
    source: str | None
    base_dir: Path
    networks: list[NetworkSpec]
    programs: list[Any]  # blursim.graph.Program
    train_tasks: list[Task]
    val_tasks: list[Task]
    layout: Any  # GenomeLayout
    base_genome: GenomeSpec
    x0: np.ndarray
    lower: np.ndarray | None
    upper: np.ndarray | None
    strategy: Any  # blursim.meta.strategies.Strategy
    hashed: dict[str, Any]
    spec_hash: str
    memory: Any = None  # blursim.meta.evaluate.MemoryPlan under the document's budget

    def unroll(self, generation: int) -> int:
        """Unroll length ``T`` of 0-based generation ``generation`` (curriculum applied; never
        more than :data:`~blursim.limits.MAX_STEPS`)."""
        inner, cur = self.experiment.inner, self.experiment.curriculum
        if cur is None:
            return inner.steps
        t = inner.steps + cur.increment * (generation // cur.every)
        return min(t, cur.max_steps if cur.max_steps is not None else L.MAX_STEPS)

    def train_protocol(self, generation: int) -> Any:
        """The fitness :class:`~blursim.meta.evaluate.Protocol` of 0-based ``generation``."""
        from blursim.meta.evaluate import Protocol

        inner = self.experiment.inner
        return Protocol(self.unroll(generation), inner.batch_size, inner.query_batches,
                        inner.query_batch_size, inner.replicas, "train")

    def validation_protocol(self, generation: int) -> Any:
        """The validation :class:`~blursim.meta.evaluate.Protocol` after 0-based ``generation``."""
        from blursim.meta.evaluate import Protocol

        v, inner = self.experiment.validation, self.experiment.inner
        return Protocol(v.steps or self.unroll(generation), inner.batch_size, v.query_batches,
                        v.query_batch_size, v.replicas or inner.replicas, "test")

    def plan_memory(self, budget_mb: float | None = None, *, local: bool = True,
                    path: Any = "$.execution.memory_budget_mb") -> Any:
        """The :class:`~blursim.meta.evaluate.MemoryPlan` under ``budget_mb`` (default: the
        document's); refuses an experiment of which one genome does not fit."""
        from blursim.meta.evaluate import plan_memory

        ex = self.experiment.execution
        budget = (ex.memory_budget_mb if budget_mb is None else budget_mb) * 2**20
        protocols = {"train": self.train_protocol(0)}
        if self.val_tasks:
            protocols["validation"] = self.validation_protocol(0)
        datasets = {"train": [t.dataset for t in self.train_tasks],
                    "validation": [t.dataset for t in self.val_tasks]}
        tasks = {"train": self.train_tasks, "validation": self.val_tasks}
        return plan_memory(self.programs, datasets, tasks, protocols,
                           itemsize=np.dtype(ex.dtype).itemsize, budget=budget,
                           popsize=self.strategy.popsize, local=local, path=path)

    @property
    def name(self) -> str:
        """The experiment's ``name``, else its file's stem when that is a plain name, else
        ``"experiment"`` (it names the default output directory ``runs/NAME``)."""
        import re

        if self.experiment.name:
            return self.experiment.name
        stem = Path(self.source).stem if self.source else ""
        ok = re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}", stem)
        return stem if ok else "experiment"


def _fail(exp: ExperimentSpec, message: str, path: Any, **kw: Any) -> SpecError:
    """A SpecError at ``path`` of the experiment, with its file and line."""
    return relocate(SpecError(message, path=path, **kw), exp)


def _reroot(err: SpecError, exp: ExperimentSpec, prefix: str) -> SpecError:
    """Re-root an error raised by a sub-document (inline network, option dict) at ``prefix``."""
    path = err.path or ""
    if path.startswith("$"):
        path = path[1:]
    elif path and not path.startswith("["):
        path = "." + path
    keys = parse_path(prefix + path)
    source, text = source_of(exp)
    moved = SpecError(err.message, path=keys, value=err.value, choices=err.choices, hint=err.hint)
    return locate(moved, source, text, keys) if source else moved


def _load_network(exp: ExperimentSpec, value: str | NetworkSpec, base: Path, path: str) -> NetworkSpec:
    if isinstance(value, NetworkSpec):
        return value
    return _load_referenced(exp, NetworkSpec, _referenced(exp, value, base, path, "network spec"), path)


def _load_referenced(exp: ExperimentSpec, model: Any, file: Path, path: str) -> Any:
    """A document named by the experiment; a file that cannot be read is an error at ``path``
    of the experiment (errors inside the document name the document)."""
    try:
        return load_document(model, file, where=path)
    except SpecError as e:
        if e.source is None:
            raise relocate(e, exp) from None
        parent = source_of(exp)[0]
        if parent is None:
            raise
        # name the document being read too, not only the file it points to
        raise type(e)(e.message, path=e.path or None, value=e.value, choices=e.choices, hint=e.hint,
                      source=f"{parent} ({path}) -> {e.source}") from None


def _referenced(exp: ExperimentSpec, value: str, base: Path, path: str, what: str) -> Path:
    """The file a document field names (relative to the experiment file), which must exist."""
    p = Path(value)
    if not p.is_absolute():
        p = base / p
    try:
        found = p.exists() or p.is_symlink()
    except OSError:  # e.g. a name too long for the file system
        found = False
    if not found:
        raise _fail(exp, f"{what} file not found: {p}", path, value=value,
                    hint=f"{what[0].upper() + what[1:]} paths are relative to the experiment file.")
    return p


def _compile(exp: ExperimentSpec, spec: NetworkSpec, path: str):
    from blursim.graph import compile_network

    try:
        return compile_network(spec)
    except SpecError as e:
        if source_of(spec)[0] is None and not e.source:  # inline: point into the experiment
            raise _reroot(e, exp, path) from None
        raise


def _resolve_tasks(exp, entries, what, base, networks, programs, net_index):
    from blursim.data import load_dataset

    out: list[Task] = []
    seen: dict[str, int] = {}
    for i, t in enumerate(entries):
        path = f"$.{what}[{i}]"
        if t.key in seen:
            raise _fail(
                exp, f"two {what.replace('_', ' ')} are both labelled {t.key!r}", f"{path}.label"
                if t.label else f"{path}.name",
                hint=f"Give each a distinct \"label\" (the first is {what}[{seen[t.key]}]).",
            )
        seen[t.key] = i
        ni = 0
        if t.network is not None:
            spec = _load_network(exp, t.network, base, f"{path}.network")
            key = json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True)
            if key not in net_index:
                net_index[key] = len(networks)
                networks.append(spec)
                programs.append(_compile(exp, spec, f"{path}.network"))
            ni = net_index[key]
        opts = t.options
        files = {k: getattr(opts, k) for k in getattr(type(opts), "PATH_OPTIONS", ())}
        here = {k: str(base / v) for k, v in files.items() if v is not None and not Path(v).is_absolute()}
        if here:  # file options are relative to the experiment file, like its network paths
            opts = opts.model_copy(update=here)
        try:
            ds = load_dataset(t.name, opts, path=path)
        except SpecError as e:
            raise relocate(e, exp) from None
        try:
            _check_fit(networks[ni], ds, t.key)
        except SpecError as e:
            where = f" (see {e.source})" if e.source else ""
            raise _fail(
                exp, f"task {t.key!r} does not fit the network: {e.message}{where}", f"{path}.name",
                value=t.name, hint=e.hint,
            ) from None
        out.append(Task(t.key, t.name, dict(ds.meta.get("options", t.options.model_dump())), ni, ds, path))
    return out


def _check_fit(spec: NetworkSpec, ds: Any, task: str) -> None:
    """The task fits the network as the simulator takes it: inputs add up to the features and,
    for class labels, every output has a neuron for each class -- output heads may be larger than
    the task's classes and differ in size (the extra neurons are never the target, as
    :func:`blursim.sim.targets.check_targets` allows), or one neuron for a two-class task. Target
    vectors need one neuron per entry (:func:`blursim.graph.check_task_fit`)."""
    from blursim.graph import check_task_fit

    try:
        check_task_fit(spec, ds.n_features, ds.n_outputs, task, targets=ds.targets)
    except SpecError:
        n = ds.n_outputs
        inputs = sum(p.size for p in spec.populations if p.role == "input")
        heads = [p.size for p in spec.populations if p.role == "output"]
        covered = all(h >= n or (h == 1 and n == 2) for h in heads)
        if not (ds.targets == "labels" and inputs == ds.n_features and covered):
            raise
        # heads larger than the classes: accepted


def _shape(value: Any) -> tuple[int, ...] | None:
    """Shape of a number, a list of numbers or a list of equally long lists; ``None`` if ragged."""
    if not isinstance(value, list):
        return ()
    if all(not isinstance(v, list) for v in value):
        return (len(value),)
    if not all(isinstance(v, list) and all(not isinstance(x, list) for x in v) for v in value):
        return None
    lengths = {len(v) for v in value}
    return (len(value), lengths.pop()) if len(lengths) == 1 else None


def _initial_genome(exp: ExperimentSpec, base: Path, k: int, groups: list[str]) -> GenomeSpec:
    from blursim.genome import PRESETS, stack_genomes

    init = exp.genome.init
    if isinstance(init, InitRandom):
        from blursim.genome import random_genome

        try:
            g = random_genome(k=k, seed=init.seed, groups=groups, scale=init.scale)
        except ValidationError as e:  # pragma: no cover - scale is bounded so values stay finite
            raise _fail(exp, f"the random genome is invalid: {spec_error(e, GenomeSpec, None).message}",
                        "$.genome.init.scale") from None
    elif isinstance(init, InitPreset):  # name and options were validated with the document
        try:
            g = PRESETS.get(init.name)(k=k, groups=groups, **init.options.model_dump())
        except SpecError as e:
            raise _fail(exp, f"genome preset {init.name!r}: {e.message}", "$.genome.init",
                        value=e.value, hint=e.hint) from None
        except ValidationError as e:  # the preset built a genome that is not one
            err = spec_error(e, GenomeSpec, None)
            raise _fail(exp, f"genome preset {init.name!r} with these options gives an invalid genome: "
                        f"{err.message} at {err.path}", "$.genome.init.options") from None
    else:
        g = _load_referenced(exp, GenomeSpec, _referenced(exp, init.path, base, "$.genome.init.path", "genome"),
                             "$.genome.init.path")
    try:
        stack_genomes(g, k=k, groups=groups, source="$.genome.init")
    except SpecError as e:
        raise relocate(SpecError(e.message, path=e.path, value=e.value, choices=e.choices, hint=e.hint), exp) from None
    if exp.genome.set:
        data = g.model_dump(mode="json")
        for name, value in exp.genome.set.items():
            path = f"$.genome.set.{name}"
            if name not in ALL_FIELDS:
                raise _fail(exp, f"unknown genome field {name!r}", path, choices=ALL_FIELDS)
            shape = field_shape(name, k)
            if _shape(value) != shape:
                raise _fail(exp, f"genome field {name!r} has shape {list(shape)} for k={k}", path,
                            value=value)
            for gname in data["groups"]:
                data["groups"][gname][name] = value
        try:
            g = GenomeSpec.model_validate(data)
        except ValidationError as e:
            err = spec_error(e, GenomeSpec, data)
            field = next((x for x in parse_path(err.path)[3:4] if isinstance(x, str)), None)
            where = f"$.genome.set.{field}" if field in exp.genome.set else "$.genome.set"
            raise _fail(exp, f"the edited genome is invalid: {err.message}", where) from None
    return g


def _bounds(exp, layout, x0):
    gs = exp.genome
    if not gs.bounds:
        return None, None
    lower = np.full(layout.size, -np.inf)
    upper = np.full(layout.size, np.inf)
    labels = layout.labels()
    for name, (lo, hi) in gs.bounds.items():
        path = f"$.genome.bounds.{name}"
        if name not in gs.fields:
            raise _fail(exp, f"bounds given for {name!r}, which is not an evolved field", path,
                        choices=gs.fields, hint="Add it to genome.fields or remove its bounds.")
        lo_v = -np.inf if lo is None else float(lo)
        hi_v = np.inf if hi is None else float(hi)
        if not lo_v < hi_v or math.isnan(lo_v) or math.isnan(hi_v):
            raise _fail(exp, f"bounds of {name!r} must be [low, high] with low < high", path,
                        value=[lo, hi])
        for j, lab in enumerate(labels):
            if lab.split(".", 1)[1].split("[", 1)[0] == name:
                lower[j], upper[j] = lo_v, hi_v
    outside = (x0 < lower) | (x0 > upper)
    if outside.any():
        j = int(np.argmax(outside))
        name = labels[j].split(".", 1)[1].split("[", 1)[0]
        raise _fail(
            exp, f"the initial value of {labels[j]} ({x0[j]:.6g}) lies outside its bounds "
            f"[{lower[j]:g}, {upper[j]:g}]", f"$.genome.bounds.{name}",
            hint="Widen the bounds, or change the initial genome (genome.init / genome.set).",
        )
    return lower, upper


def hashed_document(
    exp: ExperimentSpec, networks: list[NetworkSpec], tasks: dict[str, list[Task]], base_genome: GenomeSpec
) -> dict[str, Any]:
    """The part of an experiment that determines its results, fully resolved.

    The network and genome files are inlined (so editing a referenced file
    changes the hash); cosmetic and execution-only fields (``name``,
    ``description``, ``generations``, ``output``, memory budget, checkpoint
    interval, Dask) are left out, so a run can be resumed with more
    generations or on a cluster.
    """
    doc = exp.model_dump(mode="json", by_alias=True)
    for key in ("name", "description", "generations", "output"):
        doc.pop(key, None)
    doc["execution"] = {"backend": exp.execution.backend, "dtype": exp.execution.dtype}
    dump = lambda n: n.model_dump(mode="json", by_alias=True)  # noqa: E731
    doc["network"] = dump(networks[0])
    for what, resolved in tasks.items():
        for t, task in zip(doc[what], resolved, strict=True):
            t["network"] = None if task.network == 0 else dump(networks[task.network])
            # every option, defaults included; files enter by their content, not their
            # location (so a moved checkout still resumes its runs)
            t["options"] = {**task.options, **task.dataset.meta.get("fingerprint", {})}
    doc["strategy"]["options"] = exp.strategy.given_options()
    doc["genome"]["init"] = {"genome": base_genome.model_dump(mode="json", by_alias=True)}
    doc["genome"]["set"] = {}
    return doc


def _hash(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def prepare_experiment(src: str | Path | dict | ExperimentSpec, *, memory_budget_mb: float | None = None) -> Setup:
    """Load (if needed) and check an experiment; build its :class:`Setup`. ``memory_budget_mb``
    (``meta-train --memory-budget``) replaces the document's budget in the memory check.

    Every check that can fail on user input happens here, before any
    simulation: network compiles, tasks exist and fit their network, genome
    fields and groups exist, bounds contain the initial values, the strategy
    and its options are valid.
    """
    from blursim.genome import GenomeLayout
    from blursim.meta.seeds import strategy_seed
    from blursim.meta.strategies import STRATEGIES

    exp = load_experiment(src)
    source = source_of(exp)[0]
    base = Path(source).resolve().parent if source else Path.cwd()
    if exp.execution.backend == "jax":
        from blursim.errors import BackendError
        from blursim.sim.jax_engine import INSTALL, require_jax

        try:
            require_jax()
        except BackendError:
            raise _fail(exp, "execution.backend 'jax' needs the optional JAX extra, which is not installed",
                        "$.execution.backend", value="jax",
                        hint=f"Install it ({INSTALL}) or choose backend 'numpy'.") from None

    net0 = _load_network(exp, exp.network, base, "$.network")
    networks = [net0]
    programs = [_compile(exp, net0, "$.network")]
    net_index = {json.dumps(net0.model_dump(mode="json", by_alias=True), sort_keys=True): 0}
    k = programs[0].k
    train = _resolve_tasks(exp, exp.training_tasks, "training_tasks", base, networks, programs, net_index)
    val = _resolve_tasks(exp, exp.validation_tasks, "validation_tasks", base, networks, programs, net_index)
    want = "vectors" if exp.fitness.metric == "mse" else "labels"
    for t in train + val:
        if t.dataset.targets != want:
            has = "real-valued target vectors" if t.dataset.targets == "vectors" else "class labels"
            raise _fail(
                exp, f"task {t.label!r} has {has}, which fitness metric "
                f"{exp.fitness.metric!r} cannot measure", "$.fitness.metric",
                value=exp.fitness.metric,
                hint='Use "mse" for tasks with target vectors and "accuracy" or "cross_entropy" '
                "for tasks with class labels (all tasks of an experiment are of one kind).",
            )
    for ni, prog in enumerate(programs[1:], start=1):
        if prog.k != k:
            users = [t.path for t in train + val if t.network == ni]
            raise _fail(exp, f"this task's network has k={prog.k} states but the experiment's network "
                        f"has k={k}; one genome cannot drive both", f"{users[0]}.network", value=prog.k)

    # genome: fields, groups, initial values, bounds
    gs = exp.genome
    for i, f in enumerate(gs.fields):
        if f not in ALL_FIELDS:
            raise _fail(exp, f"unknown genome field {f!r}", f"$.genome.fields[{i}]", choices=ALL_FIELDS)
        if gs.fields.index(f) != i:
            raise _fail(exp, f"genome field {f!r} is listed twice", f"$.genome.fields[{i}]")
    all_groups = sorted({g for p in programs for g in p.groups})
    groups = list(gs.groups) if gs.groups is not None else list(programs[0].groups)
    for i, g in enumerate(groups):
        if g not in all_groups:
            raise _fail(exp, f"genome group {g!r} is not used by the network", f"$.genome.groups[{i}]",
                        choices=all_groups)
    base_genome = _initial_genome(exp, base, k, all_groups)
    layout = GenomeLayout(k, tuple(groups), tuple(gs.fields))
    x0 = layout.to_vector(base_genome)
    lower, upper = _bounds(exp, layout, x0)

    # the strategy (its name and options were validated with the document)
    cls = STRATEGIES.get(exp.strategy.name)
    bounds = None if lower is None else (lower, upper)
    try:
        strategy = cls.from_experiment(exp, dim=layout.size, x0=x0, seed=strategy_seed(exp.seed), bounds=bounds)
    except SpecError as e:
        if e.path and e.path.startswith("$"):
            raise relocate(e, exp) from None
        raise _reroot(e, exp, "$.strategy") from None

    hashed = hashed_document(
        exp, networks, {"training_tasks": train, "validation_tasks": val}, base_genome
    )
    setup = Setup(
        experiment=exp, source=source, base_dir=base, networks=networks, programs=programs,
        train_tasks=train, val_tasks=val, layout=layout, base_genome=base_genome, x0=x0,
        lower=lower, upper=upper, strategy=strategy, hashed=hashed, spec_hash=_hash(hashed),
    )
    try:  # one genome must fit the budget (the machine is checked when the run starts)
        setup.memory = setup.plan_memory(memory_budget_mb, local=False,
                                         path="--memory-budget" if memory_budget_mb is not None
                                         else "$.execution.memory_budget_mb")
    except SpecError as e:
        if memory_budget_mb is not None:
            raise e from None
        raise relocate(e, exp) from None
    return setup


def differing_sections(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Top-level keys (one level deeper for dicts) in which two hashed documents differ."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if va == vb:
            continue
        if isinstance(va, dict) and isinstance(vb, dict):
            sub = [f"{key}.{s}" for s in sorted(set(va) | set(vb)) if va.get(s) != vb.get(s)]
            out.extend(sub or [key])
        else:
            out.append(key)
    return out
