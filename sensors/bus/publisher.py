"""The twin's publisher: readings and states to MQTT without ever blocking the simulation.

The simulation thread encodes messages into an `Outbox` (sensors/bus/spool.py); a publisher thread hands them to
paho (QoS 1) as fast as the broker acknowledges. While the broker is away, messages wait: in memory up to a bound,
then spilled to a SQLite file next to the run, so an outage loses nothing.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pandas as pd

from sensors.bank import Readings
from sensors.bus.broker import BrokerError, BrokerURL, connect, make_client
from sensors.bus.payloads import (
    SCHEMA_KPI,
    LineTopics,
    buffers_payload,
    encode,
    state_payload,
    status_payload,
    telemetry_payload,
)
from sensors.bus.spool import Message, Outbox
from twin.model import Line
from twin.truth import ProductFollower, StateFollower

NO_MATCHING_SUBSCRIBERS = 16  # MQTT 5 PUBACK reason code
NOT_AUTHORIZED = 135  # MQTT 5 reason code of a PUBACK or DISCONNECT for a publish the ACL denies
HOLD_EVERY = 100  # messages queued between two calls of a flat-out run's flow control


class Publisher:
    """Publishes a line's readings, states, KPIs and run status; `on_readings` plugs into `simulate`."""

    def __init__(self, url: BrokerURL, topics: LineTopics, run_id: str, start_ms: int, *, spill_dir: Path,
                 protocol: int = mqtt.MQTTv5, batch: int = 200, window: int = 2000,
                 max_memory: int = 64 << 20, require_subscriber: bool = True) -> None:
        self.url, self.topics, self.run_id, self.start_ms, self.batch = url, topics, run_id, start_ms, batch
        self.outbox = Outbox(spill_dir / f"outbox-{uuid.uuid4().hex[:8]}.sqlite", max_memory)
        self.client = make_client(url, f"linetwin-twin-{uuid.uuid4().hex[:12]}", protocol=protocol)
        self.client.max_queued_messages_set(window)
        self.client.on_publish = self._on_publish
        self.readings_published = 0
        self.data_messages = 0  # messages of readings, states and levels: what the run's ingest takes off the broker
        self.messages_sent = 0
        self.acked = 0
        self.unheard = 0
        self.require_subscriber = require_subscriber
        self._inflight: dict[int, Message] = {}
        self._acked_mids: set[int] = set()
        self._unheard: list[int] = []
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="mqtt-publisher", daemon=True)
        self._catalog: pd.DataFrame | None = None
        self._states = StateFollower()
        self._products = ProductFollower()
        self.refused: BrokerError | None = None

    def start(self) -> Publisher:
        connect(self.client, self.url)
        self.client.on_disconnect = self._on_disconnect  # after connect(), which sets its own while it waits
        self._thread.start()
        return self

    def _refuse(self, topic: str, reason: str) -> None:
        if self.refused is None:
            user = self.url.username or "an anonymous client"
            self.refused = BrokerError(
                f"the MQTT broker at {self.url} refused to let {user} publish to {topic} ({reason}); give that user "
                f"write access to {self.topics.prefix}/# in the broker's ACL (docs/mqtt.md), or use another user",
                "refused")
            with self._lock:
                self._lock.notify_all()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if getattr(rc, "value", 0) == NOT_AUTHORIZED:  # MQTT 5: the broker dropped us for a publish it denies
            with self._lock:
                topics = sorted({m[0] for m in self._inflight.values()})
            self._refuse(topics[0] if topics else self.topics.prefix, str(rc))

    def check(self) -> None:
        """Raise the broker's refusal, once one came: the run stops with it instead of waiting for nothing."""
        if self.refused is not None:
            raise self.refused

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        if getattr(rc, "is_failure", False) and getattr(rc, "value", 0) != NO_MATCHING_SUBSCRIBERS:
            with self._lock:
                msg = self._inflight.get(mid)
            self._refuse(msg[0] if msg else self.topics.prefix, str(rc))
        with self._lock:
            if getattr(rc, "value", 0) == NO_MATCHING_SUBSCRIBERS:
                # MQTT 5 says nobody got it (e.g. the ingest has not re-subscribed after a broker restart):
                # keep the message and send it again shortly instead of losing it
                self._unheard.append(mid)
            self._acked_mids.add(mid)
            self._lock.notify_all()

    def _settle(self) -> None:
        """Match acknowledgements to the messages they answer; requeue the ones nobody received."""
        with self._lock:
            retry = []
            for mid in [m for m in self._unheard if m in self._inflight]:
                self._unheard.remove(mid)
                msg = self._inflight[mid]
                if self.require_subscriber and not msg[2]:  # retained ones wait in the broker anyway
                    retry.append(msg)
            if retry:  # back in the queue before they count as acknowledged, so flush() waits for them
                self.unheard += len(retry)
                self.outbox.put_front(retry)
            for mid in [m for m in self._acked_mids if m in self._inflight]:
                self._acked_mids.discard(mid)
                del self._inflight[mid]
                self.acked += 1
            self._lock.notify_all()
        if retry:
            self._stop.wait(0.2)  # give subscribers a moment to come back

    def _pump(self) -> None:
        while not self._stop.is_set():
            self._settle()
            msg = self.outbox.peek(0.05)
            if msg is None:
                continue
            info = self.client.publish(msg[0], msg[1], qos=1, retain=msg[2])
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # paho's window is full: wait for acknowledgements
                with self._lock:
                    self._lock.wait(0.05)
                continue
            self.outbox.pop()
            with self._lock:
                self._inflight[info.mid] = msg
                self.messages_sent += 1

    # --- what the simulation hands over ----------------------------------------------------------
    def set_catalog(self, catalog: pd.DataFrame) -> None:
        self._catalog = catalog.reset_index(drop=True)
        self._units = {m: dict(zip(g.sensor, g.unit)) for m, g in self._catalog.groupby("machine", sort=False)}
        self._machine_of = self._catalog.machine.to_numpy(dtype=object)
        self._sensor_of = self._catalog.sensor.to_numpy(dtype=object)
        self._station_of = dict(zip(self._catalog.machine, self._catalog.station))

    def on_readings(self, line: Line, batch: Readings, hold: Callable[[], None] | None = None) -> None:
        """Encode one chunk of readings (per machine, `batch` readings a message) and queue them; `hold()` is called
        before each HOLD_EVERY messages go into the queue (a flat-out run's flow control: however large a chunk,
        what the ingest has not taken yet stays bounded)."""
        if self._catalog is None:
            raise RuntimeError("Publisher.set_catalog() must be called before readings are published")
        self.check()
        # states first: a state change reaches subscribers before the readings it explains (the forecaster
        # holds alerts of stopped machines by it)
        messages: list[Message] = self._state_messages(line)
        if len(batch):
            machine_of = self._machine_of[batch.series]
            ts = self.start_ms + np.rint(batch.t * 1000).astype(np.int64)
            order = np.argsort(machine_of, kind="stable")
            machines, starts = np.unique(machine_of[order], return_index=True)
            bounds = [*starts.tolist(), len(order)]
            for k, machine in enumerate(machines):
                idx = order[bounds[k]:bounds[k + 1]]
                rows = list(zip(self._sensor_of[batch.series[idx]].tolist(), ts[idx].tolist(),
                                batch.value[idx].tolist()))
                station = self._station_of[machine]
                topic = self.topics.telemetry(station, machine)
                for i in range(0, len(rows), self.batch):
                    messages.append((topic, telemetry_payload(self.run_id, line.replication, station, machine,
                                                              self._units[machine], rows[i:i + self.batch]), False))
            self.readings_published += len(batch)
        levels = line.buffer_levels()
        if levels:
            now_ms = self.start_ms + round(line.env.now * 1000)
            messages.append((self.topics.buffers, buffers_payload(self.run_id, line.replication, now_ms, levels), True))
        for m, t, product in self._products.new(line):  # not retained: the line's retained message is its levels'
            messages.append((self.topics.buffers, buffers_payload(self.run_id, line.replication,
                                                                  self.start_ms + round(t * 1000), {},
                                                                  {m.name: product}), False))
        for i in range(0, len(messages), HOLD_EVERY):
            if hold is not None:
                hold()
            part = messages[i:i + HOLD_EVERY]
            self.data_messages += len(part)
            self.outbox.put_many(part)

    def _state_messages(self, line: Line) -> list[Message]:
        out = []
        for m, t, states, reasons in self._states.new(line):
            changes = [(state, self.start_ms + round(when * 1000), reason)
                       for when, state, reason in zip(t.tolist(), states.tolist(), reasons.tolist())]
            out.append((self.topics.state(m.station.name, m.name),
                        state_payload(self.run_id, line.replication, m.station.name, m.name, changes), True))
        return out

    def new_replication(self) -> None:
        self._states = StateFollower()  # the last replication's cursors are not needed any more
        self._products = ProductFollower()

    def publish_kpis(self, replication: int, kpis: pd.DataFrame, t: float | None = None) -> None:
        """The line's KPIs of a replication: when it has finished (t None), or so far, at simulated second t."""
        line = kpis[kpis.scope == "line"]
        values = {k: (None if pd.isna(v) else float(v)) for k, v in zip(line.kpi, line.value)}
        doc = {"schema": SCHEMA_KPI, "run": self.run_id, "replication": replication, "kpis": values,
               "final": t is None, **({} if t is None else {"t": round(t, 3)})}
        self.outbox.put_many([(self.topics.kpi, encode(doc), True)])

    def publish_status(self, status: str, **extra: Any) -> None:
        self.outbox.put_many([(self.topics.run, status_payload(self.run_id, status, **extra), True)])

    def flush(self, timeout: float = 600.0) -> bool:
        """Wait until every queued message has been acknowledged by the broker."""
        deadline = time.monotonic() + timeout
        while not self.outbox.wait_empty(min(1.0, max(0.0, deadline - time.monotonic()))):
            self.check()
            if time.monotonic() >= deadline:
                return False
        while True:
            self.check()
            with self._lock:
                if self.acked >= self.messages_sent and not len(self.outbox):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.2))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()
        self.outbox.close()  # a spill file still holding messages stays, for the next run to see
