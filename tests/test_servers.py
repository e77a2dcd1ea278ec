"""No hidden servers: a library call never starts the embedded PostgreSQL, only `star db up` (and `star demo`) do and
say so; after `star db down` the other commands stop with one line naming `star db up` instead of restarting it;
`star db status` exits 1 when the server is down; a job does not migrate a database behind the user's back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from star import db
from star.config import Settings
from star.errors import DatabaseError

STAR = str(Path(sys.executable).with_name("star"))


@pytest.fixture
def own_home():
    """A STAR_HOME for a second embedded server (under the session's home: as root the wheel runs the server as its
    own OS user, which cannot enter pytest's private tmp directories)."""
    home = Settings.from_env().home / "scratch" / f"servers-{uuid.uuid4().hex[:8]}"
    home.mkdir(parents=True)
    yield home
    env = {**_env(home)}
    subprocess.run([STAR, "db", "down"], capture_output=True, timeout=120, env=env)  # if a test left it running
    shutil.rmtree(home, ignore_errors=True)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STAR_DATABASE_URL", "XDG_RUNTIME_DIR")}
    return {**env, "STAR_HOME": str(home)}


def _star(args: list[str], home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([STAR, *args], capture_output=True, text=True, timeout=300, env=_env(home))


def _refused(done: subprocess.CompletedProcess, home: Path) -> None:
    errors = [line for line in done.stderr.splitlines() if line.startswith("star: error: ")]
    assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"the embedded PostgreSQL in {home / 'pgdata'}" in errors[0] and "`star db up`" in errors[0]


def test_a_library_call_never_starts_a_server(own_home):
    """The README's old snippet, server_target(Settings.from_env()), started an empty server under STAR_HOME."""
    settings = Settings(home=own_home, database_url=None)
    with pytest.raises(DatabaseError, match=r"does not exist yet .* start it with `star db up`"):
        db.server_target(settings)
    assert not (own_home / "pgdata").exists() and db.embedded_status(settings) is None


def test_db_down_sticks_until_db_up(own_home):
    status = _star(["db", "status"], own_home)
    assert status.returncode == 1 and json.loads(status.stdout)["running"] is False
    _refused(_star(["seed", "--synthetic", "--members", "30", "--jobs", "10"], own_home), own_home)
    assert not (own_home / "pgdata").exists()  # nothing was started or created

    up = _star(["db", "up"], own_home)
    assert up.returncode == 0, up.stderr[-2000:]
    assert f"star: starting the embedded PostgreSQL in {own_home / 'pgdata'}" in up.stderr
    assert "starting" not in _star(["db", "up"], own_home).stderr  # already running: nothing to say
    assert _star(["db", "status"], own_home).returncode == 0

    assert json.loads(_star(["db", "down"], own_home).stdout)["stopped"] is True
    for args in (["online", "member", "1"], ["versions", "list"], ["db", "env"]):
        _refused(_star(args, own_home), own_home)
    status = _star(["db", "status"], own_home)
    assert status.returncode == 1 and json.loads(status.stdout)["running"] is False  # still down


def test_a_job_does_not_migrate_the_database(empty_target):
    done = subprocess.run([STAR, "versions", "list"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "STAR_DATABASE_URL": empty_target.sqlalchemy_url()})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"is at migration none, this code needs {db.head_revision()}; run `star db up`" in done.stderr
    assert db.current_revision(empty_target) is None
