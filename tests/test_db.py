"""The database foundation: embedded server, migrations up, down and up again."""

from __future__ import annotations

from star import db

TABLES = {"members", "jobs", "member_history", "job_history", "text_snapshots", "attribute_nodes",
          "attribute_edges", "interactions", "id_features", "synthetic_truth", "embedding_versions",
          "embedding_compat"}


def _schema(target):
    with db.connect(target) as conn:
        return conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'star' ORDER BY 1, 2").fetchall()


def test_migrations_create_pgvector_and_tables(empty_target):
    db.migrate(empty_target)
    with db.connect(empty_target) as conn:
        assert conn.execute("SELECT extname FROM pg_extension WHERE extname = 'vector'").fetchone()
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'star'")}
        assert TABLES <= tables
        # pgvector really works here: a distance query
        assert conn.execute("SELECT '[1,0]'::vector <=> '[0,1]'::vector").fetchone()[0] == 1.0


def test_upgrade_twice_is_a_noop_and_downgrade_round_trips(empty_target):
    db.migrate(empty_target)
    first = _schema(empty_target)
    db.migrate(empty_target)
    assert _schema(empty_target) == first
    assert db.current_revision(empty_target) == "0001"
    db.downgrade(empty_target, "base")
    assert _schema(empty_target) == []
    assert db.current_revision(empty_target) is None
    db.migrate(empty_target)
    assert _schema(empty_target) == first


def test_registry_keys(target):
    with db.connect(target) as conn:
        conn.execute("INSERT INTO star.embedding_versions (family, version, entity, feature_view) "
                     "VALUES ('f', 1, 'member', 'f_v1'), ('f', 2, 'member', 'f_v2')")
        conn.execute("INSERT INTO star.embedding_compat (family, from_version, to_version, matrix) "
                     "VALUES ('f', 2, 1, '{{1,0},{0,1}}')")
        import psycopg
        import pytest

        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO star.embedding_versions (family, version, entity, feature_view) "
                         "VALUES ('f', 1, 'member', 'other')")
