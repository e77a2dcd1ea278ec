"""What the benchmarks share: one JSON line per measurement, and a fresh database of their own on the server."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import zipfile

from star import db
from star.config import REPO_ROOT, DbTarget, Settings

DATA = REPO_ROOT.parent / "shared" / "data"


MODES = ("STAR_FEAST_MODE", "STAR_BATCH_ENGINE", "STAR_ONLINE_STORE")  # what feature_store.yaml reads


def p50_p99(times_ms: list[float]) -> dict:
    import numpy as np

    return {"p50_ms": round(float(np.percentile(times_ms, 50)), 3),
            "p99_ms": round(float(np.percentile(times_ms, 99)), 3)}


@contextlib.contextmanager
def feast_env(env: dict[str, str]):
    """Feast configured by `env` (STAR_FEAST_MODE and, optionally, STAR_BATCH_ENGINE / STAR_ONLINE_STORE; the others
    unset) while inside; the environment as it was afterwards. A FeatureStore reads it when it is opened."""
    saved = {k: os.environ.get(k) for k in MODES}
    try:
        for k in MODES:
            os.environ.pop(k, None)
        os.environ.update(env)
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def feast_mode(mode: str):
    """feast_env of STAR_FEAST_MODE=mode ('star' or 'stock')."""
    return feast_env({"STAR_FEAST_MODE": mode})


@contextlib.contextmanager
def stock_offline_store(store):
    """The FeatureStore's offline store is stock Feast's postgres one while inside (same tables, same registry)."""
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import PostgreSQLOfflineStore

    provider = store._get_provider()
    ours = provider.offline_store
    provider._offline_store = PostgreSQLOfflineStore()
    try:
        yield store
    finally:
        provider._offline_store = ours


class StoreTimes(logging.Handler):
    """Seconds STAR's online store spent upserting rows and building HNSW indexes while attached (star.store.
    online_tables logs one line per upsert and per build, the seconds last)."""

    def __init__(self):
        super().__init__()
        self.upsert = self.hnsw = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        if "HNSW" in record.msg:
            self.hnsw += float(record.args[-1])
        else:
            self.upsert += float(record.args[-1])

    @classmethod
    @contextlib.contextmanager
    def attached(cls):
        times, log = cls(), logging.getLogger("star.store.online_tables")
        log.addHandler(times), log.setLevel(logging.INFO)
        try:
            yield times
        finally:
            log.removeHandler(times)


def retire_in_sql(target, family: str, entity: str = "member"):
    """v1 of `family` retired onto v2 by the retire's SQL steps (Feast left out): fit the map v2 -> v1, plan,
    build the translated copy, flip. Returns (the map, seconds to fit and plan, seconds to build the copy)."""
    import time

    from star.versions.lifecycle import fit_map
    from star.versions.retire import _flip, _pending, _plan, _stage_translated

    t0 = time.perf_counter()
    with db.connect(target) as conn:
        cmap = fit_map(conn, family, 2, 1)
        conn.commit()
        with conn.transaction():
            _plan(conn, family, 1, None, False)
        plan, deps = _pending(conn, family, 1)
    fitted = time.perf_counter()
    _stage_translated(target, family, [1, *deps], plan["source"], entity)
    built = time.perf_counter()
    with db.connect(target) as conn, conn.transaction():
        _flip(conn, family, 1, plan, deps, entity)
    return cmap, round(fitted - t0, 1), round(built - fitted, 1)


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
    return p50_p99(times[2]), p50_p99(times[1]), found


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


def real_texts(limit: int) -> list[str]:
    """Distinct ESCO v1.1.1 and O*NET 29.2 texts (../shared/data), longest kinds first: skill and occupation
    descriptions, task statements, O*NET alternate titles, then ESCO's alternative labels (~180k in all)."""
    import pandas as pd

    texts: list[str] = []
    alternatives: list[str] = []
    with zipfile.ZipFile(DATA / "esco" / "esco-v1.1.1-classification-en-csv.zip") as z:
        for name in ("skills_en.csv", "occupations_en.csv"):
            member = next(n for n in z.namelist() if n.endswith(name))
            for row in csv.DictReader(io.TextIOWrapper(z.open(member), encoding="utf-8")):
                texts.append(f"{row['preferredLabel']}. {row['description']}")
                alternatives += (row.get("altLabels") or "").split("\n")
    onet = DATA / "onet"
    texts += pd.read_csv(onet / "Task Statements.txt", sep="\t", dtype=str)["Task"].tolist()
    texts += pd.read_csv(onet / "Alternate Titles.txt", sep="\t", dtype=str)["Alternate Title"].tolist()
    texts += alternatives
    return list(dict.fromkeys(t.strip() for t in texts if isinstance(t, str) and t.strip()))[:limit]


SEED_SQL = """
INSERT INTO star.members (member_id) SELECT g FROM generate_series(1, %(n)s) g;
INSERT INTO star.member_history (member_id, valid_from, attrs)
SELECT m, timestamptz '2025-01-01' + ((k * 60 + m %% 53) * interval '1 day'),
       jsonb_build_object('seniority', (ARRAY['junior','mid','senior','lead'])[1 + (m + k) %% 4],
                          'location', 'city' || ((m * 7 + k) %% 50), 'band', 'b' || k)
FROM generate_series(1, %(n)s) m, generate_series(0, 2) k;
INSERT INTO star.text_snapshots (entity, entity_id, valid_from, text)
SELECT 'member', m, timestamptz '2025-01-01' + ((k * 90 + m %% 31) * interval '1 day'),
       'profile ' || m || ' version ' || k || ': data analyst with SQL and Python'
FROM generate_series(1, %(n)s) m, generate_series(0, 1) k;
INSERT INTO star.jobs (job_id) SELECT g FROM generate_series(1, %(jobs)s) g;
INSERT INTO star.job_history (job_id, valid_from, attrs)
SELECT j, timestamptz '2025-01-01' + ((k * 45 + j %% 41) * interval '1 day'),
       jsonb_build_object('employment_type', (ARRAY['full_time','part_time','contract'])[1 + (j + k) %% 3],
                          'location', 'city' || ((j * 3 + k) %% 50))
FROM generate_series(1, %(jobs)s) j, generate_series(0, 1) k;
INSERT INTO star.text_snapshots (entity, entity_id, valid_from, text)
SELECT 'job', j, timestamptz '2025-01-01' + ((j %% 41) * interval '1 day'), 'posting ' || j || ': analyst, SQL'
FROM generate_series(1, %(jobs)s) j;
"""


BENCH_TABLES = ("members", "member_history", "jobs", "job_history", "text_snapshots")


def seed_market(conn, members: int, jobs: int) -> None:
    """SEED_SQL in the caller's transaction: members with 3 attribute versions and 2 text snapshots each, jobs with
    2 versions and a posting, all generated inside PostgreSQL."""
    for statement in SEED_SQL.split(";")[:-1]:
        conn.execute(statement, {"n": members, "jobs": jobs})


def entity_rows(n: int, members: int, rng, jobs: int | None = None):
    """n training rows (member, job, label, event time) over the seeded market's 220 days."""
    import pandas as pd

    start = pd.Timestamp("2025-01-01T00:00:00Z")
    return pd.DataFrame({"member_id": rng.integers(1, members + 1, size=n),
                         "job_id": rng.integers(1, (jobs or max(members // 5, 1)) + 1, size=n),
                         "label": rng.integers(0, 2, size=n),
                         "event_timestamp": start + pd.to_timedelta(rng.integers(0, 220 * 86400, size=n), unit="s")})
