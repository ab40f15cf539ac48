#!/usr/bin/env bash
# System packages hailong needs on Debian 12 (and Raspberry Pi OS), per make target:
#
#   bash scripts/install-system-deps.sh demo    what `make demo` runs (make setup)
#   bash scripts/install-system-deps.sh test    the above + what only the tests run (make test, .ci/run)
#   bash scripts/install-system-deps.sh --print-packages demo|test    the list, one per line
#   bash scripts/install-system-deps.sh --print-services demo|test    the services it keeps off
#
# It installs only what is missing, and it never leaves a system service enabled or running:
# the demo and the tests start private servers on free loopback ports, so a Debian service
# (mosquitto on 1883, influxdb, postgresql, mariadb) would only be a broker and three databases
# nobody asked for after the next reboot. While apt runs, policy-rc.d forbids starting services;
# afterwards every service below is disabled (systemctl disable + update-rc.d disable: the links
# in /etc/systemd/system/*.wants/ and /etc/rc?.d/S*) and stopped if it runs. This is also done
# when nothing was missing, so a machine installed earlier is corrected (idempotent).
# A production server enables the services it uses itself (docs/technician.md).
#
# apt's output goes to the log file ($HAILONG_SETUP_LOG, default .hailong/install-system-deps.log);
# the terminal gets one line per step, and the log's tail if a step fails.
set -euo pipefail

# ---- the lists: ADD A PACKAGE HERE, to the list of the target that runs it -------------------
# (e.g. espeak-ng for the terminal's spoken prompts -> DEMO_PKGS; nodejs/npm or chromium used only
# by tests or benches -> TEST_PKGS). A package that ships a system service: also add the service
# name (its /etc/init.d or systemd unit name) to the matching *_SERVICES list; the test
# tests/test_system_deps.py fails on an installed package's service that is left enabled.
#
# the demo: Debian's python3 and venv (PEP 668: the Makefile builds .venv from /usr/bin/python3),
# the broker and database it starts privately, Kivy's SDL2/GL libraries for the terminal window,
# a font for the PDF scorecard its hint produces
DEMO_PKGS=(
  python3 python3-venv python3-pip python3-dev
  mosquitto influxdb
  libmtdev1 libgl1 libgl1-mesa-dri libegl1 libgles2
  libsdl2-2.0-0 libsdl2-image-2.0-0 libsdl2-mixer-2.0-0 libsdl2-ttf-2.0-0
  fonts-dejavu-core
)
DEMO_SERVICES=(mosquitto influxdb)
# only the tests: Xvfb for Kivy, the CLI clients the technician's guide runs, systemd's notify
# tools, pdftotext/pdftoppm for the reports, the queue vendors' SQL servers (tests/support/sqlservers.py),
# Node for Grafana's own @grafana/data that the dashboard tests run (npm ci in tests/dashboards/grafana_js),
# espeak-ng for the terminal's spoken clips (made by `hailong fleet provision --audio`; the tests play them),
# Chromium and its WebDriver for the web rating page's browser tests (tests/web/test_browser.py, headless)
TEST_PKGS=(
  xvfb xauth mosquitto-clients influxdb-client systemd poppler-utils
  postgresql mariadb-server
  nodejs npm
  espeak-ng
  chromium chromium-driver
)
# rsync: a dependency of mariadb-server whose daemon Debian enables (it runs once /etc/rsyncd.conf exists)
TEST_SERVICES=(postgresql mariadb rsync)
# -------------------------------------------------------------------------------------------------

ROOT="$(cd "$(dirname "$0")/.." && pwd)"

usage() { echo "usage: $0 [--print-packages|--print-services] demo|test" >&2; exit 2; }

select_target() {  # $1 = demo|test -> PKGS, SERVICES
  case "$1" in
    demo) PKGS=("${DEMO_PKGS[@]}"); SERVICES=("${DEMO_SERVICES[@]}") ;;
    test) PKGS=("${DEMO_PKGS[@]}" "${TEST_PKGS[@]}"); SERVICES=("${DEMO_SERVICES[@]}" "${TEST_SERVICES[@]}") ;;
    *) usage ;;
  esac
}

case "${1:-demo}" in
  --print-packages) select_target "${2:-}"; printf '%s\n' "${PKGS[@]}"; exit 0 ;;
  --print-services) select_target "${2:-}"; printf '%s\n' "${SERVICES[@]}"; exit 0 ;;
  *) TARGET="${1:-demo}"; select_target "$TARGET" ;;
esac

LOG="${HAILONG_SETUP_LOG:-$ROOT/.hailong/install-system-deps.log}"
mkdir -p "$(dirname "$LOG")"
: >"$LOG"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

# one progress line per step; the step's own output goes to the log, its tail to the terminal on failure
step() {  # step "what" command...
  local what="$1"; shift
  printf '  %s ... ' "$what"
  echo "### $what: $*" >>"$LOG"
  if "$@" >>"$LOG" 2>&1; then
    echo "done"
  else
    local rc=$?
    echo "FAILED (exit $rc)"
    echo "last 25 lines of $LOG:" >&2
    tail -n 25 "$LOG" >&2
    exit "$rc"
  fi
}

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
  # NodeSource's nodejs package (often installed instead of Debian's) ships npm itself and
  # conflicts with Debian's npm: a working npm command is the npm the tests need
  [ "$p" = npm ] && command -v npm >/dev/null && continue
  missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "system packages for '$TARGET': installing ${#missing[@]} (${missing[*]}); apt log: $LOG"
  # policy-rc.d (exit 101) keeps apt's maintainer scripts from starting the services they install
  if [ -d /usr/sbin ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null; $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  step "apt-get update" $SUDO apt-get update
  step "apt-get install ${#missing[@]} packages" \
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "system packages for '$TARGET': all ${#PKGS[@]} installed"
fi

# every service of the installed packages: not enabled, not running (also fixes an older install)
unit_file() { [ -e "/lib/systemd/system/$1" ] || [ -e "/usr/lib/systemd/system/$1" ]; }
keep_off() {  # keep_off NAME
  local s="$1" unit="$1.service"
  if command -v systemctl >/dev/null && unit_file "$unit"; then
    # also removes the unit's aliases (influxd.service, mysql.service) and syncs the SysV links
    $SUDO systemctl disable --no-reload "$unit"
  fi
  # stopped through systemd only: without it as PID 1 (a container) policy-rc.d kept apt from starting
  # anything, and the init scripts' `status` finds daemons by name, i.e. the tests' private servers
  if [ -d /run/systemd/system ] && systemctl is-active --quiet "$unit"; then
    $SUDO systemctl stop "$unit"
  fi
  if [ -x "/etc/init.d/$s" ] && command -v update-rc.d >/dev/null; then
    $SUDO update-rc.d "$s" disable  # S links -> K links in every runlevel
  fi
  # what must hold afterwards, checked rather than assumed
  local left
  left="$(ls /etc/systemd/system/*.wants/"$unit" /etc/rc[2-5].d/S[0-9][0-9]"$s" 2>/dev/null || true)"
  if [ -n "$left" ]; then
    echo "still enabled: $left"
    return 1
  fi
}
keep_all_off() {
  local s
  for s in "${SERVICES[@]}"; do
    if [ -e "/etc/init.d/$s" ] || unit_file "$s.service"; then
      keep_off "$s" || return 1
    fi
  done
}
step "services left disabled and stopped: ${SERVICES[*]}" keep_all_off
