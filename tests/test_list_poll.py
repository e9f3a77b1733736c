"""Kling's account list read instead of each task's polls (worker/list_poll.py): on a real
Redis, through the worker's own steps, Kling's answers from an httpx.MockTransport."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from genbatch import providers
from genbatch.config import Settings
from genbatch.models import ItemState
from genbatch.providers import accounts as provider_accounts
from genbatch.store import JobStore
from genbatch.worker.dispatch import dispatch_provider
from genbatch.worker.list_poll import list_account, turns
from genbatch.worker.polling import list_poll_interval
from genbatch.worker.steps import submit_item
from tests.test_hints import MockedRuntime

MODEL = "kling-v2-1"
VIDEO = {"videos": [{"id": "v", "url": "https://v.klingai.com/a.mp4", "duration": "5"}]}


def test_about_two_listings_per_task_that_ends() -> None:
    s = Settings(poll_min_interval_s=5.0, list_poll_s=1.0)
    assert list_poll_interval(20.0, 20, s) == 1.0  # 0.5 s wanted: the floor
    assert list_poll_interval(120.0, 5, s) == 12.0  # 120 / (2 x 5)
    assert list_poll_interval(120.0, 1, s) == 18.0  # a re-poll's spacing at most (15 %)
    assert list_poll_interval(120.0, 5, Settings(list_poll_s=1.0, time_factor=10)) == 1.2


class Kling:
    """Kling's submit and list answers; `listed` is what the next list GET shows."""

    def __init__(self) -> None:
        self.created = 0
        self.listed: list[dict[str, object]] = []
        self.lists: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.created += 1
            data: object = {"task_id": f"t{self.created}", "task_status": "submitted"}
        else:
            self.lists.append(request)
            data = self.listed
        return httpx.Response(200, json={"code": 0, "message": "SUCCEED", "request_id": "r",
                                         "data": data})


def _runtime(redis_url: str, kling: Kling, **over: str) -> MockedRuntime:
    sent: list[tuple[str, str]] = []
    rt = MockedRuntime(Settings(redis_url=redis_url, kling_access_key="ak",
                                kling_secret_key="sk", **over),  # type: ignore[arg-type]
                       enqueue=lambda kind, ident: sent.append((kind, ident)))
    rt.handler = httpx.MockTransport(kling)
    return rt


def _submitted(store: JobStore, rt: MockedRuntime, n: int) -> list[str]:
    store.ingest.create("L", {}, created_at=1.0)
    request = json.dumps({"prompt": "a cat", "image": "https://cdn.example.com/a.png"})
    store.ingest.add_items("L", [{"seq": str(i), "state": "pending", "provider": "kling",
                                  "model": MODEL, "req": request} for i in range(1, n + 1)])
    store.ingest.commit("L", ["kling"])
    assert dispatch_provider(rt, "kling") == n
    ids = [f"L:{i}" for i in range(1, n + 1)]
    assert [submit_item(rt, iid) for iid in ids] == [ItemState.SUBMITTED] * n
    return ids


def test_one_listing_moves_every_task_of_ours_that_ended(store: JobStore,
                                                        redis_url: str) -> None:
    kling = Kling()
    rt = _runtime(redis_url, kling)
    done, running, failed, moved_on = _submitted(store, rt, 4)
    item = store.items.get(done)
    assert item.list_polled  # its own polls are a safety net now
    assert float(item["poll_due"]) - time.time() >= 0.9 * rt.settings.webhook_safety_poll_s
    # The fourth item's attempt now has another task: t4's end is not its own.
    store.items.transition(moved_on, [ItemState.SUBMITTED], ItemState.SUBMITTED,
                           fields={"remote_id": "t4-next"})
    kling.listed = [
        {"task_id": "t9", "task_status": "succeed", "task_result": VIDEO},  # not ours
        {"task_id": "t4", "task_status": "succeed", "task_result": VIDEO},
        {"task_id": "t3", "task_status": "failed", "task_status_msg": "content policy"},
        {"task_id": "t2", "task_status": "processing"},
        {"task_id": "t1", "task_status": "succeed", "task_result": VIDEO},
    ]
    assert list_account(rt, "kling") == "2 moved"
    assert dict(kling.lists[-1].url.params) == {"pageNum": "1", "pageSize": "100"}
    assert store.items.get(done).state is ItemState.DOWNLOADING
    assert store.items.get(done).video_url == "https://v.klingai.com/a.mp4"
    assert store.items.get(failed).state is ItemState.FAILED
    assert store.items.get(failed).error_message == "content policy"
    assert store.items.get(running).state is ItemState.SUBMITTED
    assert store.items.get(moved_on).state is ItemState.SUBMITTED
    assert list_account(rt, "kling") == "0 moved"  # seen already: nothing twice


def test_an_account_with_tasks_in_flight_is_listed_once_per_turn(store: JobStore,
                                                                 redis_url: str) -> None:
    rt = _runtime(redis_url, Kling())
    assert turns(rt) == []  # nothing in flight: nothing to list
    _submitted(store, rt, 2)
    assert turns(rt) == ["kling"]
    assert turns(rt) == []  # its turn is not over


def test_the_listing_cadence_is_the_accounts_slots_not_the_tasks_left(
        store: JobStore, redis_url: str) -> None:
    """A batch's last tasks are listed as often as a full account: each ends the batch as
    late as it is seen."""
    rt = _runtime(redis_url, Kling())
    _submitted(store, rt, 2)
    assert turns(rt) == ["kling"]
    slots = provider_accounts.accounts(rt.settings, "kling")[0].max_in_flight
    typical = min(spec.typical_seconds for spec in providers.model_specs("kling").values())
    full = list_poll_interval(typical, slots, rt.settings)
    assert full < list_poll_interval(typical, 2, rt.settings)  # two tasks would wait longer
    turn_s = store.debug.client.pttl(store.debug.key("turn", "listpoll:kling")) / 1000
    assert full - 1.0 < turn_s <= full


def test_list_polling_off_polls_each_task(store: JobStore, redis_url: str) -> None:
    kling = Kling()
    rt = _runtime(redis_url, kling, list_poll_s="0")
    (iid,) = _submitted(store, rt, 1)
    item = store.items.get(iid)
    assert not item.list_polled
    assert float(item["poll_due"]) - time.time() < rt.settings.webhook_safety_poll_s / 2
    assert turns(rt) == []


@pytest.mark.parametrize("answer", [httpx.Response(500, json={"code": 5000, "message": "x"}),
                                    httpx.Response(200, json={"code": 0, "data": None})])
def test_a_listing_that_fails_leaves_the_tasks_to_their_own_polls(
        store: JobStore, redis_url: str, answer: httpx.Response) -> None:
    kling = Kling()
    rt = _runtime(redis_url, kling)
    (iid,) = _submitted(store, rt, 1)
    rt.handler = httpx.MockTransport(lambda request: answer)
    assert list_account(rt, "kling") in ("listing refused", "0 moved")
    assert store.items.get(iid).state is ItemState.SUBMITTED


def test_with_callbacks_on_the_tasks_are_not_listed(store: JobStore, redis_url: str) -> None:
    """A callback tells sooner than a listing: with webhooks on, Kling's tasks call back and
    the account is not listed (its items keep the callbacks' safety cadence)."""
    rt = _runtime(redis_url, Kling(), webhook_base_url="https://hooks.example.com",
                  webhook_secret="0123456789abcdef0123456789abcdef")
    (iid,) = _submitted(store, rt, 1)
    item = store.items.get(iid)
    assert item.webhook and not item.list_polled
    assert turns(rt) == []
