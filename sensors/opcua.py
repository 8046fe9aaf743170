"""OPC UA both ways, with asyncua. In: `OpcUaReader` subscribes to a plant server's mapped nodes (node ids or browse
paths) and hands each data change, with its source timestamp and status, to the connector as the twin's messages; the
client reconnects and re-creates its subscription by itself after a server restart. Out: `TwinServer` serves a
running twin's line (machine states, sensor values, alerts, the line's KPIs) as an OPC UA address space on 127.0.0.1,
mirrored from the run's MQTT topic tree, so an HMI, SCADA or MES client can be tested against the twin.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson

from sensors.bus.broker import BrokerURL, connect, make_client
from sensors.bus.payloads import LineTopics, ParseError, epoch_ms, parse, parse_alert, utc_ms
from sensors.connect import (
    ConnectorConfig,
    OpcMachine,
    Sink,
    Translated,
    Unmapped,
    buffer_message,
    instant,
    machine_messages,
    map_state,
    number,
    product_message,
)

log = logging.getLogger("linetwin.opcua")
for noisy in ("asyncua", "asyncua.client.ua_client", "asyncua.server"):
    logging.getLogger(noisy).setLevel(os.environ.get("LINETWIN_OPCUA_LOG", "ERROR"))  # its reconnect chatter


class OpcUaError(ValueError):
    """An OPC UA source or server that cannot be used: the message says what and how to fix it."""


def _loop_thread(name: str) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
    thread.start()
    return loop, thread


def _ms(t: dt.datetime | None) -> int | None:
    if t is None:
        return None
    return epoch_ms(t)


class OpcUaReader:
    """The OPC UA source of a connector: one subscription on every mapped node, data changes → the twin's messages."""

    def __init__(self, cfg: ConnectorConfig, conn: Sink) -> None:
        assert cfg.opcua is not None
        self.cfg, self.conn, self.spec = cfg, conn, cfg.opcua
        self.url = cfg.source
        # node id → every (machine, kind, sensor) it feeds: a PLC's cell status word, or one temperature, may serve
        # several machines, and a status word may be a machine's state and its reason both
        self.nodes: dict[Any, list[tuple[OpcMachine, str, str | None]]] = {}
        self.reasons: dict[tuple[str, str], str] = {}
        self.states: dict[tuple[str, str], tuple[str, str]] = {}
        self.connected = threading.Event()
        self._settled = threading.Event()  # connected, or stopped with an error
        self._done = threading.Event()
        self.error: str | None = None
        self.changes = 0
        self.sessions = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._task: Any = None

    def start(self, timeout: float = 30.0, stop: threading.Event | None = None) -> None:
        """Connect and subscribe (in a thread of its own); OpcUaError if a mapped node does not exist. A server not
        reachable yet is retried, with a warning, until it is: waited for up to `timeout` here, or until `stop` is set
        (Ctrl-C), and then in the background."""
        self._loop, self._thread = _loop_thread("opcua-reader")
        self._task = asyncio.run_coroutine_threadsafe(self._main(), self._loop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            if self._settled.wait(0.1):  # subscribed, or refused for good
                break
        if self.error is not None:
            self.stop()
            raise OpcUaError(self.error)

    async def _main(self) -> None:
        """Connect, subscribe, and on a lost connection start over with a new session and subscription (backoff up
        to 30 s) until stopped. A fresh session each time: asyncua's own session reuse was seen to leave a restarted
        server's subscription dead."""
        wait = 1.0
        try:
            while True:
                lost = await self._session()
                if lost is None:
                    wait = 1.0  # it had been up: try again at once, then back off
                    continue
                log.warning("OPC UA server %s: %s; retrying in %.0f s", self.url, lost, wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, 30.0)
        except asyncio.CancelledError:
            return  # stop(): the session is closed in _session's finally
        except OpcUaError as e:  # the address space does not have the mapped nodes (at start, or after a restart)
            self.error = str(e)
            if self.connected.is_set():
                log.error("%s; no more data from this server until `twin connect` is restarted", e)
        finally:
            self._settled.set()
            self._done.set()

    async def _session(self) -> str | None:
        """One session: returns None when its connection was lost after it had subscribed, else why it failed."""
        from asyncua import Client, ua

        client = Client(self.url, timeout=5, watchdog_intervall=1.0)
        user, password = os.environ.get("LINETWIN_OPCUA_USERNAME"), os.environ.get("LINETWIN_OPCUA_PASSWORD")
        if user:
            client.set_user(user)
            client.set_password(password or "")
        lost = asyncio.Event()

        async def on_lost(exc: Exception) -> None:
            lost.set()

        client.connection_lost_callback = on_lost
        sec = self.spec.security
        try:
            if sec is not None:
                client.application_uri = _certificate_uri(sec.certificate) or client.application_uri
                await client.set_security_string(",".join(
                    [sec.policy, sec.mode, sec.certificate, sec.private_key,
                     *([sec.server_certificate] if sec.server_certificate else [])]))
            await client.connect()
            watched = await self._resolve(client)
            sub = await client.create_subscription(self.spec.interval * 1000, self)
            await sub.subscribe_data_change(watched)
            self.connected.set()
            self._settled.set()
            self.sessions += 1
            await lost.wait()
            log.warning("OPC UA server %s: connection lost; reconnecting", self.url)
            return None
        except (TimeoutError, OSError, ConnectionError, ua.UaError) as e:
            if _refused(e):
                raise OpcUaError(f"{self.url}: the server refuses this connection ({type(e).__name__}: {e}). "
                                 "Check opcua.security (policy, mode, certificates; the server must trust the "
                                 "connector's certificate) and LINETWIN_OPCUA_USERNAME / LINETWIN_OPCUA_PASSWORD"
                                 ) from None
            return f"not reachable ({type(e).__name__}: {e})"
        finally:
            with contextlib.suppress(Exception):  # a server already gone: nothing more to close
                await asyncio.wait_for(client.disconnect(), 5)

    async def _resolve(self, client: Any) -> list[Any]:
        from asyncua import ua

        missing, out = [], []
        self.nodes = {}
        for m in self.spec.machines:
            refs = [(ref.node, "value", sensor) for sensor, ref in m.values.items()]
            if m.state is not None:  # the reason first: a new subscription's first values come in this order, and a
                # state must find its fault text already there (a PLC writes the text before the status word)
                if m.state.reason:
                    refs.append((m.state.reason, "reason", None))
                refs.append((m.state.node, "state", None))
            if m.buffer is not None:
                refs.append((m.buffer.node, "buffer", None))
            if m.product is not None:
                refs.append((m.product.node, "product", None))
            for ref, kind, sensor in refs:
                try:
                    if ref.startswith(("ns=", "i=", "s=", "g=", "b=")):
                        node = client.get_node(ref)
                        await node.read_browse_name()  # exists?
                    else:
                        node = await client.nodes.objects.get_child(ref.split("/"))
                except (ua.UaError, ValueError) as e:
                    missing.append(f"{ref!r} ({m.machine}{'.' + sensor if sensor else ' ' + kind}: "
                                   f"{type(e).__name__})")
                    continue
                if node.nodeid not in self.nodes:  # one monitored item a node, however many it feeds
                    self.nodes[node.nodeid] = []
                    out.append(node)
                self.nodes[node.nodeid].append((m, kind, sensor))
        if missing:
            raise OpcUaError(f"{self.url}: {len(missing)} mapped node(s) not found on the server: "
                             f"{'; '.join(missing[:5])}. Give a node id (ns=2;s=...) or a browse path below Objects "
                             "(2:Press1/2:Vibration) as the server's address space shows it.")
        return out

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        """asyncua's callback: one data change of one mapped node, for every machine it feeds."""
        dv = data.monitored_item.Value
        now = int(time.time() * 1000)
        ts = _ms(dv.SourceTimestamp) or _ms(dv.ServerTimestamp) or now
        status = dv.StatusCode
        where = f"{self.url} {node.nodeid.to_string()}"
        raw = orjson.dumps({"value": val, "status": status.name}, default=str)
        self.changes += 1
        for m, kind, sensor in self.nodes[node.nodeid]:
            try:
                out = self._translate(m, kind, sensor, val, ts, status)
            except Unmapped as e:
                self.conn.reject(where, raw, f"{m.machine}: {e}" if len(self.nodes[node.nodeid]) > 1 else str(e), now)
                continue
            if out:
                self.conn.send(out)

    def _translate(self, m: OpcMachine, kind: str, sensor: str | None, val: Any, ts: int,
                   status: Any) -> list[Translated]:
        """One data change as what it means to one machine: its fault text kept (no message), its state, or a
        reading; Unmapped if it means nothing."""
        if not status.is_good() and self.spec.bad_quality == "drop":
            raise Unmapped(f"value of quality {status.name} (bad_quality: drop)")
        ts = instant(ts, "the value's source timestamp")
        key = (m.station, m.machine)
        if kind == "reason":
            self.reasons[key] = "" if val is None else str(val)[:200]
            return []
        if kind == "buffer":
            return [buffer_message(self.cfg, m.station, ts, val, f"node {m.buffer.node!r} (buffer)")]  # type: ignore[union-attr]
        if kind == "product" and m.product is not None:
            return product_message(self.cfg, m.machine, ts, val, m.product.map, f"node {m.product.node!r} (product)",
                                   self.states)
        if kind == "state":
            state = map_state(m.state.map, val, f"node {m.state.node!r}")  # type: ignore[union-attr]
            return machine_messages(self.cfg, m.station, m.machine, ts, [],
                                    (state, self.reasons.get(key, "") if state != "working" else ""), self.states)
        spec = m.values[str(sensor)]
        readings = [(str(sensor), number(val, f"node {spec.node!r} ({sensor})") * spec.scale, spec.unit)]
        if not status.is_good():  # bad_quality: keep: the status beside the value
            readings.append((f"{sensor}.status", float(status.value), ""))
        return machine_messages(self.cfg, m.station, m.machine, ts, readings, None, None)

    def status_change_notification(self, status: Any) -> None:
        log.warning("OPC UA subscription status: %s", status)

    def stop(self) -> None:
        if self._loop is None:
            return
        if self._task is not None:
            self._task.cancel()
            self._done.wait(8)  # the session closed on the server
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop = None


def _refused(e: Exception) -> bool:
    """A refusal that retrying cannot fix: security or identity rejected, or no endpoint with our security."""
    name = type(e).__name__
    return name.startswith(("BadSecurity", "BadCertificate", "BadUser", "BadIdentity")) or \
        "matching endpoint" in str(e).lower() or "no endpoint" in str(e).lower()


def _certificate_uri(path: str) -> str | None:
    """The application URI in a certificate's subject alternative names (a server checks it against ours)."""
    from cryptography import x509

    raw = Path(path).read_bytes()
    try:
        cert = x509.load_der_x509_certificate(raw)
    except ValueError:
        cert = x509.load_pem_x509_certificate(raw)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def server_url(value: str) -> str:
    """`--opcua` as a port or an opc.tcp://127.0.0.1:PORT URL; OpcUaError unless it is on the loopback interface
    (the twin's server has no sign-in: it serves one user on this machine)."""
    url = f"opc.tcp://127.0.0.1:{value}/linetwin" if value.isdigit() else value
    p = urlparse(url)
    try:
        port = p.port
    except ValueError:
        port = None
    if p.scheme != "opc.tcp" or port is None or not 0 < port < 65536:
        raise OpcUaError(f"--opcua {value!r}: give a port (4840) or opc.tcp://127.0.0.1:PORT/PATH")
    if p.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise OpcUaError(f"--opcua {value!r}: the twin's OPC UA server has no sign-in, so it listens on 127.0.0.1 "
                         "only; give 127.0.0.1 (an HMI elsewhere reaches it through an SSH tunnel)")
    return url


class TwinServer:
    """The running twin as an OPC UA server: Objects/<line>/<station>/<machine> with State, Reason, one Double per
    sensor (source timestamp: the simulated time of the reading), Alert and FailureProbability; Objects/<line>/KPI
    with the line's KPIs so far. Mirrored from the run's MQTT messages, so both show the same values."""

    NAMESPACE = "urn:linetwin:twin"

    def __init__(self, url: str, broker: BrokerURL, line: tuple[str, str, str],
                 machines: list[tuple[str, str]], zone: str = "UTC") -> None:
        self.url, self.broker, self.zone = url, broker, zone  # the line's clock: source timestamps are UTC
        self.topics = LineTopics(*line)
        self.line, self.machines = line, machines
        self.vars: dict[tuple[str, ...], Any] = {}
        self.objects: dict[tuple[str, ...], Any] = {}
        self.updates = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._started = False
        self._client = make_client(broker, f"linetwin-opcua-{uuid.uuid4().hex[:8]}")

    def start(self) -> TwinServer:
        """Serve the address space, then follow the run's messages; OpcUaError if the port is taken."""
        self._loop, self._thread = _loop_thread("opcua-server")
        said = logging.getLogger("asyncua.server.server")  # it logs a failed start with a traceback; we say it once
        level = said.level
        said.setLevel(logging.CRITICAL)
        try:
            asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(30)
        except OSError as e:
            self.stop()
            raise OpcUaError(f"--opcua {self.url}: cannot listen ({e.strerror or e}); choose a free port") from None
        finally:
            said.setLevel(level)
        self._client.on_message = self._on_message
        connect(self._client, self.broker)
        self._client.subscribe([(f"{self.topics.prefix}/+/+/{k}", 0) for k in ("telemetry", "state", "alerts")]
                               + [(self.topics.kpi, 0)])
        return self

    async def _serve(self) -> None:
        from asyncua import Server, ua

        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name(f"linetwin {'/'.join(self.line)}")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self._server = server
        self.idx = await server.register_namespace(self.NAMESPACE)
        line = await server.nodes.objects.add_object(self.idx, self.line[2])
        self.objects[()] = line
        self.objects[("KPI",)] = await line.add_object(self.idx, "KPI")
        for station, machine in self.machines:
            await self._machine(station, machine)
        await server.start()
        self._started = True  # only a started server is stopped (`stop` after a failed start: nothing to undo)
        self._queue: asyncio.Queue[list[Any]] = asyncio.Queue()
        self._writer = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        """Apply the run's messages one after another, in the order they came."""
        while True:
            writes = await self._queue.get()
            for w in writes:
                try:
                    await self._set(*w)
                except Exception as e:  # one bad value must not stop the mirror
                    log.warning("OPC UA mirror: %s not written (%s)", "/".join(w[0]), e)

    async def _machine(self, station: str, machine: str) -> Any:
        from asyncua import ua

        if (station,) not in self.objects:
            self.objects[(station,)] = await self.objects[()].add_object(self.idx, station)
        if (station, machine) not in self.objects:
            obj = await self.objects[(station,)].add_object(self.idx, machine)
            self.objects[(station, machine)] = obj
            for name, value, kind in (("State", "", ua.VariantType.String), ("Reason", "", ua.VariantType.String),
                                      ("Alert", "none", ua.VariantType.String),
                                      ("FailureProbability", 0.0, ua.VariantType.Double)):
                var = await obj.add_variable(self.idx, name, value, kind)
                if name in ("State", "Reason"):  # no value until the run publishes one
                    await self._server.write_attribute_value(var.nodeid, ua.DataValue(
                        ua.Variant(value, kind), StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)))
                self.vars[(station, machine, name)] = var
        return self.objects[(station, machine)]

    async def _set(self, key: tuple[str, ...], value: Any, ts_ms: int | None, unit: str = "") -> None:
        from asyncua import ua

        kind = ua.VariantType.Double if isinstance(value, float) else ua.VariantType.String
        var = self.vars.get(key)
        if var is None:  # a sensor or KPI seen the first time
            parent = self.objects[key[:-1]] if key[:-1] in self.objects else await self._machine(*key[:2])
            var = await parent.add_variable(self.idx, key[-1], value, kind)
            if unit:
                text = ua.Variant(ua.LocalizedText(unit), ua.VariantType.LocalizedText)
                await var.write_attribute(ua.AttributeIds.Description, ua.DataValue(text))
            self.vars[key] = var
        # the run's times are on the line's clock; OPC UA's are real instants in UTC (a client shows them in its zone)
        stamp = dt.datetime.fromtimestamp(utc_ms(ts_ms, self.zone) / 1000, dt.UTC) if ts_ms is not None else None
        await self._server.write_attribute_value(var.nodeid, ua.DataValue(ua.Variant(value, kind),
                                                                          SourceTimestamp=stamp,
                                                                          ServerTimestamp=dt.datetime.now(dt.UTC)))
        self.updates += 1

    def _on_message(self, c: Any, u: Any, msg: Any) -> None:
        if self._loop is None:
            return
        try:
            writes = self._writes(msg.topic, msg.payload)
        except (ParseError, ValueError, KeyError, TypeError) as e:
            log.warning("OPC UA mirror: %s ignored (%s)", msg.topic, e)
            return
        self._loop.call_soon_threadsafe(self._queue.put_nowait, writes)

    def _writes(self, topic: str, payload: bytes) -> list[tuple[tuple[str, ...], Any, int | None, str]]:
        """What one of the run's messages changes in the address space: (path, value, source ms, unit)."""
        if topic == self.topics.kpi:
            doc = orjson.loads(payload)
            return [(("KPI", k), float(v), None, "") for k, v in doc.get("kpis", {}).items() if v is not None]
        levels = topic.split("/")
        if levels[-1] == "alerts":
            a = parse_alert(payload)
            key = (levels[3], levels[4])
            active = a["state"] != "cleared"
            return [((*key, "Alert"), a["severity"] if active else "none", a["ts"], ""),
                    ((*key, "FailureProbability"), float(a["probability"]), a["ts"], "")]
        m = parse(topic, payload)
        if hasattr(m, "changes"):
            state, ts, reason = m.changes[-1]
            return [((m.station, m.machine, "State"), state, ts, ""),
                    ((m.station, m.machine, "Reason"), reason, ts, "")]
        last: dict[str, tuple[float, int]] = {}
        for s, t, v in zip(m.sensors, m.ts_ms, m.values):
            if s not in last or t >= last[s][1]:
                last[s] = (v, t)
        return [((m.station, m.machine, s), v, t, m.units.get(s, "")) for s, (v, t) in last.items()]

    def stop(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
        if self._loop is None:
            return
        if self._started:
            self._loop.call_soon_threadsafe(self._writer.cancel)
            asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop = None
