"""linetwin's simulation core: scenario files, the SimPy line model, maintenance policies, KPIs and the ground
truth. It knows nothing of sensors, MQTT, stores or models; the application on top of everything is `twin.app`."""

import datetime as _dt

__version__ = "0.1.0"
MAX_SEED = 2**63 - 1  # the largest seed: every generator takes it (torch refuses more than 64 bits)
TIME_RANGE = (_dt.datetime(1970, 1, 1), _dt.datetime(2200, 1, 1))  # the times a line and its readings may carry
