"""A throwaway PostgreSQL server for the tests: initdb in a temporary folder, pg_ctl on a free loopback port, a password
login (scram-sha-256), stopped at the end. Debian's postgresql package gives the server, libpostgresql-jdbc-java the
JDBC driver jar (tools/bootstrap.sh installs both where it can; .ci/run installs them)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

JDBC_JAR = "/usr/share/java/postgresql.jar"
USER, PASSWORD = "deepbatch", "s3cret-not-in-conf"


def server_bin() -> Path | None:
    """The newest installed PostgreSQL server's bin folder (None: no server installed)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def missing() -> str | None:
    """Why the PostgreSQL tests cannot run here (None: they can)."""
    if server_bin() is None:
        return "no PostgreSQL server: apt-get install postgresql (tools/bootstrap.sh does where it can)"
    if not Path(JDBC_JAR).is_file():
        return f"no JDBC driver at {JDBC_JAR}: apt-get install libpostgresql-jdbc-java"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Postgres:
    root: Path
    port: int
    bin: Path

    @property
    def url(self) -> str:
        return f"jdbc:postgresql://127.0.0.1:{self.port}/reviews"

    def _as_owner(self, args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        """Run a server command as the folder's owner: initdb and postgres refuse to run as root."""
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *args], check=True, capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload]

    def start(self) -> Postgres:
        data, pw = self.root / "data", self.root / "pw"
        pw.write_text(PASSWORD)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(pw, "postgres")
        self._as_owner([str(self.bin / "initdb"), "-D", str(data), "-U", USER, "--auth=scram-sha-256", f"--pwfile={pw}", "-E", "UTF8",
                        "--locale=C"])
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._as_owner([str(self.bin / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(self.root / "server.log"), "-w", "start"])
        self.sql("CREATE DATABASE reviews", database="postgres")
        return self

    def stop(self) -> None:
        try:
            self._as_owner([str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def sql(self, statement: str, database: str = "reviews") -> str:
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        r = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", database, "-v", "ON_ERROR_STOP=1", "-At",
                            "-c", statement], check=True, capture_output=True, text=True, env=env, timeout=120)
        return r.stdout.strip()


def start_postgres() -> Postgres:
    """A running server in a new folder under the system temp dir (the postgres user must reach it: pytest's own
    temp folders are private to root)."""
    import tempfile

    bin_dir = server_bin()
    if bin_dir is None:
        raise RuntimeError(missing())
    root = Path(tempfile.mkdtemp(prefix="deepbatch-pg-"))
    return Postgres(root, _free_port(), bin_dir).start()


def quoted(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"
