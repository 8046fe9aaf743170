"""Audit log (engineers): who acknowledged, cleared or commented an alarm, started a run or uploaded a file, when."""

import pandas as pd
import streamlit as st

from dashboard import access, data

st.title("Audit log")
if not access.user().can("audit"):
    st.error("Only engineers read the audit log.")
    st.stop()
search = st.text_input("search (user, action, detail)", key="audit_search")
log = data.ledger().audit_log(search)
if log.empty:
    st.info("Nothing recorded yet.")
else:
    log["at"] = pd.to_datetime(log["at"], unit="s", utc=True).dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S")
    st.dataframe(log.rename(columns={"at": "at (UTC)"}), hide_index=True, width="stretch")
    st.download_button("CSV", log.to_csv(index=False).encode(), "audit.csv", "text/csv")
