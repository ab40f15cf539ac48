"""``hailong fleet init / add-centre / add-counter / set-counter / show / import``: the registry's
centres and counters from the command line (or a whole province from a spreadsheet), so a
technician never edits centres.toml by hand.

Every edit goes through firmware_config/fleetedit.py: written to a scratch copy,
the whole registry re-validated, then replaced atomically.
"""

from __future__ import annotations

from pathlib import Path

import click

from .fleet_context import Ctx, _edit, pass_ctx


@click.command("init")
@pass_ctx
def init(ctx: Ctx) -> None:
    """Create an empty fleet directory (centres.toml, devices.toml, officers.toml)."""
    from .fleetedit import init_fleet

    root = init_fleet(ctx.fleet)
    click.echo(f"fleet ready in {root}; next: hailong fleet add-centre ID --name NAME --province ID --counters N")


@click.command("add-centre")
@click.argument("centre_id")
@click.option("--name", required=True, help="Display name with full diacritics, e.g. "
              "'Trung tâm Phục vụ hành chính công tỉnh Quảng Ninh'.")
@click.option("--province", required=True, help="Province id, e.g. quang-ninh (a tag in InfluxDB).")
@click.option("--qms/--no-qms", default=True, show_default=True,
              help="Whether a queue system publishes this centre's tickets and officer logins.")
@click.option("--walkup/--no-walkup", default=False, show_default=True,
              help="Accept ratings without a ticket (never scored).")
@click.option("--counters", type=click.IntRange(1, 200), default=1, show_default=True,
              help="Create counters q01..qNN labelled 'Quầy 1'..'Quầy N' (rename with set-counter).")
@pass_ctx
def add_centre(ctx: Ctx, centre_id: str, name: str, province: str, qms: bool, walkup: bool,
               counters: int) -> None:
    """Register a centre with its counters."""
    from .fleetedit import add_centre as add
    from .fleetedit import new_centre, numbered_counters

    reg = ctx.registry()
    centre = _edit(new_centre, reg, id=centre_id, name=name, province=province, has_qms=qms,
                   walkup_allowed=walkup)
    rows = _edit(numbered_counters, reg, centre_id, counters)
    _edit(add, reg, centre, rows)
    click.echo(f"added centre {centre_id} with counters {rows[0].id}..{rows[-1].id}")
    if not qms:
        click.echo("no queue system: name the officer of each counter, e.g. "
                   f"hailong fleet add-officer ID --name NAME --centre {centre_id} && "
                   f"hailong fleet set-counter {rows[0].id} --centre {centre_id} --officer ID")


@click.command("add-counter")
@click.argument("counter_id")
@click.option("--centre", required=True)
@click.option("--label", required=True, help="Label shown on the terminal, e.g. 'Quầy 4 – Đất đai'.")
@click.option("--service", "services", multiple=True, help="Service area id served here (repeatable).")
@click.option("--officer", default=None, help="Officer credited here (centres without a queue system).")
@pass_ctx
def add_counter(ctx: Ctx, counter_id: str, centre: str, label: str, services: tuple[str, ...],
                officer: str | None) -> None:
    """Add a counter (quầy) to a centre."""
    from .fleetedit import add_counter as add
    from .fleetedit import new_counter

    reg = ctx.registry()
    counter = _edit(new_counter, reg, id=counter_id, centre=centre, label=label, services=services,
                    officer=officer)
    _edit(add, reg, counter)
    click.echo(f"added counter {centre}/{counter_id} ({label}); next: hailong fleet add-device ID "
               f"--centre {centre} --counter {counter_id}")


@click.command("set-counter")
@click.argument("counter_id")
@click.option("--centre", required=True)
@click.option("--label", default=None, help="New label.")
@click.option("--service", "services", multiple=True, help="Replace the service areas (repeatable).")
@click.option("--officer", default=None, help="Officer credited here; '-' clears it.")
@pass_ctx
def set_counter(ctx: Ctx, counter_id: str, centre: str, label: str | None, services: tuple[str, ...],
                officer: str | None) -> None:
    """Change a counter's label, services or officer (re-provision its terminal afterwards)."""
    from .fleetedit import update_counter

    changes: dict[str, object] = {}
    if label is not None:
        changes["label"] = label
    if services:
        changes["services"] = services
    if officer is not None:
        changes["officer"] = None if officer == "-" else officer
    if not changes:
        raise click.UsageError("nothing to change: give --label, --service or --officer")
    _edit(update_counter, ctx.registry(), centre, counter_id, **changes)
    click.echo(f"updated counter {centre}/{counter_id}; re-provision its terminal for the change to show")


@click.command("show")
@click.argument("kind", type=click.Choice(["centre", "device", "officer"]))
@click.argument("ident")
@pass_ctx
def show(ctx: Ctx, kind: str, ident: str) -> None:
    """Everything the registry knows about one centre, device or officer."""
    reg = ctx.registry()
    if kind == "centre":
        c = reg.centres.get(ident)
        if c is None:
            raise click.ClickException(f"no centre {ident!r} in {ctx.fleet / 'centres.toml'}")
        click.echo(f"centre {c.id}: {c.name}\n  province {c.province}, queue system "
                   f"{'yes' if c.has_qms else 'no'}, walk-up ratings {'accepted' if c.walkup_allowed else 'refused'}")
        by_counter = {d.counter: d.id for d in reg.active_devices(c.id)}
        for q in reg.counters_of(c.id):
            officer = f"  officer {q.officer}" if q.officer else ""
            click.echo(f"  {q.id:<6} {q.label:<36} terminal {by_counter.get(q.id, '-'):<16}{officer}".rstrip())
        return
    if kind == "device":
        d = _edit(reg.device, ident)
        state = ctx.state
        creds = "revoked" if state.is_revoked(d.id) else "issued" if _has_cert(state.pki_dir, d.id) else "none yet"
        click.echo(f"device {d.id}: {d.centre}/{d.counter} ({reg.counters[(d.centre, d.counter)].label})\n"
                   f"  hardware {d.hardware}, pins {d.pins or '-'}, {'retired' if d.retired else 'active'}, "
                   f"credentials {creds}")
        return
    o = reg.officers.get(ident)
    if o is None:
        raise click.ClickException(f"no officer {ident!r} in {ctx.fleet / 'officers.toml'}")
    counters = [q.id for q in reg.counters_of(o.centre) if q.officer == o.id]
    click.echo(f"officer {o.id}: {o.name}\n  centre {o.centre}, {'retired' if o.retired else 'active'}, "
               f"credited at {', '.join(counters) or '- (the queue system says where)'}")


def _has_cert(pki: Path, device: str) -> bool:
    return (pki / "devices" / f"{device}.crt").exists()


@click.command("import")
@click.argument("csv_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the file against the registry; write nothing.")
@pass_ctx
def import_(ctx: Ctx, csv_file: Path, dry_run: bool) -> None:
    """Centres, counters, terminals and officers from a CSV sheet (columns: docs/fleet.md), all or nothing."""
    from .fleet_import import CsvImportError, import_csv

    try:
        out = import_csv(ctx.fleet, csv_file, dry_run=dry_run)
    except CsvImportError as exc:
        raise click.ClickException(str(exc)) from None
    for warning in out.warnings:
        click.echo(f"warning: {warning}", err=True)
    added = (f"{out.centres} centre(s), {out.counters} counter(s), {out.devices} terminal(s), "
             f"{out.officers} officer(s)")
    if not out.changed:
        click.echo(f"{csv_file}: {out.rows} rows, all already in the registry; nothing to import")
        return
    if dry_run:
        click.echo(f"{csv_file}: {out.rows} rows are good; would add {added} (--dry-run: nothing written)")
        return
    click.echo(f"{csv_file}: {out.rows} rows imported: added {added}; next: "
               "hailong fleet provision --centre ID --out DIR --broker-out DIR")


COMMANDS = (init, add_centre, add_counter, set_counter, show, import_)
