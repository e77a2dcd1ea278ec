"""GNN training, one process vs DDP (`star graph train --workers N`): epoch time and validation AUC, same market.

    python bench/scale_out_graph.py [--members 1000 --jobs 300] [--epochs 3] [--workers 2] [--seeds 0 1]

    market      synthetic, in a fresh database (dropped at the end); graph as of its data end, built once
    local       distributed.fit(workers=1), once per seed: the seed-to-seed spread of the best val AUC is the noise floor
    ddp         distributed.fit(workers=N), same seeds: per-epoch training seconds (metrics.epoch_seconds: the steps, not
                the validation), best val AUC; wall_s includes spawning the workers and validation
Prints one JSON line per run and a summary line:
    epoch_ratio       median epoch seconds, ddp / local (below 1: faster with N workers)
    auc_gap           |mean best val AUC ddp - local| over the seeds, next to seed_spread (max - min of local)
On a machine with fewer cores than 2 x N threads the ratio says what contention costs, not what N machines give:
each worker gets threads // N torch threads (on a shared 2-core box one process with 2 threads spin-waits on small
ops, so part of a ratio below 0.5 there is that, not DDP). (For the lead: fold into bench/scale_out.py as the `graph_train` part.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from benchkit import emit, fresh_database
from star import db
from star.graph.build import GraphConfig, build_graph
from star.graph.embed import data_end
from star.graph.distributed import fit
from star.graph.model import GNNConfig
from star.graph.train import GraphTrainConfig
from star.pipeline import seed_synthetic


def run(mg, model_cfg, train_cfg, workers: int) -> dict:
    t0 = time.perf_counter()
    result = fit(mg, model_cfg, train_cfg, progress=False, workers=workers)
    m = result.metrics
    return {"workers": workers, "seed": train_cfg.seed, "best_val_auc": m["best_mean_val_auc"],
            "epoch_seconds": m["epoch_seconds"], "median_epoch_s": statistics.median(m["epoch_seconds"]),
            "steps": m["steps"], "fanouts": m["fanouts"], "wall_s": round(time.perf_counter() - t0, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()
    target = fresh_database("star_bench_scale_graph")
    try:
        seed_synthetic(target, members=args.members, jobs=args.jobs, seed=7, progress=False)
        mg = build_graph(target, GraphConfig(cutoff=data_end(target), use_text=False))
        model_cfg = GNNConfig(hidden=64, out_dim=64, heads=2, use_text=False)
        rows = {1: [], args.workers: []}
        for seed in args.seeds:
            cfg = GraphTrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=seed)
            for workers in (1, args.workers):
                rows[workers].append(emit({"bench": "graph_train", "cores": os.cpu_count(),
                                           "threads": torch.get_num_threads(), **run(mg, model_cfg, cfg, workers)}))
        local, ddp = rows[1], rows[args.workers]
        mean = lambda rs, k: statistics.mean(r[k] for r in rs)  # noqa: E731
        emit({"bench": "graph_train", "summary": True, "members": args.members, "jobs": args.jobs,
              "edges": mg.edge_counts, "workers": args.workers, "cores": os.cpu_count(),
              "epoch_ratio": round(mean(ddp, "median_epoch_s") / mean(local, "median_epoch_s"), 3),
              "auc_local": round(mean(local, "best_val_auc"), 4), "auc_ddp": round(mean(ddp, "best_val_auc"), 4),
              "auc_gap": round(abs(mean(ddp, "best_val_auc") - mean(local, "best_val_auc")), 4),
              "seed_spread": round(max(r["best_val_auc"] for r in local) - min(r["best_val_auc"] for r in local), 4)})
    finally:
        db.drop_database(target)


if __name__ == "__main__":
    main()
