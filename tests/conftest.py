"""Real servers for the tests, started on 127.0.0.1 and free ports, stopped afterwards.

mosquitto and victoria-metrics come from Debian's packages; `make test` installs them
(scripts/test-deps.sh). A test that needs one fails with a clear message if it is missing.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest
import requests

from sensors.bus.broker import BrokerURL, find_program, free_port, mosquitto_config, wait_port

# One torch compute thread for the tests and every process they start, set before anything imports torch, however
# the tests are run. On several test processes (pytest-xdist), torch's default of one thread per core makes each
# worker's threads spin against the other worker's: measured on 2 cores, `twin synth train` took 63 s of CPU with two
# threads against 41 s with one, and a 2-second `twin run` took 13 s beside it. And a model's numbers depend on the
# thread count: the generators' fixture, trained with two threads (one test file run alone), failed the VAE's quality
# checks that it passes with one. The same thread count everywhere makes a test's models those it was checked on.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _need(binary: str) -> str:
    path = find_program(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed: run `make test` (it installs Debian's {binary}) or apt-get install it")
    return path


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stop a server a test started: `sig`, then SIGKILL if it has not ended within `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Mosquitto:
    """A mosquitto process on 127.0.0.1 that a test can stop, kill and start again (same port and data)."""

    workdir: Path
    extra: str = ""
    tls_port: int | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        # a port found free and let go can be found free again: the TLS listener's port was picked first, and the
        # plain one could come out the same (seen once in a full run: "Address already in use", the test errored)
        while self.port == self.tls_port:
            self.port = free_port()

    @property
    def url(self) -> BrokerURL:
        return BrokerURL("mqtt", "127.0.0.1", self.port)

    def start(self) -> Mosquitto:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(mosquitto_config(self.port, self.workdir / "data", self.extra))
        self.proc = subprocess.Popen([_need("mosquitto"), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.workdir / "mosquitto.log", "ab"))  # noqa: SIM115
        wait_port(self.port)
        if self.tls_port:
            wait_port(self.tls_port)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig)
        self.proc = None


# `make check` and `make test` run the tests on 2 and 4 processes (pytest-xdist). The test files that share an
# expensive fixture form one group, which runs on one worker, so the fixture is made once: the forecasters' tests and
# the generators' (`gen`), the dashboard's run, the Dask cluster, the predictors' tables. The forecasting runs and
# models (`work`) both of the first two need are made once per session by whichever worker comes first
# (`shared_once`), so those two groups run side by side. (xdist's own `--dist loadgroup` does not group under
# pytest 9: it renames items through an attribute pytest no longer reads.)
_GROUPS = {"test_compare.py::test_predictive_policy": "forecasting", "test_forecasting.py": "forecasting",
           "test_synth.py": "synth", "test_dashboard.py": "dashboard", "test_cluster.py": "cluster",
           "test_predictors.py": "tables"}  # a test file, or a file and the start of a test's name


def _group(nodeid: str) -> str:
    """The test's group (tests/FILE::TEST[params]), or the test itself."""
    name = nodeid.rsplit("/", 1)[-1]
    return next((g for key, g in _GROUPS.items() if name.startswith(key if "::" in key else key + "::")), nodeid)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtures(LoadScopeScheduling):
        """Every other test is its own unit of work, sent to whichever worker is free."""

        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    return SharedFixtures(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under xdist, hand the tests out one from each file in turn: a file's tests tend to be alike (all waiting on
    servers and live runs, or all simulating), and mixing them keeps both cores busy while some tests wait (the suite
    on 3 workers, 2026-12-04: 443 and 447 s in file order, 433 s mixed). The groups above still run whole, in order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::")[0], []).append(item)
    items[:] = [item for turn in itertools.zip_longest(*files.values()) for item in turn if item is not None]


@pytest.fixture(scope="session", autouse=True)
def linetwin_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tests' own linetwin home (runs index, alarm book, audit log), never the user's; children inherit it."""
    import os

    home = tmp_path_factory.mktemp("linetwin-home")
    before = os.environ.get("LINETWIN_HOME")
    os.environ["LINETWIN_HOME"] = str(home)
    yield home
    if before is None:
        os.environ.pop("LINETWIN_HOME", None)
    else:
        os.environ["LINETWIN_HOME"] = before


@pytest.fixture(scope="session", autouse=True)
def repository_reports_untouched() -> Iterator[None]:
    """No test leaves a report in the repository's reports/ (a command run without --out writes one there): each
    test writes under its own tmp_path."""
    reports = ROOT / "reports"
    before = set(reports.iterdir()) if reports.is_dir() else set()
    yield
    added = (set(reports.iterdir()) if reports.is_dir() else set()) - before
    assert not added, f"tests left reports in the repository: {sorted(p.name for p in added)}; give them --out"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.workdir.mkdir()
    broker.start()
    yield broker
    broker.stop()


@dataclass
class VictoriaMetrics:
    """A victoria-metrics process on 127.0.0.1 that a test can stop and start again (same port and data)."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> VictoriaMetrics:
        # -dedup.minScrapeInterval=1ms: keep one point per series and millisecond, as InfluxDB does
        args = [_need("victoria-metrics"), f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.workdir / 'vm'}", "-retentionPeriod=100y", "-loggerLevel=ERROR",
                "-search.latencyOffset=0s", "-dedup.minScrapeInterval=1ms"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, 30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.http}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig, timeout=15)
        self.proc = None

    def export(self, match: str = '{__name__!=""}') -> list[dict]:  # type: ignore[type-arg]
        requests.get(f"{self.http}/internal/force_flush", timeout=10)
        # to 2100: a live run's readings are stamped ahead of the wall clock, and export ends at now by default
        r = requests.get(f"{self.http}/api/v1/export", params={"match[]": match, "start": "0", "end": "4102444800"},
                         timeout=30)
        r.raise_for_status()
        return [json.loads(line) for line in r.text.splitlines() if line.strip()]

    def export_points(self, match: str, points: Callable[[list[dict]], int], expected: int,  # type: ignore[type-arg]
                      timeout: float = 30.0) -> list[dict]:  # type: ignore[type-arg]
        """`export`, again until `points(series)` reaches `expected` (or `timeout` passes): the server acknowledges a
        write before its rows are searchable, and on a busy machine a flush right after can miss the last ones."""
        deadline = time.monotonic() + timeout
        while True:
            series = self.export(match)
            if points(series) >= expected or time.monotonic() > deadline:
                return series
            time.sleep(0.5)


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    vm = VictoriaMetrics(tmp_path)
    try:
        yield vm.start()
    finally:
        vm.stop()


ROOT = Path(__file__).resolve().parent.parent


T = TypeVar("T")


def wait_for_line(stream: IO[str] | None, match: Callable[[str], T], timeout: float, what: str) -> T:
    """Read a child's output line by line until `match` accepts a line, and return what `match` gave for it (e.g. a
    regex match); fail the test when the output ends first or `timeout` seconds pass without one (a plain `readline`
    would hang the suite on a silent, hung child). The reader stops at the match, so later lines stay for the caller."""
    assert stream is not None
    found: queue.Queue[T | None] = queue.Queue()

    def read() -> None:
        for line in iter(stream.readline, ""):
            if got := match(line):
                found.put(got)
                return
        found.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        got = found.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"no line {what} within {timeout:g} s")
    if got is None:
        pytest.fail(f"the output ended before a line {what}")
    return got


def wait_connected(proc: subprocess.Popen[str]) -> None:
    """Wait for `twin connect` to say it is connecting, which it says once it has subscribed to its sources (a fixed
    wait once ran out on a busy machine while it was still importing: the plant's first messages went unheard). Its
    `--duration` counts from just before it connected."""
    wait_for_line(proc.stderr, lambda line: "connecting" in line, 60, "saying the connector is connecting")


def twin_cmd(*args: object) -> list[str]:
    return [sys.executable, "-m", "twin.app.cli", *map(str, args)]


def assert_mistakes(base: list[str], cases: list[tuple[list[str], str]]) -> None:
    """`twin` with `base` plus each case's arguments, all in one process (each case exits before its work, so the
    start-up is paid once): every case exits 2, its message is on stderr, and there is no traceback."""
    probe = ("from twin.app.cli import app\n"
             f"for args in {[base + args for args, _ in cases]!r}:\n"
             "    try:\n        app(args)\n    except SystemExit as e:\n        print(e.code, flush=True)\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env={**os.environ, "COLUMNS": "250"})
    assert r.stdout.split() == ["2"] * len(cases), (r.stdout, r.stderr[-3000:])
    err = " ".join(r.stderr.split())
    for _, message in cases:
        assert message in err, (message, r.stderr)
    assert "Traceback" not in r.stderr


def run_all(*commands: list[str], timeout: float = 600) -> list[subprocess.CompletedProcess[str]]:
    """Run commands side by side (two cores), each must succeed."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
             for c in commands]
    done = []
    for p, c in zip(procs, commands):
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, f"{' '.join(c)} failed:\n{err[-3000:]}"
        done.append(subprocess.CompletedProcess(c, p.returncode, out, err))
    return done


def shared_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """A folder `make` fills once per test session, whichever worker asks first (the others wait for it): the
    session's base folder is shared by its xdist workers, so groups on different workers share the fixture."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # under xdist: the session's own folder
    d = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not (d / ".made").exists():
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            make(d)
            (d / ".made").touch()
    return d


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bottling: training runs (2 × 2 days, run to failure), a held-out run (another seed), LSTM and regression
    models, made through the CLI once for every test that needs them (once per session, shared by the workers)."""
    return shared_once(tmp_path_factory, "forecasting", _make_work)


def _make_work(d: Path) -> None:
    common = ("run", "scenarios/bottling.yaml", "--no-stream", "--policy", "run-to-failure", "--duration", "2 d")
    run_all(twin_cmd(*common, "--replications", 2, "--out", d / "train"),
            twin_cmd(*common, "--replications", 1, "--seed", 7, "--out", d / "heldout"))
    # half-hour windows keep the LSTM's training to about a minute here (the default is an hour)
    trained = run_all(twin_cmd("train", d / "train", "--model", "lstm", "--window", 30, "--out", d / "lstm"),
                      twin_cmd("train", d / "train", "--model", "regression", "--window", 30, "--out",
                               d / "regression"))
    (d / "train-lstm.txt").write_text(trained[0].stdout + trained[0].stderr, encoding="utf-8")
