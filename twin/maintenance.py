"""Maintenance policies: strategy objects the line asks, at every cycle boundary, whether to maintain.

A predictive policy plugs in the same way (or posts orders with `Line.order_maintenance`), so the
decision can come from outside the model: a predictor, an MQTT alert, an operator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from twin.scenario import Maintenance


class Machine(Protocol):
    """What a policy may read of a machine (`twin.model.Machine` has it): the model asks policies, never the reverse."""

    parts_since_service: int
    fail_mode: int  # index of the mode that fails next, -1 for none
    fail_clock: float
    wear_modes: list[int]  # indices of the wear fault modes
    work_rate: float

    def work_time_since_service(self) -> float: ...

    def clock_now(self) -> float: ...

    def clock_at_wear(self, wear: float) -> float: ...


class MaintenancePolicy(Protocol):
    """Decides whether a machine should stop for maintenance now; returns the reason or None."""

    def due(self, machine: Machine) -> str | None: ...


class RunToFailure:
    """Never maintain; repair only after failures."""

    def due(self, machine: Machine) -> str | None:
        return None


class Preventive:
    """Maintain every T hours of operation and/or every N parts since the last service."""

    def __init__(self, every: float | None, every_parts: int | None) -> None:
        self.every, self.every_parts = every, every_parts

    def due(self, machine: Machine) -> str | None:
        if self.every is not None and machine.work_time_since_service() >= self.every:
            return "preventive (operating time)"
        if self.every_parts is not None and machine.parts_since_service >= self.every_parts:
            return "preventive (parts)"
        return None


class ConditionBased:
    """Maintain when the machine's health indicator (its highest wear, 0 = new, 1 = failed) passes a limit."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def due(self, machine: Machine) -> str | None:
        # same as machine.health() >= threshold, without computing every wear at every cycle
        return "condition-based" if machine.clock_now() >= machine.clock_at_wear(self.threshold) else None


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


def policy_from_spec(spec: Maintenance) -> MaintenancePolicy:
    """The policy a machine type's `maintenance:` block describes."""
    if spec.policy == "preventive":
        return Preventive(spec.every, spec.every_parts)
    if spec.policy == "condition-based":
        assert spec.threshold is not None  # the schema requires it
        return ConditionBased(spec.threshold)
    return RunToFailure()
