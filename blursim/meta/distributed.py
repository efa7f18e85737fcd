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

import math
import re
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
