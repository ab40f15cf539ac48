"""A real Mosquitto started with the config ``hailong broker render`` produced for a test fleet.

The fleet is a copy of deploy/example-fleet; the rendered files name their own
directory as ``conf_dir`` so the broker reads exactly what was rendered.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from broker.fleet.credentials import FleetState
from broker.fleet.registry import load_registry
from broker.kernel.mqtt import MqttSettings
from broker.kernel.session import Message, MqttSession
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


def start_fleet_broker(tmp: Path, prepare: Callable[[Path, FleetState], None] | None = None) -> FleetBroker:
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
        run_as="root" if os.geteuid() == 0 else None,
    )
    render_broker(load_registry(fleet), state, out, opt)
    server = MosquittoServer(tmp / "run", port=opt.tls_port, conf_text=(out / "mosquitto.conf").read_text())
    server.start()
    return FleetBroker(fleet, out, state, opt, server)


@dataclass
class Probe:
    """One MQTT v5 session with its connect result, SUBACK codes and received messages."""

    name: str
    connect_rc: ReasonCode | None = None
    received: list[tuple[str, bytes]] = field(default_factory=list)
    suback: dict[int, list[ReasonCode]] = field(default_factory=dict)
    puback: dict[int, ReasonCode] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    session: MqttSession = field(init=False)

    @property
    def client(self) -> mqtt.Client:
        return self.session.client

    def on_message(self, msg: Message) -> None:
        with self.lock:
            self.received.append((msg.topic, bytes(msg.payload)))

    def payloads(self, topic: str | None = None) -> list[bytes]:
        with self.lock:
            return [p for t, p in self.received if topic is None or t == topic]


def probe(broker: FleetBroker, name: str, *, user: str | None = None, password: str | None = None,
          cert: tuple[Path, Path] | None = None, ca: Path | None = None, clean: bool = True,
          port: int | None = None) -> Probe:
    """Connect a client (bounded wait) and return it, whether or not the broker accepted it.

    ``port`` defaults to the listener that matches the credentials (certificate or password)."""
    port = port or (broker.options.cert_port if cert else broker.options.tls_port)
    settings = MqttSettings.model_validate({
        "url": f"mqtts://127.0.0.1:{port}", "username": user, "password": password,
        "ca_file": str(ca or broker.out / "ca.crt"),
        "cert_file": str(cert[0]) if cert else None, "key_file": str(cert[1]) if cert else None,
    })
    p = Probe(name)
    p.session = MqttSession(settings, f"probe-{name}", session_expiry_s=None if clean else 3600,
                            on_message=p.on_message, on_subscribe=p.suback.__setitem__,
                            on_publish=p.puback.__setitem__).start()
    with contextlib.suppress(AssertionError):  # no CONNACK at all counts as refused
        # a TLS handshake the broker refuses ends before any CONNACK: connect_failed
        wait_until(lambda: p.session.connect_rc is not None or p.session.connect_failed.is_set(), 10,
                   what=f"{name} CONNACK")
    p.connect_rc = p.session.connect_rc or ReasonCode(PacketTypes.CONNACK, "Not authorized")
    return p


def close(*probes: Probe) -> None:
    for p in probes:
        p.session.stop()
