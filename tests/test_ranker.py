"""The reference ranker on a real point-in-time training set, and the parity gate that decides whether it may be
served a new vintage through a compatibility map (real Postgres + pgvector, real Feast, tiny real text models)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import BertModel

from star import db
from star.errors import ConfigError
from star.pipeline import apply_features, materialize, seed_synthetic
from star.ranker import RankerConfig, load, save, score, score_online, train_ranker
from star.store.catalog import latest_views
from star.store.feast_repo import open_store
from star.store.trainset import TrainsetConfig, build_trainset
from star.text.config import TextModelConfig
from star.text.embed import EmbedConfig, embed_texts
from star.text.model import TextEncoder
from star.versions.compat import CompatMap
from star.versions.config import GateConfig
from star.versions.gate import (GateError, GateFailed, check_alignment, evaluate_gate, gate_refs, gate_report,
                                overlap_at_k, translate_frame)
from star.versions.lifecycle import current_vectors, fit_map
from tests.text_models import one_thread, tiny_bert  # noqa: F401  (one_thread: autouse fixture)

FAMILIES = {"member": "member_text_embedding", "job": "job_text_embedding"}
SENIORITY = ("member_categorical_v1:seniority", "job_categorical_v1:seniority")
V1 = RankerConfig(member_features=("member_text_embedding_v1:embedding",),
                  job_features=("job_text_embedding_v1:embedding",), categorical=SENIORITY)


def col(family: str, version: int) -> str:
    return f"{family}_v{version}__embedding"


def bag_of_words_bert(directory, seed: int) -> str:
    """tiny_bert without position and token-type embeddings. The stock random BERT is anisotropic (mean cosine
    between texts 0.99), so even a map between unrelated seeds scores held-out cosine 0.995 and the alignment check
    cannot fail; without the shared components texts sit at mean cosine ~0.6 and carry their words."""
    if (directory / "config.json").exists():
        return str(directory)
    tiny_bert(directory, seed=seed)
    model = BertModel.from_pretrained(directory)
    with torch.no_grad():
        model.embeddings.position_embeddings.weight.zero_()
        model.embeddings.token_type_embeddings.weight.zero_()
    model.save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """v1, a good successor (same weights, a longer max_length: only texts over 256 tokens change) and a bad one
    (another seed: an unrelated space)."""
    same, other = (bag_of_words_bert(tmp_path_factory.mktemp(f"bow{s}"), seed=s) for s in (0, 1))
    base = dict(pooling="mean", precision="fp32")
    return {"v1": TextEncoder(TextModelConfig(model_dir=same, **base)),
            "good": TextEncoder(TextModelConfig(model_dir=same, max_length={"member": 512, "job": 512,
                                                                            "resume": 512}, **base)),
            "bad": TextEncoder(TextModelConfig(model_dir=other, **base))}


def _market(target, encoders, names):
    # short texts: "good" (max_length 512) must differ from v1 (256) only on the few texts over 256 tokens
    seed_synthetic(target, members=150, jobs=50, seed=5, text_length="short", progress=False)
    for name in names:
        embed_texts(target, encoders[name], EmbedConfig(), progress=False)
    apply_features(target)


def _current_frame(target, pairs: list[tuple[int, int]]) -> pd.DataFrame:
    """The pairs with every ref's current value, read from the star tables, not through Feast."""
    with db.connect(target) as conn:
        vecs = {e: current_vectors(conn, f, 1, e) for e, f in FAMILIES.items()}
        cats = {e: dict(conn.execute(f"SELECT DISTINCT ON ({e}_id) {e}_id, attrs->>'seniority' FROM "
                                     f"star.{e}_history ORDER BY {e}_id, valid_from DESC").fetchall())
                for e in FAMILIES}
    return pd.DataFrame({
        "member_id": [m for m, _ in pairs], "job_id": [j for _, j in pairs],
        col(FAMILIES["member"], 1): [vecs["member"][m] for m, _ in pairs],
        col(FAMILIES["job"], 1): [vecs["job"][j] for _, j in pairs],
        "member_categorical_v1__seniority": [cats["member"][m] for m, _ in pairs],
        "job_categorical_v1__seniority": [cats["job"][j] for _, j in pairs]})


def test_the_ranker_trains_on_a_pit_set_round_trips_and_scores_online_like_offline(target, encoders, tmp_path):
    _market(target, encoders, ["v1"])
    with db.connect(target) as conn:
        views = latest_views(conn)
    assert ("seniority", "string") in views["member_categorical"].features
    assert ("seniority", "string") in views["job_categorical"].features
    df = build_trainset(target, TrainsetConfig(features=V1.refs))
    assert [c for c in df.columns if "__" in c] == [col(f, 1) for f in FAMILIES.values()] + [
        "member_categorical_v1__seniority", "job_categorical_v1__seniority"]
    blanked = df.index[:5]
    df.loc[blanked, col("job_text_embedding", 1)] = None

    ranker, metrics = train_ranker(df, V1)
    assert metrics["dropped_missing_embedding"] == 5 and metrics["train_rows"] + metrics["val_rows"] == len(df) - 5
    assert 0.15 <= metrics["val_rows"] / (len(df) - 5) <= 0.25
    cut = pd.Timestamp(metrics["cut"])
    ts = df["event_timestamp"].drop(blanked)
    assert (ts >= cut).sum() == metrics["val_rows"]  # validation = the latest rows, never a random share
    assert metrics["loss_last"] < metrics["loss_first"] and metrics["auc_val"] > 0.65

    logits = score(ranker, df)
    assert np.isnan(logits[blanked]).all() and np.isfinite(np.delete(logits, blanked)).all()
    save(ranker, tmp_path / "ranker")
    loaded = load(tmp_path / "ranker")
    np.testing.assert_array_equal(score(loaded, df), logits)
    assert loaded.cfg == V1 and loaded.vocab == ranker.vocab and loaded.metrics["auc_val"] == metrics["auc_val"]

    unseen = df.head(20).copy()
    unseen["member_categorical_v1__seniority"] = "astronaut"  # not in the vocabulary: index 0, like missing
    missing = unseen.assign(member_categorical_v1__seniority=None)
    np.testing.assert_array_equal(score(loaded, unseen), score(loaded, missing))

    materialize(target, feature_views=[r.split(":")[0] for r in V1.refs])
    pairs = list(dict.fromkeys(zip(df["member_id"].astype(int), df["job_id"].astype(int))))[:40]
    online = score_online(loaded, open_store(target), pairs)
    offline = score(loaded, _current_frame(target, pairs))
    assert np.isfinite(online).all() and np.allclose(online, offline, atol=1e-5)
    assert np.array_equal(score_online(loaded, open_store(target), pd.DataFrame(pairs, columns=["member_id",
                                                                                                "job_id"])), online)


def test_the_gate_passes_a_good_map_and_stops_a_bad_one(target, encoders):
    _market(target, encoders, ["v1", "good", "bad"])  # -> v1, v2 (good), v3 (bad) of both families
    with db.connect(target) as conn:
        good = [fit_map(conn, f, 2, 1) for f in FAMILIES.values()]
        bad = [fit_map(conn, f, 3, 1) for f in FAMILIES.values()]
        current = {k: {f: (current_vectors(conn, f, 1, e), current_vectors(conn, f, k, e))
                       for e, f in FAMILIES.items()} for k in (2, 3)}
        conn.commit()
    refs = gate_refs(V1.refs, good + bad)
    assert refs == V1.refs + tuple(f"{f}_v{k}:embedding" for k in (2, 3) for f in FAMILIES.values())
    df = build_trainset(target, TrainsetConfig(features=refs))
    ranker, metrics = train_ranker(df, V1)
    held = df[df["event_timestamp"] >= pd.Timestamp(metrics["cut"])].reset_index(drop=True)

    m = bad[0]  # far from the identity, so a translation that skipped the map would show
    out = translate_frame(held, col(m.family, 3), m, into=col(m.family, 1))
    x3 = np.stack(held[col(m.family, 3)].to_numpy())
    assert np.allclose(np.stack(out[col(m.family, 1)].to_numpy()), m.apply(x3), rtol=0, atol=1e-12)
    assert not np.allclose(m.apply(x3), x3, atol=0.05)
    assert np.array_equal(np.stack(out[col(m.family, 3)].to_numpy()), x3)  # the source column is left alone
    assert np.allclose(np.stack(translate_frame(held, col(m.family, 3), m)[col(m.family, 3)].to_numpy()),
                       m.apply(x3), rtol=0, atol=1e-12)

    assert all(check_alignment(m)["passed"] for m in good)
    assert not any(check_alignment(m)["passed"] for m in bad)
    assert check_alignment(bad[0], GateConfig(min_mean=0.5, min_p5=0.5))["passed"]  # thresholds are a config

    translated = held
    for m in good:
        translated = translate_frame(translated, col(m.family, 2), m, into=col(m.family, 1))
    report = gate_report(ranker, held, translated)
    assert report["rows_scored"] == len(held) and report["passed"] and abs(report["delta_auc"]) <= 0.005
    assert report["auc_native"] == pytest.approx(metrics["auc_val"])
    with pytest.raises(GateError, match="same rows in the same order"):
        gate_report(ranker, held, translated.iloc[1:])

    passed = evaluate_gate(ranker, held, good, current=current[2], raise_on_fail=True)
    assert passed["passed"] and passed["failures"] == []
    assert passed["overlap"]["member_text_embedding"]["translated"] >= 0.9
    with pytest.raises(GateFailed, match=r"member_text_embedding v3->v1 alignment cos_mean 0\.\d+ / p5") as failed:
        evaluate_gate(ranker, held, bad, current=current[3], raise_on_fail=True)
    report = failed.value.report
    assert not report["passed"] and not any(a["passed"] for a in report["alignment"].values())
    assert report["parity"]["logit_mae"] > 10 * passed["parity"]["logit_mae"]
    assert report["overlap"]["member_text_embedding"]["translated"] < 0.6
    assert "auc_no_map" in report["parity"]  # 32-d -> 32-d: the unmapped baseline is measured too

    elsewhere = CompatMap(family="member_text_embedding", from_version=3, to_version=2, matrix=np.eye(32))
    with pytest.raises(GateError, match="the ranker does not read 'member_text_embedding_v2__embedding'"):
        evaluate_gate(ranker, held, [elsewhere])


def test_overlap_counts_shared_neighbours_without_the_query_and_configs_check_refs():
    angles = np.deg2rad(np.sort(np.random.default_rng(0).uniform(0, 120, 12)))  # distinct gaps: no ties
    native = {i: np.array([np.cos(a), np.sin(a)]) for i, a in enumerate(angles)}
    assert overlap_at_k(native, {i: 3 * v for i, v in native.items()}, k=3) == 1.0  # scale: same cosines
    swapped = {**native, 1: native[11], 11: native[1]}  # id 0 (smallest angle): neighbours {1, 2} -> {11, 2}
    assert overlap_at_k(native, swapped, queries=[0], k=2) == 0.5
    with pytest.raises(GateError, match="overlap@12 needs more than 12 ids"):
        overlap_at_k(native, native, k=12)

    assert RankerConfig(member_features="a_v1:embedding", job_features=["b_v1:embedding"]).refs == (
        "a_v1:embedding", "b_v1:embedding")
    with pytest.raises(ConfigError, match="not Feast feature refs; expected 'view:feature'"):
        RankerConfig(member_features=("member_text_embedding_v1__embedding",), job_features=("b_v1:embedding",))
    assert RankerConfig.from_dict(V1.to_dict()) == V1
