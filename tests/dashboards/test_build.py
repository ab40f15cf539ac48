"""Structure of the generated dashboards and provisioning, and drift against the checked-in copy."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from dashboards.boards import CENTRE_SCOPED, all_dashboards, for_centre
from dashboards.grafana import SCHEMA_VERSION
from dashboards.provisioning import render
from dashboards.settings import DashboardSettings
from hailong.cli import main

GENERATED = Path(__file__).resolve().parents[2] / "dashboards" / "generated"
MACROS = {"timeFilter", "__interval", "__interval_ms", "tag_device"}
VIETNAMESE = re.compile(r"[àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵđ]", re.I)


def boards_json(s: DashboardSettings) -> list[dict[str, Any]]:
    out = [b.to_json(s.datasource_uid) for b in all_dashboards(s)]
    out += [for_centre(b, "hn", "c-ba", "Ba Đình").to_json(s.datasource_uid)
            for b in all_dashboards(s) if b.uid in CENTRE_SCOPED]
    return out


def test_checked_in_files_equal_a_fresh_build(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["dashboards", "build", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    fresh = {p.relative_to(tmp_path).as_posix(): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    checked_in = {p.relative_to(GENERATED).as_posix(): p.read_text() for p in GENERATED.rglob("*") if p.is_file()}
    assert fresh == checked_in, "stale: run `hailong dashboards build --out dashboards/generated`"
    assert fresh == render(DashboardSettings())


def test_uids_schema_and_panel_ids_are_unique_and_stable() -> None:
    boards = boards_json(DashboardSettings())
    uids = [b["uid"] for b in boards]
    assert len(uids) == len(set(uids)) and all(len(u) <= 40 for u in uids)
    for b in boards:
        assert b["schemaVersion"] == SCHEMA_VERSION and b["weekStart"] == "monday"
        ids = [p["id"] for p in b["panels"]]
        assert len(ids) == len(set(ids))
        assert VIETNAMESE.search(b["title"]), b["title"]
        for p in b["panels"]:
            assert VIETNAMESE.search(p["title"]), p["title"]
            assert p["description"].isascii() and p["description"], "English descriptions"
    assert boards_json(DashboardSettings()) == boards, "same input, same JSON"


def test_datasource_refs_resolve_to_the_provisioned_datasource() -> None:
    s = DashboardSettings(datasource_uid="ds-x")
    files = render(s)
    ds = yaml.safe_load(files["provisioning/datasources/hailong.yaml"])["datasources"]
    assert [d["uid"] for d in ds] == ["ds-x"] and ds[0]["jsonData"]["version"] == "InfluxQL"
    refs = []
    for b in boards_json(s):
        refs += [p["datasource"] for p in b["panels"]] + [t["datasource"] for p in b["panels"] for t in p["targets"]]
        refs += [v["datasource"] for v in b["templating"]["list"] if v["type"] == "query"]
    assert refs and all(r == {"type": "influxdb", "uid": "ds-x"} for r in refs)
    rules = yaml.safe_load(files["provisioning/alerting/hailong-rules.yaml"])
    sources = {d["datasourceUid"] for g in rules["groups"] for r in g["rules"] for d in r["data"]}
    assert sources == {"ds-x", "__expr__"}


def test_every_variable_used_is_defined() -> None:
    for b in boards_json(DashboardSettings()):
        defined = {v["name"] for v in b["templating"]["list"]}
        texts = [t["query"] for p in b["panels"] for t in p["targets"]]
        texts += [v.get("query", "") for v in b["templating"]["list"]]
        used = {m for t in texts for m in re.findall(r"\$(\w+)", t)}
        assert used - MACROS <= defined, (b["uid"], used - MACROS - defined)
        # every defined variable filters something (no dead selectors)
        assert defined <= used, (b["uid"], defined - used)


def test_per_centre_copies_lock_province_and_centre() -> None:
    b = next(d for d in all_dashboards(DashboardSettings()) if d.uid == "hl-officer")
    js = for_centre(b, "hn", "c-ba", "Ba Đình").to_json("ds")
    by_name = {v["name"]: v for v in js["templating"]["list"]}
    assert by_name["centre"] == {"type": "constant", "name": "centre", "label": "Trung tâm", "hide": 2,
                                 "query": "c-ba", "skipUrlSync": False}
    assert by_name["province"]["query"] == "hn" and by_name["officer"]["type"] == "query"
    assert js["uid"] == "hl-officer-c-ba" and "Ba Đình" in js["title"]
    long_id = for_centre(b, "hn", "c" * 32, "X").uid
    assert len(long_id) <= 40 and long_id == for_centre(b, "hn", "c" * 32, "Y").uid


def test_alert_rules_intervals_and_contact_points(tmp_path: Path) -> None:
    cfg = tmp_path / "d.toml"
    cfg.write_text('[contact_points]\nemails = ["tinh@example.vn"]\nwebhook_url = "https://hooks.example.vn/x"\n'
                   '[contact_points.centre_emails]\nc-ba = ["gs-ba@example.vn"]\n'
                   '[[opening_hours]]\ndays = "mon-fri"\n[[opening_hours]]\ndays = "sat"\nopens = "08:00"\n'
                   'closes = "11:30"\n', encoding="utf-8")
    out = tmp_path / "out"
    assert CliRunner().invoke(main, ["dashboards", "build", "--out", str(out), "--config", str(cfg)]).exit_code == 0
    rules = yaml.safe_load((out / "provisioning/alerting/hailong-rules.yaml").read_text())
    groups = {g["name"]: g for g in rules["groups"]}
    assert groups["hailong-live"]["interval"] == "10s"
    titles = [r["title"] for g in rules["groups"] for r in g["rules"]]
    assert titles[0].startswith("Không hài lòng") and len(titles) == 9
    late = next(r for g in rules["groups"] for r in g["rules"] if r["uid"] == "hl-not-satisfied-late")
    assert late["title"] == "Không hài lòng nhận muộn" and late["labels"]["severity"] == "warning"
    quiet = next(r for g in rules["groups"] for r in g["rules"] if r["uid"] == "hl-qms-quiet")
    clocks = {d["refId"]: d["relativeTimeRange"]["from"] for d in quiet["data"] if d["refId"][:4] in ("DAYS", "HOUR")}
    # Saturday 08:00-11:30: one weekday, and 08:30 (after the 30 quiet minutes) to 11:30 = 3 h
    assert clocks == {"DAYS0": 5 * 86400, "HOURS0": 9 * 3600, "DAYS1": 86400, "HOURS1": 3 * 3600}
    cp = yaml.safe_load((out / "provisioning/alerting/hailong-contact-points.yaml").read_text())
    names = [c["name"] for c in cp["contactPoints"]]
    assert names == ["hailong-province", "hailong-centre-c-ba"]
    assert cp["contactPoints"][0]["receivers"][1]["settings"]["url"] == "https://hooks.example.vn/x"
    centre_route = {"receiver": "hailong-centre-c-ba", "object_matchers": [["centre", "=", "c-ba"]], "continue": True}
    # late complaints first: grouped per centre (one message per backlog), to the same centre receivers
    assert cp["policies"][0]["routes"] == [
        {"receiver": "hailong-province", "object_matchers": [["alertname", "=", "Không hài lòng nhận muộn"]],
         "group_by": ["alertname", "centre"], "routes": [centre_route]}, centre_route]
    dash = json.loads((out / "dashboards/hl-officer.json").read_text())
    assert "n ≥ 30" in json.dumps(dash, ensure_ascii=False)


def test_bad_config_names_file_key_and_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("min_sample = 0\nunknown_key = 1\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["dashboards", "build", "--out", str(tmp_path / "o"), "--config", str(cfg)])
    assert result.exit_code != 0
    assert str(cfg) in result.output and "min_sample" in result.output
    assert not (tmp_path / "o").exists()
