"""The dashboard: every page in AppTest against a store filled by a short real run, and the whole app in a
real browser (Debian's chromium driven by Playwright, never a downloaded browser)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pandas as pd
import pytest
import yaml
from streamlit.testing.v1 import AppTest

from sensors.bus.payloads import alert_payload
from sensors.store import open_store
from tests.conftest import ROOT, Mosquitto, run_all, twin_cmd, wait_for_line

pytestmark = pytest.mark.slow  # end to end: simulated runs shown in AppTest and in chromium

PAGES = ROOT / "dashboard" / "views"
LINE = "plant-hamburg/hall-2/bottling-1"


@pytest.fixture(scope="session")
def dash_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder with one finished bottling run (2 × 2 h, readings and states in its DuckDB store)."""
    root = tmp_path_factory.mktemp("dash") / "runs"
    run_all(twin_cmd("run", "scenarios/bottling.yaml", "--no-stream", "--duration", "2 h", "--warmup", "10 min",
                     "--replications", 2, "--out", root / "bottling" / "r1"))
    return root


@pytest.fixture
def env(dash_runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LINETWIN_RUNS", str(dash_runs))
    monkeypatch.setenv("LINETWIN_REPORTS", str(tmp_path / "reports"))
    monkeypatch.delenv("LINETWIN_BROKER", raising=False)
    return dash_runs


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def own_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario: Path | str, name: str,
            *args: object) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`twin run SCENARIO --no-stream ARGS` into a runs folder of its own, which the pages then show (not the other
    tests' runs, no broker): the run's folder and what `twin run` said (its tables at 250 columns)."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("LINETWIN_HOME", str(tmp_path / "home"))  # its run kept out of the other tests' runs index
    r = subprocess.run(twin_cmd("run", scenario, "--no-stream", *args, "--out", runs / name / "r1"), cwd=ROOT,
                       capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "250"})
    assert r.returncode == 0, r.stderr[-3000:]
    monkeypatch.setenv("LINETWIN_RUNS", str(runs))
    monkeypatch.setenv("LINETWIN_REPORTS", str(tmp_path / "reports"))
    monkeypatch.delenv("LINETWIN_BROKER", raising=False)
    return runs / name / "r1", r


def run_dir(root: Path) -> Path:
    return root / "bottling" / "r1"


def test_overview_tiles_match_the_run_and_the_line_is_drawn(env: Path) -> None:
    at = page("overview")
    tiles = {m.label: m.value for m in at.metric}
    kpis = pd.read_parquet(run_dir(env) / "kpis.parquet")
    line = kpis[(kpis.scope == "line") & (kpis.replication == 0)].set_index("kpi")["value"]
    assert tiles["throughput [parts/h]"] == f"{line['throughput [parts/h]']:,.0f}"
    assert tiles["OEE [%]"] == f"{100 * line['oee']:.1f}" and tiles["active alarms"] == "0"
    for factor in ("OEE [%]", "availability [%]", "performance [%]", "quality [%]"):
        assert 0 <= float(tiles[factor]) <= 100
    target = {m.label: m for m in at.metric}  # bottling's shift targets: 2,800 parts/h, OEE 65 %, as tiles
    assert target["shift target [parts/h]"].value == "2,800"
    assert target["shift target [parts/h]"].delta.startswith(
        f"{line['throughput [parts/h]'] - 2800:+,.0f} ({line['throughput [parts/h]'] / 2800:.0%} of it)")
    assert target["shift target OEE [%]"].value == "65.0"
    buffers = next(d.value for d in at.dataframe if "mean level" in d.value.columns)  # the replication's buffers
    level = kpis[(kpis.scope == "buffer") & (kpis.replication == 0) & (kpis.kpi == "buffer level [parts]")]
    assert buffers["mean level"].to_dict() == level.set_index("entity").value.round(2).to_dict()
    assert buffers["capacity"].notna().all() and buffers["full [%]"].between(0, 100).all()
    lost = next(d.value for d in at.dataframe if "share of planned time [%]" in d.value.columns)  # the OEE's losses
    assert lost["share of planned time [%]"].sum() == pytest.approx(100, abs=0.6)
    assert lost.loc["OEE (fully productive)", "share of planned time [%]"] == round(100 * line["oee"], 1)
    crews = next(d.value for d in at.dataframe if "utilisation [%]" in d.value.columns)  # bottling's mechanics
    busy = kpis[(kpis.scope == "crew") & (kpis.replication == 0)].set_index("entity").value
    assert crews.loc["mechanics", "utilisation [%]"] == round(100 * busy["mechanics"], 1) > 0
    assert crews.loc["mechanics", "there"] == "around the clock" and crews.loc["mechanics", "technicians"] == 2
    dot = at.get("graphviz_chart")[0].proto.spec
    for machine in ("depalletizer", "filler-a", "filler-b", "case-packer"):
        assert f'"{machine}"' in dot and f'URL="machine?machine={machine}"' in dot
    assert "states from the store" in at.caption[1].value
    store = open_store(json.loads((run_dir(env) / "run.json").read_text())["store"], read_only=True)
    try:
        levels = store.levels()
    finally:
        store.close()
    rinser = levels[(levels.replication == 0) & (levels.station == "rinser")].sort_values("ts").level.iloc[-1]
    assert f"{rinser}/120" in dot, dot  # each buffer's last level as the run left it, not only its capacity
    assert any(s.value.startswith("**Bottleneck: ") for s in at.info)
    assert len(at.get("vega_lite_chart")) >= 4  # state timeline, Pareto, output and OEE per hour
    shifts = next(d.value for d in at.dataframe if "shift" in d.value.columns)
    assert list(shifts.columns) == ["shift", "good parts", "planned [h]", "throughput [parts/h]", "OEE [%]"]
    assert shifts["OEE [%]"].between(0, 100).all()


def test_output_and_oee_per_hour_add_up_to_the_run(env: Path) -> None:
    """The hourly OEE (good parts × the constraint's ideal time ÷ planned time) over the whole run after warm-up is
    the run's OEE when every part that left was also made in the window (within one part per hour)."""
    from dashboard import data
    from twin.scenario import Scenario

    meta = json.loads((run_dir(env) / "run.json").read_text())
    sc = Scenario.model_validate(meta["scenario"])
    parts = pd.read_parquet(run_dir(env) / "truth" / "parts.parquet")
    kpis = pd.read_parquet(run_dir(env) / "kpis.parquet")
    origin = pd.Timestamp(sc.start)
    window = data.Window(origin + pd.Timedelta(seconds=sc.warmup), origin + pd.Timedelta(seconds=sc.duration),
                         sc.line.timezone, origin)
    hourly = data.per_period(sc, parts[parts.replication == 0], kpis[kpis.replication == 0], window)
    line = kpis[(kpis.scope == "line") & (kpis.replication == 0)].set_index("kpi")["value"]
    hours = (sc.duration - sc.warmup) / 3600
    assert hourly.good.sum() / hours == pytest.approx(line["throughput [parts/h]"], rel=0.01)
    fully = (hourly.oee * hourly.planned_h).sum() / hourly.planned_h.sum()
    assert fully == pytest.approx(line["oee"], abs=0.02)


def test_machine_page_charts_sensors_truth_and_events(env: Path) -> None:
    at = page("machine")
    assert len(at.get("vega_lite_chart")) >= 4  # sensors, the true wear, its state timeline and downtime Pareto
    assert any("ground truth" in s.value for s in at.subheader)
    machine = at.selectbox[0].value
    kpis = pd.read_parquet(run_dir(env) / "kpis.parquet")
    mine = kpis[(kpis.scope == "machine") & (kpis.entity == machine) & (kpis.replication == 0)].set_index("kpi").value
    tiles = {m.label: m.value for m in at.metric}  # the machine's own reliability, as the run's KPIs give it
    assert tiles["availability [%]"] == f"{100 * mine['availability']:.1f}"
    assert tiles["failures"] == f"{mine['failures']:.0f}"


def test_machine_page_of_a_machine_without_sensors_shows_its_states_and_stops(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A line modelled without sensors (MTBF and MTTR only): the machine page said 'no readings yet' and showed
    nothing else; it now says why and shows the machine's states, stops and reliability figures, and its minor
    stops (cleared at the machine, shown as working) where its type has them."""
    spec = yaml.safe_load(Path("bench/scenarios/serial5.yaml").read_text())
    for mtype in spec["machine_types"].values():
        mtype["minor_stops"] = {"every": {"dist": "exponential", "mean": "5 min"}, "duration": "20 s"}
    (tmp_path / "serial5.yaml").write_text(yaml.safe_dump(spec))
    _, r = own_run(tmp_path, monkeypatch, tmp_path / "serial5.yaml", "serial5", "--duration", "8 h", "--warmup", "0",
                   "--replications", 1)
    assert "minor stops" in r.stdout and "% of work" in r.stdout  # `twin run`'s station table says them too
    overview = page("overview")
    assert overview.metric and all(not m.delta for m in overview.metric), "one replication: no change to show"
    at = page("machine")
    assert any("has no sensors in the scenario" in i.value for i in at.info)
    assert {"availability [%]", "failures", "MTBF [h]", "MTTR [min]"} <= {m.label for m in at.metric}
    tiles = {m.label: m.value for m in at.metric}
    assert int(tiles["minor stops"].replace(",", "")) > 10 and 0 < float(tiles["of its working time [%]"]) < 20
    assert len(at.get("vega_lite_chart")) == 2  # the state timeline and the downtime Pareto


def test_a_line_with_rework_shows_its_first_pass_yield(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The body shop's vision inspection sends bodies to a rework bay: the overview tiles its first pass yield and
    rework ratio beside the OEE (whose quality counts them), and its losses table names rework."""
    folder, _ = own_run(tmp_path, monkeypatch, "scenarios/body_shop_merge.yaml", "merge", "--duration", "3 h",
                        "--warmup", "0", "--replications", 1)
    at = page("overview")
    tiles = {m.label: m.value for m in at.metric}
    line = pd.read_parquet(folder / "kpis.parquet").query("scope == 'line'").set_index("kpi").value
    assert tiles["first pass yield [%]"] == f"{100 * line['first pass yield']:.1f}"
    assert tiles["rework ratio [%]"] == f"{100 * line['rework ratio']:.1f}" and line["rework ratio"] > 0
    lost = next(d.value for d in at.dataframe if "share of planned time [%]" in d.value.columns)
    assert "rework" in lost.index


def test_a_line_released_to_its_orders_shows_when_each_was_made(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A packaging line with an order book (`orders:`): `twin run` prints each order's share of runs made and when,
    and the overview shows whether each was made in the replication on screen, and when (its KPIs)."""
    text = (ROOT / "scenarios" / "packaging.yaml").read_text()
    (tmp_path / "booked.yaml").write_text(text + "orders: [{product: juice-10, parts: 800, order: A-1}, "
                                                 "{product: still-05, parts: 900000}]\n")
    folder, r = own_run(tmp_path, monkeypatch, tmp_path / "booked.yaml", "booked", "--duration", "6 h", "--warmup",
                        "0", "--replications", 1)
    assert "orders, released in turn before the plan" in r.stdout and "1: A-1 juice-10 × 800" in r.stdout
    at = page("overview")
    shown = next(d.value for d in at.dataframe if "done at" in d.value.columns)
    done = pd.read_parquet(folder / "kpis.parquet").query("scope == 'order' and kpi == 'done [h]'").set_index(
        "entity").value
    when = pd.Timestamp("2026-01-05 06:00") + pd.Timedelta(hours=float(done["1: A-1 juice-10 × 800"]))
    assert shown.loc["1: A-1 juice-10 × 800", "done at"] == f"{when:%a %Y-%m-%d %H:%M}"
    assert shown["made"].tolist() == ["yes", "not yet"] and shown["done at"].iloc[1] == ""
    assert any("1 of 2 made" in e.label for e in at.expander)
    # the line drawn with what each machine is set up for: still water after the juice order, as stored
    dot = at.get("graphviz_chart")[0].proto.spec
    assert "filler\\n" in dot and "\\nstill-05" in dot, dot
    # the filler's page: what it is set up for, and its changeover from juice to still water against the engineered
    machine = page("machine")
    machine.selectbox(key="machine").set_value("filler").run()
    assert {m.label: m.value for m in machine.metric}["set up for"] == "still-05"
    pairs = next(d.value for d in machine.dataframe if "changeover" in d.value.columns).set_index("changeover")
    assert pairs.loc["juice-10 → still-05", "changeovers"] == 1 and pairs.loc["juice-10 → still-05",
                                                                              "engineered [min]"] == 86.7
    assert 60 <= pairs.loc["juice-10 → still-05", "mean [min]"] <= 120  # a draw of its 60-80-120 min triangle


def test_a_line_with_spare_parts_shows_their_stock_and_waits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spare parts (a stock of die sets the presses' die changes take): `twin run` prints their table, and the
    overview shows the replication's repairs, how many waited for a part and the stock held, as the KPIs say."""
    folder, r = own_run(tmp_path, monkeypatch, "tests/scenarios/press_spares.yaml", "presses", "--replications", 1)
    assert "spare parts" in r.stdout and "die-set" in r.stdout
    at = page("overview")
    shown = next(d.value for d in at.dataframe if "mean wait [h]" in d.value.columns)
    kpis = pd.read_parquet(folder / "kpis.parquet").query("scope == 'spare'").set_index("kpi").value
    assert shown.loc["die-set", "repairs"] == kpis["repairs"] > 0
    assert shown.loc["die-set", "waited [%]"] == round(100 * kpis["stock-out share"], 1) > 0
    # a press's page: its MTTR and, of it, the wait for the die set (the run's KPI), as a tile of its own
    machine = page("machine")
    tiles = {m.label: m.value for m in machine.metric}
    mine = pd.read_parquet(folder / "kpis.parquet").query(
        f"scope == 'machine' and entity == '{machine.selectbox[0].value}'").set_index("kpi").value
    assert tiles["of it waiting [min]"] == f"{mine['wait before repair [min]']:.1f}" and \
        float(tiles["of it waiting [min]"]) > 0


def test_history_rows_are_the_stores(env: Path) -> None:
    at = page("history")
    meta = json.loads((run_dir(env) / "run.json").read_text())
    store = open_store(meta["store"], read_only=True)
    start = pd.Timestamp(meta["scenario"]["start"])
    expected = store.query(start, start + pd.Timedelta(hours=2), machines=["capper"],
                           sensors=["bearing_temp", "motor_current", "power"], run=meta["run_id"], every="60s")
    assert at.caption[0].value.startswith(f"{len(expected):,} rows · 2026-01-05 06:00 – 2026-01-05 08:00 "
                                          "(Europe/Berlin")
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    assert specs and all(s["encoding"]["y"]["title"].endswith("]") for s in specs)  # one chart per unit, named
    assert all(s["encoding"]["color"]["field"] == "series" for s in specs)  # a series per replication, legend
    shown = at.dataframe[0].value
    assert set(shown.replication) == {0, 1} and "capper/motor_current rep 1" in set(shown.series)
    at.selectbox(key="resolution").set_value("raw").run()
    raw = store.query(start, start + pd.Timedelta(hours=2), machines=["capper"],
                      sensors=["bearing_temp", "motor_current", "power"], run=meta["run_id"])
    assert at.caption[0].value.startswith(f"{len(raw):,} rows")
    assert len(at.get("download_button")) == 2


def chart_rows(chart: Any) -> pd.DataFrame:
    """The rows a Vega-Lite chart of the page was given (Arrow, as Streamlit sends them to the browser)."""
    import pyarrow as pa

    return pa.ipc.open_stream(chart.proto.data.data).read_all().to_pandas()


def test_a_long_time_range_is_drawn_as_finely_as_a_chart_shows_and_no_more(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A month of body shop on the machine page sent 43,200 per-minute means a sensor (of every replication, the
    others dropped after reading) to the browser, which took 38 s to draw them; History's raw readings over it were
    tens of millions of rows, built into CSV on every rerun. Now a chart gets at most a day of minutes a series (two
    days here: 2-minute means, with each interval's range), of the replication shown only, and History refuses what
    it could not draw, saying what to pick instead."""
    from dashboard import data

    folder, _ = own_run(tmp_path, monkeypatch, "scenarios/cnc_cell.yaml", "cnc", "--duration", "2 d", "--warmup",
                        "0", "--replications", 2)
    meta = json.loads((folder / "run.json").read_text())
    start = pd.Timestamp(meta["scenario"]["start"])
    at = page("machine")
    at.number_input(key="rep").set_value(1).run()
    machine = at.selectbox(key="machine").value
    assert at.subheader[0].value == f"saw / {machine}: sensors, 2-minute means and their range (replication 1)"
    shown = chart_rows(at.get("vega_lite_chart")[0])
    assert shown.groupby("sensor").size().max() == 1440 == 2 * 86400 / 120
    store = open_store(meta["store"], read_only=True)
    try:
        for agg, col in (("mean", "value"), ("min", "low"), ("max", "high")):
            want = store.query(start, start + pd.Timedelta(days=2), machines=[machine], run=meta["run_id"],
                               every="120s", agg=agg)
            want = want[want.replication == 1]
            assert np.allclose(shown[col].to_numpy(), want.value.to_numpy())  # replication 1's, sensor by sensor
        assert (shown.low <= shown.value + 1e-9).all() and (shown.value <= shown.high + 1e-9).all()
        at = page("history")
        at.multiselect[0].set_value([machine]).run()
        assert len(at.multiselect[1].value) == 3  # the saw's first three sensors
        assert at.caption[0].value.endswith(" · auto: 2-minute intervals")
        assert at.caption[0].value.startswith(f"{3 * 2 * 1440:,} rows · ")  # 3 sensors, 2 replications, each 2 min
        at.selectbox(key="resolution").set_value("raw").run()
        raw = sum(len(store.query(start, start + pd.Timedelta(days=2), machines=[machine], sensors=[s],
                                  run=meta["run_id"])) for s in at.multiselect[1].value)
        store_series = store.series(meta["run_id"])
    finally:
        store.close()
    assert raw > data.DRAWN
    assert at.warning[0].value.startswith(f"Raw readings of 1 machine, 3 sensors and 2 replications over this time "
                                          f"range come to {raw:,} rows, more than this page draws (200,000)")
    assert "Pick a coarser resolution ('auto' takes 2-minute here)" in at.warning[0].value
    assert not at.get("vega_lite_chart") and not at.get("download_button")
    at.selectbox(key="resolution").set_value("10s").run()  # 3 sensors × 2 replications × 17,280 intervals
    assert not at.warning and at.caption[0].value.startswith("103,680 rows · ")
    at.multiselect[0].set_value([]).run()  # no machine: the store read every machine's every sensor
    assert at.info[0].value.startswith("Pick one or more machines and sensors") and not at.get("vega_lite_chart")
    at.multiselect[0].set_value(at.multiselect[0].options).run()  # every machine, then every sensor they have
    at.multiselect[1].set_value(at.multiselect[1].options).run()
    machines, sensors = len(at.multiselect[0].value), len(at.multiselect[1].value)
    pairs = len(store_series.drop_duplicates(["machine", "sensor"]))
    assert at.warning[0].value.startswith(f"Intervals of 10s of {machines} machines, {sensors} sensors and 2 "
                                          f"replications over this time range come to up to {pairs * 2 * 17280:,} "
                                          "rows"), at.warning[0].value  # counted before asking the store
    assert not at.get("vega_lite_chart")


def test_alarms_page_keeps_the_alarm_book_and_acknowledges(env: Path, mosquitto: Mosquitto,
                                                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LINETWIN_HOME", str(tmp_path / "home"))
    at = page("alarms")
    assert "Not connected: no alert source" in at.warning[0].value  # never "no alerts" when nobody could say
    assert at.info[0].value.startswith("The book kept so far holds no active alarms of this line; with no alert "
                                       "source it cannot tell")  # what the book holds: the page ended without a word
    run_id = json.loads((run_dir(env) / "run.json").read_text())["run_id"]
    alert = {"run": run_id, "replication": 0, "line": LINE, "station": "filler", "machine": "filler-a",
             "state": "raised", "severity": "critical", "fault_mode": "valve_clogging", "probability": 0.93,
             "rul": {"estimate_s": 2400.0, "low_s": 1200.0, "high_s": 3600.0},
             "model": {"kind": "lstm", "version": "x"}, "evidence": {"from": 1, "to": 2, "rows": 60},
             "since": 1767596400000, "ts": 1767600000000}
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    pub.publish(f"{LINE}/filler/filler-a/alerts", alert_payload(alert), qos=1, retain=True).wait_for_publish(5)
    monkeypatch.setenv("LINETWIN_BROKER", str(mosquitto.url))
    at = page("alarms")
    deadline = time.monotonic() + 10
    while not at.dataframe and time.monotonic() < deadline:
        time.sleep(0.3)
        at.run()
    table = at.dataframe[0].value
    assert list(table.machine) == ["filler-a"] and table.severity.iloc[0] == "critical"
    assert table.status.iloc[0] == "active, unacknowledged" and table["RUL at raise [h]"].iloc[0] == 0.7
    assert table.start.iloc[0] == "2026-01-05 07:00"  # the line's clock, 24-hour
    at.text_input(key="alarm_comment").input("seal kit on the way").run()
    at.button("ack").click().run()
    row = at.dataframe[0].value.iloc[0]
    assert (row.status, row["acknowledged by"], row.comment) == ("active, acknowledged", "local", "seal kit on the way")
    assert list(at.dataframe[1].value.action) == ["acknowledged"]
    pub.publish(f"{LINE}/filler/filler-a/alerts", b"", qos=1, retain=True).wait_for_publish(5)
    pub.loop_stop()
    pub.disconnect()


def test_scenarios_page_validates_like_the_cli_and_compares_runs(env: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    at = page("scenarios")
    at.selectbox(key="scenario").set_value("bottling.yaml").run()
    assert "line plant-hamburg/hall-2/bottling-1, 6 stations, 7 machines" in at.success[0].value
    table = at.dataframe[0].value
    assert "oee" in table.index and "±" in table.iloc[:, 0]["oee"]
    folder = tmp_path / "scenarios"
    folder.mkdir()
    bad = (ROOT / "scenarios" / "bottling.yaml").read_text().replace("mean: 1.9 s", "mean: -1.9 s")
    (folder / "bad.yaml").write_text(bad)
    monkeypatch.setenv("LINETWIN_SCENARIOS", str(folder))
    at = page("scenarios")
    assert at.error[0].value.startswith("bad.yaml:") and "cycle_time" in at.error[0].value


def test_a_background_command_that_says_a_lot_never_stops_on_a_full_pipe(tmp_path: Path) -> None:
    """The Scenarios page's jobs wrote their words into a pipe read only once they ended: past 64 KB (a long run's
    progress lines; here 300 refusals) the command stopped there for good. Now into a log file, whose tail the page
    shows while the job runs and when it fails."""
    from dashboard.data import command_said, start_command

    folder = tmp_path / "scenarios"
    folder.mkdir()
    for i in range(300):
        (folder / f"bad-{i:03d}.yaml").write_text(f"line: {{site: s, area: a, name: l{i}}}\nduration: soon\n")
    proc = start_command(["validate", str(folder)], tmp_path / "jobs" / "validate.log")
    assert proc.wait(120) == 2  # it blocked for good on the pipe before
    said = (tmp_path / "jobs" / "validate.log").read_text()
    assert len(said) > 65_536 and said.count("bad-") >= 300
    tail = command_said(tmp_path / "jobs" / "validate.log")
    assert len(tail) == 800 and "bad-299.yaml" in tail
    assert command_said(tmp_path / "jobs" / "none.log") == ""


def test_scenarios_page_plans_the_warm_up_and_replications(env: Path) -> None:
    """`twin plan` from the Scenarios page: the pilot runs as a job, then its report (the warm-up found, Welch's
    plot) and the replications each KPI needs are shown."""
    at = page("scenarios")
    at.selectbox(key="scenario").set_value("bottling.yaml").run()
    at.text_input(key="plan_dur").set_value("2 h")
    at.button(key="plan_go").click().run()
    proc = at.session_state["plan_proc"]
    assert proc.wait(120) == 0, Path(at.session_state["plan_proc_log"]).read_text()
    at.run()
    assert any(m.value.startswith("# Warm-up and replications for bottling-1") and "Recommended warm-up:" in m.value
               for m in at.markdown)
    table = next(d.value for d in at.dataframe if "replications needed" in d.value.columns)
    assert list(table.kpi) == ["throughput [parts/h]", "wip [parts]", "lead time [min]"]
    assert len(at.get("image")) == 1  # Welch's plot


def test_scenarios_page_answers_what_if_from_a_runs_state(env: Path) -> None:
    """The what-if on the Scenarios page: the line's state read from a run's store, the next hour as it is and with
    one more mechanic, the table shown once the simulation is done. Only this line's runs are offered: another
    line's store holds none of its machines."""
    at = page("scenarios")
    at.selectbox(key="scenario").set_value("body_shop.yaml").run()
    assert not any("r1" in o for o in at.selectbox(key="wi_src").options)  # r1 is a bottling run
    at.selectbox(key="scenario").set_value("bottling.yaml").run()
    label = next(o for o in at.selectbox(key="wi_src").options if "r1" in o)
    at.selectbox(key="wi_src").set_value(label).run()
    at.text_input(key="wi_dur").set_value("1 h")
    at.number_input(key="wi_reps").set_value(3)
    at.multiselect(key="wi_crew").set_value(["mechanics"])
    at.multiselect(key="wi_more").set_value(["labeller"])  # the CLI's other alternatives, offered here too
    at.text_input(key="wi_cycle").set_value("filler=1.7 s")
    at.text_input(key="wi_buffer").set_value("capper=400")
    assert at.text_input(key="wi_shift").disabled  # bottling runs around the clock: no shift to add
    assert at.text_input(key="wi_batch").disabled  # and has no batch station
    assert at.text_input(key="wi_transfer").disabled  # nor a conveyor
    assert at.checkbox(key="wi_offshift").disabled  # nor planned stops to service in
    assert at.text_input(key="wi_mix").disabled  # and makes one kind of part: no product mix
    assert at.text_input(key="wi_stock").disabled  # and keeps no spare parts
    at.checkbox(key="wi_combined").check()  # and all of them together (`--combined`)
    at.number_input(key="wi_order").set_value(1)  # an order of one bottle: made in every run, in its first minutes
    at.button(key="wi_go").click().run()
    proc = at.session_state["wi_proc"]
    assert proc.wait(120) == 0, Path(at.session_state["wi_proc_log"]).read_text()
    at.run()
    shown = next(d.value for d in at.dataframe if "alternative" in d.value.columns)
    together = "+1 technician, mechanics + buffer capper = 400 + labeller: 2 machines + filler: cycle 1.7 s"
    assert list(shown.alternative) == ["as is", "+1 technician, mechanics", "buffer capper = 400",
                                       "labeller: 2 machines", "filler: cycle 1.7 s", together]
    assert "±" in shown["good parts"][0]
    assert (shown["order made"] == "100% (29%–100%)").all() and "·" in shown["done by"][0], shown
    at.text_input(key="wi_more_orders").set_value("2; 3")  # an order book: two more orders after the first
    at.button(key="wi_go").click().run()
    assert at.session_state["wi_proc"].wait(120) == 0, Path(at.session_state["wi_proc_log"]).read_text()
    at.run()
    book = next(d.value for d in at.dataframe if "order" in d.value.columns)
    assert len(book) == 3 * 6 and book.order.iloc[0] == "1: 1 good parts" and book.order.iloc[-1] == "3: 3 good parts"
    main = next(d.value for d in at.dataframe if "good parts" in d.value.columns)
    assert "order made" not in main.columns and (main["all orders"] == "100% (29%–100%)").all()
    # the same alternatives over the long run, from the line's start (`twin compare`): its report shown below
    at.text_input(key="lr_dur").set_value("4 h")
    at.button(key="lr_go").click().run()
    proc = at.session_state["lr_proc"]
    assert proc.wait(180) == 0, Path(at.session_state["lr_proc_log"]).read_text()
    at.run()
    assert any("compared: compare-bottling-" in s.value for s in at.success)
    assert at.selectbox(key="policy_report").value.startswith("compare-bottling-")
    report = next(m.value for m in at.markdown if m.value.startswith("# Alternatives of bottling-1"))
    for alternative in ("as is", "+1 technician, mechanics", "buffer capper = 400", "labeller: 2 machines", together):
        assert f"| {alternative}" in report or f" {alternative} |" in report, report
    # where more buffer places pay (`twin allocate`): its report and the scenario with them
    at.number_input(key="al_places").set_value(2)
    at.text_input(key="al_dur").set_value("1 h")
    at.button(key="al_go").click().run()
    proc = at.session_state["al_proc"]
    assert proc.wait(180) == 0, Path(at.session_state["al_proc_log"]).read_text()
    at.run()
    allocated = next(m.value for m in at.markdown if m.value.startswith("# Buffer places for bottling-1"))
    assert "2 places to add, 2 a round" in allocated and "bottling-allocated.yaml" in allocated
    assert at.get("download_button")
    # where improving pays most (`twin sensitivity`): its ranking and chart
    at.text_input(key="se_dur").set_value("40 min")  # 10 min after the warm-up: the page, not the figures
    at.multiselect(key="se_levers").set_value(["cycle", "failures"])  # two levers, ranked by OEE
    assert at.selectbox(key="se_goal").options[-1] == "payback"  # a line with a part margin: its projects' paybacks
    at.selectbox(key="se_goal").set_value("oee")
    at.text_input(key="se_costs").set_value("filler.cycle=100000")  # the project's cost: its payback
    at.button(key="se_go").click().run()
    proc = at.session_state["se_proc"]
    assert proc.wait(180) == 0, Path(at.session_state["se_proc_log"]).read_text()
    at.run()
    ranked = next(m.value for m in at.markdown if m.value.startswith("# Where improving bottling-1 pays most"))
    assert "| filler " in ranked and "cycle time −10%" in ranked and at.get("image")
    assert "ranked by oee" in ranked and "repair time" not in ranked  # only the levers chosen
    assert "payback [months]" in ranked, ranked
    assert at.selectbox(key="sensitivity_report").value.startswith("sensitivity-bottling-")  # kept, to look at again


def test_scenarios_page_offers_the_other_versions_of_a_line_as_alternatives(env: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The scenario files of the same line (a copy with a project's changes) are offered as what-if and long-run
    alternatives (`--variant`); another line's files are not."""
    folder = tmp_path / "scenarios"
    folder.mkdir()
    text = (ROOT / "scenarios" / "packaging.yaml").read_text()
    (folder / "packaging.yaml").write_text(text)
    (folder / "packaging-smed.yaml").write_text(text.replace("low: 60 min, mode: 80 min, high: 120 min",
                                                             "low: 25 min, mode: 35 min, high: 50 min"))
    (folder / "bottling.yaml").write_text((ROOT / "scenarios" / "bottling.yaml").read_text())
    monkeypatch.setenv("LINETWIN_SCENARIOS", str(folder))
    at = page("scenarios")
    at.selectbox(key="scenario").set_value("packaging.yaml").run()
    assert at.multiselect(key="wi_variant").options == ["packaging-smed.yaml"]
    assert at.selectbox(key="wi_order_product").options == ["any", "still-05", "sparkling-05", "juice-10"]
    at.selectbox(key="wi_src").set_value("a store or broker URL…").run()
    at.text_input(key="wi_url").set_value(f"duckdb:///{tmp_path / 'none.duckdb'}")
    at.multiselect(key="wi_variant").set_value(["packaging-smed.yaml"]).run()
    at.text_input(key="lr_dur").set_value("4 h")
    at.button(key="lr_go").click().run()
    proc = at.session_state["lr_proc"]
    assert proc.wait(180) == 0, Path(at.session_state["lr_proc_log"]).read_text()
    assert ["--variant", str(folder / "packaging-smed.yaml")] == [str(a) for a in proc.args[-2:]], proc.args
    said = Path(at.session_state["lr_proc_log"]).read_text()
    assert "variant packaging-smed.yaml" in said and "setup_matrix" in " ".join(said.split()), said
    # the orders released as the book's, by due date first and in the book's order as an alternative (`--release`)
    at.text_input(key="wi_more_orders").set_value("juice-10=5@Tue 14:00; still-05=9@Tue 10:00")
    at.multiselect(key="wi_release").set_value(["by due date", "the book's order"])
    at.button(key="wi_go").click().run()
    proc = at.session_state["wi_proc"]
    proc.wait(120)  # the store named is none: the command line is what is looked at
    args = [str(a) for a in proc.args]
    assert args[-4:] == ["--release", "due", "--release", "book"] and "juice-10=5@Tue 14:00" in args, args
    # a version of the line with an order book of its own: said on the what-if, which then follows it
    (folder / "packaging-booked.yaml").write_text(text + "orders: [{product: juice-10, parts: 500, order: A-1, "
                                                         "due: 2026-01-05T12:00}]\n")
    at.run()  # the folder read again: the new file offered
    at.selectbox(key="scenario").set_value("packaging-booked.yaml").run()
    assert any("packaging-booked.yaml releases 1 order before its plan (1: A-1 juice-10 × 500 by Mon 12:00)"
               in c.value for c in at.caption), [c.value for c in at.caption]
    at.selectbox(key="scenario").set_value("bottling.yaml").run()
    assert at.multiselect(key="wi_variant").disabled  # no other version of the bottling line
    assert at.selectbox(key="wi_order_product").disabled  # and one kind of bottle
    assert at.multiselect(key="wi_release").disabled  # whatever it releases, its orders are made in turn


def test_scenarios_page_answers_what_if_from_an_uploaded_status_log(env: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A plant without `twin connect` has its MES's status log: the what-if on the Scenarios page took a store or a
    broker only. The log uploaded is read as `twin whatif --from status.csv` reads it (tests/test_uploads.py: where
    it is kept, and what is refused)."""
    import tempfile

    from twin.fit import log_from_run
    from twin.scenario import load_scenario

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the uploads' folder
    sc = load_scenario(ROOT / "scenarios" / "bottling.yaml")
    truth = run_dir(env) / "truth"
    log = log_from_run(pd.read_parquet(truth / "states.parquet"), pd.read_parquet(truth / "events.parquet"),
                       pd.Timestamp(sc.start))
    at = page("scenarios")
    at.selectbox(key="scenario").set_value("bottling.yaml").run()
    at.selectbox(key="wi_src").set_value("a plant's status log or stop list…").run()
    assert at.button(key="wi_go").disabled  # nothing to read the state from yet
    german = log.assign(machine=log.machine.str.replace("filler-", "Füller "), state=log.state.replace(
        {"working": "Produktion", "down": "Störung"})).rename(columns={"timestamp": "Zeit", "machine": "Maschine"})
    at.file_uploader(key="wi_log").set_value(("status.csv", german.to_csv(index=False, sep=";").encode(), "text/csv")
                                             ).run()
    at.text_input(key="wi_columns").set_value("Zeit=timestamp, Maschine=machine")  # its own names, mapped
    at.text_input(key="wi_states").set_value("Produktion=working, Störung=down")
    at.text_input(key="wi_machines").set_value("Füller a=filler-a, Füller b=filler-b").run()
    at.text_input(key="wi_dur").set_value("1 h")
    at.number_input(key="wi_reps").set_value(2)
    at.multiselect(key="wi_crew").set_value(["mechanics"])
    at.file_uploader(key="wi_book").set_value(("book.csv", b"order,quantity\nP-1,5\nP-2,10\n", "text/csv")).run()
    at.button(key="wi_go").click().run()
    proc = at.session_state["wi_proc"]
    said = Path(at.session_state["wi_proc_log"])
    assert proc.wait(120) == 0, said.read_text()
    at.run()
    shown = next(d.value for d in at.dataframe if "alternative" in d.value.columns)
    assert list(shown.alternative) == ["as is", "+1 technician, mechanics"]
    book = next(d.value for d in at.dataframe if "order" in d.value.columns)  # the uploaded order book's two orders
    assert list(book.order) == ["1: P-1 5 good parts"] * 2 + ["2: P-2 10 good parts"] * 2, book
    assert at.get("image")  # and their chart
    end = f"{log.timestamp.max():%Y-%m-%d %H:%M:%S}"
    assert f"continuing from {end} (status.csv, a status log)" in " ".join(said.read_text().split())


def test_scenarios_page_fits_the_line_from_uploaded_logs(env: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`twin fit` on the Scenarios page: the plant's log uploaded as two overlapping exports, its own names mapped,
    this scenario as the base; the fitted laws, the validation and the plot shown, the fitted scenario offered for
    download. The dashboard had no way to calibrate the twin from a plant's records."""
    import tempfile

    from twin.fit import log_from_run
    from twin.scenario import load_scenario

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the uploads' folder
    sc = load_scenario(ROOT / "scenarios" / "bottling.yaml")
    truth = run_dir(env) / "truth"
    log = log_from_run(pd.read_parquet(truth / "states.parquet"), pd.read_parquet(truth / "events.parquet"),
                       pd.Timestamp(sc.start)).rename(columns={"machine": "Maschine"})
    half = log.timestamp.min() + (log.timestamp.max() - log.timestamp.min()) / 2
    at = page("scenarios")
    at.selectbox(key="scenario").set_value("bottling.yaml").run()
    assert at.button(key="fit_go").disabled  # nothing uploaded yet
    at.file_uploader(key="fit_logs").set_value([
        ("jan-1.csv", log[log.timestamp <= half].to_csv(index=False).encode(), "text/csv"),
        ("jan-2.csv", log[log.timestamp >= half - pd.Timedelta(minutes=10)].to_csv(index=False).encode(), "text/csv")
    ]).run()
    at.text_input(key="fit_columns").set_value("Maschine=machine")
    at.text_input(key="fit_part_results").set_value("Gutteil=good, Ausschussteil=scrap")  # a part log's own words
    at.number_input(key="fit_reps").set_value(2)
    at.button(key="fit_go").click().run()
    proc = at.session_state["fit_proc"]
    assert [str(a) for a in proc.args[proc.args.index("--results"):][:2]] == ["--results",
                                                                          "Gutteil=good, Ausschussteil=scrap"]
    said = Path(at.session_state["fit_proc_log"])
    assert proc.wait(180) == 0, said.read_text()
    at.run()
    fitted, checked = (d.value for d in at.dataframe[:2])
    assert {"machine type", "fault mode", "time", "events", "family"} <= set(fitted.columns), fitted.columns
    assert "verdict" in checked.columns and len(checked) > 0
    assert at.get("download_button") and any("fitted:" in x.value for x in at.success)
    assert "rows of jan-1.csv, jan-2.csv are in two of its files" in " ".join(said.read_text().split())


def test_models_page_shows_evaluation_reports(env: Path, tmp_path: Path) -> None:
    from predictors import TableFormat, forecasters, from_table
    from predictors.evaluate import evaluate, table, write_report
    from tests.test_predictors import degradation_table, write_nasa

    train, _ = degradation_table(20, seed=3)
    ds = from_table(write_nasa(train, tmp_path / "t.txt"), TableFormat(unit=0, time=1))
    models = {k: forecasters()[k](horizon=30.0, cap=125.0, window=20).fit(ds) for k in ("baseline", "regression")}
    ev = evaluate(models, ds)
    write_report([ev], tmp_path / "reports" / "fd-test", "test")
    at = page("models")
    shown = at.dataframe[0].value
    # the table `twin evaluate` prints, in the data's unit (it showed raw figures without one: seconds for twin runs)
    assert list(shown.model) == ["baseline", "regression"] and shown.equals(table(ev))
    assert shown["RUL RMSE"].str.endswith(" cycles").all() and "false-alarm cycles / 1000 cycles" in shown
    assert len(at.get("image")) == 2  # predicted vs true RUL, alert timeline


def test_an_empty_folder_gives_guidance_and_a_locked_store_a_banner(env: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINETWIN_RUNS", str(tmp_path / "none"))
    monkeypatch.setenv("LINETWIN_HOME", str(tmp_path / "home"))  # a home whose runs index is empty
    at = page("overview")
    assert "No runs in" in at.info[0].value and "twin run scenarios/bottling.yaml" in at.info[0].value
    monkeypatch.setenv("LINETWIN_RUNS", str(env))
    db = json.loads((run_dir(env) / "run.json").read_text())["store"].removeprefix("duckdb://")
    from dashboard.data import store_problem

    store_problem.clear()
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({db!r}); "
                               "print('ok', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        wait_for_line(holder.stdout, lambda s: s.strip() == "ok", 60, "'ok' from the process holding the store")
        at = page("overview")
        assert any("being written by a run in progress" in w.value for w in at.warning)
    finally:
        holder.kill()
        holder.wait()
        store_problem.clear()


def test_the_dashboard_does_not_hold_the_store_between_queries(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page read the store through a handle kept open (and its embedded file locked) for as long as the dashboard
    ran, page open or not: a plant's `twin connect --store` could not start beside it. Now each query opens and
    closes it, so a writer can take the store right after the pages were drawn."""
    monkeypatch.setenv("LINETWIN_RUNS", str(env))
    for name in ("overview", "machine", "history"):
        at = page(name)
        assert not at.exception, [e.value for e in at.exception]
    db = json.loads((run_dir(env) / "run.json").read_text())["store"].removeprefix("duckdb://")
    writer = subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({db!r}).close(); print('ok')"],
                            capture_output=True, text=True, timeout=60)
    assert writer.stdout.strip() == "ok", writer.stderr[-1000:]


def test_runs_written_with_out_one_level_down_are_found_without_the_index(env: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`twin run --out runs/train` (as the README trains) puts run.json one level below runs/; the dashboard looked
    two levels down only, so with another linetwin home (another user, a copied folder) it said "No runs in runs"."""
    shutil.copytree(run_dir(env), tmp_path / "runs" / "train")
    monkeypatch.setenv("LINETWIN_HOME", str(tmp_path / "home"))  # a home whose runs index is empty
    for root in (tmp_path / "runs", tmp_path / "runs" / "train"):  # the folder of runs, or the run folder itself
        monkeypatch.setenv("LINETWIN_RUNS", str(root))
        at = page("overview")
        assert not at.info or "No runs in" not in at.info[0].value
        assert {m.label for m in at.metric} >= {"throughput [parts/h]", "OEE [%]"}


def test_a_run_folder_with_a_damaged_run_json_is_left_out_and_said(env: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A run.json edited by hand (its scenario no longer valid) made the run vanish from the dashboard without a word
    (before that, some edits were a traceback in the run list); the other runs are shown as before."""
    shutil.copytree(run_dir(env), tmp_path / "runs" / "good")
    shutil.copytree(run_dir(env), tmp_path / "runs" / "edited")
    doc = json.loads((tmp_path / "runs" / "edited" / "run.json").read_text())
    doc["scenario"]["stations"][0]["cycle_time"] = "fast"
    (tmp_path / "runs" / "edited" / "run.json").write_text(json.dumps(doc))
    monkeypatch.setenv("LINETWIN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LINETWIN_RUNS", str(tmp_path / "runs"))
    at = page("overview")
    said = " ".join(w.value for w in at.sidebar.warning)
    assert "1 run folder left out, its run.json unreadable" in said and str(tmp_path / "runs" / "edited") in said
    assert "stations[0].cycle_time" in said
    assert {m.label for m in at.metric} >= {"throughput [parts/h]", "OEE [%]"}  # the good run, shown


@pytest.fixture
def served(dash_runs: Path, tmp_path: Path) -> Iterator[str]:
    from twin.app.cmd_dashboard import start_dashboard

    proc, url = start_dashboard(dash_runs, reports=tmp_path / "reports")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


CHROMIUM = {"executable_path": "/usr/bin/chromium", "headless": True,
            "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]}
# every chart, drawing, tile and table must fit inside its column; a tile's value must not be cut off
OVERFLOW_JS = """() => {
  const bad = [];
  const sel = '[data-testid="stVegaLiteChart"], [data-testid="stGraphVizChart"], [data-testid="stMetric"], ' +
              '[data-testid="stDataFrame"]';
  for (const el of document.querySelectorAll(sel)) {
    const col = el.closest('[data-testid="stColumn"]') || el.closest('[data-testid="stMainBlockContainer"]');
    if (!col) continue;
    const c = col.getBoundingClientRect();
    for (const inner of [el, ...el.querySelectorAll('svg, canvas')]) {
      const r = inner.getBoundingClientRect();
      if (r.width > 0 && (r.right > c.right + 2 || r.left < c.left - 2))
        bad.push(el.dataset.testid + ' ' + Math.round(r.width) + ' px in ' + Math.round(c.width));
    }
  }
  for (const v of document.querySelectorAll('[data-testid="stMetricValue"] div'))
    if (v.scrollWidth > v.clientWidth + 1) bad.push('tile value cut off: ' + v.textContent);
  return bad;
}"""
PAGES_SEEN = [("overview", "", '[data-testid="stGraphVizChart"] svg'),
              ("machine", "/machine", '[data-testid="stVegaLiteChart"]'),
              ("alarms", "/alarms", '[data-testid="stAlert"]'),
              ("history", "/history", '[data-testid="stVegaLiteChart"]'),
              ("scenarios", "/scenarios", '[data-testid="stDataFrame"]'),
              ("models", "/models", '[data-testid="stAlert"]'),
              ("audit", "/audit", "text=Audit log")]


def test_every_page_fits_1280_and_1920_screens_in_chromium(served: str, tmp_path: Path) -> None:
    """A screenshot of every page at 1280 × 800 and 1920 × 1080 (kept in the test's folder): no exception, nothing
    wider than its column, no tile cut off, OEE factors at most 100 %, and no Deploy button."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(**CHROMIUM)
        try:
            for width, height in ((1280, 800), (1920, 1080)):
                pg = browser.new_page(viewport={"width": width, "height": height})
                for name, path, ready in PAGES_SEEN:
                    pg.goto(served + path, wait_until="domcontentloaded")
                    pg.wait_for_selector(ready, timeout=60_000)
                    pg.wait_for_timeout(1500)  # let the charts draw
                    assert pg.locator('[data-testid="stException"]').count() == 0, name
                    assert pg.evaluate(OVERFLOW_JS) == [], (name, width)
                    assert pg.get_by_text("Deploy", exact=True).count() == 0
                    if name == "overview":
                        tiles = dict(zip(pg.locator('[data-testid="stMetricLabel"]').all_inner_texts(),
                                         pg.locator('[data-testid="stMetricValue"]').all_inner_texts()))
                        for factor in ("OEE [%]", "availability [%]", "performance [%]", "quality [%]"):
                            assert 0 <= float(tiles[factor]) <= 100, tiles
                    pg.screenshot(path=str(tmp_path / f"{name}-{width}.png"), full_page=True)
                pg.close()
        finally:
            browser.close()
    assert all((tmp_path / f"{n}-{w}.png").stat().st_size > 15_000 for n, _, _ in PAGES_SEEN for w in (1280, 1920))


# the on-screen width of every machine's box in the line's drawings (buffers and row stubs left out)
MACHINE_BOXES = """() => [...document.querySelectorAll('[data-testid="stGraphVizChart"] svg g.node')]
  .filter(g => !/^(buf|to|from):/.test(g.querySelector('title').textContent))
  .map(g => [g.querySelector('title').textContent, g.getBoundingClientRect().width])"""


def test_a_long_line_is_drawn_in_rows_a_plant_engineer_can_read(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A 36-station line on a 1280 px screen: its machines were 10 px specks in one chart (25 px in rows of 10); now
    rows of 6, every machine's box wide enough to read and click (36-40 px), nothing wider than the page."""
    from playwright.sync_api import sync_playwright

    from twin.app.cmd_dashboard import start_dashboard

    stations = "\n".join(f"  - {{name: cell-{i:02d}, machine_type: robot, cycle_time: {{dist: constant, value: 50 s}}"
                         f"{', buffer: 3' if i else ''}}}" for i in range(36))
    (tmp_path / "long.yaml").write_text(
        "line: {site: test, area: a, name: long-line}\nseed: 3\nduration: 1 h\nwarmup: 0 s\nreplications: 1\n"
        "machine_types:\n  robot:\n    fault_modes:\n      - {name: stop, kind: sudden, ttf: {dist: exponential, "
        "mean: 30 min}, repair: {dist: constant, value: 3 min}}\nstations:\n" + stations + "\n")
    monkeypatch.setenv("LINETWIN_HOME", str(tmp_path / "home"))  # its run kept out of the other tests' runs index
    run_all(twin_cmd("run", tmp_path / "long.yaml", "--no-stream", "--out", tmp_path / "runs" / "long" / "r1"))
    proc, url = start_dashboard(tmp_path / "runs")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(**CHROMIUM)
            pg = browser.new_page(viewport={"width": 1280, "height": 800})
            pg.goto(url, wait_until="domcontentloaded")
            pg.wait_for_selector('[data-testid="stGraphVizChart"] svg g.node', timeout=60_000)
            pg.wait_for_timeout(1500)  # every row drawn
            assert pg.locator('[data-testid="stException"]').count() == 0
            assert pg.locator('[data-testid="stGraphVizChart"]').count() == 6
            boxes = dict(pg.evaluate(MACHINE_BOXES))
            assert sorted(boxes) == [f"cell-{i:02d}" for i in range(36)]
            assert min(boxes.values()) >= 32, boxes
            assert pg.evaluate(OVERFLOW_JS) == []
            pg.screenshot(path=str(tmp_path / "long-line.png"), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(15)


def _expect(pg: Any, text: str, timeout: float = 45_000) -> Any:
    """The element showing `text`; on time-out, a failure that quotes what the page shows instead."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        # visible ones only: a data grid keeps a hidden copy of its cells' text, which would match first and never show
        return pg.wait_for_selector(f"text={text} >> visible=true", timeout=timeout)
    except PlaywrightTimeout:
        pytest.fail(f"{text!r} not shown within {timeout / 1000:g} s; the page shows:\n"
                    f"{pg.locator('body').inner_text()[:2000]}")


def _sign_in(browser: Any, url: str, user: str, password: str) -> Any:
    pg = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    pg.goto(url + "/alarms", wait_until="domcontentloaded")
    pg.locator('input[aria-label="Username"]').fill(user)
    pg.locator('input[aria-label="Password"]').fill(password)
    pg.get_by_role("button", name="Login").click()
    _expect(pg, f"signed in as {user}")
    return pg


def test_sign_in_roles_and_an_acknowledgement_that_survives_a_restart(dash_runs: Path, mosquitto: Mosquitto,
                                                                      tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator acknowledges an alarm with a comment; after the dashboard process is restarted it is still
    acknowledged, with user and time; a viewer cannot acknowledge; the webhook got one notification."""
    import bcrypt
    from playwright.sync_api import sync_playwright

    from tests.test_alarms import Receiver
    from twin.app.cmd_dashboard import start_dashboard

    users = tmp_path / "users.yaml"
    hashed = {u: bcrypt.hashpw(pw.encode(), bcrypt.gensalt(4)).decode()
              for u, pw in (("alice", "alice-pass-1"), ("victor", "victor-pass-1"))}
    users.write_text(f"cookie_key: {'c' * 40}\nusers:\n"
                     f"  alice: {{name: Alice, role: operator, password: '{hashed['alice']}'}}\n"
                     f"  victor: {{name: Victor, role: viewer, password: '{hashed['victor']}'}}\n")
    receiver = Receiver()
    (tmp_path / "notify.yaml").write_text(f"- {{line: 'plant-hamburg/*', severity: critical, "
                                          f"urls: ['{receiver.url}']}}\n")
    monkeypatch.setenv("LINETWIN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LINETWIN_NOTIFY", str(tmp_path / "notify.yaml"))
    run_id = json.loads((run_dir(dash_runs) / "run.json").read_text())["run_id"]
    alert = {"run": run_id, "replication": 0, "line": LINE, "station": "capper", "machine": "capper",
             "state": "raised", "severity": "critical", "fault_mode": "bearing_wear", "probability": 0.91,
             "rul": {"estimate_s": 5400.0}, "since": 1767596400000, "ts": 1767596400000}
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    proc, url = start_dashboard(dash_runs, broker=str(mosquitto.url), auth=users)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(**CHROMIUM)
            pg = _sign_in(browser, url, "alice", "alice-pass-1")
            _expect(pg, "no active alarms")
            # the alarm comes while the page is open: the book and the controls to act on it follow by themselves
            pub.publish(f"{LINE}/capper/capper/alerts", alert_payload(alert), qos=1, retain=True).wait_for_publish(5)
            _expect(pg, "unacknowledged")
            pg.get_by_label("comment").fill("spare bearing fitted at 14:00")
            pg.get_by_label("comment").press("Enter")
            pg.get_by_role("button", name="acknowledge").click()
            _expect(pg, "acknowledged by alice")
            proc.terminate()
            proc.wait(15)
            proc, url = start_dashboard(dash_runs, broker=str(mosquitto.url), auth=users)  # a restart
            pg = _sign_in(browser, url, "alice", "alice-pass-1")
            shown = _expect(pg, "acknowledged by alice").inner_text()
            assert "spare bearing fitted at 14:00" in shown and "(Europe/Berlin)" in shown
            pg.screenshot(path=str(tmp_path / "alarm-acknowledged.png"), full_page=True)
            viewer = _sign_in(browser, url, "victor", "victor-pass-1")
            _expect(viewer, "victor is a viewer")
            assert viewer.get_by_role("button", name="acknowledge").count() == 0
            assert viewer.get_by_text("Audit log", exact=True).count() == 0  # engineers only
            browser.close()
    finally:
        proc.terminate()
        proc.wait(15)
        pub.publish(f"{LINE}/capper/capper/alerts", b"", qos=1, retain=True).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()
        receiver.stop()
    assert len(receiver.posts) == 1 and "capper" in receiver.posts[0]["title"]
    from sensors.store.ledger import Ledger

    audit = Ledger(tmp_path / "home" / "linetwin.sqlite").audit_log()
    assert list(audit.action) == ["acknowledge"] and audit.user.iloc[0] == "alice"


SHADOWS = ("dashboard.py", "twin.py", "sensors.py", "predictors.py", "streamlit.py")  # a user's scripts


def test_a_dashboard_started_outside_the_repository_finds_scenarios_and_runs(dash_runs: Path,
                                                                           tmp_path: Path) -> None:
    """Started from an empty folder with an empty runs folder: the bundled scenarios come from the installed
    package, and the run written with --out elsewhere comes from the runs index. The folder holds the user's own
    dashboard.py, twin.py and sensors.py: the server imported those in place of ours (its folder was on the path)."""
    from playwright.sync_api import sync_playwright

    from twin.app.cmd_dashboard import start_dashboard

    elsewhere = tmp_path / "somewhere"
    (elsewhere / "runs").mkdir(parents=True)
    for name in SHADOWS:
        (elsewhere / name).write_text(f"raise ImportError('the user\'s own {name} was imported')\n")
    run_id = json.loads((run_dir(dash_runs) / "run.json").read_text())["run_id"]
    proc, url = start_dashboard(elsewhere / "runs", cwd=elsewhere)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(**CHROMIUM)
            pg = browser.new_page(viewport={"width": 1280, "height": 800})
            pg.goto(f"{url}?run={run_id}", wait_until="domcontentloaded")  # not another test's run in the index
            pg.wait_for_selector(f"text=run {run_id}", timeout=60_000)
            pg.goto(url + "/scenarios", wait_until="domcontentloaded")
            pg.wait_for_selector("text=line plant-zwickau/body-shop/biw-line-1", timeout=60_000)
            assert pg.locator('[data-testid="stException"]').count() == 0
            pg.goto(f"{url}/machine?run={run_id}&machine=capper&from=2026-01-05T06:30&to=2026-01-05T07:30",
                    wait_until="domcontentloaded")  # a deep link on a fresh session
            pg.wait_for_selector("text=capper / capper: sensors", timeout=60_000)
            pg.wait_for_selector("text=2026-01-05 06:30 – 2026-01-05 07:30", timeout=30_000)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(15)


def test_overview_live_from_mqtt_states_buffer_levels_and_kpis(env: Path, mosquitto: Mosquitto, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A running run (its store held by the ingest): states, buffer levels and the running replication's KPIs come
    over MQTT; messages of another run are not mixed in."""
    from sensors.bus.payloads import SCHEMA_KPI, buffers_payload, encode, state_payload

    running = tmp_path / "runs" / "bottling" / "live"
    running.mkdir(parents=True)
    meta = json.loads((run_dir(env) / "run.json").read_text())
    meta.update(status="running", run_id="live-run", store=f"duckdb:///{tmp_path / 'absent.duckdb'}",
                pid=os.getpid())  # a running run's process is alive (a dead one reads as lost)
    (running / "run.json").write_text(json.dumps(meta))
    monkeypatch.setenv("LINETWIN_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("LINETWIN_HOME", str(tmp_path / "home"))
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    msgs = [(f"{LINE}/capper/capper/state", state_payload("old-run", 0, "capper", "capper", [("down", 5)])),
            (f"{LINE}/rinser/rinser/state", state_payload("live-run", 0, "rinser", "rinser", [("down", 5)])),
            (f"{LINE}/buffers", buffers_payload("live-run", 0, 5, {"rinser": 37, "filler": 200, "capper": 0})),
            (f"{LINE}/kpi", encode({"schema": SCHEMA_KPI, "run": "live-run", "replication": 0, "final": False,
                                    "t": 1800.0, "kpis": {"throughput [parts/h]": 3000.0, "oee": 0.5}}))]
    for topic, payload in msgs:
        pub.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    monkeypatch.setenv("LINETWIN_BROKER", str(mosquitto.url))
    at = page("overview")
    deadline = time.monotonic() + 10
    while "37/120" not in at.get("graphviz_chart")[0].proto.spec and time.monotonic() < deadline:
        time.sleep(0.3)
        at.run()
    dot = at.get("graphviz_chart")[0].proto.spec
    assert "37/120" in dot and "200/200" in dot and '"rinser" [shape=box, fillcolor="#c62828"' in dot
    assert '"capper" [shape=box, fillcolor="#e0e0e0"' in dot  # the old run's state is not this run's
    assert any("states from MQTT (live)" in c.value for c in at.caption)
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["throughput [parts/h]"] == "3,000" and tiles["OEE [%]"] == "50.0"
    assert any("live: replication 0 so far, at 06:30 (Europe/Berlin)" in c.value for c in at.caption)
    # a plant's connector sends one station's level, or one machine's product, at a time: the others stay on screen
    pub.publish(f"{LINE}/buffers", buffers_payload("live-run", 0, 6, {"capper": 0}, {"filler-a": "still-05"}),
                qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 10
    while "still-05" not in at.get("graphviz_chart")[0].proto.spec and time.monotonic() < deadline:
        time.sleep(0.3)
        at.run()
    dot = at.get("graphviz_chart")[0].proto.spec
    assert "37/120" in dot and "200/200" in dot and "\\nstill-05" in dot, dot
    for topic, _ in msgs:
        pub.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    pub.loop_stop()
    pub.disconnect()


def test_line_drawing_marks_alerts_and_unknown_states() -> None:
    from dashboard.charts import line_dot
    from twin.scenario import load_scenario

    sc = load_scenario(ROOT / "scenarios" / "bottling.yaml")
    dot = line_dot(sc, {"capper": "working"}, {"labeller": {"state": "raised"}, "capper": {"state": "cleared"}})
    assert ('"labeller" [shape=box, fillcolor="#e0e0e0", fontcolor="black", label="labeller\\nno data", '
            'penwidth=3') in dot
    assert '"capper" [shape=box, fillcolor="#2e7d32", fontcolor="white", label="capper\\nworking"];' in dot
    assert dot.count("shape=cylinder") == 5  # a buffer in front of every station but the first


def test_twin_run_with_dashboard_shows_the_run_live(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """One command runs the line and opens the live view: states over MQTT while the ingest holds the store."""
    import re
    import signal

    from playwright.sync_api import sync_playwright

    out = tmp_path / "runs" / "bottling" / "live"
    proc = subprocess.Popen(twin_cmd("run", "scenarios/bottling.yaml", "--duration", "1 h", "--warmup", 0,
                                     "--replications", 1, "--realtime-factor", 120, "--broker", mosquitto.url,
                                     "--dashboard", "--out", out), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url = wait_for_line(proc.stdout, lambda s: re.search(r"dashboard: (http://127\.0\.0\.1:\d+)", s), 60,
                            "with the dashboard's URL").group(1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.goto(url, wait_until="domcontentloaded")
            pg.wait_for_selector("text=states from MQTT (live)", timeout=30_000)
            pg.wait_for_selector('[data-testid="stGraphVizChart"] svg', timeout=30_000)
            pg.wait_for_selector("text=of line time", timeout=30_000)  # the tiles' change: over line time, not per tick
            assert pg.locator("text=running").count() >= 1
            assert pg.locator('[data-testid="stException"]').count() == 0
            pg.screenshot(path=str(tmp_path / "live.png"), full_page=True)
            pg.goto(url + "/machine", wait_until="domcontentloaded")  # sensors of the running machine, via MQTT
            pg.wait_for_selector("text=live from MQTT while the run writes the store", timeout=30_000)
            pg.wait_for_selector('[data-testid="stVegaLiteChart"]', timeout=30_000)
            assert pg.locator('[data-testid="stException"]').count() == 0
            pg.screenshot(path=str(tmp_path / "live-machine.png"), full_page=True)
            browser.close()
        wait_for_line(proc.stdout, lambda s: "stays up" in s, 120, "saying the dashboard stays up")
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(30) == 0
        except subprocess.TimeoutExpired:  # show where it hangs: every thread's stack (twin's SIGUSR1)
            proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            proc.kill()
            pytest.fail(f"twin run --dashboard did not stop on Ctrl-C:\n{proc.communicate()[0][-6000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with contextlib.suppress(ProcessLookupError):  # its dashboard too, if the run could not stop it
            os.killpg(proc.pid, signal.SIGKILL)
    assert json.loads((out / "run.json").read_text())["status"] == "finished"


def test_proxy_user_header_kiosk_and_dark_theme_in_chromium(dash_runs: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a reverse proxy: the user is the proxy's header (role from the users file; none: not signed in);
    `?kiosk=1` hides the sidebar and enlarges the tiles; `--theme dark` paints the page dark."""
    from playwright.sync_api import sync_playwright

    from twin.app.cmd_dashboard import start_dashboard

    users = tmp_path / "users.yaml"
    users.write_text(f"cookie_key: {'k' * 40}\nusers:\n  olga: {{role: operator}}\n")
    monkeypatch.setenv("LINETWIN_HOME", str(tmp_path / "home"))
    proc, url = start_dashboard(dash_runs, auth=users, auth_header="X-Forwarded-User", theme="dark")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(**CHROMIUM)
            anonymous = browser.new_page(viewport={"width": 1280, "height": 800})
            anonymous.goto(url, wait_until="domcontentloaded")
            _expect(anonymous, "Not signed in: the reverse proxy did not send the X-Forwarded-User header")
            ctx = browser.new_context(viewport={"width": 1920, "height": 1080},
                                      extra_http_headers={"X-Forwarded-User": "olga"})
            pg = ctx.new_page()
            pg.goto(url, wait_until="domcontentloaded")
            _expect(pg, "signed in as olga (operator)")
            background = pg.evaluate("() => getComputedStyle(document.querySelector('[data-testid=\"stApp\"]'))"
                                     ".backgroundColor")
            assert sum(int(c) for c in background[background.index("(") + 1:-1].split(",")[:3]) < 150, background
            pg.goto(url + "/?kiosk=1", wait_until="domcontentloaded")
            pg.wait_for_selector('[data-testid="stMetricValue"]', timeout=60_000)
            pg.wait_for_timeout(1000)
            assert not pg.locator('[data-testid="stSidebar"]').is_visible()
            size = pg.evaluate("() => parseFloat(getComputedStyle(document.querySelector("
                               "'[data-testid=\"stMetricValue\"]')).fontSize)")
            assert size >= 40, size
            pg.screenshot(path=str(tmp_path / "kiosk-dark.png"))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(15)


def test_figures_per_shift_are_per_shift_not_per_day() -> None:
    """The overview's table 'per shift' summed each day's touching shifts into one row (06:00 – 22:00 for an early
    and a late shift): the early and the late shift are compared there."""
    from dashboard import data
    from tests.helpers import const, scenario

    sc = scenario([{"name": "m1", "cycle_time": const(60)}], start="2026-01-05T06:00:00", duration="1 d",
                  calendar={"shifts": ["06:00-14:00", "14:00-22:00"], "days": ["mon", "tue", "wed", "thu", "fri"]})
    hourly = pd.DataFrame({"t": [3600.0 * h for h in range(17)], "good": [60] * 8 + [30] * 8 + [1],
                           "planned_h": [1.0] * 16 + [0.0], "oee": [1.0] * 8 + [0.5] * 8 + [None]})
    table = data.per_shift(sc, hourly)
    assert [s[-13:] for s in table["shift"]] == ["06:00 – 14:00", "14:00 – 22:00"], table
    assert table["good parts"].tolist() == [480, 241]  # the part in hand, finished after 22:00, in the late shift
    assert table["OEE [%]"].tolist() == [100.0, 50.0]


def test_a_plants_machine_figures_come_from_its_state_records_in_the_time_range() -> None:
    """A plant has no simulated KPIs: its machine page showed no availability, failures, MTBF or MTTR, and its
    overview none of its tiles. From the state intervals in the range: a 06:00-14:00 line over two days (16 h
    planned) whose machine stopped at 13:00 for 10 h (1 h of it on shift) and the next day at 07:00 for 2 h."""
    from dashboard import data
    from tests.helpers import const, scenario

    sc = scenario([{"name": "m1", "cycle_time": const(60)}], calendar={"shifts": ["06:00-14:00"]},
                  start="2026-01-05T06:00:00", duration="2 d")
    origin = pd.Timestamp("2026-01-05 06:00")
    h = 3600.0
    iv = pd.DataFrame({"machine": "m1", "state": ["working", "down", "off_shift", "working", "down", "working",
                                                  "off_shift"],
                       "reason": None, "start": [0, 7 * h, 17 * h, 24 * h, 25 * h, 27 * h, 32 * h],
                       "end": [7 * h, 17 * h, 24 * h, 25 * h, 27 * h, 32 * h, 48 * h]})
    window = data.Window(origin, origin + pd.Timedelta(days=2), "UTC", origin)
    k = data.interval_kpis(iv, sc, window).loc["m1"]
    assert k["availability"] == pytest.approx(1 - 3 / 16) and k["failures"] == 2
    assert k["mttr [min]"] == pytest.approx(6 * 60) and k["mtbf [h]"] == pytest.approx(13 / 2)
    assert k["utilisation"] == pytest.approx(13 / 48)
    waited = iv.assign(state=iv.state.where(iv.start != 27 * h, "starved"))  # 5 h waiting for parts
    assert data.interval_kpis(waited, sc, window).loc["m1", "mtbf [h]"] == pytest.approx(8 / 2)  # working time
    calendar_clock = sc.model_copy(update={"machine_types": {"m": sc.machine_types["m"].model_copy(
        update={"clock": "calendar"})}})  # its wear runs whenever it is up: MTBF over its up time
    assert data.interval_kpis(waited, calendar_clock, window).loc["m1", "mtbf [h]"] == pytest.approx(13 / 2)
    later = data.Window(origin + pd.Timedelta(hours=8), origin + pd.Timedelta(days=2), "UTC", origin)
    k = data.interval_kpis(iv[iv.end > 8 * h].assign(start=lambda d: d.start.clip(lower=8 * h)), sc, later).loc["m1"]
    assert k["failures"] == 1 and k["availability"] == pytest.approx(1 - 2 / 8)  # the first stop began before it


def test_a_plants_line_figures_from_its_state_records_and_part_counters() -> None:
    """A plant maps its PLCs' good-part (and scrap) counters as sensors good_parts and scrap_parts: the overview's
    tiles then give its throughput and OEE by ISO 22400 (design cycle × good parts out ÷ planned time), the
    constraint's availability and performance, and the quality left; a counter's reset (a PLC restart) is no loss."""
    from dashboard import data
    from tests.helpers import const, scenario

    counters = pd.DataFrame({"machine": "a", "sensor": "good_parts", "ts": pd.date_range("2026-01-05", periods=5,
                                                                                         freq="h"),
                             "value": [100.0, 150, 170, 20, 50]})  # reset to 0 after 170: 50 + 20 + 20 + 30
    assert data.counted(counters)[("a", "good_parts")] == 120
    sc = scenario([{"name": "a", "cycle_time": const(60)}, {"name": "b", "cycle_time": const(30)}],
                  start="2026-01-05T00:00:00", duration="10 h")
    origin, h = pd.Timestamp("2026-01-05"), 3600.0
    iv = pd.DataFrame({"machine": ["a", "a", "b"], "state": ["working", "down", "working"], "reason": None,
                       "start": [0, 8 * h, 0], "end": [8 * h, 10 * h, 10 * h]})
    counts = pd.Series({("a", "good_parts"): 470.0, ("a", "scrap_parts"): 10.0, ("b", "good_parts"): 450.0,
                        ("a", "energy"): 120.0, ("b", "energy"): 60.0})  # energy meters' kWh registers
    k = data.plant_kpis(sc, iv, counts, data.Window(origin, origin + pd.Timedelta(hours=10), "UTC", origin))
    assert k["energy [kWh]"] == 180 and k["energy per good part [kWh]"] == pytest.approx(180 / 450)
    assert k["oee availability"] == pytest.approx(0.8) and k["throughput [parts/h]"] == pytest.approx(45)
    assert k["oee"] == pytest.approx(60 * 450 / (10 * h)) and k["oee performance"] == pytest.approx(60 * 480 / (8 * h))
    assert k["oee quality"] == pytest.approx(450 / 480)  # what is left of OEE: the good share of what was made
    readings = pd.DataFrame({"machine": "b", "sensor": "good_parts", "value": [1000.0, 1030, 1075, 1120],
                             "ts": origin + pd.to_timedelta([0.5, 1.5, 2.25, 2.75], unit="h")})
    hours = data.Window(origin, origin + pd.Timedelta(hours=3), "UTC", origin)
    hourly = data.per_period(sc, data.plant_exits(sc, readings, hours), pd.DataFrame(), hours)
    # each reading's parts spread over the time since the one before: 30 over 0:30-1:30, 45 over 1:30-2:15 and
    # 45 over 2:15-2:45 (they all came in hours 1 and 2 when counted at their readings)
    assert hourly.good.sum() == 120 and hourly.good.tolist() == pytest.approx([15, 45, 60], abs=1)
    assert hourly.oee.to_numpy() == pytest.approx(hourly.good.to_numpy() * 60 / 3600)  # a's design cycle: 60 s
    only_states = data.plant_kpis(sc, iv, pd.Series(dtype=float), data.Window(origin, origin + pd.Timedelta(hours=10),
                                                                               "UTC", origin))
    assert only_states == {"oee availability": pytest.approx(0.8), "oee loss: down": pytest.approx(0.2)}


def test_a_plants_oee_losses_by_state_and_its_quality_from_parts_not_from_waiting() -> None:
    """A plant's OEE availability was its constraint's machine availability (only down and maintenance lower it), so
    time the constraint waited for parts landed in the quality left over (0.71 for a line that scrapped 1 part in
    35). Now, as a run's: availability is its working share of the planned time, and the overview's loss table has
    each state's share, speed and scrap, adding up to 1 with the OEE; time no state record covers is said so."""
    from dashboard import data
    from tests.helpers import const, scenario
    from twin.kpi import LOSS

    sc = scenario([{"name": "a", "cycle_time": const(60)}, {"name": "b", "cycle_time": const(30)}],
                  start="2026-01-05T00:00:00", duration="10 h")
    origin, h = pd.Timestamp("2026-01-05"), 3600.0
    window = data.Window(origin, origin + pd.Timedelta(hours=10), "UTC", origin)
    iv = pd.DataFrame({"machine": ["a", "a", "a", "b"], "state": ["working", "starved", "down", "working"],
                       "reason": None, "start": [0, 6 * h, 8 * h, 0], "end": [6 * h, 8 * h, 10 * h, 10 * h]})
    counts = pd.Series({("a", "good_parts"): 340.0, ("a", "scrap_parts"): 10.0, ("b", "good_parts"): 330.0})
    k = data.plant_kpis(sc, iv, counts, window)
    assert k["oee availability"] == pytest.approx(0.6) and k["oee"] == pytest.approx(60 * 330 / (10 * h))
    assert k["oee performance"] == pytest.approx(60 * 350 / (6 * h))
    assert k["oee quality"] == pytest.approx(330 / 350)  # 0.71 when the starved hours counted against it
    assert k[LOSS + "starved"] == pytest.approx(0.2) and k[LOSS + "down"] == pytest.approx(0.2)
    assert k[LOSS + "speed"] == pytest.approx(0.6 * (1 - 60 * 350 / (6 * h)))
    lost = sum(v for n, v in k.items() if n.startswith(LOSS))
    assert lost + k["oee"] == pytest.approx(1) and k[LOSS + "scrap"] > 0
    late = data.plant_kpis(sc, iv.assign(start=iv.start.clip(lower=h)), pd.Series(dtype=float),
                           window)  # records from 01:00 on: the first hour is no one's loss, said as unknown
    assert late[LOSS + data.UNRECORDED] == pytest.approx(0.1) and "oee" not in late
    assert late["oee availability"] == pytest.approx(0.5) and late[LOSS + "starved"] == pytest.approx(0.2)
    counted_out = pd.Series({("b", "good_parts"): 330.0})  # counters at the line's end only: P and Q not told apart
    both = data.plant_kpis(sc, iv, counted_out, window)
    assert both[LOSS + data.SPEED_OR_QUALITY] == pytest.approx(0.6 - 0.55) and "oee quality" not in both


def test_a_plants_timeline_reads_the_state_in_force_as_the_range_opens_and_its_changes_in_it(tmp_path: Path) -> None:
    """A plant's timeline read every state record it had (a year of them) to draw one range; now the state each
    machine was in as the range opens, then the changes inside it, and nothing later."""
    from types import SimpleNamespace

    from dashboard import data

    url = f"duckdb:///{tmp_path / 'plant.duckdb'}"
    store = open_store(url)
    t = pd.Timestamp("2026-01-05 06:00")
    store.write_states(pd.DataFrame({"run": "plant", "replication": 0, "machine": ["m1", "m2", "m1", "m1", "m1"],
                                     "ts": [t, t + pd.Timedelta("1 h"), t + pd.Timedelta("3 h"),
                                            t + pd.Timedelta("4 h"), t + pd.Timedelta("9 h")],
                                     "state": ["working", "down", "down", "working", "down"], "reason": ""}))
    store.close()
    window = data.Window(t + pd.Timedelta("2 h"), t + pd.Timedelta("6 h"), "UTC", t)
    iv = data.states_intervals(SimpleNamespace(store_url=url, run_id="plant"), window)  # type: ignore[arg-type]
    got = [(m, s, a / 3600, b / 3600) for m, s, a, b in zip(iv.machine, iv.state, iv.start, iv.end)]
    assert got == [("m1", "working", 2, 3), ("m1", "down", 3, 4), ("m1", "working", 4, 6), ("m2", "down", 2, 6)]


def test_a_plants_counters_count_from_where_they_stood_as_the_range_opened(tmp_path: Path) -> None:
    """A range's parts were counted from its first counter reading: the parts between the range's start and that
    reading went uncounted (a reading every 30 min lost up to half an hour of output). The reading before the range
    now leads."""
    from dashboard import data

    url = f"duckdb:///{tmp_path / 'plant.duckdb'}"
    store = open_store(url)
    t = pd.Timestamp("2026-01-05 06:00")
    store.write(pd.DataFrame({"run": "plant", "replication": 0, "machine": "press-1", "sensor": "good_parts",
                              "ts": t + pd.to_timedelta([-30, 30, 90, 150], unit="min"),
                              "value": [100.0, 130, 175, 200]}))
    store.write(pd.DataFrame({"run": "plant", "replication": 0, "machine": "press-1", "sensor": "energy",
                              "ts": t + pd.to_timedelta([-15, 45, 150], unit="min"), "value": [5000.0, 5012.5, 5020]}))
    store.close()
    readings = data.counter_readings(url, "plant", t, t + pd.Timedelta("2 h"))
    assert data.counted(readings)[("press-1", "good_parts")] == 75  # 100 → 130 → 175; 200 comes after the range
    assert data.counted(readings)[("press-1", "energy")] == pytest.approx(12.5)  # a kWh register, counted alike


def test_a_line_with_power_shows_its_energy_per_good_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Machine types that give their power: the overview's tiles add the line's energy and its energy per good part,
    the figures of the run's KPIs."""
    root = tmp_path / "runs"
    monkeypatch.setenv("LINETWIN_HOME", str(tmp_path / "home"))
    run_all(twin_cmd("run", "tests/scenarios/heat_treat.yaml", "--no-stream", "--duration", "1 d",
                     "--replications", 1, "--out", root / "heat_treat" / "r1"))
    monkeypatch.setenv("LINETWIN_RUNS", str(root))
    monkeypatch.setenv("LINETWIN_REPORTS", str(tmp_path / "reports"))
    monkeypatch.delenv("LINETWIN_BROKER", raising=False)
    overview = page("overview")
    tiles = {m.label: m.value for m in overview.metric}
    shifts = next(d.value for d in overview.dataframe if "energy [kWh]" in d.value.columns)  # per shift too
    assert (shifts["energy [kWh]"] > 0).all() and "kWh per good part" in shifts
    kpis = pd.read_parquet(root / "heat_treat" / "r1" / "kpis.parquet")
    line = kpis[kpis.scope == "line"].set_index("kpi")["value"]
    assert tiles["energy per good part [kWh]"] == f"{line['energy per good part [kWh]']:,.3g}"
    assert tiles["energy [kWh]"] == f"{line['energy [kWh]']:,.0f}" and line["energy [kWh]"] > 0
    at = page("machine")  # and each machine's own
    machine = at.selectbox[0].value
    mine = kpis[(kpis.scope == "machine") & (kpis.entity == machine)].set_index("kpi")["value"]
    assert {m.label: m.value for m in at.metric}["energy [kWh]"] == f"{mine['energy [kWh]']:,.0f}"


def test_energy_per_hour_and_shift_from_the_machines_states_and_power() -> None:
    """A machine at 10 kW working for 1.5 h, then 1.5 h starved at 4 kW: 10, 5 + 2 and 4 kWh in its three hours; the
    shift's figures sum them, per good part too."""
    from dashboard import data
    from tests.helpers import const, scenario

    sc = scenario([{"name": "a", "cycle_time": const(60)}], start="2026-01-05T06:00:00", duration="3 h",
                  machine_types={"m": {"power": {"working": 10, "idle": 4}}},
                  calendar={"shifts": ["06:00-09:00"]})
    origin, h = pd.Timestamp("2026-01-05 06:00"), 3600.0
    window = data.Window(origin, origin + pd.Timedelta(hours=3), "UTC", origin)
    parts = pd.DataFrame({"exit": np.arange(60.0, 1.5 * h + 1, 60.0), "scrapped_at": np.nan})
    hourly = data.per_period(sc, parts, pd.DataFrame(), window)
    iv = pd.DataFrame({"machine": ["a", "a"], "state": ["working", "starved"], "reason": None,
                       "start": [0.0, 1.5 * h], "end": [1.5 * h, 3 * h]})
    energy = data.energy_per_period(sc, iv, hourly)
    assert energy.energy.tolist() == pytest.approx([10, 7, 4])
    (shift,) = data.per_shift(sc, energy).to_dict("records")
    assert shift["energy [kWh]"] == 21 and shift["kWh per good part"] == pytest.approx(21 / 90, abs=1e-3)
    unpowered = scenario([{"name": "a", "cycle_time": const(60)}], start="2026-01-05T06:00:00", duration="3 h")
    assert "energy" not in data.energy_per_period(unpowered, iv, hourly)
