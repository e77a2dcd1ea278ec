"""The typed online tables of StarPostgreSQLOnlineStore (star/store/online_store.py) and how rows reach them.

    <db_schema>.<project>_<view>  one row per entity x feature, as stock Feast, so psql, roles and checks see the
        same table, but typed:
        entity_key bytea, feature_name text     primary key (Feast's serialized entity key)
        value bytea                             protobuf Value of a non-vector feature (NULL for the other two kinds)
        value_text text                         strings (stock keeps them here too; the in-server path only here)
        vector_value vector(d)                  vector features (d from the Field's vector_length), one HNSW index
                                                per vector feature: WHERE feature_name = <feature>
        event_ts, created_ts timestamptz

    rows --binary COPY (client)--> temporary stage (ON COMMIT DROP) --one INSERT ... ON CONFLICT--> table
    rows --SELECT DISTINCT ON (server, star/store/engine.py) --one INSERT ... ON CONFLICT--> table
         only the rows that changed are written; all in ONE transaction

Readers see the previous complete rows until the commit, then the new ones; a killed writer leaves nothing. Into
an empty table (a new view) the rows are loaded without HNSW indexes and committed; the indexes are then built
once (`ensure_indexes`, CREATE INDEX: readers go on reading, searches scan exactly until it is built) instead of
row by row into the graph. A writer killed between the two leaves complete rows and no index: the next
materialize or `feast apply` builds it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
from feast import FeatureView
from feast.protos.feast.types.Value_pb2 import FloatList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Array, Float32
from psycopg import sql

COLUMNS = ("entity_key", "feature_name", "value", "value_text", "vector_value", "event_ts", "created_ts")
OPCLASS = {"cosine": "vector_cosine_ops", "L2": "vector_l2_ops", "inner_product": "vector_ip_ops",
           "L1": "vector_l1_ops"}
LOG = logging.getLogger(__name__)  # one line per upsert (rows, seconds) and per HNSW build (seconds)
DISTANCE = {"cosine": "<=>", "L2": "<->", "inner_product": "<#>", "L1": "<+>"}

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    entity_key bytea NOT NULL,
    feature_name text NOT NULL,
    value bytea,
    value_text text,
    vector_value {vector_type},
    event_ts timestamptz,
    created_ts timestamptz,
    PRIMARY KEY (entity_key, feature_name)
)"""

CREATE_INDEX = """
CREATE INDEX IF NOT EXISTS {index} ON {table} USING hnsw (vector_value {opclass})
WITH (m = {m}, ef_construction = {ef_construction}) WHERE feature_name = {feature}"""

CREATE_STAGE = """
CREATE TEMPORARY TABLE {stage} (ord bigint, entity_key bytea, feature_name text, value bytea, value_text text,
    vector_value {vector_type}, event_ts timestamptz, created_ts timestamptz) ON COMMIT DROP"""

# rows (unique per entity_key x feature_name) into the table; unchanged rows are not rewritten, so a re-run writes
# nothing and leaves the HNSW index alone
UPSERT = """
INSERT INTO {table} AS t (entity_key, feature_name, value, value_text, vector_value, event_ts, created_ts)
{rows}
ON CONFLICT (entity_key, feature_name) DO UPDATE SET value = EXCLUDED.value, value_text = EXCLUDED.value_text,
    vector_value = EXCLUDED.vector_value, event_ts = EXCLUDED.event_ts, created_ts = EXCLUDED.created_ts
WHERE (t.value, t.value_text, t.vector_value, t.event_ts, t.created_ts)
      IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.value_text, EXCLUDED.vector_value, EXCLUDED.event_ts,
                        EXCLUDED.created_ts)"""

# the last staged row of a key wins (as stock's row-by-row upserts)
STAGED_ROWS = """
SELECT DISTINCT ON (entity_key, feature_name) entity_key, feature_name, value, value_text, vector_value, event_ts,
       created_ts
FROM {stage} ORDER BY entity_key, feature_name, ord DESC NULLS LAST"""


@dataclass(frozen=True)
class VectorField:
    name: str
    dim: int
    metric: str


def vector_fields(fv: FeatureView) -> list[VectorField]:
    """The view's Array(Float32) fields with vector_index and a vector_length: stored as vector(d)."""
    return [VectorField(f.name, int(f.vector_length), f.vector_search_metric or "L2") for f in fv.features
            if f.vector_index and f.vector_length and f.dtype == Array(Float32)]


def table_dim(fv: FeatureView) -> int | None:
    """d of the vector_value column: one dimension per table (views mixing dimensions keep an untyped column)."""
    dims = {v.dim for v in vector_fields(fv)}
    return dims.pop() if len(dims) == 1 else None


def vector_type(dim: int | None) -> sql.Composable:
    return sql.SQL("vector({})").format(sql.Literal(dim)) if dim else sql.SQL("vector")


def index_name(table: str, feature: str) -> str:
    name = f"{table}_{feature}_hnsw"
    return name if len(name) <= 63 else f"{name[:50]}_{hashlib.md5(name.encode()).hexdigest()[:12]}"


def create_table(cur, schema: str, table: str, fv: FeatureView) -> None:
    """The typed table, without its HNSW indexes (`ensure_indexes` builds them once rows are in)."""
    cur.execute(sql.SQL(CREATE_TABLE).format(table=sql.Identifier(schema, table),
                                             vector_type=vector_type(table_dim(fv))))


def analyze_after(conn, schema: str, table: str, written: int) -> bool:
    """ANALYZE the table after a load that wrote many rows (>= 10 % of it, or it was never analyzed): a freshly
    loaded table has no statistics until autovacuum comes, and the first reads plan without them (seconds of
    sequential scans at 1M rows). Returns whether it ran."""
    if written <= 0:
        return False
    (estimate,) = conn.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
                               (sql.Identifier(schema, table).as_string(conn),)).fetchone()
    if 0 < estimate and written < 0.1 * estimate:
        return False
    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, table)))
    return True


def ensure_indexes(conn, schema: str, table: str, fv: FeatureView, *, m: int, ef_construction: int,
                   maintenance_work_mem: str) -> float:
    """Build the view's missing HNSW indexes, each in its own transaction after the rows are committed (a plain
    CREATE INDEX: reads go on, writes wait); returns the seconds spent building."""
    if not table_dim(fv):
        return 0.0
    started, built = time.perf_counter(), 0
    for v in vector_fields(fv):
        with conn.transaction(), conn.cursor() as cur:
            # two materializes of one view finish together: one builds, the other then finds the index
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"star-hnsw:{schema}.{table}",))
            if index_name(table, v.name) in _hnsw_indexes(cur, schema, table):
                continue
            cur.execute(sql.SQL("SET LOCAL maintenance_work_mem = {}").format(sql.Literal(maintenance_work_mem)))
            cur.execute(create_index(schema, table, v, m=m, ef_construction=ef_construction))
            built += 1
    seconds = time.perf_counter() - started
    if built:
        LOG.info("%s.%s: %d HNSW index(es) built in %.3f s", schema, table, built, seconds)
    return seconds


def create_index(schema: str, table: str, v: VectorField, *, m: int, ef_construction: int) -> sql.Composed:
    return sql.SQL(CREATE_INDEX).format(
        index=sql.Identifier(index_name(table, v.name)), table=sql.Identifier(schema, table),
        opclass=sql.SQL(OPCLASS.get(v.metric, "vector_l2_ops")), m=sql.Literal(m),
        ef_construction=sql.Literal(ef_construction), feature=sql.Literal(v.name))


def create_stage(cur, stage: str, dim: int | None) -> None:
    cur.execute(sql.SQL(CREATE_STAGE).format(stage=sql.Identifier(stage), vector_type=vector_type(dim)))


def _hnsw_indexes(cur, schema: str, table: str) -> set[str]:
    """Names of the table's HNSW indexes."""
    return {name for (name,) in cur.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s "
        "AND indexdef LIKE '%% USING hnsw %%'", (schema, table))}


def is_empty(cur, schema: str, table: str) -> bool:
    return cur.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(
        sql.Identifier(schema, table))).fetchone()[0]


def _bulk_load_allowed(cur, schema: str, table: str) -> bool:
    """An empty table this role owns: its indexes may be dropped and built once after the load."""
    if not is_empty(cur, schema, table):
        return False
    return cur.execute("SELECT pg_has_role(relowner, 'USAGE') FROM pg_class WHERE oid = %s::regclass",
                       (sql.Identifier(schema, table).as_string(cur),)).fetchone()[0]


def apply_rows(cur, schema: str, table: str, rows: sql.Composable, params=None) -> int:
    """Upsert `rows` (a SELECT of the table's columns, unique per entity_key x feature_name) into the table, inside
    the caller's transaction; returns the rows written. Into an empty table the HNSW indexes are dropped first (the
    caller builds them after its commit: `ensure_indexes`)."""
    if _bulk_load_allowed(cur, schema, table):  # building once beats inserting row by row into the graph
        for name in _hnsw_indexes(cur, schema, table):
            cur.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(schema, name)))
    started = time.perf_counter()
    cur.execute(sql.SQL(UPSERT).format(table=sql.Identifier(schema, table), rows=rows), params)
    LOG.info("%s.%s: %d rows upserted in %.3f s", schema, table, cur.rowcount, time.perf_counter() - started)
    return cur.rowcount


def apply_stage(cur, stage: str, schema: str, table: str) -> int:
    """The stage's rows (the last of each entity_key x feature_name) into the table: apply_rows."""
    return apply_rows(cur, schema, table, sql.SQL(STAGED_ROWS).format(stage=sql.Identifier(stage)))


def _aware(ts):
    """Feast hands naive UTC or aware datetimes; timestamptz wants aware ones."""
    from datetime import timezone

    return ts if ts is None or ts.tzinfo is not None else ts.replace(tzinfo=timezone.utc)


def stage_rows(data: Iterable, fv: FeatureView, key_version: int) -> Iterator[tuple]:
    """Feast's (entity key, {feature: Value}, event ts, created ts) -> stage rows, one per entity x feature,
    streamed (nothing is held beyond the row being written)."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import extract_text_and_num

    dims = {v.name: v.dim for v in vector_fields(fv)} if table_dim(fv) else {}
    for ord_, (entity_key, values, ts, created) in enumerate(data):
        key = serialize_entity_key(entity_key, entity_key_serialization_version=key_version)
        ts, created = _aware(ts), _aware(created)
        for name, val in values.items():
            if name in dims and val.WhichOneof("val") == "float_list_val":
                vec = np.asarray(val.float_list_val.val, dtype=np.float32)
                if len(vec) == dims[name] and np.isfinite(vec).all():  # else kept as protobuf, read back as such
                    yield ord_, key, name, None, None, vec, ts, created
                    continue
            text, _ = extract_text_and_num(val, False)
            yield ord_, key, name, val.SerializeToString(), text, None, ts, created


def to_proto(value, text, vector) -> ValueProto:
    """One stored feature back to the Value stock Feast returns for it."""
    if value is not None:
        proto = ValueProto()
        proto.ParseFromString(bytes(value))
        return proto
    if vector is not None:  # a list (real[]), or pgvector's Vector (binary results) / numpy array (text results)
        for to_list in ("to_list", "tolist"):
            if hasattr(vector, to_list):
                vector = getattr(vector, to_list)()
                break
        return ValueProto(float_list_val=FloatList(val=vector))
    if text is not None:
        return ValueProto(string_val=text)
    return ValueProto()
