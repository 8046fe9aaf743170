"""People: operator pools with shifts that stations need to run or set up; machines wait for a free operator."""

from __future__ import annotations

import pytest

from tests.helpers import const, kpi, replicate, scenario
from twin.model import Line


def test_one_operator_for_two_machines_halves_their_output() -> None:
    sc = scenario([{"name": "a", "cycle_time": const(10), "operators": {"pool": "crew"}},
                   {"name": "b", "cycle_time": const(10), "buffer": 5, "operators": {"pool": "crew"}}],
                  operators=[{"name": "crew", "size": 1}], duration="1 d")
    k = replicate(sc, 1)
    assert kpi(k, "throughput [parts/h]")[0] == pytest.approx(3600 / 20, rel=0.01)
    assert kpi(k, "utilisation", "crew")[0] == pytest.approx(1.0, abs=0.01)
    assert kpi(k, "waiting_operator share", "a")[0] == pytest.approx(0.5, abs=0.02)  # b waits for parts instead
    two = scenario([{"name": "a", "cycle_time": const(10), "operators": {"pool": "crew"}},
                    {"name": "b", "cycle_time": const(10), "buffer": 5, "operators": {"pool": "crew"}}],
                   operators=[{"name": "crew", "size": 2}], duration="1 d")
    assert kpi(replicate(two, 1), "throughput [parts/h]")[0] == pytest.approx(360, rel=0.01)


def test_machines_wait_for_operators_off_their_shift() -> None:
    """The line runs around the clock, its operator works 06:00-14:00: a third of the day's output."""
    sc = scenario([{"name": "a", "cycle_time": const(60), "operators": {"pool": "crew", "for": ["run"]}}],
                  operators=[{"name": "crew", "size": 1, "calendar": {"shifts": ["06:00-14:00"]}}],
                  start="2026-01-05T06:00:00", duration="3 d")
    k = replicate(sc, 1)
    assert kpi(k, "throughput [parts/h]")[0] == pytest.approx(60 / 3, rel=0.01)
    assert kpi(k, "waiting_operator share", "a")[0] == pytest.approx(2 / 3, abs=0.01)
    assert kpi(k, "utilisation", "crew")[0] == pytest.approx(1.0, abs=0.01)


def test_setups_wait_for_an_operator_but_running_does_not() -> None:
    sc = scenario([{"name": "a", "cycle_time": const(10), "operators": {"pool": "setters", "for": ["setup"]},
                    "changeover": {"every_parts": 10, "duration": const(100)}},
                   {"name": "b", "cycle_time": const(10), "buffer": 5,
                    "operators": {"pool": "setters", "for": ["setup"]},
                    "changeover": {"every_parts": 10, "duration": const(100)}}],
                  operators=[{"name": "setters", "size": 1}], duration="1 d")
    line = Line(sc, 0)
    line.run(sc.duration)
    k = replicate(sc, 1)
    assert kpi(k, "waiting_operator share", "b")[0] > 0.05  # b's setups queue behind a's
    assert 0.4 < kpi(k, "utilisation", "setters")[0] < 1.0


def test_unknown_pool_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import yaml

    from twin.scenario import ScenarioError, load_scenario

    f = tmp_path / "o.yaml"
    f.write_text(yaml.safe_dump({"line": {"site": "s", "area": "a", "name": "n"}, "seed": 1, "duration": 100,
                                 "machine_types": {"m": {}}, "stations": [
                                     {"name": "a", "machine_type": "m", "cycle_time": 5,
                                      "operators": {"pool": "ghosts"}}]}, sort_keys=False))
    with pytest.raises(ScenarioError, match=r"stations\[0\]\.operators\.pool: no operator pool named 'ghosts'"):
        load_scenario(f)


def test_repairs_wait_for_a_fitter_on_shift() -> None:
    """A machine that fails every 50 operating minutes, its 10-minute repairs done by the one fitter of a pool that
    works 06:00-14:00: eight repairs on the shift, then the 14:50 failure waits, down, until the next morning."""
    fault = {"fault_modes": [{"name": "jam", "kind": "sudden", "ttf": const(3000), "repair": const(600)}]}
    sc = scenario([{"name": "a", "cycle_time": const(60), "operators": {"pool": "fitters", "for": ["repair"]}}],
                  machine_types={"m": fault}, operators=[{"name": "fitters", "size": 1,
                                                          "calendar": {"shifts": ["06:00-14:00"]}}],
                  start="2026-01-05T06:00:00", duration="1 d")
    k = replicate(sc, 1)
    down = 8 * 600 + (86400 - (14 * 3600 + 50 * 60 - 6 * 3600))  # the repairs, and 14:50 to 06:00
    assert kpi(k, "down share", "a")[0] == pytest.approx(down / 86400, abs=1e-3)
    assert kpi(k, "waiting_operator share", "a")[0] == 0  # waiting for the fitter is downtime
    assert kpi(k, "throughput [parts/h]")[0] == pytest.approx((86400 - down) / 60 / 24, rel=1e-3)
    assert kpi(k, "utilisation", "fitters")[0] == pytest.approx(8 * 600 / (8 * 3600), abs=1e-3)
    # the machine's own operator repairs it: no second operator from a pool of one
    own = scenario([{"name": "a", "cycle_time": const(60), "operators": {"pool": "crew", "for": ["run", "repair"]}}],
                   machine_types={"m": fault}, operators=[{"name": "crew", "size": 1}], duration="1 d")
    assert kpi(replicate(own, 1), "down share", "a")[0] == pytest.approx(600 / 3600, abs=1e-3)
