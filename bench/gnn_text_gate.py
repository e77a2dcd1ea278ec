"""GNN + text never below GNN-categorical? The Table-4 ablation on two synthetic markets in the same process: GNN +
text as `star graph train` trains it (text_gate=False, the default), the same with the text gate (text_gate=True:
text enters through gates learned from 0), and the variant `star graph train` keeps (evaluate.keep_variant: GNN +
text unless GNN-categorical validated better).

    python bench/gnn_text_gate.py [--members 1500 --jobs 300 --seed 0] [--epochs 5] [--text-dropout 0.0]

Markets (each in a fresh database, dropped at the end), one generator seed, only the texts differ:
    normal   star.data.synthetic.generate(...) as it is
    noisy    the same market with every text snapshot's text replaced by that of another entity of the same kind
             (a random derangement of the text column among the member rows, and among the job rows, done on the
             frames before loading): the texts are real job-market prose that says nothing about the entity
Per market: texts embedded with the frozen base MiniLM (star.text.embed) -> graph at data end - 14 days ->
star.graph.evaluate.ablation on the 14 days after it (5 negatives per positive): gnn_categorical, gnn_text and
text_cosine, then gnn_text again with the gate (the same seed, epochs and sampler).

Prints one JSON line per market and a table; writes bench/results/gnn_text_gate.{json,md}:
    kept                   the variant chosen on validation, and its later-window AUC
    kept - categorical     the promise: >= 0 up to noise, also when text is weak
    gated / ungated        later-window AUC of GNN + text with the gate / without it (per task)
    text gates             the gated model's kept gates (input RMS, residual weight / sqrt(out_dim)), and whether
                           validation chose it with its gates closed
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from benchkit import emit, fresh_database
from star import db
from star.config import REPO_ROOT, Settings
from star.graph import evaluate
from star.graph.build import GraphConfig, build_graph
from star.graph.embed import data_end
from star.graph.model import GNNConfig
from star.graph.train import GraphTrainConfig

RESULTS = REPO_ROOT / "bench" / "results"
EVAL_DAYS = 14.0


def noisy_texts(texts: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Every row's text replaced by the text of another row of the same entity kind (a derangement: a random
    permutation shifted by one, so no row keeps its own text)."""
    rng = np.random.default_rng(seed)
    out = texts.copy()
    for _, rows in out.groupby("entity").groups.items():
        rows = np.asarray(rows)
        if len(rows) < 2:
            continue
        order = rng.permutation(rows)
        out.loc[order, "text"] = out.loc[np.roll(order, 1), "text"].to_numpy()
    return out


def seed_market(target, *, members: int, jobs: int, seed: int, noisy: bool) -> dict:
    """seed_synthetic with the texts optionally scrambled before loading."""
    from star.data.reading import frame
    from star.data.synthetic import generate
    from star.pipeline import SYNTHETIC_KINDS
    from star.store.marketplace import load

    market = generate(members=members, jobs=jobs, seed=seed, progress=False)
    frames = {kind: getattr(market, kind) for kind in SYNTHETIC_KINDS}
    if noisy:
        before = frames["texts"]["text"].to_numpy()
        frames["texts"] = noisy_texts(frames["texts"], seed + 1)
        assert not (frames["texts"]["text"].to_numpy() == before).all()
    return load(target, {k: frame(v, f"{k} (synthetic)") for k, v in frames.items()}, progress=False)


def embed_base(target) -> None:
    from star.text.config import TextModelConfig
    from star.text.embed import EmbedConfig, embed_texts
    from star.text.model import TextEncoder

    embed_texts(target, TextEncoder(TextModelConfig()), EmbedConfig(), progress=False)


def run_market(name: str, args, settings: Settings) -> dict:
    target = fresh_database(f"star_bench_gate_{name}", settings)
    try:
        t0 = time.perf_counter()
        seed_market(target, members=args.members, jobs=args.jobs, seed=args.seed, noisy=name == "noisy")
        embed_base(target)
        mg = build_graph(target, GraphConfig(cutoff=data_end(target) - pd.Timedelta(days=EVAL_DAYS)))
        prepared = time.perf_counter() - t0
        default = GNNConfig()
        train_cfg = GraphTrainConfig(epochs=args.epochs, seed=args.seed)
        t1 = time.perf_counter()
        report, trained = evaluate.ablation(target, mg, default, train_cfg, days=EVAL_DAYS, progress=False,
                                            variants=("gnn_categorical", "gnn_text", "text_cosine"))
        t2 = time.perf_counter()
        gate, gate_trained = evaluate.ablation(target, mg, replace(default, text_gate=True,
                                                                   text_dropout=args.text_dropout),
                                               train_cfg, days=EVAL_DAYS, progress=False, variants=("gnn_text",))
        t3 = time.perf_counter()
    finally:
        db.drop_database(target)
    auc = {r["variant"]: {t: m["auc"] for t, m in r["tasks"].items()} for r in report["rows"]}
    auc["gnn_text_ungated"] = auc.pop("gnn_text")
    auc["gnn_text"] = {t: m["auc"] for t, m in gate["rows"][0]["tasks"].items()}
    kept = evaluate.keep_variant(trained, "gnn_text")
    auc["kept"] = auc["gnn_text_ungated" if kept == "gnn_text" else kept]
    m = gate_trained["gnn_text"].metrics
    return emit({"market": name, "members": args.members, "jobs": args.jobs, "seed": args.seed,
                 "window": report["window"], "auc": auc, "kept": kept,
                 "pairs": {t: m_["pairs"] for t, m_ in report["rows"][0]["tasks"].items()},
                 "text_gates": m["text_gates_kept"], "text_closed": m["text_closed"],
                 "val_auc": {"gnn_categorical": trained["gnn_categorical"].metrics["best_mean_val_auc"],
                             "gnn_text": m["best_mean_val_auc"],
                             "gnn_text_ungated": trained["gnn_text"].metrics["best_mean_val_auc"]},
                 "seconds": {"prepare": round(prepared, 1), "ablation": round(t2 - t1, 1),
                             "gated_gnn_text": round(t3 - t2, 1)}})


def table(results: list[dict]) -> str:
    lines = ["| market | task | GNN categorical | GNN + text (default) | GNN + text (gated) | text cosine | "
             "kept (on validation) | kept - categorical | gated / ungated |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        a = r["auc"]
        for task in a["gnn_categorical"]:
            cat, gated, old = a["gnn_categorical"][task], a["gnn_text"][task], a["gnn_text_ungated"][task]
            cos, kept = a.get("text_cosine", {}).get(task), a["kept"][task]
            lines.append(f"| {r['market']} | {task} | {cat:.4f} | {old:.4f} | {gated:.4f} | "
                         f"{'-' if cos is None else f'{cos:.4f}'} | {r['kept']} {kept:.4f} | {kept - cat:+.4f} | "
                         f"{gated / old:.3f} |")
    lines.append("")
    for r in results:
        lines.append(f"{r['market']}: validation mean AUC {json.dumps(r['val_auc'])}")
        lines.append(f"{r['market']}: kept text gates {json.dumps(r['text_gates'])}, chosen with gates closed: "
                     f"{r['text_closed']}; pairs per task {json.dumps(r['pairs'])}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=1500)
    ap.add_argument("--jobs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--text-dropout", type=float, default=0.0)
    ap.add_argument("--markets", default="normal,noisy", help="comma-separated: normal, noisy")
    args = ap.parse_args()
    torch.set_num_threads(2)
    settings = Settings.from_env()
    results = [run_market(name, args, settings) for name in args.markets.split(",")]
    text = table(results)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gnn_text_gate.json").write_text(json.dumps({"args": vars(args), "markets": results}, indent=1,
                                                           default=str))
    cmd = (f"python bench/gnn_text_gate.py --members {args.members} --jobs {args.jobs} --seed {args.seed} "
           f"--epochs {args.epochs} --text-dropout {args.text_dropout} --markets {args.markets}")
    (RESULTS / "gnn_text_gate.md").write_text(f"`{cmd}`\n\n{text}\n")


if __name__ == "__main__":
    main()
