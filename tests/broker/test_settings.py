"""The settings base: every config model derives from it, and its one secret reader."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest
from pydantic import BaseModel, Field, SecretStr

from broker.kernel.settings import ConfigError, SecretFile, Settings, load_model, secret_files
from broker.mqtt.settings import MqttSettings

PACKAGES = ("broker", "device", "ingest", "national", "dashboards", "firmware_config", "federation", "hailong")
WIRE_MODULES = ("broker.contract", "broker.federation")  # payload models: strict wire types, not configs


def _all_models() -> list[type[BaseModel]]:
    for pkg in PACKAGES:
        root = importlib.import_module(pkg)
        for info in pkgutil.walk_packages(root.__path__, f"{pkg}."):
            if ".ui" in info.name:  # Kivy widgets: no models, and a display would be needed
                continue
            importlib.import_module(info.name)
    seen: list[type[BaseModel]] = []
    todo = list(BaseModel.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.split(".")[0] in PACKAGES and cls not in seen:
            seen.append(cls)
    return seen


def test_every_config_model_derives_from_the_settings_base() -> None:
    models = _all_models()
    names = {m.__name__ for m in models}
    assert {"DeviceConfig", "IngestConfig", "DashboardSettings", "PushConfig", "MqttSettings", "RenderOptions",
            "ProvisionSettings", "Centre", "NationalConfig", "FederationConfig", "FederationOptions"} <= names
    strays = [f"{m.__module__}.{m.__qualname__}" for m in models
              if not issubclass(m, Settings) and m.__module__ not in WIRE_MODULES]
    assert strays == []


def test_a_secret_file_must_sit_beside_its_inline_secret() -> None:
    with pytest.raises(TypeError, match="<secret>_file"):
        class Bad(Settings):
            key_file: SecretFile = Field(default=None, description="no inline 'key' beside it")


class _Channel(Settings):
    name: str = Field(description="Channel name")
    token: SecretStr | None = Field(default=None, description="Inline token")
    token_file: SecretFile = Field(default=None, description="Token file")


class _Config(Settings):
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="Broker")
    channels: list[_Channel] = Field(default_factory=list, description="Channels")


def test_secret_files_are_found_and_read_at_load_in_nested_lists(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("  mqtt-pw  \nsecond\n", encoding="utf-8")
    (tmp_path / "t0").write_text("tok-0\n", encoding="utf-8")
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(f'[mqtt]\npassword_file = "{tmp_path / "pw"}"\n'
                        f'[[channels]]\nname = "a"\ntoken_file = "{tmp_path / "t0"}"\n'
                        f'[[channels]]\nname = "b"\ntoken_file = "{tmp_path / "t1"}"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_model(_Config, cfg_file, "HAILONG_TEST", environ={})
    assert err.value.key == "channels.1.token_file" and "does not exist" in err.value.problem
    (tmp_path / "t1").write_text("tok-1\n", encoding="utf-8")
    cfg = load_model(_Config, cfg_file, "HAILONG_TEST", environ={})
    (tmp_path / "pw").unlink()  # read once, at load: a later loss of the file changes nothing
    assert cfg.mqtt.secret() == "mqtt-pw" and [c.secret_of("token") for c in cfg.channels] == ["tok-0", "tok-1"]
    assert [k for k, _ in secret_files(cfg)] == ["mqtt.password_file", "channels.0.token_file",
                                                 "channels.1.token_file"]
    assert "mqtt-pw" not in repr(cfg) and "tok-0" not in str(cfg.model_dump())


def test_several_problems_are_named_together(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('bogus = 1\n[mqtt]\nkeepalive_s = 1\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_model(_Config, f, "HAILONG_TEST", environ={})
    text = str(err.value)
    assert text.startswith(f"config error in {f}: ")
    assert "mqtt.keepalive_s: Input should be greater than or equal to 5" in text and "bogus: Extra inputs" in text
