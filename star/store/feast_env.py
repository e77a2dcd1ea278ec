"""The `feast` command line and feature_repo/feature_store.yaml: which variables the file needs, and one clear error
when they are missing.

Feast 0.67 expands ${VAR} in feature_store.yaml (os.path.expandvars: no defaults) before it imports anything of
ours, and leaves an unset ${VAR} as it is. The offline store's config class is the first STAR code that sees the
result (star/store/offline_store.py), so it calls check_expanded(): an unset STAR_PG_* is then one line naming the
fix, not a pydantic error about '${STAR_PG_PORT}'. The error is also a click exception, so the `feast` command prints
it as `Error: ...` without a traceback.
"""

from __future__ import annotations

import os
import re

import click

from star.errors import FeatureRepoError

_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


class FeastEnvError(FeatureRepoError, click.ClickException):
    """feature_store.yaml names a variable that is not set."""


def fix() -> str:
    """The exact commands that set the variables, for the database this shell points at."""
    if os.environ.get("STAR_DATABASE_URL"):
        return ('run `eval "$(star db env)"` first: it exports them for STAR_DATABASE_URL (the `feast` command reads '
                "the file before any STAR code runs, so STAR_DATABASE_URL alone cannot fill it)")
    return ('run `star db up` and `eval "$(star db env)"` first (the embedded server), or set STAR_DATABASE_URL to '
            'your own server and run `eval "$(star db env)"`')


def missing_error(names: list[str]) -> FeastEnvError:
    return FeastEnvError(f"feature_repo/feature_store.yaml needs {', '.join(names)}, which "
                         f"{'is' if len(names) == 1 else 'are'} not set; {fix()}")


def check_expanded(values: object) -> object:
    """`values` (a config section of feature_store.yaml, as Feast expanded it), or FeastEnvError naming every
    ${VAR} left unexpanded in it."""
    if isinstance(values, dict):
        names = sorted({name for value in values.values() if isinstance(value, str)
                        for name in _PLACEHOLDER.findall(value)})
        if names:
            raise missing_error(names)
    return values
