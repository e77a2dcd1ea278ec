"""The command line and its database: no password is ever printed, and a bad URL or a server that goes away mid-job
is one `star: error:` line naming it and the fix (exit code 2, no traceback)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from star import db
from star.config import DbTarget, Settings

STAR = str(Path(sys.executable).with_name("star"))


def _star(args: list[str], url: str | None, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "STAR_DATABASE_URL"}
    return subprocess.run([STAR, *args], capture_output=True, text=True, timeout=300,
                          env={**base, **({"STAR_DATABASE_URL": url} if url else {}), **env})


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    errors = [line for line in done.stderr.splitlines() if line.startswith("star: error: ")]
    assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return errors[0]


def test_db_up_and_status_print_the_url_with_its_password_masked(empty_target):
    secret = empty_target.password or "s3cret-Pw"
    target = replace(empty_target, password=secret)  # the embedded server trusts its socket: any password works
    for args in (["db", "up"], ["db", "status"]):
        done = _star(args, target.sqlalchemy_url())
        assert done.returncode == 0, done.stderr[-2000:]
        assert secret not in done.stdout + done.stderr
        assert json.loads(done.stdout.splitlines()[-1])["url"].startswith(f"postgresql+psycopg://{target.user}:***@")


def test_the_demo_prints_its_database_url_masked(empty_target, monkeypatch):
    from star.pipeline import demo

    secret = empty_target.password or "s3cret-Pw"
    monkeypatch.setenv("STAR_DATABASE_URL", replace(empty_target, password=secret).sqlalchemy_url())
    lines = []

    class Enough(Exception):
        pass

    def first_line_only(record):
        lines.append(json.dumps(record, default=str))
        raise Enough  # the demo's first line is all this test needs

    with pytest.raises(Enough):
        demo(members=20, jobs=5, text=False, graph=False, emit=first_line_only)
    assert json.loads(lines[0])["job"] == "db up" and ":***@" in lines[0] and secret not in lines[0]


@pytest.mark.parametrize("url, message", [
    ("mysql://root:s3cret-Pw@localhost/star", "STAR_DATABASE_URL='mysql://root:***@localhost/star' is not a "
                                              "PostgreSQL URL"),
    ("postgresql://u:s3cret-Pw@localhost:abc/star", "STAR_DATABASE_URL='postgresql://u:***@localhost:abc/star' has "
                                                    "port 'abc', which is not a TCP port number; write it as "
                                                    "host:5432"),
    ("postgresql://u:s3cret-Pw@localhost:99999/star", "has port '99999', which is not a TCP port number"),
])
def test_a_bad_url_is_one_line_with_its_password_masked(url, message):
    for args in (["db", "up"], ["seed", "--synthetic"]):
        done = _star(args, url)
        assert message in _one_error_line(done) and "s3cret-Pw" not in done.stdout + done.stderr


def _wait_for_lock_wait(target: DbTarget, job: subprocess.Popen, timeout: float = 180) -> None:
    with db.connect(target.with_database("postgres"), autocommit=True) as conn:
        deadline = time.time() + timeout
        while time.time() < deadline and job.poll() is None:
            if conn.execute("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE "
                            "'LOCK TABLE star.members%'").fetchone():
                return
            time.sleep(0.2)
    job.kill()
    raise AssertionError(f"the job never waited on the lock: {job.communicate()[1][-2000:]}")


@pytest.fixture
def own_home():
    """A STAR_HOME for a second embedded server, beside the session's (as root the wheel runs the server as its own
    OS user, which cannot enter pytest's private tmp directories)."""
    home = Settings.from_env().home / "scratch" / f"killed-{uuid.uuid4().hex[:8]}"
    home.mkdir(parents=True)
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_a_server_killed_mid_job_is_one_line_saying_it_went_away(own_home):
    """A separate embedded server: `star seed` waits on a lock this test holds, the server dies (SIGQUIT to the
    postmaster: an immediate shutdown, as `pg_ctl stop -m immediate`), the job says so in one line."""
    env = {k: v for k, v in os.environ.items() if k not in ("STAR_DATABASE_URL", "XDG_RUNTIME_DIR")}
    env["STAR_HOME"] = str(own_home)
    up = subprocess.run([STAR, "db", "up"], capture_output=True, text=True, timeout=300, env=env)
    assert up.returncode == 0, up.stderr[-2000:]
    target = DbTarget.from_url(json.loads(up.stdout.splitlines()[-1])["url"])
    holder = db.connect(target)
    holder.execute("LOCK TABLE star.members IN ACCESS EXCLUSIVE MODE")  # the job's load waits here, connected
    job = subprocess.Popen([STAR, "seed", "--synthetic", "--members", "30", "--jobs", "10"], env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_lock_wait(target, job)
        postmaster = int((own_home / "pgdata" / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGQUIT)
        _, stderr = job.communicate(timeout=120)
    finally:
        job.kill()
        holder.close()
        subprocess.run([STAR, "db", "down"], capture_output=True, timeout=120, env=env)  # if it still runs
    line = _one_error_line(subprocess.CompletedProcess(job.args, job.returncode, "", stderr))
    assert f"the PostgreSQL server of {target.masked_url()} went away" in line
    assert "`star db up`" in line and "re-run the same command" in line


def test_db_up_creates_a_missing_database_on_your_own_server(server):
    """`star db up` with STAR_DATABASE_URL naming a database that does not exist yet creates and migrates it; a role
    the server does not know is one line pointing at STAR_DATABASE_URL, not a loop back to `star db up`."""
    base, _ = server
    fresh = base.with_database(f"star_test_{uuid.uuid4().hex[:12]}")
    try:
        done = _star(["db", "up"], fresh.sqlalchemy_url())
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"created database {fresh.dbname!r}" in done.stderr
        assert json.loads(done.stdout.splitlines()[-1])["revision"] == db.head_revision()
        again = _star(["db", "up"], fresh.sqlalchemy_url())
        assert again.returncode == 0 and "created database" not in again.stderr
    finally:
        db.drop_database(fresh)
    line = _one_error_line(_star(["db", "up"], replace(fresh, user="no_such_role_x").sqlalchemy_url()))
    assert "no_such_role_x" in line and "STAR_DATABASE_URL" in line and "created" not in line
