"""The embedded Redis (demo, `genbatch redis`, tests) asks for a password kept in its work
folder, keeps it off its command line, and refuses the commands that write files or load
code; what genbatch, Celery and the tests use still works."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from genbatch.demo.redis_server import (
    CONFIG_FILE,
    DISABLED_COMMANDS,
    PASSWORD_FILE,
    RedisServer,
    start_redis,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    running = start_redis(tmp_path / "redis")
    yield running
    running.stop()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_password_is_made_at_first_start_and_kept(server: RedisServer,
                                                    tmp_path: Path) -> None:
    folder = tmp_path / "redis"
    password = (folder / PASSWORD_FILE).read_text().strip()
    assert len(password) >= 32 and server.password == password
    assert (mode(folder / PASSWORD_FILE), mode(folder / CONFIG_FILE), mode(folder)) == \
        (0o600, 0o600, 0o700)
    assert server.url == f"redis://:{password}@127.0.0.1:{server.port}/0"
    cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
    assert password.encode() not in cmdline

    server.stop()
    again = start_redis(folder, server.port)
    try:
        assert again.password == password
        assert redis.Redis.from_url(again.url).ping()
    finally:
        again.stop()


def test_a_client_without_the_password_is_refused(server: RedisServer) -> None:
    anonymous = redis.Redis(host="127.0.0.1", port=server.port)
    with pytest.raises(redis.AuthenticationError):
        anonymous.set("k", "v")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=server.port, password="guess").ping()


@pytest.mark.parametrize("command", [
    ("SAVE",), ("BGSAVE",),
    ("DEBUG", "SLEEP", "0"), ("MODULE", "LIST"), ("SHUTDOWN",), ("REPLICAOF", "NO", "ONE"),
    ("ACL", "LIST"), ("MIGRATE", "h", "1", "k", "0", "1")])
def test_dangerous_commands_are_gone(server: RedisServer, command: tuple[str, ...]) -> None:
    assert command[0] in DISABLED_COMMANDS
    client = redis.Redis.from_url(server.url)
    with pytest.raises(redis.ResponseError, match="unknown command"):
        client.execute_command(*command)  # type: ignore[no-untyped-call]
    assert client.ping()


def test_config_can_be_read_not_written(server: RedisServer) -> None:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    assert client.config_get("appendfsync") == {"appendfsync": "always"}
    with pytest.raises(redis.ResponseError, match="no permissions"):
        client.config_set("dir", "/tmp")


def test_what_genbatch_celery_and_the_tests_use_still_works(server: RedisServer) -> None:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    sha = client.script_load("return redis.call('INCR', KEYS[1])")
    assert client.evalsha(sha, 1, "n") == 1
    client.lpush("q", "m")
    assert client.brpop(["q"], timeout=1) == ("q", "m")
    assert int(client.info("memory")["used_memory"]) > 0
    assert client.flushall()
    assert client.dbsize() == 0
