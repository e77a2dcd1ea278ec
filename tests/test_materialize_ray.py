"""`star features materialize --engine ray` (star/store/ray_engine.py): each view's latest rows computed in slices
on a real local Ray cluster, then published in one transaction. The same online answers as the default in-server
engine, nothing rewritten by a re-run, the same registry; a bad cluster address leaves the online rows as they were."""

from __future__ import annotations

import os
import socket
import subprocess

import numpy as np
import pytest

from star import db
from star.cluster import EngineConfig
from star.pipeline import apply_features, materialize
from star.store.feast_repo import open_store
from tests.test_online_store import STAR, VIEW, _market, _new_snapshot, vector_vintage

pytestmark = pytest.mark.skipif(os.environ.get("STAR_FEAST_MODE", "star") == "stock",
                                reason="STAR's online store only (STAR_FEAST_MODE=stock)")
RAY = EngineConfig(engine="ray", workers=2)


def _answers(target) -> dict:
    """get_online_features of every member and job of the market and of the vintages (and one unknown id), over
    every view (vectors included)."""
    store = open_store(target)
    with db.connect(target) as conn:
        ids = {key: sorted({r[0] for r in conn.execute(f"SELECT {key} FROM star.{table}")} | extra)
               for key, table, extra in (("member_id", "members", {*range(1, 41), 404}),
                                         ("job_id", "jobs", {10, 11, 12, 999}))}
    out = {}
    for key, entities in ids.items():
        refs = [f"{fv.name}:{f.name}" for fv in store.list_feature_views() if fv.entity_columns[0].name == key
                for f in fv.features]
        out[key] = store.get_online_features(features=refs, entity_rows=[{key: i} for i in entities],
                                             full_feature_names=True).to_dict()
    assert len(out["member_id"]["member_id"]) >= 40 and any(k.endswith("__embedding") for k in out["job_id"])
    return out


def _registry(target) -> list:
    with db.connect(target) as conn:
        rows = conn.execute("SELECT family, version, status, config, metrics FROM star.embedding_versions "
                            "ORDER BY 1, 2").fetchall()
    tags = sorted((fv.name, sorted(fv.tags.items())) for fv in open_store(target).list_feature_views())
    return [rows, tags]


def _row_versions(target) -> dict:
    """xmin of every online row: a row rewritten (even with equal values) gets a new one."""
    with db.connect(target) as conn:
        tables = [t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'feast_online' "
                                             "ORDER BY 1")]
        assert not [t for t in tables if "__ray_" in t], "a stage table was left behind"
        return {t: conn.execute(f'SELECT entity_key, feature_name, xmin::text FROM feast_online."{t}" '
                                "ORDER BY 1, 2").fetchall() for t in tables}


def _serve(target, tmp_path, engine) -> dict:
    rng = np.random.default_rng(7)
    _market(target, tmp_path, rng.normal(size=(40, 16)))
    vector_vintage(target, rng.normal(size=(3, 8)), [10, 11, 12], family="job_graph_embedding", entity="job",
                   kind="graph_embedding")
    apply_features(target)
    return materialize(target, engine=engine)


def test_ray_materialize_serves_what_the_default_engine_serves(server, target, tmp_path, ray_cluster):
    base, template = server
    other = base.with_database(f"{target.dbname}_ray")
    db.ensure_database(other, template=template)
    try:
        _serve(target, tmp_path / "default", None)
        record = _serve(other, tmp_path / "ray", RAY)
        assert record["engine"] == {"engine": "ray", "workers": 2}
        assert _answers(other) == _answers(target)
        assert _registry(other) == _registry(target)  # the same vintages marked online, the same Feast tags
        before = _row_versions(other)
        assert sum(map(len, before.values())) > 0
        materialize(other, engine=RAY)  # a re-run finds every row unchanged: nothing is rewritten
        assert _row_versions(other) == before
        _new_snapshot(other, np.random.default_rng(8).normal(size=(40, 16)))
        _new_snapshot(target, np.random.default_rng(8).normal(size=(40, 16)))
        materialize(other, engine=RAY, feature_views=[VIEW])
        materialize(target, feature_views=[VIEW])
        assert _answers(other) == _answers(target)
    finally:
        db.drop_database(other)


def test_an_unreachable_cluster_fails_the_materialize_and_leaves_the_online_rows(target, tmp_path):
    """`--ray-address` where nothing listens: one line naming the address and the fix, the online rows untouched."""
    _serve(target, tmp_path, None)
    before = _row_versions(target)
    _new_snapshot(target, np.random.default_rng(9).normal(size=(40, 16)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run([STAR, "features", "materialize", "--engine", "ray", "--ray-address", f"127.0.0.1:{port}"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "STAR_DATABASE_URL": target.sqlalchemy_url()})
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"cannot reach the Ray cluster at '127.0.0.1:{port}'" in done.stderr and "ray start --head" in done.stderr
    assert _row_versions(target) == before
