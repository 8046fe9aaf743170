"""How busy this machine is, for every benchmark's report: figures mean little without it.

The load average counts this machine's own processes only. On a shared host the same code also runs slower when
the neighbours are busy (bottling's `twin run` took 8.3 s and 14.8 s on one idle machine an hour apart), so each
line also times a fixed piece of pure Python: compare figures taken at about the same probe.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def probe_ns() -> float:
    """Nanoseconds per iteration of a fixed pure-Python loop, best of 5 runs of about 0.05 s each."""
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        x = 0
        for i in range(1_000_000):
            x += i
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def load_line(when: str) -> str:
    """'N cores, load average 1m 5m 15m, speed probe P ns (when)'."""
    one, five, fifteen = os.getloadavg()
    return (f"machine: {os.cpu_count()} cores, load average {one:.2f} {five:.2f} {fifteen:.2f}, speed probe "
            f"{probe_ns():.1f} ns a loop step (lower is faster) ({when})")


def own_home() -> None:
    """Index the runs a benchmark writes into its temporary folders in a linetwin home of its own, removed at exit
    (its `twin` children inherit it): in the user's home they stayed listed, for their dashboard, long after the
    folders were gone."""
    home = tempfile.mkdtemp(prefix="linetwin-bench-home-")
    os.environ["LINETWIN_HOME"] = home
    atexit.register(shutil.rmtree, home, ignore_errors=True)


def process(args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB, the kernel's wait4 ru_maxrss) of one child process, its tables
    printed 120 columns wide; fails loudly with the end of its stderr if it fails."""
    t = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "COLUMNS": "120"})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    return wall, usage.ru_maxrss / 1024
