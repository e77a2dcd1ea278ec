"""Feast round trip on a real Postgres: apply -> materialize -> get_online_features; the `feast` CLI itself;
our point-in-time join against stock Feast's; feature view versions following the data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from star import db
from star.config import Settings
from star.data.reading import frame, read_dir
from star.pipeline import apply_features, materialize
from star.store.catalog import published_views
from star.store.feast_repo import open_store
from star.store.marketplace import load
from star.store.online import online_features
from tests import tiny_market

FEAST = str(Path(sys.executable).with_name("feast"))


def test_apply_materialize_online_returns_latest_values(target, tmp_path):
    load(target, read_dir(tiny_market.write(tmp_path / "m")))
    apply_features(target)
    materialize(target)
    store = open_store(target)
    got = online_features(target, store, "member", [1, 2, 404])
    assert got["member_id"] == [1, 2, 404]
    assert got["member_categorical_v1__seniority"] == ["senior", "mid", None]  # latest, not the first row
    assert got["member_text_v1__text"] == ["Senior data analyst, SQL, Python", "Nurse", None]
    assert set(got["member_ids_v1__has_skill_ids"][0]) == {"sql", "python"}
    assert got["member_ids_v1__has_title_latest"][0] == "analyst"
    jobs = online_features(target, store, "job", [11])
    assert jobs["job_categorical_v1__seniority"] == ["junior"]


def test_feast_command_line_apply_and_materialize(target, tmp_path):
    """What the README documents: eval "$(star db env)"; feast -c feature_repo apply / materialize."""
    load(target, read_dir(tiny_market.write(tmp_path / "m")))
    env = {**os.environ, **target.feast_env()}
    repo = str(Settings.from_env().feature_repo)
    applied = subprocess.run([FEAST, "-c", repo, "apply"], env=env, capture_output=True, text=True, timeout=300)
    assert applied.returncode == 0, applied.stderr
    with db.connect(target) as conn:
        names = {s.name for s in published_views(conn)}
    store = open_store(target)
    assert {fv.name for fv in store.list_feature_views()} == names
    done = subprocess.run([FEAST, "-c", repo, "materialize", "1970-01-01T00:00:00", "2030-01-01T00:00:00"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    got = store.get_online_features(features=["member_categorical_v1:seniority"], entity_rows=[{"member_id": 1}])
    assert got.to_dict()["seniority"] == ["senior"]


def test_new_column_makes_a_new_version_and_keeps_the_old_one(target, tmp_path):
    load(target, read_dir(tiny_market.write(tmp_path / "m")))
    data = tiny_market.frames()
    data["members"] = data["members"].assign(open_to_work=["yes", "no", "yes"])
    counts = load(target, {k: frame(v, f"{k}.csv") for k, v in data.items()})
    assert counts["new_feature_views"] == ["member_categorical_v2"]
    with db.connect(target) as conn:
        views = {s.name: s for s in published_views(conn)}
    assert [n for n, _ in views["member_categorical_v1"].features] == ["location", "seniority"]
    assert [n for n, _ in views["member_categorical_v2"].features] == ["location", "open_to_work", "seniority"]
    apply_features(target)
    tags = {fv.name: fv.tags for fv in open_store(target).list_feature_views()}
    assert tags["member_categorical_v2"]["star_version"] == "2"
    assert tags["member_categorical_v1"]["star_family"] == "member_categorical"


def _random_market(rng: np.random.Generator, n_members: int = 60, n_changes: int = 4) -> dict:
    start = pd.Timestamp("2025-01-01T00:00:00Z")
    rows = []
    for m in range(1, n_members + 1):
        for k in sorted(rng.choice(200, size=rng.integers(1, n_changes + 1), replace=False)):
            rows.append((m, (start + pd.Timedelta(hours=int(k))).isoformat(), f"s{rng.integers(5)}"))
    members = pd.DataFrame(rows, columns=["member_id", "valid_from", "segment"])
    rows = [(j, (start + pd.Timedelta(hours=int(k))).isoformat(), f"k{rng.integers(4)}") for j in range(1, 21)
            for k in sorted(rng.choice(200, size=rng.integers(1, n_changes + 1), replace=False))]
    jobs = pd.DataFrame(rows, columns=["job_id", "valid_from", "kind"])
    return {"members": members, "jobs": jobs}


def test_star_point_in_time_join_equals_stock_feast(target):
    """The linear offline store returns exactly what stock Feast returns, including times equal to a change."""
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import PostgreSQLOfflineStore

    rng = np.random.default_rng(7)
    market = _random_market(rng)
    load(target, {k: frame(v, f"{k}.csv") for k, v in market.items()})
    apply_features(target)
    store = open_store(target)
    start = pd.Timestamp("2025-01-01T00:00:00Z")
    hours = rng.integers(-5, 210, size=400)
    entity_df = pd.DataFrame({"member_id": rng.integers(1, 62, size=400),  # 61 is unknown: no feature row
                              "job_id": rng.integers(1, 22, size=400),  # 21 too
                              "event_timestamp": [start + pd.Timedelta(hours=int(h)) for h in hours]})
    refs = ["job_categorical_v1:kind", "member_categorical_v1:segment"]  # two join keys: two lookup groups
    ours = store.get_historical_features(entity_df=entity_df, features=refs, full_feature_names=True).to_df()
    provider = store._get_provider()
    stock_store = provider.offline_store
    provider._offline_store = PostgreSQLOfflineStore()
    try:
        stock = store.get_historical_features(entity_df=entity_df, features=refs, full_feature_names=True).to_df()
    finally:
        provider._offline_store = stock_store
    assert list(ours.columns) == list(stock.columns)
    key = ["member_id", "job_id", "event_timestamp"]
    for df in (ours, stock):
        df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    merged = ours.sort_values(key).reset_index(drop=True).compare(stock.sort_values(key).reset_index(drop=True))
    assert merged.empty, merged
    assert ours["member_categorical_v1__segment"].notna().sum() > 200
    assert ours["job_categorical_v1__kind"].notna().sum() > 200
    # and ours keeps the caller's row order
    assert list(ours["member_id"]) == list(entity_df["member_id"])
