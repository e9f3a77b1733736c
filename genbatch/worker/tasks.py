"""Celery tasks: thin, named with stable strings, taking ids; the logic is in `steps`."""

from __future__ import annotations

from typing import Any

from celery import signals

from genbatch.config import Settings
from genbatch.worker import chains as chain_steps
from genbatch.worker import download as download_steps
from genbatch.worker import hints, list_poll, steps
from genbatch.worker import notify as webhook_out
from genbatch.worker.app import QUEUES, app, worker_argv
from genbatch.worker.heartbeat import process_name, start_worker_heartbeat, worker_host
from genbatch.worker.reconcile import reconcile_item
from genbatch.worker.runtime import Runtime, configure

_runtime: Runtime | None = None


def install(runtime: Runtime) -> None:
    """Make `runtime` the one this process's tasks run with."""
    global _runtime
    _runtime = runtime


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("genbatch.worker.tasks.install(runtime) was not called")
    return _runtime


def run_worker(settings: Settings, **kwargs: Any) -> None:
    """Run a Celery worker in this process with the tasks below, beating its heartbeat.
    Exits with the worker's own exit code when it is not 0 (`app.worker_main` drops it: an
    "Unrecoverable error" would otherwise end the process with 0, like a requested stop)."""
    rt = configure(settings)
    rt.name = process_name(kwargs.get("hostname"))
    rt.host = worker_host(settings, kwargs.get("hostname"))
    install(rt)
    rt.warm()  # (a prefork pool's children build their own after the fork)
    stop = start_worker_heartbeat(rt, rt.name, tuple(dict.fromkeys(QUEUES.values())))
    workers: list[Any] = []
    signals.worker_init.connect(lambda sender, **_: workers.append(sender), weak=False)
    try:
        app.worker_main(worker_argv(settings, kwargs.get("hostname")))
    finally:
        stop.set()
    code = getattr(workers[-1], "exitcode", 0) if workers else 0
    if code:
        raise SystemExit(code)


@app.task(name="genbatch.submit")
def submit(item_id: str) -> str:
    return steps.submit_item(runtime(), item_id)


@app.task(name="genbatch.poll")
def poll(item_id: str) -> str:
    return steps.poll_item(runtime(), item_id)


@app.task(name="genbatch.listpoll")
def listpoll(account: str) -> str:
    return list_poll.list_account(runtime(), account)


@app.task(name="genbatch.download")
def download(item_id: str) -> str:
    return download_steps.download_item(runtime(), item_id)


@app.task(name="genbatch.chain")
def chain(item_id: str) -> str:
    return chain_steps.release_children(runtime(), item_id)


@app.task(name="genbatch.finalize")
def finalize(batch_id: str) -> str:
    return steps.finalize_batch(runtime(), batch_id)


@app.task(name="genbatch.reconcile")
def reconcile(item_id: str) -> str:
    return reconcile_item(runtime(), item_id).outcome


@app.task(name="genbatch.adopt")
def adopt(item_id: str) -> str:
    return hints.adopt(runtime(), item_id)


@app.task(name="genbatch.notify")
def notify(batch_id: str) -> str:
    return webhook_out.deliver(runtime(), batch_id)
