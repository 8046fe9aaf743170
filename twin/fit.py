"""Calibrate a scenario from a plant's machine-status log: time-to-failure and repair-time distributions per machine
type and fault mode, fitted by maximum likelihood with right-censoring (scipy.stats), the family chosen by AIC.

The log has one row per state change: timestamp, machine, state (the twin's state names: working, starved,
blocked, down, maintenance, setup, off_shift, waiting_operator) and, for a stop, the reason (the fault mode). The
machines' layout, cycle times, sensors and calendar come from a base scenario (the line as engineered); what the
log measures replaces its failure and repair times:

- a fault mode's life is the machine's operating time (its reliability clock: time working, or all time up for a
  'calendar' clock) from the end of the last repair of that mode, or of the last maintenance (which renews every
  wear mode), to the next failure of that mode; a life cut short by maintenance or by the log's end is
  right-censored; the part before a machine's first renewal is not used (its age at the log's start is unknown);
- a repair is a down period of that reason; one still going at the log's end is right-censored. Down time includes
  waiting for a technician: with repair crews the fitted repair times are upper bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from twin.model import STATES
from twin.scenario import Scenario

FAMILIES: dict[str, Any] = {"exponential": stats.expon, "weibull": stats.weibull_min, "lognormal": stats.lognorm,
                            "gamma": stats.gamma}
MIN_EVENTS = 5  # fewer failures (or repairs) than this: the base scenario's distribution is kept
WORKING = STATES[0]


class LogError(ValueError):
    """The status log cannot be used: the message names the file, the row or column, and the fix."""


@dataclass
class Fitted:
    """One fitted time distribution: the chosen family, its scenario entry, and how it was chosen."""

    family: str
    spec: dict[str, Any]  # as a scenario file writes it
    mean: float
    events: int
    censored: int
    ks: float  # Kolmogorov-Smirnov distance of the data (Kaplan-Meier when censored) to the fitted law
    aic: dict[str, float] = field(default_factory=dict)


def read_log(path: Path) -> pd.DataFrame:
    """The status log (CSV or Parquet) as timestamp, machine, state, reason, sorted; LogError when unusable."""
    try:
        df = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise LogError(f"{path}: not a readable CSV or Parquet file ({e}).") from None
    missing = [c for c in ("timestamp", "machine", "state") if c not in df.columns]
    if missing:
        raise LogError(f"{path}: column{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing (found: "
                       f"{', '.join(map(str, df.columns)) or 'none'}). A status log has timestamp, machine, state "
                       "and, for stops, reason.")
    ts = pd.to_datetime(df["timestamp"], errors="coerce", utc=False, format="mixed")
    if ts.isna().any():
        row = int(np.flatnonzero(ts.isna().to_numpy())[0])
        raise LogError(f"{path}: row {row + 2} (line {row + 2} of a CSV), column timestamp: "
                       f"{df['timestamp'].iloc[row]!r} is not a time; write ISO 8601 (2026-01-05T06:00:00).")
    bad = ~df["state"].astype(str).isin(STATES)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise LogError(f"{path}: row {row + 2}, column state: {df['state'].iloc[row]!r} is not a machine state; use "
                       f"{', '.join(STATES)} (map the plant's own state names to these first).")
    reason = df["reason"].fillna("").astype(str) if "reason" in df else pd.Series("", index=df.index)
    out = pd.DataFrame({"timestamp": ts.dt.tz_localize(None) if ts.dt.tz is not None else ts,
                        "machine": df["machine"].astype(str), "state": df["state"].astype(str), "reason": reason})
    return out.sort_values(["machine", "timestamp"], kind="stable").reset_index(drop=True)


def fit_times(events: np.ndarray, censored: np.ndarray) -> Fitted:
    """Fit every family (location 0) to the times by maximum likelihood with right-censoring; the lowest AIC wins."""
    data = stats.CensoredData(uncensored=events, right=censored) if len(censored) else events
    best: tuple[float, str, tuple[float, ...]] | None = None
    aic = {}
    for name, dist in FAMILIES.items():
        try:
            params = dist.fit(data, floc=0)
        except (ValueError, RuntimeError, FloatingPointError):
            continue
        ll = float(np.sum(dist.logpdf(events, *params)) + np.sum(dist.logsf(censored, *params)))
        if not math.isfinite(ll):
            continue
        k = 1 if name == "exponential" else 2
        aic[name] = 2 * k - 2 * ll
        if best is None or aic[name] < best[0]:
            best = (aic[name], name, params)
    if best is None:
        raise LogError("no distribution family fits these times")
    _, name, params = best
    dist = FAMILIES[name](*params)
    if len(censored):  # the largest gap between the Kaplan-Meier curve (censoring-aware) and the fitted law
        km = stats.ecdf(stats.CensoredData(uncensored=events, right=censored)).cdf
        ks = float(np.max(np.abs(km.probabilities - dist.cdf(km.quantiles))))
    else:
        ks = float(stats.kstest(events, dist.cdf).statistic)
    return Fitted(name, _spec(name, params), float(dist.mean()), len(events), len(censored), ks, aic)


def _spec(name: str, params: tuple[float, ...]) -> dict[str, Any]:
    if name == "exponential":
        return {"dist": "exponential", "mean": round(params[1], 3)}
    if name == "weibull":
        return {"dist": "weibull", "shape": round(params[0], 4), "scale": round(params[2], 3)}
    if name == "gamma":
        return {"dist": "gamma", "shape": round(params[0], 4), "scale": round(params[2], 3)}
    s, scale = params[0], params[2]
    mean = scale * math.exp(s * s / 2)
    return {"dist": "lognormal", "mean": round(mean, 3), "sd": round(mean * math.sqrt(math.expm1(s * s)), 3)}


def durations(times: pd.Series, end: pd.Timestamp) -> np.ndarray:
    """Seconds each state of one machine lasted: until its next change, the last one until the log's end."""
    t = times.to_numpy()
    return np.diff(np.append(t, np.datetime64(end))).astype("timedelta64[ms]").astype(float) / 1000


def observations(log: pd.DataFrame, sc: Scenario) -> dict[tuple[str, str, str], tuple[list[float], list[float]]]:
    """(machine type, fault mode, 'ttf' or 'repair') → (times observed, times censored), pooled over the type's
    machines."""
    types = {m: s.machine_type for s in sc.stations for m in s.machine_names}
    end = log.timestamp.max()
    out: dict[tuple[str, str, str], tuple[list[float], list[float]]] = {}

    def add(key: tuple[str, str, str], t: float, seen: bool) -> None:
        if t > 0:
            out.setdefault(key, ([], []))[0 if seen else 1].append(t)

    for machine, g in log.groupby("machine", sort=False):
        mtype = types.get(str(machine))
        if mtype is None:
            continue
        spec = sc.machine_types[mtype]
        modes = [f.name for f in spec.fault_modes]
        wear = {f.name for f in spec.fault_modes if f.kind == "wear"}
        running = {WORKING} if spec.clock == "operating" else set(STATES) - {"down", "maintenance"}
        dur = durations(g.timestamp, end)
        age: dict[str, float | None] = dict.fromkeys(modes)  # None: the age is unknown until the first renewal
        for state, reason, d, last in zip(g.state, g.reason, dur, np.arange(len(g)) == len(g) - 1):
            if state in running:
                for m in modes:
                    if age[m] is not None:
                        age[m] = age[m] + d  # type: ignore[operator]
            elif state == "down" and reason in modes:
                add((mtype, reason, "repair"), d, not last)
                if age[reason] is not None:
                    add((mtype, reason, "ttf"), age[reason], True)  # type: ignore[arg-type]
                age[reason] = 0.0
            elif state == "maintenance":
                for m in wear:
                    if age[m] is not None:
                        add((mtype, m, "ttf"), age[m], False)  # type: ignore[arg-type]
                    age[m] = 0.0
        for m in modes:
            if age[m] is not None:
                add((mtype, m, "ttf"), age[m], False)  # type: ignore[arg-type]
    return out


def fit_scenario(log: pd.DataFrame, base: Scenario) -> tuple[Scenario, pd.DataFrame]:
    """The base scenario with every fault mode's time to failure and repair time fitted from the log (where it has
    at least MIN_EVENTS of them), and a table of what was fitted and how well."""
    obs = observations(log, base)
    rows = []
    types = {k: v.model_copy(deep=True) for k, v in base.machine_types.items()}
    for (mtype, mode, what), (seen, cut) in sorted(obs.items()):
        base_mode = next(f for f in base.machine_types[mtype].fault_modes if f.name == mode)
        before = (base_mode.ttf if what == "ttf" else base_mode.repair).mean
        if len(seen) < MIN_EVENTS:
            rows.append({"machine type": mtype, "fault mode": mode, "time": what, "events": len(seen),
                         "censored": len(cut), "family": "kept (too few events)", "mean [h]": before / 3600,
                         "base mean [h]": before / 3600, "KS": np.nan, "parameters": ""})
            continue
        f = fit_times(np.asarray(seen), np.asarray(cut))
        modes = types[mtype].fault_modes
        k = next(i for i, fm in enumerate(modes) if fm.name == mode)
        modes[k] = modes[k].model_validate({**modes[k].model_dump(by_alias=True), "ttf" if what == "ttf" else "repair":
                                            f.spec})
        rows.append({"machine type": mtype, "fault mode": mode, "time": what, "events": f.events,
                     "censored": f.censored, "family": f.family, "mean [h]": f.mean / 3600,
                     "base mean [h]": before / 3600, "KS": f.ks,
                     "parameters": ", ".join(f"{k}={v}" for k, v in f.spec.items() if k != "dist")})
    fitted = base.model_copy(update={"machine_types": types})
    return Scenario.model_validate(fitted.model_dump(by_alias=True)), pd.DataFrame(rows)


def log_from_run(states: pd.DataFrame, events: pd.DataFrame, start: pd.Timestamp, replication: int = 0
                 ) -> pd.DataFrame:
    """A status log as a plant would keep it, from a twin run's ground truth (states and events of one
    replication): for tests and for checking `twin fit` against a known truth."""
    st = states[states.replication == replication]
    fails = events[(events.replication == replication) & (events.event == "failure")][["machine", "t", "fault_mode"]]
    st = st.merge(fails.rename(columns={"t": "start", "fault_mode": "reason"}), on=["machine", "start"], how="left")
    st = st.sort_values(["machine", "start"])
    st = st[~((st.machine == st.machine.shift()) & (st.state.astype(str) == st.state.astype(str).shift()))]
    return pd.DataFrame({"timestamp": start + pd.to_timedelta(st.start.to_numpy(), unit="s"),
                         "machine": st.machine.astype(str).to_numpy(), "state": st.state.astype(str).to_numpy(),
                         "reason": st.reason.fillna("").to_numpy()})
