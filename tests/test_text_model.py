"""TextEncoder / MatchHead on real models: the shipped MiniLM and a tiny random Mistral decoder built here."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from star.errors import TextInputError, TextModelError  # noqa: E402
from star.text.chunking import plan_chunks  # noqa: E402
from star.text.config import STAR_PROMPTS, TextModelConfig, TrainConfig  # noqa: E402
from star.text.model import MatchHead, TextEncoder, load_model, save_model  # noqa: E402
from tests.text_models import one_thread, tiny_decoder  # noqa: E402, F401  (one_thread: autouse fixture)

TEXTS = ["Senior data engineer, Spark and Airflow, Berlin",
         "Nurse",
         "Pastry chef with ten years in hotel kitchens, croissants, laminated doughs and plated desserts"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_decoder(tmp_path_factory.mktemp("tiny_mistral"))


@pytest.fixture(scope="module")
def minilm():
    return TextEncoder(TextModelConfig(precision="fp32"))


def _encoder(model: str, tiny_dir: str, **cfg) -> TextEncoder:
    return TextEncoder(TextModelConfig(model_dir=tiny_dir if model == "tiny" else None, precision="fp32", **cfg))


def test_auto_resolution_picks_pooling_and_lora_targets_by_architecture(tiny_dir):
    bert, dec = TextModelConfig().resolved(), TextModelConfig(model_dir=tiny_dir).resolved()
    assert (bert.pooling, bert.target_modules) == ("mean", ("query", "value"))
    assert (dec.pooling, dec.target_modules) == ("last_token", ("q_proj", "v_proj"))
    assert TextModelConfig.from_dict(json.loads(json.dumps(dec.to_dict()))) == dec


@pytest.mark.parametrize("model", ["minilm", "tiny"])
@pytest.mark.parametrize("pooling", ["mean", "cls_layers", "last_token"])
def test_pooling_gives_unit_vectors_independent_of_the_batch(model, pooling, tiny_dir):
    enc = _encoder(model, tiny_dir, pooling=pooling)
    res = enc.encode(TEXTS, "job", batch_size=2)
    assert res.embeddings.shape == (3, enc.dim) and res.embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(res.embeddings, axis=1), 1.0, atol=1e-5)
    # "Nurse" alone (no padding) vs padded next to the longest text, through forward and through encode.
    alone = enc.encode([TEXTS[1]], "job").embeddings[0]
    with torch.no_grad():
        padded = enc.eval()([TEXTS[2], TEXTS[1]], "job")[1].numpy()
    np.testing.assert_allclose(padded, alone, atol=1e-5)
    np.testing.assert_allclose(res.embeddings[1], alone, atol=1e-5)
    assert not np.allclose(res.embeddings[0], res.embeddings[1], atol=1e-3)


def test_decoder_pads_left_and_right_padding_gives_the_same_vectors(tiny_dir):
    enc = _encoder("tiny", tiny_dir)
    assert enc.tokenizer.padding_side == "left"
    left = enc.encode(TEXTS, "member").embeddings
    enc.tokenizer.padding_side = "right"
    np.testing.assert_allclose(enc.encode(TEXTS, "member").embeddings, left, atol=1e-5)


def test_last_token_pooling_is_the_last_real_tokens_hidden_state(tiny_dir):
    enc = _encoder("tiny", tiny_dir)
    ids = enc.tokenizer(TEXTS[1])["input_ids"]
    with torch.no_grad():
        hidden = enc.base_model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        batch = enc.eval()([TEXTS[2], TEXTS[1]], "job")  # "Nurse" is left-padded here
    np.testing.assert_allclose(batch[1].numpy(), torch.nn.functional.normalize(hidden, dim=0).numpy(), atol=1e-5)


def test_no_prompt_by_default_and_configured_prompts_differ_by_kind(minilm):
    """MiniLM was trained without prefixes: by default none is added; STAR_PROMPTS are applied when configured."""
    job, member = minilm.encode(TEXTS[:1], "job").embeddings, minilm.encode(TEXTS[:1], "member").embeddings
    np.testing.assert_allclose(job, member, atol=1e-6)
    assert minilm.tokenizer.decode(minilm._tokenize(TEXTS[:1], "resume").ids[0]).startswith("[CLS] senior data")
    prompted = TextEncoder(TextModelConfig(precision="fp32", prompts=STAR_PROMPTS))
    job, member = prompted.encode(TEXTS[:1], "job").embeddings, prompted.encode(TEXTS[:1], "member").embeddings
    assert float(job[0] @ member[0]) < 0.999
    assert prompted.tokenizer.decode(prompted._tokenize(TEXTS[:1], "resume").ids[0]).startswith("[CLS] resume : senior")


@pytest.mark.parametrize("n,width,overlap", [(0, 8, 2), (8, 8, 2), (9, 8, 2), (100, 10, 3), (1000, 510, 64),
                                             (1021, 510, 64), (37, 8, 0), (50, 8, 4)])
def test_chunks_cover_every_token_once_with_overlapping_context(n, width, overlap):
    chunks = plan_chunks(n, width, overlap)
    owned = [t for c in chunks for t in range(c.own_start, c.own_end)]
    assert owned == list(range(n))  # every token pooled exactly once, in order
    assert all(c.end - c.start <= width and c.start <= c.own_start <= c.own_end <= c.end for c in chunks)
    assert chunks[-1].end == n and chunks == plan_chunks(n, width, overlap)  # the tail is covered; stable
    for a, b in zip(chunks, chunks[1:]):
        assert a.end - b.start >= overlap  # consecutive windows share at least `overlap` tokens


def test_long_texts_are_embedded_whole_within_the_budget_and_a_fact_at_the_end_counts(minilm):
    filler = " ".join(f"Managed the weekly stock count number {i} and filed the report on time." for i in range(90))
    assert len(minilm.tokenizer(filler)["input_ids"]) > 1200
    chef, nurse = filler + " Trained as a pastry chef.", filler + " Qualified as an intensive care nurse."
    res = minilm.encode([chef, nurse, "Nurse"], "member")
    assert res.truncated == 0 and res.max_chunks >= 3 and res.chunks == 2 * res.max_chunks + 1
    assert float(res.embeddings[0] @ res.embeddings[1]) < 0.9999  # only the last sentence differs
    pieces = minilm._tokenize([chef], "member")
    owned = [t for ids, own in zip(pieces.ids, pieces.own) for t, o in zip(ids[1:-1], own[1:-1]) if o]
    assert owned == minilm.tokenizer(chef, add_special_tokens=False)["input_ids"]
    # Order-stable: a text's vector does not depend on its neighbours or on the batch size.
    alone = minilm.encode([nurse], "member", batch_size=1).embeddings[0]
    np.testing.assert_allclose(res.embeddings[1], alone, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(minilm.eval()([nurse], "member")[0].numpy(), alone, atol=1e-5)
    cut = TextEncoder(TextModelConfig(precision="fp32", max_length={"job": 200, "member": 200, "resume": 200}))
    short = cut.encode([chef, nurse], "member")
    assert short.truncated == 2 and short.max_chunks == 1
    np.testing.assert_allclose(short.embeddings[0], short.embeddings[1], atol=1e-6)  # past the budget: cut


def test_truncation_is_counted_and_cuts_at_max_length():
    enc = TextEncoder(TextModelConfig(precision="fp32", max_length={"job": 16, "member": 256, "resume": 256}))
    texts = ["word " * 100, "word " * 200 + "different ending", "short text"]
    res = enc.encode(texts, "job")
    assert res.truncated == 2 and res.seconds > 0
    # Both long texts share their first 16 tokens, so after the cut they are the same input.
    np.testing.assert_allclose(res.embeddings[0], res.embeddings[1], atol=1e-6)
    assert enc.encode(texts, "member").truncated == 0


def test_empty_or_whitespace_text_names_the_positions(minilm):
    with pytest.raises(TextInputError, match=r"positions 1, 3"):
        minilm.encode(["ok", "", "fine", " \n\t"], "job")
    with pytest.raises(TextInputError, match="unknown text kind 'recruiter'"):
        minilm.encode(["ok"], "recruiter")


def test_unusable_model_dirs_name_the_path_and_the_fix(tmp_path, tiny_dir):
    missing = tmp_path / "nope"
    with pytest.raises(TextModelError, match=f"{missing}.*does not exist"):
        TextEncoder(TextModelConfig(model_dir=str(missing)))
    no_tok = tmp_path / "no_tokenizer"
    no_tok.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(tiny_dir, name), no_tok / name)
    with pytest.raises(TextModelError, match=f"{no_tok} has no tokenizer.*save_pretrained"):
        TextEncoder(TextModelConfig(model_dir=str(no_tok)))
    (no_tok / "model.safetensors").unlink()
    shutil.copy(os.path.join(tiny_dir, "tokenizer.json"), no_tok / "tokenizer.json")
    with pytest.raises(TextModelError, match=f"{no_tok} has no model weights"):
        TextEncoder(TextModelConfig(model_dir=str(no_tok)))


def test_lora_on_minilm_trains_only_the_query_value_adapters():
    enc = TextEncoder(TextModelConfig(), trainable=True)
    # 6 layers x (query, value) x (A: 384x8 + B: 8x384)
    assert enc.trainable_parameters() == 73_728
    names = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n and (".query." in n or ".value." in n) for n in names)
    assert TextEncoder(TextModelConfig()).trainable_parameters() == 0


def test_save_and_load_round_trip_gives_identical_vectors_and_logits(tmp_path, tiny_dir):
    cfg = TextModelConfig(model_dir=tiny_dir, precision="fp32", head_hidden=(16, 8))
    torch.manual_seed(1)
    enc = TextEncoder(cfg, trainable=True)
    with torch.no_grad():  # lora_B starts at zero: make the adapter matter
        for name, p in enc.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    head = MatchHead(dim=enc.dim, hidden=cfg.head_hidden)
    before_m, before_j = enc.encode(TEXTS, "member").embeddings, enc.encode(TEXTS, "job").embeddings
    out = save_model(tmp_path / "ckpt", enc, head, cfg, TrainConfig(mode="bce"), {"val_auc": 0.5})

    enc2, head2, doc = load_model(out)
    after_m, after_j = enc2.encode(TEXTS, "member").embeddings, enc2.encode(TEXTS, "job").embeddings
    np.testing.assert_allclose(after_m, before_m, atol=1e-6)
    np.testing.assert_allclose(after_j, before_j, atol=1e-6)
    with torch.no_grad():
        logits = head(torch.from_numpy(before_m), torch.from_numpy(before_j))
        logits2 = head2(torch.from_numpy(after_m), torch.from_numpy(after_j))
    torch.testing.assert_close(logits2, logits, atol=1e-6, rtol=0)
    assert enc2.fingerprint() == enc.fingerprint() == doc["fingerprint"]
    assert doc["fingerprint"]["adapter_checksum"] and doc["train_config"]["mode"] == "bce"
    assert doc["model_config"] == cfg.resolved().to_dict() and doc["metrics"] == {"val_auc": 0.5}
    assert (out / "adapter" / "adapter_config.json").is_file()
    # The adapter is really applied: the base model alone embeds differently.
    assert not np.allclose(TextEncoder(cfg).encode(TEXTS, "member").embeddings, after_m, atol=1e-3)


def test_bf16_autocast_stays_close_to_fp32(minilm):
    bf16 = TextEncoder(TextModelConfig(precision="bf16"))
    cos = (bf16.encode(TEXTS, "job").embeddings * minilm.encode(TEXTS, "job").embeddings).sum(1)
    assert cos.min() > 0.99


def test_last_token_decoder_appends_eos_and_pools_it(tiny_dir):
    enc = _encoder("tiny", tiny_dir, max_length={"job": 8, "member": 256, "resume": 256})
    enc.tokenizer.eos_token = "[unused1]"  # MiniLM's tokenizer has no EOS; give the decoder one
    eos = enc.tokenizer.eos_token_id
    chunks = enc._tokenize(["Nurse", "word " * 50], "job")
    ids, truncated = chunks.ids, chunks.truncated
    assert [x[-1] for x in ids] == [eos, eos] and truncated == 1
    assert len(ids[1]) == 8 + len(enc._prefix) + len(enc._suffix) + 1  # the 8-token budget, specials, EOS
    with torch.no_grad():
        hidden = enc.base_model(input_ids=torch.tensor([ids[0]])).last_hidden_state[0, -1]
        batch = enc.eval()(["word " * 50, "Nurse"], "job")
    np.testing.assert_allclose(batch[1].numpy(), torch.nn.functional.normalize(hidden, dim=0).numpy(), atol=1e-5)
