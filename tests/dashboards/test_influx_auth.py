"""One InfluxDB connection model against an InfluxDB 1.6.7 with ``auth-enabled = true``.

The ingest's writer, the weekly report, the rollups and the panel queries all log in
through storage/connection.py: with credentials they work, without (or with a wrong
password) they stop with a message that says what to configure, and a non-zero exit.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from dashboards.boards import all_dashboards
from dashboards.settings import DashboardSettings
from hailong.cli import main
from hailong.localstack import InfluxServer
from ingest.config import load_config
from storage.connection import InfluxConnection
from storage.influxql import InfluxQueryError
from storage.writer import make_writer

from .grafana_backend import TimeRange
from .grafana_frontend import show_panel
from .seed import FIRST_MONDAY, NOW, build_seed, ms

ADMIN = "hl-admin"
DB = "hailong_auth"


def create_admin(url: str, password: str, timeout_s: float = 30.0) -> None:
    """InfluxDB 1.x lets the first admin be created without credentials (and nothing else).

    InfluxDB answers 200 with the error in the body ({"results": [{"error": ...}]}), so the body is
    read: a statement error is retried while the server settles (its meta store opens after the
    HTTP listener on a loaded machine), then the fixture fails with InfluxDB's own message.
    """
    q = f"CREATE USER \"{ADMIN}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES"
    deadline = time.monotonic() + timeout_s
    while True:
        req = urllib.request.Request(f"{url}/query", data=urllib.parse.urlencode({"q": q}).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, body = resp.status, json.loads(resp.read() or b"{}")
        errors = [r["error"] for r in body.get("results", []) if "error" in r] + (
            [body["error"]] if "error" in body else [])
        if status == 200 and not errors:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"InfluxDB refused CREATE USER {ADMIN}: HTTP {status}, {errors or body}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InfluxServer, Path, Path]]:
    """A private auth-enabled InfluxDB with the dashboard seed written through the ingest's v1 writer."""
    workdir = tmp_path_factory.mktemp("influx-auth")
    server = InfluxServer(workdir / "server", auth=True).start()
    try:
        password = secrets.token_urlsafe(12)
        create_admin(server.url, password)
        pw_file = workdir / "influx.password"
        pw_file.write_text(password + "\n", encoding="utf-8")
        conn = InfluxConnection(url=server.url, api="v1", database=DB, username=ADMIN, password_file=pw_file)
        conn.query_client().create_database()
        writer = make_writer(conn)
        lines = [p.to_line() for p in build_seed().points]
        for i in range(0, len(lines), 5000):
            writer.write(lines[i:i + 5000])
        writer.close()
        cfg = workdir / "dash.toml"
        cfg.write_text(f'min_sample = 15\n[influx]\nurl = "{server.url}"\ndatabase = "{DB}"\nusername = "{ADMIN}"\n'
                       f'password_file = "{pw_file}"\n', encoding="utf-8")
        yield server, cfg, pw_file
    finally:
        server.stop()


def test_queries_refused_without_credentials_with_a_clear_message(secured: tuple[InfluxServer, Path, Path]) -> None:
    server, _, _ = secured
    with pytest.raises(InfluxQueryError, match=r"refused access \(HTTP 401, no credentials given: set influx username"):
        InfluxConnection(url=server.url, database=DB).query_client().query("SHOW MEASUREMENTS")
    with pytest.raises(InfluxQueryError, match="wrong username/password"):
        InfluxConnection(url=server.url, database=DB, username=ADMIN, password="nope").query_client().query(
            "SHOW MEASUREMENTS")


def test_report_weekly_with_and_without_credentials(secured: tuple[InfluxServer, Path, Path], tmp_path: Path) -> None:
    server, cfg, _ = secured
    args = ["report", "weekly", "--centre", "c-ba", "--week", "2026-W47", "--out", str(tmp_path), "--allow-ids"]
    ok = CliRunner().invoke(main, [*args, "--config", str(cfg)])
    assert ok.exit_code == 0, ok.output
    assert all(Path(p).stat().st_size > 0 for p in ok.output.split())
    bare = tmp_path / "bare.toml"
    bare.write_text(f'[influx]\nurl = "{server.url}"\ndatabase = "{DB}"\n', encoding="utf-8")
    refused = CliRunner().invoke(main, [*args, "--config", str(bare)])
    assert refused.exit_code != 0 and "refused access (HTTP 401" in refused.output, refused.output


def test_rollup_install_and_backfill_with_and_without_credentials(secured: tuple[InfluxServer, Path, Path],
                                                                  tmp_path: Path) -> None:
    server, cfg, _ = secured
    for args in (["install"], ["backfill", "--since", "2026-10-26", "--until", "2026-11-20"]):
        ok = CliRunner().invoke(main, ["dashboards", "rollup", *args, "--config", str(cfg)])
        assert ok.exit_code == 0, ok.output
        refused = CliRunner().invoke(main, ["dashboards", "rollup", *args, "--influx-url", server.url, "--db", DB])
        assert refused.exit_code != 0 and "refused access (HTTP 401" in refused.output, refused.output
    assert "rollup points written" in ok.output and not ok.output.startswith("rollups recomputed for 2026-10-26..: 0")


def test_panel_queries_log_in_with_the_shared_model(secured: tuple[InfluxServer, Path, Path]) -> None:
    _, cfg, _ = secured
    from dashboards.settings import load_settings

    # raw points (the rollups are another test's business): this test is about logging in
    s: DashboardSettings = load_settings(cfg).model_copy(update={"use_rollups": False})
    board = next(b for b in all_dashboards(s) if b.uid == "hl-province")
    js = board.to_json(s.datasource_uid)
    panel = next(p for spec, p in zip(board.panels, js["panels"], strict=True) if spec.key == "province.ratio")
    rng = TimeRange(ms(FIRST_MONDAY), ms(NOW))
    shown = show_panel(s.influx.query_client(), js, panel, rng, ms(NOW), {"province": ["hn"]}).stat
    assert len(shown) == 1 and re.fullmatch(r"\d{1,2}\.\d%", shown[0]), shown
    anonymous = s.model_copy(update={"influx": s.influx.model_copy(update={"username": None, "password_file": None})})
    with pytest.raises(InfluxQueryError, match="HTTP 401"):
        show_panel(anonymous.influx.query_client(), js, panel, rng, ms(NOW), {"province": ["hn"]})


def test_missing_secret_file_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "ingest.toml"
    cfg.write_text(f'[influx]\nusername = "u"\npassword_file = "{tmp_path / "absent"}"\n', encoding="utf-8")
    from broker.kernel.settings import ConfigError

    expected = r"config error in .*ingest.toml: influx.password_file: secret file .*absent: does not exist"
    with pytest.raises(ConfigError, match=expected):
        load_config(cfg)
