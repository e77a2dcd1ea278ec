"""`star graph train --workers N`: DDP training in N real processes (torch.distributed, gloo) on a real Postgres
market; the checkpoint `star graph embed` reads, validation AUC next to the one-process run, the sampler's decisions
on every rank, and a worker that really dies (os._exit in the spawned process, not a mock)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from star import db
from star.errors import ConfigError
from star.graph import checkpoint, evaluate
from star.graph.build import GraphConfig, build_graph
from star.graph.distributed import EXIT_HOOK, GraphTrainError, fit
from star.graph.embed import data_end
from star.graph.model import GNNConfig
from star.graph.train import GraphTrainConfig, train_gnn
from star.pipeline import seed_synthetic
from tests.text_models import one_thread  # noqa: F401  (autouse fixture)

SMALL = GNNConfig(hidden=16, out_dim=24, heads=2, id_dim=8, cat_dim=4)
# adaptive sampler from (2, 2): its fanouts grow when the val AUC plateaus, a decision rank 0 makes for all ranks
TRAIN = GraphTrainConfig(epochs=4, batch_size=64, adaptive_start=(2, 2), adaptive_max=(8, 8))
# the ddp run's best val AUC may differ from the one-process run's by this much, or by twice the spread between
# two one-process seeds if larger: the shard order changes the SGD path as a seed does; the floor is the standard
# error of an AUC on this market's ~100 validation pairs, sqrt(0.25 / 100) = 0.05, times 1.5
FLOOR = 0.075


def _settings(tmp_path, monkeypatch):
    from star.config import Settings

    monkeypatch.setenv("STAR_HOME", str(tmp_path / "home"))
    return Settings.from_env()


def _market(target):
    seed_synthetic(target, members=150, jobs=50, seed=3, progress=False)  # no text: one variant, gnn_categorical


def test_two_workers_train_the_model_graph_embed_publishes_within_seed_noise(target, tmp_path, monkeypatch):
    from star.pipeline import graph_embed, graph_train

    settings = _settings(tmp_path, monkeypatch)
    _market(target)
    trained = graph_train(target, model_cfg=SMALL, train_cfg=TRAIN, settings=settings, progress=False, workers=2)
    ckpt = checkpoint.load(trained["model"])  # the one reader, the same format
    metrics = ckpt.info["metrics"]
    assert (metrics["engine"], metrics["workers"], trained["workers"]) == ("ddp", 2, 2)
    assert metrics["rank_fanouts"] == [metrics["fanouts"]] * 2  # every rank sampled with rank 0's fanouts
    embedded = graph_embed(target, settings=settings, progress=False)
    assert embedded["model"] == trained["model"]
    with db.connect(target) as conn:
        (lineage,) = conn.execute("SELECT metrics FROM star.embedding_versions WHERE "
                                  "family = 'member_graph_embedding'").fetchone()
    assert (lineage["train"]["engine"], lineage["train"]["workers"]) == ("ddp", 2)
    # val AUC of the same variant on the same graph in one process, two seeds: the noise floor
    mg = build_graph(target, GraphConfig(cutoff=ckpt.info["cutoff"]))
    variant = replace(SMALL, **evaluate.VARIANTS[trained["variant"]])
    one = [train_gnn(mg, variant, replace(TRAIN, seed=s), progress=False).metrics for s in (0, 1)]
    assert one[0]["engine"] == "local" and one[0]["workers"] == 1
    auc = [m["best_mean_val_auc"] for m in one]
    tolerance = max(FLOOR, 2 * abs(auc[0] - auc[1]))
    assert abs(trained["val_auc"] - auc[0]) <= tolerance, (trained["val_auc"], auc, tolerance)
    assert metrics["steps"] == one[0]["steps"][:len(metrics["steps"])]  # same steps: the global batch is kept


def test_a_worker_that_dies_ends_in_one_error_and_writes_no_model(target, tmp_path, monkeypatch):
    from star.pipeline import graph_train

    settings = _settings(tmp_path, monkeypatch)
    _market(target)
    monkeypatch.setenv(EXIT_HOOK, "1:3")  # rank 1 exits for real before its third step
    with pytest.raises(GraphTrainError) as err:
        graph_train(target, model_cfg=SMALL, train_cfg=TRAIN, settings=settings, progress=False, workers=2)
    message = str(err.value)
    assert "worker rank 1 died (exit code 17)" in message and "No model was written" in message
    assert "--workers 1" in message
    assert not settings.graph_models.exists() or not any(settings.graph_models.iterdir())


def test_rank_0_decides_fanout_growth_and_early_stop_for_every_rank(target):
    _market(target)
    mg = build_graph(target, GraphConfig(cutoff=data_end(target)))
    # at lr 1e-7 the val AUC plateaus at once: the fanouts grow each epoch to their maximum, then patience stops it
    result = fit(mg, SMALL, replace(TRAIN, lr=1e-7, text_gate_lr=1e-7, epochs=6, patience=1),
                 progress=False, workers=2)
    m = result.metrics
    assert m["fanouts"][:4] == [[2, 2], [2, 2], [4, 4], [8, 8]], m["fanouts"]  # grown after epochs 2 and 3
    assert m["stopped_early"] < 6
    assert m["rank_fanouts"] == [m["fanouts"]] * 2  # same growth and the same last epoch on both ranks


def test_bad_worker_counts_and_bad_input_are_clear_errors(target):
    _market(target)
    mg = build_graph(target, GraphConfig(cutoff=data_end(target)))
    with pytest.raises(ConfigError, match="workers"):
        fit(mg, SMALL, TRAIN, progress=False, workers=0)
    # an input error is raised once, in the calling process, with the one-process message (no worker starts)
    with pytest.raises(ConfigError, match="not member -> job relations"):
        fit(mg, SMALL, replace(TRAIN, tasks=(("member", "nope", "job"),)), progress=False, workers=2)
