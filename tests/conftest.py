"""Shared fixtures: a real Redis server for the whole session (never a mock of Redis)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
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
    js.close()


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


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Buckets pipeline-in and pipeline-out on the S3 server, credentials in the
    environment (worker processes inherit it); yields the endpoint."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for bucket in ("pipeline-in", "pipeline-out"):
        client.create_bucket(Bucket=bucket)
    yield s3_endpoint
    for bucket in ("pipeline-in", "pipeline-out"):
        for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
        client.delete_bucket(Bucket=bucket)
