"""Webhooks in: callback URLs and the receiver, on a real Redis job store.

Each callback goes through the real Starlette app (TestClient) and the real
`steps.apply_poll`; only Celery's enqueue is replaced by a list."""

from __future__ import annotations

import json
import logging
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
    store.items.transition(iid, [ItemState.DISPATCHED], ItemState.SUBMITTING)
    store.items.transition(iid, [ItemState.SUBMITTING], ItemState.SUBMITTED, timer=1e12,
                           fields={"remote_id": remote_id, "submitted_at": 1.0, "webhook": 1})
    return iid


def hook_path(s: Settings, provider: str, iid: str) -> str:
    url = callback_url(s, provider, iid)
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
    assert callback_url(Settings(redis_url=redis_url), "wavespeed", "b:1") is None
    assert callback_url(settings(redis_url, webhook_secret=None), "wavespeed", "b:1") is None
    assert callback_url(settings(redis_url, webhook_base_url=None), "novita", "b:1") is None


def test_every_provider_gets_its_own_callback_url(redis_url: str) -> None:
    s = settings(redis_url)
    urls = {callback_url(s, p, "b:1") for p in ("novita", "highwayapi", "wavespeed", "byteplus")}
    assert None not in urls and len(urls) == 4
    expected = f"{BASE}/hooks/novita/b%3A1/{token(s, 'novita', 'b:1')}"
    assert callback_url(s, "novita", "b:1") == expected


def test_tokens_are_per_item_and_provider_and_hide_the_secret(redis_url: str) -> None:
    s = settings(redis_url)
    tokens = {token(s, p, i) for p in ("novita", "wavespeed") for i in ("b:1", "b:2", "c:1")}
    assert len(tokens) == 6
    assert all(len(t) == 64 and SECRET not in t for t in tokens)
    other = settings(redis_url, webhook_secret="another-secret-0123456789")
    assert token(other, "novita", "b:1") != token(s, "novita", "b:1")


def test_receiver_refuses_to_start_without_a_usable_secret(redis_url: str) -> None:
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET"):
        create_app(settings(redis_url, webhook_secret="short"))
    with pytest.raises(ConfigError, match="WEBHOOK_BASE_URL"):
        create_app(settings(redis_url, webhook_base_url=None))


# -- the receiver -----------------------------------------------------------------------------


def test_wavespeed_callback_moves_the_item_as_a_poll_would(
        client: TestClient, store: JobStore, redis_url: str, sent: Sent) -> None:
    iid = submitted_item(store, "wavespeed", "pred-1")
    path = hook_path(settings(redis_url), "wavespeed", iid)

    answer = client.post(path, json=ws_done("pred-1"))

    assert answer.status_code == 200 and answer.json()["outcome"] == "downloading"
    item = store.items.get(iid)
    assert item["state"] == "downloading"
    assert item["video_url"] == "https://cdn.example.com/v.mp4"
    assert (item.get("callbacks"), item.get("polls")) == ("1", None)
    assert sent == [("download", iid)]
    # A duplicate delivery (providers retry) changes nothing.
    again = client.post(path, json=ws_done("pred-1"))
    assert again.status_code == 200 and again.json()["outcome"] == "skipped"
    assert store.items.get(iid) == item and sent == [("download", iid)]


def test_wavespeed_envelope_and_failed_callback(client: TestClient, store: JobStore,
                                                redis_url: str) -> None:
    iid = submitted_item(store, "wavespeed", "pred-2")
    envelope = {"code": 200, "message": "success", "data": ws_done("pred-2", "failed")}

    answer = client.post(hook_path(settings(redis_url), "wavespeed", iid), json=envelope)

    assert answer.status_code == 200 and answer.json()["outcome"] == "failed"
    item = store.items.get(iid)
    assert (item["state"], item["error_code"]) == ("failed", "1403")
    assert store.batches.get("wb1")["failed"] == "1"


def test_novita_task_result_callbacks(client: TestClient, store: JobStore, redis_url: str,
                                      sent: Sent) -> None:
    ok = submitted_item(store, "novita", "task-ok", bid="nb1")
    bad = submitted_item(store, "novita", "task-bad", bid="nb2")
    s = settings(redis_url)

    assert client.post(hook_path(s, "novita", ok),
                       json=novita_result("task-ok", "TASK_STATUS_SUCCEED")).status_code == 200
    assert client.post(hook_path(s, "novita", bad),
                       json=novita_result("task-bad", "TASK_STATUS_FAILED")).status_code == 200

    assert store.items.get(ok)["state"] == "downloading"
    assert store.items.get(ok)["seed"] == "42"
    failed = store.items.get(bad)
    assert (failed["state"], failed["error_message"]) == ("failed", "moderation said no")
    assert ("download", ok) in sent and ("finalize", "nb2") in sent


def test_a_running_callback_keeps_the_slow_safety_cadence(client: TestClient, store: JobStore,
                                                         redis_url: str) -> None:
    iid = submitted_item(store, "novita", "task-run")
    body = novita_result("task-run", "TASK_STATUS_PROCESSING")
    body["payload"]["task"]["eta"] = 1

    answer = client.post(hook_path(settings(redis_url), "novita", iid), json=body)

    assert answer.json()["outcome"] == "running"
    item = store.items.get(iid)
    due = store.debug.timer(iid)
    assert item["state"] == "submitted" and due is not None
    assert due - float(item["polled_at"]) >= 0.9 * settings(redis_url).webhook_safety_poll_s


@pytest.mark.parametrize("provider", ["wavespeed", "novita"])
def test_forged_callbacks_are_rejected_and_change_nothing(
        client: TestClient, store: JobStore, redis_url: str, sent: Sent, provider: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    iid = submitted_item(store, provider, "real-task")
    s = settings(redis_url)
    path = hook_path(s, provider, iid)
    other = "novita" if provider == "wavespeed" else "wavespeed"
    right_token = token(s, provider, iid)
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
    assert retry.status_code == 200 and retry.json()["outcome"] == "downloading"
    assert store.items.get(iid)["state"] == "downloading"
