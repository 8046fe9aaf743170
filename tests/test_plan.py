"""`twin plan`: the warm-up (MSER-5 on Welch's average of pilot replications) and the replications a KPI's confidence
interval needs, checked on series and lines whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from tests.conftest import assert_mistakes, run_all, twin_cmd
from tests.helpers import const, exp, kpi, replicate, scenario, unreliable
from twin.app.runner import simulate
from twin.experiment import mser, replications_needed
from twin.kpi import period_flow


def test_mser_cuts_a_ramp_and_keeps_a_steady_series_whole() -> None:
    """A series rising for its first 30 observations, then noise about its level: MSER-5 cuts at the end of the
    rise (to the batch); noise alone is not cut beyond its first batches; a series that never levels off is not
    settled."""
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.05, 500)
    ramp = np.minimum(np.arange(500) / 30, 1.0) + noise
    cut = mser(ramp)
    assert 30 <= cut.periods <= 40 and cut.settled
    steady = mser(1 + noise)
    assert steady.periods <= 25 and steady.settled
    assert not mser(np.arange(500.0) + noise).settled
    with pytest.raises(ValueError, match="make 19 batches of 5; MSER needs at least 20"):
        mser(noise[:99])


@pytest.mark.parametrize("values", [[10.0, 12, 11, 9, 13], [100.0, 101, 99.5, 100.2], [5.0, 1, 9]])
def test_replications_needed_is_the_fewest_whose_interval_is_narrow_enough(values: list[float]) -> None:
    """Checked against scipy's t quantiles: n replications meet ± 5 % of the mean at 95 %, n - 1 do not."""
    n = int(replications_needed(np.array(values), 0.05))
    sd, mean = np.std(values, ddof=1), np.mean(values)

    def half(k: int) -> float:
        return float(stats.t.ppf(0.975, k - 1) * sd / np.sqrt(k))

    assert half(n) <= 0.05 * mean and (n == 2 or half(n - 1) > 0.05 * mean)
    assert replications_needed(np.array([3.0, 3.0]), 0.05) == 2
    assert np.isnan(replications_needed(np.array([-1.0, 1.0]), 0.05))  # no relative precision of a mean of 0


def test_flow_per_period_gives_the_kpis_over_the_same_span() -> None:
    """Summed over the periods after the warm-up, the flow per period gives the throughput, WIP and lead time the
    KPIs give over that window (an exit exactly on a period's edge is the only difference, and times are random)."""
    sc = scenario([{"name": "A", "cycle_time": exp(50)}, {"name": "B", "cycle_time": exp(55), "buffer": 5}],
                  duration=36_000, warmup=3_600)
    rep = simulate(sc, 0, sensors=False)
    flow = period_flow(rep.line, 600.0)
    d, span = 6, 36_000 - 3_600
    assert len(flow["parts"]) == 60
    assert flow["parts"][d:].sum() / span * 3600 == pytest.approx(kpi(rep.kpis, "throughput [parts/h]").iloc[0])
    assert flow["part-seconds"][d:].sum() / span == pytest.approx(kpi(rep.kpis, "wip [parts]").iloc[0])
    assert flow["lead seconds"][d:].sum() / flow["parts"][d:].sum() / 60 == \
        pytest.approx(kpi(rep.kpis, "lead time [min]").iloc[0])


@pytest.mark.slow  # seconds of CLI runs: the full suite
def test_a_line_filling_its_buffer_needs_the_warm_up_it_takes_to_fill(tmp_path: Path) -> None:
    """A (30 s a part on average) feeds B (60 s) through a buffer of 100: the line fills at about a part a minute
    for its first 100 minutes or so, then holds. `twin plan` puts the end of the warm-up there (to a 50-minute
    batch), says the scenario's warm-up of 0 is too short, and gives replications for each KPI; the same on one
    process and on a local Dask cluster."""
    from twin.app.plan import plan

    doc = {"line": {"site": "s", "area": "a", "name": "filling"}, "seed": 11, "duration": "1000 min", "warmup": 0,
           "replications": 5, "machine_types": {"m": {}},
           "stations": [{"name": "A", "machine_type": "m", "cycle_time": {"dist": "exponential", "mean": "30 s"}},
                        {"name": "B", "machine_type": "m", "cycle_time": {"dist": "exponential", "mean": "60 s"},
                         "buffer": 100}]}
    f = tmp_path / "filling.yaml"
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp_path / "plan"
    r, = run_all(twin_cmd("plan", f, "--out", out, "--jobs", 2))
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    warm = pd.read_csv(out / "welch.csv")
    assert len(warm) == 100 and warm["wip [parts]"].iloc[-50:].mean() > 95  # full: the buffer and both machines
    rec = int(text.split("Recommended warm-up: ")[1].split(" min")[0])
    assert 100 <= rec <= 200, text
    assert "The scenario's warm-up (0) is shorter: its KPIs include part of the start-up." in text
    table = pd.read_csv(out / "replications.csv").set_index("kpi")
    assert table.loc["throughput [parts/h]", "mean"] == pytest.approx(60, rel=0.05)  # B's rate
    assert (table["replications needed"] >= 2).all()
    assert f"--warmup '{rec} min' --replications" in text and "Many replications" not in text
    assert (out / "welch.png").stat().st_size > 0 and "![Welch's average](welch.png)" in (out / "report.md").read_text()
    from twin.scenario import load_scenario

    sc = load_scenario(f)
    one, two = plan(sc, 600.0, 0.05, jobs=1), plan(sc, 600.0, 0.05, jobs=2)
    for name in one.flows:
        np.testing.assert_array_equal(one.flows[name], two.flows[name])
    assert one.recommended == two.recommended == rec * 60


def test_plan_mistakes_are_named() -> None:
    base = ["plan", "scenarios/bottling.yaml"]
    assert_mistakes(base, [
        (["--period", "1 h"], "--duration: 8 h holds 8 periods of 1 h; the warm-up analysis needs at least 100: give "
                              "--duration 100 h or more, or a shorter --period"),
        (["--precision", "5"], "--precision 5.0: a share of the mean between 0 and 1, e.g. 0.05 for ± 5 %"),
        (["--replications", "2"], "Invalid value for '--replications'"),
    ])
    assert_mistakes(["plan", "scenarios/cnc_cell.yaml"], [
        ([], "--duration: 3 d holds 0 periods of 7 d; the warm-up analysis needs at least 20: give --duration 140 d "
             "or more (on a shift calendar a period is its cycle, a day or a week")])


def test_a_run_whose_throughput_is_uncertain_points_to_twin_plan() -> None:
    """Three hour-long runs of a line stopped for hours at a time leave its throughput's CI wider than a tenth of
    its mean: the KPI table says so and points to `twin plan`; a line of constant times has none to say."""
    from twin.app.cmd_run import _precision_note
    from twin.kpi import summarize

    rough = scenario([{"name": "A", "cycle_time": exp(60)}], machine_types={"m": unreliable(3600, 3600)},
                     duration=3600, replications=3)
    note = _precision_note(summarize(replicate(rough, 3)))
    assert note is not None and note.startswith("note: the throughput's 95 % CI is ± ") and "`twin plan`" in note
    share = float(note.split("± ")[1].split("%")[0]) / 100
    s = summarize(replicate(rough, 3)).set_index(["scope", "kpi"]).loc[("line", "throughput [parts/h]")]
    assert share == pytest.approx((s.ci_high - s.ci_low) / 2 / s["mean"], abs=0.005) and share > 0.10
    smooth = scenario([{"name": "A", "cycle_time": const(60)}], duration=3600, replications=3)
    assert _precision_note(summarize(replicate(smooth, 3))) is None
    # a run continued from a line's state (`twin run --from`) has no warm-up to plan: more replications narrow it
    ahead = _precision_note(summarize(replicate(rough, 3)), continued=True)
    assert ahead is not None and "twin plan" not in ahead and "warm-up" not in ahead and "12 instead of 3" in ahead


def test_a_period_shorter_than_the_shift_calendars_cycle_is_said() -> None:
    """On a line working weekday shifts, output per hour drops to 0 each night and weekend, which MSER can take for
    a start-up: a period shorter than the calendar's week is said next to the warm-up it gives."""
    from twin.app.plan import default_period, plan, verdict
    from twin.scenario import load_scenario

    sc = load_scenario("scenarios/cnc_cell.yaml").model_copy(update={"duration": 100 * 3600.0, "replications": 3})
    assert default_period(sc) == 7 * 86400.0
    said = " ".join(verdict(plan(sc, 3600.0, 0.05, jobs=1)))
    assert "A period of 1 h is shorter than the shift calendar's cycle (7 d)" in said


def test_short_runs_of_a_line_with_long_stops_are_said_to_need_many_replications(tmp_path: Path) -> None:
    """Eight-hour runs of the body shop, whose stops last hours, vary so much that hundreds of them would be needed
    for ± 5 % of throughput: said, with longer runs as the way out."""
    r, = run_all(twin_cmd("plan", "scenarios/body_shop.yaml", "--jobs", 1, "--out", tmp_path / "plan"))
    needed = pd.read_csv(tmp_path / "plan" / "replications.csv").set_index("kpi")["replications needed"]
    assert needed["throughput [parts/h]"] > 100, needed
    assert "Many replications: runs of 8 h vary much from one to the next" in " ".join(r.stdout.split())
