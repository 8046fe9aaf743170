"""Synthetic-data benchmark (not a test): generator training and sampling speed, quality, usefulness.

Per scenario: run-to-failure training runs and held-out runs with another seed are simulated into a
store; a conditional VAE and a WGAN-GP are trained per machine type on 30-minute windows and scored
on the held-out runs (`predictors.synth_eval.quality`, the report `twin synth evaluate` writes); then
the rare-fault experiment: the LSTM trained with one failure of a fault mode, with and without
synthetic windows of it. Printed next to the targets (issue 5): VAE discriminative score <= 0.15 (the
TimeGAN protocol: against the windows it learnt from; the held-out score is printed beside it),
conditional accuracy >= 0.8, augmentation lifts the rare mode's alert F1 by >= 5 points.

    .venv/bin/python bench/synth.py [--scenario bottling] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import own_home  # noqa: E402

from predictors.synth import generators, twin_windows  # noqa: E402
from predictors.synth_eval import anomaly_alerts, anomaly_table, augmentation, quality, quality_table  # noqa: E402
from twin.app.direct import store_scenario  # noqa: E402
from twin.scenario import load_scenario, with_policy  # noqa: E402

# scenario → (training replications, days each, the fault mode made rare)
PLAN = {"bottling": (3, 2.0, "overheating"), "body_shop": (2, 2.0, "electrode_wear"),
        "cnc_cell": (3, 6.0, "tool_wear")}
TARGETS = {"discriminative": 0.15, "conditional accuracy": 0.8, "lift": 5.0}


def main() -> None:
    own_home()
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", action="append", choices=sorted(PLAN), help="repeatable (default: all three)")
    ap.add_argument("--quick", action="store_true", help="fewer epochs and iterations (a smoke run)")
    args = ap.parse_args()
    epochs, updates, steps, iters = (5, 0, 200, 300) if args.quick else (30, 5000, 2000, 2000)
    for name in args.scenario or list(PLAN):
        reps, days, rare = PLAN[name]
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            base = with_policy(load_scenario(ROOT / "scenarios" / f"{name}.yaml"), "run-to-failure")
            sc = base.model_copy(update={"duration": days * 86400, "replications": reps, "warmup": 0.0})
            t0 = time.perf_counter()
            for part, update in (("train", {}), ("heldout", {"seed": sc.seed + 1000, "replications": 2})):
                (work / part).mkdir()
                store_scenario(sc.model_copy(update=update), work / part)
            print(f"\n## {name}: {reps} × {days:g} d training runs + 2 held-out runs, simulated in "
                  f"{time.perf_counter() - t0:.0f} s")
            train = twin_windows([work / "train"], 30, 1)
            held = twin_windows([work / "heldout"], 30, 5)
            vaes = {}
            for group, w in train.items():
                gens = {}
                for kind in generators():
                    t = time.perf_counter()
                    params = {"epochs": epochs, "updates": updates} if kind == "vae" else {"steps": steps}
                    gens[kind] = generators()[kind](seed=0, **params).fit(w)
                    fit_s = time.perf_counter() - t
                    t = time.perf_counter()
                    gens[kind].sample(w.mode[:1000], w.severity[:1000], 1000, seed=1)
                    print(f"{group} {kind}: {len(w):,} training windows, trained in {fit_s:.0f} s, "
                          f"samples {1000 / (time.perf_counter() - t):,.0f} windows/s")
                rep = quality(gens, held[group], iters, train=w.subset(np.arange(len(w)) % 5 == 0))
                print(quality_table(rep).to_markdown(index=False))
                vae = next(q for q in rep.rows if q.kind == "vae").scores
                disc = vae["discriminative vs training"]
                print(f"VAE discriminative {disc:.3f} against its training windows, the TimeGAN protocol (target "
                      f"<= {TARGETS['discriminative']}: {'met' if disc <= TARGETS['discriminative'] else 'NOT met'}),"
                      f" {vae['discriminative']:.3f} against held-out units (their own floor "
                      f"{rep.reference['discriminative (real A)']:.3f}); "
                      f"conditional accuracy {vae['conditional accuracy']:.3f} (target >= "
                      f"{TARGETS['conditional accuracy']}: "
                      f"{'met' if vae['conditional accuracy'] >= TARGETS['conditional accuracy'] else 'NOT met'})")
                vaes[group] = gens["vae"]
            alerts = anomaly_table(anomaly_alerts(vaes, [work / "heldout"]))  # type: ignore[arg-type]
            print(f"alerts on the VAE's anomaly score alone, held-out runs:\n{alerts.to_markdown(index=False)}")
            t = time.perf_counter()
            aug = augmentation([work / "train"], [work / "heldout"], rare, keep=1, window=30,
                               generator={"epochs": epochs, "updates": updates})
            print(f"\nrare {rare} ({aug.group}), experiment in {time.perf_counter() - t:.0f} s:")
            print(aug.table().to_markdown(index=False))
            print(f"F1 lift {aug.lift:+.1f} points (target >= {TARGETS['lift']}: "
                  f"{'met' if aug.lift >= TARGETS['lift'] else 'NOT met'})")


if __name__ == "__main__":
    main()
