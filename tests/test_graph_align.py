"""BC-Aligner-style joint training (model: star.graph.aligner, job: star.graph.align): the loss, point-in-time
targets from the old models, the map stored with the new vintage, chains through earlier maps, on a real Postgres
with real DGL models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from star import db
from star.errors import ConfigError
from star.graph import align, aligner, checkpoint
from star.graph.build import GraphConfig, build_graph
from star.graph.embed import data_end, embed_graph
from star.graph.model import GNNConfig
from star.graph.train import GraphTrainConfig, infer, train_gnn
from star.pipeline import seed_synthetic
from star.versions import compat
from star.versions.lifecycle import current_vectors, fit_map
from tests.text_models import one_thread  # noqa: F401  (autouse fixture)

SMALL = GNNConfig(hidden=16, out_dim=24, heads=2, id_dim=8, cat_dim=4)
FAST = GraphTrainConfig(epochs=3, batch_size=64, sampler="uniform", fanouts=(5, 5), align_weight=5.0)


def test_loss_is_the_squared_error_through_every_earlier_map():
    a = aligner.Aligner(2, {"member": 2})
    with torch.no_grad():
        a.maps["member"].weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
        a.maps["member"].bias.zero_()
    z = {"member": torch.tensor([[1.0, 0.0], [0.0, 1.0]])}
    z1 = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]])  # node 0 lacks a v1 vector (mask False)
    c = torch.tensor([[0.0, 1.0]])  # v1 -> v0: second coordinate, + 1
    z0 = torch.tensor([[0.0], [3.0], [5.0]])
    t = aligner.AlignTarget(family="member_graph_embedding", to_version=1, to_dim=2, steps=[
        (1, None, None, z1, torch.tensor([False, True, True])),
        (0, c, torch.tensor([1.0]), z0, torch.tensor([True, True, True]))])
    nids = {"member": torch.tensor([1, 2])}
    # mapped: [2, 0], [0, 1]; v1 error: |[2,0]-[2,0]|^2 = 0, |[0,1]-[0,1]|^2 = 0 -> 0
    # v0: C mapped + 1 = [1], [2] vs [3], [5] -> (4 + 9) / 2
    assert float(a.loss(z, nids, {"member": t})) == pytest.approx(6.5)
    assert a.loss(z, {"member": torch.tensor([0, 0])}, {"member": aligner.AlignTarget(
        family="f", to_version=1, to_dim=2, steps=[(1, None, None, z1, torch.tensor([False, True, True]))])}) is None


def _train_and_embed(target, tmp_path, name, cutoff, targets=None, seed=0):
    mg = build_graph(target, GraphConfig(cutoff=cutoff))
    cfg = GraphTrainConfig(**{**FAST.to_dict(), "seed": seed, "task_weights": None})
    result = train_gnn(mg, SMALL, cfg, progress=False, align=targets)
    path = checkpoint.save(tmp_path / name, result, mg, SMALL, cfg)
    out = embed_graph(target, checkpoint.load(path), progress=False)
    return mg, result, path, out


def test_joint_training_aligns_stores_its_map_and_chains_through_earlier_ones(target, tmp_path):
    seed_synthetic(target, members=150, jobs=50, seed=3, progress=False)
    end = data_end(target)
    with pytest.raises(ConfigError, match="no published vintage to align to"):
        align.alignment_targets(target, build_graph(target, GraphConfig(cutoff=end)))
    _, _, v1_dir, out1 = _train_and_embed(target, tmp_path, "v1", end)
    assert [r["version"] for r in out1] == [1, 1] and "compat_map" not in out1[0]

    # targets come from the v1 model re-run on the graph at the new cutoff, not from v1's rows at the data end
    cutoff = end - pd.Timedelta(days=5)
    mg = build_graph(target, GraphConfig(cutoff=cutoff))
    targets = align.alignment_targets(target, mg)
    v1 = checkpoint.load(v1_dir)
    model, features = checkpoint.adapt(v1, build_graph(target, checkpoint.graph_config(v1, cutoff)))
    direct = infer(model, mg.graph, features)["member"]
    _, _, z1, mask = targets["member"].steps[0][1:]
    assert targets["member"].describe()["through"] == [1] and bool(mask.all())
    assert torch.allclose(z1, direct, atol=1e-5)

    # v2: trained with the map; checkpoint round trip; the embed job stores the map v2 -> v1 it learned
    _, r2, v2_dir, out2 = _train_and_embed(target, tmp_path, "v2", cutoff, targets, seed=1)
    assert len(r2.metrics["align_cos"]) == FAST.epochs and r2.align["member"]["to_version"] == 1
    ckpt2 = checkpoint.load(v2_dir)
    assert torch.equal(ckpt2.aligner.maps["job"].weight, r2.aligner.maps["job"].weight)
    assert [r["version"] for r in out2] == [2, 2] and out2[0]["compat_map"]["method"] == "bc_aligner"
    with db.connect(target) as conn:
        m = compat.load(conn, "member_graph_embedding", 2, 1)
        x = current_vectors(conn, "member_graph_embedding", 2, "member")
        y = current_vectors(conn, "member_graph_embedding", 1, "member")
        ids = sorted(x)
        assert np.allclose(m.matrix, r2.aligner.maps["member"].weight.detach().double().numpy())
        held = compat.metrics(m.apply(np.stack([x[i] for i in ids])), np.stack([y[i] for i in ids]))
        assert m.metrics["method"] == "bc_aligner" and m.metrics["heldout"]["cos_mean"] == held["cos_mean"]
        # a refit keeps the joint map unless ridge beats it by more than the chain tolerance, and says so
        kept = fit_map(conn, "member_graph_embedding", 2, 1)
        conn.commit()
        assert "ridge_heldout_cos_mean" in kept.metrics or kept.metrics["method"] in ("ridge", "identity")
        if "ridge_heldout_cos_mean" in kept.metrics:
            assert kept.metrics["method"] == "bc_aligner" and np.allclose(kept.matrix, m.matrix)

    # the promise: trained with its map, v2 is closer to v1 than the same model trained alone and ridge-fitted
    cfg = GraphTrainConfig(**{**FAST.to_dict(), "seed": 1, "task_weights": None})
    alone = checkpoint.load(checkpoint.save(tmp_path / "alone", train_gnn(mg, SMALL, cfg, progress=False), mg,
                                            SMALL, cfg))
    end_mg = build_graph(target, checkpoint.graph_config(alone, end))
    model, features = checkpoint.adapt(alone, end_mg)
    z_alone = infer(model, end_mg.graph, features)["member"].numpy()
    row = {int(i): k for k, i in enumerate(end_mg.node_ids["member"])}
    ridge = compat.fit(z_alone[[row[i] for i in ids]], np.stack([y[i] for i in ids]),
                       family="member_graph_embedding", from_version=2, to_version=1)
    assert held["cos_mean"] > ridge.metrics["heldout"]["cos_mean"] + 0.05

    # v3 aligned to v2 and, through the stored v2 -> v1 map, to v1
    targets3 = align.alignment_targets(target, mg)
    assert targets3["member"].describe()["through"] == [2, 1]
    with pytest.raises(ConfigError, match="alignable vintages"):
        align.alignment_targets(target, mg, to_version=9)
