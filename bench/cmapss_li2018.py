"""A reference for bench/cmapss.py (not a test, not a product model): Li et al. 2018's DCNN written from the paper,
trained as the paper trains it, under the same cross-validation protocol, folds and cuts as `bench/cmapss.py`.

It answers one question: how far is the issue's target under this protocol with the published recipe? The
paper's set-up: the 14 informative sensors (2, 3, 4, 7, 8, 9, 11, 12, 13, 14, 15, 17, 20, 21) scaled to [-1, 1]
with the training rows' min and max; windows of 30 cycles fully inside a unit (no padding); the target capped at
125; four convolutions along time (10 filters, kernel 10, tanh), one to a single filter (kernel 3), dropout 0.5,
a dense layer of 100 (tanh), Xavier initialisation, Adam (learning rate 0.001, batches of 512), a fixed number of
epochs and no early stopping. The convolutions share weights over the sensors (the paper's 2-D kernel 10 × 1),
written here as 1-D convolutions with the sensors folded into the batch: the same function.

    .venv/bin/python bench/cmapss_li2018.py [--seeds 0] [--folds 5] [--epochs 60] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from cmapss import DATA, TARGET_RMSE, TARGET_SCORE, cv_splits

from predictors.metrics import rul_scores

SENSORS = [4 + k for k in (2, 3, 4, 7, 8, 9, 11, 12, 13, 14, 15, 17, 20, 21)]  # columns: unit, cycle, 3 settings
WINDOW, CAP = 30, 125


def windows(g: pd.DataFrame, lo: np.ndarray, hi: np.ndarray, last_only: bool = False) -> np.ndarray:
    """(windows, WINDOW, sensors) of one unit's rows scaled to [-1, 1]: every full window, or only the last."""
    x = (g[SENSORS].to_numpy(np.float32) - lo) / (hi - lo) * 2 - 1
    if last_only:
        return x[len(x) - WINDOW:][None]
    return x[np.arange(WINDOW)[None] + np.arange(len(x) - WINDOW + 1)[:, None]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)

    class DCNN(nn.Module):
        def __init__(self, sensors: int) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            for i in range(4):
                layers += [nn.Conv1d(1 if i == 0 else 10, 10, 10, padding="same"), nn.Tanh()]
            self.conv = nn.Sequential(*layers, nn.Conv1d(10, 1, 3, padding="same"), nn.Tanh())
            self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(WINDOW * sensors, 100), nn.Tanh(),
                                      nn.Linear(100, 1))
            self.sensors = sensors
            for m in self.modules():
                if isinstance(m, (nn.Conv1d, nn.Linear)):
                    nn.init.xavier_normal_(m.weight)
                    nn.init.zeros_(m.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b = x.shape[0]
            z = self.conv(x.permute(0, 2, 1).reshape(b * self.sensors, 1, WINDOW))  # each sensor's series alone
            return self.head(z.reshape(b, self.sensors, WINDOW).permute(0, 2, 1)).squeeze(-1)

    raw = pd.read_csv(DATA, sep=r"\s+", header=None)
    print(f"Li et al. 2018 DCNN under bench/cmapss.py's protocol: {args.folds} folds, seeds {args.seeds}, "
          f"{args.epochs} epochs, {args.threads} thread(s)", flush=True)
    per_seed = []
    for seed in map(int, args.seeds.split(",")):
        preds, truths = [], []
        for k, train, test_rows, ruls in cv_splits(raw, seed, args.folds, WINDOW):
            t = time.perf_counter()
            lo, hi = train[SENSORS].min().to_numpy(np.float32), train[SENSORS].max().to_numpy(np.float32)
            x, y = [], []
            for _, g in train.groupby(0):
                x.append(windows(g, lo, hi))
                y.append(np.minimum(CAP, len(g) - WINDOW - np.arange(len(g) - WINDOW + 1)).astype(np.float32))
            xt, yt = torch.tensor(np.concatenate(x)), torch.tensor(np.concatenate(y))
            torch.manual_seed(seed * 10 + k)
            model = DCNN(len(SENSORS))
            opt = torch.optim.Adam(model.parameters(), 1e-3)
            for _ in range(args.epochs):
                model.train()
                order = torch.randperm(len(xt))
                for i in range(0, len(xt), 512):
                    b = order[i:i + 512]
                    opt.zero_grad()
                    ((model(xt[b]) - yt[b]) ** 2).mean().backward()
                    opt.step()
            model.eval()
            with torch.no_grad():
                pred = model(torch.tensor(np.concatenate([windows(g, lo, hi, True) for g in test_rows]))).numpy()
            preds.append(pred)
            truths.append(np.asarray(ruls, float))
            fold, capped = rul_scores(pred, truths[-1], 1.0), rul_scores(pred, np.minimum(truths[-1], CAP), 1.0)
            print(f"seed {seed} fold {k + 1}/{args.folds} RMSE {fold['rmse']:6.2f}  NASA score {fold['score']:7.1f}  "
                  f"(capped truth RMSE {capped['rmse']:5.2f}; {time.perf_counter() - t:4.0f} s)", flush=True)
        pooled = rul_scores(np.concatenate(preds), np.concatenate(truths), 1.0)  # the score sums over all units
        per_seed.append((pooled["rmse"], pooled["score"]))
    rmse, score = np.array(per_seed).T
    print(f"\nLi 2018 DCNN: RMSE {rmse.mean():.2f} ± {rmse.std(ddof=1) if len(rmse) > 1 else 0:.2f}, NASA score "
          f"{score.mean():.0f} ± {score.std(ddof=1) if len(score) > 1 else 0:.0f} (mean ± sd of {len(rmse)} seed(s); "
          f"target RMSE < {TARGET_RMSE}, score < {TARGET_SCORE:g})")


if __name__ == "__main__":
    main()
