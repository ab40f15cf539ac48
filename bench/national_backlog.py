"""The national backlog: 3,300 centres x 35 days re-sent after a national outage, stored in <= 60 s.

Real processes on loopback, as deployed: the national broker, InfluxDB 1.6.7 and
``hailong national consume`` (a subprocess) from the files ``hailong national render`` writes;
34 province brokers rendered by ``hailong broker render`` with their ``[federation]`` bridge
(TLS, client certificate fed.<province>). The national broker is stopped; every province
publishes its 35-day window (~97 centres x 35 days, the nightly run) into its own broker,
where the bridge queues it; the clock starts when the national broker starts again and
stops when the national InfluxDB holds every centre-day (checked exactly: count and sums).

The clock includes the bridges' reconnect (restart_timeout 5..30 s, randomised): the national
broker being back is not the provinces knowing it.

    python bench/national_backlog.py [--provinces 34] [--centres 3300] [--days 35]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from broker.federation import CentreDay, local_topic  # noqa: E402
from broker.fleet.credentials import FleetState  # noqa: E402
from broker.fleet.registry import load_registry  # noqa: E402
from broker.mosquitto.national import render_national  # noqa: E402
from broker.mosquitto.render import load_options, render_broker  # noqa: E402
from broker.mqtt.session import MqttSession  # noqa: E402
from broker.mqtt.settings import MqttSettings  # noqa: E402
from hailong.localstack import InfluxServer, MosquittoServer, free_port, stop_process  # noqa: E402
from storage.influxql import InfluxQL  # noqa: E402

ROOT_USER = ['run_as = "root"'] if os.geteuid() == 0 else []


def national(tmp: Path, provinces: dict[str, list[str]]) -> tuple[Path, Path, MosquittoServer, int]:
    d = tmp / "ministry"
    d.mkdir()
    (d / "provinces.toml").write_text("".join(f'[province.{p}]\nname = "Tỉnh {p}"\ncentres = {json.dumps(c)}\n\n'
                                              for p, c in provinces.items()), encoding="utf-8")
    tls, local = free_port(), free_port()
    out, work = tmp / "national-out", tmp / "national-broker"
    (d / "national-broker.toml").write_text("\n".join([
        'hostnames = ["localhost"]', 'bind = "127.0.0.1"', f"tls_port = {tls}", f"local_port = {local}",
        f'conf_dir = "{out}"', f'data_dir = "{work / "data"}"', *ROOT_USER]) + "\n", encoding="utf-8")
    render_national(d, out)
    return d, out, MosquittoServer(work, port=local, conf_text=(out / "mosquitto.conf").read_text()), tls


def province(tmp: Path, pid: str, centres: list[str], bundle: Path, national_tls: int) -> tuple[MosquittoServer, str]:
    fleet = tmp / f"fleet-{pid}"
    fleet.mkdir()
    (fleet / "centres.toml").write_text("".join(f'[centre.{c}]\nname = "Trung tâm {c}"\nprovince = "{pid}"\n\n'
                                                f'[centre.{c}.counter.q01]\nlabel = "Quầy 1"\n\n' for c in centres),
                                        encoding="utf-8")
    (fleet / "devices.toml").write_text("")
    (fleet / "officers.toml").write_text("")
    local = free_port()
    out, work = tmp / f"out-{pid}", tmp / f"broker-{pid}"
    (fleet / "broker.toml").write_text("\n".join([
        'hostnames = ["localhost"]', 'bind = "127.0.0.1"', f"tls_port = {free_port()}", f"cert_port = {free_port()}",
        f"local_port = {local}", f'conf_dir = "{out}"', f'data_dir = "{work / "data"}"', 'log_dest = "stderr"',
        *ROOT_USER, "", "[federation]", f'province = "{pid}"', 'national_host = "localhost"',
        f"national_port = {national_tls}", f'bundle = "{bundle}"']) + "\n", encoding="utf-8")
    state = FleetState.for_fleet(fleet)
    render_broker(load_registry(fleet), state, out, load_options(fleet, state))
    broker = MosquittoServer(work, port=local, conf_text=(out / "mosquitto.conf").read_text())
    return broker, state.secret_path("svc.federation").read_text().strip()


def publish_window(port: int, password: str, pid: str, centres: list[str], days: list[str], revision: int) -> int:
    settings = MqttSettings(url=f"mqtt://127.0.0.1:{port}", username="svc.federation", password=password,
                            protocol="3.1.1")
    session = MqttSession(settings, "svc.federation").start()
    assert session.wait_connected(30)
    infos, rated = [], 0
    for i, centre in enumerate(centres):
        for j, day in enumerate(days):
            n = (i * 7 + j * 3) % 40
            msg = CentreDay.build(pid, centre, day, revision, rated=n, not_satisfied=n // 10, satisfied=n // 3,
                                  very_satisfied=n - n // 10 - n // 3, walkups=n % 3, served=n + 5)
            rated += n
            infos.append(session.publish(local_topic(centre, day), msg.to_json(), qos=1))
    for info in infos:
        info.wait_for_publish(120)
        assert info.is_published()
    session.stop()
    return rated


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--provinces", type=int, default=34)
    ap.add_argument("--centres", type=int, default=3300)
    ap.add_argument("--days", type=int, default=35)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hl-national-bench-"))
    pids = [f"p{i:02d}" for i in range(args.provinces)]
    provinces = {p: [f"{p}-c{k:03d}" for k in range(i, args.centres, args.provinces)] for i, p in enumerate(pids)}
    total = sum(len(c) for c in provinces.values()) * args.days
    today = dt.date.today()
    days = [(today - dt.timedelta(days=d)).isoformat() for d in range(args.days)]
    influx = InfluxServer(tmp / "influx").start()
    db = InfluxQL(influx.url, "hailong_national")
    db.create_database()
    ministry, out, nat, tls = national(tmp, provinces)
    nat.start()
    brokers: list[MosquittoServer] = []
    consumer: subprocess.Popen[bytes] | None = None
    try:
        secrets = {}
        for p in pids:
            broker, pw = province(tmp, p, provinces[p], out / "provinces" / p, tls)
            brokers.append(broker.start())
            secrets[p] = (broker, pw)
        pw_file = ministry / "state" / "secrets" / "svc.national.password"
        (tmp / "national.toml").write_text("\n".join([
            f'centres = "{out / "centres.json"}"', "[mqtt]", f'url = "mqtt://127.0.0.1:{nat.port}"',
            'username = "svc.national"', f'password_file = "{pw_file}"', "[influx]", f'url = "{influx.url}"',
            'database = "hailong_national"', 'api = "v1"']) + "\n", encoding="utf-8")
        with open(tmp / "consumer.log", "ab") as log:
            consumer = subprocess.Popen([sys.executable, "-m", "hailong.cli", "-v", "national", "consume", "--config",
                                         str(tmp / "national.toml")], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        time.sleep(5)  # bridges and consumer connected (their sessions now exist on the national broker)

        # ---- the outage: the national broker away while every province sends its 35-day window
        nat.stop()
        t = time.monotonic()
        revision = int(time.time() * 1000)
        rated = sum(publish_window(secrets[p][0].port, secrets[p][1], p, provinces[p], days, revision) for p in pids)
        print(f"published {total:,} centre-days into {len(pids)} province brokers (bridges queueing) in "
              f"{time.monotonic() - t:.1f} s")

        nat.start()
        t0 = time.monotonic()
        done = None
        while time.monotonic() - t0 < 300:
            n = int(db.scalar('SELECT count("revision") FROM "agg_centre_day"') or 0)
            if n >= total and done is None:
                done = time.monotonic() - t0
                break
            time.sleep(0.5)
        sums = db.rows('SELECT count("revision") AS n, sum("rated") AS rated FROM "agg_centre_day"')[0]
        print(f"national broker back -> all {total:,} centre-days stored: "
              f"{done:.1f} s" if done is not None else "NOT all stored within 300 s")
        print(f"  stored {sums['n']:,} points, sum(rated) {sums['rated']:,} (published {rated:,})")
        ok = done is not None and sums["n"] == total and sums["rated"] == rated
        print("PASS (<= 60 s, exact)" if ok and done is not None and done <= 60 else "FAIL")
    finally:
        if consumer is not None:
            stop_process(consumer)  # type: ignore[arg-type]
        for b in brokers:
            b.stop()
        nat.stop()
        influx.stop()


if __name__ == "__main__":
    main()
