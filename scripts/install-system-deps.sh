#!/usr/bin/env bash
# System packages hailong needs on Debian 12 (and Raspberry Pi OS): the real broker and
# database the tests and demo start privately, Xvfb for Kivy tests, and report tools;
# python3-venv/pip/dev because Debian's python3 is externally managed (PEP 668): the Makefile
# builds the project's .venv from /usr/bin/python3; PostgreSQL and MariaDB for queue-system tests.
# Only installs what is missing; never starts or enables the system services.
set -euo pipefail
PKGS=(python3 python3-venv python3-pip python3-dev
      mosquitto mosquitto-clients influxdb influxdb-client xvfb xauth systemd poppler-utils fonts-dejavu-core
      libmtdev1 libgl1 libgl1-mesa-dri libegl1 libgles2 libsdl2-2.0-0 libsdl2-image-2.0-0 libsdl2-mixer-2.0-0 libsdl2-ttf-2.0-0
      postgresql mariadb-server)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  # policy-rc.d keeps apt from starting the system mosquitto/influxdb services we do not use
  if [ -d /usr/sbin ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null; $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
