"""Readings over MQTT into the store, end to end with real brokers: every reading exactly once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sensors.bus.broker import BrokerURL, connect, make_client
from sensors.bus.payloads import LineTopics
from sensors.bus.publisher import HOLD_EVERY
from sensors.ingest import run_session
from sensors.store import open_store
from sensors.store.ledger import home
from tests.conftest import Mosquitto, VictoriaMetrics, assert_mistakes, wait_for_line
from twin.app.direct import StreamStats
from twin.app.stream import MAX_LEAD, stream_scenario
from twin.scenario import Scenario, load_scenario

pytestmark = pytest.mark.slow  # end to end: streamed runs through real brokers, killed and restarted


def body_shop(duration: float = 1800.0, **update: object) -> Scenario:
    sc = load_scenario("scenarios/body_shop.yaml")
    return sc.model_copy(update={"duration": duration, "warmup": 0.0, "replications": 1, **update})


def _reading_points(series: list[dict]) -> int:  # type: ignore[type-arg]
    """Readings among exported VictoriaMetrics series (machine states are stored beside them)."""
    return sum(len(s["values"]) for s in series if not s["metric"]["__name__"].startswith("machine_state"))


def assert_exactly_once(out: Path, stats: StreamStats, store_url: str | None = None) -> None:
    """The store holds exactly the readings the twin generated: same keys, same values, no duplicates."""
    generated = pd.read_parquet(out / "readings.parquet")
    store = open_store(store_url or f"duckdb:///{out / 'twin.duckdb'}")
    stored = store.query(run=stats.run_id)
    store.close()
    key = ["machine", "sensor", "ts"]
    g = pd.DataFrame({"machine": generated.machine.astype(str), "sensor": generated.sensor.astype(str),
                      "ts": generated.timestamp.astype("datetime64[ms]"), "value": generated.value})
    s = stored.assign(ts=stored.ts.astype("datetime64[ms]"))[[*key, "value"]]
    assert not s.duplicated(key).any()
    assert len(s) == len(g) == stats.readings > 0
    merged = g.merge(s, on=key, how="outer", suffixes=("_generated", "_stored"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged["_merge"].value_counts()
    assert (merged.value_generated == merged.value_stored).all()


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
def test_stream_through_the_embedded_broker(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINETWIN_EMBEDDED_BROKER", kind)
    *_, stats = stream_scenario(body_shop(), tmp_path, drain_timeout=120)
    assert stats.complete and stats.rejected == 0
    assert kind in stats.notes[0]
    assert_exactly_once(tmp_path, stats)


def test_an_embedded_broker_that_ends_at_start_is_named_with_its_last_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker process that ends at start (a bad configuration, a missing module) is said with the last line it
    wrote, as soon as it has ended, on each of the five ports tried: not after each port's 30 s wait."""
    from sensors.bus.broker import BrokerError, EmbeddedBroker

    dies = [sys.executable, "-c", "import sys; print('Error: bad line 3 in the configuration', file=sys.stderr); "
                                  "sys.exit(3)"]
    monkeypatch.setattr(EmbeddedBroker, "_amqtt", lambda self, tmp: dies)
    t = time.monotonic()
    with pytest.raises(BrokerError, match=r"^the embedded amqtt broker did not start: Error: bad line 3 in the "
                                          r"configuration$"):
        EmbeddedBroker(kind="amqtt").start()
    assert time.monotonic() - t < 20


def test_the_embedded_amqtt_broker_ends_with_the_process_that_started_it(tmp_path: Path) -> None:
    """amqtt runs in a process of its own; a run killed with SIGKILL (no clean-up) leaves no broker behind."""
    code = ("import os\nfrom sensors.bus.broker import EmbeddedBroker\nb = EmbeddedBroker(kind='amqtt').start()\n"
            "print(b._proc.pid, b._tmp.name, flush=True)\nos.kill(os.getpid(), 9)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    broker, files = int(run.stdout.split()[0]), Path(run.stdout.split()[1])
    shutil.rmtree(files)  # the killed run could not remove its broker's folder (a password file in it): the test does
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{broker}").exists():
        time.sleep(0.1)
    alive = Path(f"/proc/{broker}").exists()
    if alive:  # the test stops what it started
        os.kill(broker, 9)
    assert not alive and run.returncode == -9


def test_stream_through_mosquitto_with_states_and_kpis_retained(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sc = body_shop()
    *_, stats = stream_scenario(sc, tmp_path, broker=mosquitto.url, drain_timeout=120)
    assert_exactly_once(tmp_path, stats)
    assert not list((home() / "spool").glob(f"*{stats.run_id}*"))  # the run's ingest group left nothing in the home
    # a subscriber arriving after the run sees each machine's state, the KPIs and the run status at once
    topics = LineTopics(sc.line.site, sc.line.area, sc.line.name)
    seen: dict[str, dict] = {}  # type: ignore[type-arg]
    sub = make_client(mosquitto.url, "late-subscriber")
    sub.on_message = lambda c, u, m: seen.__setitem__(m.topic, json.loads(m.payload))
    connect(sub, mosquitto.url)
    sub.subscribe(f"{topics.prefix}/#", 1)
    time.sleep(1.0)
    sub.disconnect()
    sub.loop_stop()
    states = {t: p for t, p in seen.items() if t.endswith("/state")}
    assert len(states) == 10 and all(p["state"] in ("working", "starved", "blocked", "down", "maintenance", "setup")
                                     for p in states.values())
    assert seen[topics.kpi]["kpis"]["throughput [parts/h]"] > 0
    assert seen[topics.run]["status"] == "finished" and seen[topics.run]["readings"] == stats.readings
    store = open_store(f"duckdb:///{tmp_path / 'twin.duckdb'}")
    assert len(store.states(stats.run_id)) > 10  # type: ignore[attr-defined]
    assert set(store.series(stats.run_id).unit) >= {"kA", "mm/s", "degC"}
    store.close()


def test_mosquitto_restarted_mid_run_loses_and_duplicates_nothing(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sc = body_shop(duration=240.0, realtime_factor=30.0)  # 8 s of wall time

    def outage() -> None:
        time.sleep(2.5)
        mosquitto.stop()  # the broker goes away (and saves its sessions)
        time.sleep(2.0)
        mosquitto.start()

    t = threading.Thread(target=outage)
    t.start()
    *_, stats = stream_scenario(sc, tmp_path, broker=mosquitto.url, drain_timeout=120)
    t.join()
    assert stats.complete
    assert_exactly_once(tmp_path, stats)


def test_a_flat_out_run_is_held_to_its_ingest_through_a_broker_restart(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """A run not paced by the wall clock publishes at most `max_lead` messages (plus HOLD_EVERY) ahead of what its
    ingest has taken off the broker, so the broker's queue stays bounded; while the broker is away the simulation
    waits for it, and every reading arrives once."""
    sc = body_shop(duration=3 * 3600.0)  # about 540,000 readings in 2,900 messages
    lead = 150
    flowing = threading.Event()
    watcher = make_client(mosquitto.url, f"telemetry-watcher-{os.getpid()}")
    watcher.on_message = lambda c, u, m: flowing.set()
    connect(watcher, mosquitto.url)
    watcher.subscribe(f"{sc.line.site}/{sc.line.area}/{sc.line.name}/+/+/telemetry", 0)

    def outage() -> None:
        flowing.wait(60)  # the run is publishing: its ingest is subscribed and the first chunks are out
        watcher.disconnect()
        watcher.loop_stop()
        time.sleep(0.3)
        mosquitto.stop()
        time.sleep(2.0)
        mosquitto.start()

    t = threading.Thread(target=outage)
    t.start()
    try:
        *_, stats = stream_scenario(sc, tmp_path, broker=mosquitto.url, drain_timeout=120, max_lead=lead)
    finally:
        flowing.set()
        t.join()  # before the fixture stops the broker: the outage must not start it again after that
    assert stats.complete and stats.readings > 500_000
    assert lead < stats.max_lead <= lead + HOLD_EVERY  # it was ahead, and held
    assert stats.held_s > 2.0  # at least the broker's absence
    assert_exactly_once(tmp_path, stats)
    assert not session_left(mosquitto.url, run_session(stats.run_id)[0])  # it kept its session, then ended it


def session_left(url: BrokerURL, client_id: str) -> bool:
    """Whether the broker still holds a session for `client_id`: resumed, kept (for an hour) and left as it was (what
    it queues is delivered to the probe but never acknowledged, so it is delivered again to the next one)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    answered: list[bool] = []
    probe = make_client(url, client_id, durable=True, manual_ack=True)
    probe.on_connect = lambda c, u, flags, rc, p: answered.append(flags.session_present)
    keep = Properties(PacketTypes.CONNECT)
    keep.SessionExpiryInterval = 3600
    probe.connect(url.host, url.port, clean_start=False, properties=keep)
    probe.loop_start()
    deadline = time.monotonic() + 10
    while not answered and time.monotonic() < deadline:
        time.sleep(0.02)
    probe.disconnect()
    probe.loop_stop()
    return answered[0]


def test_a_runs_ingest_stopped_before_the_run_is_stored_leaves_the_rest_in_its_session(mosquitto: Mosquitto,
                                                                                    tmp_path: Path) -> None:
    """The run's own ingest ends its session when it stops, but not while the run is owed readings: they wait in
    the session for a worker with the same client id (`twin run` names the command), which stores them and ends it."""
    from sensors.bus.payloads import status_payload, telemetry_payload
    from sensors.ingest import Ingest

    topics = LineTopics("s", "a", "owed")
    store = open_store(f"duckdb:///{tmp_path / 'owed.duckdb'}")
    pub = make_client(mosquitto.url, "owed-run")
    connect(pub, mosquitto.url)

    def readings(first: int) -> None:
        for k in range(first, first + 5):
            payload = telemetry_payload("r", 0, "st", "m1", {"x": "u"}, [["x", 1000 * k, 1.0]])
            pub.publish(topics.telemetry("st", "m1"), payload, qos=1).wait_for_publish(5)

    def worker() -> Ingest:
        return Ingest(mosquitto.url, store, prefix=topics.prefix, client_id="linetwin-ingest-r", group="linetwin-run-r",
                      session="run").start()

    first = worker()
    pub.publish(topics.run, status_payload("r", "started"), qos=1).wait_for_publish(5)
    readings(0)
    pub.publish(topics.run, status_payload("r", "finished", readings=10), qos=1, retain=True).wait_for_publish(5)
    assert first.wait_for("r", 5, 10) and not first.run_complete("r")
    first.stop()
    assert session_left(mosquitto.url, "linetwin-ingest-r")
    assert first.runs.path.exists()  # the runs the group saw start, for its next worker
    readings(5)  # while no worker is connected: queued in the session
    second = worker()
    deadline = time.monotonic() + 20
    while not second.run_complete("r") and time.monotonic() < deadline:  # as `twin ingest --until-run` waits
        time.sleep(0.1)
    assert second.run_complete("r") and store.count("r") == 10
    second.stop()
    pub.disconnect()
    store.close()
    assert not session_left(mosquitto.url, "linetwin-ingest-r")
    assert not second.runs.path.exists() and not second.spool.path.exists()  # nothing of the run's group left behind


def test_flow_control_stops_waiting_for_an_ingest_that_takes_nothing(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """An ingest that takes none of the run's readings (here: one subscribed to another line) holds the run only for
    `patience` seconds; then the run goes on and says why, as before flow control, instead of waiting without end."""
    from sensors.bus.payloads import telemetry_payload
    from sensors.bus.publisher import Publisher
    from sensors.ingest import Ingest
    from twin.app.stream import FlowControl, _position

    store = open_store(f"duckdb:///{tmp_path / 'other.duckdb'}")
    topics = LineTopics("s", "a", "held")
    ingest = Ingest(mosquitto.url, store, prefix="s/a/other", client_id="other-line-ingest",
                    session="ephemeral").start()
    pub = Publisher(mosquitto.url, topics, "held-run", 0, spill_dir=tmp_path, require_subscriber=False).start()
    try:
        pub.outbox.put_many([(topics.telemetry("st", "m1"), telemetry_payload(
            "held-run", 0, "st", "m1", {"x": "u"}, [["x", 1000 * (5 * k + i), 1.0] for i in range(5)]), False)
            for k in range(20)])
        pub.data_messages = 20  # what on_readings counts for the messages above
        stats, notes = StreamStats("held-run", str(mosquitto.url), store.url), []
        flow = FlowControl(pub, _position(ingest, "held-run"), 10, stats, notes.append, patience=1.0)
        t = time.monotonic()
        flow.hold()
        assert 1.0 <= time.monotonic() - t < 10 and flow.gave_up and stats.max_lead == 20
        assert notes == stats.notes and "took no message for 1 s" in notes[0]
        t = time.monotonic()
        flow.hold()  # not again
        assert time.monotonic() - t < 0.5
    finally:
        pub.stop()
        ingest.stop()
        store.close()


@pytest.fixture
def small_queue_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto that queues at most 20 QoS 1 messages for a client and drops the rest, as a broker with a queue
    limit does (mosquitto's default is 1,000): what a subscriber does not acknowledge in time is lost."""
    broker = Mosquitto(tmp_path / "small-queue", extra="max_queued_messages 20")
    broker.workdir.mkdir()
    broker.start()
    yield broker
    broker.stop()


def test_a_flat_out_run_loses_nothing_behind_a_broker_that_queues_1000_messages(tmp_path: Path) -> None:
    """mosquitto queues 1,000 QoS 1 messages for a client by default and drops the rest. The run's lead over its
    ingest was bounded in readings (250,000, checked after each chunk: 1,250 messages and more): a flat-out run
    behind such a broker stored 519,674 of its 539,874 readings. It is now bounded in messages, within a chunk."""
    broker = Mosquitto(tmp_path / "default-queue", extra="max_queued_messages 1000")
    broker.workdir.mkdir()
    broker.start()
    try:
        *_, stats = stream_scenario(body_shop(duration=3 * 3600.0), tmp_path / "run", broker=broker.url,
                                    drain_timeout=60)
    finally:
        broker.stop()
    assert stats.complete and stats.readings > 500_000 and stats.max_lead <= MAX_LEAD + HOLD_EVERY < 1000
    assert_exactly_once(tmp_path / "run", stats)


def test_the_store_down_for_30_s_mid_run_loses_and_duplicates_nothing(small_queue_broker: Mosquitto, tmp_path: Path,
                                                                     victoria_metrics: VictoriaMetrics) -> None:
    """A line-protocol store (VictoriaMetrics through influxdb-client) stopped for 30 s mid-run, then started again
    on its data, behind a broker that would drop what it queues past 20 messages: the ingest keeps what arrives in
    its spool on disk and acknowledges it, writes the spool once the store is back, and stores every reading."""
    vm, mosquitto = victoria_metrics, small_queue_broker
    sc = body_shop(duration=240.0, realtime_factor=30.0)  # 8 s of wall time: the store is away when it ends
    down = threading.Event()

    def outage() -> None:
        time.sleep(2.5)
        vm.stop()
        down.set()
        time.sleep(30.0)
        vm.start()

    t = threading.Thread(target=outage)
    t.start()
    try:
        *_, stats = stream_scenario(sc, tmp_path, broker=mosquitto.url, drain_timeout=180,
                                    store_url=f"influxdb://127.0.0.1:{vm.port}?org=plant&bucket=linetwin")
    finally:
        t.join()
    assert down.is_set() and stats.complete and stats.rejected == 0
    generated = pd.read_parquet(tmp_path / "readings.parquet")
    series = vm.export_points(f'{{run="{stats.run_id}", __name__=~".+_value"}}', _reading_points, stats.readings)
    stored = pd.DataFrame([(s["metric"]["machine"], s["metric"]["__name__"].removesuffix("_value"), ts, v)
                           for s in series if not s["metric"]["__name__"].startswith("machine_state")
                           for ts, v in zip(s["timestamps"], s["values"])], columns=["machine", "sensor", "ts", "v"])
    assert not stored.duplicated(["machine", "sensor", "ts"]).any()
    assert len(stored) == len(generated) == stats.readings > 10_000
    key = pd.DataFrame({"machine": generated.machine.astype(str), "sensor": generated.sensor.astype(str),
                        "ts": generated.timestamp.astype("datetime64[ms]").astype("int64"), "value": generated.value})
    # series by series, in time order: the same times and values (VictoriaMetrics keeps floats to ~15 digits)
    a, b = (f.sort_values(["machine", "sensor", "ts"]).reset_index(drop=True) for f in (key, stored))
    assert (a.machine == b.machine).all() and (a.sensor == b.sensor).all() and (a.ts == b.ts).all()
    assert np.allclose(a.value, b.v, rtol=1e-12, atol=0)


def twin_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "twin.app.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "120"})


def test_ingest_killed_and_restarted_mid_run(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sc = body_shop(duration=240.0, realtime_factor=30.0)
    db = f"duckdb:///{tmp_path / 'ingest.duckdb'}"
    line = f"{sc.line.site}/{sc.line.area}/{sc.line.name}"
    args = ("ingest", "--broker", f"mqtt://127.0.0.1:{mosquitto.port}", "--store", db, "--line", line,
            "--client-id", "ingest-under-test", "--exit-when-complete")
    first = twin_cli(*args)
    try:  # said once subscribed: before the run starts
        wait_for_line(first.stderr, lambda s: s.startswith("ingesting"), 60, "'ingesting' from the ingest")
    except BaseException:  # the test stops what it started
        first.kill()
        first.wait()
        raise

    def crash_and_restart() -> None:
        time.sleep(3.0)
        first.kill()  # SIGKILL mid-run: whatever it had not acknowledged is redelivered
        first.wait()
        time.sleep(1.5)
        holder.append(twin_cli(*args))

    holder: list[subprocess.Popen[str]] = []
    t = threading.Thread(target=crash_and_restart)
    t.start()
    *_, stats = stream_scenario(sc, tmp_path, broker=mosquitto.url, ingest="none", drain_timeout=120)
    t.join()
    second = holder[0]
    try:
        second.wait(120)
    except subprocess.TimeoutExpired:
        second.kill()
        pytest.fail(f"the restarted ingest did not complete the run:\n{second.communicate()[1][-3000:]}")
    assert first.returncode == -9 and second.returncode == 0, second.stderr.read() if second.stderr else ""
    assert_exactly_once(tmp_path, stats, db)


def test_two_ingest_workers_share_one_line(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Two workers in one shared-subscription group split the messages; nothing twice, nothing lost."""
    from sensors.ingest import Ingest

    sc = body_shop()
    store = open_store(f"duckdb:///{tmp_path / 'shared.duckdb'}")
    prefix = f"{sc.line.site}/{sc.line.area}/{sc.line.name}"
    workers = [Ingest(mosquitto.url, store, prefix=prefix, client_id=f"worker-{i}").start() for i in range(2)]
    *_, stats = stream_scenario(sc, tmp_path, broker=mosquitto.url, ingest="none", drain_timeout=120)
    assert workers[0].wait_for(stats.run_id, stats.readings, 60)
    for w in workers:
        w.stop()
    assert all(w.stored > 0.2 * stats.readings for w in workers)  # both did a share of the work
    assert sum(w.stored for w in workers) == stats.readings  # each message went to one worker only
    store.close()
    assert_exactly_once(tmp_path, stats, f"duckdb:///{tmp_path / 'shared.duckdb'}")


POISON = [  # they parse as JSON of the right shape; the values are what no store can hold
    b'{"schema":"linetwin/telemetry/1","run":"r","replication":0,"station":"st","machine":"m1",'
    b'"units":{"x":"u"},"readings":[["x",9223372036854775807,1.0]]}',
    b'{"schema":"linetwin/telemetry/1","run":"r","replication":1099511627776,"station":"st","machine":"m1",'
    b'"units":{"x":"u"},"readings":[["x",1000,1.0]]}',
    b'{"schema":"linetwin/state/1","run":"r","replication":0,"station":"st","machine":"m1","state":"down",'
    b'"ts":-9223372036854775807,"changes":[["down",-9223372036854775807]]}',
]


def _dead_letters(url: BrokerURL, topic: str) -> tuple[list[dict], object]:  # type: ignore[type-arg]
    dead: list[dict] = []  # type: ignore[type-arg]
    watcher = make_client(url, f"dead-letter-watcher-{os.getpid()}-{time.monotonic_ns()}")
    watcher.on_message = lambda c, u, m: dead.append(json.loads(m.payload))
    connect(watcher, url)
    watcher.subscribe(topic, 1)
    return dead, watcher


def test_poison_messages_are_dead_lettered_and_the_next_run_is_stored_whole(mosquitto: Mosquitto,
                                                                            tmp_path: Path) -> None:
    """Messages that parse but that no store can hold (a timestamp of 2^63 ms, replication 2^40, a state change
    before 1677) are dead-lettered with the reason; the ingest does not stall, and a run after them is stored whole."""
    from sensors.ingest import Ingest

    sc = body_shop(600.0)
    topics = LineTopics(sc.line.site, sc.line.area, sc.line.name)
    store = open_store(f"duckdb:///{tmp_path / 'twin.duckdb'}")
    ingest = Ingest(mosquitto.url, store, prefix=topics.prefix, client_id="poisoned-ingest").start()
    dead, watcher = _dead_letters(mosquitto.url, topics.deadletter)
    pub = make_client(mosquitto.url, "poisoner")
    connect(pub, mosquitto.url)
    for i in range(21):
        topic = topics.state("st", "m1") if i % 3 == 2 else topics.telemetry("st", "m1")
        pub.publish(topic, POISON[i % 3], qos=1).wait_for_publish(5)
    *_, stats = stream_scenario(sc, tmp_path / "run", broker=mosquitto.url, ingest="none", drain_timeout=60,
                                store_url=f"duckdb:///{tmp_path / 'unused.duckdb'}")
    assert ingest.wait_for(stats.run_id, stats.readings, 60), f"stored {store.count(stats.run_id)} of {stats.readings}"
    deadline = time.monotonic() + 10
    while len(dead) < 21 and time.monotonic() < deadline:
        time.sleep(0.1)
    ingest.stop()
    for c in (pub, watcher):
        c.disconnect()  # type: ignore[attr-defined]
        c.loop_stop()  # type: ignore[attr-defined]
    assert len(dead) == 21 and all(("out of range" in d["reason"] or "outside what the stores can hold" in d["reason"])
                                   for d in dead), [d["reason"] for d in dead][:3]
    store.close()
    assert_exactly_once(tmp_path / "run", stats, f"duckdb:///{tmp_path / 'twin.duckdb'}")


def test_a_message_the_store_refuses_is_isolated_and_dead_lettered(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """A write error holds no batch: the batch is retried message by message, the refused one dead-lettered with
    the store's reason, every other one stored; while the store does not answer at all, messages wait unacknowledged
    and are stored once it is back."""
    from sensors.bus.payloads import status_payload, telemetry_payload
    from sensors.ingest import Ingest
    from sensors.store.duck import DuckStore

    class Picky(DuckStore):  # a real DuckDB store that refuses one machine's readings, or everything while "down"
        down = False

        def append(self, batch):  # type: ignore[no-untyped-def]
            if self.down:
                raise OSError("connection refused")
            if "bad" in set(batch.catalog.machine.to_numpy()[batch.series]):
                raise ValueError("value out of range for this column")
            return super().append(batch)

        def ping(self) -> bool:
            return not self.down and super().ping()

    store = Picky(f"duckdb:///{tmp_path / 'picky.duckdb'}")
    topics = LineTopics("s", "a", "l")
    ingest = Ingest(mosquitto.url, store, prefix=topics.prefix, flush_interval=0.5).start()
    dead, watcher = _dead_letters(mosquitto.url, topics.deadletter)
    pub = make_client(mosquitto.url, "mixer")
    connect(pub, mosquitto.url)
    pub.publish(topics.run, status_payload("r", "started"), qos=1).wait_for_publish(5)

    def send(machine: str, first: int) -> None:
        payload = telemetry_payload("r", 0, "st", machine, {"x": "u"},
                                    [["x", 1000 * (first + k), 1.0] for k in range(10)])
        pub.publish(topics.telemetry("st", machine), payload, qos=1).wait_for_publish(5)

    for i in range(30):
        send("bad" if i % 10 == 3 else "good", 10 * i)
    deadline = time.monotonic() + 20
    while (store.count("r") < 270 or len(dead) < 3) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert store.count("r") == 270 and len(dead) == 3
    assert all("the store refused it: value out of range" in d["reason"] for d in dead)
    store.down = True  # an outage: nothing may be dead-lettered or lost
    for i in range(30, 40):
        send("good", 10 * i)
    time.sleep(3)
    store.down = False
    deadline = time.monotonic() + 60
    while store.count("r") < 370 and time.monotonic() < deadline:
        time.sleep(0.2)
    ingest.stop()
    for c in (pub, watcher):
        c.disconnect()  # type: ignore[attr-defined]
        c.loop_stop()  # type: ignore[attr-defined]
    assert store.count("r") == 370 and len(dead) == 3
    store.close()


def test_malformed_messages_go_to_the_dead_letter_topic(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """A fuzzed stream of bad messages between good ones: ingest keeps running, all bad ones dead-lettered."""
    import random

    from sensors.bus.payloads import status_payload, telemetry_payload
    from sensors.ingest import Ingest

    store = open_store(f"duckdb:///{tmp_path / 'dl.duckdb'}")
    topics = LineTopics("s", "a", "l")
    ingest = Ingest(mosquitto.url, store, prefix=topics.prefix).start()
    dead: list[dict] = []  # type: ignore[type-arg]
    watcher = make_client(mosquitto.url, "dead-letter-watcher")
    watcher.on_message = lambda c, u, m: dead.append(json.loads(m.payload))
    connect(watcher, mosquitto.url)
    watcher.subscribe(topics.deadletter, 1)
    pub = make_client(mosquitto.url, "fuzzer")
    connect(pub, mosquitto.url)
    pub.publish(topics.run, status_payload("r", "started"), qos=1).wait_for_publish(5)
    rng = random.Random(1)
    topic = topics.telemetry("st", "m1")
    good = 0
    bad_payloads = [b"", b"{", b"[]", b"null", b'{"schema": "linetwin/telemetry/1"}', b"\xff\xfe\x00",
                    b'{"schema":"linetwin/telemetry/1","run":"r","replication":0,"station":"st","machine":"m1",'
                    b'"units":{"x":"u"},"readings":[["x",1,NaN]]}',
                    b'{"schema":"linetwin/telemetry/1","run":"r","replication":0,"station":"st","machine":"m1",'
                    b'"units":{"x":"u"},"readings":[["x",1,Infinity]]}',
                    b'{"schema":"linetwin/telemetry/1","run":"r","replication":0,"station":"WRONG","machine":"m1",'
                    b'"units":{"x":"u"},"readings":[["x",1,1.0]]}',
                    b'{"schema":"linetwin/telemetry/1","run":"r","replication":"0","station":"st","machine":"m1",'
                    b'"units":{"x":"u"},"readings":[["x",1,1.0]]}',
                    b'{"schema":"linetwin/telemetry/1","run":"r","replication":0,"station":"st","machine":"m1",'
                    b'"units":{},"readings":[["x",1,1.0]]}',
                    b'{"schema":"linetwin/telemetry/2"}', b"x" * (2 << 20)]
    n_bad = 0
    for i in range(400):
        if rng.random() < 0.4:
            payload = rng.choice(bad_payloads) if rng.random() < 0.6 else bytes(rng.getrandbits(8) for _ in
                                                                                 range(rng.randint(0, 200)))
            n_bad += 1
        else:
            payload = telemetry_payload("r", 0, "st", "m1", {"x": "u"}, [["x", 1000 * i + k, float(k)]
                                                                         for k in range(5)])
            good += 5
        pub.publish(topic, payload, qos=1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (len(dead) < n_bad or store.count("r") < good):
        time.sleep(0.2)
    ingest.stop()
    for c in (pub, watcher):
        c.disconnect()
        c.loop_stop()
    assert store.count("r") == good
    assert len(dead) == n_bad == ingest.rejected
    assert all(d["topic"] == topic and d["reason"] for d in dead)
    assert any("oversized" in d["reason"] for d in dead) and any("non-finite" in d["reason"] for d in dead)
    store.close()


def test_publisher_spills_to_disk_while_the_broker_is_away(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """With a tiny memory bound and the broker down, messages spill to disk and all arrive later."""
    from sensors.bus.publisher import Publisher
    from sensors.ingest import Ingest

    store = open_store(f"duckdb:///{tmp_path / 'spill.duckdb'}")
    topics = LineTopics("s", "a", "spill")
    ingest = Ingest(mosquitto.url, store, prefix=topics.prefix, client_id="spill-ingest").start()
    pub = Publisher(mosquitto.url, topics, "spill-run", 0, spill_dir=tmp_path, max_memory=20_000, window=10).start()
    pub.publish_status("started")
    assert pub.flush(10)
    mosquitto.stop()
    from sensors.bus.payloads import telemetry_payload
    msgs = [(topics.telemetry("st", "m1"), telemetry_payload("spill-run", 0, "st", "m1", {"x": "u"},
                                                             [["x", 1000 * i, float(i)]]), False) for i in range(3000)]
    pub.outbox.put_many(msgs)
    time.sleep(1.0)
    assert pub.outbox.spilled_total > 2000
    mosquitto.start()
    assert pub.flush(60)
    # after the restart the broker accepts messages before the ingest has re-subscribed; MQTT 5 says
    # "no matching subscribers" and the publisher sends those again instead of losing them
    assert ingest.wait_for("spill-run", 3000, 60)
    pub.stop()
    ingest.stop()
    assert store.count("spill-run") == 3000
    assert not list(tmp_path.glob("outbox-*.sqlite"))  # emptied, so removed
    store.close()


def test_bad_broker_url_and_unreachable_broker(tmp_path: Path) -> None:
    from sensors.bus.broker import BrokerError

    with pytest.raises(BrokerError, match="write mqtt://host:1883"):
        BrokerURL.parse("http://x")
    args = ["run", "scenarios/body_shop.yaml", "--duration", "5 min", "--warmup", "0", "--broker",
            "mqtt://127.0.0.1:1", "--out", str(tmp_path / "o")]
    r = subprocess.run([sys.executable, "-m", "twin.app.cli", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "cannot reach the MQTT broker" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "twin.app.cli", "ingest", "--broker", "mqtt://127.0.0.1:1", "--store",
                        f"duckdb:///{tmp_path / 'x.duckdb'}", "--mqtt-version", "4"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "--mqtt-version '4': choose 5, 3.1.1 or auto" in r.stderr, r.stderr


def test_ingest_options_that_would_subscribe_to_nothing_are_refused(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """`--line a/b/#` ended in paho's ValueError traceback; `--line a//b/c`, `--group a/b` and an empty group
    subscribed to other topics (or none) without a word; a --spool that cannot be written was found only once the
    store was away and messages were already received; a client id or group no broker takes ended in a traceback.
    All are named before a message is taken."""
    (tmp_path / "afile").write_text("")
    cases = [(["--line", "a/b/#"], "--line 'a/b/#': write site/area/line"),
             (["--line", "a//b/c"], "--line 'a//b/c': write site/area/line"),
             (["--line", "+/+/+/"], "--line '+/+/+/': write site/area/line"),
             (["--group", "a/b"], "--group 'a/b': a shared-subscription group is one MQTT topic level"),
             (["--group", ""], "--group '': a shared-subscription group is one MQTT topic level"),
             (["--until-run", " "], "--until-run: give the run's id"),
             (["--spool", str(tmp_path / "afile" / "spool.sqlite")], "cannot write the spool there"),
             # these ended in tracebacks from paho (struct.error, UnicodeEncodeError), or a default id without a word
             (["--client-id", "x" * 70_000], "--client-id: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'… cannot be sent"),
             (["--client-id", "a\udcff"], "--client-id: 'a\\udcff' cannot be sent to a broker: give 1 to 200"),
             (["--client-id", ""], "--client-id: '' cannot be sent"),
             (["--group", "g" * 300], "--group: 'gggggggggggggggggggggggggggggggggggggggg'… cannot be sent")]
    base = ["ingest", "--broker", f"mqtt://127.0.0.1:{mosquitto.port}", "--store", f"duckdb:///{tmp_path / 'x.duckdb'}"]
    assert_mistakes(base, cases)  # each one exits before it connects


def test_tls_files_that_cannot_be_used_fail_clearly(tmp_path: Path) -> None:
    """A --cert that is not PEM ended in an ssl.SSLError traceback at the first connection; TLS files with a plain
    mqtt:// broker, or with no broker at all, were silently ignored (no TLS)."""
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    run = ["run", "scenarios/cnc_cell.yaml", "--duration", "5 min", "--warmup", "0", "--out", str(tmp_path / "o")]
    cases = [(("--broker", "mqtts://127.0.0.1:8883", "--cert", junk), "not a PEM client certificate"),
             (("--broker", "mqtts://127.0.0.1:8883", "--ca", junk), "not a PEM CA certificate"),
             (("--broker", "mqtts://127.0.0.1:8883", "--key", junk), "give the client certificate with --cert"),
             (("--broker", "mqtt://127.0.0.1:1883", "--ca", junk), "write mqtts://host:8883"),
             (("--ca", junk), "give them with --broker mqtts://")]
    for extra, message in cases:
        r = subprocess.run([sys.executable, "-m", "twin.app.cli", *run, *map(str, extra)], capture_output=True,
                           text=True, timeout=60, env={**os.environ, "COLUMNS": "300"})
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (extra, r.stderr)
    assert not (tmp_path / "o").exists()


def test_consecutive_runs_on_one_broker_each_get_everything(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The ingest of an earlier run leaves no session behind that would take a share of the next run."""
    for i in range(2):
        out = tmp_path / f"run{i}"
        out.mkdir()
        *_, stats = stream_scenario(body_shop(duration=600.0), out, broker=mosquitto.url, drain_timeout=60)
        assert stats.complete
        assert_exactly_once(out, stats)
        time.sleep(1.1)  # run ids carry the second they started


def test_outbox_keeps_unsent_messages_on_disk_when_stopped(tmp_path: Path) -> None:
    import sqlite3

    from sensors.bus.spool import Outbox

    box = Outbox(tmp_path / "outbox.sqlite", max_bytes=100)
    box.put_many([("t/a", b"x" * 60, False), ("t/b", b"y" * 60, True), ("t/c", b"z", False)])
    assert box.peek(0.1) == ("t/a", b"x" * 60, False)
    box.close()
    rows = sqlite3.connect(tmp_path / "outbox.sqlite").execute("SELECT topic, retain FROM m ORDER BY id").fetchall()
    assert rows == [("t/a", 0), ("t/b", 1), ("t/c", 0)]  # in the order they were queued


def test_a_streamed_run_into_a_line_protocol_server_without_flux_completes(mosquitto: Mosquitto, tmp_path: Path,
                                                                             victoria_metrics: object) -> None:
    """`twin run` over mosquitto into VictoriaMetrics (InfluxDB write API, no Flux to count with): the ingest's own
    count of what it wrote decides completion; every reading arrives once and the run ends with exit 0."""
    import subprocess

    from tests.conftest import ROOT, twin_cmd

    vm = victoria_metrics
    out = tmp_path / "run"
    r = subprocess.run(twin_cmd("run", "scenarios/bottling.yaml", "--duration", "20 min", "--warmup", 0,
                                "--replications", 1, "--broker", str(mosquitto.url), "--store",
                                f"influxdb://127.0.0.1:{vm.port}?org=plant&bucket=linetwin", "--out", out),  # type: ignore[attr-defined]
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((out / "run.json").read_text())
    generated = len(pd.read_parquet(out / "readings.parquet"))
    assert f"{generated:,} in the store" in r.stdout.replace("\n", " ")
    series = vm.export_points(f'{{run="{meta["run_id"]}", __name__=~".+_value"}}',  # type: ignore[attr-defined]
                              _reading_points, generated)
    assert _reading_points(series) == generated > 10_000
