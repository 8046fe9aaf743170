"""Scenarios: pick or upload a scenario file, validate it (same errors as the CLI), start and stop a run,
and compare KPIs of runs (and of maintenance policies) side by side with confidence intervals."""

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import access, charts, data
from twin.scenario import ScenarioError, load_scenario


def start_job(key: str, cmd: list[str], out: Path, action: str, detail: str) -> None:
    """Start a `twin` command in the background (its process kept in the session under `key`, what it writes, `out`,
    under `key`_out, what it says in a log file, `key`_log) and write who started it into the audit log."""
    log = data.reports_dir() / "jobs" / f"{key}-{dt.datetime.now():%Y%m%d-%H%M%S-%f}.log"
    st.session_state[key] = data.start_command(cmd, log)
    st.session_state.pop(f"{key}_err", None)
    st.session_state[f"{key}_out"] = str(out)
    st.session_state[f"{key}_log"] = str(log)
    data.ledger().audit(me.name, me.role, action, detail)


def new_report(kind: str, scenario: Path) -> Path:
    """A new report folder of a `kind` of job on a scenario file, named by when it was started."""
    return data.reports_dir() / f"{kind}-{scenario.stem}-{dt.datetime.now():%Y%m%d-%H%M%S}"


def job_progress(key: str) -> str:
    """The running job's last line (its progress: '3 alternatives × 30 replications: 40/90 simulations'), if any."""
    lines = data.command_said(Path(st.session_state[f"{key}_log"]), 400).strip().splitlines()
    return f" · {lines[-1].strip()}" if lines else ""


def running(key: str) -> bool:
    """Whether the session's job `key` is still running (its button waits until it ends)."""
    return st.session_state.get(key) is not None and st.session_state[key].poll() is None


def job_state(key: str, what: str, busy: str = "") -> str | None:
    """None (none started), 'running' (`busy` shown here with the job's progress), 'failed' (its error shown here,
    read once) or 'done'."""
    proc = st.session_state.get(key)
    if proc is None:
        return None
    if proc.poll() is None:
        if busy:
            st.info(f"{busy}{job_progress(key)}")
        return "running"
    if proc.returncode:
        err = st.session_state.setdefault(f"{key}_err", data.command_said(Path(st.session_state[f"{key}_log"])))
        st.error(f"{what} ended with exit code {proc.returncode}: {err}")
        return "failed"
    return "done"


def plant_names(prefix: str, machines: str) -> list[str]:
    """An MES export's own names (columns, states, stop reasons, machines, part results, products, time format) as the
    options `twin fit` and `twin whatif` map them with (`machines`: the command's name for the machine mapping); fields
    keyed `prefix`_."""
    mapped = []
    with st.expander("the export's own names (as `twin fit` maps them)"):
        for option, label, example in (
                ("--columns", "columns", "Zeitstempel=timestamp, Maschine=machine, Status=state, Grund=reason"),
                ("--states", "states", "Produktion=working, Störung=down, Wartung=maintenance"),
                ("--reasons", "stop reasons", "E-042=bearing_wear, E-07=jam"),
                (machines, "machines", "Presse 1=press-1"),
                ("--results", "part results", "Gutteil=good, Ausschussteil=scrap"),
                ("--products", "products", "4711=juice-10, 4712=still-05"),
                ("--time-format", "time format", "%d.%m.%Y %H:%M:%S")):
            if given := st.text_input(label, "", key=f"{prefix}_{label.replace(' ', '_')}", placeholder=example):
                mapped += [option, given.strip()]
    return mapped


def saved_logs(files: list[Any]) -> list[Path]:
    """Uploaded status logs or stop lists kept (`data.save_upload`), each upload audited once; a refused one said."""
    kept = []
    for f in files:
        try:
            kept.append(data.save_upload(f.name, f.getvalue(), log=True))
        except ValueError as e:
            st.error(f"upload {f.name}: {e}")
            continue
        if str(kept[-1]) not in st.session_state.setdefault("logs_audited", set()):
            data.ledger().audit(me.name, me.role, "upload", f"{f.name} → {kept[-1]}")
            st.session_state["logs_audited"].add(str(kept[-1]))
    return kept


@st.cache_data(max_entries=256)
def _line_of(path: str, mtime: float) -> tuple[str, str, str] | None:
    try:
        line = load_scenario(path).line
    except (ScenarioError, OSError):
        return None
    return line.site, line.area, line.name


def line_of(path: Path) -> tuple[str, str, str] | None:
    """The line (site, area, name) a scenario file is of (None: not a valid one), read once per version of it."""
    return _line_of(str(path), path.stat().st_mtime)


ANY = "any"  # an order of whichever products the line makes

st.title("Scenarios")
me = access.user()
folder = data.scenarios_dir()
bundled = sorted(folder.glob("*.yaml"))
if not bundled:
    st.warning(f"No scenario files in {folder}: set LINETWIN_SCENARIOS to a folder of scenario files.")
left, right = st.columns(2)
choice = left.selectbox("bundled scenario", [p.name for p in bundled], key="scenario")
upload = right.file_uploader("or upload a scenario file", type=["yaml", "yml"], key="upload",
                             disabled=not me.can("upload"), help=None if me.can("upload") else "engineers only")
sc = None
path: Path | None = None
try:
    if upload is not None:
        path = data.save_upload(upload.name, upload.getvalue())
        if st.session_state.get("uploaded") != str(path):
            data.ledger().audit(me.name, me.role, "upload", f"{upload.name} → {path}")
            st.session_state["uploaded"] = str(path)
    elif choice is not None:
        path = folder / str(choice)
    sc = load_scenario(path) if path is not None else None
except ScenarioError as e:
    st.error(str(e))
except ValueError as e:
    st.error(f"upload {upload.name if upload is not None else ''}: {e}")
if sc is not None and path is not None:
    st.success(f"{path.name}: line {sc.line.site}/{sc.line.area}/{sc.line.name}, {len(sc.stations)} stations, "
               f"{sum(len(s.machine_names) for s in sc.stations)} machines, {sc.duration / 3600:g} h × "
               f"{sc.replications} replications")
    c1, c2, c3 = st.columns(3)
    duration = c1.text_input("duration", f"{sc.duration / 3600:g} h")
    reps = c2.number_input("replications", 1, 100, sc.replications)
    busy = running("proc")
    if c3.button("start run", disabled=busy or not me.can("start_run"),
                 key="start", help=None if me.can("start_run") else "engineers only"):
        out = data.runs_dir() / path.stem / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        start_job("proc", ["run", str(path), "--duration", duration, "--replications", str(reps), "--no-stream",
                           "--out", str(out)], out, "start run", f"{path.name} for {duration} × {reps} → {out}")

    @st.fragment(run_every="2s")
    def run_status() -> None:
        """The started run's status, refreshed until it ends (no page reload needed)."""
        state = job_state("proc", "the run", f"running → {st.session_state.get('proc_out')}")
        if state == "running":
            if st.button("stop run", key="stop"):
                st.session_state.proc.terminate()
                data.ledger().audit(me.name, me.role, "stop run", st.session_state.proc_out)
        elif state == "done":
            st.success(f"finished: {st.session_state.proc_out}")

    run_status()

    st.header("How long a warm-up, how many replications")
    st.caption("Pilot replications from the line's start with no warm-up (`twin plan`): where the start-up ends "
               "(MSER-5 on the replications' mean throughput and WIP per period) and how many replications give "
               "throughput, WIP and lead time a 95 % confidence interval within the precision asked.")
    p1, p2, p3 = st.columns(3)
    plan_duration = p1.text_input("pilot duration", f"{sc.duration / 3600:g} h", key="plan_dur")
    plan_precision = p2.number_input("precision (± share of the mean)", 0.005, 0.5, 0.05, step=0.01, key="plan_prec")
    plan_busy = running("plan_proc")
    if p3.button("plan", key="plan_go", disabled=not me.can("start_run") or plan_busy,
                 help=None if me.can("start_run") else "engineers only"):
        report = new_report("plan", path)
        start_job("plan_proc", ["plan", str(path), "--duration", plan_duration, "--precision", str(plan_precision),
                                "--out", str(report)], report, "plan", f"{path.name} for {plan_duration} → {report}")

    @st.fragment(run_every="2s")
    def plan_status() -> None:
        """The pilot's progress, then its report: the warm-up, Welch's plot, the replications per KPI."""
        busy = f"simulating the pilot replications… → {st.session_state.get('plan_proc_out')}"
        if job_state("plan_proc", "the pilot replications", busy) == "done":
            folder = Path(st.session_state.plan_proc_out)
            st.markdown((folder / "report.md").read_text(encoding="utf-8").split("![Welch's average]")[0])
            st.image(str(folder / "welch.png"))
            st.dataframe(pd.read_csv(folder / "replications.csv"), hide_index=True)

    plan_status()

    st.header("Calibrated from the plant's records")
    st.caption("Fits each fault mode's time to failure and repair time (censored maximum likelihood, the family by "
               "AIC) from the plant's status log or stop list (its monthly exports together), with this scenario as "
               "the base, and validates the fitted line against the log (`twin fit`).")
    fit_files = st.file_uploader("status log or stop list (one file or several)", type=list(data.LOG_KINDS),
                                 key="fit_logs", accept_multiple_files=True, disabled=not me.can("upload"),
                                 help=None if me.can("upload") else "engineers only")
    fit_logs = saved_logs(list(fit_files or []))
    fit_mapped = plant_names("fit", "--machines")
    fit_reps = st.number_input("replications of the validation", 2, 100, 10, key="fit_reps")
    if st.button("fit", key="fit_go", disabled=not fit_logs or not me.can("start_run") or running("fit_proc"),
                 help=None if me.can("start_run") else "engineers only"):
        fitted = new_report("fit", path) / "fitted.yaml"
        start_job("fit_proc", ["fit", *map(str, fit_logs), "--base", str(path), "--out", str(fitted),
                               "--replications", str(fit_reps), *fit_mapped], fitted, "fit",
                  f"{path.name} from {', '.join(p.name for p in fit_logs)}")

    @st.fragment(run_every="2s")
    def fit_status() -> None:
        """The fit's progress, then its tables, plot and the fitted scenario to download."""
        if job_state("fit_proc", "the fit", "fitting and validating…") == "done":
            fitted = Path(st.session_state.fit_proc_out)
            report = fitted.with_name(fitted.stem + "-report")
            st.success(f"fitted: {fitted}")
            st.dataframe(pd.read_csv(report / "fitted.csv"), hide_index=True)
            st.dataframe(pd.read_csv(report / "validation.csv"), hide_index=True)
            if (report / "fitted.png").exists():
                st.image(str(report / "fitted.png"))
            st.download_button("fitted scenario (YAML)", fitted.read_bytes(), file_name=f"{path.stem}-fitted.yaml",
                               key="fit_download")

    fit_status()

    st.header("What if, from the line's state now")
    st.caption("Continues this scenario from a line's latest state (machine states, stops under way, fault-mode "
               "ages, buffer levels) read from a run's or a plant's store of this line, or from the plant's status "
               "log or stop list (an MES export, its own names mapped as `twin fit` maps them), and compares "
               "alternatives over the next hours with the same random numbers (`twin whatif`).")
    stores = {r.label: r.store_url for r in data.list_runs(str(data.runs_dir()))  # another line's run has none of
              if r.store_url and data.prefix_of(r.scenario) == data.prefix_of(sc)}  # this line's machines
    w1, w2 = st.columns([2, 1])
    typed, logged = "a store or broker URL…", "a plant's status log or stop list…"
    src = w1.selectbox("state from", [*stores, typed, logged], key="wi_src")
    url = stores.get(str(src))
    if src == typed:
        url = w2.text_input("URL", "", key="wi_url", placeholder="duckdb:///plant.duckdb")
    elif src == logged:  # a plant without `twin connect`: its MES export, as `twin whatif --from status.csv`
        log = w2.file_uploader("status log or stop list", type=list(data.LOG_KINDS), key="wi_log",
                               disabled=not me.can("upload"), help=None if me.can("upload") else "engineers only")
        url = next((str(p) for p in saved_logs([log] if log is not None else [])), None)
    mapped = plant_names("wi", "--machine-names") if src == logged else []
    w3, w4, w0 = st.columns(3)
    wi_duration = w3.text_input("how far ahead", "8 h", key="wi_dur")
    wi_reps = w4.number_input("replications", 2, 200, 30, key="wi_reps")
    wi_order = w0.number_input("an order of good parts", 0, 10**9, 0, key="wi_order",
                               help="how likely each alternative makes that many good parts in the time ahead, and "
                                    "when (0: no order)")
    wi_product = w0.selectbox("of product", [ANY, *(p.name for p in sc.products)], key="wi_order_product",
                              disabled=not sc.products, help=None if sc.products else "the line makes one kind of part")
    wi_due = w0.text_input("due", "", key="wi_due", placeholder="e.g. 18:00 or Tue 14:00",
                           help="when the order is due, on the line's clock: how likely each alternative makes it by "
                                "then (empty: within the time ahead)")
    if sc.orders:  # the file's own order book: what a what-if without orders of its own follows
        from twin.kpi import order_label

        st.caption(f"{path.name} releases {len(sc.orders)} order{'s' * (len(sc.orders) > 1)} before its plan ("
                   + "; ".join(order_label(k, o) + (f" by {o.due:%a %H:%M}" if o.due else "")
                               for k, o in enumerate(sc.orders[:5]))
                   + ("; …" if len(sc.orders) > 5 else "") + "): without orders given here, the what-if releases "
                   "them as the book and tells each")
    wi_more = st.text_input("more orders, filled in turn after it", "", key="wi_more_orders",
                            placeholder=(f"PRODUCT=N@WHEN, e.g. {sc.products[0].name}=400@Tue 14:00; …" if sc.products
                                         else "N@WHEN, e.g. 400@Tue 14:00; …"),
                            help="an order book: each product's orders are made in the order listed (`--order`, "
                                 "repeated)")
    wi_book = st.file_uploader("an order book (the ERP's export: a row per order, in the order they are made)",
                               type=list(data.LOG_KINDS), key="wi_book", disabled=not me.can("upload"),
                               help="columns quantity and, where known, product, due and order (its number); its "
                                    "orders come first, then the ones above (`--orders`)" if me.can("upload") else
                                    "engineers only")
    booked = next((str(p) for p in saved_logs([wi_book] if wi_book is not None else [])), None)
    ways = {"the line's plan": "line", "the book's order": "book", "by due date": "due", "fewest setups": "setups"}
    released = st.multiselect("release the orders", list(ways), key="wi_release", disabled=not sc.products,
                              help="how the line releases parts: its own plan (the orders filled from what it "
                                   "makes), or the orders themselves in the book's order, by due date or with a "
                                   "product's orders together (fewest setups), each to its good parts; the first "
                                   "chosen is the as-is, each further one an alternative (`--release`)"
                              if sc.products else "the line makes one kind of part")
    crews = st.multiselect("one more technician in", [c.name for c in sc.repair_crews], key="wi_crew")
    from twin.maintenance import SCENARIO_POLICIES

    pols = st.multiselect("every machine on the policy", list(SCENARIO_POLICIES), key="wi_pol")
    w5, w6 = st.columns(2)
    counts = {s.name: len(s.machine_names) for s in sc.stations}
    more = w5.multiselect("one more machine at", list(counts), key="wi_more")
    faster = w6.text_input("another cycle time", "", key="wi_cycle", placeholder="STATION=TIME, e.g. "
                           f"{sc.stations[0].name}=45 s; several separated by ;")
    w7, w8 = st.columns(2)
    sizes = w7.text_input("another buffer size", "", key="wi_buffer", placeholder="STATION=PARTS; …")
    shift = w8.text_input("one more shift", "", key="wi_shift", placeholder="22:00-24:00",
                          disabled=sc.calendar is None, help="the line runs around the clock" if sc.calendar is None
                          else None)
    ovens = [s for s in sc.stations if s.batch is not None]
    w9, w10 = st.columns(2)
    batches = w9.text_input("another batch size", "", key="wi_batch", placeholder=f"STATION=PARTS, e.g. "
                            f"{ovens[0].name}={ovens[0].batch.size * 2}; …" if ovens and ovens[0].batch else "",
                            disabled=not ovens, help=None if ovens else "the line has no batch station")
    belts = [s for s in sc.stations if s.transfer is not None]
    transfers = w10.text_input("another conveyor time", "", key="wi_transfer", placeholder=f"STATION=TIME, e.g. "
                               f"{belts[0].name}=30 s; …" if belts else "", disabled=not belts,
                               help=None if belts else "no conveyor leads into a station of this line")
    servicing = sc.calendar is not None and any(t.maintenance.policy != "run-to-failure"
                                                for t in sc.machine_types.values())
    names, spares = [p.name for p in sc.products], [s.name for s in sc.spares]
    w11, w12 = st.columns(2)
    mixes = w11.text_input("another product mix", "", key="wi_mix", placeholder=f"PRODUCT=SHARE of the parts "
                           f"released, e.g. {names[-1]}=0.4; …" if names else "", disabled=not names,
                           help=None if names else "the line makes one kind of part")
    stocks = w12.text_input("another spare stock", "", key="wi_stock", placeholder=f"SPARE=N parts kept, e.g. "
                            f"{spares[0]}=2; …" if spares else "", disabled=not spares,
                            help=None if spares else "no repair needs a part from stock")
    shifted = [c.name for c in sc.repair_crews if c.calendar is not None]
    on_call = st.text_input("a technician on call off the crew's shifts", "", key="wi_oncall",
                            placeholder=f"CREW=TIME, e.g. {shifted[0]}=45 min; …" if shifted else "",
                            disabled=not shifted, help=None if shifted else "no repair crew works shifts")
    off_shift = st.checkbox("services in the planned stops", key="wi_offshift", disabled=not servicing,
                            help="every machine type's services wait for the next planned stop (a shift's end), the "
                                 "machines working on (`--service-off-shift`)" if servicing else
                                 "the line has no shift calendar or no planned services")
    design = [*[a for c in crews for a in ("--extra-crew", c)],
              *[a for name in more for a in ("--machines", f"{name}={counts[name] + 1}")],
              *[a for x in faster.split(";") if x.strip() for a in ("--cycle-time", x.strip())],
              *[a for x in sizes.split(";") if x.strip() for a in ("--buffer", x.strip())],
              *(["--add-shift", shift.strip()] if shift.strip() and sc.calendar is not None else []),
              *[a for x in batches.split(";") if x.strip() and ovens for a in ("--batch", x.strip())],
              *[a for x in transfers.split(";") if x.strip() and belts for a in ("--transfer", x.strip())],
              *(["--service-off-shift"] if off_shift and servicing else []),
              *[a for x in mixes.split(";") if x.strip() and names for a in ("--mix", x.strip())],
              *[a for x in stocks.split(";") if x.strip() and spares for a in ("--stock", x.strip())],
              *[a for x in on_call.split(";") if x.strip() and shifted for a in ("--on-call", x.strip())]]
    others = [p for p in bundled if p != path and line_of(p) == (sc.line.site, sc.line.area, sc.line.name)]
    versions = st.multiselect("another version of this line", [p.name for p in others], key="wi_variant",
                              disabled=not others, help="a scenario file of the same line with what a project changes "
                              "(shorter changeovers, fewer minor stops, less scrap), run with the same random numbers "
                              "(`--variant`)" if others else f"no other scenario file in {folder} is of this line")
    changes = [a for a in design if a.startswith("--")]
    design = [*design, *[a for v in versions for a in ("--variant", str(folder / v))]]
    together = st.checkbox("and all of them together", key="wi_combined",
                           help="one more alternative with every change at once: changes interact (`--combined`; "
                                "a version of the line runs on its own)")
    alternatives = [*design, *[a for p in pols for a in ("--policy", p)]]
    if together and len(changes) + len(pols) > 1:
        alternatives.append("--combined")
    if together and len(changes) > 1:
        design = [*design, "--combined"]
    wi_busy = running("wi_proc")
    if st.button("what if?", key="wi_go", disabled=not url or not me.can("start_run") or wi_busy,
                 help=None if me.can("start_run") else "engineers only"):
        table = data.reports_dir() / f"whatif-{dt.datetime.now():%Y%m%d-%H%M%S}.csv"
        start_job("wi_proc", ["whatif", str(path), "--from", str(url), *mapped, "--duration", wi_duration,
                              "--replications", str(wi_reps), "--out", str(table), *alternatives,
                              *(["--order", (f"{wi_product}=" if wi_product != ANY else "") + str(int(wi_order))
                                 + (f"@{wi_due.strip()}" if wi_due.strip() else "")] if wi_order else []),
                              *[a for x in wi_more.split(";") if x.strip() for a in ("--order", x.strip())],
                              *(["--orders", booked] if booked else []),
                              *[a for w in released if sc.products for a in ("--release", ways[w])]],
                  table, "what-if",
                  f"{path.name} from {url} for {wi_duration} × {wi_reps}")

    @st.fragment(run_every="2s")
    def whatif_status() -> None:
        """The what-if's progress, then its table."""
        if job_state("wi_proc", "the what-if", "simulating the alternatives…") == "done":
            table = pd.read_csv(st.session_state.wi_proc_out)
            shown = pd.DataFrame({
                "alternative": table["alternative"],
                "good parts": [f"{m:,.0f} ± {h:,.0f}" for m, h in zip(table["good parts"], table["± (95 % CI)"])],
                "90 % of runs": [f"{a:,.0f} – {b:,.0f}" for a, b in zip(table["5 %"], table["95 %"])],
                "availability": [f"{a:.1%}" if a == a else "off shift" for a in table["availability"]],
                **({"kWh per good part": [f"{e:,.3g}" if e == e else "–" for e in table["energy per good part [kWh]"]]}
                   if table.get("energy per good part [kWh]", pd.Series(dtype=float)).notna().any() else {}),
                "vs as is": ["" if d != d else f"{d:+,.0f} ± {h:,.0f}"
                             for d, h in zip(table["vs as is"], table["vs ± (95 % CI)"])]})
            from twin.app.compare import ALL_ORDERS, order_cells, share_text

            if ALL_ORDERS in table.columns:  # an order book: the share of runs that made every order in time
                shown[ALL_ORDERS] = [share_text(r, ALL_ORDERS) for r in table.to_dict("records")]
            ordered = "order made" in table.columns
            if ordered:  # an order: how likely each alternative makes it, and when (twin whatif --order)
                cells = [order_cells(r) for r in table.to_dict("records")]
                shown = shown.assign(**{"order made": [c[0] for c in cells], "done by": [c[1] for c in cells]})
            due = ordered and "order on time" in table.columns
            if due:
                shown.insert(len(shown.columns) - 1, "on time", [c[1] for c in cells])
            st.dataframe(shown, hide_index=True)
            book = Path(st.session_state.wi_proc_out).with_name(Path(st.session_state.wi_proc_out).stem + "-orders.csv")
            several = not ordered and book.exists()
            if several:  # an order book: each order under each alternative
                orders = pd.read_csv(book)
                due = "order on time" in orders.columns
                cells = [order_cells(r) for r in orders.to_dict("records")]
                st.dataframe(pd.DataFrame({
                    "order": [f"{o}: {name}" for o, name in zip(orders["order"], orders["name"])],  # as the CLI
                    "alternative": orders["alternative"], "made": [c[0] for c in cells],
                    **({"on time": [c[1] if len(c) == 3 else "–" for c in cells]} if due else {}),
                    "done by": [c[-1] for c in cells]}), hide_index=True)
                if (chart := book.with_suffix(".png")).exists():
                    st.image(str(chart))
            st.caption("good parts: mean ± half-width of its 95 % CI; 90 % of runs: where one run falls (5th–95th "
                       "percentile); vs as is: paired difference with its 95 % CI"
                       + (f"; {'order ' if ordered else ''}made: the share of runs that made the order in the time "
                          "ahead, with its 95 % CI; "
                          + ("on time: by when it was due; " if due else "")
                          + "done by: when the median run had, and 9 runs in 10" if ordered or several else ""))

    whatif_status()

    st.caption("The same alternatives (all but the policies: `twin compare` compares those on their own) over the "
               "long run instead: from the line's start, empty, with the file's warm-up, for as many replications "
               "(`twin compare`); the report appears under 'Policies and alternatives compared' below.")
    l1, l2 = st.columns([1, 2])
    long_run = l1.text_input("long run: duration", f"{sc.duration / 3600:g} h", key="lr_dur")
    lr_busy = running("lr_proc")
    if l2.button("compare over the long run", key="lr_go", disabled=not design or not me.can("start_run") or lr_busy,
                 help="engineers only" if not me.can("start_run") else None if design else "give an alternative"):
        report = new_report("compare", path)
        start_job("lr_proc", ["compare", str(path), "--duration", long_run, "--replications", str(max(wi_reps, 2)),
                              "--out", str(report), *design], report, "compare",
                  f"{path.name} for {long_run} × {wi_reps} → {report}")

    @st.fragment(run_every="2s")
    def long_run_status() -> None:
        busy = f"simulating the alternatives over {long_run}… → {st.session_state.get('lr_proc_out')}"
        if job_state("lr_proc", "the comparison", busy) == "done":
            st.success(f"compared: {Path(st.session_state.lr_proc_out).name} (below)")

    long_run_status()

    from twin.app.compare import growable

    st.subheader("Where more buffer places pay")
    st.caption("Places added a few at a time to the buffer whose throughput gains most with them, over the long run "
               "with the same random numbers, until all are given or none gains significantly (`twin allocate`, as "
               "many replications as above); the report and the scenario with them appear here.")
    limited = growable(sc)
    a1, a2, a3 = st.columns(3)
    places = a1.number_input("places to add", 1, 10_000, 10, key="al_places")
    step = a2.number_input("places a round", 1, 1_000, 2, key="al_step")
    al_dur = a3.text_input("duration", f"{sc.duration / 3600:g} h", key="al_dur")
    al_busy = running("al_proc")
    if st.button("allocate the places", key="al_go", disabled=not limited or not me.can("start_run") or al_busy,
                 help="engineers only" if not me.can("start_run") else None if limited else
                 "the line has no buffer of limited capacity"):
        report = new_report("allocate", path)
        start_job("al_proc", ["allocate", str(path), "--places", str(places), "--step", str(step), "--duration", al_dur,
                              "--replications", str(max(wi_reps, 2)), "--out", str(report)], report, "allocate",
                  f"{path.name}: {places} buffer places, {al_dur} × {wi_reps} → {report}")

    @st.fragment(run_every="2s")
    def allocate_status() -> None:
        if job_state("al_proc", "the allocation", "simulating the candidates…") == "done":
            folder = Path(st.session_state.al_proc_out)
            st.markdown((folder / "report.md").read_text(encoding="utf-8"))
            for allocated in folder.glob("*-allocated.yaml"):
                st.download_button("the scenario with the places", allocated.read_bytes(), allocated.name,
                                   key="al_download")

    allocate_status()

    st.subheader("Where improving pays most")
    st.caption("Each station's cycle time, failures, repairs, services, setups, scrap, minor stops and buffer made "
               "better on its own, over the long run with the same random numbers, ranked by the throughput each gains "
               "(`twin sensitivity`, as many replications as above): which improvement project to start with.")
    from twin.app.alternatives import LEVERS
    from twin.app.compare import DESIGN_KPIS

    s1, s2, s3, s4 = st.columns(4)
    se_by = s1.text_input("each lever better by", "10 %", key="se_by")
    se_dur = s2.text_input("duration", f"{sc.duration / 3600:g} h", key="se_dur")
    se_levers = s3.multiselect("levers", list(LEVERS), key="se_levers", help="none chosen: every one the line has")
    default = "lead time [min]" if sc.source.kind == "arrivals" else "throughput [parts/h]"
    priced = sc.costs.part_margin > 0
    se_goal = s4.selectbox("rank by", [*DESIGN_KPIS, *(["payback"] if priced else [])],
                           index=list(DESIGN_KPIS).index(default), key="se_goal",
                           help="parts arriving at their own pace: the demand sets the throughput, so lead time; "
                                "payback: the projects' costs below, the soonest paid back first")
    se_costs = st.text_input("what each project costs", "", key="se_costs", disabled=not priced,
                             placeholder=f"STATION.LEVER=AMOUNT, e.g. {sc.stations[0].name}.cycle=80000; …",
                             help=f"once, in {sc.costs.currency}: each project's payback in months from the worth a "
                                  "year its gain has at the part margin (`--cost`)" if priced else
                                  "the scenario gives no part margin (costs: part_margin) to value a gain at")
    se_busy = running("se_proc")
    if st.button("rank the levers", key="se_go", disabled=not me.can("start_run") or se_busy,
                 help="engineers only" if not me.can("start_run") else None):
        report = new_report("sensitivity", path)
        start_job("se_proc", ["sensitivity", str(path), "--by", se_by, "--duration", se_dur,
                              "--replications", str(max(wi_reps, 2)), "--out", str(report), "--objective", se_goal,
                              *(["--levers", ",".join(se_levers)] if se_levers else []),
                              *[a for x in se_costs.split(";") if x.strip() and priced for a in ("--cost", x.strip())]],
                  report, "sensitivity",
                  f"{path.name}: levers {se_by} better, {se_dur} × {wi_reps} → {report}")

    @st.fragment(run_every="2s")
    def sensitivity_status() -> None:
        if job_state("se_proc", "the ranking", "simulating each lever…") == "done":
            folder = Path(st.session_state.se_proc_out)
            st.markdown((folder / "report.md").read_text(encoding="utf-8").split("![levers]")[0])
            if (folder / "levers.png").exists():
                st.image(str(folder / "levers.png"))

    sensitivity_status()

st.header("Compare runs")
runs = data.list_runs(str(data.runs_dir()))
finished = [r for r in runs if r.status in ("finished", "stopped")]  # complete: not running, failed or lost
picked = st.multiselect("runs", [r.label for r in finished], default=[r.label for r in finished[:2]], key="cmp")
if picked:
    summaries = [r.summary().assign(run=r.label) for r in finished if r.label in picked]
    table = charts.kpi_ci_table(pd.concat(summaries, ignore_index=True),
                                ["throughput [parts/h]", "wip [parts]", "lead time [min]", "oee", "oee availability",
                                 "oee performance", "oee quality", "scrap rate", "energy per good part [kWh]"])
    st.dataframe(table)
    st.caption("mean ± half-width of the 95 % confidence interval over each run's replications")

reports = sorted(data.reports_dir().glob("compare-*/summary.csv"))
if reports:
    st.header("Policies and alternatives compared (`twin compare`)")
    pick = st.selectbox("comparison", [p.parent.name for p in reports], key="policy_report")
    folder = data.reports_dir() / pick
    st.markdown((folder / "report.md").read_text(encoding="utf-8").split("![policies]")[0])
    if (folder / "policies.png").exists():
        st.image(str(folder / "policies.png"))

ranked = sorted(data.reports_dir().glob("sensitivity-*/sensitivity.csv"))
if ranked:
    st.header("Where improving pays most (`twin sensitivity`)")
    pick = st.selectbox("ranking", [p.parent.name for p in ranked][::-1], key="sensitivity_report")  # newest first
    folder = data.reports_dir() / pick
    st.markdown((folder / "report.md").read_text(encoding="utf-8").split("![levers]")[0])
    if (folder / "levers.png").exists():
        st.image(str(folder / "levers.png"))
