"""The twin of a real line: `twin fit LOG --base FILE --out FILE` calibrates a scenario from a plant's machine-status
log and validates it (the fitted scenario simulated over the log's span, its machines' state shares and failures beside
the log's, each with a 95 % CI and a verdict); `twin connect CONFIG` brings a plant's own MQTT JSON into the twin's
topic tree and store, from its OPC UA server, Sparkplug B edge nodes or MQTT JSON."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from twin import MAX_SEED
from twin.app.alternatives import (
    AddShift,
    BatchAlt,
    BufferAlt,
    Combined,
    CycleAlt,
    ExtraCrew,
    MachinesAlt,
    MixAlt,
    OffShiftService,
    OnCallAlt,
    PolicyAlt,
    StockAlt,
    TransferAlt,
    VariantAlt,
    alternatives,
)
from twin.app.options import (
    ClusterOpt,
    Jobs,
    err_console,
    fail,
    open_scenario,
    out_console,
    print_table,
    progress_bar,
    separator_option,
    simulated,
    stage,
    time_option,
    writable,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import pandas as pd

    from sensors.connect import ConnectorConfig
    from sensors.store.base import Store
    from twin.fit import LogFormat
    from twin.scenario import Calendar, LineNow, ReleaseNow, Scenario

CHECKED = ("working share", "down share", "maintenance share", "availability", "failures", "parts", "scrap share",
           "energy [kWh]")
COVERS = 0.95  # a part or energy log is compared where it spans at least this share of the status log's span

# how a plant's log names things, as `twin fit` and `twin whatif --from LOG` read it
StatesOpt = Annotated[Optional[str], typer.Option(help="the plant's state names as the twin's, e.g. "
                                                       "'Production=working, Breakdown=down, Changeover=setup'")]
ReasonsOpt = Annotated[Optional[str], typer.Option(help="the plant's stop reasons as the scenario's fault modes, e.g. "
                                                        "'E-042 spindle=bearing_wear, E-07=jam'")]
ResultsOpt = Annotated[Optional[str], typer.Option(help="the part log's own words for a part's result, e.g. "
                                                        "'Gutteil=good, Ausschussteil=scrap' (besides OK/NOK, "
                                                        "i.O./n.i.O., pass/fail, 1/0, ...)")]
ProductsOpt = Annotated[Optional[str], typer.Option(help="the part log's own names of the products (a material "
                                                         "number), e.g. '4711=juice-10, 4712=still-05'")]
ColumnsOpt = Annotated[Optional[str], typer.Option(help="the logs' own column names as the twin's, e.g. "
                                                        "'Zeitstempel=timestamp, Maschine=machine, Status=state, "
                                                        "Grund=reason'; a date and a time column joined: "
                                                        "'Datum+Uhrzeit=timestamp'")]
SepOpt = Annotated[Optional[str], typer.Option(help="the CSV logs' delimiter, a tab as 'tab' (default: found from each "
                                                    "file: ',', ';', tab or '|')")]
TimeFormatOpt = Annotated[Optional[str], typer.Option(help="the logs' time format in strftime codes, e.g. "
                                                           "'%d.%m.%Y %H:%M:%S' (default: ISO 8601; a UTC offset with "
                                                           "%z; a 12-hour clock with %I and %p); numbers: excel (date "
                                                           "serials), epoch (seconds, UTC) or epoch-ms")]


@dataclass(frozen=True)
class PlantNames:
    """How a plant's logs name things, as the twin's: the file layout (delimiter, columns, time format), and the
    state names, stop reasons (as fault modes) and machine names."""

    fmt: LogFormat
    states: dict[str, str] | None
    reasons: dict[str, str]
    machines: dict[str, str]

    def named(self, log: pd.DataFrame) -> pd.DataFrame:
        """A log with the plant's machine names (a `machine` column) and stop reasons (`reason`) as the twin's."""
        return log.assign(**({"machine": log.machine.replace(self.machines)} if self.machines else {}),
                          **({"reason": log.reason.replace(self.reasons)} if self.reasons and "reason" in log else {}))


def plant_names(sc: Scenario, columns: str | None, sep: str | None, time_format: str | None, states: str | None,
                reasons: str | None, machines: str | None, machines_option: str = "--machines",
                results: str | None = None, products: str | None = None) -> PlantNames:
    """The mapping options parsed against `sc`; each mistake named with its option (exit 2)."""
    from twin.fit import LOG_COLUMNS, LogFormat, parse_pairs, parse_results, parse_states

    try:
        words = parse_results(results) if results is not None else {}
    except ValueError as e:
        fail(f"--results: {e}")

    try:
        names = parse_states(states) if states is not None else None
    except ValueError as e:
        fail(f"--states: {e}")
    try:
        modes = {f.name for mt in sc.machine_types.values() for f in mt.fault_modes}
        codes = parse_pairs(reasons, modes, "fault mode", "FAULT_MODE", "E-042=bearing_wear, E-07=jam") \
            if reasons is not None else {}
    except ValueError as e:
        fail(f"--reasons: {e}")
    try:
        mapped = parse_pairs(columns, LOG_COLUMNS, "log column", "COLUMN", "Zeitstempel=timestamp, Maschine=machine") \
            if columns is not None else {}
    except ValueError as e:
        fail(f"--columns: {e}")
    known = sorted({m for s in sc.stations for m in s.machine_names})
    try:
        renamed = parse_pairs(machines, known, "machine of the base scenario", "MACHINE", "Presse 1=press-1") \
            if machines is not None else {}
    except ValueError as e:
        fail(f"{machines_option}: {e}")
    if products is not None and not sc.products:
        fail("--products: the base scenario makes one kind of part (it lists no products:), so a part log's products "
             "are not told apart; leave --products out, or list the products in the scenario")
    try:
        own = parse_pairs(products, [p.name for p in sc.products], "product of the base scenario", "PRODUCT",
                          "4711=juice-10") if products is not None else {}
    except ValueError as e:
        fail(f"--products: {e}")
    return PlantNames(LogFormat(separator_option(sep), mapped, time_format, words, own), names, codes, renamed)


def log_kpis(log: pd.DataFrame, calendar: Calendar | None = None, energy: pd.DataFrame | None = None,
             parts: pd.DataFrame | None = None, modes: Mapping[str, Collection[str]] | None = None) -> pd.DataFrame:
    """Per machine: share of the log's span in each state, availability (ISO 22400, as the twin's: the share of the
    planned time, by `calendar`, not lost down or in maintenance) and failures (the log's own figures: its stops
    with a reason, or with `modes`, each machine's fault modes, the stops the fit takes as failures: a reason that is
    one of them, any stop of a machine with one); with a part
    log (one row per part, `_file_parts`) the parts each of its machines finished in the span, where its parts span
    at least COVERS of it, and where it gives their results, the share of them scrapped; with an energy log
    (`twin.fit.read_energy`) the energy its meter measured, where its
    readings span at least COVERS of the log's (a kWh register's increases; kW readings, each held until the next)."""
    import numpy as np
    import pandas as pd

    from twin.fit import durations, stop_modes, wall_time
    from twin.model import ShiftCalendar

    start, end = log.timestamp.min(), log.timestamp.max()
    span = (end - start).total_seconds()
    plan = ShiftCalendar(calendar, wall_time(start), span) if calendar is not None else None
    planned = plan.planned(0.0, span) if plan is not None else span
    rows = []
    for machine, g in log.groupby("machine"):
        lasted = durations(g.timestamp, end)
        share = pd.Series(lasted, index=g.state.to_numpy()).groupby(level=0).sum() / span
        rows += [(machine, f"{s} share", float(share.get(s, 0.0))) for s in ("working", "down", "maintenance")]
        stopped = g.state.isin(["down", "maintenance"]).to_numpy()
        lo = (g.timestamp - start).dt.total_seconds().to_numpy()[stopped]
        lost = float(plan.planned_between(lo, lo + lasted[stopped]).sum()) if plan is not None else \
            float(lasted[stopped].sum())
        rows.append((machine, "availability", 1 - lost / planned if planned > 0 else np.nan))
        own = modes.get(str(machine)) if modes is not None else None
        failed = g.reason != "" if own is None else stop_modes(g.reason.to_numpy(), sorted(own)) != ""
        rows.append((machine, "failures", float(((g.state == "down") & failed).sum())))
    if parts is not None and part_span(parts, log) >= COVERS:
        inside = parts[(parts.timestamp >= start) & (parts.timestamp <= end)]
        made = inside.groupby("machine").size()
        rows += [(machine, "parts", float(made.get(machine, 0))) for machine in parts.machine.unique()]
        if "scrap" in inside:  # where the log gives each part's result: the share of a machine's parts scrapped
            judged = inside[inside.scrap.notna()]
            rows += [(machine, "scrap share", float(g.scrap.astype(bool).mean()))
                     for machine, g in judged.groupby("machine")]
    if energy is not None:
        from twin.counters import counter_steps

        inside = energy[(energy.timestamp >= start) & (energy.timestamp <= end)]
        for (machine, sensor), g in inside.groupby(["machine", "sensor"]):
            if len(g) < 2 or (g.timestamp.max() - g.timestamp.min()).total_seconds() < COVERS * span:
                continue
            if sensor == "energy":
                kwh = float(counter_steps(g.rename(columns={"timestamp": "ts"})).value.sum())
            else:  # each kW reading held until the next
                gaps = np.diff(g.timestamp.to_numpy()) / np.timedelta64(1, "s")
                kwh = float((g.value.to_numpy()[:-1] * gaps).sum() / 3600)
            rows.append((machine, "energy [kWh]", kwh * span / (g.timestamp.max() - g.timestamp.min()).total_seconds()))
    return pd.DataFrame(rows, columns=["machine", "kpi", "log"]).drop_duplicates(["machine", "kpi"])


MAX_PANELS = 24  # fitted laws drawn in the report's plot; a long line's others are in fitted.csv


def fit_plot(table: pd.DataFrame, path: Path) -> int:
    """The report's plot of each fitted law (`fit_scenario`'s `attrs["laws"]`) against the times it was fitted to: the
    law's distribution function beside the data's (Kaplan-Meier where lives were censored, else the empirical one), a
    panel each, at most MAX_PANELS; returns how many were drawn (0: no plot written)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from scipy import stats

    laws = list(table.attrs.get("laws", {}).items())[:MAX_PANELS]
    if not laws:
        return 0
    cols = min(4, len(laws))
    rows = -(-len(laws) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax, ((mtype, mode, what), (law, seen, cut)) in zip(axes.flat, laws):
        data = stats.CensoredData(uncensored=seen, right=cut) if len(cut) else seen
        cdf = stats.ecdf(data).cdf
        typical = float(np.median(seen))  # seconds, minutes or hours, as the times are
        unit, scale = ("seconds", 1.0) if typical < 120 else ("minutes", 60.0) if typical < 7200 else ("hours", 3600.0)
        top = min(float(cdf.quantiles[-1]), 1.2 * float(law.ppf(0.999)))  # a few outliers do not squeeze the rest
        ax.step(np.append(0.0, cdf.quantiles) / scale, np.append(0.0, cdf.probabilities), where="post",
                color="tab:gray", label="Kaplan-Meier" if len(cut) else "data")
        grid = np.linspace(0.0, top * 1.05, 200)
        ax.plot(grid / scale, law.cdf(grid), color="tab:blue", label="fitted")
        ax.set_xlim(0, top * 1.05 / scale)
        ax.set_title(f"{mtype}{' ' + mode if mode else ''}: {what}", fontsize=9)
        ax.set_xlabel(unit, fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes.flat[len(laws):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return len(laws)


def part_span(parts: pd.DataFrame, log: pd.DataFrame) -> float:
    """The share of the status log's span between the part log's first part and its last (all machines together)."""
    span = (log.timestamp.max() - log.timestamp.min()).total_seconds()
    lo, hi = max(parts.timestamp.min(), log.timestamp.min()), min(parts.timestamp.max(), log.timestamp.max())
    return max(0.0, (hi - lo).total_seconds()) / span if len(parts) and span > 0 else 0.0


def validate_fit(fitted: Scenario, log: pd.DataFrame, replications: int, energy: pd.DataFrame | None = None,
                 jobs: int | None = None, cluster: str | None = None, checked: tuple[str, ...] = CHECKED,
                 parts: pd.DataFrame | None = None) -> pd.DataFrame:
    """The fitted scenario run over the log's span (`replications` times, sensors off) beside the log's figures
    `checked` (with its parts made and its meters' energy): side by side on `jobs` local processes or the Dask cluster
    at `cluster` (by default once they simulate a week or more together), else here, its progress shown day by day."""
    import pandas as pd

    from twin.app.cluster import PARALLEL_FROM, ClusterError, cluster_address, tasks
    from twin.app.runner import kpis_task, simulate
    from twin.fit import machine_modes, wall_time
    from twin.kpi import summarize

    start, end = log.timestamp.min(), log.timestamp.max()
    sc = fitted.model_copy(update={"start": wall_time(start), "warmup": 0.0,
                                   "duration": (end - start).total_seconds(), "replications": replications})
    jobs = jobs if jobs or sc.duration * replications >= PARALLEL_FROM else 1  # None: one per core
    try:
        remote = cluster_address(cluster) is not None
    except ClusterError as e:
        fail(str(e), code=3)
    if jobs != 1 or remote:  # a year's log of a fast line simulates for minutes
        spec = sc.model_dump_json(by_alias=True)

        def batch(progress: Callable[[int, int], None]) -> list[pd.DataFrame]:
            with tasks(cluster, jobs, replications) as run:
                return list(run.map(kpis_task, [(spec, rep) for rep in range(replications)], progress))

        kpis = simulated(f"validating: {replications} replications of {sc.duration / 86400:.1f} days", replications,
                         batch)
    else:
        kpis = []
        with progress_bar(percent=True) as bar:  # in this process: shown as it goes, day by day
            task = bar.add_task("validating", total=sc.duration * replications, note="")
            for rep in range(replications):
                def progress(r: int, t: float, rep: int = rep) -> None:
                    bar.update(task, completed=rep * sc.duration + t,
                               note=f"replication {rep + 1}/{replications}, {t / 86400:.1f} of "
                                    f"{sc.duration / 86400:.1f} days simulated")

                kpis.append(simulate(sc, rep, sensors=False, progress=progress).kpis)
            bar.update(task, completed=sc.duration * replications, note="done")
    summary = summarize(kpis)
    summary = summary[(summary.scope == "machine") & summary.kpi.isin(checked)]
    table = summary.rename(columns={"entity": "machine"})[["machine", "kpi", "mean", "ci_low", "ci_high"]]
    table = table.merge(log_kpis(log, sc.calendar, energy, parts, machine_modes(sc)), on=["machine", "kpi"],
                        how="inner")
    inside = (table.log >= table.ci_low) & (table.log <= table.ci_high)
    rel = (table["mean"] - table.log).abs() / table.log.abs().where(table.log != 0)
    table["verdict"] = ["inside the CI" if i else f"outside ({r:.0%} off)" if r == r else "outside"
                        for i, r in zip(inside, rel)]
    return pd.DataFrame(table)


def fit(
    log: Annotated[list[str], typer.Argument(help="machine-status log (CSV, Excel .xlsx or Parquet: timestamp, "
                                                  "machine, state, reason), a stop list (start, end or duration in "
                                                  "minutes, machine, reason), several of either (a month each), or a "
                                                  "store (duckdb:///plant.duckdb, influxdb://...) whose state "
                                                  "records `twin connect` wrote")],
    base: Annotated[Path, typer.Option(help="the line as engineered: stations, machines, cycle times, calendar")],
    out: Annotated[Path, typer.Option(help="where to write the fitted scenario (YAML)")],
    report: Annotated[Optional[Path], typer.Option(help="folder for report.md and the tables (default: next to "
                                                        "--out)")] = None,
    replications: Annotated[int, typer.Option(min=2, max=100, help="simulated replications of the validation")] = 5,
    jobs: Annotated[Optional[int], typer.Option(min=1, help="local worker processes for the validation (default: one "
                                                            "per core once it simulates a week or more, else one)")]
    = None,
    cluster: ClusterOpt = None,
    parts: Annotated[Optional[str], typer.Option(help="part-completion log (timestamp, machine: one row per part "
                                                      "a machine finished, optionally its result: good or scrap; or "
                                                      "timestamp, machine, count: a part counter's readings, "
                                                      "optionally scrap: its reject counter's), or a store whose "
                                                      "good_parts (and scrap_parts) counters `twin connect` wrote: "
                                                      "fits each station's cycle time, minor stops, route shares, "
                                                      "and from results its scrap and start-up rejects")] = None,
    levels: Annotated[Optional[str], typer.Option(help="buffer-level log (timestamp, station, level), or a store "
                                                       "whose buffer levels `twin connect` wrote (duckdb:///...): "
                                                       "sets each buffer's capacity to the most parts seen "
                                                       "waiting")] = None,
    energy: Annotated[Optional[str], typer.Option(help="energy log (timestamp, machine, and energy: a meter's kWh "
                                                       "register, or power: kW readings), or a store whose energy or "
                                                       "power sensors `twin connect` wrote: fits each machine type's "
                                                       "power by state")] = None,
    run: Annotated[Optional[str], typer.Option(help="with a store: the run whose state records to fit (default: "
                                                    "its only run)")] = None,
    states: StatesOpt = None,
    reasons: ReasonsOpt = None,
    results: ResultsOpt = None,
    products: ProductsOpt = None,
    machines: Annotated[Optional[str], typer.Option(help="the plant's machine names (or ids) as the base scenario's, "
                                                         "e.g. 'Presse 1=press-1, M-4711=press-2'")] = None,
    columns: ColumnsOpt = None,
    sep: SepOpt = None,
    time_format: TimeFormatOpt = None,
) -> None:
    """Calibrate failure and repair times from a plant's status log or stop list (censored maximum likelihood,
    family by AIC), write the fitted scenario, and validate it against the log."""
    from twin.app.cluster import ClusterError, reachable
    from twin.fit import (
        IDLE_GAP,
        MIN_CYCLES,
        LogError,
        MeterError,
        as_listed,
        fit_scenario,
        read_energy,
        read_levels,
        read_logs,
        read_parts,
        unfitted_reasons,
    )
    from twin.scenario import buffer_station, write_scenario

    sc = open_scenario(base)
    plant = plant_names(sc, columns, sep, time_format, states, reasons, machines, results=results, products=products)
    fmt, names = plant.fmt, plant.states
    known = {m for s in sc.stations for m in s.machine_names}
    modes = {f.name for mt in sc.machine_types.values() for f in mt.fault_modes}
    if len(log) > 1 and (urls := [x for x in log if "://" in x]):
        fail(f"{urls[0]}: a store holds the whole history; give it alone, or give log files only")
    url = log[0] if "://" in log[0] else None
    paths = [Path(x) for x in log] if url is None else []
    # named in notes and reports: the file, or the files' names
    source = paths[0] if len(paths) == 1 else Path(", ".join(p.name for p in paths)) if paths else _url_name(url)
    level_url = levels if levels is not None and "://" in levels else None
    level_path = Path(levels) if levels is not None and level_url is None else None
    part_url = parts if parts is not None and "://" in parts else None
    part_path = Path(parts) if parts is not None and part_url is None else None
    energy_url = energy if energy is not None and "://" in energy else None
    energy_path = Path(energy) if energy is not None and energy_url is None else None
    if url is None and level_url is None and part_url is None and energy_url is None and run is not None:
        fail(f"--run {run}: a status log file holds one line's history; --run picks a run in a store "
             "(duckdb:///plant.duckdb)")
    for what, read in (("--base file", base), *(("status log", p) for p in paths), ("--parts log", part_path),
                       ("--levels log", level_path), ("--energy log", energy_path)):
        if read is not None and out.exists() and out.resolve() == read.resolve():
            fail(f"--out {out} is the {what} it reads; write the fitted scenario to another file")
    writable(out, folder=False)
    if report is not None:
        writable(report, "--report")
    try:
        reachable(cluster)  # a malformed address, or a scheduler that does not answer, named before anything is written
    except ClusterError as e:
        fail(str(e), code=3)
    logs = [str(source), *(x for x in (parts, levels, energy) if x is not None)]
    try:  # a year's log of a fast line as CSV or a workbook reads for seconds
        with stage(f"reading {', '.join(logs)}"):
            tz = sc.line.timezone  # times with a UTC offset are read on the line's clock
            frame = read_logs(paths, tz, names, fmt) if url is None else _store_log(url, run, names)
            part_file = read_parts(part_path, tz, fmt, [p.name for p in sc.products]) if part_path is not None \
                else None
            part_log = _file_parts(part_file) if part_file is not None else \
                _store_parts(part_url, run) if part_url is not None else None
            level_log = read_levels(level_path, tz, fmt) if level_path is not None else \
                _store_levels(level_url, run) if level_url is not None else None
            energy_log = read_energy(energy_path, tz, fmt) if energy_path is not None else \
                _store_energy(energy_url, run) if energy_url is not None else None
    except LogError as e:
        fail(str(e))
    said = [f"`{opt} '{value}'`" for opt, value in (("--columns", columns), ("--time-format", time_format),
                                                  ("--sep", sep), ("--states", states), ("--reasons", reasons),
                                                  ("--machines", machines), ("--results", results),
                                                  ("--products", products))
            if value is not None]

    def say(kind: str, text: str) -> None:
        """A note or warning on how the logs were read: on the console, and in the report beside the fit."""
        err_console.print(f"{kind}: {text}", highlight=False, markup=False, soft_wrap=True)
        said.append(f"{kind}: {text}")

    stop_list = frame.attrs.get("stops")  # a stop list: working between its stops, for all it can tell
    if stop_list is not None:
        operating = sorted({s.machine_type for s in sc.stations
                            if sc.machine_types[s.machine_type].clock == "operating"})
        say("note", f"{source.name} is a stop list ({stop_list:,} stops"
            + (f", {frame.attrs['merged']:,} of them overlapping or continuing the one before on their machine and "
               "merged into it" if frame.attrs["merged"] else "") + f"): each machine is read as working from the "
            f"list's first start ({frame.timestamp.min():%Y-%m-%d %H:%M:%S}) to its last end "
            f"({frame.timestamp.max():%Y-%m-%d %H:%M:%S}) but for its stops, so the validation leaves out the "
            "working share"
            + ("; the waits for parts or space are read from --parts (below)" if part_log is not None else
               f"; machine type{'s' * (len(operating) > 1)} {', '.join(operating)} "
               f"count{'s' * (len(operating) == 1)} lives in working time only (clock: operating), and the time a "
               "machine waited for parts or space counts to its lives here: --parts tells them apart, as a status log "
               "or the store's state records do" if operating else "")
            + ("; --energy's power by state takes those waits as working too"
               if part_log is None and energy is not None else ""))
    for read in (frame, part_file, level_log, energy_log):  # a report's title left out, a sheet after a cover
        for told in read.attrs.get("notes", []) if read is not None else []:  # sheet, autumn's repeated hour
            say("note", told)
    if frame.attrs.get("twice"):
        say("note", f"{frame.attrs['twice']:,} {'stops' if stop_list is not None else 'rows'} of {source.name} are in "
            "two of its files, or only repeat the state their machine ended the file before in (overlapping or "
            "continuing exports): read once")
    if frame.attrs.get("ending"):
        say("note", f"{frame.attrs['ending']:,} stops of {source.name} have no reason of their own and one on the row "
            "that ends them (entered as the machine restarted): read as the stop's reason")
    if frame.attrs.get("repeated"):
        say("note", f"{frame.attrs['repeated']:,} rows of {source.name} repeat their machine's state (a log sampled "
            "at intervals, or a stop's reason given in a row of its own): each state is read from its first row to "
            "the next change, for the reason given")
    # the plant's names as the twin's, in every log that names machines (and the status log's reasons)
    frame = plant.named(frame)
    part_log = plant.named(part_log) if part_log is not None else None
    energy_log = plant.named(energy_log) if energy_log is not None else None
    checked = [(source, frame.machine, known, "machines")]  # each log's names against the scenario's
    if parts is not None and part_log is not None:
        checked.append((part_path or _url_name(parts), part_log.machine, known, "machines"))
    if levels is not None and level_log is not None:  # an assembly's buffers per feeder, 'assy<shaft'
        checked.append((level_path or _url_name(levels), level_log.station.astype(str).map(buffer_station),
                        {s.name for s in sc.stations if s.buffer is not None}, "stations with a buffer"))
    if energy is not None and energy_log is not None:
        checked.append((energy_path or _url_name(energy), energy_log.machine, known, "machines"))
    for path, named, among, what in checked:
        if left := _known_names(path, named, among, what, base):
            say("warning", left)
    # a list's nights and weekends aged every machine as working; its waits for parts, from the parts made
    frame, planned, waits = as_listed(frame, sc.calendar, part_log)
    if not planned and sc.calendar is not None:
        say("note", f"{source.name} lists no planned stops (off_shift): a machine working by the list is off shift "
            f"outside {base.name}'s shifts ({', '.join(sc.calendar.shifts)} on {', '.join(sc.calendar.days)}), and "
            "the fitted scenario keeps that calendar")
    if waits is not None:
        say("note", f"{waits:,} waits for parts or space read from {part_path.name if part_path else parts}: a "
            f"machine working by the stop list that made no part for over {IDLE_GAP:g} of its cycles (its median time "
            f"per part) was waiting, until a cycle before its next part; machines with fewer than {MIN_CYCLES} cycles "
            "between parts are read as working throughout")
    lost = unfitted_reasons(frame, sc)
    if len(lost):  # stops the fit cannot tell apart: said, not silently left out
        shown = ", ".join(f"{r or '(none)'!r} ×{n}" for r, n in lost.head(5).items())
        say("warning", f"{int(lost.sum()):,} stops name no fault mode of their machine's type ({shown}"
            f"{', …' if len(lost) > 5 else ''}) and are not fitted; map the plant's reasons with --reasons "
            f"'CODE=MODE, …' (modes: {', '.join(sorted(modes))})")
    try:
        fitted, table = fit_scenario(frame, sc, parts=part_log, levels=level_log, energy=energy_log,
                                     calendar=planned, products=_store_products(url, run, names)
                                     if url is not None and any(st.setup_matrix for st in sc.stations) else None)
    except LogError as e:  # what only the fit can see: meters in Wh that make a machine draw megawatts, times no
        # distribution family fits; named with the file they come from
        fail(f"{energy_path or _url_name(str(energy)) if isinstance(e, MeterError) else source}: {e}")
    read = f"{stop_list:,} stops" if stop_list is not None else f"{len(frame):,} state changes"
    header = (f"# Fitted by `twin fit` from {source.name} ({read}, "
              f"{frame.timestamp.min():%Y-%m-%d %H:%M:%S} to {frame.timestamp.max():%Y-%m-%d %H:%M:%S}) on "
              f"{dt.date.today()}, base {base.name}.\n"
              "# Failure and repair times are maximum-likelihood fits with right-censoring; see the report.\n")
    write_scenario(fitted, out, header)
    shown = Table(title=f"fitted from {source.name}")
    for col in ("machine type", "fault mode", "time", "events", "censored", "family", "mean [h]", "base mean [h]",
                "KS"):
        shown.add_column(col, justify="right" if col in ("events", "censored", "mean [h]", "base mean [h]", "KS")
                         else "left")
    for _, r in table.iterrows():
        shown.add_row(r["machine type"], r["fault mode"], r["time"], f"{r.events:,}", f"{r.censored:,}",
                      r.family if r["time"] not in ("buffer", "power", "scrap") else r.parameters
                      if r["time"] == "buffer" else f"{r.family}: {r.parameters}",
                      *(f"{r[c]:.4f}" if r[c] == r[c] else "–" for c in ("mean [h]", "base mean [h]", "KS")))
    print_table(shown)
    made = part_log
    if part_log is not None and (covers := part_span(part_log, frame)) < COVERS:
        say("note", f"the parts made are not compared in the validation: {parts}'s parts span {covers:.0%} of the "
            f"status log's span (at least {COVERS:.0%})")
    elif part_log is not None:  # the twin counts a machine's good and scrapped parts; a plant's log either, or good
        told = set(part_log.machine[part_log.scrap.notna()]) if "scrap" in part_log else set()  # every part's result
        scrapping = {m for st in fitted.stations if st.scrap or any(st.scrap_by_product.values())
                     for m in st.machine_names} & set(part_log.machine) - told
        if scrapping:
            made = part_log[~part_log.machine.isin(scrapping)]
            say("note", f"the parts made by {', '.join(sorted(scrapping))} are not compared in the validation: their "
                "station scraps parts, and a part log may count good parts only where the twin counts every part "
                "made")
    check = validate_fit(fitted, frame, replications, energy_log, jobs, cluster,
                         tuple(k for k in CHECKED if k != "working share") if stop_list is not None else CHECKED, made)
    folder = report or out.with_name(out.stem + "-report")
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "fitted.csv", index=False)
    check.to_csv(folder / "validation.csv", index=False)
    drawn = fit_plot(table, folder / "fitted.png")
    fitted_laws = len(table.attrs.get("laws", {}))
    plot = ("![each fitted law against its data](fitted.png)\n\nEach fitted law's distribution function (blue) against "
            "the times it was fitted to (grey: the Kaplan-Meier estimate where lives were censored, else the data's "
            "own)" + (f"; the first {drawn} of {fitted_laws} fits" if drawn < fitted_laws else "") + ".\n\n"
            if drawn else "")
    (folder / "report.md").write_text(
        f"# `twin fit` {source.name} → {out.name}\n\n"
        f"## The logs\n\n{', '.join(logs)}: {read}, {frame.timestamp.min():%Y-%m-%d %H:%M:%S} "
        f"to {frame.timestamp.max():%Y-%m-%d %H:%M:%S}.\n\n"
        + "".join(f"- {x}\n" for x in said) + ("\n" if said else "") +
        "## Fitted times\n\nEach family (exponential, Weibull, lognormal, gamma) fitted by maximum likelihood with "
        "right-censoring (scipy.stats); the lowest AIC chosen. KS: the largest gap between the data (Kaplan-Meier "
        "when censored) and the fitted law. Fewer than 5 events: the base scenario's time is kept.\n\n"
        + table.to_markdown(index=False, floatfmt=".4g") + "\n\n" + plot +
        f"## Validation: the fitted scenario over the log's span, {replications} replications\n\n"
        "The log's figure beside the simulated mean and its 95 % confidence interval.\n\n"
        + check.to_markdown(index=False, floatfmt=".4g") + "\n", encoding="utf-8", errors="backslashreplace")
    outside = int((~check.verdict.str.startswith("inside")).sum())
    out_console.print(f"wrote {out} and {folder / 'report.md'}: {len(check) - outside} of {len(check)} machine "
                      f"figures of the log inside the simulated 95 % CI", highlight=False)


def connect(
    config: Annotated[Path, typer.Argument(help="connector config (YAML; docs/connect.md)")],
    store: Annotated[Optional[str], typer.Option(help="also store what arrives here (duckdb:///file or "
                                                      "influxdb://...); else a `twin ingest` elsewhere does")] = None,
    duration: Annotated[Optional[str], typer.Option(help="stop after this long (e.g. '8 h'); default: Ctrl-C")]
    = None,
    out: Annotated[Optional[Path], typer.Option(help="run folder announcing the plant to the dashboard (needs "
                                                     "scenario: in the config and --store); default "
                                                     "runs/<line>/plant")] = None,
) -> None:
    """Bring a plant's data (OPC UA, Sparkplug B, or MQTT JSON of its own shape) onto the line's topic tree (and into
    a store): forecasters, alerts and the dashboard then work on the real machines."""
    from sensors.bus.broker import RUN_SESSION_EXPIRY, BrokerError
    from sensors.connect import ConnectError, load_config
    from sensors.connector import STORE_WAIT, Connector, stop_stored, store_ingest
    from sensors.opcua import OpcUaError
    from sensors.store import StoreError, open_store
    from twin.app.options import stop_signals, time_option

    seconds = time_option(duration, "--duration")
    try:
        cfg = load_config(config)
        conn = Connector(cfg)
    except (ConnectError, BrokerError) as e:
        fail(str(e))
    sink, db, folder = None, None, None
    with stop_signals() as stop:
        # --duration counts from now: a plant server still down at the start takes from it, not adds to it
        timer = threading.Timer(seconds, stop.set) if seconds is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            if store is not None:
                db = open_store(store)
                sink = store_ingest(conn, db).start()
            conn.start(stop)
        except (BrokerError, StoreError, OpcUaError) as e:
            fail(str(e), code=3)
        folder = _announce(cfg, config, store, out) if store is not None and cfg.scenario else None
        # said once subscribed to the plant (scripts and the tests wait for it before the plant's first message)
        err_console.print(f"connecting {cfg.source} → {conn.topics.prefix} (run {cfg.run})"
                          + (f", stored in {store}" if store else "") + "; Ctrl-C to stop", highlight=False)
        stop.wait()
        if timer is not None:
            timer.cancel()
    whole = True
    if sink is not None:
        whole = stop_stored(conn, sink)  # the store's ingest takes what the connector forwarded before it stops
    else:
        conn.stop()
    if conn.held:
        err_console.print(f"{conn.held:,} plant messages were not yet on the twin's broker at the stop (is it "
                          "away?): the plant's broker keeps them for this config's next `twin connect`",
                          highlight=False)
    if conn.kept:
        err_console.print(f"{conn.kept:,} messages of OPC UA values or QoS 0 data were not yet on the twin's broker at "
                          f"the stop (is it away?): kept in {conn.outbox.path}, sent first by this config's next "
                          "`twin connect`", highlight=False)
    if not whole:
        err_console.print(f"the store could not be shown to hold everything forwarded (its ingest took "
                          f"{sink.position(cfg.run) if sink else 0:,} messages, and had not received the "
                          f"stop's mark within {STORE_WAIT:g} s, or the twin's broker never took it): what is left "
                          f"waits in the broker's session for this run's store (`linetwin-connect-store-{cfg.run}`, "
                          f"kept for {RUN_SESSION_EXPIRY // 60} min); the next `twin connect` of this config with "
                          "--store stores it", highlight=False)
    if db is not None:
        db.close()
    if folder is not None:
        _write_run(folder, cfg, config, store, "stopped", conn.span)
    err_console.print(f"stopped: {conn.forwarded:,} plant messages forwarded, {conn.dead:,} dead-lettered",
                      highlight=False)


def _write_run(folder: Path, cfg: ConnectorConfig, config: Path, store: str | None, status: str,
               span: tuple[int, int] | None = None) -> None:
    """run.json of the plant's 'run' (its line from the config's scenario, its store, no ground truth), listed in
    the runs index so the dashboard shows the real line like a simulated one."""
    from sensors.bus.payloads import clock_time, line_now
    from sensors.store.ledger import Ledger, LedgerError, read_run
    from twin.app.runner import write_json

    sc = open_scenario((config.parent / str(cfg.scenario)).resolve())
    folder.mkdir(parents=True, exist_ok=True)
    # the plant's data span (the dashboard's time range): from the first connection of this run, or the earliest
    # data it forwarded (a gateway's backlog), to the last stop or the latest data
    when = [line_now(sc.line.timezone), *(clock_time(t) for t in span or ())]
    with contextlib.suppress(ValueError, KeyError):  # no earlier run.json (or a damaged one), or one without a span
        before = read_run(folder)
        if before.run_id == cfg.run and before.store == store:
            since = dt.datetime.fromisoformat(str(before.doc["since"]))
            if since.tzinfo is None:  # the line's clock, as written here (an offset: edited by hand, left out)
                when.append(since)
    doc = {"run_id": cfg.run, "store": store, "status": status, "source": "plant", "connector": str(config.resolve()),
           "scenario": sc.model_dump(mode="json", by_alias=True), "since": min(when).isoformat(timespec="seconds"),
           **({"until": max(when).isoformat(timespec="seconds")} if status != "running" else {}),
           "written": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    write_json(folder / "run.json", doc)
    try:
        Ledger().register_run(folder, cfg.run, f"{sc.line.site}/{sc.line.area}/{sc.line.name}", sc.line.name, status)
    except LedgerError as e:
        err_console.print(f"warning: {e}", highlight=False)


def _announce(cfg: ConnectorConfig, config: Path, store: str | None, out: Path | None) -> Path:
    folder = out or Path("runs") / cfg.line.name / "plant"
    _write_run(folder, cfg, config, store, "running")
    return folder


def _levels_read(levels: dict[str, int], many: int = 12) -> str:
    """The buffer levels read, as told: each one, or for more than `many` buffers the ones holding parts and how many
    are empty (an 80-station line's 79 levels, mostly 0, were a screenful)."""
    if len(levels) <= many:
        return "; buffer levels " + ", ".join(f"{k} {v}" for k, v in levels.items())
    held = {k: v for k, v in levels.items() if v}
    return (f"; buffer levels of {len(levels)} buffers, {len(levels) - len(held)} empty"
            + (": " + ", ".join(f"{k} {v}" for k, v in held.items()) if held else ""))


def continued(sc: Scenario, source: str | Sequence[str], at: Optional[str], option: str = "--at",
              plant: PlantNames | None = None, levels: Path | None = None, parts: Path | None = None) -> Scenario:
    """`sc` continued from the line's state read from `source` (a store URL, the line's MQTT broker for its retained
    messages, or a plant's status log or stop list, in one file or several (monthly exports, read as one as `twin fit`
    reads them), named as `plant` says, with its buffers' levels from `levels` and a list's waits from `parts`), at
    `at` (ISO time on the line's clock; default: the latest known), with what was read told."""
    from sensors.bus.broker import BrokerError, BrokerURL
    from sensors.snapshot import SnapshotError, from_broker, from_store
    from sensors.store import StoreError, open_store
    from twin.scenario import continue_from

    files = [source] if isinstance(source, str) else list(source)
    if len(files) > 1 and (urls := [f for f in files if "://" in f]):
        fail(f"--from {urls[0]}: several --from are the files of one log (monthly exports); a store or a broker is "
             "given alone")
    source = files[0]
    when = None
    if at is not None:
        try:
            when = dt.datetime.fromisoformat(at)
        except ValueError:
            fail(f"{option} {at!r}: give a time on the line's clock such as 2026-01-05T14:00")
        if when.tzinfo is not None:  # a time with a UTC offset, on the line's clock (its offset was dropped: an
            from sensors.bus.payloads import epoch_ms, line_now  # hour or two off for a line in Europe)

            when = line_now(sc.line.timezone, epoch_ms(when))
    if levels is not None and "://" in source:
        fail(f"--levels {levels}: a buffer-level log goes with --from a status log file; {source} gives its own "
             "levels")
    if parts is not None and "://" in source:
        fail(f"--parts {parts}: a part log goes with --from a stop list file")
    try:
        if source.startswith(("mqtt://", "mqtts://")):
            if when is not None:
                fail(f"{option} reads back in a store's records; the broker holds only the latest state (leave "
                     f"{option} out)")
            now = from_broker(BrokerURL.parse(source), sc)
        elif "://" not in source:
            if Path(source).suffix.lower() in (".duckdb", ".db"):  # read as a log, it was refused as text
                fail(f"--from {source}: a store is given as duckdb:///{source}")
            now = _from_log(sc, [Path(f) for f in files], when, plant, levels, parts)
        else:
            db = open_store(source, read_only=True)  # beside a running ingest or an open dashboard
            try:
                now = from_store(db, sc, source, at=when)
            finally:
                db.close()
    except (SnapshotError, StoreError, BrokerError) as e:
        fail(str(e), code=3)
    out, notes = continue_from(sc, now)
    stopped = {k: v for k, v in now.machines.items() if v.state in ("down", "maintenance")}
    err_console.print(f"continuing from {now.taken:%Y-%m-%d %H:%M:%S} ({now.source}): {len(now.machines)} machines"
                      + (", " + ", ".join(f"{k} {v.state}{' (' + v.mode + ')' if v.mode else ''} for "
                                          + (f"{v.since / 60:.0f} min" if v.since >= 30 else "under a minute")
                                          for k, v in stopped.items()) if stopped else "")
                      + (_levels_read(now.buffers) if now.buffers
                         else "; buffer levels not known: the scenario's initial levels"),
                      highlight=False)
    for note in notes:
        err_console.print(f"note: {note}", highlight=False)
    _say_set_up(out, None if "://" in source else parts.name if parts is not None else "")
    return out


def _say_set_up(sc: Scenario, part_log: str | None) -> None:
    """What the state read told of a mixed line, once the scenario took it (`continue_from`): each machine's product,
    and the release plan's campaign; `part_log`: the part log it came from (None: a store's records)."""
    now = sc.now
    assert now is not None
    set_up = {m: v.product for m, v in now.machines.items() if v.product}
    if set_up:
        err_console.print(f"note: set up for the product each machine {'was on' if part_log is None else 'made last'}"
                          ": " + ", ".join(f"{m} {p}" for m, p in sorted(set_up.items()))
                          + " (another product next sets up first)", highlight=False)
    if now.release is not None:
        err_console.print(f"note: the release plan continues in its campaign of {now.release.product}: "
                          + (f"{now.release.made:,} of {dict(sc.release_runs()).get(now.release.product, 0):,} "
                             + ("released (counted by its entry machines since they changed to it)"
                                if part_log is None else
                                f"released (the parts its entry stations made in a row, from {part_log})")
                             if now.release.counted else "its entry machines have no part counter (good_parts), so "
                             "the parts released of it are not known: the campaign starts whole"), highlight=False)


def _from_log(sc: Scenario, paths: list[Path], when: dt.datetime | None, plant: PlantNames | None,
              levels: Path | None = None, parts: Path | None = None) -> LineNow:
    """The line's state at `when` (default: the log's last row) from a plant's status log or stop list (one file or
    several, read as one), as `twin fit` reads it (a list's waits from its part log `parts`): each machine's state,
    how long in it, and its fault modes' ages since their last renewal in the log; each buffer's last level before
    then from a buffer-level log `levels` (else the scenario's initial levels). Mistakes named (exit 2)."""
    import pandas as pd

    from twin.fit import LogError, LogFormat, as_listed, read_logs, read_parts, state_at

    plant = plant or PlantNames(LogFormat(), None, {}, {})
    where, short = ", ".join(map(str, paths)), ", ".join(p.name for p in paths)  # the log, as messages name it
    try:
        log = read_logs(paths, sc.line.timezone, plant.states, plant.fmt)
        part_file = read_parts(parts, sc.line.timezone, plant.fmt, [p.name for p in sc.products]) \
            if parts is not None else None
    except LogError as e:
        fail(str(e))
    made = _file_parts(part_file) if part_file is not None else None
    for told in [*log.attrs.get("notes", []), *(part_file.attrs.get("notes", []) if part_file is not None else [])]:
        err_console.print(f"note: {told}", highlight=False, markup=False)
    listed = "stops" in log.attrs
    setups = any(st.setup_matrix for st in sc.stations)
    # each part's product tells the campaign under way, and what each machine is set up for
    told = made is not None and "product" in made and (bool(sc.release) or setups)
    planned = told and bool(sc.release)
    if made is not None and not listed and not told:
        fail(f"--parts {parts}: a part log goes with a stop list, whose waits it shows, or tells a mixed line by each "
             "part's product its campaign under way (release plan) and what each machine is set up for "
             f"(setup_matrix); {short} is a status log, which has the waits"
             + (", and the part log names no product" if sc.release or setups else
                ", and the line has neither a release plan nor setups between products"))
    log = plant.named(log)
    known = sorted({m for st in sc.stations for m in st.machine_names})
    if not log.machine.isin(known).any():
        theirs = sorted(log.machine.unique())
        fail(f"{where}: none of its machines ({', '.join(theirs[:5])}{', …' if len(theirs) > 5 else ''}) is in the "
             f"scenario ({', '.join(known[:6])}{', …' if len(known) > 6 else ''}); name them as the scenario does, or "
             f"map the log's names with --machine-names '{theirs[0]}={known[0]}, …'.")
    first, end = log.timestamp.min(), log.timestamp.max()
    stamp = pd.Timestamp(when.replace(tzinfo=None)) if when is not None else end
    if not first <= stamp <= end:  # after the end every machine would sit in its last state, every wear growing
        shown = {t: f"{t:%Y-%m-%d %H:%M:%S}" for t in (stamp, first, end)}
        fail(f"{where}: {shown[stamp]} is {'after its last' if stamp > end else 'before its first'} row "
             f"({shown[end] if stamp > end else shown[first]}); the line's state is known from {shown[first]} to "
             f"{shown[end]}: give --at between them, or leave it out to continue from the log's last row.")
    buffers = _levels_at(sc, levels, stamp, plant) if levels is not None else None
    release = _release_at(sc, plant.named(made), stamp) if planned and made is not None else None
    # as `twin fit` reads a list: its nights were working (every age too old), its waits from the parts made
    log, _, waits = as_listed(log, sc.calendar, plant.named(made) if made is not None and listed else None)
    if waits is not None:
        err_console.print(f"note: {waits:,} waits for parts or space read from {parts.name if parts else ''}, as "
                          "`twin fit --parts` reads them", highlight=False)
    operating = sorted({s.machine_type for s in sc.stations if sc.machine_types[s.machine_type].clock == "operating"})
    if listed and operating and made is None:
        err_console.print(f"note: {short} is a stop list: the lives of {', '.join(operating)} (clock: operating) "
                          "count the waits for parts or space a list cannot show as working time, so their ages are "
                          "upper bounds (--parts reads the waits from the parts each machine made)", highlight=False)
    now = state_at(log, sc, stamp, f"{short}, {'a stop list' if listed else 'a status log'}", buffers)
    if release is not None:
        now = now.model_copy(update={"release": release})
    if told and setups and made is not None:
        last = _set_up_for(plant.named(made), stamp)
        now = now.model_copy(update={"machines": {m: v.model_copy(update={"product": last.get(m)})
                                                  for m, v in now.machines.items()}})
    return now


def _set_up_for(made: pd.DataFrame, stamp: pd.Timestamp) -> dict[str, str]:
    """The product of each machine's last part by `stamp` (a part log naming products): what it is set up for."""
    mine = made[made.timestamp <= stamp].sort_values("timestamp", kind="stable")
    return {str(m): str(p) for m, p in mine.groupby("machine", sort=False)["product"].last().items()}


def _release_at(sc: Scenario, made: pd.DataFrame, stamp: pd.Timestamp) -> ReleaseNow | None:
    """The release plan's campaign under way at `stamp`: the product of the last part the line's entry stations
    made by then, and how many of it they made in a row (None: none made)."""
    import numpy as np

    from twin.scenario import ReleaseNow

    entry = {m for i in sc.entries() for m in sc.stations[i].machine_names}
    mine = made[made.machine.isin(entry) & (made.timestamp <= stamp)].sort_values("timestamp", kind="stable")
    if mine.empty:
        return None
    products = mine["product"].to_numpy(dtype=object)
    last = products[-1]
    other = np.flatnonzero(products != last)
    return ReleaseNow(product=str(last), made=int(len(products) - (other[-1] + 1 if len(other) else 0)))


def _levels_at(sc: Scenario, path: Path, stamp: pd.Timestamp, plant: PlantNames) -> dict[str, int] | None:
    """Each buffer's last level at or before `stamp` from a buffer-level log (as `twin fit --levels` reads it; an
    assembly's per feeder, 'station<feeder'); None, said, where it has none by then. Mistakes named (exit 2)."""
    from twin.fit import LogError, read_levels
    from twin.scenario import buffer_station

    try:
        read = read_levels(path, sc.line.timezone, plant.fmt)
    except LogError as e:
        fail(str(e))
    for told in read.attrs.get("notes", []):
        err_console.print(f"note: {told}", highlight=False, markup=False)
    buffered = sorted({s.name for s in sc.stations if s.buffer is not None or s.assemble})
    named = read.station.astype(str).map(buffer_station)
    if not named.isin(buffered).any():
        theirs = sorted(set(named))
        fail(f"{path}: none of its stations ({', '.join(theirs[:5])}{', …' if len(theirs) > 5 else ''}) is a station "
             f"with a buffer in the scenario ({', '.join(buffered[:6])}{', …' if len(buffered) > 6 else ''}); name "
             "them as the scenario does.")
    before = read[(read.timestamp <= stamp) & named.isin(buffered).to_numpy()]
    if before.empty:
        err_console.print(f"note: {path.name} has no level at or before {stamp:%Y-%m-%d %H:%M:%S}: the scenario's "
                          "initial levels", highlight=False)
        return None
    last = before.sort_values("timestamp", kind="stable").groupby(before.station.astype(str)).tail(1)
    return dict(zip(last.station.astype(str), last["level"].astype(int)))


def _store_log(url: str, run: str | None, names: dict[str, str] | None) -> pd.DataFrame:
    """The status log of a plant's run from a store's state records (what `twin connect` wrote); its only run, or
    `run`. A plant's run has one replication; of a simulated run's several, the first (each is a history of its own).
    Sparkplug's `offline` records (a node's death) are left out: the state before one goes on through it."""
    from sensors.store import StoreError, open_store
    from twin.fit import status_log

    try:
        db = open_store(url, read_only=True)
        try:
            states = db.states(run)  # every run's when none is named: read once, its runs told from it
            if run is None:
                runs = sorted(states.run.unique())
            elif states.empty:  # a run it does not hold: its runs, to name them
                runs = sorted(db.states().run.unique())
            else:
                runs = [run]
        finally:
            db.close()
    except StoreError as e:
        fail(str(e), code=3)
    if run is None and len(runs) > 1:
        fail(f"{url} holds the state records of {len(runs)} runs ({', '.join(runs[:10])}); name one with --run")
    if states.empty:
        fail(f"{url}: no state records{f' of run {run!r}' if run else ''} (its runs: {', '.join(runs) or 'none'}); "
             "`twin connect --store` writes a plant's, with a state: mapping")
    if states.replication.nunique() > 1:
        err_console.print(f"note: run {states.run.iloc[0]} has {states.replication.nunique()} replications; fitting "
                          "the first", highlight=False)
        states = states[states.replication == states.replication.min()]
    offline = states.state == "offline"
    if offline.any():
        err_console.print(f"note: {int(offline.sum()):,} offline records (a Sparkplug node's death) left out: the "
                          "state before each goes on through it", highlight=False)
        states = states[~offline]
    return status_log(states.reset_index(drop=True), states.ts.reset_index(drop=True),
                      f"{url} (run {states.run.iloc[0]})", names)


def _store_products(url: str, run: str | None, names: dict[str, str] | None) -> pd.DataFrame | None:
    """When each machine began on another product (timestamp, machine, product), from a store's product records (a
    plant's recipes, as `twin connect` maps them, or a twin's own run): what tells a setup's product pair; None
    where it has none."""
    import pandas as pd

    from sensors.store import StoreError, open_store

    try:
        db = open_store(url, read_only=True)
        try:
            got = db.products(run)
        finally:
            db.close()
    except StoreError as e:
        fail(str(e), code=3)
    if got.empty or got.run.nunique() > 1:  # several runs: the state records' own check names them
        return None
    got = got[got.replication == got.replication.min()]
    return pd.DataFrame({"timestamp": got.ts.to_numpy(), "machine": got.machine.astype(str).map(
        lambda m: (names or {}).get(m, m)).to_numpy(), "product": got["product"].astype(str).to_numpy()})


def _url_name(url: str) -> Path:
    """A store URL as the file it names (duckdb:///data/plant.duckdb → plant.duckdb), for reports and messages."""
    return Path(url.split("?")[0].rsplit("/", 1)[-1] or "store")


def _one_run(url: str, run: str | None, option: str, what: str, fix: str,
             read: Callable[[Store], pd.DataFrame]) -> pd.DataFrame:
    """`read`'s records of a store (`--parts`, `--levels` given a store URL): its only run's, or `run`'s; of a
    simulated run's replications, the first; refused naming the option when there are several runs or none."""
    from sensors.store import StoreError, open_store

    try:
        db = open_store(url, read_only=True)
        try:
            got = read(db)
        finally:
            db.close()
    except StoreError as e:
        fail(str(e), code=3)
    runs = sorted(got.run.unique())
    if len(runs) > 1:
        fail(f"{option} {url} holds the {what} of {len(runs)} runs ({', '.join(runs[:10])}); name one with --run")
    if got.empty:
        fail(f"{option} {url}: no {what}{f' of run {run!r}' if run else ''}; {fix}")
    return got[got.replication == got.replication.min()]


def _store_parts(url: str, run: str | None) -> pd.DataFrame:
    """A part-completion log (timestamp, machine, and scrap where scrap counters tell) from a store's good_parts and
    scrap_parts counters (a plant's PLC counts, as `twin connect` writes them; `store.base.part_times`)."""
    readings = _one_run(url, run, "--parts", "good_parts counters", "map a machine's part counter as the sensor "
                        "good_parts in `twin connect` (docs/connect.md), or give a part log file",
                        lambda db: db.query(run=run, sensors=["good_parts", "scrap_parts"]))
    return _counted_parts(readings)


def _file_parts(log: pd.DataFrame) -> pd.DataFrame:
    """A part log file (`fit.read_parts`) as one row per part: its rows, or for a counter's readings (its count
    column, and its scrap counter's) the parts each counted."""
    import pandas as pd

    if "count" not in log:
        return log
    readings = log.rename(columns={"timestamp": "ts", "count": "value"}).assign(sensor="good_parts")
    if "scrap" in log:
        scrap = log.rename(columns={"timestamp": "ts", "scrap": "value"}).assign(sensor="scrap_parts")
        readings = pd.concat([readings.drop(columns="scrap"), scrap.drop(columns="count")], ignore_index=True)
    return _counted_parts(readings.dropna(subset=["value"]))


def _counted_parts(readings: pd.DataFrame) -> pd.DataFrame:
    """Part counters' readings (machine, sensor, ts, value: a store's good_parts and scrap_parts, or a part log file's
    count and scrap) as a part-completion log (timestamp, machine, and `scrap` per part where a scrap counter was
    read: one row per part counted; `store.base.part_times`, a reset counting on from 0)."""
    import pandas as pd

    from sensors.store.base import part_times

    parts = part_times(readings).rename(columns={"ts": "timestamp"})
    if not (parts.sensor == "scrap_parts").any():
        return parts[["timestamp", "machine"]]
    # a machine without a scrap counter: its parts' results are not known (NA), not good
    told = readings.loc[readings.sensor == "scrap_parts", "machine"].unique()
    scrap = pd.array(parts.sensor == "scrap_parts", dtype="boolean")
    scrap[~parts.machine.isin(told).to_numpy()] = pd.NA
    parts = parts.assign(scrap=scrap).sort_values(["machine", "timestamp"], kind="stable")
    return parts[["timestamp", "machine", "scrap"]].reset_index(drop=True)


def _store_energy(url: str, run: str | None) -> pd.DataFrame:
    """An energy log (timestamp, machine, sensor, value) from a store's energy meters (kWh registers as the sensor
    energy, kW as power, as `twin connect` writes them)."""
    readings = _one_run(url, run, "--energy", "energy or power readings", "map a machine's meter as the sensor energy "
                        "(its kWh register) or power (kW) in `twin connect` (docs/connect.md), or give an energy log "
                        "file", lambda db: db.query(run=run, sensors=["energy", "power"]))
    return readings.rename(columns={"ts": "timestamp"})[["timestamp", "machine", "sensor", "value"]]


def _store_levels(url: str, run: str | None) -> pd.DataFrame:
    """A buffer-level log (timestamp, station, level) from a store's level records (a plant's WIP counters, as
    `twin connect` writes them)."""
    import pandas as pd

    levels = _one_run(url, run, "--levels", "buffer levels", "`twin connect --store` writes a plant's with a "
                      "buffer: mapping (docs/connect.md)", lambda db: db.levels(run))
    return pd.DataFrame({"timestamp": levels.ts.to_numpy(), "station": levels.station.astype(str).to_numpy(),
                         "level": levels["level"].astype(int).to_numpy()})


def _listed(names: list[str], most: int = 5) -> str:
    """Names as a short list: the first `most`, then how many more."""
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _known_names(path: Path, names: pd.Series, known: set[str], what: str, base: Path) -> str:
    """A plant log's machine or station names against the scenario's: none of them known is an error (the log would
    change nothing, without a word), some unknown a warning naming those left out (returned; '' when none is)."""
    unknown, unlogged = sorted(set(names) - known), sorted(known - set(names))
    hint = (f" (or map the log's names to the scenario's with --machines '{unknown[0]}={unlogged[0]}, …')"
            if what == "machines" and unknown and unlogged else "")
    if unknown and len(unknown) == names.nunique():
        fail(f"{path}: none of its {what} ({', '.join(unknown[:5])}) is in {base.name} ({', '.join(sorted(known))}); "
             f"name the {what.split()[0]} in the log as the scenario does{hint}.")
    if not unknown:
        return ""
    rows = f"; the log has no rows of {base.name}'s {_listed(unlogged)}{hint}" if hint else ""
    return f"{path.name}: {what} not in {base.name}, left out: {', '.join(unknown)}{rows}"


def _some_shift_ahead(sc: Scenario, options: list[tuple[str, Scenario]], duration: str) -> None:
    """Refuse a what-if whose every alternative lies off shift throughout (each would make 0 parts, its availability
    undefined): say when the next shift starts."""
    from twin.model import ShiftCalendar

    spans = [ShiftCalendar(alt.calendar, alt.start, alt.duration) if alt.calendar is not None else None
             for _, alt in options]
    if all(c is not None and c.planned(0.0, sc.duration) <= 0 for c in spans):
        first = spans[0]
        assert first is not None
        nxt = first.next_start(sc.duration)
        when = f"; the next shift starts at {sc.start + dt.timedelta(seconds=nxt):%a %Y-%m-%d %H:%M}" \
            if nxt is not None else ""
        cal = sc.calendar
        shifts = f" (shifts {', '.join(cal.shifts)} on {', '.join(cal.days)})" if cal is not None else ""
        fail(f"the next {duration} from {sc.start:%a %Y-%m-%d %H:%M} are off shift{shifts}{when}: nothing would be "
             "made as is or under any alternative. Look further ahead (--duration), continue from a time on shift "
             "(--at), or ask what another shift would make (--add-shift)")


@dataclass(frozen=True)
class Order:
    """An order of `twin whatif --order`: its good parts, its product (None: any), when it is due (None: within the
    run) and how it was written."""

    count: int
    product: str | None
    due: dt.datetime | None
    spec: str
    ref: str = ""  # the order book's own number for it

    def name(self) -> str:
        """How tables name it: '260 good parts', 'A-1042 juice-10 × 5,000 by Tue 14:00'."""
        what = f"{self.product} × {self.count:,}" if self.product else f"{self.count:,} good parts"
        return (f"{self.ref} " if self.ref else "") + what + (f" by {self.due:%a %H:%M}" if self.due else "")


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _orders(specs: Sequence[str], sc: Scenario, where: Sequence[str] = ()) -> list[tuple[int, str | None, str]]:
    """--order N, PRODUCT=N, either with @DUE: each order's good parts, product (None: any) and due time as written
    ('' without), or a clear error naming it (`where`, else the option); an order of any product beside another's
    would count its parts twice."""
    names = [p.name for p in sc.products]
    example = f"400 or {names[0]}=400@Tue 14:00" if names else "400 or 400@18:00"
    got = []
    for k, spec in enumerate(specs):
        said = where[k] if where else f"--order {spec!r}"
        what, _, due = spec.partition("@")
        product, _, n = what.rpartition("=")
        if not n.strip().isdigit() or not 1 <= int(n) <= 10**9:
            fail(f"{said}: write the good parts the order asks for, 1 to 1,000,000,000"
                 + (", or PRODUCT=N for one product" if names else "") + f", and @WHEN it is due if it is, e.g. "
                 f"{example}")
        if product.strip() and product.strip() not in names:
            fail(f"{said}: " + (f"the line makes {', '.join(names)}" if names else "the line makes one kind "
                                "of part: give the number alone") + f", e.g. {example}")
        if "@" in spec and not due.strip():
            fail(f"{said}: say when it is due after @: a time on the line's clock (18:00, Tue 14:00 or "
                 f"2026-01-06T14:00), e.g. {example}")
        got.append((int(n), product.strip() or None, due.strip()))
    if names and len({p is None for _, p, _ in got}) > 1:
        fail(f"{'; '.join(where) if where else ' '.join(f'--order {o!r}' for o in specs)}: an order of any product "
             f"would count the other orders' parts too: give each its product (PRODUCT=N), e.g. {names[0]}=400")
    return got


BOOK_COLUMNS = {"quantity": ("quantity", "qty", "good parts", "parts", "menge"),
                "product": ("product", "material", "article", "artikel"),
                "due": ("due", "due date", "due time", "deadline", "termin", "liefertermin"),
                "order": ("order", "order id", "order no", "order number", "auftrag", "auftragsnummer"),
                "made": ("made", "confirmed", "good made", "done", "gutmenge", "rückgemeldet", "gemeldet", "istmenge",
                         "ist-menge")}


def _order_book(path: Path, sep: str | None, products: Mapping[str, str] | None = None
                ) -> tuple[list[str], list[str], list[str]]:
    """An ERP's order book export (CSV, Excel, Parquet): a row per order, in the order they are to be made, with its
    quantity of good parts and, where given, its product (the ERP's own names mapped by `products`: --products), due
    time (ISO or 06.01.2026 14:00), own number and the good parts already made (confirmed: the order asks for the
    rest; one made in full is left out, said) (the column names of BOOK_COLUMNS, any case): as --order specs, each
    row's place for errors, and the numbers."""
    import pandas as pd

    from twin.tables import first_row, read_frame

    try:
        df, _ = read_frame(path, sep, want=BOOK_COLUMNS["quantity"])
    except (ValueError, OSError) as e:
        fail(f"--orders {path}: {e}")
    found = {}
    for key, aliases in BOOK_COLUMNS.items():
        found[key] = next((c for c in df.columns if str(c).strip().lower() in aliases), None)
    if found["quantity"] is None:
        fail(f"--orders {path}: no column of the good parts each order asks for; its columns are "
             f"{', '.join(map(str, df.columns[:12]))}. Name it quantity (and the others product, due, order), e.g. "
             "a header 'order,product,quantity,due'")
    if len(df) > 1000:
        fail(f"--orders {path}: {len(df):,} orders; a what-if follows at most 1,000 (the ones due next)")
    specs, where, refs = [], [], []
    for k, row in enumerate(df.to_dict("records")):
        at = f"--orders {path}: row {k + first_row(df)}"
        n, product = row[found["quantity"]], row[found["product"]] if found["product"] else None
        due = row[found["due"]] if found["due"] else None
        if (isinstance(n, float) and n.is_integer()) or (isinstance(n, str) and n.strip().isascii()
                                                         and n.strip().isdigit()):
            n = int(n)
        made = row[found["made"]] if found["made"] else None
        if _given(made):
            count = pd.to_numeric(str(made).strip(), errors="coerce")
            if pd.isna(count) or not 0 <= count < 10**9 or count != int(count):  # inf: out before int()
                fail(f"{at}, column {found['made']}: {str(made).strip()!r} is not a count of good parts made (a "
                     "whole number, 0 or more, without thousands separators)")
            if isinstance(n, int) and not isinstance(n, bool):
                if int(count) >= n:
                    err_console.print(f"note: {at}: all {n:,} good parts made already ({found['made']} "
                                      f"{int(count):,}): left out", highlight=False)
                    continue
                n -= int(count)
        if isinstance(due, (pd.Timestamp, dt.datetime)):
            due = due.isoformat(timespec="minutes")
        elif isinstance(due, str) and (m := re.fullmatch(r"\s*(\d{1,2})\.(\d{1,2})\.(\d{4})(?:\s+(\d{1,2}:\d{2}))?\s*",
                                                         due)):
            due = f"{m[3]}-{int(m[2]):02d}-{int(m[1]):02d}T{(m[4] or '00:00').zfill(5)}"
        if _given(product):
            product = (products or {}).get(str(product).strip().removesuffix(".0"), str(product).strip())
        specs.append((f"{str(product).strip()}=" if _given(product) else "") + str(n).strip()
                     + (f"@{str(due).strip()}" if _given(due) else ""))
        where.append(at)
        refs.append(str(row[found["order"]]).strip() if found["order"] and _given(row[found["order"]]) else "")
    return specs, where, refs


RELEASES = {"line": "release: the line's plan", "book": "release: the book's order", "due": "release: by due date",
            "setups": "release: fewest setups"}


def _releases(chosen: Sequence[str], asked: Sequence[tuple[int, str | None, str]], sc: Scenario) -> list[str]:
    """--release: how the entries release parts (the first for every alternative, each further one an alternative
    of its own): the line's own plan, the order book's orders in its order, by due date (earliest first) or with
    each product's together (RELEASES); or a clear error."""
    for k, how in enumerate(chosen):
        if how not in RELEASES:
            fail(f"--release {how!r}: write line (the line's own release plan), book (the orders in the book's "
                 "order), due (the orders by due date, earliest first) or setups (a product's orders together, "
                 "the next product the quickest to change to)")
        if how in chosen[:k]:
            fail(f"--release {how} is given twice: give each way to release once")
    if not any(how != "line" for how in chosen):
        return list(chosen) or ["line"]
    if not asked:
        fail(f"--release {'/'.join(h for h in chosen if h != 'line')} releases an order book: give its orders with "
             "--order PRODUCT=N@WHEN or --orders FILE")
    if not sc.products:
        fail("--release: the line makes one kind of part (the scenario has no products:), so it makes its orders "
             "in turn whatever it releases: leave --release out")
    if any(st.assemble for st in sc.stations):
        fail("--release: a line with an assembly releases parts at each feeder, and an order's parts would go into "
             "assemblies made for others (not yet): leave --release out, the orders filled from what it makes")
    if "due" in chosen and not any(due for _, _, due in asked):
        fail("--release due releases the orders by due date, and none has one: give them as --order N@WHEN or a "
             "due column in --orders")
    if any(product is None for _, product, _ in asked):
        fail(f"--release {'/'.join(h for h in chosen if h != 'line')}: the line releases each order's product, so "
             f"every order names one, e.g. --order {sc.products[0].name}=400")
    return list(chosen)


def _released(sc: Scenario, book: Sequence[Order], how: str) -> tuple[Scenario, list[int]]:
    """`sc` released as `how` says (RELEASES), and where each order of the book stands in its `orders`."""
    if how == "line":  # the plan alone: a file's own orders are the book, filled from what the plan makes
        return sc if not sc.orders else sc.model_copy(update={"orders": None}), list(range(len(book)))
    from twin.scenario import ReleaseOrder

    far = dt.datetime.max
    sequence = sorted(range(len(book)), key=lambda i: book[i].due or far) if how in ("due", "setups") else \
        list(range(len(book)))
    if how == "setups":
        sequence = _fewest_setups(sc, [book[i].product or "" for i in sequence], sequence)
    place = [sequence.index(i) for i in range(len(book))]
    return sc.model_copy(update={"orders": [ReleaseOrder(product=book[i].product or "", parts=book[i].count,
                                                         order=book[i].ref, due=book[i].due) for i in sequence]}), place


def _fewest_setups(sc: Scenario, products: Sequence[str], sequence: Sequence[int]) -> list[int]:
    """The orders `sequence` (their `products`) with each product's together, in their order, the next product the
    one whose changeover from the last is shortest (its mean summed over the stations' setup_matrix; ties: the one
    whose first order comes first), from what the line is making now (the campaign under way, else what its entry
    machines made last): the nearest neighbour, not an optimum."""
    def changeover(a: str | None, b: str) -> float:
        return sum(st.setup_matrix[a][b].mean for st in sc.stations
                   if a is not None and a in st.setup_matrix and b in st.setup_matrix[a])

    now = sc.now
    entry = {m for i in sc.entries() for m in sc.stations[i].machine_names}
    last = now.release.product if now is not None and now.release is not None else next(
        (m.product for name, m in (now.machines.items() if now is not None else []) if name in entry and m.product),
        None)
    groups: dict[str, list[int]] = {}
    for product, i in zip(products, sequence):
        groups.setdefault(product, []).append(i)
    out: list[int] = []
    while groups:
        last = min(groups, key=lambda p: changeover(last, p))  # dicts keep their first order: ties go to it
        out += groups.pop(last)
    return out


def _given(cell: object) -> bool:
    """Whether a table's cell holds something (not empty, blank or NaN)."""
    return cell is not None and not (isinstance(cell, float) and cell != cell) and str(cell).strip() != ""


def _due(spec: str, text: str, start: dt.datetime, end: dt.datetime, said: str = "") -> dt.datetime:
    """An order's due time on the line's clock: ISO (2026-01-06T14:00), or HH:MM or DAY HH:MM (Tue 14:00) for the
    first such time after the state's `start`; it must lie inside the run (after start, by its end)."""
    said = said or f"--order {spec!r}"
    start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    day, _, clock = text.rpartition(" ")
    try:
        if ":" in clock and len(clock) <= 5 and (not day or day.strip().lower()[:3] in _DAYS):
            t = dt.time.fromisoformat(clock.zfill(5))
            due = dt.datetime.combine(start.date(), t)
            while due <= start or (day and due.weekday() != _DAYS.index(day.strip().lower()[:3])):
                due += dt.timedelta(days=1)
        else:
            due = dt.datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        fail(f"{said}: {text!r} is no time: write it on the line's clock as 18:00, Tue 14:00 "
             "or 2026-01-06T14:00")
    if not start < due <= end:
        fail(f"{said}: due {due:%a %Y-%m-%d %H:%M}, but the what-if runs from {start:%a %Y-%m-%d %H:%M} to "
             f"{end:%a %Y-%m-%d %H:%M}: " + ("it is past" if due <= start else "look further ahead (--duration)"))
    return due


def _asked_book(file: Path, base: Scenario, orders: Path | None, order: Sequence[str], release: Sequence[str],
                plant: PlantNames) -> tuple[list[tuple[int, str | None, str]], list[str], list[str], list[str],
                                            list[str]]:
    """A what-if's order book, checked before the line's state is read: --orders FILE's rows then each --order (else
    the file's own `orders:`) as (good parts, product, due as written), with each one's spec, where it was given and
    its number, and how the line releases them (--release)."""
    specs, where, refs = _order_book(orders, plant.fmt.sep, plant.fmt.products) if orders is not None else \
        ([], [], [])
    specs, where, refs = [*specs, *order], [*where, *(f"--order {o!r}" for o in order)], [*refs, *[""] * len(order)]
    asked = _orders(specs, base, where)
    if base.orders and asked and "line" in (release or ["line"]):
        fail(f"{file}: orders: the scenario releases its own orders, and the what-if's order book would count their "
             "parts too: release the book instead (--release book), or leave the orders out of the file")
    if base.orders and not asked:  # the file's orders are the book: how likely each is made, and when
        dues = [o.due.isoformat(timespec="minutes") if o.due else "" for o in base.orders]
        specs = [f"{o.product}={o.parts}" + (f"@{due}" if due else "") for o, due in zip(base.orders, dues)]
        where, refs = [f"{file}: orders[{k}]" for k in range(len(specs))], [o.order for o in base.orders]
        asked, release = [(o.parts, o.product, due) for o, due in zip(base.orders, dues)], release or ["book"]
    return asked, specs, where, refs, _releases(release, asked, base)


def _book_table(book: Sequence[Order], orders: pd.DataFrame, rows: Sequence[Mapping[str, object]],
                labels: Sequence[str], end: dt.datetime, title: str) -> Table:
    """An order book's table: each order under each alternative (made, on time where due, done by), then the share of
    runs that made all of them, each in time."""
    from twin.app.compare import ALL_ORDERS, order_cells, share_text

    dues_given = any(o.due is not None for o in book)
    listed = Table(title=title)
    for col in ("order", "alternative", "made", *(["on time"] if dues_given else []), "done by"):
        listed.add_column(col, justify="left" if col in ("order", "alternative") else "right", no_wrap=True)
    for r in orders.to_dict("records"):
        cells = order_cells(r, end)
        listed.add_row(f"{r['order']}: {book[r['order'] - 1].name()}" if r["alternative"] == labels[0] else "",
                       r["alternative"], cells[0],
                       *([cells[1] if book[r["order"] - 1].due else "–"] if dues_given else []), cells[-1],
                       end_section=r["alternative"] == labels[-1])
    for k, r in enumerate(rows):  # the book as a whole: every order of one run in time
        whole = share_text(r, ALL_ORDERS)
        listed.add_row(f"all {len(book)} orders" if k == 0 else "", str(r["alternative"]),
                       "" if dues_given else whole, *([whole] if dues_given else []), "")
    return listed


def _whatif_legend(book: Sequence[Order], duration: str, powered: bool) -> str:
    """What a what-if's columns mean, for the orders asked (`book`) and where machine types give their power."""
    one = len(book) == 1
    return ("good parts: mean ± half-width of its 95 % confidence interval; 90 % of runs: the range one run falls in "
            "(5th to 95th percentile); availability: mean over the machines; "
            + ("kWh per good part: the machines' energy over the good parts of all replications; " if powered else "")
            + "vs as is: paired difference (same random numbers)"
            + (f"; {'order ' if one else ''}made: the share of runs that made {'the order' if one else 'an order'} "
               f"within {duration}, with its 95 % CI; " + ("on time: by when it is due; " if any(o.due for o in book)
                                                          else "")
               + "done by: when the median run had made it, and 9 runs in 10"
               + (f"; all {len(book)} orders: the share of runs that made every one, each by when it is due (one "
                  "run's orders hang together: not the product of their shares)" if len(book) > 1 else "")
               if book else ""))


def whatif(
    file: Annotated[Path, typer.Argument(help="the line's scenario (fitted by `twin fit`, or as engineered)")],
    from_: Annotated[list[str], typer.Option("--from", help="where the line's state is read: a store "
                                                            "(duckdb:///file, influxdb://...), the line's broker "
                                                            "(mqtt://...), or a plant's status log or stop list (as "
                                                            "`twin fit` reads it; its monthly exports: --from each)")],
    at: Annotated[Optional[str], typer.Option(help="with a store or a log: the moment to continue from (line's "
                                                   "clock, e.g. 2026-01-05T14:00); default: the last record")] = None,
    duration: Annotated[str, typer.Option(help="how far ahead, e.g. '8 h'")] = "8 h",
    replications: Annotated[int, typer.Option(min=2, max=1000, help="replications per alternative")] = 30,
    extra_crew: ExtraCrew = None,
    policy: PolicyAlt = None,
    buffer: BufferAlt = None,
    add_shift: AddShift = None,
    machines: MachinesAlt = None,
    cycle_time: CycleAlt = None,
    batch: BatchAlt = None,
    transfer: TransferAlt = None,
    service_off_shift: OffShiftService = False,
    mix: MixAlt = None,
    stock: StockAlt = None,
    on_call: OnCallAlt = None,
    variant: VariantAlt = None,
    combined: Combined = False,
    order: Annotated[Optional[list[str]], typer.Option(help="an order of N good parts from now (PRODUCT=N: of one "
                                                            "product; @WHEN: due then, e.g. 400@Tue 14:00): how likely "
                                                            "each alternative makes it (on time), and when; repeat it "
                                                            "for an order book, each product's orders filled in turn")]
    = None,
    orders: Annotated[Optional[Path], typer.Option(help="an order book: the ERP's export (CSV, Excel or Parquet), a "
                                                        "row per order in the order they are made, with its quantity "
                                                        "and where known its product, due time and order number; "
                                                        "before any --order")] = None,
    release: Annotated[Optional[list[str]], typer.Option(help="how the line releases parts: line (its own "
                                                              "release plan; default), book (the orders in the "
                                                              "book's order, each to its good parts, scrap made up, "
                                                              "then the plan), due (the same by due date) or setups "
                                                              "(each product's orders together, the next product "
                                                              "the quickest to change to); repeat it to compare: "
                                                              "each further one an alternative")] = None,
    out: Annotated[Optional[Path], typer.Option(help="write the table here (CSV) and the replications beside it")]
    = None,
    seed: Annotated[Optional[int], typer.Option(min=0, max=MAX_SEED, help="override the scenario's seed")] = None,
    jobs: Jobs = None,
    cluster: ClusterOpt = None,
    states: StatesOpt = None,
    reasons: ReasonsOpt = None,
    results: ResultsOpt = None,
    products: ProductsOpt = None,
    levels: Annotated[Optional[Path], typer.Option(help="with a log: its buffer-level log (timestamp, station, "
                                                        "level; as `twin fit --levels` reads it): each buffer's "
                                                        "last level then (default: the scenario's initial levels)")]
    = None,
    parts: Annotated[Optional[Path], typer.Option(help="with a stop list: its part log (as `twin fit --parts` reads "
                                                       "it): the waits for parts or space it shows, which machines on "
                                                       "an operating clock do not age in")] = None,
    machine_names: Annotated[Optional[str], typer.Option(help="with a log: the plant's machine names as the "
                                                              "scenario's, e.g. 'Presse 1=press-1' (twin fit's "
                                                              "--machines)")] = None,
    columns: ColumnsOpt = None,
    sep: SepOpt = None,
    time_format: TimeFormatOpt = None,
) -> None:
    """What happens next if we...: from the line's state now, the next hours simulated as they are and under each
    alternative (common random numbers), good parts with a 95 % CI of the mean and a 90 % range for this one run."""
    seconds = time_option(duration, "--duration")
    assert seconds is not None
    if out is not None:
        writable(out, folder=False)
    base = open_scenario(file, duration=seconds, replications=replications, seed=seed,  # named before scipy loads
                         warmup=0.0)  # from the state now: the line is running, no warm-up (the file's may be longer)
    asked = (extra_crew or [], policy or [], buffer or [], add_shift or [], machines or [], cycle_time or [],
             batch or [], transfer or [], service_off_shift, mix or [], stock or [], on_call or [])
    alternatives(base, *asked, combined=combined, variants=variant, say=False)  # mistakes named before the state read
    plant = plant_names(base, columns, sep, time_format, states, reasons, machine_names, "--machine-names", results,
                        products)
    asked_orders, specs, where, refs, releases = _asked_book(file, base, orders, order or [], release or [], plant)
    import numpy as np
    import pandas as pd

    from twin.app.compare import all_orders, compare_designs, order_cells, order_chart, order_figures, whatif_task
    from twin.kpi import half_width

    sc = continued(base, from_, at, plant=plant, levels=levels, parts=parts)
    end = sc.start + dt.timedelta(seconds=sc.duration)
    book = [Order(n, p, _due(spec, due, sc.start, end, said) if due else None, spec, ref)
            for (n, p, due), spec, said, ref in zip(asked_orders, specs, where, refs)]
    options = alternatives(sc, *asked, combined=combined, variants=variant)  # on the state now (buffers' levels)
    place: dict[str, list[int]] = {}  # per alternative, where each order of the book stands in its release
    for k, (label, s) in enumerate(options):
        s, place[label] = _released(s, book, releases[0])
        options[k] = (label, s)
    for how in releases[1:]:  # as is, released another way
        s, place[RELEASES[how]] = _released(options[0][1].model_copy(update={"orders": None}), book, how)
        options.append((RELEASES[how], s))
    _some_shift_ahead(sc, options, duration)
    task = partial(whatif_task, orders=tuple((o.count, o.product) for o in book))
    runs = simulated(f"{len(options)} alternatives × {replications} replications", len(options) * replications,
                     lambda progress: compare_designs(options, jobs=jobs, cluster=cluster, progress=progress,
                                                      task=task))
    parts: dict[str, np.ndarray] = {}
    avail: dict[str, float] = {}

    dues = [None if o.due is None else (o.due - sc.start.replace(tzinfo=None)).total_seconds() / 3600 for o in book]

    def figures(label: str, i: int) -> dict[str, object]:
        return order_figures(done[label, i], sc.start, dues[i])

    energy: dict[str, float] = {}  # kWh per good part, where machine types give their power
    done: dict[tuple[str, int], np.ndarray] = {}  # hours until an order's last part left (nan: not within the run)
    for label, _ in options:
        got = runs.kpis[runs.kpis.policy == label].pivot(index="replication", columns="kpi", values="value")
        av = got["availability"].dropna()  # none: off shift throughout (no planned time to be available in)
        parts[label], avail[label] = got["good parts"].to_numpy(), float(av.mean()) if len(av) else float("nan")
        energy[label] = float(got["energy [kWh]"].to_numpy().sum() / parts[label].sum()) if parts[label].sum() > 0 \
            else float("nan")  # nan where machine types give no power
        for i in range(len(book)):
            done[label, i] = got[f"order {place[label][i] + 1} done [h]"].to_numpy()
    per_order = {(label, i): figures(label, i) for label, _ in options for i in range(len(book))}
    base_parts = parts["as is"]
    rows = []
    for label, _ in options:
        p = parts[label]
        d = p - base_parts
        rows.append({"alternative": label, "good parts": p.mean(), "± (95 % CI)": half_width(p),
                     "5 %": np.percentile(p, 5), "95 %": np.percentile(p, 95), "availability": avail[label],
                     "energy per good part [kWh]": energy[label],
                     "vs as is": d.mean() if label != "as is" else np.nan,
                     "vs ± (95 % CI)": half_width(d) if label != "as is" else np.nan,
                     **(per_order[label, 0] if len(book) == 1 else {}),
                     **(all_orders([done[label, i] for i in range(len(book))], dues) if len(book) > 1 else {})})
    table = pd.DataFrame(rows)
    one = book[0] if len(book) == 1 else None  # one order: its cells in the table; several: a table of them
    shown = Table(title=f"the next {duration} from {sc.start:%Y-%m-%d %H:%M}, {replications} replications each"
                  + (f"; an order of {one.name()}" if one is not None else ""))
    powered = any(mt.power is not None for mt in sc.machine_types.values())
    shown.add_column("alternative", ratio=1)
    for col in ("good parts", "90 % of runs", "availability", *(["kWh per good part"] if powered else []),
                "vs as is", *(["order made", *(["on time"] if one.due else []), "done by"] if one else [])):
        shown.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        kwh = r["energy per good part [kWh]"]
        shown.add_row(r["alternative"], f"{r['good parts']:,.0f} ± {r['± (95 % CI)']:,.0f}",
                      f"{r['5 %']:,.0f} – {r['95 %']:,.0f}",
                      f"{r['availability']:.1%}" if not np.isnan(r["availability"]) else "off shift",
                      *([f"{kwh:,.3g}" if not np.isnan(kwh) else "–"] if powered else []),
                      "" if r["alternative"] == "as is" else f"{r['vs as is']:+,.0f} ± {r['vs ± (95 % CI)']:,.0f}",
                      *(order_cells(r, end) if one is not None else []))
    print_table(shown)
    table_of_orders = pd.DataFrame([{"order": i + 1, "name": o.name(), "reference": o.ref, "product": o.product,
                                     "good parts": o.count,
                                     "due": None if o.due is None else o.due.isoformat(timespec="minutes"),
                                     "alternative": label, **per_order[label, i]}
                                    for i, o in enumerate(book) for label, _ in options])
    if len(book) > 1:  # an order book: each order under each alternative
        print_table(_book_table(book, table_of_orders, rows, [label for label, _ in options], end,
                                "the orders, " + ("each product's filled in turn" if releases[0] == "line" else
                                                  "each released in turn") + f", {replications} replications each"))
    out_console.print(_whatif_legend(book, duration, powered), highlight=False)
    out_console.print(f"{len(options) * replications} simulations in {runs.wall:.1f} s on {runs.where}",
                      highlight=False)
    if out is not None:
        table.to_csv(out, index=False)
        pd.DataFrame(parts).to_csv(out.with_name(out.stem + "-replications.csv"), index_label="replication")
        if book:  # each order under each alternative (one order's figures are in the table too), and its chart
            table_of_orders.to_csv(out.with_name(out.stem + "-orders.csv"), index=False)
            order_chart(table_of_orders, [f"{k}: {o.name()}" for k, o in enumerate(book, 1)], end,
                        out.with_name(out.stem + "-orders.png"))
        out_console.print(f"wrote {out}", highlight=False)
