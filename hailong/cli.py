"""The ``hailong`` command. Subcommand groups live in their own packages and are
imported lazily, so ``hailong device ...`` on a Pi never imports InfluxDB or
Grafana code, and a missing optional dependency only breaks its own group."""

from __future__ import annotations

import importlib
import logging
import sys

import click

# name -> "module:attribute" of a click command or group
SUBCOMMANDS: dict[str, str] = {
    "contract": "broker.contract_cli:contract",
    "ingest": "ingest.cli:ingest",
    "sim": "device.cli:sim",
    "device": "device.cli:device",
    "demo": "hailong.demo:demo",
    "broker": "broker.mosquitto.cli:broker",
    "fleet": "firmware_config.fleet_cli:fleet",
    "dashboards": "dashboards.cli:dashboards",
    "report": "dashboards.cli:report",
    "qms": "qms_bridge.cli:qms",
    "config": "hailong.configref:config",
    "federation": "federation.cli:federation",
    "national": "national.cli:national",
    "web": "web.cli:web",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(SUBCOMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, attr = target.split(":")
        try:
            cmd = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise click.ClickException(
                f"`hailong {cmd_name}` needs a package that is not installed ({exc.name}); "
                "install hailong with the matching extra, e.g. pip install 'hailong[server]'"
            ) from None
        assert isinstance(cmd, click.Command)
        return cmd


@click.group(cls=LazyGroup)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="hailong")
def main(verbose: int) -> None:
    """hailong: citizen satisfaction terminals for one-stop public-service centres."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":  # pragma: no cover
    main()
