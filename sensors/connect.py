"""Plant data in, with no code: a connector config maps a plant's own MQTT JSON messages (any topic tree, any field
names) onto the line's stations, machines and sensors, and republishes them as the twin's telemetry and state
messages on the line's topic tree, so the ingest, the forecasters, alerts and the dashboard work unchanged on real
machines. A message no mapping matches, or one that is not what its mapping says, goes to the line's dead-letter
topic with the reason: nothing is dropped silently. (OPC UA and Sparkplug B sources are issue 23's next steps.)

    line: {site: plant-hamburg, area: hall-2, name: bottling-1}
    source: mqtt://gateway.plant:1883          # the plant's broker (credentials as for --broker)
    run: plant                                 # the run id the data is stored under
    subscribe: ["factory/#"]                   # what to listen on (default: the mappings' topics)
    json:
      - topic: "factory/{station}/{machine}/data"      # {name} matches one topic level
        timestamp: {field: ts, unit: ms}               # epoch s or ms, or iso; absent field: the time received
        values:
          vibration: {field: vib, unit: mm/s}
          bearing_temp: {field: temps.bearing, unit: degC}   # a dotted path into nested objects
        state: {field: status, map: {1: working, 2: down, 3: starved}, reason: fault}
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sensors.bus.broker import BrokerURL, connect, make_client
from sensors.bus.payloads import (
    LineTopics,
    deadletter_payload,
    state_payload,
    telemetry_payload,
)
from twin.scenario import LineId, Name, load_model

_LEVEL = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConnectError(ValueError):
    """A connector config that cannot be used: the message names the file, line, field and fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Signal(_Strict):
    """One sensor's value in the message, and its unit."""

    field: str = Field(min_length=1, max_length=200, description="dotted path into the JSON object")
    unit: str = Field("", max_length=16)


class Stamp(_Strict):
    field: str = Field(min_length=1, max_length=200)
    unit: Literal["ms", "s", "iso"] = "ms"


class StateField(_Strict):
    field: str = Field(min_length=1, max_length=200)
    map: dict[str, Literal["working", "starved", "blocked", "down", "maintenance", "setup", "off_shift",
                           "waiting_operator"]] = Field(min_length=1, description="plant value → machine state")
    reason: str | None = Field(None, max_length=200, description="field with the downtime reason (fault mode)")

    @field_validator("map", mode="before")
    @classmethod
    def _keys_as_text(cls, v: Any) -> Any:
        return {str(k): s for k, s in v.items()} if isinstance(v, dict) else v


class JsonMapping(_Strict):
    """Messages on `topic` (with {station} and {machine} levels, or fixed names) → one machine's readings."""

    topic: str = Field(min_length=1, max_length=300)
    station: Name | None = None
    machine: Name | None = None
    timestamp: Stamp | None = None
    values: dict[Name, Signal] = Field(default_factory=dict)
    state: StateField | None = None

    @field_validator("topic")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if "#" in v or "+" in v:
            raise ValueError("write {name} for a topic level that varies, not MQTT's + or #")
        return v

    @model_validator(mode="after")
    def _names(self) -> JsonMapping:
        names = set(_LEVEL.findall(self.topic))
        for need in ("station", "machine"):
            if need not in names and getattr(self, need) is None:
                raise ValueError(f"topic {self.topic!r} has no {{{need}}} level: give {need}: NAME")
        if not self.values and self.state is None:
            raise ValueError("map at least one value (values:) or the machine state (state:)")
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


class ConnectorConfig(_Strict):
    """Where plant data comes from and how it maps onto the line."""

    line: LineId
    source: str = Field(min_length=1, description="the plant's MQTT broker URL")
    target: str | None = Field(None, description="the twin's broker (default: the source)")
    run: Name = Field("plant", description="the run id the plant's data is stored under")
    scenario: str | None = Field(None, max_length=500, description="the line as engineered (a scenario file, relative "
                                 "to this config): the dashboard draws the plant's line from it")
    subscribe: list[str] = Field(default_factory=list, max_length=100, description="topic filters to listen on "
                                 "(default: the mappings' own); a message there no mapping matches is dead-lettered")
    json_: list[JsonMapping] = Field(alias="json", min_length=1)

    @property
    def filters(self) -> list[str]:
        return self.subscribe or [m.filter for m in self.json_]


def load_config(path: Path) -> ConnectorConfig:
    """Read and check a connector config; ConnectError naming the file, line and field."""
    return load_model(path, ConnectorConfig, "connector config", ConnectError)


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


def translate(cfg: ConnectorConfig, topic: str, payload: bytes, received_ms: int,
              states: dict[tuple[str, str], tuple[str, str]] | None = None) -> list[Translated]:
    """The twin's messages for one plant message (telemetry and/or state); Unmapped with the reason if none.
    `states` (machine → last state and reason, kept by the caller) turns a state repeated in every message into
    one state change."""
    lt = LineTopics(cfg.line.site, cfg.line.area, cfg.line.name)
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
        ts = _stamp(m.timestamp, obj, received_ms)
        out = []
        readings, units = [], {}
        for sensor, f in m.values.items():
            v = _path(obj, f.field)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or v != v or abs(v) == float("inf"):
                raise Unmapped(f"field {f.field!r} ({sensor}) is {v!r}, not a finite number")
            readings.append([sensor, ts, float(v)])
            units[sensor] = f.unit
        if readings:
            out.append(Translated(lt.telemetry(str(station), str(machine)),
                                  telemetry_payload(cfg.run, 0, str(station), str(machine), units, readings)))
        if m.state is not None:
            raw = _path(obj, m.state.field)
            if raw is not None:
                state = m.state.map.get(str(raw))
                if state is None:
                    raise Unmapped(f"state value {raw!r} of field {m.state.field!r} is not in the mapping "
                                   f"({', '.join(m.state.map)})")
                reason = str(_path(obj, m.state.reason) or "")[:200] if m.state.reason else ""
                key = (str(station), str(machine))
                if states is not None and states.get(key) == (state, reason):
                    return out  # the same state again: nothing changed
                if states is not None:
                    states[key] = (state, reason)
                out.append(Translated(lt.state(str(station), str(machine)),
                                      state_payload(cfg.run, 0, str(station), str(machine), [(state, ts, reason)])))
        if not out:
            raise Unmapped(f"none of the mapped fields ({', '.join(f.field for f in m.values.values())}) is in it")
        return out
    raise Unmapped(f"no mapping matches topic {topic!r}")


def _stamp(spec: Stamp | None, obj: dict[str, Any], received_ms: int) -> int:
    if spec is None:
        return received_ms
    raw = _path(obj, spec.field)
    if raw is None:
        return received_ms
    try:
        if spec.unit == "iso":
            from datetime import UTC, datetime

            d = datetime.fromisoformat(str(raw))
            return int((d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp() * 1000)
        value = float(raw)
    except (TypeError, ValueError):
        raise Unmapped(f"timestamp field {spec.field!r} is {raw!r}, not a time in {spec.unit}") from None
    ms = value * 1000 if spec.unit == "s" else value
    if not 0 <= ms < 7.3e12:  # 1970 to 2200
        raise Unmapped(f"timestamp {raw!r} ({spec.unit}) is not between 1970 and 2200")
    return int(ms)


class Connector:
    """Subscribes to the plant's broker, republishes translated messages on the twin's, dead-letters the rest."""

    def __init__(self, cfg: ConnectorConfig) -> None:
        self.cfg = cfg
        self.source = BrokerURL.parse(cfg.source)
        self.target = BrokerURL.parse(cfg.target) if cfg.target else self.source
        self.topics = LineTopics(cfg.line.site, cfg.line.area, cfg.line.name)
        tag = uuid.uuid4().hex[:8]
        self.sub = make_client(self.source, f"linetwin-connect-in-{tag}")
        self.pub = self.sub if self.target == self.source else make_client(self.target, f"linetwin-connect-{tag}")
        self.forwarded = self.dead = 0
        self._states: dict[tuple[str, str], tuple[str, str]] = {}
        self._lock = threading.Lock()

    def start(self) -> Connector:
        def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:  # again after every reconnect
            c.subscribe([(f, 1) for f in self.cfg.filters])

        self.sub.on_message = self._on_message
        if self.pub is not self.sub:
            connect(self.pub, self.target)
        connect(self.sub, self.source)
        self.sub.on_connect = on_connect
        on_connect(self.sub, None, None, None, None)
        return self

    def _on_message(self, c: Any, u: Any, msg: Any) -> None:
        if msg.topic.startswith(self.topics.prefix + "/"):
            return  # the twin's own topic tree (a wide subscription on a shared broker): ours, not the plant's
        now = int(time.time() * 1000)
        try:
            out = translate(self.cfg, msg.topic, msg.payload, now, self._states)
        except Unmapped as e:
            self.pub.publish(f"{self.topics.prefix}/deadletter", deadletter_payload(msg.topic, msg.payload, str(e),
                                                                                    now), qos=1)
            with self._lock:
                self.dead += 1
            return
        for t in out:
            self.pub.publish(t.topic, t.payload, qos=1, retain=t.topic.endswith("/state"))
        with self._lock:
            self.forwarded += 1

    def stop(self) -> None:
        for client in {id(self.sub): self.sub, id(self.pub): self.pub}.values():
            client.loop_stop()
            client.disconnect()
