"""`twin synth evaluate`: how good and how useful the generators are, as a report (Markdown + PNG).

Quality on held-out real runs (split by unit in two halves A and B): synthetic windows are asked for
with the conditions of B's real windows and compared with them (discriminative, marginal and
autocorrelation distances, with a trivial generator and real A beside them as the worst and the floor);
the predictive score trains on synthetic windows and on real A, both tested on real B. Given the
generators' training windows, the discriminative score is also taken as the TimeGAN protocol defines it
(synthetic against the real windows the generator learnt from), with held-out B against them as its
floor; and the fault-mode classifier that judges conditioning learns from them (else from real A). The
VAE's anomaly score is rated by how well it ranks worn windows above healthy ones (AUROC). Usefulness:
`augmentation` trains the LSTM with and without synthetic windows of a deliberately rare fault mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predictors import genmetrics as gm
from predictors.alerts import AlertRule
from predictors.base import DEFAULTS, Estimator
from predictors.data import RunToFailure
from predictors.evaluate import forecast_frame
from predictors.metrics import AlertEvents, alert_events
from predictors.synth import HEALTHY, ConditionalVAE, Generator, Windows

Note = Callable[[str], None]


@dataclass
class Quality:
    """The scores of one generator on one machine type's held-out windows."""

    group: str
    kind: str
    scores: dict[str, float]
    synthetic: Windows


@dataclass
class QualityReport:
    group: str
    real: Windows  # held-out half B: what synthetic windows are compared with
    reference: dict[str, float]  # real A vs real B, and the trivial generator
    rows: list[Quality] = field(default_factory=list)


def trivial(real: Windows, seed: int = 0) -> np.ndarray:
    """Gaussian noise around the real mean (per time step and feature): the generator every model must beat."""
    rng = np.random.default_rng(seed)
    return (real.x.mean(axis=0) + rng.standard_normal(real.x.shape) * real.x.std(axis=0)).astype(np.float32)


def quality(generators: dict[str, Generator], held_out: Windows, iterations: int = 2000, seed: int = 0,
            note: Note | None = None, train: Windows | None = None) -> QualityReport:
    """Score every generator of one machine type against real windows (see the module docstring).

    `train`: the generators' training windows (a sample of them is enough), for the TimeGAN-protocol
    discriminative score and the conditioning classifier."""
    a, b = held_out.split(0.5, seed)
    if not len(a) or not len(b):
        a, b = held_out, held_out  # one unit only: train and test the references on the same windows
    say = note or (lambda s: None)
    real = train if train is not None else a
    clf_mask = gm.classifiable(real.mode, real.severity)
    clf = gm.ModeClassifier.fit(real.x[clf_mask], real.mode[clf_mask], seed)
    b_mask = gm.classifiable(b.mode, b.severity)
    say(f"{held_out.group}: references (real vs real, trivial generator)")
    ref = {"discriminative (real A)": gm.discriminative_score(b.x, a.x, iterations, seed),
           "discriminative (trivial)": gm.discriminative_score(b.x, trivial(b, seed), iterations, seed),
           "predictive (real A)": gm.predictive_score(a.x, b.x, b.x, iterations, seed),
           "marginal (real A)": gm.marginal_distance(b.x, a.x), "acf (real A)": gm.acf_distance(b.x, a.x),
           "conditional accuracy (real B)": clf.accuracy(b.x[b_mask], b.mode[b_mask])}
    tg = None if train is None else _at_most(train, max(len(held_out), 1000), seed)  # bounds the time on long runs
    if tg is not None:
        ref["discriminative vs training (real B)"] = gm.discriminative_score(tg.x, b.x, iterations, seed)
    rep = QualityReport(held_out.group, b, ref)
    for kind, g in generators.items():
        say(f"{held_out.group}: scoring the {kind}")
        s = g.sample(b.mode, b.severity, len(b), seed=seed + 1)
        m = gm.classifiable(s.mode, s.severity)
        scores = {"discriminative": gm.discriminative_score(b.x, s.x, iterations, seed),
                  "predictive": gm.predictive_score(s.x, b.x, b.x, iterations, seed),
                  "marginal": gm.marginal_distance(b.x, s.x), "acf": gm.acf_distance(b.x, s.x),
                  "conditional accuracy": clf.accuracy(s.x[m], s.mode[m])}
        if tg is not None:
            st = g.sample(tg.mode, tg.severity, len(tg), seed=seed + 2)
            scores["discriminative vs training"] = gm.discriminative_score(tg.x, st.x, iterations, seed)
        if isinstance(g, ConditionalVAE):
            scores["anomaly AUROC"] = anomaly_auroc(g, held_out)
        rep.rows.append(Quality(held_out.group, kind, scores, s))
    return rep


def _at_most(w: Windows, n: int, seed: int) -> Windows:
    """A seeded random sample of n windows (all of them when there are no more)."""
    if len(w) <= n:
        return w
    keep = np.zeros(len(w), dtype=bool)
    keep[np.random.default_rng(seed).choice(len(w), n, replace=False)] = True
    return w.subset(keep)


def anomaly_auroc(vae: ConditionalVAE, w: Windows) -> float:
    """How well the VAE's anomaly score ranks windows of machines worn past half-life above healthy ones."""
    from sklearn.metrics import roc_auc_score

    worn = (w.mode != HEALTHY) & (w.severity >= 0.5)
    keep = worn | (w.mode == HEALTHY)
    if worn[keep].all() or not worn[keep].any():
        return float("nan")
    return float(roc_auc_score(worn[keep], vae.score(w.x[keep])))


def anomaly_alerts(vaes: dict[str, ConditionalVAE], runs: Sequence[Path], store_url: str | None = None,
                   rule: AlertRule | None = None) -> dict[str, AlertEvents]:
    """Per machine type, the alerts its VAE's anomaly probability alone raises over held-out runs, every minute
    as live (the same hysteresis and machine states; only windows in which the machine ran throughout are
    scored, the others count as 0), matched to the real failures: is the unsupervised score worth alerting on?
    The runs are read once for every type."""
    from predictors.data import from_twin_runs
    from predictors.synth import twin_windows

    if not vaes:
        return {}
    window = next(iter(vaes.values())).window_
    windows = twin_windows(runs, window, 1, store_url)
    data = from_twin_runs(runs, store_url)
    out = {}
    for group, vae in vaes.items():
        w, ds = windows[group], data[group]
        whole = ds.frame["ran"].astype(float).groupby(ds.frame["unit"], sort=False).transform(
            lambda r: r.rolling(window).min())  # 1 where the machine ran throughout the window ending at the row
        at = ds.frame[["unit", "time", "status"]].assign(ran=whole == 1).set_index(["unit", "time"]).reindex(
            pd.MultiIndex.from_arrays([w.unit, w.end]))
        ran = at["ran"].fillna(False).to_numpy(dtype=bool)
        p = np.zeros(len(w))
        if ran.any():
            p[ran] = vae.anomaly_probability(w.x[ran])
        frame = pd.DataFrame({"unit": w.unit, "time": w.end, "p_alert": p, "mode": "anomaly",
                              "status": at["status"].to_numpy()})
        ends = ds.frame.groupby("unit")["time"].max() + ds.step
        out[group] = alert_events(frame.sort_values(["unit", "time"], kind="stable"), ds.failures,
                                  DEFAULTS["s"]["horizon"], rule or AlertRule(), ends.to_dict())
    return out


def anomaly_table(events: dict[str, AlertEvents]) -> pd.DataFrame:
    """Per machine type: the anomaly alerts' event scores (as `twin evaluate` reports the forecasters')."""
    rows = []
    for group, ev in events.items():
        s = ev.scores()
        rows.append({"machine type": group, "alerts": int(s["alerts"]), "failures caught":
                     f"{s['caught']}/{s['failures']}", "precision": _fmt(s["precision"]), "recall": _fmt(s["recall"]),
                     "F1": _fmt(s["f1"]), "mean lead": "-" if not np.isfinite(s["lead_mean"]) else
                     f"{s['lead_mean'] / 3600:.2f} h"})
    return pd.DataFrame(rows)


def _fmt(v: float) -> str:
    return "-" if not np.isfinite(v) else f"{v:.3f}"


def quality_table(rep: QualityReport) -> pd.DataFrame:
    """One row per generator plus the references; lower is better except accuracy and AUROC."""
    r = rep.reference
    rows = [{"generator": kind.upper() if kind != "gan" else "GAN (WGAN-GP)", **q.scores}
            for kind, q in ((q.kind, q) for q in rep.rows)]
    rows.append({"generator": "trivial (noise around the mean)", "discriminative": r["discriminative (trivial)"]})
    rows.append({"generator": "real (other units)", "discriminative": r["discriminative (real A)"],
                 "predictive": r["predictive (real A)"], "marginal": r["marginal (real A)"], "acf": r["acf (real A)"],
                 "conditional accuracy": r["conditional accuracy (real B)"],
                 "discriminative vs training": r.get("discriminative vs training (real B)", np.nan)})
    df = pd.DataFrame(rows)
    cols = ["generator", "discriminative", "discriminative vs training", "predictive", "marginal", "acf",
            "conditional accuracy", "anomaly AUROC"]
    df = df.reindex(columns=cols)
    return df.assign(**{c: df[c].map(lambda v: _fmt(float(v)) if pd.notna(v) else "-") for c in cols[1:]})


def plot_embedding(rep: QualityReport, path: Path, n: int = 600, seed: int = 0) -> None:
    """PCA and t-SNE of real and synthetic windows (flattened, scaled with the real range), side by side."""
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    parts = [("real", rep.real.x)] + [(q.kind.upper(), q.synthetic.x) for q in rep.rows]
    picked = [(name, x[rng.choice(len(x), min(n, len(x)), replace=False)]) for name, x in parts]
    scaled = gm.minmax(picked[0][1], *(x for _, x in picked[1:]))
    flat = np.concatenate([s.reshape(len(s), -1) for s in scaled])
    who = np.concatenate([[name] * len(s) for (name, _), s in zip(picked, scaled)])
    pca = PCA(2, random_state=seed).fit(flat[who == "real"]).transform(flat)
    tsne = TSNE(2, random_state=seed, init="pca", perplexity=30).fit_transform(flat)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, emb, title in ((axes[0], pca, "PCA"), (axes[1], tsne, "t-SNE")):
        for name, colour in zip([p[0] for p in picked], ["tab:blue", "tab:orange", "tab:green"]):
            sel = who == name
            ax.scatter(emb[sel, 0], emb[sel, 1], s=4, alpha=0.4, c=colour, label=name)
        ax.set_title(f"{rep.group}: {title}")
        ax.legend(markerscale=3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_windows(real: Windows, generators: dict[str, Generator], path: Path, severity: float = 0.8,
                 seed: int = 0) -> None:
    """Per fault mode (and healthy): a real window near the severity and synthetic ones asked for it, each sensor
    in its own row; what the dashboard's Models page shows as real vs synthetic."""
    import matplotlib.pyplot as plt

    labels = [m for m in real.labels if (real.mode == m).any()]
    d = len(real.features)
    fig, axes = plt.subplots(d, len(labels), figsize=(3.6 * len(labels), 1.6 * d), squeeze=False, sharex=True)
    minutes = np.arange(real.x.shape[1]) * real.step / 60
    for j, mode in enumerate(labels):
        sev = 0.0 if mode == HEALTHY else severity
        idx = np.where(real.mode == mode)[0]
        pick = idx[np.argmin(np.abs(real.severity[idx] - sev))] if mode != HEALTHY else idx[len(idx) // 2]
        synth = {k: g.sample(mode, float(real.severity[pick]), 1, seed=seed).x[0] for k, g in generators.items()}
        for i, feat in enumerate(real.features):
            ax = axes[i, j]
            ax.plot(minutes, real.x[pick, :, i], color="k", lw=1.5, label="real")
            for (k, x), colour in zip(synth.items(), ["tab:orange", "tab:green"]):
                ax.plot(minutes, x[:, i], color=colour, lw=1, label=k.upper())
            if i == 0:
                ax.set_title(f"{mode} (severity {real.severity[pick]:.2f})", fontsize=9)
            if j == 0:
                ax.set_ylabel(feat, fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("minutes", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --- usefulness: a rare fault mode, with and without synthetic windows ---------------------------------

@dataclass
class Augmentation:
    """Alert scores for one fault mode on held-out runs: the LSTM trained on all failures, on data where that
    mode is rare, and on the rare data plus synthetic windows of it."""

    group: str
    mode: str
    failures: int  # of the mode in the full training data
    kept: int
    synthetic: int
    kind: str
    scores: pd.DataFrame  # model, alerts, caught, failures, precision, recall, f1, lead_mean

    def table(self) -> pd.DataFrame:
        s = self.scores
        return pd.DataFrame({"training data": s.model, f"{self.mode} failures caught": [
            f"{c}/{f}" for c, f in zip(s.caught, s.failures)], "alerts": s.alerts,
            "precision": s.precision.map(_fmt), "recall": s.recall.map(_fmt), "F1": s.f1.map(_fmt),
            "mean lead": [f"{v / 3600:.2f} h" if np.isfinite(v) else "-" for v in s.lead_mean]})

    @property
    def lift(self) -> float:
        """F1 points gained by the synthetic windows."""
        f1 = self.scores.set_index("model").f1
        return float(100 * (f1.iloc[2] - f1.iloc[1]))


def make_rare(ds: RunToFailure, mode: str, keep: int, seed: int = 0) -> tuple[RunToFailure, int]:
    """The dataset with all but `keep` lives ending in a failure of `mode` removed (their rows dropped, units
    split where rows were taken out), and how many such failures there were."""
    j = ds.modes.index(mode)
    fails = ds.failures[ds.failures.fault_mode == mode].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    kept = set(rng.choice(len(fails), min(keep, len(fails)), replace=False).tolist()) if len(fails) else set()
    t = ds.frame["time"].to_numpy()
    end = t + ds.ttf[:, j]  # the failure that ends each row's life of this mode (inf if none)
    drop = np.zeros(len(ds), dtype=bool)
    for i, f in fails.iterrows():
        if i not in kept:
            drop |= (ds.frame["unit"].to_numpy() == f.unit) & np.isclose(end, f.time)
    keep_rows = ~drop
    frame = ds.frame[keep_rows].reset_index(drop=True)
    gap = frame.groupby("unit", sort=False)["time"].diff().gt(1.5 * ds.step).astype(int)
    segment = gap.groupby(frame["unit"]).cumsum()
    frame["unit"] = frame["unit"] + np.where(segment > 0, "#" + segment.astype(str), "")
    # each remaining failure belongs to the segment holding the row just before it
    dropped = {(f.unit, f.time) for i, f in fails.iterrows() if i not in kept}
    failures = ds.failures[[k not in dropped for k in zip(ds.failures.unit, ds.failures.time)]]
    last = frame.assign(base=frame["unit"].str.split("#").str[0]).sort_values("time")
    fixed = []
    for f in failures.itertuples(index=False):
        rows = last[(last.base == f.unit) & (last.time < f.time)]
        if len(rows):
            fixed.append((rows.iloc[-1].unit, f.time, f.fault_mode))
    out = RunToFailure(frame, ds.features, ds.modes, ds.ttf[keep_rows], ds.observed[keep_rows], ds.step,
                       ds.time_unit, ds.group, pd.DataFrame(fixed, columns=["unit", "time", "fault_mode"]),
                       ds.sources, ds.cut_off)
    return out, len(fails)


def mode_alert_scores(model: Estimator, ds: RunToFailure, mode: str) -> dict[str, float]:
    """Event-level alert scores of one fault mode: alerts from that mode's probability, its failures only."""
    fc = forecast_frame(model, ds)
    frame = pd.DataFrame({"unit": fc.unit, "time": fc.time, "p_alert": fc[f"p_{mode}"], "mode": mode})
    ends = ds.frame.groupby("unit")["time"].max() + ds.step
    fails = ds.failures[ds.failures.fault_mode == mode]
    return alert_events(frame, fails, model.horizon, AlertRule(), ends.to_dict()).scores()


def augmentation(train_runs: Sequence[Path], held_out_runs: Sequence[Path], mode: str, *, keep: int = 1,
                 window: int = 30, n_synthetic: int = 2000, kind: str = "vae", seed: int = 0,
                 store_url: str | None = None, lstm: dict[str, Any] | None = None,
                 generator: dict[str, Any] | None = None,
                 note: Note | None = None) -> Augmentation:
    """Train the LSTM on data where `mode` is rare, with and without synthetic windows of it from a generator
    trained on that same rare data, and (as the ceiling) on all failures; score each on held-out runs."""
    from predictors.data import DataError, from_twin_runs
    from predictors.lstm import LSTMForecaster
    from predictors.synth import generators, twin_windows

    say = note or (lambda s: None)
    say("augmentation: reading runs")
    data = from_twin_runs(train_runs, store_url)
    group = next((g for g, d in data.items() if mode in d.modes), None)
    if group is None:
        modes = sorted({m for d in data.values() for m in d.modes})
        raise DataError(f"--rare {mode!r}: no machine type of these runs has that wear-out mode; choose one of "
                        f"{', '.join(modes)}")
    full = data[group]
    held = from_twin_runs(held_out_runs, store_url)[group]
    rare, total = make_rare(full, mode, keep, seed)
    d = DEFAULTS["s"]
    params = {"window": window, "horizon": d["horizon"], "cap": d["cap"], "seed": seed, **(lstm or {})}
    # the generator sees only the rare data: windows whose first and last rows survived
    w = twin_windows(train_runs, window, 1, store_url)[group]
    rows = set(zip(rare.frame["unit"].str.split("#").str[0], rare.frame["time"]))
    start = w.end - (window - 1) * w.step
    w = w.subset(np.array([(u, e) in rows and (u, s) in rows for u, e, s in zip(w.unit, w.end, start)]))
    say(f"augmentation: training the {kind} on the rare data ({len(w):,} windows)")
    gen = generators()[kind](seed=seed, **(generator or {})).fit(w)
    # synthetic windows of the rare mode at the severities its real windows had within the horizon of failure
    j = full.modes.index(mode)
    rare_pos = (rare.ttf[:, j] <= params["horizon"])
    key = pd.MultiIndex.from_arrays([rare.frame["unit"].str.split("#").str[0][rare_pos], rare.frame["time"][rare_pos]])
    sev_at = pd.Series(w.severity, index=pd.MultiIndex.from_arrays([w.unit, w.end]))
    sev = sev_at.reindex(key).dropna().to_numpy()
    sev = sev[sev >= 0.2] if (sev >= 0.2).any() else np.array([0.8])
    rng = np.random.default_rng(seed)
    wanted = np.clip(rng.choice(sev, n_synthetic) + rng.normal(0, 0.02, n_synthetic), 0.2, 1.0)
    synth = gen.sample(mode, wanted, n_synthetic, seed=seed + 1)
    label = np.zeros((n_synthetic, len(full.modes)), dtype=np.float32)
    label[:, j] = 1.0
    known = np.zeros_like(label, dtype=bool)
    known[:, j] = True
    rows_out = []
    for name, ds, extra in (("all failures", full, None), (f"rare ({keep} of {total})", rare, None),
                            (f"rare + {n_synthetic:,} synthetic ({kind})", rare, (synth.x, label, known))):
        say(f"augmentation: LSTM on {name}")
        m = LSTMForecaster(**params).fit(ds, extra=extra)
        rows_out.append({"model": name, **mode_alert_scores(m, held, mode)})
    return Augmentation(group, mode, total, min(keep, total), n_synthetic, kind, pd.DataFrame(rows_out))


# --- the report -------------------------------------------------------------------------------------------

def write_report(reports: list[QualityReport], augment: Augmentation | None, out: Path, model: Path,
                 runs: Sequence[Path], anomaly: dict[str, AlertEvents] | None = None) -> Path:
    """report.md: a score table, embedding and example-window pictures per machine type, the usefulness table."""
    lines = [f"# Synthetic sensor windows: {model.name}", "",
             f"Held-out real runs: {', '.join(map(str, runs))}. Windows are min-max scaled with the real data's "
             "range. Discriminative: |accuracy − 0.5| of a post-hoc GRU telling real from synthetic (0 = cannot); "
             "predictive: MAE of a GRU trained on these windows to predict the next minute, tested on real ones; "
             "marginal: mean per-feature Wasserstein distance; acf: mean autocorrelation difference (lags 1–10). "
             "'Discriminative vs training' (when the training runs are given): the TimeGAN protocol, synthetic "
             "against the real windows the generator learnt from. Lower is better for those five. Conditional "
             "accuracy: a classifier trained on real windows recognises the requested fault mode (healthy, or "
             f"worn ≥ {gm.CLASSIFIABLE}; a window of a machine stopped throughout is labelled healthy, since no "
             "wear shows on it). Anomaly AUROC: the "
             "VAE's reconstruction error ranking worn windows above healthy ones. 'real (other units)' is the "
             "floor: half of the held-out units scored against the other half (and, vs training, held-out "
             "units against the training windows).", ""]
    for rep in reports:
        tab = quality_table(rep)
        tab.to_csv(out / f"quality-{rep.group}.csv", index=False)  # the dashboard's Models page
        lines += [f"## {rep.group}", "", tab.to_markdown(index=False), "",
                  f"![PCA and t-SNE of real and synthetic windows](embedding-{rep.group}.png)", "",
                  f"![real and synthetic windows per fault mode](windows-{rep.group}.png)", ""]
    if anomaly:
        tab = anomaly_table(anomaly)
        tab.to_csv(out / "anomaly-alerts.csv", index=False)
        lines += ["## Alerting on the anomaly score", "",
                  "The VAE's reconstruction error (read as healthy), 0.5 at its threshold (the "
                  "99.9th percentile of healthy training windows), through the live alert hysteresis every minute "
                  "on the held-out runs (`twin predict --anomaly`), matched to real failures: an alert is right "
                  "when a failure of its machine falls while it is active.", "", tab.to_markdown(index=False), ""]
    if augment is not None:
        augment.table().to_csv(out / "augmentation.csv", index=False)
        lines += [f"## Usefulness: a rare fault mode ({augment.group}, {augment.mode})", "",
                  f"The training runs had {augment.failures} {augment.mode} failures; the rare data keeps "
                  f"{augment.kept} (the other lives of that mode are taken out). The {augment.kind.upper()} is "
                  f"trained on the rare data only and adds {augment.synthetic:,} windows of {augment.mode} at the "
                  "severities its real windows had within the horizon of failure. Alerts from that mode's "
                  "probability, scored against its failures in the held-out runs.", "",
                  augment.table().to_markdown(index=False), "",
                  f"F1 lift from the synthetic windows: {augment.lift:+.1f} points.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="backslashreplace")  # a name not UTF-8
    return path
