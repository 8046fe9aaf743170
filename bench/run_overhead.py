"""What `twin run --no-stream` costs on top of the simulation itself (a benchmark, not a test; issue 19).

For each case the limit is measured in the same run: the in-process simulation of the same scenario and
seed (`runner.simulate`: the line, its sensor bank, its KPIs; best of 3, modules already loaded), plus
the start-up of a process (`twin --help`, median of 3). The whole `twin run --no-stream` process (parse,
simulate, write readings.parquet, the ground truth and the DuckDB store) is then timed, best of 3 like the
core (the machine's speed moves between runs), with the highest of the three peak resident memories from the
kernel (wait4's ru_maxrss).

    .venv/bin/python bench/run_overhead.py          # body_shop 8 h, the sensor-less 5-station line
    .venv/bin/python bench/run_overhead.py --memory # also body_shop 1 day against 30 days, 3 runs each (4 min)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import load_line, own_home, process

from twin.app.runner import simulate
from twin.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
TWIN = [sys.executable, "-m", "twin.app.cli"]
RSS_LIMIT_MB = 300.0
GROWTH_LIMIT = 0.20


def core(path: Path, duration: float | None) -> float:
    sc = load_scenario(path, overrides={"replications": 1, **({"duration": duration} if duration else {})})

    def once() -> float:
        t = time.perf_counter()
        simulate(sc, 0)
        return time.perf_counter() - t

    return min(once() for _ in range(3))


def run(path: Path, duration: str | None) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        extra = ["--duration", duration] if duration else []
        return process([*TWIN, "run", str(path), "--no-stream", "--replications", "1", "--out", f"{tmp}/run", *extra],
                       ROOT)


def main() -> None:
    own_home()
    print(load_line("before"))
    startup = statistics.median(process([*TWIN, "--help"], ROOT)[0] for _ in range(3))
    verdict = "PASS" if startup <= 0.5 else "FAIL"
    print(f"start-up of a process (`twin --help`): {startup:.2f} s (limit 0.5 s): {verdict}")
    cases = [("body_shop 8 h", ROOT / "scenarios/body_shop.yaml", "8 h", 2.0),
             ("serial-5, no sensors, 100,000 min", ROOT / "bench/scenarios/serial5.yaml", None, 1.5)]
    print(f"\n{'case':<36}{'core':>8}{'limit':>8}{'twin run':>10}{'ratio':>7}{'peak RSS':>10}  verdict")
    failed = startup > 0.5
    for name, path, duration, factor in cases:
        core_s = core(path, 8 * 3600.0 if duration == "8 h" else None)
        limit = factor * core_s + startup
        runs = [run(path, duration) for _ in range(3)]  # best of 3, as the core: the same statistic on both sides
        wall, rss = min(w for w, _ in runs), max(r for _, r in runs)
        ok = wall <= limit and rss <= RSS_LIMIT_MB
        failed |= not ok
        print(f"{name:<36}{core_s:>7.2f}s{limit:>7.2f}s{wall:>9.2f}s{wall / core_s:>6.2f}x{rss:>8.0f}MB  "
              f"{'PASS' if ok else 'FAIL'} (limit {factor}x core + start-up, {RSS_LIMIT_MB:.0f} MB)")
    if "--memory" in sys.argv:
        # the highest peak of 3 runs each, as above: one run's peak moves by 5 % with how the writer threads overlap
        days = [run(ROOT / "scenarios/body_shop.yaml", "1 d")[1] for _ in range(3)]
        months = [run(ROOT / "scenarios/body_shop.yaml", "30 d")[1] for _ in range(3)]
        day, month = max(days), max(months)
        growth = month / day - 1
        print(f"\nbody_shop peak RSS of 3 runs each: 1 day {', '.join(f'{d:.0f}' for d in days)} MB; "
              f"30 days {', '.join(f'{m:.0f}' for m in months)} MB")
        failed |= growth >= GROWTH_LIMIT
        print(f"body_shop peak RSS, highest of 3: 1 day {day:.0f} MB, 30 days {month:.0f} MB: growth {growth:+.0%} "
              f"(limit {GROWTH_LIMIT:+.0%}): {'PASS' if growth < GROWTH_LIMIT else 'FAIL'}")
    print("\n" + load_line("after"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
