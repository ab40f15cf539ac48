"""``hailong demo``: the whole system on this machine, nothing installed system-wide.

Starts a private Mosquitto and InfluxDB (state under ``.hailong/demo``), the
ingest service, and simulated counters in two centres; then reads back from
InfluxDB what landed, per centre and satisfaction class.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import click

from .localstack import InfluxServer, MosquittoServer

log = logging.getLogger("hailong.demo")

CLASS_LABELS_VI = {
    "very_satisfied": "Rất hài lòng",
    "satisfied": "Hài lòng",
    "not_satisfied": "Không hài lòng",
}


@click.command()
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".hailong/demo"),
              show_default=True, help="Where the demo's broker and database keep their files.")
@click.option("--ratings", default=25, show_default=True, help="Ratings per simulated counter.")
@click.option("--counters", "per_centre", default=4, show_default=True, help="Counters per centre.")
@click.option("--interval", default=0.1, show_default=True, help="Seconds between citizens.")
@click.option("--keep/--no-keep", default=False, help="Keep servers running until Ctrl-C after the summary.")
def demo(state_dir: Path, ratings: int, per_centre: int, interval: float, keep: bool) -> None:
    """Run broker, InfluxDB, ingest and simulated counters locally; print a summary."""
    from broker.mqtt import MqttSettings
    from device.sim import plan_counters, run_counters
    from ingest.config import IngestConfig
    from ingest.influxql import InfluxQL
    from ingest.service import IngestService

    if state_dir.exists():
        shutil.rmtree(state_dir)
    broker = MosquittoServer(state_dir / "mosquitto")
    influx = InfluxServer(state_dir / "influxdb")
    svc = None
    try:
        click.echo("starting Mosquitto and InfluxDB (private instances on 127.0.0.1) ...")
        broker.start()
        influx.start()
        db = InfluxQL(influx.url, "hailong")
        db.create_database()
        mqtt = {"url": f"mqtt://127.0.0.1:{broker.port}", "username": broker.username, "password": broker.password}
        cfg = IngestConfig.model_validate({
            "mqtt": mqtt,
            "influx": {"url": influx.url, "api": "v1", "database": "hailong"},
            "client_id": "hl-ingest-demo", "province": "demo-province",
        })
        svc = IngestService(cfg).start()
        click.echo(f"broker mqtt://127.0.0.1:{broker.port}  influxdb {influx.url}  ingest connected={svc.connected}")
        counters = plan_counters(["ttphcc-ha-noi", "ttphcc-da-nang"], per_centre)
        click.echo(f"simulating {len(counters)} counters x {ratings} citizens ...")
        sent = run_counters(MqttSettings.model_validate(mqtt), counters, ratings, interval_s=interval)
        deadline = time.monotonic() + 30
        while svc.stats.ratings < len(sent) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        rows = db.rows('SELECT count("score") AS n FROM "rating" GROUP BY "centre", "class"')
        click.echo("")
        click.echo(f"{'centre':<18} {'class':<16} {'n':>5}")
        for r in sorted(rows, key=lambda r: (r["centre"], r["class"])):
            click.echo(f"{r['centre']:<18} {CLASS_LABELS_VI[r['class']]:<16} {r['n']:>5}")
        total = sum(int(r["n"]) for r in rows)
        ratio = db.rows('SELECT count("score") AS n FROM "rating" WHERE "class" = \'not_satisfied\'')
        unsatisfied = int(ratio[0]["n"]) if ratio else 0
        click.echo(f"\npublished {len(sent)}, stored {total}; satisfaction ratio "
                   f"{(total - unsatisfied) / total:.1%} (766-style)" if total else "\nnothing stored")
        click.echo(f"ingest: {svc.stats.summary()}")
        if total != len(sent):
            raise click.ClickException(f"demo stored {total} of {len(sent)} ratings; see {state_dir}")
        if keep:
            click.echo("servers keep running; press Ctrl-C to stop")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        if svc is not None:
            svc.stop()
        influx.stop()
        broker.stop()
