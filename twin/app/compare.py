"""Maintenance policies compared on the same line with common random numbers, and policy tuning.

Every (policy, replication) pair is one simulation; replication r uses the same seed under every
policy, and each machine draws failures, repairs and cycle times from its own streams, so the k-th
life of a fault mode is the same draw under every policy (common random numbers): differences between
policies are paired per replication, which gives far narrower confidence intervals than independent
runs. Pairs are independent tasks: on local worker processes or a Dask cluster (`twin.app.cluster`), with
the same results whatever runs them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin.app.cluster import tasks
from twin.kpi import LOSS, LOSSES, half_width, mean_ci_text, replication_kpis, state_durations
from twin.maintenance import SCENARIO_POLICIES, Oracle
from twin.model import DOWN, MAINTENANCE, OFF_SHIFT, Line
from twin.scenario import Scenario, with_policy

POLICIES = (*SCENARIO_POLICIES, "predictive", "oracle")  # and those made here (a forecaster; perfect foresight)
#: the policy KPIs of a comparison, in report order (line scope)
KPIS = ("throughput [parts/h]", "oee", "oee availability", "oee performance", "oee quality", "wip [parts]",
        "lead time [min]", "energy per good part [kWh]", "unplanned failures", "wear-out failures", "downtime [h]",
        "waiting for spare parts [h]", "maintenance actions", "wear at maintenance", "maintenance cost", "energy cost",
        "spare parts holding cost", "lost production cost", "total cost")
#: only for a line whose machine types give their power
ENERGY_KPIS = ("energy per good part [kWh]", "energy cost")
#: a year [s], the time spare parts' holding costs are given for
YEAR = 365 * 86400.0
#: only for a line that keeps spare parts: the repairs' hours waiting for one (part of the downtime), and the cost of
#: the parts on hand (costs.spare_holding a part and year, times the mean stock)
SPARE_KPIS = ("waiting for spare parts [h]", "spare parts holding cost")
#: a design comparison's: lost production is counted against each alternative's own design rate (its constraint's),
#: so an alternative that makes the line faster could show more of it; it does not compare across designs
DESIGN_KPIS = tuple(k for k in KPIS if k not in ("lost production cost", "total cost"))
#: said beside a design comparison's table: alternatives that keep the line's design rate, or not
SAME_RATE_NOTE = ("every alternative keeps the line's constraint station at its design rate in the same planned time, "
                  "so OEE, lost production and total cost compare")
DESIGN_NOTE = ("OEE and its factors are each alternative's own constraint station's (relieving the constraint moves "
               "it); lost production and total cost are left out: they count against each alternative's own design "
               "rate (in kpis.csv)")
LOWER_IS_BETTER = {"wip [parts]", "lead time [min]", *ENERGY_KPIS, *SPARE_KPIS, "unplanned failures",
                   "wear-out failures", "downtime [h]", "maintenance actions", "maintenance cost",
                   "lost production cost", "total cost"}


@dataclass(frozen=True)
class PolicyParams:
    """Settings of the policies being compared (None: the scenario file's own, where it has them)."""

    every: float | None = None  # preventive: operating time between services
    threshold: float | None = None  # condition-based: filtered sensor reading (in its unit) that orders maintenance
    wear_limit: float | None = None  # inspection, perfect-monitoring: wear level (0-1) that orders maintenance
    inspect_every: float | None = None  # inspection: operating time between inspections
    models: str | None = None  # predictive: model folder from `twin train`
    on: float = 0.5  # predictive: alert probability that orders maintenance
    defer: str = "none"  # predictive: "buffer" waits (within the forecast) until the next buffer can cover the stop
    lead: float = 600.0  # oracle: running time before the true failure at which it maintains
    force: bool = False  # every / threshold / wear_limit replace the file's own (a sweep), not only fill in

    def fills(self) -> dict[str, float | None]:
        """The scenario's maintenance parameters these settings fill in (`with_policy`'s defaults)."""
        return {"every": self.every, "threshold": self.threshold, "wear_limit": self.wear_limit,
                "inspect_every": self.inspect_every}


def policy_kpis(line: Line) -> dict[str, float]:
    """KPIs a maintenance policy is judged by, for one finished replication (after the warm-up)."""
    sc = line.scenario
    a, b = sc.warmup, min(line.env.now, sc.duration)
    base = replication_kpis(line)
    lk = base[base.scope == "line"].set_index("kpi")["value"]
    wear = {f.name for mt in sc.machine_types.values() for f in mt.fault_modes if f.kind == "wear"}
    failures = [e for e in line.events if e.kind == "failure" and a <= e.t <= b]
    maint = [e for e in line.events if e.kind == "maintenance_start" and a <= e.t <= b]
    down = sum(float(d[DOWN] + d[MAINTENANCE]) for d in (state_durations(m, a, b) for m in line.machines))
    worn = _wear_at_maintenance(line, [e for e in maint])
    c = sc.costs
    called = sum(1 for e in line.events if e.kind == "crew_called" and a <= e.t <= b)
    maintenance_cost = (c.maintenance * len(maint) + c.call_out * called
                        + sum(c.repair_by_mode.get(e.fault_mode, c.repair) for e in failures))
    good = lk["throughput [parts/h]"] * (b - a) / 3600
    oee = lk["oee"]
    if oee > 0:
        lost = c.part_margin * good * (1 / oee - 1)  # the good parts an OEE of 100 % would have added
    else:  # nothing good made (it was NaN, and so was the total cost): all the constraint could make in its shifts
        st = sc.stations[line.constraint]
        planned = sum(b - a - float(state_durations(m, a, b)[OFF_SHIFT]) for m in line.machines
                      if m.station_idx == line.constraint)
        lost = c.part_margin * planned / st.ideal_cycle()[0]
    energy = {"energy per good part [kWh]": float(lk["energy per good part [kWh]"]),
              "energy cost": c.energy * float(lk["energy [kWh]"])} if "energy [kWh]" in lk else {}
    held = {name: stock.figures(a, b) for name, stock in line.spares.items()}
    spares = {SPARE_KPIS[0]: sum(f["wait for part [h]"] * f["repairs"] for f in held.values()),
              SPARE_KPIS[1]: sum(c.spare_holding.get(name, 0.0) * f["mean stock"] * (b - a) / YEAR
                                 for name, f in held.items())} if line.spares else {}
    losses = {k: float(v) for k, v in lk.items() if str(k).startswith(LOSS)}  # where the planned time went
    return {**{k: float(lk[k]) for k in KPIS[:7]}, **energy, **losses, "unplanned failures": float(len(failures)),
            "wear-out failures": float(sum(e.fault_mode in wear for e in failures)), "downtime [h]": down / 3600,
            **spares,
            "maintenance actions": float(len(maint)), "wear at maintenance": worn, "maintenance cost": maintenance_cost,
            "lost production cost": lost,
            "total cost": maintenance_cost + energy.get("energy cost", 0.0) + spares.get(SPARE_KPIS[1], 0.0) + lost}


def _wear_at_maintenance(line: Line, starts: list[Any]) -> float:
    """Mean of the highest true wear when maintenance started (1 = the life used to the end; lower = useful life
    thrown away). NaN when nothing was maintained."""
    from twin.truth import TruthReader

    values = []
    for m in line.machines:
        ts = np.array(sorted(e.t for e in starts if e.machine == m.name))
        if len(ts) and m.wear_modes:
            _, _, wear = TruthReader(m).at(ts)
            values += wear[m.wear_modes].max(axis=0).tolist()
    return float(np.mean(values)) if values else float("nan")


_BUNDLES: dict[str, Any] = {}


def _bundle(models: str) -> Any:
    if models not in _BUNDLES:
        from predictors.base import load_bundle

        _BUNDLES[models] = load_bundle(Path(models))
    return _BUNDLES[models]


def run_policy(scenario: Scenario, policy: str, replication: int, params: PolicyParams) -> dict[str, float]:
    """One replication of the line under one policy; its policy KPIs."""
    from twin.app.runner import simulate

    if policy in SCENARIO_POLICIES:
        sc = with_policy(scenario, policy, params.force, **params.fills())
        return policy_kpis(simulate(sc, replication, sensors=False).line)
    if policy == "oracle":
        return policy_kpis(simulate(scenario, replication, sensors=False,
                                    policy=lambda m: Oracle(params.lead)).line)
    if policy == "predictive":
        from predictors.alerts import AlertRule
        from predictors.policy import SimulatedForecasts

        if params.models is None:
            raise ValueError("the predictive policy needs models (--models, from `twin train`)")
        import torch  # only this policy forecasts: the others never load torch (1.7 s of start-up per worker)

        torch.set_num_threads(1)  # one simulation per core
        ctl = SimulatedForecasts(_bundle(params.models), AlertRule(on=params.on, off=min(AlertRule.off, params.on / 2)),
                                 params.defer)
        line = simulate(scenario, replication, on_readings=ctl.on_readings, policy=ctl.policy_for, chunk=300.0).line
        return {**policy_kpis(line), "forecasts": float(ctl.forecasts)}
    raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")


def policy_task(sc_json: str, policy: str, rep: int, params: PolicyParams) -> tuple[str, int, dict[str, float]]:
    """One (policy, replication) simulation as a task for any worker: everything it needs travels with it."""
    return policy, rep, run_policy(Scenario.model_validate_json(sc_json), policy, rep, params)


def design_task(sc_json: str, slots: list[str] | None, label: str, rep: int) -> tuple[str, int, dict[str, float]]:
    """One (alternative, replication) simulation of a design comparison as a task for any worker: the alternative's
    scenario and the order its machines draw in (a machine added keeps the others' random numbers)."""
    from twin.app.runner import replication_of

    return label, rep, policy_kpis(replication_of(sc_json, rep, slots).line)


def whatif_task(sc_json: str, slots: list[str] | None, label: str, rep: int,
                orders: tuple[tuple[int, str | None], ...] = ()) -> tuple[str, int, dict[str, float]]:
    """One (alternative, replication) of a what-if from the line's state now, as `design_task` runs it: its good
    parts, its machines' mean availability (nan: off shift throughout) and its energy (nan: no power given); with
    `orders` (good parts, product or None for any), `order K done [h]`: the hours until order K's last part left the
    line (nan: not within the run), each product's orders filled in the order given; a line released to its
    `orders` counts each order's own parts, numbered as the scenario lists them."""
    from twin.app.runner import replication_of

    run = replication_of(sc_json, rep, slots)
    sc, k = run.line.scenario, run.kpis
    line = k[k.scope == "line"].set_index("kpi").value
    machines = k[(k.scope == "machine") & (k.kpi == "availability")].value
    figures = {"good parts": float(line["throughput [parts/h]"]) * (sc.duration - sc.warmup) / 3600,
               "availability": float(machines.mean()) if len(machines) else float("nan"),
               "energy [kWh]": float(line.get("energy [kWh]", float("nan")))}
    if sc.orders:  # released to its orders: the run's own KPIs of them (`kpi._order_kpis`; a what-if has no warm-up)
        done = k[(k.scope == "order") & (k.kpi == "done [h]")].value.to_numpy()  # in the scenario's order
        figures |= {f"order {i} done [h]": float(h) for i, h in enumerate(done, 1)}
    elif orders:
        exit_ = np.frombuffer(run.line.exit, dtype=np.float64)
        out = run.line.good_out() & (exit_ >= sc.warmup)
        made = np.frombuffer(run.line.product, dtype=np.int8)
        good = {p: np.sort(exit_[out if p is None else out & (made == run.line.product_names.index(p))])
                for p in {p for _, p in orders}}
        upto: dict[str | None, int] = {}  # each product's good parts its orders so far ask for: they go first
        for i, (count, product) in enumerate(orders, 1):
            upto[product] = n = upto.get(product, 0) + count
            got = good[product]
            figures[f"order {i} done [h]"] = float(got[n - 1] - sc.warmup) / 3600 if len(got) >= n else float("nan")
    return label, rep, figures


def order_figures(hours: np.ndarray, start: dt.datetime, due: float | None = None) -> dict[str, Any]:
    """An order's figures over the replications: the share that made it within the run with its 95 % (Clopper-Pearson)
    interval, when the median run and 9 runs in 10 had (the line's clock; None: after the run's end), and with a
    `due` time (hours from the start) the share that made it by then, with its interval."""
    made = ~np.isnan(hours)
    late = np.where(made, hours, np.inf)

    def by(q: float) -> str | None:
        h = float(np.quantile(late, q, method="inverted_cdf"))  # the first time by which that share of runs had
        return None if np.isinf(h) else (start + dt.timedelta(hours=h)).isoformat(timespec="minutes")

    return {**runs_share(made, "order made"), **(runs_share(late <= due, "order on time") if due is not None else {}),
            "order done median": by(0.5), "order done 90 %": by(0.9)}


def runs_share(hit: np.ndarray, name: str) -> dict[str, float]:
    """The share of replications where `hit`, as `name`, with its 95 % Clopper-Pearson interval (`name` low, high)."""
    from scipy.stats import binomtest

    low, high = binomtest(int(hit.sum()), len(hit)).proportion_ci(0.95, method="exact")
    return {name: float(hit.mean()), f"{name} low": float(low), f"{name} high": float(high)}


def share_text(row: Mapping[str, Any], name: str) -> str:
    """A share of runs with its interval (`runs_share`'s `name`, low, high in `row`) as a table shows it: '45%
    (29%–62%)'."""
    return f"{row[name]:.0%} ({row[f'{name} low']:.0%}–{row[f'{name} high']:.0%})"


ALL_ORDERS = "all orders"  # a what-if's share of runs that made every order of its book, each by when it was due


def all_orders(hours: Sequence[np.ndarray], dues: Sequence[float | None]) -> dict[str, float]:
    """The share of replications in which every order was made, each by its due time (hours from the start; None:
    within the run), with its 95 % interval: the orders of one run hang together (a long stop delays them all), so
    this is not the product of their shares."""
    hit = np.logical_and.reduce([~np.isnan(h) if d is None else np.nan_to_num(h, nan=np.inf) <= d
                                 for h, d in zip(hours, dues)])
    return runs_share(np.asarray(hit, dtype=bool), ALL_ORDERS)


def order_cells(row: Mapping[str, Any], end: dt.datetime | None = None) -> list[str]:
    """An order's cells of a what-if table (`order_figures`): the share made with its CI, with a due time the share
    on time with its CI, and when (not within the run: after its `end`, where known)."""
    def when(text: Any) -> str:
        if isinstance(text, str):
            return f"{dt.datetime.fromisoformat(text):%a %H:%M}"
        return f"after {end:%a %H:%M}" if end is not None else "not within the run"

    timely = row.get("order on time")
    return [share_text(row, "order made"),
            *([share_text(row, "order on time")] if timely is not None and timely == timely else []),
            f"{when(row['order done median'])} · {when(row['order done 90 %'])}"]


@dataclass
class Comparison:
    """Per-replication KPIs of every policy, their summaries and the paired differences to a reference."""

    scenario: Scenario
    kpis: pd.DataFrame  # policy, replication, kpi, value
    reference: str
    wall: float = 0.0
    jobs: int = 1
    where: str = "this process"
    notes: list[str] = field(default_factory=list)
    design: bool = False  # alternatives of the line (twin.app.alternatives) in the `policy` column, not policies
    same_rate: bool = False  # alternatives that all keep the line's constraint, design rate and planned time

    @property
    def rows(self) -> tuple[str, ...]:
        """The KPIs its tables show: a design comparison's lost production and total cost only where every
        alternative keeps the design rate they are counted against (a spare part's stock, a crew, a buffer)."""
        return DESIGN_KPIS if self.design and not self.same_rate else KPIS

    @property
    def note(self) -> str | None:
        """What its tables need said beside them (a design comparison's OEE and costs), if anything."""
        return DESIGN_NOTE if self.design and not self.same_rate else SAME_RATE_NOTE if self.design else None

    def summary(self) -> pd.DataFrame:
        """Mean and 95 % CI of each KPI per policy."""
        rows = []
        for (policy, kpi), g in self.kpis.groupby(["policy", "kpi"], sort=False):
            rows.append((policy, kpi, *_ci(g.value.to_numpy())))
        return pd.DataFrame(rows, columns=["policy", "kpi", "mean", "ci_low", "ci_high", "n"])

    def differences(self) -> pd.DataFrame:
        """Paired (same replication) difference of each policy to the reference, with 95 % CI and significance."""
        rows = [(policy, kpi, *self.paired(policy, self.reference, kpi))
                for policy in dict.fromkeys(self.kpis.policy) if policy != self.reference
                for kpi in dict.fromkeys(self.kpis.kpi)]
        return pd.DataFrame(rows, columns=["policy", "kpi", "diff", "ci_low", "ci_high", "n", "significant"])

    def paired(self, policy: str, other: str, kpi: str) -> tuple[float, float, float, int, bool]:
        """Mean of (policy − other) over replications where both have the KPI, its 95 % CI, and significance."""
        k = self.kpis[self.kpis.kpi == kpi].pivot_table(index="replication", columns="policy", values="value")
        if policy not in k or other not in k:
            return np.nan, np.nan, np.nan, 0, False
        mean, lo, hi, n = _ci((k[policy] - k[other]).dropna().to_numpy())
        return mean, lo, hi, n, bool(n > 1 and (lo > 0 or hi < 0))


def _ci(x: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, int]:
    n = len(x)
    if n == 0:
        return np.nan, np.nan, np.nan, 0
    mean = float(np.mean(x))
    if n < 2:
        return mean, np.nan, np.nan, n
    half = half_width(x, confidence)
    return mean, mean - half, mean + half, n


def compare(scenario: Scenario, policies: Sequence[str], params: PolicyParams, *, jobs: int | None = None,
            cluster: str | None = None, progress: Callable[[int, int], None] | None = None) -> Comparison:
    """Run every policy for the scenario's replications (common random numbers) as tasks on `jobs` local
    processes or the Dask cluster at `cluster`."""
    spec = scenario.model_dump_json(by_alias=True)
    args = [(spec, p, r, params) for r in range(scenario.replications) for p in policies]
    return _compared(scenario, policy_task, args, list(policies), jobs, cluster, progress)


def _compared(scenario: Scenario, task: Callable[..., tuple[str, int, dict[str, float]]], args: list[tuple[Any, ...]],
              labels: list[str], jobs: int | None, cluster: str | None,
              progress: Callable[[int, int], None] | None, design: bool = False, same_rate: bool = False
              ) -> Comparison:
    """The (label, replication) tasks run where `tasks` puts them, their KPIs in the labels' order, compared to the
    first label."""
    import time

    rows: list[tuple[str, int, str, float]] = []
    t0 = time.perf_counter()
    with tasks(cluster, jobs, len(args)) as run:
        for label, rep, k in run.map(task, args, progress):
            rows += [(label, rep, name, v) for name, v in k.items()]
    kpis = pd.DataFrame(rows, columns=["policy", "replication", "kpi", "value"])
    order = {label: i for i, label in enumerate(labels)}
    kpis = kpis.sort_values(["policy", "replication"], key=lambda s: s.map(order) if s.name == "policy" else s)
    return Comparison(scenario, kpis.reset_index(drop=True), labels[0], time.perf_counter() - t0, run.workers,
                      run.where, design=design, same_rate=same_rate)


def compare_designs(options: Sequence[tuple[str, Scenario]], *, jobs: int | None = None, cluster: str | None = None,
                    progress: Callable[[int, int], None] | None = None, task: Callable[..., Any] = design_task
                    ) -> Comparison:
    """Run the line as it is and each alternative (`twin.app.alternatives`) for the scenario's replications, from its
    start, under the file's own policies (common random numbers: replication r draws the same under every one), as
    tasks on `jobs` local processes or the Dask cluster at `cluster`; the first option is the reference. `task`:
    `whatif_task` for a what-if's figures instead of the long run's KPIs."""
    args = [(sc.model_dump_json(by_alias=True), sc._slots, label, r)
            for r in range(options[0][1].replications) for label, sc in options]
    return _compared(options[0][1], task, args, [label for label, _ in options], jobs, cluster, progress,
                     design=True, same_rate=all(same_design_rate(options[0][1], sc) for _, sc in options[1:]))


def same_design_rate(a: Scenario, b: Scenario) -> bool:
    """Whether two versions of a line have the same constraint station with the same machines, ideal cycles (per
    product) and visits per part, the same product mix and calendar: the rate their OEE and lost production count
    against, and the time they count in, are then the same."""
    c = a.constraint()
    if c != b.constraint() or a.calendar != b.calendar or a.product_mix() != b.product_mix():
        return False
    sa, sb = a.stations[c], b.stations[c]
    return (len(sa.machine_names) == len(sb.machine_names) and sa.ideal_cycle() == sb.ideal_cycle()
            and all(sa.ideal_cycle_of(p) == sb.ideal_cycle_of(p) for p in a.product_mix())
            and bool(np.allclose(a.visits(), b.visits())))


def write_report(cmp: Comparison, out: Path) -> Path:
    """report.md (KPIs per policy with CIs, differences to the reference) and policies.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    sc, summ, diff = cmp.scenario, cmp.summary(), cmp.differences()
    cmp.kpis.to_csv(out / "kpis.csv", index=False)
    summ.to_csv(out / "summary.csv", index=False)
    diff.to_csv(out / "differences.csv", index=False)
    policies = list(dict.fromkeys(cmp.kpis.policy))
    rows = cmp.rows
    table = summ[summ.kpi.isin(rows)].assign(v=lambda d: [mean_ci_text(m, lo, hi) for m, lo, hi in
                                                          zip(d["mean"], d.ci_low, d.ci_high)])
    wide = table.pivot(index="kpi", columns="policy", values="v").reindex([k for k in rows if k in set(table.kpi)])
    dwide = diff[diff.kpi.isin(rows)].assign(v=lambda d: [
        mean_ci_text(m, lo, hi) + (" *" if s else "") for m, lo, hi, s in zip(d["diff"], d.ci_low, d.ci_high,
                                                                            d.significant)])
    dwide = dwide.pivot(index="kpi", columns="policy", values="v").reindex(wide.index)
    what = "alternative" if cmp.design else "policy"
    lines = [f"# {'Alternatives of' if cmp.design else 'Maintenance policies on'} {sc.line.name}", "",
             f"{sc.replications} replications of {sc.duration / 3600:g} h (warm-up {sc.warmup / 3600:g} h) per "
             f"{what}, common random numbers; mean ± 95 % CI half-width. Costs in {sc.costs.currency}. "
             f"Wall time {cmp.wall:.1f} s on {cmp.where}.", *cmp.notes,
             *([cmp.note[0].upper() + cmp.note[1:] + "."] if cmp.note else []), "",
             wide[[p for p in policies if p in wide.columns]].to_markdown(), "",
             f"## Differences to {cmp.reference} (paired per replication; * = 95 % CI excludes 0)", "",
             dwide[[p for p in policies if p in dwide.columns]].to_markdown(), "", *_loss_section(summ, policies),
             "![policies](policies.png)", ""]
    shown = ["throughput [parts/h]", "oee", "wip [parts]", "total cost" if cmp.same_rate else "lead time [min]"] \
        if cmp.design else \
        ["oee", "unplanned failures", "downtime [h]", "total cost"]
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 3.6))
    for ax, kpi in zip(axes, shown):
        s = summ[summ.kpi == kpi].set_index("policy").reindex(policies)
        err = np.nan_to_num((s.ci_high - s.ci_low).to_numpy() / 2)
        ax.bar(range(len(policies)), s["mean"], yerr=err, capsize=4, color="tab:blue")
        ax.set_xticks(range(len(policies)), policies, rotation=30, ha="right")
        ax.set_title(kpi)
    fig.tight_layout()
    fig.savefig(out / "policies.png", dpi=90)
    plt.close(fig)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="backslashreplace")  # a name not UTF-8
    return path


def _loss_section(summ: pd.DataFrame, policies: list[str]) -> list[str]:
    """The report's table of where each policy's or alternative's planned time went (the OEE's losses at the line's
    constraint station, mean share over the replications; losses under 0.05 % in every column left out): which loss
    an alternative removes, and which grows in its place."""
    lost = summ[summ.kpi.str.startswith(LOSS)].pivot(index="kpi", columns="policy", values="mean")
    if lost.empty:
        return []
    lost = lost.reindex([LOSS + k for k in LOSSES])[[p for p in policies if p in lost.columns]]
    lost = lost[(lost >= 0.0005).any(axis=1)]
    oee = summ[summ.kpi == "oee"].set_index("policy")["mean"]
    shown = (100 * lost).round(1).rename(index=lambda k: k.removeprefix(LOSS))
    shown.loc["OEE (fully productive)"] = [round(100 * float(oee.get(p, np.nan)), 1) for p in shown.columns]
    return ["## Where the planned time went (OEE losses at the constraint station, % of planned time, mean)", "",
            shown.rename_axis("loss").to_markdown(), ""]


@dataclass
class Tuning:
    """One policy parameter swept: the comparison of each setting, the one with the best mean objective, and the
    settings it is not significantly better than (paired 95 % CI of the difference includes 0)."""

    parameter: str
    values: list[float]
    comparison: Comparison
    objective: str
    best: float
    ties: list[float] = field(default_factory=list)

    @property
    def clear(self) -> bool:
        """Whether the best setting is significantly better than every other one."""
        return not self.ties


def setting_labels(parameter: str, values: Sequence[float]) -> list[str]:
    """Each swept setting's name in the tables ('every=7200'); ValueError when two print alike: their replications
    would be pooled, and a setting compared with itself."""
    labels = [f"{parameter}={v:g}" for v in values]
    if twice := next((label for label in labels if labels.count(label) > 1), None):
        unit = " s" if parameter == "every" else ""  # '1 h,60 min' are one setting: 3600 s
        raise ValueError(f"--values: {twice.split('=', 1)[1]}{unit} is given twice; give each setting once (the "
                         "comparison pairs different settings)")
    return labels


def tune(scenario: Scenario, policy: str, parameter: str, values: Sequence[float], params: PolicyParams,
         objective: str = "total cost", jobs: int | None = None, cluster: str | None = None,
         progress: Callable[[int, int], None] | None = None) -> Tuning:
    """Sweep `every` (preventive), `threshold` (condition-based), `wear_limit` (inspection, perfect-monitoring) or
    `on` (predictive) with common random numbers."""
    import time

    labels = setting_labels(parameter, values)
    args = []
    spec = scenario.model_dump_json(by_alias=True)
    for v in values:
        p = PolicyParams(**{**params.__dict__, parameter: v, "force": True})
        args += [(spec, policy, r, p) for r in range(scenario.replications)]
    rows = []
    t0 = time.perf_counter()
    with tasks(cluster, jobs, len(args)) as run:
        for i, (_, rep, k) in enumerate(run.map(policy_task, args, progress)):  # in task order
            rows += [(labels[i // scenario.replications], rep, name, val) for name, val in k.items()]
    kpis = pd.DataFrame(rows, columns=["policy", "replication", "kpi", "value"])
    kpis = kpis.sort_values(["policy", "replication"], key=lambda s: s.map(labels.index) if s.name == "policy"
                            else s).reset_index(drop=True)
    cmp = Comparison(scenario, kpis, labels[0], time.perf_counter() - t0, run.workers, run.where)
    means = cmp.summary().query("kpi == @objective").set_index("policy")["mean"].reindex(labels)
    if means.isna().all():
        raise ValueError(f"--objective {objective!r} is undefined in every replication of every setting (e.g. "
                         "'wear at maintenance' when nothing was maintained); choose another objective or a longer "
                         "duration")
    pick = means.idxmin() if objective in LOWER_IS_BETTER else means.idxmax()
    ties = [v for v, label in zip(values, labels) if label != pick and not cmp.paired(label, pick, objective)[4]]
    return Tuning(parameter, list(values), cmp, objective, values[labels.index(pick)], ties)


@dataclass(frozen=True)
class Allocation:
    """`allocate_buffers`' result: each round's choice and the line it left, and the allocated scenario."""

    rounds: pd.DataFrame  # round, station, size, objective mean, its CI, gain over the round before and its CI
    scenario: Scenario  # the line with the places added
    stopped: str  # why it ended: every place given, or what no buffer gained from
    given: int  # places added
    simulations: int
    wall: float
    where: str


def growable(sc: Scenario) -> list[str]:
    """The stations whose buffer may grow: those of limited capacity (an unlimited one never blocks), not fed by a
    saturated source (those have none)."""
    fed = sc.source_fed()
    return [s.name for i, s in enumerate(sc.stations) if s.buffer is not None and i not in fed]


def allocate_buffers(sc: Scenario, places: int, step: int = 1, objective: str = "throughput [parts/h]",
                     stations: Sequence[str] | None = None, *, jobs: int | None = None, cluster: str | None = None,
                     progress: Callable[[int, int, int], None] | None = None) -> Allocation:
    """Where `places` more buffer places pay most: greedy marginal allocation, `step` places a round to the buffer
    whose objective gains most with them (common random numbers: every candidate of a round meets the same draws),
    until every place is given or no buffer's gain is significant (the places left would sit idle). `stations`: the
    buffers that may grow (default: `growable`). An assembly's buffers grow together, one per feeder: its places
    cost as many, and a gain counts per place. `progress(round, done, total)`."""
    import time

    from twin.app.alternatives import with_buffer

    better = -1.0 if objective in LOWER_IS_BETTER else 1.0
    current, rows, given, wall, where, runs = sc, [], 0, 0.0, "", 0
    names = list(stations) if stations else growable(sc)
    per_place = {st.name: len(st.assemble) if st.assemble else 1 for st in sc.stations}
    stopped = f"all {places} places given"
    while given < places:
        size = min(step, places - given)
        caps = {s.name: s.buffer for s in current.stations}
        fits = [n for n in names if size * per_place[n] <= places - given]
        if not fits:
            stopped = f"{given} of {places} places given: the rest are fewer than an assembly's feeders need"
            break
        grown = {n: with_buffer(current, f"{n}={caps[n] + size}") for n in fits}  # station: (label, its scenario)
        options = [("as is", current), *grown.values()]
        t0 = time.perf_counter()
        cmp = compare_designs(options, jobs=jobs, cluster=cluster, progress=None if progress is None else
                              (lambda done, total, r=len(rows) + 1: progress(r, done, total)))
        wall, where, runs = wall + time.perf_counter() - t0, cmp.where, runs + len(options) * sc.replications
        d = cmp.differences()
        cost = {label: size * per_place[n] for n, (label, _) in grown.items()}
        d = d[d.kpi == objective]
        d = d.assign(score=better * d["diff"] / d.policy.map(cost))
        best = d.loc[d.score.idxmax()] if len(d) and d.score.notna().any() else None
        if best is None or not (best.significant and best.score > 0):
            stopped = (f"{given} of {places} places given: no buffer's {objective} gained significantly from "
                       f"{size} more (the places left would not pay)")
            break
        station, (_, current) = next((n, g) for n, g in grown.items() if g[0] == best.policy)
        given += cost[best.policy]
        s = cmp.summary().set_index(["policy", "kpi"]).loc[(best.policy, objective)]
        rows.append({"round": len(rows) + 1, "station": station, "size": caps[station] + size,
                     "mean": s["mean"], "ci_low": s.ci_low, "ci_high": s.ci_high,
                     "gain": best["diff"], "gain_low": best.ci_low, "gain_high": best.ci_high})
    columns = ["round", "station", "size", "mean", "ci_low", "ci_high", "gain", "gain_low", "gain_high"]
    return Allocation(pd.DataFrame(rows, columns=columns), current, stopped, given, runs, wall, where)


THROUGHPUT = "throughput [parts/h]"
WORTH = "worth a year"  # a lever's throughput gained, over the 8,760 hours of a year (the throughput is per calendar
HOURS_A_YEAR = 8760.0  # hour, nights and weekends in), at the scenario's part margin
SENSITIVITY_NOTE = ("OEE counts against each version's own design rate: a shorter cycle at the constraint raises the "
                    "rate it is measured against, so its OEE may fall while the line makes more")


def sensitivity_kpis(objective: str) -> tuple[str, str]:
    """The objective a ranking is by, and the KPI shown beside it (OEE; throughput beside OEE)."""
    return objective, THROUGHPUT if objective == "oee" else "oee"


PAYBACK = "payback [months]"  # a project's cost over the worth a year its lever gains, in months


def payback(cost: float, worth: float, low: float, high: float) -> dict[str, float]:
    """Months until a project costing `cost` is paid by the worth a year its lever gains (mean, with the interval the
    worth's CI `low`, `high` gives: the shortest from its high end; inf where the worth is not above 0)."""
    def months(w: float) -> float:
        return 12.0 * cost / w if w > 0 else float("inf")

    return {PAYBACK: months(worth), f"{PAYBACK} low": months(high), f"{PAYBACK} high": months(low)}


def sensitivity_table(cmp: Comparison, levers: Sequence[tuple[str, str, str, Scenario]],
                      objective: str = THROUGHPUT, costs: Mapping[tuple[str, str], float] | None = None
                      ) -> pd.DataFrame:
    """Each lever's change over the line as is (`cmp.reference`): the paired difference of the objective and of the
    KPI beside it with their 95 % CIs and whether the CI excludes 0, ranked by the objective (the largest gain
    first: the largest fall for a KPI where lower is better); where parts have a margin its worth a year, and where
    `costs` gives a (station, lever)'s project cost, its payback. Differences are rounded to 12 decimals, so that
    summing's noise reads as the 0 it is."""
    rows = []
    margin = cmp.scenario.costs.part_margin
    for label, station, lever, _ in levers:
        row: dict[str, Any] = {"station": station, "lever": lever, "alternative": label,
                               "change": label.split(": ", 1)[1] if ": " in label else label}
        for kpi in sensitivity_kpis(objective):
            mean, lo, hi, _, sig = cmp.paired(label, cmp.reference, kpi)
            row |= {kpi: round(mean, 12), f"{kpi} low": round(lo, 12), f"{kpi} high": round(hi, 12),
                    f"{kpi} significant": sig}
        if margin > 0 and THROUGHPUT in row:  # the good parts an hour gained, over a year's hours, at their margin
            row |= {WORTH + end: row[THROUGHPUT + end] * HOURS_A_YEAR * margin for end in ("", " low", " high")}
            row[f"{WORTH} significant"] = row[f"{THROUGHPUT} significant"]
            cost = (costs or {}).get((station, lever))
            if cost is not None:
                row |= {"project cost": cost, **payback(cost, *(row[WORTH + end] for end in ("", " low", " high"))),
                        f"{PAYBACK} significant": row[f"{WORTH} significant"]}
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values(objective, ascending=objective in LOWER_IS_BETTER, kind="stable").reset_index(drop=True)



def sensitivity_shown(table: pd.DataFrame, objective: str) -> list[str]:
    """The KPIs a ranking shows: the objective, the one beside it, and a lever's worth a year where parts have a
    margin."""
    return [*sensitivity_kpis(objective), *([WORTH] if WORTH in table else []),
            *([PAYBACK] if PAYBACK in table else [])]


def sensitivity_cells(row: Mapping[str, Any], kpi: str) -> str:
    """A lever's change of `kpi` as a table shows it: mean ± CI half-width (OEE in points), * where significant; a
    payback as months (shortest–longest), '–' without a cost."""
    if kpi == PAYBACK:
        mean, lo, hi = (float(row.get(PAYBACK + end, float("nan"))) for end in ("", " low", " high"))
        if mean != mean:
            return "–"
        def months(x: float) -> str:
            return "never" if not np.isfinite(x) else f"{x:.0f}" if x >= 10 else f"{x:.1f}"

        if np.isinf(lo):
            return "no gain"
        return ("no gain" if np.isinf(mean) else months(mean)) + f" ({months(lo)}–{months(hi)})"
    k = 100.0 if kpi == "oee" else 1.0
    mean, lo, hi = (k * row[kpi], k * row[f"{kpi} low"], k * row[f"{kpi} high"])
    if kpi == WORTH and np.isfinite(hi - lo) and hi > lo:  # money to the half-width's two significant digits
        unit = 10.0 ** max(0, int(np.floor(np.log10((hi - lo) / 2))) - 1)
        mean, lo, hi = (round(x / unit) * unit for x in (mean, lo, hi))
    return mean_ci_text(mean, lo, hi) + (" *" if row[f"{kpi} significant"] else "")


def sensitivity_column(kpi: str, currency: str = "") -> str:
    """A KPI's column heading in the ranking: OEE in points, the worth in the scenario's currency."""
    return "OEE [points]" if kpi == "oee" else f"{WORTH} [{currency}]" if kpi == WORTH else kpi


def by_payback(table: pd.DataFrame) -> pd.DataFrame:
    """A ranking re-ranked by payback: the projects that pay back soonest first, those without a cost or a gain
    after them (in their order by the objective)."""
    months = table[PAYBACK] if PAYBACK in table else pd.Series(np.nan, index=table.index)
    key = months.where(np.isfinite(months.astype(float)), np.inf).fillna(np.inf)
    return table.assign(_key=key).sort_values("_key", kind="stable").drop(columns="_key").reset_index(drop=True)


def write_sensitivity(cmp: Comparison, table: pd.DataFrame, by: float, out: Path, objective: str = THROUGHPUT,
                      ranked: str | None = None) -> Path:
    """report.md (the levers ranked, with the line as is), sensitivity.csv, kpis.csv and levers.png (a tornado chart
    of each lever's change of the objective, with its 95 % CI); `ranked`: what the table's order is by, where not
    the objective (payback)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    sc = cmp.scenario
    cmp.kpis.to_csv(out / "kpis.csv", index=False)
    table.to_csv(out / "sensitivity.csv", index=False)
    base = cmp.summary().set_index(["policy", "kpi"])
    kpis = sensitivity_kpis(objective)
    records = table.to_dict("records")
    shown = pd.DataFrame({"station": table.station.to_numpy(), "made better": table.change.to_numpy(),
                          **{sensitivity_column(k, sc.costs.currency): [sensitivity_cells(r, k) for r in records]
                             for k in sensitivity_shown(table, objective)}},
                         index=pd.RangeIndex(1, len(table) + 1, name="rank"))

    def as_is(kpi: str) -> str:
        k = 100.0 if kpi == "oee" else 1.0
        return mean_ci_text(*(k * base.loc[(cmp.reference, kpi), c] for c in ("mean", "ci_low", "ci_high"))) + \
            (" %" if kpi == "oee" else "")

    lines = [f"# Where improving {sc.line.name} pays most", "",
             f"Each lever made {by:.0%} better on its own, at one station; {sc.replications} replications of "
             f"{sc.duration / 3600:g} h (warm-up {sc.warmup / 3600:g} h) each, common random numbers; ranked by "
             + (f"{ranked}" if ranked else
                f"{objective} ({'its fall first' if objective in LOWER_IS_BETTER else 'its gain first'})")
             + "; the change "
             f"from the line as is ({'; '.join(f'{k} {as_is(k)}' for k in kpis)}), paired per replication: mean ± 95 % "
             f"CI half-width; * the CI excludes 0. Wall time {cmp.wall:.1f} s on {cmp.where}.", "",
             SENSITIVITY_NOTE[0].upper() + SENSITIVITY_NOTE[1:] + ".", "", shown.to_markdown(), "",
             "![levers](levers.png)", ""]
    tp = objective
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(table) + 1.2))
    y = np.arange(len(table))[::-1]
    err = np.nan_to_num(np.vstack([table[tp] - table[f"{tp} low"], table[f"{tp} high"] - table[tp]]))
    ax.barh(y, table[tp], xerr=err, capsize=3, color=["tab:blue" if s else "tab:gray" for s in
                                                      table[f"{tp} significant"]])
    ax.set_yticks(y, table.alternative)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"{objective} changed, each lever {by:.0%} better (95 % CI; grey: not significant)")
    fig.tight_layout()
    fig.savefig(out / "levers.png", dpi=90)
    plt.close(fig)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="backslashreplace")
    return path


def order_chart(book: pd.DataFrame, names: Sequence[str], end: dt.datetime, path: Path) -> Path:
    """A what-if's orders as a chart (`-orders.png` beside its table): per order and alternative, from when the
    median run had made it to when 9 runs in 10 had (open at the run's `end` where fewer had), its due time marked and
    the share of runs on time beside it; `names` are the orders' labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    rows = book.to_dict("records")
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(rows) + 1.4))
    alternatives = list(dict.fromkeys(book.alternative))
    colours = {a: f"C{k % 10}" for k, a in enumerate(alternatives)}
    for y, r in enumerate(rows[::-1]):
        a, b = (dt.datetime.fromisoformat(t) if isinstance(t, str) else end  # after the run's end: at it
                for t in (r["order done median"], r["order done 90 %"]))
        ax.plot([a, b], [y, y], color=colours[r["alternative"]], linewidth=4, solid_capstyle="butt")
        ax.plot([a], [y], "o", color=colours[r["alternative"]])
        if not isinstance(r["order done 90 %"], str):  # fewer than 9 runs in 10 had made it by the run's end
            ax.plot([end], [y], ">", color=colours[r["alternative"]])
        if isinstance(r.get("due"), str):
            ax.plot([dt.datetime.fromisoformat(r["due"])], [y], "|", color="red", markersize=16, markeredgewidth=2)
        timely = r.get("order on time")
        share, what = (timely, "on time") if timely is not None and timely == timely else (r["order made"], "made")
        ax.annotate(f"{share:.0%} {what}", (b, y), xytext=(8, -4), textcoords="offset points", fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{names[r['order'] - 1]} · {r['alternative']}" for r in rows[::-1]],
                  fontsize=8)
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=8))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%a %H:%M"))
    ax.tick_params(axis="x", labelsize=8, labelrotation=30)
    ax.axvline(end, color="grey", linestyle=":", linewidth=1)
    ax.margins(x=0.15)  # room for the shares beside the bars
    ax.set_title("each order: made by the median run (dot) to 9 runs in 10 (bar's end; ▶ after the run's end, dotted);"
                 "\ndue (red); the share of runs on time (or made, without a due time)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
