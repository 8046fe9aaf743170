"""Models: evaluation reports of the forecasters (scores and plots), and of the generators of synthetic windows
(quality scores, real vs synthetic windows per fault mode, the rare-fault experiment)."""

import pandas as pd
import streamlit as st

from dashboard import data
from predictors.evaluate import readable

st.title("Models")
folder = data.reports_dir()
reports = sorted((p.parent for p in folder.glob("*/report.md") if not p.parent.name.startswith(("compare-", "tune-"))),
                 key=lambda p: (p / "report.md").stat().st_mtime, reverse=True)  # the latest evaluation first
if not reports:
    st.info(f"No model reports in {folder} yet: `twin evaluate RUNS --models DIR --out {folder}/NAME` writes one.")
else:
    pick = st.selectbox("report", [p.name for p in reports], key="report")
    report = folder / pick
    for scores in sorted(report.glob("scores-*.csv")):
        group = scores.stem.removeprefix("scores-")
        st.subheader(group)
        df = pd.read_csv(scores)
        if "time_unit" in df:  # as `twin evaluate` printed it: times in hours (twin data) or cycles (tables)
            st.dataframe(readable(df, str(df.time_unit.iloc[0])), hide_index=True)
        else:  # a report written before its scores named their time unit: the figures as stored
            cols = [c for c in ("model", "rmse", "mae", "score", "row_f1", "alert_precision", "alert_recall",
                                "alert_f1", "alert_lead_mean") if c in df]
            st.dataframe(df[cols], hide_index=True)
            st.caption("Times in the data's own unit (seconds for twin runs, cycles for tables).")
        images = [p for p in (report / f"rul-{group}.png", report / f"alerts-{group}.png") if p.exists()]
        for col, img in zip(st.columns(len(images) or 1), images):
            col.image(str(img))
    for quality in sorted(report.glob("quality-*.csv")):
        group = quality.stem.removeprefix("quality-")
        st.subheader(f"{group}: synthetic vs real windows")
        st.dataframe(pd.read_csv(quality), hide_index=True)
        windows, embedding = report / f"windows-{group}.png", report / f"embedding-{group}.png"
        if windows.exists():
            st.image(str(windows), caption="real (black) and synthetic windows asked for the same fault mode and "
                                           "severity")
        if embedding.exists():
            st.image(str(embedding), caption="PCA and t-SNE of real and synthetic windows")
    if (report / "anomaly-alerts.csv").exists():
        st.subheader("alerts on the VAE's anomaly score, against real failures")
        st.dataframe(pd.read_csv(report / "anomaly-alerts.csv"), hide_index=True)
    if (report / "augmentation.csv").exists():
        st.subheader("a rare fault mode, with and without synthetic windows")
        st.dataframe(pd.read_csv(report / "augmentation.csv"), hide_index=True)
