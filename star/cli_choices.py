"""The fixed sets of strings `star` options take, as Enums: Typer lists them in --help and refuses any other value
while parsing the command line, before a database or a model is touched.

Each set mirrors the constant its module checks (tests/test_cli_options.py keeps them equal); they are spelled out
here so that `star --help` does not import pandas, torch or Feast.
"""

from __future__ import annotations

from enum import Enum


class Entity(str, Enum):
    member = "member"
    job = "job"


class TextLength(str, Enum):  # star.data.synthetic_drafts.TEXT_LENGTHS
    long = "long"
    short = "short"


class Pooling(str, Enum):  # star.text.config.POOLINGS
    auto = "auto"
    mean = "mean"
    cls_layers = "cls_layers"
    last_token = "last_token"


class TrainMode(str, Enum):  # star.text.config.MODES
    frozen_head = "frozen_head"
    bce = "bce"
    bce_contrastive = "bce+contrastive"


class Precision(str, Enum):  # star.text.config.PRECISIONS
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class Prompts(str, Enum):
    none = "none"  # the input format MiniLM was trained with
    star = "star"  # 'Member profile: ' / 'Job posting: ' prefixes (star.text.config.STAR_PROMPTS)


class Sampler(str, Enum):  # star.graph.train.GraphTrainConfig.sampler
    adaptive = "adaptive"
    uniform = "uniform"
    temporal = "temporal"


class ConsumerKind(str, Enum):  # star.versions.lifecycle.CONSUMER_KINDS
    ranker = "ranker"
    feature_service = "feature_service"
    job = "job"
    other = "other"


class Engine(str, Enum):  # star.cluster.ENGINES
    local = "local"
    ray = "ray"
