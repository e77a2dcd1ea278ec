"""Point-in-time retrieval: STAR's offline store against stock Feast, in the same process, same data.

    python bench/pit_retrieval.py [--members 100000] [--sizes 1000,10000,100000] [--stock-max 10000]

Builds a bench database (members with 3 attribute versions and 2 text
snapshots each, members/5 jobs with 2 versions and a posting), applies the catalog's
feature views, then times `get_historical_features(...).to_df()` for each entity-row count with both offline
stores, first on freshly loaded tables (no planner statistics yet, as right after a load), then after ANALYZE.
On fresh tables stock Feast goes quadratic, so there it runs only up to --stock-max rows. Prints one JSON line per
measurement and the ratios; writes bench/results/pit_retrieval.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchkit import BENCH_TABLES, entity_rows, seed_market, stock_offline_store
from star import db
from star.config import Settings
from star.pipeline import apply_features
from star.store.catalog import sync_versions
from star.store.feast_repo import open_store

def build(target, members: int) -> None:
    """Load the bench data with autovacuum off, so the tables start as freshly loaded data does: no statistics."""
    db.drop_database(target)
    db.ensure_database(target)
    db.migrate(target)
    with db.transaction(target) as conn:
        for table in BENCH_TABLES:
            conn.execute(f"ALTER TABLE star.{table} SET (autovacuum_enabled = false)")
        seed_market(conn, members, max(members // 5, 1))
        sync_versions(conn)
    apply_features(target)


def timed(store, entity_df, refs) -> tuple[float, pd.DataFrame]:
    started = time.perf_counter()
    df = store.get_historical_features(entity_df=entity_df, features=refs, full_feature_names=True).to_df()
    return time.perf_counter() - started, df


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--stock-max", type=int, default=10_000, help="largest size stock Feast is timed at")
    args = parser.parse_args()

    settings = Settings.from_env()
    target = db.server_target(settings).with_database("star_bench_pit")
    build(target, args.members)
    store = open_store(target, settings)
    refs = ["member_categorical_v1:seniority", "member_categorical_v1:location", "member_categorical_v1:band",
            "member_text_v1:text", "job_categorical_v1:employment_type", "job_categorical_v1:location",
            "job_text_v1:text"]
    results = []
    for stats in ("fresh", "analyzed"):
        if stats == "analyzed":
            with db.connect(target, autocommit=True) as conn:
                conn.execute("ANALYZE")
        rng = np.random.default_rng(0)
        timed(store, entity_rows(100, args.members, rng), refs)  # warm-up: registry, connections
        for n in [int(s) for s in args.sizes.split(",")]:
            entity_df = entity_rows(n, args.members, rng)
            seconds, ours = timed(store, entity_df, refs)
            row = {"stats": stats, "rows": n, "star_s": round(seconds, 3)}
            if n <= args.stock_max or stats == "analyzed":
                with stock_offline_store(store):
                    stock_seconds, stock = timed(store, entity_df, refs)
                key = ["member_id", "job_id", "event_timestamp", "label"]
                for df in (ours, stock):
                    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
                same = ours.sort_values(key).reset_index(drop=True).equals(
                    stock.sort_values(key).reset_index(drop=True))
                row.update(stock_s=round(stock_seconds, 3), speedup_vs_stock=round(stock_seconds / seconds, 1),
                           same_result=same)
            results.append(row)
            print(json.dumps(row), flush=True)
    summary = {"bench": "pit_retrieval", "members": args.members}
    for stats in ("fresh", "analyzed"):
        by_n = {r["rows"]: r for r in results if r["stats"] == stats}
        sizes = sorted(by_n)
        for small, large in zip(sizes, sizes[1:]):
            summary[f"{stats}_star_{large}_over_{small}"] = round(by_n[large]["star_s"] / by_n[small]["star_s"], 2)
            if "stock_s" in by_n[large] and "stock_s" in by_n[small]:
                summary[f"{stats}_stock_{large}_over_{small}"] = round(
                    by_n[large]["stock_s"] / by_n[small]["stock_s"], 2)
    print(json.dumps(summary), flush=True)
    plot(results, Path(__file__).parent / "results" / "pit_retrieval.png")
    db.drop_database(target)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for stats, marker in (("fresh", "o"), ("analyzed", "^")):
        mine = [r for r in results if r["stats"] == stats]
        stock = [r for r in mine if "stock_s" in r]
        ax.loglog([r["rows"] for r in mine], [r["star_s"] for r in mine], marker + "-",
                  label=f"STAR offline store ({stats} tables)")
        if stock:
            ax.loglog([r["rows"] for r in stock], [r["stock_s"] for r in stock], marker + "--",
                      label=f"stock Feast 0.67 ({stats} tables)")
    ax.set_xlabel("entity rows")
    ax.set_ylabel("seconds (get_historical_features + to_df)")
    ax.set_title("Point-in-time retrieval, 4 feature views (training-set shape)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(json.dumps({"plot": str(path)}))


if __name__ == "__main__":
    main()
