"""Every submit identifiable where the provider echoes something: a BytePlus submit always
carries a seed (the row's, else a random one recorded with the item before the POST), so
reconciliation can tell concurrent ambiguous submits of one model apart. Real Redis job
store; the provider behind httpx.MockTransport."""

from __future__ import annotations

import json

import httpx
import pytest

from genbatch.models import ItemState
from genbatch.store import JobStore, item_id
from genbatch.worker.steps import submit_item
from tests.dispatching import dispatch_items
from tests.test_hints import MockedRuntime
from tests.test_webhooks import settings

MODEL = "seedance-v1.5-pro-i2v"


def dispatched(store: JobStore, provider: str, request: dict[str, object], bid: str) -> str:
    store.ingest.create(bid, {"provider": provider, "model": MODEL}, 1.0)
    store.ingest.add_items(bid, [{"seq": "1", "state": "pending", "provider": provider,
                                  "line": "2", "custom_id": "c1", "model": MODEL,
                                  "req": json.dumps(request)}])
    store.ingest.commit(bid, [provider])
    iid = item_id(bid, 1)
    assert dispatch_items(store, provider, bid, 5, 5, 1e12) == [iid]
    return iid


@pytest.fixture
def bodies() -> list[dict[str, object]]:
    """The JSON body of every request the provider received."""
    return []


def runtime(redis_url: str, bodies: list[dict[str, object]]) -> MockedRuntime:
    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"id": "cgt-1", "task_id": "t-1"})

    rt = MockedRuntime(settings(redis_url, webhook_base_url=None, byteplus_api_key="k"),
                       enqueue=lambda kind, ident: None)
    rt.handler = httpx.MockTransport(answer)
    return rt


@pytest.mark.parametrize(("provider", "row_seed", "seeded"), [
    ("byteplus", None, True), ("byteplus", 77, False), ("novita", None, False)])
def test_a_byteplus_submit_always_carries_a_seed_recorded_before_the_post(
        store: JobStore, redis_url: str, bodies: list[dict[str, object]], provider: str,
        row_seed: int | None, seeded: bool) -> None:
    request: dict[str, object] = {"prompt": "a cat", "image": "https://cdn.example.com/a.png"}
    if row_seed is not None:
        request["seed"] = row_seed
    iid = dispatched(store, provider, request, f"seed-{provider}-{row_seed}")

    assert submit_item(runtime(redis_url, bodies), iid) == ItemState.SUBMITTED

    (body,) = bodies
    recorded = store.items.get(iid).request.seed
    if seeded:  # drawn at random, sent, and kept with the item (its results show it)
        assert isinstance(body["seed"], int) and recorded == body["seed"]
        assert 0 <= recorded <= 2**31 - 1
    else:
        assert body.get("seed") == row_seed and recorded == row_seed
