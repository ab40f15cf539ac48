"""The one InfluxDB connection model: where the data lives and how to authenticate.

Used by the ingest (``[influx]`` of ingest.toml, the writer and the ticket-index
rebuild), the dashboards' datasource, the rollups (``hailong dashboards rollup``) and the
weekly report (``hailong report weekly``). It lives in ``storage``, below both the ingest
and the dashboards, so that the dashboards never import the ingest.

Credentials, in the order they are used:
- InfluxDB 1.x with ``auth-enabled``: ``username`` + ``password`` (or ``password_file``),
  sent as the ``u``/``p`` query parameters of /query and /write;
- InfluxDB 2.x/3.x (and 1.8+ with a v2 token): ``token`` (or ``token_file``), sent as
  ``Authorization: Token ...``; 1.8's v2 API also takes ``username:password`` as token.
Secrets belong in env overrides or ``*_file`` keys, never in the TOML itself. A secret
file that is missing or empty is a config error at start, not a failure at first write.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from broker.kernel.settings import SecretFile, Settings

from .influxql import InfluxQL


class InfluxConnection(Settings):
    """Where InfluxDB is and how to log in (shared by ingest, dashboards, rollups, reports).

    Secret files are read by the one settings loader (broker.kernel.settings) at start.
    """

    url: str = Field(default="http://127.0.0.1:8086", description="InfluxDB base URL")
    api: Literal["v2", "v1"] = Field(
        default="v2", description="Writes: v2 = influxdb-client /api/v2/write (1.8+, 2.x, 3.x); v1 = plain /write "
        "(<1.8). Queries always use InfluxQL /query"
    )
    database: str = Field(default="hailong", description="Database (1.x) or DBRP-mapped bucket (2.x/3.x)")
    org: str = Field(default="hailong", description="Organisation (2.x); ignored by 1.x")
    token: SecretStr | None = Field(default=None, description="API token (2.x/3.x); prefer env or token_file")
    token_file: SecretFile = Field(default=None, description="File whose first line is the API token")
    username: str | None = Field(default=None, description="1.x username (auth-enabled = true)")
    password: SecretStr | None = Field(default=None, description="1.x password; prefer env or password_file")
    password_file: SecretFile = Field(default=None, description="File whose first line is the 1.x password")
    timeout_s: float = Field(default=10.0, gt=0, le=600, description="HTTP timeout per write or query")

    @model_validator(mode="after")
    def _check_secrets(self) -> InfluxConnection:
        if self.token is not None and self.token_file is not None:
            raise ValueError("token and token_file: give one, not both")
        if self.password is not None and self.password_file is not None:
            raise ValueError("password and password_file: give one, not both")
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError("password without username: set username too")
        return self

    def secret_password(self) -> str | None:
        return self.secret_of("password")

    def secret_token(self) -> str | None:
        """The v2 API token; for 1.8's v2 compatibility API ``username:password`` stands in."""
        token = self.secret_of("token")
        if token is not None:
            return token
        if self.username:
            return f"{self.username}:{self.secret_password() or ''}"
        return None

    def query_client(self, timeout_s: float | None = None) -> InfluxQL:
        """An InfluxQL client with these credentials (1.x user/password, else the token)."""
        token = None
        if not self.username and (self.token is not None or self.token_file is not None):
            token = self.secret_token()
        return InfluxQL(self.url, self.database, username=self.username or None, password=self.secret_password(),
                        token=token, timeout=timeout_s if timeout_s is not None else self.timeout_s)
