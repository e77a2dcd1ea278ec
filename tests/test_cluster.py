"""Connecting to Ray: a bad address is one clear error at once, never a hang or a traceback; the lineage a vintage
records says where it was computed."""

from __future__ import annotations

import socket
import time

import pytest

from star.cluster import ClusterError, EngineConfig, ray_session
from star.errors import ConfigError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_ray_address_is_one_clear_error_at_once():
    address = f"127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(ClusterError, match=f"cannot reach the Ray cluster at '{address}'.*ray start --head"):
        with ray_session(EngineConfig(engine="ray", address=address)):
            pass
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("kwargs, message", [
    ({"engine": "spark"}, "engine='spark': choose from local, ray"),
    ({"engine": "ray", "workers": 0}, "workers=0: must be at least 1"),
    ({"engine": "local", "address": "10.0.0.5:6379"}, "add --engine ray"),
])
def test_bad_engine_settings_name_the_field_and_the_fix(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        EngineConfig(**kwargs)


def test_a_malformed_address_names_the_forms_ray_takes():
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        with ray_session(EngineConfig(engine="ray", address="no-port-here")):
            pass


def test_a_session_joins_the_running_cluster_and_records_the_engine(ray_cluster):
    import ray

    assert ray_cluster.get("CPU") == 2
    with ray_session(EngineConfig(engine="ray", workers=2)) as info:
        assert ray.is_initialized()
        assert info["engine"] == "ray" and info["workers"] == 2 and info["ray_version"] == ray.__version__
    assert ray.is_initialized()  # it joined the cluster the test started, so it leaves it running
    assert EngineConfig().lineage() == {"engine": "local", "workers": 1}
