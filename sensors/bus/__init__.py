"""The bus: MQTT topics and payloads, brokers, the twin's publisher and the store's ingest."""
