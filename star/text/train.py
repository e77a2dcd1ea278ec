"""Fine-tuning of the text tower on a point-in-time training set (paper §3.2-3.3).

    pairs (member_id, job_id, event_timestamp, label, member_text, job_text)
      --split by time: the latest val_fraction of the window is validation--> train | val
      --train: downsample the majority class to neg_per_pos--> shuffled micro-batches of per_device_batch
      --grad_accum micro-batches per AdamW step, linear warm-up (constant / effective batch) then linear decay-->
      encoder (+LoRA) + MatchHead  --val AUC--> save_model(out_dir)

Modes: frozen_head (base frozen, embeddings computed once, only the head learns: the paper's baseline),
bce (LoRA + head, BCE), bce+contrastive (BCE + lambda_c * semi-hard in-batch triplet loss).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import get_linear_schedule_with_warmup
from tqdm.auto import tqdm

from star.common import roc_auc, seed_run
from star.errors import TextInputError
from star.text.config import TextModelConfig, TrainConfig
from star.text.losses import bce_loss, semi_hard_triplet_loss
from star.text.model import MatchHead, TextEncoder, resolve_device, save_model

REQUIRED_COLUMNS = ("member_id", "job_id", "event_timestamp", "label", "member_text", "job_text")


@dataclass
class TrainResult:
    out_dir: Path
    mode: str
    metrics: dict
    model_cfg: TextModelConfig
    train_cfg: TrainConfig


def prepare(pairs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The required columns, UTC times and 0/1 labels; rows without a usable text dropped (and counted)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in pairs.columns]
    if missing:
        raise TextInputError(f"pairs lack column(s) {', '.join(missing)}; pass the frame build_trainset returns "
                             f"(columns {', '.join(REQUIRED_COLUMNS)})")
    df = pairs.loc[:, list(REQUIRED_COLUMNS)].copy()
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    if not df["label"].isin([0, 1]).all():
        raise TextInputError(f"pairs.label must be 0 or 1; found {sorted(df['label'].unique())[:5]}")
    df["label"] = df["label"].astype(int)
    usable = np.ones(len(df), dtype=bool)
    for col in ("member_text", "job_text"):
        has = df[col].map(lambda t: isinstance(t, str) and bool(t.strip())).to_numpy()
        if len(df) and not has.any():
            raise TextInputError(f"no pair has a {col.replace('_', ' ')}: are {col.split('_')[0]} texts loaded? "
                                 "The bi-encoder learns from member and job texts: add both to the marketplace's "
                                 "texts.* (docs/data-format.md), `star seed --from` it and `star features apply`")
        usable &= has
    return df[usable].reset_index(drop=True), int((~usable).sum())


def split_by_time(pairs: pd.DataFrame, val_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Rows before the cut train, rows at or after it validate; the cut leaves val_fraction of the time window."""
    if pairs.empty:
        raise TextInputError("0 pairs with both a member and a job text to train and validate on; load texts for "
                             "the members and jobs of the interactions (texts.*), or pass a --task with more "
                             "interactions")
    ts = pd.to_datetime(pairs["event_timestamp"], utc=True)
    start, end = ts.min(), ts.max()
    cut = start + (end - start) * (1.0 - val_fraction)
    train, val = pairs[ts < cut], pairs[ts >= cut]
    if train.empty or val.empty:
        raise TextInputError(f"the window {start} .. {end} gives {len(train)} training and {len(val)} validation "
                             f"rows at val_fraction={val_fraction}; give pairs spanning more time")
    classes = val["label"].value_counts()
    if len(classes) < 2:  # the validation AUC would be undefined: the run would report nothing
        raise TextInputError(f"the validation window {cut} .. {end} has {int(classes.get(1, 0))} positive and "
                             f"{int(classes.get(0, 0))} negative pairs: an AUC needs both; load interactions with "
                             "negatives (e.g. dismiss) spanning more time, or pass another --task")
    return train.reset_index(drop=True), val.reset_index(drop=True), cut


def balance(train: pd.DataFrame, *, neg_per_pos: float, seed: int) -> pd.DataFrame:
    """Downsample the majority class so negatives / positives = neg_per_pos (paper: 1:1 trains best)."""
    pos, neg = train[train["label"] == 1], train[train["label"] == 0]
    if pos.empty or neg.empty:
        raise TextInputError(f"the training window has {len(pos)} positives and {len(neg)} negatives; both classes "
                             "are needed (add negatives to the training set, or move the time window)")
    want_neg = round(len(pos) * neg_per_pos)
    if len(neg) > want_neg:
        neg = neg.sample(n=max(want_neg, 1), random_state=seed)
    else:
        pos = pos.sample(n=max(round(len(neg) / neg_per_pos), 1), random_state=seed)
    both = pd.concat([pos, neg])
    return both.sort_values(["event_timestamp", "member_id", "job_id"], kind="stable").reset_index(drop=True)


def warmup_steps(*, effective_batch: int, total_steps: int, constant: float, max_fraction: float) -> int:
    """constant / effective batch (paper: 95,160 / 3,172 = 30 steps), at most max_fraction of all steps."""
    return int(min(round(constant / effective_batch), math.floor(max_fraction * total_steps)))


def lr_schedule(opt: torch.optim.Optimizer, *, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """transformers' linear warm-up + linear decay, started one step in (last_epoch=0 over total + 1 steps): the
    first of `total` steps trains at lr/warmup and the last at lr/(total + 1 - warmup), never at 0, so no optimizer
    step is wasted; the peak is at step warmup - 1."""
    for group in opt.param_groups:
        group.setdefault("initial_lr", group["lr"])  # what a scheduler resumed at last_epoch=0 starts from
    return get_linear_schedule_with_warmup(opt, num_warmup_steps=warmup, num_training_steps=total + 1, last_epoch=0)


def train(pairs: pd.DataFrame, *, model_cfg: TextModelConfig, train_cfg: TrainConfig, out_dir: str | Path,
          progress: bool = True) -> TrainResult:
    """Train one mode on `pairs`, evaluate AUC on the latest window, save into out_dir (see module docstring)."""
    started = time.perf_counter()
    df, dropped = prepare(pairs)
    train_df, val_df, cut = split_by_time(df, train_cfg.val_fraction)
    rows = balance(train_df, neg_per_pos=train_cfg.neg_per_pos, seed=train_cfg.seed)
    seed_run(train_cfg.seed)
    device = resolve_device(train_cfg.device)
    effective = 1 * train_cfg.per_device_batch * train_cfg.grad_accum  # one device: no DDP here
    micro_total = train_cfg.epochs * math.ceil(len(rows) / train_cfg.per_device_batch)
    total = min(train_cfg.max_steps, math.ceil(micro_total / train_cfg.grad_accum))
    warm = warmup_steps(effective_batch=effective, total_steps=total, constant=train_cfg.warmup_constant,
                        max_fraction=train_cfg.warmup_max_fraction)
    # Every mode with the same seed sees the same micro-batches, in the same order.
    schedule = list(islice(_micro_batches(len(rows), batch=train_cfg.per_device_batch, epochs=train_cfg.epochs,
                                          seed=train_cfg.seed), total * train_cfg.grad_accum))

    frozen = train_cfg.mode == "frozen_head"
    encoder = TextEncoder(model_cfg, trainable=not frozen).to(device)
    head = MatchHead(dim=encoder.dim, hidden=model_cfg.head_hidden).to(device)
    if frozen:  # embed only the rows the schedule visits (plus validation), once
        used = rows.iloc[np.unique(np.concatenate(schedule))]
        embed = _frozen_embedder(encoder, pd.concat([used, val_df]), progress)
    else:
        embed = _live_embedder(encoder, train_cfg.max_tokens)
        if train_cfg.gradient_checkpointing:
            encoder.enable_gradient_checkpointing()
    loop_start = time.perf_counter()
    history = _fit(rows, schedule, encoder=encoder, head=head, embed=embed, cfg=train_cfg, warmup=warm,
                   progress=progress)
    loop_seconds = time.perf_counter() - loop_start

    val_auc, val_auc_cos = _evaluate(val_df, embed=embed if frozen else None, encoder=encoder, head=head)
    metrics = {
        "val_auc": val_auc, "val_auc_cosine": val_auc_cos, "val_rows": len(val_df), "train_rows": len(rows),
        "train_rows_before_balance": len(train_df), "dropped_rows": dropped, "steps": len(history),
        "effective_batch": effective, "warmup_steps": warm, "trainable_params": encoder.trainable_parameters()
        + sum(p.numel() for p in head.parameters()), "split_time": str(cut),
        "train_window": [str(train_df["event_timestamp"].min()), str(train_df["event_timestamp"].max())],
        "val_window": [str(val_df["event_timestamp"].min()), str(val_df["event_timestamp"].max())],
        "seconds_per_step": loop_seconds / max(len(history), 1), **_final_losses(history), "history": history,
        "seconds": time.perf_counter() - started,
    }
    out = save_model(out_dir, encoder, head, model_cfg, train_cfg, metrics)
    return TrainResult(out_dir=out, mode=train_cfg.mode, metrics=metrics, model_cfg=encoder.cfg, train_cfg=train_cfg)


def _final_losses(history: list[dict]) -> dict:
    """First-step loss and the mean of the last tenth of the steps (single steps are noisy)."""
    last = history[-max(1, len(history) // 10):]
    return {"loss_first": history[0]["loss"], **{f"{key}_final": float(np.mean([h[key] for h in last]))
                                                 for key in ("loss", "bce", "contrastive")}}


def _micro_batches(n: int, *, batch: int, epochs: int, seed: int):
    """Row positions of each micro-batch: a fresh shuffle per epoch."""
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(n)
        for lo in range(0, n, batch):
            yield order[lo:lo + batch]


def _fit(rows, schedule, *, encoder, head, embed, cfg: TrainConfig, warmup: int, progress: bool) -> list[dict]:
    """The optimisation loop over `schedule` (grad_accum micro-batches a step); one record per step."""
    total = math.ceil(len(schedule) / cfg.grad_accum)
    lora = [p for p in encoder.parameters() if p.requires_grad]
    groups = [{"params": list(head.parameters()), "lr": cfg.head_lr}] + ([{"params": lora, "lr": cfg.lr}] if lora
                                                                          else [])
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    sched = lr_schedule(opt, warmup=warmup, total=total)
    encoder.train(bool(lora))
    head.train()
    contrastive = cfg.mode == "bce+contrastive"
    history, bar = [], tqdm(total=total, disable=not progress, desc=f"train {cfg.mode}", unit="step")
    for step in range(total):
        sums = {"loss": 0.0, "bce": 0.0, "contrastive": 0.0}
        micro = [rows.iloc[idx] for idx in schedule[step * cfg.grad_accum:(step + 1) * cfg.grad_accum]]
        for batch in micro:
            z_member, z_job = embed(batch)
            labels = torch.as_tensor(batch["label"].to_numpy(), device=z_member.device)
            bce = bce_loss(head(z_member, z_job), labels)
            l_c = (semi_hard_triplet_loss(z_job, z_member, labels, batch["member_id"].to_numpy(), cfg.tau)
                   if contrastive else torch.zeros((), device=bce.device))
            loss = bce + cfg.lambda_c * l_c
            (loss / len(micro)).backward()
            for key, value in (("loss", loss), ("bce", bce), ("contrastive", l_c)):
                sums[key] += float(value.detach()) / len(micro)
        history.append({"step": step + 1, **sums, "lr": opt.param_groups[-1]["lr"]})  # the lr this step used
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        bar.update(1)
        bar.set_postfix(loss=f"{sums['loss']:.4f}")
    bar.close()
    return history


def _live_embedder(encoder: TextEncoder, budget: int | None):
    def embed(batch: pd.DataFrame):
        return (encoder(batch["member_text"].tolist(), "member", budget=budget),
                encoder(batch["job_text"].tolist(), "job", budget=budget))
    return embed


def _frozen_embedder(encoder: TextEncoder, frame: pd.DataFrame, progress: bool):
    """Embed every distinct text once; batches then only look rows up (the base model never changes)."""
    tables = {}
    for col, kind in (("member_text", "member"), ("job_text", "job")):
        texts = sorted(frame[col].unique())
        vectors = encoder.encode(texts, kind, progress=progress).embeddings
        tables[col] = ({t: i for i, t in enumerate(texts)}, torch.from_numpy(vectors).to(encoder.device))

    def embed(batch: pd.DataFrame):
        return tuple(tables[col][1][[tables[col][0][t] for t in batch[col]]] for col in ("member_text", "job_text"))
    return embed


def _evaluate(val: pd.DataFrame, *, embed, encoder: TextEncoder, head: MatchHead) -> tuple[float | None, float | None]:
    """AUC of the head's logits and of the plain cosine on the validation window."""
    if embed is None:
        vectors = {}
        for col, kind in (("member_text", "member"), ("job_text", "job")):
            texts = sorted(val[col].unique())
            emb = torch.from_numpy(encoder.encode(texts, kind).embeddings).to(encoder.device)
            index = {t: i for i, t in enumerate(texts)}
            vectors[col] = emb[[index[t] for t in val[col]]]
        z_member, z_job = vectors["member_text"], vectors["job_text"]
    else:
        z_member, z_job = embed(val)
    head.eval()
    with torch.no_grad():
        logits = head(z_member, z_job).cpu().numpy()
    cosine = (z_member * z_job).sum(1).cpu().numpy()
    labels = val["label"].to_numpy()
    return roc_auc(labels, logits), roc_auc(labels, cosine)
