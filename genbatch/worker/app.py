"""The Celery app (`genbatch.worker.app:app`) and its configuration.

Messages carry only an item or batch id. Workers ack late, are rejected back to the queue
if they die, prefetch one message at a time, and send task events for Flower. Submit, poll
and download have their own queues so a poll storm cannot starve downloads.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from celery import Celery

from genbatch.config import RedisTarget, Settings
from genbatch.worker import broker_fix

broker_fix.apply()  # kombu 5.7 + celery 5.7 crash on a lost Redis connection (see module)

QUEUES: dict[str, str] = {
    "submit": "genbatch.submit",
    "poll": "genbatch.poll",
    "listpoll": "genbatch.poll",  # an account's task list, for every task in it at once
    "download": "genbatch.download",
    "chain": "genbatch.download",  # a chain's next shots: their parent's last frame
    "finalize": "genbatch.control",
    "notify": "genbatch.control",
    "reconcile": "genbatch.control",
    "adopt": "genbatch.control",
}
TASK_NAMES: dict[str, str] = {kind: f"genbatch.{kind}" for kind in QUEUES}

app = Celery("genbatch")
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=QUEUES["finalize"],
    task_routes={TASK_NAMES[k]: {"queue": q} for k, q in QUEUES.items()},
    worker_send_task_events=True,  # Flower: every task from the moment a worker receives it
    # no task-sent event: it doubled the cost of each of the many small messages (a second
    # publish per send) to show a queued task in Flower, which `genbatch status` shows
    task_send_sent_event=False,
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,
    broker_transport_options={"visibility_timeout": 3600},  # BROKER_OPTIONS
    worker_hijack_root_logger=False,
    worker_soft_shutdown_timeout=10.0,
    worker_enable_soft_shutdown_on_idle=True,
)


def connect(settings: Settings) -> None:
    """Point the app at the settings' Redis (the broker): its URL, or with Sentinels kombu's
    `sentinel://` transport, which asks them for the primary on each new connection (a
    worker's consumer reconnects to a promoted replica by itself)."""
    target = settings.redis_target()
    app.conf.broker_url, options = broker(target)
    app.conf.broker_transport_options = {**BROKER_OPTIONS, **options}


BROKER_OPTIONS: dict[str, Any] = {"visibility_timeout": 3600}


def broker(target: RedisTarget) -> tuple[str, dict[str, Any]]:
    """Celery's broker URL and transport options for `target`."""
    if target.url:
        return target.url, {}
    user = quote(target.username or "", safe="")
    auth = f"{user}:{quote(target.password, safe='')}@" if target.password else ""
    url = ";".join(f"sentinel://{auth}{host}:{port}/{target.db}"
                   for host, port in target.sentinels)
    options: dict[str, Any] = {"master_name": target.master_name}
    if target.sentinel_password:
        options["sentinel_kwargs"] = {"password": target.sentinel_password}
    return url, options


def send(kind: str, ident: str) -> None:
    app.send_task(TASK_NAMES[kind], args=[ident], queue=QUEUES[kind])


def worker_argv(settings: Settings, hostname: str | None = None) -> list[str]:
    argv = [
        "worker", f"--loglevel={settings.log_level}",
        f"--concurrency={settings.worker_concurrency}", f"--pool={settings.worker_pool}",
        "--queues", ",".join(dict.fromkeys(QUEUES.values())), "--task-events",
        "--without-gossip", "--without-mingle",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    return argv
