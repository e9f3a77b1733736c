"""A real genbatch deployment on loopback for integration tests.

Redis is the session's real redis-server; the simulator runs on a loopback port; workers and
the scheduler are real `python -m genbatch ...` child processes, so they can be killed and
restarted like in production.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from genbatch import providers
from genbatch.config import Settings
from genbatch.demo import SAMPLES
from genbatch.producer.ingest import IngestResult, ingest_manifest
from genbatch.records import Batch
from genbatch.simulator import SimProfile, running_simulator
from genbatch.storage import open_storage
from genbatch.store import JobStore

FAST = {"time_factor": "50", "first_poll_s": "20", "poll_min_interval_s": "3",
        "task_lease_s": "30", "scheduler_tick_s": "0.1", "log_level": "INFO",
        "worker_concurrency": "8", "download_max_attempts": "3"}
AT_ROOT = frozenset({"novita", "wavespeed", "byteplus"})




class Cluster:
    def __init__(self, redis_url: str, sim_url: str, workdir: Path, **overrides: str) -> None:
        self.redis_url = redis_url
        self.sim_url = sim_url
        self.workdir = workdir
        self.values = {"redis_url": redis_url, "storage_url": str(workdir / "storage"), **FAST}
        for name in providers.names():  # one base URL for the three genbatch serves at the
            # root; HighwayAPI (which shares Novita's paths), fal, Runway, Kling, Veo and every
            # installed plugin provider under the simulator's /<name> prefix
            self.values[f"{name}_base_url"] = sim_url + ("" if name in AT_ROOT else f"/{name}")
            self.values[f"{name}_{providers.plugin(name).key_setting}"] = f"test-{name}-key"
        self.values["fal_jwks_url"] = f"{sim_url}/fal/.well-known/jwks.json"
        self.values["kling_secret_key"] = "sim-kling-secret"  # the simulator's default
        self.values.update(overrides)
        self.settings = Settings(**self.values)  # type: ignore[arg-type]
        self.store = JobStore.from_target(self.settings.redis_target())
        self.storage = open_storage(self.settings.storage_url)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GENBATCH_")}
        env.update({f"GENBATCH_{k.upper()}": v for k, v in self.values.items()})
        return env

    def start(self, name: str, *args: str, cwd: Path | None = None,
              prefix: Sequence[str] = (), **settings: str) -> subprocess.Popen[bytes]:
        """`python -m genbatch ARGS` as process `name` in its own session (killed as a
        group), in `cwd` (default: the work folder, where every log is), with the cluster's
        settings and `settings` on top; run by `prefix` (a command that runs the rest)."""
        log = (self.workdir / f"{name}.log").open("ab")
        env = self.env | {f"GENBATCH_{k.upper()}": v for k, v in settings.items()}
        proc = subprocess.Popen([*prefix, sys.executable, "-m", "genbatch", *args], env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=cwd or self.workdir)
        self.procs[name] = proc
        return proc

    def start_worker(self, name: str = "worker") -> subprocess.Popen[bytes]:
        return self.start(name, "worker", "--hostname", f"{name}@%h")

    def start_scheduler(self) -> subprocess.Popen[bytes]:
        return self.start("scheduler", "scheduler")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def submit(self, manifest: Path, **kwargs: Any) -> IngestResult:
        return ingest_manifest(manifest, store=self.store, storage=self.storage, **kwargs)

    def wait_until(self, check: Callable[[], bool], timeout: float = 120.0,
                   what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited with {proc.returncode}: "
                                         + self.log_tail(name))
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; batches: "
                             f"{self.store.batches.recent()}\n" + self.log_tail("worker"))

    def wait_batch(self, batch_id: str, timeout: float = 120.0) -> Batch:
        self.wait_until(lambda: self.store.batches.get(batch_id)["status"] == "completed",
                        timeout, f"batch {batch_id} to complete")
        return self.store.batches.get(batch_id)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def sim_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.sim_url}/_sim/stats", timeout=10).json()
        return stats


def sample_manifest(folder: Path, n: int, prefix: str = "q") -> Path:
    """A JSONL manifest of `n` rows on the bundled sample image (copied next to it), custom
    ids `<prefix>-000`..."""
    shutil.copytree(SAMPLES / "images", folder / "images", dirs_exist_ok=True)
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps({
        "custom_id": f"{prefix}-{i:03d}", "prompt": f"shot {i}", "image": "images/sneaker.jpg",
        "resolution": "480p", "duration": 5, "seed": i}) + "\n" for i in range(n)))
    return path


@contextmanager
def running_cluster(redis_url: str, workdir: Path, profile: SimProfile, *,
                    worker: bool = True, scheduler: bool = True,
                    **overrides: str) -> Iterator[Cluster]:
    """A simulator with `profile`, a worker and a scheduler (settings `overrides`; either
    process left out on request), stopped again on exit: the set-up most integration tests
    share."""
    with running_simulator(profile) as sim_url:
        c = Cluster(redis_url, sim_url, workdir, **overrides)
        if worker:
            c.start_worker()
        if scheduler:
            c.start_scheduler()
        try:
            yield c
        finally:
            c.stop_all()
