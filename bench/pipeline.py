"""Streaming pipeline benchmark (not a test): the limit and linetwin measured in the same run.

1. The limit: a bare paho publisher -> mosquitto -> a bare paho subscriber moving the same payloads
   as the twin (JSON, 200 readings a message, QoS 1).
2. `twin run` flat out through mosquitto into DuckDB (the 10-station body shop, 8 h, 1.44 million
   readings): sustained readings per second end to end with zero loss, and the ratio to the limit.
3. At real-time factor 1: p50/p99 delay from a reading's timestamp to its row being queryable.
Targets (issue 19): >= 75 % of the limit at the same payload size and QoS, >= 2x the 68,000 readings/s measured
before it (136,000), zero loss, p99 delay under 1 s.

    .venv/bin/python bench/pipeline.py            (needs Debian's mosquitto)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import own_home  # noqa: E402

from sensors.bus.broker import (  # noqa: E402
    BrokerURL,
    EmbeddedBroker,
    connect,
    find_program,
    free_port,
    make_client,
    mosquitto_config,
    negotiate,
    wait_port,
)
from sensors.bus.payloads import line_clock_ms, telemetry_payload  # noqa: E402
from sensors.store import open_store  # noqa: E402
from twin.app.stream import stream_scenario  # noqa: E402
from twin.scenario import load_scenario  # noqa: E402


def start_mosquitto(work: Path) -> tuple[subprocess.Popen[bytes], BrokerURL]:
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(mosquitto_config(port, work / "data"))
    exe = find_program("mosquitto") or "mosquitto"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, BrokerURL("mqtt", "127.0.0.1", port)


def limit(url: BrokerURL, readings: int = 1_000_000, batch: int = 200, protocol: int | None = None) -> float:
    """Readings per second a bare paho publisher and subscriber move through the broker at QoS 1 (MQTT `protocol`,
    else the broker's own, asked)."""
    payloads = [telemetry_payload("bench", 0, "st", f"m{i % 10}", {"x": "u"},
                                  [["x", 1767592800000 + 1000 * k, 1.2345 + k] for k in range(batch)])
                for i in range(200)]
    n = readings // batch
    got = threading.Event()
    count = [0]

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        count[0] += 1
        if count[0] >= n:
            got.set()

    protocol = protocol or negotiate(url)
    sub = make_client(url, "bench-sub", protocol=protocol)
    sub.on_message = on_message
    connect(sub, url)
    sub.subscribe("bench/#", 1)
    pub = make_client(url, "bench-pub", protocol=protocol)
    pub.max_queued_messages_set(2000)
    connect(pub, url)
    time.sleep(0.5)
    t = time.perf_counter()
    i = 0
    while i < n:
        info = pub.publish(f"bench/st/m{i % 10}/telemetry", payloads[i % len(payloads)], qos=1)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            time.sleep(0.001)
            continue
        i += 1
    got.wait(300)
    dt = time.perf_counter() - t
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()
    return n * batch / dt


def flat_out(url: BrokerURL, work: Path) -> tuple[float, int, int]:
    sc = load_scenario(ROOT / "scenarios" / "body_shop.yaml").model_copy(
        update={"duration": 8 * 3600.0, "warmup": 0.0, "replications": 1})
    out = work / "flat"
    out.mkdir()
    t = time.perf_counter()
    _, _, stats = stream_scenario(sc, out, broker=url, drain_timeout=600)
    dt = time.perf_counter() - t
    return stats.readings / dt, stats.readings, stats.stored


def realtime_delay(url: BrokerURL, work: Path, seconds: float = 30.0) -> tuple[float, float, int]:
    """p50, p99 of (row queryable in the store) - (reading timestamp), in seconds, at real-time factor 1."""
    from sensors.store.duck import DuckStore

    delays: list[np.ndarray] = []
    original = DuckStore.append

    def timed_append(self: DuckStore, batch):  # type: ignore[no-untyped-def]
        n = original(self, batch)
        now = int(time.time() * 1000)
        # the readings' times are on the line's clock (Europe/Berlin): as real instants to compare with the wall clock
        real = np.asarray(batch.ts_ms) - (line_clock_ms(now, zone) - now)
        delays.append((now - real) / 1000)
        return n

    DuckStore.append = timed_append  # type: ignore[method-assign]
    sc = load_scenario(ROOT / "scenarios" / "body_shop.yaml").model_copy(
        update={"duration": seconds, "warmup": 0.0, "replications": 1, "realtime_factor": 1.0})
    zone = sc.line.timezone
    out = work / "live"
    out.mkdir()
    try:
        stream_scenario(sc, out, broker=url, drain_timeout=60, ingest="thread")  # in-process, to time its writes
    finally:
        DuckStore.append = original  # type: ignore[method-assign]
    d = np.concatenate(delays)
    return float(np.percentile(d, 50)), float(np.percentile(d, 99)), len(d)


def main() -> None:
    own_home()
    work = Path(tempfile.mkdtemp(prefix="linetwin-bench-"))
    proc, url = start_mosquitto(work)
    try:
        for batch in (1, 10, 50):
            rate = limit(url, readings=100_000 if batch == 1 else 1_000_000, batch=batch)
            print(f"  bare paho -> mosquitto -> paho, QoS 1, {batch:>3} readings/message: {rate:>10,.0f} readings/s")
        with EmbeddedBroker(kind="amqtt") as embedded:
            rate = limit(embedded.url, readings=500_000, protocol=embedded.protocol)
            print(f"  bare paho -> amqtt (embedded, own process) -> paho, QoS 1, 200 readings/message: "
                  f"{rate:>10,.0f} readings/s")
        lim = limit(url)
        print(f"limit: bare paho -> mosquitto -> paho, QoS 1, 200 readings/message: {lim:,.0f} readings/s")
        rate, generated, stored = flat_out(url, work)
        print(f"twin run flat out -> mosquitto -> ingest -> DuckDB: {rate:,.0f} readings/s end to end "
              f"({generated:,} generated, {stored:,} stored, lost {generated - stored:,}); "
              f"{rate / lim:.0%} of the limit")
        p50, p99, n = realtime_delay(url, work)
        print(f"real-time factor 1: delay from timestamp to queryable row p50 {p50 * 1000:.0f} ms, "
              f"p99 {p99 * 1000:.0f} ms over {n:,} readings")
        print()
        print(f"target >= 2x 68,000 readings/s (136,000): {'PASS' if rate >= 136_000 else 'FAIL'}")
        print(f"target >= 75 % of the limit: {'PASS' if rate >= 0.75 * lim else 'FAIL'}")
        print(f"target zero loss: {'PASS' if stored == generated else 'FAIL'}")
        print(f"target p99 delay < 1 s: {'PASS' if p99 < 1.0 else 'FAIL'}")
        store = open_store(f"duckdb:///{work / 'flat' / 'twin.duckdb'}")
        store.close()
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
