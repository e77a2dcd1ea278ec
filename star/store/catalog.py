"""The feature catalog: which feature views the ingested data supports, and their versions.

    star.member_history / job_history keys     -> <entity>_categorical   (one String per column)
    star.id_features relations                 -> <entity>_ids           (<relation>_ids Array(String), <relation>_latest)
    star.text_snapshots                        -> <entity>_text          (text, text_md5)

Every family's feature list is versioned in the vintage registry (star/store/registry.py): `sync_versions` adds
version k+1 when the ingested columns change, so `feast apply` (feature_repo/feature_views.py reads
`published_views`) stays in step with the data and a consumer of <family>_v<k> keeps its columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from star.common import ENTITIES, ID_COLUMN
from star.store import registry
from star.store.registry import EMBEDDING_KINDS, SERVABLE, SERVED

__all__ = ["EMBEDDING_KINDS", "FAMILY_KINDS", "SERVABLE", "SERVED", "ViewSpec", "latest_views", "published_views",
           "source_query", "sync_versions"]

FAMILY_KINDS = ("categorical", "ids", "text")


@dataclass(frozen=True, kw_only=True)
class ViewSpec:
    """One versioned feature view, free of Feast types (star/store/feast_repo.py turns it into Feast objects)."""

    family: str
    version: int
    entity: str
    kind: str
    features: list[tuple[str, str]] = field(metadata={"help": "(name, 'string' | 'string_list' | 'float_list')"})
    query: str = field(metadata={"help": "the source query: join key, event_timestamp, created, features"})
    dim: int | None = field(default=None, metadata={"help": "vector length of an embedding view"})
    status: str = field(default="published", metadata={"help": "its registry status (star/store/registry.py)"})
    tags: dict[str, str] = field(default_factory=dict, metadata={"help": "lineage for Feast (star/store/lineage.py)"})
    description: str = field(default="", metadata={"help": "one line naming model and data window"})

    @property
    def name(self) -> str:
        return registry.view_name(self.family, self.version)


def _current_features(conn: psycopg.Connection, entity: str, kind: str) -> list[tuple[str, str]]:
    if kind == "categorical":
        rows = conn.execute(sql.SQL("SELECT DISTINCT jsonb_object_keys(attrs) FROM {} ORDER BY 1").format(
            sql.Identifier("star", f"{entity}_history"))).fetchall()
        return [(r[0], "string") for r in rows]
    if kind == "ids":
        rows = conn.execute("SELECT DISTINCT relation FROM star.attribute_edges WHERE entity = %s ORDER BY 1",
                            (entity,)).fetchall()
        return [f for (r,) in rows for f in ((f"{r}_ids", "string_list"), (f"{r}_latest", "string"))]
    has_text = conn.execute("SELECT 1 FROM star.text_snapshots WHERE entity = %s LIMIT 1", (entity,)).fetchone()
    return [("text", "string"), ("text_md5", "string")] if has_text else []


def _string(query: sql.Composable) -> str:
    """The plain SQL text Feast's PostgreSQLSource(query=...) stores: identifiers quoted, values inlined as literals
    (psycopg quotes them without a connection)."""
    return query.as_string(None)


def _table(qualified: str) -> sql.Identifier:
    """'star.member_text_embedding_v1' (a version's config['table']) -> "star"."member_text_embedding_v1"."""
    return sql.Identifier(*qualified.split("."))


def _id_feature(name: str) -> sql.Composable:
    """<relation>_ids: every id linked so far; <relation>_latest: the newest one."""
    relation, part = name.rsplit("_", 1)
    if part == "ids":
        expr = sql.SQL("ARRAY(SELECT jsonb_array_elements_text(ids->{}->'all'))").format(sql.Literal(relation))
    else:
        expr = sql.SQL("ids->{}->>'latest'").format(sql.Literal(relation))
    return sql.SQL("{} AS {}").format(expr, sql.Identifier(name))


def source_query(entity: str, kind: str, features: list[tuple[str, str]], table: str | None = None) -> str:
    """SQL over the star tables, composed with psycopg.sql (names as identifiers, values as literals)."""
    key = sql.Identifier(ID_COLUMN[entity])
    if kind in EMBEDDING_KINDS:
        # Feast cannot read a `vector` column (FIELD-NOTES): hand it real[]
        return _string(sql.SQL("SELECT {}, event_timestamp, created, embedding::real[] AS embedding FROM {}").format(
            key, _table(table)))
    if kind == "categorical":
        cols = sql.SQL(", ").join(sql.SQL("attrs->>{} AS {}").format(sql.Literal(name), sql.Identifier(name))
                                  for name, _ in features)
        return _string(sql.SQL("SELECT {}, valid_from AS event_timestamp, created, {} FROM {}").format(
            key, cols, sql.Identifier("star", f"{entity}_history")))
    if kind == "ids":
        cols = sql.SQL(", ").join(_id_feature(name) for name, _ in features)
        return _string(sql.SQL("SELECT entity_id AS {}, event_timestamp, created, {} FROM star.id_features "
                               "WHERE entity = {}").format(key, cols, sql.Literal(entity)))
    return _string(sql.SQL("SELECT entity_id AS {}, valid_from AS event_timestamp, created, text, text_md5 "
                           "FROM star.text_snapshots WHERE entity = {}").format(key, sql.Literal(entity)))


def sync_versions(conn: psycopg.Connection) -> list[str]:
    """Register a new version for every family whose ingested features changed; return the new view names."""
    created = []
    for entity in ENTITIES:
        for kind in FAMILY_KINDS:
            family = f"{entity}_{kind}"
            features = _current_features(conn, entity, kind)
            if not features:
                continue
            latest = registry.latest_features(conn, family)
            if latest and [tuple(f) for f in latest[1]] == features:
                continue
            version = latest[0] + 1 if latest else 1
            registry.insert(conn, family=family, version=version, entity=entity, status="published",
                            config={"kind": kind, "features": features})
            created.append(registry.view_name(family, version))
    return created


def retired_query(entity: str, family: str, version: int, served_from: int) -> str:
    """A retired vintage's source: the serving vintage's rows mapped into its space inside PostgreSQL."""
    return _string(sql.SQL("SELECT {}, event_timestamp, created, star.compat_apply({}, {}, {}, embedding) AS embedding "
                           "FROM {}").format(
        sql.Identifier(ID_COLUMN[entity]), sql.Literal(family), sql.Literal(int(served_from)),
        sql.Literal(int(version)), registry.table(family, int(served_from))))


def published_views(conn: psycopg.Connection) -> list[ViewSpec]:
    """Every view version Feast serves or is about to serve, oldest first: features and embeddings that are
    published, deprecated, candidates (shadow views for the gate), retired (through a compatibility map), and new
    vintages whose rows are in place but not yet materialized (status 'building' with config.ready_as: applied
    and materialized before they are published). A vintage whose retire is under way is already served through
    its map (config.retire_pending / repoint_pending). Other building versions are invisible."""
    from star.store.lineage import description, tags

    specs = []
    for row in registry.served_rows(conn, FAMILY_KINDS + EMBEDDING_KINDS):
        config, kind = row.config, row.config["kind"]
        features = [("embedding", "float_list")] if kind in EMBEDDING_KINDS else [tuple(f) for f in config["features"]]
        pending = config.get("retire_pending") or config.get("repoint_pending")
        source = pending["source"] if pending else row.served_from
        query = retired_query(row.entity, row.family, row.version, source) if source is not None else \
            source_query(row.entity, kind, features, config.get("table"))
        specs.append(ViewSpec(family=row.family, version=row.version, entity=row.entity, kind=kind,
                              features=features, dim=row.dim, query=query, status=row.status,
                              tags=tags(row, source), description=description(row, source)))
    return specs


def latest_views(conn: psycopg.Connection) -> dict[str, ViewSpec]:
    """family -> its newest view that consumers may read (published, deprecated or retired; not a candidate or a
    vintage still being published)."""
    return {spec.family: spec for spec in published_views(conn) if spec.status in SERVABLE}
