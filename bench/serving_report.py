"""bench/serving.py's report: the JSON as measured, a markdown table of every figure next to stock Feast, raw SQL
and the issue's goal, and a plot."""

from __future__ import annotations

import json
from pathlib import Path

ROWS = [  # label, STAR key, stock key, raw SQL key, unit, goal
    ("materialize, rows served (rows/s)", "materialize_rows_per_s", "materialize_rows_per_s_stock", None,
     "rows/s", ">= 100k (floor 40k, 15x stock)"),
    ("materialize incl. HNSW build (rows/s)", "materialize_with_hnsw_rows_per_s", "materialize_rows_per_s_stock",
     None, "rows/s", ""),
    ("get_online_features 1+100, 6 views, p50", "online_1_plus_100_p50_ms", "online_1_plus_100_p50_ms_stock",
     "online_1_plus_100_p50_ms_raw_sql", "ms", "<= 1.5x raw SQL (goal 1.3x)"),
    ("retrieve_online_documents_v2 top-10, p50", "feast_search_top10_p50_ms", "feast_search_top10_p50_ms_stock",
     None, "ms", "<= 3 ms at 1M"),
    ("retrieve_online_documents_v2 top-10, p99", "feast_search_top10_p99_ms", None, None, "ms", "<= 8 ms at 1M"),
    ("search recall@10", "feast_search_recall_at_10", "feast_search_recall_at_10_stock", None, "", ">= 0.98"),
    ("star.nearest retired v1, p50", "nearest_retired_p50_ms", None, "nearest_native_p50_ms", "ms",
     "<= 1.5x native (raw SQL column: native v2)"),
    ("star.nearest retired overlap@10", "nearest_retired_overlap_at_10", None, None, "", ">= 0.95"),
    ("point-in-time training set of --rows rows (s)", "pit_s", None, None, "s", "<= 30 s at 1M rows, linear"),
    ("point-in-time training set of --stock-rows rows (s)", "pit_star_at_stock_rows_s", "pit_stock_s", None, "s",
     ""),
]


def report(res: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    lines = [f"# bench/serving.py --rows {res['rows']}", "",
             f"{res['rows']:,} members, {res['jobs']:,} jobs, {res['dim']}-d text vectors "
             f"({res['real_text_vectors']:,} real MiniLM text vectors, {res['derived_vectors']:,} derived); "
             "stock Feast "
             f"on the first {res['stock_rows']:,} members. Measured {res.get('measured_at', '')}.", "",
             "| figure | STAR | stock Feast | raw SQL | goal |", "|---|---|---|---|---|"]
    for label, key, stock, raw, _, goal in ROWS:
        def cell(k):
            return "" if k is None or res.get(k) is None else f"{res[k]:,}"
        lines.append(f"| {label} | {cell(key)} | {cell(stock)} | {cell(raw)} | {goal} |")
    lines += ["", "Other figures: " + ", ".join(f"`{k}` {v}" for k, v in res.items() if k not in
                                                 {r[1] for r in ROWS} | {r[2] for r in ROWS} | {r[3] for r in ROWS}),
              "", "Plot: serving.png. Reproduce: `.venv/bin/python bench/serving.py --rows "
              f"{res['rows']}`."]
    (out / "serving.md").write_text("\n".join(lines) + "\n")
    plot(res, out / "serving.png")


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("materialize (rows/s, log)", [("STAR", res["materialize_rows_per_s"]),
                                             ("STAR + HNSW", res["materialize_with_hnsw_rows_per_s"]),
                                             ("stock", res["materialize_rows_per_s_stock"])], True),
              ("get_online_features 1+100 p50 (ms)", [("STAR", res["online_1_plus_100_p50_ms"]),
                                                      ("raw SQL", res["online_1_plus_100_p50_ms_raw_sql"]),
                                                      ("stock", res["online_1_plus_100_p50_ms_stock"])], False),
              ("Feast top-10 search p50 (ms, log)", [("STAR", res["feast_search_top10_p50_ms"]),
                                                     ("stock*", res["feast_search_top10_p50_ms_stock"])], True),
              ("star.nearest p50 (ms)", [("native v2", res["nearest_native_p50_ms"]),
                                         ("retired v1", res["nearest_retired_p50_ms"])], False)]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    for ax, (title, bars, log) in zip(axes, panels):
        ax.bar([b[0] for b in bars], [b[1] for b in bars], color=["tab:blue", "tab:green", "tab:gray"][:len(bars)])
        for i, (_, v) in enumerate(bars):
            ax.text(i, v, f"{v:,.3g}", ha="center", va="bottom", fontsize=8)
        if log:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"bench/serving.py --rows {res['rows']:,} (stock Feast at {res['stock_rows']:,} rows)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
