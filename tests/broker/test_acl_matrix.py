"""Allow/deny matrix against a real Mosquitto running the rendered config.

Every role subscribes to every topic kind, then every role publishes to every
topic kind. A message from P on T must reach exactly the subscribers S with
read access, and only if P had write access: a denied publish must really not
arrive at an authorised subscriber. Completeness without sleeping: after all
matrix PUBACKs, an authorised publisher sends a sentinel on every topic; a
subscriber's queue is FIFO, so once its sentinel arrived, every earlier message
that was going to arrive has arrived.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from broker.fleet.credentials import FleetState
from tests.broker.fleet_broker import FleetBroker, Probe, close, probe, start_fleet_broker
from tests.support.waiting import wait_until

A, B, REVOKED = "qn-q01", "qn-q02", "qn-q03"  # devices of centre qn-tthc (counters q01, q02, q03)
X, Y = "qn-tthc", "dn-tthc"

TOPICS = {
    "A.rating": f"hl/v1/{X}/{A}/rating",
    "A.status": f"hl/v1/{X}/{A}/status",
    "A.config": f"hl/v1/{X}/{A}/config",
    "B.rating": f"hl/v1/{X}/{B}/rating",
    "B.status": f"hl/v1/{X}/{B}/status",
    "B.config": f"hl/v1/{X}/{B}/config",
    "qms.A-counter": f"hl/v1/{X}/qms/q01",
    "qms.B-counter": f"hl/v1/{X}/qms/q02",
    "qms.other-centre": f"hl/v1/{Y}/qms/q01",
    "web.X": f"hl/v1/{X}/web/rating",
    "web.Y": f"hl/v1/{Y}/web/rating",
}
# role -> topic kinds it may write / read; everything else must be denied.
WRITE = {
    "deviceA": {"A.rating", "A.status"},
    "deviceB": {"B.rating", "B.status"},
    "ingest": set(),
    "qmsX": {"qms.A-counter", "qms.B-counter"},
    "qmsY": {"qms.other-centre"},
    "admin": {"A.config", "B.config"},
    # the web rating service: the web rating topic of every QMS centre, nothing else
    "web": {"web.X", "web.Y"},
}
READ = {
    "deviceA": {"A.config", "qms.A-counter"},
    "deviceB": {"B.config", "qms.B-counter"},
    "ingest": {k for k in TOPICS if not k.endswith(".config")},
    "qmsX": set(),
    "qmsY": set(),
    "admin": {"A.status", "B.status", "A.config", "B.config"},
    "web": set(),
}
REFUSED = ("anonymous", "wrong-password", "revoked-password", "revoked-cert")


def _prepare(fleet: Path, state: FleetState) -> None:
    # the other centre gets a queue system too, so its QMS topic has an authorised writer
    text = (fleet / "centres.toml").read_text(encoding="utf-8")
    (fleet / "centres.toml").write_text(text.replace("has_qms = false", "has_qms = true"), encoding="utf-8")
    for dev in (A, B, REVOKED):
        state.password(dev)
        state.device_cert(dev)


@dataclass
class Revoked:
    """What a thief holds after the terminal was revoked: its old password and certificate."""

    password: str
    cert: tuple[Path, Path]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FleetBroker, Revoked]]:
    tmp = tmp_path_factory.mktemp("acl")
    fb = start_fleet_broker(tmp, _prepare)
    old = tmp / "revoked-cert"
    old.mkdir()
    for ext in ("key", "crt"):
        (old / f"{REVOKED}.{ext}").write_bytes((fb.state.pki_dir / "devices" / f"{REVOKED}.{ext}").read_bytes())
    revoked = Revoked(fb.password(REVOKED), (old / f"{REVOKED}.crt", old / f"{REVOKED}.key"))
    assert fb.state.revoke_device(REVOKED)
    fb.render()
    fb.server.restart()
    yield fb, revoked
    fb.server.stop()


@pytest.fixture
def broker(setup: tuple[FleetBroker, Revoked]) -> FleetBroker:
    return setup[0]


def _roles(fb: FleetBroker) -> dict[str, Probe]:
    st = fb.state
    dev_a = (st.pki_dir / "devices" / f"{A}.crt", st.pki_dir / "devices" / f"{A}.key")
    return {
        # device A in production mode (client certificate), device B in password mode
        "deviceA": probe(fb, "deviceA", cert=dev_a),
        "deviceB": probe(fb, "deviceB", user=B, password=fb.password(B)),
        "ingest": probe(fb, "ingest", user="svc.ingest", password=fb.password("svc.ingest")),
        "qmsX": probe(fb, "qmsX", user=f"svc.qms.{X}", password=fb.password(f"svc.qms.{X}")),
        "qmsY": probe(fb, "qmsY", user=f"svc.qms.{Y}", password=fb.password(f"svc.qms.{Y}")),
        "admin": probe(fb, "admin", user="svc.admin", password=fb.password("svc.admin")),
        "web": probe(fb, "web", user="svc.web", password=fb.password("svc.web")),
    }


def test_refused_roles_cannot_connect(setup: tuple[FleetBroker, Revoked]) -> None:
    broker, revoked = setup
    refused = {
        "anonymous": probe(broker, "anonymous"),
        "wrong-password": probe(broker, "wrong-password", user=A, password="not-the-password"),
        "revoked-password": probe(broker, "revoked-password", user=REVOKED, password=revoked.password),
        "revoked-cert": probe(broker, "revoked-cert", cert=revoked.cert),
    }
    try:
        assert set(refused) == set(REFUSED)
        for name, p in refused.items():
            assert p.connect_rc is not None and p.connect_rc.is_failure, f"{name} was accepted: {p.connect_rc}"
            assert not p.client.is_connected(), name
    finally:
        close(*refused.values())


def test_allow_deny_matrix(broker: FleetBroker) -> None:
    t0 = time.monotonic()
    roles = _roles(broker)
    try:
        for name, p in roles.items():
            assert p.connect_rc is not None and not p.connect_rc.is_failure, f"{name}: {p.connect_rc}"
        # 1. every role subscribes to every topic; SUBACK says granted or not authorised
        sub_mid: dict[tuple[str, str], int] = {}
        for name, p in roles.items():
            for kind, topic in TOPICS.items():
                rc, mid = p.client.subscribe(topic, qos=1)
                assert rc == mqtt.MQTT_ERR_SUCCESS and mid is not None
                sub_mid[(name, kind)] = mid
        wait_until(lambda: all(m in roles[n].suback for (n, _), m in sub_mid.items()), 10, what="SUBACKs")
        for (name, kind), mid in sub_mid.items():
            granted = not roles[name].suback[mid][0].is_failure
            # Mosquitto's acl_file grants every SUBSCRIBE and enforces `read` per message at
            # delivery, so only "readers get a grant" is asserted here; step 4 proves non-readers
            # never receive anything.
            if kind in READ[name]:
                assert granted, f"subscribe {name} -> {kind} refused"
        # 2. every role publishes to every topic (QoS1, not retained)
        pub: list[tuple[str, str, mqtt.MQTTMessageInfo]] = []
        for name, p in roles.items():
            for kind, topic in TOPICS.items():
                pub.append((name, kind, p.client.publish(topic, f"m|{name}|{kind}".encode(), qos=1)))
        wait_until(lambda: all(i.mid in roles[n].puback for n, _, i in pub), 10, what="PUBACKs")
        # 3. sentinels from an authorised writer of each topic, then wait for each reader's sentinel
        writer = {kind: next(n for n in WRITE if kind in WRITE[n]) for kind in TOPICS}
        for kind, topic in TOPICS.items():
            roles[writer[kind]].client.publish(topic, f"sentinel|{kind}".encode(), qos=1)
        def has_sentinel(name: str, kind: str) -> bool:
            return f"sentinel|{kind}".encode() in roles[name].payloads(TOPICS[kind])

        for name, kinds in READ.items():
            for kind in kinds:
                wait_until(functools.partial(has_sentinel, name, kind), 10, what=f"sentinel {kind} at {name}")
        # 4. the matrix: P's message on T reached S iff P may write T and S may read T
        cells = 0
        for sender in roles:
            for kind, topic in TOPICS.items():
                body = f"m|{sender}|{kind}".encode()
                got = {s for s, p in roles.items() if body in p.payloads(topic)}
                want = {s for s in roles if kind in READ[s]} if kind in WRITE[sender] else set()
                assert got == want, f"{sender} publishing {kind}: reached {sorted(got)}, expected {sorted(want)}"
                # v5 PUBACK tells the sender too (0x87 Not authorized for a denied publish)
                ack = next(roles[n].puback[i.mid] for n, k, i in pub if n == sender and k == kind)
                assert ack.is_failure == (kind not in WRITE[sender]), f"PUBACK {sender} {kind}: {ack}"
                cells += 1
        elapsed = time.monotonic() - t0
        print(f"\nACL matrix: {len(roles)} roles x {len(TOPICS)} topics x (publish, subscribe) = {cells * 2} "
              f"cells + {len(REFUSED)} refused roles, {elapsed:.2f}s")
    finally:
        close(*roles.values())


def test_ingest_shared_subscription_is_checked_against_the_underlying_topic(broker: FleetBroker) -> None:
    ingest = probe(broker, "ingest-share", user="svc.ingest", password=broker.password("svc.ingest"))
    dev_b = probe(broker, "devB-share", user=B, password=broker.password(B))
    admin = probe(broker, "admin-share", user="svc.admin", password=broker.password("svc.admin"))
    dev_a = probe(broker, "devA-share", user=A, password=broker.password(A))
    try:
        mids = [ingest.client.subscribe("$share/hl-ingest/hl/v1/+/+/rating", qos=1)[1],
                ingest.client.subscribe("$share/hl-ingest/hl/v1/+/+/config", qos=1)[1]]
        snoop = [dev_b.client.subscribe(f"$share/x/hl/v1/{X}/{A}/rating", qos=1)[1],
                 dev_b.client.subscribe(TOPICS["B.config"], qos=1)[1]]
        wait_until(lambda: all(m in ingest.suback for m in mids) and all(m in dev_b.suback for m in snoop), 10,
                   what="SUBACKs")
        dev_a.client.publish(TOPICS["A.rating"], b"rating-1", qos=1)
        admin.client.publish(TOPICS["A.config"], b"config-1", qos=1)
        admin.client.publish(TOPICS["B.config"], b"config-2", qos=1)
        wait_until(lambda: b"rating-1" in ingest.payloads(), 10, what="shared rating delivery to the ingest")
        wait_until(lambda: b"config-2" in dev_b.payloads(), 10, what="B's own config")
        # config-1 was processed before config-2 (same sender); rating-2 marks the ingest's queue
        dev_a.client.publish(TOPICS["A.rating"], b"rating-2", qos=1)
        wait_until(lambda: b"rating-2" in ingest.payloads(), 10, what="second rating at the ingest")
        # the ingest reads ratings through $share, but not configs; B cannot snoop A via $share
        assert b"config-1" not in ingest.payloads() and b"config-2" not in ingest.payloads()
        assert dev_b.payloads() == [b"config-2"]
    finally:
        close(ingest, dev_b, admin, dev_a)


# --------------------------------------------------------------------------- issue 12: sessions, retain, size

def _creds(fb: FleetBroker, device: str, listener: str) -> dict[str, object]:
    """A device's credentials for one listener: its certificate, or its username/password."""
    if listener == "certificate":
        d = fb.state.pki_dir / "devices"
        return {"cert": (d / f"{device}.crt", d / f"{device}.key")}
    return {"user": device, "password": fb.password(device)}


def _acked(p: Probe, infos: list[mqtt.MQTTMessageInfo]) -> None:
    wait_until(lambda: all(i.mid in p.puback for i in infos), 10, what=f"{p.name} PUBACKs")


# victim -> (its credentials, the topic it reads, the role that writes there, the ids an attacker would try)
VICTIMS = {
    "ingest": ("svc.ingest", "$share/hl-ingest/hl/v1/+/+/rating", TOPICS["B.rating"], ("svc.ingest", "hl-ingest-1")),
    "terminal": (B, TOPICS["qms.B-counter"], TOPICS["qms.B-counter"], (B,)),
}


@pytest.mark.parametrize("listener", ["password", "certificate"])
@pytest.mark.parametrize("victim", sorted(VICTIMS))
def test_a_device_cannot_discard_another_identity_s_session(broker: FleetBroker, victim: str,
                                                            listener: str) -> None:
    """Issue 12.1: device A connects with the victim's client id and clean start while the victim is
    offline; its queued messages must survive (the broker names A's session after A's username)."""
    user, sub_topic, pub_topic, stolen_ids = VICTIMS[victim]
    writer_user, writer_pw = (B, broker.password(B)) if victim == "ingest" else (
        f"svc.qms.{X}", broker.password(f"svc.qms.{X}"))
    v = probe(broker, f"{victim}-{listener}", user=user, password=broker.password(user), clean=False,
              client_id=stolen_ids[-1])
    mid = v.client.subscribe(sub_topic, qos=1)[1]
    wait_until(lambda: mid in v.suback, 10, what="victim SUBACK")
    assert not v.suback[mid][0].is_failure
    close(v)  # offline, session kept (expiry 3600 s)
    w = probe(broker, f"writer-{victim}-{listener}", user=writer_user, password=writer_pw)
    bodies = [f"queued|{victim}|{listener}|{i}".encode() for i in range(20)]
    _acked(w, [w.client.publish(pub_topic, b, qos=1) for b in bodies])
    attackers = [probe(broker, f"thief-{listener}-{cid}", client_id=cid, clean=True, **_creds(broker, A, listener))
                 for cid in stolen_ids]
    try:
        for a in attackers:  # accepted: A is a valid device, only its id is not what it asked for
            assert a.connect_rc is not None and not a.connect_rc.is_failure, a.connect_rc
        close(*attackers)
        back = probe(broker, f"{victim}-{listener}-back", user=user, password=broker.password(user), clean=False)
        wait_until(lambda: all(b in back.payloads() for b in bodies), 10, what="queued messages after the thief")
        assert sorted(back.payloads()) == sorted(bodies)
        close(back)
    finally:
        close(w)


@pytest.mark.parametrize("listener", ["password", "certificate"])
def test_a_device_cannot_kick_a_terminal_but_its_owner_can_reconnect(broker: FleetBroker, listener: str) -> None:
    """Client ids are global across listeners: A asking for B's id gets its own; B's own second
    connection (the other listener) still takes over, which proves the check can see a kick."""
    victim = probe(broker, f"victim-{listener}", user=B, password=broker.password(B), client_id=B)
    thief = probe(broker, f"kick-{listener}", client_id=B, **_creds(broker, A, listener))
    try:
        assert thief.connect_rc is not None and not thief.connect_rc.is_failure
        _acked(victim, [victim.client.publish(TOPICS["B.status"], b"still-here", qos=1)])  # a round trip after
        assert victim.disconnects == [] and victim.client.is_connected()
        owner = probe(broker, f"owner-{listener}", client_id="anything",
                      **_creds(broker, B, "certificate" if listener == "password" else "password"))
        wait_until(lambda: bool(victim.disconnects), 10, what="B's own new connection takes its session over")
        close(owner)
    finally:
        close(victim, thief)


def test_retained_ratings_and_qms_are_not_replayed_to_the_ingest(broker: FleetBroker) -> None:
    """Issue 12.2: the broker cannot refuse the retain flag (acl has no retain control, retain_available is
    global); the ingest's subscription options (retain handling 2, retain as published) are what holds."""
    from broker.mqtt.session import paho_subscriptions
    from ingest.config import IngestConfig
    from ingest.partition import subscriptions

    retained = {TOPICS["A.rating"]: b"retained-rating", TOPICS["qms.A-counter"]: b"retained-qms"}
    ing = probe(broker, "ret-ingest", user="svc.ingest", password=broker.password("svc.ingest"))
    dev_a = probe(broker, "ret-devA", user=A, password=broker.password(A))
    qms = probe(broker, "ret-qms", user=f"svc.qms.{X}", password=broker.password(f"svc.qms.{X}"))
    try:
        subs = paho_subscriptions(subscriptions(IngestConfig.model_validate({"share_group": "hl-ingest"}), None))
        mid = ing.client.subscribe(subs)[1]
        wait_until(lambda: mid in ing.suback, 10, what="ingest SUBACK")
        _acked(dev_a, [dev_a.client.publish(TOPICS["A.rating"], retained[TOPICS["A.rating"]], qos=1, retain=True)])
        _acked(qms, [qms.client.publish(TOPICS["qms.A-counter"], retained[TOPICS["qms.A-counter"]], qos=1,
                                        retain=True)])
        # live: delivered once WITH its retain flag, so the ingest can reject it
        wait_until(lambda: len(ing.retained) == 2, 10, what="live retained messages flagged")
        assert sorted(ing.retained) == sorted(retained.items())
        close(ing)
        # the broker stored them: a plain subscriber gets both replayed ...
        plain = probe(broker, "ret-plain", user="svc.ingest", password=broker.password("svc.ingest"))
        plain.client.subscribe([(TOPICS["A.rating"], 1), (TOPICS["qms.A-counter"], 1)])
        wait_until(lambda: len(plain.retained) == 2, 10, what="retained replay to a plain subscription")
        close(plain)
        # ... the ingest's subscriptions never do (sentinel: a fresh live message arrives after any replay)
        again = probe(broker, "ret-again", user="svc.ingest", password=broker.password("svc.ingest"))
        mid = again.client.subscribe(subs)[1]
        wait_until(lambda: mid in again.suback, 10, what="ingest SUBACK again")
        _acked(dev_a, [dev_a.client.publish(TOPICS["A.rating"], b"sentinel-live", qos=1)])
        wait_until(lambda: b"sentinel-live" in again.payloads(), 10, what="live sentinel")
        assert again.payloads() == [b"sentinel-live"] and again.retained == []
        close(again)
    finally:
        # clear what this test retained (an empty retained publish), for the other tests of the module
        _acked(dev_a, [dev_a.client.publish(TOPICS["A.rating"], b"", qos=1, retain=True)])
        _acked(qms, [qms.client.publish(TOPICS["qms.A-counter"], b"", qos=1, retain=True)])
        close(dev_a, qms)


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311])
def test_oversize_packets_are_refused_by_the_broker(broker: FleetBroker, protocol: int) -> None:
    """Issue 12.6: message_size_limit / max_packet_size rendered from the contract's limit."""
    from broker.contract import MAX_PAYLOAD_BYTES
    from broker.mosquitto.render import MAX_PACKET_BYTES

    conf = (broker.out / "mosquitto.conf").read_text()
    assert f"message_size_limit {MAX_PAYLOAD_BYTES}\n" in conf and f"max_packet_size {MAX_PACKET_BYTES}\n" in conf
    ing = probe(broker, f"big-ingest-{protocol}", user="svc.ingest", password=broker.password("svc.ingest"))
    sender: list[Probe] = []

    def device_b(step: str) -> Probe:
        sender.append(probe(broker, f"big-{step}-{protocol}", user=B, password=broker.password(B), protocol=protocol))
        return sender[-1]

    try:
        mid = ing.client.subscribe(TOPICS["B.rating"], qos=1)[1]
        wait_until(lambda: mid in ing.suback, 10, what="SUBACK")
        limit = b"L" * MAX_PAYLOAD_BYTES          # exactly the contract's limit: delivered
        over = b"O" * (MAX_PAYLOAD_BYTES + 1)     # one byte more: refused, never forwarded
        ok = device_b("limit")
        _acked(ok, [ok.client.publish(TOPICS["B.rating"], limit, qos=1)])
        wait_until(lambda: limit in ing.payloads(), 10, what="payload at the limit")
        close(ok)
        refused = device_b("over")
        info = refused.client.publish(TOPICS["B.rating"], over, qos=1)
        # 3.1.1: a plain PUBACK (the QoS flow completes, nothing is forwarded). v5: Mosquitto 2.0.11 answers
        # with reason 0x95 "packet too large", which paho cannot parse in a PUBACK: the sender drops the
        # connection. Either way the payload is not forwarded (the sentinel below proves it).
        wait_until(lambda: info.mid in refused.puback or bool(refused.disconnects), 10, what="refusal")
        close(refused)
        # 10 MB: the broker disconnects the sender on the packet header, before reading the body
        huge = device_b("huge")
        huge.client.publish(TOPICS["B.rating"], b"X" * 10_000_000, qos=1)
        wait_until(lambda: bool(huge.disconnects), 20, what="oversize sender disconnected")
        close(huge)
        late = device_b("after")
        _acked(late, [late.client.publish(TOPICS["B.rating"], b"after", qos=1)])
        wait_until(lambda: b"after" in ing.payloads(), 10, what="the broker still serves the ingest")
        assert ing.payloads() == [limit, b"after"] and ing.disconnects == []
    finally:
        close(ing, *sender)
