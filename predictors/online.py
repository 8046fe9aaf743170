"""Live forecasting: telemetry in over MQTT, per-minute windows per machine, alerts out (retained).

Each machine's readings are averaged per minute exactly as the training data were (minute buckets of
the store), the last `window` rows are cleaned and scaled as in training, and every `interval` new rows
the machine's model forecasts; the alert hysteresis, told the machine's state at that minute (from its
`state` topic), decides what to publish. With an anomaly detector (the
VAE of `twin synth train`) its score of the same minutes joins the forecast as one more mode, "anomaly",
so unusual behaviour the forecasters were not trained on raises alerts too (scored only on windows in which
the machine ran throughout: a stop's transients are no wear). The network thread only
parses and queues; one worker thread bins, forecasts in batches and publishes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt

from predictors.alarms import AlarmDesk
from predictors.alerts import AlertRule, AlertState, MachineStatus
from predictors.base import Bundle, Estimator, Forecast
from predictors.prep import clean
from sensors.bus.broker import BrokerURL, connect, make_client, negotiate, subscribe_confirmed
from sensors.bus.payloads import ParseError, StateChange, Telemetry, alert_payload, line_filters, parse
from sensors.store.ledger import LedgerError

if TYPE_CHECKING:
    from predictors.synth import ConditionalVAE

log = logging.getLogger(__name__)
ANOMALY = "anomaly"  # the fault mode of alerts the VAE's anomaly score raises


MAX_LAG = 15  # minutes a bin waits for a silent sensor before it is closed without it


@dataclass
class MachineFeed:
    """One machine's open minute bins, recent finished rows, windows due for a forecast and alert state.

    Readings of one sensor arrive in time order, but different sensors' readings may interleave
    (a message holds one sensor's stretch): a minute is finished once every sensor has moved past it.
    Used live (MQTT telemetry) and inside the simulation (the predictive maintenance policy).
    """

    key: tuple[str, int, str]
    group: str
    model: Estimator
    topic: str
    index: dict[str, int]
    rows: deque[np.ndarray]
    times: deque[int]
    state: AlertState
    open: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    newest: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    closed: int | None = None  # the last finished minute
    every: int = 1  # forecast every this many finished minutes
    fresh: int = 0
    late: int = 0
    due: list[tuple[np.ndarray, int, int]] = field(default_factory=list)  # (window, minute, rows) to forecast
    detector: ConditionalVAE | None = None  # scores the cleaned raw window for anomalies, beside the model
    columns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # the detector's features
    raw: list[np.ndarray] = field(default_factory=list)  # the detector's window for each due forecast
    status: MachineStatus = field(default_factory=MachineStatus)  # running, off shift or in service, over time
    unheard_said: bool = False  # the warning about sensors the model reads that never came, once

    @classmethod
    def for_model(cls, key: tuple[str, int, str], group: str, model: Estimator, topic: str, rule: AlertRule,
                  every: int = 1, detector: ConditionalVAE | None = None) -> MachineFeed:
        """A feed shaped for a model's features and window (and the anomaly detector's, when given)."""
        features = model.prep_.features or []  # type: ignore[union-attr]
        index = {s: i for i, s in enumerate(features)}
        # a little more than the window, so a dropout at its start is filled as in training
        keep = max(model.window, detector.window_ if detector is not None else 0) + 10
        columns = np.array([index[f] for f in detector.features_] if detector is not None else [], dtype=np.int64)
        return cls(key, group, model, topic, index, deque(maxlen=keep), deque(maxlen=keep), AlertState(rule),
                   newest=np.full(len(features), -1, dtype=np.int64), every=every, detector=detector,
                   columns=columns, status=MachineStatus(frozenset(model.modes_)))

    @property
    def step_ms(self) -> int:
        return int(self.model.meta_.get("step", 60.0) * 1000)

    def add(self, sensors: list[str], ts: list[int], values: list[float], step_ms: int) -> None:
        """Readings by sensor name (names the model does not know are ignored)."""
        j = np.fromiter((self.index.get(s, -1) for s in sensors), dtype=np.int64, count=len(sensors))
        self.add_indexed(j, np.asarray(ts, dtype=np.int64), np.asarray(values, dtype=np.float64), step_ms)

    def add_indexed(self, j: np.ndarray, ts: np.ndarray, v: np.ndarray, step_ms: int) -> None:
        """Readings by feature index (-1: not a feature), epoch or run milliseconds, values."""
        b = ts // step_ms
        known = j >= 0
        b, j, v = b[known], j[known], v[known]
        if self.closed is not None:
            ok = b > self.closed
            self.late += int((~ok).sum())
            b, j, v = b[ok], j[ok], v[ok]
        n = len(self.index)
        for bin_ in np.unique(b):
            sums, counts = self.open.setdefault(int(bin_), (np.zeros(n), np.zeros(n)))
            m = b == bin_
            np.add.at(sums, j[m], v[m])
            np.add.at(counts, j[m], 1)
        if len(b):
            np.maximum.at(self.newest, j, b)
            self._close(step_ms)

    def _close(self, step_ms: int) -> None:
        """Finish every minute all sensors have passed (or that waited MAX_LAG minutes), in order."""
        if not self.open:
            return
        done_below = max(int(self.newest.min()), int(self.newest.max()) - MAX_LAG)  # unheard sensors hold at -1
        for bin_ in sorted(k for k in self.open if k < done_below):
            sums, counts = self.open.pop(bin_)
            if self.closed is not None:  # minutes with no readings at all: NaN rows (dropouts)
                for k in range(min(bin_ - self.closed - 1, self.rows.maxlen or 0)):
                    self.rows.append(np.full(len(sums), np.nan))
                    self.times.append((self.closed + 1 + k) * step_ms)
            with np.errstate(invalid="ignore", divide="ignore"):
                self.rows.append(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan))
            self.times.append(bin_ * step_ms)
            self.closed = bin_
            self.fresh += 1
            if self.fresh >= self.every:
                self.fresh = 0
                if not self.unheard_said and (self.newest < 0).any():
                    self.unheard_said = True  # a plant feed without a sensor the model reads (none at the real
                    # machine, or not mapped): it counts as normal, and what only it shows can never alert
                    unheard = [s for s, i in self.index.items() if self.newest[i] < 0]
                    log.warning("%s: no readings of %s, which its %s model reads: forecast with each at its training "
                                "mean, as if normal, so a fault only these sensors show cannot raise an alert; map "
                                "them in the connector, or train a model on the sensors this machine has",
                                self.key[2], ", ".join(unheard), self.group)
                rows = np.stack(list(self.rows))
                self.due.append((self.model.prep_.live_window(rows),  # type: ignore[union-attr]
                                 self.times[-1], min(len(self.rows), self.model.window)))
                if self.detector is not None:  # scored only on whole windows, as trained (a padded one is odd),
                    w = self.detector.window_  # of a machine that ran throughout (a stop's transients are no wear)
                    ran = len(rows) >= w and self.status.ran_throughout(self.times[-w], self.times[-1] + step_ms)
                    self.raw.append(clean(rows[:, self.columns])[-w:] if ran
                                    else np.full((w, len(self.columns)), np.nan))


def forecast_due(feeds: list[MachineFeed]) -> Iterator[tuple[MachineFeed, Forecast, int, int, int]]:
    """Forecast every window the feeds have due, one batched pass per model, in order; clears them.

    Yields (feed, forecast, row in it, minute of the window's end in ms, rows in the window).
    """
    by_model: dict[tuple[int, int], list[MachineFeed]] = {}
    for f in feeds:
        if f.due:
            by_model.setdefault((id(f.model), id(f.detector)), []).append(f)
    for group in by_model.values():
        work = [(f, t, n) for f in group for _, t, n in f.due]
        fc = group[0].model.predict_windows(np.stack([w for f in group for w, _, _ in f.due]))
        detector = group[0].detector
        if detector is not None:
            fc = with_anomaly(fc, detector, np.stack([r for f in group for r in f.raw]))
        for f in group:
            f.due.clear()
            f.raw.clear()
        for i, (f, t, n) in enumerate(work):
            yield f, fc, i, t, n


def with_anomaly(fc: Forecast, detector: ConditionalVAE, raw: np.ndarray) -> Forecast:
    """The forecast with one more mode, ANOMALY: the detector's anomaly probability of each raw window
    (0 where the window is not whole yet or still has a gap), so the alert hysteresis treats it like a fault mode."""
    gaps = np.isnan(raw).any(axis=(1, 2))
    p = np.zeros(len(raw))
    if (~gaps).any():
        p[~gaps] = detector.anomaly_probability(raw[~gaps])
    alerting = None if fc.alerting is None else np.append(fc.alerting, True)
    return Forecast(fc.rul, fc.low, fc.high, np.column_stack([fc.proba, p]), [*fc.modes, ANOMALY], alerting)


def anomaly_detectors(folder: Path, bundle: Bundle) -> dict[str, ConditionalVAE]:
    """The VAEs of a `twin synth train` folder, by the bundle's machine type they score; raises ValueError
    (with the fix) when a type's VAE and model disagree on sensors or a VAE has no calibrated threshold."""
    from predictors.synth import ConditionalVAE, load_generators

    out: dict[str, ConditionalVAE] = {}
    for group, kinds in load_generators(folder).items():
        vae = kinds.get("vae")
        if not isinstance(vae, ConditionalVAE) or group not in bundle:
            continue
        missing = sorted(set(vae.features_) - set(bundle[group]["model"].prep_.features or []))  # type: ignore[union-attr]
        if missing:
            raise ValueError(f"{folder}/{group}: the VAE reads sensors {', '.join(missing)} that the {group} "
                             "forecasting model does not; train both on runs of the same line")
        vae.threshold  # noqa: B018  (raises the retrain hint now, not mid-stream)
        out[group] = vae
    if not out:
        raise ValueError(f"{folder}: no VAE here for a machine type of the models ({', '.join(bundle)}); "
                         "give a folder from `twin synth train --kind vae` on runs of the same line")
    return out


ENDED = ("finished", "stopped", "failed")  # run statuses after which a run's alerts are over


@dataclass(frozen=True)
class RunEnded:
    """A run's status said it has ended."""

    run: str


class LiveForecaster:
    """Subscribes to a line's telemetry, forecasts every machine a model knows, publishes alerts."""

    def __init__(self, url: BrokerURL, bundle: Bundle, *, prefix: str = "+/+/+", interval: int = 1,
                 rule: AlertRule | None = None, protocol: int | None = None, client_id: str | None = None,
                 record: bool = False, detectors: dict[str, ConditionalVAE] | None = None,
                 desk: AlarmDesk | None = None, key: bytes | None = None) -> None:
        self.url, self.bundle, self.prefix, self.interval = url, bundle, prefix, interval
        self.key = key  # signs each alert (the run's predictive policy acts only on signed ones)
        self.desk = desk  # files each alert in the alarm book and notifies, with or without a dashboard open
        self.desk_problem = ""
        self.detectors = detectors or {}
        self.rule = rule or AlertRule()
        self.protocol = protocol if protocol is not None else negotiate(url)
        self.client = make_client(url, client_id or f"linetwin-predict-{uuid.uuid4().hex[:12]}",
                                  protocol=self.protocol)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._queue: queue.Queue[tuple[str, Telemetry | StateChange | RunEnded]] = queue.Queue()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._worker = threading.Thread(target=self._loop, name="forecaster", daemon=True)
        self.machines: dict[tuple[str, int, str], MachineFeed] = {}
        self._status: dict[tuple[str, int, str], MachineStatus] = {}  # from the state topic, feed or not yet
        self._by_name = {m: g for g, models in bundle.items() for m in _trained_machines(models["model"])}
        self.latest: dict[tuple[str, int, str], dict[str, Any]] = {}
        self.trace: list[tuple[str, int, str, int, float, float]] | None = [] if record else None
        self.alerts: list[dict[str, Any]] = []
        self.forecasts = 0
        self.received = 0
        self.rejected = 0
        self.unknown: set[str] = set()
        self.mismatched: dict[str, str] = {}  # machine -> its sensors whose units differ from its model's
        self._sent: deque[mqtt.MQTTMessageInfo] = deque(maxlen=10_000)

    # --- network thread ----------------------------------------------------------------------------
    def start(self) -> LiveForecaster:
        self._worker.start()
        connect(self.client, self.url)
        subscribe_confirmed(self.client, self.url, self._topics())  # no reading published after is missed
        return self

    def _topics(self) -> list[tuple[str, int]]:
        return [(f, 1) for f in [*line_filters(self.prefix), f"{self.prefix}/run"]]

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not getattr(rc, "is_failure", False):
            client.subscribe(self._topics())  # a reconnect renews the subscriptions

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/run"):  # a run's status: when it ends, its alerts end with it
            try:
                doc = orjson.loads(msg.payload)
            except orjson.JSONDecodeError:
                return
            if isinstance(doc, dict) and doc.get("status") in ENDED and isinstance(doc.get("run"), str):
                self._idle.clear()
                self._queue.put((msg.topic, RunEnded(doc["run"])))
            return
        try:
            item = parse(msg.topic, msg.payload)
        except (ParseError, Exception):  # the ingest dead-letters it; here it is only skipped
            self.rejected += 1
            return
        if isinstance(item, Telemetry):
            self.received += 1
        self._idle.clear()
        self._queue.put((msg.topic, item))

    # --- worker ------------------------------------------------------------------------------------
    def _machine(self, topic: str, tel: Telemetry) -> MachineFeed | None:
        key = (tel.run, tel.replication, tel.machine)
        m = self.machines.get(key)
        if m is not None:
            return m
        group = self._by_name.get(tel.machine)
        if group is None:  # a machine the training did not see: a model whose sensors it has
            group = next((g for g, models in self.bundle.items()
                          if set(models["model"].prep_.features or []) == set(tel.units)), None)  # type: ignore[union-attr]
        if group is None:
            if tel.machine not in self.unknown:  # said as it happens: `twin predict` on a plant runs for weeks
                log.warning("%s: not forecast: no model was trained on a machine of that name, and none reads exactly "
                            "its sensors (%s); name it as in the training runs, or train on its data",
                            tel.machine, ", ".join(sorted(tel.units)) or "none yet")
            self.unknown.add(tel.machine)
            return None
        if tel.machine in self.mismatched:
            return None
        if wrong := self.bundle[group]["model"].unit_mismatch(tel.units):  # type: ignore[union-attr]
            self.mismatched[tel.machine] = wrong  # forecast as if in the model's units, it would alert wrongly
            log.warning("%s: not forecast, its units differ from its model's: %s; convert them (the connector's unit "
                        "mapping) or train on data in these units", tel.machine, wrong)
            return None
        m = MachineFeed.for_model(key, group, self.bundle[group]["model"], topic.rsplit("/", 1)[0] + "/alerts",
                                  self.rule, self.interval, self.detectors.get(group))
        m.status = self._status.setdefault(key, m.status)
        m.status.modes = frozenset(m.model.modes_)  # what the state topic said so far, read for this model
        self.machines[key] = m
        return m

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                items = [self._queue.get(timeout=0.2)]
            except queue.Empty:
                self._idle.set()
                continue
            while len(items) < 2000:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._handle(items)
            except Exception:  # keep forecasting the other machines
                log.exception("forecasting failed for a batch of telemetry")

    def _handle(self, items: list[tuple[str, Telemetry | StateChange | RunEnded]]) -> None:
        touched: dict[tuple[str, int, str], MachineFeed] = {}
        ended: list[str] = []
        for topic, tel in items:
            if isinstance(tel, RunEnded):
                ended.append(tel.run)  # after this batch's forecasts, which came before the run's end
                continue
            if isinstance(tel, StateChange):
                status = self._status.setdefault((tel.run, tel.replication, tel.machine), MachineStatus())
                for state, ts, reason in tel.changes:
                    status.add(ts, state, reason)
                continue
            m = self._machine(topic, tel)
            if m is None or not tel.values:
                continue
            m.add(tel.sensors, tel.ts_ms, tel.values, m.step_ms)
            touched[m.key] = m
        for m, fc, i, t, n in forecast_due(list(touched.values())):
            self.forecasts += 1
            self._decide(m, fc, i, t, n)
        for run in ended:
            for m in [m for m in self.machines.values() if m.key[0] == run and m.state.active]:
                self._end(m)

    def _decide(self, m: MachineFeed, fc: Forecast, i: int, t: int, n: int) -> None:
        p, mode = float(fc.p_alert[i]), str(fc.alert_mode[i])
        self.latest[m.key] = {"ts": t, "rul": float(fc.rul[i]), "low": float(fc.low[i]), "high": float(fc.high[i]),
                              "p": p, "mode": mode}
        if self.trace is not None:
            self.trace.append((*m.key, t, float(fc.rul[i]), p))
        transition = m.state.update(t, p, mode, m.status.at(t + m.step_ms))  # the forecast's minute has ended
        if transition is None:
            return
        run, rep, machine = m.key
        step_ms = m.step_ms
        alert = {"run": run, "replication": rep, "line": "/".join(m.topic.split("/")[:3]),
                 "station": m.topic.split("/")[3], "machine": machine, "state": transition,
                 "severity": m.state.severity, "fault_mode": m.state.mode if transition != "cleared" else mode,
                 "probability": round(p, 4),
                 "probabilities": {md: round(float(fc.proba[i, j]), 4) for j, md in enumerate(fc.modes)},
                 "horizon_s": m.model.horizon,
                 "rul": {"estimate_s": round(float(fc.rul[i]), 1), "low_s": round(float(fc.low[i]), 1),
                         "high_s": round(float(fc.high[i]), 1)},
                 "model": _model_info(m.model),
                 "evidence": {"from": int(t - (n - 1) * step_ms), "to": int(t + step_ms), "rows": n,
                              "sensors": list(m.index)},
                 "since": int(m.state.since), "ts": int(t + step_ms)}
        self._publish(m, alert)

    def _end(self, m: MachineFeed) -> None:
        """Clear a machine's active alert because its run has ended (the retained alert is replaced: a finished run
        shows no active alerts)."""
        last = self.latest.get(m.key, {})
        m.state.active, m.state.severity = False, "info"
        run, rep, machine = m.key
        ts = int(last.get("ts", m.state.since)) + m.step_ms
        alert = {"run": run, "replication": rep, "line": "/".join(m.topic.split("/")[:3]),
                 "station": m.topic.split("/")[3], "machine": machine, "state": "cleared", "severity": "info",
                 "fault_mode": m.state.mode, "probability": round(float(last.get("p", 0.0)), 4),
                 "rul": {k: round(float(last.get(v, 0.0)), 1) for k, v in (("estimate_s", "rul"), ("low_s", "low"),
                                                                            ("high_s", "high"))},
                 "reason": "run ended", "probabilities": {}, "horizon_s": m.model.horizon,
                 "model": _model_info(m.model),
                 "evidence": {"from": ts, "to": ts, "rows": 0, "sensors": list(m.index)},
                 "since": int(m.state.since), "ts": ts}
        self._publish(m, alert)

    def _publish(self, m: MachineFeed, alert: dict[str, Any]) -> None:
        """Publish an alert (retained, signed with the run's key if there is one) and file it in the alarm book."""
        self.alerts.append({**alert, "received": time.time()})
        self._sent.append(self.client.publish(m.topic, alert_payload(alert, self.key), qos=1, retain=True))
        if self.desk is not None:
            try:
                self.desk.receive(alert)
            except LedgerError as e:  # the alert is out on MQTT all the same; say why the book misses it
                self.desk_problem = str(e)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every telemetry message received so far has been forecast from."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.empty() and self._idle.wait(0.3) and self._queue.empty():
                return True
        return False

    def stop(self) -> None:
        self._stop.set()
        self._worker.join(timeout=10)
        for info in self._sent:  # alerts already handed to paho reach the broker before we leave
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                info.wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()


def _model_info(model: Estimator) -> dict[str, str]:
    """Which model an alert comes from: kind, linetwin version, training time and its data's fingerprint."""
    meta = model.meta_
    return {"kind": model.kind, "version": f"linetwin {meta.get('linetwin', '?')}", "trained": meta.get("trained", ""),
            "data": meta.get("data", {}).get("fingerprint", "")}


def _trained_machines(model: Estimator) -> set[str]:
    """Machine names a twin-trained model saw (units are run/replication/machine)."""
    units = [*model.meta_.get("train_units", []), *model.meta_.get("valid_units", [])]
    return {u.rsplit("/", 1)[-1] for u in units if u.count("/") >= 2}
