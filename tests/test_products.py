"""Several products on one line: release mix or sequence, cycle times and scrap per product, sequence-dependent
setups from a changeover matrix, and KPIs per product (Little's law per product)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import hypothesis.strategies as hs
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings

from tests.helpers import const, exp, kpi, replicate, scenario
from twin.model import Line

REPS = 8


def test_setup_matrix_with_deterministic_times_gives_the_cycle_of_setups() -> None:
    """Release A, A, B over and over; A takes 10 s, B 20 s; setups A->B 30 s, B->A 40 s: one cycle of three parts
    every 10 + 10 + 20 + 30 + 40 = 110 s."""
    sc = scenario([{"name": "m1", "cycle_time": const(10), "cycle_times": {"B": const(20)},
                    "setup_matrix": {"A": {"B": const(30)}, "B": {"A": const(40)}}}],
                  products=[{"name": "A"}, {"name": "B"}], release=["A", "A", "B"], duration="1 d")
    k = replicate(sc, 1)
    assert kpi(k, "throughput [parts/h]", "line")[0] == pytest.approx(3 * 3600 / 110, rel=0.002)
    assert kpi(k, "throughput [parts/h]", "A")[0] == pytest.approx(2 * 3600 / 110, rel=0.002)
    assert kpi(k, "throughput [parts/h]", "B")[0] == pytest.approx(3600 / 110, rel=0.002)
    assert kpi(k, "setup share", "m1")[0] == pytest.approx(70 / 110, rel=0.002)
    assert kpi(k, "oee performance", "m1")[0] == pytest.approx(1.0, abs=1e-3)  # each product at its own ideal
    line = Line(sc, 0)
    line.run(3600)
    details = {e.detail for e in line.events if e.kind == "changeover_start"}
    assert details == {"A -> B", "B -> A"}


@pytest.mark.slow  # statistical: 8 replications of 20 days
def test_littles_law_holds_per_product() -> None:
    sc = scenario([{"name": "s1", "cycle_time": exp(40), "cycle_times": {"big": exp(70)}, "buffer": 5},
                   {"name": "s2", "cycle_time": {"dist": "uniform", "low": 20, "high": 60}, "buffer": 3,
                    "setup_matrix": {"small": {"big": const(120)}, "big": {"small": const(60)}}}],
                  products=[{"name": "small", "share": 3}, {"name": "big", "share": 1}],
                  source={"kind": "arrivals", "interarrival": exp(90)}, duration="20 d", warmup="1 d")
    k = replicate(sc, REPS)
    for p in ("small", "big"):
        diff = kpi(k, "wip [parts]", p).to_numpy() - kpi(k, "departures [parts/h]", p).to_numpy() / 60 * \
            kpi(k, "time in system [min]", p).to_numpy()
        half = 2.365 * diff.std(ddof=1) / np.sqrt(REPS)
        assert abs(diff.mean()) <= max(half, 1e-3), f"{p}: L - lambda W = {diff.mean():.4f} +- {half:.4f}"
    share = kpi(k, "departures [parts/h]", "big").sum() / kpi(k, "departures [parts/h]", "line").sum()
    assert share == pytest.approx(0.25, abs=0.02)


def test_scrap_by_product() -> None:
    sc = scenario([{"name": "m1", "cycle_time": const(10), "scrap": 0.01, "scrap_by_product": {"B": 0.3}}],
                  products=[{"name": "A"}, {"name": "B"}], duration="2 d")
    k = replicate(sc, 1)
    good_b = kpi(k, "throughput [parts/h]", "B")[0] / kpi(k, "departures [parts/h]", "B")[0]
    good_a = kpi(k, "throughput [parts/h]", "A")[0] / kpi(k, "departures [parts/h]", "A")[0]
    assert good_b == pytest.approx(0.7, abs=0.02) and good_a == pytest.approx(0.99, abs=0.005)


def test_a_line_released_to_its_orders_makes_each_to_its_good_parts_with_scrap_made_up() -> None:
    """`orders:` releases the order book before the plan: each order's product until that many of its parts are
    released and not scrapped; a part scrapped after its order's releases ended is made up by the next release, ahead
    of the later orders. Each order ends with exactly its good parts; then the plan (A, B, A, B...) goes on."""
    from twin.app.compare import whatif_task

    book = [{"product": "B", "parts": 20, "order": "K-1"}, {"product": "A", "parts": 30}, {"product": "B", "parts": 10}]
    sc = scenario([{"name": "m1", "cycle_time": const(10)},
                   {"name": "m2", "cycle_time": const(10), "scrap": 0.2, "buffer": 3}],
                  products=[{"name": "A"}, {"name": "B"}], release=["A", "B"], orders=book, duration=3000)
    line = Line(sc, 0)
    line.run(sc.duration)
    tags, made = line.orders_of(), np.frombuffer(line.product, dtype=np.int8)
    good = line.good_out()
    for k, order in enumerate(book):
        assert np.count_nonzero(good & (tags == k)) == order["parts"]  # exactly its good parts, scrap made up
        assert (made[tags == k] == line.product_names.index(order["product"])).all()
    first = [int(np.flatnonzero(tags == k)[0]) for k in range(3)]
    assert (tags[:20] == 0).all() and first[1] >= 20 and first[2] > first[1]
    scrapped = np.frombuffer(line.scrapped_at, dtype=np.int16) >= 0
    assert scrapped[tags >= 0].sum() > 5
    in_turn = np.where(tags < 0, len(book), tags)
    assert (np.diff(in_turn) < 0).any()  # an order's part made up after a later order (or the plan) began
    after = np.flatnonzero(tags == -1)
    assert len(after) > 10 and after[0] > first[2] + 9  # the plan only once the book is released
    assert made[after[:4]].tolist() == [0, 1, 0, 1]
    # a what-if's figures: order k is done with the last of its own good parts out of the line
    text = sc.model_dump_json(by_alias=True)
    done = whatif_task(text, None, "as is", 0, orders=((20, "B"), (30, "A"), (10, "B")))[2]
    exit_ = np.frombuffer(line.exit)
    for k in range(3):
        assert done[f"order {k + 1} done [h]"] == pytest.approx(exit_[good & (tags == k)].max() / 3600)
    short = whatif_task(sc.model_copy(update={"duration": 400.0}).model_dump_json(by_alias=True), None, "as is", 0,
                        orders=((20, "B"), (30, "A"), (10, "B")))[2]
    assert np.isnan(short["order 2 done [h]"])
    # a run's KPIs (scope order) and `twin run`'s table of them: made, and when its last good part left
    from twin.app.cmd_run import order_table
    from twin.kpi import replication_kpis

    k = replication_kpis(line)
    orders = k[k.scope == "order"].set_index(["entity", "kpi"]).value
    assert orders["1: K-1 B × 20", "made"] == 1.0 and orders["3: B × 10", "made"] == 1.0
    assert orders["2: A × 30", "done [h]"] == pytest.approx(done["order 2 done [h]"])
    late = Line(sc.model_copy(update={"duration": 400.0}), 0)
    late.run(400.0)
    both = pd.concat([k, replication_kpis(late).assign(replication=1)])
    table = order_table(both, sc)
    assert table is not None and list(table.columns[0].cells) == ["1: K-1 B × 20", "2: A × 30", "3: B × 10"]
    made = list(table.columns[1].cells)
    assert made[0] == "100% (16%–100%)" and made[1] == "50% (1%–99%)"  # one run of two made it within 400 s
    assert order_table(both, sc.model_copy(update={"orders": None})) is None
    # due times: on time where made by then, late where not made by a due inside the run, unknown after its end
    start = sc.start.replace(tzinfo=None)
    due = [start + dt.timedelta(hours=done["order 1 done [h]"]), start + dt.timedelta(seconds=300), None]
    timed = sc.model_copy(update={"orders": [o.model_copy(update={"due": d}) for o, d in zip(sc.orders or [], due)]})
    line = Line(timed, 0)
    line.run(timed.duration)
    k = replication_kpis(line)
    on_time = k[(k.scope == "order") & (k.kpi == "on time")].set_index("entity").value
    assert on_time.to_dict() == {"1: K-1 B × 20": 1.0, "2: A × 30": 0.0}  # the third has no due time
    after_end = timed.model_copy(update={"duration": 400.0, "orders": [o.model_copy(update={"due": start + dt.timedelta(
        hours=1)}) for o in timed.orders or []]})
    short = Line(after_end, 0)
    short.run(400.0)
    k = replication_kpis(short)
    late = k[(k.scope == "order") & (k.kpi == "on time")].value.tolist()
    assert late[0] == 1.0 and np.isnan(late[1:]).all()  # the others not made by 400 s, due after it: not known
    table = order_table(replication_kpis(line), timed)
    assert table is not None and [c.header for c in table.columns] == ["order", "due", "made", "on time",
                                                                        "done by (median · 9 in 10)"]
    assert list(table.columns[3].cells) == ["100% (3%–100%)", "0% (0%–98%)", "–"]  # one replication: wide


@settings(max_examples=40, deadline=None)
@given(book=hs.lists(hs.tuples(hs.sampled_from(["A", "B"]), hs.integers(1, 25)), min_size=1, max_size=5),
       scrap=hs.sampled_from([0.0, 0.1, 0.5]), plan=hs.sampled_from([None, ["A", "B"], [{"product": "B", "parts": 3}]]),
       seed=hs.integers(0, 2**31))
def test_any_order_book_released_ends_with_each_orders_good_parts(book: list[tuple[str, int]], scrap: float,
                                                                 plan: list[Any] | None, seed: int) -> None:
    """Whatever the book, the scrap and the plan after it: each order ends with exactly its good parts, all of its
    product, its releases its good parts and its scrap, and no part of the plan goes before the book's last order
    began."""
    sc = scenario([{"name": "m1", "cycle_time": const(10)},
                   {"name": "m2", "cycle_time": const(10), "scrap": scrap, "buffer": 2}],
                  products=[{"name": "A"}, {"name": "B"}], release=plan, seed=seed, duration=20_000,
                  orders=[{"product": p, "parts": n} for p, n in book])
    line = Line(sc, 0)
    line.run(sc.duration)
    tags, good = line.orders_of(), line.good_out()
    made = np.frombuffer(line.product, dtype=np.int8)
    scrapped = np.frombuffer(line.scrapped_at, dtype=np.int16) >= 0
    for k, (product, n) in enumerate(book):
        mine = tags == k
        assert np.count_nonzero(good & mine) == n and np.count_nonzero(mine) == n + np.count_nonzero(scrapped & mine)
        assert (made[mine] == line.product_names.index(product)).all()
    plan_parts = np.flatnonzero(tags == -1)
    assert not len(plan_parts) or plan_parts[0] > np.flatnonzero(tags == len(book) - 1)[0]


@pytest.mark.parametrize(("change", "message"), [
    ({"release": ["A", "C"]}, r"release\[1\]: no product named 'C'"),
    ({"orders": [{"product": "A", "parts": 5}, {"product": "Q", "parts": 5}]}, r"orders\[1\]\.product: no product "
                                                                              r"named 'Q'"),
    ({"orders": [{"product": "A", "parts": 5, "due": "2026-01-04T10:00"}]},
     r"orders\[0\]\.due: 2026-01-04 10:00 is not after the run's start \(2026-01-05 06:00\)"),
    ({"orders": [{"product": "A", "parts": 5, "due": "2026-01-06T10:00+01:00"}]},
     r"orders\[0\]\.due: .*write it on the line's clock, without a UTC offset"),
    ({"orders": [{"product": "A", "parts": 5}],
      "stations": [{"name": "m1", "machine_type": "m", "cycle_time": 5, "next": "m3"},
                   {"name": "m2", "machine_type": "m", "cycle_time": 5, "next": "m3"},
                   {"name": "m3", "machine_type": "m", "cycle_time": 5, "assemble": {"m1": 1, "m2": 1}}]},
     r"orders: a line with an assembly releases parts at each feeder"),
    ({"stations": [{"name": "m1", "machine_type": "m", "cycle_time": 5, "cycle_times": {"Z": 3}}]},
     r"stations\[0\]\.cycle_times\.Z: no product named 'Z'"),
    ({"stations": [{"name": "m1", "machine_type": "m", "cycle_time": 5, "setup_matrix": {"A": {"Q": 3}}}]},
     r"stations\[0\]\.setup_matrix\.A\.Q: no product named 'Q'"),
])
def test_product_mistakes_are_named(change: dict[str, Any], message: str, tmp_path: Any) -> None:
    import yaml

    from twin.scenario import ScenarioError, load_scenario

    data = {"line": {"site": "s", "area": "a", "name": "n"}, "seed": 1, "duration": 100,
            "machine_types": {"m": {}}, "products": [{"name": "A"}, {"name": "B"}],
            "stations": [{"name": "m1", "machine_type": "m", "cycle_time": 5}], **change}
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ScenarioError, match=message):
        load_scenario(f)


def _variants(sunroof: float = 300, **top: Any) -> Any:
    """A mixed-model line: premium cars go through a sunroof station, the rest straight to paint (route: product)."""
    return scenario([
        {"name": "body", "cycle_time": const(60), "route": "product",
         "next": [{"to": "sunroof", "products": ["premium"]}, {"to": "paint"}]},
        {"name": "sunroof", "cycle_time": const(sunroof), "buffer": 4, "next": "paint"},
        {"name": "paint", "cycle_time": const(10), "buffer": 4}],
        **{"products": [{"name": "standard"}, {"name": "premium"}], **top})


def test_route_by_product_sends_each_variant_its_own_way() -> None:
    """Three standard cars, then a premium one: only premium cars reach the sunroof station, whose 300 s per
    premium car (a quarter of the cars) is 75 s per car: it, not the body station's 60 s, limits the line to 48
    cars an hour (the constraint weighs each station by the visits each product's route gives it)."""
    sc = _variants(release=[{"product": "standard", "parts": 3}, "premium"], duration="1 d")
    assert sc.visits().tolist() == pytest.approx([1.0, 0.25, 1.0])
    assert sc.stations[sc.constraint()].name == "sunroof"
    line = Line(sc, 0)
    line.run(sc.duration)
    premium = [p.name for p in sc.products].index("premium")
    sunroof, paint = line.stations[1][0], line.stations[2][0]
    assert set(sunroof.log.begun_product) == {premium} and len(sunroof.log.begun_product) > 200
    assert set(paint.log.begun_product) == {0, premium}
    from dashboard.charts import line_dot

    assert '"body" -> "buf:sunroof" [label="premium"]' in line_dot(sc, {})  # the line's picture names the routes
    k = replicate(sc, 1)
    assert kpi(k, "throughput [parts/h]", "line")[0] == pytest.approx(48, rel=0.01)
    assert kpi(k, "throughput [parts/h]", "premium")[0] == pytest.approx(12, rel=0.01)
    # a random mix by share weighs the routes the same way
    assert _variants(products=[{"name": "standard", "share": 3}, {"name": "premium", "share": 1}]).visits() \
        .tolist() == pytest.approx([1.0, 0.25, 1.0])


def test_the_constraint_weighs_each_products_cycle_by_the_mix() -> None:
    """A station of 60 s whose big parts (half the mix) take 100 s works 80 s a part on average: it, not the next
    station's 70 s for every part, limits the line to 45 parts an hour (the constraint took the station's own
    cycle for every product, and named the 70 s station)."""
    sc = scenario([{"name": "a", "cycle_time": const(60), "cycle_times": {"big": const(100)}},
                   {"name": "b", "cycle_time": const(70), "buffer": 3}],
                  products=[{"name": "small"}, {"name": "big"}], duration="2 d")
    assert sc.stations[sc.constraint()].name == "a"
    k = replicate(sc, 1)
    assert kpi(k, "throughput [parts/h]", "line")[0] == pytest.approx(45, rel=0.01)
    assert kpi(k, "constraint station", "line")[0] == 0


def test_the_dashboards_hourly_oee_counts_each_part_at_its_products_design_time() -> None:
    """The same line: its ground truth names each part's product, and the dashboard's OEE per hour, over the whole
    run, is the run's own (the big parts count 100 s at the constraint, not the station's 60 s: it showed 0.75)."""
    import pandas as pd

    from dashboard import data
    from twin.app.runner import parts_frame
    from twin.kpi import replication_kpis

    sc = scenario([{"name": "a", "cycle_time": const(60), "cycle_times": {"big": const(100)}},
                   {"name": "b", "cycle_time": const(70), "buffer": 3}],
                  products=[{"name": "small"}, {"name": "big"}], duration="2 d", warmup="1 h")
    line = Line(sc, 0)
    line.run(sc.duration)
    parts, kpis = parts_frame(line), replication_kpis(line)
    assert list(parts["product"].cat.categories) == ["small", "big"]
    assert parts["product"].value_counts().to_dict() == pytest.approx({"small": len(parts) / 2, "big": len(parts) / 2},
                                                                      rel=0.05)  # drawn by their shares
    origin = pd.Timestamp(sc.start)
    window = data.Window(origin + pd.Timedelta(seconds=sc.warmup), origin + pd.Timedelta(seconds=sc.duration),
                         sc.line.timezone, origin)
    hourly = data.per_period(sc, parts, kpis, window)
    oee = kpi(kpis, "oee", "line")[0]
    assert oee > 0.95
    assert (hourly.oee * hourly.planned_h).sum() / hourly.planned_h.sum() == pytest.approx(oee, abs=0.01)


@pytest.mark.parametrize(("change", "message"), [
    ({"products": []}, r"stations\[0\]\.route: route: product sends each product its own way, but the line makes one "
                       "kind of part"),
    ({"next": [{"to": "sunroof", "products": ["premiun"]}, {"to": "paint"}]},
     r"stations\[0\]\.next\[0\]\.products\[0\]: no product named 'premiun'"),
    ({"next": [{"to": "sunroof", "products": ["premium"]}, {"to": "paint", "products": ["premium", "standard"]}]},
     "product 'premium' is sent both to sunroof and to paint; a product takes one route"),
    ({"next": [{"to": "sunroof", "products": ["premium"]}, {"to": "paint", "products": ["standard"]}]},
     r"stations\[0\]\.next: product 'estate' has no route here"),
    ({"route": "probability",
      "next": [{"to": "sunroof", "p": 0.5, "products": ["premium"]}, {"to": "paint", "p": 0.5}]},
     "a route's products are for route: product"),
    ({"next": [{"to": "sunroof"}, {"to": "paint"}]}, "more than one route without products"),
    ({"sunroof_next": "body"}, r"stations\[0\]\.next: parts of product 'premium' sent here can never leave the line"),
])
def test_product_route_mistakes_are_named(change: dict[str, Any], message: str, tmp_path: Any) -> None:
    """Each mistake in a route by product is named with its field (a product whose own routes loop without an exit,
    too, where other products' routes leave)."""
    import yaml

    from twin.scenario import ScenarioError, load_scenario

    body = {"name": "body", "machine_type": "m", "cycle_time": 60, "route": "product",
            "next": [{"to": "sunroof", "products": ["premium"]}, {"to": "paint"}]}
    body.update({k: v for k, v in change.items() if k in ("route", "next")})
    data = {"line": {"site": "s", "area": "a", "name": "n"}, "seed": 1, "duration": 100, "machine_types": {"m": {}},
            "products": change.get("products", [{"name": "standard"}, {"name": "premium"}, {"name": "estate"}]),
            "source": {"kind": "arrivals", "interarrival": 70},
            "stations": [body, {"name": "sunroof", "machine_type": "m", "cycle_time": 200,
                                "next": change.get("sunroof_next", "paint")},
                         {"name": "paint", "machine_type": "m", "cycle_time": 50}]}
    f = tmp_path / "v.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ScenarioError, match=message):
        load_scenario(f)


@settings(max_examples=30, deadline=None)
@given(n=hs.integers(1, 4), ways=hs.integers(2, 3), data=hs.data(), seed=hs.integers(0, 2**16),
       buffer=hs.integers(0, 4))
def test_fuzzed_product_routes_send_each_part_its_products_way(n: int, ways: int, data: Any, seed: int,
                                                               buffer: int) -> None:
    """Any station routing by product to 2-3 stations that merge again: each of them works only the products routed
    to it (those named, or every other one on the route naming none), the parts are conserved, and the share of
    parts each one works is the visits the traffic equations give it."""
    names = [f"p{i}" for i in range(n)]
    owner = data.draw(hs.lists(hs.integers(-1, ways - 1), min_size=n, max_size=n), label="route of each product")
    owner[0] = max(owner[0], 0)  # at least one route names its products (else there is one way on, no choice)
    routes = [{"to": f"d{j}", "products": [p for p, o in zip(names, owner) if o == j]} for j in range(ways)]
    routes = [r for r in routes if r["products"]] + [{"to": "d-rest"}]  # the products whose owner is -1, and spares
    stations = [{"name": "s0", "cycle_time": exp(30), "route": "product", "next": routes}]
    stations += [{"name": r["to"], "cycle_time": exp(data.draw(hs.integers(10, 50))), "buffer": buffer, "next": "m"}
                 for r in routes]
    stations += [{"name": "m", "cycle_time": exp(5), "buffer": buffer}]
    sc = scenario(stations, seed=seed, duration="1 d", products=[{"name": p} for p in names], release=names)
    line = Line(sc, 0)
    line.run(sc.duration)
    begun = {st.name: list(line.stations[i][0].log.begun_product) for i, st in enumerate(sc.stations)}
    for r in routes:
        allowed = {names.index(p) for p in r.get("products", [p for p, o in zip(names, owner) if o < 0])}
        assert set(begun[r["to"]]) <= allowed, (r, set(begun[r["to"]]))
    exit_ = np.frombuffer(line.exit)
    assert len(exit_) == (~np.isnan(exit_)).sum() + line.wip
    visits = dict(zip([st.name for st in sc.stations], sc.visits()))
    total = len(begun["s0"])
    for r in routes:
        assert len(begun[r["to"]]) / total == pytest.approx(visits[r["to"]], abs=(2 * buffer + 3) / total + 1e-9)


def test_another_product_mix_as_an_alternative(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """What if premium cars go from a quarter to 40 % of the mix? `--mix premium=0.4`: the sunroof station that a
    quarter of the cars visit becomes the line's constraint (80 s a car against the body station's 60 s) and the
    line's rate falls to 45 cars an hour; a release sequence's campaigns are scaled to the shares asked (their order
    kept), and what cannot be a mix is refused with why, for compare and whatif alike."""
    import typer
    import yaml

    from tests.conftest import assert_mistakes
    from twin.app.alternatives import alternatives
    from twin.app.compare import compare_designs

    sc = _variants(200, products=[{"name": "standard", "share": 3}, {"name": "premium", "share": 1}],
                   duration="1 d", replications=2)
    options = alternatives(sc, [], [], [], [], [], [], [], [], False, ["premium=0.4"])
    assert [label for label, _ in options] == ["as is", "mix premium 40%"]
    more = options[1][1]
    assert more.product_mix() == pytest.approx({"standard": 0.6, "premium": 0.4})
    assert more.stations[more.constraint()].name == "sunroof" and sc.stations[sc.constraint()].name == "body"
    s = compare_designs(options, jobs=1).summary().set_index(["policy", "kpi"])["mean"]
    assert s["mix premium 40%", "throughput [parts/h]"] == pytest.approx(45, rel=0.03)
    assert s["as is", "throughput [parts/h]"] == pytest.approx(60, rel=0.02)  # premium runs block it a little
    # campaigns: 6,000 + 4,000 + 2,000 bottles a cycle; juice to 30 %, the others in their proportions
    seq = _variants(products=[{"name": "standard"}, {"name": "premium"}, {"name": "estate"}],
                    release=[{"product": "standard", "parts": 6000}, {"product": "premium", "parts": 4000},
                             {"product": "estate", "parts": 2000}])
    scaled = alternatives(seq, [], [], [], [], [], [], [], [], False, ["estate=30%"])[1][1]
    assert [(b.product, b.parts) for b in scaled.release] == [("standard", 5040), ("premium", 3360), ("estate", 3600)]
    f = tmp_path / "singles.yaml"
    f.write_text(yaml.safe_dump({**seq.model_dump(mode="json", exclude_none=True, exclude={"now"}),
                                 "release": ["standard", "standard", "premium"], "replications": 2}, sort_keys=False))
    for command in (["compare", str(f)], ["whatif", str(f), "--from", "duckdb:///nowhere.duckdb"]):
        assert_mistakes(command, [
            (["--mix", "premium=0.5"], "--mix 'premium=0.5': the release sequence has no part of estate to scale"),
            (["--mix", "sunroof=0.5"], "--mix 'sunroof=0.5': write PRODUCT=SHARE"),
            (["--mix", "premium=0.7,standard=0.6"], "the shares add up to 1.3")])
    singles = seq.model_copy(update={"release": ["standard", "standard", "premium", "estate"]})
    for line, spec, message in [(seq, "premium=1", "that leaves standard, estate no share"),
                                (singles, "estate=0.1", "cannot give those shares in whole parts")]:
        with pytest.raises(typer.Exit):
            alternatives(line, [], [], [], [], [], [], [], [], False, [spec])
        assert message in " ".join(capsys.readouterr().err.split())


def test_parts_waiting_at_the_start_on_a_products_own_way_are_of_that_product() -> None:
    """Three cars waiting in front of the sunroof station at the start (its `initial`, or a what-if's level read):
    they are premium cars, the only ones routed there; a standard car there would have been worked at a station its
    route never visits."""
    sc = _variants(products=[{"name": "standard", "share": 3}, {"name": "premium", "share": 1}], duration="1 h")
    sc = sc.model_copy(update={"stations": [s.model_copy(update={"initial": 3}) if s.name == "sunroof" else s
                                            for s in sc.stations]})
    line = Line(sc, 0)
    line.run(sc.duration)
    premium = [p.name for p in sc.products].index("premium")
    assert set(line.stations[1][0].log.begun_product) == {premium}


def test_twin_runs_table_gives_each_product_its_throughput_share_and_lead_time() -> None:
    """A mixed-model line's per-product KPIs were in summary.csv only: `twin run` now prints a table of them, each
    product's throughput with its CI, its share of the good parts, its WIP and lead time (none for one kind of
    part)."""
    from rich.console import Console

    from twin.app.cmd_run import product_table
    from twin.kpi import summarize

    sc = _variants(release=[{"product": "standard", "parts": 3}, "premium"], duration="1 d")
    table = product_table(summarize(replicate(sc, 2)), sc)
    assert table is not None
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    # about 48 cars an hour, three in four standard (both replications alike: constant times, a fixed sequence)
    assert re.search(r"standard\s*│\s*36\.\d+ ± 0\s*│\s*75\.\d%", text), text
    assert re.search(r"premium\s*│\s*1[12]\.\d+ ± 0\s*│\s*24\.\d%", text), text
    assert product_table(summarize(replicate(scenario([{"name": "m", "cycle_time": const(5)}]), 2)),
                         scenario([{"name": "m", "cycle_time": const(5)}])) is None


@settings(max_examples=30, deadline=None)
@given(seed=hs.integers(0, 2**31), steps=hs.lists(hs.floats(1.0, 900.0), min_size=1, max_size=12),
       shares=hs.tuples(hs.integers(1, 5), hs.integers(1, 5)))
def test_the_product_changes_followed_are_the_logs_whatever_the_steps(seed: int, steps: list[float],
                                                                     shares: tuple[int, int]) -> None:
    """However a run is cut into steps, `ProductFollower` gives each product change of a machine that sets up
    between products once, at the start of work on its first part: the runs of one product in its log."""
    from twin.truth import ProductFollower

    sc = scenario([{"name": "m1", "cycle_time": exp(10), "setup_matrix": {"A": {"B": const(30)}}},
                   {"name": "m2", "cycle_time": exp(8), "buffer": 4}],
                  products=[{"name": "A", "share": shares[0]}, {"name": "B", "share": shares[1]}], seed=seed,
                  duration=sum(steps))
    line = Line(sc, 0)
    follower, got, t = ProductFollower(), [], 0.0
    for step in steps:
        t += step
        line.run(t)
        got += [(m.name, when, p) for m, when, p in follower.new(line)]
    m1 = line.machines[0]
    made = np.frombuffer(m1.log.begun_product, dtype=np.int8)
    began = np.frombuffer(m1.log.begun)
    first = np.flatnonzero(np.append(True, made[1:] != made[:-1])) if len(made) else []
    assert got == [("m1", float(began[k]), line.product_names[made[k]]) for k in first]  # m2 sets up for nothing
