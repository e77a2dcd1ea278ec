"""Serving a retired vintage against a native one, in the same process: Feast online fetch (p50 / p99, 1 and 100
entities), historical retrieval, and SQL similarity (latency and overlap@10 with the neighbours before retirement).

    python bench/vintage_serving.py [--members 2000 --jobs 400] [--repeats 200]

Two real vintages of member_text_embedding: the shipped MiniLM at 128 tokens (v1) and at 48 tokens (v2, a real
drift: long profiles are cut). v1 is fitted to v2 (`star compat fit`) and retired; then
    online_ratio_1 / _100      p50 of get_online_features("member_text_embedding_v1:embedding") after retirement /
                               p50 of the native v2 fetch (goal <= 1.1)
    historical_ratio           get_historical_features of v1 (computed from v2 through W in SQL) / native v2
    sql_ratio                  star.nearest(family, 1, id, 10) retired / native v2 (p50; the two interleaved, query by
                               query, after a warm pass): an HNSW search of v1's translated copy (migration 0006)
    nearest_retired_overlap_at_10  overlap@10 of star.nearest(v1) with exact search over v1's translated vectors
                               (every current v2 row through the map, cosine in numpy; ties count as hits)
    sql_ratio_rerank           the same ratio for 0005's search (k x 10 candidates of v2 re-ranked through the map),
                               measured after dropping the translated copy, and its overlap with exact search
    sql_overlap_at_10          overlap of v1's neighbours before retirement with star.nearest(v1) after: how well
                               the map keeps the neighbourhoods (map quality, not search quality)
    translated_bytes           disk of the translated copy: table + HNSW index (per current entity too), and the
                               seconds to build it (star.compat_apply of every current v2 row, index, ANALYZE)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from benchkit import emit, exact_translated, fresh_database, nearest_pair, overlap, p50_p99
from star import db
from star.config import Settings
from star.pipeline import apply_features, materialize, seed_synthetic
from star.store import translated
from star.store.feast_repo import open_store
from star.text.config import TextModelConfig
from star.text.embed import EmbedConfig, embed_texts
from star.text.model import TextEncoder
from star.versions.lifecycle import fit_map
from star.versions.retire import retire

FAMILY = "member_text_embedding"



def timed(fn, repeats: int) -> dict:
    fn()  # warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return p50_p99(times)


def online(store, version: int, ids: list[int], repeats: int) -> dict:
    rows = [{"member_id": i} for i in ids]
    return timed(lambda: store.get_online_features(features=[f"{FAMILY}_v{version}:embedding"],
                                                   entity_rows=rows).to_dict(), repeats)


def nearest(target, version: int, ids: list[int]) -> tuple[dict, dict[int, list[int]]]:
    out, times = {}, []
    with db.connect(target) as conn:
        for i in ids:
            t0 = time.perf_counter()
            out[i] = [r[0] for r in conn.execute("SELECT id FROM star.nearest(%s, %s, %s, 10)", (FAMILY, version, i))]
            times.append((time.perf_counter() - t0) * 1000)
    return p50_p99(times), out


def table_dim(conn) -> int:
    return conn.execute("SELECT dim FROM star.embedding_versions WHERE family = %s AND version = 1",
                        (FAMILY,)).fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--queries", type=int, default=100, help="SQL similarity queries")
    args = parser.parse_args()

    settings = Settings.from_env()
    target = fresh_database("star_bench_vintage", settings)
    seed_synthetic(target, members=args.members, jobs=args.jobs, seed=0, progress=False)
    for tokens in (128, 48):
        enc = TextEncoder(TextModelConfig(max_length={"member": tokens, "job": tokens, "resume": tokens}))
        embed_texts(target, enc, EmbedConfig(entities=("member",)), progress=False)
    apply_features(target, settings)
    materialize(target, settings=settings, feature_views=[f"{FAMILY}_v1", f"{FAMILY}_v2"])
    with db.connect(target) as conn:
        ids = [r[0] for r in conn.execute(f"SELECT member_id FROM star.{FAMILY}_v1 WHERE is_current ORDER BY 1")]
        m = fit_map(conn, FAMILY, 2, 1)
        conn.commit()
    emit({"phase": "compat fit v2 -> v1", **m.metrics["heldout"], "no_map_cos_mean": m.metrics["no_map_cos_mean"]})
    rng = np.random.default_rng(0)
    one, hundred = [int(rng.choice(ids))], [int(i) for i in rng.choice(ids, 100, replace=False)]
    queries = [int(i) for i in rng.choice(ids, args.queries, replace=False)]
    _, before = nearest(target, 1, queries)
    entity_df = pd.DataFrame({"member_id": hundred, "event_timestamp": pd.Timestamp.now(tz="UTC")})

    t0 = time.perf_counter()
    retire(target, FAMILY, 1, settings=settings)
    emit({"phase": "retire v1", "seconds": round(time.perf_counter() - t0, 2)})
    store = open_store(target, settings)
    res = {}
    for label, version in (("native_v2", 2), ("retired_v1", 1)):
        res[label] = {"online_1": online(store, version, one, args.repeats),
                      "online_100": online(store, version, hundred, args.repeats),
                      "historical_100": timed(lambda v=version: store.get_historical_features(
                          entity_df=entity_df, features=[f"{FAMILY}_v{v}:embedding"]).to_df(), 10)}
        res[label]["sql_nearest"], after = nearest(target, version, queries)
        emit({"vintage": label, **res[label]})
    kept = float(np.mean([len(set(before[q]) & set(after[q])) / 10 for q in queries]))
    _, native_after = nearest(target, 2, queries)
    no_map = float(np.mean([len(set(before[q]) & set(native_after[q])) / 10 for q in queries]))
    with db.connect(target) as conn:
        exact = exact_translated(conn, FAMILY, queries)
    with db.connect(target, autocommit=True) as conn:
        native, retired, found = nearest_pair(conn, FAMILY, queries)
    with db.connect(target) as conn:
        table, index, n = conn.execute(
            f"SELECT pg_table_size('star.{FAMILY}_v1__translated'), pg_indexes_size('star.{FAMILY}_v1__translated'), "
            f"(SELECT count(*) FROM star.{FAMILY}_v1__translated)").fetchone()
    with db.connect(target) as conn:
        t0 = time.perf_counter()
        with conn.transaction():  # what retire does for v1 before its flip, again, thrown away
            translated.build_staging(conn, family=FAMILY, version=1, source=2, entity="member", dim=table_dim(conn))
            build_s = round(time.perf_counter() - t0, 2)
            conn.execute(f"DROP TABLE star.{FAMILY}_v1__translated__staging")
    emit({"phase": "star.nearest, translated copy", "native_v2": native, "retired_v1": retired,
          "translated_table_bytes": table, "translated_index_bytes": index, "entities": n, "build_seconds": build_s})
    with db.connect(target, autocommit=True) as conn:  # 0005's search, for comparison: the copy is gone
        conn.execute(f"DROP TABLE star.{FAMILY}_v1__translated")
        native_rr, retired_rr, found_rr = nearest_pair(conn, FAMILY, queries)
    emit({"phase": "star.nearest, re-ranked candidates (0005)", "native_v2": native_rr, "retired_v1": retired_rr})

    def ratio(key):
        return round(res["retired_v1"][key]["p50_ms"] / res["native_v2"][key]["p50_ms"], 3)
    emit({"summary": "vintage_serving", "members": args.members, "online_ratio_1": ratio("online_1"),
          "online_ratio_100": ratio("online_100"), "historical_ratio": ratio("historical_100"),
          "nearest_native_p50_ms": native["p50_ms"], "nearest_retired_p50_ms": retired["p50_ms"],
          "sql_ratio": round(retired["p50_ms"] / native["p50_ms"], 3),
          "nearest_retired_overlap_at_10": overlap(found, exact), "translated_build_seconds": build_s,
          "sql_ratio_rerank": round(retired_rr["p50_ms"] / native_rr["p50_ms"], 3),
          "sql_overlap_at_10_exact_rerank": overlap(found_rr, exact),
          "translated_bytes": table + index, "translated_bytes_per_entity": round((table + index) / max(n, 1), 1),
          "sql_overlap_at_10": round(kept, 3), "sql_overlap_at_10_no_map": round(no_map, 3),
          "map_heldout_cos_mean": m.metrics["heldout"]["cos_mean"]})
    db.drop_database(target)


if __name__ == "__main__":
    main()
