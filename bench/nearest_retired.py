"""star.nearest on a retired vintage against a native one at 20k-100k entities, in the same process (issue 14, item 4).

    python bench/nearest_retired.py [--entities 50000] [--dim 384] [--queries 300]

Real texts, cheap vectors (so the run fits in minutes on 2 cores): up to --entities distinct ESCO v1.1.1 and O*NET
29.2 texts (skill and occupation descriptions, task statements, alternate titles; ../shared/data) embedded twice by
latent semantic analysis — v2 (serving): TF-IDF of words and word pairs -> truncated SVD; v1 (retired): TF-IDF of
character 3-5-grams within words -> truncated SVD; both --dim, unit length. Two different real-text spaces, so
the ridge map v2 -> v1 is a real, imperfect fit. Both are written as vintages of member_text_embedding through
star/store/embeddings.py (staging, publish: HNSW m=16, ef_construction=64), the map is fitted (`star compat fit`)
and v1 is retired by the retire's SQL steps (plan, translate, flip; Feast is left out: this measures SQL).

    nearest_native_p50_ms / nearest_retired_p50_ms   star.nearest(family, 2 | 1, id, 10), interleaved query by
                                                     query after a warm pass
    ratio                                            retired / native p50 (goal <= 1.5)
    nearest_retired_overlap_at_10                    against exact search over v1's translated vectors (every
                                                     current v2 row through the map; numpy; ties count as hits)
    rerank_*                                         0005's search (k x 10 v2 candidates re-ranked through the
                                                     map), after dropping the translated copy
    translated_*                                     the copy: build seconds, table and index bytes
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from benchkit import emit, exact_translated, fresh_database, nearest_pair, overlap, real_texts, retire_in_sql
from star import db
from star.config import Settings
from star.store import embeddings as store
from star.store import translated

FAMILY = "member_text_embedding"


def lsa(texts: list[str], dim: int, **tfidf) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    x = TfidfVectorizer(sublinear_tf=True, min_df=2, dtype=np.float32, **tfidf).fit_transform(texts)
    e = TruncatedSVD(dim, algorithm="randomized", n_iter=3, random_state=0).fit_transform(x).astype(np.float32)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def write_vintage(target, name: str, vectors: np.ndarray) -> int:
    ts = pd.Timestamp("2025-01-01", tz="UTC")
    with db.connect(target) as conn:
        with conn.transaction():
            v, _ = store.find_or_create(conn, family=FAMILY, entity="member", dim=vectors.shape[1],
                                        kind="text_embedding", fingerprint={"bench": name}, model=name)
            store.ensure_staging(conn, v)
        for start in range(0, len(vectors), 10_000):
            ids = np.arange(start, min(start + 10_000, len(vectors)))
            store.stage(conn, v, pd.DataFrame({"entity_id": ids + 1, "valid_from": ts, "text_md5": name}),
                        vectors[ids])
        store.publish(conn, v, metrics={"bench": name})
    return v.version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()

    t0 = time.perf_counter()
    texts = real_texts(args.entities)
    v2 = lsa(texts, args.dim, ngram_range=(1, 2))
    v1 = lsa(texts, args.dim, analyzer="char_wb", ngram_range=(3, 5), max_features=200_000)
    emit({"phase": "texts and vectors", "entities": len(texts), "dim": args.dim,
          "seconds": round(time.perf_counter() - t0, 1)})

    target = fresh_database("star_bench_nearest", Settings.from_env())
    t0 = time.perf_counter()
    assert write_vintage(target, "lsa-char", v1) == 1 and write_vintage(target, "lsa-word", v2) == 2
    emit({"phase": "two vintages written and indexed", "seconds": round(time.perf_counter() - t0, 1)})
    m, _, build_s = retire_in_sql(target, FAMILY)
    emit({"phase": "compat fit v2 -> v1", **m.metrics["heldout"], "no_map_cos_mean": m.metrics.get("no_map_cos_mean")})

    rng = np.random.default_rng(0)
    queries = [int(i) for i in rng.choice(np.arange(1, len(texts) + 1), args.queries, replace=False)]
    with db.connect(target, autocommit=True) as conn:
        truth = exact_translated(conn, FAMILY, queries)
        native, retired, found = nearest_pair(conn, FAMILY, queries, warm=30)
        table, index = conn.execute(f"SELECT pg_table_size('star.{FAMILY}_v1__translated'), "
                                    f"pg_indexes_size('star.{FAMILY}_v1__translated')").fetchone()
        native_bytes = conn.execute(f"SELECT pg_table_size('star.{FAMILY}_v2') + "
                                    f"pg_indexes_size('star.{FAMILY}_v2')").fetchone()[0]
        conn.execute(f"DROP TABLE star.{translated.name(FAMILY, 1)}")  # 0005's search, for comparison
        rr_native, rr_retired, rr_found = nearest_pair(conn, FAMILY, queries, warm=30)
    emit({"summary": "nearest_retired", "entities": len(texts), "dim": args.dim, "queries": len(queries),
          "nearest_native_p50_ms": native["p50_ms"], "nearest_native_p99_ms": native["p99_ms"],
          "nearest_retired_p50_ms": retired["p50_ms"], "nearest_retired_p99_ms": retired["p99_ms"],
          "ratio": round(retired["p50_ms"] / native["p50_ms"], 3),
          "nearest_retired_overlap_at_10": overlap(found, truth),
          "rerank_native_p50_ms": rr_native["p50_ms"], "rerank_retired_p50_ms": rr_retired["p50_ms"],
          "rerank_ratio": round(rr_retired["p50_ms"] / rr_native["p50_ms"], 3),
          "rerank_overlap_at_10": overlap(rr_found, truth),
          "translated_build_seconds": build_s, "translated_table_bytes": table, "translated_index_bytes": index,
          "translated_bytes_per_entity": round((table + index) / len(texts), 1),
          "native_v2_bytes_per_entity": round(native_bytes / len(texts), 1),
          "map_heldout_cos_mean": m.metrics["heldout"]["cos_mean"]})
    db.drop_database(target)


if __name__ == "__main__":
    main()
