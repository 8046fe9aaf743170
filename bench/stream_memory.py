"""Memory of a streamed `twin run` as the run grows longer (a benchmark, not a test; issue 19).

A streamed run has three processes: the twin (simulation and publisher), the broker (the embedded mosquitto, or
amqtt where mosquitto is not installed) and the run's ingest (a child writing the DuckDB store). Each one's peak
resident memory (the kernel's VmHWM, read every 0.1 s while it lives) is compared between a short and a long run
of body_shop (one replication, flat out). The limit: no process grows by more than 20 % from the short run to
the long one, and none peaks above 400 MB: memory is bounded by the batches in flight, not by the run's length.

    .venv/bin/python bench/stream_memory.py                    # 2 h against 12 h (under a minute)
    .venv/bin/python bench/stream_memory.py --long '1 d'
    LINETWIN_EMBEDDED_BROKER=amqtt .venv/bin/python bench/stream_memory.py   # amqtt, as without mosquitto
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from machine import load_line, own_home

ROOT = Path(__file__).resolve().parent.parent
TWIN = [sys.executable, "-m", "twin.app.cli"]
GROWTH_LIMIT = 0.20
PEAK_LIMIT_MB = 400.0


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _role(pid: int) -> str | None:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    words = [w.decode(errors="replace") for w in cmd if w]
    if any(w.endswith("mosquitto") for w in words[:1]) or "sensors.bus.amqtt_server" in words:
        return "broker"
    if "ingest" in words:
        return "ingest"
    return None


def _hwm(pid: int) -> float | None:
    """A live process's peak RSS in MB (None once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmHWM:\s+(\d+)", status)
    return int(found[1]) / 1024 if found else None


def streamed_run(duration: str) -> tuple[float, dict[str, float]]:
    """Wall seconds and the peak RSS (MB) of the twin, the broker and the ingest of one streamed run."""
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        proc = subprocess.Popen([*TWIN, "run", str(ROOT / "scenarios/body_shop.yaml"), "--replications", "1",
                                 "--duration", duration, "--out", f"{tmp}/run"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "120"})
        peaks: dict[str, float] = {}
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                pids = [(proc.pid, "twin")]
                for child in _children(proc.pid):
                    role = _role(child)
                    if role is not None:
                        pids.append((child, role))
                for pid, role in pids:
                    mb = _hwm(pid)
                    if mb is not None:
                        peaks[role] = max(peaks.get(role, 0.0), mb)
                done.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, err = proc.communicate()
        done.set()
        sampler.join()
        if proc.returncode != 0:
            raise SystemExit(f"twin run --duration {duration!r} failed: {err.decode()[-2000:]}")
        return time.perf_counter() - t, peaks


def main() -> None:
    own_home()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", default="2 h")
    ap.add_argument("--long", default="12 h")
    args = ap.parse_args()
    print(load_line("before"))
    runs = {d: streamed_run(d) for d in (args.short, args.long)}
    print(f"\n{'process':<10}" + "".join(f"{'peak RSS ' + d:>18}" for d in runs) + f"{'growth':>9}  verdict")
    failed = False
    for role in ("twin", "broker", "ingest"):
        short, long = (runs[d][1].get(role, float("nan")) for d in runs)
        growth = long / short - 1
        ok = growth < GROWTH_LIMIT and long <= PEAK_LIMIT_MB
        failed |= not ok
        print(f"{role:<10}{short:>16.0f}MB{long:>16.0f}MB{growth:>8.0%}  {'PASS' if ok else 'FAIL'}")
    print("wall: " + ", ".join(f"{d} {w:.1f} s" for d, (w, _) in runs.items()))
    print(f"limits: growth < {GROWTH_LIMIT:.0%}, peak <= {PEAK_LIMIT_MB:.0f} MB per process")
    print(load_line("after"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
