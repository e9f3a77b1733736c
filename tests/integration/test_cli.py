"""The command line as a user meets it: one clear line for mistakes, a demo that cleans up."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def run(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GENBATCH_")}
    return subprocess.run([sys.executable, "-m", "genbatch", *args], env={**base, **(env or {})},
                          cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=timeout, check=False)


def processes_with(marker: str) -> list[int]:
    """Pids whose command line or environment mentions `marker` (our children's work dir)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            blob = Path(f"/proc/{pid}/cmdline").read_bytes()
            blob += Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in blob:
            found.append(int(pid))
    return found


def test_bad_manifest_is_one_line_per_row_and_no_traceback(redis_url: str,
                                                           tmp_path: Path) -> None:
    manifest = tmp_path / "bad.csv"
    manifest.write_text("prompt,image,duration\nhi,missing.png,5\nhi,missing.png,99\n")
    res = run(["submit", str(manifest), "--provider", "novita"],
              env={"GENBATCH_REDIS_URL": redis_url})
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert f"{manifest}:2: image: file not found" in res.stderr
    assert f"{manifest}:3: duration:" in res.stderr
    assert "nothing was submitted" in res.stderr


def test_unreachable_redis_is_one_clear_line() -> None:
    res = run(["status"], env={"GENBATCH_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert res.returncode == 2
    assert "cannot reach Redis" in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_missing_redis_setting_and_unknown_batch(redis_url: str) -> None:
    res = run(["status"])
    assert res.returncode == 2
    assert "GENBATCH_REDIS_URL" in res.stderr
    res = run(["status", "nope"], env={"GENBATCH_REDIS_URL": redis_url})
    assert res.returncode == 2
    assert "no batch 'nope'" in res.stderr


def test_demo_runs_headless_and_leaves_no_process(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    res = run(["demo", "--workdir", str(workdir)], env={"CI": "true"}, cwd=tmp_path,
              timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    outputs = list((workdir / "output").glob("*/results.jsonl"))
    assert len(outputs) == 1
    rows = [json.loads(line) for line in outputs[0].read_text().splitlines()]
    from genbatch.demo import SAMPLES

    assert len(rows) == len((SAMPLES / "demo.csv").read_text().splitlines()) - 1
    assert {r["provider"] for r in rows} >= {"novita", "byteplus", "fal"}  # fal: a new family
    assert processes_with(str(workdir)) == []


def interruptible() -> None:
    """In the child before it runs: SIGINT as a terminal delivers it (a test run started in
    the background by a non-interactive shell ignores SIGINT, and its children would too)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_demo_interrupted_stops_every_child(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    base = {k: v for k, v in os.environ.items() if not k.startswith("GENBATCH_")}
    proc = subprocess.Popen([sys.executable, "-m", "genbatch", "demo", "--workdir", str(workdir)],
                            env={**base, "CI": "true"}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=interruptible)
    assert proc.stderr is not None
    for line in proc.stderr:  # wait until the batch is running
        if "submitted batch" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in rest
    deadline = time.monotonic() + 10
    while processes_with(str(workdir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with(str(workdir)) == []


def test_bad_batch_option_is_one_line_and_submits_nothing(redis_url: str,
                                                          tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt,image\nhi,https://example.com/a.jpg\n")
    env = {"GENBATCH_REDIS_URL": redis_url}
    res = run(["submit", str(manifest), "--provider", "byteplus", "--expires-after", "60"],
              env=env)
    assert res.returncode == 2
    assert res.stderr.strip() == ("error: --expires-after must be between 3600 and 259200 "
                                  "seconds (got 60)")
    res = run(["submit", str(manifest), "--resume", "some-batch", "--tier", "flex"], env=env)
    assert res.returncode == 2
    assert "--resume keeps the batch's own" in res.stderr
    res = run(["submit", str(manifest), "--provider", "byteplus", "--tier", "flex",
               "--dry-run"], env=env)
    assert res.returncode == 0, res.stderr
    assert "byteplus seedance-v1.5-pro-i2v: 1 rows" in res.stdout


def test_notify_without_a_signing_secret_is_refused(redis_url: str, tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt,image\nhi,https://example.com/a.jpg\n")
    args = ["submit", str(manifest), "--provider", "byteplus", "--notify",
            "https://hooks.example.com/genbatch"]
    res = run(args, env={"GENBATCH_REDIS_URL": redis_url})
    assert res.returncode == 2
    assert "--notify needs GENBATCH_NOTIFY_SECRET" in res.stderr
    res = run([*args, "--dry-run"], env={"GENBATCH_REDIS_URL": redis_url,
                                         "GENBATCH_NOTIFY_SECRET": "s3cret-signing-key"})
    assert res.returncode == 0, res.stderr


def test_notify_resend_of_an_unknown_or_silent_batch_is_one_line(redis_url: str) -> None:
    res = run(["notify", "nope"], env={"GENBATCH_REDIS_URL": redis_url})
    assert res.returncode == 2
    assert res.stderr.strip() == "error: no batch 'nope' in the job store"


def test_submit_warns_and_refuses_on_worker_keys_in_one_line_each(redis_url: str,
                                                                   tmp_path: Path) -> None:
    import shutil

    from genbatch.demo import SAMPLES
    from genbatch.store import JobStore
    from genbatch.store.heartbeats import Beat

    shutil.copytree(SAMPLES / "images", tmp_path / "images")
    manifest = tmp_path / "m.csv"
    manifest.write_text("provider,prompt,image,duration\nbyteplus,hi,images/watch.jpg,5\n")
    env = {"GENBATCH_REDIS_URL": redis_url, "GENBATCH_STORAGE_URL": str(tmp_path / "out")}
    # no worker up: accepted, with a warning
    res = run(["submit", str(manifest), "--dry-run"], env=env)
    assert res.returncode == 0, res.stderr
    assert "warning no worker is running" in res.stderr
    # a worker up without the key: refused, one line naming the provider and the variable
    store = JobStore.from_url(redis_url)
    store.heartbeats.beat_worker(Beat(name="w", at=time.time(), keys=("novita",)), ttl_s=60)
    res = run(["submit", str(manifest)], env=env)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert (f"{manifest}: no running worker holds a key for byteplus: set "
            "GENBATCH_BYTEPLUS_API_KEY on a worker") in res.stderr
    assert store.batches.recent() == []
    store.close()


def test_ctrl_c_on_submit_wait_says_the_batch_keeps_running(redis_url: str,
                                                             tmp_path: Path) -> None:
    from genbatch.demo import SAMPLES

    base = {k: v for k, v in os.environ.items() if not k.startswith("GENBATCH_")}
    env = {**base, "GENBATCH_REDIS_URL": redis_url,
           "GENBATCH_STORAGE_URL": str(tmp_path / "out")}
    proc = subprocess.Popen([sys.executable, "-m", "genbatch", "submit",
                             str(SAMPLES / "demo.csv"), "--wait"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, preexec_fn=interruptible)
    try:
        deadline = time.monotonic() + 60
        lines: list[str] = []
        while time.monotonic() < deadline:  # until it watches (no worker: it would wait on)
            line = proc.stderr.readline() if proc.stderr else ""
            lines.append(line)
            if re.search(r": 0/\d+ done", line):
                break
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=30)
    finally:
        proc.kill()
    batch_id = lines[-1].split(":")[0]  # "<batch>: 0/22 done, ..."
    assert proc.returncode == 130
    assert f"stopped watching; batch {batch_id} keeps running (`genbatch watch {batch_id}`" \
        in rest and "Traceback" not in rest
