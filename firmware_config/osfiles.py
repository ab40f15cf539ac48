"""Operating-system files for a counter terminal (Raspberry Pi OS Bookworm and later).

Everything a blank Pi needs besides the hailong wheel: the systemd unit, the
kiosk environment (Kivy on KMS/DRM without X, touch through mtdev), journald in
RAM and other SD-card wear measures, and the install script both first-boot
paths (cloud-init and firstrun.sh) run. Paths on the Pi are fixed here so that
docs/technician.md and the tests agree with what is generated.
"""

from __future__ import annotations

import shlex

ETC = "/etc/hailong"
STATE = "/var/lib/hailong"
VENV = "/opt/hailong"
LIB = "/usr/local/lib/hailong"
UNIT_NAME = "hailong-device.service"
SERVICE_USER = "hailong"
CONFIG_PATH = f"{ETC}/device.toml"
# The service pings systemd (sd_notify WATCHDOG=1) from its UI loop; a hung UI is restarted.
WATCHDOG_S = 30


def systemd_unit(config_path: str = CONFIG_PATH, watchdog: bool = True) -> str:
    """The terminal's unit. ``watchdog`` needs an app that sends sd_notify READY=1 and WATCHDOG=1;
    without it the unit is Type=simple and relies on Restart=always alone."""
    supervise = (f"Type=notify\nNotifyAccess=main\nWatchdogSec={WATCHDOG_S}\n" if watchdog
                 else "Type=simple\n")
    return f"""[Unit]
Description=hailong counter terminal (citizen satisfaction)
Documentation=file://{ETC}/README.txt
After=network-online.target time-sync.target
Wants=network-online.target
# Never give up: a terminal that stops restarting is a counter without ratings.
StartLimitIntervalSec=0

[Service]
{supervise}# a broken config is shown on the out-of-service screen instead of a blank display
ExecStart={VENV}/bin/hailong device run --config {config_path} --on-config-error screen
Restart=always
RestartSec=3
TimeoutStartSec=120
User={SERVICE_USER}
Group={SERVICE_USER}
# KMS/DRM display, touch (evdev/mtdev), GPIO buttons, the speaker (ALSA)
SupplementaryGroups=video render input gpio audio
EnvironmentFile={ETC}/kiosk.env
StateDirectory=hailong
StateDirectoryMode=0750
WorkingDirectory={STATE}
# The outbox (SQLite, synchronous=FULL) in {STATE} is the only thing written to the SD card.
ProtectSystem=strict
ReadWritePaths={STATE}
ProtectHome=yes
PrivateTmp=yes
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes

[Install]
WantedBy=multi-user.target
"""


def kiosk_env() -> str:
    """Environment of the terminal app: SDL2 straight on KMS/DRM, Kivy config in the state dir."""
    return f"""# Kivy/SDL2 kiosk settings for hailong-device.service
KIVY_WINDOW=sdl2
KIVY_GL_BACKEND=sdl2
SDL_VIDEODRIVER=kmsdrm
KIVY_HOME={STATE}/kivy
# no Kivy log files on the SD card: logs go to journald (in RAM)
KIVY_NO_FILELOG=1
KIVY_NO_CONSOLELOG=0
KIVY_NO_ARGS=1
PYTHONUNBUFFERED=1
"""


def kivy_config() -> str:
    """Kivy config.ini: full screen, no mouse cursor, multitouch through mtdev (probesysfs)."""
    return """[kivy]
log_enable = 0
log_level = info
keyboard_mode = systemanddock
exit_on_escape = 0

[graphics]
fullscreen = auto
borderless = 1
show_cursor = 0
maxfps = 30

[input]
# touch panels (official 7" display, HDMI USB touch frames) through mtdev
mtdev_%(name)s = probesysfs,provider=mtdev
hid_%(name)s = probesysfs,provider=hidinput
"""


def journald_conf() -> str:
    return """# hailong: keep the journal in RAM (SD-card wear); ratings are durable in the outbox, not in logs.
[Journal]
Storage=volatile
RuntimeMaxUse=32M
Compress=yes
ForwardToSyslog=no
"""


def sd_wear_script() -> str:
    """Idempotent SD-card wear measures; safe to run on every boot."""
    return """#!/bin/sh
# hailong: reduce SD-card writes on a counter terminal. Idempotent.
set -eu
# no swap file on the SD card
if systemctl list-unit-files dphys-swapfile.service >/dev/null 2>&1; then
  systemctl disable --now dphys-swapfile.service 2>/dev/null || true
fi
swapoff -a 2>/dev/null || true
# no access-time writes; batch ext4 metadata commits (the outbox fsyncs what matters)
if ! grep -Eq '^[^#]+[[:space:]]/[[:space:]]+ext4[[:space:]]+[^[:space:]]*noatime' /etc/fstab; then
  sed -i -E \\
    's|^([^#][^[:space:]]+[[:space:]]+/[[:space:]]+ext4[[:space:]]+)([^[:space:]]+)|\\1\\2,noatime,commit=60|' \\
    /etc/fstab
fi
# /tmp in RAM
if [ -f /usr/share/systemd/tmp.mount ] && [ ! -e /etc/systemd/system/tmp.mount ]; then
  cp /usr/share/systemd/tmp.mount /etc/systemd/system/tmp.mount
  systemctl enable tmp.mount 2>/dev/null || true
fi
# no duplicate text logs, no background index/upgrade jobs during office hours
for u in rsyslog.service apt-daily.timer apt-daily-upgrade.timer man-db.timer; do
  systemctl disable --now "$u" 2>/dev/null || true
done
"""


WHEELS = f"{LIB}/wheels"


def install_app_script(wheel_name: str | None, pip_spec: str | None = None) -> str:
    """The app's install step: a venv with hailong from the wheel the bundle carries (hailong is not on
    PyPI; its third-party dependencies come from the Pi's index, or from wheels placed beside it).

    ``pip_spec`` (``--pip-spec``) overrides what is installed. HAILONG_LIB / HAILONG_VENV /
    HAILONG_PYTHON let a test run this very script against an unpacked bundle."""
    if pip_spec:
        spec = shlex.quote(pip_spec)
    elif wheel_name:
        spec = f'"hailong[device] @ file://$LIB/wheels/{wheel_name}"'
    else:
        raise ValueError("a terminal bundle needs the hailong wheel or a pip spec")
    return f"""#!/bin/sh
# hailong: install the terminal app into its venv. Idempotent (pip keeps what is installed).
set -eu
LIB="${{HAILONG_LIB:-{LIB}}}"
VENV="${{HAILONG_VENV:-{VENV}}}"
PYTHON="${{HAILONG_PYTHON:-python3}}"
# system site-packages: Kivy, gpiozero and lgpio from apt are used where their versions fit
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --find-links "$LIB/wheels" {spec}
"$VENV/bin/hailong" --version
"""


def install_script() -> str:
    """Run once on first boot (by cloud-init or firstrun.sh) after the bundle files are in place."""
    return f"""#!/bin/sh
# hailong: install the terminal app and enable it. Idempotent; output goes to the journal.
set -eu
id {SERVICE_USER} >/dev/null 2>&1 || useradd --system --home-dir {STATE} --shell /usr/sbin/nologin {SERVICE_USER}
for g in video render input gpio audio; do
  if getent group "$g" >/dev/null; then usermod -aG "$g" {SERVICE_USER}; fi
done
chown -R root:{SERVICE_USER} {ETC}
chmod 0750 {ETC}
find {ETC} -maxdepth 1 -type f -exec chmod 0640 {{}} +
# folders (e.g. sounds/ with recorded clips) stay readable by the service
find {ETC} -mindepth 1 -type d -exec chmod 0750 {{}} +
mkdir -p {STATE}/kivy
cp {ETC}/kivy-config.ini {STATE}/kivy/config.ini
chown -R {SERVICE_USER}:{SERVICE_USER} {STATE}
chmod 0750 {STATE}
apt-get update -qq
# Kivy, SDL2 and the GPIO libraries from apt (Raspberry Pi OS has python3-lgpio); only those this OS has
extra=""
for p in python3-kivy python3-gpiozero python3-lgpio; do
  if apt-cache show "$p" >/dev/null 2>&1; then extra="$extra $p"; fi
done
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
  python3-venv python3-pip python3-dev libmtdev1 libsdl2-2.0-0 libsdl2-ttf-2.0-0 libsdl2-image-2.0-0 \\
  libsdl2-mixer-2.0-0 libgl1 libgles2 libegl1 fonts-dejavu-core $extra
sh {LIB}/install-app.sh
sh {LIB}/sd-wear.sh
systemctl daemon-reload
systemctl restart systemd-journald
systemctl enable --now {UNIT_NAME}
"""
