"""Where the weekly scorecard finds the fleet registry (centre and officer names) by itself.

A scorecard of bare ids ("ttphcc-ha-noi-cb01") tells a director nothing, so the report looks for
the registry in the places an installation already names it, in this order:

1. ``--registry DIR`` (or ``--fleet DIR``) on the command line;
2. ``registry`` in the dashboards settings (``--config`` TOML, env ``HAILONG_DASHBOARDS__REGISTRY``);
3. env ``HAILONG_FLEET``, as docs/technician.md exports it for every ``hailong fleet`` command;
4. ``registry`` in the ingest's config (``--ingest-config FILE``, default /etc/hailong/ingest.toml
   when it exists), resolved against that file as the ingest resolves it.

The ingest's TOML is read as a file (one key): the dashboards never import the ingest.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_INGEST_CONFIG = Path("/etc/hailong/ingest.toml")

HOW_TO_POINT = (
    "point the report at the fleet registry (centre and officer names) with --registry DIR, "
    "`registry = \"DIR\"` in the dashboards config (--config), env HAILONG_FLEET=DIR (as docs/technician.md "
    "exports it), or the ingest's config (--ingest-config FILE, default /etc/hailong/ingest.toml, key "
    "`registry`); or pass --allow-ids to print a scorecard of bare ids")


@dataclass(frozen=True)
class Found:
    path: Path
    source: str  # where it was named, for messages


class RegistryNotReadable(Exception):
    """A place names a registry that cannot be used (unreadable ingest config)."""


def _from_ingest_config(path: Path) -> Path | None:
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RegistryNotReadable(f"cannot read the ingest config {path}: {exc}") from None
    value = doc.get("registry")
    if not isinstance(value, str) or not value:
        return None
    registry = Path(value)
    # as ingest.config resolves it: a relative registry is relative to the ingest's TOML
    return registry if registry.is_absolute() else (path.parent / registry).resolve()


def find_registry(explicit: Path | None, configured: Path | None, ingest_config: Path | None,
                  environ: Mapping[str, str] | None = None) -> Found | None:
    """The first registry named by the places above, or None when none names one."""
    env = os.environ if environ is None else environ
    if explicit is not None:
        return Found(explicit, "--registry")
    if configured is not None:
        return Found(configured, "the dashboards config's registry")
    if env.get("HAILONG_FLEET"):
        return Found(Path(env["HAILONG_FLEET"]), "env HAILONG_FLEET")
    candidate = ingest_config if ingest_config is not None else DEFAULT_INGEST_CONFIG
    if ingest_config is not None or candidate.is_file():
        registry = _from_ingest_config(candidate)
        if registry is not None:
            return Found(registry, f"the ingest config {candidate}")
    return None
