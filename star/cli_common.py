"""What every `star` subcommand shares: the JSON line it prints, the settings, the database it works on."""

from __future__ import annotations

import json
from datetime import datetime


def _emit(record: dict) -> None:
    print(json.dumps(record, default=str), flush=True)


def _version(value: bool) -> None:
    """`star --version`: the installed distribution's version (importlib.metadata)."""
    if value:
        from importlib.metadata import PackageNotFoundError, version

        import typer

        try:
            print(f"star {version('star')}")
        except PackageNotFoundError:  # a checkout that was never installed
            print("star (not installed; pip install -e . names the version)")
        raise typer.Exit()


def _settings():
    from star.config import Settings

    return Settings.from_env()


_CURRENT = {}  # "target": the database this command works on, named when its server goes away mid-job


def _target():
    """The database of this command. Jobs never start or migrate a server: `star db up` does (and `star demo`),
    so after `star db down` every job stops with one line naming `star db up` instead of restarting it."""
    from star import db

    settings = _settings()
    _CURRENT["target"] = db.require_migrated(db.server_target(settings))
    return _CURRENT["target"]


# SQLSTATEs of a lost server: connection exceptions (08), admin / crash shutdown, cannot connect now
_GONE = ("57P01", "57P02", "57P03")


def _database_failure(exc: BaseException) -> str | None:
    """One line for a PostgreSQL failure that escaped a job (e.g. the server was killed mid-job): the psycopg (or
    SQLAlchemy-wrapped) OperationalError in `exc`'s chain, the database's masked URL and the fix; None otherwise."""
    import psycopg

    seen, error = set(), None
    while exc is not None and id(exc) not in seen and error is None:
        seen.add(id(exc))
        orig = getattr(exc, "orig", None)  # sqlalchemy.exc.DBAPIError wraps the driver's error
        error = next((e for e in (exc, orig) if isinstance(e, psycopg.OperationalError)), None)
        exc = exc.__cause__ or exc.__context__
    if error is None:
        return None
    detail = " ".join(str(error).split()) or type(error).__name__
    where = _where()
    if error.sqlstate is None or error.sqlstate.startswith("08") or error.sqlstate in _GONE:
        return (f"the PostgreSQL server of {where} went away or cannot be reached during the job ({detail}). "
                "Start it again (`star db up`, or check the server of STAR_DATABASE_URL), then re-run the same "
                "command: the jobs are safe to re-run")
    return (f"PostgreSQL ({where}) failed the job: {detail} (SQLSTATE {error.sqlstate}). Fix the cause on the "
            "server (see its log), then re-run the same command: the jobs are safe to re-run")


def _where() -> str:
    """The current database as a masked URL (or, before one was chosen, where the settings point)."""
    from star.config import mask_url

    if "target" in _CURRENT:
        return _CURRENT["target"].masked_url()
    try:
        settings = _settings()
    except Exception:  # the settings themselves are broken: say so without a second traceback
        return "STAR_DATABASE_URL"
    return mask_url(settings.database_url) if settings.database_url else f"the embedded server in {settings.pgdata}"


def _parse_time(value: str | None, default: datetime | None, option: str = "time") -> datetime | None:
    """ISO-8601; a time without a zone is UTC."""
    if value is None:
        return default
    import pandas as pd

    from star.errors import ConfigError

    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        ts = pd.NaT
    if ts is pd.NaT:
        raise ConfigError(f"{option} {value!r} is not a time; write ISO-8601, e.g. 2025-03-01 or "
                          "2025-03-01T09:30:00Z (no zone means UTC)")
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


ENGINE_HELP = "local: this process; ray: a Ray cluster (docs/scale-out.md)"
RAY_ADDRESS_HELP = "the Ray cluster (HOST:6379, ray://HOST:10001, auto); none: a local one with --workers CPUs"
WORKERS_HELP = "parallel workers on the engine"


def _engine(engine, ray_address: str | None, workers: int):
    """--engine / --ray-address / --workers as a star.cluster.EngineConfig (a ConfigError naming a bad one)."""
    from star.cluster import EngineConfig

    return EngineConfig(engine=getattr(engine, "value", engine), address=ray_address, workers=workers)
