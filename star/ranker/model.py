"""The reference downstream ranker: a frozen consumer that knows its Feast refs and nothing about vintages.

    frame with <view>__<feature> columns (build_trainset) or get_online_features(refs, {member_id, job_id})
      -> member vector (member refs concatenated) | job vector | member ⊙ job (when their dims are equal)
         | one learned embedding per categorical column (vocabulary from training; unseen or missing -> 0)
      -> MLP (ReLU) -> logit
    save(dir): ranker.pt (state dict) + ranker.json (config, input dims, vocabularies, metrics);
    load(dir): torch.load(weights_only=True) into a Ranker rebuilt from ranker.json
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from star.ranker.config import RankerConfig, RankerError, column

WEIGHTS, DOC = "ranker.pt", "ranker.json"
FORMAT = "star-ranker/1"


def vectors(df: pd.DataFrame, ref: str) -> tuple[np.ndarray, np.ndarray]:
    """The (n, d) float32 vectors of a ref's column and a mask of the rows that have one (zeros elsewhere).
    A row is missing when its cell is None / NaN / empty or holds a non-finite value."""
    name = column(ref)
    if name not in df.columns:
        raise RankerError(f"the frame has no column {name!r} for {ref!r}; build it with "
                          f"build_trainset(target, TrainsetConfig(features=cfg.refs)) so every ref is joined")
    cells = df[name].tolist()
    ok = np.array([isinstance(v, (list, tuple, np.ndarray)) and len(v) > 0 for v in cells], dtype=bool)
    lengths = {len(v) for v, present in zip(cells, ok) if present}
    if len(lengths) > 1:
        raise RankerError(f"column {name!r} holds vectors of lengths {sorted(lengths)}; one column must come from "
                          "one vintage (one dimension)")
    dim = lengths.pop() if lengths else 0
    out = np.zeros((len(cells), dim), dtype=np.float32)
    if ok.any():
        out[ok] = np.asarray([v for v, present in zip(cells, ok) if present], dtype=np.float32)
    finite = np.isfinite(out).all(axis=1)
    out[~finite] = 0.0
    return out, ok & finite


class Ranker(nn.Module):
    def __init__(self, cfg: RankerConfig, *, dims: dict[str, int], vocab: dict[str, list[str]]):
        super().__init__()
        missing = [r for r in cfg.member_features + cfg.job_features if r not in dims]
        missing += [r for r in cfg.categorical if r not in vocab]
        if missing:
            raise RankerError(f"Ranker: no input dimension or vocabulary for {missing}; build it with "
                              "train_ranker, or load it with load(dir)")
        self.cfg, self.dims = cfg, {r: int(dims[r]) for r in cfg.member_features + cfg.job_features}
        self.vocab = {r: [str(v) for v in vocab[r]] for r in cfg.categorical}
        self._index = {r: {v: i + 1 for i, v in enumerate(values)} for r, values in self.vocab.items()}
        self.metrics: dict = {}
        self.member_dim = sum(self.dims[r] for r in cfg.member_features)
        self.job_dim = sum(self.dims[r] for r in cfg.job_features)
        self.product = self.member_dim == self.job_dim
        self.embeddings = nn.ModuleList(nn.Embedding(len(self.vocab[r]) + 1, cfg.cat_dim) for r in cfg.categorical)
        width = self.member_dim + self.job_dim + (self.member_dim if self.product else 0)
        width += cfg.cat_dim * len(cfg.categorical)
        layers: list[nn.Module] = []
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.mlp = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, member: torch.Tensor, job: torch.Tensor, cats: torch.Tensor) -> torch.Tensor:
        parts = [member, job] + ([member * job] if self.product else [])
        parts += [emb(cats[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat(parts, dim=1)).squeeze(1)

    def _side(self, df: pd.DataFrame, refs: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        blocks, ok = [], np.ones(len(df), dtype=bool)
        for ref in refs:
            x, present = vectors(df, ref)
            if present.any() and x.shape[1] != self.dims[ref]:
                raise RankerError(f"column {column(ref)!r} holds {x.shape[1]}-d vectors but the ranker was trained "
                                  f"on {self.dims[ref]}-d ones; pass {ref!r} itself, or vectors translated into "
                                  "its space (star.versions.gate.translate_frame)")
            blocks.append(x if present.any() else np.zeros((len(df), self.dims[ref]), dtype=np.float32))
            ok &= present
        return np.concatenate(blocks, axis=1), ok

    def inputs(self, df: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
        """member, job and categorical-index tensors for every row, and the mask of rows with all embeddings."""
        member, ok_m = self._side(df, self.cfg.member_features)
        job, ok_j = self._side(df, self.cfg.job_features)
        cats = np.zeros((len(df), len(self.cfg.categorical)), dtype=np.int64)
        for i, ref in enumerate(self.cfg.categorical):
            if column(ref) not in df.columns:
                raise RankerError(f"the frame has no column {column(ref)!r} for {ref!r}; join every ref of "
                                  "cfg.refs (build_trainset(target, TrainsetConfig(features=cfg.refs)))")
            index = self._index[ref]
            cats[:, i] = [index.get(v, 0) if isinstance(v, str) else 0 for v in df[column(ref)].tolist()]
        return torch.from_numpy(member), torch.from_numpy(job), torch.from_numpy(cats), ok_m & ok_j


def score(ranker: Ranker, df: pd.DataFrame) -> np.ndarray:
    """Logits, one per row of df; NaN for rows missing an embedding."""
    member, job, cats, ok = ranker.inputs(df)
    out = np.full(len(df), np.nan)
    ranker.eval()
    with torch.no_grad():
        if ok.any():
            mask = torch.from_numpy(ok)
            out[ok] = ranker(member[mask], job[mask], cats[mask]).double().numpy()
    return out


def score_online(ranker: Ranker, store, pairs) -> np.ndarray:
    """Logits for (member_id, job_id) pairs from the online store: one get_online_features call over the ranker's
    refs with both keys in each entity row. `pairs`: (member_id, job_id) tuples or a frame with those columns."""
    if isinstance(pairs, pd.DataFrame):
        pairs = pairs[["member_id", "job_id"]].itertuples(index=False)
    rows = [{"member_id": int(m), "job_id": int(j)} for m, j in pairs]
    if not rows:
        return np.zeros(0)
    got = store.get_online_features(features=list(ranker.cfg.refs), entity_rows=rows,
                                    full_feature_names=True).to_dict()
    return score(ranker, pd.DataFrame(got))


def save(ranker: Ranker, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(ranker.state_dict(), out / WEIGHTS)
    doc = {"format": FORMAT, "config": ranker.cfg.to_dict(), "dims": ranker.dims, "vocab": ranker.vocab,
           "metrics": ranker.metrics}
    (out / DOC).write_text(json.dumps(doc, indent=1, default=str))
    return out


def load(out_dir: str | Path) -> Ranker:
    out = Path(out_dir)
    if not (out / DOC).is_file() or not (out / WEIGHTS).is_file():
        raise RankerError(f"{out} holds no {DOC} + {WEIGHTS}; pass a directory written by star.ranker.save")
    doc = json.loads((out / DOC).read_text())
    if doc.get("format") != FORMAT:
        raise RankerError(f"{out / DOC} has format {doc.get('format')!r}; this code reads {FORMAT!r}")
    ranker = Ranker(RankerConfig.from_dict(doc["config"]), dims=doc["dims"], vocab=doc["vocab"])
    ranker.load_state_dict(torch.load(out / WEIGHTS, weights_only=True))
    ranker.metrics = doc.get("metrics") or {}
    return ranker.eval()
