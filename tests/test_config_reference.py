"""docs/configuration.md is the settings models, rendered: regenerated here and compared, and every
key of every shipped example file is in it."""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from typing import Any

from broker.kernel.settings import load_model
from hailong.configref import COMMAND, FILES, all_settings_models, model_keys, render, settings_modules

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"
# TOML files in the repository that are not configuration a user writes
NOT_CONFIG = {"pyproject.toml", "device/i18n/vi.toml", "device/i18n/en.toml", "broker/ratingscale/vi.toml",
              "broker/ratingscale/en.toml", "web/i18n/vi.toml", "web/i18n/en.toml"}


def documented_keys() -> dict[str, dict[str, str]]:
    """file heading -> {key: type} of its table, read from the markdown as a person reads it."""
    out: dict[str, dict[str, str]] = {}
    current = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = out.setdefault(line[3:].strip(), {})
        elif current is not None and (m := re.match(r"^\| `([^`]+)` \| ([^|]+) \|", line)):
            current[m.group(1)] = m.group(2).strip()
    return out


def test_the_reference_is_what_the_models_say_now() -> None:
    want = render()
    have = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    if have != want:
        diff = "".join(list(difflib.unified_diff(have.splitlines(True), want.splitlines(True), "docs/configuration.md",
                                                 "generated"))[:60])
        raise AssertionError(f"docs/configuration.md differs from the settings models; regenerate it from the "
                             f"repository root with `.venv/bin/{COMMAND}` (or `make config-reference`) and commit "
                             f"it.\n{diff}")


def leaf_paths(data: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of a TOML document; the items of an array of tables as `name[]`."""
    out: list[tuple[str, ...]] = []
    for k, v in data.items():
        if isinstance(v, dict) and v:
            out += leaf_paths(v, (*prefix, k))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                out += leaf_paths(item, (*prefix, f"{k}[]"))
        else:
            out.append((*prefix, k))
    return out


def undocumented(data: dict[str, Any], keys: dict[str, str]) -> list[str]:
    """Paths no documented key covers: equal segment by segment (`<id>` matches any table name), or
    below a documented key whose type is a table (a map such as maps.officers: its keys are data)."""
    patterns = [(k.split("."), t) for k, t in keys.items()]

    def covered(path: tuple[str, ...]) -> bool:
        for segs, typ in patterns:
            if len(segs) > len(path) or (len(segs) < len(path) and not typ.startswith("table")):
                continue
            if all(s in ("<id>", p) for s, p in zip(segs, path, strict=False)):
                return True
        return False

    return [".".join(p) for p in leaf_paths(data) if not covered(p)]


def test_every_key_of_every_shipped_example_is_documented() -> None:
    doc = documented_keys()
    claimed: set[Path] = set()
    checked = 0
    for spec in FILES:
        keys = doc.get(spec.name)
        assert keys, f"docs/configuration.md has no section '## {spec.name}'"
        for path in spec.example_files():
            claimed.add(path)
            missing = undocumented(tomllib.loads(path.read_text(encoding="utf-8")), keys)
            assert not missing, f"{path.relative_to(ROOT)}: keys not in docs/configuration.md: {missing}"
            checked += 1
    assert checked >= 8
    # build/ and dist/: pip's in-tree build of the checkout (the technician guide's test installs it) copies examples;
    # bench/out/: what a benchmark run wrote (its terminals' device.toml), ignored by git
    shipped = {p for p in ROOT.rglob("*.toml") if ".venv" not in p.parts and not any(
        part.startswith(".") or part in ("tests", "build", "dist") for part in p.relative_to(ROOT).parts)
        and p.relative_to(ROOT).parts[:2] != ("bench", "out")}
    orphans = sorted(str(p.relative_to(ROOT)) for p in shipped - claimed if str(p.relative_to(ROOT)) not in NOT_CONFIG)
    assert not orphans, f"example files no section of docs/configuration.md claims (add them to FILES): {orphans}"


def test_an_undocumented_example_key_is_caught() -> None:
    """The walk above fails on a key the reference does not list (a typo'd or removed key)."""
    keys = documented_keys()["qms.toml"]
    example = {"sql": {"enabled": True, "pol_interval_s": 1, "sources": [{"name": "t", "wher": "x"}]},
               "maps": {"officers": {"NV9": "cb-x"}}}
    assert undocumented(example, keys) == ["sql.pol_interval_s", "sql.sources[].wher"]
    fleet = documented_keys()["<fleet>/centres.toml"]
    assert undocumented({"centre": {"a": {"name": "x", "counter": {"q1": {"label": "y", "lable": "z"}}}}},
                        fleet) == ["centre.a.counter.q1.lable"]


def test_every_settings_model_and_field_is_in_the_reference() -> None:
    modules = settings_modules()
    assert {"device.config", "ingest.config", "qms_bridge.config", "broker.fleet.registry",
            "firmware_config.provision", "dashboards.push", "broker.mosquitto.render"} <= set(modules), modules
    text = DOC.read_text(encoding="utf-8")
    models = all_settings_models()
    assert len(models) >= 20
    for model in models:
        for key in model_keys(model):
            leaf = key.key.split(".")[-1].removesuffix("[]")
            assert f"{leaf}` |" in text or f".{leaf}` |" in text, f"{model.__name__}: {key.key} not documented"


def test_shipped_examples_load_with_their_models() -> None:
    """The example the reference quotes is a valid file (secrets are not read: they live elsewhere)."""
    for spec in FILES:
        if not spec.env_prefix:
            continue
        _layout, model = spec.models()[0]  # the top-level model reads the file; the others are its tables
        for path in spec.example_files():
            load_model(model, path, spec.env_prefix, environ={}, read_secrets=False)
