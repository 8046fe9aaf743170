"""Everything the dashboard reads, in one place: run folders, the store (through its query API), and the
line's retained MQTT state (machine states, alerts, KPIs) for the live view.

Configuration comes from the environment that `twin dashboard` sets: LINETWIN_RUNS (folder of run
folders, default runs/; runs written anywhere else are found through the ledger's runs index), LINETWIN_STORE (a
store URL overriding the runs' own), LINETWIN_BROKER (MQTT URL for live state and alerts), LINETWIN_REPORTS (folder
of model and policy reports, default reports/), LINETWIN_SCENARIOS (scenario files, default the bundled ones).
Alarms, acknowledgements and the audit log live in the ledger (sensors/store/ledger.py), so they survive restarts.
An embedded DuckDB store is locked by the run writing it: the dashboard then shows the live MQTT view and
says so, and reads the store again as soon as the run has finished.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from predictors.alarms import AlarmDesk, NotifyError, load_rules, notify_file
from sensors.bus.payloads import line_now
from sensors.store import StoreError, open_store
from sensors.store.base import Store
from sensors.store.ledger import Ledger, LedgerError, RunFolderError, home, read_run, run_status
from twin.scenario import Scenario, Station


def runs_dir() -> Path:
    return Path(os.environ.get("LINETWIN_RUNS", "runs"))


def scenarios_dir() -> Path:
    """LINETWIN_SCENARIOS, else the scenarios bundled with the installed package (found from any working folder)."""
    if os.environ.get("LINETWIN_SCENARIOS"):
        return Path(os.environ["LINETWIN_SCENARIOS"])
    return Path(__file__).resolve().parents[1] / "scenarios"


def ledger() -> Ledger:
    """The ledger (runs index, alarm book, audit log) of the linetwin home, one connection per process."""
    return _ledger(str(home() / "linetwin.sqlite"))


@st.cache_resource(show_spinner=False)
def _ledger(path: str) -> Ledger:
    return Ledger(Path(path))


def desk() -> AlarmDesk:
    """Files alerts in the alarm book and sends the notifications LINETWIN_NOTIFY (or notify.yaml) asks for."""
    return _desk(str(ledger().path), str(notify_file()))


@st.cache_resource(show_spinner=False)
def _desk(ledger_path: str, rules_path: str) -> AlarmDesk:
    try:
        return AlarmDesk(_ledger(ledger_path), load_rules(Path(rules_path)))
    except NotifyError as e:
        st.error(str(e))
        return AlarmDesk(_ledger(ledger_path), [])


MAX_UPLOAD = 1 << 20  # bytes of an uploaded scenario file


def uploads_dir() -> Path:
    """The dashboard's own folder for uploaded files (this user's only): nothing uploaded is written elsewhere."""
    folder = Path(tempfile.gettempdir()) / f"linetwin-uploads-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


LOG_KINDS = ("csv", "txt", "tsv", "xlsx", "xlsm", "xls", "parquet")  # a plant's status log or stop list, as `twin fit`
MAX_LOG_UPLOAD = 200 << 20  # bytes of an uploaded log: what `twin dashboard` lets Streamlit take (MAX_UPLOAD_MB)


def save_upload(name: str, content: bytes, log: bool = False) -> Path:
    """An uploaded scenario (or, with `log`, a plant's status log or stop list) saved under a safe base name (letters,
    digits, '.', '_', '-'; never a path the uploader chose, '../..' or absolute) in a folder per content inside
    `uploads_dir()`, a scenario's name ending in .yaml, a log's in its kind (CSV, Excel, Parquet: what it is read
    as). ValueError if it is too large, or a log of another kind."""
    limit, what = (MAX_LOG_UPLOAD, "a log") if log else (MAX_UPLOAD, "a scenario file")
    if len(content) > limit:
        raise ValueError(f"{len(content):,} bytes is larger than {what} may be ({limit:,} bytes)")
    base = re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("\\", "/").rsplit("/", 1)[-1]).lstrip(".")[:100]
    if log:
        kind = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if kind not in LOG_KINDS:
            raise ValueError(f"{name!r} is not a status log or stop list file ({', '.join(LOG_KINDS)})")
        if not base.lower().endswith(f".{kind}"):  # '.csv' alone: a hidden name, its dot taken off
            base = f"{base or 'upload'}.{kind}"
    if not log and not base.endswith((".yaml", ".yml")):
        base = (base or "upload") + ".yaml"
    folder = uploads_dir() / hashlib.sha256(content).hexdigest()[:16]
    folder.mkdir(exist_ok=True)
    path = folder / base
    path.write_bytes(content)
    return path


def reports_dir() -> Path:
    return Path(os.environ.get("LINETWIN_REPORTS", "reports"))


def start_command(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """A `twin` command in the background, what it says (progress, warnings, errors) written to `log`: a pipe that no
    one read while it ran filled after 64 KB (a long run's progress lines, 300 refusals) and the command stopped
    there for good. -P: the dashboard's folder (the user's) not on the path, where a twin.py of theirs would be
    imported for ours."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as said:
        return subprocess.Popen([sys.executable, "-P", "-m", "twin.app.cli", *args], stdout=subprocess.DEVNULL,
                                stderr=said)


def command_said(log: Path, chars: int = 800) -> str:
    """The last `chars` characters a background command wrote to its `log` (its error, or its progress so far)."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4 * chars))
            return f.read().decode("utf-8", "replace")[-chars:]
    except OSError:
        return ""


@dataclass(frozen=True)
class Run:
    """A run folder: its id, scenario, store and result files."""

    path: Path
    run_id: str
    scenario: Scenario
    store_url: str
    status: str = "finished"  # run.json's (`sensors.store.ledger.run_status`): running, finished, failed, lost, ...
    plant: bool = False  # a real line's data (`twin connect`): no ground truth, no simulated KPIs

    @property
    def finished(self) -> bool:
        """Nothing more will come: it ended, however (finished, stopped, interrupted, failed or lost)."""
        return self.status != "running"

    @property
    def label(self) -> str:
        return f"{self.path.parent.name}/{self.path.name} ({self.run_id})"

    def truth(self, name: str, replication: int | None = None, machine: str | None = None) -> pd.DataFrame:
        """A ground-truth table, of one replication and machine when given: only those rows are read and kept (a
        month of body_shop's true wear is 3.4 million rows, 230 MB in memory; one machine's of one replication, a
        fiftieth of it)."""
        keep = tuple((col, "==", v) for col, v in (("replication", replication), ("machine", machine)) if v is not None)
        return result_table(self.path / "truth" / f"{name}.parquet", keep)

    def kpis(self) -> pd.DataFrame:
        return result_table(self.path / "kpis.parquet")

    def summary(self) -> pd.DataFrame:
        return result_table(self.path / "summary.parquet")


def result_table(path: Path, keep: tuple[tuple[str, str, Any], ...] = ()) -> pd.DataFrame:
    """A run's Parquet result (empty until written), its rows that `keep` (pyarrow filters) when given; read again
    only when the file changes: the live views ask for it every second."""
    try:
        stat = path.stat()
    except OSError:
        return pd.DataFrame()
    return _read_parquet(str(path), stat.st_mtime_ns, stat.st_size, keep)


@st.cache_data(max_entries=64, show_spinner=False)
def _read_parquet(path: str, mtime_ns: int, size: int, keep: tuple[tuple[str, str, Any], ...] = ()) -> pd.DataFrame:
    return pd.read_parquet(path, filters=list(keep) or None)


def list_runs(root: str) -> list[Run]:
    """Run folders under root and in the ledger's runs index (newest first), finished or still running (run.json
    says which)."""
    return _list_runs(root, str(ledger().path))[0]


def unreadable_runs(root: str) -> list[str]:
    """The run folders `list_runs` leaves out, each as 'folder: why' (a damaged or hand-edited run.json)."""
    return _list_runs(root, str(ledger().path))[1]


@st.cache_data(ttl=2.0, show_spinner=False)
def _list_runs(root: str, ledger_path: str) -> tuple[list[Run], list[str]]:
    out, unreadable = [], []
    # runs/<scenario>/<time> as `twin run` names them, runs/<name> as `--out runs/train` does, or a run folder itself
    found = {p.resolve() for pattern in ("run.json", "*/run.json", "*/*/run.json") for p in Path(root).glob(pattern)}
    found |= {p.resolve() / "run.json" for p in _ledger(ledger_path).run_folders()}
    for meta in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            run = read_run(meta.parent)
        except RunFolderError as e:  # not a run to show; said in the sidebar, so that it is not simply missing
            unreadable.append(str(e))
            continue
        sc, doc = run.scenario, run.doc
        plant = doc.get("source") == "plant"
        if plant:
            sc = _plant_span(sc, doc)
        if run.run_id and run.store:
            out.append(Run(meta.parent, run.run_id, sc, os.environ.get("LINETWIN_STORE") or run.store,
                           run_status(doc), plant))
    return out, unreadable


def _plant_span(sc: Scenario, doc: dict[str, Any]) -> Scenario:
    """A plant's 'run' spans its data, from the first connection to the last stop (or now, on the line's clock,
    while connected), not the scenario's nominal start and duration: its time range showed the scenario's date, and
    none of the plant's data."""
    try:
        since = dt.datetime.fromisoformat(str(doc["since"]))
        until = dt.datetime.fromisoformat(str(doc["until"])) if doc.get("until") else line_now(sc.line.timezone)
    except (KeyError, ValueError):
        return sc  # a run.json written before the span was kept
    return sc.model_copy(update={"start": since, "duration": max(60.0, (until - since).total_seconds()),
                                 "warmup": 0.0, "replications": 1})


def _store_text(e: StoreError) -> str:
    text = str(e)
    if "lock" in text.lower():
        text = ("the store is being written by a run in progress (DuckDB allows one writer); the live view "
                "below comes from MQTT, history returns when the run has finished")
    return text


@st.cache_data(ttl=5.0, show_spinner=False)
def store_problem(url: str) -> str:
    """Why the store cannot be read now (locked by a running ingest, unreachable), or ""; asked again every few
    seconds."""
    try:
        open_store(url, read_only=True).close()
    except StoreError as e:
        return _store_text(e)
    return ""


@contextlib.contextmanager
def reading(url: str) -> Iterator[Store | None]:
    """The store, open read-only for one query and closed after it (None if it cannot be read now). Held open
    between queries, an embedded store's file stayed locked as long as the dashboard ran, open page or not, and a
    plant's `twin connect --store` could not start beside it."""
    try:
        store = open_store(url, read_only=True)
    except StoreError:
        yield None
        return
    try:
        yield store
    finally:
        store.close()


@st.cache_data(ttl=1.0, show_spinner=False)
def query(url: str, run: str, machines: tuple[str, ...] | None, sensors: tuple[str, ...] | None,
          start: pd.Timestamp | None = None, end: pd.Timestamp | None = None, every: str | None = "60s",
          agg: str = "mean", replications: tuple[int, ...] | None = None, also: tuple[str, ...] = ()) -> pd.DataFrame:
    """Readings through the store's query API (cached for a second: one query serves every widget); `also`: more
    aggregates of each interval, a column each."""
    with reading(url) as store:
        if store is None:
            return pd.DataFrame(columns=["run", "replication", "machine", "sensor", "ts", "value", *also])
        return store.query(start, end, machines=list(machines) if machines else None,
                           sensors=list(sensors) if sensors else None, run=run, every=every, agg=agg,
                           replications=list(replications) if replications is not None else None, also=also)


@st.cache_data(ttl=1.0, show_spinner=False)
def series(url: str, run: str) -> pd.DataFrame:
    with reading(url) as store:
        return store.series(run) if store is not None else pd.DataFrame(columns=["run", "machine", "station",
                                                                                 "sensor", "unit"])


@st.cache_data(ttl=1.0, show_spinner=False)
def last_states(url: str, run: str, replication: int) -> tuple[dict[str, str], dict[str, float]]:
    """Each machine's last stored state in one replication, and each buffer's last stored level (by station; an
    assembly's per feeder, 'station<feeder')."""
    with reading(url) as store:
        if store is None:
            return {}, {}
        df = store.states(run, replication=replication, last=True)
        lv = store.levels(run, replication=replication, last=True)
    return dict(zip(df.machine.astype(str), df.state.astype(str))), dict(zip(lv.station.astype(str),
                                                                                lv["level"].astype(float)))


def last_products(url: str, run: str, replication: int) -> dict[str, str]:
    """What each machine of a mixed line was last set up for, as stored (none: a line of one product, or a store
    without product records)."""
    with reading(url) as store:
        if store is None:
            return {}
        got = store.products(run, replication=replication, last=True)
    return dict(zip(got.machine.astype(str), got["product"].astype(str)))


def changeovers(url: str, run: str, replication: int, machine: str, iv: pd.DataFrame, station: Station,
                until: pd.Timestamp) -> tuple[str | None, pd.DataFrame]:
    """A mixed line's machine: the product it was last set up for (the store's product records, by `until`, the
    window's end), and its changeovers in the window (its setup intervals `iv`) by product pair: how many, their
    mean length and the engineered mean (`setup_matrix`; none listed: no setup planned). Empty where nothing is
    known."""
    from twin.fit import setup_pair

    with reading(url) as store:
        changes = store.products(run, replication=replication) if store is not None else pd.DataFrame()
    mine = changes[changes.machine.astype(str) == machine] if len(changes) else changes
    setups = iv[iv.state == "setup"] if len(iv) else iv
    if mine.empty:
        return None, pd.DataFrame()
    times, made = mine.ts.to_numpy(), mine["product"].astype(str).to_numpy()
    k = int(np.searchsorted(times, np.datetime64(until), side="right"))
    now = str(made[k - 1]) if k else None
    seen: dict[tuple[str, str], list[float]] = {}
    for began, minutes in zip(setups["from"], (setups.end - setups.start) / 60):
        if (pair := setup_pair(times, made, np.datetime64(began))) is not None:
            seen.setdefault(pair, []).append(float(minutes))
    rows = [{"changeover": f"{a} → {b}", "changeovers": len(v), "mean [min]": round(float(np.mean(v)), 1),
             "engineered [min]": round(station.setup_matrix[a][b].mean / 60, 1)
             if b in station.setup_matrix.get(a, {}) else None} for (a, b), v in sorted(seen.items())]
    return now, pd.DataFrame(rows)


# --- live MQTT state ---------------------------------------------------------------------------------

KPI_TREND_STEP, KPI_TREND_KEEP = 60.0, 24 * 60  # the live KPIs kept for the trend: one a minute, a day of them


@dataclass
class LiveState:
    """What the line's retained and live MQTT messages say: machine states, alerts, KPIs, run status."""

    run: str = ""  # the run the states, history and KPIs below belong to (the newest one heard of)
    replication: int = 0
    states: dict[str, str] = field(default_factory=dict)
    history: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)  # machine → (ts ms, state, reason)
    kpis_at: float = 0.0  # simulated time (s since start) of the live KPIs
    kpi_history: list[tuple[float, dict[str, float]]] = field(default_factory=list)  # (t, KPIs), one a minute
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # machine → its current alert
    feed: list[dict[str, Any]] = field(default_factory=list)  # every alert message, newest last
    kpis: dict[str, float] = field(default_factory=dict)
    buffers: dict[str, float] = field(default_factory=dict)
    products: dict[str, str] = field(default_factory=dict)  # machine → the product it is set up for (a mixed line)
    status: dict[str, Any] = field(default_factory=dict)
    connected: bool = False
    problem: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def follow(self, run: str, replication: int) -> None:
        """A message of another run or replication: what was kept of the previous one is dropped (hold the lock)."""
        if run and (run, replication) != (self.run, self.replication):
            self.run, self.replication = run, replication
            self.states, self.history, self.kpis, self.kpi_history, self.products = {}, {}, {}, [], {}

    def of(self, run: str) -> bool:
        """Whether the live view is of this run."""
        return self.run == run

    def record_kpis(self, kpis: dict[str, float], t: float) -> None:
        """The replication's KPIs so far at simulated time `t`, kept one a minute of line time for the tiles' trend
        (a day of them at most; hold the lock)."""
        self.kpis, self.kpis_at = kpis, t
        if not self.kpi_history or t - self.kpi_history[-1][0] >= KPI_TREND_STEP:
            self.kpi_history.append((t, kpis))
            del self.kpi_history[:-KPI_TREND_KEEP]

    def trend_reference(self, span: float = 3600.0) -> tuple[dict[str, float], float]:
        """What the tiles' change is measured against: the KPIs `span` seconds of line time before the latest, or the
        earliest kept when the replication is younger; with their time (hold the lock)."""
        if not self.kpi_history:
            return {}, self.kpis_at
        before = [(t, k) for t, k in self.kpi_history if t <= self.kpis_at - span]
        t, kpis = before[-1] if before else self.kpi_history[0]
        return (kpis, t) if t < self.kpis_at else ({}, t)


@st.cache_resource(show_spinner=False)
def live(broker: str, prefix: str) -> LiveState:
    """A background MQTT subscriber for one line, shared by every session of the dashboard."""
    from sensors.bus.broker import BrokerError, BrokerURL, connect, make_client
    from sensors.bus.payloads import ParseError, StateChange, parse, parse_alert

    state = LiveState()
    board = desk()
    try:
        url = BrokerURL.parse(broker)
        client = make_client(url, f"linetwin-dashboard-{uuid.uuid4().hex[:8]}")
    except BrokerError as e:
        state.problem = str(e)
        return state

    def on_message(c: Any, u: Any, msg: Any) -> None:
        topic = msg.topic
        try:
            if topic.endswith("/alerts"):
                a = parse_alert(msg.payload)
                board.receive(a)
                with state.lock:
                    state.alerts[a["machine"]] = a
                    state.feed.append(a)
                    del state.feed[:-2000]
            elif topic.endswith("/state"):
                item = parse(topic, msg.payload)
                assert isinstance(item, StateChange)
                with state.lock:
                    state.follow(item.run, item.replication)
                    state.states[item.machine] = item.changes[-1][0]
                    hist = state.history.setdefault(item.machine, [])
                    hist.extend(item.changes)
                    del hist[:-5000]
            elif topic.endswith("/kpi"):
                doc = json.loads(msg.payload)
                with state.lock:
                    state.follow(str(doc.get("run", "")), int(doc.get("replication", 0)))
                    state.record_kpis({k: v for k, v in doc.get("kpis", {}).items() if isinstance(v, int | float)},
                                      float(doc.get("t", 0.0)))
            elif topic.endswith("/buffers"):
                doc = json.loads(msg.payload)
                with state.lock:  # a plant's connector sends a station's level (or a machine's product) at a time
                    state.buffers.update({str(k): float(v) for k, v in doc.get("levels", {}).items()})
                    state.products.update({str(k): str(v) for k, v in doc.get("products", {}).items()})
            elif topic.endswith("/run"):
                doc = json.loads(msg.payload)
                if doc.get("status") == "finished" and doc.get("run"):
                    board.ledger.end_run(str(doc["run"]))  # its alarms are history now
                with state.lock:
                    state.status = doc
        except (ParseError, ValueError, AttributeError, KeyError, TypeError):
            pass  # a malformed message changes nothing on screen (the ingest dead-letters it)
        except LedgerError as e:
            state.problem = str(e)

    def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
        state.connected = not getattr(rc, "is_failure", False)
        if state.connected:
            c.subscribe([(f"{prefix}/+/+/state", 1), (f"{prefix}/+/+/alerts", 1), (f"{prefix}/kpi", 1),
                         (f"{prefix}/run", 1), (f"{prefix}/buffers", 1)])

    def on_disconnect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
        state.connected = False
        state.problem = f"the broker {broker} went away ({rc}); reconnecting"

    client.on_message, client.on_connect, client.on_disconnect = on_message, on_connect, on_disconnect

    def keep_trying() -> None:  # the broker may come later than the dashboard, or go away for a while
        while True:
            try:
                connect(client, url)
                client.on_connect = on_connect
                on_connect(client, None, None, None, None)
                return
            except BrokerError as e:
                state.problem = str(e)
                time.sleep(3)

    threading.Thread(target=keep_trying, daemon=True).start()
    return state


@dataclass
class LiveSeries:
    """Per-minute means of one machine's telemetry as it arrives over MQTT (the last three hours)."""

    sums: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    of: tuple[str, int] = ("", 0)  # the run and replication shown
    lock: threading.Lock = field(default_factory=threading.Lock)

    def frame(self) -> pd.DataFrame:
        with self.lock:
            rows = [(s, m, total / n) for (s, m), (total, n) in self.sums.items()]
        if not rows:
            return pd.DataFrame(columns=["ts", "sensor", "value"])
        df = pd.DataFrame(rows, columns=["sensor", "minute", "value"])
        df["ts"] = pd.to_datetime(df.minute * 60_000, unit="ms")
        return df.sort_values(["sensor", "ts"])[["ts", "sensor", "value"]]


@st.cache_resource(show_spinner=False)
def live_machine(broker: str, topic: str) -> LiveSeries:
    """A subscriber to one machine's telemetry (only the machine on screen: the whole line can be 100k/s)."""
    from sensors.bus.broker import BrokerError, BrokerURL, connect, make_client
    from sensors.bus.payloads import ParseError, parse

    series = LiveSeries()

    def on_message(c: Any, u: Any, msg: Any) -> None:
        try:
            tel = parse(msg.topic, msg.payload)
        except ParseError:
            return
        with series.lock:
            key = (getattr(tel, "run", ""), getattr(tel, "replication", 0))
            if key != series.of:  # a new replication (or run): its own chart, never mixed with the last one
                series.of, series.sums = key, {}
            for sensor, ts, value in zip(getattr(tel, "sensors", []), getattr(tel, "ts_ms", []),
                                         getattr(tel, "values", [])):
                cell = series.sums.setdefault((sensor, ts // 60_000), [0.0, 0])
                cell[0] += value
                cell[1] += 1
            if len(series.sums) > 5000:  # keep the newest three hours or so
                newest = max(m for _, m in series.sums)
                for key in [k for k in series.sums if k[1] < newest - 180]:
                    del series.sums[key]

    try:
        url = BrokerURL.parse(broker)
        client = make_client(url, f"linetwin-dashboard-m-{uuid.uuid4().hex[:8]}")
        client.on_message = on_message
        client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, 0)
        connect(client, url)
        client.subscribe(topic, 0)
    except BrokerError:
        pass
    return series


def broker_url() -> str | None:
    return os.environ.get("LINETWIN_BROKER") or None


def prefix_of(sc: Scenario) -> str:
    return f"{sc.line.site}/{sc.line.area}/{sc.line.name}"


def pick_run() -> Run | None:
    """The run chosen in the sidebar (the newest by default); None with guidance when there is none."""
    runs = list_runs(str(runs_dir()))
    if unreadable := unreadable_runs(str(runs_dir())):
        st.sidebar.warning(f"{len(unreadable)} run folder{'s' if len(unreadable) > 1 else ''} left out, its run.json "
                           f"unreadable: {unreadable[0][:400]}")
    if not runs:
        st.info(f"No runs in {runs_dir()} yet. Start one: `twin run scenarios/bottling.yaml` "
                "(or `twin run scenarios/bottling.yaml --dashboard` to watch it here), or pick a scenario on the "
                "Scenarios page.")
        return None
    line, wanted = st.query_params.get("line"), st.query_params.get("run")
    if line:  # a deep link to one line: its runs only
        runs = [r for r in runs if prefix_of(r.scenario) == line or r.scenario.line.name == line] or runs
    labels = [r.label for r in runs]
    if "run" not in st.session_state and wanted:
        st.session_state["run"] = next((r.label for r in runs if r.run_id == wanted), labels[0])
    if st.session_state.get("run") not in labels:
        st.session_state.pop("run", None)
    choice = st.sidebar.selectbox("run", labels, index=0, key="run")
    run = runs[labels.index(choice)]
    st.query_params["run"] = run.run_id
    st.query_params["line"] = prefix_of(run.scenario)
    return run


# --- forecasts on the machine page ---------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def models(folder: str) -> dict:  # type: ignore[type-arg]
    """The forecasters of a `twin train` folder, loaded once."""
    from predictors.base import load_bundle

    return load_bundle(Path(folder))


@st.cache_data(ttl=5.0, show_spinner="forecasting")
def forecasts(url: str, run: str, start: pd.Timestamp, machine: str, rep: int, folder: str, group: str,
              window: tuple[pd.Timestamp, pd.Timestamp] | None = None, every: int = 60) -> pd.DataFrame:
    """The machine's forecast at every minute of the `window` (default: the whole run), from the store's per-minute
    means (as live), of replication `rep` only and from the rows the model's first window needs before it; beyond
    per-minute (`every` seconds), each interval's highest probabilities and lowest RUL (a month at every minute
    was 43,200 forecasts sent to the browser)."""
    from predictors.data import RunToFailure, twin_frame

    model = models(folder).get(group, {}).get("model")
    if model is None:
        return pd.DataFrame()
    feats = model.prep_.features
    since, until = window if window is not None else (None, None)
    lookback = pd.Timedelta(minutes=2 * model.prep_.window)  # the first window, and cleaning's look before it
    with reading(url) as store:
        if store is None:
            return pd.DataFrame()
        frame = twin_frame(store, run, start, [machine], feats, replications=[rep],
                           since=None if since is None else since - lookback, until=until)
    if frame.empty:
        return pd.DataFrame()
    for f in feats:
        if f not in frame:
            frame[f] = np.nan
    ds = RunToFailure(frame.assign(unit=machine).rename(columns={"t": "time"})[["unit", "time", *feats]], feats,
                      model.modes_, np.full((len(frame), len(model.modes_)), np.inf),
                      np.zeros((len(frame), len(model.modes_))), 60.0)
    fc = model.predict(ds).frame()
    fc["ts"] = start + pd.to_timedelta(frame.t.to_numpy(), unit="s")
    if since is not None:
        fc = fc[fc.ts >= since]
    if every > 60:
        return per_interval(fc, every, {c: "max" if c.startswith("p_") else "min" for c in fc if c != "ts"})
    return fc.reset_index(drop=True)


# --- one time range for every page ---------------------------------------------------------------------------

QUICK = ("whole run", "last 15 min", "last 1 h", "last 8 h", "this shift", "custom")
_SPANS = {"last 15 min": 900, "last 1 h": 3600, "last 8 h": 8 * 3600}
TIME_FORMAT = "%Y-%m-%d %H:%M"  # 24-hour clock everywhere


@dataclass(frozen=True)
class Window:
    """The time range on screen, in the line's local time (as every stored timestamp is), with its zone."""

    start: pd.Timestamp
    end: pd.Timestamp
    zone: str
    origin: pd.Timestamp  # the run's t = 0

    def seconds(self) -> tuple[float, float]:
        """The range in seconds since the run's start (the truth tables' clock)."""
        return ((self.start - self.origin).total_seconds(), (self.end - self.origin).total_seconds())

    @property
    def caption(self) -> str:
        return f"{self.start:{TIME_FORMAT}} – {self.end:{TIME_FORMAT}} ({self.zone}, 24-hour clock)"


def _shift_of(sc: Scenario, t: float) -> tuple[float, float]:
    """The shift around simulated second t (the last one before it when off shift); the day when no calendar."""
    cal = _calendar(sc)
    if cal is None:
        return max(0.0, t - 86400), t
    spans = [(max(a, 0.0), b) for a, b in cal.shifts if a < t]
    return spans[-1] if spans else (0.0, t)


def _param_time(name: str) -> pd.Timestamp | None:
    raw = st.query_params.get(name)
    try:
        return pd.Timestamp(raw).tz_localize(None) if raw else None
    except (ValueError, TypeError):
        st.warning(f"The link's {name}={raw!r} is not a time: write it as 2026-01-05T06:00 (line's local time).")
        return None


def time_range(run: Run) -> Window:
    """The sidebar's time-range picker (quick ranges or absolute from/to in the line's zone), shared by every page
    of the session and written to the address bar (?from=...&to=...) so a link opens the same view."""
    sc = run.scenario
    origin = pd.Timestamp(sc.start).tz_localize(None)
    end_of_run = origin + pd.Timedelta(seconds=sc.duration)
    first, last = _param_time("from"), _param_time("to")
    if (first or last) and "range" not in st.session_state:
        st.session_state["range"] = "custom"
    quick = st.sidebar.selectbox("time range", QUICK, key="range")
    if quick == "custom":
        first = max(first or origin, origin)
        last = min(last or end_of_run, end_of_run)
        c1, c2 = st.sidebar.columns(2)
        d0 = c1.date_input("from", first.date(), origin.date(), end_of_run.date(), key="from_day", format="YYYY-MM-DD")
        t0 = c2.time_input("at", first.time(), key="from_time", step=900)
        d1 = c1.date_input("to", last.date(), origin.date(), end_of_run.date(), key="to_day", format="YYYY-MM-DD")
        t1 = c2.time_input("at ", last.time(), key="to_time", step=900)
        start, end = pd.Timestamp.combine(d0, t0), pd.Timestamp.combine(d1, t1)
        if end <= start:
            st.sidebar.warning("'to' is before 'from': showing the whole run.")
            start, end = origin, end_of_run
    elif quick == "this shift":
        a, b = _shift_of(sc, sc.duration)
        start, end = origin + pd.Timedelta(seconds=a), origin + pd.Timedelta(seconds=b)
    elif quick in _SPANS:
        start, end = max(origin, end_of_run - pd.Timedelta(seconds=_SPANS[quick])), end_of_run
    else:
        start, end = origin, end_of_run
    st.query_params["from"] = f"{start:%Y-%m-%dT%H:%M}"
    st.query_params["to"] = f"{end:%Y-%m-%dT%H:%M}"
    window = Window(start, end, sc.line.timezone, origin)
    st.sidebar.caption(window.caption)
    return window


def replication_pick(run: Run) -> int:
    """The replication on screen (sidebar), shared by the pages; the live one while a run is going."""
    n = run.scenario.replications
    return int(st.sidebar.number_input("replication", 0, max(n - 1, 0), 0, key="rep")) if n > 1 else 0


# --- how finely a time range is drawn -------------------------------------------------------------------------

STEPS = (1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800)
POINTS = 1440  # points a series gets on a chart at most: a day of minutes (a chart is 640-1,200 px wide)
DRAWN = 200_000  # rows the history page draws and offers for download at most


def resolution(window: Window, finest: int = 60) -> int:
    """The interval [s] over which a chart of the window aggregates its readings: the finest usual step from
    `finest` up that gives a series at most POINTS points (per minute up to a day, 10 minutes over a week, 30 over a
    month). Per minute over a month was 43,200 points a sensor, which the browser took half a minute to draw."""
    span = (window.end - window.start).total_seconds()
    return next((s for s in STEPS if s >= finest and span / s <= POINTS), STEPS[-1])


def per_interval(frame: pd.DataFrame, every: int, how: dict[str, str], by: Sequence[str] = ()) -> pd.DataFrame:
    """`frame` (with a ts column) as one row per `every`-second interval of the clock (per `by` too), each column of
    `how` reduced as it says ('max', 'min'): a chart's points beyond per-minute, aligned as the store's intervals."""
    return frame.groupby([*by, frame.ts.dt.floor(f"{every}s")], sort=True, observed=True).agg(how).reset_index()


def step_name(seconds: int) -> str:
    """'per-minute', '10-minute', '6-hour', '1-day': an interval as the charts' titles name it."""
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            return f"per-{unit}" if seconds == size and unit in ("minute", "second") else f"{seconds // size}-{unit}"
    return f"{seconds}-second"


def rows_in(url: str, run: str, machines: tuple[str, ...], sensors: tuple[str, ...], replications: tuple[int, ...],
            window: Window) -> int:
    """How many raw readings the series hold in the window, counted by the store (one count per series), so that a
    page asks for them only when it can draw them."""
    span = int((window.end - window.start).total_seconds()) + 1
    counts = query(url, run, machines, sensors, window.start, window.end, f"{span}s", "count", replications)
    return int(counts.value.sum()) if len(counts) else 0


# --- output and OEE per hour and per shift -------------------------------------------------------------------

def _calendar(sc: Scenario) -> Any:
    from twin.model import ShiftCalendar

    return ShiftCalendar(sc.calendar, sc.start, sc.duration) if sc.calendar is not None else None


def per_period(sc: Scenario, parts: pd.DataFrame, kpis: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Per hour of the window: good parts out of the line, planned time and OEE (the parts good the first time × the
    constraint's ideal time per part ÷ planned time: ISO 22400's fully productive over planned busy time; on a
    mixed-model line each part at its product's design time there); the constraint and its design cycle from the
    run's KPIs, or from the scenario where there are none (a plant's parts: `plant_exits`). A part that went into an
    assembly left inside it, not out of the line."""
    if parts.empty:
        return pd.DataFrame()
    a, b = window.seconds()
    from twin.truth import left_good

    good = parts[left_good(parts) & (parts.exit >= a) & (parts.exit < b)]
    if len(kpis):
        c = int(kpis[(kpis.scope == "line") & (kpis.kpi == "constraint station")].value.iloc[0])
        ideal = float(kpis[(kpis.scope == "station") & (kpis.entity == sc.stations[c].name)
                           & (kpis.kpi == "ideal cycle [s]")].value.iloc[0])
    else:
        c = sc.constraint()
        ideal = sc.stations[c].ideal_cycle()[0]
    per_part: Any = sc.line_cycle(c, ideal)
    if sc.products and "product" in good.columns and sc.constraint() == c:  # each part at its product's design time
        st = sc.stations[c]
        design = {p.name: st.ideal_cycle_of(p.name) * float(sc.visits_of(p.name)[c]) / len(st.machine_names)
                  for p in sc.products}
        per_part = good["product"].astype(str).map(design).fillna(per_part).to_numpy()
    first = np.floor(a / 3600) * 3600
    edges = np.arange(first, b + 3600, 3600.0)
    lo, hi = np.maximum(edges[:-1], a), np.minimum(edges[1:], b)
    cal = _calendar(sc)
    planned = cal.planned_between(lo, hi) if cal is not None else hi - lo
    counts = np.histogram(good.exit.to_numpy(), bins=edges)[0]
    once = ~good["reworked"].to_numpy(bool) if "reworked" in good.columns else np.ones(len(good), dtype=bool)
    productive = np.histogram(good.exit.to_numpy()[once], bins=edges,
                              weights=np.broadcast_to(per_part, len(good))[once])[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        oee = np.where(planned > 0, productive / planned, np.nan)
    return pd.DataFrame({"period": window.origin + pd.to_timedelta(edges[:-1], unit="s"), "good": counts,
                         "planned_h": planned / 3600, "oee": oee, "t": edges[:-1]})


def energy_per_period(sc: Scenario, iv: pd.DataFrame, hourly: pd.DataFrame) -> pd.DataFrame:
    """`hourly` (`per_period`) with each hour's energy [kWh]: every machine's state intervals `iv` at its type's power
    in each state (the scenario's: a run's, or a plant's fitted by `twin fit --energy`); unchanged without power."""
    if iv.empty or hourly.empty or not any(mt.power is not None for mt in sc.machine_types.values()):
        return hourly
    power = {m: sc.machine_type_of(st_).power for st_ in sc.stations for m in st_.machine_names}
    kw = np.array([p.kw(str(s)) if (p := power.get(str(m))) is not None else 0.0
                   for m, s in zip(iv.machine, iv.state)]) / 3600  # kWh a second
    lo, hi = iv.start.to_numpy(float), iv.end.to_numpy(float)
    times = np.concatenate([lo, hi])  # the machines' total draw, piecewise constant: integrated at the hours' edges
    rate = np.concatenate([kw, -kw])
    order = np.argsort(times, kind="stable")
    times, rate = times[order], np.cumsum(rate[order])
    energy = np.concatenate([[0.0], np.cumsum(rate[:-1] * np.diff(times))])
    edges = np.append(hourly.t.to_numpy(float), hourly.t.to_numpy(float)[-1] + 3600.0)
    at = np.interp(edges, times, energy)
    return hourly.assign(energy=np.diff(at))


def per_shift(sc: Scenario, hourly: pd.DataFrame) -> pd.DataFrame:
    """The hourly figures summed per shift of the calendar (per day without one), each hour in the shift that started
    last before it."""
    cal = _calendar(sc)
    spans = [(max(a, 0.0), b) for a, b in cal.shifts] if cal is not None else [
        (d, d + 86400.0) for d in np.arange(0.0, sc.duration, 86400.0)]
    rows = []
    origin = pd.Timestamp(sc.start).tz_localize(None)
    # each hour to the shift that started last before it: a part finished after the shift's end (the part in hand)
    # counts in its shift, not in none
    owner = np.searchsorted(np.array([s for s, _ in spans]), hourly.t.to_numpy(), side="right") - 1
    for i, (s, e) in enumerate(spans):
        h = hourly[owner == i]
        if h.empty or h.planned_h.sum() <= 0:
            continue
        fully = float((h.oee.fillna(0) * h.planned_h).sum())
        rows.append({"shift": f"{origin + pd.Timedelta(seconds=s):{TIME_FORMAT}} – "
                              f"{origin + pd.Timedelta(seconds=e):%H:%M}",
                     "good parts": int(h.good.sum()), "planned [h]": round(float(h.planned_h.sum()), 2),
                     "throughput [parts/h]": round(float(h.good.sum() / h.planned_h.sum()), 1),
                     "OEE [%]": round(100 * fully / float(h.planned_h.sum()), 1),
                     **({"energy [kWh]": round(float(h.energy.sum()), 1),
                         "kWh per good part": round(float(h.energy.sum() / h.good.sum()), 3) if h.good.sum() else None}
                        if "energy" in h else {})})
    return pd.DataFrame(rows)


def machine_intervals(run: Run, window: Window, rep: int) -> pd.DataFrame:
    """Every machine's state intervals in the window, each stop with its reason (fault mode): a simulated run's
    ground truth of replication `rep`, a plant's state records; empty until the replication has finished."""
    from dashboard.charts import intervals

    if run.plant:
        return states_intervals(run, window)
    a, b = window.seconds()
    truth = run.truth("states", rep)
    if truth.empty:
        return pd.DataFrame()
    iv = intervals(truth, window.origin, a, b)
    ev = run.truth("events")
    if len(ev):  # a stop's fault mode is its downtime reason
        fails = ev[(ev.replication == rep) & (ev.event == "failure")][["machine", "t", "fault_mode"]]
        iv = iv.merge(fails.rename(columns={"t": "start", "fault_mode": "reason"}), on=["machine", "start"],
                      how="left")
    return iv


def interval_kpis(iv: pd.DataFrame, sc: Scenario, window: Window) -> pd.DataFrame:
    """Per machine, from its state intervals in the window (a plant's state records, which no simulation summed up):
    availability by ISO 22400 (the planned time in the window, by the calendar, not lost down or in maintenance),
    utilisation (working share of the window), failures (stops that began in it), MTBF (working time per failure)
    and MTTR (the mean length of those stops, as far as the window shows them); indexed by machine, named as a run's
    KPIs are."""
    from twin.model import UP_STATES

    a, b = window.seconds()
    cal = _calendar(sc)
    planned = cal.planned(a, b) if cal is not None else b - a
    clocks = {m: sc.machine_type_of(st).clock for st in sc.stations for m in st.machine_names}
    rows = {}
    for machine, g in iv.groupby("machine", sort=False):
        lo, hi, state = g.start.to_numpy(float), g.end.to_numpy(float), g.state.to_numpy(str)
        stop = np.isin(state, ["down", "maintenance"])
        lost = float(cal.planned_between(lo[stop], hi[stop]).sum()) if cal is not None else float((hi - lo)[stop].sum())
        worked = float((hi - lo)[state == "working"].sum())
        # MTBF on the machine's reliability clock, as the twin's: its working time, or its up time for a calendar clock
        clock = worked if clocks.get(str(machine)) != "calendar" else float((hi - lo)[np.isin(state, UP_STATES)].sum())
        began = (state == "down") & (lo > a)  # a stop under way as the window opens began before it
        n = int(began.sum())
        rows[str(machine)] = {"availability": 1 - lost / planned if planned > 0 else np.nan,
                              "utilisation": worked / (b - a) if b > a else np.nan, "failures": float(n),
                              "mtbf [h]": clock / n / 3600 if n else np.nan,
                              "mttr [min]": float((hi - lo)[began].mean() / 60) if n else np.nan}
    return pd.DataFrame.from_dict(rows, orient="index")


COUNTERS = ("good_parts", "scrap_parts", "energy")  # a plant's part counters and energy meters' kWh registers,
# mapped as these sensors (docs/connect.md)


@st.cache_data(ttl=2.0, show_spinner=False)
def counter_readings(url: str, run: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """A plant's part counters' readings in [start, end), each led by its last reading before `start` (what it stood
    at as the range opened: the parts up to the first reading inside count too)."""
    with reading(url) as store:
        if store is None:
            return pd.DataFrame(columns=["run", "replication", "machine", "sensor", "ts", "value"])
        frames = [store.latest(run=run, sensors=list(COUNTERS), end=start),
                  store.query(start, end, sensors=list(COUNTERS), run=run)]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["run", "replication", "machine", "sensor", "ts", "value"])


def counted(readings: pd.DataFrame) -> pd.Series:
    """Parts each counter counted in its readings (`counter_steps`: a reset counts on from 0), by (machine, sensor)."""
    from twin.counters import counter_steps

    if readings.empty:
        return pd.Series(dtype=float)
    return counter_steps(readings).groupby(["machine", "sensor"]).value.sum()


def _exit_machines(sc: Scenario) -> list[str]:
    """The machines of the stations parts leave the line from: where a plant's good parts out are counted."""
    return [m for i in sc.exits() for m in sc.stations[i].machine_names]


def plant_exits(sc: Scenario, readings: pd.DataFrame, window: Window) -> pd.DataFrame:
    """A plant's good parts out of the line as a parts table (`exit` in seconds since the window's origin, one row
    per part, none scrapped) from the good_parts counters of the stations parts leave the line from, each reading's
    parts spread over the time since the one before: what `per_period` counts per hour for a simulated run."""
    from sensors.store.base import part_times

    got = readings[(readings.sensor == "good_parts") & readings.machine.isin(_exit_machines(sc))] if len(readings) \
        else readings
    if got.empty:
        return pd.DataFrame(columns=["exit", "scrapped_at"])
    ts = pd.to_datetime(part_times(got, spread=True).ts)  # spread over the time since the reading before
    return pd.DataFrame({"exit": (ts - window.origin).dt.total_seconds().to_numpy(), "scrapped_at": np.nan})


def plant_kpis(sc: Scenario, iv: pd.DataFrame, counts: pd.Series, window: Window) -> dict[str, float]:
    """A plant's line figures over the window by ISO 22400, from its state records (`iv`) and part counters
    (`counts`, from `counted`): availability (the constraint station's), and with good-part counters at the line's
    last stations throughput and OEE (design cycle × good parts out ÷ planned time), with counters at the
    constraint its performance, and the quality that is left (OEE ÷ availability ÷ performance); with energy meters
    (kWh registers as the sensor `energy`) the energy of the machines metered, and per good part out."""
    from twin.kpi import LOSS, LOSS_STATES, LOSSES
    from twin.model import STATES, WORKING

    out: dict[str, float] = {}
    if iv.empty:
        return out
    k = interval_kpis(iv, sc, window)
    c = sc.constraint()
    machines = [m for m in sc.stations[c].machine_names if m in k.index]
    if not machines:
        return out
    a, b = window.seconds()
    cal = _calendar(sc)
    planned = cal.planned(a, b) if cal is not None else b - a
    if planned <= 0:
        return out
    # the constraint's planned time in each state (ISO 22400's time model, as a run's `oee loss: STATE`): availability
    # is its working share; starved, blocked, setup and the rest are its losses, not quality's (they were, when it
    # was the machines' availability, which only down and maintenance lower)
    mine = iv[iv.machine.isin(machines)]
    lo, hi = mine.start.to_numpy(float), mine.end.to_numpy(float)
    inside = cal.planned_between(lo, hi) if cal is not None else hi - lo
    by_state = pd.Series(inside).groupby(mine.state.to_numpy(str)).sum() / (planned * len(machines))
    out["oee availability"] = float(by_state.get(STATES[WORKING], 0.0))
    names = {STATES[k]: LOSSES[i] for i, k in enumerate(LOSS_STATES)}
    for state, share in by_state.items():
        if state != STATES[WORKING]:
            out[LOSS + names.get(str(state), str(state))] = float(share)
    if (unknown := 1 - float(by_state.sum())) > 1e-6:  # no state record in force (before a machine's first)
        out[LOSS + UNRECORDED] = unknown

    def total(names: list[str], sensor: str) -> float | None:
        got = [float(counts[(m, sensor)]) for m in names if (m, sensor) in counts.index]
        return sum(got) if got else None

    good = total(_exit_machines(sc), "good_parts")
    ideal = sc.stations[c].ideal_cycle()[0]
    if good is not None and planned > 0:
        out["throughput [parts/h]"] = good / (b - a) * 3600
        out["oee"] = sc.line_cycle(c, ideal) * good / planned
    kwh = total([m for st in sc.stations for m in st.machine_names], "energy")
    if kwh is not None:
        out["energy [kWh]"] = kwh
        if good:
            out["energy per good part [kWh]"] = kwh / good
    made = total(machines, "good_parts")
    worked = float((k.loc[machines, "utilisation"] * (b - a)).sum())
    if made is not None and worked > 0:
        out["oee performance"] = ideal * (made + (total(machines, "scrap_parts") or 0.0)) / worked
        if "oee" in out and out["oee availability"] > 0 and out["oee performance"] > 0:
            out["oee quality"] = out["oee"] / out["oee availability"] / out["oee performance"]
    if "oee" in out:  # the rest of the planned time: what the OEE's other factors lost
        left = out["oee availability"] - out["oee"]
        if "oee quality" in out:  # speed (minor stops too: records show them as working) and parts not good
            out[LOSS + "speed"] = out["oee availability"] * (1 - out["oee performance"])
            out[LOSS + "scrap"] = left - out[LOSS + "speed"]
        else:
            out[LOSS + SPEED_OR_QUALITY] = left
    return out


UNRECORDED = "no state recorded"  # a plant's loss rows that a run has not: time no state record covers,
SPEED_OR_QUALITY = "speed or quality"  # and, without counters at the constraint, performance and quality together
PLANT_LOSS_FACTORS = {UNRECORDED: "", SPEED_OR_QUALITY: "performance or quality"}


@st.cache_data(ttl=2.0, show_spinner=False)
def _state_records(url: str, run: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Each machine's state as [start, end) opens, then its changes within it (not a year of a plant's history);
    cached for two seconds: the overview's tiles (each second) and its timeline read the same."""
    with reading(url) as store:
        if store is None:
            return pd.DataFrame()
        parts = [f for f in (store.states(run, end=start, last=True), store.states(run, start=start, end=end))
                 if len(f)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def states_intervals(run: Run, window: Window) -> pd.DataFrame:
    """State intervals from the store's state records (a plant's, which has no ground-truth tables), clipped to the
    window, in the form charts.intervals gives; empty while the store cannot be read."""
    from dashboard.charts import intervals

    df = _state_records(run.store_url, run.run_id, window.start, window.end)
    if df.empty:
        return pd.DataFrame()
    df = df.sort_values(["machine", "ts"], kind="stable")
    start = (df.ts - window.origin).dt.total_seconds()
    end = start.groupby(df.machine).shift(-1).fillna((window.end - window.origin).total_seconds())
    frame = pd.DataFrame({"machine": df.machine.to_numpy(), "state": df.state.to_numpy(),
                          "reason": df.reason.replace("", None).to_numpy(), "start": start.to_numpy(),
                          "end": end.to_numpy()})
    a, b = window.seconds()
    return intervals(frame[frame.end > frame.start], window.origin, a, b)
