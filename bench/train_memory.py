"""What `twin train` holds in memory as the history grows (a benchmark, not a test): body_shop run to failure for 7
and for 30 days (`twin run --no-stream`, 30 and 130 million readings), then `twin train` on each, regression and the
LSTM for one epoch (its memory is its first epoch's; more epochs hold no more), as whole processes: peak resident
memory (wait4's ru_maxrss) and wall time.

The training data grows with the history (a row per machine and minute: 4.3 times the rows from 7 to 30 days), so
no flat limit holds; the limit compared against: the month's peak at most 1 GB above the week's. Before the
windows were made a batch at a time and the store's reader capped its cache (2026-12-06), regression peaked at 0.66
GB for the week and 2.06 GB for the month (+1.4 GB), the LSTM at 2.04 GB for the month.

    .venv/bin/python bench/train_memory.py          # about 4 minutes on 2 cores
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from machine import load_line, own_home, process

ROOT = Path(__file__).resolve().parent.parent
TWIN = [sys.executable, "-m", "twin.app.cli"]
GROWTH_LIMIT_MB = 1024.0


def main() -> None:
    own_home()
    print(load_line("before"))
    peaks: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        print(f"\n{'history':<10}{'model':<22}{'wall':>8}{'peak RSS':>11}")
        for days in ("7 d", "30 d"):
            run = Path(tmp) / days.replace(" ", "")
            process([*TWIN, "run", "scenarios/body_shop.yaml", "--no-stream", "--policy", "run-to-failure",
                     "--duration", days, "--replications", "1", "--out", str(run)], ROOT)
            for model, extra in (("regression", []), ("lstm", ["--epochs", "1"])):
                wall, rss = process([*TWIN, "train", str(run), "--model", model, *extra,
                                     "--out", str(Path(tmp) / f"m-{model}-{run.name}")], ROOT)
                peaks[(days, model)] = rss
                print(f"{days:<10}{model + (' (one epoch)' if extra else ''):<22}{wall:>7.1f}s{rss:>8.0f} MB",
                      flush=True)
    failed = False
    for model in ("regression", "lstm"):
        growth = peaks[("30 d", model)] - peaks[("7 d", model)]
        failed |= growth > GROWTH_LIMIT_MB
        print(f"{model}: 7 to 30 days, peak RSS {growth:+.0f} MB (limit +{GROWTH_LIMIT_MB:.0f} MB): "
              f"{'PASS' if growth <= GROWTH_LIMIT_MB else 'FAIL'}")
    print("\n" + load_line("after"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
