"""Point-in-time training sets: every feature and text is the one valid at the label time."""

from __future__ import annotations

import pandas as pd
import pytest

from star.data.reading import frame
from star.errors import FeatureRepoError, TrainsetError
from star.pipeline import apply_features
from star.store.marketplace import load
from star.store.trainset import TrainsetConfig, build_trainset
from tests.pit_oracle import assert_no_time_travel

T = pd.Timestamp("2025-03-01T12:00:00Z")
SEC = pd.Timedelta(seconds=1)


def boundary_market() -> dict:
    """Member 1 and job 10 change at T; labels fall 1 s before, exactly at, and 1 s after T."""
    iso = lambda t: t.isoformat()  # noqa: E731
    members = pd.DataFrame({"member_id": [1, 1, 2], "valid_from": [iso(T - pd.Timedelta(days=30)), iso(T), ""],
                            "seniority": ["junior", "senior", "mid"]})
    jobs = pd.DataFrame({"job_id": [10, 10, 11], "valid_from": [iso(T - pd.Timedelta(days=20)), iso(T + SEC),
                                                                  iso(T - pd.Timedelta(days=5))],
                         "remote": ["no", "yes", "no"]})
    texts = pd.DataFrame({"entity": ["member", "member", "job", "job", "job"], "entity_id": [1, 1, 10, 10, 11],
                          "valid_from": [iso(T - pd.Timedelta(days=30)), iso(T - SEC), iso(T - pd.Timedelta(days=20)),
                                         iso(T + SEC), iso(T - pd.Timedelta(days=5))],
                          "text": ["old profile", "new profile", "old posting", "edited posting", "other posting"]})
    edges = pd.DataFrame({
        "src_type": ["member", "member", "member", "member", "member", "member", "member"],
        "src_id": ["1", "1", "1", "1", "1", "2", "2"],
        "relation": ["has_skill", "has_skill", "apply", "apply", "apply", "dismiss", "apply"],
        "dst_type": ["skill", "skill", "job", "job", "job", "job", "job"],
        "dst_id": ["sql", "python", "10", "10", "10", "10", "11"],
        "event_timestamp": ["", iso(T + SEC), iso(T - SEC), iso(T), iso(T + SEC), iso(T), iso(T + 2 * SEC)],
    })
    return {"members": members, "jobs": jobs, "texts": texts, "edges": edges}


def _load(target, market):
    load(target, {k: frame(v, f"{k}.csv") for k, v in market.items()})
    apply_features(target)


def test_features_and_texts_are_those_valid_at_the_label_time(target):
    _load(target, boundary_market())
    df = build_trainset(target, TrainsetConfig(task="apply"))
    rows = {(r.member_id, r.job_id, r.event_timestamp): r for r in df.itertuples()}
    before, at, after = (rows[(1, 10, T - SEC)], rows[(1, 10, T)], rows[(1, 10, T + SEC)])
    # member attribute changed at T: the label at T sees it (valid_from <= t), the one 1 s before does not
    assert before.member_categorical_v1__seniority == "junior"
    assert at.member_categorical_v1__seniority == "senior"
    # profile text changed at T - 1 s
    assert before.member_text == "new profile" and at.member_text == "new profile"
    # job edited at T + 1 s: only the last label sees the edit
    assert at.job_categorical_v1__remote == "no" and at.job_text == "old posting"
    assert after.job_categorical_v1__remote == "yes" and after.job_text == "edited posting"
    # skill linked at T + 1 s
    assert set(at.member_ids_v1__has_skill_ids) == {"sql"}
    assert set(after.member_ids_v1__has_skill_ids) == {"sql", "python"}
    # the explicit negative relation is used, with its own time
    assert df.attrs["negatives"] == "explicit:dismiss"
    assert rows[(2, 10, T)].label == 0
    assert assert_no_time_travel(target, df) > 0


def test_sampled_negatives_come_from_jobs_open_at_the_time_and_not_applied_to(target):
    market = boundary_market()
    market["edges"] = market["edges"][market["edges"]["relation"] != "dismiss"]
    _load(target, market)
    df = build_trainset(target, TrainsetConfig(task="apply", neg_ratio=3, seed=1))
    assert df.attrs["negatives"] == "sampled:3"
    positives = set(zip(df.loc[df.label == 1, "member_id"], df.loc[df.label == 1, "job_id"]))
    posted = {10: T - pd.Timedelta(days=20), 11: T - pd.Timedelta(days=5)}
    negatives = df[df.label == 0]
    assert len(negatives) > 0
    for r in negatives.itertuples():
        assert (r.member_id, r.job_id) not in positives
        assert posted[r.job_id] <= r.event_timestamp
    assert_no_time_travel(target, df)


def test_unknown_task_is_a_clear_error(target):
    _load(target, boundary_market())
    with pytest.raises(TrainsetError, match=r"task 'hire' has no interactions; the data has: apply, dismiss"):
        build_trainset(target, TrainsetConfig(task="hire"))


def test_no_time_travel_on_the_synthetic_marketplace(target):
    """Every cell of a training set over a realistic marketplace (profile changes, edits, closings) matches the
    oracle, and the rows are exactly the labelled interactions."""
    from star.db import connect
    from star.pipeline import seed_synthetic

    seed_synthetic(target, members=300, jobs=150, seed=3, progress=False)
    apply_features(target)
    df = build_trainset(target, TrainsetConfig(task="apply"))
    with connect(target) as conn:
        applies, dismisses = conn.execute(
            "SELECT count(*) FILTER (WHERE relation = 'apply'), count(*) FILTER (WHERE relation = 'dismiss') "
            "FROM star.interactions").fetchone()
    assert (int(df.label.sum()), int((df.label == 0).sum())) == (applies, dismisses)
    # profiles really change inside the window, so the join has something to get wrong
    assert (df.groupby("member_id")["member_text"].nunique() > 1).sum() >= 3
    assert assert_no_time_travel(target, df) > 10 * len(df)


def test_views_not_yet_applied_in_feast_is_a_clear_error(target):
    load(target, {k: frame(v, f"{k}.csv") for k, v in boundary_market().items()})
    with pytest.raises(FeatureRepoError, match=r"registered but not applied in Feast; run `star features apply`"):
        build_trainset(target, TrainsetConfig(task="apply"))


def test_text_columns_are_there_even_when_one_side_has_no_texts(target):
    market = boundary_market()
    market["texts"] = market["texts"][market["texts"]["entity"] == "member"]
    _load(target, market)
    df = build_trainset(target, TrainsetConfig(task="apply"))
    assert {"member_text", "job_text"} <= set(df.columns) and df["job_text"].isna().all()


MEMBER_AND_JOB_VALUE_AT = """
WITH h AS (SELECT * FROM unnest(%(m)s::bigint[], %(j)s::bigint[], %(t)s::timestamptz[]) AS h(member_id, job_id, t))
SELECT (SELECT attrs->>%(col)s FROM star.member_history WHERE member_id = h.member_id AND valid_from <= h.t
        ORDER BY valid_from DESC LIMIT 1),
       (SELECT attrs->>%(col)s FROM star.job_history WHERE job_id = h.job_id AND valid_from <= h.t
        ORDER BY valid_from DESC LIMIT 1),
       EXISTS (SELECT 1 FROM star.interactions i WHERE (i.member_id, i.job_id, i.relation) = (h.member_id, h.job_id,
                                                                                             'apply'))
FROM h"""
# per (member, time) of a positive: the jobs sharing the member's value then, not applied to, not already paired then
AVAILABLE = """
WITH p AS (SELECT DISTINCT * FROM unnest(%(m)s::bigint[], %(t)s::timestamptz[]) AS p(member_id, t)),
pv AS (SELECT p.*, (SELECT attrs->>%(col)s FROM star.member_history WHERE member_id = p.member_id
                    AND valid_from <= p.t ORDER BY valid_from DESC LIMIT 1) AS v FROM p)
SELECT pv.member_id, pv.t, count(j.job_id) FROM pv LEFT JOIN star.jobs j
  ON (SELECT attrs->>%(col)s FROM star.job_history WHERE job_id = j.job_id AND valid_from <= pv.t
      ORDER BY valid_from DESC LIMIT 1) = pv.v
 AND NOT EXISTS (SELECT 1 FROM star.interactions i WHERE i.member_id = pv.member_id AND i.job_id = j.job_id
                 AND (i.relation = 'apply' OR (i.relation = 'dismiss' AND i.event_timestamp = pv.t)))
GROUP BY 1, 2"""


def _synthetic(target):
    from star.pipeline import seed_synthetic

    seed_synthetic(target, members=300, jobs=150, seed=3, progress=False)
    apply_features(target)


def _hard(df):
    return df.loc[df.negative_source == "hard", ["member_id", "job_id", "event_timestamp"]].reset_index(drop=True)


def test_hard_negatives_share_the_members_column_at_the_time_and_are_never_positives(target):
    from star.db import connect
    from star.store.trainset import summary

    _synthetic(target)
    k, col = 2, "seniority"  # members are promoted and jobs edited inside the window
    df = build_trainset(target, TrainsetConfig(task="apply", hard_negatives_by=col, hard_negatives=k, seed=5))
    hard, pos = _hard(df), df[df.label == 1]
    with connect(target) as conn:
        checks = conn.execute(MEMBER_AND_JOB_VALUE_AT, {"m": hard.member_id.tolist(), "j": hard.job_id.tolist(),
                                                        "t": hard.event_timestamp.tolist(), "col": col}).fetchall()
        available = {(m, pd.Timestamp(t)): n for m, t, n in conn.execute(AVAILABLE, {
            "m": pos.member_id.tolist(), "t": pos.event_timestamp.tolist(), "col": col})}
        dismisses = conn.execute("SELECT count(*) FROM star.interactions WHERE relation = 'dismiss'").fetchone()[0]
    assert len(checks) == len(hard) > len(pos)
    assert all(member == job is not None for member, job, _ in checks)  # same value as of the event time
    assert not any(applied for *_, applied in checks)  # never a job the member applied to, at any time
    assert not hard.duplicated().any() and (df[df.label == 0].negative_source != "hard").sum() == dismisses
    # as many as asked wherever enough candidates exist, all of them where fewer do
    asked = pos.groupby(["member_id", "event_timestamp"]).size() * k
    got = hard.groupby(["member_id", "event_timestamp"]).size().reindex(asked.index, fill_value=0)
    want = pd.Series([min(a, available[key]) for key, a in asked.items()], index=asked.index)
    assert got.equals(want) and (want < asked).any() and (want == asked).sum() > len(asked) / 2
    assert df.loc[df.label == 1, "negative_source"].isna().all()
    report = summary(df)
    assert report["negatives_by_source"] == {"explicit": dismisses, "hard": len(hard)}
    assert report["hard_negatives"]["positives_short"] == int((want < asked).sum())


def test_hard_negatives_are_reproducible_for_a_seed(target):
    _synthetic(target)
    cfg = dict(task="apply", hard_negatives_by="location", hard_negatives=3)
    first, again = (_hard(build_trainset(target, TrainsetConfig(**cfg, seed=7))) for _ in range(2))
    other = _hard(build_trainset(target, TrainsetConfig(**cfg, seed=8)))
    assert first.equals(again) and len(first) > 0
    assert not first.equals(other)


def test_a_job_only_column_matches_the_positive_job_as_of_the_time(target):
    """`remote` is a job column only: job 10 is 'no' until T + 1 s, then 'yes'; job 11 is 'no' throughout."""
    _load(target, boundary_market())
    df = build_trainset(target, TrainsetConfig(task="apply", hard_negatives_by="remote", hard_negatives=2))
    assert set(map(tuple, _hard(df).itertuples(index=False))) == {(1, 11, T - SEC), (1, 11, T)}
    assert df.attrs["hard_negatives"]["anchor"] == "job" and df.attrs["hard_negatives"]["positives_without"] == 2
    assert df.attrs["negatives"] == "explicit:dismiss+hard:remote:2"
    assert df.loc[(df.member_id == 2) & (df.job_id == 10), "negative_source"].tolist() == ["explicit"]


@pytest.mark.parametrize("column, where", [("colour", "on neither members nor jobs"),
                                           ("seniority", "a member column only, jobs cannot share it")])
def test_a_column_jobs_do_not_have_is_a_clear_error(target, column, where):
    _load(target, boundary_market())
    with pytest.raises(TrainsetError, match=rf"--hard-negatives-by '{column}' is {where}; pass a categorical column "
                                            r"of the jobs: shared with members: none; jobs only: remote"):
        build_trainset(target, TrainsetConfig(task="apply", hard_negatives_by=column))
