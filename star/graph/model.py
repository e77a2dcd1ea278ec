"""The STAR graph model (paper §4): node inputs -> heterogeneous GAT encoder -> per-task link decoders.

    MarketGraph.features[ntype]  text (n, d) | categorical codes (n, k) | node index (learned ID)
        --NodeInput: concat of the inputs the switches allow --> Linear --> hidden
    HeteroGNN: `layers` x RelationGAT (= HeteroGraphConv({canonical etype: GATConv}, sum)) + a self term W_self h_dst
        (the target node attending to itself), LeakyReLU between layers,
        + a projection of the node's own inputs (input_skip), BatchNorm1d per node type,
        + w * (own text @ P) for members and jobs (text_residual; P = the texts' top principal axes, fixed),
        L2-normalised out_dim output
        forward(blocks, x)         sampled message flow graphs (training)
        forward_full(graph, x)     every neighbour, whole graph at once (small graphs, tests)
        layer(l, g, h_src, h_dst)  one layer, for layer-wise batched inference (star.graph.train.embed_all)
    LinkDecoder: per task (src, relation, dst) a score of (z_src, z_dst): MLP(z_src * z_dst) or scale * <z_src, z_dst>
        loss = sum_i lambda_i * BCE_i(positives vs negatives)  (paper eq. 6-7) + l2_reg * mean |raw z|^2
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from star.errors import ConfigError, require_at_least
from star.graph.dgl_compat import import_dgl

__all__ = ["GNNConfig", "HeteroGNN", "LinkDecoder", "NodeInput", "NodeSpec", "RelationGAT", "input_specs"]

EType = tuple[str, str, str]
ENTITY_TYPES = ("member", "job")


@dataclass(frozen=True, kw_only=True)
class GNNConfig:
    hidden: int = field(default=128, metadata={"help": "width of node inputs and hidden layers"})
    out_dim: int = field(default=200, metadata={"help": "embedding size written to the store"})
    layers: int = field(default=2, metadata={"help": "GAT layers = hops of neighbourhood each embedding sees"})
    heads: int = field(default=4, metadata={"help": "attention heads; hidden layers concatenate, the last averages"})
    attention: str = field(default="gat", metadata={"help": "message passing operator; only 'gat' (GATConv)"})
    self_attention: bool = field(default=True, metadata={"help": "add the target node's own projected input to "
                                                                 "its messages (paper: attending to itself)"})
    id_dim: int = field(default=32, metadata={"help": "learned ID embedding size per node (0 = none)"})
    entity_ids: bool = field(default=True, metadata={"help": "members and jobs get ID embeddings too (attribute "
                                                             "nodes always do when use_ids)"})
    cat_dim: int = field(default=16, metadata={"help": "embedding size per categorical column"})
    dropout: float = field(default=0.1, metadata={"help": "feature and attention dropout in every GAT layer"})
    negative_slope: float = field(default=0.2, metadata={"help": "LeakyReLU slope in attention and between layers"})
    use_text: bool = field(default=True, metadata={"help": "text embeddings as node input (ablation switch)"})
    use_categorical: bool = field(default=True, metadata={"help": "categorical codes as node input (ablation)"})
    use_ids: bool = field(default=True, metadata={"help": "learned ID embeddings as node input (ablation)"})
    decoder: str = field(default="mlp", metadata={"help": "'mlp' over z_src * z_dst, or 'dot' product"})
    dot_scale: float = field(default=10.0, metadata={"help": "logit = dot_scale * cosine for decoder='dot' "
                                                             "(unit vectors: a cosine alone is a too-flat logit)"})
    input_skip: bool = field(default=True, metadata={"help": "add a projection of each node's own inputs to its "
                                                             "output (text and categorical features reach the "
                                                             "embedding undiluted by neighbours)"})
    text_residual: bool = field(default=True, metadata={"help": "add each member's / job's own text embedding, "
                                                                "projected onto the texts' top out_dim principal "
                                                                "axes (fixed), to its output with a learned weight: "
                                                                "the GNN starts from text similarity and learns what "
                                                                "the graph adds"})
    l2_reg: float = field(default=1e-5, metadata={"help": "weight of mean |z|^2 of the final embeddings before "
                                                          "normalisation (after it |z| is always 1)"})

    def __post_init__(self):
        if self.attention != "gat":
            raise ConfigError(f"attention={self.attention!r} is not implemented; use 'gat'")
        if self.decoder not in ("mlp", "dot"):
            raise ConfigError(f"decoder={self.decoder!r}; use 'mlp' or 'dot'")
        require_at_least("GNNConfig", 1, hidden=self.hidden, out_dim=self.out_dim, cat_dim=self.cat_dim)
        require_at_least("GNNConfig", 0, id_dim=self.id_dim, l2_reg=self.l2_reg, dropout=self.dropout)
        if self.dropout >= 1:
            raise ConfigError(f"GNNConfig: dropout={self.dropout} must be < 1; pass --dropout with a value in [0, 1)")
        if self.layers < 1 or self.heads < 1 or self.hidden % self.heads:
            raise ConfigError(f"layers={self.layers}, heads={self.heads}, hidden={self.hidden}: need layers >= 1 "
                              "and hidden divisible by heads, e.g. hidden=128, heads=4")

    def to_dict(self) -> dict:
        return asdict(self)


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


class NodeInput(nn.Module):
    """Per node type: [text projection | categorical embeddings | ID embedding] -> Linear -> hidden."""

    def __init__(self, cfg: GNNConfig, specs: dict[str, NodeSpec]):
        super().__init__()
        self.cfg = cfg
        self.text, self.cats, self.ids, self.proj, self.const = (nn.ModuleDict() for _ in range(5))
        for nt, spec in specs.items():
            width = 0
            if cfg.use_text and spec.text_dim:
                # unit-norm text vectors have entries ~ 1/sqrt(d): LayerNorm brings the projection to the scale of
                # the N(0, 1) categorical and ID embeddings, else the text signal starts drowned
                self.text[nt] = nn.Sequential(nn.Linear(spec.text_dim, cfg.hidden), nn.LayerNorm(cfg.hidden))
                width += cfg.hidden
            if cfg.use_categorical and spec.cat_cards:
                self.cats[nt] = nn.ModuleList(nn.Embedding(c, cfg.cat_dim) for c in spec.cat_cards)
                width += cfg.cat_dim * len(spec.cat_cards)
            if cfg.use_ids and cfg.id_dim and (cfg.entity_ids or nt not in ENTITY_TYPES):
                self.ids[nt] = nn.Embedding(spec.num_nodes, cfg.id_dim)
                width += cfg.id_dim
            if width:
                self.proj[nt] = nn.Linear(width, cfg.hidden)
            else:  # no input left (e.g. a skill node with use_ids off): one learned vector for the type
                self.const[nt] = nn.Embedding(1, cfg.hidden)

    def inputs_of(self, ntype: str) -> list[str]:
        """Which inputs a node type uses: a subset of ['text', 'categorical', 'id'], or ['constant']."""
        got = [name for name, mods in (("text", self.text), ("categorical", self.cats), ("id", self.ids))
               if ntype in mods]
        return got or ["constant"]

    def forward(self, nids: dict[str, torch.Tensor], features: dict[str, dict[str, torch.Tensor]]):
        """nids: node type -> node indexes into the full graph; features: MarketGraph.features."""
        out = {}
        for nt, idx in nids.items():
            idx = idx.long()
            if nt in self.const:
                out[nt] = self.const[nt].weight.expand(len(idx), -1)
                continue
            parts = []
            if nt in self.text:
                f = features[nt]
                text = self.text[nt](f["text"][idx])
                parts.append(text * f["text_mask"][idx].unsqueeze(1).to(text.dtype))
            if nt in self.cats:
                codes = features[nt]["categorical"][idx]
                parts.extend(emb(codes[:, j]) for j, emb in enumerate(self.cats[nt]))
            if nt in self.ids:
                parts.append(self.ids[nt](idx))
            out[nt] = self.proj[nt](torch.cat(parts, dim=1))
        return out


class RelationGAT(nn.Module):
    """Multi-head graph attention over every relation of a block or graph, summed per destination type.

    The maths, parameters and initialisation of DGL's GATConv inside HeteroGraphConv(aggregate="sum") (one GATConv
    per relation; tests/test_graph_model.py checks the outputs are equal), computed differently: each relation
    projects only the source nodes that have an edge of that relation in the block, and scores destinations with the
    attention vector folded into the projection (a_r W h, one (heads x in) product) instead of projecting them.
    In a sampled block most source nodes of a type take part in a few of its relations, so the cost follows the
    sampled edges — which is what makes smaller fanouts cheaper (GATConv projects every source and destination node
    of the type for every relation)."""

    def __init__(self, etypes: list[EType], in_dim: int, per_head: int, heads: int, *, dropout: float,
                 negative_slope: float):
        super().__init__()
        self.etypes = [tuple(e) for e in etypes]
        self.heads, self.per_head, self.negative_slope = heads, per_head, negative_slope
        keys = [":".join(e) for e in self.etypes]
        self.fc = nn.ModuleDict({k: nn.Linear(in_dim, heads * per_head, bias=False) for k in keys})
        self.attn_l = nn.ParameterDict({k: nn.Parameter(torch.empty(1, heads, per_head)) for k in keys})
        self.attn_r = nn.ParameterDict({k: nn.Parameter(torch.empty(1, heads, per_head)) for k in keys})
        self.bias = nn.ParameterDict({k: nn.Parameter(torch.zeros(heads * per_head)) for k in keys})
        self.feat_drop, self.attn_drop = nn.Dropout(dropout), nn.Dropout(dropout)
        gain = nn.init.calculate_gain("relu")  # as GATConv.reset_parameters
        for k in keys:
            nn.init.xavier_normal_(self.fc[k].weight, gain=gain)
            nn.init.xavier_normal_(self.attn_l[k], gain=gain)
            nn.init.xavier_normal_(self.attn_r[k], gain=gain)

    def forward(self, g, h_src: dict, h_dst: dict) -> dict[str, torch.Tensor]:
        """{dst type: (n_dst, heads, per_head)} for every dst type in h_dst reached by a relation of g."""
        dgl = import_dgl()
        heads, d = self.heads, self.per_head
        out = {}
        present = set(g.canonical_etypes)
        used = [e for e in self.etypes if e in present and e[0] in h_src and e[2] in h_dst]
        # feature dropout once per node type (GATConv draws it per relation: same distribution, fewer draws)
        x_src = {nt: self.feat_drop(h_src[nt]) for nt in {e[0] for e in used}}
        x_dst = {nt: self.feat_drop(h_dst[nt]) for nt in {e[2] for e in used}}
        for e in used:
            s, _, t = e
            k = ":".join(e)
            n_dst = len(h_dst[t])
            rst = self.bias[k].view(1, heads, d).expand(n_dst, heads, d)
            u, v = g.edges(etype=e)
            if len(u):
                src, iu = torch.unique(u.long(), return_inverse=True)
                dst, iv = torch.unique(v.long(), return_inverse=True)
                # index_select, not x[idx]: its gradient is an index_add, not a sorting index_put (2x on CPU)
                feat = self.fc[k](x_src[s].index_select(0, src)).view(-1, heads, d)
                el = (feat * self.attn_l[k]).sum(dim=-1)  # (sources, heads)
                w_r = (self.fc[k].weight.view(heads, d, -1) * self.attn_r[k].view(heads, d, 1)).sum(dim=1)
                er = x_dst[t].index_select(0, dst) @ w_r.T  # (destinations, heads) = a_r . W h_dst
                score = F.leaky_relu(el.index_select(0, iu) + er.index_select(0, iv),
                                     self.negative_slope).unsqueeze(-1)
                # the relation's edges between its own sources and all dst nodes: DGL's fused kernels on it
                rel = dgl.create_block((iu, v.long()), num_src_nodes=len(src), num_dst_nodes=n_dst)
                alpha = self.attn_drop(dgl.ops.edge_softmax(rel, score))
                rst = rst + dgl.ops.u_mul_e_sum(rel, feat, alpha)
            out[t] = rst if t not in out else out[t] + rst
        return out


class HeteroGNN(nn.Module):
    """NodeInput + GAT layers over DGL blocks or a whole graph; unit-norm out_dim embeddings per node type."""

    def __init__(self, cfg: GNNConfig, specs: dict[str, NodeSpec], etypes: list[EType]):
        super().__init__()
        self.cfg = cfg
        self.ntypes = sorted(specs)
        self.etypes = [tuple(e) for e in etypes]
        self.input = NodeInput(cfg, specs)
        self.convs, self.selfs = nn.ModuleList(), nn.ModuleList()
        for layer in range(cfg.layers):
            last = layer == cfg.layers - 1
            per_head = cfg.out_dim if last else cfg.hidden // cfg.heads
            self.convs.append(RelationGAT(self.etypes, cfg.hidden, per_head, cfg.heads, dropout=cfg.dropout,
                                          negative_slope=cfg.negative_slope))
            width = cfg.out_dim if last else cfg.hidden
            self.selfs.append(nn.ModuleDict({nt: nn.Linear(cfg.hidden, width) for nt in self.ntypes})
                              if cfg.self_attention else None)
        self.norms = nn.ModuleDict({nt: nn.BatchNorm1d(cfg.out_dim) for nt in self.ntypes})
        # the node's own inputs straight to the output (jumping knowledge): its text is never diluted by hops
        self.skip = nn.ModuleDict({nt: nn.Linear(cfg.hidden, cfg.out_dim) for nt in self.ntypes}) \
            if cfg.input_skip else None
        # text residual: fixed basis (fit_text_basis) and a learned weight, starting at the norm of a BatchNorm output
        self.text_types = [nt for nt in self.ntypes if cfg.use_text and cfg.text_residual and specs[nt].text_dim
                           and nt in ENTITY_TYPES]
        for nt in self.text_types:
            self.register_buffer(f"text_basis_{nt}", torch.zeros(specs[nt].text_dim, cfg.out_dim))
        self.text_weight = nn.ParameterDict({nt: nn.Parameter(torch.tensor(float(cfg.out_dim) ** 0.5))
                                             for nt in self.text_types})

    @torch.no_grad()
    def fit_text_basis(self, features: dict) -> None:
        """Basis of the text residual: the top out_dim right singular vectors of every member and job text
        embedding (one basis per text width, shared by the types that have it, so member-job text cosines survive
        the projection; exact when text_dim <= out_dim)."""
        widths: dict[int, list[str]] = {}
        for nt in self.text_types:
            widths.setdefault(features[nt]["text"].shape[1], []).append(nt)
        for d, types in widths.items():
            if d <= self.cfg.out_dim:
                basis = torch.eye(d, self.cfg.out_dim)
            else:
                x = torch.cat([features[nt]["text"][features[nt]["text_mask"]] for nt in types]).float()
                if len(x) > 50000:  # the leading axes of a random sample are the same to within noise
                    x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:50000]]
                basis = torch.linalg.svd(x, full_matrices=False)[2][:self.cfg.out_dim].T
                if basis.shape[1] < self.cfg.out_dim:  # fewer texts than out_dim
                    basis = torch.cat([basis, basis.new_zeros(d, self.cfg.out_dim - basis.shape[1])], dim=1)
            for nt in types:
                getattr(self, f"text_basis_{nt}").copy_(basis)

    def text_of(self, nids: dict[str, torch.Tensor], features: dict) -> dict[str, torch.Tensor]:
        """Raw text embeddings (zero where a node has none) of the text-residual node types in nids."""
        out = {}
        for nt in self.text_types:
            if nt in nids:
                idx = nids[nt].long()
                out[nt] = features[nt]["text"][idx] * features[nt]["text_mask"][idx].unsqueeze(1)
        return out

    def layer(self, index: int, g, h_src: dict, h_dst: dict) -> dict:
        """One layer on a block or graph; returns hidden features of every dst node type present in h_dst."""
        last = index == len(self.convs) - 1
        msgs = self.convs[index](g, h_src, h_dst)
        out = {}
        for nt, h in h_dst.items():
            m = msgs.get(nt)
            if m is not None:  # (n, heads, per_head): concatenate heads inside, average them at the end
                m = m.mean(dim=1) if last else m.flatten(1)
            if self.selfs[index] is not None:
                s = self.selfs[index][nt](h)
                m = s if m is None else m + s
            if m is None:
                m = h.new_zeros(len(h), self.cfg.out_dim if last else self.cfg.hidden)
            out[nt] = m if last else F.leaky_relu(m, self.cfg.negative_slope)
        return out

    def finish(self, h: dict, *, h0: dict | None = None, t0: dict | None = None, return_raw: bool = False):
        """(+ input skip of h0, the dst nodes' inputs) BatchNorm per node type (+ text residual of t0, their raw
        texts), then L2 normalisation (and the pre-normalisation vectors for the L2 term)."""
        raw, out = {}, {}
        for nt, x in h.items():
            if self.skip is not None and h0 is not None:
                x = x + self.skip[nt](h0[nt][:len(x)])
            bn = self.norms[nt]
            if self.training and len(x) < 2:  # batch statistics of one node are undefined: use the running ones
                x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
            else:
                x = bn(x)
            raw[nt] = x
            if t0 is not None and nt in t0:
                x = x + self.text_weight[nt] * (t0[nt][:len(x)] @ getattr(self, f"text_basis_{nt}"))
            out[nt] = x
        z = {nt: F.normalize(x, dim=1) for nt, x in out.items()}
        return (z, raw) if return_raw else z

    def forward(self, blocks: list, features: dict, *, return_raw: bool = False):
        """Embeddings of blocks[-1]'s dst nodes; features = MarketGraph.features (rows picked by dgl.NID)."""
        dgl = import_dgl()
        nids = {nt: blocks[0].srcnodes[nt].data[dgl.NID] for nt in blocks[0].srctypes
                if blocks[0].num_src_nodes(nt)}
        h0 = h = self.input(nids, features)  # every block's dst nodes are a prefix of its src nodes
        for i, block in enumerate(blocks):
            h_dst = {nt: x[:block.num_dst_nodes(nt)] for nt, x in h.items() if block.num_dst_nodes(nt)}
            h = self.layer(i, block, h, h_dst)
        return self.finish(h, h0=h0, t0=self.text_of(nids, features), return_raw=return_raw)

    def forward_full(self, graph, features: dict, *, return_raw: bool = False):
        """Every node of every type with all its neighbours, the whole graph in memory."""
        nids = {nt: torch.arange(graph.num_nodes(nt)) for nt in graph.ntypes}
        h0 = h = self.input(nids, features)
        for i in range(len(self.convs)):
            h = self.layer(i, graph, h, h)
        return self.finish(h, h0=h0, t0=self.text_of(nids, features), return_raw=return_raw)


class LinkDecoder(nn.Module):
    """One scorer per task (a canonical member -> job etype) and the multi-task loss of paper eq. 6-7."""

    def __init__(self, cfg: GNNConfig, tasks: list[EType], weights: dict[EType, float] | None = None):
        super().__init__()
        self.cfg = cfg
        self.tasks = [tuple(t) for t in tasks]
        weights = weights or {}
        unknown = [w for w in weights if tuple(w) not in self.tasks]
        if unknown:
            raise ConfigError(f"task weights for {unknown} but the tasks are {self.tasks}; weight only tasks")
        self.weights = {t: float(weights.get(t, 1.0)) for t in self.tasks}
        if cfg.decoder == "mlp":
            self.mlps = nn.ModuleDict({str(t): nn.Sequential(
                nn.Linear(cfg.out_dim, cfg.hidden), nn.LeakyReLU(cfg.negative_slope), nn.Linear(cfg.hidden, 1))
                for t in self.tasks})

    def score(self, task: EType, z_src: torch.Tensor, z_dst: torch.Tensor) -> torch.Tensor:
        """Logits for row-aligned pairs."""
        if self.cfg.decoder == "dot":
            return self.cfg.dot_scale * (z_src * z_dst).sum(dim=1)
        return self.mlps[str(tuple(task))](z_src * z_dst).squeeze(1)

    def score_graph(self, pair_graph, z: dict) -> dict[EType, torch.Tensor]:
        """Logits of every task edge in a pair graph (the positive or negative graph of an edge loader)."""
        out = {}
        for task in self.tasks:
            if task not in pair_graph.canonical_etypes:
                continue
            src, dst = pair_graph.edges(etype=task)
            out[task] = self.score(task, z[task[0]][src.long()], z[task[2]][dst.long()])
        return out

    def loss(self, pos: dict[EType, torch.Tensor], neg: dict[EType, torch.Tensor]) -> torch.Tensor:
        """sum_i lambda_i * BCE_i, where BCE_i is the mean over task i's positives (label 1) and negatives (0)."""
        total = None
        for task in self.tasks:
            p, n = pos.get(task), neg.get(task)
            if p is None or not len(p):
                continue
            logits = torch.cat([p, n if n is not None else p.new_zeros(0)])
            labels = torch.cat([torch.ones_like(p), torch.zeros(len(logits) - len(p), dtype=p.dtype)])
            term = self.weights[task] * F.binary_cross_entropy_with_logits(logits, labels)
            total = term if total is None else total + term
        if total is None:
            raise ValueError("no task has positive edges in this batch; nothing to learn from")
        return total


def l2_penalty(raw: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean squared norm of the final (pre-normalisation) embeddings over every node in the batch."""
    rows = torch.cat([x for x in raw.values() if len(x)])
    return rows.pow(2).sum(dim=1).mean()
