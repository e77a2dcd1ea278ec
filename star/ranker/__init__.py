"""The reference downstream ranker: what a consumer of STAR embeddings builds, pinned to Feast refs.

    config.py  RankerConfig: the refs it reads (member / job embeddings, categorical strings) and training knobs
    model.py   Ranker (vectors + product + categorical embeddings -> MLP -> logit), score, score_online
               (one get_online_features call), save / load
    train.py   train_ranker: time split of a build_trainset(features=cfg.refs) frame, AUC on the latest rows

It knows its refs and nothing about vintages: when a vintage it reads is retired, Feast keeps serving the same
refs through a compatibility map, and star.versions.gate checks beforehand that its AUC survives the swap.
Importing `star.ranker` loads no torch; nothing here imports feast.
"""

from star.ranker.config import RankerConfig, RankerError, column

_LAZY = {"Ranker": "star.ranker.model", "score": "star.ranker.model", "score_online": "star.ranker.model",
         "save": "star.ranker.model", "load": "star.ranker.model", "train_ranker": "star.ranker.train",
         "heldout": "star.ranker.train", "auc": "star.ranker.train"}

__all__ = ["RankerConfig", "RankerError", "column", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'star.ranker' has no attribute {name!r}")
