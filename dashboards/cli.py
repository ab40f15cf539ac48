"""``hailong dashboards build|push`` and ``hailong report weekly``."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from broker.kernel.settings import ConfigError

from .settings import DashboardSettings, load_settings


def _settings(config: Path | None) -> DashboardSettings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def dashboards() -> None:
    """Grafana dashboards, provisioning and alert rules as code."""


@dashboards.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory to write dashboards/*.json and provisioning/**.yaml into.")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TOML file with dashboard settings (datasource uid, InfluxDB URL, minimum sample, contacts).")
@click.option("--national", is_flag=True, help="The Ministry's Grafana instead: hl-national (Xếp hạng tỉnh) and "
              "its alert, over the national InfluxDB (docs/national.md).")
def build(out_dir: Path, config: Path | None, national: bool) -> None:
    """Write dashboards JSON and Grafana provisioning YAML (datasource, provider, alert rules)."""
    from .provisioning import build as build_files

    if national:
        from .boards_national import render_national

        for rel, text in render_national(_settings(config)).items():
            path = out_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            click.echo(str(path))
        return
    for path in build_files(out_dir, _settings(config)):
        click.echo(str(path))


@dashboards.command()
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="TOML push config: Grafana URL, token (env/file), province, centres, teams.")
@click.option("--dry-run", is_flag=True, help="Show what would change, change nothing.")
def push(config: Path, dry_run: bool) -> None:
    """Create/update per-centre folders, teams, permissions and dashboards in Grafana (idempotent)."""
    from .push import PushError, load_push_config, push_all

    try:
        cfg = load_push_config(config)
        changes = push_all(cfg, dry_run=dry_run)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except PushError as exc:
        raise click.ClickException(str(exc)) from None
    for line in changes:
        click.echo(line)
    click.echo(f"{len(changes)} change(s){' (dry run)' if dry_run else ''}")


@dashboards.group()
def rollup() -> None:
    """Daily rollups (continuous queries) read by the officer and province dashboards."""


def _influx_settings(config: Path | None, influx_url: str | None, database: str | None) -> DashboardSettings:
    """The settings with --influx-url/--db applied; credentials only from the config file or env
    (HAILONG_DASHBOARDS__INFLUX__USERNAME / __PASSWORD / __PASSWORD_FILE / __TOKEN / __TOKEN_FILE)."""
    s = _settings(config)
    update = {k: v for k, v in (("url", influx_url), ("database", database)) if v}
    return s.model_copy(update={"influx": s.influx.model_copy(update=update)}) if update else s


_influx_options = [
    click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="TOML dashboard settings ([influx] url, database, username, password_file, token_file)."),
    click.option("--influx-url", default=None, help="InfluxDB URL (overrides the config file)."),
    click.option("--db", "database", default=None, help="InfluxDB database (overrides the config file)."),
]


def influx_options(fn: Any) -> Any:
    for option in reversed(_influx_options):
        fn = option(fn)
    return fn


@rollup.command("install")
@influx_options
@click.option("--every", default="5m", show_default=True, help="How often the continuous queries run.")
@click.option("--for", "resample_for", default="2d", show_default=True, help="How far back each run recomputes.")
def rollup_install(config: Path | None, influx_url: str | None, database: str | None, every: str,
                   resample_for: str) -> None:
    """Create (or recreate) the continuous queries in InfluxDB."""
    from storage.influxql import InfluxQueryError

    from .rollup import install

    s = _influx_settings(config, influx_url, database)
    try:
        for name in install(s.influx.query_client(), s, every, resample_for):
            click.echo(name)
    except InfluxQueryError as exc:
        raise click.ClickException(f"InfluxDB refused: {exc}") from None


@rollup.command("backfill")
@influx_options
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First local day, YYYY-MM-DD.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last local day, YYYY-MM-DD.")
def rollup_backfill(config: Path | None, influx_url: str | None, database: str | None, since: datetime,
                    until: datetime) -> None:
    """Recompute the rollups for whole local days (after late data or when first installing)."""
    from zoneinfo import ZoneInfo

    from storage.influxql import InfluxQueryError

    from .rollup import backfill

    s = _influx_settings(config, influx_url, database)
    zone = ZoneInfo(s.timezone)
    start, end = since.replace(tzinfo=zone), until.replace(tzinfo=zone) + timedelta(days=1)
    try:
        n = backfill(s.influx.query_client(timeout_s=600), s, start, end)
    except InfluxQueryError as exc:
        raise click.ClickException(f"InfluxDB refused: {exc}") from None
    click.echo(f"rollups recomputed for {since:%Y-%m-%d}..{until:%Y-%m-%d}: {n} rollup points written")


@click.group()
def report() -> None:
    """Reports built from InfluxDB."""


@report.command()
@click.option("--centre", required=True, help="Centre id.")
@click.option("--week", required=True, help="ISO week, e.g. 2026-W47.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@influx_options
@click.option("--weeks-back", default=8, show_default=True, help="Previous weeks shown in the trend chart.")
@click.option("--registry", "--fleet", "registry", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Fleet registry directory: centre and officer names; an unknown centre id is refused. Default: "
                   "the config's `registry`, env HAILONG_FLEET, or the ingest config's `registry`.")
@click.option("--ingest-config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The ingest's TOML, read for its `registry` (default /etc/hailong/ingest.toml when it exists).")
@click.option("--allow-ids", is_flag=True,
              help="Without any registry, print the scorecard with bare centre and officer ids.")
def weekly(centre: str, week: str, out_dir: Path, influx_url: str | None, database: str | None,
           config: Path | None, weeks_back: int, registry: Path | None, ingest_config: Path | None,
           allow_ids: bool) -> None:
    """Weekly officer scorecard for one centre: PDF (summary page, one page per officer) and CSV."""
    from broker.contract import ContractError, validate_id
    from broker.fleet.registry import RegistryError, load_registry
    from storage.influxql import InfluxQueryError

    from .registry_lookup import HOW_TO_POINT, RegistryNotReadable, find_registry
    from .report import write_weekly
    from .scorecard import IsoWeek, NoScorecardData

    try:
        validate_id(centre, "centre")
    except ContractError as exc:
        raise click.BadParameter(exc.message, param_hint="--centre") from None
    try:
        iso = IsoWeek.parse(week)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--week") from None
    s = _influx_settings(config, influx_url, database)
    configured = s.registry
    if configured is not None and not configured.is_absolute() and config is not None:
        configured = (config.parent / configured).resolve()  # relative to the TOML that names it
    try:
        found = find_registry(registry, configured, ingest_config)
    except RegistryNotReadable as exc:
        raise click.ClickException(str(exc)) from None
    names: dict[str, str] = {}
    centre_name = ""
    if found is None:
        if not allow_ids:
            raise click.ClickException(f"no fleet registry found, so the scorecard would name centre and officers by "
                                       f"bare ids: {HOW_TO_POINT}")
    else:
        try:
            reg = load_registry(found.path)
        except RegistryError as exc:
            raise click.ClickException(f"{exc} (registry from {found.source})") from None
        if centre not in reg.centres:
            known = ", ".join(sorted(reg.centres)) or "none"
            raise click.BadParameter(f"unknown centre {centre!r}: the registry {found.path} ({found.source}) has "
                                     f"{known}", param_hint="--centre")
        centre_name = reg.centres[centre].name
        names = {o.id: o.name for o in reg.officers.values() if o.centre == centre}
    try:
        pdf, csv_path = write_weekly(s, centre, iso, out_dir, weeks_back, names, centre_name)
    except InfluxQueryError as exc:
        raise click.ClickException(f"InfluxDB query failed: {exc}") from None
    except NoScorecardData as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(str(pdf))
    click.echo(str(csv_path))
