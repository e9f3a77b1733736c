"""Shared fixtures: a real Redis server for the whole session (never a mock of Redis)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from genbatch.demo import SAMPLES
from genbatch.demo.redis_server import RedisServer, start_redis
from genbatch.store import JobStore


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield redis_server.url
    client.close()


@pytest.fixture
def store(redis_url: str) -> Iterator[JobStore]:
    js = JobStore.from_url(redis_url)
    yield js
    js.r.close()


@pytest.fixture
def tmp_storage(tmp_path: Path) -> Path:
    root = tmp_path / "storage"
    root.mkdir()
    return root




@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder with the sample images in `images/`, for manifests that reference them."""
    shutil.copytree(SAMPLES / "images", tmp_path / "images")
    return tmp_path


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto's standalone server) on a loopback port."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
