"""Ground truth read back from a machine's log at any times: state, reliability clock, wear per mode.

Sensors and the health table both use it; the log is only appended to, so a reader keeps a cursor
and looks only at the tail it has not passed yet, which keeps chunked (live) reading linear in time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from twin.model import Line, Machine


def left_good(parts: pd.DataFrame) -> pd.Series:
    """Of a run's parts (`truth/parts.parquet`), those that left the line good: out, not scrapped, and not consumed
    by an assembly (such a part left inside it: its `into`)."""
    out = parts.exit.notna() & parts.scrapped_at.isna()
    return out & parts["into"].isna() if "into" in parts.columns else out


class TruthReader:
    """Reads one machine's state, clock and wear at sorted sample times, chunk after chunk."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self.cursor = 0
        self.rates = np.asarray(machine.rates)

    def at(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(state, clock, wear[mode, sample]) at sorted times ts, which must not precede earlier calls."""
        log = self.m.log
        t = np.frombuffer(log.t[self.cursor:], dtype=np.float64)
        s = np.frombuffer(log.state[self.cursor:], dtype=np.int8)
        c = np.frombuffer(log.clock[self.cursor:], dtype=np.float64)
        if len(ts) == 0:
            return np.empty(0, np.int8), np.empty(0), np.empty((len(self.m.modes), 0))
        idx = np.maximum(np.searchsorted(t, ts, side="right") - 1, 0)
        state = s[idx]
        clock = c[idx] + (ts - t[idx]) * self.rates[state]
        wear = np.empty((len(self.m.modes), len(ts)))
        for i, mode in enumerate(self.m.modes):
            lives = np.asarray(log.lives[i], dtype=np.float64)
            j = np.maximum(np.searchsorted(lives[:, 0], ts, side="right") - 1, 0)
            age = (clock - lives[j, 1]) / lives[j, 2]
            wear[i] = np.clip(age, 0.0, 1.0) ** mode.progression
        # keep the cursor on the record in force at the last time read
        self.cursor += int(np.searchsorted(t, ts[-1], side="right") - 1) if len(t) else 0
        return state, clock, wear


class ProductFollower:
    """Follows what a mixed line's machines are set up for as it runs: `new(line)` gives each change of product since
    the last call: the machine, when work on its first part of the new product began, and the product. Only where it
    matters to a what-if or a fit: machines whose station sets up between products (a setup's product pair), and the
    entry machines of a line with a release plan (the campaign under way)."""

    def __init__(self) -> None:
        self._cursor: dict[tuple[int, str], int] = {}
        self._last: dict[tuple[int, str], int] = {}

    def new(self, line: Line) -> list[tuple[Machine, float, str]]:
        sc = line.scenario
        if not sc.products:
            return []
        entry = set(sc.entries()) if sc.release else set()
        out = []
        for m in line.machines:
            if not (m.station.setup_matrix or m.station_idx in entry):
                continue
            key = (line.replication, m.name)
            start, n = self._cursor.get(key, 0), min(len(m.log.begun), len(m.log.begun_product))
            if n <= start:
                continue
            self._cursor[key] = n
            made = np.frombuffer(m.log.begun_product, dtype=np.int8)[start:n].astype(np.int64)
            before = np.concatenate([[self._last.get(key, -1)], made[:-1]])
            changed = np.flatnonzero(made != before)  # the first part of each run of one product
            self._last[key] = int(made[-1])
            began = np.frombuffer(m.log.begun, dtype=np.float64)[start:n]
            out += [(m, float(began[k]), line.product_names[made[k]]) for k in changed.tolist()]
        return out


class StateFollower:
    """Follows the state logs of a line's machines as it runs: `new(line)` gives, per machine, the changes logged
    since the last call (times, state names, downtime reasons); a new replication is followed from its start.

    What it gives is a state record per change as a store or a subscriber keeps it (on the millisecond: each
    record holds from its time to the next): of several changes in one millisecond (a machine blocked and freed
    at one instant) only the last, the state it is in after it, and no record that repeats the one before."""

    def __init__(self) -> None:
        self._cursor: dict[tuple[int, str], int] = {}
        self._last: dict[tuple[int, str], tuple[str, str]] = {}  # the last record given: (state, reason)

    def new(self, line: Line) -> list[tuple[Machine, np.ndarray, np.ndarray, np.ndarray]]:
        out = []
        for m in line.machines:
            key = (line.replication, m.name)
            start = self._cursor.get(key, 0)
            t, states, reasons = m.log.states_from(start)
            self._cursor[key] = start + len(t)
            if not len(t):
                continue
            ms = np.rint(t * 1000)
            keep = np.append(ms[1:] != ms[:-1], True)  # the last change of each millisecond
            t, states, reasons = t[keep], states[keep], reasons[keep]
            before = self._last.get(key)
            prev_s = np.concatenate([[before[0] if before else None], states[:-1]])
            prev_r = np.concatenate([[before[1] if before else None], reasons[:-1]])
            keep = (states != prev_s) | (reasons != prev_r)  # a record that repeats the one before says nothing
            self._last[key] = (states[-1], reasons[-1])
            if keep.any():
                out.append((m, t[keep], states[keep], reasons[keep]))
        return out
