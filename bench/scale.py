"""Replications side by side (a benchmark, not a test; issue 19): `twin run --no-stream` with 40 replications as one
job (one after another in the `twin run` process: `--jobs 1`) against two local Dask worker processes, on this
machine's cores. The limit (speed-up ≥ 1.7x on 2 cores) is compared against the one-job run measured in the same
session; results are checked equal as well.

    .venv/bin/python bench/scale.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from machine import load_line, own_home

from twin.app.runner import RunWriter, replication_part, simulate
from twin.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
CASES = [("serial-5, no sensors, 40 x 20,000 min", "bench/scenarios/serial5.yaml", "20000 min"),
         ("cnc_cell with sensors, 40 x 8 h", "scenarios/cnc_cell.yaml", "8 h")]
LIMIT = 1.7


def run(scenario: str, duration: str, jobs: int, out: Path) -> tuple[float, float]:
    """Wall seconds of the whole `twin run` process, and the cores it kept busy on average (its CPU time, workers
    included, over its wall time)."""
    with tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "twin.app.cli", "run", scenario, "--no-stream", "--replications",
                                 "40", "--duration", duration, "--jobs", str(jobs), "--out", str(out)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # its usage includes the worker processes it waited for
        wall = time.perf_counter() - t
        if os.waitstatus_to_exitcode(status):
            err.seek(0)
            raise SystemExit(err.read().decode()[-2000:])
    return wall, (usage.ru_utime + usage.ru_stime) / wall


BURN = ("import time\nt = time.perf_counter()\nx = 0\nfor i in range(30_000_000):\n    x += i\n"
        "print(time.perf_counter() - t)")


def machine_speedup() -> float:
    """What two processes of pure Python arithmetic gain over one on this machine: the ceiling for any tool."""
    one = float(subprocess.run([sys.executable, "-c", BURN], capture_output=True, text=True).stdout)
    procs = [subprocess.Popen([sys.executable, "-c", BURN], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    t = time.perf_counter()
    for p in procs:
        p.wait()
    both = time.perf_counter() - t
    return 2 * one / both


WORK = """
import sys, tempfile, time
from pathlib import Path
from twin.app.runner import replication_part
from twin.scenario import load_scenario
from twin.distributions import parse_duration
sc = load_scenario(Path(sys.argv[1]))
spec = sc.model_copy(update={"duration": parse_duration(sys.argv[2])}).model_dump_json(by_alias=True)
with tempfile.TemporaryDirectory() as d:
    t = time.perf_counter()
    for r in range(int(sys.argv[3])):
        replication_part(spec, r, f"{d}/rep-{r}")
    print(time.perf_counter() - t)
"""


def workload_speedup(scenario: str, duration: str, n: int = 6) -> float:
    """What two bare processes (no Dask, imports not timed) gain over one on this very work, `n` replications
    each: the ceiling this machine's cores and caches set for any scheduler."""
    def times(procs: int) -> list[float]:
        ps = [subprocess.Popen([sys.executable, "-c", WORK, scenario, duration, str(n)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True) for _ in range(procs)]
        return [float(p.communicate()[0]) for p in ps]

    one = times(1)[0]
    return 2 * one / max(times(2))


def part_costs(scenario: str, duration: str, n: int = 2) -> tuple[float, float, float]:
    """Where a replication's time goes on workers, in this process (best of `n`): the simulation alone, the
    simulation with its part files (what a worker does), and merging those parts into the run's files (what the
    main process then does, beside the workers)."""
    sc = load_scenario(ROOT / scenario, overrides={"replications": 1, "duration": duration, "warmup": 0})
    spec = sc.model_dump_json(by_alias=True)
    best = [float("inf")] * 3
    for r in range(n):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            simulate(sc, r)
            t1 = time.perf_counter()
            replication_part(spec, r, f"{tmp}/rep")
            t2 = time.perf_counter()
            writer = RunWriter(Path(tmp) / "out", sc)
            writer.merge(Path(tmp) / "rep")
            writer.close_files()
            t3 = time.perf_counter()
        best = [min(b, x) for b, x in zip(best, (t1 - t0, t2 - t1, t3 - t2))]
    return best[0], best[1], best[2]


def main() -> None:
    own_home()
    print(load_line("before"))
    print(f"the machine's own ceiling: two processes of pure Python do {machine_speedup():.2f}x the work of one\n")
    print(f"{'case':<40}{'1 job':>10}{'2 workers':>11}{'speed-up':>10}{'ceiling':>9}{'cores 1 / 2':>13}{'bound':>7}"
          "  verdict")
    failed = False
    for name, scenario, duration in CASES:
        ceiling = workload_speedup(scenario, duration)
        with tempfile.TemporaryDirectory() as tmp:
            (one, busy_one), (two, busy_two) = (run(scenario, duration, jobs, Path(tmp) / f"jobs-{jobs}")
                                                for jobs in (1, 2))
            a = pd.read_parquet(Path(tmp) / "jobs-1" / "kpis.parquet")
            b = pd.read_parquet(Path(tmp) / "jobs-2" / "kpis.parquet")
            same = a.equals(b)
        ok = one / two >= LIMIT and same
        failed |= not ok
        bound = min(ceiling, 2 / busy_one)
        print(f"{name:<40}{one:>9.1f}s{two:>10.1f}s{one / two:>9.2f}x{ceiling:>8.2f}x"
              f"{busy_one:>7.2f} /{busy_two:>5.2f}{bound:>6.2f}x  {'PASS' if ok else 'FAIL'} "
              f"(limit {LIMIT}x; KPIs {'equal' if same else 'DIFFERENT'})")
    print("\nceiling: the same replications in two bare processes (no Dask) against one, on this machine now")
    print("cores: each run's CPU time (its worker processes included) over its wall time. One job runs the "
          "replications in its own process, and its writer threads (Parquet, the store) already keep part of a "
          "second core busy: two cores can then give at most 2 / (cores of 1) of its speed, whatever the scheduler")
    print("bound: the lower of the two, the most any tool could reach here (a limit above it cannot be met on 2 cores)")
    print("\nper replication on workers (best of 2, in one process): the simulation alone; with its part files (a "
          "worker's task); merging the parts into the run's files (the main process, beside the workers; its "
          "store append comes on top)")
    for name, scenario, duration in CASES:
        sim, part, merge = part_costs(scenario, duration)
        print(f"{name:<40}{sim:>8.2f}s{part:>8.2f}s{merge:>8.2f}s")
    print("\n" + load_line("after"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
