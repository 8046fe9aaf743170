"""Alerts: the live feed from MQTT (retained current alerts first), filtered, acknowledged per session."""

import pandas as pd
import streamlit as st

from dashboard import data
from sensors.bus.payloads import SEVERITIES

st.title("Alerts")
run = data.pick_run()
broker = data.broker_url()
if run is not None:
    if broker is None:
        st.info("Alerts arrive over MQTT: start the dashboard with `--broker mqtt://host:port` (the broker the "
                "forecaster publishes to, e.g. `twin run FILE --models DIR --dashboard`).")
    floor = st.sidebar.selectbox("minimum severity", SEVERITIES, index=0, key="min_severity")
    acked: set[str] = st.session_state.setdefault("acked", set())

    @st.fragment(run_every="1s")
    def feed() -> None:
        live = data.live(broker, data.prefix_of(run.scenario)) if broker else None
        rows = list(live.feed) if live is not None else []
        frame = pd.DataFrame(rows)
        if frame.empty:
            st.success("No alerts.")
            return
        frame["key"] = frame.machine + "@" + frame.ts.astype(str)
        frame = frame[frame.severity.map(SEVERITIES.index) >= SEVERITIES.index(floor)]
        frame["time"] = pd.to_datetime(frame.ts, unit="ms")
        frame["RUL [h]"] = [r["estimate_s"] / 3600 for r in frame.rul]
        frame["acknowledged"] = frame.key.isin(acked)
        st.dataframe(frame.iloc[::-1][["time", "station", "machine", "state", "severity", "fault_mode",
                                       "probability", "RUL [h]", "acknowledged"]], hide_index=True)
        open_ = frame[(frame.state != "cleared") & ~frame.acknowledged]
        if len(open_):
            st.selectbox("acknowledge", open_.key.tolist(), key="ack_pick")
            st.button("acknowledge", key="ack", on_click=lambda: acked.add(st.session_state.ack_pick))

    feed()
