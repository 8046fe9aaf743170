"""Key performance indicators of one replication, and their means and 95 % intervals over many.

All figures come from the ground-truth logs after the run, over the window [warm-up, end]:
throughput, work in process, lead time, per-machine state shares, availability, observed MTBF/MTTR,
OEE = availability x performance x quality per station and for the line by ISO 22400 (docs/kpis.md), and
the bottleneck (the station whose machines are active the largest share of the time, after Roser's idea).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from twin.model import (
    CONSUMED,
    DOWN,
    INSIDE_OR_GOOD,
    MAINTENANCE,
    OFF_SHIFT,
    SETUP,
    STATES,
    WORKING,
    Line,
    Machine,
    ShiftCalendar,
    step_lengths,
)
from twin.scenario import ReleaseOrder, Station, feeder_key

KPI_COLUMNS = ["replication", "scope", "entity", "kpi", "value"]


def state_durations(m: Machine, a: float, b: float) -> np.ndarray:
    """Seconds spent in each state (indexed like STATES) inside [a, b]."""
    t = np.frombuffer(m.log.t, dtype=np.float64).copy()
    s = np.frombuffer(m.log.state, dtype=np.int8).copy()
    return np.bincount(s, weights=step_lengths(t, a, b), minlength=len(STATES))


def wip_integral(entry: np.ndarray, exit_: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Part-seconds spent in the line from time 0 to each time of `at` (the integral of the number of parts in it):
    the difference over [a, b], divided by b - a, is the time-average WIP there."""
    done = ~np.isnan(exit_)
    times = np.concatenate([entry, exit_[done]])
    delta = np.concatenate([np.ones(len(entry)), -np.ones(int(done.sum()))])
    order = np.argsort(times, kind="stable")
    times, level = times[order], np.cumsum(delta[order])
    if not len(times):
        return np.zeros(len(at))
    # level holds after each event time: the area up to each event, then on to each time asked (0 before the first)
    area = np.concatenate([[0.0], np.cumsum(level[:-1] * np.diff(times))])
    last = np.searchsorted(times, at, side="right") - 1
    k = np.maximum(last, 0)
    return np.where(last >= 0, area[k] + level[k] * (at - times[k]), 0.0)


def time_average_wip(entry: np.ndarray, exit_: np.ndarray, a: float, b: float) -> float:
    """Time-average number of parts in the line over [a, b]."""
    ia, ib = wip_integral(entry, exit_, np.array([a, b], dtype=float))
    return float((ib - ia) / (b - a))


def period_flow(line: Line, period: float) -> dict[str, np.ndarray]:
    """The line's flow per period of `period` seconds from its start (whole periods up to its end, the warm-up
    included): good parts out, part-seconds in the line, and the lead time summed over those good parts. Over any
    run of periods they give the throughput, WIP and lead time the KPIs give over the same span (twin.experiment)."""
    end = min(line.env.now, line.scenario.duration)
    n = int(end / period + 1e-9)  # whole periods (an end a rounding below a period's edge still ends it)
    edges = np.arange(n + 1) * period
    entry = np.frombuffer(line.entry, dtype=np.float64).copy()
    exit_ = np.frombuffer(line.exit, dtype=np.float64).copy()
    good = line.good_out()
    k = np.searchsorted(edges, exit_[good], side="right") - 1
    inside = (k >= 0) & (k < n)
    return {"parts": np.bincount(k[inside], minlength=n).astype(float),
            "part-seconds": np.diff(wip_integral(entry, exit_, edges)),
            "lead seconds": np.bincount(k[inside], weights=(exit_ - entry)[good][inside], minlength=n)}


def _repairs(line: Line, a: float, b: float) -> pd.DataFrame:
    """One row per failure starting in [a, b]: machine, mode, downtime until repaired and the wait before its repair
    began, for a spare part or a technician (nan if not yet)."""
    rows = []
    open_: dict[str, tuple[float, str, float]] = {}
    for e in line.events:
        if e.kind == "failure":
            open_[e.machine] = (e.t, e.fault_mode, np.nan)
        elif e.kind == "repair_start" and e.machine in open_:
            t0, mode, _ = open_[e.machine]
            open_[e.machine] = (t0, mode, e.t - t0)
        elif e.kind == "repair_end" and e.machine in open_:
            t0, mode, wait = open_.pop(e.machine)
            if a <= t0 <= b:
                rows.append((e.machine, mode, t0, e.t - t0, wait))
    for machine, (t0, mode, wait) in open_.items():
        if a <= t0 <= b:
            rows.append((machine, mode, t0, np.nan, wait))
    return pd.DataFrame(rows, columns=["machine", "fault_mode", "t", "downtime", "wait"])


Row = tuple[str, str, str, float]  # scope, entity, kpi, value


def replication_kpis(line: Line) -> pd.DataFrame:
    """All KPIs of one finished replication, long format (scope, entity, kpi, value)."""
    sc = line.scenario
    a, b = sc.warmup, min(line.env.now, sc.duration)
    planned = line.calendar.planned(a, b) if line.calendar else b - a
    rows = _flow_kpis(line, a, b)
    repairs = _repairs(line, a, b)
    station_oee: dict[str, tuple[float, float, float, float, float]] = {}
    for si, (st, group) in enumerate(zip(sc.stations, line.stations)):
        tallies = []
        for m in group:
            ideal = np.array([st.machine_ideal(m.name)]) if st.machine_cycle_times else _ideal_by_product(line, st)
            machine_rows, tally = _machine_kpis(m, a, b, planned, repairs[repairs.machine == m.name], line.calendar,
                                                ideal)
            rows += machine_rows
            tallies.append(tally)
        ideal = st.ideal_cycle()[0]
        station_oee[st.name] = _station_oee(planned, b - a, tallies)
        for name, v in zip(("oee", "oee availability", "oee performance", "oee quality", "active share"),
                           station_oee[st.name]):
            rows.append(("station", st.name, name, float(v)))
        rows.append(("station", st.name, "ideal cycle [s]", ideal))
        if any(k >= 0 and sc.stations[k].rework for k, _ in sc.successors(si)):  # of its parts, sent to rework
            made = sum(tally[3] for tally in tallies)
            sent = sum(_within(m.log.reworked, a, b) for m in group)
            rows.append(("station", st.name, "rework ratio", sent / made if made else 0.0))
        rows += _station_flow(line, st.name, group, a, b)
    rows += _buffer_kpis(line, a, b)
    bottleneck = max(station_oee, key=lambda s: station_oee[s][4])
    constraint = sc.stations[line.constraint].name
    _, avail, perf, _, _ = station_oee[constraint]
    qual, scrapped, reworked, startup = _line_quality(line, a, b)
    rows += _losses(line, a, b, planned, perf, scrapped, reworked, startup)
    rows += [
        ("line", sc.line.name, "oee", avail * perf * qual),
        ("line", sc.line.name, "oee availability", avail),
        ("line", sc.line.name, "oee performance", perf),
        ("line", sc.line.name, "oee quality", qual),
        ("line", sc.line.name, "bottleneck station", float([s.name for s in sc.stations].index(bottleneck))),
        ("line", sc.line.name, "constraint station", float(line.constraint)),
    ]
    rows += [("operators", name, "utilisation", pool.utilisation(a, b)) for name, pool in line.pools.items()]
    rows += [("crew", name, "utilisation", crew.utilisation(a, b)) for name, crew in line.crews.items()]
    rows += [("spare", name, kpi, value) for name, stock in line.spares.items()
             for kpi, value in stock.figures(a, b).items()]
    per_hour = next(v for scope, _, k, v in rows if scope == "line" and k == "throughput [parts/h]")
    rows += _energy_kpis(line, a, b, per_hour * (b - a) / 3600)
    df = pd.DataFrame(rows, columns=KPI_COLUMNS[1:])
    df.insert(0, "replication", line.replication)
    df["value"] = df["value"].astype(float)
    return df


def _energy_kpis(line: Line, a: float, b: float, good: float) -> list[Row]:
    """Each machine's electrical energy in [a, b] from its time in each state and its type's power, and the line's in
    all and per good part out (none without a power anywhere: no figures rather than zeros)."""
    sc = line.scenario
    if not any(mt.power is not None for mt in sc.machine_types.values()):
        return []
    rows: list[Row] = []
    total = 0.0
    for m in line.machines:
        p = m.mtype.power
        kw = np.array([p.kw(s) if p is not None else 0.0 for s in STATES])
        kwh = float(state_durations(m, a, b) @ kw) / 3600
        total += kwh
        rows.append(("machine", m.name, "energy [kWh]", kwh))
    return [*rows, ("line", sc.line.name, "energy [kWh]", total),
            ("line", sc.line.name, "energy per good part [kWh]", total / good if good > 0 else np.nan)]


def _flow_kpis(line: Line, a: float, b: float) -> list[Row]:
    """The line's flow of parts in [a, b]: throughput, WIP, lead time, departures, scrap, lost arrivals."""
    name, span = line.scenario.line.name, b - a
    entry = np.frombuffer(line.entry, dtype=np.float64).copy()
    exit_ = np.frombuffer(line.exit, dtype=np.float64).copy()
    scrap_at = np.frombuffer(line.scrapped_at, dtype=np.int16).copy()
    left = (exit_ >= a) & (exit_ <= b) & (scrap_at != CONSUMED)  # a part consumed by an assembly did not leave
    good = left & (scrap_at == INSIDE_OR_GOOD)
    rows: list[Row] = [
        ("line", name, "throughput [parts/h]", good.sum() / span * 3600),
        ("line", name, "wip [parts]", time_average_wip(entry, exit_, a, b)),
        ("line", name, "lead time [min]", float(np.mean(exit_[good] - entry[good]) / 60) if good.any() else np.nan),
        ("line", name, "time in system [min]", float(np.mean(exit_[left] - entry[left]) / 60)
         if left.any() else np.nan),
        ("line", name, "departures [parts/h]", left.sum() / span * 3600),
        ("line", name, "scrap rate", float((left & (scrap_at >= 0)).sum() / left.sum()) if left.any() else 0.0),
    ]
    if any(st.rework for st in line.scenario.stations):  # ISO 22400: rework ratio, and first pass yield
        reworked = line.reworked_mask()
        n = left.sum()
        rows += [("line", name, "rework ratio", float((left & reworked).sum() / n) if n else 0.0),
                 ("line", name, "first pass yield", float((good & ~reworked).sum() / n) if n else 1.0)]
    if line.arrivals:
        rows.append(("line", name, "lost arrivals", line.lost / line.arrivals))
    if line.scenario.products:
        product = np.frombuffer(line.product, dtype=np.int8)
        for k, p in enumerate(line.product_names):
            mine = product == k
            g = good & mine
            rows += [
                ("product", p, "throughput [parts/h]", g.sum() / span * 3600),
                ("product", p, "wip [parts]", time_average_wip(entry[mine & (scrap_at != CONSUMED)],
                                                               exit_[mine & (scrap_at != CONSUMED)], a, b)),
                ("product", p, "lead time [min]", float(np.mean(exit_[g] - entry[g]) / 60) if g.any() else np.nan),
                ("product", p, "departures [parts/h]", (left & mine).sum() / span * 3600),
                ("product", p, "time in system [min]", float(np.mean(exit_[left & mine] - entry[left & mine]) / 60)
                 if (left & mine).any() else np.nan),
            ]
    if line.scenario.orders:
        rows += _order_kpis(line, exit_)
    return rows


def order_label(k: int, order: ReleaseOrder) -> str:
    """How an order of a scenario's `orders` is named (KPI scope `order`): '2: A-1042 juice-10 × 1,500'."""
    return f"{k + 1}: " + (f"{order.order} " if order.order else "") + f"{order.product} × {order.parts:,}"


def _order_kpis(line: Line, exit_: np.ndarray) -> list[Row]:
    """Each released order (`orders`, scope `order`): whether its good parts were all made (1, else 0) and when its
    last one left the line, hours from the start (nan: not within the run), and with a due time whether it was made
    by then (nan where it is due after the run's end and was not made); a completion, not a figure of the window, so
    parts out during the warm-up count too."""
    tags, good = line.orders_of(), line.good_out()
    rows: list[Row] = []
    for k, order in enumerate(line.scenario.orders or []):
        out = np.sort(exit_[good & (tags == k)])
        made = len(out) >= order.parts
        done = float(out[order.parts - 1]) / 3600 if made else np.nan
        name = order_label(k, order)
        rows += [("order", name, "made", float(made)), ("order", name, "done [h]", done)]
        if order.due is not None:  # in time: made by then; not made by the run's end, before its due: not known
            due = (order.due - line.scenario.start.replace(tzinfo=None)).total_seconds() / 3600
            rows.append(("order", name, "on time",
                         float(done <= due) if made else 0.0 if due <= line.horizon / 3600 else np.nan))
    return rows


def _station_flow(line: Line, name: str, group: list[Machine], a: float, b: float) -> list[Row]:
    """A station's utilisation (mean working share of its machines) and mean number of parts at it (waiting in
    front and in its machines; an assembly: counting the parts of its first input)."""
    rows: list[Row] = [("station", name, "utilisation", float(np.mean([state_durations(m, a, b)[WORKING]
                                                                         for m in group]) / (b - a)))]
    si = group[0].station_idx
    buf = line.buffers[si] if si < len(line.buffers) else None
    inputs = line.station_inputs.get(si)
    if inputs:
        buf = next(iter(inputs.values()))
    out = np.concatenate([np.frombuffer(m.log.finished, dtype=np.float64) for m in group]
                         + [np.frombuffer(m.log.scrapped, dtype=np.float64) for m in group])
    if buf is not None:  # the parts a buffer starts with (its initial, a feeder's, or a what-if's) came at 0
        came = np.concatenate([np.zeros(buf.stocked), np.frombuffer(buf.arrived, dtype=np.float64)])
    else:
        came = np.concatenate([np.frombuffer(m.log.begun, dtype=np.float64) for m in group])
    rows.append(("station", name, "wip at station [parts]", time_average_wip(np.sort(came), np.sort(out), a, b)))
    return rows


def _buffer_kpis(line: Line, a: float, b: float) -> list[Row]:
    """Each buffer's level over [a, b] (parts waiting, a conveyor's on the way too): its time average and the most
    it held, and with a capacity the share of the time it was full (the station before it blocked, or about to be)
    and empty (the station after it starving, unless a machine was busy with its last part): what sizing it asks."""
    sc, rows = line.scenario, []
    named = [(st.name, buf, st.buffer) for st, buf in zip(sc.stations, line.buffers) if buf is not None]
    for si, inputs in line.station_inputs.items():
        named += [(feeder_key(sc.stations[si].name, f), buf, sc.stations[si].buffer) for f, buf in inputs.items()]
    for name, buf, capacity in named:
        came, left = np.frombuffer(buf.arrived, dtype=np.float64), np.frombuffer(buf.left, dtype=np.float64)
        times = np.concatenate([came, left])  # a part handed straight on comes and leaves at once: no time held
        steps = np.concatenate([np.ones(len(came)), -np.ones(len(left))])
        order = np.argsort(times, kind="stable")
        starts = np.concatenate([[-np.inf], times[order]])
        level = buf.stocked + np.concatenate([[0.0], np.cumsum(steps[order])])
        held = step_lengths(starts, a, b)  # each level's time inside [a, b]
        span = b - a
        rows += [("buffer", name, "buffer level [parts]", float(level @ held / span)),
                 ("buffer", name, "buffer max level [parts]", float(level[held > 0].max(initial=0.0)))]
        if capacity is not None:
            rows += [("buffer", name, "buffer full share", float(held[level >= capacity].sum() / span)),
                     ("buffer", name, "buffer empty share", float(held[level <= 0].sum() / span))]
    return rows


def _line_quality(line: Line, a: float, b: float) -> tuple[float, float, float, float]:
    """Of the parts that passed the constraint station inside [a, b] and have left the line, the shares that left
    good without rework (the line's quality: a line that scraps every part has quality, and OEE, 0), that were
    scrapped (start-up rejects included), that left good after rework, and that were start-up rejects; parts still
    inside are not judged yet."""
    passed = np.frombuffer(line.passed, dtype=np.float64)
    exit_, fate = line.fates()  # a part consumed by an assembly shares the assembly's fate
    made = (passed >= a) & (passed <= b) & (exit_ <= b)  # judged: left the line (good or scrap) by b
    good = made & (fate == INSIDE_OR_GOOD)
    again = good & line.reworked_mask(carried=True)  # good, but not the first time (ISO 22400's rework)
    n = int(np.count_nonzero(made))
    if not n:
        return 1.0, 0.0, 0.0, 0.0
    startup = made & ~good & line.mask_of(line.startup_rejects, carried=True)
    return (int(np.count_nonzero(good & ~again)) / n, int(np.count_nonzero(made & ~good)) / n,
            int(np.count_nonzero(again)) / n, int(np.count_nonzero(startup)) / n)


#: where the line's planned time goes (its OEE losses): the constraint station's time in each state but working
LOSS_STATES = tuple(k for k in range(len(STATES)) if k != WORKING)
LOSS = "oee loss: "  # the line's KPIs of its losses: LOSS + each of LOSSES
#: the losses' names, in KPI order: `oee loss: NAME` (availability's by state, then performance's and quality's)
LOSSES = (*({"waiting_operator": "waiting for operator"}.get(STATES[k], STATES[k].replace("_", " "))
            for k in LOSS_STATES), "minor stops", "speed", "startup rejects", "scrap", "rework")
#: the OEE factor each loss lowers
LOSS_FACTORS = {k: "performance" if k in ("minor stops", "speed") else "quality"
                if k in ("startup rejects", "scrap", "rework") else "availability" for k in LOSSES}


def _losses(line: Line, a: float, b: float, planned: float, perf: float, scrapped: float, reworked: float,
            startup: float) -> list[Row]:
    """The line's OEE losses as shares of its planned time that add up to 1 with its OEE (the time model of ISO
    22400): its constraint station's machines' planned time in each state but working (availability), the working
    time its parts' design cycles do not account for (performance: minor stops, the rest reduced speed), and the
    share of the rest whose parts were start-up rejects, other scrap, or reworked (quality). NaN where no time was
    planned."""
    name, group = line.scenario.line.name, line.stations[line.constraint]
    time = planned * len(group)
    if time <= 0:
        return [("line", name, LOSS + k, np.nan) for k in LOSSES]
    states = [sum(_time_in(m, a, b, line.calendar, (k,))[1] for m in group) / time for k in LOSS_STATES]
    avail = 1 - sum(states)  # the share of the planned time the constraint worked: its availability
    speed = avail * (1 - perf)
    minor = min(sum(_minor_time(m, a, b, line.calendar)[1] for m in group) / time, max(speed, 0.0))
    shares = [*states, minor, speed - minor, avail * perf * startup, avail * perf * (scrapped - startup),
              avail * perf * reworked]
    return [("line", name, LOSS + k, float(v)) for k, v in zip(LOSSES, shares)]


def _minor_time(m: Machine, a: float, b: float, calendar: ShiftCalendar | None) -> tuple[int, float]:
    """How many of m's minor stops began inside [a, b], and their seconds inside it that were planned time."""
    if m.minor is None:
        return 0, 0.0
    start, length = np.frombuffer(m.minor.starts), np.frombuffer(m.minor.lengths)
    lo, hi = np.maximum(start, a), np.minimum(start + length, b)
    inside = hi > lo
    n = int(np.count_nonzero((start >= a) & (start <= b)))
    lo, hi = lo[inside], hi[inside]
    return n, float(calendar.planned_between(lo, hi).sum()) if calendar is not None else float((hi - lo).sum())


def _time_in(m: Machine, a: float, b: float, calendar: ShiftCalendar | None,
                  states: tuple[int, ...] = (WORKING,)) -> tuple[float, float]:
    """Seconds m spent in `states` (default: working) inside [a, b]: in all, and inside planned (shift) time."""
    t = np.frombuffer(m.log.t, dtype=np.float64)
    s = np.frombuffer(m.log.state, dtype=np.int8)
    ends = np.append(t[1:], max(b, t[-1]))
    work = np.isin(s, states)
    lo, hi = np.maximum(t[work], a), np.minimum(ends[work], b)
    total = float(np.clip(hi - lo, 0.0, None).sum())
    return total, (float(calendar.planned_between(lo, hi).sum()) if calendar is not None else total)


def _ideal_by_product(line: Line, st: Station) -> np.ndarray:
    """The station's design cycle of each product (one entry when the line has no products)."""
    if not line.scenario.products:
        return np.array([st.ideal_cycle()[0]])
    return np.array([st.ideal_cycle_of(p) for p in line.product_names])


def _within(times: array, a: float, b: float) -> int:
    """How many of the logged times lie in [a, b]."""
    t = np.frombuffer(times, dtype=np.float64)
    return int(np.count_nonzero((t >= a) & (t <= b)))


def _machine_kpis(m: Machine, a: float, b: float, planned: float, repairs: pd.DataFrame,
                  calendar: ShiftCalendar | None, ideal: np.ndarray
                  ) -> tuple[list[Row], tuple[float, float, float, float, float, float]]:
    """One machine's state shares, availability, MTBF/MTTR and parts in [a, b], and what its station's OEE
    adds up: (working time in shifts, working time, ideal time of the parts begun and finished inside [a, b],
    parts made, parts good the first time (neither scrapped nor sent to rework), active time)."""
    span = b - a
    d = state_durations(m, a, b)
    n_good, n_scrap = _within(m.log.finished, a, b), _within(m.log.scrapped, a, b)
    n_rework = _within(m.log.reworked, a, b)  # of the good ones, sent to rework (not good the first time)
    worked, worked_planned = _time_in(m, a, b, calendar)
    # parts whose whole work lies inside [a, b]: each took at least the ideal cycle, so performance <= 100 %
    before = int(np.count_nonzero(np.frombuffer(m.log.begun, dtype=np.float64) < a))
    if len(ideal) > 1:  # each part at its product's ideal cycle
        products = np.frombuffer(m.log.begun_product, dtype=np.int8)[before:m.parts_done]
        ideal_time = float(ideal[products].sum())
    else:
        ideal_time = float(ideal[0]) * max(0, m.parts_done - before)
    clock_time = d[WORKING] if m.mtype.clock == "operating" else span - d[DOWN] - d[MAINTENANCE] - d[OFF_SHIFT]
    rows: list[Row] = [("machine", m.name, f"{name} share", d[k] / span) for k, name in enumerate(STATES)]
    rows += [
        ("machine", m.name, "utilisation", d[WORKING] / span),
        # ISO 22400: downtime counts against availability only inside planned time (a repair that runs on after the
        # shift's end took off-shift time, which is no one's to lose; counted whole, a long one made it negative)
        ("machine", m.name, "availability", 1 - _time_in(m, a, b, calendar, (DOWN, MAINTENANCE))[1] / planned
         if planned > 0 else np.nan),
        ("machine", m.name, "failures", float(len(repairs))),
        ("machine", m.name, "mtbf [h]", clock_time / len(repairs) / 3600 if len(repairs) else np.nan),
        ("machine", m.name, "mttr [min]", float(repairs.downtime.mean() / 60) if len(repairs) else np.nan),
        # of it, the wait before the repair began (a technician off shift or busy, a spare part not on hand)
        ("machine", m.name, "wait before repair [min]", float(repairs.wait.mean() / 60)
         if len(repairs) and repairs.wait.notna().any() else np.nan),
        ("machine", m.name, "parts", float(n_good + n_scrap)),
    ]
    if m.scrap_max or m.startup is not None:  # a machine that can scrap: the share of its parts it did
        rows.append(("machine", m.name, "scrap share", n_scrap / (n_good + n_scrap) if n_good + n_scrap else np.nan))
    if m.startup is not None:  # the parts after a restart (a setup, a repair, a service) scrapped as it settled
        rows.append(("machine", m.name, "startup rejects", float(_within(m.log.startup_rejected, a, b))))
    if m.minor is not None:  # short stops worked through (shown as working): what they took of its working time
        n_minor, minor_planned = _minor_time(m, a, b, calendar)
        rows += [("machine", m.name, "minor stops", float(n_minor)),
                 ("machine", m.name, "minor stop share", minor_planned / worked_planned if worked_planned > 0
                  else np.nan)]
    return rows, (worked_planned, worked, ideal_time, n_good + n_scrap, n_good - n_rework,
                  d[WORKING] + d[DOWN] + d[MAINTENANCE] + d[SETUP])


def _station_oee(planned: float, span: float, tallies: list[tuple[float, float, float, float, float, float]]
                 ) -> tuple[float, float, float, float, float]:
    """A station's OEE, availability, performance, quality and active share from its machines' tallies (ISO
    22400: A = actual production time / planned busy time, P = ideal cycle x parts / production time, Q = good /
    made); every factor lies within 0-1 when the ideal cycle is the fastest one."""
    tot_planned = apt = worked = ideal_time = count = good_n = active = 0.0
    for w_planned, w, ideal_w, made, good, busy in tallies:  # summed in machine order, as always
        tot_planned += planned
        apt += w_planned
        worked += w
        ideal_time += ideal_w
        count += made
        good_n += good
        active += busy
    avail = apt / tot_planned if tot_planned > 0 else 0.0
    perf = ideal_time / worked if worked > 0 else 0.0
    qual = good_n / count if count else 1.0
    return avail * perf * qual, avail, perf, qual, active / (span * len(tallies))


def t_quantile() -> Callable[[np.ndarray, float], np.ndarray]:
    """scipy's Student-t quantile (`stdtrit`, what scipy.stats.t.ppf uses, without its start-up), imported on first use:
    0.2 s that a single replication never pays, and that a run on workers pays while they simulate (`runner`)."""
    from scipy.special import stdtrit

    return stdtrit


def half_width(values: np.ndarray, confidence: float = 0.95) -> float:
    """The Student-t interval's half-width of the mean of `values` (their missing ones left out; nan for fewer than
    two): one replication-to-replication spread, as `summarize` gives it per KPI."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return np.nan
    return float(t_quantile()(np.array(len(x) - 1.0), 0.5 + confidence / 2) * np.std(x, ddof=1) / np.sqrt(len(x)))


def mean_ci_text(mean: float, lo: float, hi: float) -> str:
    """'mean ± half-width' of an interval, the half-width to two significant digits and the mean to as many decimals,
    never in e-notation (a throughput's '3055 ± 2.6e+02' read as nonsense to a plant engineer), nor to the 17th
    decimal for a spread that is only rounding's ('1.00000000000000000 ± 0.00000000000000022'); '-' for no mean."""
    if not np.isfinite(mean):
        return "-"
    half = (hi - lo) / 2
    if not np.isfinite(half):
        return plain(mean)
    if half <= 1e-9 * abs(mean):  # rounding's noise (replications that all scored 1 summed as 0.99999999999999989)
        return f"{plain(mean)} ± 0"
    decimals = max(0, 1 - int(np.floor(np.log10(abs(half)))))
    return f"{mean:,.{decimals}f} ± {half:,.{decimals}f}"


def plain(value: float, digits: int = 4) -> str:
    """`value` to `digits` significant digits (the integer part whole, no trailing zeros), with no exponent: what a
    table shows a figure as ('36,120', not '3.612e+04'); '-' for no number."""
    if not np.isfinite(value):
        return "-"
    if value == 0:
        return "0"
    text = f"{value:,.{max(0, digits - 1 - int(np.floor(np.log10(abs(value)))))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def summarize(kpis: pd.DataFrame | Iterable[pd.DataFrame], confidence: float = 0.95) -> pd.DataFrame:
    """Mean, standard deviation and Student-t confidence interval of every KPI over replications."""
    df = kpis if isinstance(kpis, pd.DataFrame) else pd.concat(list(kpis), ignore_index=True)
    g = df.groupby(["scope", "entity", "kpi"], sort=False)["value"]
    out = g.agg(mean="mean", sd="std", n="count").reset_index()
    half = np.full(len(out), np.nan)
    several = (out["n"] > 1).to_numpy()
    if several.any():  # one replication has no interval (and needs no scipy)
        n = out["n"].to_numpy()[several]
        half[several] = t_quantile()(n - 1, 0.5 + confidence / 2) * out["sd"].to_numpy()[several] / np.sqrt(n)
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    return out
