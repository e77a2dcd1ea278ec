"""`star report`: one HTML page from what the registry and the runs stored, looked at in headless Chromium; on an
empty database it says what to run instead of failing; its bar plots never cut bars off."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from star import pipeline
from star.graph.model import GNNConfig
from star.graph.train import GraphTrainConfig
from star.pipeline import apply_features
from star.ranker import save, train_ranker
from star.report.plots import _pyplot, grouped_bars
from star.store.trainset import TrainsetConfig, build_trainset
from star.text.config import TextModelConfig, TrainConfig
from star.text.embed import EmbedConfig, embed_texts
from star.versions.publish import publish
from star.versions.retire import retire
from tests import browser
from tests.test_ranker import FAMILIES, V1, _market, encoders  # noqa: F401  (encoders: module fixture)
from tests.text_models import one_thread  # noqa: F401  (autouse fixture)

STAR = str(Path(sys.executable).with_name("star"))
SECTIONS = ("Table-2 analogue", "Table-4 analogue", "lineage and status over time", "parity gate, per hop",
            "Serving benchmark")


def _report(target, home: Path, out: Path, *extra: str) -> dict:
    done = subprocess.run([STAR, "report", "--out", str(out), *extra], capture_output=True, text=True, timeout=300,
                          cwd=home.parent, env={**os.environ, "STAR_DATABASE_URL": target.sqlalchemy_url(),
                                                "STAR_HOME": str(home)})
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["job"] == "report" and Path(record["path"]) == (out / "index.html").resolve()
    return record


def _images(dom: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', dom)


def test_report_shows_tables_and_plots_of_every_run_and_vintage(target, encoders, tmp_path, monkeypatch):  # noqa: F811
    home = tmp_path / "home"
    monkeypatch.setenv("STAR_HOME", str(home))  # the training runs land here, where `star report` reads them
    _market(target, encoders, ["v1"])  # text v1 of both families
    ranker, _ = train_ranker(build_trainset(target, TrainsetConfig(features=V1.refs)), V1)
    ranker_dir = save(ranker, tmp_path / "ranker")
    embed_texts(target, encoders["good"], EmbedConfig(candidate=True), progress=False)
    apply_features(target)
    for family in FAMILIES.values():  # v2 through the parity gate: a map v2 -> v1 and a gate report each
        assert publish(target, family, 2, ranker_dir=ranker_dir)["gate"]["passed"]
    assert retire(target, FAMILIES["member"], 1, source=2)["served_from"] == 2
    model_cfg = TextModelConfig(model_dir=encoders["v1"].cfg.model_dir, pooling="mean", precision="fp32",
                                head_hidden=(16,), max_length={"job": 32, "member": 32, "resume": 32})
    trained = pipeline.text_train(target, model_cfg=model_cfg, train_cfg=TrainConfig(
        max_steps=2, per_device_batch=8, grad_accum=1, gradient_checkpointing=False), progress=False)
    graph = pipeline.graph_train(target, ablation=True, progress=False,
                                 model_cfg=GNNConfig(hidden=16, out_dim=24, heads=2, id_dim=8, cat_dim=4),
                                 train_cfg=GraphTrainConfig(epochs=1, batch_size=64, sampler="uniform",
                                                            fanouts=(5, 5)))
    pipeline.graph_embed(target, progress=False)

    out = tmp_path / "report"
    record = _report(target, home, out)
    assert record["text_runs"] == 1 and record["graph_runs"] == 1 and record["serving"] is True
    assert record["maps"] == 2 and record["gate_reports"] == 2 and record["vintages"] == 6
    dom = browser.dump_dom((out / "index.html").as_uri())
    text = browser.visible_text(dom)
    for section in SECTIONS:
        assert section in text, section
    assert "no text training run" not in text and "no graph training run" not in text and "no parity" not in text
    assert dom.count("<table") >= 6
    assert sorted(_images(dom)) == ["compat.png", "graph_table4.png", "parity.png", "serving.png",
                                    "text_table2.png", "vintages.png"]
    for name in _images(dom):
        facts = browser.png_facts(out / name)  # fails unless a real PNG
        assert facts["width"] >= 300 and facts["colours"] > 20, (name, facts)
    # Table 2: every mode trained; Table 4: every variant, cold start and pair counts
    for mode in ("frozen_head", "bce", "bce+contrastive"):
        assert mode in text
    comparison = json.loads((Path(trained["model"]).parent / "compare" / "comparison.json").read_text())
    assert f"{comparison['val_rows']} validation pairs" in text
    for row in graph["later_window"].values():
        for task, m in row.items():
            assert task in text and f"{m['pairs']:,}" in text
    assert "cold-start AUC" in text and "GNN" in text
    # vintages with lineage and status, the retired one naming where it is served from
    assert "member_text_embedding_v1" in text and "retired" in text and "published" in text
    assert "member_graph_embedding_v1" in text and str(Path(graph["model"])) in text  # lineage: the model dir
    assert "v2 -> v1" in text and "AUC translated" in text
    shot = browser.screenshot((out / "index.html").as_uri(), tmp_path / "report.png", size=(1400, 4000))
    assert browser.png_facts(shot)["colours"] > 50
    browser.keep_screenshot(shot, "star-report.png")


def test_report_on_an_empty_database_says_what_is_missing(target, tmp_path):
    out, home = tmp_path / "report", tmp_path / "home"
    # a run trained against another database that shares this STAR_HOME: not in this database's star.text_models
    other = home / "models" / "text" / "20240101T000000Z" / "model"
    other.mkdir(parents=True)
    (other / "star_text_model.json").write_text(json.dumps({"metrics": {"val_auc": 0.71, "val_rows": 12},
                                                            "train_config": {"mode": "bce+contrastive"}}))
    record = _report(target, home, out, "--bench", str(tmp_path / "none.json"))
    assert record["vintages"] == 0 and record["serving"] is False and record["text_runs"] == 0
    dom = browser.dump_dom((out / "index.html").as_uri())
    text = browser.visible_text(dom)
    for missing in ("no text training run recorded for this database; run `star text train`",
                    f"1 text training run(s) under {home}/models/text were trained against another database",
                    "no graph training run recorded; run `star graph train --ablation`",
                    "no embedding vintage in the registry; run `star text embed` or `star graph embed`",
                    "no compatibility map stored", "no parity-gate report stored",
                    f"no serving benchmark at {tmp_path / 'none.json'}"):
        assert missing in text, missing
    assert _images(dom) == [] and not list(out.glob("*.png"))
    done = subprocess.run([STAR, "report", "--out", str(out / "index.html")], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "STAR_DATABASE_URL": target.sqlalchemy_url()})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"--out {out / 'index.html'} is a file, not a directory; pass a directory" in done.stderr


@pytest.mark.parametrize("values", [[0.52, 0.55], [0.97, 0.99], [-0.2, 0.4], [None, 0.6]])
def test_bar_plots_start_at_zero_and_label_value_and_count(values):
    plt = _pyplot()
    fig, ax = plt.subplots()
    grouped_bars(ax, ["a", "b"], [("all", values, [120, 7])], ylabel="AUC", count_name="pairs")
    low, high = ax.get_ylim()
    labels = [t.get_text() for t in ax.texts]
    plt.close(fig)
    assert low <= min(0.0, *(v for v in values if v is not None)) and high >= max(v for v in values if v is not None)
    assert any("pairs=120" in t for t in labels) and any("pairs=7" in t for t in labels)
    for v in values:
        assert any(("n/a" if v is None else f"{v:.3f}") in t for t in labels)


def test_the_demo_ends_by_writing_the_report(empty_target, tmp_path, monkeypatch):
    from star.pipeline import demo

    monkeypatch.setenv("STAR_DATABASE_URL", empty_target.sqlalchemy_url())
    monkeypatch.setenv("STAR_HOME", str(tmp_path / "home"))
    lines = []
    done = demo(members=20, jobs=5, text=False, graph=False, out=tmp_path / "trainset.parquet",
                report=tmp_path / "report", emit=lines.append)
    assert lines[-1]["job"] == "report" and done["report"] == lines[-1]["path"]
    page = Path(done["report"])
    assert page == (tmp_path / "report" / "index.html").resolve() and "STAR report" in page.read_text()
