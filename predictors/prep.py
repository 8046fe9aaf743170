"""Preprocessing every model shares: clean dropouts and stuck sensors, drop constant features, scale, window.

Cleaning is causal (it looks only backwards), so a live sliding window is cleaned exactly as the same
rows were in training. Scaling statistics come from training units only. With operating-condition features (a
machine run at several loads, speeds or altitudes), each row's regime is found from them and the other features
are standardised per regime, so that a change of regime does not read as wear.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, NotRequired

import numpy as np
from pydantic import Field, TypeAdapter
from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

from predictors.data import RunToFailure
from predictors.lifecycle import Finite, Name, Whole, checked

STUCK_ROWS = 3  # a value repeated exactly this many rows in a row is a stuck sensor, not a reading
MAX_REGIMES = 12
MAX_Z = 1e6  # standardised values are bounded here: far beyond any sensor's real deviation
# regimes found automatically: more than one only when the conditions' clusters stand this clearly apart (mean
# silhouette: well-separated regimes such as C-MAPSS's six flight conditions score near 1, noise far lower)
CLEAR_REGIMES = 0.7


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


class Windows:
    """Windows of rows, (n, window, features) float32, made when indexed: they behave as that array (len, shape,
    [i], [i:j], [indices], np.asarray) but hold each row once, not `window` times: a year of a weld cell's minutes
    made 3.8 GB of hour-long windows, and training and evaluation held them all. `extra` windows (synthetic ones,
    already made) follow the rows' own."""

    def __init__(self, rows: np.ndarray, starts: np.ndarray, window: int, extra: np.ndarray | None = None) -> None:
        self._rows, self._starts, self.window = rows, starts, window
        self._extra = extra if extra is not None else np.empty((0, window, rows.shape[1]), np.float32)
        self.shape = (len(starts) + len(self._extra), window, rows.shape[1])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: Any) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            return self[[range(len(self))[idx]]][0]  # a negative index counts from the end, as an array's
        picked = np.asarray(range(len(self))[idx] if isinstance(idx, slice) else idx, dtype=np.int64)
        own = picked < len(self._starts)
        if own.all():
            return self._made(picked)
        out = np.empty((len(picked), *self.shape[1:]), np.float32)
        out[own] = self._made(picked[own])
        out[~own] = self._extra[picked[~own] - len(self._starts)]
        return out

    def _made(self, picked: np.ndarray) -> np.ndarray:
        """The windows of rows `picked` (all among the rows', not the extra ones)."""
        return self._rows[self._starts[picked][:, None] + np.arange(self.window)]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[np.arange(len(self))]
        return whole if dtype is None else whole.astype(dtype)

    def with_extra(self, extra: np.ndarray) -> Windows:
        """These windows, then `extra`'s (n, window, features)."""
        return Windows(self._rows, self._starts, self.window,
                       np.concatenate([self._extra, extra.astype(np.float32)]))

    def chunks(self, size: int = 1 << 15) -> Iterator[np.ndarray]:
        """The windows in order, `size` at a time: what a pass over all of them holds at once."""
        for i in range(0, len(self), size):
            yield self[i:i + size]


@dataclass
class Preprocessor:
    """Cleaning, feature selection and scaling fitted on training units; windows of the last `window` rows.

    `conditions`: features that are operating conditions, not health: each row's regime is the nearest of the
    regimes found in them (k-means; `regimes` of them, or with 0 as many as stand clearly apart, see
    CLEAR_REGIMES), and every other feature is standardised with its own regime's mean and deviation. The condition
    features themselves are not model inputs."""

    window: int = 30
    features: list[str] | None = None  # inputs expected, in order
    kept: list[int] | None = None  # indices of the features that vary in training
    mean: np.ndarray | None = None  # (regimes, kept)
    scale: np.ndarray | None = None  # (regimes, kept)
    conditions: list[str] = field(default_factory=list)
    regimes: int = 0  # wanted; 0: found from the training rows
    centers: np.ndarray | None = None  # (regimes, conditions), in the conditions' standardised units
    cond_mean: np.ndarray | None = None
    cond_scale: np.ndarray | None = None

    def fit(self, ds: RunToFailure) -> Preprocessor:
        self.features = list(ds.features)
        missing = [c for c in self.conditions if c not in self.features]
        if missing:
            raise ValueError(f"operating-condition feature(s) {', '.join(map(repr, missing))} not among the features "
                             f"({', '.join(self.features)})")
        if self.conditions and set(self.features) <= set(self.conditions):
            raise ValueError("every feature is named an operating condition; leave the health signals (sensors) out "
                             "of the conditions")
        x = self._clean(ds)
        cond = [self.features.index(c) for c in self.conditions]
        self.centers = None
        if cond:
            self.cond_mean, sd = (np.nan_to_num(v) for v in _mean_sd(x[:, cond]))  # a condition all missing: 0, 1
            self.cond_scale = np.where(sd > 1e-9, sd, 1.0)
            self.centers = find_regimes(self._cond_z(x), self.regimes)
        inputs = [i for i in range(len(self.features)) if i not in cond]
        if self.centers is None or len(self.centers) == 1:
            stats = [_mean_sd(x[:, inputs])]
        else:
            regime = self.regime(x)
            stats = [_mean_sd(x[regime == r][:, inputs]) for r in range(len(self.centers))]
        mean, sd = np.stack([m for m, _ in stats]), np.stack([d for _, d in stats])  # (regimes, inputs)
        varies = (np.isfinite(sd) & (sd > 1e-9)).any(axis=0)
        self.kept = [i for i, v in zip(inputs, varies) if v]
        if not self.kept:
            within = " within each operating regime" if cond else ""
            raise ValueError(f"every feature is constant in the training data{within}; nothing to learn from")
        sd, mean = sd[:, varies], mean[:, varies]
        self.scale = np.where(np.isfinite(sd) & (sd > 1e-9), sd, 1.0)  # constant within a regime: there, 0
        self.mean = np.where(np.isfinite(mean), mean, np.nan_to_num(_mean_sd(mean)[0]))  # all missing in a regime
        return self

    def _cond_z(self, x: np.ndarray) -> np.ndarray:
        assert self.features is not None and self.cond_mean is not None and self.cond_scale is not None
        cond = [self.features.index(c) for c in self.conditions]
        return np.nan_to_num((x[:, cond] - self.cond_mean) / self.cond_scale)

    def regime(self, x: np.ndarray) -> np.ndarray:
        """Each cleaned row's operating regime (0 for all without condition features)."""
        if self.centers is None:
            return np.zeros(len(x), dtype=np.int64)
        z = self._cond_z(x)
        out = np.empty(len(z), dtype=np.int64)
        for i in range(0, len(z), 1 << 16):  # in slices: rows × regimes × conditions stays a few MB however long
            part = z[i:i + (1 << 16)]
            out[i:i + len(part)] = ((part[:, None, :] - self.centers[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
        return out

    def _clean(self, ds: RunToFailure) -> np.ndarray:
        x = ds.frame[ds.features].to_numpy(dtype=np.float64)
        out = np.empty_like(x)
        for idx in ds.frame.groupby("unit", sort=False).indices.values():
            out[idx] = clean(x[idx])
        return out

    def scaled(self, x: np.ndarray) -> np.ndarray:
        """Cleaned rows → the kept features standardised (per regime); what is still missing becomes the regime's
        training mean (0). Bounded at ±MAX_Z deviations: a value absurdly far out (a sensor's 1e38, a damaged model
        file's scale) stays a number in float32, where it became inf and the forecast NaN."""
        assert self.kept is not None and self.mean is not None and self.scale is not None
        r = self.regime(x)
        with np.errstate(over="ignore", invalid="ignore"):  # inf - inf, 1e308 / 1e-9: NaN and inf, bounded below
            z = (x[:, self.kept] - self.mean[r]) / self.scale[r]
        return np.clip(np.nan_to_num(z, nan=0.0), -MAX_Z, MAX_Z).astype(np.float32)

    def windows(self, ds: RunToFailure, rows: np.ndarray | None = None) -> Windows:
        """(rows, window, kept features): for each row, the window of rows ending at it within its unit,
        padded at a unit's start with its first row; made as they are indexed (`Windows`)."""
        if ds.features != self.features:
            raise ValueError(f"the data has features {ds.features}, the model was trained on {self.features}")
        z = self.scaled(self._clean(ds))
        w = self.window
        units = list(ds.frame.groupby("unit", sort=False).indices.values())
        padded = np.concatenate([block for idx in units for block in (np.repeat(z[idx[:1]], w - 1, axis=0), z[idx])]
                                ) if units else np.empty((0, z.shape[1]), np.float32)
        starts = np.empty(len(ds), dtype=np.int64)
        offset = 0
        for idx in units:  # row k of a unit: its window is the unit's padded rows k .. k + w - 1
            starts[idx] = offset + np.arange(len(idx))
            offset += len(idx) + w - 1
        return Windows(padded, starts if rows is None else starts[np.asarray(rows, dtype=np.int64)], w)

    def live_window(self, rows: np.ndarray) -> np.ndarray:
        """One machine's recent rows (oldest first, raw features) → its model window (window × kept)."""
        z = self.scaled(clean(rows))
        if len(z) < self.window:
            z = np.concatenate([np.repeat(z[:1], self.window - len(z), axis=0), z])
        return z[-self.window:]

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"window": self.window, "features": self.features, "kept": self.kept,
                               "mean": np.asarray(self.mean).tolist(), "scale": np.asarray(self.scale).tolist()}
        if self.centers is not None:
            out["conditions"] = {"names": self.conditions, "centers": self.centers.tolist(),
                                 "mean": np.asarray(self.cond_mean).tolist(),
                                 "scale": np.asarray(self.cond_scale).tolist()}
        return out

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> Preprocessor:
        """What `state` wrote, checked whole (a damaged file fails here, where its loader names it, not at its first
        forecast); a model saved before operating regimes has one regime (1-D mean and scale)."""
        s = checked(_STATE, s, "prep")
        features, kept = s["features"], s["kept"]
        if len(set(features)) < len(features) or len(set(kept)) < len(kept) or not 0 <= min(kept) <= max(kept) \
                < len(features):
            raise ValueError(f"prep: features must be distinct names, kept distinct positions among the "
                             f"{len(features)} of them")
        prep = cls(s["window"], features, kept, np.atleast_2d(np.asarray(s["mean"], dtype=float)),
                   np.atleast_2d(np.asarray(s["scale"], dtype=float)))
        if cond := s.get("conditions"):
            prep.conditions, prep.centers = list(cond["names"]), np.asarray(cond["centers"], dtype=float)
            prep.cond_mean, prep.cond_scale = (np.asarray(cond[k], dtype=float) for k in ("mean", "scale"))
            prep.regimes = len(prep.centers)
        shape = (1 if prep.centers is None else len(prep.centers), len(prep.kept or []))
        if prep.mean.shape != shape or prep.scale.shape != shape:
            raise ValueError(f"prep: mean and scale are not {shape[0]} regime(s) × {shape[1]} kept features")
        if not (prep.scale > 0).all():
            raise ValueError("prep: every scale must be above 0")
        if prep.centers is not None and not (
                prep.centers.shape == (shape[0], len(prep.conditions)) == (shape[0], len(prep.cond_mean))
                and prep.cond_scale.shape == prep.cond_mean.shape and set(prep.conditions) <= set(prep.features or [])):
            raise ValueError("prep: the operating regimes do not match their condition features")
        if prep.centers is not None and not (prep.cond_scale > 0).all():
            raise ValueError("prep: the operating regimes' scales must be above 0")
        return prep


class _Regimes(TypedDict):
    """The operating regimes a model file keeps: condition features, centres, their standardisation."""

    names: list[Name]
    centers: list[list[Finite]]
    mean: list[Finite]
    scale: list[Finite]


class _State(TypedDict):
    """What `Preprocessor.state` writes (a file saved before operating regimes: 1-D mean and scale, no conditions)."""

    window: Annotated[Whole, Field(ge=1)]
    features: list[Name]
    kept: Annotated[list[Whole], Field(min_length=1)]
    mean: list[Finite] | list[list[Finite]]
    scale: list[Finite] | list[list[Finite]]
    conditions: NotRequired[_Regimes | None]


_STATE = TypeAdapter(_State)


def _mean_sd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and deviations ignoring missing values; NaN (not a warning) for a column with none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=0), np.nanstd(x, axis=0)


def find_regimes(z: np.ndarray, wanted: int = 0, seed: int = 0) -> np.ndarray:
    """Centres of the operating regimes in standardised condition values (rows × conditions): k-means with `wanted`
    clusters, or (0) the number from 2 to MAX_REGIMES whose clusters stand apart best, judged on a sample of 5,000
    rows, if they do so clearly (CLEAR_REGIMES); else one regime. Seeded: the same rows give the same regimes."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    sample = z[rng.choice(len(z), min(len(z), 5000), replace=False)]
    distinct = len(np.unique(np.round(sample, 6), axis=0))
    if wanted == 0:
        best, best_score = 1, CLEAR_REGIMES
        for k in range(2, min(MAX_REGIMES, distinct, len(sample) - 1) + 1):  # silhouettes need k < rows
            labels = KMeans(k, n_init=4, random_state=seed).fit_predict(sample)
            score = silhouette_score(sample, labels, sample_size=min(len(sample), 2000), random_state=seed)
            if score > best_score:
                best, best_score = k, score
        wanted = best
    elif wanted > distinct:
        raise ValueError(f"{wanted} operating regimes asked for, but the conditions take only {distinct} distinct "
                         "values; ask for fewer")
    if wanted <= 1:
        return z.mean(axis=0, keepdims=True)
    return KMeans(wanted, n_init=10, random_state=seed).fit(z).cluster_centers_


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
