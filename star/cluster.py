"""Where a heavy step runs: `local` (this process) or `ray` (a Ray cluster: `ray start --head` on a machine, or a
local one started here). One place connects to Ray, so every engine path gives the same clear errors and records the
same lineage (`engine`, `workers`, `ray_address`).

    with ray_session(EngineConfig(engine="ray", address=None, workers=2)) as info:   # info: lineage dict
        ...ray.data / ray actors...

Ray is imported only here and in the engine modules that run on it, never by the local path.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Iterator

from star.errors import ConfigError, StarError

ENGINES = ("local", "ray")


class ClusterError(StarError):
    """The Ray cluster cannot be reached, or lost a worker for good."""


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    engine: str = field(default="local", metadata={"help": "local (this process) or ray (a Ray cluster)"})
    address: str | None = field(default=None, metadata={
        "help": "Ray cluster address (ray://host:10001 or host:6379, or 'auto' for the one `ray start` left "
                "running); none: start a local cluster for this job, with `workers` CPUs"})
    workers: int = field(default=2, metadata={"help": "parallel workers (actors / processes) on the engine"})

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ConfigError(f"engine={self.engine!r}: choose from {', '.join(ENGINES)} (e.g. --engine ray)")
        if self.workers < 1:
            raise ConfigError(f"workers={self.workers}: must be at least 1 (e.g. --workers 2)")
        if self.address is not None and self.engine != "ray":
            raise ConfigError(f"--ray-address {self.address!r} is given with --engine {self.engine}: "
                              "add --engine ray, or drop --ray-address")

    def lineage(self) -> dict:
        """What the registry records about where a vintage was computed."""
        return {"engine": self.engine, "workers": self.workers if self.engine == "ray" else 1,
                **({"ray_address": self.address} if self.address else {})}


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A ClusterError at once when nothing listens at HOST:PORT (ray.init would retry for minutes)."""
    import socket

    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address!r}: expected HOST:PORT (e.g. 10.0.0.5:6379), "
                          "ray://HOST:PORT (Ray Client, e.g. ray://10.0.0.5:10001) or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address!r}: {exc}. Start one there with "
                           "`ray start --head` (or check the address and firewall), omit --ray-address to run a "
                           "local cluster, or use --engine local") from exc


@contextlib.contextmanager
def ray_session(cfg: EngineConfig) -> Iterator[dict]:
    """Connect to (or start) Ray for one job; shut the connection down after, unless the caller had one open.
    An unreachable address is a ClusterError naming it and the fix, not Ray's traceback."""
    import ray

    if cfg.engine != "ray":
        raise ConfigError(f"ray_session needs engine='ray', got {cfg.engine!r}")
    if cfg.address:
        _reachable(cfg.address)  # also when this process already holds a session: a bad address is never ignored
    owned = not ray.is_initialized()
    if owned:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_DISABLE_IMPORT_WARNING", "1")
        try:
            if cfg.address:
                ray.init(address=cfg.address, log_to_driver=False, logging_level="ERROR")
            else:
                ray.init(num_cpus=cfg.workers, include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            with contextlib.suppress(Exception):
                ray.shutdown()
            where = f"the Ray cluster at {cfg.address!r}" if cfg.address else "a local Ray cluster"
            raise ClusterError(f"cannot connect to {where}: {str(exc).strip().splitlines()[0] if str(exc) else exc}."
                               " Start one with `ray start --head` and pass its address (--ray-address HOST:6379), "
                               "or omit --ray-address to run a local cluster, or use --engine local") from exc
    try:
        yield {**cfg.lineage(), "ray_version": ray.__version__}
    finally:
        if owned:
            ray.shutdown()
