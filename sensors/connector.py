"""The running connector of `twin connect`: the plant's data in (its MQTT broker with JSON mappings and Sparkplug B,
or its OPC UA server), the twin's messages out on the twin's broker, the rest dead-lettered with the reason. The
mapping itself is sensors/connect.py; the protocols sensors/sparkplug.py and sensors/opcua.py."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from sensors.bus.broker import SESSION_EXPIRY, BrokerError, BrokerURL, connect, make_client, subscribe_confirmed
from sensors.bus.payloads import deadletter_payload, message_key, status_payload
from sensors.bus.spool import Message, Outbox
from sensors.connect import ConnectError, ConnectorConfig, Translated, Unmapped, translate
from sensors.ingest import Ingest
from sensors.opcua import OpcUaReader
from sensors.sparkplug import SparkplugReader
from sensors.store.base import Store
from sensors.store.ledger import home

OUTBOX_MEMORY = 16 << 20  # bytes of unheld sources' messages kept in memory while the twin's broker is away; then disk
OUTBOX_WINDOW = 1000  # of those, messages handed to paho and not yet acknowledged by the twin's broker
log = logging.getLogger(__name__)
Arrival = tuple[str, int, int]  # a plant message's topic, identity (`message_key`) and the time it was received (ms)


def kept_path(cfg: ConnectorConfig, kind: str) -> Path:
    """Where a connector keeps what its config's next start needs: `outbox.sqlite`, the messages the twin's broker had
    not taken at its stop; `stamps.json`, when the plant messages it left with the plant's broker were received."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{cfg.topics.prefix}--{cfg.run}")
    return home() / "connect" / f"{name}.{kind}"


class ReceiveTimes:
    """When the plant messages not acknowledged yet were received, so that one the plant's broker sends again (MQTT's
    DUP flag) gets the time it first came and becomes the same twin messages, stored once. What a stop leaves with the
    plant's broker is kept in a file for the next start. Not locked: the connector calls it under its lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._unacked: dict[int, Arrival] = {}  # the mid of a plant message not acknowledged yet -> its arrival
        self._again = self._read()  # (topic, identity) -> the times of messages to come again

    def _read(self) -> dict[tuple[str, int], deque[int]]:
        out: dict[tuple[str, int], deque[int]] = {}
        try:
            rows = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else []
            for topic, key, received in rows:
                out.setdefault((str(topic), int(key)), deque()).append(int(received))
        except (OSError, ValueError, TypeError) as e:  # our own file, damaged: redelivered messages are stamped anew
            log.warning("%s cannot be read (%s): plant messages sent again without a timestamp get a new one",
                        self.path, e)
        return out

    def stamp(self, mid: int, topic: str, key: int, dup: bool, now: int) -> int:
        """The time of a plant message received `now` (ms): the time it first came if it is one sent again."""
        first = self._again.get((topic, key)) if dup else None
        received = first.popleft() if first else now
        self._unacked[mid] = (topic, key, received)
        return received

    def acknowledged(self, mid: int) -> None:
        """The plant message `mid` is acknowledged to its broker: it will not come again."""
        self._unacked.pop(mid, None)

    def reconnected(self) -> None:
        """After a reconnect to the plant's broker what was not acknowledged comes again: with its first times."""
        for topic, key, received in self._unacked.values():
            self._again.setdefault((topic, key), deque()).append(received)
        self._unacked.clear()

    def left(self, held: list[int], oldest: int) -> list[Arrival]:
        """What the next start needs: the times still waiting for their message (a stop before the plant's broker sent
        it again) received after `oldest` (ms; while that broker may still have it), then those of the messages held
        (their mids) that are left with it now."""
        kept = [(topic, key, t) for (topic, key), times in self._again.items() for t in times if t > oldest]
        return kept + [self._unacked[mid] for mid in held if mid in self._unacked]

    def keep(self, arrivals: list[Arrival]) -> None:
        """Write `left`'s arrivals for the next start (aside, then renamed; no file when there are none)."""
        try:
            if arrivals:
                partial = self.path.with_name(self.path.name + ".writing")
                partial.parent.mkdir(parents=True, exist_ok=True)
                partial.write_text(json.dumps(arrivals), encoding="utf-8")
                partial.replace(self.path)
            else:
                self.path.unlink(missing_ok=True)
        except OSError as e:
            log.warning("%s cannot be written (%s): plant messages sent again without a timestamp get a new one",
                        self.path, e)


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
        self.span: tuple[int, int] | None = None  # first and last time forwarded (line's clock, epoch ms)
        # Sources that cannot be held back (OPC UA values, QoS 0 messages: nothing to acknowledge) go through an outbox
        # instead: while the twin's broker is away their messages wait in memory up to a bound, then on disk, and what
        # is still there at a stop stays on disk for the run's next start (`kept`), sent before anything new.
        path = kept_path(cfg, "outbox.sqlite")
        try:
            self.outbox = Outbox(path, OUTBOX_MEMORY)
        except sqlite3.Error as e:
            raise ConnectError(f"{path}: not a connector's outbox ({e}); it may hold messages an earlier "
                               "`twin connect` of this config kept for this one: move it aside and start "
                               "again") from None
        self._pending: dict[int, Message] = {}  # mid -> outbox message handed to paho, not acknowledged yet
        self._quit = threading.Event()
        self._pump_thread = threading.Thread(target=self._pump, name="connector-outbox", daemon=True)
        self.held = self.kept = 0  # at the stop: plant messages left with the plant's broker; messages kept on disk
        # A plant message without a timestamp field is stamped with the time it is received; one the plant's broker
        # sends again (the connector stopped or lost it before acknowledging) with the time it first came.
        self.received = ReceiveTimes(kept_path(cfg, "stamps.json"))
        self.stopped_mark: str | None = None  # the mark announced last at the stop, once the twin's broker had it
        self._states: dict[tuple[str, str], tuple[str, str]] = {}
        self._lock = threading.Lock()
        self.sparkplug = None
        if cfg.sparkplug is not None:
            self.sparkplug = SparkplugReader(cfg)
        self.opcua: Any = None
        if cfg.opcua is not None:
            self.opcua = OpcUaReader(cfg, self)

    def start(self, stop: threading.Event | None = None) -> Connector:
        """Connect to both brokers (and the OPC UA server) and begin forwarding; `stop` set (Ctrl-C) ends the wait
        for an OPC UA server that is not up yet."""
        try:
            self.outbox.open()
        except OSError as e:
            raise BrokerError(f"{self.outbox.path}: the connector's outbox cannot be written there ({e}); set "
                              "LINETWIN_HOME to a writable folder", "outbox") from None
        try:
            return self._start(stop)
        except BaseException:  # a broker or OPC UA server refused: what the outbox took from its file goes back
            self._keep()
            self._disconnect()
            raise

    def _start(self, stop: threading.Event | None) -> Connector:
        def announce(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:  # again after every reconnect
            self._announce()

        self.pub.on_connect = announce
        if self.sub is not None:
            self.sub.on_message = self._on_message  # before connecting: a resumed session delivers at once
        if not self._reach(self.pub, self.target, self.sub is self.pub, stop):  # type: ignore[arg-type]
            return self  # stopped before the broker came up: nothing to forward
        announce(self.pub, None, None, None, None)  # the ingest takes the plant's messages after it
        self._announced.set()
        self._pump_thread.start()  # what an earlier stop kept goes first
        if self.sub is not None:
            filters = list(self.cfg.filters) + ([self.sparkplug.filter] if self.sparkplug else [])

            def subscribe(c: Any) -> None:
                c.subscribe([(f, 1) for f in filters])

            def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:  # again after every reconnect
                subscribe(c)
                with self._lock:
                    self.received.reconnected()
                if c is self.pub:
                    announce(c, u, f, rc, p)

            if self.sub is not self.pub and not self._reach(self.sub, self.source, True, stop):  # type: ignore[arg-type]
                return self
            self.sub.on_connect = on_connect
            # announced above already: once per connection; confirmed, so nothing the plant publishes from now on is
            # missed (a new session subscribes only now)
            subscribe_confirmed(self.sub, self.source, [(f, 1) for f in filters])  # type: ignore[arg-type]
        if self.opcua is not None:
            self.opcua.start(stop=stop)
        return self

    @staticmethod
    def _reach(client: Any, url: BrokerURL, durable: bool, stop: threading.Event | None) -> bool:
        """Connect to a broker; one not up yet (unreachable, or silent) is tried again with a warning, backing off to
        30 s, until it answers or `stop` is set (False then), as an OPC UA server is: a connector started before the
        plant's broker (at boot) waits for it instead of exiting. A refusal (credentials, settings) is raised at once:
        trying again cannot mend it; so is any failure without a `stop` to end the wait."""
        wait = 1.0
        while True:
            try:
                connect(client, url, durable=durable)
                return True
            except BrokerError as e:
                if e.kind == "refused" or stop is None:
                    raise
                log.warning("%s; trying again in %.0f s (Ctrl-C to give up)", e, wait)
            if stop.wait(wait):
                return False
            wait = min(wait * 2, 30.0)

    def _on_message(self, c: Any, u: Any, msg: Any) -> None:
        self._announced.wait(30)
        if msg.topic.startswith(self.topics.prefix + "/"):
            return  # the twin's own topic tree (a wide subscription on a shared broker): ours, not the plant's
        now = int(time.time() * 1000)
        if msg.qos:
            key = message_key(msg.payload)
            with self._lock:
                now = self.received.stamp(msg.mid, msg.topic, key, msg.dup, now)
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
        plant message's (mid, QoS), acknowledged to its broker once the twin's broker has them all; without one (OPC
        UA, QoS 0) they go through the outbox."""
        stamps = [t.ts for t in out if t.ts is not None]
        with self._lock:
            self.forwarded += 1
            self.dead += sum(t.topic == self.topics.deadletter for t in out)  # a batch's items of bad quality
            if stamps:  # the span of the data forwarded (line's clock): the plant 'run's time range on the dashboard
                first, last = min(stamps), max(stamps)
                self.span = (min(first, self.span[0]), max(last, self.span[1])) if self.span else (first, last)
        self._publish([(t.topic, t.payload, t.topic.endswith("/state")) for t in out], ack)

    def reject(self, where: str, payload: bytes, reason: str, now_ms: int, ack: tuple[int, int] | None = None) -> None:
        """Dead-letter one plant message with the reason (nothing is dropped silently); `ack` as for `send`."""
        with self._lock:
            self.dead += 1
        self._publish([(f"{self.topics.prefix}/deadletter", deadletter_payload(where, payload, reason, now_ms),
                        False)], ack)

    def _publish(self, messages: list[Message], ack: tuple[int, int] | None) -> None:
        if ack is None:
            self.outbox.put_many(messages)
        else:
            self._file(ack, [self.pub.publish(topic, payload, qos=1, retain=retain)
                             for topic, payload, retain in messages])

    def _pump(self) -> None:
        """Hand the outbox's messages to paho in order, at most OUTBOX_WINDOW unacknowledged: while the twin's broker
        is away the rest wait in the outbox, bounded in memory."""
        while not self._quit.is_set():
            with self._lock:
                full = len(self._pending) >= OUTBOX_WINDOW
            msg = None if full else self.outbox.peek(0.05)
            if msg is None:
                if full:
                    self._quit.wait(0.05)
                continue
            info = self.pub.publish(msg[0], msg[1], qos=1, retain=msg[2])
            with self._lock:
                if info.mid not in self._early:  # not acknowledged already
                    self._pending[info.mid] = msg
            self._file(None, [info])  # owed before it leaves the outbox, so `_drained` always sees it in one
            self.outbox.pop()

    def _file(self, ack: tuple[int, int] | None, infos: list[Any]) -> None:
        """Owe the plant's broker the acknowledgement `ack` (mid, QoS; None: nothing to acknowledge) until the twin's
        broker has `infos`. Everything this connector publishes is filed, so that the acknowledgement of a mid that
        came back before its filing (`_early`) is always claimed by that very publish."""
        mids = {i.mid for i in infos}
        with self._lock:
            out = mids - self._early
            self._early -= mids
            self._owed.append((ack, out))
            for m in out:
                self._waiting[m] = out
            self._settle()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._lock:
            waiting = self._waiting.pop(mid, None)
            self._pending.pop(mid, None)
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
                self.received.acknowledged(ack[0])

    def _keep(self) -> None:
        """Stop the outbox's pump and keep for the next start what the twin's broker has not acknowledged: the
        outbox's messages (in its file) and the receive times of the plant messages left with the plant's broker."""
        self._quit.set()
        if self._pump_thread.is_alive():
            self._pump_thread.join()
        with self._lock:
            held = [ack for ack, _ in self._owed if ack is not None]
            self.held = len(held)
            arrivals = self.received.left([mid for mid, _ in held], int(time.time() * 1000) - 1000 * SESSION_EXPIRY)
            unsure, self._pending = list(self._pending.values()), {}
        self.received.keep(arrivals)
        self.outbox.put_front(unsure)  # sent again next time: stored once all the same (a message's identity)
        self.kept = len(self.outbox)
        self.outbox.close()

    def _announce(self, mark: str | None = None) -> None:
        """The run's `started` status (retained); with a `mark`, after everything published so far: a store's
        ingest that has received the mark has received all of that."""
        extra = {"mark": mark} if mark else {}
        self._file(None, [self.pub.publish(self.topics.run, status_payload(self.cfg.run, "started", source="plant",
                                                                           **extra), qos=1, retain=True)])

    def _drained(self, deadline: float) -> bool:
        """Wait until the twin's broker has acknowledged everything published and everything in the outbox (or
        `deadline`, monotonic)."""
        def drained() -> bool:  # the outbox first: a message leaves it only once it is owed (`_pump`)
            return not len(self.outbox) and not self._owed

        while not drained() and time.monotonic() < deadline:
            time.sleep(0.05)
        return drained()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading the plant, let the twin's broker acknowledge what was published (up to `timeout` s), then
        disconnect. What it did not acknowledge is counted: plant messages left with the plant's broker (`held`: it
        sends them again at the next start), and messages of sources that cannot be held back, OPC UA values and QoS 0
        data, kept in the outbox's file (`kept`: this run's next connector sends them first)."""
        if self.opcua is not None:
            self.opcua.stop()
        if self.sub is not None and self.sub is not self.pub:
            self.sub.disconnect()  # nothing more comes in while the last messages go out
        deadline = time.monotonic() + timeout
        if self._drained(deadline):
            mark = uuid.uuid4().hex
            self._announce(mark)
            self.stopped_mark = mark if self._drained(deadline) else None
        self._keep()
        self._disconnect()

    def _disconnect(self) -> None:
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
