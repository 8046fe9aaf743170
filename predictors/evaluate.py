"""Score models side by side on held-out data and write the report (Markdown + PNG plots)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from predictors.alerts import AlertRule
from predictors.base import Estimator
from predictors.data import RunToFailure
from predictors.metrics import AlertEvents, alert_events, classification_scores, rul_scores
from twin.kpi import plain


@dataclass
class Evaluation:
    """Per model: the forecast at every scored row, RUL and alert scores."""

    group: str
    forecasts: dict[str, pd.DataFrame]
    scores: pd.DataFrame
    events: dict[str, AlertEvents]
    horizon: float
    time_unit: str
    step: float


def forecast_frame(model: Estimator, ds: RunToFailure) -> pd.DataFrame:
    """The model's forecast at every row (test protocol: each unit's last row) with the truth beside it."""
    rows = (ds.frame.groupby("unit", sort=False).cumcount(ascending=False) == 0).to_numpy().nonzero()[0] \
        if ds.cut_off else np.arange(len(ds))
    fc = model.predict(ds, rows)
    f = fc.frame()
    true, known = ds.rul(np.inf)  # the truth as it is: never capped
    capped, capped_known = ds.rul(model.cap)  # the model's training target (a training choice), a labelled extra
    label, label_known = ds.within(model.horizon)
    out = pd.concat([ds.frame.iloc[rows][["unit", "time"]].reset_index(drop=True), f], axis=1)
    out["rul_true"], out["rul_known"] = true[rows], known[rows]
    out["rul_true_capped"], out["rul_known_capped"] = capped[rows], capped_known[rows]
    out["within_true"] = label[rows].max(axis=1) if label.shape[1] else 0.0
    out["within_known"] = label_known[rows].all(axis=1) if label.shape[1] else True
    out["p_alert"], out["mode"] = fc.p_alert, fc.alert_mode  # what the alert rule reads
    if "status" in ds.frame:
        out["status"] = ds.frame["status"].to_numpy()[rows]
    return out


_UNIT_NAMES = {"s": "seconds (a twin run's)", "h": "hours (ISO 8601 times)", "cycles": "cycles (numbers)"}


def evaluate(models: dict[str, Estimator], ds: RunToFailure, rule: AlertRule | None = None) -> Evaluation:
    """RUL scores (known targets) and alert scores (events; rows for cut-off test units) of every model."""
    rule = rule or AlertRule()
    first = next(iter(models.values()))
    rows, forecasts, events = [], {}, {}
    ends = ds.frame.groupby("unit")["time"].max() + ds.step
    for name, model in models.items():
        trained_in = model.meta_.get("time_unit", ds.time_unit)
        if trained_in != ds.time_unit:  # a RUL in cycles scored against hours, or the reverse, without a word
            raise ValueError(f"the data's time is in {_UNIT_NAMES.get(ds.time_unit, ds.time_unit)}, the {name} model "
                             f"learnt its RUL in {_UNIT_NAMES.get(trained_in, trained_in)}; evaluate it on data whose "
                             "time is given as its training data's was")
        if wrong := model.unit_mismatch(ds.sensor_units):
            raise ValueError(f"the data's units differ from the {name} model's: {wrong}; convert them (a connector's "
                             "unit mapping) or train on data in these units")
        fc = forecast_frame(model, ds)
        forecasts[name] = fc
        k, kc = fc.rul_known.to_numpy(), fc.rul_known_capped.to_numpy()
        row = {"model": name, "kind": model.kind, **rul_scores(fc.rul[k].to_numpy(), fc.rul_true[k].to_numpy(),
                                                                 score_unit(ds.time_unit)),
               "cap": model.cap,
               **{f"{k_}_capped": v for k_, v in rul_scores(fc.rul[kc].to_numpy(), fc.rul_true_capped[kc].to_numpy(),
                                                           score_unit(ds.time_unit)).items()}}
        kl = fc.within_known.to_numpy()
        row.update({f"row_{k_}": v for k_, v in classification_scores(fc.p_any[kl].to_numpy(),
                                                                        fc.within_true[kl].to_numpy(),
                                                                        rule.on).items()})
        if not ds.cut_off:
            ev = alert_events(fc, ds.failures, model.horizon, rule, ends.to_dict())
            events[name] = ev
            row.update({f"alert_{k_}": v for k_, v in ev.scores().items()})
        rows.append(row)
    return Evaluation(ds.group, forecasts, pd.DataFrame(rows), events, first.horizon, ds.time_unit, ds.step)


def overlap(models: dict[str, Estimator], ds: RunToFailure) -> str:
    """A warning when evaluation units are among the models' training units (same records, by fingerprint), else
    ''. Scores on training data flatter a model."""
    mine = ds.unit_fingerprints()
    seen: set[str] = set()
    for m in models.values():
        seen |= set(m.meta_.get("unit_fingerprints", []))
    same = sorted(u for u, h in mine.items() if h in seen)
    if not same:
        return ""
    return (f"{len(same)} of {len(mine)} evaluation units are training units of these models (identical records, "
            f"by fingerprint: {', '.join(same[:5])}{'…' if len(same) > 5 else ''}): their scores are not held-out "
            "figures; evaluate on data the models have not seen")


def score_unit(time_unit: str) -> float:
    """The asymmetric score's unit of d: hours for twin runs (seconds), the data's own unit (cycles) otherwise."""
    return 3600.0 if time_unit == "s" else 1.0


def _fmt_time(v: float, unit: str) -> str:
    if not np.isfinite(v):
        return "-"
    if unit == "s":
        return f"{v / 3600:.2f} h" if abs(v) >= 3600 else f"{v / 60:.0f} min"
    return f"{v:.1f} {unit}"


def table(ev: Evaluation) -> pd.DataFrame:
    """The scores as a readable table (one row per model)."""
    return readable(ev.scores, ev.time_unit)


def readable(s: pd.DataFrame, u: str) -> pd.DataFrame:
    """Scores (an Evaluation's, or a report's scores-*.csv) as the console, report.md and the dashboard show them:
    times in hours or minutes for twin data (`u` "s"), in the table's own unit (cycles) otherwise."""
    cap = _fmt_time(float(s.cap.iloc[0]), u) if "cap" in s else "the cap"
    out = pd.DataFrame({"model": s.model, "RUL RMSE": [_fmt_time(v, u) for v in s.rmse],
                        "RUL MAE": [_fmt_time(v, u) for v in s.mae], "NASA score": [plain(v) for v in s.score],
                        f"RMSE, truth capped at {cap}": [_fmt_time(v, u) for v in s.rmse_capped],
                        "row F1": [f"{v:.3f}" for v in s.row_f1]})
    if "alert_f1" in s:
        out["alerts"] = s.alert_alerts.astype(int).astype(str)
        out["failures caught"] = [f"{c}/{f}" for c, f in zip(s.alert_caught, s.alert_failures)]
        out["alert precision"] = [f"{v:.3f}" for v in s.alert_precision]
        out["alert recall"] = [f"{v:.3f}" for v in s.alert_recall]
        out["alert F1"] = [f"{v:.3f}" for v in s.alert_f1]
        out["mean lead"] = [_fmt_time(v, u) for v in s.alert_lead_mean]
        out["min lead"] = [_fmt_time(v, u) for v in s.alert_lead_min]
        out["lead 10-90 %"] = [f"{_fmt_time(a, u)} – {_fmt_time(b, u)}" for a, b in zip(s.alert_lead_p10,
                                                                                       s.alert_lead_p90)]
        out["time in alert"] = [f"{v:.1%}" for v in s.alert_time_in_alert]
        per = "h / 1000 h" if u == "s" else f"{u} / 1000 {u}"  # a table's alerts are timed in its cycles
        out[f"false-alarm {per}"] = [f"{v:.1f}" for v in s.alert_false_alarm_per_1000]
    return out


def _rounded(predictions: pd.DataFrame) -> pd.DataFrame:
    """The per-unit predictions as written, rounded in place a column at a time: probabilities to 6 decimals, times
    and RULs to 3 (a millisecond, a thousandth of a cycle); their 17-digit floats made a month of body_shop's CSVs
    230 MB. Scores are computed from the unrounded values."""
    for c in predictions.select_dtypes("float").columns:
        predictions[c] = predictions[c].round(6 if c.startswith("p_") else 3)
    return predictions


def write_report(evals: list[Evaluation], out: Path, title: str, notes: list[str] | None = None) -> Path:
    """report.md with a table per machine type, predicted-vs-true RUL and alert-timeline PNGs beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", "", *(notes or []), ""]
    for ev in evals:
        scale, unit = (3600.0, "h") if ev.time_unit == "s" else (1.0, ev.time_unit)
        lines += [f"## {ev.group}", "", f"Horizon {_fmt_time(ev.horizon, ev.time_unit)}. RUL RMSE, MAE and the NASA "
                  "score are against the true RUL as it is (never capped); the models were trained on a capped "
                  "(piecewise linear) target, and the column 'truth capped at' scores against that capped truth: "
                  "a training choice, shown as an extra, not the benchmark's figure. The NASA score counts "
                  f"d = predicted − true in {'hours' if ev.time_unit == 's' else ev.time_unit} (late costs more). "
                  f"Per-unit predictions: predictions-{ev.group}.csv.", "",
                  table(ev).to_markdown(index=False), ""]
        ev.scores.assign(time_unit=ev.time_unit).to_csv(out / f"scores-{ev.group}.csv", index=False)  # s or cycles
        predictions = pd.concat([fc.assign(model=name) for name, fc in ev.forecasts.items()], ignore_index=True)
        _rounded(predictions).to_csv(out / f"predictions-{ev.group}.csv", index=False)
        fig, axes = plt.subplots(1, len(ev.forecasts), figsize=(4.2 * len(ev.forecasts), 4), squeeze=False)
        for ax, (name, fc) in zip(axes[0], ev.forecasts.items()):
            k = fc.rul_known
            ax.scatter(fc.rul_true[k] / scale, fc.rul[k] / scale, s=3, alpha=0.3)
            hi = float(fc.rul_true[k].max() / scale) if k.any() else 1.0
            ax.plot([0, hi], [0, hi], "k--", lw=1)
            ax.set(title=name, xlabel=f"true RUL [{unit}]", ylabel=f"predicted RUL [{unit}]")
        fig.tight_layout()
        fig.savefig(out / f"rul-{ev.group}.png", dpi=90)
        plt.close(fig)
        lines += [f"![predicted vs true RUL](rul-{ev.group}.png)", ""]
        if ev.events:
            _timeline(ev, out / f"alerts-{ev.group}.png", scale, unit)
            lines += [f"![alert timeline](alerts-{ev.group}.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="backslashreplace")  # a name not UTF-8
    return path


def _timeline(ev: Evaluation, path: Path, scale: float, unit: str) -> None:
    """P(failure within horizon) over time per unit (up to 4), alert spans shaded, real failures marked."""
    import matplotlib.pyplot as plt

    name = next((n for n in ev.forecasts if n != "baseline"), next(iter(ev.forecasts)))
    fc, events = ev.forecasts[name], ev.events[name]
    units = list(events.failures.unit.drop_duplicates()[:4]) or list(fc.unit.drop_duplicates()[:4])
    fig, axes = plt.subplots(len(units), 1, figsize=(10, 2.2 * len(units)), squeeze=False, sharex=False)
    for ax, u in zip(axes[:, 0], units):
        g = fc[fc.unit == u]
        ax.plot(g.time / scale, g.p_alert, lw=0.8, label=f"{name}: P(failure within horizon)")
        for _, a in events.alerts[events.alerts.unit == u].iterrows():
            end = a.cleared if pd.notna(a.cleared) else g.time.max()
            ax.axvspan(a.raised / scale, end / scale, color="orange", alpha=0.25)
        for t in events.failures[events.failures.unit == u].time:
            ax.axvline(t / scale, color="red", lw=1.2)
        ax.set(ylim=(-0.02, 1.02), ylabel="P", title=f"{u}: alerts (shaded) and failures (red)")
    axes[-1, 0].set_xlabel(f"time [{unit}]")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
