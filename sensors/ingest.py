"""The ingest: subscribe to a line's telemetry and states, write them into the store, lose nothing.

MQTT 5 shared subscription ($share/GROUP/...) so several workers split the load; a durable session
(clean_start off, session expiry) so what was published while a worker was down reaches it when it
returns; QoS 1 with manual acknowledgement only after the rows are in the store, and writes that know each
message's identity (a hash of its bytes), so a redelivered message is stored once. `on_message` only
parses (a pure function) and queues; a writer thread does all I/O. Malformed messages are counted and
sent to the dead-letter topic with the reason; the ingest keeps running. While the store is away, what arrives
goes into a spool on disk (`sensors.bus.spool`) and is acknowledged there, so the broker need not queue it (a
broker's queue limit drops QoS 1 messages: mosquitto's default keeps 1,000 a client); the spool is written into
the store, oldest first, as soon as the store answers again, also by the next worker of the group to start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from itertools import chain
from pathlib import Path
from typing import Any, Literal

import numpy as np
import paho.mqtt.client as mqtt
import pandas as pd

from sensors.bus.broker import (
    MQTT_VERSIONS,
    RUN_SESSION_EXPIRY,
    SESSION_EXPIRY,
    BrokerError,
    BrokerURL,
    connect,
    credentials_env,
    end_session,
    make_client,
    negotiate,
    subscribe_confirmed,
)
from sensors.bus.payloads import (
    Levels,
    ParseError,
    StateChange,
    Telemetry,
    deadletter_payload,
    line_filters,
    parse,
)
from sensors.bus.spool import Spool
from sensors.store import LEVEL_COLUMNS, PRODUCT_COLUMNS, STATE_COLUMNS, Store
from sensors.store.base import SERIES_COLUMNS, ReadingBatch
from sensors.store.ledger import home

log = logging.getLogger("linetwin.ingest")
# durable: the session outlives the worker (24 h), for the group's next worker; run: it survives a broker restart
# and ends with the worker (a run's own ingest); ephemeral: it ends with the connection
Session = Literal["durable", "run", "ephemeral"]
Item = tuple[int, int, "Telemetry | StateChange | Levels", str, bytes]  # mid, QoS, parsed message, topic, payload


def run_session(run_id: str) -> tuple[str, str]:
    """The client id and group of a run's own ingest: one session and group per run, which `twin run` starts and a
    `twin ingest --run-session` resumes to store what that run is still owed."""
    return f"linetwin-ingest-{run_id}", f"linetwin-run-{run_id}"


def default_spool(group: str, store_url: str) -> Path:
    """Where a group's messages wait while its store is away: one file per group and store, in linetwin's home, so
    the next worker of the group finds what an earlier one left."""
    digest = hashlib.sha256(store_url.encode()).hexdigest()[:12]
    return home() / "spool" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', group)}-{digest}.sqlite"


def _repeat(values: list[Any], sizes: list[int], dtype: Any = object) -> np.ndarray:
    return np.repeat(np.array(values, dtype=dtype), sizes)


def _ms(ts: Any) -> pd.DatetimeIndex:
    return pd.to_datetime(np.asarray(ts, dtype=np.int64), unit="ms")


def state_rows(states: list[StateChange]) -> pd.DataFrame:
    """The state changes of many messages as the store's rows (STATE_COLUMNS), built column by column: a
    `pd.Timestamp` per change took a tenth of an ingest's time on the bottling line."""
    sizes = [len(c.changes) for c in states]
    changes = [ch for c in states for ch in c.changes]
    if not changes:  # the parser refuses a message without changes; nothing to write all the same
        return pd.DataFrame(columns=STATE_COLUMNS)
    state, ts, reason = zip(*changes)
    return pd.DataFrame({"run": _repeat([c.run for c in states], sizes),
                         "replication": _repeat([c.replication for c in states], sizes, np.int64),
                         "machine": _repeat([c.machine for c in states], sizes), "ts": _ms(ts),
                         "state": np.array(state, dtype=object), "reason": np.array(reason, dtype=object)},
                        columns=STATE_COLUMNS)


def level_rows(levels: list[Levels]) -> pd.DataFrame:
    """The buffer levels of many messages as the store's rows (LEVEL_COLUMNS), column by column."""
    return _keyed_rows(levels, "levels", LEVEL_COLUMNS, np.int64)


def product_rows(levels: list[Levels]) -> pd.DataFrame:
    """The machines' products of many buffers messages as the store's rows (PRODUCT_COLUMNS)."""
    return _keyed_rows(levels, "products", PRODUCT_COLUMNS, object)


def _keyed_rows(levels: list[Levels], field: str, columns: list[str], dtype: Any) -> pd.DataFrame:
    """One of the buffers messages' maps (`field`: station → level, machine → product) as the store's rows (`columns`:
    run, replication, its key, ts, its value), column by column."""
    maps = [getattr(b, field) for b in levels]
    sizes = [len(x) for x in maps]
    return pd.DataFrame({"run": _repeat([b.run for b in levels], sizes),
                         "replication": _repeat([b.replication for b in levels], sizes, np.int64),
                         columns[2]: np.array([k for x in maps for k in x], dtype=object),
                         "ts": _ms(_repeat([b.ts_ms for b in levels], sizes, np.int64)),
                         columns[4]: np.array([v for x in maps for v in x.values()], dtype=dtype)}, columns=columns)


class KnownRuns:
    """The runs whose start (any status message of the run on the line's run topic) the ingest has seen, kept in a
    file beside its spool: a restarted worker still takes the readings of a run it saw start, and readings of a run
    no one announced (a stray or forged publisher) are refused."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._runs: set[str] = set()
        try:
            text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        except OSError as e:
            log.warning("could not read the started runs in %s: %s", path, e)
            text = ""
        self._cut = bool(text) and not text.endswith("\n")  # the next note starts on a line of its own
        for line in filter(str.strip, text.splitlines()):
            try:
                self._runs.add(str(json.loads(line)))
            except ValueError:  # a line cut short by a crash: that run's retained status tells it again
                log.warning("skipped an unreadable line in %s", path)

    def add(self, run: str) -> None:
        """Remember `run`, on disk before this returns (the status message is acknowledged after it)."""
        if run in self._runs:
            return
        self._runs.add(run)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(("\n" if self._cut else "") + json.dumps(run) + "\n")
                self._cut = False
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:  # known to this worker all the same; a restart learns it from the retained status
            log.warning("could not note run %r in %s: %s", run, self.path, e)

    def __contains__(self, run: object) -> bool:
        return run in self._runs


class Ingest:
    """One ingest worker: MQTT in, store out."""

    def __init__(self, url: BrokerURL, store: Store, *, prefix: str = "+/+/+", group: str = "linetwin-ingest",
                 client_id: str | None = None, protocol: int | None = None, flush_interval: float = 0.1,
                 max_rows: int = 50_000, session: Session = "durable", spool: Path | None = None) -> None:
        self.url, self.store, self.prefix, self.group = url, store, prefix, group
        self.protocol = protocol if protocol is not None else negotiate(url)
        self.client_id = client_id or f"linetwin-ingest-{uuid.uuid4().hex[:12]}"
        self.session = session
        self.client = make_client(url, self.client_id, protocol=self.protocol, manual_ack=True,
                                  durable=session != "ephemeral")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.flush_interval, self.max_rows = flush_interval, max_rows
        self._queue: queue.Queue[Item | None] = queue.Queue()  # None: `stop` wakes the writer from its wait
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        self._series: dict[tuple[str, str], dict[str, int]] = {}  # (run, machine) -> sensor -> catalogue row
        self._catalog: list[tuple[str, str, str, str, str]] = []  # SERIES_COLUMNS rows this worker has seen
        self._catalog_frame: pd.DataFrame | None = None
        self._closing = False
        self.expected: dict[str, int] = {}
        self.marks: set[str] = set()  # marks seen on run topics: everything queued before each was received
        self.marked = threading.Condition()  # notified as each mark arrives (`wait_mark`)
        self.stored_by_run: dict[str, int] = {}  # rows of new messages this worker stored, per run
        self.taken_by_run: dict[str, int] = {}  # messages (readings, states, levels) acknowledged: stored or spooled
        self.acks = 0  # acknowledgement rounds so far: `acked` is notified at each (`wait_acked`)
        self.acked = threading.Condition()
        self._last_count = 0.0
        self._counted: dict[str, int] = {}  # the store's last count of a run's readings
        self.received = 0
        self.stored = 0
        self.rejected = 0
        self.write_errors = 0
        self.spool = Spool(spool or default_spool(group, store.url))
        self.runs = KnownRuns(self.spool.path.with_suffix(".runs"))
        self.spooled = 0  # messages that waited in the spool for the store
        self._retry_at, self._pause = 0.0, 0.5  # when to try the store again while the spool holds messages

    @property
    def shared(self) -> bool:
        return self.protocol == mqtt.MQTTv5

    def filters(self) -> list[str]:
        topics = [*line_filters(self.prefix), f"{self.prefix}/buffers"]  # buffer levels: what a what-if starts from
        return [f"$share/{self.group}/{t}" for t in topics] if self.shared else topics

    def start(self, timeout: float = 10.0) -> Ingest:
        """Connect and return once the broker has confirmed the subscriptions (nothing published after is missed)."""
        self._writer.start()
        connect(self.client, self.url, durable=self.session != "ephemeral",
                expiry=RUN_SESSION_EXPIRY if self.session == "run" else SESSION_EXPIRY)
        subscribe_confirmed(self.client, self.url, self._topics(), timeout)
        return self

    def _topics(self) -> list[tuple[str, int]]:
        """The run status (a run's start, and how many readings it sent), then telemetry and states, at QoS 1: the
        retained status of a run under way arrives before its readings."""
        return [(f, 1) for f in [f"{self.prefix}/run", *self.filters()]]

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not getattr(rc, "is_failure", False):
            client.subscribe(self._topics())  # a reconnect renews the subscriptions

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
            return self._refuse(client, msg, str(e))
        except Exception as e:  # never raise on the network thread
            return self._refuse(client, msg, f"unexpected: {e!r}")
        if item.run not in self.runs:
            return self._refuse(client, msg, f"run {item.run!r} has not announced its start on "
                                f"{'/'.join(msg.topic.split('/')[:3])}/run: a run's readings, states and levels "
                                "are taken only after its `started` status")
        self._queue.put((msg.mid, msg.qos, item, msg.topic, bytes(msg.payload)))

    def _refuse(self, client: mqtt.Client, msg: mqtt.MQTTMessage, reason: str) -> None:
        """A message that cannot be stored goes to the dead-letter topic with the reason, and is acknowledged."""
        self._dead_letter(msg.topic, msg.payload, reason)
        if msg.qos:
            client.ack(msg.mid, msg.qos)

    def _run_status(self, payload: bytes | bytearray) -> None:
        try:
            status = json.loads(payload)
            if isinstance(status.get("run"), str) and status["run"]:
                self.runs.add(status["run"])
            if status.get("status") == "finished" and isinstance(status.get("readings"), int):
                self.expected[str(status["run"])] = status["readings"]
            if isinstance(status.get("mark"), str):
                with self.marked:
                    self.marks.add(status["mark"])
                    self.marked.notify_all()
        except (ValueError, AttributeError):
            log.warning("ignored a malformed run status message")

    def run_complete(self, run: str) -> bool:
        """True once `run` was announced as finished and all its readings are in the store."""
        return run in self.expected and self._holds(run, self.expected[run])

    def _holds(self, run: str, readings: int) -> bool:
        """What this worker stored of `run` (new messages only) is the count; the store is asked only every few
        seconds, for rows an earlier worker wrote, and only where it can count (a line-protocol server without
        Flux, such as VictoriaMetrics, cannot: then this worker's own count decides)."""
        if max(self.stored_by_run.get(run, 0), self._counted.get(run, 0)) >= readings:
            return True
        now = time.monotonic()
        if now - self._last_count < 3.0:
            return False
        self._last_count = now
        try:
            self._counted[run] = self.store.count(run)  # kept: a run once held stays held between the store's counts
        except Exception:
            return False
        return self._counted[run] >= readings

    def finished_runs_complete(self) -> bool:
        """True once every run announced as finished has all its readings in the store."""
        return bool(self.expected) and all(self._holds(r, n) for r, n in self.expected.items())

    def _dead_letter(self, topic: str, payload: bytes | bytearray, reason: str) -> None:
        """Count a message as rejected and publish it on its line's dead-letter topic with the reason."""
        self.rejected += 1
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
                if item is None:  # stopping: what came is written now, not after the rest of the flush interval
                    break
                items.append(item)
                rows += len(item[2].values) if isinstance(item[2], Telemetry) else 1
            if items:
                self._write(items)
            elif self.spool:
                self._drain()

    def _write(self, items: list[Item]) -> None:
        if self.spool and not self._drain():  # the store is still away: these wait in the spool too
            self._to_spool(items)
            return
        try:
            self._store(items)
        except Exception as e:
            self.write_errors += 1
            log.warning("a batch of %d messages could not be written (%s); writing them one by one", len(items), e)
            self._isolate(items)
            return
        self._ack(items)

    def _store(self, items: list[Item]) -> None:
        tel = [it for _, _, it, _, _ in items if isinstance(it, Telemetry)]
        states = [it for _, _, it, _, _ in items if isinstance(it, StateChange)]
        levels = [it for _, _, it, _, _ in items if isinstance(it, Levels)]
        by_run: dict[str, list[Telemetry]] = {}
        for t in tel:
            by_run.setdefault(t.run, []).append(t)
        stored: dict[str, int] = {}
        with self.store.together():  # the batch is stored whole or not at all, then acknowledged
            for run, group in by_run.items():  # one append per run: what is new of each run is counted exactly
                stored[run] = self.store.append(self._batch(group))
            if states:
                self.store.write_states(state_rows(states))
            if levels:
                self.store.write_levels(level_rows(levels))
                if any(b.products for b in levels):
                    self.store.write_products(product_rows(levels))
        for run, n in stored.items():  # counted once committed: a batch that failed is stored again, whole
            self.stored += n
            self.stored_by_run[run] = self.stored_by_run.get(run, 0) + n

    def _ack(self, items: list[Item]) -> None:
        """Acknowledge messages from the broker (stored, spooled or dead-lettered: the broker may forget them) and
        count them as taken per run: the position a streamed run's publisher keeps its lead over (in messages, what a
        broker's queue limit counts)."""
        for mid, qos, item, *_ in items:
            if qos:
                self.client.ack(mid, qos)
                self.taken_by_run[item.run] = self.taken_by_run.get(item.run, 0) + 1
        with self.acked:
            self.acks += 1
            self.acked.notify_all()

    def wait_acked(self, seen: int, timeout: float) -> int:
        """Wait up to `timeout` s for an acknowledgement round after the first `seen` (`acks`); return the rounds so
        far. Whoever waits on the ingest's progress (the run's flow control, `twin ingest --position`, `wait_for`)
        wakes as messages are acknowledged, not on a polling tick."""
        with self.acked:
            self.acked.wait_for(lambda: self.acks != seen, timeout)
            return self.acks

    def _isolate(self, items: list[Item]) -> None:
        """A batch the store refused, message by message (`_one_by_one`); when the store does not answer at all (an
        outage) the rest go into the spool and are acknowledged there."""
        outage = self._one_by_one(items)
        if outage is not None:
            self._to_spool(items[outage:])

    def _one_by_one(self, items: list[Item]) -> int | None:
        """Store messages one at a time: each one stored is acknowledged; one the store refuses while it answers
        otherwise is poison, dead-lettered with the store's reason and acknowledged. Returns where an outage began
        (the store does not answer), None when every message was handled."""
        for k, it in enumerate(items):
            try:
                self._store([it])
            except Exception as e:
                if not (self.store.refused(e) and self.store.ping()):
                    return k
                self._dead_letter(it[3], it[4], f"the store refused it: {str(e)[:300]}")
            self._ack([it])
        return None

    def _to_spool(self, items: list[Item]) -> None:
        """Keep messages on disk while the store is away, then acknowledge them: the broker holds nothing back."""
        if not self.spool:
            log.warning("the store does not answer; messages wait in %s until it does", self.spool.path)
            self._retry_at, self._pause = time.monotonic() + 0.5, 0.5
        self.spool.put_many([(topic, payload, 0) for _, _, _, topic, payload in items])
        self.spooled += len(items)
        self._ack(items)

    def _drain(self, force: bool = False) -> bool:
        """Write the spool into the store, oldest first, while the store answers (not before the next try is due
        unless `force`); True once the spool is empty."""
        if not force and time.monotonic() < self._retry_at:
            return False
        while rows := self.spool.peek(500):
            items: list[Item] = []
            for _, topic, payload, _ in rows:
                try:
                    items.append((0, 0, parse(topic, payload), topic, payload))
                except ParseError as e:  # parsed when it arrived; a newer version may read it differently
                    self._dead_letter(topic, payload, str(e))
            try:
                self._store(items)
            except Exception:
                if self._one_by_one(items) is not None:  # still away (the ones stored meanwhile are stored once)
                    return self._later()
            self.spool.delete_through(rows[-1][0])
        log.warning("the store answers again: the spool is written")
        return True

    def _later(self) -> bool:
        """The store is still away: try the spool again after a growing pause (at most 10 s)."""
        self._retry_at = time.monotonic() + self._pause
        log.warning("the store does not answer; %d messages wait in the spool (next try in %.1f s)", len(self.spool),
                    self._pause)
        self._pause = min(2 * self._pause, 10.0)
        return False

    def _series_of(self, t: Telemetry) -> dict[str, int]:
        """Sensor name -> row of this worker's catalogue for one message's machine, adding unseen series."""
        ids = self._series.setdefault((t.run, t.machine), {})
        for sensor, unit in t.units.items():
            if sensor not in ids:
                ids[sensor] = len(self._catalog)
                self._catalog.append((t.run, t.machine, t.station, sensor, unit))
                self._catalog_frame = None
        return ids

    def _batch(self, tel: list[Telemetry]) -> ReadingBatch:
        """Many messages' readings in columns, grouped by message, each with its identity."""
        sizes = np.fromiter((len(t.values) for t in tel), dtype=np.int64, count=len(tel))
        series = np.fromiter(chain.from_iterable(map(self._series_of(t).__getitem__, t.sensors) for t in tel),
                             dtype=np.int32, count=int(sizes.sum()))
        if self._catalog_frame is None:
            self._catalog_frame = pd.DataFrame(self._catalog, columns=SERIES_COLUMNS)
        return ReadingBatch(
            self._catalog_frame, series,
            np.repeat(np.fromiter((t.replication for t in tel), dtype=np.int32, count=len(tel)), sizes),
            np.fromiter(chain.from_iterable(t.ts_ms for t in tel), dtype=np.int64, count=len(series)),
            np.fromiter(chain.from_iterable(t.values for t in tel), dtype=np.float64, count=len(series)),
            np.fromiter((t.key for t in tel), dtype=np.int64, count=len(tel)), sizes)

    def position(self, run: str, seen: int | None = None, timeout: float = 0.0) -> int:
        """Messages of `run` taken off the broker so far (stored, spooled or dead-lettered); with a `timeout`, first
        wait up to that long for the count to move on from `seen` (as `IngestProcess.position` does)."""
        rounds = self.acks  # read before the count: an acknowledgement in between ends the wait at once
        if timeout > 0 and self.taken_by_run.get(run, 0) == seen:
            self.wait_acked(rounds, timeout)
        return self.taken_by_run.get(run, 0)

    def wait_for(self, run: str, readings: int, timeout: float) -> bool:
        """Wait until the store holds `readings` readings of `run`."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            seen = self.acks
            if self._holds(run, readings):
                return True
            self.wait_acked(seen, min(left, 0.5))  # at the latest every 0.5 s: the store may count an earlier worker's
        self._last_count = 0.0
        return self._holds(run, readings)

    def wait_mark(self, mark: str, timeout: float) -> bool:
        """Wait until this worker has received the run status carrying `mark`: the broker delivers a session's
        messages in order, so everything published to it before the mark has been received too (`stop` then stores
        it)."""
        with self.marked:
            return self.marked.wait_for(lambda: mark in self.marks, timeout)

    def stop(self, keep_session: bool = False) -> None:
        """Write and acknowledge what was received, then disconnect (a durable session stays for the next start; a
        run's session ends here, unless a run it was told of is still owed readings, or the caller knows of messages
        still owed (`keep_session`): they wait in it for the next worker with this client id, for RUN_SESSION_EXPIRY
        seconds)."""
        self._closing = True
        self._stop.set()
        self._queue.put(None)
        self._writer.join(60)
        self.client.disconnect()
        self.client.loop_stop()
        done = self.session == "run" and not keep_session and all(self._holds(r, n) for r, n in self.expected.items())
        if done:
            try:
                end_session(self.url, self.client_id, self.protocol)
            except BrokerError as e:
                log.warning("the run's ingest session stays in the broker (it expires in %d s): %s",
                            RUN_SESSION_EXPIRY, e)
        if self.spool:
            self._drain(force=True)
        self.spool.close()  # one that still holds messages stays: the group's next worker writes them
        if done and not self.spool.path.exists():  # the run's group is over: no worker resumes it (every streamed
            self.runs.path.unlink(missing_ok=True)  # run left its note of started runs in linetwin's home for good)


class IngestProcess:
    """`twin ingest` as a child process, so parsing and writing use the second core; it ends itself
    once the given run is complete. Credentials travel in its environment, never on its command line."""

    def __init__(self, url: BrokerURL, store_url: str, prefix: str, run_id: str, protocol: int | None = None) -> None:
        self.url, self.store_url, self.prefix, self.run_id = url, store_url, prefix, run_id
        self.protocol = protocol  # the MQTT version, where the run knows it (else the child probes the broker)
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.taken = 0  # messages of the run the process has taken off the broker (its `position` lines)
        self._moved = threading.Condition()  # notified at each position line and when the process's output ends
        self._ended = False
        self._ready = threading.Event()

    def start(self, timeout: float = 60.0) -> IngestProcess:
        # a group and a session of its own that end with the run: no stale session of an earlier run's
        # ingest may take a share of this run's messages
        client_id, group = run_session(self.run_id)
        # -P: not the user's folder on the path (their own twin.py or sensors.py there would be imported for ours)
        args = [sys.executable, "-P", "-m", "twin.app.cli", "ingest", "--broker", str(self.url), "--store",
                self.store_url,
                "--line", self.prefix, "--client-id", client_id, "--until-run", self.run_id, "--group", group,
                "--run-session", "--position"]
        if self.protocol is not None:
            args += ["--mqtt-version", MQTT_VERSIONS[self.protocol]]
        for flag, path in (("--ca", self.url.ca), ("--cert", self.url.cert), ("--key", self.url.key)):
            if path:
                args += [flag, path]
        env = {**os.environ, "COLUMNS": "200", **credentials_env(self.url)}
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_position, daemon=True).start()
        if not self._ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise BrokerError("the ingest process did not start: " + " ".join(self.lines[-3:]))
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.strip())
            if line.startswith("ingesting"):
                self._ready.set()
        self._ready.set()

    def _read_position(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("position "):
                with self._moved:
                    self.taken = int(line.split()[1])
                    self._moved.notify_all()
        with self._moved:
            self._ended = True
            self._moved.notify_all()

    def position(self, seen: int | None = None, timeout: float = 0.0) -> int | None:
        """Messages of the run taken off the broker so far; None once the process has ended (nothing more will be).
        With a `timeout`, first wait up to that long for the position to move on from `seen` (woken by the process's
        report, not a polling tick)."""
        assert self.proc is not None
        if timeout > 0:
            with self._moved:
                self._moved.wait_for(lambda: self.taken != seen or self._ended, timeout)
        return None if self.proc.poll() is not None else self.taken

    def wait(self, timeout: float) -> bool:
        """Wait for the process to finish the run; True if it ended cleanly."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout) == 0
        except subprocess.TimeoutExpired:
            return False

    def _last_number(self, pattern: str) -> int | None:
        found = [re.search(pattern, line) for line in self.lines]
        numbers = [int(m.group(1).replace(",", "")) for m in found if m]
        return numbers[-1] if numbers else None

    @property
    def rejected(self) -> int:
        return self._last_number(r"rejected ([\d,]+)") or 0

    @property
    def stored(self) -> int | None:
        """The readings the process stored, from its last words (None before it said so)."""
        return self._last_number(r"stopped: stored ([\d,]+) readings")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
