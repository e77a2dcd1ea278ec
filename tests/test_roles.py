"""Least privilege (migration 0004, docs/operations.md): a job connected as star_writer runs the normal flow (load,
text embedding, feast apply, materialize); a consumer connected as star_reader reads online and historical features
through Feast and similar entities through star.nearest, and can write nothing."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pandas as pd
import psycopg
import pytest

from star import db
from star.data.reading import read_dir
from star.pipeline import apply_features, materialize
from star.store.feast_repo import open_store
from star.store.marketplace import load
from star.text.config import TextModelConfig
from star.text.embed import EmbedConfig, embed_texts
from star.text.model import TextEncoder
from tests import tiny_market
from tests.test_ingest import snapshot
from tests.text_models import one_thread, tiny_bert  # noqa: F401  (one_thread: autouse fixture)

FAMILY = "member_text_embedding"


@pytest.fixture(scope="module")
def served(server, tmp_path_factory):
    """A database that star_writer alone has loaded, embedded, applied and materialized: (writer, reader)."""
    base, template = server
    target = base.with_database(f"star_test_{uuid.uuid4().hex[:12]}")
    db.ensure_database(target, template=template)
    writer, reader = replace(target, user="star_writer"), replace(target, user="star_reader")
    tmp = tmp_path_factory.mktemp("roles")
    try:
        db.migrate(writer)  # what `star db up` does in a job: at head already, it only reads the revision
        load(writer, read_dir(tiny_market.write(tmp / "m")))
        encoder = TextEncoder(TextModelConfig(model_dir=tiny_bert(tmp / "bert"), pooling="mean", precision="fp32"))
        embed_texts(writer, encoder, EmbedConfig(), progress=False)
        apply_features(writer)
        materialize(writer)
        yield writer, reader
    finally:
        db.drop_database(target)


def _online_table(conn) -> str:
    return conn.execute("SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
                        "WHERE schemaname = 'feast_online' ORDER BY 1 LIMIT 1").fetchone()[0]


def test_the_writer_owns_what_its_jobs_and_feast_created(served):
    writer, _ = served
    with db.connect(writer) as conn:
        owners = dict(conn.execute(
            "SELECT schemaname || '.' || tablename, tableowner FROM pg_tables "
            "WHERE schemaname IN ('star', 'feast_online') OR tablename IN ('feature_views', 'projects')").fetchall())
    assert owners[f"star.{FAMILY}_v1"] == "star_writer"  # the version table of the embedding job
    assert owners["public.feature_views"] == owners["public.projects"] == "star_writer"  # Feast's SQL registry
    online = [t for t in owners if t.startswith("feast_online.")]
    assert online and all(owners[t] == "star_writer" for t in online)  # Feast's online tables
    assert owners["star.members"] == owners["star.embedding_versions"] == "star_owner"  # the migrations'


def test_a_reader_gets_online_and_historical_features_and_similar_entities(served):
    _, reader = served
    store = open_store(reader)
    online = store.get_online_features(
        features=["member_categorical_v1:seniority", f"{FAMILY}_v1:embedding"],
        entity_rows=[{"member_id": 1}, {"member_id": 2}]).to_dict()
    assert online["seniority"] == ["senior", "mid"]
    assert [len(e) for e in online["embedding"]] == [32, 32]
    entity_df = pd.DataFrame({"member_id": [1, 1],
                              "event_timestamp": pd.to_datetime(["2025-02-01", "2025-04-01"], utc=True)})
    hist = store.get_historical_features(entity_df=entity_df, features=["member_categorical_v1:seniority"]).to_df()
    assert list(hist["seniority"]) == ["junior", "senior"]  # point in time, through a temporary entity table
    with db.connect(reader) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "star_reader"
        assert db.current_revision(reader) is not None  # `star db up` / `star db env` as a reader: at head, a no-op
        nearest = conn.execute("SELECT * FROM star.nearest(%s, 1, 1, 5)", (FAMILY,)).fetchall()
        with pytest.raises(psycopg.errors.RaiseException, match="no stored map"):  # executed: no permission error
            conn.execute("SELECT star.compat_apply(%s, 2, 1, '[1, 0]'::vector)", (FAMILY,))
    assert [i for i, _ in nearest] == [2]


def _forbidden(online: str) -> list[str]:
    return [
        "INSERT INTO star.members (member_id) VALUES (99)",
        "UPDATE star.embedding_versions SET status = 'retired'",
        f"DELETE FROM star.{FAMILY}_v1",
        "TRUNCATE star.interactions",
        f"INSERT INTO {online} (entity_key, feature_name) VALUES ('\\x00', 'x')",
        f"UPDATE {online} SET value_text = 'x'",
        f"DELETE FROM {online}",
        "DELETE FROM public.feature_views",
        "UPDATE public.projects SET project_proto = NULL",
        "CREATE TABLE star.mine (i int)",
        "CREATE TABLE feast_online.mine (i int)",
        "CREATE TABLE public.mine (i int)",
        "CREATE SCHEMA mine",
        "CREATE INDEX ON star.members (created)",
        "ALTER TABLE star.members ADD COLUMN mine int",
        "DROP TABLE star.members",
        f"DROP TABLE star.{FAMILY}_v1",
        f"DROP TABLE {online}",
        "DROP FUNCTION star.nearest(text, integer, bigint, integer, integer)",
    ]


def test_a_reader_cannot_write_create_or_drop_anything(served):
    writer, reader = served
    with db.connect(writer) as conn:
        online = _online_table(conn)
        before = snapshot(writer), conn.execute(f"SELECT count(*) FROM {online}").fetchone()[0]
    refused = []
    with db.connect(reader, autocommit=True) as conn:
        for statement in _forbidden(online):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            refused.append(statement)
    assert len(refused) == len(_forbidden(online))
    with db.connect(writer) as conn:
        assert (snapshot(writer), conn.execute(f"SELECT count(*) FROM {online}").fetchone()[0]) == before


def test_the_writer_cannot_change_what_the_migrations_own(served):
    writer, _ = served
    with db.connect(writer, autocommit=True) as conn:
        for statement in ("DROP TABLE star.members", "ALTER TABLE star.members ADD COLUMN mine int",
                          "DROP FUNCTION star.nearest(text, integer, bigint, integer, integer)", "CREATE SCHEMA mine"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_the_writer_retires_a_vintage_and_the_reader_still_reads_it(server, tmp_path):
    """Retire as star_writer: drop the table, create the view over the serving vintage, vacuum Feast's table."""
    from star.pipeline import seed_synthetic
    from star.versions.lifecycle import fit_map
    from star.versions.retire import retire

    base, template = server
    target = base.with_database(f"star_test_{uuid.uuid4().hex[:12]}")
    db.ensure_database(target, template=template)
    writer, reader = replace(target, user="star_writer"), replace(target, user="star_reader")
    try:
        seed_synthetic(writer, members=80, jobs=20, seed=3, progress=False)
        for seed in (0, 1):
            encoder = TextEncoder(TextModelConfig(model_dir=tiny_bert(tmp_path / f"b{seed}", seed=seed),
                                                  pooling="mean", precision="fp32"))
            embed_texts(writer, encoder, EmbedConfig(entities=("member",)), progress=False)
        with db.connect(writer) as conn:
            fit_map(conn, FAMILY, 2, 1)
            conn.commit()
        apply_features(writer)
        materialize(writer)
        assert retire(writer, FAMILY, 1)["status"] == "retired"
        with db.connect(reader) as conn:
            rows = conn.execute(f"SELECT member_id, embedding FROM star.{FAMILY}_v1 WHERE is_current").fetchall()
            # its translated copy (created by the writer's retire) is readable: star.nearest runs as the reader
            near = conn.execute("SELECT count(*) FROM star.nearest(%s, 1, %s, 10)", (FAMILY, rows[0][0])).fetchone()
            owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = %s",
                                 (f"{FAMILY}_v1__translated",)).fetchone()
        assert near == (10,) and owner == ("star_writer",)
        online = open_store(reader).get_online_features(features=[f"{FAMILY}_v1:embedding"],
                                                        entity_rows=[{"member_id": rows[0][0]}]).to_dict()
        assert rows and len(online["embedding"][0]) == 32
    finally:
        db.drop_database(target)
