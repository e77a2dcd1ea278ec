"""The README's Feast sections run as written: every fenced bash block under "Feast's command line" (in a fresh
shell, like a user's: `eval "$(star db env)"` is in the block) and every python block under "From Python" (in a
shell where `eval "$(star db env)"` ran), at the repository root, against a test database named only by
STAR_DATABASE_URL. Blocks added to those sections later run too."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from star.config import REPO_ROOT

BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(heading: str, lang: str) -> list[str]:
    """The `lang` fenced blocks between `### heading` and the next heading of any level."""
    lines = (REPO_ROOT / "README.md").read_text().splitlines(keepends=True)
    start = lines.index(f"### {heading}\n")
    section, fenced = [], False
    for line in lines[start + 1:]:
        fenced ^= line.startswith("```")
        if not fenced and re.match(r"#{1,3} ", line):  # the next heading (a `#` comment inside a block is not one)
            break
        section.append(line)
    section = "".join(section)
    return [body for kind, body in FENCE.findall(section) if kind == lang]


def _env(url: str) -> dict[str, str]:
    """The user's shell: the venv on PATH, STAR_DATABASE_URL, nothing Feast-specific set yet."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STAR_PG_", "STAR_REGISTRY", "STAR_ONLINE", "STAR_BATCH"))}
    return {**env, "STAR_DATABASE_URL": url, "PATH": f"{BIN}:{env.get('PATH', '')}"}


def _run(args, env, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, **kw)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    return done


@pytest.fixture
def seeded(target):
    env = _env(target.sqlalchemy_url())
    _run([str(BIN / "star"), "seed", "--synthetic", "--members", "30", "--jobs", "10", "--text-length", "short"], env)
    _run([str(BIN / "star"), "text", "embed", "--base"], env)  # text vintage 1: feature_services.py's ranker_v1
    return env


def test_the_extractor_finds_the_sections():
    assert blocks("Feast's command line", "bash") and blocks("From Python", "python")


def test_the_feast_cli_and_python_sections_run_as_written(seeded):
    for block in blocks("Feast's command line", "bash"):
        listed = _run(["bash", "-euo", "pipefail", "-c", block], seeded).stdout
    assert "member_categorical_v1" in listed and "job_text_v1" in listed  # the last block lists the views
    for block in blocks("From Python", "python"):
        out = _run(["bash", "-euo", "pipefail", "-c", 'eval "$(star db env)"; exec python -'], seeded,
                   input=block).stdout
    assert "'member_id': [1]" in out and "'seniority': [None]" not in out and "'seniority': [" in out
    assert "'member_text_embedding_v1__embedding'" in out and "'job_text_embedding_v1__embedding'" in out
