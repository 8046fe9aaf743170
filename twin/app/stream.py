"""A streamed run: the twin publishes over MQTT while it simulates, an ingest writes the store.

With no broker given, an embedded one is started on 127.0.0.1; with no store given, the embedded
DuckDB store is `twin.duckdb` in the run's folder. The run ends only when every reading generated
is in the store (or the time-out says what is missing). A run that is not paced by the wall clock holds
its simulation while its own ingest lags by more than `MAX_LEAD` readings, so the broker's queue stays
bounded however long the run. `direct.store_scenario` is the batch path with no bus at all.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pandas as pd

from sensors.bank import Readings, sensor_catalog
from sensors.bus.broker import VIEWER_USER, BrokerURL, EmbeddedBroker, negotiate
from sensors.bus.payloads import LineTopics, epoch_ms, line_now
from sensors.bus.publisher import Publisher
from sensors.ingest import Ingest, IngestProcess, run_session
from sensors.inject import Injection
from sensors.store import open_store
from twin.app.direct import StreamStats, count_stored, now_ms, run_id_for
from twin.app.runner import STREAM_CHUNK, ProgressFn, Replication, run_scenario
from twin.kpi import replication_kpis
from twin.maintenance import MaintenancePolicy
from twin.model import Line, Machine
from twin.scenario import Scenario

IngestMode = Literal["process", "thread", "none"]  # where a streamed run's own ingest runs

# another subscriber on the run's broker (e.g. the live forecaster): attach(broker, protocol) → a context
Attach = Callable[[BrokerURL, int], contextlib.AbstractContextManager[object]]
LIVE_KPI_EVERY = 2.0  # wall seconds between the running replication's KPIs on MQTT (the dashboard's live tiles)
PolicyFactory = Callable[[Machine], MaintenancePolicy]  # a maintenance policy per machine (e.g. alert-driven)
# position(seen, timeout): the messages of the run its ingest has taken (None once it is gone), after waiting up to
# `timeout` s for that to move on from `seen`
Position = Callable[[int | None, float], int | None]
# messages (of readings, states, levels) a flat-out run may publish ahead of what its ingest has taken off the broker
# (stored or spooled), counted as a broker's queue limit counts them: with the HOLD_EVERY put in after a check, under
# the 1,000 that mosquitto queues for a client by default and drops past (a bound of 250,000 readings, 1,250
# messages, checked after each chunk, lost 20,200 of body_shop's readings behind such a broker); still about 100,000
# readings, two of the ingest's writes, so it does not run dry
MAX_LEAD = 500
HOLD_NOTE_AFTER = 10.0  # wall seconds of holding before the run says why it waits


class FlowControl:
    """Holds the publishing simulation while the run's ingest lags by more than `max_lead` messages.

    `position(seen, timeout)` gives the messages of the run the ingest has taken off the broker, or None once it is
    gone (then nothing is held: the run's end says what did not arrive), having first waited up to `timeout` s for it
    to move on from `seen`: the hold ends as the ingest acknowledges, not on a polling tick. An ingest that takes
    nothing for `patience` seconds is not waited for any more either: the run goes on, and its drain at the end says
    what is missing, as it did before flow control (never a wait without end for a broker or a store that does not
    come back)."""

    def __init__(self, pub: Publisher, position: Position, max_lead: int, stats: StreamStats,
                 on_note: Callable[[str], None] | None, patience: float) -> None:
        self.pub, self.position, self.max_lead, self.stats, self.on_note = pub, position, max_lead, stats, on_note
        self.patience = patience
        self.gave_up = False

    def _note(self, text: str) -> None:
        self.stats.notes.append(text)
        if self.on_note is not None:
            self.on_note(text)

    def hold(self) -> None:
        """Return once the ingest is within `max_lead` messages of what was published (or gone, or stuck)."""
        taken = self.position(None, 0.0)
        if taken is None or self.gave_up:
            return
        lead = self.pub.data_messages - taken
        self.stats.max_lead = max(self.stats.max_lead, lead)
        if lead <= self.max_lead:
            return
        start = moved = time.monotonic()
        noted = False
        while taken is not None and self.pub.data_messages - taken > self.max_lead:
            self.pub.check()  # the broker's refusal ends the run instead of a wait for nothing
            last = taken
            taken = self.position(last, 0.05)
            now = time.monotonic()
            if taken != last:
                moved = now
            elif now - moved > self.patience:
                self.gave_up = True
                self._note(f"the run's ingest took no message for {self.patience:g} s; the simulation goes on without "
                           "waiting for it (the broker queues what it publishes)")
                break
            if not noted and now - start > HOLD_NOTE_AFTER and self.on_note is not None:
                noted = True  # said while it waits, not kept for the run's report
                behind = self.pub.data_messages - (taken or 0)
                self.on_note(f"the simulation waits for the run's ingest, {behind:,} messages behind (is the broker "
                             "or the store away?); nothing is lost meanwhile")
        self.stats.held_s += time.monotonic() - start


def stream_scenario(scenario: Scenario, out: Path, *, broker: BrokerURL | None = None, store_url: str | None = None,
                    ingest: IngestMode = "process", progress: ProgressFn | None = None, drain_timeout: float = 300.0,
                    on_note: Callable[[str], None] | None = None,
                    attach: Attach | None = None, policy: PolicyFactory | None = None,
                    inject: Injection | None = None,
                    max_lead: int = MAX_LEAD) -> tuple[pd.DataFrame, pd.DataFrame, StreamStats]:
    """Run a scenario while streaming it over MQTT into the store; returns KPI summary, KPIs, stats.

    `ingest`: where the run's own ingest runs: "process" (a child, on the second core; default), "thread" (in this
    process), or "none" (a `twin ingest` elsewhere does it). `attach(broker, protocol)` gives a context
    for another subscriber (e.g. the live forecaster), entered before the first reading is published
    and left after the last one is stored. `policy` overrides the machines' maintenance policies.
    `inject` replays synthetic readings into a machine. `max_lead`: see `FlowControl` (not for live runs, nor
    with `ingest="none"`, whose ingest's position the run cannot see).
    """
    live = scenario.realtime_factor > 0
    run_id = run_id_for(scenario, now_ms())
    start_ms = epoch_ms(scenario.start)
    topics = LineTopics(scenario.line.site, scenario.line.area, scenario.line.name)
    store_url = store_url or f"duckdb:///{(out / 'twin.duckdb').resolve()}"
    with contextlib.ExitStack() as stack:
        url, note, known = _broker(stack, broker, out)
        stats = StreamStats(run_id, str(url), store_url, notes=[note])
        if on_note is not None:
            on_note(f"streaming to the {note}; readings stored in {store_url}")
        protocol = known or negotiate(url)
        if attach is not None:
            stack.enter_context(attach(url, protocol))
        sink = _ingest(stack, ingest, url, store_url, topics, run_id, protocol)
        # with our own ingest subscribed, "no matching subscribers" can only mean it is re-subscribing: resend
        pub = Publisher(url, topics, run_id, start_ms, spill_dir=out, protocol=protocol,
                        require_subscriber=ingest != "none").start()
        stack.callback(pub.stop)
        # a run paced by the wall clock is never held: its readings carry wall-clock times
        flow = None if live or sink is None else FlowControl(pub, _position(sink, run_id), max_lead, stats, on_note,
                                                                 drain_timeout)
        pub.set_catalog(sensor_catalog(Line(scenario)))
        pub.publish_status("started", start=scenario.start.isoformat())

        def replication_done(rep: Replication) -> None:
            pub.publish_kpis(rep.line.replication, rep.kpis)
            pub.new_replication()

        next_kpis = [time.monotonic() + LIVE_KPI_EVERY]

        def on_readings(line: Line, batch: Readings) -> None:
            """Publish the readings; and, every few wall seconds, the running replication's KPIs so far."""
            pub.on_readings(line, batch, hold=None if flow is None else flow.hold)
            if time.monotonic() >= next_kpis[0] and line.env.now > scenario.warmup:
                next_kpis[0] = time.monotonic() + LIVE_KPI_EVERY
                pub.publish_kpis(line.replication, replication_kpis(line), t=float(line.env.now))

        wall_ms = start_ms
        if live:  # readings carry wall-clock timestamps: t = 0 is now, once everything is connected; on the line's
            # clock, as every time the twin keeps (a Berlin line ran its shifts on UTC: an hour off, two in summer)
            wall_ms = epoch_ms(now_ms())
            scenario = scenario.model_copy(update={"start": line_now(scenario.line.timezone, wall_ms)})
            start_ms = pub.start_ms = epoch_ms(scenario.start)
        summary, kpis = run_scenario(scenario, out, progress, on_readings=on_readings,
                                     on_replication=replication_done, extra={"run_id": run_id, "mqtt": str(url),
                                                                             "store": store_url},
                                     wall_start=wall_ms / 1000 if live else None, policy=policy, inject=inject,
                                     chunk=None if live else STREAM_CHUNK)
        stats.readings = pub.readings_published
        pub.publish_status("finished", readings=stats.readings)
        _drain(pub, sink, stats, store_url, drain_timeout)
        return summary, kpis, stats


def _broker(stack: contextlib.ExitStack, broker: BrokerURL | None,
            out: Path) -> tuple[BrokerURL, str, int | None]:
    """The run's broker (an embedded one, started on the stack, when none is given), a note naming it, and its MQTT
    version where known without a probe (the embedded one's)."""
    if broker is not None:
        return broker, f"broker {broker}", None
    embedded = stack.enter_context(EmbeddedBroker(data_dir=out / "broker"))
    return embedded.url, (f"embedded {embedded.kind} broker on {embedded.url} (read-only for other clients: user "
                          f"{VIEWER_USER}, password in {out / 'broker' / 'viewer-password'})"), embedded.protocol


def _ingest(stack: contextlib.ExitStack, ingest: IngestMode, url: BrokerURL, store_url: str, topics: LineTopics,
            run_id: str, protocol: int) -> Ingest | IngestProcess | None:
    """The run's own ingest, started on the stack: a child process, a thread, or none."""
    if ingest == "thread":
        store = open_store(store_url, patient=False)
        stack.callback(store.close)
        client_id, group = run_session(run_id)
        sink = Ingest(url, store, prefix=topics.prefix, protocol=protocol, group=group, client_id=client_id,
                      session="run").start()
        stack.callback(sink.stop)
        return sink
    if ingest == "process":  # a child: the second core parses and writes while this one simulates
        proc = IngestProcess(url, store_url, topics.prefix, run_id, protocol).start()
        stack.callback(proc.stop)
        return proc
    return None


def _position(sink: Ingest | IngestProcess, run_id: str) -> Position:
    """How far the run's own ingest has got: messages of the run it has taken off the broker (None once gone), after
    waiting up to a timeout for it to move on from what was seen."""
    return sink.position if isinstance(sink, IngestProcess) else functools.partial(sink.position, run_id)


def _drain(pub: Publisher, sink: Ingest | IngestProcess | None, stats: StreamStats, store_url: str,
           timeout: float) -> None:
    """Wait until the broker has every message and the run's ingest has stored every reading (or `timeout`
    passes), and count what arrived into `stats`."""
    if not pub.flush(timeout):
        stats.notes.append(f"{len(pub.outbox)} messages were still waiting for the broker after "
                           f"{timeout:g} s; they are kept in {pub.outbox._path}")
    stats.messages, stats.spilled = pub.messages_sent, pub.outbox.spilled_total
    if isinstance(sink, Ingest):
        stats.complete = sink.wait_for(stats.run_id, stats.readings, timeout)
        stats.stored = count_stored(sink.store, stats.run_id, sink.stored_by_run.get(stats.run_id, 0))
        stats.rejected = sink.rejected
    elif sink is not None:
        finished = sink.wait(timeout)
        sink.stop()
        store = open_store(store_url)
        stats.stored = count_stored(store, stats.run_id, sink.stored or 0)
        store.close()
        stats.complete = finished and stats.stored >= stats.readings
        stats.rejected = sink.rejected
