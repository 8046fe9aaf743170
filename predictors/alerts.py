"""Alert state per machine with hysteresis, shared by offline scoring and live alerting.

An alert is raised when P(failure within the horizon) stays at or above `on` for `confirm` evaluations
in a row, and cleared only when it stays below `off` for `clear_after` evaluations (a machine heading
for failure gives noisy forecasts; a repaired one gives low ones for good); in between it is only updated
when its severity or fault mode changes, and those changes have hysteresis too: a new likeliest mode or a new
severity must hold for `dwell` forecasts in a row (critical falls back to warning only below `critical_off`), and
an alert changes at most once per `dwell` forecasts. So noisy forecasts neither raise nor clear an alert, nor
flip its mode or severity (no flapping).
While the machine is stopped (down, in maintenance, off shift) the alert holds: its sensors say nothing about
wear then, and wear counted in operating time waits for the next shift, so an alert raised just before the
shift ends is still right when the failure comes in the morning. A failure's repair or a maintenance ends the
alert when the machine runs again; if the risk remains, the next forecasts raise a new one. The repair of a
fault the forecasts do not cover (a sudden one, named by the stop's downtime reason) holds the alert instead.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from sensors.bus.payloads import SEVERITIES  # noqa: F401  (re-exported: the alert payload owns the names)
from twin.model import DOWN, MAINTENANCE, OFF_SHIFT, STATES

RUNNING, OFF, SERVICE = "running", "off", "service"  # a machine's status, as the alert rule sees it
_SERVICE = frozenset((STATES[DOWN], STATES[MAINTENANCE]))
_OFF = frozenset((STATES[OFF_SHIFT],))

Transition = Literal["raised", "updated", "cleared"]


@dataclass
class AlertRule:
    """Thresholds of the alert hysteresis and of severity."""

    on: float = 0.5
    off: float = 0.1
    confirm: int = 3
    clear_after: int = 60  # an hour of low forecasts: degradation does not heal, a dip is not a repair
    critical: float = 0.85  # probability at which a raised alert is critical
    critical_off: float = 0.7  # a critical alert falls back to warning only below this
    dwell: int = 15  # forecasts a new mode or severity must hold, and the least between two updates

    def severity(self, p: float) -> str:
        return "critical" if p >= self.critical else "warning"


@dataclass
class MachineStatus:
    """What one machine was doing, from its state changes (any time unit): looked up at each forecast's time.

    RUNNING (idle, starved, blocked and setup included), OFF (off shift: the alert holds) or SERVICE (down
    or in maintenance: the alert holds, and ends when the machine runs again, the failure or maintenance it
    warned of having come). A machine down for a fault the forecasts do not cover (a sudden fault: its
    downtime reason names a mode not in `modes`) counts as OFF: that repair leaves the wear the alert warns of.
    Only the change points between these are kept, a few a day; with no change known a machine counts as running.
    """

    modes: frozenset[str] | None = None  # the fault modes forecast (None: every repair counts as service)
    times: list[float] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    reason: list[str] = field(default_factory=list)  # of a SERVICE change: the fault mode repaired, or ''

    def add(self, t: float, state: str, reason: str = "") -> None:
        """Record a state change at time t, with its downtime reason (the fault mode repaired, or '');
        changes may come out of order."""
        i = bisect_right(self.times, t)
        status = status_of(state)
        reason = reason if status == SERVICE else ""
        if i and (self.status[i - 1], self.reason[i - 1]) == (status, reason):
            return  # no change of status
        self.times.insert(i, t)
        self.status.insert(i, status)
        self.reason.insert(i, reason)
        if i + 1 < len(self.times) and (self.status[i + 1], self.reason[i + 1]) == (status, reason):
            del self.times[i + 1], self.status[i + 1], self.reason[i + 1]  # a later change is no change now

    @classmethod
    def of_changes(cls, t: np.ndarray, state: np.ndarray, reason: np.ndarray,
                   modes: frozenset[str] | None = None) -> MachineStatus:
        """The status from many state changes at once, as `add`-ing them in time order would make it: a store's
        day of a busy line holds hundreds of thousands of changes (idle, starved, blocked) and a few statuses."""
        order = np.argsort(np.asarray(t, dtype=float), kind="stable")
        t = np.asarray(t, dtype=float)[order]
        state = np.asarray(state, dtype=object)[order]
        status = np.where(np.isin(state, list(_SERVICE)), SERVICE, np.where(np.isin(state, list(_OFF)), OFF, RUNNING))
        service = status == SERVICE
        why = np.full(len(t), "", dtype=object)
        why[service] = [r if isinstance(r, str) else "" for r in np.asarray(reason, dtype=object)[order][service]]
        keep = np.ones(len(t), dtype=bool)
        keep[1:] = (status[1:] != status[:-1]) | (why[1:] != why[:-1])
        return cls(modes, t[keep].tolist(), status[keep].tolist(), why[keep].tolist())

    def _resolved(self, k: int) -> str:
        if k < 0:
            return RUNNING
        if self.reason[k] and self.modes is not None and self.reason[k] not in self.modes:
            return OFF  # a repair that leaves the forecast wear as it was
        return self.status[k]

    def at(self, t: float) -> str:
        """The machine's status at time t."""
        return self._resolved(bisect_right(self.times, t) - 1)

    def ran_throughout(self, a: float, b: float) -> bool:
        """Whether the machine was running all the time from a to b (no stop began or lasted in between)."""
        first = max(bisect_right(self.times, a) - 1, 0)  # the status at a, and every change until b
        return all(self._resolved(k) == RUNNING for k in range(first, bisect_left(self.times, b)))

    def many(self, t: np.ndarray) -> np.ndarray:
        """The machine's status at each of the times t."""
        i = np.searchsorted(np.asarray(self.times, dtype=float), t, side="right") - 1
        resolved = [self._resolved(k) for k in range(len(self.times))]
        return np.asarray([*resolved, RUNNING], dtype=object)[i]  # index -1: before any change

    def ran_many(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """`ran_throughout(a, b)` for many intervals at once."""
        times = np.asarray(self.times, dtype=float)
        stopped = np.array([self._resolved(k) != RUNNING for k in range(len(times))], dtype=np.int64)
        before = np.concatenate([[0], np.cumsum(stopped)])  # stops among the first k changes
        first = np.maximum(np.searchsorted(times, a, side="right") - 1, 0)
        last = np.searchsorted(times, b, side="left")
        return before[np.maximum(last, first)] - before[first] == 0


def status_of(state: str) -> str:
    """RUNNING, OFF or SERVICE for a machine state name."""
    return SERVICE if state in _SERVICE else OFF if state in _OFF else RUNNING


@dataclass
class AlertState:
    """One machine's alert: whether it is active, since when, and the streaks that move it."""

    rule: AlertRule = field(default_factory=AlertRule)
    active: bool = False
    since: float = 0.0
    severity: str = "info"
    mode: str = ""
    _above: int = 0
    _below: int = 0
    _serviced: bool = False  # repaired or maintained since the forecasts last said the risk remains
    _quiet: int = 0  # forecasts since the alert last changed (raised or updated)
    _next: tuple[str, str] = ("", "")  # the (severity, mode) the forecasts point to, and for how long
    _held: int = 0

    def update(self, t: float, p: float, mode: str, status: str = RUNNING) -> Transition | None:
        """Feed one forecast (time, P(any failure within horizon), likeliest mode, the machine's status);
        returns the transition. A stopped machine's forecast changes nothing. After a repair or maintenance
        `confirm` low forecasts clear the alert (the failure it warned of has come, or been prevented),
        unless the forecasts first say the risk remains."""
        if status != RUNNING:
            self._serviced = self._serviced or (status == SERVICE and self.active)
            return None
        r = self.rule
        self._above = self._above + 1 if p >= r.on else 0
        self._below = self._below + 1 if p < r.off else 0
        if not self.active:
            if self._above >= r.confirm:
                self.active, self.since, self.severity, self.mode = True, t, r.severity(p), mode
                self._quiet, self._next, self._held = 0, (self.severity, mode), 0
                return "raised"
            return None
        if self._serviced and self._above >= r.confirm:
            self._serviced = False
        if self._below >= (r.confirm if self._serviced else r.clear_after):
            self.active, self.severity, self._serviced = False, "info", False
            return "cleared"
        self._quiet += 1
        if self.severity == "critical":
            sev = "warning" if p < r.critical_off else "critical"
        else:
            sev = "critical" if p >= r.critical else self.severity
        want = (sev, mode if p >= r.on else self.mode)
        self._held = self._held + 1 if want == self._next else 1
        self._next = want
        if want != (self.severity, self.mode) and self._held >= r.dwell and self._quiet >= r.dwell:
            self.severity, self.mode = want
            self._quiet = 0
            return "updated"
        return None


def episodes(times: list[float] | tuple[float, ...], p: list[float], modes: list[str],
             rule: AlertRule, status: list[str] | None = None) -> list[tuple[float, float | None, str]]:
    """(raised at, cleared at or None, fault mode when raised) of every alert over one unit's forecasts."""
    state, out = AlertState(rule), []
    for t, pi, m, st in zip(times, p, modes, status if status is not None else [RUNNING] * len(times)):
        tr = state.update(t, pi, m, st)
        if tr == "raised":
            out.append((t, None, m))
        elif tr == "cleared":
            out[-1] = (out[-1][0], t, out[-1][2])
    return out
