"""Chart builders: pure functions from data to a chart (tested on their own, no Streamlit calls)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from twin.scenario import Scenario

STATE_COLOURS = {"working": "#2e7d32", "starved": "#f9a825", "blocked": "#ef6c00", "down": "#c62828",
                 "maintenance": "#1565c0", "setup": "#6a1b9a", "off_shift": "#9e9e9e",
                 "waiting_operator": "#00838f"}
UNKNOWN = "#e0e0e0"


def line_dot(sc: Scenario, states: dict[str, str], alerts: dict[str, dict[str, object]] | None = None,
             buffers: dict[str, float] | None = None) -> str:
    """Graphviz DOT of the line as its graph: each machine coloured by its state (a red ring if an alert is
    active), each buffer with its capacity and, when known, its fill level (an assembly: one per feeder), routes
    with their shares (splits, merges, rework loops) and, for a graph line, where parts leave it."""
    alerts = alerts or {}
    lines = ['digraph line {', 'rankdir=LR; node [fontname="Helvetica", fontsize=10, style=filled];',
             'edge [color="#757575", fontname="Helvetica", fontsize=9];']
    graph = sc.is_graph
    entries = set(sc.entries()) if graph else {0}
    saturated = sc.source.kind == "saturated"

    def buffer_node(st_name: str, key: str, buffer: int | None) -> str:
        level = (buffers or {}).get(key)
        cap = "∞" if buffer is None else f"{int(buffer)}"
        fill = f"{level:.0f}/{cap}" if level is not None else f"cap {cap}"
        lines.append(f'"buf:{key}" [shape=cylinder, fillcolor="#fafafa", label="{fill}"];')
        return f"buf:{key}"

    inputs: dict[int, dict[str, str]] = {}  # station -> feeder (or "") -> node parts enter by
    for i, st in enumerate(sc.stations):
        names = st.machine_names
        if st.assemble:
            inputs[i] = {f: buffer_node(st.name, f"{st.name}<{f}", st.buffer) for f in st.assemble}
        elif i in entries and saturated:
            inputs[i] = {"": ""}
        else:
            inputs[i] = {"": buffer_node(st.name, st.name, st.buffer)}
        lines.append(f'subgraph "cluster_{st.name}" {{ label="{st.name}"; color="#bdbdbd";')
        for m in names:
            state = states.get(m, "")
            colour = STATE_COLOURS.get(state, UNKNOWN)
            ring = ', penwidth=3, color="#d50000"' if alerts.get(m, {}).get("state") in ("raised", "updated") else ""
            font = "white" if state in ("down", "maintenance", "working", "setup") else "black"
            lines.append(f'"{m}" [shape=box, fillcolor="{colour}", fontcolor="{font}", '
                         f'label="{m}\\n{state or "no data"}"{ring}];')
        lines.append("}")
        for node in inputs[i].values():
            if node:
                lines += [f'"{node}" -> "{m}";' for m in names]
    if graph:
        lines.append('"exit" [shape=doublecircle, fillcolor="#eeeeee", label="out"];')
    for i, st in enumerate(sc.stations):
        routes = sc.successors(i)
        for k, p in routes:
            if k < 0 and not graph:
                continue
            if k < 0:
                target = "exit"
            else:
                target = inputs[k].get(st.name) or inputs[k].get("", "") or sc.stations[k].machine_names[0]
            label = (f' [label="{p:.0%}"]' if st.route == "probability" else f' [label="{st.route}"]') \
                if len(routes) > 1 and p is not None else ""
            back = ', constraint=false' if 0 <= k <= i else ""  # a rework loop runs back upstream
            label = label[:-1] + back + "]" if label and back else label or (f" [{back[2:]}]" if back else "")
            lines += [f'"{m}" -> "{target}"{label};' for m in st.machine_names]
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
