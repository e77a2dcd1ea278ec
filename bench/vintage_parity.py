"""The parity gate on real vintages: per hop and chained, through the documented commands' functions.

    python bench/vintage_parity.py [--members 3000 --jobs 600] [--steps 40]

    v1  the shipped MiniLM (base)                                  -> published, the reference ranker trains on v1
    v2  MiniLM + a LoRA adapter fine-tuned `steps` steps (seed 0)   -> candidate -> star versions publish (gate vs v1)
    v3  MiniLM + an adapter fine-tuned 2 x `steps` steps (seed 1)   -> candidate -> star versions publish (gate vs v1)
    maps v3 -> v2 and v2 -> v1 composed (chained) against the direct v3 -> v1 (mean cosine, on current members)
    retire v1 and v2: the v1 ranker's AUC on its held-out rows, native before vs served through the maps after

Prints one JSON line per gate and a summary line (every number the closing note quotes).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from benchkit import emit, fresh_database
from star import db
from star.config import Settings
from star.pipeline import apply_features, materialize, seed_synthetic, text_train
from star.ranker import RankerConfig, auc, heldout, save, train_ranker
from star.store.trainset import TrainsetConfig, build_trainset
from star.text.config import TextModelConfig, TrainConfig
from star.text.embed import EmbedConfig, embed_texts
from star.text.model import TextEncoder, load_model
from star.versions import compat
from star.versions.lifecycle import fit_map, shared_vectors
from star.versions.retire import retire
from star.versions.publish import publish

FAMILIES = ("member_text_embedding", "job_text_embedding")
SHORT = {"member": 128, "job": 128, "resume": 128}



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=3000)
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="star_parity_"))
    settings = Settings.from_env().model_copy(update={"home": home})  # adapters go to a temporary home, not the user's
    target = fresh_database("star_bench_parity")
    seed_synthetic(target, members=args.members, jobs=args.jobs, seed=0, progress=False)
    embed_texts(target, TextEncoder(TextModelConfig(max_length=SHORT)), EmbedConfig(), progress=False)
    apply_features(target)
    refs = RankerConfig(member_features=("member_text_embedding_v1:embedding",),
                        job_features=("job_text_embedding_v1:embedding",))
    df = build_trainset(target, TrainsetConfig(features=refs.refs))
    ranker, metrics = train_ranker(df, refs)
    ranker_dir = save(ranker, home / "ranker")
    held = heldout(ranker, df)
    auc_v1 = auc(ranker, held)
    emit({"phase": "ranker on v1", "auc_val": metrics["auc_val"], "heldout_rows": len(held)})

    gates = {}
    for version, steps, seed in ((2, args.steps, 0), (3, 2 * args.steps, 1)):
        trained = text_train(target, model_cfg=TextModelConfig(max_length=SHORT),
                             train_cfg=TrainConfig(max_steps=steps, seed=seed), compare=False,
                             settings=settings, progress=False)
        encoder, _, _ = load_model(Path(trained["model"]))
        embed_texts(target, encoder, EmbedConfig(candidate=True), progress=False)
        apply_features(target)
        for family in FAMILIES:
            try:
                gate = publish(target, family, version, ranker_dir=ranker_dir)["gate"]
            except Exception as exc:  # a failed gate: report it and go on
                gate = getattr(exc, "report", {"error": str(exc)})
            gates[f"{family} v{version}->v1"] = emit({
                "gate": f"{family} v{version}->v1", "passed": gate.get("passed"),
                "alignment": gate.get("alignment", {}).get(family), "parity": gate.get("parity"),
                "overlap": gate.get("overlap", {}).get(family)})

    chain = {}
    with db.connect(target) as conn:
        for family in FAMILIES:
            entity = family.split("_")[0]
            fit_map(conn, family, 3, 2)
            chained = compat.compose([compat.load(conn, family, 3, 2), compat.load(conn, family, 2, 1)])
            direct = compat.load(conn, family, 3, 1)
            _, xs, ys = shared_vectors(conn, family, 3, 1, entity)
            chain[family] = {"chained_cos_mean": compat.metrics(chained.apply(xs), ys)["cos_mean"],
                             "direct_cos_mean": compat.metrics(direct.apply(xs), ys)["cos_mean"]}
        conn.commit()
    emit({"phase": "chain v3->v2->v1 vs direct v3->v1 (all current entities, in-sample)", **chain})
    retired = []
    for family in FAMILIES:
        for version in (2, 1):
            try:
                retire(target, family, version, settings=settings)
                retired.append(f"{family} v{version}")
            except Exception as exc:
                emit({"retire": f"{family} v{version}", "error": str(exc)})
    for family in FAMILIES:
        materialize(target, settings=settings, feature_views=[f"{family}_v1"])
    after = heldout(ranker, build_trainset(target, TrainsetConfig(features=refs.refs,
                                                                  start=pd.Timestamp(metrics["cut"]))))
    auc_after = auc(ranker, after)
    emit({"summary": "vintage_parity", "ranker_auc_v1_native": round(auc_v1, 4),
          "ranker_auc_v1_after_retiring_v1_v2": round(auc_after, 4), "delta": round(auc_after - auc_v1, 4),
          "retired": retired, "gates_passed": {k: g["passed"] for k, g in gates.items()}, "chain": chain})
    db.drop_database(target)


if __name__ == "__main__":
    main()
