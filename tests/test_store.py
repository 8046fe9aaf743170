"""The store contract, run against every backend that can run here; InfluxDB writes against a real server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensors.store import READING_COLUMNS, STATE_COLUMNS, Store, StoreError, open_store
from sensors.store.base import LEVEL_COLUMNS, PRODUCT_COLUMNS, SERIES_COLUMNS, ReadingBatch
from tests.conftest import ROOT, VictoriaMetrics, twin_cmd, wait_for_line

T0 = pd.Timestamp("2026-01-05 06:00:00")


def readings(run: str = "r1", n: int = 600, machines: tuple[str, ...] = ("m1", "m2"),
             sensors: tuple[str, ...] = ("temp", "vib")) -> pd.DataFrame:
    rows = [(run, 0, m, s, T0 + pd.Timedelta(seconds=i), float(i) + 100 * k + 1000 * j)
            for j, m in enumerate(machines) for k, s in enumerate(sensors) for i in range(n)]
    return pd.DataFrame(rows, columns=READING_COLUMNS)


@pytest.fixture(params=["duckdb", "influxdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "influxdb":
        url = os.environ.get("LINETWIN_TEST_INFLUXDB_URL")
        if not url:
            pytest.skip("set LINETWIN_TEST_INFLUXDB_URL and LINETWIN_INFLUXDB_TOKEN to run the contract on InfluxDB")
        s = open_store(url)
    else:
        s = open_store(f"duckdb:///{tmp_path / 'twin.duckdb'}")
    yield s
    s.close()


def test_write_is_idempotent_and_count(store: Store) -> None:
    run = f"r-{np.random.default_rng().integers(1 << 30)}"
    df = readings(run)
    store.write(df)
    store.write(df.iloc[::3])  # a redelivery
    assert store.count(run) == len(df)


def batch_of(run: str, messages: list[tuple[int, int, int]]) -> ReadingBatch:
    """Messages (key, first second, readings) of one series each, in columns."""
    catalog = pd.DataFrame([(run, "m1", "st", "temp", "degC")], columns=SERIES_COLUMNS)
    ts = np.concatenate([T0.value // 1_000_000 + 1000 * np.arange(s, s + n) for _, s, n in messages])
    return ReadingBatch(catalog, np.zeros(len(ts), np.int32), np.zeros(len(ts), np.int32), ts.astype(np.int64),
                        ts.astype(np.float64), np.array([k for k, _, _ in messages], np.int64),
                        np.array([n for _, _, n in messages], np.int64))


def test_append_stores_each_message_once(store: Store) -> None:
    """The hot path: a message redelivered (in a later batch or in the same one) is stored once, by its identity."""
    run = f"r-{np.random.default_rng().integers(1 << 30)}"
    assert store.append(batch_of(run, [(11, 0, 50), (12, 50, 50)])) == 100
    store.append(batch_of(run, [(12, 50, 50), (13, 100, 50), (13, 100, 50)]))  # 12 again, 13 twice in one batch
    assert store.count(run) == 150
    q = store.query(run=run)
    assert q.ts.is_unique and len(q) == 150 and set(q.sensor) == {"temp"}
    assert store.series(run).unit.tolist() == ["degC"]


def test_a_batch_written_together_is_stored_whole_or_not_at_all(store: Store) -> None:
    """An ingest writes a batch's readings, state changes and levels together and acknowledges them after: a failure
    in the middle stores none of them (the broker delivers the batch again), and the batch written again is stored
    once, whole."""
    run = f"r-{np.random.default_rng().integers(1 << 30)}"
    states = pd.DataFrame([(run, 0, "m1", T0, "down", "jam")], columns=STATE_COLUMNS)

    def write(fail: bool) -> None:
        with store.together():
            store.append(batch_of(run, [(21, 0, 50)]))
            store.write_states(states)
            if fail:
                raise OSError("the writer died between its writes")

    with pytest.raises(OSError):
        write(fail=True)
    if store.url.startswith("duckdb"):  # a line-protocol server keeps what it got: written again, it overwrites it
        assert store.count(run) == 0 and store.states(run).empty
    write(fail=False)
    assert store.count(run) == 50 and len(store.states(run)) == 1


def test_duckdb_checks_a_message_against_its_run_and_time_and_old_identities_by_key(tmp_path: Path) -> None:
    """Identities carry the message's run and time, so a batch is checked against the stored messages of its run and
    time span only (not every message ever stored); identities a linetwin stored before that (no run, no time) are
    still checked by key, so a redelivery across an upgrade is not stored twice."""
    url = f"duckdb:///{tmp_path / 'x.duckdb'}"
    store = open_store(url)
    store.append(batch_of("r1", [(11, 0, 50)]))
    assert store._con.execute("SELECT run, ts FROM messages").fetchall() == [  # type: ignore[attr-defined]
        ("r1", T0.to_pydatetime())]
    store._con.execute("UPDATE messages SET run = NULL, ts = NULL")  # type: ignore[attr-defined]  # as stored before
    store.close()
    store = open_store(url)
    store.append(batch_of("r1", [(11, 0, 50), (12, 50, 50)]))  # 11 again, after the upgrade
    store.append(batch_of("r1", [(12, 50, 50)]))  # 12 again, stored with its run and time
    assert store.count("r1") == 100
    store.close()


def test_query_raw_filters_and_order(store: Store) -> None:
    run = f"r-{np.random.default_rng().integers(1 << 30)}"
    store.write(readings(run))
    q = store.query(T0 + pd.Timedelta(seconds=10), T0 + pd.Timedelta(seconds=20), machines=["m2"], sensors=["vib"],
                    run=run)
    assert list(q.columns) == READING_COLUMNS
    assert len(q) == 10 and set(q.machine) == {"m2"} and set(q.sensor) == {"vib"}
    assert q.value.tolist() == [1100.0 + i for i in range(10, 20)]


def test_a_query_of_some_replications_reads_only_theirs(store: Store) -> None:
    """The dashboard shows one replication of a run (or the few picked): the others are not read."""
    run = f"r-{np.random.default_rng().integers(1 << 30)}"
    one = readings(run, n=120, machines=("m1",), sensors=("temp",))
    store.write(pd.concat([one.assign(replication=r, value=one.value + 10_000 * r) for r in range(3)]))
    for every in (None, "1min"):
        q = store.query(run=run, every=every, replications=[2, 0])
        assert sorted(set(q.replication)) == [0, 2] and len(q) == (240 if every is None else 4)
        q = store.query(run=run, every=every, replications=[1])
        assert set(q.replication) == {1} and (q.value >= 10_000).all() and (q.value < 20_000).all()
    assert store.query(run=run, replications=[]).empty
    assert len(store.query(run=run)) == 360


@pytest.mark.parametrize(("agg", "first"), [("mean", 29.5), ("min", 0.0), ("max", 59.0), ("last", 59.0),
                                            ("count", 60.0)])
def test_query_aggregated_per_interval(store: Store, agg: str, first: float) -> None:
    run = f"r-{np.random.default_rng().integers(1 << 30)}"
    store.write(readings(run))
    q = store.query(T0, T0 + pd.Timedelta(minutes=10), machines=["m1"], sensors=["temp"], run=run, every="1min",
                    agg=agg)
    assert len(q) == 10
    assert q.value.iloc[0] == pytest.approx(first)
    assert (q.ts.diff().dropna() == pd.Timedelta(minutes=1)).all()


def test_more_aggregates_of_each_interval_in_one_query(store: Store) -> None:
    """`also`: the machine page's min and max beside the mean, each as its own query gives it (a month of a machine
    was read three times over, 0.35 s each)."""
    run = f"r-{np.random.default_rng().integers(1 << 30)}"
    store.write(readings(run))
    ask = {"machines": ["m1"], "run": run, "every": "1min"}
    q = store.query(T0, T0 + pd.Timedelta(minutes=10), agg="mean", also=("min", "max", "count"), **ask)
    assert list(q.columns) == ["run", "replication", "machine", "sensor", "ts", "value", "min", "max", "count"]
    assert len(q) == 20 and (q["min"] <= q.value).all() and (q.value <= q["max"]).all()
    for agg in ("mean", "min", "max", "count"):
        alone = store.query(T0, T0 + pd.Timedelta(minutes=10), agg=agg, **ask)
        np.testing.assert_allclose(q["value" if agg == "mean" else agg], alone.value)
    with pytest.raises(StoreError, match="need an interval"):
        store.query(run=run, also=("min",))
    with pytest.raises(StoreError, match="aggregate 'median'"):
        store.query(run=run, every="1min", also=("median",))


def test_latest_and_series(store: Store) -> None:
    run = f"r-{np.random.default_rng().integers(1 << 30)}"
    store.write(readings(run))
    store.write_series(pd.DataFrame([(run, m, "st", s, "u") for m in ("m1", "m2") for s in ("temp", "vib")],
                                    columns=["run", "machine", "station", "sensor", "unit"]))
    last = store.latest(run=run)
    assert len(last) == 4
    assert (last.ts == T0 + pd.Timedelta(seconds=599)).all()
    before = store.latest(run=run, sensors=["temp"], end=T0 + pd.Timedelta(seconds=300))  # as a range opens
    assert list(before.ts) == [T0 + pd.Timedelta(seconds=299)] * 2 and list(before.value) == [299.0, 1299.0]
    assert set(zip(store.series(run).machine, store.series(run).sensor)) == {
        (m, s) for m in ("m1", "m2") for s in ("temp", "vib")}


def _wide_ranging_store(tmp_path: Path) -> tuple[str, np.ndarray]:
    """A DuckDB store of 3 series × 400,000 readings, ten a second, of values from 1e-5 to 1e5 either sign, written
    in many row groups; its URL and the values (series × readings)."""
    url = f"duckdb:///{tmp_path / 'twin.duckdb'}"
    rng = np.random.default_rng(1)
    catalog = pd.DataFrame([("r", "m1", "st", f"s{k}", "u") for k in range(3)], columns=SERIES_COLUMNS)
    n, t0 = 400_000, T0.value // 1_000_000
    values = rng.lognormal(0, 3, (3, n)) * rng.choice([-1.0, 1.0], (3, n))
    s = open_store(url)
    for k in range(3):
        for i in range(0, n, 50_000):
            ts = t0 + 100 * np.arange(i, i + 50_000, dtype=np.int64)  # ten readings a second
            s.append(ReadingBatch(catalog, np.full(len(ts), k, np.int32), np.zeros(len(ts), np.int32), ts,
                                  values[k, i:i + 50_000], np.array([k * 100 + i // 50_000]), np.array([len(ts)])))
    s.close()
    return url, values


def test_a_readers_cap_holds_its_aggregates_and_lets_a_whole_raw_result_through(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader's DuckDB cache is capped (`READER_MEMORY`), but a raw query's sorted result is held whole before it
    is handed over: under the cap a week of body_shop's 30 million readings ran out of memory (they read before the
    cap came). Here the cap is made tiny: the raw readings still come, and the cap is back for what follows."""
    import sensors.store.duck as duck

    url, values = _wide_ranging_store(tmp_path)
    monkeypatch.setattr(duck, "READER_MEMORY", "16MB")
    s = open_store(url, read_only=True)
    try:
        def cap() -> str:
            return s._con.execute("SELECT current_setting('memory_limit')").fetchone()[0]  # type: ignore[attr-defined]

        assert cap() == "15.2 MiB"
        raw = s.query(run="r")
        assert len(raw) == values.size and raw.value.to_numpy()[:5].tolist() == values[0, :5].tolist()
        assert cap() == "15.2 MiB" and len(s.query(run="r", every="60s")) == 3 * -(-values.shape[1] // 600)
    finally:
        s.close()


def test_means_per_interval_are_the_same_on_every_read_and_correctly_rounded(tmp_path: Path) -> None:
    """DuckDB's avg added its threads' partial sums in whatever order they finished: a minute's mean of a month of
    body_shop differed in its last bits between two reads of the same run (60 of 60,480 minutes a week), so the
    forecasters' training data (and its fingerprints, which tell an evaluation on training data) was not the same
    twice. Here 1.2 million readings of wide-ranging values, in many row groups: every minute's mean is the
    correctly rounded one (`math.fsum`), on every read; the plain avg missed it in 1,824 of 2,001 minutes."""
    import math

    url, values = _wide_ranging_store(tmp_path)
    n = values.shape[1]
    exact = [math.fsum(v[i:i + 600]) / len(v[i:i + 600]) for v in values for i in range(0, n, 600)]
    for _ in range(3):
        s = open_store(url, read_only=True)
        got = s.query(run="r", every="60s", agg="mean")
        s.close()
        assert got.value.tolist() == exact


def test_states_round_trip_in_time_order(store: Store) -> None:
    run = f"r-{np.random.default_rng().integers(1 << 30)}"
    changes = [(run, 0, "m1", T0 + pd.Timedelta(minutes=k), state, reason)
               for k, state, reason in ((5, "off_shift", ""), (0, "working", ""), (9, "working", ""),
                                        (2, "down", "bearing_wear"))]
    store.write_states(pd.DataFrame([*changes, ("other", 0, "m1", T0, "setup", "")], columns=STATE_COLUMNS))
    store.write_states(pd.DataFrame(changes[:2], columns=STATE_COLUMNS))  # a redelivery
    store.write_states(pd.DataFrame([(run, 1, "m1", T0, "down")], columns=STATE_COLUMNS[:5]))  # no reason known
    got = store.states(run)
    assert list(got.columns) == STATE_COLUMNS
    assert got.state.tolist() == ["working", "down", "off_shift", "working", "down"]
    assert got.reason.tolist() == ["", "bearing_wear", "", "", ""]
    assert (got[got.replication == 0].ts.diff().dropna() > pd.Timedelta(0)).all() and set(got.run) == {run}


_STATE_ROW = st.tuples(st.sampled_from(["r1", "r2"]), st.integers(0, 2), st.sampled_from(["m1", "m2"]),
                       st.integers(0, 5), st.sampled_from(["working", "down", "blocked"]), st.sampled_from(["", "jam"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(_STATE_ROW, max_size=12), min_size=1, max_size=4), st.booleans())
def test_state_changes_are_stored_once_the_last_of_each_key_frames_or_arrow_alike(
        tmp_path_factory: pytest.TempPathFactory, batches: list[list[tuple[object, ...]]], arrow: bool) -> None:
    """Batches of state changes (as an ingest's frames, or as a run's Arrow tables), with keys repeated inside a
    batch and across batches: the store keeps one row per (run, replication, machine, time), the last it was given:
    a record holds from its time on, so of two changes in one millisecond (a machine blocked and freed at one
    instant, a gateway's two changes in one second) it is the state after them. It kept the first, and a machine
    freed at the instant it was blocked read as blocked until its next change. (A redelivered message never comes
    this far: the ingest drops it by its identity.)"""
    import pyarrow as pa

    store = open_store(f"duckdb:///{tmp_path_factory.mktemp('states') / 'twin.duckdb'}")
    given = []
    for batch in batches:
        frame = pd.DataFrame([(run, rep, m, T0 + pd.Timedelta(seconds=sec), state, reason)
                              for run, rep, m, sec, state, reason in batch], columns=STATE_COLUMNS)
        frame["replication"] = frame["replication"].astype("int32")
        store.write_states(pa.Table.from_pandas(frame, preserve_index=False) if arrow else frame)
        given.append(frame)
    expected = pd.concat(given).drop_duplicates(STATE_COLUMNS[:4], keep="last").sort_values(STATE_COLUMNS[:4])
    got = pd.concat([store.states(run) for run in ("r1", "r2")]).sort_values(STATE_COLUMNS[:4])
    store.close()
    assert got[["state", "reason"]].astype(str).values.tolist() == expected[["state", "reason"]].values.tolist()
    assert got[STATE_COLUMNS[:3]].astype(str).values.tolist() == expected[STATE_COLUMNS[:3]].astype(str).values.tolist()
    assert (got.ts.astype("datetime64[ms]").to_numpy() == expected.ts.astype("datetime64[ms]").to_numpy()).all()


def test_states_and_levels_of_a_time_range_and_the_last_of_each(store: Store) -> None:
    """What a dashboard and a what-if read of a long history: the records of a range, and each machine's (station's)
    last one before a time, its state (level) then; a replication on its own."""
    run = f"r-{np.random.default_rng().integers(1 << 30)}"
    at = [T0 + pd.Timedelta(minutes=k) for k in range(6)]
    store.write_states(pd.DataFrame([(run, 0, "m1", at[0], "working", ""), (run, 0, "m1", at[2], "down", "jam"),
                                     (run, 0, "m1", at[4], "working", ""), (run, 0, "m2", at[1], "blocked", ""),
                                     (run, 1, "m1", at[3], "setup", "")], columns=STATE_COLUMNS))
    store.write_levels(pd.DataFrame([(run, 0, "s2", at[k], k) for k in range(6)], columns=LEVEL_COLUMNS))
    window = store.states(run, replication=0, start=at[1], end=at[4])
    assert list(zip(window.machine, window.state)) == [("m1", "down"), ("m2", "blocked")]
    then = store.states(run, replication=0, end=at[2], last=True)
    assert list(zip(then.machine, then.state, then.ts)) == [("m1", "working", at[0]), ("m2", "blocked", at[1])]
    now = store.states(run, last=True)
    assert list(zip(now.replication, now.machine, now.state, now.reason)) == [
        (0, "m1", "working", ""), (0, "m2", "blocked", ""), (1, "m1", "setup", "")]
    assert store.states(run, replication=0, start=at[2], last=True).state.tolist() == ["working"]
    assert store.levels(run, end=at[3], last=True)["level"].tolist() == [2]
    assert store.levels(run, start=at[4])["level"].tolist() == [4, 5]
    assert list(store.states(run, end=at[0], last=True).columns) == STATE_COLUMNS
    # a mixed line's machines: the product each is set up for from a time on, the last before a time what it is then
    store.write_products(pd.DataFrame([(run, 0, "m1", at[0], "still"), (run, 0, "m1", at[3], "juice"),
                                       (run, 0, "m2", at[1], "still"), (run, 0, "m1", at[3], "juice")],
                                      columns=PRODUCT_COLUMNS))  # a message delivered twice: stored once
    then = store.products(run, replication=0, end=at[2], last=True)
    assert list(zip(then.machine, then["product"])) == [("m1", "still"), ("m2", "still")]
    assert store.products(run, last=True)["product"].tolist() == ["juice", "still"]
    assert store.products(run)["product"].tolist() == ["still", "juice", "still"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_STATE_ROW, min_size=1, max_size=20), st.integers(0, 6), st.integers(0, 6), st.booleans(),
       st.one_of(st.none(), st.integers(0, 2)))
def test_a_range_or_its_last_records_are_the_history_filtered(
        tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[object, ...]], a: int, b: int, last: bool,
        replication: int | None) -> None:
    """`states(start, end, last, replication)` gives what filtering every record would."""
    store = open_store(f"duckdb:///{tmp_path_factory.mktemp('range') / 'twin.duckdb'}")
    frame = pd.DataFrame([(run, rep, m, T0 + pd.Timedelta(seconds=sec), state, reason)
                          for run, rep, m, sec, state, reason in rows], columns=STATE_COLUMNS)
    store.write_states(frame)
    every = store.states("r1")
    start, end = T0 + pd.Timedelta(seconds=a), T0 + pd.Timedelta(seconds=b)
    got = store.states("r1", replication=replication, start=start, end=end, last=last)
    store.close()
    want = every[(every.ts >= start) & (every.ts < end)]
    if replication is not None:
        want = want[want.replication == replication]
    if last:
        want = want.groupby(["replication", "machine"]).tail(1)
    assert got[STATE_COLUMNS].astype(str).values.tolist() == want[STATE_COLUMNS].astype(str).values.tolist()


def test_a_store_written_before_downtime_reasons_opens_and_reads(tmp_path: Path) -> None:
    """A DuckDB file whose states table has no reason column reads with empty reasons, and gains the column
    when opened for writing."""
    import duckdb

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE states (run VARCHAR, replication INTEGER, machine VARCHAR, ts TIMESTAMP, "
                "state VARCHAR, PRIMARY KEY (run, replication, machine, ts))")
    con.execute("INSERT INTO states VALUES ('r', 0, 'm1', TIMESTAMP '2026-01-05 06:00:00', 'down')")
    con.close()
    old = open_store(f"duckdb:///{path}", read_only=True)
    assert old.states("r").reason.tolist() == [""]
    assert old.states("r", last=True)[["state", "reason"]].values.tolist() == [["down", ""]]
    assert old.levels("r", last=True).empty and old.products("r", last=True).empty
    old.close()
    store = open_store(f"duckdb:///{path}")
    store.write_states(pd.DataFrame([("r", 0, "m1", T0 + pd.Timedelta(hours=1), "down", "jam")],
                                    columns=STATE_COLUMNS))
    got = store.states("r")
    store.close()
    assert got.state.tolist() == ["down", "down"] and got.reason.tolist() == ["", "jam"]


def test_bad_urls() -> None:
    with pytest.raises(StoreError, match="unknown scheme"):
        open_store("postgres://x")
    with pytest.raises(StoreError, match="names no file"):
        open_store("duckdb://")
    with pytest.raises(StoreError, match="bucket"):
        open_store("influxdb://localhost:8086?org=x")


def test_an_influxdb_store_nobody_serves_is_named_when_it_is_opened() -> None:
    """`twin run --no-stream --store influxdb://…` with no server there simulated the whole run and failed at its
    first write, at the end; an ingest (impatient: it spools while the store is away) still opens it."""
    from sensors.bus.broker import free_port

    url = f"influxdb://127.0.0.1:{free_port()}?org=plant&bucket=linetwin"
    with pytest.raises(StoreError, match=r"cannot reach InfluxDB at http://127.0.0.1:\d+ \(store URL"):
        open_store(url)
    open_store(url, patient=False).close()


def test_a_store_caps_its_block_cache_and_the_url_can_raise_it(tmp_path: Path) -> None:
    """A writer's DuckDB keeps written blocks in memory up to its limit (80 % of RAM by default: a month of
    body_shop held 1.6 GB); the store caps it, `?memory_limit=` changes it, a bad value is a clear error."""
    def limit(url: str) -> str:
        s = open_store(url)
        try:
            return s._con.execute("SELECT current_setting('memory_limit')").fetchone()[0]  # type: ignore[attr-defined]
        finally:
            s.close()

    file = tmp_path / "x.duckdb"
    assert limit(f"duckdb:///{file}") == "30.5 MiB"  # DuckDB's rendering of 32MB
    assert limit(f"duckdb:///{file}?memory_limit=1GB") == "953.6 MiB"
    # a reader's too (it kept DuckDB's 80 % of RAM: `twin train` on a month of body_shop held 1.8 GB for its query)
    reader = open_store(f"duckdb:///{file}", read_only=True)
    assert reader._con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "122.0 MiB"  # type: ignore[attr-defined]
    reader.close()
    with pytest.raises(StoreError, match=r"memory_limit='lots' is not a size.*64MB or 1GB"):
        open_store(f"duckdb:///{file}?memory_limit=lots")
    with pytest.raises(StoreError, match="unknown option 'threads'"):
        open_store(f"duckdb:///{file}?threads=8")
    reader = open_store(f"duckdb:///{file}", read_only=True)  # a reader's queries keep DuckDB's default
    try:
        assert reader._con.execute("SELECT current_setting('memory_limit')").fetchone()[0] != "61.0 MiB"  # type: ignore[attr-defined]
    finally:
        reader.close()


def test_a_writer_queries_a_run_larger_than_its_block_cache(tmp_path: Path) -> None:
    """Sorting 600,000 readings of a run needs more than a writer's 32 MB: its query lifts the limit while it runs
    and puts it back, so the writes after it are capped again."""
    s = open_store(f"duckdb:///{tmp_path / 'big.duckdb'}")
    catalog = pd.DataFrame([("big", f"machine-{m}", "st", f"sensor-{k}", "u") for m in range(10) for k in range(5)],
                           columns=SERIES_COLUMNS)
    n = 600_000
    ts = T0.value // 1_000_000 + 1000 * np.arange(n, dtype=np.int64)
    sizes = np.full(600, 1000, np.int64)
    try:
        assert s.append(ReadingBatch(catalog, (np.arange(n) % 50).astype(np.int32), np.zeros(n, np.int32), ts,
                                     ts.astype(np.float64), np.arange(600, dtype=np.int64), sizes)) == n
        got = s.query(run="big")
        assert len(got) == n and got.sort_values(["machine", "sensor", "ts"]).index.equals(got.index)
        assert s._con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "30.5 MiB"  # type: ignore[attr-defined]
        assert s.append(batch_of("big", [(600, n, 10)])) == 10
    finally:
        s.close()


def test_bad_aggregate(tmp_path: Path) -> None:
    s = open_store(f"duckdb:///{tmp_path / 'x.duckdb'}")
    with pytest.raises(StoreError, match="aggregate"):
        s.query(every="1min", agg="median")


def test_a_run_without_streaming_into_a_line_protocol_server_completes(victoria_metrics: VictoriaMetrics,
                                                                        tmp_path: Path) -> None:
    """`twin run --no-stream --store influxdb://…` on VictoriaMetrics (no Flux to count with): once ended with exit 3
    at its last step, after storing everything, because it asked the store for a count. The writer's own count
    stands; every reading and state change is on the server once."""
    import json
    import subprocess

    out = tmp_path / "run"
    r = subprocess.run(twin_cmd("run", "scenarios/cnc_cell.yaml", "--no-stream", "--duration", "1 h", "--warmup", 0,
                                "--replications", 1, "--out", out, "--store",
                                f"influxdb://127.0.0.1:{victoria_metrics.port}?org=plant&bucket=linetwin"),
                       capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, "LINETWIN_INFLUXDB_TOKEN": "t"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Warning" not in r.stderr, r.stderr[-2000:]  # no client advice about pivots on the console
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    generated = pd.read_parquet(out / "readings.parquet")
    assert f"{len(generated):,} readings in the store" in r.stdout
    def value_points(series: list[dict]) -> int:  # type: ignore[type-arg]
        return sum(len(s["values"]) for s in series if s["metric"]["__name__"].endswith("_value"))

    series = victoria_metrics.export_points(f'{{run="{run_id}"}}', value_points, len(generated))
    assert value_points(series) == len(generated) > 0
    # the state changes: one point per machine at the start of each of its state intervals (the ground truth's)
    truth = pd.read_parquet(out / "truth" / "states.parquet")
    stored = {s["metric"]["machine"]: s["timestamps"] for s in series
              if s["metric"]["__name__"] == "machine_state_state"}
    expected = {m: g.start_time.astype("datetime64[ms]").astype("int64").tolist() for m, g in truth.groupby("machine")}
    assert stored == expected


def test_a_mixed_lines_products_are_written_to_a_line_protocol_server(victoria_metrics: VictoriaMetrics) -> None:
    """What each machine of a mixed line is set up for goes through influxdb-client to the server as a point per
    change (measurement machine_product, tagged by run, replication and machine), like the state records."""
    store = open_store(f"influxdb://127.0.0.1:{victoria_metrics.port}?org=plant&bucket=linetwin")
    run = f"p-{np.random.default_rng().integers(1 << 30)}"
    at = [T0 + pd.Timedelta(minutes=k) for k in range(3)]
    try:
        store.write_products(pd.DataFrame([(run, 0, "filler", at[0], "still-05"), (run, 0, "filler", at[2], "juice-10"),
                                           (run, 0, "labeller", at[1], "still-05")], columns=PRODUCT_COLUMNS))
        store.write_products(pd.DataFrame(columns=PRODUCT_COLUMNS))  # nothing to write: nothing sent
    finally:
        store.close()

    def points(series: list[dict]) -> int:  # type: ignore[type-arg]
        return sum(len(s["timestamps"]) for s in series)

    series = victoria_metrics.export_points(f'{{run="{run}"}}', points, 3)
    stamps = {s["metric"]["machine"]: s["timestamps"] for s in series
              if s["metric"]["__name__"].startswith("machine_product")}
    ms = [int(t.value // 10**6) for t in at]
    assert stamps == {"filler": [ms[0], ms[2]], "labeller": [ms[1]]}


def test_influxdb_backend_writes_to_a_real_line_protocol_server(victoria_metrics: VictoriaMetrics) -> None:
    """influxdb-client -> VictoriaMetrics' InfluxDB v2 write API; read back through VictoriaMetrics' own API."""
    store = open_store(f"influxdb://127.0.0.1:{victoria_metrics.port}?org=plant&bucket=linetwin")
    df = readings("vm-run", n=300)
    store.write_series(pd.DataFrame([("vm-run", "m1", "press", "temp", "degC")],
                                    columns=["run", "machine", "station", "sensor", "unit"]))
    store.write(df)
    store.write(df.iloc[::7])  # redelivered points overwrite, not duplicate
    series = victoria_metrics.export('{run="vm-run"}')
    got = {(s["metric"]["__name__"], s["metric"]["machine"]): (s["timestamps"], s["values"]) for s in series}
    assert set(got) == {(f"{s}_value", m) for s in ("temp", "vib") for m in ("m1", "m2")}
    m1 = [s["metric"] for s in series if s["metric"]["machine"] == "m1"]
    assert m1 and all(m.get("station") == "press" and m["replication"] == "0" for m in m1), m1
    for (name, machine), (ts, values) in got.items():
        part = df[(df.machine == machine) & (df.sensor == name.removesuffix("_value"))]
        expected_ts = part.ts.astype("datetime64[ms]").astype("int64").tolist()
        assert ts == expected_ts  # every point once, in order
        assert values == part.value.tolist()
    store.close()


def test_a_batch_holding_the_same_reading_twice(store: Store) -> None:
    """A redelivered message can land in the same batch as its original."""
    run = f"r-{np.random.default_rng().integers(1 << 30)}"
    df = readings(run, n=50)
    store.write(pd.concat([df, df.iloc[:20]], ignore_index=True))
    assert store.count(run) == len(df)


def state_changes(run: str, replication: int, start: int, n: int) -> pd.DataFrame:
    """n state changes of 40 machines, one a second from `start` on, in a replication of a run."""
    i = np.arange(start, start + n)
    return pd.DataFrame({"run": run, "replication": replication, "machine": [f"station-{k % 40:02d}" for k in i],
                         "ts": T0 + pd.to_timedelta(i, unit="s"), "state": np.where(i % 3, "working", "starved"),
                         "reason": np.where(i % 7, "", "tool wear")})


def test_large_state_batches_fit_a_writers_memory_and_are_stored_once(tmp_path: Path) -> None:
    """A chunk of a long run brings ~100,000 state changes at once. Compared whole with what is stored, such a
    batch ran a writer's default 32 MB out of memory once a few were stored (a 2-day packaging run failed); each
    change is still stored once when a batch comes again."""
    url = f"duckdb:///{tmp_path / 'twin.duckdb'}"
    store = open_store(url)
    run = "packaging-1-20261203T141349-20261201"
    try:
        for replication in range(2):
            for chunk in range(3):
                store.write_states(state_changes(run, replication, chunk * 110_000, 110_000))
        store.write_states(state_changes(run, 1, 50_000, 110_000))  # a redelivery spanning two chunks
    finally:
        store.close()
    reader = open_store(url, read_only=True)  # as every reader opens a store
    try:
        states = reader.states(run)
    finally:
        reader.close()
    assert len(states) == 2 * 3 * 110_000
    assert not states.duplicated(["replication", "machine", "ts"]).any()


def test_a_store_another_process_holds_is_named_with_that_process(tmp_path: Path) -> None:
    """DuckDB's own words ('Conflicting lock is held in .../python3.11 (PID N). However, you would be able to open
    this database in read-only mode ...') told a plant engineer neither what holds the store nor what to do."""
    db = tmp_path / "plant.duckdb"
    open_store(f"duckdb:///{db}").close()
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(db)!r}, "
                               "read_only=True); print('ok', flush=True); time.sleep(60)"], stdout=subprocess.PIPE,
                              text=True)
    try:
        wait_for_line(holder.stdout, lambda s: s.strip() == "ok", 60, "'ok' from the process holding the store")
        with pytest.raises(StoreError, match=rf"another process has it open and locked \(PID {holder.pid}, python.*"
                                             r"stop that process, or give each run its own store file"):
            open_store(f"duckdb:///{db}")
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("name", ["readings.parquet", "log.csv"])
def test_a_data_file_given_as_the_duckdb_store_is_refused_not_written_to_memory(tmp_path: Path, name: str) -> None:
    """DuckDB opens an existing CSV or Parquet file as a table in an in-memory database: a run given
    `--store duckdb:///runs/x/readings.parquet` said "N readings in the store" and kept none. Refused, for writing
    and for reading, and the file is left as it was."""
    f = tmp_path / name
    if f.suffix == ".parquet":
        pd.DataFrame({"ts": [1, 2], "value": [0.5, 1.5]}).to_parquet(f)
    else:
        f.write_text("ts,value\n1,0.5\n2,1.5\n")
    before = f.read_bytes()
    for read_only in (False, True):
        with pytest.raises(StoreError, match=rf"{name} is not a DuckDB database file: .* would be lost"):
            open_store(f"duckdb:///{f}", read_only=read_only)
    assert f.read_bytes() == before
    store = open_store(f"duckdb:///{tmp_path / 'new.parquet'}")  # a new file of any name becomes a database
    store.close()


def test_a_duckdb_file_of_another_layout_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    """Another application's DuckDB file with a table of our names: a run into it simulated, then ended in a DuckDB
    binder error (after adding our other tables to that file)."""
    import duckdb

    f = tmp_path / "mes.duckdb"
    con = duckdb.connect(str(f))
    con.execute("CREATE TABLE readings (tag VARCHAR, v DOUBLE)")
    con.close()
    for read_only in (False, True):
        with pytest.raises(StoreError, match=r"mes\.duckdb is a DuckDB database of another layout: its table readings "
                                             r"has the columns tag, v, not replication, series, ts, value"):
            open_store(f"duckdb:///{f}", read_only=read_only)
    con = duckdb.connect(str(f), read_only=True)
    assert con.execute("SHOW TABLES").fetchall() == [("readings",)]
    con.close()
