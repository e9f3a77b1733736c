"""Callbacks from all four providers in their documented shapes (docs/wire/notes.md §9), through
the real receiver app on a real Redis: Novita/HighwayAPI's envelope and event types,
BytePlus's task object, WaveSpeed's signature (GENBATCH_WAVESPEED_WEBHOOK_SECRET)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from genbatch.models import ItemState
from genbatch.providers.signing import signature
from genbatch.store import JobStore
from genbatch.webhooks.receiver import create_app
from genbatch.worker.runtime import Runtime
from tests.test_webhooks import Sent, hook_path, novita_result, settings, submitted_item, ws_done

WS_SECRET = "whsec_0123456789abcdef0123456789abcdef"


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def client(redis_url: str, sent: Sent) -> Iterator[TestClient]:
    s = settings(redis_url)
    with TestClient(create_app(s, runtime=Runtime(s, enqueue=sent))) as c:
        yield c


def bp_task(task_id: str, status: str) -> dict[str, Any]:
    body: dict[str, Any] = {"id": task_id, "model": "seedance-1-5-pro-251215",
                            "status": status, "created_at": 1, "updated_at": 2, "seed": 7}
    if status == "succeeded":
        body.update(content={"video_url": "https://cdn.example.com/b.mp4"},
                    usage={"completion_tokens": 108900, "total_tokens": 108900})
    return body


@pytest.mark.parametrize("provider", ["novita", "highwayapi"])
def test_novita_family_envelope_and_other_event_types(
        client: TestClient, store: JobStore, redis_url: str, provider: str) -> None:
    iid = submitted_item(store, provider, "task-1")
    path = hook_path(settings(redis_url), provider, iid)
    other = {"event_type": "SOMETHING_ELSE", "payload": novita_result(
        "task-1", "TASK_STATUS_SUCCEED")["payload"]}

    ignored = client.post(path, json=other)

    assert (ignored.status_code, ignored.json()["outcome"]) == (200, "ignored")
    assert store.items.get(iid)["state"] == "submitted"
    done = client.post(path, json=novita_result("task-1", "TASK_STATUS_SUCCEED"))
    assert (done.status_code, done.json()["outcome"]) == (200, "woken")  # read: succeeded
    assert store.items.get(iid).cb_status == "succeeded"


@pytest.mark.parametrize("wrapper", [None, "data", "payload"])
def test_byteplus_callback_is_the_task_object_with_or_without_a_wrapper(
        client: TestClient, store: JobStore, redis_url: str, wrapper: str | None) -> None:
    iid = submitted_item(store, "byteplus", "cgt-1")
    task = bp_task("cgt-1", "succeeded")

    answer = client.post(hook_path(settings(redis_url), "byteplus", iid),
                         json=task if wrapper is None else {wrapper: task})

    assert (answer.status_code, answer.json()["outcome"]) == (200, "woken")
    assert store.items.get(iid).cb_status == "succeeded"  # read through the wrapper


def test_byteplus_running_then_failed(client: TestClient, store: JobStore,
                                      redis_url: str) -> None:
    iid = submitted_item(store, "byteplus", "cgt-2")
    path = hook_path(settings(redis_url), "byteplus", iid)

    assert client.post(path, json=bp_task("cgt-2", "running")).json()["outcome"] == "noted"
    failed = bp_task("cgt-2", "failed")
    failed["error"] = {"code": "InternalServiceError", "message": "boom"}
    assert client.post(path, json=failed).json()["outcome"] == "woken"
    item = store.items.get(iid)
    assert (item.state, item.cb_status) == (ItemState.SUBMITTED, "failed")


# -- WaveSpeed signatures ---------------------------------------------------------------


@pytest.fixture
def signed(redis_url: str, sent: Sent) -> Iterator[TestClient]:
    s = settings(redis_url, wavespeed_webhook_secret=WS_SECRET)
    with TestClient(create_app(s, runtime=Runtime(s, enqueue=sent))) as c:
        yield c


def sign(body: bytes, webhook_id: str = "msg-1", at: float | None = None,
         secret: str = WS_SECRET) -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    return {"webhook-id": webhook_id, "webhook-timestamp": stamp,
            "webhook-signature": "v3," + signature(secret, webhook_id, stamp, body),
            "content-type": "application/json"}


def test_a_signed_wavespeed_callback_is_verified_and_a_replay_refused(
        signed: TestClient, store: JobStore, redis_url: str) -> None:
    iid = submitted_item(store, "wavespeed", "pred-1")
    path = hook_path(settings(redis_url), "wavespeed", iid)
    body = json.dumps(ws_done("pred-1")).encode()

    first = signed.post(path, content=body, headers=sign(body))
    replay = signed.post(path, content=body, headers=sign(body))

    assert (first.status_code, first.json()["outcome"]) == (200, "downloading")
    assert replay.status_code == 409 and "replay" in replay.json()["error"]


def test_unsigned_stale_or_wrongly_signed_wavespeed_callbacks_change_nothing(
        signed: TestClient, store: JobStore, redis_url: str) -> None:
    iid = submitted_item(store, "wavespeed", "pred-2")
    path = hook_path(settings(redis_url), "wavespeed", iid)
    body = json.dumps(ws_done("pred-2")).encode()
    before = store.items.get(iid)
    other_body = json.dumps(ws_done("pred-2", "failed")).encode()
    bad = {
        "unsigned": {"content-type": "application/json"},
        "stale": sign(body, "m-stale", at=time.time() - 301),
        "future": sign(body, "m-future", at=time.time() + 301),
        "wrong secret": sign(body, "m-wrong", secret="whsec_" + "f" * 32),
        "another body": sign(other_body, "m-other"),
        "v1 scheme": {**sign(body, "m-v1"), "webhook-signature": "v1," + "0" * 64},
    }

    for what, headers in bad.items():
        answer = signed.post(path, content=body, headers=headers)
        assert answer.status_code == 401, what
    assert store.items.get(iid) == before
    ok = signed.post(path, content=body, headers=sign(body, "m-ok", at=time.time() - 290))
    assert ok.status_code == 200  # inside the 300 s window, the `whsec_` prefix stripped


def test_a_signed_delivery_not_applied_may_be_retried_with_the_same_id(
        signed: TestClient, store: JobStore, redis_url: str) -> None:
    iid = submitted_item(store, "wavespeed", "pred-3")
    store.items.transition(iid, [ItemState.SUBMITTED], ItemState.SUBMITTING,
                           fields={"remote_id": ""})
    path = hook_path(settings(redis_url), "wavespeed", iid)
    body = json.dumps(ws_done("pred-3")).encode()

    assert signed.post(path, content=body, headers=sign(body, "m-3")).status_code == 503
    store.items.transition(iid, [ItemState.SUBMITTING], ItemState.SUBMITTED,
                           fields={"remote_id": "pred-3"})
    assert signed.post(path, content=body, headers=sign(body, "m-3")).status_code == 200


def test_without_the_setting_wavespeed_callbacks_need_only_the_url_token(
        client: TestClient, store: JobStore, redis_url: str) -> None:
    iid = submitted_item(store, "wavespeed", "pred-4")
    answer = client.post(hook_path(settings(redis_url), "wavespeed", iid), json=ws_done("pred-4"))
    assert answer.status_code == 200
