"""The time-series store: one small interface, backends chosen by URL (duckdb://, influxdb://)."""

from twin.store.base import READING_COLUMNS, STATE_COLUMNS, Store, StoreError, open_store

__all__ = ["READING_COLUMNS", "STATE_COLUMNS", "Store", "StoreError", "open_store"]
