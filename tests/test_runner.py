"""The runner: pacing at a real-time factor, streaming callbacks, and the result folder."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import const, scenario
from twin.app.runner import run_scenario, simulate


def sensing_line(**top: object):  # type: ignore[no-untyped-def]
    sensors = [{"name": "x", "unit": "u", "idle": 1.0, "working": 2.0}]
    return scenario([{"name": "m1", "cycle_time": const(5)}], machine_types={"m": {"sensors": sensors}}, **top)


def test_realtime_factor_paces_the_run_and_readings_arrive_as_it_goes() -> None:
    sc = sensing_line(duration=60, realtime_factor=30)  # 60 s simulated at 30x: 2 s of wall time
    arrivals: list[tuple[float, float]] = []
    t0 = time.monotonic()
    simulate(sc, 0, on_readings=lambda line, b: arrivals.append((time.monotonic() - t0, float(b.t.max()))))
    wall = time.monotonic() - t0
    assert 1.9 <= wall < 3.5
    assert len(arrivals) >= 10  # streamed in small chunks, not at the end
    lag = [w - t / 30 for w, t in arrivals]
    assert min(lag) >= 0  # never handed over before the wall clock reaches the reading's time
    assert max(lag) < 0.5  # and within half a second of it


def test_as_fast_as_possible_does_not_sleep() -> None:
    t0 = time.monotonic()
    simulate(sensing_line(duration=24 * 3600), 0)
    assert time.monotonic() - t0 < 5


def test_result_folder_holds_every_replication(tmp_path: Path) -> None:
    sc = sensing_line(duration=600, replications=3)
    summary, kpis = run_scenario(sc, tmp_path)
    readings = pd.read_parquet(tmp_path / "readings.parquet")
    assert sorted(readings.replication.unique()) == [0, 1, 2]
    assert len(readings) == 3 * 600
    assert set(kpis.replication) == {0, 1, 2}
    row = summary[(summary.kpi == "throughput [parts/h]")].iloc[0]
    assert row["n"] == 3 and row["mean"] == pytest.approx(720.0, rel=0.01)  # one part per 5 s
    health = tmp_path / "truth" / "health.parquet"
    assert not health.exists()  # no wear modes, no health table
