"""The `feast` command line on feature_repo/: without the variables feature_store.yaml reads (STAR_DATABASE_URL alone,
or nothing at all) it stops with one line naming the exact fix, no traceback; after `eval "$(star db env)"` it
applies and lists the views of a database named only by STAR_DATABASE_URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from star.config import REPO_ROOT

BIN = Path(sys.executable).parent
OURS = ("STAR_PG_", "STAR_REGISTRY", "STAR_ONLINE", "STAR_BATCH", "STAR_DATABASE_URL")


def _feast(args: list[str], **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(OURS)}
    return subprocess.run([str(BIN / "feast"), "-c", "feature_repo", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300, env={**base, **env})


@pytest.mark.parametrize("url, fix", [
    (None, 'run `star db up` and `eval "$(star db env)"` first'),
    ("postgresql://u:s3cret-Pw@127.0.0.1:1/star", 'run `eval "$(star db env)"` first: it exports them for '
                                                  "STAR_DATABASE_URL"),
])
def test_without_the_variables_feast_says_what_to_run(url, fix):
    for args in (["feature-views", "list"], ["apply"]):
        done = _feast(args, **({"STAR_DATABASE_URL": url} if url else {}))
        lines = done.stderr.strip().splitlines()
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
        assert len(lines) == 1 and lines[0].startswith("Error: feature_repo/feature_store.yaml needs ")
        assert "STAR_PG_PORT" in lines[0] and fix in lines[0] and "s3cret-Pw" not in done.stderr
        assert "star feast" not in lines[0]  # no such command


def test_after_star_db_env_feast_applies_and_lists_the_views(target, tmp_path):
    env = {"STAR_DATABASE_URL": target.sqlalchemy_url(), "PATH": f"{BIN}:{os.environ['PATH']}"}
    seed = subprocess.run([str(BIN / "star"), "seed", "--synthetic", "--members", "20", "--jobs", "5", "--text-length",
                           "short"], capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert seed.returncode == 0, seed.stderr[-2000:]
    script = 'eval "$(star db env)" && feast -c feature_repo apply && feast -c feature_repo feature-views list'
    base = {k: v for k, v in os.environ.items() if not k.startswith(OURS)}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, env={**base, **env})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "member_categorical_v1" in done.stdout and "job_ids_v1" in done.stdout
