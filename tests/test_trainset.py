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
