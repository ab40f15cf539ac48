"""Fleet benchmarks: provisioning time, broker render time, queue limit, TLS login rate.

    python bench/fleet_bench.py [--centres 20 --counters 50 --provision 100]

1. A synthetic fleet (centres x counters terminals): registry load and broker render time.
2. ``provision`` for N terminals as one run (the wheel bundled), certificate and password mode: ms per terminal.
3. Queue limit that matters: an offline ingest session, 3,000 ratings published, how many
   come back with Mosquitto's default max_queued_messages (1000) vs the rendered one.
4. TLS login rate on the password listener ($7$ PBKDF2 check) vs the certificate listener.
Everything runs on loopback against the Debian mosquitto; results print as Markdown rows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from broker.fleet.credentials import FleetState
from broker.fleet.registry import load_registry
from broker.mosquitto.render import RenderOptions, render_broker
from broker.mqtt.session import MqttSession
from broker.mqtt.settings import MqttSettings
from firmware_config.provision import ProvisionSettings, provision_many
from firmware_config.wheel import project_wheel
from hailong.localstack import MosquittoServer, free_port


def synthetic_fleet(root: Path, centres: int, counters: int) -> Path:
    root.mkdir(parents=True)
    c_lines, d_lines, o_lines = [], [], []
    for c in range(centres):
        cid = f"c{c:03d}"
        c_lines += [f"[centre.{cid}]", f'name = "Trung tâm Phục vụ hành chính công số {c}"',
                    f'province = "p{c % 5}"', ""]
        for q in range(counters):
            c_lines += [f"[centre.{cid}.counter.q{q:03d}]", f'label = "Quầy {q + 1}"', ""]
            d_lines += [f"[device.{cid}-q{q:03d}]", f'centre = "{cid}"', f'counter = "q{q:03d}"', ""]
        o_lines += [f"[officer.{cid}-cb01]", 'name = "Nguyễn Thị Lan"', f'centre = "{cid}"', ""]
    (root / "centres.toml").write_text("\n".join(c_lines), encoding="utf-8")
    (root / "devices.toml").write_text("\n".join(d_lines), encoding="utf-8")
    (root / "officers.toml").write_text("\n".join(o_lines), encoding="utf-8")
    return root


def _opts(out: Path, **kw: object) -> RenderOptions:
    return RenderOptions.model_validate({
        "bind": "127.0.0.1", "tls_port": free_port(), "cert_port": free_port(), "conf_dir": str(out),
        "data_dir": str(out / "data"), "log_dest": f"file {out}/mosquitto.log",
        "run_as": "root" if os.geteuid() == 0 else None, **kw})


def _session(name: str, out: Path, port: int, *, user: str | None = None, pw: str | None = None,
             cert: tuple[Path, Path] | None = None, persistent: bool = False, **kw: Any) -> MqttSession:
    settings = MqttSettings.model_validate({
        "url": f"mqtts://127.0.0.1:{port}", "username": user, "password": pw, "protocol": "3.1.1",
        "ca_file": str(out / "ca.crt"),
        "cert_file": str(cert[0]) if cert else None, "key_file": str(cert[1]) if cert else None,
    })
    return MqttSession(settings, name, session_expiry_s=3600 if persistent else None, **kw)


def queue_limit(fleet: Path, state: FleetState, tmp: Path, max_queued: int | None, n: int) -> int:
    out = tmp / f"q{max_queued}"
    (out / "data").mkdir(parents=True)
    opt = _opts(out, **({"max_queued_messages": max_queued} if max_queued is not None else {}))
    reg = load_registry(fleet)
    dev = reg.active_devices()[0]
    state.password(dev.id)
    render_broker(reg, state, out, opt)
    server = MosquittoServer(tmp / f"run{max_queued}", port=opt.tls_port,
                             conf_text=(out / "mosquitto.conf").read_text()).start()
    try:
        got: list[bytes] = []
        topic = f"hl/v1/{dev.centre}/{dev.id}/rating"

        def ingest(**kw: Any) -> MqttSession:
            return _session("bench-ingest", out, opt.tls_port, user="svc.ingest", pw=state.password("svc.ingest"),
                            persistent=True, on_message=lambda m: got.append(bytes(m.payload)), **kw).start()

        ing = ingest(subscriptions=[(topic, 1)])
        ing.subscribed.wait(10)
        ing.stop()  # offline from here: the broker queues for the session
        pub = _session("bench-dev", out, opt.tls_port, user=dev.id, pw=state.password(dev.id)).start()
        pub.wait_connected(10)
        infos = [pub.publish(topic, f"r{i}".encode()) for i in range(n)]
        for info in infos:
            info.wait_for_publish(60)
        pub.stop()
        ing = ingest()
        deadline = time.monotonic() + 20
        last, still = -1, 0
        while time.monotonic() < deadline and still < 10:
            time.sleep(0.1)
            still = still + 1 if len(got) == last else 0
            last = len(got)
        ing.stop()
        return len(got)
    finally:
        server.stop()


def login_rate(fleet: Path, state: FleetState, tmp: Path, n: int) -> tuple[float, float]:
    out = tmp / "login"
    (out / "data").mkdir(parents=True)
    opt = _opts(out)
    reg = load_registry(fleet)
    dev = reg.active_devices()[0]
    pw = state.password(dev.id)
    cert = state.device_cert(dev.id)
    render_broker(reg, state, out, opt)
    server = MosquittoServer(tmp / "runlogin", port=opt.tls_port, conf_text=(out / "mosquitto.conf").read_text())
    server.start()
    rates = []
    try:
        for kind in ("password", "cert"):
            t0 = time.monotonic()
            for i in range(n):
                c = _session(f"login-{kind}-{i}", out, opt.tls_port if kind == "password" else opt.cert_port,
                             user=dev.id if kind == "password" else None, pw=pw if kind == "password" else None,
                             cert=(cert.cert_path, cert.key_path) if kind == "cert" else None).start()
                if not c.wait_connected(30):
                    raise RuntimeError(f"login {kind} {i} failed: {c.connect_rc}")
                c.stop()
            rates.append(n / (time.monotonic() - t0))
    finally:
        server.stop()
    return rates[0], rates[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--centres", type=int, default=20)
    ap.add_argument("--counters", type=int, default=50)
    ap.add_argument("--provision", type=int, default=100)
    ap.add_argument("--queue", type=int, default=3000)
    ap.add_argument("--logins", type=int, default=100)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hl-fleet-bench-"))
    try:
        fleet = synthetic_fleet(tmp / "fleet", a.centres, a.counters)
        n_dev = a.centres * a.counters
        t0 = time.monotonic()
        reg = load_registry(fleet)
        t_load = time.monotonic() - t0
        state = FleetState.for_fleet(fleet).ensure()
        ids = [d.id for d in reg.active_devices()][: a.provision]
        wheel = project_wheel()  # built once per source change; every bundle carries it
        for mode in ("cert", "password"):
            settings = ProvisionSettings(broker_host="mqtt.example.vn", mode=mode, wheel=wheel)
            t0 = time.monotonic()
            for _ in provision_many(reg, ids, state, tmp / f"bundles-{mode}", settings):
                pass
            per = (time.monotonic() - t0) / len(ids) * 1000
            print(f"| provision, {mode} mode | {len(ids)} terminals | {per:.1f} ms per terminal |")
        t0 = time.monotonic()
        render_broker(reg, state, tmp / "render", _opts(tmp / "render"))
        t_render = time.monotonic() - t0
        acl_lines = len((tmp / "render" / "acl").read_text().splitlines())
        print(f"| registry load | {n_dev} terminals, {a.centres} centres | {t_load * 1000:.0f} ms |")
        print(f"| broker render | {n_dev} terminals ({acl_lines} ACL lines) | {t_render * 1000:.0f} ms |")
        default = queue_limit(fleet, state, tmp, 1000, a.queue)
        ours = queue_limit(fleet, state, tmp, None, a.queue)
        print(f"| offline ingest session, {a.queue} ratings queued | max_queued_messages 1000 (default) | "
              f"{default} delivered |")
        print(f"| offline ingest session, {a.queue} ratings queued | rendered (1000000) | {ours} delivered |")
        pw_rate, cert_rate = login_rate(fleet, state, tmp, a.logins)
        print(f"| sequential TLS logins | password listener ($7$ PBKDF2) | {pw_rate:.0f}/s |")
        print(f"| sequential TLS logins | certificate listener | {cert_rate:.0f}/s |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
