"""Plant data in: a gateway's own JSON on its own topic tree, mapped by a connector config, stored by the twin's
ingest under the line's names, units and the gateway's timestamps; a message no mapping matches goes to the
dead-letter topic with the reason. With a real mosquitto and a real DuckDB store."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sensors.connect import ConnectError, Unmapped, load_config, translate
from sensors.store import open_store
from tests.conftest import ROOT, Mosquitto, twin_cmd, wait_connected, wait_for_line
from tests.helpers import mutated

LINE = "plant-hamburg/hall-2/bottling-1"


def config(tmp_path: Path, broker: str) -> Path:
    f = tmp_path / "connect.yaml"
    f.write_text(f"""line: {{site: plant-hamburg, area: hall-2, name: bottling-1}}
source: {broker}
run: plant
scenario: {ROOT / "scenarios" / "bottling.yaml"}
subscribe: ["gw7/#", "gw9/#"]
json:
  - topic: "gw7/{{station}}/{{machine}}/data"
    timestamp: {{field: ts, unit: ms}}
    values:
      vibration: {{field: vib, unit: mm/s}}
      bearing_temp: {{field: temps.bearing, unit: degC}}
    state: {{field: status, map: {{1: working, 2: down}}, reason: fault}}
""")
    return f


@pytest.mark.slow
def test_a_gateways_json_is_stored_under_the_lines_names_and_strays_are_dead_lettered(
        tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "plant.duckdb"
    proc = subprocess.Popen(twin_cmd("connect", config(tmp_path, str(mosquitto.url)), "--store", f"duckdb:///{db}",
                                     "--duration", "12 s", "--out", tmp_path / "runs" / "bottling-1" / "plant"),
                            cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    dead: list[dict[str, object]] = []
    got = threading.Event()
    watch = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    watch.on_message = lambda c, u, m: (dead.append(json.loads(m.payload)), got.set())
    watch.connect("127.0.0.1", mosquitto.port)
    watch.subscribe(f"{LINE}/deadletter", 1)
    watch.loop_start()
    gw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    gw.connect("127.0.0.1", mosquitto.port)
    gw.loop_start()
    try:
        wait_connected(proc)
        time.sleep(0.5)
        t0 = 1767592800000  # 2026-01-05 06:00 UTC
        for k in range(10):
            msg = {"ts": t0 + 1000 * k, "vib": 2.0 + k / 10, "temps": {"bearing": 41.5}, "status": 1}
            gw.publish("gw7/filler/filler-a/data", json.dumps(msg), qos=1).wait_for_publish(5)
        gw.publish("gw7/filler/filler-a/data", json.dumps({"ts": t0 + 20_000, "status": 2, "fault": "valve"}),
                   qos=1).wait_for_publish(5)
        gw.publish("gw9/other/topic", b'{"vib": 1}', qos=1).wait_for_publish(5)
        assert got.wait(10), "no dead letter for the unmapped message"
        _, err = proc.communicate(timeout=60)
    finally:
        gw.loop_stop()
        watch.loop_stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "11 plant messages forwarded, 1 dead-lettered" in err
    assert dead[0]["topic"] == "gw9/other/topic" and "no mapping matches topic" in str(dead[0]["reason"])
    store = open_store(f"duckdb:///{db}", read_only=True)
    rows = store.query(run="plant")
    assert len(rows) == 20 and set(rows.machine) == {"filler-a"} and set(rows.sensor) == {"vibration", "bearing_temp"}
    vib = rows[rows.sensor == "vibration"].sort_values("ts")
    # 06:00 UTC is 07:00 on the line's clock (the scenario's Europe/Berlin), as the twin's own runs keep their times
    assert vib.ts.iloc[0] == pd.Timestamp("2026-01-05 07:00:00") and vib.value.iloc[-1] == pytest.approx(2.9)
    series = store.series("plant").set_index("sensor")
    assert series.unit.to_dict() == {"vibration": "mm/s", "bearing_temp": "degC"}
    assert set(series.station) == {"filler"}
    states = store.states("plant")
    assert list(states.state) == ["working", "down"] and states.reason.iloc[-1] == "valve"
    store.close()
    # the dashboard shows the real line like a simulated one: its run is announced, its states drawn
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LINETWIN_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(str(ROOT / "dashboard" / "views" / "overview.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Plant data (`twin connect`)" in i.value for i in at.info)
    # its availability from its state records: the filler down since 07:00:20, to the end of the range
    tile = next(m for m in at.metric if m.label == "availability [%]")
    assert float(tile.value) < 1 and any("plant data, over the time range" in c.value for c in at.caption)
    losses = next(d.value for d in at.dataframe if "share of planned time [%]" in d.value.columns)
    assert "down" in losses.index and "working (speed and quality need part counters)" in losses.index, losses
    page = AppTest.from_file(str(ROOT / "dashboard" / "views" / "machine.py"), default_timeout=60).run()
    page.selectbox[0].set_value("filler-a").run()
    assert not page.exception, [e.value for e in page.exception]
    tiles = {m.label: m.value for m in page.metric}  # the machine's figures from its state records
    assert tiles["failures"] == "1" and float(tiles["availability [%]"]) < 1, tiles
    assert "run plant" in " ".join(c.value for c in at.caption)
    # the time range spans the plant's data (the gateway's 07:00 Berlin) to the stop, not the scenario's nominal day:
    # it showed 2026-01-05 06:00 – 14:00 whatever the data, and a plant connected today showed nothing
    span = json.loads((tmp_path / "runs" / "bottling-1" / "plant" / "run.json").read_text())
    assert span["since"] == "2026-01-05T07:00:00" and span["until"] >= span["since"]
    assert f"2026-01-05 07:00 – {span['until'][:10]}" in " ".join(c.value for c in at.sidebar.caption)
    assert len(at.get("vega_lite_chart")) >= 2  # the state timeline and the downtime Pareto from the store


@pytest.mark.slow
def test_what_the_plant_publishes_while_the_connector_restarts_is_stored(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The connector's session on the plant's broker was a clean one under a new client id each start: what a gateway
    published at QoS 1 while the connector was down (an update, a reboot) was lost. Its session is now durable, one
    per run, so the broker keeps those messages for it."""
    db = tmp_path / "plant.duckdb"
    gw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    gw.connect("127.0.0.1", mosquitto.port)
    gw.loop_start()
    t0 = 1767592800000

    def publish(ks: range) -> None:
        for k in ks:
            msg = {"ts": t0 + 1000 * k, "vib": 2.0, "temps": {"bearing": 41.5}, "status": 1}
            gw.publish("gw7/filler/filler-a/data", json.dumps(msg), qos=1).wait_for_publish(5)

    def connector(seconds: int, ks: range) -> str:
        proc = subprocess.Popen(twin_cmd("connect", config(tmp_path, str(mosquitto.url)), "--store",
                                         f"duckdb:///{db}", "--duration", f"{seconds} s", "--out", tmp_path / "run"),
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_connected(proc)
            publish(ks)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        return err

    try:
        connector(5, range(3))
        publish(range(3, 7))  # no connector
        err = connector(5, range(0))
    finally:
        gw.loop_stop()
    assert "0 plant messages forwarded" not in err, err
    store = open_store(f"duckdb:///{db}", read_only=True)
    rows = store.query(run="plant")
    store.close()
    assert len(rows) == 14 and rows[rows.sensor == "vibration"].ts.nunique() == 7


@pytest.mark.slow
def test_a_stop_stores_everything_forwarded_or_keeps_it_for_the_next_connector(tmp_path: Path,
                                                                                mosquitto: Mosquitto) -> None:
    """`twin connect --store` stopped half a second after the connector and then ended its ingest's session, under a
    new client id each start: what the ingest had not taken by then was lost. A stop now waits until the ingest has
    taken every message the connector published; what a stop could not wait for stays in the run's session (kept,
    under a fixed id), which the next connector's ingest resumes."""
    from sensors.connector import Connector, stop_stored, store_ingest

    cfg = load_config(config(tmp_path, str(mosquitto.url)))
    db = f"duckdb:///{tmp_path / 'plant.duckdb'}"
    gw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    gw.connect("127.0.0.1", mosquitto.port)
    gw.loop_start()
    t0, n = 1767592800000, 1500

    def forward(conn: Connector, first: int) -> None:
        """n plant messages through the connector, until all are forwarded."""
        for k in range(first, first + n):
            msg = {"ts": t0 + 1000 * k, "vib": 2.0, "temps": {"bearing": 41.5}, "status": 1}
            info = gw.publish("gw7/filler/filler-a/data", json.dumps(msg), qos=1)
        info.wait_for_publish(10)
        deadline = time.monotonic() + 60
        while conn.forwarded < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert conn.forwarded >= n  # at least once: a message redelivered by the plant's broker comes twice

    try:
        for first in (0, n, 2 * n):
            store = open_store(db)
            conn = Connector(cfg)
            sink = store_ingest(conn, store).start()
            if first == n:  # a stop that could not wait: the ingest takes nothing more, its session is kept
                sink.stop(keep_session=True)
                conn.start()
                forward(conn, first)
                conn.stop()
            else:
                conn.start()
                forward(conn, first)
                assert stop_stored(conn, sink)  # waited for: everything taken at the stop
            store.close()
    finally:
        gw.loop_stop()
    store = open_store(db, read_only=True)
    rows = store.query(run="plant")
    store.close()
    # the third connector's ingest stored the second's messages from the kept session, with its own
    assert len(rows) == 2 * 3 * n and rows[rows.sensor == "vibration"].ts.nunique() == 3 * n


@pytest.mark.slow
def test_while_the_twins_broker_is_away_the_plants_broker_keeps_the_messages(tmp_path: Path,
                                                                             mosquitto: Mosquitto) -> None:
    """The connector acknowledged each plant message as it came and held what it made of it in paho's memory while the
    twin's broker was away: memory grew with the outage, and a connector stopped meanwhile lost all of it. A plant
    message is now acknowledged only once the twin's broker has its translation: the plant's broker keeps the rest
    (at most its in-flight limit, 100 here, comes in), and a stop loses nothing."""
    from sensors.connector import Connector, stop_stored, store_ingest

    twin = Mosquitto(tmp_path / "twin-broker")
    twin.workdir.mkdir()
    twin.start()
    f = config(tmp_path, str(mosquitto.url))
    f.write_text(f.read_text() + f"target: {twin.url}\n")
    cfg = load_config(f)
    db = f"duckdb:///{tmp_path / 'plant.duckdb'}"
    gw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    gw.connect("127.0.0.1", mosquitto.port)
    gw.loop_start()
    t0, n = 1767592800000, 400
    try:
        store = open_store(db)
        conn = Connector(cfg)
        sink = store_ingest(conn, store).start()
        conn.start()
        twin.stop()  # the twin's broker goes away (with its sessions persisted)
        for k in range(n):
            msg = {"ts": t0 + 1000 * k, "vib": 2.0, "temps": {"bearing": 41.5}, "status": 1}
            info = gw.publish("gw7/filler/filler-a/data", json.dumps(msg), qos=1)
        info.wait_for_publish(10)
        deadline = time.monotonic() + 30  # a busy machine may take a while to hand the connector its first ones
        while not conn.forwarded and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1)
        assert 0 < conn.forwarded <= 100, conn.forwarded  # held back by the plant's broker, not piled up here
        conn.stop(timeout=1)  # stopped during the outage
        assert conn.held == conn.forwarded and conn.kept == 0  # each left with the plant's broker, none in the outbox
        sink.stop(keep_session=True)
        store.close()
        twin.start()
        store = open_store(db)
        conn = Connector(cfg)
        sink = store_ingest(conn, store).start()
        conn.start()
        assert sink.wait_for("plant", 2 * n, 60), sink.stored_by_run
        assert stop_stored(conn, sink)
        store.close()
    finally:
        gw.loop_stop()
        twin.stop()
    store = open_store(db, read_only=True)
    rows = store.query(run="plant")
    store.close()
    assert len(rows) == 2 * n and rows[rows.sensor == "vibration"].ts.nunique() == n


@pytest.mark.slow
def test_a_plant_message_without_a_timestamp_sent_again_keeps_the_time_it_first_came(tmp_path: Path,
                                                                                    mosquitto: Mosquitto) -> None:
    """A plant message without a timestamp field is stamped with the time it is received. The twin's broker took
    what 50 of them became, but its acknowledgements were lost (a connection that dropped), so the connector stopped
    with the 50 not acknowledged to the plant's broker, which sends them again to the next connector (MQTT's DUP).
    Stamped anew, each was stored twice, at two times; now it keeps the time it first came and is stored once."""
    from sensors.connector import Connector, stop_stored, store_ingest

    f = config(tmp_path, str(mosquitto.url))
    f.write_text(f.read_text().replace("    timestamp: {field: ts, unit: ms}\n", ""))
    cfg = load_config(f)
    db = f"duckdb:///{tmp_path / 'plant.duckdb'}"
    gw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    gw.connect("127.0.0.1", mosquitto.port)
    gw.loop_start()
    n = 50
    try:
        store = open_store(db)
        conn = Connector(cfg)
        sink = store_ingest(conn, store).start()
        conn.start()
        conn.pub.on_publish = lambda *a: None  # the twin's broker's acknowledgements are lost
        for k in range(n):
            gw.publish("gw7/filler/filler-a/data", json.dumps({"vib": k / 10, "status": 1}), qos=1).wait_for_publish(5)
        assert sink.wait_for("plant", n, 30), sink.stored_by_run  # the twin's broker had them all
        conn.stop(timeout=1)
        assert conn.held == n
        sink.stop(keep_session=True)
        store.close()
        store = open_store(db)
        conn = Connector(cfg)
        sink = store_ingest(conn, store).start()
        conn.start()  # the plant's broker sends the 50 again
        deadline = time.monotonic() + 30
        while conn.forwarded < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert conn.forwarded == n
        assert stop_stored(conn, sink) and conn.held == 0
        store.close()
    finally:
        gw.loop_stop()
    store = open_store(db, read_only=True)
    vib = store.query(run="plant", sensors=["vibration"])
    store.close()
    assert sorted(vib.value) == [k / 10 for k in range(n)]  # each once, at the time it first came


def test_a_gateways_numbers_as_text_and_fault_text_sent_once_are_read_as_meant(tmp_path: Path) -> None:
    """A tag sent as text ("2.2") is its number (such a gateway's every message was dead-lettered); a gateway that sends
    the fault text only when it changes keeps the stop's reason in its later messages (each started a new stop with
    no reason, splitting the downtime in the Pareto)."""
    cfg = load_config(config(tmp_path, "mqtt://127.0.0.1:1883"))
    states: dict[tuple[str, str], tuple[str, str]] = {}

    def read(message: bytes) -> list[dict[str, Any]]:
        return [json.loads(t.payload) for t in translate(cfg, "gw7/filler/filler-a/data", message, 0, states)]

    telemetry, working = read(b'{"ts": 1767592800000, "vib": " 2.2", "status": "1"}')
    assert telemetry["readings"][0][2] == 2.2 and working["state"] == "working"
    (digital,) = read(b'{"ts": 1767592800500, "vib": true}')  # a digital signal, as a historian keeps it: 1 or 0
    assert digital["readings"][0][2] == 1.0
    (down,) = read(b'{"ts": 1767592801000, "status": 2, "fault": "valve"}')
    assert (down["state"], down.get("reason")) == ("down", "valve")
    assert read(b'{"ts": 1767592802000, "status": 2}') == []  # the same stop: no new state record
    assert read(b'{"ts": 1767592803000, "status": 2.0}') == []
    (cleared,) = read(b'{"ts": 1767592804000, "status": 2, "fault": ""}')  # an empty text given: said so
    assert "reason" not in cleared
    read(b'{"ts": 1767592805000, "status": 1}')
    (again,) = read(b'{"ts": 1767592806000, "status": 2}')  # a new stop without its text: no reason, not the old one
    assert again["state"] == "down" and "reason" not in again
    for text in ("high", "nan", "1e400", "2,5"):
        with pytest.raises(Unmapped, match="not a finite number") as refused:
            read(f'{{"vib": "{text}"}}'.encode())
        assert ("a decimal comma: have the gateway send numbers with a decimal point" in str(refused.value)) \
            == (text == "2,5"), refused.value  # what to do, where it is one


BATCHES = """
  - topic: "gw8/{station}/{machine}/batch"     # several samples a message, the status given once for the batch
    records: {field: samples}
    timestamp: {field: ts, unit: ms}
    values: {vibration: {field: vib, unit: mm/s}}
    state: {field: status, map: {1: working, 2: down}, reason: fault}
  - topic: "kep/{station}/{machine}"           # a tag list: one item a tag, its name in id, its value in v
    records: {field: values, tag: id, value: v, quality: q}
    timestamp: {field: t, unit: ms}
    values: {vibration: {field: Channel1.Filler.Vib, unit: mm/s}}
    state: {field: Channel1.Filler.Status, map: {1: working, 2: down}, reason: Channel1.Filler.Fault}
"""


def batch(t0: int) -> dict[str, Any]:
    return {"ts": t0, "status": 1, "samples": [{"ts": t0 + 100 * k, "vib": k / 10} for k in range(5)]
            + [{"ts": t0 + 500, "status": 2, "fault": "valve"}]}


def tags(t0: int) -> dict[str, Any]:
    return {"timestamp": t0 + 2000, "values": [
        {"id": "Channel1.Filler.Vib", "v": 2.5, "q": True, "t": t0 + 1000},
        {"id": "Channel1.Filler.Status", "v": 2, "q": True, "t": t0 + 1000},
        {"id": "Channel1.Filler.Fault", "v": "jam", "q": True, "t": t0 + 1000},
        {"id": "Channel1.Filler.Other", "v": 7, "q": True, "t": t0 + 1000},
        {"id": "Channel1.Filler.Vib", "v": "2.6", "q": True, "t": t0 + 1100},
        {"id": "Channel1.Filler.Vib", "v": 0, "q": False, "t": t0 + 1200}]}  # a failed sensor's value


def test_batched_samples_and_tag_lists_are_read_sample_by_sample(tmp_path: Path) -> None:
    """A gateway that sends several samples a message, or a tag list (Kepware's IoT gateway, Node-RED): each sample
    is stored at its own time; the mapping could read only one object a message, and such a gateway's data not at
    all."""
    f = config(tmp_path, "mqtt://127.0.0.1:1883")
    f.write_text(f.read_text() + BATCHES)
    cfg = load_config(f)
    states: dict[tuple[str, str], tuple[str, str]] = {}
    t0 = 1767592800000
    h = 3_600_000  # the line's clock (the scenario's Europe/Berlin) is an hour ahead of UTC in January
    out = [json.loads(t.payload) for t in translate(cfg, "gw8/filler/filler-a/batch", json.dumps(batch(t0)).encode(),
                                                    0, states)]
    vib = [r for o in out for r in o.get("readings", [])]
    assert vib == [["vibration", t0 + h + 100 * k, k / 10] for k in range(5)]
    assert [(o["state"], o["ts"], o.get("reason")) for o in out if "state" in o] == [
        ("working", t0 + h, None), ("down", t0 + h + 500, "valve")]  # the batch's status for each sample until its own
    states.clear()
    out = [json.loads(t.payload) for t in translate(cfg, "kep/filler/filler-b", json.dumps(tags(t0)).encode(), 0,
                                                    states)]
    assert [r for o in out for r in o.get("readings", [])] == [["vibration", t0 + h + 1000, 2.5],
                                                               ["vibration", t0 + h + 1100, 2.6]]
    assert [(o["machine"], o["state"], o.get("reason")) for o in out if "state" in o] == [("filler-b", "down", "jam")]
    (dead,) = [o for o in out if o["schema"] == "linetwin/deadletter/1"]  # the bad-quality item alone, not stored
    assert json.loads(dead["payload"]) == [tags(t0)["values"][-1]] and "values[5]: q not in records: good" in \
        dead["reason"]
    for message, reason in [({"samples": 3}, "field 'samples' is int, not a list of samples"),
                            ({"other": []}, "field 'samples' is missing"),
                            ({"samples": [1]}, r"samples\[0\] is int, not a JSON object"),
                            ({"samples": [{"vib": 1}, {"vib": "x"}]},
                             r"samples\[1\]: field 'vib' \(vibration\) is 'x'"),
                            ({"samples": [{"ts": 5, "vib": 1}]}, r"samples\[0\]: timestamp 5 \(ms\) is in 1970"),
                            ({"samples": [{"x": 1}]}, r"none of the mapped fields \(vib\) is in its list 'samples'"),
                            ({"samples": [{}] * 10_001}, "10,001 items, more than records: max_items")]:
        with pytest.raises(Unmapped, match=reason):
            translate(cfg, "gw8/filler/filler-a/batch", json.dumps(message).encode(), 0, {})
    with pytest.raises(Unmapped, match=r"values\[0\]: its tag field 'id' is None, not a name"):
        translate(cfg, "kep/filler/filler-b", b'{"values": [{"v": 1, "q": true}]}', 0, {})


@pytest.mark.slow
def test_a_batching_gateway_is_stored_through_the_broker(tmp_path: Path, mosquitto: Mosquitto) -> None:
    f, db = config(tmp_path, str(mosquitto.url)), tmp_path / "plant.duckdb"
    f.write_text(f.read_text().replace('"gw7/#", "gw9/#"', '"gw7/#", "gw8/#", "kep/#"') + BATCHES)
    proc = subprocess.Popen(twin_cmd("connect", f, "--store", f"duckdb:///{db}", "--duration", "6 s"), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    gw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    gw.connect("127.0.0.1", mosquitto.port)
    gw.loop_start()
    try:
        wait_connected(proc)
        t0 = 1767592800000
        gw.publish("gw8/filler/filler-a/batch", json.dumps(batch(t0)), qos=1).wait_for_publish(5)
        gw.publish("kep/filler/filler-b", json.dumps(tags(t0)), qos=1).wait_for_publish(5)
        _, err = proc.communicate(timeout=60)
    finally:
        gw.loop_stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "2 plant messages forwarded, 1 dead-lettered" in err  # the bad-quality item
    store = open_store(f"duckdb:///{db}", read_only=True)
    vib, states = store.query(run="plant", sensors=["vibration"]), store.states("plant")
    store.close()
    assert sorted(zip(vib.machine, vib.value)) == [("filler-a", k / 10) for k in range(5)] + [("filler-b", 2.5),
                                                                                                ("filler-b", 2.6)]
    assert sorted(zip(states.machine, states.state, states.reason)) == [
        ("filler-a", "down", "valve"), ("filler-a", "working", ""), ("filler-b", "down", "jam")]


def test_plant_times_are_kept_on_the_lines_clock(tmp_path: Path) -> None:
    """A plant's times are real instants (epoch, OPC UA and Sparkplug in UTC); the twin keeps every time on the line's
    clock (docs/mqtt.md), so a Berlin plant's data was stored an hour early (two in summer): its dashboard, shifts
    and what-ifs an hour off. The zone is the config's line's, or its scenario's."""
    f = config(tmp_path, "mqtt://127.0.0.1:1883")
    text = f.read_text()

    def ts_of(cfg: Any, message: dict[str, Any], received: int = 0) -> int:
        out = translate(cfg, "gw7/filler/filler-a/data", json.dumps(message).encode(), received, {})
        return int(json.loads(out[0].payload)["readings"][0][1])

    berlin = load_config(f)  # the scenario's zone, bottling's Europe/Berlin
    assert berlin.line.timezone == "Europe/Berlin"
    winter, summer = 1767592800000, 1783058400000  # 2026-01-05 06:00 and 2026-07-03 06:00 UTC
    assert ts_of(berlin, {"ts": winter, "vib": 1}) == winter + 3_600_000
    assert ts_of(berlin, {"ts": summer, "vib": 1}) == summer + 7_200_000
    assert ts_of(berlin, {"vib": 1}, received=winter) == winter + 3_600_000  # the time it came, likewise
    iso = tmp_path / "iso.yaml"
    iso.write_text(text.replace("{field: ts, unit: ms}", "{field: ts, unit: iso}"))
    for when in ("2026-01-05T06:00:00Z", "2026-01-05T07:00:00+01:00", "2026-01-05T07:00:00"):  # the last: line clock
        assert ts_of(load_config(iso), {"ts": when, "vib": 1}) == winter + 3_600_000, when
    # the hour autumn's change repeats (02:40 CEST, then 02:40 CET an hour later): both stored at 02:40, interleaved;
    # read at half speed, one pass after the other (twin.clock); a lone local time without offset as the first pass
    line = {t: int(pd.Timestamp(t).value // 1_000_000) for t in ("2026-10-25 02:20", "2026-10-25 02:50")}
    first, second = (int(pd.Timestamp(t).value // 1_000_000) for t in ("2026-10-25T00:40Z", "2026-10-25T01:40Z"))
    assert (ts_of(berlin, {"ts": first, "vib": 1}), ts_of(berlin, {"ts": second, "vib": 1})) == tuple(line.values())
    assert ts_of(load_config(iso), {"ts": "2026-10-25T02:40:00", "vib": 1}) == line["2026-10-25 02:20"]
    assert ts_of(load_config(iso), {"ts": "2026-10-25T02:40:00+01:00", "vib": 1}) == line["2026-10-25 02:50"]
    utc = tmp_path / "utc.yaml"
    utc.write_text(text.replace("name: bottling-1}", "name: bottling-1, timezone: UTC}")
                   .replace(f"scenario: {ROOT / 'scenarios' / 'bottling.yaml'}\n", ""))
    assert ts_of(load_config(utc), {"ts": winter, "vib": 1}) == winter
    utc.write_text(text.replace("name: bottling-1}", "name: bottling-1, timezone: America/Chicago}"))
    with pytest.raises(ConnectError, match=r"line\.timezone: America/Chicago, but .*bottling\.yaml runs the line in "
                                           "Europe/Berlin: leave timezone out"):
        load_config(utc)


def test_mapping_mistakes_and_bad_messages_are_named(tmp_path: Path) -> None:
    f = config(tmp_path, "mqtt://127.0.0.1:1883")
    cfg = load_config(f)
    with pytest.raises(Unmapped, match="not a finite number"):
        translate(cfg, "gw7/a/b/data", b'{"vib": "high"}', 0)
    with pytest.raises(Unmapped, match="state value 7 of field 'status' is not in the mapping"):
        translate(cfg, "gw7/a/b/data", b'{"status": 7}', 0)
    with pytest.raises(Unmapped, match="not JSON"):
        translate(cfg, "gw7/a/b/data", b"\xff", 0)
    with pytest.raises(Unmapped, match="not between 1970 and 2200"):
        translate(cfg, "gw7/a/b/data", b'{"vib": 1, "ts": -5}', 0)
    # epoch seconds under unit: ms were stored in January 1970 without a word; a counter (uptime) likewise
    with pytest.raises(Unmapped, match=r"timestamp 1767592800 \(ms\) is in 1970: if the gateway sends seconds, write "
                                       "unit: s"):
        translate(cfg, "gw7/a/b/data", b'{"vib": 1, "ts": 1767592800}', 0)
    with pytest.raises(Unmapped, match=r"timestamp 86400000 \(ms\) is in 1970: the field holds no epoch time"):
        translate(cfg, "gw7/a/b/data", b'{"vib": 1, "ts": 86400000}', 0)
    assert translate(cfg, "gw7/a/b/data", b'{"vib": 1, "ts": 1767592800000}', 0)  # the same time in ms: stored
    iso = tmp_path / "iso.yaml"  # ISO times were not checked at all: 1800 and 9999 were stored
    iso.write_text(f.read_text().replace("{field: ts, unit: ms}", "{field: ts, unit: iso}"))
    for when in ("1800-01-01T00:00:00", "9999-01-01T00:00:00"):
        with pytest.raises(Unmapped, match=rf"timestamp '{when}' \(iso\) is not between 1970 and 2200"):
            translate(load_config(iso), "gw7/a/b/data", f'{{"vib": 1, "ts": "{when}"}}'.encode(), 0)
    f.write_text(f.read_text().replace('topic: "gw7/{station}/{machine}/data"', 'topic: "gw7/+/data"'))
    with pytest.raises(ConnectError, match=r"connect.yaml:7 json\[0\].topic: write \{name\}"):
        load_config(f)
    # filters paho refuses only when it subscribes (a traceback), and a level name used twice (a regex error at the
    # first message): named with their lines
    ok = config(tmp_path, "mqtt://127.0.0.1:1883").read_text()
    for bad, message in (('["gw7/#/x"]', r":5 subscribe: 'gw7/#/x' is not an MQTT topic filter"),
                         ('["gw7/+", ""]', r":5 subscribe: '' is not an MQTT topic filter"),
                         ('["a/b+"]', r":5 subscribe: 'a/b\+' is not an MQTT topic filter")):
        f.write_text(ok.replace('subscribe: ["gw7/#", "gw9/#"]', f"subscribe: {bad}"))
        with pytest.raises(ConnectError, match="connect.yaml" + message):
            load_config(f)
    f.write_text(ok.replace('topic: "gw7/{station}/{machine}/data"', 'topic: "gw7/{station}/{station}/{machine}"'))
    with pytest.raises(ConnectError, match=r"json\[0\].topic: \{station\} names two topic levels"):
        load_config(f)
    # a mapping no message can reach (the first matching mapping takes a message) was silently never used
    second = ('  - topic: "gw7/{area}/{machine}/data"\n    station: filler\n    values: {temp: {field: t}}\n')
    f.write_text(ok + second)
    with pytest.raises(ConnectError, match=r"json\[1\] \(topic 'gw7/\{area\}/\{machine\}/data'\) is never used: "
                                           r"json\[0\] \('gw7/\{station\}/\{machine\}/data'\) matches"):
        load_config(f)
    f.write_text(ok.replace("json:\n", "json:\n" + second.replace("{area}", "filler")))  # the specific one first: fine
    assert [m.topic for m in load_config(f).json_] == ["gw7/filler/{machine}/data", "gw7/{station}/{machine}/data"]
    f.write_text("line: {site: a, area: b, name: c}\nsource: mqtt://x\njsn: []\n")
    with pytest.raises(ConnectError, match=r"connect.yaml:3 jsn: unknown key, did you mean 'json'\?"):
        load_config(f)
    f.write_text("line: {site: a, area: b, name: c}\nsource: http://x\ntarget: mqtt://x:99999\njson: []\n")
    with pytest.raises(ConnectError, match=r"connect.yaml:2 source: broker URL 'http://x': write mqtt://host:1883.*"
                                           r"connect.yaml:3 target: .*the port is not a number"):
        load_config(f)  # named with their lines (they came from the connector, without file or line)
    f.write_text("line: {site: a, area: b, name: c}\nsource: mqtt://x\n")
    with pytest.raises(ConnectError, match=r"map the plant's data: json:, opcua: or sparkplug:"):
        load_config(f)
    r = subprocess.run(twin_cmd("connect", f), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "connect.yaml" in r.stderr and "Traceback" not in r.stderr


CONNECT_BASES = {  # a gateway's JSON, an OPC UA server, Sparkplug B devices
    "json": {"line": {"site": "plant-hamburg", "area": "hall-2", "name": "bottling-1"}, "source": "mqtt://127.0.0.1:1",
             "run": "plant", "scenario": str(ROOT / "scenarios" / "bottling.yaml"), "subscribe": ["gw7/#"],
             "json": [{"topic": "gw7/{station}/{machine}/data", "timestamp": {"field": "ts", "unit": "ms"},
                       "values": {"vibration": {"field": "vib", "unit": "mm/s", "scale": 0.1},
                                  "bearing_temp": {"field": "temps.bearing", "unit": "degC"}},
                       "state": {"field": "status", "map": {1: "working", 2: "down"}, "reason": "fault"},
                       "product": {"field": "recipe", "map": {4711: "still-05"}}}]},
    "opcua": {"line": {"site": "plant-hamburg", "area": "hall-2", "name": "pressing"},
              "source": "opc.tcp://127.0.0.1:4840/plant", "target": "mqtt://127.0.0.1:1", "run": "plant",
              "opcua": {"interval": 0.1, "bad_quality": "drop", "machines": [
                  {"station": "press", "machine": "press-1",
                   "values": {"vibration": {"node": "ns=2;s=Press1.Vibration", "unit": "mm/s", "scale": 0.5}},
                   "state": {"node": "ns=2;s=Press1.Status", "map": {1: "working", 2: "down"},
                             "reason": "ns=2;s=Press1.Fault"},
                   "product": {"node": "ns=2;s=Press1.Recipe"}}]}},
    "sparkplug": {"line": {"site": "plant-hamburg", "area": "hall-2", "name": "bottling-1"},
                  "source": "mqtt://127.0.0.1:1", "run": "plant",
                  "sparkplug": {"group": "plant1", "devices": [
                      {"node": "edge-7", "device": "filler-a", "station": "filler", "machine": "filler-a",
                       "values": {"vibration": {"metric": "Vib", "unit": "mm/s"}},
                       "state": {"metric": "Status", "map": {1: "working", 2: "down"}, "reason": "Fault"},
                       "buffer": {"metric": "Infeed"}, "product": {"metric": "Recipe", "map": {"A": "juice-10"}}}]}},
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated(CONNECT_BASES))
def test_any_mutation_of_a_connect_config_is_loaded_or_refused_clearly(tmp_path: Path, data: dict[str, Any]) -> None:
    """A connector config is user input like a scenario: whatever a few edits do to one, `twin connect` loads it or
    refuses it naming the file and field, never with another exception; one that loads translates a gateway's
    message or says why it does not."""
    f = tmp_path / "mutant.yaml"
    f.write_text(yaml.safe_dump(data, allow_unicode=True))
    try:
        cfg = load_config(f)
    except ConnectError as e:
        assert "mutant.yaml" in str(e).split(":")[0] and "Traceback" not in str(e), e
        return
    with contextlib.suppress(Unmapped):
        translate(cfg, "gw7/filler/filler-a/data", b'{"ts": 1767592800000, "vib": 25, "status": 2, "fault": "x"}',
                  1767592800000)


def test_the_configs_line_and_machines_are_checked_against_its_scenario(tmp_path: Path) -> None:
    """With scenario:, the dashboard draws that line with the plant's data: a station not in it ('filer') was stored
    but never shown, another line's scenario drew the wrong line, and a missing file was found only after
    connecting (or never, without --store)."""
    ok = config(tmp_path, "mqtt://127.0.0.1:1883").read_text()
    f = tmp_path / "connect.yaml"
    fixed = '  - topic: "gw9/{machine}"\n    station: filer\n    values: {temp: {field: t}}\n'
    f.write_text(ok + fixed)
    with pytest.raises(ConnectError, match=r"connect.yaml:\d+ json\[1\].station: no station 'filer' in .*bottling"
                                           r".yaml \(its stations: .*filler"):
        load_config(f)
    f.write_text(ok + fixed.replace('"gw9/{machine}"', '"gw9/x"').replace("station: filer",
                                                                          "station: filler\n    machine: filler-z"))
    with pytest.raises(ConnectError, match=r"json\[1\].machine: station 'filler' has no machine 'filler-z'"):
        load_config(f)
    f.write_text(ok.replace("bottling.yaml", "packaging.yaml"))
    with pytest.raises(ConnectError, match=r"connect.yaml:4 scenario: .*packaging.yaml is the line "
                                           r"plant-hamburg/hall-3/packaging-1, not this config's plant-hamburg/hall-2/"
                                           r"bottling-1"):
        load_config(f)
    f.write_text(ok.replace(str(ROOT / "scenarios" / "bottling.yaml"), "nowhere.yaml"))
    with pytest.raises(ConnectError, match=r"connect.yaml:4 scenario: .*nowhere.yaml: cannot read the scenario file"):
        load_config(f)
    f.write_text(ok + fixed.replace("filer", "filler"))  # a fixed station of the line: fine
    assert load_config(f).json_[1].station == "filler"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example("kep/filler/filler-b", b'{"":null,"values":[{}]}')  # an item of no quality: to the dead letters
@given(st.sampled_from(["gw7/filler/filler-a/data", "gw7/x/y/data", "gw7/data", "other", "gw8/filler/filler-a/batch",
                        "kep/filler/filler-b"]),
       st.one_of(st.binary(max_size=200), st.recursive(
           st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
               st.sampled_from(["ts", "vib", "temps", "bearing", "status", "fault", "x", "samples", "values", "id",
                                "v", "t", "q"]), kids, max_size=6),
           max_leaves=20).map(lambda o: json.dumps(o, allow_nan=True).encode())))
def test_any_plant_message_is_translated_or_dead_lettered_with_a_reason(tmp_path: Path, topic: str,
                                                                       payload: bytes) -> None:
    """Plant messages are untrusted: each becomes the twin's messages (which its own parser accepts) or an Unmapped
    reason for the dead-letter topic; never another exception."""
    from sensors.bus.payloads import parse

    f = config(tmp_path, "mqtt://127.0.0.1:1883")
    f.write_text(f.read_text() + BATCHES)
    cfg = load_config(f)
    try:
        out = translate(cfg, topic, payload, 1767592800000, {})
    except Unmapped as e:
        assert str(e)
        return
    for t in out:
        if t.topic == cfg.topics.deadletter:  # a batch's items of bad quality (an item without its quality too)
            dead = json.loads(t.payload)
            assert dead["schema"] == "linetwin/deadletter/1" and dead["topic"] == topic and "quality" in dead["reason"]
            continue
        parse(t.topic, t.payload)  # a ParseError here would be a connector bug


def test_receive_times_give_a_message_sent_again_its_first_time_across_a_reconnect_and_a_restart(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The bookkeeping behind the end-to-end redelivery test above, fast: a DUP message takes the oldest time of an
    unacknowledged one with the same topic and identity; a new message (no DUP) never does; acknowledged ones are
    forgotten; what a stop leaves goes through the file to the next start; a damaged file is named, not fatal."""
    from sensors.connector import ReceiveTimes

    path = tmp_path / "kept" / "x.stamps.json"
    r = ReceiveTimes(path)
    assert r.stamp(1, "a", 7, dup=False, now=1000) == 1000
    assert r.stamp(2, "a", 7, dup=False, now=2000) == 2000  # the same bytes again, but new: its own time
    assert r.stamp(3, "b", 8, dup=False, now=3000) == 3000
    r.acknowledged(3)
    r.reconnected()  # 1 and 2 come again, with the times they first came, oldest first
    assert r.stamp(11, "a", 7, dup=True, now=9000) == 1000
    assert r.stamp(12, "b", 8, dup=True, now=9001) == 9001  # 3 was acknowledged: nothing to restore
    assert r.stamp(13, "a", 7, dup=False, now=9002) == 9002  # not a redelivery: never an old time
    # a stop with 11 and 13 left with the plant's broker; the time of 2 still waits for its message
    left = r.left([11, 13], oldest=1500)
    assert left == [("a", 7, 2000), ("a", 7, 1000), ("a", 7, 9002)]
    assert r.left([11], oldest=2500) == [("a", 7, 1000)]  # older than the broker keeps a session: dropped
    r.keep(left)
    again = ReceiveTimes(path)
    # messages of the same topic and identity are the same bytes: which of their times each takes does not matter
    times = [again.stamp(m, "a", 7, dup=True, now=10_000) for m in (21, 22, 23, 24)]
    assert sorted(times[:3]) == [1000, 2000, 9002] and times[3] == 10_000
    again.keep([])
    assert not path.exists()  # nothing to keep: no file
    path.write_text("{not json", encoding="utf-8")
    with caplog.at_level("WARNING"):
        damaged = ReceiveTimes(path)
    assert str(path) in caplog.text and "get a new one" in caplog.text
    assert damaged.stamp(31, "a", 7, dup=True, now=5) == 5


def test_a_stations_buffer_counter_is_its_buffer_level(tmp_path: Path) -> None:
    """A PLC counts the parts waiting in front of a station (an infeed conveyor's counter); a connector could not map
    it, so a what-if from the plant's state started every buffer at the scenario's initial level."""
    f = tmp_path / "connect.yaml"
    f.write_text("line: {site: plant-hamburg, area: hall-2, name: bottling-1}\nsource: mqtt://127.0.0.1:1883\n"
                 "run: plant\njson:\n  - topic: \"gw7/{station}/{machine}/data\"\n"
                 "    timestamp: {field: ts, unit: ms}\n    buffer: {field: infeed.count}\n")
    cfg = load_config(f)
    (level,) = translate(cfg, "gw7/filler/filler-a/data", b'{"ts": 1767592800000, "infeed": {"count": "17"}}', 0, {})
    assert level.topic == "plant-hamburg/hall-2/bottling-1/buffers"
    doc = json.loads(level.payload)
    assert doc["levels"] == {"filler": 17} and doc["run"] == "plant" and doc["ts"] == 1767592800000
    for bad in (b'{"infeed": {"count": 7.5}}', b'{"infeed": {"count": -1}}'):
        with pytest.raises(Unmapped, match=r"field 'infeed.count' \(buffer\) is .*not a number of parts waiting"):
            translate(cfg, "gw7/filler/filler-a/data", bad, 0, {})


def test_a_machines_recipe_is_the_product_it_is_set_up_for(tmp_path: Path) -> None:
    """A filler's PLC says its recipe (an article number): mapped to the line's product names, it goes out once per
    change in the line's buffers message (`products`), so the store knows what each machine is set up for and a
    what-if of a mixed line sets up from it; a value the mapping lacks is named."""
    f = tmp_path / "connect.yaml"
    f.write_text("line: {site: plant-hamburg, area: hall-3, name: packaging-1}\nsource: mqtt://127.0.0.1:1883\n"
                 "run: plant\njson:\n  - topic: \"gw7/{station}/{machine}/data\"\n"
                 "    timestamp: {field: ts, unit: ms}\n    state: {field: status, map: {1: working, 2: down}}\n"
                 "    product: {field: recipe, map: {4711: still-05, 4713: juice-10}}\n")
    cfg = load_config(f)
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    out = translate(cfg, "gw7/filler/filler/data", b'{"ts": 1767592800000, "status": 1, "recipe": 4711}', 0, seen)
    told = [json.loads(t.payload) for t in out if t.topic.endswith("/buffers")]
    assert told == [{"schema": "linetwin/buffers/1", "run": "plant", "replication": 0, "ts": 1767592800000,
                     "levels": {}, "products": {"filler": "still-05"}}]
    again = translate(cfg, "gw7/filler/filler/data", b'{"ts": 1767592801000, "status": 1, "recipe": "4711"}', 0, seen)
    assert again == []  # the same recipe, the same state: nothing new
    (changed,) = translate(cfg, "gw7/filler/filler/data", b'{"ts": 1767592900000, "recipe": 4713.0}', 0, seen)
    assert json.loads(changed.payload)["products"] == {"filler": "juice-10"}
    with pytest.raises(Unmapped, match=r"product value 4799 of field 'recipe' \(product\) is not in the mapping"):
        translate(cfg, "gw7/filler/filler/data", b'{"recipe": 4799}', 0, seen)
    f.write_text(f.read_text().replace(", map: {4711: still-05, 4713: juice-10}", ""))  # no map: the line's names
    plain = load_config(f)
    (named,) = translate(plain, "gw7/filler/filler/data", b'{"recipe": "juice-10"}', 0, {})
    assert json.loads(named.payload)["products"] == {"filler": "juice-10"}
    with pytest.raises(Unmapped, match=r"product value 'Saft 1,0 l' of field 'recipe' \(product\) is no product name"):
        translate(plain, "gw7/filler/filler/data", b'{"recipe": "Saft 1,0 l"}', 0, {})


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                     | st.text(max_size=20) | st.sampled_from(["4711", "x", " juice-10 ", "4711.0"]),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                 max_size=3), max_leaves=6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recipe=_JSON, mapped=st.booleans())
def test_any_recipe_value_is_a_product_or_dead_lettered(tmp_path: Path, recipe: object, mapped: bool) -> None:
    """Whatever a PLC's recipe field holds, the connector sends a product name the line could have (with a map, one
    of its values) or refuses the message naming the field, never another exception."""
    f = tmp_path / "connect.yaml"
    f.write_text("line: {site: s, area: a, name: l}\nsource: mqtt://127.0.0.1:1883\nrun: plant\njson:\n"
                 "  - topic: \"gw7/{station}/{machine}/data\"\n    product: {field: recipe"
                 + (", map: {4711: still-05, x: juice-10}}" if mapped else "}") + "\n")
    cfg = load_config(f)
    payload = json.dumps({"recipe": recipe}).encode()
    try:
        out = translate(cfg, "gw7/filler/filler-a/data", payload, 1767592800000, {})
    except Unmapped as e:
        assert "recipe" in str(e) or "none of the mapped" in str(e)
        return
    for t in out:
        (name,) = json.loads(t.payload)["products"].values()
        assert name in ("still-05", "juice-10") if mapped else re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name)


@pytest.mark.slow  # 8 s of waiting for retries: the full suite's, not `make check`'s
def test_a_plants_broker_down_at_the_start_is_waited_for(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """`twin connect` started before the plant's broker (a host's boot) exited with 'cannot reach the MQTT broker',
    while an OPC UA server not up yet is waited for. Now the plant's broker is too: tried again with a warning until
    it answers; what the plant then sends is stored. A broker that refuses the credentials is still an error at once."""
    plant = Mosquitto(tmp_path / "plant-broker")
    plant.workdir.mkdir()
    f = config(tmp_path, str(plant.url))
    f.write_text(f.read_text() + f"target: {mosquitto.url}\n")
    db = tmp_path / "plant.duckdb"
    proc = subprocess.Popen(twin_cmd("connect", f, "--store", f"duckdb:///{db}", "--duration", "60 s"), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        said = wait_for_line(proc.stderr, lambda line: line if "trying again in" in line else None, 60,
                             "saying it tries the plant's broker again")
        assert "cannot reach the MQTT broker at mqtt://127.0.0.1" in said, said
        time.sleep(1)
        assert proc.poll() is None, proc.communicate()
        plant.start()
        wait_connected(proc)
        gw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        gw.connect("127.0.0.1", plant.port)
        gw.loop_start()
        gw.publish("gw7/filler/filler-a/data", json.dumps({"ts": 1767592800000, "vib": 2.0, "status": 1}),
                   qos=1).wait_for_publish(5)
        gw.loop_stop()
        time.sleep(2)  # forwarded in milliseconds; then stopped as Ctrl-C stops it, not at --duration's end
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        plant.stop()
    assert proc.returncode == 0, err
    store = open_store(f"duckdb:///{db}", read_only=True)
    assert len(store.query(run="plant", sensors=["vibration"])) == 1
    store.close()


def test_a_meters_raw_register_is_scaled_and_the_energy_units_are_the_twins(tmp_path: Path) -> None:
    """A PLC sends an energy meter's Wh register and its power in W: `scale` makes them the kWh and kW the dashboard
    and `twin fit` count in (a Wh register stored as kWh made every energy figure a thousand times too high); any
    other unit for energy or power, or a scale of 0, is named with its line."""
    f = config(tmp_path, "mqtt://127.0.0.1:1883")
    ok = f.read_text()
    f.write_text(ok.replace("      vibration: {field: vib, unit: mm/s}",
                            "      vibration: {field: vib, unit: mm/s}\n"
                            "      energy: {field: wh, unit: kWh, scale: 0.001}\n"
                            "      power: {field: w, unit: kW, scale: 0.001}"))
    cfg = load_config(f)
    (telemetry,) = [json.loads(t.payload) for t in translate(cfg, "gw7/filler/filler-a/data",
                                                             b'{"ts": 1767592800000, "wh": 12345678, "w": 5600}', 0,
                                                             {})]
    assert {r[0]: r[2] for r in telemetry["readings"]} == {"energy": pytest.approx(12345.678),
                                                           "power": pytest.approx(5.6)}
    for line, message in (("      energy: {field: wh, unit: Wh}", r"connect.yaml:\d+ json\[0\].values: energy: unit "
                                                                  r"'Wh', but the twin counts energy in kWh; give "
                                                                  r"unit: kWh with the scale"),
                          ("      power: {field: w, unit: kW, scale: 0}", r"scale.*a scale of 0 makes every value 0")):
        f.write_text(ok.replace("      vibration: {field: vib, unit: mm/s}",
                                f"      vibration: {{field: vib, unit: mm/s}}\n{line}"))
        with pytest.raises(ConnectError, match=message):
            load_config(f)
