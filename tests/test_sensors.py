"""Synthetic sensors: follow state, load and wear; flaws as configured; chunking never changes a value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensors.bank import Readings, SensorBank, first_order_lag
from tests.helpers import const, scenario
from twin.app.runner import simulate, states_frame
from twin.model import Line
from twin.scenario import Scenario, load_scenario


def collect(sc: Scenario, chunk: float) -> pd.DataFrame:
    batches: list[Readings] = []
    rep = simulate(sc, 0, chunk=chunk, on_readings=lambda line, b: batches.append(b))
    cat = SensorBank(rep.line).catalog
    df = pd.DataFrame({"series": np.concatenate([b.series for b in batches]),
                       "t": np.concatenate([b.t for b in batches]),
                       "value": np.concatenate([b.value for b in batches])})
    return df.merge(cat, left_on="series", right_index=True).sort_values(["series", "t"]).reset_index(drop=True)


def sensor(**kw: object) -> dict[str, object]:
    return {"name": "x", "unit": "u", "stopped": 0.0, "idle": 1.0, "working": 5.0, **kw}


def one_machine(sensors: list[dict[str, object]], duration: float = 3600, **mt: object) -> Scenario:
    return scenario([{"name": "m1", "cycle_time": const(10)}], machine_types={"m": {"sensors": sensors, **mt}},
                    duration=duration)


def test_readings_do_not_depend_on_chunking() -> None:
    sc = load_scenario("scenarios/bottling.yaml").model_copy(update={"duration": 1800.0, "warmup": 0.0})
    whole = collect(sc, 1800.0)
    pieces = collect(sc, 7.3)
    pd.testing.assert_frame_equal(whole, pieces)
    assert len(whole) > 60_000


def test_every_sensor_has_a_row_per_period_minus_dropouts() -> None:
    sc = one_machine([sensor(name="a", period=1.0), sensor(name="b", period=2.5),
                      sensor(name="c", period=1.0, faults={"dropout_rate": 20, "dropout_for": 30})])
    df = collect(sc, 600)
    counts = df.groupby("sensor").size()
    assert counts["a"] == 3600 and counts["b"] == 1440
    assert 250 < 3600 - counts["c"] < 1100  # about 20 episodes of 30 s missing in the hour
    assert df.groupby("sensor").t.apply(lambda t: t.is_monotonic_increasing).all()


def test_value_follows_state_levels_exactly_without_noise() -> None:
    sc = scenario([{"name": "m1", "cycle_time": const(10)}, {"name": "m2", "cycle_time": const(20), "buffer": 1}],
                  machine_types={"m": {"sensors": [sensor()]}}, duration=600)
    df = collect(sc, 60)
    line = Line(sc)
    line.run(sc.duration)
    st = states_frame(line)
    m1 = df[df.machine == "m1"]
    idx = np.searchsorted(st[st.machine == "m1"].start.to_numpy(), m1.t.to_numpy(), side="right") - 1
    states = st[st.machine == "m1"].state.to_numpy()[idx]
    expected = np.where(states == "working", 5.0, 1.0)
    np.testing.assert_allclose(m1.value.to_numpy(), expected)
    assert (states == "blocked").any()


def test_load_gain_and_lag() -> None:
    sc = scenario([{"name": "m1", "cycle_time": const(10), "load": 1.0}],
                  machine_types={"m": {"sensors": [sensor(load_gain=10.0, lag=60.0)]}}, duration=1200)
    df = collect(sc, 100)
    v = df.value.to_numpy()
    assert v[0] == pytest.approx(7.0)  # 5 + 10 * (1.0 - 0.8), starting at steady state
    assert np.allclose(v, 7.0)


def test_wear_signature_raises_the_signal_towards_failure() -> None:
    mt = {"fault_modes": [{"name": "bearing", "ttf": {"dist": "weibull", "shape": 4, "scale": 20_000},
                           "repair": const(600), "progression": 2, "signature": {"x": 3.0}}],
          "start_age": "new"}
    sc = one_machine([sensor(noise=0.05)], duration=60_000, **mt)
    rep = simulate(sc, 0, chunk=5000)
    df = collect(sc, 5000)
    failures = [e.t for e in rep.line.events if e.kind == "failure"]
    assert failures
    f = failures[0]
    early = df[(df.t < 600)].value.mean()
    late = df[(df.t > f - 600) & (df.t < f)].value.mean()
    assert early == pytest.approx(5.0, abs=0.05)
    assert late > 7.0  # 5 + 3 * wear, wear near 1 before failure
    during_repair = df[(df.t > f + 10) & (df.t < f + 590)].value
    assert np.allclose(during_repair, 0.0, atol=0.3)  # stopped: the stopped level, no wear effect


def test_spikes_stuck_and_drift() -> None:
    sc = one_machine([sensor(name="spiky", faults={"spike_rate": 60, "spike_size": 100.0}),
                      sensor(name="stuck", noise=1.0, faults={"stuck_rate": 6, "stuck_for": 120}),
                      sensor(name="drifty", drift=1.0)], duration=36_000)
    df = collect(sc, 3600)
    spiky = df[df.sensor == "spiky"].value.to_numpy()
    assert 300 < (spiky > 50).sum() < 900  # about 60 per hour over 10 h
    stuck = df[df.sensor == "stuck"].value.to_numpy()
    repeats = (np.diff(stuck) == 0).sum()
    assert 36_000 * 0.1 < repeats < 36_000 * 0.35  # 6/h x 120 s ~ 20 % of the time
    drifty = df[df.sensor == "drifty"].value.to_numpy()
    hourly = drifty[::3600]
    assert np.std(np.diff(hourly)) == pytest.approx(1.0, rel=0.6)  # random walk, sd 1 per sqrt(hour)


def test_sensor_streams_are_independent_of_other_sensors() -> None:
    """Adding a sensor to a machine does not change the readings of the others (own streams)."""
    a = collect(one_machine([sensor(name="x", noise=1.0)]), 600)
    b = collect(one_machine([sensor(name="x", noise=1.0), sensor(name="y", noise=1.0)]), 600)
    np.testing.assert_array_equal(a[a.sensor == "x"].value.to_numpy(), b[b.sensor == "x"].value.to_numpy())


def test_slow_sensor_and_short_chunks() -> None:
    """A sensor sampled every 5 min still works when chunks are shorter than its period."""
    sc = one_machine([sensor(name="slow", period=300.0, noise=0.1, drift=0.5, lag=600.0,
                             faults={"stuck_rate": 1, "dropout_rate": 1, "spike_rate": 1})], duration=7200)
    a, b = collect(sc, 7200), collect(sc, 31)
    pd.testing.assert_frame_equal(a, b)
    assert 20 <= len(a) <= 24


@given(x=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=3000),
       alpha=st.one_of(st.floats(0.0, 1e-5), st.floats(1e-5, 0.999999999)), y0=st.floats(-1e3, 1e3))
@settings(max_examples=200, deadline=None)
def test_first_order_lag_matches_scipy_lfilter(x: list[float], alpha: float, y0: float) -> None:
    """The numpy lag filter is scipy.signal.lfilter's first-order IIR, from any start value, to rounding."""
    from scipy.signal import lfilter

    arr = np.asarray(x)
    ref, _ = lfilter([1 - alpha], [1, -alpha], arr, zi=[alpha * y0])
    np.testing.assert_allclose(first_order_lag(arr, alpha, y0), ref, rtol=1e-9, atol=1e-9)
