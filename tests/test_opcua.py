"""OPC UA both ways, with real parts: an asyncua server started by the test as "the plant" (tests/plant_opcua.py)
read by `twin connect` into a DuckDB store through a real mosquitto, the plant restarted mid-test; and `twin run
--opcua` read by an asyncua client, its values compared with what the run published over MQTT."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from sensors.bus.broker import free_port, wait_port
from sensors.bus.payloads import epoch_ms, line_clock_ms
from sensors.connect import ConnectError, load_config
from sensors.opcua import OpcUaError, server_url
from sensors.store import open_store
from tests.conftest import ROOT, Mosquitto, assert_mistakes, stop_process, twin_cmd, wait_connected

BASE = 1767592800000  # 2026-01-05 06:00 UTC: the plant's first source timestamp


def plant(port: int, log: Path, first: int, certs: Path | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "plant_opcua.py"), str(port), str(log), str(BASE),
                             str(first), *([str(certs)] if certs else [])], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc


def config(tmp_path: Path, port: int, broker: str, bad: str = "drop", more: str = "") -> Path:
    f = tmp_path / "connect.yaml"
    f.write_text(f"""line: {{site: plant-hamburg, area: hall-2, name: pressing}}
source: opc.tcp://127.0.0.1:{port}/plant
target: {broker}
run: plant
opcua:
  interval: 0.1
  bad_quality: {bad}
  machines:
    - station: press
      machine: press-1
      values:
        vibration: {{node: "ns=2;s=Press1.Vibration", unit: mm/s, scale: 0.5}}   # raw value, halved
        temperature: {{node: "2:Press1/2:Temperature", unit: degC}}   # a browse path
      state: {{node: "ns=2;s=Press1.Status", map: {{1: working, 2: down}}, reason: "ns=2;s=Press1.Fault"}}
{more}""")
    return f


def written(log: Path) -> list[tuple[int, int, float, str]]:
    return [(int(k), int(ts), float(v), q) for k, ts, v, q in (line.split() for line in log.read_text().splitlines()
                                                                if line.count(" ") == 3)]


@pytest.mark.slow
def test_a_plant_opcua_server_is_stored_with_its_names_units_and_times_and_survives_a_restart(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    port, log, db = free_port(), tmp_path / "plant.log", tmp_path / "plant.duckdb"
    server = plant(port, log, 0)
    proc = subprocess.Popen(twin_cmd("connect", config(tmp_path, port, str(mosquitto.url)), "--store",
                                     f"duckdb:///{db}", "--duration", "30 s"), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_connected(proc)
        time.sleep(4)  # values flow for a few seconds before the plant dies
        stop_process(server, signal.SIGKILL)  # the plant's server dies
        time.sleep(2)
        restart = written(log)[-1][0] + 1
        server = plant(port, log, restart)  # and comes back on the same port, its script going on
        _, err = proc.communicate(timeout=90)
    finally:
        stop_process(server)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    sent = written(log)
    store = open_store(f"duckdb:///{db}")
    try:
        series = store.series()
        vib = store.query(sensors=["vibration"]).sort_values("ts")
        temp = store.query(sensors=["temperature"])
        states = store.states()
    finally:
        store.close()
    assert dict(zip(series.sensor, series.unit)) == {"vibration": "mm/s", "temperature": "degC"}
    assert set(series.station) == {"press"} and set(series.machine) == {"press-1"}
    got = {int(t) // 1_000_000: v for t, v in zip(vib.ts.astype("datetime64[ns]").astype("int64"), vib.value)}
    good = {ts: v for _, ts, v, q in sent if q == "good"}
    assert got and all(good[ts] * 0.5 == v for ts, v in got.items()), "a stored value is not what the plant sent " \
        "then (scaled)"
    assert not {ts for _, ts, _, q in sent if q == "bad"} & got.keys(), "a bad-quality value was stored"
    assert any(ts < BASE + 1000 * restart for ts in got), "nothing stored before the plant died"
    first_after = min(ts for ts in got if ts >= BASE + 1000 * restart)  # the first value after the reconnect
    after = [ts for _, ts, _, q in sent if q == "good" and first_after <= ts <= max(got)]  # no gap in between
    missing = [ts for ts in after if ts not in got]
    assert len(after) > 10 and not missing, f"{len(missing)} of {len(after)} values after the reconnect not stored"
    assert len(temp) >= len(after)
    downs = states[states.state == "down"]
    assert len(downs) >= 2 and set(downs.reason) == {"jam"}, "the PLC's status word and fault text → state records"
    assert "dead-lettered" in err


@pytest.mark.slow
def test_a_node_that_feeds_several_machines_reaches_each(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A cell's temperature and status word read for two machines, the status word also the second one's reason:
    each machine gets each value (the second mapping of a node replaced the first, and press-1's temperature was
    never stored)."""
    port, log, db = free_port(), tmp_path / "plant.log", tmp_path / "plant.duckdb"
    server = plant(port, log, 0)
    press2 = """    - station: press
      machine: press-2
      values: {temperature: {node: "ns=2;s=Press1.Temperature", unit: degC}}
      state: {node: "ns=2;s=Press1.Status", map: {1: working, 2: down}, reason: "ns=2;s=Press1.Status"}
      buffer: {node: "ns=2;s=Press1.Infeed"}
      product: {node: "ns=2;s=Press1.Recipe", map: {4711: door-left, 4713: door-right}}"""
    try:
        out = subprocess.run(twin_cmd("connect", config(tmp_path, port, str(mosquitto.url), more=press2), "--store",
                                      f"duckdb:///{db}", "--duration", "5 s"), cwd=ROOT, capture_output=True,
                             text=True, timeout=90)
    finally:
        stop_process(server)
    assert out.returncode == 0, out.stderr
    store = open_store(f"duckdb:///{db}")
    try:
        temp = store.query(sensors=["temperature"])
        states = store.states()
        levels, products = store.levels(), store.products()
    finally:
        store.close()
    # the die set's article: what press-2 is set up for, once per change (4711 to 4713 at the tenth second)
    assert set(products.machine) == {"press-2"} and products["product"].tolist()[:2] == ["door-left", "door-right"]
    assert (products["product"] != products["product"].shift()).all(), "a product repeated is no change"
    # the PLC's infeed counter is the press's buffer level (what a what-if starts from); it was not mapped at all
    assert set(levels.station) == {"press"} and set(levels.level) <= set(range(7)) and levels.level.nunique() > 2
    sent = {40 + k / 100 for k, _, _, _ in written(log)}
    for machine in ("press-1", "press-2"):
        values = temp[temp.machine == machine].value
        assert len(values) >= 10 and set(values) <= sent, f"{machine}'s temperature is not the plant's"
    downs = states[states.state == "down"]
    assert set(downs.machine) == {"press-1", "press-2"}, "the status word reached one machine only"
    assert set(downs[downs.machine == "press-1"].reason) == {"jam"}
    assert set(downs[downs.machine == "press-2"].reason) == {"2"}, "the status word as its own reason"


@pytest.mark.slow
def test_a_plant_server_down_at_the_start_does_not_lengthen_the_duration(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """`--duration` counts from the start: the connector waited up to 30 s for a server that was down before its
    duration began, so `--duration "3 s"` took 33 s."""
    t = time.monotonic()
    out = subprocess.run(twin_cmd("connect", config(tmp_path, free_port(), str(mosquitto.url)), "--duration", "3 s"),
                         cwd=ROOT, capture_output=True, text=True, timeout=90)
    took = time.monotonic() - t
    assert out.returncode == 0, out.stderr
    assert "not reachable" in out.stderr and "retrying" in out.stderr
    assert took < 20, f"--duration 3 s took {took:.0f} s"


@pytest.mark.slow
def test_opcua_values_read_while_the_twins_broker_is_away_are_kept_and_stored_by_the_next_connector(
        tmp_path: Path) -> None:
    """An OPC UA server cannot be held back the way a plant's MQTT broker can. Values read while the twin's broker
    was away waited in the connector's memory, and a stop lost them (said on the console, since 88f0ad1). Now they
    wait in an outbox (memory up to a bound, then disk), a stop keeps what the broker has not taken in a file, and the
    run's next connector sends it first: every good value the plant wrote during the outage is stored."""
    port, log, db = free_port(), tmp_path / "plant.log", tmp_path / "plant.duckdb"
    env = {**os.environ, "LINETWIN_HOME": str(tmp_path / "home"), "COLUMNS": "500"}  # the outbox in a folder of its own
    twin = Mosquitto(tmp_path / "twin-broker")
    twin.workdir.mkdir()
    twin.start()
    server = plant(port, log, 0)
    cfg = config(tmp_path, port, str(twin.url))

    def connect(*duration: str) -> subprocess.Popen[str]:
        return subprocess.Popen(twin_cmd("connect", cfg, "--store", f"duckdb:///{db}", *duration), cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    proc = connect()
    try:
        wait_connected(proc)
        time.sleep(2)
        away = written(log)[-1][0]  # the plant's step when the twin's broker goes away
        twin.stop()
        time.sleep(6)
        back = written(log)[-1][0]  # the step when the first connector is stopped (Ctrl-C)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        kept = re.search(r"([\d,]+) messages of OPC UA values or QoS 0 data were not yet on the twin's broker at the "
                         r"stop \(is it away\?\): kept in (\S+),", " ".join(err.split()))  # as the console wrapped it
        assert kept and int(kept.group(1).replace(",", "")) > 0, err
        assert Path(kept.group(2)).is_relative_to(tmp_path / "home") and Path(kept.group(2)).exists()
        twin.start()  # the twin's broker is back, and so is the connector
        proc = connect("--duration", "5 s")
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        assert "not yet on the twin's broker" not in err, err
        assert not Path(kept.group(2)).exists()  # sent: nothing is left in the file, and it is gone
    finally:
        stop_process(server)
        twin.stop()
        if proc.poll() is None:
            proc.kill()
    store = open_store(f"duckdb:///{db}")
    try:
        vib = store.query(sensors=["vibration"])
    finally:
        store.close()
    got = set(vib.ts.astype("datetime64[ms]").astype("int64"))
    # the values written while the broker was away (a step of margin each side: the twin's broker stops, and the
    # connector's subscription reports, within a step)
    outage = [ts for k, ts, _, q in written(log) if q == "good" and away + 1 <= k <= back - 1]
    missing = [ts for ts in outage if ts not in got]
    assert len(outage) > 10 and not missing, f"{len(missing)} of {len(outage)} values read during the outage not stored"
    assert len(vib) == len(got)  # each once, though a message may have been sent twice


def test_a_damaged_outbox_or_stamps_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """What a stopped connector keeps for its config's next start lives in files of the linetwin home; one that is not
    what it should be is named, never a traceback: the outbox (it may hold messages) refuses the start, the stamps (a
    convenience) are set aside with a warning."""
    from sensors.connector import Connector, kept_path

    monkeypatch.setenv("LINETWIN_HOME", str(tmp_path / "home"))
    f = config(tmp_path, free_port(), "mqtt://127.0.0.1:1883")
    cfg = load_config(f)
    stamps = kept_path(cfg, "stamps.json")
    stamps.parent.mkdir(parents=True)
    stamps.write_text('[["a", 1]]')
    with caplog.at_level("WARNING"):
        Connector(cfg)
    assert f"{stamps} cannot be read" in caplog.text
    outbox = kept_path(cfg, "outbox.sqlite")
    outbox.write_bytes(b"not SQLite at all" * 100)
    assert_mistakes(["connect", str(f)], [([], f"{outbox}: not a connector's outbox (file is not a database); it may "
                                              "hold messages an earlier `twin connect` of this config kept for this "
                                              "one: move it aside and start again")])


def test_opcua_config_and_server_url_mistakes_are_named(tmp_path: Path) -> None:
    f = config(tmp_path, 4840, "mqtt://127.0.0.1:1883")
    assert load_config(f).opcua is not None
    f.write_text(f.read_text().replace("target: mqtt://127.0.0.1:1883\n", ""))
    with pytest.raises(ConnectError, match="give target: the twin's MQTT broker"):
        load_config(f)
    f.write_text(f.read_text().replace("bad_quality: drop", "bad_quality: maybe"))
    with pytest.raises(ConnectError, match=r"connect.yaml:6 opcua.bad_quality: must be .drop. or .keep."):
        load_config(f)
    assert server_url("4841") == "opc.tcp://127.0.0.1:4841/linetwin"
    with pytest.raises(OpcUaError, match=r"listens on 127\.0\.0\.1 only"):
        server_url("opc.tcp://0.0.0.0:4840/x")
    with pytest.raises(OpcUaError, match="give a port"):
        server_url("http://127.0.0.1:4840")


@pytest.mark.slow
def test_the_twin_as_an_opcua_server_on_a_port_in_use_fails_clearly(tmp_path: Path) -> None:
    """`twin run --opcua PORT` with PORT taken ended in an AttributeError traceback (stopping a server that had not
    started), after asyncua's own traceback; now one line naming the address, exit 3."""
    import socket

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        r = subprocess.run(twin_cmd("run", "scenarios/cnc_cell.yaml", "--duration", "5 min", "--warmup", 0,
                                    "--replications", 1, "--opcua", port, "--out", tmp_path / "run"),
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 3 and f"127.0.0.1:{port}/linetwin: cannot listen" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_the_twin_as_an_opcua_server_shows_what_it_publishes_over_mqtt(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """An asyncua client reads machine states and sensor values with their source timestamps (simulated time); each
    equals what the run published over MQTT for that machine at that simulated time."""
    published: dict[tuple[str, str, int], object] = {}
    lock = threading.Lock()

    def on_message(c: object, u: object, m: mqtt.MQTTMessage) -> None:
        doc = json.loads(m.payload)
        with lock:
            if m.topic.endswith("/telemetry"):
                for sensor, ts, v in doc["readings"]:
                    published[(doc["machine"], sensor, ts)] = v
            else:
                for state, ts, *_ in doc["changes"]:
                    published[(doc["machine"], "State", ts)] = state

    watch = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    watch.on_message = on_message
    watch.connect("127.0.0.1", mosquitto.port)
    watch.subscribe([("+/+/+/+/+/telemetry", 0), ("+/+/+/+/+/state", 0)])
    watch.loop_start()
    port = free_port()
    began = int(time.time() * 1000)
    proc = subprocess.Popen(twin_cmd("run", ROOT / "scenarios" / "bottling.yaml", "--duration", "10 min",
                                     "--warmup", "0", "--replications", "1", "--realtime-factor", "30", "--broker",
                                     mosquitto.url, "--opcua", port, "--out", tmp_path / "run"),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[tuple[str, str, int, object]] = []

    async def read() -> None:
        from asyncua import Client

        async with Client(f"opc.tcp://127.0.0.1:{port}/linetwin") as client:
            idx = await client.get_namespace_index("urn:linetwin:twin")
            filler = await client.nodes.objects.get_child([f"{idx}:bottling-1", f"{idx}:filler"])
            machines = await filler.get_children()
            for _ in range(12):
                await asyncio.sleep(0.5)
                for m in machines:
                    name = (await m.read_browse_name()).Name
                    for v in await m.get_children():
                        var = (await v.read_browse_name()).Name
                        dv = await v.read_data_value(raise_on_bad_status=False)
                        if var in ("Reason", "Alert", "FailureProbability") or not dv.StatusCode.is_good():
                            continue  # not yet written: BadWaitingForInitialData
                        # OPC UA's times are real instants (UTC); the run's, on the line's clock (Europe/Berlin)
                        stamp = dv.SourceTimestamp if dv.SourceTimestamp.tzinfo else \
                            dv.SourceTimestamp.replace(tzinfo=dt.UTC)
                        seen.append((name, var, line_clock_ms(epoch_ms(stamp), "Europe/Berlin"), dv.Value.Value))

    try:
        wait_port(port, timeout=60)
        asyncio.run(read())
        _, err = proc.communicate(timeout=120)
    finally:
        watch.loop_stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert {v for _, v, _, _ in seen} >= {"State", "vibration_rms", "bearing_temp"}
    with lock:
        unmatched = [s for s in seen if published.get(s[:3]) != s[3]]
    assert len(seen) > 50 and not unmatched, f"{len(unmatched)} of {len(seen)} OPC UA values differ: {unmatched[:3]}"
    # a live run starts now on the line's clock, Berlin's (it started at UTC's now: its shifts an hour off)
    first = min(ts for _, _, ts in published)
    assert 0 <= first - line_clock_ms(began, "Europe/Berlin") < 60_000, (first, began)


def certificates(folder: Path) -> Path:
    """Self-signed application certificates for 'the plant' (server) and the connector (client)."""
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    folder.mkdir(exist_ok=True)
    for name, use in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        asyncio.run(setup_self_signed_certificate(folder / f"{name}.pem", folder / f"{name}.der",
                                                  f"urn:linetwin:test:{name}", "127.0.0.1", [use],
                                                  {"commonName": f"linetwin test {name}"}))
    return folder


@pytest.mark.slow
def test_a_signed_and_encrypted_plant_server(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A plant server that offers Basic256Sha256 SignAndEncrypt only: read with the connector's certificate; without
    it, `twin connect` stops at once with the reason (no silent retrying)."""
    certs = certificates(tmp_path / "pki")
    port, log, db = free_port(), tmp_path / "plant.log", tmp_path / "plant.duckdb"
    server = plant(port, log, 0, certs)
    f = config(tmp_path, port, str(mosquitto.url))
    try:
        r = subprocess.run(twin_cmd("connect", f, "--duration", "5 s"), cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 3 and "refuses this connection" in r.stderr and "opcua.security" in r.stderr, r.stderr
        f.write_text(f.read_text().replace("  bad_quality: drop\n", "  bad_quality: drop\n  security: {policy: "
                                           "Basic256Sha256, mode: SignAndEncrypt, certificate: pki/client.der, "
                                           "private_key: pki/client.pem}\n"))
        r = subprocess.run(twin_cmd("connect", f, "--store", f"duckdb:///{db}", "--duration", "6 s"), cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    finally:
        stop_process(server)
    assert r.returncode == 0, r.stderr
    store = open_store(f"duckdb:///{db}")
    try:
        assert len(store.query(sensors=["vibration"])) >= 5
    finally:
        store.close()
    f.write_text(f.read_text().replace("pki/client.pem", "pki/missing.pem"))
    with pytest.raises(ConnectError, match=r"opcua.security.private_key: no file 'pki/missing.pem'"):
        load_config(f)


def test_a_value_stamped_outside_a_plants_times_is_dead_lettered_not_forwarded(tmp_path: Path) -> None:
    """A server's source timestamp in 2500 (or 1601, OPC UA's null time) was forwarded, and the twin's ingest
    refused the message it landed in; now the change is dead-lettered with the reason, and a good one still goes."""
    from asyncua import ua

    from sensors.bus.payloads import parse
    from sensors.connect import Unmapped
    from sensors.opcua import OpcUaReader

    cfg = load_config(config(tmp_path, free_port(), "mqtt://127.0.0.1:1883"))
    assert cfg.opcua is not None
    reader, press = OpcUaReader(cfg, None), cfg.opcua.machines[0]  # type: ignore[arg-type]  # no sink: nothing sent
    out = reader._translate(press, "value", "vibration", 4.0, BASE, ua.StatusCode())
    assert parse(out[0].topic, out[0].payload).values == [2.0]
    for ts in (16737700553441, epoch_ms(dt.datetime(1601, 1, 1)), 0):
        with pytest.raises(Unmapped, match=r"source timestamp: timestamp -?\d+ \(epoch ms\) is not a plant's time"):
            reader._translate(press, "value", "vibration", 4.0, ts, ua.StatusCode())
