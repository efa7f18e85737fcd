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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from blursim.errors import BlursimError
from blursim.meta.evaluate import EvalJob, Protocol, evaluate_chunk


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

    Give an existing ``client``, a ``scheduler`` address, or ``local_workers``
    (a :class:`distributed.LocalCluster` of that many single-threaded worker
    processes, closed by :meth:`close`).
    """

    def __init__(self, *, client: Any = None, scheduler: str | None = None,
                 local_workers: int | None = None) -> None:
        distributed = import_distributed()
        self._own: list[Any] = []
        if client is None:
            if scheduler is not None:
                client = distributed.Client(scheduler)
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

    def _job(self, job: EvalJob) -> Any:
        fut = self._scattered.get(job.key)
        if fut is None:
            fut = self.client.scatter(job, broadcast=True, hash=False)
            self._scattered = {job.key: fut}
        return fut

    def map(self, job: EvalJob, chunks: list[np.ndarray], which: str, seeds: Sequence[int],
            proto: Protocol) -> list[dict[str, np.ndarray]]:
        j = self._job(job)
        futures = [
            self.client.submit(evaluate_chunk, j, c, which, list(seeds), proto, pure=False)
            for c in chunks
        ]
        return self.client.gather(futures)

    def close(self) -> None:
        self._scattered = {}
        for obj in self._own:
            try:
                obj.close()
            except Exception:  # noqa: BLE001 - best effort shutdown
                pass
        self._own = []


def make_executor(dask_spec: Any = None, *, scheduler: str | None = None,
                  local_workers: int | None = None) -> Any:
    """The executor an experiment asks for: ``None`` (local) or a :class:`DaskExecutor`.

    Command-line values override ``execution.dask`` of the experiment.
    """
    if scheduler is None and local_workers is None and dask_spec is not None:
        scheduler, local_workers = dask_spec.scheduler, dask_spec.local_workers
    if scheduler is None and local_workers is None:
        return None
    return DaskExecutor(scheduler=scheduler, local_workers=local_workers)
