"""Alert state per machine with hysteresis, shared by offline scoring and live alerting.

An alert is raised when P(failure within the horizon) stays at or above `on` for `confirm` evaluations
in a row, and cleared only when it stays below `off` for `clear_after` evaluations (a machine heading
for failure gives noisy forecasts; a repaired one gives low ones for good); in between it is only updated
when its severity or fault mode changes. So noisy forecasts neither raise nor clear an alert (no flapping).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from twin.bus.payloads import SEVERITIES  # noqa: F401  (re-exported: the alert payload owns the names)

Transition = Literal["raised", "updated", "cleared"]


@dataclass
class AlertRule:
    """Thresholds of the alert hysteresis and of severity."""

    on: float = 0.5
    off: float = 0.1
    confirm: int = 3
    clear_after: int = 60  # an hour of low forecasts: degradation does not heal, a dip is not a repair
    critical: float = 0.85  # probability at which a raised alert is critical

    def severity(self, p: float) -> str:
        return "critical" if p >= self.critical else "warning"


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

    def update(self, t: float, p: float, mode: str) -> Transition | None:
        """Feed one forecast (time, P(any failure within horizon), likeliest mode); returns the transition."""
        r = self.rule
        self._above = self._above + 1 if p >= r.on else 0
        self._below = self._below + 1 if p < r.off else 0
        if not self.active:
            if self._above >= r.confirm:
                self.active, self.since, self.severity, self.mode = True, t, r.severity(p), mode
                return "raised"
            return None
        if self._below >= r.clear_after:
            self.active, self.severity = False, "info"
            return "cleared"
        sev = r.severity(p) if p >= r.off else self.severity
        if sev != self.severity or (mode != self.mode and p >= r.on):
            self.severity, self.mode = sev, mode
            return "updated"
        return None


def episodes(times: list[float] | tuple[float, ...], p: list[float], modes: list[str],
             rule: AlertRule) -> list[tuple[float, float | None, str]]:
    """(raised at, cleared at or None, fault mode when raised) of every alert over one unit's forecasts."""
    state, out = AlertState(rule), []
    for t, pi, m in zip(times, p, modes):
        tr = state.update(t, pi, m)
        if tr == "raised":
            out.append((t, None, m))
        elif tr == "cleared":
            out[-1] = (out[-1][0], t, out[-1][2])
    return out
