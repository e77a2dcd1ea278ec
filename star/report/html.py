"""ReportData -> out/index.html + out/*.png: one section per question, a plot and a table where there is data, and
the command that would produce it where there is none. Plain strings; every value goes through html.escape."""

from __future__ import annotations

import json
from datetime import datetime
from html import escape
from pathlib import Path

from star.report import plots
from star.report.collect import ReportData

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
td.long { max-width: 300px; overflow-wrap: anywhere; font-size: 0.9em; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; } .missing { color: #a33; font-style: italic; }
.meta { color: #555; font-size: 0.85em; } pre { font-size: 0.75em; white-space: pre-wrap; max-width: 520px; }
"""


class Raw(str):
    """Markup made here (already escaped), put into a table cell as it is."""


def _cell(value) -> str:
    if isinstance(value, Raw):
        return f"<td>{value}</td>"
    if value is None:
        return "<td>-</td>"
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, float):
        return f'<td class="num">{value:,.0f}</td>' if abs(value) >= 1e4 else f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value:,}</td>'
    if isinstance(value, datetime):
        return f"<td>{escape(value.strftime('%Y-%m-%d %H:%M:%S'))}</td>"
    text = str(value)
    return f'<td class="long">{escape(text)}</td>' if len(text) > 40 else f"<td>{escape(text)}</td>"


def table(header: list[str], rows: list[list], caption: str | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(name: str, alt: str) -> str:
    return f'<p><img src="{escape(name)}" alt="{escape(alt)}"></p>'


def _missing(text: str) -> str:
    return f'<p class="missing">{escape(text)}</p>'


def _meta(text: str) -> str:
    return f'<p class="meta">{escape(text)}</p>'


def _pct(x) -> str | None:
    return None if x is None else f"{x:+.2%}"


def text_section(data: ReportData, out: Path) -> str:
    h = "<h2 id='text'>Text tower: training modes compared (Table-2 analogue)</h2>"
    elsewhere = (f"{data.text_runs_elsewhere} text training run(s) under {data.home}/models/text were trained "
                 "against another database (not in star.text_models here): left out" if data.text_runs_elsewhere
                 else "")
    if not data.text_runs:
        return h + _missing("no text training run recorded" + (" for this database" if elsewhere else "")
                            + "; run `star text train`") + (_meta(elsewhere) if elsewhere else "")
    newest = data.text_runs[0]
    c = newest["comparison"]
    rows = [[r["model"], r["val_auc"], "baseline" if r["model"] == "frozen_head" else _pct(r["relative_to_frozen"]),
             r.get("val_auc_cosine"), r.get("steps"), c.get("val_rows")] for r in c["rows"]]
    plots.text_comparison(c, out / "text_table2.png")
    window = " .. ".join(c.get("val_window") or [])
    base = (c.get("model_config") or {}).get("model_dir", "")
    parts = [h, _meta(f"newest run {newest['path']}; validation window {window}; {c.get('val_rows')} validation "
                      f"pairs, {c.get('train_rows')} training pairs; base model {base}"),
             table(["mode", "val AUC", "vs frozen", "cosine AUC", "steps", "validation pairs"], rows),
             _img("text_table2.png", "validation AUC per text training mode"),
             _meta("vintages embedded with this run's model: " + (", ".join(newest["vintages"]) or "none yet "
                                                                  "(`star text embed`)"))]
    if elsewhere:
        parts.append(_meta(elsewhere))
    if len(data.text_runs) > 1:
        earlier = [[r["run"], *(next((x["val_auc"] for x in r["comparison"]["rows"] if x["model"] == mode), None)
                                for mode in ("frozen_head", "bce", "bce+contrastive")),
                    r["comparison"].get("val_rows"), ", ".join(r["vintages"])] for r in data.text_runs]
        parts.append(table(["run", "frozen_head", "bce", "bce+contrastive", "validation pairs", "vintages"], earlier,
                           "every recorded run, newest first (val AUC per mode)"))
    return "".join(parts)


def graph_section(data: ReportData, out: Path) -> str:
    h = "<h2 id='graph'>Graph tower: ablation with cold start (Table-4 analogue)</h2>"
    if not data.graph_runs:
        return h + _missing("no graph training run recorded; run `star graph train --ablation`")
    newest = data.graph_runs[0]
    report, w = newest["ablation"], newest["ablation"].get("window", {})
    rows = [[r["label"], task, m["auc"], _pct(m.get("auc_lift")), m["cold_start_auc"],
             _pct(m.get("cold_start_auc_lift")), m["pairs"], m["cold_start_pairs"]]
            for r in report["rows"] for task, m in r["tasks"].items()]
    plots.ablation(report, out / "graph_table4.png")
    parts = [h, _meta(f"newest run {newest['path']}; later window ({w.get('start')}, {w.get('end')}]; cold start = "
                      f"members with <= 1 interaction by the cutoff ({w.get('cold_start_members')} of "
                      f"{w.get('members')}); {w.get('negatives_per_positive')} negatives per positive"),
             table(["model", "task", "AUC", "vs GNN-categorical", "cold-start AUC", "vs GNN-categorical", "pairs",
                    "cold-start pairs"], rows),
             _img("graph_table4.png", "AUC per graph variant, all members and cold start")]
    if len(report["rows"]) < 4:
        parts.append(_meta("only the variants a plain run trains; `star graph train --ablation` adds every Table-4 "
                           "variant"))
    parts.append(_meta("vintages embedded with this run's model: " + (", ".join(newest["vintages"]) or
                                                                      "none yet (`star graph embed`)")))
    return "".join(parts)


def _lineage(v: dict) -> str:
    m = v["metrics"] or {}
    source = m.get("adapter_dir") or m.get("model_dir")
    parts = [f"from {source}" if source and source != v["model"] else ("base model" if "adapter_dir" in m else "")]
    if m.get("weights_sha256"):
        parts.append(f"weights sha256 {m['weights_sha256'][:12]}")
    if m.get("text_versions"):
        parts.append(f"text versions {m['text_versions']}")
    return "; ".join(p for p in parts if p)


def _details(config: dict) -> Raw:
    """The full config, folded: the kind shows, the rest opens on a click (and is in the page's text)."""
    kind = escape(str((config or {}).get("kind", "config")))
    body = escape(json.dumps(config, default=str, sort_keys=True, indent=1))
    return Raw(f"<details><summary>{kind}</summary><pre>{body}</pre></details>")


def vintages_section(data: ReportData, out: Path) -> str:
    h = "<h2 id='vintages'>Embedding vintages: lineage and status over time</h2>"
    if not data.vintages:
        return h + _missing("no embedding vintage in the registry; run `star text embed` or `star graph embed`")
    plots.timeline(data.vintages, out / "vintages.png")
    rows = [[v["family"], v["version"], v["status"], v["created_at"], v["model"], _lineage(v), v["data_end"],
             v["served_from"] and f"v{v['served_from']}", v["dim"], v["feature_view"],
             _details(v["config"])] for v in data.vintages]
    return "".join([h, _img("vintages.png", "embedding vintages on a time line, by status"),
                    table(["family", "version", "status", "created (UTC)", "model", "lineage", "data end",
                           "served from", "dim", "feature view", "config"], rows)])


def compat_section(data: ReportData, out: Path) -> str:
    h = "<h2 id='compat'>Compatibility maps and the parity gate, per hop</h2>"
    parts = [h]
    fitted = [m for m in data.maps if (m["fit_metrics"] or {}).get("heldout")]
    if data.maps:
        rows = []
        for m in data.maps:
            f, held = m["fit_metrics"] or {}, (m["fit_metrics"] or {}).get("heldout") or {}
            method = f.get("method") or ("composed" if f.get("composed") else None)
            rows.append([m["family"], f"v{m['from_version']} -> v{m['to_version']}", method, held.get("cos_mean"),
                         held.get("cos_p5"), held.get("r2"), f.get("no_map_cos_mean"), f.get("shared"),
                         f.get("holdout_rows"), m["created_at"]])
        parts.append(table(["family", "hop", "method", "held-out cos mean", "cos p5", "r2", "no map cos mean",
                            "shared rows", "held-out rows", "fitted (UTC)"], rows))
        if fitted:
            plots.compat_fits(fitted, out / "compat.png")
            parts.append(_img("compat.png", "held-out cosine of every fitted map"))
    else:
        parts.append(_missing("no compatibility map stored; run `star compat fit FAMILY --from K --to J`"))
    if data.gates:
        rows = []
        for g in data.gates:
            r, p = g["report"], g["report"].get("parity") or {}
            rows.append([g["family"], g["version"], g["status"], ", ".join(r.get("maps", [])), p.get("auc_native"),
                         p.get("auc_translated"), p.get("auc_no_map"), p.get("delta_auc"), p.get("rows_scored"),
                         r.get("passed"), "; ".join(r.get("failures") or [])])
        plots.parity(data.gates, out / "parity.png")
        parts += [table(["family", "version", "status", "maps", "AUC native", "AUC translated", "AUC no map",
                         "delta AUC", "rows", "passed", "failures"], rows, "parity gate reports"),
                  _img("parity.png", "ranker AUC native vs translated per gated vintage")]
    else:
        parts.append(_missing("no parity-gate report stored; publish a candidate vintage through the gate with "
                              "`star versions publish FAMILY VERSION --ranker DIR`"))
    return "".join(parts)


SERVING_ROWS = (("members", "rows"), ("jobs", "jobs"), ("dimension", "dim"),
                ("materialize rows/s", "materialize_rows_per_s"),
                ("materialize rows/s, stock Feast", "materialize_rows_per_s_stock"),
                ("get_online_features 1+100 p50 ms", "online_1_plus_100_p50_ms"),
                ("get_online_features 1+100 p99 ms", "online_1_plus_100_p99_ms"),
                ("same, raw SQL p50 ms", "online_1_plus_100_p50_ms_raw_sql"),
                ("same, stock Feast p50 ms", "online_1_plus_100_p50_ms_stock"),
                ("Feast search top-10 p50 ms", "feast_search_top10_p50_ms"),
                ("Feast search recall@10", "feast_search_recall_at_10"),
                ("star.nearest native p50 ms", "nearest_native_p50_ms"),
                ("star.nearest retired p50 ms", "nearest_retired_p50_ms"),
                ("point-in-time training set s", "pit_s"), ("measured", "measured_at"))


def serving_section(data: ReportData, out: Path) -> str:
    h = "<h2 id='serving'>Serving benchmark</h2>"
    if data.serving is None:
        return h + _missing(f"no serving benchmark at {data.serving_path}; run `python bench/serving.py`")
    res = data.serving
    plots.serving(res, out / "serving.png")
    return "".join([h, _meta(f"from {data.serving_path}"),
                    table(["figure", "value"], [[label, res.get(key)] for label, key in SERVING_ROWS
                                                if res.get(key) is not None]),
                    _img("serving.png", "serving latencies")])


PLOTS = ("text_table2.png", "graph_table4.png", "vintages.png", "compat.png", "parity.png", "serving.png")
SECTIONS = {"text": text_section, "graph": graph_section, "vintages": vintages_section, "compat": compat_section,
            "serving": serving_section}
TITLES = {"text": "Text tower (Table 2)", "graph": "Graph tower (Table 4)", "vintages": "Vintages",
          "compat": "Maps and parity", "serving": "Serving"}


def render(data: ReportData, out: Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in PLOTS:  # a plot of a section that has no data any more must not linger
        (out / name).unlink(missing_ok=True)
    body = "".join(section(data, out) for section in SECTIONS.values())
    toc = " | ".join(f"<a href='#{k}'>{escape(t)}</a>" for k, t in TITLES.items())
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>STAR report</title>"
            f"<style>{STYLE}</style></head><body><h1>STAR report</h1>"
            + _meta(f"database {data.database}; runs under {data.home}; written {data.generated}")
            + f"<p>{toc}</p>{body}</body></html>\n")
    path = out / "index.html"
    path.write_text(page)
    return path
