"""The scenario file: one YAML document describing a production line, validated strictly.

`load_scenario(path)` is the one entry point. Every user mistake becomes a `ScenarioError` whose
message names the file, line, field path, what was wrong and what is allowed, e.g.
`bottling.yaml:14 stations[1].cycle_time.mean: must be > 0, got -3`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from twin import MAX_SEED, TIME_RANGE
from twin.distributions import (
    DIST_TAGS,
    Constant,
    Distribution,
    NonNegDuration,
    PositiveDuration,
    duration,
    parse_duration,
)
from twin.tables import with_decimal_point

M = TypeVar("M", bound=BaseModel)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # a name that is one MQTT topic level (no '/', '+' or '#')
Name = Annotated[
    str,
    Field(pattern=NAME_PATTERN, max_length=64,
          description="letters, digits, '_', '.', '-' (it becomes an MQTT topic level)"),
]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Money = Annotated[float, Field(ge=0, allow_inf_nan=False)]
SamplingPeriod = duration(ge=0.01)
Horizon = duration(gt=0, le=10 * 365 * 86400)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


class LineId(_Strict):
    """Where the line sits in the plant; these become the first MQTT topic levels."""

    site: Name
    area: Name
    name: Name
    timezone: str = Field("UTC", max_length=64, description="IANA time zone of the line's clock (`start` and every "
                          "timestamp are its local time), e.g. Europe/Berlin; shown on the dashboard")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(v)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise ValueError(f"unknown time zone {v!r}: write an IANA name such as Europe/Berlin or UTC") from None
        return v


class Source(_Strict):
    """Raw material entering the first station: always available, or arriving at random."""

    kind: Literal["saturated", "arrivals"] = "saturated"
    interarrival: Distribution | None = Field(None, description="time between arrivals (kind: arrivals)")
    when_full: Literal["block", "drop"] = Field(
        "block", description="an arrival finding the first buffer full waits (block) or is lost (drop)")
    by_station: dict[Name, Distribution] = Field(
        default_factory=dict, description="a line fed at several stations: an entry station's own time between "
                                          "arrivals, e.g. {shafts: {dist: exponential, mean: 30 s}}; the others "
                                          "take interarrival")

    @model_validator(mode="after")
    def _needs_interarrival(self) -> Source:
        for name, d in self.by_station.items():
            if d.mean < 0.001:
                raise ValueError(f"by_station.{name}: the mean time between arrivals must be at least 1 ms")
        if self.by_station and self.kind != "arrivals":
            raise ValueError("by_station gives times between arrivals: it needs kind 'arrivals'")
        if self.interarrival is not None and self.interarrival.mean < 0.001:
            raise ValueError("interarrival: the mean time between arrivals must be at least 1 ms")
        if self.kind == "arrivals" and self.interarrival is None:
            raise ValueError("kind 'arrivals' needs an 'interarrival' distribution, "
                             "e.g. {dist: exponential, mean: 75 s}")
        return self


class RepairCrew(_Strict):
    """A team of technicians; repairs take precedence over planned maintenance. With a `calendar`, they are at the
    plant only on its shifts: outside them a repair waits for the next (or, with `on_call`, for a technician called
    in), and a planned service is held, the machine working on, until they are back."""

    name: Name
    size: int = Field(ge=1, le=1000)
    calendar: Calendar | None = Field(None, description="when the technicians are at the plant (shifts, days, "
                                      "holidays); none: around the clock")
    on_call: PositiveDuration | None = Field(None, description="off its shifts: a technician on call is at the "
                                             "machine this long after a failure; none: repairs wait for its next")

    def there(self) -> str:
        """When its technicians are at the plant, in words: 'around the clock' or its hours a week."""
        return "around the clock" if self.calendar is None else f"{self.calendar.week_hours():.4g} h a week"

    @model_validator(mode="after")
    def _on_call_needs_hours(self) -> RepairCrew:
        if self.on_call is not None and self.calendar is None:
            raise ValueError("on_call is the time a technician takes to come in off the crew's shifts, but the crew "
                             "has no calendar (it is there around the clock); give it calendar: {shifts: [...]}, or "
                             "leave on_call out")
        return self


class Spare(_Strict):
    """A spare part kept in stock for repairs (a die set, a spindle, a gearbox): a repair of a fault mode that needs
    it takes one, waiting, down, while none is on hand; stock is reordered (s, Q): when what is on hand and on order,
    less the repairs waiting, falls to `reorder_at`, `order` more are ordered, delivered after `lead_time`."""

    name: Name
    stock: int = Field(ge=0, le=100_000, description="parts on hand at the start")
    reorder_at: int | None = Field(None, ge=0, le=100_000, description="order when on hand + on order - waiting "
                                   "falls to this; default: stock - 1 (one ordered for each one taken)")
    order: int = Field(1, ge=1, le=100_000, description="parts per order")
    lead_time: Distribution = Field(description="time from an order to its delivery, e.g. 3 d or a distribution")

    @property
    def reorder_point(self) -> int:
        """When to order: `reorder_at`, or one for one (an order for each part taken)."""
        return self.reorder_at if self.reorder_at is not None else max(self.stock - 1, 0)


def _at_least(dist: Any, minimum: float, rule: str, why: str) -> Any:
    """A distribution whose mean is at least `minimum` seconds, else a ValueError stating the rule and why."""
    if dist.mean < minimum:
        raise ValueError(f"{rule}, got {dist.mean:g} s ({why})")
    return dist


class FaultMode(_Strict):
    """One way a machine fails: a wear mode (degrades, shows on sensors) or a sudden one (no warning).

    A wear mode draws its life (`ttf`) at each renewal; its wear is (age / life) ** progression, so it
    reaches 1 exactly at failure and the hazard rises with wear (use a Weibull with shape > 1).
    """

    name: Name
    kind: Literal["wear", "sudden"] = "wear"
    ttf: Distribution = Field(description="time to failure, on the machine's reliability clock (mean >= 1 s)")
    repair: Distribution = Field(description="repair time once a technician is there (MTTR)")
    progression: float = Field(2.0, gt=0, le=20, description="wear = (age/life) ** progression")
    scrap_increase: Probability = Field(0.0, description="scrap probability added at full wear")
    signature: dict[Name, float] = Field(
        default_factory=dict, description="sensor -> offset added at full wear (in the sensor's unit)")
    spare: Name | None = Field(None, description="a spare part (of the scenario's spares) each repair of this mode "
                                                 "takes from stock, waiting while none is on hand")
    repair_crew: Name | None = Field(None, description="the crew that repairs this mode (an electrician's drive "
                                     "fault, a toolmaker's die): default the machine type's repair_crew")

    @field_validator("ttf")
    @classmethod
    def _takes_time(cls, v: Any) -> Any:
        return _at_least(v, 1.0, "the mean time to failure must be at least 1 s", "a machine that fails at once would "
                         "loop through failures and repairs without simulated time passing")


class SensorFaults(_Strict):
    """Faults of the sensor itself, independent of the machine: rates per hour of sampling."""

    spike_rate: float = Field(0.0, ge=0, le=3600, description="spikes per hour")
    spike_size: float = Field(0.0, description="added to the value during a spike")
    stuck_rate: float = Field(0.0, ge=0, le=3600, description="stuck episodes per hour")
    stuck_for: NonNegDuration = Field(60.0, description="mean length of a stuck episode")
    dropout_rate: float = Field(0.0, ge=0, le=3600, description="dropout episodes per hour (readings missing)")
    dropout_for: NonNegDuration = Field(30.0, description="mean length of a dropout")


class Sensor(_Strict):
    """A synthetic sensor whose value follows the machine's state, load and wear."""

    name: Name
    unit: str = Field(max_length=16)
    period: SamplingPeriod = Field(1.0, description="sampling period (at least 10 ms)")
    stopped: float = Field(0.0, description="value when stopped (down, maintenance, off shift)")
    idle: float = Field(description="value when powered but not working (starved, blocked, setup)")
    working: float = Field(description="value when working at reference load")
    load_gain: float = Field(0.0, description="added per unit of load above the reference load")
    lag: NonNegDuration = Field(0.0, description="first-order time constant (e.g. temperature); 0 = none")
    noise: float = Field(0.0, ge=0, description="sd of white measurement noise")
    drift: float = Field(0.0, ge=0, description="sd of slow random-walk drift per sqrt(hour)")
    faults: SensorFaults = Field(default_factory=SensorFaults)


class Maintenance(_Strict):
    """When a machine is maintained: never, on a schedule, on a measured condition, after inspections, or (as a
    bound for comparisons) on the hidden true wear; or ordered from outside."""

    policy: Literal["run-to-failure", "preventive", "condition-based", "inspection", "perfect-monitoring"] = \
        "run-to-failure"
    every: PositiveDuration | None = Field(None, description="preventive: operating time between services")
    every_parts: int | None = Field(None, ge=1, description="preventive: parts between services")
    sensor: Name | None = Field(None, description="condition-based: the sensor watched (one of this type's sensors)")
    threshold: float | None = Field(
        None, description="condition-based: the filtered reading, in the sensor's unit, at which to maintain")
    filter: NonNegDuration = Field(
        600.0, description="condition-based: time constant of the exponential filter on the readings; 0 = none")
    inspect_every: PositiveDuration | None = Field(None, description="inspection: operating time between inspections")
    measurement_error: float = Field(0.05, ge=0, le=1, description="inspection: sd of the measured wear")
    wear_limit: float | None = Field(
        None, gt=0, lt=1, description="inspection, perfect-monitoring: wear level (0 new, 1 failed) to maintain at")
    opportunistic: float | None = Field(
        None, gt=0, le=1, description="also maintain when another machine's failure stops the line anyway, once this "
                                      "share of the way to the policy's trigger (e.g. 0.7)")
    duration: Distribution = Field(default_factory=lambda: Constant(dist="constant", value=1800.0))
    crew: Name | None = None
    when: Literal["at-once", "off-shift"] = Field(
        "at-once", description="off-shift: a service that falls due on shift waits for the line's next planned stop "
                               "as long as the job's mean (a shift's end, a weekend; any stop if none is that long) "
                               "and is done then, the machine working on meanwhile; needs the line's calendar")
    max_wait: PositiveDuration | None = Field(
        None, description="off-shift: the longest a due service waits for a planned stop, e.g. 24 h; then it is done "
                          "on shift (default: no limit; a 24/5 line's services wait for the weekend)")

    @model_validator(mode="after")
    def _params(self) -> Maintenance:
        if self.policy == "preventive" and self.every is None and self.every_parts is None:
            raise ValueError("policy 'preventive' needs 'every' (operating time, e.g. 40 h) or 'every_parts'")
        if self.policy == "condition-based" and (self.sensor is None or self.threshold is None):
            raise ValueError("policy 'condition-based' watches a measured sensor: give 'sensor' (one of this machine "
                             "type's sensors) and 'threshold' (the filtered reading, in its unit, that orders "
                             "maintenance); to act on the hidden true wear use policy 'perfect-monitoring' with "
                             "'wear_limit'")
        if self.policy == "inspection" and (self.inspect_every is None or self.wear_limit is None):
            raise ValueError("policy 'inspection' needs 'inspect_every' (operating time, e.g. 8 h) and 'wear_limit' "
                             "(the measured wear, 0-1, that orders maintenance)")
        if self.max_wait is not None and self.when != "off-shift":
            raise ValueError("max_wait is how long a service waits for a planned stop, for when: off-shift; add "
                             "when: off-shift, or leave max_wait out")
        if self.policy == "perfect-monitoring" and self.wear_limit is None:
            raise ValueError("policy 'perfect-monitoring' needs 'wear_limit', a wear level between 0 and 1, e.g. 0.7")
        return self


BREAKDOWN = "breakdown"  # the fault mode a machine type's mtbf and mttr stand for


MAX_POWER = 100_000  # kW: more than any one machine draws (the largest presses and furnaces draw a few MW)


class Power(_Strict):
    """Electrical power a machine draws by what it is doing [kW]: the line's energy per good part and its cost."""

    working: float = Field(ge=0, le=MAX_POWER, description="while working [kW]")
    idle: float = Field(ge=0, le=MAX_POWER, description="powered but not working: starved, blocked, in setup, waiting "
                                                        "for an operator [kW]")
    stopped: float = Field(0.0, ge=0, le=MAX_POWER, description="down or in maintenance (standby) [kW]")
    off_shift: float | None = Field(None, ge=0, le=MAX_POWER, description="off shift [kW] (default: as stopped)")

    #: the groups a machine's power is given for, in this order (the fit's columns too)
    GROUPS: ClassVar[tuple[str, ...]] = ("working", "idle", "stopped", "off_shift")

    @staticmethod
    def group(state: str) -> str:
        """Which of the power's groups one of the twin's states (the state names of `MachineNow`) draws."""
        if state in ("working", "off_shift"):
            return state
        return "stopped" if state in ("down", "maintenance") else "idle"  # idle: starved, blocked, setup, waiting

    def kw(self, state: str) -> float:
        """The power drawn in one of the twin's states."""
        group = self.group(state)
        if group == "off_shift" and self.off_shift is None:
            return self.stopped
        return float(getattr(self, group))


class MinorStops(_Strict):
    """Short stops an operator clears at the machine (a jam, a fallen bottle, a sensor to wipe), below the plant's
    threshold for recording downtime: the machine shows `working` through them, so they cost OEE performance, not
    availability (Nakajima's minor stops), and need no crew."""

    every: Distribution = Field(description="working time between stops, e.g. {dist: exponential, mean: 6 min}")
    duration: Distribution = Field(description="how long one lasts, e.g. {dist: lognormal, mean: 40 s, sd: 25 s}")

    @model_validator(mode="after")
    def _often(self) -> MinorStops:
        if self.every.mean < 1.0:
            raise ValueError(f"every: a stop each {self.every.mean:g} s of work on average; give at least 1 s (a "
                             "machine that stops more often than it works is down, not stopping briefly)")
        return self


class MachineType(_Strict):
    """What machines of one kind share: how they age, fail, are sensed and maintained."""

    clock: Literal["operating", "calendar"] = Field(
        "operating", description="failure clock runs only while working (operating) or whenever up (calendar)")
    reference_load: float = Field(0.8, gt=0, le=2)
    load_exponent: float = Field(0.0, ge=0, le=10, description="operating clock runs (load/reference)**k fast")
    fault_modes: list[FaultMode] = Field(default_factory=list)
    sensors: list[Sensor] = Field(default_factory=list)
    maintenance: Maintenance = Field(default_factory=Maintenance)
    repair_crew: Name | None = Field(None, description="crew that repairs and maintains; none = always available")
    start_age: Literal["new", "random"] = Field(
        "random", description="wear at t = 0: new, or a random point of the first life (a line already in service)")
    power: Power | None = Field(None, description="electrical power by state, e.g. {working: 22, idle: 6, stopped: "
                                                  "1.5, off_shift: 0} [kW]; none = no energy figures")
    minor_stops: MinorStops | None = Field(
        None, description="short stops the operator clears, not recorded as downtime (the machine shows working): "
                          "{every: working time between them, duration: how long one lasts}; they cost performance")
    mtbf: PositiveDuration | None = Field(
        None, exclude=True, description="mean time between failures on the machine's clock, with mttr: a sudden fault "
        "mode 'breakdown' with exponential times to failure and repair (what a plant's records give)")
    mttr: PositiveDuration | None = Field(
        None, exclude=True, description="mean time to repair once a crew member is there, with mtbf")

    @model_validator(mode="after")
    def _breakdown(self) -> MachineType:
        """`mtbf` and `mttr` are the fault mode they stand for (written as such wherever the type is written out)."""
        if (self.mtbf is None) != (self.mttr is None):
            given, missing = ("mtbf", "mttr") if self.mttr is None else ("mttr", "mtbf")
            raise ValueError(f"{given} without {missing}: give both (a sudden fault mode 'breakdown' with exponential "
                             "times), or list the type's fault_modes instead")
        if self.mtbf is not None and self.mttr is not None:
            if any(fm.name == BREAKDOWN for fm in self.fault_modes):
                raise ValueError(f"mtbf and mttr make a fault mode '{BREAKDOWN}', and fault_modes has one of that "
                                 "name already; rename it or list every mode under fault_modes")
            mode = FaultMode(name=BREAKDOWN, kind="sudden", ttf={"dist": "exponential", "mean": self.mtbf},
                             repair={"dist": "exponential", "mean": self.mttr})
            object.__setattr__(self, "fault_modes", [*self.fault_modes, mode])  # the model is frozen once made
        return self

    @model_validator(mode="after")
    def _consistent(self) -> MachineType:
        sensors = [s.name for s in self.sensors]
        _unique(sensors, "sensors")
        _unique([f.name for f in self.fault_modes], "fault_modes")
        for i, fm in enumerate(self.fault_modes):
            for s in fm.signature:
                if s not in sensors:
                    raise ValueError(f"fault_modes[{i}] ({fm.name}) signature names sensor '{s}', "
                                     f"which this machine type does not have; sensors: {sensors or 'none'}")
            if fm.kind == "sudden" and (fm.signature or fm.scrap_increase):
                raise ValueError(f"fault_modes[{i}] ({fm.name}) is sudden: it has no wear, so no signature "
                                 "or scrap_increase; make it kind: wear")
        watched = self.maintenance.sensor
        if watched is not None:
            if watched not in sensors:
                raise ValueError(f"maintenance.sensor '{watched}' is not one of this machine type's sensors: "
                                 f"{sensors or 'none'}")
            if not any(fm.signature.get(watched) for fm in self.fault_modes if fm.kind == "wear"):
                raise ValueError(f"maintenance.sensor '{watched}' shows no wear: no wear mode's signature names it, "
                                 "so condition-based maintenance could never see a failure coming; watch another "
                                 "sensor or add it to a signature")
        return self


class Changeover(_Strict):
    """A product changeover (setup) every so many parts."""

    every_parts: int = Field(ge=1)
    duration: Distribution


class BatchProcess(_Strict):
    """A batch process (an oven, a washer, a heat-treatment furnace): a machine works up to `size` parts at once, in
    one cycle for all; it waits for a full batch, or starts with at least `min` once `wait` has passed since the
    first part of the batch came in."""

    size: int = Field(ge=2, le=10_000, description="parts worked at once")
    min: int | None = Field(None, ge=1, description="parts enough to start once `wait` has passed (default: 1 "
                                                    "with a wait, else a full batch)")
    wait: PositiveDuration | None = Field(None, description="how long the first part waits for the batch to fill "
                                                            "(default: until it is full)")

    @model_validator(mode="after")
    def _fill(self) -> BatchProcess:
        if self.min is not None and self.min > self.size:
            raise ValueError(f"min ({self.min}) is more than the batch size ({self.size})")
        if self.wait is None and self.min is not None and self.min != self.size:
            raise ValueError(f"min: {self.min} starts a batch short of its size only after a wait; give wait: (how "
                             "long the first part waits for the batch to fill), or leave min out")
        return self

    @property
    def least(self) -> int:
        """The fewest parts a batch starts with (once the wait has passed)."""
        return self.min if self.min is not None else 1 if self.wait is not None else self.size


EXIT = "exit"  # where a route sends a part out of the line


class Batch(_Strict):
    """A run of one product in a release sequence (a campaign)."""

    product: Name
    parts: int = Field(ge=1, le=1_000_000)


class ReleaseOrder(_Strict):
    """An order the line releases before its release plan: its product, the good parts it asks for (a scrapped part
    of it is made up by a later release) and its number in the plant's order book."""

    product: Name
    parts: int = Field(ge=1, le=10**9)
    order: str = Field("", max_length=100, description="its number in the order book")
    due: dt.datetime | None = Field(None, description="when it is due, on the line's clock (2026-01-06T14:00)")

    @field_validator("due")
    @classmethod
    def _on_the_lines_clock(cls, v: dt.datetime | None) -> dt.datetime | None:
        if v is not None and v.tzinfo is not None:
            raise ValueError(f"write it on the line's clock, without a UTC offset (got {v.isoformat()})")
        if v is not None and not TIME_RANGE[0] <= v <= TIME_RANGE[1]:
            raise ValueError(f"must be between 1970 and 2200, got {v.isoformat()}")
        return v


class Product(_Strict):
    """A part type the line makes; `share` is its weight in a random release mix."""

    name: Name
    share: float = Field(1.0, gt=0, allow_inf_nan=False, description="relative share of releases (random mix)")


class Route(_Strict):
    """One way out of a station: the station a part goes to next ('exit' = leaves the line), and for probability
    routing its probability, for product routing the products that take it (a mixed-model line's variants)."""

    to: Name
    p: Probability | None = Field(None, description="route: probability: the share of parts sent this way")
    products: list[Name] | None = Field(None, min_length=1, max_length=100,
                                        description="route: product: the products sent this way (a route without "
                                                    "products takes every product no other route names)")


class StartupScrap(_Strict):
    """Start-up rejects: after each setup, repair or service the process settles, and its first parts are scrap more
    often (Nakajima's reduced yield)."""

    parts: int = Field(ge=1, le=100_000, description="how many parts after each restart")
    scrap: Probability = Field(description="the probability that each of them is scrap (besides the station's scrap)")


class Station(_Strict):
    """A step of the line: one or more machines in parallel (alike, or each with its own cycle time), fed by the
    buffer in front (an assembly station: one buffer per feeding station)."""

    name: Name
    machine_type: Name
    machines: int | list[Name] = Field(1, description="how many machines, or their names")
    cycle_time: Distribution
    ideal_cycle_time: PositiveDuration | None = Field(
        None, description="design (fastest) cycle, for OEE performance; default: the cycle time's lower bound")
    load: float = Field(0.8, gt=0, le=2, description="load as a fraction of rating while working")
    buffer: int | None = Field(None, ge=0, description="capacity of the buffer in front; null = unlimited")
    initial: int = Field(0, ge=0, le=100_000, description="parts in that buffer at the start (at most 100,000)")
    scrap: Probability = Field(0.0, description="probability a finished part is scrap")
    startup_scrap: StartupScrap | None = Field(
        None, description="start-up rejects: the first `parts` parts after each setup, repair or service are scrap "
                          "with probability `scrap`, e.g. {parts: 5, scrap: 0.4}")
    rework: bool = Field(False, description="a rework station (a repair bay): the parts sent here were not good the "
                                            "first time; they count as the sending station's and the line's rework "
                                            "quantity (ISO 22400: against quality and first pass yield)")
    next: Name | list[Route] | None = Field(
        None, description="where parts go next: a station, 'exit', or routes; default: the next station listed "
                          "(the last one: exit)")
    route: Literal["probability", "round-robin", "shortest-queue", "product"] = Field(
        "probability", description="how a part picks among several routes (product: by the routes' products)")
    machine_cycle_times: dict[Name, Distribution] = Field(
        default_factory=dict, description="parallel machines that are not alike: a machine's own cycle time (an "
                                          "older, slower one), e.g. {filler-b: 2.1 s}; the others keep cycle_time")
    cycle_times: dict[Name, Distribution] = Field(
        default_factory=dict, description="per product: its cycle time here (else cycle_time)")
    ideal_cycle_times: dict[Name, PositiveDuration] = Field(
        default_factory=dict, description="per product: its design cycle here (else from its cycle time)")
    setup_matrix: dict[Name, dict[Name, Distribution]] = Field(
        default_factory=dict, description="sequence-dependent setups: from product -> to product -> setup time "
                                          "(a pair not listed needs none)")
    scrap_by_product: dict[Name, Probability] = Field(
        default_factory=dict, description="per product: probability a finished part is scrap (else scrap)")
    operators: OperatorNeed | None = Field(None, description="an operator the machines wait for (run, setup)")
    assemble: dict[Name, int] | None = Field(
        None, description="an assembly station: parts taken from each feeding station per assembly, e.g. "
                          "{body: 1, doors: 4}; the first one listed carries on as the assembly")
    feeder_initial: dict[Name, int] = Field(
        default_factory=dict, description="an assembly station: parts in each feeder's buffer at the start, e.g. "
                                          "{doors: 8} (its buffers are one per feeder, so 'initial' does not apply)")
    batch: BatchProcess | None = Field(
        None, description="a batch process (an oven): each machine works up to `size` parts at once, cycle_time "
                          "per batch, e.g. {size: 40, wait: 30 min}")
    transfer: PositiveDuration | None = Field(
        None, description="time a part takes to reach this station's buffer once handed on (a conveyor, a transfer "
                          "line): parts arrive in the order they left, and count against the buffer's capacity on "
                          "the way, so `buffer` is the conveyor's places, e.g. transfer: 40 s with buffer: 8")

    @model_validator(mode="after")
    def _batch(self) -> Station:
        if self.batch is not None:
            other = [k for k in ("assemble", "cycle_times", "ideal_cycle_times", "setup_matrix", "scrap_by_product",
                                 "changeover", "startup_scrap") if getattr(self, k)]
            if other:
                raise ValueError(f"a batch station works every part of a batch alike: {other[0]} is not for one "
                                 "(not yet); give the batch its own station, or leave batch: out")
        return self

    @model_validator(mode="after")
    def _own_cycles(self) -> Station:
        if self.machine_cycle_times:
            unknown = [n for n in self.machine_cycle_times if n not in self.machine_names]
            if unknown:
                raise ValueError(f"machine_cycle_times names {unknown[0]!r}, which is not one of the station's "
                                 f"machines ({', '.join(self.machine_names)}); name them with machines: [...]")
            other = [k for k in ("batch", "cycle_times", "ideal_cycle_times", "ideal_cycle_time") if getattr(self, k)]
            if other:
                raise ValueError(f"machine_cycle_times gives each machine its own cycle; with {other[0]} as well, "
                                 "which machine's design cycle it is would be a guess (not yet): leave one out "
                                 "(a machine's design cycle is its own law's lower bound)")
        return self

    @field_validator("assemble")
    @classmethod
    def _quantities(cls, v: dict[str, int] | None) -> dict[str, int] | None:
        if v is not None:
            if not v:
                raise ValueError("an assembly needs at least one feeding station, e.g. {body: 1, doors: 4}")
            bad = {k: q for k, q in v.items() if not 1 <= q <= 1000}
            if bad:
                raise ValueError(f"quantities must be 1 to 1000 parts, got {bad}")
        return v

    @model_validator(mode="after")
    def _feeders(self) -> Station:
        if self.assemble is None:
            if self.feeder_initial:
                raise ValueError("feeder_initial is for an assembly station (assemble:); this one has one buffer: "
                                 "give its parts as initial")
            return self
        if self.initial:
            raise ValueError(f"an assembly has a buffer per feeder, so initial does not say which; give "
                             f"feeder_initial: {{{next(iter(self.assemble))}: {self.initial}}}")
        for feeder, n in self.feeder_initial.items():
            if feeder not in self.assemble:
                raise ValueError(f"feeder_initial.{feeder}: not a feeder of this assembly ({', '.join(self.assemble)})")
            if not 0 <= n <= (self.buffer if self.buffer is not None else 100_000):
                raise ValueError(f"feeder_initial.{feeder}: {n} parts, in a buffer of capacity {self.buffer}")
        return self

    @model_validator(mode="after")
    def _routes(self) -> Station:
        routes = self.routes()
        _unique([r.to for r in routes], "next")
        given = [r.p for r in routes]
        if self.route == "probability" and len(routes) > 1:
            if any(p is None for p in given):
                raise ValueError("next: with route 'probability' every route needs 'p' (they add up to 1)")
            if abs(sum(p for p in given if p is not None) - 1.0) > 1e-6:
                raise ValueError(f"next: the probabilities add up to {sum(p for p in given if p is not None):g}, "
                                 "not 1")
        elif self.route != "probability" and any(p is not None for p in given):
            raise ValueError(f"next: route '{self.route}' picks the way itself; remove the 'p' values")
        if self.route != "product":
            if any(r.products for r in routes):
                raise ValueError(f"next: a route's products are for route: product (this station's route is "
                                 f"'{self.route}'); give route: product, or remove the products")
            return self
        if len(routes) < 2:
            raise ValueError("route: product chooses among several routes, but next gives one way on; list the "
                             "routes with their products, e.g. [{to: sunroof, products: [premium]}, {to: paint}]")
        if sum(r.products is None for r in routes) > 1:
            raise ValueError("next: more than one route without products (the way for every other product); give "
                             "all but one of them their products")
        seen: dict[str, str] = {}
        for r in routes:
            for name in r.products or []:
                if name in seen:
                    raise ValueError(f"next: product '{name}' is sent both to {seen[name]} and to {r.to}; a product "
                                     "takes one route")
                seen[name] = r.to
        return self

    def product_route(self, product: str) -> int:
        """route: product: the number of the route a part of `product` takes (the one naming it, else the one naming
        no products; validated: there is one)."""
        routes = self.routes()
        named = [k for k, r in enumerate(routes) if product in (r.products or ())]
        return (named or [k for k, r in enumerate(routes) if r.products is None])[0]

    def routes(self) -> list[Route]:
        """The routes `next` gives (empty: the default, the next station listed)."""
        if self.next is None:
            return []
        return [Route(to=self.next)] if isinstance(self.next, str) else list(self.next)
    changeover: Changeover | None = None

    @field_validator("cycle_time")
    @classmethod
    def _takes_time(cls, v: Any) -> Any:
        return _at_least(v, 0.001, "the mean cycle time must be at least 1 ms",
                         "a machine cannot make parts in no time")

    @field_validator("machines")
    @classmethod
    def _machines(cls, v: int | list[str]) -> int | list[str]:
        if isinstance(v, int) and not 1 <= v <= 100:
            raise ValueError(f"must be between 1 and 100, got {v}")
        if isinstance(v, list):
            if not v:
                raise ValueError("needs at least one machine name")
            _unique(v, "machines")
        return v

    def ideal_cycle_of(self, product: str | None) -> float:
        """The design cycle of one product here (None or a product without its own: the station's)."""
        if product is not None and product in self.ideal_cycle_times:
            return self.ideal_cycle_times[product]
        if product is not None and product in self.cycle_times:
            dist = self.cycle_times[product]
            return dist.lower_bound if dist.lower_bound is not None else dist.mean
        return self.ideal_cycle()[0]

    def ideal_cycle(self) -> tuple[float, str]:
        """The design cycle time OEE performance is measured against, and where it comes from (for the output).

        ISO 22400's planned runtime per item is the fastest feasible cycle, so performance stays <= 100 %; a
        distribution without a lower bound above 0 falls back to its mean, and the note says so. Machines with
        cycles of their own (`machine_cycle_times`): the harmonic mean of theirs, what one machine of the station
        makes a part in on average at design speed (the station's design rate is its machines over it)."""
        if self.machine_cycle_times:
            own = self.design_cycles()
            return len(own) / sum(1 / c for c, _ in own), "harmonic mean of its machines' design cycles"
        return self._design_cycle(self.cycle_time)

    def design_cycles(self) -> list[tuple[float, str]]:
        """Each machine's design cycle (`machine_ideal`) and where it comes from, in the machines' order."""
        return [self._design_cycle(self.cycle_for(m)) for m in self.machine_names]

    def cycle_for(self, machine: str) -> Distribution:
        """A machine's cycle time: its own (`machine_cycle_times`), else the station's."""
        return self.machine_cycle_times.get(machine, self.cycle_time)

    def machine_ideal(self, machine: str) -> float:
        """A machine's design cycle: the station's, or its own law's lower bound (its mean without one)."""
        return self._design_cycle(self.cycle_for(machine))[0]

    def _design_cycle(self, cycle_time: Distribution) -> tuple[float, str]:
        """The design cycle of a machine working to `cycle_time` (per part of a batch), and where it comes from."""
        per, of = (self.batch.size, f", per part of a batch of {self.batch.size}") if self.batch else (1, "")
        if self.ideal_cycle_time is not None:
            return self.ideal_cycle_time / per, f"given (ideal_cycle_time){of}"
        low = cycle_time.lower_bound
        if low is not None:
            return low / per, f"lower bound of the {cycle_time.dist} cycle time{of}"
        return cycle_time.mean / per, (f"mean of the {cycle_time.dist} cycle time{of}, which has no lower "
                                       "bound: performance can exceed 100 %; give ideal_cycle_time (the design "
                                       "cycle)")

    @property
    def machine_names(self) -> list[str]:
        if isinstance(self.machines, list):
            return list(self.machines)
        return [self.name] if self.machines == 1 else [f"{self.name}-{i + 1}" for i in range(self.machines)]


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _span(window: str) -> tuple[float, float]:
    """A validated 'HH:MM-HH:MM' as (start, end) in seconds after midnight, the end past 86,400 s across midnight."""
    m = _HHMM.match(window)
    assert m is not None  # validated before
    a, b, c, d = (int(x) for x in m.groups())
    start, end = a * 3600.0 + b * 60.0, c * 3600.0 + d * 60.0
    return start, end if end > start else end + 86400.0


def _checked_windows(windows: list[str], what: str) -> list[str]:
    """Daily windows ('shift' or 'break') each 'HH:MM-HH:MM' from its start to another end, or a clear ValueError."""
    for w in windows:
        m = _HHMM.match(w)
        if not m:
            raise ValueError(f"{what} {w!r} is not 'HH:MM-HH:MM' (24 h clock, e.g. "
                             f"'{'22:00-24:00' if what == 'shift' else '12:00-12:30'}')")
        if int(m.group(1)) * 60 + int(m.group(2)) == int(m.group(3)) * 60 + int(m.group(4)):
            raise ValueError(f"{what} {w!r} starts when it ends" + ("; a whole day is '00:00-24:00'"
                                                                    if what == "shift" else ""))
    return windows


def _each_day(span: tuple[float, float]) -> list[tuple[float, float]]:
    """A daily time span (a break) as it falls on the clock of a day's shifts, which reach into the next day: the day
    before's (a break across midnight into the day's first minutes), the day's, the next day's (a night shift's)."""
    a, b = span
    return [(a - 86400, b - 86400), (a, b), (a + 86400, b + 86400)]


def _hhmm(seconds: float) -> str:
    """Seconds after a day's midnight as the calendar writes them, 'HH:MM' (the next day's times as themselves)."""
    m = int(seconds // 60) % 1440
    return f"{m // 60:02d}:{m % 60:02d}" if m or seconds < 86400 else "24:00"


class Holidays(_Strict):
    """A span of days off (plant holidays, a shutdown), both days included."""

    first: dt.date = Field(alias="from")
    last: dt.date = Field(alias="to")

    @model_validator(mode="after")
    def _order(self) -> Holidays:
        if self.last < self.first:
            raise ValueError(f"to ({self.last}) is before from ({self.first})")
        return self


class Calendar(_Strict):
    """Planned production time: shift windows on working days; everything else is planned downtime."""

    shifts: list[str] = Field(min_length=1, description="daily windows 'HH:MM-HH:MM', e.g. '06:00-14:00'; a night "
                                                          "shift crosses midnight, '22:00-06:00', from its day on")
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: list(DAYS), min_length=1,
        description="working days; at least one (a line that never works has no availability to measure)")
    by_day: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], list[str]] = Field(
        default_factory=dict, description="a weekday's own shifts instead of `shifts`, e.g. {sat: ['06:00-12:00']}: "
                                          "it works those (a day not in `days` too)")
    holidays: list[dt.date | Holidays] = Field(
        default_factory=list, max_length=10_000,
        description="dates the line does not work though their weekday is a working day: a date (2026-12-24) or a "
                    "span {from: 2026-12-24, to: 2027-01-01}, both days included; a shift belongs to the day it "
                    "starts on")
    breaks: list[str] = Field(
        default_factory=list, max_length=48,
        description="daily breaks 'HH:MM-HH:MM' inside the shifts (a lunch break '12:00-12:30'; after midnight, in a "
                    "night shift): planned downtime on every working day, the shift still one shift in reports")

    def is_holiday(self, day: dt.date) -> bool:
        """Whether the line does not work on this date (its shifts that start on it are off)."""
        return any(h == day if isinstance(h, dt.date) else h.first <= day <= h.last for h in self.holidays)

    @field_validator("shifts")
    @classmethod
    def _windows(cls, v: list[str]) -> list[str]:
        return _checked_windows(v, "shift")

    @field_validator("by_day")
    @classmethod
    def _day_windows(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for day, shifts in v.items():
            if not shifts:
                raise ValueError(f"{day}: give its shifts, e.g. ['06:00-12:00'] (a day off is left out of days)")
            _checked_windows(shifts, "shift")
        return v

    @field_validator("breaks")
    @classmethod
    def _break_windows(cls, v: list[str]) -> list[str]:
        return _checked_windows(v, "break")

    @model_validator(mode="after")
    def _breaks_in_shifts(self) -> Calendar:
        days = [d for d in DAYS if self.works_on(d)]
        for w in self.breaks:
            if not any(s < pb and pa < e for d in days for s, e in self.spans(d) for pa, pb in _each_day(_span(w))):
                raise ValueError(f"break {w!r} falls in no shift ({', '.join(self.shifts)}); a break is planned "
                                 "downtime inside a shift: give its time within one, or leave it out")
        for d in days:
            for s, e in self.spans(d):
                if not any(a < e and s < b for a, b in self.windows(d)):
                    raise ValueError(f"the breaks ({', '.join(self.breaks)}) take the whole shift "
                                     f"{_hhmm(s)}-{_hhmm(e)}{' on ' + d if d in self.by_day else ''}; shorten them, "
                                     "or leave the shift out")
        return self

    def works_on(self, day: str) -> bool:
        """Whether the line works on this weekday ('mon' ... 'sun'), holidays aside."""
        return day in self.days or day in self.by_day

    def spans(self, day: str | None = None) -> list[tuple[float, float]]:
        """Each shift of a weekday (default: the days' common `shifts`) as (start, end) in seconds after its day's
        midnight, as given; a night shift crossing midnight ends after 86,400 s (it belongs to the day it starts on)."""
        return sorted(map(_span, self.by_day.get(day, self.shifts)))  # type: ignore[arg-type]  # None: the common

    def windows(self, day: str | None = None) -> list[tuple[float, float]]:
        """The production windows of a working day (a weekday's own, with `by_day`), in seconds after its midnight: the
        shifts' union (shifts that overlap, as at a hand-over, count once), in time order; a window crossing midnight
        ends after 86,400 s. Breaks are left out of them (a break after midnight out of a night shift's morning)."""
        out: list[tuple[float, float]] = []
        for a, b in self.spans(day):
            if out and a <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], b))
            else:
                out.append((a, b))
        for pa, pb in (p for w in self.breaks for p in _each_day(_span(w))):
            out = [piece for s, e in out for piece in ((s, min(e, pa)), (max(s, pb), e)) if piece[1] > piece[0]]
        return out

    def works_within(self, start: dt.datetime, seconds: float) -> bool:
        """Whether any of its windows falls inside [start, start + seconds] (a run's span on the line's clock)."""
        end = start + dt.timedelta(seconds=seconds)
        day = start.date() - dt.timedelta(days=1)  # a night shift of the day before reaches into the first
        while day <= end.date():
            midnight = dt.datetime.combine(day, dt.time(), start.tzinfo)
            name = DAYS[day.weekday()]
            if self.works_on(name) and not self.is_holiday(day) and any(
                    midnight + dt.timedelta(seconds=a) < end and midnight + dt.timedelta(seconds=b) > start
                    for a, b in self.windows(name)):
                return True
            day += dt.timedelta(days=1)
        return False

    def week_hours(self) -> float:
        """Planned hours in a week without holidays: each working day's windows, breaks taken off."""
        return sum(b - a for d in DAYS if self.works_on(d) for a, b in self.windows(d)) / 3600

    def day_length(self, extra: tuple[float, float] | None = None) -> float:
        """Seconds a working day's shifts span (with `extra`, one more shift's span; breaks not taken off): the union
        over the day's clock, a night shift's part after midnight counted at the start of the day."""
        pieces = [p for a, b in [*self.spans(), *([extra] if extra else [])]
                  for p in ([(a, b)] if b <= 86400 else [(a, 86400.0), (0.0, b - 86400)])]
        total, reach = 0.0, 0.0
        for a, b in sorted(pieces):
            total += max(0.0, b - max(a, reach))
            reach = max(reach, b)
        return total


class OperatorPool(_Strict):
    """People who run machines or set them up: `size` of them, on their own shifts (default: always there)."""

    name: Name
    size: int = Field(ge=1, le=1000)
    calendar: Calendar | None = Field(None, description="when they work; none = around the clock")


class OperatorNeed(_Strict):
    """A station's machines need an operator from a pool while working (run), setting up (setup) and/or during their
    repairs (repair: besides the machine type's repair crew, if it has one)."""

    pool: Name
    tasks: list[Literal["run", "setup", "repair"]] = Field(["run", "setup"], min_length=1, alias="for")


class Targets(_Strict):
    """What the line should achieve in a shift: shown beside the dashboard's tiles."""

    throughput: float | None = Field(None, gt=0, description="good parts per hour [parts/h]")
    oee: float | None = Field(None, gt=0, le=1, description="OEE as a fraction (0.65 = 65 %)")


class Costs(_Strict):
    """Money, for comparing maintenance policies: per action, per failure, and the margin of each good part."""

    currency: str = Field("EUR", max_length=8)
    maintenance: Money = Field(0.0, description="labour and parts of one planned maintenance action")
    repair: Money = Field(0.0, description="labour and spare parts of one repair after a failure")
    repair_by_mode: dict[Name, Money] = Field(default_factory=dict,
                                              description="repair cost of particular fault modes (else 'repair')")
    part_margin: Money = Field(0.0, description="margin lost per good part not made (lost production)")
    call_out: Money = Field(0.0, description="each technician called in off a crew's shifts (repair_crews' on_call)")
    energy: Money = Field(0.0, description="price of a kWh of electricity (with machine types' power)")
    spare_holding: dict[Name, Money] = Field(default_factory=dict, description="per spare part (of spares): the cost "
                                             "of keeping one on hand for a year (capital, storage, insurance)")


class MachineNow(_Strict):
    """One machine when the line's state was read (`twin run --from`): its state and how long it has been in it,
    the fault mode of a stop, and what is known of each fault mode's life."""

    state: Literal["working", "starved", "blocked", "down", "maintenance", "setup", "off_shift", "waiting_operator",
                   "offline"]
    since: float = Field(0.0, ge=0, description="seconds already spent in that state")
    mode: str = Field("", max_length=200, description="a down machine's fault mode")
    ages: dict[Name, float] = Field(default_factory=dict, description="per fault mode: seconds of its reliability "
                                    "clock (working time; up time for calendar-clock types) since its last renewal")
    rul: dict[Name, float] = Field(default_factory=dict, description="per fault mode: forecast remaining life, "
                                   "seconds of its reliability clock")
    unrenewed: list[Name] = Field(default_factory=list, max_length=1000, description="fault modes with no "
                                  "renewal in the records (a repair of that mode; maintenance, for a wear mode): their "
                                  "age counts from the first record, so is only a lower bound")
    product: Name | None = Field(None, description="the product it last worked (a mixed line): a different one "
                                 "next sets up first, as its station's setup_matrix says")


#: a buffer among buffer levels: its station's name, an assembly's buffer from one feeder 'station<feeder'
BufferName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*(<[A-Za-z0-9][A-Za-z0-9_.-]*)?$",
                                  max_length=130)]


class ReleaseNow(_Strict):
    """Where the line's release plan stood: the campaign under way (the first of that product in `release`), and how
    many of its parts were released already."""

    product: Name
    made: int = Field(0, ge=0, le=10**9, description="parts of the campaign released already")
    counted: bool = Field(True, description="whether `made` was counted (False: no part counter told, so 0)")


class LineNow(_Strict):
    """The line's state at one moment, from which a what-if run continues instead of starting empty."""

    taken: dt.datetime = Field(description="when (the line's clock); the run starts here")
    source: str = Field("", max_length=500, description="where it was read from")
    machines: dict[Name, MachineNow] = Field(default_factory=dict)
    buffers: dict[BufferName, int] | None = Field(
        None, description="parts waiting in front of each station (an assembly's per feeder, 'station<feeder'); "
                          "None: not known (the scenario's initial levels)")
    release: ReleaseNow | None = Field(None, description="the release plan's campaign under way (None: the plan "
                                                         "starts from its first campaign)")


class Scenario(_Strict):
    """A production line and how to run it."""

    #: the machines in the order of the line they draw their random numbers for (None: this line's own order). A
    #: what-if that adds machines keeps the line's: the machines it has draw what they drew, the new ones others
    #: (common random numbers); not part of the file, the schema or a copy sent to a worker
    _slots: list[str] | None = PrivateAttr(default=None)

    line: LineId
    description: str = ""
    seed: int = Field(ge=0, le=MAX_SEED, description="every random draw derives from it")
    start: dt.datetime = Field(dt.datetime(2026, 1, 5, 6, 0), description="simulated clock at t = 0 (1970-2200)")
    duration: Horizon = Field(description="simulated time per replication (at most 10 years)")
    warmup: NonNegDuration = Field(0.0, description="time discarded from KPIs at the start")
    replications: int = Field(1, ge=1, le=10_000)
    realtime_factor: float = Field(0.0, ge=0, description="0 = as fast as possible, 1 = wall clock, N = N x faster")
    blocking: Literal["after-service", "before-service"] = Field(
        "after-service", description="after-service: a finished part waits in the machine for buffer space; "
        "before-service: a machine starts only when space downstream (buffer + next machines) is reserved")
    source: Source = Field(default_factory=Source)
    repair_crews: list[RepairCrew] = Field(default_factory=list)
    spares: list[Spare] = Field(default_factory=list, max_length=1000,
                                description="spare parts kept in stock for repairs (fault modes' spare)")
    machine_types: dict[Name, MachineType] = Field(min_length=1)
    stations: list[Station] = Field(min_length=1, max_length=200)
    calendar: Calendar | None = None
    costs: Costs = Field(default_factory=Costs)
    targets: Targets = Field(default_factory=Targets, description="shift targets shown on the dashboard")
    operators: list[OperatorPool] = Field(default_factory=list, description="operator pools stations draw on")
    products: list[Product] = Field(default_factory=list, max_length=100,
                                    description="part types; none = one kind of part")
    release: list[Name | Batch] | None = Field(
        None, min_length=1, max_length=10_000,
        description="a cyclic release sequence: product names or campaigns {product, parts}; default: a random mix "
                    "by share")
    orders: list[ReleaseOrder] | None = Field(
        None, min_length=1, max_length=1000,
        description="orders released in turn before the release plan: each until that many of its parts are "
                    "released and not scrapped (a scrapped part is made up first); then the plan")
    now: LineNow | None = Field(None, description="continue from this state of the line (`twin run --from`) "
                                "instead of an empty, new line")

    @field_validator("start")
    @classmethod
    def _sane_start(cls, v: dt.datetime) -> dt.datetime:
        if not TIME_RANGE[0] <= v.replace(tzinfo=None) <= TIME_RANGE[1]:
            raise ValueError(f"must be between 1970 and 2200, got {v.isoformat()} (readings carry epoch times)")
        return v

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        problems = reference_problems(self.model_dump(by_alias=True))
        start = self.start.replace(tzinfo=None)
        problems += [(f"orders[{k}].due", f"{o.due:%Y-%m-%d %H:%M} is not after the run's start "
                                          f"({start:%Y-%m-%d %H:%M}): an order due then is late before it starts")
                     for k, o in enumerate(self.orders or []) if o.due is not None and o.due <= start]
        if problems:
            raise ValueError("; ".join(f"{loc}: {msg}" for loc, msg in problems))
        return self

    @property
    def is_graph(self) -> bool:
        """Whether any station routes (next) or assembles: the line is a graph, not the serial short form."""
        return any(st.next is not None or st.assemble for st in self.stations)

    def successors(self, i: int) -> list[tuple[int, float | None]]:
        """Where station i sends its parts: (station index or -1 for exit, probability or None)."""
        st = self.stations[i]
        routes = st.routes()
        index = {s.name: k for k, s in enumerate(self.stations)}
        if not routes:
            return [(i + 1 if i + 1 < len(self.stations) else -1, 1.0)]
        return [(-1 if r.to == EXIT else index[r.to], r.p if len(routes) > 1 else 1.0) for r in routes]

    def machine_order(self) -> list[str]:
        """The machines in the order they draw their random numbers (a machine's slot is its place here): the
        line's, station after station, or the one a what-if kept (`_slots`)."""
        return list(self._slots) if self._slots else [m for st in self.stations for m in st.machine_names]

    def entries(self) -> list[int]:
        """The stations the source feeds: the first one listed, and any other no station sends parts to."""
        fed = {k for i in range(len(self.stations)) for k, _ in self.successors(i) if k >= 0}
        return [i for i in range(len(self.stations)) if i == 0 or i not in fed]

    def source_fed(self) -> set[int]:
        """The stations a saturated source feeds (parts always at hand: no buffer in front); none with arrivals."""
        return set(self.entries()) if self.source.kind == "saturated" else set()

    def exits(self) -> list[int]:
        """The stations parts leave the line from (the last one listed, and any routed to 'exit')."""
        return [i for i in range(len(self.stations)) if any(k < 0 for k, _ in self.successors(i))]

    def constraint(self) -> int:
        """The station whose design rate (machines / ideal cycle), per visit a finished part needs, is lowest: the
        line's design rate is its rate. With products whose cycles or routes differ, each product's design time
        there (its visits times its ideal cycle), weighed by its share of the parts released."""
        if self.products and any(st.cycle_times or st.ideal_cycle_times or st.route == "product"
                                 for st in self.stations):
            mix = self.product_mix()
            by_route = any(st.route == "product" for st in self.stations)
            alike = None if by_route else self.visits() if self.is_graph else np.ones(len(self.stations))
            visits = {p: self.visits_of(p) if alike is None else alike for p in mix}
            work = [sum(w * visits[p][k] * st.ideal_cycle_of(p) for p, w in mix.items())
                    for k, st in enumerate(self.stations)]
            return int(np.argmin([len(st.machine_names) / max(t, 1e-12) for st, t in zip(self.stations, work)]))
        visits = self.visits() if self.is_graph else np.ones(len(self.stations))
        rates = [len(st.machine_names) / st.ideal_cycle()[0] / max(v, 1e-12) for st, v in zip(self.stations, visits)]
        return int(np.argmin(rates))

    def line_cycle(self, station: int, ideal: float) -> float:
        """The line's design time per part leaving it when `station` is its constraint with design cycle `ideal`
        per part (ISO 22400's planned runtime per item of the line): its visits per part over its machines."""
        return ideal * float(self.visits()[station]) / len(self.stations[station].machine_names)

    def visits(self) -> np.ndarray:
        """Expected visits of each station per part leaving the line (traffic equations, with an assembly's
        quantities: a feeder making q parts per assembly is visited q times as often); a line that routes by
        product: each product's visits, weighed by its share of the parts released."""
        if not any(st.route == "product" for st in self.stations):
            return self.visits_of(None)
        return sum((w * self.visits_of(name) for name, w in self.product_mix().items()), np.zeros(len(self.stations)))

    def release_runs(self) -> list[tuple[str, int]]:
        """The release sequence as (product, parts) runs, a product named alone a run of one (empty: a random mix)."""
        return [(item, 1) if isinstance(item, str) else (item.product, item.parts) for item in self.release or []]

    def product_mix(self) -> dict[str, float]:
        """Each product's share of the parts released: its parts in the release sequence, else its share."""
        if self.release:
            counts = dict.fromkeys((p.name for p in self.products), 0)
            for name, parts in self.release_runs():
                counts[name] += parts
        else:
            counts = {p.name: p.share for p in self.products}
        total = sum(counts.values())
        return {name: c / total for name, c in counts.items()}

    def visits_of(self, product: str | None) -> np.ndarray:
        """Expected visits of each station per part of one product leaving the line (the traffic equations with its
        routes; None: every part alike, on a line that routes none by product)."""
        n = len(self.stations)
        entries = self.entries()
        rows, rhs = [], []
        cols = n + len(entries)  # visits, then the outside inflow of each entry station
        for k, st in enumerate(self.stations):
            row = np.zeros(cols)
            row[k] = 1.0
            if st.assemble:  # the assembly's visits fix each feeder's flow into it
                for feeder, q in st.assemble.items():
                    j = [s.name for s in self.stations].index(feeder)
                    r = np.zeros(cols)
                    r[j] = next(self._share(j, w, product) for w, (t, _) in enumerate(self.successors(j)) if t == k)
                    r[k] = -q
                    rows.append(r)
                    rhs.append(0.0)
                continue
            for j in range(n):
                for w, (t, _) in enumerate(self.successors(j)):
                    if t == k:
                        row[j] -= self._share(j, w, product)
            if k in entries:
                row[n + entries.index(k)] = -1.0
            rows.append(row)
            rhs.append(0.0)
        out = np.zeros(cols)
        for j in range(n):
            for w, (t, _) in enumerate(self.successors(j)):
                if t < 0:
                    out[j] += self._share(j, w, product)
        rows.append(out)
        rhs.append(1.0)
        v = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0][:n]
        return np.clip(v, 0.0, None)

    def _share(self, j: int, way: int, product: str | None) -> float:
        """The share of station j's parts (of `product`) that its route number `way` takes (round robin and shortest
        queue: even; by product: all or none)."""
        st, ways = self.stations[j], self.successors(j)
        if st.route == "probability":
            return ways[way][1] or 0.0
        if st.route != "product" or len(ways) < 2:
            return 1.0 / len(ways)
        return 1.0 if st.product_route(product or "") == way else 0.0

    def ideal_cycle_notes(self) -> list[str]:
        """One line per station whose OEE ideal cycle is a mean (no design cycle and no lower bound), for output."""
        notes = []
        for st in self.stations:
            value, source = st.ideal_cycle()
            if not st.machine_cycle_times:
                if source.startswith("mean"):
                    notes.append(f"station {st.name}: OEE ideal cycle {value:g} s is the {source}")
                continue
            means = [m for m, (_, s) in zip(st.machine_names, st.design_cycles()) if s.startswith("mean")]
            if means:  # a machine's own cycle without a lower bound
                notes.append(f"station {st.name}: OEE ideal cycle {value:g} s is the {source}, {', '.join(means)}'s "
                             "the mean of a cycle time with no lower bound: performance can exceed 100 %")
        return notes

    def conveyor_notes(self) -> list[str]:
        """One line per conveyor (a transfer with limited places) that carries fewer parts than the stations' design
        rate: places / transfer time is the most it moves, and the bottleneck KPI names stations only."""
        conveyors = [(k, st) for k, st in enumerate(self.stations) if st.transfer is not None and st.buffer]
        if not conveyors:
            return []
        v, c = self.visits(), self.constraint()
        design = 1 / self.line_cycle(c, self.stations[c].ideal_cycle()[0])  # parts out of the line per second
        notes = []
        for k, st in conveyors:
            assert st.transfer is not None and st.buffer is not None
            carry = st.buffer / st.transfer / (v[k] * max((st.assemble or {"": 1}).values()))
            if carry < design * (1 - 1e-9):
                notes.append(f"the conveyor into {st.name} ({st.buffer} places, {st.transfer:g} s) carries at most "
                             f"{carry * 3600:.3g} parts/h out of the line, below its stations' design rate of "
                             f"{design * 3600:.3g}: it limits the line; give it more places (buffer) or a shorter "
                             "transfer if it should not")
        return notes

    def notes(self) -> list[str]:
        """What a plant engineer should know of the scenario before reading its KPIs (printed with them)."""
        return self.ideal_cycle_notes() + self.conveyor_notes() + [
            f"{what} {name} has no shift in the run's {self.duration / 86400:g} days (its calendar's days and "
            f"holidays): {why} to the end; check its calendar"
            for what, name, cal, why in [*(("repair crew", c.name, c.calendar, "its repairs and services wait")
                                           for c in self.repair_crews if c.on_call is None),
                                         *(("operator pool", o.name, o.calendar, "what needs its people waits")
                                           for o in self.operators)]
            if cal is not None and not cal.works_within(self.start, self.duration)]

    def machine_type_of(self, station: Station) -> MachineType:
        return self.machine_types[station.machine_type]

    def type_names(self) -> dict[str, str]:
        """Each machine's machine type's name, by machine name."""
        return {m: st.machine_type for st in self.stations for m in st.machine_names}


def _names(items: Any, key: str = "name") -> list[tuple[int, str]]:
    """(index, name) of the mappings in a list that have a string name; anything else is a field error elsewhere."""
    if not isinstance(items, list):
        return []
    return [(i, x[key]) for i, x in enumerate(items) if isinstance(x, dict) and isinstance(x.get(key), str)]


def _unknown(loc: str, name: Any, what: str, where: str, known: list[str]) -> list[tuple[str, str]]:
    """The problem of a reference to a `what` (a repair crew, a spare) that the scenario's list `where` lacks."""
    if not isinstance(name, str) or name in known:
        return []
    return [(loc, f"names {what} '{name}', but {where} has {known or 'none'}; add it to {where} or fix the name")]


def _twice(named: list[tuple[str, str]], what: str) -> list[tuple[str, str]]:
    """A problem for each (loc, name) whose name came before."""
    seen: dict[str, str] = {}
    out = []
    for loc, name in named:
        if name in seen:
            out.append((loc, f"{what} '{name}' is used twice (first at {seen[name]}); names must be unique"))
        else:
            seen[name] = loc
    return out


def _seconds(value: Any) -> float | None:
    try:
        v = parse_duration(value)
    except ValueError:
        return None
    return v if isinstance(v, float) else None


def reference_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Every cross-reference and consistency problem of a scenario, as (field path, message), read from the raw
    mapping so that they are reported with the field errors in one pass (parts of the wrong type are skipped:
    their field errors say what is wrong)."""
    problems: list[tuple[str, str]] = []
    duration, warmup = _seconds(data.get("duration")), _seconds(data.get("warmup", 0.0))
    if duration is not None and warmup is not None and 0 < duration <= warmup:
        problems.append(("warmup", f"warmup ({warmup:g} s) must be shorter than duration ({duration:g} s); "
                                   "shorten the warm-up (on the command line: --warmup)"))
    crews = _names(data.get("repair_crews"))
    problems += _twice([(f"repair_crews[{i}].name", n) for i, n in crews], "crew")
    crew_names = sorted({n for _, n in crews})
    stations = data.get("stations") if isinstance(data.get("stations"), list) else []
    problems += _twice([(f"stations[{i}].name", n) for i, n in _names(stations)], "station")
    machines: list[tuple[str, str]] = []
    for i, st in enumerate(stations):
        if not isinstance(st, dict) or not isinstance(st.get("name"), str):
            continue
        m = st.get("machines", 1)
        if isinstance(m, list):
            machines += [(f"stations[{i}].machines[{j}]", n) for j, n in enumerate(m) if isinstance(n, str)]
        elif isinstance(m, int):
            machines += [(f"stations[{i}].name", n) for n in
                         ([st["name"]] if m == 1 else [f"{st['name']}-{k + 1}" for k in range(max(0, min(m, 100)))])]
    problems += _twice(machines, "machine name (over all stations)")
    if data.get("blocking") == "before-service":
        problems += [(f"stations[{i}].batch", "a batch station holds the parts of its batch, which before-service "
                                              "blocking cannot reserve space for; use blocking: after-service")
                     for i, st in enumerate(stations) if isinstance(st, dict) and st.get("batch") is not None]
    types = data.get("machine_types") if isinstance(data.get("machine_types"), dict) else {}
    modes: set[str] = set()
    spares = _names(data.get("spares"))
    problems += _twice([(f"spares[{i}].name", n) for i, n in spares], "spare")
    spare_names = sorted({n for _, n in spares})
    for tname, mt in types.items():
        if not isinstance(mt, dict):
            continue
        modes |= {n for _, n in _names(mt.get("fault_modes"))}
        for j, fm in enumerate(mt.get("fault_modes") if isinstance(mt.get("fault_modes"), list) else []):
            if isinstance(fm, dict):
                problems += _unknown(f"machine_types.{tname}.fault_modes[{j}].repair_crew", fm.get("repair_crew"),
                                     "repair crew", "repair_crews", crew_names)
                problems += _unknown(f"machine_types.{tname}.fault_modes[{j}].spare", fm.get("spare"), "spare",
                                     "spares", spare_names)
        maint = mt.get("maintenance") if isinstance(mt.get("maintenance"), dict) else {}
        if maint.get("when") == "off-shift" and data.get("calendar") is None:
            problems.append((f"machine_types.{tname}.maintenance.when", "off-shift waits for the line's planned "
                             "stops, but the line has no calendar (it runs around the clock); give it a calendar: "
                             "with its shifts, or leave when out (at-once)"))
        for loc, crew in ((f"machine_types.{tname}.repair_crew", mt.get("repair_crew")),
                          (f"machine_types.{tname}.maintenance.crew", maint.get("crew"))):
            problems += _unknown(loc, crew, "repair crew", "repair_crews", crew_names)
    costs = data.get("costs") if isinstance(data.get("costs"), dict) else {}
    by_mode = costs.get("repair_by_mode") if isinstance(costs.get("repair_by_mode"), dict) else {}
    for mode in by_mode:
        if types and mode not in modes:
            problems.append((f"costs.repair_by_mode.{mode}", f"no machine type has fault mode '{mode}'; "
                                                            f"fault modes: {sorted(modes)}"))
    holding = costs.get("spare_holding") if isinstance(costs.get("spare_holding"), dict) else {}
    for name in holding:
        problems += _unknown(f"costs.spare_holding.{name}", name, "spare", "spares", spare_names)
    price = costs.get("energy")
    if isinstance(price, int | float) and price > 0 and types and not any(
            isinstance(mt, dict) and mt.get("power") is not None for mt in types.values()):
        problems.append(("costs.energy", "a price per kWh, but no machine type gives its power, so no energy is "
                                         "counted; give the machine types power: {working: KW, idle: KW}, or leave "
                                         "energy out"))
    source = data.get("source") if isinstance(data.get("source"), dict) else {}
    entries = _entries(stations)
    by_station = source.get("by_station")
    if isinstance(by_station, dict):
        fed_names = [stations[i].get("name") for i in sorted(entries) if isinstance(stations[i], dict)]
        for name in by_station:
            if name not in fed_names:
                problems.append((f"source.by_station.{name}", f"'{name}' is not a station the source feeds; "
                                                             f"those are: {', '.join(map(str, fed_names))}"))
    named = {st["name"] for st in stations if isinstance(st, dict) and isinstance(st.get("name"), str)}
    misrouted = any(isinstance(to, str) and to not in named and to != EXIT  # a typo in a route: what the graph
                    for i in range(len(stations)) for to in _targets(stations, i)) or any(  # implies beyond it,
        isinstance(st, dict) and isinstance(st.get("next"), list)  # or a route without its station, is unsaid
        and not all(isinstance(r, dict) and isinstance(r.get("to"), str) for r in st["next"]) for st in stations)
    for i, st in enumerate(stations):
        if not isinstance(st, dict):
            continue
        mt = st.get("machine_type")
        if isinstance(mt, str) and mt not in types:
            problems.append((f"stations[{i}].machine_type", f"machine type '{mt}' is not defined"
                                                           f"{_did_you_mean(mt, list(types))}; machine_types: "
                                                           f"{sorted(types)}"))
        buffer, initial = st.get("buffer"), st.get("initial", 0)
        if i in entries and source.get("kind", "saturated") == "saturated" and (buffer is not None or initial) \
                and not misrouted:
            problems.append((f"stations[{i}].buffer", f"station {st.get('name')} takes parts from the source, which "
                                                      "is saturated (parts always available): it has no buffer; "
                                                      "remove 'buffer'/'initial' or use source kind 'arrivals'"))
        if st.get("transfer") is not None:
            if i in entries and source.get("kind", "saturated") == "saturated" and not misrouted:
                problems.append((f"stations[{i}].transfer", f"station {st.get('name')} takes parts from the source, "
                                                            "which is saturated (parts always at hand): nothing "
                                                            "travels to it; remove 'transfer' or use source kind "
                                                            "'arrivals'"))
            elif buffer == 0:
                problems.append((f"stations[{i}].buffer", f"station {st.get('name')} has a transfer, whose parts "
                                                          "are in its buffer while on the way: a buffer of 0 holds "
                                                          "none; give the places on the conveyor (buffer: 8), or "
                                                          "leave buffer out (unlimited)"))
        if isinstance(buffer, int) and isinstance(initial, int) and initial > buffer:
            problems.append((f"stations[{i}].initial", f"starts with {initial} parts in a buffer of capacity "
                                                       f"{buffer}"))
    problems += _graph_problems(data, stations)
    problems += _product_problems(data, stations)
    pools = [n for _, n in _names(data.get("operators"))]
    problems += _twice([(f"operators[{i}].name", n) for i, n in _names(data.get("operators"))], "operator pool")
    for i, st in enumerate(stations):
        need = st.get("operators") if isinstance(st, dict) else None
        if isinstance(need, dict) and isinstance(need.get("pool"), str) and need["pool"] not in pools:
            problems.append((f"stations[{i}].operators.pool", f"no operator pool named '{need['pool']}'; "
                                                              f"operators: {pools or 'none defined'}"))
    first: dict[str, str] = {}
    for loc, msg in problems:  # one problem per field (a station's name is also its machine's name)
        first.setdefault(loc, msg)
    return list(first.items())


def _product_problems(data: dict[str, Any], stations: list[Any]) -> list[tuple[str, str]]:
    """Product names used by stations and the release sequence must be products."""
    products = data.get("products")
    names = [n for _, n in _names(products)]
    problems = _twice([(f"products[{i}].name", n) for i, n in _names(products)], "product")
    known = set(names)
    hint = f"products: {sorted(known)}" if known else "define them under products:"

    def check(loc: str, name: Any) -> None:
        if isinstance(name, str) and name not in known:
            problems.append((loc, f"no product named '{name}'; {hint}"))

    release = data.get("release")
    if isinstance(release, list):
        for i, n in enumerate(release):
            if isinstance(n, dict):
                check(f"release[{i}].product", n.get("product"))
            else:
                check(f"release[{i}]", n)
    orders = data.get("orders")
    for i, o in enumerate(orders if isinstance(orders, list) else []):
        if isinstance(o, dict):
            check(f"orders[{i}].product", o.get("product"))
    if orders and any(isinstance(st, dict) and st.get("assemble") for st in stations):
        problems.append(("orders", "a line with an assembly releases parts at each feeder, and an order's parts "
                                   "would go into assemblies made for others (not yet): release it with release:"))
    for i, st in enumerate(stations):
        if not isinstance(st, dict):
            continue
        routes = st.get("next") if isinstance(st.get("next"), list) else []
        if st.get("route") == "product":
            for j, r in enumerate(routes):
                listed = r.get("products") if isinstance(r, dict) else None
                for k, name in enumerate(listed if isinstance(listed, list) else []):
                    check(f"stations[{i}].next[{j}].products[{k}]", name)
            if not known:
                problems.append((f"stations[{i}].route", "route: product sends each product its own way, but the "
                                                         "line makes one kind of part; declare its products: "
                                                         "[{name: ...}], or route another way"))
            elif all(isinstance(r, dict) and isinstance(r.get("products"), list) for r in routes):
                listed = {n for r in routes for n in r["products"]}
                for name in [n for n in names if n not in listed]:
                    problems.append((f"stations[{i}].next", f"product '{name}' has no route here (each route names "
                                                            "its products); add it to one, or leave one route's "
                                                            "products out for every other product"))
        for key in ("cycle_times", "ideal_cycle_times", "scrap_by_product", "setup_matrix"):
            value = st.get(key)
            if isinstance(value, dict):
                for name, inner in value.items():
                    check(f"stations[{i}].{key}.{name}", name)
                    if key == "setup_matrix" and isinstance(inner, dict):
                        for to in inner:
                            check(f"stations[{i}].setup_matrix.{name}.{to}", to)
    return problems


def _did_you_mean(name: str, known: list[str]) -> str:
    """', did you mean 'assy'?' for a name one typo away from a known one, else ''."""
    close = difflib.get_close_matches(name, [k for k in known if isinstance(k, str)], n=1, cutoff=0.75)
    return f", did you mean '{close[0]}'?" if close else ""


def _targets(stations: list[Any], i: int) -> list[Any]:
    """The raw `next` targets of station i: names, or None for the default (the next station listed)."""
    nxt = stations[i].get("next") if isinstance(stations[i], dict) else None
    if isinstance(nxt, str):
        return [nxt]
    return [r.get("to") for r in nxt if isinstance(r, dict)] if isinstance(nxt, list) else [None]


def _entries(stations: list[Any]) -> set[int]:
    """Indices of the stations no station sends parts to (raw data; the serial short form: the first)."""
    named = {st["name"]: i for i, st in enumerate(stations) if isinstance(st, dict) and isinstance(st.get("name"), str)}
    fed: set[int] = set()
    for i in range(len(stations)):
        for to in _targets(stations, i):
            fed.add(i + 1 if to is None else named.get(to, -1) if isinstance(to, str) else -1)
    return {i for i in range(len(stations)) if i == 0 or i not in fed}


def _graph_problems(data: dict[str, Any], stations: list[Any]) -> list[tuple[str, str]]:
    """Routes to stations that exist, assemblies fed by the stations they name, parts that can reach the exit."""
    problems: list[tuple[str, str]] = []
    named = {st["name"]: i for i, st in enumerate(stations) if isinstance(st, dict) and isinstance(st.get("name"), str)}
    graph = any(isinstance(st, dict) and (st.get("next") is not None or st.get("assemble")) for st in stations)
    if not graph:
        problems += [(f"stations[{i}].rework", "a rework station takes the parts an inspection sends it; in a serial "
                                               "line every part passes it: route the inspection's parts, e.g. next: "
                                               f"[{{to: exit, p: 0.94}}, {{to: {st.get('name')}, p: 0.06}}], and "
                                               f"give this one next: the inspection")
                     for i, st in enumerate(stations) if _is_rework(st)]
        return problems
    if data.get("blocking") == "before-service":
        problems.append(("blocking", "before-service blocking needs a serial line (it reserves space at the one next "
                                     "station); a line with next: or assemble: uses after-service"))
    if EXIT in named:
        problems.append((f"stations[{named[EXIT]}].name", f"'{EXIT}' is where routes leave the line; rename the "
                                                          "station"))
    succ: dict[int, list[int]] = {}
    misrouted = False
    for i, st in enumerate(stations):
        if not isinstance(st, dict):
            continue
        nxt = st.get("next")
        if isinstance(nxt, list) and not all(isinstance(r, dict) and isinstance(r.get("to"), str) for r in nxt):
            misrouted = True  # a route without its station: the field error names it, its graph is unknown
        succ[i] = []
        for j, to in enumerate(_targets(stations, i)):
            if to is None:
                succ[i].append(i + 1 if i + 1 < len(stations) else -1)
            elif to == EXIT:
                succ[i].append(-1)
            elif isinstance(to, str) and to in named:
                succ[i].append(named[to])
                if named[to] == i:
                    problems.append((f"stations[{i}].next", f"station '{to}' sends parts to itself; a rework loop "
                                                            "goes through a rework station"))
            elif isinstance(to, str):
                loc = f"stations[{i}].next" + (f"[{j}].to" if isinstance(nxt, list) else "")
                problems.append((loc, f"no station named '{to}'{_did_you_mean(to, [*named, EXIT])}; stations: "
                                      f"{sorted(named)} (or '{EXIT}')"))
                misrouted = True
    if misrouted:  # a route to no station: the checks below would blame its stations for what the typo does
        return problems
    for i, st in enumerate(stations):
        asm = st.get("assemble") if isinstance(st, dict) else None
        if not isinstance(asm, dict):
            continue
        if i == 0:
            problems.append(("stations[0].assemble", "the first station takes parts from the source, so it cannot "
                                                     "be an assembly; list a feeding station first"))
        for feeder in asm:
            if feeder not in named:
                problems.append((f"stations[{i}].assemble.{feeder}", f"no station named '{feeder}'; stations: "
                                                                     f"{sorted(named)}"))
            elif i not in succ.get(named[feeder], []):
                problems.append((f"stations[{i}].assemble.{feeder}",
                                 f"station '{feeder}' does not send its parts here; give it next: {st.get('name')}"))
        feeders = {named[f] for f in asm if f in named}
        strays = [stations[j].get("name") for j, ks in succ.items() if i in ks and j not in feeders]
        if strays:
            problems.append((f"stations[{i}].assemble", f"stations {strays} send parts here but the assembly does not "
                                                        "take them; add them to assemble or route them elsewhere"))
    problems += _rework_problems(stations, succ)
    source = data.get("source") if isinstance(data.get("source"), dict) else {}
    if source.get("kind", "saturated") == "saturated" and any(0 in ks for ks in succ.values()):
        problems.append(("stations[0]", "the first station takes parts from a saturated source (always available, "
                                        "no buffer), so no station can send parts back to it; use source kind "
                                        "'arrivals' or route to another station"))
    reach = _leaving(succ)
    for i in succ:
        if i not in reach:
            problems.append((f"stations[{i}].next", "parts sent here can never leave the line (no route leads to "
                                                    f"'{EXIT}'); route one way out"))
    if problems:
        return problems
    for product in [n for _, n in _names(data.get("products"))]:  # each product's own ways, where routed by product
        # a station with no way for it: said by the product checks (as its way out here, not blamed on those before)
        own = {i: _product_ways(stations[i], ks, product) or [-1] for i, ks in succ.items()}
        seen, todo = set(), [i for i in _entries(stations) if i in own]
        while todo:
            i = todo.pop()
            if i >= 0 and i not in seen:
                seen.add(i)
                todo += own[i]
        reach = _leaving(own)
        problems += [(f"stations[{i}].next", f"parts of product '{product}' sent here can never leave the line (its "
                                             f"routes lead to no '{EXIT}'); route it one way out")
                     for i in sorted(seen) if i not in reach]
    return problems


def _is_rework(st: Any) -> bool:
    """Whether raw station data marks a rework station (`rework:` as the model reads it: true, yes, 1, ...)."""
    try:
        return isinstance(st, dict) and TypeAdapter(bool).validate_python(st.get("rework", False))
    except ValidationError:
        return False  # the field's own error names it


def _rework_problems(stations: list[Any], succ: dict[int, list[int]]) -> list[tuple[str, str]]:
    """A rework station is fed by stations that send it only some of their parts (an inspection's choice): fed by none,
    or with every part of a station, its rework quantity would be all or nothing."""
    problems: list[tuple[str, str]] = []
    for i, st in enumerate(stations):
        if not _is_rework(st):
            continue
        if st.get("assemble"):
            problems.append((f"stations[{i}].rework", "an assembly consumes parts into one; a rework station takes "
                                                      "single parts back: give the rework its own station"))
        senders = [j for j, ks in succ.items() if i in ks]
        if not senders:
            problems.append((f"stations[{i}].rework", "no station sends parts here; a rework station takes the parts "
                                                      "an inspection routes to it, e.g. next: [{to: exit, p: 0.94}, "
                                                      f"{{to: {st.get('name')}, p: 0.06}}]"))
        for j in senders:
            if set(succ[j]) == {i} and not _is_rework(stations[j]):  # a second bay after a first: fine
                problems.append((f"stations[{j}].next", f"station '{stations[j].get('name')}' sends every part to the "
                                                        f"rework station '{st.get('name')}', so none would be good "
                                                        "the first time; route only the parts that fail there"))
    return problems


def _leaving(succ: dict[int, list[int]]) -> set[int]:
    """The stations from which a part can leave the line (-1: out), given each station's successors."""
    reach = {-1}
    changed = True
    while changed:
        changed = False
        for i, ks in succ.items():
            if i not in reach and any(k in reach for k in ks):
                reach.add(i)
                changed = True
    return reach


def _product_ways(st: dict[str, Any], ways: list[int], product: str) -> list[int]:
    """Of a station's successors (raw data, in the order of its routes), those a part of `product` can take: all of
    them unless the station routes by product, then the route naming it, or else the one naming none."""
    routes = st.get("next")
    if st.get("route") != "product" or not isinstance(routes, list) or len(routes) != len(ways):
        return ways
    named = [w for r, w in zip(routes, ways) if isinstance(r.get("products"), list) and product in r["products"]]
    return named or [w for r, w in zip(routes, ways) if r.get("products") is None]


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"{what}: name '{n}' is used twice; names must be unique")
        seen.add(n)


class ScenarioError(Exception):
    """A scenario file the user must fix; the message is ready to print."""


def parse_yaml(path: str | Path, kind: str, error: type[ValueError]) -> tuple[Any, yaml.Node | None]:
    """A YAML document from a file, and its node tree (with lines), or `error` naming the file (and line) and the
    fix: the checks every configuration file gets (size, structure, duplicate keys, aliases, nesting)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: cannot read the {kind} file ({e.__class__.__name__}: {e}); "
                    "check the path and that it is a UTF-8 YAML file") from None
    if len(text) > MAX_FILE:
        raise error(f"{path.name}: {len(text):,} characters is more than a {kind} file may hold "
                    f"({MAX_FILE:,}); is this the right file?")
    # parsed once (by libyaml where PyYAML has it: a fuzzed 1,000-file validation went from 41 s to a few), the
    # structure checked on the nodes before anything is built from them
    loader = _Loader(text)
    too_deep = (f"{path.name}: nested too deeply to be a {kind} file (more than {MAX_DEPTH} levels); check the "
                "brackets and indentation")
    try:
        node = loader.get_single_node()
        _check_structure(path.name, node)
        data = loader.construct_document(node) if node is not None else None
    except ScenarioError as e:
        raise error(str(e)) from None
    except RecursionError:
        raise error(too_deep) from None
    except yaml.YAMLError as e:
        if isinstance(e, yaml.reader.ReaderError):  # a control character (binary data?): its line, in one line
            code = ord(e.character) if isinstance(e.character, str) else int(e.character)
            at = text.find(chr(code))  # the first one stopped the reader (libyaml counts bytes, not characters)
            raise error(f"{path.name}:{text.count(chr(10), 0, max(at, 0)) + 1}: not valid YAML ({e.reason}, "
                        f"U+{code:04X}); is this a text file? Remove the character") from None
        problem = getattr(e, "problem", None) or str(e)
        if "maximum nesting depth" in problem:  # libyaml's own limit on brackets
            raise error(too_deep) from None
        where = getattr(e, "problem_mark", None)
        line = f":{where.line + 1}" if where is not None else ""
        raise error(f"{path.name}{line}: not valid YAML ({problem}); check indentation, colons and quotes") \
            from None
    finally:
        loader.dispose()
    return data, node


def read_yaml(path: str | Path, kind: str, error: type[ValueError]) -> tuple[dict[str, Any], dict[str, int]]:
    """A YAML mapping from a file (`parse_yaml`'s checks) and the line of each key path."""
    data, node = parse_yaml(path, kind, error)
    path = Path(path)
    if not isinstance(data, dict):
        raise error(f"{path.name}: the file must hold a mapping of keys, got {type(data).__name__}; see the "
                    f"documented examples of a {kind} file")
    return data, _line_index(node)


def load_model(path: str | Path, model: type[M], kind: str, error: type[ValueError],
               cross_check: Callable[[M], list[tuple[str, str]]] | None = None) -> M:
    """A configuration file validated by `model`, or `error` listing every problem with its line and field;
    `cross_check` finds problems of a valid file (as (field path, message)), e.g. against another file it names."""
    data, lines = read_yaml(path, kind, error)
    try:
        obj = model.model_validate(data)
    except ValidationError as e:
        raise error(_format_errors(Path(path).name, e, lines, kind=kind, root=model)) from None
    if cross_check is not None and (problems := cross_check(obj)):
        raise error(_format_errors(Path(path).name, None, lines, problems, kind=kind))
    return obj


def write_scenario(scenario: Scenario, path: Path, header: str = "") -> None:
    """The scenario as a file (its defaults left out, a comment `header` first), read back so that what was written
    is known to be a valid scenario."""
    doc = scenario.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8",
                    errors="backslashreplace")  # a file name that is not UTF-8, in the header
    load_scenario(path)


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read and validate a scenario file; raise ScenarioError naming file, line and field on any mistake."""
    data, lines = read_yaml(path, "scenario", ScenarioError)
    if overrides:
        data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    return scenario_in(data, Path(path).name, lines)


def scenario_in(data: Any, name: str, lines: dict[str, int] | None = None) -> Scenario:
    """A scenario's mapping validated (a file's, or one kept inside another file: a run's run.json); a ScenarioError
    names `name`, and every wrong field with its line where `lines` has it."""
    references = reference_problems(data) if isinstance(data, dict) else []
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        raise ScenarioError(_format_errors(name, e, lines or {}, references)) from None
    if references:  # cannot happen (the model checks the same), but a scenario must never pass with one
        raise ScenarioError(_format_errors(name, None, lines or {}, references))
    return scenario


def with_policy(scenario: Scenario, policy: str, force: bool = False, **defaults: Any) -> Scenario:
    """The scenario with every machine type's maintenance policy replaced (e.g. run-to-failure for training data).

    Schedules and thresholds stay as the file gives them; `defaults` (every=..., threshold=..., wear_limit=...)
    fill in those a machine type lacks (with `force`, replace them everywhere: a parameter sweep); a policy whose
    parameter is still missing is a ScenarioError naming the machine type.
    """
    types = {}
    for name, mt in scenario.machine_types.items():
        current = mt.maintenance.model_dump(by_alias=True)
        current.update({k: v for k, v in defaults.items() if v is not None and (force or current.get(k) is None)})
        try:
            types[name] = MachineType.model_validate({**mt.model_dump(by_alias=True),
                                                      "maintenance": {**current, "policy": policy}})
        except ValidationError as e:
            msg = e.errors()[0]["msg"].removeprefix("Value error, ")
            raise ScenarioError(f"policy {policy!r}: machine type {name!r} cannot use it ({msg}); add the parameter "
                                f"under machine_types.{name}.maintenance or choose another policy") from None
    return scenario.model_copy(update={"machine_types": types})


def feeder_key(station: str, feeder: str) -> str:
    """The name an assembly's buffer from one feeder goes by among buffer levels (MQTT, the store): 'assy<shaft'."""
    return f"{station}<{feeder}"


def buffer_station(key: str) -> str:
    """The station a buffer level's name belongs to (the inverse of `feeder_key`: 'assy<shaft' → 'assy')."""
    return key.split("<", 1)[0]


#: the states in which a machine read from the line holds a part: working, blocked with it, or down mid-part (a type
#: whose clock runs only while it works fails only then, one on the calendar's clock mostly)
HOLDS_A_PART = ("working", "blocked", "down")


def parts_in_hand(scenario: Scenario, now: LineNow) -> list[int]:
    """Per station: the parts its machines held as the line's state was read, which a run continued from it puts
    back at the head of the station's buffer (an assembly's: its feeders') to be worked again from the start of a
    cycle, so the line's work in progress is carried whole. Not a batch station's (its machine keeps its load) nor
    one the saturated source feeds (it takes a new part instead)."""
    fed = scenario.source_fed()
    return [0 if st.batch is not None or i in fed else
            sum(1 for m in st.machine_names if (read := now.machines.get(m)) is not None and read.state in HOLDS_A_PART)
            for i, st in enumerate(scenario.stations)]


def continue_from(scenario: Scenario, now: LineNow) -> tuple[Scenario, list[str]]:
    """The scenario started from `now` (its clock, the machines' states and lives, the buffers' levels; no warm-up:
    the line is already running) and the notes worth telling the user (machines or stations it does not know,
    levels above a buffer's capacity)."""
    notes = []
    machines = {m for st in scenario.stations for m in st.machine_names}
    unknown = sorted(set(now.machines) - machines)
    if unknown:
        notes.append(f"machines not in the scenario, left out: {', '.join(unknown)}")
    missing = sorted(machines - set(now.machines))
    if missing:
        notes.append(f"no state read for {', '.join(missing)}: they start as in a new line")
    stations = list(scenario.stations)
    if now.buffers is not None:
        entries = scenario.source_fed()
        for i, st in enumerate(stations):
            if st.assemble:  # a buffer per feeder, each its own level ('station<feeder')
                cap = st.buffer if st.buffer is not None else 100_000
                levels = {f: now.buffers[feeder_key(st.name, f)] for f in st.assemble
                          if feeder_key(st.name, f) in now.buffers}
                for f, level in levels.items():
                    if level > cap:
                        notes.append(f"{st.name} (from {f}): {level} parts read, more than its buffer holds ({cap}); "
                                     f"starts with {cap}")
                stations[i] = st.model_copy(update={"feeder_initial": {f: max(0, min(v, cap))
                                                                       for f, v in levels.items()}})
                continue
            level = now.buffers.get(st.name)
            if level is None or i in entries:
                continue
            cap = st.buffer if st.buffer is not None else level
            if level > cap:
                notes.append(f"{st.name}: {level} parts read, more than its buffer holds ({cap}); starts with {cap}")
            stations[i] = st.model_copy(update={"initial": max(0, min(level, cap))})
    if held := sum(parts_in_hand(scenario, now)):
        notes.append(f"parts in the machines' hands (working, blocked or down): {held}, put back at the head of their "
                     "stations' buffers to be worked again from the start of a cycle")
    release = now.release
    if release is not None and release.product not in {n for n, _ in scenario.release_runs()}:
        notes.append(f"the release plan has no campaign of {release.product}: it starts from its first campaign")
        release = None
    products = {p.name for p in scenario.products}
    strays = sorted({m.product for m in now.machines.values() if m.product is not None and m.product not in products})
    if strays:
        notes.append(f"the line makes no {', '.join(strays)}: the machines that worked it last set up for none")
    kept = {k: v if v.product is None or v.product in products else v.model_copy(update={"product": None})
            for k, v in now.machines.items() if k in machines}
    keep = now.model_copy(update={"machines": kept, "release": release})
    return scenario.model_copy(update={"start": now.taken.replace(tzinfo=None), "warmup": 0.0, "now": keep,
                                       "stations": stations}), notes


def _union_tag(part: Any) -> bool:
    """Whether a part of an error's location is pydantic's tag of a union member (a distribution's, 'list[Route]',
    'str', 'function-after[...]'), not a key the user wrote."""
    return part in DIST_TAGS or str(part).startswith(("function-", "constrained-")) or "[" in str(part) \
        or part in ("str", "int", "float", "bool", "none")


def format_loc(loc: tuple[Any, ...]) -> str:
    """('stations', 1, 'normal', 'mean') -> 'stations[1].mean' (union tags are not user fields)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _union_tag(part):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


# a value of a union field that is not this member's type: noise where the member it is has errors of its own
_UNION_MISS = {"string_type", "int_type", "float_type", "bool_type", "none_required", "list_type", "dict_type",
               "model_type", "int_parsing", "float_parsing"}


def _format_errors(fname: str, err: ValidationError | None, lines: dict[str, int],
                   references: list[tuple[str, str]] = (), kind: str = "scenario",  # type: ignore[assignment]
                   root: type[BaseModel] | None = None) -> str:
    """Every problem of a file in one paragraph: field errors, then cross-references, each with its line."""
    parts = []
    root = root or Scenario  # the model the file is read by: the keys a misspelt one likely meant
    errors = err.errors(include_url=False) if err is not None else []
    deeper = [format_loc(tuple(e["loc"])) for e in errors]
    doc = "scenario" if kind == "scenario" else "connect"  # the page of the allowed keys
    for e in errors:
        if not e["loc"] and references:
            continue  # the model's own cross-reference check: listed below with lines
        loc = format_loc(tuple(e["loc"]))
        if e["type"] in _UNION_MISS and any(d.startswith((f"{loc}.", f"{loc}[")) for d in deeper):
            continue  # 'must be a valid string' of a union's other member, beside the errors inside the one given
        line = _nearest_line(loc, lines)
        msg = e["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1])
            meant = _did_you_mean(key, _keys_at(tuple(e["loc"]), root))
            msg = f"unknown key{meant}; remove it or check its spelling (see docs/{doc}.md for the allowed keys)"
            if re.fullmatch(r"\d+(\s*[a-zA-Z]+)?", key):  # '{mean: 0,85 s}': YAML splits a flow mapping at the comma
                msg = (f"unknown key {key!r}: the rest of a number written with a decimal comma? In {{...}} YAML "
                       "splits '0,85 s' at its comma; write numbers with a decimal point (0.85 s)")
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] == "model_type" and (keys := _keys_at((*e["loc"], ""), root)):  # not pydantic's class name
            msg = f"must be a mapping of {', '.join(keys)} (see docs/{doc}.md), got {e.get('input')!r}"
        elif "input" in e and e["type"] != "union_tag_invalid" and not isinstance(e["input"], (dict, list)) \
                and repr(e["input"]) not in msg and ", got " not in msg:  # a validator that said it already
            msg = f"{msg}, got {e['input']!r}"
        if e["type"] in ("float_parsing", "int_parsing") and (point := with_decimal_point(e.get("input"))):
            msg += f"; write it with a decimal point, {point}"
        parts.append(f"{fname}{f':{line}' if line else ''} {loc}: {msg}")
    for loc, msg in references:
        line = _nearest_line(loc, lines)
        parts.append(f"{fname}{f':{line}' if line else ''} {loc}: {msg}")
    head = f"{fname}: {len(parts)} problem{'s' if len(parts) > 1 else ''} in the {kind}; fix and run again. "
    return head + "; ".join(parts) if len(parts) > 1 else parts[0]


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser, where PyYAML was built with it
MAX_FILE = 1 << 20  # characters of a scenario file
MAX_DEPTH = 32  # levels of nesting
MAX_NODES = 200_000  # values, counting each use of an alias again (a "billion laughs" file stops here)


def _check_structure(name: str, node: yaml.Node | None) -> None:
    """Refuse what a safe loader lets through but a scenario never needs: duplicate keys (YAML keeps the last one
    silently), nesting deeper than MAX_DEPTH, and aliases that expand beyond MAX_NODES values."""
    seen = 0
    stack: list[tuple[yaml.Node, int]] = [(node, 0)] if node is not None else []
    while stack:
        n, depth = stack.pop()
        seen += 1
        line = n.start_mark.line + 1
        if seen > MAX_NODES:
            raise ScenarioError(f"{name}:{line}: the document expands to more than {MAX_NODES:,} values (aliases "
                                "used over and over?); a scenario needs far fewer, write it out plainly")
        if depth > MAX_DEPTH:
            raise ScenarioError(f"{name}:{line}: nested more than {MAX_DEPTH} levels deep; a scenario needs far "
                                "fewer, check the indentation")
        if isinstance(n, yaml.MappingNode):
            keys: dict[str, int] = {}
            for k, v in n.value:
                key = str(k.value)
                if key in keys:
                    raise ScenarioError(f"{name}:{k.start_mark.line + 1}: key '{key}' appears twice in one mapping "
                                        f"(first on line {keys[key]}); YAML would keep only the last, remove one")
                keys[key] = k.start_mark.line + 1
                stack.append((v, depth + 1))
        elif isinstance(n, yaml.SequenceNode):
            stack.extend((v, depth + 1) for v in n.value)


def _line_index(node: yaml.Node | None) -> dict[str, int]:
    """Map each field path in the YAML document to its 1-based line number."""
    index: dict[str, int] = {}

    def walk(n: yaml.Node, path: str) -> None:
        index[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = str(k.value)
                child = f"{path}.{key}" if path else key
                index[child] = k.start_mark.line + 1
                walk(v, child)
                index[child] = k.start_mark.line + 1
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                walk(v, f"{path}[{i}]")

    if node is not None:
        walk(node, "")
    return index


def _nearest_line(loc: str, lines: dict[str, int]) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        cut = max(loc.rfind("."), loc.rfind("["))
        loc = loc[:cut] if cut > 0 else ""
    return None


def _keys_at(loc: tuple[Any, ...], root: type[BaseModel]) -> list[str]:
    """The keys a scenario file may hold where `loc` (an error's location, its last part the key) points: the fields
    of the model there, as a file writes them (by alias); what a misspelt key there likely meant."""
    def members(ann: Any) -> list[Any]:
        while typing.get_origin(ann) is Annotated:
            ann = typing.get_args(ann)[0]
        if typing.get_origin(ann) in (typing.Union, types.UnionType):
            return [m for a in typing.get_args(ann) for m in members(a)]
        return [ann]

    anns: list[Any] = [root]
    for part in loc[:-1]:
        if _union_tag(part):
            continue  # the same union goes on
        found = []
        for m in (m for a in anns for m in members(a)):
            if isinstance(m, type) and issubclass(m, BaseModel):
                field = next((f for n, f in m.model_fields.items() if part in (n, f.alias)), None)
                if field is not None:
                    found.append(field.annotation)
            elif typing.get_origin(m) in (list, dict, tuple) and typing.get_args(m):
                found.append(typing.get_args(m)[-1])  # an item of a list, a value of a map
        anns = found
    return sorted({k for m in (m for a in anns for m in members(a)) if isinstance(m, type) and issubclass(m, BaseModel)
                   for k in (f.alias or n for n, f in m.model_fields.items())})


def json_schema() -> dict[str, Any]:
    """The JSON Schema of scenario files, generated from the pydantic model (for editors and docs)."""
    schema = Scenario.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "linetwin scenario"
    return schema


def write_json_schema(path: str | Path) -> None:
    Path(path).write_text(json.dumps(json_schema(), indent=2) + "\n", encoding="utf-8")
