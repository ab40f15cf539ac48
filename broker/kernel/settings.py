"""Every config model's base, its loader and its one secret reader.

Shared by the device, ingest, dashboards and fleet tools so that every program reports a
bad config the same way: file, key, problem, then exits before doing anything.

- :class:`Settings` is the base of every config model: unknown keys are refused and a
  loaded config is frozen (wire payloads in broker/contract.py are not configs).
- Env overrides use ``{PREFIX}__SECTION__KEY=value`` (double underscores, case
  insensitive), e.g. ``HAILONG_INGEST__INFLUX__TOKEN``. Values are parsed as TOML
  scalars when possible ("30" -> 30, "true" -> true) and kept as strings otherwise.
- Secrets come from env (an inline ``SecretStr`` field such as ``password``) or from its
  ``*_file`` sibling declared as :data:`SecretFile` (the file's first line), never from the
  TOML itself. :func:`load_model` reads every secret file before returning, so a missing,
  unreadable or empty file is a :class:`ConfigError` at start, not an OSError later.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, PrivateAttr, SecretStr, ValidationError

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # a TOML bare key

class ConfigError(Exception):
    """A config problem, with the file and key it is about."""

    def __init__(self, path: Path | str | None, key: str | None, problem: str) -> None:
        self.path = str(path) if path is not None else "<env>"
        self.key = key
        self.problem = problem
        where = f"{self.path}: {key}" if key else self.path
        super().__init__(f"config error in {where}: {problem}")


class SettingError(ValueError):
    """Raised by a model validator about one key (dotted, relative to the model raising it)."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


class _SecretFileMarker:
    """Field metadata: this ``<name>_file`` path holds the secret ``<name>`` on its first line."""

    def __repr__(self) -> str:
        return "SecretFile"


SECRET_FILE = _SecretFileMarker()
SecretFile = Annotated[Path | None, SECRET_FILE]


def read_secret_file(file: Path, path: Path | str | None, key: str) -> SecretStr:
    """The one secret reader: the first line of ``file``, stripped; every failure is a ConfigError."""
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(path, key, f"secret file {file}: does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(path, key, f"secret file {file}: is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(path, key, f"secret file {file}: cannot be read: {exc.strerror or exc}") from None
    value = lines[0].strip() if lines else ""
    if not value:
        raise ConfigError(path, key, f"secret file {file}: is empty (the secret is its first line)")
    return SecretStr(value)


class Settings(BaseModel):
    """Base of every config model: unknown keys refused, frozen, secrets from env or ``*_file``.

    A secret ``x`` is an inline field ``x: SecretStr | None`` (set it through env) beside
    ``x_file: SecretFile``. The inline value wins; otherwise the file's first line,
    read once (at load by :func:`load_model`) and kept as a SecretStr so it is never logged.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret_names: ClassVar[tuple[str, ...]] = ()
    # name -> (file it came from, its first line); keyed by file too, so a model_copy that
    # points ``x_file`` elsewhere reads the new file instead of reusing the old secret
    _secrets: dict[str, tuple[Path, SecretStr]] = PrivateAttr(default_factory=dict)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        names = []
        for field_name, info in cls.model_fields.items():
            if any(m is SECRET_FILE for m in info.metadata):
                if not field_name.endswith("_file") or field_name[:-5] not in cls.model_fields:
                    raise TypeError(f"{cls.__name__}.{field_name}: a SecretFile is named <secret>_file "
                                    "beside an inline <secret> field")
                names.append(field_name[:-5])
        cls.secret_names = tuple(names)

    def secret_of(self, name: str, path: Path | str | None = None, key_prefix: str = "") -> str | None:
        """Secret ``name``: inline (env) value, else the first line of ``<name>_file``, else None."""
        inline = getattr(self, name)
        if inline is not None:
            return inline.get_secret_value() if isinstance(inline, SecretStr) else str(inline)
        file: Path | None = getattr(self, f"{name}_file")
        if file is None:
            return None
        cached = self._secrets.get(name)
        if cached is None or cached[0] != file:
            cached = (file, read_secret_file(file, path, f"{key_prefix}{name}_file"))
            self._secrets[name] = cached
        return cached[1].get_secret_value()


def _sections(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, Settings]]:
    """Every Settings inside ``model`` (itself included), with its dotted key prefix."""
    if isinstance(model, Settings):
        yield prefix, model
    for name in type(model).model_fields:
        value = getattr(model, name)
        items: list[tuple[str, Any]]
        if isinstance(value, dict):
            items = [(f"{name}.{k}", v) for k, v in value.items()]
        elif isinstance(value, list | tuple):
            items = [(f"{name}.{i}", v) for i, v in enumerate(value)]
        else:
            items = [(name, value)]
        for key, item in items:
            if isinstance(item, BaseModel):
                yield from _sections(item, f"{prefix}{key}.")


def secret_files(model: BaseModel) -> Iterator[tuple[str, Path]]:
    """(dotted key, path) of every secret file ``model`` names, e.g. ("mqtt.password_file", ...)."""
    for prefix, section in _sections(model):
        for name in section.secret_names:
            file = getattr(section, f"{name}_file")
            if file is not None:
                yield f"{prefix}{name}_file", file


def resolve_secrets(model: BaseModel, path: Path | str | None = None) -> None:
    """Read every secret file in ``model`` now, so a bad one stops the program before it starts."""
    for prefix, section in _sections(model):
        for name in section.secret_names:
            section.secret_of(name, path, prefix)


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
    """One ConfigError naming the first bad key; a SettingError's own key is appended to where it was raised."""
    problems: list[tuple[str, str]] = []
    first_key = None
    for err in exc.errors(include_url=False):
        parts = [str(p) for p in err["loc"]]
        msg = err["msg"]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, SettingError):
            parts.append(cause.key)
            msg = cause.problem
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        key = ".".join(parts)
        first_key = first_key or key
        problems.append((key, msg))
    if len(problems) == 1:  # the key is already in "FILE: KEY: problem"
        return ConfigError(path, first_key, problems[0][1])
    return ConfigError(path, first_key, "; ".join(f"{k}: {m}" if k else m for k, m in problems))


T = TypeVar("T", bound=BaseModel)


def toml_key(name: str) -> str:
    """``name`` written as ONE TOML key: bare where TOML allows it (``[A-Za-z0-9_-]+``), else a quoted
    basic string, so a dotted identity (fed.<province>, svc.qms.<centre>) is not read back as nested
    tables and a key with a quote or backslash stays valid TOML."""
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def read_config_text(path: Path, missing: str = "file not found") -> str:
    """A config file's text; missing or unreadable is a ConfigError naming the file (``missing``: what to
    say when it does not exist, e.g. which command writes it)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, None, missing) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, f"cannot read: {exc}") from None


def load_model(model: type[T], path: Path | str | None, env_prefix: str,
               environ: dict[str, str] | None = None, *, read_secrets: bool = True) -> T:
    """Read ``path`` (TOML) plus env overrides into ``model``, then its secret files; raise ConfigError.

    ``read_secrets=False`` is for tools that only check a config's shape (``--check`` modes): a
    secret is then read when first used, with the same ConfigError if its file is missing.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        text = read_config_text(p)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(p, None, f"not valid TOML: {exc}") from None
    data = apply_env(data, env_prefix, environ)
    try:
        cfg = model.model_validate(data, context={"base_dir": Path(path).parent if path else Path.cwd()})
    except ValidationError as exc:
        raise validation_to_config_error(path, exc) from None
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(path, None, str(exc)) from None
    if read_secrets:
        resolve_secrets(cfg, path)
    return cfg
