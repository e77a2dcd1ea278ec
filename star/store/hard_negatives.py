"""Hard negatives: jobs that share a categorical column with the positive's member, as of the positive's time.

    star.member_history / job_history attrs->>COL --intervals [valid_from, next valid_from)--> value as of t
    positive (m, j, t) --m's COL at t (j's COL when COL is a job column only)--> value v
    jobs whose COL at t is v (so posted at or before t) - m's task jobs (any time) - pairs already at (m, t)
      --K drawn uniformly, seeded--> label-0 rows at t, negative_source = 'hard'

All history is read in two queries and matched in numpy per value group (no query per row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from psycopg import sql

from star.errors import TrainsetError

NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class HardNegatives:
    """The drawn rows and how well the column matched."""

    rows: pd.DataFrame  # member_id, job_id, event_timestamp, label (0)
    by: str
    anchor: str  # 'member' or 'job': whose value the jobs must share
    per_positive: int
    positives_short: int  # positives that got fewer than per_positive (no or too few candidates)
    positives_without: int  # positives that got none

    def report(self) -> dict:
        return {"by": self.by, "anchor": self.anchor, "per_positive": self.per_positive, "drawn": len(self.rows),
                "positives_short": self.positives_short, "positives_without": self.positives_without}


def _columns(conn, entity: str) -> list[str]:
    query = sql.SQL("SELECT DISTINCT jsonb_object_keys(attrs) FROM {} ORDER BY 1").format(_history(entity))
    return [r for (r,) in conn.execute(query)]


def _history(entity: str) -> sql.Identifier:
    return sql.Identifier("star", f"{entity}_history")


def anchor_of(conn, column: str) -> str:
    """'member' when both sides have the column, 'job' when only jobs have it; else a TrainsetError."""
    members, jobs = _columns(conn, "member"), _columns(conn, "job")
    if column in jobs:
        return "member" if column in members else "job"
    shared = [c for c in jobs if c in members]
    where = "a member column only, jobs cannot share it" if column in members else "on neither members nor jobs"
    raise TrainsetError(f"--hard-negatives-by {column!r} is {where}; pass a categorical column of the jobs: "
                        f"shared with members: {', '.join(shared) or 'none'}; jobs only: "
                        f"{', '.join(c for c in jobs if c not in members) or 'none'}")


def _intervals(conn, entity: str, column: str) -> pd.DataFrame:
    """One row per history row: id, value of `column`, valid from / to (ns since epoch; to = next valid_from)."""
    key = f"{entity}_id"
    query = sql.SQL("SELECT {key}, valid_from, attrs->>%(col)s FROM {table} ORDER BY {key}, valid_from").format(
        key=sql.Identifier(key), table=_history(entity))
    df = pd.DataFrame(conn.execute(query, {"col": column}).fetchall(), columns=[key, "valid_from", "value"])
    df["valid_from"] = _ns(df["valid_from"])
    df["valid_to"] = df.groupby(key)["valid_from"].shift(-1, fill_value=NEVER)  # int64: ns do not fit a float
    return df


def _value_at(points: pd.DataFrame, key: str, intervals: pd.DataFrame) -> np.ndarray:
    """The interval value valid at each point's `t` (ns) for its `key`; None before the first interval."""
    left = points[[key, "t"]].reset_index(names="_row").sort_values("t")
    right = intervals[[key, "valid_from", "value"]].sort_values("valid_from")
    got = pd.merge_asof(left, right, left_on="t", right_on="valid_from", by=key, direction="backward")
    return got.sort_values("_row")["value"].to_numpy(dtype=object)


def _ns(ts: pd.Series) -> np.ndarray:
    return pd.to_datetime(ts, utc=True).astype("datetime64[ns, UTC]").astype("int64").to_numpy()


def draw(positives: pd.DataFrame, anchor_values: np.ndarray, jobs: pd.DataFrame, *, task_jobs: dict[int, set],
         taken: dict[tuple[int, int], set], k: int, seed: int) -> tuple[list[tuple], int, int]:
    """Up to k (member, job, t) per positive from `jobs` intervals whose value equals the positive's anchor value
    and that are valid at t; never a job in task_jobs[member] or taken[(member, t)] (updated as drawn)."""
    rng = np.random.default_rng([seed, 15])  # its own stream: adding hard negatives leaves sampled ones as they were
    groups = {}
    for value, g in jobs.dropna(subset=["value"]).groupby("value", sort=True):
        g = g.sort_values(["valid_from", "job_id"], kind="stable")
        groups[value] = (g["valid_from"].to_numpy(), g["valid_to"].to_numpy(), g["job_id"].to_numpy())
    out, short, without = [], 0, 0
    members, times = positives["member_id"].to_numpy(), positives["t"].to_numpy()
    for member, t, value in zip(members, times, anchor_values):
        group = groups.get(value) if value is not None else None
        got = 0
        if group is not None:
            starts, ends, ids = group
            hi = int(np.searchsorted(starts, t, side="right"))
            candidates = ids[:hi][ends[:hi] > t]  # each job has at most one interval valid at t
            excluded = task_jobs.get(member, set())
            at = taken.setdefault((member, t), set())
            want = min(len(candidates), k + len(excluded) + len(at))  # enough to survive every exclusion
            for i in rng.choice(len(candidates), size=want, replace=False) if want else ():
                job = int(candidates[i])
                if job in excluded or job in at:
                    continue
                at.add(job)
                out.append((member, job, t))
                got += 1
                if got == k:
                    break
        short += got < k
        without += got == 0
    return out, short, without


def hard_negatives(conn, labels: pd.DataFrame, *, task: str, by: str, k: int, seed: int) -> HardNegatives:
    """Draw the hard negatives of every positive in `labels` (see the module docstring)."""
    anchor = anchor_of(conn, by)
    positives = labels.loc[labels["label"] == 1, ["member_id", "job_id", "event_timestamp"]].reset_index(drop=True)
    positives["t"] = _ns(positives["event_timestamp"])
    jobs = _intervals(conn, "job", by)
    anchors = jobs if anchor == "job" else _intervals(conn, "member", by)
    anchor_values = _value_at(positives, f"{anchor}_id", anchors)
    task_jobs: dict[int, set] = {}
    for member, job in conn.execute("SELECT DISTINCT member_id, job_id FROM star.interactions WHERE relation = %s",
                                    (task,)):
        task_jobs.setdefault(member, set()).add(job)
    taken: dict[tuple[int, int], set] = {}
    for member, job, t in zip(labels["member_id"], labels["job_id"], _ns(labels["event_timestamp"])):
        taken.setdefault((member, t), set()).add(job)
    drawn, short, without = draw(positives, anchor_values, jobs, task_jobs=task_jobs, taken=taken, k=k, seed=seed)
    rows = pd.DataFrame(drawn, columns=["member_id", "job_id", "t"])
    rows["event_timestamp"] = pd.to_datetime(rows["t"].astype("int64"), utc=True)
    rows = rows.drop(columns="t").assign(label=0)
    return HardNegatives(rows=rows, by=by, anchor=anchor, per_positive=k, positives_short=short,
                         positives_without=without)
