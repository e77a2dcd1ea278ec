"""The `star` command. Each job prints one JSON line with what it did on stdout; progress goes to stderr."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from star.cli_choices import Engine, Entity, Pooling, Precision, Prompts, Sampler, TextLength, TrainMode
from star.cli_common import (ENGINE_HELP, RAY_ADDRESS_HELP, WORKERS_HELP, _database_failure, _emit, _engine,
                             _parse_time, _settings, _target, _version)
from star.cli_versions import compat_app, versions_app
from star.errors import ConfigError, StarError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="The database: embedded PostgreSQL + pgvector, or STAR_DATABASE_URL.")
features_app = typer.Typer(no_args_is_help=True, help="The Feast repo: apply the catalog's views, materialize.")
text_app = typer.Typer(no_args_is_help=True, help="Text (LLM) embeddings: fine-tune the bi-encoder, embed texts.")
app.add_typer(db_app, name="db")
graph_app = typer.Typer(no_args_is_help=True, help="Graph (GNN) embeddings: train the heterogeneous GNN, embed.")
app.add_typer(text_app, name="text")
app.add_typer(versions_app, name="versions")
app.add_typer(compat_app, name="compat")
app.add_typer(graph_app, name="graph")
app.add_typer(features_app, name="features")


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the installed version and exit")) -> None:
    pass


@db_app.command("up")
def db_up() -> None:
    """Start the embedded server (or reach STAR_DATABASE_URL), create the database and migrate. Idempotent. The
    other commands never start or migrate a server (`star demo` aside): after `star db down` they stop with an
    error until `star db up`."""
    from star import db

    settings = _settings()
    target = db.up(settings)
    _emit({"job": "db up", "embedded": settings.embedded, "url": target.masked_url(),
           "revision": db.current_revision(target)})


@db_app.command("down")
def db_down() -> None:
    """Stop the embedded server (its data stays in STAR_HOME)."""
    from star import db

    _emit({"job": "db down", "stopped": db.stop_embedded(_settings())})


@db_app.command("status")
def db_status() -> None:
    """Is the server up, which database, which migration; exit code 1 when it is not running or unreachable."""
    from star import db

    settings = _settings()
    status = {"job": "db status", "embedded": settings.embedded}
    try:
        target = db.server_target(settings)
        status.update(running=True, url=target.masked_url(), revision=db.current_revision(target))
    except StarError as exc:
        status.update(running=False, error=str(exc))
    _emit(status)
    if not status["running"]:
        raise typer.Exit(1)


@db_app.command("env")
def db_env() -> None:
    """Print `export` lines for feature_repo/feature_store.yaml: eval "$(star db env)"."""
    import shlex

    target = _target()
    for key, value in target.feast_env().items():
        print(f"export {key}={shlex.quote(value)}")


@app.command()
def seed(
    from_dir: Optional[Path] = typer.Option(None, "--from", help="a directory in the format of docs/data-format.md"),
    synthetic: bool = typer.Option(False, help="generate the synthetic marketplace on ESCO / O*NET"),
    members: int = typer.Option(2000, help="synthetic: number of members"),
    jobs: int = typer.Option(400, help="synthetic: number of jobs"),
    seed_: int = typer.Option(0, "--seed", help="synthetic: random seed (same seed, same marketplace)"),
    months: int = typer.Option(6, help="synthetic: months of activity"),
    text_length: TextLength = typer.Option(TextLength.long, help="synthetic: long (real-like profiles and "
                                                                 "postings) or short"),
    save: Optional[Path] = typer.Option(None, help="synthetic: also write the files to this directory"),
) -> None:
    """Load a marketplace: your own files (--from DIR) or a synthetic one (--synthetic)."""
    from star import pipeline

    if (from_dir is None) == (not synthetic):
        raise typer.BadParameter("give exactly one of --from DIR or --synthetic")
    target = _target()
    if synthetic:
        _emit(pipeline.seed_synthetic(target, members=members, jobs=jobs, seed=seed_, months=months,
                                      text_length=text_length.value, save=save))
    else:
        _emit(pipeline.seed_dir(target, from_dir))


@features_app.command("apply")
def features_apply() -> None:
    """`feast apply` for the catalog's views, in-process (same as `feast -c feature_repo apply`)."""
    from star import pipeline

    _emit(pipeline.apply_features(_target()))


@features_app.command("materialize")
def features_materialize(
    start: Optional[str] = typer.Argument(None, help="default 1970-01-01"),
    end: Optional[str] = typer.Argument(None, help="default now"),
    engine: Engine = typer.Option(Engine.local, help=ENGINE_HELP + "; local = feature_store.yaml's batch engine"),
    ray_address: Optional[str] = typer.Option(None, help=RAY_ADDRESS_HELP),
    workers: int = typer.Option(2, help=WORKERS_HELP + " (slices of each view)"),
) -> None:
    """Copy feature values valid in [START, END] into the online store."""
    from star import pipeline

    begin = _parse_time(start, datetime(1970, 1, 1, tzinfo=timezone.utc), "START")
    finish = _parse_time(end, datetime.now(timezone.utc), "END")
    if begin > finish:
        raise ConfigError(f"START {begin.isoformat()} is after END {finish.isoformat()}; swap them")
    cluster = _engine(engine, ray_address, workers)
    _emit(pipeline.materialize(_target(), begin, finish, engine=cluster if cluster.engine == "ray" else None))


HARD_BY_HELP = ("also draw negatives sharing this categorical column (e.g. occupation_group) with the member at the "
                "label time (docs/trainset.md)")


@app.command()
def trainset(
    task: str = typer.Argument("apply", help="the interaction relation labelled 1"),
    out: Path = typer.Option(..., help="the Parquet file to write"),
    negatives: Optional[str] = typer.Option(None, help="comma-separated relations labelled 0 (default: dismiss, "
                                                       "reject, ... where present, else sampled)"),
    neg_ratio: int = typer.Option(1, help="sampled negatives per positive when no negative relation exists"),
    seed_: int = typer.Option(0, "--seed", help="sampling seed"),
    start: Optional[str] = typer.Option(None, help="only labels at or after this time"),
    end: Optional[str] = typer.Option(None, help="only labels before this time"),
    hard_negatives_by: Optional[str] = typer.Option(None, help=HARD_BY_HELP),
    hard_negatives: int = typer.Option(1, help="hard negatives per positive (with --hard-negatives-by)"),
) -> None:
    """Write a point-in-time training set: one row per labelled interaction (docs/trainset.md)."""
    import pandas as pd

    from star import pipeline
    from star.store.trainset import TrainsetConfig

    cfg = TrainsetConfig(task=task, negatives=tuple(negatives.split(",")) if negatives else None,
                         neg_ratio=neg_ratio, seed=seed_, hard_negatives_by=hard_negatives_by,
                         hard_negatives=hard_negatives,
                         start=pd.Timestamp(start) if (start := _parse_time(start, None, "--start")) else None,
                         end=pd.Timestamp(end) if (end := _parse_time(end, None, "--end")) else None)
    _emit(pipeline.trainset(_target(), cfg, out))


@app.command()
def online(
    entity: Entity = typer.Argument(..., help="member or job"),
    ids: list[int] = typer.Argument(..., help="entity ids"),
) -> None:
    """Print the online features of some members or jobs (after `star features materialize`)."""
    from star.store.feast_repo import open_store
    from star.store.online import online_features

    target = _target()
    _emit(online_features(target, open_store(target), entity.value, ids))


@text_app.command("train")
def text_train(
    model_dir: Optional[str] = typer.Option(None, help="local Hugging Face model dir (default: shipped MiniLM)"),
    pooling: Pooling = typer.Option(Pooling.auto, help="auto: the model's own (mean for MiniLM)"),
    mode: TrainMode = typer.Option(TrainMode.bce_contrastive, help="the training objective (docs/text-embeddings.md)"),
    max_steps: int = typer.Option(60, help="optimizer steps"),
    batch: int = typer.Option(16, help="per-device batch"),
    grad_accum: int = typer.Option(2, help="gradient accumulation steps"),
    lambda_c: float = typer.Option(0.1, help="weight of the semi-hard triplet term"),
    lr: float = typer.Option(2e-4, help="LoRA learning rate (AdamW)"),
    epochs: int = typer.Option(1, help="passes over the training pairs (training stops at max-steps or here)"),
    lora_r: int = typer.Option(8, help="LoRA rank"),
    target_modules: Optional[str] = typer.Option(None, help="comma-separated modules for LoRA (default: "
                                                            "query,value for BERT-like, q_proj,v_proj for decoders)"),
    max_length: Optional[int] = typer.Option(None, help="token budget per text, every kind (default: member 2048, "
                                                        "job 1024); longer texts are cut, shorter ones embedded whole"),
    window: Optional[int] = typer.Option(None, help="tokens per window (default: the length the model was trained "
                                                    "for, MiniLM 256)"),
    overlap: int = typer.Option(64, help="tokens shared by consecutive windows of a long text"),
    train_tokens: Optional[int] = typer.Option(None, help="cut texts to this many tokens while fine-tuning (a CPU "
                                                          "budget); validation and embedding use the whole budget"),
    prompts: Prompts = typer.Option(Prompts.none, help="none (the input format MiniLM was trained with) | star "
                                                       "(prefix 'Member profile: ' / 'Job posting: ' so the kinds "
                                                       "differ)"),
    precision: Precision = typer.Option(Precision.auto, help="auto: bf16 where the hardware has it"),
    task: str = typer.Option("apply", help="interaction relation labelled 1"),
    compare: bool = typer.Option(True, help="also train the frozen and BCE-only baselines (Table 2)"),
    gradient_checkpointing: bool = typer.Option(True, help="trade compute for memory (needed for long texts)"),
    hard_negatives_by: Optional[str] = typer.Option(None, help=HARD_BY_HELP),
    hard_negatives: int = typer.Option(1, help="hard negatives per positive (with --hard-negatives-by)"),
) -> None:
    """Fine-tune the shared LoRA bi-encoder on point-in-time member/job pairs; saves adapter + config together."""
    from star import pipeline
    from star.text.config import TrainConfig

    model_cfg = _text_model_config(model_dir=model_dir, pooling=pooling.value, precision=precision.value,
                                   lora_r=lora_r,
                                   target_modules=tuple(target_modules.split(",")) if target_modules else None,
                                   max_length=max_length, window=window, overlap=overlap, prompts=prompts.value)
    train_cfg = TrainConfig(mode=mode.value, max_steps=max_steps, per_device_batch=batch, grad_accum=grad_accum,
                            lambda_c=lambda_c, lr=lr, epochs=epochs, gradient_checkpointing=gradient_checkpointing,
                            max_tokens=train_tokens)
    _emit(pipeline.text_train(_target(), model_cfg=model_cfg, train_cfg=train_cfg, task=task, compare=compare,
                              hard_negatives_by=hard_negatives_by, hard_negatives=hard_negatives))


@text_app.command("embed")
def text_embed(
    adapter: Optional[Path] = typer.Option(None, help="a trained model dir (default: the newest one trained on this "
                                                       "database, star.text_models; none: the base model)"),
    base: bool = typer.Option(False, help="embed with the base model even if an adapter was trained"),
    model_dir: Optional[str] = typer.Option(None, help="with --base: local model dir (default: shipped MiniLM)"),
    max_length: Optional[int] = typer.Option(None, help="with --base: token budget per text (default: member 2048, "
                                                        "job 1024)"),
    window: Optional[int] = typer.Option(None, help="with --base: tokens per window (default: the model's limit)"),
    overlap: int = typer.Option(64, help="with --base: tokens shared by consecutive windows"),
    prompts: Prompts = typer.Option(Prompts.none, help="with --base: see `star text train --help`"),
    entity: Optional[Entity] = typer.Option(None, help="default: both"),
    version: Optional[int] = typer.Option(None, help="continue exactly this version (checked against the model)"),
    batch_size: int = typer.Option(64, help="texts per forward pass"),
    skip_empty: bool = typer.Option(False, help="leave empty texts out instead of failing"),
    candidate: bool = typer.Option(False, help="a new version is a candidate until `star versions publish`"),
    engine: Engine = typer.Option(Engine.local, help=ENGINE_HELP),
    ray_address: Optional[str] = typer.Option(None, help=RAY_ADDRESS_HELP),
    workers: int = typer.Option(2, help=WORKERS_HELP + " (actors, one model each)"),
) -> None:
    """Embed member profiles and job postings into versioned feature views; only new or changed texts."""
    from star import pipeline
    from star.text.embed import EmbedConfig

    cfg = EmbedConfig(entities=(entity.value,) if entity else ("member", "job"), version=version,
                      batch_size=batch_size,
                      skip_empty=skip_empty, candidate=candidate)
    base_cfg = _text_model_config(model_dir=model_dir, max_length=max_length, window=window, overlap=overlap,
                                  prompts=prompts.value)
    cluster = _engine(engine, ray_address, workers)
    _emit(pipeline.text_embed(_target(), model_cfg=base_cfg, adapter=adapter, base=base, cfg=cfg, engine=cluster))


def _text_model_config(*, max_length: int | None, prompts: str, **given):
    """TextModelConfig from CLI options: one budget for every kind, prompts by name."""
    from star.text.config import STAR_PROMPTS, TextModelConfig

    if prompts not in ("none", "star"):
        raise ConfigError(f"--prompts {prompts!r}: choose none or star")
    extra = {"max_length": dict.fromkeys(TextModelConfig().max_length, max_length)} if max_length else {}
    if prompts == "star":
        extra["prompts"] = dict(STAR_PROMPTS)
    return TextModelConfig(**given, **extra)


@text_app.command("eval")
def text_eval(
    task: str = typer.Option("apply", help="the relation whose later events are the positives (apply, view, ...)"),
    negatives: int = typer.Option(5, help="negatives per positive: jobs posted by then the member never touched"),
    negatives_by: Optional[str] = typer.Option(None, help="draw negatives only among jobs sharing this categorical "
                                                          "column with the member at the event (e.g. state)"),
    start: Optional[str] = typer.Option(None, help="window start (default: the latest 20 % of the task's span)"),
    end: Optional[str] = typer.Option(None, help="window end, exclusive (default: no bound)"),
    seed_: int = typer.Option(0, "--seed", help="negative sampling seed"),
    versions: Optional[str] = typer.Option(None, help="comma-separated text vintages (view names, or "
                                                      "member_view+job_view), 'none'; default: every served one"),
    base: bool = typer.Option(True, help="score the frozen base model"),
    model_dir: Optional[str] = typer.Option(None, help="base model dir (default: shipped MiniLM)"),
    adapter: Optional[list[Path]] = typer.Option(None, help="a trained model dir to score (repeatable)"),
    tfidf: bool = typer.Option(True, help="score the TF-IDF keyword baseline"),
    out: Optional[Path] = typer.Option(None, help="output dir (default: out/text_eval/<UTC time>)"),
    batch_size: int = typer.Option(64, help="texts per forward pass"),
) -> None:
    """AUC of text similarity on a later window of your market: TF-IDF, base model, vintages, adapters; overall
    and on cold-start members (docs/text-embeddings.md)."""
    import pandas as pd

    from star import pipeline
    from star.store.evalset import EvalSetConfig

    begin, finish = _parse_time(start, None, "--start"), _parse_time(end, None, "--end")
    cfg = EvalSetConfig(task=task, negatives=negatives, negatives_by=negatives_by, seed=seed_,
                        start=pd.Timestamp(begin) if begin else None, end=pd.Timestamp(finish) if finish else None)
    chosen = None if versions is None else [] if versions.strip().lower() == "none" else \
        [v.strip() for v in versions.split(",") if v.strip()]
    _emit(pipeline.text_eval(_target(), cfg=cfg, versions=chosen, base=base, model_dir=model_dir,
                             adapters=tuple(adapter or ()), tfidf=tfidf, out=out, batch_size=batch_size))


def _optional_time(value: str | None, option: str = "--cutoff"):
    return _parse_time(value, None, option)


@graph_app.command("train")
def graph_train(
    cutoff: Optional[str] = typer.Option(None, help="graph as of this UTC time (default: data end - eval-days)"),
    eval_days: float = typer.Option(14.0, help="days after the cutoff to evaluate on (Table-4 window)"),
    ablation: bool = typer.Option(False, help="also train the categorical-only and text-minus-categorical GNNs"),
    epochs: int = typer.Option(10, help="passes over the training edges (at most, with --patience)"),
    patience: int = typer.Option(0, help="stop after this many epochs without a better validation AUC (0: never)"),
    steps_per_epoch: Optional[int] = typer.Option(None, help="batches per epoch (validation and fanout growth "
                                                             "after each); default: a full pass over the edges"),
    sampler: Sampler = typer.Option(Sampler.adaptive, help="neighbour sampling (docs/graph-embeddings.md)"),
    fanouts: str = typer.Option("10,10", help="neighbours per layer for uniform / temporal"),
    hidden: int = typer.Option(128, help="hidden width"),
    out_dim: int = typer.Option(200, help="embedding size"),
    layers: int = typer.Option(2, help="GAT layers"),
    heads: int = typer.Option(4, help="attention heads"),
    batch_size: int = typer.Option(512, help="positive edges per step"),
    lr: float = typer.Option(1e-3, help="Adam learning rate"),
    seed_: int = typer.Option(0, "--seed", help="random seed"),
    align: bool = typer.Option(False, help="BC-Aligner: train a map into the newest published graph vintage with "
                                           "the model (and through the stored maps to earlier ones)"),
    align_to: Optional[int] = typer.Option(None, help="with --align: the vintage to map into (default: newest "
                                                      "published)"),
    align_weight: float = typer.Option(1.0, help="with --align: weight of the alignment loss"),
    workers: int = typer.Option(1, help="training processes (DDP over torch.distributed, gloo); 1: one process"),
) -> None:
    """Train the GNN on the graph as of the cutoff, evaluate on the later window, save the model."""
    from star import pipeline
    from star.graph.model import GNNConfig
    from star.graph.train import GraphTrainConfig

    model_cfg = GNNConfig(hidden=hidden, out_dim=out_dim, layers=layers, heads=heads)
    train_cfg = GraphTrainConfig(epochs=epochs, patience=patience, steps_per_epoch=steps_per_epoch,
                                 sampler=sampler.value, fanouts=_ints(fanouts, "--fanouts"), batch_size=batch_size,
                                 lr=lr, seed=seed_, align_weight=align_weight)
    _emit(pipeline.graph_train(_target(), cutoff=_optional_time(cutoff), eval_days=eval_days, ablation=ablation,
                               model_cfg=model_cfg, train_cfg=train_cfg, align=align or align_to is not None,
                               align_to=align_to, workers=workers))


@graph_app.command("embed")
def graph_embed(
    model: Optional[Path] = typer.Option(None, help="a trained graph model dir (default: the newest)"),
    cutoff: Optional[str] = typer.Option(None, help="embed the graph as of this UTC time (default: data end)"),
    entity: Optional[Entity] = typer.Option(None, help="default: both"),
    candidate: bool = typer.Option(False, help="a new version is a candidate until `star versions publish`"),
) -> None:
    """Embed every member and job with a trained GNN into versioned feature views (Feast, pgvector, HNSW)."""
    from star import pipeline
    from star.graph.embed import GraphEmbedConfig

    cfg = GraphEmbedConfig(entities=(entity.value,) if entity else ("member", "job"), candidate=candidate)
    _emit(pipeline.graph_embed(_target(), model_dir=model, cutoff=_optional_time(cutoff), cfg=cfg))


def _ints(value: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in value.split(","))
    except ValueError:
        raise typer.BadParameter(f"{value!r}: give comma-separated integers, e.g. 10,10", param_hint=option) from None


@app.command()
def report(
    out: Path = typer.Option(Path("report"), help="directory for index.html and its PNG plots"),
    bench: Optional[Path] = typer.Option(None, help="serving benchmark JSON (default: bench/results/serving.json)"),
) -> None:
    """One HTML report from what the registry and the runs stored: text and graph comparisons (Tables 2 and 4),
    every vintage's lineage and status, map fits and parity, the serving benchmark."""
    from star.report.build import write_report

    _emit(write_report(_target(), out, bench=bench))


@app.command()
def demo(
    members: int = typer.Option(2000, help="synthetic members"),
    jobs: int = typer.Option(400, help="synthetic jobs"),
    seed_: int = typer.Option(0, "--seed", help="synthetic seed (loads merge: use another STAR_HOME for a "
                                                "separate market)"),
    out: Path = typer.Option(Path("out/trainset_apply.parquet"), help="where the training set goes"),
    text: bool = typer.Option(True, help="also fine-tune the text model (briefly) and embed the texts"),
    train_steps: int = typer.Option(30, help="text fine-tuning steps"),
    graph: bool = typer.Option(True, help="also train the GNN (briefly) and embed the graph"),
    text_length: TextLength = typer.Option(TextLength.long, help="synthetic texts: long (real-like lengths) or "
                                                                 "short"),
) -> None:
    """The main job end to end: database, migrations, synthetic marketplace, feast apply, materialize,
    an online lookup, a point-in-time training set, text and graph embeddings. Starts the embedded server when it
    is not running (and says so on stderr), like `star db up`."""
    from star import pipeline

    _emit(pipeline.demo(members=members, jobs=jobs, seed=seed_, out=out, text=text, graph=graph,
                        train_steps=train_steps, text_length=text_length.value, emit=_emit))


def main() -> None:
    try:
        app()
    except StarError as exc:
        _fail(str(exc))
    except Exception as exc:
        message = _database_failure(exc)
        if message is None:
            raise
        _fail(message)


def _fail(message: str) -> None:
    print(f"star: error: {message}", file=sys.stderr)
    sys.exit(2)
