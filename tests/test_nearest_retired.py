"""star.nearest on a retired vintage (issue 14, item 4): an HNSW search of its translated copy, equal to exact search
in the retired vintage's space, kept in step when the serving vintage gets new rows and when a retire repoints it."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from star import db
from star.pipeline import apply_features, materialize, seed_synthetic
from star.text.config import TextModelConfig
from star.text.embed import EmbedConfig, embed_texts
from star.text.model import TextEncoder
from star.versions import compat
from star.versions.lifecycle import fit_map
from star.versions.retire import _plan, _stage_translated, retire
from tests.text_models import one_thread, tiny_bert  # noqa: F401  (one_thread: autouse fixture)

FAMILY = "member_text_embedding"
MEMBERS = 150


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """Three tiny random BERTs: three vintages in unrelated 32-d spaces (the maps between them are real fits)."""
    return [tiny_bert(tmp_path_factory.mktemp(f"b{seed}"), seed=seed) for seed in (0, 1, 2)]


def _encoder(model_dir) -> TextEncoder:
    return TextEncoder(TextModelConfig(model_dir=model_dir, pooling="mean", precision="fp32"))


def _embed(target, model_dir) -> None:
    embed_texts(target, _encoder(model_dir), EmbedConfig(entities=("member",)), progress=False)


def _retired_v1(target, model_dirs) -> None:
    """v1 and v2 served in Feast, map v2 -> v1 fitted, v1 retired."""
    seed_synthetic(target, members=MEMBERS, jobs=40, seed=5, progress=False)
    for d in model_dirs[:2]:
        _embed(target, d)
    with db.connect(target) as conn:
        fit_map(conn, FAMILY, 2, 1)
        conn.commit()
    apply_features(target)
    materialize(target, feature_views=[f"{FAMILY}_v1", f"{FAMILY}_v2"])
    assert retire(target, FAMILY, 1)["status"] == "retired"


def _translated(conn, version: int) -> dict[int, np.ndarray]:
    return {i: np.array(e, dtype=np.float64) for i, e in conn.execute(
        f"SELECT member_id, embedding::real[] FROM star.{FAMILY}_v{version}__translated")}


def _mapped(conn, version: int, source: int) -> dict[int, np.ndarray]:
    """What the vintage must be searched in: the serving vintage's current rows through the stored map."""
    return {i: np.array(e, dtype=np.float64) for i, e in conn.execute(
        f"SELECT member_id, star.compat_apply(%s, %s, %s, embedding) FROM star.{FAMILY}_v{source} WHERE is_current",
        (FAMILY, source, version))}


def _exact(vectors: dict[int, np.ndarray], query: int, k: int) -> list[tuple[int, float]]:
    ids = [i for i in vectors if i != query]
    m = np.stack([vectors[i] for i in ids])
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    q = vectors[query] / np.linalg.norm(vectors[query])
    cos = m @ q
    order = np.lexsort((ids, -cos))[:k]
    return [(ids[j], float(cos[j])) for j in order]


def _check_exact(conn, version: int, source: int, *, queries: int = 12, k: int = 10) -> float:
    """star.nearest(version) against exact search over the serving vintage's rows through the map: the translated
    copy holds exactly those vectors, and the search finds the exact neighbours. Returns the mean overlap@k."""
    want = _mapped(conn, version, source)
    have = _translated(conn, version)
    assert set(have) == set(want)
    assert all(np.allclose(have[i], want[i], atol=1e-6) for i in want)
    overlaps = []
    for query in sorted(want)[:: max(len(want) // queries, 1)][:queries]:
        got = conn.execute("SELECT id, cosine FROM star.nearest(%s, %s, %s, %s)", (FAMILY, version, query, k)).fetchall()
        exact = _exact(want, query, k)
        assert len(got) == k and np.allclose([c for _, c in got], [c for _, c in exact], atol=1e-5)
        overlaps.append(len({i for i, _ in got} & {i for i, _ in exact}) / k)
    return float(np.mean(overlaps))


def test_nearest_on_a_retired_vintage_searches_its_translated_vectors_exactly(target, model_dirs):
    _retired_v1(target, model_dirs)
    with db.connect(target, autocommit=True) as conn:
        kinds = dict(conn.execute("SELECT relname, relkind FROM pg_class WHERE relname LIKE %s",
                                  (f"{FAMILY}_v1%",)).fetchall())
        # psql and Feast keep the view (history); star.nearest searches the translated copy through its own index
        assert kinds == {f"{FAMILY}_v1": "v", f"{FAMILY}_v1__translated": "r", f"{FAMILY}_v1__translated_pkey": "i",
                         f"{FAMILY}_v1__translated_hnsw": "i"}
        (options,) = conn.execute("SELECT reloptions FROM pg_class WHERE relname = %s",
                                  (f"{FAMILY}_v1__translated_hnsw",)).fetchone()
        assert sorted(options) == ["ef_construction=64", "m=16"]  # the serving vintage's parameters
        assert _check_exact(conn, 1, 2) == 1.0  # small data: exact
        member = sorted(_translated(conn, 1))[0]
        everyone = conn.execute("SELECT count(*), count(DISTINCT id) FROM star.nearest(%s, 1, %s, 2147483647)",
                                (FAMILY, member)).fetchone()
        assert everyone == (MEMBERS - 1, MEMBERS - 1)
        wide = [c for (c,) in conn.execute("SELECT cosine FROM star.nearest(%s, 1, %s, 1001)", (FAMILY, member))]
        assert len(wide) == MEMBERS - 1 and np.all(np.diff(wide) <= 1e-9)
        with pytest.raises(psycopg.errors.RaiseException, match=rf"member_id 999999 has no current vector in "
                                                                rf"star.{FAMILY}_v2 \(it serves retired v1\)"):
            conn.execute("SELECT * FROM star.nearest(%s, 1, 999999, 5)", (FAMILY,))
        # the plan reads the translated table through its HNSW index, like a native vintage
        conn.execute("SET enable_seqscan = off")
        q = conn.execute(f"SELECT embedding FROM star.{FAMILY}_v1__translated WHERE member_id = %s",
                         (member,)).fetchone()[0]
        plan = "\n".join(r[0] for r in conn.execute(
            f"EXPLAIN SELECT member_id FROM star.{FAMILY}_v1__translated ORDER BY embedding <=> %s::vector LIMIT 10",
            (q,)))
        assert f"{FAMILY}_v1__translated_hnsw" in plan


def test_feast_search_on_a_retired_vintage_returns_each_id_with_its_distance_in_its_own_space(target, model_dirs):
    """retrieve_online_documents_v2 on the retired v1's view: Feast's online rows are v2's through the map, typed
    and HNSW-indexed like any view, so the top-k is exact search in v1's (translated) space, each id with its own
    cosine distance."""
    from star.store.feast_repo import open_store

    _retired_v1(target, model_dirs)
    with db.connect(target, autocommit=True) as conn:
        mapped = _mapped(conn, 1, 2)
    store = open_store(target)
    for query in sorted(mapped)[::37][:4]:
        got = store.retrieve_online_documents_v2(features=[f"{FAMILY}_v1:embedding"],
                                                 query=mapped[query].tolist(), top_k=8).to_dict()
        exact = [(query, 1.0)] + _exact(mapped, query, 7)
        assert sorted(got["member_id"]) == sorted(i for i, _ in exact)
        want = {i: 1 - c for i, c in exact}
        for i, d, e in zip(got["member_id"], got["distance"], got["embedding"]):
            assert d == pytest.approx(want[i], abs=1e-5)
            assert np.allclose(e, mapped[i], atol=1e-5)


def test_the_translated_copy_follows_new_rows_of_the_serving_vintage(target, model_dirs):
    _retired_v1(target, model_dirs)
    with db.connect(target) as conn:
        before = _translated(conn, 1)
        ids = sorted(before)
        untouched = dict(conn.execute(f"SELECT member_id, xmin::text FROM star.{FAMILY}_v1__translated"))
        # changed texts: 5 rewritten in place, 5 with a newer snapshot; one member new to the market
        conn.execute("UPDATE star.text_snapshots SET text = text || ' Also fluent in Esperanto.' WHERE entity = "
                     "'member' AND entity_id = ANY(%s)", (ids[:5],))
        conn.execute("INSERT INTO star.text_snapshots (entity, entity_id, valid_from, text) SELECT 'member', entity_id, "
                     "max(valid_from) + interval '1 day', 'Welder and pipe fitter, night shifts, Rotterdam.' "
                     "FROM star.text_snapshots WHERE entity = 'member' AND entity_id = ANY(%s) GROUP BY entity_id",
                     (ids[5:10],))
        conn.execute("INSERT INTO star.text_snapshots (entity, entity_id, valid_from, text) VALUES ('member', 777777, "
                     "now() - interval '1 day', 'Nurse, ICU, twelve years, Lyon.')")
        conn.commit()
    _embed(target, model_dirs[1])  # a continued embed of v2: only the changed texts
    with db.connect(target, autocommit=True) as conn:
        after = _translated(conn, 1)
        assert set(after) == set(before) | {777777}
        changed = {i for i in before if not np.allclose(before[i], after[i], atol=1e-6)}
        assert changed == set(ids[:10])
        assert _check_exact(conn, 1, 2) == 1.0
        near = [i for (i,) in conn.execute("SELECT id FROM star.nearest(%s, 1, 777777, 200)", (FAMILY,))]
        assert len(near) == MEMBERS and 777777 not in near
        assert 777777 in {i for (i,) in conn.execute("SELECT id FROM star.nearest(%s, 1, %s, 200)", (FAMILY, ids[20]))}
        # only the changed entities were written
        xmin = dict(conn.execute(f"SELECT member_id, xmin::text FROM star.{FAMILY}_v1__translated"))
        assert {i for i in untouched if xmin[i] != untouched[i]} == set(ids[:10])


def test_a_second_retire_repoints_the_translated_copy(target, model_dirs):
    _retired_v1(target, model_dirs)
    _embed(target, model_dirs[2])
    with db.connect(target) as conn:
        fit_map(conn, FAMILY, 3, 2)
        conn.commit()
    retire(target, FAMILY, 2)
    with db.connect(target, autocommit=True) as conn:
        assert _check_exact(conn, 1, 3) == 1.0  # v1 now through the composed map 3 -> 2 -> 1
        assert _check_exact(conn, 2, 3) == 1.0
        m31 = compat.load(conn, FAMILY, 3, 1)
        v3 = {i: np.array(e) for i, e in conn.execute(
            f"SELECT member_id, embedding::real[] FROM star.{FAMILY}_v3 WHERE is_current")}
        t1 = _translated(conn, 1)
        assert all(np.allclose(t1[i], m31.apply(v3[i]), atol=1e-4) for i in v3)
        left = conn.execute("SELECT relname FROM pg_class WHERE relname LIKE '%\\_\\_staging%'").fetchall()
        assert left == []


def _planned_retire(target, model_dirs) -> None:
    """Two vintages, map v2 -> v1 fitted, and v1's retire planned (its first step committed)."""
    seed_synthetic(target, members=80, jobs=20, seed=5, progress=False)
    for d in model_dirs[:2]:
        _embed(target, d)
    with db.connect(target) as conn:
        fit_map(conn, FAMILY, 2, 1)
        conn.commit()
        with conn.transaction():
            _plan(conn, FAMILY, 1, None, False)


def test_a_retire_killed_after_translating_serves_its_own_rows_until_finished(target, model_dirs):
    _planned_retire(target, model_dirs)
    _stage_translated(target, FAMILY, [1], 2, "member")  # killed before the flip
    with db.connect(target, autocommit=True) as conn:
        member = conn.execute(f"SELECT min(member_id) FROM star.{FAMILY}_v1").fetchone()[0]
        own = {i: np.array(e) for i, e in conn.execute(
            f"SELECT member_id, embedding::real[] FROM star.{FAMILY}_v1 WHERE is_current")}
        got = conn.execute("SELECT id, cosine FROM star.nearest(%s, 1, %s, 5)", (FAMILY, member)).fetchall()
        assert np.allclose([c for _, c in got], [c for _, c in _exact(own, member, 5)], atol=1e-5)  # its own rows
        assert conn.execute(f"SELECT to_regclass('star.{FAMILY}_v1__translated')").fetchone()[0] is None
    assert retire(target, FAMILY, 1)["status"] == "retired"  # the rerun builds it again and flips
    with db.connect(target, autocommit=True) as conn:
        assert _check_exact(conn, 1, 2) == 1.0
        assert conn.execute(f"SELECT to_regclass('star.{FAMILY}_v1__translated__staging')").fetchone()[0] is None


def test_migration_0006_builds_copies_for_vintages_retired_before_it(target, model_dirs):
    _retired_v1(target, model_dirs)
    db.downgrade(target, "0005")  # as retired by the previous release: no translated copy
    with db.connect(target, autocommit=True) as conn:
        assert conn.execute(f"SELECT to_regclass('star.{FAMILY}_v1__translated')").fetchone()[0] is None
        member = sorted(_mapped(conn, 1, 2))[0]
        old = conn.execute("SELECT id FROM star.nearest(%s, 1, %s, 5, 100)", (FAMILY, member)).fetchall()
    db.migrate(target)
    with db.connect(target, autocommit=True) as conn:
        assert _check_exact(conn, 1, 2) == 1.0
        assert conn.execute("SELECT id FROM star.nearest(%s, 1, %s, 5)", (FAMILY, member)).fetchall() == old
        # without its copy (dropped by hand) a retired vintage is still served: 0005's re-ranked candidates
        conn.execute(f"DROP TABLE star.{FAMILY}_v1__translated")
        again = conn.execute("SELECT id FROM star.nearest(%s, 1, %s, 5, 100)", (FAMILY, member)).fetchall()
        assert again == old


def test_a_search_that_waited_for_the_flip_answers_from_the_translated_copy(target, model_dirs):
    """A reader that looked the vintage up just before the flip committed, and then waited for its table, is not
    left scanning the new view through the map: it looks the vintage up again and searches the translated copy."""
    import threading
    import time

    from star.versions.retire import _flip, _pending

    _planned_retire(target, model_dirs)
    with db.connect(target) as conn:
        plan, deps = _pending(conn, FAMILY, 1)
        member = conn.execute(f"SELECT min(member_id) FROM star.{FAMILY}_v1").fetchone()[0]
    _stage_translated(target, FAMILY, [1], 2, "member")
    answer = {}

    def reader():
        with db.connect(target) as conn:
            conn.execute("SET LOCAL track_functions = 'all'")
            answer["rows"] = conn.execute("SELECT id, cosine FROM star.nearest(%s, 1, %s, 10)",
                                          (FAMILY, member)).fetchall()
            answer["mapped"] = conn.execute("SELECT coalesce(pg_stat_get_xact_function_calls("
                                            "'star.compat_apply(text, integer, integer, vector)'::regprocedure), 0)"
                                            ).fetchone()[0]

    flip = db.connect(target)
    try:
        _flip(flip, FAMILY, 1, plan, deps, "member")  # not committed yet
        thread = threading.Thread(target=reader)
        thread.start()
        with db.connect(target, autocommit=True) as watch:
            for _ in range(200):
                if watch.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
                                 "query LIKE '%%star.nearest%%'").fetchone()[0]:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the reader never waited for the flip")
        flip.commit()
        thread.join(30)
    finally:
        flip.close()
    with db.connect(target, autocommit=True) as conn:
        exact = _exact(_mapped(conn, 1, 2), member, 10)
    # at most its own vector through the map (read from the view before it saw the flip), never every row
    assert answer["mapped"] <= 1
    assert [i for i, _ in answer["rows"]] == [i for i, _ in exact]
