"""A Feast offline store for PostgreSQL whose point-in-time join scales linearly.

Stock Feast (0.67) joins the entity rows to every feature row of the same key and then ranks them; past a few
thousand entity rows the planner picks nested loops over the whole join and the time grows quadratically
(FIELD-NOTES: 10k rows 41 s). Here each entity row looks up its one feature row through the source's
(entity key, event time) index:

    entity_df --COPY--> temporary table e (+ row number), on the connection that runs the join
    WITH g AS (SELECT e.row, fv.* FROM (e ORDER BY key, event time) e LEFT JOIN LATERAL (   one per join-key set
        SELECT features FROM source WHERE key = e.key AND event_timestamp <= e.event_timestamp
        ORDER BY event_timestamp DESC, created DESC LIMIT 1) fv ON true)
    SELECT e.*, g.* FROM e JOIN g USING (row) ... ORDER BY row number

Same semantics as stock: never a row stamped after the entity row, TTL honoured, the later `created` wins a tie.
Only DataFrame entity rows take this path; a SQL entity query and non-entity retrieval use the stock code.
Use it in feature_store.yaml as `type: star.store.offline_store.StarPostgreSQLOfflineStore`.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Callable, Iterator, List, Literal, Optional, Union

import pandas as pd
import pyarrow as pa
from feast.feature_view import FeatureView
from feast.infra.offline_stores import offline_utils
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import (
    PostgreSQLOfflineStore,
    PostgreSQLOfflineStoreConfig,
    PostgreSQLRetrievalJob,
)
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.registry.base_registry import BaseRegistry
from feast.infra.utils.postgres.connection_utils import _get_conn
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig
from feast.errors import ZeroColumnQueryResult
from feast.type_map import arrow_to_pg_type, pg_type_code_to_arrow
from psycopg import sql
from pydantic import model_validator

from star.store.feast_env import check_expanded
from star.store.pgcopy import rows

ROW = "__star_row"


class StarPostgreSQLOfflineStoreConfig(PostgreSQLOfflineStoreConfig):
    type: Literal["star.store.offline_store.StarPostgreSQLOfflineStore"] = (  # type: ignore[assignment]
        "star.store.offline_store.StarPostgreSQLOfflineStore"
    )

    @model_validator(mode="before")
    @classmethod
    def _expanded(cls, values):
        """The first STAR code `feast` runs on feature_store.yaml: an unset ${STAR_PG_*} is one clear error."""
        return check_expanded(values)


def _q(name: str) -> str:
    return sql.Identifier(name).as_string(None)


def _lateral(i: int, ctx: offline_utils.FeatureViewQueryContext, full_feature_names: bool, ts_col: str) -> str:
    out = []
    for feature in ctx.features:
        out.append(f"sub.{_q(feature)} AS {_q(_alias(ctx, feature, full_feature_names))}")
    where = []
    for selection in ctx.entity_selections:
        source_col, join_key = selection.split(" AS ")
        where.append(f"sub.{_q(source_col)} = e.{_q(join_key)}")
    ts = f"sub.{_q(ctx.timestamp_field)}"
    where.append(f"{ts} <= e.{_q(ts_col)}")
    if ctx.ttl:
        where.append(f"{ts} >= e.{_q(ts_col)} - {int(ctx.ttl)} * interval '1 second'")
    order = f"{ts} DESC" + (f", sub.{_q(ctx.created_timestamp_column)} DESC" if ctx.created_timestamp_column else "")
    return (f"LEFT JOIN LATERAL (SELECT {', '.join(out)} FROM {ctx.table_subquery} AS sub "
            f"WHERE {' AND '.join(where)} ORDER BY {order} LIMIT 1) AS fv_{i} ON true")


def _alias(ctx, feature: str, full_feature_names: bool) -> str:
    name = ctx.field_mapping.get(feature, feature)
    return f"{ctx.name}__{name}" if full_feature_names else name


def point_in_time_sql(contexts: list, entity_table: str, entity_columns: list[str], ts_col: str,
                      full_feature_names: bool) -> str:
    """Views sharing join keys are looked up together, the entity rows walked in (keys, event time) order: each
    probe lands next to the previous one in the source's index (random order costs a cache miss per probe at 1M
    rows); the groups are joined back by row number."""
    groups: dict[tuple, list[int]] = {}
    for i, ctx in enumerate(contexts):
        groups.setdefault(tuple(s.split(" AS ")[1] for s in ctx.entity_selections), []).append(i)
    row = _q(ROW)
    ctes, joins = [], []
    group_of = {i: g for g, members in enumerate(groups.values()) for i in members}
    selects = [f"e.{_q(c)}" for c in entity_columns] + [  # the views' order, as stock Feast's columns
        f"g{group_of[i]}.{_q(_alias(ctx, f, full_feature_names))}" for i, ctx in enumerate(contexts)
        for f in ctx.features]
    for g, (keys, members) in enumerate(groups.items()):
        cols = [f"fv_{i}.{_q(_alias(contexts[i], f, full_feature_names))}" for i in members
                for f in contexts[i].features]
        order = ", ".join([f"{_q(k)}" for k in keys] + [_q(ts_col)])
        laterals = "\n".join(_lateral(i, contexts[i], full_feature_names, ts_col) for i in members)
        ctes.append(f"g{g} AS MATERIALIZED (SELECT e.{row}, {', '.join(cols)}\n"
                    f"FROM (SELECT * FROM {_q(entity_table)} ORDER BY {order}) AS e\n{laterals})")
        joins.append(f"JOIN g{g} ON g{g}.{row} = e.{row}")
    return (f"WITH {', '.join(ctes)}\nSELECT {', '.join(selects)}\nFROM {_q(entity_table)} AS e\n"
            + "\n".join(joins) + f"\nORDER BY e.{row}")


def _upload(cur, df: pd.DataFrame, table: str) -> None:
    """COPY the entity rows into a temporary table (stock Feast inserts them row by row into a real one), then
    ANALYZE. Temporary: a consumer role needs no CREATE privilege (only the database's TEMPORARY, which PostgreSQL
    grants to everyone by default), and nothing outlives the connection, even when the process dies."""
    arrow = pa.Table.from_pandas(df, preserve_index=False)
    columns = ", ".join(f"{_q(f.name)} {arrow_to_pg_type(str(f.type))}" for f in arrow.schema)
    cur.execute(f"CREATE TEMPORARY TABLE {_q(table)} ({columns}) ON COMMIT DROP")
    with cur.copy(f"COPY {_q(table)} FROM STDIN") as cp:
        for row in rows(df):
            cp.write_row(row)
    cur.execute(f"ANALYZE {_q(table)}")


def _arrow(cur, query: str) -> pa.Table:
    """The result of the executed `query` as Arrow, typed as stock Feast types it (PostgreSQLRetrievalJob)."""
    if not cur.description:
        raise ZeroColumnQueryResult(query)
    schema = pa.schema([(c.name, pg_type_code_to_arrow(c.type_code)) for c in cur.description])
    data = cur.fetchall()
    return pa.Table.from_arrays([pa.array([row[i] for row in data]) for i in range(len(schema))], schema=schema)


class StarRetrievalJob(PostgreSQLRetrievalJob):
    """Uploads the entity rows and runs the point-in-time join on one connection, in one transaction (the entity
    table is temporary, so it exists on that connection only). `to_sql()` shows the join over a table name that
    exists only while the job runs, as stock Feast's does."""

    def __init__(self, *, entity: pd.DataFrame, join_sql: Callable[[str], str], **kwargs):
        self._entity, self._join_sql = entity, join_sql

        @contextlib.contextmanager
        def query() -> Iterator[str]:
            yield join_sql("feast_entity_df")

        super().__init__(query=query, **kwargs)

    def _to_arrow_internal(self, timeout: Optional[int] = None) -> pa.Table:
        table = f"feast_entity_df_{uuid.uuid4().hex}"
        with _get_conn(self.config.offline_store) as conn, conn.transaction(), conn.cursor() as cur:
            _upload(cur, self._entity, table)
            query = self._join_sql(table)
            cur.execute(query)
            return _arrow(cur, query)


class StarPostgreSQLOfflineStore(PostgreSQLOfflineStore):
    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: List[FeatureView],
        feature_refs: List[str],
        entity_df: Optional[Union[pd.DataFrame, str]],
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
        **kwargs,
    ) -> RetrievalJob:
        if not isinstance(entity_df, pd.DataFrame) or kwargs.get("start_date") or kwargs.get("end_date"):
            return PostgreSQLOfflineStore.get_historical_features(
                config, feature_views, feature_refs, entity_df, registry, project, full_feature_names,
                filter_by_created_timestamp, **kwargs)

        schema = dict(zip(entity_df.columns, entity_df.dtypes))
        ts_col = offline_utils.infer_event_timestamp_from_entity_df(schema)
        offline_utils.assert_expected_columns_in_entity_df(
            schema, offline_utils.get_expected_join_keys(project, feature_views, registry), ts_col)
        entity = entity_df.copy()
        ts = pd.to_datetime(entity[ts_col], utc=True)
        entity[ts_col] = ts
        entity[ROW] = range(len(entity))
        contexts = offline_utils.get_feature_view_query_context(
            feature_refs, feature_views, registry, project,
            (ts.min().to_pydatetime(), ts.max().to_pydatetime()))
        entity_columns = list(entity_df.columns)

        return StarRetrievalJob(
            entity=entity,
            join_sql=lambda table: point_in_time_sql(contexts, table, entity_columns, ts_col, full_feature_names),
            config=config,
            full_feature_names=full_feature_names,
            on_demand_feature_views=OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry),
            metadata=RetrievalMetadata(
                features=feature_refs,
                keys=[c for c in entity_columns if c != ts_col],
                min_event_timestamp=ts.min().to_pydatetime(),
                max_event_timestamp=ts.max().to_pydatetime(),
            ),
        )
