"""Vintage lifecycle on a real Postgres + pgvector with real Feast: a retired vintage keeps being served, online,
historically and in SQL, through its compatibility map."""

from __future__ import annotations

import numpy as np
import pandas as pd
import psycopg
import pytest

from star import db
from star.errors import VersionError
from star.pipeline import apply_features, materialize, seed_synthetic
from star.store.feast_repo import open_store
from star.text.config import TextModelConfig
from star.text.embed import EmbedConfig, embed_texts
from star.text.model import TextEncoder
from star.versions import compat
from star.versions.lifecycle import fit_map, list_versions, register_consumer, shared_vectors, show
from star.versions.retire import retire
from tests.text_models import one_thread, tiny_bert  # noqa: F401  (one_thread: autouse fixture)

FAMILY = "member_text_embedding"


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """Two tiny random BERTs: two vintages in unrelated 32-d spaces (the map between them is a real fit)."""
    return [TextEncoder(TextModelConfig(model_dir=tiny_bert(tmp_path_factory.mktemp(f"b{seed}"), seed=seed),
                                        pooling="mean", precision="fp32")) for seed in (0, 1)]


def _two_vintages(target, encoders):
    seed_synthetic(target, members=150, jobs=50, seed=5, progress=False)
    for enc in encoders:
        embed_texts(target, enc, EmbedConfig(), progress=False)
    apply_features(target)
    materialize(target, feature_views=[f"{FAMILY}_v1", f"{FAMILY}_v2"])


def _current(target, version):
    with db.connect(target) as conn:
        return {i: np.array(e, dtype=np.float64) for i, e in conn.execute(
            f"SELECT member_id, embedding::real[] FROM star.{FAMILY}_v{version} WHERE is_current")}


def test_a_retired_vintage_is_served_online_historically_and_in_sql(target, encoders):
    _two_vintages(target, encoders)
    v2 = _current(target, 2)
    with db.connect(target) as conn:
        m = fit_map(conn, FAMILY, 2, 1, holdout=0.2)
        register_consumer(conn, FAMILY, 1, "ranker_a")
        conn.commit()
        before = show(conn, FAMILY, 1)
    assert [c["consumer"] for c in before["consumers"]] == ["ranker_a"] and "v2->v1" in before["compat"]
    assert m.metrics["shared"] == len(v2)

    out = retire(target, FAMILY, 1)
    assert out["served_from"] == 2 and out["consumers"] == 1
    assert out["map_cos_mean"] == round(m.metrics["heldout"]["cos_mean"], 4) and "warning" not in out
    with db.connect(target) as conn:
        # its rows are gone: the name is now a view over v2 through the map (no rows, no index of its own)
        assert conn.execute(f"SELECT relkind FROM pg_class WHERE oid = to_regclass('star.{FAMILY}_v1')"
                            ).fetchone()[0] == "v"
        status = {r["version"]: (r["status"], r["served_from"]) for r in list_versions(conn, FAMILY)}
    assert status == {1: ("retired", 2), 2: ("published", None)}

    member = sorted(v2)[3]
    expected = m.apply(v2[member])
    store = open_store(target)
    online = store.get_online_features(features=[f"{FAMILY}_v1:embedding"],
                                       entity_rows=[{"member_id": member}]).to_dict()["embedding"][0]
    assert len(online) == 32 and np.allclose(online, expected, atol=1e-4)

    with db.connect(target) as conn:
        (ts,) = conn.execute(f"SELECT event_timestamp FROM star.{FAMILY}_v2 WHERE member_id = %s AND is_current",
                             (member,)).fetchone()
    entity_df = pd.DataFrame({"member_id": [member], "event_timestamp": [pd.Timestamp(ts) + pd.Timedelta(days=1)]})
    hist = store.get_historical_features(entity_df=entity_df, features=[f"{FAMILY}_v1:embedding"]).to_df()
    assert np.allclose(np.asarray(hist["embedding"].iloc[0], dtype=np.float64), expected, atol=1e-4)

    translated = {i: m.apply(e) for i, e in v2.items()}
    q = translated[member] / np.linalg.norm(translated[member])
    brute = sorted(((float(q @ (e / np.linalg.norm(e))), i) for i, e in translated.items() if i != member),
                   reverse=True)[:5]
    with db.connect(target) as conn:
        got = conn.execute("SELECT id, cosine FROM star.nearest(%s, 1, %s, 5, 100)", (FAMILY, member)).fetchall()
        native = conn.execute("SELECT id FROM star.nearest(%s, 2, %s, 5)", (FAMILY, member)).fetchall()
        with pytest.raises(psycopg.errors.RaiseException, match=r"no servable vintage 9; available: "
                                                                r"v1 \(retired\), v2 \(published\)"):
            conn.execute("SELECT * FROM star.nearest(%s, 9, %s, 5)", (FAMILY, member))
    assert [i for i, _ in got] == [i for _, i in brute]  # oversample covers every member: exact
    assert np.allclose([c for _, c in got], [c for c, _ in brute], atol=1e-4)
    assert len(native) == 5 and member not in [i for (i,) in native]
    with db.connect(target) as conn:  # beyond pgvector's ef_search range (1000): still k rows, in order
        wide = [conn.execute("SELECT cosine FROM star.nearest(%s, %s, %s, %s)", (FAMILY, v, member, k)).fetchall()
                for v, k in ((1, 101), (2, 1001), (1, 140))]
        with pytest.raises(psycopg.errors.RaiseException, match="k = 0 and oversample = 10 must both be >= 1"):
            conn.execute("SELECT * FROM star.nearest(%s, 2, %s, 0)", (FAMILY, member))
    assert [len(w) for w in wide] == [101, len(v2) - 1, 140]
    assert all(np.all(np.diff([c for (c,) in w]) <= 1e-9) for w in wide)


def test_retiring_without_a_map_or_a_successor_fails_and_changes_nothing(target, encoders):
    _two_vintages(target, encoders)
    with pytest.raises(compat.CompatError, match="fit the missing map with `star compat fit "
                                                 "member_text_embedding --from 2 --to 1`"):
        retire(target, FAMILY, 1)
    with db.connect(target) as conn:
        assert conn.execute(f"SELECT to_regclass('star.{FAMILY}_v1')").fetchone()[0] is not None
        assert [r["status"] for r in list_versions(conn, FAMILY)] == ["published", "published"]
        _, xs, ys = shared_vectors(conn, FAMILY, 2, 1, "member")  # a poor map: fitted to noise
        noise = np.random.default_rng(0).normal(size=ys.shape)
        poor = compat.fit(xs, noise, family=FAMILY, from_version=2, to_version=1)
        compat.store(conn, poor)
        conn.commit()
    out = retire(target, FAMILY, 1)
    assert out["map_cos_mean"] < 0.97 and "the publish gate's default" in out["warning"]
    with pytest.raises(VersionError, match="only published vintage"):
        retire(target, FAMILY, 2)
    with pytest.raises(VersionError, match="no vintage 7; available: v1 \\(retired\\), v2 \\(published\\)"):
        retire(target, FAMILY, 7)
    retire(target, FAMILY, 1)  # again: already retired, nothing breaks
    with pytest.raises(VersionError, match="member_text_embedding_v1 is retired: its rows are gone"):
        embed_texts(target, encoders[0], EmbedConfig(entities=("member",), version=1), progress=False)
    with db.connect(target) as conn:
        assert [r["status"] for r in list_versions(conn, FAMILY)] == ["retired", "published"]


def test_a_chained_map_is_checked_against_a_direct_fit(target, encoders):
    _two_vintages(target, encoders)
    third = TextEncoder(TextModelConfig(model_dir=encoders[0].cfg.model_dir, pooling="mean", precision="fp32",
                                        max_length={"member": 384, "job": 384, "resume": 384}))
    embed_texts(target, third, EmbedConfig(), progress=False)
    with db.connect(target) as conn:
        fit_map(conn, FAMILY, 3, 2)
        fit_map(conn, FAMILY, 2, 1)
        conn.commit()
    assert retire(target, FAMILY, 1, source=3)["served_from"] == 3
    with db.connect(target) as conn:
        check = compat.load(conn, FAMILY, 3, 1).metrics["chain_check"]
    assert check["chained"] == [[3, 2], [2, 1]]
    # v3 and v1 come from the same weights: a direct fit is near exact; the chain through the unrelated v2 is not
    assert check["direct_cos_mean"] > 0.99
    assert check["served_by"] == ("direct" if check["chained_cos_mean"] < check["direct_cos_mean"] - 0.01
                                  else "chain")


def test_retiring_the_vintage_that_serves_a_retired_one_moves_it_along_the_chain(target, encoders):
    _two_vintages(target, encoders)
    third = TextEncoder(TextModelConfig(model_dir=encoders[0].cfg.model_dir, pooling="mean", precision="fp32",
                                        max_length={"member": 384, "job": 384, "resume": 384}))
    with db.connect(target) as conn:
        m21 = fit_map(conn, FAMILY, 2, 1)
        conn.commit()
    retire(target, FAMILY, 1)
    embed_texts(target, third, EmbedConfig(), progress=False)
    with db.connect(target) as conn:
        m32 = fit_map(conn, FAMILY, 3, 2)
        conn.commit()
    v3 = _current(target, 3)
    retire(target, FAMILY, 2)
    with db.connect(target) as conn:
        status = {r["version"]: (r["status"], r["served_from"]) for r in list_versions(conn, FAMILY)}
        assert conn.execute(f"SELECT relkind FROM pg_class WHERE oid = to_regclass('star.{FAMILY}_v2')"
                            ).fetchone()[0] == "v"
        got = conn.execute("SELECT id FROM star.nearest(%s, 1, %s, 5)", (FAMILY, sorted(v3)[0])).fetchall()
    assert status == {1: ("retired", 3), 2: ("retired", 3), 3: ("published", None)}
    assert len(got) == 5

    member = sorted(v3)[3]
    store = open_store(target)
    online = store.get_online_features(features=[f"{FAMILY}_v1:embedding", f"{FAMILY}_v2:embedding"],
                                       entity_rows=[{"member_id": member}], full_feature_names=True).to_dict()
    assert np.allclose(online[f"{FAMILY}_v2__embedding"][0], m32.apply(v3[member]), atol=1e-4)
    assert np.allclose(online[f"{FAMILY}_v1__embedding"][0], m21.apply(m32.apply(v3[member])), atol=1e-4)
    retire(target, FAMILY, 2)  # again: nothing breaks, v1 still served through both maps
    online = store.get_online_features(features=[f"{FAMILY}_v1:embedding"], entity_rows=[{"member_id": member}]
                                       ).to_dict()
    assert np.allclose(online["embedding"][0], m21.apply(m32.apply(v3[member])), atol=1e-4)
