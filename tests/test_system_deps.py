"""scripts/install-system-deps.sh leaves no system service enabled (README: "Nothing system-wide is
started or enabled"), corrects an earlier install, keeps apt's output in a log, and fails loudly.

These run the real script on this machine (as CI does: root, the packages already installed by
.ci/run), then read the enablement links systemd and SysV init use at boot."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install-system-deps.sh"
UNIT_DIRS = (Path("/lib/systemd/system"), Path("/usr/lib/systemd/system"))
# the init system itself, listed because tests use its tools: its units are the machine's, not ours
BASE = {"systemd"}


def _script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env=env, cwd=ROOT, stdin=subprocess.DEVNULL)


def _listed(kind: str, target: str) -> list[str]:
    out = _script(f"--print-{kind}", target)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def _depends(pkg: str) -> set[str]:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Depends},${Pre-Depends}", pkg], capture_output=True,
                         text=True).stdout
    return {re.split(r"[\s:(]", alt.split("|")[0].strip())[0] for alt in out.split(",") if alt.strip()}


def _installed_closure(pkgs: list[str], depth: int = 2) -> set[str]:
    """The listed packages and what apt pulled in for them (two levels: postgresql -> postgresql-15 ->
    postgresql-common, which ships the service)."""
    seen: set[str] = set()
    todo = [(p, 0) for p in pkgs if p not in BASE]
    while todo:
        pkg, d = todo.pop()
        if pkg in seen or pkg in BASE:
            continue
        seen.add(pkg)
        if d < depth:
            todo += [(q, d + 1) for q in _depends(pkg)]
    return seen


def _services_of(pkgs: set[str]) -> set[str]:
    """Names of the daemons these packages ship: systemd units with an [Install] section (what
    `enable` links) and SysV scripts started in a multi-user runlevel."""
    names: set[str] = set()
    for pkg in pkgs:
        files = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True).stdout.split()
        for f in map(Path, files):
            if f.parent in UNIT_DIRS and f.suffix == ".service" and "@" not in f.name and not f.is_symlink():
                if "[Install]" in f.read_text(errors="replace"):
                    names.add(f.stem)
            elif f.parent == Path("/etc/init.d") and f.is_file() and re.search(
                    r"^# Default-Start:.*[2-5]", f.read_text(errors="replace"), flags=re.M):
                names.add(f.name)
    return names


def _enabled_links(name: str) -> list[Path]:
    wants = list(Path("/etc/systemd/system").glob(f"*.wants/{name}.service"))
    rc = [p for n in "2345" for p in Path(f"/etc/rc{n}.d").glob(f"S[0-9][0-9]{name}")]
    return wants + rc


def test_every_installed_service_is_left_disabled_even_one_enabled_before() -> None:
    services = _listed("services", "test")
    # an earlier install (before this script kept services off) had enabled them: re-create that
    systemctl = shutil.which("systemctl")
    assert systemctl, "systemd's systemctl is one of the listed packages"
    for name in ("mosquitto", "postgresql"):
        subprocess.run([systemctl, "enable", f"{name}.service"], capture_output=True, check=True)
        assert _enabled_links(name), f"systemctl enable {name} made no link to test with"
    first = _script("test")
    assert first.returncode == 0, first.stdout + first.stderr
    second = _script("test")  # idempotent: nothing left to change, still succeeds
    assert second.returncode == 0, second.stdout + second.stderr
    shipped = _services_of(_installed_closure(_listed("packages", "test")))
    assert {"mosquitto", "influxdb", "postgresql", "mariadb"} <= shipped, shipped
    # every daemon the installed packages ship is in the script's list, and none is enabled
    assert shipped <= set(services), f"services not kept off by the script: {sorted(shipped - set(services))}"
    enabled = {name: _enabled_links(name) for name in shipped}
    assert not any(enabled.values()), {k: [str(p) for p in v] for k, v in enabled.items() if v}
    # the SysV side is disabled (K links), not merely absent
    assert list(Path("/etc/rc2.d").glob("K[0-9][0-9]mosquitto"))


def test_the_demo_installs_no_test_only_server() -> None:
    demo, test = _listed("packages", "demo"), _listed("packages", "test")
    assert set(demo) < set(test)
    assert not {"postgresql", "mariadb-server", "xvfb"} & set(demo)
    assert {"mosquitto", "influxdb", "python3-venv"} <= set(demo)
    assert _listed("services", "demo") == ["mosquitto", "influxdb"]


def test_a_step_prints_one_line_and_apt_goes_to_the_log(tmp_path: Path) -> None:
    """Nothing installed (dpkg-query says so) and apt-get failing: one progress line per step, the
    failure's exit code and the log's tail on stderr; apt's own chatter only in the log."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")
    (stubs / "apt-get").write_text('#!/bin/sh\nfor i in $(seq 1 200); do echo "apt chatter $i"; done\n'
                                   'if [ "$1" = install ]; then echo "E: Unable to locate package" >&2; exit 100; fi\n')
    (stubs / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    log = tmp_path / "setup.log"
    env = os.environ | {"PATH": f"{stubs}:{os.environ['PATH']}", "HAILONG_SETUP_LOG": str(log)}
    out = _script("demo", env=env)
    assert out.returncode == 100, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("system packages for 'demo': installing 16 ("), lines
    assert lines[1] == "  apt-get update ... done"
    assert lines[2].startswith("  apt-get install 16 packages ... FAILED (exit 100)")
    assert len(lines) == 3 and "apt chatter" not in out.stdout
    assert f"last 25 lines of {log}:" in out.stderr and "E: Unable to locate package" in out.stderr
    text = log.read_text()
    assert text.count("apt chatter 200") == 2 and "### apt-get install 16 packages" in text
