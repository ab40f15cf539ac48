"""A tiny in-process stand-in for the parts of Grafana's HTTP API the push tool uses.

Grafana cannot run here (not packaged for Debian), so this keeps teams,
folders, folder permissions and dashboards in memory, behaves like Grafana 10
for those endpoints (404s, default Viewer/Editor folder permissions, version
bumps) and records every call so tests can assert the exact sequence.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class GrafanaStandIn:
    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[tuple[str, str]] = []
        self.bodies: list[Any] = []
        self.teams: dict[int, str] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.permissions: dict[str, list[dict[str, Any]]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                with standin._lock:
                    standin.calls.append((method, self.path))
                    standin.bodies.append(body)
                    if self.headers.get("Authorization") != f"Bearer {standin.token}":
                        return self._reply(401, {"message": "Unauthorized"})
                    status, out = standin.route(method, self.path, body)
                self._reply(status, out)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> GrafanaStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        url = urlsplit(path)
        parts = url.path.strip("/").split("/")[1:]  # drop "api"
        if method == "GET" and parts == ["teams", "search"]:
            name = parse_qs(url.query).get("name", [""])[0]
            teams = [{"id": i, "name": n} for i, n in self.teams.items() if n == name]
            return 200, {"totalCount": len(teams), "teams": teams, "page": 1, "perPage": 1000}
        if method == "POST" and parts == ["teams"]:
            if body["name"] in self.teams.values():
                return 409, {"message": "Team name taken"}
            tid = len(self.teams) + 1
            self.teams[tid] = body["name"]
            return 200, {"message": "Team created", "teamId": tid}
        if parts[:1] == ["folders"]:
            if method == "GET" and len(parts) == 1:
                return 200, [{"uid": u, "title": f["title"]} for u, f in self.folders.items()]
            if method == "POST" and len(parts) == 1:
                uid = body["uid"]
                self.folders[uid] = {"uid": uid, "title": body["title"], "version": 1, "id": len(self.folders) + 1}
                # Grafana's defaults: every Viewer can view, every Editor can edit
                self.permissions[uid] = [{"role": "Viewer", "permission": 1}, {"role": "Editor", "permission": 2}]
                return 200, self.folders[uid]
            uid = parts[1]
            if uid not in self.folders:
                return 404, {"message": "folder not found", "status": "not-found"}
            if len(parts) == 3 and parts[2] == "permissions":
                if method == "GET":
                    items = [{"role": "Admin", "permission": 4}, *self.permissions[uid]]
                    return 200, [{"teamId": 0, "userId": 0, "role": "", "inherited": False} | i for i in items]
                self.permissions[uid] = list(body["items"])
                return 200, {"message": "Folder permissions updated"}
            if method == "PUT":
                self.folders[uid].update(title=body["title"], version=self.folders[uid]["version"] + 1)
            return 200, self.folders[uid]
        if method == "GET" and parts[:2] == ["dashboards", "uid"]:
            d = self.dashboards.get(parts[2])
            if d is None:
                return 404, {"message": "Dashboard not found"}
            return 200, {"dashboard": d["dashboard"], "meta": {"folderUid": d["folderUid"]}}
        if method == "POST" and parts == ["dashboards", "db"]:
            dash = dict(body["dashboard"])
            old = self.dashboards.get(dash["uid"])
            dash["version"] = old["dashboard"]["version"] + 1 if old else 1
            dash["id"] = old["dashboard"]["id"] if old else len(self.dashboards) + 1
            self.dashboards[dash["uid"]] = {"dashboard": dash, "folderUid": body.get("folderUid")}
            return 200, {"status": "success", "uid": dash["uid"], "version": dash["version"], "id": dash["id"]}
        return 404, {"message": f"not in the stand-in: {method} {path}"}
