"""``hailong sim ...`` (and, later, ``hailong device ...``)."""

from __future__ import annotations

import time

import click

from broker.mqtt import MqttSettings


@click.group()
def sim() -> None:
    """Simulated counters (queue system + terminals) for demos and load tests."""


@sim.command("counters")
@click.option("--broker", "url", default="mqtt://127.0.0.1:1883", show_default=True, help="Broker URL.")
@click.option("--username", envvar="HAILONG_SIM_USERNAME", help="MQTT user (env HAILONG_SIM_USERNAME).")
@click.option("--password", envvar="HAILONG_SIM_PASSWORD", help="MQTT password (env HAILONG_SIM_PASSWORD).")
@click.option("--centre", "centres", multiple=True, default=["ttphcc-demo"], show_default=True)
@click.option("--counters", "per_centre", default=4, show_default=True, help="Counters per centre.")
@click.option("--ratings", default=20, show_default=True, help="Ratings per counter.")
@click.option("--interval", default=0.2, show_default=True, help="Seconds between citizens.")
def counters(url: str, username: str | None, password: str | None, centres: tuple[str, ...],
             per_centre: int, ratings: int, interval: float) -> None:
    """Publish QMS events and ratings for simulated counters."""
    from .sim import plan_counters, run_counters

    settings = MqttSettings.model_validate({"url": url, "username": username, "password": password})
    t0 = time.monotonic()
    sent = run_counters(settings, plan_counters(list(centres), per_centre), ratings, interval_s=interval)
    click.echo(f"published {len(sent)} ratings in {time.monotonic() - t0:.1f}s (all acknowledged by the broker)")
