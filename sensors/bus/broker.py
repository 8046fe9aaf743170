"""MQTT brokers: parsing broker URLs, connecting paho clients (MQTT 5, falling back to 3.1.1),
and the embedded default broker that `twin run` starts when no broker is given.

Embedded broker choice (measured, see docs/mqtt.md): a `mosquitto` child process when mosquitto is
installed (about 4x the throughput of an in-process Python broker, MQTT 5, shared subscriptions,
persistent sessions on disk); otherwise amqtt in a process of its own, so the quick start needs no server.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ENV_USER, ENV_PASSWORD = "LINETWIN_MQTT_USERNAME", "LINETWIN_MQTT_PASSWORD"
TWIN_USER, VIEWER_USER = "twin", "viewer"  # the embedded broker's accounts: the run's own, and read-only
SESSION_EXPIRY = 24 * 3600  # seconds a durable consumer's session outlives it
# a run's own ingest keeps its session through a broker restart (the messages queued for it survive) and ends it when
# it stops; one killed before that leaves a session that queues the line's messages for at most this long
RUN_SESSION_EXPIRY = 3600


class BrokerError(Exception):
    """The broker cannot be reached or refuses us; the message says what to fix.

    `kind` is "unreachable", "silent" (no answer to CONNECT) or "refused" (with the broker's `reason` code).
    """

    def __init__(self, message: str, kind: str = "", reason: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.reason = kind, reason


MQTT_VERSIONS = {mqtt.MQTTv5: "5", mqtt.MQTTv311: "3.1.1"}  # paho's protocol constants, as the CLI names them
UNSUPPORTED_PROTOCOL = (1, 132)  # CONNACK codes for "unacceptable protocol version" (3.1.1, 5)


@dataclass(frozen=True)
class BrokerURL:
    """mqtt://[user[:password]@]host[:port] or mqtts://... with TLS files; credentials never printed."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    @classmethod
    def parse(cls, url: str, ca: str | None = None, cert: str | None = None, key: str | None = None) -> BrokerURL:
        u = urlsplit(url)
        if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
            raise BrokerError(f"broker URL {cls._redact(url)!r}: write mqtt://host:1883 or mqtts://host:8883 "
                              "(credentials as mqtt://user:pass@host or in LINETWIN_MQTT_USERNAME/PASSWORD)")
        try:
            port = u.port or (8883 if u.scheme == "mqtts" else 1883)
        except ValueError:
            raise BrokerError(f"broker URL {cls._redact(url)!r}: the port is not a number from 1 to 65535") from None
        user = unquote(u.username) if u.username else os.environ.get(ENV_USER)
        password = unquote(u.password) if u.password else os.environ.get(ENV_PASSWORD)
        for label, path in (("--ca", ca), ("--cert", cert), ("--key", key)):
            if path and not Path(path).is_file():
                raise BrokerError(f"{label} {path}: no such file; give the PEM file's path")
        if (ca or cert or key) and u.scheme != "mqtts":
            raise BrokerError(f"--ca, --cert and --key set up TLS, which {cls._redact(url)!r} does not use; write "
                              "mqtts://host:8883, or leave the TLS files out")
        if key and not cert:
            raise BrokerError("--key is the private key of --cert: give the client certificate with --cert too")
        _check_tls_files(ca, cert, key)
        return cls(u.scheme, u.hostname, port, user, password, ca, cert, key)

    @staticmethod
    def _redact(url: str) -> str:
        u = urlsplit(url)
        return url.replace(f"{u.password}@", "***@") if u.password else url

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}"


def _check_tls_files(ca: str | None, cert: str | None, key: str | None) -> None:
    """Load the TLS files as the client will, so that a file that is not PEM (or a key that does not match its
    certificate) is named now, not as an ssl traceback at the first connection."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (ssl.SSLError, OSError, ValueError) as e:
            raise BrokerError(f"--ca {ca}: not a PEM CA certificate ({getattr(e, 'reason', None) or e}); give the "
                              "broker's CA certificate in PEM form") from None
    if cert:
        try:
            ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError, ValueError) as e:
            what = "--cert " + cert + (f" with --key {key}" if key else "")
            raise BrokerError(f"{what}: not a PEM client certificate with its private key "
                              f"({getattr(e, 'reason', None) or e}); give the certificate and its key in PEM form "
                              "(--key when the key is in a file of its own)") from None


def credentials_env(url: BrokerURL) -> dict[str, str]:
    """The URL's credentials as the environment a child process reads them from (never on its command line)."""
    env = {ENV_USER: url.username} if url.username else {}
    if url.password:
        env[ENV_PASSWORD] = url.password
    return env


def make_client(url: BrokerURL, client_id: str, *, protocol: int = mqtt.MQTTv5, manual_ack: bool = False,
                durable: bool = False) -> mqtt.Client:
    """A paho client set up for `url` (TLS, credentials, backoff); not yet connected."""
    kwargs: dict[str, Any] = {"client_id": client_id, "protocol": protocol, "manual_ack": manual_ack}
    if protocol != mqtt.MQTTv5:
        kwargs["clean_session"] = not durable
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
    if url.username:
        client.username_pw_set(url.username, url.password)
    if url.tls:
        client.tls_set(ca_certs=url.ca, certfile=url.cert, keyfile=url.key)
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    return client


def connect(client: mqtt.Client, url: BrokerURL, *, durable: bool = False, expiry: int = SESSION_EXPIRY,
            timeout: float = 10.0) -> None:
    """Connect and wait for the broker's answer; raise BrokerError on refusal (no retry storm). A durable session
    outlives the connection by `expiry` seconds (MQTT 5)."""
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        outcome.setdefault("rc", rc)
        done.set()

    def on_disconnect(c: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        outcome.setdefault("rc", rc)
        done.set()

    previous = client.on_connect, client.on_disconnect
    client.on_connect, client.on_disconnect = on_connect, on_disconnect
    kwargs: dict[str, Any] = {}
    if client.protocol == mqtt.MQTTv5:
        props = Properties(PacketTypes.CONNECT)
        if durable:
            props.SessionExpiryInterval = expiry
        kwargs = {"clean_start": not durable, "properties": props}
    try:
        client.connect(url.host, url.port, keepalive=30, **kwargs)
    except (OSError, ValueError) as e:
        client.on_connect, client.on_disconnect = previous
        raise BrokerError(f"cannot reach the MQTT broker at {url}: {e}; is it running, and is the address right?",
                          "unreachable") from None
    client.loop_start()
    if not done.wait(timeout):
        client.loop_stop()
        client.on_connect, client.on_disconnect = previous
        raise BrokerError(f"the MQTT broker at {url} did not answer within {timeout:g} s", "silent")
    rc = outcome["rc"]
    client.on_connect, client.on_disconnect = previous
    if getattr(rc, "is_failure", False):
        client.loop_stop()
        client.disconnect()
        name = str(rc)
        hint = ("check the user name and password (URL or LINETWIN_MQTT_USERNAME / LINETWIN_MQTT_PASSWORD)"
                if "authori" in name.lower() or "password" in name.lower() else "check the broker's settings")
        raise BrokerError(f"the MQTT broker at {url} refused the connection ({name}); {hint}", "refused",
                          getattr(rc, "value", None))


def end_session(url: BrokerURL, client_id: str, protocol: int) -> None:
    """Remove the broker's session of `client_id` (its subscriptions and what is queued for it): connect once with a
    clean start and leave. For a consumer whose durable session must not outlive it (MQTT 3.1.1 has no expiry)."""
    client = make_client(url, client_id, protocol=protocol)
    connect(client, url)
    client.disconnect()
    client.loop_stop()


def subscribe_confirmed(client: mqtt.Client, url: BrokerURL, topics: list[tuple[str, int]],
                        timeout: float = 10.0) -> None:
    """Subscribe a connected client to `topics` (filter, QoS) and return once the broker has confirmed it, so
    that nothing published afterwards is missed; BrokerError if it does not within `timeout` seconds."""
    confirmed, acked, lock = threading.Event(), set(), threading.Lock()
    mine: list[int] = []
    previous = client.on_subscribe

    def on_subscribe(c: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        with lock:  # the SUBACK may come back before subscribe() has returned its message id
            acked.add(mid)
            if mid in mine:
                confirmed.set()
        if previous is not None:
            previous(c, userdata, mid, codes, props)

    client.on_subscribe = on_subscribe
    try:
        mid = client.subscribe(topics)[1]
        with lock:
            mine.append(mid)
            if mid in acked:
                confirmed.set()
        if not confirmed.wait(timeout):
            raise BrokerError(f"the MQTT broker at {url} did not confirm a subscription to {topics[0][0]} within "
                              f"{timeout:g} s", "silent")
    finally:
        client.on_subscribe = previous


def negotiate(url: BrokerURL, timeout: float = 5.0) -> int:
    """The MQTT version to use with this broker: 5 where it speaks it, else 3.1.1."""
    probe = make_client(url, f"linetwin-probe-{uuid.uuid4().hex[:8]}")
    try:
        connect(probe, url, timeout=timeout)
    except BrokerError as e:
        if e.kind == "refused" and e.reason in UNSUPPORTED_PROTOCOL:
            return mqtt.MQTTv311
        if e.kind != "silent":
            raise
        # a broker that drops an MQTT 5 CONNECT without an answer speaks only 3.1.1; make sure it does
        legacy = make_client(url, f"linetwin-probe-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv311)
        connect(legacy, url, timeout=timeout)
        legacy.disconnect()
        legacy.loop_stop()
        return mqtt.MQTTv311
    probe.disconnect()
    probe.loop_stop()
    return mqtt.MQTTv5


def find_program(name: str) -> str | None:
    """The path of a server program: on PATH, or in the sbin folders where Debian installs mosquitto and which
    a normal user's PATH does not hold."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def free_port(preferred: int | None = None) -> int:
    """`preferred` if it is free on 127.0.0.1, else any free port."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free to a server
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise BrokerError("no free TCP port on 127.0.0.1")


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1",
              process: subprocess.Popen[Any] | None = None) -> None:
    """Wait until something listens on host:port; BrokerError after `timeout` seconds, or as soon as `process` (the
    one meant to listen) has ended: a dashboard whose server failed at start was waited for a whole minute."""
    deadline = time.monotonic() + timeout
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BrokerError(f"the process meant to listen on port {port} ended (exit status {process.returncode})")
        with socket.socket(family) as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise BrokerError(f"the broker did not open port {port} within {timeout:g} s")


class EmbeddedBroker:
    """A broker on 127.0.0.1 for the life of a run: mosquitto if installed, else amqtt, each a process of its own.

    No anonymous client: two accounts with random passwords drawn at start, `twin` (the run, its ingest,
    forecaster, policy and dashboard; the only one that may publish) and `viewer` (reads everything; its password
    is written, readable by its owner only, to `viewer-password` in the broker's data folder)."""

    def __init__(self, port: int | None = None, kind: str | None = None, data_dir: Path | None = None) -> None:
        kind = kind or os.environ.get("LINETWIN_EMBEDDED_BROKER", "auto")
        if kind not in ("auto", "mosquitto", "amqtt"):
            raise BrokerError(f"LINETWIN_EMBEDDED_BROKER={kind!r}: use auto, mosquitto or amqtt")
        self.port = free_port(port or 1883)
        self.kind = ("mosquitto" if find_program("mosquitto") else "amqtt") if kind == "auto" else kind
        self._data = data_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.passwords = {TWIN_USER: secrets.token_urlsafe(24), VIEWER_USER: secrets.token_urlsafe(24)}

    @property
    def url(self) -> BrokerURL:
        """The run's own account, the only one that may publish."""
        return BrokerURL("mqtt", "127.0.0.1", self.port, TWIN_USER, self.passwords[TWIN_USER])

    @property
    def protocol(self) -> int:
        """The MQTT version its clients use: 5 on mosquitto; 3.1.1 on amqtt, which answers an MQTT 5 CONNECT with
        silence (so probing it would cost the probe's whole time-out)."""
        return mqtt.MQTTv5 if self.kind == "mosquitto" else mqtt.MQTTv311

    @property
    def viewer_url(self) -> BrokerURL:
        """A read-only account for other clients (dashboards, `mosquitto_sub`)."""
        return BrokerURL("mqtt", "127.0.0.1", self.port, VIEWER_USER, self.passwords[VIEWER_USER])

    def start(self) -> EmbeddedBroker:
        """Start on the chosen port; if another process takes it first (two runs starting at once), on another."""
        for attempt in range(5):
            self._tmp = tempfile.TemporaryDirectory(prefix=f"linetwin-{self.kind}-")  # 0700: the password files
            try:
                tmp = Path(self._tmp.name)
                args = self._mosquitto(tmp) if self.kind == "mosquitto" else self._amqtt(tmp)
                with open(tmp / "broker.log", "wb") as log:  # not a pipe: nobody reads it while the run goes on
                    self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
                self._wait_ready(tmp / "broker.log")
                self._probe()  # whoever listens there knows this run's password: it is ours
                break
            except BrokerError:
                self.stop()
                if attempt == 4:
                    raise
                self.port = free_port()
        if self._data is not None:
            self._data.mkdir(parents=True, exist_ok=True)
            secret = self._data / "viewer-password"
            secret.touch(0o600)
            secret.write_text(self.passwords[VIEWER_USER] + "\n", encoding="utf-8")
        return self

    def _probe(self) -> None:
        probe = make_client(self.url, f"linetwin-probe-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv311)
        connect(probe, self.url, timeout=10)
        probe.disconnect()
        probe.loop_stop()

    def _password_file(self, tmp: Path, hashed: Callable[[str], str] | None = None) -> Path:
        """The accounts as `user:password` lines (`hashed` if given), readable by their owner only."""
        path = tmp / "passwords"
        path.touch(0o600)
        path.write_text("".join(f"{u}:{hashed(p) if hashed else p}\n" for u, p in self.passwords.items()))
        return path

    def _wait_ready(self, log: Path, timeout: float = 30.0) -> None:
        """Until the broker listens (a cold amqtt imports itself and its plugins first); a broker that exits first is
        a BrokerError with the last line it wrote."""
        assert self._proc is not None
        try:
            wait_port(self.port, timeout=timeout, process=self._proc)
        except BrokerError:
            if self._proc.poll() is None:
                raise
            said = log.read_text(encoding="utf-8", errors="replace").strip().splitlines() or ["no message"]
            raise BrokerError(f"the embedded {self.kind} broker did not start: {said[-1]}") from None

    def _mosquitto(self, tmp: Path) -> list[str]:
        """The command line of a mosquitto with this run's accounts and ACL (its files in `tmp`)."""
        exe, hasher = find_program("mosquitto"), find_program("mosquitto_passwd")
        if exe is None or hasher is None:
            raise BrokerError("mosquitto is not installed; install it (apt-get install mosquitto) or use amqtt")
        passwords = self._password_file(tmp)
        subprocess.run([hasher, "-U", str(passwords)], check=True, capture_output=True, timeout=30)  # hashed in place
        acl = tmp / "acl"
        acl.write_text(f"user {TWIN_USER}\ntopic readwrite #\nuser {VIEWER_USER}\ntopic read #\n")
        conf = tmp / "mosquitto.conf"
        conf.write_text(mosquitto_config(self.port, self._data or tmp, f"password_file {passwords}\nacl_file {acl}"))
        return [exe, "-c", str(conf)]

    def _amqtt(self, tmp: Path) -> list[str]:
        """The command line of amqtt in a process of its own (`sensors.bus.amqtt_server`), so that it does not share
        the run's GIL."""
        from pwdlib.hashers.argon2 import Argon2Hasher

        passwords = self._password_file(tmp, Argon2Hasher().hash)
        config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                  "plugins": {"amqtt.plugins.authentication.FileAuthPlugin": {"password_file": str(passwords)},
                              "amqtt.plugins.topic_checking.TopicAccessControlListPlugin": {
                                  "publish_acl": {TWIN_USER: ["#"]}, "acl": {TWIN_USER: ["#"], VIEWER_USER: ["#"]}}}}
        path = tmp / "amqtt.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        return [sys.executable, "-P", "-m", "sensors.bus.amqtt_server", str(path)]  # -P: not the user's folder

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(10)
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def mosquitto_config(port: int, data_dir: Path, extra: str = "") -> str:
    """A mosquitto configuration for loopback use with durable sessions that never drop queued messages."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return "\n".join([
        f"user {getpass.getuser()}",  # started as root, mosquitto would drop to 'mosquitto' and lose the data dir
        f"listener {port} 127.0.0.1",
        "allow_anonymous false" if "password_file" in extra else "allow_anonymous true",
        "persistence true",
        f"persistence_location {data_dir}/",
        "autosave_interval 60",
        "max_queued_messages 0",
        "max_inflight_messages 100",
        "persistent_client_expiration 1d",
        "log_type error",
        extra,
        "",
    ])
