"""kind jdbc: records from a database table or query through Spark's JDBC reader (PostgreSQL, and any database
whose JDBC driver jar is on Spark's classpath: ``spark.jars`` locally, ``--jars`` on a cluster).

Credentials never sit in the conf: ``user_env`` and ``password_env`` name environment variables, or
``credentials_file`` names a file of ``user=...`` and ``password=...`` lines. A URL that carries a password is
refused. The credentials reach only the JDBC reader's options; lineage, manifests, logs and the report name the
URL without them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from deepbatch.config import Conf, SourceConf
from deepbatch.errors import ConfigError, SourceUnavailableError
from deepbatch.sources import Source, SourceReader
from deepbatch.sources.table import TableReader, first_error_line

DRIVERS = {"postgresql": "org.postgresql.Driver", "mysql": "com.mysql.cj.jdbc.Driver", "sqlserver": "com.microsoft.sqlserver.jdbc.SQLServerDriver",
           "oracle": "oracle.jdbc.OracleDriver", "sqlite": "org.sqlite.JDBC"}
_SECRET_IN_URL = re.compile(r"(?i)(password|passwd|pwd)=|//[^/@]*:[^/@]*@")


def credentials(src: Source) -> dict[str, str]:
    """The user and password for the JDBC reader, from the environment or the credentials file (never from the conf)."""
    out: dict[str, str] = {}
    if src.credentials_file:
        path = Path(os.path.expanduser(src.credentials_file))
        if not path.is_file():
            raise ConfigError(f"conf key 'sources.{src.name}.credentials_file': {path} does not exist; write user=... and password=... "
                              "lines there, readable by the deepbatch user only")
        for line in path.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() in ("user", "password"):
                out[key.strip()] = value.strip()
    for key, env in (("user", src.user_env), ("password", src.password_env)):
        if env:
            if env not in os.environ:
                raise ConfigError(f"conf key 'sources.{src.name}.{key}_env' names the environment variable {env}, which is not set: "
                                  f"export it before the run")
            out[key] = os.environ[env]
    return out


def _engine(url: str) -> str:
    return url.split(":", 2)[1].lower() if url.startswith("jdbc:") and url.count(":") >= 2 else ""


class JdbcReader(TableReader):
    """A database table (``table``) or query (``query``) at ``url``."""

    kind = "jdbc"
    foreign_keys = ()

    def check_conf(self, name: str, sc: SourceConf) -> None:
        super().check_conf(name, sc)
        key = f"sources.{name}"
        if not sc.url.startswith("jdbc:"):
            raise ConfigError(f"conf key '{key}.url' must be a JDBC URL such as jdbc:postgresql://host:5432/db, got {sc.url!r}")
        if _SECRET_IN_URL.search(sc.url):
            raise ConfigError(f"conf key '{key}.url' carries a password: move it to the environment ('{key}.password_env') or a "
                              f"credentials file ('{key}.credentials_file'); the conf is hashed into manifests and logs")
        if not sc.driver and _engine(sc.url) not in DRIVERS:
            raise ConfigError(f"conf key '{key}.driver': name the JDBC driver class for {sc.url.split('//')[0]} (known without it: "
                              f"{', '.join(DRIVERS)})")

    def where(self, src: Source) -> str:
        return f"{src.url}#{src.table or 'query'}"

    def _named(self, src: Source) -> str:
        return f"table {src.table} at {src.url}" if src.table else f"its query at {src.url}"

    def frame(self, spark: SparkSession, conf: Conf, src: Source, query: str | None = None) -> DataFrame:
        """The table or query through Spark's JDBC reader; ``query`` (over ``{src}``) runs in the database."""
        base = f"({src.query}) AS src" if src.query else src.table
        reader = (spark.read.format("jdbc").option("url", src.url).option("driver", src.driver or DRIVERS[_engine(src.url)])
                  .options(**credentials(src)))
        reader = reader.option("query", query.replace("{src}", base)) if query else (
            reader.option("query", src.query) if src.query else reader.option("dbtable", src.table))
        try:
            df = reader.load()
            df.schema  # noqa: B018 - resolving the schema connects: a refused connection or a missing table fails here
            return df
        except Exception as e:  # noqa: BLE001 - the driver's own message says what is wrong; add the conf keys to fix
            raise SourceUnavailableError(f"source {src.name!r}: cannot read {self._named(src)}: {first_error_line(e)}. Check that the "
                                         f"database is up and reachable, 'sources.{src.name}.{'table' if src.table else 'query'}', and "
                                         "the credentials; the driver jar must be on Spark's classpath (spark.jars)") from e


JDBC: SourceReader = JdbcReader()
