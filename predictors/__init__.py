"""Fault forecasters: datasets, shared preprocessing, one estimator interface, regression and LSTM models."""

# importing the model modules registers them
from predictors import lstm, regression  # noqa: F401
from predictors.base import REGISTRY, Estimator, Forecast, load
from predictors.data import DataError, RunToFailure, TableFormat, from_table, from_twin_runs

__all__ = ["REGISTRY", "DataError", "Estimator", "Forecast", "RunToFailure", "TableFormat", "from_table",
           "from_twin_runs", "load"]
