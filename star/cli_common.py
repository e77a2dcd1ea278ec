"""What every `star` subcommand shares: the JSON line it prints, the settings, the database it works on."""

from __future__ import annotations

import json
from datetime import datetime


def _emit(record: dict) -> None:
    print(json.dumps(record, default=str), flush=True)


def _settings():
    from star.config import Settings

    return Settings.from_env()


def _target(start: bool = True):
    from star import db

    settings = _settings()
    return db.up(settings) if start else db.server_target(settings, start=False)


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
