"""``hailong qms bridge --config qms.toml [--check [--sample body.json]]``"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from broker.kernel.settings import ConfigError

from .config import BridgeConfig, load_config
from .mapping import Mapped, Mapper, MappingError, NotServed
from .outbox import RETRY_REQUEST

log = logging.getLogger("hailong.qms")


@click.group()
def qms() -> None:
    """Queue systems (QMS): bridge a vendor's webhook or database to the QMS topics."""


def _print_events(label: str, result: list[Mapped | NotServed] | MappingError) -> bool:
    if isinstance(result, MappingError):
        click.echo(f"# {label}: NOT MAPPED ({result.reason}) {result}", err=False)
        return False
    for m in result:
        if isinstance(m, NotServed):
            click.echo(f"# {label}: {m.type} NOT PUBLISHED: status {m.status!r} is not_served ([maps.statuses])")
            continue
        click.echo(f"# {label} -> {m.topic}")
        click.echo(m.event.to_json().decode("utf-8"))
    if not result:
        click.echo(f"# {label}: no event (no time column set)")
    return True


def _check(cfg: BridgeConfig, sample: Path | None, limit: int) -> int:
    """Map a sample and print what would be published; publish and store nothing."""
    mapper = Mapper(cfg)
    ok = True
    if sample is not None:
        try:
            doc = json.loads(sample.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise click.ClickException(f"cannot read sample {sample}: {exc}") from None
        try:
            ok = _print_events(str(sample), mapper.from_webhook(doc))
        except MappingError as exc:
            ok = _print_events(str(sample), exc)
    else:
        if not cfg.sql.enabled:
            raise click.ClickException("--check without --sample reads the database: enable [sql] or give --sample")
        from .sql import check_rows

        try:
            results = check_rows(cfg, mapper, limit)
        except Exception as exc:  # any driver error: say it in one line, like a config error
            raise click.ClickException(f"cannot read the database: {str(exc).splitlines()[0]}") from None
        for label, result in results:
            ok = _print_events(label, result) and ok
    click.echo("# check: nothing was published", err=True)
    return 0 if ok else 2


@qms.group("bridge", invoke_without_command=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="qms.toml (env overrides: HAILONG_QMS__SECTION__KEY).")
@click.option("--check", is_flag=True, help="Print the events a sample would give, publish nothing.")
@click.option("--sample", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="With --check: a webhook JSON body to map (without it: the newest database rows).")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="With --check on the database: rows per source.")
@click.pass_context
def bridge(ctx: click.Context, config_path: Path | None, check: bool, sample: Path | None, limit: int) -> None:
    """Run the bridge until SIGTERM/SIGINT (or only --check a mapping); `mark` and `held` manage its
    read position and the rows it holds."""
    if ctx.invoked_subcommand is not None:
        return
    if config_path is None:
        raise click.UsageError("--config is required (qms.toml)")
    try:
        # --check publishes nothing: the broker's password is not needed (the database's is read on use)
        cfg = load_config(config_path, read_secrets=not check)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if check:
        try:
            sys.exit(_check(cfg, sample, limit))
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    if sample is not None:
        raise click.UsageError("--sample is only used with --check")
    from .service import Bridge

    try:
        svc = Bridge(cfg).start()
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot start the QMS bridge: {exc}") from None
    click.echo(f"qms bridge {cfg.centre} listening on {cfg.http.host}:{svc.http.port}", err=True)
    stop = threading.Event()
    reload = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # SIGHUP (systemctl reload): the maps of qms.toml again, and the held rows retried with them
    def _hup(*_: Any) -> None:
        reload.set()
        stop.set()

    signal.signal(signal.SIGHUP, _hup)
    while True:
        stop.wait()
        if not reload.is_set():
            break
        stop.clear()
        reload.clear()
        try:
            svc.reload_maps(load_config(config_path))
        except ConfigError as exc:
            log.error("reload refused, the running maps are kept: %s", exc)
    svc.stop()


# ---------------------------------------------------------------------- read position and held rows
config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                             required=True, help="qms.toml of the bridge (its outbox holds the position).")
source_option = click.option("--source", default=None, help="One [[sql.sources]] name (default: every source).")


def _outbox(config_path: Path, source: str | None) -> tuple[BridgeConfig, list[str], Any]:
    from .outbox import Outbox

    try:
        cfg = load_config(config_path, read_secrets=False)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    names = [s.name for s in cfg.sql.sources]
    if not cfg.sql.enabled or not names:
        raise click.ClickException(f"{config_path}: no [[sql.sources]]: only a database source has a read position")
    if source is not None and source not in names:
        raise click.BadParameter(f"{source!r} is not a source of {config_path} ({', '.join(names)})",
                                 param_hint="--source")
    return cfg, [source] if source else names, Outbox(cfg.outbox, cfg.seen_days)


def _shown(value: Any) -> str:
    from .sql import _decode

    v = _decode(value)
    return v.isoformat() if hasattr(v, "isoformat") else repr(v)


@bridge.group()
def mark() -> None:
    """The read position (high-water mark) of each database source: rows after it are read next."""


@mark.command("show")
@config_option
@source_option
def mark_show(config_path: Path, source: str | None) -> None:
    """Print each source's read position and the rows held for a mapping gap."""
    cfg, names, outbox = _outbox(config_path, source)
    try:
        marks = outbox.watermarks()
        sources = {s.name: s for s in cfg.sql.sources}
        for name in names:
            held = len(outbox.held(name))
            src = sources[name]
            where = (f"after {src.changed_column} = {_shown(marks[name][0])}, {src.id_column} = "
                     f"{_shown(marks[name][1])}" if name in marks else "from the start (nothing read yet)")
            click.echo(f"{name}: {where}; {held} row(s) held")
    finally:
        outbox.close()


def _parse_value(text: str) -> Any:
    import datetime as dt

    from .sql import _encode

    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    try:
        return _encode(dt.datetime.fromisoformat(text))
    except ValueError:
        return text


@mark.command("set")
@config_option
@click.option("--source", required=True, help="The [[sql.sources]] name.")
@click.option("--changed", required=True,
              help="Value of the source's changed_column to read after: a time (ISO 8601, local time of the "
                   "database, e.g. 2026-12-07T08:00:00) or a number.")
@click.option("--id", "row_id", required=True,
              help="Value of its id_column at that time: rows with this time and a larger id are read "
                   "(0 reads every row of that time, for numeric ids).")
def mark_set(config_path: Path, source: str, changed: str, row_id: str) -> None:
    """Read SOURCE from after a given position (e.g. skip a backlog, or go back to re-read a day)."""
    _, _, outbox = _outbox(config_path, source)
    try:
        position = [_parse_value(changed), _parse_value(row_id)]
        # the position is also a floor: the overlap re-read (late commits) never goes back before it
        outbox.set_watermark(source, [*position, position])
        click.echo(f"{source}: rows after {changed} / {row_id} are read next (a running bridge: at its next poll)")
    finally:
        outbox.close()


@mark.command("reset")
@config_option
@source_option
def mark_reset(config_path: Path, source: str | None) -> None:
    """Forget the read position: the source is read again from its first row. Events already
    published keep their ids and are not published again (within seen_days)."""
    _, names, outbox = _outbox(config_path, source)
    try:
        for name in names:
            outbox.set_watermark(name, None)
            click.echo(f"{name}: read from the start at the next poll")
    finally:
        outbox.close()


@bridge.group()
def held() -> None:
    """Rows the bridge could not map yet (a code missing from a map): kept and retried."""


@held.command("list")
@config_option
@source_option
def held_list(config_path: Path, source: str | None) -> None:
    """Print the held rows: source, row id, attempts, and what is missing."""
    _, names, outbox = _outbox(config_path, source)
    try:
        rows = [h for h in outbox.held() if h.source in names]
        for h in rows:
            click.echo(f"{h.source} {h.row_id}: {h.problem} (reason {h.reason}, {h.attempts} attempt(s))")
        click.echo(f"{len(rows)} row(s) held", err=True)
    finally:
        outbox.close()


@held.command("retry")
@config_option
def held_retry(config_path: Path) -> None:
    """Ask the running bridge to retry the held rows at its next poll (it also does so at start and
    every sql.retry_held_s): after fixing a map, restart the bridge; this is for anything else."""
    _, _, outbox = _outbox(config_path, None)
    try:
        outbox.request(RETRY_REQUEST)
        click.echo(f"{len(outbox.held())} held row(s) will be retried at the bridge's next poll")
    finally:
        outbox.close()


@held.command("drop")
@config_option
@source_option
@click.option("--yes", is_flag=True, help="Really forget them: they are never published.")
def held_drop(config_path: Path, source: str | None, yes: bool) -> None:
    """Forget held rows for good (e.g. test tickets that will never map)."""
    if not yes:
        raise click.UsageError("held rows dropped are never published: add --yes")
    _, _, outbox = _outbox(config_path, source)
    try:
        click.echo(f"{outbox.drop_held(source)} held row(s) dropped")
    finally:
        outbox.close()
