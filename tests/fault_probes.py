"""When to SIGKILL a `star` process in tests/test_faults.py: probes polled on the database (a vintage's status or
registry mark, rows in its staging / own / online table, the process's own running statement, a delay)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import psycopg

from tests.faults import conn_of, exists, is_table

@dataclass
class Probe:
    """When to kill: `value` is polled on a database connection; the process dies when `fires(at launch, now,
    seconds since launch)`."""

    label: str
    value: Callable[[psycopg.Connection, str], Any] = lambda conn, app: None
    fires: Callable[[Any, Any, float], bool] = lambda base, now, t: False


def after(seconds: float) -> Probe:
    return Probe(f"after {seconds:.2f} s", fires=lambda b, n, t: t >= seconds)


def status_becomes(family: str, version: int, status: str) -> Probe:
    def value(conn, app):
        r = conn.execute("SELECT status FROM star.embedding_versions WHERE family = %s AND version = %s",
                         (family, version)).fetchone()
        return r and r[0]
    return Probe(f"{family} v{version} became {status}", value, lambda b, n, t: n == status and b != status)


def marked(family: str, version: int, mark: str) -> Probe:
    """config ? mark in the vintage's registry row (e.g. retire_pending: a retire's plan committed)."""
    def value(conn, app):
        r = conn.execute("SELECT config ? %s FROM star.embedding_versions WHERE family = %s AND version = %s",
                         (mark, family, version)).fetchone()
        return bool(r and r[0])
    return Probe(f"{family} v{version} marked {mark}", value, lambda b, n, t: n and not b)


def marked_for(family: str, version: int, mark: str, seconds: float) -> Probe:
    """`seconds` after this run set config.mark (e.g. online_pending: rows moved, Feast not yet serving them;
    retire_pending: a retire's plan committed): a point inside a window that lasts, rather than an instant."""
    seen: dict[str, float] = {}

    def value(conn, app):
        r = conn.execute("SELECT config ? %s FROM star.embedding_versions WHERE family = %s AND version = %s",
                         (mark, family, version)).fetchone()
        if r and r[0]:
            seen.setdefault("t", time.monotonic())
        return bool(r and r[0])
    return Probe(f"{seconds:.2f} s after {family} v{version} got {mark}", value,
                 lambda b, n, t: bool(n and not b and time.monotonic() - seen["t"] >= seconds))


def rows_grow(family: str, version: int) -> Probe:
    """Rows moved into the vintage's own table (published in SQL or, awaiting Feast, still building)."""
    table = f"star.{family}_v{version}"

    def value(conn, app):
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] if is_table(conn, table) else -1
    return Probe(f"rows in {table}", value, lambda b, n, t: n > max(b, 0))


def version_appears(family: str) -> Probe:
    def value(conn, app):
        return conn.execute("SELECT count(*) FROM star.embedding_versions WHERE family = %s", (family,)).fetchone()[0]
    return Probe(f"a new {family} vintage (building)", value, lambda b, n, t: n > b)


MARKET = ("members", "jobs", "member_history", "job_history", "text_snapshots", "attribute_edges", "interactions",
          "id_features")


def market_counts(target) -> dict[str, int]:
    with conn_of(target) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM star.{t}").fetchone()[0] for t in MARKET}


def staging_grows(family: str, version: int) -> Probe:
    table = f"star.{family}_v{version}__staging"

    def value(conn, app):
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] if exists(conn, table) else -1
    return Probe(f"rows in {table}", value, lambda b, n, t: n > max(b, 0))


def busy(pattern: str, label: str | None = None) -> Probe:
    """The process's own server backend is running a statement matching `pattern` (ILIKE)."""
    def value(conn, app):
        return conn.execute("SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = %s AND "
                            "state = 'active' AND query ILIKE %s", (app, pattern)).fetchone()[0]
    return Probe(label or f"running {pattern}", value, lambda b, n, t: bool(n))
