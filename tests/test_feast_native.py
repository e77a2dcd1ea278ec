"""STAR lives in a Feast repo users own: what they define in feature_repo/ survives every STAR apply, the shipped
feature service resolves, mixed vector views read with full feature names, and the lineage is in Feast tags."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feast.errors import FeatureNameCollisionError

from star import db
from star.config import Settings
from star.data.reading import frame, read_dir
from star.pipeline import apply_features, materialize
from star.store import embeddings
from star.store.feast_repo import open_store
from star.store.marketplace import load
from star.text.embed import EmbedConfig
from star.versions.lifecycle import fit_map
from star.versions.retire import retire
from tests import tiny_market
from tests.test_online_store import vector_vintage

FEAST = str(Path(sys.executable).with_name("feast"))

USER_OBJECTS = '''
from datetime import timedelta

from feast import FeatureService, FeatureView, Field
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
from feast.types import String

import feature_views as star_views
from entities import MEMBER

city_source = PostgreSQLSource(
    name="my_city_source", timestamp_field="event_timestamp",
    query="SELECT member_id, valid_from AS event_timestamp, upper(attrs->>'location') AS city FROM star.member_history")
my_city = FeatureView(name="my_member_city", entities=[MEMBER], ttl=timedelta(0), source=city_source,
                      schema=[Field(name="city", dtype=String)], online=True)
my_service = FeatureService(name="my_service", features=[my_city, star_views.member_categorical_v1[["seniority"]]])
'''


def _user_repo(tmp_path: Path) -> Settings:
    repo = tmp_path / "feature_repo"
    shutil.copytree(Settings.from_env().feature_repo, repo, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "my_objects.py").write_text(USER_OBJECTS)
    return Settings.from_env().model_copy(update={"feature_repo": repo})


def _feast_apply(target, settings: Settings) -> None:
    done = subprocess.run([FEAST, "-c", str(settings.feature_repo), "apply"], env={**os.environ, **target.feast_env()},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def _names(store) -> tuple[set, set, set]:
    return ({fv.name for fv in store.list_feature_views()}, {s.name for s in store.list_feature_services()},
            {s.name for s in store.list_data_sources()})


def test_objects_users_define_in_the_repo_survive_star_applies(target, tmp_path):
    load(target, read_dir(tiny_market.write(tmp_path / "m")))
    settings = _user_repo(tmp_path)
    _feast_apply(target, settings)
    views, services, sources = _names(open_store(target, settings))
    assert "my_member_city" in views and "my_service" in services and "my_city_source" in sources

    apply_features(target, settings)  # `star features apply`, as every seed / embed / publish / retire runs it
    vector_vintage(target, np.eye(2, 4), [1, 2])  # a new vintage: the next apply adds its view
    data = tiny_market.frames()
    data["members"] = data["members"].assign(open_to_work=["yes", "no", "yes"])  # a new version of a family
    load(target, {k: frame(v, f"{k}.csv") for k, v in data.items()})
    apply_features(target, settings)
    store = open_store(target, settings)
    views, services, sources = _names(store)
    assert {"my_member_city", "member_text_embedding_v1", "member_categorical_v2"} <= views
    assert "my_service" in services and "my_city_source" in sources
    assert [p.name for p in store.get_feature_service("my_service").feature_view_projections] == [
        "my_member_city", "member_categorical_v1"]

    materialize(target, settings=settings)
    got = store.get_online_features(features=store.get_feature_service("my_service"),
                                    entity_rows=[{"member_id": 1}, {"member_id": 2}]).to_dict()
    assert got["city"] == ["BERLIN", "PARIS"] and got["seniority"] == ["senior", "mid"]

    with db.connect(target) as conn:  # a STAR view the catalog no longer has is still removed
        conn.execute("DELETE FROM star.embedding_versions WHERE feature_view = 'member_text_embedding_v1'")
        conn.commit()
    apply_features(target, settings)
    views, services, _ = _names(open_store(target, settings))
    assert "member_text_embedding_v1" not in views and "my_member_city" in views and "my_service" in services


def _ranker_market(target, tmp_path) -> None:
    load(target, read_dir(tiny_market.write(tmp_path / "m")))
    rng = np.random.default_rng(0)
    vector_vintage(target, rng.normal(size=(2, 8)), [1, 2])
    vector_vintage(target, rng.normal(size=(2, 8)), [10, 11], family="job_text_embedding", entity="job")


def test_the_shipped_ranker_service_resolves_online(target, tmp_path):
    """feature_repo/feature_services.py: the reference ranker's inputs under one name, read as the README says."""
    _ranker_market(target, tmp_path)
    apply_features(target)
    materialize(target)
    store = open_store(target)
    got = store.get_online_features(features=store.get_feature_service("ranker_v1"),
                                    entity_rows=[{"member_id": 1, "job_id": 10}, {"member_id": 2, "job_id": 11}],
                                    full_feature_names=True).to_dict()
    assert got["member_categorical_v1__seniority"] == ["senior", "mid"]
    assert got["job_categorical_v1__seniority"] == ["senior", "junior"]
    assert len(got["member_text_embedding_v1__embedding"][0]) == 8
    assert len(got["job_text_embedding_v1__embedding"][1]) == 8


MIXED_SERVICE = '''
from feast import FeatureService

import feature_views as v

matching = FeatureService(name="matching", features=[
    v.member_text_embedding_v1, v.job_text_embedding_v1, v.member_graph_embedding_v1, v.job_graph_embedding_v1])
'''


def test_a_service_mixing_member_and_job_text_and_graph_embeddings_reads_with_full_names(target, tmp_path):
    """Four views that each name their vector `embedding`: with full_feature_names=True (the README's way) every
    vector comes back under <view>__embedding, in STAR's online store and in stock Feast's (STAR_FEAST_MODE)."""
    load(target, read_dir(tiny_market.write(tmp_path / "m")))
    rng = np.random.default_rng(3)
    vectors = {"member_text_embedding": rng.normal(size=(2, 8)), "job_text_embedding": rng.normal(size=(2, 8)),
               "member_graph_embedding": rng.normal(size=(2, 4)), "job_graph_embedding": rng.normal(size=(2, 4))}
    for family, vecs in vectors.items():
        entity = family.split("_")[0]
        vector_vintage(target, vecs, [1, 2] if entity == "member" else [10, 11], family=family, entity=entity,
                       kind="graph_embedding" if "graph" in family else "text_embedding")
    settings = _user_repo(tmp_path)
    (settings.feature_repo / "my_objects.py").write_text(MIXED_SERVICE)
    apply_features(target, settings)
    materialize(target, settings=settings)
    store = open_store(target, settings)
    service = store.get_feature_service("matching")
    rows = [{"member_id": 2, "job_id": 10}, {"member_id": 1, "job_id": 11}]
    response = store.get_online_features(features=service, entity_rows=rows, full_feature_names=True)
    if os.environ.get("STAR_FEAST_MODE", "star") == "star":  # STAR's one-round-trip read, not Feast's fallback
        assert type(response).__name__ == "StarOnlineResponse"
    got = response.to_dict()
    assert sorted(got) == ["job_graph_embedding_v1__embedding", "job_id", "job_text_embedding_v1__embedding",
                           "member_graph_embedding_v1__embedding", "member_id", "member_text_embedding_v1__embedding"]
    for family, vecs in vectors.items():
        order = [1, 0] if family.startswith("member") else [0, 1]
        assert got[f"{family}_v1__embedding"] == [vecs[i].astype(np.float32).tolist() for i in order]
    with pytest.raises(FeatureNameCollisionError):  # Feast's own answer without full names
        store.get_online_features(features=service, entity_rows=rows)


def _vintage(target, family: str, vectors: np.ndarray, *, fingerprint: dict, model: str, metrics: dict,
             ts: str = "2025-03-01T00:00:00Z") -> None:
    """A published vintage as the embedding jobs record it (fingerprint, model, lineage metrics), rows written
    directly."""
    entity, kind = family.split("_")[0], "graph_embedding" if "graph" in family else "text_embedding"
    with db.connect(target) as conn:
        v, _ = embeddings.find_or_create(conn, family=family, entity=entity, dim=vectors.shape[1], kind=kind,
                                         fingerprint=fingerprint, model=model)
        conn.commit()
        embeddings.ensure_staging(conn, v)
        ids = range(1, len(vectors) + 1)
        embeddings.stage(conn, v, pd.DataFrame({"entity_id": list(ids), "valid_from": pd.Timestamp(ts),
                                                v.source_column: [f"s{i}" for i in ids]}), vectors.astype(np.float32))
        embeddings.publish(conn, v, metrics=metrics, analyze=False)


def _tags(target, view: str) -> dict:
    fv = open_store(target).get_feature_view(view)
    return {**fv.tags, "owner": fv.owner, "description": fv.description}


def test_lineage_is_in_feast_tags_and_follows_deprecate_and_retire(target):
    """`feast feature-views describe` shows model, checksum, data window, the text vintages a graph vintage read,
    and the status; deprecate and retire re-apply, so the tags follow the registry."""
    rng = np.random.default_rng(7)
    v1 = rng.normal(size=(60, 4))
    _vintage(target, "member_text_embedding", v1, model="/models/base",
             fingerprint={"model_dir": "/models/base", "model_checksum": "c0ffee", "adapter_checksum": None},
             metrics={"adapter_dir": None}, ts="2025-02-01T00:00:00Z")
    _vintage(target, "member_graph_embedding", rng.normal(size=(60, 3)), model="/runs/graph/model",
             fingerprint={"kind": "graph_embedding", "weights_sha256": "beef",
                          "text_versions": {"member": 1, "job": 1}},
             metrics={"model_dir": "/runs/graph/model", "train_cutoff": "2025-02-15T00:00:00+00:00",
                      "last_run": {"cutoff": "2025-03-01T00:00:00+00:00"}})
    apply_features(target)
    text = _tags(target, "member_text_embedding_v1")
    assert {k: text[k] for k in ("star_status", "star_model", "star_model_sha256", "star_data_end", "owner")} == {
        "star_status": "published", "star_model": "/models/base", "star_model_sha256": "c0ffee",
        "star_data_end": "2025-02-01T00:00:00+00:00", "owner": "star"}
    assert "/models/base" in text["description"] and "2025-02-01" in text["description"]
    graph = _tags(target, "member_graph_embedding_v1")
    assert graph["star_text_version"] == "job_text_embedding_v1,member_text_embedding_v1"
    assert (graph["star_model"], graph["star_model_sha256"]) == ("/runs/graph/model", "beef")
    assert graph["star_data_end"] == graph["star_graph_cutoff"] == "2025-03-01T00:00:00+00:00"
    assert "star_served_from" not in graph

    rotation = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    _vintage(target, "member_text_embedding", v1 @ rotation, model="/models/other",
             fingerprint={"model_dir": "/models/other", "model_checksum": "d00d", "adapter_checksum": None},
             metrics={"adapter_dir": None}, ts="2025-02-01T00:00:00Z")
    apply_features(target)
    materialize(target)
    env = {**os.environ, "STAR_DATABASE_URL": target.sqlalchemy_url()}
    done = subprocess.run([str(Path(sys.executable).with_name("star")), "versions", "deprecate",
                           "member_text_embedding", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _tags(target, "member_text_embedding_v1")["star_status"] == "deprecated"
    with db.connect(target) as conn:
        fit_map(conn, "member_text_embedding", 2, 1)
        conn.commit()
    retire(target, "member_text_embedding", 1)
    retired = _tags(target, "member_text_embedding_v1")
    assert (retired["star_status"], retired["star_served_from"]) == ("retired", "2")
    assert "served from v2" in retired["description"]


def test_text_embed_defaults_to_the_newest_model_trained_on_this_database(server, target, tmp_path, monkeypatch):
    """Two databases, one STAR_HOME: the adapter trained on A is A's default (recorded in star.text_models with its
    data window; the vintage's registry model and Feast tags name the adapter), never B's: B embeds with the
    base model and says so."""
    from star.pipeline import seed_synthetic, text_embed, text_train
    from star.store.text_models import newest
    from star.text.config import TextModelConfig, TrainConfig
    from tests.text_models import tiny_bert

    monkeypatch.setenv("STAR_HOME", str(tmp_path / "home"))
    base_dir = tiny_bert(tmp_path / "tiny")
    model_cfg = TextModelConfig(model_dir=base_dir, pooling="mean", precision="fp32", head_hidden=(16,))
    seed_synthetic(target, members=150, jobs=50, seed=4, progress=False)
    apply_features(target)
    trained = text_train(target, model_cfg=model_cfg, compare=False, progress=False,
                         train_cfg=TrainConfig(max_steps=2, per_device_batch=8, grad_accum=1))
    with db.connect(target) as conn:
        model = newest(conn)
    assert model.path == trained["model"] and model.base_model == base_dir and model.adapter_sha256
    assert model.data_start < model.data_end

    base, template = server
    other = base.with_database(f"{target.dbname}_b")
    db.ensure_database(other, template=template)
    try:
        load(other, read_dir(tiny_market.write(tmp_path / "m")))
        on_b = text_embed(other, model_cfg=model_cfg, cfg=EmbedConfig(entities=("job",)), progress=False)
        assert on_b["adapter"] is None and "no text model was trained on this database" in on_b["note"]
        assert _tags(other, "job_text_embedding_v1")["star_model"] == base_dir
    finally:
        db.drop_database(other)

    on_a = text_embed(target, cfg=EmbedConfig(entities=("job",)), progress=False)
    assert on_a["adapter"] == trained["model"] and "note" not in on_a
    with db.connect(target) as conn:
        (registered,) = conn.execute("SELECT model FROM star.embedding_versions WHERE family = 'job_text_embedding'"
                                     ).fetchone()
    assert registered == trained["model"]  # the adapter, not its base model
    tags = _tags(target, "job_text_embedding_v1")
    assert tags["star_status"] == "published"  # re-applied once its materialize published it
    assert (tags["star_model"], tags["star_model_sha256"], tags["star_base_model"]) == (
        trained["model"], model.adapter_sha256, base_dir)
