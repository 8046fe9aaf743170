"""The one lifecycle every trained model keeps (`predictors.lifecycle`), over every registered kind: fit → save →
load gives the same output, the file records what the model is and the fingerprint of the data it saw, and a file
of another family is refused with a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predictors import REGISTRY, from_table
from predictors.lifecycle import FAMILIES, KINDS, load
from predictors.synth import HEALTHY, Windows
from tests.conftest import ROOT
from tests.helpers import mutated
from tests.test_predictors import FMT, degradation_table, write_nasa

FAST: dict[str, dict[str, Any]] = {  # small enough for the fast loop; the quality floors live in each model's tests
    "baseline": {}, "regression": {}, "lstm": {"epochs": 2, "hidden": 8}, "cnn": {"epochs": 2, "channels": 4},
    "vae": {"epochs": 2, "updates": 0}, "gan": {"steps": 5}}


def forecaster_data(tmp: Path) -> Any:
    df, _ = degradation_table(12, seed=5)
    return from_table(write_nasa(df, tmp / "train.txt"), FMT)


def generator_data(tmp: Path) -> Windows:
    rng = np.random.default_rng(5)
    n = 96
    mode = np.where(np.arange(n) % 3 == 0, HEALTHY, "wear").astype(object)
    severity = np.where(mode == HEALTHY, 0.0, rng.uniform(0.2, 1.0, n))
    x = rng.normal(0, 1, (n, 8, 3)) + severity[:, None, None]
    return Windows(x.astype(np.float32), mode, severity, np.array([f"u{i % 6}" for i in range(n)], dtype=object),
                   np.arange(n) * 60.0, ["a", "b", "c"], "machine_type", ["wear"])


DATA = {"forecaster": forecaster_data, "generator": generator_data}
OUTPUT = {"forecaster": lambda m, data: m.predict(data).frame().to_numpy(),
          "generator": lambda m, data: m.sample("wear", 0.7, 16, seed=2).x}
PARAMS = {"forecaster": {"horizon": 30.0, "cap": 125.0, "window": 20, "seed": 3}, "generator": {"seed": 3}}


def test_every_family_has_data_and_every_kind_a_setting() -> None:
    assert set(DATA) == set(FAMILIES) and set(FAST) == set(REGISTRY)


def test_the_lazy_index_of_kinds_matches_the_registry() -> None:
    """KINDS says where each kind registers and its family, so one kind loads without the others' modules."""
    assert set(KINDS) == set(REGISTRY)
    for kind, (family, module) in KINDS.items():
        assert REGISTRY[kind].family == family and REGISTRY[kind].__module__ == module, kind
    code = ("import sys; from predictors.lifecycle import model_class; model_class('regression'); "
            "print('torch' in sys.modules)")
    alone = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert alone.stdout.strip() == "False", "loading a regression model imports torch"


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_fit_save_load_gives_the_same_model(kind: str, tmp_path: Path) -> None:
    cls = REGISTRY[kind]
    data = DATA[cls.family](tmp_path)
    model = cls(**PARAMS[cls.family], **FAST[kind]).fit(data)
    path = model.save(tmp_path / "saved", "m")
    doc = json.loads(path.read_text())
    assert (doc["format"], doc["family"], doc["kind"]) == ("linetwin-model/1", cls.family, kind)
    meta = doc["meta"]
    assert meta["kind"] == kind and meta["family"] == cls.family and meta["linetwin"] and meta["trained"]
    assert meta["data"]["fingerprint"] == data.fingerprint() and len(meta["data"]["fingerprint"]) == 16
    np.load(path.with_suffix(".npz"), allow_pickle=False).close()  # arrays only: no pickle in the file

    again = load(path, cls.family)
    assert type(again) is cls and again.params() == model.params() and again.meta_ == meta
    np.testing.assert_array_equal(OUTPUT[cls.family](again, data), OUTPUT[cls.family](model, data))

    other = next(f for f in FAMILIES if f != cls.family)
    with pytest.raises(ValueError, match=rf"{path.name}: not a linetwin .*it holds a {cls.family} \({kind}\)"):
        load(path, other)


def test_a_file_that_is_no_model_is_refused_with_where_models_come_from(tmp_path: Path) -> None:
    bad = tmp_path / "report.json"
    bad.write_text('{"format": "something-else/2"}')
    with pytest.raises(ValueError, match=r"report\.json: not a linetwin model file .*`twin train`"):
        load(bad, "forecaster")
    with pytest.raises(ValueError, match=r"not a linetwin generator .*`twin synth train`"):
        load(bad, "generator")


def test_a_model_file_with_unknown_or_out_of_range_parameters_or_changed_arrays_is_refused(tmp_path: Path) -> None:
    """Checked before anything is built: every parameter known to the kind and within its range, and the arrays
    those the file's checksum names (a damaged or swapped .npz)."""
    model = REGISTRY["lstm"](**PARAMS["forecaster"], **FAST["lstm"]).fit(forecaster_data(tmp_path))
    path = model.save(tmp_path / "saved", "m")
    doc = json.loads(path.read_text())
    for params, error in (({**doc["params"], "hiden": 8}, r"unknown parameter 'hiden' \(a lstm model has .*hidden"),
                          ({**doc["params"], "hidden": 10 ** 9}, "parameter hidden = 1000000000 is outside 1 to 1024"),
                          ({**doc["params"], "window": "30"}, "parameter window = '30' is outside 2 to 500"),
                          ({**doc["params"], "members": True}, "parameter members = True")):
        path.write_text(json.dumps({**doc, "params": params}))
        with pytest.raises(ValueError, match=rf"m\.json: not a linetwin model file \({error}"):
            load(path, "forecaster")
    path.write_text(json.dumps({**doc, "prep": {k: v for k, v in doc["prep"].items() if k != "window"}}))
    with pytest.raises(ValueError, match=r"m\.json: not a linetwin model file \(its field 'window' is missing\)"):
        load(path, "forecaster")
    path.write_text(json.dumps(doc))
    npz = path.with_suffix(".npz")
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"m\.npz does not match the checksum in m\.json: it was changed or damaged"):
        load(path, "forecaster")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["window", "hidden", "epochs", "lr", "cap", "members", "x", "seed"]),
                       st.one_of(st.integers(-10 ** 12, 10 ** 12), st.floats(allow_nan=True), st.text(max_size=3),
                                 st.booleans(), st.none(), st.lists(st.integers(), max_size=2)), max_size=5))
def test_any_parameters_in_a_model_file_load_or_give_a_clear_error(tmp_path: Path, params: dict[str, Any]) -> None:
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps({"format": "linetwin-model/1", "family": "forecaster", "kind": "lstm",
                                "params": params, "meta": {}}))
    try:
        load(path, "forecaster")
    except ValueError as e:
        assert str(e).startswith(f"{path}: not a linetwin model file (")


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every kind fitted (FAST) and saved once, and an ensemble of two LSTMs: what the mutation fuzz below edits."""
    tmp = tmp_path_factory.mktemp("saved")
    out = {}
    for name, kind, extra in [*((k, k, {}) for k in sorted(REGISTRY)), ("lstm x2", "lstm", {"members": 2})]:
        cls = REGISTRY[kind]
        model = cls(**PARAMS[cls.family], **FAST[kind], **extra).fit(DATA[cls.family](tmp))
        out[name] = model.save(tmp / name.replace(" ", "-"), "m")
    return out


def _use(model: Any, data: Any) -> None:
    """What the commands do with a loaded model: forecast or sample, score anomalies, read its metadata."""
    from predictors.evaluate import overlap
    from predictors.online import _model_info, _trained_machines

    OUTPUT[model.family](model, data)
    if model.family == "forecaster":
        overlap({"m": model}, data)
        model.unit_mismatch({"c3": "bar"})
        _model_info(model), _trained_machines(model), model.alert_modes
    elif "anomaly" in model.meta_:
        model.anomaly_probability(data.x[:4])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["baseline", "regression", "lstm", "cnn", "vae", "gan", "lstm x2"]), data=st.data())
def test_any_edit_of_a_model_file_loads_a_working_model_or_is_refused_clearly(
        saved: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, which: str, data: st.DataObject) -> None:
    """A model.json damaged or edited by hand (1-3 random edits of one written by training): loaded, a model that
    then forecasts (or samples) and reports; or refused naming the file. Never a traceback at load or later."""
    import shutil

    base = saved[which]
    doc = data.draw(mutated({which: json.loads(base.read_text())}))
    tmp = tmp_path_factory.mktemp("edited")
    path = tmp / base.name
    shutil.copy(base.with_suffix(".npz"), path.with_suffix(".npz"))
    path.write_text(json.dumps(doc))
    family = REGISTRY["lstm" if which == "lstm x2" else which].family
    try:
        model = load(path, family)
    except ValueError as e:
        assert str(e).startswith(f"{path}: not a linetwin "), e
        return
    try:
        _use(model, DATA[family](tmp))
    except ValueError as e:  # a feature or mode renamed: the data (the model's own) is refused as another machine's
        assert "the data has features" in str(e) or "is not one this generator knows" in str(e), e


def test_a_generators_value_range_beyond_float32_is_refused_by_name(saved: dict[str, Path]) -> None:
    """Found by the fuzz above on a new seed: a generator file whose value range reached beyond float32's (lo 1e300)
    warned of an overflow while loading and was refused as if its network gave no numbers. Now its range is refused
    by name; its samples are float32, so nothing wider can be a sensor's."""
    import shutil

    for which in ("vae", "gan"):
        doc = json.loads(saved[which].read_text())
        doc["lo"][0] = -1e300
        path = saved[which].parent / f"wide-{which}" / saved[which].name
        path.parent.mkdir(exist_ok=True)
        shutil.copy(saved[which].with_suffix(".npz"), path.with_suffix(".npz"))
        path.write_text(json.dumps(doc))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ValueError, match=r"\(lo\.0: .*beyond the ±3\.4e38 of the float32 values"):
                load(path, "generator")
