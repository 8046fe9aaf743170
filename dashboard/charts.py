"""Chart builders: pure functions from data to a chart (tested on their own, no Streamlit calls)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from twin.scenario import Scenario

STATE_COLOURS = {"working": "#2e7d32", "starved": "#f9a825", "blocked": "#ef6c00", "down": "#c62828",
                 "maintenance": "#1565c0", "setup": "#6a1b9a", "off_shift": "#9e9e9e"}
UNKNOWN = "#e0e0e0"


def line_dot(sc: Scenario, states: dict[str, str], alerts: dict[str, dict[str, object]] | None = None,
             buffers: dict[str, float] | None = None) -> str:
    """Graphviz DOT of the line in flow order: each machine coloured by its state (a red ring if an alert is
    active), each buffer with its capacity and, when known, its fill level."""
    alerts = alerts or {}
    lines = ['digraph line {', 'rankdir=LR; node [fontname="Helvetica", fontsize=10, style=filled];',
             'edge [color="#757575"];']
    prev: list[str] = []
    for i, st in enumerate(sc.stations):
        names = st.machine_names
        if i > 0 or sc.source.kind == "arrivals":
            level = (buffers or {}).get(st.name)
            cap = "∞" if st.buffer is None else f"{int(st.buffer)}"
            fill = f"{level:.0f}/{cap}" if level is not None else f"cap {cap}"
            lines.append(f'"buf:{st.name}" [shape=cylinder, fillcolor="#fafafa", label="{fill}"];')
            for p in prev:
                lines.append(f'"{p}" -> "buf:{st.name}";')
            prev = [f"buf:{st.name}"]
        lines.append(f'subgraph "cluster_{st.name}" {{ label="{st.name}"; color="#bdbdbd";')
        for m in names:
            state = states.get(m, "")
            colour = STATE_COLOURS.get(state, UNKNOWN)
            ring = ', penwidth=3, color="#d50000"' if alerts.get(m, {}).get("state") in ("raised", "updated") else ""
            font = "white" if state in ("down", "maintenance", "working", "setup") else "black"
            lines.append(f'"{m}" [shape=box, fillcolor="{colour}", fontcolor="{font}", '
                         f'label="{m}\\n{state or "no data"}"{ring}];')
        lines.append("}")
        for p in prev:
            for m in names:
                lines.append(f'"{p}" -> "{m}";')
        prev = list(names)
    lines.append("}")
    return "\n".join(lines)


def sensor_chart(readings: pd.DataFrame, events: pd.DataFrame | None = None, width: int = 760) -> alt.VConcatChart:
    """One panel per sensor over time (own y scale); failures (red), maintenance (blue) and alerts (amber) as
    vertical rules."""
    panels = []
    x = alt.X("ts:T", title=None, scale=alt.Scale(domain=[readings.ts.min().isoformat(),
                                                          readings.ts.max().isoformat()]))
    for sensor, g in readings.groupby("sensor", sort=True):
        line = alt.Chart(g).mark_line(strokeWidth=1).encode(
            x=x, y=alt.Y("value:Q", title=str(sensor), scale=alt.Scale(zero=False)))
        layers: list[alt.Chart] = [line]
        if events is not None and len(events):
            layers.append(alt.Chart(events).mark_rule(strokeWidth=1.5).encode(
                x=x, color=alt.Color("event:N", title=None, scale=alt.Scale(
                    domain=["failure", "maintenance_start", "alert raised", "alert updated", "alert cleared"],
                    range=["#c62828", "#1565c0", "#ff8f00", "#ffb300", "#9e9e9e"])),
                tooltip=["event", "fault_mode", "detail"]))
        panels.append(alt.layer(*layers).properties(height=90, width=width))
    return alt.vconcat(*panels).resolve_scale(y="independent")


def health_chart(frame: pd.DataFrame, value: str, title: str) -> alt.Chart:
    """A time series per fault mode (true wear, or forecast probability / RUL)."""
    return alt.Chart(frame).mark_line().encode(
        x=alt.X("ts:T", title=None), y=alt.Y(f"{value}:Q", title=title),
        color=alt.Color("fault_mode:N", title=None)).properties(height=160, width="container")


def kpi_ci_table(summary: pd.DataFrame, kpis: list[str]) -> pd.DataFrame:
    """Line KPIs of one or more runs side by side as 'mean ± half-width of the 95 % CI'."""
    s = summary[(summary.scope == "line") & summary.kpi.isin(kpis)]
    half = (s.ci_high - s.ci_low) / 2
    text = [f"{m:.4g}" if pd.isna(h) else f"{m:.4g} ± {h:.2g}" for m, h in zip(s["mean"], half)]
    return s.assign(value=text).pivot(index="kpi", columns="run", values="value").reindex(
        [k for k in kpis if k in set(s.kpi)])
