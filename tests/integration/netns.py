"""A machine of its own for a test process: new network and UTS namespaces (`unshare -nu`,
with `-r` when not root), its own hostname, and of the real machine only the loopback ports
it is given, through relays over unix sockets (a new network namespace has nothing but its
own loopback, down).

Two halves, stdlib only (the inner one runs as a script, before anything is importable):

- `MachinePorts` (the test's side): for each port, a unix socket in a folder that relays to
  127.0.0.1:port of the machine;
- `python netns.py HOST SOCKETS PORT... -- COMMAND...` (inside the namespaces): loopback up,
  hostname HOST, 127.0.0.1:PORT relayed to SOCKETS/PORT.sock, then COMMAND as a child; exits
  with its code. Killing the process group kills the host: relays, command and its children.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def unshare_argv() -> list[str]:
    return ["unshare", "-nu"] if os.geteuid() == 0 else ["unshare", "-rnu"]


@functools.cache
def available() -> bool:
    """Whether this machine lets a test make namespaces (a container may not)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run([*unshare_argv(), "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


def host_argv(host: str, sockets: Path, ports: Sequence[int]) -> list[str]:
    """The prefix that runs a command as `host` (see the module docstring)."""
    return [*unshare_argv(), sys.executable, str(Path(__file__).resolve()), host, str(sockets),
            *map(str, ports), "--"]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _bridge(target: Opener, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter) -> None:
    try:
        far_reader, far_writer = await target()
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, far_writer), _pipe(far_reader, writer))


def _tcp(port: int) -> Opener:
    return functools.partial(asyncio.open_connection, "127.0.0.1", port)


def _unix(path: Path) -> Opener:
    return functools.partial(asyncio.open_unix_connection, str(path))


class MachinePorts:
    """Unix sockets in a short temporary folder, each relaying to a loopback port of this
    machine, served from a thread until the block ends."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = tuple(ports)
        self.folder = Path(tempfile.mkdtemp(prefix="gbns-"))  # unix paths: 107 bytes at most
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="netns-relays",
                                        daemon=True)

    def __enter__(self) -> MachinePorts:
        self._thread.start()
        for port in self.ports:
            serve = asyncio.start_unix_server(functools.partial(_bridge, _tcp(port)),
                                              path=str(self.folder / f"{port}.sock"))
            asyncio.run_coroutine_threadsafe(serve, self._loop).result(10)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        shutil.rmtree(self.folder, ignore_errors=True)


def _loopback_up() -> None:
    with socket.socket() as s:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))


def _serve_inside(sockets: Path, ports: Sequence[int]) -> None:
    loop = asyncio.new_event_loop()
    for port in ports:
        server = asyncio.start_server(functools.partial(_bridge, _unix(sockets / f"{port}.sock")),
                                      "127.0.0.1", port)
        loop.run_until_complete(server)
    threading.Thread(target=loop.run_forever, name="relays", daemon=True).start()


def main(argv: Sequence[str]) -> int:
    split = list(argv).index("--")
    host, sockets, *ports = argv[:split]
    _loopback_up()
    socket.sethostname(host)
    _serve_inside(Path(sockets), [int(p) for p in ports])
    signal.signal(signal.SIGTERM, lambda *_: None)  # the group's SIGTERM is the command's
    return subprocess.Popen(argv[split + 1:]).wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
