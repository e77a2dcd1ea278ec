"""Write a validated Marketplace into the star schema in one transaction.

    frames --COPY--> temp tables --INSERT .. ON CONFLICT--> star.* (only rows that are new or changed)
           --> id_features rebuilt for the entities whose attribute edges changed
    history rows: the file's columns only --merged over the stored state at their time--> whole rows
                  (a column a file does not have keeps its stored / carried-forward value)

Loading the same data twice changes nothing: unchanged rows keep their `created` time.
"""

from __future__ import annotations

import json
from typing import Iterable

import pandas as pd
import psycopg
from psycopg import sql
from tqdm import tqdm

from star.common import ENTITIES, ID_COLUMN
from star.data.format import Marketplace
from star.store.pgcopy import py_values, rows

UPSERT = {
    "members": """
        INSERT INTO star.members (member_id) SELECT DISTINCT member_id FROM tmp_members
        ON CONFLICT DO NOTHING""",
    "jobs": """
        INSERT INTO star.jobs (job_id) SELECT DISTINCT job_id FROM tmp_jobs
        ON CONFLICT DO NOTHING""",
    "member_history": """
        INSERT INTO star.member_history AS h (member_id, valid_from, attrs)
        SELECT member_id, valid_from, attrs FROM tmp_member_history_whole
        ON CONFLICT (member_id, valid_from) DO UPDATE SET attrs = EXCLUDED.attrs, created = now()
        WHERE h.attrs IS DISTINCT FROM EXCLUDED.attrs""",
    "job_history": """
        INSERT INTO star.job_history AS h (job_id, valid_from, attrs)
        SELECT job_id, valid_from, attrs FROM tmp_job_history_whole
        ON CONFLICT (job_id, valid_from) DO UPDATE SET attrs = EXCLUDED.attrs, created = now()
        WHERE h.attrs IS DISTINCT FROM EXCLUDED.attrs""",
    "text_snapshots": """
        INSERT INTO star.text_snapshots AS t (entity, entity_id, valid_from, text)
        SELECT entity, entity_id, valid_from, text FROM tmp_text_snapshots
        ON CONFLICT (entity, entity_id, valid_from) DO UPDATE SET text = EXCLUDED.text, created = now()
        WHERE t.text IS DISTINCT FROM EXCLUDED.text""",
    # a placeholder label (the id itself) never overwrites a real one
    "attribute_nodes": """
        INSERT INTO star.attribute_nodes AS n (node_type, node_id, label)
        SELECT node_type, node_id, label FROM tmp_attribute_nodes
        ON CONFLICT (node_type, node_id) DO UPDATE SET label = EXCLUDED.label
        WHERE n.label IS DISTINCT FROM EXCLUDED.label AND EXCLUDED.label <> EXCLUDED.node_id""",
    "attribute_edges": """
        INSERT INTO star.attribute_edges (entity, entity_id, relation, node_type, node_id, event_timestamp)
        SELECT entity, entity_id, relation, node_type, node_id, event_timestamp FROM tmp_attribute_edges
        ON CONFLICT DO NOTHING
        RETURNING entity, entity_id""",
    "interactions": """
        INSERT INTO star.interactions (member_id, job_id, relation, event_timestamp)
        SELECT member_id, job_id, relation, event_timestamp FROM tmp_interactions
        ON CONFLICT DO NOTHING""",
    "synthetic_truth": """
        INSERT INTO star.synthetic_truth AS s (member_id, job_id, event_timestamp, utility, outcome)
        SELECT member_id, job_id, event_timestamp, utility, outcome FROM tmp_synthetic_truth
        ON CONFLICT (member_id, job_id, event_timestamp) DO UPDATE
        SET utility = EXCLUDED.utility, outcome = EXCLUDED.outcome
        WHERE (s.utility, s.outcome) IS DISTINCT FROM (EXCLUDED.utility, EXCLUDED.outcome)""",
}

# A history row stores the whole attribute state from its valid_from on (Feast and the graph read one row), but a
# file may give only some columns. Each loaded row = the stored row at or before its time (the same key, or the
# state it continues) || every loaded row of the entity since that stored row, in time order: a later key wins, a
# key the file does not have is carried. `||` over a window needs an aggregate; a session-local one (pg_temp)
# keeps it out of the schema.
MERGE_AGGREGATE = ("CREATE OR REPLACE AGGREGATE pg_temp.star_jsonb_merge(jsonb) "
                   "(SFUNC = jsonb_concat, STYPE = jsonb, INITCOND = '{}')")
MERGE_HISTORY = """
CREATE TEMP TABLE {whole} ON COMMIT DROP AS
SELECT t.{key}, t.valid_from,
       coalesce(b.attrs, '{{}}'::jsonb)
       || pg_temp.star_jsonb_merge(t.attrs) OVER (PARTITION BY t.{key}, b.valid_from ORDER BY t.valid_from) AS attrs
FROM {partial} t
LEFT JOIN LATERAL (SELECT h.valid_from, h.attrs FROM {history} h
                   WHERE h.{key} = t.{key} AND h.valid_from <= t.valid_from
                   ORDER BY h.valid_from DESC LIMIT 1) b ON true
"""

# Per entity and change time of its attribute edges: for every relation, the ids linked so far (first-linked
# order) and the latest one. One row per change time, so a point-in-time join sees exactly what was known.
REBUILD_ID_FEATURES = """
DELETE FROM star.id_features f USING tmp_affected a WHERE f.entity = a.entity AND f.entity_id = a.entity_id;
WITH first_link AS (
    SELECT e.entity, e.entity_id, e.relation, e.node_id, min(e.event_timestamp) AS linked_at
    FROM star.attribute_edges e JOIN tmp_affected a USING (entity, entity_id)
    GROUP BY 1, 2, 3, 4
), change AS (
    SELECT DISTINCT entity, entity_id, linked_at AS event_timestamp FROM first_link
), per_relation AS (
    SELECT c.entity, c.entity_id, c.event_timestamp, l.relation,
           jsonb_agg(l.node_id ORDER BY l.linked_at, l.node_id) AS all_ids,
           (array_agg(l.node_id ORDER BY l.linked_at DESC, l.node_id DESC))[1] AS latest
    FROM change c JOIN first_link l
      ON l.entity = c.entity AND l.entity_id = c.entity_id AND l.linked_at <= c.event_timestamp
    GROUP BY 1, 2, 3, 4
)
INSERT INTO star.id_features (entity, entity_id, event_timestamp, ids)
SELECT entity, entity_id, event_timestamp,
       jsonb_object_agg(relation, jsonb_build_object('all', all_ids, 'latest', latest))
FROM per_relation GROUP BY 1, 2, 3
"""


def _copy(cur: psycopg.Cursor, table: str, columns: list[str], types: list[str], values: Iterable[tuple],
          total: int, progress: bool) -> None:
    cols = ", ".join(f"{c} {t}" for c, t in zip(columns, types))
    cur.execute(f"CREATE TEMP TABLE {table} ({cols}) ON COMMIT DROP")
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        for row in tqdm(values, total=total, desc=f"load {table[4:]}", unit="row", disable=not progress,
                        mininterval=1.0):
            cp.write_row(row)


def _attr_json(attrs: pd.DataFrame, absent: pd.DataFrame | None) -> list[str]:
    """One JSON object per history row: a key per column the row's file has (null for an empty cell: no value from
    then on), none for a column its file lacks (the stored value stays)."""
    if not len(attrs.columns):
        return ["{}"] * len(attrs)
    if absent is None or not absent.to_numpy().any():
        return attrs.to_json(orient="records", lines=True).splitlines()
    columns = list(attrs.columns)
    skip = absent[columns].to_numpy()
    return [json.dumps({c: v for c, v, s in zip(columns, values, gone) if not s})
            for values, gone in zip(attrs.itertuples(index=False, name=None), skip)]


def _merge_history(cur: psycopg.Cursor, entity: str) -> None:
    """tmp_<entity>_history (the files' columns) -> tmp_<entity>_history_whole (whole rows): MERGE_HISTORY."""
    cur.execute(MERGE_AGGREGATE)
    cur.execute(sql.SQL(MERGE_HISTORY).format(
        whole=sql.Identifier(f"tmp_{entity}_history_whole"), partial=sql.Identifier(f"tmp_{entity}_history"),
        history=sql.Identifier("star", f"{entity}_history"), key=sql.Identifier(ID_COLUMN[entity])))


def write(conn: psycopg.Connection, market: Marketplace, *, progress: bool = False) -> dict[str, int]:
    """Write all frames inside the caller's transaction; return rows inserted or changed per table."""
    counts: dict[str, int] = {}
    with conn.cursor() as cur:
        for entity in ENTITIES:
            frame = market.members if entity == "member" else market.jobs
            id_col = ID_COLUMN[entity]
            _copy(cur, f"tmp_{entity}s", [id_col], ["bigint"], rows(frame, [id_col]), len(frame), False)
            cur.execute(UPSERT[f"{entity}s"])
            counts[f"{entity}s"] = cur.rowcount
            json_rows = _attr_json(frame.drop(columns=[id_col, "valid_from"]), market.absent.get(entity))
            history = zip(py_values(frame[id_col]), py_values(frame["valid_from"]), json_rows)
            _copy(cur, f"tmp_{entity}_history", [id_col, "valid_from", "attrs"], ["bigint", "timestamptz", "jsonb"],
                  history, len(frame), progress)
            _merge_history(cur, entity)
            cur.execute(UPSERT[f"{entity}_history"])
            counts[f"{entity}_history"] = cur.rowcount

        plan = [
            ("text_snapshots", market.texts, ["entity", "entity_id", "valid_from", "text"],
             ["text", "bigint", "timestamptz", "text"]),
            ("attribute_nodes", market.nodes, ["node_type", "node_id", "label"], ["text", "text", "text"]),
            ("attribute_edges", market.attribute_edges,
             ["entity", "entity_id", "relation", "node_type", "node_id", "event_timestamp"],
             ["text", "bigint", "text", "text", "text", "timestamptz"]),
            ("interactions", market.interactions, ["member_id", "job_id", "relation", "event_timestamp"],
             ["bigint", "bigint", "text", "timestamptz"]),
        ]
        if market.truth is not None:
            plan.append(("synthetic_truth", market.truth,
                         ["member_id", "job_id", "event_timestamp", "utility", "outcome"],
                         ["bigint", "bigint", "timestamptz", "double precision", "text"]))
        for table, df, columns, types in plan:
            _copy(cur, f"tmp_{table}", columns, types, rows(df, columns), len(df), progress)
            cur.execute(UPSERT[table])
            counts[table] = cur.rowcount
            if table == "attribute_edges":
                affected = set(cur.fetchall()) if cur.rowcount else set()
        _copy(cur, "tmp_affected", ["entity", "entity_id"], ["text", "bigint"], iter(sorted(affected)),
              len(affected), False)
        if affected:
            cur.execute(REBUILD_ID_FEATURES)
        counts["id_features_entities"] = len(affected)
    return counts


def known_ids(conn: psycopg.Connection) -> dict[str, set[int]]:
    """Member and job ids already stored, so a load may refer to them."""
    return {"member": {r[0] for r in conn.execute("SELECT member_id FROM star.members")},
            "job": {r[0] for r in conn.execute("SELECT job_id FROM star.jobs")}}


def load(target, frames: dict, *, progress: bool = False) -> dict:
    """Validate and write one marketplace in a single transaction, then register changed feature views.

    `frames` is what `star.data.reading.read_dir` returns (or `frame()`-wrapped in-memory frames). On any error
    nothing is written; loading the same data again changes nothing.
    """
    from star.data.format import validate
    from star.db import transaction
    from star.store.catalog import sync_versions

    with transaction(target) as conn:
        conn.execute("LOCK TABLE star.members IN SHARE ROW EXCLUSIVE MODE")  # one loader at a time
        market = validate(frames, known_ids=known_ids(conn))
        counts = write(conn, market, progress=progress)
        counts["new_feature_views"] = sync_versions(conn)
    changed = [t for t, n in counts.items() if isinstance(n, int) and n and t in UPSERT]
    if changed:  # fresh statistics, so the planner does not guess on just-loaded tables
        from star.db import connect

        with connect(target, autocommit=True) as conn:
            for table in changed + (["id_features"] if counts["id_features_entities"] else []):
                conn.execute(f"ANALYZE star.{table}")
    return counts
