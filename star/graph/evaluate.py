"""Evaluate graph embeddings on a later time window: the Table-4-style ablation of the STAR paper.

    graph at cutoff T --train_gnn per variant--> member / job embeddings from the graph at T
    star.interactions in (T, T + window], member and job both nodes at T --> positives per task
    `negatives` (default 5) negatives per positive: jobs drawn from the window's positives (popularity-matched, so
    the AUC measures matching, not which jobs were new or busy); several per positive lower the AUC's sampling noise
    cold start: members with <= 1 member -> job interaction at or before T

    variants   gnn_categorical   GNN, categorical + ID inputs (baseline)
               gnn_text          GNN, categorical + ID + text
               gnn_text_only     GNN, ID + text (text - categorical)
               text_cosine       no GNN: cosine of the text embeddings (reference)

Jobs posted after T are not in the graph at T and so not in the window's pairs (document, not hide: the printed
table counts the pairs used).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from star.common import roc_auc
from star.config import DbTarget
from star.db import connect
from star.errors import ConfigError
from star.graph.inputs import positions
from star.graph.model import GNNConfig
from star.graph.sampling import draw_negatives
from star.graph.distributed import fit
from star.graph.train import GraphTrainConfig, infer

__all__ = ["VARIANTS", "ablation", "cold_start_members", "format_table", "plot", "save_report", "score",
           "window_pairs"]

log = logging.getLogger(__name__)
EType = tuple[str, str, str]

# variant -> GNNConfig switches (None: the text cosine reference, no GNN)
VARIANTS = {"gnn_categorical": {"use_text": False, "use_categorical": True},
            "gnn_text": {"use_text": True, "use_categorical": True},
            "gnn_text_only": {"use_text": True, "use_categorical": False},
            "text_cosine": None}
LABELS = {"gnn_categorical": "GNN, categorical (baseline)", "gnn_text": "GNN + text",
          "gnn_text_only": "GNN + text - categorical", "text_cosine": "text only (cosine)"}

WINDOW = """
SELECT member_id, job_id, relation FROM star.interactions
WHERE event_timestamp > %(start)s AND event_timestamp <= %(end)s AND relation = ANY(%(relations)s)
ORDER BY event_timestamp, member_id, job_id
"""
SPAN = "SELECT min(event_timestamp), max(event_timestamp) FROM star.interactions WHERE relation = ANY(%(relations)s)"


def window_pairs(target: DbTarget, mg, tasks: list[EType], days: float, *, seed: int = 0,
                 negatives: int = 5) -> dict:
    """Positives and fixed negatives per task from (cutoff, cutoff + days], as node indexes of `mg`: per task
    (src, dst, neg) with neg of shape (len(src), negatives), jobs of the window drawn as often as they occur (never
    the positive's own job: draw_negatives)."""
    if days <= 0:
        raise ConfigError(f"eval window days={days}: must be > 0; pass --eval-days with a value > 0, e.g. 14")
    if negatives < 1:
        raise ConfigError(f"eval negatives={negatives}: must be >= 1 per positive, e.g. 5")
    start = mg.cutoff
    end = start + pd.Timedelta(days=days)
    relations = sorted({t[1] for t in tasks})
    with connect(target) as conn:
        rows = conn.execute(WINDOW, {"start": start, "end": end, "relations": relations}).fetchall()
        span = conn.execute(SPAN, {"relations": relations}).fetchone()
    df = pd.DataFrame(rows, columns=["member_id", "job_id", "relation"])
    m_pos, m_ok = positions(mg.node_ids["member"], df["member_id"].to_numpy(np.int64))
    j_pos, j_ok = positions(mg.node_ids["job"], df["job_id"].to_numpy(np.int64))
    ok = m_ok & j_ok
    if not ok.any():  # an AUC over no pairs is no evaluation: stop before any model is trained
        raise ConfigError(
            f"the evaluation window ({start.isoformat()}, {end.isoformat()}] (cutoff + {days:g} days) has 0 pairs to "
            f"evaluate on: {len(df)} {'/'.join(relations)} interaction(s) in it, {int((~ok).sum())} of members or "
            f"jobs not yet in the graph at the cutoff; the data's {'/'.join(relations)} interactions run from "
            f"{span[0]} to {span[1]}. Pass an earlier --cutoff or a longer --eval-days")
    gen = np.random.default_rng(seed)
    pool = j_pos[ok]
    out = {"start": start.isoformat(), "end": end.isoformat(), "window_interactions": len(df),
           "unknown_member_or_job": int((~ok).sum()), "tasks": {}}
    for t in tasks:
        sel = ok & (df["relation"] == t[1]).to_numpy()
        src, dst = m_pos[sel], j_pos[sel]
        neg = draw_negatives(pool, dst, negatives, gen)
        out["tasks"][t] = (torch.from_numpy(src), torch.from_numpy(dst), torch.from_numpy(neg))
    return out


def cold_start_members(mg, max_interactions: int = 1) -> torch.Tensor:
    """Bool per member node: at most `max_interactions` member -> job edges in the graph (i.e. by the cutoff)."""
    g = mg.graph
    degree = torch.zeros(g.num_nodes("member"), dtype=torch.int64)
    for etype in g.canonical_etypes:
        if etype[0] == "member" and etype[2] == "job" and not etype[1].startswith("rev_"):
            degree += g.out_degrees(etype=etype)
    return degree <= max_interactions


def _auc(pos: torch.Tensor, neg: torch.Tensor) -> float | None:
    if len(pos) == 0:
        return None
    labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    return roc_auc(labels, torch.cat([pos, neg]).numpy())


def score(scorer, pairs: dict, cold: torch.Tensor) -> dict:
    """AUC per task on all window pairs and on the cold-start members' pairs; scorer(task, src, dst) -> logits."""
    out = {}
    for t, (src, dst, neg) in pairs["tasks"].items():
        k = neg.shape[1]
        with torch.no_grad():
            pos_s = scorer(t, src, dst)
            neg_s = scorer(t, src.repeat_interleave(k), neg.reshape(-1)).reshape(-1, k)
        is_cold = cold[src]
        out[":".join(t)] = {"auc": _auc(pos_s, neg_s.reshape(-1)),
                            "cold_start_auc": _auc(pos_s[is_cold], neg_s[is_cold].reshape(-1)),
                            "pairs": len(src), "cold_start_pairs": int(is_cold.sum())}
    return out


def _text_scorer(mg):
    f = {nt: torch.nn.functional.normalize(mg.features[nt]["text"], dim=1) for nt in ("member", "job")}
    mask = {nt: mg.features[nt]["text_mask"] for nt in ("member", "job")}

    def scorer(_, src, dst):  # a node without an embedded text scores 0 (no information)
        s = (f["member"][src] * f["job"][dst]).sum(dim=1)
        return torch.where(mask["member"][src] & mask["job"][dst], s, torch.zeros_like(s))
    return scorer


def keep_variant(trained: dict, main: str) -> str:
    """The variant `star graph train` keeps: GNN + text, unless GNN-categorical (trained beside it on the same
    split) validated better — text that does not help on held-out edges is left out, so the kept model is never
    below the categorical one on validation."""
    if main != "gnn_text" or "gnn_categorical" not in trained:
        return main
    text, cat = (trained[v].metrics.get("best_mean_val_auc") for v in ("gnn_text", "gnn_categorical"))
    return "gnn_categorical" if cat is not None and (text is None or cat > text) else main


def ablation(target: DbTarget, mg, model_cfg: GNNConfig, train_cfg: GraphTrainConfig, *, days: float,
             variants: tuple[str, ...] = tuple(VARIANTS), negatives: int = 5, align: dict | None = None,
             progress: bool = True, workers: int = 1) -> tuple[dict, dict]:
    """Train each GNN variant on `mg`, score all on the window after its cutoff. align: variant -> alignment
    targets (star.graph.align) for the variants trained with BC-Aligner. workers > 1: each variant is trained
    under DDP in that many processes (star.graph.distributed).

    Returns (report, trained): report = {"window": ..., "rows": [...]} JSON-ready; trained = variant ->
    GraphTrainResult (the caller keeps the one it publishes)."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"ablation variants {unknown} are unknown; choose from {list(VARIANTS)}")
    has_text = all("text" in mg.features.get(nt, {}) and bool(mg.features[nt]["text_mask"].any())
                   for nt in ("member", "job"))  # an all-empty side would score every pair 0: AUC 0.5, meaningless
    if not has_text:
        dropped = [v for v in variants if v != "gnn_categorical"]
        if dropped:
            log.warning("no text embeddings in the graph: variants %s are left out (run `star text embed`)", dropped)
        variants = tuple(v for v in variants if v == "gnn_categorical")
    probe = train_cfg.tasks or [e for e in mg.graph.canonical_etypes
                                if e[0] == "member" and e[2] == "job" and not e[1].startswith("rev_")]
    pairs = window_pairs(target, mg, list(probe), days, seed=train_cfg.seed, negatives=negatives)
    cold = cold_start_members(mg)
    rows, trained = [], {}
    for name in variants:
        switches = VARIANTS[name]
        if switches is None:
            metrics = score(_text_scorer(mg), pairs, cold)
        else:
            result = fit(mg, replace(model_cfg, **switches), train_cfg, progress=progress,
                         align=(align or {}).get(name), workers=workers)
            trained[name] = result
            z = infer(result.model, mg.graph, mg.features, train_cfg.eval_batch_size)
            metrics = score(lambda t, s, d: result.decoder.score(t, z["member"][s], z["job"][d]), pairs, cold)
        rows.append({"variant": name, "label": LABELS[name], "tasks": metrics})
        log.info("%s: %s", name, metrics)
    window = {k: v for k, v in pairs.items() if k != "tasks"}
    window["negatives_per_positive"] = negatives
    window["cold_start_members"] = int(cold.sum())
    window["members"] = int(len(cold))
    return {"window": window, "rows": _with_lift(rows)}, trained


def _with_lift(rows: list[dict]) -> list[dict]:
    """Relative AUC change against the baseline (gnn_categorical) per task, all pairs and cold start."""
    base = next((r for r in rows if r["variant"] == "gnn_categorical"), None)
    for r in rows:
        for task, m in r["tasks"].items():
            b = base["tasks"].get(task, {}) if base else {}
            for key in ("auc", "cold_start_auc"):
                ok = m.get(key) is not None and b.get(key)
                m[f"{key}_lift"] = round(m[key] / b[key] - 1, 4) if ok else None
    return rows


def format_table(report: dict) -> str:
    """Markdown table: one row per variant and task."""
    w = report["window"]
    lines = [f"window ({w['start']}, {w['end']}]; cold start = members with <= 1 interaction by the cutoff "
             f"({w['cold_start_members']} of {w['members']})",
             "| model | task | AUC | vs baseline | cold-start AUC | vs baseline | pairs (cold) |",
             "|---|---|---|---|---|---|---|"]

    def f(x, pct=False):
        return "-" if x is None else (f"{x:+.2%}" if pct else f"{x:.4f}")
    for r in report["rows"]:
        for task, m in r["tasks"].items():
            lines.append(f"| {r['label']} | {task} | {f(m['auc'])} | {f(m['auc_lift'], True)} | "
                         f"{f(m['cold_start_auc'])} | {f(m['cold_start_auc_lift'], True)} | "
                         f"{m['pairs']} ({m['cold_start_pairs']}) |")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> Path:
    """Bar chart: AUC per variant, all members vs cold start, one panel per task; values and pair counts on the
    bars, the axis from 0 (star.report.plots, shared with `star report`)."""
    from star.report.plots import ablation

    return ablation(report, path)


def save_report(report: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ablation.json").write_text(json.dumps(report, indent=1, default=str))
    (out_dir / "ablation.md").write_text(format_table(report) + "\n")
    return plot(report, out_dir / "ablation.png")

