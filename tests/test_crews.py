"""Repair crews on shifts: off them a repair waits for the next shift, or for a technician on call; a planned service
waits for the crew, the machine working on."""

from __future__ import annotations

import datetime as dt
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.helpers import const, exp, scenario
from twin.kpi import replication_kpis
from twin.model import Line
from twin.scenario import ScenarioError, load_scenario

DAY = 86400.0
SHIFT = {"shifts": ["06:00-14:00"]}  # the technicians' day shift, every day; the line runs around the clock


def _line(crew: dict[str, object], **machine_type: object) -> Line:
    """Two machines failing every 5 h of work on average (repairs of 20 min) and one crew of one technician, over
    10 days from a Monday 06:00."""
    mt = {"fault_modes": [{"name": "jam", "kind": "sudden", "ttf": exp(5 * 3600), "repair": const(1200)}],
          "repair_crew": "maint", **machine_type}
    sc = scenario([{"name": "s", "cycle_time": const(60), "machines": 2}], machine_types={"m": mt},
                  repair_crews=[{"name": "maint", "size": 1, **crew}], start="2026-01-05T06:00:00", duration="10 d",
                  seed=3)
    line = Line(sc, 0)
    line.run(sc.duration)
    return line


def _hour(t: float) -> float:
    return (t % DAY) / 3600 + 6  # hours of the clock (from 06:00 at t = 0), 6 to 30


def _waits(line: Line) -> list[tuple[float, float]]:
    """Each failure's time and its wait until its repair started."""
    ev = [(e.t, e.kind, e.machine) for e in line.events]
    return [(t, next(s for s, k, m in ev if k == "repair_start" and m == machine and s >= t) - t)
            for t, kind, machine in ev if kind == "failure" and any(k == "repair_start" and m == machine and s >= t
                                                                     for s, k, m in ev)]


def test_repairs_off_the_crews_shift_wait_for_the_next_one() -> None:
    """A failure at night waits for the technicians' 06:00: every repair starts on their shift, those of the night
    at 06:00 sharp (or after the repair before them), and the machines are down meanwhile."""
    line = _line({"calendar": SHIFT})
    starts = [e.t for e in line.events if e.kind == "repair_start"]
    assert len(starts) > 40
    assert all(6 <= _hour(t) < 14 + 2 * 1200 / 3600 for t in starts)  # on shift (or a job begun just before 14:00)
    night = [(t, w) for t, w in _waits(line) if not 6 <= _hour(t) < 14]
    assert len(night) > 10
    mornings = {float(np.ceil(t / DAY) * DAY) for t, _ in night}
    assert mornings <= {round(t, 6) for t in starts}  # 06:00 sharp, each morning after a failure in the night
    assert all(t + w >= np.ceil(t / DAY) * DAY for t, w in night)  # none repaired before 06:00
    assert np.mean([w for _, w in night]) > 4 * 3600


def test_the_wait_before_each_repair_is_a_machine_kpi_beside_mttr() -> None:
    """Of a machine's MTTR (failure to the end of its repair), the wait before the repair began is its own KPI:
    repairs of 20 min behind a crew off its shift for the night show an MTTR of hours, nearly all of it waiting."""
    line = _line({"calendar": SHIFT})
    k = replication_kpis(line).set_index(["entity", "kpi"])["value"]
    ev = [(e.t, e.kind, e.machine) for e in line.events]
    for machine in ("s-1", "s-2"):
        mine = [(t, w) for t, w in _waits(line) if any(m == machine and s == t and k_ == "failure"
                                                        for s, k_, m in ev)]
        assert k[machine, "wait before repair [min]"] == pytest.approx(np.mean([w for _, w in mine]) / 60, rel=0.02)
        assert k[machine, "mttr [min]"] == pytest.approx(k[machine, "wait before repair [min]"] + 20, rel=0.02)
        assert k[machine, "wait before repair [min]"] > 60


def test_a_crews_utilisation_is_its_time_on_jobs_over_its_time_on_shift() -> None:
    """The one technician's utilisation: the repairs' time (20 min each) over the crew's time on shift (8 h a day),
    not over the whole day."""
    line = _line({"calendar": SHIFT})
    spans, began = [], {}
    for e in line.events:
        if e.kind == "repair_start":
            began[e.machine] = e.t
        elif e.kind == "repair_end":
            spans.append(e.t - began.pop(e.machine))
    k = replication_kpis(line).set_index(["scope", "entity", "kpi"])["value"]
    assert k["crew", "maint", "utilisation"] == pytest.approx(sum(spans) / (10 * 8 * 3600), rel=0.01)
    assert 0.1 < k["crew", "maint", "utilisation"] < 1


def test_a_technician_on_call_comes_in_off_shift() -> None:
    """With on_call: 45 min, a failure at night is repaired 45 minutes after it (when the one technician is free),
    with the event crew_called; on shift at once."""
    line = _line({"calendar": SHIFT, "on_call": "45 min"})
    ev = [(e.t, e.kind, e.machine) for e in line.events]
    called = [t for t, k, _ in ev if k == "crew_called"]
    assert len(called) > 20 and all(not 6 <= _hour(t) < 14 for t in called)
    for t, kind, machine in ev:
        if kind != "failure":
            continue
        start = next(s for s, k, m in ev if k == "repair_start" and m == machine and s >= t)
        if start - t < 1 and not 6 <= _hour(t) < 14:
            pytest.fail(f"repaired at once at {_hour(t):.1f} h, off the crew's shift")
        if t in called:
            assert start == pytest.approx(t + 2700)
    assert np.median([w for t, w in _waits(line) if not 6 <= _hour(t) < 14]) == pytest.approx(2700)


def test_a_service_due_off_the_crews_shift_waits_for_it_working_on() -> None:
    """A service every 10 h of work is done by the crew on its shift only: one due at night is ordered at 06:00,
    the machine working until then."""
    line = _line({"calendar": SHIFT}, maintenance={"policy": "preventive", "every": "10 h", "duration": const(1800)})
    orders = [e.t for e in line.events if e.kind == "maintenance_order"]
    assert len(orders) > 10 and all(6 <= _hour(t) < 14 for t in orders)
    starts = [e.t for e in line.events if e.kind == "maintenance_start"]
    assert all(6 <= _hour(t) < 15 for t in starts)
    k = replication_kpis(line).set_index(["entity", "kpi"])["value"]
    assert k["s-1", "maintenance share"] < 0.05


@pytest.mark.parametrize(("crew", "message"), [
    ({"on_call": "30 min"}, r"repair_crews\[0\]: on_call is the time a technician takes to come in off the crew's "
                            r"shifts, but the crew has no calendar"),
    ({"calendar": {"shifts": ["25:00-26:00"]}}, r"repair_crews\[0\]\.calendar\.shifts"),
])
def test_crew_mistakes_are_named(crew: dict[str, object], message: str, tmp_path: Path) -> None:
    data = {"line": {"site": "s", "area": "a", "name": "n"}, "seed": 1, "duration": "1 d",
            "repair_crews": [{"name": "maint", "size": 1, **crew}],
            "machine_types": {"m": {"repair_crew": "maint"}},
            "stations": [{"name": "press", "machine_type": "m", "cycle_time": 30}]}
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ScenarioError, match=message):
        load_scenario(f)


def test_a_technician_on_call_as_an_alternative(tmp_path: Path) -> None:
    """What would a technician on call at night gain? `--on-call maint=45min` beside the line as it is: the presses are
    down far less and make more, and its call-outs (costs.call_out each) are in the maintenance cost. A crew without
    shifts, an unknown crew or the line's own on-call time are refused with why."""
    from tests.conftest import assert_mistakes
    from twin.app.alternatives import alternatives
    from twin.app.compare import compare_designs

    crew = {"name": "maint", "size": 1, "calendar": {"shifts": ["06:00-14:00"], "days": ["mon", "tue", "wed", "thu",
                                                                                        "fri"]}}
    mt = {"repair_crew": "maint", "fault_modes": [{"name": "jam", "kind": "sudden", "ttf": exp(36_000),
                                                   "repair": const(1800)}]}
    sc = scenario([{"name": "press", "cycle_time": const(30), "machines": 2}], machine_types={"m": mt},
                  repair_crews=[crew], duration="20 d", replications=3, costs={"call_out": 200.0})
    options = alternatives(sc, [], [], [], on_calls=["maint=45 min"])
    assert [label for label, _ in options] == ["as is", "maint: on call 45 min"]
    cmp = compare_designs(options, jobs=1)
    s = cmp.summary().set_index(["policy", "kpi"])["mean"]
    assert s["maint: on call 45 min", "downtime [h]"] < 0.5 * s["as is", "downtime [h]"]
    assert s["maint: on call 45 min", "throughput [parts/h]"] > 1.3 * s["as is", "throughput [parts/h]"]
    assert s["as is", "maintenance cost"] == 0 and s["maint: on call 45 min", "maintenance cost"] > 200 * 10
    f = tmp_path / "crew.yaml"
    f.write_text(yaml.safe_dump({**sc.model_dump(mode="json", by_alias=True, exclude={"repair_crews"}),
                                 "repair_crews": [crew, {"name": "always", "size": 1}]}, sort_keys=False))
    assert_mistakes(["compare", str(f), "--replications", "2"], [
        (["--on-call", "nobody=30 min"], "--on-call 'nobody=30 min': write CREW=TIME (e.g. 45 min) with a crew of the "
                                         "scenario that works shifts: maint"),
        (["--on-call", "always=30 min"], "crew always is there around the clock (no calendar)"),
        (["--on-call", "maint=30"], "--on-call 30: give its unit, e.g. '30 h', '30 min' or '30 s'")])


def test_validate_says_when_the_crew_is_there(tmp_path: Path) -> None:
    """`twin validate` names a crew on shifts with its hours a week and its on-call time: repairs off them wait."""
    import subprocess

    from tests.conftest import ROOT, twin_cmd

    data = {"line": {"site": "s", "area": "a", "name": "n"}, "seed": 1, "duration": "1 d",
            "repair_crews": [{"name": "maint", "size": 1, "on_call": "40 min",
                              "calendar": {"shifts": ["06:00-14:00"], "days": ["mon", "tue", "wed", "thu", "fri"]}}],
            "machine_types": {"m": {"repair_crew": "maint"}},
            "stations": [{"name": "press", "machine_type": "m", "cycle_time": 30}]}
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    r = subprocess.run(twin_cmd("validate", f), capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0 and "crew maint 40 h a week (on call in 40 min)" in " ".join(r.stdout.split()), r


def test_each_fault_mode_can_have_its_own_crew() -> None:
    """An electrician repairs the drives, a mechanic the jams (`repair_crew` of a fault mode; the type's for the
    others): each crew works one repair at a time, the two side by side, so a jam no longer waits behind a drive."""
    mt = {"repair_crew": "mech", "fault_modes": [
        {"name": "drive", "kind": "sudden", "ttf": exp(5 * 3600), "repair": const(3 * 3600), "repair_crew": "elec"},
        {"name": "jam", "kind": "sudden", "ttf": exp(3600), "repair": const(600)}]}
    sc = scenario([{"name": "s", "cycle_time": const(60), "machines": 2}], machine_types={"m": mt},
                  repair_crews=[{"name": "elec", "size": 1}, {"name": "mech", "size": 1}], duration="10 d")
    line = Line(sc, 0)
    line.run(sc.duration)
    jobs: dict[str, list[tuple[float, float]]] = {"drive": [], "jam": []}
    began: dict[str, tuple[float, str]] = {}
    for e in line.events:
        if e.kind == "repair_start":
            began[e.machine] = (e.t, e.fault_mode)
        elif e.kind == "repair_end":
            t, mode = began.pop(e.machine)
            jobs[mode].append((t, e.t))
    assert len(jobs["drive"]) > 20 and len(jobs["jam"]) > 100
    for mode in jobs:  # one technician each: a crew's repairs never overlap
        spans = sorted(jobs[mode])
        assert all(b[0] >= a[1] - 1e-6 for a, b in pairwise(spans))
    both = sum(1 for a, b in jobs["drive"] for c, d in jobs["jam"] if c < b and a < d)
    assert both > 10  # a jam repaired while a drive is: the crews work side by side


def test_a_fault_modes_unknown_crew_is_named(tmp_path: Path) -> None:
    data = {"line": {"site": "s", "area": "a", "name": "n"}, "seed": 1, "duration": "1 d",
            "repair_crews": [{"name": "maint", "size": 1}],
            "machine_types": {"m": {"fault_modes": [{"name": "jam", "kind": "sudden", "ttf": "5 h", "repair": "5 min",
                                                     "repair_crew": "electric"}]}},
            "stations": [{"name": "press", "machine_type": "m", "cycle_time": 30}]}
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ScenarioError, match=r"machine_types\.m\.fault_modes\[0\]\.repair_crew: names repair crew "
                                            r"'electric', but repair_crews has \['maint'\]"):
        load_scenario(f)


def test_a_what_if_read_at_night_waits_for_the_crews_shift_and_takes_whole_repairs() -> None:
    """Two machines down as the state is read at 22:00, their one technician on the day shift: no repair is under way
    at night, so both wait for 06:00 and take whole repairs of 20 minutes, the one down longer first (up at 06:20 and
    06:40). The crew's rule for a state read on shift (the longest stopped under way) resumed one mid-repair at
    night."""
    from twin.app.runner import simulate
    from twin.scenario import LineNow, MachineNow, Scenario, continue_from

    doc = {"line": {"site": "s", "area": "a", "name": "cells"}, "seed": 5, "duration": "12 h",
           "repair_crews": [{"name": "fix", "size": 1, "calendar": SHIFT}],
           "machine_types": {"m": {"repair_crew": "fix", "fault_modes": [{
               "name": "jam", "kind": "sudden", "ttf": {"dist": "exponential", "mean": "1000 h"},
               "repair": "20 min"}]}},
           "stations": [{"name": name, "machine_type": "m", "cycle_time": "60 s", "buffer": 5} for name in "ab"]}
    doc["stations"][0].pop("buffer")
    out, _ = continue_from(Scenario.model_validate(doc), LineNow(taken="2026-01-05T22:00:00", machines={
        "a": MachineNow(state="down", since=600.0, mode="jam"),
        "b": MachineNow(state="down", since=3600.0, mode="jam")}))
    line = simulate(out, 0, sensors=False).line
    ends = {e.machine: e.t for e in line.events if e.kind == "repair_end"}
    assert ends == {"b": 8 * 3600 + 1200.0, "a": 8 * 3600 + 2400.0}, ends


@settings(max_examples=25, deadline=None)
# Mondays 00:00-01:00 from a Monday 06:00 for 4 days: no shift before the end, and the crew was there throughout
@example(start=0, length=1, days={"mon"}, size=1, on_call=None, machines=1, seed=0)
@given(start=st.integers(0, 23), length=st.integers(1, 23), days=st.sets(st.sampled_from(
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1), size=st.integers(1, 3),
    on_call=st.sampled_from([None, 600.0, 5400.0]), machines=st.integers(1, 4), seed=st.integers(0, 50))
def test_fuzzed_crew_shifts_keep_repairs_on_shift_or_on_call(start: int, length: int, days: set[str], size: int,
                                                             on_call: float | None, machines: int, seed: int) -> None:
    """Any crew calendar, size and on-call time: no more repairs at once than technicians; without on-call every
    repair starts on the crew's shift (or right after one it follows in the queue); with it, a night repair starts
    at least the call-out after its failure; the utilisation is a share of time on shift."""
    from twin.model import ShiftCalendar

    shift = f"{start:02d}:00-{(start + length) % 24:02d}:00"
    cal = {"shifts": [shift], "days": sorted(days)}
    mt = {"repair_crew": "maint", "fault_modes": [{"name": "jam", "kind": "sudden", "ttf": exp(4 * 3600),
                                                   "repair": exp(1200)}]}
    sc = scenario([{"name": "s", "cycle_time": const(60), "machines": machines}], machine_types={"m": mt},
                  repair_crews=[{"name": "maint", "size": size, "calendar": cal,
                                 **({"on_call": on_call} if on_call else {})}],
                  start="2026-01-05T06:00:00", duration="4 d", seed=seed)
    line = Line(sc, 0)
    line.run(sc.duration)
    hours = ShiftCalendar(sc.repair_crews[0].calendar, sc.start, sc.duration)
    # the validator's note of a crew with no shift in the run says what the model's calendar holds
    assert sc.repair_crews[0].calendar.works_within(sc.start, sc.duration) == any(
        a < sc.duration for a in hours.starts)
    assert any("has no shift in the run" in n for n in sc.notes()) == (
        on_call is None and not any(a < sc.duration for a in hours.starts))
    busy, failed, ended = 0, {}, []
    for e in sorted(line.events, key=lambda e: (e.t, e.kind != "repair_end")):
        if e.kind == "failure":
            failed[e.machine] = e.t
        elif e.kind == "repair_start":
            busy += 1
            assert busy <= size
            off = hours.next_start(e.t) is not None
            if on_call is None and off:  # off shift: only a job handed on at a shift's end... none start
                assert any(abs(e.t - t) < 1e-6 for t in ended), (e.t, shift)
            if on_call is not None and off:
                assert e.t - failed[e.machine] >= on_call - 1e-6 or any(abs(e.t - t) < 1e-6 for t in ended)
        elif e.kind == "repair_end":
            busy -= 1
            ended.append(e.t)
    k = replication_kpis(line).set_index(["scope", "entity", "kpi"])["value"]
    assert k["crew", "maint", "utilisation"] >= 0


def test_a_run_that_starts_in_the_night_shift_of_the_day_before_is_on_shift() -> None:
    """A line on night shifts (22:00-06:00) started at 02:00 on a Tuesday works until 06:00: Monday's night shift
    reaches into it. The calendar began with the start's own day and had the line off shift until 22:00 (found by
    the crew fuzz test: a technicians' Sunday night shift into Monday was missed)."""
    from twin.model import ShiftCalendar
    from twin.scenario import Calendar

    cal = Calendar(shifts=["22:00-06:00"])
    hours = ShiftCalendar(cal, dt.datetime(2026, 1, 6, 2, 0), 2 * DAY)
    assert (hours.starts[:2], hours.ends[:2]) == ([0.0, 20 * 3600.0], [4 * 3600.0, 28 * 3600.0])
    sc = scenario([{"name": "m", "cycle_time": const(60)}], calendar={"shifts": ["22:00-06:00"]},
                  start="2026-01-06T02:00:00", duration="1 d")
    line = Line(sc, 0)
    line.run(sc.duration)
    assert len(line.machines[0].log.finished) == pytest.approx(8 * 60, abs=2)  # 02:00-06:00 and 22:00-02:00
