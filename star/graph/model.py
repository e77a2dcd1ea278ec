"""The STAR graph model (paper §4): node inputs -> heterogeneous GAT encoder -> per-task link decoders.

    MarketGraph.features[ntype]  text (n, d) | categorical codes (n, k) | node index (learned ID)
        --NodeInput (star.graph.inputs): Linear(text projection | categorical | ID), or with text_gate
          Linear(categorical | ID) + g * text projection (g learned from 0)
    HeteroGNN: `layers` x RelationGAT (= HeteroGraphConv({canonical etype: GATConv}, sum)) + a self term W_self h_dst
        (the target node attending to itself), LeakyReLU between layers,
        + a projection of the node's own inputs (input_skip), BatchNorm1d per node type,
        + w * (own text @ P) for members and jobs (text_residual; P = the texts' top principal axes, fixed;
          w from sqrt(out_dim), or learned from 0 with text_gate),
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
from star.graph.inputs import ENTITY_TYPES, NodeInput, NodeSpec, input_specs, text_keep  # noqa: F401

__all__ = ["GNNConfig", "HeteroGNN", "LinkDecoder", "NodeInput", "NodeSpec", "RelationGAT", "input_specs"]

EType = tuple[str, str, str]
# GNNConfig fields added after checkpoints were first written -> the value that reproduces those checkpoints
LEGACY_DEFAULTS = {"text_gate": False, "text_dropout": 0.0}


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
    text_gate: bool = field(default=False, metadata={"help": "text enters through gates learned from 0 (per "
                                                             "hidden dimension on the input, the residual weight): "
                                                             "at initialisation the model is the text-free one; "
                                                             "off by default: on a small market the gates stayed "
                                                             "shut and lost the gain good text gives (measured, "
                                                             "docs/graph-embeddings.md); the default text path is "
                                                             "concatenation + a residual from text similarity, and "
                                                             "`star graph train` keeps GNN-categorical instead when "
                                                             "it validates better"})
    text_dropout: float = field(default=0.0, metadata={"help": "while training, drop a node's whole text (input "
                                                               "and residual) with this probability"})
    l2_reg: float = field(default=1e-5, metadata={"help": "weight of mean |z|^2 of the final embeddings before "
                                                          "normalisation (after it |z| is always 1)"})

    def __post_init__(self):
        if self.attention != "gat":
            raise ConfigError(f"attention={self.attention!r} is not implemented; use 'gat'")
        if self.decoder not in ("mlp", "dot"):
            raise ConfigError(f"decoder={self.decoder!r}; use 'mlp' or 'dot'")
        require_at_least("GNNConfig", 1, hidden=self.hidden, out_dim=self.out_dim, cat_dim=self.cat_dim)
        require_at_least("GNNConfig", 0, id_dim=self.id_dim, l2_reg=self.l2_reg, dropout=self.dropout,
                         text_dropout=self.text_dropout)
        for name in ("dropout", "text_dropout"):
            if getattr(self, name) >= 1:
                value = getattr(self, name)
                raise ConfigError(f"GNNConfig: {name}={value} must be < 1; pass a value in [0, 1), e.g. 0.1")
        if self.layers < 1 or self.heads < 1 or self.hidden % self.heads:
            raise ConfigError(f"layers={self.layers}, heads={self.heads}, hidden={self.hidden}: need layers >= 1 "
                              "and hidden divisible by heads, e.g. hidden=128, heads=4")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GNNConfig":
        """A config as saved by to_dict; fields it lacks (an older checkpoint) take the value that reproduces the
        model it was saved with (LEGACY_DEFAULTS), not today's default."""
        return cls(**{**LEGACY_DEFAULTS, **d})


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
        # text residual: fixed basis (fit_text_basis) and a learned weight w = residual_scale * text_weight, at the
        # norm of a BatchNorm output (sqrt(out_dim)) from the start, or (text_gate) learned from 0 on that scale
        self.text_types = [nt for nt in self.ntypes if cfg.use_text and cfg.text_residual and specs[nt].text_dim
                           and nt in ENTITY_TYPES]
        for nt in self.text_types:
            self.register_buffer(f"text_basis_{nt}", torch.zeros(specs[nt].text_dim, cfg.out_dim))
        self.residual_scale = float(cfg.out_dim) ** 0.5 if cfg.text_gate else 1.0
        start = 0.0 if cfg.text_gate else float(cfg.out_dim) ** 0.5
        self.text_weight = nn.ParameterDict({nt: nn.Parameter(torch.tensor(start)) for nt in self.text_types})

    def text_gates(self) -> dict[str, dict[str, float]]:
        """How much each node type uses its text: 'input', the RMS of the input gate (0 = closed; the text projection
        is LayerNorm-scaled like the categorical and ID embeddings; 1.0 without the gate), and 'residual', the text
        residual's weight over sqrt(out_dim), the norm of a BatchNorm output (0 = closed; 1.0 = the ungated start)."""
        out = {}
        for nt in sorted(set(self.input.text) | set(self.text_types)):
            g = {}
            if nt in self.input.text:
                gate = self.input.gate[nt].detach() if nt in self.input.gate else None
                g["input"] = 1.0 if gate is None else round(float(gate.pow(2).mean().sqrt()), 4)
            if nt in self.text_types:
                w = float(self.text_weight[nt].detach()) * self.residual_scale / float(self.cfg.out_dim) ** 0.5
                g["residual"] = round(w, 4)
            out[nt] = g
        return out

    @torch.no_grad()
    def close_text_gates(self) -> None:
        """Set every text gate to 0: the model then computes what it would without text (text_gate only)."""
        if not self.cfg.text_gate:
            raise ConfigError("close_text_gates needs a model with text_gate=True; an ungated model mixes text "
                              "into its input weights")
        for g in self.input.gate.values():
            g.zero_()
        for w in self.text_weight.values():
            w.zero_()

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

    def text_keep(self, nids: dict[str, torch.Tensor], features: dict) -> dict[str, torch.Tensor]:
        """Bool per node of every text node type in nids: its text is used (has one; not dropped by text_dropout
        while training). One draw for the input and the residual."""
        types = sorted(set(self.input.text) | set(self.text_types))
        return text_keep(nids, features, types, self.cfg.text_dropout, self.training)

    def text_of(self, nids: dict[str, torch.Tensor], features: dict,
                keep: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Raw text embeddings (zero where a node has none, or keep is False) of the text-residual types in nids."""
        out = {}
        for nt in self.text_types:
            if nt in nids:
                idx = nids[nt].long()
                mask = features[nt]["text_mask"][idx] if keep is None else keep[nt]
                out[nt] = features[nt]["text"][idx] * mask.unsqueeze(1).to(features[nt]["text"].dtype)
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
                w = self.text_weight[nt] * self.residual_scale
                x = x + w * (t0[nt][:len(x)] @ getattr(self, f"text_basis_{nt}"))
            out[nt] = x
        z = {nt: F.normalize(x, dim=1) for nt, x in out.items()}
        return (z, raw) if return_raw else z

    def forward(self, blocks: list, features: dict, *, return_raw: bool = False):
        """Embeddings of blocks[-1]'s dst nodes; features = MarketGraph.features (rows picked by dgl.NID)."""
        dgl = import_dgl()
        nids = {nt: blocks[0].srcnodes[nt].data[dgl.NID] for nt in blocks[0].srctypes
                if blocks[0].num_src_nodes(nt)}
        keep = self.text_keep(nids, features)
        h0 = h = self.input(nids, features, keep)  # every block's dst nodes are a prefix of its src nodes
        for i, block in enumerate(blocks):
            h_dst = {nt: x[:block.num_dst_nodes(nt)] for nt, x in h.items() if block.num_dst_nodes(nt)}
            h = self.layer(i, block, h, h_dst)
        return self.finish(h, h0=h0, t0=self.text_of(nids, features, keep), return_raw=return_raw)

    def forward_full(self, graph, features: dict, *, return_raw: bool = False):
        """Every node of every type with all its neighbours, the whole graph in memory."""
        nids = {nt: torch.arange(graph.num_nodes(nt)) for nt in graph.ntypes}
        keep = self.text_keep(nids, features)
        h0 = h = self.input(nids, features, keep)
        for i in range(len(self.convs)):
            h = self.layer(i, graph, h, h)
        return self.finish(h, h0=h0, t0=self.text_of(nids, features, keep), return_raw=return_raw)


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
