"""An ingest is ready once the broker confirmed its subscriptions (SUBACK), not once it is connected: a NEW
session (a test's fresh client id) never receives what was published before the broker read its SUBSCRIBE.
On a loaded machine the broker reads it late, and tests that published right after ``start_ingest`` waited in
vain for an outcome (tests/ingest/test_web_ratings.py's restart test failed so at load ~75). Measured on this
2-core machine at load 19-26 with Mosquitto 2.0.11: of 1,000 messages published as soon as a new consumer session
was connected, 18 never reached it; of 1,000 published once its SUBACK had arrived, none was lost. A proxy holding
the ingest's packets after its CONNECT makes that window seconds long: the real Mosquitto, InfluxDB and ingest."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType
from typing import Any

from broker.fleet.registry import load_registry
from broker.mqtt.settings import MqttSettings
from device.publisher import RatingPublisher
from ingest.registry import RegistryHolder
from ingest.service import IngestService
from storage.influxql import InfluxQL
from tests.support.ingest import ingest_config, start_ingest, write_fleet
from tests.support.judging import Judged, mqtt_settings, new_uid

HOLD_S = 2.0


class HoldingProxy:
    """Loopback TCP proxy to the broker: a client's first packet (its CONNECT) goes through at once, everything
    after it ``hold_s`` later, as a broker too busy to read the socket would; the broker's side is not held."""

    def __init__(self, broker_port: int, hold_s: float) -> None:
        self.broker_port = broker_port
        self.hold_s = hold_s
        self._listen = socket.create_server(("127.0.0.1", 0))
        self.port = self._listen.getsockname()[1]
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> HoldingProxy:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._listen.close()
        for s in self._socks:
            s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listen.accept()
            except OSError:
                return
            broker = socket.create_connection(("127.0.0.1", self.broker_port))
            self._socks += [client, broker]
            threading.Thread(target=self._pump, args=(broker, client, 0.0), daemon=True).start()
            threading.Thread(target=self._pump, args=(client, broker, self.hold_s), daemon=True).start()

    @staticmethod
    def _first_packet(src: socket.socket) -> bytes:
        """One whole MQTT packet: fixed header byte, remaining length (varint), body."""
        def read(n: int) -> bytes:
            buf = b""
            while len(buf) < n:
                chunk = src.recv(n - len(buf))
                if not chunk:
                    raise OSError("closed")
                buf += chunk
            return buf

        head = read(1)
        length, shift = 0, 0
        while True:
            byte = read(1)
            head += byte
            length |= (byte[0] & 0x7F) << shift
            shift += 7
            if not byte[0] & 0x80:
                break
        return head + read(length)

    def _pump(self, src: socket.socket, dst: socket.socket, hold_s: float) -> None:
        try:
            if hold_s:
                dst.sendall(self._first_packet(src))
                time.sleep(hold_s)  # meanwhile the client's next packets wait in the kernel's buffer
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def _through(proxy: HoldingProxy, mosquitto: Any) -> MqttSettings:
    direct = mqtt_settings(mosquitto)
    return MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{proxy.port}", "username": direct.username,
                                        "password": direct.secret()})


def test_connected_is_not_ready_until_the_broker_confirmed_the_subscriptions(mosquitto: Any, influx_server: Any,
                                                                            tmp_path: Any) -> None:
    uid = new_uid()
    fleet = load_registry(write_fleet(tmp_path / "f", f"r-{uid}", [(f"t-{uid}", "q1")], has_qms=True))
    db = InfluxQL(influx_server.url, f"t_ready_{uid}")
    db.create_database()
    with HoldingProxy(mosquitto.port, HOLD_S) as proxy:
        cfg = ingest_config(_through(proxy, mosquitto), db, uid)
        svc = IngestService(cfg, registry=RegistryHolder(fleet, cfg.province)).start()
        try:
            assert svc.connected  # CONNACK came back; the SUBSCRIBE is still held by the proxy
            assert not svc.ready and not svc.wait_ready(HOLD_S / 4)
            assert svc.wait_ready(HOLD_S + 30) and svc.ready
        finally:
            svc.stop()
            db.drop_database()


def test_start_ingest_returns_a_subscribed_ingest(mosquitto: Any, influx_server: Any, tmp_path: Any) -> None:
    """What the judging tests rely on: a message published as soon as start_ingest returned is judged."""
    uid = new_uid()
    centre, device = f"r-{uid}", f"t-{uid}"
    fleet = load_registry(write_fleet(tmp_path / "f", centre, [(device, "q1")], has_qms=True))
    db = InfluxQL(influx_server.url, f"t_ready_{uid}")
    db.create_database()
    pub = RatingPublisher(mqtt_settings(mosquitto), f"pub-{uid}")  # straight to the broker, not held
    assert pub.start()
    with HoldingProxy(mosquitto.port, HOLD_S) as proxy:
        j = Judged(uid, db, pub, [start_ingest(_through(proxy, mosquitto), db, uid, fleet=fleet)])
        try:
            now = time.time_ns() // 1_000_000
            rating, eid = j.rating(centre, device, "q1", "A-001", rated=now - 1000, officer="cb-a")
            j.send([j.close(centre, "q1", "A-001", now - 4000, officer="cb-a"), rating])
            assert j.outcomes([eid], timeout=HOLD_S + 20) == {eid: "rating"}
            assert j.ratings()[0]["officer"] == "cb-a"
        finally:
            pub.stop()
            j.services[0].stop()
            db.drop_database()
