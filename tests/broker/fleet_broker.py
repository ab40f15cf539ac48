"""A real Mosquitto started with the config ``hailong broker render`` produced for a test fleet.

The fleet is a copy of deploy/example-fleet; the rendered files name their own
directory as ``conf_dir`` so the broker reads exactly what was rendered.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from broker.fleet.credentials import FleetState
from broker.fleet.registry import load_registry
from broker.mosquitto.render import RenderOptions, render_broker
from hailong.localstack import MosquittoServer, free_port
from tests.support.waiting import wait_until

EXAMPLE_FLEET = Path(__file__).resolve().parents[2] / "deploy" / "example-fleet"


@dataclass
class FleetBroker:
    fleet: Path
    out: Path
    state: FleetState
    options: RenderOptions
    server: MosquittoServer

    def render(self) -> None:
        render_broker(load_registry(self.fleet), self.state, self.out, self.options)

    def reload(self) -> None:
        """What an operator does after re-rendering: SIGHUP (re-reads passwd, acl, certificates)."""
        assert self.server.proc is not None
        self.server.proc.send_signal(signal.SIGHUP)

    def password(self, user: str) -> str:
        return self.state.password(user)


def start_fleet_broker(tmp: Path, prepare: Callable[[Path, FleetState], None] | None = None,
                       **options: object) -> FleetBroker:
    """``options``: RenderOptions fields beyond the test defaults (e.g. ingest_instances, ingest_workers)."""
    fleet = tmp / "fleet"
    shutil.copytree(EXAMPLE_FLEET, fleet)
    state = FleetState.for_fleet(fleet).ensure()
    if prepare:
        prepare(fleet, state)
    out = tmp / "broker"
    (out / "data").mkdir(parents=True)
    opt = RenderOptions(
        bind="127.0.0.1", tls_port=free_port(), cert_port=free_port(), conf_dir=str(out),
        data_dir=str(out / "data"), log_dest=f"file {(tmp / 'run').resolve()}/mosquitto.log",
        run_as="root" if os.geteuid() == 0 else None, **options,  # type: ignore[arg-type]
    )
    render_broker(load_registry(fleet), state, out, opt)
    server = MosquittoServer(tmp / "run", port=opt.tls_port, conf_text=(out / "mosquitto.conf").read_text())
    server.start()  # waits for the password listener; the certificate listener opens a moment later
    wait_until(lambda: _port_open(opt.cert_port), 15, what="the certificate listener")
    return FleetBroker(fleet, out, state, opt, server)


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@dataclass
class Probe:
    """One MQTT v5 client with its connect result, SUBACK codes and received messages."""

    name: str
    client: mqtt.Client
    connect_rc: ReasonCode | None = None
    received: list[tuple[str, bytes]] = field(default_factory=list)
    suback: dict[int, list[ReasonCode]] = field(default_factory=dict)
    puback: dict[int, ReasonCode] = field(default_factory=dict)
    disconnects: list[ReasonCode] = field(default_factory=list)
    retained: list[tuple[str, bytes]] = field(default_factory=list)  # messages that arrived with retain=1
    lock: threading.Lock = field(default_factory=threading.Lock)

    def payloads(self, topic: str | None = None) -> list[bytes]:
        with self.lock:
            return [p for t, p in self.received if topic is None or t == topic]


def probe(broker: FleetBroker, name: str, *, user: str | None = None, password: str | None = None,
          cert: tuple[Path, Path] | None = None, ca: Path | None = None, clean: bool = True,
          client_id: str | None = None, protocol: int = mqtt.MQTTv5, port: int | None = None) -> Probe:
    """Connect a client (bounded wait) and return it, whether or not the broker accepted it.

    ``client_id`` defaults to ``probe-<name>``; the rendered broker replaces it by the username.
    ``port`` defaults to the listener that matches the credentials (certificate or password).
    A raw paho client on purpose: these probes set client ids, protocol versions and clean-start
    flags that no production client of ours (broker.mqtt.session) ever would.
    """
    v5 = protocol == mqtt.MQTTv5
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"probe-{name}",
                         protocol=protocol, **({} if v5 else {"clean_session": clean}))
    p = Probe(name, client)
    if user is not None:
        client.username_pw_set(user, password)
    ctx = ssl.create_default_context(cafile=str(ca or broker.out / "ca.crt"))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    client.tls_set_context(ctx)

    def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object = None) -> None:
        p.connect_rc = rc

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with p.lock:
            p.received.append((msg.topic, bytes(msg.payload)))
            if msg.retain:
                p.retained.append((msg.topic, bytes(msg.payload)))

    def on_disconnect(_c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object = None) -> None:
        with p.lock:
            p.disconnects.append(rc)

    def on_subscribe(_c: mqtt.Client, _u: object, mid: int, codes: list[ReasonCode], _p: object) -> None:
        p.suback[mid] = codes

    def on_publish(_c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _p: object) -> None:
        p.puback[mid] = rc

    client.on_connect, client.on_message = on_connect, on_message
    client.on_subscribe, client.on_publish = on_subscribe, on_publish
    client.on_disconnect = on_disconnect
    port = port or (broker.options.cert_port if cert else broker.options.tls_port)
    props = None
    if not clean and v5:
        props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
    try:
        if v5:
            client.connect("127.0.0.1", port, keepalive=30, clean_start=clean, properties=props)
        else:
            client.connect("127.0.0.1", port, keepalive=30)
    except (ssl.SSLError, OSError) as exc:
        p.connect_rc = ReasonCode(mqtt.PacketTypes.CONNACK, "Not authorized")
        p.received.append(("$error", str(exc).encode()))
        return p
    client.loop_start()
    with contextlib.suppress(AssertionError):  # no CONNACK at all counts as refused
        wait_until(lambda: p.connect_rc is not None or _closed(client), 10, what=f"{name} CONNACK")
    if p.connect_rc is None:
        p.connect_rc = ReasonCode(mqtt.PacketTypes.CONNACK, "Not authorized")
    return p


def _closed(client: mqtt.Client) -> bool:
    # a TLS handshake refused by the broker ends with the socket closed and no CONNACK
    return client.socket() is None


def close(*probes: Probe) -> None:
    for p in probes:
        p.client.disconnect()
        p.client.loop_stop()
