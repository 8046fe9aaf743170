"""The ingest: subscribe to a line's telemetry and states, write them into the store, lose nothing.

MQTT 5 shared subscription ($share/GROUP/...) so several workers split the load; a durable session
(clean_start off, session expiry) so what was published while a worker was down reaches it when it
returns; QoS 1 with manual acknowledgement only after the rows are in the store, and idempotent
writes, so a redelivered message is stored once. `on_message` only parses (a pure function) and
queues; a writer thread does all I/O. Malformed messages are counted and sent to the dead-letter
topic with the reason; the ingest keeps running.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pandas as pd

from twin.bus.broker import BrokerURL, connect, make_client, negotiate
from twin.bus.payloads import ParseError, StateChange, Telemetry, deadletter_payload, line_filters, parse
from twin.store import Store

log = logging.getLogger("linetwin.ingest")


class Ingest:
    """One ingest worker: MQTT in, store out."""

    def __init__(self, url: BrokerURL, store: Store, *, prefix: str = "+/+/+", group: str = "linetwin-ingest",
                 client_id: str | None = None, protocol: int | None = None, flush_interval: float = 0.1,
                 max_rows: int = 50_000) -> None:
        self.url, self.store, self.prefix, self.group = url, store, prefix, group
        self.protocol = protocol if protocol is not None else negotiate(url)
        self.client = make_client(url, client_id or f"linetwin-ingest-{uuid.uuid4().hex[:12]}",
                                  protocol=self.protocol, manual_ack=True, durable=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.flush_interval, self.max_rows = flush_interval, max_rows
        self._queue: queue.Queue[tuple[int, int, Telemetry | StateChange]] = queue.Queue()
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        self._known_series: set[tuple[str, str, str]] = set()
        self._closing = False
        self.expected: dict[str, int] = {}
        self.received = 0
        self.stored = 0
        self.rejected = 0
        self.write_errors = 0

    @property
    def shared(self) -> bool:
        return self.protocol == mqtt.MQTTv5

    def filters(self) -> list[str]:
        topics = line_filters(self.prefix)
        return [f"$share/{self.group}/{t}" for t in topics] if self.shared else topics

    def start(self) -> Ingest:
        self._writer.start()
        connect(self.client, self.url, durable=True)
        self._subscribe(self.client)
        return self

    def _subscribe(self, client: mqtt.Client) -> None:
        client.subscribe([(f, 1) for f in self.filters()])
        client.subscribe(f"{self.prefix}/run", 1)  # run status (retained): how many readings a run sent

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not getattr(rc, "is_failure", False):
            self._subscribe(client)  # a reconnect renews the subscriptions

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._closing:
            return  # not acknowledged: the broker delivers it again to the next worker
        if msg.topic.endswith("/run"):
            self._run_status(msg.payload)
            if msg.qos:
                client.ack(msg.mid, msg.qos)
            return
        self.received += 1
        try:
            item = parse(msg.topic, msg.payload)
        except ParseError as e:
            self.rejected += 1
            self._dead_letter(msg.topic, msg.payload, str(e))
            if msg.qos:
                client.ack(msg.mid, msg.qos)
            return
        except Exception as e:  # never raise on the network thread
            self.rejected += 1
            self._dead_letter(msg.topic, msg.payload, f"unexpected: {e!r}")
            if msg.qos:
                client.ack(msg.mid, msg.qos)
            return
        self._queue.put((msg.mid, msg.qos, item))

    def _run_status(self, payload: bytes) -> None:
        try:
            status = json.loads(payload)
            if status.get("status") == "finished" and isinstance(status.get("readings"), int):
                self.expected[str(status["run"])] = status["readings"]
        except (ValueError, AttributeError):
            log.warning("ignored a malformed run status message")

    def finished_runs_complete(self) -> bool:
        """True once every run announced as finished has all its readings in the store."""
        return bool(self.expected) and all(self.store.count(r) >= n for r, n in self.expected.items())

    def _dead_letter(self, topic: str, payload: bytes, reason: str) -> None:
        levels = topic.split("/")
        prefix = "/".join(levels[:3]) if len(levels) >= 3 and "" not in levels[:3] else "linetwin"
        log.warning("rejected a message on %s: %s", topic, reason)
        self.client.publish(f"{prefix}/deadletter", deadletter_payload(topic, payload, reason,
                                                                       int(time.time() * 1000)), qos=1)

    def _write_loop(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            items = []
            deadline = time.monotonic() + self.flush_interval
            rows = 0
            while rows < self.max_rows:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                items.append(item)
                rows += len(item[2].values) if isinstance(item[2], Telemetry) else 1
            if items:
                self._write(items)

    def _write(self, items: list[tuple[int, int, Telemetry | StateChange]]) -> None:
        tel = [it for _, _, it in items if isinstance(it, Telemetry)]
        states = [it for _, _, it in items if isinstance(it, StateChange)]
        try:
            if tel:
                frame = pd.DataFrame({
                    "run": [t.run for t in tel for _ in t.values],
                    "replication": [t.replication for t in tel for _ in t.values],
                    "machine": [t.machine for t in tel for _ in t.values],
                    "sensor": [s for t in tel for s in t.sensors],
                    "ts": pd.to_datetime([x for t in tel for x in t.ts_ms], unit="ms"),
                    "value": [v for t in tel for v in t.values],
                })
                self.store.write(frame)
                self.stored += len(frame)
                new = {(t.run, t.machine, s): (t.station, t.units.get(s, "")) for t in tel for s in t.units
                       if (t.run, t.machine, s) not in self._known_series}
                if new:
                    self.store.write_series(pd.DataFrame(
                        [(r, m, st, s, u) for (r, m, s), (st, u) in new.items()],
                        columns=["run", "machine", "station", "sensor", "unit"]))
                    self._known_series.update(new)
            if states:
                self.store.write_states(pd.DataFrame(
                    [(c.run, c.replication, c.machine, pd.Timestamp(ts, unit="ms"), state)
                     for c in states for state, ts in c.changes],
                    columns=["run", "replication", "machine", "ts", "state"]))
        except Exception:
            self.write_errors += 1
            log.exception("store write failed; the messages stay unacknowledged and will be redelivered")
            return
        for mid, qos, _ in items:
            if qos:
                self.client.ack(mid, qos)

    def wait_for(self, run: str, readings: int, timeout: float) -> bool:
        """Wait until the store holds `readings` readings of `run`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.store.count(run) >= readings:
                return True
            time.sleep(0.1)
        return self.store.count(run) >= readings

    def stop(self) -> None:
        """Write and acknowledge what was received, then disconnect (the session stays for the next start)."""
        self._closing = True
        self._stop.set()
        self._writer.join(60)
        self.client.disconnect()
        self.client.loop_stop()
