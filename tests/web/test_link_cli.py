"""``hailong web link`` and ``hailong web key rotate`` on a fleet directory written in the fleet tool's format."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from broker import weblink
from broker.fleet.credentials import FleetState
from hailong.cli import main
from tests.support.ingest import write_fleet


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_link_prints_a_verifiable_url_and_writes_png_and_svg_qr(tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path / "fleet", "hcc-hue", [("t1", "q1")], has_qms=True)
    code, out, err = _run("web", "link", "--fleet", str(fleet), "--centre", "hcc-hue", "--ticket", "A-007",
                          "--day", "2026-03-02", "--ticket-id", "V-88", "--source", "sms",
                          "--base", "https://dg.hue.gov.vn/", "--qr", str(tmp_path / "slip.png"))
    assert code == 0, err
    url = out.strip()
    assert url.startswith("https://dg.hue.gov.vn/r/") and len(url) <= 160
    token = url.rsplit("/", 1)[1]
    ring = FleetState.for_fleet(fleet).link_keyring("hcc-hue", create=False)
    link = weblink.verify(token, ring.secrets(), now_s=int(dt.datetime(2026, 3, 2, 12).timestamp()))
    assert (link.centre, link.ticket, link.day, link.ticket_id, link.source) == (
        "hcc-hue", "A-007", dt.date(2026, 3, 2), "V-88", "sms")
    # default expiry: the end of 2 March in Ho Chi Minh City (UTC+7) plus 7 days
    assert link.expires == int(dt.datetime(2026, 3, 9, 17, tzinfo=dt.UTC).timestamp())
    png = Image.open(tmp_path / "slip.png")
    assert png.size[0] == png.size[1] >= 8 * 21  # square, at least a version-1 symbol at scale 8
    code, _, err = _run("web", "link", "--fleet", str(fleet), "--centre", "hcc-hue", "--ticket", "A-007",
                        "--base", "https://dg.hue.gov.vn", "--qr", str(tmp_path / "slip.svg"))
    assert code == 0, err
    assert (tmp_path / "slip.svg").read_text().lstrip().startswith("<?xml")


def test_link_refuses_unknown_centre_bad_ticket_and_bad_base(tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path / "fleet", "hcc-hue", [("t1", "q1")], has_qms=True)
    code, _, err = _run("web", "link", "--fleet", str(fleet), "--centre", "nowhere", "--ticket", "A1", "--base",
                        "https://x.vn")
    assert code != 0 and "nowhere" in err
    code, _, err = _run("web", "link", "--fleet", str(fleet), "--centre", "hcc-hue", "--ticket", "A 1", "--base",
                        "https://x.vn")
    assert code != 0 and "ticket" in err
    code, _, err = _run("web", "link", "--fleet", str(fleet), "--centre", "hcc-hue", "--ticket", "A1", "--base",
                        "javascript:alert(1)")
    assert code != 0 and "https://" in err


def test_rotate_keeps_old_links_and_never_prints_a_secret(tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path / "fleet", "hcc-hue", [("t1", "q1")], has_qms=True)
    code, out, _ = _run("web", "link", "--fleet", str(fleet), "--centre", "hcc-hue", "--ticket", "B2",
                        "--base", "https://x.vn")
    assert code == 0
    old = out.strip().rsplit("/", 1)[1]
    code, out, err = _run("web", "key", "rotate", "--fleet", str(fleet), "--centre", "hcc-hue")
    assert code == 0, err
    ring = FleetState.for_fleet(fleet).link_keyring("hcc-hue")
    assert ring.current == 2 and "key 2" in out
    assert all(k.secret.hex() not in out for k in ring.keys)
    assert weblink.verify(old, ring.secrets(), now_s=0).ticket == "B2"


def test_terminal_links_and_rotation_naming_the_terminals_and_revoking_a_counter(tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path / "fleet", "hcc-hue", [("t1", "q1"), ("t2", "q2")], has_qms=True)
    code, _, err = _run("web", "link", "--fleet", str(fleet), "--centre", "hcc-hue", "--ticket", "C3",
                        "--source", "terminal-qr", "--base", "https://x.vn")
    assert code != 0 and "counter" in err  # a terminal link names its counter
    code, out, err = _run("web", "link", "--fleet", str(fleet), "--centre", "hcc-hue", "--ticket", "C3",
                          "--counter", "q1", "--source", "terminal-qr", "--base", "https://x.vn")
    assert code == 0, err
    q1 = out.strip().rsplit("/", 1)[1]
    ring = FleetState.for_fleet(fleet).link_keyring("hcc-hue")
    assert weblink.verify(q1, ring.secrets(), now_s=0).counter == "q1"
    # signed with q1's derived key, not the centre key
    assert weblink.sign(weblink.decode(q1).link, 1, weblink.terminal_key(ring.signing_key().secret, "q1")) == q1
    code, _, err = _run("web", "key", "rotate", "--fleet", str(fleet), "--centre", "hcc-hue",
                        "--revoke-counter", "q9")
    assert code != 0 and "q9" in err and FleetState.for_fleet(fleet).link_keyring("hcc-hue").current == 1
    code, out, err = _run("web", "key", "rotate", "--fleet", str(fleet), "--centre", "hcc-hue",
                          "--revoke-counter", "q1")
    assert code == 0, err
    assert "2 terminal(s) still sign their QR links with a key derived from key 1" in out
    assert "t1 (counter q1)  REVOKED" in out and "t2 (counter q2)\n" in out
    ring = FleetState.for_fleet(fleet).link_keyring("hcc-hue")
    assert ring.revoked() == {1: ("q1",)}
    assert all(k.secret.hex() not in out for k in ring.keys)
    with pytest.raises(weblink.LinkError) as err_info:
        weblink.verify(q1, ring.secrets(), 0, ring.revoked())
    assert err_info.value.reason == "unknown_key"
