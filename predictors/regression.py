"""The explainable forecaster: regularised linear models on summary features of each window.

Each window is summarised per sensor (last value, mean, spread, slope, min, max); a ridge regression
(penalty chosen by cross-validation) maps the summary to the capped RUL, and one logistic regression per
fault mode to the probability of that failure within the horizon. Coefficients are the explanation.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeCV

from predictors.base import Estimator, ProgressFn, register
from predictors.prep import Windows

SUMMARIES = ("last", "mean", "sd", "slope", "min", "max")


def summarise(x: np.ndarray | Windows) -> np.ndarray:
    """(n, window, features) → (n, features × summaries); lazy windows a chunk at a time."""
    if isinstance(x, Windows):
        parts = [summarise(chunk) for chunk in x.chunks()]
        return np.concatenate(parts) if parts else summarise(np.empty(x.shape, np.float32))
    w = x.shape[1]
    t = np.arange(w, dtype=np.float32) - (w - 1) / 2
    slope = np.einsum("nwf,w->nf", x, t) / max(float((t ** 2).sum()), 1.0)
    return np.concatenate([x[:, -1], x.mean(1), x.std(1), slope * w, x.min(1), x.max(1)], axis=1)


@register
class RidgeForecaster(Estimator):
    """Ridge regression for RUL and logistic regression per fault mode, on window summaries."""

    kind = "regression"
    limits: ClassVar[dict[str, tuple[float, float]]] = {
        "c": (1e-8, 1e8)}

    def __init__(self, *, c: float = 1.0, **common: Any) -> None:
        super().__init__(**common)
        self.c = c

    def params(self) -> dict[str, Any]:
        return {**super().params(), "c": self.c}

    def _fit(self, x: np.ndarray | Windows, rul: np.ndarray, rul_known: np.ndarray, label: np.ndarray,
             label_known: np.ndarray, valid: tuple[Any, ...] | None, progress: ProgressFn | None) -> None:
        s = summarise(x)
        self.mu_, self.sd_ = s.mean(0), s.std(0) + 1e-6
        z = (s - self.mu_) / self.sd_
        ridge = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(z[rul_known], rul[rul_known])
        self.coef_, self.intercept_ = ridge.coef_.astype(np.float64), np.array([ridge.intercept_])
        n_modes = label.shape[1]
        self.lcoef_ = np.zeros((n_modes, z.shape[1]))
        self.lint_ = np.zeros(n_modes)
        for j in range(n_modes):
            y, k = label[label_known[:, j], j], label_known[:, j]
            if progress is not None:
                progress(j, n_modes, f"logistic regression for {self.modes_[j]}")
            if len(np.unique(y)) < 2:  # one class only: its rate as a constant
                p = float(np.clip(y.mean() if len(y) else 0.0, 1e-4, 1 - 1e-4))
                self.lint_[j] = np.log(p / (1 - p))
                continue
            lr = LogisticRegression(C=self.c, max_iter=2000).fit(z[k], y)
            self.lcoef_[j], self.lint_[j] = lr.coef_[0], lr.intercept_[0]

    def _predict(self, x: np.ndarray | Windows) -> tuple[np.ndarray, np.ndarray]:
        z = (summarise(x) - self.mu_) / self.sd_
        logits = z @ self.lcoef_.T + self.lint_
        return z @ self.coef_ + self.intercept_[0], 0.5 * (1 + np.tanh(logits / 2))  # the logistic, no overflow

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"mu": self.mu_, "sd": self.sd_, "coef": self.coef_, "intercept": self.intercept_,
                "lcoef": self.lcoef_, "lint": self.lint_}

    def _restore(self, a: dict[str, np.ndarray]) -> None:
        self.mu_, self.sd_, self.coef_, self.intercept_ = a["mu"], a["sd"], a["coef"], a["intercept"]
        self.lcoef_, self.lint_ = a["lcoef"], a["lint"]
