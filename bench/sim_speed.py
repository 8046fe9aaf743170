"""Simulation speed benchmark (not a test): the twin against raw SimPy, measured in the same run.

Prints the limit first (raw SimPy timeout throughput on this machine), then for bundled scenarios:
simulated events per second, the twin's cost per event relative to raw SimPy, sensor readings per
second, and simulated hours per wall-clock second, for one replication of an 8-hour shift.
Targets (issue 2): the 10-station line's 8-hour shift with ~1.4 million readings in under 10 s on
one core; the twin's per-event cost within 3x of raw SimPy's.

    .venv/bin/python bench/sim_speed.py
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import simpy
from machine import load_line

from sensors.bank import SensorBank
from twin.model import Line
from twin.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
PAIRS = 5  # raw and twin runs, one right after the other


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts every event it schedules."""

    def __init__(self) -> None:
        super().__init__()
        self.scheduled = 0

    def schedule(self, event: Any, priority: Any = 1, delay: Any = 0) -> None:
        self.scheduled += 1
        super().schedule(event, priority, delay)


def raw_simpy(n: int = 1_000_000) -> float:
    """Seconds per event of bare SimPy timeouts from four processes (the limit)."""
    env = simpy.Environment()

    def proc(env: simpy.Environment) -> Any:
        for _ in range(n // 4):
            yield env.timeout(1.0)

    for _ in range(4):
        env.process(proc(env))
    t = time.perf_counter()
    env.run()
    return (time.perf_counter() - t) / n


def best_of(k: int, fn: Any) -> float:
    return min(fn() for _ in range(k))


def bench_scenario(name: str) -> dict[str, float]:
    """One scenario's figures; its per-event cost against raw SimPy's measured in pairs, each raw run right before
    a twin run of about the same length, the median of the pairs' ratios (the machine's speed drifts: shared
    cores)."""
    sc = load_scenario(ROOT / "scenarios" / name).model_copy(update={"duration": 8 * 3600.0})
    # per-event cost: run long enough for at least 300,000 events so fixed costs do not count
    counting = CountingEnvironment()
    Line(sc, 0, env=counting).run(sc.duration)
    shifts = max(1, -(-300_000 // counting.scheduled))
    long = sc.model_copy(update={"duration": shifts * sc.duration})
    counting = CountingEnvironment()
    Line(long, 0, env=counting).run(long.duration)
    events = counting.scheduled

    def sim_only() -> float:  # running only: building the line is not per-event work
        line = Line(long, 0)
        t = time.perf_counter()
        line.run(long.duration)
        return time.perf_counter() - t

    pairs = [(raw_simpy(), sim_only()) for _ in range(PAIRS)]
    ratios = [(sim / events) / raw for raw, sim in pairs]
    ratio = float(np.median(ratios))
    raw_per_event = float(np.median([raw for raw, _ in pairs]))
    sim_long = min(sim for _, sim in pairs)
    sim_s = sim_long / shifts
    readings = 0

    def with_sensors() -> float:
        nonlocal readings
        t = time.perf_counter()
        line = Line(sc, 0)
        bank = SensorBank(line)
        readings, t0 = 0, 0.0
        while t0 < sc.duration:  # the runner's default chunking when running flat out
            t1 = min(t0 + 600.0, sc.duration)
            line.run(t1)
            readings += len(bank.sample(t0, t1))
            t0 = t1
        return time.perf_counter() - t

    total_s = best_of(3, with_sensors)
    return {"stations": len(sc.stations), "machines": len(Line(sc, 0).machines), "events": events / shifts,
            "sim_s": sim_s, "total_s": total_s, "readings": readings,
            "events_per_s": events / sim_long, "cost_ratio": ratio, "raw_ns": raw_per_event * 1e9,
            "ratio_low": min(ratios), "ratio_high": max(ratios),
            "readings_per_s": readings / (total_s - sim_s) if total_s > sim_s else float("inf"),
            "sim_h_per_s": 8.0 / total_s}


def main() -> None:
    print(load_line("before"))
    print(f"limit: raw SimPy timeouts from four processes; 'x raw' is the median of {PAIRS} paired ratios, each raw "
          "run right before a twin run (column 'raw ns': the raw runs' median)")
    print()
    header = (f"{'scenario':<18}{'st':>3}{'mach':>5}{'events':>9}{'events/s':>11}{'x raw':>7}"
              f"{'readings':>11}{'readings/s':>12}{'sim only':>9}{'total':>8}{'sim h/s':>9}{'raw ns':>8}")
    print(header)
    results = {}
    for name in ("body_shop.yaml", "bottling.yaml", "cnc_cell.yaml", "body_shop_merge.yaml", "packaging.yaml"):
        r = bench_scenario(name)
        results[name] = r
        print(f"{name.removesuffix('.yaml'):<18}{r['stations']:>3.0f}{r['machines']:>5.0f}{r['events']:>9,.0f}"
              f"{r['events_per_s']:>11,.0f}{r['cost_ratio']:>7.2f}{r['readings']:>11,.0f}"
              f"{r['readings_per_s']:>12,.0f}{r['sim_s']:>8.2f}s{r['total_s']:>7.2f}s{r['sim_h_per_s']:>9.1f}{r['raw_ns']:>8.0f}")
    print()
    body = results["body_shop.yaml"]
    worst = max(r["cost_ratio"] for r in results.values())
    ok1 = body["total_s"] < 10.0
    ok2 = worst <= 3.0
    print(f"target 1: 8-h shift of the 10-station line with {body['readings']:,.0f} readings in "
          f"{body['total_s']:.2f} s (limit 10 s): {'PASS' if ok1 else 'FAIL'}")
    print(f"target 2: twin's cost per event {worst:.2f}x raw SimPy's (limit 3x): {'PASS' if ok2 else 'FAIL'}")
    print("the pairs' ratios, lowest to highest (how much the machine's speed moved during the run): " + "; ".join(
        f"{name.removesuffix('.yaml')} {r['ratio_low']:.2f}-{r['ratio_high']:.2f}" for name, r in results.items()))
    print(load_line("after"))


if __name__ == "__main__":
    main()
