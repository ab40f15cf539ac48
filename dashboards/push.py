"""``hailong dashboards push``: folders, teams, permissions and dashboards into a running Grafana.

Uses grafana-client (the maintained successor of the abandoned grafana-api
package). Layout it converges to, idempotently (a second run changes nothing):
- team ``hailong-province`` (province office) and one team ``hailong-centre-<id>`` per centre;
- folder ``hailong — Toàn tỉnh`` with every dashboard, visible to the province team only;
- one folder per centre with copies of the centre, officer and integrity dashboards
  locked to that centre, visible to that centre's team and the province team.
Folder permissions are replaced as a whole, which also removes Grafana's default
"every Viewer/Editor" entries: a centre's supervisors see their centre only.
Grafana OSS does not restrict the datasource per team; a strict split needs a
datasource (InfluxDB user) per centre -- see docs/dashboards.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr

from broker.contract import ID_PATTERN
from broker.kernel.settings import ConfigError, SecretFile, Settings, load_model

from .boards import CENTRE_SCOPED, all_dashboards, for_centre
from .grafana import stable_uid
from .settings import DashboardSettings, load_settings

VIEW = 1  # Grafana folder permission levels: 1 View, 2 Edit, 4 Admin
PROVINCE_TEAM = "hailong-province"
PROVINCE_FOLDER = "hailong-province"


class PushError(RuntimeError):
    pass


class CentreSpec(Settings):
    """A centre that gets its own Grafana folder and team."""

    id: str = Field(pattern=ID_PATTERN, description="Centre id, as in the fleet registry")
    name: str = Field(min_length=1, max_length=100, description="Display name (Vietnamese), used in folder titles")


class PushConfig(Settings):
    """Where to push and which centres exist. The token comes from env or a file, never the TOML."""

    grafana_url: str = Field(description="Grafana base URL, e.g. https://grafana.example.vn")
    token: SecretStr | None = Field(default=None,
                                    description="Service account token (prefer env HAILONG_PUSH__TOKEN)")
    token_file: SecretFile = Field(default=None, description="File whose first line is the token")
    province: str = Field(pattern=ID_PATTERN, description="Province id (the rating.province tag)")
    centres: list[CentreSpec] = Field(min_length=1, description="Centres that get their own folder and team")
    dashboards_config: Path | None = Field(default=None, description="Dashboard settings TOML (optional)")
    timeout_s: float = Field(default=10.0, gt=0, description="HTTP timeout per Grafana call")


def load_push_config(path: Path, environ: dict[str, str] | None = None) -> PushConfig:
    """Read the push TOML plus HAILONG_PUSH__* env; no token (env or file) is a config error here, at start."""
    cfg = load_model(PushConfig, path, "HAILONG_PUSH", environ)
    grafana_token(cfg, path)
    return cfg


def grafana_token(cfg: PushConfig, path: Path | None = None) -> str:
    """The service account token (env or token_file); none at all is a config error."""
    token = cfg.secret_of("token", path)
    if not token:
        raise ConfigError(path, "token", "no Grafana token: set HAILONG_PUSH__TOKEN or token_file")
    return token


def centre_team(centre: str) -> str:
    return f"hailong-centre-{centre}"


def centre_folder(centre: str) -> str:
    return stable_uid("hailong", centre)


class Pusher:
    """Converges Grafana to the desired layout; records what it changed."""

    def __init__(self, api: Any, dry_run: bool = False) -> None:
        self.api = api
        self.dry_run = dry_run
        self.changes: list[str] = []
        self.planned_folders: set[str] = set()

    def _change(self, what: str) -> bool:
        self.changes.append(what)
        return not self.dry_run

    def team(self, name: str) -> int:
        found = [t for t in self.api.teams.get_team_by_name(name) if t.get("name") == name]
        if found:
            return int(found[0]["id"])
        if not self._change(f"create team {name}"):
            return -1
        return int(self.api.teams.add_team({"name": name})["teamId"])

    def folder(self, uid: str, title: str) -> None:
        from grafana_client.client import GrafanaClientError

        try:
            current = self.api.folder.get_folder(uid)
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            if self._change(f"create folder {uid} ({title})"):
                self.api.folder.create_folder(title, uid=uid)
            else:
                self.planned_folders.add(uid)
            return
        if current.get("title") != title and self._change(f"rename folder {uid} to {title}"):
            self.api.folder.update_folder(uid, title=title, version=current.get("version"), overwrite=True)

    def permissions(self, uid: str, team_ids: list[int]) -> None:
        want = sorted({(t, VIEW) for t in team_ids})
        have: list[tuple[int, int]] = []
        if uid not in self.planned_folders:  # a folder only planned in a dry run has no permissions yet
            # Admins always keep access and cannot be removed: ignore that entry. Any other
            # role or user grant (Grafana's default "Viewer can view") must go.
            items = [i for i in self.api.folder.get_folder_permissions(uid)
                     if not i.get("inherited") and i.get("role") != "Admin"]
            have = sorted((int(i.get("teamId") or -1) if not (i.get("role") or i.get("userId")) else -1,
                           int(i["permission"])) for i in items)
        if have != want and self._change(f"set permissions of folder {uid}: teams {[t for t, _ in want]} view"):
            self.api.folder.update_folder_permissions(uid, [{"teamId": t, "permission": p} for t, p in want])

    def dashboard(self, board: dict[str, Any], folder_uid: str) -> None:
        from grafana_client.client import GrafanaClientError

        try:
            current = self.api.dashboard.get_dashboard(board["uid"])
            existing = {k: v for k, v in current["dashboard"].items() if k not in ("id", "version")}
            same = existing == {k: v for k, v in board.items() if k != "version"}
            if same and current.get("meta", {}).get("folderUid") == folder_uid:
                return
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
        if self._change(f"upload dashboard {board['uid']} to folder {folder_uid}"):
            self.api.dashboard.update_dashboard({"dashboard": board, "folderUid": folder_uid, "overwrite": True,
                                                 "message": "hailong dashboards push"})


def plan(cfg: PushConfig, s: DashboardSettings) -> list[tuple[str, str, list[str], list[dict[str, Any]]]]:
    """(folder uid, title, team names, dashboards JSON) for the province and every centre."""
    boards = all_dashboards(s)
    out = [(PROVINCE_FOLDER, "hailong — Toàn tỉnh", [PROVINCE_TEAM],
            [b.to_json(s.datasource_uid) for b in boards])]
    for c in cfg.centres:
        scoped = [for_centre(b, cfg.province, c.id, c.name).to_json(s.datasource_uid)
                  for b in boards if b.uid in CENTRE_SCOPED]
        out.append((centre_folder(c.id), f"hailong — {c.name}", [centre_team(c.id), PROVINCE_TEAM], scoped))
    return out


def push_all(cfg: PushConfig, dry_run: bool = False, api: Any = None) -> list[str]:
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaException

    settings = load_settings(cfg.dashboards_config)
    token = grafana_token(cfg)
    api = api or GrafanaApi.from_url(cfg.grafana_url, credential=token, timeout=cfg.timeout_s)
    pusher = Pusher(api, dry_run)
    try:
        teams: dict[str, int] = {}
        for folder_uid, title, team_names, boards in plan(cfg, settings):
            for name in team_names:
                if name not in teams:
                    teams[name] = pusher.team(name)
            pusher.folder(folder_uid, title)
            pusher.permissions(folder_uid, [teams[n] for n in team_names])
            for board in boards:
                pusher.dashboard(board, folder_uid)
    except GrafanaException as exc:
        raise PushError(f"Grafana at {cfg.grafana_url} refused: {exc}") from None
    except OSError as exc:
        raise PushError(f"cannot reach Grafana at {cfg.grafana_url}: {exc}") from None
    return pusher.changes
