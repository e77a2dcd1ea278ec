"""Compatibility maps between embedding vintages: fit, metrics, compose, chain_path, and a Postgres round trip."""

from __future__ import annotations

import numpy as np
import pytest

from star import db
from star.versions.compat import CompatError, CompatMap, chain_path, compose, fit, load, metrics, store, stored_pairs

FAMILY = "member_text_embedding"


def _unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _linear(n, d_in, d_out, seed=0, noise=0.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d_in))
    a, b = rng.normal(size=(d_out, d_in)), rng.normal(size=d_out)
    return x, x @ a.T + b + noise * rng.normal(size=(n, d_out)), a, b


def _fit(x, y, **kw):
    return fit(x, y, family=FAMILY, from_version=kw.pop("frm", 2), to_version=kw.pop("to", 1), **kw)


def test_exact_linear_map_is_recovered():
    x, y, a, b = _linear(300, 24, 16)
    m = _fit(x, y, ridge=1e-9)
    assert m.matrix.shape == (16, 24) and m.path == (2, 1)
    np.testing.assert_allclose(m.matrix, a, atol=1e-6)
    np.testing.assert_allclose(m.bias, b, atol=1e-6)
    held = m.metrics["heldout"]
    assert held["r2"] > 0.999999 and held["cos_mean"] == pytest.approx(1, abs=1e-6) and held["n"] == 60
    assert m.metrics["holdout_rows"] == 60 and m.metrics["shared"] == 300 and m.metrics["no_map_cos_mean"] is None
    assert (m.metrics["from_dim"], m.metrics["to_dim"]) == (24, 16)


def test_noisy_rotation_maps_back_and_beats_no_map():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(32, 32)))
    y = _unit(rng.normal(size=(1500, 32)))
    x = _unit(y @ q.T + 0.03 * rng.normal(size=y.shape))
    m = _fit(x, y)
    assert m.metrics["heldout"]["cos_mean"] > 0.97
    assert m.metrics["no_map_cos_mean"] < 0.3  # a rotation: without a map the two spaces barely agree
    assert m.metrics["heldout"]["cos_p5"] <= m.metrics["heldout"]["cos_mean"]


def test_a_mild_drift_on_few_rows_is_served_by_the_identity_not_an_overfitted_map():
    rng = np.random.default_rng(2)
    y = _unit(rng.normal(size=(80, 64)))
    x = _unit(y + 0.02 * rng.normal(size=y.shape))  # 64 x 64 (+ bias) unknowns from 64 training rows
    m = _fit(x, y)
    assert m.metrics["method"] == "identity" and np.array_equal(m.matrix, np.eye(64)) and m.bias is None
    assert m.metrics["heldout"]["cos_mean"] >= m.metrics["ridge_heldout"]["cos_mean"]
    assert np.allclose(m.apply(x), x)
    rotated = _fit(_unit(y @ np.linalg.qr(rng.normal(size=(64, 64)))[0].T), y)  # beyond no map: ridge
    assert rotated.metrics["method"] == "ridge"


def test_stored_matrix_uses_all_rows_and_heldout_measures_unseen_rows():
    x, y, _, _ = _linear(70, 48, 20, noise=1.0)  # few rows per dim: the fit overfits the rows it sees
    split, whole = _fit(x, y, holdout=0.2, seed=3), _fit(x, y, holdout=0)
    np.testing.assert_allclose(split.matrix, whole.matrix)  # refit on all rows, whatever the split
    assert split.metrics["heldout"]["r2"] < split.metrics["train"]["r2"] - 0.05
    assert whole.metrics["heldout"] is None and whole.metrics["holdout_rows"] == 0  # in-sample is not held out


def test_in_sample_metrics_are_never_read_as_the_maps_quality():
    """--holdout 0 reported in-sample metrics (0.9995) as held-out (a real 0.903), and retire trusted them."""
    from star.versions.gate import check_alignment
    from star.versions.lifecycle import _map_cos

    x, y, _, _ = _linear(70, 48, 20, noise=1.0)
    whole, split = _fit(x, y, holdout=0), _fit(x, y, holdout=0.2)
    assert _map_cos(whole) is None and not check_alignment(whole)["passed"]
    assert _map_cos(split) == round(split.metrics["heldout"]["cos_mean"], 4)
    stored_before = CompatMap(family="fam", from_version=2, to_version=1, matrix=whole.matrix,  # as stored before
                              metrics={**whole.metrics, "heldout": whole.metrics["train"]})  # the fix
    assert _map_cos(stored_before) is None


def test_different_dims_apply_shapes_and_normalize():
    x, y, _, _ = _linear(200, 48, 20, noise=0.1)
    m = _fit(x, y)
    assert m.apply(x).shape == (200, 20) and m.apply(x[0]).shape == (20,)
    np.testing.assert_allclose(m.apply(x[0]), m.apply(x[:1])[0])
    assert not np.allclose(np.linalg.norm(m.apply(x), axis=1), 1)  # not re-normalised by default
    np.testing.assert_allclose(np.linalg.norm(m.apply(x, normalize=True), axis=1), 1)
    with pytest.raises(CompatError, match="maps 48-d vectors; got shape"):
        m.apply(np.ones((3, 20)))


def test_metrics_values():
    y = np.random.default_rng(0).normal(size=(100, 8))
    same = metrics(y, y)
    assert same == {"r2": 1.0, "cos_mean": 1.0, "cos_p5": 1.0, "cos_min": 1.0, "l2_mean": 0.0, "n": 100}
    flipped = metrics(-y, y)
    assert flipped["cos_mean"] == -1.0 and flipped["r2"] < 0


def test_compose_equals_applying_one_after_the_other():
    x3, x2, _, _ = _linear(200, 24, 16, seed=1, noise=0.1)
    x1 = x2 @ np.random.default_rng(5).normal(size=(16, 12)) + 3.0
    m32 = _fit(x3, x2, frm=3, to=2)
    m21 = _fit(x2, x1, frm=2, to=1)
    c = compose([m32, m21])
    assert c.path == (3, 1) and c.matrix.shape == (12, 24)
    assert c.metrics == {"chained": [[3, 2], [2, 1]], "composed": True}
    np.testing.assert_allclose(c.apply(x3), m21.apply(m32.apply(x3)))
    nob = CompatMap(family=FAMILY, from_version=2, to_version=1, matrix=m21.matrix)
    np.testing.assert_allclose(compose([m32, nob]).apply(x3), nob.apply(m32.apply(x3)))
    with pytest.raises(CompatError, match=r"v3->v2 .* followed by .* v3->v2"):
        compose([m32, m32])
    with pytest.raises(CompatError, match="got no maps"):
        compose([])


def test_chain_path():
    assert chain_path([(3, 2), (2, 1)], 3, 1) == [(3, 2), (2, 1)]
    assert chain_path([(3, 2), (2, 1), (3, 1)], 3, 1) == [(3, 1)]
    assert chain_path([(4, 3), (3, 2), (2, 1), (1, 2)], 4, 1) == [(4, 3), (3, 2), (2, 1)]
    assert chain_path([(2, 1)], 2, 2) == []
    with pytest.raises(CompatError, match=r"no compat path from v3 to v1 in fam: stored maps are \[\(3, 2\)\]; "
                                          r"fit the missing map with `star compat fit fam --from 2 --to 1`"):
        chain_path([(3, 2)], 3, 1, family="fam")


@pytest.mark.parametrize("x, y, kw, match", [
    (np.ones((60, 4)), np.ones((59, 4)), {}, "one row per shared entity"),
    (np.ones((10, 4)), np.ones((10, 4)), {}, r"only 10 shared rows, min_shared=50.*≥ 2k shared entities"),
    (np.full((60, 4), np.nan), np.ones((60, 4)), {}, "x_new has 60 and y_old 0 rows with NaN or inf"),
    (np.ones((60, 4)), np.ones((60, 4)), {"ridge": -1.0}, r"ridge=-1.0; expected ridge >= 0"),
    (np.ones((60, 4)), np.ones((60, 4)), {"holdout": 1.0}, r"holdout=1.0; expected a fraction in \[0, 1\)"),
])
def test_fit_errors(x, y, kw, match):
    with pytest.raises(CompatError, match=match):
        _fit(x, y, **kw)


VERSION = ("INSERT INTO star.embedding_versions (family, version, entity, dim, status, feature_view, config) "
           "VALUES (%s, %s, 'member', %s, 'published', %s, '{\"kind\": \"text_embedding\"}')")


def test_store_load_round_trip(target):
    x, y, _, _ = _linear(120, 24, 16, noise=0.1)
    m = _fit(x, y)
    with db.connect(target) as conn:
        with conn.transaction():
            for v, dim in ((1, 16), (2, 24)):
                conn.execute(VERSION, (FAMILY, v, dim, f"{FAMILY}_v{v}"))
            store(conn, m)
        back = load(conn, FAMILY, 2, 1)
        np.testing.assert_array_equal(back.matrix, m.matrix)
        np.testing.assert_array_equal(back.bias, m.bias)
        assert back.metrics == m.metrics and back.path == (2, 1)
        assert stored_pairs(conn, FAMILY) == [(2, 1)] and stored_pairs(conn, "other") == []

        refit = CompatMap(family=FAMILY, from_version=2, to_version=1, matrix=m.matrix * 2, metrics={"v": 2})
        with conn.transaction():
            store(conn, refit)  # upsert: same key, new matrix, bias now NULL
        again = load(conn, FAMILY, 2, 1)
        np.testing.assert_array_equal(again.matrix, m.matrix * 2)
        assert again.bias is None and again.metrics == {"v": 2} and stored_pairs(conn, FAMILY) == [(2, 1)]

        with pytest.raises(CompatError, match=r"no compat map .* v1->v2: stored maps for .* are \[\(2, 1\)\]"):
            load(conn, FAMILY, 1, 2)
        with pytest.raises(CompatError, match="v3 is not in star.embedding_versions"):
            store(conn, CompatMap(family=FAMILY, from_version=3, to_version=1, matrix=np.zeros((16, 24))))
        with pytest.raises(CompatError, match="16-d on the v2 side but v2 holds 24-d"):
            store(conn, CompatMap(family=FAMILY, from_version=2, to_version=1, matrix=np.zeros((16, 16))))
