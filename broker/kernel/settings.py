"""Load a TOML config file into a pydantic model, with env overrides.

Shared by the device, ingest and fleet tools so that every program reports a
bad config the same way: file, key, problem, then exits before doing anything.

Env overrides use ``{PREFIX}__SECTION__KEY=value`` (double underscores, case
insensitive), e.g. ``HAILONG_INGEST__INFLUX__TOKEN``. Values are parsed as TOML
scalars when possible ("30" -> 30, "true" -> true) and kept as strings otherwise.
Secrets should come from env or ``*_file`` keys, never from the TOML itself.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)


class ConfigError(Exception):
    """A config problem, with the file and key it is about."""

    def __init__(self, path: Path | str | None, key: str | None, problem: str) -> None:
        self.path = str(path) if path is not None else "<env>"
        self.key = key
        self.problem = problem
        where = f"{self.path}: {key}" if key else self.path
        super().__init__(f"config error in {where}: {problem}")


def _scalar(text: str) -> Any:
    try:
        return tomllib.loads(f"x = {text}")["x"]
    except tomllib.TOMLDecodeError:
        return text


def apply_env(data: dict[str, Any], prefix: str, environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    marker = prefix.upper() + "__"
    for name, value in env.items():
        if not name.upper().startswith(marker):
            continue
        keys = [k.lower() for k in name[len(marker):].split("__") if k]
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(None, name, f"cannot override {'.'.join(keys)}: {k} is not a table")
        if keys:
            node[keys[-1]] = _scalar(value)
    return data


def validation_to_config_error(path: Path | str | None, exc: ValidationError) -> ConfigError:
    problems = []
    first_key = None
    for err in exc.errors(include_url=False):
        key = ".".join(str(p) for p in err["loc"])
        first_key = first_key or key
        problems.append(f"{key}: {err['msg']}")
    return ConfigError(path, first_key, "; ".join(problems))


def load_model(model: type[T], path: Path | str | None, env_prefix: str,
               environ: dict[str, str] | None = None) -> T:
    """Read ``path`` (TOML) plus env overrides into ``model``; raise ConfigError."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(p, None, "file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(p, None, f"not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(p, None, f"cannot read: {exc}") from None
    data = apply_env(data, env_prefix, environ)
    try:
        cfg = model.model_validate(data, context={"base_dir": Path(path).parent if path else Path.cwd()})
    except ValidationError as exc:
        raise validation_to_config_error(path, exc) from None
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(path, None, str(exc)) from None
    return cfg


def read_secret(value: str | None, file: Path | None, what: str, path: Path | str | None = None) -> str | None:
    """A secret given inline (ideally via env) or in a credentials file (first line)."""
    if value:
        return value
    if file is None:
        return None
    try:
        return file.read_text(encoding="utf-8").splitlines()[0].strip()
    except (OSError, IndexError) as exc:
        raise ConfigError(path, what, f"cannot read secret file {file}: {exc}") from None
