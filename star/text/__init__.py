"""Text tower: an LLM/encoder bi-encoder with one shared LoRA adapter and a Hadamard match head (STAR paper §3).

    config.py    TextModelConfig, TrainConfig
    model.py     TextEncoder (tokenize + prompt, pool, L2), MatchHead, save_model / load_model
    losses.py    BCE + semi-hard in-batch triplet loss
    train.py     time split, 1:1 balance, AdamW + warm-up, gradient checkpointing / accumulation
    evaluate.py  frozen_head vs bce vs bce+contrastive on the same split (Table 2 style)

Importing `star.text` loads no torch: the heavy names below resolve on first use. Nothing here imports feast.
"""

from star.text.config import TextModelConfig, TrainConfig

_LAZY = {
    "TextEncoder": "star.text.model", "MatchHead": "star.text.model", "EncodeResult": "star.text.model",
    "save_model": "star.text.model", "load_model": "star.text.model",
    "bce_loss": "star.text.losses", "semi_hard_triplet_loss": "star.text.losses",
    "semi_hard_negatives": "star.text.losses",
    "train": "star.text.train", "TrainResult": "star.text.train",
    "compare": "star.text.evaluate", "format_table": "star.text.evaluate",
}

__all__ = ["TextModelConfig", "TrainConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'star.text' has no attribute {name!r}")
