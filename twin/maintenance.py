"""Maintenance policies: strategy objects the line asks, at every cycle boundary, whether to maintain.

A predictive policy plugs in the same way (or posts orders with `Line.order_maintenance`), so the
decision can come from outside the model: a predictor, an MQTT alert, an operator.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from twin.scenario import MachineType


#: the policies a scenario file can name (`maintenance.policy`); their parameters live in the machine types
SCENARIO_POLICIES = ("run-to-failure", "preventive", "condition-based", "inspection", "perfect-monitoring")


class Machine(Protocol):
    """What a policy may read of a machine (`twin.model.Machine` has it): the model asks policies, never the reverse."""

    parts_since_service: int
    fail_mode: int  # index of the mode that fails next, -1 for none
    fail_clock: float
    wear_modes: list[int]  # indices of the wear fault modes
    work_rate: float
    renewals: int  # counts every renewal of a fault mode's life (repair or maintenance)
    born: list[float]  # per fault mode: the reliability-clock reading at which its current life began
    life: list[float]  # per fault mode: the length of its current life on that clock

    def now(self) -> float: ...

    def operating_time(self) -> float: ...

    def work_time_since_service(self) -> float: ...

    def clock_now(self) -> float: ...

    def clock_at_wear(self, wear: float) -> float: ...

    def wear(self, i: int) -> float: ...

    def health(self) -> float: ...


class MaintenancePolicy(Protocol):
    """Decides whether a machine should stop for maintenance now; returns the reason or None."""

    def due(self, machine: Machine) -> str | None: ...


class RunToFailure:
    """Never maintain; repair only after failures."""

    def due(self, machine: Machine) -> str | None:
        return None

    def progress(self, machine: Machine) -> float:
        """How far the machine is on the way to this policy's trigger (0 = just serviced, 1 = due)."""
        return 0.0


class Preventive:
    """Maintain every T hours of operation and/or every N parts since the last service."""

    def __init__(self, every: float | None, every_parts: int | None) -> None:
        self.every, self.every_parts = every, every_parts

    def progress(self, machine: Machine) -> float:
        time = machine.work_time_since_service() / self.every if self.every is not None else 0.0
        parts = machine.parts_since_service / self.every_parts if self.every_parts is not None else 0.0
        return max(time, parts)

    def due(self, machine: Machine) -> str | None:
        if self.every is not None and machine.work_time_since_service() >= self.every:
            return "preventive (operating time)"
        if self.every_parts is not None and machine.parts_since_service >= self.every_parts:
            return "preventive (parts)"
        return None


class _Normals:
    """Standard normal draws from one generator, in blocks."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng, self.buf = rng, []  # type: ignore[var-annotated]

    def __call__(self) -> float:
        if not self.buf:
            self.buf = self.rng.standard_normal(256).tolist()
        return float(self.buf.pop())


class ConditionBased:
    """Maintain when a measured sensor, smoothed by an exponential filter, passes a threshold: what a plant's
    condition monitoring does. The reading at each decision (a cycle boundary) is the sensor's working level plus
    each wear mode's signature times its wear plus the sensor's white noise (its own draws: drift, spikes and lag
    are left out), so the policy sees wear only as well as the sensor shows it."""

    def __init__(self, level: float, effects: list[tuple[int, float, float]], noise: float, threshold: float,
                 time_constant: float, rng: np.random.Generator, interval: float = 0.0) -> None:
        # effects: per wear mode the sensor shows, (mode index, signature, the mode's progression)
        self.level, self.effects, self.noise, self.threshold, self.tau = level, effects, noise, threshold, time_constant
        self.interval = interval  # the monitor's update interval: decisions in between reuse the last value
        self.rising = sum(e for _, e, _ in effects) >= 0  # wear moves the reading up (or down)
        self.normal = _Normals(rng)
        self.value = level
        self.t = -1.0
        self.renewals = -1
        self.verdict: str | None = None

    def due(self, machine: Machine) -> str | None:
        """Maintain when the filtered reading has passed the threshold. The monitor measures when its interval has
        passed since the last measurement (or the machine was renewed: a new part, a new baseline, the filter
        restarts); decisions in between see the last verdict. One function: this runs at every cycle."""
        now = machine.env._now  # machine.now() and machine.clock_now(), inline: this runs at every cycle
        renewals, t = machine.renewals, self.t
        if renewals == self.renewals and now - t < self.interval:
            return self.verdict
        clock = machine.clock + (now - machine.t_last) * machine.rates[machine.state]
        born, life = machine.born, machine.life
        x = self.level
        for i, e, k in self.effects:  # the machine's wear, inline
            age = (clock - born[i]) / life[i]
            if age > 0.0:
                x += e if age >= 1.0 else e * age**k
        if self.noise:
            buf = self.normal.buf
            x += self.noise * (buf.pop() if buf else self.normal())
        if renewals != self.renewals or t < 0:
            value = x
            self.renewals = renewals
        elif self.tau > 0:
            value = self.value + (1.0 - math.exp((t - now) / self.tau)) * (x - self.value)
        else:
            value = x
        self.value, self.t = value, now
        passed = value >= self.threshold if self.rising else value <= self.threshold
        self.verdict = "condition-based" if passed else None
        return self.verdict

    def progress(self, machine: Machine) -> float:
        """The last filtered reading's way from the new machine's level to the threshold (no new measurement)."""
        if machine.renewals != self.renewals:
            return 0.0
        span = self.threshold - self.level
        return (self.value - self.level) / span if span else 1.0


class Inspection:
    """Inspect every so much operating time; an inspection measures the wear with an error (sd), and maintenance
    is ordered when the measurement passes the limit (inspections themselves take no time here)."""

    def __init__(self, every: float, limit: float, error: float, rng: np.random.Generator) -> None:
        self.every, self.limit, self.error = every, limit, error
        self.normal = _Normals(rng)
        self.next = every
        self.measured, self.renewals = 0.0, -1

    def progress(self, machine: Machine) -> float:
        """The last inspection's measured wear over the limit (what the plant knows)."""
        return self.measured / self.limit if machine.renewals == self.renewals else 0.0

    def due(self, machine: Machine) -> str | None:
        t = machine.operating_time()
        if t < self.next:
            return None
        self.next = t + self.every
        self.measured, self.renewals = machine.health() + self.error * self.normal(), machine.renewals
        return "inspection" if self.measured >= self.limit else None


class PerfectMonitoring:
    """Maintain when the hidden true wear passes a limit: perfect, noise-free knowledge of every machine's health
    that no plant has. Like the oracle, an upper bound for comparisons, not a policy a plant can run."""

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def progress(self, machine: Machine) -> float:
        return machine.health() / self.limit

    def due(self, machine: Machine) -> str | None:
        # same as machine.health() >= limit, without computing every wear at every cycle
        return "perfect monitoring" if machine.clock_now() >= machine.clock_at_wear(self.limit) else None


class Oracle:
    """Perfect information (for comparisons only): maintain when the next wear-out failure is `lead` seconds of
    running away. No real policy can beat it; it bounds what forecasting can buy."""

    def __init__(self, lead: float = 600.0) -> None:
        self.lead = lead

    def due(self, machine: Machine) -> str | None:
        if machine.fail_mode in machine.wear_modes and \
                machine.fail_clock - machine.clock_now() <= self.lead * machine.work_rate:
            return "oracle"
        return None


def policy_from_spec(mtype: MachineType, load: float, rng: np.random.Generator) -> MaintenancePolicy:
    """The policy a machine type's `maintenance:` block describes, for a machine running at `load`, drawing its
    measurement noise from `rng`."""
    spec = mtype.maintenance
    if spec.policy == "preventive":
        return Preventive(spec.every, spec.every_parts)
    if spec.policy == "condition-based":
        assert spec.sensor is not None and spec.threshold is not None  # the schema requires them
        sensor = next(s for s in mtype.sensors if s.name == spec.sensor)
        effects = [(i, fm.signature[sensor.name], fm.progression) for i, fm in enumerate(mtype.fault_modes)
                   if fm.kind == "wear" and fm.signature.get(sensor.name)]
        level = sensor.working + sensor.load_gain * (load - mtype.reference_load)
        # the monitor updates its filtered value at the sensor's period, at least 20 times per time constant
        interval = max(sensor.period, spec.filter / 20)
        return ConditionBased(level, effects, sensor.noise, spec.threshold, spec.filter, rng, interval)
    if spec.policy == "inspection":
        assert spec.inspect_every is not None and spec.wear_limit is not None
        return Inspection(spec.inspect_every, spec.wear_limit, spec.measurement_error, rng)
    if spec.policy == "perfect-monitoring":
        assert spec.wear_limit is not None
        return PerfectMonitoring(spec.wear_limit)
    return RunToFailure()
