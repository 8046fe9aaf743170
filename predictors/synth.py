"""Synthetic sensor windows: real windows labelled by fault mode and severity, and conditional generators.

Real windows come from twin runs: per-minute sensor means (the forecasters' datasets), cleaned the same
causal way, cut into windows and labelled from the ground truth, so each window says which fault mode
is wearing the machine and how far (its wear, 0 new to 1 failed, at the window's end); a machine that was
stopped for the whole window (off shift, down, in maintenance) shows no wear, so such a window counts as
healthy. A generator is
trained per machine type (types have different sensors) on those windows, conditioned on fault mode
and severity, and asked for "n windows of this mode at this severity". Two kinds, one interface:
a conditional VAE and a conditional WGAN-GP. Registry and files are every trained model's (`predictors.lifecycle`).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, cast

import numpy as np
import pandas as pd
import torch
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import AfterValidator, Field, TypeAdapter
from torch import nn
from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

from predictors.base import ProgressFn
from predictors.data import STEP, DataError, RunToFailure, TwinRun, from_twin_run
from predictors.lifecycle import Name, Trained, checked, load_folder, register, registered
from predictors.lifecycle import load as load_trained
from predictors.prep import clean
from twin.model import STATES, STOPPED_STATES

HEALTHY = "healthy"

FLOAT32_MAX = float(np.finfo(np.float32).max)


def _in_float32(v: float) -> float:
    if not abs(v) <= FLOAT32_MAX:
        raise ValueError(f"{v} is beyond the ±3.4e38 of the float32 values a generator gives")
    return v


#: a value a generator's windows may span: its samples are float32, so a range beyond float32's overflowed to inf
Float32 = Annotated[float, AfterValidator(_in_float32)]


class _State(TypedDict):
    """A generator file's fitted state (besides its arrays)."""

    features: Annotated[list[Name], Field(min_length=1)]
    labels: Annotated[list[Name], Field(min_length=1)]
    group: str
    window: Annotated[int, Field(ge=1, le=100_000)]
    step: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    lo: list[Float32]
    hi: list[Float32]


_STATE = TypeAdapter(_State)
HEALTHY_BELOW = 0.2  # a window whose highest wear is below this is labelled healthy
ANOMALY_QUANTILE = 0.999  # the anomaly threshold: this quantile of healthy training windows' scores
ANOMALY_SLOPE = 4.0  # anomaly probability = 1 / (1 + (threshold / score) ** slope): 0.5 at the threshold


@dataclass
class Windows:
    """Windows (n, T, d) of one machine type's sensors, in sensor units, each with its condition."""

    x: np.ndarray
    mode: np.ndarray  # fault mode wearing the machine most at the window's end, or HEALTHY (also: stopped throughout)
    severity: np.ndarray  # that mode's wear at the window's end (0..1)
    unit: np.ndarray  # source unit (run/replication/machine): splits are by unit
    end: np.ndarray  # time of the window's last row
    features: list[str]
    group: str
    modes: list[str]  # the type's wear modes
    step: float = STEP
    synthetic: bool = False

    def __len__(self) -> int:
        return len(self.x)

    @property
    def labels(self) -> list[str]:
        return [HEALTHY, *self.modes]

    def fingerprint(self) -> str:
        """A short hash of the windows and their conditions, stored with every generator trained on them."""
        h = hashlib.sha256(np.ascontiguousarray(self.x).tobytes())
        for part in (self.mode, self.unit):
            h.update("\x1f".join(map(str, part)).encode())
        h.update(np.ascontiguousarray(self.severity, dtype=np.float64).tobytes())
        return h.hexdigest()[:16]

    def subset(self, mask: np.ndarray) -> Windows:
        return Windows(self.x[mask], self.mode[mask], self.severity[mask], self.unit[mask], self.end[mask],
                       self.features, self.group, self.modes, self.step, self.synthetic)

    def split(self, fraction: float, seed: int) -> tuple[Windows, Windows]:
        """By unit: about `fraction` of the units (at least one when there are two) go to the second part."""
        units = np.array(sorted(set(self.unit)))
        n = max(1, round(len(units) * fraction)) if len(units) > 1 else 0
        held = set(np.random.default_rng(seed).choice(units, n, replace=False).tolist()) if n else set()
        mask = np.isin(self.unit, list(held))
        return self.subset(~mask), self.subset(mask)

    def to_frame(self, start: pd.Timestamp, run: str = "synthetic", machine: str | None = None,
                 first: int = 0) -> pd.DataFrame:
        """Long readings (the store's schema: run, replication, machine, sensor, ts, value) plus the window,
        its condition and `synthetic`; window k's rows follow window k-1's in time. `first`: the number of the
        first window (a batch of a longer series, whose time goes on from `start`)."""
        n, t, d = self.x.shape
        local = np.repeat(np.arange(n), t * d)
        k = local + first
        row = np.tile(np.repeat(np.arange(t), d), n)
        ts = start + pd.to_timedelta((k * t + row) * self.step, unit="s")
        return pd.DataFrame({"run": run, "replication": 0, "machine": machine or self.group,
                             "sensor": np.tile(self.features, n * t), "ts": ts,
                             "value": self.x.reshape(-1).astype(np.float64), "window": k,
                             "fault_mode": self.mode[local], "severity": self.severity[local],
                             "synthetic": self.synthetic})


def _wear(path: Path) -> pd.DataFrame:
    """The run's true wear per (replication, machine, t) and fault mode."""
    try:
        health = pd.read_parquet(path / "truth" / "health.parquet")
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: no ground-truth wear ({e}); give a folder written by `twin run`") from None
    return health.pivot_table(index=["replication", "machine", "t"], columns="fault_mode", values="wear")


PoweredTime = dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]


def _powered(path: Path) -> PoweredTime:
    """Per (replication, machine): the cumulative time powered (not down, in maintenance or off shift) as a
    piecewise-linear function of run time (its knots), from the run's true machine states."""
    try:
        st = pd.read_parquet(path / "truth" / "states.parquet", columns=["replication", "machine", "start", "end",
                                                                             "state"])
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: no ground-truth machine states ({e}); give a folder written by `twin run`") from None
    stopped = [STATES[i] for i in STOPPED_STATES]
    out: PoweredTime = {}
    for (rep, machine), g in st[~st.state.astype(str).isin(stopped)].groupby(["replication", "machine"]):
        a, b = g.start.to_numpy(dtype=float), g.end.to_numpy(dtype=float)
        order = np.argsort(a)
        a, b = a[order], b[order]
        knots = np.column_stack([a, b]).ravel()
        cum = np.column_stack([np.zeros_like(a), b - a]).ravel().cumsum()
        out[(int(rep), str(machine))] = (knots, cum)
    return out


def label(wear: np.ndarray, modes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of wear per mode → (fault mode or HEALTHY, severity): the most worn mode, if worn at all."""
    if not len(modes):
        return np.full(len(wear), HEALTHY, dtype=object), np.zeros(len(wear))
    w = np.nan_to_num(wear, nan=0.0)
    top = w.argmax(axis=1)
    sev = w[np.arange(len(w)), top]
    mode = np.where(sev >= HEALTHY_BELOW, np.asarray(modes, dtype=object)[top], HEALTHY)
    return mode.astype(object), sev


def windows_of(ds: RunToFailure, wear: pd.DataFrame, window: int, stride: int,
               powered: PoweredTime | None = None) -> Windows:
    """Cleaned windows of every unit of a twin dataset, labelled from the true wear at each window's end;
    given the powered time, windows in which the machine was stopped throughout are labelled healthy."""
    x_all = ds.frame[ds.features].to_numpy(dtype=np.float64)
    xs, modes, sevs, units, ends = [], [], [], [], []
    cols = [m for m in ds.modes if m in wear.columns]
    for unit, idx in ds.frame.groupby("unit", sort=False).indices.items():
        rows = ds.frame.iloc[idx]
        if len(idx) < window:
            continue
        x = clean(x_all[idx])
        view = sliding_window_view(x, window, axis=0).transpose(0, 2, 1)[::stride]  # (n, window, d)
        last = np.arange(window - 1, len(idx), stride)[:len(view)]
        ok = ~np.isnan(view).any(axis=(1, 2))
        key = pd.MultiIndex.from_arrays([rows.replication.to_numpy()[last], rows.machine.to_numpy()[last],
                                         rows.time.to_numpy()[last]])
        w = wear.reindex(key)[cols].to_numpy() if cols else np.zeros((len(last), 0))
        mode, sev = label(w, cols)
        knots = None if powered is None else powered.get((int(rows.replication.iloc[0]), str(rows.machine.iloc[0])))
        if powered is not None:
            t = rows.time.to_numpy(dtype=float)
            on = (np.zeros(len(last)) if knots is None else
                  np.interp(t[last] + ds.step, *knots) - np.interp(t[last + 1 - window], *knots))
            mode, sev = np.where(on > 0, mode, HEALTHY).astype(object), np.where(on > 0, sev, 0.0)
        xs.append(view[ok])
        modes.append(mode[ok])
        sevs.append(sev[ok])
        units.append(np.full(ok.sum(), unit, dtype=object))
        ends.append(rows.time.to_numpy()[last][ok])
    if not xs:
        raise DataError(f"{ds.group}: no unit has {window} minutes of readings; give longer runs or a shorter --window")
    return Windows(np.concatenate(xs).astype(np.float32), np.concatenate(modes), np.concatenate(sevs),
                   np.concatenate(units), np.concatenate(ends), list(ds.features), ds.group, cols, ds.step)


def concat_windows(parts: Sequence[Windows]) -> Windows:
    first = parts[0]
    return Windows(np.concatenate([p.x for p in parts]), np.concatenate([p.mode for p in parts]),
                   np.concatenate([p.severity for p in parts]), np.concatenate([p.unit for p in parts]),
                   np.concatenate([p.end for p in parts]), first.features, first.group, first.modes, first.step,
                   first.synthetic)


def twin_windows(paths: Sequence[Path], window: int = 30, stride: int = 1,
                 store_url: str | None = None) -> dict[str, Windows]:
    """Labelled windows per machine type from one or more twin run folders."""
    per_type: dict[str, list[Windows]] = {}
    for p in paths:
        p = Path(p)
        TwinRun.open(p, store_url)  # a clear error for a folder that is not a run
        wear, powered = _wear(p), _powered(p)
        for mtype, ds in from_twin_run(p, store_url).items():
            per_type.setdefault(mtype, []).append(windows_of(ds, wear, window, stride, powered))
    return {k: concat_windows(v) for k, v in per_type.items()}


# --- generators ------------------------------------------------------------------------------------

class Generator(Trained):
    """Conditional generator of windows: fit on labelled real windows, sample n windows for a mode and severity.

    Windows are min-max scaled per feature with the training data's range (the scale the quality scores use);
    the condition is one-hot fault mode (healthy first) plus severity.
    """

    family: ClassVar[str] = "generator"
    limits: ClassVar[dict[str, tuple[float, float]]] = {
        "latent": (1, 1024), "hidden": (1, 1024), "epochs": (1, 10_000), "batch": (1, 65_536), "lr": (1e-8, 1),
        "seed": (0, 2 ** 32 - 1)}

    def __init__(self, *, latent: int = 16, hidden: int = 64, epochs: int = 60, batch: int = 256, lr: float = 2e-3,
                 seed: int = 0) -> None:
        self.latent, self.hidden, self.epochs, self.batch, self.lr, self.seed = latent, hidden, epochs, batch, lr, seed
        self.features_: list[str] = []
        self.labels_: list[str] = []
        self.group_ = ""
        self.window_ = 0
        self.step_ = STEP
        self.lo_ = np.zeros(0)
        self.hi_ = np.ones(0)
        self.meta_: dict[str, Any] = {}

    def params(self) -> dict[str, Any]:
        return {"latent": self.latent, "hidden": self.hidden, "epochs": self.epochs, "batch": self.batch,
                "lr": self.lr, "seed": self.seed}

    # --- what a generator implements ---------------------------------------------------------------
    def _build(self, d: int, k: int) -> None:
        raise NotImplementedError

    def _fit(self, x: torch.Tensor, c: torch.Tensor, progress: ProgressFn | None) -> None:
        raise NotImplementedError

    def _decode(self, c: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Conditions → scaled windows (n, T, d), the latent drawn from `gen` as the generator samples it."""
        raise NotImplementedError

    def _modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    # --- shared ------------------------------------------------------------------------------------
    def scale(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.lo_) / (self.hi_ - self.lo_)).astype(np.float32)

    def unscale(self, z: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # beyond float32: inf, which loading refuses (`_loaded`)
            return (z * (self.hi_ - self.lo_) + self.lo_).astype(np.float32)

    def condition(self, mode: Sequence[str] | str, severity: Sequence[float] | float, n: int) -> np.ndarray:
        """One-hot fault mode (healthy first) and severity, per window."""
        modes = np.broadcast_to(np.asarray(mode, dtype=object), (n,))
        sev = np.broadcast_to(np.asarray(severity, dtype=np.float32), (n,))
        unknown = sorted(set(modes) - set(self.labels_))
        if unknown:
            raise ValueError(f"fault mode {unknown[0]!r} is not one this generator knows for {self.group_}; "
                             f"choose one of {', '.join(self.labels_)}")
        if np.any((sev < 0) | (sev > 1)):
            raise ValueError("severity is wear from 0 (new) to 1 (failed); give a value in [0, 1]")
        c = np.zeros((n, len(self.labels_) + 1), dtype=np.float32)
        c[np.arange(n), [self.labels_.index(m) for m in modes]] = 1.0
        c[:, -1] = sev
        return c

    def fit(self, w: Windows, progress: ProgressFn | None = None) -> Generator:
        """Train on real windows (their condition from the ground truth)."""
        if len(w) < 2:
            raise DataError(f"{w.group}: {len(w)} windows are too few to train a generator; give longer runs")
        self.features_, self.labels_, self.group_ = list(w.features), w.labels, w.group
        self.window_, self.step_ = w.x.shape[1], w.step
        flat = w.x.reshape(-1, w.x.shape[2])
        self.lo_, self.hi_ = flat.min(axis=0).astype(np.float64), flat.max(axis=0).astype(np.float64)
        self.hi_ = np.where(self.hi_ - self.lo_ > 1e-9, self.hi_, self.lo_ + 1.0)
        torch.manual_seed(self.seed)
        self._build(w.x.shape[2], len(self.labels_) + 1)
        x = torch.from_numpy(self.scale(w.x))
        c = torch.from_numpy(self.condition(w.mode, w.severity, len(w)))
        self._fit(x, c, progress)
        for m in self._modules().values():
            m.eval()
        counts = pd.Series(w.mode).value_counts()
        self.meta_ = self.trained_meta(w.group, w.fingerprint(), {
            "windows": len(w), "units": len(set(w.unit)), "per_mode": {str(k): int(v) for k, v in counts.items()}})
        return self

    def sample(self, mode: Sequence[str] | str, severity: Sequence[float] | float, n: int,
               seed: int = 0) -> Windows:
        """n synthetic windows (sensor units) of a fault mode at a severity; the same seed gives the same windows."""
        return concat_windows(list(self.sample_batches(mode, severity, n, seed)))

    def sample_batches(self, mode: Sequence[str] | str, severity: Sequence[float] | float, n: int, seed: int = 0,
                       batch: int = 4096) -> Iterator[Windows]:
        """`sample`'s windows in consecutive batches of `batch` (a multiple of 4096), each drawn as `sample` draws
        it: a large n is written out batch by batch in bounded memory, with the very same values."""
        if batch % 4096:
            raise ValueError(f"batch {batch}: give a multiple of 4096 (the draws come in blocks of 4096)")
        c = self.condition(mode, severity, n)
        gen = torch.Generator().manual_seed(seed)
        labels = np.asarray(self.labels_, dtype=object)
        for start in range(0, max(n, 1), batch):  # one batch at least: n = 0 gives no windows, with their shape
            cb = c[start:start + batch]
            with torch.no_grad():
                blocks = [self._decode(torch.from_numpy(cb[i:i + 4096]), gen).numpy() for i in range(0, len(cb), 4096)]
            x = np.concatenate(blocks) if blocks else np.zeros((0, self.window_, len(self.features_)), np.float32)
            yield Windows(self.unscale(x), labels[cb[:, :-1].argmax(axis=1)], cb[:, -1].astype(np.float64),
                          np.full(len(cb), f"synthetic/{self.kind}", dtype=object),
                          np.arange(start, start + len(cb), dtype=np.float64) * self.window_ * self.step_,
                          self.features_, self.group_, self.labels_[1:], self.step_, synthetic=True)

    def _state(self) -> dict[str, Any]:
        return {"features": self.features_, "labels": self.labels_, "group": self.group_, "window": self.window_,
                "step": self.step_, "lo": self.lo_.tolist(), "hi": self.hi_.tolist()}

    def _set_state(self, doc: dict[str, Any]) -> None:
        state = checked(_STATE, doc)
        self.features_, self.labels_, self.group_ = state["features"], state["labels"], state["group"]
        self.window_, self.step_ = state["window"], state["step"]
        self.lo_, self.hi_ = np.asarray(state["lo"], dtype=np.float64), np.asarray(state["hi"], dtype=np.float64)
        if len(set(self.features_)) < len(self.features_) or len(set(self.labels_)) < len(self.labels_) \
                or self.labels_[0] != HEALTHY:
            raise ValueError(f"features and labels must be distinct names, the labels {HEALTHY!r} first")
        if not self.lo_.shape == self.hi_.shape == (len(self.features_),) or not (self.hi_ > self.lo_).all():
            raise ValueError("lo and hi are not a low and a higher value for each feature")
        self._build(len(self.features_), len(self.labels_) + 1)

    def _loaded(self) -> None:
        """One window sampled: the networks must give a window of the generator's length and features."""
        x = self.sample(self.labels_[-1], 0.5, 1).x
        if x.shape != (1, self.window_, len(self.features_)) or not np.isfinite(x).all():
            raise ValueError(f"its network gives windows of shape {x.shape[1:]}, not ({self.window_}, "
                             f"{len(self.features_)}) (window, features) of numbers")

    def _arrays(self) -> dict[str, np.ndarray]:
        return {f"{m}.{k}": v.numpy() for m, mod in self._modules().items() for k, v in mod.state_dict().items()}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        for m, mod in self._modules().items():
            mod.load_state_dict({k.split(".", 1)[1]: torch.from_numpy(arrays[k]) for k in arrays
                                 if k.split(".", 1)[0] == m})
            mod.eval()


def generators() -> dict[str, type[Generator]]:
    """The registered generator kinds, by kind."""
    return cast(dict[str, type[Generator]], registered("generator"))


def load_generator(path: Path) -> Generator:
    """A saved generator from its .json (weights in the .npz beside it)."""
    return cast(Generator, load_trained(path, "generator"))


def load_generators(folder: Path) -> dict[str, dict[str, Generator]]:
    """Every generator in a folder written by `twin synth train`: machine type → kind → generator (reports and
    other files may sit beside them)."""
    found = load_folder(folder, "generator", skip_others=True)
    return {group: {g.kind: cast(Generator, g) for g in models.values()} for group, models in found.items()}


def _batches(n: int, batch: int, gen: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=gen)
    return [order[i:i + batch] for i in range(0, n, batch)]


class _Decoder(nn.Module):
    """(latent, condition) → a window: a dense layer spread over time, then two convolutions along it."""

    def __init__(self, latent: int, k: int, hidden: int, t: int, d: int) -> None:
        super().__init__()
        self.t, self.hidden = t, hidden
        self.dense = nn.Sequential(nn.Linear(latent + k, hidden * 2), nn.ReLU(), nn.Linear(hidden * 2, hidden * t))
        self.conv = nn.Sequential(nn.ReLU(), nn.Conv1d(hidden, hidden, 5, padding=2), nn.ReLU(),
                                  nn.Conv1d(hidden, d, 5, padding=2))

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.dense(torch.cat([z, c], dim=1)).view(-1, self.hidden, self.t)
        return self.conv(h).transpose(1, 2)


class _Encoder(nn.Module):
    """(window, condition) → one vector: convolutions along time with the condition on every step."""

    def __init__(self, d: int, k: int, hidden: int, t: int, out: int, leaky: bool = False) -> None:
        super().__init__()
        act: type[nn.Module] = nn.LeakyReLU if leaky else nn.ReLU
        self.conv = nn.Sequential(nn.Conv1d(d + k, hidden, 5, padding=2), act(),
                                  nn.Conv1d(hidden, hidden, 5, stride=2, padding=2), act())
        self.out = nn.Linear(hidden * ((t + 1) // 2), out)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x.transpose(1, 2), c[:, :, None].expand(-1, -1, x.shape[1])], dim=1)
        return self.out(self.conv(h).flatten(1))


SEVERITY_BANDS = np.array([0.2, 0.4, 0.6, 0.8])  # the latent mixture is fitted per fault mode and band


class _LatentPrior(nn.Module):
    """Gaussian mixtures over the latent, one per (fault mode, severity band), kept as buffers (saved with
    the weights): component weights, means and Cholesky factors, and which (mode, band) each belongs to."""

    def __init__(self, latent: int) -> None:
        super().__init__()
        self.register_buffer("key", torch.zeros((0, 2), dtype=torch.int64))
        self.register_buffer("weight", torch.zeros(0))
        self.register_buffer("mean", torch.zeros((0, latent)))
        self.register_buffer("chol", torch.zeros((0, latent, latent)))

    def _load_from_state_dict(self, state: dict[str, Any], prefix: str, *args: Any) -> None:
        for name in ("key", "weight", "mean", "chol"):  # a saved prior has its own number of components
            if prefix + name in state:
                setattr(self, name, state[prefix + name].clone())
        super()._load_from_state_dict(state, prefix, *args)

    @staticmethod
    def keys(c: np.ndarray) -> np.ndarray:
        return np.stack([c[:, :-1].argmax(axis=1), np.searchsorted(SEVERITY_BANDS, c[:, -1], side="right")], axis=1)

    def fit(self, mu: np.ndarray, c: np.ndarray, components: int, seed: int) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        keys = self.keys(c)
        rows: list[tuple[tuple[int, int], float, np.ndarray, np.ndarray]] = []
        for key in sorted(set(map(tuple, keys.tolist()))):
            z = mu[(keys == key).all(axis=1)]
            k = int(min(components, max(1, len(z) // 50)))
            with warnings.catch_warnings():  # an undertrained encoder may give fewer distinct points than k
                warnings.simplefilter("ignore", ConvergenceWarning)
                gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=seed).fit(z) \
                    if len(z) > 1 else None
            if gmm is None:
                rows.append((key, 1.0, z[0], np.eye(mu.shape[1]) * 1e-2))
                continue
            for w, m, cov in zip(gmm.weights_, gmm.means_, gmm.covariances_):
                rows.append((key, float(w), m, np.linalg.cholesky(cov)))
        self.key = torch.tensor([r[0] for r in rows], dtype=torch.int64)
        self.weight = torch.tensor([r[1] for r in rows], dtype=torch.float32)
        self.mean = torch.tensor(np.array([r[2] for r in rows]), dtype=torch.float32)
        self.chol = torch.tensor(np.array([r[3] for r in rows]), dtype=torch.float32)

    def sample(self, c: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One latent per condition from its (mode, band) mixture; the nearest band with data if its own has none."""
        keys = torch.from_numpy(self.keys(c.numpy()))
        z = torch.empty(len(c), self.mean.shape[1])
        eps = torch.randn(len(c), self.mean.shape[1], generator=gen)
        for key in torch.unique(keys, dim=0):
            rows = (keys == key).all(dim=1)
            same = self.key[:, 0] == key[0]
            if not same.any():
                same = torch.ones(len(self.key), dtype=torch.bool)
            bands = self.key[same, 1]
            band = bands[(bands - key[1]).abs().argmin()]
            comp = torch.where(same & (self.key[:, 1] == band))[0]
            pick = comp[torch.multinomial(self.weight[comp], int(rows.sum()), replacement=True, generator=gen)]
            z[rows] = self.mean[pick] + (self.chol[pick] @ eps[rows][:, :, None])[:, :, 0]
        return z


@register
class ConditionalVAE(Generator):
    """A conditional VAE: convolutional encoder and decoder, a mean and a noise level for every value.

    Sampling does not draw the latent from the N(0, 1) prior, which the encoder's posteriors fill only in
    patches (machine states cluster), but from the aggregate posterior: a Gaussian mixture fitted after
    training to the training windows' latent means, one per fault mode and severity band ("ex-post density
    estimation", Ghosh et al. 2020). Its reconstruction error, read as healthy, is an anomaly score (`score`).
    The KL term is weighted by beta = 0.1: at 1 the posterior collapsed on handling cells (state switches
    blurred into noise, discriminative 0.49); at 0.1 it scored 0.32 there, 0.03 on weld cells (0.10 at 1).
    """

    kind = "vae"
    limits: ClassVar[dict[str, tuple[float, float]]] = {
        "beta": (0, 1e3), "components": (1, 1000), "updates": (0, 1_000_000)}

    def __init__(self, *, beta: float = 0.1, components: int = 20, updates: int = 5000, **common: Any) -> None:
        super().__init__(**common)
        self.beta, self.components, self.updates = beta, components, updates
        self.prior: _LatentPrior | None = None

    def params(self) -> dict[str, Any]:
        return {**super().params(), "beta": self.beta, "components": self.components, "updates": self.updates}

    def _build(self, d: int, k: int) -> None:
        self.enc = _Encoder(d, k, self.hidden, self.window_, 2 * self.latent)
        self.dec = _Decoder(self.latent, k, self.hidden, self.window_, 2 * d)  # mean and log sigma per value
        self.prior = _LatentPrior(self.latent)

    def _modules(self) -> dict[str, nn.Module]:
        assert self.prior is not None
        return {"enc": self.enc, "dec": self.dec, "prior": self.prior}

    def _out(self, z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_sigma = self.dec(z, c).chunk(2, dim=2)
        return mean, log_sigma.clamp(-7.0, 2.0)

    def _loss(self, x: torch.Tensor, c: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        mu, logvar = self.enc(x, c).chunk(2, dim=1)
        eps = torch.randn(mu.shape, generator=gen) if gen is not None else torch.zeros_like(mu)
        mean, ls = self._out(mu + eps * (0.5 * logvar).exp(), c)
        nll = (0.5 * ((x - mean) / ls.exp()) ** 2 + ls).sum(dim=(1, 2))
        kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(dim=1)
        return (nll + self.beta * kl).mean()

    def _fit(self, x: torch.Tensor, c: torch.Tensor, progress: ProgressFn | None) -> None:
        gen = torch.Generator().manual_seed(self.seed)
        params = [*self.enc.parameters(), *self.dec.parameters()]
        opt = torch.optim.Adam(params, lr=self.lr)
        # at least `updates` gradient steps: a machine type with few windows gets more epochs, not less training
        epochs = max(self.epochs, -(-self.updates // -(-len(x) // self.batch)))
        for epoch in range(epochs):
            total = 0.0
            for idx in _batches(len(x), self.batch, gen):
                opt.zero_grad()
                loss = self._loss(x[idx], c[idx], gen)
                loss.backward()
                nn.utils.clip_grad_norm_(params, 5.0)
                opt.step()
                total += loss.item() * len(idx)
            if progress is not None:
                progress(epoch + 1, epochs, f"loss {total / len(x):.2f}")
        self.enc.eval()
        with torch.no_grad():
            mu = torch.cat([self.enc(x[i:i + 4096], c[i:i + 4096]).chunk(2, dim=1)[0] for i in range(0, len(x), 4096)])
        assert self.prior is not None
        self.prior.fit(mu.numpy(), c.numpy(), self.components, self.seed)

    def _decode(self, c: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        assert self.prior is not None
        z = self.prior.sample(c, gen)
        mean, log_sigma = self._out(z, c)
        return mean + torch.randn(mean.shape, generator=gen) * log_sigma.exp()

    def fit(self, w: Windows, progress: ProgressFn | None = None) -> ConditionalVAE:
        """Train, then calibrate the anomaly threshold on the healthy training windows' scores."""
        super().fit(w, progress)
        healthy = w.x[w.mode == HEALTHY]
        if len(healthy):
            self.meta_["anomaly"] = {"threshold": float(np.quantile(self.score(healthy), ANOMALY_QUANTILE)),
                                     "quantile": ANOMALY_QUANTILE, "healthy_windows": len(healthy)}
        return self

    @property
    def threshold(self) -> float:
        """The anomaly score at which a window counts as anomalous (probability 0.5)."""
        cal = self.meta_.get("anomaly")
        if not cal:
            raise ValueError(f"the {self.group_} VAE has no anomaly threshold (it saw no healthy windows, or was "
                             "trained before calibration existed); retrain it with `twin synth train`")
        return float(cal["threshold"])

    def anomaly_probability(self, x: np.ndarray) -> np.ndarray:
        """Per window, the anomaly score mapped onto (0, 1): 0.5 at the calibrated threshold, rising with it,
        so it feeds the same alert hysteresis as the forecasters' probabilities."""
        ratio = self.score(x) / self.threshold
        return 1.0 / (1.0 + np.maximum(ratio, 1e-12) ** -ANOMALY_SLOPE)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Anomaly score per window (sensor units): the reconstruction error of the window read as healthy,
        in noise units. A worn machine's windows reconstruct badly as healthy, so they score high."""
        if not len(x):
            return np.zeros(0)
        out = []
        for i in range(0, len(x), 4096):
            xs = torch.from_numpy(self.scale(np.asarray(x[i:i + 4096], dtype=np.float64)))
            c = torch.from_numpy(self.condition(HEALTHY, 0.0, len(xs)))
            with torch.no_grad():
                mu, _ = self.enc(xs, c).chunk(2, dim=1)
                mean, log_sigma = self._out(mu, c)
                out.append((((xs - mean) / log_sigma.exp()) ** 2).mean(dim=(1, 2)).numpy())
        return np.concatenate(out).astype(np.float64)


@register
class ConditionalWGAN(Generator):
    """A conditional Wasserstein GAN with gradient penalty (WGAN-GP): convolutional generator and critic."""

    kind = "gan"
    limits: ClassVar[dict[str, tuple[float, float]]] = {
        "steps": (1, 1_000_000), "critic_steps": (1, 100), "penalty": (0, 1e4)}

    def __init__(self, *, steps: int = 2000, critic_steps: int = 5, penalty: float = 10.0, **common: Any) -> None:
        common.setdefault("lr", 1e-4)
        common.setdefault("batch", 128)
        super().__init__(**common)
        self.steps, self.critic_steps, self.penalty = steps, critic_steps, penalty

    def params(self) -> dict[str, Any]:
        return {**super().params(), "steps": self.steps, "critic_steps": self.critic_steps, "penalty": self.penalty}

    def _build(self, d: int, k: int) -> None:
        self.gen = _Decoder(self.latent, k, self.hidden, self.window_, d)
        self.critic = _Encoder(d, k, self.hidden, self.window_, 1, leaky=True)

    def _modules(self) -> dict[str, nn.Module]:
        return {"gen": self.gen}  # the critic is only needed in training

    def _fit(self, x: torch.Tensor, c: torch.Tensor, progress: ProgressFn | None) -> None:
        gen = torch.Generator().manual_seed(self.seed)
        opt_g = torch.optim.Adam(self.gen.parameters(), lr=self.lr, betas=(0.5, 0.9))
        opt_c = torch.optim.Adam(self.critic.parameters(), lr=self.lr, betas=(0.5, 0.9))
        n = len(x)
        for step in range(self.steps):
            for _ in range(self.critic_steps):
                idx = torch.randint(n, (min(self.batch, n),), generator=gen)
                real, cond = x[idx], c[idx]
                z = torch.randn(len(idx), self.latent, generator=gen)
                fake = self.gen(z, cond).detach()
                a = torch.rand(len(idx), 1, 1, generator=gen)
                mix = (a * real + (1 - a) * fake).requires_grad_(True)
                grad, = torch.autograd.grad(self.critic(mix, cond).sum(), mix, create_graph=True)
                gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
                loss_c = self.critic(fake, cond).mean() - self.critic(real, cond).mean() + self.penalty * gp
                opt_c.zero_grad()
                loss_c.backward()
                opt_c.step()
            idx = torch.randint(n, (min(self.batch, n),), generator=gen)
            z = torch.randn(len(idx), self.latent, generator=gen)
            loss_g = -self.critic(self.gen(z, c[idx]), c[idx]).mean()
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            if progress is not None and ((step + 1) % 50 == 0 or step + 1 == self.steps):
                progress(step + 1, self.steps, f"critic {loss_c.item():.3f}, generator {loss_g.item():.3f}")

    def _decode(self, c: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.gen(torch.randn(len(c), self.latent, generator=gen), c)
