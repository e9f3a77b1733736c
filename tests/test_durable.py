"""A submit's record is durable before the POST: workers refuse a Redis without an
append-only file (unless allowed), warn when its last second could be lost."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from genbatch.config import Settings
from genbatch.demo.redis_server import RedisServer, start_redis
from genbatch.errors import ConfigError
from genbatch.store import JobStore
from genbatch.worker.durable import check_durability


@pytest.fixture
def volatile(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path / "volatile", appendonly=False)
    yield server
    server.stop()


@pytest.fixture
def everysec(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path / "everysec", fsync="everysec")
    yield server
    server.stop()


def test_a_redis_without_aof_is_refused_unless_allowed(volatile: RedisServer) -> None:
    store = JobStore.from_url(volatile.url)
    assert not store.server.durability().aof
    with pytest.raises(ConfigError, match=r"keeps no append-only file.*appendfsync always"):
        check_durability(store, Settings(redis_url=volatile.url))
    warning = check_durability(store, Settings(redis_url=volatile.url,
                                               allow_volatile_redis=True))
    assert warning is not None and "paid twice" in warning


def test_everysec_is_a_warning_and_always_is_durable(everysec: RedisServer,
                                                     redis_url: str) -> None:
    lax = JobStore.from_url(everysec.url)
    d = lax.server.durability()
    assert d.aof and d.fsync == "everysec"
    warning = check_durability(lax, Settings(redis_url=everysec.url))
    assert warning is not None and "last second" in warning
    strict = JobStore.from_url(redis_url)  # the suite's Redis: as `genbatch demo` starts it
    assert strict.server.durability().fsync == "always"
    assert check_durability(strict, Settings(redis_url=redis_url)) is None


def test_wait_durable_holds_without_waitaof(redis_url: str) -> None:
    store = JobStore.from_url(redis_url)
    if store.server.durability().waitaof:  # Redis 7.2+: WAITAOF confirms the local fsync
        assert store.server.wait_durable()
    else:  # older: `appendfsync always` makes every answered write durable
        assert store.server.wait_durable() and store.server.durability().fsync == "always"


def test_the_worker_command_refuses_a_volatile_redis_in_one_line(volatile: RedisServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENBATCH_")}
    env["GENBATCH_REDIS_URL"] = volatile.url
    done = subprocess.run([sys.executable, "-m", "genbatch", "worker"], env=env,
                          capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "keeps no append-only file" in done.stderr and "Traceback" not in done.stderr
