"""Everything `star report` shows, gathered from where the jobs stored it (read only).

    STAR_HOME/models/text/<run>/compare/comparison.json   `star text train` (Table-2 analogue; without --compare,
                                   model/star_text_model.json alone: one row); only runs whose <run>/model is in
                                   star.text_models: trained on this database, not on another one sharing STAR_HOME
    STAR_HOME/models/graph/<run>/ablation.json            `star graph train [--ablation]` (Table-4, cold start)
    star.embedding_versions / star.embedding_compat       vintages, lineage, status, maps, parity-gate reports
    bench/results/serving.json                            `bench/serving.py` (when present)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from star.config import REPO_ROOT, DbTarget, Settings

DEFAULT_BENCH = REPO_ROOT / "bench" / "results" / "serving.json"
TEXT_CHECKPOINT = "star_text_model.json"  # star.text.model.CHECKPOINT_JSON (not imported: it pulls in torch)


@dataclass(kw_only=True)
class ReportData:
    database: str = field(metadata={"help": "the masked URL of the database the registry was read from"})
    home: str = field(metadata={"help": "STAR_HOME: where the training runs were found"})
    generated: str = field(metadata={"help": "UTC time the report was written"})
    text_runs: list[dict] = field(default_factory=list, metadata={"help": "newest first: run, path, comparison, "
                                                                           "vintages built from its model"})
    text_runs_elsewhere: int = field(default=0, metadata={"help": "text runs under STAR_HOME not trained on this "
                                                                  "database (not in star.text_models): left out"})
    graph_runs: list[dict] = field(default_factory=list, metadata={"help": "newest first: run, path, ablation "
                                                                            "report, vintages built from its model"})
    vintages: list[dict] = field(default_factory=list, metadata={"help": "the vintage registry, oldest first"})
    maps: list[dict] = field(default_factory=list, metadata={"help": "star.embedding_compat"})
    gates: list[dict] = field(default_factory=list, metadata={"help": "family, version, the stored gate report"})
    serving: dict | None = field(default=None, metadata={"help": "bench/results/serving.json, when present"})
    serving_path: str = field(default="", metadata={"help": "where the serving benchmark was looked for"})


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # a run killed while writing: leave it out rather than fail the report
        return None


def _runs(root: Path, pattern: str) -> list[Path]:
    """Run directories (named by their UTC start time) holding `pattern`, newest first."""
    found = {p.relative_to(root).parts[0] for p in root.glob(pattern)} if root.is_dir() else set()
    return sorted((root / name for name in found), key=lambda p: (p.stat().st_mtime, p.name), reverse=True)


def _built_from(vintages: list[dict], key: str, model_dir: Path) -> list[str]:
    """The vintages whose lineage names this model directory."""
    return [f"{v['family']} v{v['version']}" for v in vintages if (v["metrics"] or {}).get(key) == str(model_dir)]


def text_runs(root: Path, vintages: list[dict], recorded: set[str] | None = None) -> list[dict]:
    """The text training runs under `root`, newest first; with `recorded` (star.text_models' paths), only those
    whose model directory is recorded there."""
    out = []
    for run in _runs(root, f"*/model/{TEXT_CHECKPOINT}") + _runs(root, "*/compare/comparison.json"):
        if any(r["path"] == str(run) for r in out):
            continue
        if recorded is not None and str((run / "model").resolve()) not in recorded:
            continue
        comparison = _read_json(run / "compare" / "comparison.json")
        if comparison is None:  # trained without --compare: the one model's own metrics
            info = _read_json(run / "model" / TEXT_CHECKPOINT) or {}
            m, mode = info.get("metrics") or {}, (info.get("train_config") or {}).get("mode", "model")
            if not m:
                continue
            comparison = {"rows": [{"model": mode, "val_auc": m.get("val_auc"), "relative_to_frozen": None,
                                    "val_auc_cosine": m.get("val_auc_cosine"), "steps": m.get("steps")}],
                          "val_rows": m.get("val_rows"), "train_rows": m.get("train_rows"),
                          "val_window": m.get("val_window"), "model_config": info.get("model_config")}
        out.append({"run": run.name, "path": str(run), "comparison": comparison,
                    "vintages": _built_from(vintages, "adapter_dir", run / "model")})
    return sorted(out, key=lambda r: r["run"], reverse=True)


def graph_runs(root: Path, vintages: list[dict]) -> list[dict]:
    out = []
    for run in _runs(root, "*/ablation.json"):
        report = _read_json(run / "ablation.json")
        if report and report.get("rows"):
            out.append({"run": run.name, "path": str(run), "ablation": report,
                        "vintages": _built_from(vintages, "model_dir", run / "model")})
    return sorted(out, key=lambda r: r["run"], reverse=True)


def gates(vintages: list[dict]) -> list[dict]:
    return [{"family": v["family"], "version": v["version"], "status": v["status"], "report": v["metrics"]["gate"]}
            for v in vintages if isinstance((v["metrics"] or {}).get("gate"), dict)]


def collect(target: DbTarget, *, settings: Settings | None = None, bench: Path | None = None) -> ReportData:
    from star import db
    from star.store import report_data, text_models

    settings = settings or Settings.from_env()
    with db.connect(target) as conn:
        vintages, maps = report_data.vintages(conn), report_data.maps(conn)
        recorded = text_models.paths(conn)
    runs = text_runs(settings.text_models, vintages, recorded)
    bench = DEFAULT_BENCH if bench is None else Path(bench)
    return ReportData(database=target.masked_url(), home=str(settings.home),
                      generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                      text_runs=runs, text_runs_elsewhere=len(text_runs(settings.text_models, vintages)) - len(runs),
                      graph_runs=graph_runs(settings.graph_models, vintages),
                      vintages=vintages, maps=maps, gates=gates(vintages),
                      serving=_read_json(bench) if bench.is_file() else None, serving_path=str(bench))
