"""`star versions publish`: a candidate vintage is published only when the frozen ranker's parity gate passes
(real Postgres + pgvector, real Feast, tiny real text models)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import typer

from star import db
from star.cli import app
from star.errors import VersionError
from star.pipeline import apply_features
from star.ranker import save, train_ranker
from star.store.trainset import TrainsetConfig, build_trainset
from star.text.embed import EmbedConfig, embed_texts
from star.versions.config import GateConfig
from star.versions.gate import GateFailed
from star.versions.lifecycle import list_versions
from star.versions.publish import publish
from tests.test_ranker import V1, _market, encoders  # noqa: F401  (encoders: module fixture)
from tests.text_models import one_thread  # noqa: F401  (autouse fixture)

FAMILY = "member_text_embedding"


def _status(target) -> dict[int, str]:
    with db.connect(target) as conn:
        return {r["version"]: r["status"] for r in list_versions(conn, FAMILY)}


def test_a_good_candidate_is_published_and_a_bad_one_is_refused(target, encoders, tmp_path):  # noqa: F811
    _market(target, encoders, ["v1"])
    df = build_trainset(target, TrainsetConfig(features=V1.refs))
    ranker, _ = train_ranker(df, V1)
    ranker_dir = save(ranker, tmp_path / "ranker")

    embed_texts(target, encoders["good"], EmbedConfig(candidate=True), progress=False)
    apply_features(target)
    assert _status(target) == {1: "published", 2: "candidate"}
    out = publish(target, FAMILY, 2, ranker_dir=ranker_dir)
    gate = out["gate"]
    assert gate["passed"] and gate["against"] == 1 and gate["heldout_rows"] > 0
    assert abs(gate["parity"]["delta_auc"]) <= 0.005
    assert gate["alignment"][FAMILY]["cos_mean"] >= 0.97
    assert _status(target) == {1: "published", 2: "published"}

    embed_texts(target, encoders["bad"], EmbedConfig(candidate=True), progress=False)
    apply_features(target)
    with pytest.raises(GateFailed, match="parity gate failed") as failed:
        publish(target, FAMILY, 3, ranker_dir=ranker_dir)
    assert failed.value.report["failures"]
    assert _status(target) == {1: "published", 2: "published", 3: "candidate"}
    with db.connect(target) as conn:
        (metrics,) = conn.execute("SELECT metrics FROM star.embedding_versions WHERE family = %s AND version = 3",
                                  (FAMILY,)).fetchone()
    assert metrics["gate"]["passed"] is False and metrics["gate"]["alignment"][FAMILY]["cos_mean"] < 0.97

    with pytest.raises(VersionError, match="must read exactly one other vintage"):
        publish(target, FAMILY, 1, ranker_dir=ranker_dir)

    # the thresholds are one GateConfig: a lenient one publishes what the default one refused
    lenient = GateConfig(max_auc_drop=1.0, min_mean=-1.0, min_p5=-1.0)
    out = publish(target, FAMILY, 3, ranker_dir=ranker_dir, gate=lenient)
    assert out["gate"]["passed"] and out["gate"]["config"] == lenient.to_dict()
    assert _status(target)[3] == "published"


def test_the_publish_options_are_the_gate_config_fields():
    """One place for the defaults: every GateConfig field is an option of `star versions publish` with the same
    default and help, so the CLI, publish() and evaluate_gate() cannot drift apart."""
    publish_cmd = typer.main.get_command(app).commands["versions"].commands["publish"]
    options = {p.name: p for p in publish_cmd.params}
    for f in fields(GateConfig):
        assert options[f.name].default == getattr(GateConfig(), f.name), f.name
        assert options[f.name].help == f.metadata["help"], f.name
    assert GateConfig().to_dict() == {"max_auc_drop": 0.005, "min_mean": 0.97, "min_p5": 0.94, "min_overlap": None,
                                      "k": 10}


@pytest.mark.parametrize("option, value, message", [
    ("--min-mean", "1.5", "GateConfig: min_mean=1.5 must lie in [-1.0, 1.0]; pass --min-mean with a value in that "
                          "range"),
    ("--max-auc-drop", "-0.1", "GateConfig: max_auc_drop=-0.1 must lie in [0.0, 1.0]; pass --max-auc-drop"),
    ("--k", "0", "GateConfig: k=0 must be >= 1"),
])
def test_a_gate_threshold_out_of_range_is_one_line_naming_it(tmp_path, option, value, message):
    star = str(Path(sys.executable).with_name("star"))
    done = subprocess.run([star, "versions", "publish", FAMILY, "2", "--ranker", str(tmp_path), option, value],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "STAR_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"})
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
