"""Serving the catalog in Feast: `feast apply` of every view the registry serves, `feast materialize` under the
families' shared locks, then the registry learns which views Feast now serves.

    star.embedding_versions --catalog.published_views--> Feast objects --apply--> Feast registry + online tables
    offline source rows --materialize (shared family locks)--> online rows --embeddings.mark_online--> registry
    serve_pending: apply + materialize the views whose rows Feast does not serve yet (a killed job's, or new ones)
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from datetime import datetime, timezone

from star import db
from star.config import DbTarget, Settings

RAY_ENGINE = "star.store.ray_engine.StarRayComputeEngine"


@contextlib.contextmanager
def engine_env(engine):
    """feature_store.yaml's batch engine while inside: unchanged for engine None or local, else STAR's Ray engine
    on `engine.address` with `engine.workers` slices (a star.cluster.EngineConfig)."""
    if engine is None or engine.engine == "local":
        yield
        return
    env = {"STAR_BATCH_ENGINE": RAY_ENGINE, "STAR_RAY_WORKERS": str(engine.workers),
           "STAR_RAY_ADDRESS": engine.address or ""}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def apply_features(target: DbTarget, settings: Settings | None = None) -> dict:
    from star.store.catalog import published_views
    from star.store.feast_repo import apply

    started = time.time()
    with db.connect(target) as conn:
        specs = published_views(conn)
    with contextlib.redirect_stdout(sys.stderr):  # Feast prints progress; stdout carries the JSON lines
        apply(target, specs, settings)
    return {"job": "features apply", "feature_views": [s.name for s in specs],
            "seconds": round(time.time() - started, 2)}


def materialize(target: DbTarget, start: datetime | None = None, end: datetime | None = None,
                settings: Settings | None = None, feature_views: list[str] | None = None, engine=None) -> dict:
    """`feast materialize` of the views (default: every view Feast has), holding their embedding families' shared
    lock (no job publishes into them meanwhile, so an older snapshot never overwrites a newer online row); then
    the views whose rows the window covered are marked online (a new vintage is published now). engine: a
    star.cluster.EngineConfig (ray: star/store/ray_engine.py); None: feature_store.yaml's batch engine."""
    from star.store import embeddings
    from star.store.feast_repo import open_store
    from star.store.locks import family_lock

    started = time.time()
    start = start or datetime(1970, 1, 1, tzinfo=timezone.utc)
    end = end or datetime.now(timezone.utc)
    with engine_env(engine):
        store = open_store(target, settings)
    views = list(feature_views) if feature_views is not None else [fv.name for fv in store.list_feature_views()]
    with db.connect(target) as conn:
        families = embeddings.families_of(conn, views)
    with family_lock(target, families, shared=True):
        with contextlib.redirect_stdout(sys.stderr), engine_env(engine):
            store.materialize(start, end, feature_views=views)
        with db.connect(target) as conn:
            published = embeddings.mark_online(conn, views, start=start, end=end)
            conn.commit()
    if published:  # their Feast tags (star_status) still say 'building'
        apply_features(target, settings)
    return {"job": "features materialize", "start": start, "end": end, "feature_views": feature_views or "all",
            **({"published": published} if published else {}),
            **({"engine": engine.lineage()} if engine is not None else {}), "seconds": round(time.time() - started, 2)}


def serve_pending(target: DbTarget, families: list[str], settings: Settings | None) -> list[str]:
    """Apply and materialize the families' views whose rows Feast does not serve yet (online_pending: written by
    the running job, or left by a killed one); a new vintage is published by that materialize. Returns them."""
    from star.store import embeddings

    with db.connect(target) as conn:
        pending = embeddings.online_pending(conn, families)
    if pending:
        apply_features(target, settings)
        materialize(target, settings=settings, feature_views=pending)
    return pending
