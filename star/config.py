"""Settings, read from the environment in one place.

`star`, alembic (`migrations/env.py`) and Feast (`feature_repo/feature_store.yaml`, through the `STAR_PG_*`
variables that `star db env` prints) all take their connection from here, so there is one source of truth:

    STAR_DATABASE_URL  a user's own PostgreSQL with pgvector, e.g. postgresql://user:pw@host:5432/star
                       (unset: the embedded server under STAR_HOME)
    STAR_HOME          where the embedded server keeps its data (default: <repo>/.star)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, parse_qs

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
        try:
            parts = urlsplit(url)
        except ValueError as exc:  # e.g. an unclosed IPv6 bracket: urllib's message names it
            raise ConfigError(f"STAR_DATABASE_URL={mask_url(url)!r} cannot be parsed ({exc}); expected e.g. "
                              "postgresql://user:password@host:5432/star") from None
        try:
            netloc_port = parts.port
        except ValueError:  # not a number, or out of range
            netloc_port = _port(url, parts.netloc.rpartition("@")[2].rpartition(":")[2])
        if parts.scheme.split("+")[0] not in ("postgresql", "postgres"):
            raise ConfigError(
                f"STAR_DATABASE_URL={mask_url(url)!r} is not a PostgreSQL URL; expected e.g. "
                "postgresql://user:password@host:5432/star"
            )
        query = parse_qs(parts.query)
        host = query.get("host", [parts.hostname or ""])[0]
        if not host:
            raise ConfigError(f"STAR_DATABASE_URL={mask_url(url)!r} names no host; add @host:port or "
                              "?host=/socket/dir")
        dbname = unquote(parts.path.lstrip("/")) or DEFAULT_DATABASE
        return cls(host=host, port=_port(url, query.get("port", [netloc_port or 5432])[0]),
                   user=unquote(parts.username or "postgres"), password=unquote(parts.password or ""),
                   dbname=dbname)

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
}


def feast_mode_env() -> dict[str, str]:
    """STAR's online store and compute engine (default), or stock Feast's with STAR_FEAST_MODE=stock; either one
    alone through STAR_ONLINE_STORE / STAR_BATCH_ENGINE (e.g. STAR's store with Feast's `local` engine)."""
    mode = os.environ.get("STAR_FEAST_MODE", "star")
    if mode not in FEAST_MODES:
        raise ConfigError(f"STAR_FEAST_MODE={mode!r}: choose from {', '.join(FEAST_MODES)}")
    return {key: os.environ.get(key, value) for key, value in FEAST_MODES[mode].items()}


@dataclass(frozen=True, kw_only=True)
class Settings:
    home: Path = field(metadata={"help": "embedded server data and lock files"})
    database_url: str | None = field(metadata={"help": "external server; None means the embedded one"})
    feature_repo: Path = field(metadata={"help": "the Feast repository (feature_store.yaml)"})
    database: str = DEFAULT_DATABASE

    @classmethod
    def from_env(cls) -> "Settings":
        home = Path(os.environ.get("STAR_HOME", REPO_ROOT / ".star")).resolve()
        url = os.environ.get("STAR_DATABASE_URL") or None
        database = DbTarget.from_url(url).dbname if url else DEFAULT_DATABASE
        repo = Path(os.environ.get("STAR_FEATURE_REPO", REPO_ROOT / "feature_repo")).resolve()
        return cls(home=home, database_url=url, feature_repo=repo, database=database)

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
