"""What every ``hailong fleet`` command shares: the fleet directory and state, registry
errors as click errors, and re-rendering the broker files after a change.

A module of its own so that the command modules (fleet_cli, centre_cli) import it and never
each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from broker.fleet.credentials import FleetState
from broker.fleet.registry import Registry, RegistryError, load_registry


@dataclass
class Ctx:
    fleet_dir: Path | None
    state_dir: Path | None

    @property
    def fleet(self) -> Path:
        # checked here, not by click, so `hailong fleet provision --help` works without a fleet
        if self.fleet_dir is None:
            raise click.UsageError("give the fleet directory: hailong fleet --fleet DIR ... (or env HAILONG_FLEET)")
        return self.fleet_dir

    def registry(self) -> Registry:
        try:
            return load_registry(self.fleet)
        except RegistryError as exc:
            raise click.ClickException(str(exc)) from None

    @property
    def state(self) -> FleetState:
        return FleetState.for_fleet(self.fleet, self.state_dir)


T = TypeVar("T")
pass_ctx = click.make_pass_decorator(Ctx)
BROKER_OUT = click.option("--broker-out", type=click.Path(file_okay=False, path_type=Path), default=None,
                          help="Re-render the broker files into this directory afterwards.")


def _edit(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    try:
        return fn(*args, **kw)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None


def _rerender(ctx: Ctx, out: Path | None) -> None:
    if out is None:
        click.echo("broker files not re-rendered: run `hailong broker render` and reload the broker (SIGHUP)")
        return
    from broker.mosquitto.render import load_options, render_broker

    # options (host names above all) from <fleet>/broker.toml or the issued certificate: never the defaults
    render_broker(ctx.registry(), ctx.state, out, load_options(ctx.fleet, ctx.state))
    click.echo(f"broker files re-rendered in {out}; now reload the broker: kill -HUP <mosquitto pid> "
               "(systemctl reload mosquitto / docker compose kill -s HUP mosquitto)")
