"""The SimPy model of a serial production line: source, buffers, machines, repair crews, sink.

Machines are generator processes in the spirit of SimPy's machine-shop example. Failures on the
operating clock are computed inline (the machine knows when its clock will run out while it works),
so a normal cycle costs one timeout; calendar-clock failures also end waits for parts or space.
Everything the line does is written to per-machine logs (`MachineLog`): the ground truth that
sensors, KPIs and predictors read, kept apart from the sensor readings.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from array import array
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import simpy
from simpy.events import PENDING

from twin.distributions import Sampler, residual, residual_in_service
from twin.maintenance import MaintenancePolicy, RunToFailure, policy_from_spec
from twin.scenario import (
    DAYS,
    Calendar,
    FaultMode,
    MachineNow,
    MachineType,
    MinorStops,
    RepairCrew,
    Scenario,
    Spare,
    Station,
    feeder_key,
    parts_in_hand,
)

STATES = ("working", "starved", "blocked", "down", "maintenance", "setup", "off_shift", "waiting_operator")
WORKING, STARVED, BLOCKED, DOWN, MAINTENANCE, SETUP, OFF_SHIFT, WAITING_OPERATOR = range(len(STATES))
#: the states a 'calendar' reliability clock runs in (an 'operating' one runs while working only): the model's, and
#: what a fit, a what-if's ages and a plant's MTBF count as its running time
UP_STATES = ("working", "starved", "blocked", "setup", "waiting_operator")
#: states in which a machine is powered but not working, and in which it is stopped
IDLE_STATES = (STARVED, BLOCKED, SETUP, WAITING_OPERATOR)
STOPPED_STATES = (DOWN, MAINTENANCE, OFF_SHIFT)
_NAN = float("nan")
_STATE_NAMES = np.array(STATES, dtype=object)  # a state code's name, for arrays of codes

# streams of random numbers per machine; fixed numbers so a stream never shifts when another is added
STREAM_CYCLE, STREAM_SCRAP, STREAM_SETUP, STREAM_MAINT, STREAM_AGE, STREAM_POLICY, STREAM_ROUTE = 0, 1, 2, 3, 4, 5, 6
STREAM_MINOR_GAP, STREAM_MINOR_STOP = 7, 8  # minor stops: working time between them, and their lengths
STREAM_STARTUP = 9  # uniforms deciding start-up rejects
STREAM_TTF, STREAM_REPAIR = 100, 200  # + fault mode index
STREAM_PRODUCT_CYCLE, STREAM_PRODUCT_SETUP = 300, 100_000  # + product index (setups: + 1000 x from + to)
STREAM_RELEASE = 50  # with machine slot -1: the product mix released
STREAM_SPARE = 500_000  # with machine slot -1, + spare index: its lead times
STREAM_NOW = 60  # a line continued from a state read from the plant (`twin run --from`): lives and repairs left
STREAM_SENSOR = 1000  # + 10 * sensor index + purpose
STREAM_SOURCE = 0  # with machine slot -1 (+ k for the k-th further entry station of a graph)
#: a part's fate in `Line.scrapped_at`: still inside or left good (-1), consumed by an assembly (-2), else the
#: index of the station that scrapped it
INSIDE_OR_GOOD, CONSUMED = -1, -2


def step_lengths(starts: np.ndarray, a: float, b: float) -> np.ndarray:
    """How long each step of a step function lasts inside [a, b]: step i from starts[i] to starts[i + 1], the last one
    on to b (a machine's states, a pool's busy operators, a stock's or a buffer's level)."""
    ends = np.append(starts[1:], max(b, starts[-1]))
    return np.clip(np.minimum(ends, b) - np.maximum(starts, a), 0.0, None)


def step_integral(starts: array, values: array, a: float, b: float) -> float:
    """The integral over [a, b] of a step function logged as arrays (value `values[i]` from `starts[i]` on): a pool's
    busy people, a stock's parts on hand."""
    t = np.frombuffer(starts, dtype=np.float64)
    return float(np.sum(np.frombuffer(values, dtype=np.int32).astype(float) * step_lengths(t, a, b)))


def rng_for(seed: int, replication: int, slot: int, stream: int) -> np.random.Generator:
    """An independent generator keyed by (replication, machine slot, stream): stable under any run order."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(replication, slot + 1, stream)))


@dataclass
class MachineLog:
    """Ground truth of one machine: state changes with the reliability clock, lives, finishes."""

    t: array = field(default_factory=lambda: array("d"))
    state: array = field(default_factory=lambda: array("b"))
    clock: array = field(default_factory=lambda: array("d"))
    finished: array = field(default_factory=lambda: array("d"))  # times a part left this machine good
    scrapped: array = field(default_factory=lambda: array("d"))  # times a part was scrapped here
    reworked: array = field(default_factory=lambda: array("d"))  # times a part left for a rework station (of finished)
    startup_rejected: array = field(default_factory=lambda: array("d"))  # times a start-up reject was scrapped here
    begun: array = field(default_factory=lambda: array("d"))  # times work on a part began (for OEE performance)
    begun_product: array = field(default_factory=lambda: array("b"))  # and its product (lines with products)
    #: per state change, the fault mode (index into `modes`) a down machine is being repaired for; -1 otherwise
    reason: array = field(default_factory=lambda: array("b"))
    #: per fault mode: (time, clock at renewal, drawn life) each time that mode's life starts
    lives: list[list[tuple[float, float, float]]] = field(default_factory=list)
    modes: tuple[str, ...] = ()  # the fault modes' names, for `reason`

    def states_from(self, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """State changes logged from index `start` on: (times, state names, reasons), for readers that follow
        the log. A reason is the fault mode a down machine is repaired for (its downtime reason code), else ''."""
        n = len(self.t)
        reasons = np.asarray(["", *self.modes], dtype=object)[np.frombuffer(self.reason, dtype=np.int8)[start:n] + 1]
        return (np.frombuffer(self.t, dtype=np.float64)[start:n].copy(),
                _STATE_NAMES[np.frombuffer(self.state, dtype=np.int8)[start:n]], reasons)


@dataclass(frozen=True)
class Event:
    """A ground-truth event: failure, repair start/end, maintenance start/end, changeover."""

    t: float
    machine: str
    kind: str
    fault_mode: str = ""
    detail: str = ""


class ShiftCalendar:
    """Planned production windows in simulation seconds, for quick 'is the line on shift?' look-ups."""

    def __init__(self, cal: Calendar, start: dt.datetime, horizon: float) -> None:
        day0 = start.replace(hour=0, minute=0, second=0, microsecond=0)
        offset = (start - day0).total_seconds()
        starts: list[float] = []
        ends: list[float] = []
        # from the day before the start: its night shift may reach into the first hours (a run from 02:00 on shift)
        days = range(-1, int(horizon // 86400) + 3)
        names = {day: DAYS[(day0 + dt.timedelta(days=day)).weekday()] for day in days}
        working = {day: cal.works_on(names[day]) and not cal.is_holiday((day0 + dt.timedelta(days=day)).date())
                   for day in days}
        for day in days:
            if not working[day]:
                continue
            for a, b in cal.windows(names[day]):
                s, e = day * 86400 + a - offset, day * 86400 + b - offset
                if e <= 0:
                    continue
                if ends and max(s, 0.0) <= ends[-1] + 1e-9:  # windows that touch or overlap (a night shift into
                    ends[-1] = max(ends[-1], e)  # the next day's first) merge into one
                    continue
                starts.append(max(s, 0.0))
                ends.append(e)
        self.starts, self.ends = starts, ends
        self.longest_stop = max((a - b for a, b in zip(starts[1:], ends)), default=float("inf"))
        #: each shift as the calendar names it, (start, end) in simulation seconds, in time order (the windows above
        #: merge shifts that touch or overlap): what a per-shift report counts
        self.shifts = sorted((day * 86400 + a - offset, day * 86400 + b - offset)
                             for day in days if working[day]
                             for a, b in cal.spans(names[day]) if day * 86400 + b - offset > 0)
        # the shift of the last look-up that fell inside one: machines ask at every part, and their hot loop tests
        # `on_from <= t < on_until` itself before calling `next_start`
        self.on_from = self.on_until = 0.0

    def next_start(self, t: float) -> float | None:
        """None when t is inside a shift, else when the next shift starts (inf if none)."""
        if self.on_from <= t < self.on_until:
            return None
        i = bisect.bisect_right(self.ends, t)
        if i < len(self.starts) and self.starts[i] <= t:
            self.on_from, self.on_until = self.starts[i], self.ends[i]
            return None
        return self.starts[i] if i < len(self.starts) else float("inf")

    def planned(self, a: float, b: float) -> float:
        """Planned production time inside [a, b]."""
        return float(sum(max(0.0, min(e, b) - max(s, a)) for s, e in zip(self.starts, self.ends)))

    def planned_between(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Planned production time inside each interval [a[i], b[i]] at once (a cumulative planned-time curve)."""
        knots = np.ravel(np.column_stack([self.starts, self.ends]))
        if not len(knots):
            return np.zeros(len(a))
        cum = np.concatenate([[0.0], np.cumsum(np.diff(knots) * np.tile([1.0, 0.0], len(self.starts))[:-1])])
        return np.clip(np.interp(b, knots, cum) - np.interp(a, knots, cum), 0.0, None)

    def stop_fits(self, t: float, length: float) -> bool:
        """Whether the line is off shift at t for at least `length` seconds, or for as long as any stop of the
        calendar lasts when none is that long (a job longer than every stop takes the next one)."""
        nxt = self.next_start(t)
        return nxt is not None and nxt - t >= min(length, self.longest_stop)

    def next_change(self, t: float) -> float:
        """When the line next goes on or off shift after t (inf if never)."""
        i = bisect.bisect_right(self.starts, t)
        j = bisect.bisect_right(self.ends, t)
        return min(self.starts[i] if i < len(self.starts) else float("inf"),
                   self.ends[j] if j < len(self.ends) else float("inf"))


class _ProductWork:
    """What a machine does differently per product: its cycle time, scrap rate and the sequence-dependent setup
    when the product changes."""

    def __init__(self, m: Machine, sc: Scenario, station: Station) -> None:
        names = [p.name for p in sc.products]
        self.m = m
        self.cycles = [Sampler(station.cycle_times.get(n, station.cycle_time),
                               rng_for(sc.seed, m.line.replication, m.slot, STREAM_PRODUCT_CYCLE + k)).take
                       for k, n in enumerate(names)]  # per product, its cycle time's draw
        self.scrap = [station.scrap_by_product.get(n, station.scrap) for n in names]
        rep = m.line.replication
        self.setups = {(names.index(a), names.index(b)): Sampler(
            d, rng_for(sc.seed, rep, m.slot, STREAM_PRODUCT_SETUP + 1000 * names.index(a) + names.index(b)))
            for a, row in station.setup_matrix.items() for b, d in row.items()}
        self.last = -1

    def needs_setup(self, product: int) -> bool:
        """Whether starting this product takes a setup first (it differs from the last one and has one)."""
        return self.last >= 0 and product != self.last and (self.last, product) in self.setups

    def set_up(self, product: int) -> Generator[simpy.Event, Any, None]:
        """The sequence-dependent setup from the last product to this one."""
        m = self.m
        names = m.line.product_names
        detail = f"{names[self.last]} -> {names[product]}"
        m.line.record(m, "changeover_start", detail=detail)
        yield from m.set_up(self.setups[self.last, product]())
        m.line.record(m, "changeover_end", detail=detail)

    def start(self, product: int) -> float:
        """Start the product (after its setup, `set_up`): its scrap rate, and its cycle time drawn."""
        self.last = product
        m = self.m
        m.scrap_base = self.scrap[product]
        m.log.begun_product.append(product)
        return self.cycles[product]()


class MinorStopper:
    """A machine's minor stops (`MinorStops`): after a drawn working time, a stop of a drawn length, worked into the
    part's cycle (the machine shows working throughout), each logged with its start and length."""

    __slots__ = ("duration", "gap", "left", "lengths", "starts")

    def __init__(self, spec: MinorStops, seed: int, rep: int, slot: int) -> None:
        self.gap = Sampler(spec.every, rng_for(seed, rep, slot, STREAM_MINOR_GAP)).take
        self.duration = Sampler(spec.duration, rng_for(seed, rep, slot, STREAM_MINOR_STOP)).take
        self.left = self.gap()  # working time until the next stop
        self.starts, self.lengths = array("d"), array("d")

    def extend(self, d: float, now: float) -> float:
        """A cycle of d seconds of work begun at `now`, with the stops that fall within it: its length."""
        left, extra = self.left, 0.0
        while left <= d:
            length = self.duration()
            self.starts.append(now + left + extra)
            self.lengths.append(length)
            extra += length
            left += self.gap()
        self.left = left - d
        return d + extra


@dataclass
class Draws:
    """A machine's random streams, one per purpose, each from the scenario's seed, the replication and the machine's
    slot (common random numbers: a policy that changes when lives end does not change what is drawn)."""

    cycle: Sampler  # cycle times
    scrap: Sampler  # uniforms deciding scrap
    setup: Sampler | None  # changeover times (a station with changeovers)
    maintenance: Sampler  # maintenance durations
    ttf: list[Sampler]  # per fault mode: lives
    repair: list[Sampler]  # per fault mode: repair times


@dataclass
class Wiring:
    """Where a machine takes its parts from and hands them to: set once when the line is built (`Line`)."""

    inbuf: Buffer | None = None
    outbuf: Buffer | None = None
    inslots: simpy.Container | None = None  # before-service blocking: space up to here
    outslots: simpy.Container | None = None
    is_last: bool = False
    router: Router | None = None  # a graph line: where each finished part goes
    inputs: list[tuple[Buffer, int]] | None = None  # an assembly: (feeder's buffer, parts per assembly)
    is_constraint: bool = False  # at the station whose design rate limits the line (line OEE counts parts here)


class Machine:
    """One machine: takes a part, works it (maybe failing mid-cycle), hands it on, asks its policy."""

    def __init__(self, line: Line, station: Station, station_idx: int, slot: int, name: str,
                 mtype: MachineType) -> None:
        self.line, self.env, self.name, self.slot = line, line.env, name, slot
        self.station, self.station_idx, self.mtype = station, station_idx, mtype
        sc, rep = line.scenario, line.replication
        self.modes: list[FaultMode] = list(mtype.fault_modes)
        self.draws = Draws(
            cycle=Sampler(station.cycle_for(name), rng_for(sc.seed, rep, slot, STREAM_CYCLE)),
            scrap=Sampler(_UNIT, rng_for(sc.seed, rep, slot, STREAM_SCRAP)),
            setup=(Sampler(station.changeover.duration, rng_for(sc.seed, rep, slot, STREAM_SETUP))
                   if station.changeover else None),
            maintenance=Sampler(mtype.maintenance.duration, rng_for(sc.seed, rep, slot, STREAM_MAINT)),
            ttf=[Sampler(f.ttf, rng_for(sc.seed, rep, slot, STREAM_TTF + i)) for i, f in enumerate(self.modes)],
            repair=[Sampler(f.repair, rng_for(sc.seed, rep, slot, STREAM_REPAIR + i))
                    for i, f in enumerate(self.modes)])
        self.products: _ProductWork | None = _ProductWork(self, sc, station) if sc.products else None
        self.minor = MinorStopper(mtype.minor_stops, sc.seed, rep, slot) if mtype.minor_stops is not None else None
        self.startup = station.startup_scrap  # start-up rejects after each restart: the parts still to come of them
        self.startup_left = 0
        self.startup_u = Sampler(_UNIT, rng_for(sc.seed, rep, slot, STREAM_STARTUP)).take if self.startup else None
        self.wear_modes = [i for i, f in enumerate(self.modes) if f.kind == "wear"]
        self.scrap_base = station.scrap
        self.scrap_max = max([self.scrap_base, *station.scrap_by_product.values()]) + \
            sum(f.scrap_increase for f in self.modes)  # at full wear
        self.policy: MaintenancePolicy = line.policy_for(self)
        self.calendar_clock = mtype.clock == "calendar"
        self.work_rate = 1.0 if self.calendar_clock else (station.load / mtype.reference_load) ** mtype.load_exponent
        # clock speed per state: how fast the reliability clock runs in each state
        up = 1.0 if self.calendar_clock else 0.0
        self.rates = tuple(self.work_rate if s == "working" else up if s in UP_STATES else 0.0 for s in STATES)
        self.log = MachineLog(lives=[[] for _ in self.modes], modes=tuple(m.name for m in self.modes))
        self.state = -1
        self.operator: Any = None  # the run operator's request while the machine works a part
        self.t_last = 0.0
        self.clock = 0.0
        self.work_time = 0.0
        self.work_at_service = 0.0
        self.parts_done = 0
        self.parts_since_service = 0
        self.pending_order: str | None = None
        self.renewals = 0
        self._wear_cache_key, self._wear_cache_level, self._wear_cache_at = -1, -1.0, 0.0
        self._setup_at = -1
        self.born = [0.0] * len(self.modes)
        self.life = [float("inf")] * len(self.modes)
        self.fail_clock, self.fail_mode = float("inf"), -1
        for i in range(len(self.modes)):
            self._renew(i, record=False)
        if mtype.start_age == "random" and self.wear_modes:
            u = rng_for(sc.seed, rep, slot, STREAM_AGE).random(len(self.modes))
            for i in self.wear_modes:  # already part-way through the first life
                self.born[i] = -float(u[i]) * self.life[i]
            self._renew_due()
            self.renewals += 1
        self.resume: tuple[int, int, float] | None = None  # a stop in progress when the line's state was read
        self.queued: float | None = None  # that stop waiting for its crew: its priority in the crew's queue
        now = sc.now.machines.get(name) if sc.now is not None else None
        if now is not None:
            self._continue(now, rng_for(sc.seed, rep, slot, STREAM_NOW))
        self._set_state(STARVED)
        for i in range(len(self.modes)):
            self.log.lives[i].append((0.0, self.born[i], self.life[i]))
        self.wiring = Wiring()
        self.off_shift_wait = -1  # the waiting state (starved, blocked) shown as off_shift while the line is off
        self.opportunistic = mtype.maintenance.opportunistic  # share of the way to due that takes an opportunity
        self.wake: simpy.Event | None = None  # while waiting for a part or space: fired by an opportunity
        #: a service due on shift that waits for the next planned stop long enough (maintenance `when: off-shift`)
        self.off_shift_service = mtype.maintenance.when == "off-shift" and line.calendar is not None
        self.held: str | None = None
        self.held_since = 0.0  # when the held service fell due
        #: spare parts a service takes (those of the wear modes it renews), by spare: how many
        self.service_parts = dict(Counter(f.spare for f in (self.modes[i] for i in self.wear_modes) if f.spare))
        self.short_since: float | None = None  # a service due since then waits for its spare parts, working on
        self.max_wait = mtype.maintenance.max_wait if mtype.maintenance.max_wait is not None else float("inf")
        self.service_mean = mtype.maintenance.duration.mean
        # a request not met at once is waited for in _waiter: the calendar clock runs on, an opportunity or the shift's
        # end (a held service) may come first
        self.interruptible = self.calendar_clock or self.opportunistic is not None or self.off_shift_service

    def _continue(self, now: MachineNow, rng: np.random.Generator) -> None:
        """Start from a state read from the line: each fault mode's life from its forecast RUL, else drawn given
        the age it has reached (a fresh draw when neither is known); a repair or maintenance in progress resumes
        for what is left of it, drawn given how long it has lasted. A wear mode never renewed in the records of a
        line in service (`start_age: random`) was already part-way through its life at the first record: how far
        is drawn as the line's start draws it, given that it has lasted since."""
        self._now_rng = rng
        rate = self.rates[WORKING] if not self.calendar_clock else 1.0
        in_service = self.mtype.start_age == "random"
        for i, f in enumerate(self.modes):
            age = now.ages.get(f.name)
            rul = now.rul.get(f.name)
            if rul is not None:
                a = (age or 0.0) * rate
                self.born[i], self.life[i] = -a, a + rul * rate
            elif age is not None and in_service and f.kind == "wear" and f.name in now.unrenewed:
                age, left = residual_in_service(f.ttf, rng, age)
                self.born[i], self.life[i] = -age * rate, (age + left) * rate
            elif age is not None:
                self.born[i], self.life[i] = -age * rate, (age + residual(f.ttf, rng, age)) * rate
        self._renew_due()
        if self.products is not None and now.product in self.line.product_names:  # set up for it: another sets up
            self.products.last = self.line.product_names.index(now.product)
        modes = [f.name for f in self.modes]
        if now.state == "down" and now.mode in modes:
            self.resume = (DOWN, modes.index(now.mode), now.since)
        elif now.state == "maintenance":
            self.resume = (MAINTENANCE, -1, now.since)
        elif now.state == "working" and self.station.batch is not None:  # an oven's load: its parts are not read
            self.resume = (WORKING, -1, now.since)

    def _waiting(self, state: int) -> None:
        """Start waiting for a part or for space (off shift, the machine shows off_shift meanwhile)."""
        cal = self.line.calendar
        if cal is not None and cal.next_start(self.env._now) is not None:
            self._set_state(OFF_SHIFT)
            self.off_shift_wait = state
        else:
            self._set_state(state)

    def shift_ends(self) -> None:
        """The line goes off shift: a machine waiting for a part or for space is off shift, not starved or blocked."""
        if self.state in (STARVED, BLOCKED):
            waiting = self.state
            self._set_state(OFF_SHIFT)
            self.off_shift_wait = waiting
            if self.held is not None and self.wake is not None:  # a service held for this stop: take it now
                self.wake_up()

    def shift_starts(self) -> None:
        """Back on shift: a machine still waiting shows its waiting state again."""
        if self.off_shift_wait >= 0 and self.state == OFF_SHIFT:
            self._set_state(self.off_shift_wait)

    # --- clock and state -------------------------------------------------------------------------
    def _set_state(self, s: int, reason: int = -1) -> None:
        """Log a change of state (down: with the failed fault mode as its reason); the clocks are brought up to now
        only at changes (they run linearly between)."""
        self.off_shift_wait = -1
        old = self.state
        if s == old:
            return
        # here and in the other per-event paths: SimPy's clock attribute, not its `now` property (a call per read)
        now = self.env._now
        clock = self.clock
        if old >= 0:
            dt_ = now - self.t_last
            clock = self.clock = clock + dt_ * self.rates[old]
            if old == WORKING:
                self.work_time += dt_
        self.t_last = now
        self.state = s
        log = self.log
        log.t.append(now)
        log.state.append(s)
        log.reason.append(reason)
        log.clock.append(clock)

    def clock_now(self) -> float:
        return self.clock + (self.env._now - self.t_last) * self.rates[self.state]

    def now(self) -> float:
        """Simulation time (seconds since the start)."""
        return float(self.env._now)

    def operating_time(self) -> float:
        """Seconds this machine has worked since the start."""
        return self.work_time + (self.env._now - self.t_last if self.state == WORKING else 0.0)

    def work_time_since_service(self) -> float:
        extra = self.env._now - self.t_last if self.state == WORKING else 0.0
        return self.work_time + extra - self.work_at_service

    def wear(self, i: int) -> float:
        """Wear of fault mode i now: 0 = new, 1 = failing."""
        age = (self.clock_now() - self.born[i]) / self.life[i]
        return min(1.0, max(0.0, age)) ** self.modes[i].progression

    def _startup_reject(self, pid: int, scrapped: bool) -> bool:
        """One of the parts after a restart (`startup_left` > 0): whether it is a start-up reject (not when `scrapped`
        already; its draw is taken either way, so that each part after a restart has its own)."""
        assert self.startup is not None and self.startup_u is not None
        self.startup_left -= 1
        if self.startup_u() < self.startup.scrap and not scrapped:
            self.line.startup_rejects.add(pid)
            self.log.startup_rejected.append(self.env._now)
            return True
        return False

    def restarted(self) -> None:
        """A setup, repair or service has ended: the next parts are start-up rejects more often."""
        if self.startup is not None:
            self.startup_left = self.startup.parts

    def _scrap_draw_hits(self, u: float) -> bool:
        """Whether the uniform draw u scraps the part (the caller checked that it could: u < scrap_max); wear is
        only evaluated then."""
        p = self.scrap_base + sum(self.modes[i].scrap_increase * self.wear(i) for i in self.wear_modes)
        return u < p

    def clock_at_wear(self, level: float) -> float:
        """The reliability-clock reading at which the first wear mode reaches `level` (cached per life)."""
        if self._wear_cache_key != self.renewals or self._wear_cache_level != level:
            self._wear_cache_at = min((self.born[i] + self.life[i] * level ** (1 / self.modes[i].progression)
                                       for i in self.wear_modes), default=float("inf"))
            self._wear_cache_key, self._wear_cache_level = self.renewals, level
        return self._wear_cache_at

    def health(self) -> float:
        """The health indicator: the highest wear over the wear modes (0 if it has none)."""
        return max((self.wear(i) for i in self.wear_modes), default=0.0)

    def _renew(self, i: int, record: bool = True) -> None:
        self.renewals += 1
        self.born[i] = self.clock_now()
        self.life[i] = self.draws.ttf[i]()
        if record:
            self.log.lives[i].append((self.env.now, self.born[i], self.life[i]))
        self._renew_due()

    def _renew_due(self) -> None:
        """Which fault mode's life runs out first, and at what clock reading."""
        ends = [b + life for b, life in zip(self.born, self.life)]
        self.fail_mode = int(np.argmin(ends)) if ends else -1
        self.fail_clock = ends[self.fail_mode] if ends else float("inf")

    # --- the machine's life ----------------------------------------------------------------------
    def run(self) -> Generator[simpy.Event, Any, None]:
        env, line = self.env, self.line
        changeover = self.station.changeover
        bbs = line.before_service
        cal = line.calendar
        due = None if isinstance(self.policy, RunToFailure) else self.policy.due
        # the wiring is fixed once the line is built: keep the hot loop on local names
        w = self.wiring
        inbuf, outbuf, inslots, outslots = w.inbuf, w.outbuf, w.inslots, w.outslots
        cycle, setup, scrap_u = self.draws.cycle.take, self.draws.setup, self.draws.scrap.take  # draws, C-level
        work_rate, scrap_max, calendar_clock, timeout = self.work_rate, self.scrap_max, self.calendar_clock, env.timeout
        finished = self.log.finished.append
        begun = self.log.begun.append
        is_last, is_constraint, router, inputs = w.is_last, w.is_constraint, w.router, w.inputs
        products, minor, startup = self.products, self.minor, self.startup
        run_pool = self.pool_for("run")
        waiting = self._waiting if cal is not None else self._set_state  # without a calendar no wait is off shift
        waits = self.interruptible
        loaded = None  # a batch machine working as the line's state was read: for how long
        if self.resume is not None:
            state, mode, since = self.resume
            self.resume = None
            if state == DOWN:
                yield from self._fail(mode, residual(self.modes[mode].repair, self._now_rng, since))
            elif state == MAINTENANCE:
                yield from self._maintain("in progress when the line's state was read",
                                          residual(self.mtype.maintenance.duration, self._now_rng, since))
            else:
                loaded = since
        if self.station.batch is not None:
            yield from self._run_batches(loaded)
            return
        while True:
            # decision point: shift, maintenance, changeover
            if cal is not None and not cal.on_from <= env._now < cal.on_until:  # the shift's bounds, inline
                yield from self._off_shift(cal)
            reason = self.pending_order or (due(self) if due is not None else None)
            if reason and (reason := self._unless_held(reason)):
                yield from self._maintain(reason)
            if changeover is not None and self.parts_done and self.parts_done % changeover.every_parts == 0 \
                    and setup is not None and self.parts_done != self._setup_at:
                self._setup_at = self.parts_done
                line.record(self, "changeover_start")
                yield from self.set_up(setup())
                line.record(self, "changeover_end")
            # take a part
            if inputs is not None:
                pid = yield from self._assemble(inputs)
            elif inbuf is None:
                pid = line.new_part()
            else:
                if inbuf.starving():
                    waiting(STARVED)
                ev = inbuf.get()
                if not waits or ev._value is not PENDING:  # met at once (`triggered`, inline)
                    pid = yield ev
                else:
                    pid = yield from self._waiter(ev, inbuf.get, inbuf.cancel)
            if bbs and outslots is not None:
                if outslots.level < 1 or outslots.get_queue:
                    waiting(BLOCKED)
                if calendar_clock:
                    yield from self._wait(partial(outslots.get, 1), _cancel_request)
                else:
                    yield outslots.get(1)
            if cal is not None and not cal.on_from <= env._now < cal.on_until:
                yield from self._off_shift(cal)  # the part came after the shift ended: it waits for the next one
            # work it
            if products is not None:
                product = line.product[pid]
                if products.needs_setup(product):
                    yield from products.set_up(product)
                d = products.start(product)
            else:
                d = cycle()
            now = env._now
            if run_pool is not None:
                operator = self.operator = yield from run_pool.acquire(self)
                now = env._now
            begun(now)
            if minor is not None:
                d = minor.extend(d, now)
            if self.state != WORKING:
                self._set_state(WORKING)
            if self.fail_clock - self.clock - (env._now - self.t_last) * work_rate >= d * work_rate:
                yield timeout(d)
            else:
                yield from self._work_failing(d)
            if run_pool is not None:
                run_pool.release(operator)
                self.operator = None
            self.parts_done += 1
            self.parts_since_service += 1
            if inslots is not None:
                inslots.put(1)  # before-service: the part no longer holds space up to here
            if is_constraint:
                line.passed[pid] = env._now
            # hand it on
            scrapped = bool(scrap_max and (u := scrap_u()) < scrap_max and self._scrap_draw_hits(u))
            if startup is not None and self.startup_left:
                scrapped = self._startup_reject(pid, scrapped) or scrapped
            if scrapped:
                line.scrap(pid, self)
                if outslots is not None and bbs:
                    outslots.put(1)
                continue
            if router is not None:
                dest = router.pick(pid)
                if dest is None:
                    line.finish(pid, self)
                    continue
                if dest.rework:
                    line.rework(pid, self)
            elif is_last:
                line.finish(pid, self)
                continue
            else:
                dest = outbuf
            assert dest is not None
            if not bbs and dest.full():
                waiting(BLOCKED)
            ev = dest.put(pid)
            if not waits or ev._value is not PENDING:  # met at once (`triggered`, inline)
                yield ev
            else:
                yield from self._waiter(ev, partial(dest.put, pid), dest.cancel)
            finished(env._now)

    def _run_batches(self, loaded: float | None = None) -> Generator[simpy.Event, Any, None]:
        """A batch machine's loop (an oven): collect parts up to the batch's size (or at least its `min` once its
        `wait` has passed since the first came in), work them all in one cycle, hand each on in turn (scrapped, or
        blocked while there is no room, each on its own). Its own loop: the one-part loop above stays as lean.
        `loaded`: it was working for that long when the line's state was read: a full batch (the parts inside are
        not read) finishes what is left of its cycle first."""
        env, line, batch = self.env, self.line, self.station.batch
        assert batch is not None
        w = self.wiring
        outbuf, router, is_last, is_constraint = w.outbuf, w.router, w.is_last, w.is_constraint
        cycle, scrap_u = self.draws.cycle.take, self.draws.scrap.take
        run_pool = self.pool_for("run")
        waiting = self._waiting if line.calendar is not None else self._set_state
        waits = self.interruptible
        products = self.products
        while True:
            if loaded is not None:  # the batch in the machine as the line's state was read
                pids = [line.new_part(self.station_idx) for _ in range(batch.size)]
                d, loaded = residual(self.station.cycle_time, self._now_rng, loaded), None
            else:
                pids = yield from self._load_batch()
                d = -1.0
            if run_pool is not None:
                operator = self.operator = yield from run_pool.acquire(self)
            now = env._now
            for pid in pids:
                self.log.begun.append(now)
                if products is not None:
                    self.log.begun_product.append(line.product[pid])
            if self.state != WORKING:
                self._set_state(WORKING)
            d = cycle() if d < 0 else d
            yield from self._work_failing(self.minor.extend(d, now) if self.minor is not None else d)
            if run_pool is not None:
                run_pool.release(operator)
                self.operator = None
            self.parts_done += len(pids)
            self.parts_since_service += len(pids)
            for pid in pids:
                if is_constraint:
                    line.passed[pid] = env._now
                if self.scrap_max and (u := scrap_u()) < self.scrap_max and self._scrap_draw_hits(u):
                    line.scrap(pid, self)
                    continue
                dest = router.pick(pid) if router is not None else None if is_last else outbuf
                if dest is None:
                    line.finish(pid, self)
                    continue
                if dest.rework and router is not None:
                    line.rework(pid, self)
                if dest.full():
                    waiting(BLOCKED)
                ev = dest.put(pid)
                if not waits or ev._value is not PENDING:
                    yield ev
                else:
                    yield from self._waiter(ev, partial(dest.put, pid), dest.cancel)
                self.log.finished.append(env._now)

    def _load_batch(self) -> Generator[simpy.Event, Any, list[int]]:
        """A batch machine's decision point (shift, maintenance), then its next batch's parts: up to its size, or at
        least its `min` once its `wait` has passed since the first came in."""
        env, line, batch = self.env, self.line, self.station.batch
        assert batch is not None
        cal = line.calendar
        if cal is not None and not cal.on_from <= env._now < cal.on_until:
            yield from self._off_shift(cal)
        due = None if isinstance(self.policy, RunToFailure) else self.policy.due
        reason = self.pending_order or (due(self) if due is not None else None)
        if reason and (reason := self._unless_held(reason)):
            yield from self._maintain(reason)
        inbuf, size, least, patience = self.wiring.inbuf, batch.size, batch.least, batch.wait
        waiting = self._waiting if cal is not None else self._set_state
        waits = self.interruptible
        pids: list[int] = []
        deadline = float("inf")
        while len(pids) < size:
            if inbuf is None:  # the line's first station: the source has a part whenever asked
                pids.append(line.new_part())
                continue
            if len(pids) >= least and env._now >= deadline:
                break
            if inbuf.starving():
                waiting(STARVED)
            ev = inbuf.get()
            if ev._value is not PENDING:  # met at once
                pids.append((yield ev))
            elif len(pids) >= least and deadline < float("inf"):  # enough to start: wait for more until then
                # (a calendar-clock failure due meanwhile comes as the batch starts: `_work_failing`)
                yield first_of(env, ev, env.timeout(deadline - env._now))
                if not ev.triggered:
                    inbuf.cancel(ev)
                    break
                pids.append((yield ev))
            else:
                pids.append((yield ev) if not waits else (yield from self._waiter(ev, inbuf.get, inbuf.cancel)))
            if len(pids) == 1 and patience is not None:
                deadline = env._now + patience
        if cal is not None and not cal.on_from <= env._now < cal.on_until:
            yield from self._off_shift(cal)  # the batch filled after the shift ended: it waits for the next one
        return pids

    def _off_shift(self, cal: ShiftCalendar) -> Generator[simpy.Event, Any, None]:
        """Outside the shift the calendar last found: if the line is off shift now, wait off shift for the next one
        (or past the horizon if none comes)."""
        if self.held is not None and cal.stop_fits(self.env._now, self.service_mean) and not self._service_waits():
            yield from self._maintain(self.held)
        nxt = cal.next_start(self.env._now)
        if nxt is not None:
            self._set_state(OFF_SHIFT)
            yield self.env.timeout(min(nxt, self.line.horizon + 1) - self.env._now)

    def _unless_held(self, reason: str) -> str | None:
        """A service due now (on shift): the reason to do it now, or None while it waits for the next planned stop
        (maintenance `when: off-shift`, held for at most its `max_wait` since it fell due), or for the spare parts it
        takes (the machine working on: a planner starts no die change without the die set)."""
        if self._parts_short():
            if self.short_since is None:
                self.short_since = self.env._now
                self.line.record(self, "maintenance_waits_for_part", detail=reason)
            return None
        self.short_since = None
        if self._crew_away():
            return None  # for its crew's next shift
        if not self.off_shift_service:
            return reason
        if self.held is None:
            self.held_since = self.env._now
        if self.env._now - self.held_since >= self.max_wait:
            return f"{reason}, {self.max_wait / 3600:g} h without a planned stop"
        self.held = reason
        return None

    def _parts_short(self) -> bool:
        """Whether a spare part a service takes is not on hand now."""
        return bool(self.service_parts) and any(self.line.spares[name].parts.level < n
                                                for name, n in self.service_parts.items())

    def _crew_away(self) -> bool:
        """Whether the crew that maintains this machine is off its shifts now (no one is called in for planned work)."""
        crew = self.line.crew_for(self, maintenance=True)
        return crew is not None and crew.away()

    def _service_waits(self) -> bool:
        """Whether a service due now waits, the machine working on: for a spare part it takes, or for its crew."""
        return self._parts_short() or self._crew_away()

    def _held_service_now(self) -> Generator[simpy.Event, Any, bool]:
        """While waiting for a part or space: the held service, if the line is now off shift long enough (and its
        spare parts are on hand); then the wait goes on as it was (off shift, or starved or blocked). Whether it was
        done."""
        cal = self.line.calendar
        if self.held is None or cal is None or not cal.stop_fits(self.env._now, self.service_mean) \
                or self._service_waits():
            return False
        waiting = self.off_shift_wait if self.state == OFF_SHIFT and self.off_shift_wait >= 0 else self.state
        yield from self._maintain(self.held)
        self._waiting(waiting)
        return True

    def _assemble(self, inputs: list[tuple[Buffer, int]]) -> Generator[simpy.Event, Any, int]:
        """Take the parts of one assembly from the feeders' buffers, in order, holding those already taken; the
        first carries on as the assembly, the others are consumed into it."""
        pids = []
        waits = self.interruptible
        for buf, quantity in inputs:
            for _ in range(quantity):
                if buf.starving():
                    self._waiting(STARVED)
                ev = buf.get()
                if not waits or ev._value is not PENDING:  # met at once (`triggered`, inline)
                    pids.append((yield ev))
                else:
                    pids.append((yield from self._waiter(ev, buf.get, buf.cancel)))
        for p in pids[1:]:
            self.line.consume(p, pids[0])
        return pids[0]

    def _work_failing(self, d: float) -> Generator[simpy.Event, Any, None]:
        """Work for d seconds, stopping for every failure the clock reaches (preempt-resume)."""
        env = self.env
        while True:
            self._set_state(WORKING)
            ttf = max(0.0, (self.fail_clock - self.clock_now()) / self.work_rate)
            if ttf >= d:
                yield env.timeout(d)
                return
            yield env.timeout(ttf)
            d -= ttf
            yield from self._fail()

    def _waiter(self, ev: simpy.Event, request: Callable[[], simpy.Event],
                cancel: Callable[[simpy.Event], None]) -> Generator[simpy.Event, Any, Any]:
        """How this machine waits for a request not met at once (a part, space), `ev`: while its calendar clock runs
        (a failure may come first), or ready to take the line's stop for maintenance (opportunistic). A plain
        function handing back the generator: no extra frame on every resume."""
        return self._wait(request, cancel, ev) if self.calendar_clock else self._idle(ev)

    def _wait(self, request: Callable[[], simpy.Event], cancel: Callable[[simpy.Event], None],
              ev: simpy.Event | None = None) -> Generator[simpy.Event, Any, Any]:
        """Wait for a part or for space while the calendar clock runs: a failure may come first (`ev`: the
        request already made)."""
        env, cal = self.env, self.line.calendar
        ev = request() if ev is None else ev
        while True:
            rate = self.rates[self.state]
            ttf = max(0.0, (self.fail_clock - self.clock_now()) / rate) if rate else float("inf")
            if cal is not None:  # going off or on shift changes how fast the clock runs: look again then
                ttf = min(ttf, cal.next_change(env.now) - env.now)
            if ev.triggered or ttf == float("inf"):
                return (yield ev)
            waiting_state = self.state
            yield first_of(env, ev, env.timeout(ttf))
            if ev.triggered:
                return ev.value
            if self.held is not None and (yield from self._held_service_now()):
                continue
            if self.clock_now() < self.fail_clock - 1e-9:
                continue
            cancel(ev)
            yield from self._fail()
            self._set_state(waiting_state)
            ev = request()

    def pool_for(self, task: str) -> OperatorPool | None:
        """The operator pool this machine needs for a task ('run', 'setup'), if any."""
        need = self.station.operators
        return self.line.pools[need.pool] if need is not None and task in need.tasks else None

    def set_up(self, d: float) -> Generator[simpy.Event, Any, None]:
        """A setup of d seconds, with an operator if the station needs one for setups."""
        pool = self.pool_for("setup")
        req = (yield from pool.acquire(self)) if pool is not None else None
        yield from self._busy(d, SETUP)
        if req is not None and pool is not None:
            pool.release(req)
        self.restarted()

    def _busy(self, d: float, state: int) -> Generator[simpy.Event, Any, None]:
        self._set_state(state)
        yield self.env.timeout(d)

    def _idle(self, ev: simpy.Event) -> Generator[simpy.Event, Any, Any]:
        """Wait for a part or for space; if the line is stopped by a failure meanwhile and this machine is close
        enough to due, maintain now (the part or the space waits; opportunistic maintenance); if the shift ends
        meanwhile and a service waits for it (`when: off-shift`), do that now."""
        while not ev.triggered:
            if self.held is not None and (yield from self._held_service_now()):
                continue
            if self.line.down and self.opportunity():
                waiting = self.state
                yield from self._maintain("opportunistic")
                if not ev.triggered:
                    self._set_state(waiting)
                continue
            self.wake = first_of(self.env, ev)  # the line's stop may end the wait first: `wake_up`
            yield self.wake
            self.wake = None
        return (yield ev)

    def wake_up(self) -> None:
        """End this machine's wait for a part or space now (the line stopped: an opportunity). Through an event of its
        own, scheduled now, as if the wait were `first_of(ev, wake)`: the queue's order stays the same. The wake event
        is made only here, when the line stops, not at every wait."""
        relay, self.wake = self.wake, None
        assert relay is not None
        nudge = simpy.Event(self.env)
        first_of(self.env, nudge, into=relay)
        nudge.succeed()

    def opportunity(self) -> bool:
        """Whether this machine would take a stop of the line for maintenance now."""
        share = self.opportunistic
        progress = getattr(self.policy, "progress", None)
        return share is not None and progress is not None and self.pending_order is None and \
            self.state in (STARVED, BLOCKED) and progress(self) >= share and not self._service_waits()

    def _fail(self, resumed: int = -1, left: float = 0.0) -> Generator[simpy.Event, Any, None]:
        """A failure of the fault mode whose life ran out: down, a crew, the repair, a new life. `resumed`: a repair
        of that mode already in progress at the start, `left` seconds of it to go (its failure was before)."""
        i = self.fail_mode if resumed < 0 else resumed
        mode = self.modes[i]
        self._set_state(DOWN, i)
        if resumed < 0:
            self.line.record(self, "failure", mode.name)
        self.line.down += 1
        for m in self.line.waiting_for_opportunity:  # machines already waiting take the stop if they are close
            if m.wake is not None and m.opportunity():
                m.wake_up()
        stock = self.line.spares.get(mode.spare) if mode.spare is not None and resumed < 0 else None
        if stock is not None:  # the part first: no technician is held while it is missing
            if not stock.parts.level:
                self.line.record(self, "spare_wait", mode.name, stock.spare.name)
            yield from stock.take()
        # an operator of the station's pool takes part in the repair: the one running the machine if it has one
        pool = self.pool_for("repair")
        fitter = (yield from pool.acquire(self, waiting=DOWN)) \
            if pool is not None and not (self.operator is not None and pool is self.pool_for("run")) else None
        crew = self.line.crew_for(self, mode=i)
        if crew is not None:
            priority = yield from self._crew_priority(0.0)
            with crew.res.request(priority=priority) as req:
                yield req
                crew.log(+1)
                if crew.on_call is not None and resumed < 0 and crew.away():  # off its shifts: one on call comes in
                    self.line.record(self, "crew_called", mode.name)
                    yield self.env.timeout(crew.on_call)
                self.line.record(self, "repair_start", mode.name)
                yield self.env.timeout(self.draws.repair[i]() if resumed < 0 else left)
                crew.log(-1)
        else:
            self.line.record(self, "repair_start", mode.name)
            yield self.env.timeout(self.draws.repair[i]() if resumed < 0 else left)
        if fitter is not None and pool is not None:
            pool.release(fitter)
        self._set_state(DOWN)
        self._renew(i)
        self.line.down -= 1
        self.line.record(self, "repair_end", mode.name)
        self.restarted()

    def _crew_priority(self, usual: float) -> Generator[simpy.Event, Any, float]:
        """The priority of a request to the crew: `usual` (repairs before maintenance), or, for a stop that was
        waiting for its crew as the line's state was read, its place in the queue, asked for once the stops under
        way then have their crew (`Line._queue_stops`)."""
        if self.queued is None:
            return usual
        queued, self.queued = self.queued, None
        yield self.env.timeout(0)
        return queued

    def _maintain(self, reason: str, left: float | None = None) -> Generator[simpy.Event, Any, None]:
        """Planned maintenance: a crew, the job (`left`: what remains of one in progress at the start), new lives
        for the wear modes."""
        self.pending_order = self.held = None
        self._set_state(MAINTENANCE)
        self.line.record(self, "maintenance_order", detail=reason)
        if left is None:  # its spare parts (on hand: a service waits for them, working on, before it is ordered)
            for name, n in self.service_parts.items():
                for _ in range(n):
                    yield from self.line.spares[name].take(service=True)
        crew = self.line.crew_for(self, maintenance=True)
        if crew is not None:
            priority = yield from self._crew_priority(1.0)
            with crew.res.request(priority=priority) as req:
                yield req
                crew.log(+1)
                self.line.record(self, "maintenance_start", detail=reason)
                yield self.env.timeout(self.draws.maintenance() if left is None else left)
                crew.log(-1)
        else:
            self.line.record(self, "maintenance_start", detail=reason)
            yield self.env.timeout(self.draws.maintenance() if left is None else left)
        self._set_state(MAINTENANCE)
        for i in self.wear_modes:
            self._renew(i)
        self.work_at_service = self.work_time
        self.parts_since_service = 0
        self.line.record(self, "maintenance_end", detail=reason)
        self.restarted()


def first_of(env: simpy.Environment, a: simpy.Event, b: simpy.Event | None = None,
             into: simpy.Event | None = None) -> simpy.Event:
    """An event that fires when the first of a and b has fired, in the same step of the queue as `a | b` would
    (so the order of simultaneous events stays the same), without building a condition's value: the machines
    wait on one of these at gets and puts, where building and evaluating a `simpy.AnyOf` costs several plain events.
    Without b, a relay of a alone, for a wait that something else may end (`Machine.wake_up`); `into`: relay to
    that event (a wait's relay made before) instead of a new one."""
    relay = simpy.Event(env) if into is None else into

    def fire(_: simpy.Event) -> None:
        if not relay.triggered:  # the later of the two, or one left over from a wait that ended, does nothing
            relay.succeed()

    a.callbacks.append(fire)  # type: ignore[union-attr]  # both are pending: a processed event has no callbacks
    if b is not None:
        b.callbacks.append(fire)  # type: ignore[union-attr]
    return relay


def _cancel_request(ev: simpy.Event) -> None:
    ev.cancel()  # type: ignore[attr-defined]  # a simpy resource request


class Buffer:
    """A FIFO buffer of parts between two stations (capacity 0: a part passes straight to a waiting machine).

    Lighter than simpy.Store: a get or put is one plain event, so a part's move costs what a timeout
    costs. Invariant: parts wait in the buffer only while no machine waits for one.
    """

    rework = False  # the buffer of a rework station: a part routed here was not good the first time

    def __init__(self, env: simpy.Environment, capacity: float) -> None:
        self.env, self.capacity = env, capacity
        self.items: deque[int] = deque()
        self.getters: deque[simpy.Event] = deque()
        self.putters: deque[tuple[simpy.Event, int]] = deque()
        self.arrived = array("d")  # when each part came in (for the station's number of parts)
        self.left = array("d")  # when each part left it for a machine (with `arrived`: the buffer's level over time)
        self.stocked = 0  # parts it held as the line started

    # A request that is met at once returns `env.timeout(0, value)`: scheduled exactly as `Event().succeed(value)`
    # (now, normal priority, next in order), in one call instead of two; only a request that waits needs an Event.

    def get(self) -> simpy.Event:
        """An event whose value is the next part, once there is one."""
        env = self.env
        if self.items:
            ev = env.timeout(0, self.items.popleft())
            self.left.append(env._now)
            if self.putters:  # room now: the longest-blocked machine hands its part over
                put, item = self.putters.popleft()
                self.items.append(item)
                self.arrived.append(env._now)
                put.succeed()
            return ev
        if self.putters:  # capacity 0: take the part straight from a blocked machine
            put, item = self.putters.popleft()
            self.arrived.append(env._now)
            self.left.append(env._now)
            ev = env.timeout(0, item)
            put.succeed()
            return ev
        ev = simpy.Event(env)
        self.getters.append(ev)
        return ev

    def put(self, item: int) -> simpy.Event:
        """An event that fires once the part is in the buffer (or in a machine that was waiting)."""
        env = self.env
        if self.getters:
            self.arrived.append(env._now)
            self.left.append(env._now)
            self.getters.popleft().succeed(item)
            return env.timeout(0)
        if len(self.items) < self.capacity:
            self.arrived.append(env._now)
            self.items.append(item)
            return env.timeout(0)
        ev = simpy.Event(env)
        self.putters.append((ev, item))
        return ev

    def stock(self, pids: Iterable[int]) -> None:
        """Parts in the buffer when the line starts."""
        before = len(self.items)
        self.items.extend(pids)
        self.stocked += len(self.items) - before

    def cancel(self, ev: simpy.Event) -> None:
        """Withdraw a get or put still waiting (the machine failed meanwhile)."""
        if ev in self.getters:
            self.getters.remove(ev)
        self.putters = deque(p for p in self.putters if p[0] is not ev)

    def full(self) -> bool:
        """True when a part put now would have to wait."""
        return not self.getters and len(self.items) >= self.capacity

    def starving(self) -> bool:
        """True when a machine asking for a part now would have to wait."""
        return not self.items and not self.putters

    def queue(self) -> int:
        """Parts waiting here or blocked upstream for room here, less machines waiting (for shortest-queue)."""
        return len(self.items) + len(self.putters) - len(self.getters)


class Conveyor(Buffer):
    """A buffer that parts reach `travel` seconds after they are put in (a conveyor, a transfer line): they arrive in
    the order they left and count against the capacity on the way. A part put in while a machine waits at the end
    travels first; the machine gets it when it arrives."""

    def __init__(self, env: simpy.Environment, capacity: float, travel: float) -> None:
        super().__init__(env, capacity)
        self.travel = travel
        self.ready: deque[float] = deque()  # when each part in `items` reaches the end
        self._timed = False  # a delivery to a waiting machine is scheduled

    def stock(self, pids: Iterable[int]) -> None:
        for pid in pids:  # parts the line starts with wait at the end already
            self.items.append(pid)
            self.ready.append(-math.inf)
            self.stocked += 1

    def _at_end(self) -> bool:
        return bool(self.items) and self.ready[0] <= self.env._now + 1e-9  # a float's rounding of now + travel

    def get(self) -> simpy.Event:
        if not self.getters and self._at_end():
            self.ready.popleft()
            ev = self.env.timeout(0, self.items.popleft())
            self.left.append(self.env._now)
            self._admit()
            return ev
        ev = simpy.Event(self.env)
        self.getters.append(ev)
        self._schedule()
        return ev

    def put(self, item: int) -> simpy.Event:
        if len(self.items) < self.capacity:
            self._enter(item)
            return self.env.timeout(0)
        ev = simpy.Event(self.env)
        self.putters.append((ev, item))
        return ev

    def _enter(self, item: int) -> None:
        now = self.env._now
        self.arrived.append(now)
        self.items.append(item)
        self.ready.append(now + self.travel)
        self._schedule()

    def _admit(self) -> None:
        """Room now: the longest-blocked machine puts its part on."""
        if self.putters and len(self.items) < self.capacity:
            put, item = self.putters.popleft()
            self._enter(item)
            put.succeed()

    def _schedule(self) -> None:
        if self.getters and self.items and not self._timed:
            self._timed = True
            self.env.timeout(max(self.ready[0] - self.env._now, 0.0)).callbacks.append(self._deliver)

    def _deliver(self, _: simpy.Event) -> None:
        """Hand the parts that have arrived to the machines waiting, longest first."""
        self._timed = False
        while self.getters and self._at_end():
            self.ready.popleft()
            self.getters.popleft().succeed(self.items.popleft())
            self.left.append(self.env._now)
            self._admit()
        self._schedule()

    def full(self) -> bool:
        return len(self.items) >= self.capacity

    def starving(self) -> bool:
        return bool(self.getters) or not self._at_end()


def make_buffer(env: simpy.Environment, capacity: float, transfer: float | None) -> Buffer:
    """The buffer in front of a station: a conveyor when parts take time to reach it."""
    return Buffer(env, capacity) if transfer is None else Conveyor(env, capacity, transfer)


class Router:
    """Where a station's finished parts go in a graph line where it has more than one way on: by probability, round
    robin, to the shortest queue, or by the part's product (None: out of the line). One per station, shared by its
    parallel machines. `by_product`: route: product: each product's destination (by product index), and `product`
    the line's product of each part."""

    def __init__(self, dests: list[Buffer | None], mode: str, probs: list[float], rng: np.random.Generator,
                 by_product: list[Buffer | None] | None = None, product: array | None = None) -> None:
        self.dests, self.mode = dests, mode
        self.cum = np.cumsum(probs).tolist()
        self.u = Sampler(_UNIT, rng)
        self.turn = 0
        self.by_product, self.product = by_product, product if product is not None else array("b")

    def pick(self, pid: int) -> Buffer | None:
        dests = self.dests
        if self.by_product is not None:
            return self.by_product[self.product[pid]]
        if self.mode == "probability":
            return dests[min(bisect.bisect_right(self.cum, self.u() * self.cum[-1]), len(dests) - 1)]
        if self.mode == "round-robin":
            self.turn = (self.turn + 1) % len(dests)
            return dests[self.turn - 1]
        return min(dests, key=lambda b: -1 if b is None else b.queue())  # leaving the line never waits


class _UnitUniform:
    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.random(n)


_UNIT: Any = _UnitUniform()


class Staff:
    """People who take jobs, `size` of them (a PriorityResource), on the shifts of a calendar or around the clock, and
    how many were busy from each time on. Off their shifts (unless `held` is False: someone is on call) every place is
    asked for ahead of any other request, a task in hand finished first, and given back when the next shift starts."""

    def __init__(self, line: Line, size: int, calendar: Calendar | None, held: bool = True) -> None:
        self.env, self.size = line.env, size
        self.res = simpy.PriorityResource(line.env, capacity=size)
        self.calendar = ShiftCalendar(calendar, line.scenario.start, line.horizon) if calendar is not None else None
        self.t, self.busy = array("d", [0.0]), array("i", [0])  # people busy from each time on
        if self.calendar is not None and held:
            line.env.process(self._off_shift(line.horizon))

    def _off_shift(self, horizon: float) -> Generator[simpy.Event, Any, None]:
        cal, env = self.calendar, self.env
        assert cal is not None
        while True:
            if cal.next_start(env.now) is None:  # on shift: wait for its end
                end = cal.next_change(env.now)
                if end > horizon:
                    return
                yield env.timeout(end - env.now)
            start = cal.next_start(env.now)
            if start is None:
                return
            holds = [self.res.request(priority=-1) for _ in range(self.size)]
            if start > horizon:  # no shift before the end: they stay away (their places held to the end)
                return
            yield env.timeout(start - env.now)
            for h in holds:
                if h.triggered:
                    self.res.release(h)
                else:
                    h.cancel()

    def away(self) -> bool:
        """Whether they are off their shifts now."""
        return self.calendar is not None and self.calendar.next_start(self.env._now) is not None

    def log(self, delta: int) -> None:
        """One more (+1) or one fewer (-1) busy from now on."""
        self.t.append(self.env._now)
        self.busy.append(self.busy[-1] + delta)

    def utilisation(self, a: float, b: float) -> float:
        """Busy time over their time on shift inside [a, b]."""
        busy = step_integral(self.t, self.busy, a, b)
        there = self.calendar.planned(a, b) if self.calendar is not None else b - a
        return busy / (self.size * there) if there > 0 else 0.0


class Crew(Staff):
    """A repair crew: its technicians (repairs before maintenance), on their shifts; off them, with `on_call`, one is
    called in (its utilisation then counts the call-out's job over the time on shift, so it can pass 1)."""

    def __init__(self, line: Line, crew: RepairCrew) -> None:
        super().__init__(line, crew.size, crew.calendar, held=crew.on_call is None)
        self.on_call = crew.on_call


class OperatorPool(Staff):
    """A pool of operators: machines queue for one (first come, first served); off their shift the pool's people
    finish the task in hand and leave (a blocker takes every free operator until the next shift)."""

    def acquire(self, m: Machine, waiting: int = WAITING_OPERATOR) -> Generator[simpy.Event, Any, Any]:
        """An operator for machine m, which shows state `waiting` until one is free (a down machine stays down)."""
        req = self.res.request(priority=1)
        if not req.triggered and m.state != waiting:
            m._set_state(waiting)
        yield req
        self.log(+1)
        return req

    def release(self, req: Any) -> None:
        self.res.release(req)
        self.log(-1)


class SpareStock:
    """A spare part's stock: repairs take one each (waiting, first come first served, while none is on hand), and an
    (s, Q) reorder rule orders `order` more whenever on hand + on order - waiting falls to the reorder point,
    delivered after a lead time drawn from the line's seed. Keeps its level over time and each repair's wait."""

    def __init__(self, line: Line, spare: Spare, index: int) -> None:
        self.env, self.spare = line.env, spare
        self.parts = simpy.Container(line.env, init=spare.stock)
        self.on_order = 0
        self.lead = Sampler(spare.lead_time, rng_for(line.scenario.seed, line.replication, -1, STREAM_SPARE + index))
        self.t, self.level = array("d", [0.0]), array("i", [spare.stock])  # on hand from each time on
        self.waits = array("d")  # each take's wait for the part
        self.asked = array("d")  # when each take asked for one
        self.by_service = array("b")  # whether it was a service's (else a repair's)
        self.orders = 0
        self._review()

    def take(self, service: bool = False) -> Generator[simpy.Event, Any, None]:
        """One part for a repair (or a service), once there is one (its wait kept: 0 if one was on hand)."""
        asked = self.env.now
        self.asked.append(asked)
        self.by_service.append(service)
        ev = self.parts.get(1)
        self._review()
        yield ev
        self._logged()
        self.waits.append(self.env.now - asked)

    def _review(self) -> None:
        """Order while the stock position (on hand + on order - repairs waiting) is at or below the reorder point."""
        while self.parts.level + self.on_order - len(self.parts.get_queue) <= self.spare.reorder_point:
            self.on_order += self.spare.order
            self.orders += 1
            self.env.process(self._delivery(self.spare.order))

    def _delivery(self, n: int) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(self.lead())
        self.on_order -= n
        yield self.parts.put(n)
        self._logged()

    def _logged(self) -> None:
        if self.t[-1] == self.env.now:
            self.level[-1] = int(self.parts.level)
        else:
            self.t.append(self.env.now)
            self.level.append(int(self.parts.level))

    def figures(self, a: float, b: float) -> dict[str, float]:
        """Inside [a, b]: repairs that asked for a part, the share that waited, the mean wait per repair [h] (one still
        waiting at b counts its wait until b), the services that took one, and the mean stock on hand."""
        held = step_integral(self.t, self.level, a, b)
        asked = np.frombuffer(self.asked, dtype=np.float64)
        service = np.frombuffer(self.by_service, dtype=np.int8).astype(bool)
        inside = (asked >= a) & (asked < b)
        # parts are handed out first come first served, so the first len(waits) asks are those served
        waits = np.concatenate([np.frombuffer(self.waits, dtype=np.float64), b - asked[len(self.waits):]])
        waits = waits[inside & ~service]
        return {"repairs": float(len(waits)), "stock-out share": float(np.mean(waits > 0)) if len(waits) else 0.0,
                "wait for part [h]": float(waits.mean() / 3600) if len(waits) else 0.0,
                "services": float(np.sum(inside & service)),
                "mean stock": held / (b - a) if b > a else float(self.spare.stock)}


class _Release:
    """Which product each new part is: the next of a cyclic sequence, or a random draw by the products' shares."""

    def __init__(self, sc: Scenario, replication: int) -> None:
        names = [p.name for p in sc.products]
        self.sequence = [(names.index(n), k) for n, k in sc.release_runs()] if sc.release and names else None
        self.shares = np.cumsum([p.share for p in sc.products]) if names else None
        self.u = Sampler(_UNIT, rng_for(sc.seed, replication, -1, STREAM_RELEASE)) if names else None
        self.i, self.left, self.resumed = -1, 0, False
        #: the orders released before the plan (`orders`): each one's product and parts, the parts of it released
        #: and not scrapped, and which order each of their parts is
        self.book = [(names.index(o.product), o.parts) for o in sc.orders] if sc.orders and names else None
        self.net = [0] * len(self.book or [])
        self.first = 0  # no order before this one is short of parts
        self.order_of: dict[int, int] = {}
        at = sc.now.release if sc.now is not None else None
        if at is not None and self.sequence is not None and at.product in names:  # a what-if: the campaign under way
            runs = [k for k, (p, _) in enumerate(self.sequence) if p == names.index(at.product)]
            if runs:
                self.i, self.left = runs[0], max(self.sequence[runs[0]][1] - at.made, 0)
                self.resumed = True

    def current(self) -> int | None:
        """The product of the campaign under way where a what-if read it (`now.release`), without releasing a part:
        the parts already in the line's buffers were released with it (None: draw them from the plan)."""
        return self.sequence[self.i][0] if self.sequence is not None and self.i >= 0 and self.resumed else None

    def take(self, pid: int) -> int:
        """The product of part `pid`, which an entry releases: the first order still short of parts (a scrapped one's
        make-up goes first), else the plan's next."""
        book = self.book
        if book is not None:
            while self.first < len(book) and self.net[self.first] >= book[self.first][1]:
                self.first += 1
            if self.first < len(book):
                self.net[self.first] += 1
                self.order_of[pid] = self.first
                return book[self.first][0]
        return self()

    def scrapped(self, pid: int) -> None:
        """Part `pid` was scrapped: its order (if any) is short of it again."""
        k = self.order_of.get(pid)
        if k is not None:
            self.net[k] -= 1
            self.first = min(self.first, k)

    def __call__(self) -> int:
        if self.sequence is not None:
            if self.left == 0:
                self.i = (self.i + 1) % len(self.sequence)
                self.left = self.sequence[self.i][1]
            self.left -= 1
            return self.sequence[self.i][0]
        if self.shares is None or self.u is None:
            return 0
        return min(int(np.searchsorted(self.shares, self.u() * self.shares[-1], side="right")), len(self.shares) - 1)


class Line:
    """A whole serial line for one replication; `run(until)` can be called in steps for live streaming."""

    def __init__(self, scenario: Scenario, replication: int = 0,
                 policy: Callable[[Machine], MaintenancePolicy] | None = None,
                 env: simpy.Environment | None = None) -> None:
        self.scenario, self.replication = scenario, replication
        self.env = env or simpy.Environment()
        self.horizon = scenario.duration
        self.before_service = scenario.blocking == "before-service"
        self._policy = policy
        self.calendar = ShiftCalendar(scenario.calendar, scenario.start, scenario.duration) \
            if scenario.calendar else None
        self.crews = {c.name: Crew(self, c) for c in scenario.repair_crews}
        self.pools = {p.name: OperatorPool(self, p.size, p.calendar) for p in scenario.operators}
        self.spares = {s.name: SpareStock(self, s, i) for i, s in enumerate(scenario.spares)}
        self.events: list[Event] = []
        # parts: entry time, exit time (nan while inside), station index where scrapped (-1 if not)
        self.entry = array("d")
        self.exit = array("d")
        self.scrapped_at = array("h")
        self.passed = array("d")  # when the part left the constraint station's work (nan before)
        self.into = array("q")  # the assembly a consumed part went into (-1: none)
        #: the parts routed to a rework station (or that went into an assembly one of whose parts was)
        self.reworked: set[int] = set()
        self.startup_rejects: set[int] = set()  # the parts scrapped as start-up rejects (after a restart)
        self.product = array("b")  # each part's product (index into product_names)
        self.product_names = [p.name for p in scenario.products] or ["part"]
        self._release = _Release(scenario, replication) if scenario.products else None
        #: per station, the products (indices) whose routes visit it, where routes go by product (else None: all)
        self._visitors: list[set[int] | None] = [None] * len(scenario.stations)
        if any(st.route == "product" for st in scenario.stations):
            visits = [scenario.visits_of(p.name) for p in scenario.products]
            self._visitors = [{i for i, v in enumerate(visits) if v[k] > 1e-9} or None
                              for k in range(len(scenario.stations))]
        self.arrivals = 0
        self.lost = 0
        self.machines: list[Machine] = []
        self.stations: list[list[Machine]] = []
        self.station_inputs: dict[int, dict[str, Buffer]] = {}  # an assembly station's buffer per feeder
        order = scenario.machine_order()
        extra = len(order)  # machines not in that order (added by a what-if) draw from the slots after it
        for si, st in enumerate(scenario.stations):
            group = []
            for name in st.machine_names:
                if name in order:
                    slot = order.index(name)
                else:
                    slot, extra = extra, extra + 1
                group.append(Machine(self, st, si, slot, name, scenario.machine_type_of(st)))
            self.stations.append(group)
            self.machines.extend(group)
        # the parts in the machines' hands as the line's state was read, per station: back at the head of its buffer
        self.carried = parts_in_hand(scenario, scenario.now) if scenario.now is not None else [0] * len(self.stations)
        self._queue_stops()
        self._wire()
        self.down = 0  # machines down now (the line is stopped somewhere)
        self.waiting_for_opportunity = [m for m in self.machines if m.opportunistic is not None]
        self.constraint = scenario.constraint()
        for m in self.stations[self.constraint]:
            m.wiring.is_constraint = True
        for m in self.machines:
            self.env.process(m.run())
        if self.calendar is not None:
            self.env.process(self._shifts())
        if scenario.source.kind == "arrivals":
            for k in range(len(self.entry_buffers())):
                self.env.process(self._arrivals(k))

    def policy_for(self, machine: Machine) -> MaintenancePolicy:
        if self._policy:
            return self._policy(machine)
        rng = rng_for(self.scenario.seed, self.replication, machine.slot, STREAM_POLICY)
        return policy_from_spec(machine.mtype, machine.station.load, rng)

    def _queue_stops(self) -> None:
        """Machines stopped as the line's state was read (down, or in maintenance) that share a crew: a state
        record does not say whether the crew has begun. As many as the crew has people (none while it is off its
        shifts with no one on call), the longest stopped, are taken to be under way (what is left drawn given how
        long they have been stopped); the others wait for it in the order they stopped, repairs before maintenance,
        and then take a whole job. (Each had resumed mid-job, as if the crew worked on all at once.)"""
        stops: dict[Crew, list[tuple[float, int, int, Machine]]] = {}
        for m in self.machines:
            if m.resume is not None and m.resume[0] in (DOWN, MAINTENANCE) and (
                    crew := self.crew_for(m, m.resume[0] == MAINTENANCE, m.resume[1])) is not None:
                state, mode, since = m.resume
                stops.setdefault(crew, []).append((-since, state, mode, m))  # the longest stopped first
        for crew, group in stops.items():
            group.sort(key=lambda stop: stop[0])  # stable: machines stopped as long keep the line's order
            # a crew off its shifts (no one on call) has none under way: every stop waits for its next shift
            under_way = 0 if crew.away() and crew.on_call is None else crew.size
            for rank, (_, state, mode, m) in enumerate(group[under_way:], start=under_way):
                m.resume = (state, mode, 0.0)  # a whole job, once the crew comes
                m.queued = (0.0 if state == DOWN else 1.0) - 1.0 + rank / (len(group) + 1)

    def _wire(self) -> None:
        if self.scenario.is_graph:
            self._wire_graph()
            return
        env, sc = self.env, self.scenario
        inf = float("inf")
        self.buffers: list[Buffer | None] = []
        for si, st in enumerate(sc.stations):
            if si == 0 and sc.source.kind == "saturated":
                self.buffers.append(None)
                continue
            cap = inf if st.buffer is None or (self.before_service and si > 0) else st.buffer
            store = make_buffer(env, cap, st.transfer)
            store.stock(self.new_part(si) for _ in range(self.carried[si] + st.initial))
            self.buffers.append(store)
        for si, group in enumerate(self.stations):
            nxt = sc.stations[si + 1] if si + 1 < len(sc.stations) else None
            slots = None
            if self.before_service and nxt is not None:  # the next station's places (buffer, machines) left free
                size = inf if nxt.buffer is None else nxt.buffer + len(self.stations[si + 1])
                slots = simpy.Container(env, capacity=size, init=size - nxt.initial - self.carried[si + 1])
            for m in group:
                m.wiring.inbuf = self.buffers[si]
                m.wiring.outbuf = self.buffers[si + 1] if nxt is not None else None
                m.wiring.outslots = slots
                m.wiring.is_last = nxt is None
            if slots is not None:
                for m in self.stations[si + 1]:
                    m.wiring.inslots = slots

    def buffer_levels(self) -> dict[str, int]:
        """Parts waiting in front of each station now, by station name (an assembly's per feeder: `feeder_key`)."""
        levels = {st.name: len(buf.items) for st, buf in zip(self.scenario.stations, self.buffers) if buf is not None}
        for si, inputs in self.station_inputs.items():
            levels.update({feeder_key(self.scenario.stations[si].name, f): len(b.items) for f, b in inputs.items()})
        return levels

    def _wire_graph(self) -> None:
        """Buffers in front of each station (an assembly: one per feeder) and a router per station."""
        env, sc = self.env, self.scenario
        entries = set(sc.entries())
        saturated = sc.source.kind == "saturated"
        self.buffers = []
        inputs: dict[int, dict[str, Buffer]] = {}
        for si, st in enumerate(sc.stations):
            cap = float("inf") if st.buffer is None else st.buffer
            if st.assemble:
                inputs[si] = {f: make_buffer(env, cap, st.transfer) for f in st.assemble}
                for f, q in st.assemble.items():  # an assembly in hand: its parts back in their feeders' buffers
                    inputs[si][f].stock(self.new_part(si) for _ in range(self.carried[si] * q))
                for f, n in st.feeder_initial.items():
                    inputs[si][f].stock(self.new_part(si) for _ in range(n))
                self.buffers.append(None)
                continue
            if si in entries and saturated:
                self.buffers.append(None)
                continue
            store = make_buffer(env, cap, st.transfer)
            store.stock(self.new_part(si) for _ in range(self.carried[si] + st.initial))
            if st.rework:  # parts waiting at a rework station as the line starts were sent there
                store.rework = True
                self.reworked.update(store.items)
            self.buffers.append(store)
        for si, (st, group) in enumerate(zip(sc.stations, self.stations)):
            dests: list[Buffer | None] = []
            probs = []
            for k, p in sc.successors(si):
                dests.append(None if k < 0 else inputs[k][st.name] if k in inputs else self.buffers[k])
                probs.append(p if p is not None else 1.0)
            # one way on: wired like a serial line (no choice, so no draw is skipped); else a router chooses
            by_product = [dests[st.product_route(p.name)] for p in sc.products] if st.route == "product" else None
            router = Router(dests, st.route, probs, rng_for(sc.seed, self.replication, group[0].slot, STREAM_ROUTE),
                            by_product, self.product) if len(dests) > 1 else None
            for m in group:
                m.wiring.inbuf = self.buffers[si]
                m.wiring.router = router
                if router is None:
                    m.wiring.outbuf, m.wiring.is_last = dests[0], dests[0] is None
                if si in inputs:
                    m.wiring.inputs = [(inputs[si][f], q) for f, q in (st.assemble or {}).items()]
        self.station_inputs.update(inputs)

    def entry_buffers(self) -> list[Buffer]:
        """The buffers the source fills (arrivals): the first station's, or every entry station's in a graph."""
        if not self.scenario.is_graph:
            return [b for b in self.buffers[:1] if b is not None]
        return [b for i in self.scenario.entries() if (b := self.buffers[i]) is not None]

    def _arrivals(self, k: int = 0) -> Generator[simpy.Event, Any, None]:
        src = self.scenario.source
        station = self.scenario.stations[self.scenario.entries()[k] if self.scenario.is_graph else 0].name
        law = src.by_station.get(station, src.interarrival)  # an entry station's own, else the source's
        assert law is not None
        gap = Sampler(law, rng_for(self.scenario.seed, self.replication, -1, STREAM_SOURCE + k))
        buf = self.entry_buffers()[k]
        drop = src.when_full == "drop"
        while True:
            yield self.env.timeout(gap())
            self.arrivals += 1
            if drop and buf.full():
                self.lost += 1
                continue
            yield buf.put(self.new_part())

    def _shifts(self) -> Generator[simpy.Event, Any, None]:
        """At every shift end and start, tell the machines (waiting ones change what they show)."""
        cal, env = self.calendar, self.env
        assert cal is not None
        while True:
            t = cal.next_change(env.now)
            if t > self.horizon:
                return
            yield env.timeout(t - env.now)
            on = cal.next_start(env.now) is None
            for m in self.machines:
                m.shift_starts() if on else m.shift_ends()

    # --- parts and events ------------------------------------------------------------------------
    def new_part(self, station: int = -1) -> int:
        """A part entering the line (its product the release's next); `station`: one put in that station's buffer at
        the start (or as a what-if's state read), of a product whose route visits it (route: product)."""
        release = self._release
        if station < 0 and release is not None and release.book is not None:  # released to the orders
            product = release.take(len(self.entry))
        else:  # the plan (the parts already in the line at the start were released with it)
            resumed = release.current() if station >= 0 and release is not None else None
            product = resumed if resumed is not None else release() if release is not None else 0
        self.entry.append(self.env._now)
        self.exit.append(_NAN)
        self.passed.append(_NAN)
        self.into.append(-1)
        if station >= 0 and (allowed := self._visitors[station]) is not None:
            for _ in range(10_000):  # the release's next product that goes there (one does: the station is visited)
                if product in allowed:
                    break
                product = self._release() if self._release is not None else 0
        self.product.append(product)
        self.scrapped_at.append(-1)
        return len(self.entry) - 1

    def finish(self, pid: int, m: Machine) -> None:
        self.exit[pid] = self.env._now
        m.log.finished.append(self.env._now)

    def consume(self, pid: int, into: int) -> None:
        """A part went into an assembly (carried on as part `into`): it leaves the line as a part of its own."""
        self.exit[pid] = self.env._now
        self.scrapped_at[pid] = CONSUMED
        self.into[pid] = into
        if pid in self.reworked:  # an assembly with a reworked part in it was not good the first time either
            self.reworked.add(into)

    def rework(self, pid: int, m: Machine) -> None:
        """m sent part pid to a rework station: it was not good the first time (ISO 22400's rework quantity)."""
        self.reworked.add(pid)
        m.log.reworked.append(self.env._now)

    def orders_of(self) -> np.ndarray:
        """Per part, the order of `orders` it was released to (-1: the plan's, or in the line at the start)."""
        tags = np.full(len(self.entry), -1, dtype=np.int64)
        if self._release is not None and self._release.order_of:
            tagged = self._release.order_of
            tags[np.fromiter(tagged, dtype=np.int64, count=len(tagged))] = list(tagged.values())
        return tags

    def fates(self) -> tuple[np.ndarray, np.ndarray]:
        """Per part, where its journey ended: (exit time, `scrapped_at` code) of the part itself, or for a part
        consumed by an assembly, of the assembly it went into (nan, -1 while that is still inside)."""
        exit_ = np.frombuffer(self.exit, dtype=np.float64).copy()
        code = np.frombuffer(self.scrapped_at, dtype=np.int16).copy()
        self._carried(exit_, code)
        return exit_, code

    def good_out(self) -> np.ndarray:
        """Per part, whether it has left the line good: out, not scrapped, and not consumed by an assembly (such a
        part left inside it)."""
        out = ~np.isnan(np.frombuffer(self.exit, dtype=np.float64))
        return out & (np.frombuffer(self.scrapped_at, dtype=np.int16) == INSIDE_OR_GOOD)

    def reworked_mask(self, carried: bool = False) -> np.ndarray:
        """Per part, whether it was sent to a rework station (or went into an assembly with such a part in it); with
        `carried`, for a part consumed by an assembly, whether the assembly was (the fate it shares)."""
        return self.mask_of(self.reworked, carried)

    def mask_of(self, pids: set[int], carried: bool = False) -> np.ndarray:
        """Per part, whether it is one of `pids`; with `carried`, for a part consumed by an assembly, whether the
        assembly that carried it out of the line is."""
        mask = np.zeros(len(self.entry), dtype=bool)
        if pids:
            mask[np.fromiter(pids, dtype=np.int64, count=len(pids))] = True
            if carried:
                self._carried(mask)
        return mask

    def _carried(self, *values: np.ndarray) -> None:
        """Give each part consumed by an assembly (in place) the values of the assembly that carried it out of the
        line, through assemblies of assemblies."""
        code = np.frombuffer(self.scrapped_at, dtype=np.int16)
        inner = np.flatnonzero(code == CONSUMED)
        if not len(inner):
            return
        into = np.frombuffer(self.into, dtype=np.int64)
        carrier = into[inner]
        for _ in range(64):
            nested = code[carrier] == CONSUMED
            if not nested.any():
                break
            carrier = np.where(nested, into[carrier], carrier)
        for v in values:
            v[inner] = v[carrier]

    def scrap(self, pid: int, m: Machine) -> None:
        self.exit[pid] = self.env._now
        self.scrapped_at[pid] = m.station_idx
        m.log.scrapped.append(self.env._now)
        if self._release is not None and self._release.book is not None:
            self._release.scrapped(pid)

    def record(self, m: Machine, kind: str, fault_mode: str = "", detail: str = "") -> None:
        self.events.append(Event(self.env.now, m.name, kind, fault_mode, detail))

    def crew_for(self, m: Machine, maintenance: bool = False, mode: int = -1) -> Crew | None:
        """The crew that repairs fault mode `mode` of m (its own, else the machine type's), or maintains m; None where
        the job needs none."""
        if maintenance:
            name = m.mtype.maintenance.crew or m.mtype.repair_crew
        else:
            name = (m.modes[mode].repair_crew if mode >= 0 else None) or m.mtype.repair_crew
        return self.crews.get(name) if name else None

    def order_maintenance(self, machine: str, reason: str = "ordered") -> None:
        """Ask a machine to stop for maintenance at its next cycle boundary (e.g. from a predictor)."""
        for m in self.machines:
            if m.name == machine:
                m.pending_order = reason
                return
        raise KeyError(f"no machine named {machine!r}; machines: {[m.name for m in self.machines]}")

    def run(self, until: float) -> None:
        """Advance the simulation to `until` (seconds); call again with a later time to go on."""
        self.env.run(until=min(until, self.horizon))

    @property
    def wip(self) -> int:
        """Parts inside the line now."""
        n = len(self.exit)
        return n - int(np.count_nonzero(~np.isnan(np.frombuffer(self.exit, dtype=np.float64)))) if n else 0
