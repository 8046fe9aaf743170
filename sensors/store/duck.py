"""The embedded store: one DuckDB file, safe to share between the ingest's threads.

Readings are appended as Arrow batches with no key on the table: the hot path (`append`) is a bulk
insert. A redelivered MQTT message is recognised by its identity (a hash of its bytes, kept in
`messages` with the message's run and time) and dropped whole in the same transaction that stores a
new one, so each message is stored exactly once; `write(frame)` checks its rows against what is stored
(an anti-join) instead.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sensors.store import store_file
from sensors.store.base import (
    LEVEL_COLUMNS,
    PRODUCT_COLUMNS,
    READING_COLUMNS,
    SERIES_COLUMNS,
    STATE_COLUMNS,
    ReadingBatch,
    StoreError,
    check_agg,
    check_also,
    rows_table,
)

# readings refer to their series by a small integer (the file stays small); no key on readings: a
# store file written by an older linetwin keeps its key, which only slows its inserts
_SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS series_id;
CREATE TABLE IF NOT EXISTS series (
    id INTEGER DEFAULT nextval('series_id') PRIMARY KEY,
    run VARCHAR, machine VARCHAR, station VARCHAR, sensor VARCHAR, unit VARCHAR,
    UNIQUE (run, machine, sensor));
CREATE TABLE IF NOT EXISTS readings (
    series INTEGER, replication INTEGER, ts TIMESTAMP, value DOUBLE);
CREATE TABLE IF NOT EXISTS messages (key BIGINT);
ALTER TABLE messages ADD COLUMN IF NOT EXISTS run VARCHAR;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS ts TIMESTAMP;
CREATE TABLE IF NOT EXISTS states (
    run VARCHAR, replication INTEGER, machine VARCHAR, ts TIMESTAMP, state VARCHAR);
ALTER TABLE states ADD COLUMN IF NOT EXISTS reason VARCHAR DEFAULT '';
CREATE TABLE IF NOT EXISTS levels (
    run VARCHAR, replication INTEGER, station VARCHAR, ts TIMESTAMP, level INTEGER);
CREATE TABLE IF NOT EXISTS products (
    run VARCHAR, replication INTEGER, machine VARCHAR, ts TIMESTAMP, product VARCHAR);
"""
# the columns each table has had in every linetwin store (newer ones add some, e.g. states.reason)
_LAYOUT = {"series": {"id", "run", "machine", "station", "sensor", "unit"},
           "readings": {"series", "replication", "ts", "value"}, "messages": {"key"},
           "states": {"run", "replication", "machine", "ts", "state"},
           "levels": {"run", "replication", "station", "ts", "level"},
           "products": {"run", "replication", "machine", "ts", "product"}}
# States and levels carry no key either: a key's index lives in memory and grew with the run (12 million state
# changes of a sensor-less line, 40 replications, ran the writer out of memory). A row already stored is found by
# an anti-join over the rows of the batch's runs, replications and time span: DuckDB skips, by their min/max, the
# row groups that cannot hold one. (Files written by an older linetwin keep their keys; the insert is the same.)
# The join hashes the batch's rows, so a batch is compared in slices of _SLICE rows, and not at all when nothing is
# stored in its span (the usual case: a run's next chunk): a 2-day packaging run's 107,000 state changes at once
# ran a writer's 32 MB out of memory. The span is each series' own (run, replication, machine or station: first and
# last time), `_SPANS`: a batch that ends one replication and begins the next overlaps the stored first half of the
# one before only in the coarse span, and was compared row by row (38 batches, 5.4 s, in a 40-replication run).
_SPAN = "run IN ({runs}) AND replication BETWEEN ? AND ? AND ts BETWEEN ? AND ?"
_SPANS = ("SELECT EXISTS (SELECT 1 FROM (SELECT run, replication, {name}, ts FROM {table} WHERE {span}) t "
          "JOIN spans g ON t.run = g.run AND t.replication = g.replication AND t.{name} = g.{name} "
          "AND t.ts BETWEEN g.first AND g.last)")
_NEW_ROWS = ("INSERT INTO {table} SELECT {columns} FROM batch b "
             "ANTI JOIN (SELECT {key} FROM {table} WHERE {span}) USING ({key})")
_SLICE = 20_000
_READINGS = "readings r JOIN series s ON r.series = s.id"
_COLUMNS = "s.run, r.replication, s.machine, s.sensor, r.ts, r.value"
# The mean by a compensated sum (Kahan-Babuska): avg's plain sum depends on the order DuckDB's threads add partial sums
# in, so the per-minute means of a week of body_shop differed in their last bits between two reads of the same run
# (60 of 60,480 minutes): training data, and its fingerprints that tell an evaluation on training data, not the same
# twice. As fast (0.30 s against 0.35 s a machine-month); an ordered avg was exact too, in 1.3 s.
_AGG_SQL = {"mean": "fsum(value) / count(value)", "min": "min(value)", "max": "max(value)",
            "last": "arg_max(value, ts)", "count": "count(value)"}


# A writer's cache of the file's blocks: DuckDB keeps every block it has written in memory up to its limit (by
# default 80 % of RAM), so a month of body_shop held 1.6 GB. A month's run fills the cache and a day's does not, so
# what the cache may hold is part of what a long run adds: twin run body_shop (truth row groups of 2^16 rows), peak
# RSS of a day against a month, 2026-12-03: at 64 MB 294-302 against 366-372 MB (+24 %), at 32 MB 280-289 against
# 331-335 MB (+17 %), in the same wall time (51-55 s a month).
WRITER_MEMORY = "32MB"
# A reader's likewise: at DuckDB's default the per-minute means of a month of body_shop's six weld cells (78 million
# readings, `twin train`'s query) held 1.8 GB and ran in 3.7 s, at 128 MB 0.4 GB in 3.9 s, so a year's training would
# have held most of the machine's memory. Asked a machine at a time (`predictors.data.twin_frame`): 0.36, 0.43, 0.55
# and 0.79 GB at 64, 128, 256 and 512 MB, in 3.5-3.9 s alike. What a query needs beyond it (a sort, a large
# aggregate) spills to disk.
READER_MEMORY = "128MB"


class DuckStore:
    """Readings in a DuckDB file; a redelivered message is dropped by its identity (see the module's docstring).

    `duckdb:///file?memory_limit=1GB` raises a writer's block cache (default `WRITER_MEMORY`), or a reader's
    (`READER_MEMORY`)."""

    def __init__(self, url: str, read_only: bool = False) -> None:
        self.url = url
        parts = urlsplit(url)
        path = store_file(url)
        if path is None:
            raise StoreError(f"store URL {url!r} names no file; write duckdb:///path/to/twin.duckdb")
        self.path = path
        options = parse_qs(parts.query)
        unknown = set(options) - {"memory_limit"}
        if unknown:
            raise StoreError(f"store URL {url!r}: unknown option {sorted(unknown)[0]!r}; a DuckDB store takes only "
                             "memory_limit (e.g. duckdb:///twin.duckdb?memory_limit=1GB)")
        memory = options.get("memory_limit", [READER_MEMORY if read_only else WRITER_MEMORY])[-1]
        self._keys_only = False  # set below for a writer whose file holds message identities without run and time
        self._writer_memory: str | None = None if read_only else memory
        # a reader's cap, lifted for a query whose result DuckDB holds whole (`_frame`) unless the URL set it
        self._reader_memory: str | None = None if not read_only or "memory_limit" in options else memory
        try:
            if read_only:
                if not self.path.exists():
                    raise StoreError(f"no DuckDB store at {self.path}; check the path or run a scenario first")
                self._con = duckdb.connect(str(self.path), read_only=True)
                self._refuse_foreign()
                self._limit_memory(memory)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._con = duckdb.connect(str(self.path))
                self._refuse_foreign()  # both before the schema below adds a table to anything
                self._limit_memory(memory)
                self._con.execute(_SCHEMA)
                # identities stored by a linetwin before messages had a run and a time: checked by key alone
                self._keys_only = bool(self._con.execute(
                    "SELECT EXISTS (SELECT 1 FROM messages WHERE ts IS NULL)").fetchone()[0])  # type: ignore[index]
        except (OSError, duckdb.Error) as e:
            held = re.search(r"Conflicting lock is held in (.*?) \(PID (\d+)\)", str(e))
            if held:  # DuckDB admits one writer, and no writer beside another process that has the file open
                raise StoreError(
                    f"cannot open the DuckDB store {self.path}: another process has it open and locked (PID {held[2]}, "
                    f"{Path(held[1]).name}: a `twin connect`, `twin ingest`, `twin run`, or a reader such as `twin "
                    "whatif`), and an embedded DuckDB store admits one writer and nothing beside it; stop that "
                    "process, or give each run its own store file, or use a store server (influxdb://...)") from None
            if "in-memory database in read-only mode" in str(e):  # a data file (CSV, Parquet) opened read-only
                raise StoreError(self._not_a_database()) from None
            raise StoreError(f"cannot open the DuckDB store {self.path}: {e}") from None
        self._lock = threading.RLock()
        self._tx: duckdb.DuckDBPyConnection | None = None  # the cursor of `together`'s transaction, while one is open
        self._ids: dict[tuple[str, str, str], int] = {}  # (run, machine, sensor) -> series id
        # a file opened read-only may predate a column of states (written for it as empty), found once here
        try:
            have = {r[1] for r in self._con.execute("PRAGMA table_info('states')").fetchall()}
        except duckdb.Error:  # no states table: states() says so when asked
            have = set(STATE_COLUMNS)
        self._state_select = ", ".join(c if c in have else f"'' AS {c}" for c in STATE_COLUMNS)

    def _not_a_database(self) -> str:
        return (f"{self.path} is not a DuckDB database file: DuckDB opens a CSV, Parquet or JSON file as a table in "
                "memory, where whatever is stored would be lost when the command ends; give the store its own file, "
                "e.g. duckdb:///twin.duckdb")

    def _refuse_foreign(self) -> None:
        """Refuse a connection DuckDB made in memory: given an existing data file (a run's readings.parquet, a CSV), it
        opens one with the file as a view, and a run stored there said "N readings in the store" and kept none. And
        refuse a database whose tables of our names have other columns (another application's DuckDB file): a run
        into it ended in a DuckDB binder error after simulating."""
        (path,) = self._con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
                                    ).fetchone()  # type: ignore[misc]
        if path is None:
            self._con.close()
            raise StoreError(self._not_a_database())
        have: dict[str, set[str]] = {}
        for table, column in self._con.execute("SELECT table_name, column_name FROM duckdb_columns() WHERE "
                                               "database_name = current_database()").fetchall():
            have.setdefault(table, set()).add(column)
        for table, needed in _LAYOUT.items():
            if table in have and not needed <= have[table]:
                self._con.close()
                raise StoreError(f"{self.path} is a DuckDB database of another layout: its table {table} has the "
                                 f"columns {', '.join(sorted(have[table]))}, not {', '.join(sorted(needed))}; give "
                                 "linetwin a store file of its own, e.g. duckdb:///twin.duckdb")

    def _limit_memory(self, memory: str) -> None:
        try:
            self._con.execute("SET memory_limit = ?", [memory])
        except duckdb.Error as e:
            self._con.close()
            raise StoreError(f"store URL {self.url!r}: memory_limit={memory!r} is not a size DuckDB takes ({e}); "
                             "write it like 64MB or 1GB") from None

    def _run(self, sql: str, params: list[Any] | None = None, **frames: pd.DataFrame) -> duckdb.DuckDBPyConnection:
        with self._lock:
            cur = self._con.cursor()
            for name, df in frames.items():
                cur.register(name, df)
            return cur.execute(sql, params or [])

    def _frame(self, sql: str, params: list[Any] | None = None, whole: bool = False) -> pd.DataFrame:
        """A query's rows as a DataFrame, through Arrow: strings come over as Arrow strings, not one Python object
        each (a 12-million-reading query took 16 s through `.df()`, 6 s this way).

        A writer's block cache is kept small (`WRITER_MEMORY`), too small to sort a run's readings (540,000 of them
        ran out of 32 MB): a query on a writer lifts the limit to DuckDB's default while it runs, and holds this
        store's writes meanwhile. So does a reader's query whose sorted result DuckDB holds `whole` before handing
        it over (a week of body_shop's raw readings, 30 million, ran out of `READER_MEMORY`); any other query of a
        reader runs under its cap, on its own cursor."""
        lifted = self._writer_memory or (self._reader_memory if whole else None)
        if lifted is None:
            with self._lock:
                cur = self._con.cursor()
            return cur.sql(sql, params=params or []).to_arrow_table().to_pandas()
        with self._lock:
            self._con.execute("RESET memory_limit")
            try:
                table = self._con.cursor().sql(sql, params=params or []).to_arrow_table()
            finally:
                self._con.execute("SET memory_limit = ?", [lifted])
        return table.to_pandas()

    def write(self, readings: pd.DataFrame) -> int:
        if len(readings):
            # a redelivered message may sit in the same batch as its original: one row per key
            readings = readings.drop_duplicates(subset=READING_COLUMNS[:5])
            self._run("INSERT OR IGNORE INTO series (run, machine, sensor) "
                      "SELECT DISTINCT run, machine, sensor FROM batch;"
                      "INSERT INTO readings SELECT s.id, b.replication, b.ts, b.value FROM batch b "
                      "JOIN series s ON s.run = b.run AND s.machine = b.machine AND s.sensor = b.sensor "
                      "ANTI JOIN readings r ON r.series = s.id AND r.replication = b.replication AND r.ts = b.ts",
                      batch=readings)
        return len(readings)

    def _series_ids(self, catalog: pd.DataFrame) -> np.ndarray:
        """The store's series id of every catalog row, registering the rows it has not seen."""
        keys = list(zip(catalog["run"], catalog["machine"], catalog["sensor"]))
        if any(k not in self._ids for k in keys):
            self.write_series(catalog)
            rows = self._run("SELECT s.run, s.machine, s.sensor, s.id FROM series s JOIN batch b "
                             "ON s.run = b.run AND s.machine = b.machine AND s.sensor = b.sensor",
                             batch=catalog[["run", "machine", "sensor"]]).fetchall()
            self._ids.update({(r, m, sn): i for r, m, sn, i in rows})
        return np.array([self._ids[k] for k in keys], dtype=np.int32)

    def append(self, batch: ReadingBatch) -> int:
        if not len(batch):
            return 0
        table = pa.table({"series": self._series_ids(batch.catalog)[batch.series],
                          "replication": np.asarray(batch.replication, dtype=np.int32),
                          "ts": pa.array(np.asarray(batch.ts_ms, dtype=np.int64), pa.timestamp("ms")),
                          "value": np.asarray(batch.value, dtype=np.float64)})
        with self.together():
            assert self._tx is not None
            if batch.message_keys is not None and batch.message_sizes is not None:
                table = self._new_messages(self._tx, table, batch)
            self._tx.register("batch", table)
            self._tx.execute("INSERT INTO readings SELECT * FROM batch")
        return table.num_rows

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """One transaction for the writes inside (a batch's readings, states and levels: one commit, one sync of
        DuckDB's log instead of three; 5-11 ms each in an ingest beside a run), held against this store's other
        threads; nested, the outer one commits."""
        with self._lock:
            if self._tx is not None:
                yield
                return
            cur = self._con.cursor()
            cur.begin()
            self._tx = cur
            try:
                yield
                cur.commit()
            except BaseException:
                cur.rollback()
                raise
            finally:
                self._tx = None

    def _new_messages(self, cur: duckdb.DuckDBPyConnection, table: pa.Table, batch: ReadingBatch) -> pa.Table:
        """The rows of messages not stored before (the first copy of each), recording their identities.

        A copy has the same bytes, so the same run and time as its original: only stored messages of the batch's
        run and time span are compared, and DuckDB skips the rest by their min/max (comparing against every key
        ever stored made each batch's check grow with the store: 35 ms a batch against 8 million messages)."""
        assert batch.message_keys is not None and batch.message_sizes is not None
        keys = np.asarray(batch.message_keys, dtype=np.int64)
        sizes = np.asarray(batch.message_sizes, dtype=np.int64)
        first = np.zeros(len(keys), dtype=bool)
        first[np.unique(keys, return_index=True)[1]] = True  # a redelivery inside this very batch
        # each message's run and time: those of its first reading (a message without readings stores no row)
        at = np.minimum(np.cumsum(sizes) - sizes, len(batch) - 1)
        ts = np.where(sizes > 0, np.asarray(batch.ts_ms, dtype=np.int64)[at], 0)
        run = np.where(sizes > 0, batch.catalog["run"].to_numpy(dtype=object)[np.asarray(batch.series)[at]], "")
        cur.register("keys", pa.table({"key": keys[first], "run": pa.array(run[first], pa.string()),
                                       "ts": pa.array(ts[first], pa.timestamp("ms"))}))
        runs = sorted(set(run[first]))  # one in practice: the ingest appends a run at a time
        seen = cur.execute(
            "SELECT key FROM keys SEMI JOIN (SELECT key, run, ts FROM messages WHERE ts BETWEEN epoch_ms(?) AND "
            f"epoch_ms(?) AND run IN ({', '.join('?' * len(runs))})) USING (key, run, ts)",
            [int(ts[first].min()), int(ts[first].max()), *runs]).fetchnumpy()["key"]
        if self._keys_only:
            old = cur.execute("SELECT key FROM keys SEMI JOIN (SELECT key FROM messages WHERE ts IS NULL) "
                              "USING (key)").fetchnumpy()["key"]
            seen = np.concatenate([seen, old])
        fresh = first & ~np.isin(keys, seen)
        cur.register("fresh", pa.table({"key": keys[fresh], "run": pa.array(run[fresh], pa.string()),
                                        "ts": pa.array(ts[fresh], pa.timestamp("ms"))}))
        cur.execute("INSERT INTO messages SELECT key, run, ts FROM fresh")
        return table if fresh.all() else table.filter(pa.array(np.repeat(fresh, sizes)))

    def write_states(self, states: pd.DataFrame | pa.Table) -> None:
        if len(states):  # of two changes of a machine in one millisecond, the state it is in after them: the last
            self._insert_new("states", rows_table(states, STATE_COLUMNS), STATE_COLUMNS, keep="last")

    def write_levels(self, levels: pd.DataFrame | pa.Table) -> None:
        if len(levels):
            self._insert_new("levels", rows_table(levels, LEVEL_COLUMNS), LEVEL_COLUMNS)

    def write_products(self, products: pd.DataFrame | pa.Table) -> None:
        if len(products):  # of two changes of a machine in one millisecond, the product it is set up for after them
            self._insert_new("products", rows_table(products, PRODUCT_COLUMNS), PRODUCT_COLUMNS, keep="last")

    def _insert_new(self, table: str, rows: pa.Table, columns: Sequence[str], keep: str = "first") -> None:
        """Insert the rows not stored yet, by their key (the first four columns: run, replication, name, ts); of rows
        repeated within `rows`, the first, and a key stored already kept as it is. With `keep="last"` the last row
        given for a key wins, here and against what is stored (a state record: the state after its time)."""
        rows, spans = _first_of_each(rows, list(columns[:4]), keep)
        # the coarse span (for DuckDB to skip row groups by their min/max) from the series' spans: a row or so each
        runs = pc.unique(spans.column("run")).to_pylist()
        replication = pc.min_max(spans.column("replication"))
        params = [*runs, replication["min"].as_py(), replication["max"].as_py(), pc.min(spans.column("first")).as_py(),
                  pc.max(spans.column("last")).as_py()]
        span = _SPAN.format(runs=", ".join("?" * len(runs)))
        with self.together():  # the check and the insert as one step: no other write of this store comes between
            cur = self._tx
            assert cur is not None
            cur.register("spans", spans)
            if not cur.execute(_SPANS.format(table=table, name=columns[2], span=span), params).fetchall()[0][0]:
                cur.register("batch", rows)
                cur.execute(f"INSERT INTO {table} SELECT {', '.join(columns)} FROM batch")
                return
            sql = _NEW_ROWS.format(table=table, columns=", ".join(f"b.{c}" for c in columns),
                                   key=", ".join(columns[:4]), span=span)
            on_key = " AND ".join(f"{table}.{c} = b.{c}" for c in columns[:4])
            where = f"{table}.run IN ({', '.join('?' * len(runs))}) AND {table}.replication BETWEEN ? AND ? AND " \
                f"{table}.ts BETWEEN ? AND ?"  # the span, for DuckDB to skip row groups
            update = (f"UPDATE {table} SET {', '.join(f'{c} = b.{c}' for c in columns[4:])} FROM batch b "
                      f"WHERE {on_key} AND {where}" if keep == "last" else None)
            for start in range(0, rows.num_rows, _SLICE):  # each slice compared with what is stored, earlier ones too
                cur.register("batch", rows.slice(start, _SLICE))
                if update is not None:  # a key stored already takes the later row's values
                    cur.execute(update, params)
                cur.execute(sql, params)

    def write_series(self, series: pd.DataFrame) -> None:
        if len(series):
            self._run(f"INSERT INTO series ({', '.join(SERIES_COLUMNS)}) SELECT {', '.join(SERIES_COLUMNS)} FROM batch "
                      "ON CONFLICT (run, machine, sensor) DO UPDATE SET station = excluded.station, "
                      "unit = excluded.unit", batch=series)

    @staticmethod
    def _where(start: Any, end: Any, machines: Sequence[str] | None, sensors: Sequence[str] | None,
               run: str | None, replications: Sequence[int] | None = None) -> tuple[str, list[Any]]:
        clauses, params = ["TRUE"], []
        for cond, value in (("r.ts >= ?", start), ("r.ts < ?", end), ("s.run = ?", run)):
            if value is not None:
                clauses.append(cond)
                params.append(pd.Timestamp(value).to_pydatetime() if cond.startswith("r.ts") else value)
        for col, values in (("s.machine", machines), ("s.sensor", sensors)):
            if values is not None:
                clauses.append(f"{col} IN (SELECT unnest(?::VARCHAR[]))")
                params.append(list(values))
        if replications is not None:
            clauses.append("r.replication IN (SELECT unnest(?::INTEGER[]))")
            params.append([int(r) for r in replications])
        return " AND ".join(clauses), params

    def query(self, start: Any = None, end: Any = None, *, machines: Sequence[str] | None = None,
              sensors: Sequence[str] | None = None, run: str | None = None, every: str | None = None,
              agg: str = "mean", replications: Sequence[int] | None = None, also: Sequence[str] = ()) -> pd.DataFrame:
        more = "".join(f", {_AGG_SQL[a]} AS \"{a}\"" for a in check_also(every, also))
        where, params = self._where(start, end, machines, sensors, run, replications)
        if every is None:
            sql = f"SELECT {_COLUMNS} FROM {_READINGS} WHERE {where} ORDER BY run, replication, machine, sensor, ts"
            return self._frame(sql, params, whole=True)
        seconds = pd.Timedelta(every).total_seconds()
        if seconds <= 0:
            raise StoreError(f"interval {every!r} must be positive, e.g. '10s' or '1min'")
        sql = (f"SELECT s.run, r.replication, s.machine, s.sensor, time_bucket(to_microseconds(?), r.ts) AS ts, "
               f"{_AGG_SQL[check_agg(agg)]} AS value{more} FROM {_READINGS} WHERE {where} "
               "GROUP BY ALL ORDER BY run, replication, machine, sensor, ts")
        return self._frame(sql, [int(seconds * 1e6), *params])

    def latest(self, *, machines: Sequence[str] | None = None, sensors: Sequence[str] | None = None,
               run: str | None = None, end: Any = None) -> pd.DataFrame:
        where, params = self._where(None, end, machines, sensors, run)
        sql = (f"SELECT s.run, r.replication, s.machine, s.sensor, max(r.ts) AS ts, arg_max(r.value, r.ts) AS value "
               f"FROM {_READINGS} WHERE {where} GROUP BY ALL ORDER BY run, replication, machine, sensor")
        return self._frame(sql, params)

    def series(self, run: str | None = None) -> pd.DataFrame:
        where = "run = ?" if run is not None else "TRUE"
        return self._frame(f"SELECT {', '.join(SERIES_COLUMNS)} FROM series WHERE {where} "
                           "ORDER BY run, machine, sensor", [run] if run is not None else [])

    def states(self, run: str | None = None, *, replication: int | None = None, start: Any = None, end: Any = None,
               last: bool = False) -> pd.DataFrame:
        return self._history("states", "machine", self._state_select.split(", "), run, replication, start, end, last)

    def levels(self, run: str | None = None, *, replication: int | None = None, start: Any = None, end: Any = None,
               last: bool = False) -> pd.DataFrame:
        try:
            return self._history("levels", "station", LEVEL_COLUMNS, run, replication, start, end, last)
        except duckdb.CatalogException:  # a file from before buffer levels were stored, opened read-only
            return pd.DataFrame(columns=LEVEL_COLUMNS)

    def products(self, run: str | None = None, *, replication: int | None = None, start: Any = None, end: Any = None,
                 last: bool = False) -> pd.DataFrame:
        try:
            return self._history("products", "machine", PRODUCT_COLUMNS, run, replication, start, end, last)
        except duckdb.CatalogException:  # a file from before products were stored, opened read-only
            return pd.DataFrame(columns=PRODUCT_COLUMNS)

    def _history(self, table: str, key: str, select: list[str], run: str | None, replication: int | None,
                 start: Any, end: Any, last: bool) -> pd.DataFrame:
        """A states or levels table's rows of a run, replication and time range; with `last`, each key's last one
        (by arg_max over the range: a year of a plant's state changes is not read to tell its state now)."""
        clauses, params = ["TRUE"], []
        for cond, value in (("run = ?", run), ("replication = ?", replication), ("ts >= ?", start), ("ts < ?", end)):
            if value is not None:
                clauses.append(cond)
                params.append(pd.Timestamp(value).to_pydatetime() if cond.startswith("ts") else value)
        groups = ("run", "replication", key)
        if last:  # every other column as it is in the key's latest row
            select = [c if c in groups else "max(ts) AS ts" if c == "ts" else
                      f"arg_max({c.split(' AS ')[0]}, ts) AS {c.split(' AS ')[-1]}" for c in select]
        sql = (f"SELECT {', '.join(select)} FROM {table} WHERE {' AND '.join(clauses)}"
               f"{' GROUP BY ALL' if last else ''} ORDER BY run, replication, {key}, ts")
        return self._frame(sql, params)

    def count(self, run: str | None = None) -> int:
        where = "series IN (SELECT id FROM series WHERE run = ?)" if run is not None else "TRUE"
        row = self._run(f"SELECT count(*) FROM readings WHERE {where}", [run] if run is not None else []).fetchone()
        return int(row[0]) if row else 0

    def refused(self, error: Exception) -> bool:
        return not isinstance(error, (OSError, MemoryError, duckdb.OperationalError))  # I/O, disk full, closed

    def ping(self) -> bool:
        try:
            self._run("SELECT 1")
            return True
        except Exception:
            return False

    def close(self) -> None:
        with self._lock:
            self._con.close()


def _first_of_each(rows: pa.Table, key: list[str], keep: str = "first") -> tuple[pa.Table, pa.Table]:
    """`rows` without the later repeats of a key (a redelivered message's rows; with `keep="last"`, without the
    earlier ones), in their order; and the span of each
    series among them: the key's columns but its last (the time), with the series' `first` and `last` time. Compared
    as integer codes (text by its dictionary index) sorted once: hashing Python strings, pandas' `duplicated` or
    Arrow's group-by cost two to ten times as much."""
    codes = []
    for name in key:
        col = rows.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        elif not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):  # text: its dictionary index
            col = pc.dictionary_encode(col.cast(pa.string()).combine_chunks()).indices
        codes.append(np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64))
    order = np.lexsort(codes[::-1])  # by the key's columns in turn; stable: of equal keys, the first given first
    changed = [c[order[1:]] != c[order[:-1]] for c in codes]  # between neighbours in that order
    new_series = np.concatenate([[True], np.logical_or.reduce(changed[:-1])]) if len(order) else order.astype(bool)
    repeated = np.zeros(len(order), dtype=bool)
    same = ~(new_series[1:] | changed[-1])  # a row whose key is its predecessor's in that order
    repeated[(order[1:] if keep == "first" else order[:-1])[same]] = True
    first = np.flatnonzero(new_series)
    last = np.append(first[1:], len(order))[:len(first)] - 1  # each series ends where the next begins (none: none)
    ts = rows.column(key[-1])
    spans = rows.select(key[:-1]).take(order[first]).append_column("first", ts.take(order[first])).append_column(
        "last", ts.take(order[last]))
    return (rows.filter(pa.array(~repeated)) if repeated.any() else rows), spans
