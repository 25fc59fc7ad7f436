"""The source readers: one per kind behind SourceReader, and each kind's conf mistakes named by key with the fix."""

from __future__ import annotations

import pytest

from deepbatch.errors import ConfigError
from deepbatch.sources import READERS, SourceReader, reader
from tests.conftest import make_conf

pytestmark = pytest.mark.unit

JDBC = "sources.db={kind: jdbc, url: 'jdbc:postgresql://127.0.0.1:5432/shop', table: reviews, fields: {id: id, text: body, label: verdict}}"
TASK = "tasks.shop={modality: text, source: db, labels: field, classes: [fresh, rotten]}"


@pytest.mark.parametrize("kind", sorted(READERS))
def test_every_source_kind_has_a_reader_that_keeps_the_protocol(kind) -> None:
    r = reader(kind)
    assert isinstance(r, SourceReader) and r.kind == kind
    assert r.reads_files == (kind not in ("table", "jdbc")) and r.media_files == (kind == "files")


def test_a_database_source_resolves_without_files(tmp_path) -> None:
    from deepbatch.catalog import source

    conf = make_conf(tmp_path, JDBC, TASK)
    src = source(conf, "db")
    assert (src.role, src.reads_files, src.table, src.id_from) == ("records", False, "reviews", "field")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sources.db.url=jdbc:postgresql://u:pw@host/shop", r"'sources.db.url' carries a password: move it to the environment"),
        ("sources.db.url=jdbc:postgresql://host/shop?password=x", r"'sources.db.url' carries a password"),
        ("sources.db.url=postgresql://host/shop", r"'sources.db.url' must be a JDBC URL such as jdbc:postgresql://host:5432/db"),
        ("sources.db.url=jdbc:h2:mem:shop", r"'sources.db.driver': name the JDBC driver class for jdbc:h2:mem:shop"),
        ("sources.db.query=SELECT 1", r"source 'db' \(kind jdbc\) needs exactly one of 'sources.db.table'"),
        ("sources.db.table=", r"source 'db' \(kind jdbc\) needs exactly one of"),
        ("sources.db.id=line", r"'sources.db.id' must be field for kind jdbc"),
        ("sources.db.glob='*.csv'", r"'sources.db.glob' is for file sources; sources.db is kind jdbc"),
        ("sources.db.kind=table", r"'sources.db.url' is for kind jdbc; sources.db is kind table"),
        ("sources.db.updated_at=last changed", r"'sources.db.updated_at': 'last changed' is not a usable field name"),
    ],
)
def test_a_database_source_mistake_names_its_key_and_the_fix(tmp_path, override, message) -> None:
    with pytest.raises(ConfigError, match=message):
        make_conf(tmp_path, JDBC, TASK, override)


def test_a_file_source_refuses_the_database_keys(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"'sources.text.table' is for sources that are not files \(kind table or jdbc\)"):
        make_conf(tmp_path, "sources.text.table=reviews")


def test_credentials_come_from_the_environment_or_a_file_and_name_what_is_missing(tmp_path, monkeypatch) -> None:
    from deepbatch.catalog import source
    from deepbatch.sources.jdbc import credentials

    conf = make_conf(tmp_path, JDBC, TASK, "sources.db.user_env=SHOP_USER", "sources.db.password_env=SHOP_PASSWORD")
    monkeypatch.setenv("SHOP_USER", "reader")
    monkeypatch.delenv("SHOP_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match=r"'sources.db.password_env' names the environment variable SHOP_PASSWORD, which is not set"):
        credentials(source(conf, "db"))
    monkeypatch.setenv("SHOP_PASSWORD", "pw")
    assert credentials(source(conf, "db")) == {"user": "reader", "password": "pw"}
    secrets = tmp_path / "db.credentials"
    secrets.write_text("user = other\npassword=p=w\n# a comment\n")
    conf = make_conf(tmp_path, JDBC, TASK, f"sources.db.credentials_file={secrets}")
    assert credentials(source(conf, "db")) == {"user": "other", "password": "p=w"}
    missing = make_conf(tmp_path, JDBC, TASK, f"sources.db.credentials_file={tmp_path / 'nope'}")
    with pytest.raises(ConfigError, match=r"'sources.db.credentials_file': .*nope does not exist"):
        credentials(source(missing, "db"))
