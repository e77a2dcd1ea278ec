"""`star versions publish`: a candidate vintage is published only when the frozen ranker's parity gate passes
(real Postgres + pgvector, real Feast, tiny real text models)."""

from __future__ import annotations

import pytest

from star import db
from star.pipeline import apply_features
from star.ranker import save, train_ranker
from star.store.trainset import TrainsetConfig, build_trainset
from star.text.embed import EmbedConfig, embed_texts
from star.versions.gate import GateFailed
from star.versions.lifecycle import VersionError, list_versions
from star.versions.publish import publish
from tests.test_ranker import V1, _market, encoders  # noqa: F401  (encoders: module fixture)
from tests.text_models import one_thread  # noqa: F401  (autouse fixture)

FAMILY = "member_text_embedding"


def _status(target) -> dict[int, str]:
    with db.connect(target) as conn:
        return {r["version"]: r["status"] for r in list_versions(conn, FAMILY)}


def test_a_good_candidate_is_published_and_a_bad_one_is_refused(target, encoders, tmp_path):  # noqa: F811
    _market(target, encoders, ["v1"])
    df = build_trainset(target, TrainsetConfig(features=V1.refs))
    ranker, _ = train_ranker(df, V1)
    ranker_dir = save(ranker, tmp_path / "ranker")

    embed_texts(target, encoders["good"], EmbedConfig(candidate=True), progress=False)
    apply_features(target)
    assert _status(target) == {1: "published", 2: "candidate"}
    out = publish(target, FAMILY, 2, ranker_dir=ranker_dir)
    gate = out["gate"]
    assert gate["passed"] and gate["against"] == 1 and gate["heldout_rows"] > 0
    assert abs(gate["parity"]["delta_auc"]) <= 0.005
    assert gate["alignment"][FAMILY]["cos_mean"] >= 0.97
    assert _status(target) == {1: "published", 2: "published"}

    embed_texts(target, encoders["bad"], EmbedConfig(candidate=True), progress=False)
    apply_features(target)
    with pytest.raises(GateFailed, match="parity gate failed") as failed:
        publish(target, FAMILY, 3, ranker_dir=ranker_dir)
    assert failed.value.report["failures"]
    assert _status(target) == {1: "published", 2: "published", 3: "candidate"}
    with db.connect(target) as conn:
        (metrics,) = conn.execute("SELECT metrics FROM star.embedding_versions WHERE family = %s AND version = 3",
                                  (FAMILY,)).fetchone()
    assert metrics["gate"]["passed"] is False and metrics["gate"]["alignment"][FAMILY]["cos_mean"] < 0.97

    with pytest.raises(VersionError, match="must read exactly one other vintage"):
        publish(target, FAMILY, 1, ranker_dir=ranker_dir)
