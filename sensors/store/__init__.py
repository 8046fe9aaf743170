"""The time-series store: one small interface (`base.Store`), backends chosen by URL (duckdb://, influxdb://)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from sensors.store.base import LEVEL_COLUMNS, PRODUCT_COLUMNS, READING_COLUMNS, STATE_COLUMNS, Store, StoreError

__all__ = ["LEVEL_COLUMNS", "PRODUCT_COLUMNS", "READING_COLUMNS", "STATE_COLUMNS", "Store", "StoreError",
           "check_store_url", "open_store", "store_file"]


def open_store(url: str, read_only: bool = False, patient: bool = True) -> Store:
    """A store from its URL: duckdb:///path/twin.duckdb (embedded) or influxdb://host:8086?org=..&bucket=..

    `read_only` lets several readers (training, evaluation, dashboards) share an embedded store file. `patient`:
    a server store retries a write for a while before it fails (an ingest, which spools instead, is not).
    """
    scheme = urlsplit(check_store_url(url)).scheme
    if scheme == "duckdb":
        from sensors.store.duck import DuckStore
        return DuckStore(url, read_only=read_only)
    if scheme in ("influxdb", "influxdbs"):
        from sensors.store.influx import InfluxStore
        return InfluxStore(url, patient=patient)
    raise AssertionError(scheme)  # check_store_url let only these schemes through


def check_store_url(url: str) -> str:
    """The URL, if it names a kind of store linetwin can open (by its scheme); StoreError otherwise. Opens nothing:
    for a process that hands the URL on (the dashboard) or opens the store later."""
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:  # bytes on the command line that are not UTF-8: DuckDB ended in std::bad_cast
        raise StoreError(f"store URL {url!r}: a name in it is not UTF-8 text (the \\udc.. above); rename that "
                         "folder or file, or choose another path") from None
    scheme = urlsplit(url).scheme
    if scheme not in ("duckdb", "influxdb", "influxdbs"):
        raise StoreError(f"store URL {url!r}: unknown scheme {scheme!r}; use duckdb:///path/twin.duckdb or "
                         "influxdb://host:8086?org=ORG&bucket=BUCKET (token in LINETWIN_INFLUXDB_TOKEN)")
    return url


def store_file(url: str) -> Path | None:
    """The file an embedded store's URL names (duckdb:///path/twin.duckdb), None for a server's: what a command
    writes on this machine's disks."""
    parts = urlsplit(url)
    path = unquote(parts.path)
    return Path(path) if parts.scheme == "duckdb" and path not in ("", "/") else None
