"""`twin sensitivity`: each station's levers made better one at a time, ranked by the throughput they gain."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, assert_mistakes, twin_cmd
from tests.helpers import const, exp, scenario, unreliable


def test_each_lever_is_one_stations_own_change_made_by_the_share() -> None:
    """A lever changes one thing at one station by the share: cycle times 10 % shorter, times to failure longer by
    1/0.9 (failures 10 % rarer) on a copy of the machine type the other station shares, repairs, setups and scrap 10 %
    less; a station gets only the levers it has, and its machines draw as the line's do (common random numbers)."""
    from twin.app.alternatives import levers

    sc = scenario([{"name": "a", "machine_type": "u", "cycle_time": const(60), "scrap": 0.05,
                    "changeover": {"every_parts": 50, "duration": const(600)}},
                   {"name": "b", "machine_type": "u", "cycle_time": exp(50)}],
                  machine_types={"u": unreliable(3600, 300)}, duration="2 d")
    got = {(station, lever): alt for _, station, lever, alt in levers(sc, 0.1)}
    assert set(got) == {("a", "cycle"), ("a", "failures"), ("a", "repairs"), ("a", "setups"), ("a", "scrap"),
                        ("b", "cycle"), ("b", "failures"), ("b", "repairs")}
    a = got["a", "cycle"].stations[0]
    assert a.cycle_time.mean == pytest.approx(54) and got["a", "cycle"].stations[1] == sc.stations[1]
    rarer = got["a", "failures"]
    own = rarer.machine_types[rarer.stations[0].machine_type]
    assert rarer.stations[0].machine_type != "u" and rarer.stations[1].machine_type == "u"  # b keeps the shared type
    assert own.fault_modes[0].ttf.mean == pytest.approx(3600 / 0.9)
    assert rarer.machine_types["u"] == sc.machine_types["u"]
    fixed = got["b", "repairs"]
    assert fixed.machine_types[fixed.stations[1].machine_type].fault_modes[0].repair.mean == pytest.approx(270)
    assert got["a", "setups"].stations[0].changeover.duration.mean == pytest.approx(540)
    assert got["a", "scrap"].stations[0].scrap == pytest.approx(0.045)
    assert all(alt.machine_order() == sc.machine_order() for alt in got.values())
    long = "x" * 64  # a shared type and stations of the longest names: the copy's name still fits in 64
    named = sc.model_copy(update={"machine_types": {long: sc.machine_types["u"]}, "stations": [
        s.model_copy(update={"machine_type": long, "name": f"{s.name}{'y' * 63}"}) for s in sc.stations]})
    copies = [alt.stations[i].machine_type for i, (_, _, lever, alt) in enumerate(levers(named, 0.1, ["failures"]))]
    assert len(copies) == 2 and all(len(c) <= 64 and c != long for c in copies)
    buffered = sc.model_copy(update={"stations": [sc.stations[0], sc.stations[1].model_copy(update={"buffer": 4})]})
    grown = [(label, alt.stations[1].buffer) for label, _, _, alt in levers(buffered, 0.1, ["buffer"])]
    assert grown == [("b: buffer +1 place", 5)]  # the first station's parts are always at hand: no buffer to grow
    assert levers(buffered, 0.5, ["buffer"])[0][0] == "b: buffer +2 places"
    crewed = type(sc).model_validate({**sc.model_dump(by_alias=True), "repair_crews": [{"name": "maint", "size": 1}],
                                      "machine_types": {"u": {**sc.machine_types["u"].model_dump(by_alias=True),
                                                              "repair_crew": "maint"}}})
    (label, station, _, alt), = levers(crewed, 0.1, ["crew"])  # the line's lever: one more technician
    assert (label, station, alt.repair_crews[0].size) == ("+1 technician, maint", "line", 2)
    only = levers(sc, 0.2, ["scrap", "failures"], ["b"])
    assert [(s, lever) for _, s, lever, _ in only] == [("b", "failures")] and "−20%" in only[0][0]


@pytest.mark.slow
def test_the_constraints_cycle_is_the_lever_that_pays(tmp_path: Path) -> None:
    """A line of a 60 s press before a 50 s welder: the press's cycle 10 % shorter makes the line 6.7 parts/h faster
    (54 s), the welder's gains nothing; `twin sensitivity` ranks them so, with its report, table and chart."""
    import yaml

    sc = scenario([{"name": "press", "cycle_time": const(60)}, {"name": "welder", "cycle_time": const(50)}],
                  duration="1 d", replications=2, costs={"part_margin": 10})
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump(sc.model_dump(mode="json", by_alias=True, exclude_none=True)))
    r = subprocess.run(twin_cmd("sensitivity", path, "--out", tmp_path / "report", "--cost", "press.cycle=292000"),
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(tmp_path / "report" / "sensitivity.csv")
    assert list(table.alternative) == ["press: cycle time −10%", "welder: cycle time −10%"]
    assert table["throughput [parts/h]"].tolist() == pytest.approx([3600 / 54 - 60, 0], abs=0.1)
    assert table["throughput [parts/h] significant"].tolist() == [True, False]
    # at 10 EUR a part, 6.7 parts an hour more are worth 584,000 EUR over a year's 8,760 hours
    assert table["worth a year"][0] == pytest.approx((3600 / 54 - 60) * 8760 * 10, rel=0.02)
    # a project of 292,000 EUR for it: paid back in 6 months; the welder's has no cost given
    assert table["payback [months]"][0] == pytest.approx(6.0, rel=0.02) and np.isnan(table["payback [months]"][1])
    assert table["payback [months] low"][0] <= 6.0 * 1.02 and table["project cost"][0] == 292000
    assert "payback [months]" in r.stdout and "6.0 (" in r.stdout
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| 1 | press | cycle time −10% |" in " ".join(report.split())
    assert (tmp_path / "report" / "levers.png").stat().st_size > 1000 and "press" in r.stdout
    # fed by orders arriving every 70 s on average, the line makes what arrives: ranked by lead time instead
    fed = scenario([{"name": "press", "cycle_time": const(60)}, {"name": "welder", "cycle_time": const(50)}],
                   duration="1 d", replications=10, source={"kind": "arrivals", "interarrival": exp(70)})
    path.write_text(yaml.safe_dump(fed.model_dump(mode="json", by_alias=True, exclude_none=True)))
    r = subprocess.run(twin_cmd("sensitivity", path, "--out", tmp_path / "fed"), cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(tmp_path / "fed" / "sensitivity.csv")
    assert table.alternative[0] == "press: cycle time −10%"
    # M/D/1 at the press (Pollaczek-Khinchine): a wait of rho S / (2 (1 - rho)), 180 s at 60 s, 91 s at 54 s
    waits = [c / 70 * c / (2 * (1 - c / 70)) for c in (60, 54)]
    assert table["lead time [min]"][0] == pytest.approx((waits[1] - waits[0] - 6) / 60, abs=0.5)
    assert table["lead time [min] significant"][0] and "ranked by lead time" in r.stdout


def test_sensitivity_mistakes_are_named() -> None:
    assert_mistakes(["sensitivity", str(ROOT / "scenarios" / "body_shop.yaml")], [
        (["--by", "0"], "--by '0': how much better each lever is made, in percent from 1 to 90, e.g. '10 %'"),
        (["--by", "ten"], "--by 'ten': how much better"),
        (["--levers", "cycle,speed"], "--levers 'cycle,speed': 'speed' is no lever; choose from cycle, failures"),
        (["--stations", "framing,paint"], "--stations 'framing,paint': 'paint' is no station of body_shop.yaml"),
        (["--replications", "1"], "--replications: at least 2"),
        (["--levers", "minor-stops"], "--levers 'minor-stops': no station has them"),
        (["--objective", "speed"], "--objective 'speed': choose one of throughput [parts/h]"),
        (["--cost", "framing.cycle=80.000"], "--cost 'framing.cycle=80.000': write the amount as a plain number above "
                                             "0 (and below 10^15) without thousands separators"),
        (["--cost", "framing.cycle=" + "9" * 400], "write the amount as a plain number above 0 (and below 10^15)"),
        (["--cost", "framing.speed=5"], "--cost 'framing.speed=5': write STATION.LEVER=AMOUNT for a lever this "
                                        "ranking pulls, e.g. closures.buffer=80000"),
        (["--cost", "line.crew=50000"], "--cost 'line.crew=50000': a technician is a cost a year, not a project's"),
        (["--objective", "payback"], "--objective payback ranks the projects by the months they take to pay back: "
                                     "give what each costs with --cost"),
        (["--cost", "framing.cycle=5", "--cost", "framing.cycle=6"], "framing.cycle is given a cost twice"),
        (["--cost", "framing.cycle=5", "--objective", "lead time"], "--cost: the worth a year comes from the "
                                                                    "throughput gained")])


def test_a_projects_payback_is_its_cost_over_the_worth_its_lever_gains() -> None:
    """Months until paid: 12 × cost / worth a year; the shortest from the worth's high end, never where its low end
    is not above 0, no gain where its mean is not."""
    from twin.app.compare import PAYBACK, payback, sensitivity_cells

    got = payback(120_000, 240_000, 60_000, 480_000)
    assert got == {PAYBACK: 6.0, f"{PAYBACK} low": 3.0, f"{PAYBACK} high": 24.0}
    assert sensitivity_cells(got, PAYBACK) == "6.0 (3.0–24)"
    assert sensitivity_cells(payback(120_000, 240_000, -5, 480_000), PAYBACK) == "6.0 (3.0–never)"
    assert sensitivity_cells(payback(1, -5, -10, 0), PAYBACK) == "no gain"
    assert sensitivity_cells({}, PAYBACK) == "–"
    # ranked by payback: the soonest first, then those without a gain or a cost, in their order by the objective
    from twin.app.compare import by_payback

    table = pd.DataFrame({"alternative": ["a", "b", "c", "d"], PAYBACK: [float("nan"), 9.0, float("inf"), 2.0]})
    assert by_payback(table).alternative.tolist() == ["d", "b", "a", "c"]
    assert by_payback(table.drop(columns=PAYBACK)).alternative.tolist() == ["a", "b", "c", "d"]


@settings(max_examples=200, deadline=None)
@given(spec=st.text(alphabet="framing.cyclerespot-1=0123456789,._ e-", max_size=30))
def test_any_project_cost_written_is_read_or_named(spec: str) -> None:
    """A fuzzed --cost: a positive amount for a lever the ranking pulls, or refused with the CLI's error, never a
    traceback."""
    import typer

    from twin.app.cmd_policies import _project_costs
    from twin.scenario import load_scenario

    sc = load_scenario(ROOT / "scenarios" / "body_shop.yaml")
    pulled = {("framing", "cycle"), ("respot-1", "cycle"), ("line", "crew")}
    try:
        costs = _project_costs([spec], sc, "throughput [parts/h]", pulled, ROOT / "scenarios" / "body_shop.yaml")
    except typer.Exit:
        return
    assert all(key in pulled and key[1] != "crew" and 0 < v < float("inf") for key, v in costs.items())
