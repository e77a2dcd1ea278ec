"""The text gate of the graph model: text enters through gates learned from 0, so GNN + text starts as, and can fall
back to, the text-free GNN (issue #15 item 6). Hand-made heterographs, no database."""

from __future__ import annotations

import pytest
import torch

from star.errors import ConfigError
from star.graph.model import GNNConfig, HeteroGNN, LinkDecoder, input_specs
from star.graph.train import GraphTrainConfig, infer, train_gnn
from tests.test_graph_model import APPLY, VIEW, small_cfg, tiny_market
from tests.text_models import one_thread  # noqa: F401  (autouse fixture)


def _model(mg, seed: int = 0, **kw) -> HeteroGNN:
    """A small model, text-gated unless told otherwise (the gate is an option; the default is ungated)."""
    kw.setdefault("text_gate", True)
    torch.manual_seed(seed)
    model = HeteroGNN(small_cfg(**kw), input_specs(mg), mg.graph.canonical_etypes)
    model.fit_text_basis(mg.features)
    return model.eval()


def _logits(model, mg) -> torch.Tensor:
    torch.manual_seed(1)
    decoder = LinkDecoder(model.cfg, [APPLY]).eval()
    z = model.forward_full(mg.graph, mg.features)
    return decoder.score(APPLY, z["member"].repeat_interleave(6, 0), z["job"].repeat(12, 1))


def test_at_initialisation_gnn_text_computes_exactly_gnn_categorical():
    mg = tiny_market(seed=7)
    with torch.no_grad():
        text = _model(mg, use_text=True)
        cat = _model(mg, use_text=False)
        z_text, z_cat = text.forward_full(mg.graph, mg.features), cat.forward_full(mg.graph, mg.features)
        for nt in mg.graph.ntypes:
            assert torch.equal(z_text[nt], z_cat[nt]), nt
        assert torch.equal(_logits(text, mg), _logits(cat, mg))
        assert text.text_gates() == {"job": {"input": 0.0, "residual": 0.0}, "member": {"input": 0.0, "residual": 0.0}}
        # the model before the gate does use the text from the start: it differs from the categorical one
        old = _model(mg, use_text=True, text_gate=False)
        assert not torch.allclose(old.forward_full(mg.graph, mg.features)["member"], z_cat["member"], atol=1e-3)
        assert old.text_gates()["member"] == {"input": 1.0, "residual": 1.0}


def test_the_gates_get_a_gradient_and_open_only_by_training():
    mg = tiny_market(seed=8)
    model = _model(mg).train()
    decoder = LinkDecoder(model.cfg, [APPLY, VIEW])
    z = model.forward_full(mg.graph, mg.features)
    logits = {t: decoder.score(t, z["member"][mg.graph.edges(etype=t)[0]], z["job"][mg.graph.edges(etype=t)[1]])
              for t in (APPLY, VIEW)}
    decoder.loss(logits, {t: -v for t, v in logits.items()}).backward()
    for nt in ("member", "job"):
        assert model.input.gate[nt].grad.abs().sum() > 0
        assert model.text_weight[nt].grad.abs() > 0
        # a closed gate passes no gradient to the text projection behind it: text is learned once it helps
        assert model.input.text[nt][0].weight.grad.abs().sum() == 0


def test_training_records_the_gates_and_closing_them_removes_the_text():
    mg = tiny_market(seed=2, members=30, jobs=10)
    train_cfg = GraphTrainConfig(epochs=3, batch_size=8, sampler="uniform", fanouts=(3, 3), lr=1e-2)
    res = train_gnn(mg, small_cfg(text_gate=True), train_cfg, progress=False)
    gates = res.metrics["text_gates"]
    assert len(gates) == 3 and gates[-1]["member"]["input"] > 0 and gates[-1]["job"]["residual"] != 0
    assert len(res.metrics["mean_val_auc_text_off"]) == 3
    assert res.metrics["text_gates_kept"] == res.model.text_gates()
    if res.metrics["text_closed"]:
        assert res.metrics["text_gates_kept"]["member"] == {"input": 0.0, "residual": 0.0}
    model = res.model
    noise = {nt: dict(f) for nt, f in mg.features.items()}
    for nt in ("member", "job"):
        noise[nt]["text"] = torch.randn_like(noise[nt]["text"]) * 100
    model.close_text_gates()
    a, b = infer(model, mg.graph, mg.features), infer(model, mg.graph, noise)
    assert all(torch.allclose(a[nt], b[nt], atol=1e-6) for nt in a)  # closed: the text has no effect
    with pytest.raises(ConfigError, match="text_gate=True"):
        _model(mg, text_gate=False).close_text_gates()


def test_text_dropout_drops_whole_texts_while_training_only():
    mg = tiny_market(seed=3, members=400)
    model = _model(mg, text_dropout=0.5)
    nids = {"member": torch.arange(400)}
    has = mg.features["member"]["text_mask"]
    assert torch.equal(model.text_keep(nids, mg.features)["member"], has)  # eval: every text
    kept = model.train().text_keep(nids, mg.features)["member"]
    assert not (kept & ~has).any() and 0.35 < kept.sum() / has.sum() < 0.65
    with pytest.raises(ConfigError, match="text_dropout=1.0 must be < 1"):
        GNNConfig(text_dropout=1.0)
