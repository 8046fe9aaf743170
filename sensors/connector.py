"""The running connector of `twin connect`: the plant's data in (its MQTT broker with JSON mappings and Sparkplug B,
or its OPC UA server), the twin's messages out on the twin's broker, the rest dead-lettered with the reason. The
mapping itself is sensors/connect.py; the protocols sensors/sparkplug.py and sensors/opcua.py."""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from typing import Any

from sensors.bus.broker import BrokerURL, connect, make_client, subscribe_confirmed
from sensors.bus.payloads import deadletter_payload, status_payload
from sensors.connect import ConnectorConfig, Translated, Unmapped, translate
from sensors.ingest import Ingest
from sensors.opcua import OpcUaReader
from sensors.sparkplug import SparkplugReader
from sensors.store.base import Store


class Connector:
    """Brings the plant's data onto the twin's broker: from the plant's broker (JSON mappings, Sparkplug B) or its OPC
    UA server; translated messages are republished, the rest dead-lettered with the reason."""

    def __init__(self, cfg: ConnectorConfig) -> None:
        self.cfg = cfg
        self.opc = cfg.source.startswith("opc.tcp://")
        self.source = None if self.opc else BrokerURL.parse(cfg.source)
        self.target = BrokerURL.parse(cfg.target) if cfg.target else self.source
        assert self.target is not None
        self.topics = cfg.topics
        # the plant's broker keeps a durable session for the connector, one per run: what the plant publishes at QoS 1
        # while the connector restarts (or the broker does) reaches it when it is back, within 24 h
        # A plant message is acknowledged to its broker only once the twin's broker has what it became (`_settle`):
        # while the twin's broker is away the plant's keeps the messages (memory here stays bounded by what that
        # broker lets in flight), and a connector stopped meanwhile loses none.
        same = self.target == self.source
        self.pub = make_client(self.target, f"linetwin-connect-{cfg.run}" if same else
                               f"linetwin-connect-out-{uuid.uuid4().hex[:8]}", durable=same, manual_ack=same)
        self.sub = None
        if self.source is not None:
            self.sub = self.pub if same else make_client(self.source, f"linetwin-connect-{cfg.run}", durable=True,
                                                         manual_ack=True)
        self.pub.on_publish = self._on_publish
        # in arrival order: the plant message's (mid, QoS) to acknowledge, and the mids of ours not yet acknowledged
        self._owed: deque[tuple[tuple[int, int] | None, set[int]]] = deque()
        self._waiting: dict[int, set[int]] = {}  # a mid we published -> the set it is in
        self._early: set[int] = set()  # mids the twin's broker acknowledged before they were filed
        self._announced = threading.Event()  # the run's `started` status goes out before any of its messages
        self.forwarded = self.dead = 0
        self._data: set[int] = set()  # mids of our readings and states messages not acknowledged yet
        self.held = self.lost = 0  # at the stop: plant messages left with the plant's broker; messages lost
        self.stopped_mark: str | None = None  # the mark announced last at the stop, once the twin's broker had it
        self._states: dict[tuple[str, str], tuple[str, str]] = {}
        self._lock = threading.Lock()
        self.sparkplug = None
        if cfg.sparkplug is not None:
            self.sparkplug = SparkplugReader(cfg)
        self.opcua: Any = None
        if cfg.opcua is not None:
            self.opcua = OpcUaReader(cfg, self)

    def start(self) -> Connector:
        def announce(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:  # again after every reconnect
            self._announce()

        self.pub.on_connect = announce
        if self.sub is not None:
            self.sub.on_message = self._on_message  # before connecting: a resumed session delivers at once
        connect(self.pub, self.target, durable=self.sub is self.pub)  # type: ignore[arg-type]
        announce(self.pub, None, None, None, None)  # the ingest takes the plant's messages after it
        self._announced.set()
        if self.sub is not None:
            filters = list(self.cfg.filters) + ([self.sparkplug.filter] if self.sparkplug else [])

            def subscribe(c: Any) -> None:
                c.subscribe([(f, 1) for f in filters])

            def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:  # again after every reconnect
                subscribe(c)
                if c is self.pub:
                    announce(c, u, f, rc, p)

            if self.sub is not self.pub:
                connect(self.sub, self.source, durable=True)  # type: ignore[arg-type]
            self.sub.on_connect = on_connect
            # announced above already: once per connection; confirmed, so nothing the plant publishes from now on is
            # missed (a new session subscribes only now)
            subscribe_confirmed(self.sub, self.source, [(f, 1) for f in filters])  # type: ignore[arg-type]
        if self.opcua is not None:
            self.opcua.start()
        return self

    def _on_message(self, c: Any, u: Any, msg: Any) -> None:
        self._announced.wait(30)
        if msg.topic.startswith(self.topics.prefix + "/"):
            return  # the twin's own topic tree (a wide subscription on a shared broker): ours, not the plant's
        now = int(time.time() * 1000)
        try:
            if self.sparkplug is not None and msg.topic.startswith(self.sparkplug.filter[:-1]):
                with self._lock:
                    out = self.sparkplug.handle(msg.topic, msg.payload, now)
                    asks, self.sparkplug.rebirths = self.sparkplug.rebirths, []
                for topic, payload in asks:
                    ask = self.sub.publish(topic, payload, qos=0)  # type: ignore[union-attr]
                    if self.sub is self.pub:
                        self._file(None, [ask])
            else:
                out = translate(self.cfg, msg.topic, msg.payload, now, self._states)
        except Unmapped as e:
            self.reject(msg.topic, msg.payload, str(e), now, (msg.mid, msg.qos) if msg.qos else None)
            return
        self.send(out, (msg.mid, msg.qos) if msg.qos else None)

    def send(self, out: list[Translated], ack: tuple[int, int] | None = None) -> None:
        """Publish the twin's messages for one plant message (state retained: the line's current state); `ack`: the
        plant message's (mid, QoS), acknowledged to its broker once the twin's broker has them all."""
        infos = [self.pub.publish(t.topic, t.payload, qos=1, retain=t.topic.endswith("/state")) for t in out]
        with self._lock:
            self.forwarded += 1
        self._file(ack, infos, data=True)

    def reject(self, where: str, payload: bytes, reason: str, now_ms: int, ack: tuple[int, int] | None = None) -> None:
        """Dead-letter one plant message with the reason (nothing is dropped silently); `ack` as for `send`."""
        info = self.pub.publish(f"{self.topics.prefix}/deadletter", deadletter_payload(where, payload, reason, now_ms),
                                qos=1)
        with self._lock:
            self.dead += 1
        self._file(ack, [info])

    def _file(self, ack: tuple[int, int] | None, infos: list[Any], data: bool = False) -> None:
        """Owe the plant's broker the acknowledgement `ack` (mid, QoS; None: nothing to acknowledge) until the twin's
        broker has `infos`. Everything this connector publishes is filed, so that the acknowledgement of a mid that
        came back before its filing (`_early`) is always claimed by that very publish. `data`: readings or states."""
        mids = {i.mid for i in infos}
        with self._lock:
            out = mids - self._early
            self._early -= mids
            if data:
                self._data |= out
            self._owed.append((ack, out))
            for m in out:
                self._waiting[m] = out
            self._settle()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._lock:
            waiting = self._waiting.pop(mid, None)
            self._data.discard(mid)
            if waiting is None:
                self._early.add(mid)  # filed a moment later (another thread), or not a plant message's
            else:
                waiting.discard(mid)
                self._settle()

    def _settle(self) -> None:
        """Acknowledge to the plant's broker, in the order they came (MQTT's rule), the messages the twin's broker
        has all of (called with the lock held)."""
        while self._owed and not self._owed[0][1]:
            ack, _ = self._owed.popleft()
            if ack is not None:
                self.sub.ack(*ack)  # type: ignore[union-attr]

    def _announce(self, mark: str | None = None) -> None:
        """The run's `started` status (retained); with a `mark`, after everything published so far: a store's
        ingest that has received the mark has received all of that."""
        extra = {"mark": mark} if mark else {}
        self._file(None, [self.pub.publish(self.topics.run, status_payload(self.cfg.run, "started", source="plant",
                                                                           **extra), qos=1, retain=True)])

    def _drained(self, deadline: float) -> bool:
        """Wait until the twin's broker has acknowledged everything published (or `deadline`, monotonic)."""
        while self._owed and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._owed

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading the plant, let the twin's broker acknowledge what was published (up to `timeout` s: paho
        holds unsent messages in memory only), then disconnect. What it did not acknowledge is counted: plant messages
        left with the plant's broker (`held`: it sends them again at the next start), and messages of sources that
        cannot be held back, OPC UA values and QoS 0 Sparkplug data (`lost`)."""
        if self.opcua is not None:
            self.opcua.stop()
        if self.sub is not None and self.sub is not self.pub:
            self.sub.disconnect()  # nothing more comes in while the last messages go out
        deadline = time.monotonic() + timeout
        if self._drained(deadline):
            mark = uuid.uuid4().hex
            self._announce(mark)
            self.stopped_mark = mark if self._drained(deadline) else None
        with self._lock:
            self.held = sum(ack is not None for ack, _ in self._owed)
            self.lost = sum(len(out & self._data) for ack, out in self._owed if ack is None)
        for client in {id(c): c for c in (self.sub, self.pub) if c is not None}.values():
            client.loop_stop()
            client.disconnect()


STORE_WAIT = 30.0  # seconds a stopping connector waits for its store's ingest to take what it published


def store_ingest(conn: Connector, store: Store) -> Ingest:
    """The ingest that stores what a connector forwards (`twin connect --store`): one session per run, under a
    fixed client id, so what a stop could not wait for is taken by the run's next connector."""
    run = conn.cfg.run
    return Ingest(conn.target, store, prefix=conn.topics.prefix, group=f"linetwin-connect-{run}",
                  client_id=f"linetwin-connect-store-{run}", session="run")


def stop_stored(conn: Connector, sink: Ingest, timeout: float = STORE_WAIT) -> bool:
    """Stop the connector, then its store's ingest once that has received everything the twin's broker had
    queued for it before the connector's last message, its stop mark (what an earlier stop left in the session
    included), so that a stop loses nothing. False when it had not within `timeout` s: the rest then stays queued in
    the ingest's session (kept, not ended) for the run's next connector."""
    conn.stop()
    whole = conn.stopped_mark is not None and sink.wait_mark(conn.stopped_mark, timeout)
    sink.stop(keep_session=not whole)
    return whole
