"""A streamed run: the twin publishes over MQTT while it simulates, an ingest writes the store.

With no broker given, an embedded one is started on 127.0.0.1; with no store given, the embedded
DuckDB store is `twin.duckdb` in the run's folder. The run ends only when every reading generated
is in the store (or the time-out says what is missing).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sensors import sensor_catalog
from twin.bus.broker import BrokerURL, EmbeddedBroker, negotiate
from twin.bus.payloads import LineTopics
from twin.bus.publisher import Publisher
from twin.ingest import Ingest, IngestProcess
from twin.model import Line
from twin.runner import ProgressFn, Replication, run_scenario
from twin.scenario import Scenario
from twin.store import open_store


@dataclass
class StreamStats:
    """What a streamed run moved: readings generated and stored, messages, rejects, broker used."""

    run_id: str
    broker: str
    store: str
    readings: int = 0
    stored: int = 0
    messages: int = 0
    spilled: int = 0
    rejected: int = 0
    complete: bool = False
    notes: list[str] = field(default_factory=list)


def _now_ms() -> dt.datetime:
    """UTC now to the millisecond, naive (as scenario start times are)."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000, tzinfo=None)


def run_id_for(scenario: Scenario, now: dt.datetime) -> str:
    return f"{scenario.line.name}-{now:%Y%m%dT%H%M%S}-{scenario.seed}"


def stream_scenario(scenario: Scenario, out: Path, *, broker: BrokerURL | None = None, store_url: str | None = None,
                    ingest: bool | str = True, progress: ProgressFn | None = None, drain_timeout: float = 300.0,
                    on_note: Callable[[str], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, StreamStats]:
    """Run a scenario while streaming it over MQTT into the store; returns KPI summary, KPIs, stats.

    `ingest`: True runs the ingest as a child process (default), "thread" inside this process,
    False not at all (a `twin ingest` elsewhere does it).
    """
    now = _now_ms()
    live = scenario.realtime_factor > 0
    run_id = run_id_for(scenario, now)
    start_ms = int(scenario.start.replace(tzinfo=dt.UTC).timestamp() * 1000)
    topics = LineTopics(scenario.line.site, scenario.line.area, scenario.line.name)
    store_url = store_url or f"duckdb:///{(out / 'twin.duckdb').resolve()}"
    with contextlib.ExitStack() as stack:
        if broker is None:
            embedded = stack.enter_context(EmbeddedBroker(data_dir=out / "broker"))
            url = embedded.url
            note = f"embedded {embedded.kind} broker on {url}"
        else:
            url, note = broker, f"broker {broker}"
        stats = StreamStats(run_id, str(url), store_url, notes=[note])
        if on_note is not None:
            on_note(f"streaming to the {note}; readings stored in {store_url}")
        protocol = negotiate(url)
        sink: Ingest | IngestProcess | None = None
        if ingest == "thread":
            store = open_store(store_url)
            stack.callback(store.close)
            sink = Ingest(url, store, prefix=topics.prefix, protocol=protocol, group=f"linetwin-run-{run_id}",
                          client_id=f"linetwin-ingest-{run_id}", durable=False).start()
            stack.callback(sink.stop)
        elif ingest:  # a child process: the second core parses and writes while this one simulates
            sink = IngestProcess(url, store_url, topics.prefix, run_id).start()
            stack.callback(sink.stop)
        # with our own ingest subscribed, "no matching subscribers" can only mean it is re-subscribing: resend
        pub = Publisher(url, topics, run_id, start_ms, spill_dir=out, protocol=protocol,
                        require_subscriber=bool(ingest)).start()
        stack.callback(pub.stop)
        pub.set_catalog(sensor_catalog(Line(scenario)))
        pub.publish_status("started", start=scenario.start.isoformat())

        def replication_done(rep: Replication) -> None:
            pub.publish_kpis(rep.line.replication, rep.kpis)
            pub.new_replication()

        if live:  # readings carry wall-clock timestamps: t = 0 is now, once everything is connected
            scenario = scenario.model_copy(update={"start": _now_ms()})
            start_ms = pub.start_ms = int(scenario.start.replace(tzinfo=dt.UTC).timestamp() * 1000)
        summary, kpis = run_scenario(scenario, out, progress, on_readings=pub.on_readings,
                                     on_replication=replication_done, extra={"run_id": run_id, "mqtt": str(url),
                                                                             "store": store_url},
                                     wall_start=start_ms / 1000 if live else None)
        stats.readings = pub.readings_published
        pub.publish_status("finished", readings=stats.readings)
        if not pub.flush(drain_timeout):
            stats.notes.append(f"{len(pub.outbox)} messages were still waiting for the broker after "
                               f"{drain_timeout:g} s; they are kept in {pub.outbox._path}")
        stats.messages, stats.spilled = pub.messages_sent, pub.outbox.spilled_total
        if isinstance(sink, Ingest):
            stats.complete = sink.wait_for(run_id, stats.readings, drain_timeout)
            stats.stored = sink.store.count(run_id)
            stats.rejected = sink.rejected
        elif sink is not None:
            finished = sink.wait(drain_timeout)
            sink.stop()
            store = open_store(store_url)
            stats.stored = store.count(run_id)
            store.close()
            stats.complete = finished and stats.stored >= stats.readings
            stats.rejected = sink.rejected
        return summary, kpis, stats
