"""Alembic environment: the target database comes from star's settings, never from alembic.ini."""

from alembic import context
from sqlalchemy import create_engine, pool

from star.config import Settings
from star.db import server_target

target = context.config.attributes.get("star_target") or server_target(Settings.from_env(), start=False)

engine = create_engine(target.sqlalchemy_url(), poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
