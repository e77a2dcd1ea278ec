"""Text tower speed: embedding throughput fp32 vs bf16, the cost of a re-run after 1 % of texts changed, and
seconds per training step — each against its baseline in the same process.

    python bench/text_embed.py [--members 3000 --jobs 600] [--max-length 256] [--train-steps 4]

Prints one JSON line per measurement and a summary line with the ratios:
    bf16_speedup          texts/s bf16 / texts/s fp32 (embedding job, real synthetic texts, MiniLM)
    rerun_fraction        wall time of a re-run after 1 % of member texts changed / the full run (goal <= 0.02)
    train_step_s          seconds per optimizer step (batch 16, grad accumulation 1, checkpointing), fp32 and bf16
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace

from benchkit import emit, fresh_database
from star import db
from star.config import Settings
from star.pipeline import apply_features, seed_synthetic
from star.store.trainset import TrainsetConfig, build_trainset
from star.text.config import TextModelConfig, TrainConfig
from star.text.embed import EmbedConfig, embed_texts
from star.text.model import TextEncoder
from star.text.train import train



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=3000)
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--train-steps", type=int, default=4)
    parser.add_argument("--precisions", default="fp32,bf16", help="embedding precisions to time (the last one "
                                                                   "is re-run after the 1 %% change)")
    args = parser.parse_args()

    settings = Settings.from_env()
    target = fresh_database("star_bench_text", settings)
    seed_synthetic(target, members=args.members, jobs=args.jobs, seed=0, progress=False)
    lengths = {"job": args.max_length, "member": args.max_length, "resume": args.max_length}
    summary = {"bench": "text_embed", "members": args.members, "max_length": args.max_length}

    rates = {}
    precisions = args.precisions.split(",")
    for precision in precisions:
        encoder = TextEncoder(TextModelConfig(precision=precision, max_length=lengths))
        full = embed_texts(target, encoder, EmbedConfig(entities=("member",)), progress=False)[0]
        rates[precision] = emit({"precision": precision, "texts": full["embedded"], "seconds": full["seconds"],
                                 "encode_texts_per_s": full["texts_per_second"]})
    if {"fp32", "bf16"} <= set(rates):
        summary["bf16_speedup"] = round(rates["bf16"]["encode_texts_per_s"] / rates["fp32"]["encode_texts_per_s"], 2)

    # re-run after 1 % of texts changed, same (bf16) version: only those are embedded
    with db.connect(target) as conn:
        total = conn.execute("SELECT count(*) FROM star.text_snapshots WHERE entity = 'member'").fetchone()[0]
        conn.execute("UPDATE star.text_snapshots SET text = text || ' Also speaks Welsh.' WHERE entity = 'member' "
                     "AND (entity_id, valid_from) IN (SELECT entity_id, valid_from FROM star.text_snapshots "
                     "WHERE entity = 'member' ORDER BY md5(text) LIMIT %s)", (total // 100,))
        conn.commit()
    started = time.perf_counter()
    rerun = embed_texts(target, encoder, EmbedConfig(entities=("member",)), progress=False)[0]
    rerun_seconds = time.perf_counter() - started
    emit({"rerun_embedded": rerun["embedded"], "rerun_skipped": rerun["skipped"], "seconds": round(rerun_seconds, 2)})
    summary["rerun_fraction"] = round(rerun_seconds / rates[precisions[-1]]["seconds"], 4)

    apply_features(target, settings)
    pairs = build_trainset(target, TrainsetConfig(task="apply"))
    steps = {}
    for precision in precisions:
        with tempfile.TemporaryDirectory() as out:
            result = train(pairs, model_cfg=TextModelConfig(precision=precision, max_length=lengths),
                           train_cfg=replace(TrainConfig(), mode="bce+contrastive", max_steps=args.train_steps,
                                             per_device_batch=16, grad_accum=1),
                           out_dir=out, progress=False)
        steps[precision] = emit({"train_precision": precision, "steps": result.metrics["steps"],
                                 "seconds_per_step": result.metrics["seconds_per_step"]})["seconds_per_step"]
    summary["train_step_s"] = steps
    if {"fp32", "bf16"} <= set(steps):
        summary["train_bf16_speedup"] = round(steps["fp32"] / steps["bf16"], 2)
    emit(summary)
    db.drop_database(target)


if __name__ == "__main__":
    main()
