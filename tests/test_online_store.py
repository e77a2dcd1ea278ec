"""STAR's online store + SQL compute engine (star/store/online_store.py, engine.py) against stock Feast, on a real
Postgres: the same online values, similarity search with each id's own distance, atomic and idempotent materialize.

The whole suite runs in stock mode too (STAR_FEAST_MODE=stock); tests of STAR-only behaviour skip there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from psycopg import sql

from star import db
from star.data.reading import read_dir
from star.pipeline import apply_features, materialize
from star.store import embeddings, online_tables, registry
from star.store.feast_repo import open_store
from star.store.marketplace import load
from tests import tiny_market

FAMILY, VIEW = "member_text_embedding", "member_text_embedding_v1"
STAR = str(Path(sys.executable).with_name("star"))
star_only = pytest.mark.skipif(os.environ.get("STAR_FEAST_MODE", "star") == "stock",
                               reason="STAR's online store only (STAR_FEAST_MODE=stock)")


def vector_vintage(target, vectors: np.ndarray, ids, *, ts="2025-01-01T00:00:00Z", family=FAMILY, entity="member",
                   kind="text_embedding") -> None:
    """A published embedding vintage holding `vectors` (no model: rows written directly)."""
    with db.connect(target) as conn:
        v, _ = embeddings.find_or_create(conn, family=family, entity=entity, dim=vectors.shape[1],
                                         kind=kind, fingerprint={"test": True}, model="test")
        conn.commit()
        embeddings.ensure_staging(conn, v)
        batch = pd.DataFrame({"entity_id": list(ids), "valid_from": pd.Timestamp(ts),
                              v.source_column: [f"m{i}" for i in ids]})
        embeddings.stage(conn, v, batch, vectors.astype(np.float32))
        embeddings.publish(conn, v, metrics={}, analyze=False)


def _serve(target, monkeypatch, mode: str) -> None:
    monkeypatch.setenv("STAR_FEAST_MODE", mode)
    apply_features(target)
    materialize(target)


def _market(target, tmp_path, vectors) -> None:
    load(target, read_dir(tiny_market.write(tmp_path)))
    vector_vintage(target, vectors, range(1, len(vectors) + 1))


def _online(target, ids) -> dict:
    store = open_store(target)
    refs = [f"{fv.name}:{f.name}" for fv in store.list_feature_views() if fv.entity_columns[0].name == "member_id"
            for f in fv.features]
    return store.get_online_features(features=refs, entity_rows=[{"member_id": i} for i in ids],
                                     full_feature_names=True).to_dict()


def _search(target, query, k) -> dict:
    return open_store(target).retrieve_online_documents_v2(
        features=[f"{VIEW}:embedding"], query=list(map(float, query)), top_k=k).to_dict()


def _cosine(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    v = vectors.astype(np.float64)
    return 1 - v @ query / (np.linalg.norm(v, axis=1) * np.linalg.norm(query))


@star_only
def test_fast_paths_return_what_stock_returns(server, target, tmp_path, monkeypatch):
    """Same data in two databases, one served by stock Feast, one by STAR's store: identical online values
    (vectors, strings, string lists, None for a missing entity) and the same top-k ids."""
    base, template = server
    other = base.with_database(f"{target.dbname}_stock")
    db.ensure_database(other, template=template)
    try:
        vectors = np.random.default_rng(0).normal(size=(40, 16))
        for t, mode in ((target, "star"), (other, "stock")):
            _market(t, tmp_path / mode, vectors)
            _serve(t, monkeypatch, mode)
        ids = [1, 2, 3, 40, 404]
        monkeypatch.setenv("STAR_FEAST_MODE", "stock")
        stock, stock_hits = _online(other, ids), _search(other, vectors[0], 5)
        monkeypatch.setenv("STAR_FEAST_MODE", "star")
        fast, fast_hits = _online(target, ids), _search(target, vectors[0], 5)
        assert fast == stock
        assert fast[f"{VIEW}__embedding"][0] == pytest.approx(vectors[0].astype(np.float32).tolist())
        assert fast[f"{VIEW}__embedding"][-1] is None and fast["member_categorical_v1__seniority"][-1] is None
        assert sorted(fast_hits["member_id"]) == sorted(stock_hits["member_id"])
        with db.connect(target) as conn:  # STAR's layout: a typed column and an HNSW index
            assert conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                                "'feast_online.star_member_text_embedding_v1'::regclass "
                                "AND attname = 'vector_value'").fetchone()[0] == "vector(16)"
            assert conn.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = 'feast_online' AND "
                                "indexdef LIKE '%USING hnsw%'").fetchone()[0] == 1
    finally:
        db.drop_database(other)


def _ranker_request(store, refs, member: int, jobs: list[int], full_feature_names: bool):
    return store.get_online_features(features=refs, entity_rows=[{"member_id": member, "job_id": j} for j in jobs],
                                     full_feature_names=full_feature_names)


@star_only
def test_a_ranker_request_over_member_and_job_views_returns_what_stock_returns(server, target, tmp_path,
                                                                                monkeypatch):
    """1 member + 100 jobs over every member and job view (strings, string lists, two vector views of different
    dimensions), with missing members and jobs and repeated jobs, full feature names both ways: STAR's one-round-
    trip read gives stock Feast's to_dict(), and its protobuf (to_df, timestamps) equals stock's too."""
    base, template = server
    other = base.with_database(f"{target.dbname}_stock")
    db.ensure_database(other, template=template)
    rng = np.random.default_rng(5)
    members, jobs = rng.normal(size=(40, 16)), rng.normal(size=(2, 8))
    try:
        for t, mode in ((target, "star"), (other, "stock")):
            _market(t, tmp_path / mode, members)
            vector_vintage(t, jobs, [10, 11], family="job_graph_embedding", entity="job", kind="graph_embedding")
            _serve(t, monkeypatch, mode)
        monkeypatch.setenv("STAR_FEAST_MODE", "stock")
        stock = open_store(other)
        monkeypatch.setenv("STAR_FEAST_MODE", "star")
        star = open_store(target)
        refs = [f"{fv.name}:{f.name}" for fv in star.list_feature_views() for f in fv.features]
        assert {r.split(":")[0] for r in refs} >= {"member_categorical_v1", "member_ids_v1", VIEW,
                                                     "job_categorical_v1", "job_graph_embedding_v1"}
        unique = list({r.split(":")[1]: r for r in refs}.values())  # without full names, one feature per name
        job_rows = [10, 11, 404, 10] * 25
        for member, row_jobs in ((1, job_rows), (2, job_rows[:1]), (404, job_rows)):
            for full, features in ((True, refs), (False, unique)):
                fast = _ranker_request(star, features, member, row_jobs, full)
                want = _ranker_request(stock, features, member, row_jobs, full)
                assert type(fast).__name__ == "StarOnlineResponse"  # the fast path ran, not Feast's own
                got = fast.to_dict()
                assert got == want.to_dict()
                assert list(got) == list(want.to_dict())  # same columns, same order
                assert fast.to_dict(include_event_timestamps=True) == want.to_dict(include_event_timestamps=True)
                assert fast.to_df().equals(want.to_df())
        got = _ranker_request(star, refs, 1, job_rows, True).to_dict()
        assert got["job_graph_embedding_v1__embedding"][:3] == [jobs[0].astype(np.float32).tolist(),
                                                               jobs[1].astype(np.float32).tolist(), None]
        assert got[f"{VIEW}__embedding"][0] == members[0].astype(np.float32).tolist()
        assert got[f"{VIEW}__embedding"][0] is not got[f"{VIEW}__embedding"][1]  # each row its own list
    finally:
        db.drop_database(other)


@star_only
def test_search_returns_each_id_with_its_own_distance(target, tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(300, 16))
    _market(target, tmp_path, vectors)
    _serve(target, monkeypatch, "star")
    for q in rng.normal(size=(5, 16)):
        for k in (1, 10, 120):  # 120 > hnsw_ef_search: ef_search follows k, the top-k is complete
            got = _search(target, q, k)
            exact = _cosine(vectors, q)
            assert len(got["member_id"]) == k
            assert set(got["member_id"]) == set(np.argsort(exact)[:k] + 1)
            for i, d, e in zip(got["member_id"], got["distance"], got["embedding"]):
                assert d == pytest.approx(exact[i - 1], abs=1e-5)
                assert e == pytest.approx(vectors[i - 1].tolist(), abs=1e-6)
    with db.connect(target) as conn:  # the index serves the search's ORDER BY (300 rows: the planner may sort)
        conn.execute("SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT entity_key FROM feast_online.star_member_text_embedding_v1 WHERE feature_name = "
            "'embedding' ORDER BY vector_value <=> %s::real[]::vector(16) LIMIT 10", (vectors[0].tolist(),)))
    assert "hnsw" in plan


def _online_rows(target) -> list:
    with db.connect(target) as conn:
        return conn.execute("SELECT entity_key, feature_name, value, value_text, vector_value::text, event_ts "
                            "FROM feast_online.star_member_text_embedding_v1 ORDER BY 1, 2").fetchall()


def _new_snapshot(target, vectors, ts="2025-06-01T00:00:00Z") -> None:
    """A later snapshot of every vector (a re-embedding of the same vintage)."""
    with db.connect(target) as conn:
        v = registry.get(conn, FAMILY, 1)
        conn.commit()
        embeddings.ensure_staging(conn, v)
        ids = range(1, len(vectors) + 1)
        embeddings.stage(conn, v, pd.DataFrame({"entity_id": list(ids), "valid_from": pd.Timestamp(ts),
                                                "text_md5": [f"n{i}" for i in ids]}), vectors.astype(np.float32))
        embeddings.publish(conn, v, metrics={}, analyze=False)


@star_only
@pytest.mark.parametrize("engine", ["star.store.engine.StarSQLComputeEngine", "local"])
def test_a_failed_materialize_leaves_the_previous_rows_and_a_rerun_is_idempotent(target, tmp_path, monkeypatch,
                                                                                  engine):
    """Both write paths (in-server SQL; Feast's local engine -> binary COPY): an exception after half the rows
    are written rolls everything back; the re-run writes the new rows once, a second re-run changes nothing."""
    monkeypatch.setenv("STAR_BATCH_ENGINE", engine)
    rng = np.random.default_rng(2)
    _market(target, tmp_path, rng.normal(size=(50, 8)))
    _serve(target, monkeypatch, "star")
    before = _online_rows(target)
    _new_snapshot(target, rng.normal(size=(50, 8)))
    real = online_tables.apply_rows

    def fail_after_writing(cur, schema, table, rows, params=None):
        real(cur, schema, table, rows, params)
        (n,) = cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE event_ts > '2025-03-01'").format(
            sql.Identifier(schema, table))).fetchone()
        assert n == 50  # every row was written inside the transaction ...
        raise RuntimeError("injected failure")

    monkeypatch.setattr(online_tables, "apply_rows", fail_after_writing)
    with pytest.raises(RuntimeError, match="injected failure"):
        materialize(target, feature_views=[VIEW])
    assert _online_rows(target) == before  # ... and none of them is visible after the failure
    monkeypatch.setattr(online_tables, "apply_rows", real)
    materialize(target, feature_views=[VIEW])
    after = _online_rows(target)
    assert len(after) == len(before) == 50 and after != before
    assert all(ts == datetime(2025, 6, 1, tzinfo=timezone.utc) for *_, ts in after)
    materialize(target, feature_views=[VIEW])
    assert _online_rows(target) == after


def _writer_backend(conn, dbname: str) -> int | None:
    row = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND state = 'active' AND "
                       "query LIKE '%%INSERT INTO%%member_text_embedding_v1%%' AND pid <> pg_backend_pid()", (dbname,)).fetchone()
    return row[0] if row else None


@star_only
def test_a_materialize_killed_midway_leaves_the_previous_complete_rows(target, tmp_path, monkeypatch):
    """SIGKILL of `star features materialize` while its upsert runs: readers keep the previous complete rows."""
    rng = np.random.default_rng(3)
    n = 6000
    _market(target, tmp_path, rng.normal(size=(n, 32)))
    _serve(target, monkeypatch, "star")
    before = _online_rows(target)
    _new_snapshot(target, rng.normal(size=(n, 32)))
    log = tmp_path / "materialize.log"
    proc = subprocess.Popen([STAR, "features", "materialize"], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "STAR_DATABASE_URL": target.sqlalchemy_url()})
    with db.connect(target, autocommit=True) as conn:
        deadline, pid = time.time() + 120, None
        while pid is None and proc.poll() is None and time.time() < deadline:
            pid = _writer_backend(conn, target.dbname)
            time.sleep(0.01)
        assert pid is not None, f"the materialize ended before its upsert was seen: {log.read_text()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert _online_rows(target) == before  # a reader meanwhile sees the old rows
            time.sleep(0.05)
    assert _online_rows(target) == before
    materialize(target, feature_views=[VIEW])
    assert len(_online_rows(target)) == n and _online_rows(target) != before



@star_only
def test_rows_are_served_before_their_index_and_a_killed_build_is_finished_by_the_next_run(target, tmp_path,
                                                                                          monkeypatch):
    """The first load commits the rows, then builds the HNSW index. A run that dies in between leaves complete
    rows that search exactly; the next materialize (or feast apply) builds the missing index."""
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(200, 16))
    _market(target, tmp_path, vectors)
    monkeypatch.setenv("STAR_FEAST_MODE", "star")
    apply_features(target)

    def killed(*args, **kwargs):
        raise RuntimeError("killed before the index build")

    real = online_tables.ensure_indexes
    monkeypatch.setattr(online_tables, "ensure_indexes", killed)
    with pytest.raises(RuntimeError, match="killed before the index build"):
        materialize(target, feature_views=[VIEW])
    monkeypatch.setattr(online_tables, "ensure_indexes", real)

    def hnsw() -> int:
        with db.connect(target) as conn:
            return conn.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = 'feast_online' AND "
                                "tablename = %s AND indexdef LIKE '%%USING hnsw%%'", (f"star_{VIEW}",)).fetchone()[0]

    assert len(_online_rows(target)) == 200 and hnsw() == 0
    got = _search(target, vectors[7], 5)  # exact without the index: still each id with its own distance
    assert set(got["member_id"]) == set(np.argsort(_cosine(vectors, vectors[7]))[:5] + 1)
    apply_features(target)
    assert hnsw() == 1
    with db.connect(target) as conn:
        conn.execute(f"DROP INDEX feast_online.{online_tables.index_name(f'star_{VIEW}', 'embedding')}")
        conn.commit()
    materialize(target, feature_views=[VIEW])
    assert hnsw() == 1


@star_only
def test_materialize_incremental_serves_what_stock_serves(server, target, tmp_path, monkeypatch):
    """`feast materialize-incremental` twice (up to a date between two snapshots, then up to now) through STAR's
    engine and through stock Feast, on the same data: the same online values after each step."""
    base, template = server
    other = base.with_database(f"{target.dbname}_stock")
    db.ensure_database(other, template=template)
    try:
        rng = np.random.default_rng(5)
        first, later = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
        ids = [1, 2, 30, 31]
        now = pd.Timestamp.now(tz="UTC").floor("s")  # within the first run's window (views without ttl: one year)
        seen = {}
        for t, mode in ((target, "star"), (other, "stock")):
            monkeypatch.setenv("STAR_FEAST_MODE", mode)
            load(t, read_dir(tiny_market.write(tmp_path / mode)))
            vector_vintage(t, first, range(1, 31), ts=now - pd.Timedelta(days=60))
            apply_features(t)
            open_store(t).materialize_incremental(end_date=(now - pd.Timedelta(days=30)).to_pydatetime())
            before = _online(t, ids)
            _new_snapshot(t, later, ts=now - pd.Timedelta(days=10))
            open_store(t).materialize_incremental(end_date=now.to_pydatetime())
            seen[mode] = (before, _online(t, ids))
        assert seen["star"] == seen["stock"]
        before, after = seen["star"]
        assert before[f"{VIEW}__embedding"][0] == pytest.approx(first[0].astype(np.float32).tolist())
        assert after[f"{VIEW}__embedding"][0] == pytest.approx(later[0].astype(np.float32).tolist())
        assert after[f"{VIEW}__embedding"][-1] is None
    finally:
        db.drop_database(other)


@star_only
def test_two_materializes_of_a_new_view_at_once_both_succeed_with_one_index(target, tmp_path, monkeypatch):
    """Two `feast materialize` of the same new view at the same moment (materialize takes a shared lock): both
    finish, the rows are complete once, one HNSW index is built."""
    import threading

    rng = np.random.default_rng(6)
    vectors = rng.normal(size=(3000, 16))
    _market(target, tmp_path, vectors)
    monkeypatch.setenv("STAR_FEAST_MODE", "star")
    apply_features(target)
    stores = [open_store(target), open_store(target)]
    start = threading.Barrier(2)
    errors = []

    def run(store):
        try:
            start.wait()
            store.materialize(datetime(1970, 1, 1, tzinfo=timezone.utc), datetime.now(timezone.utc),
                              feature_views=[VIEW])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(_online_rows(target)) == 3000
    with db.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = 'feast_online' AND tablename = %s "
                            "AND indexdef LIKE '%%USING hnsw%%'", (f"star_{VIEW}",)).fetchone()[0] == 1
