"""``hailong fleet provision``: a counter terminal's credentials and first-boot bundle.

For device D the output directory gets::

    D/device.toml        the terminal's config (parses with device.config.DeviceConfig)
    D/rootfs/...         every file exactly as it lands on the Pi (secrets 0600)
    D/boot/user-data     cloud-init (#cloud-config) for current Raspberry Pi OS images
    D/boot/network-config, D/boot/meta-data
    D/boot/firstrun.sh   the same install for Bookworm-era images without cloud-init
    D/boot/cmdline-append.txt   what firstrun.sh needs appended to cmdline.txt
    D/README.txt         what to copy where (docs/technician.md has the steps)

The rootfs carries the project's wheel (``/usr/local/lib/hailong/wheels/``, built
from the checkout by firmware_config/wheel.py): hailong is not on PyPI, so first
boot installs it from there; ``--pip-spec`` overrides that.

The boot files carry the device's secrets (key, password) because the Pi must
be able to connect on first boot without a technician typing anything; both
first-boot paths delete them from the FAT boot partition once installed.

A centre's terminals are provisioned as one run (``Run``): the CA, the OS files and
the wheel are read once, each shared file is encoded once for both first-boot paths,
and written once under rootfs/ (the other bundles hard-link it); passwords are
generated with one write of the password file. What is left per terminal is its
config, its secret and its two boot files.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError

from broker.fleet.credentials import FleetState
from broker.fleet.pki import FleetCA, write_private
from broker.fleet.registry import Device, Registry, RegistryError
from broker.kernel.settings import ConfigError, Settings, secret_files, toml_key, validation_to_config_error
from device.config import DeviceConfig, Voice

from . import osfiles
from .fleetedit import toml_value

Mode = Literal["cert", "password"]
TIMEZONE = "Asia/Ho_Chi_Minh"
WEB_LINK_KEY = f"{osfiles.ETC}/weblink.key"  # the counter's own rating-link key (broker/weblink.py), 0600


@dataclass(frozen=True)
class BundleFile:
    path: str  # absolute path on the Pi
    data: bytes
    mode: int
    secret: bool = False

    # Encoded once per file object: a run's shared files (the 250 KB wheel above all) are the same
    # objects in every bundle. PyYAML's pure-Python emitter scans a scalar character by character,
    # ~200 ms for the wheel, so the write_files entries are emitted here (a JSON string is a YAML
    # double-quoted scalar; the tests load the result back with yaml.safe_load).
    @cached_property
    def cloud_init_entry(self) -> str:
        return (f"- path: {json.dumps(self.path, ensure_ascii=False)}\n  encoding: b64\n"
                f"  content: \"{base64.b64encode(self.data).decode()}\"\n"
                f"  permissions: '0{self.mode:o}'\n  owner: root:root\n")

    @cached_property
    def firstrun_lines(self) -> str:
        d, q = shlex.quote(str(Path(self.path).parent)), shlex.quote(self.path)
        return "\n".join([f"mkdir -p {d}", f"base64 -d > {q} <<'HAILONG_EOF'",
                          base64.encodebytes(self.data).decode().rstrip("\n"), "HAILONG_EOF",
                          f"chmod {self.mode:o} {q}"])


class ProvisionSettings(Settings):
    """How this fleet's terminals are provisioned (from ``hailong fleet provision`` flags and broker.toml)."""

    broker_host: str = Field(min_length=1, description="Broker name the terminals connect to")
    tls_port: int = Field(default=8883, ge=1, le=65535, description="TLS + username/password listener")
    cert_port: int = Field(default=8884, ge=1, le=65535, description="TLS + client-certificate listener")
    mode: Mode = Field(default="cert", description="cert: TLS client certificate; password: username/password")
    pip_spec: str | None = Field(
        default=None, description="Overrides the bundled wheel (e.g. a wheel URL on the centre server)")
    wheel: Path | None = Field(
        default=None, description="The hailong wheel the bundle carries (firmware_config/wheel.py)")
    ssh_keys: tuple[str, ...] = Field(default=(), description="SSH public keys for the 'tech' user")
    wifi_ssid: str | None = Field(default=None, description="Wi-Fi network the terminal joins (none: Ethernet)")
    wifi_password: SecretStr | None = Field(default=None, description="Wi-Fi passphrase (never logged)")
    wifi_country: str = Field(default="VN", pattern=r"^[A-Z]{2}$", description="Wi-Fi regulatory domain")
    watchdog: bool = Field(default=True, description="systemd watchdog (Type=notify, WatchdogSec) on the terminal")
    audio: bool = Field(default=False, description="Spoken prompts on these terminals: [audio] enabled, and the "
                                                   "clips generated with espeak-ng carried in the bundle")
    voice: Voice = Field(default="vi", description="espeak-ng voice of the clips: vi (northern), vi-vn-x-south "
                                                   "or vi-vn-x-central")
    web_base: str | None = Field(
        default=None, max_length=96, pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$",
        description="Public origin of the web rating service: terminals with a screen in centres with a queue "
                    "system get [web_link] enabled and their counter's own link key (the QR to rate later, "
                    "docs/web-rating.md)")


def device_config(reg: Registry, dev: Device, s: ProvisionSettings) -> DeviceConfig:
    """The terminal's config for ``dev``, validated by the model the Pi loads it with.

    Whatever the Pi would refuse at first boot (a buttons unit without a pin for every
    score, a pin used twice, ...) is refused here, as the ConfigError the Pi would raise.
    """
    centre = reg.centres[dev.centre]
    counter = reg.counters[(dev.centre, dev.counter)]
    buttons = {int(k.split("_")[1]): v for k, v in dev.pins.items() if k.startswith("score_")}
    leds = {int(k.split("_")[1]): v for k, v in dev.pins.items() if k.startswith("led_")}
    served = dev.pins.get("served")
    if centre.has_qms:
        mode = "qms"
    elif served is not None or dev.hardware != "buttons":
        mode = "manual_served"  # no queue system: the officer's "served" press (or on-screen) opens the prompt
    else:
        mode = "always_on"
    gpio: dict[str, Any] = {"buttons": dict(sorted(buttons.items())), "leds": dict(sorted(leds.items()))}
    if served is not None:
        gpio["served_pin"] = served
    if "buzzer" in dev.pins:
        gpio["buzzer_pin"] = dev.pins["buzzer"]
    if s.mode == "cert":
        mqtt: dict[str, Any] = {"url": f"mqtts://{s.broker_host}:{s.cert_port}", "username": dev.id,
                                "ca_file": f"{osfiles.ETC}/ca.crt", "cert_file": f"{osfiles.ETC}/device.crt",
                                "key_file": f"{osfiles.ETC}/device.key"}
    else:
        mqtt = {"url": f"mqtts://{s.broker_host}:{s.tls_port}", "username": dev.id,
                "password_file": f"{osfiles.ETC}/mqtt.pass", "ca_file": f"{osfiles.ETC}/ca.crt"}
    if not centre.has_qms and counter.officer is None:
        raise RegistryError(reg.root / "centres.toml", f"centre.{dev.centre}.counter.{dev.counter}.officer",
                            "a centre without a queue system needs the officer credited at this counter")
    data: dict[str, Any] = {
        "device_id": dev.id, "centre": dev.centre, "counter": dev.counter,
        "centre_name": centre.name, "counter_label": counter.label,
        "officer_names": {o.id: o.name for o in reg.officers_of(dev.centre) if not o.retired},
        **({"officer_id": counter.officer} if counter.officer else {}),
        "mode": mode, "walkup_allowed": centre.walkup_allowed, "hardware": dev.hardware,
        # the scale follows the buttons wired: 3 or 5 buttons, else the 4-level default
        "scale": max(buttons) if buttons and max(buttons) in (3, 5) else 4,
        "gpio": gpio, "outbox": {"path": f"{osfiles.STATE}/outbox.sqlite3"}, "mqtt": mqtt,
        **({"audio": {"enabled": True, "voice": s.voice}} if s.audio else {}),
        **({"web_link": {"enabled": True, "base_url": s.web_base, "key_file": WEB_LINK_KEY,
                         "timezone": centre.timezone}} if s.web_base and centre.has_qms and dev.hardware != "buttons"
           else {}),
    }
    try:
        # no base_dir context and no secret files read: those paths are the Pi's, not this machine's
        return DeviceConfig.model_validate(data)
    except ValidationError as exc:
        raise validation_to_config_error(osfiles.CONFIG_PATH, exc) from None


def config_document(cfg: DeviceConfig) -> dict[str, Any]:
    """The keys provisioning set (defaults left out, so a later app version's defaults apply), as TOML data."""
    doc: dict[str, Any] = cfg.model_dump(mode="json", exclude_unset=True)
    return doc


def to_toml(doc: dict[str, Any], header: str) -> str:
    """Scalars first, then one [table] per nested dict (two levels are all DeviceConfig has)."""
    lines = [header]
    tables = {k: v for k, v in doc.items() if isinstance(v, dict)}
    lines += [f"{k} = {toml_value(v)}" for k, v in doc.items() if k not in tables]
    for name, table in tables.items():
        sub = {k: v for k, v in table.items() if isinstance(v, dict)}
        lines += ["", f"[{name}]"] + [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items() if k not in sub]
        for subname, subtable in sub.items():
            lines += ["", f"[{name}.{subname}]"] + [f"{toml_key(k)} = {toml_value(v)}" for k, v in subtable.items()]
    return "\n".join(lines) + "\n"


class Run:
    """One provisioning run (one terminal or a whole centre): what its bundles share, prepared once."""

    def __init__(self, state: FleetState, s: ProvisionSettings) -> None:
        self.state, self.settings = state.ensure(), s
        self.ca: FleetCA = state.ca()
        etc = osfiles.ETC
        self.common = [
            BundleFile(f"{etc}/ca.crt", self.ca.cert_path.read_bytes(), 0o644),
            BundleFile(f"{etc}/kiosk.env", osfiles.kiosk_env().encode(), 0o644),
            BundleFile(f"{etc}/kivy-config.ini", osfiles.kivy_config().encode(), 0o644),
            BundleFile(f"/etc/systemd/system/{osfiles.UNIT_NAME}",
                       osfiles.systemd_unit(watchdog=s.watchdog).encode(), 0o644),
            BundleFile("/etc/systemd/journald.conf.d/hailong-volatile.conf", osfiles.journald_conf().encode(),
                       0o644),
            BundleFile(f"{osfiles.LIB}/sd-wear.sh", osfiles.sd_wear_script().encode(), 0o755),
            BundleFile(f"{osfiles.LIB}/install.sh", osfiles.install_script().encode(), 0o755),
            *_app_files(s),
        ]
        self.network_config = network_config(s).encode()
        self._passwords: dict[str, str] = {}
        self._written: dict[int, Path] = {}  # id of a shared file -> its first copy in this run's bundles
        self._sounds: dict[tuple[str, str], list[BundleFile]] = {}

    def link(self, f: BundleFile, dest: Path) -> bool:
        """Hard-link a shared file (the wheel above all) to its first copy in this run: written once, then
        referenced by every bundle. False: write it (the first copy, or a file system without links)."""
        first = self._written.get(id(f))
        if first is None:
            if any(f is c for c in self.common) or any(f is c for fs in self._sounds.values() for c in fs):
                self._written[id(f)] = dest
            return False
        try:
            os.link(first, dest)
        except OSError:
            return False
        return True

    def sound_files(self, cfg: DeviceConfig) -> list[BundleFile]:
        """The spoken clips, made here with espeak-ng (the Pi needs no speech engine), once per voice and
        run; none when the terminal's audio is off."""
        if not cfg.audio.enabled:
            return []
        key = (cfg.audio.voice, str(cfg.audio.dir))
        if key not in self._sounds:
            from .sounds import clips

            self._sounds[key] = [BundleFile(f"{cfg.audio.dir}/{name}.wav", data, 0o644)
                                 for name, data in clips(cfg.audio.voice).items()]
        return self._sounds[key]

    def prepare(self, device_ids: list[str]) -> None:
        """Credentials of many terminals at once (password mode: one write of the password file)."""
        if self.settings.mode == "password":
            self._passwords.update(self.state.passwords(device_ids))

    def secret_files(self, dev: Device) -> list[BundleFile]:
        etc = osfiles.ETC
        if self.settings.mode == "cert":
            cert = self.state.device_cert(dev.id, ca=self.ca)
            return [BundleFile(f"{etc}/device.crt", cert.cert_path.read_bytes(), 0o644),
                    BundleFile(f"{etc}/device.key", cert.key_path.read_bytes(), 0o600, secret=True)]
        if dev.id not in self._passwords:
            self.prepare([dev.id])
        return [BundleFile(f"{etc}/mqtt.pass", (self._passwords[dev.id] + "\n").encode(), 0o600, secret=True)]

    def link_key_files(self, dev: Device, cfg: DeviceConfig) -> list[BundleFile]:
        """The counter's own rating-link key, derived from the centre's current key: it signs the QR of this
        counter's tickets only (never the centre key, which signs every link of the centre)."""
        if not cfg.web_link.enabled:
            return []
        secret = self.state.terminal_link_secret(dev.centre, dev.counter)
        return [BundleFile(WEB_LINK_KEY, (secret + "\n").encode(), 0o600, secret=True)]


def bundle_files(reg: Registry, dev: Device, state: FleetState, s: ProvisionSettings,
                 run: Run | None = None) -> list[BundleFile]:
    run = run or Run(state, s)
    header = (f"# hailong terminal {dev.id} -- generated by `hailong fleet provision`.\n"
              f"# Registry: {dev.centre} / {dev.counter}. Keys documented in docs/device.md.")
    cfg = device_config(reg, dev, s)
    config_toml = to_toml(config_document(cfg), header).encode()
    etc = osfiles.ETC
    files = [
        BundleFile(osfiles.CONFIG_PATH, config_toml, 0o640),
        *run.common[:3],  # ca.crt, kiosk.env, kivy-config.ini
        BundleFile(f"{etc}/README.txt", f"hailong terminal {dev.id}; see docs/technician.md\n".encode(), 0o644),
        *run.common[3:],
        *run.secret_files(dev),
        *run.link_key_files(dev, cfg),
        *run.sound_files(cfg),
    ]
    shipped = {f.path for f in files}
    for key, file in secret_files(cfg):  # the Pi reads these at start: each must be in the bundle
        if str(file) not in shipped:
            raise ConfigError(osfiles.CONFIG_PATH, key, f"secret file {file}: not in the provisioning bundle")
    return files


def _app_files(s: ProvisionSettings) -> list[BundleFile]:
    """The app's install step and, unless ``--pip-spec`` replaces it, the wheel it installs."""
    if s.pip_spec is None and s.wheel is None:
        raise ValueError("ProvisionSettings needs the hailong wheel or a pip spec")
    wheel = [BundleFile(f"{osfiles.WHEELS}/{s.wheel.name}", s.wheel.read_bytes(), 0o644)] if s.wheel else []
    script = osfiles.install_app_script(s.wheel.name if s.wheel else None, s.pip_spec)
    return [BundleFile(f"{osfiles.LIB}/install-app.sh", script.encode(), 0o755), *wheel]


def user_data(dev: Device, files: list[BundleFile], s: ProvisionSettings) -> str:
    user: dict[str, Any] = {"name": "tech", "groups": ["sudo", "adm"], "shell": "/bin/bash",
                            "lock_passwd": True, "sudo": "ALL=(ALL) NOPASSWD:ALL"}
    if s.ssh_keys:
        user["ssh_authorized_keys"] = list(s.ssh_keys)
    doc: dict[str, Any] = {
        "hostname": dev.id,
        "manage_etc_hosts": True,
        "timezone": TIMEZONE,
        "ntp": {"enabled": True},
        "ssh_pwauth": False,
        "users": [user],
        "package_update": False,
    }
    tail: dict[str, Any] = {
        "runcmd": [
            ["sh", f"{osfiles.LIB}/install.sh"],
            # The boot partition is FAT and readable by anyone holding the card: replace the file with
            # the secrets by an empty config. meta-data (same instance-id) stays, so cloud-init does
            # not take the next boot for a new instance.
            ["sh", "-c", "for f in /boot/firmware/user-data /boot/user-data; do if [ -f \"$f\" ]; then "
                         "shred -u \"$f\"; printf '#cloud-config\\n{}\\n' > \"$f\"; fi; done"],
        ],
    }
    return ("#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000)
            + "write_files:\n" + "".join(f.cloud_init_entry for f in files)
            + yaml.safe_dump(tail, sort_keys=False, allow_unicode=True, width=1000))


def network_config(s: ProvisionSettings) -> str:
    doc: dict[str, Any] = {"network": {"version": 2, "ethernets": {"eth0": {"dhcp4": True, "optional": True}}}}
    if s.wifi_ssid:
        wifi_password = s.wifi_password.get_secret_value() if s.wifi_password else ""
        doc["network"]["wifis"] = {"wlan0": {"dhcp4": True, "optional": True, "regulatory-domain": s.wifi_country,
                                             "access-points": {s.wifi_ssid: {"password": wifi_password}}}}
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def firstrun_sh(dev: Device, files: list[BundleFile], s: ProvisionSettings) -> str:
    """Raspberry Pi Imager-style first-boot script (cmdline.txt systemd.run=...)."""
    out = ["#!/bin/bash", f"# hailong first boot for terminal {dev.id} (Bookworm-era images without cloud-init)",
           "set +e", "exec >/dev/kmsg 2>&1", f"hostnamectl set-hostname {shlex.quote(dev.id)}",
           f"timedatectl set-timezone {TIMEZONE}"]
    out += [f.firstrun_lines for f in files]
    if s.ssh_keys:
        keys = "\n".join(s.ssh_keys)
        out += ["id tech >/dev/null 2>&1 || useradd -m -G sudo,adm -s /bin/bash tech",
                "install -d -m 700 -o tech -g tech /home/tech/.ssh",
                f"cat > /home/tech/.ssh/authorized_keys <<'HAILONG_EOF'\n{keys}\nHAILONG_EOF",
                "chown tech:tech /home/tech/.ssh/authorized_keys", "systemctl enable ssh"]
    out += [
        # install.sh needs the network (apt, pip): run it once, after this boot, as a oneshot unit
        "cat > /etc/systemd/system/hailong-firstboot.service <<'HAILONG_EOF'",
        "[Unit]\nDescription=hailong first-boot install\nWants=network-online.target\nAfter=network-online.target",
        f"ConditionPathExists=!{osfiles.STATE}/.installed\n",
        f"[Service]\nType=oneshot\nExecStart=/bin/sh {osfiles.LIB}/install.sh\n"
        f"ExecStartPost=/bin/sh -c 'mkdir -p {osfiles.STATE} && touch {osfiles.STATE}/.installed'\n",
        "[Install]\nWantedBy=multi-user.target",
        "HAILONG_EOF",
        "systemctl enable hailong-firstboot.service",
        "BOOT=/boot/firmware; [ -d $BOOT ] || BOOT=/boot",
        "rm -f $BOOT/firstrun.sh",
        "sed -i 's| systemd.run.*||g' $BOOT/cmdline.txt",
        "exit 0",
    ]
    return "\n".join(out) + "\n"


CMDLINE_APPEND = ("systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot "
                  "systemd.unit=kernel-command-line.target")


def provision(reg: Registry, device_id: str, state: FleetState, out: Path, s: ProvisionSettings,
              run: Run | None = None) -> Path:
    """Write the bundle of one device under ``out/<device>``; return that directory."""
    dev = reg.device(device_id)
    if dev.retired:
        raise RegistryError(reg.root / "devices.toml", f"device.{dev.id}", "is retired; add it again to reuse")
    files = bundle_files(reg, dev, state, s, run)
    target = out / dev.id
    (target / "boot").mkdir(parents=True, exist_ok=True)
    target.chmod(0o700)  # the bundle holds the terminal's private key / password
    made: set[Path] = set()
    for f in files:
        dest = target / "rootfs" / f.path.lstrip("/")
        if dest.parent not in made:
            dest.parent.mkdir(parents=True, exist_ok=True)
            made.add(dest.parent)
        if f.secret:
            write_private(dest, f.data)
        else:
            # a fresh inode every time: a file hard-linked into older bundles is never rewritten in place
            dest.unlink(missing_ok=True)
            if run is None or not run.link(f, dest):
                dest.write_bytes(f.data)
                dest.chmod(f.mode)
    (target / "device.toml").write_bytes(files[0].data)
    write_private(target / "boot" / "user-data", user_data(dev, files, s).encode())
    write_private(target / "boot" / "firstrun.sh", firstrun_sh(dev, files, s).encode())
    write_private(target / "boot" / "network-config",  # may hold a Wi-Fi key
                  run.network_config if run else network_config(s).encode())
    (target / "boot" / "meta-data").write_text(f"instance-id: hailong-{dev.id}\nlocal-hostname: {dev.id}\n")
    (target / "boot" / "cmdline-append.txt").write_text(CMDLINE_APPEND + "\n")
    where = f"{reg.centres[dev.centre].name} / {reg.counters[(dev.centre, dev.counter)].label}"
    (target / "README.txt").write_text(
        f"hailong terminal {dev.id} ({where})\n"
        "Copy boot/* onto the SD card's boot partition (bootfs) after flashing Raspberry Pi OS Lite.\n"
        "Images with cloud-init use user-data/network-config/meta-data; older Bookworm images:\n"
        "append boot/cmdline-append.txt to the single line of cmdline.txt. Steps: docs/technician.md\n"
        "boot/ and rootfs/etc/hailong/ hold this terminal's secret: keep this folder private.\n",
        encoding="utf-8")
    return target


def provision_many(reg: Registry, device_ids: list[str], state: FleetState, out: Path,
                   s: ProvisionSettings) -> Iterator[Path]:
    """Bundles for many terminals in one run (shared files prepared once); yields each bundle directory.

    Stops at the first terminal whose bundle cannot be made (the exception names it)."""
    run = Run(state, s)
    run.prepare([d for d in device_ids if d in reg.devices and not reg.devices[d].retired])
    for device_id in device_ids:
        yield provision(reg, device_id, state, out, s, run)
