"""History: any machines and sensors from the store over the chosen time range, raw or aggregated, one chart per
unit (its axis labelled with it), one series per machine, sensor and replication; to download as CSV or Parquet."""

import io

import pandas as pd
import streamlit as st

from dashboard import charts, data


def parquet_of(frame: pd.DataFrame) -> bytes:
    """The rows shown, as a Parquet file's bytes (for the download, made when it is clicked)."""
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


st.title("History")
run = data.pick_run()
if run is not None:
    window = data.time_range(run)
    problem = data.store_problem(run.store_url)
    if problem:
        st.warning(problem)
        st.stop()
    cat = data.series(run.store_url, run.run_id)
    machines = st.multiselect("machines", sorted(cat.machine.unique()), default=sorted(cat.machine.unique())[:1])
    sensors = st.multiselect("sensors", sorted(cat[cat.machine.isin(machines)].sensor.unique()),
                             default=sorted(cat[cat.machine.isin(machines)].sensor.unique())[:3])
    if not machines or not sensors:  # the store's query reads every machine (or sensor) when given none
        st.info("Pick one or more machines and sensors to see their history.")
        st.stop()
    c1, c2, c3 = st.columns(3)
    auto = data.resolution(window)
    picked = c1.selectbox("resolution", ["auto", "raw", "10s", "60s", "600s", "3600s"], key="resolution",
                          help=f"auto: {data.step_name(auto)} over this time range (at most {data.POINTS:,} points a "
                               "series)")
    every = f"{auto}s" if picked == "auto" else picked
    agg = c2.selectbox("aggregate", ["mean", "min", "max", "last", "count"], disabled=every == "raw")
    reps = sorted(range(run.scenario.replications))
    shown_reps = tuple(c3.multiselect("replications", reps, default=reps[:2], key="hist_reps"))
    ask = (run.store_url, run.run_id, tuple(machines), tuple(sensors))
    # the rows asked for, before asking: raw readings counted by the store, intervals at most one a series each
    if every == "raw":
        rows = data.rows_in(*ask, shown_reps, window)
    else:
        pairs = len(cat[cat.machine.isin(machines) & cat.sensor.isin(sensors)].drop_duplicates(["machine", "sensor"]))
        span = (window.end - window.start).total_seconds()
        rows = pairs * len(shown_reps) * int(-(-span // pd.Timedelta(every).total_seconds()))
    if rows > data.DRAWN:
        m, s, r = (f"{k} {what}{'s' if k != 1 else ''}" for k, what in (
            (len(machines), "machine"), (len(sensors), "sensor"), (len(shown_reps), "replication")))
        st.warning(f"{'Raw readings' if every == 'raw' else f'Intervals of {every}'} of {m}, {s} and {r} over "
                   "this time range come to "
                   f"{'' if every == 'raw' else 'up to '}{rows:,} rows, more than this page draws ({data.DRAWN:,}). "
                   f"Pick a coarser resolution ('auto' takes {data.step_name(auto)} here), fewer machines, sensors "
                   "or replications, or a shorter time range. Every raw reading of a simulated run is also in its "
                   "readings.parquet, and of any run in its store.")
        st.stop()
    frame = data.query(*ask, window.start, window.end, None if every == "raw" else every, agg, shown_reps)
    st.caption(f"{len(frame):,} rows · {window.caption}"
               + (f" · auto: {data.step_name(auto)} intervals" if picked == "auto" else ""))
    if len(frame):
        units = cat.drop_duplicates(["machine", "sensor"]).set_index(["machine", "sensor"]).unit
        frame = frame.assign(unit=[units.get((m, s), "") for m, s in zip(frame.machine, frame.sensor)],
                             series=frame.machine + "/" + frame.sensor + " rep " + frame.replication.astype(str))
        for unit, g in frame.groupby("unit", sort=True):
            label = f"{agg if every != 'raw' and agg != 'count' else ''} value [{unit or 'no unit'}]".strip()
            if agg == "count" and every != "raw":
                label = "readings per interval [count]"
            spec = {"mark": {"type": "line", "strokeWidth": 1, "clip": True}, "width": "container", "height": 220,
                    "encoding": {
                        "x": {"field": "ts", "type": "temporal", "axis": charts.AXIS_TIME.to_dict(),
                              "scale": {"type": "utc", "domain": [window.start.isoformat(), window.end.isoformat()]}},
                        "y": {"field": "value", "type": "quantitative", "title": label, "scale": {"zero": False}},
                        "color": {"field": "series", "type": "nominal", "title": None,
                                  "legend": {"orient": "top", "columns": 3, "labelLimit": 400}},
                        "tooltip": [{"field": "series"},
                                    {"field": "ts", "type": "temporal", "format": "%Y-%m-%d %H:%M:%S",
                                     "formatType": "utc"}, {"field": "value", "type": "quantitative"}]}}
            st.vega_lite_chart(g[["ts", "value", "series"]], spec, width="stretch")
    st.dataframe(frame.head(5000), hide_index=True)
    left, right = st.columns(2)
    # made when clicked, not on every rerun of the page
    left.download_button("CSV", lambda: frame.to_csv(index=False).encode(), f"{run.run_id}.csv", "text/csv")
    right.download_button("Parquet", lambda: parquet_of(frame), f"{run.run_id}.parquet", "application/octet-stream")
