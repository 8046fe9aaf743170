"""Entry point of the live twin dashboard: only routes to the pages (`twin dashboard` starts it)."""

import streamlit as st

st.set_page_config(page_title="linetwin", layout="wide")
st.navigation([
    st.Page("pages/overview.py", title="Line overview", default=True),
    st.Page("pages/machine.py", title="Machine detail"),
    st.Page("pages/alerts.py", title="Alerts"),
    st.Page("pages/history.py", title="History"),
    st.Page("pages/scenarios.py", title="Scenarios"),
    st.Page("pages/models.py", title="Models"),
]).run()
