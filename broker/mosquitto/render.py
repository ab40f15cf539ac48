"""Render a centre's Mosquitto files from the fleet registry and its credentials.

``hailong broker render --fleet DIR --out DIR`` writes::

    mosquitto.conf  two TLS listeners (password / client certificate), no anonymous access,
                    persistence, queue limits sized so an offline ingest loses nothing
    passwd          service users (svc.ingest[.N] per ingest instance, .w<k> per worker, each its
                    own secret) + provisioned,
                    non-retired, non-revoked devices ($7$ hashes)
    acl             least-privilege rules (broker/acl.py)
    ca.crt server.crt server.key crl.pem

The conf names the files by where they will be on the broker host
(``conf_dir``, e.g. /etc/mosquitto/hailong or /mosquitto/config in the container),
so the output directory can be copied or mounted as is. Options come from
``<fleet>/broker.toml`` (all optional) and CLI flags.

``<fleet>/broker.toml`` is the one source of truth for how the broker is reached:
a flag given to ``hailong broker render`` (``--hostname``, ports, directories) is
recorded there, so every later render -- including the ``--broker-out`` re-renders
of ``hailong fleet provision/revoke/...`` -- keeps the server certificate's names
and the bundles' broker URL. A fleet whose certificate predates broker.toml keeps
the names it was issued for (``state/pki/server.names``), never the localhost default.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from pydantic import Field, ValidationError

from broker.contract import MAX_PAYLOAD_BYTES
from broker.fleet.credentials import FleetState
from broker.fleet.passwd import render_passwd
from broker.fleet.pki import write_private
from broker.fleet.registry import Registry
from broker.identities import ingest_instance_users, worker_user
from broker.kernel.settings import ConfigError, Settings, load_model, validation_to_config_error
from broker.mosquitto.acl import render_acl, service_users
from broker.mosquitto.federation import (
    FEDERATION_USER,
    FederationOptions,
    autosave_interval,
    bridge_conf,
    federation_acl,
    federation_files,
)

BROKER_FILE = "broker.toml"
# Room for the rest of a PUBLISH around a contract payload: fixed header (5), topic (2 + ~80),
# packet id (2), MQTT 5 properties. CONNECT (credentials, a status LWT) fits in it as well.
PACKET_OVERHEAD_BYTES = 1024
MAX_PACKET_BYTES = MAX_PAYLOAD_BYTES + PACKET_OVERHEAD_BYTES


class RenderOptions(Settings):
    """How the broker of this fleet is deployed (``<fleet>/broker.toml``)."""

    hostnames: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1"], min_length=1,
                                 description="Names/IPs devices use to reach the broker (server cert SANs)")
    bind: str = Field(default="", description="Address the listeners bind to; empty = all interfaces")
    tls_port: int = Field(default=8883, ge=1, le=65535, description="TLS + username/password listener")
    cert_port: int = Field(default=8884, ge=1, le=65535,
                           description="TLS + client-certificate listener (CN = device id), production mode")
    local_port: int | None = Field(default=None, ge=1, le=65535,
                                   description="Plain listener on 127.0.0.1 for services on the broker host")
    conf_dir: str = Field(default="/etc/mosquitto/hailong", description="Where these files live on the broker")
    data_dir: str = Field(default="/var/lib/mosquitto", description="Persistence directory on the broker")
    log_dest: str = Field(default="stderr", description="mosquitto log_dest (stderr goes to journald/docker)")
    run_as: str | None = Field(default=None, description="`user` option; None keeps mosquitto's default")
    max_inflight_messages: int = Field(default=1000, ge=0, description="QoS1 in flight per MQTT 3.1.1 client")
    max_queued_messages: int = Field(
        default=1_000_000, ge=0,
        description="Queued QoS1 per offline persistent session; the default 1000 drops ratings "
                    "while the ingest is down (1,000 devices x 1,000 ratings backlog)")
    max_queued_bytes: int = Field(default=0, ge=0, description="Byte cap for the same queue; 0 = none")
    persistent_client_expiration: str = Field(default="30d", pattern=r"^\d+[hdwmy]$",
                                              description="Forget sessions of clients gone this long")
    autosave_interval_s: int = Field(default=60, ge=0, description="Persistence snapshot interval")
    ingest_instances: int = Field(
        default=1, ge=1, le=32,
        description="Ingest instances, each judging its partition of the centres (ratings subscribed directly, "
                    "statuses through $share/<share_group>); each gets its own broker user "
                    "(svc.ingest, svc.ingest.2, ...) because the broker sets client id = username")
    ingest_workers: int = Field(
        default=4, ge=1, le=64,
        description="Worker processes per ingest instance (`workers` in ingest.toml; 'auto' = one per core of "
                    "the ingest host): each gets its own user, svc.ingest.w1 ... (the first keeps svc.ingest), "
                    "with its own secret in <state>/secrets/<user>.password (the ingest's worker_secrets_dir); "
                    "the ingest refuses to start more workers than this")
    federation: FederationOptions | None = Field(
        default=None, description="The bridge to the national broker (broker/mosquitto/federation.py, "
        "docs/national.md); absent = this province sends nothing")


def load_options(fleet: Path, state: FleetState | None = None, **overrides: object) -> RenderOptions:
    """broker.toml + env + ``overrides``; without configured hostnames, those of the issued certificate."""
    path = fleet / BROKER_FILE
    base = load_model(RenderOptions, path if path.exists() else None, "HAILONG_BROKER")
    opt = base.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    if "hostnames" not in base.model_fields_set and overrides.get("hostnames") is None:
        issued = (state or FleetState.for_fleet(fleet)).server_names()
        if issued:
            opt = opt.model_copy(update={"hostnames": issued})
    return opt


def save_options(fleet: Path, **changes: object) -> Path | None:
    """Record the given (non-None) options in ``<fleet>/broker.toml``, keeping its other keys.

    Validated first: a bad value raises ConfigError and the file is left as it was."""
    updates = {k: v for k, v in changes.items() if v is not None}
    if not updates:
        return None
    path = fleet / BROKER_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, None, f"cannot read: {exc}") from None
    data.update(updates)
    try:
        RenderOptions.model_validate(data)
    except ValidationError as exc:
        raise validation_to_config_error(path, exc) from None
    lines = ["# How this fleet's broker is deployed (broker/mosquitto/render.py, RenderOptions).",
             "# Written by `hailong broker render`; every later render and provision reads it."]
    lines += [f"{k} = {_toml(v)}" for k, v in data.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):  # a table ([federation]) written inline: one line, still TOML
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid TOML basic string


def access_conf(run_as: str | None, conf_dir: str) -> list[str]:
    """Every hailong broker: no anonymous client, one passwd and one ACL for all listeners."""
    return [
        *([f"user {run_as}"] if run_as else []),
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {conf_dir}/passwd",
        f"acl_file {conf_dir}/acl",
    ]


def persistence_conf(data_dir: str, autosave_interval_s: int, client_expiration: str) -> list[str]:
    """Every hailong broker persists its queues (a QoS 1 message PUBACKed is the broker's to keep)."""
    return [
        "persistence true",
        f"persistence_location {data_dir.rstrip('/')}/",
        f"autosave_interval {autosave_interval_s}",
        f"persistent_client_expiration {client_expiration}",
    ]


def log_conf(log_dest: str) -> list[str]:
    """What every hailong broker logs (the province's and the national one): errors, warnings, notices
    and each connection, with ISO timestamps, to ``log_dest``."""
    return [
        f"log_dest {log_dest}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
    ]


def render_conf(opt: RenderOptions) -> str:
    d = opt.conf_dir.rstrip("/")
    bind = f" {opt.bind}" if opt.bind else ""
    tls = [f"cafile {d}/ca.crt", f"certfile {d}/server.crt", f"keyfile {d}/server.key", "tls_version tlsv1.2"]
    lines = [
        "# hailong broker -- generated by `hailong broker render`; do not edit by hand.",
        "# Reload passwd/acl/certificates after re-rendering: kill -HUP $(pidof mosquitto)",
        "# (systemctl reload mosquitto / docker kill -s HUP mosquitto).",
        *access_conf(opt.run_as, d),
        "",
        *persistence_conf(opt.data_dir, autosave_interval(opt.autosave_interval_s, opt.federation),
                          opt.persistent_client_expiration),
        "",
        "# Ratings are QoS1 and leave the terminal's outbox on PUBACK: from then on the broker",
        "# queue is the only copy while the ingest is down. The default cap (1000) would drop them.",
        f"max_queued_messages {opt.max_queued_messages}",
        f"max_queued_bytes {opt.max_queued_bytes}",
        f"max_inflight_messages {opt.max_inflight_messages}",
        "set_tcp_nodelay true",
        "",
        "# Payload limits at the broker (the contract's limit): a bigger payload is refused with an",
        "# error PUBACK and never queued; a bigger packet disconnects its sender before it is read.",
        f"message_size_limit {MAX_PAYLOAD_BYTES}",
        f"max_packet_size {MAX_PACKET_BYTES}",
        "",
        *log_conf(opt.log_dest),
        "",
        "# Username/password over TLS: service users, and terminals in password mode. The client id",
        "# is forced to the username (client ids are global across listeners), so no credential can",
        "# take over or discard another identity's session: not the ingest's, not a terminal's.",
        f"listener {opt.tls_port}{bind}",
        *tls,
        "require_certificate false",
        "use_username_as_clientid true",
        "",
        "# Client certificates (production): CN = device id is the username the ACL checks,",
        "# and the client id is forced to it, so no one can take over another terminal's session.",
        f"listener {opt.cert_port}{bind}",
        *tls,
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        f"crlfile {d}/crl.pem",
    ]
    if opt.local_port:
        lines += ["", "# Plain MQTT for services on this host only (ingest, QMS adapter).",
                  f"listener {opt.local_port} 127.0.0.1", "use_username_as_clientid true"]
    if opt.federation:  # after the listeners: every line after `connection` belongs to the bridge
        lines += bridge_conf(opt.federation, opt.conf_dir)
    return "\n".join(lines) + "\n"


def render_broker(registry: Registry, state: FleetState, out: Path, opt: RenderOptions) -> list[Path]:
    """Write every broker file into ``out``; return the paths. Secrets are 0600."""
    state.ensure()
    revoked = {d for d in registry.devices if state.is_revoked(d)}
    devices = [d for d in registry.active_devices() if d.id not in revoked]
    users = service_users(registry, opt.ingest_instances, opt.ingest_workers)
    users += [FEDERATION_USER] if opt.federation else []
    for instance in ingest_instance_users(opt.ingest_instances):
        for k in range(1, opt.ingest_workers):
            state.own_password(worker_user(instance, k), instance)  # one secret and one session per worker
    for user in users:
        state.password(user)  # generated on first render, kept afterwards
    hashes = state.hashes()
    wanted = set(users) | {d.id for d in devices}
    # the bridge's bundle and queue bounds first: a refusal leaves nothing half rendered
    bridge = [] if opt.federation is None else federation_files(
        registry.root, opt.federation, out, opt.max_queued_messages, opt.max_queued_bytes,
        sum(c.province == opt.federation.province for c in registry.centres.values()))
    out.mkdir(parents=True, exist_ok=True)
    ca = state.ca()
    key, crt = state.server_cert(opt.hostnames)
    files = {
        "mosquitto.conf": render_conf(opt).encode(),
        "acl": (render_acl(registry, devices, opt.ingest_instances, opt.ingest_workers)
                + ("\n".join(federation_acl()) + "\n" if opt.federation else "")).encode(),
        "ca.crt": ca.cert_path.read_bytes(),
        "server.crt": crt.read_bytes(),
        "crl.pem": ca.crl(state.revoked_serials()),
    }
    for name, data in files.items():
        (out / name).write_bytes(data)
    write_private(out / "passwd", render_passwd({u: h for u, h in hashes.items() if u in wanted}).encode())
    write_private(out / "server.key", key.read_bytes())
    return [out / n for n in (*files, "passwd", "server.key")] + bridge
