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


@national.command("render")
@click.option("--national", "national_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              envvar="HAILONG_NATIONAL_DIR", help="The Ministry's directory: provinces.toml, national-broker.toml, "
              "state/ (env HAILONG_NATIONAL_DIR).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where to write mosquitto.conf, acl, passwd, certificates, centres.json and provinces/<id>/.")
def render(national_dir: Path, out: Path) -> None:
    """Render the national broker's files and each province's bridge bundle; then reload the broker (SIGHUP)."""
    from broker.kernel.settings import ConfigError
    from broker.mosquitto.national import render_national

    try:
        paths = render_national(national_dir, out)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    for p in paths:
        click.echo(f"wrote {p}")
    click.echo("send each province its provinces/<id>/ (the key is secret: a secure channel); it goes to "
               "<fleet>/state/federation/ on the province server, then `hailong broker render` there")
    click.echo(f"the consumer's password: {national_dir / 'state' / 'secrets' / 'svc.national.password'}")


@national.command("revoke")
@click.option("--national", "national_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              envvar="HAILONG_NATIONAL_DIR", help="The Ministry's directory (env HAILONG_NATIONAL_DIR).")
@click.option("--province", required=True, help="Province whose bridge certificate is revoked (lost, leaked).")
def revoke(national_dir: Path, province: str) -> None:
    """Revoke a province's bridge certificate; the next render lists it in the CRL and issues a new one."""
    from broker.kernel.settings import ConfigError
    from broker.mosquitto.national import revoke_bridge

    try:
        serial = revoke_bridge(national_dir, province)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"revoked fed.{province} (serial {serial:x}); now `hailong national render` and restart the national "
               f"broker (it reads the CRL at start), then send {province} its new provinces/{province}/ bundle")
