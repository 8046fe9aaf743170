"""Behaviour of the line model: determinism, conservation, reliability, maintenance, calendar, crews."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import hypothesis.strategies as hs
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings

from tests.helpers import const, exp, kpi, replicate, scenario, unreliable
from twin.app.runner import events_frame, simulate, states_frame
from twin.model import DOWN, MAINTENANCE, OFF_SHIFT, SETUP, Line
from twin.scenario import load_scenario, with_policy
from twin.truth import TruthReader


def run(sc, rep: int = 0) -> Line:  # type: ignore[no-untyped-def]
    line = Line(sc, rep)
    line.run(sc.duration)
    return line


def wear_type(**maintenance: object) -> dict[str, object]:
    return {"fault_modes": [{"name": "wear", "ttf": {"dist": "weibull", "shape": 3, "scale": 2000},
                             "repair": const(100), "progression": 2}],
            "maintenance": maintenance or {"policy": "run-to-failure"}, "start_age": "new"}


def test_same_seed_same_everything_and_other_seed_differs() -> None:
    sc = load_scenario("scenarios/bottling.yaml").model_copy(update={"duration": 3600.0, "warmup": 0.0})
    a, b = simulate(sc, 0), simulate(sc, 0)
    assert a.kpis.equals(b.kpis)
    assert states_frame(a.line).equals(states_frame(b.line))
    assert events_frame(a.line).equals(events_frame(b.line))
    other = simulate(sc.model_copy(update={"seed": sc.seed + 1}), 0)
    assert not other.kpis.equals(a.kpis)
    rep1 = simulate(sc, 1)
    assert not rep1.kpis.equals(a.kpis)  # replications use independent streams


def test_parts_are_conserved() -> None:
    """Every part that entered has left good, been scrapped, or is still inside (in = out + WIP + scrap)."""
    sc = scenario([{"name": "a", "cycle_time": exp(10), "scrap": 0.05},
                   {"name": "b", "cycle_time": exp(9), "buffer": 5, "machines": 2, "scrap": 0.02},
                   {"name": "c", "cycle_time": exp(4), "buffer": 1}],
                  machine_types={"m": unreliable(500, 50)}, duration=50_000)
    line = run(sc)
    exit_ = np.frombuffer(line.exit)
    scrapped = np.frombuffer(line.scrapped_at, dtype=np.int16) >= 0
    inside = np.isnan(exit_)
    out = ~inside & ~scrapped
    assert len(exit_) == out.sum() + scrapped.sum() + inside.sum()
    assert inside.sum() == line.wip
    buffers = sum(len(b.items) for b in line.buffers if b is not None)
    assert 0 < line.wip <= buffers + len(line.machines)
    finished_last = len(line.stations[-1][0].log.finished)
    assert finished_last == out.sum()
    assert scrapped.sum() == sum(len(m.log.scrapped) for m in line.machines)


@pytest.mark.slow
@pytest.mark.parametrize("clock", ["operating", "calendar"])
def test_observed_mtbf_and_mttr_match_configured(clock: str) -> None:
    sc = scenario([{"name": "m1", "cycle_time": const(5)}], machine_types={"m": unreliable(3600, 600, clock)},
                  duration=400 * 3600)
    k = replicate(sc, 4)
    assert kpi(k, "mtbf [h]").mean() == pytest.approx(1.0, rel=0.06)
    assert kpi(k, "mttr [min]").mean() == pytest.approx(10.0, rel=0.06)
    assert kpi(k, "failures").sum() > 1000


def test_mtbf_and_mttr_of_a_machine_type_are_a_sudden_breakdown() -> None:
    """What a plant's records give (MTBF, MTTR) written as such: the same fault mode, draws and KPIs as the
    exponential 'breakdown' written out, and written out so wherever the type is (a policy swapped, a file saved)."""
    stations = [{"name": "a", "cycle_time": exp(60)}, {"name": "b", "cycle_time": exp(50), "buffer": 3}]
    short = scenario(stations, machine_types={"m": {"mtbf": "2 h", "mttr": "10 min"}}, duration=200 * 3600)
    long = scenario(stations, machine_types={"m": unreliable(7200, 600)}, duration=200 * 3600)
    assert short.model_dump() == long.model_dump()
    assert replicate(short, 2).equals(replicate(long, 2))
    swapped = with_policy(short, "preventive", every=3600.0)
    assert [fm.name for fm in swapped.machine_types["m"].fault_modes] == ["breakdown"]


def test_wear_rises_to_one_at_failure_and_resets_at_repair() -> None:
    sc = scenario([{"name": "m1", "cycle_time": const(1)}], machine_types={"m": wear_type()}, duration=20_000)
    line = run(sc)
    m = line.machines[0]
    ev = events_frame(line)
    fails = ev[ev.event == "failure"].t.to_numpy()
    assert len(fails) >= 3
    state, _, wear = TruthReader(m).at(np.concatenate([[0.0], fails - 1e-6, fails + 100 + 1e-6]))
    n = len(fails)
    assert wear[0, 0] == 0.0  # started new
    assert np.allclose(wear[0, 1:n + 1], 1.0, atol=1e-3)  # worn out right before each failure
    assert np.all(wear[0, n + 1:] < 0.01)  # renewed after the 100 s repair
    assert (state[n + 1:] != DOWN).all()


@pytest.mark.slow
def test_operating_clock_runs_faster_under_load() -> None:
    base = {"fault_modes": [{"name": "f", "kind": "sudden", "ttf": exp(2000), "repair": const(10)}],
            "load_exponent": 2.0, "reference_load": 0.8}
    failures = {}
    for load in (0.8, 1.6):
        sc = scenario([{"name": "m1", "cycle_time": const(1), "load": load}], machine_types={"m": base},
                      duration=400_000)
        failures[load] = kpi(replicate(sc, 2), "failures").sum()
    assert failures[1.6] / failures[0.8] == pytest.approx(4.0, rel=0.15)  # (1.6 / 0.8) ** 2


def test_preventive_maintenance_every_operating_hours() -> None:
    mt = wear_type(policy="preventive", every=500, duration=const(60))
    line = run(scenario([{"name": "m1", "cycle_time": const(10)}], machine_types={"m": mt}, duration=20_000))
    ev = events_frame(line)
    starts = ev[ev.event == "maintenance_start"].t.to_numpy()
    assert len(starts) >= 20
    assert (np.diff(starts) >= 500).all()
    assert ev[ev.event == "failure"].empty  # 500 s of work is far inside the 2000 s characteristic life


def test_preventive_maintenance_every_n_parts() -> None:
    mt = wear_type(policy="preventive", every_parts=7, duration=const(5))
    line = run(scenario([{"name": "m1", "cycle_time": const(10)}], machine_types={"m": mt}, duration=2_000))
    ev = events_frame(line)
    n = len(ev[ev.event == "maintenance_end"])
    parts = len(line.machines[0].log.finished)
    assert n == parts // 7


def test_perfect_monitoring_acts_on_the_true_wear() -> None:
    mt = wear_type(policy="perfect-monitoring", wear_limit=0.5, duration=const(60))
    line = run(scenario([{"name": "m1", "cycle_time": const(5)}], machine_types={"m": mt}, duration=100_000))
    m = line.machines[0]
    ev = events_frame(line)
    orders = ev[ev.event == "maintenance_order"].t.to_numpy()
    assert len(orders) >= 10
    _, _, wear = TruthReader(m).at(orders)
    assert (wear[0] >= 0.5).all() and (wear[0] < 0.6).all()  # caught within one 5 s cycle of the limit
    assert len(ev[ev.event == "failure"]) <= 1


def _sensed_type(noise: float, **maintenance: object) -> dict[str, object]:
    mt = wear_type(policy="condition-based", sensor="vib", threshold=3.0, duration=const(60), **maintenance)
    mt["fault_modes"][0]["signature"] = {"vib": 4.0}  # type: ignore[index]
    mt["sensors"] = [{"name": "vib", "unit": "mm/s", "idle": 0.5, "working": 1.0, "noise": noise}]
    return mt


@pytest.mark.parametrize(("noise", "filter_", "median"), [(0.0, 0, (0.5, 0.51)), (0.5, 0, (0.1, 0.4)),
                                                           (0.5, 60, (0.4, 0.6))])
def test_condition_based_maintenance_acts_on_a_measured_sensor(noise: float, filter_: float,
                                                              median: tuple[float, float]) -> None:
    """The reading is 1 + 4 x wear (+ noise): the threshold 3 mm/s is wear 0.5. Without noise every order comes at
    0.5; with noise and no filter a high draw orders early (useful life thrown away); a filter brings the orders
    back near 0.5, scattered. The old policy read the hidden wear and ordered every time at exactly its limit."""
    mt = _sensed_type(noise, filter=filter_)
    line = run(scenario([{"name": "m1", "cycle_time": const(5)}], machine_types={"m": mt}, duration=200_000))
    ev = events_frame(line)
    orders = ev[ev.event == "maintenance_order"].t.to_numpy()
    assert len(orders) >= 10
    _, _, wear = TruthReader(line.machines[0]).at(orders)
    assert median[0] <= np.median(wear[0]) <= median[1]
    assert (np.std(wear[0]) > 0.02) == (noise > 0)


def test_sensor_based_policy_needs_a_sensor_that_shows_wear() -> None:
    from pydantic import ValidationError

    mt = _sensed_type(0.1)
    mt["fault_modes"][0]["signature"] = {}  # type: ignore[index]
    with pytest.raises(ValidationError, match="shows no wear"):
        scenario([{"name": "m1", "cycle_time": const(5)}], machine_types={"m": mt})
    with pytest.raises(ValidationError, match="watches a measured sensor"):
        scenario([{"name": "m1", "cycle_time": const(5)}],
                 machine_types={"m": wear_type(policy="condition-based", threshold=0.5)})


def test_inspection_finds_wear_only_when_it_inspects() -> None:
    mt = wear_type(policy="inspection", inspect_every="10 min", wear_limit=0.5, measurement_error=0.0,
                   duration=const(60))
    line = run(scenario([{"name": "m1", "cycle_time": const(5)}], machine_types={"m": mt}, duration=200_000))
    ev = events_frame(line)
    orders = ev[ev.event == "maintenance_order"]
    assert len(orders) >= 10 and set(orders.detail) == {"inspection"}
    _, _, wear = TruthReader(line.machines[0]).at(orders.t.to_numpy())
    assert (wear[0] >= 0.5).all() and np.std(wear[0]) > 0.01  # found at the first inspection past the limit


def test_external_order_is_taken_at_the_next_cycle_boundary() -> None:
    sc = scenario([{"name": "m1", "cycle_time": const(10)}], machine_types={"m": wear_type()}, duration=1000)
    line = Line(sc)
    line.run(95)
    line.order_maintenance("m1", "predicted failure")
    line.run(sc.duration)
    ev = events_frame(line)
    order = ev[ev.event == "maintenance_order"]
    assert list(order.t) == [100.0] and list(order.detail) == ["predicted failure"]
    with pytest.raises(KeyError):
        line.order_maintenance("nope")


@pytest.mark.slow
def test_repair_crew_is_shared_and_repairs_wait() -> None:
    mt = unreliable(2000, 600)
    mt["repair_crew"] = "crew"
    crew1 = scenario([{"name": "s", "cycle_time": const(10), "machines": 4}], machine_types={"m": mt},
                     repair_crews=[{"name": "crew", "size": 1}], duration=500_000)
    unlimited = crew1.model_copy(update={"repair_crews": [crew1.repair_crews[0].model_copy(update={"size": 4})]})
    slow, fast = replicate(crew1, 2), replicate(unlimited, 2)
    assert kpi(slow, "mttr [min]").mean() > 1.3 * kpi(fast, "mttr [min]").mean()
    assert kpi(fast, "mttr [min]").mean() == pytest.approx(10, rel=0.1)


def test_shift_calendar_stops_the_line_outside_shifts() -> None:
    sc = scenario([{"name": "m1", "cycle_time": const(60)}], calendar={"shifts": ["06:00-14:00"]},
                  start="2026-01-05T06:00:00", duration="2 d")
    line = run(sc)
    st = states_frame(line)
    off = st[st.state == "off_shift"]
    assert list(off.start) == [8 * 3600.0, 32 * 3600.0]
    assert list(off.end) == [24 * 3600.0, 48 * 3600.0]
    k = replicate(sc, 1)
    assert kpi(k, "oee availability", "m1")[0] == pytest.approx(1.0)
    assert kpi(k, "off_shift share", "m1")[0] == pytest.approx(2 / 3, abs=1e-3)
    assert line.machines[0].state == OFF_SHIFT


def test_a_night_shift_crosses_midnight_and_overlapping_shifts_count_once() -> None:
    """'22:00-06:00' was refused ('ends before it starts'; the split form's 00:00-06:00 belongs to the next day, so a
    Monday-to-Friday night shift worked Monday morning and not Saturday morning); two shifts that overlap at a
    hand-over counted their overlap twice as planned time (06:00-14:00 and 10:00-18:00 planned 16 h a day)."""
    from twin.model import ShiftCalendar
    from twin.scenario import Calendar

    days = ["mon", "tue", "wed", "thu", "fri"]
    monday = __import__("datetime").datetime(2026, 1, 5, 0, 0)
    three = ShiftCalendar(Calendar(shifts=["06:00-14:00", "14:00-22:00", "22:00-06:00"], days=days), monday,
                          7 * 86400)
    assert three.planned(0, 7 * 86400) == pytest.approx(5 * 24 * 3600)  # Monday 06:00 to Saturday 06:00
    assert three.next_start(3600.0) == 6 * 3600  # Monday 01:00: no Sunday night shift
    assert three.next_start(5 * 86400 + 5 * 3600) is None  # Saturday 05:00: Friday's night shift
    assert three.next_start(5 * 86400 + 7 * 3600) == 7 * 86400 + 6 * 3600  # Saturday 07:00: Monday 06:00
    overlap = ShiftCalendar(Calendar(shifts=["06:00-14:00", "10:00-18:00"]), monday, 2 * 86400)
    assert overlap.planned(0, 86400) == pytest.approx(12 * 3600)
    sc = scenario([{"name": "m1", "cycle_time": const(60)}], calendar={"shifts": ["22:00-06:00"], "days": days},
                  start="2026-01-05T00:00:00", duration="7 d")
    line = run(sc)
    made = np.frombuffer(line.exit)
    assert len(made) == pytest.approx(5 * 8 * 60, abs=5)  # five night shifts of 8 h, a part a minute
    assert made.min() >= 22 * 3600 and made.max() <= 5 * 86400 + 6 * 3600 + 60


def test_holidays_take_their_shifts_off_the_calendar() -> None:
    """A plant's holidays and shutdowns (a date, or a span of dates) were not expressible: a what-if over Christmas
    planned every weekday's shifts. A shift belongs to the day it starts on, so Tuesday's night shift before a
    Wednesday holiday runs into Wednesday morning, and Wednesday's does not start."""
    from pydantic import ValidationError

    from twin.model import ShiftCalendar
    from twin.scenario import Calendar

    monday = __import__("datetime").datetime(2026, 12, 21, 0, 0)
    days = ["mon", "tue", "wed", "thu", "fri"]
    cal = Calendar.model_validate({"shifts": ["06:00-14:00", "22:00-06:00"], "days": days,
                                   "holidays": ["2026-12-23", {"from": "2026-12-25", "to": "2026-12-26"}]})
    week = ShiftCalendar(cal, monday, 7 * 86400)
    assert week.planned(0, 7 * 86400) == pytest.approx(3 * 16 * 3600)  # Mon, Tue, Thu: 8 h + a night shift each
    assert week.next_start(2 * 86400 + 5 * 3600) is None  # Wednesday 05:00: Tuesday's night shift
    assert week.next_start(2 * 86400 + 7 * 3600) == 3 * 86400 + 6 * 3600  # Wednesday 07:00: Thursday 06:00
    assert week.next_start(4 * 86400 + 5 * 3600) is None  # Friday 05:00: Thursday's night shift
    assert week.next_start(4 * 86400 + 7 * 3600) == 7 * 86400 + 6 * 3600  # then Monday
    sc = scenario([{"name": "m1", "cycle_time": const(60)}], calendar=cal.model_dump(by_alias=True),
                  start="2026-12-21T00:00:00", duration="7 d")
    assert len(np.frombuffer(run(sc).exit)) == pytest.approx(3 * 16 * 60, abs=5)  # a part a minute, 48 h
    for wrong, message in [({"from": "2026-12-26", "to": "2026-12-25"}, r"to \(2026-12-25\) is before from"),
                           ("24.12.2026", "valid date")]:
        with pytest.raises(ValidationError, match=message):
            Calendar.model_validate({"shifts": ["06:00-14:00"], "holidays": [wrong]})


def test_a_weekday_works_its_own_shifts() -> None:
    """Two shifts Monday to Friday and a short Saturday shift, the commonest plant week, could not be written: one
    list of shifts held for every working day. A Friday night shift into Saturday and Saturday's own shift from 06:00
    join."""
    from pydantic import ValidationError

    from twin.model import ShiftCalendar
    from twin.scenario import Calendar

    monday = __import__("datetime").datetime(2026, 1, 5, 0, 0)
    days = ["mon", "tue", "wed", "thu", "fri"]
    week = ShiftCalendar(Calendar.model_validate({"shifts": ["06:00-22:00"], "days": days,
                                                  "by_day": {"sat": ["06:00-12:00"]}}), monday, 7 * 86400)
    assert week.planned(0, 7 * 86400) == pytest.approx((5 * 16 + 6) * 3600)
    assert week.next_start(5 * 86400 + 5 * 3600) == 5 * 86400 + 6 * 3600  # Saturday 05:00: its shift at 06:00
    assert week.next_start(5 * 86400 + 13 * 3600) == 7 * 86400 + 6 * 3600  # Saturday 13:00: Monday
    assert (5 * 86400 + 6 * 3600, 5 * 86400 + 12 * 3600) in week.shifts  # the per-shift table's Saturday
    nights = ShiftCalendar(Calendar.model_validate({"shifts": ["22:00-06:00"], "days": days,
                                                    "by_day": {"fri": ["22:00-06:00"], "sat": ["06:00-10:00"]}}),
                           monday, 7 * 86400)
    assert nights.planned(5 * 86400, 6 * 86400) == pytest.approx(10 * 3600)  # Friday night's 6 h, then Saturday's 4
    assert nights.next_start(5 * 86400 + 7 * 3600) is None  # one window from Friday 22:00 to Saturday 10:00
    with pytest.raises(ValidationError, match="sat: give its shifts"):
        Calendar.model_validate({"shifts": ["06:00-14:00"], "by_day": {"sat": []}})
    with pytest.raises(ValidationError, match="shift '6-12' is not 'HH:MM-HH:MM'"):
        Calendar.model_validate({"shifts": ["06:00-14:00"], "by_day": {"sat": ["6-12"]}})


def test_breaks_are_planned_downtime_inside_their_shifts() -> None:
    """A shift's lunch break could only be written as two shifts ('06:00-12:00', '12:30-14:00'), which the per-shift
    report then counted as two. Now `breaks` leave the line off shift (machines finish the part in hand) and out of
    planned time on every working day, a break after midnight inside the night shift, and the shifts stay whole."""
    from pydantic import ValidationError

    from twin.model import ShiftCalendar
    from twin.scenario import Calendar

    monday = __import__("datetime").datetime(2026, 1, 5, 0, 0)
    cal = Calendar.model_validate({"shifts": ["06:00-14:00", "14:00-22:00", "22:00-06:00"],
                                   "days": ["mon", "tue", "wed", "thu", "fri"],
                                   "breaks": ["12:00-12:30", "18:00-18:30", "02:00-02:20"]})
    week = ShiftCalendar(cal, monday, 7 * 86400)
    assert week.planned(0, 7 * 86400) == pytest.approx(5 * (24 - 0.5 - 0.5 - 1 / 3) * 3600)
    assert week.next_start(86400 + 12 * 3600 + 60) == 86400 + 12.5 * 3600  # Tuesday 12:01: back at 12:30
    assert week.next_start(2 * 86400 + 2 * 3600 + 60) == 2 * 86400 + 2 * 3600 + 20 * 60  # Wednesday 02:01 (Tuesday's)
    assert week.next_start(5 * 86400 + 2 * 3600 + 60) == 5 * 86400 + 2 * 3600 + 20 * 60  # Saturday 02:01 (Friday's)
    assert week.next_start(3600) == 6 * 3600  # Monday 01:00: no Sunday night shift, and no break of it
    assert sum(a < 7 * 86400 for a, _ in week.shifts) == 15  # three shifts a day, not six
    assert cal.week_hours() == pytest.approx(week.planned(0, 7 * 86400) / 3600)  # what `twin validate` says
    sc = scenario([{"name": "m1", "cycle_time": const(60)}], calendar={"shifts": ["06:00-14:00"],
                                                                        "breaks": ["09:00-09:15", "12:00-12:30"]},
                  start="2026-01-05T06:00:00", duration="1 d")
    st = states_frame(run(sc))
    off = st[st.state == "off_shift"]
    assert list(zip(off.start, off.end)) == [(3 * 3600.0, 3.25 * 3600), (6 * 3600.0, 6.5 * 3600), (8 * 3600.0, 86400)]
    k = replicate(sc, 1)
    assert kpi(k, "oee availability", "m1")[0] == pytest.approx(1.0)  # a break is no loss
    assert kpi(k, "departures [parts/h]")[0] == pytest.approx(60 * 7.25 / 24, rel=0.01)
    for wrong, message in [({"breaks": ["15:00-15:30"]}, r"break '15:00-15:30' falls in no shift \(06:00-14:00\)"),
                           ({"breaks": ["12:00"]}, r"break '12:00' is not 'HH:MM-HH:MM'"),
                           ({"breaks": ["05:00-14:30"]}, r"take the whole shift 06:00-14:00")]:
        with pytest.raises(ValidationError, match=message):
            Calendar.model_validate({"shifts": ["06:00-14:00"], **wrong})


_HHMM = hs.builds(lambda a, b: f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}",
                  hs.integers(0, 95).map(lambda q: 15 * q), hs.integers(1, 96).map(lambda q: 15 * q))


@settings(max_examples=300, deadline=None)
@given(shifts=hs.lists(_HHMM, min_size=1, max_size=3), breaks=hs.lists(_HHMM, max_size=3))
def test_breaks_fuzzed_leave_every_shift_minute_outside_them(shifts: list[str], breaks: list[str]) -> None:
    """Any shifts and breaks the calendar takes: its windows are the shifts' minutes that no break (at its clock
    time, on the day or in a night shift's morning) covers, in order and apart; what it refuses, it refuses with a
    message naming the rule."""
    from pydantic import ValidationError

    from twin.scenario import Calendar

    try:
        cal = Calendar.model_validate({"shifts": shifts, "breaks": breaks})
    except ValidationError as e:
        assert re.search(r"is not 'HH:MM-HH:MM'|starts when it ends|falls in no shift|take the whole shift", str(e))
        return
    minute = lambda w: {m for a, b in w for m in range(int(a // 60), int(b // 60))}  # noqa: E731
    off = {m for w in breaks for m in minute([Calendar(shifts=[w]).spans()[0]]) for m in (m % 1440, m % 1440 + 1440)}
    windows = cal.windows()
    assert minute(windows) == minute(cal.spans()) - off
    assert all(a < b for a, b in windows) and all(b1 < a2 for (_, b1), (a2, _) in itertools.pairwise(windows))


def test_a_service_due_on_shift_waits_for_the_next_planned_stop() -> None:
    """Plants service machines in their planned stops, not in production: every preventive service fell due and was
    done on shift, costing planned time. With `when: off-shift` a service due on shift waits, the machine working
    on, for the next stop as long as the job (a shift's end, not a 30-minute break); a machine starved at the
    shift's end takes it too; a job longer than every stop takes the next one; a line without a calendar is
    refused."""
    from pydantic import ValidationError

    def line(when: str, duration: float = 3600, shifts: tuple[str, ...] = ("06:00-22:00",)) -> Line:
        press = {"fault_modes": [{"name": "die", "kind": "sudden", "ttf": exp(200_000), "repair": const(600)}],
                 "maintenance": {"policy": "preventive", "every": "7 h", "duration": const(duration), "when": when}}
        return run(scenario([{"name": "press", "cycle_time": const(50)},
                             {"name": "trim", "cycle_time": const(30), "buffer": 20}],  # starved at the shift's end
                            machine_types={"m": press}, start="2026-01-05T00:00:00", duration="4 d",
                            calendar={"shifts": list(shifts), "breaks": ["12:00-12:30"]}))

    def starts(ln: Line) -> pd.DataFrame:
        ev = events_frame(ln)
        return ev[ev.event == "maintenance_start"]

    at_once, held = starts(line("at-once")), starts(line("off-shift"))
    hour = lambda t: (t % 86400) / 3600  # noqa: E731
    assert ((hour(at_once.t) > 6) & (hour(at_once.t) < 22)).any()  # on shift
    assert len(held) >= 4 and set(held.machine) == {"press", "trim"}
    assert ((hour(held.t) >= 22) | (hour(held.t) < 6)).all()  # each in a night's stop, none in the break
    assert (hour(held.t) == 22).any()  # at the shift's end, for both machines (the crew is not limited here)
    st = states_frame(line("off-shift"))
    done = st[st.state == "maintenance"].end
    assert ((hour(done) >= 22) | (hour(done) <= 6)).all()  # done before the next shift
    k = replicate(line("off-shift").scenario, 1)
    assert kpi(k, "oee availability", "press")[0] == pytest.approx(1.0, abs=1e-3)  # no planned time lost
    # the press fails at about 21:30 for 3 hours: the trim station, starved since, takes its service at 22:00
    press = {"fault_modes": [{"name": "die", "ttf": {"dist": "weibull", "shape": 50, "scale": 52200},
                              "repair": const(3 * 3600)}], "start_age": "new"}
    trim = {"maintenance": {"policy": "preventive", "every": "7 h", "duration": const(3600), "when": "off-shift"}}
    starved = starts(run(scenario([{"name": "press", "cycle_time": const(50), "machine_type": "p"},
                                   {"name": "trim", "cycle_time": const(30), "buffer": 20, "machine_type": "t"}],
                                  machine_types={"p": press, "t": trim}, start="2026-01-05T00:00:00", duration="1 d",
                                  calendar={"shifts": ["06:00-22:00"], "breaks": ["12:00-12:30"]})))
    assert list(starved.t) == [22 * 3600.0]
    long = starts(line("off-shift", duration=10 * 3600))  # longer than the 8-hour nights: the next night's stop
    assert len(long) and ((hour(long.t) >= 22) | (hour(long.t) < 6)).all()
    with pytest.raises(ValidationError, match="off-shift waits for the line's planned stops, but the line has no"):
        scenario([{"name": "press", "cycle_time": const(50)}],
                 machine_types={"m": {"maintenance": {"policy": "preventive", "every": "7 h", "when": "off-shift"}}})


@settings(max_examples=25, deadline=None)
@given(cycles=hs.lists(hs.integers(20, 120), min_size=1, max_size=3), buffer=hs.integers(0, 8),
       every=hs.integers(2, 30), job=hs.integers(5, 600), seed=hs.integers(0, 2**16),
       shifts=hs.sampled_from([["06:00-14:00"], ["06:00-22:00"], ["22:00-06:00"], ["06:00-14:00", "14:00-22:00"]]),
       breaks=hs.sampled_from([[], ["12:00-12:30"], ["02:00-02:20", "10:00-10:15"]]))
def test_fuzzed_lines_service_only_in_planned_stops(cycles: list[int], buffer: int, every: int, job: int,
                                                    seed: int, shifts: list[str], breaks: list[str]) -> None:
    """Any small line whose machines service `when: off-shift`: every service starts while the line is off shift
    (the job may run on into the next shift), and the parts are conserved."""
    from twin.model import ShiftCalendar
    from twin.scenario import Calendar

    breaks = [b for b in breaks if any(_covers(w, b) for w in shifts)]  # a break must fall in a shift
    cal = Calendar.model_validate({"shifts": shifts, "breaks": breaks})
    mt = {"fault_modes": [{"name": "wear", "ttf": {"dist": "weibull", "shape": 2, "scale": "40 h"},
                           "repair": exp(900)}, {"name": "jam", "kind": "sudden", "ttf": exp(20_000),
                                                 "repair": exp(120)}],
          "maintenance": {"policy": "preventive", "every": f"{every} h", "duration": exp(job), "when": "off-shift"},
          "repair_crew": "crew"}
    sc = scenario([{"name": f"s{i}", "cycle_time": exp(c), **({"buffer": buffer} if i else {})}
                   for i, c in enumerate(cycles)], machine_types={"m": mt}, seed=seed, duration="3 d",
                  start="2026-01-05T00:00:00", calendar=cal.model_dump(), repair_crews=[{"name": "crew", "size": 1}])
    line = run(sc)
    ev = events_frame(line)
    week = ShiftCalendar(cal, sc.start, sc.duration)
    orders = ev[ev.event == "maintenance_order"]
    assert all(week.next_start(t) is not None for t in orders.t), orders  # ordered (taken) off shift only
    exit_ = np.frombuffer(line.exit)
    scrapped = np.frombuffer(line.scrapped_at, dtype=np.int16) >= 0
    assert len(exit_) == (~np.isnan(exit_) & ~scrapped).sum() + scrapped.sum() + line.wip


def test_a_held_service_waits_no_longer_than_max_wait() -> None:
    """A line on three shifts Monday to Friday stops only at the weekend: its services, due every 10 working hours,
    all waited for it (a week's wear past due). With `max_wait: 4 h` one that finds no planned stop in 4 hours is done
    on shift, its reason saying so; the weekend still takes the one due then."""
    from pydantic import ValidationError

    def services(**more: object) -> pd.DataFrame:
        mt = {"maintenance": {"policy": "preventive", "every": "10 h", "duration": const(1800), "when": "off-shift",
                              **more}}
        sc = scenario([{"name": "press", "cycle_time": const(60)}], machine_types={"m": mt}, duration="14 d",
                      start="2026-01-05T00:00:00", calendar={"shifts": ["06:00-14:00", "14:00-22:00", "22:00-06:00"],
                                                             "days": ["mon", "tue", "wed", "thu", "fri"]})
        ev = events_frame(run(sc))
        return ev[ev.event == "maintenance_start"]

    weekend = lambda t: (t // 86400) % 7 >= 5  # noqa: E731  # Saturday 06:00 on: Monday 00:00 + 5 days, and Sunday
    held = services()
    assert len(held) == 2 and weekend(held.t).all()  # one a weekend, all waiting for it
    capped = services(max_wait="4 h")
    on_shift = capped[~weekend(capped.t)]
    assert len(on_shift) >= 10 and on_shift.detail.str.endswith("4 h without a planned stop").all()
    gaps = np.diff(on_shift.t)
    assert gaps[gaps < 2 * 86400].max() <= 10 * 3600 + 4 * 3600 + 1800 + 60  # due, 4 h more, the job, a part
    with pytest.raises(ValidationError, match="max_wait is how long a service waits for a planned stop"):
        scenario([{"name": "press", "cycle_time": const(60)}],
                 machine_types={"m": {"maintenance": {"policy": "preventive", "every": "7 h", "max_wait": "4 h"}}})


def _covers(shift: str, brk: str) -> bool:
    """Whether a daily break's clock time falls in a shift (both 'HH:MM-HH:MM')."""
    from twin.scenario import Calendar

    (a, b), (c, d) = Calendar(shifts=[shift]).spans()[0], Calendar(shifts=[brk]).spans()[0]
    return any(a < d2 and c2 < b for c2, d2 in ((c, d), (c + 86400, d + 86400)))


def test_parallel_machines_of_their_own_speeds(capsys: pytest.CaptureFixture[str]) -> None:
    """An old, slower filler beside a new one could not be written: a station's parallel machines were alike. With
    `machine_cycle_times` each works to its own cycle: 2 s and 3 s make 1,800 + 1,200 parts an hour; each machine's
    OEE performance is measured at its own design cycle (both 100 %, not the old one's 67 %), and the station's
    design cycle is their harmonic mean, 2.4 s (two machines: 3,000 parts an hour by design)."""
    from pydantic import ValidationError

    sc = scenario([{"name": "filler", "machines": ["filler-a", "filler-b"], "cycle_time": const(2),
                    "machine_cycle_times": {"filler-b": const(3)}},
                   {"name": "capper", "cycle_time": const(1), "buffer": 50}], duration="8 h", warmup="30 min")
    k = replicate(sc, 1)
    assert kpi(k, "throughput [parts/h]")[0] == pytest.approx(3000, rel=1e-3)
    assert kpi(k, "parts", "filler-a")[0] / 7.5 == pytest.approx(1800, rel=1e-3)
    assert kpi(k, "parts", "filler-b")[0] / 7.5 == pytest.approx(1200, rel=1e-3)
    assert kpi(k, "oee performance", "filler")[0] == pytest.approx(1.0, abs=1e-3)
    assert kpi(k, "ideal cycle [s]", "filler")[0] == pytest.approx(2.4)
    assert sc.constraint() == 0 and sc.line_cycle(0, sc.stations[0].ideal_cycle()[0]) == pytest.approx(1.2)
    random = scenario([{"name": "filler", "machines": ["filler-a", "filler-b"], "cycle_time": const(2),
                        "machine_cycle_times": {"filler-b": exp(3)}}])  # no lower bound: the note names the machine
    assert random.notes() == ["station filler: OEE ideal cycle 2.4 s is the harmonic mean of its machines' design "
                              "cycles, filler-b's the mean of a cycle time with no lower bound: performance can "
                              "exceed 100 %"]
    for change, message in [({"machine_cycle_times": {"filler-c": const(3)}},
                             "names 'filler-c', which is not one of the station's machines"),
                            ({"ideal_cycle_time": 2}, "with ideal_cycle_time as well")]:
        with pytest.raises(ValidationError, match=message):
            scenario([{"name": "filler", "machines": ["filler-a", "filler-b"], "cycle_time": const(2),
                       "machine_cycle_times": {"filler-b": const(3)}, **change}])
    import typer

    from twin.app.alternatives import alternatives

    with pytest.raises(typer.Exit):  # a what-if's or comparison's station cycle: for which machine?
        alternatives(sc, [], [], [], [], [], ["filler=1.5 s"])
    assert "filler's machines have cycle times of their own (filler-b)" in " ".join(capsys.readouterr().err.split())


def test_changeover_every_n_parts() -> None:
    sc = scenario([{"name": "m1", "cycle_time": const(10), "changeover": {"every_parts": 10, "duration": const(50)}}],
                  duration=1500)
    line = run(sc)
    st = states_frame(line)
    setups = st[st.state == "setup"]
    assert len(setups) == 10 and (setups.end - setups.start == 50).all()
    assert SETUP in np.frombuffer(line.machines[0].log.state, dtype=np.int8)


def test_scrap_grows_with_wear() -> None:
    mt = wear_type()
    mt["fault_modes"][0]["scrap_increase"] = 0.5  # type: ignore[index]
    line = run(scenario([{"name": "m1", "cycle_time": const(1)}], machine_types={"m": mt}, duration=100_000))
    m = line.machines[0]
    scr = np.frombuffer(m.log.scrapped).copy()
    _, _, wear = TruthReader(m).at(scr)
    assert len(scr) > 100
    assert np.median(wear[0]) > 0.5  # scrap happens mostly late in a life


def test_blocked_and_starved_states_are_recorded() -> None:
    sc = scenario([{"name": "fast", "cycle_time": const(1)}, {"name": "slow", "cycle_time": const(2), "buffer": 2},
                   {"name": "fast2", "cycle_time": const(1), "buffer": 2}], duration=1000)
    k = replicate(sc, 1)
    assert kpi(k, "blocked share", "fast")[0] > 0.45
    assert kpi(k, "starved share", "fast2")[0] > 0.45
    assert kpi(k, "working share", "slow")[0] > 0.99
    assert kpi(k, "bottleneck station")[0] == 1.0


def test_down_and_maintenance_states_cover_the_events() -> None:
    mt = wear_type(policy="preventive", every=300, duration=const(30))
    line = run(scenario([{"name": "m1", "cycle_time": exp(5)}], machine_types={"m": mt}, duration=50_000))
    st = states_frame(line)
    ev = events_frame(line)
    assert st[st.state == "maintenance"].shape[0] == len(ev[ev.event == "maintenance_start"])
    d = np.frombuffer(line.machines[0].log.state, dtype=np.int8)
    assert MAINTENANCE in d


@pytest.mark.slow
@pytest.mark.parametrize("blocking", ["after-service", "before-service"])
def test_calendar_failures_strike_blocked_machines_too(blocking: str) -> None:
    """A fast machine feeding a slow one is blocked most of the time; time-dependent failures still come."""
    sc = scenario([{"name": "fast", "cycle_time": const(1), "machine_type": "u"},
                   {"name": "slow", "cycle_time": const(3), "buffer": 1}],
                  machine_types={"m": {}, "u": unreliable(100, 25, "calendar")}, duration=100_000, blocking=blocking)
    k = replicate(sc, 3)
    assert kpi(k, "blocked share", "fast").mean() > 0.4
    assert kpi(k, "availability", "fast").mean() == pytest.approx(0.8, abs=0.02)


def _opportunity_line(share: float | None):  # type: ignore[no-untyped-def]
    maint = {"policy": "preventive", "every": "4 h", "duration": const(1200)}
    if share is not None:
        maint["opportunistic"] = share
    return scenario([{"name": "a", "cycle_time": const(30)},
                     {"name": "b", "cycle_time": const(30), "buffer": 2, "machine_type": "u"},
                     {"name": "c", "cycle_time": const(30), "buffer": 2}],
                    machine_types={"m": {"maintenance": maint},
                                   "u": {**unreliable(2 * 3600, 1800), "maintenance": maint}},
                    duration="20 d", seed=5)


@pytest.mark.slow  # 9 runs of 20 days
def test_opportunistic_maintenance_uses_the_stops_of_the_line() -> None:
    """a and c are serviced every 4 h of work; with opportunistic: 0.6 they are serviced while b is down once they
    are 60 % of the way there, so their services stop the line less and the line makes more (here about 1 %: the
    services come more often, and a 20 min service outlasts many of b's repairs)."""
    line = run(_opportunity_line(0.6))
    ev = events_frame(line)
    down = [(f.t, r.t) for f, r in zip(ev[(ev.event == "failure") & (ev.machine == "b")].itertuples(),
                                     ev[(ev.event == "repair_end") & (ev.machine == "b")].itertuples())]
    opp = ev[(ev.event == "maintenance_order") & (ev.detail == "opportunistic")]
    assert len(opp) >= 20 and set(opp.machine) == {"a", "c"}
    assert all(any(s <= t <= e for s, e in down) for t in opp.t)  # each one while b is down
    with_opp = kpi(replicate(_opportunity_line(0.6), 4), "throughput [parts/h]").mean()
    without = kpi(replicate(_opportunity_line(None), 4), "throughput [parts/h]").mean()
    assert with_opp > without


@pytest.mark.parametrize("relay_first", [True, False])
def test_first_of_resumes_in_the_same_step_as_a_condition(relay_first: bool) -> None:
    """A machine waiting on `first_of(ev, other)` resumes exactly where one waiting on `ev | other` would: two
    waiters set up in either order resume in that order when ev fires, at the same time; the event that fires
    second does nothing."""
    import simpy

    from twin.model import first_of

    env = simpy.Environment()
    ev, order = env.event(), []

    def waiter(name: str) -> object:
        other = env.timeout(5.0)
        yield first_of(env, ev, other) if name == "relay" else ev | other
        order.append((name, env.now))

    names = ["relay", "condition"] if relay_first else ["condition", "relay"]
    for name in names:
        env.process(waiter(name))
    env.run(until=1.0)
    ev.succeed()
    env.run(until=10.0)  # the timeouts fire at 5 s, after both have resumed: nothing more happens
    assert order == [(name, 1.0) for name in names]


@pytest.mark.parametrize("name", ["body_shop_merge", "bottling", "cnc_cell", "packaging"])
def test_per_event_state_holds_python_floats(name: str) -> None:
    """The clocks and lives that every cycle's checks read are Python floats: a NumPy scalar there (a random start
    age once was one) makes each cycle's arithmetic several times slower without changing any result."""
    sc = load_scenario(f"scenarios/{name}.yaml").model_copy(update={"duration": 1800.0})
    line = run(sc)
    for m in line.machines:
        values = [m.clock, m.t_last, m.fail_clock, m.work_time, *m.born, *m.life]
        assert all(type(v) in (float, int) for v in values), (m.name, [type(v).__name__ for v in values])
        policy_value = getattr(m.policy, "value", 0.0)
        assert type(policy_value) in (float, int), (m.name, type(policy_value).__name__)


def test_each_entry_station_of_a_graph_line_can_have_its_own_arrivals(tmp_path: Path) -> None:
    """An assembly fed by arrivals took the same time between arrivals at every entry station, so an assembly of one
    housing and two shafts starved for shafts with no way to say that shafts come twice as often."""
    import yaml

    from twin.scenario import ScenarioError

    data = yaml.safe_load(Path("tests/scenarios/pumps.yaml").read_text())
    data["source"] = {"kind": "arrivals", "interarrival": {"dist": "exponential", "mean": "3 min"},
                      "by_station": {"shaft": {"dist": "exponential", "mean": "90 s"}}}
    for st in data["stations"][:2]:
        st["buffer"] = 50
    data["duration"], data["warmup"] = "20 d", 0
    (tmp_path / "fed.yaml").write_text(yaml.safe_dump(data))
    line = run(load_scenario(tmp_path / "fed.yaml"))
    made = {name: line.stations[i][0].log.finished for i, name in ((0, "housing"), (1, "shaft"))}
    assert len(made["shaft"]) / len(made["housing"]) == pytest.approx(2.0, rel=0.05)  # as the assembly needs
    data["source"]["by_station"] = {"assy": {"dist": "exponential", "mean": "90 s"}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError, match=r"source.by_station.assy: 'assy' is not a station the source feeds; "
                                            r"those are: housing, shaft"):
        load_scenario(tmp_path / "bad.yaml")
