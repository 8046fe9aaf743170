"""Simulation batches on a real Dask cluster: a `dask scheduler` and two `dask worker` processes on 127.0.0.1.

The results of `twin compare` equal the local run's, and stay equal when a worker is killed mid-sweep
(the scheduler runs its tasks again on the other one).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from sensors.bus.broker import free_port, wait_port
from tests.conftest import ROOT, stop_process, twin_cmd
from twin.app.cluster import ClusterError, cluster_address
from twin.app.compare import PolicyParams, compare
from twin.scenario import load_scenario, with_policy

pytestmark = pytest.mark.slow  # a real scheduler and worker processes

DASK = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]
POLICIES = ("run-to-failure", "preventive", "condition-based")


@dataclass
class DaskCluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]


def _worker(address: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*WORKER, address, "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1",
                             "--no-dashboard", "--name", f"w{log.stem}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=open(log, "ab"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    from distributed import Client

    logs = tmp_path_factory.mktemp("dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen([*DASK, "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=open(logs / "scheduler.log", "ab"))  # noqa: SIM115
    cluster = DaskCluster(address, scheduler, [])
    try:
        wait_port(port, 60)
        cluster.workers += [_worker(address, logs / f"{i}.log") for i in range(2)]
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=120)
        yield cluster
    finally:  # the workers a test put in place of killed ones too
        for p in [*cluster.workers, scheduler]:
            stop_process(p, timeout=20)


def line(replications: int = 4) -> object:
    sc = with_policy(load_scenario(ROOT / "scenarios" / "bottling.yaml"), "run-to-failure")
    return sc.model_copy(update={"duration": 2 * 3600.0, "warmup": 0.0, "replications": replications})


PARAMS = PolicyParams(every=3600.0)


def test_compare_on_a_running_cluster_equals_the_local_run(cluster: DaskCluster, tmp_path: Path) -> None:
    args = ("compare", "scenarios/bottling.yaml", "--policies", ",".join(POLICIES), "--replications", 4,
            "--duration", "2 h", "--warmup", 0, "--every", "1 h")
    remote = subprocess.run(twin_cmd(*args, "--cluster", cluster.address, "--out", tmp_path / "remote"),
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert remote.returncode == 0, remote.stderr[-3000:]
    assert cluster.address in remote.stdout
    local = subprocess.run(twin_cmd(*args, "--jobs", 1, "--out", tmp_path / "local"), capture_output=True, text=True,
                           timeout=600, cwd=ROOT)
    assert local.returncode == 0, local.stderr[-3000:]
    a, b = (pd.read_csv(tmp_path / d / "kpis.csv") for d in ("local", "remote"))
    assert len(a) == 4 * len(POLICIES) * a.kpi.nunique()
    pd.testing.assert_frame_equal(a, b)


def test_a_worker_killed_mid_sweep_costs_only_its_tasks(cluster: DaskCluster, tmp_path: Path) -> None:
    sc = line(replications=6)
    local = compare(sc, POLICIES, PARAMS, jobs=1)
    victim = cluster.workers[0]
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done == 3 and victim.poll() is None:
            os.kill(victim.pid, signal.SIGKILL)  # the worker dies with tasks assigned to it

    remote = compare(sc, POLICIES, PARAMS, cluster=cluster.address, progress=progress)
    assert victim.poll() is not None  # it really died
    assert seen == list(range(1, len(POLICIES) * 6 + 1))
    pd.testing.assert_frame_equal(local.kpis, remote.kpis)
    cluster.workers[0] = _worker(cluster.address, tmp_path / "respawned.log")  # for any later test


def test_a_cluster_that_cannot_be_reached_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="tcp://HOST:8786"):
        cluster_address("127.0.0.1:8786")
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    procs = [subprocess.Popen(twin_cmd(*args, "--cluster", nowhere), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT)  # side by side: each waits out the connection's timeout
             for args in (("compare", "scenarios/bottling.yaml", "--replications", 2, "--duration", "1 h",
                           "--policies", "run-to-failure,oracle", "--out", tmp_path / "reports" / "cmp"),
                          ("run", "scenarios/bottling.yaml", "--replications", 2, "--duration", "1 h", "--no-stream",
                           "--out", tmp_path / "run"),
                          # the fit wrote its scenario, then found the cluster gone when it validated: now before
                          ("fit", "tests/data/heat_treat_status.csv", "--base", "tests/scenarios/heat_treat.yaml",
                           "--out", tmp_path / "fitted.yaml"))]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 3 and "cannot reach the Dask scheduler" in err and "Traceback" not in err, err[-2000:]
        assert err.rstrip().endswith("or leave --cluster out for a local one"), err[-2000:]  # not a progress bar
    assert not (tmp_path / "fitted.yaml").exists() and not (tmp_path / "fitted-report").exists()
    # the folders made for the comparison's report and the run's results are not left behind, empty
    assert not (tmp_path / "reports").exists() and not (tmp_path / "run").exists()


def test_a_part_a_worker_could_not_write_or_wrote_in_another_format_is_a_clear_error(tmp_path: Path) -> None:
    """A worker that cannot reach the result folder, or runs another linetwin (its parts in Parquet, as before
    2026-12-05), stops the run with what to do, not with a missing file deep in the merge."""
    from twin.app.runner import _check_part

    with pytest.raises(ClusterError, match="file system every worker shares"):
        _check_part(tmp_path / "rep-3", 3, tmp_path)
    part = tmp_path / "rep-4"
    (part / "truth").mkdir(parents=True)
    pd.DataFrame({"kpi": ["oee"], "value": [0.8]}).to_parquet(part / "kpis.parquet")
    with pytest.raises(ClusterError, match=r"replication 4 .* install linetwin .* on every worker"):
        _check_part(part, 4, tmp_path)


def _tables(folder: Path) -> dict[str, pd.DataFrame]:
    return {p.relative_to(folder).as_posix(): pd.read_parquet(p) for p in sorted(folder.rglob("*.parquet"))}


def test_run_replications_on_workers_equal_one_after_another(cluster: DaskCluster, tmp_path: Path) -> None:
    """`twin run --no-stream` on local worker processes and on the cluster: every table, and the store, as when the
    replications run one after another in one process."""
    import json

    from sensors.store import open_store

    base = ("run", "scenarios/cnc_cell.yaml", "--duration", "90 min", "--warmup", 0, "--replications", 3, "--no-stream")
    runs = {"seq": ("--jobs", 1), "local": ("--jobs", 2), "cluster": ("--cluster", cluster.address)}
    for name, extra in runs.items():
        r = subprocess.run(twin_cmd(*base, *extra, "--out", tmp_path / name), capture_output=True, text=True,
                           timeout=600, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-3000:]
    seq = _tables(tmp_path / "seq")
    assert len(seq["readings.parquet"]) > 30_000 and set(seq["readings.parquet"].replication) == {0, 1, 2}
    for name in ("local", "cluster"):
        other = _tables(tmp_path / name)
        assert other.keys() == seq.keys()
        for table in seq:
            pd.testing.assert_frame_equal(seq[table], other[table], obj=f"{name}/{table}")
            # and byte for byte (a categorical's string type once differed in the merged file's Arrow schema)
            assert (tmp_path / "seq" / table).read_bytes() == (tmp_path / name / table).read_bytes(), (name, table)
        assert not (tmp_path / name / ".parts").exists()
        meta = json.loads((tmp_path / name / "run.json").read_text())
        store = open_store(meta["store"], read_only=True)
        assert store.count(meta["run_id"]) == len(seq["readings.parquet"]) == meta["readings"]
        assert len(store.states(meta["run_id"])) > 0  # type: ignore[attr-defined]
        store.close()


def test_an_ensembles_members_trained_on_the_cluster_equal_those_trained_here(cluster: DaskCluster,
                                                                               tmp_path: Path) -> None:
    """`twin train --members 2` here, one after another, and with the members on the cluster's workers: the same
    weights, so the same forecasts."""
    import numpy as np

    from predictors import TableFormat, from_table
    from predictors.base import load
    from tests.test_predictors import degradation_table, write_nasa

    df, _ = degradation_table(12, seed=5)
    table = write_nasa(df, tmp_path / "train.txt")
    base = ("train", table, "--unit-column", 0, "--time-column", 1, "--model", "cnn", "--epochs", 3, "--window", 20,
            "--members", 2, "--threads", 1)
    for name, extra in {"here": (), "cluster": ("--cluster", cluster.address)}.items():
        r = subprocess.run(twin_cmd(*base, *extra, "--out", tmp_path / name), capture_output=True, text=True,
                           timeout=600, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "2 × 6" in r.stdout  # two members, each validated on 6 of the 12 units
    ds = from_table(table, TableFormat(unit=0, time=1))
    here, there = (load(tmp_path / name / "table" / "model.json") for name in ("here", "cluster"))
    assert len(here.members_) == len(there.members_) == 2
    np.testing.assert_array_equal(here.predict(ds).rul, there.predict(ds).rul)
    np.testing.assert_array_equal(here.predict(ds).proba, there.predict(ds).proba)


def test_two_local_clusters_at_once_start_without_a_word() -> None:
    """The scheduler serves a health page even without a dashboard, and took port 8787 for it: a second run at the
    same time (another `twin compare`, a test beside it) printed Dask's 'Port 8787 is already in use' warning."""
    import contextlib
    import socket
    import warnings

    from twin.app.cluster import tasks

    with socket.socket() as held, warnings.catch_warnings():
        with contextlib.suppress(OSError):  # taken already: the same case
            held.bind(("127.0.0.1", 8787))
            held.listen()
        warnings.simplefilter("error")
        with tasks(None, 2, 4) as run:
            assert list(run.map(abs, [(-1,), (-2,), (-3,), (-4,)], None)) == [1, 2, 3, 4]


def test_a_what_if_on_a_running_cluster_equals_one_job(cluster: DaskCluster, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`twin whatif` ran its replications one after another in its own process (15 s for an 88-machine line on one of
    two cores): now on the local processes or a cluster, with the same figures."""
    monkeypatch.setenv("LINETWIN_HOME", str(tmp_path / "home"))  # its run kept out of the other tests' runs index
    whatif = ROOT / "tests" / "scenarios" / "whatif.yaml"
    run = tmp_path / "run"
    r = subprocess.run(twin_cmd("run", whatif, "--no-stream", "--duration", "6 h", "--out", run), capture_output=True,
                       text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    args = ("whatif", whatif, "--from", f"duckdb:///{run / 'twin.duckdb'}", "--duration", "4 h", "--replications", 6,
            "--extra-crew", "maintenance")
    remote = subprocess.run(twin_cmd(*args, "--cluster", cluster.address, "--out", tmp_path / "remote.csv"),
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert remote.returncode == 0, remote.stderr[-3000:]
    assert "12 simulations in" in remote.stdout and cluster.address in remote.stdout, remote.stdout
    local = subprocess.run(twin_cmd(*args, "--jobs", 1, "--out", tmp_path / "local.csv"), capture_output=True,
                           text=True, timeout=600, cwd=ROOT)
    assert local.returncode == 0, local.stderr[-3000:]
    assert "12 simulations in" in local.stdout and "this process" in local.stdout, local.stdout
    for name in ("{}.csv", "{}-replications.csv"):
        a, b = (pd.read_csv(tmp_path / name.format(d)) for d in ("local", "remote"))
        assert len(a) == (2 if name == "{}.csv" else 6)
        pd.testing.assert_frame_equal(a, b)
