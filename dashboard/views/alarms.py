"""Alarms: the alarm book of the line (kept in the ledger, so it survives restarts), with each alarm's lifecycle
(active/cleared × unacknowledged/acknowledged); operators acknowledge, clear and comment, recorded with who and when.
"""

import pandas as pd
import streamlit as st

from dashboard import access, data
from sensors.bus.payloads import SEVERITIES

st.title("Alarms")
run = data.pick_run()
if run is not None:
    sc = run.scenario
    line = data.prefix_of(sc)
    broker = data.broker_url()
    me = access.user()
    book = data.ledger()
    left, mid, right = st.columns([1, 1, 2])
    scope = left.selectbox("show", ["active", "all (history)"], key="alarm_scope")
    floor = mid.selectbox("minimum severity", SEVERITIES, index=0, key="min_severity")
    search = right.text_input("search (machine, fault mode, run, who acknowledged)", key="alarm_search")

    def zone(ts: pd.Series, unit: str) -> pd.Series:
        """Wall-clock instants (acknowledgements) in the line's time zone, as naive local times."""
        return pd.to_datetime(ts, unit=unit, utc=True).dt.tz_convert(sc.line.timezone).dt.tz_localize(None)

    def acted_on() -> pd.DataFrame:
        """The alarms the page offers to act on: scope and search (the severity floor filters the table only)."""
        return book.alarms(line, search=search, active=True if scope == "active" else None)

    def signature(alarms: pd.DataFrame) -> tuple[tuple[int, bool, str], ...]:
        """What the controls below depend on: which alarms, active or not, acknowledged by whom."""
        return tuple(zip(alarms.id.astype(int), alarms.active.astype(bool), alarms.acked_by.fillna("")))

    shown = acted_on()
    st.session_state["alarm_signature"] = signature(shown)

    @st.fragment(run_every="2s")
    def book_view() -> None:
        frame = acted_on()
        if signature(frame) != st.session_state.get("alarm_signature"):
            st.rerun()  # an alarm came, went or was acknowledged elsewhere: the whole page, so the controls offer it
        live = data.live(broker, line) if broker else None
        if live is None:
            st.warning("Not connected: no alert source. Alarms arrive over MQTT: start the dashboard with "
                       "`--broker mqtt://host:port` (the broker the forecaster publishes to). The book below is "
                       "the history kept so far.")
        elif not live.connected:
            st.warning(f"Not connected to the alert source {broker}: {live.problem or 'connecting'}. The book below "
                       "may be missing alarms raised meanwhile.")
        frame = frame[frame.severity.map(SEVERITIES.index) >= SEVERITIES.index(floor)] if len(frame) else frame
        if frame.empty:
            which = f"{'active ' if scope == 'active' else ''}alarms" + \
                (" matching the filter" if search or floor != "info" else "")
            if live is not None and live.connected:
                st.success(f"Connected to {broker}: no {which}.")
            elif live is None:  # the page ended under the warning, the book's emptiness unsaid
                st.info(f"The book kept so far holds no {which} of this line; with no alert source it cannot tell "
                        "what is raised now.")
            return
        start = pd.to_datetime(frame.raised_ms, unit="ms")
        end = pd.to_datetime(frame.cleared_ms, unit="ms")
        table = pd.DataFrame({
            "alarm": frame.id,
            "status": [("active" if a else "cleared") + (", acknowledged" if by else ", unacknowledged")
                       for a, by in zip(frame.active, frame.acked_by)],
            "severity": frame.severity, "station": frame.station, "machine": frame.machine,
            "fault mode": frame.fault_mode, "start": start.dt.strftime(data.TIME_FORMAT),
            "end": end.dt.strftime(data.TIME_FORMAT).fillna("–"),
            "duration [h]": ((end - start).dt.total_seconds() / 3600).round(2),
            "P at raise": frame.probability.round(2), "RUL at raise [h]": (frame.rul_s / 3600).round(1),
            "acknowledged by": frame.acked_by.fillna("–"),
            "acknowledged at": zone(frame.acked_at, "s").dt.strftime(data.TIME_FORMAT).fillna("–"),
            "comment": frame.ack_comment.fillna(""), "run": frame.run})
        st.dataframe(table, hide_index=True, width="stretch")
        st.caption(f"start/end in the line's clock ({sc.line.timezone}, 24-hour); acknowledged at in wall-clock "
                   f"time, same zone; cleared by the forecast, by hand, or when the run finished")

    book_view()
    frame = shown
    if len(frame):
        st.subheader("act on an alarm")
        labels = {int(i): f"#{i} {m} {f} ({s}) since {pd.to_datetime(r, unit='ms'):{data.TIME_FORMAT}}"
                  for i, m, f, s, r in zip(frame.id, frame.machine, frame.fault_mode, frame.severity,
                                           frame.raised_ms)}
        pick = st.selectbox("alarm", list(labels), format_func=labels.__getitem__, key="alarm_pick")
        chosen = frame[frame.id == pick].iloc[0]
        ack = (f"acknowledged by {chosen.acked_by} at "
               f"{zone(pd.Series([chosen.acked_at]), 's').iloc[0]:%Y-%m-%d %H:%M} ({sc.line.timezone})"
               + (f": {chosen.ack_comment}" if chosen.ack_comment else "")) if chosen.acked_by else "unacknowledged"
        st.markdown(f"**#{pick}** {'active' if chosen.active else 'cleared'}, {ack}")
        note = st.text_input("comment", key="alarm_comment", max_chars=500,
                             disabled=not me.can("acknowledge"))
        b1, b2, b3 = st.columns(3)
        if not me.can("acknowledge"):
            st.caption(f"{me.name} is a {me.role}: only operators and engineers acknowledge, clear or comment.")
        elif b1.button("acknowledge", key="ack", disabled=bool(chosen.acked_by)):
            book.acknowledge(pick, me.name, note)
            book.audit(me.name, me.role, "acknowledge", f"alarm {pick}: {note}")
            st.rerun()
        elif b2.button("clear", key="clear"):
            book.clear(pick, me.name, note)
            book.audit(me.name, me.role, "clear", f"alarm {pick}: {note}")
            st.rerun()
        elif b3.button("comment", key="comment", disabled=not note):
            book.comment(pick, me.name, note)
            book.audit(me.name, me.role, "comment", f"alarm {pick}: {note}")
            st.rerun()
        log = book.alarm_log(pick)
        if len(log):
            log["at"] = zone(log["at"], "s").dt.strftime("%Y-%m-%d %H:%M:%S")
            st.dataframe(log[["at", "user", "action", "comment"]], hide_index=True, width="stretch")
