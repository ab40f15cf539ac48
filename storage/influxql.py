"""A tiny InfluxQL-over-HTTP client (the /query endpoint of 1.x, 2.x via DBRP, 3.x).

Used by the ingest (rebuilding its ticket index), reports, dashboards tests and
the demo summary. Raises :class:`InfluxQueryError` with the server's message.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any


class InfluxQueryError(RuntimeError):
    pass


def string_literal(value: str) -> str:
    """``value`` as an InfluxQL single-quoted string literal (a vendor ticket id may hold ' or \\)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Series:
    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]

    def rows(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, v, strict=True)) | self.tags for v in self.values]


@dataclass
class InfluxQL:
    url: str
    database: str
    username: str | None = None
    password: str | None = None
    token: str | None = None
    timeout: float = 30.0

    def _request(self, path: str, params: dict[str, str], post: bool) -> dict[str, Any]:
        data = urllib.parse.urlencode(params).encode()
        url = f"{self.url.rstrip('/')}{path}"
        req = urllib.request.Request(url if post else f"{url}?{data.decode()}", data=data if post else None)
        if post:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        if self.username:  # 1.x reads u/p only from the URL, never from a POST body: Basic auth works for both
            basic = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
            req.add_header("Authorization", f"Basic {basic}")
        elif self.token:
            req.add_header("Authorization", f"Token {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body: dict[str, Any] = json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")[:500]
            if exc.code in (401, 403):  # say what to configure, not only what the server said
                how = "wrong username/password" if self.username else "wrong token" if self.token else (
                    "no credentials given: set influx username + password(_file) (1.x) or token(_file) (2.x/3.x)")
                raise InfluxQueryError(f"InfluxDB at {self.url} refused access (HTTP {exc.code}, {how}): {text}") \
                    from None
            raise InfluxQueryError(f"HTTP {exc.code}: {text}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise InfluxQueryError(f"cannot reach InfluxDB at {self.url}: {exc}") from None
        for result in body.get("results", []):
            if "error" in result:
                raise InfluxQueryError(result["error"])
        if "error" in body:
            raise InfluxQueryError(body["error"])
        return body

    def query(self, q: str, epoch: str = "ms") -> list[Series]:
        """Run one or more ';'-separated statements; return all series of all results."""
        post = not q.lstrip().upper().startswith(("SELECT", "SHOW"))
        body = self._request("/query", {"q": q, "db": self.database, "epoch": epoch}, post)
        out: list[Series] = []
        for result in body.get("results", []):
            for s in result.get("series", []) or []:
                out.append(Series(s.get("name", ""), s.get("tags", {}) or {}, s["columns"], s.get("values", [])))
        return out

    def rows(self, q: str, epoch: str = "ms") -> list[dict[str, Any]]:
        return [row for s in self.query(q, epoch) for row in s.rows()]

    def scalar(self, q: str) -> Any:
        rows = self.rows(q)
        if not rows:
            return None
        row = rows[0]
        keys = [k for k in row if k != "time"]
        return row[keys[0]] if keys else None

    def create_database(self) -> None:
        self.query(f'CREATE DATABASE "{self.database}"')

    def drop_database(self) -> None:
        self.query(f'DROP DATABASE "{self.database}"')
