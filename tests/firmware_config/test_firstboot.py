"""A terminal's first boot without hailong on PyPI: the bundle carries the project's wheel, and the
bundle's own install step (install-app.sh, run by install.sh on the Pi) installs it into a fresh venv,
with third-party dependencies from the machine's package index. The installed `hailong device run`
then starts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hailong.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "example-fleet"
LIB = "usr/local/lib/hailong"
pytestmark = pytest.mark.timeout(600)


def _debian_python() -> str:
    # the Pi runs its OS's python3; here Debian's, never the interpreter running the tests' venv
    for candidate in ("/usr/bin/python3", getattr(sys, "_base_executable", "")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise AssertionError("no base python3 to build the terminal venv with")


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of the Pi's install step: none of this test run's Python settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    return env | extra


def test_bundle_installs_hailong_from_its_own_wheel(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, fleet)
    res = CliRunner().invoke(main, ["fleet", "--fleet", str(fleet), "provision", "qn-q01",
                                    "--out", str(tmp_path / "bundles"), "--broker-host", "mqtt.qn.example.vn"])
    assert res.exit_code == 0, res.output
    bundle = tmp_path / "bundles" / "qn-q01"
    lib = bundle / "rootfs" / LIB
    wheels = sorted((lib / "wheels").glob("hailong-*.whl"))
    assert len(wheels) == 1, "the bundle must carry exactly one hailong wheel"
    wheel = wheels[0]
    # both first-boot paths write the wheel and the install step onto the Pi
    doc = yaml.safe_load((bundle / "boot" / "user-data").read_text())
    written = {f["path"] for f in doc["write_files"]}
    assert f"/{LIB}/wheels/{wheel.name}" in written and f"/{LIB}/install-app.sh" in written
    assert f"/{LIB}/wheels/{wheel.name}" in (bundle / "boot" / "firstrun.sh").read_text()
    assert "sh /usr/local/lib/hailong/install-app.sh" in (lib / "install.sh").read_text()

    venv = tmp_path / "pi-venv"
    run = subprocess.run(["sh", str(lib / "install-app.sh")], capture_output=True, text=True, timeout=540,
                         env=_clean_env(HAILONG_LIB=str(lib), HAILONG_VENV=str(venv),
                                        HAILONG_PYTHON=_debian_python()), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0." in run.stdout  # the script's own `hailong --version` check

    # hailong came from the bundle's wheel (a file URL), not from an index or this checkout
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import importlib.metadata as m, json, hailong, sys; d = m.distribution('hailong');"
         "print(json.dumps({'direct': json.loads(d.read_text('direct_url.json') or '{}'),"
         "'file': hailong.__file__, 'exe': sys.executable}))"],
        capture_output=True, text=True, timeout=60, env=_clean_env(), cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    info = json.loads(probe.stdout)
    assert info["direct"]["url"] == wheel.resolve().as_uri(), info
    assert info["file"].startswith(str(venv)), info
    checkout = str(Path(__file__).resolve().parents[2])
    assert not info["file"].startswith(checkout + "/hailong"), info

    help_run = subprocess.run([str(venv / "bin" / "hailong"), "device", "run", "--help"], capture_output=True,
                              text=True, timeout=120, env=_clean_env(), cwd=tmp_path)
    assert help_run.returncode == 0, help_run.stdout + help_run.stderr
    assert "--config" in help_run.stdout and "--on-config-error" in help_run.stdout


def test_pip_spec_overrides_the_bundled_wheel(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, fleet)
    spec = "hailong[device] @ https://srv.qn.example.vn/wheels/hailong-0.1.0-py3-none-any.whl"
    res = CliRunner().invoke(main, ["fleet", "--fleet", str(fleet), "provision", "qn-q01", "--out",
                                    str(tmp_path / "b"), "--pip-spec", spec])
    assert res.exit_code == 0, res.output
    lib = tmp_path / "b" / "qn-q01" / "rootfs" / LIB
    assert not (lib / "wheels").exists()
    assert f"'{spec}'" in (lib / "install-app.sh").read_text()
    subprocess.run(["sh", "-n", str(lib / "install-app.sh")], check=True)
