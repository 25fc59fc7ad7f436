"""Sources that are not files: a PostgreSQL table through Spark's JDBC reader (a real server, started here), and a
Spark catalog table or query. check, then the pipeline, train and infer a text task from the database."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepbatch.catalog import load_conf
from deepbatch.check import check_conf
from deepbatch.cli import main
from tests.conftest import REPO, RUN_DATE
from tests.postgres import PASSWORD, USER, Postgres, missing, quoted, start_postgres

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BAD = [(None, "A review without an id.", "fresh"), ("pg-empty", "   ", "rotten"), ("pg-meh", "Neither here nor there.", "meh")]


def _reviews(landing: Path) -> list[tuple[str | None, str, str]]:
    """Real review snippets (the demo's Rotten Tomatoes lines) and a few rows clean must quarantine."""
    rows = []
    for line in (landing / "text").glob("*.jsonl").__next__().read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("review_id") and rec.get("label") in ("fresh", "rotten") and str(rec.get("text", "")).strip():
            rows.append((str(rec["review_id"]), str(rec["text"]), str(rec["label"])))
    return rows[:100] + BAD


@pytest.fixture(scope="module")
def postgres(landing_conf) -> Iterator[Postgres]:
    why = missing()
    if why:
        pytest.skip(why)
    server = start_postgres()
    try:
        server.sql("CREATE TABLE reviews (review_id text, body text, verdict text, critic text, updated_at timestamp DEFAULT now())")
        values = ", ".join(f"({quoted(i)}, {quoted(t)}, {quoted(lbl)}, 'critic-{n % 7}')" for n, (i, t, lbl) in
                           enumerate(_reviews(Path(landing_conf.data_root) / "landing")))
        server.sql(f"INSERT INTO reviews (review_id, body, verdict, critic) VALUES {values}")
        yield server
    finally:
        server.stop()


def _write_conf(path: Path, server: Postgres, **source: str) -> Path:
    keys = {"kind": "jdbc", "url": server.url, "table": "reviews", "user_env": "DEEPBATCH_PG_USER", "password_env": "DEEPBATCH_PG_PASSWORD",
            "updated_at": "updated_at", **source}
    path.write_text(f"""extends: {REPO / "conf" / "base.yaml"}
spark: {{master: "local[2]", conf: {{spark.sql.shuffle.partitions: "4", spark.ui.enabled: "false"}}}}
quality: {{max_quarantine_fraction: 0.2}}
datasets: {{workers: 1, text_max_length: 32}}
train: {{launcher: local}}
sources:
  reviews:
{chr(10).join(f"    {k}: {json.dumps(v)}" for k, v in keys.items())}
    fields: {{id: review_id, text: body, label: verdict, metadata: [critic]}}
tasks:
  sentiment: {{modality: text, source: reviews, labels: field, classes: [fresh, rotten], model: minilm,
              train: {{epochs: 1, batch_size: 16}}}}
""")
    return path


@pytest.fixture
def credentials(monkeypatch) -> None:
    monkeypatch.setenv("DEEPBATCH_PG_USER", USER)
    monkeypatch.setenv("DEEPBATCH_PG_PASSWORD", PASSWORD)


def _tables(root: Path, stage: str) -> dict[str, dict]:
    manifest = json.loads((root / "manifests" / f"run_date={RUN_DATE}" / f"{stage}.json").read_text())
    return {t["table"]: t for t in manifest["tables"]}


def test_a_postgresql_text_task_runs_check_then_the_pipeline_and_reruns_acquire_only_when_the_table_changes(
        spark, postgres, credentials, tmp_path, capsys, caplog) -> None:
    caplog.set_level("INFO")
    conf = _write_conf(tmp_path / "db.yaml", postgres)
    args = ["--conf", str(conf), "--run-date", RUN_DATE, f"data_root={tmp_path / 'data'}"]
    assert main(["check", *args]) == 0
    out = capsys.readouterr().out
    assert "source reviews (jdbc, jdbc:postgresql://127.0.0.1:" in out and "103 record(s)" in out
    assert "fields found: body, critic, review_id, updated_at, verdict" in out
    assert main(["pipeline", *args]) == 0
    root = tmp_path / "data"
    bronze, silver = _tables(root, "acquire")["bronze/reviews"], _tables(root, "clean")["silver/reviews"]
    assert bronze["records_in"] == bronze["records_out"] == 103 and bronze["inputs"] == [f"{postgres.url}#reviews"]
    assert silver["quarantined"] == {"MISSING_ID": 1, "EMPTY_TEXT": 1, "UNKNOWN_LABEL": 1} and silver["records_out"] == 100
    gold, predictions = _tables(root, "integrate")["gold/sentiment"], _tables(root, "infer")["predictions/sentiment"]
    assert gold["records_out"] == predictions["records_out"] == 100 and predictions["extra"]["errors_by_reason"] == {}
    assert (root / "models" / "sentiment" / RUN_DATE / "model.safetensors").is_file()
    leaked = [p for p in root.rglob("*") if p.is_file() and p.suffix in (".json", ".html", ".txt", ".log") and PASSWORD in p.read_text(errors="ignore")]
    assert leaked == [] and PASSWORD not in capsys.readouterr().out + conf.read_text() + caplog.text

    caplog.clear()
    assert main(["pipeline", *args]) == 0  # the same rows and the same newest updated_at: acquire is skipped
    assert any(r.getMessage().startswith("stage acquire: skipped") for r in caplog.records)
    postgres.sql("INSERT INTO reviews (review_id, body, verdict) VALUES ('pg-new', 'A late, lovely surprise.', 'fresh')")
    caplog.clear()
    assert main(["pipeline", "--to", "acquire", *args]) == 0
    assert any(r.getMessage().startswith("stage acquire: done") for r in caplog.records)
    assert _tables(root, "acquire")["bronze/reviews"]["records_out"] == 104


def test_a_table_without_updated_at_cannot_prove_it_is_unchanged_so_acquire_runs_and_says_why(spark, postgres, credentials, tmp_path,
                                                                                               caplog) -> None:
    from deepbatch.pipeline import stage_hash

    conf = load_conf(_write_conf(tmp_path / "db.yaml", postgres), [f"data_root={tmp_path}", "sources.reviews.updated_at="])
    caplog.set_level("INFO")
    assert stage_hash(conf, "acquire", None, spark) != stage_hash(conf, "acquire", None, spark)
    assert "acquire runs for source reviews: source 'reviews' (jdbc) cannot prove it is unchanged: declare 'sources.reviews.updated_at'" in caplog.text
    with_column = load_conf(_write_conf(tmp_path / "db2.yaml", postgres), [f"data_root={tmp_path}"])
    assert stage_hash(with_column, "acquire", None, spark) == stage_hash(with_column, "acquire", None, spark)


def _problems(conf_path: Path, *overrides: str) -> list[tuple[str, str]]:
    """The problems check finds with the source (a source that cannot be read also leaves its task without rows)."""
    report = check_conf(load_conf(conf_path, [f"data_root={conf_path.parent / 'data'}", *overrides]))
    found = [(f.key, f.message) for f in report.problems]
    assert all(k.startswith("sources.") or k == "tasks.sentiment.labels" for k, _ in found), found
    return [(k, m) for k, m in found if k.startswith("sources.")]


def test_check_names_a_refused_connection_a_missing_table_and_a_missing_column(spark, postgres, credentials, tmp_path) -> None:
    conf = _write_conf(tmp_path / "db.yaml", postgres)
    [(key, message)] = _problems(conf, "sources.reviews.url=jdbc:postgresql://127.0.0.1:1/reviews")
    assert key == "sources.reviews" and "cannot read table reviews at jdbc:postgresql://127.0.0.1:1/reviews" in message
    assert "Connection" in message and "database is up and reachable" in message
    [(key, message)] = _problems(conf, "sources.reviews.table=no_such_table")
    assert key == "sources.reviews" and "no_such_table" in message
    [(key, message)] = _problems(conf, "sources.reviews.fields.text=review_text")
    assert key == "sources.reviews.fields.text" and "maps 'review_text', which is in none of its records" in message


def test_credentials_never_come_from_the_conf(postgres, tmp_path, monkeypatch) -> None:
    from deepbatch.errors import ConfigError

    conf = _write_conf(tmp_path / "db.yaml", postgres, url=postgres.url + f"?user={USER}&password={PASSWORD}")
    with pytest.raises(ConfigError, match=r"conf key 'sources.reviews.url' carries a password: move it to the environment"):
        load_conf(conf)
    conf = _write_conf(tmp_path / "env.yaml", postgres)
    monkeypatch.delenv("DEEPBATCH_PG_PASSWORD", raising=False)
    monkeypatch.setenv("DEEPBATCH_PG_USER", USER)
    [(key, message)] = _problems(conf)
    assert key == "sources.reviews" and "DEEPBATCH_PG_PASSWORD, which is not set" in message
    secrets = tmp_path / "pg.credentials"
    secrets.write_text(f"user={USER}\npassword={PASSWORD}\n")
    assert _problems(conf, "sources.reviews.password_env=", "sources.reviews.user_env=", f"sources.reviews.credentials_file={secrets}") == []


def test_a_spark_catalog_table_and_a_query_land_like_any_record_source(spark, tmp_path) -> None:
    rows = [("t1", "Sharp and funny.", "fresh", "a"), ("t2", "A slog.", "rotten", "b"), ("t2", "A slog.", "rotten", "b"), (None, "x", "fresh", "c")]
    spark.sql("CREATE DATABASE IF NOT EXISTS shop")
    spark.createDataFrame(rows, "id string, review string, stars string, who string").write.mode("overwrite").saveAsTable("shop.reviews")
    conf = tmp_path / "t.yaml"
    conf.write_text(f"""extends: {REPO / "conf" / "base.yaml"}
quality: {{max_quarantine_fraction: 0.9}}
sources:
  shop: {{kind: table, table: shop.reviews, fields: {{id: id, text: review, label: stars, metadata: [who]}}}}
  picked: {{kind: table, query: "SELECT id, review, stars FROM shop.reviews WHERE stars = 'fresh'", fields: {{id: id, text: review, label: stars}}}}
tasks:
  t: {{modality: text, source: shop, labels: field, classes: [fresh, rotten]}}
  p: {{modality: text, source: picked, labels: field, classes: [fresh, rotten]}}
""")
    args = ["--conf", str(conf), "--run-date", RUN_DATE, f"data_root={tmp_path / 'data'}", "spark.master=local[2]"]
    assert main(["pipeline", "--to", "clean", *args]) == 0
    root = tmp_path / "data"
    assert _tables(root, "acquire")["bronze/shop"]["records_out"] == 4 and _tables(root, "acquire")["bronze/picked"]["records_out"] == 2
    silver = _tables(root, "clean")["silver/shop"]
    assert (silver["records_out"], silver["quarantined"], silver["deduplicated"]) == (2, {"MISSING_ID": 1}, {"DUPLICATE_ID": 1})
    assert _tables(root, "acquire")["bronze/shop"]["inputs"] == ["table:shop.reviews"]
    assert os.path.isdir(root / "silver" / "picked" / f"run_date={RUN_DATE}")
