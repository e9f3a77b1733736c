"""A submit's record must be on disk before the POST leaves: else a Redis that loses its
last writes (a power cut, a restart without its append-only file) forgets a paid task, and
the item is submitted — and paid — again.

Redis 7.2+ confirms it per write: after the `submitting` record, `WAITAOF 1 0` waits until
the local append-only file has it (`Server.wait_durable`). Older Redis has no such command:
there the record is durable only with `appendfsync always` (each write fsynced before Redis
answers), which `genbatch demo`, `genbatch redis` and docker-compose.yml configure. A worker
refuses to start against a Redis without an append-only file, in one line, unless
GENBATCH_ALLOW_VOLATILE_REDIS is set; `everysec` (the last second may be lost) is a warning.
"""

from __future__ import annotations

import logging

from genbatch.config import Settings
from genbatch.errors import ConfigError
from genbatch.store import JobStore

log = logging.getLogger(__name__)


def check_durability(store: JobStore, settings: Settings) -> str | None:
    """ConfigError when Redis keeps no append-only file (unless allowed); the warning to
    print when a submit's record could still lose its last second; None when durable."""
    d = store.server.durability()
    if not d.aof:
        if settings.allow_volatile_redis:
            return ("Redis keeps no append-only file (GENBATCH_ALLOW_VOLATILE_REDIS is set): "
                    "a restart can forget submitted tasks, which are then paid twice")
        raise ConfigError(
            "the Redis at GENBATCH_REDIS_URL keeps no append-only file, so a restart can "
            "forget a submit and pay for it twice: start it with `--appendonly yes "
            "--appendfsync always` (or set GENBATCH_ALLOW_VOLATILE_REDIS=true to accept that)")
    if d.waitaof or d.fsync == "always":
        return None
    return (f"Redis fsyncs its append-only file `{d.fsync or 'on an unknown schedule'}` and "
            f"has no WAITAOF (Redis {d.version}): a power cut can lose the last second of "
            "submit records; `--appendfsync always` (or Redis 7.2+) closes that")


def check_replicas(store: JobStore, settings: Settings) -> str | None:
    """The warning to print when a submit's record will not reach a replica before its POST
    (Sentinels given, `auto`, and no replica connected) or when no submit can go out (more
    replicas asked for than are connected); None otherwise."""
    wanted = settings.min_replicas()
    connected = store.server.connected_replicas()
    if wanted is None:
        if settings.redis_sentinels and connected == 0:
            return ("the Redis primary has no replica connected: submit records are not "
                    "copied before their POST until one connects (a failover now could pay "
                    "a row twice); GENBATCH_REDIS_MIN_REPLICAS=1 waits for one instead")
        return None
    if connected < wanted:
        return (f"GENBATCH_REDIS_MIN_REPLICAS={wanted} but the Redis primary has {connected} "
                "replica(s) connected: no submit goes out until enough connect")
    return None
