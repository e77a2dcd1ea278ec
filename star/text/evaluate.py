"""Compare training modes on one time split, like the paper's Table 2 (relative AUC against the frozen baseline).

    pairs --train(mode) for each mode, same split and seed--> out_dir/<mode>/ checkpoints
          --val AUC per mode--> out_dir/comparison.json, out_dir/comparison.png, format_table(result)
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd

from star.text.config import TextModelConfig, TrainConfig
from star.text.train import prepare, split_by_time, train

BASELINE = "frozen_head"


def compare(pairs: pd.DataFrame, *, model_cfg: TextModelConfig, train_cfg: TrainConfig, out_dir: str | Path,
            modes: tuple[str, ...] = ("frozen_head", "bce", "bce+contrastive"), progress: bool = True) -> dict:
    """Train every mode into out_dir/<mode>; return and write the comparison (see the module docstring)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df, _ = prepare(pairs)
    train_df, val_df, cut = split_by_time(df, train_cfg.val_fraction)
    rows, results = [], {}
    for mode in modes:
        result = train(pairs, model_cfg=model_cfg, train_cfg=replace(train_cfg, mode=mode), out_dir=out / mode,
                       progress=progress)
        results[mode] = result.metrics
    base = results.get(BASELINE, {}).get("val_auc")
    for mode in modes:
        m = results[mode]
        rel = (m["val_auc"] / base - 1.0) if base and m["val_auc"] is not None else None
        rows.append({"model": mode, "val_auc": m["val_auc"], "relative_to_frozen": rel,
                     "val_auc_cosine": m["val_auc_cosine"], "steps": m["steps"],
                     "seconds_per_step": m["seconds_per_step"], "loss_final": m["loss_final"],
                     "checkpoint": str(out / mode)})
    result = {"rows": rows,
              "val_window": [str(val_df["event_timestamp"].min()), str(val_df["event_timestamp"].max())],
              "train_window": [str(train_df["event_timestamp"].min()), str(train_df["event_timestamp"].max())],
              "split_time": str(cut), "val_rows": len(val_df), "train_rows": results[modes[0]]["train_rows"],
              "model_config": model_cfg.resolved().to_dict(), "train_config": train_cfg.to_dict()}
    (out / "comparison.json").write_text(json.dumps(result, indent=2))
    _plot(result, out / "comparison.png")
    return result


def format_table(result: dict) -> str:
    """A Table-2-style text table: model, validation AUC, change relative to the frozen baseline."""
    lines = [f"{'model':<18} {'val AUC':>8} {'vs frozen':>10} {'cosine AUC':>11}", "-" * 50]
    for row in result["rows"]:
        auc = f"{row['val_auc']:.4f}" if row["val_auc"] is not None else "n/a"
        cos = f"{row['val_auc_cosine']:.4f}" if row.get("val_auc_cosine") is not None else "n/a"
        if row["model"] == BASELINE:
            rel = "baseline"
        else:
            rel = f"{row['relative_to_frozen'] * 100:+.2f}%" if row["relative_to_frozen"] is not None else "n/a"
        lines.append(f"{row['model']:<18} {auc:>8} {rel:>10} {cos:>11}")
    start, end = result["val_window"]
    lines.append(f"validation window {start} .. {end} ({result['val_rows']} rows)")
    return "\n".join(lines)


def _plot(result: dict, path: Path) -> None:
    """Validation AUC per mode, values and pair counts on the bars, the axis from 0 (shared with `star report`)."""
    from star.report.plots import text_comparison

    text_comparison(result, path)
