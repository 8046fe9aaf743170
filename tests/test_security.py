"""A mosquitto with TLS, passwords and an ACL, all made by the test: right credentials work, wrong are refused."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import ipaddress
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sensors.bus.broker import BrokerError, BrokerURL, EmbeddedBroker, connect, free_port, make_client, negotiate
from sensors.ingest import Ingest
from sensors.store import open_store
from tests.conftest import Mosquitto, _need
from tests.test_pipeline import assert_exactly_once, body_shop
from twin.app.stream import stream_scenario

pytestmark = pytest.mark.slow  # end to end: streamed runs through a mosquitto with TLS, passwords and an ACL

LINE = "plant-zwickau/body-shop/biw-line-1"


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None = None,
          issuer_key: ec.EllipticCurvePrivateKey | None = None, ca: bool = False) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                                     x509.DNSName("localhost")]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def _write_pem(path: Path, obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> str:
    if isinstance(obj, x509.Certificate):
        path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(path)


@pytest.fixture
def secure_mosquitto(tmp_path: Path) -> Mosquitto:  # type: ignore[misc]
    work = tmp_path / "secure"
    work.mkdir()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("linetwin test CA", ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("127.0.0.1", server_key, issuer=ca.subject, issuer_key=ca_key)
    ca_pem = _write_pem(work / "ca.pem", ca)
    _write_pem(work / "server.pem", server)
    _write_pem(work / "server.key", server_key)
    passwd = work / "passwd"
    passwd.touch()
    for user, password in (("twin", "twin-secret"), ("ingest", "ingest-secret"), ("admin", "admin-secret"),
                           ("viewer", "viewer-secret")):
        subprocess.run([_need("mosquitto_passwd"), "-b", str(passwd), user, password], check=True,
                       capture_output=True)
    (work / "acl").write_text(f"user twin\ntopic write {LINE}/#\n\n"
                              f"user ingest\ntopic read {LINE}/#\ntopic write {LINE}/deadletter\n\n"
                              "user admin\ntopic read #\n\n"
                              f"user viewer\ntopic read {LINE}/#\n")
    tls_port = free_port()
    broker = Mosquitto(work, tls_port=tls_port, extra="\n".join([
        "allow_anonymous false", f"password_file {passwd}", f"acl_file {work / 'acl'}",
        f"listener {tls_port} 127.0.0.1", f"cafile {ca_pem}", f"certfile {work / 'server.pem'}",
        f"keyfile {work / 'server.key'}"]))
    broker.start()
    broker.ca = ca_pem  # type: ignore[attr-defined]
    yield broker
    broker.stop()


def url(broker: Mosquitto, user: str, password: str) -> BrokerURL:
    return BrokerURL.parse(f"mqtts://{user}:{password}@127.0.0.1:{broker.tls_port}", ca=broker.ca)  # type: ignore[attr-defined]


def test_twin_and_ingest_over_tls_with_their_own_credentials(secure_mosquitto: Mosquitto, tmp_path: Path) -> None:
    store_url = f"duckdb:///{tmp_path / 'secure.duckdb'}"
    store = open_store(store_url)
    ingest = Ingest(url(secure_mosquitto, "ingest", "ingest-secret"), store, prefix=LINE,
                    client_id="secure-ingest").start()
    *_, stats = stream_scenario(body_shop(duration=900.0), tmp_path, ingest="none",
                                broker=url(secure_mosquitto, "twin", "twin-secret"), drain_timeout=60)
    assert ingest.wait_for(stats.run_id, stats.readings, 60)
    ingest.stop()
    store.close()
    assert_exactly_once(tmp_path, stats, store_url)


def test_wrong_password_is_refused_clearly_without_retrying(secure_mosquitto: Mosquitto, tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match=r"refused the connection .*check the user name and password"):
        bad = url(secure_mosquitto, "twin", "Wr0ngPa55")
        connect(make_client(bad, "x"), bad)
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "twin.app.cli", "run", "scenarios/body_shop.yaml", "--duration", "10 min",
                        "--warmup", "0", "--broker", f"mqtts://twin:Wr0ngPa55@127.0.0.1:{secure_mosquitto.tls_port}",
                        "--ca", secure_mosquitto.ca, "--out", str(tmp_path / "o")],  # type: ignore[attr-defined]
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3
    assert "refused the connection" in r.stderr and "Traceback" not in r.stderr
    assert "Wr0ngPa55" not in r.stderr + r.stdout  # the password is never printed
    assert time.monotonic() - start < 20  # one refused attempt, not a retry storm


def test_tls_without_the_ca_is_refused(secure_mosquitto: Mosquitto) -> None:
    bare = BrokerURL.parse(f"mqtts://twin:twin-secret@127.0.0.1:{secure_mosquitto.tls_port}")
    with pytest.raises(BrokerError, match=r"cannot reach the MQTT broker.*(CERTIFICATE_VERIFY_FAILED|certificate)"):
        connect(make_client(bare, "no-ca"), bare)


def test_the_twin_cannot_publish_outside_its_topics(secure_mosquitto: Mosquitto) -> None:
    """A publish outside the twin's topics never reaches a subscriber; the broker may also drop the offender's
    connection (mosquitto does so on some versions), so the allowed publish uses a fresh connection."""
    seen: list[str] = []
    admin_url = url(secure_mosquitto, "admin", "admin-secret")
    admin = make_client(admin_url, "admin-watch")
    admin.on_message = lambda c, u, m: seen.append(m.topic)
    connect(admin, admin_url)
    admin.subscribe("#", 1)
    twin_url = url(secure_mosquitto, "twin", "twin-secret")
    time.sleep(0.3)
    clients = [admin]
    for n, (topic, payload) in enumerate((("other-plant/x/y/telemetry", json.dumps({"x": 1}).encode()),
                                          (f"{LINE}/st/m/telemetry", b"inside"))):
        twin = make_client(twin_url, f"twin-probe-{n}")
        connect(twin, twin_url)
        clients.append(twin)
        info = twin.publish(topic, payload, qos=1)
        with contextlib.suppress(RuntimeError):  # refused: the broker may close the connection instead of a PUBACK
            info.wait_for_publish(5)
    deadline = time.monotonic() + 5
    while f"{LINE}/st/m/telemetry" not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    for c in clients:
        c.disconnect()
        c.loop_stop()
    assert f"{LINE}/st/m/telemetry" in seen
    assert "other-plant/x/y/telemetry" not in seen


def test_a_publish_the_acl_denies_ends_the_run_with_a_clear_error(secure_mosquitto: Mosquitto, tmp_path: Path) -> None:
    """A user who may read the line but not write it: the broker refuses the twin's first publish, and `twin run`
    ends within seconds naming the user, the topic and the fix, instead of waiting for readings that never come."""
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "twin.app.cli", "run", "scenarios/body_shop.yaml", "--duration", "10 min",
                        "--warmup", "0", "--broker", f"mqtts://viewer:viewer-secret@127.0.0.1:{secure_mosquitto.tls_port}",
                        "--ca", secure_mosquitto.ca, "--out", str(tmp_path / "o")],  # type: ignore[attr-defined]
                       capture_output=True, text=True, timeout=120)
    took = time.monotonic() - start
    assert r.returncode == 3, r.stderr[-3000:]
    assert "refused to let viewer publish to" in r.stderr and "ACL" in r.stderr and "Traceback" not in r.stderr
    assert "viewer-secret" not in r.stderr + r.stdout
    assert took < 20, took  # start-up included; the refusal itself is seen within a second
    assert json.loads((tmp_path / "o" / "run.json").read_text())["status"] == "failed"


def test_the_predictive_policy_orders_maintenance_only_for_its_own_forecasters_alerts(mosquitto: Mosquitto) -> None:
    """Any local client can publish on the line's alert topics; the policy acts only on alerts signed with its run's
    key (the run's forecaster has it, no one else): unsigned, wrongly signed and altered alerts are ignored."""
    from predictors.policy import AlertOrders
    from sensors.bus.payloads import alert_payload

    line = "plant/hall/line"
    alert = {"run": "r", "replication": 0, "line": line, "station": "filler", "machine": "filler-a", "state": "raised",
             "severity": "warning", "fault_mode": "valve_clogging", "probability": 0.7, "horizon_s": 7200.0,
             "rul": {"estimate_s": 3600.0, "low_s": 1800.0, "high_s": 5400.0}, "model": {"kind": "lstm"},
             "evidence": {"from": 1, "to": 2, "rows": 30, "sensors": ["p"]}, "since": 1, "ts": 2}
    orders = AlertOrders(line).start(mosquitto.url)
    other = make_client(mosquitto.url, "someone-else")
    connect(other, mosquitto.url)
    try:
        altered = json.loads(alert_payload({**alert, "machine": "capper"}, orders.key))
        altered["machine"] = "labeler"  # signed for the capper, sent for the labeler
        for payload in (alert_payload({**alert, "machine": "a"}),  # forged: no signature
                        alert_payload({**alert, "machine": "b"}, b"x" * 32),  # signed with another key
                        json.dumps(altered).encode(),
                        alert_payload(alert, orders.key)):  # the run's own forecaster
            other.publish(f"{line}/filler/{json.loads(payload)['machine']}/alerts", payload, qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while orders.received < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert orders.received == 4 and orders.ignored == 3 and orders.orders.placed == 1
        assert orders.orders.peek("filler-a") is not None
        assert all(orders.orders.peek(m) is None for m in ("a", "b", "capper", "labeler"))
    finally:
        other.disconnect()
        other.loop_stop()
        orders.stop()


def test_readings_of_a_run_before_its_start_are_refused_and_a_restarted_ingest_remembers_started_runs(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Readings for a run no one announced (a forger racing the twin, a stray publisher) are dead-lettered with the
    reason, never stored in place of the real ones; once the run's `started` status is seen they are taken, also by
    a worker restarted after the status was acknowledged (it notes started runs beside its spool)."""
    from sensors.bus.payloads import LineTopics, status_payload, telemetry_payload
    from tests.test_pipeline import _dead_letters

    topics = LineTopics("s", "a", "early")
    store = open_store(f"duckdb:///{tmp_path / 'early.duckdb'}")
    spool = tmp_path / "spool.sqlite"
    ingest = Ingest(mosquitto.url, store, prefix=topics.prefix, spool=spool, client_id="early-ingest").start()
    dead, watcher = _dead_letters(mosquitto.url, topics.deadletter)
    pub = make_client(mosquitto.url, "early-bird")
    connect(pub, mosquitto.url)

    def send(first: int) -> None:
        payload = telemetry_payload("real", 0, "st", "m1", {"x": "u"}, [["x", 1000 * (first + k), 9.9] for k in
                                                                          range(10)])
        pub.publish(topics.telemetry("st", "m1"), payload, qos=1).wait_for_publish(5)

    def settle(stored: int, refused: int) -> None:
        deadline = time.monotonic() + 20
        while (store.count("real") < stored or len(dead) < refused) and time.monotonic() < deadline:
            time.sleep(0.05)

    try:
        send(0)  # before the run's start: refused
        settle(0, 1)
        assert store.count("real") == 0 and len(dead) == 1
        assert "has not announced its start on s/a/early/run" in dead[0]["reason"]
        pub.publish(topics.run, status_payload("real", "started"), qos=1).wait_for_publish(5)
        send(10)
        settle(10, 1)
        assert store.count("real") == 10
        ingest.stop()
        ingest = Ingest(mosquitto.url, store, prefix=topics.prefix, spool=spool, client_id="early-ingest").start()
        send(20)
        settle(20, 1)
        assert store.count("real") == 20 and len(dead) == 1
    finally:
        ingest.stop()
        for c in (pub, watcher):
            c.disconnect()  # type: ignore[attr-defined]
            c.loop_stop()  # type: ignore[attr-defined]
        store.close()


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_the_embedded_broker_admits_no_anonymous_client_and_only_the_run_publishes(kind: str, tmp_path: Path) -> None:
    """`twin run`'s own broker: anonymous and wrong-password clients are refused; the viewer account (its password
    in a file only its owner reads) sees everything and publishes nothing; the run's account publishes."""
    with EmbeddedBroker(kind=kind, data_dir=tmp_path / "broker") as broker:
        protocol = negotiate(broker.url)
        for user, password in ((None, None), ("twin", "guess"), ("viewer", None)):
            bad = dataclasses.replace(broker.url, username=user, password=password)
            with pytest.raises(BrokerError, match="refused the connection"):
                connect(make_client(bad, f"intruder-{user}", protocol=protocol), bad)
        secret = tmp_path / "broker" / "viewer-password"
        assert secret.read_text().strip() == broker.viewer_url.password and secret.stat().st_mode & 0o077 == 0
        seen: list[tuple[str, bytes]] = []
        watch = make_client(broker.viewer_url, "watch", protocol=protocol)
        watch.on_message = lambda c, u, m: seen.append((m.topic, m.payload))
        connect(watch, broker.viewer_url)
        watch.subscribe("#", 1)
        time.sleep(0.5)
        clients = [watch]
        for n, url in enumerate((broker.viewer_url, broker.url)):
            c = make_client(url, f"publisher-{n}", protocol=protocol)
            connect(c, url)
            clients.append(c)
            info = c.publish(f"{LINE}/st/m/alerts", f"from {url.username}".encode(), qos=1)
            with contextlib.suppress(RuntimeError, ValueError):  # refused: the broker may drop the connection
                info.wait_for_publish(5)
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        for c in clients:
            c.disconnect()
            c.loop_stop()
    assert seen == [(f"{LINE}/st/m/alerts", b"from twin")]
