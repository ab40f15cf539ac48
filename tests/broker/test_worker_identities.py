"""Each ingest worker its own broker identity and secret (issue 20): rendered, rotated and revoked alone."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from broker.fleet.passwd import parse_passwd
from hailong.cli import main
from tests.broker.fleet_broker import close, probe, start_fleet_broker

WORKERS = ["svc.ingest", "svc.ingest.w1", "svc.ingest.w2"]


def test_every_worker_has_its_own_secret_and_one_is_rotated_alone(tmp_path: Path) -> None:
    fb = start_fleet_broker(tmp_path, ingest_workers=3)
    try:
        secrets = {u: fb.state.secret_path(u).read_text().strip() for u in WORKERS}
        assert len(set(secrets.values())) == 3, "no two workers share a secret"
        hashes = parse_passwd((fb.out / "passwd").read_text())
        assert set(WORKERS) <= set(hashes) and "svc.ingest.w3" not in hashes, "exactly ingest_workers users"
        for u in WORKERS:
            p = probe(fb, u, user=u, password=secrets[u])
            assert p.connect_rc is not None and not p.connect_rc.is_failure, (u, p.connect_rc)
            close(p)

        res = CliRunner().invoke(main, ["broker", "rotate-user", "--fleet", str(fb.fleet), "svc.ingest.w1"])
        assert res.exit_code == 0, res.output
        assert secrets["svc.ingest.w1"] not in res.output, "a secret is never printed"
        fb.render()
        fb.reload()
        fresh = {u: fb.state.secret_path(u).read_text().strip() for u in WORKERS}
        assert fresh["svc.ingest.w1"] != secrets["svc.ingest.w1"]
        assert {u: fresh[u] for u in WORKERS if u != "svc.ingest.w1"} == \
            {u: secrets[u] for u in WORKERS if u != "svc.ingest.w1"}, "the others keep theirs"

        def login(user: str, password: str) -> bool:
            p = probe(fb, f"{user}-{password[:4]}", user=user, password=password)
            ok = p.connect_rc is not None and not p.connect_rc.is_failure
            close(p)
            return ok

        assert not login("svc.ingest.w1", secrets["svc.ingest.w1"]), "the old secret is revoked"
        assert login("svc.ingest.w1", fresh["svc.ingest.w1"])
        assert login("svc.ingest.w2", secrets["svc.ingest.w2"]) and login("svc.ingest", secrets["svc.ingest"])

        unknown = CliRunner().invoke(main, ["broker", "rotate-user", "--fleet", str(fb.fleet), "svc.ingest.w9"])
        assert unknown.exit_code != 0 and "not a service user" in unknown.output
    finally:
        fb.server.stop()


def test_a_worker_that_shared_its_instance_secret_gets_its_own(tmp_path: Path) -> None:
    """A state rendered before per-worker secrets (w1 held svc.ingest's password) is fixed by the next render."""
    fb = start_fleet_broker(tmp_path, ingest_workers=2)
    try:
        shared = fb.state.password("svc.ingest")
        fb.state.secret_path("svc.ingest.w1").write_text(shared + "\n")
        fb.render()
        assert fb.state.secret_path("svc.ingest.w1").read_text().strip() not in ("", shared)
        assert fb.state.password("svc.ingest") == shared, "the instance keeps its secret"
    finally:
        fb.server.stop()
