"""The province broker's bridge to the national broker (``[federation]`` in ``<fleet>/broker.toml``).

``hailong broker render`` adds, when the section is present:

- a Mosquitto bridge ``connection national`` that carries the local topics ``fed/#`` (written by
  ``hailong federation publish``) to ``national/<province>/#`` on the national broker, with the
  settings the issue-25 prototype established by measurement:
  MQTT 3.1.1 (an MQTT 5 bridge gains nothing one-way), ``cleansession false`` (the national
  broker keeps the bridge's session), ``bridge_outgoing_retain false`` (a retained message
  would become retained nationally), ``notifications_local_only true`` (the national ACL
  refuses a bridge's ``$SYS`` notifications), a remote prefix WITH its trailing slash (without
  it Mosquitto refuses the mapping and the messages are lost), TLS with the client certificate
  ``fed.<province>`` the Ministry issued (no password in this file), and ``address`` = a name in
  the national broker's certificate (2.0.11 cannot be told to verify another name);
- the publisher's broker user ``svc.federation`` (write ``fed/#`` only) in passwd and ACL;
- a smaller ``autosave_interval``: a SIGKILLed broker loses what it queued since its last save
  (the prototype: 0 of 90 at 60 s, 90 of 90 at 1 s); the nightly re-send heals the rest.

Queue bounds. While the national broker is away the bridge's queue holds what the timers
publish: per day 24 hourly runs x 2 days + 1 nightly run x 35 days = 83 messages per centre.
A 35-day outage is therefore 2,905 messages per centre (~250 B each); the render refuses
``max_queued_messages`` / ``max_queued_bytes`` below that for the registry's centres, because
Mosquitto drops the NEWEST messages silently once a bound is reached while the publisher
already had its acknowledgement (docs/national.md).

The bundle the Ministry sends a province (``hailong national render``, national-ca.crt,
fed.<province>.crt, fed.<province>.key) is read from ``bundle`` and copied next to the
other broker files (the key 0600).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import Field

from broker.contract import ID_PATTERN
from broker.federation import LOCAL_PREFIX, province_prefix
from broker.fleet.pki import cert_common_name, write_private
from broker.kernel.settings import ConfigError, Settings

FEDERATION_USER = "svc.federation"
BRIDGE_NAME = "national"
RECENT_RUNS_PER_DAY, RECENT_DAYS, FULL_RUNS_PER_DAY, FULL_DAYS = 24, 2, 1, 35
MESSAGES_PER_CENTRE_DAY = RECENT_RUNS_PER_DAY * RECENT_DAYS + FULL_RUNS_PER_DAY * FULL_DAYS  # 83
OUTAGE_DAYS = 35
MESSAGE_BYTES = 300  # a CentreDay is ~250 B of JSON + topic; rounded up for the byte bound
BUNDLE_FILES = ("national-ca.crt", "bridge.crt", "bridge.key")


def bridge_identity(province: str) -> str:
    """The bridge's certificate CN and client id on the national broker."""
    return f"fed.{province}"


def backlog_messages(centres: int, days: int = OUTAGE_DAYS) -> int:
    """Messages the bridge queues for ``centres`` centres during a national outage of ``days``."""
    return centres * days * MESSAGES_PER_CENTRE_DAY


class FederationOptions(Settings):
    """``[federation]`` of broker.toml: this province's bridge to the national broker."""

    province: str = Field(pattern=ID_PATTERN, description="This province's id; the national broker lets the bridge "
                          "write only national/<province>/#")
    national_host: str = Field(min_length=1, description="The national broker's host name: must be a name in "
                               "its certificate (Mosquitto 2.0.11 verifies the address given here)")
    national_port: int = Field(default=8883, ge=1, le=65535, description="The national broker's TLS port")
    bundle: str = Field(default="state/federation", description="Directory (relative to the fleet) holding the "
                        "files the Ministry sent: national-ca.crt, bridge.crt, bridge.key (CN fed.<province>)")
    autosave_interval_s: int = Field(default=5, ge=1, le=60, description="Broker persistence interval while "
                                     "federated (the lower of this and autosave_interval_s applies)")
    keepalive_s: int = Field(default=60, ge=5, le=600, description="Bridge keepalive toward the national broker")
    restart_timeout_s: tuple[int, int] = Field(
        default=(5, 30), description="Bridge reconnect delay: base and cap of Mosquitto's randomised backoff, "
        "seconds; the cap bounds how long a returning national broker waits for a province")


def autosave_interval(configured: int, fed: FederationOptions | None) -> int:
    return configured if fed is None else min(configured or fed.autosave_interval_s, fed.autosave_interval_s)


def check_queue_bounds(path: Path, max_messages: int, max_bytes: int, centres: int) -> None:
    """Refuse queue bounds that would silently drop part of a 35-day backlog (0 = unbounded)."""
    need = backlog_messages(centres)
    if max_messages and max_messages < need:
        raise ConfigError(path, "max_queued_messages", f"{max_messages:,} is below the {need:,} messages a "
                          f"{OUTAGE_DAYS}-day national outage queues for {centres} centres (0 = unbounded)")
    if max_bytes and max_bytes < need * MESSAGE_BYTES:
        raise ConfigError(path, "max_queued_bytes", f"{max_bytes:,} is below the {need * MESSAGE_BYTES:,} bytes a "
                          f"{OUTAGE_DAYS}-day national outage queues for {centres} centres (0 = unbounded)")


def bridge_conf(fed: FederationOptions, conf_dir: str) -> list[str]:
    d = f"{conf_dir.rstrip('/')}/federation"
    ident = bridge_identity(fed.province)
    return [
        "",
        f"# Bridge to the national broker (docs/national.md): {LOCAL_PREFIX}/# here is "
        f"{province_prefix(fed.province)}# there.",
        "# Store and forward: queued while the national broker is away, sent in order when it is back.",
        f"connection {BRIDGE_NAME}",
        f"address {fed.national_host}:{fed.national_port}",
        "bridge_protocol_version mqttv311",
        f"bridge_cafile {d}/national-ca.crt",
        f"bridge_certfile {d}/bridge.crt",
        f"bridge_keyfile {d}/bridge.key",
        "bridge_tls_version tlsv1.2",
        "bridge_insecure false",
        f"remote_clientid {ident}",
        "cleansession false",
        "notifications true",
        "notifications_local_only true",
        "bridge_outgoing_retain false",
        "try_private false",
        "start_type automatic",
        f"restart_timeout {fed.restart_timeout_s[0]} {fed.restart_timeout_s[1]}",
        f"keepalive_interval {fed.keepalive_s}",
        f"topic # out 1 {LOCAL_PREFIX}/ {province_prefix(fed.province)}",
    ]


def federation_acl() -> list[str]:
    return ["", "# hailong federation publish: the daily aggregates, nothing else", f"user {FEDERATION_USER}",
            f"topic write {LOCAL_PREFIX}/#"]


def federation_files(fleet: Path, fed: FederationOptions, out: Path, max_queued_messages: int,
                     max_queued_bytes: int, centres: int) -> list[Path]:
    """Check the queue bounds, then copy the Ministry's bundle into ``out/federation``."""
    check_queue_bounds(fleet / "broker.toml", max_queued_messages, max_queued_bytes, centres)
    return copy_bundle(fleet, fed, out)


def copy_bundle(fleet: Path, fed: FederationOptions, out: Path) -> list[Path]:
    """The Ministry's files into ``out/federation``; a missing one, or another province's, is a ConfigError."""
    src = (fleet / fed.bundle) if not Path(fed.bundle).is_absolute() else Path(fed.bundle)
    dest = out / "federation"
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name in BUNDLE_FILES:
        if not (src / name).is_file():
            raise ConfigError(fleet / "broker.toml", "federation.bundle",
                              f"{src / name} is missing: ask the Ministry for this province's bridge bundle "
                              f"(`hailong national render` writes it) and copy it there")
        data = (src / name).read_bytes()
        if name == "bridge.crt" and cert_common_name(data) != bridge_identity(fed.province):
            raise ConfigError(fleet / "broker.toml", "federation.province",
                              f"{src / name} is issued to {cert_common_name(data)!r}, not "
                              f"{bridge_identity(fed.province)!r}: the bundle of another province")
        if name.endswith(".key"):
            write_private(dest / name, data)
        else:
            shutil.copyfile(src / name, dest / name)
        written.append(dest / name)
    return written
