"""Synthetic sensors: readings that follow each machine's state, load and wear, with realistic flaws."""

from sensors.bank import Readings, SensorBank, sensor_catalog

__all__ = ["Readings", "SensorBank", "sensor_catalog"]
