"""Which host served a batch: the name a worker records, and the per-batch count of it."""

from __future__ import annotations

import os
import socket

from genbatch.config import Settings
from genbatch.models import ItemState
from genbatch.store import JobStore
from genbatch.store.batches import DOWNLOADS, SUBMITS, host_count
from genbatch.worker.heartbeat import process_name, worker_host
from tests.test_dispatch import make_batch


def test_the_host_setting_wins_then_the_node_name_then_the_machine() -> None:
    assert worker_host(Settings(hostname="rack-7"), "w1@host-x") == "rack-7"
    assert worker_host(Settings(), "w1@host-x") == "host-x"
    assert worker_host(Settings(), "w1@%h") == socket.gethostname()  # Celery's own %h
    assert worker_host(Settings(), "w1") == socket.gethostname()
    assert worker_host(Settings(), None) == socket.gethostname()


def test_a_process_name_names_its_host_once() -> None:
    machine, pid = socket.gethostname(), os.getpid()
    assert process_name("w1@%h") == f"w1@{machine}:{pid}"
    assert process_name("w1@box-a") == f"w1@box-a:{pid}"
    assert process_name("w1") == f"w1@{machine}:{pid}"
    assert process_name(None) == f"worker@{machine}:{pid}"


def test_a_step_counts_for_its_host_only_when_the_transition_applies(store: JobStore) -> None:
    make_batch(store, "b", 3)
    store.items.transition("b:1", [ItemState.PENDING], ItemState.DISPATCHED)
    first = store.items.transition("b:1", [ItemState.DISPATCHED], ItemState.SUBMITTING,
                                   incr={host_count(SUBMITS, "host-a"): 1})
    again = store.items.transition("b:1", [ItemState.DISPATCHED], ItemState.SUBMITTING,
                                   incr={host_count(SUBMITS, "host-b"): 1})  # a late duplicate
    store.items.transition("b:2", "*", ItemState.SUBMITTING,
                           incr={host_count(SUBMITS, "host-b"): 1})
    store.items.transition("b:3", "*", ItemState.SUBMITTING,
                           incr={host_count(SUBMITS, "host-b"): 1})
    store.items.transition("b:3", "*", ItemState.SUCCEEDED,
                           incr={host_count(DOWNLOADS, "host:with:colons"): 1})
    assert first.applied and not again.applied
    served = store.batches.served_by("b")
    assert served == {"host-b": {SUBMITS: 2}, "host-a": {SUBMITS: 1},
                      "host:with:colons": {DOWNLOADS: 1}}
    assert list(served) == ["host-b", "host-a", "host:with:colons"]  # busiest first
    assert store.batches.served_by("nothing-yet") == {}
