"""``hailong fleet ...``: the technician's commands (registry, provisioning, revocation).

Every command names the fleet directory with ``--fleet`` (or env HAILONG_FLEET).
Commands that change credentials can re-render the broker files in one go with
``--broker-out DIR``; the broker then needs a SIGHUP (printed as a reminder).
No command ever prints a secret: only the files secrets were written to.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Literal, cast

import click
from pydantic import SecretStr

from broker.fleet.registry import RegistryError

from .centre_cli import COMMANDS as CENTRE_COMMANDS
from .fleet_context import BROKER_OUT, Ctx, _edit, _rerender, pass_ctx


@click.group()
@click.option("--fleet", type=click.Path(file_okay=False, path_type=Path), default=None, envvar="HAILONG_FLEET",
              help="Fleet registry directory (env HAILONG_FLEET); required by every command.")
@click.option("--state", "state_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Credentials directory (default <fleet>/state; git-ignores itself).")
@click.pass_context
def fleet(ctx: click.Context, fleet: Path | None, state_dir: Path | None) -> None:
    """Fleet registry, terminal provisioning, credential rotation and revocation."""
    ctx.obj = Ctx(fleet, state_dir)


@fleet.command("list")
@click.argument("what", type=click.Choice(["devices", "officers", "centres", "counters"]), default="devices")
@click.option("--centre", default=None, help="Only this centre.")
@click.option("--all", "show_all", is_flag=True, help="Include retired devices/officers.")
@pass_ctx
def list_(ctx: Ctx, what: str, centre: str | None, show_all: bool) -> None:
    """List devices (default), officers, centres or counters."""
    reg = ctx.registry()
    if what == "counters":
        for cid in sorted(reg.centres):
            if centre is None or cid == centre:
                by_counter = {d.counter: d.id for d in reg.active_devices(cid)}
                for q in reg.counters_of(cid):
                    click.echo(f"{cid:<16} {q.id:<8} {by_counter.get(q.id, '-'):<20} {q.label}")
        return
    if what == "centres":
        for c in sorted(reg.centres.values(), key=lambda c: c.id):
            n = len(reg.active_devices(c.id))
            click.echo(f"{c.id:<16} {c.province:<16} qms={'yes' if c.has_qms else 'no':<4} devices={n:<4} {c.name}")
        return
    if what == "officers":
        for o in sorted(reg.officers.values(), key=lambda o: o.id):
            if (centre is None or o.centre == centre) and (show_all or not o.retired):
                click.echo(f"{o.id:<24} {o.centre:<16} {o.name}{'  (retired)' if o.retired else ''}")
        return
    revoked = ctx.state.revoked()
    for d in sorted(reg.devices.values(), key=lambda d: d.id):
        if (centre is None or d.centre == centre) and (show_all or not d.retired):
            flags = " ".join(f for f, on in (("retired", d.retired), ("revoked", ctx.state.is_revoked(d.id)),
                                             ("had-revocations", d.id in revoked)) if on)
            label = reg.counters[(d.centre, d.counter)].label
            click.echo(f"{d.id:<20} {d.centre:<16} {d.counter:<8} {d.hardware:<8} {label}  {flags}".rstrip())


def _pins(values: tuple[str, ...]) -> dict[str, int]:
    pins: dict[str, int] = {}
    for v in values:
        name, sep, num = v.partition("=")
        if not sep or not num.strip().isdigit():
            raise click.BadParameter(f"{v!r}: expected NAME=BCM, e.g. score_1=5", param_hint="--pin")
        pins[name.strip()] = int(num)
    return pins


@fleet.command("add-device")
@click.argument("device_id")
@click.option("--centre", required=True)
@click.option("--counter", required=True)
@click.option("--hardware", type=click.Choice(["touch", "buttons", "both"]), default="touch", show_default=True)
@click.option("--pin", "pins", multiple=True, help="score_N=BCM, led_N=BCM or served=BCM (repeatable).")
@pass_ctx
def add_device(ctx: Ctx, device_id: str, centre: str, counter: str, hardware: str, pins: tuple[str, ...]) -> None:
    """Register a new terminal at a counter."""
    from .fleet_append import append_device
    from .fleetedit import new_device

    # no whole-registry load: the new table is checked against the parsed files and appended
    dev = _edit(new_device, ctx.fleet, id=device_id, centre=centre, counter=counter, hardware=hardware,
                pins=_pins(pins))
    _edit(append_device, ctx.fleet, dev)
    click.echo(f"added {device_id} at {centre}/{counter}; next: hailong fleet provision {device_id} --out DIR")


@fleet.command("move-device")
@click.argument("device_id")
@click.option("--centre", default=None, help="New centre (default: unchanged).")
@click.option("--counter", required=True, help="New counter.")
@BROKER_OUT
@pass_ctx
def move_device(ctx: Ctx, device_id: str, centre: str | None, counter: str, broker_out: Path | None) -> None:
    """Move a terminal to another counter (its ACL follows; re-provision for the new config)."""
    from .fleetedit import update_device

    reg = ctx.registry()
    changes = {"counter": counter} | ({"centre": centre} if centre else {})
    _edit(update_device, reg, device_id, **changes)
    click.echo(f"moved {device_id} to {centre or reg.device(device_id).centre}/{counter}; "
               f"re-provision it: hailong fleet provision {device_id} --out DIR")
    _rerender(ctx, broker_out)


@fleet.command("retire-device")
@click.argument("device_id")
@BROKER_OUT
@pass_ctx
def retire_device(ctx: Ctx, device_id: str, broker_out: Path | None) -> None:
    """Retire a terminal: it keeps its history, loses its credentials and ACL entry."""
    from .fleetedit import update_device

    _edit(update_device, ctx.registry(), device_id, retired=True)
    ctx.state.revoke_device(device_id)
    click.echo(f"retired {device_id}; its password and certificate are revoked")
    _rerender(ctx, broker_out)


@fleet.command("add-officer")
@click.argument("officer_id")
@click.option("--name", required=True, help="Display name with full diacritics, e.g. 'Nguyễn Thị Lan'.")
@click.option("--centre", required=True)
@pass_ctx
def add_officer(ctx: Ctx, officer_id: str, name: str, centre: str) -> None:
    """Register an officer (cán bộ) as the queue system identifies them."""
    from .fleet_append import append_officer
    from .fleetedit import new_officer

    _edit(append_officer, ctx.fleet, _edit(new_officer, ctx.fleet, id=officer_id, name=name, centre=centre))
    click.echo(f"added officer {officer_id} ({name}) at {centre}; re-provision the centre's terminals "
               "or push a config update for the new name to show")


@fleet.command("move-officer")
@click.argument("officer_id")
@click.option("--centre", required=True)
@pass_ctx
def move_officer(ctx: Ctx, officer_id: str, centre: str) -> None:
    """Move an officer to another centre."""
    from .fleetedit import update_officer

    _edit(update_officer, ctx.registry(), officer_id, centre=centre)
    click.echo(f"moved officer {officer_id} to {centre}")


@fleet.command("retire-officer")
@click.argument("officer_id")
@pass_ctx
def retire_officer(ctx: Ctx, officer_id: str) -> None:
    """Mark an officer as retired (kept, so past ratings keep their name)."""
    from .fleetedit import update_officer

    _edit(update_officer, ctx.registry(), officer_id, retired=True)
    click.echo(f"retired officer {officer_id}")


@fleet.command("provision")
@click.argument("devices", nargs=-1)
@click.option("--centre", default=None, help="Provision every active terminal of this centre.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Bundles are written to OUT/<device>/ (they contain secrets: keep private).")
@click.option("--mode", type=click.Choice(["cert", "password"]), default="cert", show_default=True,
              help="cert: TLS client certificate (production); password: username/password over TLS.")
@click.option("--broker-host", default=None, help="Broker name the terminals connect to (default: the first "
              "hostname recorded by `hailong broker render --hostname`, in <fleet>/broker.toml).")
@click.option("--ssh-key", "ssh_keys", type=click.File("r"), multiple=True,
              help="Technician's SSH public key file for the 'tech' user (repeatable).")
@click.option("--wifi-ssid", default=None, help="Wi-Fi network (password from env HAILONG_WIFI_PASSWORD).")
@click.option("--wifi-password", envvar="HAILONG_WIFI_PASSWORD", default=None, hidden=True)
@click.option("--wheel", "wheel", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The hailong wheel to put in the bundles (default: built from this checkout).")
@click.option("--pip-spec", default=None, help="Override what pip installs on the Pi instead of the bundled "
              "wheel (e.g. a wheel URL on the centre server).")
@click.option("--watchdog/--no-watchdog", default=True, show_default=True,
              help="systemd watchdog (Type=notify, WatchdogSec); --no-watchdog for app builds without sd_notify.")
@click.option("--audio/--no-audio", default=False, show_default=True,
              help="Spoken prompts: the clips are made here with espeak-ng and [audio] enabled (needs a speaker).")
@click.option("--voice", type=click.Choice(["vi", "vi-vn-x-south", "vi-vn-x-central"]), default="vi",
              show_default=True, help="espeak-ng voice of the spoken clips (northern, southern, central).")
@click.option("--web-base", default=None, help="Public origin of the web rating service (https://...): terminals "
              "with a screen in centres with a queue system show the QR to rate later, signed with their counter's "
              "own key.")
@BROKER_OUT
@pass_ctx
def provision(ctx: Ctx, devices: tuple[str, ...], centre: str | None, out: Path, mode: str,
              broker_host: str | None, ssh_keys: tuple[Any, ...], wifi_ssid: str | None,
              wifi_password: str | None, wheel: Path | None, pip_spec: str | None, watchdog: bool,
              audio: bool, voice: str, web_base: str | None, broker_out: Path | None) -> None:
    """Generate credentials and the first-boot bundle for DEVICES (or a whole --centre)."""
    from broker.kernel.settings import ConfigError
    from broker.mosquitto.render import load_options
    from device.config import Voice

    from .provision import ProvisionSettings, provision_many
    from .sounds import SoundError
    from .wheel import WheelError, project_wheel

    reg = ctx.registry()
    if centre is not None:
        if centre not in reg.centres:
            raise click.ClickException(f"no centre {centre!r} in {ctx.fleet}/centres.toml")
        devices = devices + tuple(d.id for d in reg.active_devices(centre))
    if not devices:
        raise click.UsageError("name at least one DEVICE or --centre")
    opt = load_options(ctx.fleet, ctx.state)
    if pip_spec is None and wheel is None:
        try:
            wheel = project_wheel()  # hailong is not on PyPI: the bundles carry it
        except WheelError as exc:
            raise click.ClickException(str(exc)) from None
    if web_base is not None and not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", web_base):
        raise click.BadParameter("the public origin only, e.g. https://danhgia.example.gov.vn (no path, no "
                                 "trailing slash)", param_hint="--web-base")
    settings = ProvisionSettings(
        broker_host=broker_host or opt.hostnames[0], tls_port=opt.tls_port, cert_port=opt.cert_port,
        mode=_mode(mode), pip_spec=pip_spec, wheel=None if pip_spec else wheel,
        ssh_keys=tuple(f.read().strip() for f in ssh_keys), wifi_ssid=wifi_ssid,
        wifi_password=SecretStr(wifi_password) if wifi_password else None,
        watchdog=watchdog, audio=audio, voice=cast(Voice, voice), web_base=web_base)
    if settings.broker_host in ("localhost", "127.0.0.1"):
        click.echo(f"warning: terminals will connect to {settings.broker_host}; record the broker's name once "
                   f"with `hailong broker render --fleet {ctx.fleet} --hostname NAME --out DIR`", err=True)
    t0 = t = time.monotonic()
    # one run: the wheel, CA and OS files prepared once, the passwords written once, for every terminal
    bundles = provision_many(reg, list(devices), ctx.state, out, settings)
    for i, dev in enumerate(devices, 1):
        try:
            target = next(bundles)
        except (RegistryError, SoundError) as exc:
            raise click.ClickException(f"[{i}/{len(devices)}] {exc}") from None
        except ConfigError as exc:  # the terminal would refuse this config at first boot
            raise click.ClickException(f"[{i}/{len(devices)}] {dev}: the terminal would stop with: {exc} "
                                       f"(fix device.{dev} in {ctx.fleet / 'devices.toml'})") from None
        now = time.monotonic()
        click.echo(f"[{i}/{len(devices)}] {dev:<20} {target}  ({(now - t) * 1000:.0f} ms)")
        t = now
    total = time.monotonic() - t0
    click.echo(f"provisioned {len(devices)} terminal(s) in {total:.2f}s ({total / len(devices) * 1000:.0f} ms each)")
    _rerender(ctx, broker_out)


def _mode(value: str) -> Literal["cert", "password"]:
    return "cert" if value == "cert" else "password"


@fleet.command("revoke")
@click.argument("device_id")
@BROKER_OUT
@pass_ctx
def revoke(ctx: Ctx, device_id: str, broker_out: Path | None) -> None:
    """Revoke a terminal's credentials (lost or stolen unit): CRL entry, password and ACL removed."""
    _edit(ctx.registry().device, device_id)
    had = ctx.state.revoke_device(device_id)
    click.echo(f"revoked {device_id}" if had else f"{device_id} had no live credentials; nothing to revoke")
    dev = ctx.registry().devices[device_id]
    if ctx.state.weblink_dir.joinpath(f"{dev.centre}.toml").exists():
        click.echo(f"its rating-link key still signs QR links of counter {dev.counter}: revoke it with "
                   f"`hailong web key rotate --fleet {ctx.fleet} --centre {dev.centre} --revoke-counter {dev.counter}`")
    _rerender(ctx, broker_out)


@fleet.command("rotate")
@click.argument("device_id")
@BROKER_OUT
@pass_ctx
def rotate(ctx: Ctx, device_id: str, broker_out: Path | None) -> None:
    """New password and certificate for a terminal (the old certificate is revoked)."""
    _edit(ctx.registry().device, device_id)
    ctx.state.rotate_password(device_id)
    ctx.state.device_cert(device_id, renew=True)
    click.echo(f"rotated {device_id}: new secrets in {ctx.state.root}; re-provision the terminal "
               f"(hailong fleet provision {device_id} --out DIR) before reloading the broker")
    _rerender(ctx, broker_out)


for _cmd in CENTRE_COMMANDS:
    fleet.add_command(_cmd)
