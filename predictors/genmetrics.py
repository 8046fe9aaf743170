"""Quality scores of synthetic windows (../shared/reference/generative-metrics.md: the TimeGAN protocol).

Every score compares real and synthetic windows (n, T, d) min-max scaled with the real data's range.
Lower is better for all: the discriminative score (a post-hoc GRU classifier's |accuracy - 0.5|), the
predictive score (a GRU trained on synthetic windows to predict the next step, its MAE on real ones),
and the distances between per-feature marginals and autocorrelation functions. Conditioning is scored
by a classifier trained on real windows labelled by fault mode, asked to recognise the synthetic ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import wasserstein_distance
from sklearn.ensemble import HistGradientBoostingClassifier
from torch import nn

ACF_LAGS = 10
CLASSIFIABLE = 0.5  # fault-mode windows this worn (or more) are told apart by the conditioning classifier


def minmax(real: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale real and other windows to [0, 1] with the real windows' per-feature range."""
    flat = real.reshape(-1, real.shape[2])
    lo, hi = flat.min(axis=0), flat.max(axis=0)
    span = np.where(hi - lo > 1e-9, hi - lo, 1.0)
    return [((a - lo) / span).astype(np.float32) for a in (real, *others)]


class _GRU(nn.Module):
    def __init__(self, d: int, hidden: int, out: int) -> None:
        super().__init__()
        self.gru = nn.GRU(d, hidden, batch_first=True)
        self.head = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(x)[0])


def _hidden(d: int) -> int:
    return max(4, d // 2)  # the protocol's "about d/2", at least 4 so a few sensors still get a real classifier


def discriminative_score(real: np.ndarray, synth: np.ndarray, iterations: int = 2000, seed: int = 0) -> float:
    """|accuracy - 0.5| of a GRU told to tell real (1) from synthetic (0) windows, on a held-out 20 %."""
    r, s = minmax(real, synth)
    n = min(len(r), len(s))
    rng = np.random.default_rng(seed)
    r, s = r[rng.choice(len(r), n, replace=False)], s[rng.choice(len(s), n, replace=False)]
    x = np.concatenate([r, s])
    y = np.concatenate([np.ones(n), np.zeros(n)]).astype(np.float32)
    order = rng.permutation(len(x))
    cut = int(0.8 * len(x))
    tr, te = order[:cut], order[cut:]
    torch.manual_seed(seed)
    net = _GRU(x.shape[2], _hidden(x.shape[2]), 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(iterations):
        idx = torch.from_numpy(tr)[torch.randint(len(tr), (min(128, len(tr)),), generator=gen)]
        loss = nn.functional.binary_cross_entropy_with_logits(net(xt[idx])[:, -1, 0], yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = (net(xt[te])[:, -1, 0] > 0).float()
    return float(abs((pred == yt[te]).float().mean() - 0.5))


def predictive_score(train: np.ndarray, real_test: np.ndarray, scale_from: np.ndarray, iterations: int = 2000,
                     seed: int = 0) -> float:
    """Train a GRU on `train` windows to predict every feature one step ahead; its MAE on real test windows.

    Trained on synthetic windows this is "train on synthetic, test on real"; trained on real ones, the
    reference it should come close to. Scaled with `scale_from` (the real data)."""
    _, a, b = minmax(scale_from, train, real_test)
    torch.manual_seed(seed)
    d = a.shape[2]
    net = _GRU(d, _hidden(d), d)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xa, xb = torch.from_numpy(a), torch.from_numpy(b)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(iterations):
        idx = torch.randint(len(xa), (min(128, len(xa)),), generator=gen)
        w = xa[idx]
        loss = (net(w[:, :-1]) - w[:, 1:]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((net(xb[:, :-1]) - xb[:, 1:]).abs().mean())


def marginal_distance(real: np.ndarray, synth: np.ndarray) -> float:
    """Mean over features of the Wasserstein-1 distance between real and synthetic values (scaled)."""
    r, s = minmax(real, synth)
    return float(np.mean([wasserstein_distance(r[:, :, j].ravel(), s[:, :, j].ravel()) for j in range(r.shape[2])]))


def acf(x: np.ndarray, lags: int = ACF_LAGS) -> np.ndarray:
    """Autocorrelation per lag (1..lags) and feature, averaged over windows (each window demeaned)."""
    z = x - x.mean(axis=1, keepdims=True)
    var = (z ** 2).sum(axis=1)
    out = np.empty((lags, x.shape[2]))
    for k in range(1, lags + 1):
        num = (z[:, k:] * z[:, :-k]).sum(axis=1)
        out[k - 1] = np.nanmean(np.where(var > 1e-12, num / np.where(var > 1e-12, var, 1.0), np.nan), axis=0)
    return np.nan_to_num(out)


def acf_distance(real: np.ndarray, synth: np.ndarray) -> float:
    """Mean absolute difference between the real and synthetic autocorrelation functions."""
    lags = min(ACF_LAGS, real.shape[1] - 1)
    return float(np.abs(acf(real, lags) - acf(synth, lags)).mean())


def summary_features(x: np.ndarray) -> np.ndarray:
    """Per window and sensor: mean, standard deviation, last value and change over the window."""
    return np.concatenate([x.mean(axis=1), x.std(axis=1), x[:, -1], x[:, -1] - x[:, 0]], axis=1)


@dataclass
class ModeClassifier:
    """Tells fault modes apart from window summaries; trained on real windows only."""

    labels: list[str]
    model: HistGradientBoostingClassifier

    @classmethod
    def fit(cls, x: np.ndarray, mode: np.ndarray, seed: int = 0) -> ModeClassifier:
        labels = sorted(set(mode))
        clf = HistGradientBoostingClassifier(random_state=seed, max_iter=200)
        clf.fit(summary_features(x), mode)
        return cls(labels, clf)

    def accuracy(self, x: np.ndarray, mode: np.ndarray) -> float:
        if not len(x):
            return float("nan")
        return float((self.model.predict(summary_features(x)) == mode).mean())


def classifiable(mode: np.ndarray, severity: np.ndarray, healthy: str = "healthy") -> np.ndarray:
    """Windows whose label shows on the sensors: healthy ones, and fault modes worn at least CLASSIFIABLE."""
    return (mode == healthy) | (severity >= CLASSIFIABLE)
