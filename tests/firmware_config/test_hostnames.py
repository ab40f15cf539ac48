"""One source of truth for the broker's host name: `hailong broker render --hostname` records it,
`hailong fleet provision --broker-out` into the same directory keeps the certificate's names and puts
the name in the bundle's URL, and a provisioned terminal connects by that name with full TLS checks."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import ssl
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from broker.mqtt.session import MqttSession
from broker.mqtt.settings import MqttSettings
from device.config import load_device_config
from device.runtime import DeviceRuntime
from hailong.cli import main
from hailong.localstack import MosquittoServer, free_port
from tests.support.waiting import wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "example-fleet"
pytestmark = pytest.mark.timeout(60)


def _loopback_name() -> str:
    """A host name other than `localhost` that this machine resolves to a loopback address (Debian puts
    the machine's own name in /etc/hosts), so the test dials a name, never 127.0.0.1."""
    name = socket.gethostname()
    addrs = {ai[4][0] for ai in socket.getaddrinfo(name, None, socket.AF_INET)}
    assert name != "localhost" and addrs and all(ipaddress.ip_address(a).is_loopback for a in addrs), \
        f"host name {name!r} must resolve to loopback (/etc/hosts), got {addrs}"
    return name


def _run(*args: str) -> str:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def _sans(cert: Path) -> list[str]:
    c = x509.load_pem_x509_certificate(cert.read_bytes())
    return c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def test_hostname_recorded_once_kept_by_provision_and_used_to_connect(tmp_path: Path) -> None:
    name = _loopback_name()
    addr = socket.getaddrinfo(name, None, socket.AF_INET)[0][4][0]
    fleet, out = tmp_path / "fleet", tmp_path / "broker"
    shutil.copytree(EXAMPLE, fleet)
    tls_port, cert_port = free_port(), free_port()
    # the technician's own deployment settings (paths on this host), kept by the render below
    (fleet / "broker.toml").write_text(
        f'bind = "{addr}"\nlog_dest = "file {tmp_path}/mosquitto.log"\n'
        + ('run_as = "root"\n' if os.geteuid() == 0 else ""), encoding="utf-8")
    _run("broker", "render", "--fleet", str(fleet), "--out", str(out), "--hostname", name,
         "--tls-port", str(tls_port), "--cert-port", str(cert_port), "--conf-dir", str(out),
         "--data-dir", str(out / "data"))
    recorded = tomllib.loads((fleet / "broker.toml").read_text(encoding="utf-8"))
    assert recorded["hostnames"] == [name] and recorded["bind"] == addr and recorded["cert_port"] == cert_port
    first_cert = (out / "server.crt").read_bytes()
    assert _sans(out / "server.crt") == [name]

    # step 2 of the technician's guide: provision into bundles, re-render the broker into the same dir
    output = _run("fleet", "--fleet", str(fleet), "provision", "dn-q02", "--out", str(tmp_path / "bundles"),
                  "--broker-out", str(out))
    assert "warning" not in output
    assert (out / "server.crt").read_bytes() == first_cert, "the server certificate was re-issued"
    assert _sans(out / "server.crt") == [name]
    bundle = tmp_path / "bundles" / "dn-q02"
    cfg_text = (bundle / "device.toml").read_text(encoding="utf-8")
    assert f'url = "mqtts://{name}:{cert_port}"' in cfg_text
    # a second provision (e.g. a new terminal next month) changes nothing either
    _run("fleet", "--fleet", str(fleet), "provision", "dn-q01", "--out", str(tmp_path / "bundles"),
         "--broker-out", str(out))
    assert (out / "server.crt").read_bytes() == first_cert

    (out / "data").mkdir(exist_ok=True)
    server = MosquittoServer(tmp_path / "run", port=cert_port, conf_text=(out / "mosquitto.conf").read_text())
    runtime = None
    try:
        server.start()
        etc = bundle / "rootfs" / "etc" / "hailong"
        # only the files' locations differ from the Pi; the URL is the bundle's own
        env = {"HAILONG_DEVICE__MQTT__CA_FILE": str(etc / "ca.crt"),
               "HAILONG_DEVICE__MQTT__CERT_FILE": str(etc / "device.crt"),
               "HAILONG_DEVICE__MQTT__KEY_FILE": str(etc / "device.key"),
               "HAILONG_DEVICE__OUTBOX__PATH": str(tmp_path / "outbox.sqlite3")}
        cfg = load_device_config(bundle / "device.toml", environ=env)
        assert cfg.mqtt.url == f"mqtts://{name}:{cert_port}" and not cfg.mqtt.tls_insecure

        def inline(fn: Callable[[], None]) -> None:
            fn()

        runtime = DeviceRuntime(cfg, inline).start()
        wait_until(lambda: runtime is not None and runtime.link.connected.is_set(), 15,
                   what=f"terminal connected to {name}")

        # the same credentials dialled by address fail verification: the name check is really on
        by_ip = MqttSettings.model_validate({"url": f"mqtts://{addr}:{cert_port}", "username": "dn-q02",
                                             "ca_file": str(etc / "ca.crt"), "cert_file": str(etc / "device.crt"),
                                             "key_file": str(etc / "device.key")})
        client = MqttSession(by_ip, "hostname-probe").client  # the production TLS setup, connected by hand
        with pytest.raises(ssl.SSLCertVerificationError):
            client.connect(addr, cert_port, keepalive=5)
    finally:
        if runtime is not None:
            runtime.stop()
        server.stop()


def test_legacy_fleet_keeps_the_issued_names(tmp_path: Path) -> None:
    """A fleet rendered before broker.toml recorded names: provisioning keeps the certificate's names."""
    fleet, out = tmp_path / "fleet", tmp_path / "broker"
    shutil.copytree(EXAMPLE, fleet)
    _run("broker", "render", "--fleet", str(fleet), "--out", str(out), "--hostname", "mqtt.qn.example.vn")
    (fleet / "broker.toml").unlink()  # as before this change: names only in the issued certificate
    first_cert = (out / "server.crt").read_bytes()
    _run("fleet", "--fleet", str(fleet), "provision", "qn-q01", "--out", str(tmp_path / "b"), "--broker-out", str(out))
    assert (out / "server.crt").read_bytes() == first_cert
    assert 'url = "mqtts://mqtt.qn.example.vn:8884"' in (tmp_path / "b/qn-q01/device.toml").read_text()


def test_bad_recorded_option_is_a_config_error(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, fleet)
    res = CliRunner().invoke(main, ["broker", "render", "--fleet", str(fleet), "--out", str(tmp_path / "o"),
                                    "--tls-port", "70000"])
    assert res.exit_code != 0
    assert "config error in" in res.output and "tls_port" in res.output
    assert not (fleet / "broker.toml").exists()
