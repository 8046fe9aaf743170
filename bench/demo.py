"""`make demo`'s run, timed (a benchmark, not a test; issue 19): `twin run scenarios/bottling.yaml` (3 x 8 h, 3.0
million readings streamed through MQTT into DuckDB) as a whole process, on the embedded mosquitto (limit 15 s)
and on the embedded amqtt that a machine without mosquitto gets (limit 30 s). The two are alternated, ROUNDS times
each; the verdict takes the mean. Installation is not timed (`make demo` installs once, then runs this command).

    .venv/bin/python bench/demo.py [rounds]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

from machine import load_line, own_home

ROOT = Path(__file__).resolve().parent.parent
LIMITS = {"mosquitto": 15.0, "amqtt": 30.0}


def demo(broker: str, out: Path) -> float:
    """Wall seconds of one `twin run scenarios/bottling.yaml` on the embedded `broker`; exits on a failed run."""
    env = {**os.environ, "LINETWIN_EMBEDDED_BROKER": broker}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "twin.app.cli", "run", "scenarios/bottling.yaml", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"the demo's run on {broker} failed:\n{proc.stderr[-2000:]}")
    return wall


def main() -> None:
    own_home()
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    brokers = [b for b in LIMITS if b != "mosquitto" or shutil.which("mosquitto")]
    print(load_line("before"))
    times: dict[str, list[float]] = {b: [] for b in brokers}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for b in brokers:
                times[b].append(demo(b, Path(tmp) / f"{b}-{r}"))
                print(f"round {r + 1}: {b} {times[b][-1]:.1f} s", flush=True)
    print(load_line("after"))
    print(f"\n{'broker':<11}{'runs [s]':<28}{'mean':>7}{'limit':>7}  verdict")
    for b, ts in times.items():
        ok = mean(ts) <= LIMITS[b]
        print(f"{b:<11}{', '.join(f'{t:.1f}' for t in ts):<28}{mean(ts):>6.1f}s{LIMITS[b]:>6.0f}s  "
              f"{'PASS' if ok else 'FAIL'}")
    if "mosquitto" not in times:
        print("mosquitto is not installed here: its limit was not measured (apt-get install mosquitto)")


if __name__ == "__main__":
    main()
