"""STAR lives in a Feast repo users own: what they define in feature_repo/ survives every STAR apply, the shipped
feature service resolves, mixed vector views read with full feature names, and the lineage is in Feast tags."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from feast.errors import FeatureNameCollisionError

from star import db
from star.config import Settings
from star.data.reading import frame, read_dir
from star.pipeline import apply_features, materialize
from star.store.feast_repo import open_store
from star.store.marketplace import load
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
    return replace(Settings.from_env(), feature_repo=repo)


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
