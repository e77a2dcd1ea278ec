"""Lifecycle steps under faults and concurrency (issue #13): a retire never leaves entities stale, never races an
embedding job, resumes after a kill, and star.nearest is complete while a batch is being published."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import psycopg
import pytest
from pgvector.psycopg import register_vector

from star import db
from star.errors import VersionError
from star.pipeline import apply_features, materialize, seed_synthetic
from star.store.feast_repo import open_store
from star.store.locks import FamilyBusy, family_lock
from star.text.config import TextModelConfig
from star.text.embed import EmbedConfig, embed_texts
from star.text.model import TextEncoder
from star.versions import compat
from star.versions.lifecycle import fit_map, list_versions
from star.versions.retire import _plan, retire
from tests.text_models import one_thread, tiny_bert  # noqa: F401  (one_thread: autouse fixture)

FAMILY = "member_text_embedding"


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    return [tiny_bert(tmp_path_factory.mktemp(f"b{seed}"), seed=seed) for seed in (0, 1)]


def _encoder(model_dir):
    return TextEncoder(TextModelConfig(model_dir=model_dir, pooling="mean", precision="fp32"))


def _two_vintages(target, model_dirs, *, uncovered: int = 0) -> list[int]:
    """v1 and v2 of the member family, served in Feast, map v2 -> v1 fitted; with `uncovered`, v2 lacks that many
    members (as a vintage embedded before they joined). Returns the ids v2 lacks."""
    seed_synthetic(target, members=120, jobs=30, seed=5, progress=False)
    for d in model_dirs:
        embed_texts(target, _encoder(d), EmbedConfig(entities=("member",)), progress=False)
    with db.connect(target) as conn:
        lost = [r[0] for r in conn.execute(f"SELECT member_id FROM star.{FAMILY}_v2 WHERE is_current ORDER BY 1 "
                                           "LIMIT %s", (uncovered,))]
        conn.execute(f"DELETE FROM star.{FAMILY}_v2 WHERE member_id = ANY(%s)", (lost,))
        fit_map(conn, FAMILY, 2, 1)
        conn.commit()
    apply_features(target)
    materialize(target, feature_views=[f"{FAMILY}_v1", f"{FAMILY}_v2"])
    return lost


def _vectors(target, version) -> dict[int, np.ndarray]:
    with db.connect(target) as conn:
        return {i: np.array(e, dtype=np.float64) for i, e in conn.execute(
            f"SELECT member_id, embedding::real[] FROM star.{FAMILY}_v{version} WHERE is_current")}


def _online(target, ids) -> list:
    return open_store(target).get_online_features(features=[f"{FAMILY}_v1:embedding"],
                                                  entity_rows=[{"member_id": i} for i in ids]).to_dict()["embedding"]


def test_retire_refuses_when_the_serving_vintage_lacks_entities(target, model_dirs):
    lost = _two_vintages(target, model_dirs, uncovered=7)
    with pytest.raises(VersionError, match=r"would leave 7 of its 120 current entities without a vector \(member_id "
                                           rf"{lost[0]}, .*--drop-uncovered to serve them as missing"):
        retire(target, FAMILY, 1)
    with db.connect(target) as conn:
        assert [(r["status"], r["pending"]) for r in list_versions(conn, FAMILY)] == [("published", None)] * 2


def test_retire_with_drop_uncovered_serves_them_as_missing_everywhere_never_stale(target, model_dirs):
    lost = _two_vintages(target, model_dirs, uncovered=5)
    v1, v2 = _vectors(target, 1), _vectors(target, 2)
    assert all(x is not None for x in _online(target, lost))  # Feast holds v1's own vectors for them
    out = retire(target, FAMILY, 1, drop_uncovered=True)
    assert out["status"] == "retired" and out["uncovered_served_as_missing"] == 5
    kept = sorted(v2)[0]
    online = _online(target, [*lost, kept])
    assert online[:5] == [None] * 5  # missing online, not the stale pre-retirement vectors
    with db.connect(target, autocommit=True) as conn:
        m = compat.load(conn, FAMILY, 2, 1)
        assert np.allclose(online[5], m.apply(v2[kept]), atol=1e-4)
        for i in lost:
            with pytest.raises(psycopg.errors.RaiseException, match="has no current vector"):
                conn.execute("SELECT * FROM star.nearest(%s, 1, %s, 5)", (FAMILY, i))
        near = [r[0] for r in conn.execute("SELECT id FROM star.nearest(%s, 1, %s, 200)", (FAMILY, kept))]
        mapped = {i: np.array(e) for i, e in conn.execute(f"SELECT member_id, embedding::real[] FROM star.{FAMILY}_v1")}
    assert len(near) == len(v2) - 1 and not set(near) & set(lost)
    assert set(mapped) == set(v2) and set(v1) - set(mapped) == set(lost)  # psql reads the view: mapped, no lost
    entity_df = pd.DataFrame({"member_id": [lost[0], kept], "event_timestamp": [pd.Timestamp.now(tz="UTC")] * 2})
    hist = open_store(target).get_historical_features(entity_df=entity_df,
                                                      features=[f"{FAMILY}_v1:embedding"]).to_df()
    by_id = dict(zip(hist["member_id"], hist["embedding"]))
    assert by_id[lost[0]] is None or not isinstance(by_id[lost[0]], (list, np.ndarray))
    assert np.allclose(np.asarray(by_id[kept], dtype=np.float64), m.apply(v2[kept]), atol=1e-4)


def test_a_retire_waits_for_no_embedding_job_it_fails_fast_and_changes_nothing(target, model_dirs):
    _two_vintages(target, model_dirs)
    holding, release = threading.Event(), threading.Event()

    def embedding_job():  # a `star text embed` on the member family, mid-run
        with family_lock(target, [FAMILY]):
            holding.set()
            release.wait(60)

    job = threading.Thread(target=embedding_job)
    job.start()
    try:
        assert holding.wait(30)
        with pytest.raises(FamilyBusy, match=f"another job is writing or materializing {FAMILY} right now"):
            retire(target, FAMILY, 1)
        with pytest.raises(FamilyBusy, match=FAMILY):
            embed_texts(target, _encoder(model_dirs[0]), EmbedConfig(entities=("member",)), progress=False)
        with pytest.raises(FamilyBusy, match=FAMILY):
            materialize(target, feature_views=[f"{FAMILY}_v1"])
    finally:
        release.set()
        job.join()
    with db.connect(target) as conn:
        assert [(r["status"], r["pending"]) for r in list_versions(conn, FAMILY)] == [("published", None)] * 2
        assert conn.execute(f"SELECT count(*) FROM star.{FAMILY}_v1 WHERE is_current").fetchone()[0] == 120
    assert retire(target, FAMILY, 1)["status"] == "retired"  # released: it goes through


def test_an_interrupted_retire_is_listed_and_finished_by_the_next_lifecycle_job(target, model_dirs):
    from star import pipeline

    _two_vintages(target, model_dirs)
    v1, v2 = _vectors(target, 1), _vectors(target, 2)
    with db.connect(target) as conn:  # a retire killed right after its first step (the plan committed)
        with conn.transaction():
            _plan(conn, FAMILY, 1, None, False)
        rows = {r["version"]: r for r in list_versions(conn, FAMILY)}
        assert rows[1]["status"] == "published"
        assert rows[1]["pending"].startswith("retire (served from v2")
        member = sorted(v1)[0]
        native = conn.execute("SELECT id FROM star.nearest(%s, 1, %s, 3)", (FAMILY, member)).fetchall()
    assert np.allclose(_online(target, [member])[0], v1[member], atol=1e-5)  # Feast and SQL agree: native
    assert len(native) == 3
    # the next job on the family (here: a text embed that has nothing new to embed) finishes the retire first
    out = pipeline.text_embed(target, model_dir=model_dirs[1], base=True, cfg=EmbedConfig(entities=("member",)),
                              progress=False)
    assert f"{FAMILY}_v1" in out["materialized"]
    with db.connect(target) as conn:
        rows = {r["version"]: r for r in list_versions(conn, FAMILY)}
        m = compat.load(conn, FAMILY, 2, 1)
        via_sql = np.array(conn.execute(f"SELECT embedding::real[] FROM star.{FAMILY}_v1 WHERE member_id = %s",
                                        (member,)).fetchone()[0])
    assert (rows[1]["status"], rows[1]["served_from"], rows[1]["pending"]) == ("retired", 2, None)
    assert np.allclose(_online(target, [member])[0], m.apply(v2[member]), atol=1e-4)
    assert np.allclose(via_sql, m.apply(v2[member]), atol=1e-4)
    again = retire(target, FAMILY, 1)  # running it again is safe: nothing left to do
    assert again["status"] == "retired" and again["finished_pending"] == []


def test_nearest_is_complete_while_a_large_batch_is_being_published(target, model_dirs):
    """An uncommitted batch of rows close to the query fills the HNSW beam with entries the reader cannot see:
    star.nearest still returns k visible rows (iterative scan, exact fallback)."""
    seed_synthetic(target, members=60, jobs=20, seed=2, progress=False)
    embed_texts(target, _encoder(model_dirs[0]), EmbedConfig(entities=("member",)), progress=False)
    vectors = _vectors(target, 1)
    member = sorted(vectors)[0]
    writer = db.connect(target)
    register_vector(writer)
    try:
        rng = np.random.default_rng(0)
        rows = [(10_000_000 + i, (vectors[member] + rng.normal(scale=1e-3, size=32)).astype(np.float32))
                for i in range(3000)]
        with writer.cursor().copy(f"COPY star.{FAMILY}_v1 (member_id, event_timestamp, text_md5, embedding, "
                                  "is_current) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(["bigint", "timestamptz", "text", "vector", "bool"])
            for i, e in rows:
                cp.write_row((i, pd.Timestamp("2025-01-01", tz="UTC"), "x", e, True))
        # not committed: a publish in flight
        with db.connect(target) as reader:
            reader.execute("SET enable_seqscan = off")  # the plan of a large vintage: the HNSW index, not a scan
            for k in (10, 59):
                got = reader.execute("SELECT id FROM star.nearest(%s, 1, %s, %s)", (FAMILY, member, k)).fetchall()
                assert len(got) == k and all(i < 10_000_000 for (i,) in got)
    finally:
        writer.rollback()
        writer.close()


def test_nearest_any_k_and_clear_errors_for_wrong_families_and_maps(target, model_dirs):
    _two_vintages(target, model_dirs)
    retire(target, FAMILY, 1)
    member = sorted(_vectors(target, 2))[0]
    with db.connect(target, autocommit=True) as conn:
        everyone = conn.execute("SELECT count(*) FROM star.nearest(%s, 1, %s, 2147483647)", (FAMILY, member))
        assert everyone.fetchone()[0] == 119  # every other member, no int4 overflow of k * oversample
        with pytest.raises(psycopg.errors.RaiseException, match="member_categorical is a categorical family, not an "
                                                                f"embedding; search an embedding family: {FAMILY}"):
            conn.execute("SELECT * FROM star.nearest('member_categorical', 1, %s)", (member,))
        with pytest.raises(psycopg.errors.RaiseException, match=r"no stored map nope v2 -> v1 \(stored: none for "
                                                                r"this family\); fit one with `star compat fit"):
            conn.execute(f"SELECT star.compat_apply('nope', 2, 1, embedding) FROM star.{FAMILY}_v2 LIMIT 1")


def test_retiring_through_an_in_sample_map_warns_that_its_quality_is_unknown(target, model_dirs):
    from star.versions.lifecycle import shared_vectors

    _two_vintages(target, model_dirs)
    with db.connect(target) as conn:
        _, xs, ys = shared_vectors(conn, FAMILY, 2, 1, "member")
        compat.store(conn, compat.fit(xs, ys, family=FAMILY, from_version=2, to_version=1, holdout=0))
        conn.commit()
    out = retire(target, FAMILY, 1)
    assert out["map_cos_mean"] is None and "has no held-out measurement" in out["warning"]
