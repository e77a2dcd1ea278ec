"""Options of `star` that take one of a fixed set of values are Typer Enums: listed in --help and refused while the
command line is parsed (exit 2, before any database is looked for); `star --version`; the settings class reads
STAR_* and never shows the database password."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from star import cli_choices
from star.config import Settings

STAR = str(Path(sys.executable).with_name("star"))


def _star(args: list[str], **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "STAR_DATABASE_URL"}
    return subprocess.run([STAR, *args], capture_output=True, text=True, timeout=120,
                          env={**base, "COLUMNS": "200", **env})


def _flat(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


BAD = {  # args, the option as Typer names it, the allowed values
    "online entity": (["online", "foo", "1"], "'entity'", "'member', 'job'"),
    "embed entity": (["text", "embed", "--base", "--entity", "foo"], "'--entity'", "'member', 'job'"),
    "graph entity": (["graph", "embed", "--entity", "foo"], "'--entity'", "'member', 'job'"),
    "text length": (["seed", "--synthetic", "--text-length", "medium"], "'--text-length'", "'long', 'short'"),
    "demo text length": (["demo", "--text-length", "medium"], "'--text-length'", "'long', 'short'"),
    "pooling": (["text", "train", "--pooling", "max"], "'--pooling'", "'auto', 'mean', 'cls_layers', 'last_token'"),
    "mode": (["text", "train", "--mode", "mse"], "'--mode'", "'frozen_head', 'bce', 'bce+contrastive'"),
    "precision": (["text", "train", "--precision", "fp16"], "'--precision'", "'auto', 'fp32', 'bf16'"),
    "prompts": (["text", "embed", "--base", "--prompts", "e5"], "'--prompts'", "'none', 'star'"),
    "sampler": (["graph", "train", "--sampler", "random"], "'--sampler'", "'adaptive', 'uniform', 'temporal'"),
    "consumer kind": (["versions", "consumer", "member_text_embedding", "1", "r", "--kind", "bogus"], "'--kind'",
                      "'ranker', 'feature_service', 'job', 'other'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_value_outside_the_choices_is_refused_while_parsing(case, tmp_path):
    args, option, allowed = BAD[case]
    done = _star(args, STAR_HOME=str(tmp_path))  # no server there: only the parser can answer
    flat = _flat(done.stderr)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"Invalid value for {option}" in flat and f"is not one of {allowed}" in flat, flat
    assert not (tmp_path / "pgdata").exists()


def test_help_lists_the_choices():
    flat = _flat(_star(["text", "train", "--help"]).stdout).replace(" ", "")
    assert "frozen_head|bce|bce+contrastive" in flat and "auto|fp32|bf16" in flat


def test_the_choices_are_the_ones_the_modules_check():
    from star.data.synthetic_drafts import TEXT_LENGTHS
    from star.text.config import MODES, POOLINGS, PRECISIONS
    from star.versions.lifecycle import CONSUMER_KINDS

    for enum, values in ((cli_choices.TextLength, TEXT_LENGTHS), (cli_choices.TrainMode, MODES),
                         (cli_choices.Pooling, POOLINGS), (cli_choices.Precision, PRECISIONS),
                         (cli_choices.ConsumerKind, CONSUMER_KINDS)):
        assert [e.value for e in enum] == list(values)


def test_version():
    done = _star(["--version"])
    assert done.returncode == 0 and done.stdout.strip() == f"star {version('star')}"


def test_settings_read_star_variables_and_hide_the_password(monkeypatch, tmp_path):
    monkeypatch.setenv("STAR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STAR_FEATURE_REPO", str(tmp_path / "repo"))
    monkeypatch.setenv("STAR_DATABASE_URL", "postgresql://u:s3cret-Pw@db.example:6543/market")
    settings = Settings.from_env()
    assert (settings.home, settings.feature_repo) == (tmp_path / "home", tmp_path / "repo")
    assert settings.database == "market" and not settings.embedded
    assert "s3cret-Pw" not in repr(settings) + str(settings)
    monkeypatch.setenv("STAR_DATABASE_URL", "")
    assert Settings.from_env().embedded
