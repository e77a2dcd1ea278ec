"""`star text eval` on a hand-made market whose AUCs are worked out by hand below.

Jobs (state; posted Jan 1 unless said): 10 CA, 11 NY, 12 CA, 13 CA (posted Mar 10), 14 NY then CA from Mar 5.
Members: 1 CA, 2 NY, 3 NY then CA from Mar 11.
Interactions: m1 apply 10 (Jan 10), m1 view 11 (Jan 11); in the window: m1 apply 12 (Mar 1), m2 apply 11 (Mar 2),
m3 apply 13 (Mar 12). Default window: the latest 20 % of Jan 10 .. Mar 12 = from Feb 27 19:12.
Texts: m1 "python developer", m2 "nurse icu", m3 "welder steel" (then "chef kitchen" from Mar 20);
j10 "welder steel", j11 "nurse ward", j12 "python developer senior", j13 "steel welder apprentice" (Mar 10),
j14 "nurse icu".

Random negatives (jobs posted by the event that the member never touched, any relation):
    m1 @Mar 1: {14}            m2 @Mar 2: {10, 12, 14}        m3 @Mar 12: {10, 11, 12, 14}
TF-IDF cosine: each positive shares some words (0 < cos < 1); negatives: (m2, 14) and (m3, 10) are the same text
(cos 1), the six others share no word (cos 0). Every positive beats the 6 zeros and loses to the 2 ones:
AUC = 3*6 / (3*8) = 0.75. Cold start (no apply before the window): m2, m3 -> 2*5 / (2*7) = 5/7.
With m3's later text ("chef kitchen") instead of the text at the event, the answer would differ.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from star import db
from star.data.reading import frame
from star.errors import EvalSetError
from star.pipeline import text_eval
from star.store import embeddings as store
from star.store.evalset import EvalSetConfig, build_evalset
from star.store.marketplace import load

JAN1 = "2025-01-01T00:00:00Z"
TEXTS = [("member", 1, JAN1, "python developer"), ("member", 2, JAN1, "nurse icu"),
         ("member", 3, JAN1, "welder steel"), ("member", 3, "2025-03-20T00:00:00Z", "chef kitchen"),
         ("job", 10, JAN1, "welder steel"), ("job", 11, JAN1, "nurse ward"),
         ("job", 12, JAN1, "python developer senior"), ("job", 13, "2025-03-10T00:00:00Z", "steel welder apprentice"),
         ("job", 14, JAN1, "nurse icu")]


def market() -> dict:
    return {kind: frame(df, f"{kind} (test)") for kind, df in {
        "members": pd.DataFrame({"member_id": [1, 2, 3, 3], "valid_from": [JAN1, JAN1, JAN1, "2025-03-11T00:00:00Z"],
                                 "state": ["CA", "NY", "NY", "CA"], "seniority": ["mid", "mid", "junior", "junior"]}),
        "jobs": pd.DataFrame({"job_id": [10, 11, 12, 13, 14, 14],
                              "valid_from": [JAN1, JAN1, JAN1, "2025-03-10T00:00:00Z", JAN1, "2025-03-05T00:00:00Z"],
                              "state": ["CA", "NY", "CA", "CA", "NY", "CA"], "remote": ["no"] * 6}),
        "texts": pd.DataFrame(TEXTS, columns=["entity", "entity_id", "valid_from", "text"]),
        "edges": pd.DataFrame({
            "src_type": ["member"] * 5, "src_id": ["1", "1", "1", "2", "3"],
            "relation": ["apply", "view", "apply", "apply", "apply"], "dst_type": ["job"] * 5,
            "dst_id": ["10", "11", "12", "11", "13"],
            "event_timestamp": ["2025-01-10T00:00:00Z", "2025-01-11T00:00:00Z", "2025-03-01T00:00:00Z",
                                "2025-03-02T00:00:00Z", "2025-03-12T00:00:00Z"]}),
    }.items()}


@pytest.fixture
def loaded(target):
    load(target, market())
    return target


def _pairs(evalset) -> set:
    return set(evalset.pairs[["member_id", "job_id", "label"]].itertuples(index=False, name=None))


def test_random_negatives_texts_as_of_the_event_and_cold_start(loaded):
    es = build_evalset(loaded, EvalSetConfig())
    assert es.start == pd.Timestamp("2025-02-27T19:12:00Z")
    assert _pairs(es) == {(1, 12, 1), (1, 14, 0), (2, 11, 1), (2, 10, 0), (2, 12, 0), (2, 14, 0),
                          (3, 13, 1), (3, 10, 0), (3, 11, 0), (3, 12, 0), (3, 14, 0)}
    texts = dict(zip(es.pairs["member_id"], es.pairs["member_text"]))
    assert texts[3] == "welder steel"  # as of Mar 12, not the Mar 20 text
    assert set(es.pairs.loc[es.pairs["cold_start"], "member_id"]) == {2, 3}
    assert es.counts["cold_start_members"] == 2 and es.counts["dropped_no_negative"] == 0


def test_negatives_by_share_the_column_as_of_the_event_and_are_never_touched(loaded):
    es = build_evalset(loaded, EvalSetConfig(negatives_by="state", seed=3))
    # m1 (CA): CA jobs on Mar 1 are 10 and 12, both touched -> dropped; m2 (NY): 11, 14 -> 14;
    # m3 (CA since Mar 11): 10, 12, 13, 14 (CA since Mar 5) -> 10, 12, 14
    assert _pairs(es) == {(2, 11, 1), (2, 14, 0), (3, 13, 1), (3, 10, 0), (3, 12, 0), (3, 14, 0)}
    assert es.counts["dropped_no_negative"] == 1


def test_negatives_are_sampled_reproducibly_and_never_touched(loaded):
    a = build_evalset(loaded, EvalSetConfig(negatives=2, seed=7))
    b = build_evalset(loaded, EvalSetConfig(negatives=2, seed=7))
    assert a.pairs[["member_id", "job_id"]].equals(b.pairs[["member_id", "job_id"]])
    negatives = a.pairs[a.pairs["label"] == 0]
    assert negatives.groupby("member_id").size().to_dict() == {1: 1, 2: 2, 3: 2}
    touched = {(1, 10), (1, 11), (1, 12), (2, 11), (3, 13)}
    assert not touched & set(zip(negatives["member_id"], negatives["job_id"]))
    assert a.counts["fewer_negatives"] == 1  # m1 has one eligible job


def test_bad_column_and_task_name_the_value_and_the_choices(loaded):
    with pytest.raises(EvalSetError, match=r"--negatives-by 'salary' is not a categorical column of both members "
                                           r"and jobs; the shared columns are: state\. Pass one of those"):
        build_evalset(loaded, EvalSetConfig(negatives_by="salary"))
    with pytest.raises(EvalSetError, match=r"--task 'click' has no interactions; the data has: apply, view"):
        build_evalset(loaded, EvalSetConfig(task="click"))


def test_tfidf_auc_is_the_hand_computed_one_and_files_are_written(loaded, tmp_path):
    result = text_eval(loaded, base=False, versions=[], out=tmp_path / "run", progress=False)
    (row,) = result["table"]
    assert row["scorer"] == "tfidf"
    assert row["auc"] == 0.75 and (row["positives"], row["negatives"]) == (3, 8)
    assert row["cold_auc"] == pytest.approx(5 / 7, abs=1e-12)
    assert (row["cold_positives"], row["cold_negatives"]) == (2, 7)
    assert "2 members" in result["cold_start"]
    files = result["files"]
    assert json.loads(Path(files["json"]).read_text())["rows"][0]["auc"] == 0.75
    assert "| tfidf | 0.7500 |" in Path(files["markdown"]).read_text()
    assert Path(files["plot"]).read_bytes()[:4] == b"\x89PNG"


def _vintage(target, entity: str, vectors: dict, wrong_md5: set = frozenset()) -> None:
    """A published text vintage with hand-set 2-d vectors: vectors[(id, valid_from day)] -> (x, y)."""
    family = f"{entity}_text_embedding"
    with db.connect(target) as conn:
        snaps = pd.DataFrame(conn.execute(
            "SELECT entity_id, valid_from, text_md5 FROM star.text_snapshots WHERE entity = %s ORDER BY 1, 2",
            (entity,)).fetchall(), columns=["entity_id", "valid_from", "text_md5"])
        snaps["text_md5"] = [("x" + m if i in wrong_md5 else m) for i, m in zip(snaps["entity_id"], snaps["text_md5"])]
        with conn.transaction():
            v, _ = store.find_or_create(conn, family=family, entity=entity, dim=2, kind="text_embedding",
                                        fingerprint={"model": "hand-made"}, model="hand-made")
            store.ensure_staging(conn, v)
        emb = np.array([vectors[(i, ts.strftime("%m-%d"))] for i, ts in zip(snaps["entity_id"], snaps["valid_from"])],
                       dtype=np.float32)
        store.stage(conn, v, snaps, emb)
        store.publish(conn, v, metrics={})


def test_a_stored_vintage_is_scored_point_in_time(loaded, tmp_path):
    # members: m1 (1,0), m2 (0,1), m3 (1,0) until Mar 20 then (0,1); jobs: 10, 11 (0,1); 12, 13 (1,0); 14 (1,1)
    _vintage(loaded, "member", {(1, "01-01"): (1, 0), (2, "01-01"): (0, 1), (3, "01-01"): (1, 0),
                                (3, "03-20"): (0, 1)})
    _vintage(loaded, "job", {(10, "01-01"): (0, 1), (11, "01-01"): (0, 1), (12, "01-01"): (1, 0),
                             (13, "03-10"): (1, 0), (14, "01-01"): (1, 1)}, wrong_md5={14})
    # positives (1,12), (2,11), (3,13) all cos 1; negatives: (1,14) .71, (2,10) 1, (2,12) 0, (2,14) .71, (3,10) 0,
    # (3,11) 0, (3,12) 1, (3,14) .71 -> each positive beats 6 and ties 2: (3*6 + 3*2*0.5) / 24 = 0.875
    result = text_eval(loaded, base=False, tfidf=True, out=tmp_path / "run", progress=False)
    rows = {r["scorer"]: r for r in result["table"]}
    assert list(rows) == ["tfidf", "vintage v1"]
    v1 = rows["vintage v1"]
    assert v1["auc"] == 0.875 and v1["unscored"] == 0
    assert (v1["member_view"], v1["job_view"]) == ("member_text_embedding_v1", "job_text_embedding_v1")
    assert v1["text_mismatch"] == 3  # the pairs with job 14, whose stored row embedded another text
    assert v1["vs_tfidf"] == pytest.approx(0.875 / 0.75 - 1)
    only = text_eval(loaded, base=False, tfidf=False, versions=["job_text_embedding_v1"], out=tmp_path / "r2",
                     progress=False)
    assert [r["scorer"] for r in only["table"]] == ["vintage v1"]
    with pytest.raises(EvalSetError, match=r"--versions 'member_text_embedding_v9': member_text_embedding_v9 is not a "
                                           r"text vintage; the registry has: job_text_embedding_v1, "
                                           r"member_text_embedding_v1"):
        text_eval(loaded, base=False, versions=["member_text_embedding_v9"], out=tmp_path / "r3", progress=False)


def test_cli_prints_one_json_line_and_the_table_and_names_a_bad_column(loaded, tmp_path):
    star = str(Path(sys.executable).with_name("star"))
    env = {**os.environ, "STAR_DATABASE_URL": loaded.sqlalchemy_url()}
    done = subprocess.run([star, "text", "eval", "--no-base", "--versions", "none", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["job"] == "text eval" and record["table"][0]["auc"] == 0.75
    assert "| tfidf | 0.7500 |" in done.stderr
    bad = subprocess.run([star, "text", "eval", "--no-base", "--negatives-by", "salary"], capture_output=True,
                         text=True, timeout=300, env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "star: error: --negatives-by 'salary' is not a categorical column" in bad.stderr


def test_base_model_and_adapter_score_the_texts_at_the_event(loaded, tmp_path):
    """A tiny BERT as --model-dir and a LoRA adapter on it: each row is the AUC of its own encoder's cosines."""
    import torch
    from sklearn.metrics import roc_auc_score

    from star.text.config import TextModelConfig, TrainConfig
    from star.text.model import MatchHead, TextEncoder, save_model
    from tests.text_models import tiny_bert

    tiny = tiny_bert(tmp_path / "tiny")
    cfg = TextModelConfig(model_dir=tiny, precision="fp32", pooling="mean")
    torch.manual_seed(1)
    enc = TextEncoder(cfg, trainable=True)
    with torch.no_grad():  # lora_B starts at zero: make the adapter differ from the base model
        for name, p in enc.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    adapter = save_model(tmp_path / "run1" / "model", enc, MatchHead(dim=enc.dim), cfg, TrainConfig(), {})
    result = text_eval(loaded, model_dir=tiny, adapters=(adapter,), versions=[], out=tmp_path / "o", progress=False)
    rows = {r["scorer"]: r for r in result["table"]}
    assert list(rows) == ["tfidf", "base", "adapter run1/model"]
    pairs = build_evalset(loaded, EvalSetConfig()).pairs
    cosines = {}
    for name, encoder in (("base", TextEncoder(TextModelConfig(model_dir=tiny))), ("adapter run1/model", enc)):
        m = encoder.encode(pairs["member_text"].tolist(), "member").embeddings
        j = encoder.encode(pairs["job_text"].tolist(), "job").embeddings
        cosines[name] = (m * j).sum(axis=1)
        assert rows[name]["auc"] == pytest.approx(roc_auc_score(pairs["label"], cosines[name]), abs=1e-9)
        assert (rows[name]["positives"], rows[name]["negatives"]) == (3, 8)
    assert not np.allclose(cosines["base"], cosines["adapter run1/model"], atol=1e-3)  # the adapter was applied
