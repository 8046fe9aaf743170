"""History: any time range, machines and sensors from the store, raw or aggregated, to download."""

import io

import pandas as pd
import streamlit as st

from dashboard import data

st.title("History")
run = data.pick_run()
if run is not None:
    handle = data.store_for(run.store_url)
    if handle.problem:
        st.warning(handle.problem)
        st.stop()
    cat = data.series(run.store_url, run.run_id)
    machines = st.multiselect("machines", sorted(cat.machine.unique()), default=sorted(cat.machine.unique())[:1])
    sensors = st.multiselect("sensors", sorted(cat[cat.machine.isin(machines)].sensor.unique()),
                             default=sorted(cat[cat.machine.isin(machines)].sensor.unique())[:3])
    sc = run.scenario
    start = pd.Timestamp(sc.start)
    hours = st.slider("time since start [h]", 0.0, sc.duration / 3600, (0.0, min(sc.duration / 3600, 8.0)), 0.25)
    every = st.selectbox("resolution", ["raw", "10s", "60s", "600s", "3600s"], index=2)
    agg = st.selectbox("aggregate", ["mean", "min", "max", "last", "count"], disabled=every == "raw")
    frame = data.query(run.store_url, run.run_id, tuple(machines), tuple(sensors),
                       start + pd.Timedelta(hours=hours[0]), start + pd.Timedelta(hours=hours[1]),
                       None if every == "raw" else every, agg)
    st.caption(f"{len(frame):,} rows")
    if len(frame):
        st.line_chart(frame.assign(series=frame.machine + "/" + frame.sensor), x="ts", y="value", color="series")
    st.dataframe(frame.head(5000), hide_index=True)
    left, right = st.columns(2)
    left.download_button("CSV", frame.to_csv(index=False).encode(), f"{run.run_id}.csv", "text/csv")
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    right.download_button("Parquet", buf.getvalue(), f"{run.run_id}.parquet", "application/octet-stream")
