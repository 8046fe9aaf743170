"""The twin's work per simulated event against raw SimPy's, in CPU instructions (a benchmark, not a test).

`bench/sim_speed.py` compares seconds, the measure issue 22's limit is written in. On a shared machine its paired
ratios spread by ±15 % within a run (body_shop_merge 2.67-3.49 around 3.20, 2026-12-03), more than most changes
to the machine loop are worth. This script counts instructions instead: valgrind's cachegrind (no cache
simulation) counts every instruction a process runs, so the figure is the same run after run, whatever else the
machine does. Each scenario is run for N and for 2N shifts in two processes, and the difference is divided by the
events of N shifts: imports and set-up cancel out. Raw SimPy (timeouts from four processes, as in sim_speed.py)
is counted the same way. Instructions are not seconds (the twin runs fewer instructions per cycle than a tight loop
of timeouts), so use this to compare two versions of the code; the limit stays with sim_speed.py.

    .venv/bin/python bench/sim_instructions.py [scenario ...]     # needs valgrind; about a minute per scenario
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from machine import load_line
from sim_speed import CountingEnvironment

from twin.model import Line
from twin.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
SHIFT = 8 * 3600.0
TWIN = """
import sys
from pathlib import Path
from twin.model import Line
from twin.scenario import load_scenario
sc = load_scenario(Path(sys.argv[1]))
sc = sc.model_copy(update={"duration": float(sys.argv[2])})
Line(sc, 0).run(sc.duration)
"""  # argv: scenario file, simulated seconds
RAW = """
import sys
sys.path.insert(0, "bench")
from sim_speed import raw_simpy
raw_simpy(int(sys.argv[1]))
"""  # the limit's own workload (bench/sim_speed.py); its imports cancel out like the twin's


def instructions(code: str, *args: str) -> int:
    """Instructions one Python process running `code` executes, by cachegrind."""
    r = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                        sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True)
    found = re.search(r"I\s+refs:\s+([\d,]+)", r.stderr)
    if r.returncode or found is None:
        raise SystemExit(f"valgrind failed: {r.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def events(path: Path, shifts: int) -> int:
    """Events a run of `shifts` shifts schedules (counted in this process: the same seed, the same events)."""
    sc = load_scenario(path)
    sc = sc.model_copy(update={"duration": shifts * SHIFT})
    env = CountingEnvironment()
    Line(sc, 0, env=env).run(sc.duration)
    return env.scheduled


def main() -> None:
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind): it counts the instructions", file=sys.stderr)
        sys.exit(2)
    names = sys.argv[1:] or ["body_shop_merge", "packaging"]
    print(load_line("before; instruction counts do not depend on it"))
    raw = (instructions(RAW, "400000") - instructions(RAW, "100000")) / 300_000
    print(f"limit's reference: raw SimPy, {raw:,.0f} instructions per event")
    print(f"\n{'scenario':<18}{'shifts':>7}{'events/shift':>14}{'instructions/event':>20}{'x raw':>7}")
    for name in names:
        path = ROOT / "scenarios" / f"{name}.yaml"
        shifts = max(1, round(150_000 / (events(path, 2) / 2)))  # about 150,000 events between the two runs
        counted = events(path, 2 * shifts) - events(path, shifts)
        twin = (instructions(TWIN, str(path), str(2 * shifts * SHIFT))
                - instructions(TWIN, str(path), str(shifts * SHIFT)))
        per_event = twin / counted
        print(f"{name:<18}{shifts:>7}{counted / shifts:>14,.0f}{per_event:>20,.0f}{per_event / raw:>7.2f}")


if __name__ == "__main__":
    main()
