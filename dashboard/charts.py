"""Chart builders: pure functions from data to a chart (tested on their own, no Streamlit calls)."""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from twin.kpi import mean_ci_text
from twin.scenario import Scenario, Station

STATE_COLOURS = {"working": "#2e7d32", "starved": "#f9a825", "blocked": "#ef6c00", "down": "#c62828",
                 "maintenance": "#1565c0", "setup": "#6a1b9a", "off_shift": "#9e9e9e",
                 "waiting_operator": "#00838f", "offline": "#424242"}
UNKNOWN = "#e0e0e0"


#: a line of more stations than this is drawn as rows of about ROW_STATIONS each (80 cells in one row were specks)
MAX_ROW, ROW_STATIONS = 8, 6


def line_dots(sc: Scenario, states: dict[str, str], alerts: dict[str, dict[str, object]] | None = None,
              buffers: dict[str, float] | None = None, link: str | None = None,
              products: dict[str, str] | None = None) -> list[str]:
    """The line as `line_dot` draws it, one graph for a line of up to MAX_ROW stations, else one per row of about
    ROW_STATIONS consecutive stations (each chart is scaled to the page's width: a long line in one chart was too
    small to read or click), parts leaving a row for another shown as '→ station' and arriving as 'station →'."""
    n = len(sc.stations)
    if n <= MAX_ROW:
        return [line_dot(sc, states, alerts, buffers, link, products=products)]
    rows = -(-n // ROW_STATIONS)
    size = -(-n // rows)
    return [line_dot(sc, states, alerts, buffers, link, range(a, min(a + size, n)), products)
            for a in range(0, n, size)]


def line_dot(sc: Scenario, states: dict[str, str], alerts: dict[str, dict[str, object]] | None = None,
             buffers: dict[str, float] | None = None, link: str | None = None, part: range | None = None,
             products: dict[str, str] | None = None) -> str:
    """Graphviz DOT of the line as its graph: each machine coloured by its state (a red ring if an alert is
    active) and, on a mixed line, the product it is set up for where known, each buffer with its capacity and, when
    known, its fill level (an assembly: one per feeder), routes with their shares (splits, merges, rework loops)
    and, for a graph line, where parts leave it. With `link`, each machine links to that page with ?machine=NAME.
    With `part`, only those stations (by index), routes to and from the others as labelled stubs."""
    alerts = alerts or {}
    part = part if part is not None else range(len(sc.stations))
    lines = ['digraph line {', 'rankdir=LR; node [fontname="Helvetica", fontsize=10, style=filled];',
             'edge [color="#757575", fontname="Helvetica", fontsize=9];']
    graph = sc.is_graph
    entries = set(sc.entries()) if graph else {0}
    saturated = sc.source.kind == "saturated"

    def buffer_node(st: Station, key: str) -> str:
        level = (buffers or {}).get(key)
        cap = "∞" if st.buffer is None else f"{int(st.buffer)}"
        fill = f"{level:.0f}/{cap}" if level is not None else f"cap {cap}"
        if st.transfer is not None:  # a conveyor: its parts on the way count in its level
            fill += f"\\nconveyor {st.transfer / 60:g} min" if st.transfer >= 60 else f"\\nconveyor {st.transfer:g} s"
        lines.append(f'"buf:{key}" [shape=cylinder, fillcolor="#fafafa", label="{fill}"];')
        return f"buf:{key}"

    def stub(key: str, label: str) -> str:
        lines.append(f'"{key}" [shape=plaintext, style="", label="{label}"];')
        return key

    inputs: dict[int, dict[str, str]] = {}  # station -> feeder (or "") -> node parts enter by
    for i in part:
        st = sc.stations[i]
        names = st.machine_names
        if st.assemble:
            inputs[i] = {f: buffer_node(st, f"{st.name}<{f}") for f in st.assemble}
        elif i in entries and saturated:
            inputs[i] = {"": ""}
        else:
            inputs[i] = {"": buffer_node(st, st.name)}
        name = f"{st.name} (batch of {st.batch.size})" if st.batch is not None else st.name
        lines.append(f'subgraph "cluster_{st.name}" {{ label="{name}"; color="#bdbdbd";')
        for m in names:
            state = states.get(m, "")
            colour = STATE_COLOURS.get(state, UNKNOWN)
            ring = ', penwidth=3, color="#d50000"' if alerts.get(m, {}).get("state") in ("raised", "updated") else ""
            font = "white" if state in ("down", "maintenance", "working", "setup") else "black"
            url = f', URL="{link}?machine={m}", target="_top"' if link else ""
            product = f"\\n{products[m]}" if products and m in products else ""
            lines.append(f'"{m}" [shape=box, fillcolor="{colour}", fontcolor="{font}", '
                         f'label="{m}\\n{state or "no data"}{product}"{ring}{url}];')
        lines.append("}")
        for node in inputs[i].values():
            if node:
                lines += [f'"{node}" -> "{m}";' for m in names]
    exits = False
    for i, st in enumerate(sc.stations):
        routes = sc.successors(i)
        for w, (k, p) in enumerate(routes):
            if (k < 0 and not graph) or (i not in part and k not in part):
                continue
            if k < 0:
                target, exits = "exit", True
            elif k not in part:
                target = stub(f"to:{sc.stations[k].name}", f"→ {sc.stations[k].name}")
            else:
                target = inputs[k].get(st.name) or inputs[k].get("", "") or sc.stations[k].machine_names[0]
            label = "" if len(routes) < 2 else f' [label="{p or 0:.0%}"]' if st.route == "probability" \
                else f' [label="{", ".join(st.routes()[w].products or ["others"])}"]' if st.route == "product" else ""
            back = ', constraint=false' if 0 <= k <= i and i in part and k in part else ""  # a rework loop upstream
            label = label[:-1] + back + "]" if label and back else label or (f" [{back[2:]}]" if back else "")
            sources = st.machine_names if i in part else [stub(f"from:{st.name}", f"{st.name} →")]
            lines += [f'"{m}" -> "{target}"{label};' for m in sources]
    if exits:
        lines.append('"exit" [shape=doublecircle, fillcolor="#eeeeee", label="out"];')
    lines.append("}")
    return "\n".join(lines)


EVENT_COLOURS = {"failure": "#c62828", "maintenance_start": "#1565c0", "alert raised": "#ff8f00",
                 "alert updated": "#ffb300", "alert cleared": "#9e9e9e"}


def sensor_spec(sensors: list[str], events: pd.DataFrame | None = None, units: dict[str, str] | None = None,
                domain: tuple[pd.Timestamp, pd.Timestamp] | None = None, width: int = 640,
                band: bool = False) -> dict[str, Any]:
    """Vega-Lite spec for readings (ts, sensor, value; with `band` also low and high, each interval's range, shaded
    behind its mean; passed beside it as the chart's data): one panel per sensor (own y scale, its unit on the axis),
    failures (red), maintenance (blue) and alarms (amber) as rules clipped to the window, one crosshair shared by
    every panel. Written as a plain spec, not Altair objects: building and validating those took most of a refresh.
    Sized to fit a 1280 px screen's column (legend on top)."""
    units = units or {}
    x: dict[str, Any] = {"field": "ts", "type": "temporal", "axis": AXIS_TIME.to_dict(), "scale": {"type": "utc"}}
    if domain is not None:
        x["scale"]["domain"] = [pd.Timestamp(d).isoformat() for d in domain]
    marks = None
    if events is not None and len(events):
        marks = {"values": [{"ts": pd.Timestamp(t).isoformat(), "event": e, "fault_mode": str(f),
                             "detail": str(d)} for t, e, f, d in zip(events.ts, events.event, events.fault_mode,
                                                                     events.detail)]}
    panels = []
    for i, sensor in enumerate(sensors):
        unit = units.get(sensor, "")
        title = f"{sensor} [{unit}]" if unit else sensor
        keep = {"filter": {"field": "sensor", "equal": sensor}}
        y = {"field": "value", "type": "quantitative", "title": title, "scale": {"zero": False}}
        shaded = [{"mark": {"type": "area", "opacity": 0.25, "clip": True},
                   "encoding": {"x": x, "y": {**y, "field": "low"}, "y2": {"field": "high"}}}] if band else []
        ranged = [{"field": "low", "type": "quantitative", "title": "lowest", "format": ".4g"},
                  {"field": "high", "type": "quantitative", "title": "highest", "format": ".4g"}] if band else []
        layers: list[dict[str, Any]] = [
            *shaded,
            {"mark": {"type": "line", "strokeWidth": 1, "clip": True},
             "encoding": {"x": x, "y": y}},
            {"mark": {"type": "point", "opacity": 0, "size": 30},
             "params": [{"name": f"hover{i}", "select": {"type": "point", "fields": ["ts"], "nearest": True,
                                                         "on": "pointerover", "clear": "pointerout"}}],
             "encoding": {"x": x, "y": {"field": "value", "type": "quantitative"}, "tooltip": [
                 {"field": "ts", "type": "temporal", "title": "time", "format": "%Y-%m-%d %H:%M", "formatType": "utc"},
                 {"field": "value", "type": "quantitative", "title": title, "format": ".4g"}, *ranged]}},
            {"mark": {"type": "rule", "color": "#616161"},
             "transform": [{"filter": {"or": [{"param": f"hover{j}", "empty": False} for j in range(len(sensors))]}}],
             "encoding": {"x": x}},
        ]
        if marks is not None:
            layers.append({"data": marks, "mark": {"type": "rule", "strokeWidth": 1.5, "clip": True},
                           "encoding": {"x": x, "color": {"field": "event", "type": "nominal", "title": None,
                                                          "legend": {"orient": "top"},
                                                          "scale": {"domain": list(EVENT_COLOURS),
                                                                    "range": list(EVENT_COLOURS.values())}},
                                        "tooltip": [{"field": "event"}, {"field": "fault_mode"},
                                                    {"field": "detail"}]}})
        panels.append({"transform": [keep], "layer": layers, "width": width, "height": 90})
    return {"vconcat": panels, "resolve": {"scale": {"y": "independent"}}}


def health_chart(frame: pd.DataFrame, value: str, title: str) -> alt.Chart:
    """A time series per fault mode (true wear, or forecast probability / RUL)."""
    return alt.Chart(frame).mark_line(clip=True).encode(
        x=time_x("ts"), y=alt.Y(f"{value}:Q", title=title),
        color=alt.Color("fault_mode:N", title=None)).properties(height=160, width="container")


def kpi_ci_table(summary: pd.DataFrame, kpis: list[str]) -> pd.DataFrame:
    """Line KPIs of one or more runs side by side as 'mean ± half-width of the 95 % CI'."""
    s = summary[(summary.scope == "line") & summary.kpi.isin(kpis)]
    text = [mean_ci_text(m, lo, hi) for m, lo, hi in zip(s["mean"], s.ci_low, s.ci_high)]  # no CI: the mean alone
    return s.assign(value=text).pivot(index="kpi", columns="run", values="value").reindex(
        [k for k in kpis if k in set(s.kpi)])


# --- time charts: line-local times drawn as they are (UTC scale: the browser's zone never shifts them), 24 h ----

AXIS_TIME = alt.Axis(labelExpr="utcFormat(datum.value, '%d.%m %H:%M')", labelOverlap=True, title=None)
LOSSES = ("down", "maintenance", "setup", "starved", "blocked", "waiting_operator", "off_shift")


def time_x(field: str = "ts", domain: tuple[pd.Timestamp, pd.Timestamp] | None = None) -> alt.X:
    scale = alt.Scale(type="utc", domain=[d.isoformat() for d in domain]) if domain else alt.Scale(type="utc")
    return alt.X(f"{field}:T", axis=AXIS_TIME, scale=scale)


def intervals(states: pd.DataFrame, origin: pd.Timestamp, a: float, b: float) -> pd.DataFrame:
    """State intervals (machine, state, start, end in seconds since the start) clipped to [a, b], with times."""
    iv = states[(states.end > a) & (states.start < b)].copy()
    iv["start"], iv["end"] = iv.start.clip(lower=a), iv.end.clip(upper=b)
    iv["hours"] = (iv.end - iv.start) / 3600
    iv["from"] = origin + pd.to_timedelta(iv.start, unit="s")
    iv["to"] = origin + pd.to_timedelta(iv.end, unit="s")
    iv["state"] = iv.state.astype(str)
    return iv


def coarse_bands(iv: pd.DataFrame, origin: pd.Timestamp, a: float, b: float, steps: int = 1200) -> pd.DataFrame:
    """At most `steps` bands per machine: each machine's state sampled at `steps` evenly spaced instants of [a, b]
    and runs of one state joined (intervals shorter than a step are narrower than a pixel at 1920 px anyway)."""
    t = a + (np.arange(steps) + 0.5) * (b - a) / steps
    edges = a + np.arange(steps + 1) * (b - a) / steps
    rows = []
    for machine, g in iv.sort_values("start").groupby("machine", sort=False):
        k = np.clip(np.searchsorted(g.start.to_numpy(), t, side="right") - 1, 0, len(g) - 1)
        state = g.state.to_numpy()[k]
        change = np.flatnonzero(np.r_[True, state[1:] != state[:-1]])
        stop = np.r_[change[1:], steps]
        rows.append(pd.DataFrame({"machine": machine, "state": state[change], "start": edges[change],
                                  "end": edges[stop]}))
    out = pd.concat(rows, ignore_index=True)
    out["hours"] = (out.end - out.start) / 3600
    out["from"] = origin + pd.to_timedelta(out.start, unit="s")
    out["to"] = origin + pd.to_timedelta(out.end, unit="s")
    return out


def state_timeline(iv: pd.DataFrame, order: list[str], domain: tuple[pd.Timestamp, pd.Timestamp]) -> alt.Chart:
    """A Gantt band per machine: what it was doing when (working, starved, blocked, down, ...)."""
    return alt.Chart(iv).mark_bar(height=14).encode(
        x=time_x("from", domain), x2="to:T",
        y=alt.Y("machine:N", sort=order, title=None),
        color=alt.Color("state:N", title="state", scale=alt.Scale(domain=list(STATE_COLOURS),
                                                                  range=list(STATE_COLOURS.values()))),
        tooltip=["machine", "state", alt.Tooltip("from:T", format="%H:%M:%S", formatType="utc"),
                 alt.Tooltip("to:T", format="%H:%M:%S", formatType="utc"), alt.Tooltip("hours:Q", format=".2f")],
    ).properties(height=max(24 * len(order) + 30, 20 * len(STATE_COLOURS) + 30), width="container")  # its legend


def downtime_pareto(iv: pd.DataFrame) -> alt.Chart:
    """Hours lost per machine and reason (state; a stop's downtime reason when known), largest first."""
    lost = iv[iv.state.isin(LOSSES)].copy()
    reason = lost["reason"].fillna("").astype(str) if "reason" in lost else pd.Series("", index=lost.index)
    lost["reason"] = lost.state + reason.map(lambda r: f": {r}" if r else "")
    table = lost.groupby(["machine", "reason"], as_index=False).hours.sum()
    order = table.groupby("machine").hours.sum().sort_values(ascending=False).index.tolist()
    return alt.Chart(table).mark_bar(size=14).encode(
        x=alt.X("hours:Q", title="time lost [h]"), y=alt.Y("machine:N", sort=order, title=None),
        color=alt.Color("reason:N", title="reason"),
        tooltip=["machine", "reason", alt.Tooltip("hours:Q", format=".2f")],
    ).properties(height=max(24 * max(len(order), 1) + 30, 18 * table.reason.nunique() + 40), width="container")


def per_period(frame: pd.DataFrame, value: str, title: str, fmt: str = ".0f") -> alt.Chart:
    """Bars per hour (or shift) of one measure, its unit in the axis title."""
    return alt.Chart(frame).mark_bar().encode(
        x=time_x("period"), y=alt.Y(f"{value}:Q", title=title),
        tooltip=[alt.Tooltip("period:T", format="%Y-%m-%d %H:%M", formatType="utc"),
                 alt.Tooltip(f"{value}:Q", format=fmt)],
    ).properties(height=180, width="container")
