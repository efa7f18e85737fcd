"""Population chunks on a Dask distributed cluster (optional extra).

``pip install 'blursim[distributed]'`` installs Dask; nothing here is
imported unless an experiment (``execution.dask``) or the command line
(``--dask-scheduler`` / ``--dask-workers``) asks for it.

The client sends each chunk of genome vectors to the cluster as a call of
:func:`blursim.meta.evaluate.evaluate_chunk`. The :class:`EvalJob` it
carries is scattered once to every worker; a worker builds its engine
(compiled networks, simulators, datasets) the first time it sees the job and
reuses it for every later chunk. Chunks are gathered in species order, and
because a species' result never depends on the others in its batch, the
fitness is bit-identical to a local evaluation on the same software stack.
Datasets are loaded *on the workers*: local files (e.g. MNIST IDX) must be
reachable there under the same path.

Gradient meta-training (issue 25 item 4) spreads its ``N`` synchronised runs x ``meta_batch``
draws the same way: :class:`DaskObjective` stands in for the local
:class:`~blursim.meta.objective.MetaObjective`; its :meth:`~DaskObjective.value_and_grad_many`
cuts the (genome, task seeds) pairs into one contiguous chunk per worker, and each worker
computes its pairs with a ``MetaObjective`` on one JAX device, built once per experiment from
the :class:`GradientJob` scattered to it (the prepared experiment, datasets included, pickled
once). Every pair is the same computation as in a local one-device run, so the meta-losses and
gradients are bit-identical to it on the same software stack (``tests/test_distributed.py``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from blursim.errors import BlursimError, shorten
from blursim.limits import MAX_LOCAL_WORKERS
from blursim.meta.evaluate import EvalJob, Protocol, evaluate_chunk

#: Seconds to wait for a Dask scheduler to answer before giving up (``--dask-timeout``).
CONNECT_TIMEOUT = 10.0
_ADDRESS = re.compile(r"(?:(?:tcp|tls|ucx|ws|wss|inproc)://)?[A-Za-z0-9_.\-\[\]:%]{1,255}:[0-9]{1,5}")


def import_distributed():
    """``dask.distributed``, or a clear error naming the extra to install."""
    try:
        import distributed
    except ImportError as e:
        raise BlursimError(
            f"Dask distributed is not installed ({e}); install the optional extra with "
            "pip install 'blursim[distributed]', or remove execution.dask / --dask-* to "
            "evaluate in this process."
        ) from None
    return distributed


class DaskExecutor:
    """Evaluates population chunks on a Dask cluster.

    Give an existing ``client``, a ``scheduler`` address (connected within
    ``timeout`` seconds), or ``local_workers`` (a :class:`distributed.LocalCluster`
    of that many single-threaded worker processes, closed by :meth:`close`).
    """

    def __init__(self, *, client: Any = None, scheduler: str | None = None,
                 local_workers: int | None = None, timeout: float = CONNECT_TIMEOUT) -> None:
        distributed = import_distributed()
        self._own: list[Any] = []
        if client is None:
            if scheduler is not None:
                check_scheduler_address(scheduler)
                try:
                    client = distributed.Client(scheduler, timeout=f"{float(timeout)}s")
                except (OSError, TimeoutError, ValueError) as e:
                    raise BlursimError(
                        f"cannot connect to the Dask scheduler {shorten(scheduler)!r} within {timeout:g} s "
                        f"({shorten(e)}); check the address and that the scheduler runs, or raise "
                        "--dask-timeout."
                    ) from None
            else:
                cluster = distributed.LocalCluster(
                    n_workers=int(local_workers or 1), threads_per_worker=1, processes=True,
                    dashboard_address=None,
                )
                self._own.append(cluster)
                client = distributed.Client(cluster)
            self._own.insert(0, client)
        self.client = client
        self._scattered: dict[str, Any] = {}

    @property
    def n_workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def _job(self, job: "EvalJob | GradientJob") -> Any:
        """The job scattered to every worker once. The last two are kept: a gradient run alternates
        its :class:`GradientJob` with the validation's :class:`EvalJob`, each scattered once."""
        fut = self._scattered.get(job.key)
        if fut is None:
            fut = self._scattered[job.key] = self.client.scatter(job, broadcast=True, hash=False)
            while len(self._scattered) > 2:
                self._scattered.pop(next(iter(self._scattered)))
        return fut

    def map(self, job: EvalJob, chunks: list[np.ndarray], which: str, seeds: Sequence[int],
            proto: Protocol) -> list[dict[str, np.ndarray]]:
        j = self._job(job)
        futures = [
            self.client.submit(evaluate_chunk, j, c, which, list(seeds), proto, pure=False)
            for c in chunks
        ]
        return self.client.gather(futures)

    def map_gradients(self, job: "GradientJob", xs: list[np.ndarray], seeds: list[list[int]],
                      proto: Protocol) -> list[tuple[float, np.ndarray, dict]]:
        """``(loss, gradient, metrics)`` of every pair ``(xs[p], seeds[p])``, in order: one
        contiguous chunk of pairs per worker (:func:`gradient_chunk`)."""
        fut = self._job(job)
        n = len(xs)
        parts = min(self.n_workers, n)
        bounds = [round(i * n / parts) for i in range(parts + 1)]
        futures = [
            self.client.submit(gradient_chunk, fut, xs[a:b], seeds[a:b], proto, pure=False)
            for a, b in zip(bounds[:-1], bounds[1:]) if b > a
        ]
        return [r for chunk in self.client.gather(futures) for r in chunk]

    def close(self) -> None:
        self._scattered = {}
        for obj in self._own:
            try:
                obj.close()
            except Exception:  # noqa: BLE001 - best effort shutdown
                pass
        self._own = []


def check_scheduler_address(address: str) -> str:
    """``address`` if it looks like a Dask scheduler address (``tcp://HOST:PORT``, ``tls://...``,
    ``HOST:PORT``), else a clear error."""
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        raise BlursimError(
            f"--dask-scheduler must be an address such as tcp://10.0.0.5:8786 (got {shorten(repr(address))})"
        )
    return address


def make_executor(dask_spec: Any = None, *, scheduler: str | None = None,
                  local_workers: int | None = None, timeout: float = CONNECT_TIMEOUT) -> Any:
    """The executor a run asks for: ``None`` (local) or a :class:`DaskExecutor`.

    A scheduler address comes from the command line only (``scheduler``); a document's
    ``execution.dask`` may ask for ``local_workers`` (at most
    :data:`~blursim.limits.MAX_LOCAL_WORKERS`), which the command line overrides.
    """
    if scheduler is None and local_workers is None and dask_spec is not None:
        local_workers = dask_spec.local_workers
    if scheduler is None and local_workers is None:
        return None
    if local_workers is not None and not 1 <= int(local_workers) <= MAX_LOCAL_WORKERS:
        raise BlursimError(f"--dask-workers must be in 1..{MAX_LOCAL_WORKERS} (got {local_workers})")
    if not math.isfinite(timeout) or not 0 < timeout <= 3600:
        raise BlursimError(f"--dask-timeout must be in (0, 3600] seconds (got {timeout})")
    return DaskExecutor(scheduler=scheduler, local_workers=local_workers, timeout=timeout)


# ------------------------------------------------------------ gradient runs
@dataclasses.dataclass(frozen=True)
class GradientJob:
    """What a worker needs to compute meta-gradients: the prepared experiment (without its
    strategy object, which the workers do not use and which does not pickle), the dtype and the
    product route the client asked for (``"xla"`` or ``"blas"``: :mod:`blursim.sim.jax_blas`; each
    worker resolves it for its own device). ``key`` names it: a worker builds one
    :class:`~blursim.meta.objective.MetaObjective` per key."""

    setup: Any
    dtype: str
    key: str
    products: str = "xla"
    engine: str = "auto"


def gradient_job(setup: Any, dtype: str, products: str | None = None, engine: str | None = None) -> GradientJob:
    """The :class:`GradientJob` of a :class:`~blursim.meta.experiment.Setup` in ``dtype``;
    ``products`` defaults to this (the client's) process's ``$BLURSIM_JAX_PRODUCTS``, so that the
    workers take the route the client was told to, whatever their own environment says."""
    import os

    from blursim.sim.jax_blas import PRODUCTS

    from blursim.meta.objective import ENGINES

    products = products or os.environ.get("BLURSIM_JAX_PRODUCTS") or "xla"
    if products not in PRODUCTS:
        raise BlursimError(f"BLURSIM_JAX_PRODUCTS must be one of {', '.join(PRODUCTS)} (got {shorten(repr(products))})")
    engine = engine or os.environ.get("BLURSIM_META_ENGINE") or "auto"
    if engine not in ENGINES:
        raise BlursimError(f"BLURSIM_META_ENGINE must be one of {', '.join(ENGINES)} (got {shorten(repr(engine))})")
    # resolved here, for one device per worker, so that every worker takes the same engine
    from blursim.meta.objective import resolve_engine

    engine = resolve_engine(engine, [setup.programs[t.network] for t in setup.train_tasks], devices=1,
                            products=products, batch=setup.experiment.inner.batch_size,
                            replicas=setup.experiment.inner.replicas)[0]
    return GradientJob(dataclasses.replace(setup, strategy=None, memory=None), dtype,
                       f"{setup.spec_hash}:{dtype}:{products}:{engine}", products, engine)


_WORKER_OBJECTIVES: OrderedDict[str, Any] = OrderedDict()


def gradient_chunk(job: GradientJob, xs: Sequence[np.ndarray], seeds: Sequence[Sequence[int]],
                   proto: Protocol) -> list[tuple[float, np.ndarray, dict]]:
    """``value_and_grad`` of every pair, on one JAX device of this process (a Dask worker's, or
    this one's). The objective (and its compiled unroll) is built once per job key and kept."""
    from blursim.meta.objective import MetaObjective

    obj = _WORKER_OBJECTIVES.get(job.key)
    if obj is None:
        obj = _WORKER_OBJECTIVES[job.key] = MetaObjective(job.setup, "train", dtype=job.dtype, devices=1,
                                                          products=job.products, engine=job.engine)
        while len(_WORKER_OBJECTIVES) > 2:
            _WORKER_OBJECTIVES.popitem(last=False)
    return [obj.value_and_grad(x, s, proto) for x, s in zip(xs, seeds, strict=True)]


class DaskObjective:
    """The meta-objective of ``setup``'s training tasks, computed on the workers of ``executor``
    (a :class:`DaskExecutor`); what :class:`~blursim.meta.gradient_step.GradientStep` uses when a
    gradient run is given a Dask cluster (``--dask-workers`` / ``--dask-scheduler``)."""

    def __init__(self, executor: DaskExecutor, setup: Any, dtype: str = "float32") -> None:
        self.executor = executor
        self.job = gradient_job(setup, dtype)
        self.dim = setup.layout.size
        #: The engine every worker computes with (resolved on the client, :func:`gradient_job`).
        self.engine = self.job.engine

    def value_and_grad_many(self, xs: Sequence[np.ndarray], seeds: Sequence[Sequence[int]],
                            proto: Protocol) -> list[tuple[float, np.ndarray, dict]]:
        xs = [np.asarray(x, dtype=np.float64).reshape(self.dim) for x in xs]
        return self.executor.map_gradients(self.job, xs, [list(map(int, s)) for s in seeds], proto)

    def value_and_grad(self, x: np.ndarray, seeds: Sequence[int], proto: Protocol) -> tuple[float, np.ndarray, dict]:
        return self.value_and_grad_many([x], [seeds], proto)[0]
