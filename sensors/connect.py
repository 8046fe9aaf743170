"""Plant data in, with no code: a connector config maps a plant's own data (OPC UA nodes, Sparkplug B metrics, or
MQTT JSON on any topic tree with any field names) onto the line's stations, machines and sensors, and republishes it
as the twin's telemetry and state messages on the line's topic tree, so the ingest, the forecasters, alerts and the
dashboard work unchanged on real machines. A message no mapping matches, or one that is not what its mapping says,
goes to the line's dead-letter topic with the reason: nothing is dropped silently.

    line: {site: plant-hamburg, area: hall-2, name: bottling-1}
    source: mqtt://gateway.plant:1883          # the plant's broker or OPC UA server (opc.tcp://…)
    run: plant                                 # the run id the data is stored under
    subscribe: ["factory/#"]                   # what to listen on (default: the mappings' topics)
    json:
      - topic: "factory/{station}/{machine}/data"      # {name} matches one topic level
        timestamp: {field: ts, unit: ms}               # epoch s or ms, or iso; absent field: the time received
        values:
          vibration: {field: vib, unit: mm/s}
          bearing_temp: {field: temps.bearing, unit: degC}   # a dotted path into nested objects
        state: {field: status, map: {1: working, 2: down, 3: starved}, reason: fault}

OPC UA (`opcua:`, sensors/opcua.py) and Sparkplug B (`sparkplug:`, sensors/sparkplug.py) map nodes and metrics the
same way (docs/connect.md).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sensors.bus.payloads import (
    LineTopics,
    buffers_payload,
    deadletter_payload,
    epoch_ms,
    line_clock_ms,
    local_ms,
    state_payload,
    telemetry_payload,
)
from twin import TIME_RANGE
from twin.scenario import LineId, Name, load_model
from twin.tables import with_decimal_point

_LAST_MS = epoch_ms(TIME_RANGE[1])  # a plant time must fall in the line's range, 1970 to 2200
_FIRST_YEAR_MS = 365 * 86400 * 1000  # no plant's data is from 1970: a time there is a unit mix-up or a counter
_LEVEL = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConnectError(ValueError):
    """A connector config that cannot be used: the message names the file, line, field and fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


StateName = Literal["working", "starved", "blocked", "down", "maintenance", "setup", "off_shift", "waiting_operator",
                    "offline"]


#: the units the twin counts these sensors in (the dashboard's and the fit's energy figures)
SENSOR_UNITS = {"energy": "kWh", "power": "kW"}


class _Value(_Strict):
    """A sensor's value as the plant sends it: its unit once scaled, and the factor its raw number is scaled by."""

    unit: str = Field("", max_length=16)
    scale: float = Field(1.0, allow_inf_nan=False, description="multiplies the raw value, e.g. 0.001 for a meter's "
                                                               "Wh register counted in kWh, 0.1 for tenths of a degree")

    @field_validator("scale")
    @classmethod
    def _nonzero(cls, v: float) -> float:
        if v == 0:
            raise ValueError("a scale of 0 makes every value 0; give the factor the raw value is multiplied by")
        return v


def _in_twin_units(values: dict[str, _Value]) -> dict[str, _Value]:
    """The sensors the twin counts in a unit of its own (an energy meter's register in kWh, power in kW) are given
    in it: a Wh register stored as kWh made every energy figure a thousand times too high, without a word."""
    for sensor, spec in values.items():
        want = SENSOR_UNITS.get(sensor)
        if want is not None and spec.unit not in ("", want):
            raise ValueError(f"{sensor}: unit {spec.unit!r}, but the twin counts {sensor} in {want}; give unit: {want} "
                             f"with the scale that makes the raw value {want} (e.g. scale: 0.001 for a meter's "
                             f"W{'h' if sensor == 'energy' else ''} reading)")
    return values


class Signal(_Value):
    """One sensor's value in the message, and its unit."""

    field: str = Field(min_length=1, max_length=200, description="dotted path into the JSON object")


class Counter(_Strict):
    """A station's buffer level in the message: the field with the number of parts waiting in front of it."""

    field: str = Field(min_length=1, max_length=200, description="dotted path into the JSON object")


class Stamp(_Strict):
    field: str = Field(min_length=1, max_length=200)
    unit: Literal["ms", "s", "iso"] = "ms"


class _StateMap(_Strict):
    """Where a machine's state comes from (a field, node or metric, in the subclass) and what its values mean."""

    map: dict[str, StateName] = Field(min_length=1, description="plant value → machine state")

    @field_validator("map", mode="before")
    @classmethod
    def _keys_as_text(cls, v: Any) -> Any:
        return {str(k): s for k, s in v.items()} if isinstance(v, dict) else v


class _ProductMap(_Strict):
    """Where a machine's product (its recipe or article number) comes from (a field, node or metric, in the
    subclass), and the line's name for each of the plant's values (none: the value is the line's name)."""

    map: dict[str, Name] = Field(default_factory=dict, description="plant value → the line's product name")

    @field_validator("map", mode="before")
    @classmethod
    def _keys_as_text(cls, v: Any) -> Any:
        return {str(k): s for k, s in v.items()} if isinstance(v, dict) else v


class ProductField(_ProductMap):
    field: str = Field(min_length=1, max_length=200, description="dotted path into the JSON object")


class StateField(_StateMap):
    field: str = Field(min_length=1, max_length=200)
    reason: str | None = Field(None, max_length=200, description="field with the downtime reason (fault mode)")


class Records(_Strict):
    """A message that carries several samples: the list at `field`, each item read as a message of its own (its
    fields first, then the message's: a time or status given once for the batch). With `tag`, each item is one tag
    (a Kepware or Node-RED tag list): its name in the field `tag`, its value in `value`, and the mapping's `field:`s
    name tags; items of the same time make one sample. With `quality`, an item whose quality is not one of `good` is
    dead-lettered on its own, the message's good items stored."""

    field: str = Field(min_length=1, max_length=200, description="dotted path to the list of samples or tags")
    tag: str | None = Field(None, min_length=1, max_length=200, description="each item's tag name (a tag list)")
    value: str = Field("value", min_length=1, max_length=200, description="each tag's value (with tag:)")
    quality: str | None = Field(None, min_length=1, max_length=200, description="each item's quality (Kepware: q)")
    good: list[bool | int | str] = Field([True, "good", "Good", "GOOD"], min_length=1, max_length=50,
                                         description="the quality values that mean good")
    max_items: int = Field(10_000, ge=1, le=1_000_000, description="longer lists are refused (dead-lettered)")


class JsonMapping(_Strict):
    """Messages on `topic` (with {station} and {machine} levels, or fixed names) → one machine's readings."""

    topic: str = Field(min_length=1, max_length=300)
    station: Name | None = None
    machine: Name | None = None
    records: Records | None = None
    timestamp: Stamp | None = None
    values: dict[Name, Signal] = Field(default_factory=dict)
    _units = field_validator("values")(_in_twin_units)
    state: StateField | None = None
    buffer: Counter | None = Field(None, description="parts waiting in front of the station (a PLC's counter): what a "
                                                     "what-if from the line's state starts from")
    product: ProductField | None = Field(None, description="the product the machine is set up for (a recipe or "
                                                           "article number): a mixed line's what-if sets up from it")

    @field_validator("topic")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if "#" in v or "+" in v:
            raise ValueError("write {name} for a topic level that varies, not MQTT's + or #")
        names = _LEVEL.findall(v)
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"{{{twice[0]}}} names two topic levels: name each level that varies once (another "
                             "name, e.g. {area}, for a level whose value does not matter)")
        return v

    @model_validator(mode="after")
    def _names(self) -> JsonMapping:
        names = set(_LEVEL.findall(self.topic))
        for need in ("station", "machine"):
            if need not in names and getattr(self, need) is None:
                raise ValueError(f"topic {self.topic!r} has no {{{need}}} level: give {need}: NAME")
        if not self.values and self.state is None and self.buffer is None and self.product is None:
            raise ValueError("map at least one value (values:), the machine state (state:), its buffer (buffer:) or "
                             "its product (product:)")
        return self

    @property
    def filter(self) -> str:
        """The MQTT subscription for the pattern."""
        return _LEVEL.sub("+", self.topic)

    @property
    def regex(self) -> re.Pattern[str]:
        parts = re.split(r"(\{[A-Za-z_][A-Za-z0-9_]*\})", self.topic)
        return re.compile("^" + "".join(f"(?P<{p[1:-1]}>[^/]+)" if _LEVEL.fullmatch(p) else re.escape(p)
                                        for p in parts) + "$")


def _covers(first: str, later: str) -> bool:
    """Whether topic pattern `first` matches every topic `later` does, level by level: a level that is one {name}
    matches any, other levels must be the same text (their {names} aside)."""
    a, b = first.split("/"), later.split("/")
    return len(a) == len(b) and all(_LEVEL.fullmatch(x) or _LEVEL.sub("{}", x) == _LEVEL.sub("{}", y)
                                    for x, y in zip(a, b))


class OpcValue(_Value):
    """One OPC UA variable: a node id (`ns=2;s=Press1.Vib`) or a browse path below Objects (`2:Press1/2:Vib`)."""

    node: str = Field(min_length=1, max_length=300)


class OpcState(_StateMap):
    node: str = Field(min_length=1, max_length=300)
    reason: str | None = Field(None, max_length=300, description="node with the downtime reason (fault mode)")


class OpcProduct(_ProductMap):
    node: str = Field(min_length=1, max_length=300)


class OpcMachine(_Strict):
    station: Name
    machine: Name
    values: dict[Name, OpcValue] = Field(default_factory=dict)
    _units = field_validator("values")(_in_twin_units)
    state: OpcState | None = None
    buffer: OpcValue | None = Field(None, description="the node counting the parts waiting in front of the station")
    product: OpcProduct | None = Field(None, description="the node with the product the machine is set up for")


class OpcSecurity(_Strict):
    """A signed (and encrypted) OPC UA channel: the connector's application certificate and key (files relative to
    the config), and optionally the server's certificate to pin."""

    policy: Literal["Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"] = "Basic256Sha256"
    mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    certificate: str = Field(min_length=1, max_length=500, description="the connector's certificate (.der or .pem)")
    private_key: str = Field(min_length=1, max_length=500, description="its private key (.pem or .der)")
    server_certificate: str | None = Field(None, max_length=500, description="the server's certificate to trust")


class OpcUaSource(_Strict):
    """OPC UA: one subscription on the mapped nodes; source timestamps; bad-quality values dropped (dead-lettered
    with the status) or kept (stored, with the status code beside them as `<sensor>.status`)."""

    interval: float = Field(0.5, gt=0.0, le=3600, description="publishing interval, seconds")
    bad_quality: Literal["drop", "keep"] = "drop"
    security: OpcSecurity | None = Field(None, description="sign and encrypt the channel (default: SecurityPolicy "
                                         "None, for servers on a trusted network)")
    machines: list[OpcMachine] = Field(min_length=1)


class SpbMetric(_Value):
    metric: str = Field(min_length=1, max_length=200)


class SpbState(_StateMap):
    metric: str = Field(min_length=1, max_length=200)
    reason: str | None = Field(None, max_length=200, description="metric with the downtime reason (fault mode)")


class SpbProduct(_ProductMap):
    metric: str = Field(min_length=1, max_length=200)


class SpbDevice(_Strict):
    """One edge node's device (or the node itself, without `device:`) → one machine."""

    node: str = Field(min_length=1, max_length=100, description="edge node id")
    device: str | None = Field(None, min_length=1, max_length=100, description="device id (none: node metrics)")
    station: Name
    machine: Name
    values: dict[Name, SpbMetric] = Field(default_factory=dict)
    _units = field_validator("values")(_in_twin_units)
    state: SpbState | None = None
    buffer: SpbMetric | None = Field(None, description="the metric counting the parts waiting in front of the station")
    product: SpbProduct | None = Field(None, description="the metric with the product the machine is set up for")


class SparkplugSource(_Strict):
    """Sparkplug B on the source broker: births define metrics and aliases, deaths make machines offline, a gap in
    sequence numbers asks the edge node for a rebirth."""

    group: str = Field(min_length=1, max_length=100, description="the Sparkplug group id")
    devices: list[SpbDevice] = Field(min_length=1)

    @field_validator("devices")
    @classmethod
    def _once(cls, v: list[SpbDevice]) -> list[SpbDevice]:
        """Each node's device mapped once: the reader keeps one mapping per device, so a second would replace the
        first without a word."""
        seen: dict[tuple[str, str | None], int] = {}
        for i, d in enumerate(v):
            if (d.node, d.device) in seen:
                what = f"device {d.device!r}" if d.device is not None else "its own metrics (no device:)"
                raise ValueError(f"devices[{i}] maps node {d.node!r} {what} again (devices[{seen[d.node, d.device]}]); "
                                 "map each device once, with all its values")
            seen[d.node, d.device] = i
        return v


class ConnectorConfig(_Strict):
    """Where plant data comes from and how it maps onto the line."""

    line: LineId
    source: str = Field(min_length=1, description="the plant's MQTT broker URL, or its OPC UA server (opc.tcp://…)")
    target: str | None = Field(None, description="the twin's broker (default: the source; needed for OPC UA)")
    run: Name = Field("plant", description="the run id the plant's data is stored under")
    scenario: str | None = Field(None, max_length=500, description="the line as engineered (a scenario file, relative "
                                 "to this config): the dashboard draws the plant's line from it")
    subscribe: list[str] = Field(default_factory=list, max_length=100, description="topic filters to listen on "
                                 "(default: the mappings' own); a message there no mapping matches is dead-lettered")
    json_: list[JsonMapping] = Field(default_factory=list, alias="json")
    opcua: OpcUaSource | None = None
    sparkplug: SparkplugSource | None = None

    @field_validator("subscribe")
    @classmethod
    def _filters(cls, v: list[str]) -> list[str]:
        """MQTT topic filters: paho refuses a bad one only when it subscribes, with a traceback."""
        for f in v:
            levels = f.split("/")
            if not f or "\0" in f or len(f.encode()) > 65535 or any(
                    ("+" in lv and lv != "+") or ("#" in lv and (lv != "#" or i != len(levels) - 1))
                    for i, lv in enumerate(levels)):
                raise ValueError(f"{f!r} is not an MQTT topic filter: + stands for one whole level, # for the "
                                 "rest and only at the end (e.g. gw7/# or gw7/+/+/data)")
        return v

    @field_validator("json_")
    @classmethod
    def _reachable(cls, v: list[JsonMapping]) -> list[JsonMapping]:
        """Every mapping can be used: the first mapping whose topic matches takes a message, so one after a mapping
        that matches everything it does would never apply."""
        for j, later in enumerate(v):
            for i, first in enumerate(v[:j]):
                if _covers(first.topic, later.topic):
                    raise ValueError(f"json[{j}] (topic {later.topic!r}) is never used: json[{i}] ({first.topic!r}) "
                                     "matches every message it would, and the first mapping that matches takes a "
                                     "message; put the more specific mapping first, or merge the two")
        return v

    @field_validator("source", "target")
    @classmethod
    def _url(cls, v: str | None, info: Any) -> str | None:
        """A broker URL is checked as the connector will read it, so a mistake is named with its line here."""
        if v is None or (info.field_name == "source" and v.startswith("opc.tcp://")):
            return v
        from sensors.bus.broker import BrokerError, BrokerURL

        try:
            BrokerURL.parse(v)
        except BrokerError as e:
            extra = " (or opc.tcp://host:4840 for an OPC UA server)" if info.field_name == "source" else ""
            raise ValueError(f"{e}{extra}") from None
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ConnectorConfig:
        opc = self.source.startswith("opc.tcp://")
        if not (self.json_ or self.opcua or self.sparkplug):
            raise ValueError("map the plant's data: json:, opcua: or sparkplug:")
        if opc and (self.json_ or self.sparkplug or not self.opcua):
            raise ValueError("an opc.tcp:// source takes opcua: mappings (json: and sparkplug: need an MQTT source)")
        if not opc and self.opcua:
            raise ValueError("opcua: mappings need an opc.tcp:// source")
        if opc and not self.target:
            raise ValueError("give target: the twin's MQTT broker (the OPC UA source is not one)")
        return self

    @property
    def filters(self) -> list[str]:
        return self.subscribe or [m.filter for m in self.json_]

    @property
    def topics(self) -> LineTopics:
        return LineTopics(self.line.site, self.line.area, self.line.name)


def load_config(path: Path) -> ConnectorConfig:
    """Read and check a connector config; ConnectError naming the file, line and field. Files it names (OPC UA
    certificates) are relative to it, and must exist."""
    cfg = load_model(path, ConnectorConfig, "connector config", ConnectError,
                     lambda c: scenario_problems(c, path.parent))
    sec = cfg.opcua.security if cfg.opcua is not None else None
    if sec is not None:
        files = {}
        for key in ("certificate", "private_key", "server_certificate"):
            value = getattr(sec, key)
            if value is None:
                continue
            f = (path.parent / value).resolve()
            if not f.is_file():
                raise ConnectError(f"{path}: opcua.security.{key}: no file {value!r} (looked for {f}); give the path "
                                   "of the file, relative to this config")
            files[key] = str(f)
        cfg.opcua.security = sec.model_copy(update=files)  # type: ignore[union-attr]
    return cfg


def scenario_problems(cfg: ConnectorConfig, base: Path) -> list[tuple[str, str]]:
    """Where the config disagrees with its `scenario:` (relative to `base`), as (field, message): the dashboard draws
    that line with the plant's data, so it must be the config's line, and every station and machine the mappings
    name must be in it (one that is not would be stored but never shown)."""
    if cfg.scenario is None:
        return []
    from twin.scenario import ScenarioError, load_scenario

    try:
        sc = load_scenario((base / cfg.scenario).resolve())
    except ScenarioError as e:
        return [("scenario", str(e))]
    problems = []
    if "timezone" not in cfg.line.model_fields_set:  # the line's clock is the scenario's
        cfg.line = cfg.line.model_copy(update={"timezone": sc.line.timezone})
    elif cfg.line.timezone != sc.line.timezone:
        problems.append(("line.timezone", f"{cfg.line.timezone}, but {cfg.scenario} runs the line in "
                                          f"{sc.line.timezone}: leave timezone out (the scenario's is used) or give "
                                          "the same"))
    have, want = (sc.line.site, sc.line.area, sc.line.name), (cfg.line.site, cfg.line.area, cfg.line.name)
    if have != want:
        problems.append(("scenario", f"{cfg.scenario} is the line {'/'.join(have)}, not this config's "
                                     f"{'/'.join(want)}; give the scenario of this line"))
    machines = {s.name: s.machine_names for s in sc.stations}
    named = ([(f"json[{i}]", m.station, m.machine) for i, m in enumerate(cfg.json_)]
             + [(f"opcua.machines[{i}]", m.station, m.machine)
                for i, m in enumerate(cfg.opcua.machines if cfg.opcua is not None else [])]
             + [(f"sparkplug.devices[{i}]", d.station, d.machine)
                for i, d in enumerate(cfg.sparkplug.devices if cfg.sparkplug is not None else [])])
    for loc, station, machine in named:
        if station is not None and station not in machines:
            problems.append((f"{loc}.station", f"no station {station!r} in {cfg.scenario} (its stations: "
                                               f"{', '.join(machines)}); use the line's names"))
        elif station is not None and machine is not None and machine not in machines[station]:
            problems.append((f"{loc}.machine", f"station {station!r} has no machine {machine!r} in {cfg.scenario} "
                                               f"(its machines: {', '.join(machines[station])}); use the line's names"))
        elif station is None and machine is not None and not any(machine in m for m in machines.values()):
            problems.append((f"{loc}.machine", f"no machine {machine!r} in {cfg.scenario}; use the line's names"))
    return problems


def _path(obj: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


class Unmapped(ValueError):
    """Why a message could not be turned into the twin's messages."""


@dataclass
class Translated:
    topic: str
    payload: bytes
    ts: int | None = None  # the time it carries, on the line's clock (epoch ms): the span of a plant's data


class Sink(Protocol):
    """Where a protocol reader hands what it read (the running connector, sensors/connector.py)."""

    def send(self, out: list[Translated]) -> None: ...

    def reject(self, where: str, payload: bytes, reason: str, now_ms: int) -> None: ...


def translate(cfg: ConnectorConfig, topic: str, payload: bytes, received_ms: int,
              states: dict[tuple[str, str], tuple[str, str]] | None = None) -> list[Translated]:
    """The twin's messages for one plant message (telemetry and/or state); Unmapped with the reason if none.
    `states` (machine → last state and reason, kept by the caller) turns a state repeated in every message into
    one state change."""
    for m in cfg.json_:
        hit = m.regex.match(topic)
        if hit is None:
            continue
        station = hit.groupdict().get("station") or m.station
        machine = hit.groupdict().get("machine") or m.machine
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError as e:
            raise Unmapped(f"not JSON ({e})") from None
        if not isinstance(obj, dict):
            raise Unmapped(f"a JSON object was expected, got {type(obj).__name__}")
        bad: list[tuple[int, dict[str, Any]]] = []  # a batch's items of bad quality
        if m.records is None:
            samples: Iterable[tuple[int, Callable[[str], Any], int]] = \
                [(0, partial(_path, obj), _stamp(m.timestamp, obj, received_ms, cfg.line.timezone))]
        else:
            samples = _samples(m, m.records, obj, received_ms, bad, cfg.line.timezone)
        out, seen = [], False
        for i, get, ts in samples:
            try:
                more, found = _sample(cfg, m, str(station), str(machine), get, ts, states)
            except Unmapped as e:
                raise Unmapped(f"{m.records.field}[{i}]: {e}" if m.records else str(e)) from None
            out += more
            seen |= found
        if m.records and bad:  # a bad-quality item goes to the dead-letter topic by itself, the good ones on
            spec = m.records
            out.append(Translated(cfg.topics.deadletter, deadletter_payload(
                topic, orjson.dumps([item for _, item in bad]), f"{len(bad)} item(s) of {spec.field!r} of bad quality "
                f"({spec.field}[{', '.join(str(i) for i, _ in bad[:10])}]: {spec.quality} not in records: good)",
                received_ms)))
            seen = True
        if not seen:
            fields = ", ".join(f.field for f in m.values.values()) or next(
                (x.field for x in (m.state, m.buffer, m.product) if x is not None), "")
            raise Unmapped(f"none of the mapped {'tags' if m.records and m.records.tag else 'fields'} ({fields}) is in "
                           + (f"its list {m.records.field!r}" if m.records else "it"))
        return out
    raise Unmapped(f"no mapping matches topic {topic!r}")


def _sample(cfg: ConnectorConfig, m: JsonMapping, station: str, machine: str, get: Callable[[str], Any], ts: int,
            states: dict[tuple[str, str], tuple[str, str]] | None) -> tuple[list[Translated], bool]:
    """One sample's messages, from the mapping's values and state as `get` finds them (by field path or tag name) at
    `ts`; and whether any mapped field was there (a state repeated gives no message, yet the sample was read)."""
    readings = []
    for sensor, f in m.values.items():
        v = get(f.field)
        if v is not None:
            readings.append((sensor, number(v, f"field {f.field!r} ({sensor})") * f.scale, f.unit))
    state = None
    if m.state is not None:
        raw = get(m.state.field)
        if raw is not None:
            name = map_state(m.state.map, raw, f"field {m.state.field!r}")
            given = get(m.state.reason) if m.state.reason else None
            last = (states or {}).get((station, machine))
            # a gateway that sends its fault text only when it changes: the stop goes on, for the same reason
            same_stop = given is None and last is not None and last[0] == name
            state = (name, last[1] if same_stop and last is not None else str(given or "")[:200])
    out = machine_messages(cfg, station, machine, ts, readings, state, states)
    level = get(m.buffer.field) if m.buffer is not None else None
    if level is not None and m.buffer is not None:
        out.append(buffer_message(cfg, station, ts, level, f"field {m.buffer.field!r} (buffer)"))
    made = get(m.product.field) if m.product is not None else None
    if made is not None and m.product is not None:
        out += product_message(cfg, machine, ts, made, m.product.map, f"field {m.product.field!r} (product)", states)
    return out, bool(readings) or state is not None or level is not None or made is not None


def _samples(m: JsonMapping, spec: Records, obj: dict[str, Any], received_ms: int,
             bad: list[tuple[int, dict[str, Any]]], zone: str) -> list[tuple[int, Callable[[str], Any], int]]:
    """The samples of a batched message, in time order: (item index, lookup, time). An item's own time (the
    mapping's timestamp field in it) comes first, then the message's, then the time it was received. Items of bad
    quality are left out, into `bad` (index, item)."""
    items = _path(obj, spec.field)
    if not isinstance(items, list):
        raise Unmapped(f"field {spec.field!r} is {'missing' if items is None else type(items).__name__}, not a list "
                       "of samples (records: field)")
    if len(items) > spec.max_items:
        raise Unmapped(f"field {spec.field!r} holds {len(items):,} items, more than records: max_items "
                       f"({spec.max_items:,})")
    default = _stamp(m.timestamp, obj, received_ms, zone)
    found: list[tuple[int, int, Callable[[str], Any]]] = []
    tags: dict[int, tuple[int, dict[str, Any]]] = {}  # with tag: time -> (first item, tag name -> value)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise Unmapped(f"{spec.field}[{i}] is {type(item).__name__}, not a JSON object")
        if spec.quality is not None and _path(item, spec.quality) not in spec.good:
            bad.append((i, item))
            continue
        try:
            ts = _stamp(m.timestamp, item, default, zone)
        except Unmapped as e:
            raise Unmapped(f"{spec.field}[{i}]: {e}") from None
        if spec.tag is None:
            found.append((ts, i, partial(_in_item, item, obj)))
            continue
        name = item.get(spec.tag)
        if not isinstance(name, str | int) or isinstance(name, bool):
            raise Unmapped(f"{spec.field}[{i}]: its tag field {spec.tag!r} is {name!r}, not a name")
        tags.setdefault(ts, (i, {}))[1][str(name)] = item.get(spec.value)
    for ts, (i, values) in tags.items():
        found.append((ts, i, values.get))
    return [(i, get, ts) for ts, i, get in sorted(found, key=lambda x: (x[0], x[1]))]


def _in_item(item: dict[str, Any], message: dict[str, Any], field: str) -> Any:
    """A field of a batch's item, else of the message that holds it."""
    v = _path(item, field)
    return _path(message, field) if v is None else v


def number(v: Any, what: str) -> float:
    """A plant value as a finite float; Unmapped naming `what` if it is not one. A number written as text ("41.5", as
    many gateways send their tags) counts: every message of such a gateway was dead-lettered; a boolean is 1 or 0."""
    if isinstance(v, bool):  # a digital signal (a door open, a motor running): 1 or 0, as plant historians keep it
        return float(v)
    if isinstance(v, str) and len(v) <= 64:
        with contextlib.suppress(ValueError):
            v = float(v.strip())
    if not isinstance(v, int | float) or v != v or abs(v) == float("inf"):
        raise Unmapped(f"{what} is {v!r}, not a finite number" + (
            " (a decimal comma: have the gateway send numbers with a decimal point, or as JSON numbers; '1,250' may "
            "also mean 1250, so it is not guessed)" if with_decimal_point(v) else ""))
    return float(v)


def map_state(mapping: dict[str, str], raw: Any, what: str) -> str:
    """The machine state a plant value stands for; Unmapped naming `what` if the mapping has no such value."""
    key = str(int(raw)) if isinstance(raw, float) and raw.is_integer() else str(raw)
    state = mapping.get(key)
    if state is None:
        raise Unmapped(f"state value {raw!r} of {what} is not in the mapping ({', '.join(mapping)})")
    return state


def machine_messages(cfg: ConnectorConfig, station: str, machine: str, ts: int,
                     readings: list[tuple[str, float, str]], state: tuple[str, str] | None,
                     states: dict[tuple[str, str], tuple[str, str]] | None) -> list[Translated]:
    """The twin's telemetry and state messages for one machine at one time, whichever the protocol: readings as
    (sensor, value, unit), state as (state, reason). `ts` is the real instant (epoch ms, UTC), as every protocol gives
    it: the messages carry it on the line's clock, as the twin's own runs do (a Berlin plant's data was stored an hour
    early, its shifts and what-ifs an hour off). `states` (machine → last state and reason, kept by the caller) turns
    a state repeated in every message into one state change."""
    ts = line_clock_ms(ts, cfg.line.timezone)
    out = []
    if readings:
        out.append(Translated(cfg.topics.telemetry(station, machine), telemetry_payload(
            cfg.run, 0, station, machine, {s: u for s, _, u in readings}, [[s, ts, v] for s, v, _ in readings]), ts))
    if state is not None:
        key = (station, machine)
        if states is None or states.get(key) != state:
            if states is not None:
                states[key] = state
            out.append(Translated(cfg.topics.state(station, machine),
                                  state_payload(cfg.run, 0, station, machine, [(state[0], ts, state[1])]), ts))
    return out


def buffer_message(cfg: ConnectorConfig, station: str, ts: int, value: Any, what: str) -> Translated:
    """The twin's buffer-level message for one station's counter at real instant `ts` (epoch ms, UTC), on the line's
    clock as every message; Unmapped naming `what` unless the value is a count of parts."""
    level = number(value, what)
    if level < 0 or level != int(level) or level >= 2**31:
        raise Unmapped(f"{what} is {value!r}, not a number of parts waiting")
    ts = line_clock_ms(ts, cfg.line.timezone)
    return Translated(cfg.topics.buffers, buffers_payload(cfg.run, 0, ts, {station: int(level)}), ts)


_PRODUCT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # a scenario's names (twin.scenario.Name)


def product_message(cfg: ConnectorConfig, machine: str, ts: int, value: Any, mapping: dict[str, str], what: str,
                    seen: dict[tuple[str, str], tuple[str, str]] | None) -> list[Translated]:
    """The twin's message that `machine` is set up for a product from real instant `ts` on (the line's buffers
    message, its `products`), when it changed since the last one `seen` (kept by the caller, under the key ('',
    machine): no station is named ''); Unmapped naming `what` for a value the mapping does not name, or, without a
    mapping, one that is no product name."""
    if isinstance(value, bool | dict | list):  # a flag or a structure is no recipe (str(False) is 'False')
        raise Unmapped(f"product value {value!r} of {what} is no product or recipe number")
    key = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value).strip()
    name = mapping.get(key) if mapping else key
    if name is None:
        raise Unmapped(f"product value {value!r} of {what} is not in the mapping ({', '.join(mapping)})")
    if not _PRODUCT_NAME.match(name):
        raise Unmapped(f"product value {value!r} of {what} is no product name (letters, digits, _ . -): map the "
                       "plant's values to the line's names (product: map)")
    if seen is not None:
        if seen.get(("", machine)) == (name, ""):
            return []
        seen["", machine] = (name, "")
    ts = line_clock_ms(ts, cfg.line.timezone)
    return [Translated(cfg.topics.buffers, buffers_payload(cfg.run, 0, ts, {}, {machine: name}), ts)]


def instant(ms: int, what: str) -> int:
    """A protocol's own timestamp (epoch ms, UTC) checked to be a plant's time, from 1971 to 2200; Unmapped naming
    `what` otherwise (a reading stamped in 2500 was forwarded, and the twin's ingest refused its whole message)."""
    if not _FIRST_YEAR_MS <= ms < _LAST_MS:
        raise Unmapped(f"{what}: timestamp {ms} (epoch ms) is not a plant's time, between 1971 and 2200")
    return ms


def _stamp(spec: Stamp | None, obj: dict[str, Any], received_ms: int, zone: str = "UTC") -> int:
    """The message's time as a real instant (epoch ms, UTC): its timestamp field in the unit given (an ISO time
    without a UTC offset read on the line's clock, in `zone`), else `received_ms`; Unmapped if not a plausible time."""
    if spec is None:
        return received_ms
    raw = _path(obj, spec.field)
    if raw is None:
        return received_ms
    try:
        if spec.unit == "iso":
            from datetime import datetime

            when = datetime.fromisoformat(str(raw))  # without a UTC offset: the plant's local time
            value = ms = float(epoch_ms(when) if when.tzinfo else local_ms(when, zone))
        else:
            value = float(raw)
            ms = value * 1000 if spec.unit == "s" else value
    except (TypeError, ValueError, OverflowError):
        raise Unmapped(f"timestamp field {spec.field!r} is {raw!r}, not a time in {spec.unit}") from None
    if not 0 <= ms < _LAST_MS:  # an ISO time too: one from 1800 was stored before 1970
        hint = "; if the gateway sends milliseconds, write unit: ms" if spec.unit == "s" and ms > 0 else ""
        raise Unmapped(f"timestamp {raw!r} ({spec.unit}) is not between 1970 and 2200{hint}")
    if ms < _FIRST_YEAR_MS:  # epoch seconds read as milliseconds, or a gateway's uptime: stored in 1970, silently
        hint = ("if the gateway sends seconds, write unit: s" if spec.unit == "ms" and value >= 1e8 else
                "no plant's data is from then" if spec.unit == "iso" else
                "the field holds no epoch time (a counter since the gateway started?)")
        raise Unmapped(f"timestamp {raw!r} ({spec.unit}) is in 1970: {hint}")
    return int(ms)
