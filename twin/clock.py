"""The line's clock across daylight-saving changes. The twin counts time as the line's local wall time; in the hour
that autumn's change repeats, the two passes are read one after the other at half speed, so that the clock never
runs back and no two instants share a time (a plant's records of that hour would otherwise interleave)."""

from __future__ import annotations

import numpy as np
import pandas as pd

SECOND = 1_000_000_000  # ns
DAY = 86400 * SECOND


def _offsets(instants: np.ndarray, zone: str) -> np.ndarray:
    """The UTC offsets (ns) of `zone` at the instants (epoch ns)."""
    utc = pd.DatetimeIndex(instants.astype("datetime64[ns]")).tz_localize("UTC")
    return utc.tz_convert(zone).tz_localize(None).asi8 - instants


def _localized(wall: np.ndarray, zone: str, dst: bool) -> np.ndarray:
    """Wall times (ns) as instants (epoch ns) in `zone`, a repeated time read in its summer-time (`dst`) or its
    standard-time pass; NaT (int64 min) where the time does not exist (the hour spring's change skips)."""
    idx = pd.DatetimeIndex(wall.astype("datetime64[ns]"))
    return idx.tz_localize(zone, ambiguous=np.full(len(wall), dst), nonexistent="NaT").asi8


class _Folds:
    """The repeated (ambiguous) wall times among `wall` (ns): their first-pass instants, and their fold's wall start
    and length, each as long as the wall times."""

    def __init__(self, wall: np.ndarray, zone: str) -> None:
        n = len(wall)
        self.ambiguous = np.zeros(n, bool)
        self.first, self.start, self.length = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
        days = pd.unique(wall // DAY)  # only the days around a change of offset can repeat a time
        changing = days[_offsets((days - 1) * DAY, zone) != _offsets((days + 2) * DAY, zone)]
        near = np.flatnonzero(np.isin(wall // DAY, changing))
        if not len(near):
            return
        first, second = _localized(wall[near], zone, True), _localized(wall[near], zone, False)
        keep = (first != second) & (first != np.iinfo(np.int64).min)  # two passes; a skipped time has none
        a, first, second = near[keep], first[keep], second[keep]
        if not len(a):
            return
        self.ambiguous[a] = True
        lo, hi = first // SECOND, -(-second // SECOND)  # the change lies between the passes, at a whole second
        before = _offsets(first, zone)
        while (hi - lo > 1).any():
            mid = (lo + hi) // 2
            same = _offsets(mid * SECOND, zone) == before
            lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
        change = hi * SECOND
        self.first[a], self.length[a] = first, second - first
        self.start[a] = change + (wall[a] - second)  # the change plus the offset after it: the fold's wall start

    def line(self, wall: np.ndarray, second_pass: np.ndarray) -> np.ndarray:
        """The wall times on the line's clock: a repeated one at half speed, its second pass after the first."""
        a = self.ambiguous
        out = wall.copy()
        out[a] = self.start[a] + (wall[a] - self.start[a] + np.where(second_pass[a], self.length[a], 0)) // 2
        return out


def _folded(wall: pd.Series, zone: str) -> tuple[np.ndarray, _Folds] | None:
    """Naive wall times (as ns) and their folds (`_Folds`); None where none repeats (or `zone` has no summer time)."""
    if zone == "UTC" or wall.empty:
        return None
    w = wall.to_numpy("datetime64[ns]").view(np.int64)
    folds = _Folds(w, zone)
    return (w, folds) if folds.ambiguous.any() else None


def line_clock(instants: pd.Series, zone: str) -> pd.Series:
    """Real instants (times with a UTC offset) as naive times on the clock of a line in `zone`."""
    wall = instants.dt.tz_convert(zone).dt.tz_localize(None)
    if (folded := _folded(wall, zone)) is None:
        return wall
    w, folds = folded
    real = instants.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]").view(np.int64)
    return pd.Series(folds.line(w, real != folds.first).view("datetime64[ns]"), index=instants.index,
                     name=instants.name)


def local_clock(wall: pd.Series, zone: str, groups: pd.Series | None = None,
                after: pd.Series | None = None, ties: bool = False) -> pd.Series:
    """A plant's local times without a UTC offset (naive, in file order) on the line's clock. A repeated time is read
    in its second pass where the record says so: after a step back into the repeated hour (a clock set back), in the
    whole file's order where it steps back only there, else in each of `groups`'s (each machine's rows), with
    `ties` (and `groups`) also a time equal to the group's one before (a record whose rows have distinct times:
    hourly readings show 02:00 twice); or where its first pass lies before `after` (a stop's end before its start).
    Without a sign of a second pass, the first."""
    if (folded := _folded(wall, zone)) is None:
        return wall
    w, folds = folded
    told = None if ties and groups is not None else _stepped_back(w, folds, None)  # ties: only within a group's
    if told is None and groups is not None:
        told = _stepped_back(w, folds, pd.factorize(groups)[0], ties)
    second, sure = told if told is not None else (np.zeros(len(w), bool), np.zeros(len(w), bool))
    if after is not None:
        late = folds.ambiguous & (folds.line(w, second) < after.to_numpy("datetime64[ns]").view(np.int64))
        second, sure = second | late, sure | late
    out = pd.Series(folds.line(w, second).view("datetime64[ns]"), index=wall.index, name=wall.name)
    a = folds.ambiguous
    hours = sorted({(int(f), int(f + n)) for f, n in zip(folds.start[a], folds.length[a])})
    out.attrs["repeated"] = (int(a.sum()), int(second.sum()), int((a & ~sure).sum()),
                             [(pd.Timestamp(f), pd.Timestamp(t)) for f, t in hours])
    return out


def repeated_note(times: pd.Series) -> str:
    """What `local_clock` made of the repeated hour(s) among a log's times, as a note ('' where none was met): the
    rows read as a second pass, and those it could not tell (read as the first)."""
    if "repeated" not in times.attrs:
        return ""
    rows, second, unsure, hours = times.attrs["repeated"]
    when = ", ".join(f"{f:%Y-%m-%d %H:%M}-{t:%H:%M}" for f, t in hours)
    told = [f"{second:,} read as its second pass, as the times stepping back into it tell"] if second else []
    if unsure:
        told.append(f"{unsure:,} that could be either pass read as the first (up to an hour early): times with their "
                    "UTC offset tell them")
    return f"{rows:,} rows lie in the hour the clock was set back ({when}, twice): " + \
        "; ".join(told or ["all in its first pass"])


def _stepped_back(w: np.ndarray, folds: _Folds, keys: np.ndarray | None, ties: bool = False
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """Which repeated times are second passes, by steps back into their fold in file order (within each key's rows),
    and which are known (their key's rows step back in that fold); None where the whole file (keys None) also steps
    back elsewhere: its order is not time's."""
    order = np.arange(len(w)) if keys is None else np.lexsort((np.arange(len(w)), keys))
    ws, amb, start, length = w[order], folds.ambiguous[order], folds.start[order], folds.length[order]
    same = np.ones(len(w), bool) if keys is None else np.r_[False, keys[order][1:] == keys[order][:-1]]
    prev = np.r_[ws[0], ws[:-1]]
    back = same & ((ws < prev) | (ties & (ws == prev)))
    into = back & amb & (prev >= start) & (prev < start + length)  # a clock set back in the repeated hour
    if keys is None and (back & ~into).any():
        return None
    # from the first step back on, each run of the fold's rows in a group is its second pass
    group = keys[order][amb] if keys is not None else np.zeros(int(amb.sum()), np.int64)
    second, sure = np.zeros(len(w), bool), np.zeros(len(w), bool)
    steps = pd.Series(into[amb]).groupby([group, start[amb]])
    second[order[amb]], sure[order[amb]] = steps.cummax().to_numpy(), steps.transform("max").to_numpy()
    return second, sure


def real_instants(line: pd.Series, zone: str) -> pd.Series:
    """Naive times on the line's clock as the real instants (UTC) they stand for: the inverse of `line_clock`; a
    time the clock never shows (in the hour spring's change skips) read as the time just after it."""
    if zone == "UTC" or line.empty:
        return line.dt.tz_localize("UTC")
    w = line.to_numpy("datetime64[ns]").view(np.int64)
    folds = _Folds(w, zone)
    real = pd.DatetimeIndex(line.to_numpy("datetime64[ns]")).tz_localize(
        zone, ambiguous=np.ones(len(w), bool), nonexistent="shift_forward").tz_convert("UTC").asi8
    a = folds.ambiguous  # the fold's first instant plus twice the time since its wall start
    fold_begins = folds.first[a] - (w[a] - folds.start[a])
    real[a] = fold_begins + 2 * (w[a] - folds.start[a])
    return pd.Series(pd.DatetimeIndex(real.view("datetime64[ns]")).tz_localize("UTC"), index=line.index,
                     name=line.name)


def after_real(line: pd.Series, seconds: np.ndarray, zone: str) -> pd.Series:
    """The times on the line's clock `seconds` of real time after `line`'s (a stop's end from its start and
    duration, across a change of offset); a start the clock never shows (a log kept without summer time) plus the
    seconds as they are."""
    length = pd.to_timedelta(seconds, unit="s")
    plain = line + length
    if zone == "UTC" or line.empty:
        return plain
    w = line.to_numpy("datetime64[ns]").view(np.int64)
    missing = _localized(w, zone, True) == np.iinfo(np.int64).min
    real = line_clock(real_instants(line, zone) + length, zone)
    return real.where(~missing, plain)
