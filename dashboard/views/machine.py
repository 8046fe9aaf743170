"""Machine detail: sensor charts over the chosen time range (live from MQTT while the run holds the store), the
forecast RUL and fault probability, alerts and maintenance marked, and the simulation's ground truth (true wear).
`?machine=NAME` opens a machine directly (the overview's schematic links here)."""

import os

import pandas as pd
import streamlit as st

from dashboard import charts, data

st.title("Machine detail")


run = data.pick_run()
if run is not None:
    sc = run.scenario
    window = data.time_range(run)
    rep = data.replication_pick(run)
    names = [m for s in sc.stations for m in s.machine_names]
    wanted = st.query_params.get("machine")
    if wanted in names and "machine" not in st.session_state:
        st.session_state["machine"] = wanted
    machine = st.selectbox("machine", names, key="machine")
    st.query_params["machine"] = machine
    station = next(s for s in sc.stations if machine in s.machine_names)
    mtype = sc.machine_type_of(station)
    start = window.origin
    a, b = window.seconds()
    every = data.resolution(window)  # the interval every chart of the range is drawn at: per minute up to a day
    problem = data.store_problem(run.store_url)
    broker = data.broker_url()
    live_source = bool(problem) and broker is not None and not run.finished
    if problem and not live_source:
        st.warning(problem)
    catalog = data.series(run.store_url, run.run_id)
    units = dict(zip(catalog[catalog.machine == machine].sensor, catalog[catalog.machine == machine].unit)) \
        if len(catalog) else {}
    ev = run.truth("events")
    if len(ev):
        ev = ev[(ev.machine == machine) & (ev.replication == rep) & ev.event.isin(["failure", "maintenance_start"])]
        ev = ev[(ev.t >= a) & (ev.t <= b)].assign(ts=lambda d: start + pd.to_timedelta(d.t, unit="s"))
    alarms = data.ledger().alarms(data.prefix_of(sc), run=run.run_id, machine=machine)
    alarms = alarms[alarms.replication == rep]
    marks = pd.DataFrame({"ts": pd.to_datetime(alarms.raised_ms, unit="ms"), "event": "alert raised",
                          "fault_mode": alarms.fault_mode, "detail": [f"P={p:.2f}" for p in alarms.probability]})
    marks = marks[(marks.ts >= window.start) & (marks.ts <= window.end)]
    shown_marks = pd.concat([x for x in (ev, marks) if len(x)], ignore_index=True) if len(ev) or len(marks) else None

    @st.fragment(run_every="2s" if live_source else None)
    def sensors() -> None:
        step = 60 if live_source and broker else every  # live: the last minutes, per minute
        if live_source and broker:
            topic = f"{data.prefix_of(sc)}/{station.name}/{machine}/telemetry"
            shown = data.live_machine(broker, topic).frame()
            domain = (shown.ts.min(), shown.ts.max()) if len(shown) else None
        else:  # as many points as the chart shows, with each interval's range beyond per-minute
            ask = (run.store_url, run.run_id, (machine,), None, window.start, window.end, f"{step}s")
            shown = data.query(*ask, "mean", (rep,), ("min", "max") if step > 60 else ())
            shown = shown.rename(columns={"min": "low", "max": "high"})
            domain = (window.start, window.end)
        band = "low" in shown
        st.subheader(f"{station.name} / {machine}: sensors, {data.step_name(step)} means"
                     f"{' and their range' if band else ''} (replication {rep}"
                     f"{', live from MQTT while the run writes the store' if live_source else ''})")
        if shown.empty:
            st.info("No readings of this machine in this time range yet." if mtype.sensors else
                    f"Machine type {station.machine_type} has no sensors in the scenario: its states and failures "
                    "below are all there is to show.")
        else:
            shown = shown[["ts", "sensor", "value", *(["low", "high"] if band else [])]]
            st.vega_lite_chart(shown, charts.sensor_spec(sorted(shown.sensor.unique()), shown_marks, units, domain,
                                                          band=band))
            st.caption(window.caption + ("; shaded: each interval's lowest to highest reading" if band else "")
                       + f"; hover a panel for the values at that {'minute' if step == 60 else 'time'}")

    sensors()
    kpis = run.kpis()
    mine = kpis[(kpis.scope == "machine") & (kpis.entity == machine) & (kpis.replication == rep)] \
        if len(kpis) else kpis
    iv = data.machine_intervals(run, window, rep)
    iv = iv[iv.machine == machine] if len(iv) else iv
    if len(mine) or len(iv):
        st.subheader(f"{machine}: states and stops (replication {rep})")
    if len(mine) or (run.plant and len(iv)):
        # a run's: over the whole replication after its warm-up; a plant's: from its state records in the time range
        k = mine.set_index("kpi").value if len(mine) else data.interval_kpis(iv, run.scenario, window).loc[machine]
        if "energy [kWh]" not in k and run.plant:  # a plant's energy meter (its kWh register) over the range
            metered = data.counted(data.counter_readings(run.store_url, run.run_id, window.start, window.end))
            if (machine, "energy") in metered.index:
                k = pd.concat([k, pd.Series({"energy [kWh]": float(metered[(machine, "energy")])})])
        shown_kpis = (("availability [%]", "availability", "{:.1%}"), ("utilisation [%]", "utilisation", "{:.1%}"),
                      ("failures", "failures", "{:.0f}"), ("MTBF [h]", "mtbf [h]", "{:.1f}"),
                      ("MTTR [min]", "mttr [min]", "{:.1f}"))
        waited = k.get("wait before repair [min]")
        shown_kpis += (("of it waiting [min]", "wait before repair [min]", "{:.1f}"),) \
            if waited is not None and waited == waited and waited > 0.005 else ()  # a crew off shift, a spare part
        shown_kpis += (("minor stops", "minor stops", "{:,.0f}"), ("of its working time [%]", "minor stop share",
                                                                     "{:.1%}")) if "minor stops" in k else ()
        shown_kpis += (("energy [kWh]", "energy [kWh]", "{:,.0f}"),) if "energy [kWh]" in k else ()
        for col, (label, name, fmt) in zip(st.columns(len(shown_kpis)), shown_kpis):
            v = k.get(name)
            col.metric(label, "–" if v is None or v != v else fmt.format(v).rstrip("%"))
        st.caption("over the whole replication after its warm-up (the run's KPIs), not the time range" if len(mine)
                   else "from the plant's state records in the time range (availability over its planned time; a "
                        "stop under way as the range opens counts in its downtime, not as a failure)")
    if sc.products and (station.setup_matrix or station.name in {sc.stations[i].name for i in sc.entries()}):
        now, pairs = data.changeovers(run.store_url, run.run_id, rep, machine, iv, station, window.end)
        if now is not None:
            st.metric("set up for", now, help="the product it was on at the time range's end (the store's product "
                                              "records)")
        if len(pairs):
            st.caption("changeovers in the time range by product pair: how many, their mean length, and what the "
                       "scenario's setup_matrix says (none: no setup planned)")
            st.dataframe(pairs, hide_index=True)
    if len(iv):
        left, right = st.columns([3, 2])
        bands = iv if len(iv) <= 1200 else charts.coarse_bands(iv, window.origin, a, b)
        left.altair_chart(charts.state_timeline(bands, [machine], (window.start, window.end)), width="stretch")
        right.altair_chart(charts.downtime_pareto(iv), width="stretch")
    folder = os.environ.get("LINETWIN_MODELS")
    if folder:
        fc = data.forecasts(run.store_url, run.run_id, start, machine, rep, folder, station.machine_type,
                            (window.start, window.end), every)
        if len(fc):  # of the time range only (beyond per-minute its first interval may open a little before it)
            p = fc.melt(id_vars="ts", value_vars=[c for c in fc if c.startswith("p_") and c != "p_any"],
                        var_name="fault_mode", value_name="p")
            p["fault_mode"] = p.fault_mode.str[2:]
            left, right = st.columns(2)
            left.altair_chart(charts.health_chart(p, "p", "P(failure within horizon) [0–1]"), width="stretch")
            right.altair_chart(charts.health_chart(fc.assign(fault_mode="RUL", rul_h=fc.rul / 3600), "rul_h",
                                                   "forecast RUL [h]"), width="stretch")
            if every > 60:
                st.caption(f"forecasts of every minute, drawn as each {data.step_name(every)} interval's highest "
                           "probability and lowest RUL")
    else:
        st.caption("Forecasts: start the dashboard with `--models DIR` (from `twin train`).")
    h = run.truth("health", rep, machine)
    if len(h):
        h = h[(h.t >= a) & (h.t <= b)].assign(ts=lambda d: start + pd.to_timedelta(d.t, unit="s"))
        if every > 60:  # the sensors' intervals above: each one's highest wear (a failure's reach of 1 is kept)
            h = data.per_interval(h, every, {"wear": "max"}, by=["fault_mode"])
        if len(h):
            st.subheader("ground truth (simulation only): true wear per fault mode"
                         + (f", the highest of each {data.step_name(every)} interval" if every > 60 else ""))
            st.altair_chart(charts.health_chart(h, "wear", "wear [fraction of failure]"), width="stretch")
    if len(ev):
        st.dataframe(ev.assign(ts=ev.ts.dt.strftime("%Y-%m-%d %H:%M:%S"))[["ts", "event", "fault_mode", "detail"]],
                     hide_index=True)
