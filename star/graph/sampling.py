"""Neighbour samplers and the edge loader for training the graph model.

    uniform(fanouts)    GraphSAGE: up to fanouts[l] neighbours per node and edge type, uniformly
    temporal(fanouts)   same budget, neighbours drawn with weight exp((ts - newest ts of the type) / half_life):
                        recent edges first, old ones only when there are few recent ones
    AdaptiveFanout      small fanouts first, x factor when validation AUC plateaus (LiGNN-style)
    edge_loader         (input nodes, positive pair graph, negative pair graph, blocks) batches over task edges,
                        uniform or popularity-matched negatives (popularity_negatives), each batch's edges and
                        their rev_<relation> twins excluded from its blocks

Personalised-PageRank sampling (paper §4) is not implemented here.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from star.errors import ConfigError
from star.graph.dgl_compat import import_dgl

__all__ = ["RECENCY", "AdaptiveFanout", "add_recency_weights", "edge_loader", "popularity_negatives", "temporal",
           "uniform"]

RECENCY = "recency_w"  # edata key holding temporal sampling weights
DAY = 86400.0


def _fanouts(fanouts) -> list[int]:
    f = [int(x) for x in fanouts]
    if not f or any(x < 1 for x in f):
        raise ConfigError(f"fanouts={fanouts!r}: need one positive neighbour count per layer, e.g. (10, 10)")
    return f


def uniform(fanouts):
    """GraphSAGE neighbour sampler: fanouts[l] neighbours per edge type for layer l (first = input side)."""
    return import_dgl().dataloading.NeighborSampler(_fanouts(fanouts))


def temporal(fanouts, *, half_life_days: float = 30.0):
    """Recency-weighted neighbour sampler; the graph needs `add_recency_weights` (edge_loader does it)."""
    if half_life_days <= 0:
        raise ConfigError(f"half_life_days={half_life_days}: must be > 0, e.g. 30")
    sampler = import_dgl().dataloading.NeighborSampler(_fanouts(fanouts), prob=RECENCY)
    sampler.half_life_days = float(half_life_days)
    return sampler


def add_recency_weights(graph, half_life_days: float) -> None:
    """edata[RECENCY] per etype: exp((ts - max ts of that etype) / half-life), floored so no edge is impossible."""
    for etype in graph.canonical_etypes:
        ts = graph.edges[etype].data["ts"]
        if len(ts) == 0:
            graph.edges[etype].data[RECENCY] = torch.zeros(0)
            continue
        age = (ts - ts.max()) / (half_life_days * DAY)
        # float32 underflow would make old edges unreachable even for nodes with nothing newer
        graph.edges[etype].data[RECENCY] = torch.exp(age.clamp_min(-60.0)).float()


def prepare(graph, sampler) -> None:
    """Writes what a sampler reads from the graph (recency weights for `temporal`)."""
    if getattr(sampler, "prob", None) == RECENCY:
        add_recency_weights(graph, sampler.half_life_days)


class AdaptiveFanout:
    """Fanouts that start small and grow by `factor` (capped at `maximum`) whenever the validation AUC improves
    by no more than `tolerance`; the tolerance is multiplied by `decay` at each growth, so later, larger graphs
    must plateau harder before growing again."""

    def __init__(self, *, start=(3, 3), maximum=(20, 20), factor: float = 2.0, tolerance: float = 0.01,
                 decay: float = 0.5):
        self._fanouts, self.maximum = _fanouts(start), _fanouts(maximum)
        if len(self._fanouts) != len(self.maximum) or any(s > m for s, m in zip(self._fanouts, self.maximum)):
            raise ConfigError(f"start={start!r}, maximum={maximum!r}: need the same length and start <= maximum")
        if factor <= 1 or tolerance < 0 or not 0 < decay <= 1:
            raise ConfigError(f"factor={factor}, tolerance={tolerance}, decay={decay}: need factor > 1, "
                              "tolerance >= 0, 0 < decay <= 1")
        self.factor, self.tolerance, self.decay = factor, tolerance, decay
        self.best: float | None = None
        self.history: list[tuple[int, ...]] = [tuple(self._fanouts)]

    @property
    def fanouts(self) -> tuple[int, ...]:
        return tuple(self._fanouts)

    @property
    def at_max(self) -> bool:
        return self._fanouts == self.maximum

    def update(self, val_auc: float | None) -> bool:
        """Record one validation AUC; True when the fanouts grew."""
        if val_auc is None or math.isnan(val_auc):
            return False
        if self.best is None or val_auc - self.best > self.tolerance:
            self.best = val_auc if self.best is None else max(self.best, val_auc)
            return False
        self.best = max(self.best, val_auc)
        if self.at_max:
            return False
        self._fanouts = [min(m, max(f + 1, int(math.ceil(f * self.factor)))) for f, m in zip(self._fanouts,
                                                                                                 self.maximum)]
        self.tolerance *= self.decay
        self.history.append(tuple(self._fanouts))
        return True

    def follow(self, fanouts) -> None:
        """Take the fanouts another process decided (distributed training: rank 0 decides, the others follow)."""
        fanouts = [int(f) for f in fanouts]
        if fanouts != self._fanouts:
            self._fanouts = fanouts
            self.history.append(tuple(fanouts))


def popularity_negatives(k: int, graph, tasks):
    """A DGL negative sampler: k negative jobs per positive edge, drawn from the destinations of all task edges,
    i.e. in proportion to how often each job was interacted with. Uniform negatives are mostly cold, closed or
    unpopular jobs, which a model tells apart by popularity alone; these make it learn who matches whom."""
    dgl = import_dgl()
    pool = {}
    for t in tasks:
        pool.setdefault(t[2], []).append(graph.edges(etype=t)[1])
    pool = {nt: torch.cat(p) for nt, p in pool.items()}

    class PopularityNegatives(dgl.dataloading.negative_sampler._BaseNegativeSampler):
        def _generate(self, g, eids, canonical_etype):
            src, _ = g.find_edges(eids, etype=canonical_etype)
            src = src.repeat_interleave(k)
            choices = pool.get(canonical_etype[2])
            if choices is None or not len(choices):
                return src, torch.randint(0, g.num_nodes(canonical_etype[2]), (len(src),), dtype=src.dtype)
            return src, choices[torch.randint(0, len(choices), (len(src),))].to(src.dtype)

    return PopularityNegatives()


def edge_loader(mg, tasks, sampler, batch_size: int, neg_k: int, train_eids: dict, seed: int, *, graph=None,
                shuffle: bool = True, negatives: str = "uniform"):
    """Mini-batches of task edges with `neg_k` uniform negatives each; the batch's edges and their
    rev_<relation> twins are removed from its sampled blocks. `graph` defaults to mg.graph (pass the training
    graph when validation edges must not be seen)."""
    dgl = import_dgl()
    g = mg.graph if graph is None else graph
    prepare(g, sampler)
    reverse = {}
    for s, r, d in g.canonical_etypes:
        twin = (d, f"rev_{r}", s)
        if twin in g.canonical_etypes:
            reverse[(s, r, d)], reverse[twin] = twin, (s, r, d)
    tasks = [tuple(t) for t in tasks]
    eids = {t: torch.as_tensor(train_eids[t], dtype=g.idtype) for t in tasks}
    wrapped = dgl.dataloading.as_edge_prediction_sampler(
        sampler, exclude="reverse_types" if reverse else None, reverse_etypes=reverse or None,
        negative_sampler=(popularity_negatives(neg_k, g, tasks) if negatives == "popularity"
                          else dgl.dataloading.negative_sampler.Uniform(neg_k)))
    torch.manual_seed(seed)  # dgl's DataLoader shuffles and draws negatives with torch's global generator
    dgl.seed(seed)           # and samples neighbours with dgl's own
    return dgl.dataloading.DataLoader(g, eids, wrapped, batch_size=batch_size, shuffle=shuffle, drop_last=False,
                                      num_workers=0)


def draw_negatives(pool: np.ndarray, dst: np.ndarray, k: int, gen: np.random.Generator) -> np.ndarray:
    """(len(dst), k) jobs drawn from `pool` (as often as they occur there), none equal to its row's positive job
    while the pool holds another one: a negative that is the positive itself scores a tie and pulls the AUC to 0.5
    (on a market where few jobs get most interactions, a third of the draws)."""
    if len(pool) == 0:
        return np.zeros((len(dst), k), np.int64)
    dst = np.asarray(dst).reshape(-1, 1)
    neg = pool[gen.integers(0, len(pool), (len(dst), k))]
    for _ in range(8):  # redraw the clashes: rejection sampling = drawing from the pool without that job
        same = neg == dst
        if not same.any():
            return neg
        neg[same] = pool[gen.integers(0, len(pool), int(same.sum()))]
    same = neg == dst
    for job in np.unique(np.broadcast_to(dst, same.shape)[same]):  # the few jobs that dominate the pool
        rest = pool[pool != job]
        cells = same & (dst == job)
        if len(rest):
            neg[cells] = rest[gen.integers(0, len(rest), int(cells.sum()))]
    return neg
