"""Training the text tower: a tiny random decoder on a tiny synthetic pairs frame where positives share words."""

from __future__ import annotations

import json
import os
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from star.errors import TextInputError  # noqa: E402
from star.text.config import TextModelConfig, TrainConfig  # noqa: E402
from star.text.evaluate import compare, format_table  # noqa: E402
from star.text.model import load_model  # noqa: E402
from star.text.train import balance, lr_schedule, split_by_time, train, warmup_steps  # noqa: E402
from tests.text_models import one_thread, tiny_decoder  # noqa: E402, F401  (one_thread: autouse fixture)

TOPICS = {
    "kitchen": "chef pastry kitchen bake dough oven sauce menu grill dessert",
    "software": "python code deploy api database cloud kubernetes backend tests git",
    "care": "nurse patient hospital ward care clinic medicine triage shift health",
    "logistics": "truck driver route warehouse forklift delivery cargo fleet loading depot",
}


def tiny_pairs(*, members: int = 24, jobs: int = 16, rows: int = 240, seed: int = 0) -> pd.DataFrame:
    """Members and jobs each belong to a topic and are written from its words; label 1 iff the topics match."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)

    def text(topic: str) -> str:
        return " ".join(rng.choice(TOPICS[topic].split(), size=6))

    m_topic, j_topic = rng.integers(len(names), size=members), rng.integers(len(names), size=jobs)
    m_text = [text(names[t]) for t in m_topic]
    j_text = [text(names[t]) for t in j_topic]
    mi, ji = rng.integers(members, size=rows), rng.integers(jobs, size=rows)
    start = pd.Timestamp("2025-01-01", tz="UTC")
    return pd.DataFrame({
        "member_id": mi + 1, "job_id": ji + 1,
        "event_timestamp": start + pd.to_timedelta(np.sort(rng.uniform(0, 30 * 86400, size=rows)), unit="s"),
        "label": (m_topic[mi] == j_topic[ji]).astype(int),
        "member_text": [m_text[i] for i in mi], "job_text": [j_text[j] for j in ji],
        "member_skills__count": rng.integers(10, size=rows),  # a feature column: ignored
    })


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_decoder(tmp_path_factory.mktemp("tiny_mistral"))


def _cfgs(tiny_dir: str, **train):
    model_cfg = TextModelConfig(model_dir=tiny_dir, pooling="mean", precision="fp32", head_hidden=(32,),
                                max_length={"job": 32, "member": 32, "resume": 32})
    defaults = dict(per_device_batch=8, grad_accum=2, max_steps=30, epochs=20, lr=5e-3, head_lr=1e-2)
    return model_cfg, TrainConfig(**{**defaults, **train})


def test_time_split_puts_the_latest_window_in_validation():
    pairs = tiny_pairs()
    train_df, val_df, cut = split_by_time(pairs, 0.2)
    assert train_df["event_timestamp"].max() < cut <= val_df["event_timestamp"].min()
    start, end = pairs["event_timestamp"].min(), pairs["event_timestamp"].max()
    assert cut == start + (end - start) * 0.8
    assert len(train_df) + len(val_df) == len(pairs)
    with pytest.raises(TextInputError, match="spanning more time"):
        split_by_time(pairs.assign(event_timestamp=start), 0.2)


def test_no_pairs_or_one_class_in_validation_is_an_error():
    """Validating on one class gave val_auc None and a run that 'succeeded'; 0 pairs gave a NaT window."""
    pairs = tiny_pairs()
    with pytest.raises(TextInputError, match="0 pairs with both a member and a job text"):
        split_by_time(pairs.iloc[:0], 0.2)
    late = pairs["event_timestamp"] >= pairs["event_timestamp"].quantile(0.5)
    with pytest.raises(TextInputError, match=r"validation window .* has 0 positive and \d+ negative pairs: an AUC "
                                             r"needs both.*--task"):
        split_by_time(pairs.assign(label=pairs["label"].where(~late, 0)), 0.2)


def test_balance_downsamples_the_majority_class():
    pairs = tiny_pairs()
    one_to_one = balance(pairs, neg_per_pos=1.0, seed=0)
    assert (one_to_one["label"] == 0).sum() == (one_to_one["label"] == 1).sum() == (pairs["label"] == 1).sum()
    few_neg = balance(pairs, neg_per_pos=0.5, seed=0)
    assert (few_neg["label"] == 0).sum() == round((pairs["label"] == 1).sum() * 0.5)
    many_neg = balance(pairs, neg_per_pos=100.0, seed=0)  # positives are now the majority: they get cut
    assert (many_neg["label"] == 0).sum() == (pairs["label"] == 0).sum() and (many_neg["label"] == 1).sum() >= 1


def test_warmup_is_inversely_proportional_to_the_effective_batch():
    assert warmup_steps(effective_batch=3172, total_steps=10_000, constant=95_160, max_fraction=0.1) == 30
    assert warmup_steps(effective_batch=6344, total_steps=10_000, constant=95_160, max_fraction=0.1) == 15
    assert warmup_steps(effective_batch=32, total_steps=60, constant=95_160, max_fraction=0.1) == 6  # capped



def test_the_learning_rate_warms_up_then_decays_and_no_step_trains_at_zero():
    """transformers' get_linear_schedule_with_warmup, one step ahead: the lr each of the 10 optimizer steps uses."""
    weight = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [weight], "lr": 2e-4}])
    sched, used = lr_schedule(opt, warmup=3, total=10), []
    for _ in range(10):
        used.append(opt.param_groups[0]["lr"] / 2e-4)
        opt.step()
        sched.step()
    assert used[:3] == pytest.approx([1 / 3, 2 / 3, 1.0]) and used[-1] == pytest.approx(1 / 8) and min(used) > 0
    assert all(a > b for a, b in zip(used[2:], used[3:]))


def test_training_lowers_the_loss_and_saves_a_complete_checkpoint(tmp_path, tiny_dir):
    model_cfg, train_cfg = _cfgs(tiny_dir)
    result = train(tiny_pairs(), model_cfg=model_cfg, train_cfg=train_cfg, out_dir=tmp_path / "run", progress=False)
    m, losses = result.metrics, [h["loss"] for h in result.metrics["history"]]
    assert m["steps"] == 30 and m["effective_batch"] == 16 and m["warmup_steps"] == 3
    lrs = [h["lr"] for h in m["history"]]  # warm-up over 3 steps, then linear decay (lr_schedule)
    assert lrs[:4] == pytest.approx([train_cfg.lr / 3, train_cfg.lr * 2 / 3, train_cfg.lr, train_cfg.lr * 27 / 28])
    assert lrs[-1] == pytest.approx(train_cfg.lr / 28)
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    assert m["val_auc"] > 0.8 and m["contrastive_final"] > 0
    assert m["train_window"][1] < m["split_time"] <= m["val_window"][0]  # no validation row before a training row

    doc = json.loads((tmp_path / "run" / "star_text_model.json").read_text())
    assert set(doc["model_config"]) == {f.name for f in fields(TextModelConfig)}
    assert doc["train_config"] == train_cfg.to_dict() and doc["metrics"]["val_auc"] == m["val_auc"]
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    enc, head, _ = load_model(tmp_path / "run")
    lora_b = [p for n, p in enc.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # the adapter learned (it starts at zero)


def test_frozen_head_trains_only_the_head_and_saves_no_adapter(tmp_path, tiny_dir):
    model_cfg, train_cfg = _cfgs(tiny_dir, mode="frozen_head", max_steps=10)
    result = train(tiny_pairs(), model_cfg=model_cfg, train_cfg=train_cfg, out_dir=tmp_path / "run", progress=False)
    assert result.metrics["trainable_params"] == 64 * 32 + 32 + 32 + 1  # the head only
    assert not (tmp_path / "run" / "adapter").exists()
    doc = json.loads((tmp_path / "run" / "star_text_model.json").read_text())
    assert doc["adapter"] is None and doc["fingerprint"]["adapter_checksum"] is None


def test_rows_without_text_are_dropped_and_bad_frames_are_refused(tmp_path, tiny_dir):
    pairs = tiny_pairs()
    pairs.loc[[3, 5], "member_text"] = [None, "   "]
    model_cfg, train_cfg = _cfgs(tiny_dir, mode="frozen_head", max_steps=2)
    result = train(pairs, model_cfg=model_cfg, train_cfg=train_cfg, out_dir=tmp_path / "a", progress=False)
    assert result.metrics["dropped_rows"] == 2
    with pytest.raises(TextInputError, match="job_text"):
        train(pairs.drop(columns="job_text"), model_cfg=model_cfg, train_cfg=train_cfg, out_dir=tmp_path / "b")
    with pytest.raises(TextInputError, match="no pair has a job text: are job texts loaded"):
        train(pairs.assign(job_text=None), model_cfg=model_cfg, train_cfg=train_cfg, out_dir=tmp_path / "c")


def test_compare_writes_a_table_json_and_chart(tmp_path, tiny_dir):
    model_cfg, train_cfg = _cfgs(tiny_dir, max_steps=3)
    result = compare(tiny_pairs(), model_cfg=model_cfg, train_cfg=train_cfg, out_dir=tmp_path,
                     modes=("frozen_head", "bce"), progress=False)
    assert [r["model"] for r in result["rows"]] == ["frozen_head", "bce"]
    assert result["rows"][0]["relative_to_frozen"] == 0.0
    table = format_table(result)
    assert "baseline" in table and "bce" in table and "%" in table
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert saved["rows"] == result["rows"] and (tmp_path / "comparison.png").stat().st_size > 1000
    assert (tmp_path / "bce" / "adapter").is_dir() and not (tmp_path / "frozen_head" / "adapter").exists()
