"""The sensor data path, below the predictors and above the simulation core: synthetic sensors that follow each
machine's state, load and wear (`bank`), replays (`inject`), the MQTT bus (`bus/`), the ingest (`ingest`) and the
time-series stores (`store/`)."""
