"""Sparkplug B in: an edge node's births, data and deaths on the plant's broker, decoded by pysparkplug, become the
twin's telemetry and state messages. A birth defines each device's metrics and aliases; data is decoded against it; a
death certificate (NDEATH for the node and all its devices, DDEATH for one device) makes the mapped machines offline; a
gap in an edge node's sequence numbers, or data before its birth, asks it for a rebirth (NCMD `Node Control/Rebirth`)
so that what follows is decoded right.

The config (under `sparkplug:` of a connector config, sensors/connect.py):

    sparkplug:
      group: plant1
      devices:
        - {node: edge-7, device: filler-a, station: filler, machine: filler-a,
           values: {vibration: {metric: Vib, unit: mm/s}}, state: {metric: Status, map: {1: working, 2: down}}}
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sensors.connect import (
    ConnectError,
    ConnectorConfig,
    SpbDevice,
    Translated,
    Unmapped,
    buffer_message,
    instant,
    machine_messages,
    map_state,
    number,
    product_message,
)

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"


class SparkplugReader:
    """Decodes one group's Sparkplug B messages (keeps the births and sequence numbers between them); pure apart from
    the rebirth requests it hands back."""

    def __init__(self, cfg: ConnectorConfig) -> None:
        try:
            import pysparkplug as spb
        except ImportError:
            raise ConnectError("sparkplug: needs pysparkplug, which `make` installs; by hand: pip install --no-deps "
                               "pysparkplug==0.6.1 (it declares paho-mqtt<2 but runs on linetwin's paho 2)") from None

        assert cfg.sparkplug is not None
        self.spb = spb
        self.cfg = cfg
        self.group = cfg.sparkplug.group
        self.devices: dict[tuple[str, str | None], SpbDevice] = {(d.node, d.device): d for d in cfg.sparkplug.devices}
        self.births: dict[tuple[str, str | None], Any] = {}
        self.seq: dict[str, int] = {}
        self.states: dict[tuple[str, str], tuple[str, str]] = {}
        self.reasons: dict[tuple[str, str | None], str] = defaultdict(str)
        self.rebirths: list[tuple[str, bytes]] = []  # (topic, payload) to publish: NCMD rebirth requests

    @property
    def filter(self) -> str:
        return f"{NAMESPACE}/{self.group}/#"

    def handle(self, topic: str, payload: bytes, received_ms: int) -> list[Translated]:
        """The twin's messages for one Sparkplug message; Unmapped with the reason when it cannot be used."""
        spb = self.spb
        try:
            t = spb.Topic.from_str(topic)
        except (ValueError, KeyError) as e:
            raise Unmapped(f"not a Sparkplug B topic ({e})") from None
        kind, node, device = t.message_type, t.edge_node_id, t.device_id
        if t.group_id != self.group or node is None:
            raise Unmapped(f"Sparkplug group {t.group_id!r} is not the configured {self.group!r}")
        if kind in (spb.MessageType.NCMD, spb.MessageType.DCMD, spb.MessageType.STATE):
            return []  # commands (ours included) and host states: nothing to store
        key = (node, device)
        birth = self.births.get(key) if kind in (spb.MessageType.NDATA, spb.MessageType.DDATA) else None
        if kind in (spb.MessageType.NDATA, spb.MessageType.DDATA) and birth is None:
            self._rebirth(node)
            raise Unmapped(f"data from {node}/{device or '(node)'} before its birth certificate: rebirth requested")
        try:
            msg = kind.payload.decode(payload, birth=birth)
        except Exception as e:  # protobuf's DecodeError, an alias not in the birth: the payload is untrusted
            if birth is not None:
                self._rebirth(node)
            raise Unmapped(f"not a valid Sparkplug B {kind.name} payload ({type(e).__name__}: {e})") from None
        if kind == spb.MessageType.NDEATH:
            self.seq.pop(node, None)
            for k in [k for k in self.births if k[0] == node]:
                del self.births[k]
            return self._offline([d for d in self.devices.values() if d.node == node], received_ms)
        if kind == spb.MessageType.DDEATH:
            self.births.pop(key, None)
            return self._offline([d for d in self.devices.values() if (d.node, d.device) == key], received_ms)
        self._check_seq(node, kind, getattr(msg, "seq", None))
        if kind in (spb.MessageType.NBIRTH, spb.MessageType.DBIRTH):
            if kind == spb.MessageType.NBIRTH:  # a node's birth voids its devices' births
                for k in [k for k in self.births if k[0] == node]:
                    del self.births[k]
            self.births[key] = msg
        mapped = self.devices.get(key)
        if mapped is None:
            return []  # a device the config does not map: its birth is kept, its data not wanted
        return self._messages(mapped, msg, received_ms)

    def _messages(self, d: SpbDevice, msg: Any, received_ms: int) -> list[Translated]:
        by_name = {m.name: m for m in msg.metrics if m.name}

        def stamp(m: Any, what: str) -> int:  # a metric's own time, else its payload's, else when it came
            return instant(int(m.timestamp or msg.timestamp or received_ms), what)

        if d.state is not None and d.state.reason and d.state.reason in by_name:
            self.reasons[(d.node, d.device)] = str(by_name[d.state.reason].value or "")[:200]
        stamps: dict[int, list[tuple[str, float, str]]] = defaultdict(list)
        for sensor, spec in d.values.items():
            m = by_name.get(spec.metric)
            if m is None or m.is_null or m.value is None:
                continue
            ts = stamp(m, f"metric {spec.metric!r}")
            stamps[ts].append((sensor, number(m.value, f"metric {spec.metric!r} ({sensor})") * spec.scale, spec.unit))
        state = None
        if d.state is not None and d.state.metric in by_name and by_name[d.state.metric].value is not None:
            m = by_name[d.state.metric]
            state = (stamp(m, f"metric {d.state.metric!r}"),
                     map_state(d.state.map, m.value, f"metric {d.state.metric!r}"))
        out = []
        for ts, readings in sorted(stamps.items()):
            out += machine_messages(self.cfg, d.station, d.machine, ts, readings, None, None)
        if state is not None:
            out += machine_messages(self.cfg, d.station, d.machine, state[0], [],
                                    (state[1], self.reasons[(d.node, d.device)] if state[1] != "working" else ""),
                                    self.states)
        counter = by_name.get(d.buffer.metric) if d.buffer is not None else None
        if counter is not None and not counter.is_null and counter.value is not None and d.buffer is not None:
            what = f"metric {d.buffer.metric!r} (buffer)"
            out.append(buffer_message(self.cfg, d.station, stamp(counter, what), counter.value, what))
        recipe = by_name.get(d.product.metric) if d.product is not None else None
        if recipe is not None and not recipe.is_null and recipe.value is not None and d.product is not None:
            what = f"metric {d.product.metric!r} (product)"
            out += product_message(self.cfg, d.machine, stamp(recipe, what), recipe.value, d.product.map, what,
                                   self.states)
        return out

    def _offline(self, devices: list[SpbDevice], received_ms: int) -> list[Translated]:
        out = []
        for d in devices:
            out += machine_messages(self.cfg, d.station, d.machine, received_ms, [], ("offline", "death certificate"),
                                    self.states)
        return out

    def _check_seq(self, node: str, kind: Any, seq: int | None) -> None:
        if seq is None:
            return
        if kind == self.spb.MessageType.NBIRTH:
            self.seq[node] = seq
            return
        last = self.seq.get(node)
        self.seq[node] = seq
        if last is not None and seq != (last + 1) % 256:
            self._rebirth(node)

    def _rebirth(self, node: str) -> None:
        spb = self.spb
        cmd = spb.NCmd(timestamp=spb.get_current_timestamp(), metrics=(
            spb.Metric(timestamp=spb.get_current_timestamp(), name=REBIRTH, datatype=spb.DataType.BOOLEAN,
                       value=True),))
        self.rebirths.append((f"{NAMESPACE}/{self.group}/NCMD/{node}", cmd.encode(include_dtypes=True)))
