"""``hailong national ...``: the Ministry's side of the national view (docs/national.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import click


@click.group()
def national() -> None:
    """The national broker's files and the consumer of the provinces' daily aggregates."""


@national.command("consume")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              envvar="HAILONG_NATIONAL_CONFIG", help="national.toml (env HAILONG_NATIONAL_CONFIG).")
def consume(config_path: Path) -> None:
    """Store the provinces' aggregates (agg_centre_day), refusals in agg_rejected; SIGTERM stops cleanly."""
    from broker.kernel.settings import ConfigError

    from .config import load_config
    from .service import NationalService

    try:
        cfg = load_config(config_path)
        logging.getLogger().setLevel(cfg.log_level)
        service = NationalService(cfg)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    service.start()
    if service.health is not None:
        click.echo(f"healthz on http://127.0.0.1:{service.health.port}/healthz", err=True)
    service.run_forever()
