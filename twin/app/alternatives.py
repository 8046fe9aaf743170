"""Alternatives of a line, each a named, changed copy of its scenario: one more technician, another maintenance
policy, a buffer's size, an extra shift, machines in parallel, a cycle time, a batch's size, a conveyor's time, services
in planned stops, another product mix, another stock of a spare part, a technician on call off the crew's shifts, or
another version of the line's file (a variant: whatever an improvement project changes).
`twin whatif` runs them from the line's state now, `twin compare` over the long run from the scenario's start."""

from __future__ import annotations

from collections.abc import Collection
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from twin.app.options import fail, repeated, time_option

if TYPE_CHECKING:
    from twin.scenario import Scenario

# the options that make alternatives, as `twin whatif` and `twin compare` take them (each repeatable)
ExtraCrew = Annotated[Optional[list[str]], typer.Option(help="an alternative: one more technician in this repair "
                                                             "crew (repeatable)")]
PolicyAlt = Annotated[Optional[list[str]], typer.Option(help="an alternative: every machine on this maintenance "
                                                             "policy (repeatable)")]
BufferAlt = Annotated[Optional[list[str]], typer.Option(help="an alternative: STATION=PARTS buffer capacity (a "
                                                             "conveyor's places too; repeatable)")]
AddShift = Annotated[Optional[list[str]], typer.Option(help="an alternative: one more shift window on the working "
                                                            "days, e.g. '22:00-24:00' (repeatable)")]
MachinesAlt = Annotated[Optional[list[str]], typer.Option(help="an alternative: STATION=N machines in parallel at the "
                                                               "station (repeatable)")]
CycleAlt = Annotated[Optional[list[str]], typer.Option(help="an alternative: STATION=TIME, the station's mean cycle "
                                                            "time, e.g. filler=1.6 s (repeatable)")]
BatchAlt = Annotated[Optional[list[str]], typer.Option(help="an alternative: STATION=N parts a batch station (an "
                                                            "oven) takes at once, e.g. oven=80 (repeatable)")]
TransferAlt = Annotated[Optional[list[str]], typer.Option(help="an alternative: STATION=TIME a part takes on the "
                                                               "conveyor into the station (repeatable)")]
OffShiftService = Annotated[bool, typer.Option(
    "--service-off-shift", help="an alternative: every machine type's planned services wait for the line's planned "
                                "stops (maintenance when: off-shift) instead of stopping production when due")]
MixAlt = Annotated[Optional[list[str]], typer.Option(help="an alternative: PRODUCT=SHARE of the parts released, "
                                                          "e.g. premium=0.4 (several: premium=0.4,estate=0.1; the "
                                                          "others keep their proportions; repeatable)")]
StockAlt = Annotated[Optional[list[str]], typer.Option(help="an alternative: SPARE=N parts of a spare kept in stock "
                                                            "(reordered as the scenario says; repeatable)")]
OnCallAlt = Annotated[Optional[list[str]], typer.Option(help="an alternative: CREW=TIME, a technician of a crew on "
                                                             "shifts on call off them, at the machine this long after "
                                                             "a failure, e.g. maint=45 min (repeatable)")]
VariantAlt = Annotated[Optional[list[str]], typer.Option(
    "--variant", help="an alternative: another version of the line's scenario file (a copy with what an improvement "
                      "project changes: shorter changeovers, fewer minor stops, less scrap), run with the same random "
                      "numbers, from the same start or state (repeatable)")]
Combined = Annotated[bool, typer.Option("--combined", help="one more alternative: every change given, together "
                                                            "(a machine and a buffer at once: their interplay; "
                                                            "variants run on their own)")]

def _station_setting(option: str, spec: str, sc: Scenario, what: str) -> tuple[int, str]:
    """STATION=VALUE of a what-if option: the station's index and the value's text, or a clear error."""
    station, _, value = spec.partition("=")
    names = [s.name for s in sc.stations]
    if station.strip() not in names:
        fail(f"{option} {spec!r}: write STATION={what} with a station of the scenario ({', '.join(names)})")
    if not value.strip() or (what == "PARTS" and not value.strip().isdigit()):
        fail(f"{option} {spec!r}: write STATION={what}" + (", PARTS a whole number, 0 or more" if what == "PARTS" else
                                                           ""))
    return names.index(station.strip()), value.strip()


def _with_machines(sc: Scenario, spec: str) -> tuple[str, Scenario]:
    """--machines STATION=N: the station with N machines in parallel; those it has keep their names and states, new
    ones start new, and removed ones (the last named) leave the line."""
    i, value = _station_setting("--machines", spec, sc, "N")
    st = sc.stations[i]
    if not value.isdigit() or not 1 <= int(value) <= 1000:
        fail(f"--machines {spec!r}: give the number of machines in parallel, 1 to 1000, e.g. {st.name}=2")
    n, names = int(value), st.machine_names
    if n == len(names):
        fail(f"--machines {spec!r}: station {st.name} has {n} machine{'s' * (n > 1)} already; give another number")
    taken = {m for s in sc.stations for m in s.machine_names}
    new = names[:n]
    k = 1
    while len(new) < n:
        k += 1
        if (name := f"{st.name}-{k}") not in taken:
            new.append(name)
    stations = [s.model_copy(update={"machines": new}) if j == i else s for j, s in enumerate(sc.stations)]
    out = sc.model_copy(update={"stations": stations})  # a removed machine's state read from the line: unread
    out._slots = sc.machine_order()  # the machines it has draw what they drew 'as is'
    return f"{st.name}: {n} machine{'s' * (n > 1)}", out


def _with_cycle(sc: Scenario, spec: str) -> tuple[str, Scenario]:
    """--cycle-time STATION=TIME: the station's mean cycle time set, its law's shape kept (every product's cycle and
    the design cycles scaled alike)."""
    from twin.distributions import scaled

    i, value = _station_setting("--cycle-time", spec, sc, "TIME")
    st = sc.stations[i]
    if st.machine_cycle_times:
        fail(f"--cycle-time {spec!r}: station {st.name}'s machines have cycle times of their own "
             f"({', '.join(st.machine_cycle_times)}): which one the time is for would be a guess; give them in a copy "
             "of the file and compare the two")
    mean = time_option(value, "--cycle-time", allow_zero=True)
    assert mean is not None
    if not 0.001 <= mean <= 365 * 86400:
        fail(f"--cycle-time {spec!r}: a mean cycle time from 1 ms to a year")
    if abs(mean - st.cycle_time.mean) < 1e-9 * mean:  # an alternative the same as 'as is' (+0 ± 0)
        fail(f"--cycle-time {spec!r}: station {st.name}'s mean cycle is {st.cycle_time.mean:g} s already; give another")
    f = mean / st.cycle_time.mean
    update = {"cycle_time": scaled(st.cycle_time, f),
              "cycle_times": {p: scaled(d, f) for p, d in st.cycle_times.items()},
              "ideal_cycle_time": st.ideal_cycle_time * f if st.ideal_cycle_time is not None else None,
              "ideal_cycle_times": {p: t * f for p, t in st.ideal_cycle_times.items()}}
    stations = [s.model_copy(update=update) if j == i else s for j, s in enumerate(sc.stations)]
    return f"{st.name}: cycle {value}", sc.model_copy(update={"stations": stations})


def _with_batch(sc: Scenario, spec: str) -> tuple[str, Scenario]:
    """--batch STATION=N: a batch station (an oven) that takes up to N parts at once, in the same cycle per batch
    (its `min` kept within N); the design cycle per batch stays, so per part it scales with N."""
    i, value = _station_setting("--batch", spec, sc, "N")
    st = sc.stations[i]
    if st.batch is None:
        ovens = [s.name for s in sc.stations if s.batch is not None]
        fail(f"--batch {spec!r}: station {st.name} works one part at a time; "
             + (f"the batch stations are {', '.join(ovens)}" if ovens else "the scenario has no batch station "
                "(batch: in a station)"))
    if not value.isdigit() or not 2 <= int(value) <= 10_000:
        fail(f"--batch {spec!r}: give the parts a batch holds, 2 to 10,000, e.g. {st.name}={st.batch.size * 2}")
    n = int(value)
    if n == st.batch.size:
        fail(f"--batch {spec!r}: station {st.name}'s batch holds {n} parts already; give another number")
    batch = st.batch.model_copy(update={"size": n, "min": min(st.batch.min, n) if st.batch.min is not None else None})
    stations = [s.model_copy(update={"batch": batch}) if j == i else s for j, s in enumerate(sc.stations)]
    return f"{st.name}: batch of {n}", sc.model_copy(update={"stations": stations})


def _with_transfer(sc: Scenario, spec: str) -> tuple[str, Scenario]:
    """--transfer STATION=TIME: the conveyor into the station takes that long (its places, `buffer`, kept)."""
    i, value = _station_setting("--transfer", spec, sc, "TIME")
    st = sc.stations[i]
    if st.transfer is None:
        conveyors = [s.name for s in sc.stations if s.transfer is not None]
        fail(f"--transfer {spec!r}: no conveyor leads into station {st.name}; "
             + (f"the stations fed by conveyors are {', '.join(conveyors)}" if conveyors else
                "the scenario has none (transfer: in a station)"))
    seconds = time_option(value, "--transfer")
    assert seconds is not None
    if abs(seconds - st.transfer) < 1e-9 * seconds:
        fail(f"--transfer {spec!r}: the conveyor into {st.name} takes {st.transfer:g} s already; give another time")
    stations = [s.model_copy(update={"transfer": seconds}) if j == i else s for j, s in enumerate(sc.stations)]
    return f"{st.name}: transfer {value}", sc.model_copy(update={"stations": stations})


def _with_crew(sc: Scenario, name: str) -> tuple[str, Scenario]:
    """--extra-crew CREW: one more technician in the crew."""
    known = {c.name: c for c in sc.repair_crews}
    if name not in known:
        have = ", ".join(known) or "none (repairs never wait for a technician, so another one changes nothing)"
        fail(f"--extra-crew {name!r}: the scenario's repair crews are {have}")
    crews = [c.model_copy(update={"size": c.size + 1}) if c.name == name else c for c in sc.repair_crews]
    return f"+1 technician, {name}", sc.model_copy(update={"repair_crews": crews})


def _with_on_call(sc: Scenario, spec: str) -> tuple[str, Scenario]:
    """--on-call CREW=TIME: off the crew's shifts a technician on call comes in this long after a failure."""
    name, _, value = spec.partition("=")
    known = {c.name: c for c in sc.repair_crews}
    crew = known.get(name.strip())
    if crew is None or not value.strip():
        shifts = [c.name for c in sc.repair_crews if c.calendar is not None]
        fail(f"--on-call {spec!r}: write CREW=TIME (e.g. 45 min) with a crew of the scenario that works shifts: "
             + (", ".join(shifts) if shifts else "none (give a repair crew a calendar: its technicians' shifts)"))
    if crew.calendar is None:
        fail(f"--on-call {spec!r}: crew {crew.name} is there around the clock (no calendar), so no one need be on "
             "call; give it its shifts (calendar:) in the scenario")
    seconds = time_option(value.strip(), "--on-call")
    assert seconds is not None
    if crew.on_call is not None and abs(seconds - crew.on_call) < 1e-9 * seconds:
        fail(f"--on-call {spec!r}: crew {crew.name} has one on call in {crew.on_call:g} s already; give another time")
    crews = [c.model_copy(update={"on_call": seconds}) if c is crew else c for c in sc.repair_crews]
    return f"{crew.name}: on call {value.strip()}", sc.model_copy(update={"repair_crews": crews})


def _with_policy(sc: Scenario, policy: str) -> tuple[str, Scenario]:
    """--policy NAME: every machine on that maintenance policy."""
    from twin.scenario import ScenarioError, with_policy

    try:
        return f"policy {policy}", with_policy(sc, policy)
    except ScenarioError as e:
        fail(f"--policy: {e}")


def _with_service_when(sc: Scenario, when: str) -> tuple[str, Scenario]:
    """--service-off-shift: every machine type that services its machines waits for planned stops to do it."""
    if sc.calendar is None:
        fail("--service-off-shift: the scenario has no shift calendar (its line runs around the clock), so there is "
             "no planned stop to service in; give it a calendar: to try it")
    servicing = [n for n, mt in sc.machine_types.items() if mt.maintenance.policy != "run-to-failure"]
    if not servicing:
        fail("--service-off-shift: every machine type runs to failure (no planned service to move); give a machine "
             "type a maintenance policy, or compare policies first")
    if all(sc.machine_types[n].maintenance.when == when for n in servicing):
        fail("--service-off-shift: every machine type's services wait for planned stops already "
             f"({', '.join(servicing)}); the alternative would be the scenario as it is")
    types = {n: mt.model_copy(update={"maintenance": mt.maintenance.model_copy(update={"when": when})})
             if n in servicing else mt for n, mt in sc.machine_types.items()}
    return "services off shift", sc.model_copy(update={"machine_types": types})


def _with_mix(sc: Scenario, spec: str) -> tuple[str, Scenario]:
    """--mix PRODUCT=SHARE[,PRODUCT=SHARE]: those products' shares of the parts released, the others' in the same
    proportions as before: a random mix's shares, or a release sequence's campaigns scaled (its order and length
    kept; refused where whole parts cannot give the shares within half a percentage point)."""
    from twin.scenario import Batch

    names = [p.name for p in sc.products]
    if not names:
        fail(f"--mix {spec!r}: the line makes one kind of part (no products: in the scenario), so it has no mix")
    given: dict[str, float] = {}
    for item in spec.split(","):
        name, _, value = item.partition("=")
        name, value = name.strip(), value.strip().removesuffix("%").strip()
        try:
            share = float(value) / (100 if item.strip().endswith("%") else 1)
        except ValueError:
            share = -1.0
        if name not in names or not 0 < share <= 1 or name in given:
            fail(f"--mix {spec!r}: write PRODUCT=SHARE (a fraction of the parts released, above 0 and up to 1, or a "
                 f"percentage, each product once) with products of the scenario ({', '.join(names)}), e.g. "
                 f"{names[-1]}=0.4")
        given[name] = share
    mix, rest = sc.product_mix(), [n for n in names if n not in given]
    left = 1.0 - sum(given.values())
    if left < -1e-9 or (not rest and abs(left) > 1e-6):
        fail(f"--mix {spec!r}: the shares add up to {sum(given.values()):g}; those given must leave the other "
             "products their part of 1 (or, naming every product, add up to 1)")
    if missing := [n for n in names if not mix[n]]:
        fail(f"--mix {spec!r}: the release sequence has no part of {', '.join(missing)} to scale; write the "
             "alternative's release sequence in a copy of the scenario")
    want = {n: given[n] if n in given else mix[n] / sum(mix[r] for r in rest) * max(left, 0.0) for n in names}
    if gone := [n for n in names if want[n] <= 1e-9]:
        fail(f"--mix {spec!r}: that leaves {', '.join(gone)} no share; every product keeps one above 0 (a product not "
             "made any more: leave it out of the products of a copy of the scenario)")
    if all(abs(want[n] - mix[n]) < 1e-9 for n in names):
        fail(f"--mix {spec!r}: that is the scenario's mix already; the alternative would be the line as it is")
    label = "mix " + ", ".join(f"{n} {given[n]:.0%}" for n in given)
    if not sc.release:
        return label, sc.model_copy(update={"products": [p.model_copy(update={"share": want[p.name]})
                                                         for p in sc.products]})
    items = sc.release_runs()
    scaled = [(name, round(parts * want[name] / mix[name])) for name, parts in items]
    made = {n: sum(k for name, k in scaled if name == n) for n in names}
    if not all(made.values()) or any(abs(made[n] / sum(made.values()) - want[n]) > 0.005 for n in names):
        fail(f"--mix {spec!r}: the release sequence's campaigns ({sum(k for _, k in items):,} parts a cycle) cannot "
             "give those shares in whole parts; write the alternative's release sequence in a copy of the scenario")
    release = [name if k == 1 else Batch(product=name, parts=k) for name, k in scaled if k]
    return label, sc.model_copy(update={"release": release})


def _with_stock(sc: Scenario, spec: str) -> tuple[str, Scenario]:
    """--stock SPARE=N: N parts of the spare on hand at the start and kept (reordered one for one at N - 1 unless the
    scenario gives its own reorder point)."""
    name, _, value = spec.partition("=")
    known = {s.name: s for s in sc.spares}
    if name.strip() not in known or not value.strip().isdigit() or int(value) > 100_000:
        have = ", ".join(known) or "none (no fault mode's repair needs a part from stock)"
        fail(f"--stock {spec!r}: write SPARE=N (0 to 100000 parts) with a spare of the scenario: {have}")
    spare, n = known[name.strip()], int(value)
    if n == spare.stock:
        fail(f"--stock {spec!r}: {spare.name} keeps {n} in stock already; the alternative would be the line as it is")
    spares = [s.model_copy(update={"stock": n}) if s is spare else s for s in sc.spares]
    return f"{spare.name}: stock {n}", sc.model_copy(update={"spares": spares})


#: what a comparison sets for every alternative alike (its run), not taken from a variant's file
RUN_FIELDS = ("seed", "start", "duration", "warmup", "replications", "realtime_factor", "now")


def _with_variant(sc: Scenario, path: str, say: bool = True) -> tuple[str, Scenario]:
    """--variant FILE: another version of the same line (its file with a project's changes), run as the line is run
    here (seed, start, duration, warm-up, replications; from the same state read, for a what-if), its machines of the
    same names drawing what they drew as is; what differs from the line is said (unless not `say`)."""
    from pathlib import Path

    from twin.app.options import err_console
    from twin.scenario import ScenarioError, continue_from, load_scenario

    try:
        variant = load_scenario(path)
    except ScenarioError as e:
        fail(f"--variant: {e}")
    if variant.line != sc.line:
        fail(f"--variant {path}: its line is {variant.line.site}/{variant.line.area}/{variant.line.name}, not "
             f"{sc.line.site}/{sc.line.area}/{sc.line.name}; a variant is another version of the same line (a copy of "
             "its file with the change)")
    out = variant.model_copy(update={k: getattr(sc, k) for k in RUN_FIELDS if k != "now"})
    if sc.now is not None:  # a what-if: the variant from the same state read (its buffers' levels, its machines')
        out = continue_from(out, sc.now)[0]
    out._slots = sc.machine_order()  # the machines both have draw the same; new ones streams of their own
    changes = differences(sc.model_dump(by_alias=True, exclude=set(RUN_FIELDS)),
                          out.model_dump(by_alias=True, exclude=set(RUN_FIELDS)))
    if not changes:
        fail(f"--variant {path}: the same line as the scenario; change what the project would change in the copy")
    shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
    if say:
        err_console.print(f"note: variant {Path(path).name} differs from the line in: {shown}", highlight=False,
                          markup=False, soft_wrap=True)
    return f"variant {Path(path).name}", out


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two scenarios' data differ, as 'path: old → new' (a key or an entry only one has: 'path: added' or
    'removed'), in their order."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in dict.fromkeys([*a, *b]):
            where = f"{path}.{k}" if path else str(k)
            out += [f"{where}: added"] if k not in a else [f"{where}: removed"] if k not in b else \
                differences(a[k], b[k], where)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        named = all(isinstance(x, dict) and "name" in x for x in a + b)
        return [d for i, (x, y) in enumerate(zip(a, b))
                for d in differences(x, y, f"{path}[{x['name'] if named else i}]")]
    return [] if a == b else [f"{path}: {_short(a)} → {_short(b)}"]


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def with_buffer(sc: Scenario, spec: str) -> tuple[str, Scenario]:
    """--buffer STATION=PARTS: the buffer's capacity; what waits there now stays, up to it (an assembly's per
    feeder)."""
    i, size = _station_setting("--buffer", spec, sc, "PARTS")
    station, names = sc.stations[i].name, [s.name for s in sc.stations]
    fed = sc.source_fed()  # no buffer there
    if i in fed:
        fail(f"--buffer {spec!r}: station {station} takes parts from the line's saturated source and has no "
             f"buffer; give one of {', '.join(n for j, n in enumerate(names) if j not in fed)}")
    n = int(size)
    stations = [s.model_copy(update={"buffer": n, "initial": min(s.initial, n),
                                     "feeder_initial": {f: min(v, n) for f, v in s.feeder_initial.items()}})
                if s.name == station else s for s in sc.stations]
    return f"buffer {station} = {size}", sc.model_copy(update={"stations": stations})


def _with_shift(sc: Scenario, window: str) -> tuple[str, Scenario]:
    """--add-shift WINDOW: one more shift on the calendar's working days."""
    if sc.calendar is None:
        fail(f"--add-shift {window!r}: the scenario has no shift calendar (its line runs around the clock); "
             "give it a calendar: to add a shift to")
    from pydantic import ValidationError

    from twin.scenario import Calendar

    try:
        cal = Calendar.model_validate({**sc.calendar.model_dump(), "shifts": [*sc.calendar.shifts, window]})
    except ValidationError as e:
        fail(f"--add-shift {window!r}: {e.errors()[0]['msg'].removeprefix('Value error, ')}")
    a, b = Calendar(shifts=[window]).spans()[0]
    if sc.calendar.day_length((a, b)) < sc.calendar.day_length() + (b - a) - 1e-6:
        fail(f"--add-shift {window!r} overlaps the scenario's shifts ({', '.join(sc.calendar.shifts)}); give a "
             "window outside them")
    return f"extra shift {window}", sc.model_copy(update={"calendar": cal})


def alternatives(sc: Scenario, crews: list[str], policies: list[str], buffers: list[str],
                  shifts: list[str] | None = None, machines: list[str] | None = None,
                  cycles: list[str] | None = None, batches: list[str] | None = None,
                  transfers: list[str] | None = None, off_shift: bool = False, mixes: list[str] | None = None,
                  stocks: list[str] | None = None, on_calls: list[str] | None = None, combined: bool = False,
                  variants: list[str] | None = None, say: bool = True) -> list[tuple[str, Scenario]]:
    """The scenario as it is, then one alternative per option given (a named, changed copy each); each one once.
    `combined`: then one more, with every change at once (a machine and a buffer together: their interplay). A
    mistake in an option ends the command with a clear message; `say`: tell what each variant changes (a what-if checks
    its alternatives once before the line's state is read, quietly)."""
    given = (("--extra-crew", crews, _with_crew), ("--policy", policies, _with_policy),
             ("--buffer", buffers, with_buffer), ("--add-shift", shifts or [], _with_shift),
             ("--machines", machines or [], _with_machines), ("--cycle-time", cycles or [], _with_cycle),
             ("--batch", batches or [], _with_batch), ("--transfer", transfers or [], _with_transfer),
             ("--service-off-shift", ["off-shift"] if off_shift else [], _with_service_when),
             ("--mix", mixes or [], _with_mix), ("--stock", stocks or [], _with_stock),
             ("--on-call", on_calls or [], _with_on_call),
             ("--variant", variants or [], partial(_with_variant, say=say)))
    for option, specs, _ in given:
        if (twice := repeated(specs)) is not None:
            fail(f"{option} {twice!r} is given twice; give each alternative once")
    changes = [(option, spec, change) for option, specs, change in given for spec in specs]
    out = [("as is", sc), *(change(sc, spec) for _, spec, change in changes)]
    changes = [c for c in changes if c[0] != "--variant"]  # a variant is a whole version of the line: on its own
    if combined:
        if len(changes) < 2:
            fail("--combined runs the alternatives given together as one more: give two or more (a --variant is a "
                 "whole version of the line and runs on its own)")
        _one_each(changes)
        together, labels = sc, []
        for _, spec, change in changes:
            label, together = change(together, spec)
            labels.append(label)
        out.append((" + ".join(labels), together))
    for label, alt in out[1:]:
        _check(label, alt)
    return out


def _one_each(changes: list[tuple[str, str, Any]]) -> None:
    """Combined changes set each setting once: two policies, or two sizes of one station's buffer, contradict (crews
    and shifts add up)."""
    seen: dict[tuple[str, str], str] = {}
    for option, spec, _ in changes:
        if option in ("--extra-crew", "--add-shift"):
            continue
        key = (option, "" if option in ("--policy", "--mix") else spec.partition("=")[0].strip())
        if key in seen:
            fail(f"--combined: {option} {seen[key]!r} and {spec!r} set the same thing; combine each setting once")
        seen[key] = spec


def _check(label: str, alt: Scenario) -> None:
    """An alternative must keep the rules a scenario file is held to (a conveyor needs places: a buffer of 0 on one
    is refused in a file, and would be in an alternative); its copy was changed without them, so check it whole."""
    from pydantic import ValidationError

    try:
        type(alt).model_validate(alt.model_dump(by_alias=True))
    except ValidationError as e:
        why = e.errors()[0]["msg"].removeprefix("Value error, ")
        fail(f"the alternative {label!r} breaks a rule of scenarios: {why}")


#: what `twin sensitivity` makes better, one at a time at each station where the line has it
LEVERS = {"cycle": "cycle time", "failures": "failures", "repairs": "repair time", "services": "service time",
          "setups": "setup time", "scrap": "scrap", "minor-stops": "minor stops", "buffer": "buffer",
          "crew": "technician"}
LINE = "line"  # the 'station' of a lever of the whole line (a crew's technician)


def levers(sc: Scenario, by: float, chosen: Collection[str] = tuple(LEVERS), stations: Collection[str] = ()
           ) -> list[tuple[str, str, str, Scenario]]:
    """Each station's levers, each made `by` (a share, 0.1 = 10 %) better on its own: its cycle times shorter, its
    machines' failures rarer (every fault mode's time to failure longer by 1 / (1 - by)), repairs, planned services
    and setups shorter, scrap rarer, minor stops rarer, the buffer in front `by` larger (at least one place more); only
    those the station has; and for the line, one more technician in each repair crew. A change to a machine type shared
    by several stations is made to a copy of it for this station alone. As (label, station, lever, scenario), the
    machines drawing what they drew as is (common random numbers)."""
    import math

    from twin.distributions import scaled

    out: list[tuple[str, str, str, Scenario]] = []
    keep = 1.0 - by
    fed = sc.source_fed()  # parts always at hand: no buffer in front to grow
    for i, st in enumerate(sc.stations):
        if stations and st.name not in stations:
            continue
        mt = sc.machine_types[st.machine_type]
        shared = sum(s.machine_type == st.machine_type for s in sc.stations) > 1

        def with_type(changed: Any, st: Any = st, i: int = i, shared: bool = shared) -> Scenario:
            """The line with station i's machine type changed (a copy of its own where others share it)."""
            name = st.machine_type
            if shared:  # a name of its own within a name's 64 characters
                name = next(n for k in range(1, 1000) if (n := f"{st.machine_type}-{st.name}"[:58]
                                                          + (f"-{k}" if k > 1 else "")) not in sc.machine_types)
            types = {**sc.machine_types, name: changed}
            stations_ = [s.model_copy(update={"machine_type": name}) if j == i else s
                         for j, s in enumerate(sc.stations)]
            return sc.model_copy(update={"machine_types": types, "stations": stations_})

        def with_station(update: dict[str, Any], i: int = i) -> Scenario:
            return sc.model_copy(update={"stations": [s.model_copy(update=update) if j == i else s
                                                      for j, s in enumerate(sc.stations)]})

        changes: dict[str, Scenario] = {}
        if "cycle" in chosen:
            changes["cycle"] = with_station({
                "cycle_time": scaled(st.cycle_time, keep),
                "cycle_times": {p: scaled(d, keep) for p, d in st.cycle_times.items()},
                "machine_cycle_times": {m: scaled(d, keep) for m, d in st.machine_cycle_times.items()},
                "ideal_cycle_time": st.ideal_cycle_time * keep if st.ideal_cycle_time is not None else None,
                "ideal_cycle_times": {p: t * keep for p, t in st.ideal_cycle_times.items()}})
        if mt.fault_modes and "failures" in chosen:
            changes["failures"] = with_type(mt.model_copy(update={"fault_modes": [
                f.model_copy(update={"ttf": scaled(f.ttf, 1 / keep)}) for f in mt.fault_modes]}))
        if mt.fault_modes and "repairs" in chosen:
            changes["repairs"] = with_type(mt.model_copy(update={"fault_modes": [
                f.model_copy(update={"repair": scaled(f.repair, keep)}) for f in mt.fault_modes]}))
        if mt.maintenance.policy != "run-to-failure" and "services" in chosen:
            changes["services"] = with_type(mt.model_copy(update={"maintenance": mt.maintenance.model_copy(
                update={"duration": scaled(mt.maintenance.duration, keep)})}))
        if (st.changeover is not None or st.setup_matrix) and "setups" in chosen:
            changes["setups"] = with_station({
                "changeover": st.changeover.model_copy(update={"duration": scaled(st.changeover.duration, keep)})
                if st.changeover is not None else None,
                "setup_matrix": {a: {b: scaled(d, keep) for b, d in row.items()}
                                 for a, row in st.setup_matrix.items()}})
        if (st.scrap or st.scrap_by_product or st.startup_scrap) and "scrap" in chosen:
            changes["scrap"] = with_station({
                "scrap": st.scrap * keep, "scrap_by_product": {p: q * keep for p, q in st.scrap_by_product.items()},
                "startup_scrap": st.startup_scrap.model_copy(update={"scrap": st.startup_scrap.scrap * keep})
                if st.startup_scrap is not None else None})
        if mt.minor_stops is not None and "minor-stops" in chosen:
            changes["minor-stops"] = with_type(mt.model_copy(update={"minor_stops": mt.minor_stops.model_copy(
                update={"every": scaled(mt.minor_stops.every, 1 / keep)})}))
        more = 0
        if st.buffer is not None and i not in fed and "buffer" in chosen:
            more = max(1, math.ceil(st.buffer * by - 1e-9))
            changes["buffer"] = with_station({"buffer": st.buffer + more})
        for lever, alt in changes.items():
            alt._slots = sc.machine_order()
            label = f"{st.name}: {LEVERS[lever]} −{by:.0%}" if lever != "buffer" else \
                f"{st.name}: buffer +{more} place{'s' * (more > 1)}"
            _check(label, alt)
            out.append((label, st.name, lever, alt))
    if "crew" in chosen and (not stations or LINE in stations):
        for crew in sc.repair_crews:
            label, alt = _with_crew(sc, crew.name)
            alt._slots = sc.machine_order()
            out.append((label, LINE, "crew", alt))
    return out
