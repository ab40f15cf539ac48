"""The layer order is enforced: import-linter keeps the tree, and breaks on an upward import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["broker", "device", "ingest", "dashboards", "firmware_config", "hailong"]


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
