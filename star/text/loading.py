"""Loading a text model from a local directory: tokenizer, base weights, and the LoRA adapter (new or saved).

Nothing is downloaded (`local_files_only=True`); each missing piece is a TextModelError naming the directory and
the fix.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from star.errors import TextModelError
from star.text.config import TextModelConfig

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "tokenizer.model", "vocab.json")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")


def load_tokenizer(model_dir: str, *, decoder: bool):
    from transformers import AutoTokenizer

    if not any((Path(model_dir) / name).is_file() for name in TOKENIZER_FILES):
        raise TextModelError(f"{model_dir} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save the "
                             "model's tokenizer there with tokenizer.save_pretrained(dir)")
    try:
        tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise TextModelError(f"cannot load the tokenizer in {model_dir}: {exc}") from exc
    if tok.pad_token is None:
        # Decoder tokenizers often lack a pad token; padded positions are masked, so any id will do.
        tok.pad_token = tok.eos_token or tok.unk_token
    if decoder:
        tok.padding_side = "left"  # the last position is then the last real token (E5-Mistral convention)
    return tok


def load_base(model_dir: str) -> nn.Module:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per weight-loading call drowns the job's own progress

    if not any(p for pattern in WEIGHT_PATTERNS for p in Path(model_dir).glob(pattern)):
        raise TextModelError(f"{model_dir} has no model weights (*.safetensors or pytorch_model*.bin); save the "
                             "model there with model.save_pretrained(dir)")
    try:
        # fp32 master weights: bf16 comes from autocast, so LoRA updates are not rounded away.
        return AutoModel.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise TextModelError(f"cannot load the model in {model_dir}: {exc}") from exc


def with_adapter(base: nn.Module, cfg: TextModelConfig, *, adapter_dir: str | None, trainable: bool) -> nn.Module:
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter_dir is not None:
        if not (Path(adapter_dir) / "adapter_config.json").is_file():
            raise TextModelError(f"{adapter_dir} holds no LoRA adapter (adapter_config.json); pass the 'adapter' "
                                 "directory written by save_model, or adapter_dir=None")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=trainable)
    elif trainable:
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=list(cfg.target_modules), bias="none")
        try:
            with warnings.catch_warnings():  # peft 0.21 reads transformers' deprecated is_gradient_checkpointing
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                model = get_peft_model(base, lora)
        except ValueError as exc:
            raise TextModelError(f"LoRA target_modules {cfg.target_modules} do not match {cfg.model_dir}: {exc}; "
                                 "set TextModelConfig.target_modules to linear layer names of this model") from exc
    else:
        model = base
    if not trainable:
        for p in model.parameters():
            p.requires_grad_(False)
    return model
