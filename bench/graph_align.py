"""BC-Aligner-style joint training vs post-hoc ridge maps: the chained error of three graph vintages.

    python bench/graph_align.py [--members 3000 --jobs 600] [--epochs 6] [--align-weight 1.0]

    v1          GNN trained at data end - 2 x gap, embedded (published)
    post hoc    v2 (data end - gap, seed 1) and v3 (data end, seed 2) trained alone; ridge maps v3 -> v2 -> v1
    joint       v2' aligned to v1, v3' aligned to v2' and through the stored v2' -> v1 map to v1 (star graph train
                --align); the maps they learned, and ridge maps refitted on their rows
    all five embedded at the data end (candidates beside v1); members and jobs split 80 / 20: ridge maps are fitted on
    the 80 %, every cosine below is on the held-out 20 % against v1's own rows

Prints one JSON line per model (validation AUC: what alignment costs the task) and per family (single-hop and chained
mean cosine, post hoc vs joint, and the direct v3 -> v1 ridge map for reference) and a summary line:
    chained_error_ratio   (1 - cos) joint / post hoc for v3 -> v2 -> v1 (below 1: the joint maps chain better)
Plot: bench/results/graph_align.png.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchkit import emit, fresh_database
from star import db
from star.config import REPO_ROOT, Settings
from star.graph import checkpoint
from star.graph.align import alignment_targets
from star.graph.build import GraphConfig, build_graph
from star.graph.embed import GraphEmbedConfig, data_end, embed_graph
from star.graph.model import GNNConfig
from star.graph.train import GraphTrainConfig, train_gnn
from star.pipeline import seed_synthetic
from star.text.embed import EmbedConfig, embed_texts
from star.text.model import TextEncoder
from star.text.config import TextModelConfig
from star.versions import compat
from star.versions.lifecycle import current_vectors

RESULTS = REPO_ROOT / "bench" / "results"
ENTITIES = {"member": "member_graph_embedding", "job": "job_graph_embedding"}


def train_and_embed(target, home: Path, name: str, cutoff, train_cfg, *, align=None, candidate=True) -> dict:
    mg = build_graph(target, GraphConfig(cutoff=cutoff))
    targets = alignment_targets(target, mg, to_version=align) if align is not None else None
    result = train_gnn(mg, GNNConfig(), train_cfg, progress=False, align=targets)
    path = checkpoint.save(home / name, result, mg, GNNConfig(), train_cfg)
    out = embed_graph(target, checkpoint.load(path), cfg=GraphEmbedConfig(candidate=candidate), progress=False)
    return emit({"model": name, "cutoff": cutoff.isoformat(), "aligned_to": align,
                 "best_mean_val_auc": round(result.metrics["best_mean_val_auc"], 4),
                 "align_cos_last_epoch": (result.metrics["align_cos"] or [None])[-1],
                 "train_seconds": result.metrics["seconds"], "version": out[0]["version"]})


def split(ids: list[int], seed: int = 0) -> tuple[list[int], list[int]]:
    order = np.random.default_rng(seed).permutation(len(ids))
    k = len(ids) // 5
    return [ids[i] for i in order[k:]], [ids[i] for i in order[:k]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=3000)
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--gap-days", type=float, default=14.0)
    parser.add_argument("--align-weight", type=float, default=1.0)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="star_align_"))
    target = fresh_database("star_bench_align")
    seed_synthetic(target, members=args.members, jobs=args.jobs, seed=0, progress=False)
    embed_texts(target, TextEncoder(TextModelConfig()), EmbedConfig(), progress=False)
    end = data_end(target)
    gap = pd.Timedelta(days=args.gap_days)
    cfg = GraphTrainConfig(epochs=args.epochs, align_weight=args.align_weight)
    v = {"v1": train_and_embed(target, home, "v1", end - 2 * gap, cfg, candidate=False)["version"]}
    v["v2"] = train_and_embed(target, home, "v2", end - gap, replace(cfg, seed=1))["version"]
    v["v3"] = train_and_embed(target, home, "v3", end, replace(cfg, seed=2))["version"]
    v["v2j"] = train_and_embed(target, home, "v2_joint", end - gap, replace(cfg, seed=1), align=v["v1"])["version"]
    v["v3j"] = train_and_embed(target, home, "v3_joint", end, replace(cfg, seed=2), align=v["v2j"])["version"]

    rows = []
    with db.connect(target) as conn:
        for entity, family in ENTITIES.items():
            vec = {k: current_vectors(conn, family, n, entity) for k, n in v.items()}
            train, test = split(sorted(set.intersection(*(set(x) for x in vec.values()))))

            def rows_of(key, ids):
                return np.stack([vec[key][i] for i in ids])

            def ridge(a, b):
                return compat.fit(rows_of(a, train), rows_of(b, train), family=family, from_version=v[a],
                                  to_version=v[b], holdout=0)

            def cos(m, key):
                return compat.metrics(m.apply(rows_of(key, test)), rows_of("v1", test))["cos_mean"]

            joint21, joint32 = compat.load(conn, family, v["v2j"], v["v1"]), compat.load(conn, family, v["v3j"],
                                                                                         v["v2j"])
            r = {"family": family, "train_entities": len(train), "heldout_entities": len(test),
                 "post_hoc": {"v2_to_v1": cos(ridge("v2", "v1"), "v2"),
                              "v3_to_v1_chained": cos(compat.compose([ridge("v3", "v2"), ridge("v2", "v1")]), "v3"),
                              "v3_to_v1_direct": cos(ridge("v3", "v1"), "v3")},
                 "joint_maps": {"v2_to_v1": cos(joint21, "v2j"),
                                "v3_to_v1_chained": cos(compat.compose([joint32, joint21]), "v3j")},
                 "joint_ridge": {"v2_to_v1": cos(ridge("v2j", "v1"), "v2j"),
                                 "v3_to_v1_chained": cos(compat.compose([ridge("v3j", "v2j"), ridge("v2j", "v1")]),
                                                         "v3j"),
                                 "v3_to_v1_direct": cos(ridge("v3j", "v1"), "v3j")}}
            best_joint = max(r["joint_maps"]["v3_to_v1_chained"], r["joint_ridge"]["v3_to_v1_chained"])
            r["chained_error_ratio"] = round((1 - best_joint) / (1 - r["post_hoc"]["v3_to_v1_chained"]), 3)
            rows.append(emit(r))
    emit({"summary": "graph_align", "members": args.members, "jobs": args.jobs, "epochs": args.epochs,
          "align_weight": args.align_weight,
          "chained_error_ratio": {r["family"]: r["chained_error_ratio"] for r in rows}})
    plot(rows, RESULTS / "graph_align.png")
    db.drop_database(target)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 4), squeeze=False)
    for ax, r in zip(axes[0], rows):
        names = ["post hoc", "joint maps", "joint + ridge"]
        groups = [r["post_hoc"], r["joint_maps"], r["joint_ridge"]]
        x = np.arange(len(names))
        for k, key in enumerate(("v2_to_v1", "v3_to_v1_chained")):
            ax.bar(x + (k - 0.5) * 0.38, [g[key] for g in groups], 0.38, label=key.replace("_", " "))
        ax.set_xticks(x, names)
        ax.set_ylim(min(0.5, min(g["v3_to_v1_chained"] for g in groups) - 0.05), 1.0)
        ax.set_ylabel("held-out mean cosine to v1's rows")
        ax.set_title(r["family"])
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
