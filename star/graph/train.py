"""Train the graph model on a MarketGraph with a time split, and embed every member and job.

    task edges (member -> job relations) sorted by ts: the latest val_fraction --> validation (from cut_ts on)
    training graph = every member <-> job interaction stamped before cut_ts (validation edges, and any other
                     interaction as late, never pass messages during training) + all attribute edges
    per epoch: edge_loader(training graph, task edges: all, or steps_per_epoch batches of a fresh shuffle)
               --> HeteroGNN(blocks) --> LinkDecoder --> sum_i w_i BCE_i
               --> layer-wise full-neighbour embeddings of the training graph --> val AUC per task
               (each validation edge against one (member, job of the validation window) pair) --> AdaptiveFanout.update
    the weights of the epoch with the best mean val AUC are kept; with patience, training stops after that many
    epochs without a better one (adaptive: at its largest fanouts)
    text_selection (text-gated models): each epoch is also validated with its text gates closed, a candidate like
    the others: kept with its gates closed if it validates best (metrics: text_gates, text_closed)
    embed_all: layer-wise inference on the whole graph (validation edges included), member and job, unit norm
"""

from __future__ import annotations

import copy
import itertools
import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from star.common import roc_auc, seed_run
from star.errors import ConfigError, require_at_least
from star.graph import sampling
from star.graph.aligner import Aligner, AlignTarget, cosine_report
from star.graph.dgl_compat import import_dgl
from star.graph.model import GNNConfig, HeteroGNN, LinkDecoder, input_specs, l2_penalty

__all__ = ["GraphTrainConfig", "GraphTrainResult", "embed_all", "split_by_time", "train_gnn"]

log = logging.getLogger(__name__)
EType = tuple[str, str, str]


@dataclass(frozen=True, kw_only=True)
class GraphTrainConfig:
    epochs: int = field(default=10, metadata={"help": "passes over the training task edges (at most, with patience)"})
    steps_per_epoch: int | None = field(default=None, metadata={
        "help": "end an epoch (validate, adapt the fanouts, check patience) after this many batches of a fresh "
                "shuffle instead of a full pass; for graphs too large to validate only once per pass"})
    patience: int = field(default=0, metadata={"help": "stop after this many epochs without a better validation AUC "
                                                       "(adaptive: only once at its largest fanouts); 0 = never"})
    batch_size: int = field(default=512, metadata={"help": "positive edges per step"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    neg_k: int = field(default=1, metadata={"help": "negative jobs per positive edge"})
    negatives: str = field(default="popularity", metadata={"help": "'popularity': negatives drawn like the task "
                                                                   "edges' jobs (learn matching); 'uniform': any job"})
    tasks: tuple[tuple[str, str, str], ...] | None = field(
        default=None, metadata={"help": "canonical etypes to predict; None = every member -> job relation"})
    task_weights: dict | None = field(default=None, metadata={"help": "etype -> lambda_i; None = 1.0 each"})
    sampler: str = field(default="adaptive", metadata={"help": "'adaptive' | 'uniform' | 'temporal'"})
    fanouts: tuple[int, ...] = field(default=(10, 10), metadata={"help": "per layer, for uniform / temporal"})
    adaptive_start: tuple[int, ...] = field(default=(3, 3), metadata={"help": "first fanouts of 'adaptive'"})
    adaptive_max: tuple[int, ...] = field(default=(20, 20), metadata={"help": "largest fanouts of 'adaptive'"})
    half_life_days: float = field(default=30.0, metadata={"help": "recency half-life of the temporal sampler"})
    val_fraction: float = field(default=0.2, metadata={"help": "latest share of task edges held out"})
    val_negatives: str = field(default="window", metadata={"help": "'window': negatives are jobs of the validation "
                                                                   "window (popularity-matched); 'uniform': any job"})
    align_weight: float = field(default=1.0, metadata={"help": "weight of the alignment loss when training with "
                                                               "alignment targets (star.graph.align)"})
    text_gate_lr: float = field(default=0.03, metadata={"help": "Adam learning rate of the text gates (text_gate "
                                                                "models): a gate starts at 0 and Adam moves it about "
                                                                "its lr per step, so at lr=1e-3 text would take "
                                                                "~1000 steps to reach the other inputs' scale"})
    text_selection: bool = field(default=True, metadata={"help": "text-gated models: validate each epoch also with "
                                                                 "the text gates closed and keep that model if it "
                                                                 "validates best (text that does not help on "
                                                                 "held-out edges is switched off)"})
    eval_batch_size: int = field(default=4096, metadata={"help": "nodes per step of layer-wise inference"})
    seed: int = field(default=0, metadata={"help": "python, numpy, torch and dgl seeds"})

    def __post_init__(self):
        if self.sampler not in ("adaptive", "uniform", "temporal"):
            raise ConfigError(f"sampler={self.sampler!r}; use 'adaptive', 'uniform' or 'temporal'")
        if self.negatives not in ("popularity", "uniform"):
            raise ConfigError(f"negatives={self.negatives!r}; use 'popularity' or 'uniform'")
        if self.val_negatives not in ("window", "uniform"):
            raise ConfigError(f"val_negatives={self.val_negatives!r}; use 'window' or 'uniform'")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction={self.val_fraction}: must be in (0, 1), e.g. 0.2")
        if self.patience < 0:
            raise ConfigError(f"patience={self.patience}: must be >= 0 (0 = run every epoch); pass --patience with "
                              "a value >= 0")
        if self.align_weight < 0:
            raise ConfigError(f"align_weight={self.align_weight}: must be >= 0, e.g. 1.0")
        require_at_least("GraphTrainConfig", 1, epochs=self.epochs, batch_size=self.batch_size, neg_k=self.neg_k,
                         eval_batch_size=self.eval_batch_size)
        require_at_least("GraphTrainConfig", 0, strict=True, lr=self.lr, half_life_days=self.half_life_days,
                         text_gate_lr=self.text_gate_lr)
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(f"steps_per_epoch={self.steps_per_epoch}: must be >= 1; pass --steps-per-epoch with a "
                              "value >= 1, or leave it out for full passes")
        if self.tasks is not None:
            object.__setattr__(self, "tasks", tuple(tuple(t) for t in self.tasks))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["task_weights"] = None if self.task_weights is None else {":".join(k): v
                                                                    for k, v in self.task_weights.items()}
        return d


@dataclass(kw_only=True)
class GraphTrainResult:
    model: HeteroGNN
    decoder: LinkDecoder
    tasks: list[EType]
    cut_ts: float = field(metadata={"help": "validation edges are those at or after this epoch second"})
    metrics: dict = field(metadata={"help": "val_auc (task -> per epoch), epoch_seconds, fanouts, seconds, ..."})
    aligner: Aligner | None = field(default=None, metadata={"help": "the jointly trained maps (align given)"})
    align: dict | None = field(default=None, metadata={"help": "entity -> AlignTarget.describe()"})


def _tasks(graph, requested) -> list[EType]:
    present = [e for e in graph.canonical_etypes if e[0] == "member" and e[2] == "job" and
               not e[1].startswith("rev_")]
    if requested is None:
        if not present:
            raise ConfigError("the graph has no member -> job relation to train on")
        return present
    missing = [t for t in requested if t not in present]
    if missing:
        raise ConfigError(f"tasks {missing} are not member -> job relations of the graph; it has {present}")
    return list(requested)


def split_by_time(graph, tasks: list[EType], val_fraction: float):
    """(training graph, cut_ts, train eids per task in the training graph, validation (src, dst) per task).

    cut_ts is the time of the first validation edge over all tasks. The training graph keeps, of every member <->
    job interaction type (tasks or not, and their rev_ twins), only edges stamped strictly before it: no later
    interaction passes messages. Attribute edges (skills, titles, ...) stay as of the graph's cutoff, like the
    node features, so a job posted after cut_ts is not an isolated node. Same node ids, so features line up."""
    dgl = import_dgl()
    ts = np.sort(np.concatenate([graph.edges[t].data["ts"].numpy() for t in tasks]))
    if not len(ts):
        raise ConfigError(f"the graph has 0 {'/'.join(t[1] for t in tasks)} edges by its cutoff: nothing to train "
                          "on; pass a later --cutoff (or load interactions before it)")
    cut_ts = float(ts[min(len(ts) - 1, int(len(ts) * (1 - val_fraction)))])
    keep, train_eids, val = {}, {}, {}
    for etype in graph.canonical_etypes:
        if {etype[0], etype[2]} == {"member", "job"}:
            keep[etype] = torch.nonzero(graph.edges[etype].data["ts"] < cut_ts).squeeze(1).to(graph.idtype)
        else:  # attribute edges are entity state as of the graph's cutoff, like the text and categorical features
            keep[etype] = torch.arange(graph.num_edges(etype), dtype=graph.idtype)
    for t in tasks:
        late = torch.nonzero(graph.edges[t].data["ts"] >= cut_ts).squeeze(1)
        src, dst = graph.find_edges(late.to(graph.idtype), etype=t)
        val[t] = (src.long(), dst.long())
        train_eids[t] = torch.arange(len(keep[t]), dtype=graph.idtype)  # edge_subgraph keeps the order
    if sum(len(v[0]) for v in val.values()) == 0 or sum(len(e) for e in train_eids.values()) == 0:
        times = len(np.unique(ts))
        raise ConfigError(f"val_fraction={val_fraction} leaves no training or no validation edges: the {len(ts)} "
                          f"task edges by the cutoff have {times} distinct time(s), and validation takes the latest "
                          "ones; pick a later --cutoff (or load interactions spread over more time)"
                          + ("" if times > 1 else ": a split by time needs at least two"))
    train_graph = dgl.edge_subgraph(graph, keep, relabel_nodes=False, store_ids=False)
    return train_graph, cut_ts, train_eids, val


def _sampler(cfg: GraphTrainConfig, adaptive: sampling.AdaptiveFanout | None):
    if cfg.sampler == "adaptive":
        return sampling.uniform(adaptive.fanouts)
    if cfg.sampler == "temporal":
        return sampling.temporal(cfg.fanouts, half_life_days=cfg.half_life_days)
    return sampling.uniform(cfg.fanouts)


@torch.no_grad()
def infer(model: HeteroGNN, graph, features: dict, batch_size: int = 4096, *, shard=None) -> dict[str, torch.Tensor]:
    """Layer-wise full-neighbour inference: each layer for every node before the next; unit-norm embeddings.
    shard (star.graph.distributed.Shard, called on every rank): each rank computes its range of nodes per layer and
    the layer is summed across ranks (zeros elsewhere, so the sum is exact) before the next one."""
    dgl = import_dgl()
    was_training = model.training
    model.eval()
    h = {}
    for nt in graph.ntypes:
        ids = torch.arange(graph.num_nodes(nt))
        if shard is None:
            h[nt] = torch.cat([model.input({nt: c}, features)[nt] for c in ids.split(batch_size)]) if len(ids) \
                else torch.zeros(0, model.cfg.hidden)
            continue
        h[nt], own = torch.zeros(len(ids), model.cfg.hidden), shard.nodes(ids)
        if len(own):
            h[nt][own] = torch.cat([model.input({nt: c}, features)[nt] for c in own.split(batch_size)])
        h[nt] = shard.sum(h[nt])
    h0 = h
    nids = {nt: torch.arange(graph.num_nodes(nt), dtype=graph.idtype) for nt in graph.ntypes}
    t0 = model.text_of(nids, features)
    if shard is not None:
        nids = {nt: own for nt, own in ((nt, shard.nodes(ids)) for nt, ids in nids.items()) if len(own)}
    full = dgl.dataloading.MultiLayerFullNeighborSampler(1)
    for i in range(len(model.convs)):
        width = model.cfg.out_dim if i == len(model.convs) - 1 else model.cfg.hidden
        nxt = {nt: torch.zeros(graph.num_nodes(nt), width) for nt in graph.ntypes}
        loader = dgl.dataloading.DataLoader(graph, nids, full, batch_size=batch_size, shuffle=False,
                                            drop_last=False, num_workers=0) if nids else ()
        for input_nodes, output_nodes, blocks in loader:
            block = blocks[0]
            h_src = {nt: h[nt][ids.long()] for nt, ids in input_nodes.items() if len(ids)}
            h_dst = {nt: h_src[nt][:block.num_dst_nodes(nt)] for nt in h_src if block.num_dst_nodes(nt)}
            for nt, x in model.layer(i, block, h_src, h_dst).items():
                nxt[nt][output_nodes[nt].long()] = x
        h = nxt if shard is None else {nt: shard.sum(x) for nt, x in nxt.items()}
    z = model.finish(h, h0=h0, t0=t0)
    model.train(was_training)
    return z


def _val_negatives(val: dict, num_nodes: dict, mode: str, seed: int) -> dict[EType, torch.Tensor]:
    """One negative job per validation edge, fixed for the run (every epoch scores the same pairs).

    'window': a job drawn from the destinations of all validation edges (any task), i.e. as often as it was
    interacted with in the validation window: popularity and recency are then equal on both sides and the AUC
    measures matching. 'uniform': any job, which rewards knowing which jobs are new and open. Never the edge's own
    job."""
    gen = np.random.default_rng(seed)
    pool = torch.cat([dst for _, dst in val.values()]).numpy()
    out = {}
    for t, (_, dst) in val.items():
        jobs = pool if mode == "window" else np.arange(num_nodes[t[2]])
        out[t] = torch.from_numpy(sampling.draw_negatives(jobs, dst.numpy(), 1, gen)[:, 0])
    return out


def _val_auc(decoder: LinkDecoder, z: dict, val: dict, negatives: dict) -> dict[str, float | None]:
    out = {}
    with torch.no_grad():
        for t, (src, dst) in val.items():
            if not len(src):
                out[":".join(t)] = None
                continue
            neg = negatives[t]
            pos_s = decoder.score(t, z[t[0]][src], z[t[2]][dst])
            neg_s = decoder.score(t, z[t[0]][src], z[t[2]][neg])
            labels = np.r_[np.ones(len(src)), np.zeros(len(src))]
            out[":".join(t)] = roc_auc(labels, torch.cat([pos_s, neg_s]).numpy())
    return out


def _text_closed(model: HeteroGNN) -> HeteroGNN:
    """A copy of a text-gated model with every text gate at 0 (= what it computes without text)."""
    closed = copy.deepcopy(model)
    closed.close_text_gates()
    return closed


class _Step(torch.nn.Module):
    """Model, decoder (and aligner) as one module whose forward is a training step's loss: what DDP wraps, so one
    backward averages the gradients of all three across ranks."""

    def __init__(self, model: HeteroGNN, decoder: LinkDecoder, aligner: Aligner | None):
        super().__init__()
        self.model, self.decoder, self.aligner = model, decoder, aligner

    def forward(self, blocks, pos_g, neg_g, features, l2_reg: float, align: tuple[dict, float] | None):
        z, raw = self.model(blocks, features, return_raw=True)
        loss = self.decoder.loss(self.decoder.score_graph(pos_g, z), self.decoder.score_graph(neg_g, z))
        if l2_reg:
            loss = loss + l2_reg * l2_penalty(raw)
        if align is not None:
            targets, weight = align
            nids = {nt: blocks[-1].dstnodes[nt].data[import_dgl().NID] for nt in z}
            term = self.aligner.loss(z, nids, targets)
            if term is not None:
                loss = loss + weight * term
        return loss


def _epoch(step, opt, loader, features, l2_reg: float, desc: str, progress: bool,
           align: tuple[dict[str, AlignTarget], float] | None = None,
           max_steps: int | None = None) -> tuple[float, int]:
    """(mean training loss, batches) of one epoch: the whole loader, or its first max_steps batches."""
    inner = getattr(step, "module", step)  # under DDP, the _Step it wraps
    inner.model.train()
    inner.decoder.train()
    total, steps = 0.0, 0
    batches = loader if max_steps is None else itertools.islice(loader, max_steps)
    bar_total = len(loader) if max_steps is None else min(max_steps, len(loader))
    for _, pos_g, neg_g, blocks in tqdm(batches, total=bar_total, desc=desc, disable=not progress, leave=False):
        loss = step(blocks, pos_g, neg_g, features, l2_reg, align)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total, steps = total + float(loss.detach()), steps + 1
    return total / max(steps, 1), steps


def train_gnn(mg, model_cfg: GNNConfig, train_cfg: GraphTrainConfig, *, progress: bool = True,
              align: dict[str, AlignTarget] | None = None, dist=None) -> GraphTrainResult:
    """Train on the edges before the time cut, validate on the latest ones; see the module docstring. With
    `align` (star.graph.align.alignment_targets) a linear map into the previous vintage's space is trained with the
    model (BC-Aligner), weighted by train_cfg.align_weight. `dist`: one rank's Shard of a DDP run
    (star.graph.distributed.fit runs this in N processes)."""
    dgl = import_dgl()
    started = time.perf_counter()
    seed_run(train_cfg.seed)
    dgl.seed(train_cfg.seed)
    tasks = _tasks(mg.graph, train_cfg.tasks)
    train_graph, cut_ts, train_eids, val = split_by_time(mg.graph, tasks, train_cfg.val_fraction)
    model = HeteroGNN(model_cfg, input_specs(mg), mg.graph.canonical_etypes)
    model.fit_text_basis(mg.features)
    weights = {tuple(k): v for k, v in (train_cfg.task_weights or {}).items()}
    decoder = LinkDecoder(model_cfg, tasks, weights)
    aligner = Aligner(model_cfg.out_dim, {nt: t.to_dim for nt, t in align.items()}) if align else None
    if aligner:
        aligner.refit(infer(model, train_graph, mg.features, train_cfg.eval_batch_size), align)
    gates = [*model.input.gate.values(), *model.text_weight.values()] if model_cfg.text_gate else []
    rest = [p for p in model.parameters() if all(p is not g for g in gates)]
    step = _Step(model, decoder, aligner) if dist is None else dist.wrap(_Step(model, decoder, aligner))
    shard = None if dist is None else dist  # every validation inference is split by node ranges across the ranks
    opt = torch.optim.Adam([{"params": [*rest, *decoder.parameters(), *(aligner.parameters() if aligner else [])]},
                            {"params": gates, "lr": train_cfg.text_gate_lr}], lr=train_cfg.lr)
    adaptive = (sampling.AdaptiveFanout(start=train_cfg.adaptive_start, maximum=train_cfg.adaptive_max)
                if train_cfg.sampler == "adaptive" else None)
    num_nodes = {nt: mg.graph.num_nodes(nt) for nt in mg.graph.ntypes}
    negatives = _val_negatives(val, num_nodes, train_cfg.val_negatives, train_cfg.seed)
    metrics = {"val_auc": {":".join(t): [] for t in tasks}, "mean_val_auc": [], "train_loss": [],
               "epoch_seconds": [], "steps": [], "fanouts": [], "cut_ts": cut_ts, "align_cos": [],
               "text_gates": [], "mean_val_auc_text_off": [], "text_closed": False,
               "train_edges": {":".join(t): len(e) for t, e in train_eids.items()},
               "val_edges": {":".join(t): len(v[0]) for t, v in val.items()},
               "engine": "local" if dist is None else "ddp", "workers": 1 if dist is None else dist.world}
    best, best_state, since_best = -1.0, None, 0
    # (with an aligner, its maps are refit to the open model's embeddings: no closed candidates)
    selecting = (train_cfg.text_selection and model_cfg.text_gate and aligner is None
                 and bool(len(model.input.gate) or model.text_types))
    for epoch in range(train_cfg.epochs):
        t0 = time.perf_counter()
        sampler = _sampler(train_cfg, adaptive)
        metrics["fanouts"].append(list(sampler.fanouts))
        if dist is None:
            loader = sampling.edge_loader(mg, tasks, sampler, train_cfg.batch_size, train_cfg.neg_k, train_eids,
                                          train_cfg.seed + epoch, graph=train_graph, negatives=train_cfg.negatives)
        else:  # this rank's disjoint shard of a shuffle shared by all ranks; the global batch stays batch_size
            loader = sampling.edge_loader(mg, tasks, sampler, dist.batch_size(train_cfg.batch_size),
                                          train_cfg.neg_k, dist.edges(train_eids, train_cfg.seed + epoch),
                                          dist.seed(train_cfg.seed + epoch), graph=train_graph,
                                          negatives=train_cfg.negatives)
        loss, steps = _epoch(step, opt, loader, mg.features, model_cfg.l2_reg,
                             f"gnn epoch {epoch + 1}/{train_cfg.epochs}", progress,
                             (align, train_cfg.align_weight) if aligner else None, train_cfg.steps_per_epoch)
        metrics["epoch_seconds"].append(round(time.perf_counter() - t0, 3))
        metrics["steps"].append(steps)
        decoder.eval()
        z_val = infer(model, train_graph, mg.features, train_cfg.eval_batch_size, shard=shard)
        aucs = _val_auc(decoder, z_val, val, negatives)
        if aligner:
            aligner.refit(z_val, align)
            metrics["align_cos"].append(cosine_report(aligner, z_val, align))
        known = [a for a in aucs.values() if a is not None]
        mean = float(np.mean(known)) if known else float("nan")
        for k, a in aucs.items():
            metrics["val_auc"][k].append(a)
        metrics["mean_val_auc"].append(mean)
        metrics["train_loss"].append(loss)
        metrics["text_gates"].append(model.text_gates())
        log.info("epoch %d: loss %.4f, val auc %s, fanouts %s, text gates %s", epoch + 1, loss, aucs,
                 sampler.fanouts, metrics["text_gates"][-1])
        since_best += 1
        if known and mean > best:
            best, best_state = mean, (copy.deepcopy(model.state_dict()), copy.deepcopy(decoder.state_dict()),
                                      copy.deepcopy(aligner.state_dict()) if aligner else None, False)
            since_best = 0
        if selecting and known:
            closed = _text_closed(model)
            off = float(np.mean([a for a in _val_auc(decoder, infer(closed, train_graph, mg.features,
                                                                    train_cfg.eval_batch_size, shard=shard),
                                                     val, negatives).values() if a is not None]))
            metrics["mean_val_auc_text_off"].append(off)
            if off > best:
                best, best_state = off, (copy.deepcopy(closed.state_dict()), copy.deepcopy(decoder.state_dict()),
                                         copy.deepcopy(aligner.state_dict()) if aligner else None, True)
                since_best = 0
        at_max = adaptive is None or adaptive.at_max
        if dist is None or dist.rank == 0:  # the sampler's decisions are made once, then broadcast
            if adaptive is not None and adaptive.update(mean if known else None):
                log.info("validation AUC plateaued: fanouts -> %s", adaptive.fanouts)
                since_best = 0  # larger fanouts get their own patience
            stop = bool(train_cfg.patience and at_max and since_best >= train_cfg.patience)
        if dist is not None:
            stop = dist.decide(adaptive, stop if dist.rank == 0 else False)
        if stop:
            log.info("no better validation AUC for %d epochs: stopping after epoch %d", since_best, epoch + 1)
            metrics["stopped_early"] = epoch + 1
            break
    if best_state is not None:
        model.load_state_dict(best_state[0])
        decoder.load_state_dict(best_state[1])
        if aligner:
            aligner.load_state_dict(best_state[2])
        metrics["text_closed"] = best_state[3]
    metrics["best_mean_val_auc"] = best if best_state is not None else None
    metrics["text_gates_kept"] = model.text_gates()
    metrics["fanout_history"] = [list(f) for f in adaptive.history] if adaptive else [list(train_cfg.fanouts)]
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    model.eval()
    decoder.eval()
    return GraphTrainResult(model=model, decoder=decoder, tasks=tasks, cut_ts=cut_ts, metrics=metrics,
                            aligner=aligner, align={nt: t.describe() for nt, t in align.items()} if align else None)


def embed_all(model: HeteroGNN, mg, batch_size: int = 4096) -> dict[str, np.ndarray]:
    """Member and job embeddings (n, out_dim) float32, unit norm, rows in mg.node_ids order, from the whole graph."""
    z = infer(model, mg.graph, mg.features, batch_size)
    return {nt: z[nt].numpy().astype(np.float32) for nt in ("member", "job") if nt in z}
