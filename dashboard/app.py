"""Entry point of the live twin dashboard: signs the user in, then routes to the pages (`twin dashboard` starts it).
`?kiosk=1` shows a page without sidebar and menus, in large type, for a shop-floor screen."""

import streamlit as st

from dashboard import access

st.set_page_config(page_title="linetwin", layout="wide")
KIOSK_CSS = """<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], header, footer {display: none !important;}
html, body, [data-testid="stAppViewContainer"] {font-size: 22px;}
[data-testid="stMetricValue"] {font-size: 3rem;}
</style>"""

user = access.current_user()
kiosk = st.query_params.get("kiosk") in ("1", "true", "yes")
if kiosk:
    st.markdown(KIOSK_CSS, unsafe_allow_html=True)
else:
    st.sidebar.caption(f"signed in as **{user.name}** ({user.role})")
pages = [
    st.Page("pages/overview.py", title="Line overview", default=True),
    st.Page("pages/machine.py", title="Machine detail"),
    st.Page("pages/alerts.py", title="Alarms", url_path="alarms"),
    st.Page("pages/history.py", title="History"),
    st.Page("pages/scenarios.py", title="Scenarios"),
    st.Page("pages/models.py", title="Models"),
]
if user.can("audit"):
    pages.append(st.Page("pages/audit.py", title="Audit log"))
st.navigation(pages, position="hidden" if kiosk else "sidebar").run()
