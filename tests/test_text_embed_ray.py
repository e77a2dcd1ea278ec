"""`star text embed --engine ray`: the same rows, vectors and lineage as the local job, the same hash skip, and the
same kill-safety (a run that fails on the cluster leaves a 'building' vintage that the local engine finishes).
A real 2-CPU Ray cluster (the `ray_cluster` fixture), a real Postgres and a tiny real BERT."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from star import db
from star.cluster import ClusterError, EngineConfig
from star.pipeline import apply_features, seed_synthetic
from star.store.catalog import published_views
from star.store.feast_repo import open_store
from star.text.embed import EmbedConfig, embed_texts
from tests.conftest import fresh_database
from tests.text_models import one_thread, tiny_dir, tiny_encoder  # noqa: F401  (module fixtures)

RAY = EngineConfig(engine="ray", workers=2)
STAR = str(Path(sys.executable).with_name("star"))


@pytest.fixture
def second(server):
    """A second fresh database: the same market embedded by the other engine."""
    with fresh_database(server) as fresh:
        yield fresh


def _vectors(target, family="member_text_embedding", version=1) -> dict:
    with db.connect(target) as conn:
        rows = conn.execute(f"SELECT member_id, event_timestamp, text_md5, is_current, embedding::real[] "
                            f"FROM star.{family}_v{version}").fetchall()
    return {(m, t, md5, cur): np.asarray(e, dtype=np.float64) for m, t, md5, cur, e in rows}


def _registry(target, family="member_text_embedding"):
    with db.connect(target) as conn:
        return conn.execute("SELECT version, status, dim, model, config, metrics FROM star.embedding_versions "
                            "WHERE family = %s", (family,)).fetchall()


def _cosines(a: dict, b: dict) -> np.ndarray:
    assert a.keys() == b.keys()
    return np.array([a[k] @ b[k] / (np.linalg.norm(a[k]) * np.linalg.norm(b[k])) for k in a])


def _count(target, sql: str) -> int:
    with db.connect(target) as conn:
        return conn.execute(sql).fetchone()[0]


CFG = EmbedConfig(entities=("member",), commit_every=8)  # several blocks, so both actors work


def test_ray_gives_the_local_rows_vectors_and_lineage(target, second, ray_cluster, tiny_encoder):
    for t in (target, second):
        seed_synthetic(t, members=30, jobs=10, seed=3, progress=False)
    (local,) = embed_texts(target, tiny_encoder, CFG, lineage={"adapter_dir": None}, progress=False)
    (ray,) = embed_texts(second, tiny_encoder, CFG, lineage={"adapter_dir": None}, progress=False, engine=RAY)
    assert (ray["embedded"], ray["engine"], ray["workers"]) == (local["embedded"], "ray", 2)
    assert local["engine"] == "local" and local["embedded"] > 2 * CFG.commit_every
    here, there = _vectors(target), _vectors(second)
    assert len(here) == local["embedded"]
    assert _cosines(here, there).min() >= 0.9999  # same keys, md5s and current flags; same vectors
    ((*head_l, config_l, metrics_l),), ((*head_r, config_r, metrics_r),) = _registry(target), _registry(second)
    assert head_l == head_r and config_l == config_r  # same version, status, dim, model, fingerprint
    assert (metrics_l["engine"], metrics_l["workers"]) == ("local", 1)
    assert (metrics_r["engine"], metrics_r["workers"]) == ("ray", 2) and metrics_r["ray_version"]
    timing = {"encode_seconds", "texts_per_second", "texts_per_second_wall", "engine", "workers"}

    def same(m):
        return {**{k: v for k, v in m.items() if k not in ("engine", "workers", "ray_version", "last_run")},
                "last_run": {k: v for k, v in m["last_run"].items() if k not in timing}}
    assert same(metrics_l) == same(metrics_r)


def test_ray_rerun_embeds_only_the_changed_text(target, ray_cluster, tiny_encoder):
    seed_synthetic(target, members=20, jobs=5, seed=4, progress=False)
    (first,) = embed_texts(target, tiny_encoder, CFG, progress=False, engine=RAY)
    total = first["embedded"]
    with db.connect(target) as conn:
        member = conn.execute("UPDATE star.text_snapshots SET text = text || ' Speaks Esperanto.' WHERE ctid = "
                              "(SELECT ctid FROM star.text_snapshots WHERE entity = 'member' ORDER BY entity_id, "
                              "valid_from LIMIT 1) RETURNING entity_id").fetchone()[0]
        conn.commit()
    (again,) = embed_texts(target, tiny_encoder, CFG, progress=False, engine=RAY)
    assert (again["version"], again["new_version"], again["embedded"], again["skipped"]) == (1, False, 1, total - 1)
    text = _count(target, f"SELECT text FROM star.text_snapshots WHERE entity = 'member' AND entity_id = {member} "
                          "AND text LIKE '%Esperanto.'")
    stored = [v for (m, *_), v in _vectors(target).items() if m == member]
    expected = tiny_encoder.encode([text], "member").embeddings[0]
    assert max(float(v @ expected) / np.linalg.norm(v) for v in stored) >= 0.9999


def _kill_first_worker(killed: list, stop) -> None:
    """SIGKILL the first embedding actor process of this test's cluster (a worker dying, as on a lost node)."""
    import signal

    import psutil

    while not stop.is_set() and not killed:
        for proc in psutil.Process().children(recursive=True):
            try:
                if "StageBlocks" in " ".join(proc.cmdline()):
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.append(proc.pid)
                    return
            except (psutil.Error, ProcessLookupError):
                continue
        time.sleep(0.02)


def test_a_worker_killed_mid_run_is_restarted_and_the_run_completes(target, ray_cluster, tiny_encoder):
    import threading

    seed_synthetic(target, members=20, jobs=5, seed=7, progress=False)
    total = _count(target, "SELECT count(*) FROM star.text_snapshots WHERE entity = 'member'")
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=_kill_first_worker, args=(killed, stop), daemon=True)
    killer.start()
    try:
        (done,) = embed_texts(target, tiny_encoder, EmbedConfig(entities=("member",), commit_every=4),
                              progress=False, engine=RAY)
    finally:
        stop.set()
        killer.join()
    assert killed, "no embedding worker was seen to kill"
    assert done["embedded"] == total
    stored = _vectors(target)
    with db.connect(target) as conn:
        texts = {(m, t): s for m, t, s in conn.execute(
            "SELECT entity_id, valid_from, text FROM star.text_snapshots WHERE entity = 'member'")}
    fresh = tiny_encoder.encode([texts[(m, t)] for m, t, *_ in stored], "member").embeddings
    assert len(stored) == total
    assert min(float(v @ f) / np.linalg.norm(v) for v, f in zip(stored.values(), fresh)) >= 0.9999


REFUSE = """
CREATE FUNCTION star.refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'disk full (test: member %%)', NEW.member_id; END $$;
CREATE TRIGGER refuse_one BEFORE INSERT ON star.member_text_embedding_v1__staging
FOR EACH ROW WHEN (NEW.member_id = %(member)s) EXECUTE FUNCTION star.refuse_one();
"""


def test_a_batch_failing_for_good_leaves_a_building_vintage_the_local_engine_finishes(target, ray_cluster,
                                                                                        tiny_encoder):
    """The database refuses one block for good (a trigger raising, as a full disk would): the job ends in one
    ClusterError, nothing is published, Feast does not see the vintage; then `--engine local` finishes it."""
    from star.store import embeddings as store

    seed_synthetic(target, members=30, jobs=10, seed=5, progress=False)
    total = _count(target, "SELECT count(*) FROM star.text_snapshots WHERE entity = 'member'")
    with db.connect(target) as conn:  # what the job does first (find_or_create + ensure_staging), to arm the trigger
        with conn.transaction():
            v, _ = store.find_or_create(conn, family="member_text_embedding", entity="member", dim=tiny_encoder.dim,
                                        kind="text_embedding", fingerprint=tiny_encoder.fingerprint(),
                                        model=tiny_encoder.cfg.model_dir)
            store.ensure_staging(conn, v)
        # the shortest text: its block is the last (blocks go longest first), so earlier blocks commit first
        shortest = conn.execute("SELECT entity_id FROM star.text_snapshots WHERE entity = 'member' "
                                "ORDER BY length(text), entity_id LIMIT 1").fetchone()[0]
        conn.execute(REFUSE.replace("%(member)s", str(int(shortest))).replace("%%", "%"))
        conn.commit()
    with pytest.raises(ClusterError, match=r"member_text_embedding_v1 failed for good: .*disk full \(test: member "
                                           rf"{shortest}\).*stays 'building'.*either engine"):
        embed_texts(target, tiny_encoder, CFG, progress=False, engine=RAY)
    staged = _count(target, "SELECT count(*) FROM star.member_text_embedding_v1__staging")
    assert 0 < staged <= total - 1
    assert _count(target, "SELECT count(*) FROM star.member_text_embedding_v1") == 0
    ((_, status, *_),) = _registry(target)
    assert status == "building"
    with db.connect(target) as conn:
        assert "member_text_embedding_v1" not in {s.name for s in published_views(conn)}
    apply_features(target)
    assert "member_text_embedding_v1" not in {fv.name for fv in open_store(target).list_feature_views()}

    with db.connect(target) as conn:
        conn.execute("DROP TRIGGER refuse_one ON star.member_text_embedding_v1__staging")
        conn.commit()
    (done,) = embed_texts(target, tiny_encoder, CFG, progress=False)
    assert (done["version"], done["new_version"], done["embedded"]) == (1, False, total - staged)
    stored = _vectors(target)
    assert len(stored) == total
    with db.connect(target) as conn:
        texts = dict(((m, t), s) for m, t, s in conn.execute(
            "SELECT entity_id, valid_from, text FROM star.text_snapshots WHERE entity = 'member'"))
    keys = list(stored)
    fresh = tiny_encoder.encode([texts[(m, t)] for m, t, *_ in keys], "member").embeddings
    assert min(float(stored[k] @ f) / np.linalg.norm(stored[k]) for k, f in zip(keys, fresh)) >= 0.9999


def _star(args: list[str], url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "STAR_DATABASE_URL": url, "PYTHONPATH": os.getcwd()}
    return subprocess.run([STAR, *args], capture_output=True, text=True, timeout=300, env=env)


def test_cli_embeds_on_ray_and_an_unreachable_address_is_one_error_line(target, ray_cluster, tiny_dir):
    import json

    import ray

    seed_synthetic(target, members=12, jobs=6, seed=6, progress=False)
    address = ray.get_runtime_context().gcs_address  # the fixture's cluster: the job joins it, as on a real one
    done = _star(["text", "embed", "--base", "--model-dir", tiny_dir, "--entity", "job", "--engine", "ray",
                  "--workers", "2", "--ray-address", address], target.sqlalchemy_url())
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    (family,) = out["families"]
    assert (out["engine"], out["workers"], family["engine"], family["workers"]) == ("ray", 2, "ray", 2)
    jobs = _count(target, "SELECT count(*) FROM star.text_snapshots WHERE entity = 'job'")
    assert family["embedded"] == jobs and out["materialized"] == ["job_text_embedding_v1"]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    started = time.monotonic()
    failed = _star(["text", "embed", "--base", "--model-dir", tiny_dir, "--engine", "ray", "--ray-address", closed],
                   target.sqlalchemy_url())
    errors = [line for line in failed.stderr.splitlines() if line.startswith("star: error: ")]
    assert failed.returncode != 0 and len(errors) == 1 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    assert f"cannot reach the Ray cluster at '{closed}'" in errors[0] and "--engine local" in errors[0]
    assert time.monotonic() - started < 60
