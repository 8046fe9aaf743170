"""MQTT topic tree and JSON payloads (schema version 1), and the pure parser the ingest uses.

Topics follow the Unified Namespace habit (ISA-95 levels), documented in docs/mqtt.md:
  {site}/{area}/{line}/{station}/{machine}/telemetry   batches of readings of one machine
  {site}/{area}/{line}/{station}/{machine}/state       the machine's state, retained, on change
  {site}/{area}/{line}/{station}/{machine}/alerts      fault alerts of the predictors, retained
  {site}/{area}/{line}/kpi                             line KPIs at the end of each replication
  {site}/{area}/{line}/run                             run status (started / finished, reading count), retained
  {site}/{area}/{line}/buffers                         parts in each buffer, retained, every simulation step
  {site}/{area}/{line}/deadletter                      rejected messages with the reason
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import hashlib
import hmac
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

SCHEMA_TELEMETRY = "linetwin/telemetry/1"
SCHEMA_STATE = "linetwin/state/1"
SCHEMA_KPI = "linetwin/kpi/1"
SCHEMA_RUN = "linetwin/run/1"
SCHEMA_DEADLETTER = "linetwin/deadletter/1"
SCHEMA_ALERT = "linetwin/alert/1"
SCHEMA_BUFFERS = "linetwin/buffers/1"
ALERT_STATES = ("raised", "updated", "cleared")
SEVERITIES = ("info", "warning", "critical")
# offline: a plant machine whose data source is gone (a Sparkplug B death certificate); the simulator never writes it
STATE_NAMES = ("working", "starved", "blocked", "down", "maintenance", "setup", "off_shift", "waiting_operator",
               "offline")
_STATES = frozenset(STATE_NAMES)
_NON_FINITE = re.compile(rb"(?<![A-Za-z\"])(-?Infinity|NaN)(?![A-Za-z\"])")
MAX_PAYLOAD = 1 << 20  # bytes; larger messages are rejected (dead-lettered)
MAX_READINGS = 10_000  # per message
MAX_REASON = 200  # characters of a downtime reason
MAX_NAME = 200  # characters of a run, station, machine or sensor name
MAX_REPLICATION = 2**31 - 1  # a 32-bit integer, as the stores keep it
TS_RANGE = (-9_223_372_036_854, 9_223_372_036_854)  # epoch ms the stores can hold (1677-09-21 to 2262-04-11)


def epoch_ms(t: dt.datetime) -> int:
    """Milliseconds since 1970 of `t` (naive: UTC), exactly: float seconds × 1000 can land 1 ms low."""
    aware = t if t.tzinfo else t.replace(tzinfo=dt.UTC)
    return (aware - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


def clock_time(ms: int) -> dt.datetime:
    """The naive time that epoch milliseconds count (the inverse of `epoch_ms` for a naive time): on the line's clock
    for the twin's times, in UTC for a real instant."""
    return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)


def line_clock_ms(utc_ms: int, zone: str) -> int:
    """A real instant (epoch ms, UTC) as the line's clock reads it, in the twin's convention for every time it stores
    and publishes: the local time in `zone`, counted as epoch ms as if it were UTC (for a line in UTC, the same)."""
    if zone == "UTC":
        return utc_ms
    local = dt.datetime.fromtimestamp(utc_ms / 1000, _zone(zone))
    if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():  # the hour autumn's change repeats
        import pandas as pd

        from twin.clock import line_clock

        return _ms(line_clock(pd.Series([pd.Timestamp(utc_ms, unit="ms", tz="UTC")]), zone).iloc[0])
    return utc_ms + int(local.utcoffset().total_seconds() * 1000)  # type: ignore[union-attr]


def line_now(zone: str, now_ms: int | None = None) -> dt.datetime:
    """The line's clock now (or at the real instant `now_ms`), naive, to the millisecond: a live run's start, a plant
    connection's."""
    import time

    real = int(time.time() * 1000) if now_ms is None else now_ms
    return clock_time(line_clock_ms(real, zone))


def utc_ms(line_ms: int, zone: str) -> int:
    """The inverse of `line_clock_ms`: a time on the line's clock (epoch ms, the twin's convention) as the real
    instant, for what speaks UTC by its standard (an OPC UA source timestamp); a time in the hour spring's change skips
    read with the offset before the change."""
    if zone == "UTC":
        return line_ms
    naive = clock_time(line_ms)
    local = naive.replace(tzinfo=_zone(zone))
    if local.replace(fold=1).utcoffset() != local.utcoffset() and \
            local.astimezone(dt.UTC).astimezone(local.tzinfo).replace(tzinfo=None) == naive:  # repeated, not skipped
        import pandas as pd

        from twin.clock import real_instants

        return _ms(real_instants(pd.Series([pd.Timestamp(naive)]), zone).iloc[0])
    return epoch_ms(local)


def local_ms(wall: dt.datetime, zone: str) -> int:
    """A plant's local time without a UTC offset (a gateway's ISO time) as the real instant (epoch ms, UTC): in the
    hour autumn's change repeats, its first pass (a lone time cannot tell; a log's order can: twin.clock)."""
    return epoch_ms(wall if zone == "UTC" else wall.replace(tzinfo=_zone(zone), fold=0))


def _ms(t: Any) -> int:
    """A pandas Timestamp (naive: the line's clock; aware: a real instant) as epoch milliseconds."""
    return int(t.value // 1_000_000) if t.tzinfo is None else int(t.tz_convert("UTC").value // 1_000_000)


@functools.lru_cache(maxsize=16)
def _zone(name: str) -> dt.tzinfo:
    import zoneinfo

    return zoneinfo.ZoneInfo(name)


@dataclass(frozen=True)
class LineTopics:
    """The topic tree of one line."""

    site: str
    area: str
    line: str

    @property
    def prefix(self) -> str:
        return f"{self.site}/{self.area}/{self.line}"

    def telemetry(self, station: str, machine: str) -> str:
        return f"{self.prefix}/{station}/{machine}/telemetry"

    def state(self, station: str, machine: str) -> str:
        return f"{self.prefix}/{station}/{machine}/state"

    def alerts(self, station: str, machine: str) -> str:
        return f"{self.prefix}/{station}/{machine}/alerts"

    @property
    def kpi(self) -> str:
        return f"{self.prefix}/kpi"

    @property
    def run(self) -> str:
        return f"{self.prefix}/run"

    @property
    def buffers(self) -> str:
        return f"{self.prefix}/buffers"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}/deadletter"


def alert_filter(prefix: str = "+/+/+") -> str:
    """The subscription for every machine's alerts of one line (or of every line)."""
    return f"{prefix}/+/+/alerts"


def line_filters(prefix: str = "+/+/+") -> list[str]:
    """Subscriptions the ingest needs for one line prefix (or every line with '+/+/+')."""
    return [f"{prefix}/+/+/telemetry", f"{prefix}/+/+/state"]


class ParseError(ValueError):
    """A message the ingest must reject; the text is the reason sent to the dead-letter topic."""


@dataclass
class Telemetry:
    """Readings of one message, as plain lists (the writer builds one table from many messages)."""

    run: str
    replication: int
    station: str
    machine: str
    units: dict[str, str]
    sensors: list[str] = field(default_factory=list)
    ts_ms: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    key: int = 0  # the message's identity: a hash of its bytes (a redelivery has the same)


@dataclass
class StateChange:
    """A machine's state changes in one message, (state, epoch ms, downtime reason or ''); the last one is its
    current state."""

    run: str
    replication: int
    station: str
    machine: str
    changes: list[tuple[str, int, str]]


def collect_less_often() -> None:
    """For a process that handles many messages (`twin ingest`, the embedded amqtt broker): a telemetry message
    parses into ~800 objects, so the collector's youngest generation (700 allocations) ran on every message, and
    its older ones scanned what waits in the write queue, a fifth of a message's parse (207 against 170 us). Here it
    runs every 100,000 allocations, with the modules loaded so far left out: body_shop 8 h streamed flat out went
    168-179k -> 174-204k readings/s (cycles are rare in these processes; reference counting frees the rest). Not
    for the twin's own process: no gain measured there."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def encode(obj: dict[str, Any]) -> bytes:
    """Compact JSON (orjson: about ten times the speed of the standard library on reading batches)."""
    return orjson.dumps(obj)


def telemetry_payload(run: str, replication: int, station: str, machine: str, units: dict[str, str],
                      readings: list[Any]) -> bytes:
    """One message: readings as [sensor, epoch milliseconds, value] triples."""
    return encode({"schema": SCHEMA_TELEMETRY, "run": run, "replication": replication, "station": station,
                   "machine": machine, "units": units, "readings": readings})


def state_payload(run: str, replication: int, station: str, machine: str,
                  changes: Sequence[tuple[str, int] | tuple[str, int, str]]) -> bytes:
    """The current state (`state`, since `ts`, `reason` when down for a known fault) and every change since the
    last message (`changes`: [state, ts] or, with a downtime reason, [state, ts, reason])."""
    out = [list(c) if len(c) == 3 and c[2] else list(c[:2]) for c in changes]  # no reason: [state, ts]
    current = out[-1]
    extra = {"reason": current[2]} if len(current) == 3 else {}
    return encode({"schema": SCHEMA_STATE, "run": run, "replication": replication, "station": station,
                   "machine": machine, "state": current[0], "ts": current[1], **extra, "changes": out})


def buffers_payload(run: str, replication: int, ts_ms: int, levels: dict[str, int],
                    products: dict[str, str] | None = None) -> bytes:
    """How many parts wait in front of each station (by station name) at ts; with `products`, the product each
    machine (by name) is set up for from ts on (a mixed line's state: what a what-if's setups start from)."""
    return encode({"schema": SCHEMA_BUFFERS, "run": run, "replication": replication, "ts": ts_ms, "levels": levels,
                   **({"products": products} if products else {})})


def status_payload(run: str, status: str, **extra: Any) -> bytes:
    """A run's status on the line's run topic (retained): `started` first (the ingest takes a run's messages only
    after it), `finished` with how many readings were sent."""
    return encode({"schema": SCHEMA_RUN, "run": run, "status": status, **extra})


def alert_payload(alert: dict[str, Any], key: bytes | None = None) -> bytes:
    """A fault alert (fields in docs/mqtt.md: state, severity, fault mode, probability, RUL, model, evidence); with
    `key`, signed (see `signed_by`)."""
    doc = {"schema": SCHEMA_ALERT, **alert}
    if key is not None:
        doc["signature"] = _mac(doc, key)
    return encode(doc)


def signed_by(alert: dict[str, Any], key: bytes) -> bool:
    """Whether a parsed alert carries a valid `signature`: HMAC-SHA256 under `key` of its other fields as canonical
    JSON (keys sorted). A run's key never leaves its process, so only the run's own forecaster can sign: what acts on
    alerts (the predictive policy) tells it from any other client of the broker."""
    sig = alert.get("signature")
    body = {k: v for k, v in alert.items() if k != "signature"}
    return isinstance(sig, str) and hmac.compare_digest(sig, _mac(body, key))


def _mac(doc: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, orjson.dumps(doc, option=orjson.OPT_SORT_KEYS), hashlib.sha256).hexdigest()


def parse_alert(payload: bytes | bytearray) -> dict[str, Any]:
    """Decode an alert; raise ParseError if it is not one."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise ParseError(f"not JSON: {e}") from None
    if not isinstance(obj, dict) or obj.get("schema") != SCHEMA_ALERT:
        raise ParseError(f"not a {SCHEMA_ALERT} payload")
    for key, kind in (("machine", str), ("state", str), ("severity", str), ("probability", (int, float)),
                      ("rul", dict), ("ts", int)):
        _field(obj, key, kind)
    if obj["state"] not in ALERT_STATES:
        raise ParseError(f"unknown alert state {obj['state']!r}")
    return obj


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in obj:
        raise ParseError(f"missing field '{key}'")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ParseError(f"field '{key}' has the wrong type ({type(value).__name__})")
    return value


@dataclass
class Levels:
    """Buffer levels of one message: parts waiting in front of each station (by name) at ts; and the product each
    machine named in `products` is set up for from ts on."""

    run: str
    replication: int
    ts_ms: int
    levels: dict[str, int]
    products: dict[str, str] = field(default_factory=dict)


def _levels(topic: str, obj: dict[str, Any]) -> Levels:
    if not topic.endswith("/buffers") or topic.count("/") != 3:
        raise ParseError("buffers payload on a topic other than site/area/line/buffers")
    run, replication, ts = _field(obj, "run", str), _field(obj, "replication", int), _field(obj, "ts", int)
    levels = _field(obj, "levels", dict)
    if not (0 < len(run) <= MAX_NAME and 0 <= replication <= MAX_REPLICATION and len(levels) <= 10_000):
        raise ParseError("buffers payload: run, replication or the number of levels out of range")
    if not all(isinstance(k, str) and 0 < len(k) <= MAX_NAME and type(v) is int and 0 <= v < 2**31
               for k, v in levels.items()):
        raise ParseError("buffers payload: levels must map station names to part counts")
    products = obj.get("products", {})
    if not isinstance(products, dict) or len(products) > 10_000 or not all(
            isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= MAX_NAME and 0 < len(v) <= MAX_NAME
            for k, v in products.items()):
        raise ParseError("buffers payload: products must map machine names to product names")
    _check_times([ts])
    return Levels(run, replication, ts, levels, products)


def parse(topic: str, payload: bytes | bytearray) -> Telemetry | StateChange | Levels:
    """Decode one message; raise ParseError with the reason if it is malformed. Pure: no I/O."""
    if len(payload) > MAX_PAYLOAD:
        raise ParseError(f"oversized payload ({len(payload)} bytes > {MAX_PAYLOAD})")
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        hint = " (a non-finite number: NaN and Infinity are not JSON)" if _NON_FINITE.search(payload) else ""
        raise ParseError(f"not JSON{hint}: {e}") from None
    if not isinstance(obj, dict):
        raise ParseError("payload is not a JSON object")
    levels = topic.split("/")
    schema = obj.get("schema")
    if schema == SCHEMA_BUFFERS:
        return _levels(topic, obj)
    if schema not in (SCHEMA_TELEMETRY, SCHEMA_STATE):
        raise ParseError(f"unsupported schema {schema!r}; expected {SCHEMA_TELEMETRY}, {SCHEMA_STATE} or "
                         f"{SCHEMA_BUFFERS}")
    run = _field(obj, "run", str)
    replication = _field(obj, "replication", int)
    station = _field(obj, "station", str)
    machine = _field(obj, "machine", str)
    if not 0 <= replication <= MAX_REPLICATION:
        raise ParseError(f"field 'replication' {replication} is out of range (0 to {MAX_REPLICATION})")
    for key, text in (("run", run), ("station", station), ("machine", machine)):
        if not 0 < len(text) <= MAX_NAME:
            raise ParseError(f"field '{key}' must be 1 to {MAX_NAME} characters")
    if len(levels) != 6 or levels[3] != station or levels[4] != machine:
        raise ParseError(f"topic {topic!r} does not match station {station!r} / machine {machine!r}")
    if schema == SCHEMA_STATE:
        if levels[5] != "state":
            raise ParseError("state payload on a non-state topic")
        changes = _field(obj, "changes", list)
        if not changes:
            raise ParseError("no state changes")
        # column-wise, as for readings below; a change without a reason gets an empty one
        if set(map(type, changes)) == {list} and (sizes := set(map(len, changes))) <= {2, 3}:
            if sizes == {2}:  # the usual message: no stop with a reason
                (states, ts), reasons = zip(*changes), ("",) * len(changes)
            else:
                states, ts, reasons = zip(*(c if len(c) == 3 else [*c, ""] for c in changes))
            ok = set(map(type, states)) == {str} and set(states) <= _STATES and set(map(type, ts)) == {int} \
                and set(map(type, reasons)) == {str} and max(map(len, reasons)) <= MAX_REASON
        else:
            ok = False
        if not ok:
            bad = next(c for c in changes if not (
                isinstance(c, list) and len(c) in (2, 3) and c[0] in STATE_NAMES and type(c[1]) is int
                and (len(c) == 2 or (isinstance(c[2], str) and len(c[2]) <= MAX_REASON))))
            raise ParseError(f"state change {str(bad)[:80]} is not [state, epoch_ms] or [state, epoch_ms, reason] "
                             f"with a known state (reason: text up to {MAX_REASON} characters)")
        _check_times(ts)
        return StateChange(run, replication, station, machine, list(zip(states, ts, reasons)))
    if levels[5] != "telemetry":
        raise ParseError("telemetry payload on a non-telemetry topic")
    units = _field(obj, "units", dict)
    readings = _field(obj, "readings", list)
    if len(readings) > MAX_READINGS:
        raise ParseError(f"too many readings in one message ({len(readings)} > {MAX_READINGS})")
    out = Telemetry(run, replication, station, machine, units, key=message_key(payload))
    if not readings:
        return out
    # column-wise checks: each is one pass in C, not a Python loop per reading
    if set(map(type, readings)) != {list} or set(map(len, readings)) != {3}:
        bad = next(r for r in readings if type(r) is not list or len(r) != 3)
        raise ParseError(f"reading {str(bad)[:80]} is not [sensor, epoch_ms, value]")
    sensors, ts, values = (list(c) for c in zip(*readings))
    if not (set(map(type, sensors)) == {str} and set(map(type, ts)) == {int}
            and set(map(type, values)) <= {int, float}):
        bad = next(r for r in readings if not (type(r[0]) is str and type(r[1]) is int
                                                and type(r[2]) in (int, float)))
        raise ParseError(f"reading {str(bad)[:80]} is not [sensor, epoch_ms, value]")
    if not all(map(math.isfinite, values)):
        raise ParseError("non-finite value in a reading")
    _check_times(ts)
    if max(map(len, units)) > MAX_NAME:
        raise ParseError(f"a sensor name is longer than {MAX_NAME} characters")
    unknown = set(sensors) - units.keys()
    if unknown:
        raise ParseError(f"sensor {sorted(unknown)[0]!r} has no unit in 'units'")
    out.sensors, out.ts_ms, out.values = sensors, ts, list(map(float, values))
    return out


def _check_times(ts: list[int]) -> None:
    lo, hi = min(ts), max(ts)
    if lo < TS_RANGE[0] or hi > TS_RANGE[1]:
        bad = lo if lo < TS_RANGE[0] else hi
        raise ParseError(f"timestamp {bad} is outside what the stores can hold (epoch milliseconds from "
                         f"{TS_RANGE[0]} to {TS_RANGE[1]}, 1677 to 2262)")


def message_key(payload: bytes | bytearray) -> int:
    """A message's identity for exactly-once storage: 64 bits of BLAKE2b over its bytes. A redelivered message
    has the same bytes, so the same key; two different messages collide with odds of about 2^-64 per pair."""
    return int.from_bytes(hashlib.blake2b(payload, digest_size=8).digest(), "little", signed=True)


def deadletter_payload(topic: str, payload: bytes | bytearray, reason: str, received_ms: int) -> bytes:
    try:
        text = payload.decode()
        encoding = "utf-8"
    except UnicodeDecodeError:
        import base64
        text, encoding = base64.b64encode(payload).decode(), "base64"
    return encode({"schema": SCHEMA_DEADLETTER, "topic": topic, "reason": reason, "received": received_ms,
                   "encoding": encoding, "payload": text[:MAX_PAYLOAD]})
