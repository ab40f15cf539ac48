"""What `hailong broker render` ([federation]) and `hailong national render` write, and what they refuse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.fleet.credentials import FleetState
from broker.fleet.pki import cert_common_name
from broker.fleet.registry import load_registry
from broker.kernel.settings import ConfigError
from broker.mosquitto.federation import backlog_messages
from broker.mosquitto.national import render_national
from broker.mosquitto.render import load_options, render_broker, save_options
from hailong.cli import main

from .support import write_fleet


def _ministry(tmp_path: Path) -> Path:
    d = tmp_path / "ministry"
    d.mkdir()
    (d / "provinces.toml").write_text('[province.hue]\nname = "Huế"\ncentres = ["hue-1", "hue-2"]\n\n'
                                      '[province.hcm]\nname = "TP. Hồ Chí Minh"\ncentres = ["hcm-1"]\n',
                                      encoding="utf-8")
    (d / "national-broker.toml").write_text('hostnames = ["national.example.vn"]\n', encoding="utf-8")
    return d


def test_national_render(tmp_path: Path) -> None:
    d = _ministry(tmp_path)
    result = CliRunner().invoke(main, ["national", "render", "--national", str(d), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    acl = (out / "acl").read_text()
    assert "user fed.hue\ntopic write national/hue/#" in acl and "user fed.hcm\ntopic write national/hcm/#" in acl
    assert "user svc.national\ntopic read national/#" in acl and "readwrite" not in acl
    conf = (out / "mosquitto.conf").read_text()
    for line in ("allow_anonymous false", "require_certificate true", "use_identity_as_username true",
                 "use_username_as_clientid true", "autosave_interval 1", "listener 1883 127.0.0.1"):
        assert line in conf.splitlines()
    assert json.loads((out / "centres.json").read_text()) == {"v": 1, "centres": {"hcm-1": "hcm", "hue-1": "hue",
                                                                                  "hue-2": "hue"}}
    assert (out / "passwd").read_text().startswith("svc.national:$7$")
    for p in ("hue", "hcm"):
        assert cert_common_name((out / "provinces" / p / "bridge.crt").read_bytes()) == f"fed.{p}"
        assert (out / "provinces" / p / "bridge.key").stat().st_mode & 0o077 == 0
    # a second render keeps the bridges' certificates (the provinces hold copies)
    before = (out / "provinces" / "hue" / "bridge.crt").read_bytes()
    render_national(d, out)
    assert (out / "provinces" / "hue" / "bridge.crt").read_bytes() == before


@pytest.mark.parametrize(("text", "key", "problem"), [
    ('[province.hue]\nname = "Huế"\ncentres = ["c1"]\n[province.hcm]\nname = "HCM"\ncentres = ["c1"]\n',
     "province.hcm.centres", "also listed by 'hue'"),
    ('[province.hue]\nname = "Huế"\ncentres = ["C 1"]\n', "province.hue.centres", "must match"),
    ('[province.hue]\nname = "Huế"\nfoo = 1\n', "province.hue.foo", "Extra inputs"),
    ("", "province", "no province"),
])
def test_provinces_errors_name_the_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "provinces.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        render_national(d, tmp_path / "out")
    assert exc.value.key == key and problem in exc.value.problem and "provinces.toml" in exc.value.path


def _province_fleet(tmp_path: Path, ministry_out: Path, extra: str = "", province: str = "hue") -> Path:
    fleet = write_fleet(tmp_path / "fleet", {"hue-1": "hue", "hue-2": "hue"})
    bundle = fleet / "state" / "federation"
    bundle.mkdir(parents=True)
    for name in ("national-ca.crt", "bridge.crt", "bridge.key"):
        shutil.copy(ministry_out / "provinces" / province / name, bundle / name)
    (fleet / "broker.toml").write_text(f'{extra}\n[federation]\nprovince = "hue"\n'
                                       'national_host = "national.example.vn"\n', encoding="utf-8")
    return fleet


def test_province_bridge_render(tmp_path: Path) -> None:
    render_national(_ministry(tmp_path), tmp_path / "nat")
    fleet = _province_fleet(tmp_path, tmp_path / "nat")
    state = FleetState.for_fleet(fleet)
    out = tmp_path / "out"
    paths = render_broker(load_registry(fleet), state, out, load_options(fleet, state))
    assert out / "federation" / "bridge.key" in paths
    conf = (out / "mosquitto.conf").read_text().splitlines()
    bridge = conf[conf.index("connection national"):]
    for line in ("address national.example.vn:8883", "bridge_protocol_version mqttv311", "remote_clientid fed.hue",
                 "cleansession false", "notifications_local_only true", "bridge_outgoing_retain false",
                 "topic # out 1 fed/ national/hue/", "bridge_insecure false",
                 "bridge_certfile /etc/mosquitto/hailong/federation/bridge.crt"):
        assert line in bridge
    assert "autosave_interval 5" in conf  # the federation's, below the default 60
    assert not any(ln.startswith("listener") for ln in bridge)  # the bridge section comes last
    acl = (out / "acl").read_text()
    assert "user svc.federation\ntopic write fed/#" in acl
    assert "svc.federation:" in (out / "passwd").read_text()
    assert (out / "federation" / "bridge.key").stat().st_mode & 0o077 == 0
    # a flag recorded by `hailong broker render` keeps the [federation] table (written inline)
    save_options(fleet, tls_port=9883)
    again = load_options(fleet, state)
    assert again.tls_port == 9883 and again.federation is not None and again.federation.province == "hue"


def test_queue_bounds_below_a_35_day_backlog_are_refused(tmp_path: Path) -> None:
    render_national(_ministry(tmp_path), tmp_path / "nat")
    need = backlog_messages(2)
    assert need == 2 * 35 * 83
    fleet = _province_fleet(tmp_path, tmp_path / "nat", extra=f"max_queued_messages = {need - 1}")
    state = FleetState.for_fleet(fleet)
    with pytest.raises(ConfigError) as exc:
        render_broker(load_registry(fleet), state, tmp_path / "out", load_options(fleet, state))
    assert exc.value.key == "max_queued_messages" and f"{need:,}" in exc.value.problem
    assert not (tmp_path / "out" / "mosquitto.conf").exists()  # nothing half rendered


def test_another_provinces_bundle_or_none_is_refused(tmp_path: Path) -> None:
    render_national(_ministry(tmp_path), tmp_path / "nat")
    fleet = _province_fleet(tmp_path, tmp_path / "nat", province="hcm")
    state = FleetState.for_fleet(fleet)
    with pytest.raises(ConfigError, match=r"issued to 'fed\.hcm', not 'fed\.hue'"):
        render_broker(load_registry(fleet), state, tmp_path / "out", load_options(fleet, state))
    shutil.rmtree(fleet / "state" / "federation")
    result = CliRunner().invoke(main, ["broker", "render", "--fleet", str(fleet), "--out", str(tmp_path / "o2")])
    assert result.exit_code == 1 and "national-ca.crt is missing" in result.output
    assert "federation.bundle" in result.output
