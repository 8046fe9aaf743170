"""Runs a scenario: replications of the line, sensor readings chunk by chunk, ground truth, KPIs.

`simulate` drives one replication and hands each chunk of readings to a callback (so the model
never knows where readings go: a Parquet file here, MQTT in the pipeline). `run_scenario` runs all
replications and writes an open-format result folder (see `RunWriter`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
import json
import os
import platform
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import twin
from sensors.bank import Readings, SensorBank, sensor_catalog
from sensors.inject import Injection
from twin.app.disk import DiskWatch
from twin.kpi import replication_kpis, summarize, t_quantile
from twin.maintenance import MaintenancePolicy
from twin.model import STATES, Line, Machine
from twin.scenario import Scenario
from twin.truth import ProductFollower, StateFollower, TruthReader

if TYPE_CHECKING:
    from twin.app.cluster import Tasks

# Arrow's default allocator (jemalloc) keeps freed buffers for reuse: with the system's, a run's peak memory is
# about 50 MB lower here and as fast
pa.set_memory_pool(pa.system_memory_pool())

HEALTH_PERIOD = 60.0  # seconds between ground-truth health samples
ProgressFn = Callable[[int, float], None]  # (replication, simulated seconds done)



def write_json(path: Path, doc: dict[str, Any]) -> None:
    """`doc` as JSON at `path`, for a reader whole or not at all: written to a temporary file renamed over it (the
    dashboard and `twin train`, reading a running run's run.json, found it empty while it was being rewritten). On a
    full disk: without indentation (a third less), and at last in place, the old file's space freed first."""
    tmp = path.with_name(f".{path.name}.tmp")
    text = ""
    for text in (json.dumps(doc, indent=2) + "\n", json.dumps(doc, separators=(",", ":")) + "\n"):
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
            return
        except OSError:
            tmp.unlink(missing_ok=True)
    path.write_text(text, encoding="utf-8")

@dataclass
class Replication:
    """What one replication produced: the finished line (ground truth) and its KPIs."""

    line: Line
    kpis: pd.DataFrame
    readings: int = 0


class HealthSampler:
    """Samples every wear mode's true wear on a fixed grid: the health part of the ground truth."""

    def __init__(self, line: Line, period: float = HEALTH_PERIOD) -> None:
        self.period = period
        self.readers = [(m, TruthReader(m)) for m in line.machines if m.wear_modes]
        pairs = [(m.name, m.modes[i].name) for m, _ in self.readers for i in m.wear_modes]
        self._machines = pa.array([m for m, _ in pairs], pa.string())
        self._modes = pa.array([f for _, f in pairs], pa.string())

    def sample(self, t0: float, t1: float) -> pa.Table:
        """Columns t, machine, fault_mode, wear for the grid times in [t0, t1), machine by machine."""
        k0, k1 = int(np.ceil(t0 / self.period - 1e-9)), int(np.ceil(t1 / self.period - 1e-9))
        ts = np.arange(k0, k1) * self.period
        wears = []
        for m, reader in self.readers:
            _, _, wear = reader.at(ts)
            wears.extend(wear[i] for i in m.wear_modes)
        pair = pa.array(np.repeat(np.arange(len(wears), dtype=np.int32), len(ts)))
        return pa.table({"t": np.tile(ts, len(wears)),
                         "machine": self._machines.take(pair), "fault_mode": self._modes.take(pair),
                         "wear": np.concatenate(wears) if wears else np.empty(0)})


class Background:
    """Work handed to one thread of its own, at most one piece in flight: the caller (the simulation) goes on
    meanwhile, memory holds at most the piece being done and the next, and an error surfaces in the caller's
    thread at its next `submit`, `wait` or `close`. A thread that dies without doing its work (out of memory as it
    starts: Python then only prints "Exception ignored in thread started by") is a MemoryError in the caller, not a
    wait without end."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: Future[Any] | None = None

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Start `fn(*args, **kwargs)` once the piece before it is done; returns that piece's result (or None)."""
        previous = self.wait()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix=self.name)
        self._inflight = self._pool.submit(fn, *args, **kwargs)
        return previous

    def wait(self) -> Any:
        """The result of the piece in flight, once done (None if there is none)."""
        fut, self._inflight = self._inflight, None
        while fut is not None:
            try:
                return fut.result(timeout=1.0)
            except TimeoutError:
                # the pool's own thread (the executor keeps it in `_threads`; it has no public way to ask)
                if self._pool is not None and not any(t.is_alive() for t in self._pool._threads) and not fut.done():
                    raise MemoryError(f"the {self.name} thread ended without doing its work (it could not start: "
                                      "out of memory)") from None
        return None

    def close(self) -> Any:
        """Wait for the last piece and end the thread; returns that piece's result."""
        try:
            return self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown()


# Rows per row group. Readings come a chunk (~CHUNK_READINGS) at a time. The health samples come a few thousand a
# chunk, so a file's buffer holds up to a row group of them for many chunks: at 2^18 rows (16 MB of health) that
# made a month's run peak higher than a day's, whose health never fills a row group.
READINGS_ROWS = 1 << 18
TRUTH_ROWS = 1 << 16


class TableStream:
    """One Parquet file written as it grows: tables in, row groups of `rows` out, one writer for the file.

    Encoding and compression run in the `Background` (pyarrow releases the GIL), so the simulation goes on
    meanwhile. The file is written under a hidden name and renamed when closed: a reader (the dashboard) never
    sees half a file. `keep_empty`: the file is written even if no row ever comes (from the first table's schema).
    `ipc`: an Arrow IPC file instead, record batches of `rows` (a worker's part, `PartFile`)."""

    def __init__(self, path: Path, rows: int = READINGS_ROWS, keep_empty: bool = False, ipc: bool = False) -> None:
        self.path, self.rows, self.keep_empty, self.ipc = path, rows, keep_empty, ipc
        self._partial = path.with_name(f".{path.name}.writing")
        self._writer: pq.ParquetWriter | pa.ipc.RecordBatchFileWriter | None = None
        self._schema: pa.Schema | None = None
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._background = Background(f"parquet-{path.stem}")
        self._closed = False

    def write(self, table: pa.Table) -> None:
        """Queue `table`'s rows (cast to the file's schema, set by the first table written)."""
        if self._writer is None and (table.num_rows or self.keep_empty):
            # dictionary encoding where it pays (text, small integers); plain for times and values
            dictionary = [f.name for f in table.schema if not pa.types.is_floating(f.type)
                          and not pa.types.is_timestamp(f.type)]
            self._schema = table.schema
            self._writer = pa.ipc.new_file(str(self._partial), table.schema) if self.ipc else \
                pq.ParquetWriter(self._partial, table.schema, compression="zstd", use_dictionary=dictionary)
        if not table.num_rows:
            return
        assert self._writer is not None and self._schema is not None
        if table.schema != self._schema:
            table = table.cast(self._schema)
        self._buffer.append(table)
        self._buffered += table.num_rows
        if self._buffered >= self.rows:
            self.flush(whole=True)

    def flush(self, whole: bool = False) -> None:
        """Write what is buffered; `whole`: only whole row groups, the rest kept for the next, so the file's row
        groups fall at the same rows however the tables came (a run on workers gives the same bytes as one here)."""
        if not self._buffer or self._writer is None:
            return
        table = pa.concat_tables(self._buffer)
        cut = table.num_rows - table.num_rows % self.rows if whole else table.num_rows
        if cut:
            if self.ipc:
                self._background.submit(self._writer.write_table, table.slice(0, cut), max_chunksize=self.rows)
            else:
                self._background.submit(self._writer.write_table, table.slice(0, cut), row_group_size=self.rows)
        rest = table.slice(cut)
        self._buffer, self._buffered = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> None:
        """Write what is left and give the file its name; a file whose writing failed (a full disk) keeps its hidden
        name, so no half file ever has the real one. Closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
            self._background.close()
        except BaseException:
            if self._writer is not None:
                with contextlib.suppress(Exception):
                    self._writer.close()
            raise
        if self._writer is not None:
            self._writer.close()  # writes the footer: may fail too, and then the file keeps its hidden name
            self._partial.replace(self.path)


class PartFile:
    """A file of a worker's part (Arrow IPC), read a record batch at a time. Parts were Parquet: encoded by the worker
    and decoded again by the main process, twice (the run's files, the store); a cnc_cell 8 h part is written in 8 ms
    instead of 29 and read in 1 ms instead of 22. Read from the disk, not memory-mapped: every page read would count
    in the main process's memory until the file is closed (a 3-day body_shop replication's readings are 300 MB)."""

    def __init__(self, path: Path) -> None:
        self._file = pa.OSFile(str(path))
        self._reader = pa.ipc.open_file(self._file)

    def __enter__(self) -> PartFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()  # now, not when collected: the part folder is removed right after its merge

    @property
    def schema(self) -> pa.Schema:
        return self._reader.schema

    def iter_batches(self, batch_size: int, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The file's rows in batches of at most `batch_size` (the `columns` named, else all), in order."""
        for i in range(self._reader.num_record_batches):
            batch = self._reader.get_batch(i)
            if columns is not None:
                batch = batch.select(list(columns))
            for start in range(0, batch.num_rows, batch_size):
                yield batch.slice(start, batch_size)

    def read_all(self) -> pa.Table:
        return self._reader.read_all()


def part_name(name: str) -> str:
    """A run file's name in a worker's part folder: `truth/states.parquet` -> `truth/states.arrow`."""
    return name.removesuffix(".parquet") + ".arrow"


def write_part(table: pa.Table, path: Path, rows: int = READINGS_ROWS) -> None:
    """One table as a part file (Arrow IPC, record batches of at most `rows`)."""
    with pa.ipc.new_file(str(path), table.schema) as writer:
        writer.write_table(table, max_chunksize=rows)


def arrow_table(df: pd.DataFrame) -> pa.Table:
    """A frame as Arrow with text columns typed as strings even when empty or all null, and categories as
    dictionaries of strings (what a Parquet file reads back as), so every replication's table, and a run merged from
    workers' parts, has the same schema, byte for byte."""
    schema = pa.Schema.from_pandas(df, preserve_index=False)
    for i, name in enumerate(df.columns):
        if df[name].dtype == object:
            schema = schema.set(i, pa.field(name, pa.string()))
        elif pa.types.is_dictionary(schema.field(i).type) and pa.types.is_large_string(schema.field(i).type.value_type):
            schema = schema.set(i, pa.field(name, pa.dictionary(schema.field(i).type.index_type, pa.string())))
    return pa.Table.from_pandas(df, schema=schema, preserve_index=False)


CHUNK_READINGS = 250_000  # readings per simulation step when running flat out: large batches, bounded memory
STREAM_CHUNK = 600.0  # simulated seconds per step of a streamed run: subscribers see the line advance in these


def default_chunk(realtime_factor: float, duration: float = 0.0, readings_per_s: float = 0.0,
                  closed_loop: bool = False) -> float:
    """Simulated seconds per step. Live: a fifth of a wall-clock second. Flat out: sized by the work, about
    CHUNK_READINGS readings a step (at most a tenth of the run, so progress moves), since every step costs
    a fixed overhead; a closed loop (a policy acting on the run's own alerts) keeps 600 s steps, so its
    orders come as soon as before."""
    if realtime_factor > 0:
        return 0.2 * realtime_factor
    if closed_loop or duration <= 0:
        return 600.0
    longest = max(600.0, duration / 10)
    return longest if readings_per_s <= 0 else float(np.clip(CHUNK_READINGS / readings_per_s, 1.0, longest))


@functools.cache  # once per process
def _freeze_loaded() -> None:
    """At a process's first simulation: what it has loaded by then (modules, the scenario, an open store, models)
    lives as long as the process, so it is moved out of the garbage collector's sight (`gc.freeze`), and the full
    collections during the simulations scan only what they make (serial-5's 100,000 min in `twin run`: 2.27 s ->
    2.12 s). Once per process, before the line is built: a later call would also keep whatever garbage the
    simulations had left uncollected (a line's objects refer to each other)."""
    gc.freeze()


def simulate(scenario: Scenario, replication: int = 0, *,
             on_readings: Callable[[Line, Readings], None] | None = None,
             on_health: Callable[[Line, pa.Table], None] | None = None,
             progress: ProgressFn | None = None,
             policy: Callable[[Machine], MaintenancePolicy] | None = None,
             chunk: float | None = None,
             sensors: bool = True,
             wall_start: float | None = None) -> Replication:
    """Run one replication to the scenario's end, streaming readings chunk by chunk, paced if asked."""
    _freeze_loaded()
    line = Line(scenario, replication, policy=policy)
    bank = SensorBank(line) if sensors else None
    health = HealthSampler(line) if on_health else None
    factor = scenario.realtime_factor
    step = chunk or default_chunk(factor, scenario.duration, bank.readings_per_s if bank is not None else 0.0,
                                  closed_loop=policy is not None)
    wall0 = time.time() if wall_start is None else wall_start  # when live: the wall time of t = 0
    t, n = 0.0, 0
    while t < scenario.duration:
        t1 = min(t + step, scenario.duration)
        line.run(t1)
        batch = bank.sample(t, t1) if bank is not None else None
        if factor > 0:  # live: hand readings over once the wall clock has reached their time
            ahead = wall0 + t1 / factor - time.time()
            if ahead > 0:
                time.sleep(ahead)
        if batch is not None:
            n += len(batch)
            if on_readings is not None:
                on_readings(line, batch)
        if health is not None and on_health is not None:
            on_health(line, health.sample(t, t1))
        if progress is not None:
            progress(replication, t1)
        t = t1
    return Replication(line, replication_kpis(line), n)


def states_frame(line: Line) -> pd.DataFrame:
    """State intervals of every machine (zero-length ones dropped): the state part of the ground truth."""
    frames = []
    end = min(line.env.now, line.scenario.duration)
    for m in line.machines:
        t = np.frombuffer(m.log.t, dtype=np.float64).copy()
        s = np.frombuffer(m.log.state, dtype=np.int8).copy()
        stop = np.append(t[1:], end)
        keep = stop > t
        frames.append(pd.DataFrame({"machine": m.name, "station": m.station.name, "start": t[keep],
                                    "end": stop[keep], "state": pd.Categorical.from_codes(s[keep], STATES)}))
    return pd.concat(frames, ignore_index=True)


def events_frame(line: Line) -> pd.DataFrame:
    """Failures, repairs, maintenance and changeovers, in time order: the event part of the ground truth."""
    df = pd.DataFrame([(e.t, e.machine, e.kind, e.fault_mode, e.detail) for e in line.events],
                      columns=["t", "machine", "event", "fault_mode", "detail"])
    return df.astype({"t": "float64", "machine": "str", "event": "str", "fault_mode": "str", "detail": "str"})


def parts_frame(line: Line) -> pd.DataFrame:
    """Every part of the replication: when it entered and left (NaN: still inside), the station that scrapped it, on
    a line with products its product, on a line with assemblies the part it went into (NA: none; such a part left
    inside another, not out of the line), and on a line with rework stations whether it was sent to one."""
    sc = line.scenario
    names = [s.name for s in sc.stations]
    scrap = np.frombuffer(line.scrapped_at, dtype=np.int16).copy()
    extra: dict[str, Any] = {}
    if sc.products:
        extra["product"] = pd.Categorical.from_codes(np.frombuffer(line.product, dtype=np.int8).astype(np.int16),
                                                     line.product_names)
    if any(st.assemble for st in sc.stations):
        into = np.frombuffer(line.into, dtype=np.int64)
        extra["into"] = pd.arrays.IntegerArray(into.copy(), into < 0)
    if any(st.rework for st in sc.stations):
        extra["reworked"] = line.reworked_mask()
    return pd.DataFrame({"part": np.arange(len(scrap)), "entry": np.frombuffer(line.entry).copy(),
                         "exit": np.frombuffer(line.exit).copy(),
                         "scrapped_at": [names[i] if i >= 0 else None for i in scrap], **extra})


# files of a run folder written even when empty (readings and health exist only when there are some)
ALWAYS_WRITTEN = {"truth/states.parquet", "truth/events.parquet", "truth/parts.parquet", "kpis.parquet"}
PARTS = ".parts"  # the result folder's folder of the replications' parts (`replication_part`), while they run
PART_FILES = ("readings.parquet", "truth/health.parquet", *sorted(ALWAYS_WRITTEN))  # what `merge` takes from a part
# (under their `part_name`)


@dataclass
class RunWriter:
    """Writes a run folder: readings.parquet, sensors.parquet, truth/*.parquet, kpis, summary.

    Every table has a `replication` column; times are seconds since the start (`t`) plus a wall-clock
    `timestamp` from the scenario's `start`, so any Parquet reader (pandas, DuckDB, Spark) can use them.
    Each file is streamed through one writer in large row groups as the run goes (memory bounded by a
    row group, not by the run); only the KPI summary waits for the last replication.
    """

    out: Path
    scenario: Scenario
    part: bool = False  # one replication's part (merged by `merge`): Arrow IPC files; readings keep the series id
    index_warned: bool = field(default=False, init=False)  # the runs index could not be written (said once)
    _files: dict[str, TableStream] = field(default_factory=dict)
    _kpis: list[pd.DataFrame] = field(default_factory=list)
    _catalog: pd.DataFrame | None = None
    _names: tuple[tuple[np.ndarray, pa.Array], ...] | None = None

    def __post_init__(self) -> None:
        (self.out / "truth").mkdir(parents=True, exist_ok=True)
        self._start = np.datetime64(self.scenario.start.replace(tzinfo=None), "ms")

    def _meta(self, status: str, extra: dict[str, Any] | None) -> None:
        meta = {"linetwin": twin.__version__, "python": platform.python_version(), "status": status,
                "host": socket.gethostname(), "pid": os.getpid(),  # a reader tells a run whose process died
                "scenario": self.scenario.model_dump(mode="json", by_alias=True),
                "written": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **(extra or {})}
        write_json(self.out / "run.json", meta)
        if not self.part:
            self._index(meta)

    def _index(self, meta: dict[str, Any]) -> None:
        """List the run in the ledger's runs index, so a dashboard finds it wherever --out put it (a ledger that
        cannot be written costs the index entry, never the run: a warning says so, once)."""
        from sensors.store.ledger import Ledger, LedgerError

        sc = self.scenario
        try:
            ledger = Ledger()
            run_id = str(meta.get("run_id", ""))
            ledger.register_run(self.out, run_id, f"{sc.line.site}/{sc.line.area}/{sc.line.name}", sc.line.name,
                                str(meta["status"]))
            if meta["status"] != "running" and run_id:
                ledger.end_run(run_id)  # its alarms are history now, whether or not a dashboard saw the end
            ledger.close()
        except LedgerError as e:
            if not self.index_warned:
                self.index_warned = True
                import sys

                print(f"warning: {e}; the dashboard finds this run only under its runs folder", file=sys.stderr)

    def open(self, extra: dict[str, Any] | None = None) -> None:
        """Announce the run (run.json with status 'running'), so a dashboard can find it while it runs."""
        self._meta("running", extra)

    def _stamp(self, t: np.ndarray) -> np.ndarray:
        """Seconds since the start -> timestamps to the millisecond (NaN -> NaT), the same rounding as MQTT's."""
        return self._start + np.rint(np.asarray(t) * 1000).astype("timedelta64[ms]")

    def _file(self, name: str) -> TableStream:
        if name not in self._files:
            rows = READINGS_ROWS if name == "readings.parquet" else TRUTH_ROWS
            self._files[name] = TableStream(self.out / (part_name(name) if self.part else name), rows=rows,
                                            keep_empty=name in ALWAYS_WRITTEN, ipc=self.part)
        return self._files[name]

    def readings(self, line: Line, batch: Readings) -> None:
        if self._catalog is None:
            self._catalog = sensor_catalog(line)
        if self._names is None:  # each series' machine and sensor as codes into distinct names, first seen first: a
            # dictionary holding a name once per series came out of the Parquet writer in varying bytes
            self._names = tuple((codes.astype(np.int32), pa.array(names))
                                for codes, names in (pd.factorize(self._catalog[c].to_numpy())
                                                     for c in ("machine", "sensor")))
        (machine_of, machines), (sensor_of, sensors) = self._names
        series = pa.array(batch.series)
        table = pa.table({
            "replication": pa.array(np.full(len(batch), line.replication, dtype=np.int32)),
            "t": pa.array(batch.t),
            "timestamp": pa.array(self._stamp(batch.t)),
            "machine": pa.DictionaryArray.from_arrays(pa.array(machine_of[batch.series]), machines),
            "sensor": pa.DictionaryArray.from_arrays(pa.array(sensor_of[batch.series]), sensors),
            "value": pa.array(batch.value),
        })
        self._file("readings.parquet").write(table.append_column("series", series) if self.part else table)

    def health(self, line: Line, table: pa.Table) -> None:
        if table.num_rows:
            t = table.column("t").to_numpy()
            self._file("truth/health.parquet").write(
                table.append_column("replication", pa.array(np.full(len(t), line.replication, dtype=np.int64)))
                .append_column("timestamp", pa.array(self._stamp(t))))

    def replication(self, rep: Replication) -> None:
        """Append one finished replication's states, events, parts and KPIs."""
        line = rep.line
        for name, frame in (("states", states_frame(line)), ("events", events_frame(line)),
                            ("parts", parts_frame(line))):
            df = frame.assign(replication=line.replication)
            for col in ("t", "start", "end", "entry", "exit"):
                if col in df:
                    df["timestamp" if col == "t" else f"{col}_time"] = self._stamp(df[col].to_numpy())
            self._file(f"truth/{name}.parquet").write(arrow_table(df))
        self._file("kpis.parquet").write(arrow_table(rep.kpis))
        self._kpis.append(rep.kpis)

    def kpis(self) -> pd.DataFrame:
        """The KPIs of every replication written so far."""
        return pd.concat(self._kpis, ignore_index=True)

    def flush_files(self) -> None:
        """Hand every file's remaining rows to its writer thread and return: they are encoded and compressed while the
        run's other sinks finish (the store's last batch), and `close_files` only waits (a 100,000-minute serial-5
        run's last 0.09 s of Parquet and 0.08 s of store overlapped)."""
        for stream in self._files.values():
            stream.flush()

    def close_files(self) -> None:
        """Finish every Parquet file (each one, even after another failed; then the first error) and write the
        sensor catalogue."""
        errors = []
        for stream in self._files.values():
            try:
                stream.close()
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]
        if self._catalog is not None:
            partial = self.out / ".sensors.parquet.writing"
            self._catalog.to_parquet(partial, index=False)
            partial.replace(self.out / "sensors.parquet")

    def close(self, extra: dict[str, Any] | None = None) -> pd.DataFrame:
        """Finish every file; returns the KPI summary over replications."""
        self.close_files()
        summary = summarize(self.kpis())
        summary.to_parquet(self.out / "summary.parquet", index=False)
        summary.to_csv(self.out / "summary.csv", index=False)
        self._meta("finished", extra)
        return summary

    def abort(self, error: BaseException, extra: dict[str, Any] | None = None) -> None:
        """A run stopped early: close every file (each a valid Parquet file up to the stop) and say in run.json
        `interrupted` (Ctrl-C, SIGTERM) or `failed`, with the reason."""
        interrupted = isinstance(error, KeyboardInterrupt)
        reason = str(error) or ("Ctrl-C (SIGINT)" if interrupted else type(error).__name__)
        try:
            self.close_files()
        except Exception as e:  # e.g. the disk is full: say so too
            reason += f"; closing the result files failed: {e}"
        self._meta("interrupted" if interrupted else "failed",
                   {**(extra or {}), "reason": f"stopped by {reason}" if interrupted else reason})

    def merge(self, part: Path) -> None:
        """Append one replication's part folder (from `replication_part`), file by file in row groups, so memory
        stays bounded whatever the run's length."""
        if self._catalog is None and (part / "sensors.parquet").exists():
            self._catalog = pd.read_parquet(part / "sensors.parquet")
        for name in PART_FILES:
            if not (part / part_name(name)).exists():
                continue
            with PartFile(part / part_name(name)) as source:
                keep = [n for n in source.schema.names if n != "series"]
                stream = self._file(name)
                stream.write(source.schema.empty_table().select(keep))  # the file's schema, even with no rows
                for batch in source.iter_batches(batch_size=stream.rows, columns=keep):
                    stream.write(pa.Table.from_batches([batch]))
        with PartFile(part / part_name("kpis.parquet")) as kpis:
            self._kpis.append(kpis.read_all().to_pandas())


def state_changes(line: Line) -> pd.DataFrame:
    """Every machine's logged state changes (replication, machine, t, state, reason) in time order: what a store
    keeps. In time order, a batch of them spans a stretch of the run, so the store checks it against that stretch."""
    frames = [pd.DataFrame({"replication": np.int32(line.replication), "machine": m.name, "t": t, "state": states,
                            "reason": reasons}) for m, t, states, reasons in StateFollower().new(line)]
    return pd.concat(frames, ignore_index=True).sort_values("t", kind="stable", ignore_index=True) if frames \
        else pd.DataFrame(columns=["replication", "machine", "t", "state", "reason"])


def replication_of(spec: str, replication: int, slots: list[str] | None = None) -> Replication:
    """A replication, sensors off, of a scenario that travelled as JSON to a worker (with `slots`: the order its
    machines draw in, which JSON does not carry: a machine an alternative adds keeps the others' random numbers)."""
    sc = Scenario.model_validate_json(spec)
    sc._slots = slots
    return simulate(sc, replication, sensors=False)


def kpis_task(spec: str, replication: int) -> pd.DataFrame:
    """One replication's KPIs as a task for any worker (`twin fit`'s validation)."""
    return replication_of(spec, replication).kpis


def replication_part(spec: str, replication: int, folder: str) -> tuple[int, int]:
    """Simulate one replication into its own part folder: a task for any worker, everything it needs travels with
    it. The folder appears whole (written aside, then renamed), so a task run twice (its worker died) leaves one
    copy; the two are identical anyway. Returns (replication, readings)."""
    sc = Scenario.model_validate_json(spec)
    final = Path(folder)
    tmp = final.with_name(f"{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    writer = RunWriter(tmp, sc, part=True)
    levels: list[tuple[str, int, int]] = []  # station, ms since the start, parts waiting: at each step, as in-process

    products: list[tuple[str, int, str]] = []  # machine, ms since the start, the product it is on: as in-process
    follower = ProductFollower()

    def readings(line: Line, batch: Readings) -> None:
        writer.readings(line, batch)
        now = round(line.env.now * 1000)
        levels.extend((name, now, level) for name, level in line.buffer_levels().items())
        products.extend((m.name, round(t * 1000), product) for m, t, product in follower.new(line))

    # a replication too big for the disk stops here, before it fills the disk
    disk = DiskWatch([tmp], what=f"replication {replication + 1}'s files alone (of {sc.replications})")

    def progress(_: int, t: float) -> None:
        disk.check(t / sc.duration)

    result = simulate(sc, replication, on_readings=readings, on_health=writer.health, progress=progress)
    writer.replication(result)
    writer.close_files()
    write_part(pa.Table.from_pandas(state_changes(result.line), preserve_index=False), tmp / "state-changes.arrow",
               TRUTH_ROWS)
    write_part(pa.table({"replication": pa.array([replication] * len(levels), pa.int32()),
                         "station": pa.array([s for s, _, _ in levels], pa.string()),
                         "ms": pa.array([t for _, t, _ in levels], pa.int64()),
                         "level": pa.array([v for _, _, v in levels], pa.int64())}), tmp / "levels.arrow", TRUTH_ROWS)
    if products:
        write_part(pa.table({"replication": pa.array([replication] * len(products), pa.int32()),
                             "machine": pa.array([m for m, _, _ in products], pa.string()),
                             "ms": pa.array([t for _, t, _ in products], pa.int64()),
                             "product": pa.array([p for _, _, p in products], pa.string())}),
                   tmp / "products.arrow", TRUTH_ROWS)
    try:
        tmp.rename(final)
    except OSError:  # a copy is there already
        shutil.rmtree(tmp, ignore_errors=True)
    return replication, result.readings


def run_scenario(scenario: Scenario, out: Path, progress: ProgressFn | None = None, *,
                 on_readings: Callable[[Line, Readings], None] | None = None,
                 on_replication: Callable[[Replication], None] | None = None,
                 extra: dict[str, Any] | None = None,
                 wall_start: float | None = None,
                 policy: Callable[[Machine], MaintenancePolicy] | None = None,
                 inject: Injection | None = None,
                 tasks: Tasks | None = None,
                 on_part: Callable[[Path], None] | None = None,
                 finish: Callable[[], None] | None = None,
                 chunk: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run every replication of a scenario into the folder `out`; return the KPI summary and all KPIs.

    `on_readings` also receives every chunk of readings (e.g. the MQTT publisher), `on_replication`
    each finished replication; `policy` overrides the machines' maintenance policies (e.g. predictive);
    `inject` replays synthetic readings into one machine (recorded in run.json). With `tasks` on worker
    processes or a cluster, replications run there side by side, each into a part folder that is merged in
    replication order and handed to `on_part` (e.g. the store: it then takes whole replications instead of
    `on_readings`' chunks) before it goes; see `_can_distribute` for when.
    `finish` completes the sinks once every replication is simulated (e.g. the store's last batch): its error
    fails the run like any other, so run.json never says `finished` for a run the store did not take.
    `chunk`: simulated seconds per step (default: sized by the work, see `default_chunk`).
    """
    writer = RunWriter(out, scenario)
    if inject is not None:
        extra = {**(extra or {}), "injections": [inject.record()]}
    writer.open(extra)
    wall = time.perf_counter()
    try:
        if _can_distribute(scenario, tasks, on_readings, on_part, on_replication, policy, inject):
            assert tasks is not None
            readings = _replications_on(tasks, scenario, out, writer, progress, on_part)
        else:
            readings = _replications_here(scenario, writer, progress, on_readings, on_replication, wall_start,
                                          policy, inject, chunk)
        writer.flush_files()  # encoded on their threads while the sinks finish
        if finish is not None:
            finish()
        kpis = writer.kpis()
        summary = writer.close({"wall_seconds": round(time.perf_counter() - wall, 3), "readings": readings,
                                **(extra or {})})
    except BaseException as e:  # closing the files counts too: a full disk shows there first
        writer.abort(e, extra)
        raise
    return summary, kpis


def _can_distribute(scenario: Scenario, tasks: Tasks | None, on_readings: Callable[..., None] | None,
                    on_part: Callable[[Path], None] | None, on_replication: Callable[..., None] | None,
                    policy: Callable[[Machine], MaintenancePolicy] | None, inject: Injection | None) -> bool:
    """Replications may leave this process when workers are there, the run is flat out, and nothing needs its
    chunks as they happen: no chunk sink without a part sink (the MQTT publisher), no per-replication callback,
    no policy or injection object living here."""
    return (tasks is not None and tasks.client is not None and scenario.realtime_factor == 0
            and (on_readings is None or on_part is not None) and on_replication is None and policy is None
            and inject is None)


def _replications_here(scenario: Scenario, writer: RunWriter, progress: ProgressFn | None,
                       on_readings: Callable[[Line, Readings], None] | None,
                       on_replication: Callable[[Replication], None] | None, wall_start: float | None,
                       policy: Callable[[Machine], MaintenancePolicy] | None, inject: Injection | None,
                       chunk: float | None) -> int:
    """Replications one after another in this process, readings streamed to the writer and `on_readings`."""

    def readings_to(line: Line, batch: Readings) -> None:
        if inject is not None:
            batch = inject.apply(line, batch)
        writer.readings(line, batch)
        if on_readings is not None:
            on_readings(line, batch)

    readings = 0
    for rep in range(scenario.replications):
        result = simulate(scenario, rep, on_readings=readings_to, on_health=writer.health, progress=progress,
                          wall_start=wall_start if rep == 0 else None, policy=policy, chunk=chunk)
        writer.replication(result)
        readings += result.readings
        if on_replication is not None:
            on_replication(result)
    return readings


def _check_part(part: Path, rep: int, out: Path) -> None:
    """A replication's part folder as this linetwin writes it, or a ClusterError that says why not."""
    from twin.app.cluster import ClusterError

    if not part.is_dir():
        raise ClusterError(f"replication {rep} ran on a worker that cannot write {out}: with --cluster, put the result "
                           "folder (--out) on a file system every worker shares")
    if not (part / part_name("kpis.parquet")).exists():  # every part has its KPIs
        raise ClusterError(f"replication {rep} ran on a worker whose linetwin writes its results differently (no "
                           f"{part_name('kpis.parquet')} in its part): install linetwin {twin.__version__}, the "
                           "version of this `twin`, on every worker")


def _replications_on(tasks: Tasks, scenario: Scenario, out: Path, writer: RunWriter, progress: ProgressFn | None,
                     on_part: Callable[[Path], None] | None) -> int:
    """Replications as tasks on workers, each into out/.parts/rep-N, merged in order as they arrive."""
    parts = out / PARTS
    parts.mkdir(exist_ok=True)
    spec = scenario.model_dump_json(by_alias=True)
    args = [(spec, r, str((parts / f"rep-{r}").resolve())) for r in range(scenario.replications)]

    def done(n: int, total: int) -> None:
        if progress is not None:
            progress(n - 1, scenario.duration)

    readings = 0
    try:
        # parts in flight: twice the workers, so that disk use stays bounded and yet a worker that finishes ahead of
        # the oldest replication (merged first, the window counts from it) finds the next one waiting. With one spare
        # a worker sat idle: 40 replications of serial-5 on 2 workers took 10.1 s, now 9.1 s
        for rep, n in tasks.map(replication_part, args, done, window=2 * tasks.workers):
            part = parts / f"rep-{rep}"
            _check_part(part, rep, out)
            writer.merge(part)
            if on_part is not None:
                on_part(part)
            shutil.rmtree(part)
            readings += n
            if rep == 0 and scenario.replications > 1:
                t_quantile()  # the summary's scipy loads now, while the workers simulate, not after the last one
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    return readings
