"""How well `twin whatif` predicts (a benchmark, not a test): a line's run continued from its own store's state at a
moment mid-run, against what that run really made in the hours after it.

For each seed, `twin run tests/scenarios/whatif.yaml --no-stream` (16 h: four cells, one technician, failures every
few hours) writes its store and ground truth; `twin whatif --from` that store at 10:00 and at 14:00 forecasts the
next 8 h in 30 replications (seeds of their own). A forecast is calibrated when the run's real good parts fall inside
its 90 % range (5th to 95th percentile of the replications) as often as a new replication would, at a mean percentile
near 0.5 (below: the forecast runs high; above: low). A range read from n replications holds a new draw less often
than 90 %: its ends are the sample's order statistics at 1 + 0.05 (n - 1) and 1 + 0.95 (n - 1), which a new draw
falls between with probability (0.9 (n - 1)) / (n + 1), 84 % for 30. Every case is printed, then the count and
the mean over all of them.

    .venv/bin/python bench/whatif.py                 # 8 seeds x 2 moments, about 1 min on 2 cores
    .venv/bin/python bench/whatif.py --seeds 16
    .venv/bin/python bench/whatif.py --scenario bench/scenarios/whatif_crew.yaml    # a technician in demand
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from machine import load_line, own_home

from twin.truth import left_good

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "scenarios" / "whatif.yaml"
MOMENTS = ("2026-01-05 10:00", "2026-01-05 14:00")
AHEAD = pd.Timedelta("8 h")


def twin(*args: object) -> None:
    r = subprocess.run([sys.executable, "-m", "twin.app.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                       text=True)
    if r.returncode:
        raise SystemExit(f"twin {' '.join(map(str, args))} failed:\n{r.stderr[-2000:]}")


def case(tmp: Path, scenario: Path, seed: int, moment: str, replications: int) -> tuple[int, float, float, float]:
    """The run's real good parts in the 8 h after `moment`, the forecast's mean, and where the real figure falls
    among the replications (the share below it, ties counted half) and whether inside the 5-95 % range (1 or 0)."""
    run = tmp / f"run-{seed}"
    if not run.exists():
        twin("run", scenario, "--no-stream", "--seed", seed, "--out", run)
    at = pd.Timestamp(moment)
    out = tmp / f"whatif-{seed}-{at.hour}.csv"
    twin("whatif", scenario, "--from", f"duckdb:///{run / 'twin.duckdb'}", "--at", at.isoformat(), "--duration",
         "8 h", "--replications", replications, "--seed", 1000 + seed, "--out", out)
    parts = pd.read_parquet(run / "truth" / "parts.parquet")
    made = int(((parts.exit_time >= at) & (parts.exit_time < at + AHEAD) & left_good(parts)).sum())
    reps = pd.read_csv(out.with_name(out.stem + "-replications.csv"))["as is"].to_numpy(dtype=float)
    percentile = float(np.mean(reps < made) + 0.5 * np.mean(reps == made))
    low, high = np.percentile(reps, [5, 95])
    return made, float(reps.mean()), percentile, float(low <= made <= high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="runs to continue (seeds 1..N)")
    parser.add_argument("--replications", type=int, default=30)
    parser.add_argument("--scenario", type=Path, default=SCENARIO, help="a 16 h line from 06:00 (default: %(default)s; "
                        "bench/scenarios/whatif_crew.yaml: six cells, one technician in demand)")
    args = parser.parse_args()
    own_home()
    print(load_line("before"))
    print(f"{'seed':>5}{'from':>8}{'made':>7}{'forecast':>10}{'percentile':>12}{'inside 90 %':>13}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(1, args.seeds + 1):
            for moment in MOMENTS:
                made, mean, pct, inside = case(Path(tmp), args.scenario.resolve(), seed, moment, args.replications)
                rows.append((pct, inside))
                print(f"{seed:>5}{moment[-5:]:>8}{made:>7}{mean:>10.1f}{pct:>12.2f}{'yes' if inside else 'NO':>13}",
                      flush=True)
    pct, inside = np.array(rows).T
    expected = 0.9 * (args.replications - 1) / (args.replications + 1)
    print(f"\n{int(inside.sum())} of {len(rows)} cases inside the forecast's 90 % range ({expected:.0%} expected of a "
          f"range read from {args.replications} replications); mean percentile {pct.mean():.2f} (0.5: unbiased; below: "
          "the forecast runs high)")
    print(load_line("after"))


if __name__ == "__main__":
    main()
