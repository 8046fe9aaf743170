"""The InfluxDB 2.x backend, through influxdb-client (also works for writes to VictoriaMetrics).

Layout (what a Grafana user expects): measurement = sensor name (e.g. `vibration_rms`), tags
`run`, `replication`, `machine` (and `station` once the sensor catalogue is known), one field
`value`, timestamp in milliseconds. Points with the same measurement, tags and time overwrite each
other, so a redelivered reading is stored once. The token comes from LINETWIN_INFLUXDB_TOKEN.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pyarrow as pa
from influxdb_client import InfluxDBClient
from influxdb_client.client.warnings import MissingPivotFunction
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException
from urllib3 import Retry
from urllib3.exceptions import HTTPError

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

ENV_TOKEN = "LINETWIN_INFLUXDB_TOKEN"
_FLUX_AGG = {"mean": "mean", "min": "min", "max": "max", "last": "last", "count": "count"}


# nanoseconds on the wire: the client turns times into milliseconds as int(ns / 1e6), a float division that lands
# 1 ms early for some times (seen on live runs); nanoseconds go out as the exact integers
PRECISION = WritePrecision.NS


def _flux_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InfluxStore:
    """Readings in an InfluxDB 2.x bucket: synchronous batched writes with retries, Flux queries."""

    def __init__(self, url: str, patient: bool = True) -> None:
        self.url = url
        u = urlsplit(url)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        self.org, self.bucket = q.get("org", ""), q.get("bucket", "")
        if not self.bucket or not u.hostname:
            raise StoreError(f"store URL {url!r}: write influxdb://host:8086?org=ORG&bucket=BUCKET "
                             f"(and the token in {ENV_TOKEN})")
        scheme = "https" if u.scheme == "influxdbs" or q.get("tls") in ("1", "true") else "http"
        self.http = f"{scheme}://{u.hostname}:{u.port or 8086}"
        # patient: a server that is away or unwell gets ~15 s of retries per write; impatient (an ingest, which
        # spools instead): one quick retry, so its broker is not kept waiting for acknowledgements meanwhile
        retries = Retry(total=5 if patient else 1, backoff_factor=0.5 if patient else 0.2,
                        status_forcelist=[429, 500, 502, 503, 504], allowed_methods=None)
        self._client = InfluxDBClient(url=self.http, token=os.environ.get(ENV_TOKEN, ""), org=self.org,
                                      retries=retries, timeout=30_000)
        self._write = self._client.write_api(write_options=SYNCHRONOUS)
        self._stations: dict[tuple[str, str], str] = {}
        if patient and not self._reachable():  # named now, not at the first write (after a whole simulation)
            self._client.close()
            raise StoreError(f"cannot reach InfluxDB at {self.http} (store URL {url}); is it running, and is the "
                             "address right?")

    def _reachable(self) -> bool:
        """One quick /ping (the writes' retries would take 15 s to say no)."""
        with InfluxDBClient(url=self.http, token=os.environ.get(ENV_TOKEN, ""), org=self.org, retries=False,
                            timeout=5_000) as probe:
            return bool(probe.ping())

    def write(self, readings: pd.DataFrame) -> int:
        if not len(readings):
            return 0
        df = readings[READING_COLUMNS].copy()
        df["replication"] = df["replication"].astype(str)
        df["station"] = [self._stations.get((r, m)) for r, m in zip(df["run"], df["machine"])]  # None: no tag
        df = df.set_index(pd.DatetimeIndex(df.pop("ts")))
        try:
            for sensor, part in df.groupby("sensor", sort=False):
                tags = ["run", "replication", "machine", "station"]
                self._write.write(bucket=self.bucket, org=self.org, record=part[[*tags, "value"]],
                                  data_frame_measurement_name=str(sensor), data_frame_tag_columns=tags,
                                  write_precision=PRECISION)
        except Exception as e:
            raise StoreError(f"InfluxDB write to {self.http} failed: {e}") from e
        return len(readings)

    def append(self, batch: ReadingBatch) -> int:
        """Readings in columns: points with equal measurement, tags and time overwrite each other, so a
        redelivered message needs no identity check here."""
        return self.write(batch.frame())

    def together(self) -> contextlib.AbstractContextManager[None]:
        """Each write goes to the server as it comes: a line-protocol server has no transactions (a point written
        again overwrites itself, so a batch written again after a failure is stored once)."""
        return contextlib.nullcontext()

    def write_states(self, states: pd.DataFrame | pa.Table) -> None:
        self._write_keyed(states, STATE_COLUMNS, "machine_state")

    def write_levels(self, levels: pd.DataFrame | pa.Table) -> None:
        self._write_keyed(levels, LEVEL_COLUMNS, "buffer_level", float)  # a field's type stays one: a count as float

    def write_products(self, products: pd.DataFrame | pa.Table) -> None:
        self._write_keyed(products, PRODUCT_COLUMNS, "machine_product")

    def _write_keyed(self, rows: pd.DataFrame | pa.Table, columns: list[str], measurement: str,
                     cast: type | None = None) -> None:
        """State records, levels or products (`columns`: run, replication, the machine or station, ts, then the
        fields) as points of `measurement`, tagged by the first three columns; the first field as `cast` if given."""
        if not len(rows):
            return
        df = rows_table(rows, columns).to_pandas()
        df["replication"] = df["replication"].astype(str)
        if cast is not None:
            df[columns[4]] = df[columns[4]].astype(cast)
        df = df.set_index(pd.DatetimeIndex(df.pop("ts")))
        self._write.write(bucket=self.bucket, org=self.org, record=df[columns[:3] + columns[4:]],
                          data_frame_measurement_name=measurement, data_frame_tag_columns=columns[:3],
                          write_precision=PRECISION)

    def write_series(self, series: pd.DataFrame) -> None:
        for row in series[SERIES_COLUMNS].itertuples(index=False):
            self._stations[(row.run, row.machine)] = row.station

    def _range(self, start: Any, end: Any) -> str:
        """The bucket's points in [start, end) (naive times, sent as UTC as they were written)."""
        start_s = pd.Timestamp(start).isoformat() + "Z" if start is not None else "0"
        stop = f", stop: {pd.Timestamp(end).isoformat()}Z" if end is not None else ""
        return f"from(bucket: {_flux_str(self.bucket)}) |> range(start: {start_s}{stop})"

    def _flux(self, start: Any, end: Any, machines: Sequence[str] | None, sensors: Sequence[str] | None,
              run: str | None, replications: Sequence[int] | None = None) -> str:
        flux = self._range(start, end) + \
            ' |> filter(fn: (r) => r._field == "value" and r._measurement != "machine_state")'
        reps = None if replications is None else [str(int(r)) for r in replications]  # a tag: its text
        for column, values in (("_measurement", sensors), ("machine", machines), ("replication", reps)):
            if values is not None:
                members = ", ".join(map(_flux_str, values))
                flux += f" |> filter(fn: (r) => contains(value: r.{column}, set: [{members}]))"
        if run is not None:
            flux += f" |> filter(fn: (r) => r.run == {_flux_str(run)})"
        return flux

    def _tables(self, flux: str) -> pd.DataFrame:
        try:
            with warnings.catch_warnings():  # the queries shape their own tables: the client's pivot advice is noise
                warnings.simplefilter("ignore", MissingPivotFunction)
                tables = self._client.query_api().query_data_frame(flux, org=self.org)
        except Exception as e:
            raise StoreError(f"InfluxDB query on {self.http} failed: {e}") from e
        return pd.concat(tables, ignore_index=True) if isinstance(tables, list) else tables

    def _frame(self, flux: str) -> pd.DataFrame:
        df = self._tables(flux)
        if df is None or df.empty:
            return pd.DataFrame(columns=READING_COLUMNS)
        out = pd.DataFrame({"run": df["run"], "replication": df["replication"].astype(int), "machine": df["machine"],
                            "sensor": df["_measurement"], "ts": pd.to_datetime(df["_time"]).dt.tz_localize(None),
                            "value": df["_value"].astype(float)})
        return out.sort_values(["run", "replication", "machine", "sensor", "ts"]).reset_index(drop=True)

    def query(self, start: Any = None, end: Any = None, *, machines: Sequence[str] | None = None,
              sensors: Sequence[str] | None = None, run: str | None = None, every: str | None = None,
              agg: str = "mean", replications: Sequence[int] | None = None, also: Sequence[str] = ()) -> pd.DataFrame:
        flux = self._flux(start, end, machines, sensors, run, replications)
        if every is not None:
            seconds = int(pd.Timedelta(every).total_seconds())
            flux += f" |> aggregateWindow(every: {seconds}s, fn: {_FLUX_AGG[check_agg(agg)]}, createEmpty: false, " \
                    "timeSrc: \"_start\")"
        out = self._frame(flux)
        keys = ["run", "replication", "machine", "sensor", "ts"]
        for a in check_also(every, also):  # Flux aggregates a window once per function: a query each
            more = self.query(start, end, machines=machines, sensors=sensors, run=run, every=every, agg=a,
                              replications=replications).rename(columns={"value": a})
            out = out.merge(more, on=keys, how="left")
        return out

    def latest(self, *, machines: Sequence[str] | None = None, sensors: Sequence[str] | None = None,
               run: str | None = None, end: Any = None) -> pd.DataFrame:
        return self._frame(self._flux(None, end, machines, sensors, run) + " |> last()")

    def series(self, run: str | None = None) -> pd.DataFrame:
        last = self.latest(run=run)
        out = last[["run", "machine", "sensor"]].drop_duplicates()
        out["station"] = [self._stations.get((r, m), "") for r, m in zip(out["run"], out["machine"])]
        out["unit"] = ""
        return out[SERIES_COLUMNS].reset_index(drop=True)

    def states(self, run: str | None = None, *, replication: int | None = None, start: Any = None, end: Any = None,
               last: bool = False) -> pd.DataFrame:
        # state and reason are two fields of one point: a row once pivoted
        df = self._tables(self._history("machine_state", run, replication, start, end, last)
                          + ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")')
        if df is None or df.empty:
            return pd.DataFrame(columns=STATE_COLUMNS)
        reason = df["reason"].fillna("").astype(str) if "reason" in df else ""
        out = pd.DataFrame({"run": df["run"], "replication": df["replication"].astype(int), "machine": df["machine"],
                            "ts": pd.to_datetime(df["_time"]).dt.tz_localize(None), "state": df["state"].astype(str),
                            "reason": reason})
        return out.sort_values(["run", "replication", "machine", "ts"]).reset_index(drop=True)

    def levels(self, run: str | None = None, *, replication: int | None = None, start: Any = None, end: Any = None,
               last: bool = False) -> pd.DataFrame:
        return self._keyed("buffer_level", LEVEL_COLUMNS, int, run, replication, start, end, last)

    def products(self, run: str | None = None, *, replication: int | None = None, start: Any = None, end: Any = None,
                 last: bool = False) -> pd.DataFrame:
        return self._keyed("machine_product", PRODUCT_COLUMNS, str, run, replication, start, end, last)

    def _keyed(self, measurement: str, columns: list[str], kind: type, run: str | None, replication: int | None,
               start: Any, end: Any, last: bool) -> pd.DataFrame:
        """A levels or products measurement's points as the store's rows (`columns`: run, replication, the tag each
        series is of, ts, its value as `kind`)."""
        df = self._tables(self._history(measurement, run, replication, start, end, last))
        if df is None or df.empty:
            return pd.DataFrame(columns=columns)
        out = pd.DataFrame({"run": df["run"], "replication": df["replication"].astype(int), columns[2]: df[columns[2]],
                            "ts": pd.to_datetime(df["_time"]).dt.tz_localize(None),
                            columns[4]: df["_value"].astype(kind)})
        return out.sort_values(["run", "replication", columns[2], "ts"]).reset_index(drop=True)

    def _history(self, measurement: str, run: str | None, replication: int | None, start: Any, end: Any,
                 last: bool) -> str:
        """The Flux query of a states or levels measurement's points in a run, replication and time range; `last`:
        each series' last one there (a series is one machine's or station's, tagged with run and replication)."""
        flux = self._range(start, end) + f' |> filter(fn: (r) => r._measurement == "{measurement}")'
        if run is not None:
            flux += f" |> filter(fn: (r) => r.run == {_flux_str(run)})"
        if replication is not None:
            flux += f' |> filter(fn: (r) => r.replication == "{int(replication)}")'
        return flux + (" |> last()" if last else "")

    def count(self, run: str | None = None) -> int:
        flux = self._flux(None, None, None, None, run) + ' |> group() |> count()'
        df = self._tables(flux)
        return int(df["_value"].sum()) if len(df) else 0

    def refused(self, error: Exception) -> bool:
        """A 400, 413 or 422 answer, or data that could not be made into points; not a server that is away, shutting
        down (5xx), throttling (429) or refusing the token (401, 403)."""
        cause = error.__cause__ if isinstance(error, StoreError) and error.__cause__ is not None else error
        if isinstance(cause, ApiException):
            return cause.status in (400, 413, 422)
        return not isinstance(cause, (OSError, MemoryError, HTTPError))

    def ping(self) -> bool:
        """The server's /ping (InfluxDB and VictoriaMetrics answer it; a Flux query would fail on the latter)."""
        return bool(self._client.ping())

    def close(self) -> None:
        self._client.close()
