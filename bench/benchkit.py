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
