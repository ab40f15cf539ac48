"""The layer order is enforced: import-linter keeps the tree, and breaks on an upward import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the packages import-linter checks are the project's production packages: one list, in pyproject.toml
PACKAGES: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"][
    "root_packages"]


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--config", str(tree / "pyproject.toml"), "--no-cache"], cwd=tree,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


def _copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(ROOT / "pyproject.toml", tree)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tree / pkg, ignore=shutil.ignore_patterns("__pycache__", "generated"))
    return tree


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(_copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "upward", "contract"), [
    ("broker/contract.py", "import hailong.cli", "Package layers"),
    ("broker/kernel/settings.py", "import broker.fleet.registry", "Inside broker"),
    ("ingest/points.py", "import device.state", "never import each other"),
    ("device/state.py", "import ingest.tickets", "never import each other"),
    ("dashboards/queries.py", "import firmware_config.provision", "Dashboards know nothing"),
    ("device/outbox.py", "import influxdb_client", "runs on a Pi"),
    ("qms_bridge/mapping.py", "import ingest.tickets", "never import each other"),
    ("web/cli.py", "import qms_bridge.outbox", "never import each other"),
    ("dashboards/queries.py", "import ingest.service", "never the ingest"),
    ("broker/mqtt/consumer.py", "import paho.mqtt.client", "do not use paho"),
    ("national/service.py", "import ingest.writer", "never import each other"),
    ("dashboards/queries.py", "import national.store", "never the ingest"),
    ("national/store.py", "import federation.publish", "Package layers"),
])
def test_an_upward_import_breaks_a_contract(tmp_path: Path, module: str, upward: str, contract: str) -> None:
    tree = _copy_tree(tmp_path)
    target = tree / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{upward}  # noqa\n", encoding="utf-8")
    result = _lint(tree)
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if line.rstrip().endswith("BROKEN")]
    assert any(contract in line for line in broken) or contract in result.stdout.split("Broken contracts")[-1], \
        result.stdout


def production_modules() -> list[str]:
    """Every module of every production package, by dotted name."""
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out.append(".".join(parts))
    return out


def _import_alone(module: str, kivy_home: Path) -> tuple[str, str]:
    """Import one module in a fresh interpreter: no earlier import can have prepared it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "KIVY", "DISPLAY"))}
    env.update({"PYTHONPATH": str(ROOT), "KIVY_NO_ARGS": "1", "KIVY_NO_CONSOLELOG": "1",
                "KIVY_HOME": str(kivy_home)})
    r = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    return module, "" if r.returncode == 0 else f"exit {r.returncode}: " + (r.stderr + r.stdout).strip()[-400:]


def test_every_production_module_imports_alone(tmp_path: Path) -> None:
    """No module depends on another having been imported first (an import cycle, a missing import)."""
    modules = production_modules()
    assert len(modules) > 100 and "broker.contract" in modules and "qms_bridge.service" in modules
    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f"{m}: {err}" for m, err in pool.map(lambda m: _import_alone(m, tmp_path), modules) if err]
    assert not failures, "modules that fail to import alone:\n" + "\n".join(failures)
