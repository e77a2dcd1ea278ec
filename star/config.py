"""Settings, read from the environment in one place (pydantic-settings, prefix STAR_).

`star`, alembic (`migrations/env.py`) and Feast (`feature_repo/feature_store.yaml`, through the `STAR_PG_*`
variables that `star db env` prints) all take their connection from here, so there is one source of truth:

    STAR_DATABASE_URL  a user's own PostgreSQL with pgvector, e.g. postgresql://user:pw@host:5432/star
                       (unset: the embedded server under STAR_HOME, which only `star db up` / `star demo` start)
    STAR_HOME          where the embedded server keeps its data (default: <repo>/.star)
    STAR_FEATURE_REPO  the Feast repository (default: <repo>/feature_repo)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from star.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE = "star"
FEAST_PROJECT = "star"


def mask_url(url: str) -> str:
    """`url` with its password shown as ***: user:secret@host -> user:***@host, and ?password=... -> ***.

    Used for every URL that is printed or put into a message. When in doubt (an '@' in the query string) it masks
    too much rather than too little."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        userinfo, _, hostpart = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        if colon:
            url = f"{scheme}://{user}:***@{hostpart}"
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url)


def _port(url: str, value) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = -1
    if not 0 < port < 65536:
        raise ConfigError(f"STAR_DATABASE_URL={mask_url(url)!r} has port {value!r}, which is not a TCP port "
                          "number; write it as host:5432 (or ?port=5432 with ?host=/socket/dir)")
    return port


@dataclass(frozen=True, kw_only=True)
class DbTarget:
    """Where one database lives. `host` may be a Unix-socket directory (the embedded server listens only there)."""

    host: str
    port: int = 5432
    user: str = "postgres"
    password: str = field(default="", repr=False)
    dbname: str = DEFAULT_DATABASE

    @classmethod
    def from_url(cls, url: str) -> "DbTarget":
        """Parsed by SQLAlchemy's make_url; ?host=/socket/dir&port=N (libpq's spelling) select a Unix socket."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            parts = make_url(url)
        except ValueError:  # the port is not a number (make_url's int() failed): name it
            _port(url, url.partition("://")[2].rpartition("@")[2].partition("/")[0].rpartition(":")[2])
            raise ConfigError(f"STAR_DATABASE_URL={mask_url(url)!r} cannot be parsed; expected e.g. "
                              "postgresql://user:password@host:5432/star") from None
        except ArgumentError:
            parts = None
        if parts is None or parts.get_backend_name() not in ("postgresql", "postgres"):
            raise ConfigError(
                f"STAR_DATABASE_URL={mask_url(url)!r} is not a PostgreSQL URL; expected e.g. "
                "postgresql://user:password@host:5432/star"
            )
        query = {key: value if isinstance(value, str) else value[0] for key, value in parts.query.items()}
        host = query.get("host") or parts.host or ""
        if not host:
            raise ConfigError(f"STAR_DATABASE_URL={mask_url(url)!r} names no host; add @host:port or "
                              "?host=/socket/dir")
        return cls(host=host, port=_port(url, str(query.get("port", parts.port or 5432))),
                   user=parts.username or "postgres", password=parts.password or "",
                   dbname=parts.database or DEFAULT_DATABASE)

    def with_database(self, dbname: str) -> "DbTarget":
        return replace(self, dbname=dbname)

    def conninfo(self) -> str:
        """A libpq keyword string for psycopg."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(host=self.host, port=self.port, user=self.user, password=self.password or None,
                             dbname=self.dbname, sslmode="prefer" if not self.host.startswith("/") else "disable")

    def sqlalchemy_url(self) -> str:
        auth = quote(self.user, safe="") + (":" + quote(self.password, safe="") if self.password else "")
        if self.host.startswith("/"):
            return f"postgresql+psycopg://{auth}@/{self.dbname}?host={self.host}&port={self.port}"
        return f"postgresql+psycopg://{auth}@{self.host}:{self.port}/{self.dbname}"

    def masked_url(self) -> str:
        """sqlalchemy_url() with the password shown as *** (for output and messages)."""
        return mask_url(self.sqlalchemy_url())

    def feast_env(self) -> dict[str, str]:
        """The variables `feature_repo/feature_store.yaml` expands."""
        return {
            "STAR_PG_HOST": self.host,
            "STAR_PG_PORT": str(self.port),
            "STAR_PG_DATABASE": self.dbname,
            "STAR_PG_USER": self.user,
            "STAR_PG_PASSWORD": self.password,
            "STAR_PG_SSLMODE": "disable" if self.host.startswith("/") else os.environ.get("STAR_PG_SSLMODE", "prefer"),
            "STAR_REGISTRY_URL": self.sqlalchemy_url(),
            **feast_mode_env(),
        }


FEAST_MODES = {  # STAR_FEAST_MODE -> what feature_store.yaml's online_store.type / batch_engine.type expand to
    "star": {"STAR_ONLINE_STORE": "star.store.online_store.StarPostgreSQLOnlineStore",
             "STAR_BATCH_ENGINE": "star.store.engine.StarSQLComputeEngine"},
    "stock": {"STAR_ONLINE_STORE": "postgres", "STAR_BATCH_ENGINE": "local"},
    # STAR's store, each view's latest rows computed in slices on Ray (STAR_RAY_ADDRESS, STAR_RAY_WORKERS)
    "ray": {"STAR_ONLINE_STORE": "star.store.online_store.StarPostgreSQLOnlineStore",
            "STAR_BATCH_ENGINE": "star.store.ray_engine.StarRayComputeEngine"},
}


def feast_mode_env() -> dict[str, str]:
    """STAR's online store and compute engine (default), or stock Feast's with STAR_FEAST_MODE=stock; either one
    alone through STAR_ONLINE_STORE / STAR_BATCH_ENGINE (e.g. STAR's store with Feast's `local` engine)."""
    mode = os.environ.get("STAR_FEAST_MODE", "star")
    if mode not in FEAST_MODES:
        raise ConfigError(f"STAR_FEAST_MODE={mode!r}: choose from {', '.join(FEAST_MODES)}")
    return {key: os.environ.get(key, value) for key, value in FEAST_MODES[mode].items()}


class Settings(BaseSettings):
    """STAR_* environment variables (pydantic-settings, env prefix STAR_). The database URL may hold a password: it
    is left out of repr() and printed only through mask_url."""

    model_config = SettingsConfigDict(env_prefix="STAR_", frozen=True, extra="ignore")

    home: Path = Field(default=REPO_ROOT / ".star", description="STAR_HOME: embedded server data, models, lock files")
    database_url: str | None = Field(default=None, repr=False,
                                     description="STAR_DATABASE_URL: your own server; unset means the embedded one")
    feature_repo: Path = Field(default=REPO_ROOT / "feature_repo",
                               description="STAR_FEATURE_REPO: the Feast repository (feature_store.yaml)")

    @field_validator("database_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value):
        return value or None

    @field_validator("home", "feature_repo", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.resolve()

    @model_validator(mode="after")
    def _parse_url(self) -> "Settings":
        if self.database_url is not None:
            DbTarget.from_url(self.database_url)  # a ConfigError naming the bad part, before anything runs
        return self

    @classmethod
    def from_env(cls) -> "Settings":
        return cls()

    @property
    def database(self) -> str:
        """The database name: STAR_DATABASE_URL's, else "star" on the embedded server."""
        return DbTarget.from_url(self.database_url).dbname if self.database_url else DEFAULT_DATABASE

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def text_models(self) -> Path:
        """Where `star text train` saves adapters (one directory per run) and `star text embed` looks."""
        return self.home / "models" / "text"

    @property
    def graph_models(self) -> Path:
        """Where `star graph train` saves models (one directory per run) and `star graph embed` looks."""
        return self.home / "models" / "graph"
