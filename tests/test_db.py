"""The database foundation: embedded server, migrations up, down and up again."""

from __future__ import annotations

from dataclasses import replace

from star import db

TABLES = {"members", "jobs", "member_history", "job_history", "text_snapshots", "attribute_nodes",
          "attribute_edges", "interactions", "id_features", "synthetic_truth", "embedding_versions",
          "embedding_compat"}


def _head() -> str:
    """The newest migration (so these tests do not name it)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(db.alembic_config(None)).get_current_head()


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
    assert db.current_revision(empty_target) == _head()
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
    assert [o["revision"] for o in outputs] == [_head(), _head()]
    assert all(o["embedded"] is False for o in outputs)
    assert db.current_revision(empty_target) == _head()
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


ROLES = ("star_owner", "star_writer", "star_reader")
DEPENDENCIES = ("SELECT count(*) FROM pg_shdepend WHERE dbid = (SELECT oid FROM pg_database WHERE datname = "
                "current_database()) AND refobjid IN (SELECT oid FROM pg_roles WHERE rolname = ANY(%s))")


def test_roles_migration_adopts_older_objects_and_downgrades_to_nothing_in_this_database(empty_target):
    """0004 on a database the superuser used before: what jobs and Feast made goes to star_writer, readable by
    star_reader; its downgrade leaves nothing here that depends on the (cluster-wide, kept) roles."""
    db.migrate(empty_target, "0003")
    with db.connect(empty_target) as conn:  # as a superuser's embedding job and `feast apply` left them
        conn.execute("CREATE TABLE star.member_text_embedding_v1 (member_id bigint)")
        conn.execute("CREATE SCHEMA feast_online")
        conn.execute("CREATE TABLE feast_online.star_member_text_embedding_v1 (entity_key bytea)")
        conn.execute("CREATE TABLE public.feature_views (feature_view_name text)")
        conn.commit()
    db.migrate(empty_target)
    with db.connect(empty_target) as conn:
        owners = dict(conn.execute("SELECT schemaname || '.' || tablename, tableowner FROM pg_tables WHERE "
                                   "tablename IN ('member_text_embedding_v1', 'star_member_text_embedding_v1', "
                                   "'feature_views', 'members')").fetchall())
        readable = conn.execute("SELECT bool_and(has_table_privilege('star_reader', t, 'SELECT')) "
                                "FROM unnest(%s::text[]) t", (list(owners),)).fetchone()[0]
        logins = conn.execute("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1",
                              (list(ROLES),)).fetchall()
    assert owners == {"star.member_text_embedding_v1": "star_writer", "star.members": "star_owner",
                      "feast_online.star_member_text_embedding_v1": "star_writer",
                      "public.feature_views": "star_writer"}
    assert readable and logins == [(r, True) for r in sorted(ROLES)]
    _owner_runs_a_later_migration(replace(empty_target, user="star_owner"))
    db.downgrade(empty_target, "0003")
    with db.connect(empty_target) as conn:
        assert conn.execute(DEPENDENCIES, (list(ROLES),)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", (list(ROLES),)).fetchone()[0] == 3
        assert not conn.execute("SELECT has_table_privilege('star_reader', 'star.members', 'SELECT')").fetchone()[0]
    db.migrate(empty_target)
    with db.connect(empty_target) as conn:
        assert conn.execute("SELECT has_table_privilege('star_reader', 'star.members', 'SELECT')").fetchone()[0]


def _owner_runs_a_later_migration(owner):
    """What 0005 will do as star_owner: replace star.nearest and record its revision; the grants stay."""
    nearest = "star.nearest(text, integer, bigint, integer, integer)"
    db.migrate(owner)  # at head: reads alembic_version
    with db.connect(owner) as conn:
        conn.execute(conn.execute("SELECT pg_get_functiondef(%s::regprocedure)", (nearest,)).fetchone()[0])
        conn.execute("UPDATE public.alembic_version SET version_num = version_num")
        assert conn.execute("SELECT has_function_privilege('star_reader', %s, 'EXECUTE')", (nearest,)).fetchone()[0]
        conn.commit()
