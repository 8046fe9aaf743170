"""Lines as graphs: routing by probability, round robin and shortest queue, merges, rework loops and assembly,
checked against exact results (`../shared/reference/simulator-validation.md`) and for clear mistakes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from tests.helpers import const, exp, interval, kpi, replicate, scenario
from twin.model import Line

REPS = 8


def assert_contains(ci: tuple[float, float, float], exact: float) -> None:
    mean, lo, hi = ci
    assert lo <= exact <= hi, f"95 % CI [{lo:.4f}, {hi:.4f}] (mean {mean:.4f}) misses the exact {exact:.4f}"


def jackson() -> Any:
    """The worked case, in minutes: arrivals 0.5 to A; A -> B 0.6, C 0.4; B -> out; C -> out 0.8, A 0.2 (rework);
    service rates 1.2, 0.5, 0.5."""
    return scenario([
        {"name": "A", "cycle_time": exp(60 / 1.2), "next": [{"to": "B", "p": 0.6}, {"to": "C", "p": 0.4}]},
        {"name": "B", "cycle_time": exp(120), "next": "exit"},
        {"name": "C", "cycle_time": exp(120), "next": [{"to": "exit", "p": 0.8}, {"to": "A", "p": 0.2}]},
    ], source={"kind": "arrivals", "interarrival": exp(120)}, duration="60 d", warmup="1 d", seed=11)


@pytest.mark.slow  # statistical: 8 replications of 60 days
def test_open_jackson_network_with_split_and_rework_matches_the_traffic_equations() -> None:
    k = replicate(jackson(), REPS)
    for station, rho, L in (("A", 0.452899, 0.827815), ("B", 0.652174, 1.875), ("C", 0.434783, 0.769231)):
        assert_contains(interval(k, "utilisation", station), rho)
        assert_contains(interval(k, "wip at station [parts]", station), L)
        assert_contains(interval(k, "buffer level [parts]", station), L - rho)  # waiting: Lq = L - rho
    assert_contains(interval(k, "wip [parts]", "line"), 3.472045)
    assert_contains(interval(k, "time in system [min]", "line"), 6.9441)
    assert_contains(interval(k.assign(value=k.value / 60), "departures [parts/h]", "line"), 0.5)


def test_a_finite_buffers_level_full_and_empty_time_match_the_exact_two_machine_line() -> None:
    """A buffer's statistics, what sizing it asks (its mean level, how long it is full and the station before it
    blocked, how long empty): none was reported. Exponential A (60 s) into a buffer of 5 in front of exponential B
    (50 s), blocking after service, is a birth-death chain of 8 states (B's buffer and machine 0-6, then A blocked
    holding a 7th part): P(n) = (1 - r) r^n / (1 - r^8), r = 50/60."""
    r = 50 / 60
    p = np.array([(1 - r) * r**n / (1 - r**8) for n in range(8)])
    waiting = np.array([0, 0, 1, 2, 3, 4, 5, 5])  # in the buffer: all but B's part; A's blocked part is not in it
    k = replicate(scenario([{"name": "A", "cycle_time": exp(60)}, {"name": "B", "cycle_time": exp(50), "buffer": 5}],
                           duration="20 d", warmup="1 d", seed=5), REPS)
    assert_contains(interval(k, "buffer level [parts]", "B"), float(waiting @ p))
    assert_contains(interval(k, "buffer full share", "B"), float(p[6:].sum()))
    assert_contains(interval(k, "buffer empty share", "B"), float(p[:2].sum()))
    assert_contains(interval(k, "wip at station [parts]", "B"), float(np.minimum(np.arange(8), 6) @ p))
    assert (kpi(k, "buffer max level [parts]", "B") == 5).all()


def test_visit_ratios_follow_the_traffic_equations() -> None:
    v = jackson().visits()
    assert np.allclose(v, [0.543478 / 0.5, 0.326087 / 0.5, 0.217391 / 0.5], atol=1e-5)


def test_assembly_runs_at_the_slowest_input_per_quantity() -> None:
    """Deterministic times, unlimited buffers: 1 body (60 s) + 4 doors (20 s each) into a 30 s marriage station
    make one car every max(30, 60, 4 x 20) = 80 s."""
    sc = scenario([{"name": "body", "cycle_time": const(60), "next": "marriage"},
                   {"name": "doors", "cycle_time": const(20), "next": "marriage"},
                   {"name": "marriage", "cycle_time": const(30), "assemble": {"body": 1, "doors": 4}}],
                  duration="2 d", warmup="1 h")
    k = replicate(sc, 1)
    assert kpi(k, "throughput [parts/h]")[0] == pytest.approx(3600 / 80, rel=0.002)
    assert kpi(k, "constraint station")[0] == 1  # the doors: 4 visits x 20 s per car
    line = Line(sc, 0)
    line.run(sc.duration)
    exit_, fate = line.fates()
    doors = np.frombuffer(line.entry) >= 0  # every part: bodies carry on, doors end inside a car
    assert (fate[doors] >= -2).all() and np.isnan(exit_).sum() > 0
    assert kpi(k, "oee quality", "line")[0] == 1.0


@pytest.mark.parametrize("route", ["round-robin", "shortest-queue"])
def test_splitting_to_parallel_stations_shares_the_work(route: str) -> None:
    sc = scenario([{"name": "feed", "cycle_time": const(10), "next": [{"to": "left"}, {"to": "right"}],
                    "route": route},
                   {"name": "left", "cycle_time": const(18), "buffer": 2, "next": "pack"},
                   {"name": "right", "cycle_time": const(18), "buffer": 2, "next": "pack"},
                   {"name": "pack", "cycle_time": const(5), "buffer": 4}], duration="1 d")
    k = replicate(sc, 1)
    left, right = kpi(k, "parts", "left")[0], kpi(k, "parts", "right")[0]
    assert abs(left - right) <= 2 and left + right == pytest.approx(86400 / 10, rel=0.01)  # the feed is the limit


def test_rework_loop_conserves_parts_and_scrap_is_by_station() -> None:
    sc = scenario([{"name": "weld", "cycle_time": exp(50)},
                   {"name": "inspect", "cycle_time": const(20), "buffer": 5, "scrap": 0.02,
                    "next": [{"to": "exit", "p": 0.85}, {"to": "rework", "p": 0.15}]},
                   {"name": "rework", "cycle_time": exp(120), "buffer": 5, "next": "inspect"}], duration="5 d")
    line = Line(sc, 0)
    line.run(sc.duration)
    exit_, fate = line.fates()
    done = ~np.isnan(exit_)
    assert (fate[done & (fate >= 0)] == 1).all()  # only the inspection scraps
    assert done.sum() + line.wip == len(exit_)
    k = replicate(sc, 1)
    assert kpi(k, "parts", "rework")[0] == pytest.approx(0.15 * 0.98 * kpi(k, "parts", "inspect")[0], rel=0.1)


@pytest.mark.parametrize(("change", "message"), [
    ({1: {"next": "nowhere"}}, r"stations\[1\]\.next: no station named 'nowhere'"),
    ({0: {"next": [{"to": "b", "p": 0.5}, {"to": "c", "p": 0.4}]}}, "add up to 0.9, not 1"),
    ({0: {"next": [{"to": "b"}, {"to": "c", "p": 0.4}]}}, "every route needs 'p'"),
    ({2: {"next": "b"}, 1: {"next": "c"}}, r"can never leave the line"),
    ({2: {"assemble": {"a": 1}}}, r"station 'a' does not send its parts here"),
    ({1: {"next": "b"}}, "sends parts to itself"),
])
def test_graph_mistakes_are_named(change: dict[int, dict[str, Any]], message: str, tmp_path: Any) -> None:
    import yaml

    from twin.scenario import ScenarioError, load_scenario

    stations = [{"name": "a", "machine_type": "m", "cycle_time": 10}, {"name": "b", "machine_type": "m",
                "cycle_time": 10}, {"name": "c", "machine_type": "m", "cycle_time": 10}]
    for i, fields in change.items():
        stations[i].update(fields)
    f = tmp_path / "g.yaml"
    f.write_text(yaml.safe_dump({"line": {"site": "s", "area": "a", "name": "n"}, "seed": 1, "duration": 100,
                                 "machine_types": {"m": {}}, "stations": stations}, sort_keys=False))
    with pytest.raises(ScenarioError, match=message):
        load_scenario(f)


def test_before_service_blocking_needs_a_serial_line() -> None:
    with pytest.raises(ValidationError, match="before-service blocking needs a serial line"):
        scenario([{"name": "a", "cycle_time": const(5), "next": "b"}, {"name": "b", "cycle_time": const(5)}],
                 blocking="before-service")


def test_a_saturated_first_station_cannot_take_parts_back() -> None:
    with pytest.raises(ValidationError, match="no station can send parts back to it"):
        scenario([{"name": "a", "cycle_time": const(5)},
                  {"name": "b", "cycle_time": const(5), "next": [{"to": "exit", "p": 0.9}, {"to": "a", "p": 0.1}]}])


def test_a_long_line_is_drawn_in_rows_with_its_routes_between_them() -> None:
    """80 cells in one chart were specks on the overview: a line of more than MAX_ROW stations is drawn as rows of
    about ROW_STATIONS, every machine once, a part's way to another row as '→ station' there and 'station →' here,
    a rework loop from the last row back to the first as well."""
    from dashboard.charts import MAX_ROW, ROW_STATIONS, line_dot, line_dots

    short = scenario([{"name": f"s{i:02d}", "cycle_time": const(5)} for i in range(MAX_ROW)])
    assert line_dots(short, {}) == [line_dot(short, {})]
    assert (MAX_ROW, ROW_STATIONS) == (8, 6)  # the rows below: 25 stations in 5 rows of 5
    stations = [{"name": f"s{i:02d}", "cycle_time": const(5), **({"machines": 2} if i == 5 else {})}
                for i in range(25)]
    stations[-1]["next"] = [{"to": "exit", "p": 0.9}, {"to": "s02", "p": 0.1}]
    rows = line_dots(scenario(stations), {"s07": "down"}, link="machine")
    drawn = [[line.split('"')[1] for line in dot.splitlines() if "shape=box" in line] for dot in rows]
    assert drawn == [[f"s{i:02d}" for i in range(5)], ["s05-1", "s05-2", "s06", "s07", "s08", "s09"],
                     *([f"s{i}" for i in range(a, a + 5)] for a in (10, 15, 20))]
    first, second, *_, last = rows
    assert '"s04" -> "to:s05";' in first and '"to:s05" [shape=plaintext, style="", label="→ s05"];' in first
    assert '"from:s04" -> "buf:s05";' in second and '"s09" -> "to:s10";' in second
    assert '"s24" -> "to:s02" [label="10%"];' in last and '"s24" -> "exit" [label="90%"];' in last
    assert '"from:s24" -> "buf:s02" [label="10%"];' in first  # the loop arrives in the first row
    assert all('"exit"' not in dot for dot in rows[:-1])
    assert 'label="s07\\ndown"' in second and 'URL="machine?machine=s07"' in second


_EDGE = re.compile(r'^"([^"]+)" -> "([^"]+)"(.*);$')


def _edges(dot: str) -> set[tuple[str, str, str]]:
    """A drawing's edges, their labels without the layout hint a rework loop gets inside one row."""
    return {(a, b, re.sub(r",? ?constraint=false", "", c).replace(" []", ""))
            for a, b, c in (m.groups() for m in map(_EDGE.match, dot.splitlines()) if m)}


@pytest.mark.parametrize("path", [*sorted(Path("scenarios").glob("*.yaml")),
                                  *sorted(Path("tests/scenarios").glob("*.yaml"))], ids=lambda p: p.stem)
def test_rows_of_any_line_draw_every_machine_once_and_every_route(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every bundled line cut into rows of two stations (merges, assembly feeders, rework loops, ovens and conveyors
    across rows): each machine drawn once, and each route of the whole drawing drawn in a row or as a pair of stubs,
    '→ station' in its row and 'station →' into the same buffer or machine in the other."""
    from dashboard import charts
    from twin.scenario import load_scenario

    sc = load_scenario(path)
    whole = _edges(charts.line_dot(sc, {}))
    monkeypatch.setattr(charts, "MAX_ROW", 1)
    monkeypatch.setattr(charts, "ROW_STATIONS", 2)
    rows = charts.line_dots(sc, {})
    assert len(rows) == -(-len(sc.stations) // 2)
    drawn = [line.split('"')[1] for dot in rows for line in dot.splitlines() if "shape=box" in line]
    assert sorted(drawn) == sorted(m for st in sc.stations for m in st.machine_names)
    got = set().union(*map(_edges, rows))
    inside = {e for e in got if not e[0].startswith("from:") and not e[1].startswith("to:")}
    assert inside <= whole
    station_of = {m: st.name for st in sc.stations for m in st.machine_names}
    for a, b, label in whole - inside:  # a route between rows
        target = b[4:].split("<")[0] if b.startswith("buf:") else station_of[b]
        assert (a, f"to:{target}", label) in got and (f"from:{station_of[a]}", b, label) in got, (a, b)


def test_schematic_draws_merges_assembly_buffers_and_rework_loops() -> None:
    from dashboard.charts import line_dot
    from twin.scenario import load_scenario

    dot = line_dot(load_scenario("scenarios/body_shop_merge.yaml"), {"vision": "working"})
    assert '"buf:framing<underbody" -> "framing";' in dot and '"buf:framing<side-frames" -> "framing";' in dot
    assert '"side-frame-left" -> "buf:framing<side-frames";' in dot  # both side-frame cells merge into one buffer
    assert '"side-frame-right" -> "buf:framing<side-frames";' in dot
    assert '"vision" -> "exit" [label="94%"];' in dot and '"vision" -> "buf:rework" [label="6%"];' in dot
    assert '"rework" -> "buf:vision" [constraint=false];' in dot  # the loop runs back upstream


# --- batch processes (ovens, washers, furnaces) -----------------------------------------------------------------

def _batches(line: Line, station: int = 0, machine: int = 0) -> list[tuple[float, int]]:
    """(start in minutes, parts) of each batch a machine of the station worked."""
    begun = np.frombuffer(line.stations[station][machine].log.begun) / 60
    start, parts = np.unique(begun, return_counts=True)
    return [(float(t), int(n)) for t, n in zip(start, parts)]


def test_a_batch_waits_to_fill_or_starts_once_its_wait_has_passed() -> None:
    """Parts every 10 min into an oven of 8 that waits 24 min once it holds a first part, 47 min a batch: the first
    batch starts at 34 with the parts of 10, 20 and 30; at 81 the five queued since come at once and wait for 90 and
    100 until 105 (81 + 24); and so on, 7 a batch."""
    sc = scenario([{"name": "oven", "cycle_time": const(47 * 60), "batch": {"size": 8, "wait": "24 min"}}],
                  source={"kind": "arrivals", "interarrival": const(600)}, duration="10 h")
    line = Line(sc, 0)
    line.run(sc.duration)
    assert _batches(line)[:4] == [(34.0, 3), (105.0, 7), (176.0, 7), (247.0, 7)]
    full = scenario([{"name": "oven", "cycle_time": const(47 * 60), "batch": {"size": 8}}],
                    source={"kind": "arrivals", "interarrival": const(600)}, duration="10 h")
    line = Line(full, 0)
    line.run(full.duration)
    assert _batches(line)[:2] == [(80.0, 8), (160.0, 8)]  # without a wait, only full batches: the 8th part at 80


def test_a_batch_line_runs_at_the_batch_rate_and_partial_batches_cost_performance() -> None:
    """A saturated lathe (1 min) feeding an oven of 60 parts (90 min) and a grinder: 40 parts an hour, the oven the
    constraint, its performance whole; Little's law holds. The same oven fed every 10 min with a 24-minute wait works
    7 or 8 a batch: its performance is its mean batch over 8 (a part short is a speed loss), and it makes what
    arrives."""
    sc = scenario([{"name": "turn", "cycle_time": const(60)},
                   {"name": "harden", "cycle_time": const(5400), "buffer": 200, "batch": {"size": 60}},
                   {"name": "grind", "cycle_time": const(60), "buffer": 100}], duration="40 d", warmup="1 d")
    from dashboard.charts import line_dot

    assert 'label="harden (batch of 60)"' in line_dot(sc, {})
    k = replicate(sc, 1)
    assert kpi(k, "throughput [parts/h]")[0] == pytest.approx(40, rel=0.002)
    assert kpi(k, "constraint station")[0] == 1 and kpi(k, "bottleneck station")[0] == 1
    assert 0.998 <= kpi(k, "oee performance", "harden")[0] <= 1.0
    assert kpi(k, "wip [parts]")[0] == pytest.approx(kpi(k, "throughput [parts/h]")[0] / 60 *
                                                     kpi(k, "time in system [min]")[0], rel=0.01)
    fed = scenario([{"name": "oven", "cycle_time": const(47 * 60), "batch": {"size": 8, "wait": "24 min"}}],
                   source={"kind": "arrivals", "interarrival": const(600)}, duration="20 d", warmup="1 d")
    k = replicate(fed, 1)
    assert kpi(k, "throughput [parts/h]")[0] == pytest.approx(6, rel=0.002)
    line = Line(fed, 0)
    line.run(fed.duration)
    sizes = [n for t, n in _batches(line) if t >= 24 * 60]
    assert 7 <= np.mean(sizes) < 8  # a batch every 47 + 24 min at 6 parts an hour
    assert kpi(k, "oee performance", "oven")[0] == pytest.approx(np.mean(sizes) / 8, rel=0.005)


def test_a_batch_station_with_failures_scrap_routes_operators_and_shifts_keeps_every_part() -> None:
    """Random times, failures mid-batch, scrap per part, a split after the oven, an operator to load it and a shift
    calendar: every part that came in is inside, scrapped or out, once; batches never exceed their size nor start
    short of `min`."""
    sc = scenario([{"name": "wash", "cycle_time": exp(50), "next": "oven"},
                   {"name": "oven", "machine_type": "oven", "machines": 2, "buffer": 40,
                    "cycle_time": {"dist": "uniform", "low": 1500, "high": 2100},
                    "scrap": 0.05, "batch": {"size": 30, "min": 10, "wait": "20 min"}, "operators": {"pool": "crew"},
                    "next": [{"to": "a", "p": 0.5}, {"to": "b", "p": 0.5}]},
                   {"name": "a", "cycle_time": exp(90), "buffer": 20, "next": "exit"},
                   {"name": "b", "cycle_time": exp(90), "buffer": 20, "next": "exit"}],
                  machine_types={"m": {}, "oven": {"fault_modes": [
                      {"name": "burner", "kind": "sudden", "ttf": exp(8 * 3600), "repair": exp(1800)}]}},
                  operators=[{"name": "crew", "size": 1}], duration="5 d",
                  calendar={"shifts": ["06:00-22:00"], "days": ["mon", "tue", "wed", "thu", "fri"]})
    line = Line(sc, 0)
    line.run(sc.duration)
    exit_, fate = line.fates()
    assert len(exit_) == len(np.frombuffer(line.entry))
    for k, m in enumerate(line.stations[1]):
        sizes = [n for _, n in _batches(line, 1, k)]
        assert len(sizes) > 20 and max(sizes) == 30 and min(sizes) >= 10 and min(sizes) < 30
        assert len(m.log.finished) + len(m.log.scrapped) <= m.parts_done
    assert (fate >= -2).all()
    k = replicate(sc, 1)
    assert 0 < kpi(k, "oee performance", "oven")[0] <= 1 and kpi(k, "failures").sum() > 0


@pytest.mark.parametrize(("batch", "extra", "message"), [
    ({"size": 8, "min": 9, "wait": "1 h"}, {}, r"min \(9\) is more than the batch size \(8\)"),
    ({"size": 8, "min": 4}, {}, "starts a batch short of its size only after a wait; give wait:"),
    ({"size": 1}, {}, "greater than or equal to 2"),
    ({"size": 8}, {"changeover": {"every_parts": 10, "duration": 60}}, "changeover is not for one"),
])
def test_batch_mistakes_are_named(batch: dict[str, Any], extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        scenario([{"name": "oven", "cycle_time": const(60), "batch": batch, **extra}])


def test_a_batch_cannot_reserve_space_before_service() -> None:
    with pytest.raises(ValidationError, match=r"stations\[1\]\.batch: a batch station holds the parts of its batch"):
        scenario([{"name": "a", "cycle_time": const(5)}, {"name": "b", "cycle_time": const(50), "buffer": 5,
                                                          "batch": {"size": 10}}], blocking="before-service")


def _conveyor_line(places: int | None, **top: Any) -> Any:
    """A saturated 1-min station feeding a 1-min one over a conveyor of 5 min with `places` places (None: any)."""
    return scenario([{"name": "A", "cycle_time": const(60)},
                     {"name": "B", "cycle_time": const(60), "transfer": "5 min", "buffer": places}], **top)


def test_a_conveyor_delays_each_part_and_its_places_limit_the_flow() -> None:
    """With room for any number, every part takes 1 + 5 + 1 min and the line makes 60 an hour. With 2 places the
    conveyor is the constraint, 2 parts per 5 min: A blocks while both are on it; parts leave at 7, 8, 12, 13, ...,
    taking 7 and 10 min in turn (the second of each pair waited at A for a place)."""
    line = Line(free := _conveyor_line(None, duration="2 h"), 0)
    line.run(free.duration)
    b = line.stations[1][0]
    assert np.frombuffer(b.log.finished)[:4].tolist() == [420.0, 480.0, 540.0, 600.0]
    k = replicate(_conveyor_line(None, duration="1 d", warmup="1 h"), 1)
    assert kpi(k, "throughput [parts/h]")[0] == pytest.approx(60, rel=1e-3)
    assert kpi(k, "time in system [min]")[0] == pytest.approx(7, rel=1e-3)
    line = Line(short := _conveyor_line(2, duration="2 h"), 0)
    line.run(short.duration)
    assert np.frombuffer(line.stations[1][0].log.finished)[:6].tolist() == [m * 60.0 for m in (7, 8, 12, 13, 17, 18)]
    k = replicate(_conveyor_line(2, duration="1 d", warmup="1 h"), 1)
    assert kpi(k, "throughput [parts/h]")[0] == pytest.approx(24, rel=1e-3)
    assert kpi(k, "time in system [min]")[0] == pytest.approx(8.5, rel=1e-3)
    assert kpi(k, "wip at station [parts]", "B")[0] == pytest.approx(2 + 24 / 60 * 1, abs=0.01)  # on it, or in B
    assert kpi(k, "wip [parts]")[0] == pytest.approx(24 / 60 * 8.5, rel=1e-3)  # Little's law
    assert kpi(k, "blocked share", "A")[0] == pytest.approx(0.6, abs=0.01)
    assert short.conveyor_notes() == ["the conveyor into B (2 places, 300 s) carries at most 24 parts/h out of the "
                                      "line, below its stations' design rate of 60: it limits the line; give it more "
                                      "places (buffer) or a shorter transfer if it should not"]
    assert not _conveyor_line(5).conveyor_notes() and not free.conveyor_notes()
    from dashboard.charts import line_dot

    assert 'label="cap 2\\nconveyor 5 min"' in line_dot(short, {})


def test_parts_on_conveyors_keep_their_order_and_time_through_failures_merges_assembly_and_shifts() -> None:
    """Random cycles, two feeders merging over one conveyor, an assembly fed over conveyors, failures on a calendar
    clock (a machine waiting at a conveyor's end can fail there), shifts: no part reaches a station before its
    transfer time has passed since it left, and every part is inside or out once."""
    sc = scenario([{"name": "a1", "cycle_time": exp(70), "next": "join"},
                   {"name": "a2", "cycle_time": exp(70), "next": "join"},
                   {"name": "join", "cycle_time": exp(30), "transfer": "3 min", "buffer": 6, "next": "fit"},
                   {"name": "door", "cycle_time": exp(20), "next": "fit"},
                   {"name": "fit", "machine_type": "f", "cycle_time": exp(40), "transfer": "90 s", "buffer": 4,
                    "assemble": {"join": 1, "door": 2}, "next": "exit"}],
                  machine_types={"m": {}, "f": {"clock": "calendar", "fault_modes": [
                      {"name": "jam", "kind": "sudden", "ttf": exp(3 * 3600), "repair": exp(600)}]}},
                  duration="6 d", warmup="1 d",
                  calendar={"shifts": ["06:00-22:00"], "days": ["mon", "tue", "wed", "thu", "fri"]})
    line = Line(sc, 0)
    line.run(sc.duration)
    join, fit = line.stations[2][0], line.stations[4][0]
    came = np.sort(np.concatenate([np.frombuffer(m.log.finished) for g in line.stations[:2] for m in g]))
    took = np.frombuffer(join.log.begun)
    assert len(took) > 1000 and (took >= came[:len(took)] + 180 - 1e-6).all()  # FIFO: the k-th in, the k-th out
    assert (np.frombuffer(fit.log.begun) >= np.frombuffer(join.log.finished)[:len(fit.log.begun)] + 90 - 1e-6).all()
    exit_, fate = line.fates()
    assert len(exit_) == len(np.frombuffer(line.entry)) and (fate >= -2).all()
    assert sum(len(m.log.t) for m in line.stations[4]) > 0 and replicate(sc, 1).pipe(kpi, "failures").sum() > 0


@pytest.mark.parametrize(("stations", "message"), [
    ([{"name": "a", "cycle_time": const(5), "transfer": "1 min"}],
     r"stations\[0\]\.transfer: station a takes parts from the source, which is saturated"),
    ([{"name": "a", "cycle_time": const(5)}, {"name": "b", "cycle_time": const(5), "transfer": "1 min", "buffer": 0}],
     r"stations\[1\]\.buffer: station b has a transfer, whose parts are in its buffer while on the way"),
    ([{"name": "a", "cycle_time": const(5)}, {"name": "b", "cycle_time": const(5), "transfer": 0}],
     "greater than 0"),
])
def test_conveyor_mistakes_are_named(stations: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        scenario(stations)


@pytest.mark.parametrize("blocking", ["after-service", "before-service"])
def test_conveyors_hold_their_time_under_either_blocking_with_parallel_machines(blocking: str) -> None:
    """Two conveyors, the first into two machines in parallel, failures and shifts, blocking after or before
    service: the k-th part a station starts left the station before at least the transfer time earlier, and every
    part is inside or out once."""
    sc = scenario([{"name": "a", "cycle_time": exp(60)},
                   {"name": "b", "cycle_time": exp(50), "transfer": "4 min", "buffer": 3, "machines": 2},
                   {"name": "c", "cycle_time": exp(55), "transfer": "1 min", "buffer": 2}],
                  machine_types={"m": {"fault_modes": [{"name": "jam", "kind": "sudden", "ttf": exp(3600),
                                                        "repair": exp(300)}]}},
                  duration="3 d", blocking=blocking,
                  calendar={"shifts": ["06:00-22:00"], "days": ["mon", "tue", "wed", "thu", "fri"]})
    line = Line(sc, 0)
    line.run(sc.duration)

    def times(k: int, log: str) -> np.ndarray:
        return np.sort(np.concatenate([np.frombuffer(getattr(m.log, log)) for m in line.stations[k]]))

    for k, transfer in ((1, 240), (2, 60)):
        took, came = times(k, "begun"), times(k - 1, "finished")
        assert len(took) > 1000 and (took >= came[:len(took)] + transfer - 1e-6).all()
    exit_, fate = line.fates()
    assert len(exit_) == len(np.frombuffer(line.entry)) and (fate >= -2).all()
