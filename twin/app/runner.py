"""Runs a scenario: replications of the line, sensor readings chunk by chunk, ground truth, KPIs.

`simulate` drives one replication and hands each chunk of readings to a callback (so the model
never knows where readings go: a Parquet file here, MQTT in the pipeline). `run_scenario` runs all
replications and writes an open-format result folder (see `RunWriter`).
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import twin
from sensors.bank import Readings, SensorBank, sensor_catalog
from sensors.inject import Injection
from twin.kpi import replication_kpis, summarize
from twin.maintenance import MaintenancePolicy
from twin.model import STATES, Line, Machine
from twin.scenario import Scenario
from twin.truth import TruthReader

HEALTH_PERIOD = 60.0  # seconds between ground-truth health samples
ProgressFn = Callable[[int, float], None]  # (replication, simulated seconds done)


@dataclass
class Replication:
    """What one replication produced: the finished line (ground truth) and its KPIs."""

    line: Line
    kpis: pd.DataFrame
    readings: int = 0


class HealthSampler:
    """Samples every wear mode's true wear on a fixed grid: the health part of the ground truth."""

    def __init__(self, line: Line, period: float = HEALTH_PERIOD) -> None:
        self.period = period
        self.readers = [(m, TruthReader(m)) for m in line.machines if m.wear_modes]

    def sample(self, t0: float, t1: float) -> pd.DataFrame:
        k0, k1 = int(np.ceil(t0 / self.period - 1e-9)), int(np.ceil(t1 / self.period - 1e-9))
        ts = np.arange(k0, k1) * self.period
        times, machines, modes, wears = [], [], [], []
        for m, reader in self.readers:
            _, _, wear = reader.at(ts)
            for i in m.wear_modes:
                times.append(ts)
                machines.append(np.full(len(ts), m.name, dtype=object))
                modes.append(np.full(len(ts), m.modes[i].name, dtype=object))
                wears.append(wear[i])
        if not times:
            return pd.DataFrame(columns=["t", "machine", "fault_mode", "wear"])
        return pd.DataFrame({"t": np.concatenate(times), "machine": np.concatenate(machines),
                             "fault_mode": np.concatenate(modes), "wear": np.concatenate(wears)})


def default_chunk(realtime_factor: float) -> float:
    """Simulated seconds per step: large when running flat out, a fifth of a wall-clock second when live."""
    return 600.0 if realtime_factor <= 0 else 0.2 * realtime_factor


def simulate(scenario: Scenario, replication: int = 0, *,
             on_readings: Callable[[Line, Readings], None] | None = None,
             on_health: Callable[[Line, pd.DataFrame], None] | None = None,
             progress: ProgressFn | None = None,
             policy: Callable[[Machine], MaintenancePolicy] | None = None,
             chunk: float | None = None,
             sensors: bool = True,
             wall_start: float | None = None) -> Replication:
    """Run one replication to the scenario's end, streaming readings chunk by chunk, paced if asked."""
    line = Line(scenario, replication, policy=policy)
    bank = SensorBank(line) if sensors else None
    health = HealthSampler(line) if on_health else None
    factor = scenario.realtime_factor
    step = chunk or default_chunk(factor)
    wall0 = time.time() if wall_start is None else wall_start  # when live: the wall time of t = 0
    t, n = 0.0, 0
    while t < scenario.duration:
        t1 = min(t + step, scenario.duration)
        line.run(t1)
        batch = bank.sample(t, t1) if bank is not None else None
        if factor > 0:  # live: hand readings over once the wall clock has reached their time
            ahead = wall0 + t1 / factor - time.time()
            if ahead > 0:
                time.sleep(ahead)
        if batch is not None:
            n += len(batch)
            if on_readings is not None:
                on_readings(line, batch)
        if health is not None and on_health is not None:
            on_health(line, health.sample(t, t1))
        if progress is not None:
            progress(replication, t1)
        t = t1
    return Replication(line, replication_kpis(line), n)


def states_frame(line: Line) -> pd.DataFrame:
    """State intervals of every machine (zero-length ones dropped): the state part of the ground truth."""
    frames = []
    end = min(line.env.now, line.scenario.duration)
    for m in line.machines:
        t = np.frombuffer(m.log.t, dtype=np.float64).copy()
        s = np.frombuffer(m.log.state, dtype=np.int8).copy()
        stop = np.append(t[1:], end)
        keep = stop > t
        frames.append(pd.DataFrame({"machine": m.name, "station": m.station.name, "start": t[keep],
                                    "end": stop[keep], "state": pd.Categorical.from_codes(s[keep], STATES)}))
    return pd.concat(frames, ignore_index=True)


def events_frame(line: Line) -> pd.DataFrame:
    """Failures, repairs, maintenance and changeovers, in time order: the event part of the ground truth."""
    df = pd.DataFrame([(e.t, e.machine, e.kind, e.fault_mode, e.detail) for e in line.events],
                      columns=["t", "machine", "event", "fault_mode", "detail"])
    return df.astype({"t": "float64", "machine": "str", "event": "str", "fault_mode": "str", "detail": "str"})


def parts_frame(line: Line) -> pd.DataFrame:
    names = [s.name for s in line.scenario.stations]
    scrap = np.frombuffer(line.scrapped_at, dtype=np.int16).copy()
    return pd.DataFrame({"part": np.arange(len(scrap)), "entry": np.frombuffer(line.entry).copy(),
                         "exit": np.frombuffer(line.exit).copy(),
                         "scrapped_at": [names[i] if i >= 0 else None for i in scrap]})


@dataclass
class RunWriter:
    """Writes a run folder: readings.parquet (streamed), sensors.parquet, truth/*.parquet, kpis, summary.

    Every table has a `replication` column; times are seconds since the start (`t`) plus a wall-clock
    `timestamp` from the scenario's `start`, so any Parquet reader (pandas, DuckDB, Spark) can use them.
    """

    out: Path
    scenario: Scenario
    _readings: pq.ParquetWriter | None = None
    _health: list[pd.DataFrame] = field(default_factory=list)
    _tables: dict[str, list[pd.DataFrame]] = field(default_factory=dict)
    _catalog: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        (self.out / "truth").mkdir(parents=True, exist_ok=True)
        self._start = np.datetime64(self.scenario.start.replace(tzinfo=None), "ms")

    def _meta(self, status: str, extra: dict[str, Any] | None) -> None:
        meta = {"linetwin": twin.__version__, "python": platform.python_version(), "status": status,
                "scenario": self.scenario.model_dump(mode="json", by_alias=True),
                "written": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **(extra or {})}
        (self.out / "run.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    def open(self, extra: dict[str, Any] | None = None) -> None:
        """Announce the run (run.json with status 'running'), so a dashboard can find it while it runs."""
        self._meta("running", extra)

    def _stamp(self, t: np.ndarray) -> np.ndarray:
        """Seconds since the start -> timestamps to the millisecond (NaN -> NaT), the same rounding as MQTT's."""
        return self._start + np.rint(np.asarray(t) * 1000).astype("timedelta64[ms]")

    def readings(self, line: Line, batch: Readings) -> None:
        if self._catalog is None:
            self._catalog = sensor_catalog(line)
        cat = self._catalog
        series = pa.array(batch.series)
        table = pa.table({
            "replication": pa.array(np.full(len(batch), line.replication, dtype=np.int32)),
            "t": pa.array(batch.t),
            "timestamp": pa.array(self._stamp(batch.t)),
            "machine": pa.DictionaryArray.from_arrays(series, pa.array(cat.machine.to_numpy())),
            "sensor": pa.DictionaryArray.from_arrays(series, pa.array(cat.sensor.to_numpy())),
            "value": pa.array(batch.value),
        })
        if self._readings is None:
            self._readings = pq.ParquetWriter(self.out / "readings.parquet", table.schema, compression="zstd")
        self._readings.write_table(table)

    def health(self, line: Line, frame: pd.DataFrame) -> None:
        if len(frame):
            self._health.append(frame.assign(replication=line.replication))

    def replication(self, rep: Replication) -> None:
        line = rep.line
        for name, frame in (("states", states_frame(line)), ("events", events_frame(line)),
                            ("parts", parts_frame(line))):
            self._tables.setdefault(name, []).append(frame.assign(replication=line.replication))
        self._tables.setdefault("kpis", []).append(rep.kpis)

    def close(self, extra: dict[str, Any] | None = None) -> pd.DataFrame:
        """Finish every file; returns the KPI summary over replications."""
        if self._readings is not None:
            self._readings.close()
        if self._catalog is not None:
            self._catalog.to_parquet(self.out / "sensors.parquet", index=False)
        truth = dict(self._tables)
        if self._health:
            truth["health"] = self._health
        for name, frames in truth.items():
            df = pd.concat(frames, ignore_index=True)
            for col in ("t", "start", "end", "entry", "exit"):
                if col in df:
                    df["timestamp" if col == "t" else f"{col}_time"] = self._stamp(df[col].to_numpy())
            target = self.out / ("kpis.parquet" if name == "kpis" else f"truth/{name}.parquet")
            df.to_parquet(target, index=False)
        summary = summarize(truth["kpis"])
        summary.to_parquet(self.out / "summary.parquet", index=False)
        summary.to_csv(self.out / "summary.csv", index=False)
        self._meta("finished", extra)
        return summary


def run_scenario(scenario: Scenario, out: Path, progress: ProgressFn | None = None, *,
                 on_readings: Callable[[Line, Readings], None] | None = None,
                 on_replication: Callable[[Replication], None] | None = None,
                 extra: dict[str, Any] | None = None,
                 wall_start: float | None = None,
                 policy: Callable[[Machine], MaintenancePolicy] | None = None,
                 inject: Injection | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run every replication of a scenario into the folder `out`; return the KPI summary and all KPIs.

    `on_readings` also receives every chunk of readings (e.g. the MQTT publisher), `on_replication`
    each finished replication; `policy` overrides the machines' maintenance policies (e.g. predictive);
    `inject` replays synthetic readings into one machine (recorded in run.json).
    """
    writer = RunWriter(out, scenario)
    if inject is not None:
        extra = {**(extra or {}), "injections": [inject.record()]}
    writer.open(extra)

    def readings_to(line: Line, batch: Readings) -> None:
        if inject is not None:
            batch = inject.apply(line, batch)
        writer.readings(line, batch)
        if on_readings is not None:
            on_readings(line, batch)

    wall = time.perf_counter()
    readings = 0
    kpis = []
    for rep in range(scenario.replications):
        result = simulate(scenario, rep, on_readings=readings_to, on_health=writer.health, progress=progress,
                          wall_start=wall_start if rep == 0 else None, policy=policy)
        writer.replication(result)
        readings += result.readings
        kpis.append(result.kpis)
        if on_replication is not None:
            on_replication(result)
    summary = writer.close({"wall_seconds": round(time.perf_counter() - wall, 3), "readings": readings,
                            **(extra or {})})
    return summary, pd.concat(kpis, ignore_index=True)
