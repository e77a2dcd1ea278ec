"""StarSQLComputeEngine with each view's latest-row query split across Ray workers, still published at once.

    driver: REPEATABLE READ snapshot exported ----------------------------------------------.
    Ray task i of n (own connection, SET TRANSACTION SNAPSHOT):                             |
        INSERT INTO stage SELECT <latest rows> WHERE hash(key) mod n = i    (one slice, committed; a retried task
                                                                             first deletes its own slice)
    driver, ONE transaction: stage --apply_rows: INSERT ... ON CONFLICT (only changed rows)--> online table; drop stage

Every slice reads the same snapshot of the source, and readers see the previous complete rows until the single
commit, then the new ones: the promise of the in-server engine (star/store/online_tables.py), not Feast's Ray engine,
which upserts each block in its own transaction (half a view visible meanwhile, a failed block only logged) and
dedups per block, so with parallel writers an older row of an entity can land after its newer one. What runs in
parallel is the sort and the row building (DISTINCT ON, entity keys, vector casts); the final upsert is one
statement. The stage is an UNLOGGED table next to the online table; a killed job leaves it (`__ray_` in its name),
never a half-written online table.

Use it as `batch_engine: type: star.store.ray_engine.StarRayComputeEngine` with `ray_address` and `workers`
(or STAR_FEAST_MODE=ray, STAR_RAY_ADDRESS, STAR_RAY_WORKERS: `star features materialize --engine ray`).
Views the SQL path does not cover go through Feast's local engine, as with StarSQLComputeEngine. Ray workers need
only psycopg (the task is shipped by value) and a route to the database.
"""

from __future__ import annotations

import os
import uuid
from typing import Literal, Optional

from feast.infra.common.materialization_job import MaterializationJobStatus, MaterializationTask
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.registry.base_registry import BaseRegistry
from feast.infra.utils.postgres.connection_utils import _get_conn, _get_conn_kwargs, _get_conninfo
from feast.repo_config import RepoConfig
from psycopg import sql

from star.cluster import EngineConfig, ray_session
from star.store import online_tables as tables
from star.store.engine import (
    SORT_MEMORY,
    StarSQLComputeEngine,
    StarSQLComputeEngineConfig,
    _key_prefix,
    in_server,
    latest_rows_sql,
)

COLUMNS = sql.SQL(", ").join(map(sql.Identifier, tables.COLUMNS))


class StarRayComputeEngineConfig(StarSQLComputeEngineConfig):
    type: Literal["star.store.ray_engine.StarRayComputeEngine"] = (  # type: ignore[assignment]
        "star.store.ray_engine.StarRayComputeEngine"
    )
    ray_address: Optional[str] = None
    """Ray cluster (HOST:6379, ray://HOST:10001, auto); None: STAR_RAY_ADDRESS, else a local cluster"""
    workers: Optional[int] = None
    """slices per view, one Ray task each; None: STAR_RAY_WORKERS, else 2"""


def engine_config(config: RepoConfig) -> EngineConfig:
    """The cluster to run on: feature_store.yaml's batch_engine settings, else STAR_RAY_ADDRESS / STAR_RAY_WORKERS."""
    from star.errors import ConfigError

    engine = config.batch_engine
    address = getattr(engine, "ray_address", None) or os.environ.get("STAR_RAY_ADDRESS") or None
    workers = getattr(engine, "workers", None) or os.environ.get("STAR_RAY_WORKERS") or 2
    try:
        workers = int(workers)
    except ValueError:
        raise ConfigError(f"STAR_RAY_WORKERS={workers!r}: expected a whole number of workers, e.g. 2") from None
    return EngineConfig(engine="ray", address=address, workers=workers)


def _stage_slice(conninfo: str, kwargs: dict, snapshot: str, stage: str, query: str, params: dict) -> int:
    """One Ray task: slice `params['part']` of the view's latest rows into the stage, in the driver's snapshot."""
    import psycopg

    with psycopg.connect(conninfo, **kwargs) as conn:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")  # the driver's id: [0-9A-F-]+, not user input
            conn.execute(f"SET LOCAL work_mem = '{SORT_MEMORY}'")
            conn.execute(f"DELETE FROM {stage} WHERE part = %s", (params["part"],))  # a retried task's first try
            return conn.execute(query, params).rowcount


def materialize_on_ray(config: RepoConfig, task: MaterializationTask, cluster: EngineConfig) -> int:
    """The view's latest rows in [start, end], computed in `cluster.workers` slices on Ray, into its online table
    in one transaction; returns rows written."""
    import ray
    from ray import cloudpickle

    from star.store.online_store import _table, finish_load

    cloudpickle.register_pickle_by_value(__import__(__name__, fromlist=["_"]))  # workers need psycopg, not STAR
    fv = task.feature_view
    schema, name = _table(config, fv)
    stage = sql.Identifier(schema, f"{name[:40]}__ray_{uuid.uuid4().hex[:12]}")
    params = {"prefix": _key_prefix(fv.entity_columns[0].name, config.entity_key_serialization_version),
              "start": task.start_time, "end": task.end_time, "parts": cluster.workers}
    store = config.online_store
    with _get_conn(store) as conn:
        conn.execute(sql.SQL("CREATE UNLOGGED TABLE {} AS SELECT 0 AS part, {} FROM {} WITH NO DATA").format(
            stage, COLUMNS, sql.Identifier(schema, name)))
        conn.commit()
        try:
            insert = sql.SQL("INSERT INTO {} (part, {}) SELECT %(part)s, * FROM ({}) AS r").format(
                stage, COLUMNS, latest_rows_sql(fv, partitioned=True)).as_string(conn)
            with ray_session(cluster), conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                (snapshot,) = conn.execute("SELECT pg_export_snapshot()").fetchone()
                remote = ray.remote(num_cpus=1, max_retries=3)(_stage_slice)
                ray.get([remote.remote(_get_conninfo(store), _get_conn_kwargs(store), snapshot,
                                       stage.as_string(conn), insert, {**params, "part": i})
                         for i in range(cluster.workers)])
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(SORT_MEMORY)))
                written = tables.apply_rows(cur, schema, name, sql.SQL("SELECT {} FROM {}").format(COLUMNS, stage))
                cur.execute(sql.SQL("DROP TABLE {}").format(stage))
        finally:
            conn.rollback()
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage))
            conn.commit()
        finish_load(config, conn, fv, written)
    return written


class StarRayComputeEngine(StarSQLComputeEngine):
    def _materialize_one(self, registry: BaseRegistry, task: MaterializationTask,
                         **kwargs) -> LocalMaterializationJob:
        if not in_server(self.repo_config, self.online_store, task):
            return super()._materialize_one(registry, task, **kwargs)
        job_id = f"{task.feature_view.name}-{task.start_time}-{task.end_time}"
        try:
            materialize_on_ray(self.repo_config, task, engine_config(self.repo_config))
            return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.SUCCEEDED)
        except Exception as exc:  # noqa: BLE001 - reported through the job, as the local engine does
            return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.ERROR, error=exc)
