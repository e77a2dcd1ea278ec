"""The marketplace graph as of a cutoff, on a real Postgres: nothing stamped after the cutoff reaches it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from star import db
from star.config import REPO_ROOT
from star.data.reading import frame
from star.errors import ConfigError
from star.graph.build import GraphBuildError, GraphConfig, build_graph
from star.pipeline import seed_synthetic
from star.store.marketplace import load
from star.text.config import TextModelConfig
from star.text.embed import EmbedConfig, embed_texts
from star.text.model import TextEncoder
from star.versions import compat
from star.versions.retire import retire
from tests.text_models import one_thread, tiny_bert  # noqa: F401  (one_thread: autouse fixture)

CUTOFF = pd.Timestamp("2025-02-18T00:00:00Z")
LATER = "2025-03-01T00:00:00Z"  # every *_after value below is stamped after CUTOFF


def market() -> dict[str, pd.DataFrame]:
    """Member 1 changes attributes, text and skills after the cutoff; member 3, job 12, skills rust / go, the
    values lead / rome / principal and the relation hire only exist after it; member 4 has no text by then."""
    return {
        "members": pd.DataFrame({
            "member_id": [1, 1, 2, 3, 4],
            "valid_from": ["2025-01-01T00:00:00Z", LATER, "", "2025-03-05T00:00:00Z", "2025-01-10T00:00:00Z"],
            "seniority": ["junior", "senior", "mid", "lead", None],
            "location": ["berlin", "berlin", "paris", "rome", "london"],
        }),
        "jobs": pd.DataFrame({
            "job_id": [10, 11, 12],
            "valid_from": ["2025-01-05T00:00:00Z", "2025-02-01T00:00:00Z", "2025-03-10T00:00:00Z"],
            "seniority": ["senior", "junior", "principal"],
        }),
        "texts": pd.DataFrame({
            "entity": ["member", "member", "member", "member", "member", "job", "job", "job"],
            "entity_id": [1, 1, 2, 3, 4, 10, 11, 12],
            "valid_from": ["2025-01-01T00:00:00Z", LATER, "2025-01-01T00:00:00Z", "2025-03-05T00:00:00Z", LATER,
                           "2025-01-05T00:00:00Z", "2025-02-01T00:00:00Z", "2025-03-10T00:00:00Z"],
            "text": ["Junior data analyst, SQL", "Senior data analyst, SQL, Python", "Nurse", "Lead engineer",
                     "Late profile", "Senior analyst wanted", "Junior nurse", "Principal engineer"],
        }),
        "edges": pd.DataFrame([
            ("member", "1", "has_skill", "skill", "sql", ""),
            ("member", "1", "has_skill", "skill", "python", LATER),
            ("member", "1", "has_title", "title", "analyst", ""),
            ("member", "3", "has_skill", "skill", "go", "2025-03-05T00:00:00Z"),
            ("job", "10", "requires_skill", "skill", "sql", ""),
            ("job", "12", "requires_skill", "skill", "rust", "2025-03-10T00:00:00Z"),
            ("member", "1", "view", "job", "10", "2025-02-10T00:00:00Z"),
            ("member", "1", "view", "job", "10", "2025-02-12T00:00:00Z"),  # the same pair again: a second edge
            ("member", "1", "apply", "job", "10", "2025-02-15T00:00:00Z"),
            ("member", "2", "dismiss", "job", "10", "2025-02-16T00:00:00Z"),
            ("member", "4", "save", "job", "11", "2025-02-17T23:59:59Z"),
            ("member", "2", "apply", "job", "11", "2025-02-20T00:00:00Z"),
            ("member", "1", "hire", "job", "11", "2025-03-02T00:00:00Z"),
            ("member", "3", "apply", "job", "12", "2025-03-11T00:00:00Z"),
        ], columns=["src_type", "src_id", "relation", "dst_type", "dst_id", "event_timestamp"]),
    }


def _load(target, data=None):
    load(target, {kind: frame(df, f"{kind}.csv") for kind, df in (data or market()).items()})


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """Two tiny random BERTs: two text embedding versions with different vectors."""
    return [TextEncoder(TextModelConfig(model_dir=tiny_bert(tmp_path_factory.mktemp(f"bert{seed}"), seed=seed),
                                        pooling="mean", precision="fp32")) for seed in (0, 1)]


def _time(value: str) -> float:
    return pd.Timestamp(value or "1970-01-01T00:00:00Z").timestamp()  # no time: valid since the beginning


def _graph_edges(mg, etype) -> list[tuple]:
    """(external src, external dst, ts) of every edge of one type."""
    src, dst = (t.numpy() for t in mg.graph.edges(etype=etype))
    s, _, d = etype
    return sorted(zip(mg.node_ids[s][src].tolist(), mg.node_ids[d][dst].tolist(),
                      mg.graph.edges[etype].data["ts"].numpy().tolist()))


def _decode(mg, entity) -> dict:
    """{id: {column: value or None}} from the categorical codes."""
    vocab, codes = mg.categorical_vocab[entity], mg.features[entity]["categorical"].numpy()
    return {int(i): {col: (vocab[col][c - 1] if c else None) for col, c in zip(vocab, row)}
            for i, row in zip(mg.node_ids[entity], codes)}


def test_tiny_market_graph_holds_exactly_what_was_known_at_the_cutoff(target, encoders):
    _load(target)
    embed_texts(target, encoders[0], EmbedConfig(), progress=False)
    mg = build_graph(target, GraphConfig(cutoff=CUTOFF))

    assert {nt: ids.tolist() for nt, ids in mg.node_ids.items()} == {
        "member": [1, 2, 4], "job": [10, 11], "skill": ["sql"], "title": ["analyst"]}
    assert mg.index["member"] == {1: 0, 2: 1, 4: 2} and mg.index["skill"] == {"sql": 0}
    # every edge type against the input rows, filtered independently (pandas, not SQL)
    edges = market()["edges"]
    edges["ts"] = edges["event_timestamp"].map(_time)
    known = edges[edges["ts"] <= CUTOFF.timestamp()]
    forward = [e for e in mg.graph.canonical_etypes if not e[1].startswith("rev_")]
    expected_types = {(r.src_type, r.relation, r.dst_type) for r in known.itertuples()}
    assert set(forward) == expected_types and ("member", "hire", "job") not in forward
    for etype in forward:
        rows = known[(known["src_type"] == etype[0]) & (known["relation"] == etype[1])]
        dst = rows["dst_id"].astype(int) if etype[2] == "job" else rows["dst_id"]
        want = sorted(zip(rows["src_id"].astype(int).tolist(), dst.tolist(), rows["ts"].tolist()))
        assert _graph_edges(mg, etype) == want, etype
        assert max(t for *_, t in want) <= CUTOFF.timestamp()
    assert len(_graph_edges(mg, ("member", "view", "job"))) == 2  # repeated events stay separate edges
    # reverse edges mirror forward ones, time included
    for s, r, d in forward:
        assert _graph_edges(mg, (d, f"rev_{r}", s)) == sorted((b, a, t) for a, b, t in _graph_edges(mg, (s, r, d)))
    # edge counts agree with SQL counts
    with db.connect(target) as conn:
        sql_counts = dict(conn.execute(
            "SELECT 'member:' || relation || ':job', count(*) FROM star.interactions WHERE event_timestamp <= %(c)s "
            "GROUP BY relation UNION ALL SELECT entity || ':' || relation || ':' || node_type, count(*) "
            "FROM star.attribute_edges WHERE event_timestamp <= %(c)s GROUP BY 1", {"c": CUTOFF}).fetchall())
    assert mg.edge_counts == sql_counts == {f"{s}:{r}:{d}": mg.graph.num_edges((s, r, d)) for s, r, d in forward}

    # categorical: the row valid at the cutoff, vocabulary of values seen by then (no lead / rome / principal)
    assert mg.categorical_vocab["member"] == {"location": ["berlin", "london", "paris"],
                                              "seniority": ["junior", "mid"]}
    assert _decode(mg, "member") == {1: {"location": "berlin", "seniority": "junior"},
                                     2: {"location": "paris", "seniority": "mid"},
                                     4: {"location": "london", "seniority": None}}
    assert _decode(mg, "job") == {10: {"seniority": "senior"}, 11: {"seniority": "junior"}}

    # text: the snapshot valid at the cutoff, encoded here independently; member 4's only text is later
    feats = mg.features["member"]
    assert mg.text_versions == {"member": 1, "job": 1}
    assert feats["text"].dtype == torch.float32 and feats["text"].shape == (3, encoders[0].dim)
    assert feats["text_mask"].tolist() == [True, True, False]
    old = encoders[0].encode(["Junior data analyst, SQL", "Nurse"], "member").embeddings
    np.testing.assert_allclose(feats["text"][:2].numpy(), old, atol=1e-5)
    assert not feats["text"][2].any()
    jobs = encoders[0].encode(["Senior analyst wanted", "Junior nurse"], "job").embeddings
    np.testing.assert_allclose(mg.features["job"]["text"].numpy(), jobs, atol=1e-5)
    assert mg.features["skill"] == {} and mg.graph.edges[forward[0]].data["ts"].dtype == torch.float64


def test_text_version_pinning_and_feature_switches(target, encoders):
    _load(target)
    for encoder in encoders:  # a different model: version 2 of each family
        embed_texts(target, encoder, EmbedConfig(), progress=False)
    texts = ["Junior data analyst, SQL", "Nurse"]
    newest = build_graph(target, GraphConfig(cutoff=CUTOFF))
    pinned = build_graph(target, GraphConfig(cutoff=CUTOFF, text_version={"member": 1, "job": 1}))
    assert newest.text_versions == {"member": 2, "job": 2} and pinned.text_versions == {"member": 1, "job": 1}
    np.testing.assert_allclose(newest.features["member"]["text"][:2].numpy(),
                               encoders[1].encode(texts, "member").embeddings, atol=1e-5)
    np.testing.assert_allclose(pinned.features["member"]["text"][:2].numpy(),
                               encoders[0].encode(texts, "member").embeddings, atol=1e-5)
    other = TextEncoder(TextModelConfig(model_dir=tiny_bert(Path(encoders[0].cfg.model_dir).parent / "other", seed=2),
                                        pooling="mean", precision="fp32"))
    embed_texts(target, other, EmbedConfig(entities=("job",)), progress=False)  # job v3, from another encoder
    assert build_graph(target, GraphConfig(cutoff=CUTOFF)).text_versions == {"member": 2, "job": 2}  # one encoder
    only_member = build_graph(target, GraphConfig(cutoff=CUTOFF, text_version={"member": 1}))
    assert "text" in only_member.features["member"] and "text" not in only_member.features["job"]

    for switches in ({"use_text": False}, {"text_version": {}}):
        mg = build_graph(target, GraphConfig(cutoff=CUTOFF, **switches))
        assert all(set(f) <= {"categorical"} for f in mg.features.values()) and mg.text_versions == {}
    mg = build_graph(target, GraphConfig(cutoff=CUTOFF, use_categorical=False, add_reverse=False))
    assert all("categorical" not in f for f in mg.features.values()) and mg.categorical_vocab == {}
    assert not any(r.startswith("rev_") for _, r, _ in mg.graph.canonical_etypes)
    assert set(mg.features["member"]) == {"text", "text_mask"}

    with pytest.raises(GraphBuildError, match=r"member_text_embedding version 7 does not exist \(versions: \[1, 2\]"):
        build_graph(target, GraphConfig(cutoff=CUTOFF, text_version={"member": 7}))

    # a retired text version is read as it is served: its successor's vectors through the map
    d1, d2 = pinned.features["member"]["text"].shape[1], newest.features["member"]["text"].shape[1]
    rng = np.random.default_rng(0)
    m = compat.CompatMap(family="member_text_embedding", from_version=2, to_version=1,
                         matrix=rng.normal(size=(d1, d2)), bias=rng.normal(size=d1), metrics={})
    with db.connect(target) as conn:
        compat.store(conn, m)
        conn.commit()
    retire(target, "member_text_embedding", 1)
    served = build_graph(target, GraphConfig(cutoff=CUTOFF, text_version={"member": 1, "job": 1}))
    assert served.text_versions == {"member": 1, "job": 1}
    np.testing.assert_array_equal(served.features["member"]["text_mask"].numpy(),
                                  newest.features["member"]["text_mask"].numpy())
    have = newest.features["member"]["text_mask"].numpy()
    np.testing.assert_allclose(served.features["member"]["text"].numpy()[have],
                               m.apply(newest.features["member"]["text"].numpy()[have]), atol=1e-4)


def test_errors_name_the_value_and_the_fix(target):
    with pytest.raises(GraphBuildError, match="empty.*star seed"):
        build_graph(target, GraphConfig(cutoff=CUTOFF))
    _load(target)
    with pytest.raises(GraphBuildError, match="before any data: the first job is valid from 2025-01-05.*later cutoff"):
        build_graph(target, GraphConfig(cutoff=pd.Timestamp("2024-12-31", tz="UTC")))
    with pytest.raises(GraphBuildError, match="no interactions at or before cutoff .* first is at 2025-02-10"):
        build_graph(target, GraphConfig(cutoff=pd.Timestamp("2025-02-09", tz="UTC")))
    with pytest.raises(GraphBuildError, match="'hired' do not exist; the data has apply, dismiss, hire, save, view"):
        build_graph(target, GraphConfig(cutoff=CUTOFF, interaction_relations=("apply", "hired")))
    with pytest.raises(GraphBuildError, match="attribute relation.*'has_color'.*has_skill, has_title"):
        build_graph(target, GraphConfig(cutoff=CUTOFF, attribute_relations=("has_color",)))
    with pytest.raises(GraphBuildError, match="'hire' has no edges at or before cutoff .* 2025-03-02.*later --cutoff"):
        build_graph(target, GraphConfig(cutoff=CUTOFF, interaction_relations=("hire",)))
    with pytest.raises(ConfigError, match="no time zone"):
        GraphConfig(cutoff=pd.Timestamp("2025-02-18"))
    narrow = build_graph(target, GraphConfig(cutoff=CUTOFF, interaction_relations=("apply",),
                                             attribute_relations=("has_skill",)))
    assert sorted(narrow.edge_counts) == ["member:apply:job", "member:has_skill:skill"]
    assert sorted(narrow.graph.ntypes) == ["job", "member", "skill"]


TRUNCATE_AT_CUTOFF = ("DELETE FROM star.interactions WHERE event_timestamp > %(c)s",
                      "DELETE FROM star.attribute_edges WHERE event_timestamp > %(c)s",
                      "DELETE FROM star.member_history WHERE valid_from > %(c)s",
                      "DELETE FROM star.job_history WHERE valid_from > %(c)s",
                      "DELETE FROM star.text_snapshots WHERE valid_from > %(c)s")


def test_synthetic_graph_equals_the_graph_of_the_data_truncated_at_the_cutoff(target):
    """Whatever happens after the cutoff (new members, jobs, edges, attribute changes) changes nothing."""
    seed_synthetic(target, members=150, jobs=50, seed=1, progress=False)
    with db.connect(target) as conn:
        (cutoff,) = conn.execute("SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY event_timestamp) "
                                 "FROM star.interactions").fetchone()
        total = conn.execute("SELECT count(*) FROM star.interactions").fetchone()[0]
        later = conn.execute("SELECT count(*) FROM star.member_history WHERE valid_from > %s", (cutoff,)).fetchone()[0]
    cutoff = pd.Timestamp(cutoff).tz_convert("UTC")
    full = build_graph(target, GraphConfig(cutoff=cutoff))
    assert 0 < sum(full.graph.num_edges(e) for e in full.graph.canonical_etypes if e[2] == "job") < total
    assert later > 0  # the data does change after the cutoff
    for etype in full.graph.canonical_etypes:
        assert (full.graph.edges[etype].data["ts"] <= cutoff.timestamp()).all(), etype
        s, r, d = etype
        if not r.startswith("rev_"):  # reverse edge i is forward edge i turned round, same time
            src, dst = full.graph.edges(etype=etype)
            rsrc, rdst = full.graph.edges(etype=(d, f"rev_{r}", s))
            assert rsrc.equal(dst) and rdst.equal(src), etype
            assert full.graph.edges[(d, f"rev_{r}", s)].data["ts"].equal(full.graph.edges[etype].data["ts"])
    with db.connect(target) as conn:
        with conn.transaction():
            for statement in TRUNCATE_AT_CUTOFF:
                conn.execute(statement, {"c": cutoff})
    past = build_graph(target, GraphConfig(cutoff=cutoff))

    assert full.graph.canonical_etypes == past.graph.canonical_etypes
    for nt in full.graph.ntypes:
        np.testing.assert_array_equal(full.node_ids[nt], past.node_ids[nt])
    for etype in full.graph.canonical_etypes:
        for a, b in zip(full.graph.edges(etype=etype), past.graph.edges(etype=etype)):
            assert a.equal(b), etype
        assert full.graph.edges[etype].data["ts"].equal(past.graph.edges[etype].data["ts"]), etype
    assert full.categorical_vocab == past.categorical_vocab and full.edge_counts == past.edge_counts
    for entity in ("member", "job"):
        assert full.features[entity]["categorical"].equal(past.features[entity]["categorical"])
    # and the decoded attributes are each member's latest history row by the cutoff, computed here in pandas
    with db.connect(target) as conn:
        hist = pd.DataFrame(conn.execute("SELECT member_id, valid_from, attrs FROM star.member_history").fetchall(),
                            columns=["member_id", "valid_from", "attrs"])
    latest = hist.sort_values("valid_from").groupby("member_id").last()["attrs"]
    decoded = _decode(full, "member")
    assert decoded.keys() == set(latest.index)
    assert all(decoded[m] == {c: latest[m].get(c) for c in decoded[m]} for m in decoded)


def test_only_dgl_compat_imports_dgl():
    pattern = re.compile(r"^\s*(import dgl|from dgl\b)", re.MULTILINE)
    offenders = [str(p.relative_to(REPO_ROOT)) for d in ("star", "jobs", "tests", "bench") if (REPO_ROOT / d).is_dir()
                 for p in (REPO_ROOT / d).rglob("*.py")
                 if p.name != "dgl_compat.py" and pattern.search(p.read_text())]
    assert offenders == []
