"""Line overview: KPI tiles of the replication on screen (the running one, live), the line coloured by machine
state (click a machine to open it), the bottleneck and why, a state timeline, the downtime Pareto and output and OEE
per hour and per shift over the chosen time range."""

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import charts, data
from twin.kpi import LOSS, LOSS_FACTORS
from twin.scenario import buffer_station

st.title("Line overview")
TILES = [("throughput [parts/h]", "throughput [parts/h]", "{:,.0f}", 1.0),
         ("WIP [parts]", "wip [parts]", "{:,.1f}", 1.0), ("lead time [min]", "lead time [min]", "{:,.1f}", 1.0),
         ("OEE [%]", "oee", "{:.1f}", 100.0), ("availability [%]", "oee availability", "{:.1f}", 100.0),
         ("performance [%]", "oee performance", "{:.1f}", 100.0), ("quality [%]", "oee quality", "{:.1f}", 100.0)]

STATUS = {"lost": "lost: its process ended without writing its end (killed, or out of memory)"}
run = data.pick_run()
if run is not None:
    sc = run.scenario
    window = data.time_range(run)
    rep = data.replication_pick(run)
    broker = data.broker_url()
    names = [m for s in sc.stations for m in s.machine_names]

    def tiles(values: dict[str, float], reference: dict[str, float], note: str, alarms: int) -> None:
        rows = [st.columns(4), st.columns(4)]
        cols = [c for r in rows for c in r]
        for col, (label, key, fmt, scale) in zip(cols, TILES):
            v, ref = values.get(key), reference.get(key)
            delta = None if v is None or ref is None or pd.isna(ref) else f"{(v - ref) * scale:+.1f}"
            col.metric(label, fmt.format(v * scale) if v is not None and not pd.isna(v) else "–", delta=delta,
                       delta_color="off" if key in ("wip [parts]", "lead time [min]") else "normal")
        cols[7].metric("active alarms", alarms)
        if (per := values.get("energy per good part [kWh]")) is not None or values.get("energy [kWh]") is not None:
            e1, e2, _, _ = st.columns(4)  # machine types' power (a run) or energy meters (a plant)
            ref = reference.get("energy per good part [kWh]")
            e1.metric("energy per good part [kWh]", "–" if per is None or pd.isna(per) else f"{per:,.3g}",
                      delta=None if per is None or ref is None or pd.isna(ref) or pd.isna(per) else f"{per - ref:+.3g}",
                      delta_color="inverse")
            e2.metric("energy [kWh]", f"{values.get('energy [kWh]', float('nan')):,.0f}")
        if "first pass yield" in values:  # a line with rework stations (ISO 22400)
            q1, q2, _, _ = st.columns(4)
            for col, label, key in ((q1, "first pass yield [%]", "first pass yield"),
                                    (q2, "rework ratio [%]", "rework ratio")):
                v, ref = values.get(key), reference.get(key)
                col.metric(label, "–" if v is None or pd.isna(v) else f"{100 * v:.1f}",
                           delta=None if v is None or ref is None or pd.isna(ref) or pd.isna(v) else
                           f"{100 * (v - ref):+.1f}", delta_color="normal" if key == "first pass yield" else "inverse")
        targets = [(label, key, goal, fmt, scale) for label, key, goal, fmt, scale in (
            ("shift target [parts/h]", "throughput [parts/h]", sc.targets.throughput, "{:,.0f}", 1.0),
            ("shift target OEE [%]", "oee", sc.targets.oee, "{:.1f}", 100.0)) if goal is not None]
        if targets:  # a tile per target: the target, and how far the line is above or below it
            for col, (label, key, goal, fmt, scale) in zip(st.columns(4), targets):
                v = values.get(key)
                known = v is not None and not pd.isna(v)
                gap = fmt.replace("{:", "{:+").format((v - goal) * scale) if known else ""
                col.metric(label, fmt.format(goal * scale), delta=f"{gap} ({v / goal:.0%} of it)" if known else None,
                           help="the scenario's `targets`; the change is the line's figure above (green) or below "
                           "(red) it")
        st.caption(note)

    def _plant_kpis() -> dict[str, float]:
        """A plant's line figures over the time range (ISO 22400), from its state records and part counters."""
        iv = data.machine_intervals(run, window, rep)
        readings = data.counter_readings(run.store_url, run.run_id, window.start, window.end)
        return data.plant_kpis(sc, iv, data.counted(readings), window)

    @st.fragment(run_every="1s")
    def live_view() -> None:
        live = data.live(broker, data.prefix_of(sc)) if broker else None
        is_live = live is not None and live.of(run.run_id) and not run.finished
        problem = data.store_problem(run.store_url)
        if problem and not is_live:
            st.warning(problem)
        if live is not None and live.problem and not live.connected:
            st.warning(f"MQTT: {live.problem}; retrying")
        kpis = run.kpis()
        from_plant = False
        line_kpis = kpis[kpis.scope == "line"] if len(kpis) else kpis
        if is_live and live is not None and live.kpis:
            with live.lock:
                values, at = dict(live.kpis), live.kpis_at
                before, since = live.trend_reference()
            clock = window.origin + pd.Timedelta(seconds=at)
            span = ("over the last hour" if at - since >= 3600 else
                    f"since {window.origin + pd.Timedelta(seconds=since):%H:%M}")
            note = (f"live: replication {live.replication} so far, at {clock:%H:%M} ({sc.line.timezone}); the "
                    f"change is {span} of line time")
        elif len(line_kpis) and rep in set(line_kpis.replication):
            table = line_kpis.pivot_table(index="replication", columns="kpi", values="value")
            # against the replications' mean; one alone has nothing to be compared with (every tile read '+0.0')
            values, before = table.loc[rep].to_dict(), table.mean().to_dict() if len(table) > 1 else {}
            note = (f"replication {rep}, one of {len(table)} finished; the change is against their mean"
                    if len(table) > 1 else f"replication {rep}, finished")
        elif run.plant:  # a real line's data: its availability from its state records; no part counts for the rest
            values, before, from_plant = _plant_kpis(), {}, True
            note = ("plant data, over the time range (ISO 22400): availability (the constraint station's working "
                    "share of the planned time) from the state records" +
                    ("; throughput and OEE from the good-part counters of the line's last stations" if "oee" in values
                     else "; throughput and OEE need good-part counters (docs/connect.md)") +
                    ("; performance from the constraint's counters, quality what is left" if "oee performance" in
                     values else ""))
        elif run.finished:
            values, before, note = {}, {}, "no KPIs: the run ended before its first replication did"
        else:
            values, before, note = {}, {}, "no KPIs yet: the first replication is still running"
        alarms = data.ledger().alarms(data.prefix_of(sc), active=True, run=run.run_id) if not run.finished \
            else pd.DataFrame()
        tiles(values, before, note, len(alarms))
        if is_live and live is not None:
            states, buffers, products = dict(live.states), dict(live.buffers), dict(live.products)
        else:  # the last stored: the line as the run (or the plant's data) left it
            states, buffers = data.last_states(run.store_url, run.run_id, rep)
            products = data.last_products(run.store_url, run.run_id, rep) if sc.products else {}
        ringed = {m: {"state": "raised"} for m in (alarms.machine if len(alarms) else [])}
        st.caption(f"{data.prefix_of(sc)} · run {run.run_id} · {STATUS.get(run.status, run.status)} · "
                   f"states from {'MQTT (live)' if is_live else 'the store'} · click a machine to open it")
        for dot in charts.line_dots(sc, states, ringed, buffers, link="machine", products=products):  # a row each
            st.graphviz_chart(dot, width="stretch")
        if len(values):
            explain(values, kpis[(kpis.scope == "station") & (kpis.replication == rep)] if len(kpis) else kpis)
            losses(values, from_plant)
            buffers_used(kpis[(kpis.scope == "buffer") & (kpis.replication == rep)] if len(kpis) else kpis)
            spares_used(kpis[(kpis.scope == "spare") & (kpis.replication == rep)] if len(kpis) else kpis)
            crews_used(kpis[(kpis.scope == "crew") & (kpis.replication == rep)] if len(kpis) else kpis)
            orders_made(kpis[(kpis.scope == "order") & (kpis.replication == rep)] if len(kpis) else kpis)

    def losses(values: dict[str, float], from_plant: bool) -> None:
        """Where the planned time of the replication on screen (live: so far; a plant's data: the time range) went at
        the line's constraint station: the OEE's losses by state, speed, scrap and rework, and the OEE left (`twin
        run`'s table of them)."""
        line = pd.Series(values, dtype=float)
        lost = line[line.index.str.startswith(LOSS)].dropna()
        if lost.empty or pd.isna(line.get("oee", line.get("oee availability"))):
            return
        names = lost.index.str.removeprefix(LOSS)
        shown = pd.DataFrame({"OEE factor": [LOSS_FACTORS.get(n, data.PLANT_LOSS_FACTORS.get(n, "")) for n in names],
                              "share of planned time [%]": (100 * lost.to_numpy()).round(1)},
                             index=pd.Index(names, name="loss"))
        shown = shown[shown["share of planned time [%]"] > 0]
        if pd.isna(line.get("oee")):  # a plant's data without part counters: how its working time went is unknown
            shown.loc["working (speed and quality need part counters)"] = ["", round(100 * float(
                line["oee availability"]), 1)]
        else:
            shown.loc["OEE (fully productive)"] = ["", round(100 * float(line["oee"]), 1)]
        with st.expander(f"OEE losses: where the planned time went at {sc.stations[sc.constraint()].name}, the "
                         "constraint station", expanded=True):
            st.dataframe(shown, width="stretch")
            if from_plant:
                st.caption("plant data: the states from its state records (minor stops show as working there, so "
                           "they are in speed); scrap is what the constraint made that did not leave the line as a "
                           "good part by its last stations' counters (rework and parts still inside too)")

    def buffers_used(rows: pd.DataFrame) -> None:
        """The replication's buffers: how full each was on average, at most, and how long full or empty."""
        if rows.empty:
            return
        table = rows.pivot_table(index="entity", columns="kpi", values="value", sort=False)
        caps = {s.name: s.buffer for s in sc.stations}
        shown = pd.DataFrame({
            "capacity": [caps.get(buffer_station(b)) for b in table.index],
            "mean level": table["buffer level [parts]"].round(2), "highest": table["buffer max level [parts]"],
            **{f"{k} [%]": (100 * table[f"buffer {k} share"]).round(1) for k in ("full", "empty")
               if f"buffer {k} share" in table}}, index=table.index.rename("buffer"))
        with st.expander("buffers: how full, and how long full or empty (full: the station before it blocked)"):
            st.dataframe(shown, width="stretch")

    def spares_used(rows: pd.DataFrame) -> None:
        """The replication's spare parts: repairs that needed one, how many waited for it, how long, the stock held."""
        if rows.empty:
            return
        table = rows.pivot_table(index="entity", columns="kpi", values="value", sort=False)
        shown = pd.DataFrame({"repairs": table["repairs"].astype(int),
                              "waited [%]": (100 * table["stock-out share"]).round(1),
                              "mean wait [h]": table["wait for part [h]"].round(2),
                              "services": table["services"].astype(int),
                              "mean stock": table["mean stock"].round(2)}, index=table.index.rename("spare"))
        with st.expander("spare parts: repairs that waited for one (down) and the stock held"):
            st.dataframe(shown, width="stretch")

    def crews_used(rows: pd.DataFrame) -> None:
        """The replication's repair crews: technicians, when they are there, on call, and how busy on their shifts."""
        if rows.empty:
            return
        busy = rows.set_index("entity")["value"]
        crews = [c for c in sc.repair_crews if c.name in busy.index]
        shown = pd.DataFrame({
            "technicians": [c.size for c in crews],
            "there": [c.there() for c in crews],
            "on call [min]": [None if c.on_call is None else round(c.on_call / 60, 1) for c in crews],
            "utilisation [%]": [round(100 * float(busy[c.name]), 1) for c in crews]},
            index=pd.Index([c.name for c in crews], name="crew"))
        with st.expander("repair crews: how busy their technicians were on their shifts"):
            st.dataframe(shown, width="stretch")

    def orders_made(rows: pd.DataFrame) -> None:
        """The replication's orders (`orders:`, released in turn before the plan): whether each was made, and when its
        last good part left the line (`twin run`'s table of them, for this replication)."""
        if rows.empty:
            return
        table = rows.pivot_table(index="entity", columns="kpi", values="value", sort=False)
        start = pd.Timestamp(sc.start).tz_localize(None)
        shown = pd.DataFrame({
            "made": ["yes" if m == 1 else "not yet" for m in table["made"]],
            "done at": ["" if pd.isna(h) else f"{start + pd.Timedelta(hours=float(h)):%a %Y-%m-%d %H:%M}"
                        for h in table["done [h]"]]}, index=table.index.rename("order"))
        with st.expander(f"orders: {int(table['made'].sum())} of {len(table)} made, each released in turn before "
                         "the plan", expanded=True):
            st.dataframe(shown, width="stretch")

    def explain(values: dict[str, float], stations: pd.DataFrame) -> None:
        b, c = values.get("bottleneck station"), values.get("constraint station")
        if b is None or pd.isna(b) or stations.empty:
            return
        active = stations[stations.kpi == "active share"].set_index("entity")["value"]
        name = sc.stations[int(b)].name
        rest = active.drop(name, errors="ignore")
        runner_up = f"; next: {rest.idxmax()} at {rest.max():.0%}" if len(rest) else ""
        st.info(f"**Bottleneck: {name}**: active (working, setting up, down or in maintenance: anything but "
                f"waiting for parts, space or people) {active.get(name, np.nan):.0%} of the time, "
                f"the most of any station{runner_up}. Stations upstream of it block, downstream ones starve; an hour "
                f"gained there is an hour gained by the line. Constraint by design (lowest rate per visit): "
                f"{sc.stations[int(c)].name if c is not None and not pd.isna(c) else '–'}."
                + "".join(f" Note: {n}." for n in sc.conveyor_notes()))  # a conveyor limits flow: no station does

    live_view()
    st.caption(window.caption)
    a, b = window.seconds()
    iv = data.machine_intervals(run, window, rep)
    if run.plant:
        st.info("Plant data (`twin connect`): the machines' states and readings are the real line's; there is no "
                "ground truth (true wear) and no simulated KPIs. The state timeline and Pareto below come from "
                "the store's state records.")
    if iv.empty and not run.plant:
        st.info("The state timeline, downtime Pareto and hourly figures appear when the replication has finished "
                "(the live tiles and line above follow the running one).")
    if len(iv):
        t1, t2, t3 = st.tabs(["state timeline", "downtime Pareto", "per hour and shift"])
        bands = iv if len(iv) <= 3 * 1200 else charts.coarse_bands(iv, window.origin, a, b)
        t1.altair_chart(charts.state_timeline(bands, names, (window.start, window.end)), width="stretch")
        if len(bands) < len(iv):
            t1.caption(f"{len(iv):,} state changes drawn as each machine's state every {(b - a) / 1200:.0f} s; "
                       "narrow the time range for every change (the Pareto counts them all)")
        t2.altair_chart(charts.downtime_pareto(iv), width="stretch")
        parts, kpis = run.truth("parts", rep), run.kpis()
        if run.plant:  # its good parts out of the line from its part counters (docs/connect.md), when it has them
            readings = data.counter_readings(run.store_url, run.run_id, window.start, window.end)
            parts = data.plant_exits(sc, readings, window).assign(replication=rep)
        with t3:
            hourly = data.energy_per_period(sc, iv, data.per_period(
                sc, parts[parts.replication == rep] if len(parts) else parts,
                kpis[kpis.replication == rep] if len(kpis) else kpis, window))
            if hourly.empty:
                st.info("No parts left the line in this time range." if not run.plant else "No good parts counted "
                        "at the line's last stations in this time range: map their part counters as the sensor "
                        "good_parts (docs/connect.md).")
            else:
                left, right = st.columns(2)
                left.altair_chart(charts.per_period(hourly, "good", "good parts per hour"),
                                  width="stretch")
                right.altair_chart(charts.per_period(hourly.assign(oee=hourly.oee * 100), "oee",
                                                     "OEE per hour [%]", ".1f"), width="stretch")
                st.dataframe(data.per_shift(sc, hourly), hide_index=True)
                st.caption("OEE per hour = good parts × the constraint station's ideal cycle per part ÷ planned "
                           "time in the hour (ISO 22400's fully productive ÷ planned busy time); good parts = parts "
                           "leaving the line in that hour, not scrapped"
                           + ("; OEE counts those good the first time (not sent to rework)"
                              if "reworked" in parts.columns else "")
                           + ("; energy = each machine's time in each state × its type's power in the scenario"
                              if "energy" in hourly else ""))
