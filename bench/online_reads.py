"""get_online_features of 1 member + 100 jobs over several views against the same rows by primary-key SQL.

    measure(target, member_ids, job_ids, views, repeats) -> {"feast": {p50_ms, p99_ms}, "raw_sql": {...}}

feast    FeatureStore.get_online_features(features=<every feature of the views>, entity_rows=[{member_id, job_id}
         per job]).to_dict(), under the current STAR_FEAST_MODE
raw_sql  what a hand-written reader does on STAR's online tables: per view one
         `SELECT feature_name, value_text, vector_value FROM <table> WHERE entity_key = ANY(<keys>)` (binary
         results, vectors to numpy), keys serialized the way Feast does; only where the tables are STAR's layout
"""

from __future__ import annotations

import time

import numpy as np
from psycopg import sql

from star import db
from star.store.feast_repo import open_store


def _stats(times: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(times, 50)), 3), "p99_ms": round(float(np.percentile(times, 99)), 3)}


def timed(fn, repeats: int, warm: int = 20) -> dict:
    for _ in range(warm):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return _stats(times)


def _keys(join_key: str, ids: list[int]) -> list[bytes]:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return [serialize_entity_key(EntityKey(join_keys=[join_key], entity_values=[Value(int64_val=int(i))]), 3)
            for i in ids]


def measure(target, member_ids: list[int], job_ids: list[int], views: list[str], repeats: int = 200,
            raw: bool = True) -> dict:
    fs = open_store(target)
    refs = [f"{v}:{f.name}" for v in views for f in fs.get_feature_view(v).features]
    rows = [{"member_id": member_ids[0], "job_id": j} for j in job_ids]
    out = {"feast": timed(lambda: fs.get_online_features(features=refs, entity_rows=rows, full_feature_names=True).to_dict(), repeats)}
    if not raw:
        return out
    from pgvector.psycopg import register_vector

    key_of = {v: fs.get_feature_view(v).entity_columns[0].name for v in views}
    queries = [sql.SQL("SELECT entity_key, feature_name, value_text, vector_value FROM {} "
                       "WHERE entity_key = ANY(%s)").format(sql.Identifier("feast_online", f"{fs.project}_{v}"))
               for v in views]
    with db.connect(target, autocommit=True) as conn:
        register_vector(conn)
        cur = conn.cursor(binary=True)

        def read():
            got = {}
            for view, q in zip(views, queries):
                ids = member_ids if key_of[view] == "member_id" else job_ids
                got[view] = cur.execute(q, (_keys(key_of[view], ids),), prepare=True).fetchall()
            return got
        out["raw_sql"] = timed(read, repeats)
    return out
