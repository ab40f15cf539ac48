"""``hailong web link|key rotate|serve``: make rating links, rotate a centre's key, run the service."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from broker import weblink
from broker.fleet.credentials import FleetState
from broker.fleet.registry import RegistryError, load_registry

SOURCE_CHOICES = [s for s in weblink.SOURCES if s is not None]


@click.group()
def web() -> None:
    """Rating from a phone: signed links per ticket (QR on the slip, SMS, Zalo) and the web page."""


def _fleet_options(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option("--state", "state_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Credentials directory (default <fleet>/state).")(f)
    return click.option("--fleet", type=click.Path(file_okay=False, path_type=Path), required=True,
                        envvar="HAILONG_FLEET", help="Fleet registry directory (env HAILONG_FLEET).")(f)


def _timezone(fleet: Path, centre: str) -> str:
    try:
        reg = load_registry(fleet)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    if centre not in reg.centres:
        raise click.ClickException(f"centre {centre!r} is not in the fleet registry {fleet}")
    return reg.centres[centre].timezone


@web.command("link")
@_fleet_options
@click.option("--centre", required=True, help="Centre id.")
@click.option("--ticket", required=True, help="Ticket number as printed on the slip, e.g. A-1024.")
@click.option("--day", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Service day (centre's local date); default today in the centre's time zone.")
@click.option("--ticket-id", default=None, help="The queue system's own ticket id, when it has one.")
@click.option("--counter", default=None, help="Counter id, when known (a link made after the close).")
@click.option("--source", type=click.Choice(SOURCE_CHOICES), default="qr", show_default=True,
              help="How the link reaches the citizen.")
@click.option("--valid-days", type=click.IntRange(1, 30), default=7, show_default=True,
              help="Days after the service day the link stays valid.")
@click.option("--base", required=True, help="Public origin of the web rating service, e.g. https://rate.example.vn")
@click.option("--qr", "qr_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the QR code: .png or .svg.")
def link(fleet: Path, state_dir: Path | None, centre: str, ticket: str, day: dt.datetime | None,
         ticket_id: str | None, counter: str | None, source: str, valid_days: int, base: str,
         qr_out: Path | None) -> None:
    """Print the rating URL of one ticket (and write its QR code)."""
    from zoneinfo import ZoneInfo

    if not base.startswith(("https://", "http://")):
        raise click.BadParameter("must start with https:// (http:// only behind a TLS proxy)", param_hint="--base")
    tz = _timezone(fleet, centre)
    service_day = day.date() if day is not None else dt.datetime.now(ZoneInfo(tz)).date()
    try:
        ticket_link = weblink.TicketLink(
            centre=centre, ticket=ticket, day=service_day, expires=weblink.default_expiry(service_day, tz, valid_days),
            ticket_id=ticket_id, counter=counter, source=source)  # type: ignore[arg-type]
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    ring = FleetState.for_fleet(fleet, state_dir).link_keyring(centre)
    if source == "terminal-qr":  # what the counter's terminal would print: signed with that counter's key
        key_id, secret = ring.terminal_key(ticket_link.counter or "")
    else:
        key_id, secret = ring.current, ring.signing_key().secret
    address = weblink.url(base, weblink.sign(ticket_link, key_id, secret))
    click.echo(address)
    if qr_out is not None:
        import segno

        if qr_out.suffix.lower() not in (".png", ".svg"):
            raise click.BadParameter("the QR file must end in .png or .svg", param_hint="--qr")
        qr = segno.make(address, error="m", micro=False)
        qr.save(str(qr_out), scale=8 if qr_out.suffix.lower() == ".png" else 4, border=4)
        click.echo(f"# QR code (version {qr.version}, error correction M) written to {qr_out}", err=True)


@web.group("key")
def key() -> None:
    """A centre's link-signing keys (in the fleet state)."""


@key.command("rotate")
@_fleet_options
@click.option("--centre", required=True, help="Centre id.")
@click.option("--revoke-counter", "revoke", multiple=True,
              help="A counter whose terminal was stolen or lost: its terminal links stop verifying at once "
                   "(repeatable).")
def rotate(fleet: Path, state_dir: Path | None, centre: str, revoke: tuple[str, ...]) -> None:
    """Sign new links with a new key; links signed before keep working until they expire.

    The centre's counter terminals sign with a key derived from the key current when they were provisioned:
    they keep signing with the retired key (their links verify until it is dropped, 35 days) until they are
    provisioned again. The command names them."""
    _timezone(fleet, centre)
    reg = load_registry(fleet)
    unknown = [c for c in revoke if (centre, c) not in reg.counters]
    if unknown:
        raise click.ClickException(f"centre {centre} has no counter {', '.join(unknown)}")
    old = FleetState.for_fleet(fleet, state_dir).link_keyring(centre).current
    try:
        ring = FleetState.for_fleet(fleet, state_dir).rotate_link_key(centre, revoke_counters=revoke)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"centre {centre}: now signing with key {ring.current}; "
               f"{len(ring.keys) - 1} older key(s) still verify issued links (secrets not shown)")
    if revoke:
        click.echo(f"terminal links of counter(s) {', '.join(revoke)} under every older key no longer verify")
    terminals = sorted((d.id, d.counter) for d in reg.devices.values() if d.centre == centre and not d.retired)
    if terminals and reg.centres[centre].has_qms:
        click.echo(f"{len(terminals)} terminal(s) still sign their QR links with a key derived from key {old} "
                   f"(valid until it is dropped, {FleetState.LINK_KEY_KEEP_S // 86_400} days from now); "
                   f"provision them again to give them the new key (hailong fleet provision --centre {centre} "
                   "--web-base URL):")
        for device, counter in terminals:
            click.echo(f"  {device} (counter {counter}){'  REVOKED' if counter in revoke else ''}")


@web.command("serve")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="web.toml (docs/web-rating.md; keys: docs/configuration.md)")
def serve(config_path: Path) -> None:
    """The citizen's rating page: GET/POST /r/<token>, behind a TLS reverse proxy."""
    from broker.kernel.settings import ConfigError

    from .config import load_config
    from .service import WebService

    try:
        service = WebService(load_config(config_path))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    service.run()
