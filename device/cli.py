"""``hailong sim ...`` and ``hailong device ...``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from broker.mqtt.settings import MqttSettings

if TYPE_CHECKING:
    from .runtime import DeviceRuntime


@click.group()
def sim() -> None:
    """Simulated counters (queue system + terminals) for demos and load tests."""


@sim.command("counters")
@click.option("--broker", "url", default="mqtt://127.0.0.1:1883", show_default=True, help="Broker URL.")
@click.option("--username", envvar="HAILONG_SIM_USERNAME", help="MQTT user (env HAILONG_SIM_USERNAME).")
@click.option("--password", envvar="HAILONG_SIM_PASSWORD", help="MQTT password (env HAILONG_SIM_PASSWORD).")
@click.option("--centre", "centres", multiple=True, default=["ttphcc-demo"], show_default=True)
@click.option("--counters", "per_centre", default=4, show_default=True, help="Counters per centre.")
@click.option("--ratings", default=20, show_default=True, help="Ratings per counter.")
@click.option("--interval", default=0.2, show_default=True, help="Seconds between citizens.")
def counters(url: str, username: str | None, password: str | None, centres: tuple[str, ...],
             per_centre: int, ratings: int, interval: float) -> None:
    """Publish QMS events and ratings for simulated counters."""
    from .sim import plan_counters, run_counters

    settings = MqttSettings.model_validate({"url": url, "username": username, "password": password})
    t0 = time.monotonic()
    sent = run_counters(settings, plan_counters(list(centres), per_centre), ratings, interval_s=interval)
    click.echo(f"published {len(sent)} ratings in {time.monotonic() - t0:.1f}s (all acknowledged by the broker)")


@click.group()
def device() -> None:
    """The counter terminal (touch screen and/or GPIO buttons)."""


@device.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Device TOML file (see docs/device.md).")
@click.option("--demo", is_flag=True, help="A window fed by a simulated queue system, on --broker.")
@click.option("--broker", "url", default="mqtt://127.0.0.1:1883", show_default=True, help="Broker URL (--demo).")
@click.option("--username", envvar="HAILONG_DEVICE_USERNAME", help="MQTT user (--demo; env HAILONG_DEVICE_USERNAME).")
@click.option("--password", envvar="HAILONG_DEVICE_PASSWORD",
              help="MQTT password (--demo; better via env HAILONG_DEVICE_PASSWORD).")
@click.option("--device", "device_id", default="demo-t01", show_default=True, help="Device id (--demo).")
@click.option("--centre", default="ttphcc-demo", show_default=True, help="Centre id (--demo).")
@click.option("--counter", default="q01", show_default=True, help="Counter id (--demo).")
@click.option("--size", default="800x480", show_default=True, help="Window size when not full screen.")
@click.option("--on-config-error", type=click.Choice(["exit", "screen"]), default="exit", show_default=True,
              help="Bad config: exit with the error, or show it on an out-of-service screen.")
def run(config_path: Path | None, demo: bool, url: str, username: str | None, password: str | None,
        device_id: str, centre: str, counter: str, size: str, on_config_error: str) -> None:
    """Run the terminal: `--config FILE` on a Pi, or `--demo` on a desktop."""
    from broker.kernel.settings import ConfigError

    from .audio import check_clips
    from .config import load_device_config

    try:
        width, height = (int(x) for x in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{size!r} is not WIDTHxHEIGHT", param_hint="--size") from None
    if demo:
        from .demo import SimulatedQueue, demo_config
        from .runner import run_screen

        cfg = demo_config(url, username, password, device=device_id, centre=centre, counter=counter)
        queues: list[SimulatedQueue] = []

        def start_queue(rt: DeviceRuntime | None) -> None:
            assert rt is not None
            queues.append(SimulatedQueue(cfg.mqtt, cfg.centre, cfg.counter, wait_for=rt.link.connected).start())

        try:
            run_screen(cfg, width=width, height=height, before_run=start_queue)
        finally:
            for q in queues:
                q.stop()
        return
    if config_path is None:
        raise click.UsageError("give --config FILE (or --demo)")
    try:
        cfg = load_device_config(config_path)
        check_clips(cfg.audio, config_path)
        if cfg.web_link.enabled:  # a malformed link key stops the terminal at start, naming file and key
            from .later import RatingLinkSigner

            RatingLinkSigner(cfg, config_path)
    except ConfigError as exc:
        if on_config_error == "exit":
            raise click.ClickException(str(exc)) from None
        from .config import config_error_code, device_id_hint
        from .runner import run_screen

        # the full error (file, key, problem) goes to the journal; the screen shows a code and the device id
        click.echo(str(exc), err=True)
        run_screen(None, width=width, height=height, config_error=str(exc), config_code=config_error_code(exc),
                   device_id=device_id_hint(config_path) or "")
        raise SystemExit(1) from None
    if cfg.hardware == "buttons":
        from .runner import run_headless

        run_headless(cfg)
    else:
        from .runner import run_screen

        run_screen(cfg, width=width, height=height)


if __name__ == "__main__":  # pragma: no cover - launched by device/demo.py as python -m device.cli
    device()
