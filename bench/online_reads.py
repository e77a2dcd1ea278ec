"""What a ranker reads online: 1 member + N jobs over 6 feature views, through Feast's own API
(`FeatureStore.get_online_features(...).to_dict()`) against the same lookup by primary-key SQL, in one process.

    .venv/bin/python bench/online_reads.py [--members 20000] [--jobs 4000] [--repeats 300] [--stock]

    views   member_categorical_v1 (strings), member_text_embedding_v1 (200-d), member_graph_embedding_v1 (64-d),
            job_categorical_v1 (strings), job_text_embedding_v1 (200-d), job_graph_embedding_v1 (64-d)
    star    STAR's online store (star.store.online_store.StarPostgreSQLOnlineStore), the feature_store.yaml default
    raw_sql what a hand-written reader does: per view one `SELECT entity_key, feature_name, value_text,
            vector_value FROM <online table> WHERE entity_key = ANY(%b) AND feature_name = ANY(%b)` on the same
            online tables Feast serves (primary key (entity_key, feature_name)), keys serialized as Feast does,
            binary results, vectors decoded by pgvector (register_vector) to lists (Vector.to_list; numpy with
            as_numpy), strings from value_text, one column per feature in entity-row order (what to_dict returns)
    stock   (--stock) stock Feast (`postgres` online store) on a second database holding the same data

Both are timed alternately, request by request (a shared machine drifts), each going first every other request (the
first to read a row pays its cache miss), after a warm-up; p50 / p99 in ms.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import struct
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.benchkit import emit, feast_mode, fresh_database, p50_p99, seed_market  # noqa: E402
from bench.materialize import load_vectors  # noqa: E402
from star import db  # noqa: E402
from star.store.catalog import sync_versions  # noqa: E402

EMBEDDINGS = (  # family, entity, kind, dim
    ("member_text_embedding", "member", "text_embedding", 200),
    ("member_graph_embedding", "member", "graph_embedding", 64),
    ("job_text_embedding", "job", "text_embedding", 200),
    ("job_graph_embedding", "job", "graph_embedding", 64),
)
VIEWS = ("member_categorical_v1", "member_text_embedding_v1", "member_graph_embedding_v1",
         "job_categorical_v1", "job_text_embedding_v1", "job_graph_embedding_v1")


def build(target, members: int, jobs: int) -> None:
    """Members / jobs with attribute histories (benchkit.seed_market), four published embedding vintages,
    applied and materialized in Feast as the environment's STAR_FEAST_MODE says."""
    from star.pipeline import apply_features, materialize

    with db.transaction(target) as conn:
        seed_market(conn, members, jobs)
        sync_versions(conn)
    for seed, (family, entity, kind, dim) in enumerate(EMBEDDINGS):
        load_vectors(target, members if entity == "member" else jobs, dim, seed, family=family, entity=entity,
                     kind=kind)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        apply_features(target)
        materialize(target, feature_views=list(VIEWS))


def feature_refs(store) -> list[str]:
    return [f"{fv.name}:{f.name}" for name in VIEWS for fv in [store.get_feature_view(name)] for f in fv.features]


RAW = "SELECT entity_key, feature_name, value_text, vector_value FROM {table} " \
      "WHERE entity_key = ANY(%b) AND feature_name = ANY(%b)"


class RawReader:
    """The baseline: a hand-written reader of the online tables (module docstring), on its own connection."""

    def __init__(self, target, store, refs: list[str], *, as_numpy: bool = False):
        from psycopg import sql

        from star.store.feast_repo import online_table

        from pgvector.psycopg import register_vector

        self.conn = db.connect(target, autocommit=True)
        register_vector(self.conn)  # binary vector -> pgvector.Vector
        self.as_numpy = as_numpy
        self.views = []  # (query, join key, features, output names)
        by_view: dict[str, list[str]] = {}
        for ref in refs:
            view, feature = ref.split(":")
            by_view.setdefault(view, []).append(feature)
        for view, features in by_view.items():
            (key,) = [c.name for c in store.get_feature_view(view).entity_columns]
            query = sql.SQL(RAW).format(table=sql.Identifier(*online_table(store, view)))
            self.views.append((query, key, features, [f"{view}__{f}" for f in features]))

    @staticmethod
    def key(join_key: str, value: int) -> bytes:
        """Feast's serialized entity key (version 3) of one int64 join key: counts, types, lengths, little-endian."""
        name = join_key.encode()
        return struct.pack("<III", 1, 2, len(name)) + name + struct.pack("<IIq", 4, 8, value)

    def read(self, member_id: int, job_ids: list[int]) -> dict:
        n = len(job_ids)
        keys = {"member_id": [self.key("member_id", member_id)], "job_id": [self.key("job_id", j) for j in job_ids]}
        out = {"member_id": [member_id] * n, "job_id": list(job_ids)}
        for query, key, features, names in self.views:
            found = {(k, f): (t if v is None else v.to_numpy() if self.as_numpy else v.to_list()) for k, f, t, v in
                     self.conn.execute(query, (keys[key], features), binary=True).fetchall()}
            for f, name in zip(features, names):
                out[name] = [found.get((keys[key][0], f))] * n if key == "member_id" else \
                    [found.get((k, f)) for k in keys[key]]
        return out

    def close(self) -> None:
        self.conn.close()


def open_store_as(target, mode: str):
    """A FeatureStore on `target` as STAR_FEAST_MODE=`mode` configures it (the config is read once, here)."""
    from star.store.feast_repo import open_store

    with feast_mode(mode):
        return open_store(target)


def measure(target, member_ids, job_ids, refs: list[str], repeats: int, *, stock_target=None, warm: int = 20) -> dict:
    """p50 / p99 ms of `get_online_features(features=refs, entity_rows=[{member_id, job_id} ...],
    full_feature_names=True).to_dict()` with STAR's store, and of the raw primary-key SQL reader (RawReader), timed
    alternately. Request i reads member_ids[i % len] with the job list job_ids[i % len]; `warm` untimed requests
    first (registry, connections, prepared statements). With stock_target, stock Feast on that database (the same
    data, materialized by stock Feast) in a second phase against the raw reader again: two FeatureStores of one
    project alternating in a process would evict each other from Feast's request cache (feast.utils
    _feature_resolution_cache). same_result: every answer equals the raw reader's."""
    raw = RawReader(target, open_store_as(target, "star"), refs)
    result: dict = {"requests": repeats, "rows_per_request": len(job_ids[0]), "same_result": True}
    try:
        for mode, where in (("star", target), ("stock", stock_target)):
            if where is None:
                continue
            store = open_store_as(where, mode)

            def feast(m, jobs):
                return store.get_online_features(features=refs, full_feature_names=True, entity_rows=[
                    {"member_id": m, "job_id": j} for j in jobs]).to_dict()

            times, same = _alternate({mode: feast, "raw_sql": raw.read}, member_ids, job_ids, repeats, warm)
            raw_name = "raw_sql" if mode == "star" else "raw_sql_during_stock"
            result.update({mode: times[mode], raw_name: times["raw_sql"],
                           f"{mode}_over_raw_p50": round(times[mode]["p50_ms"] / times["raw_sql"]["p50_ms"], 2)})
            result["same_result"] = result["same_result"] and same
    finally:
        raw.close()
    return result


def _alternate(readers: dict, member_ids, job_ids, repeats: int, warm: int) -> tuple[dict, bool]:
    """Each request through every reader in turn: {reader: p50 / p99}, and whether all answers were equal."""
    times: dict[str, list[float]] = {name: [] for name in readers}
    same = True
    names = list(readers)
    for i in range(warm + repeats):
        m, jobs = int(member_ids[i % len(member_ids)]), [int(j) for j in job_ids[i % len(job_ids)]]
        answers = []
        # the first reader of a request pays its cache misses (tables larger than shared_buffers): take turns
        for name in names[i % len(names):] + names[:i % len(names)]:
            started = time.perf_counter()
            answers.append(readers[name](m, jobs))
            if i >= warm:
                times[name].append((time.perf_counter() - started) * 1000)
        same = same and all(a == answers[0] for a in answers)
    return {name: p50_p99(t) for name, t in times.items()}, same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=20_000)
    ap.add_argument("--jobs", type=int, default=4_000)
    ap.add_argument("--per-request", type=int, default=100, help="jobs per request")
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--stock", action="store_true", help="stock Feast too, on a second database")
    args = ap.parse_args()
    targets = {"star": fresh_database("star_bench_online")}
    if args.stock:
        targets["stock"] = fresh_database("star_bench_online_stock")
    try:
        for mode, target in targets.items():
            started = time.perf_counter()
            with feast_mode(mode):
                build(target, args.members, args.jobs)
            emit({"built": mode, "members": args.members, "jobs": args.jobs,
                  "seconds": round(time.perf_counter() - started, 1)})
        rng = np.random.default_rng(0)
        members = rng.integers(1, args.members + 1, size=args.repeats)
        jobs = [rng.choice(args.jobs, size=args.per_request, replace=False) + 1 for _ in range(args.repeats)]
        refs = feature_refs(open_store_as(targets["star"], "star"))
        emit({"bench": "online_reads", "views": len(VIEWS), "members": args.members, "jobs": args.jobs,
              **measure(targets["star"], members, jobs, refs, args.repeats, stock_target=targets.get("stock"))})
    finally:
        for target in targets.values():
            db.drop_database(target)


if __name__ == "__main__":
    main()
