"""``hailong fleet provision``: bundle files, config model, cloud-init, firstrun.sh, systemd unit."""

from __future__ import annotations

import base64
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from broker.fleet.credentials import FleetState
from broker.kernel.settings import ConfigError
from device.config import DeviceConfig, load_device_config
from hailong.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "example-fleet"
UNIT = "etc/systemd/system/hailong-device.service"


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "fleet")
    return tmp_path / "fleet"


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_provision_whole_centre_bundle(fleet: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundles"
    t0 = time.monotonic()
    output = _run("fleet", "--fleet", str(fleet), "provision", "--centre", "qn-tthc", "--out", str(out),
                  "--broker-host", "mqtt.qn.example.vn")
    per_device = (time.monotonic() - t0) / 3
    print(f"\nprovisioning: {per_device * 1000:.0f} ms per device (3 devices, cert mode, incl. CA creation)")
    # progress for bulk work, one line per terminal
    assert re.findall(r"^\[(\d)/3\] (\S+)", output, re.M) == [("1", "qn-q01"), ("2", "qn-q02"), ("3", "qn-q03")]
    state = FleetState.for_fleet(fleet)
    for dev in ("qn-q01", "qn-q02", "qn-q03"):
        b = out / dev
        for rel in ("device.toml", "README.txt", "boot/user-data", "boot/network-config", "boot/meta-data",
                    "boot/firstrun.sh", "boot/cmdline-append.txt", "rootfs/etc/hailong/device.key",
                    "rootfs/etc/hailong/device.crt", "rootfs/etc/hailong/ca.crt", "rootfs/etc/hailong/kiosk.env",
                    "rootfs/etc/hailong/kivy-config.ini", f"rootfs/{UNIT}",
                    "rootfs/etc/systemd/journald.conf.d/hailong-volatile.conf",
                    "rootfs/usr/local/lib/hailong/sd-wear.sh", "rootfs/usr/local/lib/hailong/install.sh"):
            assert (b / rel).is_file(), f"{dev}: {rel} missing"
        assert stat.S_IMODE(b.stat().st_mode) == 0o700
        for secret in ("rootfs/etc/hailong/device.key", "boot/user-data", "boot/firstrun.sh"):
            assert stat.S_IMODE((b / secret).stat().st_mode) == 0o600, secret
        key = (b / "rootfs/etc/hailong/device.key").read_text()
        assert key not in output and "PRIVATE KEY" not in output
        assert (state.pki_dir / "devices" / f"{dev}.key").read_text() == key
    cfg = load_device_config(out / "qn-q02" / "device.toml")
    assert isinstance(cfg, DeviceConfig)
    assert (cfg.device_id, cfg.centre, cfg.counter, cfg.mode, cfg.hardware) == ("qn-q02", "qn-tthc", "q02", "qms",
                                                                                "both")
    assert cfg.centre_name == "Trung tâm Phục vụ hành chính công tỉnh Quảng Ninh"
    assert cfg.counter_label == "Quầy 2 – Tư pháp, hộ tịch"
    assert cfg.officer_names["pham-minh-duc"] == "Phạm Minh Đức"
    assert cfg.gpio.buttons == {1: 5, 2: 6, 3: 13, 4: 19} and cfg.gpio.served_pin == 26
    assert cfg.mqtt.url == "mqtts://mqtt.qn.example.vn:8884" and cfg.mqtt.cert_file == Path("/etc/hailong/device.crt")


def test_password_mode_and_centre_without_qms(fleet: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    output = _run("fleet", "--fleet", str(fleet), "provision", "dn-q01", "dn-q02", "--mode", "password",
                  "--out", str(out))
    secret = FleetState.for_fleet(fleet).password("dn-q01")
    assert secret not in output
    assert (out / "dn-q01/rootfs/etc/hailong/mqtt.pass").read_text().strip() == secret
    # on the Pi the password file is /etc/hailong/mqtt.pass; here env points it at the bundle's copy
    def on_this_machine(dev: str) -> dict[str, str]:
        return {"HAILONG_DEVICE__MQTT__PASSWORD_FILE": str(out / dev / "rootfs/etc/hailong/mqtt.pass")}

    buttons = load_device_config(out / "dn-q01" / "device.toml", environ=on_this_machine("dn-q01"))
    touch = load_device_config(out / "dn-q02" / "device.toml", environ=on_this_machine("dn-q02"))
    assert buttons.mode == "manual_served" and buttons.walkup_allowed and buttons.hardware == "buttons"
    assert buttons.gpio.leds == {1: 12, 2: 16, 3: 17, 4: 22} and buttons.gpio.buzzer_pin == 23
    assert buttons.mqtt.secret() == secret
    assert touch.mqtt.secret() == FleetState.for_fleet(fleet).password("dn-q02")
    assert 'password_file = "/etc/hailong/mqtt.pass"' in (out / "dn-q02" / "device.toml").read_text()
    assert touch.mode == "manual_served"
    assert touch.mqtt.url == "mqtts://localhost:8883"
    assert (buttons.officer_id, touch.officer_id) == ("le-thi-huong", "vo-quoc-bao")
    # without a queue system the terminal must know whom to credit, or it could never take a rating
    centres = fleet / "centres.toml"
    centres.write_text(centres.read_text(encoding="utf-8").replace('officer = "vo-quoc-bao"\n', ""),
                       encoding="utf-8")
    result = CliRunner().invoke(main, ["fleet", "--fleet", str(fleet), "provision", "dn-q02", "--out", str(out)])
    assert result.exit_code == 1
    assert ("centres.toml: centre.dn-tthc.counter.q02.officer: a centre without a queue system needs the officer "
            "credited at this counter") in result.output


def test_cloud_init_user_data_and_firstrun_carry_the_same_files(fleet: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    key = tmp_path / "tech.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyOnly tech@laptop\n")
    _run("fleet", "--fleet", str(fleet), "provision", "qn-q01", "--out", str(out), "--ssh-key", str(key),
         "--wifi-ssid", "TTHCC-QN")
    boot, root = out / "qn-q01" / "boot", out / "qn-q01" / "rootfs"
    text = (boot / "user-data").read_text()
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert {"hostname", "timezone", "users", "write_files", "runcmd", "ntp"} <= set(doc)
    assert doc["hostname"] == "qn-q01" and doc["timezone"] == "Asia/Ho_Chi_Minh"
    assert doc["users"][0]["ssh_authorized_keys"] == [key.read_text().strip()]
    assert doc["runcmd"][0] == ["sh", "/usr/local/lib/hailong/install.sh"]
    # the second runcmd really replaces the secret-bearing user-data with an empty config
    fake = tmp_path / "user-data"
    fake.write_text(text)
    subprocess.run(["sh", "-c", doc["runcmd"][1][2].replace("/boot/firmware/user-data", str(fake))], check=True)
    assert fake.read_text() == "#cloud-config\n{}\n"
    files = {f["path"]: f for f in doc["write_files"]}
    assert f"/{UNIT}" in files and "/etc/hailong/device.key" in files
    assert files["/etc/hailong/device.key"]["permissions"] == "0600"
    for path, f in files.items():
        assert base64.b64decode(f["content"]) == (root / path.lstrip("/")).read_bytes(), path
    net = yaml.safe_load((boot / "network-config").read_text())
    assert net["network"]["version"] == 2 and "TTHCC-QN" in net["network"]["wifis"]["wlan0"]["access-points"]
    meta = yaml.safe_load((boot / "meta-data").read_text())
    assert meta["local-hostname"] == "qn-q01"
    # firstrun.sh: valid bash, and every file it writes decodes to the same bytes
    script = (boot / "firstrun.sh").read_text()
    subprocess.run(["bash", "-n", str(boot / "firstrun.sh")], check=True)
    blocks = dict(re.findall(r"base64 -d > (\S+) <<'HAILONG_EOF'\n(.*?)\nHAILONG_EOF", script, re.S))
    assert set(blocks) == set(files)
    for path, b64 in blocks.items():
        assert base64.b64decode(b64) == (root / path.lstrip("/")).read_bytes(), path
    assert "systemd.run=/boot/firmware/firstrun.sh" in (boot / "cmdline-append.txt").read_text()
    for sh in ("usr/local/lib/hailong/install.sh", "usr/local/lib/hailong/sd-wear.sh"):
        subprocess.run(["sh", "-n", str(root / sh)], check=True)


def test_systemd_unit_passes_systemd_analyze_verify(fleet: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    _run("fleet", "--fleet", str(fleet), "provision", "qn-q03", "--out", str(out))
    unit = (out / "qn-q03" / "rootfs" / UNIT).read_text()
    for line in ("Restart=always", "WatchdogSec=30", "Type=notify", "StartLimitIntervalSec=0",
                 "ExecStart=/opt/hailong/bin/hailong device run --config /etc/hailong/device.toml "
                 "--on-config-error screen"):
        assert line in unit.splitlines(), line
    # verify needs the ExecStart binary to exist: point the venv at a stub, nothing else changes
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "hailong").write_text("#!/bin/sh\n")
    (venv / "bin" / "hailong").chmod(0o755)
    path = tmp_path / "hailong-device.service"
    path.write_text(unit.replace("/opt/hailong", str(venv)))
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: apt-get install systemd (scripts/install-system-deps.sh)"
    res = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
    # systemd-analyze exits 0 even for ignored bad lines; they show up as output, so demand silence
    assert res.returncode == 0 and (res.stdout + res.stderr).strip() == "", res.stdout + res.stderr
    _run("fleet", "--fleet", str(fleet), "provision", "qn-q03", "--out", str(out), "--no-watchdog")
    simple = (out / "qn-q03" / "rootfs" / UNIT).read_text()
    assert "Type=simple" in simple.splitlines() and "WatchdogSec" not in simple
    bad = tmp_path / "bad.service"
    bad.write_text(path.read_text().replace("Restart=always", "Restart=sometimes"))
    res = subprocess.run([analyze, "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "restart specifier" in res.stdout + res.stderr  # the check really reads the unit


def test_retired_or_unknown_device_is_not_provisioned(fleet: Path, tmp_path: Path) -> None:
    _run("fleet", "--fleet", str(fleet), "retire-device", "qn-q01")
    for dev, msg in (("qn-q01", "device.qn-q01: is retired"), ("nope", "device.nope: no such device")):
        result = CliRunner().invoke(main, ["fleet", "--fleet", str(fleet), "provision", dev, "--out",
                                           str(tmp_path / "b")])
        assert result.exit_code == 1 and msg in result.output, result.output


def test_provisioning_refuses_what_the_terminal_would_refuse(fleet: Path, tmp_path: Path) -> None:
    """A buttons unit with too few pins passes the registry; the Pi's own DeviceConfig refuses it here."""
    devices = fleet / "devices.toml"
    devices.write_text(devices.read_text(encoding="utf-8").replace(
        "pins = { score_1 = 5, score_2 = 6, score_3 = 13, score_4 = 19, served = 26, led_1 = 12, led_2 = 16, "
        "led_3 = 17, led_4 = 22, buzzer = 23 }\n\n[device.dn-q02]",
        "pins = { score_1 = 5, score_2 = 6, served = 26 }\n\n[device.dn-q02]"), encoding="utf-8")
    assert "score_1 = 5, score_2 = 6, served" in devices.read_text(encoding="utf-8")
    assert _run("fleet", "--fleet", str(fleet), "list")  # the registry itself still loads
    out = tmp_path / "b"
    result = CliRunner().invoke(main, ["fleet", "--fleet", str(fleet), "provision", "dn-q01", "--out", str(out)])
    assert result.exit_code == 1
    # the message the terminal would give at first boot (same model, same loader error format)
    pi_message = ("config error in /etc/hailong/device.toml: gpio.buttons: hardware='buttons' needs a pin for "
                  "every score 1..4; missing [3, 4]")
    assert pi_message in result.output and "dn-q01" in result.output and "devices.toml" in result.output
    assert not (out / "dn-q01" / "device.toml").exists(), "nothing written for a refused terminal"
    # the very same file on the terminal: the Pi's loader says the same
    pi = tmp_path / "device.toml"
    pi.write_text('device_id = "dn-q01"\ncentre = "dn-tthc"\ncounter = "q01"\ncentre_name = "C"\n'
                  'counter_label = "Q"\nhardware = "buttons"\nmode = "always_on"\n'
                  '[gpio.buttons]\n1 = 5\n2 = 6\n[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_device_config(pi, environ={})
    assert str(err.value) == pi_message.replace("/etc/hailong/device.toml", str(pi))


def test_whole_centre_in_password_mode_one_run(fleet: Path, tmp_path: Path) -> None:
    """A centre's bundles share one run: each still carries its own password (hashed in passwd), and every
    bundle references the same wheel and CA bytes."""
    from broker.fleet.passwd import parse_passwd, verify_password

    out = tmp_path / "bundles"
    state = FleetState.for_fleet(fleet)
    state.ensure()
    kept = state.password("qn-q02")  # an existing password is reused, not rotated
    _run("fleet", "--fleet", str(fleet), "provision", "--centre", "qn-tthc", "--mode", "password", "--out", str(out),
         "--broker-host", "mqtt.qn.example.vn")
    hashes = parse_passwd(state.passwd_path.read_text())
    secrets = {}
    for dev in ("qn-q01", "qn-q02", "qn-q03"):
        secrets[dev] = (out / dev / "rootfs/etc/hailong/mqtt.pass").read_text().strip()
        assert verify_password(hashes[dev], secrets[dev]), dev
        assert secrets[dev] == state.secret_path(dev).read_text().strip()
        doc = yaml.safe_load((out / dev / "boot/user-data").read_text())
        files = {f["path"]: base64.b64decode(f["content"]) for f in doc["write_files"]}
        assert files["/etc/hailong/mqtt.pass"].decode().strip() == secrets[dev]
        assert not (out / dev / "rootfs/etc/hailong/device.key").exists()
    assert secrets["qn-q02"] == kept and len(set(secrets.values())) == 3
    paths = [next((out / d / "rootfs/usr/local/lib/hailong/wheels").glob("hailong-*.whl")) for d in secrets]
    wheels = [w.read_bytes() for w in paths]
    assert wheels[0] == wheels[1] == wheels[2] and wheels[0][:2] == b"PK"
    assert len({w.stat().st_ino for w in paths}) == 1  # written once, hard-linked into the other bundles
    # a later run for one terminal writes its own copy: the other bundles' files are never rewritten in place
    _run("fleet", "--fleet", str(fleet), "provision", "qn-q01", "--mode", "password", "--out", str(out),
         "--broker-host", "mqtt.qn.example.vn")
    again = next((out / "qn-q01/rootfs/usr/local/lib/hailong/wheels").glob("hailong-*.whl"))
    assert again.stat().st_ino != paths[1].stat().st_ino and paths[1].read_bytes() == wheels[1]


def test_audio_bundle_carries_the_spoken_clips(fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--audio: the clips are made here by espeak-ng's chosen voice and land where the terminal reads them."""
    from device.audio import Speaker, check_clips, clip_names
    from device.i18n import load_catalogue
    from firmware_config.sounds import clips

    out = tmp_path / "b"
    _run("fleet", "--fleet", str(fleet), "provision", "dn-q01", "--audio", "--voice", "vi-vn-x-south",
         "--out", str(out))
    _run("fleet", "--fleet", str(fleet), "provision", "dn-q02", "--out", str(out))
    sounds = out / "dn-q01/rootfs/usr/local/lib/hailong/sounds"
    assert sorted(p.stem for p in sounds.glob("*.wav")) == sorted(clip_names(load_catalogue("vi")))
    assert not (out / "dn-q02/rootfs/usr/local/lib/hailong/sounds").exists()  # a silent terminal carries none
    toml = (out / "dn-q01/device.toml").read_text(encoding="utf-8")
    assert '[audio]\nenabled = true\nvoice = "vi-vn-x-south"' in toml and "[audio]" not in \
        (out / "dn-q02/device.toml").read_text(encoding="utf-8")
    # the southern voice, not the northern default: espeak-ng says the same text differently
    assert (sounds / "question.wav").read_bytes() == clips("vi-vn-x-south")["question"] != clips("vi")["question"]
    # first boot writes them from user-data too (cloud-init write_files)
    assert "/usr/local/lib/hailong/sounds/thanks.wav" in (out / "dn-q01/boot/user-data").read_text()
    # on the Pi the terminal starts with them (here the bundle's copy stands for /usr/local/lib/hailong)
    env = {"HAILONG_DEVICE__MQTT__PASSWORD": "x", "HAILONG_DEVICE__AUDIO__DIR": str(sounds)}
    cfg = load_device_config(out / "dn-q01/device.toml", environ=env)
    assert cfg.audio.enabled and cfg.audio.voice == "vi-vn-x-south"
    check_clips(cfg.audio, out / "dn-q01/device.toml")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    Speaker(cfg.audio, load_catalogue("vi")).close()


def test_audio_without_espeak_is_refused_by_name(fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from firmware_config.sounds import clips

    clips.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on this machine
    result = CliRunner().invoke(main, ["fleet", "--fleet", str(fleet), "provision", "dn-q01", "--audio",
                                       "--out", str(tmp_path / "b")])
    clips.cache_clear()
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "espeak-ng is not installed on this machine (apt-get install espeak-ng)" in result.output


def test_web_base_gives_each_qms_terminal_its_own_counters_link_key(fleet: Path, tmp_path: Path) -> None:
    from broker import weblink

    out = tmp_path / "b"
    output = _run("fleet", "--fleet", str(fleet), "provision", "qn-q01", "qn-q02", "dn-q02", "--mode", "password",
                  "--out", str(out), "--web-base", "https://danhgia.qn.example.vn")
    ring = FleetState.for_fleet(fleet).link_keyring("qn-tthc")
    for dev, counter in (("qn-q01", "q01"), ("qn-q02", "q02")):
        keyfile = out / dev / "rootfs/etc/hailong/weblink.key"
        assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
        key_id, secret = weblink.parse_terminal_secret(keyfile.read_text())
        # the counter's derived key, never the centre key, and never printed
        assert (key_id, secret) == ring.terminal_key(counter) and secret != ring.signing_key().secret
        assert keyfile.read_text().strip() not in output and secret.hex() not in output
        env = {"HAILONG_DEVICE__MQTT__PASSWORD_FILE": str(out / dev / "rootfs/etc/hailong/mqtt.pass"),
               "HAILONG_DEVICE__WEB_LINK__KEY_FILE": str(keyfile)}
        cfg = load_device_config(out / dev / "device.toml", environ=env)
        assert (cfg.web_link.enabled, cfg.web_link.base_url, cfg.web_link.timezone) == (
            True, "https://danhgia.qn.example.vn", "Asia/Ho_Chi_Minh")
        assert cfg.web_link.secret_of("key") == keyfile.read_text().strip()
        assert 'key_file = "/etc/hailong/weblink.key"' in (out / dev / "device.toml").read_text()
        # first boot writes it 0600 too (cloud-init and firstrun.sh)
        assert "/etc/hailong/weblink.key" in (out / dev / "boot/user-data").read_text()
        assert "chmod 600 /etc/hailong/weblink.key" in (out / dev / "boot/firstrun.sh").read_text()
    # a centre without a queue system: no ticket to bind a phone rating to, no key, no [web_link]
    assert not (out / "dn-q02" / "rootfs/etc/hailong/weblink.key").exists()
    assert "web_link" not in (out / "dn-q02" / "device.toml").read_text()
    result = CliRunner().invoke(main, ["fleet", "--fleet", str(fleet), "provision", "qn-q01", "--out", str(out),
                                       "--web-base", "https://danhgia.example.vn/r/"])
    assert result.exit_code == 2 and "--web-base" in result.output
    # a stolen terminal: revoking its broker credentials names the command that stops its QR links
    revoked = _run("fleet", "--fleet", str(fleet), "revoke", "qn-q01")
    assert "hailong web key rotate" in revoked and "--centre qn-tthc --revoke-counter q01" in revoked
    # a button unit in a QMS centre: no screen to show a QR on, so no key and no [web_link]
    _run("fleet", "--fleet", str(fleet), "add-counter", "q30", "--centre", "qn-tthc", "--label", "Quầy 30")
    _run("fleet", "--fleet", str(fleet), "add-device", "qn-q30", "--centre", "qn-tthc", "--counter", "q30",
         "--hardware", "buttons", "--pin", "score_1=5", "--pin", "score_2=6", "--pin", "score_3=13",
         "--pin", "score_4=19")
    _run("fleet", "--fleet", str(fleet), "provision", "qn-q30", "--mode", "password", "--out", str(out),
         "--web-base", "https://danhgia.qn.example.vn")
    assert not (out / "qn-q30" / "rootfs/etc/hailong/weblink.key").exists()
    assert "web_link" not in (out / "qn-q30" / "device.toml").read_text()
