"""`alembic` at the repository root, without -c: pyproject.toml's [tool.alembic] finds migrations/, the database
comes from STAR_DATABASE_URL, each migration is logged, and `alembic check` tells a migrated database from one that
is behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from star import db
from star.config import REPO_ROOT

ALEMBIC = str(Path(sys.executable).with_name("alembic"))


def _alembic(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([ALEMBIC, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_upgrade_and_check_from_the_root(empty_target):
    env = {**os.environ, "STAR_DATABASE_URL": empty_target.sqlalchemy_url()}
    head = db.head_revision()
    up = _alembic(["upgrade", "head"], env)
    assert up.returncode == 0, up.stderr[-3000:]
    assert "Running upgrade  -> 0001" in up.stderr and f"-> {head}," in up.stderr
    assert db.current_revision(empty_target) == head
    check = _alembic(["check"], env)
    assert check.returncode == 0 and "No new upgrade operations detected." in check.stdout + check.stderr
    assert _alembic(["downgrade", "-1"], env).returncode == 0
    behind = _alembic(["check"], env)
    assert behind.returncode != 0 and "Target database is not up to date." in behind.stdout + behind.stderr


def test_a_stopped_embedded_server_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "STAR_DATABASE_URL"}
    done = _alembic(["upgrade", "head"], {**env, "STAR_HOME": str(tmp_path)})
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "FAILED: the embedded PostgreSQL in" in done.stdout and "`star db up`" in done.stdout
    assert not (tmp_path / "pgdata").exists()
