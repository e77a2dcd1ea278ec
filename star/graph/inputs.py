"""Node inputs of the graph model: what each node type feeds the first GAT layer.

    text_gate=False       h = Linear([LayerNorm(Linear(text)) | categorical | ID])  (the default)
    text_gate=True        h = Linear([categorical embeddings | ID embedding]) + g * LayerNorm(Linear(text))
                          g: one learned weight per hidden dimension, initialised at 0 -> at initialisation the
                          model computes exactly what it computes without text (the text modules draw their
                          initial weights from a forked RNG, so the other weights are those of the text-free model)
    text_dropout p        while training, a node's whole text is dropped (as if it had none) with probability p
    positions             where entity ids sit among a graph's sorted node ids (features, checkpoints, evaluation)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["NodeInput", "NodeSpec", "input_specs", "positions"]

ENTITY_TYPES = ("member", "job")


@dataclass(frozen=True, kw_only=True)
class NodeSpec:
    """What inputs one node type can have (read from a MarketGraph by `input_specs`)."""

    num_nodes: int
    text_dim: int = 0
    cat_cards: tuple[int, ...] = ()  # per column: number of codes including 0 = missing


def input_specs(mg) -> dict[str, NodeSpec]:
    """NodeSpec per node type of a MarketGraph (or anything with .graph and .features)."""
    specs = {}
    for nt in mg.graph.ntypes:
        f = mg.features.get(nt, {})
        text_dim = int(f["text"].shape[1]) if "text" in f else 0
        cards = ()
        if "categorical" in f and f["categorical"].shape[1]:
            cards = tuple(int(c) + 1 for c in f["categorical"].max(dim=0).values.tolist())
            vocab = getattr(mg, "categorical_vocab", {}).get(nt)
            if vocab:  # the vocabulary, not the codes present, bounds the codes
                cards = tuple(max(c, len(v) + 1) for c, v in zip(cards, vocab.values()))
        specs[nt] = NodeSpec(num_nodes=mg.graph.num_nodes(nt), text_dim=text_dim, cat_cards=cards)
    return specs


def text_keep(nids: dict[str, torch.Tensor], features: dict, types, p: float, training: bool) -> dict:
    """Per text node type in nids: bool, the node's text is used (it has one and, training, it was not dropped)."""
    out = {}
    for nt in types:
        if nt in nids:
            keep = features[nt]["text_mask"][nids[nt].long()]
            if training and p > 0:
                keep = keep & (torch.rand(len(keep)) >= p)
            out[nt] = keep
    return out


class NodeInput(nn.Module):
    """Per node type: categorical embeddings and ID embedding -> Linear -> hidden, plus the gated text projection
    (or, text_gate=False, all three concatenated before the Linear)."""

    def __init__(self, cfg, specs: dict[str, NodeSpec]):
        super().__init__()
        self.cfg = cfg
        self.text, self.cats, self.ids, self.proj, self.const = (nn.ModuleDict() for _ in range(5))
        self.gate = nn.ParameterDict()
        for nt, spec in specs.items():
            width = 0
            if cfg.use_text and spec.text_dim:
                # the text modules' initial weights come from a forked RNG: every other weight is initialised as
                # in the model without text, so a closed gate makes the two models equal
                with torch.random.fork_rng(devices=[]):
                    # unit-norm text vectors have entries ~ 1/sqrt(d): LayerNorm brings the projection to the scale
                    # of the N(0, 1) categorical and ID embeddings, else the text signal starts drowned
                    self.text[nt] = nn.Sequential(nn.Linear(spec.text_dim, cfg.hidden), nn.LayerNorm(cfg.hidden))
                if cfg.text_gate:
                    self.gate[nt] = nn.Parameter(torch.zeros(cfg.hidden))
                else:
                    width += cfg.hidden
            if cfg.use_categorical and spec.cat_cards:
                self.cats[nt] = nn.ModuleList(nn.Embedding(c, cfg.cat_dim) for c in spec.cat_cards)
                width += cfg.cat_dim * len(spec.cat_cards)
            if cfg.use_ids and cfg.id_dim and (cfg.entity_ids or nt not in ENTITY_TYPES):
                self.ids[nt] = nn.Embedding(spec.num_nodes, cfg.id_dim)
                width += cfg.id_dim
            if width:
                self.proj[nt] = nn.Linear(width, cfg.hidden)
            else:  # no input besides a gated text (or none at all): one learned vector for the type
                self.const[nt] = nn.Embedding(1, cfg.hidden)

    def inputs_of(self, ntype: str) -> list[str]:
        """Which inputs a node type uses: a subset of ['text', 'categorical', 'id'], or ['constant']."""
        got = [name for name, mods in (("text", self.text), ("categorical", self.cats), ("id", self.ids))
               if ntype in mods]
        return got or ["constant"]

    def forward(self, nids: dict[str, torch.Tensor], features: dict[str, dict[str, torch.Tensor]],
                keep: dict[str, torch.Tensor] | None = None):
        """nids: node type -> node indexes into the full graph; features: MarketGraph.features; keep: node type ->
        bool per node, its text is used (default: features' text_mask, and text_dropout while training)."""
        if keep is None:
            keep = text_keep(nids, features, list(self.text), self.cfg.text_dropout, self.training)
        out = {}
        for nt, idx in nids.items():
            idx = idx.long()
            text = None
            if nt in self.text:
                text = self.text[nt](features[nt]["text"][idx])
                text = text * keep[nt].unsqueeze(1).to(text.dtype)
            parts = [text] if text is not None and nt not in self.gate else []
            if nt in self.cats:
                codes = features[nt]["categorical"][idx]
                parts.extend(emb(codes[:, j]) for j, emb in enumerate(self.cats[nt]))
            if nt in self.ids:
                parts.append(self.ids[nt](idx))
            h = self.proj[nt](torch.cat(parts, dim=1)) if nt in self.proj else \
                self.const[nt].weight.expand(len(idx), -1)
            if nt in self.gate:
                h = h + self.gate[nt] * text
            out[nt] = h
        return out


def positions(node_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Node index of each id in sorted `node_ids`, and which ids are nodes at all."""
    pos = np.searchsorted(node_ids, ids)
    pos = np.minimum(pos, max(len(node_ids) - 1, 0))
    found = (node_ids[pos] == ids) if len(node_ids) else np.zeros(len(ids), bool)
    return pos, found
