"""``hailong broker render``: the centre broker's files from the fleet registry."""

from __future__ import annotations

from pathlib import Path

import click

FLEET_OPTION = click.option("--fleet", type=click.Path(file_okay=False, path_type=Path), required=True,
                            envvar="HAILONG_FLEET", help="Fleet registry directory (env HAILONG_FLEET).")
TARGETS = {
    "debian": {"conf_dir": "/etc/mosquitto/hailong", "data_dir": "/var/lib/mosquitto"},
    "docker": {"conf_dir": "/mosquitto/config", "data_dir": "/mosquitto/data"},
}
STATE_OPTION = click.option("--state", type=click.Path(file_okay=False, path_type=Path), default=None,
                            help="Credentials directory (default <fleet>/state; never commit it).")


@click.group()
def broker() -> None:
    """Mosquitto configuration, passwords, ACL and certificates for a fleet."""


@broker.command("render")
@FLEET_OPTION
@STATE_OPTION
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory to write mosquitto.conf, passwd, acl, certificates and CRL into.")
@click.option("--target", type=click.Choice(sorted(TARGETS)), default=None,
              help="Preset paths: debian (/etc/mosquitto/hailong, /var/lib/mosquitto) or docker "
                   "(/mosquitto/config, /mosquitto/data in the eclipse-mosquitto image).")
@click.option("--conf-dir", default=None, help="Where the files will be on the broker host "
              "(default from <fleet>/broker.toml, else /etc/mosquitto/hailong).")
@click.option("--data-dir", default=None, help="Persistence directory on the broker host.")
@click.option("--hostname", "hostnames", multiple=True, help="Broker host name/IP for the server certificate "
              "and the terminals' broker URL (repeatable; the first is the URL's). Recorded in "
              "<fleet>/broker.toml, like every flag here, so later renders and provisioning keep it.")
@click.option("--tls-port", type=int, default=None, help="TLS + password listener port (default 8883).")
@click.option("--cert-port", type=int, default=None, help="TLS + client-certificate listener port (default 8884).")
def render(fleet: Path, state: Path | None, out: Path, target: str | None, conf_dir: str | None,
           data_dir: str | None, hostnames: tuple[str, ...], tls_port: int | None, cert_port: int | None) -> None:
    """Render the broker files; then reload the broker with SIGHUP."""
    from broker.fleet.credentials import FleetState
    from broker.fleet.registry import RegistryError, load_registry
    from broker.kernel.settings import ConfigError

    from .render import load_options, render_broker, save_options

    fleet_state = FleetState.for_fleet(fleet, state)
    try:
        registry = load_registry(fleet)
        preset = TARGETS.get(target or "", {})
        saved = save_options(fleet, conf_dir=conf_dir or preset.get("conf_dir"),
                             data_dir=data_dir or preset.get("data_dir"), hostnames=list(hostnames) or None,
                             tls_port=tls_port, cert_port=cert_port)
        opt = load_options(fleet, fleet_state)
    except (RegistryError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    if saved is not None:
        click.echo(f"recorded in {saved}: later renders and `hailong fleet provision` use these settings")
    try:
        paths = render_broker(registry, fleet_state, out, opt)
    except ConfigError as exc:  # e.g. the [federation] bundle is missing or the queue bounds are too small
        raise click.ClickException(str(exc)) from None
    for p in paths:
        click.echo(f"wrote {p}")
    click.echo(f"server certificate names: {', '.join(opt.hostnames)}; terminals connect to {opt.hostnames[0]}")
    click.echo("reload a running broker: systemctl reload mosquitto  |  docker compose kill -s HUP mosquitto")


@broker.command("rotate-user")
@FLEET_OPTION
@STATE_OPTION
@click.argument("user")
def rotate_user(fleet: Path, state: Path | None, user: str) -> None:
    """Give one service USER (svc.ingest.w2, svc.qms.<centre>, ...) a new secret; the old one stops
    working at the next render + broker reload. Every other identity keeps its own."""
    from broker.fleet.credentials import FleetState
    from broker.fleet.registry import RegistryError, load_registry

    from .acl import service_users
    from .render import load_options

    fleet_state = FleetState.for_fleet(fleet, state)
    try:
        opt = load_options(fleet, fleet_state)
        known = service_users(load_registry(fleet), opt.ingest_instances, opt.ingest_workers)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    if user not in known:
        raise click.ClickException(f"{user!r} is not a service user of this fleet (known: {', '.join(known)}); "
                                   "a terminal's credentials: `hailong fleet rotate`/`revoke`")
    fleet_state.rotate_password(user)
    click.echo(f"new secret for {user} in {fleet_state.secret_path(user)} (0600)")
    click.echo("apply it: `hailong broker render --fleet ... --out ...`, reload the broker, and give the new "
               "secret file to that one process (its old secret is refused from then on)")
