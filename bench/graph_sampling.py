"""Graph tower speed: adaptive vs fixed-fanout sampling (training time, validation AUC), inference rows/s, peak memory
— the adaptive run against the fixed one in the same process, on the same graph, seed and epochs (or, with
--patience, each until its validation AUC stops improving; adaptive: at its largest fanouts = the fixed ones).

    python bench/graph_sampling.py [--members 100000 --jobs 20000] [--epochs 8 --steps-per-epoch 60]
                                   [--patience 0] [--fanouts 10,10] [--start 3,3] [--batch-size 1024]
                                   [--layers-only]   (the step timing and inference alone: ~5 min)

An epoch here is --steps-per-epoch batches (0: a full pass over the training edges): on a graph this size a full
pass takes ~40 min at fanout 10 on 2 cores, and a marketplace graph is larger than any batch's neighbourhood, which
is the case adaptive sampling is for (on a 20k-member graph a batch's 2-hop neighbourhood covers most nodes at any
fanout, so a small fanout saves little: see docs/graph-embeddings.md).

Prints one JSON line per run and a summary line:
    time_to_accuracy_ratio  the goal: seconds of training the adaptive run took to come within 0.002 of the fixed
                          run's best validation AUC / seconds the fixed run took to come within the same 0.002
                          (one target for both runs; goal <= 0.70; None: the adaptive run never did)
    train_time_ratio      adaptive / fixed: seconds of training steps over the same epochs (with --patience: each
                          run until it stopped)
    auc_delta             best mean validation AUC, adaptive - fixed (goal >= -0.002)
    fixed_seconds_to_adaptive_auc  when the fixed run first reached the adaptive run's best AUC (time to accuracy)
    adaptive_seconds_to_fixed_auc  when the adaptive run first came within 0.002 of the fixed run's best AUC
    infer_rows_per_s      layer-wise inference over the whole graph, member + job rows per second
    layer_speedup         training step time with DGL's HeteroGraphConv(GATConv) / with star's RelationGAT (same
                          weights, same sampled batches, fixed and start fanouts)
    peak_rss_mb           peak resident memory of each phase (graph build, each training run, inference)
Plot: bench/results/graph_sampling.png (validation AUC against cumulative training seconds; with --seed k > 0:
graph_sampling_seed<k>.png; --plot PATH puts it elsewhere).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchkit import emit, fresh_database
from star import db
from star.config import REPO_ROOT, Settings
from star.graph.build import GraphConfig, build_graph
from star.graph.embed import data_end
from star.graph.model import GNNConfig
from star.graph.train import GraphTrainConfig, embed_all, train_gnn
from star.pipeline import seed_synthetic

RESULTS = REPO_ROOT / "bench" / "results"



def reset_peak() -> None:
    """Linux: writing 5 to clear_refs resets the process's peak RSS (VmHWM)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def ints(value: str) -> tuple[int, ...]:
    return tuple(int(x) for x in value.split(","))


def run(mg, name: str, model_cfg: GNNConfig, train_cfg: GraphTrainConfig) -> tuple[dict, object]:
    """(the run's JSON record, the trained model)."""
    reset_peak()
    res = train_gnn(mg, model_cfg, train_cfg, progress=False)
    m = res.metrics
    return emit({"run": name, "sampler": train_cfg.sampler, "fanouts_per_epoch": m["fanouts"],
                 "epoch_seconds": m["epoch_seconds"], "train_seconds": round(sum(m["epoch_seconds"]), 2),
                 "mean_val_auc": [round(a, 4) for a in m["mean_val_auc"]],
                 "best_mean_val_auc": round(m["best_mean_val_auc"], 4), "peak_rss_mb": peak_mb()}), res.model


class DGLGATLayer(torch.nn.Module):
    """The baseline: DGL's HeteroGraphConv of one GATConv per relation, with RelationGAT's call signature."""

    def __init__(self, ours):
        super().__init__()
        from star.graph.dgl_compat import import_dgl

        dgl = import_dgl()
        self.conv = dgl.nn.HeteroGraphConv({e: dgl.nn.GATConv(
            ours.fc[":".join(e)].in_features, ours.per_head, ours.heads, feat_drop=ours.feat_drop.p,
            attn_drop=ours.attn_drop.p, negative_slope=ours.negative_slope, allow_zero_in_degree=True)
            for e in ours.etypes}, aggregate="sum")

    def forward(self, g, h_src, h_dst):
        return self.conv(g, (h_src, h_dst))


def layer_speed(mg, fanouts, batch_size: int, batches: int = 6) -> dict:
    """Seconds per training step (forward + backward) of the model with RelationGAT vs with DGL's GATConv layers,
    alternating on the same sampled batches."""
    import copy

    from star.graph import sampling
    from star.graph.model import HeteroGNN, LinkDecoder, input_specs
    from star.graph.train import _tasks, split_by_time

    tasks = _tasks(mg.graph, None)
    graph, _, eids, _ = split_by_time(mg.graph, tasks, 0.2)
    ours = HeteroGNN(GNNConfig(), input_specs(mg), mg.graph.canonical_etypes)
    ours.fit_text_basis(mg.features)
    theirs = copy.deepcopy(ours)
    theirs.convs = torch.nn.ModuleList(DGLGATLayer(c) for c in ours.convs)
    decoder = LinkDecoder(GNNConfig(), tasks)
    loader = sampling.edge_loader(mg, tasks, sampling.uniform(fanouts), batch_size, 1, eids, 0, graph=graph,
                                  negatives="popularity")
    seconds = {"relation_gat": 0.0, "dgl_gatconv": 0.0}
    for _, (_, pos, neg, blocks) in zip(range(batches), loader):
        for name, model in (("relation_gat", ours), ("dgl_gatconv", theirs)):
            t0 = time.perf_counter()
            z = model(blocks, mg.features)
            decoder.loss(decoder.score_graph(pos, z), decoder.score_graph(neg, z)).backward()
            seconds[name] += time.perf_counter() - t0
    return {"fanouts": list(fanouts), "step_seconds": {k: round(v / batches, 4) for k, v in seconds.items()},
            "layer_speedup": round(seconds["dgl_gatconv"] / seconds["relation_gat"], 3)}


def time_to(run: dict, auc: float) -> float | None:
    """Cumulative training seconds when `run` first reached `auc` (None: never)."""
    total = 0.0
    for seconds, a in zip(run["epoch_seconds"], run["mean_val_auc"]):
        total += seconds
        if a >= auc:
            return round(total, 1)
    return None


def plot(runs: list[dict], path: Path, target: float | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        t, total = [], 0.0
        for s in r["epoch_seconds"]:
            total += s
            t.append(total)
        ax.plot(t, r["mean_val_auc"], marker="o", label=f"{r['run']} ({r['train_seconds']:.0f} s)")
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"fixed best - 0.002 ({target:.4f})")
    ax.set_xlabel("cumulative training seconds")
    ax.set_ylabel("mean validation AUC")
    ax.set_title("adaptive vs fixed neighbour sampling")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100000)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=8, help="(at most, with --patience)")
    parser.add_argument("--steps-per-epoch", type=int, default=60, help="batches per epoch; 0: full passes")
    parser.add_argument("--patience", type=int, default=0, help="stop each run after this many epochs without a "
                                                                  "better validation AUC (0: run every epoch)")
    parser.add_argument("--fanouts", type=ints, default=(10, 10), help="the fixed run's fanouts (and the "
                                                                       "adaptive run's maximum)")
    parser.add_argument("--start", type=ints, default=(3, 3), help="the adaptive run's first fanouts")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=None, help="where the plot goes (default: see above)")
    parser.add_argument("--layers-only", action="store_true", help="only the RelationGAT vs GATConv step timing "
                                                                   "and inference (minutes, not the training runs)")
    args = parser.parse_args()

    settings = Settings.from_env()
    target = fresh_database("star_bench_graph", settings)
    seed_synthetic(target, members=args.members, jobs=args.jobs, seed=args.seed, progress=False)
    reset_peak()
    t0 = time.perf_counter()
    mg = build_graph(target, GraphConfig(cutoff=data_end(target), text_version={}))
    emit({"phase": "build graph", "seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": peak_mb(),
          "nodes": {nt: mg.graph.num_nodes(nt) for nt in mg.graph.ntypes}, "edges": sum(mg.edge_counts.values()),
          "threads": torch.get_num_threads()})

    speed = [emit({"phase": "training step, RelationGAT vs DGL GATConv", **layer_speed(mg, f, args.batch_size)})
             for f in (args.fanouts, args.start)]
    model_cfg = GNNConfig()
    if args.layers_only:
        from star.graph.model import HeteroGNN, input_specs

        model = HeteroGNN(model_cfg, input_specs(mg), mg.graph.canonical_etypes)
        model.fit_text_basis(mg.features)
        reset_peak()
        t0 = time.perf_counter()
        rows = sum(len(v) for v in embed_all(model, mg).values())
        seconds = time.perf_counter() - t0
        emit({"summary": "graph_sampling --layers-only", "members": args.members, "jobs": args.jobs,
              "layer_speedup": {"x".join(map(str, r["fanouts"])): r["layer_speedup"] for r in speed},
              "step_seconds": {"x".join(map(str, r["fanouts"])): r["step_seconds"] for r in speed},
              "infer_rows_per_s": round(rows / seconds, 1), "inference_peak_rss_mb": peak_mb(), "seed": args.seed})
        db.drop_database(target)
        return
    common = dict(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, patience=args.patience,
                  steps_per_epoch=args.steps_per_epoch or None)
    fixed, model = run(mg, "fixed", model_cfg, GraphTrainConfig(sampler="uniform", fanouts=args.fanouts, **common))
    adaptive, _ = run(mg, "adaptive", model_cfg, GraphTrainConfig(sampler="adaptive", adaptive_start=args.start,
                                                                  adaptive_max=args.fanouts, **common))
    reset_peak()
    t0 = time.perf_counter()
    z = embed_all(model, mg)
    seconds = time.perf_counter() - t0
    rows = sum(len(v) for v in z.values())
    infer = emit({"phase": "inference (layer-wise, whole graph)", "rows": rows, "seconds": round(seconds, 2),
                  "rows_per_second": round(rows / seconds, 1), "peak_rss_mb": peak_mb()})
    png = args.plot or RESULTS / ("graph_sampling.png" if args.seed == 0 else f"graph_sampling_seed{args.seed}.png")
    goal = fixed["best_mean_val_auc"] - 0.002
    plot([fixed, adaptive], png, goal)
    to_fixed, fixed_to_goal = time_to(adaptive, goal), time_to(fixed, goal)
    emit({"summary": "graph_sampling", "members": args.members, "jobs": args.jobs,
          "time_to_accuracy_ratio": None if to_fixed is None else round(to_fixed / fixed_to_goal, 3),
          "train_time_ratio": round(adaptive["train_seconds"] / fixed["train_seconds"], 3),
          "auc_delta": round(adaptive["best_mean_val_auc"] - fixed["best_mean_val_auc"], 4),
          "epochs": {"fixed": len(fixed["epoch_seconds"]), "adaptive": len(adaptive["epoch_seconds"])},
          "steps_per_epoch": args.steps_per_epoch or None, "batch_size": args.batch_size,
          "fixed_seconds_to_adaptive_auc": time_to(fixed, adaptive["best_mean_val_auc"]),
          "adaptive_seconds_to_fixed_auc": to_fixed, "fixed_seconds_to_within_0.002": fixed_to_goal,
          "adaptive_seconds": adaptive["train_seconds"],
          "infer_rows_per_s": infer["rows_per_second"],
          "layer_speedup": {"x".join(map(str, r["fanouts"])): r["layer_speedup"] for r in speed},
          "peak_rss_mb": {"fixed": fixed["peak_rss_mb"], "adaptive": adaptive["peak_rss_mb"],
                          "inference": infer["peak_rss_mb"]},
          "seed": args.seed, "plot": str(png)})
    db.drop_database(target)


if __name__ == "__main__":
    main()
