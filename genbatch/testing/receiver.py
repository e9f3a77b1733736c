"""A callback receiver on loopback: records every delivery (path, headers, raw body) and
answers 200, so the kit can hand a provider's simulator a real callback URL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True, slots=True)
class Delivery:
    """One callback as it arrived."""

    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class Receiver:
    """The deliveries so far; `url(name)` is a fresh callback URL, `wait(name)` its first
    delivery."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._deliveries: list[Delivery] = []
        self._arrived = threading.Condition()

    def url(self, name: str) -> str:
        return f"{self.base_url}/callbacks/{name}"

    def record(self, delivery: Delivery) -> None:
        with self._arrived:
            self._deliveries.append(delivery)
            self._arrived.notify_all()

    def wait(self, name: str, timeout: float = 15.0) -> Delivery:
        """The first delivery to `url(name)`; AssertionError when none came in time."""
        path = f"/callbacks/{name}"
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = next((d for d in self._deliveries if d.path == path), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no callback arrived at {path} within {timeout} s")
                self._arrived.wait(left)


@contextmanager
def running_receiver(host: str = "127.0.0.1") -> Iterator[Receiver]:
    """A receiver on a free loopback port, on a background thread."""
    receiver: Receiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            assert receiver is not None
            receiver.record(Delivery(self.path, headers, body))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the kit reads deliveries, not an access log."""

    server = ThreadingHTTPServer((host, 0), Handler)
    receiver = Receiver(f"http://{host}:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, name="genbatch-kit-receiver",
                              daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
