import time
import numpy as np
import pytest
from star import db
from star.pipeline import apply_features, materialize, seed_synthetic
from star.store.catalog import latest_views
from star.store.trainset import TrainsetConfig, build_trainset
from star.text.config import TextModelConfig
from star.text.embed import EmbedConfig, embed_texts
from star.text.model import TextEncoder
from star.versions.lifecycle import fit_map
from tests.text_models import one_thread, tiny_bert  # noqa: F401


def test_explore(target, tmp_path):
    t = time.perf_counter()
    d0, d1 = tiny_bert(tmp_path / "b0", seed=0), tiny_bert(tmp_path / "b1", seed=1)
    encs = [TextEncoder(TextModelConfig(model_dir=d0, pooling="mean", precision="fp32")),
            TextEncoder(TextModelConfig(model_dir=d0, pooling="mean", precision="fp32",
                                        max_length={"member": 64, "job": 64, "resume": 64})),
            TextEncoder(TextModelConfig(model_dir=d1, pooling="mean", precision="fp32"))]
    print("models", time.perf_counter() - t)
    seed_synthetic(target, members=150, jobs=50, seed=5, progress=False)
    print("seed", time.perf_counter() - t)
    for e in encs:
        print(embed_texts(target, e, EmbedConfig(), progress=False))
    print("embed", time.perf_counter() - t)
    apply_features(target)
    print("apply", time.perf_counter() - t)
    materialize(target)
    print("mat", time.perf_counter() - t)
    with db.connect(target) as conn:
        for f, v in latest_views(conn).items():
            print(f, v.name, v.features)
        print(conn.execute("select relation, count(*), min(event_timestamp), max(event_timestamp) from star.interactions group by 1").fetchall())
        for fam in ("member_text_embedding", "job_text_embedding"):
            for k in (2, 3):
                m = fit_map(conn, fam, k, 1)
                print(fam, k, m.metrics)
    refs = [f"{f}_v{k}:embedding" for f in ("member_text_embedding", "job_text_embedding") for k in (1, 2, 3)]
    refs += ["member_categorical_v1:seniority", "job_categorical_v1:seniority"]
    df = build_trainset(target, TrainsetConfig(features=tuple(refs)))
    print("trainset", time.perf_counter() - t)
    print(df.shape, df.columns.tolist(), df.label.mean())
    print(df.head(3).T)
    print(df.isna().sum())
