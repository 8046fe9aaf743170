"""History: any machines and sensors from the store over the chosen time range, raw or aggregated, one chart per
unit (its axis labelled with it), one series per machine, sensor and replication; to download as CSV or Parquet."""

import io

import streamlit as st

from dashboard import charts, data

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
    c1, c2, c3 = st.columns(3)
    every = c1.selectbox("resolution", ["raw", "10s", "60s", "600s", "3600s"], index=2, key="resolution")
    agg = c2.selectbox("aggregate", ["mean", "min", "max", "last", "count"], disabled=every == "raw")
    reps = sorted(range(run.scenario.replications))
    shown_reps = c3.multiselect("replications", reps, default=reps[:2], key="hist_reps")
    frame = data.query(run.store_url, run.run_id, tuple(machines), tuple(sensors), window.start, window.end,
                       None if every == "raw" else every, agg)
    frame = frame[frame.replication.isin(shown_reps)]
    st.caption(f"{len(frame):,} rows · {window.caption}")
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
    left.download_button("CSV", frame.to_csv(index=False).encode(), f"{run.run_id}.csv", "text/csv")
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    right.download_button("Parquet", buf.getvalue(), f"{run.run_id}.parquet", "application/octet-stream")
