"""Small builders for test scenarios, so each test states only what matters to it."""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd
from hypothesis import strategies as st

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


# --- fuzzing a YAML input by mutation: a valid file with a few of its values replaced, deleted, added or renamed ---

JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                 st.text(max_size=12), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5),
                                                                                           st.integers(), max_size=2),
                 st.sampled_from(["-5 s", "3 fortnights", "1e400", "exponential", "nan", "inf", "0"]))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, bases: dict[str, Any]) -> dict[str, Any]:
    """One of `bases` (parsed YAML documents by name) with 1 to 3 random mutations."""
    data = copy.deepcopy(bases[draw(st.sampled_from(sorted(bases)))])
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add", "rename"]))
        last = path[-1]
        if action == "replace":
            parent[last] = draw(JUNK)
        elif action == "delete":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(JUNK)
        elif action == "rename" and isinstance(parent, dict):
            parent[str(last) + draw(st.sampled_from(["_", "s", "x"]))] = parent.pop(last)
    return data
