"""`genbatch worker` restarts a Celery worker that dies on its own, passes a stop request on,
and never leaves its child behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PY = sys.executable


def wait_for(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def supervisor(tmp_path: Path, child: str) -> subprocess.Popen[bytes]:
    code = ("import sys; from genbatch.worker.supervise import supervise; "
            f"sys.exit(supervise([sys.executable, '-c', {child!r}, {str(tmp_path)!r}], "
            "first_pause_s=0.01))")
    return subprocess.Popen([PY, "-c", code], stdin=subprocess.DEVNULL)


CHILD = """
import os, pathlib, signal, sys, time
folder = pathlib.Path(sys.argv[1])
(folder / "pid").write_text(str(os.getpid()))
def on_term(*_):
    (folder / "term").write_text("got it")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
while True:
    time.sleep(0.05)
"""


def test_every_exit_nobody_asked_for_is_restarted_whatever_its_code(tmp_path: Path) -> None:
    # Given a child that exits cleanly (0), then with 1, then 0 again, then stays up
    child = ("import pathlib, sys; p = pathlib.Path(sys.argv[1]) / 'runs'; "
             "n = len(p.read_text()) if p.exists() else 0; p.write_text('x' * (n + 1)); "
             "n < 3 and sys.exit(n % 2)\n" + CHILD)
    sup = supervisor(tmp_path, child)
    # Then each exit is followed by a new child, the clean ones too
    wait_for(lambda: (tmp_path / "pid").exists())
    assert (tmp_path / "runs").read_text() == "xxxx"
    assert sup.poll() is None
    # And only a stop request ends the supervisor, with the child's exit code
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(30) == 0
    assert (tmp_path / "term").read_text() == "got it"


def test_a_stop_request_reaches_the_child_and_ends_both(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, CHILD)
    wait_for(lambda: (tmp_path / "pid").exists())
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(30) == 0
    assert (tmp_path / "term").read_text() == "got it"
    assert not alive(int((tmp_path / "pid").read_text()))


def test_kill_9_of_the_supervisor_takes_the_child_with_it(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, CHILD)
    wait_for(lambda: (tmp_path / "pid").exists())
    pid = int((tmp_path / "pid").read_text())
    assert alive(pid)
    os.kill(sup.pid, signal.SIGKILL)
    sup.wait(30)
    wait_for(lambda: not alive(pid))  # no orphan left consuming the queues
    assert not (tmp_path / "term").exists()  # killed, not asked
