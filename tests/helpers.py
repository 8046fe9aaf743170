"""Small builders for test scenarios, so each test states only what matters to it."""

from __future__ import annotations

from typing import Any

import pandas as pd

from twin.kpi import replication_kpis, summarize
from twin.model import Line
from twin.scenario import Scenario


def exp(mean: float) -> dict[str, Any]:
    return {"dist": "exponential", "mean": mean}


def const(value: float) -> dict[str, Any]:
    return {"dist": "constant", "value": value}


def scenario(stations: list[dict[str, Any]], machine_types: dict[str, Any] | None = None, **top: Any) -> Scenario:
    """A scenario from station dicts; machine type 'm' (no faults) unless given."""
    data: dict[str, Any] = {
        "line": {"site": "test", "area": "theory", "name": "line"},
        "seed": 7,
        "duration": 10_000,
        "machine_types": machine_types or {"m": {}},
        "stations": [{"machine_type": "m", **s} for s in stations],
        **top,
    }
    return Scenario.model_validate(data)


def unreliable(mtbf: float, mttr: float, clock: str = "operating") -> dict[str, Any]:
    """A machine type with one sudden fault mode: exponential time to failure and repair."""
    return {"clock": clock, "fault_modes": [{"name": "breakdown", "kind": "sudden", "ttf": exp(mtbf),
                                             "repair": exp(mttr)}]}


def replicate(sc: Scenario, n: int) -> pd.DataFrame:
    """Run n replications without sensors; return all KPIs (long format)."""
    frames = []
    for r in range(n):
        line = Line(sc, r)
        line.run(sc.duration)
        frames.append(replication_kpis(line))
    return pd.concat(frames, ignore_index=True)


def kpi(kpis: pd.DataFrame, name: str, entity: str | None = None) -> pd.Series:
    sel = kpis.kpi == name
    if entity is not None:
        sel &= kpis.entity == entity
    return kpis.loc[sel, "value"].reset_index(drop=True)


def interval(kpis: pd.DataFrame, name: str, entity: str | None = None) -> tuple[float, float, float]:
    """(mean, low, high) of a KPI's 95 % confidence interval over replications."""
    s = summarize(kpis)
    sel = s.kpi == name
    if entity is not None:
        sel &= s.entity == entity
    row = s[sel].iloc[0]
    return float(row["mean"]), float(row["ci_low"]), float(row["ci_high"])
