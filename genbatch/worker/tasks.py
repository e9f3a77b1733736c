"""Celery tasks: thin, named with stable strings, taking ids; the logic is in `steps`."""

from __future__ import annotations

from genbatch import notify as webhook_out
from genbatch.worker import steps
from genbatch.worker.app import app, runtime


@app.task(name="genbatch.submit")
def submit(item_id: str) -> str:
    return steps.submit_item(runtime(), item_id)


@app.task(name="genbatch.poll")
def poll(item_id: str) -> str:
    return steps.poll_item(runtime(), item_id)


@app.task(name="genbatch.download")
def download(item_id: str) -> str:
    return steps.download_item(runtime(), item_id)


@app.task(name="genbatch.finalize")
def finalize(batch_id: str) -> str:
    return steps.finalize_batch(runtime(), batch_id)


@app.task(name="genbatch.notify")
def notify(batch_id: str) -> str:
    return webhook_out.deliver(runtime(), batch_id)
