"""The push tool (grafana-client) against a local stand-in of Grafana's HTTP API (Grafana cannot run here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from dashboards.push import load_push_config, push_all
from hailong.cli import main

from .grafana_standin import GrafanaStandIn

TOKEN = "glsa_test_token"  # a throwaway token for the stand-in only


@pytest.fixture
def grafana() -> Iterator[GrafanaStandIn]:
    g = GrafanaStandIn(TOKEN).start()
    yield g
    g.stop()


@pytest.fixture
def config(tmp_path: Path, grafana: GrafanaStandIn, uid: str) -> Path:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    cfg = tmp_path / "push.toml"
    cfg.write_text(f'grafana_url = "{grafana.url}"\ntoken_file = "{token}"\nprovince = "hn"\n'
                   f'[[centres]]\nid = "ba-{uid}"\nname = "Trung tâm Ba Đình"\n'
                   f'[[centres]]\nid = "hk-{uid}"\nname = "Trung tâm Hoàn Kiếm"\n', encoding="utf-8")
    return cfg


def expected_first_run(uid: str) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []

    def folder(folder_uid: str, teams: list[str], boards: list[str], new_teams: list[str]) -> None:
        for t in teams:
            if t in new_teams:
                calls.extend([("GET", f"/api/teams/search?name={t}"), ("POST", "/api/teams")])
        calls.extend([("GET", f"/api/folders/{folder_uid}"), ("POST", "/api/folders"),
                      ("GET", f"/api/folders/{folder_uid}/permissions"),
                      ("POST", f"/api/folders/{folder_uid}/permissions")])
        for b in boards:
            calls.extend([("GET", f"/api/dashboards/uid/{b}"), ("POST", "/api/dashboards/db")])

    folder("hailong-province", ["hailong-province"],
           ["hl-centre", "hl-officer", "hl-province", "hl-fleet", "hl-integrity"], ["hailong-province"])
    for c in (f"ba-{uid}", f"hk-{uid}"):
        folder(f"hailong-{c}", [f"hailong-centre-{c}", "hailong-province"],
               [f"hl-centre-{c}", f"hl-officer-{c}", f"hl-integrity-{c}"], [f"hailong-centre-{c}"])
    return calls


def test_first_push_makes_exactly_these_calls_and_second_changes_nothing(
        grafana: GrafanaStandIn, config: Path, uid: str) -> None:
    cfg = load_push_config(config)
    changes = push_all(cfg)
    assert grafana.calls == expected_first_run(uid)
    assert len(changes) == 3 + 3 * 2 + 5 + 2 * 3  # teams, folders + permissions, dashboards
    ids = {name: tid for tid, name in grafana.teams.items()}
    prov = ids["hailong-province"]
    # a centre's supervisors see their centre only; the province office sees everything
    assert grafana.permissions["hailong-province"] == [{"teamId": prov, "permission": 1}]
    for c in (f"ba-{uid}", f"hk-{uid}"):
        assert sorted(grafana.permissions[f"hailong-{c}"], key=lambda i: i["teamId"]) == sorted(
            [{"teamId": prov, "permission": 1}, {"teamId": ids[f"hailong-centre-{c}"], "permission": 1}],
            key=lambda i: i["teamId"])
    board = grafana.dashboards[f"hl-officer-ba-{uid}"]
    assert board["folderUid"] == f"hailong-ba-{uid}"
    centre_var = next(v for v in board["dashboard"]["templating"]["list"] if v["name"] == "centre")
    assert centre_var["type"] == "constant" and centre_var["query"] == f"ba-{uid}"

    grafana.calls.clear()
    assert push_all(cfg) == []
    assert grafana.calls and all(method == "GET" for method, _ in grafana.calls)


def test_push_repairs_drift_only(grafana: GrafanaStandIn, config: Path, uid: str) -> None:
    cfg = load_push_config(config)
    push_all(cfg)
    grafana.dashboards["hl-fleet"]["dashboard"]["title"] = "edited by hand"
    grafana.permissions[f"hailong-ba-{uid}"].append({"role": "Viewer", "permission": 1})
    grafana.calls.clear()
    assert push_all(cfg) == ["upload dashboard hl-fleet to folder hailong-province",
                             f"set permissions of folder hailong-ba-{uid}: teams [1, 2] view"]
    assert [c for c in grafana.calls if c[0] != "GET"] == [
        ("POST", "/api/dashboards/db"), ("POST", f"/api/folders/hailong-ba-{uid}/permissions")]
    assert grafana.dashboards["hl-fleet"]["dashboard"]["title"] == "Sức khỏe thiết bị"


def test_dry_run_writes_nothing(grafana: GrafanaStandIn, config: Path) -> None:
    result = CliRunner().invoke(main, ["dashboards", "push", "--config", str(config), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "create folder hailong-province" in result.output and "(dry run)" in result.output
    assert all(method == "GET" for method, _ in grafana.calls) and not grafana.folders


def test_bad_token_and_missing_token_are_clear_errors(grafana: GrafanaStandIn, config: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAILONG_PUSH__TOKEN", "wrong")
    result = CliRunner().invoke(main, ["dashboards", "push", "--config", str(config)])
    assert result.exit_code != 0 and "refused" in result.output and "wrong" not in result.output
    monkeypatch.delenv("HAILONG_PUSH__TOKEN")
    text = config.read_text().replace("token_file", "# token_file")
    config.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["dashboards", "push", "--config", str(config)])
    assert result.exit_code != 0 and "token" in result.output


def test_missing_token_file_is_a_config_error_at_load(grafana: GrafanaStandIn, config: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HAILONG_PUSH__TOKEN", raising=False)
    (tmp_path / "token").unlink()
    result = CliRunner().invoke(main, ["dashboards", "push", "--config", str(config)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"config error in {config}: token_file: secret file {tmp_path / 'token'}: does not exist" in result.output
    assert grafana.calls == [], "nothing is sent to Grafana before the config is whole"
