"""Score evaluation pairs with text similarity and tabulate AUC: TF-IDF, the base model, vintages, adapters.

    pairs (member_text, job_text as of each event, label, cold_start)   from star.store.evalset
    --tfidf_cosine / encoder_cosine / vector_cosine-->  one cosine per pair and scorer
    --auc_report--> rows: AUC overall and on the cold-start cohort, pair counts, change vs TF-IDF and vs base
    --save_report--> eval.json, eval.md, eval.png

Vintages pair by model (pair_vintages): a member vintage is scored with the job vintage built by the same model,
adapter and config (equal fingerprint), the newest such one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from star.common import roc_auc
from star.errors import EvalSetError

TFIDF, BASE = "tfidf", "base"
SERVED = ("published", "candidate", "deprecated")  # vintages scored by default (building ones are unfinished)


def _row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of matching rows; NaN where a row is missing (NaN) or zero."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=1) / (na * nb)


def tfidf_cosine(member_texts: list[str], job_texts: list[str]) -> np.ndarray:
    """Keyword baseline: TF-IDF (sublinear tf) fit on the distinct texts of the pairs; cosine per pair."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vocab = sorted(set(member_texts) | set(job_texts))
    index = {t: i for i, t in enumerate(vocab)}
    matrix = TfidfVectorizer(sublinear_tf=True).fit_transform(vocab)  # rows L2-normalised
    m = matrix[[index[t] for t in member_texts]]
    j = matrix[[index[t] for t in job_texts]]
    return np.asarray(m.multiply(j).sum(axis=1)).ravel()


def encoder_cosine(encoder, member_texts: list[str], job_texts: list[str], *, batch_size: int = 64,
                   progress: bool = True) -> np.ndarray:
    """Cosine of the encoder's member and job embeddings; each distinct text is encoded once."""
    out = []
    for texts, kind in ((member_texts, "member"), (job_texts, "job")):
        distinct = sorted(set(texts))
        emb = encoder.encode(distinct, kind, batch_size=batch_size, progress=progress).embeddings
        index = {t: i for i, t in enumerate(distinct)}
        out.append(np.asarray(emb, dtype=np.float64)[[index[t] for t in texts]])
    return _row_cosine(out[0], out[1])


def vector_cosine(member_vectors: np.ndarray, job_vectors: np.ndarray) -> np.ndarray:
    return _row_cosine(member_vectors.astype(np.float64), job_vectors.astype(np.float64))


def _counterpart(v: dict, pool: list[dict]) -> dict | None:
    other = "job" if v["entity"] == "member" else "member"
    same = [w for w in pool if w["entity"] == other and w["fingerprint_hash"] == v["fingerprint_hash"]
            and w["has_rows"]]
    return max(same, key=lambda w: w["version"]) if same else None


def pair_vintages(vintages: list[dict], requested: list[str] | None) -> tuple[list[tuple[dict, dict]], list[str]]:
    """(member vintage, job vintage) pairs to score, and notes on vintages left out.

    requested None: every published / candidate / deprecated member vintage with rows, with its job counterpart.
    Otherwise each item is a view name of either family (its counterpart is found the same way) or an explicit
    'member_text_embedding_vK+job_text_embedding_vJ'."""
    by_name = {v["name"]: v for v in vintages}
    if requested is None:
        pool = [v for v in vintages if v["status"] in SERVED and v["has_rows"]]
        pairs, notes = [], []
        for v in pool:
            if v["entity"] == "member":
                job = _counterpart(v, pool)
                if job is None:
                    notes.append(f"{v['name']}: no job text vintage of the same model; pass --versions "
                                 f"{v['name']}+job_text_embedding_vJ to choose one")
                else:
                    pairs.append((v, job))
        return pairs, notes
    out = []
    for item in requested:
        names = item.split("+")
        unknown = [n for n in names if n not in by_name]
        if unknown or len(names) > 2:
            raise EvalSetError(f"--versions {item!r}: {', '.join(unknown) or 'more than two views'} is not a text "
                               f"vintage; the registry has: {', '.join(by_name) or 'none'} (give view names, or "
                               "member_text_embedding_vK+job_text_embedding_vJ)")
        chosen = [by_name[n] for n in names]
        if len(chosen) == 1:
            other = _counterpart(chosen[0], vintages)
            if other is None:
                raise EvalSetError(f"--versions {item!r}: no {'job' if chosen[0]['entity'] == 'member' else 'member'}"
                                   " text vintage with rows was built by the same model; name both, e.g. "
                                   "member_text_embedding_vK+job_text_embedding_vJ")
            chosen.append(other)
        member = next((v for v in chosen if v["entity"] == "member"), None)
        job = next((v for v in chosen if v["entity"] == "job"), None)
        if member is None or job is None or member["dim"] != job["dim"]:
            raise EvalSetError(f"--versions {item!r}: need one member and one job text vintage of equal dimension; "
                               "got " + ", ".join(f"{v['name']} ({v['dim']}-d)" for v in chosen))
        empty = [v["name"] for v in (member, job) if not v["has_rows"]]
        if empty:
            raise EvalSetError(f"--versions {item!r}: {', '.join(empty)} has no rows to score (status "
                               f"{', '.join(v['status'] for v in (member, job))}); run `star text embed` first")
        out.append((member, job))
    return out, []


def vintage_label(member: dict, job: dict) -> str:
    if member["version"] == job["version"]:
        return f"vintage v{member['version']}"
    return f"vintage m{member['version']}+j{job['version']}"


def _auc(labels: np.ndarray, scores: np.ndarray) -> tuple[float | None, int, int]:
    """AUC over the pairs with a finite score (a pair whose entity has no vector scores NaN), and its counts."""
    ok = np.isfinite(scores)
    y = labels[ok]
    pos = int(y.sum())
    return roc_auc(y, scores[ok]), pos, int(len(y) - pos)


def _rel(value: float | None, ref: float | None) -> float | None:
    return value / ref - 1.0 if value is not None and ref else None


def auc_rows(pairs: pd.DataFrame, scores: dict[str, np.ndarray], extra: dict[str, dict] | None = None) -> list[dict]:
    """One row per scorer: AUC overall and on the cold-start pairs, positives / negatives scored, relative change
    against the tfidf and base rows (when scored); `extra` adds fields to a scorer's row."""
    labels, cold = pairs["label"].to_numpy(), pairs["cold_start"].to_numpy()
    rows = []
    for name, s in scores.items():
        auc, pos, neg = _auc(labels, s)
        cauc, cpos, cneg = _auc(labels[cold], s[cold])
        rows.append({"scorer": name, "auc": auc, "positives": pos, "negatives": neg, "cold_auc": cauc,
                     "cold_positives": cpos, "cold_negatives": cneg,
                     "unscored": int((~np.isfinite(s)).sum()), **(extra or {}).get(name, {})})
    ref = {r["scorer"]: r for r in rows}
    for row in rows:
        for key, other in (("tfidf", TFIDF), ("base", BASE)):
            row[f"vs_{key}"] = _rel(row["auc"], ref.get(other, {}).get("auc"))
            row[f"cold_vs_{key}"] = _rel(row["cold_auc"], ref.get(other, {}).get("cold_auc"))
    return rows


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:+.2f} %" if pct else f"{value:.4f}"


def format_markdown(report: dict) -> str:
    """The AUC table as markdown, with the window, the negatives and the cold-start definition under it."""
    lines = ["| scorer | AUC | vs TF-IDF | vs base | pairs +/- | cold-start AUC | vs TF-IDF | vs base | pairs +/- |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        def rel(key: str, ref: str) -> str:
            return "reference" if r["scorer"] == ref else _fmt(r[key], True)

        lines.append(f"| {r['scorer']} | {_fmt(r['auc'])} | {rel('vs_tfidf', TFIDF)} | {rel('vs_base', BASE)} | "
                     f"{r['positives']}/{r['negatives']} | {_fmt(r['cold_auc'])} | {rel('cold_vs_tfidf', TFIDF)} | "
                     f"{rel('cold_vs_base', BASE)} | {r['cold_positives']}/{r['cold_negatives']} |")
    c = report["counts"]
    lines += ["", f"Task `{report['task']}`, window [{report['window']['start']}, {report['window']['end'] or 'end'}): "
              f"{c['positives']} positives, {c['negatives']} negatives ({report['negatives']}).",
              f"Cold start: {report['cold_start']}."]
    lines += [f"Note: {n}" for n in report.get("notes", [])]
    return "\n".join(lines)


def save_report(report: dict, out_dir: Path) -> dict[str, str]:
    """eval.json, eval.md and eval.png in out_dir; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "eval.json", "markdown": out_dir / "eval.md", "plot": out_dir / "eval.png"}
    paths["json"].write_text(json.dumps(report, indent=2, default=str))
    paths["markdown"].write_text(format_markdown(report) + "\n")
    _plot(report, paths["plot"])
    return {k: str(v) for k, v in paths.items()}


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    rows = report["rows"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(rows) + 1.5), 3.8))
    for offset, key, label, color in ((-0.2, "", "all pairs", "#4c72b0"), (0.2, "cold_", "cold start", "#dd8452")):
        values = [r[f"{key}auc"] for r in rows]
        bars = ax.bar(x + offset, [v or 0.0 for v in values], width=0.4, label=label, color=color)
        ax.bar_label(bars, labels=[f"{v:.3f}\nn={r[f'{key}positives'] + r[f'{key}negatives']}" if v is not None
                                   else "n/a" for v, r in zip(values, rows)], fontsize=7)
    ax.axhline(0.5, color="#999999", linestyle="--", linewidth=0.8, label="chance (0.5)")
    ax.set_xticks(x, [r["scorer"] for r in rows], fontsize=8)
    ax.set_ylim(0.0, 1.3)  # from 0: no bar is cut or exaggerated; room above for labels and legend
    ax.set_yticks(np.arange(0.0, 1.01, 0.1))
    ax.set_ylabel("AUC")
    ax.set_title(f"{report['task']}: AUC on the later window\n{report['negatives']}", fontsize=8)
    ax.legend(fontsize=7, loc="upper center", ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
