"""Rework (ISO 22400's rework quantity): parts an inspection sends to a rework station were not good the first time,
so they count against quality and first pass yield, at the station that sent them and for the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from dashboard import data
from tests.helpers import const, kpi, scenario
from twin.app.runner import parts_frame
from twin.kpi import replication_kpis
from twin.model import Line
from twin.scenario import Scenario, ScenarioError, load_scenario

SCRAP, REWORK = 0.05, 0.2


def _run(sc: Scenario) -> tuple[Line, pd.DataFrame]:
    line = Line(sc, 0)
    line.run(sc.duration)
    return line, replication_kpis(line)


def _inspected() -> Scenario:
    """Parts made every 10 s; an inspection scraps 5 % and sends 20 % of the rest to a rework bay, which returns
    them for inspection again: per pass, 5 % scrapped, 19 % reworked, 76 % good the first time."""
    return scenario([
        {"name": "make", "cycle_time": const(10)},
        {"name": "inspect", "cycle_time": const(5), "scrap": SCRAP,
         "next": [{"to": "exit", "p": 1 - REWORK}, {"to": "bay", "p": REWORK}]},
        {"name": "bay", "rework": True, "cycle_time": const(20), "next": "inspect"},
    ], duration=3 * 86400)


def test_rework_counts_against_quality_and_first_pass_yield() -> None:
    line, k = _run(_inspected())
    left = int(np.count_nonzero(~np.isnan(np.frombuffer(line.exit))))
    assert left > 20_000
    once = (1 - SCRAP) * (1 - REWORK)  # left good at the first inspection
    assert kpi(k, "rework ratio", "line")[0] == pytest.approx((1 - SCRAP) * REWORK, abs=0.01)
    assert kpi(k, "first pass yield", "line")[0] == pytest.approx(once, abs=0.01)
    assert kpi(k, "scrap rate", "line")[0] == pytest.approx(SCRAP / (1 - (1 - SCRAP) * REWORK), abs=0.01)
    # the line's OEE quality counts good parts the first time: the reworked ones were not (before: 0.94)
    assert kpi(k, "oee quality", "line")[0] == pytest.approx(once, abs=0.01)
    # the inspection's own: of every part it passed on or scrapped (a reworked part again on its return), the share
    # sent to rework, and its quality those neither scrapped nor reworked
    assert kpi(k, "rework ratio", "inspect")[0] == pytest.approx((1 - SCRAP) * REWORK, abs=0.01)
    assert kpi(k, "oee quality", "inspect")[0] == pytest.approx(once, abs=0.01)
    assert kpi(k, "oee quality", "make")[0] == 1.0 and kpi(k, "rework ratio", "make").empty
    parts = parts_frame(line)
    assert parts.reworked.sum() == len(line.reworked) and "into" not in parts.columns
    # each part sent to rework went through the bay (a part may go twice): as many as the bay worked, but for
    # those still there at the end
    sent = len(line.stations[1][0].log.reworked)
    assert 0 <= sent - line.stations[2][0].parts_done <= 5 and sent > parts.reworked.sum()


def test_a_line_without_rework_stations_has_no_rework_figures() -> None:
    sc = scenario([
        {"name": "make", "cycle_time": const(10)},
        {"name": "inspect", "cycle_time": const(5), "scrap": SCRAP,
         "next": [{"to": "exit", "p": 1 - REWORK}, {"to": "bay", "p": REWORK}]},
        {"name": "bay", "cycle_time": const(20), "next": "inspect"},  # not marked: a second operation, not a repair
    ], duration=86400)
    line, k = _run(sc)
    assert not {"rework ratio", "first pass yield"} & set(k.kpi) and not line.reworked
    assert "reworked" not in parts_frame(line).columns


def test_an_assembly_with_a_reworked_part_was_not_good_the_first_time() -> None:
    """A side frame reworked before it is married to a body: the body it goes into counts as reworked."""
    sc = scenario([
        {"name": "frames", "cycle_time": const(10)},
        {"name": "check", "cycle_time": const(5), "buffer": 5,
         "next": [{"to": "marry", "p": 0.7}, {"to": "bay", "p": 0.3}]},
        {"name": "bay", "rework": True, "cycle_time": const(5), "buffer": 5, "next": "check"},
        {"name": "bodies", "cycle_time": const(10), "next": "marry"},
        {"name": "marry", "cycle_time": const(4), "buffer": 5, "assemble": {"bodies": 1, "check": 1}},
    ], duration=2 * 86400)
    line, k = _run(sc)
    assert kpi(k, "rework ratio", "line")[0] == pytest.approx(0.3, abs=0.015)
    assert kpi(k, "first pass yield", "line")[0] == pytest.approx(0.7, abs=0.015)
    # the constraint (a feeder, 10 s) is passed by parts consumed into bodies: they share the body's fate
    assert kpi(k, "oee quality", "line")[0] == pytest.approx(0.7, abs=0.015)
    parts = parts_frame(line)
    consumed = parts["into"].notna()
    assert consumed.sum() > 10_000
    carriers = parts.loc[parts.loc[consumed, "into"].to_numpy(int)]
    assert (carriers.reworked.to_numpy() >= parts.loc[consumed, "reworked"].to_numpy()).all()


def test_the_dashboards_hours_count_assemblies_once_and_oee_first_time_good() -> None:
    """A body made of an underbody and two side frames is one part out of the line: the hourly counts showed three
    (the consumed parts' exits), and the hourly OEE 167 % on scenarios/body_shop_merge.yaml."""
    sc = load_scenario("scenarios/body_shop_merge.yaml", {"replications": 1, "duration": "8 h"})
    line, k = _run(sc)
    o = pd.Timestamp(sc.start)
    window = data.Window(o + pd.Timedelta(sc.warmup, unit="s"), o + pd.Timedelta(sc.duration, unit="s"), "UTC", o)
    hourly = data.per_period(sc, parts_frame(line), k, window)
    hours = (sc.duration - sc.warmup) / 3600
    name = sc.line.name
    assert hourly.good.sum() == pytest.approx(kpi(k, "throughput [parts/h]", name)[0] * hours, abs=0.5)
    overall = float((hourly.oee * hourly.planned_h).sum() / hourly.planned_h.sum())
    assert overall == pytest.approx(kpi(k, "oee", name)[0], abs=0.03)
    assert kpi(k, "rework ratio", name)[0] > 0.02


def _line(**bay: Any) -> dict[str, Any]:
    return {"line": {"site": "s", "area": "a", "name": "l"}, "seed": 1, "duration": "1 d", "machine_types": {"m": {}},
            "stations": [{"name": "make", "machine_type": "m", "cycle_time": "10 s"},
                         {"name": "inspect", "machine_type": "m", "cycle_time": "5 s",
                          "next": [{"to": "exit", "p": 0.9}, {"to": "bay", "p": 0.1}]},
                         {"name": "bay", "machine_type": "m", "cycle_time": "20 s", "next": "inspect", **bay}]}


@pytest.mark.parametrize(("change", "where", "says"), [
    (lambda d: [st.pop("next", None) for st in d["stations"]], "stations[2].rework", "in a serial line every part"),
    (lambda d: d["stations"][1].update(next="bay"), "stations[1].next", "sends every part to the rework station"),
    (lambda d: d["stations"][1].update(next="exit"), "stations[2].rework", "no station sends parts here"),
])
def test_rework_stations_that_make_no_sense_are_refused(tmp_path: Path, change: Any, where: str, says: str) -> None:
    d = _line(rework="yes")  # YAML's yes, as the model reads it
    change(d)
    (tmp_path / "line.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    with pytest.raises(ScenarioError) as e:
        load_scenario(tmp_path / "line.yaml")
    assert where in str(e.value) and says in str(e.value) and "line.yaml" in str(e.value)
    assert load_scenario.__name__ and Scenario.model_validate(_line(rework=True)).stations[2].rework


def test_parts_waiting_at_a_rework_station_at_the_start_count_as_reworked() -> None:
    """A line started (or a what-if continued) with bodies in the rework bay: they were sent there."""
    data = _line(rework=True, initial=3, buffer=5)
    data["source"] = {"kind": "arrivals", "interarrival": "10 s"}
    line = Line(Scenario.model_validate(data), 0)
    assert len(line.reworked) == 3 and line.reworked == set(line.buffers[2].items)
