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

pages = [
    st.Page("views/overview.py", title="Line overview", default=True),
    st.Page("views/machine.py", title="Machine detail"),
    st.Page("views/alarms.py", title="Alarms"),
    st.Page("views/history.py", title="History"),
    st.Page("views/scenarios.py", title="Scenarios"),
    st.Page("views/models.py", title="Models"),
    st.Page("views/audit.py", title="Audit log"),
]
# every page is registered before sign-in, so a deep link (/machine?machine=...) opens its page once signed in
page = st.navigation(pages, position="hidden")
user = access.current_user()
kiosk = st.query_params.get("kiosk") in ("1", "true", "yes")
if kiosk:
    st.markdown(KIOSK_CSS, unsafe_allow_html=True)
else:
    for p in pages:
        if p.title != "Audit log" or user.can("audit"):
            st.sidebar.page_link(p)
    st.sidebar.divider()
    st.sidebar.caption(f"signed in as **{user.name}** ({user.role})")
page.run()
