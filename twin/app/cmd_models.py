"""`twin train`, `twin evaluate`, `twin predict` and `twin alerts`: fault forecasting from the command line."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from twin import MAX_SEED
from twin.app.options import (
    BrokerOpt,
    CaOpt,
    CertOpt,
    ClusterOpt,
    ForceOpt,
    Jobs,
    KeyOpt,
    LineOpt,
    StoreOpt,
    broker_url,
    err_console,
    fail,
    line_prefix,
    needs_unit,
    out_console,
    print_table,
    progress_bar,
    report_folder,
    separator_option,
    stage,
    stop_signals,
    time_option,
    writable,
)

if TYPE_CHECKING:
    from predictors.alarms import AlarmDesk
    from predictors.alerts import AlertRule
    from predictors.base import Bundle
    from predictors.data import RunToFailure, TableFormat
    from predictors.online import LiveForecaster
    from predictors.policy import AlertOrders
    from predictors.synth import ConditionalVAE
    from sensors.bus.broker import BrokerURL
    from twin.app.stream import Attach
    from twin.scenario import Scenario

TABLE_HELP = "for tables"
Sources = Annotated[list[Path], typer.Argument(help="twin run folders (from `twin run`), or run-to-failure tables "
                                                    "(CSV, Excel .xlsx, Parquet, whitespace-separated text)")]
UnitCol = Annotated[Optional[str], typer.Option(help=f"{TABLE_HELP}: unit id column (name, or 0-based position "
                                                     "without a header)")]
TimeCol = Annotated[Optional[str], typer.Option(help=f"{TABLE_HELP}: time/cycle column (name or position): "
                                                     "numbers (cycles, hours), or ISO 8601 times, read as hours")]
Columns = Annotated[Optional[str], typer.Option(help=f"{TABLE_HELP} without a header row: comma-separated names "
                                                     "of all columns")]
Features = Annotated[Optional[str], typer.Option(help=f"{TABLE_HELP}: comma-separated feature columns, names or "
                                                      "positions without a header (default: every other numeric "
                                                      "column)")]
EndCol = Annotated[Optional[str], typer.Option(help=f"{TABLE_HELP}: column saying how each unit ended, at its last "
                                                    "row: a fault mode's name (it failed so) or censored / running / "
                                                    "replaced / preventive (it did not fail; its rows are used, "
                                                    "censored). Default: every unit's last row is a failure")]
Sep = Annotated[Optional[str], typer.Option(help=f"{TABLE_HELP}: column separator, one character or 'tab' "
                                                 "(default: found from a .csv, whitespace otherwise)")]
Zone = Annotated[Optional[str], typer.Option("--timezone", help=f"{TABLE_HELP}: the IANA zone its ISO times "
                                                                "without a UTC offset are local times in, e.g. "
                                                                "Europe/Berlin: hours across summer time's changes "
                                                                "counted as they passed (default: as written)")]


def _col(value: Optional[str], default: str) -> str | int:
    if value is None:
        return default
    return int(value) if value.isdigit() else value


def _table_format(unit_column: Optional[str], time_column: Optional[str], columns: Optional[str],
                  features: Optional[str], sep: Optional[str], end_column: Optional[str] = None,
                  timezone: Optional[str] = None) -> TableFormat:
    from predictors.data import TableFormat

    if timezone is not None:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(timezone)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            fail(f"--timezone {timezone!r}: not a time zone; give an IANA name such as Europe/Berlin or UTC")
    split = (lambda v: [c.strip() for c in v.split(",") if c.strip()] if v else None)  # noqa: E731
    return TableFormat(_col(unit_column, "unit"), _col(time_column, "time"), split(columns), split(features),
                       separator_option(sep), _col(end_column, "end") if end_column is not None else None, timezone)


def _conditions(names: Optional[str], data: dict[str, RunToFailure]) -> list[str]:
    """--conditions as feature names every dataset has (a position N of a table without a header is its cN)."""
    if not names:
        return []
    from predictors.data import column_name

    common = set.intersection(*(set(ds.features) for ds in data.values()))
    out = []
    for name in (column_name(n.strip(), common) for n in names.split(",") if n.strip()):
        for group, ds in data.items():
            if name not in ds.features:
                fail(f"--conditions: {name!r} is not a feature of {group} (its features: {', '.join(ds.features)}); "
                     "name operating-condition columns that are features")
        if name not in out:
            out.append(name)
    return out


def _datasets(sources: list[Path], fmt: TableFormat, store: Optional[str],
              rul: Optional[Path] = None) -> dict[str, RunToFailure]:
    """Datasets per machine type from twin run folders, or one ("table") from run-to-failure tables."""
    from predictors.data import DataError, TableFormat, concat, from_table, from_twin_runs
    from sensors.store import StoreError

    tables = _are_tables(sources)
    if not tables and fmt != TableFormat():
        fail("--unit-column, --time-column, --columns, --features, --sep, --end-column and --timezone describe "
             "run-to-failure "
             "tables; twin run folders carry their own machines, sensors and failures: leave them out")
    if tables and store is not None:
        fail("--store reads twin runs from a store; tables are read from their own files: leave --store out")
    if tables and rul is not None and len(sources) != 1:
        fail("--rul gives the true RUL of one test table: give exactly one table with it")
    if not tables and rul is not None:
        fail("--rul belongs to a test table cut off before failure; twin runs carry their own truth")
    what = f"{len(sources)} {'table' if tables else 'twin run'}{'s' if len(sources) > 1 else ''}"
    try:
        with stage(f"reading {what}"):
            if not tables:
                return from_twin_runs(sources, store)
            table = concat([from_table(p, fmt, rul, group="table") for p in sources])
        for note in table.notes:  # a report's title left out, a sheet after a cover sheet
            err_console.print(f"note: {note}", highlight=False, markup=False)
        return {"table": table}
    except (DataError, StoreError) as e:
        fail(str(e))


def _are_tables(sources: list[Path]) -> bool:
    """Whether the sources are run-to-failure tables (files) rather than twin run folders; a clear error for a
    missing source or a mix, before any data is read."""
    missing = [p for p in sources if not p.exists()]
    if missing:
        fail(f"{missing[0]}: no such file or folder; give twin run folders or run-to-failure tables")
    dirs = [p.is_dir() for p in sources]
    if any(dirs) and not all(dirs):
        fail("give either twin run folders or tables, not both (their features differ)")
    return not all(dirs)


def fresh_out(out: Path, marker: str, force: bool) -> Path:
    """`out` for newly trained models: refused when it already holds some (a folder per machine type with `marker`),
    which training would replace without a word, unless `force`."""
    held = sorted({p.parent.name for p in out.glob(f"*/{marker}")}) if out.is_dir() else []
    if held and not force:
        fail(f"--out {out} already holds trained models ({', '.join(held)}); give another folder, or add --force to "
             "replace them")
    return out


def _time(value: Optional[str], option: str, default: float, tables: bool) -> float:
    """A time option: a duration for twin runs ('2 h'), a number of cycles for tables."""
    if value is None:
        return default
    from twin.distributions import parse_duration

    if not tables:
        needs_unit(value, option)
    try:
        v = float(value) if tables else float(parse_duration(value))
    except ValueError as e:
        fail(f"{option}: {e}" if not tables else f"{option}: give a number of cycles, got {value!r}")
    if not 0 < v < float("inf"):  # nan too
        fail(f"{option}: must be a positive number, got {value!r}")
    return v


def set_threads(threads: int | None) -> None:
    """--threads: the CPU threads torch computes with (default: torch's own choice, one per core). Torch not yet
    loaded (a regression model needs none) reads them from the environment when it loads."""
    if threads is None:
        return
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)


Threads = Annotated[Optional[int], typer.Option(min=1, max=256, help="CPU threads for torch (default: all cores)")]


def train(
    sources: Sources,
    model: Annotated[str, typer.Option(help="lstm, cnn (1-D convolutions) or regression")] = "lstm",
    out: Annotated[Optional[Path], typer.Option(help="model folder (default: models/<source>-<model>)")] = None,
    horizon: Annotated[Optional[str], typer.Option(help="forecast horizon H: '2 h' for twin runs, cycles for "
                                                   "tables (default 2 h / 30)")] = None,
    cap: Annotated[Optional[str], typer.Option(help="RUL cap of the piecewise-linear target (default 8 h / 125)")]
    = None,
    window: Annotated[Optional[int], typer.Option(min=2, max=500, help="rows per input window (default: 60 minutes "
                                                  "for twin runs, 30 cycles for tables)")] = None,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="seed of the split, initial weights and batches")] = 0,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="lstm and cnn: most epochs (early stopping may end "
                                                  "sooner)")] = None,
    store: StoreOpt = None,
    unit_column: UnitCol = None, time_column: TimeCol = None, columns: Columns = None, features: Features = None,
    sep: Sep = None,
    end_column: EndCol = None,
    timezone: Zone = None,
    members: Annotated[int, typer.Option(min=1, max=20, help="an ensemble of this many models, each validated on its "
                                         "own 1/N of the units (N-fold) and trained on the rest, forecasts "
                                         "averaged: every unit trains, N times the time")] = 1,
    conditions: Annotated[Optional[str], typer.Option(
        help="comma-separated features that are operating conditions (load, speed, altitude, a setting), not "
             "health: every other feature is standardised within the operating regime found from them (a table "
             "without a header: positions or cN names)")] = None,
    regimes: Annotated[int, typer.Option(min=0, max=12, help="with --conditions: how many operating regimes (0: as "
                                         "many as stand clearly apart, else one)")] = 0,
    jobs: Jobs = None, cluster: ClusterOpt = None,
    threads: Threads = None,
    force: Annotated[bool, typer.Option(help="write into --out even if it holds earlier models (replacing them)")]
    = False,
) -> None:
    """Train a fault forecaster (one per machine type) and the naive baseline beside it; an ensemble's members on
    --jobs local processes or a Dask --cluster (here, one after another, by default: torch uses every core)."""
    from predictors.lifecycle import kinds, model_class

    set_threads(threads)
    choices = [k for k in kinds("forecaster") if k != "baseline"]
    if model not in choices:
        fail(f"--model {model!r}: choose one of {', '.join(choices)}")
    if epochs is not None and model == "regression":
        fail("--epochs: the regression model is fitted in one pass; --epochs belongs to lstm and cnn")
    tables = _are_tables(sources)  # what --horizon and --cap count in; options checked before any data is read
    from predictors.base import DEFAULTS, Estimator, MeanBaseline, save_bundle
    from twin.app.cluster import ClusterError, tasks

    defaults = DEFAULTS["cycles" if tables else "s"]
    h = _time(horizon, "--horizon", defaults["horizon"], tables)
    c = _time(cap, "--cap", defaults["cap"], tables)
    window = window or int(defaults["window"])
    if c < h:
        fail(f"--cap ({cap or f'{c:g}'}) must be at least the horizon ({horizon or f'{h:g}'})")
    if regimes and not conditions:
        fail("--regimes counts the operating regimes of the --conditions features: give --conditions too")
    out = fresh_out(out or Path("models") / f"{sources[0].stem if tables else sources[0].parent.name}-{model}",
                 "model.json", force)
    fmt = _table_format(unit_column, time_column, columns, features, sep, end_column, timezone)
    data = _datasets(sources, fmt, store)
    cond = _conditions(conditions, data)
    kind = cast(type[Estimator], model_class(model))  # torch loads here (2 s), once the options and data are good
    out = writable(out)
    extra = {"epochs": epochs} if epochs and model in ("lstm", "cnn") else {}
    bundle: Bundle = {}
    warnings: list[str] = []
    summary = Table(title=f"trained {model} models → {out}")
    for col in ("machine type", "rows", "units", "failures", "valid units", "note"):
        summary.add_column(col)
    try:
        with progress_bar() as bar, tasks(cluster, jobs or 1, members) as where:
            run = where.map if where.client is not None else None
            for group, ds in data.items():
                if not ds.modes or ds.failures.empty:
                    summary.add_row(group, f"{len(ds):,}", "", "0", "", "no wear-out failures: skipped")
                    continue
                task = bar.add_task(f"{group}", total=None, note="")

                def progress(done: int, total: int, note: str, task: int = task) -> None:
                    bar.update(task, completed=done, total=total, note=note)

                try:
                    est = kind(horizon=h, cap=c, window=window, seed=seed, members=members, conditions=cond,
                               regimes=regimes, **extra).fit(ds, progress, run=run)
                    base = MeanBaseline(horizon=h, cap=c, window=window, seed=seed).fit(ds)
                except ValueError as e:
                    fail(f"{group}: cannot train on this data ({e})")
                bundle[group] = {"model": est, "baseline": base}
                bar.update(task, note="done")
                runs = [getattr(m, "history_", None) for m in (est.members_ or [est])]
                epochs_run = "/".join(str(len(h)) for h in runs if h) + " epochs" if any(runs) else ""
                valid = (f"{members} × {len(est.meta_['member_valid_units'][0])}" if est.members_
                         else str(len(est.meta_["valid_units"])))
                found = "" if est.prep_ is None or est.prep_.centers is None else \
                    f"; {len(est.prep_.centers)} operating regime{'s' if len(est.prep_.centers) > 1 else ''}"
                summary.add_row(group, f"{len(ds):,}", str(ds.frame['unit'].nunique()), str(len(ds.failures)),
                                valid, epochs_run + found)
                if few := few_failures(ds):
                    warnings.append(f"{group}: {few}")
    except ClusterError as e:
        fail(str(e), code=3)
    if not bundle:
        fail("no machine type had wear-out failures to learn from; run longer or with --policy run-to-failure")
    save_bundle(bundle, out)
    print_table(summary)
    for w in warnings:
        err_console.print(f"[yellow]warning[/]: {escape(w)}", markup=True, highlight=False)
    out_console.print(f"models: [bold]{escape(str(out))}[/] (use with `twin evaluate --models {escape(str(out))}` or "
                      "`twin predict`)", markup=True, highlight=False)


def evaluate(
    sources: Sources,
    models: Annotated[list[Path], typer.Option(help="model folder from `twin train` (repeat to compare)")],
    out: Annotated[Optional[Path], typer.Option(help="report folder (default: a new reports/<first model "
                                                     "folder>-<time>)")] = None,
    rul: Annotated[Optional[Path], typer.Option(help="test protocol: true RUL of each unit of a test table cut "
                                                "off before failure")] = None,
    force: ForceOpt = False,
    threads: Threads = None,
    store: StoreOpt = None,
    unit_column: UnitCol = None, time_column: TimeCol = None, columns: Columns = None, features: Features = None,
    sep: Sep = None,
    end_column: EndCol = None,
    timezone: Zone = None,
) -> None:
    """Score models on held-out data beside the naive baseline; write report.md with plots."""
    set_threads(threads)
    if out is not None:
        report_folder(out, "", force)
    _are_tables(sources)  # a missing source named before the models (and torch) load
    from predictors.evaluate import evaluate as run_evaluation
    from predictors.evaluate import overlap, table, write_report

    bundles = {folder: load_models(folder) for folder in models}
    fmt = _table_format(unit_column, time_column, columns, features, sep, end_column, timezone)
    data = _datasets(sources, fmt, store, rul)
    evals, warned = [], []
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
        seen = overlap(chosen, ds)
        if seen:
            err_console.print(f"warning: {group}: {seen}", highlight=False, markup=False)
            warned.append(f"**Warning, {group}:** {seen}.")
        try:
            with stage(f"{group}: forecasting {len(ds):,} rows with {len(chosen)} models"):
                ev = run_evaluation(chosen, ds)
        except ValueError as e:
            fail(f"{group}: {e}")
        evals.append(ev)
        t = Table(title=f"{group}: {'scores on TRAINING units' if seen else 'held-out scores'} (all of them in the "
                        "report)")
        tab = table(ev).drop(columns=["row F1", "alerts", "min lead", "alert precision", "alert recall",
                                      "mean lead"], errors="ignore")
        tab.columns = [c.replace("RMSE, truth capped at", "RMSE capped") for c in tab.columns]
        for col in tab.columns:
            t.add_column(col, justify="left" if col == "model" else "right")
        for row in tab.itertuples(index=False):
            t.add_row(*(str(v) for v in row))
        print_table(t)
    if not evals:
        fail("none of the models matches this data's machine types; train on data from the same line")
    out = out or report_folder(None, models[0].name)  # made once there is something to report
    with stage(f"writing the report to {out}"):
        path = write_report(evals, out, f"Fault forecasting: {', '.join(m.name for m in models)}",
                            [f"Evaluation data: {', '.join(map(str, sources))}.", *warned])
    out_console.print(f"report: [bold]{escape(str(path))}[/]", markup=True, highlight=False)


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


def load_models(folder: Path) -> Bundle:
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
                              "more history to alert on them", markup=True, highlight=False)
    return bundle


def models_for(folder: Path, sc: Scenario) -> Bundle:
    """The models of `folder` for the line of `sc`: refused when none of its machine types has one, or when a model
    reads sensors its machine type lacks (it would forecast from nothing but training means); the types without a
    model are named (they are not forecast)."""
    bundle = load_models(folder)
    types = {st.machine_type for st in sc.stations}
    name = f"the line {sc.line.site}/{sc.line.area}/{sc.line.name}"
    if not types & set(bundle):
        fail(f"{folder}: its models are for the machine types {', '.join(sorted(bundle))}; {name} has none of them "
             f"(its types: {', '.join(sorted(types))}); train models on runs of this line (`twin train`)")
    for group in sorted(types & set(bundle)):
        model = bundle[group].get("model")
        features = set(getattr(getattr(model, "prep_", None), "features", None) or [])
        if missing := sorted(features - {s.name for s in sc.machine_types[group].sensors}):
            fail(f"{folder}: the {group} model reads sensors {', '.join(missing)}, which the machine type {group} of "
                 f"{name} does not have; train it on runs of this line")
    if rest := sorted(types - set(bundle)):
        err_console.print(f"note: {folder} has no model for the machine types {', '.join(rest)}: they are not "
                          "forecast", highlight=False)
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
    bundle = models_for(models, sc)
    detectors = _load_detectors(anomaly, bundle)
    prefix = f"{sc.line.site}/{sc.line.area}/{sc.line.name}"

    @contextlib.contextmanager
    def attach(url: BrokerURL, protocol: int) -> Iterator[object]:
        from predictors.online import LiveForecaster

        if orders is not None:
            orders.start(url, protocol)
        fc = LiveForecaster(url, bundle, prefix=prefix, protocol=protocol, rule=rule, detectors=detectors,
                            desk=alarm_desk(), key=orders.key if orders is not None else None).start()
        console.print(f"forecasting faults with {models} ({', '.join(bundle)})"
                      + (f", anomaly scores from {anomaly} ({', '.join(detectors)})" if detectors else "")
                      + f"; alerts on {prefix}/+/+/alerts", highlight=False)
        try:
            yield fc
        finally:
            fc.wait_idle(120)
            fc.stop()
            _desk_done(fc)
            raised = [a for a in fc.alerts if a["state"] == "raised"]
            console.print(f"forecaster: {fc.received:,} messages, {fc.forecasts:,} forecasts, "
                          f"{len(raised)} alerts raised", highlight=False)
            if fc.unknown:
                console.print(f"no model for machines {', '.join(sorted(fc.unknown))}: not forecast", highlight=False)
            if orders is not None:
                time.sleep(0.5)  # the last alerts' way back
                orders.stop()
                console.print(f"predictive policy: {orders.orders.placed} maintenance orders from alerts"
                              + (f"; {orders.ignored} alerts ignored (not signed by this run's forecaster)"
                                 if orders.ignored else ""), highlight=False)

    return attach


def predict(
    models: Annotated[Path, typer.Option(help="model folder from `twin train`")],
    broker: BrokerOpt,
    line: LineOpt = "+/+/+",
    interval: Annotated[int, typer.Option(min=1, help="forecast every N new minutes of a machine's data")] = 1,
    on: Annotated[float, typer.Option(help="raise an alert at this P(failure within horizon)")] = 0.5,
    off: Annotated[float, typer.Option(help="clear it below this probability")] = 0.1,
    confirm: Annotated[int, typer.Option(min=1, help="forecasts in a row above --on to raise")] = 3,
    clear_after: Annotated[int, typer.Option(min=1, help="forecasts in a row below --off to clear")] = 60,
    duration: Annotated[Optional[str], typer.Option(help="stop after this long (e.g. '8 h'; a number is seconds); "
                                                    "default: Ctrl-C")] = None,
    anomaly: Annotated[Optional[Path], typer.Option(help="also alert on the anomaly score of these VAEs (a folder "
                                                    "from `twin synth train`): fault mode 'anomaly'")] = None,
    ca: CaOpt = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
) -> None:
    """Forecast faults from live telemetry and machine states; publish alerts to {line}/{station}/{machine}/alerts
    (retained)."""
    from predictors.online import LiveForecaster
    from sensors.bus.broker import BrokerError

    line_prefix(line)
    seconds = time_option(duration, "--duration")
    bundle = load_models(models)
    detectors = _load_detectors(anomaly, bundle)
    url = broker_url(broker, ca, cert, key)
    assert url is not None
    with stop_signals() as stop:  # from the start on, and before saying so: a Ctrl-C stops cleanly below
        try:
            fc = LiveForecaster(url, bundle, prefix=line, interval=interval,
                                rule=_rule(on, off, confirm, clear_after), detectors=detectors,
                                desk=alarm_desk()).start()
        except BrokerError as e:
            fail(str(e), code=3)
        err_console.print(f"forecasting {line} with {models} ({', '.join(bundle)}); Ctrl-C to stop", highlight=False)
        stop.wait(seconds)
    fc.stop()
    _desk_done(fc)
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


def alerts(
    broker: BrokerOpt,
    line: LineOpt = "+/+/+",
    min_severity: Annotated[str, typer.Option(help="info, warning or critical")] = "warning",
    count: Annotated[Optional[int], typer.Option(min=1, help="exit after this many alerts")] = None,
    duration: Annotated[Optional[str], typer.Option(help="exit after this long (e.g. '30 min'; a number is "
                                                    "seconds)")] = None,
    ca: CaOpt = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
) -> None:
    """Print fault alerts as they come (the current one of every machine first: they are retained)."""
    import queue

    from predictors.alerts import SEVERITIES
    from sensors.bus.broker import BrokerError, connect, make_client
    from sensors.bus.payloads import ParseError, alert_filter, parse_alert

    if min_severity not in SEVERITIES:
        fail(f"--min-severity {min_severity!r}: choose one of {', '.join(SEVERITIES)}")
    line_prefix(line)
    seconds = time_option(duration, "--duration")
    url = broker_url(broker, ca, cert, key)
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
    deadline = None if seconds is None else time.monotonic() + seconds
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


def alarm_desk() -> AlarmDesk:
    """The alarm book and notifications for a live forecaster; a clear error for wrong notification settings."""
    from predictors.alarms import AlarmDesk, NotifyError
    from sensors.store.ledger import Ledger, LedgerError

    try:
        return AlarmDesk(Ledger())
    except (NotifyError, LedgerError) as e:
        fail(str(e))


def _desk_done(fc: LiveForecaster) -> None:
    """Let notifications in flight go out, and say if the alarm book could not be written."""
    if fc.desk is not None:
        fc.desk.wait(10)
    if fc.desk_problem:
        err_console.print(f"warning: alerts were published but not filed in the alarm book: {fc.desk_problem}",
                          highlight=False)
