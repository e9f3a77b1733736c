"""`genbatch worker` keeps its Celery worker alive.

Celery reconnects to Redis by itself after most outages, but a Celery worker can still end
on its own: celery/kombu 5.7 crashed while restoring unacked messages on a lost connection
("Unrecoverable error: AttributeError ... 'hostname'", worked around in `broker_fix`), and
a future bug may end it with any exit code, 0 included (`app.worker_main` used to drop the
code). Nothing is lost when that happens (messages are acked late and every step is
idempotent), but a worker that is gone does no more work. So `genbatch worker` runs the
Celery worker as a child and starts it again on every exit nobody asked for, whatever its
code, with a growing pause; only a stop request to the supervisor (SIGTERM, SIGINT) ends
it: the request is passed on to the child and ends both. The child is killed with its
parent (Linux PR_SET_PDEATHSIG), so `kill -9` of `genbatch worker` never leaves an orphan
consuming the queues.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
PR_SET_PDEATHSIG = 1
HEALTHY_RUN_S = 60.0  # a child that ran this long restarts after the shortest pause


def _die_with_parent(parent: int) -> None:
    """In the child before exec: get SIGKILL when the supervisor dies, however it dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the child then outlives a kill -9 of its parent
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def supervise(argv: Sequence[str], *, first_pause_s: float = 1.0,
              max_pause_s: float = 30.0) -> int:
    """Run `argv` until a stop is requested; restart it whenever it exits on its own,
    whatever its exit code. Returns the child's last exit code."""
    stop = threading.Event()
    child: subprocess.Popen[bytes] | None = None

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        if child is not None and child.poll() is None:
            child.send_signal(signum)  # Celery: warm shutdown on the first, cold on the next

    previous = {s: signal.signal(s, on_stop) for s in STOP_SIGNALS}
    parent = os.getpid()
    pause = first_pause_s
    try:
        while True:
            started = time.monotonic()
            child = subprocess.Popen(list(argv), preexec_fn=lambda: _die_with_parent(parent))
            code = child.wait()
            if stop.is_set():
                return code
            if time.monotonic() - started >= HEALTHY_RUN_S:
                pause = first_pause_s
            log.warning("the Celery worker exited on its own (code %s); starting it again "
                        "in %.1f s", code, pause)
            if stop.wait(pause):
                return code
            pause = min(max_pause_s, pause * 2)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
