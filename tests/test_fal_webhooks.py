"""fal's webhooks into the receiver, on a real Redis job store: every delivery's ED25519
signature is checked under fal's key set, and a verified one settles an ambiguous submit
(fal has no task list: this is the only way it settles)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.testclient import TestClient

from genbatch.models import ItemState
from genbatch.providers import fal_hooks
from genbatch.store import JobStore, item_id
from genbatch.webhooks.receiver import create_app
from genbatch.worker.runtime import Runtime
from tests.dispatching import dispatch_items
from tests.test_webhooks import Sent, hook_path, settings

KEY = Ed25519PrivateKey.generate()
MODEL = "kling-v2.1-std-i2v"
REQ = json.dumps({"prompt": "a cat", "image": "https://cdn.example.com/a.png"})
JWKS = "https://keys.fal.test/.well-known/jwks.json"


@pytest.fixture(autouse=True)
def fal_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    raw = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def get(url: str, **_: Any) -> httpx.Response:
        assert url == JWKS
        return httpx.Response(200, json={"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}]},
                              request=httpx.Request("GET", url))

    fal_hooks.KEYS.clear()
    monkeypatch.setattr(httpx, "get", get)
    yield
    fal_hooks.KEYS.clear()


@pytest.fixture
def client(redis_url: str) -> Iterator[TestClient]:
    s = settings(redis_url, fal_api_key="k", fal_jwks_url=JWKS)
    with TestClient(create_app(s, runtime=Runtime(s, enqueue=Sent()))) as c:
        yield c


def ambiguous_item(store: JobStore, attempts: int = 1) -> str:
    """A fal item whose last submit's outcome is unknown (its `attempts`-th)."""
    store.ingest.create("fb1", {"provider": "fal", "model": MODEL}, 1.0)
    store.ingest.add_items("fb1", [{"seq": "1", "state": "pending", "provider": "fal",
                                    "line": "2", "custom_id": "c1", "model": MODEL,
                                    "req": REQ, "account": "fal"}])
    store.ingest.commit("fb1", ["fal"])
    iid = item_id("fb1", 1)
    assert dispatch_items(store, "fal", "fb1", 5, 5, 1e12) == [iid]
    store.items.transition(iid, [ItemState.DISPATCHED], ItemState.SUBMITTING,
                           incr={"attempts": attempts})
    store.items.transition(iid, [ItemState.SUBMITTING], ItemState.AMBIGUOUS,
                           fields={"error_code": "HTTP_500", "error_message": "maybe created"})
    return iid


def delivery(request_id: str, key: Ed25519PrivateKey = KEY) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"request_id": request_id, "status": "OK", "payload": {
        "video": {"url": "https://v3.fal.media/files/x/out.mp4"}}}).encode()
    stamp = str(int(time.time()))
    signed = f"{request_id}\nuser-1\n{stamp}\n{hashlib.sha256(body).hexdigest()}".encode()
    return body, {"content-type": "application/json", "x-fal-webhook-request-id": request_id,
                  "x-fal-webhook-user-id": "user-1", "x-fal-webhook-timestamp": stamp,
                  "x-fal-webhook-signature": key.sign(signed).hex()}


def test_a_verified_callback_adopts_the_ambiguous_submits_request(
        client: TestClient, store: JobStore, redis_url: str) -> None:
    iid = ambiguous_item(store)
    body, headers = delivery("req-1")
    answer = client.post(hook_path(settings(redis_url), "fal", iid), content=body,
                         headers=headers)
    assert answer.status_code == 200, answer.text
    item = store.items.get(iid)
    assert (item["state"], item["remote_id"], item["adopted"]) == \
        ("downloading", "req-1", "req-1")
    assert "signed callback" in json.loads(item["history"])[-1]["note"]
    # The same delivery again is a replay.
    again = client.post(hook_path(settings(redis_url), "fal", iid), content=body,
                        headers=headers)
    assert again.status_code == 409


def test_a_bad_signature_changes_nothing(client: TestClient, store: JobStore,
                                         redis_url: str) -> None:
    iid = ambiguous_item(store)
    body, headers = delivery("req-1", Ed25519PrivateKey.generate())
    before = store.items.get(iid)
    answer = client.post(hook_path(settings(redis_url), "fal", iid), content=body,
                         headers=headers)
    assert answer.status_code == 401
    del headers["x-fal-webhook-signature"]
    assert client.post(hook_path(settings(redis_url), "fal", iid), content=body,
                       headers=headers).status_code == 401
    assert store.items.get(iid) == before


def test_an_earlier_attempts_request_is_not_adopted(client: TestClient, store: JobStore,
                                                    redis_url: str) -> None:
    iid = ambiguous_item(store, attempts=2)
    body, headers = delivery("req-old")
    answer = client.post(hook_path(settings(redis_url), "fal", iid, attempt=1), content=body,
                         headers=headers)
    assert (answer.status_code, answer.json()["outcome"]) == (200, "stale")
    assert store.items.get(iid).state is ItemState.AMBIGUOUS
