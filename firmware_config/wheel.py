"""The project's own wheel, built from the checkout, for terminal bundles.

hailong is not published on PyPI, so a terminal's first boot cannot ``pip install
hailong[device]`` from an index: the bundle carries the wheel and the Pi installs it
by file (third-party dependencies still come from the Pi's package index).

The wheel is built with ``pip wheel --no-deps`` from a copy of the checkout's
packages (so concurrent builds never share setuptools' in-tree ``build/``) and
cached by a hash of those sources: provisioning 20 terminals, or running the
tests, builds it once per source change.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

PACKAGES = ("broker", "device", "ingest", "dashboards", "firmware_config", "hailong")
SOURCE_FILES = ("pyproject.toml", "README.md")
BUILD_TIMEOUT_S = 300


class WheelError(Exception):
    """The wheel cannot be built or found; the message says what to do instead."""


def checkout_root() -> Path | None:
    """The source checkout this code runs from (an editable install), or None for an installed wheel."""
    root = Path(__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return None
    try:
        name = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("name")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return root if name == "hailong" else None


def _sources(root: Path) -> list[Path]:
    files = [root / f for f in SOURCE_FILES if (root / f).is_file()]
    for pkg in PACKAGES:
        files += sorted(p for p in (root / pkg).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    return files


def source_digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in _sources(root):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hailong" / "wheels"


def project_wheel(root: Path | None = None) -> Path:
    """The hailong wheel for the checkout's current sources (built on first use, then cached)."""
    root = root or checkout_root()
    if root is None:
        raise WheelError("no hailong source checkout here to build the terminal wheel from: "
                         "pass --wheel FILE (a hailong-*.whl) or --pip-spec SPEC")
    target = cache_dir() / source_digest(root)
    found = sorted(target.glob("hailong-*.whl"))
    if found:
        return found[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hailong-wheel-") as tmp:
        src = Path(tmp) / "src"
        for f in _sources(root):
            dest = src / f.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
        built = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
               "--wheel-dir", str(built), str(src)]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WheelError(f"building the hailong wheel failed: {exc}") from None
        wheels = sorted(built.glob("hailong-*.whl"))
        if res.returncode != 0 or not wheels:
            raise WheelError(f"building the hailong wheel failed ({' '.join(cmd)}):\n{res.stderr.strip()}")
        # publish atomically: a concurrent build of the same sources just wins or loses the rename
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
        shutil.copy2(wheels[0], staging / wheels[0].name)
        try:
            staging.rename(target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    found = sorted(target.glob("hailong-*.whl"))
    if not found:
        raise WheelError(f"the hailong wheel was built but is missing from {target}")
    return found[0]
