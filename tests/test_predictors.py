"""Predictors on their own: datasets and targets, preprocessing, metrics, alert hysteresis, and one contract
test run over every registered model (fit, shapes, determinism, save → load → identical forecasts)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from predictors import TableFormat, forecasters, from_table, load
from predictors.alerts import AlertRule, AlertState, MachineStatus, episodes
from predictors.data import DataError, targets
from predictors.metrics import alert_events, rul_scores
from predictors.prep import Preprocessor, clean, ffill, find_regimes
from tests.conftest import assert_mistakes


def degradation_table(n_units: int, seed: int, cut: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """Run-to-failure units in the NASA layout: unit, cycle, 2 settings, 5 sensors (one constant).

    Health falls exponentially towards the failure; sensors see it with noise. With `cut`, each unit
    stops at a random cycle before failure and its true RUL there is returned.
    """
    rng = np.random.default_rng(seed)
    rows, ruls = [], []
    for u in range(1, n_units + 1):
        life = int(rng.integers(120, 260))
        stop = int(rng.integers(40, life - 5)) if cut else life
        t = np.arange(1, stop + 1)
        wear = np.exp(4 * (t / life - 1))  # e^-4 at the start, 1 at failure
        sensors = np.column_stack([
            520 + 6 * wear + rng.normal(0, 0.5, len(t)),
            1400 + 40 * wear + rng.normal(0, 4, len(t)),
            8.4 - 0.6 * wear + rng.normal(0, 0.05, len(t)),
            np.full(len(t), 100.0),  # constant: must be dropped
            47 + 2 * wear + rng.normal(0, 0.3, len(t))])
        settings = rng.normal(0, 0.002, (len(t), 2))
        rows.append(np.column_stack([np.full(len(t), u), t, settings, sensors]))
        ruls.append(life - stop)
    cols = ["unit", "cycle", "op1", "op2", "s1", "s2", "s3", "s4", "s5"]
    return pd.DataFrame(np.concatenate(rows), columns=cols).astype({"unit": int, "cycle": int}), np.array(ruls)


def write_nasa(df: pd.DataFrame, path: Path) -> Path:
    """Whitespace-separated, no header: the format of public run-to-failure benchmarks."""
    df.to_csv(path, sep=" ", header=False, index=False, float_format="%.4f")
    return path


FMT = TableFormat(unit=0, time=1)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tables")
    train, _ = degradation_table(40, seed=1)
    test, rul = degradation_table(20, seed=2, cut=True)
    np.savetxt(d / "RUL.txt", rul, fmt="%d")
    return {"train": write_nasa(train, d / "train.txt"), "test": write_nasa(test, d / "test.txt"),
            "rul": d / "RUL.txt"}


# --- data and targets ------------------------------------------------------------------------------

def test_targets_know_what_was_seen_and_no_more() -> None:
    t = np.arange(0.0, 100.0, 10.0)
    # a life failing at 35, renewed at 50, censored (maintenance) at 80, renewed at 90 and open to the end
    ttf, observed = targets(t, [(0.0, 35.0, True), (50.0, 80.0, False), (90.0, 100.0, False)])
    assert ttf[:4].tolist() == [35.0, 25.0, 15.0, 5.0]
    assert np.isinf(ttf[4:]).all()  # no failure observed after 35
    assert observed[5:8].tolist() == [30.0, 20.0, 10.0]


@pytest.mark.slow  # trains on a table end to end (5 s): the full suite's, not the inner loop's
def test_table_with_header_and_test_protocol(tables: dict[str, Path], tmp_path: Path) -> None:
    ds = from_table(tables["train"], FMT)
    assert ds.time_unit == "cycles" and ds.modes == ["failure"] and ds.frame.unit.nunique() == 40
    last = ds.frame.groupby("unit").cumcount(ascending=False) == 0
    assert (ds.ttf[last.to_numpy(), 0] == 0).all()  # each unit's last row is its failure
    rul, known = ds.rul(125.0)
    assert known.all() and rul.max() == 125.0
    test = from_table(tables["test"], FMT, tables["rul"])
    assert test.cut_off
    truth = np.loadtxt(tables["rul"])
    ends = (test.frame.groupby("unit", sort=False).cumcount(ascending=False) == 0).to_numpy()
    np.testing.assert_array_equal(test.ttf[ends, 0], truth)
    pd.DataFrame(truth).to_excel(tmp_path / "RUL.xlsx", index=False, header=False)  # the true RULs as a workbook
    np.testing.assert_array_equal(from_table(tables["test"], FMT, tmp_path / "RUL.xlsx").ttf, test.ttf)
    # the same data as CSV with a header row
    csv = tmp_path / "train.csv"
    pd.read_csv(tables["train"], sep=" ", header=None, names=["engine", "cycle", *list("abcdefg")]).to_csv(csv,
                                                                                                        index=False)
    again = from_table(csv, TableFormat(unit="engine", time="cycle"))
    np.testing.assert_allclose(again.ttf, ds.ttf)
    # as Excel writes it in a German locale: ';' and decimal commas (read as one column 'engine;cycle;a;...', and
    # with --sep ';' every sensor "not numeric"): the same numbers. Whitespace-separated text with commas is still
    # refused: there '1,250' may be a thousand two hundred and fifty
    frame = pd.read_csv(csv)
    frame.to_csv(tmp_path / "eu.csv", sep=";", decimal=",", index=False)
    assert "," in (tmp_path / "eu.csv").read_text()
    eu = from_table(tmp_path / "eu.csv", TableFormat(unit="engine", time="cycle"))
    np.testing.assert_allclose(eu.ttf, ds.ttf)
    pd.testing.assert_frame_equal(eu.frame, again.frame)
    frame.to_csv(tmp_path / "eu.txt", sep=" ", decimal=",", index=False)
    with pytest.raises(DataError, match=r"columns \['a', 'b', .*\] are not numeric; .* \(numbers with a decimal "
                                        r"comma are read in a ';'-separated file"):
        from_table(tmp_path / "eu.txt", TableFormat(unit="engine", time="cycle"))
    # Excel's CSV in Windows-1252 (a column 'Temperatur Öl'), its 'Unicode text' (UTF-16, tabs): read as UTF-8 is
    # (decimal commas are read in ';' files only, as above)
    for name, encoding, sep, mark in (("latin.csv", "cp1252", ";", ","), ("unicode.csv", "utf-16", "\t", ".")):
        frame.rename(columns={"a": "Temperatur Öl"}).to_csv(tmp_path / name, sep=sep, decimal=mark, index=False,
                                                             encoding=encoding)
        other = from_table(tmp_path / name, TableFormat(unit="engine", time="cycle"))
        assert other.features[0] == "Temperatur Öl"
        np.testing.assert_allclose(other.frame[other.features].to_numpy(), eu.frame[eu.features].to_numpy())
    # an Excel workbook's first sheet, with and without a header row (columns then by position, as in a text file)
    frame.to_excel(tmp_path / "book.xlsx", index=False)
    pd.testing.assert_frame_equal(from_table(tmp_path / "book.xlsx", TableFormat(unit="engine", time="cycle")).frame,
                                  again.frame, check_dtype=False)  # a whole number stored as a float reads as an int
    frame.to_excel(tmp_path / "bare.xlsx", index=False, header=False)
    np.testing.assert_allclose(from_table(tmp_path / "bare.xlsx", TableFormat(unit=0, time=1)).ttf, ds.ttf)
    # a report's title above the table: left out where the row below it reads as a header, in text as in a workbook
    # (it was refused, asking to remove it by hand); named where it does not
    (tmp_path / "titled.csv").write_text("Engine report\n\n" + csv.read_text())
    pd.testing.assert_frame_equal(from_table(tmp_path / "titled.csv", TableFormat(unit="engine", time="cycle")).frame,
                                  again.frame)
    pd.concat([pd.DataFrame([["Engine report"]]), frame.T.reset_index().T]).to_excel(tmp_path / "titled.xlsx",
                                                                                    index=False, header=False)
    titled = from_table(tmp_path / "titled.xlsx", TableFormat(unit="engine", time="cycle"))
    pd.testing.assert_frame_equal(titled.frame, again.frame, check_dtype=False)
    assert titled.notes == ["titled.xlsx: its first row ('Engine report') lies above the table's header row, a "
                            "report's title: left out"]  # said by `twin train` and `twin evaluate`
    (tmp_path / "titled.csv").write_text("Engine report\n" + csv.read_text().replace("engine,", "1,", 1))
    with pytest.raises(DataError, match=r"line 2 has 9 fields, line 1 only 1: a title or notes above the table\? "
                                        r"No line below it reads as its header"):
        from_table(tmp_path / "titled.csv", TableFormat(unit="engine", time="cycle"))
    # a tab-separated export, named as the shell lets one: --sep tab (pandas refused 'tab' with its own words)
    frame.to_csv(tmp_path / "tabs.tsv", sep="\t", index=False)
    base = ["train", str(tmp_path / "tabs.tsv"), "--unit-column", "engine", "--time-column", "cycle", "--model",
            "regression", "--window", "5", "--out", str(tmp_path / "m")]
    assert_mistakes(base, [(["--sep", ";;"], "--sep ';;': give one character, e.g. ';' or 'tab' for a tab"),
                           (["--sep", "tab", "--features", "a,zz"], "feature columns ['zz'] are not in the file")])
    # features by position in a table without a header, as the unit and time columns (column_name: one rule)
    assert from_table(tables["train"], TableFormat(unit=0, time=1, features=["2", "c3"])).features == ["c2", "c3"]


@pytest.mark.parametrize(("fmt", "rul_lines", "message"), [
    (TableFormat(unit="engine", time="cycle"), None, "no unit id column 'engine'"),
    (TableFormat(unit=0, time=1, columns=["a", "b"]), None, "names 2 columns but the file has 9"),
    (TableFormat(unit=0, time=1, features=["c9"]), None, r"feature columns \['c9'\] are not in the file"),
    (FMT, "12\n13\n", "2 RUL values for 20 test units"),
    (FMT, "12\n" * 19 + "x\n", "no numeric RUL for test units"),
    (FMT, "12\n" * 18 + "-5\n12\n", r"RUL below 0 for test units \['19'\]"),  # was scored as if it were true
    # unit,RUL rows: a unit given twice (the last one won) or one the table lacks (left out without a word)
    (FMT, "".join(f"{u},12\n" for u in range(1, 21)) + "3,40\n", "unit '3' is given 2 RULs; give one per test unit"),
    (FMT, "".join(f"{u},12\n" for u in range(1, 21)) + "engine-9,40\n", r"units \['engine-9'\] are not in the "
                                                                       "test table"),
])
def test_bad_tables_say_what_to_fix(tables: dict[str, Path], tmp_path: Path, fmt: TableFormat,
                                    rul_lines: str | None, message: str) -> None:
    rul = None
    if rul_lines is not None:
        rul = tmp_path / "rul.txt"
        rul.write_text(rul_lines)
    with pytest.raises(DataError, match=message):
        from_table(tables["test"] if rul else tables["train"], fmt, rul)


def test_a_short_row_of_whitespace_text_is_refused_with_its_line(tables: dict[str, Path], tmp_path: Path) -> None:
    """A file cut off mid-write (or a row with a value left out) was padded with missing values at its end and
    trained on: in whitespace-separated text the values after a gap land in the wrong columns."""
    lines = tables["train"].read_text().splitlines()
    cut = tmp_path / "cut.txt"
    cut.write_text("\n".join([*lines[:-1], lines[-1].rsplit(" ", 2)[0]]))  # the last row loses two values
    with pytest.raises(DataError, match=rf"cut\.txt, line {len(lines)}: 7 values where the table has 9 columns"):
        from_table(cut, FMT)
    gap = tmp_path / "gap.txt"
    values = lines[4].split()
    gap.write_text("\n".join([*lines[:4], " ".join(values[:3] + values[4:]), *lines[5:]]))  # one left out
    with pytest.raises(DataError, match=r"gap\.txt, line 5: 8 values"):
        from_table(gap, FMT)
    r = twin("train", cut, "--unit-column", 0, "--time-column", 1)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"cut.txt, line {len(lines)}" in r.stderr, r.stderr


ROWS = pd.DataFrame({"unit": ["a"] * 4 + ["b"] * 4, "cycle": [1, 2, 3, 4] * 2, "temp": np.arange(8.0)})


@pytest.mark.parametrize(("change", "message"), [
    # each was trained on without a word (or, for the unit id, a traceback)
    ({"unit": None}, r"row 3 \(after any header\) has no unit id \(column 'unit'\)"),
    ({"cycle": None}, r"row 3 \(after any header\): time column 'cycle' is empty; every row needs a finite time"),
    ({"cycle": 2}, r"row 3 \(after any header\): unit 'a' already has a row at time 2 \(row 2\); .*two machines "
                   "under one id: give each its own unit id"),
    ({"temp": np.inf}, r"row 3 \(after any header\): column 'temp' is inf; give a finite number, or leave the "
                       "field empty"),
])
def test_rows_that_fit_no_history_are_refused_with_their_row(tmp_path: Path, change: dict[str, object],
                                                             message: str) -> None:
    """A row without a unit or a time, a unit's time given twice (a row recorded twice, or two machines under one
    id: which row is the failure would be a guess) and an infinite value are named, never trained on."""
    bad = ROWS.astype(object)
    for col, value in change.items():
        bad.loc[2, col] = value
    bad.to_csv(f := tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"bad\.csv: " + message):
        from_table(f, TableFormat(unit="unit", time="cycle"))
    iso = ROWS.assign(cycle=[f"2026-01-05T0{c}:00:00" for c in ROWS.cycle]).astype(object)
    iso.loc[2, "cycle"] = iso.loc[1, "cycle"]
    iso.to_csv(f, index=False)  # the time as the file writes it, not as hours
    with pytest.raises(DataError, match="already has a row at time 2026-01-05T02:00:00 "):
        from_table(f, TableFormat(unit="unit", time="cycle"))


CELL = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3),
                 st.sampled_from(["", "x", "1,5", "2026-01-05T06:00:00", "2026-01-05 07:00", "nan", "inf"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.one_of(st.none(), st.sampled_from(["a", "b", "c", ""])), CELL, CELL, CELL,
                          st.one_of(st.none(), st.integers(0, 2), st.sampled_from(["", "bearing", "running", "seal"]))),
                min_size=0, max_size=25), st.booleans())
def test_any_small_table_is_read_or_refused_clearly(tmp_path: Path, rows: list[tuple[object, ...]],
                                                    ends: bool) -> None:
    """Plant tables are untrusted input: whatever the cells (and how each unit ended, with an end column), a
    DataError naming the file, or run-to-failure data whose times and failures' targets are finite and whose
    features are finite or missing, that a preprocessor takes."""
    f = tmp_path / "fuzz.csv"
    pd.DataFrame(rows, columns=["unit", "time", "temp", "vib", "end"]).to_csv(f, index=False)
    try:
        ds = from_table(f, TableFormat(unit="unit", time="time", features=["temp", "vib"],
                                       end="end" if ends else None))
    except DataError as e:
        assert "fuzz.csv" in str(e), e
        return
    assert np.isfinite(ds.frame["time"]).all() and not np.isnan(ds.ttf).any()
    assert all(isinstance(m, str) and m for m in ds.modes)
    assert not np.isinf(ds.frame[ds.features].to_numpy(dtype=float)).any()
    assert not ds.frame.duplicated(["unit", "time"]).any()


def test_clean_fills_dropouts_and_stuck_runs_causally() -> None:
    x = np.array([[1.0], [np.nan], [3.0], [5.0], [5.0], [5.0], [5.0], [6.0]])
    out = clean(x)[:, 0]
    # the dropout takes the last good value; a value repeated 3 times is stuck from its third row on
    np.testing.assert_array_equal(out, [1, 1, 3, 5, 5, 5, 5, 6])
    assert np.isnan(clean(np.array([[np.nan], [2.0]]))[0, 0])  # nothing before it: no value invented from the future


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), min_size=3, max_size=3), max_size=12))
def test_ffill_is_pandas_ffill(rows: list[list[float | None]]) -> None:
    """The numpy forward fill the live windows use gives exactly pandas' ffill (NaN where nothing came before)."""
    x = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=np.float64).reshape(len(rows), 3)
    np.testing.assert_array_equal(ffill(x.copy()), pd.DataFrame(x).ffill().to_numpy())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lengths=st.lists(st.integers(1, 40), min_size=2, max_size=5), window=st.integers(1, 12),
       shuffle=st.booleans(), seed=st.integers(0, 2**16))
def test_lazy_windows_are_the_windows_each_row_ends(lengths: list[int], window: int, shuffle: bool,
                                                    seed: int) -> None:
    """Training and evaluation held every row's window at once, `window` times the data (a year of a weld cell's
    minutes: 3.8 GB of hour-long windows); the windows are now made as they are indexed, from the rows held once.
    Whatever the units' lengths (shorter than the window too) and order of rows, each one is the window of its
    unit's rows ending at it, padded with the unit's first row, as `sliding_window_view` makes it; any indexing
    (a row, a slice, an array of rows, a torch index, the extra windows after the rows') gives the same."""
    import torch
    from numpy.lib.stride_tricks import sliding_window_view

    from predictors.data import RunToFailure

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"unit": np.repeat([f"u{i}" for i in range(len(lengths))], lengths),
                          "t": np.concatenate([np.arange(n) for n in lengths]).astype(float)})
    frame["a"], frame["b"] = rng.normal(size=len(frame)), rng.normal(size=len(frame)) * 10 + 5
    if shuffle:  # a unit's rows need not be together
        frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    n = len(frame)
    ds = RunToFailure(frame=frame, features=["a", "b"], modes=[], ttf=np.full((n, 0), np.inf),
                      observed=np.zeros((n, 0)), step=1.0, time_unit="cycles")
    prep = Preprocessor(window=window).fit(ds)
    z = prep.scaled(prep._clean(ds))
    expected = np.empty((n, window, z.shape[1]), np.float32)
    for idx in frame.groupby("unit", sort=False).indices.values():  # the windows as they were made before
        padded = np.concatenate([np.repeat(z[idx[:1]], window - 1, axis=0), z[idx]])
        expected[idx] = sliding_window_view(padded, window, axis=0).transpose(0, 2, 1)
    w = prep.windows(ds)
    assert w.shape == expected.shape and len(w) == n
    np.testing.assert_array_equal(np.asarray(w), expected)
    np.testing.assert_array_equal(w[n - 1], expected[n - 1])
    np.testing.assert_array_equal(w[1:n:2], expected[1:n:2])
    rows = rng.permutation(n)[: max(1, n // 2)]
    np.testing.assert_array_equal(w[rows], expected[rows])
    np.testing.assert_array_equal(w[torch.from_numpy(rows)], expected[rows])
    np.testing.assert_array_equal(prep.windows(ds, rows)[:], expected[rows])
    extra = rng.normal(size=(3, window, z.shape[1])).astype(np.float32)
    both = w.with_extra(extra)
    np.testing.assert_array_equal(both[np.array([0, n, n + 2])], np.stack([expected[0], extra[0], extra[2]]))
    np.testing.assert_array_equal(np.concatenate(list(both.chunks(7))), np.concatenate([expected, extra]))
    assert w._rows.nbytes <= z.nbytes + len(lengths) * (window - 1) * z.shape[1] * 4  # each row once


def test_the_validation_loss_of_many_windows_is_summed_a_chunk_at_a_time(tables: dict[str, Path]) -> None:
    """The network's loss over every validation window at once took gigabytes for long histories (a month of
    body_shop: 1.6 GB in `twin train --model lstm`, 0.9 GB now): beyond VALID_AT_ONCE windows it is summed a chunk
    at a time, and is the same loss."""
    import torch

    import predictors.lstm as lstm

    ds = from_table(tables["train"], FMT)
    model = forecasters()["lstm"](window=30, horizon=20, cap=125, epochs=1, seed=0).fit(ds)
    x, *targets = model._xy(ds)
    assert len(x) > 500
    whole = model._valid_loss(model.net_, x, model._targets(*targets))
    at_once = lstm.VALID_AT_ONCE
    try:
        lstm.VALID_AT_ONCE = 97  # chunks of 97 windows, the last one short
        chunked = model._valid_loss(model.net_, x, model._targets(*targets))
    finally:
        lstm.VALID_AT_ONCE = at_once
    assert chunked == pytest.approx(whole, rel=1e-5) and torch.get_num_threads() >= 1


def test_preprocessor_drops_constant_features_and_pads_windows(tables: dict[str, Path]) -> None:
    ds = from_table(tables["train"], FMT)
    prep = Preprocessor(window=30).fit(ds)
    assert "c7" not in [ds.features[i] for i in prep.kept or []]  # the constant sensor
    w = prep.windows(ds, np.array([0, 40]))
    assert w.shape == (2, 30, len(prep.kept or []))
    assert np.allclose(w[0], w[0][0])  # a unit's first row: the window is that row repeated
    live = prep.live_window(ds.frame[ds.features].to_numpy()[:41])
    np.testing.assert_allclose(live, w[1], atol=1e-6)  # live windows are built the same way


# six operating regimes' settings (op1, op2): C-MAPSS FD002's first two; six points in a plane, so a model cannot
# take their effect off linearly from the settings
REGIMES = np.array([(0.0, 0.0), (10.0, 0.25), (20.0, 0.7), (25.0, 0.62), (35.0, 0.84), (42.0, 0.84)])


def with_regimes(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The table run in six operating regimes, each for a campaign of 10 to 40 cycles (as a machine runs one
    product, load or speed for a while): settings at the regime's values, and each sensor shifted by several times
    its wear signal and scaled per regime (the same regimes for every seed)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(10, 41, len(df) // 10 + 1)
    regime = np.repeat(rng.integers(0, len(REGIMES), len(lengths)), lengths)[:len(df)]
    fixed = np.random.default_rng(99)
    sensors = ["s1", "s2", "s3", "s4", "s5"]
    shift = fixed.normal(0, 1, (len(REGIMES), len(sensors))) * [240.0, 1600.0, 24.0, 120.0, 80.0]
    gain = fixed.uniform(0.7, 1.5, (len(REGIMES), len(sensors)))
    out = df.copy()
    out[["op1", "op2"]] = REGIMES[regime] + rng.normal(0, 0.002, (len(df), 2))
    x = df[sensors].to_numpy()
    mean = x.mean(axis=0)
    out[sensors] = mean + (x - mean) * gain[regime] + shift[regime]
    return out


def test_operating_regimes_are_found_and_standardised_away(tmp_path: Path) -> None:
    """With the settings as operating conditions, the three regimes are found; within each, every kept sensor is
    standardised (mean 0, sd 1), the settings are no input, a sensor constant within each regime is dropped, and
    the state round-trips. Settings that are only noise make one regime; a model file from before regimes loads."""
    import json

    plain, _ = degradation_table(30, seed=3)
    ds = from_table(write_nasa(with_regimes(plain, 3), tmp_path / "regimes.txt"), FMT)
    prep = Preprocessor(window=30, conditions=["c2", "c3"]).fit(ds)
    assert prep.centers is not None and len(prep.centers) == 6
    assert [ds.features[i] for i in prep.kept or []] == ["c4", "c5", "c6", "c8"]  # no settings; c7 was constant
    x = prep._clean(ds)
    z, regime = prep.scaled(x), prep.regime(x)
    assert np.bincount(regime).min() > len(x) / 12  # each regime found where it was flown
    for r in range(6):
        np.testing.assert_allclose(z[regime == r].mean(axis=0), 0, atol=1e-4)
        np.testing.assert_allclose(z[regime == r].std(axis=0), 1, atol=1e-3)
    again = Preprocessor.from_state(json.loads(json.dumps(prep.state())))
    np.testing.assert_array_equal(again.scaled(x), z)
    live = again.live_window(ds.frame[ds.features].to_numpy()[:41])  # a live window, regimes and all
    np.testing.assert_allclose(live, prep.windows(ds, np.array([40]))[0], atol=1e-6)
    damaged = prep.state()
    damaged["conditions"]["centers"] = damaged["conditions"]["centers"][:5]
    with pytest.raises(ValueError, match="regime"):
        Preprocessor.from_state(damaged)
    assert Preprocessor(window=30, conditions=["c2", "c3"], regimes=2).fit(ds).centers.shape == (2, 2)

    noise = from_table(write_nasa(plain, tmp_path / "plain.txt"), FMT)
    one = Preprocessor(window=30, conditions=["c2", "c3"]).fit(noise)
    assert one.centers is not None and len(one.centers) == 1
    old = Preprocessor(window=30).fit(noise).state()
    old["mean"], old["scale"] = old["mean"][0], old["scale"][0]  # as saved before regimes: 1-D
    x = one._clean(noise)
    np.testing.assert_array_equal(Preprocessor.from_state(old).scaled(x), Preprocessor(window=30).fit(noise).scaled(x))
    with pytest.raises(ValueError, match="'op9' not among the features"):
        Preprocessor(window=30, conditions=["op9"]).fit(noise)
    with pytest.raises(ValueError, match="every feature is named an operating condition"):
        Preprocessor(window=30, conditions=noise.features).fit(noise)
    two = np.repeat([[0.0, 0.0], [3.0, 1.0]], 500, axis=0)  # a setting with two exact values: two regimes
    assert len(find_regimes(two)) == 2 and len(find_regimes(np.zeros((100, 1)))) == 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3),
                          st.one_of(st.none(), st.sampled_from([0.0, 1.0, 5.0]), st.floats(-1e3, 1e3)),
                          st.one_of(st.none(), st.floats(-1e3, 1e3)), st.floats(-1e3, 1e3)), min_size=1, max_size=40),
       st.integers(0, 4))
@example([(1, 0.0, 0.0, 1.0), (1, 1.0, 2.0, 2.0), (1, 5.0, 1.0, 4.0)], 0)  # as many distinct regimes as rows
def test_any_small_table_with_conditions_fits_or_says_why(rows: list[tuple[int, float | None, float | None, float]],
                                                          regimes: int) -> None:
    """Whatever the rows (missing or constant conditions, a handful of rows, repeats), fitting regimes either works,
    with finite inputs for the model, or raises a ValueError that says why: never another exception."""
    import warnings

    from predictors.data import RunToFailure

    frame = pd.DataFrame([(str(u), t, c, c2, x) for t, (u, c, c2, x) in enumerate(rows)],
                         columns=["unit", "time", "load", "speed", "vib"]).astype({"load": float, "speed": float})
    ds = RunToFailure(frame, ["load", "speed", "vib"], [], np.zeros((len(frame), 0)), np.zeros((len(frame), 0)), 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k-means on a handful of points warns that it found fewer clusters
        try:
            prep = Preprocessor(window=3, conditions=["load", "speed"], regimes=regimes).fit(ds)
        except ValueError as e:
            assert "constant" in str(e) or "regimes asked for" in str(e), e
            return
        assert np.isfinite(prep.scaled(prep._clean(ds))).all()


@pytest.mark.slow
def test_standardising_per_regime_lets_a_model_see_wear_through_regime_changes(tmp_path: Path) -> None:
    """The CNN on engines run in campaigns of six regimes, scored on cut-off test engines (RMSE against the truth
    capped at 125, the model's own target: its skill, not the cap's): without the settings as conditions the regimes
    drown the wear (RMSE 39.5 when written); with them it forecasts as well as on engines of one regime (15.0 and
    16.9)."""
    from predictors.evaluate import evaluate

    train, _ = degradation_table(40, seed=1)
    test, rul = degradation_table(20, seed=2, cut=True)
    np.savetxt(tmp_path / "RUL.txt", rul, fmt="%d")
    rmse = {}
    for name, regimes, conditions in (("one regime", False, []), ("regimes, as is", True, []),
                                      ("regimes, by regime", True, ["c2", "c3"])):
        tr = write_nasa(with_regimes(train, 1) if regimes else train, tmp_path / "train.txt")
        te = write_nasa(with_regimes(test, 2) if regimes else test, tmp_path / "test.txt")
        model = forecasters()["cnn"](window=30, horizon=30.0, cap=125.0, conditions=conditions, epochs=10)
        model.fit(from_table(tr, FMT))
        rmse[name] = float(evaluate({"m": model}, from_table(te, FMT, tmp_path / "RUL.txt")).scores.rmse_capped.iloc[0])
    assert rmse["regimes, by regime"] < 0.6 * rmse["regimes, as is"], rmse
    assert rmse["regimes, by regime"] < 1.25 * rmse["one regime"], rmse


# --- metrics and alerts ----------------------------------------------------------------------------

def test_asymmetric_score_punishes_late_more_than_early() -> None:
    late = rul_scores(np.array([20.0]), np.array([10.0]), 1.0)
    early = rul_scores(np.array([0.0]), np.array([10.0]), 1.0)
    assert late["score"] == pytest.approx(np.exp(1) - 1) and early["score"] == pytest.approx(np.exp(10 / 13) - 1)
    assert late["rmse"] == early["rmse"] == 10.0


def test_hysteresis_neither_raises_nor_clears_on_one_forecast() -> None:
    rule = AlertRule(on=0.5, off=0.2, confirm=3, clear_after=5, dwell=1)
    noisy = [0.1, 0.9, 0.1, 0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.3, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    eps = episodes(list(range(len(noisy))), noisy, ["m"] * len(noisy), rule)
    assert eps == [(8, 17, "m")]  # raised after 3 in a row, cleared only after 5 low in a row
    state = AlertState(rule)
    transitions = [state.update(i, p, "m") for i, p in enumerate([0.6, 0.6, 0.6, 0.9, 0.9])]
    assert transitions == [None, None, "raised", "updated", None] and state.severity == "critical"


def test_a_flapping_forecast_gives_one_alert_whose_mode_and_severity_change_no_faster_than_the_dwell() -> None:
    """Probabilities jumping across the critical threshold and a likeliest mode that flips at every forecast (what
    a reliability engineer saw: 70 updates for 7 alerts): one alert, its mode and severity changed only when a new
    one held for `dwell` forecasts, and never twice within `dwell`."""
    rule = AlertRule(on=0.5, off=0.2, confirm=3, clear_after=5, dwell=10)
    rng = np.random.default_rng(4)
    p = np.clip(0.75 + rng.normal(0, 0.08, 400), 0.55, 0.99)  # now and then above critical (0.85)
    modes = [("bearing" if i < 3 or rng.random() < 0.5 else "valve") if i < 200 else "valve" for i in range(400)]
    p[:3], p[300:] = 0.7, 0.95  # raised as a warning; later the risk truly becomes critical, and stays
    state, changes = AlertState(rule), []
    for i, (pi, m) in enumerate(zip(p, modes)):
        tr = state.update(i, float(pi), m)
        if tr is not None:
            changes.append((i, tr, state.severity, state.mode))
    assert [c[1] for c in changes].count("raised") == 1 and "cleared" not in [c[1] for c in changes]
    updates = [c[0] for c in changes if c[1] == "updated"]
    assert all(b - a >= rule.dwell for a, b in itertools.pairwise(updates)), changes
    assert 1 <= len(updates) <= 4, changes  # without the dwell: over a hundred
    assert changes[0][2:] == ("warning", "bearing") and state.severity == "critical" and state.mode == "valve"
    assert len(episodes(list(range(400)), p.tolist(), modes, rule)) == 1


def test_an_alert_holds_while_the_machine_is_stopped_and_ends_with_its_repair() -> None:
    status = MachineStatus()
    for t, state in ((0, "working"), (20, "down"), (8, "off_shift"), (14, "starved"), (23, "setup"), (5, "blocked")):
        status.add(t, state)  # out of order, as messages may come; idle and setup count as running
    assert status.times == [0, 8, 14, 20, 23] and status.at(-1) == "running" and status.at(9) == "off"
    assert status.many(np.array([-1.0, 3, 8, 15, 21, 30])).tolist() == ["running", "running", "off", "running",
                                                                          "service", "running"]
    rule = AlertRule(on=0.5, off=0.2, confirm=3, clear_after=5)
    p = [0.9] * 6 + [0.0] * 6 + [0.9] * 8 + [0.0] * 6 + [0.9] * 3
    at = status.many(np.arange(len(p))).tolist()
    eps = episodes(list(range(len(p))), p, ["m"] * len(p), rule, at)
    # raised at 2; held through the night (8-13: low forecasts of a stopped machine neither clear it nor
    # count); down at 20 (its failure); after the repair 3 low forecasts (23-25), not 5, clear it; the
    # forecasts raise a new alert three forecasts later
    assert eps == [(2, 25, "m"), (28, None, "m")]
    assert episodes(list(range(len(p))), p, ["m"] * len(p), rule)[0] == (2, 10, "m")  # no status: cleared overnight
    still = [0.9] * 20 + [0.0] * 3 + [0.9] * 3 + [0.0] * 4
    assert episodes(list(range(len(still))), still, ["m"] * len(still), rule, at[:len(still)]) == [(2, None, "m")]
    # ... unless the forecasts after the repair say the risk remains: then clearing needs 5 low ones again


def test_a_repair_for_a_fault_the_models_do_not_forecast_holds_the_alert() -> None:
    """Down for a sudden fault (its downtime reason is not a forecast mode): the wear is still there, the alert
    holds as off shift; down for a forecast mode, or with no reason known, it is a service that ends the alert."""
    rule = AlertRule(on=0.5, off=0.2, confirm=3, clear_after=5)
    # raised at 2; down 6-8; after the restart 3 low forecasts (their window still holds the stop), then high ones
    p = [0.9] * 6 + [0.0] * 6 + [0.9] * 3
    for reason, eps in (("jam", [(2, None, "m")]), ("bearing_wear", [(2, 11, "m"), (14, None, "m")]),
                        ("", [(2, 11, "m"), (14, None, "m")])):
        status = MachineStatus(frozenset({"bearing_wear"}))
        status.add(0, "working")
        status.add(6, "down", reason)
        status.add(9, "working")
        assert status.at(7) == ("off" if reason == "jam" else "service")
        assert episodes(list(range(len(p))), p, ["m"] * len(p), rule,
                        status.many(np.arange(len(p))).tolist()) == eps, reason
        # the anomaly detector scores only windows of a machine that ran throughout
        assert status.ran_throughout(0, 6) and status.ran_throughout(9, 20) and not status.ran_throughout(5, 10)
        assert not status.ran_throughout(7, 8) and MachineStatus().ran_throughout(0, 1e9)
    unknown = MachineStatus()  # no modes known: every repair is a service
    unknown.add(6, "down", "jam")
    assert unknown.at(7) == "service"


def test_many_intervals_at_once_agree_with_one_at_a_time() -> None:
    status = MachineStatus(frozenset({"wear"}))
    for t, state, reason in [(10, "down", "wear"), (12, "working", ""), (20, "down", "jam"), (25, "working", ""),
                             (30, "off_shift", ""), (40, "starved", ""), (50, "maintenance", "")]:
        status.add(t, state, reason)
    a = np.random.default_rng(0).uniform(0, 60, 500)
    b = a + np.random.default_rng(1).uniform(0, 8, 500)
    a, b = np.concatenate([a, [0, 12, 25, 40, 9]]), np.concatenate([b, [10, 20, 30, 50, 10]])  # edges too
    assert status.ran_many(a, b).tolist() == [status.ran_throughout(x, y) for x, y in zip(a, b)]
    assert MachineStatus().ran_many(np.array([1.0]), np.array([2.0])).tolist() == [True]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.sampled_from(["working", "idle", "down", "maintenance", "off_shift"]),
                          st.sampled_from(["", "wear", "jam", None])), max_size=40))
def test_many_changes_at_once_equal_adding_them_in_time_order(changes: list[tuple[int, str, str | None]]) -> None:
    """`of_changes` (a store's day at once) keeps the same change points as `add`-ing the changes in time order."""
    changes = sorted(changes, key=lambda c: c[0])
    one = MachineStatus(frozenset({"wear"}))
    for t, state, reason in changes:
        one.add(t, state, reason or "")
    t, state, reason = (np.array([c[i] for c in changes], dtype=float if i == 0 else object) for i in range(3))
    many = MachineStatus.of_changes(t, state, reason, frozenset({"wear"}))
    assert (many.times, many.status, many.reason) == (one.times, one.status, one.reason)


def test_alert_events_match_failures_and_measure_lead_time() -> None:
    t = np.arange(0, 20, dtype=float)
    p = np.where((t >= 5) & (t < 12), 0.9, 0.0)  # raised at 7 (3 in a row), active until cleared
    frame = pd.DataFrame({"unit": "u", "time": t, "p_alert": p, "mode": "wear"})
    failures = pd.DataFrame({"unit": ["u", "u"], "time": [10.0, 18.0], "fault_mode": ["wear", "wear"]})
    ev = alert_events(frame, failures, horizon=5.0, rule=AlertRule(confirm=3, clear_after=2))
    s = ev.scores()
    assert (s["alerts"], s["caught"], s["failures"]) == (1, 1, 2)
    assert s["precision"] == 1.0 and s["recall"] == 0.5 and s["lead_mean"] == 3.0


# --- the contract every model keeps ----------------------------------------------------------------

FAST = {"lstm": {"epochs": 4, "hidden": 16}, "cnn": {"epochs": 2, "channels": 4, "depth": 2}}


@pytest.mark.parametrize("kind", sorted(forecasters()))
def test_model_contract(kind: str, tables: dict[str, Path], tmp_path: Path) -> None:
    ds = from_table(tables["train"], FMT)
    test = from_table(tables["test"], FMT, tables["rul"])
    make = lambda: forecasters()[kind](horizon=30.0, cap=125.0, window=20, seed=3, **FAST.get(kind, {}))  # noqa: E731
    model = make().fit(ds)
    fc = model.predict(test)
    assert fc.rul.shape == (len(test),) and fc.proba.shape == (len(test), 1)
    assert (fc.rul >= 0).all() and (fc.rul <= 125.0).all() and ((fc.proba >= 0) & (fc.proba <= 1)).all()
    assert (fc.low <= fc.rul + 1e-9).all() and (fc.high >= fc.rul - 1e-9).all()
    assert model.meta_["data"]["fingerprint"] == ds.fingerprint() and model.meta_["kind"] == kind
    assert model.meta_["validation"]["rul_rmse"] > 0 and 0 <= model.meta_["validation"]["row_f1"] <= 1
    # same data, same seed: the same model
    np.testing.assert_array_equal(make().fit(ds).predict(test).rul, fc.rul)
    # save → load: identical forecasts, no pickle in the file
    path = model.save(tmp_path / "m")
    again = load(path)
    np.testing.assert_array_equal(again.predict(test).rul, fc.rul)
    np.testing.assert_array_equal(again.predict(test).proba, fc.proba)
    np.load(path.with_suffix(".npz"), allow_pickle=False).close()


def test_an_ensemble_trains_on_every_unit_and_averages_its_members(tables: dict[str, Path], tmp_path: Path) -> None:
    """members=3: three models, each validated on its own third of the units (the folds partition them), forecasts
    the members' mean, the interval from out-of-fold errors; saved and loaded whole."""
    ds = from_table(tables["train"], FMT)
    test = from_table(tables["test"], FMT, tables["rul"])
    model = forecasters()["cnn"](horizon=30.0, cap=125.0, window=20, seed=3, members=3, **FAST["cnn"]).fit(ds)
    folds = model.meta_["member_valid_units"]
    assert len(model.members_) == 3 and sorted(u for f in folds for u in f) == sorted(ds.frame.unit.unique())
    assert model.meta_["train_units"] == sorted(ds.frame.unit.unique()) and model.meta_["valid_units"] == []
    assert [m.seed for m in model.members_] == [3, 4, 5] and model.seed == 3
    fc = model.predict(test)
    x = model.prep_.windows(test)
    mean = np.clip(np.mean([m._predict(x)[0] for m in model.members_], axis=0), 0, 125.0)
    np.testing.assert_allclose(fc.rul, mean, rtol=1e-6)
    assert not np.allclose(model.members_[0]._predict(x)[0], model.members_[1]._predict(x)[0])
    assert (fc.low <= fc.rul + 1e-9).all() and (fc.high >= fc.rul - 1e-9).all() and (fc.high > fc.low).any()
    again = load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(again.predict(test).rul, fc.rul)
    np.testing.assert_array_equal(again.predict(test).proba, fc.proba)


def test_a_forecast_alerts_only_on_the_modes_it_may() -> None:
    from predictors.base import Forecast

    proba = np.array([[0.2, 0.9], [0.6, 0.1]])
    fc = Forecast(np.zeros(2), np.zeros(2), np.zeros(2), proba, ["wear", "rare"], np.array([True, False]))
    np.testing.assert_allclose(fc.p_alert, [0.2, 0.6])  # the rare mode's 0.9 raises nothing
    assert fc.alert_mode.tolist() == ["wear", "wear"] and fc.p_any[0] == pytest.approx(0.92)
    silent = Forecast(np.zeros(2), np.zeros(2), np.zeros(2), proba, ["wear", "rare"], np.array([False, False]))
    assert silent.p_alert.tolist() == [0.0, 0.0] and silent.alert_mode.tolist() == ["", ""]


def test_a_mode_seen_failing_too_rarely_raises_no_alerts(tables: dict[str, Path], tmp_path: Path) -> None:
    """Trained on two units (two failures) a model still forecasts, but its alerts are withheld; on forty it alerts.
    The choice is saved with the model, and the evaluation scores the alerts the model would really raise."""
    from predictors.data import MIN_ALERT_FAILURES
    from predictors.evaluate import evaluate

    full = from_table(tables["train"], FMT)
    held = full.subset(full.frame.unit.unique()[30:].tolist())
    few = full.subset(full.frame.unit.unique()[:MIN_ALERT_FAILURES - 1].tolist())
    rich = full.subset(full.frame.unit.unique()[:30].tolist())
    assert few.modes_to_alert() == [] and rich.modes_to_alert() == ["failure"]
    params = {"horizon": 30.0, "cap": 125.0, "window": 20, "seed": 0, "valid_fraction": 0.0}
    quiet, loud = (forecasters()["regression"](**params).fit(ds) for ds in (few, rich))
    assert quiet.alert_modes == [] and quiet.meta_["data"]["failures_per_mode"] == {"failure": 2}
    fc = load(quiet.save(tmp_path / "quiet")).predict(held)
    assert fc.proba.max() > 0.5 and fc.p_alert.max() == 0.0  # it forecasts; it does not alert
    s = evaluate({"few": quiet, "rich": loud}, held).scores.set_index("model")
    assert s.loc["few", "alert_alerts"] == 0 and s.loc["few", "row_f1"] > 0  # forecasts scored, alerts withheld
    assert s.loc["rich", "alert_alerts"] > 0 and s.loc["rich", "alert_recall"] >= 0.8


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["regression", "lstm"])
def test_models_beat_the_baseline_on_the_test_protocol(kind: str, tables: dict[str, Path]) -> None:
    from predictors.evaluate import evaluate

    ds = from_table(tables["train"], FMT)
    test = from_table(tables["test"], FMT, tables["rul"])
    models = {name: forecasters()[name](horizon=30.0, cap=125.0, window=20, seed=0).fit(ds)
              for name in ("baseline", kind)}
    s = evaluate(models, test).scores.set_index("model")
    assert s.loc[kind, "n"] == 20  # one forecast per test unit: its last row
    assert s.loc[kind, "rmse"] < 0.6 * s.loc["baseline", "rmse"]


def twin(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "twin.app.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_external_tables_train_and_evaluate_through_the_cli(tables: dict[str, Path], tmp_path: Path) -> None:
    # the public benchmarks' files end their lines with spaces; the RUL file too
    for name in ("train", "test", "rul"):
        text = tables[name].read_text().replace("\n", " \n")
        (tmp_path / tables[name].name).write_text(text)
    train, test, rul = (tmp_path / tables[n].name for n in ("train", "test", "rul"))
    r = twin("train", train, "--unit-column", 0, "--time-column", 1, "--model", "lstm", "--epochs", 15,
             "--window", 20, "--out", tmp_path / "m")
    assert r.returncode == 0, r.stderr
    assert "table" in r.stdout and (tmp_path / "m" / "table" / "model.json").exists()
    r = twin("evaluate", test, "--rul", rul, "--unit-column", 0, "--time-column", 1, "--models", tmp_path / "m",
             "--out", tmp_path / "report")
    assert r.returncode == 0, r.stderr
    # what it does, said as it starts each step (output not a terminal: plain lines), where it was silent until the
    # first table (a month of a twin run: 8 s) and again until the report's path (11 s)
    steps = [line for line in r.stderr.splitlines() if line.endswith("…")]
    assert steps == ["reading 1 table…", f"table: forecasting {len(pd.read_csv(test, sep=' ', header=None)):,} rows "
                     "with 2 models…", f"writing the report to {tmp_path / 'report'}…"]
    s = pd.read_csv(tmp_path / "report" / "scores-table.csv").set_index("model")
    assert s.loc["lstm", "n"] == 20 and s.loc["lstm", "rmse"] < 0.6 * s.loc["baseline", "rmse"]
    assert "## table" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.slow
def test_the_cli_says_which_modes_raise_no_alerts(tables: dict[str, Path], tmp_path: Path) -> None:
    rows = pd.read_csv(tables["train"], sep=" ", header=None)
    few = write_nasa(rows[rows[0] <= 2], tmp_path / "two-units.txt")  # two failures
    r = twin("train", few, "--unit-column", 0, "--time-column", 1, "--model", "regression", "--window", 20,
             "--out", tmp_path / "m")
    said = " ".join(r.stderr.split())
    assert r.returncode == 0 and "failure: 2" in said and "raises no alerts: failure" in said, r.stderr
    r = twin("evaluate", tables["train"], "--unit-column", 0, "--time-column", 1, "--models", tmp_path / "m",
             "--out", tmp_path / "report")
    said = " ".join(r.stderr.split())
    assert r.returncode == 0 and "no alerts for failure (trained on 2 failures)" in said, r.stderr
    s = pd.read_csv(tmp_path / "report" / "scores-table.csv").set_index("model")
    assert s.loc["regression", "alert_alerts"] == 0 and s.loc["regression", "alert_failures"] == 40


@pytest.mark.slow
@pytest.mark.parametrize(("args", "message"), [
    (("--unit-column", "engine"), "no unit id column 'engine'"),
    (("--unit-column", 0, "--time-column", 1, "--features", "c3,bogus"), "feature columns ['bogus']"),
    (("--unit-column", 0, "--time-column", 1, "--horizon", "-3"), "--horizon: must be a positive number"),
    (("--unit-column", 0, "--time-column", 1, "--horizon", "50", "--cap", "20"), "--cap"),
])
def test_cli_table_mistakes_are_one_clear_paragraph(tables: dict[str, Path], args: tuple[object, ...],
                                                    message: str) -> None:
    r = twin("train", tables["train"], *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert str(tables["train"].name) in r.stderr or message.startswith("--")


def test_a_column_in_two_roles_and_a_horizon_that_is_no_number_are_refused(tables: dict[str, Path]) -> None:
    """--unit-column 1 --time-column 1 ended in a KeyError traceback; --horizon nan passed every check, 1e400 was
    told as '--cap (None) must be at least the horizon (1e400)'."""
    base = ["train", str(tables["train"]), "--model", "regression"]
    assert_mistakes(base, [
        (["--unit-column", "1", "--time-column", "1"], "column c1 is both the unit id column and the time column"),
        (["--unit-column", "0", "--time-column", "1", "--features", "c1,c3"], "column c1 is both the time column and "
                                                                             "a feature column"),
        (["--unit-column", "0", "--time-column", "1", "--horizon", "nan"], "--horizon: must be a positive number"),
        (["--unit-column", "0", "--time-column", "1", "--horizon", "1e400"], "--horizon: must be a positive number"),
        (["--unit-column", "0", "--time-column", "1", "--horizon", "200"], "--cap (125) must be at least the "
                                                                          "horizon (200)"),
    ])


def test_evaluation_scores_the_true_rul_uncapped_and_knows_its_training_units(tables: dict[str, Path]) -> None:
    """The benchmark's truth is never capped: the report's RMSE is against it, and the figure against the capped
    truth (the training target) is a separately labelled extra; evaluating on training units is recognised by the
    records' fingerprints, whatever their unit numbers."""
    from predictors.evaluate import evaluate, overlap, table

    ds = from_table(tables["train"], FMT)
    model = forecasters()["regression"](horizon=30.0, cap=60.0, window=20, seed=0).fit(ds)
    test = from_table(tables["test"], FMT, tables["rul"])
    ev = evaluate({"regression": model}, test)
    s = ev.scores.set_index("model").loc["regression"]
    fc = ev.forecasts["regression"]
    assert (fc.rul_true > 60).any() and (fc.rul_true_capped <= 60).all()  # some true RUL beyond the cap
    assert s.rmse == pytest.approx(np.sqrt(np.mean((fc.rul - fc.rul_true) ** 2)))
    assert s.rmse > s.rmse_capped and s.n == s.n_capped == 20
    assert "RMSE, truth capped at 60.0 cycles" in table(ev).columns and "NASA score" in table(ev).columns
    assert overlap({"regression": model}, test) == ""
    renumbered = ds.frame.assign(unit=ds.frame.unit.map(lambda u: f"x{u}"))
    again = from_table(write_nasa(renumbered[renumbered.unit.isin(["x1", "x2"])], tables["train"].with_name("re.txt")),
                       FMT)
    assert overlap({"regression": model}, again).startswith("2 of 2 evaluation units are training units")


@pytest.mark.slow
def test_twin_evaluate_keeps_each_report_and_says_when_it_scores_training_data(tables: dict[str, Path],
                                                                              tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import twin_cmd

    def twin(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(twin_cmd(*args), cwd=tmp_path, capture_output=True, text=True, timeout=300)

    r = twin("train", tables["train"], "--unit-column", 0, "--time-column", 1, "--model", "regression", "--window",
             20, "--threads", 1, "--out", tmp_path / "m")
    assert r.returncode == 0, r.stderr
    assert "table:" in r.stderr, "progress as plain lines when the output is not a terminal"
    args = ("--unit-column", 0, "--time-column", 1, "--models", tmp_path / "m")
    first, second = twin("evaluate", tables["train"], *args), twin("evaluate", tables["train"], *args)
    assert first.returncode == second.returncode == 0, first.stderr
    reports = sorted((tmp_path / "reports").iterdir())
    assert len(reports) == 2, "a second evaluation does not overwrite the first"
    assert "are training units of these models" in " ".join(first.stderr.split())
    assert "NASA" in first.stdout and "scores on TRAINING units" in first.stdout
    report = (reports[0] / "report.md").read_text()
    assert "NASA score" in report and "are training units of these models" in report
    predictions = pd.read_csv(reports[0] / "predictions-table.csv")
    assert {"unit", "model", "rul", "rul_true", "rul_true_capped"} <= set(predictions.columns)
    probabilities = [c for c in predictions.columns if c.startswith("p_")]
    assert (predictions[["rul", "rul_true"]].round(3) == predictions[["rul", "rul_true"]]).all().all()
    assert probabilities and (predictions[probabilities].round(6) == predictions[probabilities]).all().all()  # not 17
    out = twin("evaluate", tables["test"], "--rul", tables["rul"], *args, "--out", reports[0])
    assert out.returncode == 2 and "holds an earlier report" in out.stderr and "--force" in out.stderr
    forced = twin("evaluate", tables["test"], "--rul", tables["rul"], *args, "--out", reports[0], "--force")
    assert forced.returncode == 0 and "held-out scores" in forced.stdout and "training units" not in forced.stderr
    bad = twin("train", tables["train"], "--unit-column", 0, "--time-column", 1, "--features", "s[9]")
    assert bad.returncode == 2 and "s[9]" in bad.stderr, "names are printed verbatim, not read as markup"


@pytest.mark.slow
def test_twin_train_with_operating_conditions(tmp_path: Path) -> None:
    """`twin train --conditions` (positions of a table without a header) finds and reports the regimes, and the
    saved model scores new engines with them; mistakes in the options are clear errors."""
    from tests.conftest import ROOT, twin_cmd

    train, _ = degradation_table(30, seed=3)
    test, rul = degradation_table(10, seed=4, cut=True)
    np.savetxt(tmp_path / "RUL.txt", rul, fmt="%d")
    paths = [write_nasa(with_regimes(df, seed), tmp_path / f"{name}.txt")
             for df, seed, name in ((train, 3, "train"), (test, 4, "test"))]
    cols = ("--unit-column", 0, "--time-column", 1)
    r = subprocess.run(twin_cmd("train", paths[0], *cols, "--model", "regression", "--conditions", "2,3", "--out",
                                tmp_path / "m"), cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "COLUMNS": "200"})
    assert r.returncode == 0 and "6 operating regimes" in r.stdout, r.stdout + r.stderr
    model = load(tmp_path / "m" / "table" / "model.json")
    assert model.conditions == ["c2", "c3"] and model.prep_ is not None and model.prep_.centers.shape == (6, 2)
    ev = subprocess.run(twin_cmd("evaluate", paths[1], *cols, "--rul", tmp_path / "RUL.txt", "--models",
                                 tmp_path / "m", "--out", tmp_path / "report"), cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
    assert ev.returncode == 0 and "held-out scores" in ev.stdout, ev.stderr
    assert_mistakes(["train", str(paths[0]), "--unit-column", "0", "--time-column", "1", "--out",
                     str(tmp_path / "m2")],
                    [(["--regimes", "3"], "--regimes counts the operating regimes of the --conditions features"),
                     (["--conditions", "c2,op[9]"], "--conditions: 'op[9]' is not a feature of table (its features: "
                                                    "c2, c3, c4"),
                     (["--conditions", "2", "--regimes", "13"], "--regimes")])


def test_censored_units_and_fault_modes_of_a_maintenance_record(tmp_path: Path) -> None:
    """Real records: units replaced before failing or still running (censored, used but not counted as failures)
    and several fault modes, named in an end column at each unit's last row."""
    train, _ = degradation_table(12, seed=5)
    ends = {u: ("bearing" if u % 3 == 0 else "seal" if u % 3 == 1 else "replaced") for u in train.unit.unique()}
    ends[2] = "running"
    train["end"] = train.unit.map(ends)
    path = tmp_path / "records.csv"
    train.to_csv(path, index=False)
    ds = from_table(path, TableFormat(unit="unit", time="cycle", end="end"))
    assert ds.modes == ["bearing", "seal"] and "end" not in ds.features
    assert sorted(ds.failures.fault_mode) == ["bearing"] * 4 + ["seal"] * 4  # 4 censored units: no failure
    censored = ds.frame.unit == "2"
    assert np.isinf(ds.ttf[censored.to_numpy()]).all() and (ds.observed[censored.to_numpy()] >= 0).all()
    bearing = (ds.frame.unit == "3").to_numpy()
    assert np.isfinite(ds.ttf[bearing, 0]).all() and np.isinf(ds.ttf[bearing, 1]).all()
    model = forecasters()["regression"](horizon=30.0, cap=125.0, window=20, seed=0).fit(ds)
    assert model.meta_["data"]["failures"] == 8 and set(model.modes_) == {"bearing", "seal"}
    # an end left empty is a unit that did not fail, as 'running' is (it was a traceback: an empty cell read as NaN)
    train["end"] = train.unit.map({**ends, 2: ""})
    train.to_csv(path, index=False)
    again = from_table(path, TableFormat(unit="unit", time="cycle", end="end"))
    assert sorted(again.failures.fault_mode) == sorted(ds.failures.fault_mode) and again.modes == ds.modes
    np.testing.assert_array_equal(again.ttf, ds.ttf)


@pytest.mark.slow  # three commands
def test_a_record_with_times_not_cycles_trains_and_scores_in_hours(tables: dict[str, Path], tmp_path: Path) -> None:
    """A plant's records carry times (ISO 8601), not cycle counts: the time column was refused as 'not numeric'. Now
    the time is read as hours since the table's first, every RUL in hours; a model learnt in cycles is refused on
    it, not scored in the wrong unit."""
    train, _ = degradation_table(24, seed=7)
    start = pd.Timestamp("2026-01-05 06:00")  # one row an hour, two hours for the odd units: the step is the time's
    hours = train.cycle * np.where(train.unit % 2, 2, 1)
    stamped = train.assign(cycle=(start + pd.to_timedelta(hours, unit="h")).dt.strftime("%Y-%m-%dT%H:%M:%S"))
    stamped = stamped.rename(columns={"cycle": "time", "unit": "machine"})
    stamped.to_csv(tmp_path / "records.csv", index=False)
    ds = from_table(tmp_path / "records.csv", TableFormat(unit="machine", time="time"))
    assert ds.time_unit == "h"
    first = (ds.frame.groupby("unit", sort=False).cumcount() == 0).to_numpy()
    life = train.groupby("unit").cycle.max()
    expected = [(2 * life[int(u)] - 2) if int(u) % 2 else (life[int(u)] - 1) for u in ds.frame.unit[first]]
    assert ds.ttf[first, 0] == pytest.approx(expected)  # each unit's first row (hour 1 or 2) to its end, in hours
    r = twin("train", tmp_path / "records.csv", "--unit-column", "machine", "--time-column", "time", "--model",
             "regression", "--window", 10, "--out", tmp_path / "m")
    assert r.returncode == 0, r.stderr
    r = twin("evaluate", tmp_path / "records.csv", "--unit-column", "machine", "--time-column", "time", "--models",
             tmp_path / "m", "--out", tmp_path / "report")
    assert r.returncode == 0, r.stderr
    assert set(pd.read_csv(tmp_path / "report" / "scores-table.csv").time_unit) == {"h"}
    r = twin("train", tables["train"], "--unit-column", 0, "--time-column", 1, "--model", "regression", "--window",
             10, "--out", tmp_path / "cycles")
    assert r.returncode == 0, r.stderr
    assert_mistakes(["evaluate", str(tmp_path / "records.csv"), "--unit-column", "machine", "--time-column", "time",
                     "--out", str(tmp_path / "r2")], [
        (["--models", str(tmp_path / "cycles")], "the data's time is in hours (ISO 8601 times), the baseline model "
                                                 "learnt its RUL in cycles (numbers)")])
    stamped.loc[5, "time"] = "05.01.2026 11:00"
    stamped.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"time column 'time', row 6 \(after any header\): '05.01.2026 11:00' is "
                                        "neither a number"):
        from_table(tmp_path / "bad.csv", TableFormat(unit="machine", time="time"))


def test_records_in_local_time_across_autumns_change_count_the_hours_as_they_passed(tmp_path: Path) -> None:
    """A plant's hourly records in local time show 02:00 twice on the night the clocks go back: refused as a unit
    with two rows at one time, and nothing to do about it. With --timezone they are read as the hours that passed
    (the repeated hour told apart by the step back in each unit's times, twin.clock), as times with their UTC
    offsets are; the refusal without it says so."""
    train, _ = degradation_table(4, seed=3)
    real = pd.Timestamp("2026-10-24T12:00Z") + pd.to_timedelta(train.cycle, unit="h")  # the change at cycle 13
    local = real.dt.tz_convert("Europe/Berlin")
    records = train.assign(cycle=local.dt.strftime("%Y-%m-%dT%H:%M:%S")).rename(columns={"cycle": "time"})
    records.to_csv(tmp_path / "local.csv", index=False)
    records.assign(time=local.map(lambda t: t.isoformat())).to_csv(tmp_path / "offsets.csv", index=False)
    with pytest.raises(DataError, match=r"unit '1' already has a row at time 2026-10-25T02:00:00 .* give each its "
                                        r"own unit id \(local times without --timezone: autumn's change of clocks "
                                        r"repeats an hour\)"):
        from_table(tmp_path / "local.csv", TableFormat(time="time"))
    zoned = from_table(tmp_path / "local.csv", TableFormat(time="time", timezone="Europe/Berlin"))
    offsets = from_table(tmp_path / "offsets.csv", TableFormat(time="time"))
    np.testing.assert_allclose(zoned.ttf, offsets.ttf)
    records.sort_values(["time", "unit"], kind="stable").to_csv(tmp_path / "by-time.csv", index=False)  # interleaved
    interleaved = from_table(tmp_path / "by-time.csv", TableFormat(time="time", timezone="Europe/Berlin"))
    np.testing.assert_allclose(interleaved.ttf, offsets.ttf)
    np.testing.assert_allclose(zoned.ttf[0, 0], train[train.unit == 1].cycle.max() - 1)  # hours, as they passed
    r = twin("train", tmp_path / "local.csv", "--time-column", "time", "--timezone", "Europe/Berlim", "--model",
             "regression", "--out", tmp_path / "m")
    assert r.returncode == 2 and "--timezone 'Europe/Berlim': not a time zone" in r.stderr, r.stderr


def test_a_table_of_independent_labelled_rows_is_refused_not_scored(tmp_path: Path) -> None:
    """One row per product with a failure flag (the AI4I milling data's shape), given with the product id as the
    unit: refused with the reason, never trained to a meaningless perfect score."""
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"Product ID": [f"M{i}" for i in range(300)], "step": 1, "torque": rng.normal(40, 10, 300),
                         "wear": rng.uniform(0, 250, 300), "Machine failure": rng.random(300) < 0.03})
    rows["Machine failure"] = rows["Machine failure"].astype(int)
    path = tmp_path / "ai4i.csv"
    rows.to_csv(path, index=False)
    with pytest.raises(DataError, match="300 of 300 units have a single row"):
        from_table(path, TableFormat(unit="Product ID", time="step"))


@pytest.mark.slow
def test_the_whole_path_on_a_slice_of_nasa_fd001_beats_the_constant_baseline(tmp_path: Path) -> None:
    """NASA's C-MAPSS FD001 (16 of its 100 training engines, tests/data/fd001_slice.txt, public data): read, train
    the CNN a few epochs on 12 engines, evaluate on the other 4 cut off before failure (uncapped truth): it beats
    the constant baseline. The cross-validated figures on all 100 engines are bench/cmapss.py's
    (docs/forecasting.md)."""
    import subprocess

    from tests.conftest import ROOT, twin_cmd

    rows = pd.read_csv(ROOT / "tests" / "data" / "fd001_slice.txt", sep=r"\s+", header=None)
    train, test = rows[rows[0] <= 12], rows[rows[0] > 12]
    cuts = {13: 40, 14: 90, 15: 20, 16: 120}  # true RUL at the cut
    test = pd.concat([g.iloc[:len(g) - cuts[u]] for u, g in test.groupby(0)])
    write_nasa(train, tmp_path / "train.txt")
    write_nasa(test, tmp_path / "test.txt")
    np.savetxt(tmp_path / "rul.txt", list(cuts.values()), fmt="%d")
    r = subprocess.run(twin_cmd("train", tmp_path / "train.txt", "--unit-column", 0, "--time-column", 1, "--model",
                                "cnn", "--epochs", 12, "--out", tmp_path / "m"), cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "Warning" not in r.stderr, r.stderr  # torch's remarks are not the user's business (the CNN's even kernel)
    r = subprocess.run(twin_cmd("evaluate", tmp_path / "test.txt", "--rul", tmp_path / "rul.txt", "--unit-column", 0,
                                "--time-column", 1, "--models", tmp_path / "m", "--out", tmp_path / "report"),
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "Warning" not in r.stderr, r.stderr
    s = pd.read_csv(tmp_path / "report" / "scores-table.csv").set_index("model")
    assert s.loc["cnn", "n"] == 4 and s.loc["cnn", "rmse"] < s.loc["baseline", "rmse"], s[["rmse", "score"]]
