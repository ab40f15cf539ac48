"""README.md and docs/*.md agree with the code on three things that drifted before:

- subscriptions: ratings are subscribed directly (a `$share` subscription is lost by Mosquitto
  2.0.11 on a restart, docs/ingest.md); a guide that routes ratings or instances through `$share`
  without that qualification is wrong;
- file modes: no "all files 0600" claim; the modes the technician's guide states for `state/` are
  those a real `hailong fleet provision` leaves;
- commands: every `hailong ...` a guide shows (in code) names subcommands the CLI has.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
GUIDES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# words that make a `$share` mention true: it is about statuses, the opt-in, or why ratings avoid it
SHARE_QUALIFIERS = ("ratings_shared", "status", "restore", "lost", "standard", "orphan", "opt-in", "failover",
                    "not through")


def _sentences(text: str) -> list[tuple[int, str]]:
    """(line number, sentence) of the prose; code blocks are kept whole per line."""
    out: list[tuple[int, str]] = []
    in_code = False
    para: list[tuple[int, str]] = []

    def flush() -> None:
        if para:
            joined = " ".join(t for _, t in para)
            for sentence in re.split(r"(?<=[.;:])\s+(?=[A-Z`(*-])", joined):
                out.append((para[0][0], sentence))
            para.clear()

    for n, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("```"):
            flush()
            in_code = not in_code
            continue
        if in_code:
            out.append((n, line))
        elif not line.strip() or line.lstrip().startswith(("- ", "|", "#")):
            flush()
            if line.strip():
                para.append((n, line))
        else:
            para.append((n, line))
    flush()
    return out


def share_claims(text: str) -> list[str]:
    bad = []
    for n, sentence in _sentences(text):
        arrow = re.search(r"--\s*\$share", sentence)  # a diagram arrow that routes through $share
        unqualified = (("$share" in sentence or "shared subscription" in sentence)
                       and re.search(r"\brating|\binstance", sentence, re.I)
                       and not any(q in sentence.lower() for q in SHARE_QUALIFIERS))
        if arrow or unqualified:
            bad.append(f"{n}: {sentence.strip()}")
    return bad


def mode_claims(text: str) -> list[str]:
    return [f"{n}: {s.strip()}" for n, s in _sentences(text)
            if re.search(r"\b(all|every)\s+(the\s+)?files?\b[^.]{0,40}\b0[0-7]{3}\b", s, re.I)]


def _code_fragments(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    in_code = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            line = re.sub(r"--[^->\s][^>]*?-->|<--+[^-]*?--", " | ", line)  # diagram arrows: --QoS 1-->
            # a listing: "hailong cmd ARGS   what it does" (two spaces start the description)
            out.append((n, re.split(r"\s{2,}|\s#", line.strip())[0]))
        else:
            out += [(n, span) for span in re.findall(r"`([^`]+)`", line)]
    return out


def unknown_commands(text: str) -> list[str]:
    from hailong.cli import main

    bad = []
    for n, fragment in _code_fragments(text):
        for m in re.finditer(r"(?:^|[\s(;&|$])(?:[\w./-]*/)?hailong((?:[ \t]+[^\s`]+)+)", fragment):
            tokens = m.group(1).split()
            problem = _resolve(main, tokens)
            if problem:
                bad.append(f"{n}: `hailong {' '.join(tokens)}`: {problem}")
    return bad


def _resolve(cmd: click.Command, tokens: list[str]) -> str | None:
    """None if the tokens name existing subcommands as far as they are subcommands, else the problem."""
    ctx = click.Context(cmd)
    i = 0
    while i < len(tokens) and isinstance(cmd, click.Group):
        token = tokens[i]
        if token.startswith("-"):
            name = token.split("=")[0]
            if re.fullmatch(r"-[a-zA-Z]{2,}", name):  # stacked short flags: -vv
                name = name[:2]
            param = next((p for p in cmd.params if isinstance(p, click.Option) and name in p.opts), None)
            if param is None:
                return f"{token} is not an option of `{cmd.name}`"
            i += 1 if (param.is_flag or param.count or "=" in token) else 2
            continue
        if not re.fullmatch(r"[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*", token):
            return None  # a placeholder (DIR, ...), not a subcommand: nothing more to check
        names = token.split("|")
        found = [cmd.get_command(ctx, name) for name in names]
        missing = [name for name, c in zip(names, found, strict=True) if c is None]
        if missing:
            if i == 0 and token == "hailong":  # "sudo -u hailong hailong ...": the user, then the command
                i += 1
                continue
            return f"no subcommand {', '.join(missing)} in `{cmd.name}`"
        nxt = found[0]
        assert nxt is not None
        cmd, ctx = nxt, click.Context(nxt, parent=ctx)
        i += 1
    return None


def test_the_guides_route_no_rating_through_share() -> None:
    bad = {str(p.relative_to(ROOT)): share_claims(p.read_text(encoding="utf-8")) for p in GUIDES}
    assert not any(bad.values()), {k: v for k, v in bad.items() if v}


def test_the_guides_claim_no_single_mode_for_all_files() -> None:
    bad = {str(p.relative_to(ROOT)): mode_claims(p.read_text(encoding="utf-8")) for p in GUIDES}
    assert not any(bad.values()), {k: v for k, v in bad.items() if v}


def test_every_hailong_command_in_the_guides_exists() -> None:
    bad = {str(p.relative_to(ROOT)): unknown_commands(p.read_text(encoding="utf-8")) for p in GUIDES}
    assert not any(bad.values()), {k: v for k, v in bad.items() if v}
    # and the checks find something: the guides do show commands
    shown = sum(len(re.findall(r"hailong [a-z]", p.read_text(encoding="utf-8"))) for p in GUIDES)
    assert shown > 50


def test_the_checks_catch_the_claims_that_were_wrong() -> None:
    """What README.md and docs/technician.md said before issue 23, and made-up commands."""
    assert share_claims("```\n Mosquitto (broker/) --$share, per partition--> ingest/\n```\n")
    assert share_claims("- **More ingest instances** on one shared subscription (`$share/hl-ingest/...`):\n")
    assert not share_claims("Statuses stay on `$share/<group>/...` (a status lost is replaced).\n")
    assert mode_claims("`<fleet>/state/` (mode 0700): the CA key, passwords,\ndevice keys; all files 0600.\n")
    assert unknown_commands("run `hailong report weeky --centre x`\n")
    assert unknown_commands("```\nhailong qms bridge mark show|sett --config q.toml\n```\n")
    assert unknown_commands("`hailong fleet --flet DIR list`")
    assert not unknown_commands("`.venv/bin/hailong -vv qms bridge mark show --config qms.toml`")
    assert not unknown_commands("```\nsudo -u hailong hailong fleet --fleet DIR list\n```\n")


def test_state_files_have_the_modes_the_technician_guide_states(tmp_path: Path) -> None:
    guide = (ROOT / "docs" / "technician.md").read_text(encoding="utf-8")
    claim = " ".join(guide.split("## Where secrets live")[1].split("##")[0].split())
    assert "folders are 0700" in claim and "are 0600" in claim and "(`*.crt`), which are public, are 0644" in claim
    fleet = tmp_path / "fleet"
    subprocess.run(["cp", "-r", str(ROOT / "deploy" / "example-fleet"), str(fleet)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAILONG_")}
    for args in (["fleet", "--fleet", str(fleet), "provision", "--centre", "qn-tthc", "--out", str(tmp_path / "b")],
                 ["broker", "render", "--fleet", str(fleet), "--out", str(tmp_path / "broker")]):
        done = subprocess.run([sys.executable, "-m", "hailong.cli", *args], capture_output=True, text=True, env=env,
                              cwd=ROOT, timeout=120, preexec_fn=lambda: os.umask(0o022))
        assert done.returncode == 0, done.stderr
    state = fleet / "state"
    seen = {"dir": 0, "secret": 0, "crt": 0}
    for path in [state, *state.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        rel = path.relative_to(fleet)
        if path.is_dir():
            assert mode == 0o700, f"{rel}: {mode:o}"
            seen["dir"] += 1
        elif path.suffix == ".key" or path.suffix == ".password" or path.name == "passwd" or \
                path.parent.name == "weblink":
            assert mode == 0o600, f"{rel}: {mode:o}"
            seen["secret"] += 1
        elif path.suffix == ".crt":
            assert mode == 0o644, f"{rel}: {mode:o}"
            seen["crt"] += 1
    assert seen["dir"] >= 3 and seen["secret"] >= 4 and seen["crt"] >= 3, seen
