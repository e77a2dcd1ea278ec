"""The text embedding job on a real Postgres + pgvector, real Feast and real (tiny or MiniLM) models."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import psycopg
import pytest

from star import db
from star.data.reading import frame, read_dir
from star.errors import StarError, VersionError
from star.pipeline import apply_features, seed_synthetic
from star.store.catalog import published_views
from star.store.feast_repo import open_store
from star.store.marketplace import load
from star.store.similarity import explain, nearest
from star.text.config import TextModelConfig
from star.text.embed import EmbedConfig, EmptyTextError, embed_texts
from star.text.model import TextEncoder
from tests import tiny_market
from tests.text_models import minilm_dir, tiny_bert, tiny_dir, tiny_encoder  # noqa: F401  (fixtures)


def _rows(target, table):
    with db.connect(target) as conn:
        return conn.execute(f"SELECT count(*) FROM star.{table}").fetchone()[0]


def _snapshot_count(target, entity):
    with db.connect(target) as conn:
        return conn.execute("SELECT count(*) FROM star.text_snapshots WHERE entity = %s", (entity,)).fetchone()[0]


def test_versions_published_with_feast_views_online_and_point_in_time(target, tmp_path, tiny_encoder):
    load(target, read_dir(tiny_market.write(tmp_path / "m")))
    results = embed_texts(target, tiny_encoder, EmbedConfig(), progress=False)
    assert [(r["family"], r["version"], r["embedded"]) for r in results] == [
        ("member_text_embedding", 1, 3), ("job_text_embedding", 1, 2)]
    with db.connect(target) as conn:
        rows = conn.execute("SELECT family, status, dim FROM star.embedding_versions WHERE config->>'kind' = "
                            "'text_embedding' ORDER BY 1").fetchall()
        assert rows == [("job_text_embedding", "published", 32), ("member_text_embedding", "published", 32)]
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'star'")}
        assert {"member_text_embedding_v1_hnsw", "job_text_embedding_v1_hnsw"} <= indexes
        stored = {(m, str(t)): np.array(e, dtype=np.float32) for m, t, e in conn.execute(
            "SELECT member_id, event_timestamp, embedding::real[] FROM star.member_text_embedding_v1")}
    apply_features(target)
    store = open_store(target)
    from star.pipeline import materialize

    materialize(target, feature_views=["member_text_embedding_v1"])
    online = store.get_online_features(features=["member_text_embedding_v1:embedding"],
                                       entity_rows=[{"member_id": 1}]).to_dict()["embedding"][0]
    latest = tiny_encoder.encode(["Senior data analyst, SQL, Python"], "member").embeddings[0]
    np.testing.assert_allclose(online, latest, atol=1e-5)
    # point in time: before the profile changed, the old text's vector
    entity_df = pd.DataFrame({"member_id": [1, 1], "event_timestamp": pd.to_datetime(
        ["2025-02-01T00:00:00Z", "2025-03-02T00:00:00Z"], utc=True)})
    hist = store.get_historical_features(entity_df=entity_df, features=["member_text_embedding_v1:embedding"]).to_df()
    old = tiny_encoder.encode(["Junior data analyst, SQL"], "member").embeddings[0]
    np.testing.assert_allclose(hist["embedding"].iloc[0], old, atol=1e-5)
    np.testing.assert_allclose(hist["embedding"].iloc[1], latest, atol=1e-5)
    assert len(stored) == 3


def test_hash_skip_second_run_embeds_nothing_and_a_change_embeds_only_it(target, tiny_encoder):
    seed_synthetic(target, members=200, jobs=60, seed=5, progress=False)
    cfg = EmbedConfig(entities=("member",))
    first = embed_texts(target, tiny_encoder, cfg, progress=False)[0]
    total = _snapshot_count(target, "member")
    assert first["embedded"] == total and first["skipped"] == 0
    second = embed_texts(target, tiny_encoder, cfg, progress=False)[0]
    assert (second["version"], second["embedded"], second["skipped"]) == (1, 0, total)
    # change ~1 % of the texts (and add one new snapshot): only those are embedded, in the same version
    with db.connect(target) as conn:
        changed = conn.execute(
            "UPDATE star.text_snapshots SET text = text || ' Also fluent in Esperanto.' WHERE entity = 'member' "
            "AND (entity_id, valid_from) IN (SELECT entity_id, valid_from FROM star.text_snapshots "
            "WHERE entity = 'member' ORDER BY entity_id LIMIT %s)", (max(total // 100, 1),)).rowcount
        conn.commit()
    third = embed_texts(target, tiny_encoder, cfg, progress=False)[0]
    assert (third["version"], third["embedded"], third["skipped"]) == (1, changed, total - changed)
    with db.connect(target) as conn:
        stale = conn.execute("SELECT count(*) FROM star.member_text_embedding_v1 e JOIN star.text_snapshots s "
                             "ON s.entity = 'member' AND s.entity_id = e.member_id AND s.valid_from = e.event_timestamp "
                             "WHERE s.text_md5 <> e.text_md5").fetchone()[0]
        current = conn.execute("SELECT count(*), count(DISTINCT member_id) FROM star.member_text_embedding_v1 "
                               "WHERE is_current").fetchone()
    assert stale == 0
    assert current[0] == current[1]  # exactly one current row per member


def test_different_config_makes_a_new_version_and_keeps_the_old(target, tmp_path, tiny_dir, tiny_encoder):
    load(target, read_dir(tiny_market.write(tmp_path / "m")))
    embed_texts(target, tiny_encoder, EmbedConfig(entities=("job",)), progress=False)
    other = TextEncoder(TextModelConfig(model_dir=tiny_dir, pooling="cls_layers", precision="fp32"))
    result = embed_texts(target, other, EmbedConfig(entities=("job",)), progress=False)[0]
    assert (result["version"], result["new_version"], result["embedded"]) == (2, True, 2)
    with db.connect(target) as conn:
        names = {s.name for s in published_views(conn)}
    assert {"job_text_embedding_v1", "job_text_embedding_v2"} <= names


KILL_SCRIPT = """
import sys, time
from star.config import DbTarget
from star.text.config import TextModelConfig
from star.text.embed import EmbedConfig, embed_texts
from star.text.model import TextEncoder

class Slow(TextEncoder):
    def encode(self, *a, **k):
        time.sleep(0.3)  # slow enough that the parent kills it mid-run
        return super().encode(*a, **k)

target = DbTarget.from_url(sys.argv[1])
embed_texts(target, Slow(TextModelConfig(model_dir=sys.argv[2], pooling="mean", precision="fp32")),
            EmbedConfig(entities=("member",), commit_every=8), progress=False)
"""


def test_killed_run_is_invisible_and_the_next_run_finishes(target, tiny_dir, tiny_encoder):
    seed_synthetic(target, members=120, jobs=40, seed=2, progress=False)
    total = _snapshot_count(target, "member")
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, target.sqlalchemy_url(), tiny_dir],
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    staged, deadline = 0, time.time() + 120
    while time.time() < deadline and staged < 16:
        time.sleep(0.2)
        try:
            staged = _rows(target, "member_text_embedding_v1__staging")
        except Exception:
            staged = 0
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    staged = _rows(target, "member_text_embedding_v1__staging")  # final: the child is dead
    assert 0 < staged < total
    with db.connect(target) as conn:
        status = conn.execute("SELECT status FROM star.embedding_versions WHERE family = 'member_text_embedding'"
                              ).fetchone()[0]
        assert status == "building"
        assert "member_text_embedding_v1" not in {s.name for s in published_views(conn)}
        assert conn.execute("SELECT count(*) FROM star.member_text_embedding_v1").fetchone()[0] == 0
    apply_features(target)  # what Feast consumers see: no half-built view
    assert "member_text_embedding_v1" not in {fv.name for fv in open_store(target).list_feature_views()}
    resumed = embed_texts(target, tiny_encoder, EmbedConfig(entities=("member",)), progress=False)[0]
    assert resumed["version"] == 1 and resumed["new_version"] is False
    assert resumed["embedded"] == total - staged  # the killed run's committed batches are kept
    assert _rows(target, "member_text_embedding_v1") == total


def test_bad_inputs_are_clear_errors_and_write_nothing(target, tmp_path, tiny_dir, tiny_encoder):
    data = tiny_market.frames()
    data["texts"].loc[2, "text"] = "   "
    load(target, {k: frame(v, f"{k}.csv") for k, v in data.items()})
    with pytest.raises(EmptyTextError, match=r"1 member text snapshot\(s\) are empty or whitespace \(member_id 2\)"):
        embed_texts(target, tiny_encoder, EmbedConfig(entities=("member",)), progress=False)
    with db.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM star.embedding_versions WHERE config->>'kind' = 'text_embedding'"
                            ).fetchone()[0] == 0
    skipped = embed_texts(target, tiny_encoder, EmbedConfig(entities=("member",), skip_empty=True),
                          progress=False)[0]
    assert (skipped["embedded"], skipped["empty_skipped"]) == (2, 1)
    with pytest.raises(VersionError, match=r"member_text_embedding version 9 does not exist \(versions: \[1\]\)"):
        embed_texts(target, tiny_encoder, EmbedConfig(entities=("member",), version=9), progress=False)
    wider = TextEncoder(TextModelConfig(model_dir=tiny_bert(tmp_path / "wide", hidden=48), precision="fp32"))
    with pytest.raises(VersionError, match=r"registered with dim 32 but the model gives 48-d"):
        embed_texts(target, wider, EmbedConfig(entities=("member",), version=1), progress=False)
    with pytest.raises(StarError, match=str(tmp_path / "nowhere")):
        TextEncoder(TextModelConfig(model_dir=str(tmp_path / "nowhere")))


def test_long_texts_are_chunked_counted_and_the_chunking_is_part_of_the_version(target, tmp_path, tiny_dir):
    data = tiny_market.frames()
    data["texts"].loc[4, "text"] = "nurse " * 400
    load(target, {k: frame(v, f"{k}.csv") for k, v in data.items()})

    def encoder(**cfg):
        return TextEncoder(TextModelConfig(model_dir=tiny_dir, precision="fp32", window=64, **{"overlap": 16, **cfg}))

    short = encoder(max_length={"job": 32, "member": 32, "resume": 32})
    result = embed_texts(target, short, EmbedConfig(entities=("job",)), progress=False)[0]
    assert (result["embedded"], result["truncated"], result["max_chunks"]) == (2, 1, 1)
    whole = embed_texts(target, encoder(), EmbedConfig(entities=("job",)), progress=False)[0]
    assert (whole["version"], whole["new_version"], whole["truncated"]) == (2, True, 0)
    assert whole["max_chunks"] >= 400 // 62 and whole["chunks"] == whole["max_chunks"] + 1  # windows of 62 tokens
    # another overlap is another chunking: a new version, never rows of two chunkings in one
    other = embed_texts(target, encoder(overlap=8), EmbedConfig(entities=("job",)), progress=False)[0]
    assert (other["version"], other["new_version"], other["embedded"]) == (3, True, 2)
    again = embed_texts(target, encoder(overlap=8), EmbedConfig(entities=("job",)), progress=False)[0]
    assert (again["version"], again["new_version"], again["embedded"]) == (3, False, 0)  # the hash skip


def test_sql_similarity_uses_hnsw_and_finds_the_matching_job(target):
    """With the shipped MiniLM, the analyst's nearest posting is the analyst job, through the HNSW index."""
    data = tiny_market.frames()
    load(target, {k: frame(v, f"{k}.csv") for k, v in data.items()})
    encoder = TextEncoder(TextModelConfig(model_dir=minilm_dir(), precision="fp32"))
    embed_texts(target, encoder, EmbedConfig(), progress=False)
    with db.connect(target) as conn:
        jobs = nearest(conn, query_table="member_text_embedding_v1", query_key="member_id", query_id=1,
                       target_table="job_text_embedding_v1", target_key="job_id", k=2)
        assert [j for j, _ in jobs] == [10, 11] and jobs[0][1] > jobs[1][1]
        members = nearest(conn, query_table="member_text_embedding_v1", query_key="member_id", query_id=2,
                          target_table="member_text_embedding_v1", target_key="member_id", k=5)
        assert [m for m, _ in members] == [1]
        conn.execute("SET enable_seqscan = off")  # tiny table: make the planner show it can use the index
        plan = explain(conn, query_table="member_text_embedding_v1", query_key="member_id", query_id=1,
                       target_table="job_text_embedding_v1", target_key="job_id")
    assert "job_text_embedding_v1_hnsw" in plan


def test_train_then_embed_uses_the_newest_adapter_and_records_lineage(target, tmp_path, tiny_dir, monkeypatch):
    """`star text train` then `star text embed` with no arguments: the new adapter makes a new version whose
    registry row carries the model, adapter checksum, config and the Table-2 comparison."""
    from star.pipeline import text_embed, text_train
    from star.text.config import TrainConfig

    monkeypatch.setenv("STAR_HOME", str(tmp_path / "home"))
    seed_synthetic(target, members=150, jobs=50, seed=4, progress=False)
    apply_features(target)
    model_cfg = TextModelConfig(model_dir=tiny_dir, pooling="mean", precision="fp32", head_hidden=(16,))
    trained = text_train(target, model_cfg=model_cfg, progress=False,
                         train_cfg=TrainConfig(max_steps=3, per_device_batch=8, grad_accum=1))
    assert set(trained["metrics"]) == {"frozen_head", "bce", "bce+contrastive"}
    done = text_embed(target, cfg=EmbedConfig(entities=("job",)), progress=False)
    assert done["adapter"] == trained["model"]
    (family,) = done["families"]
    assert (family["family"], family["version"], family["new_version"]) == ("job_text_embedding", 1, True)
    with db.connect(target) as conn:
        model, config, metrics = conn.execute(
            "SELECT model, config, metrics FROM star.embedding_versions WHERE family = 'job_text_embedding'"
        ).fetchone()
    assert model == trained["model"]  # the adapter that computed the vectors, not its base model
    assert config["fingerprint"]["adapter_checksum"]
    assert config["fingerprint"]["config"]["pooling"] == "mean"
    assert [r["model"] for r in metrics["comparison"]["rows"]] == ["frozen_head", "bce", "bce+contrastive"]
    assert "job_text_embedding_v1" in done["materialized"]
    again = text_embed(target, cfg=EmbedConfig(entities=("job",)), progress=False)
    assert again["families"][0]["embedded"] == 0 and again["materialized"] == []


def test_a_run_killed_after_publishing_is_applied_and_materialized_by_the_next(target, tiny_dir, monkeypatch):
    """embed_texts alone, as the job calls it = a `star text embed` killed after its database publish, before Feast
    apply/materialize: no consumer sees the vintage (SQL or Feast) until the next run serves it."""
    from star import pipeline
    from star.versions.lifecycle import list_versions

    seed_synthetic(target, members=60, jobs=20, seed=4, progress=False)
    encoder = TextEncoder(TextModelConfig(model_dir=tiny_dir))  # as pipeline.text_embed builds it
    embed_texts(target, encoder, EmbedConfig(entities=("member",), await_feast=True), progress=False)
    assert "member_text_embedding_v1" not in {fv.name for fv in open_store(target).list_feature_views()}
    with db.connect(target) as conn:
        (row,) = list_versions(conn, "member_text_embedding")
        assert (row["status"], row["pending"]) == ("building", "feast apply + materialize, then published")
        with pytest.raises(psycopg.errors.RaiseException, match="has no servable vintage 1"):
            conn.execute("SELECT * FROM star.nearest('member_text_embedding', 1, 1, 5)")

    out = pipeline.text_embed(target, model_dir=tiny_dir, base=True, cfg=EmbedConfig(entities=("member",)),
                              progress=False)
    assert out["families"][0]["embedded"] == 0 and out["materialized"] == ["member_text_embedding_v1"]
    with db.connect(target) as conn:
        assert [(r["status"], r["pending"]) for r in list_versions(conn, "member_text_embedding")] == [
            ("published", None)]
        member, vector = conn.execute("SELECT member_id, embedding::real[] FROM star.member_text_embedding_v1 "
                                      "WHERE is_current ORDER BY 1 LIMIT 1").fetchone()
    online = open_store(target).get_online_features(features=["member_text_embedding_v1:embedding"],
                                                    entity_rows=[{"member_id": member}]).to_dict()["embedding"][0]
    assert np.allclose(online, vector, atol=1e-6)
    again = pipeline.text_embed(target, model_dir=tiny_dir, base=True, cfg=EmbedConfig(entities=("member",)),
                                progress=False)
    assert again["materialized"] == []  # done: nothing pending any more


def test_a_second_job_on_the_same_family_fails_fast_and_writes_nothing(target, tiny_encoder):
    from star.store.locks import FamilyBusy, lock_family

    seed_synthetic(target, members=40, jobs=15, seed=6, progress=False)
    with db.connect(target) as other:  # a running `star text embed` holds the member family
        lock_family(other, "member_text_embedding")
        with pytest.raises(FamilyBusy, match="another job is writing or materializing member_text_embedding right"):
            embed_texts(target, tiny_encoder, EmbedConfig(entities=("member",)), progress=False)
        done = embed_texts(target, tiny_encoder, EmbedConfig(entities=("job",)), progress=False)  # others go on
        assert done[0]["embedded"] > 0
        with db.connect(target) as conn:
            assert conn.execute("SELECT count(*) FROM star.embedding_versions WHERE family = "
                                "'member_text_embedding'").fetchone()[0] == 0
    again = embed_texts(target, tiny_encoder, EmbedConfig(entities=("member",)), progress=False)  # released
    assert again[0]["embedded"] == _snapshot_count(target, "member")


def test_a_kind_without_texts_is_skipped_and_none_at_all_is_an_error(target, tmp_path, tiny_encoder):
    data = tiny_market.frames()
    data["texts"] = data["texts"][data["texts"]["entity"] == "member"]  # profiles, no postings
    load(target, read_dir(tiny_market.write(tmp_path / "m", data)))
    out = embed_texts(target, tiny_encoder, EmbedConfig(), progress=False)
    assert [(r["family"], r["version"], r["embedded"]) for r in out] == [
        ("member_text_embedding", 1, 3), ("job_text_embedding", None, 0)]
    assert "no job texts are loaded" in out[1]["note"]
    with db.connect(target) as conn:
        assert [r[0] for r in conn.execute("SELECT family FROM star.embedding_versions WHERE config->>'kind' = "
                                           "'text_embedding'")] == ["member_text_embedding"]
    with pytest.raises(EmptyTextError, match="no job texts are loaded: nothing to embed; add a texts"):
        embed_texts(target, tiny_encoder, EmbedConfig(entities=("job",)), progress=False)
