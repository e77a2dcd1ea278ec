"""What the benchmarks share: one JSON line per measurement, and a fresh database of their own on the server."""

from __future__ import annotations

import json

from star import db
from star.config import DbTarget, Settings


def emit(record: dict) -> dict:
    print(json.dumps(record, default=str), flush=True)
    return record


def fresh_database(name: str, settings: Settings | None = None) -> DbTarget:
    """Drop and re-create database `name` on the configured server, migrated; the benchmark drops it at the end."""
    target = db.server_target(settings or Settings.from_env()).with_database(name)
    db.drop_database(target)
    db.ensure_database(target)
    db.migrate(target)
    return target
