"""Replay synthetic windows into a run: one machine's readings are replaced at the source for a while.

The values come from a file written by `twin synth` (per-minute values per sensor, window after window);
from `at` on, every reading of that machine's sensors in the file takes the synthetic value of its minute,
so everything downstream (MQTT, the store, live forecasters and alerts, the dashboard) sees the anomaly
as if the machine had it. Dropouts stay dropouts. The run's metadata records what was injected where.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sensors.bank import Readings, sensor_catalog
from twin.model import Line

SYNTH_COLUMNS = ("machine", "sensor", "ts", "value")


class InjectionError(ValueError):
    """A replay the user must fix: the message names the file or option and the fix."""


@dataclass
class Injection:
    """Synthetic values (minute × sensor) replacing `machine`'s readings from `at` seconds into each replication."""

    source: str
    machine: str
    at: float
    values: pd.DataFrame  # index: minute 0..n-1, columns: sensors
    step: float = 60.0
    fault_mode: str = ""
    severity: float = float("nan")
    _series: dict[int, dict[int, int]] = field(default_factory=dict)  # replication → series → column

    @classmethod
    def from_file(cls, path: Path, machine: str, at: float) -> Injection:
        try:
            df = pd.read_parquet(path)
        except (OSError, ValueError) as e:
            raise InjectionError(f"{path}: cannot read synthetic readings ({e}); give a file written by "
                                 "`twin synth ... --out FILE.parquet`") from None
        missing = [c for c in SYNTH_COLUMNS if c not in df]
        if missing:
            raise InjectionError(f"{path}: no column(s) {missing}; give a file written by `twin synth`")
        if df.empty:
            raise InjectionError(f"{path}: holds no readings; generate some with `twin synth --n 1 ...`")
        ts = pd.to_datetime(df["ts"])
        step = float(ts.drop_duplicates().sort_values().diff().dropna().min().total_seconds()) \
            if ts.nunique() > 1 else 60.0
        minute = ((ts - ts.min()).dt.total_seconds() // step).astype(int)
        values = df.assign(minute=minute).pivot_table(index="minute", columns="sensor", values="value")
        mode = str(df["fault_mode"].iloc[0]) if "fault_mode" in df else ""
        sev = float(df["severity"].mean()) if "severity" in df else float("nan")
        return cls(str(path), machine, at, values, step, mode, sev)

    def check(self, line: Line) -> None:
        """The machine exists and has the file's sensors; else an error naming the fix."""
        cat = sensor_catalog(line)
        machines = sorted(cat.machine.unique())
        if self.machine not in machines:
            raise InjectionError(f"--into {self.machine!r}: no such machine in the scenario; "
                                 f"machines: {', '.join(machines)}")
        have = set(cat[cat.machine == self.machine].sensor)
        extra = sorted(set(self.values.columns) - have)
        if extra:
            raise InjectionError(f"{self.source}: sensors {extra} are not on {self.machine} (it has "
                                 f"{sorted(have)}); generate for this machine's type (`twin synth --machine-type`)")

    @property
    def duration(self) -> float:
        return len(self.values) * self.step

    def record(self) -> dict[str, Any]:
        """What run.json keeps about the replay."""
        return {"source": self.source, "machine": self.machine, "start": self.at, "end": self.at + self.duration,
                "sensors": list(self.values.columns), "fault_mode": self.fault_mode,
                "severity": None if np.isnan(self.severity) else round(self.severity, 4), "synthetic": True}

    def apply(self, line: Line, batch: Readings) -> Readings:
        """The batch with this machine's readings inside the replay span replaced by the synthetic values."""
        if line.replication not in self._series:
            cat = sensor_catalog(line)
            self._series[line.replication] = {int(i): self.values.columns.get_loc(s) for i, (m, s) in
                                              enumerate(zip(cat.machine, cat.sensor))
                                              if m == self.machine and s in self.values.columns}
        cols = self._series[line.replication]  # series → column of the synthetic values
        if not len(batch) or batch.t[-1] < self.at or batch.t[0] >= self.at + self.duration:
            return batch
        inside = (batch.t >= self.at) & (batch.t < self.at + self.duration) & np.isin(batch.series, list(cols))
        if not inside.any():
            return batch
        value = batch.value.copy()
        rows = ((batch.t[inside] - self.at) // self.step).astype(int)
        lookup = np.full(int(max(cols)) + 1, -1)
        lookup[list(cols)] = list(cols.values())
        col = lookup[batch.series[inside]]
        value[inside] = self.values.to_numpy()[rows, col]
        return Readings(batch.series, batch.t, value)
