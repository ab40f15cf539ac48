"""``hailong federation ...``: the province side of the national view (docs/national.md)."""

from __future__ import annotations

from pathlib import Path

import click

RECENT_DAYS = 2  # hourly: today and yesterday
FULL_DAYS = 35  # nightly: five weeks, so a whole month and a lost queue heal


@click.group()
def federation() -> None:
    """Daily aggregates per centre, sent to the national broker over the province broker's bridge."""


@federation.command("publish")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              envvar="HAILONG_FEDERATION_CONFIG", help="federation.toml (env HAILONG_FEDERATION_CONFIG).")
@click.option("--days", type=click.IntRange(1, 400), default=RECENT_DAYS, show_default=True,
              help=f"Local days to send, today included: {RECENT_DAYS} hourly, {FULL_DAYS} nightly.")
def publish_cmd(config_path: Path, days: int) -> None:
    """Count every registered centre's days from the rollups and publish them (QoS 1, acknowledged)."""
    from broker.fleet.registry import RegistryError
    from broker.kernel.settings import ConfigError
    from storage.influxql import InfluxQueryError

    from .config import load_config
    from .publish import publish

    try:
        cfg = load_config(config_path)
        result = publish(cfg, days)
    except (ConfigError, RegistryError) as exc:
        raise click.ClickException(str(exc)) from None
    except (InfluxQueryError, ConnectionError, TimeoutError) as exc:
        raise click.ClickException(f"nothing is lost, the next run sends it again: {exc}") from None
    click.echo(f"published {result.messages:,} centre-days ({result.centres:,} centres x {result.days} days), "
               f"revision {result.revision}, {result.bytes:,} bytes in {result.seconds:.1f} s")
