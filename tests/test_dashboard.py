"""The dashboard: every page in AppTest against a store filled by a short real run, and the whole app in a
real browser (Debian's chromium driven by Playwright, never a downloaded browser)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from sensors.bus.payloads import alert_payload
from sensors.store import open_store
from tests.conftest import ROOT, Mosquitto, run_all, twin_cmd

pytestmark = pytest.mark.slow  # end to end: simulated runs shown in AppTest and in chromium

PAGES = ROOT / "dashboard" / "pages"
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


def run_dir(root: Path) -> Path:
    return root / "bottling" / "r1"


def test_overview_tiles_match_the_run_and_the_line_is_drawn(env: Path) -> None:
    at = page("overview")
    tiles = {m.label: m.value for m in at.metric}
    kpis = pd.read_parquet(run_dir(env) / "kpis.parquet")
    line = kpis[(kpis.scope == "line") & (kpis.replication == 0)].set_index("kpi")["value"]
    assert tiles["throughput"] == f"{line['throughput [parts/h]']:,.0f}/h"
    assert tiles["OEE"] == f"{line['oee']:.1%}" and tiles["active alerts"] == "0"
    dot = at.get("graphviz_chart")[0].proto.spec
    for machine in ("depalletizer", "filler-a", "filler-b", "case-packer"):
        assert f'"{machine}"' in dot
    assert "states from the store" in at.caption[0].value


def test_machine_page_charts_sensors_truth_and_events(env: Path) -> None:
    at = page("machine")
    assert len(at.get("vega_lite_chart")) >= 2  # sensors and the true wear
    assert any("ground truth" in s.value for s in at.subheader)


def test_history_rows_are_the_stores(env: Path) -> None:
    at = page("history")
    meta = json.loads((run_dir(env) / "run.json").read_text())
    store = open_store(meta["store"], read_only=True)
    start = pd.Timestamp(meta["scenario"]["start"])
    expected = store.query(start, start + pd.Timedelta(hours=2), machines=["capper"],
                           sensors=["bearing_temp", "motor_current", "power"], run=meta["run_id"], every="60s")
    assert at.caption[0].value == f"{len(expected):,} rows"
    at.selectbox[0].set_value("raw").run()
    raw = store.query(start, start + pd.Timedelta(hours=2), machines=["capper"],
                      sensors=["bearing_temp", "motor_current", "power"], run=meta["run_id"])
    assert at.caption[0].value == f"{len(raw):,} rows"
    assert len(at.get("download_button")) == 2


def test_alerts_page_shows_the_retained_alerts(env: Path, mosquitto: Mosquitto,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    at = page("alerts")
    assert "start the dashboard with `--broker" in at.info[0].value
    alert = {"run": "r", "replication": 0, "line": LINE, "station": "filler", "machine": "filler-a",
             "state": "raised", "severity": "critical", "fault_mode": "valve_clogging", "probability": 0.93,
             "rul": {"estimate_s": 2400.0, "low_s": 1200.0, "high_s": 3600.0},
             "model": {"kind": "lstm", "version": "x"}, "evidence": {"from": 1, "to": 2, "rows": 60},
             "ts": 1767600000000}
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    pub.publish(f"{LINE}/filler/filler-a/alerts", alert_payload(alert), qos=1, retain=True).wait_for_publish(5)
    monkeypatch.setenv("LINETWIN_BROKER", str(mosquitto.url))
    at = page("alerts")
    deadline = time.monotonic() + 10
    while not at.dataframe and time.monotonic() < deadline:
        time.sleep(0.3)
        at.run()
    table = at.dataframe[0].value
    assert list(table.machine) == ["filler-a"] and table.severity.iloc[0] == "critical"
    at.button("ack").click().run()
    assert bool(at.dataframe[0].value.acknowledged.iloc[0])
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


def test_models_page_shows_evaluation_reports(env: Path, tmp_path: Path) -> None:
    from predictors import TableFormat, forecasters, from_table
    from predictors.evaluate import evaluate, write_report
    from tests.test_predictors import degradation_table, write_nasa

    train, _ = degradation_table(20, seed=3)
    ds = from_table(write_nasa(train, tmp_path / "t.txt"), TableFormat(unit=0, time=1))
    models = {k: forecasters()[k](horizon=30.0, cap=125.0, window=20).fit(ds) for k in ("baseline", "regression")}
    write_report([evaluate(models, ds)], tmp_path / "reports" / "fd-test", "test")
    at = page("models")
    shown = at.dataframe[0].value
    assert list(shown.model) == ["baseline", "regression"] and np.isfinite(shown.rmse).all()
    assert len(at.get("image")) == 2  # predicted vs true RUL, alert timeline


def test_an_empty_folder_gives_guidance_and_a_locked_store_a_banner(env: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINETWIN_RUNS", str(tmp_path / "none"))
    at = page("overview")
    assert "No runs in" in at.info[0].value and "twin run scenarios/bottling.yaml" in at.info[0].value
    monkeypatch.setenv("LINETWIN_RUNS", str(env))
    db = json.loads((run_dir(env) / "run.json").read_text())["store"].removeprefix("duckdb://")
    from dashboard.data import store_for

    store_for.clear()
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({db!r}); "
                               "print('ok', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        at = page("overview")
        assert any("being written by a run in progress" in w.value for w in at.warning)
    finally:
        holder.kill()
        holder.wait()
        store_for.clear()


@pytest.fixture
def served(dash_runs: Path, tmp_path: Path) -> Iterator[str]:
    from twin.app.cmd_dashboard import start_dashboard

    proc, url = start_dashboard(dash_runs, reports=tmp_path / "reports")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


def test_the_app_in_a_real_browser(served: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.goto(served, wait_until="domcontentloaded")
            pg.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
            pg.wait_for_selector('[data-testid="stGraphVizChart"] svg', timeout=60_000)
            assert pg.locator('[data-testid="stException"]').count() == 0
            pg.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
            pg.goto(served + "/machine", wait_until="domcontentloaded")
            pg.wait_for_selector('[data-testid="stVegaLiteChart"]', timeout=60_000)
            pg.wait_for_timeout(1500)  # let the charts draw
            assert pg.locator('[data-testid="stException"]').count() == 0
            pg.screenshot(path=str(tmp_path / "machine.png"), full_page=True)
        finally:
            browser.close()
    for shot in ("overview.png", "machine.png"):
        assert (tmp_path / shot).stat().st_size > 20_000


def test_overview_live_from_mqtt_states_buffer_levels_and_alert_rings(env: Path, mosquitto: Mosquitto,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from sensors.bus.payloads import buffers_payload, state_payload

    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    msgs = [(f"{LINE}/rinser/rinser/state", state_payload("r", 0, "rinser", "rinser", [("down", 5)])),
            (f"{LINE}/buffers", buffers_payload("r", 0, 5, {"rinser": 37, "filler": 200, "capper": 0}))]
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
    assert "states from MQTT (live)" in at.caption[0].value
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
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            m = re.search(r"dashboard: (http://127\.0\.0\.1:\d+)", proc.stdout.readline())
            url = m.group(1) if m else None
        assert url, "the run printed no dashboard URL"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.goto(url, wait_until="domcontentloaded")
            pg.wait_for_selector("text=states from MQTT (live)", timeout=30_000)
            pg.wait_for_selector('[data-testid="stGraphVizChart"] svg', timeout=30_000)
            assert pg.locator("text=running").count() >= 1
            assert pg.locator('[data-testid="stException"]').count() == 0
            pg.screenshot(path=str(tmp_path / "live.png"), full_page=True)
            pg.goto(url + "/machine", wait_until="domcontentloaded")  # sensors of the running machine, via MQTT
            pg.wait_for_selector("text=live from MQTT while the run writes the store", timeout=30_000)
            pg.wait_for_selector('[data-testid="stVegaLiteChart"]', timeout=30_000)
            assert pg.locator('[data-testid="stException"]').count() == 0
            pg.screenshot(path=str(tmp_path / "live-machine.png"), full_page=True)
            browser.close()
        while "stays up" not in proc.stdout.readline():
            assert proc.poll() is None
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
