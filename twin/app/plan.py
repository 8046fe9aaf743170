"""`twin plan`: pilot replications of a scenario that say how long its warm-up must be (MSER on Welch's average of
the line's output per period) and how many replications give its KPIs a confidence interval of the precision asked
(twin.experiment); run on local processes or a Dask cluster like every batch of simulations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from twin.app.cluster import tasks
from twin.experiment import BATCH, MIN_BATCHES, Truncation, mser, replications_needed
from twin.kpi import half_width, period_flow, plain
from twin.scenario import Scenario

#: the series whose transient sets the warm-up, as period_flow names them, and how the report calls them
TRANSIENT = {"parts": "throughput", "part-seconds": "WIP"}
KPIS = ("throughput [parts/h]", "wip [parts]", "lead time [min]")
DAY, WEEK = 86400.0, 7 * 86400.0
#: periods a line that runs around the clock is counted in: the longest that gives the run enough of them
ROUND_PERIODS = [*(s * 1.0 for s in (1, 2, 5, 10, 15, 20, 30)),
                 *(m * 60.0 for m in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)),
                 *(h * 3600.0 for h in (1, 2, 3, 4, 6, 8, 12)), DAY]


def default_period(sc: Scenario) -> float:
    """The period output is counted in: a line on a shift calendar repeats its pattern each day (each week, if some
    day works otherwise), so the period is that cycle; a line that runs around the clock, the longest round period
    (1 s to a day) that gives the run MIN_BATCHES batches of BATCH."""
    cal = sc.calendar
    if cal is None:
        most = sc.duration / (MIN_BATCHES * BATCH)
        return max([p for p in ROUND_PERIODS if p <= most], default=most)
    return DAY if len(cal.days) == 7 and not cal.by_day else WEEK


def batch_for(sc: Scenario, period: float) -> int:
    """Periods per batch mean: 5 (MSER-5), or 1 where a period is the shift calendar's whole cycle (a day or a week
    of output is a mean of much already, and MIN_BATCHES × 5 weeks of pilot would be needed otherwise)."""
    return 1 if sc.calendar is not None and period == default_period(sc) else BATCH


def periods_needed(sc: Scenario, period: float) -> int:
    """The fewest periods the warm-up analysis can judge: MIN_BATCHES batches."""
    return MIN_BATCHES * batch_for(sc, period)


def plan_task(sc_json: str, rep: int, period: float) -> tuple[int, dict[str, np.ndarray]]:
    """One pilot replication as a task for any worker: the line's flow per period from its start."""
    from twin.app.runner import simulate

    sc = Scenario.model_validate_json(sc_json)
    return rep, period_flow(simulate(sc, rep, sensors=False).line, period)


@dataclass
class Plan:
    """Pilot replications' flow per period, where their transient ends, and the replications each KPI needs."""

    scenario: Scenario  # the pilot: warm-up 0
    warmup: float  # the scenario's own warm-up, judged against the recommendation
    period: float
    precision: float
    flows: dict[str, np.ndarray]  # series -> replications × periods
    where: str = "this process"
    wall: float = 0.0

    @cached_property
    def cuts(self) -> dict[str, Truncation]:
        """Where each series' start-up ends (MSER on Welch's average)."""
        welch = self.welch()
        return {name: mser(welch[name].to_numpy(), batch_for(self.scenario, self.period)) for name in TRANSIENT}

    @property
    def periods(self) -> int:
        return self.flows["parts"].shape[1]

    @property
    def settled(self) -> bool:
        return all(c.settled for c in self.cuts.values())

    @property
    def recommended(self) -> float:
        """The warm-up: the later of the series' transients, in whole periods."""
        return max(c.periods for c in self.cuts.values()) * self.period

    def welch(self) -> pd.DataFrame:
        """Welch's average over replications, per period: throughput (parts/h) and WIP (parts)."""
        t = np.arange(self.periods) * self.period
        return pd.DataFrame({"start [h]": t / 3600,
                             "parts": self.flows["parts"].mean(axis=0) * 3600 / self.period,
                             "part-seconds": self.flows["part-seconds"].mean(axis=0) / self.period})

    def kpis(self, warmup: float | None = None) -> pd.DataFrame:
        """Each replication's throughput, WIP and lead time after `warmup` (default: the recommended one)."""
        d = round((self.recommended if warmup is None else warmup) / self.period)
        span = (self.periods - d) * self.period
        parts = self.flows["parts"][:, d:].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            lead = self.flows["lead seconds"][:, d:].sum(axis=1) / parts / 60
        wip = self.flows["part-seconds"][:, d:].sum(axis=1) / span
        return pd.DataFrame({KPIS[0]: parts / span * 3600, KPIS[1]: wip, KPIS[2]: lead})

    @cached_property
    def table(self) -> pd.DataFrame:
        """Per KPI: mean and sd over the pilot, its interval's half-width now, and the replications for the
        precision asked (after the recommended warm-up)."""
        k = self.kpis()
        rows = []
        for name in KPIS:
            x = k[name].to_numpy()
            rows.append((name, float(np.nanmean(x)), float(np.nanstd(x, ddof=1)), half_width(x),
                         replications_needed(x, self.precision)))
        return pd.DataFrame(rows, columns=["kpi", "mean", "sd", "half-width", "replications needed"])

    @property
    def replications(self) -> float:
        """The most any KPI needs (nan when none can be said)."""
        needed = self.table["replications needed"].to_numpy()
        return np.nan if np.isnan(needed).all() else float(np.nanmax(needed))


def plan(scenario: Scenario, period: float, precision: float, *, jobs: int | None = None, cluster: str | None = None,
         progress: Callable[[int, int], None] | None = None) -> Plan:
    """The scenario's replications from its start with no warm-up, as tasks on `jobs` local processes or the Dask
    cluster at `cluster`; the Plan of their flow per `period`."""
    import time

    pilot = scenario.model_copy(update={"warmup": 0.0})
    spec = pilot.model_dump_json(by_alias=True)
    t0 = time.perf_counter()
    rows: dict[str, list[np.ndarray]] = {}
    with tasks(cluster, jobs, pilot.replications) as run:
        for _, flow in run.map(plan_task, [(spec, r, period) for r in range(pilot.replications)], progress):
            for name, values in flow.items():
                rows.setdefault(name, []).append(values)
        where = run.where
    return Plan(pilot, scenario.warmup, period, precision, {k: np.vstack(v) for k, v in rows.items()}, where,
                time.perf_counter() - t0)


def duration_text(seconds: float) -> str:
    """A time as the CLI takes it, in its largest whole unit where one fits ('5 h', '90 min', '2 d')."""
    for unit, size in (("d", DAY), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size and abs(seconds / size - round(seconds / size)) < 1e-9:
            return f"{round(seconds / size)} {unit}"
    return f"{seconds:g} s" if seconds < 60 or seconds % 60 else f"{seconds / 60:g} min"


def write_report(p: Plan, out: Path) -> Path:
    """report.md (the warm-up and the replications, with what they rest on), welch.csv and welch.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    welch = p.welch().rename(columns={"parts": "throughput [parts/h]", "part-seconds": "wip [parts]"})
    welch.to_csv(out / "welch.csv", index=False)
    table = p.table
    table.to_csv(out / "replications.csv", index=False)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, (name, label) in zip(axes, (("throughput [parts/h]", "throughput"), ("wip [parts]", "WIP"))):
        ax.plot(welch["start [h]"], welch[name], lw=1, color="tab:blue", label=f"mean of {p.scenario.replications}")
        ax.axvline(p.recommended / 3600, color="tab:red", ls="--", label="end of warm-up (MSER)")
        if p.warmup:
            ax.axvline(p.warmup / 3600, color="tab:gray", ls=":", label="the scenario's warm-up")
        ax.set_xlabel("time from the start [h]")
        ax.set_title(f"{label} per {duration_text(p.period)}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "welch.png", dpi=90)
    plt.close(fig)
    shown = table.assign(**{c: table[c].map(plain) for c in ("mean", "sd", "half-width")},
                         **{"replications needed": table["replications needed"].map(replications_text)})
    lines = [f"# Warm-up and replications for {p.scenario.line.name}", "",
             f"{p.scenario.replications} pilot replications of {duration_text(p.scenario.duration)} from the line's "
             f"start, no warm-up; output per {duration_text(p.period)} ({p.periods} periods). Wall time {p.wall:.1f} s "
             f"on {p.where}.", "", "## Warm-up", "", *verdict(p), "",
             "| series | end of the transient | settled |", "|---|---|---|",
             *(f"| {TRANSIENT[k]} | {duration_text(c.periods * p.period) if c.periods else '0'} | "
               f"{'yes' if c.settled else 'no: not within the first half of the run'} |"
               for k, c in p.cuts.items()), "",
             "![Welch's average](welch.png)", "",
             f"## Replications for ± {p.precision:.0%} (95 % CI), after a warm-up of {duration_text(p.recommended)}",
             "", shown.to_markdown(index=False), "",
             "Means and standard deviations over the pilot replications, after the recommended warm-up. Figures only "
             "for these KPIs: others (OEE, failures, costs) may need more replications, especially rare events. "
             "Runs short against the line's failures and repairs vary much from one to the next; longer runs "
             "(--duration) average more of them each, and need fewer.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8", errors="backslashreplace")
    return path


def replications_text(n: float) -> str:
    """How many replications, or why none can be said."""
    if np.isnan(n):
        return "- (a mean of 0)"
    return "more than 100,000" if np.isinf(n) else f"{n:.0f}"


def verdict(p: Plan) -> list[str]:
    """What the warm-up analysis says, in sentences, for the console and the report."""
    rec = duration_text(p.recommended) if p.recommended else "none"
    out = [f"Recommended warm-up: {rec} (MSER on the mean of the replications' throughput and WIP per "
           f"{duration_text(p.period)})."]
    if p.scenario.calendar is not None and p.period < default_period(p.scenario):
        out.append(f"A period of {duration_text(p.period)} is shorter than the shift calendar's cycle "
                   f"({duration_text(default_period(p.scenario))}): shifts, nights and weekends vary the output per "
                   "period as much as a start-up does, so the warm-up found may be one of them.")
    if not p.settled:
        late = [TRANSIENT[k] for k, c in p.cuts.items() if not c.settled]
        out.append(f"MSER found no end of the {' and '.join(late)}'s transient within the first half of the run: "
                   "the line may still be drifting (WIP growing: a station slower than the arrivals), or its output "
                   "varies slowly (failures, repairs or wear cycles long against a period), so that the first half "
                   f"cannot be told from the second in {p.scenario.replications} × "
                   f"{duration_text(p.scenario.duration)}. Look at welch.png; run longer (--duration) or more "
                   "replications before trusting long-run KPIs.")
    if p.warmup < p.recommended and p.recommended == p.period * batch_for(p.scenario, p.period):
        out.append(f"The transient ends within the first {duration_text(p.recommended)}, the analysis' finest step; "
                   f"whether the scenario's warm-up ({duration_text(p.warmup) if p.warmup else '0'}) covers it, a "
                   "shorter --period tells.")
    elif p.warmup < p.recommended:
        out.append(f"The scenario's warm-up ({duration_text(p.warmup) if p.warmup else '0'}) is shorter: its KPIs "
                   "include part of the start-up.")
    else:
        out.append(f"The scenario's warm-up ({duration_text(p.warmup)}) covers it.")
    return out
