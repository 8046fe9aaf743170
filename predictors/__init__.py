"""Fault forecasters, anomaly models and generators: datasets, shared preprocessing, one lifecycle for every
trained model (`lifecycle`: registry, metadata, files), the regression and LSTM forecasters, the VAE and GAN."""

# importing the model modules registers them
from predictors import lstm, regression, synth  # noqa: F401
from predictors.base import Estimator, Forecast, forecasters, load
from predictors.data import DataError, RunToFailure, TableFormat, from_table, from_twin_runs
from predictors.lifecycle import REGISTRY

__all__ = ["REGISTRY", "DataError", "Estimator", "Forecast", "RunToFailure", "TableFormat", "forecasters",
           "from_table", "from_twin_runs", "load"]
