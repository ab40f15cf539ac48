"""The rendered mosquitto.conf of the province broker and of the national broker, byte for byte.

The expected files under tests/broker/rendered/ were written by the renderers before they shared
their common blocks (broker/mosquitto/render.py: access_conf, persistence_conf, log_conf): a
refactoring that changes one byte of what a broker reads fails here. A deliberate change of the
config regenerates them (and says so in its commit)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from broker.mosquitto.federation import FederationOptions
from broker.mosquitto.national import NationalBrokerOptions
from broker.mosquitto.national import render_conf as national_conf
from broker.mosquitto.render import RenderOptions, render_conf

RENDERED = Path(__file__).parent / "rendered"

CASES: dict[str, Callable[[], str]] = {
    "province-default.conf": lambda: render_conf(RenderOptions()),
    "province-options.conf": lambda: render_conf(RenderOptions(
        bind="10.0.0.5", local_port=1883, conf_dir="/mosquitto/config/", data_dir="/mosquitto/data",
        log_dest="syslog", run_as="mosquitto", autosave_interval_s=30, max_queued_bytes=1_000_000_000,
        federation=FederationOptions(province="quang-ninh", national_host="national.example.vn"))),
    "national-default.conf": lambda: national_conf(NationalBrokerOptions()),
    "national-options.conf": lambda: national_conf(NationalBrokerOptions(
        bind="10.1.0.2", local_port=1884, conf_dir="/etc/mosquitto/nat/", log_dest="file /var/log/mq.log",
        run_as="mosquitto", autosave_interval_s=2, max_queued_messages=9_600_000)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_conf_is_byte_identical(name: str) -> None:
    assert CASES[name]().encode("utf-8") == (RENDERED / name).read_bytes()


def test_both_brokers_log_the_same_way() -> None:
    """One log block (render.log_conf) in both configs, with each one's own log_dest."""
    province, national = CASES["province-options.conf"](), CASES["national-options.conf"]()
    block = ["log_type error", "log_type warning", "log_type notice", "connection_messages true",
             "log_timestamp_format %Y-%m-%dT%H:%M:%S"]
    assert "\n".join(["log_dest syslog", *block]) in province
    assert "\n".join(["log_dest file /var/log/mq.log", *block]) in national
