"""A retired vintage's current vectors, translated, in a table of their own: star.nearest on it at native speed.

    star.<family>_v<j>               a VIEW over the serving vintage k through the map (history, psql, Feast)
    star.<family>_v<j>__translated   (<id> PRIMARY KEY, embedding vector(d_j)): star.compat_apply(family, k, j, e) of
                                     every current row of k, + HNSW (cosine) with k's index parameters; what
                                     star.nearest searches (migration 0006)

    retire (star/versions/retire.py)   build: <...>__translated__staging, computed inside PostgreSQL, one transaction
                                       per vintage (rerun: built again); flip: swap_in, in the flip's transaction
    publish (star/store/embeddings.py) refresh: the changed entities of every vintage served from the one published,
                                       in the publish's transaction

Readers see a translated table whole and in step with the serving vintage's rows: it changes only in the
transactions that change those rows or the map that serves it. Cost: d_j floats per current entity (+ the index).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from star.common import ID_COLUMN
from star.errors import StarError
from star.store import registry

SUFFIX = "__translated"


def name(family: str, version: int) -> str:
    return registry.view_name(family, version) + SUFFIX


def _ident(table: str) -> sql.Identifier:
    return sql.Identifier("star", table)


BUILD = """
CREATE TABLE {staging} AS
SELECT {key}, star.compat_apply({family}, {source}, {version}, embedding)::vector({dim}) AS embedding
FROM {source_table} WHERE is_current
"""


def _index_options(conn: psycopg.Connection, family: str, source: int) -> sql.Composable:
    """The serving vintage's HNSW parameters (m, ef_construction), so the copy searches like a native vintage."""
    row = conn.execute("SELECT reloptions FROM pg_class WHERE oid = to_regclass(%s)",
                       (registry.qualified(family, source, "_hnsw"),)).fetchone()
    opts = dict(o.split("=", 1) for o in ((row and row[0]) or []))
    given = [sql.SQL("{} = {}").format(sql.SQL(k), sql.Literal(int(opts[k]))) for k in ("m", "ef_construction")
             if k in opts]
    return sql.SQL(" WITH ({})").format(sql.SQL(", ").join(given)) if given else sql.SQL("")


def build_staging(conn: psycopg.Connection, *, family: str, version: int, source: int, entity: str,
                  dim: int) -> int:
    """(Re)build star.<family>_v<version>__translated__staging from v`source`'s current rows through the stored
    map source -> version (its rows must be in star.embedding_compat_rows). Returns its row count."""
    staging = name(family, version) + "__staging"
    key = sql.Identifier(ID_COLUMN[entity])
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_ident(staging)))
    conn.execute(sql.SQL(BUILD).format(
        staging=_ident(staging), key=key, family=sql.Literal(family), source=sql.Literal(int(source)),
        version=sql.Literal(int(version)), dim=sql.Literal(int(dim)), source_table=registry.table(family, source)))
    conn.execute(sql.SQL("ALTER TABLE {t} ALTER COLUMN embedding SET NOT NULL, ADD CONSTRAINT {pk} PRIMARY KEY ({key})"
                         ).format(t=_ident(staging), pk=sql.Identifier(f"{staging}_pkey"), key=key))
    options = _index_options(conn, family, source)
    conn.execute(sql.SQL("CREATE INDEX {i} ON {t} USING hnsw (embedding vector_cosine_ops){w}").format(
        i=sql.Identifier(f"{staging}_hnsw"), t=_ident(staging), w=options))
    (n,) = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_ident(staging))).fetchone()
    conn.execute(sql.SQL("ANALYZE {}").format(_ident(staging)))
    return n


def swap_in(conn: psycopg.Connection, family: str, version: int) -> None:
    """The staged copy becomes the live one (replacing the previous): renames only, in the caller's transaction."""
    live = name(family, version)
    staging = live + "__staging"
    if conn.execute("SELECT to_regclass(%s)", (f"star.{staging}",)).fetchone()[0] is None:
        raise StarError(f"star.{staging} is missing: the retire builds it before its flip; run the same "
                        "`star versions retire` again")
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_ident(live)))
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(_ident(staging), sql.Identifier(live)))
    for part in ("pkey", "hnsw"):
        conn.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
            _ident(f"{staging}_{part}"), sql.Identifier(f"{live}_{part}")))


def drop(conn: psycopg.Connection, family: str, version: int) -> None:
    for table in (name(family, version) + "__staging", name(family, version)):
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_ident(table)))


REFRESH = """
INSERT INTO {live} AS t ({key}, embedding)
SELECT k.{key}, star.compat_apply({family}, {source}, {version}, k.embedding)::vector({dim})
FROM {source_table} k
WHERE k.is_current AND k.{key} IN (SELECT {key} FROM {changed})
ON CONFLICT ({key}) DO UPDATE SET embedding = EXCLUDED.embedding
WHERE t.embedding IS DISTINCT FROM EXCLUDED.embedding
"""

GONE = """
DELETE FROM {live} t
WHERE t.{key} IN (SELECT {key} FROM {changed})
  AND NOT EXISTS (SELECT 1 FROM {source_table} k WHERE k.{key} = t.{key} AND k.is_current)
"""


def refresh(conn: psycopg.Connection, *, family: str, source: int, entity: str, changed: sql.Composable) -> list[int]:
    """Bring the translated tables of every retired vintage served from v`source` in step with its rows, for the
    entities in table `changed` (the batch just moved in): call it in the transaction that moved them.
    Returns the vintages refreshed."""
    done = []
    for version, dim in registry.served_from_here(conn, family, source):
        live = name(family, version)
        if conn.execute("SELECT to_regclass(%s)", (f"star.{live}",)).fetchone()[0] is None:
            continue  # none built (a database retired before migration 0006 backfilled it): star.nearest maps
        args = dict(live=_ident(live), key=sql.Identifier(ID_COLUMN[entity]), family=sql.Literal(family),
                    source=sql.Literal(int(source)), version=sql.Literal(int(version)), dim=sql.Literal(int(dim)),
                    source_table=registry.table(family, source), changed=changed)
        conn.execute(sql.SQL(GONE).format(**args))
        conn.execute(sql.SQL(REFRESH).format(**args))
        done.append(version)
    return done
