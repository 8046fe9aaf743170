"""The simulator against exact results of queueing and production-systems theory.

Values and sources: ../shared/reference/simulator-validation.md (Little 1961; M/M/1 and M/M/1/K
textbook results; renewal theory; Buzacott 1967; Gershwin, Manufacturing Systems Engineering, 1994,
ch. 3). Each test runs independent replications and asserts the 95 % confidence interval contains
the exact value, and that the interval is narrow enough to mean something.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import const, exp, interval, kpi, replicate, scenario, unreliable

pytestmark = pytest.mark.slow  # statistical validation: 20 replications per exact result

REPS = 20


def assert_contains(ci: tuple[float, float, float], exact: float, max_half_width: float) -> None:
    mean, low, high = ci
    assert low <= exact <= high, f"exact {exact} outside 95 % CI [{low:.4f}, {high:.4f}] (mean {mean:.4f})"
    assert (high - low) / 2 <= max_half_width, f"CI half-width {(high - low) / 2:.4f} too wide to mean anything"


def mm1(**source: object) -> object:
    # time unit: minutes written as "min"; arrival rate 0.8/min, service rate 1/min
    return scenario([{"name": "server", "cycle_time": exp(60.0), **source.pop("station", {})}],  # type: ignore[dict-item]
                    source={"kind": "arrivals", "interarrival": exp(75.0), **source},
                    duration="20000 min", warmup="1000 min")


def test_mm1_number_in_system_and_time_in_system() -> None:
    """M/M/1, lambda = 0.8, mu = 1: L = 4, W = 5 min (unlimited queue)."""
    k = replicate(mm1(), REPS)
    assert_contains(interval(k, "wip [parts]"), 4.0, 0.4)
    assert_contains(interval(k, "time in system [min]"), 5.0, 0.5)


def test_mm1k_blocking_throughput_and_wip() -> None:
    """M/M/1/K with K = 5 in system (4 waiting + 1 in service); arrivals finding it full are lost."""
    k = replicate(mm1(when_full="drop", station={"buffer": 4}), REPS)
    assert_contains(interval(k, "lost arrivals"), 0.0888, 0.01)
    rate = k.assign(value=k.value / 60)  # parts/h -> parts/min
    assert_contains(interval(rate, "departures [parts/h]"), 0.7289, 0.01)
    assert_contains(interval(k, "wip [parts]"), 1.868, 0.05)


def test_littles_law_on_a_multi_station_line() -> None:
    """L = lambda W on a four-station line with random times, finite buffers and failures."""
    sc = scenario(
        [{"name": "s1", "cycle_time": {"dist": "lognormal", "mean": 50, "sd": 20}, "buffer": 10},
         {"name": "s2", "cycle_time": {"dist": "triangular", "low": 30, "mode": 50, "high": 80}, "buffer": 3,
          "machines": 2, "machine_type": "u"},
         {"name": "s3", "cycle_time": exp(40), "buffer": 2},
         {"name": "s4", "cycle_time": {"dist": "uniform", "low": 20, "high": 60}, "buffer": 5}],
        machine_types={"m": {}, "u": unreliable(3000, 300)},
        source={"kind": "arrivals", "interarrival": exp(70)}, duration="10 d", warmup="12 h")
    k = replicate(sc, REPS)
    diff = k[k.kpi == "wip [parts]"].value.to_numpy() - \
        kpi(k, "departures [parts/h]").to_numpy() / 60 * kpi(k, "time in system [min]").to_numpy()
    mean = diff.mean()
    half = 2.093 * diff.std(ddof=1) / np.sqrt(REPS)
    assert abs(mean) <= half, f"L - lambda W = {mean:.4f} +- {half:.4f}"
    assert half < 0.02 * kpi(k, "wip [parts]").mean()


def test_availability_of_one_machine_with_time_dependent_failures() -> None:
    """MTTF 100, MTTR 25 on the calendar clock: A = 0.8, even though the machine is often idle."""
    sc = scenario([{"name": "m1", "cycle_time": const(1.0)}], machine_types={"m": unreliable(100, 25, "calendar")},
                  source={"kind": "arrivals", "interarrival": exp(2.0)}, duration=20_000)
    k = replicate(sc, REPS)
    assert_contains(interval(k, "availability", "m1"), 0.80, 0.01)
    assert kpi(k, "starved share", "m1").mean() > 0.2  # failures struck while it waited, too


def test_two_machines_without_buffer_buzacott() -> None:
    """Operation-dependent failures, MTBF 100, MTTR 10, unit cycle, no buffer: E = 1/(1 + 0.1 + 0.1)."""
    sc = scenario([{"name": "m1", "cycle_time": const(1.0)}, {"name": "m2", "cycle_time": const(1.0), "buffer": 0}],
                  machine_types={"m": unreliable(100, 10)}, duration=30_000, warmup=1000)
    k = replicate(sc, REPS)
    rate = k.assign(value=k.value / 3600)  # parts per cycle
    assert_contains(interval(rate, "throughput [parts/h]"), 1 / 1.2, 0.01)


def test_two_machines_with_unlimited_buffer_buzacott() -> None:
    """Unlimited buffer (primed with 3,000 parts so it never empties): E = min e_i = 100/110."""
    sc = scenario([{"name": "m1", "cycle_time": const(1.0)},
                   {"name": "m2", "cycle_time": const(1.0), "buffer": None, "initial": 3000}],
                  machine_types={"m": unreliable(100, 10)}, duration=30_000, warmup=1000)
    k = replicate(sc, REPS)
    rate = k.assign(value=k.value / 3600)
    assert_contains(interval(rate, "throughput [parts/h]"), 100 / 110, 0.01)


def gershwin_ctmc(n: int, mu: float = 1.0, p: float = 0.01, r: float = 0.1) -> float:
    """Throughput of the exponential two-machine line, solved exactly (Gershwin 1994, ch. 3).

    State (buffer level 0..N, M1 up, M2 up); M1 is blocked at N, M2 starved at 0; a machine fails
    (rate p) only while working and is repaired at rate r.
    """
    states = [(b, a1, a2) for b in range(n + 1) for a1 in (0, 1) for a2 in (0, 1)]
    index = {s: i for i, s in enumerate(states)}
    q = np.zeros((len(states), len(states)))
    for (b, a1, a2), i in index.items():
        work1, work2 = a1 and b < n, a2 and b > 0
        moves = []
        if work1:
            moves += [((b + 1, a1, a2), mu), ((b, 0, a2), p)]
        if work2:
            moves += [((b - 1, a1, a2), mu), ((b, a1, 0), p)]
        if not a1:
            moves.append(((b, 1, a2), r))
        if not a2:
            moves.append(((b, a1, 1), r))
        for target, rate in moves:
            q[i, index[target]] += rate
            q[i, i] -= rate
    a = np.vstack([q.T, np.ones(len(states))])
    pi = np.linalg.lstsq(a, np.append(np.zeros(len(states)), 1.0), rcond=None)[0]
    return float(sum(pi[i] * mu for (b, _, a2), i in index.items() if a2 and b > 0))


@pytest.mark.parametrize(("n", "exact"), [(1, 0.4545), (5, 0.7220), (10, 0.7859)])
def test_gershwin_values_agree_with_our_ctmc(n: int, exact: float) -> None:
    assert gershwin_ctmc(n) == pytest.approx(exact, abs=1e-4)


@pytest.mark.parametrize(("n", "blocking"), [(1, "before-service"), (5, "before-service"), (5, "after-service"),
                                              (10, "after-service")])
def test_two_machine_line_with_finite_buffer_gershwin(n: int, blocking: str) -> None:
    """Exponential line, mu = 1, failures 0.01 while working, repairs 0.1, buffer N (reference table).

    Gershwin's N counts the parts finished by M1 and not yet by M2, M1 blocked at N. Before-service
    blocking reserves buffer + M2, so our buffer is N - 1; after-service blocking also parks a
    finished part in M1, so our buffer is N - 2.
    """
    exact = {1: 0.4545, 5: 0.7220, 10: 0.7859}[n]
    buffer = n - 1 if blocking == "before-service" else n - 2
    sc = scenario([{"name": "m1", "cycle_time": exp(1.0)}, {"name": "m2", "cycle_time": exp(1.0), "buffer": buffer}],
                  machine_types={"m": unreliable(100, 10)}, duration=40_000, warmup=1000, blocking=blocking)
    k = replicate(sc, REPS)
    rate = k.assign(value=k.value / 3600)
    assert_contains(interval(rate, "throughput [parts/h]"), exact, 0.01)
