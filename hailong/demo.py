"""``hailong demo``: the whole system on this machine, nothing installed system-wide.

Starts a private Mosquitto and InfluxDB (state under ``.hailong/demo``), the
ingest service, and simulated counters in two centres; then reads back from
InfluxDB what landed, per centre and satisfaction class, in words a centre
director reads, with what to do next.

SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal or SSH session closed) all
stop it the same way: terminal window, ingest, InfluxDB and Mosquitto are
stopped before it exits, so no server is left running behind it.
"""

from __future__ import annotations

import datetime
import logging
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from zoneinfo import ZoneInfo

import click

from device.sim import SimCounter

from .localstack import InfluxServer, MosquittoServer

log = logging.getLogger("hailong.demo")

DEMO_CENTRES = {
    "ttphcc-ha-noi": ("Trung tâm Phục vụ hành chính công thành phố Hà Nội", "ha-noi"),
    "ttphcc-da-nang": ("Trung tâm Phục vụ hành chính công thành phố Đà Nẵng", "da-nang"),
}
DEMO_TZ = "Asia/Ho_Chi_Minh"  # the registry's default time zone of a centre (broker/fleet/registry.py)
TERMINAL = {"centre": "ttphcc-demo", "counter": "q01", "device": "demo-t01"}

CLASS_LABELS_VI = {
    "very_satisfied": "Rất hài lòng",
    "satisfied": "Hài lòng",
    "not_satisfied": "Không hài lòng",
}


class DemoStopped(Exception):
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C so every server is stopped."""


def _stop_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise DemoStopped(signal.Signals(signum).name)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def unwind_on_stop_signals() -> dict[int, object]:
    """SIGTERM/SIGHUP raise DemoStopped (Python's default would exit without running `finally`);
    SIGINT keeps raising KeyboardInterrupt. Returns the previous handlers."""
    old: dict[int, object] = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGHUP, _stop_on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return old


def _restore(old: dict[int, object]) -> None:
    for s, handler in old.items():
        signal.signal(s, handler if callable(handler) or isinstance(handler, int) else signal.SIG_DFL)


def write_demo_fleet(fleet: Path, counters: list[SimCounter]) -> None:
    """A fleet registry matching the simulated counters and the demo terminal, so the
    ingest runs with its registry and ticket checks on, exactly as in production."""
    from broker.fleet.registry import CENTRES_FILE, DEVICES_FILE, OFFICERS_FILE, Centre, Counter, Device, Officer
    from device.demo import DEMO_OFFICER
    from firmware_config.fleetedit import render_centres, render_devices, render_officers

    t_centre, t_counter = TERMINAL["centre"], TERMINAL["counter"]
    centres = [Centre(id=t_centre, name="Trung tâm Phục vụ hành chính công (demo)", province="demo")]
    centres += [Centre(id=c, name=name, province=province) for c, (name, province) in DEMO_CENTRES.items()]
    rows = [Counter(id=t_counter, centre=t_centre, label="Quầy 1")]
    rows += [Counter(id=c.counter, centre=c.centre, label=f"Quầy {int(c.counter[1:])}", services=(c.service,))
             for c in counters]
    devices = [Device(id=TERMINAL["device"], centre=t_centre, counter=t_counter)]
    devices += [Device(id=c.device, centre=c.centre, counter=c.counter) for c in counters]
    officers = [Officer(id=DEMO_OFFICER, name="Nguyễn Thị Lan", centre=t_centre)]
    officers += [Officer(id=c.officer, name=f"Cán bộ {c.counter.upper()}", centre=c.centre) for c in counters]
    fleet.mkdir(parents=True, exist_ok=True)
    for name, text in ((CENTRES_FILE, render_centres(centres, rows)), (DEVICES_FILE, render_devices(devices)),
                       (OFFICERS_FILE, render_officers(officers))):
        (fleet / name).write_text(text, encoding="utf-8")


@click.command()
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".hailong/demo"),
              show_default=True, help="Where the demo's broker and database keep their files.")
@click.option("--ratings", default=25, show_default=True, help="Ratings per simulated counter.")
@click.option("--counters", "per_centre", default=4, show_default=True, help="Counters per centre.")
@click.option("--interval", default=0.1, show_default=True, help="Seconds between citizens.")
@click.option("--keep/--no-keep", default=False, help="Keep servers running until Ctrl-C after the summary.")
@click.option("--terminal/--no-terminal", default=True, show_default=True,
              help="Open one counter terminal window when a display is present.")
def demo(state_dir: Path, ratings: int, per_centre: int, interval: float, keep: bool, terminal: bool) -> None:
    """Run broker, InfluxDB, ingest, simulated counters and a terminal locally; print a summary."""
    from broker.mqtt.settings import MqttSettings
    from device.demo import launch_demo_terminal
    from device.sim import plan_counters, run_counters
    from ingest.config import IngestConfig
    from ingest.service import IngestService
    from storage.influxql import InfluxQL

    if state_dir.exists():
        shutil.rmtree(state_dir)
    previous_handlers = unwind_on_stop_signals()
    broker = MosquittoServer(state_dir / "mosquitto")
    influx = InfluxServer(state_dir / "influxdb")
    svc = None
    window = None
    counters = plan_counters(list(DEMO_CENTRES), per_centre)
    write_demo_fleet(state_dir / "fleet", counters)
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
            # client_id left to its default, the username: what a broker rendered by hailong enforces
            "registry": str((state_dir / "fleet").resolve()),
        })
        svc = IngestService(cfg).start()
        click.echo(f"broker mqtt://127.0.0.1:{broker.port}  influxdb {influx.url}  ingest connected={svc.connected}")
        if terminal:
            window = launch_demo_terminal(mqtt["url"], broker.username, broker.password, **TERMINAL,
                                          log_file=state_dir / "terminal.log")
            click.echo("terminal window opened (centre ttphcc-demo): tap a face when the prompt shows"
                       if window else "no display ($DISPLAY unset): running without a terminal window")
        click.echo(f"simulating {len(counters)} counters x {ratings} citizens ...")
        sent = run_counters(MqttSettings.model_validate(mqtt), counters, ratings, interval_s=interval)
        deadline = time.monotonic() + 30
        while svc.stats.ratings < len(sent) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        rows = db.rows('SELECT count("score") AS n FROM "rating" WHERE "centre" != \'ttphcc-demo\' '
                       'GROUP BY "centre", "class"')
        running = keep or window is not None
        total = summarize(rows, len(counters), len(sent), state_dir, influx.url if running else None)
        click.echo(f"technical details: published {len(sent)}, stored {total}; ingest {svc.stats.summary()}")
        if total != len(sent):
            raise click.ClickException(f"demo stored {total} of {len(sent)} ratings; see {state_dir}")
        if running:
            click.echo("servers keep running" + (" until the terminal window is closed" if window else "")
                       + "; press Ctrl-C to stop")
            while window is None or window.poll() is None:
                time.sleep(1)
            shown = db.rows('SELECT count("score") AS n FROM "rating" WHERE "centre" = \'ttphcc-demo\'')
            click.echo(f"ratings given on the terminal window: {int(shown[0]['n']) if shown else 0}")
    except (KeyboardInterrupt, DemoStopped) as exc:
        click.echo(f"\nstopping ({str(exc) or 'Ctrl-C'}): closing the terminal window and the servers ...")
    finally:
        # a second Ctrl-C or SIGTERM while cleaning up must not cut the clean-up short
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        try:
            if window is not None and window.poll() is None:
                window.terminate()
                try:
                    window.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    window.kill()
                    window.wait(timeout=5)
            if svc is not None:
                svc.stop()
        finally:
            influx.stop()
            broker.stop()
            _restore(previous_handlers)
        click.echo("demo stopped; nothing is left running")


def shown_path(path: Path) -> str:
    """A path as the reader types it from the repository root (where `make demo` runs): relative
    when it lies below the current directory, absolute otherwise."""
    path = path.absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def report_command(state_dir: Path, influx_url: str) -> str:
    """The weekly scorecard of this run's data, runnable exactly as printed: the venv's own `hailong`
    (in another window the venv is not on PATH), this run's InfluxDB and the demo's registry (the
    officers' names on the scorecard), the week in the centres' time zone."""
    year, week, _ = datetime.datetime.now(ZoneInfo(DEMO_TZ)).isocalendar()
    hailong = shown_path(Path(sys.prefix) / "bin" / "hailong")
    return (f"{hailong} report weekly --centre ttphcc-ha-noi --week {year}-W{week:02d} "
            f"--influx-url {influx_url} --db hailong --registry {shown_path(state_dir / 'fleet')} "
            f"--out {shown_path(state_dir / 'reports')}")


def summarize(rows: list[dict[str, object]], n_counters: int, published: int, state_dir: Path,
              influx_url: str | None) -> int:
    """What a centre director reads: how many citizens rated, how satisfied, per centre; then next steps.
    Every command it shows (between backticks) runs as printed from the repository root
    (tests/firmware_config/test_demo.py runs them); `influx_url` is None when the servers stop
    after the summary, so the report command is only offered by a run that keeps them."""
    by_centre: dict[str, dict[str, int]] = {}
    for r in rows:
        by_centre.setdefault(str(r["centre"]), {})[str(r["class"])] = int(str(r["n"]))
    total = sum(sum(c.values()) for c in by_centre.values())
    click.echo("")
    click.echo(f"{len(by_centre)} centres, {n_counters} counters: {published} citizens rated the service, "
               f"{total} ratings were received and stored.")
    for cid in sorted(by_centre):
        counts = by_centre[cid]
        n = sum(counts.values())
        name = DEMO_CENTRES.get(cid, (cid, ""))[0]
        parts = ", ".join(f"{CLASS_LABELS_VI[k]} {counts.get(k, 0)}" for k in CLASS_LABELS_VI)
        ok = (n - counts.get("not_satisfied", 0)) / n if n else 0.0
        click.echo(f"  {name}: {n} ratings ({parts}); {ok:.0%} satisfied")
    if total:
        unhappy = sum(c.get("not_satisfied", 0) for c in by_centre.values())
        click.echo(f"Overall {(total - unhappy) / total:.1%} of citizens were satisfied (\"Bình thường\" counts as "
                   "satisfied, as in the official reports).")
    click.echo("")
    click.echo("Next steps:")
    click.echo(f"  - The ratings are in the demo's own database (InfluxDB, database \"hailong\", files in "
               f"{shown_path(state_dir / 'influxdb')}); it is deleted when the demo runs again.")
    if influx_url is None:
        click.echo("  - Weekly PDF scorecard per officer: run `make demo DEMO_ARGS=--keep`; while its servers "
                   "run it shows the command that writes the scorecard.")
    else:
        click.echo("  - Weekly PDF scorecard per officer, while the demo runs: from the repository root "
                   f"in another window, `{report_command(state_dir, influx_url)}`")
    click.echo("  - The live Grafana dashboards are not part of the demo: docs/dashboards.md installs them "
               "on the centre server.")
    click.echo("  - Setting up a real centre (server, broker, 20 terminals): docs/technician.md.")
    return total
