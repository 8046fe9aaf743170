"""`twin fit` against a known truth: a status log the twin itself wrote from a scenario kept here, fitted back;
and every way a status log can be wrong gives a clear error."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, assert_mistakes, run_all, twin_cmd
from twin.fit import LogError, LogFormat, fit_times, log_from_run, read_log, read_parts, stops_log
from twin.scenario import Scenario, load_scenario

TRUTH = ROOT / "tests" / "scenarios" / "fit_truth.yaml"
_DAY = st.datetimes(min_value=dt.datetime(2026, 1, 5, 6), max_value=dt.datetime(2026, 1, 6, 6))
# around the hour a Berlin clock repeats (02:00-03:00 twice) and the hour it skips: read with ZONES' Berlin
_CHANGES = st.one_of(st.datetimes(min_value=dt.datetime(2026, 10, 25, 1), max_value=dt.datetime(2026, 10, 25, 4)),
                     st.datetimes(min_value=dt.datetime(2026, 3, 29, 1), max_value=dt.datetime(2026, 3, 29, 4)))
ZONES = st.sampled_from(["UTC", "Europe/Berlin"])
_NAMED = st.builds(lambda t, z: f"{t:%Y-%m-%d %H:%M:%S} {z}", _CHANGES,  # a zone's name after the time, or a word
                   st.sampled_from(["CET", "CEST", "MEZ", "MESZ", "EDT", "UTC", "OCT", "ABCDE", "cest"]))


@pytest.mark.slow
def test_fit_recovers_the_truth_and_the_fitted_line_makes_as_many_parts(tmp_path: Path) -> None:
    sc = load_scenario(TRUTH)
    run_all(twin_cmd("run", TRUTH, "--no-stream", "--replications", 1, "--out", tmp_path / "plant"))
    log = log_from_run(pd.read_parquet(tmp_path / "plant" / "truth" / "states.parquet"),
                       pd.read_parquet(tmp_path / "plant" / "truth" / "events.parquet"), pd.Timestamp(sc.start))
    log.to_csv(tmp_path / "status.csv", index=False)
    (r,) = run_all(twin_cmd("fit", tmp_path / "status.csv", "--base", TRUTH, "--out", tmp_path / "fitted.yaml"))
    assert "machine figures of the log inside the simulated 95 % CI" in " ".join(r.stdout.split())
    fitted = pd.read_csv(tmp_path / "fitted-report" / "fitted.csv")
    truth = {("die_wear", "ttf"): 3 * 3600 * 0.893, ("die_wear", "repair"): 1200, ("trip", "ttf"): 8 * 3600,
             ("trip", "repair"): 360}  # Weibull mean = scale × Γ(1 + 1/3)
    for _, row in fitted.iterrows():
        if row.events >= 200:
            assert row["mean [h]"] * 3600 == pytest.approx(truth[(row["fault mode"], row.time)], rel=0.10), row
    wear = fitted[(fitted["fault mode"] == "die_wear") & (fitted.time == "ttf")].iloc[0]
    assert wear.family == "weibull" and float(wear.parameters.split("shape=")[1].split(",")[0]) >= 2
    assert wear.censored > 0  # lives cut short by the planned maintenance were used, censored
    check = pd.read_csv(tmp_path / "fitted-report" / "validation.csv")
    assert (check.verdict == "inside the CI").mean() >= 0.8, check
    # the same fit from the store's state records (as `twin connect` writes a plant's): no export to a file first
    run_all(twin_cmd("fit", f"duckdb:///{tmp_path / 'plant' / 'twin.duckdb'}", "--base", TRUTH, "--out",
                     tmp_path / "from-store.yaml", "--replications", 2))
    # the store keeps times to the millisecond, the run's files to the nanosecond: the same fit to 4 digits
    store_fit = pd.read_csv(tmp_path / "from-store-report" / "fitted.csv")
    pd.testing.assert_frame_equal(store_fit.drop(columns="parameters"), fitted.drop(columns="parameters"), rtol=1e-4)
    # the fitted line simulated beside the original one: the same throughput, within the original's CI
    from twin.app.runner import simulate
    from twin.kpi import summarize

    def throughput(scenario_file: Path) -> pd.Series:
        s = load_scenario(scenario_file).model_copy(update={"duration": 20 * 86400.0, "replications": 6})
        k = summarize([simulate(s, rep, sensors=False).kpis for rep in range(6)])
        return k[(k.scope == "line") & (k.kpi == "throughput [parts/h]")].iloc[0]

    original, refit = throughput(TRUTH), throughput(tmp_path / "fitted.yaml")
    assert original.ci_low <= refit["mean"] <= original.ci_high, (original, refit)
    layout = load_scenario(tmp_path / "fitted.yaml")
    assert [s.name for s in layout.stations] == [s.name for s in sc.stations]  # the layout is the base's
    assert yaml.safe_load((tmp_path / "fitted.yaml").read_text())["machine_types"]["press"]["fault_modes"][0][
        "ttf"]["dist"] == "weibull"


def test_censored_weibull_fit_and_aic_choice() -> None:
    rng = np.random.default_rng(3)
    life = 1000 * rng.weibull(3.0, 600)
    cut = rng.uniform(300, 2000, 600)  # planned services stop some lives early
    f = fit_times(life[life <= cut], cut[life > cut])
    assert f.family == "weibull" and f.spec["shape"] == pytest.approx(3.0, rel=0.15)
    assert f.mean == pytest.approx(1000 * 0.893, rel=0.05) and f.censored == int((life > cut).sum())
    assert f.ks < 0.06 and set(f.aic) == {"exponential", "weibull", "lognormal", "gamma"}
    g = fit_times(rng.exponential(50.0, 400), np.array([]))
    assert g.family in ("exponential", "gamma", "weibull") and g.mean == pytest.approx(50, rel=0.12)


@pytest.mark.parametrize(("text", "expected"), [
    ("time,machine,state\n2026-01-05T06:00,press-1,working\n", "column timestamp missing"),
    ("timestamp,machine,state\n2026-01-05T06:00,press-1,working\nyesterday,press-1,down\n",
     "row 3 (line 3 of a CSV), column timestamp: 'yesterday' is not a time"),
    ("timestamp,machine,state\n2026-01-05T06:00,press-1,RUN\n", "row 2, column state: 'RUN' is not a machine state"),
    ("\x00\x01binary", "column"),
    ("timestamp,machine,state\n", "log.csv: no rows under the header. A status log has timestamp"),  # a traceback
    ("timestamp,machine,state\n2026-01-05T06:00,press-1,working\n2026-01-05T06:00,press-2,down\n",
     "the log covers no time"),  # was fitted, and its validation divided by a span of 0 (runtime warnings)
    ("timestamp,machine,state\n1767600000,press-1,working\n1767603600,press-1,down\n",  # read as ns after 1970
     "row 2 (line 2 of a CSV), column timestamp: 1767600000 is a number, not a time"),
])
def test_a_bad_status_log_names_the_row_column_and_fix(tmp_path: Path, text: str, expected: str) -> None:
    f = tmp_path / "log.csv"
    f.write_text(text)
    with pytest.raises(LogError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        read_log(f)


def test_times_with_utc_offsets_are_read_on_the_lines_clock(tmp_path: Path) -> None:
    """A log across a daylight-saving change has two UTC offsets (a pandas 'Mixed timezones' traceback); an offset
    kept only its wall time, so '06:00Z' read as 06:00 on a Berlin line's clock, an hour early in winter."""
    f = tmp_path / "log.csv"
    f.write_text("timestamp,machine,state\n2026-03-29T00:30:00+01:00,press-1,working\n"
                 "2026-03-29T03:30:00+02:00,press-1,down\n2026-03-29T05:00:00Z,press-1,working\n")
    log = read_log(f, "Europe/Berlin")
    assert [str(t) for t in log.timestamp] == ["2026-03-29 00:30:00", "2026-03-29 03:30:00", "2026-03-29 07:00:00"]
    f.write_text("timestamp,machine,state\n2026-03-29T00:30:00,press-1,working\n"
                 "2026-03-29T03:30:00+02:00,press-1,down\n")
    with pytest.raises(LogError, match=r"row 2 \(line 2 of a CSV\), column timestamp: '2026-03-29T00:30:00' has no UTC "
                                       r"offset, row 3's has one"):
        read_log(f, "Europe/Berlin")
    f.write_text("timestamp,machine,state\n2026-03-29T00:30:00+01:00,press-1,working\nyesterday,press-1,down\n")
    with pytest.raises(LogError, match=r"row 3 \(line 3 of a CSV\), column timestamp: 'yesterday' is not a time"):
        read_log(f, "Europe/Berlin")


def test_times_with_their_zones_name_are_read_as_with_its_offset(tmp_path: Path) -> None:
    """MES and Java logs write the zone's name after the time (02:40:00 CEST, German MEZ/MESZ; Java's 'Sun Oct 25
    02:40:00 CEST 2026'), which tells the two passes of autumn's repeated hour apart: refused as not ISO 8601 (and no
    --time-format could read 'CEST'). Read as the offsets they name; a zone that is not the line's is named."""
    f = tmp_path / "log.csv"
    times = ["01:30:00+02:00", "02:40:00+02:00", "02:10:00+01:00", "02:50:00+01:00", "03:10:00+01:00"]
    rows = "".join(f"2026-10-25T{t},press-1,{s}\n" for t, s in zip(times, ["working", "down"] * 3))
    f.write_text("timestamp,machine,state\n" + rows)
    expected = read_log(f, "Europe/Berlin")
    assert expected.timestamp.dt.strftime("%H:%M").tolist() == ["01:30", "02:20", "02:35", "02:55", "03:10"]
    named = [t[:8] + (" CEST" if t.endswith("+02:00") else " MEZ") for t in times]
    f.write_text("timestamp,machine,state\n" + "".join(f"2026-10-25 {t},press-1,{s}\n" for t, s in zip(
        named, ["working", "down"] * 3)))
    pd.testing.assert_frame_equal(read_log(f, "Europe/Berlin"), expected, check_dtype=False)
    java = [f"Sun Oct 25 {t[:8]} {'CEST' if t.endswith('+02:00') else 'CET'} 2026" for t in times]
    f.write_text("timestamp,machine,state\n" + "".join(f"{t},press-1,{s}\n" for t, s in zip(java, ["working",
                                                                                                "down"] * 3)))
    pd.testing.assert_frame_equal(read_log(f, "Europe/Berlin", fmt=LogFormat(time_format="%a %b %d %H:%M:%S %Z %Y")),
                                  expected, check_dtype=False)
    f.write_text("timestamp,machine,state\n2026-10-25 01:30:00 EDT,press-1,working\n")
    with pytest.raises(LogError, match=re.escape(
            "row 2 (line 2 of a CSV), column timestamp: '2026-10-25 01:30:00 EDT' names its time zone EDT, not the "
            "line's (Europe/Berlin: UTC, GMT, CET, CEST, MEZ, MESZ); write the time with its UTC offset")):
        read_log(f, "Europe/Berlin")


@pytest.mark.parametrize(("value", "hint"), [
    ("05.01.2026 06:00", "--time-format '%d.%m.%Y %H:%M' (day first)"),
    ("13/01/26 06:00:00", "--time-format '%d/%m/%y %H:%M:%S' (day first)"),
    ("01/13/2026", "--time-format '%m/%d/%Y' (month first)"),
    ("01/02/2026 06:00", "--time-format '%d/%m/%Y %H:%M' (day first) or '%m/%d/%Y %H:%M' (month first)"),
    ("Jan 5 2026 6:00", "give the log's own format with --time-format (strftime codes"),
    # a 12-hour clock (US exports): '%H' and a trailing 'PM' was a hint no time matched
    ("1/13/2026 6:30:00 PM", "--time-format '%m/%d/%Y %I:%M:%S %p' (month first)"),
    ("13.01.2026 6:30pm", "--time-format '%d.%m.%Y %I:%M%p' (day first)"),
])
def test_times_not_in_iso_8601_are_refused_with_the_format_they_ask_for(tmp_path: Path, value: str, hint: str) -> None:
    """pandas read any text it could: '05.01.2026' (5 January in Germany) as 1 May, and '13.01.2026' as 13 January,
    so a day-first export became a garbled timeline and a fit of nonsense, without a word."""
    f = tmp_path / "log.csv"
    f.write_text(f"timestamp,machine,state\n2026-01-05T05:00,press-1,working\n{value},press-1,down\n")
    with pytest.raises(LogError, match=re.escape(f"row 3 (line 3 of a CSV), column timestamp: {value!r} is not a time "
                                                 f"in ISO 8601 (2026-01-05T06:00:00); ") + ".*" + re.escape(hint)):
        read_log(f)


def test_a_time_with_a_mistyped_year_is_refused(tmp_path: Path) -> None:
    """A status log with 1828-01-01 beside 2026 was read, and a what-if's midway state overflowed pandas' 292 years of
    time differences (found by the status-log fuzzer): a plant's times are 1971 to 2200, as for numbers."""
    f = tmp_path / "log.csv"
    f.write_text("timestamp,machine,state\n2026-01-05T05:00,press-1,working\n1828-01-01T00:00,press-1,down\n")
    with pytest.raises(LogError, match=re.escape("row 3 (line 3 of a CSV), column timestamp: '1828-01-01T00:00' is "
                                                 "not a plant's time, 1971 to 2200: is its year mistyped?")):
        read_log(f)


def test_times_written_as_numbers_are_read_with_the_unit_given(tmp_path: Path) -> None:
    """A CSV saved from Excel whose time column is not formatted as dates holds date serials (46027.25), a historian's
    export epoch seconds or milliseconds: refused with a hint to convert them in Python. The refusal now names the
    unit the number's size suggests and the time it would be; --time-format excel (the line's local time), epoch or
    epoch-ms (UTC) read them as the ISO times they stand for."""
    iso = ["2026-01-05T06:00:00", "2026-01-05T07:30:00.250", "2026-01-05T09:15:00"]
    f = tmp_path / "log.csv"
    f.write_text("timestamp,machine,state\n" + "".join(f"{t},press-1,{s}\n" for t, s in zip(iso, ["working", "down",
                                                                                                "working"])))
    expected = read_log(f, "Europe/Berlin")
    wall = pd.to_datetime(iso, format="ISO8601")
    serials = (wall - pd.Timestamp("1899-12-30")) / pd.Timedelta(days=1)
    seconds = (wall.tz_localize("Europe/Berlin").tz_convert("UTC").tz_localize(None) - pd.Timestamp(0)) / pd.Timedelta(
        seconds=1)
    for unit, numbers, shown in [("excel", serials, "46027.25"), ("epoch", seconds, "1767589200.0"),
                                 ("epoch-ms", seconds * 1000, "1767589200000.0")]:
        f.write_text("timestamp,machine,state\n" + "".join(f"{n!r},press-1,{s}\n" for n, s in zip(
            numbers, ["working", "down", "working"])))
        with pytest.raises(LogError, match=re.escape(f"column timestamp: {shown} is a number, not a time; read as ")
                           + ".* it is " + re.escape(f"2026-01-05 0{5 if unit != 'excel' else 6}:00:00: if so, give "
                                                    f"--time-format {unit}")):
            read_log(f, "Europe/Berlin")
        read = read_log(f, "Europe/Berlin", fmt=LogFormat(time_format=unit))
        pd.testing.assert_frame_equal(read, expected, check_dtype=False)  # times to the ns, ISO's to the µs
    with pytest.raises(LogError, match=re.escape("row 2 (line 2 of a CSV), column timestamp: 1767589200000.0 is not a "
                                                 "plant's time in seconds since 1970 (UTC), 1971 to 2200")):
        read_log(f, "Europe/Berlin", fmt=LogFormat(time_format="epoch"))
    f.write_text("timestamp,machine,state\n46027.25,press-1,working\nmonday,press-1,down\n")
    with pytest.raises(LogError, match=re.escape("row 3 (line 3 of a CSV), column timestamp: 'monday' is not a plant's "
                                                 "time in days since 1899-12-30")):
        read_log(f, "Europe/Berlin", fmt=LogFormat(time_format="excel"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(unit=st.sampled_from(["excel", "epoch", "epoch-ms"]),
       values=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70),
                                 st.text(max_size=12)), min_size=1, max_size=6))
@example(unit="excel", values=[0.5, -81183])  # before pandas' 1677 once counted back from 1899: an overflow
def test_any_numbers_as_times_are_read_or_refused_clearly(tmp_path: Path, unit: str, values: list[object]) -> None:
    """Numbers of any size (or none) under --time-format excel, epoch or epoch-ms: times of 1971 to 2200, or a
    LogError naming the row; never an overflow's traceback."""
    rows = pd.DataFrame({"timestamp": values, "machine": "press-1",
                         "state": ["working", "down"] * (len(values) // 2) + ["working"] * (len(values) % 2)})
    f = tmp_path / "log.parquet"
    rows.astype({"timestamp": str}).to_parquet(f)
    try:
        log = read_log(f, "Europe/Berlin", fmt=LogFormat(time_format=unit))
    except LogError as e:
        assert "\n" not in str(e) and str(f) in str(e)
        return
    assert log.timestamp.between(pd.Timestamp("1970-12-31"), pd.Timestamp("2200-01-02")).all()


def test_a_plants_export_is_read_with_its_delimiter_column_names_and_time_format(tmp_path: Path) -> None:
    f = tmp_path / "mes.csv"
    f.write_text("Zeit;Maschine;Status;Grund\n05.01.2026 06:00;press-1;working;\n13.01.2026 07:30;press-1;down;trip\n")
    fmt = LogFormat(columns={"Zeit": "timestamp", "Maschine": "machine", "Status": "state", "Grund": "reason"},
                    time_format="%d.%m.%Y %H:%M")
    log = read_log(f, fmt=fmt)
    assert [str(t) for t in log.timestamp] == ["2026-01-05 06:00:00", "2026-01-13 07:30:00"]
    assert log.state.tolist() == ["working", "down"] and log.reason.fillna("").tolist() == ["", "trip"]
    assert read_log(f, fmt=LogFormat(**{**fmt.__dict__, "sep": ";"})).equals(log)
    with pytest.raises(LogError, match=r"row 3 \(line 3 of a CSV\), column timestamp: '13.01.2026 07:30' does not "
                                       r"match --time-format '%m.%d.%Y %H:%M'"):
        read_log(f, fmt=LogFormat(columns=fmt.columns, time_format="%m.%d.%Y %H:%M"))
    f.write_text("Zeit;Maschine;Status;state\n2026-01-05T06:00;press-1;working;x\n")
    with pytest.raises(LogError, match="--columns maps 'Status' to state, a column the file has already"):
        read_log(f, fmt=fmt)
    f.write_text("timestamp, machine, state, reason\n2026-01-05T06:00, press-1, working,\n"
                 "2026-01-05T07:00 , press-1 , down , trip \n")  # spaces around the fields: the export's layout
    spaced = read_log(f)
    assert spaced.machine.tolist() == ["press-1"] * 2 and spaced.state.tolist() == ["working", "down"]
    assert spaced.reason.tolist()[1] == "trip"
    f.write_text("Zeit\tMaschine\tStatus\n2026-01-05T06:00+01:00\tpress-1\tworking\n"
                 "2026-01-05T07:00+01:00\tpress-1\tdown\n")
    assert [str(t) for t in read_log(f, "Europe/Berlin", fmt=LogFormat(columns=fmt.columns)).timestamp] == [
        "2026-01-05 06:00:00", "2026-01-05 07:00:00"]


def test_a_log_is_read_in_the_encoding_excel_wrote_it_in(tmp_path: Path) -> None:
    """Excel's 'CSV' in a German locale writes 'Störung' in Windows-1252, its 'Unicode text' in UTF-16 with tabs,
    its 'CSV UTF-8' with a byte-order mark, Windows tools' 'Unicode' UTF-16 without one: each was refused ('utf-8'
    codec can't decode byte 0xf6) or read with '\ufefftimestamp' for a column name; each now reads as the UTF-8 file
    does. Bytes no encoding reads are refused
    with the encodings a CSV may be written in."""
    text = ("timestamp;machine;state;reason\n2026-01-05T06:00;press-1;working;\n2026-01-05T07:00;press-1;down;Störung\n"
            "2026-01-05T07:20;press-1;working;\n")
    (tmp_path / "utf8.csv").write_text(text, encoding="utf-8")
    log = read_log(tmp_path / "utf8.csv")
    assert log.reason.tolist()[1] == "Störung"
    for name, encoding, sep in (("excel.csv", "cp1252", ";"), ("unicode.txt", "utf-16", "\t"),
                                ("bom.csv", "utf-8-sig", ";"), ("le.txt", "utf-16-le", "\t"),
                                ("be.csv", "utf-16-be", ",")):
        (tmp_path / name).write_text(text.replace(";", sep), encoding=encoding)
        pd.testing.assert_frame_equal(read_log(tmp_path / name), log)
    (tmp_path / "bad.csv").write_bytes(text.encode("cp1252").replace("ö".encode("cp1252"), b"\x81"))
    with pytest.raises(LogError, match=r"bad.csv: not a readable CSV, Excel or Parquet file \(.*\); a CSV is read as "
                                       "UTF-8, UTF-16, or Windows-1252"):
        read_log(tmp_path / "bad.csv")


def test_a_log_kept_as_an_excel_workbook_reads_as_its_csv(tmp_path: Path) -> None:
    """An MES export saved as .xlsx (times as Excel dates, a machine named as a number) was read as CSV text and
    refused with its zip bytes for column names; its first sheet is read now, and an Excel 97-2003 .xls's as older
    MES export them (refused before), or the tab-separated text some name .xls. A workbook named .csv, a damaged one,
    one saved with a password and a web page named .xls are named as such."""
    text = ("timestamp,machine,state,reason\n2026-01-05T06:00,press-1,working,\n2026-01-05T07:00,press-1,down,trip\n"
            "2026-01-05T07:20,press-1,working,\n2026-01-05T08:00,4711,working,\n")
    (tmp_path / "log.csv").write_text(text)
    log = read_log(tmp_path / "log.csv")
    frame = pd.read_csv(tmp_path / "log.csv")
    frame.assign(timestamp=pd.to_datetime(frame.timestamp)).to_excel(tmp_path / "log.xlsx", index=False)
    pd.testing.assert_frame_equal(read_log(tmp_path / "log.xlsx"), log)
    (tmp_path / "log-as.csv").write_bytes((tmp_path / "log.xlsx").read_bytes())
    (tmp_path / "cut.xlsx").write_bytes((tmp_path / "log.xlsx").read_bytes()[:2000])
    # tests/data/status.xls: the same log written by xlwt 1.3 as Excel 97-2003 writes it (times as dates, 4711 a number)
    pd.testing.assert_frame_equal(read_log(ROOT / "tests" / "data" / "status.xls"), log)
    (tmp_path / "tabs.xls").write_text(text.replace(",", "\t"), encoding="cp1252")
    pd.testing.assert_frame_equal(read_log(tmp_path / "tabs.xls"), log)
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500)
    (tmp_path / "damaged.xls").write_bytes(ole)
    (tmp_path / "locked.xlsx").write_bytes(ole)  # an encrypted workbook is an Office 97-2003 container
    (tmp_path / "xls-as.csv").write_bytes((ROOT / "tests" / "data" / "status.xls").read_bytes())
    (tmp_path / "page.xls").write_text("<html><body><table><tr><td>timestamp</td></tr></table></body></html>")
    for name, said in (("log-as.csv", "a zip archive, not text: an Excel workbook is read when its name ends in "
                                      ".xlsx"),
                       ("cut.xlsx", "not a readable Excel workbook (CalamineError"),
                       ("damaged.xls", "not a readable Excel workbook (CalamineError: Cannot detect file format; a "
                                       "workbook saved with a password is one: save it without)"),
                       ("locked.xlsx", "an Office 97-2003 document, not an .xlsx workbook: a workbook saved with a "
                                       "password is one; save it without a password"),
                       ("xls-as.csv", "an Excel 97-2003 workbook or another Office document, not text: a workbook is "
                                      "read when its name ends in .xls or .xlsx"),
                       ("page.xls", "a web page (HTML) named .xls, as some MES write their Excel exports: open it in "
                                    "Excel and save it as .xlsx or CSV")):
        with pytest.raises(LogError, match=re.escape(f"{tmp_path / name}: not a readable CSV, Excel or Parquet file "
                                                     f"({said}")):
            read_log(tmp_path / name)
    # a title above the table, as MES reports print one: pandas' 'Expected 1 fields in line 4, saw 4', or a header
    # of 'Unnamed: 1' columns; then refused, asking to remove the lines by hand (in a file of a million rows).
    # Left out, said, where the row below them reads as a header; a row's mistake named with its line in the file
    (tmp_path / "titled.csv").write_text("Störungsbericht Linie 1\nJanuar 2026\n\n" + text)
    titled = read_log(tmp_path / "titled.csv")
    pd.testing.assert_frame_equal(titled, log)
    assert titled.attrs["notes"] == ["titled.csv: its first 3 lines ('Störungsbericht Linie 1', …) lie above the "
                                     "table's header row, a report's title: left out"]
    (tmp_path / "titled.csv").write_text(f"Störungsbericht Linie 1\nJanuar 2026\n\n{text}yesterday,press-1,down,\n")
    with pytest.raises(LogError, match=r"row 9 \(line 9 of a CSV\), column timestamp: 'yesterday' is not a time"):
        read_log(tmp_path / "titled.csv")
    (tmp_path / "titled.csv").write_text("timestamp,machine,state\n" + "2026-01-05T06:00,press-1,working,\n" * 3)
    with pytest.raises(LogError, match=r"\(line 2 has 4 fields, line 1 only 3: a title or notes above the table\? "
                                       r"No line below it reads as its header \(a column name in every field\); "
                                       r"remove the lines above the header row \(if line 1 is the header, give it a "
                                       r"name for every field\)\)\.$"):
        read_log(tmp_path / "titled.csv")
    (tmp_path / "ragged.csv").write_text(text + "2026-01-05T09:00,press-1,down,jam, hydraulics\n")  # a ',' in a field
    with pytest.raises(LogError, match=r"\(line 6 has 5 fields, the lines above it 4: a ',' inside a field\? Put that "
                                       r"field in double quotes, or give every line the header's fields\)\.$"):
        read_log(tmp_path / "ragged.csv")
    pd.concat([pd.DataFrame([["Störungsbericht Linie 1"]]), pd.DataFrame([frame.columns]), frame.T.reset_index(
        drop=True).T]).to_excel(tmp_path / "titled.xlsx", index=False, header=False)
    pd.testing.assert_frame_equal(read_log(tmp_path / "titled.xlsx"), log)
    pd.concat([pd.DataFrame([["Störungsbericht Linie 1"]]), pd.DataFrame([frame.columns]), frame.T.reset_index(
        drop=True).T, pd.DataFrame([["2026-01-05T09:00", "press-1", "stopped", ""]])]).to_excel(
        tmp_path / "titled.xlsx", index=False, header=False)
    with pytest.raises(LogError, match=r"titled.xlsx: row 7, column state: 'stopped' is not a machine state"):
        read_log(tmp_path / "titled.xlsx")  # the workbook's row: title 1, header 2, the table's rows 3 to 7
    pd.DataFrame([["Störungsbericht Linie 1", None], [None, "Januar"], [1, 2]]).to_excel(
        tmp_path / "notes.xlsx", index=False, header=False)  # no row below the title reads as a header: named
    with pytest.raises(LogError, match=r"columns timestamp, machine, state missing .* Its first row reads "
                                       r"'Störungsbericht Linie 1' and nothing else: a title above the table\? Remove "
                                       "the rows above"):
        read_log(tmp_path / "notes.xlsx")
    with pd.ExcelWriter(tmp_path / "cover.xlsx") as book:  # a cover sheet before the table's
        pd.DataFrame({"Bericht": ["Linie 1"]}).to_excel(book, sheet_name="Deckblatt", index=False)
        frame.to_excel(book, sheet_name="Störungen", index=False)
    covered = read_log(tmp_path / "cover.xlsx")  # refused before, asking to move the table to the first sheet
    pd.testing.assert_frame_equal(covered, log)
    assert covered.attrs["notes"] == ["cover.xlsx: read from its sheet 'Störungen', the first ('Deckblatt') holding "
                                      "no such table"]
    with pd.ExcelWriter(tmp_path / "cover.xlsx") as book:  # no sheet with the log: named
        pd.DataFrame({"Bericht": ["Linie 1"]}).to_excel(book, sheet_name="Deckblatt", index=False)
        frame.rename(columns={"machine": "Maschine"}).to_excel(book, sheet_name="Störungen", index=False)
    with pytest.raises(LogError, match=r"The workbook's first sheet \('Deckblatt'\) was read, its 1 other "
                                       r"\('Störungen'\) naming no such column either: move the table to the first "
                                       r"sheet\.$"):
        read_log(tmp_path / "cover.xlsx")
    assert len(read_log(tmp_path / "cover.xlsx", fmt=LogFormat(columns={"Maschine": "machine"}))) == len(log)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=600), st.builds(lambda b, head: head + b, st.binary(max_size=300),
                                                    st.sampled_from([b"PK\x03\x04", b"\xff\xfe", b"\xef\xbb\xbf",
                                                                     b"\xd0\xcf\x11\xe0"]))),
       st.sampled_from(["log.csv", "log.xlsx", "log.txt", "log.xls"]))
def test_any_bytes_as_a_log_or_a_table_are_read_or_refused_clearly(tmp_path: Path, content: bytes, name: str) -> None:
    """Whatever bytes a plant's file holds under whatever name (a workbook, UTF-16 text, garbage): a LogError or
    DataError naming the file, never another exception."""
    from predictors.data import DataError, TableFormat, from_table

    f = tmp_path / name
    f.write_bytes(content)
    for read, error in ((read_log, LogError), (lambda p: from_table(p, TableFormat()), DataError)):
        try:
            read(f)
        except error as e:
            assert name in str(e)


def test_a_date_and_a_time_column_are_joined_into_the_timestamp(tmp_path: Path) -> None:
    """German MES reports give the date and the time of day in two columns ('Datum', 'Uhrzeit'): no single column
    could be mapped to the timestamp. --columns 'Datum+Uhrzeit=timestamp' joins them, in a CSV (with its
    --time-format) as in a workbook (its date and time cells, no format needed)."""
    import datetime as dt

    f = tmp_path / "bde.csv"
    f.write_text("Datum;Uhrzeit;Maschine;Status\n05.01.2026;06:00:00;press-1;working\n05.01.2026;23:59:30;press-1;"
                 "down\n06.01.2026;00:10:00;press-1;working\n")
    names = {"Datum+Uhrzeit": "timestamp", "Maschine": "machine", "Status": "state"}
    log = read_log(f, fmt=LogFormat(None, names, "%d.%m.%Y %H:%M:%S"))
    assert [str(t) for t in log.timestamp] == ["2026-01-05 06:00:00", "2026-01-05 23:59:30", "2026-01-06 00:10:00"]
    pd.DataFrame({"Datum": [dt.datetime(2026, 1, 5), dt.datetime(2026, 1, 5), dt.datetime(2026, 1, 6)],
                  "Uhrzeit": [dt.time(6), dt.time(23, 59, 30), dt.time(0, 10)], "Maschine": "press-1",
                  "Status": ["working", "down", "working"]}).to_excel(tmp_path / "bde.xlsx", index=False)
    pd.testing.assert_frame_equal(read_log(tmp_path / "bde.xlsx", fmt=LogFormat(None, names)), log)
    with pytest.raises(LogError, match=r"--columns 'Datum\+Zeit=timestamp': no column 'Zeit' \(found: Datum, "):
        read_log(f, fmt=LogFormat(None, {"Datum+Zeit": "timestamp", "Maschine": "machine", "Status": "state"}))
    with pytest.raises(LogError, match=r"columns are joined only into the timestamp"):
        read_log(f, fmt=LogFormat(None, {"Maschine+Status": "machine"}))


@pytest.mark.slow  # 4 s: the full suite's, `make check` keeps the fit's quicker tests
def test_the_plants_machine_names_are_mapped_with_machines(tmp_path: Path) -> None:
    """An MES names its machines its own way ('Drehen 1' for turn-1): they were left out with a warning, the fit then
    made of the rest; the warning names the scenario's machines the log has no rows of and how to map them, and
    --machines maps them: the same fit as a log written with the scenario's names."""
    plant = tmp_path / "mes.csv"
    plant.write_text(_STATUS.read_text().replace("turn-1", "Drehen 1").replace("turn-2", "Drehen 2"))
    base = ("--base", ROOT / "tests" / "scenarios" / "heat_treat.yaml", "--replications", 2)
    r = subprocess.run(twin_cmd("fit", plant, *base, "--out", tmp_path / "left-out.yaml"), capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
    said = " ".join(r.stderr.split())
    assert r.stderr.startswith(f"reading {plant}…\n"), r.stderr  # said as it starts: a workbook reads for seconds
    assert r.returncode == 0 and "machines not in heat_treat.yaml, left out: Drehen 1, Drehen 2; the log has no rows " \
        "of heat_treat.yaml's turn-1, turn-2 (or map the log's names to the scenario's with --machines 'Drehen " \
        "1=turn-1, …')" in said, r.stderr
    run_all(twin_cmd("fit", plant, *base, "--out", tmp_path / "mapped.yaml", "--machines",
                     "Drehen 1=turn-1, Drehen 2=turn-2"),
            twin_cmd("fit", _STATUS, *base, "--out", tmp_path / "as-named.yaml"))
    mapped, named = (pd.read_csv(tmp_path / f"{n}-report" / "validation.csv") for n in ("mapped", "as-named"))
    pd.testing.assert_frame_equal(mapped, named)
    # how the logs were read, in the report beside the fit: the options given, what was left out
    assert "- `--machines 'Drehen 1=turn-1, Drehen 2=turn-2'`" in (tmp_path / "mapped-report" / "report.md").read_text()
    assert "- warning: mes.csv: machines not in heat_treat.yaml, left out: Drehen 1, Drehen 2" in (
        tmp_path / "left-out-report" / "report.md").read_text()
    assert set(named.machine) >= {"turn-1", "turn-2"}
    assert_mistakes(["fit", str(plant), *map(str, base), "--out", str(tmp_path / "x.yaml")],
                    [(["--machines", "Drehen 1=turn-9"], "--machines: 'Drehen 1=turn-9': 'turn-9' is not a machine of "
                                                         "the base scenario; use ")])


def test_a_log_sampled_each_minute_fits_as_its_changes_do(tmp_path: Path) -> None:
    """A PLC polled each minute, or a historian's export, writes the state at every sample, not once per change:
    each minute of a stop was a repair of its own (a fit of 1,883 one-minute repairs where there were 94 of twenty
    minutes). Rows repeating their machine's state and reason are one state: the same log and fit as the changes'."""
    from twin.fit import fit_scenario

    changes = read_log(_STATUS)
    rows = []
    for _, g in changes.groupby("machine"):
        ends = [*g.timestamp.iloc[1:], g.timestamp.iloc[-1] + pd.Timedelta(minutes=1)]
        for (t, machine, state, reason), end in zip(g.itertuples(index=False), ends):
            rows += [(x, machine, state, reason) for x in pd.date_range(t, end, freq="1min", inclusive="left")
                     .union([t])]
    pd.DataFrame(rows, columns=list(changes.columns)).sample(frac=1, random_state=1).to_csv(tmp_path / "polled.csv",
                                                                                            index=False)
    polled = read_log(tmp_path / "polled.csv")
    assert polled.attrs["repeated"] == len(rows) - len(changes) > 10 * len(changes)
    pd.testing.assert_frame_equal(polled, changes)
    sc = load_scenario(HEAT)
    pd.testing.assert_frame_equal(fit_scenario(polled, sc)[1], fit_scenario(changes, sc)[1])
    # a stop's reason given in a row of its own, minutes after the stop (as an operator enters it): one stop
    f = tmp_path / "reasons-later.csv"
    f.write_text("timestamp,machine,state,reason\n2026-01-05T06:00,press-1,working,\n2026-01-05T07:00,press-1,down,\n"
                 "2026-01-05T07:03,press-1,down,trip\n2026-01-05T07:20,press-1,working,\n2026-01-05T08:00,press-1,down,"
                 "\n2026-01-05T08:10,press-1,working,\n")
    later = read_log(f)
    assert later.state.tolist() == ["working", "down", "working", "down", "working"] and later.attrs["repeated"] == 1
    assert later.reason.tolist()[1:4] == ["trip", "", ""] and str(later.timestamp[1]) == "2026-01-05 07:00:00"
    # ... or on the row that ends it, as the machine restarts: the stop's reason too
    f.write_text("timestamp,machine,state,reason\n2026-01-05T06:00,press-1,working,\n2026-01-05T07:00,press-1,down,\n"
                 "2026-01-05T07:20,press-1,working,trip\n2026-01-05T08:00,press-1,down,die_wear\n"
                 "2026-01-05T08:10,press-1,starved,jam\n2026-01-05T09:00,press-1,down,\n"
                 "2026-01-05T09:10,press-1,setup,product B\n")
    ending = read_log(f)
    assert ending.reason.tolist() == ["", "trip", "", "die_wear", "jam", "", "product B"]
    assert ending.attrs == {"repeated": 0, "ending": 1}


def _stop_list(log: pd.DataFrame) -> pd.DataFrame:
    """A status log's stops as an MES downtime report lists them: every state but working, starved and blocked, from
    its row to the machine's next change (start, end, machine, state, reason)."""
    rows = []
    for _, g in log.groupby("machine"):
        for (t, machine, state, reason), end in zip(g.itertuples(index=False), g.timestamp.shift(-1)):
            if state not in ("working", "starved", "blocked") and not pd.isna(end):
                rows.append((t, end, machine, state, reason))
    return pd.DataFrame(rows, columns=["start", "end", "machine", "state", "reason"])


def _truth_log(tmp_path: Path, change: dict[str, Any], duration: str) -> tuple[Any, pd.DataFrame]:
    """fit_truth.yaml with `change` merged into it (as tmp_path/truth.yaml), and the status log of a run of it for
    `duration`, as a plant keeps it."""
    def merged(doc: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
        return {**doc, **{k: merged(doc[k], v) if isinstance(v, dict) and isinstance(doc.get(k), dict) else v
                          for k, v in more.items()}}

    base = tmp_path / "truth.yaml"
    base.write_text(yaml.safe_dump(merged(yaml.safe_load(TRUTH.read_text()), change)))
    sc = load_scenario(base)
    run_all(twin_cmd("run", base, "--no-stream", "--replications", 1, "--duration", duration, "--out", tmp_path / "p"))
    return sc, log_from_run(pd.read_parquet(tmp_path / "p" / "truth" / "states.parquet"),
                            pd.read_parquet(tmp_path / "p" / "truth" / "events.parquet"), pd.Timestamp(sc.start))


@pytest.mark.slow  # runs of the twin and fits (8 s): the full suite's
def test_a_stop_list_fits_as_the_status_log_it_implies(tmp_path: Path) -> None:
    """MES downtime reports list stops (start, end or duration, machine, reason), not every change of state: `twin
    fit` refused them (column timestamp missing). Read as the status log they imply, each machine working between its
    stops. Where lives run on a calendar clock (a wait for parts counts to a life as work does) the list gives the fit
    the status log gives; the validation leaves out the working share, which a list cannot tell."""
    sc, log = _truth_log(tmp_path, {"machine_types": {"press": {"clock": "calendar"}}}, "10 d")
    base = tmp_path / "truth.yaml"
    stops = _stop_list(log)
    assert set(stops.state) == {"down", "maintenance"} and len(stops) > 100
    stops.to_csv(tmp_path / "stops.csv", index=False)
    # the status log over the list's span: from its first start to its last end
    first, last = stops.start.min(), stops.end.max()
    log = log[log.timestamp <= last]
    log.to_csv(tmp_path / "status.csv", index=False)
    listed, status = read_log(tmp_path / "stops.csv"), read_log(tmp_path / "status.csv")
    assert listed.attrs == {"stops": len(stops), "merged": 0, "repeated": 0, "ending": 0}
    assert (listed.timestamp.min(), listed.timestamp.max()) == (first, last)
    from twin.fit import fit_scenario

    a, b = fit_scenario(status, sc)[1], fit_scenario(listed, sc)[1]
    same = ["machine type", "fault mode", "time", "events", "censored", "family"]
    pd.testing.assert_frame_equal(a[same], b[same])
    assert (a.events >= 5).all()
    # the censored lives before the list's first stop are shorter in the list: the means to 2 %
    np.testing.assert_allclose(b["mean [h]"], a["mean [h]"], rtol=0.02)
    # the same stops as a German report: durations in minutes with decimal commas, the plant's column names
    german = pd.DataFrame({"Beginn": stops.start.dt.strftime("%d.%m.%Y %H:%M:%S"),
                           "Dauer [min]": ((stops.end - stops.start).dt.total_seconds() / 60).map(
                               lambda x: f"{x:.4f}".replace(".", ",")),
                           "Maschine": stops.machine, "Art": stops.state.map({"down": "Störung",
                                                                              "maintenance": "Wartung"}),
                           "Grund": stops.reason})
    # under a report's title, as Excel saves it (every line as wide as the table)
    (tmp_path / "stillstand.csv").write_bytes(("Stillstandsbericht Pressen;;;;\nZeitraum: Januar 2026;;;;\n;;;;\n" +
                                               german.to_csv(index=False, sep=";")).encode("cp1252"))
    r, plain = run_all(twin_cmd("fit", tmp_path / "stillstand.csv", "--base", base, "--out", tmp_path / "f.yaml",
                                "--replications", 2, "--columns", "Beginn=start, Dauer [min]=duration, "
                                "Maschine=machine, Art=state, Grund=reason", "--states",
                                "Störung=down, Wartung=maintenance", "--time-format", "%d.%m.%Y %H:%M:%S"),
                       twin_cmd("fit", tmp_path / "stops.csv", "--base", TRUTH, "--out", tmp_path / "g.yaml",
                                "--replications", 2))
    # the list's first time to the nanosecond warned 'Discarding nonzero nanoseconds' as the validation began
    assert "Warning" not in r.stderr + plain.stderr, plain.stderr
    # the machines' lives on an operating clock: said to include the waits a list does not show
    assert "machine type press counts lives in working time only (clock: operating)" in " ".join(plain.stderr.split())
    told = " ".join(r.stderr.split())
    assert f"note: stillstand.csv is a stop list ({len(stops):,} stops): each machine is read as working" in told, told
    assert ("note: stillstand.csv: its first 3 lines ('Stillstandsbericht Pressen', …) lie above the table's header "
            "row, a report's title: left out") in told, told
    assert "leaves out the working share" in told and "clock: operating" not in told, told
    fitted = pd.read_csv(tmp_path / "f-report" / "fitted.csv")
    pd.testing.assert_frame_equal(fitted[same], b[same])  # minutes to 4 decimals: a stop's end to 6 ms
    np.testing.assert_allclose(fitted["mean [h]"], b["mean [h]"], rtol=1e-4)
    check = pd.read_csv(tmp_path / "f-report" / "validation.csv")
    assert "working share" not in set(check.kpi) and {"down share", "availability", "failures"} <= set(check.kpi)
    report = (tmp_path / "f-report" / "report.md").read_text()
    assert f"{len(stops):,} stops" in report
    # each fitted law drawn against its data (a reliability engineer's first look at a fit)
    assert "![each fitted law against its data](fitted.png)" in report
    assert (tmp_path / "f-report" / "fitted.png").stat().st_size > 10_000
    from twin.app.cmd_plant import MAX_PANELS, fit_plot
    from twin.fit import fit_scenario

    many = fit_scenario(listed, sc)[1]
    assert len(many.attrs["laws"]) == (b.family != "kept (too few events)").sum() == 4
    many.attrs["laws"] = {(f"type-{i}", m, t): law for i in range(8) for (_, m, t), law in many.attrs["laws"].items()}
    assert fit_plot(many, tmp_path / "many.png") == MAX_PANELS < len(many.attrs["laws"])
    # overlapping and touching stops: one stop each; mistakes named with the row
    f = tmp_path / "list.csv"
    f.write_text("start,end,machine,reason\n2026-01-05T06:00,2026-01-05T06:20,press-1,trip\n"
                 "2026-01-05T06:10,2026-01-05T06:30,press-1,trip\n2026-01-05T06:30,2026-01-05T06:40,press-1,trip\n"
                 "2026-01-05T08:00,2026-01-05T08:05,press-2,die_wear\n")
    merged = read_log(f)
    assert merged.attrs == {"stops": 4, "merged": 2, "repeated": 0, "ending": 0}
    assert merged[merged.machine == "press-1"].values.tolist() == [
        [pd.Timestamp("2026-01-05 06:00"), "press-1", "down", "trip"],
        [pd.Timestamp("2026-01-05 06:40"), "press-1", "working", ""]]
    assert merged[merged.machine == "press-2"].state.tolist() == ["working", "down", "working"]
    for text, message in [
            ("start,end,machine\n2026-01-05T06:00,2026-01-05T05:50,press-1\n",
             "row 2, column end: 2026-01-05 05:50:00 is before the stop's start 2026-01-05 06:00:00"),
            ("start,duration,machine\n2026-01-05T06:00,ten,press-1\n",
             "row 2, column duration: 'ten' is not a stop's length; write minutes (12.5) or h:mm:ss (0:12:30)"),
            ("start,duration,machine\n2026-01-05T06:00,-3,press-1\n", "column duration: '-3' is not a stop's"),
            ("start,end,machine,state\n2026-01-05T06:00,2026-01-05T06:10,press-1,working\n",
             "row 2, column state: 'working' is not a state a machine stops in"),
            ("start,machine,reason\n2026-01-05T06:00,press-1,trip\n",
             "column end missing (found: start, machine, reason). A status log has timestamp, machine, state"),
            ("start,end,machine\n2026-01-05T06:00,soon,press-1\n", "row 2 (line 2 of a CSV), column end: 'soon' is "
             "not a time in ISO 8601")]:
        f.write_text(text)
        with pytest.raises(LogError, match=re.escape(message)):
            read_log(f)
    f.write_text("start,duration,machine,state\n2026-01-05T06:00,0:12:30,press-1,\n2026-01-05T07:00,5,press-1,"
                 "maintenance\n")  # an empty state: a stop (down)
    stopped = read_log(f)
    f.write_text("timestamp,duration,machine\n2026-01-05T06:00,0:12:30,press-1\n2026-01-05T07:00,5,press-1\n")
    pd.testing.assert_frame_equal(read_log(f).drop(columns="state"), stopped.drop(columns="state"))
    assert stopped.timestamp.astype(str).tolist() == ["2026-01-05 06:00:00", "2026-01-05 06:12:30",
                                                      "2026-01-05 07:00:00", "2026-01-05 07:05:00"]
    assert stopped.state.tolist() == ["down", "working", "maintenance", "working"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.one_of(_DAY, _CHANGES, st.text(max_size=12)),
                          st.one_of(_DAY, _CHANGES, st.text(max_size=8), st.floats(allow_nan=True,
                                                                                   allow_infinity=True)),
                          st.sampled_from(["press-1", "x", ""]),
                          st.sampled_from(["down", "maintenance", "off_shift", "working", "idle", ""]),
                          st.sampled_from(["die_wear", "trip", "", "other"])), max_size=30),
       st.booleans(), ZONES)
def test_any_stop_list_is_fitted_or_refused_clearly(tmp_path: Path, rows: list[tuple[object, ...]], ends: bool,
                                                    zone: str) -> None:
    """A stop list is untrusted input too: whatever its starts, ends or durations, states and reasons, a LogError
    naming the file or a fit (and the line's state at its end); local times across daylight-saving changes too."""
    from twin.fit import fit_scenario, state_at

    f = tmp_path / "stops.csv"
    pd.DataFrame(rows, columns=["start", "end" if ends else "duration", "machine", "state", "reason"]).to_csv(
        f, index=False)
    try:
        log = read_log(f, zone)
    except LogError as e:
        assert "stops.csv" in str(e)
        return
    assert log.attrs["stops"] == len(rows)
    sc = load_scenario(TRUTH)
    fit_scenario(log, sc)
    state_at(log, sc, log.timestamp.max(), "fuzz")


@pytest.mark.slow  # 4 s: the full suite's, `make check` keeps the fit's quicker tests
def test_a_log_exported_a_month_at_a_time_reads_as_one(tmp_path: Path) -> None:
    """An MES exports a month at a time (Excel holds at most 1,048,576 rows): `twin fit` took one file, the months
    had to be joined by hand. Several status logs or stop lists read as one, what overlapping exports hold twice
    once; each file's mistakes named with it."""
    from twin.fit import read_logs

    sc = load_scenario(TRUTH).model_copy(update={"duration": 10 * 86400.0})
    _, log, _ = _plant_logs(sc)
    log.to_csv(tmp_path / "whole.csv", index=False)
    stops = _stop_list(log)
    stops.to_csv(tmp_path / "stops.csv", index=False)
    cut = [pd.Timestamp("2026-01-08"), pd.Timestamp("2026-01-11")]
    # the exports overlap by a day: each month's file holds the rows of its days and of the day before
    day = pd.Timedelta(days=1)
    parts = [log[log.timestamp < cut[0]], log[(log.timestamp >= cut[0] - day) & (log.timestamp < cut[1])],
             log[log.timestamp >= cut[1] - day]]
    for i, part in enumerate(parts):
        part.to_csv(tmp_path / f"status-{i}.csv", index=False)
        stops[(stops.start >= (cut[i - 1] - day if i else stops.start.min()))
              & (stops.start < (cut[i] if i < 2 else stops.start.max() + pd.Timedelta(1, "s")))].to_csv(
            tmp_path / f"stops-{i}.csv", index=False)
    whole, listed = read_log(tmp_path / "whole.csv"), read_log(tmp_path / "stops.csv")
    months = read_logs([tmp_path / f"status-{i}.csv" for i in range(3)])
    pd.testing.assert_frame_equal(months, whole)
    assert months.attrs["twice"] > 50
    listed_months = read_logs([tmp_path / f"stops-{i}.csv" for i in range(3)])
    pd.testing.assert_frame_equal(listed_months, listed)
    assert listed_months.attrs["twice"] > 10 and listed_months.attrs["stops"] == len(stops)
    with pytest.raises(LogError, match=re.escape(f"{tmp_path / 'stops-1.csv'}: a stop list (start, end), the other "
                                                 "logs status logs (timestamp, state); give logs of one kind.")):
        read_logs([tmp_path / "status-0.csv", tmp_path / "stops-1.csv"])
    (tmp_path / "bad.csv").write_text("timestamp,machine,state\n2026-01-05T06:00,press-1,RUN\n")
    with pytest.raises(LogError, match=re.escape(f"{tmp_path / 'bad.csv'}: row 2, column state: 'RUN'")):
        read_logs([tmp_path / "status-0.csv", tmp_path / "bad.csv"])
    (r,) = run_all(twin_cmd("fit", *(tmp_path / f"status-{i}.csv" for i in range(3)), "--base", TRUTH, "--out",
                            tmp_path / "f.yaml", "--replications", 2))
    told = " ".join(r.stderr.split())
    assert f"note: {months.attrs['twice']:,} rows of status-0.csv, status-1.csv, status-2.csv are in two of its files" \
        in told, told
    assert "status-0.csv, status-1.csv, status-2.csv" in (tmp_path / "f-report" / "report.md").read_text()
    assert_mistakes(["fit", str(tmp_path / "status-0.csv"), "duckdb:///plant.duckdb", "--base", str(TRUTH), "--out",
                     str(tmp_path / "x.yaml")], [([], "duckdb:///plant.duckdb: a store holds the whole history; give "
                                                      "it alone, or give log files only")])


def test_a_log_whose_reason_column_is_empty_reads_with_no_reasons(tmp_path: Path) -> None:
    """An export with a reason column but no reason in it reads the column as numbers (NaN); filling those with text
    is deprecated in pandas (a warning now, an error to come): a traceback for a plain log."""
    import warnings

    f = tmp_path / "log.csv"
    f.write_text("timestamp,machine,state,reason\n2026-01-05T06:00,press-1,working,\n2026-01-05T07:00,press-1,down,\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log = read_log(f)
    assert log.reason.tolist() == ["", ""] and log.state.tolist() == ["working", "down"]


def test_fit_never_writes_over_a_file_it_reads(tmp_path: Path) -> None:
    """`--out` the same file as `--base` (the line as engineered, with its comments) or the plant's log replaced it
    with the fitted scenario."""
    base, log = tmp_path / "line.yaml", tmp_path / "log.csv"
    base.write_text(TRUTH.read_text())
    log.write_text("timestamp,machine,state\n2026-01-05T06:00,press-1,working\n")
    assert_mistakes(["fit", str(log), "--base", str(base)], [
        (["--out", str(base)], f"--out {base} is the --base file it reads"),
        (["--out", str(log)], f"--out {log} is the status log it reads"),
        (["--out", str(tmp_path)], f"--out {tmp_path}: a folder, not a file"),  # was a traceback after the fit
        (["--out", ""], "--out .: a folder, not a file"),
    ])
    assert base.read_text() == TRUTH.read_text() and log.read_text().startswith("timestamp,machine,state")


def test_the_plants_own_state_names_are_mapped_with_states(tmp_path: Path) -> None:
    """An MES export names its states its own way; they had to be rewritten outside the twin before `twin fit`."""
    from twin.fit import parse_states

    f = tmp_path / "mes.csv"
    f.write_text("timestamp,machine,state,reason\n2026-01-05T06:00,press-1,Production,\n"
                 "2026-01-05T07:00,press-1,Breakdown,trip\n2026-01-05T07:10,press-1,working,\n")
    names = parse_states(" Production = working, Breakdown=down ")
    assert names == {"Production": "working", "Breakdown": "down"}
    assert list(read_log(f, states=names).state) == ["working", "down", "working"]  # the twin's own names stay
    with pytest.raises(LogError, match=r"'Production' is not a machine state; .* with --states 'Production=STATE"):
        read_log(f)
    for text, why in [("Production", "is not PLANT_NAME=STATE"), ("A=running", "'running' is not a machine state"),
                      ("A=down,A=setup", "'A' is mapped twice"), (" , ", "give PLANT_NAME=STATE pairs")]:
        with pytest.raises(ValueError, match=why):
            parse_states(text)
    assert_mistakes(["fit", str(f), "--base", str(TRUTH), "--out", str(tmp_path / "x.yaml")], [
        (["--states", "Production=running"], "--states: 'Production=running': 'running' is not a machine state")])


@pytest.mark.slow  # seconds of CLI runs: the full suite
def test_a_store_to_fit_from_names_its_runs(tmp_path: Path) -> None:
    from sensors.store import open_store

    db = tmp_path / "plant.duckdb"
    store = open_store(f"duckdb:///{db}")
    for run in ("plant", "plant-2"):
        store.write_states(pd.DataFrame({"run": run, "replication": 0, "machine": "press-1",
                                         "ts": pd.to_datetime(["2026-01-05 06:00", "2026-01-05 07:00"]),
                                         "state": ["working", "down"], "reason": ["", "trip"]}))
    store.close()
    url = f"duckdb:///{db}"
    assert_mistakes(["fit", url, "--base", str(TRUTH), "--out", str(tmp_path / "x.yaml")], [
        ([], "holds the state records of 2 runs (plant, plant-2); name one with --run"),
        (["--run", "other"], "no state records of run 'other' (its runs: plant, plant-2)"),
    ])
    assert_mistakes(["fit", str(tmp_path / "log.csv"), "--base", str(TRUTH), "--out", str(tmp_path / "x.yaml")], [
        (["--run", "plant"], "--run plant: a status log file holds one line's history; --run picks a run in a store"),
    ])
    # the plant's WIP counters, as `twin connect` stores them, size the buffers: no export to a --levels file first
    store = open_store(f"duckdb:///{db}")
    store.write_levels(pd.DataFrame({"run": "plant", "replication": 0, "station": "press-2",
                                     "ts": pd.to_datetime(["2026-01-05 06:10", "2026-01-05 06:20"]), "level": [4, 7]}))
    store.close()
    assert_mistakes(["fit", url, "--base", str(TRUTH), "--out", str(tmp_path / "x.yaml"), "--run", "plant-2"], [
        (["--levels", url], f"--levels {url}: no buffer levels of run 'plant-2'; `twin connect --store` writes")])
    subprocess.run(twin_cmd("fit", url, "--run", "plant", "--levels", url, "--base", TRUTH, "--out",
                            tmp_path / "x.yaml", "--replications", 2), cwd=ROOT, check=True, capture_output=True)
    assert load_scenario(tmp_path / "x.yaml").stations[1].buffer == 7


@pytest.mark.slow  # the command line's way of saying it (the reader's messages are checked above, in the fast loop)
def test_twin_fit_refuses_a_bad_log_in_one_paragraph(tmp_path: Path) -> None:
    f = tmp_path / "log.csv"
    f.write_text("timestamp,machine,state\n2026-01-05T06:00,press-1,RUN\n")
    r = subprocess.run(twin_cmd("fit", f, "--base", TRUTH, "--out", tmp_path / "x.yaml"), cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "log.csv" in r.stderr and "'RUN' is not a machine state" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x.yaml").exists()
    # a part or buffer log whose names are none of the scenario's changed nothing, without a word; a negative
    # level was shown as np.int64(-3)
    f.write_text("timestamp,machine,state,reason\n2026-01-05T06:00,press-1,working,\n2026-01-05T08:00,press-1,down,"
                 "trip\n2026-01-05T08:10,press-1,working,\n")
    (tmp_path / "parts.csv").write_text("timestamp,machine\n2026-01-05T06:00,Press 1\n2026-01-05T06:01,Press 1\n")
    (tmp_path / "levels.csv").write_text("timestamp,station,level\n2026-01-05T06:00,press-1,3\n")
    (tmp_path / "negative.csv").write_text("timestamp,station,level\n2026-01-05T06:00,press-2,-3\n")
    cases = [("--parts", "parts.csv", "none of its machines (Press 1) is in fit_truth.yaml (press-1, press-2)"),
             ("--levels", "levels.csv", "none of its stations with a buffer (press-1) is in fit_truth.yaml (press-2)"),
             ("--levels", "negative.csv", "column level: '-3' is not a part count")]
    for option, name, message in cases:
        r = subprocess.run(twin_cmd("fit", f, "--base", TRUTH, "--out", tmp_path / "x.yaml", option, tmp_path / name),
                           cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "250"})
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "x.yaml").exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.one_of(st.datetimes(), _CHANGES, st.text(max_size=12), _NAMED),
                          st.sampled_from(["press-1", "x", ""]),
                          st.sampled_from(["working", "down", "maintenance", "idle", ""]),
                          st.sampled_from(["die_wear", "trip", "", "other"])), max_size=30), ZONES)
def test_any_status_log_is_fitted_or_refused_clearly(tmp_path: Path, rows: list[tuple[object, ...]], zone: str
                                                     ) -> None:
    """Plant data is untrusted input: whatever the rows, a LogError or a fit (and the line's state at its end and
    midway, for a what-if), never another exception; local times across daylight-saving changes too."""
    from twin.fit import fit_scenario, state_at

    f = tmp_path / "fuzz.csv"
    pd.DataFrame(rows, columns=["timestamp", "machine", "state", "reason"]).to_csv(f, index=False)
    try:
        log = read_log(f, zone)
    except LogError as e:
        assert "fuzz.csv" in str(e)
        return
    sc = load_scenario(TRUTH)
    fit_scenario(log, sc)
    for at in (log.timestamp.max(), log.timestamp.min() + (log.timestamp.max() - log.timestamp.min()) / 2):
        now = state_at(log, sc, at, "fuzz")
        assert all(m.since >= 0 and min(m.ages.values()) >= 0 for m in now.machines.values())


def status_log(run: Any) -> pd.DataFrame:
    """A simulated replication's status log as a plant keeps it: each machine's state changes (timestamp, machine,
    state, reason), one per machine and time."""
    start = pd.Timestamp(run.line.scenario.start)
    status = []
    for m in run.line.machines:
        t, states, reasons = m.log.states_from(0)
        status.append(pd.DataFrame({"timestamp": start + pd.to_timedelta(t, unit="s"), "machine": m.name,
                                    "state": states.astype(str), "reason": reasons.astype(str)}))
    return pd.concat(status).sort_values(["machine", "timestamp"]).drop_duplicates(["machine", "timestamp"],
                                                                                    keep="last")


def _plant_logs(sc: Any) -> tuple[Any, pd.DataFrame, list[pd.DataFrame]]:
    """A replication of `sc`, its status log and each machine's part log (one row per part it finished), as a plant
    keeps them."""
    from twin.app.runner import simulate

    run = simulate(sc, 0, sensors=False)
    start = pd.Timestamp(sc.start)
    parts = []
    for m in run.line.machines:
        done = np.frombuffer(m.log.finished) if not m.wiring.is_last else np.frombuffer(run.line.exit)
        done = done[np.isfinite(done)]
        parts.append(pd.DataFrame({"timestamp": start + pd.to_timedelta(np.sort(done), unit="s"), "machine": m.name}))
    return run, status_log(run), parts


def test_a_stop_lists_waits_are_read_from_the_parts_made(tmp_path: Path) -> None:
    """A stop list shows no waits: a machine is working between its stops. On an operating clock every wait for a
    part or for space counted to its lives (fit_truth's presses: die wear's mean life 13 % too long, the trip's 10 %).
    The parts each machine made show the long waits: gaps of over three cycles with no part."""
    from twin.fit import fit_scenario, waits_from_parts

    sc = load_scenario(TRUTH).model_copy(update={"duration": 20 * 86400.0})
    _, log, parts = _plant_logs(sc)
    _stop_list(log).to_csv(tmp_path / "stops.csv", index=False)
    log.to_csv(tmp_path / "status.csv", index=False)
    listed = read_log(tmp_path / "stops.csv")
    status = read_log(tmp_path / "status.csv")
    status = status[status.timestamp <= listed.timestamp.max()]  # over the list's span
    waited, waits = waits_from_parts(listed, pd.concat(parts))
    assert waits > 100 and waited.attrs == listed.attrs
    fits = [fit_scenario(x, sc, parts=pd.concat(parts))[1].set_index(["fault mode", "time"])["mean [h]"]
            for x in (status, listed, waited)]
    for key in [("die_wear", "ttf"), ("trip", "ttf")]:
        truth, plain, read = (f[key] for f in fits)
        assert plain > 1.08 * truth and abs(read - truth) < 0.5 * (plain - truth) and read < 1.05 * truth, key

    def working(x: pd.DataFrame, machine: str) -> float:
        g = x[x.machine == machine]
        lasted = np.diff(np.append(g.timestamp.to_numpy(), x.timestamp.max().to_datetime64())) / np.timedelta64(1, "s")
        return float(lasted[(g.state == "working").to_numpy()].sum() / lasted.sum())

    # press-1's waits (blocked by press-2's stops) are long, all seen; press-2 paced by the slower press-1 waits a few
    # seconds each cycle, which no gap between parts shows
    assert working(waited, "press-1") == pytest.approx(working(status, "press-1"), abs=0.005)
    assert working(listed, "press-2") - working(status, "press-2") > 0.08
    assert working(waited, "press-2") - working(status, "press-2") < 0.05
    # `twin whatif --from stops.csv --parts parts.csv`: the ages the waits took from, nearer the status log's
    from twin.app.cmd_plant import _from_log
    from twin.fit import state_at

    pd.concat(parts).to_csv(tmp_path / "parts.csv", index=False)
    at = dt.datetime(2026, 1, 20, 12)
    truth = state_at(status, sc, pd.Timestamp(at), "status").machines
    plain, read = (_from_log(sc, [tmp_path / "stops.csv"], at, None, parts=made).machines
                   for made in (None, tmp_path / "parts.csv"))
    gaps = [(abs(plain[m].ages[f] - truth[m].ages[f]), abs(read[m].ages[f] - truth[m].ages[f]))
            for m in truth for f in truth[m].ages]
    assert sum(g for g, _ in gaps) > 2 * sum(g for _, g in gaps) > 0, gaps


def test_a_stop_list_is_off_shift_outside_the_base_scenarios_shifts(tmp_path: Path) -> None:
    """A stop list shows stops, not the planned time: each night and weekend was read as working, and aged every
    life (two shifts on weekdays: die wear's mean life 3.3 times what it is). Where the list has no planned stops of
    its own, a machine working by it is off shift outside the base scenario's shifts: the status log's fit."""
    from twin.fit import fit_scenario, off_shift_from

    doc = yaml.safe_load(TRUTH.read_text())
    doc["machine_types"]["press"]["clock"] = "calendar"
    doc["calendar"] = {"shifts": ["06:00-14:00", "14:00-22:00"], "days": ["mon", "tue", "wed", "thu", "fri"]}
    (tmp_path / "shifts.yaml").write_text(yaml.safe_dump(doc))
    sc = load_scenario(tmp_path / "shifts.yaml").model_copy(update={"duration": 20 * 86400.0})
    _, log, _ = _plant_logs(sc)
    stops = _stop_list(log)
    stops[stops.state != "off_shift"].to_csv(tmp_path / "stops.csv", index=False)
    log.to_csv(tmp_path / "status.csv", index=False)
    listed, status = read_log(tmp_path / "stops.csv"), read_log(tmp_path / "status.csv")
    status = status[status.timestamp <= listed.timestamp.max()]
    assert sc.calendar is not None and (status.state == "off_shift").sum() > 20
    shifted = off_shift_from(listed, sc.calendar)
    assert shifted.attrs == listed.attrs and (shifted.state == "off_shift").sum() >= 20
    truth, plain, read = (fit_scenario(x, sc, calendar=x is status)[1].set_index(["fault mode", "time"])
                          for x in (status, listed, shifted))
    for key in [("die_wear", "ttf"), ("trip", "ttf")]:
        assert plain.loc[key, "mean [h]"] > 1.8 * truth.loc[key, "mean [h]"], key
        assert read.loc[key, "mean [h]"] == pytest.approx(truth.loc[key, "mean [h]"], rel=0.005), key
        assert (read.loc[key, "events"], read.loc[key, "censored"]) == (truth.loc[key, "events"],
                                                                         truth.loc[key, "censored"])
    assert "calendar" in set(truth.index.get_level_values("time")) - set(read.index.get_level_values("time"))
    # the line's state at a moment for `twin whatif --from stops.csv`: the same ages as from the status log
    from twin.app.cmd_plant import _from_log
    from twin.fit import state_at

    at = dt.datetime(2026, 1, 19, 6, 5)  # a Monday morning: the weekend since the last repairs
    now, then = _from_log(sc, [tmp_path / "stops.csv"], at, None), state_at(status, sc, pd.Timestamp(at), "status")
    assert now.source == "stops.csv, a stop list" and set(now.machines) == set(then.machines) == {"press-1", "press-2"}
    for m, there in then.machines.items():  # a machine finishes its cycle after a shift's end: up to 60 s later
        assert now.machines[m].ages == pytest.approx(there.ages, abs=60) and min(there.ages.values()) > 0


def test_the_logs_failures_are_the_stops_the_fit_takes_as_failures() -> None:
    """The validation counted a log's failures as its stops with a reason: a log (or a stop list) without reasons,
    whose every stop the fit takes as the one fault mode of its machine, showed 0 failures against the twin's. Now
    the stops the fit takes: a reason that is one of the machine's fault modes, any stop of a machine with one; and
    the line's state a what-if reads from the log counts its repairs the same way."""
    from twin.app.cmd_plant import log_kpis

    sc = load_scenario(HEAT)
    modes = {m: {f.name for f in sc.machine_type_of(st).fault_modes} for st in sc.stations for m in st.machine_names}
    log = read_log(_STATUS)

    def failures(x: pd.DataFrame, **kw: Any) -> dict[str, float]:
        k = log_kpis(x, **kw)
        return k[k.kpi == "failures"].set_index("machine").log.to_dict()

    assert sum(failures(log).values()) == 2 and failures(log) == failures(log, modes=modes)
    unsaid = log.assign(reason="")
    assert sum(failures(unsaid).values()) == 0 and failures(unsaid, modes=modes) == failures(log)
    two = {m: {"die_wear", "trip"} for m in modes}  # a reason that is no fault mode of a machine with several: none
    assert sum(failures(log, modes=two).values()) == 0
    # the line's state for a what-if the same way: a reasonless stop of a type with one mode renews it (the ages
    # counted from the log's first row before, every mode 'unrenewed'), a machine down in it is down for its mode
    from twin.fit import state_at

    for at in (log.timestamp.max(), log[log.state == "down"].timestamp.iloc[0] + pd.Timedelta(minutes=1)):
        said, unsaid_now = (state_at(x, sc, at, "log").machines for x in (log, unsaid))
        assert {m: (n.mode, n.ages, n.unrenewed) for m, n in unsaid_now.items()} == \
            {m: (n.mode, n.ages, n.unrenewed) for m, n in said.items()}
    assert any(n.state == "down" and n.mode for n in state_at(unsaid, sc, at, "log").machines.values())


def test_the_parts_of_a_station_that_scraps_are_not_compared(tmp_path: Path) -> None:
    """The twin counts every part a machine made, good or scrap; a plant's part log may count good parts only (a
    store's good_parts counters do): a scrapping station's count is left out of the validation, said."""
    sc = load_scenario(HEAT)
    _, log, parts = _plant_logs(sc)
    log.to_csv(tmp_path / "status.csv", index=False)
    pd.concat(parts).to_csv(tmp_path / "parts.csv", index=False)
    (r,) = run_all(twin_cmd("fit", tmp_path / "status.csv", "--parts", tmp_path / "parts.csv", "--base", HEAT,
                            "--out", tmp_path / "f.yaml", "--replications", 2))
    assert "note: the parts made by grind are not compared in the validation: their station scraps parts" in \
        " ".join(r.stderr.split()), r.stderr
    check = pd.read_csv(tmp_path / "f-report" / "validation.csv")
    assert set(check[check.kpi == "parts"].machine) == {"turn-1", "turn-2", "harden"}


def _judged_parts(run: Any, good: str = "good", scrap: str = "scrap") -> pd.DataFrame:
    """Each machine's parts with their result, as a plant's quality records give them."""
    start = pd.Timestamp(run.line.scenario.start)
    return pd.concat(pd.DataFrame({
        "timestamp": start + pd.to_timedelta(np.concatenate([np.frombuffer(m.log.finished),
                                                             np.frombuffer(m.log.scrapped)]), unit="s"),
        "machine": m.name, "result": [good] * len(m.log.finished) + [scrap] * len(m.log.scrapped)})
        for m in run.line.machines).sort_values(["machine", "timestamp"], kind="stable")


@pytest.mark.slow  # seconds of CLI runs: the full suite
def test_scrap_rates_are_fitted_from_each_parts_result(tmp_path: Path) -> None:
    """The engineered line says grinding scraps 1 %; the plant's quality records (a result per part, in German: i.O.
    or n.i.O.) say 6 %. The fit reads it (with its interval), the validation then compares grinding's parts made
    (the log counts every part), and a scrap counter read beside the good-part counter says the same."""
    from twin.app.cmd_plant import _file_parts
    from twin.fit import fit_scenario

    truth = load_scenario(HEAT, {"duration": "8 d"})
    spec = truth.model_dump(by_alias=True)
    spec["stations"][2]["scrap"] = 0.06
    run, log, _ = _plant_logs(Scenario.model_validate(spec))
    judged = _judged_parts(run, "i.O.", "n.i.O.")
    judged.to_csv(tmp_path / "parts.csv", index=False)
    parts = read_parts(tmp_path / "parts.csv", truth.line.timezone)
    assert parts.scrap.sum() == sum(len(m.log.scrapped) for m in run.line.machines) > 100
    fitted, table = fit_scenario(log, truth, parts=parts)
    grind = next(st for st in fitted.stations if st.name == "grind")
    assert grind.scrap == pytest.approx(0.06, abs=0.015)
    row = table[table.time == "scrap"].set_index("machine type").loc["station grind"]
    assert row.family == "share of its parts scrapped" and "; was 1.00%)" in row.parameters and "95 % CI" in \
        row.parameters
    assert [st.scrap for st in fitted.stations[:2]] == [0.0, 0.0]  # turning and hardening scrapped none
    # a PLC's good and scrap counters, read every ten minutes: the same share
    start = pd.Timestamp(truth.start)
    ten = pd.date_range(start, start + pd.Timedelta(days=8), freq="10min").to_numpy()
    rows = []
    for m in run.line.machines:
        mine = judged[judged.machine == m.name]
        ok, nok = (np.searchsorted(np.sort(mine.timestamp[mine.result == r].to_numpy()), ten, side="right")
                   for r in ("i.O.", "n.i.O."))
        rows.append(pd.DataFrame({"timestamp": ten, "machine": m.name, "count": ok, "scrap": nok}))
    pd.concat(rows).to_csv(tmp_path / "counters.csv", index=False)
    counted = _file_parts(read_parts(tmp_path / "counters.csv", truth.line.timezone))
    assert counted.scrap.sum() == parts.scrap.sum()
    assert next(st for st in fit_scenario(log, truth, parts=counted)[0].stations if st.name == "grind").scrap == \
        grind.scrap
    log.to_csv(tmp_path / "status.csv", index=False)
    # the whole command, the results in the plant's own words: mapped with --results
    judged.replace({"result": {"i.O.": "Gutteil", "n.i.O.": "Ausschussteil"}}).to_csv(tmp_path / "own.csv", index=False)
    (r,) = run_all(twin_cmd("fit", tmp_path / "status.csv", "--parts", tmp_path / "own.csv", "--base", HEAT,
                            "--out", tmp_path / "f.yaml", "--replications", 2, "--results",
                            "Gutteil=good, Ausschussteil=scrap"))
    assert "not compared" not in " ".join(r.stderr.split() + r.stdout.split()), r.stderr
    fits = pd.read_csv(tmp_path / "f-report" / "fitted.csv").set_index(["machine type", "time"])
    assert fits.loc[("station grind", "scrap"), "family"] == "share of its parts scrapped"
    assert load_scenario(tmp_path / "f.yaml").stations[2].scrap == grind.scrap
    check = pd.read_csv(tmp_path / "f-report" / "validation.csv")
    assert "grind" in set(check[check.kpi == "parts"].machine)


def test_minor_stops_are_found_in_the_cycles_of_a_working_machine() -> None:
    """A press that stops for about 2 minutes after every 10 minutes of work on average, cleared at the machine and
    logged as working (below the plant's threshold for downtime): its part log shows them as cycles far longer than
    the rest. The fit finds them (their lengths' law and the working time between them) and fits the cycle time to
    the other cycles: 50 s, where the stops folded into it made it 58 s."""
    from twin.fit import fit_scenario

    base = load_scenario(TRUTH, {"duration": "3 d"})
    spec = base.model_dump(by_alias=True)
    spec["machine_types"]["press"]["minor_stops"] = {"every": {"dist": "exponential", "mean": 600},
                                                     "duration": {"dist": "lognormal", "mean": 120, "sd": 30}}
    run, log, parts = _plant_logs(Scenario.model_validate(spec))
    assert sum(len(m.minor.lengths) for m in run.line.machines if m.minor is not None) > 300
    fitted, table = fit_scenario(log, base, parts=pd.concat(parts))
    found = fitted.machine_types["press"].minor_stops
    assert found is not None
    assert found.every.mean == pytest.approx(600, rel=0.15) and found.duration.mean == pytest.approx(120, rel=0.1)
    assert fitted.stations[0].cycle_time.mean == pytest.approx(50, rel=0.02)
    row = table[(table["fault mode"] == "minor stops")].iloc[0]
    assert row["events"] > 300 and "every" in row["parameters"] and "(was none)" in row["parameters"]
    # fit_truth's own presses stop for nothing of the kind: none found (their cycles' tails are no stops)
    _, log, parts = _plant_logs(base)
    assert fit_scenario(log, base, parts=pd.concat(parts))[0].machine_types["press"].minor_stops is None


def test_startup_rejects_are_found_after_the_restarts_the_status_log_shows() -> None:
    """Grinding is set up every 40 parts, and the first 4 parts after each setup are scrap half the time (the process
    settling), 2 % of all parts besides: the part results read against the status log's restarts give both, where the
    parts' share alone made it one figure of 7 %."""
    from twin.fit import fit_scenario

    spec = load_scenario(HEAT, {"duration": "8 d"}).model_dump(by_alias=True)
    spec["stations"][2]["changeover"] = {"every_parts": 40, "duration": "10 min"}  # as engineered
    base = Scenario.model_validate(spec)
    spec["stations"][2].update(scrap=0.02, startup_scrap={"parts": 4, "scrap": 0.5})  # as it runs
    run, log, _ = _plant_logs(Scenario.model_validate(spec))
    judged = _judged_parts(run)
    fitted, table = fit_scenario(log, base, parts=judged.assign(scrap=judged.result == "scrap"))
    grind = fitted.stations[2]
    assert grind.startup_scrap is not None and grind.startup_scrap.parts in (3, 4, 5)
    assert grind.startup_scrap.scrap == pytest.approx(0.5, abs=0.12)
    assert grind.scrap == pytest.approx(0.02, abs=0.008)
    row = table[table.time == "startup rejects"].set_index("machine type").loc["station grind"]
    assert row.events > 50 and "parts after each of" in row.parameters
    # turning, restarted after each repair, scraps as often after one as at any time: none found there
    assert fitted.stations[0].startup_scrap is None
    # the fitted line scraps as the log does: grinding's share of scrapped parts inside the simulated CI
    from twin.app.cmd_plant import validate_fit

    check = validate_fit(fitted, log, 4, parts=judged.assign(scrap=judged.result == "scrap"), jobs=1)
    scrap = check[check.kpi == "scrap share"].set_index("machine")
    assert scrap.loc["grind", "log"] == pytest.approx(0.069, abs=0.01) and scrap.loc["grind", "verdict"] == \
        "inside the CI", scrap


def test_changeover_times_are_fitted_from_the_setups_the_status_log_shows() -> None:
    """Grinding is set up every 40 parts: the engineers planned 5 minutes, the floor takes 10 (lognormal, sd 3 min).
    The status log's setups give the law; a station without changeovers in the base, or with a product pair's own,
    keeps what it has and says why."""
    from twin.fit import fit_scenario

    spec = load_scenario(HEAT, {"duration": "8 d"}).model_dump(by_alias=True)
    spec["stations"][2]["changeover"] = {"every_parts": 40, "duration": "5 min"}
    base = Scenario.model_validate(spec)
    spec["stations"][2]["changeover"]["duration"] = {"dist": "lognormal", "mean": "10 min", "sd": "3 min"}
    run, log, _ = _plant_logs(Scenario.model_validate(spec))
    starts = [e.t for e in run.line.events if e.kind == "changeover_start"]
    ends = [e.t for e in run.line.events if e.kind == "changeover_end"]
    drawn = np.subtract(ends, starts[:len(ends)])  # what the floor took: the law's draws in this run
    setups = len(drawn)
    assert setups > 50 and drawn.mean() == pytest.approx(600, rel=0.15)
    fitted, table = fit_scenario(log, base, parts=None)
    grind = fitted.stations[2]
    assert grind.changeover is not None and grind.changeover.every_parts == 40
    assert grind.changeover.duration.mean == pytest.approx(drawn.mean(), rel=0.03)
    row = table[table.time == "setup"].set_index("machine type").loc["station grind"]
    assert row.events >= setups - 2 and row["base mean [h]"] == pytest.approx(5 / 60)
    # the same setups where the base has none at grinding: kept, and said
    kept = fit_scenario(log, load_scenario(HEAT, {"duration": "8 d"}))[1]
    assert "the base has no changeover here" in kept[kept.time == "setup"].family.iloc[0]


def test_part_results_that_say_neither_good_nor_scrap_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "parts.csv"
    f.write_text("timestamp,machine,result\n2026-01-05T06:00,grind,OK\n2026-01-05T06:01,grind,maybe\n")
    with pytest.raises(LogError, match=r"row 3, column result: 'maybe' is neither good \(good, ok"):
        read_parts(f)
    # the plant's own words, mapped as `--results` maps them (before the words plants use: 'OK' read as scrap here)
    own = read_parts(f, fmt=LogFormat(results={"Maybe": "good", "ok": "scrap"}))
    assert own.scrap.tolist() == [True, False]
    assert_mistakes(["fit", str(_STATUS), "--base", str(HEAT), "--out", str(tmp_path / "f.yaml")], [
        (["--results", "Gutteil=fine"], "--results: 'Gutteil=fine': 'fine' is not a part result; use good, scrap"),
        (["--products", "4711=a"], "--products: the base scenario makes one kind of part"),
        (["--parts", str(f)], "or map the log's own words with --results 'maybe=good' (or =scrap)")])
    f.write_text("timestamp,machine,count,result\n2026-01-05T06:00,grind,4,OK\n")
    with pytest.raises(LogError, match="a counter's readings count parts, a result is one part's"):
        read_parts(f)


def test_cycle_times_from_a_part_log_and_buffer_sizes_from_levels(tmp_path: Path) -> None:
    """A part log (one row per part a machine finished) gives each station's cycle time from the cycles the machine
    worked back to back (no wait, no stop between); a buffer-level log gives each buffer's capacity. The validation
    compares the parts each machine made (it compared none: a fitted line making too few parts went unseen)."""
    from twin.app.cmd_plant import log_kpis, validate_fit
    from twin.fit import fit_scenario

    sc = load_scenario(TRUTH).model_copy(update={"duration": 1.5 * 86400.0})
    run, log, parts = _plant_logs(sc)
    start = pd.Timestamp(sc.start)
    levels = pd.DataFrame({"timestamp": [start] * 3, "station": ["press-2", "press-2", "nowhere"], "level": [3, 17, 9]})
    fitted, table = fit_scenario(log, sc, parts=pd.concat(parts), levels=levels)
    cycles = table[table.time == "cycle"].set_index("machine type")
    assert cycles.loc["station press-1", "events"] > 500 and cycles.loc["station press-2", "events"] > 50
    assert cycles.loc["station press-1", "mean [h]"] * 3600 == pytest.approx(50, rel=0.02)
    assert cycles.loc["station press-2", "mean [h]"] * 3600 == pytest.approx(45, rel=0.02)
    assert fitted.stations[0].cycle_time.mean == pytest.approx(50, rel=0.02)
    assert fitted.stations[1].buffer == 17  # the most parts seen waiting in front of press-2
    # the parts each machine made in the log's span: the twin's own count of the same run (the log up to its end)
    ended = pd.concat([log, log.groupby("machine").tail(1).assign(timestamp=start + pd.Timedelta(seconds=sc.duration))])
    made = log_kpis(ended, parts=pd.concat(parts)).query("kpi == 'parts'").set_index("machine").log
    twin_made = run.kpis.query("scope == 'machine' and kpi == 'parts'").set_index("entity").value
    assert made.to_dict() == twin_made.to_dict() and made.min() > 2000
    check = validate_fit(fitted, log, 3, parts=pd.concat(parts)).query("kpi == 'parts'")
    assert len(check) == 2 and (check.verdict == "inside the CI").all(), check
    # a part log covering a third of the span is not compared (its count would be a third)
    whole = pd.concat(parts)
    third = whole[whole.timestamp < start + pd.Timedelta(hours=12)]
    assert "parts" not in set(log_kpis(log, parts=third).kpi)
    # a log coarser than the cycle (to the minute: 0, 1 or 2 parts of a 50 s cycle at each time), and a two-cavity
    # logger (press-1's parts in pairs, both at the second's time): still 50 s a part. The gaps between distinct times
    # alone gave 60 s and 100 s
    whole = pd.concat(parts)
    coarse = whole.assign(timestamp=whole.timestamp.dt.floor("min"))
    p1 = whole[whole.machine == "press-1"].timestamp.to_numpy()
    pairs = pd.DataFrame({"timestamp": np.repeat(p1[1::2], 2), "machine": "press-1"})
    for log_parts in (coarse, pairs):
        table = fit_scenario(log, sc, parts=log_parts)[1]
        mean = table[table.time == "cycle"].set_index("machine type").loc["station press-1", "mean [h]"] * 3600
        assert mean == pytest.approx(50, rel=0.03)
    # a PLC's good-part counter read each minute (timestamp, machine, count; reset to 0 once): each reading was taken
    # for one part, every cycle a minute; it counts the parts since the reading before, as a store's counters
    from twin.app.cmd_plant import _file_parts

    minutes = pd.date_range(start, start + pd.Timedelta(days=1.5), freq="1min")
    count = np.searchsorted(np.sort(p1), minutes.to_numpy(), side="right").astype(float)
    count[len(count) // 2:] -= count[len(count) // 2 - 1]  # reset at noon: counts on from 0
    f = tmp_path / "counter.csv"
    pd.DataFrame({"timestamp": minutes, "machine": "press-1", "count": count}).to_csv(f, index=False)
    counted = _file_parts(read_parts(f))
    (tmp_path / "bad.csv").write_text("timestamp,machine,count\n2026-01-05T06:00,press-1,12\n2026-01-05T06:01,press-1,"
                                      "zwölf\n")
    with pytest.raises(LogError, match=r"row 3, column count: 'zwölf' is not a part count \(a number, 0 or more\)"):
        read_parts(tmp_path / "bad.csv")
    assert len(counted) == len(p1[p1 <= minutes[-1].to_datetime64()]) - (p1 <= minutes[0].to_datetime64()).sum()
    table = fit_scenario(log, sc, parts=counted)[1]
    mean = table[table.time == "cycle"].set_index("machine type").loc["station press-1", "mean [h]"] * 3600
    assert mean == pytest.approx(50, rel=0.03)


def test_machines_of_their_own_speeds_are_read_from_the_part_log() -> None:
    """A station's parallel machines were fitted one law for all: an old filler at 60 s beside a new one at 50 s
    became two 54 s machines. Each machine's cycles against those of the machine with the most: one that is surely
    more than 5 % apart gets its own law (`machine_cycle_times`); machines alike share the station's (no split)."""
    from tests.helpers import scenario as make
    from twin.fit import fit_scenario

    def normal(mean: float) -> dict[str, Any]:
        return {"dist": "normal", "mean": mean, "sd": 4}

    def line(fill: float, **own: Any) -> Scenario:
        return make([{"name": "fill", "machines": ["fill-a", "fill-b", "fill-c"], "cycle_time": normal(fill), **own},
                     {"name": "cap", "cycle_time": normal(10), "buffer": 10}], duration="1 d")

    _, log, parts = _plant_logs(line(50, machine_cycle_times={"fill-c": normal(60)}))
    base = line(45)
    fitted, table = fit_scenario(log, base, parts=pd.concat(parts))
    fill = fitted.stations[0]
    assert set(fill.machine_cycle_times) == {"fill-c"}
    assert fill.machine_cycle_times["fill-c"].mean == pytest.approx(60, rel=0.02)
    assert fill.cycle_time.mean == pytest.approx(50, rel=0.02)  # fill-a and fill-b, alike, together
    rows = table[table.time == "cycle"]
    assert list(rows["fault mode"]) == ["fill-c", "", ""]  # fill-c's own row, then the stations' laws
    _, log, parts = _plant_logs(line(50))
    assert not fit_scenario(log, base, parts=pd.concat(parts))[0].stations[0].machine_cycle_times


@pytest.mark.parametrize("when", ["off-shift", "at-once"])
def test_services_in_the_nights_are_read_from_the_log(when: str) -> None:
    """A plant that services its presses in the nights, fitted on a base that services when due: the fitted twin took
    the services into its shifts (planned time lost that the plant does not lose). Where 4 of 5 services in the log
    began in planned stops the fitted type services `when: off-shift`; where 1 of 5 or fewer, when due."""
    from tests.helpers import scenario as make
    from twin.fit import fit_scenario

    def line(service: str) -> Scenario:
        press = {"maintenance": {"policy": "preventive", "every": "7 h", "duration": {"dist": "constant",
                                                                                      "value": 1800},
                                 "when": service}}
        return make([{"name": "press", "cycle_time": {"dist": "constant", "value": 60}}], machine_types={"m": press},
                     duration="7 d", start="2026-01-05T00:00:00", calendar={"shifts": ["06:00-22:00"]})

    fitted, table = fit_scenario(_status_log(line(when)), line("off-shift" if when == "at-once" else "at-once"))
    assert fitted.machine_types["m"].maintenance.when == when
    row = table[table.time == "service"].iloc[0]
    assert row.events >= 7 and row.parameters.startswith(f"when: {when} (was ")


def _status_log(sc: Scenario) -> pd.DataFrame:
    """A status log of the twin's first replication of the scenario, as a plant keeps one (by machine and time)."""
    from twin.app.runner import simulate

    line = simulate(sc, 0, sensors=False).line
    start = pd.Timestamp(sc.start)
    return pd.concat([pd.DataFrame({"timestamp": start + pd.to_timedelta(t, unit="s"), "machine": m.name,
                                    "state": s.astype(str), "reason": r.astype(str)})
                      for m in line.machines for t, s, r in [m.log.states_from(0)]]
                     ).sort_values(["machine", "timestamp"])


@pytest.mark.parametrize(("shifts", "expected"), [
    (None, ["06:00-22:00"]),  # cnc_cell's own: two shifts, adjacent ones read as one window
    (["22:00-06:00"], ["22:00-06:00"]),  # a night shift: one shift of the day it starts on
    (["06:00-14:00", "14:00-22:00", "22:00-06:00"], ["06:00-18:00", "18:00-06:00"]),  # Monday 06:00 to Saturday 06:00
])
def test_the_shift_calendar_is_read_from_the_planned_stops(shifts: list[str] | None, expected: list[str]) -> None:
    """A week of a line working Monday to Friday as a status log: its off-shift records give the calendar back. A
    night or a three-shift line was read by the calendar day: its shift's hours after midnight made Saturday a
    working day and Monday morning one too (three shifts: 00:00-24:00 Monday to Saturday, 144 h a week for 120)."""
    from twin.fit import calendar_from
    from twin.scenario import Calendar

    sc = load_scenario(ROOT / "scenarios" / "cnc_cell.yaml").model_copy(update={"duration": 7 * 86400.0})
    if shifts is not None:
        sc = sc.model_copy(update={"calendar": Calendar(shifts=shifts, days=sc.calendar.days)})  # type: ignore[union-attr]
    log = _status_log(sc)
    days = ["mon", "tue", "wed", "thu", "fri"]
    found = calendar_from(log)
    assert found == {"shifts": expected, "days": days}
    assert Calendar(**found).day_length() == (sc.calendar or Calendar(shifts=["00:00-24:00"])).day_length()
    assert calendar_from(log[log.state != "off_shift"]) is None  # no planned stops: no calendar to read


def test_holidays_are_read_from_the_planned_stops() -> None:
    """Three weeks of a two-shift line with a short Saturday shift and a Wednesday holiday in the second week: the
    fitted calendar works Wednesdays and has that day off (it planned its shifts, and the validation's availability
    counted them), and works Saturdays their own shift (a day of fewer than half the weekdays' hours was no working
    day, its production unplanned)."""
    from twin.fit import calendar_from
    from twin.scenario import Calendar

    sc = load_scenario(ROOT / "scenarios" / "cnc_cell.yaml")
    cal = Calendar.model_validate({**sc.calendar.model_dump(), "holidays": ["2026-01-14"],  # type: ignore[union-attr]
                                   "by_day": {"sat": ["06:00-11:00"]}})
    sc = sc.model_copy(update={"duration": 21 * 86400.0, "calendar": cal})
    log = _status_log(sc)
    assert calendar_from(log) == {
        "shifts": ["06:00-22:00"], "days": ["mon", "tue", "wed", "thu", "fri"], "by_day": {"sat": ["06:00-11:00"]},
        "holidays": ["2026-01-14"]}


@pytest.mark.parametrize(("calendar", "expected"), [
    ({"shifts": ["06:00-14:00", "14:00-22:00"], "breaks": ["12:00-12:30", "18:00-18:30"]},
     {"shifts": ["06:00-22:00"], "breaks": ["12:00-12:30", "18:00-18:30"]}),
    # Saturdays work through the weekdays' pause: no break the calendar could apply to every day, so two shifts
    ({"shifts": ["06:00-12:00", "12:30-22:00"], "by_day": {"sat": ["06:00-13:00"]}},
     {"shifts": ["06:00-12:00", "12:30-22:00"], "by_day": {"sat": ["06:00-13:00"]}}),
])
def test_breaks_are_read_from_the_planned_stops(calendar: dict[str, Any], expected: dict[str, Any]) -> None:
    """A two-shift line's lunch and evening breaks were read as four shifts (06:00-12:00, 12:30-18:00, ...): the
    fitted scenario's per-shift report then counted four shifts a day. A pause of at most 45 minutes is a break now,
    where the calendar with it plans what the log shows on every day."""
    from twin.fit import calendar_from
    from twin.scenario import Calendar

    sc = load_scenario(ROOT / "scenarios" / "cnc_cell.yaml")
    days = ["mon", "tue", "wed", "thu", "fri"]
    sc = sc.model_copy(update={"duration": 14 * 86400.0, "calendar": Calendar.model_validate({**calendar,
                                                                                               "days": days})})
    found = calendar_from(_status_log(sc))
    assert found == {**expected, "days": days}
    assert Calendar(**found).windows("mon") == sc.calendar.windows("mon")  # type: ignore[union-attr]


@pytest.mark.slow  # runs of the twin and fits (8 s): the full suite's
def test_a_plants_stop_reasons_are_mapped_to_fault_modes_or_said_to_be_left_out(tmp_path: Path) -> None:
    """A plant logs its own reason codes ('E-17'), not the scenario's fault mode names: every stop was left out of
    the fit without a word (an empty table, the base's times kept, and a validation that called them good). Now the
    stops of a machine type with one fault mode are that mode, the others are said with their counts, and
    --reasons maps the codes."""
    sc = load_scenario(TRUTH)
    run_all(twin_cmd("run", TRUTH, "--no-stream", "--replications", 1, "--duration", "4 d", "--out", tmp_path / "p"))
    log = log_from_run(pd.read_parquet(tmp_path / "p" / "truth" / "states.parquet"),
                       pd.read_parquet(tmp_path / "p" / "truth" / "events.parquet"), pd.Timestamp(sc.start))
    log["reason"] = log.reason.replace({"die_wear": "E-17", "trip": "T-3"})
    log.to_csv(tmp_path / "codes.csv", index=False)
    stops = int((log.state == "down").sum())
    r = subprocess.run(twin_cmd("fit", tmp_path / "codes.csv", "--base", TRUTH, "--out", tmp_path / "a.yaml",
                                "--replications", 2), cwd=ROOT, capture_output=True, text=True, timeout=300)
    told = " ".join(r.stderr.split())
    assert r.returncode == 0 and f"warning: {stops:,} stops name no fault mode of their machine's type" in told, told
    assert "'E-17' ×" in told and "--reasons 'CODE=MODE, …' (modes: die_wear, trip)" in told, told
    # the same log as a German MES exports it: its own column names, semicolons, day-first times
    mes = log.rename(columns={"timestamp": "Zeitstempel", "machine": "Maschine", "state": "Status",
                              "reason": "Grund"}).assign(Zeitstempel=log.timestamp.dt.strftime("%d.%m.%Y %H:%M:%S"))
    mes.to_csv(tmp_path / "mes.csv", index=False, sep=";")
    r, german = run_all(twin_cmd("fit", tmp_path / "codes.csv", "--base", TRUTH, "--out", tmp_path / "b.yaml",
                                 "--replications", 2, "--reasons", "E-17=die_wear, T-3=trip"),
                        twin_cmd("fit", tmp_path / "mes.csv", "--base", TRUTH, "--out", tmp_path / "de.yaml",
                                 "--replications", 2, "--reasons", "E-17=die_wear, T-3=trip", "--columns",
                                 "Zeitstempel=timestamp, Maschine=machine, Status=state, Grund=reason",
                                 "--time-format", "%d.%m.%Y %H:%M:%S"))
    assert "warning" not in r.stderr + german.stderr, r.stderr + german.stderr
    fitted = pd.read_csv(tmp_path / "b-report" / "fitted.csv")
    assert set(fitted["fault mode"]) == {"die_wear", "trip"} and (fitted.events > 0).all()
    # the export's times are to the second, the run's to the nanosecond: the same laws, means to 3 digits
    same = ["fault mode", "time", "family", "events", "censored", "mean [h]"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "de-report" / "fitted.csv")[same], fitted[same], rtol=1e-3)
    assert_mistakes(["fit", str(tmp_path / "codes.csv"), "--base", str(TRUTH), "--out", str(tmp_path / "c.yaml")], [
        (["--reasons", "E-17=dye_wear"], "--reasons: 'E-17=dye_wear': 'dye_wear' is not a fault mode; use die_wear, "
                                         "trip"),
        (["--reasons", "E-17"], "--reasons: 'E-17' is not PLANT_NAME=FAULT_MODE (e.g. E-07=jam)")])
    assert_mistakes(["fit", str(tmp_path / "mes.csv"), "--base", str(TRUTH), "--out", str(tmp_path / "c.yaml")], [
        ([], "columns timestamp, machine, state missing (found: Zeitstempel, Maschine, Status, Grund)"),
        ([], "Columns the file names its own way are mapped with --columns 'ITS_NAME=timestamp, …'"),
        (["--columns", "Zeitstempel=timestamp, Maschine=machine, Status=state"],
         "column timestamp: '05.01.2026 06:00:00' is not a time in ISO 8601 (2026-01-05T06:00:00); give its format "
         "with --time-format '%d.%m.%Y %H:%M:%S' (day first)"),
        (["--columns", "Zeitstempel=time"], "--columns: 'Zeitstempel=time': 'time' is not a log column; use "
                                            "timestamp, machine, state, reason, station, level"),
        (["--sep", ";;"], "--sep ';;': give one character"),
        (["--sep", "tab", "--columns", "Zeitstempel=timestamp"], "(found: Zeitstempel;Maschine;Status;Grund)")])


def test_an_assemblys_feeder_levels_size_its_buffers() -> None:
    """An assembly's buffer levels come per feeder ('assy<shaft', as the twin and its store keep them): its capacity
    is the most parts seen waiting in any of them (they were 'not in the scenario' and left out)."""
    from twin.fit import fit_scenario

    sc = load_scenario(ROOT / "tests" / "scenarios" / "pumps.yaml").model_copy(update={"duration": 86400.0})
    log = _status_log(sc)
    start = pd.Timestamp(sc.start)
    levels = pd.DataFrame({"timestamp": [start] * 3, "station": ["assy<shaft", "assy<housing", "test"],
                           "level": [3, 6, 2]})
    fitted, _ = fit_scenario(log, sc, levels=levels)
    assert [s.buffer for s in fitted.stations] == [None, None, 6, 2, 3]


def test_cycle_times_from_a_plants_part_counters_in_the_store(tmp_path: Path) -> None:
    """A plant's good-part counter, as `twin connect` stores it (the sensor good_parts, read every 5 minutes: 6 parts
    of a 50 s cycle between two readings, and a PLC restart that set it back to 0), fits the station's cycle
    without exporting a part log first."""
    from sensors.store import open_store

    url = f"duckdb:///{tmp_path / 'plant.duckdb'}"
    db = open_store(url)
    t0 = pd.Timestamp("2026-01-05 06:00")
    db.write_states(pd.DataFrame({"run": "plant", "replication": 0, "machine": ["press-1", "press-1"],
                                  "ts": [t0, t0 + pd.Timedelta(hours=3)], "state": ["working", "down"],
                                  "reason": ["", "trip"]}))
    times = t0 + pd.to_timedelta(np.arange(1, 30) * 300, unit="s")
    count = np.arange(1, 30) * 6.0
    count[15:] -= count[14]  # the restart: counts from 0 again
    db.write(pd.DataFrame({"run": "plant", "replication": 0, "machine": "press-1", "sensor": "good_parts",
                           "ts": times, "value": count}))
    db.close()
    r = subprocess.run(twin_cmd("fit", url, "--parts", url, "--base", TRUTH, "--out", tmp_path / "x.yaml",
                                "--replications", 2), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert load_scenario(tmp_path / "x.yaml").stations[0].cycle_time.mean == pytest.approx(50, rel=1e-6)
    bare = f"duckdb:///{tmp_path / 'bare.duckdb'}"
    open_store(bare).close()
    assert_mistakes(["fit", url, "--base", str(TRUTH), "--out", str(tmp_path / "y.yaml")], [
        (["--parts", bare], f"--parts {bare}: no good_parts counters; map a machine's part counter")])


def test_reject_counters_in_the_store_give_scrap_where_a_machine_has_one() -> None:
    """`twin connect`'s scrap_parts beside good_parts: press-1's parts are judged (2 rejects a reading beside 18
    good: 10 %), press-2 has no reject counter, so its parts' results are unknown, not good: its scrap is kept."""
    from twin.app.cmd_plant import _counted_parts
    from twin.fit import fit_scrap

    t0 = pd.Timestamp("2026-01-05 06:00")
    times = t0 + pd.to_timedelta(np.arange(30) * 900, unit="s")
    readings = pd.concat([
        pd.DataFrame({"machine": "press-1", "sensor": "good_parts", "ts": times, "value": np.arange(30) * 18.0}),
        pd.DataFrame({"machine": "press-1", "sensor": "scrap_parts", "ts": times, "value": np.arange(30) * 2.0}),
        pd.DataFrame({"machine": "press-2", "sensor": "good_parts", "ts": times, "value": np.arange(30) * 20.0})])
    parts = _counted_parts(readings)
    assert parts.scrap.isna().sum() == 29 * 20 and int(parts.scrap.sum()) == 29 * 2
    sc = load_scenario(TRUTH)
    stations = list(sc.stations)
    rows = fit_scrap(parts, stations, sc)
    assert [r["machine type"] for r in rows] == ["station press-1"]
    assert stations[0].scrap == pytest.approx(0.1) and stations[1].scrap == sc.stations[1].scrap


def test_a_calendar_clocks_lives_stand_still_off_shift_as_the_model_runs_them() -> None:
    """A 'calendar' reliability clock runs while the machine is up on shift (the model's clock stands off shift):
    the fit counted off-shift time into its lives as well, 26 h for a life of 10 h on shift."""
    from tests.helpers import const, scenario
    from twin.fit import observations

    sc = scenario([{"name": "m1", "cycle_time": const(60)}], machine_types={"m": {"clock": "calendar", "fault_modes": [
        {"name": "wear", "ttf": const(36000), "repair": const(3600)}]}})
    t0 = pd.Timestamp("2026-01-05 05:00")
    log = pd.DataFrame({"timestamp": t0 + pd.to_timedelta([0, 1, 7, 9, 25, 27, 28], unit="h"), "machine": "m1",
                        "state": ["down", "working", "starved", "off_shift", "working", "down", "working"],
                        "reason": ["wear", "", "", "", "", "wear", ""]})
    assert observations(log, sc)[("m", "wear", "ttf")][0] == [10 * 3600.0]  # 6 h working, 2 starved, 2 working


HEAT = ROOT / "tests" / "scenarios" / "heat_treat.yaml"
_STATUS = ROOT / "tests" / "data" / "heat_treat_status.csv"  # a day of the line's status log
GROUP = {"working": "working", "starved": "idle", "blocked": "idle", "setup": "idle", "waiting_operator": "idle",
         "down": "stopped", "maintenance": "stopped", "off_shift": "off_shift"}


def _meters(log: pd.DataFrame, sc: object, every: float) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each machine's true kWh since the log's start at times `every` seconds apart, and its true kW then: from its
    states and its type's power, worked out here apart from the fit's own bookkeeping."""
    kind = {m: st.machine_type for st in sc.stations for m in st.machine_names}  # type: ignore[attr-defined]
    t0, end = log.timestamp.min(), (log.timestamp.max() - log.timestamp.min()).total_seconds()
    out = {}
    for m, g in log.groupby("machine"):
        p = sc.machine_types[kind[m]].power.model_dump()  # type: ignore[attr-defined]
        p["off_shift"] = p["stopped"] if p["off_shift"] is None else p["off_shift"]
        t = (g.timestamp - t0).dt.total_seconds().to_numpy()
        t_end = np.append(t[1:], end)
        kw = np.array([p[GROUP[s]] for s in g.state])
        x = np.arange(t[0], end, every)
        kwh = (np.clip(np.minimum(x[:, None], t_end[None, :]) - t[None, :], 0, None) * kw[None, :]).sum(axis=1) / 3600
        out[m] = (x, kwh, kw[np.searchsorted(t, x, side="right") - 1])
    return out


@pytest.mark.slow
def test_each_machine_types_power_by_state_is_fitted_from_its_meters(tmp_path: Path) -> None:
    """Energy meters beside the status log: a kWh register read every 15 min (one machine's reset mid-week, a PLC
    restart) gives each machine type's power in each state by least squares on the hours spent in each, kW readings
    every 5 min (noisy, from a store as `twin connect` writes them) by their mean in each state; both recover the
    scenario's power, and the fitted line's energy matches the meters' within its 95 % CI."""
    from sensors.store import open_store

    sc = load_scenario(HEAT)
    run_all(twin_cmd("run", HEAT, "--no-stream", "--duration", "5 d", "--replications", 1, "--out", tmp_path / "p"))
    log = log_from_run(pd.read_parquet(tmp_path / "p" / "truth" / "states.parquet"),
                       pd.read_parquet(tmp_path / "p" / "truth" / "events.parquet"), pd.Timestamp(sc.start))
    log.to_csv(tmp_path / "status.csv", index=False)
    t0 = log.timestamp.min()
    registers = []
    for m, (x, kwh, _) in _meters(log, sc, 900.0).items():
        reading = 5000 + kwh
        if m == "turn-1":
            reading[len(x) // 2:] -= reading[len(x) // 2] - 3  # reset mid-week: it counts on from 3 kWh
        registers.append(pd.DataFrame({"Zeit": t0 + pd.to_timedelta(x, unit="s"), "machine": m, "kWh": reading}))
    pd.concat(registers).to_csv(tmp_path / "meters.csv", index=False)
    rng = np.random.default_rng(1)
    store = open_store(f"duckdb:///{tmp_path / 'meters.duckdb'}")
    for m, (x, _, kw) in _meters(log, sc, 300.0).items():
        store.write(pd.DataFrame({"run": "plant", "replication": 0, "machine": m, "sensor": "power",
                                  "ts": t0 + pd.to_timedelta(x, unit="s"), "value": kw + rng.normal(0, 0.3, len(x))}))
    store.close()
    r1, r2 = run_all(twin_cmd("fit", tmp_path / "status.csv", "--base", HEAT, "--out", tmp_path / "a.yaml",
                              "--energy", tmp_path / "meters.csv", "--columns", "Zeit=timestamp, kWh=energy",
                              "--replications", 3),
                     twin_cmd("fit", tmp_path / "status.csv", "--base", HEAT, "--out", tmp_path / "b.yaml",
                              "--energy", f"duckdb:///{tmp_path / 'meters.duckdb'}", "--replications", 2))
    assert "Pydantic" not in r1.stderr + r2.stderr  # the fitted calendar written as a calendar, without a warning
    for out, rel in (("a", 0.01), ("b", 0.03)):
        fitted = load_scenario(tmp_path / f"{out}.yaml")
        for name, mt in sc.machine_types.items():
            want, got = mt.power, fitted.machine_types[name].power
            assert got is not None and want is not None
            for group in ("working", "idle"):
                assert getattr(got, group) == pytest.approx(getattr(want, group), rel=rel), (out, name, group)
        assert fitted.machine_types["lathe"].power.stopped == pytest.approx(1.0, rel=0.1)  # down 4 times: little
    table = pd.read_csv(tmp_path / "a-report" / "fitted.csv")
    assert table[table.time == "power"].family.str.startswith("kWh register, least squares").all()
    assert "mean kW by state" in pd.read_csv(tmp_path / "b-report" / "fitted.csv").family.tolist()
    check = pd.read_csv(tmp_path / "a-report" / "validation.csv")
    energy = check[check.kpi == "energy [kWh]"]
    assert len(energy) == 4 and (energy.verdict == "inside the CI").sum() >= 3, energy


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.decimals(min_value=0, max_value=10**5, places=3, allow_nan=False, allow_infinity=False),
                min_size=1, max_size=20))
def test_a_european_export_with_decimal_commas_reads_as_the_same_numbers(tmp_path: Path, values: list[Any]) -> None:
    """Excel in a German (most European) locale writes ';' files with decimal commas: '12,5' kW was refused as "not a
    power". Any such column reads as the numbers written with a decimal point; a file mixing both, or a ',' or tab
    file (where '1,250' may mean a thousand two hundred and fifty), is still refused by row."""
    from twin.fit import read_energy, read_levels

    sep = ";"
    times = [f"2026-01-05T06:{i:02d}:00" for i in range(len(values))]
    plain, comma = tmp_path / "plain.csv", tmp_path / "comma.csv"
    plain.write_text("timestamp,machine,power,energy\n" + "".join(f"{t},turn-1,{v},{v}\n"
                                                                  for t, v in zip(times, values)))
    written = [str(v).replace(".", ",") for v in values]
    comma.write_text(f"timestamp{sep}machine{sep}power{sep}energy\n" + "".join(
        f"{t}{sep}turn-1{sep}{v}{sep}{v}\n" for t, v in zip(times, written)))
    pd.testing.assert_frame_equal(read_energy(comma), read_energy(plain))
    levels = tmp_path / "levels.csv"
    levels.write_text(f"timestamp{sep}station{sep}level\n" + "".join(f"{t}{sep}oven{sep}{int(v)},0\n"
                                                                     for t, v in zip(times, values)))
    assert read_levels(levels).level.tolist() == [int(v) for v in values]
    # a cell formatted with thousands separators: '12.345,6' (a kWh register), beside ungrouped ones
    grouped = [f"{float(v):,.3f}".replace(",", " ").replace(".", ",").replace(" ", ".") for v in values]
    comma.write_text(f"timestamp{sep}machine{sep}energy\n" + "".join(f"{t}{sep}turn-1{sep}{g}\n"
                                                                    for t, g in zip(times, grouped)))
    np.testing.assert_allclose(read_energy(comma).value.to_numpy(),
                               read_energy(plain).query("sensor == 'energy'").value.to_numpy())
    comma.write_text(f"timestamp{sep}machine{sep}power\n{times[0]}{sep}turn-1{sep}12,5\n"
                     f"2026-01-05T07:00:00{sep}turn-1{sep}12.5\n")
    with pytest.raises(LogError, match=r"row 2, column power: '12,5' is not a power in kW"):
        read_energy(comma)
    for text in (f'timestamp,machine,power\n{times[0]},turn-1,"1,250"\n',  # ',' and tab files: never read
                 f"timestamp\tmachine\tpower\n{times[0]}\tturn-1\t1,250\n2026-01-05T07:00:00\tturn-1\t999\n"):
        plain.write_text(text)
        with pytest.raises(LogError, match=r"row 2, column power: '1,250' is not a power in kW"):
            read_energy(plain)


def test_energy_log_mistakes_are_named(tmp_path: Path) -> None:
    status = tmp_path / "status.csv"
    status.write_text("timestamp,machine,state,reason\n2026-01-05T06:00:00,turn-1,working,\n"
                      "2026-01-05T08:00:00,turn-1,down,insert_wear\n2026-01-05T08:20:00,turn-1,working,\n")
    (tmp_path / "none.csv").write_text("timestamp,machine,kwh\n2026-01-05T06:00:00,turn-1,12\n")
    (tmp_path / "bad.csv").write_text("timestamp,machine,power\n2026-01-05T06:00:00,turn-1,12\n"
                                      "2026-01-05T06:05:00,turn-1,-3\n")
    (tmp_path / "who.csv").write_text("timestamp,machine,power\n2026-01-05T06:00:00,press-9,12\n")
    from sensors.store import open_store

    store = open_store(f"duckdb:///{tmp_path / 'parts.duckdb'}")  # a plant's store with part counters, no meters
    store.write(pd.DataFrame({"run": "plant", "replication": 0, "machine": "turn-1", "sensor": "good_parts",
                              "ts": [pd.Timestamp("2026-01-05 07:00")], "value": [10.0]}))
    store.close()
    base = ["fit", str(status), "--base", str(HEAT), "--out", str(tmp_path / "f.yaml")]
    assert_mistakes(base, [
        (["--energy", str(tmp_path / "none.csv")], "none.csv: no column energy (a meter's kWh register) or power (kW "
                                                   "readings) (found: timestamp, machine, kwh); map the meter's column "
                                                   "with --columns 'ITS_NAME=energy'"),
        (["--energy", str(tmp_path / "bad.csv")], "bad.csv: row 3, column power: '-3' is not a power in kW (a number, "
                                                  "0 or more)"),
        (["--energy", str(tmp_path / "who.csv")], "press-9"),
        (["--energy", f"duckdb:///{tmp_path / 'parts.duckdb'}"], "no energy or power readings; map a machine's "
                                                                   "meter as the sensor energy")])


@pytest.mark.filterwarnings("error")  # a log of one increase, or none inside the status log's span, warned
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.one_of(st.datetimes(min_value=dt.datetime(2026, 1, 5, 6),
                                                 max_value=dt.datetime(2026, 1, 6, 6)), st.text(max_size=12)),
                          st.sampled_from(["turn-1", "harden", "x", ""]),
                          st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6))),
                max_size=30), st.sampled_from(["energy", "power"]))
@example([(dt.datetime(2026, 1, 5, 6), "harden", 0.0)] * 2 + [(dt.datetime(2026, 1, 5, 6), "harden", 300001.0)],
         "power")  # found by the fuzz: a fitted power over the scenario's limit was a pydantic traceback
@example([(dt.datetime(2026, 1, 5, 6 + h), "harden", 1e9 * h) for h in range(4)], "energy")  # a register in Wh
def test_any_energy_log_is_fitted_or_refused_clearly(tmp_path: Path, rows: list[tuple[object, ...]],
                                                     column: str) -> None:
    """Meter data is untrusted input too: whatever the rows, a LogError or a fit, never another exception."""
    from twin.fit import fit_scenario, read_energy

    log = read_log(_STATUS)
    f = tmp_path / "fuzz.csv"
    pd.DataFrame(rows, columns=["timestamp", "machine", column]).to_csv(f, index=False)
    try:
        energy = read_energy(f)
    except LogError as e:
        assert "fuzz.csv" in str(e)
        return
    try:
        fitted, _ = fit_scenario(log, load_scenario(HEAT), energy=energy)
    except LogError as e:  # meters that make a machine draw more than any machine does
        assert "the energy log's meters give machine type" in str(e)
        return
    assert all(mt.power is None or mt.power.working >= 0 for mt in fitted.machine_types.values())



@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.one_of(_DAY, st.text(max_size=12)), st.sampled_from(["turn-1", "grind", "x", ""]),
                          st.one_of(st.sampled_from(["OK", "n.i.O.", "scrap", " Good ", "", "1", "0"]),
                                    st.text(max_size=6))), min_size=1, max_size=40),
       st.lists(st.tuples(_DAY, st.sampled_from(["harden", "grind", "nowhere", ""]),
                          st.one_of(st.integers(-3, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                                    st.text(max_size=5))), min_size=1, max_size=20),
       st.booleans())
def test_any_part_or_buffer_log_is_fitted_or_refused_clearly(tmp_path: Path, parts: list[tuple[object, ...]],
                                                             levels: list[tuple[object, ...]], which: bool) -> None:
    """Part counts and buffer levels are untrusted input too: whatever the rows, a LogError naming the file or a fit
    (a level of inf was a traceback, 2.5 was cut to 2, 1e30 overflowed to a negative buffer, and a row without a
    station a traceback in the fit). Times are fuzzed by the status log's test: here mostly or only valid ones."""
    from twin.fit import fit_scenario, read_levels, read_parts

    f = tmp_path / ("parts.csv" if which else "levels.csv")
    if which:  # with each part's result (good or scrap) where the first timestamp's text has an odd length
        table = pd.DataFrame(parts, columns=["timestamp", "machine", "result"])
        table.drop(columns=[] if len(str(parts[0][0])) % 2 else ["result"]).to_csv(f, index=False)
    else:
        pd.DataFrame(levels, columns=["timestamp", "station", "level"]).to_csv(f, index=False)
    try:
        log = read_parts(f) if which else read_levels(f)
    except LogError as e:
        assert f.name in str(e), e
        return
    fitted, _ = fit_scenario(read_log(_STATUS), load_scenario(HEAT), **{"parts" if which else "levels": log})
    assert all(s.buffer is None or 0 <= s.buffer <= 10**9 for s in fitted.stations)
    assert all(0 <= s.scrap <= 1 for s in fitted.stations)


@pytest.mark.parametrize(("level", "shown"), [("inf", "'inf'"), ("2.5", "'2.5'"), ("1e30", "'1e+30'"), ("", "(empty)")])
def test_a_buffer_level_that_is_no_part_count_is_named(tmp_path: Path, level: str, shown: str) -> None:
    from twin.fit import read_levels

    f = tmp_path / "levels.csv"
    f.write_text(f"timestamp,station,level\n2026-01-05T06:00:00,harden,3\n2026-01-05T07:00:00,harden,{level}\n")
    with pytest.raises(LogError, match=re.escape(f"levels.csv: row 3, column level: {shown} is not a part count (a "
                                                 "whole number, 0 to 1,000,000,000).")):
        read_levels(f)


@pytest.mark.slow
def test_the_validation_runs_side_by_side_with_the_same_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """The fitted line's validation replications ran one after another (a year's log of a fast line for minutes):
    with --jobs 2 they run on two local processes, the same validation as one job's."""
    monkeypatch.setenv("LINETWIN_HOME", str(tmp_path / "home"))  # its run kept out of the other tests' runs index
    run_all(twin_cmd("run", TRUTH, "--no-stream", "--replications", 1, "--duration", "4 d", "--out", tmp_path / "p"))
    sc = load_scenario(TRUTH)
    log = log_from_run(pd.read_parquet(tmp_path / "p" / "truth" / "states.parquet"),
                       pd.read_parquet(tmp_path / "p" / "truth" / "events.parquet"), pd.Timestamp(sc.start))
    log.to_csv(tmp_path / "status.csv", index=False)
    for jobs in (1, 2):
        (r,) = run_all(twin_cmd("fit", tmp_path / "status.csv", "--base", TRUTH, "--out", tmp_path / f"j{jobs}.yaml",
                                "--jobs", jobs))
        assert ("validating: 5 replications of 4.0 days" in r.stderr) == (jobs == 2), r.stderr
    one, two = (pd.read_csv(tmp_path / f"j{j}-report" / "validation.csv") for j in (1, 2))
    assert len(one) >= 6
    pd.testing.assert_frame_equal(one, two)
    r = subprocess.run(twin_cmd("fit", tmp_path / "status.csv", "--base", TRUTH, "--out", tmp_path / "bad.yaml",
                                "--cluster", "localhost:8786"), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 3 and "write tcp://HOST:8786" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "bad.yaml").exists(), "refused before the fit, nothing written"


@pytest.mark.slow
def test_a_log_in_local_time_across_autumns_change_reads_every_row_at_its_real_time(tmp_path: Path) -> None:
    """A plant's log in local time repeats an hour each autumn (02:00-03:00 twice in Berlin): read on the wall clock,
    the second pass's rows were sorted in among the first's and merged with them (failures and repairs lost, states
    swapped), a stop list's stop ending in the second pass was refused as ending before it starts, and times with
    their UTC offset fared the same. The repeated hour is read at half speed (twin.clock), its passes one after the
    other, however the export is ordered: every row kept, each state's length the real one outside that hour."""
    sc, twin = _truth_log(tmp_path, {"start": "2026-10-21T00:00:00"}, "8 d")
    zone = "Europe/Berlin"
    real = pd.Timestamp(sc.start).tz_localize(zone) + (twin.timestamp - pd.Timestamp(sc.start))
    local = real.dt.tz_convert(zone)
    fold = (real >= pd.Timestamp("2026-10-25T00:00Z")) & (real < pd.Timestamp("2026-10-25T02:00Z"))
    first_pass = fold & (real < pd.Timestamp("2026-10-25T01:00Z"))
    assert first_pass.sum() > 20 and (fold & ~first_pass).sum() > 20  # rows in both passes of the hour
    exports = {"in time order": twin.assign(timestamp=local.dt.tz_localize(None)).iloc[np.argsort(real, kind="stable")],
               "by machine": twin.assign(timestamp=local.dt.tz_localize(None)),
               "with offsets": twin.assign(timestamp=local.map(lambda t: t.isoformat()))}
    for name, export in exports.items():
        export.to_csv(tmp_path / f"{name}.csv", index=False)
        read = read_log(tmp_path / f"{name}.csv", zone).sort_values(["machine", "timestamp"], kind="stable")
        assert len(read) == len(twin), name  # every row kept, none merged into another
        told = read.attrs.get("notes", [])  # said how the repeated hour was read, where the times lack offsets
        assert (told == []) if name == "with offsets" else (len(told) == 1 and f"{name}.csv: {fold.sum()} rows lie in "
                                                            "the hour the clock was set back (2026-10-25 02:00-03:00, "
                                                            "twice)" in told[0] and "second pass" in told[0]), told
        for machine, g in read.groupby("machine"):
            own = twin[twin.machine == machine]
            assert g.state.tolist() == own.state.tolist() and g.reason.tolist() == own.reason.tolist(), name
            # each state's length as it really was, but where it overlaps the repeated hour (read at half speed)
            assert g.timestamp.is_monotonic_increasing
            length, truth = g.timestamp.diff().to_numpy()[1:], own.timestamp.diff().to_numpy()[1:]
            touches = (fold[own.index].to_numpy()[1:] | fold[own.index].to_numpy()[:-1])
            np.testing.assert_array_equal(length[~touches], truth[~touches])
            assert (length[touches] <= truth[touches]).all()
        # the whole log an hour shorter on the line's clock (two real hours read as one), and equal to the wall clock
        # outside the repeated hour
        assert read.timestamp.max() - read.timestamp.min() == twin.timestamp.max() - twin.timestamp.min() - \
            pd.Timedelta(hours=1)
        outside = read.merge(twin.assign(wall=local.dt.tz_localize(None))[~fold.to_numpy()],
                             left_on=["machine", "timestamp"], right_on=["machine", "wall"])
        assert len(outside) == (~fold).sum(), name
    from twin.fit import fit_scenario

    same = ["machine type", "fault mode", "time", "events", "censored", "family"]
    a, b = fit_scenario(twin, sc)[1], fit_scenario(read_log(tmp_path / "by machine.csv", zone), sc)[1]
    pd.testing.assert_frame_equal(a[same], b[same])
    np.testing.assert_allclose(b["mean [h]"], a["mean [h]"], rtol=0.01)
    # the run's stops as a stop list with UTC offsets, with ends or durations (a stop list is too sparse to tell
    # the passes of a local time apart): the fit of the twin's own
    stops = _stop_list(twin.assign(timestamp=real))
    wall = {c: stops[c].dt.tz_convert(zone).map(lambda t: t.isoformat()) for c in ("start", "end")}
    stops.assign(**wall).to_csv(tmp_path / "stops.csv", index=False)
    stops.assign(start=wall["start"], duration=(stops.end - stops.start).dt.total_seconds() / 60).drop(
        columns="end").to_csv(tmp_path / "durations.csv", index=False)
    listed, timed = read_log(tmp_path / "stops.csv", zone), read_log(tmp_path / "durations.csv", zone)
    pd.testing.assert_frame_equal(listed.drop(columns="timestamp"), timed.drop(columns="timestamp"))
    assert (listed.timestamp - timed.timestamp).abs().max() < pd.Timedelta(milliseconds=1)  # minutes as CSV text
    own = _stop_list(twin)
    pd.testing.assert_frame_equal(fit_scenario(listed, sc)[1][same],
                                  fit_scenario(stops_log(own, "twin"), sc)[1][same])


def test_part_and_buffer_logs_say_what_their_reading_left_out_or_chose(tmp_path: Path) -> None:
    """A part log or buffer-level log under a report's title, or in local time across autumn's repeated hour, is read
    as the status log is, and says so as it does (the title was left out silently, the hour's passes unsaid)."""
    from twin.fit import read_energy, read_levels

    f = tmp_path / "teile.csv"
    f.write_text("Teilezähler Linie 1\n\ntimestamp,machine\n" + "".join(
        f"2026-10-25T0{h}:{m:02d}:00,press-1\n" for h, m in [(1, 50), (2, 10), (2, 40), (2, 5), (2, 35), (3, 5)]))
    parts = read_parts(f, "Europe/Berlin")
    assert parts.timestamp.is_monotonic_increasing and len(parts) == 6
    assert parts.attrs["notes"] == [
        "teile.csv: its first 2 lines ('Teilezähler Linie 1', …) lie above the table's header row, a report's title: "
        "left out",
        "teile.csv: 4 rows lie in the hour the clock was set back (2026-10-25 02:00-03:00, twice): 2 read as its "
        "second pass, as the times stepping back into it tell"]
    f.write_text("Puffer\n\ntimestamp,station,level\n2026-01-05T06:00,press-2,3\n2026-01-05T07:00,press-2,4\n")
    assert read_levels(f).attrs["notes"][0].startswith("teile.csv: its first 2 lines ('Puffer', …)")
    f.write_text("Energie\n\ntimestamp,machine,energy\n2026-01-05T06:00,press-1,3\n2026-01-05T07:00,press-1,4\n")
    assert read_energy(f).attrs["notes"][0].startswith("teile.csv: its first 2 lines ('Energie', …)")


def test_a_stop_across_autumns_repeated_hour_ends_after_it_starts(tmp_path: Path) -> None:
    """A stop from the first pass of the repeated hour into the second (02:40 to 02:20 on the wall clock) was refused
    as ending before it starts; given with its duration (40 min) it ended at 03:20, an hour after the real end."""
    f = tmp_path / "stops.csv"
    f.write_text("start,end,machine,reason\n2026-10-25T01:50:00,2026-10-25T02:10:00,press-1,trip\n"
                 "2026-10-25T02:40:00,2026-10-25T02:20:00,press-1,trip\n"
                 "2026-10-25T02:30:00,2026-10-25T03:10:00,press-1,trip\n")  # the third starts in the second pass
    expected = ["01:50", "02:05", "02:20", "02:40", "02:45", "03:10"]
    log = read_log(f, "Europe/Berlin")
    assert log.timestamp.dt.strftime("%H:%M").tolist() == expected and log.state.tolist() == ["down", "working"] * 3
    assert log.attrs["notes"] == [  # the first stop's end could be 02:10 of either pass: said
        "stops.csv: column start: 2 rows lie in the hour the clock was set back (2026-10-25 02:00-03:00, twice): 1 "
        "read as its second pass, as the times stepping back into it tell",
        "stops.csv: column end: 2 rows lie in the hour the clock was set back (2026-10-25 02:00-03:00, twice): 1 read "
        "as its second pass, as the times stepping back into it tell; 1 that could be either pass read as the first "
        "(up to an hour early): times with their UTC offset tell them"]
    f.write_text("start,duration,machine,reason\n2026-10-25T01:50:00,20,press-1,trip\n"
                 "2026-10-25T02:40:00,40,press-1,trip\n2026-10-25T02:30:00,40,press-1,trip\n")
    assert read_log(f, "Europe/Berlin").timestamp.dt.strftime("%H:%M").tolist() == expected
    assert read_log(f, "UTC").timestamp.dt.strftime("%H:%M").tolist() == ["01:50", "02:10", "02:30", "03:20"]


def test_route_shares_are_fitted_from_the_parts_each_way_made() -> None:
    """A plant's part log says how often inspection sends a part to rework: 20 % where the engineered line assumed
    5 %, the rest to packing, whose parts go on to labelling 30 % of the time, else out of the line. Rework is fed by
    inspection alone, so its share is its parts over theirs; the exit is not counted, so packing's share to labelling
    is labelling's parts over packing's good parts, and the exit takes the rest. A station whose ways cannot be told
    apart by counting (a merge) keeps the engineered shares, and says why."""
    from tests.helpers import const, exp, scenario
    from twin.fit import fit_scenario

    def line(rework: float, label: float) -> Any:
        return scenario([{"name": "cut", "cycle_time": exp(50)},
                         {"name": "inspect", "cycle_time": const(20), "buffer": 10,
                          "next": [{"to": "rework", "p": rework}, {"to": "pack", "p": 1 - rework}]},
                         {"name": "rework", "cycle_time": const(60), "buffer": 10, "next": "inspect"},
                         {"name": "pack", "cycle_time": const(30), "buffer": 10,
                          "next": [{"to": "label", "p": label}, {"to": "exit", "p": 1 - label}]},
                         {"name": "label", "cycle_time": const(30), "buffer": 10, "next": "exit"}],
                        duration="3 d", seed=5)

    def made(run: Any) -> pd.DataFrame:  # every machine's own parts (not the line's output at the last one listed)
        return pd.concat(pd.DataFrame({"timestamp": pd.Timestamp(run.line.scenario.start) + pd.to_timedelta(
            np.frombuffer(m.log.finished), unit="s"), "machine": m.name}) for m in run.line.machines)

    run, log, _ = _plant_logs(line(0.2, 0.3))
    fitted, table = fit_scenario(log, line(0.05, 0.5), parts=made(run))
    shares = {st.name: [r.p for r in st.routes()] for st in fitted.stations if len(st.routes()) > 1}
    assert shares["inspect"] == pytest.approx([0.2, 0.8], abs=0.02)
    assert shares["pack"] == pytest.approx([0.3, 0.7], abs=0.02)
    rows = table[table.time == "routes"].set_index("machine type")
    assert rows.loc["station inspect", "parameters"].startswith("rework 0.2") and "(was 0.05)" in \
        rows.loc["station inspect", "parameters"]
    assert rows.loc["station pack", "events"] > 4000
    spec = line(0.05, 0.5).model_dump(by_alias=True)
    spec["stations"][3]["scrap"] = 0.02  # packing scraps: whether the log counts its scrap, the exit's share hangs on
    table = fit_scenario(log, Scenario.model_validate(spec), parts=made(run))[1]
    assert "but it scraps parts" in table[table.time == "routes"].set_index("machine type").loc["station pack",
                                                                                                  "family"]
    # unless the log gives each part's result: then packing's good parts are what its ways share (and its scrap fits)
    truth = line(0.2, 0.3).model_dump(by_alias=True)
    truth["stations"][3]["scrap"] = 0.1
    run, log, _ = _plant_logs(Scenario.model_validate(truth))
    judged = _judged_parts(run)
    fitted = fit_scenario(log, Scenario.model_validate(spec), parts=judged.assign(scrap=judged.result == "scrap"))[0]
    assert [r.p for r in fitted.stations[3].routes()] == pytest.approx([0.3, 0.7], abs=0.02)
    assert fitted.stations[3].scrap == pytest.approx(0.1, abs=0.02)
    # a merge: inspection sends to rework and to packing, which rework feeds too: rework's share is still its parts
    # over inspection's; one more way out (the exit) and two ways lead where other parts go: nothing to count apart
    def merged(shares: list[float]) -> Scenario:
        spec = line(0.05, 0.5).model_dump(by_alias=True)
        spec["stations"][1]["next"] = [{"to": t, "p": x} for t, x in zip(["rework", "pack", "exit"], shares)]
        spec["stations"][2]["next"] = "pack"
        return Scenario.model_validate(spec)

    run, log, _ = _plant_logs(merged([0.5, 0.5]))
    fitted = fit_scenario(log, merged([0.1, 0.9]), parts=made(run))[0]
    assert [r.p for r in fitted.stations[1].routes()] == pytest.approx([0.5, 0.5], abs=0.03)
    run, log, _ = _plant_logs(merged([0.3, 0.3, 0.4]))
    kept, table = fit_scenario(log, merged([0.2, 0.2, 0.6]), parts=made(run))
    assert [r.p for r in kept.stations[1].routes()] == [0.2, 0.2, 0.6]
    assert "kept (more than one way leads where other parts go too" in \
        table[table.time == "routes"].set_index("machine type").loc["station inspect", "family"]


@settings(max_examples=60, deadline=None)
@example(counts=[0, 160, 1, 159, 0], scrap=0.0, to_exit=True)  # 1/160 and 159/160 rounded up past 1 together
@given(counts=st.lists(st.integers(0, 400), min_size=5, max_size=5), scrap=st.sampled_from([0.0, 0.1]),
       to_exit=st.booleans())
def test_fuzzed_part_counts_give_route_shares_that_add_up_or_keep_the_base(counts: list[int], scrap: float,
                                                                             to_exit: bool) -> None:
    """Whatever the parts counted at each station (none, a few, more downstream than upstream), the fitted routes
    are shares from 0 to 1 adding up to 1, and the scenario they make is valid; or the base's are kept."""
    from tests.helpers import const, scenario
    from twin.fit import fit_routes

    ways = [{"to": "rework", "p": 0.1}, {"to": "pack", "p": 0.9}] + ([{"to": "exit", "p": 0.0}] if to_exit else [])
    base = scenario([{"name": "cut", "cycle_time": const(50)},
                     {"name": "inspect", "cycle_time": const(20), "buffer": 5, "next": ways, "scrap": scrap},
                     {"name": "rework", "cycle_time": const(60), "buffer": 5, "next": "inspect"},
                     {"name": "pack", "cycle_time": const(30), "buffer": 5,
                      "next": [{"to": "label", "p": 0.5}, {"to": "exit", "p": 0.5}]},
                     {"name": "label", "cycle_time": const(30), "buffer": 5, "next": "exit"}])
    parts = pd.DataFrame({"timestamp": pd.Timestamp("2026-01-05"),
                          "machine": np.repeat(["cut", "inspect", "rework", "pack", "label"], counts)})
    stations = list(base.stations)
    rows = fit_routes(parts, stations, base)
    fitted = Scenario.model_validate(base.model_copy(update={"stations": stations}).model_dump(by_alias=True))
    assert len(rows) == 2
    for st_ in fitted.stations:
        shares = [r.p for r in st_.routes() if r.p is not None]
        if len(shares) > 1:
            assert all(0 <= x <= 1 for x in shares) and sum(shares) == pytest.approx(1, abs=1e-9)


def _product_parts(run: Any, station: str, names: list[str]) -> pd.DataFrame:
    """A mixed line's part log of one station as an MES writes it: a row per part each machine finished, with its
    product (by material number) and result."""
    start = pd.Timestamp(run.line.scenario.start)
    rows = []
    for m in run.line.machines:
        if m.station.name != station:
            continue
        good, bad = np.frombuffer(m.log.finished), np.frombuffer(m.log.scrapped)
        t = np.concatenate([good, bad])
        order = np.argsort(t, kind="stable")
        made = np.frombuffer(m.log.begun_product, dtype=np.int8)[:len(t)]  # one at a time: in the order begun
        rows.append(pd.DataFrame({"timestamp": start + pd.to_timedelta(t[order], unit="s"), "machine": m.name,
                                  "product": [names[k] for k in made],
                                  "result": np.where(np.arange(len(t))[order] < len(good), "OK", "NOK")}))
    return pd.concat(rows, ignore_index=True)


@pytest.mark.slow
def test_a_mixed_lines_cycles_and_scrap_per_product_from_a_part_log_naming_each_parts_product(tmp_path: Path) -> None:
    """A filler whose juice bottles take twice the time of the others and scrap twice as often (`cycle_times`,
    `scrap_by_product`): the fit kept both as engineered. From a part log naming each part's product (as material
    numbers, mapped with --products), each product's cycle and scrap are fitted from its own parts, the others' from
    theirs, and its setups per product pair (`setup_matrix`) from the products before and after each."""
    from twin.app.cmd_plant import _file_parts
    from twin.app.runner import simulate
    from twin.fit import fit_scenario

    sc = load_scenario(ROOT / "scenarios" / "packaging.yaml", {"duration": "3 d", "warmup": 0})
    data = sc.model_dump(by_alias=True)  # its seals' wear raises no scrap here (a share over the log would fold it in)
    for mode in data["machine_types"]["filler"]["fault_modes"]:
        mode["scrap_increase"] = 0.0
    sc = Scenario.model_validate(data)
    run = simulate(sc, 0, sensors=False)
    log = status_log(run)
    names = [p.name for p in sc.products]
    material = {"still-05": "4711", "sparkling-05": "4712", "juice-10": "4713"}
    made = _product_parts(run, "filler", names)
    made.assign(product=made["product"].map(material)).to_csv(tmp_path / "parts.csv", index=False)
    fmt = LogFormat(products={v: k for k, v in material.items()})
    parts = _file_parts(read_parts(tmp_path / "parts.csv", "UTC", fmt, names))
    assert set(parts["product"]) == set(names)
    data = sc.model_dump(by_alias=True)
    half_hour = {"dist": "constant", "value": 1800.0}
    data["stations"] = [{**st, "cycle_time": {"dist": "constant", "value": 1.5}, "scrap": 0.02,
                         "cycle_times": {"juice-10": {"dist": "constant", "value": 3.0}},
                         "scrap_by_product": {"juice-10": 0.05},
                         "setup_matrix": {"still-05": {"sparkling-05": half_hour}}} if st["name"] == "filler" else st
                        for st in data["stations"]]
    wrong = Scenario.model_validate(data)
    fitted, table = fit_scenario(log, wrong, parts)
    filler = next(st for st in fitted.stations if st.name == "filler")
    assert filler.cycle_times["juice-10"].mean == pytest.approx(2.0, rel=0.03)  # uniform 1.9-2.1 s
    assert filler.cycle_time.mean == pytest.approx(1.0, rel=0.03)  # 0.95-1.05 s
    juice = made[made["product"] == "juice-10"]
    assert filler.scrap_by_product["juice-10"] == pytest.approx((juice.result == "NOK").mean(), abs=1e-6)
    others = made[made["product"] != "juice-10"]
    assert filler.scrap == pytest.approx((others.result == "NOK").mean(), abs=1e-6)
    assert 0.001 < filler.scrap < 0.004 and len(juice) > 5000
    rows = table[table["machine type"] == "station filler"]
    assert {"juice-10", "other products"} <= set(rows["fault mode"])
    assert fitted.machine_types["filler"].minor_stops is None  # its 2 s juice cycles are no 1 s stops of a 1 s cycle
    # its setups per product pair (the product before and after each): 10 min, 35-45-70 and 60-80-120 min triangles
    matrix = filler.setup_matrix
    assert matrix["still-05"]["sparkling-05"].mean == pytest.approx(600, rel=0.01)
    assert matrix["sparkling-05"]["juice-10"].mean == pytest.approx(50 * 60, rel=0.2)  # pairs the base said need none
    assert matrix["juice-10"]["still-05"].mean == pytest.approx(86.7 * 60, rel=0.2)
    assert {"still-05 → sparkling-05", "juice-10 → still-05"} <= set(table["fault mode"])


def test_a_part_logs_products_are_the_lines_or_mapped_and_others_are_named(tmp_path: Path) -> None:
    """A part log's `product` column: the line's names, or the plant's mapped with --products (a material number a
    blank cell made a float read as the number); a product the line does not make is named by its row."""
    names = ["still-05", "sparkling-05", "juice-10"]
    (tmp_path / "p.csv").write_text("timestamp,machine,product\n2026-01-05T06:00:01,filler,4713\n"
                                    "2026-01-05T06:00:02,filler,juice-10\n2026-01-05T06:00:03,filler,\n")
    fmt = LogFormat(products={"4713": "juice-10"})
    with pytest.raises(LogError, match=r"p.csv: row 4, column product: \(empty\) is not a product of the line"):
        read_parts(tmp_path / "p.csv", "UTC", fmt, names)
    (tmp_path / "p.csv").write_text("timestamp,machine,product,result\n2026-01-05T06:00:01,filler,4713,OK\n"
                                    "2026-01-05T06:00:02,filler,juice-10,\n")
    with pytest.raises(LogError, match="column result"):  # a part's result: still one of the words
        read_parts(tmp_path / "p.csv", "UTC", fmt, names)
    (tmp_path / "p.csv").write_text("timestamp,machine,product\n2026-01-05T06:00:01,filler,4713\n"
                                    "2026-01-05T06:00:02,filler,juice-10\n")
    assert read_parts(tmp_path / "p.csv", "UTC", fmt, names)["product"].tolist() == ["juice-10", "juice-10"]
    assert "product" not in read_parts(tmp_path / "p.csv", "UTC", fmt)  # a line of one kind of part: not told apart
    (tmp_path / "odd.csv").write_text("timestamp,machine,product\n2026-01-05T06:00:01,filler,9999\n")
    with pytest.raises(LogError, match=r"odd.csv: row 2, column product: '9999' is not a product of the line "
                                       r"\(still-05, sparkling-05, juice-10\); .* --products '9999=still-05'"):
        read_parts(tmp_path / "odd.csv", "UTC", fmt, names)
    assert_mistakes(["fit", str(_STATUS), "--base", str(ROOT / "scenarios" / "packaging.yaml"), "--out",
                     str(tmp_path / "f.yaml")], [
        (["--products", "4711=beer"], "--products: '4711=beer': 'beer' is not a product of the base scenario; use "
                                      "still-05, sparkling-05, juice-10"),
        (["--parts", str(tmp_path / "odd.csv")], "column product: '9999' is not a product of the line")])


def test_a_cycle_steadier_than_a_scenario_can_hold_as_a_gamma_fits_another_law() -> None:
    """A filler's cycle of 1 s ± 3 % fitted a gamma of shape 1,200, beyond the 1,000 a scenario holds: `twin fit`
    ended in a traceback writing the fitted scenario. The next family by AIC is taken (every law fitted is one a
    scenario can hold); a Weibull life steadier than shape 100 likewise."""
    from pydantic import TypeAdapter

    from twin.distributions import Distribution
    from twin.fit import fit_cycle

    rng = np.random.default_rng(3)
    steady = rng.gamma(1500, 1 / 1500, 5000)  # a gamma itself, of a shape beyond the scenario's 1,000
    f = fit_cycle(steady)
    assert f.family != "gamma" and f.mean == pytest.approx(1.0, rel=0.01)
    TypeAdapter(Distribution).validate_python(f.spec)
    lives = rng.weibull(150, 400) * 3600  # wear-out after an hour, to the minute
    g = fit_times(lives, np.empty(0))
    TypeAdapter(Distribution).validate_python(g.spec)
    assert g.mean == pytest.approx(3600, rel=0.01)


_MIXED_LOG = pd.DataFrame({"timestamp": pd.to_datetime(["2026-01-05 06:00", "2026-01-05 09:00", "2026-01-05 09:01",
                                                        "2026-01-05 15:00", "2026-01-05 15:02", "2026-01-05 22:00"]),
                           "machine": "a", "state": ["working", "setup", "working", "setup", "working", "off_shift"],
                           "reason": ""})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_DAY, st.sampled_from(["p1", "p2", "7", "x", "", " p1 ", "7.0"]),
                          st.sampled_from(["OK", "NOK", "", "maybe"])), min_size=1, max_size=200), st.booleans())
def test_any_mixed_lines_part_log_is_fitted_per_product_or_refused_clearly(tmp_path: Path,
                                                                           parts: list[tuple[object, ...]],
                                                                           results: bool) -> None:
    """A mixed line's part log with each part's product (the line's names, a material number mapped with
    --products, or anything) is fitted per product (cycles, scrap, setups per pair: a scenario that validates) or
    refused naming the file, never a traceback."""
    from tests.helpers import const, scenario
    from twin.fit import fit_scenario

    sc = scenario([{"name": "a", "cycle_time": const(10), "cycle_times": {"p2": const(20)}, "scrap": 0.01,
                    "scrap_by_product": {"p2": 0.02}, "setup_matrix": {"p1": {"p2": const(60)}}}],
                  products=[{"name": "p1"}, {"name": "p2"}], start="2026-01-05T06:00:00", duration="1 d")
    f = tmp_path / "parts.csv"
    table = pd.DataFrame(sorted(parts, key=lambda r: r[0]), columns=["timestamp", "product", "result"])
    table.insert(1, "machine", "a")
    table.drop(columns=[] if results else ["result"]).to_csv(f, index=False)
    try:
        made = read_parts(f, "UTC", LogFormat(products={"7": "p2"}), ["p1", "p2"])
    except LogError as e:
        assert "parts.csv" in str(e), e
        return
    fitted, _ = fit_scenario(_MIXED_LOG, sc, made)
    Scenario.model_validate(fitted.model_dump(by_alias=True))
    assert set(fitted.stations[0].cycle_times) == {"p2"} and 0 <= fitted.stations[0].scrap <= 1


def test_a_random_mix_is_fitted_from_the_products_the_line_took_in_and_a_release_plan_kept() -> None:
    """A line releasing a random mix by the products' shares: each share from the parts its first station made (2 of
    p1 to 1 of p2 where the base said 1 to 1); a release plan (campaigns) is the line's schedule and kept."""
    from tests.helpers import const, scenario
    from twin.fit import fit_scenario

    sc = scenario([{"name": "a", "cycle_time": const(10)}, {"name": "b", "cycle_time": const(5)}],
                  products=[{"name": "p1"}, {"name": "p2"}], start="2026-01-05T06:00:00", duration="1 d")
    t = pd.Timestamp("2026-01-05 06:00") + pd.to_timedelta(np.arange(300) * 10.0, unit="s")
    made = pd.DataFrame({"timestamp": t, "machine": "a", "product": np.where(np.arange(300) % 3 < 2, "p1", "p2")})
    later = made.assign(machine="b", product="p2")  # what later stations made does not count: only what came in
    fitted, table = fit_scenario(_MIXED_LOG, sc, pd.concat([made, later], ignore_index=True))
    assert [p.share for p in fitted.products] == pytest.approx([2 / 3, 1 / 3], abs=1e-5)
    assert "p1 66.7% (was 50.0%)" in table[table.time == "product mix"].parameters.iloc[0]
    planned = Scenario.model_validate({**sc.model_dump(by_alias=True), "release": [{"product": "p1", "parts": 50},
                                                                                  {"product": "p2", "parts": 50}]})
    kept, table = fit_scenario(_MIXED_LOG, planned, made)
    assert kept.release == planned.release and table[table.time == "product mix"].family.iloc[0].startswith("kept")


@pytest.mark.slow
def test_a_stores_product_records_tell_each_setups_product_pair(tmp_path: Path) -> None:
    """`twin fit duckdb://…` of a mixed line kept its setups per product pair as engineered: the store's state
    records show setups, not which products they were between. Its product records (a plant's recipes mapped by
    `twin connect`, or a twin's own run) tell the pair: each product change is the first part after the setup."""
    import yaml

    sc = load_scenario(ROOT / "scenarios" / "packaging.yaml", {"duration": "3 d", "warmup": 0, "replications": 1})
    data = sc.model_dump(mode="json", by_alias=True, exclude_none=True)
    (tmp_path / "line.yaml").write_text(yaml.safe_dump(data))
    r = subprocess.run(twin_cmd("run", tmp_path / "line.yaml", "--no-stream", "--out", tmp_path / "run"), cwd=ROOT,
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "LINETWIN_HOME": str(tmp_path / "home")})
    assert r.returncode == 0, r.stderr[-3000:]
    half_hour = {"dist": "constant", "value": 1800.0}
    data["stations"] = [{**st, "setup_matrix": {"still-05": {"sparkling-05": half_hour}}} if st["name"] == "filler"
                        else st for st in data["stations"]]
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump(data))
    r = subprocess.run(twin_cmd("fit", f"duckdb:///{tmp_path / 'run' / 'twin.duckdb'}", "--base",
                                tmp_path / "wrong.yaml", "--out", tmp_path / "fitted.yaml"), cwd=ROOT,
                       capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "250"})
    assert r.returncode == 0, r.stderr[-3000:]
    filler = next(st for st in load_scenario(tmp_path / "fitted.yaml").stations if st.name == "filler")
    matrix = filler.setup_matrix  # 10 min, 35-45-70 and 60-80-120 min triangles, as the run drew them
    assert matrix["still-05"]["sparkling-05"].mean == pytest.approx(600, rel=0.01)
    assert matrix["sparkling-05"]["juice-10"].mean == pytest.approx(50 * 60, rel=0.2)  # pairs the base said need none
    assert matrix["juice-10"]["still-05"].mean == pytest.approx(86.7 * 60, rel=0.2)
