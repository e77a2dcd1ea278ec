"""Retiring a vintage: its rows go, its consumers keep being served through the map from a newer vintage.

    plan (one transaction)      status, coverage (every current entity of v_j current in the source v_k, or
                                --drop-uncovered), map k -> j (stored, or composed and checked) and its rows for
                                star.compat_apply; vintages served from j get the composed map k -> j -> i;
                                config.retire_pending / repoint_pending mark the work (`star versions list`)
    serve in Feast              feast apply (the views' sources now map v_k's rows); uncovered entities' online
                                rows are deleted (served as missing, never stale); materialize + VACUUM
    translate                   v_k's current rows through the map into star.<family>_v<j>__translated__staging
                                (and each repointed vintage's), with an HNSW index: one transaction each
    flip (one transaction)      status 'retired' + served_from, marks cleared, v_j's table replaced by a view
                                over v_k through the map (a reader that looked v_j up a moment before still
                                reads right vectors; so do psql users), staging dropped, the translated copies
                                swapped in (star.nearest searches them natively: star/store/translated.py)

The whole run holds the family's lock (star.store.locks). Killed anywhere, the marks stay and the next lifecycle
command or embedding job on the family finishes the retire (`finish_retires`); before the plan committed nothing
changed. Until the flip, SQL serves v_j's own rows; Feast switches at its materialize.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from star.common import ID_COLUMN
from star.config import DbTarget, Settings
from star.db import connect
from star.errors import VersionError
from star.store import registry, translated
from star.store.registry import SOURCE_COLUMN
from star.versions import compat
from star.versions.config import GateConfig
from star.versions.lifecycle import _map_cos, _write_rows, list_versions, serving_map, version_row


UNCOVERED_IDS = """
SELECT j.{key} FROM {retired} j
WHERE j.is_current AND NOT EXISTS (SELECT 1 FROM {source} k WHERE k.{key} = j.{key} AND k.is_current) ORDER BY 1
"""


def uncovered_ids(conn: psycopg.Connection, family: str, version: int, source: int, entity: str) -> list[int]:
    """Entities with a current vector in v`version` but none in v`source`, by id."""
    q = sql.SQL(UNCOVERED_IDS).format(key=sql.Identifier(ID_COLUMN[entity]), retired=registry.table(family, version),
                                      source=registry.table(family, source))
    return [r[0] for r in conn.execute(q)]


def _pick_source(conn: psycopg.Connection, family: str, version: int, source: int | None) -> int:
    newer = [r["version"] for r in list_versions(conn, family) if r["status"] == "published" and r["version"] != version]
    if source is None:
        if not newer:
            raise VersionError(f"{family} v{version} is the only published vintage: retiring it would leave its "
                               "consumers nothing to be served from; publish a newer vintage first")
        return newer[-1]
    if source not in newer:
        raise VersionError(f"{family} v{source} is not a published vintage to serve v{version} from; "
                           + (f"pass one of {newer} as --source" if newer else
                              "no other vintage is published: publish a newer one first"))
    return source


def _check_coverage(conn: psycopg.Connection, v: dict, source: int, drop_uncovered: bool) -> int:
    family, version = v["family"], v["version"]
    ids = uncovered_ids(conn, family, version, source, v["entity"])
    n, ids = len(ids), ids[:5]
    if n and not drop_uncovered:
        covering = [r["version"] for r in list_versions(conn, family) if r["status"] == "published"
                    and r["version"] not in (version, source)
                    and not uncovered_ids(conn, family, version, r["version"], v["entity"])]
        (total,) = conn.execute(sql.SQL("SELECT count(*) FROM {t} WHERE is_current").format(
            t=registry.table(family, version))).fetchone()
        raise VersionError(
            f"retiring {family} v{version} from v{source} would leave {n} of its {total} current entities without a "
            f"vector ({ID_COLUMN[v['entity']]} {', '.join(map(str, ids))}{' ...' if n > len(ids) else ''}): v{source} "
            "has none for them. "
            + (f"v{', v'.join(map(str, covering))} cover{'s' if len(covering) == 1 else ''} all of them: pass "
               f"--source {covering[-1]}. " if covering else "No published vintage covers them all. ")
            + f"Or embed them into v{source} first, or pass --drop-uncovered to serve them as missing (online, "
            "historical and SQL)")
    return n


def _plan(conn: psycopg.Connection, family: str, version: int, source: int | None, drop_uncovered: bool) -> None:
    """Checks, maps and their rows, and the pending marks: one transaction (the caller's)."""
    registry.lock(conn)
    v = version_row(conn, family, version)
    if v["status"] not in ("published", "deprecated"):
        raise VersionError(f"{family} v{version} is {v['status']}; only a published or deprecated vintage can be "
                           "retired")
    source = _pick_source(conn, family, version, source)
    lost = _check_coverage(conn, v, source, drop_uncovered)
    m = serving_map(conn, family, source, version, v["entity"])
    _write_rows(conn, m)
    through = m.metrics.get("chained", [[source, version]])
    _mark(conn, family, version, "retire_pending", {"source": source, "through": through, "uncovered": lost,
                                                     "drop_uncovered": bool(drop_uncovered)})
    for dependent, served_through in registry.retired_dependents(conn, family, version):
        chained = compat.compose([m, compat.load(conn, family, version, dependent)])
        chained.metrics.update(repointed_from=version)
        compat.store(conn, chained)
        _write_rows(conn, chained)
        _mark(conn, family, dependent, "repoint_pending",
              {"source": source, "through": through + (served_through or [[version, dependent]])})


def _mark(conn: psycopg.Connection, family: str, version: int, key: str, value: dict) -> None:
    registry.set_config_key(conn, family, version, key, value)


def _pending(conn: psycopg.Connection, family: str, version: int) -> tuple[dict, list[int]]:
    """The retire plan of `version` and the dependents it repoints."""
    return registry.retire_plan(conn, family, version), registry.repoint_pending(conn, family, version)


def _finish(target: DbTarget, family: str, version: int, settings: Settings | None) -> dict:
    """Serve the planned retire in Feast, then flip the registry and replace the table: safe to run again."""
    from star.store.serving import apply_features, materialize
    from star.store.feast_repo import delete_online_rows, open_store

    with connect(target) as conn:
        plan, deps = _pending(conn, family, version)
        v = version_row(conn, family, version)
        lost_ids = uncovered_ids(conn, family, version, plan["source"], v["entity"]) if plan["uncovered"] else []
    views = [registry.view_name(family, k) for k in [version, *deps]]
    apply_features(target, settings)
    if lost_ids:  # first: from now on they are missing, never the stale pre-retirement vectors
        store = open_store(target, settings)
        for view in views:
            delete_online_rows(target, store, view, v["entity"], lost_ids)
    materialize(target, settings=settings, feature_views=views)
    for view in views:
        _vacuum_online(target, view, settings)
    _stage_translated(target, family, [version, *deps], plan["source"], v["entity"])
    with connect(target) as conn:
        with conn.transaction():
            _flip(conn, family, version, plan, deps, v["entity"])
    apply_features(target, settings)  # the Feast tags: star_status retired, star_served_from
    return {"feature_views": views, "uncovered_served_as_missing": len(lost_ids)}


def _stage_translated(target: DbTarget, family: str, versions: list[int], source: int, entity: str) -> None:
    """The translated copies the flip swaps in (star.nearest searches them), one transaction each; built again
    on a rerun (the family's lock keeps the source's rows still until the flip)."""
    with connect(target) as conn:
        for k in versions:
            dim = registry.get(conn, family, k).dim
            with conn.transaction():
                translated.build_staging(conn, family=family, version=k, source=source, entity=entity, dim=dim)


def _flip(conn: psycopg.Connection, family: str, version: int, plan: dict, deps: list[int], entity: str) -> None:
    """Registry and tables to the retired state, at once for SQL consumers."""
    source = plan["source"]
    for dep in deps:
        registry.drop_view(conn, family, dep)
    registry.drop_staging(conn, family, version)
    registry.drop_vintage(conn, family, version)  # + its HNSW
    registry.mark_retired(conn, family, version, source=source, through=plan["through"])
    for dep in deps:
        registry.mark_repointed(conn, family, dep, source=source)
    src_col = SOURCE_COLUMN[registry.get(conn, family, source).kind]
    for k in [version, *deps]:
        registry.create_retired_view(conn, family=family, version=k, source=source, entity=entity,
                                     source_column=src_col, dim=registry.get(conn, family, k).dim)
        translated.swap_in(conn, family, k)


def _vacuum_online(target: DbTarget, view: str, settings: Settings | None) -> None:
    """Re-materializing rewrote every online row of the view: reclaim the dead half so lookups stay as fast as
    a native vintage's (measured: 1.15x at 100 entities without it)."""
    from star.store.feast_repo import online_table, open_store

    schema, name = online_table(open_store(target, settings), view)
    with connect(target, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", (f"{schema}.{name}",)).fetchone()[0] is not None:
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(schema, name)))


def finish_retires(target: DbTarget, families: list[str], settings: Settings | None = None) -> list[dict]:
    """Finish every retire a killed run left pending in `families` (the caller holds their locks)."""
    with connect(target) as conn:
        todo = registry.retires_pending(conn, families)
    return [{"step": "retire", "family": f, "version": k, **_finish(target, f, k, settings)} for f, k in todo]


def retire(target: DbTarget, family: str, version: int, *, source: int | None = None, drop_uncovered: bool = False,
           settings: Settings | None = None) -> dict:
    """Retire a vintage and keep serving it from `source` (default: the newest published) through the map.
    Refused when `source` lacks vectors for some of its current entities, unless drop_uncovered."""
    from star.store.locks import family_lock
    from star.store.serving import serve_pending

    with family_lock(target, [family]):
        with connect(target) as conn:
            version_row(conn, family, version)  # an error naming the family's vintages when it does not exist
        finished = finish_retires(target, [family], settings)  # what killed jobs left, this retire's included
        served = serve_pending(target, [family], settings)  # (star.versions.pending.finish_pending's two steps)
        finished += [{"step": "serve", "feature_views": served}] if served else []
        resumed = [f for f in finished if f.get("version") == version]
        with connect(target, autocommit=True) as conn:
            todo = version_row(conn, family, version)["status"] != "retired"
            if todo:
                with conn.transaction():
                    _plan(conn, family, version, source, drop_uncovered)
        if todo:
            resumed = [{"step": "retire", **_finish(target, family, version, settings)}]
        with connect(target) as conn:
            v = version_row(conn, family, version)
            cos = _map_cos(compat.load(conn, family, v["served_from"], version))
    out = {"job": "versions retire", "family": family, "version": version, "status": v["status"],
           "served_from": v["served_from"], "consumers": v["consumers"], "map_cos_mean": cos,
           "uncovered_served_as_missing": sum(f.get("uncovered_served_as_missing", 0) for f in resumed),
           "finished_pending": [f for f in finished if f.get("version") != version]}
    if cos is None and todo:
        out["warning"] = (f"the map v{v['served_from']} -> v{version} has no held-out measurement (fitted without a "
                          f"holdout, or stored by an older version): how well it reproduces v{version} is unknown. "
                          f"Check its consumers, or next time `star compat fit {family} --from {v['served_from']} "
                          f"--to {version}` (held-out 20 %) before retiring")
    gate_cos = GateConfig().min_mean
    if cos is not None and cos < gate_cos:
        out["warning"] = (f"the map v{v['served_from']} -> v{version} reproduces v{version}'s vectors with mean "
                          f"cosine {cos:.3f} (< {gate_cos}, the publish gate's default): its consumers now get "
                          "noticeably different vectors. Check them, or next time publish through the gate "
                          "(`star versions publish`) before retiring")
    return out
