"""Serving at scale (issue 14): materialize, online reads, Feast similarity search, star.nearest on a retired vintage,
point-in-time training sets and footprint, each next to stock Feast and raw SQL measured in the same run.

    .venv/bin/python bench/serving.py [--rows 1000000] [--jobs ROWS/5] [--dim 200] [--real 200000]

Writes bench/results/serving.json, serving.md and serving.png (run it with --out to write elsewhere).

The market (members, jobs, attribute histories, text snapshots) is generated inside PostgreSQL (benchkit.SEED_SQL).
Vectors come from real text: up to --real distinct ESCO/O*NET texts (benchkit.real_texts) embedded by the shipped
MiniLM (384-d, mean pooling, 128 tokens; cached under bench/cache/). Row i takes text i mod --real; rows past
--real add Gaussian noise (norm 0.35 in the 384-d space: a near-paraphrase of a real text) before projecting:
    member_text_embedding v2 (serving)  PCA of the real MiniLM vectors to --dim, unit length
    member_text_embedding v1 (retired)  a fixed Gaussian projection to --dim: another space; the ridge map v2 -> v1
                                        (`star compat fit`) is a real, imperfect fit
    job_text_embedding v1               as member v2, rows offset by half the real texts
    *_graph_embedding v1                a Gaussian projection to 64-d (+ noise): stands in for GNN output
With --rows <= --real every vector is a real text's: recall is measured on real text only.

Figures (all in the JSON):
    materialize_rows_per_s     FeatureStore.materialize of member_text_embedding_v2 (what `feast materialize` runs),
                               rows / seconds until the rows are committed and served by get_online_features; the
                               HNSW build that follows inside the same call is hnsw_build_s, and
                               materialize_with_hnsw_rows_per_s counts it
    *_stock                    stock Feast (postgres online store, local engine) in a second database holding the
                               first --stock-rows members and their jobs (stock is slow: rows/s, same vectors)
    online_1_plus_100_p50_ms   get_online_features(...).to_dict() of 1 member + 100 jobs over 6 views (member
                               categorical, text and graph embeddings; job categorical, text and graph embeddings);
                               _raw_sql: the same rows by primary key on the online tables, a hand-written
                               reader timed alternately with Feast request by request (bench/online_reads.py);
                               online_same_result: every Feast answer (STAR's and stock's) equals the raw reader's
    feast_search_top10_*       retrieve_online_documents_v2 top-10 on member_text_embedding_v2; recall@10 against
                               exact cosine search in numpy over every row (ties with the 10th count as hits)
    nearest_*                  star.nearest(member_text_embedding, 2 | 1, id, 10), native v2 vs retired v1
                               (translated copy + HNSW), interleaved; overlap@10 against exact search over the
                               translated vectors
    pit_*                      get_historical_features(...).to_df() of --rows training rows (and a tenth of them)
    peak_rss_mb                this process; disk_* from pg_total_relation_size
"""

from __future__ import annotations

import argparse
import contextlib
import io
import resource
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from psycopg import sql
from tqdm import tqdm

from benchkit import (BENCH_TABLES, StoreTimes, emit, entity_rows, feast_mode, fresh_database, nearest_pair,
                      overlap, p50_p99, real_texts, retire_in_sql, seed_market, stock_offline_store)
from online_reads import measure as online_reads, open_store_as
from real_vectors import GRAPH_DIM, Spaces, minilm_vectors, unit
from serving_report import report
from star import db
from star.config import REPO_ROOT, Settings
from star.pipeline import apply_features
from star.store import embeddings as store
from star.store.catalog import sync_versions
from star.store.feast_repo import open_store

MEMBER_TEXT, JOB_TEXT = "member_text_embedding", "job_text_embedding"
SERVED = ["member_categorical_v1", "member_text_embedding_v2", "member_graph_embedding_v1", "job_categorical_v1",
          "job_text_embedding_v1", "job_graph_embedding_v1"]
PIT_REFS = ["member_categorical_v1:seniority", "member_categorical_v1:location", "member_categorical_v1:band",
            "member_text_v1:text", "job_categorical_v1:employment_type", "job_categorical_v1:location",
            "job_text_v1:text"]


# ---- plan: what fits, said before anything starts --------------------------------------------------------------
def footprint(rows: int, jobs: int, real: int, dim: int, stock_rows: int) -> dict:
    """Client memory and database disk the run needs (bytes), from per-row sizes measured at 100k."""
    vec = 4 * dim + 40  # a vector row (+ tuple header, key, timestamp)
    hnsw = 4 * dim + 16 * 2 * 8 + 64  # the vector again + m=16 neighbours on layer 0 (+ upper layers)
    per_member = (2 * vec + hnsw) + (vec + hnsw) * 2 + 3 * (4 * GRAPH_DIM + 40) + 4 * GRAPH_DIM + 400 + 600
    per_job = (vec + hnsw) * 2 + 2 * (4 * GRAPH_DIM + 40) + 500
    disk = rows * per_member + jobs * per_job + stock_rows * per_member * 1.2 + 2 * 2 ** 30  # + WAL
    memory = 4 * (rows * (3 * dim + 2 * GRAPH_DIM) + jobs * (dim + GRAPH_DIM) + real * 384) * 2.5 + 1.5 * 2 ** 30
    return {"disk_bytes": int(disk), "memory_bytes": int(memory)}


def check_fits(need: dict, pgdata: Path | None) -> dict:
    from star.data.synthetic_limits import available_bytes

    free_disk = shutil.disk_usage(pgdata if pgdata and pgdata.exists() else REPO_ROOT).free
    free_mem = available_bytes()
    plan = {"needs_disk_gb": round(need["disk_bytes"] / 2 ** 30, 1), "free_disk_gb": round(free_disk / 2 ** 30, 1),
            "needs_memory_gb": round(need["memory_bytes"] / 2 ** 30, 1),
            "available_memory_gb": None if free_mem is None else round(free_mem / 2 ** 30, 1)}
    problems = []
    if need["disk_bytes"] > free_disk:
        problems.append(f"disk: needs ~{plan['needs_disk_gb']} GB, {plan['free_disk_gb']} GB free")
    if free_mem is not None and need["memory_bytes"] > 0.8 * free_mem:
        problems.append(f"memory: needs ~{plan['needs_memory_gb']} GB, {plan['available_memory_gb']} GB available")
    if problems:
        raise SystemExit("bench/serving.py: this run does not fit here (" + "; ".join(problems) + "): pass a smaller "
                         "--rows, or free disk / memory")
    return plan


# ---- the vintages' vectors (from real text: real_vectors.py) ---------------------------------------------
def vintages(spaces: Spaces, members: int, jobs: int, chunk: int = 100_000):
    """Chunks of (member ids, member v1, member v2, member graph) and (job ids, job text, job graph)."""
    for lo in range(0, members, chunk):
        x = spaces.rows(min(chunk, members - lo), lo, seed=lo)
        yield "member", np.arange(lo + 1, lo + len(x) + 1), {
            (MEMBER_TEXT, 1): spaces.member_v1(x), (MEMBER_TEXT, 2): spaces.member_v2(x),
            ("member_graph_embedding", 1): spaces.graph_of(x, lo + 1)}
    for lo in range(0, jobs, chunk):
        x = spaces.rows(min(chunk, jobs - lo), len(spaces.real) // 2 + lo, seed=10 ** 9 + lo)
        yield "job", np.arange(lo + 1, lo + len(x) + 1), {
            (JOB_TEXT, 1): spaces.member_v2(x), ("job_graph_embedding", 1): spaces.graph_of(x, 2 * 10 ** 9 + lo)}


# ---- database ---------------------------------------------------------------------------------------------------
KINDS = {MEMBER_TEXT: "text_embedding", JOB_TEXT: "text_embedding", "member_graph_embedding": "graph_embedding",
         "job_graph_embedding": "graph_embedding"}


def build(target, members: int, jobs: int, spaces: Spaces, dim: int) -> dict:
    """Market + five vintages; v2 of member text published through star/store/embeddings.py (its source HNSW
    for star.nearest), the others written straight into their tables (no index: not searched here)."""
    out = {}
    t0 = time.perf_counter()
    with db.transaction(target) as conn:
        for table in BENCH_TABLES:  # loaded first, analyzed once after (as after a bulk load)
            conn.execute(f"ALTER TABLE star.{table} SET (autovacuum_enabled = false)")
        seed_market(conn, members, jobs)
        sync_versions(conn)
    with db.connect(target, autocommit=True) as conn:
        conn.execute("ANALYZE")
    out["load_market_s"] = round(time.perf_counter() - t0, 2)
    ts = pd.Timestamp("2025-01-01T00:00:00Z")
    t0 = time.perf_counter()
    with db.connect(target) as conn:
        made = {}
        for family, version in ((MEMBER_TEXT, 1), (MEMBER_TEXT, 2), (JOB_TEXT, 1), ("member_graph_embedding", 1),
                                ("job_graph_embedding", 1)):
            d = GRAPH_DIM if "graph" in family else dim
            v, _ = store.find_or_create(conn, family=family, entity=family.split("_")[0], dim=d, kind=KINDS[family],
                                        fingerprint={"bench": f"v{version}"}, model=f"bench-v{version}")
            assert v.version == version, (family, v.version)
            made[(family, version)] = v
            conn.commit()
        store.ensure_staging(conn, made[(MEMBER_TEXT, 2)])
        conn.commit()
        from pgvector.psycopg import register_vector
        register_vector(conn)
        total = members + jobs
        with tqdm(total=total, desc="write vintages", unit="entity") as bar:
            for entity, ids, chunk in vintages(spaces, members, jobs):
                for key, vectors in chunk.items():
                    v = made[key]
                    if key == (MEMBER_TEXT, 2):
                        store.stage(conn, v, pd.DataFrame({"entity_id": ids, "valid_from": ts,
                                                           "text_md5": [f"t{i}" for i in ids]}), vectors)
                        continue
                    with conn.transaction(), conn.cursor().copy(sql.SQL(
                            "COPY {t} ({k}, event_timestamp, {s}, embedding, is_current) FROM STDIN (FORMAT BINARY)"
                    ).format(t=v.table, k=sql.Identifier(v.key), s=sql.Identifier(v.source_column))) as cp:
                        cp.set_types(["bigint", "timestamptz", "text", "vector", "bool"])
                        for i, e in zip(ids, vectors):
                            cp.write_row((int(i), ts, f"t{i}", e, True))
                bar.update(len(ids))
        for key, v in made.items():
            if key != (MEMBER_TEXT, 2):
                conn.execute("UPDATE star.embedding_versions SET status = 'published', data_start = %s, "
                             "data_end = %s WHERE family = %s AND version = %s", (ts, ts, v.family, v.version))
                conn.execute(sql.SQL("ANALYZE {}").format(v.table))
        conn.commit()
        out["write_vintages_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '2GB'")
        store.publish(conn, made[(MEMBER_TEXT, 2)], metrics={"bench": "serving"})
        out["publish_member_v2_with_hnsw_s"] = round(time.perf_counter() - t0, 2)
    return out


def materialize(target, views: list[str]) -> dict:
    """FeatureStore.materialize of each view, one call each (what `feast materialize` runs): seconds, rows, phases."""
    fs = open_store(target)
    out = {}
    for view in tqdm(views, desc="materialize", unit="view"):
        with StoreTimes.attached() as phases, contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            t0 = time.perf_counter()
            fs.materialize(datetime(1970, 1, 1, tzinfo=timezone.utc), datetime.now(timezone.utc),
                           feature_views=[view])
            seconds = time.perf_counter() - t0
        with db.connect(target) as conn:
            (rows,) = conn.execute(sql.SQL("SELECT count(DISTINCT entity_key) FROM {}").format(
                sql.Identifier("feast_online", f"star_{view}"))).fetchone()
        out[view] = {"rows": rows, "seconds": round(seconds, 2), "hnsw_s": round(phases.hnsw, 2),
                     "served_s": round(seconds - phases.hnsw, 2)}
        emit({"phase": "materialize", "view": view, **out[view]})
    return out


def search(fs, vectors: np.ndarray, queries: list[int], k: int = 10, warm: int = 20) -> tuple[dict, dict]:
    """retrieve_online_documents_v2 top-k of member_text_embedding_v2: latency and the ids found per query."""
    def one(q):
        return fs.retrieve_online_documents_v2(features=["member_text_embedding_v2:embedding"],
                                               query=vectors[q - 1].tolist(), top_k=k).to_dict()["member_id"]
    for q in queries[:warm]:
        one(q)
    times, found = [], {}
    for q in queries:
        t0 = time.perf_counter()
        found[q] = one(q)
        times.append((time.perf_counter() - t0) * 1000)
    return p50_p99(times), found


def exact_top(vectors: np.ndarray, queries: list[int], k: int = 10) -> dict[int, set[int]]:
    """Exact cosine top-k (unit vectors) of each query id, with every id tied with the k-th."""
    out = {}
    for q in queries:
        d = 1 - vectors @ vectors[q - 1]
        kth = np.partition(d, k - 1)[k - 1]
        out[q] = {int(i) + 1 for i in np.nonzero(d <= kth + 1e-6)[0]}
    return out


def pit(target, members: int, jobs: int, sizes: list[int], *, stock: bool = False) -> dict:
    """get_historical_features(...).to_df() seconds per entity-row count; stock=True: Feast's own offline store."""
    fs = open_store(target)
    with stock_offline_store(fs) if stock else contextlib.nullcontext():
        rng = np.random.default_rng(0)
        fs.get_historical_features(entity_df=entity_rows(100, members, rng, jobs), features=PIT_REFS,
                                   full_feature_names=True).to_df()
        out = {}
        for n in sizes:
            df = entity_rows(n, members, rng, jobs)
            t0 = time.perf_counter()
            got = fs.get_historical_features(entity_df=df, features=PIT_REFS, full_feature_names=True).to_df()
            out[n] = round(time.perf_counter() - t0, 2)
            assert len(got) == n
            emit({"phase": "pit", "stock": stock, "rows": n, "seconds": out[n]})
    return out


def sizes(target) -> dict:
    with db.connect(target) as conn:
        def size(rel):
            return conn.execute("SELECT pg_total_relation_size(to_regclass(%s))", (rel,)).fetchone()[0]
        return {
            "disk_member_text_v2_source_mb": round(size(f"star.{MEMBER_TEXT}_v2") / 2 ** 20, 1),
            "disk_member_text_v2_online_mb": round(size(f"feast_online.star_{MEMBER_TEXT}_v2") / 2 ** 20, 1),
            "disk_member_text_v1_translated_mb": round(size(f"star.{MEMBER_TEXT}_v1__translated") / 2 ** 20, 1),
            "hnsw_member_text_v2_online_mb": round(conn.execute(
                "SELECT pg_relation_size(indexrelid) FROM pg_index WHERE indrelid = %s::regclass AND "
                "indexrelid::regclass::text LIKE '%%hnsw'", (f"feast_online.star_{MEMBER_TEXT}_v2",)).fetchone()[0]
                / 2 ** 20, 1),
            "disk_database_gb": round(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
                                      / 2 ** 30, 2)}


# ---- the run ----------------------------------------------------------------------------------------------------
def run(args) -> dict:
    settings = Settings.from_env()
    jobs = args.jobs or max(args.rows // 5, 1)
    stock_rows = min(args.rows, args.stock_rows)
    real_n = min(args.rows, args.real)
    plan = check_fits(footprint(args.rows, jobs, real_n, args.dim, stock_rows),
                      settings.pgdata if not settings.database_url else None)
    emit({"phase": "plan", "rows": args.rows, "jobs": jobs, "real_texts": real_n, "stock_rows": stock_rows, **plan})
    res = {"rows": args.rows, "jobs": jobs, "dim": args.dim, "real_text_vectors": real_n,
           "derived_vectors": max(args.rows - real_n, 0), "stock_rows": stock_rows}

    t0 = time.perf_counter()
    real = minilm_vectors(real_texts(real_n))
    res["embed_real_texts_s"] = round(time.perf_counter() - t0, 1)
    spaces = Spaces(real, args.dim)
    emit({"phase": "real text vectors", "texts": len(real), "seconds": res["embed_real_texts_s"]})

    target = fresh_database("star_bench_serving", settings)
    stock = fresh_database("star_bench_serving_stock", settings)
    try:
        res.update(build(target, args.rows, jobs, spaces, args.dim))
        emit({"phase": "built", **res})

        # point-in-time training sets: a tenth and all of --rows (linear?), stock at --stock-rows
        pit_sizes = sorted({max(args.rows // 10, 1000), args.rows})
        with feast_mode("star"):
            apply_features(target, settings)
            times = pit(target, args.rows, jobs, pit_sizes)
            res["pit_rows"], res["pit_s"] = args.rows, times[args.rows]
            res["pit_tenth_s"] = times[pit_sizes[0]]
            res["pit_linearity"] = round(times[args.rows] / times[pit_sizes[0]] / (args.rows / pit_sizes[0]), 2)
            served = materialize(target, SERVED)
        m = served["member_text_embedding_v2"]
        res.update(materialize_rows=m["rows"], materialize_rows_per_s=round(m["rows"] / m["served_s"]),
                   materialize_with_hnsw_rows_per_s=round(m["rows"] / m["seconds"]), hnsw_build_s=m["hnsw_s"],
                   materialize_all_views_s=round(sum(v["seconds"] for v in served.values()), 1))

        # stock Feast on the first --stock-rows members and their jobs, same vectors
        stock_jobs = max(stock_rows // 5, 1)
        build(stock, stock_rows, stock_jobs, spaces, args.dim)
        with feast_mode("stock"):
            apply_features(stock, settings)
            stock_served = materialize(stock, SERVED)
            ms_ = stock_served["member_text_embedding_v2"]
            res["materialize_rows_per_s_stock"] = round(ms_["rows"] / ms_["seconds"])
        with feast_mode("star"):  # stock Feast's offline store on the same tables, at --stock-rows entity rows
            res["pit_stock_rows"] = stock_rows
            res["pit_stock_s"] = pit(target, args.rows, jobs, [stock_rows], stock=True)[stock_rows]
            res["pit_star_at_stock_rows_s"] = pit(target, args.rows, jobs, [stock_rows])[stock_rows]
        res["materialize_speedup_vs_stock"] = round(
            res["materialize_rows_per_s"] / res["materialize_rows_per_s_stock"], 1)

        # online reads: 1 member + 100 jobs over the 6 views
        # online reads: 1 member + 100 jobs over the 6 views, ids both databases hold (their rows are equal)
        rng = np.random.default_rng(1)
        members = [int(m) for m in rng.integers(1, stock_rows + 1, size=args.repeats)]
        job_lists = [[int(j) for j in rng.choice(stock_jobs, 100, replace=False) + 1] for _ in range(args.repeats)]
        refs = [f"{v}:{f.name}" for v in SERVED for f in open_store_as(target, "star").get_feature_view(v).features]
        reads = online_reads(target, members, job_lists, refs, args.repeats, stock_target=stock)
        emit({"phase": "online reads", **reads})
        res.update(online_1_plus_100_p50_ms=reads["star"]["p50_ms"], online_1_plus_100_p99_ms=reads["star"]["p99_ms"],
                   online_1_plus_100_p50_ms_raw_sql=reads["raw_sql"]["p50_ms"],
                   online_1_plus_100_p50_ms_stock=reads["stock"]["p50_ms"],
                   online_1_plus_100_p50_ms_raw_sql_during_stock=reads["raw_sql_during_stock"]["p50_ms"],
                   online_ratio_vs_raw_sql=reads["star_over_raw_p50"], online_same_result=reads["same_result"])

        # Feast similarity search: STAR's HNSW at --rows, stock's scan at --stock-rows
        v2 = np.concatenate([c[(MEMBER_TEXT, 2)] for e, _, c in vintages(spaces, args.rows, 0)])
        queries = [int(q) for q in rng.choice(args.rows, args.queries, replace=False) + 1]
        with feast_mode("star"):
            lat, found = search(open_store(target), v2, queries)
        truth = exact_top(v2, queries)
        res.update(feast_search_top10_p50_ms=lat["p50_ms"], feast_search_top10_p99_ms=lat["p99_ms"],
                   feast_search_recall_at_10=overlap(found, truth))
        real_q = [q for q in queries if q <= real_n]
        res["feast_search_recall_at_10_real_text_queries"] = overlap({q: found[q] for q in real_q}, truth)
        stock_q = [q for q in queries if q <= stock_rows][:30]
        with feast_mode("stock"):
            lat_s, found_s = search(open_store(stock), v2[:stock_rows], stock_q, warm=3)
        res.update(feast_search_top10_p50_ms_stock=lat_s["p50_ms"], feast_search_stock_rows=stock_rows,
                   feast_search_recall_at_10_stock=overlap(found_s, exact_top(v2[:stock_rows], stock_q)))
        del v2
        emit({"phase": "feast search", **{k: v for k, v in res.items() if k.startswith("feast_search")}})

        # star.nearest on the retired v1 (translated copy) against the native v2
        cmap, res["compat_fit_s"], res["translated_build_s"] = retire_in_sql(target, MEMBER_TEXT)
        res["compat_heldout_cos_mean"] = cmap.metrics["heldout"]["cos_mean"]
        with db.connect(target, autocommit=True) as conn:
            native, retired, found = nearest_pair(conn, MEMBER_TEXT, queries, warm=30)
        translated = np.empty((args.rows, args.dim), dtype=np.float32)
        with db.connect(target) as conn:
            from pgvector.psycopg import register_vector
            register_vector(conn)
            cur = conn.cursor(name="translated")  # streamed into one array
            cur.execute(f"SELECT member_id, embedding FROM star.{MEMBER_TEXT}_v1__translated ORDER BY 1")
            n = 0
            for n, (i, e) in enumerate(cur, 1):
                assert i == n, (i, n)
                translated[i - 1] = e.to_numpy() if hasattr(e, "to_numpy") else e
        assert n == args.rows
        translated = unit(translated)
        res.update(nearest_native_p50_ms=native["p50_ms"], nearest_native_p99_ms=native["p99_ms"],
                   nearest_retired_p50_ms=retired["p50_ms"], nearest_retired_p99_ms=retired["p99_ms"],
                   nearest_retired_ratio=round(retired["p50_ms"] / native["p50_ms"], 2),
                   nearest_retired_overlap_at_10=overlap(found, {q: t - {q} for q, t in
                                                                 exact_top(translated, queries, 11).items()}))
        del translated
        res.update(sizes(target))
    finally:
        if not args.keep:
            db.drop_database(target)
            db.drop_database(stock)
    res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="members (and rows of every member view)")
    ap.add_argument("--jobs", type=int, default=None, help="jobs (default rows / 5)")
    ap.add_argument("--dim", type=int, default=200, help="text embedding dimension")
    ap.add_argument("--real", type=int, default=200_000, help="real texts embedded by MiniLM (at most ~209k)")
    ap.add_argument("--stock-rows", type=int, default=20_000, help="members served by stock Feast")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    ap.add_argument("--keep", action="store_true", help="keep the two databases (star_bench_serving[_stock])")
    args = ap.parse_args()
    started = time.perf_counter()
    res = run(args)
    res["measured_at"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    res["total_s"] = round(time.perf_counter() - started, 1)
    report(res, args.out)
    emit({"summary": "serving", **res})


if __name__ == "__main__":
    main()
