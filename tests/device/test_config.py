"""DeviceConfig: the TOML the fleet tool generates must parse; bad files name file, key and problem."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from broker.contract import DeviceConfigUpdate
from broker.kernel.settings import ConfigError
from device.config import DeviceConfig, config_error_code, device_id_hint, load_device_config

EXAMPLE = Path(__file__).parents[2] / "device" / "examples" / "device.toml"


@pytest.fixture
def secret_env(tmp_path: Path) -> dict[str, str]:
    """The example names /etc/hailong/mqtt.pass (the Pi's path); point it at a real file here."""
    (tmp_path / "mqtt.pass").write_text("pi-secret\nignored second line\n", encoding="utf-8")
    return {"HAILONG_DEVICE__MQTT__PASSWORD_FILE": str(tmp_path / "mqtt.pass")}


def test_example_config_parses_with_defaults_and_relative_outbox(secret_env: dict[str, str]) -> None:
    cfg = load_device_config(EXAMPLE, environ=secret_env)
    assert cfg.mqtt.secret() == "pi-secret" and "pi-secret" not in repr(cfg)
    assert cfg.device_id == "hn-t01" and cfg.scale == 4 and cfg.language == "vi"
    assert cfg.rating_window_s == 60 and cfg.prompt_timeout_s == 30 and cfg.reasons_timeout_s == 15
    assert cfg.gpio.buttons == {4: 5, 3: 6, 2: 13, 1: 19}
    assert cfg.outbox.path == EXAMPLE.parent / "outbox.sqlite3"
    assert cfg.ask_reasons_at_most == 2
    assert cfg.officer_name("cb01") == "Nguyễn Thị Lan" and cfg.officer_name("cb99") == "cb99"


def test_env_override_reaches_nested_mqtt_password() -> None:
    cfg = load_device_config(EXAMPLE, environ={"HAILONG_DEVICE__MQTT__PASSWORD": "s3cret",
                                               "HAILONG_DEVICE__LANGUAGE": "en"})
    assert cfg.mqtt.secret() == "s3cret" and cfg.language == "en"
    assert "s3cret" not in repr(cfg)


@pytest.mark.parametrize(("toml", "key", "problem"), [
    ('device_id = "Bad Id"', "device_id", "pattern"),
    ("scale = 6", "scale", "3, 4 or 5"),
    ("unknown_key = 1", "unknown_key", "Extra inputs"),
    ("rating_window_s = 1", "rating_window_s", "greater than or equal"),
])
def test_bad_values_name_the_key(tmp_path: Path, toml: str, key: str, problem: str) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.startswith(toml.split(" ")[0] + " ")]
    f = tmp_path / "d.toml"
    f.write_text(toml + "\n" + "\n".join(lines), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_device_config(f, environ={})
    assert err.value.key == key and problem in err.value.problem and str(f) in str(err.value)


def test_buttons_must_cover_the_scale_and_pins_are_distinct(tmp_path: Path) -> None:
    f = tmp_path / "d.toml"
    base = EXAMPLE.read_text(encoding="utf-8")
    f.write_text(base.replace("1 = 19", ""), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"missing \[1\]"):
        load_device_config(f, environ={})
    f.write_text(base.replace("1 = 19", "1 = 5"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"used twice: \[5\]"):
        load_device_config(f, environ={})


def test_live_update_applies_and_is_revalidated(secret_env: dict[str, str]) -> None:
    cfg = load_device_config(EXAMPLE, environ=secret_env)
    new = cfg.with_update(DeviceConfigUpdate(v=1, issued_at=1, language="en", rating_window_s=90,
                                             officer_names={"cb02": "Trần Văn Minh"}))
    assert new.language == "en" and new.rating_window_s == 90 and new.officer_names == {"cb02": "Trần Văn Minh"}
    assert new.scale == 4 and new.mqtt == cfg.mqtt and new.mqtt.secret() == "pi-secret"
    with pytest.raises(ValueError, match="missing"):
        cfg.with_update(DeviceConfigUpdate(v=1, issued_at=1, scale=5))  # four buttons wired


def test_minimal_touch_config_needs_only_identity_and_broker() -> None:
    cfg = DeviceConfig.model_validate({"device_id": "d1", "centre": "c1", "counter": "q1", "centre_name": "C",
                                       "counter_label": "Quầy 1", "mqtt": {"url": "mqtt://127.0.0.1:1883"}})
    assert cfg.hardware == "touch" and cfg.mode == "qms" and cfg.heartbeat_s == 60


@pytest.mark.parametrize(("make", "problem"), [
    (lambda f: None, "does not exist"),
    (lambda f: f.write_text("\n\n", encoding="utf-8"), "is empty"),
    (lambda f: f.mkdir(), "cannot be read"),
    (lambda f: f.write_bytes(b"\xff\xfe"), "not UTF-8"),
])
def test_a_bad_password_file_is_a_config_error_at_load(tmp_path: Path, make: Callable[[Path], object],
                                                       problem: str) -> None:
    secret = tmp_path / "mqtt.pass"
    make(secret)
    with pytest.raises(ConfigError) as err:
        load_device_config(EXAMPLE, environ={"HAILONG_DEVICE__MQTT__PASSWORD_FILE": str(secret)})
    assert err.value.key == "mqtt.password_file" and problem in err.value.problem
    assert str(err.value).startswith(f"config error in {EXAMPLE}: mqtt.password_file: secret file {secret}")
    # an inline password (env) wins: the file is then not needed at all
    cfg = load_device_config(EXAMPLE, environ={"HAILONG_DEVICE__MQTT__PASSWORD_FILE": str(secret),
                                               "HAILONG_DEVICE__MQTT__PASSWORD": "from-env"})
    assert cfg.mqtt.secret() == "from-env"


def test_a_model_rule_names_its_own_key(tmp_path: Path) -> None:
    f = tmp_path / "d.toml"
    f.write_text(EXAMPLE.read_text(encoding="utf-8").replace("1 = 19", ""), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_device_config(f, environ={})
    assert err.value.key == "gpio.buttons"
    assert str(err.value) == (f"config error in {f}: gpio.buttons: hardware='both' needs a pin for every "
                              "score 1..4; missing [1]")


def test_an_invalid_config_still_names_its_device_and_a_code(tmp_path: Path) -> None:
    def code_and_hint(text: str | None, environ: dict[str, str] | None = None) -> tuple[str, str | None]:
        f = tmp_path / "device.toml"
        f.unlink(missing_ok=True)
        if text is not None:
            f.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as err:
            load_device_config(f, environ={})
        return config_error_code(err.value), device_id_hint(f, environ or {})

    assert code_and_hint(None) == ("C1", None)
    assert code_and_hint('device_id = "qn-t1"\ncentre = \n') == ("C2", None)
    assert code_and_hint('device_id = "qn-t1"\nscale = 7\n') == ("C3", "qn-t1")
    assert code_and_hint('device_id = "Not An Id!"\n') == ("C3", None)  # only a valid id is shown
    assert code_and_hint('device_id = 7\n', {"HAILONG_DEVICE__DEVICE_ID": "qn-t2"}) == ("C3", "qn-t2")
