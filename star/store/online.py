"""Online reads through Feast: the latest materialized values of the newest views."""

from __future__ import annotations

from star.config import DbTarget
from star.data.format import ID_COLUMN
from star.db import connect
from star.store.catalog import latest_views


def online_features(target: DbTarget, store, entity: str, ids: list[int]) -> dict[str, list]:
    """`get_online_features` for every feature of the newest `entity` views (full feature names)."""
    with connect(target) as conn:
        views = [v for v in latest_views(conn).values() if v.entity == entity]
    refs = [f"{v.name}:{name}" for v in views for name, _ in v.features]
    rows = [{ID_COLUMN[entity]: int(i)} for i in ids]
    return store.get_online_features(features=refs, entity_rows=rows, full_feature_names=True).to_dict()
