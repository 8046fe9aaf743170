"""MQTT payloads: what the twin publishes matches docs/mqtt.schema.json; the parser rejects what it must."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensors.bus.payloads import (
    MAX_PAYLOAD,
    MAX_REASON,
    STATE_NAMES,
    TS_RANGE,
    LineTopics,
    ParseError,
    StateChange,
    Telemetry,
    alert_payload,
    buffers_payload,
    deadletter_payload,
    encode,
    parse,
    parse_alert,
    signed_by,
    state_payload,
    telemetry_payload,
)

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "docs" / "mqtt.schema.json").read_text())
T = LineTopics("plant", "hall", "line")


def valid(obj: dict, kind: str) -> None:  # type: ignore[type-arg]
    jsonschema.validate(obj, {**SCHEMA, "oneOf": [{"$ref": f"#/$defs/{kind}"}]})


def test_topic_tree() -> None:
    assert T.telemetry("filler", "filler-a") == "plant/hall/line/filler/filler-a/telemetry"
    assert T.state("filler", "filler-a") == "plant/hall/line/filler/filler-a/state"
    assert T.alerts("filler", "filler-a") == "plant/hall/line/filler/filler-a/alerts"
    assert (T.kpi, T.run, T.deadletter) == ("plant/hall/line/kpi", "plant/hall/line/run", "plant/hall/line/deadletter")


def test_telemetry_round_trip_and_schema() -> None:
    payload = telemetry_payload("r1", 0, "filler", "filler-a", {"temp": "degC"}, [["temp", 1767592800000, 21.5]])
    valid(json.loads(payload), "telemetry")
    msg = parse(T.telemetry("filler", "filler-a"), payload)
    assert isinstance(msg, Telemetry)
    assert (msg.sensors, msg.ts_ms, msg.values, msg.units) == (["temp"], [1767592800000], [21.5], {"temp": "degC"})


def test_state_round_trip_and_schema() -> None:
    payload = state_payload("r1", 2, "filler", "filler-a", [("working", 1), ("down", 5)])
    obj = json.loads(payload)
    valid(obj, "state")
    assert obj["state"] == "down" and obj["ts"] == 5
    msg = parse(T.state("filler", "filler-a"), payload)
    assert isinstance(msg, StateChange) and msg.changes == [("working", 1, ""), ("down", 5, "")] \
        and msg.replication == 2


def test_state_downtime_reason_round_trip_and_rejects() -> None:
    """A stop's downtime reason (the fault mode repaired) travels as a third item; other changes stay pairs."""
    payload = state_payload("r1", 0, "filler", "filler-a", [("working", 1, ""), ("down", 5, "valve_clogging")])
    obj = json.loads(payload)
    valid(obj, "state")
    assert obj["reason"] == "valve_clogging" and obj["changes"] == [["working", 1], ["down", 5, "valve_clogging"]]
    msg = parse(T.state("filler", "filler-a"), payload)
    assert isinstance(msg, StateChange) and msg.changes == [("working", 1, ""), ("down", 5, "valve_clogging")]
    for bad in (["down", 5, 7], ["down", 5, "x" * 201], ["down", 5, "a", "b"]):
        with pytest.raises(ParseError, match="reason"):
            parse(T.state("filler", "filler-a"), json.dumps({**obj, "changes": [bad]}).encode())


def test_alert_round_trip_schema_and_rejects() -> None:
    alert = {"run": "r", "replication": 0, "line": "plant/hall/line", "station": "filler", "machine": "filler-a",
             "state": "raised", "severity": "warning", "fault_mode": "valve_clogging", "probability": 0.7,
             "probabilities": {"valve_clogging": 0.7}, "horizon_s": 7200.0,
             "rul": {"estimate_s": 3600.0, "low_s": 1800.0, "high_s": 5400.0},
             "model": {"kind": "lstm", "version": "linetwin 0.1.0"},
             "evidence": {"from": 1, "to": 2, "rows": 30, "sensors": ["fill_pressure"]}, "since": 1, "ts": 2}
    payload = alert_payload(alert)
    valid(json.loads(payload), "alert")
    assert parse_alert(payload) == {"schema": "linetwin/alert/1", **alert}
    with pytest.raises(ParseError, match="unknown alert state"):
        parse_alert(alert_payload({**alert, "state": "panic"}))
    with pytest.raises(ParseError, match="not a linetwin/alert/1"):
        parse_alert(b'{"schema": "linetwin/state/1"}')
    with pytest.raises(jsonschema.ValidationError):
        valid({**json.loads(payload), "probability": 1.5}, "alert")
    signed = json.loads(alert_payload(alert, b"k" * 32))
    valid(signed, "alert")
    assert signed_by(signed, b"k" * 32) and not signed_by(signed, b"K" * 32)
    assert not signed_by({**signed, "probability": 0.71}, b"k" * 32) and not signed_by(json.loads(payload), b"k" * 32)


def test_parsed_states_and_levels_become_the_stores_rows() -> None:
    """The ingest turns many messages' state changes and buffer levels into store rows column by column: each
    message's run, replication and machine repeated over its rows, times as timestamps, a message without levels
    adding none."""
    import pandas as pd

    from sensors.ingest import level_rows, product_rows, state_rows

    filler = [("working", 1767592800000), ("down", 1767592805000, "valve")]
    capper = [("starved", 1767592801000)]
    states = [parse(T.state("filler", "filler-a"), state_payload("r1", 2, "filler", "filler-a", filler)),
              parse(T.state("capper", "capper"), state_payload("r2", 0, "capper", "capper", capper))]
    rows = state_rows(states)  # type: ignore[arg-type]
    assert rows.columns.tolist() == ["run", "replication", "machine", "ts", "state", "reason"]
    assert rows.values.tolist() == [
        ["r1", 2, "filler-a", pd.Timestamp("2026-01-05 06:00:00"), "working", ""],
        ["r1", 2, "filler-a", pd.Timestamp("2026-01-05 06:00:05"), "down", "valve"],
        ["r2", 0, "capper", pd.Timestamp("2026-01-05 06:00:01"), "starved", ""]]
    levels = [parse(T.buffers, buffers_payload("r1", 1, 1767592800000, {"filler": 12, "capper": 0})),
              parse(T.buffers, buffers_payload("r1", 1, 1767592860000, {}))]
    rows = level_rows(levels)  # type: ignore[arg-type]
    assert rows.columns.tolist() == ["run", "replication", "station", "ts", "level"]
    assert rows.values.tolist() == [["r1", 1, "filler", pd.Timestamp("2026-01-05 06:00:00"), 12],
                                    ["r1", 1, "capper", pd.Timestamp("2026-01-05 06:00:00"), 0]]
    assert len(level_rows(levels[1:])) == 0  # type: ignore[arg-type]
    # a mixed line's machines set up for a product from ts on, in the same message
    told = [parse(T.buffers, buffers_payload("r1", 1, 1767592800000, {}, {"filler-a": "juice-10", "capper": "still"}))]
    assert product_rows(told).values.tolist() == [  # type: ignore[arg-type]
        ["r1", 1, "filler-a", pd.Timestamp("2026-01-05 06:00:00"), "juice-10"],
        ["r1", 1, "capper", pd.Timestamp("2026-01-05 06:00:00"), "still"]]
    assert len(level_rows(told)) == 0 and len(product_rows(levels)) == 0  # type: ignore[arg-type]
    for bad in ({"filler-a": 3}, {"": "x"}, ["juice"]):
        with pytest.raises(ParseError, match="products must map machine names to product names"):
            parse(T.buffers, json.dumps({"schema": "linetwin/buffers/1", "run": "r", "replication": 0,
                                         "ts": 1767592800000, "levels": {}, "products": bad}).encode())
    empty = state_rows([StateChange("r1", 0, "capper", "capper", [])])
    assert empty.columns.tolist() == ["run", "replication", "machine", "ts", "state", "reason"] and len(empty) == 0


def test_buffers_payload_matches_the_schema() -> None:
    valid(json.loads(buffers_payload("r", 1, 1767592800000, {"filler": 12, "capper": 0})), "buffers")
    valid(json.loads(buffers_payload("r", 1, 1767592800000, {}, {"filler-a": "juice-10"})), "buffers")
    assert T.buffers == "plant/hall/line/buffers"


def test_other_payloads_match_the_schema() -> None:
    valid(json.loads(deadletter_payload("a/b", b"\xff", "not JSON", 5)), "deadletter")
    valid({"schema": "linetwin/kpi/1", "run": "r", "replication": 0, "kpis": {"oee": 0.8, "mtbf [h]": None}}, "kpi")
    valid({"schema": "linetwin/run/1", "run": "r", "status": "finished", "readings": 10}, "run")


GOOD = {"schema": "linetwin/telemetry/1", "run": "r", "replication": 0, "station": "st", "machine": "m",
        "units": {"x": "u"}, "readings": [["x", 1, 1.0]]}


@pytest.mark.parametrize(("change", "reason"), [
    ({"schema": "linetwin/telemetry/9"}, "unsupported schema"),
    ({"run": 5}, "field 'run' has the wrong type"),
    ({"replication": True}, "field 'replication' has the wrong type"),
    ({"machine": "other"}, "does not match"),
    ({"readings": [["x", 1]]}, "is not [sensor, epoch_ms, value]"),
    ({"readings": [["x", 1.5, 1.0]]}, "is not [sensor, epoch_ms, value]"),
    ({"readings": [["y", 1, 1.0]]}, "has no unit"),
    ({"readings": [["x", 1, 1.0]] * 10_001}, "too many readings"),
    ({"units": None}, "wrong type"),
])
def test_parser_rejects(change: dict, reason: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ParseError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse(T.telemetry("st", "m"), encode({**GOOD, **change}))


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{", "not JSON"), (b"[1]", "not a JSON object"), (b'{"schema": "linetwin/telemetry/1", "x": NaN}', "non-finite"),
    (b"\xff\xfe", "not JSON"), (b" " * (MAX_PAYLOAD + 1), "oversized"),
])
def test_parser_rejects_raw(payload: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(T.telemetry("st", "m"), payload)


def test_telemetry_on_a_state_topic_is_rejected() -> None:
    with pytest.raises(ParseError, match="non-telemetry topic"):
        parse(T.state("st", "m"), encode(GOOD))


# fuzzing the parser column-wise: whatever the items, a message is refused (ParseError) exactly when one item breaks
# the per-item rule written out here, and otherwise parsed into exactly its items
_ITEM = st.one_of(st.sampled_from([*STATE_NAMES, "x", "bogus"]), st.integers(-2**63, 2**63 - 1), st.booleans(),
                  st.floats(allow_nan=False, allow_infinity=False), st.none(), st.text(max_size=3),
                  st.just("r" * (MAX_REASON + 1)), st.lists(st.integers(-5, 5), max_size=2))


def _in_range(t: object) -> bool:
    return TS_RANGE[0] <= t <= TS_RANGE[1]  # type: ignore[operator]


@given(st.lists(st.one_of(st.lists(_ITEM, min_size=0, max_size=4), _ITEM), min_size=1, max_size=6))
def test_state_changes_fuzzed_are_parsed_or_refused_item_by_item(changes: list[object]) -> None:
    def good(c: object) -> bool:  # a time is an integer, not a boolean
        return isinstance(c, list) and len(c) in (2, 3) and isinstance(c[0], str) and c[0] in STATE_NAMES \
            and type(c[1]) is int and _in_range(c[1]) \
            and (len(c) == 2 or (isinstance(c[2], str) and len(c[2]) <= MAX_REASON))

    payload = encode({"schema": "linetwin/state/1", "run": "r", "replication": 0, "station": "st", "machine": "m",
                      "changes": changes})
    if all(map(good, changes)):
        msg = parse(T.state("st", "m"), payload)
        assert isinstance(msg, StateChange)
        assert msg.changes == [(c[0], c[1], c[2] if len(c) == 3 else "") for c in changes]  # type: ignore[index]
    else:
        with pytest.raises(ParseError):
            parse(T.state("st", "m"), payload)


@given(st.lists(st.one_of(st.lists(st.one_of(st.sampled_from(["x", "y"]), _ITEM), min_size=0, max_size=4), _ITEM),
                min_size=1, max_size=6))
def test_readings_fuzzed_are_parsed_or_refused_item_by_item(readings: list[object]) -> None:
    def good(r: object) -> bool:
        return type(r) is list and len(r) == 3 and r[0] == "x" and type(r[1]) is int and _in_range(r[1]) \
            and type(r[2]) in (int, float) and math.isfinite(r[2])

    payload = encode({**GOOD, "readings": readings})
    if all(map(good, readings)):
        msg = parse(T.telemetry("st", "m"), payload)
        assert isinstance(msg, Telemetry)
        assert (msg.sensors, msg.ts_ms, msg.values) == ([r[0] for r in readings], [r[1] for r in readings],  # type: ignore[index]
                                                        [float(r[2]) for r in readings])  # type: ignore[index]
        assert all(type(v) is float for v in msg.values)
    else:
        with pytest.raises(ParseError):
            parse(T.telemetry("st", "m"), payload)


ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe", "UTC"]


@settings(deadline=None)
@given(zone=st.sampled_from(ZONES), year=st.integers(2020, 2030),
       offsets=st.lists(st.integers(0, 366 * 86_400_000), min_size=1, max_size=40, unique=True),
       near=st.lists(st.integers(0, 86_400_000), max_size=60, unique=True))
def test_the_lines_clock_never_runs_back_and_reads_a_local_export_as_it_was(zone: str, year: int, offsets: list[int],
                                                                           near: list[int]) -> None:
    """Across daylight-saving changes (an hour, Lord Howe's half hour, either hemisphere) the line's clock runs
    forward for instants that do, and back to them (twin.clock.real_instants; `utc_ms` to the millisecond); a
    plant's export of the same instants in local time, in time order, reads as their instants do wherever the export
    shows which pass of a repeated hour a time is in (a step back into it), else at least in order. The autumn
    hour's two passes shared their times: a live plant's records of it interleaved in the store."""
    import pandas as pd

    from sensors.bus.payloads import line_clock_ms, utc_ms
    from twin.clock import line_clock, local_clock, real_instants

    days = pd.date_range(f"{year}-01-01", periods=366, freq="D", tz="UTC")
    offset = (days.tz_convert(zone).tz_localize(None) - days.tz_localize(None)).asi8
    back = np.flatnonzero(np.diff(offset) < 0)  # the day the clock is set back on: its hour repeats
    autumn = days[back[0]].value // 1_000_000 if len(back) else 0
    ms = sorted({days[0].value // 1_000_000 + o for o in offsets} | {autumn + n for n in near})
    instants = pd.Series(pd.to_datetime(ms, unit="ms", utc=True))
    line = line_clock(instants, zone)
    assert line.is_monotonic_increasing and line.is_unique
    assert (real_instants(line, zone) == instants).all()
    clock = [line_clock_ms(m, zone) for m in ms]  # to the millisecond: the repeated hour's halved to 1 ms
    assert clock == [t.value // 1_000_000 for t in line]
    assert all(0 <= m - utc_ms(c, zone) <= 1 for m, c in zip(ms, clock))
    wall = instants.dt.tz_convert(zone).dt.tz_localize(None)
    read = local_clock(wall, zone)
    assert read.is_monotonic_increasing
    # where the later pass starts at a later time than the earlier pass ended (no step back), it cannot be told
    # from the earlier one: read as the earlier pass, so earlier than it was, by less than the repeated hour
    wrong = (read != line).to_numpy()
    if wrong.any():
        assert ((line - read)[wrong] > pd.Timedelta(0)).all() and ((line - read)[wrong] <= pd.Timedelta(hours=1)).all()
        back = wall.diff().to_numpy() < pd.Timedelta(0).to_timedelta64()
        assert not back[np.flatnonzero(wrong)[0]]  # the first one misread did not step back
