"""A primary, its replica and three Sentinels on loopback: the Redis a production batch runs
on, for the failover tests and the chaos run (never for `genbatch demo`).

The servers are `redis_server.start_redis` ones in replication mode (a user for the replica
and one for the Sentinels, both with the set's one password); the Sentinels are the same
`redis-server` binary run with `--sentinel` (Redis 6.2+: users and `resolve-hostnames`),
with a password of their own. They call the primary down after DOWN_AFTER_MS without an
answer and promote the replica.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from genbatch.config import RedisTarget
from genbatch.demo.redis_server import (
    PASSWORD_FILE,
    RedisServer,
    free_port,
    redis_server_binary,
    server_password,
    start_redis,
)
from genbatch.errors import ConfigError

MASTER_NAME = "genbatch"
DOWN_AFTER_MS = 1000  # no answer for this long: the primary is down (subjectively)
FAILOVER_TIMEOUT_MS = 5000
SENTINELS = 3
QUORUM = 2


@dataclass
class SentinelSet:
    """The running set: `servers[0]` started as the primary, `servers[1]` as its replica."""

    workdir: Path
    servers: list[RedisServer]
    sentinels: list[subprocess.Popen[bytes]]
    sentinel_ports: list[int]
    sentinel_password: str
    master_name: str = MASTER_NAME
    dead: list[RedisServer] = field(default_factory=list)

    @property
    def password(self) -> str:
        return self.servers[0].password

    def target(self) -> RedisTarget:
        return RedisTarget(url=None, sentinels=tuple(("127.0.0.1", p) for p in
                                                     self.sentinel_ports),
                           master_name=self.master_name, password=self.password,
                           sentinel_password=self.sentinel_password)

    def settings(self) -> dict[str, str]:
        """The GENBATCH_* values (lower case, without the prefix) that point at the set."""
        return {"redis_sentinels": ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports),
                "redis_master_name": self.master_name, "redis_password": self.password,
                "redis_sentinel_password": self.sentinel_password}

    def primary_port(self) -> int:
        """The primary's port as the Sentinels name it now."""
        found = self._sentinel().sentinel_get_master_addr_by_name(self.master_name)
        if not isinstance(found, tuple):
            raise ConfigError(f"the Sentinels know no primary {self.master_name!r}")
        return int(found[1])

    def server_on(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.port == port)

    def kill_primary(self) -> RedisServer:
        """SIGKILL the primary (what it had not sent its replica is lost); the dead one."""
        server = self.server_on(self.primary_port())
        server.kill()
        self.dead.append(server)
        return server

    def wait_promoted(self, old_port: int, timeout_s: float = 60.0) -> int:
        """Wait until a Sentinel would give a client another primary, one that answers as
        one; its port. Mid-failover a Sentinel already names the promoted replica in
        GET-MASTER-ADDR-BY-NAME while its SENTINEL MASTERS still shows the dead primary
        (what redis-py's discover_master reads, so a client finds no primary): wait until
        every Sentinel that calls a primary healthy names the same new one."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            named: set[int | None] = set()
            for sentinel_port in self.sentinel_ports:
                try:
                    named.add(self._healthy_primary(sentinel_port))
                except redis.RedisError:
                    continue
            ports = named - {None}
            try:
                if len(ports) == 1 and old_port not in ports:
                    (port,) = ports
                    if port is not None and self._client(port).role()[0] == b"master":
                        return port
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise ConfigError(f"no replica was promoted in {timeout_s:.0f} s")

    def _healthy_primary(self, sentinel_port: int) -> int | None:
        """The port of the primary the Sentinel on `sentinel_port` would give a client
        (redis-py's test: a master, neither subjectively nor objectively down), or None."""
        state = self._sentinel_on(sentinel_port).sentinel_master(self.master_name)
        if not isinstance(state, dict):
            return None
        if not state["is_master"] or state["is_sdown"] or state["is_odown"]:
            return None
        return int(state["port"])

    def wait_replicating(self, timeout_s: float = 30.0) -> None:
        """Wait until the primary has its replicas connected and every Sentinel sees the
        primary up, its replicas and the other Sentinels (so it can vote in a failover)."""
        deadline = time.monotonic() + timeout_s
        primary = self._client(self.servers[0].port)
        while time.monotonic() < deadline:
            try:
                replicas = int(primary.info("replication").get("connected_slaves", 0))
                if replicas >= len(self.servers) - 1 and all(
                        self._sees_all(port) for port in self.sentinel_ports):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise ConfigError(f"the replica and Sentinels did not settle in {timeout_s:.0f} s")

    def _sees_all(self, port: int) -> bool:
        """Whether the Sentinel on `port` names a healthy primary (redis-py's test of one),
        knows its replicas and the other Sentinels."""
        state = self._sentinel_on(port).sentinel_master(self.master_name)
        if not isinstance(state, dict):
            return False
        healthy = state["is_master"] and not (state["is_sdown"] or state["is_odown"])
        return bool(healthy and state["num-slaves"] >= len(self.servers) - 1
                    and state["num-other-sentinels"] >= len(self.sentinel_ports) - 1)

    def stop(self) -> None:
        for proc in self.sentinels:
            _stop(proc)
        for server in self.servers:
            server.stop()

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, password=self.password,
                           socket_timeout=2, socket_connect_timeout=1)

    def _sentinel_on(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, password=self.sentinel_password,
                           socket_timeout=2, socket_connect_timeout=1)

    def _sentinel(self) -> redis.Redis:
        for port in self.sentinel_ports:
            client = self._sentinel_on(port)
            try:
                client.ping()
                return client
            except redis.RedisError:
                continue
        raise ConfigError("no Sentinel answers")


def write_sentinel_config(workdir: Path, port: int, primary_port: int, password: str,
                          own_password: str, master_name: str = MASTER_NAME) -> Path:
    """A Sentinel's config (mode 0600: it holds both passwords; Sentinel rewrites it)."""
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = [
        f"port {port}", "bind 127.0.0.1", "daemonize no", f'dir "{workdir}"',
        f'logfile "{workdir / "sentinel.log"}"', f"requirepass {own_password}",
        f"sentinel sentinel-pass {own_password}",
        f"sentinel monitor {master_name} 127.0.0.1 {primary_port} {QUORUM}",
        f"sentinel auth-user {master_name} sentinel",
        f"sentinel auth-pass {master_name} {password}",
        f"sentinel down-after-milliseconds {master_name} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {master_name} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {master_name} 1",
    ]
    path = workdir / "sentinel.conf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def start_sentinel_set(workdir: Path, replicas: int = 1) -> SentinelSet:
    """Start a primary, `replicas` replicas and three Sentinels under `workdir`; return once
    the replicas are connected and the Sentinels see them."""
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    password = server_password(workdir)
    started: list[RedisServer] = []
    sentinels: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(replicas + 1):
            folder = workdir / f"redis{n}"
            folder.mkdir(mode=0o700, exist_ok=True)
            shutil.copy2(workdir / PASSWORD_FILE, folder / PASSWORD_FILE)  # one password
            started.append(start_redis(folder, replication=True,
                                       replica_of=started[0].port if started else None))
        (workdir / "sentinels").mkdir(mode=0o700, exist_ok=True)
        own = server_password(workdir / "sentinels")
        ports = [free_port() for _ in range(SENTINELS)]
        for n, port in enumerate(ports):
            config = write_sentinel_config(workdir / f"sentinel{n}", port, started[0].port,
                                           password, own)
            sentinels.append(subprocess.Popen(
                [redis_server_binary(), str(config), "--sentinel"], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        found = SentinelSet(workdir, started, sentinels, ports, own)
        found.wait_replicating()
        return found
    except BaseException:
        for proc in sentinels:
            _stop(proc)
        for server in started:
            server.stop()
        raise


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
