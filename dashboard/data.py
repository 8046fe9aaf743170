"""Everything the dashboard reads, in one place: run folders, the store (through its query API), and the
line's retained MQTT state (machine states, alerts, KPIs) for the live view.

Configuration comes from the environment that `twin dashboard` sets: LINETWIN_RUNS (folder of run
folders, default runs/), LINETWIN_STORE (a store URL overriding the runs' own), LINETWIN_BROKER (MQTT URL
for live state and alerts), LINETWIN_REPORTS (folder of model and policy reports, default reports/).
An embedded DuckDB store is locked by the run writing it: the dashboard then shows the live MQTT view and
says so, and reads the store again as soon as the run has finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from sensors.store import StoreError, open_store
from sensors.store.base import Store
from twin.scenario import Scenario


def runs_dir() -> Path:
    return Path(os.environ.get("LINETWIN_RUNS", "runs"))


MAX_UPLOAD = 1 << 20  # bytes of an uploaded scenario file


def uploads_dir() -> Path:
    """The dashboard's own folder for uploaded files (this user's only): nothing uploaded is written elsewhere."""
    folder = Path(tempfile.gettempdir()) / f"linetwin-uploads-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def save_upload(name: str, content: bytes) -> Path:
    """An uploaded scenario saved under a safe base name (letters, digits, '.', '_', '-'; never a path the uploader
    chose, '../..' or absolute) in a folder per content inside `uploads_dir()`. ValueError if it is too large."""
    if len(content) > MAX_UPLOAD:
        raise ValueError(f"{len(content):,} bytes is larger than a scenario file may be ({MAX_UPLOAD:,} bytes)")
    base = re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("\\", "/").rsplit("/", 1)[-1]).lstrip(".")[:100]
    if not base.endswith((".yaml", ".yml")):
        base = (base or "upload") + ".yaml"
    folder = uploads_dir() / hashlib.sha256(content).hexdigest()[:16]
    folder.mkdir(exist_ok=True)
    path = folder / base
    path.write_bytes(content)
    return path


def reports_dir() -> Path:
    return Path(os.environ.get("LINETWIN_REPORTS", "reports"))


@dataclass(frozen=True)
class Run:
    """A run folder: its id, scenario, store and result files."""

    path: Path
    run_id: str
    scenario: Scenario
    store_url: str
    finished: bool

    @property
    def label(self) -> str:
        return f"{self.path.parent.name}/{self.path.name} ({self.run_id})"

    def truth(self, name: str) -> pd.DataFrame:
        return result_table(self.path / "truth" / f"{name}.parquet")

    def kpis(self) -> pd.DataFrame:
        return result_table(self.path / "kpis.parquet")

    def summary(self) -> pd.DataFrame:
        return result_table(self.path / "summary.parquet")


def result_table(path: Path) -> pd.DataFrame:
    """A run's Parquet result (empty until written), read again only when the file changes: the live views ask
    for it every second."""
    try:
        stat = path.stat()
    except OSError:
        return pd.DataFrame()
    return _read_parquet(str(path), stat.st_mtime_ns, stat.st_size)


@st.cache_data(max_entries=64, show_spinner=False)
def _read_parquet(path: str, mtime_ns: int, size: int) -> pd.DataFrame:
    return pd.read_parquet(path)


@st.cache_data(ttl=2.0, show_spinner=False)
def list_runs(root: str) -> list[Run]:
    """Run folders under root (newest first), finished or still running (run.json says which)."""
    out = []
    for meta in sorted(Path(root).glob("*/*/run.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            doc = json.loads(meta.read_text(encoding="utf-8"))
            sc = Scenario.model_validate_json(json.dumps(doc["scenario"]))
        except (OSError, ValueError, KeyError):
            continue
        if "run_id" in doc and doc.get("store"):
            out.append(Run(meta.parent, doc["run_id"], sc, os.environ.get("LINETWIN_STORE") or doc["store"],
                           doc.get("status", "finished") == "finished"))
    return out


@dataclass
class StoreHandle:
    """The store, or why it cannot be read now (locked by a running ingest, unreachable)."""

    store: Store | None
    problem: str = ""


@st.cache_resource(ttl=5.0, show_spinner=False)
def store_for(url: str) -> StoreHandle:
    """Open a store read-only (an embedded store is shared with other readers); retried every few seconds."""
    try:
        return StoreHandle(open_store(url, read_only=True))
    except StoreError as e:
        text = str(e)
        if "lock" in text.lower():
            text = ("the store is being written by a run in progress (DuckDB allows one writer); the live view "
                    "below comes from MQTT, history returns when the run has finished")
        return StoreHandle(None, text)


@st.cache_data(ttl=1.0, show_spinner=False)
def query(url: str, run: str, machines: tuple[str, ...] | None, sensors: tuple[str, ...] | None,
          start: pd.Timestamp | None = None, end: pd.Timestamp | None = None, every: str | None = "60s",
          agg: str = "mean") -> pd.DataFrame:
    """Readings through the store's query API (cached for a second: one query serves every widget)."""
    h = store_for(url)
    if h.store is None:
        return pd.DataFrame(columns=["run", "replication", "machine", "sensor", "ts", "value"])
    return h.store.query(start, end, machines=list(machines) if machines else None,
                         sensors=list(sensors) if sensors else None, run=run, every=every, agg=agg)


@st.cache_data(ttl=1.0, show_spinner=False)
def series(url: str, run: str) -> pd.DataFrame:
    h = store_for(url)
    return h.store.series(run) if h.store is not None else pd.DataFrame(columns=["run", "machine", "station",
                                                                                  "sensor", "unit"])


@st.cache_data(ttl=1.0, show_spinner=False)
def last_states(url: str, run: str, replication: int) -> dict[str, str]:
    """Each machine's last stored state in one replication."""
    h = store_for(url)
    if h.store is None:
        return {}
    df = h.store.states(run)
    df = df[df.replication == replication]
    return df.sort_values("ts").groupby("machine").state.last().to_dict() if len(df) else {}


# --- live MQTT state ---------------------------------------------------------------------------------

@dataclass
class LiveState:
    """What the line's retained and live MQTT messages say: machine states, alerts, KPIs, run status."""

    states: dict[str, str] = field(default_factory=dict)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # machine → its current alert
    feed: list[dict[str, Any]] = field(default_factory=list)  # every alert message, newest last
    kpis: dict[str, float] = field(default_factory=dict)
    buffers: dict[str, float] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    connected: bool = False
    problem: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


@st.cache_resource(show_spinner=False)
def live(broker: str, prefix: str) -> LiveState:
    """A background MQTT subscriber for one line, shared by every session of the dashboard."""
    from sensors.bus.broker import BrokerError, BrokerURL, connect, make_client
    from sensors.bus.payloads import ParseError, parse, parse_alert

    state = LiveState()
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
                with state.lock:
                    state.alerts[a["machine"]] = a
                    state.feed.append(a)
                    del state.feed[:-2000]
            elif topic.endswith("/state"):
                item = parse(topic, msg.payload)
                with state.lock:
                    state.states[item.machine] = item.changes[-1][0]  # type: ignore[union-attr]
            elif topic.endswith("/kpi"):
                doc = json.loads(msg.payload)
                with state.lock:
                    state.kpis = {k: v for k, v in doc.get("kpis", {}).items() if isinstance(v, int | float)}
            elif topic.endswith("/buffers"):
                doc = json.loads(msg.payload)
                with state.lock:
                    state.buffers = {k: float(v) for k, v in doc.get("levels", {}).items()}
            elif topic.endswith("/run"):
                with state.lock:
                    state.status = json.loads(msg.payload)
        except (ParseError, ValueError, AttributeError):
            pass

    def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
        state.connected = not getattr(rc, "is_failure", False)
        if state.connected:
            c.subscribe([(f"{prefix}/+/+/state", 1), (f"{prefix}/+/+/alerts", 1), (f"{prefix}/kpi", 1),
                         (f"{prefix}/run", 1), (f"{prefix}/buffers", 1)])

    client.on_message, client.on_connect = on_message, on_connect

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
    if not runs:
        st.info(f"No runs in {runs_dir()} yet. Start one: `twin run scenarios/bottling.yaml` "
                "(or `twin run scenarios/bottling.yaml --dashboard` to watch it here), or pick a scenario on the "
                "Scenarios page.")
        return None
    labels = [r.label for r in runs]
    choice = st.sidebar.selectbox("run", labels, index=0, key="run")
    return runs[labels.index(choice)]


# --- forecasts on the machine page ---------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def models(folder: str) -> dict:  # type: ignore[type-arg]
    """The forecasters of a `twin train` folder, loaded once."""
    from predictors.base import load_bundle

    return load_bundle(Path(folder))


@st.cache_data(ttl=5.0, show_spinner="forecasting")
def forecasts(url: str, run: str, start: pd.Timestamp, machine: str, rep: int, folder: str,
              group: str) -> pd.DataFrame:
    """The machine's forecast at every minute, from the store's per-minute means (as live)."""
    from predictors.data import RunToFailure, twin_frame

    model = models(folder).get(group, {}).get("model")
    handle = store_for(url)
    if model is None or handle.store is None:
        return pd.DataFrame()
    feats = model.prep_.features
    frame = twin_frame(handle.store, run, start, [machine], feats)
    frame = frame[frame.replication == rep]
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
    return fc
