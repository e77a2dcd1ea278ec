"""`star versions publish`: a candidate vintage becomes published only through the parity gate.

    candidate F_vK (an embedding job run with --candidate: rows, HNSW and a Feast view, status 'candidate')
      --fit_map(K -> J), J = the vintage the frozen ranker reads (F_vJ:embedding)-->  W, b + held-out alignment
      --build_trainset(the ranker's refs + F_vK, labels after the ranker's training cut)--> held-out PIT rows
      --star.versions.gate.evaluate_gate--> alignment (mean / p5 cosine), ranker AUC native vs translated,
                                            overlap@10 of neighbours (translated vs native, no-map baseline)
      --> report stored in metrics.gate; passed: status 'published'; failed: stays 'candidate', GateFailed
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from star.config import DbTarget, Settings
from star.db import connect
from star.errors import VersionError
from star.store import registry
from star.versions.config import GateConfig
from star.versions.lifecycle import current_vectors, fit_map, version_row


def _pinned(ranker, family: str, candidate: int) -> int:
    """The vintage of `family` the ranker reads."""
    found = sorted({int(m.group(1)) for ref in ranker.cfg.refs
                    if (m := re.fullmatch(rf"{re.escape(family)}_v(\d+):embedding", ref))})
    if len(found) != 1 or found[0] == candidate:
        example = registry.view_name(family, max(candidate - 1, 1))
        raise VersionError(f"the ranker reads {list(ranker.cfg.refs)}: it must read exactly one other vintage of "
                           f"{family} (e.g. {example}:embedding) to gate v{candidate}")
    return found[0]


def publish(target: DbTarget, family: str, version: int, *, ranker_dir: Path, task: str = "apply",
            gate: GateConfig | None = None, settings: Settings | None = None) -> dict:
    """Gate candidate `family` v`version` against the ranker's vintage with `gate`'s thresholds (default
    GateConfig()); publish it when the gate passes (holding the family's lock, after finishing what a killed job
    left)."""
    from star.versions.pending import finish_pending
    from star.store.locks import family_lock

    with family_lock(target, [family]):
        finish_pending(target, [family], settings)
        return _publish(target, family, version, ranker_dir=ranker_dir, task=task, gate=gate or GateConfig(),
                        settings=settings)


def _publish(target: DbTarget, family: str, version: int, *, ranker_dir: Path, task: str, gate: GateConfig,
             settings: Settings | None) -> dict:
    from star.store.serving import apply_features, materialize
    from star.ranker.model import load
    from star.store.trainset import TrainsetConfig, build_trainset
    from star.versions.gate import GateFailed, evaluate_gate, gate_refs

    ranker = load(ranker_dir)
    old = _pinned(ranker, family, version)
    with connect(target) as conn:
        v = version_row(conn, family, version)
        if v["status"] not in ("candidate", "published"):
            raise VersionError(f"{family} v{version} is {v['status']}; only a candidate (or, to re-check, a "
                               "published) vintage goes through the gate")
        m = fit_map(conn, family, version, old)
        conn.commit()
        current = {family: (current_vectors(conn, family, old, v["entity"]),
                            current_vectors(conn, family, version, v["entity"]))}
    cut = ranker.metrics.get("cut")
    df = build_trainset(target, TrainsetConfig(task=task, features=gate_refs(ranker.cfg.refs, [m]),
                                               start=None if cut is None else pd.Timestamp(cut)))
    report = evaluate_gate(ranker, df, [m], current=current, cfg=gate)
    report.update({"ranker": str(ranker_dir), "against": old, "heldout_rows": len(df)})
    status = "published" if report["passed"] else "candidate"
    with connect(target) as conn:
        registry.set_status(conn, family, version, status, metrics={"gate": report})
        conn.commit()
    if not report["passed"]:
        raise GateFailed(report)
    apply_features(target, settings)
    materialize(target, settings=settings, feature_views=[registry.view_name(family, version)])
    return {"job": "versions publish", "family": family, "version": version, "status": status, "gate": report}
