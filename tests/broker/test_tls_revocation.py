"""TLS client certificates, revocation and rotation with SIGHUP reload, and the broker queue
limit, against a real Mosquitto running the rendered config."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.fleet.credentials import FleetState
from broker.fleet.passwd import hash_password, parse_passwd, verify_password
from broker.fleet.pki import FleetCA, cert_serial
from tests.broker.fleet_broker import FleetBroker, Probe, close, probe, start_fleet_broker
from tests.support.waiting import wait_until

X, A, B, C = "qn-tthc", "qn-q01", "qn-q02", "qn-q03"


def _prepare(_fleet: Path, state: FleetState) -> None:
    for dev in (A, B, C):
        state.password(dev)
        state.device_cert(dev)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetBroker]:
    fb = start_fleet_broker(tmp_path_factory.mktemp("tls"), _prepare)
    yield fb
    fb.server.stop()


def _cert(fb: FleetBroker, dev: str) -> tuple[Path, Path]:
    return fb.state.pki_dir / "devices" / f"{dev}.crt", fb.state.pki_dir / "devices" / f"{dev}.key"


def _ingest(fb: FleetBroker, name: str) -> Probe:
    ing = probe(fb, name, user="svc.ingest", password=fb.password("svc.ingest"))
    mid = ing.client.subscribe("hl/v1/+/+/rating", qos=1)[1]
    wait_until(lambda: mid in ing.suback, 10, what="ingest SUBACK")
    return ing


def _delivered(pub: Probe, topic: str, body: bytes, ing: Probe, marker: Probe, marker_topic: str) -> bool:
    """Publish ``body``; then an authorised marker; return whether ``body`` reached the ingest.

    The marker is published only after ``body`` was acknowledged, so once the marker arrived
    the ingest would already have ``body`` if the broker had let it through."""
    info = pub.client.publish(topic, body, qos=1)
    wait_until(lambda: info.mid in pub.puback, 10, what="PUBACK")
    tag = b"marker-" + body
    marker.client.publish(marker_topic, tag, qos=1)
    wait_until(lambda: tag in ing.payloads(), 10, what="marker at the ingest")
    return body in ing.payloads()


def test_device_certificate_identity(broker: FleetBroker, tmp_path: Path) -> None:
    ing = _ingest(broker, "ing-tls")
    dev_a = probe(broker, "a-cert", cert=_cert(broker, A))
    dev_b = probe(broker, "b-cert", cert=_cert(broker, B))
    other_ca = FleetCA.load_or_create(tmp_path / "other-ca", "some other CA")
    key, crt, _ = other_ca.issue(A)  # same CN as device A, wrong issuer
    (tmp_path / "a.key").write_bytes(key)
    (tmp_path / "a.crt").write_bytes(crt)
    forged = probe(broker, "forged", cert=(tmp_path / "a.crt", tmp_path / "a.key"))
    no_cert = probe(broker, "no-cert", user=A, password=broker.password(A), cert=None)
    try:
        assert dev_a.connect_rc is not None and not dev_a.connect_rc.is_failure
        assert forged.connect_rc is not None and forged.connect_rc.is_failure and not forged.client.is_connected()
        # the certificate listener refuses a client without a certificate, password or not
        no_cert_on_cert_port = _no_cert_on_cert_listener(broker)
        assert no_cert_on_cert_port
        assert no_cert.connect_rc is not None and not no_cert.connect_rc.is_failure  # password listener is fine
        # device A's certificate speaks as A: its own topic arrives, B's topic does not
        assert _delivered(dev_a, f"hl/v1/{X}/{A}/rating", b"a-own", ing, dev_b, f"hl/v1/{X}/{B}/rating")
        assert not _delivered(dev_a, f"hl/v1/{X}/{B}/rating", b"a-as-b", ing, dev_b, f"hl/v1/{X}/{B}/rating")
    finally:
        close(ing, dev_a, dev_b, forged, no_cert)


def _no_cert_on_cert_listener(fb: FleetBroker) -> bool:
    """A password login on the certificate listener: refused in the handshake or without a successful CONNACK
    (TLS 1.3 reports a missing client certificate only after the handshake)."""
    p = probe(fb, "nocert", user=A, password=fb.password(A), port=fb.options.cert_port)
    close(p)
    return p.connect_rc is not None and p.connect_rc.is_failure


def test_revoke_and_rotate_take_effect_on_sighup(broker: FleetBroker) -> None:
    ing = _ingest(broker, "ing-rev")
    dev_b = probe(broker, "b-rev", user=B, password=broker.password(B))
    old_pw = broker.password(C)
    dev_c = probe(broker, "c-rev", user=C, password=old_pw)
    try:
        assert _delivered(dev_c, f"hl/v1/{X}/{C}/rating", b"c-before", ing, dev_b, f"hl/v1/{X}/{B}/rating")
        # `hailong fleet revoke` = revoke credentials, re-render, SIGHUP
        assert broker.state.revoke_device(C)
        broker.render()
        broker.reload()
        # mosquitto 2.0 re-checks connected clients on reload: the terminal is disconnected ...
        wait_until(lambda: not dev_c.client.is_connected(), 10, what="revoked terminal disconnected")
        # ... and can neither log in again with its password nor with its (revoked) certificate
        again = probe(broker, "c-again", user=C, password=old_pw)
        assert again.connect_rc is not None and again.connect_rc.is_failure
        close(again)
        # rotation: a new password for B; the old one stops working after the reload
        old_b = broker.password(B)
        new_b = broker.state.rotate_password(B)
        broker.render()
        broker.reload()
        wait_until(lambda: _login(broker, B, new_b), 10, interval=0.2, what="new password accepted")
        assert not _login(broker, B, old_b)
    finally:
        close(ing, dev_b, dev_c)


# Whose certificate is revoked: a terminal (a plain id) and dotted identities (a province's bridge,
# a service). revoked.toml keys them by name; a dotted name must stay one key, not nested tables.
REVOKED = [pytest.param(C, id="device"), pytest.param("fed.quang-ninh", id="bridge"),
           pytest.param("svc.qms.qn-tthc", id="service")]


@pytest.mark.parametrize("name", REVOKED)
def test_crl_alone_refuses_a_revoked_certificate_after_sighup(tmp_path: Path, name: str) -> None:
    """Only the CRL changes (the ACL still lists the device): the certificate must still be refused."""
    fb = start_fleet_broker(tmp_path, _prepare)
    try:
        if name == C:
            crt, key = _cert(fb, C)
        else:
            key_pem, cert_pem, _ = fb.state.ca().issue(name)
            key, crt = tmp_path / f"{name}.key", tmp_path / f"{name}.crt"
            key.write_bytes(key_pem)
            crt.write_bytes(cert_pem)
        ok = probe(fb, "cert-ok", cert=(crt, key))
        assert ok.connect_rc is not None and not ok.connect_rc.is_failure
        close(ok)
        serial = cert_serial(crt.read_bytes())
        fb.state.revoke_serial(name, serial)
        assert fb.state.revoked() == {name: [serial]} and fb.state.revoked_serials() == [serial]
        fb.render()
        assert f"user {C}" in (fb.out / "acl").read_text()
        fb.reload()  # mosquitto re-reads certfile/keyfile/crlfile on SIGHUP

        def refused() -> bool:
            p = probe(fb, f"cert-{time.monotonic_ns()}", cert=(crt, key))
            close(p)
            return p.connect_rc is not None and p.connect_rc.is_failure

        wait_until(refused, 10, interval=0.2, what=f"revoked certificate of {name} refused")
    finally:
        fb.server.stop()


def test_a_dotted_name_revoked_before_names_were_quoted_is_still_revoked(tmp_path: Path) -> None:
    """revoked.toml once held a dotted name as nested tables; reading joins it back, the next write quotes it."""
    state = FleetState(tmp_path / "state").ensure()
    state.revoked_path.write_text('[device.qn-q01]\nserials = ["a1"]\n\n[device.fed.quang-ninh]\nserials = ["1f"]\n'
                                  '\n[device.svc.qms.qn-tthc]\nserials = []\n', encoding="utf-8")
    assert state.revoked() == {"qn-q01": [0xA1], "fed.quang-ninh": [0x1F], "svc.qms.qn-tthc": []}
    state.revoke_serial("fed.quang-ninh", 0x20)
    text = state.revoked_path.read_text(encoding="utf-8")
    assert '[device."fed.quang-ninh"]' in text and "[device.qn-q01]" in text
    assert state.revoked() == {"qn-q01": [0xA1], "fed.quang-ninh": [0x1F, 0x20], "svc.qms.qn-tthc": []}
    assert sorted(state.revoked_serials()) == [0x1F, 0x20, 0xA1]


def _login(fb: FleetBroker, user: str, password: str) -> bool:
    p = probe(fb, f"login-{user}-{time.monotonic_ns()}", user=user, password=password)
    ok = p.connect_rc is not None and not p.connect_rc.is_failure
    close(p)
    return ok


def test_offline_ingest_session_keeps_more_than_mosquittos_default_1000(broker: FleetBroker) -> None:
    """The rendered max_queued_messages: 1,500 ratings queued while the ingest is offline all arrive."""
    ing = probe(broker, "ing-queue", user="svc.ingest", password=broker.password("svc.ingest"), clean=False)
    mid = ing.client.subscribe(f"hl/v1/{X}/{A}/rating", qos=1)[1]
    wait_until(lambda: mid in ing.suback, 10, what="SUBACK")
    close(ing)
    dev = probe(broker, "a-queue", user=A, password=broker.password(A))
    n = 1500
    infos = [dev.client.publish(f"hl/v1/{X}/{A}/rating", f"q{i}".encode(), qos=1) for i in range(n)]
    wait_until(lambda: all(i.mid in dev.puback for i in infos), 30, what="1500 PUBACKs")
    close(dev)
    back = probe(broker, "ing-queue", user="svc.ingest", password=broker.password("svc.ingest"), clean=False)
    try:
        wait_until(lambda: len(back.payloads()) >= n, 30, what=f"{n} queued ratings")
        assert sorted(back.payloads()) == sorted(f"q{i}".encode() for i in range(n))
    finally:
        close(back)


def test_password_hashes_match_mosquitto_passwd(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "svc.ingest", "s3cret-Đà"], check=True,
                   capture_output=True)
    theirs = parse_passwd(path.read_text())["svc.ingest"]
    assert verify_password(theirs, "s3cret-Đà")
    assert not verify_password(theirs, "s3cret")
    ours = hash_password("s3cret-Đà")
    assert ours.startswith("$7$101$") and verify_password(ours, "s3cret-Đà")
    assert ours != hash_password("s3cret-Đà")  # fresh salt each time
