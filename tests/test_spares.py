"""Spare parts for repairs: a stock each repair of a fault mode takes from, waiting down while it is empty, reordered
by an (s, Q) rule with a lead time; checked against the exact figures of a one-for-one stock of one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.helpers import const, exp, kpi, replicate, scenario
from twin.model import Line
from twin.scenario import ScenarioError, load_scenario


def _press(stock: int = 1, lead: float = 8 * 3600, cycle: float = 600, **spare: Any) -> Any:
    """One press whose die (mean life 10 h of work, 1 h to change) needs a die set from stock, delivered `lead`
    after each order."""
    die = {"name": "die", "kind": "sudden", "ttf": exp(36_000), "repair": const(3600), "spare": "die-set"}
    return scenario([{"name": "press", "cycle_time": const(cycle)}], machine_types={"m": {"fault_modes": [die]}},
                    spares=[{"name": "die-set", "stock": stock, "lead_time": const(lead), **spare}],
                    duration="300 d", seed=11)


def test_a_stock_of_one_reordered_one_for_one_matches_its_recursion() -> None:
    """A stock of one, one ordered at each failure (lead L = 8 h), repairs of r = 1 h, lives T ~ Exp(m = 10 h): the
    part a failure takes was ordered at the failure before, so its wait is W_k = max(0, L - r - W_(k-1) - T_k); the
    part is on hand from its delivery to the next failure, (W + r + T - L)+ of each W + r + T hours. The chain's own
    figures (200,000 steps of the recursion, apart from the simulator) against the simulated stock's."""
    m, r, lead = 10.0, 1.0, 8.0
    rng = np.random.default_rng(0)
    w, waits, held, spans = 0.0, [], 0.0, 0.0
    for t in rng.exponential(m, 200_000):
        held += max(0.0, w + r + t - lead)
        spans += w + r + t
        w = max(0.0, lead - r - w - t)
        waits.append(w)
    p_wait, mean_wait, on_hand = float(np.mean(np.array(waits) > 0)), float(np.mean(waits)), held / spans
    k = replicate(_press(), 2)
    assert kpi(k, "repairs", "die-set").min() > 500
    assert kpi(k, "stock-out share", "die-set").mean() == pytest.approx(p_wait, abs=0.04)
    assert kpi(k, "wait for part [h]", "die-set").mean() == pytest.approx(mean_wait, abs=0.2)
    assert kpi(k, "mean stock", "die-set").mean() == pytest.approx(on_hand, abs=0.03)
    # the waits are downtime: the press is down through them, and each is an event naming the part
    line = Line(_press(), 0)
    line.run(10 * 86400)
    waits = [e for e in line.events if e.kind == "spare_wait"]
    assert waits and all(e.detail == "die-set" and e.fault_mode == "die" for e in waits)


def test_a_repair_still_waiting_for_its_part_at_the_end_counts_its_wait_so_far() -> None:
    """One die set and a 30-day lead time over 5 days: the first repair takes the set, the next waits to the end of the
    run; it counts, with its wait until the end (it was left out, and the figures showed one repair that never
    waited)."""
    sc = _press(lead=30 * 86400).model_copy(update={"duration": 5 * 86400.0})
    line = Line(sc, 0)
    line.run(sc.duration)
    stock = line.spares["die-set"]
    assert len(stock.asked) == 2 and len(stock.waits) == 1 and stock.waits[0] == 0
    f = stock.figures(0.0, sc.duration)
    assert f["repairs"] == 2 and f["stock-out share"] == 0.5
    assert f["wait for part [h]"] == pytest.approx((sc.duration - stock.asked[1]) / 3600 / 2)
    down = kpi(replicate(sc, 1), "wait for part [h]", "die-set")[0]
    assert down == pytest.approx(f["wait for part [h]"])


def test_more_stock_or_a_shorter_lead_time_means_fewer_waits() -> None:
    """Three die sets on hand (reordered one for one) or a lead time of 2 h (shorter than the 1 h change plus most
    lives): repairs rarely wait; an (s, Q) rule orders Q at a time when the stock position falls to s."""
    base = kpi(replicate(_press(), 1), "stock-out share", "die-set")[0]
    assert kpi(replicate(_press(stock=3), 1), "stock-out share", "die-set")[0] < base / 4
    assert kpi(replicate(_press(lead=2 * 3600), 1), "stock-out share", "die-set")[0] < base / 4
    line = Line(_press(stock=4, reorder_at=1, order=3), 0)
    line.run(20 * 86400)
    stock = line.spares["die-set"]
    assert len(stock.asked) > 30
    assert stock.orders == len(stock.asked) // 3  # 4 - demands + 3 x orders stays above 1
    assert max(stock.level) == 4  # never more on hand than s + Q


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["machine_types"]["m"]["fault_modes"][0].update(spare="die-sets"),
     r"machine_types\.m\.fault_modes\[0\]\.spare: names spare 'die-sets', but spares has \['die-set'\]"),
    (lambda d: d["spares"].append(dict(d["spares"][0])), r"spares\[1\]\.name: spare 'die-set' is used twice"),
    (lambda d: d["spares"][0].update(stock=-1), r"spares\[0\]\.stock: must be greater than or equal to 0"),
    (lambda d: d["spares"][0].pop("lead_time"), r"spares\[0\]\.lead_time: required field is missing"),
    (lambda d: d.update(costs={"spare_holding": {"die-set": -40}}),
     r"costs\.spare_holding\.die-set: must be greater than or equal to 0, got -40"),
    (lambda d: d.update(costs={"spare_holding": {"dies": 4000}}),
     r"costs\.spare_holding\.dies: names spare 'dies', but spares has \['die-set'\]; add it to spares or fix"),
])
def test_spare_mistakes_are_named(change: Any, message: str, tmp_path: Path) -> None:
    data = {"line": {"site": "s", "area": "a", "name": "n"}, "seed": 1, "duration": "1 d",
            "spares": [{"name": "die-set", "stock": 1, "lead_time": "2 d"}],
            "machine_types": {"m": {"fault_modes": [{"name": "die", "kind": "sudden", "ttf": "10 h", "repair": "1 h",
                                                     "spare": "die-set"}]}},
            "stations": [{"name": "press", "machine_type": "m", "cycle_time": 30}]}
    change(data)
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ScenarioError, match=message):
        load_scenario(f)


def test_another_stock_as_an_alternative(capsys: pytest.CaptureFixture[str]) -> None:
    """How many die sets to keep? `--stock die-set=3`: three on hand (reordered one for one at two) against one; the
    press waits less for parts, so it is down less and makes more. A spare the scenario lacks, or its own stock, is
    refused with why."""
    import typer

    from twin.app.alternatives import alternatives
    from twin.app.compare import compare_designs

    sc = _press().model_copy(update={"duration": 30 * 86400.0, "replications": 3})
    options = alternatives(sc, [], [], [], [], [], [], [], [], False, [], ["die-set=3"])
    assert [label for label, _ in options] == ["as is", "die-set: stock 3"]
    assert options[1][1].spares[0].reorder_point == 2
    s = compare_designs(options, jobs=1).summary().set_index(["policy", "kpi"])["mean"]
    assert s["die-set: stock 3", "downtime [h]"] < 0.8 * s["as is", "downtime [h]"]
    assert s["die-set: stock 3", "throughput [parts/h]"] > s["as is", "throughput [parts/h]"]
    # the comparison's own row: the repairs' hours waiting for a part (part of the downtime)
    assert s["die-set: stock 3", "waiting for spare parts [h]"] < 0.5 * s["as is", "waiting for spare parts [h]"]
    assert s["as is", "waiting for spare parts [h]"] < s["as is", "downtime [h]"]
    for spec, message in [("dies=3", "--stock 'dies=3': write SPARE=N (0 to 100000 parts) with a spare of the "
                                     "scenario: die-set"),
                          ("die-set=1", "die-set keeps 1 in stock already")]:
        with pytest.raises(typer.Exit):
            alternatives(sc, [], [], [], [], [], [], [], [], False, [], [spec])
        assert message in " ".join(capsys.readouterr().err.split())


def test_the_stock_s_holding_cost_weighs_against_the_lost_production(tmp_path: Path) -> None:
    """How many die sets pay? Each one kept costs its holding (`costs.spare_holding`, a part and year) on the mean
    stock on hand; a stock alternative keeps the line's design rate, so its comparison shows lost production and the
    total cost beside it (a faster press does not: its lost production counts against another rate)."""
    from twin.app.compare import DESIGN_KPIS, KPIS, YEAR, compare_designs, same_design_rate, write_report

    sc = _press().model_copy(update={"duration": 30 * 86400.0, "replications": 3})
    sc = sc.model_copy(update={"costs": sc.costs.model_copy(update={"spare_holding": {"die-set": 20_000.0},
                                                                       "part_margin": 10.0, "repair": 500.0})})
    more = sc.model_copy(update={"spares": [sc.spares[0].model_copy(update={"stock": 4})]})
    assert same_design_rate(sc, more)
    faster = _press(cycle=300).model_copy(update={"duration": sc.duration, "replications": 3, "costs": sc.costs})
    assert not same_design_rate(sc, faster)
    cmp = compare_designs([("as is", sc), ("die-set: stock 4", more)], jobs=1)
    assert cmp.same_rate and cmp.rows == KPIS and "total cost" in cmp.note
    s = cmp.summary().set_index(["policy", "kpi"])["mean"]
    k = cmp.kpis.pivot_table(index=["policy", "replication"], columns="kpi", values="value")
    for label, option in [("as is", sc), ("die-set: stock 4", more)]:
        mean_stock = []
        for r in range(3):
            line = Line(option, r)
            line.run(option.duration)
            mean_stock.append(line.spares["die-set"].figures(option.warmup, option.duration)["mean stock"])
        held = 20_000.0 * np.array(mean_stock) * (option.duration - option.warmup) / YEAR
        assert k.loc[label, "spare parts holding cost"].to_numpy() == pytest.approx(held)
        assert k.loc[label].eval("`maintenance cost` + `spare parts holding cost` + `lost production cost`"
                                 ).to_numpy() == pytest.approx(k.loc[label, "total cost"].to_numpy())
    assert s["die-set: stock 4", "spare parts holding cost"] > 3 * s["as is", "spare parts holding cost"]
    assert s["die-set: stock 4", "lost production cost"] < s["as is", "lost production cost"]
    other = compare_designs([("as is", sc), ("faster", faster)], jobs=1)
    assert other.rows == DESIGN_KPIS
    report = write_report(other, tmp_path / "cmp").read_text()
    assert "lost production and total cost are left out" in report and "| total cost" not in report


def test_an_objective_the_line_has_no_figures_of_is_refused() -> None:
    """`twin tune` or `twin allocate` for the waits for spare parts on a line that keeps none, or for energy on one
    whose machines give no power: refused with why (allocate's energy objective was not checked at all)."""
    from tests.conftest import assert_mistakes

    assert_mistakes(["tune", "scenarios/bottling.yaml", "--policy", "preventive", "--values", "20 h,40 h"], [
        (["--objective", "waiting for spare parts [h]"], "bottling.yaml keeps no spare parts (spares:)")])
    assert_mistakes(["allocate", "scenarios/body_shop.yaml", "--places", "2"], [
        (["--objective", "waiting for spare parts"], "body_shop.yaml keeps no spare parts (spares:)"),
        (["--objective", "energy per good part"], "no machine type of body_shop.yaml gives its power (power: "
                                                  "{working: KW, idle: KW}), so the line has no energy figures")])


def test_a_preventive_service_takes_its_part_and_waits_for_it_working_on() -> None:
    """A die change every 20 h of work takes a die set as a repair of a worn die does. With one on hand and a 3-day
    lead time, the second service finds none: it waits, the press working on (event maintenance_waits_for_part),
    until the delivery, and is then done with the part; the stock's figures count the services apart from the
    repairs (whose waits they keep)."""
    die = {"name": "die", "ttf": {"dist": "weibull", "shape": 3, "scale": "200 h"}, "repair": const(3600),
           "spare": "die-set"}
    mt = {"fault_modes": [die], "maintenance": {"policy": "preventive", "every": "20 h", "duration": const(1800)}}
    sc = scenario([{"name": "press", "cycle_time": const(60)}], machine_types={"m": mt}, duration="10 d",
                  spares=[{"name": "die-set", "stock": 1, "lead_time": "3 d"}], seed=2)
    line = Line(sc, 0)
    line.run(sc.duration)
    kinds = [(e.t, e.kind) for e in line.events if e.kind in ("maintenance_order", "maintenance_waits_for_part")]
    assert kinds[0] == (pytest.approx(20 * 3600, abs=120), "maintenance_order")  # the first: its part on hand
    assert kinds[1] == (pytest.approx(40 * 3600 + 1800, abs=120), "maintenance_waits_for_part")
    assert kinds[2] == (pytest.approx(20 * 3600 + 3 * 86400, abs=120), "maintenance_order")  # the delivery's
    starts = [e.t for e in line.events if e.kind == "maintenance_start"]
    assert not [t for t in starts if 21 * 3600 < t < 20 * 3600 + 3 * 86400 - 60]  # working on while it waited
    stock = line.spares["die-set"]
    assert list(stock.by_service) == [1] * len(stock.by_service) and max(stock.waits) == 0  # none waited stopped
    assert stock.figures(0, sc.duration)["services"] == len(stock.by_service) >= 3
    assert stock.figures(0, sc.duration)["repairs"] == 0
