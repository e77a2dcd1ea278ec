"""Point-in-time training sets: one row per labelled interaction, every feature as it was at the label time.

    star.interactions --(task relation = 1, negative relations = 0, or sampled negatives)--> label rows
    label rows --Feast get_historical_features (full feature names)--> <view>__<feature> columns
    text snapshot views --renamed--> member_text, job_text

Negatives: the data's explicit negative relations (NEGATIVE_RELATIONS, e.g. `dismiss`) when it has any, otherwise
`neg_ratio` jobs per positive sampled uniformly from the jobs already posted at the positive's time that the member
has not applied to (`task` relation); a sampled negative carries its positive's time. With `hard_negatives_by`,
`hard_negatives` more per positive share that column with the member (star/store/hard_negatives.py), mixed in.
`negative_source` says where each negative came from: explicit | sampled | hard (None on positives).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from star.config import DbTarget
from star.db import connect
from star.errors import TrainsetError, require_at_least
from star.store.catalog import latest_views
from star.store.hard_negatives import hard_negatives

NEGATIVE_RELATIONS = ("dismiss", "reject", "not_interested", "hide", "skip")
SOURCES = (None, "explicit", "sampled", "hard")  # negative_source values; None on a positive


@dataclass(frozen=True, kw_only=True)
class TrainsetConfig:
    task: str = field(default="apply", metadata={"help": "interaction relation labelled 1"})
    negatives: tuple[str, ...] | None = field(
        default=None, metadata={"help": "relations labelled 0; None = NEGATIVE_RELATIONS found in the data"})
    neg_ratio: int = field(default=1, metadata={"help": "sampled negatives per positive when none are explicit"})
    seed: int = field(default=0, metadata={"help": "sampling seed, for a reproducible set"})
    start: pd.Timestamp | None = field(default=None, metadata={"help": "only labels at or after this time"})
    end: pd.Timestamp | None = field(default=None, metadata={"help": "only labels before this time"})
    hard_negatives_by: str | None = field(default=None, metadata={
        "help": "categorical column (e.g. occupation_group) that hard negatives share with the member at the label "
                "time; a job-only column is matched against the positive job; None = no hard negatives"})
    hard_negatives: int = field(default=1, metadata={"help": "hard negatives per positive, with hard_negatives_by"})
    features: tuple[str, ...] | None = field(default=None, metadata={
        "help": "Feast feature refs to join, e.g. ('member_text_embedding_v1:embedding', "
                "'member_categorical_v1:seniority'); None = every feature of the newest views"})

    def __post_init__(self):
        if self.negatives is not None and self.task in self.negatives:
            raise TrainsetError(f"--negatives {','.join(self.negatives)} includes the task {self.task!r}: a relation "
                                "cannot be both label 1 and label 0; leave it out of --negatives")
        require_at_least("TrainsetConfig", 1, neg_ratio=self.neg_ratio, hard_negatives=self.hard_negatives)
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise TrainsetError(f"--start {self.start} is not before --end {self.end}; swap them")


def _labels(conn, cfg: TrainsetConfig) -> tuple[pd.DataFrame, str, dict | None]:
    """Label rows with their negative_source, a description of the negatives, and the hard-negative report."""
    rows, negatives = _base_labels(conn, cfg)
    # a code, not a string: Feast carries it through untouched (a column of only None has no database type)
    rows["negative_source"] = np.where(rows["label"] == 0, SOURCES.index(negatives.split(":")[0]), 0)
    if cfg.hard_negatives_by is None:
        return rows, negatives, None
    hard = hard_negatives(conn, rows, task=cfg.task, by=cfg.hard_negatives_by, k=cfg.hard_negatives, seed=cfg.seed)
    both = pd.concat([rows, hard.rows.assign(negative_source=SOURCES.index("hard"))], ignore_index=True)
    both = both.sort_values(["event_timestamp", "member_id", "job_id"], kind="stable").reset_index(drop=True)
    return both, f"{negatives}+hard:{cfg.hard_negatives_by}:{cfg.hard_negatives}", hard.report()


def _base_labels(conn, cfg: TrainsetConfig) -> tuple[pd.DataFrame, str]:
    relations = [r for (r,) in conn.execute("SELECT DISTINCT relation FROM star.interactions ORDER BY 1")]
    if cfg.task not in relations:
        raise TrainsetError(f"task {cfg.task!r} has no interactions; the data has: {', '.join(relations) or 'none'}."
                            " Pass one of those as TASK")
    wanted = cfg.negatives if cfg.negatives is not None else tuple(r for r in NEGATIVE_RELATIONS if r in relations)
    unknown = [r for r in wanted if r not in relations]
    if unknown:
        raise TrainsetError(f"negative relation(s) {', '.join(unknown)} have no interactions; the data has: "
                            f"{', '.join(relations)}")
    rows = pd.DataFrame(conn.execute(
        "SELECT member_id, job_id, event_timestamp, (relation = %(task)s)::int AS label FROM star.interactions "
        "WHERE relation = %(task)s OR relation = ANY(%(neg)s) ORDER BY event_timestamp, member_id, job_id",
        {"task": cfg.task, "neg": list(wanted)}).fetchall(),
        columns=["member_id", "job_id", "event_timestamp", "label"])
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    if cfg.start is not None:
        rows = rows[rows["event_timestamp"] >= cfg.start]
    if cfg.end is not None:
        rows = rows[rows["event_timestamp"] < cfg.end]
    if wanted:
        return rows.reset_index(drop=True), "explicit:" + ",".join(wanted)
    return _sample_negatives(conn, rows, cfg), f"sampled:{cfg.neg_ratio}"


def _sample_negatives(conn, positives: pd.DataFrame, cfg: TrainsetConfig) -> pd.DataFrame:
    posted = pd.DataFrame(conn.execute(
        "SELECT job_id, min(valid_from) FROM star.job_history GROUP BY job_id ORDER BY 2, 1").fetchall(),
        columns=["job_id", "posted"])
    posted_at = pd.to_datetime(posted["posted"], utc=True).to_numpy()
    job_ids = posted["job_id"].to_numpy()
    applied = set(zip(positives["member_id"], positives["job_id"]))
    rng = np.random.default_rng(cfg.seed)
    out = []
    for member, ts in zip(positives["member_id"].to_numpy(), positives["event_timestamp"].to_numpy()):
        open_jobs = int(np.searchsorted(posted_at, ts, side="right"))  # jobs posted at or before the label
        taken = 0
        for _ in range(cfg.neg_ratio * 20):
            if taken == cfg.neg_ratio or open_jobs == 0:
                break
            job = int(job_ids[rng.integers(open_jobs)])
            if (member, job) not in applied:
                out.append((member, job, ts, 0))
                taken += 1
    negatives = pd.DataFrame(out, columns=["member_id", "job_id", "event_timestamp", "label"])
    negatives["event_timestamp"] = pd.to_datetime(negatives["event_timestamp"], utc=True)
    both = pd.concat([positives, negatives], ignore_index=True)
    return both.sort_values(["event_timestamp", "member_id", "job_id"], kind="stable").reset_index(drop=True)


def feature_refs(views: dict) -> tuple[list[str], dict[str, str]]:
    """Every member/job feature of the newest views, and the renames of the text columns."""
    refs, renames = [], {}
    for family, spec in sorted(views.items()):
        if spec.kind == "text":
            refs.append(f"{spec.name}:text")
            renames[f"{spec.name}__text"] = f"{spec.entity}_text"
        else:
            refs.extend(f"{spec.name}:{name}" for name, _ in spec.features)
    return refs, renames


def build_trainset(target: DbTarget, cfg: TrainsetConfig = TrainsetConfig(), *, store=None) -> pd.DataFrame:
    """The training set as a DataFrame (see the module docstring); `store` defaults to the repo's FeatureStore."""
    from star.store.feast_repo import open_store, require_applied

    with connect(target) as conn:
        labels, negatives, hard = _labels(conn, cfg)
        views = latest_views(conn)
    if not (labels["label"] == 1).any():  # a set without a positive trains and evaluates nothing
        raise TrainsetError(f"0 {cfg.task!r} interactions (label 1) in the window [--start {cfg.start}, --end "
                            f"{cfg.end}) ({len(labels)} negative rows): {_span(target, cfg.task)}; widen --start / "
                            "--end to cover them")
    refs, renames = feature_refs(views) if cfg.features is None else (list(cfg.features), {})
    store = store or open_store(target)
    require_applied(store, {ref.split(":")[0] for ref in refs})
    df = store.get_historical_features(entity_df=labels, features=refs, full_feature_names=True).to_df()
    df = df.rename(columns=renames)
    if cfg.features is None:  # documented columns, even when one side has no texts loaded at all
        for column in ("member_text", "job_text"):
            if column not in df:
                df[column] = None
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    df = df.sort_values(["event_timestamp", "member_id", "job_id", "label"], kind="stable").reset_index(drop=True)
    df["negative_source"] = [SOURCES[code] for code in df["negative_source"]]
    df.attrs["negatives"] = negatives
    if hard is not None:
        df.attrs["hard_negatives"] = hard
    return df


def _span(target: DbTarget, task: str) -> str:
    with connect(target) as conn:
        first, last = conn.execute("SELECT min(event_timestamp), max(event_timestamp) FROM star.interactions WHERE "
                                   "relation = %s", (task,)).fetchone()
    return f"the data's {task!r} interactions run from {first} to {last}"


def summary(df: pd.DataFrame) -> dict:
    feature_cols = [c for c in df.columns if "__" in c]
    return {
        "rows": int(len(df)),
        "positives": int(df["label"].sum()),
        "negatives": int((df["label"] == 0).sum()),
        "negative_source": df.attrs.get("negatives"),
        "negatives_by_source": negative_counts(df),
        **({"hard_negatives": df.attrs["hard_negatives"]} if "hard_negatives" in df.attrs else {}),
        "members": int(df["member_id"].nunique()),
        "jobs": int(df["job_id"].nunique()),
        "from": str(df["event_timestamp"].min()),
        "to": str(df["event_timestamp"].max()),
        "feature_columns": len(feature_cols),
        "with_member_text": float(df["member_text"].notna().mean()) if "member_text" in df else 0.0,
        "with_job_text": float(df["job_text"].notna().mean()) if "job_text" in df else 0.0,
    }


def negative_counts(df: pd.DataFrame) -> dict[str, int]:
    """Negatives per source (explicit | sampled | hard); {} for a frame without negative_source."""
    if "negative_source" not in df:
        return {}
    return {str(k): int(v) for k, v in df.loc[df["label"] == 0, "negative_source"].value_counts().sort_index().items()}
