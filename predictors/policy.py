"""The predictive maintenance policy: a raised fault alert becomes a maintenance order for that machine.

The decision interface is the twin's (`MaintenancePolicy.due`, asked at every cycle boundary, so crews
and maintenance durations apply as for any policy). Where the alerts come from differs:
- `SimulatedForecasts`: inside a simulation, from the line's own sensor readings, binned and forecast
  exactly as live (fast, as-fast-as-possible replications);
- `AlertOrders`: live, from the alerts a forecaster publishes over MQTT.
One order per alert episode: a machine is ordered again only after its alert has cleared.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import paho.mqtt.client as mqtt

from predictors.alerts import AlertRule
from predictors.base import Bundle
from predictors.online import MachineFeed, forecast_due
from sensors.bus.broker import BrokerURL, connect, make_client, subscribe_confirmed
from sensors.bus.payloads import ParseError, alert_filter, parse_alert, signed_by

if TYPE_CHECKING:
    from sensors.bank import Readings
    from twin.model import Line, Machine


@dataclass
class Order:
    """A maintenance order from an alert: why, and by when it must be served (simulated seconds)."""

    reason: str
    placed: float = 0.0
    latest: float = float("inf")  # serve by then even if deferring: the forecast's pessimistic RUL, less a margin


class Orders:
    """Maintenance orders waiting for their machine's next cycle boundary."""

    def __init__(self) -> None:
        self._pending: dict[str, Order] = {}
        self._lock = threading.Lock()
        self.placed = 0

    def place(self, machine: str, reason: str, placed: float = 0.0, latest: float = float("inf")) -> None:
        with self._lock:
            if machine not in self._pending:
                self.placed += 1
            self._pending[machine] = Order(reason, placed, latest)

    def peek(self, machine: str) -> Order | None:
        if not self._pending:  # the common case, without the lock
            return None
        with self._lock:
            return self._pending.get(machine)

    def take(self, machine: str) -> Order | None:
        with self._lock:
            return self._pending.pop(machine, None)


class Predictive:
    """The machine's policy: maintain when an order is waiting for it (an alert was raised).

    With `defer="buffer"` an order waits until the buffer after the machine holds enough parts to keep the
    next station busy for a mean maintenance duration (so the stop costs no output), but never past the
    order's latest time (the forecast's pessimistic RUL less twice that duration).
    """

    def __init__(self, orders: Orders, defer: str = "none") -> None:
        if defer not in ("none", "buffer"):
            raise ValueError(f"defer {defer!r}: choose none or buffer")
        self.orders, self.defer = orders, defer

    def due(self, machine: Machine) -> str | None:
        order = self.orders.peek(machine.name)
        if order is None:
            return None
        if self.defer == "buffer" and machine.env.now < order.latest and not _buffer_covers(machine):
            return None
        self.orders.take(machine.name)
        return order.reason + (" (deferred until the buffer could cover the stop)"
                               if self.defer == "buffer" and machine.env.now > order.placed else "")


def _buffer_covers(machine: Machine) -> bool:
    """Whether the parts waiting after this machine keep the next station working through a maintenance stop."""
    buf = machine.wiring.outbuf
    if buf is None:
        return True  # the last station, or one whose router spreads the parts: nothing one buffer can tell
    sc = machine.line.scenario
    # the station after it: in a graph line its one successor (a station with several has a router, no outbuf)
    nxt = sc.stations[sc.successors(machine.station_idx)[0][0] if sc.is_graph else machine.station_idx + 1]
    per_cycle = (nxt.assemble or {}).get(machine.station.name, 1)  # an assembly takes this many of these a cycle
    rate = sum(1 / nxt.cycle_for(m).mean for m in nxt.machine_names)  # the next station's parts a second
    need = per_cycle * machine.mtype.maintenance.duration.mean * rate
    return len(buf.items) >= min(need, buf.capacity * 0.8)


class SimulatedForecasts:
    """Forecasts from a simulation's own readings (pass `on_readings` and `policy_for` to `simulate`)."""

    def __init__(self, bundle: Bundle, rule: AlertRule | None = None, defer: str = "none") -> None:
        self.bundle, self.rule, self.defer = bundle, rule or AlertRule(), defer
        self.orders = Orders()
        self.feeds: list[MachineFeed | None] = []
        self._series: tuple[np.ndarray, np.ndarray] | None = None
        self._maint: dict[str, float] = {}
        self._logs: list[tuple[MachineFeed, Machine, list[int]]] = []  # feed, machine, log cursor
        self.forecasts = 0
        self.alerts = 0

    def policy_for(self, machine: Machine) -> Predictive:
        return Predictive(self.orders, self.defer)

    def _wire(self, line: Line) -> None:
        from sensors.bank import sensor_catalog

        cat = sensor_catalog(line).reset_index(drop=True)
        machines = list(dict.fromkeys(cat.machine))
        groups = {m.name: m.station.machine_type for m in line.machines}
        self._maint = {m.name: m.mtype.maintenance.duration.mean for m in line.machines}
        self.feeds = []
        for name in machines:
            group = groups[name]
            self.feeds.append(MachineFeed.for_model(("sim", line.replication, name), group,
                                                    self.bundle[group]["model"], name, self.rule)
                              if group in self.bundle else None)
        by_name = {m.name: m for m in line.machines}
        self._logs = [(f, by_name[name], [0]) for f, name in zip(self.feeds, machines) if f is not None]
        machine_idx = cat.machine.map({m: i for i, m in enumerate(machines)}).to_numpy()
        feature = np.array([-1 if self.feeds[i] is None else self.feeds[i].index.get(s, -1)  # type: ignore[union-attr]
                            for i, s in zip(machine_idx, cat.sensor)], dtype=np.int64)
        self._series = (machine_idx, feature)

    def on_readings(self, line: Line, batch: Readings) -> None:
        if self._series is None:
            self._wire(line)
        assert self._series is not None
        machine_idx, feature = self._series
        if not len(batch):
            return
        owner = machine_idx[batch.series]
        order = np.argsort(owner, kind="stable")
        bounds = np.searchsorted(owner[order], np.arange(len(self.feeds) + 1))
        ts = np.rint(batch.t * 1000).astype(np.int64)
        for i, feed in enumerate(self.feeds):
            if feed is None or bounds[i] == bounds[i + 1]:
                continue
            idx = order[bounds[i]:bounds[i + 1]]
            feed.add_indexed(feature[batch.series[idx]], ts[idx], batch.value[idx], feed.step_ms)
        for feed, machine, cursor in self._logs:  # states as the bus would carry them, in ms like the readings
            t, states, reasons = machine.log.states_from(cursor[0])
            cursor[0] += len(t)
            for ti, state, reason in zip(t, states, reasons):
                feed.status.add(ti * 1000, state, reason)
        for f, fc, k, t, _ in forecast_due([f for f in self.feeds if f is not None]):
            self.forecasts += 1
            p, mode = float(fc.p_alert[k]), str(fc.alert_mode[k])
            if f.state.update(t, p, mode, f.status.at(t + f.step_ms)) == "raised":
                self.alerts += 1
                now = t / 1000 + f.step_ms / 1000  # the forecast was made when its minute ended
                self.orders.place(f.key[2], f"predictive: P={p:.2f} {mode}, RUL {fc.rul[k] / 3600:.1f} h",
                                  now, now + max(0.0, float(fc.low[k]) - 2 * self._maint[f.key[2]]))


class AlertOrders:
    """Live: subscribes to a line's alerts over MQTT and turns each newly raised alert into an order.

    Retained alerts (the state before this subscriber came) are not orders: only alerts raised while it
    listens are; with `run_id`, only those of that run; and only alerts signed with `key` (a fresh random key
    per run unless given: the run's forecaster signs with it, any other client of the broker cannot). The rest are
    counted in `ignored`.
    """

    def __init__(self, prefix: str, run_id: str | None = None, key: bytes | None = None) -> None:
        self.prefix, self.run_id = prefix, run_id
        self.key = key or secrets.token_bytes(32)
        self.orders = Orders()
        self.client: Any = None
        self.received = 0
        self.ignored = 0

    def policy_for(self, machine: Machine) -> Predictive:
        return Predictive(self.orders)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if msg.retain:
            return
        try:
            alert = parse_alert(msg.payload)
        except ParseError:
            return
        self.received += 1
        if not signed_by(alert, self.key) or (self.run_id is not None and alert.get("run") != self.run_id):
            self.ignored += 1
            return
        if alert["state"] == "raised":
            self.orders.place(alert["machine"], f"predictive (MQTT alert): P={alert['probability']:.2f} "
                              f"{alert.get('fault_mode', '')}")  # live: served at once

    def start(self, url: BrokerURL, protocol: int | None = None) -> AlertOrders:
        self.client = make_client(url, f"linetwin-orders-{uuid.uuid4().hex[:8]}",
                                  protocol=protocol if protocol is not None else mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(alert_filter(self.prefix), 1)
        connect(self.client, url)
        subscribe_confirmed(self.client, url, [(alert_filter(self.prefix), 1)])  # no alert published after is missed
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
