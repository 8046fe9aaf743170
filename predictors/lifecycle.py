"""One lifecycle for every trained thing: forecasters, anomaly models and generators.

One registry by kind, the metadata recorded when a model is trained (linetwin version, time, group, data
fingerprint), and one file format: `name.json` (format, family, kind, hyperparameters, metadata, fitted state)
beside `name.npz` (arrays). No pickle, so a model file from elsewhere cannot run code when it is loaded.
A family says what a model is trained on and what it gives: a `forecaster` (`predictors.base.Estimator`)
maps windows of a run-to-failure dataset to RUL and fault probabilities; a `generator`
(`predictors.synth.Generator`) samples labelled windows, and the VAE among them also scores anomalies.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

import numpy as np
from pydantic import Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

import twin

FORMAT = "linetwin-model/1"
OLDER_FORMATS = ("linetwin-generator/1",)  # generators saved before there was one lifecycle read as before
FAMILIES = {"forecaster": ("model file", "a model.json written by `twin train`"),
            "generator": ("generator", "a file written by `twin synth train`")}  # noun in errors, where files come from
REGISTRY: dict[str, type[Trained]] = {}
T = TypeVar("T", bound="type[Trained]")


Finite = Annotated[float, Field(allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1)]
Whole = Annotated[int, Field(strict=True)]  # a count or a position: not a bool, a float or a text read as one


class _Data(TypedDict, total=False):
    """What a model's metadata says of the data it was trained on."""

    fingerprint: str
    rows: int
    units: int
    windows: int
    sources: list[str]
    failures: int
    failures_per_mode: dict[str, int]
    per_mode: dict[str, int]


class _Anomaly(TypedDict):
    """The VAE's anomaly calibration."""

    threshold: Finite
    quantile: float
    healthy_windows: int


class _Meta(TypedDict, total=False):
    """A model file's `meta`: every key is optional (older files lack some), but one that is there has its type, so
    that a damaged or hand-edited file is refused where it is loaded, not at its first forecast."""

    kind: str
    family: str
    linetwin: str
    group: str
    trained: str
    data: _Data
    modes: list[str]
    time_unit: str
    step: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    alert_modes: list[str]
    validation: dict[str, float | None]
    extra_windows: int
    train_units: list[str]
    valid_units: list[str]
    member_valid_units: list[list[str]]
    unit_fingerprints: list[str]
    sensor_units: dict[str, str]
    anomaly: _Anomaly


_META = TypeAdapter(_Meta)


def checked(schema: TypeAdapter[Any], value: Any, where: str = "") -> Any:
    """A part of a model file checked against its schema: the value, or a ValueError naming the first wrong field
    (`where` prefixes its path, e.g. meta.step)."""
    try:
        return schema.validate_python(value)
    except ValidationError as e:
        err = e.errors()[0]
        if err["type"] == "missing":  # said as every missing field of a model file is ("its field 'window' is missing")
            raise KeyError(str(err["loc"][-1])) from None
        path = ".".join(str(k) for k in (*([where] if where else []), *err["loc"]))
        raise ValueError(f"{path or 'the file'}: {err['msg'].removeprefix('Value error, ').lower()}") from None


def register(cls: T) -> T:
    """Class decorator: make a model available by its `kind` to the CLI, `load` and the contract test."""
    if cls.family not in FAMILIES:
        raise TypeError(f"{cls.__name__}.family must be one of {', '.join(FAMILIES)}")
    REGISTRY[cls.kind] = cls
    return cls


# Where each kind registers itself, and its family: a model's module loads when that kind is asked for, so
# loading a regression model costs no torch import (1.1 s) and the dashboard and the alarm desk start without
# torch or scikit-learn. tests/test_lifecycle.py checks this index against the registry.
KINDS = {"baseline": ("forecaster", "predictors.base"), "regression": ("forecaster", "predictors.regression"),
         "lstm": ("forecaster", "predictors.lstm"), "cnn": ("forecaster", "predictors.lstm"),
         "vae": ("generator", "predictors.synth"), "gan": ("generator", "predictors.synth")}


def kinds(family: str) -> list[str]:
    """The kinds of one family, without loading their modules (e.g. to check a --model option)."""
    return [k for k, (f, _) in KINDS.items() if f == family]


def model_class(kind: str) -> type[Trained] | None:
    """The class of one kind, its module loaded; None for a kind nobody registers."""
    import importlib

    if kind not in KINDS:
        return None
    importlib.import_module(KINDS[kind][1])
    return REGISTRY.get(kind)


def _load_models() -> dict[str, type[Trained]]:
    """The registry, with every model module imported."""
    for kind in KINDS:
        model_class(kind)
    return REGISTRY


def registered(family: str) -> dict[str, type[Trained]]:
    """The registered kinds of one family, by kind (their modules loaded)."""
    return {k: c for k in kinds(family) if (c := model_class(k)) is not None}


class Trained:
    """What every trained model shares: hyperparameters (`params`), metadata (`meta_`) and its file format.

    A family implements `params`, `_state`/`_set_state` (JSON-able fitted state) and `_arrays`/`_restore`
    (arrays); `save` and `load` do the rest once."""

    kind: ClassVar[str] = ""
    family: ClassVar[str] = ""
    # every hyperparameter a class adds, with its allowed range: a model file is checked against them (a subclass
    # adds its own; together they are all the parameters a file may name) before anything is built
    limits: ClassVar[dict[str, tuple[float, float]]] = {}
    name_lists: ClassVar[frozenset[str]] = frozenset()  # hyperparameters that are lists of feature names
    meta_: dict[str, Any]

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """Refuse names the class does not know and values outside their range (ValueError naming the first)."""
        allowed: dict[str, tuple[float, float]] = {}
        for k in reversed(cls.__mro__):
            allowed.update(vars(k).get("limits", {}))
        for name, value in params.items():
            if name in cls.name_lists:
                if not (isinstance(value, list) and len(value) <= 100
                        and all(isinstance(v, str) and 0 < len(v) <= 200 for v in value)):
                    raise ValueError(f"parameter {name} must be a list of feature names (up to 100)")
                continue
            if name not in allowed:
                known = sorted([*allowed, *cls.name_lists])
                raise ValueError(f"unknown parameter {name!r} (a {cls.kind} model has {', '.join(known)})")
            lo, hi = allowed[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
                raise ValueError(f"parameter {name} = {value!r} is outside {lo:g} to {hi:g}")

    def params(self) -> dict[str, Any]:
        """Hyperparameters, as saved and as given back to __init__."""
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        """The fitted state that is not arrays, JSON-able (top-level keys of the model's .json)."""
        return {}

    def _set_state(self, doc: dict[str, Any]) -> None:
        """Restore what `_state` wrote (the whole .json is given)."""

    def _arrays(self) -> dict[str, np.ndarray]:
        """The fitted arrays (weights), saved in the .npz."""
        return {}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what `_arrays` wrote."""

    def _loaded(self) -> None:
        """Check that a loaded model's parts fit together (ValueError saying what does not); by default nothing."""

    def _saved_arrays(self) -> dict[str, np.ndarray]:
        """What goes into the .npz: the model's arrays (an ensemble adds its members')."""
        return self._arrays()

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what `_saved_arrays` wrote."""
        self._restore(arrays)

    def trained_meta(self, group: str, fingerprint: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """The metadata every model records when it is fitted: what it is, when, and what data it saw."""
        return {"kind": self.kind, "family": self.family, "linetwin": twin.__version__, "group": group,
                "trained": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "data": {"fingerprint": fingerprint, **data}, **extra}

    def save(self, folder: Path, name: str | None = None) -> Path:
        """Write `name`.json and `name`.npz (name: the kind by default) into folder; returns the .json."""
        folder.mkdir(parents=True, exist_ok=True)
        name = name or self.kind
        np.savez(folder / f"{name}.npz", **self._saved_arrays())
        doc = {"format": FORMAT, "family": self.family, "kind": self.kind, "params": self.params(),
               "meta": self.meta_, "arrays_sha256": _sha256(folder / f"{name}.npz"), **self._state()}
        (folder / f"{name}.json").write_text(json.dumps(doc, indent=2, default=float) + "\n", encoding="utf-8")
        return folder / f"{name}.json"


def load(path: Path, family: str) -> Trained:
    """A saved model of `family` from its .json (its arrays are in the .npz beside it), or a ValueError that
    names the file and where such files come from."""
    noun, hint = FAMILIES[family]
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError(f"a JSON {type(doc).__name__}, not an object")
        if doc.get("format", FORMAT) not in (FORMAT, *OLDER_FORMATS):
            raise ValueError(f"format {doc.get('format')!r} is not {FORMAT}")
        cls = model_class(doc["kind"])
        if cls is None:
            raise ValueError(f"unknown kind {doc['kind']!r}")
        if cls.family != family:
            raise ValueError(f"it holds a {cls.family} ({doc['kind']})")
        if not isinstance(doc["params"], dict):
            raise ValueError("params is not a mapping")
        cls.check_params(doc["params"])
        if "arrays_sha256" in doc and _sha256(path.with_suffix(".npz")) != doc["arrays_sha256"]:
            raise ValueError(f"{path.with_suffix('.npz').name} does not match the checksum in {path.name}: it was "
                             "changed or damaged after training")
        model = cls(**doc["params"])
        model.meta_ = dict(checked(_META, doc["meta"], "meta"))
        model._set_state(doc)
        with np.load(path.with_suffix(".npz"), allow_pickle=False) as arrays:
            try:
                model._load_arrays(dict(arrays))
            except RuntimeError as e:  # torch: a layer's weights of another shape than the parameters build
                raise ValueError(f"its arrays do not fit its parameters: {str(e).strip().splitlines()[-1].strip()}"
                                 ) from None
        model._loaded()
    except KeyError as e:  # said as ('window') before
        raise ValueError(f"{path}: not a linetwin {noun} (its field {e} is missing); give {hint}") from None
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: not a linetwin {noun} ({e}); give {hint}") from None
    return model


def _sha256(path: Path) -> str:
    import hashlib

    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def load_folder(folder: Path, family: str, skip_others: bool = False) -> dict[str, dict[str, Trained]]:
    """Every model of `family` in a folder of group folders: group → file name → model. With `skip_others`,
    other .json files (reports) may sit beside them."""
    out: dict[str, dict[str, Trained]] = {}
    for f in sorted(folder.glob("*/*.json")):
        try:
            out.setdefault(f.parent.name, {})[f.stem] = load(f, family)
        except ValueError:
            if not skip_others:
                raise
    out = {g: models for g, models in out.items() if models}
    if not out:
        noun = "models" if family == "forecaster" else "generators"
        raise ValueError(f"{folder}: no {noun} here; give a folder written by "
                         f"{'`twin train --out`' if family == 'forecaster' else '`twin synth train --out`'}")
    return out
