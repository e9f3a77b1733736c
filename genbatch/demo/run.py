"""`genbatch demo`: the whole system on one machine with no services installed.

Starts a private Redis (AOF on, its password in the work folder, handed to the children in
their environment), the provider simulator, one worker and the scheduler as child processes,
submits the bundled sample manifest, shows live progress, prints the results, and stops
every child again — also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import httpx
from rich.console import Console

from genbatch import providers
from genbatch.config import Settings, redact_url
from genbatch.demo import SAMPLES
from genbatch.demo.redis_server import free_port, start_redis
from genbatch.errors import ConfigError, GenbatchError
from genbatch.models import BatchStatus

if TYPE_CHECKING:
    from genbatch.store import JobStore

SAMPLE_MANIFEST = SAMPLES / "demo.csv"
TIME_FACTOR = 20.0  # the demo compresses time: a 40 s generation takes 2 s
SIM_PROFILE = {"time_factor": TIME_FACTOR, "latency_mean_s": 40.0, "latency_sigma": 0.4,
               "queue_delay_s": 4.0, "seed": 7, "keys": {"demo-highwayapi-key":
                                                         {"provider": "highwayapi"}}}


class Children:
    """Child processes, each in its own session so a Ctrl-C reaches only us first."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.logdir.mkdir(parents=True, exist_ok=True)
        with (self.logdir / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "genbatch", *args], env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def dead(self) -> str | None:
        return next((n for n, p in self.procs.items() if p.poll() is not None), None)

    def stop_all(self, timeout: float = 20.0) -> None:
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        for proc in self.procs.values():  # leave no grandchild behind either
            _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def demo_settings(redis_url: str, sim_url: str, workdir: Path) -> dict[str, str]:
    """Settings of every demo process, as GENBATCH_* values."""
    values = {"redis_url": redis_url, "storage_url": str(workdir / "output"),
              "time_factor": str(TIME_FACTOR), "log_level": "WARNING",
              "worker_concurrency": "8"}
    for name in providers.names():  # the simulator serves each under /<name> (and three
        # at the root, as on their own hosts)
        values[f"{name}_base_url"] = f"{sim_url}/{name}"
        values[f"{name}_api_key"] = f"demo-{name}-key"
    return values


def _wait_http(url: str, children: Children, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if children.dead():
            raise GenbatchError(f"the {children.dead()} process exited at start; see its log")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise GenbatchError(f"{url} did not answer in {timeout:.0f} s")


def _wait_alive(store: JobStore, children: Children, timeout: float = 60.0) -> None:
    """Until the worker and the scheduler have each written a heartbeat: a batch watched
    before then would be said to wait for processes the demo has just started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if children.dead():
            raise GenbatchError(f"the {children.dead()} process exited at start; see its log")
        if store.heartbeats.workers() and store.heartbeats.scheduler() is not None:
            return
        time.sleep(0.1)
    raise GenbatchError(f"the worker and scheduler did not start in {timeout:.0f} s; see "
                        f"{children.logdir}")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_demo(workdir: Path, out: Console, err: Console) -> int:
    from genbatch.console.views import results_table, watch_batch
    from genbatch.producer.ingest import ingest_manifest
    from genbatch.storage import open_storage
    from genbatch.store import JobStore
    from genbatch.worker.finalize import result_row

    workdir = workdir.resolve()
    try:
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--workdir {workdir}: cannot create it: {exc.strerror}") from None
    children = Children(workdir / "logs")
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    redis_server = None
    try:
        err.print(f"[bold]genbatch demo[/] in {workdir}")
        redis_server = start_redis(workdir / "redis")
        sim_port = free_port()
        sim_url = f"http://127.0.0.1:{sim_port}"
        profile = workdir / "simulator-profile.json"
        profile.write_text(json.dumps(SIM_PROFILE, indent=2))
        values = demo_settings(redis_server.url, sim_url, workdir)
        env = {**os.environ, **{f"GENBATCH_{k.upper()}": v for k, v in values.items()}}
        children.start("simulator", ["simulate", "--port", str(sim_port),
                                     "--profile", str(profile)], env)
        _wait_http(f"{sim_url}/_sim/stats", children)
        children.start("worker", ["worker", "--hostname", "demo@%h"], env)
        children.start("scheduler", ["scheduler"], env)
        err.print(f"redis {redact_url(redis_server.url)}, simulator {sim_url}, 1 worker, "
                  f"1 scheduler (time compressed {TIME_FACTOR:g}x); logs in {children.logdir}")
        settings = Settings(**values)  # type: ignore[arg-type]
        store = JobStore.from_url(redis_server.url)
        _wait_alive(store, children)
        storage = open_storage(settings.storage_url)
        result = ingest_manifest(SAMPLE_MANIFEST, store=store, storage=storage,
                                 provider=None, model=None)
        assert result.batch_id is not None
        err.print(f"submitted batch [bold]{result.batch_id}[/]: {result.valid} rows over "
                  f"{len({p for p, _ in result.by_model})} providers, estimated "
                  f"${result.est_cost:.2f}")
        batch = watch_batch(store, result.batch_id, err, stop=lambda: bool(children.dead()))
        if batch.status is not BatchStatus.COMPLETED:
            err.print(f"[red]the {children.dead()} process stopped; see {children.logdir}")
            return 1
        rows = [result_row(i) for i in store.items.of_batch(result.batch_id, int(batch["total"]))]
        out.print(results_table(rows))
        out.print(f"videos and manifests: {workdir / 'output' / result.batch_id}")
        for name in ("results_jsonl", "results_csv", "errors_jsonl"):
            out.print(f"  {name.replace('_', '.')}: {batch.get(name)}", highlight=False)
        return 0
    except KeyboardInterrupt:
        err.print("interrupted: stopping the demo's processes")
        return 130
    finally:
        children.stop_all()
        if redis_server is not None:
            redis_server.stop()
        signal.signal(signal.SIGTERM, previous)
