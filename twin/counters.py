"""Cumulative counters a plant keeps (a PLC's part count, an energy meter's kWh register): what each reading
counted. Here, below the sensors and the fit that both read them."""

from __future__ import annotations

import pandas as pd


def counter_steps(readings: pd.DataFrame) -> pd.DataFrame:
    """A cumulative counter's readings (machine, sensor, ts, value: a PLC's part count, a kWh register) as what it
    counted at each one, sorted by machine, sensor and time: its increase since the reading before; a drop is a
    reset, after which it counts from 0 (the reading is what it counted since); the first reading of each counts
    nothing (where it started is not known)."""
    df = readings.sort_values(["machine", "sensor", "ts"], kind="stable").reset_index(drop=True)
    step = df.groupby(["machine", "sensor"], sort=False).value.diff()
    return df.assign(value=step.where(step.isna() | (step >= 0), df.value).fillna(0.0))
