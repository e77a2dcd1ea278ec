"""`feast materialize` of one 200-d embedding view: STAR's online store + SQL engine vs stock Feast, same process.

    .venv/bin/python bench/materialize.py --rows 100000 [--dim 200] [--stock-rows 100000]

Each configuration gets its own fresh database holding the same vectors (random normal, float32), written straight
into a published vintage table (no model). Measured through FeatureStore.materialize (what `feast materialize`
runs):
    star      StarPostgreSQLOnlineStore + StarSQLComputeEngine (in-server INSERT ... SELECT; HNSW built after
              the rows are committed)
    star_copy StarPostgreSQLOnlineStore + Feast's local engine (client-side binary COPY into the stage)
    stock     Feast's postgres online store + local engine (--stock-rows of them: stock is slow)
The HNSW build inside the materialize is timed by the store itself and reported apart, so rows/s of the write
itself show too.
One JSON line per configuration, then the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import sys
import time
from datetime import datetime, timezone

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.benchkit import StoreTimes, emit, feast_env, fresh_database  # noqa: E402
from star import db  # noqa: E402
from star.pipeline import apply_features  # noqa: E402
from star.store import embeddings  # noqa: E402
from star.store.feast_repo import open_store  # noqa: E402

FAMILY, VIEW = "member_text_embedding", "member_text_embedding_v1"
CONFIGS = {
    "star": {"STAR_FEAST_MODE": "star"},
    "star_copy": {"STAR_FEAST_MODE": "star", "STAR_BATCH_ENGINE": "local"},
    "stock": {"STAR_FEAST_MODE": "stock"},
}


def load_vectors(target, rows: int, dim: int, seed: int = 0, *, family: str = FAMILY, entity: str = "member",
                 kind: str = "text_embedding") -> None:
    """A published vintage of `rows` entities (ids 1..rows) of `family`, COPYed in chunks (no source index: only
    what reads the online store is timed)."""
    rng = np.random.default_rng(seed)
    with db.connect(target) as conn:
        v, _ = embeddings.find_or_create(conn, family=family, entity=entity, dim=dim, kind=kind,
                                         fingerprint={"bench": rows}, model="bench")
        conn.commit()
        embeddings.ensure_staging(conn, v)
        for lo in range(0, rows, 50_000):
            ids = np.arange(lo + 1, min(rows, lo + 50_000) + 1)
            batch = pd.DataFrame({"entity_id": ids, "valid_from": pd.Timestamp("2025-01-01T00:00:00Z"),
                                  v.source_column: [f"m{i}" for i in ids]})
            embeddings.stage(conn, v, batch, rng.normal(size=(len(ids), dim)).astype(np.float32))
        conn.commit()
        cols = f"{v.key}, event_timestamp, {v.source_column}, embedding"
        conn.execute(f"INSERT INTO star.{v.name} ({cols}, is_current) SELECT {cols}, true FROM star.{v.name}__staging")
        conn.execute(f"DROP TABLE star.{v.name}__staging")
        conn.execute("UPDATE star.embedding_versions SET status = 'published' WHERE family = %s AND version = %s",
                     (family, v.version))
        conn.commit()
        conn.execute(f"ANALYZE star.{v.name}")


def run(name: str, rows: int, dim: int) -> dict:
    target = fresh_database(f"star_bench_materialize_{name}")
    try:
        with feast_env(CONFIGS[name]):
            load_vectors(target, rows, dim)
            with StoreTimes.attached() as times, contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                apply_features(target)
                store = open_store(target)
                started = time.perf_counter()
                store.materialize(datetime(1970, 1, 1, tzinfo=timezone.utc), datetime.now(timezone.utc),
                                  feature_views=[VIEW])
                seconds = time.perf_counter() - started
        with db.connect(target) as conn:
            (online,) = conn.execute(f"SELECT count(*) FROM feast_online.star_{VIEW}").fetchone()
        index = times.hnsw if name != "stock" else None
        write = seconds - (index or 0.0)
        return emit({"config": name, "rows": rows, "dim": dim, "online_rows": online, "seconds": round(seconds, 2),
                     "rows_per_s": round(rows / seconds), "hnsw_build_s": None if index is None else round(index, 2),
                     "rows_per_s_without_hnsw": round(rows / write) if write > 0 else None,
                     "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})
    finally:
        db.drop_database(target)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=200)
    ap.add_argument("--stock-rows", type=int, default=None, help="rows for stock Feast (default: min(rows, 100k))")
    ap.add_argument("--configs", default="star,star_copy,stock")
    args = ap.parse_args()
    results = {}
    for name in args.configs.split(","):
        rows = min(args.rows, args.stock_rows or 100_000) if name == "stock" else args.rows
        results[name] = run(name, rows, args.dim)
    if "stock" in results:
        emit({"ratios_vs_stock_rows_per_s": {n: round(r["rows_per_s"] / results["stock"]["rows_per_s"], 1)
                                             for n, r in results.items() if n != "stock"}})


if __name__ == "__main__":
    main()
