"""Alembic environment: the target database comes from star's settings (STAR_DATABASE_URL, or the running embedded
server: start it with `star db up`), never from a config file.

From the repository root (pyproject.toml's [tool.alembic] names this directory):
    alembic upgrade head | alembic downgrade 0005 | alembic current | alembic check

The schema is written as SQL in versions/ (no SQLAlchemy models), so `alembic check` has no model to compare the
database with: it checks that the database is at the newest revision ("Target database is not up to date."
otherwise) and then reports "No new upgrade operations detected.", since the objects it reflects are left out.
"""

import logging
import sys

from alembic import context, util
from sqlalchemy import MetaData, create_engine, pool

from star.config import Settings
from star.db import server_target
from star.errors import StarError

config = context.config
if config.cmd_opts is not None:  # the `alembic` command line (not `star db up`): say what it does, on stderr
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)-5.5s [%(name)s] %(message)s")
    logging.getLogger("alembic").setLevel(logging.INFO)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def _only_models(obj, name, type_, reflected, compare_to) -> bool:
    """Compare only what a model declares; there are none (see the module docstring)."""
    return not (reflected and compare_to is None)


try:
    target = config.attributes.get("star_target") or server_target(Settings.from_env())
except StarError as exc:  # e.g. the embedded server is down: alembic prints "FAILED: <why and the fix>"
    raise util.CommandError(str(exc)) from None
engine = create_engine(target.sqlalchemy_url(), poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=MetaData(), include_object=_only_models,
                      transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
