"""Work that one worker does at a time, held by a lease its holder renews while it works.

A lease is a lock (store/locks.py) with a short TTL, renewed from a thread every third of
it, so work that takes long (a download streaming, a finalize writing a million rows)
keeps it, and work lost with a killed worker is free to be done again within one TTL.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from genbatch.errors import StoreError
from genbatch.worker.runtime import Runtime

log = logging.getLogger(__name__)


@contextmanager
def lease(rt: Runtime, name: str, ttl_s: float,
          renewed: Callable[[], None] | None = None) -> Iterator[bool]:
    """Hold the lock `name` while the block runs: yields False (and holds nothing) when
    another worker holds it. `renewed` runs at each renewal too (e.g. to push a timer on)."""
    token = secrets.token_hex(8)
    if not rt.store.locks.acquire(name, token, ttl_s):
        yield False
        return
    stop = threading.Event()

    def renew() -> None:
        rt.store.locks.acquire(name, token, ttl_s)
        if renewed is not None:
            renewed()

    def beat() -> None:
        while not stop.wait(ttl_s / 3):
            try:
                renew()
            except StoreError as exc:  # the lease lapses: another worker takes over
                log.warning("could not renew the lease %s: %s", name, exc)

    if renewed is not None:
        renewed()
    beater = threading.Thread(target=beat, name=f"lease-{name}", daemon=True)
    beater.start()
    try:
        yield True
    finally:
        stop.set()
        beater.join(timeout=5)
        rt.store.locks.release(name, token)
