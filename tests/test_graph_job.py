"""The graph model's checkpoint, its later-window evaluation and the graph embedding job, on a real Postgres with
real Feast, DGL and (tiny) text models."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from star import db
from star.errors import ConfigError
from star.graph import checkpoint, evaluate, sampling
from star.graph.build import GraphConfig, build_graph
from star.graph.embed import GraphEmbedConfig, data_end, embed_graph
from star.graph.model import GNNConfig
from star.graph.train import GraphTrainConfig, embed_all, infer, train_gnn
from star.pipeline import apply_features, materialize, seed_synthetic
from star.store import embeddings as store
from star.store.catalog import published_views
from star.store.feast_repo import open_store
from star.text.config import TextModelConfig
from star.text.embed import EmbedConfig, embed_texts
from star.text.model import TextEncoder
from tests.text_models import one_thread, tiny_bert  # noqa: F401  (one_thread: autouse fixture)

SMALL = GNNConfig(hidden=16, out_dim=24, heads=2, id_dim=8, cat_dim=4)
FAST = GraphTrainConfig(epochs=1, batch_size=64, sampler="uniform", fanouts=(5, 5))


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    return TextEncoder(TextModelConfig(model_dir=tiny_bert(tmp_path_factory.mktemp("bert")), pooling="mean",
                                       precision="fp32"))


def _market(target, encoder=None):
    seed_synthetic(target, members=150, jobs=50, seed=3, progress=False)
    if encoder is not None:
        embed_texts(target, encoder, EmbedConfig(), progress=False)
    return data_end(target)


def _trained(target, tmp_path, cutoff):
    mg = build_graph(target, GraphConfig(cutoff=cutoff))
    result = train_gnn(mg, SMALL, FAST, progress=False)
    return mg, result, checkpoint.save(tmp_path / "model", result, mg, SMALL, FAST)


def test_checkpoint_round_trip_gives_the_same_embeddings(target, tmp_path):
    end = _market(target)
    mg, result, path = _trained(target, tmp_path, end)
    ckpt = checkpoint.load(path)
    model, features = checkpoint.adapt(ckpt, mg)
    again = infer(model, mg.graph, features)
    before = embed_all(result.model, mg)
    for nt in ("member", "job"):
        assert np.allclose(again[nt].numpy(), before[nt], atol=1e-6)
    (path / "weights.pt").write_bytes((path / "weights.pt").read_bytes()[:-10])
    with pytest.raises(checkpoint.GraphModelError, match="checksum"):
        checkpoint.load(path)
    with pytest.raises(checkpoint.GraphModelError, match="not a graph model directory"):
        checkpoint.load(tmp_path)


def test_checkpoints_keep_the_text_gates_and_load_those_written_before_the_gate(target, tmp_path, tiny_encoder):
    end = _market(target, tiny_encoder)
    mg = build_graph(target, GraphConfig(cutoff=end))
    for cfg in (SMALL, replace(SMALL, text_gate=False)):
        result = train_gnn(mg, cfg, FAST, progress=False)
        path = checkpoint.save(tmp_path / str(cfg.text_gate), result, mg, cfg, FAST)
        if not cfg.text_gate:  # a checkpoint written before the gate existed: its config lacks the new fields
            info = json.loads((path / checkpoint.INFO).read_text())
            del info["model"]["text_gate"], info["model"]["text_dropout"]
            (path / checkpoint.INFO).write_text(json.dumps(info))
        ckpt = checkpoint.load(path)
        assert ckpt.model_cfg.text_gate == cfg.text_gate
        assert ckpt.model.text_gates() == result.model.text_gates() == ckpt.info["metrics"]["text_gates_kept"]
        model, features = checkpoint.adapt(ckpt, mg)
        again, before = infer(model, mg.graph, features), embed_all(result.model, mg)
        assert all(np.allclose(again[nt].numpy(), before[nt], atol=1e-6) for nt in ("member", "job"))


def test_adapt_to_a_later_graph_keeps_learned_ids_and_recodes_categories(target, tmp_path):
    end = _market(target)
    early = end - pd.Timedelta(days=60)
    mg, _, path = _trained(target, tmp_path, early)
    ckpt = checkpoint.load(path)
    with db.connect(target) as conn:  # a later load reuses a relation name for other node types
        conn.execute("INSERT INTO star.attribute_edges (entity, entity_id, relation, node_type, node_id, "
                     "event_timestamp) SELECT 'member', member_id, 'posted_by', node_type, node_id, %s "
                     "FROM (SELECT member_id FROM star.members ORDER BY 1 LIMIT 5) m, "
                     "(SELECT node_type, node_id FROM star.attribute_edges WHERE relation = 'posted_by' LIMIT 1) a",
                     (end - pd.Timedelta(days=1),))
        conn.commit()
    later = build_graph(target, checkpoint.graph_config(ckpt, end))
    assert ("member", "posted_by", "company") not in later.graph.canonical_etypes
    assert len(later.node_ids["member"]) > len(mg.node_ids["member"])  # members joined after the training cutoff
    model, features = checkpoint.adapt(ckpt, later)
    for nt in model.input.ids:
        new_w, old_w = model.input.ids[nt].weight, ckpt.model.input.ids[nt].weight
        index = {k: i for i, k in enumerate(mg.node_ids[nt].tolist())}
        for row, node in enumerate(later.node_ids[nt].tolist()):
            expected = old_w[index[node]] if node in index else torch.zeros(old_w.shape[1])
            assert torch.equal(new_w[row], expected), (nt, node)
    # each member's categorical value means the same thing as at training, or 0 when the model never saw it
    codes, old_vocab = features["member"]["categorical"], ckpt.vocab["member"]
    raw, new_vocab = later.features["member"]["categorical"], later.categorical_vocab["member"]
    for j, column in enumerate(old_vocab):
        k = list(new_vocab).index(column)
        for row in range(len(codes)):
            value = new_vocab[column][raw[row, k] - 1] if raw[row, k] else None
            want = old_vocab[column].index(value) + 1 if value in old_vocab[column] else 0
            assert codes[row, j] == want
    z = infer(model, later.graph, features)
    assert z["member"].shape == (len(later.node_ids["member"]), SMALL.out_dim)


def test_window_pairs_and_cold_start_cohort(target):
    end = _market(target)
    cutoff = end - pd.Timedelta(days=20)
    mg = build_graph(target, GraphConfig(cutoff=cutoff))
    apply = ("member", "apply", "job")
    pairs = evaluate.window_pairs(target, mg, [apply], days=10)
    src, dst, neg = pairs["tasks"][apply]
    with db.connect(target) as conn:
        rows = conn.execute("SELECT member_id, job_id FROM star.interactions WHERE relation = 'apply' AND "
                            "event_timestamp > %s AND event_timestamp <= %s", (cutoff, cutoff + pd.Timedelta(days=10))
                            ).fetchall()
        counts = dict(conn.execute("SELECT member_id, count(*) FROM star.interactions WHERE event_timestamp <= %s "
                                   "GROUP BY 1", (cutoff,)).fetchall())
    known = [(m, j) for m, j in rows if m in mg.index["member"] and j in mg.index["job"]]
    got = sorted(zip(mg.node_ids["member"][src.numpy()].tolist(), mg.node_ids["job"][dst.numpy()].tolist()))
    assert got == sorted(known) and len(known) > 0
    assert neg.shape == (len(src), 5) and set(neg.flatten().tolist()) <= set(dst.tolist())  # jobs of the window
    assert not (neg == dst.unsqueeze(1)).any()  # never the positive's own job
    skewed = sampling.draw_negatives(np.array([0] * 95 + [1] * 5), np.zeros(200, np.int64), 3,
                                     np.random.default_rng(0))
    assert (skewed == 1).all()  # one job gets 95 % of the window: every negative is the other one
    assert (sampling.draw_negatives(np.array([4]), np.array([4, 4]), 2, np.random.default_rng(0)) == 4).all()
    cold = evaluate.cold_start_members(mg)
    for i, member in enumerate(mg.node_ids["member"].tolist()):
        assert bool(cold[i]) == (counts.get(member, 0) <= 1)


def test_an_evaluation_window_without_pairs_is_an_error_naming_the_options(target):
    """A cutoff at the data's end (e.g. moved there by a future time) evaluated on 0 pairs and exited 0."""
    end = _market(target)
    mg = build_graph(target, GraphConfig(cutoff=end))
    with pytest.raises(ConfigError, match=r"the evaluation window \(.*\] \(cutoff \+ 14 days\) has 0 pairs to "
                                          r"evaluate on: 0 apply interaction\(s\) in it.*Pass an earlier --cutoff "
                                          r"or a longer --eval-days"):
        evaluate.window_pairs(target, mg, [("member", "apply", "job")], days=14)


def test_ablation_reports_every_variant_with_lift_and_cold_start(target, tiny_encoder, tmp_path):
    end = _market(target, tiny_encoder)
    mg = build_graph(target, GraphConfig(cutoff=end - pd.Timedelta(days=14)))
    assert set(mg.text_versions) == {"member", "job"}
    report, trained = evaluate.ablation(target, mg, SMALL, FAST, days=14, progress=False)
    assert [r["variant"] for r in report["rows"]] == list(evaluate.VARIANTS)
    assert set(trained) == {"gnn_categorical", "gnn_text", "gnn_text_only"}
    assert trained["gnn_categorical"].model.input.inputs_of("member") == ["categorical", "id"]
    assert trained["gnn_text_only"].model.input.inputs_of("member") == ["text", "id"]
    base = report["rows"][0]["tasks"]["member:apply:job"]
    assert base["auc_lift"] == 0.0 and 0 <= base["auc"] <= 1 and base["pairs"] > 0
    for row in report["rows"]:
        m = row["tasks"]["member:apply:job"]
        assert m["auc_lift"] == pytest.approx(m["auc"] / base["auc"] - 1, abs=1e-4)
    png = evaluate.save_report(report, tmp_path)
    assert png.stat().st_size > 1000 and "| GNN + text |" in (tmp_path / "ablation.md").read_text()


def _versions(target):
    with db.connect(target) as conn:
        return conn.execute("SELECT family, version, status, dim FROM star.embedding_versions "
                            "WHERE config->>'kind' = 'graph_embedding' ORDER BY 1, 2").fetchall()


def test_embed_job_publishes_versions_feast_views_and_snapshots(target, tmp_path):
    end = _market(target)
    early = end - pd.Timedelta(days=30)
    mg, result, path = _trained(target, tmp_path, early)
    ckpt = checkpoint.load(path)
    out = embed_graph(target, ckpt, cutoff=early, progress=False)
    assert [(r["family"], r["version"], r["embedded"], r["new_version"]) for r in out] == [
        ("member_graph_embedding", 1, len(mg.node_ids["member"]), True),
        ("job_graph_embedding", 1, len(mg.node_ids["job"]), True)]
    assert _versions(target) == [("job_graph_embedding", 1, "published", 24),
                                 ("member_graph_embedding", 1, "published", 24)]
    expected = embed_all(result.model, mg)["member"]
    expected_job0 = embed_all(result.model, mg)["job"][0]
    with db.connect(target) as conn:
        stored = dict(conn.execute("SELECT member_id, embedding::real[] FROM star.member_graph_embedding_v1"))
        (config, metrics) = conn.execute("SELECT config, metrics FROM star.embedding_versions WHERE "
                                         "family = 'member_graph_embedding'").fetchone()
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'star'")}
    for i, member in enumerate(mg.node_ids["member"].tolist()):
        assert np.allclose(stored[member], expected[i], atol=1e-5)
    assert metrics["weights_sha256"] == ckpt.sha256 and metrics["train_cutoff"] == early.isoformat()
    assert config["kind"] == "graph_embedding" and "member_graph_embedding_v1_hnsw" in indexes

    again = embed_graph(target, ckpt, cutoff=early, progress=False)  # same model, same cutoff: nothing to do
    assert [r["embedded"] for r in again] == [0, 0]
    with db.connect(target) as conn:  # a late load: one more edge before the cutoff, no new member or job
        conn.execute("INSERT INTO star.interactions (member_id, job_id, relation, event_timestamp) VALUES "
                     "(%s, %s, 'apply', %s)", (int(mg.node_ids["member"][0]), int(mg.node_ids["job"][0]),
                                                 early - pd.Timedelta(hours=1)))
        conn.commit()
    redone = embed_graph(target, ckpt, cutoff=early, progress=False)  # the graph changed: the snapshot is redone
    assert [r["embedded"] for r in redone] == [len(mg.node_ids["member"]), len(mg.node_ids["job"])]
    now = build_graph(target, checkpoint.graph_config(ckpt, early))
    fresh = infer(*checkpoint.adapt(ckpt, now)[:1], now.graph, checkpoint.adapt(ckpt, now)[1])["job"]
    with db.connect(target) as conn:
        stored = dict(conn.execute("SELECT job_id, embedding::real[] FROM star.job_graph_embedding_v1"))
    assert np.allclose(stored[int(now.node_ids["job"][0])], fresh[0].numpy(), atol=1e-5)
    assert not np.allclose(fresh[0].numpy(), expected_job0, atol=1e-5)  # and the edge did move it

    later = embed_graph(target, ckpt, cutoff=end, progress=False)  # a refresh: a new snapshot, same version
    assert [r["version"] for r in later] == [1, 1] and later[0]["unseen_in_training"] > 0
    with db.connect(target) as conn:
        snaps = conn.execute("SELECT count(DISTINCT event_timestamp), count(*) FILTER (WHERE is_current), "
                             "count(DISTINCT member_id) FROM star.member_graph_embedding_v1").fetchone()
    assert snaps[0] == 2 and snaps[1] == snaps[2]  # one current row per member: the newest snapshot

    apply_features(target)
    materialize(target, feature_views=["member_graph_embedding_v1"])
    member = int(mg.node_ids["member"][0])
    online = open_store(target).get_online_features(features=["member_graph_embedding_v1:embedding"],
                                                    entity_rows=[{"member_id": member}]).to_dict()
    with db.connect(target) as conn:
        (current,) = conn.execute("SELECT embedding::real[] FROM star.member_graph_embedding_v1 WHERE member_id = %s "
                                  "AND is_current", (member,)).fetchone()
    assert np.allclose(online["embedding"][0], current, atol=1e-6)


def test_a_crashed_embed_run_publishes_nothing_and_the_next_run_finishes(target, tmp_path, monkeypatch):
    end = _market(target)
    _, _, path = _trained(target, tmp_path, end)
    ckpt = checkpoint.load(path)
    real_stage, calls = store.stage, []

    def crash_after_one_batch(conn, v, batch, emb):
        if calls:
            raise RuntimeError("killed")
        calls.append(len(batch))
        real_stage(conn, v, batch, emb)

    monkeypatch.setattr(store, "stage", crash_after_one_batch)
    with pytest.raises(RuntimeError, match="killed"):
        embed_graph(target, ckpt, cutoff=end, cfg=GraphEmbedConfig(commit_every=40), progress=False)
    assert _versions(target) == [("member_graph_embedding", 1, "building", 24)]
    with db.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM star.member_graph_embedding_v1").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM star.member_graph_embedding_v1__staging").fetchone()[0] == 40
        assert not [s for s in published_views(conn) if "graph" in s.family]
    monkeypatch.setattr(store, "stage", real_stage)
    out = embed_graph(target, ckpt, cutoff=end, cfg=GraphEmbedConfig(commit_every=40), progress=False)
    assert [r["new_version"] for r in out] == [False, True]
    assert [s for s, *_ in _versions(target)] == ["job_graph_embedding", "member_graph_embedding"]
    assert {st for _, _, st, _ in _versions(target)} == {"published"}
    with db.connect(target) as conn:
        n = conn.execute("SELECT count(*) FROM star.member_graph_embedding_v1").fetchone()[0]
        assert n == out[0]["entities"]
        assert conn.execute("SELECT to_regclass('star.member_graph_embedding_v1__staging')").fetchone()[0] is None


def test_pipeline_train_then_embed_records_lineage(target, tiny_encoder, tmp_path, monkeypatch):
    from star.config import Settings
    from star.pipeline import graph_embed, graph_train

    monkeypatch.setenv("STAR_HOME", str(tmp_path / "home"))
    settings = Settings.from_env()
    _market(target, tiny_encoder)
    trained = graph_train(target, eval_days=14, model_cfg=SMALL, train_cfg=FAST, settings=settings, progress=False)
    assert set(trained["later_window"]) == {"gnn_text", "gnn_categorical", "text_cosine"}
    assert trained["text_versions"] == {"member": 1, "job": 1}
    # the kept variant is the one that validated better; leaving text out is said
    assert (trained["variant"] == "gnn_categorical") == ("text_left_out" in trained)
    embedded = graph_embed(target, settings=settings, progress=False)
    assert embedded["model"] == trained["model"]
    assert embedded["materialized"] == ["member_graph_embedding_v1", "job_graph_embedding_v1"]
    with db.connect(target) as conn:
        (metrics,) = conn.execute("SELECT metrics FROM star.embedding_versions WHERE "
                                  "family = 'job_graph_embedding'").fetchone()
    assert metrics["text_versions"] == {"member": 1, "job": 1}
    assert metrics["evaluation"]["rows"][0]["variant"] == "gnn_text"
    assert json.loads((tmp_path / "home" / "models" / "graph").glob("*/ablation.json").__next__().read_text())
    # the next model through the CLI path with --align: mapped into v1, the map stored by the embed job
    aligned = graph_train(target, eval_days=14, model_cfg=SMALL, train_cfg=replace(FAST, seed=1), align=True,
                          settings=settings, progress=False)
    assert aligned["align"]["member"]["to_version"] == 1 and aligned["align"]["job"]["through"] == [1]
    second = graph_embed(target, settings=settings, progress=False)
    assert [f["version"] for f in second["families"]] == [2, 2]
    assert second["families"][0]["compat_map"]["to_version"] == 1


def test_graph_train_keeps_the_categorical_gnn_when_text_validates_worse():
    from types import SimpleNamespace

    def run(auc):
        return SimpleNamespace(metrics={"best_mean_val_auc": auc})

    assert evaluate.keep_variant({"gnn_text": run(0.70), "gnn_categorical": run(0.68)}, "gnn_text") == "gnn_text"
    assert evaluate.keep_variant({"gnn_text": run(0.66), "gnn_categorical": run(0.68)}, "gnn_text") == \
        "gnn_categorical"
    assert evaluate.keep_variant({"gnn_text": run(None), "gnn_categorical": run(0.6)}, "gnn_text") == "gnn_categorical"
    assert evaluate.keep_variant({"gnn_categorical": run(0.6)}, "gnn_categorical") == "gnn_categorical"
