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
    assert db.current_revision(empty_target) == "0005"
    db.downgrade(empty_target, "0001")
    assert db.current_revision(empty_target) == "0001"
    db.migrate(empty_target)
    assert _schema(empty_target) == first
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


def test_star_db_up_on_an_external_url_only_migrates_and_is_idempotent(empty_target):
    """STAR_DATABASE_URL mode: `star db up` twice migrates once; `star db env` points Feast at the same database."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    star = str(Path(sys.executable).with_name("star"))
    url = empty_target.sqlalchemy_url()
    env = {**os.environ, "STAR_DATABASE_URL": url}
    outputs = []
    for _ in range(2):
        done = subprocess.run([star, "db", "up"], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert [o["revision"] for o in outputs] == ["0005", "0005"]
    assert all(o["embedded"] is False for o in outputs)
    assert db.current_revision(empty_target) == "0005"
    exported = subprocess.run([star, "db", "env"], env=env, capture_output=True, text=True, timeout=120).stdout
    assert f"export STAR_PG_DATABASE={empty_target.dbname}" in exported
    assert "export STAR_REGISTRY_URL=" in exported


def test_bad_database_url_is_a_clear_error():
    import os
    import subprocess
    import sys
    from pathlib import Path

    star = str(Path(sys.executable).with_name("star"))
    env = {**os.environ, "STAR_DATABASE_URL": "mysql://root@localhost/star"}
    done = subprocess.run([star, "db", "up"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "STAR_DATABASE_URL='mysql://root@localhost/star' is not a PostgreSQL URL" in done.stderr
