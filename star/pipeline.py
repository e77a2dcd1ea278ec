"""The batch jobs, as functions returning what they did (the CLI and jobs/*.py print it as one JSON line).

    db up -> seed (synthetic or files) -> features apply -> features materialize -> online lookup / trainset
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from star import db
from star.config import DbTarget, Settings
from star.store.serving import apply_features, materialize  # noqa: F401  (jobs and tests call them from here)
from star.versions.pending import finish_pending, finished_views, serve_pending

SYNTHETIC_KINDS = ("members", "jobs", "texts", "edges", "nodes", "truth")


def seed_synthetic(target: DbTarget, *, members: int, jobs: int, seed: int = 0, months: int = 6,
                   text_length: str = "long", save: Path | None = None, progress: bool = True) -> dict:
    from star.data.reading import frame
    from star.data.synthetic import generate, write_dir
    from star.store.marketplace import load

    started = time.time()
    market = generate(members=members, jobs=jobs, seed=seed, months=months, text_length=text_length,
                      progress=progress)
    if save:
        write_dir(market, save)
    frames = {kind: frame(getattr(market, kind), f"{kind} (synthetic)") for kind in SYNTHETIC_KINDS}
    counts = load(target, frames, progress=progress)
    source = f"synthetic:members={members},jobs={jobs},seed={seed},months={months},text_length={text_length}"
    return {"job": "seed", "source": source,
            "written": counts, "seconds": round(time.time() - started, 2)}


def seed_dir(target: DbTarget, directory: Path, *, progress: bool = True) -> dict:
    from star.data.reading import read_dir
    from star.store.marketplace import load

    started = time.time()
    counts = load(target, read_dir(directory), progress=progress)
    return {"job": "seed", "source": str(directory), "written": counts, "seconds": round(time.time() - started, 2)}


def trainset(target: DbTarget, cfg, out: Path) -> dict:
    from star.store.trainset import build_trainset, summary

    started = time.time()
    df = build_trainset(target, cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out, index=False)
    return {"job": "trainset", "out": str(out), **summary(df), "seconds": round(time.time() - started, 2)}


def _run_dir(root: Path) -> Path:
    """root/<UTC time to the second>, with -2, -3, ... when a run of the same second already has that name."""
    base = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    run, n = root / base, 1
    while run.exists():
        n += 1
        run = root / f"{base}-{n}"
    return run


def newest_text_model(target: DbTarget) -> Path | None:
    """The newest model `star text train` trained on this database (star.text_models), if any."""
    from star.store import text_models

    with db.connect(target) as conn:
        found = text_models.newest(conn)
    return Path(found.path) if found else None


def _record_text_model(target: DbTarget, model_dir: Path, pairs, metrics: dict) -> None:
    """Register a saved model in star.text_models with its base model, adapter checksum and data window."""
    from star.store import text_models

    doc = json.loads((model_dir / "star_text_model.json").read_text())
    times = pairs["event_timestamp"] if len(pairs) else None
    with db.connect(target) as conn:
        text_models.record(conn, path=model_dir, base_model=doc["fingerprint"]["model_dir"],
                           adapter_sha256=doc["fingerprint"].get("adapter_checksum"),
                           data_start=None if times is None else times.min().to_pydatetime(),
                           data_end=None if times is None else times.max().to_pydatetime(),
                           config={"model": doc["model_config"], "train": doc["train_config"]}, metrics=metrics)
        conn.commit()


def text_train(target: DbTarget, *, model_cfg=None, train_cfg=None, task: str = "apply", compare: bool = True,
               settings: Settings | None = None, progress: bool = True, hard_negatives_by: str | None = None,
               hard_negatives: int = 1) -> dict:
    """`star text train`: point-in-time pairs -> LoRA fine-tune (BCE + semi-hard triplet) -> <run>/model.

    With `compare`, the frozen-base + head baseline and the BCE-only model are trained on the same time split
    too, and the Table-2-style comparison is stored beside the model (and later in the embedding version).
    """
    import shutil

    from star.store.trainset import TrainsetConfig, build_trainset, negative_counts
    from star.text.config import TextModelConfig, TrainConfig
    from star.text.evaluate import compare as compare_modes
    from star.text.evaluate import format_table
    from star.text.train import train

    started = time.time()
    settings = settings or Settings.from_env()
    model_cfg, train_cfg = model_cfg or TextModelConfig(), train_cfg or TrainConfig()
    pairs = build_trainset(target, TrainsetConfig(task=task, hard_negatives_by=hard_negatives_by,
                                                  hard_negatives=hard_negatives))
    run = _run_dir(settings.text_models)
    if compare:
        modes = tuple(dict.fromkeys(("frozen_head", "bce", "bce+contrastive", train_cfg.mode)))
        result = compare_modes(pairs, model_cfg=model_cfg, train_cfg=train_cfg, out_dir=run / "compare",
                               modes=modes, progress=progress)
        print(format_table(result), file=sys.stderr)
        shutil.copytree(run / "compare" / train_cfg.mode, run / "model")
        metrics = {r["model"]: {"val_auc": r["val_auc"], "relative_to_frozen": r["relative_to_frozen"]}
                   for r in result["rows"]}
    else:
        metrics = train(pairs, model_cfg=model_cfg, train_cfg=train_cfg, out_dir=run / "model",
                        progress=progress).metrics
    _record_text_model(target, run / "model", pairs, metrics)
    return {"job": "text train", "model": str(run / "model"), "mode": train_cfg.mode, "pairs": len(pairs),
            "negatives_by_source": negative_counts(pairs), "metrics": metrics,
            "seconds": round(time.time() - started, 2)}


def _comparison(model_dir: Path) -> dict | None:
    path = model_dir.parent / "compare" / "comparison.json"
    return json.loads(path.read_text()) if path.exists() else None


def text_embed(target: DbTarget, *, model_dir: str | None = None, adapter: Path | None = None, base: bool = False,
               cfg=None, model_cfg=None, settings: Settings | None = None, progress: bool = True,
               engine=None) -> dict:
    """`star text embed`: the newest model trained on this database (star.text_models; or `adapter`, or the base
    model: `model_cfg`, or the default config on `model_dir`) -> new or continued versions of
    member_text_embedding / job_text_embedding, encoded here or on Ray (`engine`), applied in Feast and
    materialized."""
    from star.cluster import EngineConfig, ray_session

    started, settings, engine = time.time(), settings or Settings.from_env(), engine or EngineConfig()
    with ray_session(engine) if engine.engine == "ray" else contextlib.nullcontext():  # bad address: fails now
        return _text_embed(target, model_dir=model_dir, adapter=adapter, base=base, cfg=cfg, model_cfg=model_cfg,
                           settings=settings, progress=progress, engine=engine, started=started)


def _text_embed(target, *, model_dir, adapter, base, cfg, model_cfg, settings, progress, engine, started) -> dict:
    from star.store.locks import family_lock
    from star.text.config import TextModelConfig
    from star.text.embed import FAMILIES, EmbedConfig, embed_texts
    from star.text.model import TextEncoder, load_model

    adapter = adapter if adapter is not None else (None if base else newest_text_model(target))
    if adapter is not None:
        encoder, _, info = load_model(adapter)
        lineage = {"adapter_dir": str(adapter), "train": info.get("metrics", {}),
                   "comparison": _comparison(Path(adapter))}
    else:
        encoder = TextEncoder(model_cfg or TextModelConfig(model_dir=model_dir))
        lineage = {"adapter_dir": None}
    cfg = dataclasses.replace(cfg or EmbedConfig(), await_feast=True)  # published once Feast serves it
    families = [FAMILIES[e] for e in cfg.entities]
    with family_lock(target, families):
        finished = finish_pending(target, families, settings)
        results = embed_texts(target, encoder, cfg, lineage=lineage, progress=progress, engine=engine)
        changed = finished_views(finished) + serve_pending(target, families, settings)
    note = {} if adapter is not None or base else {
        "note": f"no text model was trained on this database (star.text_models): embedded with the base model "
                f"{encoder.cfg.model_dir}; pass --adapter DIR for a model trained elsewhere"}
    return {"job": "text embed", "adapter": str(adapter) if adapter else None, **note, **engine.lineage(),
            "families": results, "materialized": changed, "seconds": round(time.time() - started, 2)}


def text_eval(target: DbTarget, *, cfg=None, versions: list[str] | None = None, base: bool = True,
              model_dir: str | None = None, adapters: tuple[Path, ...] = (), tfidf: bool = True,
              out: Path | None = None, batch_size: int = 64, progress: bool = True) -> dict:
    """`star text eval`: the later window's pairs (star.store.evalset) scored by TF-IDF, the base model, text
    vintages (versions: view names; None = every served one; [] = none) and adapters -> AUC table overall and on
    the cold-start cohort -> out/eval.{json,md,png} (default out/text_eval/<UTC time>)."""
    from star.errors import ConfigError
    from star.store.evalset import EvalSetConfig, build_evalset, text_vintages
    from star.text import market_eval as me

    started = time.time()
    cfg = cfg or EvalSetConfig()
    missing = [str(a) for a in adapters if not Path(a).is_dir()]
    if missing:
        raise ConfigError(f"--adapter {', '.join(missing)}: no such directory; pass a model dir written by "
                          "`star text train` (.star/models/text/<run>/model)")
    with db.connect(target) as conn:  # a wrong --versions fails before any model is loaded
        chosen, notes = me.pair_vintages(text_vintages(conn), versions) if versions != [] else ([], [])
    if not (tfidf or base or chosen or adapters):
        raise ConfigError("nothing to score: --no-tfidf, --no-base, no text vintage (--versions) and no --adapter; "
                          "keep at least one scorer")
    evalset = build_evalset(target, cfg)
    pairs = evalset.pairs
    member_texts, job_texts = pairs["member_text"].tolist(), pairs["job_text"].tolist()
    scores, extra = {}, {}
    if tfidf:
        scores[me.TFIDF] = me.tfidf_cosine(member_texts, job_texts)
    if base:
        from star.text.config import TextModelConfig
        from star.text.model import TextEncoder

        encoder = TextEncoder(TextModelConfig(model_dir=model_dir))
        scores[me.BASE] = me.encoder_cosine(encoder, member_texts, job_texts, batch_size=batch_size,
                                            progress=progress)
        extra[me.BASE] = {"model_dir": encoder.cfg.model_dir}
    _score_vintages(target, pairs, chosen, scores, extra)
    for adapter in adapters:
        from star.text.model import load_model

        encoder, _, _ = load_model(adapter)
        label = f"adapter {Path(adapter).resolve().parent.name}/{Path(adapter).name}"
        scores[label] = me.encoder_cosine(encoder, member_texts, job_texts, batch_size=batch_size, progress=progress)
        extra[label] = {"adapter_dir": str(adapter)}
    counts = evalset.counts
    cold = pairs[pairs["cold_start"]]
    negatives = (f"{cfg.negatives} unseen jobs sharing the member's {cfg.negatives_by}" if cfg.negatives_by else
                 f"{cfg.negatives} random unseen jobs") + " posted by the event, per positive"
    report = {"task": cfg.task, "window": {"start": str(evalset.start), "end": str(evalset.end) if evalset.end
                                           else None},
              "negatives": negatives, "counts": counts,
              "cold_start": f"members with no {cfg.task!r} interaction before the window start: "
                            f"{counts['cold_start_members']} members, {len(cold)} pairs",
              "rows": me.auc_rows(pairs, scores, extra), "notes": notes}
    paths = me.save_report(report, Path(out) if out else _run_dir(Path("out/text_eval")))
    print(me.format_markdown(report), file=sys.stderr)
    return {"job": "text eval", **{k: report[k] for k in ("task", "window", "negatives", "counts", "cold_start")},
            "table": report["rows"], "notes": notes, "files": paths, "seconds": round(time.time() - started, 2)}


def _score_vintages(target: DbTarget, pairs, chosen: list, scores: dict, extra: dict) -> None:
    """Cosine of each (member, job) vintage's stored vectors as of each pair's event; text_mismatch counts pairs
    whose stored row embedded another text than the one as of the event (a snapshot reloaded, not re-embedded)."""
    import numpy as np

    from star.store.evalset import vectors_as_of
    from star.text import market_eval as me

    with db.connect(target) as conn:
        for member, job in chosen:
            label, vectors, stale = me.vintage_label(member, job), [], np.zeros(len(pairs), dtype=bool)
            for vintage, entity in ((member, "member"), (job, "job")):
                vec, md5 = vectors_as_of(conn, vintage, pairs[f"{entity}_id"].to_numpy(), pairs["event_timestamp"])
                vectors.append(vec)
                stale |= np.array([m is not None and m != t for m, t in zip(md5, pairs[f"{entity}_md5"])])
            scores[label] = me.vector_cosine(*vectors)
            extra[label] = {"member_view": member["name"], "job_view": job["name"],
                            "status": f"{member['status']}/{job['status']}", "text_mismatch": int(stale.sum())}


def newest_graph_model(settings: Settings) -> Path | None:
    """The model of the most recent `star graph train` run, if any."""
    runs = sorted(settings.graph_models.glob("*/model/star_graph_model.json"), key=lambda p: p.stat().st_mtime)
    return runs[-1].parent if runs else None


def graph_train(target: DbTarget, *, cutoff=None, eval_days: float = 14.0, ablation: bool = False, model_cfg=None,
                train_cfg=None, align: bool = False, align_to: int | None = None, settings: Settings | None = None,
                progress: bool = True, workers: int = 1) -> dict:
    """`star graph train`: graph as of the cutoff (default: data end - eval_days) -> GNN (categorical + ID + newest
    text version) -> evaluated on the later window next to text-only cosine (and, with ablation, the Table-4
    variants) -> <run>/model + <run>/ablation.{json,md,png}. align: BC-Aligner training of the kept model into the
    newest published graph vintage (or align_to), see star.graph.align. workers > 1: DDP training in that many
    processes (star.graph.distributed); the checkpoint is the same."""
    import pandas as pd

    from star.graph import checkpoint, evaluate
    from star.graph.build import build_graph
    from star.graph.config import GraphConfig
    from star.graph.embed import data_end
    from star.graph.model import GNNConfig
    from star.graph.train import GraphTrainConfig

    started = time.time()
    settings = settings or Settings.from_env()
    model_cfg, train_cfg = model_cfg or GNNConfig(), train_cfg or GraphTrainConfig()
    cutoff = data_end(target) - pd.Timedelta(days=eval_days) if cutoff is None else pd.Timestamp(cutoff)
    mg = build_graph(target, GraphConfig(cutoff=cutoff))
    has_text = bool(mg.text_versions)
    main = "gnn_text" if has_text else "gnn_categorical"
    # with text, GNN-categorical is trained beside it: the one that validates better is kept (keep_variant)
    variants = tuple(evaluate.VARIANTS) if ablation else (
        (main, "gnn_categorical", "text_cosine") if has_text else (main,))
    targets = None
    if align:
        from star.graph.align import alignment_targets

        targets = alignment_targets(target, mg, to_version=align_to)
    report, trained = evaluate.ablation(target, mg, model_cfg, train_cfg, days=eval_days, variants=variants,
                                        progress=progress, align={main: targets} if targets else None,
                                        workers=workers)
    print(evaluate.format_table(report), file=sys.stderr)
    run = _run_dir(settings.graph_models)
    plot = evaluate.save_report(report, run)
    kept = main if targets else evaluate.keep_variant(trained, main)  # alignment trains only `main`
    checkpoint.save(run / "model", trained[kept], mg, trained[kept].model.cfg, train_cfg, evaluation=report)
    return {"job": "graph train", "model": str(run / "model"), "cutoff": mg.cutoff.isoformat(),
            "text_versions": mg.text_versions, "nodes": {nt: mg.graph.num_nodes(nt) for nt in mg.graph.ntypes},
            "edges": mg.edge_counts, "variant": kept,
            **({"text_left_out": f"GNN-categorical validated better ({trained[kept].metrics['best_mean_val_auc']:.4f}"
                                 f" vs {trained[main].metrics['best_mean_val_auc']:.4f} with text): the text does "
                                 "not help on held-out edges, so the kept model does not use it"}
               if kept != main else {}),
            "val_auc": trained[kept].metrics["best_mean_val_auc"],
            "epoch_seconds": trained[kept].metrics["epoch_seconds"], "workers": workers,
            **({"align": trained[main].align, "align_cos": trained[main].metrics["align_cos"][-1:]}
               if targets else {}),
            "later_window": {r["variant"]: r["tasks"] for r in report["rows"]}, "plot": str(plot),
            "seconds": round(time.time() - started, 2)}


def graph_embed(target: DbTarget, *, model_dir: Path | None = None, cutoff=None, cfg=None,
                settings: Settings | None = None, progress: bool = True) -> dict:
    """`star graph embed`: the newest graph model (or model_dir) on the graph at the cutoff (default: data end)
    -> versions of member_graph_embedding / job_graph_embedding, applied in Feast and materialized."""
    from star.graph import checkpoint
    from star.graph.embed import FAMILIES, GraphEmbedConfig, embed_graph
    from star.store.locks import family_lock

    started = time.time()
    settings = settings or Settings.from_env()
    model_dir = model_dir if model_dir is not None else newest_graph_model(settings)
    if model_dir is None:
        raise checkpoint.GraphModelError(f"no graph model under {settings.graph_models}; run `star graph train` "
                                         "first or pass --model DIR")
    cfg = dataclasses.replace(cfg or GraphEmbedConfig(), await_feast=True)  # published once Feast serves it
    families = [FAMILIES[e] for e in cfg.entities]
    with family_lock(target, families):
        finished = finish_pending(target, families, settings)
        results = embed_graph(target, checkpoint.load(model_dir), cutoff=cutoff, cfg=cfg, progress=progress)
        changed = finished_views(finished) + serve_pending(target, families, settings)
    return {"job": "graph embed", "model": str(model_dir), "families": results, "materialized": changed,
            "seconds": round(time.time() - started, 2)}


def _brief(features: dict[str, list]) -> dict[str, list]:
    """Shorten long texts and id lists for printing."""
    def short(value):
        if isinstance(value, str) and len(value) > 60:
            return value[:57] + "..."
        if isinstance(value, list) and len(value) > 4:
            return value[:4] + [f"... {len(value) - 4} more"]
        return value

    return {name: [short(v) for v in values] for name, values in features.items()}


DEMO_TRAIN_TOKENS, DEMO_GNN_EPOCHS = 128, 2
SMOKE_NOTE = ("a smoke run: {steps} fine-tuning steps on {tokens}-token cuts and {epochs} GNN epochs show every step "
              "working, not what the models can add (too few steps to beat their baselines on a CPU). For a real "
              "comparison: `python bench/text_quality.py` (Table-2 analogue, long texts vs truncation, prompts, hard "
              "negatives, TF-IDF; docs/text-embeddings.md) and `star graph train --ablation --epochs 10` "
              "(docs/graph-embeddings.md); on your own market, `star text eval`")


def demo(*, members: int = 2000, jobs: int = 400, seed: int = 0, out: Path = Path("out/trainset_apply.parquet"),
         text: bool = True, graph: bool = True, train_steps: int = 30, text_length: str = "long",
         report: Path = Path("report"), emit=print) -> dict:
    """The main job end to end on the configured database (the embedded one by default), ending with the HTML
    report (`star report`) in `report`."""
    from star.store.feast_repo import open_store
    from star.store.online import online_features
    from star.store.trainset import TrainsetConfig

    started = time.time()
    settings = Settings.from_env()
    target = db.up(settings)
    emit({"job": "db up", "url": target.masked_url(), "revision": db.current_revision(target)})
    emit(seed_synthetic(target, members=members, jobs=jobs, seed=seed, text_length=text_length))
    emit(apply_features(target, settings))
    emit(materialize(target, settings=settings))
    with db.connect(target) as conn:
        member_ids = [r[0] for r in conn.execute("SELECT member_id FROM star.members ORDER BY member_id LIMIT 2")]
        job_ids = [r[0] for r in conn.execute("SELECT job_id FROM star.jobs ORDER BY job_id LIMIT 2")]
    store = open_store(target, settings)
    emit({"job": "online lookup", "member": _brief(online_features(target, store, "member", member_ids)),
          "job_features": _brief(online_features(target, store, "job", job_ids))})
    result = trainset(target, TrainsetConfig(task="apply"), out)
    emit(result)
    if text:
        from star.text.config import TextModelConfig, TrainConfig

        from star.store.evalset import EvalSetConfig

        # brief on a CPU: ~2 s a step on 128-token cuts; validation and embedding take the whole texts
        emit(text_train(target, model_cfg=TextModelConfig(), train_cfg=TrainConfig(max_steps=train_steps,
                                                                                   max_tokens=DEMO_TRAIN_TOKENS),
                        settings=settings))
        emit(text_embed(target, settings=settings))
        # the later window scored by TF-IDF, the frozen base model and the vintage just embedded
        emit(text_eval(target, cfg=EvalSetConfig(seed=seed), out=settings.home / "eval" / "demo", progress=False))
    if graph:
        from star.graph.train import GraphTrainConfig

        # brief: two epochs; the GNN reads the text version just embedded (when text is on)
        emit(graph_train(target, train_cfg=GraphTrainConfig(epochs=DEMO_GNN_EPOCHS), settings=settings))
        emit(graph_embed(target, settings=settings))
    from star.report.build import write_report

    written = write_report(target, report, settings=settings)
    emit(written)
    note = SMOKE_NOTE.format(steps=train_steps, tokens=DEMO_TRAIN_TOKENS, epochs=DEMO_GNN_EPOCHS)
    return {"job": "demo", "note": note if text or graph else None, "report": written["path"],
            "seconds": round(time.time() - started, 2)}
