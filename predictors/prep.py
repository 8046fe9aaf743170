"""Preprocessing every model shares: clean dropouts and stuck sensors, drop constant features, scale, window.

Cleaning is causal (it looks only backwards), so a live sliding window is cleaned exactly as the same
rows were in training. Scaling statistics come from training units only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from predictors.data import RunToFailure

STUCK_ROWS = 3  # a value repeated exactly this many rows in a row is a stuck sensor, not a reading


def clean(values: np.ndarray, stuck_rows: int = STUCK_ROWS) -> np.ndarray:
    """One unit's rows (time × feature): stuck runs and dropouts become the last good value (NaN if none yet)."""
    x = np.array(values, dtype=np.float64)
    if len(x) >= stuck_rows:
        same = np.ones((len(x) - stuck_rows + 1, x.shape[1]), dtype=bool)
        for k in range(1, stuck_rows):
            same &= x[k:len(x) - stuck_rows + 1 + k] == x[:len(x) - stuck_rows + 1]
        stuck = np.zeros_like(x, dtype=bool)
        stuck[stuck_rows - 1:] = same  # flagged from the row that completes the run on
        x[stuck] = np.nan
    return ffill(x)


def ffill(x: np.ndarray) -> np.ndarray:
    """Each NaN of a (time × feature) array replaced by the last value before it in its column (NaN if none): what
    pandas' `ffill` does, without building a DataFrame for every live window."""
    missing = np.isnan(x)
    if not missing.any():
        return x
    rows = np.where(missing, 0, np.arange(len(x))[:, None])
    np.maximum.accumulate(rows, axis=0, out=rows)
    return x[rows, np.arange(x.shape[1])]


@dataclass
class Preprocessor:
    """Cleaning, feature selection and scaling fitted on training units; windows of the last `window` rows."""

    window: int = 30
    features: list[str] | None = None  # inputs expected, in order
    kept: list[int] | None = None  # indices of the features that vary in training
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    def fit(self, ds: RunToFailure) -> Preprocessor:
        self.features = list(ds.features)
        x = self._clean(ds)
        sd = np.nanstd(x, axis=0)
        self.kept = [i for i, s in enumerate(sd) if np.isfinite(s) and s > 1e-9]
        if not self.kept:
            raise ValueError("every feature is constant in the training data; nothing to learn from")
        self.mean = np.nanmean(x[:, self.kept], axis=0)
        self.scale = sd[self.kept]
        return self

    def _clean(self, ds: RunToFailure) -> np.ndarray:
        x = ds.frame[ds.features].to_numpy(dtype=np.float64)
        out = np.empty_like(x)
        for idx in ds.frame.groupby("unit", sort=False).indices.values():
            out[idx] = clean(x[idx])
        return out

    def scaled(self, x: np.ndarray) -> np.ndarray:
        """Cleaned rows → the kept features standardised; what is still missing becomes the training mean (0)."""
        assert self.kept is not None and self.mean is not None and self.scale is not None
        z = (x[:, self.kept] - self.mean) / self.scale
        return np.nan_to_num(z, nan=0.0).astype(np.float32)

    def windows(self, ds: RunToFailure, rows: np.ndarray | None = None) -> np.ndarray:
        """(rows, window, kept features): for each row, the window of rows ending at it within its unit,
        padded at a unit's start with its first row."""
        if ds.features != self.features:
            raise ValueError(f"the data has features {ds.features}, the model was trained on {self.features}")
        z = self.scaled(self._clean(ds))
        w = self.window
        want = np.arange(len(ds)) if rows is None else np.asarray(rows)
        out = np.empty((len(want), w, z.shape[1]), dtype=np.float32)
        pos = np.empty(len(ds), dtype=np.int64)
        for idx in ds.frame.groupby("unit", sort=False).indices.values():
            pos[idx] = np.arange(len(idx))
        for idx in ds.frame.groupby("unit", sort=False).indices.values():
            unit_rows = np.isin(want, idx)
            if not unit_rows.any():
                continue
            padded = np.concatenate([np.repeat(z[idx[:1]], w - 1, axis=0), z[idx]])
            view = sliding_window_view(padded, w, axis=0)  # (len(idx), features, w)
            out[unit_rows] = view[pos[want[unit_rows]]].transpose(0, 2, 1)
        return out

    def live_window(self, rows: np.ndarray) -> np.ndarray:
        """One machine's recent rows (oldest first, raw features) → its model window (window × kept)."""
        z = self.scaled(clean(rows))
        if len(z) < self.window:
            z = np.concatenate([np.repeat(z[:1], self.window - len(z), axis=0), z])
        return z[-self.window:]

    def state(self) -> dict[str, Any]:
        return {"window": self.window, "features": self.features, "kept": self.kept,
                "mean": np.asarray(self.mean).tolist(), "scale": np.asarray(self.scale).tolist()}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> Preprocessor:
        return cls(s["window"], s["features"], s["kept"], np.asarray(s["mean"]), np.asarray(s["scale"]))


def split_units(ds: RunToFailure, fraction: float, seed: int) -> tuple[RunToFailure, RunToFailure]:
    """Split by unit (never by row): about `fraction` of the units, at least one, go to the second part."""
    units = np.array(sorted(ds.frame["unit"].unique()))
    if len(units) < 2:
        return ds, ds.subset([])
    rng = np.random.default_rng(seed)
    n_valid = max(1, round(len(units) * fraction))
    valid = set(rng.choice(units, n_valid, replace=False).tolist())
    return ds.subset([u for u in units if u not in valid]), ds.subset(sorted(valid))


def unit_folds(ds: RunToFailure, k: int, seed: int) -> list[list[str]]:
    """The units in (at most) k folds of nearly equal size, shuffled by the seed (never split within a unit)."""
    units = np.array(sorted(ds.frame["unit"].unique()))
    order = np.random.default_rng(seed).permutation(units)
    return [f.tolist() for f in np.array_split(order, min(k, len(units))) if len(f)]
