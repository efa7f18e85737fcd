"""Population evaluation: many genomes as one batched simulation (DESIGN §4).

A population ``X`` (``P`` genome vectors in a :class:`~blursim.genome.GenomeLayout`)
is evaluated on a list of tasks. For each task the population is the species
axis ``S`` of one :class:`~blursim.sim.Simulator` batch: synapses of replica
``r`` and every data batch depend only on the task seed (common to all
species, DESIGN §2), the network runs ``steps`` training steps, then
accuracy and cross-entropy are measured on query batches.

When the population does not fit the memory budget it is cut into chunks of
consecutive species, each evaluated exactly like the whole (a species' result
never depends on which other species share its batch), so chunked, unchunked
and distributed evaluations give identical numbers.

Work is described by plain data -- an :class:`EvalJob` (networks as JSON,
tasks by registry name and options, layout, base genome, backend, dtype) and
a :class:`Protocol` -- and executed by :func:`evaluate_chunk`, which builds
(once per process, cached by the job's key) an :class:`Engine`: compiled
programs, simulators and datasets. The same function runs in this process
or on a Dask worker (:mod:`blursim.meta.distributed`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

#: The metrics measured per task (DESIGN §4): accuracy and cross-entropy for class labels,
#: the mean squared error for real-valued target vectors.
METRICS = ("accuracy", "cross_entropy", "mse")


@dataclass(frozen=True)
class Protocol:
    """How one task evaluation runs: ``steps`` training steps of ``batch_size``
    from ``replicas`` fresh initialisations, then ``query_batches`` batches of
    ``query_batch_size`` from the ``split`` (``None`` batches: the whole split)."""

    steps: int
    batch_size: int
    query_batches: int | None
    query_batch_size: int | None
    replicas: int
    split: Literal["train", "test"]

    @property
    def query_size(self) -> int:
        return self.query_batch_size or self.batch_size


@dataclass(frozen=True)
class TaskRef:
    """A task as plain data: registry name, options (JSON), network index."""

    label: str
    name: str
    options: str
    network: int


@dataclass(frozen=True)
class EvalJob:
    """Everything needed to evaluate genome vectors, as plain picklable data.

    ``key`` is a digest of all fields: a process builds one :class:`Engine`
    per key and reuses it for every chunk it is sent.
    """

    networks: tuple[str, ...]
    train: tuple[TaskRef, ...]
    validation: tuple[TaskRef, ...]
    k: int
    groups: tuple[str, ...]
    fields: tuple[str, ...]
    base_genome: str
    backend: str
    dtype: str
    key: str = ""

    def tasks(self, which: str) -> tuple[TaskRef, ...]:
        return self.train if which == "train" else self.validation


def make_job(setup: Any) -> EvalJob:
    """The :class:`EvalJob` of a :class:`~blursim.meta.experiment.Setup`."""
    dump = lambda m: json.dumps(m.model_dump(mode="json", by_alias=True), sort_keys=True)  # noqa: E731
    refs = lambda ts: tuple(  # noqa: E731
        TaskRef(t.label, t.name, json.dumps(t.options, sort_keys=True), t.network) for t in ts
    )
    ex = setup.experiment.execution
    fields = dict(
        networks=tuple(dump(n) for n in setup.networks),
        train=refs(setup.train_tasks),
        validation=refs(setup.val_tasks),
        k=setup.layout.k,
        groups=tuple(setup.layout.groups),
        fields=tuple(setup.layout.fields),
        base_genome=dump(setup.base_genome),
        backend=ex.backend,
        dtype=ex.dtype,
    )
    job = EvalJob(**fields)
    key = hashlib.sha256(json.dumps(dataclasses.asdict(job), sort_keys=True).encode()).hexdigest()
    return dataclasses.replace(job, key=key)


# ---------------------------------------------------------------------- engine
class Engine:
    """Compiled programs, simulators, datasets and layout of an :class:`EvalJob`."""

    def __init__(self, job: EvalJob, *, programs: Sequence[Any] | None = None,
                 datasets: dict[str, Sequence[Any]] | None = None) -> None:
        from blursim.data import load_dataset
        from blursim.genome import GenomeLayout
        from blursim.graph import compile_network
        from blursim.sim import make_simulator
        from blursim.spec import GenomeSpec, load_network

        self.job = job
        if programs is None:
            programs = [compile_network(load_network(json.loads(n))) for n in job.networks]
        self.programs = list(programs)
        self.sims = [make_simulator(p, job.backend, job.dtype) for p in self.programs]
        self.datasets: dict[str, list[Any]] = {}
        for which in ("train", "validation"):
            if datasets is not None and which in datasets:
                self.datasets[which] = list(datasets[which])
            else:
                self.datasets[which] = [load_dataset(t.name, json.loads(t.options)) for t in job.tasks(which)]
        self.layout = GenomeLayout(job.k, job.groups, job.fields)
        self.base = GenomeSpec.model_validate_json(job.base_genome)

    def run_task(self, X: np.ndarray, which: str, i: int, seed: int, proto: Protocol) -> dict[str, np.ndarray]:
        """Task ``i`` of ``which`` for the genomes ``X``: ``(P, R)`` accuracy, cross-entropy, finite."""
        from blursim.sim import query_batches
        from blursim.sim.run import evaluate_batches, train_unroll

        ref = self.job.tasks(which)[i]
        sim = self.sims[ref.network]
        ds = self.datasets[which][i]
        genes = sim.prepare(self.layout.matrix_to_batch(X, self.base))
        st = sim.init_synapses(genes, replicas=proto.replicas, seed=seed)
        train_unroll(sim, st, genes, ds.x_train, ds.y_train, proto.steps, seed, proto.batch_size)
        xq, yq = (ds.x_train, ds.y_train) if proto.split == "train" else (ds.x_test, ds.y_test)
        qb = query_batches(xq, yq, seed, proto.query_batches, proto.query_size)
        m = evaluate_batches(sim, st, genes, qb)
        loss = m["mse"] if "mse" in m else m["cross_entropy"]
        finite = sim.is_finite(st) & np.isfinite(loss)
        nan = np.full(np.shape(loss), np.nan)  # the metrics this kind of task does not have
        return {key: np.asarray(m.get(key, nan), dtype=np.float64) for key in METRICS} | {
            "finite": np.asarray(finite, dtype=bool)}


_ENGINES: OrderedDict[str, Engine] = OrderedDict()
_MAX_ENGINES = 4


def get_engine(job: EvalJob) -> Engine:
    """This process's :class:`Engine` for ``job`` (built on first use, then cached)."""
    eng = _ENGINES.get(job.key)
    if eng is None:
        eng = Engine(job)
        install_engine(eng)
    else:
        _ENGINES.move_to_end(job.key)
    return eng


def install_engine(engine: Engine) -> None:
    """Cache ``engine`` for its job (lets the local process reuse what it already built)."""
    _ENGINES[engine.job.key] = engine
    _ENGINES.move_to_end(engine.job.key)
    while len(_ENGINES) > _MAX_ENGINES:
        _ENGINES.popitem(last=False)


def evaluate_chunk(job: EvalJob, X: np.ndarray, which: str, seeds: Sequence[int],
                   proto: Protocol) -> dict[str, np.ndarray]:
    """Evaluate the genome vectors ``X`` (``(P, dim)``) on every task of ``which``.

    Returns ``accuracy``, ``cross_entropy``, ``mse`` (float64; NaN where a
    task does not have the metric: ``mse`` for class labels, the others for
    target vectors) and ``finite`` (bool), each ``(P, n_tasks, R)``. Runs
    wherever it is called: in this process or on a Dask worker.
    """
    eng = get_engine(job)
    X = np.asarray(X, dtype=np.float64)
    per = [eng.run_task(X, which, i, int(s), proto) for i, s in enumerate(seeds)]
    return {key: np.stack([p[key] for p in per], axis=1) for key in (*METRICS, "finite")}


# ------------------------------------------------------------------ memory
def bytes_per_species(program: Any, proto: Protocol, itemsize: int) -> int:
    """Memory one species needs during a task evaluation: the network's
    :func:`~blursim.graph.memory.estimate` per genome (synapses, states, workspaces) for the
    larger of the training and query batches, times the replicas."""
    from blursim.graph.memory import estimate

    B = max(proto.batch_size, proto.query_size if proto.query_batches is not None else 0)
    return estimate(program, batch=B, itemsize=itemsize).per_genome * proto.replicas


def full_split_rows(datasets: Sequence[Any], proto: Protocol) -> int:
    """Rows of the largest query batch when ``query_batches`` is ``None`` (the whole split)."""
    if proto.query_batches is not None:
        return 0
    return max((ds.n_train if proto.split == "train" else ds.n_test) for ds in datasets)


def species_bytes(programs: Sequence[Any], datasets: Sequence[Any], tasks: Sequence[Any],
                  proto: Protocol, itemsize: int) -> int:
    """Memory of one species evaluated on the largest of ``tasks`` (whole-split queries included)."""
    if not tasks:
        return 0
    rows = full_split_rows(datasets, proto)
    if rows:
        proto = Protocol(proto.steps, proto.batch_size, 1, max(rows, proto.batch_size), proto.replicas,
                         proto.split)
    return max(bytes_per_species(programs[t.network], proto, itemsize) for t in tasks)


@dataclass(frozen=True)
class MemoryPlan:
    """How a population is evaluated within a memory budget (bytes)."""

    per_genome: int  # the largest species, over training and validation protocols
    chunk: int  # genomes per chunk
    chunk_bytes: int  # one chunk, with the networks' build and the shared synapse draws
    budget: int

    def describe(self) -> str:
        from blursim.limits import format_bytes

        return (f"memory {format_bytes(self.per_genome)} per genome, chunks of {self.chunk} genome(s) "
                f"({format_bytes(self.chunk_bytes)}) within the budget of {format_bytes(self.budget)}")


def plan_memory(programs: Sequence[Any], datasets: dict[str, Sequence[Any]], job_tasks: dict[str, Sequence[Any]],
                protocols: dict[str, Protocol], *, itemsize: int, budget: float, popsize: int,
                local: bool = True, path: Any = "$.execution.memory_budget_mb") -> MemoryPlan:
    """The :class:`MemoryPlan` of evaluating ``popsize`` genomes; refuses
    (:class:`~blursim.errors.MemoryLimitError`) when one genome does not fit ``budget`` bytes,
    or (``local``: evaluated in this process) a chunk does not fit this machine."""
    from blursim.graph.memory import estimate, require

    per = max(species_bytes(programs, datasets[w], job_tasks[w], p, itemsize) for w, p in protocols.items())
    budget = int(budget)
    require(per, what="one genome", budget=budget, budget_name="the memory budget", path=path,
            hint="Raise the budget, or use smaller batches, fewer replicas or a smaller network.")
    chunk = max(1, min(int(popsize), budget // max(per, 1)))
    fixed = sum(estimate(p, batch=1, itemsize=itemsize).build for p in programs)
    replicas = max(p.replicas for p in protocols.values())
    fixed += max(estimate(p, batch=1, itemsize=itemsize).init for p in programs) * replicas
    plan = MemoryPlan(per, chunk, fixed + per * chunk, budget)
    if local:
        require(plan.chunk_bytes, what=f"a chunk of {chunk} genome(s)", path=path,
                hint="Lower the memory budget so that chunks are smaller.")
    return plan


# ---------------------------------------------------------------- results
@dataclass
class EvalResult:
    """Per-genome, per-task, per-replica metrics: arrays ``(P, n_tasks, R)``.

    ``mse`` is NaN for tasks with class labels; ``accuracy`` and
    ``cross_entropy`` are NaN for tasks with target vectors.
    """

    accuracy: np.ndarray
    cross_entropy: np.ndarray
    finite: np.ndarray
    mse: np.ndarray | None = None

    @property
    def diverged(self) -> np.ndarray:
        """``(P,)``: some replica on some task produced NaN or Inf."""
        return ~self.finite.all(axis=(1, 2))

    def task_accuracy(self) -> np.ndarray:
        """``(P, n_tasks)`` mean accuracy over replicas (query batches already averaged)."""
        return self.accuracy.mean(axis=2)

    def task_cross_entropy(self) -> np.ndarray:
        return self.cross_entropy.mean(axis=2)

    def task_mse(self) -> np.ndarray:
        """``(P, n_tasks)`` mean squared error over replicas (tasks with target vectors)."""
        return self.mse.mean(axis=2)

    def task_score(self, metric: str) -> np.ndarray:
        """``(P, n_tasks)``: what the log reports per task under fitness ``metric`` --
        the mean squared error for ``mse``, the accuracy otherwise."""
        return self.task_mse() if metric == "mse" else self.task_accuracy()

    def fitness(self, metric: str) -> np.ndarray:
        """``(P,)`` fitness (maximised): mean accuracy, minus mean cross-entropy or minus
        mean squared error over tasks and replicas; ``NaN`` for a diverged genome (the
        strategies rank it last)."""
        if metric == "accuracy":
            f = self.accuracy.mean(axis=(1, 2))
        else:
            with np.errstate(all="ignore"):
                f = -(self.mse if metric == "mse" else self.cross_entropy).mean(axis=(1, 2))
        return np.where(self.diverged, np.nan, f)


# ---------------------------------------------------------------- executors
class LocalExecutor:
    """Evaluates chunks one after another in this process."""

    n_workers = 1

    def map(self, job: EvalJob, chunks: list[np.ndarray], which: str, seeds: Sequence[int],
            proto: Protocol) -> list[dict[str, np.ndarray]]:
        return [evaluate_chunk(job, c, which, seeds, proto) for c in chunks]

    def close(self) -> None:
        pass


class PopulationEvaluator:
    """Evaluates populations for one job, in chunks that fit ``memory_budget`` bytes,
    on an executor (:class:`LocalExecutor` or :class:`~blursim.meta.distributed.DaskExecutor`)."""

    def __init__(self, job: EvalJob, programs: Sequence[Any], datasets: dict[str, Sequence[Any]],
                 *, memory_budget: float, executor: Any = None) -> None:
        self.job = job
        self.programs = list(programs)
        self.datasets = datasets
        self.memory_budget = float(memory_budget)
        self.executor = executor if executor is not None else LocalExecutor()
        self.itemsize = np.dtype(job.dtype).itemsize

    def chunk_size(self, which: str, proto: Protocol) -> int:
        """Largest number of species per chunk within the memory budget (at least 1)."""
        need = species_bytes(self.programs, self.datasets[which], self.job.tasks(which), proto, self.itemsize)
        return max(1, int(self.memory_budget // max(need, 1)))

    def split(self, P: int, which: str, proto: Protocol) -> list[np.ndarray]:
        """Species index chunks: within the budget, and at least one per worker."""
        n = math.ceil(P / self.chunk_size(which, proto))
        n = min(P, max(n, getattr(self.executor, "n_workers", 1)))
        return [idx for idx in np.array_split(np.arange(P), n) if idx.size]

    def evaluate(self, X: np.ndarray, which: str, seeds: Sequence[int], proto: Protocol) -> EvalResult:
        X = np.asarray(X, dtype=np.float64)
        if not self.job.tasks(which):
            P = X.shape[0]
            empty = np.zeros((P, 0, proto.replicas))
            return EvalResult(empty, empty, empty.astype(bool), empty)
        parts = self.executor.map(self.job, [X[idx] for idx in self.split(X.shape[0], which, proto)],
                                  which, list(seeds), proto)
        cat = {key: np.concatenate([p[key] for p in parts], axis=0) for key in (*METRICS, "finite")}
        return EvalResult(**cat)
