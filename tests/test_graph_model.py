"""The graph model, samplers and trainer: hand-made heterographs (no database) plus one end-to-end run on a tiny
synthetic marketplace in the real Postgres."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from star.errors import ConfigError
from star.graph import sampling
from star.graph.dgl_compat import import_dgl
from star.graph.model import GNNConfig, HeteroGNN, LinkDecoder, NodeInput, RelationGAT, input_specs
from star.graph.train import GraphTrainConfig, embed_all, infer, split_by_time, train_gnn
from tests.text_models import one_thread  # noqa: F401  (autouse fixture)

dgl = import_dgl()
DAY = 86400.0
APPLY, VIEW = ("member", "apply", "job"), ("member", "view", "job")


def tiny_market(seed: int = 0, members: int = 12, jobs: int = 6, skills: int = 4):
    """A MarketGraph look-alike: apply / view / has_skill / requires_skill and their rev_ twins, ts in days."""
    rng = np.random.default_rng(seed)
    rels = {APPLY: (members, jobs, 30), VIEW: (members, jobs, 40), ("member", "has_skill", "skill"): (members, skills, 20),
            ("job", "requires_skill", "skill"): (jobs, skills, 10)}
    data, times = {}, {}
    for (s, r, d), (ns, nd, n) in rels.items():
        src, dst = torch.as_tensor(rng.integers(0, ns, n)), torch.as_tensor(rng.integers(0, nd, n))
        ts = torch.as_tensor(np.sort(rng.uniform(0, 100, n)) * DAY)
        data[(s, r, d)], data[(d, f"rev_{r}", s)] = (src, dst), (dst, src)
        times[(s, r, d)] = times[(d, f"rev_{r}", s)] = ts
    g = dgl.heterograph(data, num_nodes_dict={"member": members, "job": jobs, "skill": skills}, idtype=torch.int64)
    for e, ts in times.items():
        g.edges[e].data["ts"] = ts
    features = {
        "member": {"text": torch.randn(members, 8, generator=torch.Generator().manual_seed(seed)),
                   "text_mask": torch.arange(members) % 3 != 0,
                   "categorical": torch.as_tensor(rng.integers(0, 4, (members, 2)))},
        "job": {"text": torch.randn(jobs, 8, generator=torch.Generator().manual_seed(seed + 1)),
                "text_mask": torch.ones(jobs, dtype=torch.bool),
                "categorical": torch.as_tensor(rng.integers(0, 3, (jobs, 1)))},
        "skill": {},
    }
    return SimpleNamespace(graph=g, features=features, categorical_vocab={},
                           node_ids={nt: np.arange(g.num_nodes(nt)) for nt in g.ntypes})


def small_cfg(**kw) -> GNNConfig:
    return GNNConfig(**{"hidden": 16, "out_dim": 12, "heads": 2, "id_dim": 4, "cat_dim": 3, "dropout": 0.0, **kw})


def test_multi_task_loss_equals_hand_computed_weighted_bce():
    dec = LinkDecoder(GNNConfig(decoder="dot", dot_scale=2.0, out_dim=2, hidden=4, heads=1),
                      [APPLY, VIEW], {APPLY: 3.0})
    z_m = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z_j = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # apply: positive (m0, j0) cos 1, negative (m1, j0) cos 0; view: positive (m1, j1) cos .8, negatives
    # (m0, j1) cos .6 and (m0, j0) cos 1
    pos = {APPLY: dec.score(APPLY, z_m[[0]], z_j[[0]]), VIEW: dec.score(VIEW, z_m[[1]], z_j[[1]])}
    neg = {APPLY: dec.score(APPLY, z_m[[1]], z_j[[0]]), VIEW: dec.score(VIEW, z_m[[0, 0]], z_j[[1, 0]])}

    def nll(logit, label):
        p = 1 / (1 + math.exp(-logit))
        return -math.log(p if label else 1 - p)

    apply = (nll(2.0, 1) + nll(0.0, 0)) / 2
    view = (nll(1.6, 1) + nll(1.2, 0) + nll(2.0, 0)) / 3
    assert dec.loss(pos, neg).item() == pytest.approx(3.0 * apply + 1.0 * view, rel=1e-6)
    with pytest.raises(ConfigError, match="weight only tasks"):
        LinkDecoder(GNNConfig(), [APPLY], {VIEW: 1.0})


def _seed_block_degrees(sampler, g, seeds):
    _, _, blocks = sampler.sample(g, seeds)
    return blocks


def test_uniform_sampler_takes_at_most_fanout_neighbours_per_edge_type():
    n = 30  # job 0 has 30 applicants, 30 viewers
    g = dgl.heterograph({APPLY: (torch.arange(n), torch.zeros(n, dtype=torch.int64)),
                         ("job", "rev_apply", "member"): (torch.zeros(n, dtype=torch.int64), torch.arange(n))})
    blocks = _seed_block_degrees(sampling.uniform((4, 2)), g, {"job": torch.tensor([0])})
    assert len(blocks) == 2
    # blocks[-1] feeds the seeds with fanouts[-1]; blocks[0] the next hop with fanouts[0]
    assert blocks[1].in_degrees(etype=APPLY).tolist() == [2]
    deg = blocks[0].in_degrees(etype=("job", "rev_apply", "member"))
    assert deg.max().item() <= 4 and len(deg) == 2
    assert blocks[0].in_degrees(etype=APPLY).max().item() <= 4
    with pytest.raises(ConfigError):
        sampling.uniform((0, 3))


def test_temporal_sampler_prefers_recent_edges():
    n = 40  # 20 edges 200 days old, 20 within the last 10 days
    g = dgl.heterograph({APPLY: (torch.arange(n), torch.zeros(n, dtype=torch.int64))})
    ts = torch.cat([torch.full((20,), 0.0), torch.linspace(190, 200, 20)]) * DAY
    g.edges[APPLY].data["ts"] = ts
    recent = {}
    for name, sampler in (("temporal", sampling.temporal((5,), half_life_days=20)), ("uniform",
                                                                                      sampling.uniform((5,)))):
        sampling.prepare(g, sampler)
        dgl.seed(7)
        picked = []
        for _ in range(40):
            block = sampler.sample(g, {"job": torch.tensor([0])})[2][0]
            picked.append(ts[block.edges[APPLY].data[dgl.EID]])
        recent[name] = float((torch.cat(picked) > 100 * DAY).float().mean())
    assert recent["temporal"] > 0.95 and 0.3 < recent["uniform"] < 0.7
    # with nothing recent left, old edges are still reachable (weights floored, not zero)
    assert (g.edges[APPLY].data[sampling.RECENCY] > 0).all()


def test_adaptive_fanout_grows_only_on_plateaus_and_its_tolerance_decays():
    a = sampling.AdaptiveFanout(start=(3, 3), maximum=(10, 20), factor=2, tolerance=0.02, decay=0.5)
    assert a.update(0.60) is False and a.fanouts == (3, 3)  # first value: a baseline
    assert a.update(0.65) is False and a.fanouts == (3, 3)  # +0.05 > 0.02: still improving
    assert a.update(0.66) is True and a.fanouts == (6, 6)  # +0.01: plateau, grow
    assert a.tolerance == pytest.approx(0.01)
    assert a.update(0.675) is False  # +0.015 > the decayed 0.01: would have grown before the decay
    assert a.update(0.676) is True and a.fanouts == (10, 12)  # capped per layer
    assert a.update(0.5) is True and a.fanouts == (10, 20)
    assert a.update(0.5) is False and a.at_max  # nothing left to grow
    assert a.history == [(3, 3), (6, 6), (10, 12), (10, 20)]
    assert a.update(None) is False


@pytest.mark.parametrize("switches", [dict(), dict(use_text=False), dict(use_categorical=False),
                                      dict(use_ids=False), dict(use_text=False, use_categorical=False, use_ids=False),
                                      dict(entity_ids=False), dict(self_attention=False, decoder="dot")])
def test_ablation_switches_choose_the_inputs_and_the_model_still_runs(switches):
    mg = tiny_market()
    cfg = small_cfg(**switches)
    inp = NodeInput(cfg, input_specs(mg))
    for nt in ("member", "job"):
        want = [name for name, on in (("text", cfg.use_text), ("categorical", cfg.use_categorical),
                                      ("id", cfg.use_ids and cfg.entity_ids)) if on]
        assert inp.inputs_of(nt) == (want or ["constant"])
    assert inp.inputs_of("skill") == (["id"] if cfg.use_ids else ["constant"])  # attribute nodes: IDs only
    model = HeteroGNN(cfg, input_specs(mg), mg.graph.canonical_etypes).eval()
    z = model.forward_full(mg.graph, mg.features)
    for nt in mg.graph.ntypes:
        assert z[nt].shape == (mg.graph.num_nodes(nt), 12)
        assert torch.allclose(z[nt].norm(dim=1), torch.ones(len(z[nt])), atol=1e-5)
    # text of a masked node does not reach the model
    if cfg.use_text:
        feats = {nt: dict(f) for nt, f in mg.features.items()}
        masked = ~feats["member"]["text_mask"]
        feats["member"]["text"] = feats["member"]["text"].clone()
        feats["member"]["text"][masked] = 1e3
        assert torch.equal(inp({"member": torch.arange(12)}, feats)["member"],
                           inp({"member": torch.arange(12)}, mg.features)["member"])


def test_block_forward_and_layer_wise_inference_equal_the_full_graph_pass():
    mg = tiny_market(seed=3)
    model = HeteroGNN(small_cfg(layers=2), input_specs(mg), mg.graph.canonical_etypes).eval()
    model.fit_text_basis(mg.features)  # the text residual takes part in all three passes
    full = model.forward_full(mg.graph, mg.features)
    layer_wise = infer(model, mg.graph, mg.features, batch_size=5)
    sampler = dgl.dataloading.MultiLayerFullNeighborSampler(2)
    _, out, blocks = sampler.sample(mg.graph, {"member": torch.tensor([0, 5, 7]), "job": torch.tensor([2])})
    with torch.no_grad():
        z = model(blocks, mg.features)
    for nt in ("member", "job", "skill"):
        assert torch.allclose(layer_wise[nt], full[nt], atol=1e-5)
    assert torch.allclose(z["member"], full["member"][out["member"]], atol=1e-5)
    assert torch.allclose(z["job"], full["job"][out["job"]], atol=1e-5)
    emb = embed_all(model, mg, batch_size=4)
    assert set(emb) == {"member", "job"} and emb["member"].dtype == np.float32
    assert emb["member"].shape == (12, 12) and np.allclose(np.linalg.norm(emb["job"], axis=1), 1, atol=1e-5)


def test_relation_gat_equals_dgl_gatconv_in_heterographconv_forward_and_backward():
    mg = tiny_market(seed=5)
    g, etypes = mg.graph, mg.graph.canonical_etypes
    ours = RelationGAT(etypes, 8, 3, 2, dropout=0.0, negative_slope=0.2)
    ref = dgl.nn.HeteroGraphConv({e: dgl.nn.GATConv(8, 3, 2, allow_zero_in_degree=True) for e in etypes},
                                 aggregate="sum")
    with torch.no_grad():
        for e in etypes:
            k, conv = ":".join(e), ref._get_module(e)
            conv.bias.normal_()
            ours.fc[k].weight.copy_(conv.fc.weight)
            ours.attn_l[k].copy_(conv.attn_l)
            ours.attn_r[k].copy_(conv.attn_r)
            ours.bias[k].copy_(conv.bias)
    gen = torch.Generator().manual_seed(0)
    h = {nt: torch.randn(g.num_nodes(nt), 8, generator=gen) for nt in g.ntypes}
    sampler = dgl.dataloading.NeighborSampler([2])
    _, _, (block,) = sampler.sample(g, {"member": torch.tensor([0, 3, 4]), "job": torch.tensor([1, 2])})
    h_src = {nt: h[nt][block.srcnodes[nt].data[dgl.NID]] for nt in block.srctypes}
    h_dst = {nt: x[:block.num_dst_nodes(nt)] for nt, x in h_src.items() if block.num_dst_nodes(nt)}
    for graph, src, dst in ((g, h, h), (block, h_src, h_dst)):
        a, b = ours(graph, src, dst), ref(graph, (src, dst))
        assert set(a) == set(b)
        for nt in a:
            assert torch.allclose(a[nt], b[nt], atol=1e-5)
        probe = {nt: torch.randn(a[nt].shape, generator=gen) for nt in a}
        sum((a[nt] * probe[nt]).sum() for nt in a).backward()
        sum((b[nt] * probe[nt]).sum() for nt in b).backward()
        for e in etypes:  # a relation with no edge in the block leaves its weights without a gradient (= 0)
            k, conv = ":".join(e), ref._get_module(e)
            for mine, theirs in ((ours.fc[k].weight, conv.fc.weight), (ours.attn_l[k], conv.attn_l),
                                 (ours.attn_r[k], conv.attn_r), (ours.bias[k], conv.bias)):
                def grad(p):
                    return p.grad if p.grad is not None else torch.zeros_like(p)
                assert torch.allclose(grad(mine), grad(theirs), atol=1e-4)
        ours.zero_grad()
        ref.zero_grad()


def test_text_residual_keeps_member_job_text_cosines_and_starts_the_model_at_them():
    mg = tiny_market(seed=4)
    # texts of rank 4 in 8 dims: the top 12 > 8 axes would be the identity; with out_dim 4 the SVD basis is exact
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(4, 8, generator=gen)
    for nt in ("member", "job"):
        mg.features[nt]["text"] = torch.randn(len(mg.features[nt]["text"]), 4, generator=gen) @ mix
        mg.features[nt]["text_mask"] = torch.ones(len(mg.features[nt]["text"]), dtype=torch.bool)
    model = HeteroGNN(small_cfg(out_dim=4, heads=1, hidden=8), input_specs(mg), mg.graph.canonical_etypes).eval()
    model.fit_text_basis(mg.features)
    assert torch.equal(model.text_basis_member, model.text_basis_job)  # one basis: cross-type cosines survive
    t = model.text_of({nt: torch.arange(mg.graph.num_nodes(nt)) for nt in ("member", "job")}, mg.features)
    raw = mg.features["member"]["text"] @ mg.features["job"]["text"].T
    projected = (t["member"] @ model.text_basis_member) @ (t["job"] @ model.text_basis_job).T
    assert torch.allclose(projected, raw, atol=1e-3 * raw.abs().max())
    # with the residual weight large, the embeddings' member-job cosines are the texts' cosines
    with torch.no_grad():
        for w in model.text_weight.values():
            w.fill_(1e6)
    z = infer(model, mg.graph, mg.features)
    cos = torch.nn.functional.normalize(mg.features["member"]["text"], dim=1) @ \
        torch.nn.functional.normalize(mg.features["job"]["text"], dim=1).T
    assert torch.allclose(z["member"] @ z["job"].T, cos, atol=1e-3)
    off = HeteroGNN(small_cfg(text_residual=False), input_specs(mg), mg.graph.canonical_etypes)
    assert off.text_types == [] and not [n for n, _ in off.named_buffers() if n.startswith("text_basis")]


def test_validation_edges_never_reach_the_training_graph_or_its_batches():
    mg = tiny_market(seed=5)
    g = mg.graph
    train_g, cut, train_eids, val = split_by_time(g, [APPLY, VIEW], 0.25)
    for etype in g.canonical_etypes:
        ts = train_g.edges[etype].data["ts"]
        if {etype[0], etype[2]} == {"member", "job"}:  # interactions: only those before the cut
            assert (ts < cut).all() and len(ts) == int((g.edges[etype].data["ts"] < cut).sum())
        else:  # attribute edges: entity state as of the graph's cutoff, all kept
            assert len(ts) == g.num_edges(etype)
    n_val = sum(len(v[0]) for v in val.values())
    assert n_val == sum(int((g.edges[t].data["ts"] >= cut).sum()) for t in (APPLY, VIEW)) > 0
    val_pairs_late = {t: set(zip(*(x.tolist() for x in v))) for t, v in val.items()}
    for t in (APPLY, VIEW):  # a val pair may repeat an earlier edge, but no late edge survived with its time
        s, d = train_g.edges(etype=t)
        late = {(a, b) for a, b, x in zip(s.tolist(), d.tolist(), train_g.edges[t].data["ts"].tolist()) if x >= cut}
        assert not late and val_pairs_late[t]
    # a batch's positive edges (and their rev_ twins) are not in its own message-passing blocks
    loader = sampling.edge_loader(mg, [APPLY], sampling.uniform((50, 50)), 4, 1, train_eids, 0, graph=train_g)
    for _, pos_g, neg_g, blocks in loader:
        s, d = pos_g.edges(etype=APPLY)
        seeds = {(int(pos_g.ndata[dgl.NID]["member"][a]), int(pos_g.ndata[dgl.NID]["job"][b]))
                 for a, b in zip(s, d)}
        batch_eids = set(pos_g.edges[APPLY].data[dgl.EID].tolist())
        for block in blocks:
            assert not batch_eids & set(block.edges[APPLY].data[dgl.EID].tolist())
            assert not batch_eids & set(block.edges[("job", "rev_apply", "member")].data[dgl.EID].tolist())
        assert len(seeds) >= 1 and neg_g.num_edges(APPLY) == pos_g.num_edges(APPLY)


def test_train_gnn_runs_on_a_hand_made_graph_with_each_sampler():
    mg = tiny_market(seed=2, members=30, jobs=10)
    for sampler in ("uniform", "temporal", "adaptive"):
        res = train_gnn(mg, small_cfg(), GraphTrainConfig(epochs=2, batch_size=8, sampler=sampler,
                                                          adaptive_start=(2, 2)), progress=False)
        assert res.tasks == [APPLY, VIEW]
        assert len(res.metrics["epoch_seconds"]) == 2 and len(res.metrics["val_auc"]["member:apply:job"]) == 2
        assert res.metrics["fanouts"][0] == ([2, 2] if sampler == "adaptive" else [10, 10])
        assert res.metrics["steps"] == [-(-sum(res.metrics["train_edges"].values()) // 8)] * 2  # full passes
    short = train_gnn(mg, small_cfg(), GraphTrainConfig(epochs=3, batch_size=8, steps_per_epoch=2), progress=False)
    assert short.metrics["steps"] == [2, 2, 2] and len(short.metrics["mean_val_auc"]) == 3
    with pytest.raises(ConfigError, match="steps_per_epoch=0"):
        GraphTrainConfig(steps_per_epoch=0)
    with pytest.raises(ConfigError, match="not member -> job"):
        train_gnn(mg, small_cfg(), GraphTrainConfig(tasks=[("member", "has_skill", "skill")]), progress=False)


def test_patience_stops_when_validation_auc_stops_improving_and_keeps_the_best_epoch():
    mg = tiny_market(seed=2, members=30, jobs=10)
    for sampler in ("uniform", "adaptive"):
        cfg = GraphTrainConfig(epochs=40, batch_size=8, sampler=sampler, patience=2, adaptive_start=(1, 1),
                               adaptive_max=(2, 2))
        res = train_gnn(mg, small_cfg(), cfg, progress=False)
        aucs, stopped = res.metrics["mean_val_auc"], res.metrics["stopped_early"]
        assert stopped == len(aucs) < 40
        assert max(aucs[-2:]) <= max(aucs[:-2]) and res.metrics["best_mean_val_auc"] == max(aucs)
        if sampler == "adaptive":  # stops only at the largest fanouts, after 2 epochs there
            assert res.metrics["fanouts"][-2:] == [[2, 2], [2, 2]]


def test_training_on_a_tiny_synthetic_marketplace_runs_end_to_end_and_learns(target):
    """From the database to embeddings: the training loss falls and every node gets a unit vector.
    (Predictive quality is an evaluation matter: on 150 members the held-out apply AUC is 0.45-0.65 by seed.)"""
    from star.graph.build import GraphConfig, build_graph
    from star.pipeline import seed_synthetic

    seed_synthetic(target, members=150, jobs=50, seed=1, progress=False)
    mg = build_graph(target, GraphConfig(cutoff=pd.Timestamp("2100-01-01", tz="UTC")))
    res = train_gnn(mg, GNNConfig(hidden=32, out_dim=32, heads=2, id_dim=8, cat_dim=4),
                    GraphTrainConfig(epochs=4, batch_size=32, lr=3e-3, sampler="uniform", fanouts=(10, 10)),
                    progress=False)
    print("\ne2e metrics:", {k: res.metrics[k] for k in ("val_auc", "epoch_seconds", "seconds", "train_edges",
                                                         "val_edges")})
    emb = embed_all(res.model, mg)
    assert emb["member"].shape == (len(mg.node_ids["member"]), 32)
    assert np.allclose(np.linalg.norm(emb["member"], axis=1), 1, atol=1e-5)
    assert all(a is not None for a in res.metrics["val_auc"]["member:apply:job"])
    losses = res.metrics["train_loss"]
    assert losses[-1] < losses[0], losses


def test_a_time_split_of_edges_all_at_one_time_says_why_it_cannot_split():
    apply = ("member", "apply", "job")
    g = dgl.heterograph({apply: (torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 0, 1]))})
    g.edges[apply].data["ts"] = torch.full((4,), 1.7e9, dtype=torch.float64)
    with pytest.raises(ConfigError, match=r"4 task edges by the cutoff have 1 distinct time\(s\).*needs at least two"):
        split_by_time(g, [apply], 0.2)


def test_a_graph_without_task_edges_by_the_cutoff_names_the_cutoff():
    """An empty task edge set used to index an empty array (IndexError) instead of saying what to change."""
    apply = ("member", "apply", "job")
    g = dgl.heterograph({apply: (torch.tensor([], dtype=torch.int64), torch.tensor([], dtype=torch.int64))},
                        num_nodes_dict={"member": 3, "job": 2})
    g.edges[apply].data["ts"] = torch.zeros(0, dtype=torch.float64)
    with pytest.raises(ConfigError, match=r"0 apply edges by its cutoff: nothing to train on; pass a later --cutoff"):
        split_by_time(g, [apply], 0.2)
