"""Tests run against a real PostgreSQL with pgvector: the project's embedded server, or STAR_DATABASE_URL.

The session migrates one template database; every test that asks for `target` gets a fresh database cloned from
it (CREATE DATABASE ... TEMPLATE), so tests do not depend on order and leave nothing behind.

Feast runs as configured by STAR_FEAST_MODE: `star` (default: STAR's online store and SQL compute engine) or
`stock` (Feast's own postgres online store and local engine), e.g. `STAR_FEAST_MODE=stock pytest tests/test_feast.py`.
"""

from __future__ import annotations

import contextlib
import os
import uuid

import pytest

from star import db
from star.config import Settings


@pytest.fixture(scope="session")
def server():
    settings = Settings.from_env()
    # the fixture may start the embedded server (library calls and jobs never do: star/db.py server_target)
    base = db.start_embedded(settings) if settings.embedded else db.server_target(settings)
    template = base.with_database(f"star_test_template_{os.getpid()}")
    db.drop_database(template)
    db.ensure_database(template)
    db.migrate(template)
    yield base, template.dbname
    db.drop_database(template)


@contextlib.contextmanager
def fresh_database(server, *, migrated: bool = True):
    """A database of its own, cloned from the migrated template (or empty), dropped afterwards."""
    base, template = server
    fresh = base.with_database(f"star_test_{uuid.uuid4().hex[:12]}")
    db.ensure_database(fresh, template=template if migrated else None)
    try:
        yield fresh
    finally:
        db.drop_database(fresh)


@pytest.fixture
def target(server):
    with fresh_database(server) as fresh:
        yield fresh


@pytest.fixture
def empty_target(server):
    """A fresh database with no migrations applied."""
    with fresh_database(server, migrated=False) as fresh:
        yield fresh


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster of 2 CPUs (CI has 2 cores), started once and shared by every Ray test:
    `star.cluster.ray_session` joins it instead of starting its own. Yields ray.cluster_resources()."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()
