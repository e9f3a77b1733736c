"""Running the simulator: in the foreground (`serve`, for the CLI) or on a background thread
(`running_simulator`, for tests, the demo and benchmarks)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import uvicorn

from genbatch.simulator.app import create_app
from genbatch.simulator.gate import ConnectionDropped
from genbatch.simulator.plugins import SimulatorPlugin
from genbatch.simulator.profile import SimProfile
from genbatch.simulator.state import Clock

STARTUP_TIMEOUT_S = 10.0


class _HideDroppedConnections(logging.Filter):
    """An injected dropped connection is the simulator working, not an error to log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionDropped)


def _quiet_dropped_connections() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDroppedConnections) for f in logger.filters):
        logger.addFilter(_HideDroppedConnections())


def serve(host: str, port: int, profile: SimProfile) -> None:
    """Serve the simulator until interrupted (blocking; access log off)."""
    config = uvicorn.Config(
        create_app(profile), host=host, port=port, access_log=False, log_level="warning",
        timeout_graceful_shutdown=2,
    )
    _quiet_dropped_connections()
    uvicorn.Server(config).run()


@contextmanager
def running_simulator(
    profile: SimProfile | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    clock: Clock = time.time,
    simulators: Sequence[SimulatorPlugin] = (),
) -> Iterator[str]:
    """Run the simulator on a background thread; yields its base URL (port 0 = a free one).

    `clock` (wall-clock seconds) lets a test move simulated time by hand; `simulators` are
    served besides the installed simulator plugins."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(
        create_app(profile, clock=clock, simulators=simulators), access_log=False,
        log_level="warning", log_config=None, lifespan="off", timeout_graceful_shutdown=1,
    )
    _quiet_dropped_connections()
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="genbatch-simulator", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the simulator did not start")
            time.sleep(0.005)
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        yield f"http://{shown}:{bound}"
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT_S)
        sock.close()
