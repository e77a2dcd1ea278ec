"""The report's PNG plots (matplotlib, Agg), also used by `star text train` and `star graph train` for theirs.

Every bar carries its value and the number of pairs (or rows) behind it; value axes start at 0 (or below, for a
negative cosine), so no bar is cut off and a small difference is not drawn as a large one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

STATUS_COLOURS = {"building": "#bbbbbb", "candidate": "#dd8452", "published": "#55a868", "deprecated": "#c4a000",
                  "retired": "#c44e52"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def grouped_bars(ax, groups: list[str], series: list[tuple[str, list, list]], *, ylabel: str, top: float = 1.0,
                 digits: int = 3, count_name: str = "n") -> None:
    """Bars per group, one per series (name, values, counts); each labelled with its value and count. A missing
    value (None) is drawn as an empty slot labelled n/a."""
    x = np.arange(len(groups))
    width = 0.8 / max(len(series), 1)
    values = [v for _, vals, _ in series for v in vals if v is not None]
    low = min(0.0, min(values, default=0.0))
    for k, (name, vals, counts) in enumerate(series):
        heights = [0.0 if v is None else float(v) for v in vals]
        bars = ax.bar(x + (k - (len(series) - 1) / 2) * width, heights, width, label=name)
        labels = [f"{_fmt(v, digits)}\n{count_name}={c}" if c is not None else _fmt(v, digits)
                  for v, c in zip(vals, counts)]
        ax.bar_label(bars, labels, fontsize=7, padding=2)
    ax.set_xticks(x, groups, rotation=15 if len(groups) > 2 else 0, ha="right" if len(groups) > 2 else "center",
                  fontsize=8)
    ax.set_ylim(low - (0.05 if low < 0 else 0), max(top, max(values, default=0.0)) * 1.18)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel(ylabel)
    if len(series) > 1:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: never over a bar


def text_comparison(result: dict, path: Path, title: str = "text tower: frozen vs fine-tuned") -> Path:
    """Table-2 analogue: validation AUC of each training mode (head and cosine), same pairs for all."""
    plt = _pyplot()
    rows = result["rows"]
    n = [result.get("val_rows")] * len(rows)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(rows) + 2), 3.6))
    grouped_bars(ax, [r["model"] for r in rows], [("match head", [r["val_auc"] for r in rows], n),
                                                  ("cosine", [r.get("val_auc_cosine") for r in rows], n)],
                 ylabel="validation AUC", count_name="pairs")
    ax.set_title(f"{title} ({result.get('val_rows')} validation pairs)", fontsize=9)
    return _save(fig, path)


def ablation(report: dict, path: Path) -> Path:
    """Table-4 analogue: AUC per variant on the later window, all members vs cold start, one panel per task."""
    plt = _pyplot()
    rows = report["rows"]
    tasks = list(rows[0]["tasks"]) if rows else []
    cols = min(len(tasks), 2) or 1
    nrows = -(-max(len(tasks), 1) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(max(5.5, 1.5 * len(rows) + 2) * cols, 4.2 * nrows),
                             squeeze=False)
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    for ax, task in zip(axes.flat, tasks):
        m = [r["tasks"][task] for r in rows]
        grouped_bars(ax, [r["label"] for r in rows],
                     [("all members", [t["auc"] for t in m], [t["pairs"] for t in m]),
                      ("cold start", [t["cold_start_auc"] for t in m], [t["cold_start_pairs"] for t in m])],
                     ylabel="AUC on the later window", count_name="pairs")
        ax.set_title(task, fontsize=9)
    return _save(fig, path)


def timeline(vintages: list[dict], path: Path) -> Path:
    """Every vintage at its creation time, one line per family, coloured by status; retired ones name the vintage
    they are served from."""
    import matplotlib.dates as mdates

    plt = _pyplot()
    families = sorted({v["family"] for v in vintages})
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.7 * len(families)))
    seen: dict[str, int] = {}
    for v in vintages:
        y = families.index(v["family"])
        nth = seen[v["family"]] = seen.get(v["family"], -1) + 1  # alternate above / below: close vintages overlap
        ax.scatter([v["created_at"]], [y], s=90, color=STATUS_COLOURS.get(v["status"], "#4c72b0"),
                   edgecolor="black", zorder=3)
        label = f"v{v['version']} {v['status']}" + (f" (from v{v['served_from']})" if v["served_from"] else "")
        ax.annotate(label, (v["created_at"], y), textcoords="offset points", xytext=(0, 9 if nth % 2 == 0 else -16),
                    ha="center", fontsize=7)
    ax.set_yticks(range(len(families)), families, fontsize=8)
    ax.set_ylim(-0.6, len(families) - 0.2)
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    for status, colour in STATUS_COLOURS.items():
        ax.scatter([], [], color=colour, edgecolor="black", label=status)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("embedding vintages by creation time (UTC)", fontsize=9)
    return _save(fig, path)


def compat_fits(maps: list[dict], path: Path) -> Path:
    """Held-out row cosine of every fitted map (mean, 5th percentile) next to using no map, per hop."""
    plt = _pyplot()
    hops = [f"{m['family']}\nv{m['from_version']}->v{m['to_version']}" for m in maps]
    held = [(m["fit_metrics"] or {}).get("heldout") or {} for m in maps]
    n = [h.get("n") for h in held]
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(maps) + 2), 3.8))
    grouped_bars(ax, hops, [("cos mean", [h.get("cos_mean") for h in held], n),
                            ("cos p5", [h.get("cos_p5") for h in held], n),
                            ("no map, cos mean", [(m["fit_metrics"] or {}).get("no_map_cos_mean") for m in maps],
                             [(m["fit_metrics"] or {}).get("shared") for m in maps])],
                 ylabel="held-out row cosine", count_name="rows")
    ax.set_title("compatibility maps: W e_new + b vs the old vectors (held-out rows)", fontsize=9)
    return _save(fig, path)


def parity(gates: list[dict], path: Path) -> Path:
    """The parity gate: the frozen ranker's AUC with native vs translated (and unmapped) vectors, per vintage."""
    plt = _pyplot()
    names = [f"{g['family']} v{g['version']}" for g in gates]
    p = [g["report"].get("parity") or {} for g in gates]
    n = [x.get("rows_scored") for x in p]
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(gates) + 2), 3.8))
    grouped_bars(ax, names, [("native (old vintage)", [x.get("auc_native") for x in p], n),
                             ("translated (new through map)", [x.get("auc_translated") for x in p], n),
                             ("new, no map", [x.get("auc_no_map") for x in p], n)],
                 ylabel="ranker AUC, same held-out rows", count_name="rows")
    ax.set_title("parity gate per gated vintage", fontsize=9)
    return _save(fig, path)


SERVING_PANELS = (  # title, [(bar, key)]
    ("get_online_features 1+100, p50 (ms)", [("STAR", "online_1_plus_100_p50_ms"),
                                             ("raw SQL", "online_1_plus_100_p50_ms_raw_sql"),
                                             ("stock Feast", "online_1_plus_100_p50_ms_stock")]),
    ("Feast top-10 search (ms)", [("p50", "feast_search_top10_p50_ms"), ("p99", "feast_search_top10_p99_ms"),
                                  ("stock p50", "feast_search_top10_p50_ms_stock")]),
    ("star.nearest p50 (ms)", [("native", "nearest_native_p50_ms"), ("retired", "nearest_retired_p50_ms")]),
)


def serving(res: dict, path: Path) -> Path:
    """Serving latencies of bench/serving.py, linear axes from 0, every bar labelled."""
    plt = _pyplot()
    panels = [(t, [(b, res[k]) for b, k in bars if res.get(k) is not None]) for t, bars in SERVING_PANELS]
    panels = [p for p in panels if p[1]]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.4), squeeze=False)
    for ax, (title, bars) in zip(axes[0], panels):
        grouped_bars(ax, [b for b, _ in bars], [("", [v for _, v in bars], [None] * len(bars))], ylabel="ms",
                     top=0.0, digits=2)
        ax.set_title(title, fontsize=9)
    rows = res.get("rows")
    title = f"bench/serving.py at {rows:,} members" if isinstance(rows, int) else "bench/serving.py"
    if isinstance(res.get("stock_rows"), int):
        title += f" (stock Feast at {res['stock_rows']:,})"
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)

