"""`twin train`, `twin evaluate`, `twin predict` and `twin alerts`: fault forecasting from the command line."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from twin.cli import _broker_url, app, err_console, fail, out_console, stop_signals
from twin.distributions import parse_duration

if TYPE_CHECKING:
    from predictors.alerts import AlertRule
    from predictors.base import Bundle
    from predictors.data import RunToFailure, TableFormat
    from predictors.policy import AlertOrders
    from predictors.synth import ConditionalVAE
    from twin.bus.broker import BrokerURL
    from twin.compare import PolicyParams
    from twin.scenario import Scenario
    from twin.stream import Attach

TABLE_HELP = "for tables"
Sources = Annotated[list[Path], typer.Argument(help="twin run folders (from `twin run`), or run-to-failure tables "
                                                    "(CSV, Parquet, whitespace-separated text)")]
UnitCol = Annotated[Optional[str], typer.Option(help=f"{TABLE_HELP}: unit id column (name, or 0-based position "
                                                     "without a header)")]
TimeCol = Annotated[Optional[str], typer.Option(help=f"{TABLE_HELP}: time/cycle column (name or position)")]
Columns = Annotated[Optional[str], typer.Option(help=f"{TABLE_HELP} without a header row: comma-separated names "
                                                     "of all columns")]
Features = Annotated[Optional[str], typer.Option(help=f"{TABLE_HELP}: comma-separated feature columns (default: "
                                                      "every other numeric column)")]
Sep = Annotated[Optional[str], typer.Option(help=f"{TABLE_HELP}: column separator (default: ',' for .csv, "
                                                 "whitespace otherwise)")]
StoreOpt = Annotated[Optional[str], typer.Option(help="for twin runs: the store, if not the one the run wrote")]


def _col(value: Optional[str], default: str) -> str | int:
    if value is None:
        return default
    return int(value) if value.isdigit() else value


def _table_format(unit_column: Optional[str], time_column: Optional[str], columns: Optional[str],
                  features: Optional[str], sep: Optional[str]) -> TableFormat:
    from predictors.data import TableFormat

    split = (lambda v: [c.strip() for c in v.split(",") if c.strip()] if v else None)  # noqa: E731
    return TableFormat(_col(unit_column, "unit"), _col(time_column, "time"), split(columns), split(features), sep)


def _datasets(sources: list[Path], fmt: TableFormat, store: Optional[str],
              rul: Optional[Path] = None) -> dict[str, RunToFailure]:
    """Datasets per machine type from twin run folders, or one ("table") from run-to-failure tables."""
    from predictors.data import DataError, concat, from_table, from_twin_runs
    from twin.store import StoreError

    missing = [p for p in sources if not p.exists()]
    if missing:
        fail(f"{missing[0]}: no such file or folder; give twin run folders or run-to-failure tables")
    dirs = [p.is_dir() for p in sources]
    if any(dirs) and not all(dirs):
        fail("give either twin run folders or tables, not both (their features differ)")
    try:
        if all(dirs):
            if rul is not None:
                fail("--rul belongs to a test table cut off before failure; twin runs carry their own truth")
            return from_twin_runs(sources, store)
        if rul is not None and len(sources) != 1:
            fail("--rul gives the true RUL of one test table: give exactly one table with it")
        return {"table": concat([from_table(p, fmt, rul, group="table") for p in sources])}
    except (DataError, StoreError) as e:
        fail(str(e))


def _time(value: Optional[str], option: str, default: float, tables: bool) -> float:
    """A time option: a duration for twin runs ('2 h'), a number of cycles for tables."""
    if value is None:
        return default
    try:
        v = float(value) if tables else float(parse_duration(value))
    except ValueError as e:
        fail(f"{option}: {e}" if not tables else f"{option}: give a number of cycles, got {value!r}")
    if v <= 0:
        fail(f"{option}: must be positive, got {value!r}")
    return v


def _bar() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=err_console)


@app.command()
def train(
    sources: Sources,
    model: Annotated[str, typer.Option(help="lstm or regression")] = "lstm",
    out: Annotated[Optional[Path], typer.Option(help="model folder (default: models/<source>-<model>)")] = None,
    horizon: Annotated[Optional[str], typer.Option(help="forecast horizon H: '2 h' for twin runs, cycles for "
                                                   "tables (default 2 h / 30)")] = None,
    cap: Annotated[Optional[str], typer.Option(help="RUL cap of the piecewise-linear target (default 8 h / 125)")]
    = None,
    window: Annotated[Optional[int], typer.Option(min=2, max=500, help="rows per input window (default: 60 minutes "
                                                  "for twin runs, 30 cycles for tables)")] = None,
    seed: Annotated[int, typer.Option(min=0, help="seed of the split, initial weights and batches")] = 0,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="LSTM: most epochs (early stopping may end sooner)")]
    = None,
    store: StoreOpt = None,
    unit_column: UnitCol = None, time_column: TimeCol = None, columns: Columns = None, features: Features = None,
    sep: Sep = None,
) -> None:
    """Train a fault forecaster (one per machine type) and the naive baseline beside it."""
    from predictors import REGISTRY
    from predictors.base import DEFAULTS, MeanBaseline, save_bundle

    if model not in REGISTRY or model == "baseline":
        fail(f"--model {model!r}: choose one of {', '.join(k for k in REGISTRY if k != 'baseline')}")
    data = _datasets(sources, _table_format(unit_column, time_column, columns, features, sep), store)
    tables = "table" in data
    defaults = DEFAULTS["cycles" if tables else "s"]
    h = _time(horizon, "--horizon", defaults["horizon"], tables)
    c = _time(cap, "--cap", defaults["cap"], tables)
    window = window or int(defaults["window"])
    if c < h:
        fail(f"--cap ({cap}) must be at least the horizon ({horizon or h})")
    out = out or Path("models") / f"{sources[0].stem if tables else sources[0].parent.name}-{model}"
    extra = {"epochs": epochs} if epochs and model == "lstm" else {}
    bundle: Bundle = {}
    warnings: list[str] = []
    summary = Table(title=f"trained {model} models → {out}")
    for col in ("machine type", "rows", "units", "failures", "valid units", "note"):
        summary.add_column(col)
    with _bar() as bar:
        for group, ds in data.items():
            if not ds.modes or ds.failures.empty:
                summary.add_row(escape(group), f"{len(ds):,}", "", "0", "", "no wear-out failures: skipped")
                continue
            task = bar.add_task(f"{group}", total=None, note="")

            def progress(done: int, total: int, note: str, task: int = task) -> None:
                bar.update(task, completed=done, total=total, note=note)

            try:
                est = REGISTRY[model](horizon=h, cap=c, window=window, seed=seed, **extra).fit(ds, progress)
                base = MeanBaseline(horizon=h, cap=c, window=window, seed=seed).fit(ds)
            except ValueError as e:
                fail(f"{group}: cannot train on this data ({e})")
            bundle[group] = {"model": est, "baseline": base}
            bar.update(task, note="done")
            epochs_run = f"{len(est.history_)} epochs" if getattr(est, "history_", None) else ""
            summary.add_row(escape(group), f"{len(ds):,}", str(ds.frame['unit'].nunique()), str(len(ds.failures)),
                            str(len(est.meta_["valid_units"])), epochs_run)
            if few := few_failures(ds):
                warnings.append(f"{group}: {few}")
    if not bundle:
        fail("no machine type had wear-out failures to learn from; run longer or with --policy run-to-failure")
    save_bundle(bundle, out)
    out_console.print(summary)
    for w in warnings:
        err_console.print(f"[yellow]warning[/]: {escape(w)}", highlight=False)
    out_console.print(f"models: [bold]{out}[/] (use with `twin evaluate --models {out}` or `twin predict`)",
                      highlight=False)


@app.command()
def evaluate(
    sources: Sources,
    models: Annotated[list[Path], typer.Option(help="model folder from `twin train` (repeat to compare)")],
    out: Annotated[Optional[Path], typer.Option(help="report folder (default: reports/<first model folder>)")]
    = None,
    rul: Annotated[Optional[Path], typer.Option(help="test protocol: true RUL of each unit of a test table cut "
                                                "off before failure")] = None,
    store: StoreOpt = None,
    unit_column: UnitCol = None, time_column: TimeCol = None, columns: Columns = None, features: Features = None,
    sep: Sep = None,
) -> None:
    """Score models on held-out data beside the naive baseline; write report.md with plots."""
    from predictors.evaluate import evaluate as run_evaluation
    from predictors.evaluate import table, write_report

    bundles = {folder: _load_models(folder) for folder in models}
    data = _datasets(sources, _table_format(unit_column, time_column, columns, features, sep), store, rul)
    evals = []
    for group, ds in data.items():
        chosen = {}
        for folder, bundle in bundles.items():
            if group not in bundle:
                continue
            chosen.setdefault("baseline", bundle[group]["baseline"])
            m = bundle[group]["model"]
            chosen[m.kind if m.kind not in chosen else f"{m.kind} ({folder.name})"] = m
        if not chosen:
            err_console.print(f"no model for {group}: skipped", highlight=False)
            continue
        if ds.failures.empty and not ds.cut_off:
            err_console.print(f"{group}: no failures in this data, alerts are judged on false alarms only",
                              highlight=False)
        try:
            ev = run_evaluation(chosen, ds)
        except ValueError as e:
            fail(f"{group}: {e}")
        evals.append(ev)
        t = Table(title=f"{group}: held-out scores (all of them in the report)")
        tab = table(ev).drop(columns=["score", "row F1", "alerts", "min lead"], errors="ignore")
        for col in tab.columns:
            t.add_column(escape(col), justify="left" if col == "model" else "right")
        for row in tab.itertuples(index=False):
            t.add_row(*(escape(str(v)) for v in row))
        out_console.print(t)
    if not evals:
        fail("none of the models matches this data's machine types; train on data from the same line")
    out = out or Path("reports") / models[0].name
    path = write_report(evals, out, f"Fault forecasting: {', '.join(m.name for m in models)}",
                        [f"Held-out data: {', '.join(map(str, sources))}."])
    out_console.print(f"report: [bold]{path}[/]", highlight=False)


def few_failures(ds: RunToFailure) -> str:
    """A warning when some fault mode has fewer than FEW_FAILURES failures to learn from, else ''.

    Forecasts learnt from a handful of failures are rough (bench/predict.py: the body shop's handling cells
    reached alert F1 0.68-0.82 from 8 + 4 failures of their two modes, 0.94-0.97 from 29 + 15), so training
    says so rather than leaving it to the evaluation."""
    from predictors.data import FEW_FAILURES, MIN_ALERT_FAILURES

    counts = ds.failures_per_mode()
    few = counts[counts < FEW_FAILURES]
    if few.empty:
        return ""
    quiet = [m for m in ds.modes if m not in ds.modes_to_alert()]
    return (f"few failures to learn from ({', '.join(f'{m}: {n}' for m, n in few.items())}; forecasts "
            f"need {FEW_FAILURES} or more of each mode"
            + (f", and a mode seen failing fewer than {MIN_ALERT_FAILURES} times raises no alerts: "
               f"{', '.join(quiet)}" if quiet else "")
            + "): train on more history (more replications or a longer duration of run-to-failure runs, or more of "
              "the plant's records)")


def _load_models(folder: Path) -> Bundle:
    """The models of a `twin train` folder (a clear error if it is not one); says which fault modes raise no alerts."""
    from predictors.base import load_bundle

    try:
        bundle = load_bundle(folder)
    except ValueError as e:
        fail(str(e))
    for group, models in bundle.items():
        model = models.get("model")
        if model is not None and (quiet := [m for m in model.modes_ if m not in model.alert_modes]):
            seen = model.meta_.get("data", {}).get("failures_per_mode", {})
            err_console.print(f"[yellow]warning[/]: {escape(group)}: no alerts for "
                              f"{escape(', '.join(f'{m} (trained on {seen.get(m, 0)} failures)' for m in quiet))}: "
                              "too few to learn from, so these forecasts are shown but raise no alerts; retrain on "
                              "more history to alert on them", highlight=False)
    return bundle


def _rule(on: float, off: float, confirm: int, clear_after: int) -> AlertRule:
    from predictors.alerts import AlertRule

    if not 0 < off < on < 1:
        fail(f"--on {on} / --off {off}: need 0 < off < on < 1 (the alert clears below off, rises above on)")
    return AlertRule(on=on, off=off, confirm=confirm, clear_after=clear_after)


def _load_detectors(folder: Path | None, bundle: Bundle) -> dict[str, ConditionalVAE]:
    from predictors.online import anomaly_detectors

    if folder is None:
        return {}
    try:
        return anomaly_detectors(folder, bundle)
    except ValueError as e:
        fail(f"--anomaly: {e}")


def forecasting(models: Path, sc: Scenario, console: Console, rule: AlertRule | None = None,
                orders: AlertOrders | None = None, anomaly: Path | None = None,
                ) -> Attach:
    """For `twin run --models`: a live forecaster on the run's broker for the run's line, drained at the end;
    with `orders` (the predictive policy), its alerts come back over MQTT as maintenance orders; with
    `anomaly` (a `twin synth train` folder), its VAEs' anomaly scores alert too."""
    bundle = _load_models(models)
    detectors = _load_detectors(anomaly, bundle)
    prefix = f"{sc.line.site}/{sc.line.area}/{sc.line.name}"

    @contextlib.contextmanager
    def attach(url: BrokerURL, protocol: int) -> Iterator[object]:
        from predictors.online import LiveForecaster

        if orders is not None:
            orders.start(url, protocol)
        fc = LiveForecaster(url, bundle, prefix=prefix, protocol=protocol, rule=rule, detectors=detectors).start()
        console.print(f"forecasting faults with {models} ({', '.join(bundle)})"
                      + (f", anomaly scores from {anomaly} ({', '.join(detectors)})" if detectors else "")
                      + f"; alerts on {prefix}/+/+/alerts", highlight=False)
        try:
            yield fc
        finally:
            fc.wait_idle(120)
            fc.stop()
            raised = [a for a in fc.alerts if a["state"] == "raised"]
            console.print(f"forecaster: {fc.received:,} messages, {fc.forecasts:,} forecasts, "
                          f"{len(raised)} alerts raised", highlight=False)
            if fc.unknown:
                console.print(f"no model for machines {', '.join(sorted(fc.unknown))}: not forecast", highlight=False)
            if orders is not None:
                time.sleep(0.5)  # the last alerts' way back
                orders.stop()
                console.print(f"predictive policy: {orders.orders.placed} maintenance orders from alerts",
                              highlight=False)

    return attach


@app.command()
def predict(
    models: Annotated[Path, typer.Option(help="model folder from `twin train`")],
    broker: Annotated[str, typer.Option(help="mqtt://[user:pass@]host:port or mqtts://...")],
    line: Annotated[str, typer.Option(help="site/area/line to watch, or +/+/+ for every line")] = "+/+/+",
    interval: Annotated[int, typer.Option(min=1, help="forecast every N new minutes of a machine's data")] = 1,
    on: Annotated[float, typer.Option(help="raise an alert at this P(failure within horizon)")] = 0.5,
    off: Annotated[float, typer.Option(help="clear it below this probability")] = 0.1,
    confirm: Annotated[int, typer.Option(min=1, help="forecasts in a row above --on to raise")] = 3,
    clear_after: Annotated[int, typer.Option(min=1, help="forecasts in a row below --off to clear")] = 60,
    duration: Annotated[Optional[float], typer.Option(help="stop after this many seconds (default: Ctrl-C)")]
    = None,
    anomaly: Annotated[Optional[Path], typer.Option(help="also alert on the anomaly score of these VAEs (a folder "
                                                    "from `twin synth train`): fault mode 'anomaly'")] = None,
    ca: Annotated[Optional[Path], typer.Option(help="CA certificate (PEM) for mqtts://")] = None,
    cert: Annotated[Optional[Path], typer.Option(help="client certificate (PEM)")] = None,
    key: Annotated[Optional[Path], typer.Option(help="client key (PEM)")] = None,
) -> None:
    """Forecast faults from live telemetry and machine states; publish alerts to {line}/{station}/{machine}/alerts
    (retained)."""
    from predictors.online import LiveForecaster
    from twin.bus.broker import BrokerError

    if len([p for p in line.split("/") if p]) != 3:
        fail(f"--line {line!r}: write site/area/line, e.g. plant-hamburg/hall-2/bottling-1 (or +/+/+)")
    bundle = _load_models(models)
    detectors = _load_detectors(anomaly, bundle)
    url = _broker_url(broker, ca, cert, key)
    assert url is not None
    with stop_signals() as stop:  # from the start on, and before saying so: a Ctrl-C stops cleanly below
        try:
            fc = LiveForecaster(url, bundle, prefix=line, interval=interval,
                                rule=_rule(on, off, confirm, clear_after), detectors=detectors).start()
        except BrokerError as e:
            fail(str(e), code=3)
        err_console.print(f"forecasting {line} with {models} ({', '.join(bundle)}); Ctrl-C to stop", highlight=False)
        stop.wait(duration)
    fc.stop()
    raised = sum(a["state"] == "raised" for a in fc.alerts)
    err_console.print(f"stopped: {fc.forecasts:,} forecasts, {raised} alerts raised", highlight=False)


ALERT_HEADER = (f"{'time (data, UTC)':19}  {'station/machine':26}  {'state':8}  {'severity':8}  {'fault mode':16}  "
                f"{'P':>5}  RUL (90 % interval)")


def alert_line(a: dict[str, object]) -> str:
    """One alert as a row of the `twin alerts` table."""
    import datetime as dt

    rul = a["rul"]
    assert isinstance(rul, dict)
    when = dt.datetime.fromtimestamp(int(a["ts"]) / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[call-overload]

    def h(s: float) -> str:
        return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min"

    where = f"{a.get('station', '?')}/{a['machine']}"
    return (f"{when:19}  {where:26}  {a['state']!s:8}  {a['severity']!s:8}  {a.get('fault_mode', '')!s:16}  "
            f"{float(a['probability']):5.2f}  {h(rul['estimate_s'])} ({h(rul['low_s'])} – {h(rul['high_s'])})")  # type: ignore[arg-type]


@app.command()
def alerts(
    broker: Annotated[str, typer.Option(help="mqtt://[user:pass@]host:port or mqtts://...")],
    line: Annotated[str, typer.Option(help="site/area/line, or +/+/+ for every line")] = "+/+/+",
    min_severity: Annotated[str, typer.Option(help="info, warning or critical")] = "warning",
    count: Annotated[Optional[int], typer.Option(min=1, help="exit after this many alerts")] = None,
    duration: Annotated[Optional[float], typer.Option(help="exit after this many seconds")] = None,
    ca: Annotated[Optional[Path], typer.Option(help="CA certificate (PEM) for mqtts://")] = None,
    cert: Annotated[Optional[Path], typer.Option(help="client certificate (PEM)")] = None,
    key: Annotated[Optional[Path], typer.Option(help="client key (PEM)")] = None,
) -> None:
    """Print fault alerts as they come (the current one of every machine first: they are retained)."""
    import queue

    from predictors.alerts import SEVERITIES
    from twin.bus.broker import BrokerError, connect, make_client
    from twin.bus.payloads import ParseError, alert_filter, parse_alert

    if min_severity not in SEVERITIES:
        fail(f"--min-severity {min_severity!r}: choose one of {', '.join(SEVERITIES)}")
    if len([p for p in line.split("/") if p]) != 3:
        fail(f"--line {line!r}: write site/area/line, e.g. plant-hamburg/hall-2/bottling-1 (or +/+/+)")
    url = _broker_url(broker, ca, cert, key)
    assert url is not None
    inbox: queue.Queue[dict[str, object]] = queue.Queue()
    client = make_client(url, f"linetwin-alerts-{uuid.uuid4().hex[:8]}")

    def on_message(c: object, u: object, msg: object) -> None:
        with contextlib.suppress(ParseError):
            inbox.put(parse_alert(msg.payload))  # type: ignore[attr-defined]

    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(alert_filter(line), 1)
    try:
        connect(client, url)
    except BrokerError as e:
        fail(str(e), code=3)
    client.subscribe(alert_filter(line), 1)
    out_console.print(ALERT_HEADER, highlight=False, soft_wrap=True)
    floor = SEVERITIES.index(min_severity)
    shown, seen = 0, set()
    deadline = None if duration is None else time.monotonic() + duration
    with stop_signals() as stop:
        while not stop.is_set() and (count is None or shown < count):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            try:
                a = inbox.get(timeout=min(0.5, left) if left is not None else 0.5)
            except queue.Empty:
                continue
            key_ = (a.get("line"), a["machine"])
            sev = SEVERITIES.index(str(a["severity"])) if a["severity"] in SEVERITIES else 0
            if sev >= floor or (a["state"] == "cleared" and key_ in seen):
                seen.add(key_)
                out_console.print(alert_line(a), highlight=False, soft_wrap=True)
                shown += 1
    client.disconnect()
    client.loop_stop()


def _policy_params(every: Optional[str], threshold: Optional[float], models: Optional[Path],
                   on: float) -> PolicyParams:
    from twin.compare import PolicyParams

    if threshold is not None and not 0 < threshold < 1:
        fail(f"--threshold {threshold}: a wear level between 0 and 1, e.g. 0.7")
    if not 0 < on < 1:
        fail(f"--on {on}: a probability between 0 and 1, e.g. 0.5")
    if models is not None:
        _load_models(models)  # a clear error now rather than in a worker process
    return PolicyParams(every=_duration_opt(every, "--every"), threshold=threshold,
                        models=str(models) if models else None, on=on)


def _duration_opt(value: Optional[str], option: str) -> Optional[float]:
    return None if value is None else _time(value, option, 0.0, tables=False)


def _scenario_for_compare(file: Path, duration: Optional[str], replications: Optional[int], seed: Optional[int],
                          warmup: Optional[str]) -> Scenario:
    from twin.cli import _duration, _load

    return _load(file, duration=_duration(duration, "--duration"), replications=replications, seed=seed,
                 warmup=_duration(warmup, "--warmup", allow_zero=True))


def _check_policies(policies: list[str], params: PolicyParams, sc: Scenario) -> None:
    from twin.compare import POLICIES, SCENARIO_POLICIES
    from twin.scenario import ScenarioError, with_policy

    for p in policies:
        if p not in POLICIES:
            fail(f"--policies: unknown policy {p!r}; choose from {', '.join(POLICIES)}")
        if p == "predictive" and params.models is None:
            fail("--policies predictive needs --models (a folder from `twin train` for this line)")
        if p in SCENARIO_POLICIES:
            try:
                with_policy(sc, p, every=params.every, threshold=params.threshold)
            except ScenarioError as e:
                fail(f"{e} (or give --every / --threshold for the comparison)")


Every = Annotated[Optional[str], typer.Option(help="preventive: operating time between services where the file "
                                                   "gives none, e.g. '40 h'")]
Threshold = Annotated[Optional[float], typer.Option(help="condition-based: wear limit where the file gives none")]
ModelsOpt = Annotated[Optional[Path], typer.Option(help="predictive: model folder from `twin train`")]
Jobs = Annotated[Optional[int], typer.Option(min=1, help="parallel processes (default: one per core)")]


@app.command()
def compare(
    file: Annotated[Path, typer.Argument(help="scenario file (YAML)")],
    policies: Annotated[str, typer.Option(help="comma-separated, the first is the reference: run-to-failure, "
                                          "preventive, condition-based, predictive, oracle")]
    = "run-to-failure,preventive,condition-based,predictive",
    replications: Annotated[Optional[int], typer.Option(min=1, help="replications per policy (at least 2)")] = None,
    duration: Annotated[Optional[str], typer.Option(help="simulated time per replication, e.g. '7 d'")] = None,
    warmup: Annotated[Optional[str], typer.Option(help="time discarded from KPIs")] = None,
    seed: Annotated[Optional[int], typer.Option(min=0)] = None,
    models: ModelsOpt = None, every: Every = None, threshold: Threshold = None,
    on: Annotated[float, typer.Option(help="predictive: alert probability that orders maintenance")] = 0.5,
    defer: Annotated[str, typer.Option(help="predictive: none (serve orders at once) or buffer (wait, within the "
                                       "forecast, until the next buffer covers the stop)")] = "none",
    jobs: Jobs = None,
    out: Annotated[Optional[Path], typer.Option(help="report folder (default: reports/compare-<scenario>)")] = None,
) -> None:
    """Compare maintenance policies on one line (common random numbers): OEE, failures, downtime, cost, with CIs."""
    from twin.compare import KPIS, write_report
    from twin.compare import compare as run_compare

    sc = _scenario_for_compare(file, duration, replications, seed, warmup)
    if sc.replications < 2:
        fail("--replications: at least 2, so that differences get a confidence interval")
    names = [p.strip() for p in policies.split(",") if p.strip()]
    if defer not in ("none", "buffer"):
        fail(f"--defer {defer!r}: choose none or buffer")
    params = dataclasses.replace(_policy_params(every, threshold, models, on), defer=defer)
    _check_policies(names, params, sc)
    with _bar() as bar:
        task = bar.add_task(f"{len(names)} policies × {sc.replications} replications", total=len(names) *
                            sc.replications, note="")
        try:
            cmp = run_compare(sc, names, params, jobs=jobs,
                              progress=lambda d, t: bar.update(task, completed=d, note=f"{d}/{t} simulations"))
        except ValueError as e:
            fail(str(e))
    summ, diff = cmp.summary(), cmp.differences()
    t = Table(title=f"{sc.line.name}: policies over {sc.replications} replications of {sc.duration / 3600:g} h "
              f"(mean ± 95 % CI; * differs from {cmp.reference})")
    t.add_column("KPI")
    for p in names:
        t.add_column(escape(p), justify="right")
    sig = {(r.policy, r.kpi) for r in diff.itertuples() if r.significant}
    from twin.compare import fmt_ci

    for kpi in KPIS:
        s = summ[summ.kpi == kpi].set_index("policy")
        t.add_row(escape(kpi), *(fmt_ci(s.loc[p, "mean"], s.loc[p, "ci_low"], s.loc[p, "ci_high"]) +
                                 (" *" if (p, kpi) in sig else "") if p in s.index else "-" for p in names))
    out_console.print(t)
    path = write_report(cmp, out or Path("reports") / f"compare-{file.stem}")
    out_console.print(f"{len(names) * sc.replications} simulations in {cmp.wall:.1f} s on {cmp.jobs} processes; "
                      f"report: [bold]{path}[/]", highlight=False)


@app.command()
def tune(
    file: Annotated[Path, typer.Argument(help="scenario file (YAML)")],
    policy: Annotated[str, typer.Option(help="preventive (sweeps --every), condition-based (threshold) or "
                                        "predictive (alert probability --on)")],
    values: Annotated[str, typer.Option(help="comma-separated settings, e.g. '20 h,40 h,60 h' or '0.5,0.6,0.7'")],
    objective: Annotated[str, typer.Option(help="KPI to optimise, e.g. 'total cost', 'oee', 'unplanned failures'")]
    = "total cost",
    replications: Annotated[Optional[int], typer.Option(min=1, help="replications per setting (at least 2)")] = None,
    duration: Annotated[Optional[str], typer.Option()] = None,
    warmup: Annotated[Optional[str], typer.Option()] = None,
    seed: Annotated[Optional[int], typer.Option(min=0)] = None,
    models: ModelsOpt = None, jobs: Jobs = None,
    out: Annotated[Optional[Path], typer.Option(help="report folder (default: reports/tune-<scenario>-<policy>)")]
    = None,
) -> None:
    """Sweep one policy parameter (common random numbers, in parallel) and report the best setting with its CI."""
    from twin.compare import KPIS, fmt_ci, write_report
    from twin.compare import tune as run_tune

    parameter = {"preventive": "every", "condition-based": "threshold", "predictive": "on"}.get(policy)
    if parameter is None:
        fail(f"--policy {policy!r}: choose preventive, condition-based or predictive")
    if objective not in KPIS:
        fail(f"--objective {objective!r}: choose one of {', '.join(KPIS)}")
    raw = [v.strip() for v in values.split(",") if v.strip()]
    try:
        nums = [float(parse_duration(v)) if parameter == "every" else float(v) for v in raw]
    except ValueError as e:
        fail(f"--values {values!r}: {e}")
    if len(nums) < 2:
        fail("--values: give at least two settings to compare")
    sc = _scenario_for_compare(file, duration, replications, seed, warmup)
    if sc.replications < 2:
        fail("--replications: at least 2, so that each setting gets a confidence interval")
    params = _policy_params(None, None, models, 0.5)
    if policy == "predictive" and models is None:
        fail("--policy predictive needs --models (a folder from `twin train` for this line)")
    for v in nums:
        if parameter in ("threshold", "on") and not 0 < v < 1:
            fail(f"--values: {v:g} is not between 0 and 1")
    with _bar() as bar:
        task = bar.add_task(f"{policy}: {len(nums)} settings × {sc.replications} replications",
                            total=len(nums) * sc.replications, note="")
        result = run_tune(sc, policy, parameter, nums, params, objective, jobs,
                          progress=lambda d, t: bar.update(task, completed=d, note=f"{d}/{t}"))
    summ = result.comparison.summary()
    t = Table(title=f"{policy}: {parameter} swept over {sc.replications} replications (mean ± 95 % CI)")
    t.add_column(parameter)
    for k in (objective, "unplanned failures", "oee", "maintenance actions"):
        t.add_column(escape(k), justify="right")
    for v in nums:
        s = summ[summ.policy == f"{parameter}={v:g}"].set_index("kpi")
        label = f"{v / 3600:g} h" if parameter == "every" else f"{v:g}"
        t.add_row(label + (" ← best" if v == result.best else ""),
                  *(fmt_ci(s.loc[k, "mean"], s.loc[k, "ci_low"], s.loc[k, "ci_high"])
                    for k in (objective, "unplanned failures", "oee", "maintenance actions")))
    out_console.print(t)
    best = f"{result.best / 3600:g} h" if parameter == "every" else f"{result.best:g}"
    path = write_report(result.comparison, out or Path("reports") / f"tune-{file.stem}-{policy}")
    out_console.print(f"best {parameter} by {objective}: [bold]{best}[/]; report: {path}", highlight=False)


def start_dashboard(runs: Path, port: int | None = None, store: str | None = None, broker: str | None = None,
                    models: Path | None = None, reports: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start the Streamlit dashboard on 127.0.0.1 (a free port unless given); returns the process and its URL."""
    import os
    import sys
    import tempfile

    from twin.bus.broker import free_port, wait_port

    port = port or free_port()
    env = {**os.environ, "LINETWIN_RUNS": str(runs.resolve())}
    for key, value in (("LINETWIN_STORE", store), ("LINETWIN_BROKER", broker), ("LINETWIN_MODELS", models),
                       ("LINETWIN_REPORTS", reports)):
        if value is not None:
            env[key] = str(Path(value).resolve()) if isinstance(value, Path) else value
    app_file = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
    # Streamlit's log goes to an unnamed file: a pipe nobody reads fills up and stalls the dashboard
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app_file), "--server.address",
                                 "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
                                 "--browser.gatherUsageStats", "false"], env=env, stdout=subprocess.DEVNULL,
                                stderr=log)
        try:
            wait_port(port, timeout=60)
        except Exception:
            proc.kill()
            proc.wait()
            log.seek(0)
            err = log.read().decode(errors="replace")[-1500:]
            fail(f"the dashboard did not start on 127.0.0.1:{port}: {err or 'no output'}", code=3)
    return proc, f"http://127.0.0.1:{port}"


def serve_until_stopped(proc: subprocess.Popen[bytes], notice: str) -> None:
    """Print `notice` once Ctrl-C and SIGTERM are handled (a signal sent on reading it stops cleanly), keep a started
    server process up until one arrives (or until it exits), then stop it."""
    with stop_signals() as stop:
        out_console.print(notice, highlight=False)
        try:
            while proc.poll() is None and not stop.wait(0.2):
                pass
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@app.command()
def dashboard(
    runs: Annotated[Path, typer.Option(help="folder of run folders (as `twin run` writes them)")] = Path("runs"),
    store: Annotated[Optional[str], typer.Option(help="read readings from this store instead of each run's own")]
    = None,
    broker: Annotated[Optional[str], typer.Option(help="MQTT broker for live machine states, KPIs and alerts")]
    = None,
    models: Annotated[Optional[Path], typer.Option(help="models from `twin train`: forecasts on machine pages")]
    = None,
    reports: Annotated[Path, typer.Option(help="folder of evaluation and comparison reports")] = Path("reports"),
    port: Annotated[Optional[int], typer.Option(min=1, max=65535, help="default: a free port")] = None,
) -> None:
    """Start the live twin dashboard on 127.0.0.1 (prints its URL); Ctrl-C stops it."""
    if broker is not None:
        _broker_url(broker, None, None, None)  # a clear error now for a malformed URL
    if models is not None:
        _load_models(models)
    proc, url = start_dashboard(runs, port, store, broker, models, reports)
    serve_until_stopped(proc, f"dashboard: [bold]{url}[/] (runs in {runs}); Ctrl-C to stop")
