"""The parity gate: may a frozen consumer of vintage j be served vintage k through the map k -> j?

    CompatMap.metrics["heldout"] --check_alignment--> row cosine mean / p5 vs thresholds (GateConfig: 0.97 / 0.94)
    held-out PIT rows with both vintages' columns (build_trainset(features=gate_refs(cfg.refs, maps)))
      --translate_frame: k's vectors through the map, written into j's column--> the SAME rows in j's space
      --gate_report: the ranker's AUC on native vs translated rows--> delta AUC vs max drop (GateConfig: 0.005)
    current vectors of j, and of k mapped --overlap_at_k--> share of top-k cosine neighbours that survive
    all three --evaluate_gate--> one report with "passed"; GateFailed carries a failed report

Cosine thresholds alone are not enough: on an anisotropic space (every vector close to a common direction) a map
that only predicts the mean already scores mean cosine ~0.99, so parity and overlap are part of the gate.
Nothing here imports feast, and torch only when a ranker is scored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from star.common import roc_auc
from star.errors import StarError
from star.store.registry import view_name
from star.versions.compat import CompatMap
from star.versions.config import GateConfig

ROW_KEYS = ("member_id", "job_id", "event_timestamp", "label")


class GateError(StarError):
    """The gate cannot be evaluated as asked (frames that do not match, a map the ranker does not read)."""


class GateFailed(StarError):
    """A new vintage served through its map would degrade the consumer; `report` holds every measurement."""

    def __init__(self, report: dict):
        self.report = report
        failed = "; ".join(report.get("failures", [])) or "see the report"
        super().__init__(f"parity gate failed for {', '.join(report.get('maps', []))}: {failed}. Keep serving the "
                         "old vintage's own rows (do not retire it), refit the map on more shared entities, or "
                         "retrain the consumer on the new vintage")


def embedding_column(family: str, version: int, feature: str = "embedding") -> str:
    """The training-set column of a vintage's feature: '<family>_v<k>__<feature>'."""
    return f"{view_name(family, version)}__{feature}"


def gate_refs(refs: Sequence[str], maps: Sequence[CompatMap]) -> tuple[str, ...]:
    """The consumer's refs (e.g. RankerConfig.refs) plus each map's source vintage: what the held-out frame must
    join, e.g. build_trainset(target, TrainsetConfig(features=gate_refs(cfg.refs, maps), start=cut))."""
    extra = [f"{view_name(m.family, m.from_version)}:embedding" for m in maps]
    return tuple(dict.fromkeys([*refs, *extra]))


def translate_frame(df: pd.DataFrame, column: str, m: CompatMap, *, into: str | None = None) -> pd.DataFrame:
    """A copy of df whose `into` column (default: `column`) holds m.apply of each row's vector in `column`;
    rows without a vector stay without one."""
    if column not in df.columns:
        raise GateError(f"the frame has no column {column!r} to translate through {m.family} "
                        f"v{m.from_version}->v{m.to_version}; join '{column.replace('__', ':', 1)}' first")
    cells = df[column].tolist()
    present = [i for i, v in enumerate(cells) if isinstance(v, (list, tuple, np.ndarray)) and len(v) > 0]
    out = [None] * len(cells)
    if present:
        mapped = m.apply(np.asarray([cells[i] for i in present], dtype=np.float64))
        for i, row in zip(present, mapped):
            out[i] = row
    result = df.copy()
    result[into or column] = pd.Series(out, index=df.index, dtype=object)
    return result


def check_alignment(m: CompatMap, cfg: GateConfig | None = None) -> dict:
    """The map's held-out row cosine (mean and 5th percentile) against cfg.min_mean / cfg.min_p5."""
    cfg = cfg or GateConfig()
    min_mean, min_p5 = cfg.min_mean, cfg.min_p5
    held = m.metrics.get("heldout") or {}
    report = {"family": m.family, "map": f"v{m.from_version}->v{m.to_version}", "cos_mean": held.get("cos_mean"),
              "cos_p5": held.get("cos_p5"), "r2": held.get("r2"), "heldout_rows": m.metrics.get("holdout_rows"),
              "no_map_cos_mean": m.metrics.get("no_map_cos_mean"), "min_mean": min_mean, "min_p5": min_p5}
    if report["cos_mean"] is None or report["cos_p5"] is None:
        return {**report, "passed": False, "reason": "the map carries no held-out metrics (a composed map?): "
                f"fit {m.family} v{m.from_version}->v{m.to_version} directly to gate it"}
    return {**report, "passed": report["cos_mean"] >= min_mean and report["cos_p5"] >= min_p5}


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    keys = [k for k in ROW_KEYS if k in a.columns]
    if len(a) != len(b) or "label" not in keys or not a[keys].reset_index(drop=True).equals(
            b[keys].reset_index(drop=True)):
        raise GateError(f"the native ({len(a)} rows) and translated ({len(b)} rows) frames must be the same rows "
                        f"in the same order ({', '.join(ROW_KEYS)}); build the translated one from the native one "
                        "with translate_frame")


def gate_report(ranker, df_native: pd.DataFrame, df_translated: pd.DataFrame, *,
                df_unmapped: pd.DataFrame | None = None, cfg: GateConfig | None = None) -> dict:
    """The ranker's AUC on the same held-out rows with native vs translated vectors (rows scored in both), against
    cfg.max_auc_drop. `df_unmapped`: the same rows with the new vectors unmapped (a baseline, possible when the dims
    are equal)."""
    from star.ranker.model import score

    max_auc_drop = (cfg or GateConfig()).max_auc_drop
    _same_rows(df_native, df_translated)
    native, translated = score(ranker, df_native), score(ranker, df_translated)
    ok = np.isfinite(native) & np.isfinite(translated)
    y = df_native["label"].to_numpy()[ok]
    auc_native, auc_translated = roc_auc(y, native[ok]), roc_auc(y, translated[ok])
    delta = None if None in (auc_native, auc_translated) else round(auc_translated - auc_native, 6)
    report = {"rows": len(df_native), "rows_scored": int(ok.sum()), "positives": int(y.sum()),
              "auc_native": auc_native, "auc_translated": auc_translated, "delta_auc": delta,
              "logit_mae": float(np.abs(native[ok] - translated[ok]).mean()) if ok.any() else None,
              "max_auc_drop": max_auc_drop, "passed": delta is not None and delta >= -max_auc_drop}
    if df_unmapped is not None:
        _same_rows(df_native, df_unmapped)
        raw = score(ranker, df_unmapped)
        both = ok & np.isfinite(raw)
        auc_raw = roc_auc(df_native["label"].to_numpy()[both], raw[both])
        report["auc_no_map"] = auc_raw
        report["delta_auc_no_map"] = None if None in (auc_raw, auc_native) else round(auc_raw - auc_native, 6)
    return report


def _top_k(ids: list, vecs: dict, k: int) -> np.ndarray:
    x = np.asarray([vecs[i] for i in ids], dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.finfo(np.float64).tiny)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)  # a query is never its own neighbour
    return np.argpartition(-sims, k - 1, axis=1)[:, :k]


def overlap_at_k(native: dict, translated: dict, queries: Iterable | None = None, k: int = 10) -> float:
    """Mean share of each query's top-k cosine neighbours found among native vectors that are also its top-k among
    translated vectors (both searched over the ids present in both; the query itself excluded)."""
    ids = sorted(set(native) & set(translated))
    if len(ids) <= k:
        raise GateError(f"overlap@{k} needs more than {k} ids with vectors in both; got {len(ids)}: lower k or "
                        "pass vectors of more entities")
    pos = {i: n for n, i in enumerate(ids)}
    wanted = ids if queries is None else list(queries)
    unknown = [q for q in wanted if q not in pos]
    if unknown:
        raise GateError(f"{len(unknown)} query ids (e.g. {unknown[:5]}) have no vector in both sets; query ids "
                        "present in both")
    rows = [pos[q] for q in wanted]
    a, b = _top_k(ids, native, k)[rows], _top_k(ids, translated, k)[rows]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b)]))


def evaluate_gate(ranker, df: pd.DataFrame, maps: Sequence[CompatMap], *,
                  current: dict[str, tuple[dict, dict]] | None = None, cfg: GateConfig | None = None,
                  raise_on_fail: bool = False) -> dict:
    """Alignment of every map, parity of the ranker on df (held-out rows holding each map's old and new columns)
    and, for the families in `current` ({family: (old vintage's vectors, new vintage's vectors)}), overlap@k of
    cosine neighbours, with the unmapped new vectors as a baseline; thresholds from cfg (default GateConfig()).
    Overlap gates only when cfg.min_overlap is given."""
    from star.ranker.config import column

    cfg = cfg or GateConfig()
    k, min_overlap = cfg.k, cfg.min_overlap
    readable = {column(r) for r in ranker.cfg.refs}
    families = [m.family for m in maps]
    unknown = sorted(set(current or {}) - set(families))
    if unknown or len(set(families)) != len(families) or not maps:
        raise GateError(f"evaluate_gate needs exactly one map per family ({families or 'none given'}) and current "
                        f"vectors only for those families (extra: {unknown}); gate one candidate vintage at a time")
    translated, unmapped = df, df
    for m in maps:
        old, new = embedding_column(m.family, m.to_version), embedding_column(m.family, m.from_version)
        if old not in readable:
            raise GateError(f"the ranker does not read {old!r} (it reads {sorted(readable)}); gate maps into the "
                            "vintages the consumer is pinned to")
        translated = translate_frame(translated, new, m, into=old)
        same_dim = unmapped is not None and m.from_dim == m.to_dim
        unmapped = unmapped.assign(**{old: df[new]}) if same_dim else None  # the no-map baseline
    alignment = {m.family: check_alignment(m, cfg) for m in maps}
    parity = gate_report(ranker, df, translated, df_unmapped=unmapped, cfg=cfg)
    overlap, by_family = {}, {m.family: m for m in maps}
    for family, (old_vecs, new_vecs) in (current or {}).items():
        m = by_family[family]
        mapped = {i: m.apply(v) for i, v in new_vecs.items()}
        got, raw = overlap_at_k(old_vecs, mapped, k=k), overlap_at_k(old_vecs, new_vecs, k=k)
        overlap[family] = {"k": k, "translated": round(got, 6), "no_map": round(raw, 6), "min_overlap": min_overlap,
                           "passed": min_overlap is None or got >= min_overlap}
    failures = [f"{f} {a['map']} alignment " + (a.get("reason") or f"cos_mean {a['cos_mean']} / p5 {a['cos_p5']} "
                                                f"below {cfg.min_mean} / {cfg.min_p5}")
                for f, a in alignment.items() if not a["passed"]]
    if not parity["passed"]:
        before, after = (None if v is None else round(v, 4) for v in (parity["auc_native"], parity["auc_translated"]))
        failures.append(f"AUC {before} -> {after} (delta {parity['delta_auc']}) drops more than {cfg.max_auc_drop}")
    failures += [f"{f} overlap@{o['k']} {o['translated']} below {min_overlap}" for f, o in overlap.items()
                 if not o["passed"]]
    report = {"maps": [f"{m.family} v{m.from_version}->v{m.to_version}" for m in maps], "alignment": alignment,
              "parity": parity, "overlap": overlap, "failures": failures, "passed": not failures,
              "config": cfg.to_dict()}
    if raise_on_fail and failures:
        raise GateFailed(report)
    return report
