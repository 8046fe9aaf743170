"""Fault forecasters, anomaly models and generators: datasets, shared preprocessing, one lifecycle for every
trained model (`lifecycle`: registry, metadata, files), the regression and LSTM forecasters, the VAE and GAN.

The names below load on first use (PEP 562): `import predictors.alarms` (the dashboard's alarm desk) does not pull
in torch and scikit-learn; asking for a model does, and registers every kind.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"Estimator": "predictors.base", "Forecast": "predictors.base", "forecasters": "predictors.base",
          "load": "predictors.base", "DataError": "predictors.data", "RunToFailure": "predictors.data",
          "TableFormat": "predictors.data", "from_table": "predictors.data", "from_twin_runs": "predictors.data",
          "REGISTRY": "predictors.lifecycle"}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'predictors' has no attribute {name!r}")
    from predictors.lifecycle import _load_models

    _load_models()
    return getattr(importlib.import_module(_WHERE[name]), name)
