"""Train the reference ranker on a point-in-time training set.

    build_trainset(features=cfg.refs) -> drop rows missing an embedding (counted)
      -> sort by event_timestamp -> the latest val_fraction of rows (whole timestamps) validate, the rest train
      -> vocabularies from the training rows -> AdamW on BCE, shuffled mini-batches -> AUC on both parts
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from torch import nn

from star.common import roc_auc, seed_run
from star.ranker.config import RankerConfig, RankerError, column
from star.ranker.model import Ranker, score, vectors


def split_by_rows(df: pd.DataFrame, val_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Rows before the cut train, rows at or after it validate; the cut is the timestamp of the first validation
    row when the latest val_fraction of rows validate (so rows sharing a timestamp stay on one side)."""
    df = df.sort_values("event_timestamp", kind="stable").reset_index(drop=True)
    ts = pd.to_datetime(df["event_timestamp"], utc=True)
    cut = ts.iloc[min(int(round(len(df) * (1.0 - val_fraction))), len(df) - 1)]
    train, val = df[ts < cut], df[ts >= cut]
    if train.empty or val.empty or train["label"].nunique() < 2:
        raise RankerError(f"{len(df)} rows at val_fraction={val_fraction} give {len(train)} training rows "
                          f"({int(train['label'].sum())} positive) and {len(val)} validation rows; both parts need "
                          "rows and training needs both labels: use a longer window or another val_fraction")
    return train.reset_index(drop=True), val.reset_index(drop=True), cut


def heldout(ranker: Ranker, df: pd.DataFrame) -> pd.DataFrame:
    """The complete rows (no missing feature of the ranker) of df at or after its training cut: its held-out rows.
    Other columns may be empty (e.g. `negative_source` is None on positives)."""
    later = df[df["event_timestamp"] >= pd.Timestamp(ranker.metrics["cut"])]
    return later.dropna(subset=[column(r) for r in ranker.cfg.refs]).reset_index(drop=True)


def auc(ranker: Ranker, df: pd.DataFrame) -> float:
    """The ranker's ROC AUC on df's labels."""
    return roc_auc(df["label"].to_numpy(), score(ranker, df))


def build_vocab(df: pd.DataFrame, cfg: RankerConfig) -> dict[str, list[str]]:
    """Each categorical ref's distinct string values in df, sorted (index 0 is kept for unseen / missing)."""
    return {ref: sorted({v for v in df[column(ref)].tolist() if isinstance(v, str)}) for ref in cfg.categorical}


def train_ranker(df: pd.DataFrame, cfg: RankerConfig, *, progress: bool = False) -> tuple[Ranker, dict]:
    """Fit a Ranker on df (columns member_id, job_id, event_timestamp, label and one per ref of cfg.refs)."""
    started = time.perf_counter()
    missing = [c for c in ("event_timestamp", "label", *map(column, cfg.refs)) if c not in df.columns]
    if missing:
        raise RankerError(f"the training frame lacks {missing}; build it with "
                          "build_trainset(target, TrainsetConfig(features=cfg.refs))")
    ok = np.ones(len(df), dtype=bool)
    dims = {}
    for ref in cfg.member_features + cfg.job_features:
        x, present = vectors(df, ref)
        dims[ref], ok = x.shape[1], ok & present
    if not ok.any():
        raise RankerError(f"none of the {len(df)} rows has every embedding of {cfg.member_features + cfg.job_features}"
                          "; embed those vintages (star text embed / graph embed) before building the training set")
    kept = df[ok]
    train, val, cut = split_by_rows(kept, cfg.val_fraction)
    seed_run(cfg.seed)
    ranker = Ranker(cfg, dims=dims, vocab=build_vocab(train, cfg))
    member, job, cats, _ = ranker.inputs(train)
    labels = torch.tensor(train["label"].to_numpy(), dtype=torch.float32)
    opt = torch.optim.AdamW(ranker.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn, rng, losses = nn.BCEWithLogitsLoss(), np.random.default_rng(cfg.seed), []
    for epoch in range(cfg.epochs):
        ranker.train()
        order, total = torch.from_numpy(rng.permutation(len(train))), 0.0
        for start in range(0, len(train), cfg.batch_size):
            b = order[start:start + cfg.batch_size]
            loss = loss_fn(ranker(member[b], job[b], cats[b]), labels[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        losses.append(round(total / len(train), 6))
        if progress:
            print(f"ranker epoch {epoch + 1}/{cfg.epochs}: loss {losses[-1]:.4f}")
    metrics = {
        "rows": len(df), "dropped_missing_embedding": int((~ok).sum()), "train_rows": len(train),
        "val_rows": len(val), "train_positives": int(train["label"].sum()), "val_positives": int(val["label"].sum()),
        "cut": cut.isoformat(), "auc_train": roc_auc(train["label"], score(ranker, train)),
        "auc_val": roc_auc(val["label"], score(ranker, val)), "loss_first": losses[0], "loss_last": losses[-1],
        "vocab_sizes": {r: len(v) for r, v in ranker.vocab.items()}, "seconds": round(time.perf_counter() - started, 2)}
    ranker.metrics = metrics
    return ranker.eval(), metrics
