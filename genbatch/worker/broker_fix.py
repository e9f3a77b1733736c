"""A way around a crash of Celery 5.7 + kombu 5.7 when the Redis broker goes away.

Root cause (celery 5.7.0, kombu 5.7.0, redis-py 8.1.0): on a lost broker connection,
`Consumer.on_connection_error_after_connected` calls `connection.collect()` and then, since
celery commit feb789acc (#10242, "close the broken connection in the error handler"),
`connection.close()` as well. `collect()` detaches the transport (`transport.client = None`)
but keeps the default channel; when the first close of that channel was cut short by the dead
socket, the second one gets as far as restoring the unacked messages, which builds a new
connection pool from `transport.client.hostname`: `AttributeError: 'NoneType' object has no
attribute 'hostname'` in `kombu/transport/redis.py` `_connparams`. `ignore_errors` only
swallows the transport's connection errors, so the AttributeError ends the worker
("Unrecoverable error"). It happens whenever messages were in flight when Redis went away.
No released celery or kombu fixes it yet.

The way around: a channel whose transport was detached raises the transport's own
connection error instead, which the close path already ignores. The unacked messages stay
in kombu's `unacked` hash (restored by the visibility timeout); genbatch needs no more: every
step is idempotent and the job store's timers send again whatever a lost message carried.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

_MARK = "_genbatch_detached_guard"


def apply() -> None:
    """Install the guard on kombu's Redis channel (once per process; idempotent)."""
    channel = kombu_redis.Channel
    original: Callable[..., Any] = channel._connparams
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def connparams(self: Any, asynchronous: bool = False) -> Any:
        if getattr(self.connection, "client", None) is None:
            raise RedisConnectionError("the broker connection is already closed")
        return original(self, asynchronous=asynchronous)

    setattr(connparams, _MARK, True)
    channel._connparams = connparams  # type: ignore[method-assign]
