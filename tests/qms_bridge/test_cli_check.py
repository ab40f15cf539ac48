"""`hailong qms bridge --check`: prints what a sample gives, publishes nothing; config errors name file and key."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from hailong.cli import main
from tests.support.sqlservers import PostgresServer

from .conftest import DEPLOY, load_schema
from .vendor import VendorDb, local_ms, ms

ENV = {"HAILONG_QMS__WEBHOOK__SECRET": "x"}


def test_check_maps_the_webhook_sample_and_prints_the_event() -> None:
    res = CliRunner().invoke(main, ["qms", "bridge", "--config", str(DEPLOY / "qms-webhook.toml"), "--check",
                                    "--sample", str(DEPLOY / "webhook-sample.json")], env=ENV)
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("{")]
    event = json.loads(lines[0])
    assert (event["type"], event["counter"], event["officer"], event["ticket_id"]) == (
        "ticket_closed", "q01", "cb-lan", "20261201-HT-0007")
    assert "nothing was published" in res.output


def test_check_names_a_record_it_cannot_map_and_exits_2(tmp_path: Path) -> None:
    sample = tmp_path / "bad.json"
    doc = json.loads((DEPLOY / "webhook-sample.json").read_text(encoding="utf-8"))
    doc["counter"] = "Q7"
    sample.write_text(json.dumps(doc), encoding="utf-8")
    res = CliRunner().invoke(main, ["qms", "bridge", "--config", str(DEPLOY / "qms-webhook.toml"), "--check",
                                    "--sample", str(sample)], env=ENV)
    assert res.exit_code == 2
    assert "NOT MAPPED (unknown_counter)" in res.output and "Q7" in res.output


def test_config_error_names_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "qms.toml"
    bad.write_text((DEPLOY / "qms-postgresql.toml").read_text(encoding="utf-8").replace(
        'timezone = "Asia/Ho_Chi_Minh"', 'timezone = "Asia/Hanoi-Typo"'), encoding="utf-8")
    res = CliRunner().invoke(main, ["qms", "bridge", "--config", str(bad), "--check"])
    assert res.exit_code == 1
    assert f"config error in {bad}: timezone" in res.output and "Asia/Hanoi-Typo" in res.output


def test_check_reads_the_newest_database_rows_read_only(postgres: PostgresServer) -> None:
    load_schema(postgres, DEPLOY / "vendor-schema-postgresql.sql")
    vendor = VendorDb(postgres.url("qms_writer"))
    closed = ms(vendor.now().replace(hour=10, minute=0))
    tid = vendor.issue("C001", "DD", closed)
    vendor.serve(tid, "C001", "DD", "Q2", "NV02", closed, closed)
    vendor.dispose()
    env = {"HAILONG_QMS__SQL__URL": postgres.url("qms_ro", with_password=False),
           "HAILONG_QMS__SQL__PASSWORD": postgres.ro_password}
    res = CliRunner().invoke(main, ["qms", "bridge", "--config", str(DEPLOY / "qms-postgresql.toml"), "--check"],
                             env=env)
    assert res.exit_code == 0, res.output
    events = [json.loads(ln) for ln in res.output.splitlines() if ln.startswith("{")]
    assert [(e["type"], e["ticket"], e["ticket_id"], e["at"]) for e in events] == [
        ("ticket_called", "C001", str(tid), local_ms(closed)), ("ticket_closed", "C001", str(tid), local_ms(closed))]
