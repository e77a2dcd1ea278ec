"""Embedding vintages over their life: list, show, fit maps between them, deprecate, retire — and keep serving.

    building -> candidate -> published -> deprecated -> retired
                                                        |  its rows, table and HNSW index are dropped;
                                                        |  star.<family>_v<j> is then served from the newest
                                                        v  published vintage k through the map k -> j:
    Feast view <family>_v<j>  source = SELECT ..., star.compat_apply(family, k, j, embedding) FROM star.<family>_v<k>
                              (same name, same feature, j's dimension: get_online_features / historical retrieval
                              of "<family>_v<j>:embedding" change nothing for the consumer)
    SQL                       star.nearest(family, j, id, k): an HNSW search of star.<family>_v<j>__translated,
                              j's current vectors translated (migration 0006, star/store/translated.py)

Retiring itself (plan, serve in Feast, flip; resumable after a kill) lives in star/versions/retire.py.
"""

from __future__ import annotations

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from star.common import ID_COLUMN
from star.errors import VersionError
from star.store import registry
from star.versions import compat

# what a registered consumer is (docs/versions.md); Feast feature services are found in Feast, not registered
CONSUMER_KINDS = ("ranker", "feature_service", "job", "other")


def list_versions(conn: psycopg.Connection, family: str | None = None) -> list[dict]:
    """Every embedding vintage (or one family's, which must exist), oldest first."""
    rows = registry.listing(conn, family)
    if family is not None and not rows:
        known = sorted({r["family"] for r in registry.listing(conn)})
        raise VersionError(f"no embedding family {family!r}; the registry has {', '.join(known) or 'none yet'}")
    return rows


def version_row(conn: psycopg.Connection, family: str, version: int) -> dict:
    """One vintage as listed; an error listing the family's vintages when it does not exist."""
    rows = list_versions(conn, family)
    found = [r for r in rows if r["version"] == version]
    if not found:
        known = [f"v{r['version']} ({r['status']})" for r in rows]
        raise VersionError(f"{family} has no vintage {version}; available: {', '.join(known)}")
    return found[0]


def show(conn: psycopg.Connection, family: str, version: int, *, feast_consumers: list[str] = ()) -> dict:
    """A vintage with its lineage, consumers (registered + Feast feature services using it) and maps."""
    row = version_row(conn, family, version)
    full = registry.get(conn, family, version)
    consumers = [{"consumer": c, "kind": k, "registered_at": t} for c, k, t in conn.execute(
        "SELECT consumer, kind, registered_at FROM star.embedding_consumers WHERE family = %s AND version = %s "
        "ORDER BY 1", (family, version))]
    consumers += [{"consumer": name, "kind": "feast_feature_service", "registered_at": None}
                  for name in feast_consumers]
    maps = {f"v{a}->v{b}": m for a, b, m in conn.execute(
        "SELECT from_version, to_version, fit_metrics FROM star.embedding_compat WHERE family = %s AND "
        "(from_version = %s OR to_version = %s) ORDER BY 1, 2", (family, version, version))}
    return {**row, "config": full.config, "metrics": full.metrics, "consumers": consumers, "compat": maps}


def register_consumer(conn: psycopg.Connection, family: str, version: int, consumer: str,
                      kind: str = "ranker") -> None:
    if kind not in CONSUMER_KINDS:
        raise VersionError(f"consumer kind {kind!r} is unknown; pass --kind with one of {', '.join(CONSUMER_KINDS)} "
                           "(Feast feature services need no registering: `star versions show` finds them)")
    version_row(conn, family, version)
    conn.execute("INSERT INTO star.embedding_consumers (family, version, consumer, kind) VALUES (%s, %s, %s, %s) "
                 "ON CONFLICT (family, version, consumer) DO UPDATE SET kind = EXCLUDED.kind",
                 (family, version, consumer, kind))


def current_vectors(conn: psycopg.Connection, family: str, version: int, entity: str) -> dict[int, np.ndarray]:
    """entity id -> its current vector in a vintage's own table."""
    register_vector(conn)
    key = sql.Identifier(ID_COLUMN[entity])
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(sql.SQL("SELECT {k}, embedding FROM {t} WHERE is_current").format(
            k=key, t=registry.table(family, version))).fetchall()
    return {int(i): e.to_numpy() for i, e in rows}


def shared_vectors(conn: psycopg.Connection, family: str, from_version: int, to_version: int,
                   entity: str) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(ids, x, y): the current vectors of the entities current in both vintages, rows aligned by sorted id
    (empty (0, dim) arrays when none is)."""
    x, y = current_vectors(conn, family, from_version, entity), current_vectors(conn, family, to_version, entity)
    ids = sorted(set(x) & set(y))
    if not ids:
        return ids, *(np.zeros((0, version_row(conn, family, v)["dim"])) for v in (from_version, to_version))
    return ids, np.stack([x[i] for i in ids]), np.stack([y[i] for i in ids])


def fit_map(conn: psycopg.Connection, family: str, from_version: int, to_version: int, **fit_kw) -> compat.CompatMap:
    """Fit and store the map from_version -> to_version on the entities current in both (their own rows)."""
    if from_version == to_version:
        raise VersionError(f"{family}: --from {from_version} and --to {to_version} are the same vintage (its map is "
                           "the identity); fit a map from a newer vintage to an older one, e.g. --from 2 --to 1")
    if from_version < to_version:  # maps serve an older vintage from a newer one, never the other way
        raise VersionError(f"{family}: --from {from_version} is older than --to {to_version}; --from is the newer "
                           f"vintage (its vectors go in), --to the older one (its space comes out): swap them, "
                           f"--from {to_version} --to {from_version}")
    if fit_kw.get("holdout", 0.2) == 0:
        raise VersionError(f"{family} v{from_version}->v{to_version}: holdout=0 leaves no held-out rows, so the fit "
                           "metrics would be in-sample (they flatter the map), and the publish gate and `star "
                           "versions retire` judge a stored map by them; pass --holdout with a value in (0, 1), "
                           "e.g. 0.2")
    src, dst = version_row(conn, family, from_version), version_row(conn, family, to_version)
    for v in (src, dst):
        if v["status"] not in ("candidate", "published", "deprecated"):
            raise VersionError(f"{family} v{v['version']} is {v['status']}: a map is fitted on the vintage's own "
                               "rows, so both must be candidate, published or deprecated")
    shared, xs, ys = shared_vectors(conn, family, from_version, to_version, src["entity"])
    m = compat.fit(xs, ys, family=family, from_version=from_version, to_version=to_version, **fit_kw)
    joint = _joint_map(conn, family, from_version, to_version)
    if joint is not None:  # trained with the model (BC-Aligner): kept unless the ridge map is clearly better
        joint_cos = compat.metrics(joint.apply(xs), ys)
        ridge_cos = m.metrics["heldout"]["cos_mean"]
        if joint_cos["cos_mean"] >= ridge_cos - CHAIN_TOLERANCE:
            m = compat.CompatMap(family=family, from_version=from_version, to_version=to_version,
                                 matrix=joint.matrix, bias=joint.bias, metrics={
                                     **joint.metrics, "heldout": joint_cos, "shared": len(shared),
                                     "holdout_rows": len(shared), "ridge_heldout_cos_mean": ridge_cos})
    compat.store(conn, m)
    return m


def _joint_map(conn: psycopg.Connection, family: str, from_version: int, to_version: int) -> compat.CompatMap | None:
    """The stored map from_version -> to_version when it was trained with the model (star.graph.align)."""
    if (from_version, to_version) not in compat.stored_pairs(conn, family):
        return None
    m = compat.load(conn, family, from_version, to_version)
    return m if m.metrics.get("method") == "bc_aligner" else None


def _write_rows(conn: psycopg.Connection, m: compat.CompatMap) -> None:
    """W's rows as pgvector values (for star.compat_apply), replacing earlier ones."""
    register_vector(conn)
    conn.execute("DELETE FROM star.embedding_compat_rows WHERE family = %s AND from_version = %s AND "
                 "to_version = %s", (m.family, m.from_version, m.to_version))
    bias = m.bias if m.bias is not None else np.zeros(m.to_dim)
    with conn.cursor().copy("COPY star.embedding_compat_rows (family, from_version, to_version, i, w, b) "
                            "FROM STDIN WITH (FORMAT BINARY)") as cp:
        cp.set_types(["text", "int4", "int4", "int4", "vector", "float8"])
        for i, (row, b) in enumerate(zip(m.matrix.astype(np.float32), bias)):
            cp.write_row((m.family, m.from_version, m.to_version, i, row, float(b)))


CHAIN_TOLERANCE = 0.01  # a chained map may lose at most this much mean cosine against a directly fitted one


def serving_map(conn: psycopg.Connection, family: str, source: int, goal: int, entity: str) -> compat.CompatMap:
    """The stored direct map source -> goal, or one composed along the fewest stored maps. A composed map is
    checked against a map fitted directly on the same entities (both vintages still have their rows): if the chain
    loses more than CHAIN_TOLERANCE mean cosine, the direct map serves. The chosen map is stored."""
    path = compat.chain_path(compat.stored_pairs(conn, family), source, goal, family=family)
    if len(path) == 1:
        return compat.load(conn, family, source, goal)
    chained = compat.compose([compat.load(conn, family, a, b) for a, b in path])
    _, xs, ys = shared_vectors(conn, family, source, goal, entity)
    direct = compat.fit(xs, ys, family=family, from_version=source, to_version=goal)
    chain_cos = compat.metrics(chained.apply(xs), ys)["cos_mean"]
    direct_cos = compat.metrics(direct.apply(xs), ys)["cos_mean"]
    use = direct if chain_cos < direct_cos - CHAIN_TOLERANCE else chained
    use = compat.CompatMap(family=family, from_version=source, to_version=goal, matrix=use.matrix, bias=use.bias,
                           metrics={**use.metrics, "chain_check": {
                               "chained": [list(p) for p in path], "chained_cos_mean": chain_cos,
                               "direct_cos_mean": direct_cos, "tolerance": CHAIN_TOLERANCE,
                               "served_by": "direct" if use is direct else "chain"}})
    compat.store(conn, use)
    return use


def deprecate(conn: psycopg.Connection, family: str, version: int) -> dict:
    v = version_row(conn, family, version)
    if v["status"] != "published":
        raise VersionError(f"{family} v{version} is {v['status']}; only a published vintage can be deprecated")
    registry.set_status(conn, family, version, "deprecated")
    return {"family": family, "version": version, "status": "deprecated"}


def _map_cos(m: compat.CompatMap) -> float | None:
    """How well a serving map reproduces its vintage: held-out mean cosine of a fit, or of the chain as checked
    (None for a map composed when its vintage's rows were already gone)."""
    check = m.metrics.get("chain_check")
    if check:
        return round(check["chained_cos_mean" if check["served_by"] == "chain" else "direct_cos_mean"], 4)
    heldout = m.metrics.get("heldout") or {}
    if m.metrics.get("holdout_rows") == 0:  # in-sample figures (a map stored before holdout=0 was refused)
        return None
    return None if heldout.get("cos_mean") is None else round(heldout["cos_mean"], 4)
