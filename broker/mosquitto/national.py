"""The national broker's files: ``hailong national render --national DIR --out DIR``.

The Ministry keeps one directory::

    provinces.toml          [province.<id>] name, centres = [...]: who may send what
    national-broker.toml    how the national broker is deployed (NationalBrokerOptions, optional)
    state/                  its CA, server certificate, the bridges' certificates, svc.national's
                            password (never committed: state/.gitignore is "*")

and the render writes::

    mosquitto.conf          a TLS listener for the provinces' bridges (client certificate required,
                            CN fed.<province> = the username the ACL checks = the client id), a
                            loopback listener for the consumer, persistence with a 1 s autosave
    acl                     fed.<province> may write only national/<province>/#; svc.national reads
    passwd                  svc.national (the consumer)
    ca.crt server.crt server.key crl.pem
    centres.json            centre -> province: what the consumer accepts (broker/federation.py, load_centres)
    provinces/<id>/         the bundle to send to that province: national-ca.crt, bridge.crt,
                            bridge.key (0600). The province copies it to <fleet>/state/federation/.

Under MQTT 3.1.1 a publish the ACL refuses is dropped silently (the bridge cannot tell), so the
national dashboard's completeness panel is what shows a province whose data does not arrive.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

from pydantic import Field, ValidationError

from broker.contract import ID_PATTERN, MAX_PAYLOAD_BYTES
from broker.federation import NATIONAL_PREFIX, dump_centres, province_prefix
from broker.fleet.credentials import FleetState
from broker.fleet.passwd import render_passwd
from broker.fleet.pki import FleetCA, cert_common_name, cert_serial, write_private
from broker.kernel.settings import (
    ConfigError,
    Settings,
    load_model,
    read_config_text,
    validation_to_config_error,
)
from broker.mosquitto.federation import bridge_identity
from broker.mosquitto.render import access_conf, log_conf, persistence_conf

PROVINCES_FILE = "provinces.toml"
OPTIONS_FILE = "national-broker.toml"
NATIONAL_USER = "svc.national"


class Province(Settings):
    """One province of the federation (``[province.<id>]`` of provinces.toml)."""

    name: str = Field(min_length=1, max_length=64, description="Display name with full Vietnamese diacritics")
    centres: list[str] = Field(default_factory=list, description="Its centre ids ([a-z0-9-]{1,32}, unique "
                               "nationally): the national side refuses aggregates of any other centre")


class NationalBrokerOptions(Settings):
    """How the national broker is deployed (``national-broker.toml``)."""

    hostnames: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1"], min_length=1,
                                 description="Names the provinces' bridges use (server certificate SANs; each "
                                 "province's federation.national_host must be one of them)")
    bind: str = Field(default="", description="Address the TLS listener binds to; empty = all interfaces")
    tls_port: int = Field(default=8883, ge=1, le=65535, description="TLS + client-certificate listener (bridges)")
    local_port: int = Field(default=1883, ge=1, le=65535, description="Loopback listener for the national consumer")
    conf_dir: str = Field(default="/etc/mosquitto/hailong-national", description="Where these files live on the host")
    data_dir: str = Field(default="/var/lib/mosquitto", description="Persistence directory on the host")
    log_dest: str = Field(default="stderr", description="mosquitto log_dest")
    run_as: str | None = Field(default=None, description="`user` option; None keeps mosquitto's default")
    autosave_interval_s: int = Field(default=1, ge=1, le=60, description="Persistence interval: a SIGKILLed broker "
                                     "loses what arrived since (the prototype: 0 of 90 at 60 s, 90 of 90 at 1 s)")
    max_queued_messages: int = Field(default=0, ge=0, description="Queue bound of the consumer's session while it "
                                     "is down; 0 = none (35 days of 3,300 centres is ~9.6M messages, ~2.4 GB)")
    persistent_client_expiration: str = Field(default="60d", pattern=r"^\d+[hdwmy]$",
                                              description="Forget sessions of clients gone this long")


def load_provinces(national: Path) -> dict[str, Province]:
    path = national / PROVINCES_FILE
    text = read_config_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"cannot read: {exc}") from None
    extra = set(data) - {"province"}
    if extra:
        raise ConfigError(path, sorted(extra)[0], "unknown table (only [province.<id>])")
    out: dict[str, Province] = {}
    owner: dict[str, str] = {}
    id_re = re.compile(ID_PATTERN)
    for pid, body in (data.get("province") or {}).items():
        if not id_re.match(pid):
            raise ConfigError(path, f"province.{pid}", f"province id must match {ID_PATTERN}")
        try:
            prov = Province.model_validate(body)
        except ValidationError as exc:
            err = validation_to_config_error(path, exc)
            raise ConfigError(path, f"province.{pid}.{err.key}", err.problem) from None
        for c in prov.centres:
            if not id_re.match(c):
                raise ConfigError(path, f"province.{pid}.centres", f"centre {c!r} must match {ID_PATTERN}")
            if c in owner:
                raise ConfigError(path, f"province.{pid}.centres", f"centre {c!r} is also listed by {owner[c]!r}")
            owner[c] = pid
        out[pid] = prov
    if not out:
        raise ConfigError(path, "province", "no province listed")
    return out


def load_options(national: Path) -> NationalBrokerOptions:
    path = national / OPTIONS_FILE
    return load_model(NationalBrokerOptions, path if path.exists() else None, "HAILONG_NATIONAL_BROKER")


def render_conf(opt: NationalBrokerOptions) -> str:
    d = opt.conf_dir.rstrip("/")
    bind = f" {opt.bind}" if opt.bind else ""
    return "\n".join([
        "# hailong national broker -- generated by `hailong national render`; do not edit by hand.",
        *access_conf(opt.run_as, d),
        "",
        *persistence_conf(opt.data_dir, opt.autosave_interval_s, opt.persistent_client_expiration),
        f"max_queued_messages {opt.max_queued_messages}",
        "max_queued_bytes 0",
        f"message_size_limit {MAX_PAYLOAD_BYTES}",
        "",
        *log_conf(opt.log_dest),
        "",
        "# The provinces' bridges: a client certificate is required; its CN (fed.<province>) is the",
        "# username the ACL checks and the client id, so one province can neither write another's",
        "# prefix nor take over another's session.",
        f"listener {opt.tls_port}{bind}",
        f"cafile {d}/ca.crt",
        f"certfile {d}/server.crt",
        f"keyfile {d}/server.key",
        "tls_version tlsv1.2",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        f"crlfile {d}/crl.pem",
        "",
        "# The national consumer, on this host only.",
        f"listener {opt.local_port} 127.0.0.1",
        "use_username_as_clientid true",
    ]) + "\n"


def render_acl(provinces: dict[str, Province]) -> str:
    out = ["# hailong national broker ACL -- generated by `hailong national render`. Anything not listed is denied.",
           "", f"user {NATIONAL_USER}", f"topic read {NATIONAL_PREFIX}/#"]
    for pid in sorted(provinces):
        out += ["", f"# {provinces[pid].name}", f"user {bridge_identity(pid)}", f"topic write {province_prefix(pid)}#"]
    return "\n".join(out) + "\n"


def bridge_cert(state: FleetState, ca: FleetCA, province: str) -> tuple[Path, Path]:
    """The province's bridge key and certificate (CN fed.<province>), issued once and kept."""
    folder = state.pki_dir / "bridges"
    folder.mkdir(mode=0o700, exist_ok=True)
    key, crt = folder / f"{province}.key", folder / f"{province}.crt"
    if not (key.exists() and crt.exists()) or cert_common_name(crt.read_bytes()) != bridge_identity(province):
        key_pem, cert_pem, _ = ca.issue(bridge_identity(province))
        write_private(key, key_pem)
        crt.write_bytes(cert_pem)
    return key, crt


def revoke_bridge(national: Path, province: str, state: FleetState | None = None) -> int:
    """Revoke a province's bridge certificate: its serial goes into the CRL of the next render, which also
    issues a new one (send the province its new bundle). Returns the revoked serial."""
    state = state or FleetState(national / "state")
    folder = state.pki_dir / "bridges"
    crt = folder / f"{province}.crt"
    if not crt.exists():
        raise ConfigError(national / PROVINCES_FILE, f"province.{province}", "no bridge certificate issued to it")
    serial = cert_serial(crt.read_bytes())
    state.revoke_serial(bridge_identity(province), serial)
    crt.unlink()
    (folder / f"{province}.key").unlink(missing_ok=True)
    return serial


def render_national(national: Path, out: Path, state: FleetState | None = None,
                    opt: NationalBrokerOptions | None = None) -> list[Path]:
    """Write every national broker file and each province's bundle into ``out``; return the paths."""
    provinces = load_provinces(national)
    opt = opt or load_options(national)
    state = (state or FleetState(national / "state")).ensure()
    ca = FleetCA.load_or_create(state.pki_dir, "hailong national CA")
    state.password(NATIONAL_USER)  # generated on first render, kept afterwards
    key, crt = state.server_cert(opt.hostnames)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "mosquitto.conf": render_conf(opt).encode(),
        "acl": render_acl(provinces).encode(),
        "ca.crt": ca.cert_path.read_bytes(),
        "server.crt": crt.read_bytes(),
        "crl.pem": ca.crl(state.revoked_serials()),
        "centres.json": dump_centres({c: pid for pid, p in provinces.items() for c in p.centres}).encode(),
    }
    for name, data in files.items():
        (out / name).write_bytes(data)
    hashes = state.hashes()
    write_private(out / "passwd", render_passwd({NATIONAL_USER: hashes[NATIONAL_USER]}).encode())
    write_private(out / "server.key", key.read_bytes())
    paths = [out / n for n in (*files, "passwd", "server.key")]
    for pid in sorted(provinces):
        bkey, bcrt = bridge_cert(state, ca, pid)
        folder = out / "provinces" / pid
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ca.cert_path, folder / "national-ca.crt")
        shutil.copyfile(bcrt, folder / "bridge.crt")
        write_private(folder / "bridge.key", bkey.read_bytes())
        paths += [folder / "national-ca.crt", folder / "bridge.crt", folder / "bridge.key"]
    return paths
