"""ingest.toml: env overrides, secrets from env or files, unknown keys and bad values refused with file/key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.kernel.settings import ConfigError
from hailong.cli import main
from ingest.config import load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ingest.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_env_overrides_and_secret_files(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret-token\n")
    path = write(tmp_path, 'registry = "fleet"\n[influx]\napi = "v2"\ntoken_file = "TOKEN"\n'
                 .replace("TOKEN", str(tmp_path / "token")))
    cfg = load_config(path, environ={"HAILONG_INGEST__BATCH__SIZE": "50", "HAILONG_INGEST__MQTT__PASSWORD": "pw",
                                     "HAILONG_INGEST__INTEGRITY__HOLD_GRACE_S": "2.5"})
    assert cfg.batch.size == 50 and cfg.integrity.hold_grace_s == 2.5
    assert cfg.mqtt.secret() == "pw"
    assert cfg.influx.secret_token() == "s3cret-token"
    assert cfg.registry == (tmp_path / "fleet").resolve(), "relative to the config file"
    assert "s3cret" not in repr(cfg) and "pw'" not in repr(cfg.mqtt)


@pytest.mark.parametrize(("text", "key"), [
    ("[batch]\nsize = 10\nmax_in_flight = 5\n", "max_in_flight"),
    ("[integrity]\nwindow = 60\n", "integrity.window"),
    ("[health]\nhttp_port = 70000\n", "health.http_port"),
    ('[clock]\nmax_ahead_s = "soon"\n', "clock.max_ahead_s"),
    ("bogus = 1\n", "bogus"),
])
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert str(path) in str(err.value) and key in str(err.value)


def test_cli_refuses_a_broken_registry_at_start(tmp_path: Path) -> None:
    (tmp_path / "fleet").mkdir()
    (tmp_path / "fleet" / "centres.toml").write_text("[centre.x]\nname = 3\n")
    path = write(tmp_path, 'registry = "fleet"\n[mqtt]\nurl = "mqtt://127.0.0.1:1"\n')
    result = CliRunner().invoke(main, ["ingest", "run", "--config", str(path)])
    assert result.exit_code != 0
    assert "centres.toml" in result.output and "cannot start ingest" in result.output


@pytest.mark.parametrize(("section", "key"), [("mqtt", "password_file"), ("influx", "token_file")])
def test_cli_stops_on_a_missing_secret_file_with_file_and_key(tmp_path: Path, section: str, key: str) -> None:
    missing = tmp_path / "secret"
    mqtt = 'url = "mqtt://127.0.0.1:1"\nusername = "svc.ingest"\n'
    secret_line = f'{key} = "{missing}"\n'
    path = write(tmp_path, f"[mqtt]\n{mqtt}{secret_line}" if section == "mqtt"
                 else f"[mqtt]\n{mqtt}[{section}]\n{secret_line}")
    result = CliRunner().invoke(main, ["ingest", "run", "--config", str(path)], env={})
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"config error in {path}: {section}.{key}: secret file {missing}: does not exist" in result.output
    missing.write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is empty") as err:
        load_config(path, environ={})
    assert err.value.key == f"{section}.{key}"


def test_client_id_defaults_to_the_mqtt_username() -> None:
    """The rendered broker forces client id = username (issue 12): the ingest names itself the same way."""
    from ingest.config import IngestConfig

    assert IngestConfig().client_id == "hl-ingest-1"  # no username: a development broker
    assert IngestConfig.model_validate({"mqtt": {"username": "svc.ingest.2"}}).client_id == "svc.ingest.2"
    assert load_config(None, {"HAILONG_INGEST__MQTT__USERNAME": "svc.ingest.3"}).client_id == "svc.ingest.3"
    explicit = IngestConfig.model_validate({"mqtt": {"username": "svc.ingest"}, "client_id": "lab-1"})
    assert explicit.client_id == "lab-1"


def test_unacked_budget_must_hold_a_batch() -> None:
    import pydantic

    from ingest.config import BatchSettings

    with pytest.raises(pydantic.ValidationError, match="max_unacked_messages"):
        BatchSettings(size=100, max_unacked_messages=50)
