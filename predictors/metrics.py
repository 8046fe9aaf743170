"""Scores of RUL and fault forecasts, as defined in the prognostics reference (NASA protocol).

RUL: RMSE, MAE and the asymmetric score s = Σ exp(−d/13) − 1 (d < 0) or exp(d/10) − 1 (d ≥ 0), d = predicted −
true in steps of the data (cycles, or minutes of a twin run), so late predictions cost more.
Alerts are scored as events: an alert is right when a failure comes while it is active; a failure is caught
when an alert was active when it came; lead time is failure time minus raise time. And by time, so that an alert
left on most of the time does not score well: the share of the watched machine time in alert, and false-alarm time
(in alerts no failure came in) per 1,000 machine-hours (any time unit: per 1,000 units watched).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from predictors.alerts import AlertRule, episodes


def rul_scores(pred: np.ndarray, true: np.ndarray, unit: float) -> dict[str, float]:
    """RMSE and MAE (data time unit) and the asymmetric score (d in `unit`s: 1 cycle, 3600 s), over known targets."""
    d = (np.asarray(pred, float) - np.asarray(true, float))
    ds = d / unit
    score = float(np.sum(np.where(ds < 0, np.exp(-ds / 13) - 1, np.exp(np.minimum(ds, 700) / 10) - 1)))
    return {"rmse": float(np.sqrt(np.mean(d ** 2))) if len(d) else float("nan"),
            "mae": float(np.mean(np.abs(d))) if len(d) else float("nan"), "score": score, "n": len(d)}


def classification_scores(p: np.ndarray, label: np.ndarray, threshold: float) -> dict[str, float]:
    """Per-row precision, recall and F1 of 'failure within the horizon' at a probability threshold."""
    yhat, y = p >= threshold, label > 0.5
    tp, fp, fn = int((yhat & y).sum()), int((yhat & ~y).sum()), int((~yhat & y).sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": prec, "recall": rec, "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0}


@dataclass
class AlertEvents:
    """Alert episodes matched to real failures, per unit."""

    alerts: pd.DataFrame  # unit, raised, cleared, fault_mode, correct, duration (to its clearing or the data's end)
    failures: pd.DataFrame  # unit, time, fault_mode, caught, lead, alert_mode
    watched: float = float("nan")  # machine time the forecasts cover (sum over units), in the data's time unit

    def scores(self) -> dict[str, float]:
        judged = self.alerts[self.alerts.correct.notna()]
        tp = int(judged.correct.astype(bool).sum())
        prec = tp / len(judged) if len(judged) else (1.0 if not len(self.failures) else 0.0)
        caught = self.failures[self.failures.caught]
        rec = len(caught) / len(self.failures) if len(self.failures) else float("nan")
        lead = caught.lead.to_numpy()
        # scores that count time, not alerts: an alert that is on most of the time does not score well here
        on = float(self.alerts.duration.sum()) if "duration" in self.alerts else float("nan")
        wrong = float(self.alerts.duration[self.alerts.correct.eq(False)].sum()) if "duration" in self.alerts \
            else float("nan")
        watched = self.watched if self.watched > 0 else float("nan")
        return {"alerts": len(self.alerts), "failures": len(self.failures), "caught": len(caught),
                "precision": prec, "recall": rec,
                "f1": 2 * prec * rec / (prec + rec) if prec + rec and np.isfinite(rec) else 0.0,
                "lead_mean": float(lead.mean()) if len(lead) else float("nan"),
                "lead_min": float(lead.min()) if len(lead) else float("nan"),
                "lead_median": float(np.median(lead)) if len(lead) else float("nan"),
                "lead_p10": float(np.percentile(lead, 10)) if len(lead) else float("nan"),
                "lead_p90": float(np.percentile(lead, 90)) if len(lead) else float("nan"),
                "time_in_alert": on / watched, "false_alarm_per_1000": 1000 * wrong / watched,
                "mode_accuracy": float((caught.alert_mode == caught.fault_mode).mean()) if len(caught) else
                float("nan")}


def alert_events(frame: pd.DataFrame, failures: pd.DataFrame, horizon: float, rule: AlertRule,
                 ends: dict[str, float] | None = None) -> AlertEvents:
    """Run the alert hysteresis over forecasts (unit, time, p_alert, mode, and the machine's `status` where the data
    hold it; time-ordered per unit) and match the alerts to failures (unit, time, fault_mode).
    An alert still open within `horizon` of a unit's end (`ends`, when the data stops before any failure)
    cannot be judged and is left out of precision."""
    alerts, caught, watched = [], [], 0.0
    fails = failures.sort_values("time")
    for unit, g in frame.groupby("unit", sort=False):
        f = fails[fails.unit == unit]
        ft = f.time.to_numpy()
        status = g["status"].tolist() if "status" in g else None
        unit_end = (ends or {}).get(unit, np.inf)
        last = min(unit_end, float(g.time.max())) if np.isfinite(unit_end) else float(g.time.max())
        watched += last - float(g.time.min())
        for raised, cleared, mode in episodes(g.time.tolist(), g.p_alert.tolist(), g["mode"].tolist(), rule, status):
            end = np.inf if cleared is None else cleared
            hit = ft[(ft >= raised) & (ft <= end)]
            correct: bool | None = bool(len(hit))
            if not correct and cleared is None and raised > unit_end - horizon:
                correct = None  # the data ends before we can know
            alerts.append((unit, raised, cleared, mode, correct, max(0.0, min(end, last) - raised)))
            for t in hit:
                caught.append((unit, t, raised, mode))
    al = pd.DataFrame(alerts, columns=["unit", "raised", "cleared", "fault_mode", "correct", "duration"])
    first = {}
    for unit, t, raised, mode in caught:  # the earliest alert active at each failure
        key = (unit, t)
        if key not in first or raised < first[key][0]:
            first[key] = (raised, mode)
    fr = fails.copy()
    keys = list(zip(fr.unit, fr.time))
    fr["caught"] = [k in first for k in keys]
    fr["lead"] = [k[1] - first[k][0] if k in first else np.nan for k in keys]
    fr["alert_mode"] = [first[k][1] if k in first else "" for k in keys]
    return AlertEvents(al, fr.reset_index(drop=True), watched)
