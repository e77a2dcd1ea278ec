"""Online reads through Feast: the latest materialized values of the newest views."""

from __future__ import annotations

from star.common import ID_COLUMN
from star.config import DbTarget
from star.db import connect
from star.errors import ConfigError, FeatureRepoError
from star.store.catalog import latest_views
from star.store.feast_repo import require_applied


def online_features(target: DbTarget, store, entity: str, ids: list[int]) -> dict[str, list]:
    """`get_online_features` for every feature of the newest `entity` views (full feature names)."""
    if entity not in ID_COLUMN:
        raise ConfigError(f"entity {entity!r}: choose from {', '.join(ID_COLUMN)}, e.g. `star online member 1 2`")
    with connect(target) as conn:
        views = [v for v in latest_views(conn).values() if v.entity == entity]
    if not views:
        raise FeatureRepoError(f"no {entity} feature views are registered; load a marketplace first (`star seed`)")
    require_applied(store, {v.name for v in views})
    refs = [f"{v.name}:{name}" for v in views for name, _ in v.features]
    rows = [{ID_COLUMN[entity]: int(i)} for i in ids]
    return store.get_online_features(features=refs, entity_rows=rows, full_feature_names=True).to_dict()
