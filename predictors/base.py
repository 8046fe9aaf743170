"""One estimator interface for every fault forecaster, a registry of them, and their file format.

A model maps windows of sensor rows to the remaining useful life (capped, with an interval) and, per
predictable fault mode, the probability of that failure within the horizon. Subclasses implement
`_fit` and `_predict` on windows; preprocessing, intervals, metadata, save and load live here once.
Registry, metadata and the file format are every trained model's (`predictors.lifecycle`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, ClassVar, cast

import numpy as np
import pandas as pd
from pydantic import Field, TypeAdapter
from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

from predictors.data import RunToFailure
from predictors.lifecycle import Finite, Name, Trained, checked, load_folder, register, registered
from predictors.lifecycle import load as load_trained
from predictors.prep import MAX_REGIMES, Preprocessor, Windows, split_units, unit_folds

ProgressFn = Callable[[int, int, str], None]  # (done, total, note)


class _Interval(TypedDict):
    """The RUL interval: validation errors' low and high quantiles in bins of predicted RUL (from the lowest bin's
    edge, -inf for the first)."""

    bins: list[Annotated[float, Field(allow_inf_nan=True)]]
    q: list[tuple[Finite, Finite]]


class _State(TypedDict):
    """A forecaster file's fitted state besides its preprocessing and arrays."""

    modes: list[Name]
    interval: _Interval


_STATE = TypeAdapter(_State)
# runs fn(*args) for each args tuple, results in order (e.g. twin.app.cluster.Tasks.map: worker processes or a cluster)
MapFn = Callable[[Callable[..., Any], Sequence[tuple[Any, ...]]], Iterable[Any]]
INTERVAL = (0.05, 0.95)  # the RUL interval: 90 % of validation errors fall inside
# defaults by the data's time unit: a twin run's rows are minutes (an hour of history, 2 h horizon, RUL capped at
# 8 h); tables count cycles (the NASA protocol's 30-cycle windows and 125-cycle cap)
DEFAULTS: dict[str, dict[str, float]] = {"s": {"window": 60, "horizon": 7200.0, "cap": 28800.0},
                                         "cycles": {"window": 30, "horizon": 30.0, "cap": 125.0}}


@dataclass
class Forecast:
    """Per window: RUL estimate and interval (in the data's time unit), and P(failure within horizon) per mode."""

    rul: np.ndarray
    low: np.ndarray
    high: np.ndarray
    proba: np.ndarray  # (n, modes)
    modes: list[str]
    alerting: np.ndarray | None = None  # per mode: whether it may raise alerts (None: every mode)

    def frame(self) -> pd.DataFrame:
        out = pd.DataFrame({"rul": self.rul, "rul_low": self.low, "rul_high": self.high})
        for j, m in enumerate(self.modes):
            out[f"p_{m}"] = self.proba[:, j]
        out["p_any"] = self.p_any
        return out

    @cached_property
    def p_any(self) -> np.ndarray:
        """P(any predictable failure within the horizon), modes treated as independent."""
        return 1 - np.prod(1 - self.proba, axis=1) if self.proba.shape[1] else np.zeros(len(self.rul))

    @cached_property
    def p_alert(self) -> np.ndarray:
        """P(any failure of a mode that may raise alerts within the horizon): what the alert rule reads."""
        if self.alerting is None or self.alerting.all():
            return self.p_any
        return 1 - np.prod(1 - self.proba[:, self.alerting], axis=1)

    @cached_property
    def alert_mode(self) -> np.ndarray:
        """Per window, the likeliest fault mode of those that may raise alerts ('' when none may)."""
        allowed = np.ones(len(self.modes), dtype=bool) if self.alerting is None else self.alerting
        if not allowed.any():
            return np.full(len(self.rul), "", dtype=object)
        return np.array(self.modes, dtype=object)[np.where(allowed, self.proba, -1.0).argmax(axis=1)]


class Estimator(Trained):
    """Base class: hyperparameters in __init__, fitted state in trailing-underscore attributes."""

    family: ClassVar[str] = "forecaster"
    limits: ClassVar[dict[str, tuple[float, float]]] = {
        "window": (2, 500), "horizon": (1e-6, 1e9), "cap": (1e-6, 1e9), "seed": (0, 2 ** 32 - 1),
        "valid_fraction": (0, 0.9), "members": (1, 20), "regimes": (0, MAX_REGIMES)}
    name_lists: ClassVar[frozenset[str]] = frozenset({"conditions"})
    uses_windows: ClassVar[bool] = True  # capability flag: the model reads whole windows (else it ignores them)

    def __init__(self, *, window: int = 30, horizon: float = 7200.0, cap: float = 28800.0, seed: int = 0,
                 valid_fraction: float = 0.2, members: int = 1, conditions: Sequence[str] = (),
                 regimes: int = 0) -> None:
        self.window, self.horizon, self.cap, self.seed, self.valid_fraction = window, horizon, cap, seed, valid_fraction
        # operating-condition features and how many regimes they form (0: as found; see prep.Preprocessor)
        self.conditions, self.regimes = list(conditions), regimes
        self.members = members  # > 1: an ensemble of that many models, each validated on its own 1/members of the units
        self.members_: list[Estimator] = []
        self.prep_: Preprocessor | None = None
        self.modes_: list[str] = []
        self.meta_: dict[str, Any] = {}
        self.bins_: np.ndarray = np.array([0.0])  # interval: residual quantiles per bin of predicted RUL
        self.q_: np.ndarray = np.zeros((1, 2))

    # --- what a model implements ---------------------------------------------------------------------
    def _fit(self, x: np.ndarray | Windows, rul: np.ndarray, rul_known: np.ndarray, label: np.ndarray,
             label_known: np.ndarray, valid: tuple[Any, ...] | None, progress: ProgressFn | None) -> None:
        raise NotImplementedError

    def _predict(self, x: np.ndarray | Windows) -> tuple[np.ndarray, np.ndarray]:
        """Windows (n, window, features) → (capped RUL, P(failure within horizon) per mode)."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Hyperparameters, as saved and as given back to __init__."""
        return {"window": self.window, "horizon": self.horizon, "cap": self.cap, "seed": self.seed,
                "valid_fraction": self.valid_fraction, "members": self.members, "conditions": self.conditions,
                "regimes": self.regimes}

    # --- shared ------------------------------------------------------------------------------------
    def _xy(self, ds: RunToFailure) -> tuple[Windows, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        assert self.prep_ is not None
        rul, rul_known = ds.rul(self.cap)
        label, label_known = ds.within(self.horizon)
        return self.prep_.windows(ds), rul, rul_known, label, label_known

    def fit(self, ds: RunToFailure, progress: ProgressFn | None = None,
            extra: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, run: MapFn | None = None) -> Estimator:
        """Fit on the training units; a unit split off for validation sets early stopping and the RUL interval.
        With `members` > 1, an ensemble instead: the units in that many folds, one model validated on each fold
        and trained on the others (each with its own seed), forecasts averaged; every unit is used for training, and
        the interval and validation scores come from each unit's out-of-fold forecasts.

        `extra` adds windows from elsewhere (synthetic ones): raw windows (n, window, features) with a
        failure-within-horizon label and whether it is known, per mode; their RUL counts as unknown. `run` trains an
        ensemble's members side by side (each task carries its member, seed and torch's thread count, so the
        weights are the same wherever it runs); without it they train here, one after another."""
        if self.members > 1:
            folds = unit_folds(ds, self.members, self.seed)
            if len(folds) < 2:
                raise ValueError(f"an ensemble of {self.members} members needs at least 2 units; there is 1")
            splits = [(ds.subset([u for f in folds if f is not held for u in f]), ds.subset(held)) for held in folds]
            self.prep_ = self._preprocessor().fit(ds)
        else:
            splits = [split_units(ds, self.valid_fraction, self.seed) if self.valid_fraction else (ds, ds.subset([]))]
            self.prep_ = self._preprocessor().fit(splits[0][0])
        self.modes_ = list(ds.modes)
        extra_x = self._extra(extra, ds)
        tasks = [(self if self.members <= 1 else self._member(i), train, valid, extra_x, _threads())
                 for i, (train, valid) in enumerate(splits)]
        self.members_, oof = [], []
        if self.members <= 1:
            oof.append(_fit_member(*tasks[0], progress=progress)[1])
        else:
            for done, (member, member_oof) in enumerate((run or _here)(_fit_member, tasks), start=1):
                self.members_.append(member)
                oof.append(member_oof)
                if progress is not None:
                    progress(done, len(tasks), f"{done} of {len(tasks)} members trained")
        fc = Forecast(*(np.concatenate([getattr(o[0], a) for o in oof]) for a in ("rul", "low", "high", "proba")),
                      self.modes_)
        rul, known, label, label_known = (np.concatenate([o[k] for o in oof]) for k in range(1, 5))
        self._fit_interval(fc.rul[known], rul[known])
        validated = self.members > 1 or splits[0][1].frame.size > 0
        validation = self._validation_scores(fc, rul, known, label, label_known) if validated else {}
        data = {"rows": len(ds), "units": int(ds.frame["unit"].nunique()), "sources": ds.sources,
                "failures": len(ds.failures),
                "failures_per_mode": {m: int(n) for m, n in ds.failures_per_mode().items()}}
        self.meta_ = self.trained_meta(
            ds.group, ds.fingerprint(), data, modes=self.modes_, time_unit=ds.time_unit, step=ds.step,
            alert_modes=ds.modes_to_alert(), validation=validation,
            extra_windows=0 if extra is None else len(extra[0]),
            # units some model trained on; units no model trained on (none in an ensemble); each member's validation
            train_units=sorted(set().union(*(t.units.tolist() for t, _ in splits))),
            unit_fingerprints=sorted(set(ds.unit_fingerprints().values())),
            valid_units=[] if self.members > 1 else sorted(set(splits[0][1].units.tolist())),
            member_valid_units=[sorted(set(v.units.tolist())) for _, v in splits] if self.members > 1 else [],
            sensor_units=dict(ds.sensor_units))
        return self

    def unit_mismatch(self, units: dict[str, str]) -> str:
        """'' when the data's sensor units are the ones this model was trained on (or either side does not say),
        else what differs, e.g. "bearing_temp in degF (trained in degC)": a plant feed in other units would be
        forecast as if it were in the model's, without a word."""
        trained = self.meta_.get("sensor_units") or {}
        return ", ".join(f"{s} in {units[s]} (trained in {u})" for s, u in sorted(trained.items())
                         if units.get(s, u) != u)

    def _preprocessor(self) -> Preprocessor:
        return Preprocessor(self.window, conditions=self.conditions, regimes=self.regimes)

    def _extra(self, extra: tuple[np.ndarray, np.ndarray, np.ndarray] | None, ds: RunToFailure
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Extra windows scaled as the data's, checked for shape; None when there are none."""
        if extra is None or not len(extra[0]):
            return None
        assert self.prep_ is not None
        x, lab, known = extra
        if x.shape[1:] != (self.window, len(ds.features)):
            raise ValueError(f"extra windows are {x.shape[1:]}, the model takes ({self.window}, "
                             f"{len(ds.features)}) (window, features)")
        return self.prep_.scaled(x.reshape(-1, x.shape[2])).reshape(len(x), self.window, -1), lab, known

    def _validation_scores(self, fc: Forecast, rul: np.ndarray, known: np.ndarray, label: np.ndarray,
                           label_known: np.ndarray) -> dict[str, float]:
        """RUL RMSE/MAE and per-row F1 of forecasts on validation windows: the metrics saved with the model."""
        from predictors.metrics import classification_scores

        err = fc.rul[known] - rul[known]
        out = {"rul_rmse": float(np.sqrt(np.mean(err ** 2))) if known.any() else float("nan"),
               "rul_mae": float(np.mean(np.abs(err))) if known.any() else float("nan")}
        if label.shape[1]:
            k = label_known.all(axis=1)
            out["row_f1"] = classification_scores(fc.p_any[k], label[k].max(axis=1), 0.5)["f1"]
        return out

    def _fit_interval(self, pred: np.ndarray, true: np.ndarray) -> None:
        """Residual quantiles of validation forecasts, in 5 bins of predicted RUL (errors grow with RUL)."""
        resid = true - pred
        if len(pred) < 20:
            self.bins_, self.q_ = np.array([0.0]), np.zeros((1, 2))
            return
        edges = np.unique(np.quantile(pred, [0.2, 0.4, 0.6, 0.8]))
        self.bins_ = np.concatenate([[-np.inf], edges])
        which = np.searchsorted(self.bins_, pred, side="right") - 1
        q = np.array([np.quantile(resid[which == b], INTERVAL) if (which == b).sum() >= 5
                      else np.quantile(resid, INTERVAL) for b in range(len(self.bins_))])
        # the interval holds the estimate itself, even where the validation errors all have one sign (a biased
        # model): the low end at most, the high end at least the estimate
        self.q_ = np.column_stack([np.minimum(q[:, 0], 0.0), np.maximum(q[:, 1], 0.0)])

    @property
    def alert_modes(self) -> list[str]:
        """The fault modes whose forecasts may raise alerts (every mode for a model saved before this was kept)."""
        return list(self.meta_.get("alert_modes", self.modes_))

    def predict_windows(self, x: np.ndarray | Windows) -> Forecast:
        """Forecasts for preprocessed windows (n, window, features); an ensemble's are its members' means."""
        if self.members_:
            outs = [m._predict(x) for m in self.members_]
            rul, proba = np.mean([o[0] for o in outs], axis=0), np.mean([o[1] for o in outs], axis=0)
        else:
            rul, proba = self._predict(x)
        rul = np.clip(rul, 0.0, self.cap)
        q = self.q_[np.searchsorted(self.bins_, rul, side="right") - 1]
        return Forecast(rul, np.clip(rul + q[:, 0], 0.0, None), np.clip(rul + q[:, 1], 0.0, None), proba,
                        self.modes_, np.isin(self.modes_, self.alert_modes))

    def predict(self, ds: RunToFailure, rows: np.ndarray | None = None) -> Forecast:
        """Forecasts at some rows of a dataset (all by default), each from the window ending there."""
        if self.prep_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() or load() first")
        return self.predict_windows(self.prep_.windows(ds, rows))

    def save(self, folder: Path, name: str | None = "model") -> Path:
        """Write `name`.json (metadata, preprocessing, hyperparameters) and `name`.npz (arrays) into folder."""
        return super().save(folder, name)

    def _saved_arrays(self) -> dict[str, np.ndarray]:
        """An ensemble's arrays are its members', each under its own prefix."""
        if not self.members_:
            return self._arrays()
        return {f"member{i}:{k}": v for i, m in enumerate(self.members_) for k, v in m._arrays().items()}

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        if self.members <= 1:
            self._restore(arrays)
            return
        self.members_ = []
        for i in range(self.members):
            member = self._member(i)
            member._restore({k.split(":", 1)[1]: v for k, v in arrays.items() if k.startswith(f"member{i}:")})
            self.members_.append(member)

    def _member(self, i: int) -> Estimator:
        """Ensemble member i: this model's settings and preprocessing, seed + i, a single model itself."""
        member = copy.copy(self)
        member.seed, member.members, member.members_ = self.seed + i, 1, []
        return member

    def _state(self) -> dict[str, Any]:
        assert self.prep_ is not None
        return {"modes": self.modes_, "prep": self.prep_.state(),
                "interval": {"bins": self.bins_.tolist(), "q": self.q_.tolist()}}

    def _set_state(self, doc: dict[str, Any]) -> None:
        self.prep_ = Preprocessor.from_state(doc["prep"])
        if self.prep_.window != self.window:
            raise ValueError(f"prep: window {self.prep_.window!r} is not the parameters' window {self.window}")
        state = checked(_STATE, doc)
        self.modes_ = state["modes"]
        if len(set(self.modes_)) < len(self.modes_):
            raise ValueError("modes: a fault mode is named twice")
        self.bins_, self.q_ = (np.asarray(state["interval"]["bins"], dtype=float),
                               np.asarray(state["interval"]["q"], dtype=float))
        if not (len(self.bins_) and (np.diff(self.bins_) > 0).all() and len(self.q_) == len(self.bins_)):
            raise ValueError("interval: the bins must rise, with a low and a high quantile each")

    def _loaded(self) -> None:
        """One forecast of a blank window: the network's outputs must match the fault modes and the RUL be a number
        (a file whose parts were edited apart fails here, where it is loaded, not at its first forecast)."""
        assert self.prep_ is not None
        fc = self.predict_windows(np.zeros((1, self.window, len(self.prep_.kept or [])), dtype=np.float32))
        if fc.proba.shape != (1, len(self.modes_)):
            raise ValueError(f"its network gives {fc.proba.shape[1:]} fault probabilities for {len(self.modes_)} "
                             "fault modes")
        if not np.isfinite(fc.rul).all():
            raise ValueError("its network forecasts no number")


def _threads() -> int:
    """Torch's CPU threads here (0 when torch is not loaded: a model without it)."""
    import sys

    return int(sys.modules["torch"].get_num_threads()) if "torch" in sys.modules else 0


def _fit_member(member: Estimator, train: RunToFailure, valid: RunToFailure,
                extra: tuple[np.ndarray, np.ndarray, np.ndarray] | None, threads: int,
                progress: ProgressFn | None = None) -> tuple[Estimator, tuple[Any, ...]]:
    """Train one model (an ensemble member, or the model itself) on its units, early stopping on `valid`; a task that
    may run in another process, with the caller's torch thread count so that its arithmetic, and so its weights, are
    the same. Windows are made here, one member's at a time (they are the bulk of the memory). Returns the model and
    its forecasts on its validation units (its training units if there are none) with their targets: what the
    interval and the validation scores are fitted on, small beside the windows."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    tr = member._xy(train)
    if extra is not None:  # extra windows (already scaled): labels known, RUL not
        x, lab, lab_known = extra
        tr = (tr[0].with_extra(x), np.concatenate([tr[1], np.zeros(len(x))]),
              np.concatenate([tr[2], np.zeros(len(x), dtype=bool)]), np.concatenate([tr[3], lab]),
              np.concatenate([tr[4], lab_known]))
    va = member._xy(valid) if len(valid) else None
    member._fit(*tr, valid=va, progress=progress)
    x, *targets = va or member._xy(train)
    return member, (member.predict_windows(x), *targets)


def _here(fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> Iterator[Any]:
    return (fn(*a) for a in args)


def load(path: Path) -> Estimator:
    """A saved forecaster from its .json (its arrays are in the .npz beside it)."""
    return cast(Estimator, load_trained(path, "forecaster"))


@register
class MeanBaseline(Estimator):
    """The naive baseline: every window gets the training mean of the capped RUL and the base rate of failure."""

    kind = "baseline"
    uses_windows = False

    def _fit(self, x: np.ndarray | Windows, rul: np.ndarray, rul_known: np.ndarray, label: np.ndarray,
             label_known: np.ndarray, valid: tuple[Any, ...] | None, progress: ProgressFn | None) -> None:
        self.mean_ = np.array([rul[rul_known].mean() if rul_known.any() else self.cap])
        self.rate_ = np.array([label[label_known[:, j], j].mean() if label_known[:, j].any() else 0.0
                               for j in range(label.shape[1])])

    def _predict(self, x: np.ndarray | Windows) -> tuple[np.ndarray, np.ndarray]:
        return np.full(len(x), self.mean_[0]), np.tile(self.rate_, (len(x), 1))

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_, "rate": self.rate_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.mean_, self.rate_ = arrays["mean"], arrays["rate"]


Bundle = dict[str, dict[str, Estimator]]  # machine type (or table group) → name → model


def save_bundle(bundle: Bundle, folder: Path) -> None:
    """A folder per machine type holding its models (`model`, `baseline`, ...) as name.json + name.npz."""
    for group, models in bundle.items():
        for name, model in models.items():
            model.save(folder / group, name)


def load_bundle(folder: Path) -> Bundle:
    """Every model of a folder written by `save_bundle` (`twin train --out`)."""
    return cast(Bundle, load_folder(folder, "forecaster"))


def forecasters() -> dict[str, type[Estimator]]:
    """The registered forecaster kinds (the baseline among them), by kind."""
    return cast(dict[str, type[Estimator]], registered("forecaster"))
