"""`twin compare` and `twin tune`: maintenance policies (or alternatives of a line) compared over common random
numbers; `twin plan`: the warm-up and replications such comparisons need."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.markup import escape
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
    StockAlt,
    TransferAlt,
    VariantAlt,
)
from twin.app.cmd_models import models_for
from twin.app.options import (
    ClusterOpt,
    ForceOpt,
    Jobs,
    err_console,
    fail,
    needs_unit,
    open_scenario,
    out_console,
    print_table,
    repeated,
    report_folder,
    simulated,
    time_option,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from twin.app.compare import Comparison, PolicyParams
    from twin.scenario import Scenario


# the long-run options every batch command here takes (their help is the scenario's: its duration, warm-up, seed)
DurationOpt = Annotated[Optional[str], typer.Option(help="simulated time per replication, e.g. '14 d' (default: the "
                                                         "scenario's)")]
WarmupOpt = Annotated[Optional[str], typer.Option(help="time discarded from the KPIs, e.g. '1 d' (default: the "
                                                       "scenario's)")]
SeedOpt = Annotated[Optional[int], typer.Option(min=0, max=MAX_SEED, help="override the scenario's seed")]


def _policy_params(every: Optional[str], threshold: Optional[float], models: Optional[Path],
                   on: float, wear_limit: Optional[float] = None, inspect_every: Optional[str] = None) -> PolicyParams:
    from twin.app.compare import PolicyParams

    if wear_limit is not None and not 0 < wear_limit < 1:
        fail(f"--wear-limit {wear_limit}: a wear level between 0 and 1, e.g. 0.7")
    if threshold is not None and not math.isfinite(threshold):
        fail(f"--threshold {threshold}: give a finite number, the filtered reading (in the sensor's unit) that orders "
             "maintenance")
    if not 0 < on < 1:
        fail(f"--on {on}: a probability between 0 and 1, e.g. 0.5")
    return PolicyParams(every=time_option(every, "--every"), threshold=threshold, wear_limit=wear_limit,
                        inspect_every=time_option(inspect_every, "--inspect-every"),
                        models=str(models) if models else None, on=on)


def _scenario_for_compare(file: Path, duration: Optional[str], replications: Optional[int], seed: Optional[int],
                          warmup: Optional[str]) -> Scenario:

    return open_scenario(file, duration=time_option(duration, "--duration"), replications=replications, seed=seed,
                         warmup=time_option(warmup, "--warmup", allow_zero=True))


# the options each policy reads (the scenario's parameter it fills in, if any)
FOR_POLICY = {"--every": (("preventive",), "every"), "--threshold": (("condition-based",), "threshold"),
              "--wear-limit": (("inspection", "perfect-monitoring"), "wear_limit"),
              "--inspect-every": (("inspection",), "inspect_every"), "--models": (("predictive",), None),
              "--on": (("predictive",), None), "--defer": (("predictive",), None)}


def _unused_options(policies: list[str], given: dict[str, bool], sc: Scenario) -> None:
    """Refuse an option no chosen policy reads, or one that fills in a parameter every machine type gives itself:
    either would change nothing, without a word."""
    for option, (readers, field) in FOR_POLICY.items():
        if not given.get(option):
            continue
        if not set(readers) & set(policies):
            chosen = "which --policies does not include" if len(policies) > 1 else f"not {policies[0]}"
            fail(f"{option} is for {' and '.join(readers)}, {chosen}; leave it out or choose that policy")
        if field is not None and all(getattr(mt.maintenance, field) is not None for mt in sc.machine_types.values()):
            values = {name: getattr(mt.maintenance, field) for name, mt in sc.machine_types.items()}
            own = ", ".join(f"{name}: {v / 3600:g} h" if field.endswith("every") else f"{name}: {v:g}"
                            for name, v in values.items())
            fail(f"{option} fills in where the file gives none, and every machine type here gives its own ({own}); "
                 "change the file, or sweep it with `twin tune`")


# what `twin compare` runs when --policies is not given: those of these the file (and the options) can run
DEFAULT_POLICIES = ("run-to-failure", "preventive", "condition-based", "inspection", "predictive")


# what each scenario policy needs under a machine type's maintenance (or the option that fills it in)
NEEDS = {"preventive": "no every or every_parts; --every fills it in", "condition-based": "no sensor and threshold",
         "inspection": "no inspect_every and wear_limit; --inspect-every and --wear-limit fill them in"}


def _default_policies(params: PolicyParams, sc: Scenario) -> tuple[list[str], str]:
    """The default policies this line can run as its file and the options give them, each left out said with what
    it needs; the oracle bound beside run-to-failure where no other can run, so that a comparison is still made."""
    from twin.scenario import ScenarioError, with_policy

    chosen, left = [], []
    for p in DEFAULT_POLICIES:
        if p == "predictive":
            if params.models is None:
                left.append("predictive (needs --models, a folder from `twin train`)")
                continue
        elif p != "run-to-failure":
            try:
                with_policy(sc, p, **params.fills())
            except ScenarioError as e:
                who = re.search(r"machine type '(.*?)'", str(e))
                left.append(f"{p} ({who.group(1) if who else 'a machine type'} has {NEEDS[p]})")
                continue
        chosen.append(p)
    if len(chosen) < 2:
        if not any(f.kind == "wear" for mt in sc.machine_types.values() for f in mt.fault_modes):
            fail("nothing to compare: every fault mode of this line is sudden (no wear), and maintenance renews only "
                 "wear, so no policy could prevent a failure here (and the oracle bound equals run-to-failure); give "
                 "the machine types wear modes (fault_modes with kind: wear) to compare maintenance policies")
        chosen.append("oracle")
    note = f"policies left out: {'; '.join(left)}; name them with --policies once the machine types' maintenance " \
        "gives what they need" if left else ""
    if note:
        err_console.print(note, markup=False, highlight=False, soft_wrap=True)
    return chosen, note


def _check_policies(policies: list[str], params: PolicyParams, sc: Scenario) -> None:
    from twin.app.compare import POLICIES, SCENARIO_POLICIES
    from twin.scenario import ScenarioError, with_policy

    if (twice := repeated(policies)) is not None:
        fail(f"--policies: {twice!r} is given twice; compare each policy once")
    if params.models is not None:
        models_for(Path(params.models), sc)  # a clear error now rather than in a worker process
    for p in policies:
        if p not in POLICIES:
            fail(f"--policies: unknown policy {p!r}; choose from {', '.join(POLICIES)}")
        if p == "predictive" and params.models is None:
            fail("--policies predictive needs --models (a folder from `twin train` for this line)")
        if p in SCENARIO_POLICIES:
            try:
                with_policy(sc, p, **params.fills())
            except ScenarioError as e:
                fail(f"{e}{_fill_hint(p, ' for the comparison')}")


def _fill_hint(policy: str, purpose: str = "", leave: str | None = None, refusal: str | None = None) -> str:
    """' (or give --X and --Y…: they fill in where the file gives none)': the options that fill in `policy`'s
    parameters (FOR_POLICY), but `leave` (a parameter the command sets itself) and, with a `refusal`, those of
    parameters it does not name; '' when none is left."""
    options = [o for o, (readers, field) in FOR_POLICY.items() if policy in readers and field and field != leave
               and (refusal is None or re.search(rf"\b{field}\b", refusal))]
    if not options:
        return ""
    return (f" (or give {' and '.join(options)}{purpose}: {'they fill' if len(options) > 1 else 'it fills'} in where "
            "the file gives none)")


Every = Annotated[Optional[str], typer.Option(help="preventive: operating time between services where the file "
                                                   "gives none, e.g. '40 h'")]
Threshold = Annotated[Optional[float], typer.Option(
    help="condition-based: the filtered reading of the file's sensor (in its unit) that orders maintenance, where "
         "the file gives none")]
WearLimit = Annotated[Optional[float], typer.Option(
    help="inspection, perfect-monitoring: wear level (0-1) that orders maintenance, where the file gives none")]
InspectEvery = Annotated[Optional[str], typer.Option(
    help="inspection: operating time between inspections where the file gives none, e.g. '8 h'")]
ModelsOpt = Annotated[Optional[Path], typer.Option(help="predictive: model folder from `twin train`")]


def compare(
    file: Annotated[Path, typer.Argument(help="scenario file (YAML)")],
    policies: Annotated[Optional[str], typer.Option(
        help="comma-separated, the first is the reference: run-to-failure, preventive, condition-based (a measured "
             "sensor), inspection, perfect-monitoring (true wear: a bound), predictive, oracle (a bound) [default: "
             "run-to-failure and those of preventive, condition-based, inspection and predictive the file and options "
             "can run]")] = None,
    replications: Annotated[Optional[int], typer.Option(min=1, help="replications per policy (at least 2)")] = None,
    duration: DurationOpt = None, warmup: WarmupOpt = None, seed: SeedOpt = None,
    models: ModelsOpt = None, every: Every = None, threshold: Threshold = None, wear_limit: WearLimit = None,
    inspect_every: InspectEvery = None,
    on: Annotated[float, typer.Option(help="predictive: alert probability that orders maintenance")] = 0.5,
    defer: Annotated[str, typer.Option(help="predictive: none (serve orders at once) or buffer (wait, within the "
                                       "forecast, until the next buffer covers the stop)")] = "none",
    jobs: Jobs = None,
    cluster: ClusterOpt = None,
    extra_crew: ExtraCrew = None,
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
    out: Annotated[Optional[Path], typer.Option(help="report folder (default: a new "
                                                     "reports/compare-<scenario>-<time>)")] = None,
    force: ForceOpt = False,
) -> None:
    """Compare maintenance policies on one line, or alternatives of the line (a buffer, a machine, a shift...), over
    the long run (common random numbers): throughput, OEE, WIP, lead time, failures, downtime, cost, with CIs."""
    sc = _scenario_for_compare(file, duration, replications, seed, warmup)  # a bad file named before scipy loads
    design = (extra_crew or [], [], buffer or [], add_shift or [], machines or [], cycle_time or [], batch or [],
              transfer or [], service_off_shift, mix or [], stock or [], on_call or [])
    if any(design) or combined or variant:
        policy_given = [o for o, given in (
            ("--policies", policies is not None), ("--every", every is not None),
            ("--threshold", threshold is not None), ("--wear-limit", wear_limit is not None),
            ("--inspect-every", inspect_every is not None), ("--models", models is not None), ("--on", on != 0.5),
            ("--defer", defer != "none")) if given]
        if policy_given:
            fail(f"{policy_given[0]} is for comparing maintenance policies, and alternatives of the line (--buffer, "
                 "--machines, ...) are given too: compare one kind at a time (alternatives run under the file's own "
                 "policies; to try a policy, give it in the file)")
        _compare_designs(file, sc, design, jobs, cluster, out, force, combined, variant or [])
        return
    from twin.app.compare import KPIS, write_report
    from twin.app.compare import compare as run_compare

    if sc.replications < 2:
        fail("--replications: at least 2, so that differences get a confidence interval")
    if defer not in ("none", "buffer"):
        fail(f"--defer {defer!r}: choose none or buffer")
    params = dataclasses.replace(_policy_params(every, threshold, models, on, wear_limit, inspect_every), defer=defer)
    names, left = ([p.strip() for p in policies.split(",") if p.strip()], "") if policies is not None else \
        _default_policies(params, sc)
    _unused_options(names, {"--every": every is not None, "--threshold": threshold is not None,
                            "--wear-limit": wear_limit is not None, "--inspect-every": inspect_every is not None,
                            "--models": models is not None,
                            "--on": on != 0.5, "--defer": defer != "none"}, sc)
    _check_policies(names, params, sc)
    out = report_folder(out, f"compare-{file.stem}", force)  # once the options are good
    cmp = simulated(f"{len(names)} policies × {sc.replications} replications", len(names) * sc.replications,
                    lambda progress: run_compare(sc, names, params, jobs=jobs, cluster=cluster, progress=progress),
                    refused=ValueError)
    if left:  # the report says what the default comparison could not run, as the console did
        cmp.notes.append(left[0].upper() + left[1:] + ".")
    print_table(_kpi_table(cmp, KPIS, f"{sc.line.name}: policies over {sc.replications} replications of "
                                      f"{sc.duration / 3600:g} h (mean ± 95 % CI; * differs from {cmp.reference})"))
    _done(len(names) * sc.replications, cmp.wall, cmp.where, write_report(cmp, out))


def _done(simulations: int, wall: float, where: str, report: Path) -> None:
    """The closing line of a batch command: how many simulations, how long, where, and the report."""
    out_console.print(f"{simulations} simulations in {wall:.1f} s on {where}; report: [bold]{escape(str(report))}[/]",
                      markup=True, highlight=False)


def _kpi_table(cmp: Comparison, kpis: Sequence[str], title: str) -> Table:
    """A comparison's KPIs (rows; those it has: energy only with power) by policy or alternative (columns), each mean
    ± 95 % CI half-width, marked * where it differs significantly from the reference."""
    from twin.kpi import mean_ci_text

    summ, diff = cmp.summary(), cmp.differences()
    columns = list(dict.fromkeys(cmp.kpis.policy))
    t = Table(title=title)
    t.add_column("KPI")
    for c in columns:
        t.add_column(c, justify="right")
    sig = {(r.policy, r.kpi) for r in diff.itertuples() if r.significant}
    for kpi in kpis:
        s = summ[summ.kpi == kpi].set_index("policy")
        if len(s):
            t.add_row(kpi, *(mean_ci_text(s.loc[c, "mean"], s.loc[c, "ci_low"], s.loc[c, "ci_high"]) +
                             (" *" if (c, kpi) in sig else "") if c in s.index else "-" for c in columns))
    return t


def _compare_designs(file: Path, sc: Scenario, design: tuple[Any, ...], jobs: int | None, cluster: str | None,
                     out: Path | None, force: bool, combined: bool = False, variants: list[str] | None = None) -> None:
    """`twin compare FILE --buffer ... --machines ...`: the line as it is and each alternative, from its start."""
    from twin.app.alternatives import alternatives
    from twin.app.compare import compare_designs, write_report

    if sc.replications < 2:
        fail("--replications: at least 2, so that differences get a confidence interval")
    options = alternatives(sc, *design, combined=combined, variants=variants)
    out = report_folder(out, f"compare-{file.stem}", force)  # once the options are good
    cmp = simulated(f"{len(options)} alternatives × {sc.replications} replications", len(options) * sc.replications,
                    lambda progress: compare_designs(options, jobs=jobs, cluster=cluster, progress=progress))
    print_table(_kpi_table(cmp, cmp.rows, f"{sc.line.name}: alternatives over {sc.replications} replications of "
                                             f"{sc.duration / 3600:g} h from the line's start, warm-up "
                                             f"{sc.warmup / 3600:g} h (mean ± 95 % CI; * differs from as is)"))
    out_console.print(f"note: {cmp.note}", highlight=False)
    out_console.print("constraint station (lowest design rate per part out): " + "; ".join(
        f"{label}: {alt.stations[alt.constraint()].name}" for label, alt in options), highlight=False)
    _done(len(options) * sc.replications, cmp.wall, cmp.where, write_report(cmp, out))


def _share(by: str) -> float:
    """--by '10 %' (or 10%, 10): how much better each lever is made, as a share; 1 to 90 %."""
    text = by.strip().removesuffix("%").strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 1 <= value <= 90:
        fail(f"--by {by!r}: how much better each lever is made, in percent from 1 to 90, e.g. '10 %'")
    return value / 100


def sensitivity(
    file: Annotated[Path, typer.Argument(help="scenario file (YAML)")],
    by: Annotated[str, typer.Option(help="how much better each lever is made, e.g. '10 %'")] = "10 %",
    levers: Annotated[Optional[str], typer.Option(help="the levers, comma-separated: cycle, failures, repairs, "
                                                       "services, setups, scrap, minor-stops, buffer, crew (one "
                                                       "more technician; default: all the line has)")] = None,
    stations: Annotated[Optional[str], typer.Option(help="the stations, comma-separated (default: every one)")] = None,
    objective: Annotated[Optional[str], typer.Option(help="KPI to rank by, as `twin compare` names it, its unit "
                                                          "optional (default: throughput; lead time where parts "
                                                          "arrive at their own pace: the demand sets the "
                                                          "throughput), or payback (with --cost)")]
    = None,
    replications: Annotated[Optional[int], typer.Option(min=1, help="replications per lever (at least 2)")] = None,
    duration: DurationOpt = None, warmup: WarmupOpt = None, seed: SeedOpt = None,
    jobs: Jobs = None, cluster: ClusterOpt = None,
    cost: Annotated[Optional[list[str]], typer.Option(help="what the project that pulls a lever costs, once: "
                                                           "STATION.LEVER=AMOUNT, e.g. framing.cycle=80000 (the "
                                                           "scenario's currency; repeat it): its payback in months "
                                                           "from the worth a year its gain has at the part margin")]
    = None,
    out: Annotated[Optional[Path], typer.Option(help="report folder (default: a new "
                                                     "reports/sensitivity-<scenario>-<time>)")] = None,
    force: ForceOpt = False,
) -> None:
    """Where improving the line pays most: each station's cycle time, failures, repairs, services, setups, scrap,
    minor stops and buffer made --by better, one at a time (common random numbers), ranked by the throughput gained,
    with CIs."""
    from twin.app.alternatives import LEVERS, LINE
    from twin.app.alternatives import levers as levers_of
    from twin.app.compare import DESIGN_KPIS

    sc = _scenario_for_compare(file, duration, replications, seed, warmup)  # a bad file named before scipy loads
    if sc.replications < 2:
        fail("--replications: at least 2, so that the gains get a confidence interval")
    share = _share(by)
    named = {k.split(" [")[0]: k for k in DESIGN_KPIS}  # 'lead time' for 'lead time [min]'
    pay = objective is not None and objective.strip().lower() in ("payback", "payback [months]")
    if pay and not cost:
        fail("--objective payback ranks the projects by the months they take to pay back: give what each costs with "
             "--cost STATION.LEVER=AMOUNT")
    goal = "throughput [parts/h]" if pay else named.get(objective, objective) if objective is not None else \
        "lead time [min]" if sc.source.kind == "arrivals" else "throughput [parts/h]"
    if goal not in DESIGN_KPIS:
        fail(f"--objective {objective!r}: choose one of {', '.join(DESIGN_KPIS)}, or payback (with --cost)")
    _line_has(goal, sc, file)
    chosen = [x.strip() for x in (levers or ",".join(LEVERS)).split(",") if x.strip()]
    if unknown := [x for x in chosen if x not in LEVERS]:
        fail(f"--levers {levers!r}: {unknown[0]!r} is no lever; choose from {', '.join(LEVERS)}")
    names = [x.strip() for x in (stations or "").split(",") if x.strip()]
    if unknown := [x for x in names if x not in {s.name for s in sc.stations} | {LINE}]:
        fail(f"--stations {stations!r}: {unknown[0]!r} is no station of {file.name} "
             f"({', '.join(s.name for s in sc.stations)}; '{LINE}' for the repair crews)")
    options = levers_of(sc, share, chosen, names)
    if not options:
        fail(f"--levers {levers!r}: no station{' of those' if names else ''} has them (no fault modes, setups, scrap "
             "or minor stops where asked); choose others")
    costs = _project_costs(cost or [], sc, goal, {(station, lever) for _, station, lever, _ in options}, file)
    from twin.app.compare import (
        SENSITIVITY_NOTE,
        by_payback,
        compare_designs,
        sensitivity_cells,
        sensitivity_column,
        sensitivity_shown,
        sensitivity_table,
        write_sensitivity,
    )

    out = report_folder(out, f"sensitivity-{file.stem}", force)  # once the options are good
    versions = [("as is", sc), *((label, alt) for label, _, _, alt in options)]
    cmp = simulated(f"{len(options)} levers and the line as is × {sc.replications} replications",
                    len(versions) * sc.replications,
                    lambda progress: compare_designs(versions, jobs=jobs, cluster=cluster, progress=progress))
    table = sensitivity_table(cmp, options, goal, costs)
    ranked = "payback (the soonest first; levers without a cost or a gain after)" if pay else None
    if pay:
        table = by_payback(table)
    kpis = sensitivity_shown(table, goal)
    shown = Table(title=f"{sc.line.name}: each lever {share:.0%} better on its own, {sc.replications} replications of "
                        f"{sc.duration / 3600:g} h, ranked by {ranked or goal} (change from as is, mean ± 95 % CI; * "
                        "the CI excludes 0)")
    for col in ("rank", "station", "made better", *(sensitivity_column(k, sc.costs.currency) for k in kpis)):
        shown.add_column(col, justify="right" if col not in ("station", "made better") else "left")
    for k, r in enumerate(table.to_dict("records"), 1):
        shown.add_row(str(k), r["station"], r["change"], *(sensitivity_cells(r, kpi) for kpi in kpis))
    print_table(shown)
    out_console.print(f"note: {SENSITIVITY_NOTE}" + ("; parts arrive at their own pace here, so the demand sets the "
                                                    "throughput: ranked by lead time" if objective is None and
                                                    goal == "lead time [min]" else ""), highlight=False)
    _done(len(versions) * sc.replications, cmp.wall, cmp.where, write_sensitivity(cmp, table, share, out, goal,
                                                                                   ranked))


def _project_costs(specs: Sequence[str], sc: Scenario, goal: str, pulled: Collection[tuple[str, str]], file: Path
                   ) -> dict[tuple[str, str], float]:
    """--cost STATION.LEVER=AMOUNT: each project's one-off cost by the (station, lever) it pulls, or a clear error
    (a lever not pulled here, a technician's yearly cost, an amount that is no plain number, a line without a part
    margin to value the gain at)."""
    from twin.app.alternatives import LEVERS
    from twin.app.compare import THROUGHPUT, sensitivity_kpis

    costs: dict[tuple[str, str], float] = {}
    example = next((f"{s}.{lever}=80000" for s, lever in sorted(pulled) if lever != "crew"), "press.cycle=80000")
    for spec in specs:
        what, _, amount = spec.partition("=")
        station, _, lever = what.strip().rpartition(".")
        if lever == "crew":
            fail(f"--cost {spec!r}: a technician is a cost a year, not a project's: weigh it against the worth a year "
                 "the table gives")
        if (station, lever) not in pulled:
            fail(f"--cost {spec!r}: write STATION.LEVER=AMOUNT for a lever this ranking pulls, e.g. {example} "
                 f"(levers: {', '.join(k for k in LEVERS if k != 'crew')}; those a station has)")
        text = amount.strip().replace("_", "")
        if re.fullmatch(r"\d{1,3}([.,]\d{3})+", text) or not re.fullmatch(r"\d+(\.\d+)?", text) \
                or not 0 < float(text) < 1e15:
            fail(f"--cost {spec!r}: write the amount as a plain number above 0 (and below 10^15) without thousands "
                 f"separators, e.g. {example}")
        if (station, lever) in costs:
            fail(f"--cost {spec!r}: {station}.{lever} is given a cost twice")
        costs[station, lever] = float(text)
    if costs and sc.costs.part_margin <= 0:
        fail(f"--cost: {file.name} gives no part margin (costs: {{part_margin: …}}), so a gain has no worth to pay a "
             "project back with; give it")
    if costs and THROUGHPUT not in sensitivity_kpis(goal):
        fail(f"--cost: the worth a year comes from the throughput gained, which a ranking by {goal} does not show: "
             "rank by throughput (--objective throughput) or oee")
    return costs


def _line_has(objective: str, sc: Scenario, file: Path) -> None:
    """An objective only some lines have (energy: machine types' power; waits for parts: spares) is refused, saying
    why, for a line without it (its figures would be missing from every simulation)."""
    from twin.app.compare import ENERGY_KPIS, SPARE_KPIS

    if objective in SPARE_KPIS and not sc.spares:
        fail(f"--objective {objective!r}: {file.name} keeps no spare parts (spares:), so no repair waits for one; "
             "choose another objective")
    if objective in ENERGY_KPIS and all(mt.power is None for mt in sc.machine_types.values()):
        fail(f"--objective {objective!r}: no machine type of {file.name} gives its power (power: {{working: KW, "
             "idle: KW}), so the line has no energy figures; give it, or choose another objective")


def tune(
    file: Annotated[Path, typer.Argument(help="scenario file (YAML)")],
    policy: Annotated[str, typer.Option(help="preventive (sweeps every), condition-based (threshold), inspection "
                                        "or perfect-monitoring (wear limit), predictive (alert probability)")],
    values: Annotated[str, typer.Option(help="comma-separated settings, e.g. '20 h,40 h,60 h' or '0.5,0.6,0.7'")],
    objective: Annotated[str, typer.Option(help="KPI to optimise, e.g. 'total cost', 'oee', 'unplanned failures'")]
    = "total cost",
    replications: Annotated[Optional[int], typer.Option(min=1, help="replications per setting (at least 2)")] = None,
    duration: DurationOpt = None, warmup: WarmupOpt = None, seed: SeedOpt = None,
    models: ModelsOpt = None, inspect_every: InspectEvery = None, jobs: Jobs = None, cluster: ClusterOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="report folder (default: a new "
                                                     "reports/tune-<scenario>-<policy>-<time>)")] = None,
    force: ForceOpt = False,
) -> None:
    """Sweep one policy parameter (common random numbers, in parallel) and report the best setting with its CI."""
    sc = _scenario_for_compare(file, duration, replications, seed, warmup)  # a bad file named before scipy loads
    from twin.app.compare import KPIS, write_report
    from twin.app.compare import tune as run_tune
    from twin.kpi import mean_ci_text
    from twin.scenario import ScenarioError, with_policy

    parameter = {"preventive": "every", "condition-based": "threshold", "inspection": "wear_limit",
                 "perfect-monitoring": "wear_limit", "predictive": "on"}.get(policy)
    if parameter is None:
        fail(f"--policy {policy!r}: choose preventive, condition-based, inspection, perfect-monitoring or predictive")
    if objective not in KPIS:
        fail(f"--objective {objective!r}: choose one of {', '.join(KPIS)}")
    _line_has(objective, sc, file)
    from twin.distributions import parse_duration

    raw = [v.strip() for v in values.split(",") if v.strip()]
    if parameter == "every":
        for v in raw:
            needs_unit(v, "--values")  # '20,40,60' swept maintenance every 20, 40 and 60 seconds
    try:
        nums = [float(parse_duration(v)) if parameter == "every" else float(v) for v in raw]
    except ValueError as e:
        fail(f"--values {values!r}: {e}")
    if len(nums) < 2:
        fail("--values: give at least two settings to compare")
    if sc.replications < 2:
        fail("--replications: at least 2, so that each setting gets a confidence interval")
    _unused_options([policy], {"--models": models is not None, "--inspect-every": inspect_every is not None}, sc)
    params = _policy_params(None, None, models, 0.5)
    if inspect_every is not None:  # filled in where the file gives none (the wear limit too: each task sets its own)
        try:
            sc = with_policy(sc, policy, inspect_every=time_option(inspect_every, "--inspect-every"), wear_limit=0.5)
        except ScenarioError as e:
            fail(str(e))
    if models is not None:
        models_for(models, sc)  # a clear error now rather than in a worker process
    if policy == "predictive" and models is None:
        fail("--policy predictive needs --models (a folder from `twin train` for this line)")
    from twin.app.compare import SCENARIO_POLICIES, setting_labels

    try:
        labels = setting_labels(parameter, nums)  # before the report folder is made; the sweep checks it again
    except ValueError as e:
        fail(str(e))
    for v in nums:
        if parameter in ("wear_limit", "on") and not 0 < v < 1:
            fail(f"--values: {v:g} is not between 0 and 1")
        if policy in SCENARIO_POLICIES:  # as each task will set it: a bad value named now, not in a worker
            try:
                with_policy(sc, policy, True, **{parameter: v})
            except ScenarioError as e:
                fail(f"--values: {v:g}: {e}{_fill_hint(policy, leave=parameter, refusal=str(e))}")
    out = report_folder(out, f"tune-{file.stem}-{policy}", force)  # once the options are good
    result = simulated(f"{policy}: {len(nums)} settings × {sc.replications} replications",
                       len(nums) * sc.replications,
                       lambda progress: run_tune(sc, policy, parameter, nums, params, objective, jobs, cluster,
                                                 progress=progress), refused=ValueError)
    def show(v: float) -> str:
        return f"{v / 3600:g} h" if parameter == "every" else f"{v:g}"

    summ = result.comparison.summary()
    t = Table(title=f"{policy}: {parameter} swept over {sc.replications} replications (mean ± 95 % CI)")
    t.add_column(parameter)
    for k in (objective, "unplanned failures", "oee", "maintenance actions"):
        t.add_column(k, justify="right")
    for v, name in zip(nums, labels):
        s = summ[summ.policy == name].set_index("kpi")
        mark = (" ← best" if result.clear else " ← best mean") if v == result.best else \
            (" (not significantly worse)" if v in result.ties else "")
        t.add_row(show(v) + mark,
                  *(mean_ci_text(s.loc[k, "mean"], s.loc[k, "ci_low"], s.loc[k, "ci_high"])
                    for k in (objective, "unplanned failures", "oee", "maintenance actions")))
    print_table(t)
    path = write_report(result.comparison, out)
    if result.clear:
        out_console.print(f"best {parameter} by {objective}: [bold]{show(result.best)}[/], significantly better than "
                          f"every other setting (paired 95 % CI); report: {escape(str(path))}", markup=True,
                          highlight=False)
    else:
        out_console.print(f"no setting is significantly better by {objective}: {show(result.best)} has the best mean, "
                          f"but its paired difference to {', '.join(show(v) for v in result.ties)} has a 95 % CI "
                          f"that includes 0; run more replications (--replications) to separate them, or choose "
                          f"among them on other grounds. Report: {path}", highlight=False)


def allocate(
    file: Annotated[Path, typer.Argument(help="scenario file (YAML)")],
    places: Annotated[int, typer.Option(min=1, max=100_000, help="buffer places to add to the line, e.g. 20")],
    step: Annotated[int, typer.Option(min=1, help="places given at a time (fewer rounds, a coarser answer)")] = 1,
    buffers: Annotated[Optional[str], typer.Option(help="the stations whose buffers may grow, comma-separated "
                                                   "(default: every buffer of limited capacity)")] = None,
    objective: Annotated[str, typer.Option(help="KPI to improve, as `twin compare` names it, its unit optional: "
                                           "throughput, oee, 'lead time', wip (lower is better), ...")]
    = "throughput [parts/h]",
    replications: Annotated[Optional[int], typer.Option(min=1, help="replications per candidate (at least 2)")] = None,
    duration: DurationOpt = None, warmup: WarmupOpt = None, seed: SeedOpt = None,
    jobs: Jobs = None, cluster: ClusterOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="report folder, with the scenario the places added (default: a "
                                                     "new reports/allocate-<scenario>-<time>)")] = None,
    force: ForceOpt = False,
) -> None:
    """Where more buffer places pay most: greedy marginal allocation, each round giving --step places to the buffer
    whose objective gains most (common random numbers), until all are given or none gains significantly."""
    sc = _scenario_for_compare(file, duration, replications, seed, warmup)  # a bad file named before scipy loads
    import pandas as pd

    from twin.app.cluster import ClusterError
    from twin.app.compare import DESIGN_KPIS, allocate_buffers, growable
    from twin.app.options import progress_bar
    from twin.kpi import mean_ci_text

    if sc.replications < 2:
        fail("--replications: at least 2, so that each gain gets a confidence interval")
    named = {k.split(" [")[0]: k for k in DESIGN_KPIS}  # 'wip' for 'wip [parts]': the unit need not be typed
    objective = named.get(objective, objective)
    if objective not in DESIGN_KPIS:
        fail(f"--objective {objective!r}: choose one of {', '.join(DESIGN_KPIS)}")
    _line_has(objective, sc, file)
    limited = growable(sc)
    chosen = [b.strip() for b in buffers.split(",") if b.strip()] if buffers else limited
    wrong = [b for b in chosen if b not in limited]
    if wrong or not chosen:
        fail(f"--buffers {wrong[0]!r}: not a station with a buffer of limited capacity (those: "
             f"{', '.join(limited) or 'none'})" if wrong else f"{file.name}: no buffer of limited capacity to grow "
             "(an unlimited one never blocks); give stations a buffer: size first")
    out = report_folder(out, f"allocate-{file.stem}", force)  # once the options are good
    rounds = -(-places // step)
    per_round = (len(chosen) + 1) * sc.replications
    with progress_bar() as bar:
        task = bar.add_task(f"up to {rounds} rounds × {len(chosen) + 1} candidates × {sc.replications} replications",
                            total=rounds * per_round, note="")
        try:
            result = allocate_buffers(sc, places, step, objective, chosen, jobs=jobs, cluster=cluster,
                                      progress=lambda r, done, _: bar.update(task, completed=(r - 1) * per_round
                                                                             + done, note="simulations"))
        except ClusterError as e:
            fail(str(e), code=3)
    r = result.rounds
    shown = pd.DataFrame({"round": r["round"], "buffer": r.station, "size": r["size"],
                          objective: [mean_ci_text(*x) for x in zip(r["mean"], r.ci_low, r.ci_high)],
                          "gain": [mean_ci_text(*x) for x in zip(r.gain, r.gain_low, r.gain_high)]})
    t = Table(title=f"{sc.line.name}: {step} place{'s' * (step > 1)} a round to the buffer gaining most "
                    f"{objective} ({sc.replications} replications of {sc.duration / 3600:g} h, warm-up "
                    f"{sc.warmup / 3600:g} h; mean ± 95 % CI)")
    for col in shown.columns:
        t.add_column(col, justify="left" if col == "buffer" else "right")
    for row in shown.itertuples(index=False):
        t.add_row(*map(str, row))
    if len(shown):
        print_table(t)
    before = {s.name: s.buffer for s in sc.stations}
    changed = [f"{s.name} {before[s.name]} → {s.buffer}" for s in result.scenario.stations
               if s.buffer != before[s.name]]
    summary = f"{result.stopped}; buffers: {', '.join(changed) or 'as they are'}"
    out_console.print(summary, highlight=False)
    from twin.scenario import write_scenario

    allocated = out / f"{file.stem}-allocated.yaml"
    write_scenario(result.scenario, allocated, f"# {file.name} with {result.given} buffer places added by `twin "
                                               f"allocate` ({', '.join(changed) or 'none'}) for {objective}.\n")
    result.rounds.to_csv(out / "rounds.csv", index=False)
    (out / "report.md").write_text("\n".join([
        f"# Buffer places for {sc.line.name}", "",
        f"{places} places to add, {step} a round to the buffer whose {objective} gains most per place (greedy "
        f"marginal allocation; {sc.replications} replications of {sc.duration / 3600:g} h, warm-up "
        f"{sc.warmup / 3600:g} h, common random numbers; mean ± 95 % CI). {result.simulations} simulations in "
        f"{result.wall:.1f} s on {result.where}.", "",
        shown.to_markdown(index=False) if len(shown) else "No round gave places.", "",
        summary[0].upper() + summary[1:] + ".", "", f"The scenario with them: `{allocated.name}`.", ""]),
        encoding="utf-8")
    _done(result.simulations, result.wall, result.where, out)


def plan(
    file: Annotated[Path, typer.Argument(help="scenario file (YAML)")],
    replications: Annotated[Optional[int], typer.Option(min=3, max=1000, help="pilot replications [default: the "
                                                        "scenario's, at least 5]")] = None,
    duration: Annotated[Optional[str], typer.Option(help="simulated time per pilot replication, e.g. '30 d' "
                                                         "[default: the scenario's]")] = None,
    period: Annotated[Optional[str], typer.Option(help="output counted per period [default: a day or a week on a "
                                                       "shift calendar (its cycle), else a round time, 1/100 of the "
                                                       "run or less]")] = None,
    precision: Annotated[float, typer.Option(help="the 95 % CI's half-width wanted, relative to the mean")] = 0.05,
    seed: SeedOpt = None,
    jobs: Jobs = None,
    cluster: ClusterOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="report folder (default: a new "
                                                     "reports/plan-<scenario>-<time>)")] = None,
    force: ForceOpt = False,
) -> None:
    """How long the warm-up must be (MSER on pilot replications) and how many replications give throughput, WIP
    and lead time a 95 % CI within --precision: what `twin run` and `twin compare` need to be trusted."""
    from twin.app.plan import default_period, duration_text, periods_needed, replications_text, verdict, write_report
    from twin.app.plan import plan as run_plan
    from twin.kpi import plain

    sc = open_scenario(file, duration=time_option(duration, "--duration"), seed=seed)
    sc = sc.model_copy(update={"replications": replications or max(5, sc.replications)})
    if not (0 < precision < 1):
        fail(f"--precision {precision}: a share of the mean between 0 and 1, e.g. 0.05 for ± 5 %")
    every = time_option(period, "--period") or default_period(sc)
    if sc.duration / every < (needed := periods_needed(sc, every)) - 1e-9:
        fail(f"--duration: {duration_text(sc.duration)} holds {int(sc.duration // every)} periods of "
             f"{duration_text(every)}; the warm-up analysis needs at least {needed}: give --duration "
             f"{duration_text(needed * every)} or more" + ("" if period else
             (" (on a shift calendar a period is its cycle, a day or a week, so that shifts and weekends do not "
              "read as a transient)" if sc.calendar else "")) + (", or a shorter --period" if period else ""))
    out = report_folder(out, f"plan-{file.stem}", force)
    p = simulated(f"{sc.replications} pilot replications", sc.replications,
                  lambda progress: run_plan(sc, every, precision, jobs=jobs, cluster=cluster, progress=progress))
    for line in verdict(p):
        out_console.print(line, highlight=False)
    table = p.table
    t = Table(title=f"{sc.line.name}: replications for a 95 % CI within ± {precision:.0%} of the mean, after a "
                    f"warm-up of {duration_text(p.recommended) if p.recommended else '0'} (pilot: "
                    f"{sc.replications} × {duration_text(sc.duration)})")
    for c in ("KPI", "mean", "sd", "± now", "replications needed"):
        t.add_column(c, justify="left" if c == "KPI" else "right")
    for r in table.itertuples(index=False):
        t.add_row(r.kpi, plain(r.mean), plain(r.sd, 3), plain(r[3], 3), replications_text(r[4]))
    print_table(t)
    n = p.replications
    if n > 30:  # runs short against the line's stops: each one's luck dominates
        out_console.print(f"Many replications: runs of {duration_text(sc.duration)} vary much from one to the next "
                          "(a long stop in one, none in the next); longer runs (--duration) average more of the line's "
                          "stops each and need fewer.", highlight=False)
    if math.isfinite(n):
        out_console.print(f"run: twin run {escape(str(file))} --warmup '{duration_text(p.recommended) or 0}' "
                          f"--replications {max(int(n), 2)}" + (f" --duration '{duration_text(sc.duration)}'"
                                                                 if duration else ""), markup=False, highlight=False)
    _done(sc.replications, p.wall, p.where, write_report(p, out))
