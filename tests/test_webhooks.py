"""Webhooks in: callback URLs and the receiver, on a real Redis job store.

Each callback goes through the real Starlette app (TestClient) and the real
`steps.apply_poll`; only Celery's enqueue is replaced by a list."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from genbatch.config import Settings
from genbatch.errors import ConfigError
from genbatch.models import ItemState
from genbatch.store import JobStore, item_id
from genbatch.webhooks.receiver import create_app
from genbatch.worker.callbacks import callback_url, token
from genbatch.worker.runtime import Runtime
from tests.dispatching import dispatch_items

SECRET = "s3cret-0123456789-abcdef"
BASE = "https://hooks.example.test/gb"
REQ = json.dumps({"prompt": "a cat", "image": "https://cdn.example.com/a.png"})


def settings(redis_url: str, **over: Any) -> Settings:
    values: dict[str, Any] = {"redis_url": redis_url, "webhook_base_url": BASE,
                              "webhook_secret": SECRET, "novita_api_key": "k",
                              "wavespeed_api_key": "k"}
    values.update(over)
    return Settings(**values)


class Sent(list[tuple[str, str]]):
    def __call__(self, kind: str, ident: str) -> None:
        self.append((kind, ident))


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def client(redis_url: str, sent: Sent) -> Iterator[TestClient]:
    s = settings(redis_url)
    app = create_app(s, runtime=Runtime(s, enqueue=sent))
    with TestClient(app) as c:
        yield c


def submitted_item(store: JobStore, provider: str, remote_id: str, bid: str = "wb1") -> str:
    """One item of a one-item batch, in flight as `submitted` with `remote_id`."""
    store.ingest.create(bid, {"provider": provider, "model": "seedance-v1.5-pro-i2v"}, 1.0)
    store.ingest.add_items(bid, [{"seq": "1", "state": "pending", "provider": provider, "line": "2",
                                  "custom_id": "c1", "model": "seedance-v1.5-pro-i2v", "req": REQ}])
    store.ingest.commit(bid, [provider])
    iid = item_id(bid, 1)
    assert dispatch_items(store, provider, bid, 5, 5, 1e12) == [iid]
    store.items.transition(iid, [ItemState.DISPATCHED], ItemState.SUBMITTING, incr={"attempts": 1})
    store.items.transition(iid, [ItemState.SUBMITTING], ItemState.SUBMITTED, timer=1e12,
                           fields={"remote_id": remote_id, "submitted_at": 1.0, "webhook": 1})
    return iid


def hook_path(s: Settings, provider: str, iid: str, attempt: int = 1) -> str:
    url = callback_url(s, provider, iid, attempt)
    assert url is not None and url.startswith(BASE + "/hooks/")
    return url.removeprefix(BASE)


def ws_done(task_id: str, status: str = "completed") -> dict[str, Any]:
    data: dict[str, Any] = {"id": task_id, "model": "m", "status": status, "error": "",
                            "outputs": ["https://cdn.example.com/v.mp4"]}
    if status == "failed":
        data.update(outputs=[], code=1403, error="task execution failed")
    return data


def novita_result(task_id: str, status: str) -> dict[str, Any]:
    """A Novita callback: the task-result body in the documented envelope (§9)."""
    videos = [{"video_url": "https://cdn.example.com/n.mp4", "video_url_ttl": "3600"}]
    result = {"task": {"task_id": task_id, "status": status, "reason": "moderation said no"},
              "videos": videos if status == "TASK_STATUS_SUCCEED" else [],
              "extra": {"seed": "42"}}
    return {"event_type": "ASYNC_TASK_RESULT", "payload": result}


# -- callback URLs --------------------------------------------------------------------------


def test_webhooks_are_off_unless_base_url_and_secret_are_set(redis_url: str) -> None:
    assert callback_url(Settings(redis_url=redis_url), "wavespeed", "b:1", 1) is None
    assert callback_url(settings(redis_url, webhook_secret=None), "wavespeed", "b:1", 1) is None
    assert callback_url(settings(redis_url, webhook_base_url=None), "novita", "b:1", 1) is None


def test_every_provider_gets_its_own_callback_url(redis_url: str) -> None:
    s = settings(redis_url)
    urls = {callback_url(s, p, "b:1", 1)
            for p in ("novita", "highwayapi", "wavespeed", "byteplus")}
    assert None not in urls and len(urls) == 4
    expected = f"{BASE}/hooks/novita/b%3A1/2/{token(s, 'novita', 'b:1', 2)}"
    assert callback_url(s, "novita", "b:1", 2) == expected


def test_tokens_are_per_attempt_item_and_provider_and_hide_the_secret(redis_url: str) -> None:
    s = settings(redis_url)
    tokens = {token(s, p, i, a) for p in ("novita", "wavespeed") for i in ("b:1", "b:2", "c:1")
              for a in (1, 2)}
    assert len(tokens) == 12
    assert all(len(t) == 64 and SECRET not in t for t in tokens)
    other = settings(redis_url, webhook_secret="another-secret-0123456789")
    assert token(other, "novita", "b:1", 1) != token(s, "novita", "b:1", 1)


def test_receiver_refuses_to_start_without_a_usable_secret(redis_url: str) -> None:
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET"):
        create_app(settings(redis_url, webhook_secret="short"))
    with pytest.raises(ConfigError, match="WEBHOOK_BASE_URL"):
        create_app(settings(redis_url, webhook_base_url=None))


# -- the receiver -----------------------------------------------------------------------------


def test_an_unsigned_callback_only_wakes_the_item_for_its_poll(
        client: TestClient, store: JobStore, redis_url: str, sent: Sent) -> None:
    """A callback with a valid URL token but no verified signature changes nothing by
    itself: it notes its claim and makes the item's poll due now."""
    iid = submitted_item(store, "wavespeed", "pred-1")
    path = hook_path(settings(redis_url), "wavespeed", iid)
    assert store.debug.timer(iid) == 1e12  # its next safety poll

    answer = client.post(path, json=ws_done("pred-1"))

    assert answer.status_code == 200 and answer.json()["outcome"] == "woken"
    item = store.items.get(iid)
    assert (item.state, item.video_url, item.cb_status) == (ItemState.SUBMITTED, "",
                                                           "succeeded")
    due = store.debug.timer(iid)
    assert due is not None and due <= time.time() + 5 and sent == []  # due now


@pytest.mark.parametrize(("provider", "body"), [
    ("wavespeed", {"code": 200, "message": "success", "data": ws_done("task-x", "failed")}),
    ("novita", novita_result("task-x", "TASK_STATUS_FAILED")),
    ("novita", novita_result("task-x", "TASK_STATUS_SUCCEED")),
])
def test_a_forged_result_for_the_items_own_task_fails_or_finishes_nothing(
        client: TestClient, store: JobStore, redis_url: str, sent: Sent, provider: str,
        body: dict[str, Any]) -> None:
    iid = submitted_item(store, provider, "task-x")

    answer = client.post(hook_path(settings(redis_url), provider, iid), json=body)

    assert answer.json()["outcome"] == "woken"
    assert store.items.get(iid).state is ItemState.SUBMITTED
    assert store.batches.get("wb1")["failed"] == "0" and sent == []


def test_a_progress_callback_is_no_reason_to_poll_early(client: TestClient, store: JobStore,
                                                        redis_url: str) -> None:
    iid = submitted_item(store, "novita", "task-run")
    body = novita_result("task-run", "TASK_STATUS_PROCESSING")

    answer = client.post(hook_path(settings(redis_url), "novita", iid), json=body)

    assert answer.json()["outcome"] == "noted"
    assert store.debug.timer(iid) == 1e12 and store.items.get(iid).cb_status == ""


def test_an_earlier_attempts_callback_is_stale(client: TestClient, store: JobStore,
                                               redis_url: str) -> None:
    iid = submitted_item(store, "novita", "task-2")
    store.items.set_fields({iid: {"attempts": "2"}})

    answer = client.post(hook_path(settings(redis_url), "novita", iid, attempt=1),
                         json=novita_result("task-1", "TASK_STATUS_SUCCEED"))

    assert answer.json()["outcome"] == "stale"
    assert store.items.get(iid).state is ItemState.SUBMITTED


@pytest.mark.parametrize("provider", ["wavespeed", "novita"])
def test_forged_callbacks_are_rejected_and_change_nothing(
        client: TestClient, store: JobStore, redis_url: str, sent: Sent, provider: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    iid = submitted_item(store, provider, "real-task")
    s = settings(redis_url)
    path = hook_path(s, provider, iid)
    other = "novita" if provider == "wavespeed" else "wavespeed"
    right_token = token(s, provider, iid, 1)
    done = (ws_done("real-task") if provider == "wavespeed"
            else novita_result("real-task", "TASK_STATUS_SUCCEED"))
    forged = (ws_done("someone-elses") if provider == "wavespeed"
              else novita_result("someone-elses", "TASK_STATUS_SUCCEED"))
    before = store.items.get(iid)

    wrong_token = path[: -len(right_token)] + "0" * 64
    assert client.post(wrong_token, json=done).status_code == 404
    assert client.post(path[:-8], json=done).status_code == 404  # truncated token
    assert client.post(path.replace(f"/{provider}/", f"/{other}/"), json=done).status_code == 404
    unknown = hook_path(s, provider, item_id("wb1", 99))
    assert client.post(unknown, json=done).status_code == 404
    assert client.post(path, content=b"not json").status_code == 400
    assert client.post(path, json=forged).status_code == 401
    assert client.post(path, json={"no": "task id"}).status_code == 401
    assert client.get(path).status_code == 405

    assert store.items.get(iid) == before and sent == []
    assert right_token not in caplog.text and SECRET not in caplog.text
    counted = store.counters.read(["callback_disagreements"])[0]
    assert counted == {provider: "2"}  # the two that named another task (or none)


def test_a_callback_before_the_submit_is_recorded_is_answered_at_once_for_a_retry(
        client: TestClient, redis_url: str, store: JobStore, sent: Sent) -> None:
    """The provider may call back before the worker has written the task id down: the
    receiver does not hold the request open (Novita gives up after 5 s) but answers 503,
    and the provider's retry applies it."""
    s = settings(redis_url)
    iid = submitted_item(store, "wavespeed", "pred-9")
    store.items.transition(iid, [ItemState.SUBMITTED], ItemState.SUBMITTING,
                           fields={"remote_id": ""})

    early = client.post(hook_path(s, "wavespeed", iid), json=ws_done("pred-9"))

    assert early.status_code == 503 and early.headers["retry-after"] == "5"
    assert store.items.get(iid)["state"] == "submitting" and sent == []
    store.items.transition(iid, [ItemState.SUBMITTING], ItemState.SUBMITTED,
                           fields={"remote_id": "pred-9"})
    retry = client.post(hook_path(s, "wavespeed", iid), json=ws_done("pred-9"))
    assert retry.status_code == 200 and retry.json()["outcome"] == "woken"
