"""Machine detail: live sensor charts, the forecast RUL and fault probability over time, alerts and
maintenance marked, and the simulation's ground truth (true wear) beside them."""

import os

import pandas as pd
import streamlit as st

from dashboard import charts, data

st.title("Machine detail")


run = data.pick_run()
if run is not None:
    sc = run.scenario
    rep = int(st.sidebar.number_input("replication", 0, max(sc.replications - 1, 0), 0, key="rep"))
    names = [m for s in sc.stations for m in s.machine_names]
    machine = st.selectbox("machine", names, key="machine")
    station = next(s for s in sc.stations if machine in s.machine_names)
    start = pd.Timestamp(sc.start)
    hours = st.slider("window [h since start]", 0.0, sc.duration / 3600, (0.0, min(sc.duration / 3600, 8.0)), 0.25)
    handle = data.store_for(run.store_url)
    if handle.problem:
        st.warning(handle.problem)
    readings = data.query(run.store_url, run.run_id, (machine,), None, start + pd.Timedelta(hours=hours[0]),
                          start + pd.Timedelta(hours=hours[1]))
    readings = readings[readings.replication == rep]
    live_source = False
    broker = data.broker_url()
    if readings.empty and broker and not run.finished:  # the store is busy with the run: per-minute means from MQTT
        topic = f"{data.prefix_of(sc)}/{station.name}/{machine}/telemetry"
        readings = data.live_machine(broker, topic).frame()
        live_source = True
    ev = run.truth("events")
    if len(ev):
        ev = ev[(ev.machine == machine) & (ev.replication == rep) & ev.event.isin(["failure", "maintenance_start"])]
        ev = ev.assign(ts=start + pd.to_timedelta(ev.t, unit="s"))
        ev = ev[(ev.t >= hours[0] * 3600) & (ev.t <= hours[1] * 3600)]
    alerts = pd.DataFrame()
    if broker:
        feed = [a for a in data.live(broker, data.prefix_of(sc)).feed if a.get("machine") == machine]
        if feed:
            alerts = pd.DataFrame({"ts": pd.to_datetime([a["ts"] for a in feed], unit="ms"),
                                   "event": [f"alert {a['state']}" for a in feed],
                                   "fault_mode": [a.get("fault_mode", "") for a in feed],
                                   "detail": [f"P={a['probability']:.2f}" for a in feed]})
    marks = pd.concat([x for x in (ev, alerts) if len(x)], ignore_index=True) if len(ev) or len(alerts) else None

    @st.fragment(run_every="2s" if live_source else None)
    def sensors() -> None:
        shown = data.live_machine(broker, f"{data.prefix_of(sc)}/{station.name}/{machine}/telemetry").frame() \
            if live_source and broker else readings
        st.subheader(f"{station.name} / {machine}: sensors (per-minute means"
                     f"{', live from MQTT while the run writes the store' if live_source else ''})")
        if shown.empty:
            st.info("No readings of this machine for this window yet.")
        else:
            st.altair_chart(charts.sensor_chart(shown[["ts", "sensor", "value"]], marks), width="stretch")

    sensors()
    folder = os.environ.get("LINETWIN_MODELS")
    if folder:
        fc = data.forecasts(run.store_url, run.run_id, start, machine, rep, folder, station.machine_type)
        if len(fc):
            fc = fc[(fc.ts >= start + pd.Timedelta(hours=hours[0])) & (fc.ts <= start + pd.Timedelta(hours=hours[1]))]
            p = fc.melt(id_vars="ts", value_vars=[c for c in fc if c.startswith("p_") and c != "p_any"],
                        var_name="fault_mode", value_name="p")
            p["fault_mode"] = p.fault_mode.str[2:]
            left, right = st.columns(2)
            left.altair_chart(charts.health_chart(p, "p", "P(failure within horizon)"), width="stretch")
            right.altair_chart(charts.health_chart(fc.assign(fault_mode="RUL", rul_h=fc.rul / 3600), "rul_h",
                                                   "forecast RUL [h]"), width="stretch")
    else:
        st.caption("Forecasts: start the dashboard with `--models DIR` (from `twin train`).")
    health = run.truth("health")
    if len(health):
        h = health[(health.machine == machine) & (health.replication == rep)]
        h = h[(h.t >= hours[0] * 3600) & (h.t <= hours[1] * 3600)].assign(ts=lambda d: start + pd.to_timedelta(d.t,
                                                                                                              unit="s"))
        if len(h):
            st.subheader("ground truth (simulation only): true wear per fault mode")
            st.altair_chart(charts.health_chart(h, "wear", "wear (1 = fails)"), width="stretch")
    if len(ev):
        st.dataframe(ev[["ts", "event", "fault_mode", "detail"]], hide_index=True)
