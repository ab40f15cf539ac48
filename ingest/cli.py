"""``hailong ingest ...``"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import click

from broker.kernel.settings import ConfigError

from .config import IngestConfig, load_config
from .workers import Supervisor, resolve_workers

log = logging.getLogger("hailong.ingest")


@click.group()
def ingest() -> None:
    """The ingest service: MQTT ratings -> InfluxDB."""


@ingest.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="ingest.toml (env overrides: HAILONG_INGEST__SECTION__KEY).")
def run(config_path: Path) -> None:
    """Run until SIGTERM/SIGINT; then flush the current batch, ack it and disconnect."""
    from .service import IngestService

    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logging.getLogger().setLevel(cfg.log_level)
    workers = resolve_workers(cfg.workers)
    if workers > 1 and cfg.registry is None:
        # partitions are dealt from the registry's centres: without one, two workers would share one
        # wildcard subscription and each could accept one of a ticket's two ratings
        log.warning("no fleet registry (development mode): running one worker instead of %d", workers)
        workers = 1
    if workers > 1:
        from .registry import RegistryHolder

        try:  # what every worker would refuse, refused once, here, before any worker starts
            RegistryHolder.from_path(cfg.registry, cfg.province)
        except Exception as exc:
            raise click.ClickException(f"cannot start ingest: {exc}") from None
        _supervise(config_path, cfg, workers)
        return
    try:
        svc = IngestService(cfg)
    except Exception as exc:  # a broken registry stops the service at start, naming file and key
        raise click.ClickException(f"cannot start ingest: {exc}") from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # SIGHUP: re-read the fleet registry (a moved device needs no restart)
    signal.signal(signal.SIGHUP, lambda *_: svc.request_registry_reload())

    def forward_stop() -> None:
        stop.wait()
        svc.request_stop()

    threading.Thread(target=forward_stop, daemon=True).start()
    svc.start(wait_connected=0)
    log.info("ingest running (client_id=%s, influx=%s %s)", cfg.client_id, cfg.influx.api, cfg.influx.url)
    while not stop.wait(0.5) and not svc.drained.is_set():  # a draining worker ends by itself
        pass
    svc.stop()


def _supervise(config_path: Path, cfg: IngestConfig, workers: int) -> None:
    """Run ``workers`` ingest processes under one supervisor (the process systemd watches)."""
    try:
        sup = Supervisor(config_path.resolve(), cfg, workers)
    except ConfigError as exc:  # more workers than worker users: named, before anything starts
        raise click.ClickException(str(exc)) from None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sup.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: sup.signal_all(signal.SIGHUP))
    log.info("ingest supervisor: %d workers (client ids %s..)", workers, cfg.client_id)
    sup.run()


if __name__ == "__main__":  # pragma: no cover - how the supervisor starts each worker
    import sys

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    ingest()
