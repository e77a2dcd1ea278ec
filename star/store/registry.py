"""The vintage registry: the one module that reads and writes star.embedding_versions and creates and drops the
vintage tables. Every other module calls these functions (tests/test_architecture.py checks it).

    star.embedding_versions (family, version)   one row per version: entity, dim, status, served_from, feature_view,
                                                model, config (kind, fingerprint, pending marks), metrics, data window
    star.<family>_v<k>                          view_name / table: a vintage's rows (a VIEW once it is retired)
    star.<family>_v<k>__staging                 staging: batches of a running embedding job

Functions take the caller's connection and never commit: the caller's transaction decides what lands together
(the fault tests kill jobs at every step). Values go as parameters, identifiers through psycopg.sql.Identifier.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

from star.common import ID_COLUMN
from star.errors import VersionError

__all__ = ["VersionError", "VersionRow"]

TABLE = "star.embedding_versions"
EMBEDDING_KINDS = ("text_embedding", "graph_embedding")  # versions written by embedding jobs (star/store/embeddings.py)
SOURCE_COLUMN = {"text_embedding": "text_md5", "graph_embedding": "source_md5"}
STATUSES = ("building", "candidate", "published", "deprecated", "retired")  # a vintage's life (docs/versions.md)
SERVABLE = ("published", "deprecated", "retired")  # what consumers read: Feast, SQL (star.nearest), trainsets
SERVED = ("candidate", *SERVABLE)  # building vintages are invisible to Feast; candidates
# are applied (shadow views, for the parity gate of `star versions publish`) but not published


def view_name(family: str, version: int) -> str:
    """The feature view and table name of a version: member_text_embedding, 2 -> member_text_embedding_v2."""
    return f"{family}_v{version}"


def qualified(family: str, version: int, suffix: str = "") -> str:
    """'star.<family>_v<k><suffix>', e.g. for to_regclass."""
    return f"star.{view_name(family, version)}{suffix}"


def table(family: str, version: int, suffix: str = "") -> sql.Identifier:
    """star.<family>_v<k><suffix> as an identifier (suffix: '', '__staging', '__translated', ...)."""
    return sql.Identifier("star", view_name(family, version) + suffix)


@dataclass(frozen=True, kw_only=True)
class VersionRow:
    """One row of star.embedding_versions."""

    family: str
    version: int
    entity: str
    status: str
    kind: str = field(default="text_embedding", metadata={"help": "config.kind: an embedding or feature kind"})
    dim: int | None = field(default=None, metadata={"help": "vector length; None for feature families"})
    model: str | None = None
    config: dict = field(default_factory=dict, metadata={"help": "kind, fingerprint, pending marks"})
    metrics: dict = field(default_factory=dict, metadata={"help": "training, publish and gate reports"})
    data_start: datetime | None = None
    data_end: datetime | None = None
    served_from: int | None = field(default=None, metadata={"help": "the vintage whose rows serve a retired one"})

    @property
    def name(self) -> str:
        return view_name(self.family, self.version)

    @property
    def table(self) -> sql.Identifier:
        return table(self.family, self.version)

    @property
    def staging(self) -> sql.Identifier:
        return table(self.family, self.version, "__staging")

    @property
    def key(self) -> str:
        return ID_COLUMN[self.entity]

    @property
    def source_column(self) -> str:
        """What each row was computed from: the text's md5, or the md5 of (graph model, cutoff)."""
        return SOURCE_COLUMN[self.kind]

    @property
    def fingerprint_hash(self) -> str:
        return self.config.get("fingerprint_hash", "")


ROW = ("SELECT family, version, entity, status, config, dim, model, metrics, data_start, data_end, served_from "
       "FROM star.embedding_versions")


def _row(r) -> VersionRow:
    family, version, entity, status, config, dim, model, metrics, start, end, served_from = r
    return VersionRow(family=family, version=version, entity=entity, status=status,
                      kind=config.get("kind", "text_embedding"), dim=dim, model=model, config=config,
                      metrics=metrics, data_start=start, data_end=end, served_from=served_from)


# ---- reads -------------------------------------------------------------------------------------------------------

def find(conn: psycopg.Connection, family: str, version: int) -> VersionRow | None:
    r = conn.execute(ROW + " WHERE family = %s AND version = %s", (family, version)).fetchone()
    return None if r is None else _row(r)


def versions(conn: psycopg.Connection, family: str) -> list[int]:
    return [v for (v,) in conn.execute(
        "SELECT version FROM star.embedding_versions WHERE family = %s ORDER BY 1", (family,))]


def get(conn: psycopg.Connection, family: str, version: int) -> VersionRow:
    """The row; a VersionError listing the family's versions when there is none."""
    row = find(conn, family, version)
    if row is None:
        raise VersionError(f"{family} version {version} does not exist (versions: {versions(conn, family) or 'none'}); "
                           "run `star text embed` or `star graph embed` to create one")
    return row


def rows(conn: psycopg.Connection, family: str, *, kind: str | None = None) -> list[VersionRow]:
    """The family's versions (of config.kind `kind`, when given), oldest first."""
    return [_row(r) for r in conn.execute(
        ROW + " WHERE family = %s AND (%s::text IS NULL OR config->>'kind' = %s) ORDER BY version",
        (family, kind, kind))]


def by_fingerprint(conn: psycopg.Connection, family: str, fp_hash: str) -> VersionRow | None:
    """The newest version not retired built from this fingerprint."""
    r = conn.execute(ROW + " WHERE family = %s AND config->>'fingerprint_hash' = %s AND status <> 'retired'"
                     " ORDER BY version DESC LIMIT 1", (family, fp_hash)).fetchone()
    return None if r is None else _row(r)


def latest_version(conn: psycopg.Connection, family: str) -> int:
    (latest,) = conn.execute("SELECT coalesce(max(version), 0) FROM star.embedding_versions WHERE family = %s",
                             (family,)).fetchone()
    return latest


def latest_features(conn: psycopg.Connection, family: str) -> tuple[int, list] | None:
    """(version, config.features) of a feature family's newest version."""
    r = conn.execute("SELECT version, config->'features' FROM star.embedding_versions WHERE family = %s "
                     "ORDER BY version DESC LIMIT 1", (family,)).fetchone()
    return None if r is None else (r[0], r[1])


def served_rows(conn: psycopg.Connection, kinds: tuple[str, ...]) -> list[VersionRow]:
    """Every version Feast serves or is about to serve (SERVED, or building with config.ready_as)."""
    return [_row(r) for r in conn.execute(
        ROW + " WHERE config->>'kind' = ANY(%s) AND (status = ANY(%s) OR (status = 'building' AND config ? "
        "'ready_as')) ORDER BY family, version", (list(kinds), list(SERVED)))]


def dims(conn: psycopg.Connection, family: str, version_list: list[int]) -> dict[int, int | None]:
    return dict(conn.execute("SELECT version, dim FROM star.embedding_versions WHERE family = %(family)s AND "
                             "version = ANY(%(v)s)", {"family": family, "v": list(version_list)}).fetchall())


LISTING = """
SELECT v.family, v.version, v.entity, v.dim, v.status, v.served_from, v.feature_view, v.model,
       v.data_start, v.data_end, v.created_at, v.updated_at,
       (SELECT count(*) FROM star.embedding_consumers c WHERE c.family = v.family AND c.version = v.version),
       -- work a killed job left; the next lifecycle command or embedding job on the family finishes it
       CASE WHEN v.config ? 'retire_pending' THEN 'retire (served from v' || (v.config->'retire_pending'->>'source')
                                                   || ' in Feast, from its own rows in SQL)'
            WHEN v.config ? 'repoint_pending' THEN 'repoint to v' || (v.config->'repoint_pending'->>'source')
            WHEN v.config ? 'ready_as' THEN 'feast apply + materialize, then ' || (v.config->>'ready_as')
            WHEN (v.config->>'online_pending')::boolean THEN 'materialize'
       END
FROM star.embedding_versions v
WHERE v.config->>'kind' = ANY(%(kinds)s) AND (%(family)s::text IS NULL OR v.family = %(family)s)
ORDER BY v.family, v.version
"""
LISTING_COLUMNS = ("family", "version", "entity", "dim", "status", "served_from", "feature_view", "model",
                   "data_start", "data_end", "created_at", "updated_at", "consumers", "pending")


def listing(conn: psycopg.Connection, family: str | None = None) -> list[dict]:
    """Every embedding vintage (or one family's) as `star versions list` shows it, oldest first."""
    return [dict(zip(LISTING_COLUMNS, r)) for r in conn.execute(LISTING, {"kinds": list(EMBEDDING_KINDS),
                                                                          "family": family})]


HISTORY = """
SELECT family, version, entity, dim, status, served_from, feature_view, model, config, metrics,
       data_start, data_end, created_at, updated_at
FROM star.embedding_versions
WHERE config->>'kind' = ANY(%(kinds)s)
ORDER BY created_at, family, version
"""
HISTORY_COLUMNS = ("family", "version", "entity", "dim", "status", "served_from", "feature_view", "model", "config",
                   "metrics", "data_start", "data_end", "created_at", "updated_at")


def history(conn: psycopg.Connection) -> list[dict]:
    """Every embedding vintage in creation order, with config and metrics (star report)."""
    return [dict(zip(HISTORY_COLUMNS, r)) for r in conn.execute(HISTORY, {"kinds": list(EMBEDDING_KINDS)})]


TEXT_VINTAGES = """
SELECT feature_view, family, entity, version, dim, status, config->>'fingerprint_hash',
       to_regclass('star.' || feature_view)
FROM star.embedding_versions WHERE config->>'kind' = 'text_embedding' ORDER BY family, version
"""


def text_vintages(conn: psycopg.Connection) -> list[tuple]:
    """(name, family, entity, version, dim, status, fingerprint_hash, regclass or None) of every text vintage."""
    return conn.execute(TEXT_VINTAGES).fetchall()


def pending_views(conn: psycopg.Connection, families: list[str]) -> list[str]:
    """Views of `families` marked online_pending and served (or waiting to be), by family order then version."""
    return [r[0] for r in conn.execute(
        "SELECT feature_view FROM star.embedding_versions WHERE family = ANY(%(f)s) AND "
        "(status = ANY(%(s)s) OR (status = 'building' AND config ? 'ready_as')) AND "
        "(config->>'online_pending')::boolean ORDER BY array_position(%(f)s::text[], family), version",
        {"f": list(families), "s": list(SERVED)})]


def families_of(conn: psycopg.Connection, views: list[str]) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT family FROM star.embedding_versions WHERE feature_view = ANY(%s) AND config->>'kind' = "
        "ANY(%s) ORDER BY 1", (list(views), list(EMBEDDING_KINDS)))]


def served_from_here(conn: psycopg.Connection, family: str, source: int) -> list[tuple[int, int]]:
    """(version, dim) of the retired vintages served from v`source`."""
    return conn.execute("SELECT version, dim FROM star.embedding_versions WHERE family = %s AND served_from = %s AND "
                        "status = 'retired' ORDER BY version", (family, source)).fetchall()


def retired_dependents(conn: psycopg.Connection, family: str, source: int) -> list[tuple[int, list | None]]:
    """(version, config.served_through) of the retired vintages served from v`source`."""
    return conn.execute("SELECT version, config->'served_through' FROM star.embedding_versions WHERE family = %s AND "
                        "status = 'retired' AND served_from = %s ORDER BY version", (family, source)).fetchall()


def repoint_pending(conn: psycopg.Connection, family: str, source: int) -> list[int]:
    return [r[0] for r in conn.execute(
        "SELECT version FROM star.embedding_versions WHERE family = %s AND served_from = %s AND "
        "config ? 'repoint_pending' ORDER BY version", (family, source))]


def retire_plan(conn: psycopg.Connection, family: str, version: int) -> dict | None:
    (plan,) = conn.execute("SELECT config->'retire_pending' FROM star.embedding_versions WHERE family = %s AND "
                           "version = %s", (family, version)).fetchone()
    return plan


def retires_pending(conn: psycopg.Connection, families: list[str]) -> list[tuple[str, int]]:
    return conn.execute("SELECT family, version FROM star.embedding_versions WHERE family = ANY(%s) AND "
                        "config ? 'retire_pending' ORDER BY family, version", (list(families),)).fetchall()


# ---- writes (in the caller's transaction) ------------------------------------------------------------------------

def lock(conn: psycopg.Connection) -> None:
    """One writer of new versions / retire plans at a time (readers go on)."""
    conn.execute("LOCK TABLE star.embedding_versions IN SHARE ROW EXCLUSIVE MODE")


def insert(conn: psycopg.Connection, *, family: str, version: int, entity: str, status: str, config: dict,
           dim: int | None = None, model: str | None = None) -> None:
    conn.execute(
        "INSERT INTO star.embedding_versions (family, version, entity, dim, status, feature_view, model, config) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (family, version, entity, dim, status, view_name(family, version), model, json.dumps(config, default=str)))


def set_status(conn: psycopg.Connection, family: str, version: int, status: str, *, metrics: dict | None = None
               ) -> None:
    """A new status (and metrics merged in, when given)."""
    if metrics is None:
        conn.execute("UPDATE star.embedding_versions SET status = %s, updated_at = now() WHERE family = %s "
                     "AND version = %s", (status, family, version))
    else:
        conn.execute("UPDATE star.embedding_versions SET status = %s, metrics = metrics || %s, updated_at = now() "
                     "WHERE family = %s AND version = %s",
                     (status, json.dumps(metrics, default=str), family, version))


def record_publish(conn: psycopg.Connection, family: str, version: int, *, status: str, data_start, data_end,
                   metrics: dict, config: dict) -> None:
    """A publish's data window, metrics and config marks (merged in), and its status."""
    conn.execute(
        "UPDATE star.embedding_versions SET status = %s, data_start = %s, data_end = %s, metrics = metrics || %s, "
        "config = config || %s, updated_at = now() WHERE family = %s AND version = %s",
        (status, data_start, data_end, json.dumps(metrics, default=str), json.dumps(config), family, version))


MARK_ONLINE = """
UPDATE star.embedding_versions v
SET status = coalesce(v.config->>'ready_as', v.status), config = v.config - 'online_pending' - 'ready_as',
    updated_at = CASE WHEN v.config ? 'ready_as' THEN now() ELSE v.updated_at END
FROM star.embedding_versions old  -- the row as it was: RETURNING tells which vintages were waiting to publish
WHERE old.family = v.family AND old.version = v.version
  AND v.config ? 'online_pending' AND v.feature_view = ANY(%(views)s::text[])
  AND (v.data_start IS NULL OR v.data_start >= %(start)s) AND (v.data_end IS NULL OR v.data_end <= %(end)s)
RETURNING v.feature_view, old.config ? 'ready_as'
"""


def mark_online(conn: psycopg.Connection, views: list[str], *, start, end) -> list[tuple[str, bool]]:
    """Clear online_pending (and apply ready_as) of the views whose rows [start, end] covered: (view, flipped)."""
    return conn.execute(MARK_ONLINE, {"views": list(views), "start": start, "end": end}).fetchall()


def set_config_key(conn: psycopg.Connection, family: str, version: int, key: str, value: dict) -> None:
    conn.execute("UPDATE star.embedding_versions SET config = config || jsonb_build_object(%s::text, %s::jsonb), "
                 "updated_at = now() WHERE family = %s AND version = %s",
                 (key, json.dumps(value), family, version))


def mark_retired(conn: psycopg.Connection, family: str, version: int, *, source: int, through: list) -> None:
    conn.execute("UPDATE star.embedding_versions SET status = 'retired', served_from = %s, updated_at = now(), "
                 "config = (config - 'retire_pending') || jsonb_build_object('served_through', %s::jsonb) "
                 "WHERE family = %s AND version = %s", (source, json.dumps(through), family, version))


def mark_repointed(conn: psycopg.Connection, family: str, version: int, *, source: int) -> None:
    conn.execute("UPDATE star.embedding_versions SET served_from = %s, updated_at = now(), "
                 "config = (config - 'repoint_pending') || jsonb_build_object('served_through', "
                 "config->'repoint_pending'->'through') WHERE family = %s AND version = %s", (source, family, version))


# ---- vintage tables ------------------------------------------------------------------------------------------------

def create_table(conn: psycopg.Connection, v: VersionRow) -> None:
    conn.execute(sql.SQL(
        "CREATE TABLE {t} ({key} bigint NOT NULL, event_timestamp timestamptz NOT NULL, "
        "created timestamptz NOT NULL DEFAULT now(), {src} text NOT NULL, embedding vector({dim}) NOT NULL, "
        "is_current boolean NOT NULL DEFAULT false, PRIMARY KEY ({key}, event_timestamp))").format(
        t=v.table, key=sql.Identifier(v.key), src=sql.Identifier(v.source_column), dim=sql.Literal(v.dim)))


def ensure_staging(conn: psycopg.Connection, v: VersionRow) -> None:
    conn.execute(sql.SQL("CREATE UNLOGGED TABLE IF NOT EXISTS {s} (LIKE {t} INCLUDING DEFAULTS)").format(
        s=v.staging, t=v.table))
    conn.execute(sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {i} ON {s} ({key}, event_timestamp)").format(
        i=sql.Identifier(f"{v.name}__staging_key"), s=v.staging, key=sql.Identifier(v.key)))


def drop_staging(conn: psycopg.Connection, family: str, version: int, *, if_exists: bool = True) -> None:
    conn.execute(sql.SQL("DROP TABLE {e}{s}").format(e=sql.SQL("IF EXISTS " if if_exists else ""),
                                                     s=table(family, version, "__staging")))


def drop_view(conn: psycopg.Connection, family: str, version: int) -> None:
    conn.execute(sql.SQL("DROP VIEW IF EXISTS {t}").format(t=table(family, version)))


def drop_vintage(conn: psycopg.Connection, family: str, version: int) -> None:
    """Its table (with its HNSW index) or, once retired, its view."""
    kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)",
                        (qualified(family, version),)).fetchone()
    conn.execute(sql.SQL("DROP {what} IF EXISTS {t}").format(
        what=sql.SQL("VIEW" if kind and kind[0] == "v" else "TABLE"), t=table(family, version)))


def exists(conn: psycopg.Connection, family: str, version: int, suffix: str = "") -> bool:
    return conn.execute("SELECT to_regclass(%s)", (qualified(family, version, suffix),)).fetchone()[0] is not None


RETIRED_VIEW = """
CREATE VIEW {view} AS
SELECT {key}, event_timestamp, created, {src},
       star.compat_apply({family}, {source}, {version}, embedding)::vector({dim}) AS embedding, is_current
FROM {source_table}
"""


def create_retired_view(conn: psycopg.Connection, *, family: str, version: int, source: int, entity: str,
                        source_column: str, dim: int) -> None:
    """star.<family>_v<version> as v`source`'s rows through the stored map source -> version."""
    conn.execute(sql.SQL(RETIRED_VIEW).format(
        view=table(family, version), key=sql.Identifier(ID_COLUMN[entity]), src=sql.Identifier(source_column),
        dim=sql.Literal(dim), source_table=table(family, source), family=sql.Literal(family),
        source=sql.Literal(source), version=sql.Literal(version)))  # DDL takes no parameters
