"""Closed loop: forecasts schedule maintenance in the twin; policies compared with common random numbers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, assert_mistakes, run_all, twin_cmd
from tests.helpers import const, exp
from tests.helpers import scenario as helper_scenario
from twin.app.compare import PolicyParams, compare, policy_kpis, tune
from twin.maintenance import Oracle, Preventive
from twin.model import Line
from twin.scenario import ScenarioError, load_scenario, with_policy

pytestmark = pytest.mark.slow  # end to end: policies compared over replications, in parallel processes


def bottling(duration: float, replications: int = 1, **update: object) -> object:
    sc = with_policy(load_scenario(ROOT / "scenarios" / "bottling.yaml"), "run-to-failure")
    return sc.model_copy(update={"duration": duration, "warmup": 0.0, "replications": replications, **update})


def test_common_random_numbers_give_every_policy_the_same_draws() -> None:
    """Preventive maintenance changes when lives end, not what was drawn: the k-th life of every fault mode,
    and every cycle time, is the same draw under both policies."""
    sc = bottling(2 * 86400.0)  # 22 services, 98 lives compared: room to spare on both bars below
    lines = []
    for policy in (None, lambda m: Preventive(8 * 3600.0, None)):
        line = Line(sc, 0, policy=policy) if policy else Line(sc, 0)
        line.run(sc.duration)
        lines.append(line)
    a, b = lines
    assert sum(e.kind == "maintenance_end" for e in b.events) > 5  # the policies really differ
    compared = 0
    for ma, mb in zip(a.machines, b.machines):
        for la, lb in zip(ma.log.lives, mb.log.lives):
            n = min(len(la), len(lb))
            assert n >= 1
            np.testing.assert_array_equal([life for *_, life in la[:n]], [life for *_, life in lb[:n]])
            compared += n
    assert compared > 30
    sudden = [[e.t for e in line.events if e.kind == "failure" and e.fault_mode == "jam"
               and e.machine == "depalletizer"] for line in lines]
    assert sudden[0][:1] == sudden[1][:1]  # the first jam comes at the same time (nothing differs before it)


def test_oracle_maintains_just_before_each_wear_out_failure() -> None:
    sc = bottling(2 * 86400.0)
    line = Line(sc, 0, policy=lambda m: Oracle(600.0))
    line.run(sc.duration)
    k = policy_kpis(line)
    free = Line(sc, 0)
    free.run(sc.duration)
    assert policy_kpis(free)["wear-out failures"] >= 5
    assert k["wear-out failures"] == 0 and k["maintenance actions"] >= 5


def test_predictive_policy_prevents_failures_and_the_oracle_bounds_it(work: Path) -> None:
    """Same seeds, three policies: run-to-failure, predictive with the trained LSTM, perfect information."""
    sc = bottling(86400.0, replications=3, seed=4242)  # each difference below is significant with room to spare
    cmp = compare(sc, ["run-to-failure", "predictive", "oracle"], PolicyParams(models=str(work / "lstm")), jobs=2)
    s = cmp.summary().set_index(["policy", "kpi"])["mean"]
    d = cmp.differences().set_index(["policy", "kpi"])
    rtf, pred, oracle = (s[(p, "wear-out failures")] for p in ("run-to-failure", "predictive", "oracle"))
    assert rtf >= 3 and oracle <= pred < rtf, (rtf, pred, oracle)
    for policy in ("predictive", "oracle"):
        for kpi in ("wear-out failures", "unplanned failures"):
            row = d.loc[(policy, kpi)]
            assert row["significant"] and row["ci_high"] < 0, row
        cost = d.loc[(policy, "total cost")]
        assert cost["significant"] and cost["ci_high"] < 0, cost  # and it pays: repairs cost more than services
    assert s[("predictive", "maintenance actions")] > 0 and s[("run-to-failure", "maintenance actions")] == 0
    # the oracle bounds it: it services each machine at the end of its life, the forecast some time before, so
    # the third difference is the useful life the forecast throws away (significant), not failures (both ~0)
    mean, lo, hi, _, significant = cmp.paired("oracle", "predictive", "wear at maintenance")
    assert significant and lo > 0 and s[("oracle", "wear at maintenance")] > 0.9, (mean, lo, hi)
    assert s[("oracle", "wear-out failures")] <= s[("predictive", "wear-out failures")]
    assert (cmp.kpis.query("policy == 'predictive' and kpi == 'forecasts'").value > 1000).all()


def test_compare_cli_table_report_and_parallel_runs(tmp_path: Path) -> None:
    r = subprocess.run(twin_cmd("compare", "scenarios/bottling.yaml", "--policies",
                                "run-to-failure,preventive,condition-based,oracle", "--replications", 3,
                                "--duration", "6 h", "--warmup", "1 h", "--every", "3 h",
                                "--out", tmp_path / "cmp"), capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "total cost" in r.stdout and "on 2 processes" in r.stdout
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "Differences to run-to-failure" in report and (tmp_path / "cmp" / "policies.png").stat().st_size > 5000
    kpis = pd.read_csv(tmp_path / "cmp" / "kpis.csv")
    assert set(kpis.policy) == {"run-to-failure", "preventive", "condition-based", "oracle"}
    assert kpis.groupby("policy").replication.nunique().eq(3).all()


def test_tune_finds_a_setting_and_says_why(tmp_path: Path) -> None:
    r = subprocess.run(twin_cmd("tune", "scenarios/bottling.yaml", "--policy", "perfect-monitoring", "--values",
                                "0.3,0.7,0.95", "--replications", 3, "--duration", "12 h", "--warmup", 0,
                                "--out", tmp_path / "tune"), capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "wear_limit" in r.stdout and "← best" in r.stdout
    assert "best wear_limit by total cost" in r.stdout or "no setting is significantly better" in r.stdout
    summary = pd.read_csv(tmp_path / "tune" / "summary.csv")
    assert set(summary.policy) == {"wear_limit=0.3", "wear_limit=0.7", "wear_limit=0.95"}


def test_a_second_comparison_keeps_the_first_report(tmp_path: Path) -> None:
    """`twin compare` and `twin tune` wrote every run into reports/compare-<scenario> (or --out) over the report
    before, without a word; like `twin evaluate`, each now gets a new folder, and an --out that holds a report needs
    --force."""
    args = ["compare", str(ROOT / "scenarios/bottling.yaml"), "--policies", "run-to-failure,oracle",
            "--replications", "2", "--duration", "1 h", "--warmup", "0", "--jobs", "1"]
    for _ in range(2):
        r = subprocess.run(twin_cmd(*args), capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
    first, second = sorted((tmp_path / "reports").iterdir())
    assert first.name.startswith("compare-bottling-") and (first / "report.md").exists()
    assert (second / "report.md").exists()
    before = (first / "report.md").read_text()
    tune = ["tune", "scenarios/bottling.yaml", "--policy", "preventive", "--values", "1 h,2 h"]
    assert_mistakes([], [([*args[:2], "--out", str(first)], f"--out {first}: holds an earlier report"),
                         ([*tune, "--out", str(first)], "or add --force to replace it")])
    assert (first / "report.md").read_text() == before
    r = subprocess.run(twin_cmd(*args, "--out", first, "--force"), capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]


def test_tune_says_when_no_setting_is_significantly_better() -> None:
    """2 h vs 4 h once came out 'best' at 3,820 ± 16,990: settings this close are reported as a tie."""
    sc = with_policy(load_scenario("scenarios/bottling.yaml"), "perfect-monitoring").model_copy(
        update={"duration": 6 * 3600.0, "warmup": 0.0, "replications": 3})
    result = tune(sc, "perfect-monitoring", "wear_limit", [0.6, 0.61], PolicyParams(), jobs=1)
    assert not result.clear and result.ties == [0.61 if result.best == 0.6 else 0.6]
    far = tune(sc, "perfect-monitoring", "wear_limit", [0.05, 0.6], PolicyParams(), jobs=1)
    assert far.clear and far.best == 0.6  # maintaining at 5 % wear is clearly worse


def test_compare_without_policies_runs_those_the_file_can(tmp_path: Path) -> None:
    """`twin compare FILE` on any bundled scenario stopped at its default policies (preventive without a schedule,
    predictive without models); now it compares those the file can run and names the others with what they lack."""
    r = subprocess.run(twin_cmd("compare", ROOT / "scenarios/cnc_cell.yaml", "--replications", 2, "--duration", "4 h",
                                "--warmup", "0", "--jobs", 1, "--out", tmp_path / "r"),
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "preventive (saw has no every or every_parts; --every fills it in)" in r.stderr
    assert "predictive (needs --models" in r.stderr
    header = next(line for line in r.stdout.splitlines() if "KPI" in line)
    assert header.split()[2:] == ["┃", "run-to-failure", "┃", "oracle", "┃"]  # the bound, so that it still compares
    assert "Policies left out: preventive (saw has no every" in (tmp_path / "r" / "report.md").read_text()
    r = subprocess.run(twin_cmd("compare", ROOT / "scenarios/cnc_cell.yaml", "--replications", 2, "--duration", "4 h",
                                "--warmup", "0", "--jobs", 1, "--every", "20 h", "--out", tmp_path / "s"),
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    header = next(line for line in r.stdout.splitlines() if "KPI" in line)
    assert header.split()[2:] == ["┃", "run-to-failure", "┃", "preventive", "┃"]
    r = subprocess.run(twin_cmd("compare", ROOT / "tests/scenarios/pumps.yaml", "--replications", 2, "--out",
                                tmp_path / "t"), capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and "nothing to compare: every fault mode of this line is sudden" in " ".join(
        r.stderr.split()), r.stderr  # it compared run-to-failure with an oracle that could do nothing: the same


@pytest.mark.parametrize(("args", "message"), [
    (("--policies", "run-to-failure,magic"), "unknown policy 'magic'"),
    (("--policies", "run-to-failure,predictive"), "needs --models"),
    (("--policies", "run-to-failure,preventive"), "machine type 'filler' cannot use it"),
    (("--replications", 1), "at least 2"),
])
def test_compare_mistakes_are_clear(args: tuple[object, ...], message: str) -> None:
    r = subprocess.run(twin_cmd("compare", "scenarios/bottling.yaml", *args), capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_tune_mistakes_are_named_before_any_simulation() -> None:
    """`--values 1,1` compared a setting with itself and called it 'significantly better than every other'; a value
    the policy cannot take (0 s, nan) ended in a ScenarioError traceback from the first task."""
    cases = [(["--policy", "preventive", "--values", "1 h,60 min"], "--values: 3600 s is given twice"),
             (["--policy", "preventive", "--values", "20,40"], "--values 20: give its unit"),  # swept 20 s and 40 s
             (["--policy", "condition-based", "--values", "0.5,0.50000001"], "--values: 0.5 is given twice"),
             (["--policy", "condition-based", "--values", "0.5,nan"], "--values: nan: policy 'condition-based'"),
             (["--policy", "preventive", "--values", "0,1 h"], "--values: 0: policy 'preventive'")]
    base = ["tune", "scenarios/bottling.yaml", "--replications", "2", "--duration", "1 h", "--warmup", "0"]
    assert_mistakes(base, cases)  # each one exits before it simulates


def test_compare_options_that_would_change_nothing_are_refused() -> None:
    """A policy twice was compared with itself; --every without preventive, --on or --models without predictive, and
    --threshold where every machine type gives its own (it only fills in) were accepted and changed nothing."""
    cases = [(["--policies", "run-to-failure,oracle,run-to-failure"], "--policies: 'run-to-failure' is given twice"),
             (["--policies", "run-to-failure,oracle", "--every", "5 h"], "--every is for preventive, which "
                                                                         "--policies does not include"),
             (["--policies", "run-to-failure,oracle", "--on", "0.7"], "--on is for predictive"),
             (["--policies", "run-to-failure,oracle", "--defer", "buffer"], "--defer is for predictive"),
             (["--policies", "run-to-failure,oracle", "--wear-limit", "0.5"], "--wear-limit is for inspection and "
                                                                              "perfect-monitoring"),
             (["--policies", "run-to-failure,condition-based", "--threshold", "4"],
              "--threshold fills in where the file gives none, and every machine type here gives its own"),
             (["--policies", "run-to-failure,condition-based", "--threshold", "nan"], "--threshold nan: give a "
                                                                                      "finite number")]
    base = ["compare", "scenarios/bottling.yaml", "--replications", "2", "--duration", "1 h", "--warmup", "0"]
    assert_mistakes(base, cases)  # each one exits before it simulates
    assert_mistakes(["tune", "scenarios/bottling.yaml", "--policy", "preventive", "--values", "20 h,40 h"],
                    [(["--models", "models"], "--models is for predictive, not preventive")])


def test_inspection_is_compared_with_the_interval_given_on_the_command_line(tmp_path: Path) -> None:
    """The body shop's handling cells give no inspection interval: `twin compare --policies ...,inspection` said
    "give --every / --threshold / --wear-limit", and none of those fills it in (only the file could). Now
    --inspect-every does, and the message names exactly the options that fill in what is missing."""
    base = ["compare", "scenarios/body_shop.yaml", "--policies", "run-to-failure,inspection", "--replications", "2",
            "--duration", "1 d", "--warmup", "0", "--out", str(tmp_path / "report")]
    assert_mistakes(base, [([], "machine type 'handling_cell' cannot use it (policy 'inspection' needs "
                                "'inspect_every'"),
                           ([], "(or give --wear-limit and --inspect-every for the comparison: they fill in where the "
                                "file gives none)"),
                           (["--inspect-every", "8"], "--inspect-every 8: give its unit")])
    (r,) = run_all(twin_cmd(*base, "--inspect-every", "8 h", "--wear-limit", "0.7"))
    kpis = pd.read_csv(tmp_path / "report" / "kpis.csv")
    actions = kpis[(kpis.policy == "inspection") & (kpis.kpi == "maintenance actions")].value
    assert len(actions) == 2 and (actions > 0).all(), r.stdout  # inspections found wear and ordered maintenance
    # `twin tune` sweeps the wear limit with the interval given the same way
    tune = ["tune", "scenarios/body_shop.yaml", "--policy", "inspection", "--values", "0.5,0.8", "--replications",
            "2", "--duration", "1 d", "--warmup", "0", "--out", str(tmp_path / "tuned")]
    assert_mistakes(tune, [([], "(or give --inspect-every: it fills in where the file gives none)"),
                           (["--values", "0.5,1.5", "--inspect-every", "8 h"], "--values: 1.5 is not between 0 and 1"),
                           (["--policy", "preventive", "--values", "20 h,40 h", "--inspect-every", "8 h"],
                            "--inspect-every is for inspection, not preventive")])
    run_all(twin_cmd(*tune, "--inspect-every", "8 h"))
    swept = pd.read_csv(tmp_path / "tuned" / "kpis.csv")
    assert (swept[swept.kpi == "maintenance actions"].groupby("policy").value.sum() > 0).all()


def test_costs_must_name_real_fault_modes(tmp_path: Path) -> None:
    text = (ROOT / "scenarios" / "bottling.yaml").read_text().replace("jam: 15", "jamm: 15")
    (tmp_path / "b.yaml").write_text(text)
    with pytest.raises(ScenarioError,
                       match=r"b.yaml:1[0-9] costs.repair_by_mode.jamm: no machine type has fault mode 'jamm'"):
        load_scenario(tmp_path / "b.yaml")


@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize(("defer", "latest", "served"), [("none", 1e9, (0.0, 1.0)), ("buffer", 1e9, (12.0, 20.0)),
                                                          ("buffer", 5.0, (5.0, 6.5))])
def test_a_predictive_order_can_wait_until_the_buffer_covers_the_stop(defer: str, latest: float,
                                                                      served: tuple[float, float], graph: bool) -> None:
    """Station a (1 s a part) feeds b (2 s) through a buffer of 10; a's service takes 60 s = 30 parts of b, so
    deferring waits for 8 parts (80 % of the buffer), about 16 s, unless the forecast says it cannot wait. The same
    written as a graph (`next:`): deferring once never waited there."""
    from predictors.policy import Orders, Predictive
    from tests.helpers import const, scenario

    a = {"name": "a", "cycle_time": const(1.0), **({"next": "b"} if graph else {})}
    sc = scenario([a, {"name": "b", "cycle_time": const(2.0), "buffer": 10}],
                  {"m": {"maintenance": {"duration": const(60.0)}}}, duration=200.0)
    assert sc.is_graph == graph
    orders = Orders()
    orders.place("a", "test", 0.0, latest)
    line = Line(sc, 0, policy=lambda m: Predictive(orders, defer) if m.name == "a" else Predictive(Orders()))
    line.run(sc.duration)
    order = [e for e in line.events if e.kind == "maintenance_order" and e.machine == "a"]
    assert len(order) == 1 and served[0] <= order[0].t <= served[1], order


def test_sensor_based_monitoring_sits_between_run_to_failure_and_perfect_monitoring() -> None:
    """The issue's bar: condition-based maintenance on a measured (noisy, partial) sensor is worth something, and
    less than perfect knowledge of the wear, which it once equalled because it read the true wear."""
    sc = load_scenario("scenarios/body_shop_merge.yaml", {"duration": "4 d", "replications": 3})
    cmp = compare(sc, ["run-to-failure", "condition-based", "perfect-monitoring"], PolicyParams(), jobs=2)
    cost = cmp.summary().query("kpi == 'total cost'").set_index("policy")["mean"]
    assert cost["run-to-failure"] > cost["condition-based"] > cost["perfect-monitoring"]
    wear = cmp.summary().query("kpi == 'wear at maintenance'").set_index("policy")["mean"]
    assert wear["condition-based"] < wear["perfect-monitoring"]  # noise makes it act early: life thrown away


@pytest.mark.parametrize(("take", "served"), [(1, (17.0, 24.0)), (2, (56.0, 66.0))])
def test_a_deferred_order_in_front_of_an_assembly_counts_the_parts_it_takes(take: int,
                                                                             served: tuple[float, float]) -> None:
    """Feeders a and b (1 s a part) feed an assembly c (4 s) taking one a and `take` b's, through buffers of 100.
    b's service takes 60 s = 15 cycles of c: the order waits for 15 × `take` b's in the buffer. c draws
    `take` / 4 of them a second, so they pile up at 1 - take/4 a second: about 20 s for one (15 ÷ 0.75), about
    60 s for two (30 ÷ 0.5)."""
    from predictors.policy import Orders, Predictive
    from tests.helpers import const, scenario

    sc = scenario([{"name": "a", "cycle_time": const(1.0), "next": "c"},
                   {"name": "b", "cycle_time": const(1.0), "next": "c"},
                   {"name": "c", "cycle_time": const(4.0), "buffer": 100, "assemble": {"a": 1, "b": take}}],
                  {"m": {"maintenance": {"duration": const(60.0)}}}, duration=300.0)
    orders = Orders()
    orders.place("b", "test", 0.0, 1e9)
    line = Line(sc, 0, policy=lambda m: Predictive(orders, "buffer") if m.name == "b" else Predictive(Orders()))
    line.run(sc.duration)
    order = [e for e in line.events if e.kind == "maintenance_order" and e.machine == "b"]
    assert len(order) == 1 and served[0] <= order[0].t <= served[1], order


def test_a_replication_that_makes_nothing_good_has_a_cost_and_tune_says_when_its_objective_is_undefined() -> None:
    """Maintaining at half the wear limit stops bottling's constraint for the whole of a 10-minute run: line OEE 0. The
    lost production cost was 1/OEE - 1 times the good output, NaN there, so the total cost was NaN and `twin tune`
    ended in a pandas traceback ('Encountered all NA values'). Now the loss is all the constraint could have made in
    its planned time; an objective that is undefined everywhere is named."""
    sc = load_scenario("scenarios/bottling.yaml", {"duration": "10 min", "warmup": 0, "replications": 2})
    result = tune(sc, "perfect-monitoring", "wear_limit", [0.5, 0.6], PolicyParams(), jobs=1)
    k = result.comparison.kpis.set_index(["policy", "replication", "kpi"])["value"]
    assert (k.xs("oee", level="kpi") == 0).any()  # the case this test is about
    lost, total = k.xs("lost production cost", level="kpi"), k.xs("total cost", level="kpi")
    assert np.isfinite(total).all() and (lost[k.xs("oee", level="kpi") == 0] > 0).all()
    with pytest.raises(ValueError, match="undefined in every replication"):
        tune(sc.model_copy(update={"duration": 60.0}), "preventive", "every", [3.6e6, 7.2e6], PolicyParams(),
             objective="wear at maintenance", jobs=1)


def test_policies_without_forecasts_never_load_torch() -> None:
    """Only the predictive policy forecasts: comparing the others loaded torch in every task (1.7 s a process)."""
    probe = ("import sys\nfrom tests.test_compare import bottling\nfrom twin.app.compare import PolicyParams, compare\n"
             "compare(bottling(600.0, replications=1), ['run-to-failure', 'oracle'], PolicyParams(), jobs=1)\n"
             "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "False"


def _three_stations(**top: object) -> Any:
    """cut (50 s) -> 5 places -> weld (100 s, the constraint) -> pack (40 s), constant times: exact figures."""
    return helper_scenario([{"name": "cut", "cycle_time": const(50)},
                            {"name": "weld", "cycle_time": const(100), "buffer": 5},
                            {"name": "pack", "cycle_time": const(40)}], duration="1 d", warmup="1 h",
                           replications=2, **top)


def test_alternatives_of_the_line_are_compared_over_the_long_run() -> None:
    """A second weld machine doubles the constraint and the line runs at cut's 72 an hour; a bigger buffer in front
    of weld only holds more parts (WIP 7.4 -> 12.4: cut blocked with one, the buffer full, weld's one, pack's 0.4),
    and the lead time follows by Little's law; the table's rows are the report's."""
    from twin.app.alternatives import alternatives
    from twin.app.compare import compare_designs

    sc = _three_stations()
    cmp = compare_designs(alternatives(sc, [], [], ["weld=10"], [], ["weld=2"]), jobs=1)
    s = cmp.summary().set_index(["policy", "kpi"])["mean"]
    assert s["as is", "throughput [parts/h]"] == pytest.approx(36, rel=1e-3)
    assert s["weld: 2 machines", "throughput [parts/h]"] == pytest.approx(72, rel=1e-3)
    assert s["buffer weld = 10", "throughput [parts/h]"] == pytest.approx(36, rel=1e-3)
    assert s["as is", "wip [parts]"] == pytest.approx(7.4, abs=0.01)
    assert s["buffer weld = 10", "wip [parts]"] == pytest.approx(12.4, abs=0.01)
    assert s["buffer weld = 10", "lead time [min]"] == pytest.approx(12.4 / 36 * 60, rel=1e-3)
    d = cmp.differences().set_index(["policy", "kpi"])
    assert d.loc[("weld: 2 machines", "throughput [parts/h]"), "diff"] == pytest.approx(36, rel=1e-3)


def test_alternatives_combined_show_their_interplay(tmp_path: Path) -> None:
    """A third weld machine alone lets cut (72 an hour) limit the line; a faster cut alone leaves weld (36) the limit;
    together pack's 90 an hour is: the combination is no sum of its parts. Combining two settings of one thing, or
    a single alternative, is refused, for compare and whatif alike."""
    from twin.app.alternatives import alternatives
    from twin.app.compare import compare_designs

    sc = _three_stations()
    options = alternatives(sc, [], [], [], [], ["weld=3"], ["cut=25 s"], combined=True)
    assert [label for label, _ in options] == ["as is", "weld: 3 machines", "cut: cycle 25 s",
                                               "weld: 3 machines + cut: cycle 25 s"]
    s = compare_designs(options, jobs=1).summary().set_index(["policy", "kpi"])["mean"]
    assert [s[label, "throughput [parts/h]"] for label, _ in options] == pytest.approx([36, 72, 36, 90], rel=1e-3)
    f = tmp_path / "three.yaml"
    f.write_text(yaml.safe_dump({"line": {"site": "s", "area": "a", "name": "three"}, "seed": 7, "duration": "1 d",
                                 "replications": 2, "machine_types": {"m": {}},
                                 "stations": [{"name": "cut", "machine_type": "m", "cycle_time": "50 s"},
                                              {"name": "weld", "machine_type": "m", "cycle_time": "100 s",
                                               "buffer": 5}]}))
    for command in (["compare", str(f)], ["whatif", str(f), "--from", "duckdb:///nowhere.duckdb"]):
        assert_mistakes(command, [
            (["--buffer", "weld=8", "--combined"], "--combined runs the alternatives given together as one more: give "
                                                   "two or more"),
            (["--buffer", "weld=8", "--buffer", "weld=9", "--combined"], "--combined: --buffer 'weld=8' and 'weld=9' "
                                                                         "set the same thing")])


def test_a_machine_added_keeps_the_others_random_numbers_on_any_worker(tmp_path: Path) -> None:
    """An alternative with a machine added draws, for the machines the line had, what they drew as is (common random
    numbers), on workers too: the order the machines draw in travels with the task. The CLI's local cluster gives
    what one process gives."""
    from twin.app.alternatives import alternatives
    from twin.app.compare import compare_designs, design_task
    from twin.app.runner import simulate

    sc = helper_scenario([{"name": "cut", "cycle_time": exp(50)}, {"name": "weld", "cycle_time": exp(100), "buffer": 5},
                          {"name": "pack", "cycle_time": exp(40)}], duration="1 d", warmup="1 h", replications=2)
    _, more = alternatives(sc, [], [], [], [], ["cut=2"])[1]
    _, _, k = design_task(more.model_dump_json(by_alias=True), more._slots, "cut: 2 machines", 1)
    assert pd.Series(k).equals(pd.Series(policy_kpis(simulate(more, 1, sensors=False).line)))  # NaN as NaN
    shuffled = design_task(more.model_dump_json(by_alias=True), None, "cut: 2 machines", 1)[2]
    assert shuffled["wip [parts]"] != k["wip [parts]"]  # without the order, cut-2 drew what weld drew as is, ...
    one = compare_designs(alternatives(sc, [], [], ["weld=10"], [], ["cut=2"]), jobs=1).kpis
    spec = tmp_path / "line.json"
    spec.write_text(sc.model_dump_json(by_alias=True))
    r = subprocess.run(twin_cmd("compare", spec, "--buffer", "weld=10", "--machines", "cut=2", "--out",
                                tmp_path / "cmp"), capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "alternatives over 2 replications" in r.stdout and "on 2 processes" in r.stdout
    # neither alternative touches the constraint (weld, one machine of 100 s): costs compare
    assert "lead time [min]" in r.stdout and "cut: 2 machines" in r.stdout and "│ total cost" in r.stdout
    assert "note: every alternative keeps the line's constraint station at its design rate" in " ".join(
        r.stdout.split())
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert report.startswith("# Alternatives of line") and "Differences to as is" in report
    assert "so OEE, lost production and total cost compare" in report and "| total cost" in report
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cmp" / "kpis.csv"), one, check_dtype=False)


def test_design_and_policy_options_are_not_mixed() -> None:
    base = ["compare", "scenarios/bottling.yaml", "--replications", "2", "--duration", "1 h", "--warmup", "0",
            "--buffer", "filler=10"]
    assert_mistakes(base, [(["--policies", "run-to-failure,oracle"], "--policies is for comparing maintenance "
                                                                     "policies, and alternatives of the line"),
                           (["--every", "5 h"], "--every is for comparing maintenance policies"),
                           (["--buffer", "nowhere=3"], "--buffer 'nowhere=3': write STATION=PARTS"),
                           (["--buffer", "filler=10"], "--buffer 'filler=10' is given twice")])


def test_a_faster_conveyor_as_an_alternative(tmp_path: Path) -> None:
    """A conveyor of 2 places and 5 min limits the line to 24 parts an hour; at 2.5 min it carries 48, and the lead
    time falls with it (1 + 2.5 + 1 min for the first of each pair). A station no conveyor leads into, the time it
    has, or a conveyor with no places, is refused, for compare and whatif alike."""
    import yaml

    from twin.app.alternatives import alternatives
    from twin.app.compare import compare_designs

    doc = {"line": {"site": "s", "area": "a", "name": "conveyor"}, "seed": 5, "duration": "1 d", "warmup": "1 h",
           "replications": 2, "machine_types": {"m": {}},
           "stations": [{"name": "A", "machine_type": "m", "cycle_time": "60 s"},
                        {"name": "B", "machine_type": "m", "cycle_time": "60 s", "transfer": "5 min", "buffer": 2}]}
    f = tmp_path / "conveyor.yaml"
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    sc = load_scenario(f)
    s = compare_designs(alternatives(sc, [], [], [], [], [], [], [], ["B=150 s"]), jobs=1).summary()
    s = s.set_index(["policy", "kpi"])["mean"]
    assert s["as is", "throughput [parts/h]"] == pytest.approx(24, rel=1e-3)
    assert s["B: transfer 150 s", "throughput [parts/h]"] == pytest.approx(48, rel=1e-3)
    assert s["B: transfer 150 s", "lead time [min]"] < s["as is", "lead time [min]"]
    for command in (["compare", str(f)], ["whatif", str(f), "--from", "duckdb:///nowhere.duckdb"]):
        assert_mistakes(command, [
            (["--transfer", "A=1 min"], "--transfer 'A=1 min': no conveyor leads into station A; the stations fed "
                                        "by conveyors are B"),
            (["--transfer", "B=5 min"], "the conveyor into B takes 300 s already; give another time"),
            (["--transfer", "B=5"], "--transfer 5: give its unit"),
            # a conveyor with no places: refused in a file, and was a pydantic traceback as an alternative
            (["--buffer", "B=0"], "the alternative 'buffer B = 0' breaks a rule of scenarios: stations[1].buffer: "
                                  "station B has a transfer"),
            (["--buffer", "B=-1"], "--buffer 'B=-1': write STATION=PARTS, PARTS a whole number, 0 or more")])


def test_services_in_planned_stops_as_an_alternative(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Whether to service the presses in the nights instead of when due, the plant's usual question, could not be
    compared: `--service-off-shift` is the alternative (the line's own services waiting for its planned stops). The
    1-hour services then cost no planned time; a line without a calendar or without services is refused with why."""
    import typer

    from twin.app.alternatives import alternatives
    from twin.app.compare import compare_designs

    press = {"fault_modes": [{"name": "die", "kind": "sudden", "ttf": exp(400_000), "repair": const(600)}],
             "maintenance": {"policy": "preventive", "every": "7 h", "duration": const(3600)}}
    sc = helper_scenario([{"name": "press", "cycle_time": const(50)}], machine_types={"m": press}, duration="7 d",
                         replications=2, calendar={"shifts": ["06:00-22:00"]})
    options = alternatives(sc, [], [], [], [], [], [], [], [], True)
    assert [label for label, _ in options] == ["as is", "services off shift"]
    s = compare_designs(options, jobs=1).summary().set_index(["policy", "kpi"])["mean"]
    assert s["as is", "oee availability"] < 0.95
    assert s["services off shift", "oee availability"] == pytest.approx(1.0, abs=0.01)  # failures only
    assert s["services off shift", "maintenance actions"] >= 6
    for wrong, message in [(sc.model_copy(update={"calendar": None}), "the scenario has no shift calendar"),
                           (with_policy(sc, "run-to-failure"), "every machine type runs to failure"),
                           (options[1][1], "wait for planned stops already (m)")]:
        with pytest.raises(typer.Exit):
            alternatives(wrong, [], [], [], [], [], [], [], [], True)
        assert message in " ".join(capsys.readouterr().err.split())


def test_buffer_places_go_where_they_pay() -> None:
    """Where to put more buffer places (the classic question of line design) took a comparison per guess. Greedy
    marginal allocation with common random numbers: a cutter that stops often (MTBF 1 h, repairs of 10 min) feeds a
    welder that never does, which feeds a packer that never does: every place goes in front of the welder, which then
    works through more of the cutter's stops; a buffer that cannot gain is never chosen, and places that cannot pay
    are left, said so."""
    from twin.app.compare import allocate_buffers

    cutter = {"fault_modes": [{"name": "jam", "kind": "sudden", "ttf": exp(3600), "repair": exp(600)}]}
    sc = helper_scenario([{"name": "cut", "cycle_time": exp(50), "machine_type": "cutter"},
                          {"name": "weld", "cycle_time": exp(55), "buffer": 1},
                          {"name": "pack", "cycle_time": const(20), "buffer": 1}],
                         machine_types={"m": {}, "cutter": cutter}, duration="3 d", replications=4, seed=3)
    result = allocate_buffers(sc, 6, step=2, jobs=1)
    assert list(result.rounds.station) == ["weld", "weld", "weld"] and result.given == 6
    assert [s.buffer for s in result.scenario.stations] == [None, 7, 1]
    assert (result.rounds.gain_low > 0).all() and result.rounds["mean"].is_monotonic_increasing
    assert result.simulations == 3 * 3 * 4
    wip = allocate_buffers(sc, 2, objective="wip [parts]", jobs=1)  # lower is better: each place given lowered it
    assert len(wip.rounds) and (wip.rounds.gain_high < 0).all()
    assert allocate_buffers(sc, 6, step=2, jobs=2).rounds.equals(result.rounds)  # the same on 2 processes
    packer = allocate_buffers(sc, 2, stations=["pack"], jobs=1)  # the packer waits for the welder anyway
    assert packer.given == 0 and "no buffer's throughput [parts/h] gained significantly" in packer.stopped
    assert [s.buffer for s in packer.scenario.stations] == [None, 1, 1]


def test_allocate_says_what_is_wrong_with_its_options(tmp_path: Path) -> None:
    """`twin allocate`'s mistakes, each named before any simulation: a buffer not of limited capacity, an objective
    no comparison has, one replication (no CI for a gain), a saturated source's station, a report to overwrite."""
    (tmp_path / "report.md").write_text("an earlier report")
    serial = ROOT / "bench" / "scenarios" / "serial5.yaml"
    assert_mistakes(["allocate", str(serial), "--places", "4", "--replications", "3"], [
        (["--buffers", "s1"], "--buffers 's1': not a station with a buffer of limited capacity (those: s2, s3, s4, "
                              "s5)"),
        (["--objective", "speed"], "--objective 'speed': choose one of throughput [parts/h]"),
        (["--replications", "1"], "--replications: at least 2"),
        (["--out", str(tmp_path)], "holds an earlier report; choose another folder")])
    assert_mistakes(["allocate", str(ROOT / "scenarios" / "bottling.yaml"), "--places", "4", "--replications", "3"],
                    [(["--buffers", "depalletizer"], "--buffers 'depalletizer': not a station with a buffer of "
                                                     "limited capacity")])  # fed by the saturated source: none


def test_energy_per_good_part_and_its_cost_are_compared() -> None:
    """A second A (60 s) feeding B (30 s) doubles the parts and lowers the energy per part, B no longer idle half the
    time (808 kWh for 2,399 parts, 1,392 for 4,799); the energy's cost counts in the total cost."""
    from twin.app.alternatives import alternatives
    from twin.app.compare import compare_designs
    from twin.app.runner import simulate

    sc = helper_scenario([{"name": "A", "cycle_time": const(60)}, {"name": "B", "cycle_time": const(30)}],
                         machine_types={"m": {"power": {"working": 10, "idle": 4, "stopped": 2, "off_shift": 0.5}}},
                         duration="7 d", replications=2, costs={"energy": 0.2},
                         calendar={"shifts": ["06:00-14:00"], "days": ["mon", "tue", "wed", "thu", "fri"]})
    s = compare_designs(alternatives(sc, [], [], [], [], ["A=2"]), jobs=1).summary().set_index(["policy", "kpi"])
    assert s.loc[("as is", "energy per good part [kWh]"), "mean"] == pytest.approx(808 / 2399, rel=1e-3)
    assert s.loc[("A: 2 machines", "energy per good part [kWh]"), "mean"] == pytest.approx(1392 / 4799, rel=1e-3)
    assert s.loc[("as is", "energy cost"), "mean"] == pytest.approx(0.2 * 808, rel=1e-3)
    k = policy_kpis(simulate(sc, 0, sensors=False).line)
    assert k["total cost"] == k["energy cost"] + k["maintenance cost"] + k["lost production cost"] > 0
