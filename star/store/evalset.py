"""Evaluation pairs for `star text eval`: a later window of one relation, sampled negatives, texts as of each event.

    star.interactions (task, in [start, end))               -> positives (member, job, t)
    per positive: jobs posted by t (first job_history row <= t) that the member never touched (any relation,
                  any time), all of them or only those whose COL as of t equals the member's COL as of t
                  -> `negatives` drawn at random (seed); a positive with none is dropped and counted
    star.text_snapshots (latest valid_from <= t)            -> member / job snapshot of every pair
    cold start: members with no task interaction before the window start

Vintage vectors (vectors_as_of) are read point-in-time too: a text vintage holds one row per text snapshot
(event_timestamp = the snapshot's valid_from), so the row as of t embeds the text as of t.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from star.common import ID_COLUMN
from star.config import DbTarget
from star.db import connect
from star.errors import EvalSetError, require_at_least
from star.store import registry


@dataclass(frozen=True, kw_only=True)
class EvalSetConfig:
    task: str = field(default="apply", metadata={"help": "the relation whose later events are the positives"})
    negatives: int = field(default=5, metadata={"help": "negatives drawn per positive"})
    negatives_by: str | None = field(default=None, metadata={
        "help": "a categorical column of members and jobs: negatives share the member's value as of the event"})
    start: pd.Timestamp | None = field(default=None, metadata={"help": "window start; None = latest 20 % of span"})
    end: pd.Timestamp | None = field(default=None, metadata={"help": "window end (exclusive); None = no bound"})
    seed: int = field(default=0, metadata={"help": "sampling seed: same seed, same negatives"})
    window_fraction: float = field(default=0.2, metadata={"help": "default window: this latest share of the span"})

    def __post_init__(self):
        require_at_least("EvalSetConfig", 1, negatives=self.negatives)
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise EvalSetError(f"--start {self.start} is not before --end {self.end}; swap them")


@dataclass
class EvalSet:
    pairs: pd.DataFrame  # member_id, job_id, event_timestamp, label, positive, cold_start, member_text, job_text,
    #                      member_md5, job_md5
    start: pd.Timestamp
    end: pd.Timestamp | None
    counts: dict


def _relations(conn) -> list[str]:
    return [r for (r,) in conn.execute("SELECT DISTINCT relation FROM star.interactions ORDER BY 1")]


def _window(conn, cfg: EvalSetConfig) -> tuple[pd.Timestamp, pd.Timestamp | None, str]:
    first, last = conn.execute("SELECT min(event_timestamp), max(event_timestamp) FROM star.interactions "
                               "WHERE relation = %s", (cfg.task,)).fetchone()
    span = f"the {cfg.task!r} interactions run from {first} to {last}"
    if cfg.start is not None:
        return cfg.start, cfg.end, span
    first, last = pd.Timestamp(first), pd.Timestamp(last)
    return first + (last - first) * (1 - cfg.window_fraction), cfg.end, span


def shared_columns(conn) -> list[str]:
    """Categorical columns that members and jobs both have (candidates for --negatives-by)."""
    keys = {}
    for entity in ("member", "job"):
        keys[entity] = {r[0] for r in conn.execute(sql.SQL("SELECT DISTINCT jsonb_object_keys(attrs) FROM {}").format(
            sql.Identifier("star", f"{entity}_history")))}
    return sorted(keys["member"] & keys["job"])


def _values(conn, entity: str, column: str | None) -> pd.DataFrame:
    """(id, valid_from, value) for every history row, oldest first; value None where the column is unset.
    Without a column every job has the value '' from its first row (its posting) on."""
    key = sql.Identifier(ID_COLUMN[entity])
    if column is None:
        query = sql.SQL("SELECT {k}, min(valid_from), '' FROM {t} GROUP BY {k}")
    else:
        query = sql.SQL("SELECT {k}, valid_from, attrs->>%(col)s FROM {t}")
    rows = conn.execute(query.format(k=key, t=sql.Identifier("star", f"{entity}_history")) +
                        sql.SQL(" ORDER BY 2, 1"), {"col": column}).fetchall()
    df = pd.DataFrame(rows, columns=["id", "valid_from", "value"])
    df["valid_from"] = pd.to_datetime(df["valid_from"], utc=True)
    return df


class _Buckets:
    """Jobs grouped by their current value, with O(1) moves and uniform draws (list + position map)."""

    def __init__(self):
        self.lists: dict[str, list[int]] = {}
        self.where: dict[int, tuple[str, int]] = {}

    def set(self, job: int, value: str | None) -> None:
        if job in self.where:
            old, i = self.where.pop(job)
            items = self.lists[old]
            last = items.pop()
            if last != job:
                items[i] = last
                self.where[last] = (old, i)
        if value is not None:
            items = self.lists.setdefault(value, [])
            self.where[job] = (value, len(items))
            items.append(job)


def _draw(rng: np.random.Generator, bucket: list[int], exclude: set[int], n: int) -> list[int]:
    """n distinct jobs of `bucket` not in `exclude`, uniformly (fewer when fewer are eligible)."""
    if len(bucket) > 4 * n + len(exclude):  # mostly eligible: rejection sampling is cheap
        picked: list[int] = []
        for _ in range(50 * n):
            job = bucket[int(rng.integers(len(bucket)))]
            if job not in exclude and job not in picked:
                picked.append(job)
                if len(picked) == n:
                    return picked
    eligible = [j for j in bucket if j not in exclude]
    if len(eligible) <= n:
        return eligible
    return [eligible[i] for i in rng.choice(len(eligible), size=n, replace=False)]


def _sample(positives: pd.DataFrame, jobs: pd.DataFrame, member_value: np.ndarray, touched: dict[int, set[int]],
            cfg: EvalSetConfig) -> tuple[pd.DataFrame, dict]:
    """Sweep positives in time order; job values (and postings) applied up to each positive's time."""
    rng, buckets, out = np.random.default_rng(cfg.seed), _Buckets(), []
    changes = list(zip(jobs["valid_from"].to_numpy(), jobs["id"].to_numpy(), jobs["value"].to_numpy()))
    k, dropped, short, no_value = 0, 0, 0, 0
    for n, (member, job, ts) in enumerate(zip(positives["member_id"].to_numpy(), positives["job_id"].to_numpy(),
                                              positives["event_timestamp"].to_numpy())):
        while k < len(changes) and changes[k][0] <= ts:
            buckets.set(int(changes[k][1]), changes[k][2])
            k += 1
        value = member_value[n]
        if value is None:
            no_value += 1
            continue
        drawn = _draw(rng, buckets.lists.get(value, []), touched.get(int(member), set()), cfg.negatives)
        if not drawn:
            dropped += 1
            continue
        short += len(drawn) < cfg.negatives
        out.append((member, job, ts, 1, n))
        out.extend((member, neg, ts, 0, n) for neg in drawn)
    pairs = pd.DataFrame(out, columns=["member_id", "job_id", "event_timestamp", "label", "positive"])
    pairs["event_timestamp"] = pd.to_datetime(pairs["event_timestamp"], utc=True)
    return pairs, {"dropped_no_negative": dropped, "dropped_member_without_value": no_value,
                   "fewer_negatives": short}


def _member_values(conn, positives: pd.DataFrame, column: str | None) -> np.ndarray:
    if column is None:
        return np.full(len(positives), "", dtype=object)
    hist = _values(conn, "member", column).rename(columns={"id": "member_id"})
    left = positives.reset_index().sort_values("event_timestamp", kind="stable")
    merged = pd.merge_asof(left, hist, left_on="event_timestamp", right_on="valid_from", by="member_id",
                           direction="backward")
    values = merged.sort_values("index")["value"].to_numpy(dtype=object)
    return np.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in values], dtype=object)


AS_OF = """
SELECT q.n, s.valid_from, s.text_md5
FROM unnest(%(ids)s::bigint[], %(ts)s::timestamptz[]) WITH ORDINALITY AS q(id, ts, n)
LEFT JOIN LATERAL (SELECT valid_from, text_md5 FROM star.text_snapshots
                   WHERE entity = %(entity)s AND entity_id = q.id AND valid_from <= q.ts
                   ORDER BY valid_from DESC LIMIT 1) s ON true
ORDER BY q.n
"""
TEXTS = """
SELECT s.entity_id, s.valid_from, s.text FROM star.text_snapshots s
JOIN unnest(%(ids)s::bigint[], %(vf)s::timestamptz[]) AS q(id, vf) ON s.entity_id = q.id AND s.valid_from = q.vf
WHERE s.entity = %(entity)s
"""


def texts_as_of(conn, entity: str, ids: np.ndarray, times: pd.Series) -> tuple[list, list]:
    """Per (id, time): the text of the latest snapshot with valid_from <= time and its md5 (None, None if none)."""
    keys = pd.DataFrame({"id": np.asarray(ids, dtype=np.int64), "ts": pd.to_datetime(times, utc=True)})
    uniq = keys.drop_duplicates().reset_index(drop=True)
    rows = conn.execute(AS_OF, {"ids": uniq["id"].tolist(), "ts": list(uniq["ts"]), "entity": entity}).fetchall()
    uniq["valid_from"] = [r[1] for r in rows]
    uniq["md5"] = [r[2] for r in rows]
    found = uniq.dropna(subset=["valid_from"]).drop_duplicates(["id", "valid_from"])
    text = {(i, pd.Timestamp(vf)): t for i, vf, t in conn.execute(TEXTS, {
        "ids": found["id"].tolist(), "vf": list(found["valid_from"]), "entity": entity}).fetchall()}
    uniq["text"] = [text.get((i, pd.Timestamp(vf))) if vf is not None else None
                    for i, vf in zip(uniq["id"], uniq["valid_from"])]
    merged = keys.merge(uniq, on=["id", "ts"], how="left")
    return merged["text"].tolist(), merged["md5"].tolist()


def build_evalset(target: DbTarget, cfg: EvalSetConfig = EvalSetConfig()) -> EvalSet:
    """The evaluation pairs of the module docstring, texts attached, in time order."""
    with connect(target) as conn:
        relations = _relations(conn)
        if cfg.task not in relations:
            raise EvalSetError(f"--task {cfg.task!r} has no interactions; the data has: "
                               f"{', '.join(relations) or 'none'}. Pass one of those as --task")
        if cfg.negatives_by is not None:
            shared = shared_columns(conn)
            if cfg.negatives_by not in shared:
                raise EvalSetError(f"--negatives-by {cfg.negatives_by!r} is not a categorical column of both members "
                                   f"and jobs; the shared columns are: {', '.join(shared) or 'none'}. Pass one of "
                                   "those, or leave --negatives-by out for random negatives")
        start, end, span = _window(conn, cfg)
        positives = pd.DataFrame(conn.execute(
            "SELECT member_id, job_id, event_timestamp FROM star.interactions WHERE relation = %(task)s AND "
            "event_timestamp >= %(start)s AND (%(end)s::timestamptz IS NULL OR event_timestamp < %(end)s) "
            "ORDER BY event_timestamp, member_id, job_id",
            {"task": cfg.task, "start": start, "end": end}).fetchall(),
            columns=["member_id", "job_id", "event_timestamp"])
        if positives.empty:
            raise EvalSetError(f"0 {cfg.task!r} interactions in the window [--start {start}, --end {end}): {span}; "
                               "move --start / --end to cover some")
        positives["event_timestamp"] = pd.to_datetime(positives["event_timestamp"], utc=True)
        touched: dict[int, set[int]] = {}
        for member, job in conn.execute("SELECT DISTINCT member_id, job_id FROM star.interactions "
                                        "WHERE member_id = ANY(%s)", (positives["member_id"].unique().tolist(),)):
            touched.setdefault(member, set()).add(job)
        member_value = _member_values(conn, positives, cfg.negatives_by)
        pairs, counts = _sample(positives, _values(conn, "job", cfg.negatives_by), member_value, touched, cfg)
        if pairs.empty:
            raise EvalSetError(f"none of the {len(positives)} {cfg.task!r} positives in the window has an eligible "
                               f"negative ({counts}); leave out --negatives-by, or widen the window")
        warm = {r[0] for r in conn.execute("SELECT DISTINCT member_id FROM star.interactions WHERE relation = %s AND "
                                           "event_timestamp < %s", (cfg.task, start))}
        for entity in ("member", "job"):
            pairs[f"{entity}_text"], pairs[f"{entity}_md5"] = texts_as_of(
                conn, entity, pairs[ID_COLUMN[entity]].to_numpy(), pairs["event_timestamp"])
    pairs["cold_start"] = ~pairs["member_id"].isin(warm)
    pairs, no_text = _with_texts(pairs)
    if pairs.empty:
        raise EvalSetError(f"no pair has both a member and a job text as of its event ({no_text} without); load "
                           "texts (texts.* file, docs/data-format.md) valid from before the window")
    return EvalSet(pairs=pairs, start=start, end=end, counts={
        "positives_in_window": len(positives), **counts, **no_text, "pairs": len(pairs),
        "positives": int(pairs["label"].sum()), "negatives": int((pairs["label"] == 0).sum()),
        "cold_start_members": int(pairs.loc[pairs["cold_start"], "member_id"].nunique()),
        "negatives_per_positive": cfg.negatives, "negatives_by": cfg.negatives_by, "seed": cfg.seed})


def _with_texts(pairs: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Pairs whose member and job both have a non-blank text as of the event; a positive left without a negative
    (or without its own text) goes with all its negatives."""
    has = pairs["member_text"].map(_usable) & pairs["job_text"].map(_usable)
    kept = pairs[has]
    groups = kept.groupby("positive")["label"].agg(["max", "min"])
    whole = groups.index[(groups["max"] == 1) & (groups["min"] == 0)]
    out = kept[kept["positive"].isin(whole)].reset_index(drop=True)
    return out, {"pairs_without_text": int((~has).sum()),
                 "positives_dropped_for_text": int(pairs["label"].sum() - out["label"].sum())}


def _usable(text) -> bool:
    return isinstance(text, str) and bool(text.strip())


def text_vintages(conn) -> list[dict]:
    """Every text vintage of the registry: name, family, entity, version, dim, status, fingerprint_hash, has_rows."""
    out = []
    for name, family, entity, version, dim, status, fp, table in registry.text_vintages(conn):
        rows = table is not None and conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(
            sql.Identifier("star", name))).fetchone()[0]
        out.append({"name": name, "family": family, "entity": entity, "version": version, "dim": dim,
                    "status": status, "fingerprint_hash": fp, "has_rows": bool(rows)})
    return out


ROW_AS_OF = """
SELECT q.n, v.event_timestamp, v.text_md5
FROM unnest(%(ids)s::bigint[], %(ts)s::timestamptz[]) WITH ORDINALITY AS q(id, ts, n)
LEFT JOIN LATERAL (SELECT event_timestamp, text_md5 FROM {t} WHERE {key} = q.id AND event_timestamp <= q.ts
                   ORDER BY event_timestamp DESC LIMIT 1) v ON true
ORDER BY q.n
"""
VECTORS = """
SELECT v.{key}, v.event_timestamp, v.embedding FROM {t} v
JOIN unnest(%(ids)s::bigint[], %(vf)s::timestamptz[]) AS q(id, vf) ON v.{key} = q.id AND v.event_timestamp = q.vf
"""


def vectors_as_of(conn: psycopg.Connection, vintage: dict, ids: np.ndarray, times: pd.Series
                  ) -> tuple[np.ndarray, list]:
    """Per (id, time): the vintage's vector of the entity's text as of that time ((n, dim) float32, NaN rows where
    the vintage has none) and the md5 of the text it embedded. Retired vintages are read through their view."""
    register_vector(conn)
    table, key = sql.Identifier("star", vintage["name"]), sql.Identifier(ID_COLUMN[vintage["entity"]])
    keys = pd.DataFrame({"id": np.asarray(ids, dtype=np.int64), "ts": pd.to_datetime(times, utc=True)})
    uniq = keys.drop_duplicates().reset_index(drop=True)
    rows = conn.execute(sql.SQL(ROW_AS_OF).format(t=table, key=key),
                        {"ids": uniq["id"].tolist(), "ts": list(uniq["ts"])}).fetchall()
    uniq["row"], uniq["md5"] = [r[1] for r in rows], [r[2] for r in rows]
    found = uniq.dropna(subset=["row"]).drop_duplicates(["id", "row"])
    vec = {(i, pd.Timestamp(ts)): _array(e) for i, ts, e in conn.execute(
        sql.SQL(VECTORS).format(t=table, key=key), {"ids": found["id"].tolist(), "vf": list(found["row"])})}
    merged = keys.merge(uniq, on=["id", "ts"], how="left")
    out = np.full((len(merged), vintage["dim"]), np.nan, dtype=np.float32)
    for n, (i, row) in enumerate(zip(merged["id"], merged["row"])):
        if row is not None and not pd.isna(row):
            out[n] = vec[(i, pd.Timestamp(row))]
    return out, merged["md5"].tolist()


def _array(vector) -> np.ndarray:
    """pgvector's Vector (binary results) or a numpy array (text results) as float32."""
    return np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, dtype=np.float32)
