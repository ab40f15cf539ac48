"""Private PostgreSQL and MariaDB servers from the Debian packages, for the QMS bridge tests.

Like Mosquitto and InfluxDB (hailong/localstack.py): a temp data directory, a free
127.0.0.1 port, never the system service. PostgreSQL refuses to run as root, so when
the tests run as root the cluster belongs to the ``postgres`` user the Debian package
creates; MariaDB runs with ``--user=root`` then. Each starter has a bounded start time
and puts the server's log in its error.

Both servers get a vendor database ``qms`` owned by a writer (what the queue software
uses) and a read-only user ``qms_ro`` (what the bridge uses), both with passwords.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hailong.localstack import free_port, stop_process

PG_BINDIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


class SqlServerError(RuntimeError):
    pass


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, what: str, timeout: float) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SqlServerError(f"{what} exited with {proc.returncode}; log {log}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SqlServerError(f"{what} not ready after {timeout:.0f}s; log {log}:\n{_tail(log)}")


@dataclass
class SqlServer:
    """Common shape: the tests only need URLs, restart() and logs()."""

    kind: str  # "postgresql" | "mariadb"
    workdir: Path
    port: int = 0
    admin_password: str = field(default_factory=lambda: secrets.token_hex(12))
    writer_password: str = field(default_factory=lambda: secrets.token_hex(12))
    ro_password: str = field(default_factory=lambda: secrets.token_hex(12))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def logs(self) -> str:
        return _tail(self.log_path, 80)

    def url(self, user: str = "qms_writer", with_password: bool = True) -> str:
        password = {"qms_writer": self.writer_password, "qms_ro": self.ro_password}.get(user, self.admin_password)
        auth = f"{user}:{password}" if with_password else user
        driver = "postgresql+psycopg" if self.kind == "postgresql" else "mysql+pymysql"
        return f"{driver}://{auth}@127.0.0.1:{self.port}/qms"

    def sql_admin(self, statements: list[str]) -> None:
        import sqlalchemy as sa

        if self.kind == "postgresql":
            url, db = f"postgresql+psycopg://postgres:{self.admin_password}@127.0.0.1:{self.port}/postgres", "qms"
        else:
            url, db = f"mysql+pymysql://root:{self.admin_password}@127.0.0.1:{self.port}/mysql", "qms"
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                for st in statements:
                    conn.execute(sa.text(st.replace("{db}", db)))
        finally:
            engine.dispose()

    def stop(self) -> None:
        # SIGINT is PostgreSQL's fast shutdown; MariaDB shuts down cleanly on SIGTERM
        stop_process(self.proc, 20, signal.SIGINT if self.kind == "postgresql" else signal.SIGTERM)
        self.proc = None

    def kill(self) -> None:
        stop_process(self.proc, 20, signal.SIGKILL)
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self._run()

    def _run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class PostgresServer(SqlServer):
    def __init__(self, timeout: float = 60) -> None:
        if not PG_BINDIRS:
            raise SqlServerError("PostgreSQL not found: install it with `apt-get install postgresql`")
        self.bindir = PG_BINDIRS[0]
        # not under pytest's 0700 tmp: the postgres user must be able to enter it
        super().__init__("postgresql", Path(tempfile.mkdtemp(prefix="hl-pg-")))
        self.timeout = timeout
        self.as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            self.as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
            os.chown(self.workdir, pw.pw_uid, pw.pw_gid)
        self.data = self.workdir / "data"
        self.port = free_port()

    def start(self) -> PostgresServer:
        pwfile = self.workdir / "pw"
        pwfile.write_text(self.admin_password + "\n")
        if self.as_user:
            os.chown(pwfile, self.as_user["user"], self.as_user["group"])
        with open(self.log_path, "ab") as log:
            if self.as_user:
                os.chown(self.log_path, self.as_user["user"], self.as_user["group"])
            subprocess.run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", f"--pwfile={pwfile}",
                            "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"], stdout=log, stderr=log, check=False,
                           timeout=self.timeout, **self.as_user)
        if not (self.data / "PG_VERSION").exists():
            raise SqlServerError(f"initdb failed; log {self.log_path}:\n{self.logs()}")
        self._run()
        self.sql_admin([
            f"CREATE ROLE qms_writer LOGIN PASSWORD '{self.writer_password}'",
            f"CREATE ROLE qms_ro LOGIN PASSWORD '{self.ro_password}'",
            "CREATE DATABASE {db} OWNER qms_writer",
        ])
        return self

    def _run(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the server keeps writing to it
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.workdir),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=40"],
            stdout=log, stderr=log, start_new_session=True, **self.as_user)
        log.close()
        _wait_port(self.port, self.proc, self.log_path, "postgres", self.timeout)
        deadline = time.monotonic() + self.timeout
        while True:  # the port opens a moment before the server accepts logins
            try:
                self.sql_admin(["SELECT 1"])
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise SqlServerError(f"postgres refuses logins; log:\n{self.logs()}") from None
                time.sleep(0.2)

    def grant_read_only(self, tables: list[str]) -> None:
        import sqlalchemy as sa

        engine = sa.create_engine(self.url("qms_writer"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text("GRANT USAGE ON SCHEMA public TO qms_ro"))
            for t in tables:
                conn.execute(sa.text(f"GRANT SELECT ON {t} TO qms_ro"))
        engine.dispose()


class MariaDbServer(SqlServer):
    def __init__(self, timeout: float = 90) -> None:
        for binary in ("mariadbd", "mariadb-install-db"):
            if not (shutil.which(binary) or Path("/usr/sbin", binary).exists()):
                raise SqlServerError(f"{binary} not found: install it with `apt-get install mariadb-server`")
        super().__init__("mariadb", Path(tempfile.mkdtemp(prefix="hl-maria-")))
        self.timeout = timeout
        self.data = self.workdir / "data"
        self.socket = self.workdir / "mysqld.sock"
        self.port = free_port()
        self.user = ["--user=root"] if os.geteuid() == 0 else []

    def start(self) -> MariaDbServer:
        with open(self.log_path, "ab") as log:
            subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.data}", *self.user,
                            "--auth-root-authentication-method=normal", "--skip-test-db"],
                           stdout=log, stderr=log, check=False, timeout=self.timeout)
        if not (self.data / "mysql").is_dir():
            raise SqlServerError(f"mariadb-install-db failed; log {self.log_path}:\n{self.logs()}")
        self._run()
        try:
            self._users()
        except Exception:
            self.stop()
            raise
        return self

    def _users(self) -> None:
        import pymysql

        conn = pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True)
        with conn.cursor() as cur:
            for st in [
                f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{self.admin_password}'",
                f"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '{self.admin_password}'",
                f"ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{self.admin_password}'",
                "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION",
                "CREATE DATABASE qms CHARACTER SET utf8mb4",
                f"CREATE USER 'qms_writer'@'127.0.0.1' IDENTIFIED BY '{self.writer_password}'",
                "GRANT ALL ON qms.* TO 'qms_writer'@'127.0.0.1'",
                f"CREATE USER 'qms_ro'@'127.0.0.1' IDENTIFIED BY '{self.ro_password}'",
            ]:
                cur.execute(st)
        conn.close()

    def _run(self) -> None:
        binary = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        log = open(self.log_path, "ab")  # noqa: SIM115 - the server keeps writing to it
        self.proc = subprocess.Popen(
            [binary, "--no-defaults", f"--datadir={self.data}", f"--socket={self.socket}", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--pid-file={self.workdir / 'mysqld.pid'}", *self.user,
             "--skip-name-resolve", "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
             "--innodb-flush-log-at-trx-commit=2", "--max-connections=40", f"--log-error={self.log_path}"],
            stdout=log, stderr=log, start_new_session=True)
        log.close()
        _wait_port(self.port, self.proc, self.log_path, "mariadbd", self.timeout)

    def grant_read_only(self, tables: list[str]) -> None:
        self.sql_admin([f"GRANT SELECT ON qms.{t} TO 'qms_ro'@'127.0.0.1'" for t in tables])
