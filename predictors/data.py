"""Run-to-failure datasets: unit time series with sensor features and the true time to each failure.

Two sources give the same `RunToFailure`: a twin run (its store, read through the query API, plus its
ground-truth events) and external tables (a plant's historian export or a public benchmark: CSV, Parquet
or whitespace-separated text, each unit's last row its failure, optionally a test set cut off early with
its true RUL in a separate file). Everything downstream (preprocessing, models, metrics) sees only this.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predictors.alerts import RUNNING, MachineStatus
from sensors.store import Store, open_store
from sensors.store.ledger import RunFolderError, read_run
from twin.tables import (
    ENCODINGS,
    PARQUET,
    UTC_OFFSET,
    decimal_comma_hint,
    decimal_commas,
    read_frame,
    read_notes,
    title_hint,
)

STEP = 60.0  # seconds per row of a twin dataset: readings are averaged per minute
FEW_FAILURES = 10  # failures of a fault mode below which forecasts of it are rough (`twin train` warns)
MIN_ALERT_FAILURES = 3  # failures of a fault mode below which its forecasts raise no alerts (nothing to learn from)
UNIT_COLUMNS = ("unit", "time")


class DataError(Exception):
    """Input data the user must fix; the message names the file, the column and the fix."""


@dataclass
class RunToFailure:
    """Rows (unit, time, features) and, per row and predictable fault mode, the time to that mode's failure.

    `ttf[i, m]` is the time from row i to the failure of mode m ending the current life (inf when that life
    ends without a failure: maintenance or end of data); `observed[i, m]` is how long after row i that life
    was watched, so a target beyond it is unknown (censored). A twin run's frame also holds each row's
    machine `status` (running, off shift, or down or in maintenance), which the alert rule needs, and
    whether the machine `ran` throughout the row's minute.
    """

    frame: pd.DataFrame
    features: list[str]
    modes: list[str]
    ttf: np.ndarray
    observed: np.ndarray
    step: float
    time_unit: str = "s"
    group: str = "all"
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["unit", "time", "fault_mode"]))
    sources: list[str] = field(default_factory=list)
    cut_off: bool = False  # test protocol: units end before failure; score only each unit's last row
    sensor_units: dict[str, str] = field(default_factory=dict)  # feature -> its unit, where the data says (twin runs)
    notes: list[str] = field(default_factory=list)  # what reading a table left out or chose (a title, a sheet)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def units(self) -> np.ndarray:
        return self.frame["unit"].to_numpy()

    def rul(self, cap: float) -> tuple[np.ndarray, np.ndarray]:
        """Capped time to the next failure of any mode, and whether it is known (not censored)."""
        ttf = np.min(self.ttf, axis=1) if self.modes else np.full(len(self), np.inf)
        censored = np.where(np.isinf(self.ttf), self.observed, np.inf)
        seen = np.min(censored, axis=1) if self.modes else np.zeros(len(self))
        # exact if a failure comes before any censoring; else known only when the watch outlasts the cap
        exact = ttf <= seen
        target = np.minimum(np.where(exact, ttf, seen), cap)
        return target, exact | (seen >= cap)

    def within(self, horizon: float) -> tuple[np.ndarray, np.ndarray]:
        """Per mode: 1 if that mode fails within the horizon, and whether that is known."""
        label = (self.ttf <= horizon).astype(np.float32)
        known = (self.ttf <= horizon) | (np.isfinite(self.ttf)) | (self.observed >= horizon)
        return label, known

    def failures_per_mode(self) -> pd.Series:
        """How many failures of each predictable fault mode the data hold (0 for a mode never seen failing)."""
        return self.failures.fault_mode.value_counts().reindex(self.modes, fill_value=0)

    def modes_to_alert(self) -> list[str]:
        """The fault modes seen failing at least MIN_ALERT_FAILURES times: a model trained on these data forecasts
        the others too (their probabilities are shown) but raises no alerts for them, since a mode seen failing
        once or twice leaves nothing to generalise from (bench/predict.py: the CNC cell's bench stations, trained
        on 2 failures, raised 12 alerts on held-out runs, 9 of them false)."""
        return [m for m, n in self.failures_per_mode().items() if n >= MIN_ALERT_FAILURES]

    def subset(self, units: Sequence[str]) -> RunToFailure:
        """The rows of some units (splits are by unit, never by row)."""
        mask = self.frame["unit"].isin(units).to_numpy()
        return RunToFailure(self.frame[mask].reset_index(drop=True), self.features, self.modes, self.ttf[mask],
                            self.observed[mask], self.step, self.time_unit, self.group,
                            self.failures[self.failures.unit.isin(units)].reset_index(drop=True), self.sources,
                            self.cut_off, self.sensor_units)

    def unit_fingerprints(self) -> dict[str, str]:
        """Per unit: a short hash of its rows (every column but the unit's id), so the same records under another
        unit number are still recognised (an evaluation on training data)."""
        cols = [c for c in self.frame.columns if c != "unit"]
        out = {}
        for unit, g in self.frame.groupby("unit", sort=False):
            h = hashlib.sha256(pd.util.hash_pandas_object(g[cols], index=False).to_numpy().tobytes())
            out[str(unit)] = h.hexdigest()[:16]
        return out

    def fingerprint(self) -> str:
        """A short hash of the data, stored with every model trained on it."""
        h = hashlib.sha256()
        h.update(pd.util.hash_pandas_object(self.frame, index=False).to_numpy().tobytes())
        h.update(np.nan_to_num(self.ttf, posinf=-1).tobytes())
        return h.hexdigest()[:16]


def concat(datasets: Sequence[RunToFailure]) -> RunToFailure:
    """Several datasets of the same features and modes as one."""
    first = datasets[0]
    for d in datasets[1:]:
        if d.features != first.features or d.modes != first.modes:
            raise DataError(f"cannot pool data with features {d.features} / modes {d.modes} with "
                            f"{first.features} / {first.modes}; train one model per machine type")
    units: dict[str, str] = {}
    for d in datasets:
        for sensor, unit in d.sensor_units.items():
            if units.setdefault(sensor, unit) != unit:
                raise DataError(f"cannot pool data whose sensor {sensor!r} is in {units[sensor]} in one source and in "
                                f"{unit} in another ({', '.join(d.sources)}); convert it to one unit first")
    return RunToFailure(pd.concat([d.frame for d in datasets], ignore_index=True), first.features, first.modes,
                        np.concatenate([d.ttf for d in datasets]), np.concatenate([d.observed for d in datasets]),
                        first.step, first.time_unit, first.group,
                        pd.concat([d.failures for d in datasets], ignore_index=True),
                        [s for d in datasets for s in d.sources], first.cut_off, units,
                        [n for d in datasets for n in d.notes])


# --- twin runs -------------------------------------------------------------------------------------

@dataclass
class TwinRun:
    """A finished twin run folder: its metadata, ground-truth events and where its readings are stored."""

    path: Path
    run_id: str
    store_url: str
    start: pd.Timestamp
    machine_types: dict[str, str]
    modes: dict[str, list[str]]
    events: pd.DataFrame

    @classmethod
    def open(cls, path: Path, store_url: str | None = None) -> TwinRun:
        try:
            run = read_run(path)
        except RunFolderError as e:
            raise DataError(str(e)) from None
        try:
            events = pd.read_parquet(path / "truth" / "events.parquet")
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not a finished twin run folder ({e}); give a folder written by "
                            "`twin run` (it holds run.json and truth/events.parquet)") from None
        if not run.run_id or not (store_url or run.store):
            raise DataError(f"{path / 'run.json'}: the run has no store (it was run before readings were stored); "
                            "run the scenario again with `twin run` (streamed or --no-stream)")
        sc = run.scenario
        types = sc.type_names()
        modes = {name: [f.name for f in mt.fault_modes if f.kind == "wear"] for name, mt in sc.machine_types.items()}
        return cls(path, run.run_id, store_url or run.store, pd.Timestamp(sc.start).tz_localize(None),
                   types, modes, events)


def twin_frame(store: Store, run_id: str, start: pd.Timestamp, machines: Sequence[str],
               sensors: Sequence[str] | None = None, step: float = STEP, replications: Sequence[int] | None = None,
               since: pd.Timestamp | None = None, until: pd.Timestamp | None = None) -> pd.DataFrame:
    """Per-minute means of the machines' sensors from the store: rows (replication, machine, t), a column a sensor;
    of some `replications` and the time range [since, until) only, when given (a dashboard's forecasts).

    Every minute of each machine's span gets a row; minutes without readings (dropouts) hold NaN. Asked one machine at
    a time, so that memory holds one machine's means a row per sensor and minute at most, beside the wide rows made
    so far: all at once, a month of body_shop's six weld cells took 1.3 million rows of those (a year, 16 million).
    """
    parts = []
    for one in sorted(set(machines)):
        raw = store.query(since, until, machines=[one], sensors=list(sensors) if sensors else None, run=run_id,
                          every=f"{int(step)}s", agg="mean", replications=replications)
        if raw.empty:
            continue
        raw["t"] = (pd.to_datetime(raw["ts"]) - start).dt.total_seconds()
        wide = raw.pivot_table(index=["replication", "machine", "t"], columns="sensor", values="value",
                               aggfunc="mean")
        del raw
        for (rep, machine), g in wide.groupby(level=[0, 1], sort=True):
            t = g.index.get_level_values(2).to_numpy()
            grid = np.arange(t.min(), t.max() + step / 2, step)
            g = g.droplevel([0, 1]).reindex(grid)
            parts.append(g.assign(replication=rep, machine=machine).rename_axis("t").reset_index())
    if not parts:
        return pd.DataFrame(columns=["replication", "machine", "t"])
    frame = pd.concat(parts, ignore_index=True).sort_values(["replication", "machine", "t"], kind="stable",
                                                            ignore_index=True)
    frame.columns.name = None
    keys = ["t", "replication", "machine"]  # in the order one pivot of every machine gave them
    return frame[["t", *sorted(c for c in frame.columns if c not in keys), "replication", "machine"]]


def _lives(events: pd.DataFrame, machine: str, mode: str, end: float) -> list[tuple[float, float, bool]]:
    """(start, end, ended in failure) of each life of one fault mode of one machine."""
    ev = events[events.machine == machine]
    fails = ev[(ev.event == "failure") & (ev.fault_mode == mode)].t.to_numpy()
    renew = ev[(ev.event == "repair_end") & (ev.fault_mode == mode)].t.to_numpy()
    censor = ev[ev.event == "maintenance_order"].t.to_numpy()
    maint_end = ev[ev.event == "maintenance_end"].t.to_numpy()
    marks = sorted([(t, "fail") for t in fails] + [(t, "renew") for t in renew] + [(t, "censor") for t in censor]
                   + [(t, "renew") for t in maint_end])
    lives, start, open_ = [], 0.0, True
    for t, kind in marks:
        if kind in ("fail", "censor") and open_:
            lives.append((start, t, kind == "fail"))
            open_ = False
        elif kind == "renew":
            start, open_ = t, True
    if open_:
        lives.append((start, end, False))
    return lives


def targets(t: np.ndarray, lives: list[tuple[float, float, bool]]) -> tuple[np.ndarray, np.ndarray]:
    """Time to failure (inf if the life is censored) and observed time left, at times t, from a mode's lives."""
    ttf, observed = np.full(len(t), np.inf), np.zeros(len(t))
    for start, end, failed in lives:
        inside = (t >= start) & (t < end)
        observed[inside] = end - t[inside]
        if failed:
            ttf[inside] = end - t[inside]
    return ttf, observed


def from_twin_run(path: Path, store_url: str | None = None, step: float = STEP) -> dict[str, RunToFailure]:
    """One dataset per machine type of a twin run: per-minute sensor means from the store, targets from the truth."""
    run = TwinRun.open(path, store_url)
    store = open_store(run.store_url, read_only=True)
    try:
        catalog = store.series(run.run_id)
        states = store.states(run.run_id)
        out = {}
        for mtype in sorted(set(run.machine_types.values())):
            machines = [m for m, t in run.machine_types.items() if t == mtype]
            series = catalog[catalog.machine.isin(machines)]
            sensors = sorted(series.sensor.unique())
            if not sensors:
                continue
            frame = twin_frame(store, run.run_id, run.start, machines, sensors, step)
            if frame.empty:
                raise DataError(f"{path}: the store {run.store_url} holds no readings of run {run.run_id}; "
                                "was the run's ingest finished? (`twin ingest --until-run ...`)")
            frame["status"], frame["ran"] = _status(frame, states, run.start, step, run.modes.get(mtype, []))
            out[mtype] = _with_targets(frame, sensors, run, mtype, step, path)
            out[mtype].sensor_units = {str(k): str(v) for k, v in series.groupby("sensor").unit.first().items()}
    finally:
        store.close()
    return out


def _status(frame: pd.DataFrame, states: pd.DataFrame, start: pd.Timestamp, step: float,
            modes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's machine status (running, off, service) when its minute ended, for the alert rule, which
    forecasts `modes` (a repair for another fault holds an alert), and whether it ran throughout that minute."""
    out = np.full(len(frame), RUNNING, dtype=object)
    ran = np.ones(len(frame), dtype=bool)
    t = frame["t"].to_numpy()
    changes = {key: g for key, g in states.groupby(["replication", "machine"], sort=False)}
    for key, idx in frame.groupby(["replication", "machine"], sort=False).indices.items():
        g = changes.get(key)
        if g is None:
            continue
        status = MachineStatus.of_changes((g.ts - start).dt.total_seconds().to_numpy(), g.state.astype(str).to_numpy(),
                                          g.reason.to_numpy(dtype=object), frozenset(modes))
        out[idx] = status.many(t[idx] + step)
        ran[idx] = status.ran_many(t[idx], t[idx] + step)
    return out, ran


def _with_targets(frame: pd.DataFrame, sensors: list[str], run: TwinRun, mtype: str, step: float,
                  path: Path) -> RunToFailure:
    modes = run.modes.get(mtype, [])
    ttf = np.full((len(frame), len(modes)), np.inf)
    observed = np.zeros((len(frame), len(modes)))
    failures = []
    frame = frame.assign(unit=[f"{run.run_id}/{r}/{m}" for r, m in zip(frame.replication, frame.machine)])
    for (rep, machine), idx in frame.groupby(["replication", "machine"], sort=False).indices.items():
        ev = run.events[run.events.replication == rep] if "replication" in run.events else run.events
        t = frame["t"].to_numpy()[idx]
        end = float(t.max()) + step
        for j, mode in enumerate(modes):
            lives = _lives(ev, machine, mode, end)
            ttf[idx, j], observed[idx, j] = targets(t, lives)
            failures += [(f"{run.run_id}/{rep}/{machine}", e, mode) for _, e, f in lives if f]
    for s in sensors:  # a sensor missing from some machine of the type shows as an empty column
        if s not in frame:
            frame[s] = np.nan
    cols = ["unit", "t", "replication", "machine", "status", "ran", *sensors]
    return RunToFailure(frame[cols].rename(columns={"t": "time"}), list(sensors), modes, ttf, observed, step, "s",
                        mtype, pd.DataFrame(failures, columns=["unit", "time", "fault_mode"]), [str(path)])


def from_twin_runs(paths: Sequence[Path], store_url: str | None = None) -> dict[str, RunToFailure]:
    """Datasets of several runs pooled per machine type."""
    per_type: dict[str, list[RunToFailure]] = {}
    for p in paths:
        for mtype, ds in from_twin_run(Path(p), store_url).items():
            per_type.setdefault(mtype, []).append(ds)
    return {k: concat(v) for k, v in per_type.items()}


# --- external tables -------------------------------------------------------------------------------

def column_name(col: Any, columns: Iterable[Any]) -> Any:
    """A column as named; a position N (an int or its digits) of a table read without a header: its name cN."""
    return f"c{col}" if str(col).isdigit() and f"c{col}" in columns else col


@dataclass
class TableFormat:
    """How to read a run-to-failure table: which columns are the unit id and the time, and their names if
    the file has no header row."""

    unit: str | int = "unit"
    time: str | int = "time"
    columns: list[str] | None = None
    features: list[str] | None = None
    sep: str | None = None
    end: str | int | None = None  # a column whose value at a unit's last row says how it ended (see from_table)
    timezone: str | None = None  # ISO times without an offset are local times there (summer time's hours counted)


#: values of the end column for a unit that did not fail: removed while still working, or still running
NOT_FAILED = frozenset({"", "censored", "running", "replaced", "preventive", "suspended", "removed", "none", "ok",
                        "nan"})


def _refuse_short_rows(path: Path, width: int) -> None:
    """A row of whitespace-separated text with fewer values than the table has columns is a DataError naming its
    line: pandas pads it with missing values at the end, but which value is missing cannot be known (the values
    after the gap would land in the wrong columns), and a file cut off mid-write ends so. Only called when the
    last column has a missing value, so a well-formed file is read once."""
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if 0 < (n := len(line.split())) < width:
                raise DataError(f"{path}, line {number}: {n} values where the table has {width} columns. "
                                "Whitespace-separated text cannot say which value is missing (a truncated or shifted "
                                "row): complete or remove the row, or give the table as CSV with an empty field for "
                                "each missing value")


def _hours(path: Path, column: str, values: pd.Series, zone: str | None = None,
           units: pd.Series | None = None) -> pd.Series:
    """A time column of ISO 8601 times (a plant's records) as hours since the table's first time, times without a UTC
    offset as local times in `zone` where given (the hour autumn's change repeats told apart by each of `units`'s
    rows, twin.clock; the hour spring's skips not counted); a DataError naming the first value that is neither a
    number nor such a time."""
    text = values.astype(str).str.strip()
    stamps = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise DataError(f"{path}: time column {column!r}, row {row + 1} (after any header): {values.iloc[row]!r} is "
                        "neither a number (cycles, hours) nor an ISO 8601 time (2026-01-05T06:00:00); give every row's "
                        "time one way")
    local = ~text.str.contains(UTC_OFFSET, regex=True)
    if zone is not None and local.any():
        from twin.clock import local_clock, real_instants

        wall = stamps[local].dt.tz_localize(None)
        read = local_clock(wall, zone, None if units is None else units[local], ties=True)  # rows at distinct times
        stamps = stamps.where(~local, real_instants(read, zone).reindex(stamps.index))
    return (stamps - stamps.min()).dt.total_seconds() / 3600


def _text(values: pd.Series) -> pd.Series:
    """A column as stripped text, an empty cell as '' (pandas reads it as NaN, and keeps NaN through astype(str))."""
    return values.astype(object).where(values.notna(), "").astype(str).str.strip()


def _refuse_unusable_rows(path: Path, df: pd.DataFrame, unit: Any, time: Any, feats: list[Any],
                          written: pd.Series) -> None:
    """A DataError naming the first row (counted after any header) that cannot be placed in a unit's history: no unit
    id, no finite time, or a time its unit already has (a row recorded twice, or two machines under one id: the
    history's order, and so which row is the failure, would be a guess); or an infinite feature value (an overflow
    or an error code; a missing value is an empty field, filled from the last good one). `written`: the times as the
    file gives them, for the message."""
    def first(mask: np.ndarray) -> int:
        return int(np.flatnonzero(mask)[0])

    where = f"{path}: row {{}} (after any header)"
    if (no_unit := df[unit].isna().to_numpy()).any():
        raise DataError(f"{where.format(first(no_unit) + 1)} has no unit id (column {unit!r}); every row belongs to a "
                        "unit: fill in its machine or engine, or remove the row")
    times = df[time].to_numpy(dtype=float)
    if (bad := ~np.isfinite(times)).any():
        row = first(bad)
        given = "empty" if pd.isna(written.iloc[row]) else written.iloc[row]
        raise DataError(f"{where.format(row + 1)}: time column {time!r} is {given}; every row needs a "
                        "finite time (cycles, hours or an ISO 8601 time): fill it in or remove the row")
    repeated = pd.DataFrame({"u": df[unit].astype(str).to_numpy(), "t": times}).duplicated().to_numpy()
    if repeated.any():
        row = first(repeated)
        u, t = df[unit].iloc[row], written.iloc[row]
        earlier = first((df[unit].astype(str).to_numpy() == str(u)) & (times == times[row]))
        autumn = " (local times without --timezone: autumn's change of clocks repeats an hour)" \
            if isinstance(t, str) and re.search(r"[T ]0?[12]:\d\d(:\d\d(\.\d+)?)?$", t.strip()) else ""
        raise DataError(f"{where.format(row + 1)}: unit {str(u)!r} already has a row at time {t} (row {earlier + 1}); "
                        "a unit's rows need distinct times. A row recorded twice: remove it; two machines under one "
                        f"id: give each its own unit id{autumn}")
    values = df[feats].to_numpy(dtype=float)
    if (inf := np.isinf(values)).any():
        row, col = np.argwhere(inf)[0]
        raise DataError(f"{where.format(row + 1)}: column {feats[col]!r} is {values[row, col]:g}; give a finite "
                        "number, or leave the field empty for a missing value (it is filled from the last good one)")


def read_table(path: Path, fmt: TableFormat) -> tuple[pd.DataFrame, str]:
    """A table as (unit, time, numeric features...) sorted by unit and time, and the time's unit: 'cycles' (numbers
    as they are) or 'h' (ISO 8601 times, as hours since the table's first); any mistake is a DataError."""
    suffix = path.suffix.lower()
    sep = None
    try:
        if suffix in PARQUET:
            df, _ = read_frame(path)
        else:
            header = None if fmt.columns is not None or isinstance(fmt.unit, int) else "infer"
            # a .csv's delimiter found from the file (a ';' export read as one column named 'unit;cycle;...'), other
            # text read as whitespace-separated (the public benchmarks' .txt)
            named = [c for c in (fmt.unit, fmt.time) if isinstance(c, str)]  # a workbook's sheet naming them
            df, sep = read_frame(path, fmt.sep or (None if suffix == ".csv" else r"\s+"), header, named)
            if sep == r"\s+" and df.shape[1] and df.iloc[:, -1].isna().any():
                _refuse_short_rows(path, df.shape[1])
            if fmt.columns is not None:
                if len(fmt.columns) != df.shape[1]:
                    raise DataError(f"{path}: --columns names {len(fmt.columns)} columns but the file has "
                                    f"{df.shape[1]}; name every column, in order")
                df.columns = fmt.columns
            elif header is None:
                df.columns = [f"c{i}" for i in range(df.shape[1])]
    except (OSError, ValueError, pd.errors.ParserError) as e:
        encodings = f" ({ENCODINGS})" if isinstance(e, UnicodeDecodeError) else ""
        raise DataError(f"{path}: cannot read the table ({e}); give CSV or whitespace-separated text{encodings}, an "
                        "Excel workbook (.xlsx) or Parquet") from None
    unit, time, end = (column_name(c, df.columns) for c in (fmt.unit, fmt.time, fmt.end))
    if sep == ";":  # '0,0007' as Excel writes it in most European locales
        decimal_commas(df, [c for c in df.columns if c not in (unit, end)])
    features = [column_name(c, df.columns) for c in fmt.features] if fmt.features else None
    for role, col in (("unit id", unit), ("time", time), *((("end", end),) if end is not None else ())):
        if col not in df:
            raise DataError(f"{path}: no {role} column {col!r}; the columns are {list(map(str, df.columns))}. "
                            f"Name it with --{'unit' if role == 'unit id' else role}-column (a name, or a "
                            f"0-based position for a file without a header).{title_hint(df)}")
    roles = [("the unit id column", unit), ("the time column", time), *((("the end column", end),) if end else ())]
    roles += [("a feature column", c) for c in features or []]
    for i, (role, col) in enumerate(roles):
        if twice := [r for r, c in roles[i + 1:] if c == col and not (role == r == "a feature column")]:
            raise DataError(f"{path}: column {col} is both {role} and {twice[0]}; give each role its own column")
    feats = features or [c for c in df.columns if c not in (unit, time, end)]
    missing = [c for c in feats if c not in df]
    if missing:
        raise DataError(f"{path}: feature columns {missing} are not in the file; the columns are {list(df.columns)}")
    time_unit, written = "cycles", df[time]
    if not pd.api.types.is_numeric_dtype(df[time]):  # a plant's records carry times, not cycle counts
        df[time], time_unit = _hours(path, str(time), df[time], fmt.timezone, df[unit]), "h"
    bad = [c for c in feats if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise DataError(f"{path}: columns {bad} are not numeric; leave them out with --features or fix the file"
                        + decimal_comma_hint(v for c in bad for v in df[c].head(1000)))
    _refuse_unusable_rows(path, df, unit, time, feats, written)
    out = df[[unit, time, *feats]].rename(columns={unit: "unit", time: "time"})
    out["unit"] = out["unit"].astype(str)
    out.columns = ["unit", "time", *map(str, feats)]
    if end is not None:
        out["_end"] = _text(df[end]).to_numpy()
    # units keep the order they first appear in (a RUL file lists them so), rows go by time within each
    first = pd.Categorical(out["unit"], categories=pd.unique(out["unit"]), ordered=True)
    return (out.assign(_u=first).sort_values(["_u", "time"], kind="stable").drop(columns="_u").reset_index(drop=True),
            time_unit)


def from_table(path: Path, fmt: TableFormat, rul: Path | None = None, group: str = "all") -> RunToFailure:
    """A run-to-failure table (each unit's last row its failure), or, with `rul`, a test table whose units
    were cut off early and whose true RUL at the cut is in that file (one per unit, in unit order, or a
    two-column table unit,rul). With an end column (`fmt.end`), a unit's value there at its last row says how it
    ended: a fault mode's name (it failed so), or censored/running/replaced/preventive/... (it did not fail: its
    rows are used, right-censored, and it counts as no failure)."""
    df, time_unit = read_table(path, fmt)
    notes = read_notes(path, df)  # a report's title left out, a sheet after a cover sheet
    if df.empty:
        raise DataError(f"{path}: the table has no rows")
    rows_per_unit = df.groupby("unit", sort=False).size()
    if len(rows_per_unit) > 1 and rows_per_unit.median() < 3:
        raise DataError(f"{path}: {int((rows_per_unit == 1).sum())} of {len(rows_per_unit)} units have a single row "
                        "(median rows per unit: {:g}). That is a table of independent labelled rows (e.g. one row per "
                        "product with a failure flag), not run-to-failure histories: a unit's last row would be "
                        "taken as its failure and every score would be meaningless. Give histories (many rows per "
                        "unit, the unit column naming the machine), or score such a table with a classifier "
                        "outside linetwin; `--unit-column` must name the machine, not the row.".format(
                            float(rows_per_unit.median())))
    if "_end" in df:
        ended = _with_ends(df, path, group, time_unit)
        ended.notes = notes
        return ended
    last = df.groupby("unit", sort=False)["time"].transform("max").to_numpy()
    ttf = last - df["time"].to_numpy()
    if rul is not None:
        extra = _read_rul(rul, df["unit"].drop_duplicates().tolist())
        ttf = ttf + df["unit"].map(extra).to_numpy()
    steps = df.groupby("unit")["time"].diff().dropna()
    step = float(steps.median()) if len(steps) else 1.0
    ends = df.groupby("unit", sort=False)["time"].max()
    failures = pd.DataFrame({"unit": ends.index, "time": ends.to_numpy() + (0 if rul is None else
                                                                              ends.index.map(extra).to_numpy()),
                             "fault_mode": "failure"})
    feats = [c for c in df.columns if c not in UNIT_COLUMNS]
    return RunToFailure(df, feats, ["failure"], ttf[:, None].astype(float), ttf[:, None].astype(float), step,
                        time_unit, group, failures, [str(path)], cut_off=rul is not None, notes=notes)


def _with_ends(df: pd.DataFrame, path: Path, group: str, time_unit: str) -> RunToFailure:
    """A run-to-failure table whose end column names each unit's fault mode, or says it did not fail."""
    ends = df.groupby("unit", sort=False)["_end"].last()
    failed = ends[~ends.str.lower().isin(NOT_FAILED)]
    if failed.empty:
        raise DataError(f"{path}: no unit in the end column failed (all are {', '.join(sorted(set(ends))[:5])}); "
                        "a fault mode's name marks a failure, censored/running/replaced a unit that did not fail")
    modes = sorted(set(failed))
    frame = df.drop(columns="_end")
    last = frame.groupby("unit", sort=False)["time"].transform("max").to_numpy()
    left = last - frame["time"].to_numpy()
    end_of = frame["unit"].map(ends).to_numpy()
    ttf = np.full((len(frame), len(modes)), np.inf)
    for j, m in enumerate(modes):
        ttf[end_of == m, j] = left[end_of == m]
    observed = np.repeat(left[:, None], len(modes), axis=1)
    steps = frame.groupby("unit")["time"].diff().dropna()
    step = float(steps.median()) if len(steps) else 1.0
    last_time = frame.groupby("unit", sort=False)["time"].max()
    failures = pd.DataFrame({"unit": failed.index, "time": last_time[failed.index].to_numpy(),
                             "fault_mode": failed.to_numpy()})
    feats = [c for c in frame.columns if c not in UNIT_COLUMNS]
    return RunToFailure(frame, feats, modes, ttf, observed, step, time_unit, group, failures, [str(path)])


def _read_rul(path: Path, units: list[str]) -> dict[str, float]:
    try:
        raw, _ = read_frame(path, r"[,;\s]+", header=None)  # text, or a workbook's first sheet
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the RUL file ({e}); give one number per test unit") from None
    raw = raw.dropna(axis=1, how="all")
    if raw.shape[1] == 2:  # unit, rul (a header row is skipped when its RUL is not a number)
        raw = raw[pd.to_numeric(raw[1], errors="coerce").notna()]
        ids = _text(raw[0])
        if (twice := ids[ids.duplicated()]).size:  # the last one silently won
            raise DataError(f"{path}: unit {twice.iloc[0]!r} is given {int((ids == twice.iloc[0]).sum())} RULs; give "
                            "one per test unit")
        if stray := sorted(set(ids) - set(units)):  # a RUL file of another test table, or a unit misnamed
            raise DataError(f"{path}: units {stray[:5]} are not in the test table (its units: {units[:5]}"
                            f"{'…' if len(units) > 5 else ''}); give the RUL file of this table")
        values = dict(zip(ids, pd.to_numeric(raw[1])))
    elif raw.shape[1] == 1:
        if len(raw) != len(units):
            raise DataError(f"{path}: {len(raw)} RUL values for {len(units)} test units; give one per unit, "
                            "in the order the units appear in the test table")
        values = dict(zip(units, pd.to_numeric(raw[0], errors="coerce")))
    else:
        raise DataError(f"{path}: expected one column (RUL per unit, in order) or two (unit, RUL), "
                        f"got {raw.shape[1]}")
    missing = [u for u in units if u not in values or not np.isfinite(values[u])]
    if missing:
        raise DataError(f"{path}: no numeric RUL for test units {missing[:5]}; give one per unit")
    negative = [u for u in units if values[u] < 0]
    if negative:
        raise DataError(f"{path}: RUL below 0 for test units {negative[:5]}; a remaining useful life is the time "
                        "left before failure (0 or more): check the file and its order")
    return {u: float(values[u]) for u in units}
