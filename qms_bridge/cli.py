"""``hailong qms bridge --config qms.toml [--check [--sample body.json]]``"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path

import click

from broker.kernel.settings import ConfigError

from .config import BridgeConfig, load_config
from .mapping import Mapped, Mapper, MappingError

log = logging.getLogger("hailong.qms")


@click.group()
def qms() -> None:
    """Queue systems (QMS): bridge a vendor's webhook or database to the QMS topics."""


def _print_events(label: str, result: list[Mapped] | MappingError) -> bool:
    if isinstance(result, MappingError):
        click.echo(f"# {label}: NOT MAPPED ({result.reason}) {result}", err=False)
        return False
    for m in result:
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


@qms.command("bridge")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="qms.toml (env overrides: HAILONG_QMS__SECTION__KEY).")
@click.option("--check", is_flag=True, help="Print the events a sample would give, publish nothing.")
@click.option("--sample", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="With --check: a webhook JSON body to map (without it: the newest database rows).")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="With --check on the database: rows per source.")
def bridge(config_path: Path, check: bool, sample: Path | None, limit: int) -> None:
    """Run the bridge until SIGTERM/SIGINT (or only --check a mapping)."""
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
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    svc.stop()
