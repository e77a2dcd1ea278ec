"""A version's lineage as Feast shows it: tags and a description built from its registry row (registry.VersionRow), so
`feast feature-views describe <view>` and the Feast UI tell which model, data window and status a view has.

    registry row (status, model, config.fingerprint, metrics, data_start/end, served_from)
        --tags()--> star_status, star_model, star_model_sha256, star_data_end, star_text_version, star_served_from
        --description()--> "member_text_embedding v2 (published): text embeddings by <model>, rows <start>..<end>"

Every STAR apply rebuilds them, so a status change (publish, deprecate, retire) shows once it is applied.
"""

from __future__ import annotations

from datetime import datetime

from star.store.registry import VersionRow, view_name

OWNER = "star"


def _day(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None


def model_of(row: VersionRow) -> str | None:
    """The model that computed the vectors: the adapter (trained model) directory for a LoRA vintage, else the
    base model or graph checkpoint directory."""
    return row.metrics.get("adapter_dir") or row.model or row.config.get("fingerprint", {}).get("model_dir")


def model_sha256(row: VersionRow) -> str | None:
    fp = row.config.get("fingerprint", {})
    if row.kind == "graph_embedding":
        return fp.get("weights_sha256")
    return fp.get("adapter_checksum") or fp.get("model_checksum")


def text_versions(row: VersionRow) -> str | None:
    """The text vintages a graph vintage's model read, as view names (e.g. member_text_embedding_v1,...)."""
    versions = row.config.get("fingerprint", {}).get("text_versions") or row.metrics.get("text_versions")
    if versions is None:
        return None
    return ",".join(view_name(f"{entity}_text_embedding", k) for entity, k in sorted(versions.items())) or "none"


def tags(row: VersionRow, served_from: int | None) -> dict[str, str]:
    """Feast tags (strings only; a value that does not apply is left out). served_from: the vintage whose rows
    serve a retired one (or the one a retire under way serves it from)."""
    out = {"star_family": row.family, "star_version": str(row.version), "star_kind": row.kind,
           "star_entity": row.entity, "star_status": row.status}
    if row.kind in ("text_embedding", "graph_embedding"):
        fp = row.config.get("fingerprint", {})
        out.update({
            "star_model": model_of(row),
            "star_model_sha256": model_sha256(row),
            "star_base_model": fp.get("model_dir") if fp.get("adapter_checksum") else None,
            "star_data_start": _day(row.data_start),
            "star_data_end": _day(row.data_end),
        })
        if row.kind == "graph_embedding":
            out.update({"star_text_version": text_versions(row),
                        "star_graph_cutoff": (row.metrics.get("last_run") or {}).get("cutoff"),
                        "star_train_cutoff": row.metrics.get("train_cutoff")})
    if served_from is not None:
        out["star_served_from"] = str(served_from)
    return {k: str(v) for k, v in out.items() if v is not None}


def description(row: VersionRow, served_from: int | None) -> str:
    what = {"text_embedding": f"text embeddings of each {row.entity}",
            "graph_embedding": f"graph (GNN) embeddings of each {row.entity}"}.get(
        row.kind, f"{row.entity} {row.kind} features")
    text = f"{row.family} v{row.version} ({row.status}): {what}"
    model = model_of(row)
    if model:
        text += f" by {model}"
    if row.data_start or row.data_end:
        text += f", rows {_day(row.data_start) or '?'} .. {_day(row.data_end) or '?'}"
    if served_from is not None:
        text += f"; its own rows are gone: served from v{served_from} through a linear map"
    return text
