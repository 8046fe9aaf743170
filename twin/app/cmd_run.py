"""`twin validate`, `twin run`, `twin ingest` and `twin schema`: scenario files in, simulated and streamed runs out."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from twin import MAX_SEED
from twin.app.options import (
    BrokerOpt,
    CaOpt,
    CertOpt,
    ClusterOpt,
    KeyOpt,
    LineOpt,
    broker_url,
    err_console,
    fail,
    line_prefix,
    open_scenario,
    out_console,
    print_table,
    progress_bar,
    stop_signals,
    time_option,
    writable,
)

if TYPE_CHECKING:  # pandas, the scenario model and the streaming modules load only when a command needs them
    import pandas as pd

    from sensors.bus.broker import BrokerURL
    from sensors.inject import Injection
    from twin.app.direct import StreamStats
    from twin.app.runner import ProgressFn
    from twin.app.stream import Attach, PolicyFactory
    from twin.scenario import Scenario


def validate(files: Annotated[list[Path], typer.Argument(help="scenario files to check, or folders of them "
                                                                 "(their .yaml and .yml files, in subfolders too)")]
             ) -> None:
    """Check scenario files; print what is wrong with each (exit 2 if any is invalid)."""
    from twin.scenario import ScenarioError, load_scenario

    bad = 0
    expanded = []
    for f in files:
        if f.is_dir():
            found = sorted(p for p in f.rglob("*") if p.suffix.lower() in (".yaml", ".yml") and p.is_file())
            if not found:
                err_console.print(f"[bold red]invalid:[/] {escape(str(f))}: a folder without scenario files "
                                  "(.yaml, .yml); give the files or the folder that holds them", markup=True,
                                  highlight=False, soft_wrap=True)
                bad += 1
            expanded += found
        else:
            expanded.append(f)
    for f in expanded:
        try:
            sc = load_scenario(f)
        except ScenarioError as e:
            err_console.print(f"[bold red]invalid:[/] {escape(str(e))}", markup=True, highlight=False, soft_wrap=True)
            bad += 1
            continue
        n_m = sum(len(s.machine_names) for s in sc.stations)
        cal = sc.calendar
        planned = "" if cal is None else (f", planned {cal.week_hours():.4g} h a week"  # what the calendar means
                                          + (f" (breaks {', '.join(cal.breaks)} taken off)" if cal.breaks else ""))
        mix = ", ".join(f"{name} {share:.0%}" for name, share in sc.product_mix().items()) if sc.products else ""
        shifts = [f"crew {c.name} {c.there()}"
                  + (f" (on call in {c.on_call / 60:g} min)" if c.on_call is not None else "")
                  for c in sc.repair_crews if c.calendar is not None]  # repairs off its shifts wait
        more = (f", {len(sc.products)} product{'s' * (len(sc.products) != 1)} ({mix})" if mix else "") + (
            f", spare parts {', '.join(s.name for s in sc.spares)}" if sc.spares else "") + (
            f", {len(sc.orders)} order{'s' * (len(sc.orders) != 1)} before the release plan "
            f"({sum(o.parts for o in sc.orders):,} good parts)" if sc.orders else "") + "".join(
            f", {text}" for text in shifts)
        out_console.print(f"[green]ok[/] {escape(str(f))}: line {sc.line.site}/{sc.line.area}/{sc.line.name}, "
                          f"{len(sc.stations)} station{'s' * (len(sc.stations) != 1)}, {n_m} "
                          f"machine{'s' * (n_m != 1)}{escape(planned + more)}, constraint by design "
                          f"{escape(sc.stations[sc.constraint()].name)}", markup=True, highlight=False)
        for note in sc.notes():
            out_console.print(f"  note: {note}", highlight=False, soft_wrap=True)
    if bad:
        raise typer.Exit(2)


def run(
    file: Annotated[Path, typer.Argument(help="scenario file (YAML)")],
    duration: Annotated[Optional[str], typer.Option(help="simulated time per replication, e.g. '8 h'")] = None,
    replications: Annotated[Optional[int], typer.Option(min=1, help="number of replications")] = None,
    seed: Annotated[Optional[int], typer.Option(min=0, max=MAX_SEED, help="override the scenario's seed")] = None,
    warmup: Annotated[Optional[str], typer.Option(help="time discarded from KPIs, e.g. '30 min'")] = None,
    realtime_factor: Annotated[Optional[float], typer.Option(min=0, help="0 = flat out, 1 = wall clock")] = None,
    out: Annotated[Optional[Path], typer.Option(help="result folder (default: runs/<scenario>/<time>)")] = None,
    broker: Annotated[Optional[str], typer.Option(help="mqtt://[user:pass@]host:port or mqtts://...; "
                                                  "default: an embedded broker on 127.0.0.1")] = None,
    ca: CaOpt = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
    store: Annotated[Optional[str], typer.Option(help="duckdb:///file or influxdb://host:8086?org=..&bucket=..; "
                                                 "default: twin.duckdb in the result folder")] = None,
    policy: Annotated[Optional[str], typer.Option(help="maintenance policy for every machine type instead of the "
                                                  "file's: run-to-failure, preventive, condition-based, "
                                                  "inspection, perfect-monitoring, or "
                                                  "predictive (with --models: alerts order maintenance)")] = None,
    stream: Annotated[bool, typer.Option(help="stream over MQTT into the store while simulating (--no-stream: "
                                         "straight into the store, flat out)")] = True,
    ingest: Annotated[bool, typer.Option(help="run an ingest in this process (else leave it to `twin ingest`)")]
    = True,
    models: Annotated[Optional[Path], typer.Option(help="forecast faults live with these models (from `twin "
                                                   "train`) and publish alerts")] = None,
    anomaly: Annotated[Optional[Path], typer.Option(help="with --models: also alert on the anomaly score of these "
                                                    "VAEs (a folder from `twin synth train`)")] = None,
    dashboard: Annotated[bool, typer.Option(help="open the live dashboard on 127.0.0.1 for this run (stays up "
                                            "after it until Ctrl-C)")] = False,
    inject: Annotated[Optional[Path], typer.Option(help="replay synthetic readings (a file from `twin synth`) "
                                                   "into the machine --into, from --at on")] = None,
    into: Annotated[Optional[str], typer.Option(help="with --inject: the machine whose readings it replaces")] = None,
    at: Annotated[Optional[str], typer.Option(help="with --inject: when the replay starts, e.g. '2 h' (default 0)")]
    = None,
    jobs: Annotated[Optional[int], typer.Option(min=1, help="with --no-stream: replications side by side on this "
                                                "many local processes (default: one per core once the replications "
                                                "simulate a week or more together, else one)")] = None,
    cluster: ClusterOpt = None,
    opcua: Annotated[Optional[str], typer.Option(help="serve the running twin's machines (states, sensor values, "
                                                 "alerts, KPIs) over OPC UA on 127.0.0.1: a port or "
                                                 "opc.tcp://127.0.0.1:PORT/PATH")] = None,
    from_: Annotated[Optional[str], typer.Option("--from", help="start from the line's state now, read from a store "
                                                 "(duckdb:///file), the line's broker (mqtt://...) or a status log "
                                                 "file in the twin's names, not an empty line (`twin whatif` compares "
                                                 "alternatives from there)")] = None,
    from_time: Annotated[Optional[str], typer.Option(help="with --from and a store: the moment to start from "
                                                     "(line's clock, e.g. 2026-01-05T14:00); default: the latest "
                                                     "record")] = None,
) -> None:
    """Simulate a scenario: stream readings over MQTT into the store, and write Parquet results and KPIs."""
    if from_ is not None and warmup is not None:
        fail("--warmup with --from: a line continued from its state now is running already and has no warm-up; "
             "leave --warmup out")
    sc = open_scenario(file, duration=time_option(duration, "--duration"), replications=replications, seed=seed,
                       warmup=0.0 if from_ is not None else time_option(warmup, "--warmup", allow_zero=True),
                       realtime_factor=realtime_factor)  # continued from the state now: no warm-up, whatever the file
    if from_ is not None:
        from twin.app.cmd_plant import continued

        sc = continued(sc, from_, from_time, option="--from-time")
    elif from_time is not None:
        fail("--from-time picks the moment of --from; give --from too")
    opts = RunOptions(broker=broker_url(broker, ca, cert, key), store=store, stream=stream, ingest=ingest,
                      models=models, anomaly=anomaly, predictive=policy == "predictive", dashboard=dashboard,
                      jobs=jobs, cluster=cluster, opcua=_opcua_url(opcua, stream))
    sc = _checked_policy(sc, policy, opts)
    opts.injection = _injection(sc, inject, into, at)
    live = _live(sc, opts)
    run_pipeline(sc, _result_folder(out, file), opts, live)  # every check above fails before anything is written


@dataclasses.dataclass
class RunOptions:
    """How `twin run` moves a scenario's readings: over which broker into which store, with which live extras."""

    broker: BrokerURL | None = None  # None: an embedded broker on 127.0.0.1
    store: str | None = None  # None: twin.duckdb in the result folder
    stream: bool = True  # over MQTT; False: straight into the store, flat out
    ingest: bool = True  # an ingest in this process; False: left to `twin ingest`
    models: Path | None = None  # live forecasting with these models
    anomaly: Path | None = None  # with models: the VAEs whose anomaly score also alerts
    predictive: bool = False  # the forecasts' alerts order maintenance
    dashboard: bool = False  # a live dashboard for this run
    injection: Injection | None = None  # synthetic readings replayed into one machine
    jobs: int | None = None  # --no-stream: local worker processes for the replications (None: one per core)
    cluster: str | None = None  # --no-stream: a running Dask scheduler for the replications
    opcua: str | None = None  # serve the running twin over OPC UA at this opc.tcp:// URL


def _checked_policy(sc: Scenario, policy: Optional[str], opts: RunOptions) -> Scenario:
    """The scenario with --policy applied, once the options are checked together (what --policy, --anomaly and
    --models need; options that only a streamed run uses are refused with --no-stream, not silently ignored)."""
    if not opts.stream and opts.broker is not None:
        fail("--broker: a --no-stream run publishes nothing (its readings go straight into the store); leave out "
             "--no-stream to stream through that broker, or leave out --broker")
    if not opts.stream and not opts.ingest:
        fail("--no-ingest leaves storing a streamed run to `twin ingest`, but a --no-stream run stores its readings "
             "itself; leave out one of the two")
    if opts.predictive and (opts.models is None or not opts.stream):
        fail("--policy predictive: give --models (from `twin train`) and stream (the alerts travel over MQTT)")
    if opts.stream and ((opts.jobs or 1) > 1 or opts.cluster):
        fail("--jobs and --cluster run replications side by side, which only --no-stream does (a streamed run "
             "publishes them one after another); add --no-stream or leave them out")
    if opts.models is not None and not opts.stream and not opts.dashboard:
        fail("--models forecasts live and publishes alerts over MQTT, which a --no-stream run does not do (its "
             "readings go straight into the store): leave out --no-stream, add --dashboard to see the models' "
             "forecasts on the stored run, or score the run afterwards with `twin evaluate RUN --models FOLDER`")
    if opts.anomaly is not None and (opts.models is None or not opts.stream):
        fail("--anomaly: give --models too (the anomaly score joins their forecasts) and stream (alerts travel "
             "over MQTT)")
    return sc if policy is None or opts.predictive else _with_policy(sc, policy)


def _result_folder(out: Optional[Path], file: Path) -> Path:
    """--out, or runs/<scenario>/<time>, created; never a folder that holds an earlier run."""
    out = out or Path("runs") / file.stem / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    if out.exists() and any(out.iterdir()):
        fail(f"--out {out}: folder exists and is not empty; choose another folder so no earlier run is overwritten")
    return writable(out)


def run_pipeline(sc: Scenario, out: Path, opts: RunOptions,
                 live: tuple[Attach | None, PolicyFactory | None] = (None, None)) -> None:
    """Simulate `sc` into `out` as `opts` say (with `live` forecasting and its policy, from `_live`), with a progress
    bar, then print the KPIs and where everything went."""
    from sensors.store import store_file
    from twin.app.disk import DiskWatch
    from twin.app.runner import PARTS

    store = None if opts.store is None else store_file(opts.store)
    disk = DiskWatch([out, *([store] if store is not None and out.resolve() not in store.resolve().parents else [])],
                     paced=sc.realtime_factor > 0, skip=(PARTS,))
    with progress_bar(percent=True) as bar:
        total = sc.duration * sc.replications
        task = bar.add_task(f"{sc.line.name}", total=total, note="")

        def progress(rep: int, t: float) -> None:
            disk.check((rep * sc.duration + t) / total)
            bar.update(task, completed=rep * sc.duration + t,
                       note=f"replication {rep + 1}/{sc.replications}, {t / 3600:.1f} h simulated{disk.note()}")

        board = _Dashboard(out, opts.models) if opts.dashboard else None
        try:
            if opts.stream:
                summary, kpis, stats = _stream(sc, out, progress, opts, *live, board=board)
            else:
                if board is not None:
                    board.start(None)
                summary, kpis, stats = _store_direct(sc, out, progress, opts)
        except typer.Exit:
            if isinstance(bar, Progress):  # a run that failed ends with its error, not with its progress bar after it
                bar.live.transient = True
            raise
    _report(sc, out, summary, kpis, stats, opts)
    if board is not None:
        board.wait()


def _report(sc: Scenario, out: Path, summary: pd.DataFrame, kpis: pd.DataFrame, stats: StreamStats,
            opts: RunOptions) -> None:
    """The KPI tables, the result folder and the store's count; exit 1 if streamed readings are still queued."""
    print_table(kpi_table(summary, kpis, sc))
    if (losses := loss_table(summary, sc)) is not None:
        print_table(losses)
    print_table(station_table(summary, sc))
    if (buffers := buffer_table(summary, kpis, sc)) is not None:
        print_table(buffers)
    if (products := product_table(summary, sc)) is not None:
        print_table(products)
    if (spares := spare_table(summary, sc)) is not None:
        print_table(spares)
    if (orders := order_table(kpis, sc)) is not None:
        print_table(orders)
    if (crews := crew_table(summary, sc)) is not None:
        print_table(crews)
    out_console.print(f"results: [bold]{escape(str(out))}[/] (readings.parquet, sensors.parquet, truth/, kpis.parquet, "
                      "summary.csv)", markup=True, highlight=False)
    if not opts.stream:
        out_console.print(f"run {stats.run_id}: {stats.stored:,} readings in the store {stats.store}", highlight=False)
        return
    out_console.print(f"run {stats.run_id}: {stats.readings:,} readings published in {stats.messages:,} MQTT "
                      f"messages; {stats.stored:,} in the store {stats.store}", highlight=False)
    if opts.ingest and not stats.complete:
        if opts.broker is None:  # the embedded broker stopped with the run, and the messages queued in it
            fail(f"only {stats.stored:,} of {stats.readings:,} readings reached the store {stats.store}; every "
                 f"reading is in {out / 'readings.parquet'}", code=1)
        from sensors.ingest import run_session

        prefix = f"{sc.line.site}/{sc.line.area}/{sc.line.name}"
        client_id, group = run_session(stats.run_id)
        fail(f"only {stats.stored:,} of {stats.readings:,} readings reached the store; the rest wait in the broker "
             f"for the run's ingest session (for an hour): `twin ingest --broker {opts.broker} --store {stats.store} "
             f"--line {prefix} --client-id {client_id} --group {group} "
             f"--until-run {stats.run_id} --run-session` stores them (every reading is also in "
             f"{out / 'readings.parquet'})", code=1)


class _Dashboard:
    """`twin run --dashboard`: the dashboard process for this run, started once the broker is known."""

    def __init__(self, out: Path, models: Optional[Path]) -> None:
        self.out, self.models = out, models
        self.proc: object = None

    def start(self, broker: Optional[BrokerURL]) -> None:
        from twin.app.cmd_dashboard import start_dashboard

        runs = self.out.parent.parent if self.out.parent.parent != self.out.parent else self.out.parent
        self.proc, url = start_dashboard(runs, broker=broker, models=self.models)
        err_console.print(f"dashboard: [bold]{escape(url)}[/]", markup=True, highlight=False)
        self.url = url

    def attach(self, inner: Attach | None) -> Attach:
        """Start the dashboard on the run's broker when the run attaches, then the inner subscriber if any."""
        @contextlib.contextmanager
        def both(url: BrokerURL, protocol: int) -> Iterator[object]:
            self.start(url)
            if inner is None:
                yield None
            else:
                with inner(url, protocol) as x:
                    yield x

        return both

    def wait(self) -> None:
        """Keep the dashboard up until Ctrl-C or SIGTERM."""
        from twin.app.cmd_dashboard import serve_until_stopped

        serve_until_stopped(self.proc, f"the dashboard stays up at {self.url}; Ctrl-C to stop it")  # type: ignore[arg-type]


def _with_policy(sc: Scenario, policy: str) -> Scenario:
    from twin.maintenance import SCENARIO_POLICIES as choices
    from twin.scenario import ScenarioError, with_policy

    if policy not in choices:
        fail(f"--policy {policy!r}: choose one of {', '.join(choices)}, or predictive (with --models)")
    try:
        return with_policy(sc, policy)
    except ScenarioError as e:
        fail(str(e))


def _injection(sc: Scenario, inject: Optional[Path], into: Optional[str], at: Optional[str]) -> Injection | None:
    """The replay asked for by --inject/--into/--at, checked against the scenario."""
    if inject is None:
        if into is not None or at is not None:
            fail("--into and --at belong to --inject FILE (synthetic readings from `twin synth`)")
        return None
    from sensors.inject import Injection, InjectionError
    from twin.model import Line

    if into is None:
        fail("--inject: name the machine whose readings it replaces with --into MACHINE")
    start = time_option(at, "--at", allow_zero=True) or 0.0
    try:
        injection = Injection.from_file(inject, into, float(start))
        injection.check(Line(sc))
    except InjectionError as e:
        fail(str(e))
    if injection.at >= sc.duration:
        fail(f"--at {at}: the run is only {sc.duration / 3600:g} h long; start the replay within it")
    return injection


def _store_direct(sc: Scenario, out: Path, progress: ProgressFn, opts: RunOptions
                  ) -> tuple[pd.DataFrame, pd.DataFrame, StreamStats]:
    from sensors.store import StoreError
    from twin.app.cluster import PARALLEL_FROM, ClusterError, tasks
    from twin.app.direct import store_scenario

    try:
        # replications side by side on local processes or a cluster; short runs stay here by default (starting
        # worker processes costs seconds), and so does a run with an injection (it cannot leave this process)
        jobs = opts.jobs if opts.jobs or sc.duration * sc.replications >= PARALLEL_FROM else 1
        with tasks(opts.cluster, 1 if opts.injection else jobs, sc.replications) as run:
            return store_scenario(sc, out, store_url=opts.store, progress=progress, inject=opts.injection, tasks=run)
    except (StoreError, ClusterError) as e:
        fail(str(e), code=3)


def _live(sc: Scenario, opts: RunOptions) -> tuple[Attach | None, PolicyFactory | None]:
    """With --models: the live forecaster to attach to the run's broker and, for the predictive policy, the
    policy its alerts drive; loaded before the run starts, so a bad model folder fails before anything is written
    (without streaming, they are only checked: they are for the dashboard's machine pages)."""
    if opts.models is None:
        return None, None
    if not opts.stream:
        from twin.app.cmd_models import models_for

        models_for(opts.models, sc)
        return None, None
    from twin.app.cmd_models import forecasting

    orders = None
    if opts.predictive:
        from predictors.policy import AlertOrders

        orders = AlertOrders(f"{sc.line.site}/{sc.line.area}/{sc.line.name}")
    return forecasting(opts.models, sc, err_console, orders=orders, anomaly=opts.anomaly), \
        orders.policy_for if orders is not None else None


def _stream(sc: Scenario, out: Path, progress: ProgressFn, opts: RunOptions, attach: Attach | None = None,
            policy: PolicyFactory | None = None, board: _Dashboard | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame, StreamStats]:
    from sensors.bus.broker import BrokerError
    from sensors.store import StoreError
    from twin.app.stream import stream_scenario

    if board is not None:
        attach = board.attach(attach)
    if opts.opcua is not None:
        attach = _serve_opcua(opts.opcua, sc, attach)
    if not opts.ingest and sc.realtime_factor == 0:
        err_console.print("note: with --no-ingest nothing holds a flat-out run to the `twin ingest` that stores it, "
                          "so the broker queues what that ingest has not taken yet; a broker with a queue limit "
                          "(mosquitto's default: 1,000 messages a client) drops past it: give it max_queued_messages "
                          "0, or pace the run with --realtime-factor (docs/mqtt.md)", highlight=False)
    try:
        return stream_scenario(sc, out, broker=opts.broker, store_url=opts.store,
                               ingest="process" if opts.ingest else "none",
                               progress=progress, on_note=lambda note: err_console.print(note, highlight=False),
                               attach=attach, policy=policy, inject=opts.injection)
    except (BrokerError, StoreError) as e:
        fail(str(e), code=3)


def _opcua_url(value: Optional[str], stream: bool) -> str | None:
    """--opcua checked before anything runs: a loopback URL, and a streamed run (the server mirrors its messages)."""
    if value is None:
        return None
    from sensors.opcua import OpcUaError, server_url

    if not stream:
        fail("--opcua serves the twin while it streams; leave out --no-stream")
    try:
        return server_url(value)
    except OpcUaError as e:
        fail(str(e))


def _serve_opcua(url: str, sc: Scenario, inner: Attach | None) -> Attach:
    """The twin's OPC UA server, started on the run's broker when the run attaches, then the inner subscriber."""

    @contextlib.contextmanager
    def both(broker: BrokerURL, protocol: int) -> Iterator[object]:
        from sensors.opcua import OpcUaError, TwinServer

        machines = [(st.name, m) for st in sc.stations for m in st.machine_names]
        server = TwinServer(url, broker, (sc.line.site, sc.line.area, sc.line.name), machines, sc.line.timezone)
        try:
            server.start()
        except OpcUaError as e:
            fail(str(e), code=3)
        err_console.print(f"OPC UA: the twin's machines at [bold]{escape(url)}[/] (Objects/{sc.line.name}/<station>/"
                          "<machine>)", markup=True, highlight=False)
        try:
            if inner is None:
                yield None
            else:
                with inner(broker, protocol) as x:
                    yield x
        finally:
            server.stop()

    return both


def ingest(
    broker: BrokerOpt,
    store: Annotated[str, typer.Option(help="duckdb:///file or influxdb://host:8086?org=..&bucket=..")],
    line: LineOpt = "+/+/+",
    group: Annotated[str, typer.Option(help="shared-subscription group: workers in one group split the load")]
    = "linetwin-ingest",
    client_id: Annotated[Optional[str], typer.Option(help="stable id, so a restarted worker resumes its session")]
    = None,
    ca: CaOpt = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
    exit_when_complete: Annotated[bool, typer.Option(help="stop once every run announced as finished is stored")]
    = False,
    until_run: Annotated[Optional[str], typer.Option(help="stop once this run is announced finished and stored")]
    = None,
    durable: Annotated[bool, typer.Option("--durable/--ephemeral", help="keep the session (and the messages "
                                          "queued for it) while this worker is down")] = True,
    run_session: Annotated[bool, typer.Option(help="keep the session through a broker restart and end it when this "
                                              "worker stops, unless a finished run is still owed readings (a run's "
                                              "own ingest, and the worker that takes over from it)")] = False,
    mqtt_version: Annotated[str, typer.Option(help="5, 3.1.1, or auto: ask the broker (a broker that ignores MQTT "
                                              "5 costs a few seconds of waiting)")] = "auto",
    spool: Annotated[Optional[Path], typer.Option(help="where messages wait on disk while the store is away "
                                                  "(default: one file per group and store in linetwin's home)")]
    = None,
    position: Annotated[bool, typer.Option(hidden=True, help="print the messages of --until-run taken off the "
                                           "broker, on stdout every tenth of a second (for the run's publisher)")]
    = False,
) -> None:
    """Subscribe to lines' telemetry and write it into the store, until interrupted (Ctrl-C)."""
    from sensors.bus.broker import MQTT_VERSIONS, BrokerError
    from sensors.bus.payloads import collect_less_often
    from sensors.ingest import Ingest
    from sensors.store import StoreError, open_store

    line_prefix(line)
    for option, value in (("--group", group or "-"), ("--client-id", client_id)):  # an empty group: named below
        if value is not None and not _mqtt_text(value):
            fail(f"{option}: {value[:40]!r}{'…' if len(value) > 40 else ''} cannot be sent to a broker: give 1 to 200 "
                 "printable characters (e.g. letters, digits, '-' and '_')")
    if not group or any(c in group for c in "/+#"):
        fail(f"--group {group!r}: a shared-subscription group is one MQTT topic level: not empty and without '/', "
             "'+' or '#' (e.g. linetwin-ingest); workers given the same group split the load")
    if until_run is not None and not until_run.strip():
        fail("--until-run: give the run's id (the name of its result folder, as `twin run` prints it)")
    collect_less_often()
    versions = {name: protocol for protocol, name in MQTT_VERSIONS.items()}
    if mqtt_version not in (*versions, "auto"):
        fail(f"--mqtt-version {mqtt_version!r}: choose 5, 3.1.1 or auto")
    url = broker_url(broker, ca, cert, key)
    reported, acks = -1, 0
    with stop_signals() as stop:  # Ctrl-C from the worker's start on: stop cleanly below; handled before saying so
        try:
            db = open_store(store, patient=False)  # a store away: messages go to the spool at once
            assert url is not None  # --broker is required
            worker = Ingest(url, db, prefix=line, group=group,
                            session="run" if run_session else "durable" if durable else "ephemeral",
                            client_id=client_id or f"linetwin-ingest-{group}", protocol=versions.get(mqtt_version),
                            spool=spool)
            try:  # the spool: checked before any message is acknowledged into it
                worker.spool.open()
            except OSError as e:
                fail(f"--spool {worker.spool.path}: cannot write the spool there ({e}); choose a writable file "
                     "(messages wait in it while the store is away)")
            worker.start()
        except (BrokerError, StoreError) as e:
            fail(str(e), code=3)
        err_console.print(f"ingesting {line} from {url} into {store} (shared group {group!r}); Ctrl-C to stop",
                          highlight=False)
        next_note = time.monotonic() + 5.0
        while not stop.is_set():
            # a run's end is seen within a tenth of a second (its `twin run` waits for it); the position as soon as
            # messages are acknowledged: reported a tenth of a second late, it held the run's publisher idle for a
            # third of a flat-out run (its lead used up, the ingest waiting for what the publisher had not yet sent)
            acks = worker.wait_acked(acks, 0.1)
            if position and until_run is not None and (taken := worker.position(until_run)) != reported:
                print(f"position {taken}", flush=True)  # the run's publisher holds its lead over this
                reported = taken
            if (exit_when_complete and worker.finished_runs_complete()) or (
                    until_run is not None and worker.run_complete(until_run)):
                break
            if time.monotonic() >= next_note:  # progress every 5 s
                next_note += 5.0
                waiting = len(worker.spool)
                err_console.print(f"received {worker.received:,} messages, stored {worker.stored:,} readings, "
                                  f"rejected {worker.rejected:,}" + (f", {waiting:,} messages waiting in the spool "
                                                                     "for the store" if waiting else ""),
                                  highlight=False)
    worker.stop()
    db.close()
    left = len(worker.spool)
    err_console.print(f"stopped: stored {worker.stored:,} readings, rejected {worker.rejected:,}"
                      + (f"; {left:,} messages still wait in {worker.spool.path} for the store (the group's next "
                         "ingest writes them)" if left else ""), highlight=False, markup=False)


def _mqtt_text(value: str) -> bool:
    """A client id or group a broker takes: 1 to 200 printable characters that UTF-8 can encode (an id of 70,000
    characters, or one with bytes that are not UTF-8 on the command line, ended in a traceback from paho)."""
    return 0 < len(value) <= 200 and value.isprintable()  # a surrogate (bytes not UTF-8) is not printable


def kpi_table(summary: pd.DataFrame, kpis: pd.DataFrame, sc: Scenario) -> Table:
    """The line's KPIs as mean ± 95 % CI half-width over replications."""
    from twin.kpi import LOSS, mean_ci_text

    n = int(summary["n"].max())
    t = Table(title=f"{sc.line.name}: line KPIs over {n} replication{'s' * (n > 1)} (mean ± 95 % CI)",
              caption=_precision_note(summary, continued=sc.now is not None))
    t.add_column("KPI")
    t.add_column("value", justify="right")
    line = summary[(summary.scope == "line") & ~summary.kpi.str.startswith(LOSS)]  # the losses: `loss_table`
    for _, row in line.iterrows():
        if row.kpi in ("bottleneck station", "constraint station"):  # a station index per replication: the names,
            idx = kpis.loc[kpis.kpi == row.kpi, "value"].astype(int).value_counts()  # how often each was it
            t.add_row(row.kpi, ", ".join(
                f"{sc.stations[i].name} ({c}/{n})" if n > 1 else sc.stations[i].name for i, c in idx.items()))
            continue
        t.add_row(row.kpi, mean_ci_text(row["mean"], row["ci_low"], row["ci_high"]))
    return t


#: a line throughput's 95 % CI wider than this share of its mean gets a note pointing to `twin plan`
WIDE_CI = 0.10


def _precision_note(summary: pd.DataFrame, continued: bool = False) -> str | None:
    """A note when the replications leave the line's throughput uncertain by more than WIDE_CI of its mean: the
    figures are then a few runs' luck as much as the line's, and `twin plan` says how many runs (or how long) tell;
    for a run `continued` from a line's state (no warm-up, the hours ahead, not the long run), more replications."""
    row = summary[(summary.scope == "line") & (summary.kpi == "throughput [parts/h]")]
    if row.empty or row["n"].iloc[0] < 2 or not row["mean"].iloc[0] > 0:
        return None
    share = (row["ci_high"].iloc[0] - row["ci_low"].iloc[0]) / 2 / row["mean"].iloc[0]
    if not share > WIDE_CI:
        return None
    if continued:  # `twin plan` pilots the line from its start: not this run's question
        n = int(row["n"].iloc[0])
        return (f"note: the throughput's 95 % CI is ± {share:.0%} of its mean; the interval narrows with the square "
                f"root of the replications: {n * 4} instead of {n} halve it")
    return (f"note: the throughput's 95 % CI is ± {share:.0%} of its mean; `twin plan` says how many replications "
            "(or how long a run) give ± 5 %, and how long the warm-up must be")


def station_table(summary: pd.DataFrame, sc: Scenario) -> Table:
    """Per-station OEE and its factors, with the machines' availability and MTBF/MTTR."""
    import pandas as pd

    notes = sc.notes()
    t = Table(title="stations (mean over replications; OEE by ISO 22400, docs/kpis.md)",
              caption="note: " + "; ".join(notes) if notes else None)
    st = summary[summary.scope == "station"].set_index(["entity", "kpi"])["mean"]
    mach = summary[summary.scope == "machine"].set_index(["entity", "kpi"])["mean"]

    def mean(names: list[str], kpi: str) -> float:
        return float(pd.Series([mach.get((m, kpi)) for m in names], dtype=float).mean())

    # the repairs' wait for a technician or a spare part, where any repair waited (a crew busy or off shift)
    waited = any(mean(s.machine_names, "wait before repair [min]") > 0.005 for s in sc.stations)
    # what lowers a station's performance and quality beyond its cycles and scrap, where the line has it
    minor = any(sc.machine_type_of(s).minor_stops is not None for s in sc.stations)
    rework = any((s.name, "rework ratio") in st.index for s in sc.stations)
    startup = any(s.startup_scrap is not None for s in sc.stations)
    for col in ("station", "OEE", "availability", "performance", "quality", "ideal cycle", "active", "MTBF [h]",
                "MTTR [min]", *(["of it waiting [min]"] if waited else []), *(["minor stops"] if minor else []),
                *(["start-up rejects"] if startup else []), *(["to rework"] if rework else [])):
        t.add_column(col, justify="left" if col == "station" else "right")
    for s in sc.stations:
        names = s.machine_names
        mtbf, mttr, wait, stops, rejects = (mean(names, k) for k in ("mtbf [h]", "mttr [min]",
                                                                      "wait before repair [min]", "minor stop share",
                                                                      "startup rejects"))
        sent = st.get((s.name, "rework ratio"))
        t.add_row(s.name, *(f"{st[(s.name, k)]:.1%}" for k in
                            ("oee", "oee availability", "oee performance", "oee quality")),
                  f"{s.ideal_cycle()[0]:.3g} s", f"{st[(s.name, 'active share')]:.1%}",
                  "-" if pd.isna(mtbf) else f"{mtbf:.1f}", "-" if pd.isna(mttr) else f"{mttr:.1f}",
                  *([("-" if pd.isna(wait) else f"{wait:.1f}")] if waited else []),
                  *([("-" if pd.isna(stops) else f"{stops:.1%} of work")] if minor else []),
                  *([("-" if pd.isna(rejects) else f"{rejects * len(names):,.0f}")] if startup else []),
                  *([("-" if sent is None or pd.isna(sent) else f"{sent:.1%}")] if rework else []))
    return t


def buffer_table(summary: pd.DataFrame, kpis: pd.DataFrame, sc: Scenario) -> Table | None:
    """Each buffer's mean level, the most it held in any replication, and its time full and empty (None for a line
    without buffers): where a bigger or smaller one would change the line, and how much of it was used."""
    from twin.kpi import plain
    from twin.scenario import buffer_station

    rows = summary[summary.scope == "buffer"]
    if rows.empty:
        return None
    means = rows.set_index(["entity", "kpi"])["mean"]
    most = kpis[(kpis.scope == "buffer") & (kpis.kpi == "buffer max level [parts]")].groupby("entity").value.max()
    caps = {s.name: s.buffer for s in sc.stations}
    t = Table(title="buffers (mean over replications, highest in any; full: the station before it blocked or about to "
                    "be)")
    for col in ("buffer", "capacity", "mean level", "highest", "full", "empty"):
        t.add_column(col, justify="left" if col == "buffer" else "right")
    for name in dict.fromkeys(rows.entity):
        cap = caps.get(buffer_station(name))
        share = {k: means.get((name, f"buffer {k} share")) for k in ("full", "empty")}
        t.add_row(name, "unlimited" if cap is None else str(cap), f"{means[(name, 'buffer level [parts]')]:.2f}",
                  plain(most[name]),
                  *("-" if v is None else f"{v:.1%}" for v in share.values()))
    return t


def product_table(summary: pd.DataFrame, sc: Scenario) -> Table | None:
    """Each product's throughput (and its share of the good parts), WIP and lead time, with 95 % CIs (None for a line
    making one kind of part): what a mixed-model line makes of each variant."""
    from twin.kpi import mean_ci_text

    rows = summary[summary.scope == "product"]
    if rows.empty:
        return None
    k = rows.set_index(["entity", "kpi"])
    total = sum(k.loc[(p.name, "throughput [parts/h]"), "mean"] for p in sc.products
                if (p.name, "throughput [parts/h]") in k.index)
    t = Table(title="products (mean ± 95 % CI over replications; share: of the good parts out)")
    for col in ("product", "throughput [parts/h]", "share", "wip [parts]", "lead time [min]"):
        t.add_column(col, justify="left" if col == "product" else "right")
    for p in sc.products:
        if (p.name, "throughput [parts/h]") not in k.index:
            continue
        cell = {kpi: mean_ci_text(*k.loc[(p.name, kpi), ["mean", "ci_low", "ci_high"]])
                for kpi in ("throughput [parts/h]", "wip [parts]", "lead time [min]")}
        share = k.loc[(p.name, "throughput [parts/h]"), "mean"] / total if total > 0 else float("nan")
        t.add_row(p.name, cell["throughput [parts/h]"], f"{share:.1%}", cell["wip [parts]"], cell["lead time [min]"])
    return t


def order_table(kpis: pd.DataFrame, sc: Scenario) -> Table | None:
    """Each order the line released (`orders`): the share of replications that made it, with its 95 % CI, and when the
    median run and 9 runs in 10 had (None for a line without orders), as `twin whatif` tells a book's orders."""
    if not sc.orders:
        return None
    from twin.app.compare import order_cells, order_figures
    from twin.kpi import order_label

    done = kpis[(kpis.scope == "order") & (kpis.kpi == "done [h]")]
    start = sc.start.replace(tzinfo=None)
    end = start + dt.timedelta(seconds=sc.duration)
    dues = any(o.due is not None for o in sc.orders)
    t = Table(title=f"orders, released in turn before the plan ({done.replication.nunique()} replications)")
    for col in ("order", *(["due"] if dues else []), "made", *(["on time"] if dues else []),
                "done by (median · 9 in 10)"):
        t.add_column(col, justify="left" if col == "order" else "right")
    for k, order in enumerate(sc.orders):
        hours = done[done.entity == order_label(k, order)].sort_values("replication")["value"].to_numpy()
        due = None if order.due is None else (order.due - start).total_seconds() / 3600
        cells = order_cells(order_figures(hours, start, due), end)
        t.add_row(order_label(k, order), *([f"{order.due:%a %H:%M}" if order.due else "–"] if dues else []),
                  cells[0], *([cells[1] if order.due else "–"] if dues else []), cells[-1])
    return t


def spare_table(summary: pd.DataFrame, sc: Scenario) -> Table | None:
    """Each spare part's repairs, the share of them that waited for it, their mean wait, the services that took one
    and the mean stock on hand
    (None for a line without spares): whether its stock and reorder rule keep repairs from waiting."""
    rows = summary[summary.scope == "spare"]
    if rows.empty:
        return None
    means = rows.set_index(["entity", "kpi"])["mean"]
    t = Table(title="spare parts (mean over replications; a repair that found none on hand waited, down, for one)")
    for col in ("spare", "stock, reorder at, order", "repairs", "waited", "mean wait [h]", "services", "mean stock"):
        t.add_column(col, justify="left" if col == "spare" else "right")
    for spare in sc.spares:
        t.add_row(spare.name, f"{spare.stock}, {spare.reorder_point}, {spare.order}",
                  f"{means[(spare.name, 'repairs')]:.1f}", f"{means[(spare.name, 'stock-out share')]:.1%}",
                  f"{means[(spare.name, 'wait for part [h]')]:.2f}", f"{means[(spare.name, 'services')]:.1f}",
                  f"{means[(spare.name, 'mean stock')]:.2f}")
    return t


def loss_table(summary: pd.DataFrame, sc: Scenario) -> Table | None:
    """Where the line's planned time went, as the OEE's losses at its constraint station (`twin.kpi._losses`): each
    availability loss by the state it was lost in, speed, scrap and rework, and the OEE left, as shares of the planned
    time and hours of it (mean over replications; losses under 0.05 % left out). None where none was planned."""
    import pandas as pd

    from twin.kpi import LOSS, LOSS_FACTORS, LOSSES
    from twin.model import ShiftCalendar

    means = summary[summary.scope == "line"].set_index("kpi")["mean"]
    if any(pd.isna(means.get(LOSS + k)) for k in LOSSES):
        return None
    a, b = sc.warmup, sc.duration
    hours = (ShiftCalendar(sc.calendar, sc.start, b).planned(a, b) if sc.calendar is not None else b - a) / 3600
    constraint = sc.stations[sc.constraint()].name
    t = Table(title=f"where the planned time went: the OEE's losses at {constraint} (mean over replications, of "
                    f"{hours:,.1f} h planned a machine)")
    for col in ("loss", "OEE factor", "share", "hours"):
        t.add_column(col, justify="left" if col in ("loss", "OEE factor") else "right")
    for k in LOSSES:
        share = float(means[LOSS + k])
        if share >= 0.0005:
            t.add_row(k, LOSS_FACTORS[k], f"{share:.1%}", f"{share * hours:,.1f}")
    t.add_row("OEE (fully productive)", "", f"{means['oee']:.1%}", f"{means['oee'] * hours:,.1f}", style="bold")
    return t


def crew_table(summary: pd.DataFrame, sc: Scenario) -> Table | None:
    """Each repair crew's technicians, when they are there, its on-call time and its utilisation (None for a line
    without crews): whether a crew is the reason repairs wait (`--extra-crew`, `--on-call` compare the remedies)."""
    rows = summary[summary.scope == "crew"]
    if rows.empty:
        return None
    means = rows.set_index(["entity", "kpi"])["mean"]
    t = Table(title="repair crews (mean over replications; utilisation: time on jobs over time on shift)")
    for col in ("crew", "technicians", "there", "on call", "utilisation"):
        t.add_column(col, justify="left" if col == "crew" else "right")
    for c in sc.repair_crews:
        t.add_row(c.name, str(c.size), c.there(), "-" if c.on_call is None else f"{c.on_call / 60:g} min",
                  f"{means[(c.name, 'utilisation')]:.1%}")
    return t


def schema(out: Annotated[Path, typer.Argument(help="where to write the JSON Schema")] = Path(
        "docs/scenario.schema.json")) -> None:
    """Write the JSON Schema of scenario files (generated from the validating model)."""
    from twin.scenario import write_json_schema

    if out.suffix.lower() != ".json":  # `twin schema line.yaml` replaced a scenario file by the schema
        fail(f"{out}: the JSON Schema goes to a .json file (to check a scenario file, `twin validate {out}`)")

    write_json_schema(writable(out, "schema", folder=False))
    out_console.print(f"wrote {out}")
