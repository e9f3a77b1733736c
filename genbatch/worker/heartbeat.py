"""Heartbeats of the long-running processes (`genbatch/store/heartbeats.py` holds them).

A worker beats from a thread of its main process with the queues it consumes and the names of
the providers whose key it holds; the scheduler beats while it leads. A beat lives three
intervals (GENBATCH_HEARTBEAT_S), so a process that died is gone from `genbatch accounts`,
`status` and the dashboard within half a minute.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading

from celery.utils.nodenames import host_format

from genbatch.config import Settings
from genbatch.errors import StoreError
from genbatch.providers import accounts as provider_accounts
from genbatch.store.heartbeats import Beat
from genbatch.worker.runtime import Runtime

log = logging.getLogger(__name__)
LIVES = 3  # a beat expires after this many intervals


def process_name(node: str | None = None) -> str:
    """`node@host:pid`: unique per process, readable in `genbatch accounts`. A Celery node
    name that already names its host (`w1@%h`, `w1@box`) keeps it, with `%h` expanded."""
    if node and "@" in node:
        return f"{host_format(node)}:{os.getpid()}"
    return f"{node or 'worker'}@{socket.gethostname()}:{os.getpid()}"


def worker_host(settings: Settings, node: str | None = None) -> str:
    """The host a worker records its work under (items' `submit_host`/`download_host`, the
    batch's "served by"): GENBATCH_HOSTNAME, else the host of its Celery node name
    (`--hostname name@host`, `%h` and `%d` expanded as Celery does), else the machine's
    hostname. Several containers on one machine tell themselves apart by it."""
    if settings.hostname:
        return settings.hostname
    host = host_format(node).partition("@")[2] if node and "@" in node else ""
    return host or socket.gethostname()


def worker_beat(rt: Runtime, name: str, queues: tuple[str, ...]) -> Beat:
    return Beat(name=name, at=rt.now(), pid=os.getpid(), host=rt.host,
                queues=queues, keys=provider_accounts.keys_held(rt.settings),
                providers=provider_accounts.providers_held(rt.settings))


def start_worker_heartbeat(rt: Runtime, name: str, queues: tuple[str, ...]) -> threading.Event:
    """Beat every GENBATCH_HEARTBEAT_S from a daemon thread until the returned event is set
    (then the beat is removed: a clean stop is seen at once)."""
    stop = threading.Event()
    every = rt.settings.heartbeat_s

    def run() -> None:
        while True:
            try:
                rt.store.heartbeats.beat_worker(worker_beat(rt, name, queues), every * LIVES)
            except StoreError as exc:  # Redis away: beat again when it is back
                log.debug("heartbeat not written: %s", exc)
            if stop.wait(every):
                break
        with contextlib.suppress(StoreError):
            rt.store.heartbeats.stop_worker(name)

    threading.Thread(target=run, name="genbatch-heartbeat", daemon=True).start()
    return stop


def scheduler_beat(rt: Runtime, name: str) -> None:
    """The leader's beat (called from its tick; the caller spaces the calls)."""
    beat = Beat(name=name, at=rt.now(), pid=os.getpid(), host=rt.host)
    rt.store.heartbeats.beat_scheduler(beat, rt.settings.heartbeat_s * LIVES)
