"""Sparkplug B in: pysparkplug's own edge node publishing over a real mosquitto → `twin connect` → a DuckDB store,
its death certificate an offline state; births, aliases, sequence gaps and rebirth requests checked on the reader;
arbitrary bytes on Sparkplug topics dead-lettered with a reason, never an exception."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pysparkplug as spb
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from sensors.bus.payloads import parse
from sensors.connect import ConnectorConfig, Unmapped, load_config
from sensors.sparkplug import REBIRTH, SparkplugReader
from sensors.store import open_store
from tests.conftest import ROOT, Mosquitto, twin_cmd, wait_connected

T0 = 1767592800000  # 2026-01-05 06:00 UTC
EDGE = ROOT / ".venv-edge" / "bin" / "python"  # pysparkplug's publisher needs paho 1.x: scripts/test-deps.sh


def config(tmp_path: Path, broker: str) -> Path:
    f = tmp_path / "connect.yaml"
    f.write_text(f"""line: {{site: plant-hamburg, area: hall-2, name: bottling-1}}
source: {broker}
run: plant
sparkplug:
  group: plant1
  devices:
    - node: edge-7
      device: filler-a
      station: filler
      machine: filler-a
      values: {{vibration: {{metric: Vib, unit: mm/s}}}}
      state: {{metric: Status, map: {{1: working, 2: down}}, reason: Fault}}
      buffer: {{metric: Infeed}}
      product: {{metric: Recipe}}
""")
    return f


def metric(name: str | None, kind: spb.DataType, value: object, t: int = T0, alias: int | None = None) -> spb.Metric:
    return spb.Metric(timestamp=t, name=name, datatype=kind, value=value, alias=alias)


BIRTH_METRICS = (metric("Vib", spb.DataType.DOUBLE, 2.0, alias=1), metric("Status", spb.DataType.INT32, 1, alias=2),
                 metric("Fault", spb.DataType.STRING, "", alias=3))


@pytest.mark.slow
def test_an_edge_nodes_data_is_stored_and_its_death_makes_the_machine_offline(tmp_path: Path,
                                                                            mosquitto: Mosquitto) -> None:
    db = tmp_path / "plant.duckdb"
    proc = subprocess.Popen(twin_cmd("connect", config(tmp_path, str(mosquitto.url)), "--store", f"duckdb:///{db}",
                                     "--duration", "14 s"), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_connected(proc)
        time.sleep(0.5)
        edge = subprocess.run([str(EDGE), str(ROOT / "tests" / "edge_node.py"), str(mosquitto.port), str(T0)],
                              capture_output=True, text=True, timeout=60)  # births, 10 DDATA, a death certificate
        assert edge.returncode == 0, edge.stderr
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    store = open_store(f"duckdb:///{db}")
    try:
        vib, states, series = store.query(sensors=["vibration"]), store.states(), store.series()
        levels, products = store.levels(), store.products()
    finally:
        store.close()
    # the recipe metric: what the filler is set up for, once per change, at the metric's time
    assert list(zip(products.ts.astype("datetime64[ms]").astype("int64"), products["product"])) == [
        (T0, "still-05"), (T0 + 6000, "juice-10")], products
    got_levels = dict(zip(levels.ts.astype("datetime64[ms]").astype("int64"), levels.level))
    assert set(levels.station) == {"filler"} and got_levels[T0 + 4000] == 12, "the infeed counter: the buffer level"
    assert list(series.unit) == ["mm/s"] and list(series.machine) == ["filler-a"]
    stamps = set(vib.ts.astype("datetime64[ms]").astype("int64"))
    assert {T0 + 1000 * k for k in range(1, 11)} <= stamps, "every DDATA value, at the edge node's metric time"
    got = dict(zip(vib.ts.astype("datetime64[ms]").astype("int64"), vib.value))
    assert got[T0 + 3000] == pytest.approx(2.3)
    assert ("down", "jam") in set(zip(states.state, states.reason))
    assert states.state.iloc[-1] == "offline" and states.reason.iloc[-1] == "death certificate"


def reader(tmp_path: Path) -> SparkplugReader:
    return SparkplugReader(load_config(config(tmp_path, "mqtt://127.0.0.1:1883")))


def test_a_device_mapped_twice_is_refused_with_both_entries_named(tmp_path: Path) -> None:
    """Two entries for one node's device: the second silently replaced the first (its machine never got data)."""
    from sensors.connect import ConnectError

    f = config(tmp_path, "mqtt://127.0.0.1:1883")
    entry = f.read_text().split("  devices:\n")[1]
    f.write_text(f.read_text() + entry.replace("machine: filler-a", "machine: filler-b"))
    with pytest.raises(ConnectError, match=r"connect.yaml:\d+ sparkplug.devices: devices\[1\] maps node 'edge-7' "
                                           r"device 'filler-a' again \(devices\[0\]\)"):
        load_config(f)


def test_births_aliases_gaps_and_deaths(tmp_path: Path) -> None:
    r = reader(tmp_path)
    nb = spb.NBirth(timestamp=T0, seq=0, metrics=(metric("bdSeq", spb.DataType.INT64, 0),))
    assert r.handle("spBv1.0/plant1/NBIRTH/edge-7", nb.encode(), T0) == []
    db = spb.DBirth(timestamp=T0, seq=1, metrics=BIRTH_METRICS)
    out = [parse(t.topic, t.payload) for t in r.handle("spBv1.0/plant1/DBIRTH/edge-7/filler-a", db.encode(), T0)]
    assert out[0].values == [2.0] and out[0].units == {"vibration": "mm/s"} and out[1].changes[0][0] == "working"
    # data by alias only (no names, no data types): decoded against the birth
    dd = spb.DData(timestamp=T0 + 1000, seq=2, metrics=(
        metric(None, spb.DataType.DOUBLE, 2.7, T0 + 1000, alias=1), metric(None, spb.DataType.STRING, "jam", T0 + 1000,
                                                                          alias=3),
        metric(None, spb.DataType.INT32, 2, T0 + 1000, alias=2)))
    out = [parse(t.topic, t.payload) for t in r.handle("spBv1.0/plant1/DDATA/edge-7/filler-a", dd.encode(), T0)]
    assert out[0].values == [2.7] and out[0].ts_ms == [T0 + 1000] and out[1].changes == [("down", T0 + 1000, "jam")]
    assert not r.rebirths
    # a lost message (seq 3 never came): the data is used, and the node asked for a rebirth
    dd = spb.DData(timestamp=T0 + 2000, seq=4, metrics=(metric("Vib", spb.DataType.DOUBLE, 2.8, T0 + 2000),))
    assert len(r.handle("spBv1.0/plant1/DDATA/edge-7/filler-a", dd.encode(), T0)) == 1
    [(topic, payload)] = r.rebirths
    cmd = spb.NCmd.decode(payload)
    assert topic == "spBv1.0/plant1/NCMD/edge-7" and [(m.name, m.value) for m in cmd.metrics] == [(REBIRTH, True)]
    # the node dies: its device's machine goes offline; its data before a new birth is refused, rebirth asked
    nd = spb.NDeath(timestamp=T0, bd_seq_metric=metric("bdSeq", spb.DataType.INT64, 0))
    [death] = [parse(t.topic, t.payload) for t in r.handle("spBv1.0/plant1/NDEATH/edge-7", nd.encode(), T0 + 5000)]
    assert death.changes == [("offline", T0 + 5000, "death certificate")]
    r.rebirths.clear()
    with pytest.raises(Unmapped, match="before its birth certificate: rebirth requested"):
        r.handle("spBv1.0/plant1/DDATA/edge-7/filler-a", dd.encode(), T0)
    assert len(r.rebirths) == 1
    with pytest.raises(Unmapped, match="is not the configured 'plant1'"):
        r.handle("spBv1.0/other/NBIRTH/edge-7", nb.encode(), T0)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["NBIRTH/edge-7", "DBIRTH/edge-7/filler-a", "DDATA/edge-7/filler-a", "NDATA/edge-7",
                        "DDEATH/edge-7/filler-a", "NDEATH/edge-7", "FOO/edge-7", "DDATA/edge-9/x"]),
       st.binary(max_size=120), st.booleans())
def test_any_bytes_on_a_sparkplug_topic_are_used_or_dead_lettered_with_a_reason(topic: str, payload: bytes,
                                                                                born: bool) -> None:
    cfg = ConnectorConfig.model_validate({
        "line": {"site": "s", "area": "a", "name": "l"}, "source": "mqtt://127.0.0.1:1883",
        "sparkplug": {"group": "plant1", "devices": [{"node": "edge-7", "device": "filler-a", "station": "filler",
                                                      "machine": "filler-a", "values": {"vibration": {"metric": "Vib"}},
                                                      "state": {"metric": "Status", "map": {"1": "working"}}}]}})
    r = SparkplugReader(cfg)
    if born:
        r.handle("spBv1.0/plant1/DBIRTH/edge-7/filler-a", spb.DBirth(timestamp=T0, seq=0,
                                                                    metrics=BIRTH_METRICS).encode(), T0)
    used_or_dead_lettered(r, f"spBv1.0/plant1/{topic}", payload)


def used_or_dead_lettered(r: SparkplugReader, topic: str, payload: bytes) -> None:
    """A message is forwarded as messages the twin's own parser accepts, or refused with a reason (Unmapped)."""
    try:
        out = r.handle(topic, payload, T0)
    except Unmapped as e:
        assert str(e)
        return
    for t in out:
        parse(t.topic, t.payload)


_TYPES = {spb.DataType.INT8: st.integers(-128, 127), spb.DataType.INT64: st.integers(-2 ** 63, 2 ** 63 - 1),
          spb.DataType.UINT64: st.integers(0, 2 ** 64 - 1), spb.DataType.FLOAT: st.floats(width=32),
          spb.DataType.DOUBLE: st.floats(), spb.DataType.BOOLEAN: st.booleans(),
          spb.DataType.STRING: st.text(max_size=20)}
_METRIC = st.sampled_from(sorted(_TYPES, key=int)).flatmap(lambda kind: st.builds(
    metric, st.sampled_from(["Vib", "Status", "Fault", "Other", None]), st.just(kind), _TYPES[kind],
    st.one_of(st.just(T0), st.integers(0, 2 ** 64 - 1)), st.one_of(st.none(), st.integers(0, 4))))


@settings(max_examples=150, deadline=None)
@given(st.lists(_METRIC, max_size=3), st.lists(_METRIC, max_size=5), st.integers(0, 2 ** 64 - 1),
       st.sampled_from([spb.DData, spb.DBirth]))
def test_any_metrics_in_well_formed_payloads_are_used_or_dead_lettered_with_a_reason(
        birth: list[spb.Metric], data: list[spb.Metric], ts: int, kind: type) -> None:
    """Random bytes seldom decode as Sparkplug: here the payloads are valid, their metrics not (any type, value,
    alias or time). A metric stamped in 2500 was forwarded, and the twin's ingest refused the message it landed in."""
    cfg = ConnectorConfig.model_validate({
        "line": {"site": "s", "area": "a", "name": "l"}, "source": "mqtt://127.0.0.1:1883",
        "sparkplug": {"group": "plant1", "devices": [{
            "node": "edge-7", "device": "filler-a", "station": "filler", "machine": "filler-a",
            "values": {"vibration": {"metric": "Vib", "unit": "mm/s"}}, "buffer": {"metric": "Other"},
            "state": {"metric": "Status", "map": {"1": "working", "2": "down"}, "reason": "Fault"}}]}})
    r = SparkplugReader(cfg)
    r.handle("spBv1.0/plant1/NBIRTH/edge-7", spb.NBirth(timestamp=T0, seq=0, metrics=(
        metric("bdSeq", spb.DataType.INT64, 0),)).encode(), T0)
    try:  # what pysparkplug itself refuses to encode (a birth metric without a name) no edge node can send
        sent = [("DBIRTH", spb.DBirth(timestamp=T0, seq=1, metrics=(*BIRTH_METRICS, *birth)).encode()),
                ("DDATA" if kind is spb.DData else "DBIRTH", kind(timestamp=ts, seq=2, metrics=tuple(data)).encode())]
    except ValueError:
        reject()
    for topic, payload in sent:
        used_or_dead_lettered(r, f"spBv1.0/plant1/{topic}/edge-7/filler-a", payload)


def test_a_metrics_raw_value_is_scaled(tmp_path: Path) -> None:
    """`scale` multiplies a metric's raw value (a PLC's integer in tenths, a meter's Wh register in kWh)."""
    f = config(tmp_path, "mqtt://127.0.0.1:1883")
    f.write_text(f.read_text().replace("{metric: Vib, unit: mm/s}", "{metric: Vib, unit: mm/s, scale: 0.5}"))
    r = SparkplugReader(load_config(f))
    r.handle("spBv1.0/plant1/NBIRTH/edge-7", spb.NBirth(timestamp=T0, seq=0, metrics=(
        metric("bdSeq", spb.DataType.INT64, 0),)).encode(), T0)
    db = spb.DBirth(timestamp=T0, seq=1, metrics=BIRTH_METRICS)
    out = [parse(t.topic, t.payload) for t in r.handle("spBv1.0/plant1/DBIRTH/edge-7/filler-a", db.encode(), T0)]
    assert out[0].values == [1.0]  # 2.0 as sent, times 0.5
