"""Line overview: the line in flow order coloured by live machine state, KPI tiles, active alerts."""

import streamlit as st

from dashboard import charts, data

st.title("Line overview")
run = data.pick_run()
if run is not None:
    sc = run.scenario
    rep = int(st.sidebar.number_input("replication", 0, max(sc.replications - 1, 0), 0, key="rep"))
    broker = data.broker_url()

    @st.fragment(run_every="1s")
    def live_view() -> None:
        handle = data.store_for(run.store_url)
        live = data.live(broker, data.prefix_of(sc)) if broker else None
        if handle.problem:
            st.warning(handle.problem)
        if live is not None and live.problem and not live.connected:
            st.warning(f"MQTT: {live.problem}; retrying")
        states = dict(live.states) if live is not None and live.states else data.last_states(
            run.store_url, run.run_id, rep)
        kpis = run.kpis()
        line_kpis = (kpis[(kpis.scope == "line") & (kpis.replication == rep)].set_index("kpi")["value"].to_dict()
                     if len(kpis) else dict(live.kpis) if live is not None else {})
        alerts = dict(live.alerts) if live is not None else {}
        active = [a for a in alerts.values() if a.get("state") in ("raised", "updated")]
        cols = st.columns(7)
        for col, (name, key, fmt) in zip(cols, [
                ("throughput", "throughput [parts/h]", "{:,.0f}/h"), ("WIP", "wip [parts]", "{:,.1f}"),
                ("OEE", "oee", "{:.1%}"), ("availability", "oee availability", "{:.1%}"),
                ("performance", "oee performance", "{:.1%}"), ("quality", "oee quality", "{:.1%}")]):
            v = line_kpis.get(key)
            col.metric(name, fmt.format(v) if v is not None else "–")
        cols[6].metric("active alerts", len(active))
        st.caption(f"{sc.line.site}/{sc.line.area}/{sc.line.name} · run {run.run_id} · "
                   f"{'finished' if run.finished else 'running'} · states from "
                   f"{'MQTT (live)' if live is not None and live.states else 'the store'}")
        buffers = dict(live.buffers) if live is not None else {}
        st.graphviz_chart(charts.line_dot(sc, states, alerts, buffers), width="stretch")
        if active:
            st.dataframe([{k: a.get(k) for k in ("station", "machine", "severity", "fault_mode", "probability")}
                          for a in active], hide_index=True)

    live_view()
