"""Batches of independent simulations on Dask distributed: a local cluster of processes, or a running one.

Replications of `twin run`, the (policy, replication) pairs of `twin compare` and the settings of `twin
tune` are independent tasks. Each task carries its scenario, seed and replication number (common random
numbers), so its result does not depend on where or when it runs; results come back in task order. A
worker that dies mid-sweep costs only its tasks: the scheduler runs them again elsewhere. With one job and
no cluster, tasks run in this process, one after another, with no Dask at all.

A running cluster is named by `--cluster tcp://HOST:8786` (or tls://, with Dask's TLS configuration) or
the environment variable LINETWIN_CLUSTER; the local one binds 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
ENV_CLUSTER = "LINETWIN_CLUSTER"
# simulated seconds over all replications from which a batch uses every core by default (`twin run --no-stream`,
# `twin fit`'s validation): below it, starting worker processes costs more than they gain
PARALLEL_FROM = 7 * 86400.0
ProgressFn = Callable[[int, int], None]  # (tasks done, tasks in all)


class ClusterError(Exception):
    """A cluster that cannot be reached or used; the message says what to do."""


class Tasks:
    """Where a batch of tasks runs: `map(fn, args)` yields results in the order of `args`."""

    def __init__(self, client: Any = None, workers: int = 1, where: str = "this process") -> None:
        self.client, self.workers, self.where = client, workers, where

    def map(self, fn: Callable[..., T], args: Sequence[tuple[Any, ...]], progress: ProgressFn | None = None,
            window: int | None = None) -> Iterator[T]:
        """Run `fn(*a)` for every `a`; yield the results in order. `window` bounds the tasks in flight (memory)."""
        if self.client is None:
            for i, a in enumerate(args):
                result = fn(*a)
                if progress:
                    progress(i + 1, len(args))
                yield result
            return
        yield from self._distributed(fn, args, progress, window or len(args))

    def _distributed(self, fn: Callable[..., T], args: Sequence[tuple[Any, ...]], progress: ProgressFn | None,
                     window: int) -> Iterator[T]:
        from distributed import as_completed

        batch = uuid.uuid4().hex[:8]
        name = getattr(getattr(fn, "func", fn), "__name__", "task")  # a partial's function's (a what-if's order)
        live: dict[str, tuple[int, Any]] = {}  # key of a task in flight -> (its index, its future)
        done: dict[int, T] = {}
        next_out = 0

        def submit(i: int) -> Any:
            fut = self.client.submit(fn, *args[i], key=f"linetwin-{name}-{batch}-{i}", pure=False)
            live[fut.key] = (i, fut)
            return fut

        first = min(window, len(args))
        pending = as_completed([submit(i) for i in range(first)], loop=self.client.loop)
        submitted = first
        for finished, fut in enumerate(pending, start=1):
            i, _ = live.pop(fut.key)
            try:
                done[i] = fut.result()  # a task's own error (e.g. a bad model folder) is raised here as it was
            except BaseException:
                for _, other in live.values():
                    other.cancel()
                raise
            fut.release()
            if progress:
                progress(finished, len(args))
            while next_out in done:  # in task order, as soon as the next one is there
                yield done.pop(next_out)
                next_out += 1
            while submitted < len(args) and submitted - next_out < window:
                pending.add(submit(submitted))
                submitted += 1


def cluster_address(address: str | None) -> str | None:
    """--cluster, else LINETWIN_CLUSTER, else None (a local cluster); checked to be a Dask address."""
    address = address or os.environ.get(ENV_CLUSTER) or None
    if address is not None and not address.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        raise ClusterError(f"cluster address {address!r}: write tcp://HOST:8786 (or tls://HOST:8786 with TLS), "
                           "the address `dask scheduler` prints")
    return address


def _connect(address: str) -> Any:
    """A client of the running Dask scheduler at `address`; ClusterError saying what to do when it does not answer."""
    from distributed import Client

    try:
        return Client(address, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} ({e}); start one with `dask scheduler` and "
                           "workers with `dask worker ADDRESS`, or leave --cluster out for a local one") from None


def reachable(address: str | None) -> None:
    """ClusterError, before any work, when the cluster named by `address` (or LINETWIN_CLUSTER) is malformed or its
    scheduler does not answer; nothing for a local cluster. For a command that writes a result before its batch
    (`twin fit` writes the fitted scenario, then validates it on the cluster)."""
    if (address := cluster_address(address)) is not None:
        _connect(address).close()


@contextlib.contextmanager
def tasks(address: str | None = None, jobs: int | None = None, n_tasks: int = 1) -> Iterator[Tasks]:
    """Where to run `n_tasks` tasks: the cluster at `address` (or LINETWIN_CLUSTER), else `jobs` local worker
    processes (default: one per core), else this process when one job is enough."""
    address = cluster_address(address)
    if address is None:
        jobs = max(1, min(jobs or os.cpu_count() or 1, n_tasks))
        if jobs == 1:
            yield Tasks()
            return
    from distributed import Client, LocalCluster

    if address is not None:
        with _connect(address) as client:
            workers = max(1, len(client.scheduler_info().get("workers", {})))
            yield Tasks(client, workers, address)
        return
    import dask

    # Dask's statistical profiler samples every worker thread each 10 ms: a third of a simulation's time here. Its event
    # loop's own timers (a tick each 20 ms, the memory monitor each 100 ms, the system monitor each 500 ms) each take
    # the GIL from the simulation: at 1-2 s instead, 40 serial-5 replications on 2 workers took 8.7 s, not 9.0 s (4
    # pairs, interleaved); the memory limit is then enforced within a second.
    # Workers are forked from this process, its modules already loaded: the cluster is up in 0.25 s instead of 2.0 s
    # (and closed in 0.06 s, not 0.7 s), on 2 cores. Not once torch is loaded: its thread pools do not survive a fork.
    method = "spawn" if "torch" in sys.modules else "fork"
    with dask.config.set({"distributed.worker.profile.enabled": False,
                          "distributed.admin.tick.interval": "1s",
                          "distributed.worker.memory.monitor-interval": "1s",
                          "distributed.admin.system-monitor.interval": "2s",
                          "distributed.worker.multiprocessing-method": method}), \
            LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=None, silence_logs=logging.CRITICAL,  # no dashboard, and the health page
                         # the scheduler serves anyway on a free port, not on 8787 (a second run at once warned).
                         # A task's error is raised here, said once: its worker's "Compute Failed" log with the
                         # traceback as text was printed before it, a full disk's or a bad model folder's too
                         scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield Tasks(client, jobs or 1, f"{jobs} processes (a local Dask cluster)")
