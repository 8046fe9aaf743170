"""Policy comparison benchmark (not a test): wall time of 4 policies × 10 replications of the 10-station
body shop over a simulated week, and the parallel speed-up on this machine's cores.

The predictive policy needs models of the body shop: they are trained first on run-to-failure runs
(2 × 2 days, straight into a store). The speed-up is measured on the same comparison with 1 process
and with one per core (4 policies × `--speedup-reps` replications, so the serial run stays short).
Issue 7 asks for the figures, with no fixed target; the report of the full comparison is written to
reports/bench-compare/.

    .venv/bin/python bench/compare.py [--replications 10] [--speedup-reps 4]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import own_home  # noqa: E402

from twin.app.compare import PolicyParams, compare, write_report  # noqa: E402
from twin.scenario import load_scenario  # noqa: E402

POLICIES = ["run-to-failure", "preventive", "condition-based", "predictive"]


def twin(*args: object) -> None:
    subprocess.run([sys.executable, "-m", "twin.app.cli", *map(str, args)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)


def main() -> None:
    own_home()
    ap = argparse.ArgumentParser()
    ap.add_argument("--replications", type=int, default=10)
    ap.add_argument("--speedup-reps", type=int, default=4)
    ap.add_argument("--days", type=float, default=7.0)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        twin("run", "scenarios/body_shop.yaml", "--no-stream", "--policy", "run-to-failure", "--duration", "2 d",
             "--replications", 2, "--out", Path(tmp) / "train")
        sim_s = time.perf_counter() - t
        t = time.perf_counter()
        twin("train", Path(tmp) / "train", "--model", "lstm", "--out", Path(tmp) / "models")
        train_s = time.perf_counter() - t
        print(f"models for the predictive policy: training data {sim_s:.0f} s, LSTM training {train_s:.0f} s")
        base = load_scenario(ROOT / "scenarios" / "body_shop.yaml")
        # the file gives weld cells a condition limit and handling cells a schedule: the other where missing
        params = PolicyParams(models=str(Path(tmp) / "models"), every=12 * 3600.0, threshold=0.75)
        sc = base.model_copy(update={"duration": args.days * 86400, "warmup": 3600.0,
                                     "replications": args.replications})
        cmp = compare(sc, POLICIES, params, jobs=cores)
        n = len(POLICIES) * args.replications
        print(f"\n{len(POLICIES)} policies × {args.replications} replications of {args.days:g} simulated days, "
              f"10 stations: {cmp.wall:.1f} s wall on {cores} processes ({cmp.wall / n:.2f} s per simulation)")
        per = cmp.kpis[cmp.kpis.kpi == "total cost"].groupby("policy").value.mean()
        print("mean total cost per policy:", ", ".join(f"{p} {per[p]:,.0f}" for p in POLICIES))
        path = write_report(cmp, ROOT / "reports" / "bench-compare")
        print(f"report: {path}")
        small = sc.model_copy(update={"replications": args.speedup_reps})
        serial = compare(small, POLICIES, params, jobs=1).wall
        parallel = compare(small, POLICIES, params, jobs=cores).wall
        print(f"\nspeed-up on {len(POLICIES)} × {args.speedup_reps}: 1 process {serial:.1f} s, {cores} processes "
              f"{parallel:.1f} s: {serial / parallel:.2f}× (ideal {cores}×)")


if __name__ == "__main__":
    main()
