"""Vectorised sensor signals: one numpy pass per sensor and chunk, never one SimPy event per value.

Each reading is: a level for the machine's state (off / idle / working), plus load and wear effects,
through a first-order lag, plus slow random-walk drift and white noise, then the sensor's own
faults: spikes, stuck values, dropouts (missing readings). Each flaw draws from its own seeded
stream and all filter state is carried between chunks, so a run read in one chunk or in a thousand
gives the same readings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from twin.model import IDLE_STATES, STATES, STOPPED_STATES, STREAM_SENSOR, WORKING, Line, Machine, rng_for
from twin.scenario import Sensor
from twin.truth import TruthReader

NOISE, DRIFT, FAULTS = 0, 1, 2


@dataclass
class Readings:
    """A batch of readings in columns; `series` indexes the bank's catalog (machine, sensor, unit)."""

    series: np.ndarray  # int32
    t: np.ndarray  # float64, seconds since the run started
    value: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.t)


class _Channel:
    """One sensor on one machine, with the filter and fault state carried between chunks."""

    def __init__(self, line: Line, m: Machine, j: int, spec: Sensor, series: int) -> None:
        sc = line.scenario
        self.spec, self.series = spec, series
        self.rng = [rng_for(sc.seed, line.replication, m.slot, STREAM_SENSOR + 10 * j + k) for k in range(3)]
        level = np.empty(len(STATES))
        level[WORKING] = spec.working + spec.load_gain * (m.station.load - m.mtype.reference_load)
        level[list(IDLE_STATES)] = spec.idle
        level[list(STOPPED_STATES)] = spec.stopped
        self.level = level
        self.on = np.array([s not in STOPPED_STATES for s in range(len(STATES))], dtype=float)
        self.effect = np.array([fm.signature.get(spec.name, 0.0) for fm in m.modes])
        self.alpha = math.exp(-spec.period / spec.lag) if spec.lag > 0 else 0.0
        self.y: float | None = None
        self.drift = 0.0
        self.last = 0.0
        self.stuck_left = 0
        self.stuck_value = 0.0
        self.drop_left = 0
        f = spec.faults
        hours = spec.period / 3600
        self.p_spike, self.p_stuck, self.p_drop = f.spike_rate * hours, f.stuck_rate * hours, f.dropout_rate * hours

    def times(self, t0: float, t1: float) -> np.ndarray:
        p = self.spec.period
        k0, k1 = math.ceil(t0 / p - 1e-9), math.ceil(t1 / p - 1e-9)
        return np.arange(k0, k1, dtype=np.float64) * p

    def values(self, state: np.ndarray, wear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Readings for one chunk, and the mask of those not lost to dropouts."""
        spec, n = self.spec, len(state)
        if n == 0:  # a slow sensor may have no sample due in a short chunk
            return np.empty(0), np.empty(0, dtype=bool)
        x = self.level[state]
        if self.effect.any():
            x = x + (self.effect @ wear) * self.on[state]
        if self.alpha:
            if self.y is None:
                self.y = float(x[0])
            x = first_order_lag(x, self.alpha, self.y)
            self.y = float(x[-1])
        if spec.drift:
            walk = np.cumsum(self.rng[DRIFT].normal(0.0, spec.drift * math.sqrt(spec.period / 3600), n))
            x = x + self.drift + walk
            self.drift += float(walk[-1])
        if spec.noise:
            x = x + self.rng[NOISE].normal(0.0, spec.noise, n)
        keep = np.ones(n, dtype=bool)
        if self.p_spike or self.p_stuck or self.p_drop:
            u = self.rng[FAULTS].random((n, 4))
            x = x + np.where(u[:, 0] < self.p_spike, spec.faults.spike_size, 0.0)
            lengths = np.ceil(-np.log1p(-u[:, 3]) * np.array([[spec.faults.stuck_for], [spec.faults.dropout_for]])
                              / spec.period).astype(np.int64)
            x = self._stuck(x, np.flatnonzero(u[:, 1] < self.p_stuck), lengths[0])
            keep = self._dropouts(n, np.flatnonzero(u[:, 2] < self.p_drop), lengths[1])
        self.last = float(x[-1])
        return x, keep

    def _stuck(self, x: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        n, i = len(x), 0
        if self.stuck_left:
            i = min(self.stuck_left, n)
            x[:i] = self.stuck_value
            self.stuck_left -= i
        for s in starts:
            if s < i:
                continue
            value = x[s - 1] if s else self.last
            end = s + max(1, int(lengths[s]))
            x[s:min(end, n)] = value
            i = min(end, n)
            if end > n:
                self.stuck_left, self.stuck_value = end - n, float(value)
        return x

    def _dropouts(self, n: int, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        keep = np.ones(n, dtype=bool)
        i = 0
        if self.drop_left:
            i = min(self.drop_left, n)
            keep[:i] = False
            self.drop_left -= i
        for s in starts:
            if s < i:
                continue
            end = s + max(1, int(lengths[s]))
            keep[s:min(end, n)] = False
            i = min(end, n)
            if end > n:
                self.drop_left = end - n
        return keep


def first_order_lag(x: np.ndarray, alpha: float, y0: float) -> np.ndarray:
    """y[n] = alpha * y[n-1] + (1 - alpha) * x[n] from y[-1] = y0, in numpy (scipy.signal's lfilter costs a
    second of start-up). Closed form per block, y[s+j] = alpha^(j+1) y[s-1] + alpha^j cumsum((1-alpha) x alpha^-i),
    with blocks short enough that alpha^-i stays below e^600."""
    n = len(x)
    b = (1.0 - alpha) * np.asarray(x, dtype=np.float64)
    if alpha < 1e-6:  # a lag far below the period: one step back is exact to alpha^2 (below 1e-12)
        b[1:] += alpha * b[:-1]
        if n:
            b[0] += alpha * y0
        return b
    step = n if alpha >= 1.0 else max(1, min(n, int(600.0 / -math.log(alpha))))
    k = np.arange(step, dtype=np.float64)
    rise, fall = alpha ** -k, alpha ** k
    out = np.empty(n)
    y = y0
    for s in range(0, n, step):
        m = min(step, n - s)
        out[s:s + m] = fall[:m] * (alpha * y + np.cumsum(b[s:s + m] * rise[:m]))
        y = out[s + m - 1]
    return out


def sensor_catalog(line: Line) -> pd.DataFrame:
    """Every sensor series of a line, in series order: machine, station, type, sensor, unit, period."""
    rows = [(m.name, m.station.name, m.station.machine_type, s.name, s.unit, s.period)
            for m in line.machines for s in m.mtype.sensors]
    return pd.DataFrame(rows, columns=["machine", "station", "machine_type", "sensor", "unit", "period"])


class SensorBank:
    """All sensors of a line; `sample(t0, t1)` gives every reading due in [t0, t1) once the line got to t1."""

    def __init__(self, line: Line) -> None:
        self.line = line
        series = 0
        self._machines: list[tuple[TruthReader, list[_Channel]]] = []
        for m in line.machines:
            chans = []
            for j, spec in enumerate(m.mtype.sensors):
                chans.append(_Channel(line, m, j, spec, series))
                series += 1
            self._machines.append((TruthReader(m), chans))
        self.catalog = sensor_catalog(line)
        self.readings_per_s = float((1.0 / self.catalog["period"]).sum()) if len(self.catalog) else 0.0

    def sample(self, t0: float, t1: float) -> Readings:
        parts_s, parts_t, parts_v = [], [], []
        for reader, chans in self._machines:
            if not chans:
                continue
            grids = [c.times(t0, t1) for c in chans]
            ts = np.unique(np.concatenate(grids)) if len(grids) > 1 else grids[0]
            state, _, wear = reader.at(ts)
            for c, g in zip(chans, grids):
                sel = np.searchsorted(ts, g) if len(g) != len(ts) else slice(None)
                x, keep = c.values(state[sel], wear[:, sel])
                parts_s.append(np.full(int(keep.sum()), c.series, dtype=np.int32))
                parts_t.append(g[keep])
                parts_v.append(x[keep])
        if not parts_t:
            return Readings(np.empty(0, np.int32), np.empty(0), np.empty(0))
        return Readings(np.concatenate(parts_s), np.concatenate(parts_t), np.concatenate(parts_v))
