"""What the benchmarks share: one JSON line per measurement, and a fresh database of their own on the server."""

from __future__ import annotations

import json

from star import db
from star.config import DbTarget, Settings


def emit(record: dict) -> dict:
    print(json.dumps(record, default=str), flush=True)
    return record


def fresh_database(name: str, settings: Settings | None = None) -> DbTarget:
    """Drop and re-create database `name` on the configured server, migrated; the benchmark drops it at the end."""
    target = db.server_target(settings or Settings.from_env()).with_database(name)
    db.drop_database(target)
    db.ensure_database(target)
    db.migrate(target)
    return target


def nearest_pair(conn, family: str, queries: list[int], *, warm: int = 20) -> tuple[dict, dict, dict[int, list[int]]]:
    """star.nearest(family, v, q, 10) on the native v2 and the retired v1, alternating query by query (a shared
    machine drifts): p50 / p99 of each, and v1's answers by query."""
    import time

    import numpy as np

    sql = "SELECT id FROM star.nearest(%s, %s, %s, 10)"
    for q in queries[:warm]:  # plans, index pages
        for v in (2, 1):
            conn.execute(sql, (family, v, q)).fetchall()
    times: dict[int, list[float]] = {2: [], 1: []}
    found = {}
    for q in queries:
        for v in (2, 1):
            t0 = time.perf_counter()
            rows = conn.execute(sql, (family, v, q)).fetchall()
            times[v].append((time.perf_counter() - t0) * 1000)
            if v == 1:
                found[q] = [r[0] for r in rows]

    def stats(t):
        return {"p50_ms": round(float(np.percentile(t, 50)), 3), "p99_ms": round(float(np.percentile(t, 99)), 3)}
    return stats(times[2]), stats(times[1]), found


def exact_translated(conn, family: str, queries: list[int]) -> dict[int, set[int]]:
    """The exact top 10 of each query in v1's space: every current v2 row through the map (star.compat_apply, as
    Feast and psql read it), cosine in numpy; with every id tied with the 10th."""
    import numpy as np
    from psycopg import sql

    key = "member_id" if family.startswith("member") else "job_id"
    rows = conn.execute(sql.SQL("SELECT {k}, star.compat_apply(%s, 2, 1, embedding) FROM {t} WHERE is_current "
                                "ORDER BY 1").format(k=sql.Identifier(key), t=sql.Identifier("star", f"{family}_v2")),
                        (family,)).fetchall()
    ids = np.array([r[0] for r in rows])
    m = np.array([r[1] for r in rows], dtype=np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    where = {int(i): j for j, i in enumerate(ids)}
    out = {}
    for q in queries:
        cos = m @ m[where[q]]
        cos[where[q]] = -np.inf
        tenth = np.partition(-cos, 9)[9]
        out[q] = {int(i) for i in ids[-cos <= tenth + 1e-6]}
    return out


def overlap(found: dict[int, list[int]], exact: dict[int, set[int]]) -> float:
    """Mean share of each query's 10 answers found in its exact top 10 (ties with the 10th count as hits)."""
    import numpy as np

    return round(float(np.mean([min(len(set(found[q]) & exact[q]), 10) / 10 for q in found])), 4)
