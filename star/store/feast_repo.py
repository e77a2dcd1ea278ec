"""Feast objects for the STAR feature repo, built from the catalog (star/store/catalog.py).

feature_repo/*.py (read by `feast apply`) and `star` (which applies in-process) both call these builders, so
the command line and the Python API declare the same objects. A STAR apply reads the repo as `feast apply` does
(parse_feature_repo) and merges the catalog's views into it, so users' own objects there are kept:

    feature_repo/*.py --parse_repo--> users' services, views, entities, sources + STAR views (tag star_family)
    catalog specs --feature_view--> STAR views, replacing the parsed ones --apply (partial=False)--> Feast registry
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Iterator

from feast import Entity, FeatureStore, FeatureView, Field, ValueType
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
from feast.repo_contents import RepoContents
from feast.types import Array, Float32, String

from star.config import FEAST_PROJECT, DbTarget, Settings
from star.errors import FeatureRepoError, StarError
from star.store.catalog import ViewSpec
from star.store.lineage import OWNER

MEMBER = Entity(name="member", join_keys=["member_id"], value_type=ValueType.INT64,
                description="A member (job seeker) of the marketplace")
JOB = Entity(name="job", join_keys=["job_id"], value_type=ValueType.INT64,
             description="A job posting of the marketplace")
ENTITY = {"member": MEMBER, "job": JOB}
DTYPE = {"string": String, "string_list": Array(String), "float_list": Array(Float32)}


def _field(name: str, dtype: str, dim: int | None) -> Field:
    if dtype == "float_list" and dim:
        return Field(name=name, dtype=DTYPE[dtype], vector_index=True, vector_length=dim,
                     vector_search_metric="cosine")
    return Field(name=name, dtype=DTYPE[dtype])


def feature_view(spec: ViewSpec) -> FeatureView:
    source = PostgreSQLSource(
        name=f"{spec.name}_source",
        query=spec.query,
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
        description=f"star.{spec.entity} {spec.kind} features, version {spec.version}",
    )
    return FeatureView(
        name=spec.name,
        entities=[ENTITY[spec.entity]],
        ttl=timedelta(0),  # no expiry: an attribute stays valid until the next change
        schema=[_field(name, dtype, spec.dim) for name, dtype in spec.features],
        source=source,
        online=True,
        tags=spec.tags or {"star_family": spec.family, "star_version": str(spec.version), "star_kind": spec.kind,
                           "star_entity": spec.entity},
        description=spec.description or f"{spec.family} version {spec.version}",
        owner=OWNER,
    )


def _repo_modules(repo: Path) -> list[str]:
    from feast.repo_operations import get_repo_files

    return [".".join(f.relative_to(repo).with_suffix("").parts) for f in get_repo_files(repo)]


def parse_feature_repo(repo: Path) -> RepoContents:
    """What `feast apply` reads from the repo: Feast's own parse_repo, imported afresh (the repo's modules, e.g.
    feature_views.py, read the database named by STAR_PG_*, so a module cached by an earlier parse would be stale),
    with the process's cwd, sys.path and sys.modules restored afterwards."""
    from feast.repo_operations import parse_repo

    repo = repo.resolve()
    names = _repo_modules(repo)
    saved = {n: sys.modules.pop(n) for n in list(sys.modules)
             if any(n == m or n.startswith(m + ".") for m in names)}
    cwd, path, bytecode = Path.cwd(), list(sys.path), sys.dont_write_bytecode
    sys.path.insert(0, str(repo))
    sys.dont_write_bytecode = True  # as `feast apply` does: no __pycache__ in the user's repo
    try:
        os.chdir(repo)
        return parse_repo(repo)
    except StarError:
        raise
    except Exception as exc:
        raise FeatureRepoError(f"the feature repo {repo} cannot be read as `feast apply` reads it: "
                               f"{type(exc).__name__}: {exc}; fix that file (run `feast -c {repo} plan` to "
                               "see the same error)") from exc
    finally:
        os.chdir(cwd)
        sys.path[:], sys.dont_write_bytecode = path, bytecode
        for n in [n for n in sys.modules if any(n == m or n.startswith(m + ".") for m in names)]:
            del sys.modules[n]
        sys.modules.update(saved)


def is_star_view(fv: FeatureView) -> bool:
    return "star_family" in fv.tags


def repo_contents(specs: list[ViewSpec], user: RepoContents | None = None) -> RepoContents:
    """The catalog's views merged into what the repo defines (`user`, from parse_feature_repo): the repo's own
    objects (feature services, views, entities, sources) are kept; STAR's views are exactly `specs`."""
    views = [feature_view(spec) for spec in specs]
    if user is None:
        user = RepoContents(projects=[], data_sources=[], feature_views=[], on_demand_feature_views=[],
                            stream_feature_views=[], label_views=[], entities=[], feature_services=[],
                            permissions=[])
    star_sources = {id(fv.batch_source) for fv in user.feature_views if is_star_view(fv)}
    ours = {v.batch_source.name for v in views}
    sources = [s for s in user.data_sources if id(s) not in star_sources and s.name not in ours]
    named = {e.name for e in user.entities}
    return RepoContents(
        projects=user.projects, data_sources=sources + [v.batch_source for v in views],
        feature_views=[fv for fv in user.feature_views if not is_star_view(fv)] + views,
        on_demand_feature_views=user.on_demand_feature_views, stream_feature_views=user.stream_feature_views,
        label_views=user.label_views, entities=user.entities + [e for e in (MEMBER, JOB) if e.name not in named],
        feature_services=user.feature_services, permissions=user.permissions)


def target_from_feast_env() -> DbTarget:
    """The database feature_store.yaml points at (the STAR_PG_* variables `star db env` prints), for the repo
    modules `feast apply` imports."""
    from star.store.feast_env import missing_error

    missing = [name for name in ("STAR_PG_HOST", "STAR_PG_USER", "STAR_PG_DATABASE") if not os.environ.get(name)]
    if missing:
        raise missing_error(missing)
    return DbTarget(host=os.environ["STAR_PG_HOST"], port=int(os.environ.get("STAR_PG_PORT") or 5432),
                    user=os.environ["STAR_PG_USER"], password=os.environ.get("STAR_PG_PASSWORD", ""),
                    dbname=os.environ["STAR_PG_DATABASE"])


@contextmanager
def feast_env(target: DbTarget) -> Iterator[None]:
    """Point feature_store.yaml at `target` for the duration (it expands ${STAR_PG_*})."""
    saved = {k: os.environ.get(k) for k in target.feast_env()}
    os.environ.update(target.feast_env())
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def open_store(target: DbTarget, settings: Settings | None = None) -> FeatureStore:
    """A FeatureStore on `target`. The config is read once, so the environment may change afterwards."""
    repo = (settings or Settings.from_env()).feature_repo
    with feast_env(target):
        return FeatureStore(repo_path=str(repo))


def apply(target: DbTarget, specs: list[ViewSpec], settings: Settings | None = None) -> None:
    """`feast apply` in-process: what the feature repo defines (users' feature services, views, entities, sources)
    plus the catalog's views; STAR views no longer in the catalog, and objects no longer in the repo, are removed
    (as `feast apply` removes them)."""
    from feast.repo_operations import apply_total_with_repo_instance

    repo = (settings or Settings.from_env()).feature_repo
    store = open_store(target, settings)
    with feast_env(target):
        contents = repo_contents(specs, parse_feature_repo(repo))
    cwd = Path.cwd()
    try:
        apply_total_with_repo_instance(store, FEAST_PROJECT, store.registry, contents, skip_source_validation=True)
    finally:
        os.chdir(cwd)


def require_applied(store: FeatureStore, views: set[str]) -> None:
    """FeatureRepoError naming the registered views Feast does not have yet, and the command that adds them."""
    missing = sorted(set(views) - {fv.name for fv in store.list_feature_views()})
    if missing:
        raise FeatureRepoError(f"feature view(s) {', '.join(missing)} are registered but not applied in Feast; run "
                               "`star features apply` (or `feast -c feature_repo apply`) first")


def online_table(store: FeatureStore, view: str) -> tuple[str, str]:
    """(schema, table) of a view's rows in the postgres online store."""
    cfg = store.config
    return cfg.online_store.db_schema or cfg.online_store.user, f"{cfg.project}_{view}"


def delete_online_rows(target: DbTarget, store: FeatureStore, view: str, entity: str, ids: list[int]) -> int:
    """Remove entities' rows from a view's online table, so Feast serves them as missing (not stale). Returns the
    rows deleted."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from psycopg import sql

    from star.db import connect

    version = store.config.entity_key_serialization_version
    keys = [serialize_entity_key(EntityKey(join_keys=[ENTITY[entity].join_key], entity_values=[Value(int64_val=i)]),
                                 entity_key_serialization_version=version) for i in ids]
    schema, table = online_table(store, view)
    with connect(target) as conn:
        if conn.execute("SELECT to_regclass(%s)", (f"{schema}.{table}",)).fetchone()[0] is None:
            return 0
        cur = conn.execute(sql.SQL("DELETE FROM {} WHERE entity_key = ANY(%s)").format(
            sql.Identifier(schema, table)), (keys,))
        conn.commit()
        return cur.rowcount
