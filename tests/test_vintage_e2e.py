"""The promise of #5 end to end on a real Postgres + pgvector with real Feast: publish v1, train a ranker on v1,
publish v2 and v3 through the gate, retire v1 and v2 — the unchanged v1 ranker still gets v1-space vectors online
and historically, its AUC stays within the tolerance, and SQL similarity in v1 still answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from star import db
from star.errors import VersionError
from star.pipeline import apply_features
from star.ranker import auc, heldout, save, score_online, train_ranker
from star.store.feast_repo import open_store
from star.store.trainset import TrainsetConfig, build_trainset
from star.text.config import TextModelConfig
from star.text.embed import EmbedConfig, embed_texts
from star.text.model import TextEncoder
from star.versions import compat
from star.versions.lifecycle import current_vectors, fit_map, list_versions, show
from star.versions.retire import retire
from star.versions.publish import publish
from tests.test_ranker import FAMILIES, V1, _market, encoders  # noqa: F401  (encoders: module fixture)
from tests.text_models import one_thread  # noqa: F401  (autouse fixture)


def test_v1_ranker_survives_two_new_vintages_and_the_retirement_of_v1_and_v2(target, encoders, tmp_path):  # noqa: F811
    _market(target, encoders, ["v1"])
    df = build_trainset(target, TrainsetConfig(features=V1.refs))
    ranker, metrics = train_ranker(df, V1)
    ranker_dir = save(ranker, tmp_path / "ranker")
    cut = pd.Timestamp(metrics["cut"])
    held = heldout(ranker, df)
    auc_native = auc(ranker, held)

    v3_encoder = TextEncoder(TextModelConfig(model_dir=encoders["v1"].cfg.model_dir, pooling="mean",
                                             precision="fp32", max_length={"member": 384, "job": 384,
                                                                           "resume": 384}))
    for version, encoder in ((2, encoders["good"]), (3, v3_encoder)):
        embed_texts(target, encoder, EmbedConfig(candidate=True), progress=False)
        apply_features(target)
        for family in FAMILIES.values():
            assert publish(target, family, version, ranker_dir=ranker_dir)["gate"]["passed"]

    pairs = list(dict.fromkeys(zip(held["member_id"].astype(int), held["job_id"].astype(int))))[:30]
    with db.connect(target) as conn:
        for family in FAMILIES.values():
            fit_map(conn, family, 3, 2)  # v2 is served from v3 too
        conn.commit()
    for family in FAMILIES.values():
        for version in (2, 1):
            assert retire(target, family, version, source=3)["served_from"] == 3
    with db.connect(target) as conn:
        states = {f: [(r["version"], r["status"], r["served_from"]) for r in list_versions(conn, f)]
                  for f in FAMILIES.values()}
        maps = {f: compat.load(conn, f, 3, 1) for f in FAMILIES.values()}
        v3 = {e: current_vectors(conn, f, 3, e) for e, f in FAMILIES.items()}
        for f in FAMILIES.values():
            assert conn.execute(f"SELECT relkind FROM pg_class WHERE oid IN (to_regclass('star.{f}_v1'), "
                                f"to_regclass('star.{f}_v2'))").fetchall() == [("v",), ("v",)]  # views, no rows
        neighbours = conn.execute("SELECT id FROM star.nearest('member_text_embedding', 1, %s, 10)",
                                  (pairs[0][0],)).fetchall()
        with pytest.raises(VersionError, match=r"no vintage 9; available: v1 \(retired\), v2 \(retired\), "
                                               r"v3 \(published\)"):
            show(conn, "member_text_embedding", 9)
    assert all(s == [(1, "retired", 3), (2, "retired", 3), (3, "published", None)] for s in states.values())
    assert len(neighbours) == 10

    # online: the unchanged ranker reads "<family>_v1:embedding" and gets W e_3 + b
    store = open_store(target)
    got = store.get_online_features(features=list(V1.member_features),
                                    entity_rows=[{"member_id": pairs[0][0]}]).to_dict()["embedding"][0]
    family = FAMILIES["member"]
    assert np.allclose(got, maps[family].apply(v3["member"][pairs[0][0]]), atol=1e-4)
    assert np.isfinite(score_online(ranker, store, pairs)).all()

    # historical: the same held-out rows, now joined point-in-time through the map, score within the tolerance
    after = heldout(ranker, build_trainset(target, TrainsetConfig(features=V1.refs, start=cut)))
    assert len(after) == len(held)
    auc_after = auc(ranker, after)
    assert abs(auc_after - auc_native) <= 0.005, (auc_native, auc_after)
