"""Embedding versions in PostgreSQL: one table per version, staged writes, atomic publication.

    registry row (family, version)   star/store/registry.py: status building -> published, lineage in config / metrics
    star.<family>_v<k>           (<id>, event_timestamp, created, <source column>, embedding vector(d), is_current)
                                 source column: text_md5 for text embeddings (the text embedded), source_md5 for
                                 graph embeddings (md5 of model fingerprint and graph cutoff)
                                 + HNSW (cosine) over the current snapshot of each entity
    star.<family>_v<k>__staging  UNLOGGED; batches land here and are committed one by one, so a killed run
                                 keeps its work; `publish` moves them into the version table and builds the
                                 index (first time), in one transaction, marking the version online_pending
                                 the same transaction refreshes the changed entities of retired vintages served
                                 from this one (star.<family>_v<j>__translated: star/store/translated.py)
    serving: feast apply + materialize -> mark_online: a new version becomes 'published' (or 'candidate') only
              now, in one UPDATE, so SQL and Feast consumers see it at once, whole and with its rows.

Consumers (Feast views, SQL) only see published versions and whole runs.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from star.store import registry, translated
from star.store.registry import SOURCE_COLUMN, VersionError, VersionRow

__all__ = ["SOURCE_COLUMN", "VersionRow", "ensure_staging", "find_or_create", "fingerprint_hash", "mark_online",
           "online_pending", "pending", "publish", "stage"]


def fingerprint_hash(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]


def find_or_create(conn: psycopg.Connection, *, family: str, entity: str, dim: int, kind: str, fingerprint: dict,
                   model: str) -> tuple[VersionRow, bool]:
    """The version built from this exact fingerprint (to continue it), or a new one in status 'building'."""
    fp_hash = fingerprint_hash(fingerprint)
    registry.lock(conn)
    found = registry.by_fingerprint(conn, family, fp_hash)
    if found is not None:
        if found.dim != dim:
            raise VersionError(
                f"{found.name} holds {found.dim}-d embeddings but the model now gives {dim}-d; a model change must "
                "change its fingerprint: check the model directory, or retire the version")
        return found, False
    latest = registry.latest_version(conn, family)
    if kind not in SOURCE_COLUMN:
        raise VersionError(f"kind={kind!r}; embedding kinds are {sorted(SOURCE_COLUMN)}")
    version = latest + 1
    config = {"kind": kind, "fingerprint_hash": fp_hash, "fingerprint": fingerprint,
              "table": registry.qualified(family, version)}
    registry.insert(conn, family=family, version=version, entity=entity, dim=dim, status="building", model=model,
                    config=config)
    v = VersionRow(family=family, version=version, entity=entity, dim=dim, status="building", kind=kind, model=model,
                   config=json.loads(json.dumps(config, default=str)))
    registry.create_table(conn, v)
    return v, True


def ensure_staging(conn: psycopg.Connection, v: VersionRow) -> None:
    registry.ensure_staging(conn, v)


PENDING = """
SELECT s.entity_id, s.valid_from, s.text_md5, s.text
FROM star.text_snapshots s
LEFT JOIN {t} v ON v.{key} = s.entity_id AND v.event_timestamp = s.valid_from
LEFT JOIN {s} g ON g.{key} = s.entity_id AND g.event_timestamp = s.valid_from
WHERE s.entity = %(entity)s
  AND v.text_md5 IS DISTINCT FROM s.text_md5
  AND g.text_md5 IS DISTINCT FROM s.text_md5
ORDER BY s.entity_id, s.valid_from
"""


def pending(conn: psycopg.Connection, v: VersionRow) -> tuple[pd.DataFrame, int]:
    """Snapshots whose text is new or changed since this version embedded them, and the count of all snapshots."""
    rows = conn.execute(sql.SQL(PENDING).format(t=v.table, s=v.staging, key=sql.Identifier(v.key)),
                        {"entity": v.entity}).fetchall()
    (total,) = conn.execute("SELECT count(*) FROM star.text_snapshots WHERE entity = %s", (v.entity,)).fetchone()
    return pd.DataFrame(rows, columns=["entity_id", "valid_from", "text_md5", "text"]), total


def stage(conn: psycopg.Connection, v: VersionRow, batch: pd.DataFrame, embeddings: np.ndarray) -> None:
    """Write one batch into staging (binary COPY, pgvector) and commit it.

    batch: entity_id, valid_from (the row's event_timestamp) and the version's source column, one row per vector."""
    if embeddings.shape[1] != v.dim:
        raise VersionError(f"{v.name} is {v.dim}-d but the batch is {embeddings.shape[1]}-d")
    register_vector(conn)
    with conn.transaction():
        conn.execute(sql.SQL("DELETE FROM {s} WHERE ({key}, event_timestamp) IN "
                             "(SELECT * FROM unnest(%s::bigint[], %s::timestamptz[]))").format(
            s=v.staging, key=sql.Identifier(v.key)),
            (batch["entity_id"].tolist(), list(batch["valid_from"])))
        with conn.cursor().copy(sql.SQL("COPY {s} ({key}, event_timestamp, {src}, embedding) "
                                        "FROM STDIN WITH (FORMAT BINARY)").format(
                s=v.staging, key=sql.Identifier(v.key), src=sql.Identifier(v.source_column))) as cp:
            cp.set_types(["bigint", "timestamptz", "text", "vector"])
            for eid, ts, md5, emb in zip(batch["entity_id"], batch["valid_from"], batch[v.source_column], embeddings):
                cp.write_row((int(eid), ts, md5, emb))


MARK_CURRENT = """
UPDATE {t} t SET is_current = (t.event_timestamp = m.latest)
FROM (SELECT {key}, max(event_timestamp) AS latest FROM {t}
      WHERE {key} IN (SELECT {key} FROM {s}) GROUP BY {key}) m
WHERE t.{key} = m.{key} AND t.is_current IS DISTINCT FROM (t.event_timestamp = m.latest)
"""


def publish(conn: psycopg.Connection, v: VersionRow, *, metrics: dict, hnsw_m: int = 16,
            hnsw_ef_construction: int = 64, analyze: bool = True, status: str = "published",
            await_feast: bool = False) -> int:
    """Move staged rows into the version table, index it, mark a building version `status` ('published', or
    'candidate' for the parity gate) — or, with await_feast, leave it 'building' until Feast serves it
    (mark_online) — : one transaction. Returns rows moved."""
    with conn.transaction():
        cur = conn.execute(sql.SQL(
            "INSERT INTO {t} ({key}, event_timestamp, created, {src}, embedding) "
            "SELECT {key}, event_timestamp, now(), {src}, embedding FROM {s} "
            "ON CONFLICT ({key}, event_timestamp) DO UPDATE SET {src} = EXCLUDED.{src}, "
            "embedding = EXCLUDED.embedding, created = EXCLUDED.created").format(
            t=v.table, s=v.staging, key=sql.Identifier(v.key), src=sql.Identifier(v.source_column)))
        moved = cur.rowcount
        conn.execute(sql.SQL(MARK_CURRENT).format(t=v.table, s=v.staging, key=sql.Identifier(v.key)))
        if moved:  # retired vintages served from this one: their translated copies move with its rows
            translated.refresh(conn, family=v.family, source=v.version, entity=v.entity, changed=v.staging)
        # only the current snapshot of each entity is indexed: similarity search never returns stale texts
        conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} USING hnsw (embedding vector_cosine_ops) "
                             "WITH (m = {m}, ef_construction = {ef}) WHERE is_current").format(
            i=sql.Identifier(f"{v.name}_hnsw"), t=v.table, m=sql.Literal(hnsw_m), ef=sql.Literal(hnsw_ef_construction)))
        registry.drop_staging(conn, v.family, v.version, if_exists=False)
        start, end = conn.execute(sql.SQL("SELECT min(event_timestamp), max(event_timestamp) FROM {t}").format(
            t=v.table)).fetchone()
        # online_pending: Feast has yet to apply / materialize these rows (cleared by pipeline.materialize), so a
        # job killed between this commit and its materialize is finished by its next run. With await_feast (the
        # jobs), a new vintage stays 'building' until then (ready_as: the status it gets once Feast serves its
        # rows), so no consumer, SQL or Feast, ever sees it served without its rows.
        config = {"online_pending": True} if moved or v.status == "building" else {}
        new_status = v.status if v.status != "building" else "building" if await_feast else status
        if v.status == "building" and await_feast:
            config["ready_as"] = status
        registry.record_publish(conn, v.family, v.version, status=new_status, data_start=start, data_end=end,
                                metrics=metrics, config=config)
    if moved and analyze:  # statistics for a new table; later small updates are left to autovacuum
        conn.execute(sql.SQL("ANALYZE {t}").format(t=v.table))
    return moved


def online_pending(conn: psycopg.Connection, families: list[str]) -> list[str]:
    """Feature views of `families` whose newest rows Feast has yet to serve: served views (registry.SERVED) with
    unmaterialized rows, and new vintages waiting to be applied and materialized before they are published; in the
    order of `families`, then by version."""
    return registry.pending_views(conn, families)


def mark_online(conn: psycopg.Connection, views: list[str], *, start, end) -> list[str]:
    """Feast now serves these views' rows, materialized over [start, end]: clear the online_pending marks of those
    whose rows the window covered, and such a new vintage becomes what its job asked for (published, or
    candidate). Returns the views that changed status."""
    rows = registry.mark_online(conn, views, start=start, end=end)
    return sorted(view for view, flipped in rows if flipped)


def families_of(conn: psycopg.Connection, views: list[str]) -> list[str]:
    """The embedding families these feature views belong to."""
    return registry.families_of(conn, views)
