"""``hailong config reference``: docs/configuration.md, generated from the settings models.

Every config file a person writes (device.toml, ingest.toml, qms.toml, ...) is read by a pydantic
model built on :class:`broker.kernel.settings.Settings`. The reference is made from those models,
never by hand, so a key cannot exist without being documented and a documented key cannot be
gone: tests/test_config_reference.py regenerates the file and fails on any difference.

The files and their models are listed in :data:`FILES`. A ``Settings`` subclass that no listed
file reaches is still documented, under "Other settings models", so a model added elsewhere
shows up after a regeneration instead of being silently left out.
"""

from __future__ import annotations

import ast
import enum
import importlib
import re
import tomllib
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
import click
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from broker.kernel.settings import SECRET_FILE, Settings, toml_key

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("broker", "storage", "device", "ingest", "qms_bridge", "national", "web", "dashboards",
            "firmware_config", "federation", "hailong")
DEFAULT_OUT = Path("docs/configuration.md")
COMMAND = "hailong config reference --out docs/configuration.md"


@dataclass(frozen=True)
class Layout:
    """How a model's keys appear in its file: at the top, or inside ``[prefix.<id>]`` tables whose
    name gives some fields (the registry files: ``[centre.<id>]`` gives ``id``)."""

    model: str  # "module:Class"
    prefix: str = ""
    from_table_name: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConfigFile:
    name: str
    title: str
    used_by: str
    layouts: tuple[Layout, ...]
    env_prefix: str | None = None
    examples: tuple[str, ...] = ()  # shipped example files (globs, repository-relative)
    note: str = ""

    def models(self) -> list[tuple[Layout, type[Settings]]]:
        out = []
        for lay in self.layouts:
            module, cls = lay.model.split(":")
            out.append((lay, getattr(importlib.import_module(module), cls)))
        return out

    def example_files(self, root: Path = ROOT) -> list[Path]:
        return sorted(p for g in self.examples for p in root.glob(g))


FILES: tuple[ConfigFile, ...] = (
    ConfigFile("device.toml", "the counter terminal", "hailong device run --config device.toml",
               (Layout("device.config:DeviceConfig"),), "HAILONG_DEVICE", ("device/examples/device.toml",),
               "Written by `hailong fleet provision` into each terminal's bundle; edit the fleet, not this file."),
    ConfigFile("ingest.toml", "the ingest service", "hailong ingest run --config ingest.toml",
               (Layout("ingest.config:IngestConfig"),), "HAILONG_INGEST", ("deploy/ingest.example.toml",)),
    ConfigFile("dashboards.toml", "dashboards, alert rules, rollups and reports",
               "hailong dashboards build|rollup --config dashboards.toml; hailong report weekly --config ...",
               (Layout("dashboards.settings:DashboardSettings"),), "HAILONG_DASHBOARDS"),
    ConfigFile("push.toml", "pushing dashboards into Grafana", "hailong dashboards push --config push.toml",
               (Layout("dashboards.push:PushConfig"),), "HAILONG_PUSH"),
    ConfigFile("qms.toml", "the queue-system (QMS) bridge", "hailong qms bridge --config qms.toml",
               (Layout("qms_bridge.config:BridgeConfig"),), "HAILONG_QMS", ("deploy/qms/*.toml",),
               "How to map a vendor's webhook or database: docs/qms-integration.md."),
    ConfigFile("web.toml", "the web rating service (citizens rate from a phone)",
               "hailong web serve --config web.toml",
               (Layout("web.config:WebConfig"), Layout("web.config:CentreScale", "centres.<id>")), "HAILONG_WEB",
               ("deploy/web.example.toml",), "Links, keys, deployment and privacy: docs/web-rating.md."),
    ConfigFile("<fleet>/broker.toml", "how the fleet's broker is deployed",
               "hailong broker render --fleet DIR; hailong fleet provision (broker name and ports)",
               (Layout("broker.mosquitto.render:RenderOptions"),), "HAILONG_BROKER", (),
               "Optional; `hailong broker render` flags write their values here, so later renders keep them."),
    ConfigFile("federation.toml", "a province's daily aggregates toward the nation",
               "hailong federation publish --config federation.toml --days N",
               (Layout("federation.config:FederationConfig"),), "HAILONG_FEDERATION",
               ("deploy/federation.example.toml",)),
    ConfigFile("national.toml", "the national consumer (Ministry)", "hailong national consume --config national.toml",
               (Layout("national.config:NationalConfig"),), "HAILONG_NATIONAL", ("deploy/national.example.toml",)),
    ConfigFile("<national>/national-broker.toml", "how the national broker is deployed",
               "hailong national render --national DIR", (Layout("broker.mosquitto.national:NationalBrokerOptions"),),
               "HAILONG_NATIONAL_BROKER"),
    ConfigFile("<national>/provinces.toml", "the provinces of the federation and their centres",
               "hailong national render --national DIR",
               (Layout("broker.mosquitto.national:Province", "province.<id>"),), None),
    ConfigFile("provisioning", "provisioning a terminal (flags, not a file)",
               "hailong fleet provision ... (its flags and <fleet>/broker.toml fill these)",
               (Layout("firmware_config.provision:ProvisionSettings"),), None, (),
               "Not read from a file of its own: the provisioning command builds these settings from its "
               "flags and broker.toml, and validates them with this model."),
    ConfigFile("<fleet>/centres.toml", "the fleet registry: centres and their counters",
               "every program given --fleet / registry = DIR",
               (Layout("broker.fleet.registry:Centre", "centre.<id>", ("id",)),
                Layout("broker.fleet.registry:Counter", "centre.<id>.counter.<id>", ("id", "centre"))),
               None, ("deploy/example-fleet/centres.toml",), "Format and commands: docs/fleet.md."),
    ConfigFile("<fleet>/devices.toml", "the fleet registry: terminals", "every program given --fleet / registry = DIR",
               (Layout("broker.fleet.registry:Device", "device.<id>", ("id",)),), None,
               ("deploy/example-fleet/devices.toml",)),
    ConfigFile("<fleet>/officers.toml", "the fleet registry: officers", "every program given --fleet / registry = DIR",
               (Layout("broker.fleet.registry:Officer", "officer.<id>", ("id",)),), None,
               ("deploy/example-fleet/officers.toml",)),
)

# Examples for keys that no shipped example file sets and whose default is unset or required
# (a model may also give its own: Field(examples=[...]) wins over these). "Model.field" -> value.
EXAMPLES: dict[str, Any] = {
    "DeviceConfig.officer_id": "cb-lan", "DeviceConfig.reasons_max_score": 2, "GpioSettings.served_pin": 26,
    "MqttSettings.username": "svc.qms.ttphcc-ha-noi", "MqttSettings.password_file": "/etc/hailong/secrets/mqtt.pass",
    "MqttSettings.cert_file": "/etc/hailong/device.crt", "MqttSettings.key_file": "/etc/hailong/device.key",
    "InfluxConnection.token_file": "/run/secrets/influx_token", "InfluxConnection.username": "hailong-reader",
    "InfluxConnection.password_file": "/run/secrets/influx_password", "HealthSettings.http_port": 8788,
    "PushConfig.grafana_url": "https://grafana.example.vn", "PushConfig.token_file": "/run/secrets/grafana_token",
    "PushConfig.province": "ha-noi", "CentreSpec.id": "ttphcc-ha-noi",
    "CentreSpec.name": "Trung tâm Phục vụ hành chính công thành phố Hà Nội",
    "PushConfig.dashboards_config": "/etc/hailong/dashboards.toml", "WebhookSettings.header": "X-Qms-Signature",
    "WebhookSettings.time_format": "%d/%m/%Y %H:%M:%S",
    "WebhookSettings.secret_file": "/etc/hailong/secrets/qms-webhook",
    "SqlSettings.db_timezone": "UTC", "SqlSource.schema_name": "qms", "RenderOptions.local_port": 1883,
    "RenderOptions.run_as": "mosquitto", "ProvisionSettings.broker_host": "broker.ttphcc.example.vn",
    "ProvisionSettings.pip_spec": "http://192.168.1.10/wheels/hailong-0.1.0-py3-none-any.whl",
    "ProvisionSettings.wheel": "dist/hailong-0.1.0-py3-none-any.whl", "ProvisionSettings.wifi_ssid": "TTPVHCC-Staff",
}
# secrets of settings that are not a file of their own: the variable they are read from
SECRET_ENV: dict[str, str] = {"wifi_password": "HAILONG_WIFI_PASSWORD"}

UNITS = (("_ms", "milliseconds"), ("_s", "seconds"), ("_min", "minutes"), ("_days", "days"),
         ("_bytes", "bytes"), ("_c", "°C"), ("_mb", "MB"), ("_pct", "%"), ("port", "TCP port"))


@dataclass
class Key:
    key: str
    type: str
    default: str
    unit: str
    allowed: str
    description: str
    example: str = ""
    secret: bool = False



@dataclass
class _Constraints:
    items: list[str] = field(default_factory=list)

    def add_meta(self, meta: Any) -> None:
        for name, op in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(meta, name, None)
            if value is not None and isinstance(meta, at.Ge | at.Gt | at.Le | at.Lt | at.Interval):
                self.items.append(f"{op} {_num(value)}")
        if isinstance(meta, at.MinLen | at.Len) and meta.min_length:
            self.items.append(f"at least {meta.min_length} long")
        if isinstance(meta, at.MaxLen | at.Len) and getattr(meta, "max_length", None) is not None:
            self.items.append(f"at most {meta.max_length} long")
        pattern = getattr(meta, "pattern", None)
        if isinstance(pattern, str):
            self.items.append(f"`{pattern}`")


def _num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return f"{v:,}".replace(",", "_") if isinstance(v, int) and abs(v) >= 100_000 else str(v)


def toml_value(v: Any) -> str:
    """A value as it is written in TOML (what the reader copies into a file)."""
    if isinstance(v, SecretStr):
        return "(secret)"
    if isinstance(v, enum.Enum):
        v = v.value
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return _num(v)
    if isinstance(v, str | Path):
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple | set | frozenset):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{toml_key(str(k))} = {toml_value(x)}" for k, x in v.items()) + " }" if v else "{}"
    if isinstance(v, BaseModel):
        return toml_value(v.model_dump(mode="json", by_alias=True))
    return str(v)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) < len(get_args(tp)):
            return (args[0] if len(args) == 1 else Union[tuple(args)]), True  # noqa: UP007
    return tp, False


def describe_type(tp: Any, cons: _Constraints) -> str:
    """Plain words for a type ('integer', 'list of string', 'table: string -> integer')."""
    if get_origin(tp) is Annotated:
        base, *meta = get_args(tp)
        for m in meta:
            if isinstance(m, FieldInfo):
                for mm in m.metadata:
                    cons.add_meta(mm)
            else:
                cons.add_meta(m)
        return describe_type(base, cons)
    tp, optional = _strip_optional(tp)
    if optional:
        return describe_type(tp, cons)
    origin = get_origin(tp)
    if origin is Literal:
        values = get_args(tp)
        cons.items.append(", ".join(toml_value(v) for v in values))
        kinds = {type(v) for v in values}
        return "integer" if kinds == {int} else "string"
    if origin in (list, tuple, set, frozenset):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        inner = _Constraints()
        text = "list of " + (describe_type(args[0], inner) if args else "values")
        cons.items += [f"each {c}" for c in inner.items]
        return text
    if origin is dict:
        k, v = get_args(tp) or (str, Any)
        kc, vc = _Constraints(), _Constraints()
        text = f"table: {describe_type(k, kc)} -> {describe_type(v, vc)}"
        cons.items += [f"key {c}" for c in kc.items] + [f"value {c}" for c in vc.items]
        return text
    if origin in (Union, types.UnionType):
        return " or ".join(describe_type(a, cons) for a in get_args(tp))
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            cons.items.append(", ".join(toml_value(m.value) for m in tp))
            return "string"
        if issubclass(tp, bool):
            return "boolean"
        if issubclass(tp, int):
            return "integer"
        if issubclass(tp, float):
            return "number"
        if issubclass(tp, SecretStr):
            return "secret string"
        if issubclass(tp, Path):
            return "path"
        if issubclass(tp, str):
            return "string"
        if issubclass(tp, BaseModel):
            return "table"
    return "any value" if tp is Any else str(tp)


def _model_of(tp: Any) -> tuple[type[BaseModel] | None, str]:
    """(nested model, how its keys hang below the field: '.', '[].', '.<name>.') or (None, '')."""
    tp, _ = _strip_optional(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp, "."
    origin, args = get_origin(tp), get_args(tp)
    if origin in (list, tuple) and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0], "[]."
    if origin is dict and len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel):
        return args[1], ".<name>."
    return None, ""


def _unit(name: str) -> str:
    return next((unit for suffix, unit in UNITS if name.endswith(suffix)), "")


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    return f"`{toml_value(value)}`"


def model_keys(model: type[BaseModel], prefix: str = "", skip: tuple[str, ...] = (),
               seen: tuple[type, ...] = ()) -> Iterator[Key]:
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        key = prefix + (info.alias or name)
        nested, joint = _model_of(info.annotation)
        if nested is not None and nested not in seen:
            yield from model_keys(nested, key + joint, seen=(*seen, model))
            continue
        cons = _Constraints()
        for meta in info.metadata:
            cons.add_meta(meta)
        tp = describe_type(info.annotation, cons)
        secret = tp == "secret string"
        description = (info.description or "").strip()
        if any(m is SECRET_FILE for m in info.metadata):
            description += " (the secret is the file's first line; never put it in this file)"
        elif secret:
            description += f" (secret: set it through env, or in `{info.alias or name}_file`)"
        example = (info.examples or [EXAMPLES[f"{model.__name__}.{name}"]]) \
            if info.examples or f"{model.__name__}.{name}" in EXAMPLES else None
        yield Key(key, tp, _default(info), _unit(name), "; ".join(dict.fromkeys(cons.items)), description,
                  example=f"`{toml_value(example[0])}`" if example else "", secret=secret)


def flatten_example(data: Any, layout: Layout, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted keys of a TOML document, with the table names of ``layout`` as ``<id>``."""
    pattern = layout.prefix.split(".") if layout.prefix else []
    yield from _flatten(data, pattern, "")


def _flatten(data: Any, pattern: list[str], prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(data, dict):
        for k, v in data.items():
            head = pattern[0] if pattern else None
            if head == "<id>":
                yield from _flatten(v, pattern[1:], f"{prefix}<id>.")
            elif head is not None and k != head:
                continue
            elif head is not None:
                yield from _flatten(v, pattern[1:], f"{prefix}{k}.")
            elif isinstance(v, dict):
                yield f"{prefix}{k}", v
                yield from _flatten(v, [], f"{prefix}{k}.")
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                yield f"{prefix}{k}", v
                for item in v:
                    yield from _flatten(item, [], f"{prefix}{k}[].")
            else:
                yield f"{prefix}{k}", v


def file_keys(spec: ConfigFile) -> list[Key]:
    keys: list[Key] = []
    for layout, model in spec.models():
        prefix = f"{layout.prefix}." if layout.prefix else ""
        keys += list(model_keys(model, prefix, layout.from_table_name))
    examples: dict[str, Any] = {}
    for path in spec.example_files():
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        for layout, _ in spec.models():
            for name, value in flatten_example(doc, layout):
                examples.setdefault(name, value)
    for k in keys:
        if k.secret:  # shown as the env override it is set with
            if spec.env_prefix:
                k.example = f"`{spec.env_prefix}__{k.key.replace('.', '__').upper()}=...`"
            elif k.key in SECRET_ENV:
                k.example = f"`{SECRET_ENV[k.key]}=...`"
        elif k.key in examples:
            k.example = f"`{toml_value(examples[k.key])}`"
        elif not k.example and k.default not in ("required", "unset"):
            k.example = k.default
    return keys


def settings_modules(root: Path = ROOT) -> list[str]:
    """Modules of the product packages that define a Settings subclass (found by reading the
    source, so nothing with side effects, such as Kivy, is imported just to look)."""
    classes: dict[str, tuple[str, list[str]]] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    bases = [b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else ""
                             for b in node.bases]
                    classes[f"{module}:{node.name}"] = (module, bases)
    known, found = {"Settings"}, set()
    changed = True
    while changed:
        changed = False
        for qual, (module, bases) in classes.items():
            name = qual.split(":")[1]
            if name not in known and set(bases) & known:
                known.add(name)
                found.add(module)
                changed = True
    return sorted(found - {"broker.kernel.settings"})


def all_settings_models() -> list[type[Settings]]:
    for module in settings_modules():
        importlib.import_module(module)
    out: list[type[Settings]] = []
    todo = list(Settings.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.split(".")[0] in PACKAGES and cls.model_fields and cls not in out:
            out.append(cls)
    return sorted(out, key=lambda c: (c.__module__, c.__name__))


def reached_models(model: type[BaseModel]) -> set[type[BaseModel]]:
    found = {model}
    for info in model.model_fields.values():
        nested, _ = _model_of(info.annotation)
        if nested is not None and nested not in found:
            found |= reached_models(nested)
    return found


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(keys: list[Key]) -> list[str]:
    lines = ["| key | type | default | unit | allowed values | description | example |",
             "|---|---|---|---|---|---|---|"]
    for k in keys:
        lines.append("| " + " | ".join(_cell(x) for x in (f"`{k.key}`", k.type, k.default, k.unit, k.allowed,
                                                             k.description, k.example)) + " |")
    return lines


def render() -> str:
    out = [
        "# Configuration reference",
        "",
        f"<!-- GENERATED from the settings models by `{COMMAND}` (or `make config-reference`).",
        "     Do not edit: change the model's Field(description=...) and regenerate;",
        "     tests/test_config_reference.py fails while this file differs from the models. -->",
        "",
        "Every file below is read by a pydantic model (the module and class are named under each",
        "heading). Rules common to all of them:",
        "",
        "- **Unknown keys are refused.** A bad file stops the program at start with",
        "  `config error in FILE: KEY: problem`.",
        "- **Environment overrides:** `PREFIX__SECTION__KEY=value` (double underscores, any case), e.g.",
        "  `HAILONG_INGEST__INFLUX__TOKEN`; the value is read as a TOML scalar when it is one (`30`,",
        "  `true`), as a string otherwise.",
        "- **Secrets** (type *secret string*) never go in these files: set them through env, or name a",
        "  file in the matching `*_file` key (its first line is the secret, read at start).",
        "- A key written `a.b` is key `b` of table `[a]`; `a[].b` is key `b` of each `[[a]]` table;",
        "  `<id>` is a table name you choose (a centre id, a device id, ...).",
        "- *unset* means the key has no value unless you give one; units come from the key's suffix",
        "  (`_s` seconds, `_ms` milliseconds, `_bytes` bytes, ...). Examples come from the shipped",
        "  example files when they set the key, otherwise they are the default.",
        "",
        "| file | what | read by | env prefix | shipped examples |",
        "|---|---|---|---|---|",
    ]
    for spec in FILES:
        examples = ", ".join(f"`{p.relative_to(ROOT)}`" for p in spec.example_files()) or "—"
        env = f"`{spec.env_prefix}__`" if spec.env_prefix else "—"
        out.append(f"| [`{spec.name}`](#{_anchor(spec.name)}) | {spec.title} | `{spec.used_by}` | {env} | {examples} |")
    documented: set[type[BaseModel]] = set()
    for spec in FILES:
        out += ["", f"## {spec.name}", ""]
        models = spec.models()
        for _, model in models:
            documented |= reached_models(model)
        names = "; ".join(f"`{m.__module__}.{m.__name__}` ({_doc(m).rstrip('.')})" for _, m in models)
        out.append(f"{spec.title[0].upper()}{spec.title[1:]}. Read by `{spec.used_by}`. Model: {names}.")
        if spec.note:
            out += ["", spec.note]
        out += ["", *_table(file_keys(spec))]
    others = [m for m in all_settings_models() if m not in documented]
    if others:
        out += ["", "## Other settings models", "",
                "Models built on the settings base that none of the files above reaches (read from flags,",
                "or new): their keys, as the model names them.", ""]
        for m in others:
            out += [f"### `{m.__module__}.{m.__name__}`", "", _doc(m), ""]
            out += [*_table(list(model_keys(m))), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _doc(model: type) -> str:
    return " ".join((model.__doc__ or "").split()).replace("``", "`")


def _anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", name.lower()).replace(" ", "-")


@click.group()
def config() -> None:
    """Configuration files: their reference."""


@config.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"Write the reference here (e.g. {DEFAULT_OUT}); default: print it.")
def reference(out: Path | None) -> None:
    """Generate the configuration reference (docs/configuration.md) from the settings models."""
    text = render()
    if out is None:
        click.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out} ({text.count(chr(10))} lines)")
