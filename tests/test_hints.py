"""A callback is a hint: an ambiguous submit settled by its attempt's callback once the
provider confirms the task, a claim the provider contradicts counted and ignored. Real Redis
job store and receiver; the provider behind httpx.MockTransport."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.testclient import TestClient

from genbatch.models import ItemState, PollResult, TaskStatus
from genbatch.providers import make_provider
from genbatch.providers.accounts import env_account
from genbatch.providers.base import Provider
from genbatch.store import JobStore
from genbatch.webhooks.receiver import create_app
from genbatch.worker import hints
from genbatch.worker.runtime import Runtime
from genbatch.worker.steps import finish
from tests.test_webhooks import Sent, hook_path, settings, submitted_item, ws_done


class MockedRuntime(Runtime):
    """A runtime whose provider adapters talk to `handler` instead of the network."""

    handler: httpx.MockTransport

    def provider(self, account: str) -> Provider:
        return make_provider(env_account(self.settings, account),
                             httpx.Client(transport=self.handler))


def known_tasks(*ids: str) -> httpx.MockTransport:
    """WaveSpeed answering polls of `ids` (running) and 404 for any other task."""

    def answer(request: httpx.Request) -> httpx.Response:
        task = request.url.path.split("/")[-2]
        if task not in ids:
            return httpx.Response(404, json={"code": 404, "message": "prediction not found"})
        return httpx.Response(200, json={"code": 200, "message": "success",
                                         "data": {"id": task, "status": "processing"}})

    return httpx.MockTransport(answer)


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def rt(redis_url: str, sent: Sent) -> MockedRuntime:
    runtime = MockedRuntime(settings(redis_url), enqueue=sent)
    runtime.handler = known_tasks("pred-lost")
    return runtime


@pytest.fixture
def client(rt: MockedRuntime) -> Iterator[TestClient]:
    with TestClient(create_app(rt.settings, runtime=rt)) as c:
        yield c


def ambiguous_item(store: JobStore, rt: Runtime) -> str:
    """A WaveSpeed item whose first submit's answer was lost."""
    iid = submitted_item(store, "wavespeed", "")
    store.items.transition(iid, [ItemState.SUBMITTED], ItemState.SUBMITTING)
    finish(rt, iid, [ItemState.SUBMITTING], ItemState.AMBIGUOUS, "READ_TIMEOUT",
           "the task may have been created")
    return iid


def test_the_callback_of_an_ambiguous_attempt_adopts_the_task_the_provider_confirms(
        client: TestClient, store: JobStore, rt: MockedRuntime, sent: Sent) -> None:
    iid = ambiguous_item(store, rt)
    assert store.batches.get("wb1")["ambiguous"] == "1"

    answer = client.post(hook_path(rt.settings, "wavespeed", iid), json=ws_done("pred-lost"))

    assert answer.json()["outcome"] == "confirming" and ("adopt", iid) in sent
    assert store.items.get(iid).state is ItemState.AMBIGUOUS  # nothing moved on its word
    assert hints.adopt(rt, iid) == "adopted"
    item = store.items.get(iid)
    assert (item.state, item.remote_id, item.cb_task) == (ItemState.SUBMITTED, "pred-lost", "")
    assert "from its attempt's callback" in item["history"]
    batch = store.batches.get("wb1")
    assert (batch["ambiguous"], batch["in_flight"]) == ("0", "1")


def test_a_callback_naming_a_task_the_provider_does_not_know_changes_nothing(
        client: TestClient, store: JobStore, rt: MockedRuntime) -> None:
    iid = ambiguous_item(store, rt)

    client.post(hook_path(rt.settings, "wavespeed", iid), json=ws_done("pred-forged"))

    assert hints.adopt(rt, iid) == "refused"
    assert store.items.get(iid).state is ItemState.AMBIGUOUS
    assert store.counters.read(["callback_disagreements"])[0] == {"wavespeed": "1"}


def test_a_callback_on_an_earlier_attempts_url_cannot_settle_a_later_submit(
        client: TestClient, store: JobStore, rt: MockedRuntime, sent: Sent) -> None:
    iid = ambiguous_item(store, rt)
    store.items.set_fields({iid: {"attempts": "2"}})

    answer = client.post(hook_path(rt.settings, "wavespeed", iid, attempt=1),
                         json=ws_done("pred-lost"))

    assert answer.json()["outcome"] == "stale" and ("adopt", iid) not in sent
    assert hints.adopt(rt, iid) == "skipped"


@pytest.mark.parametrize(("claimed", "answer", "counted"), [
    ("succeeded", TaskStatus.FAILED, {"wavespeed": "1"}),
    ("failed", TaskStatus.RUNNING, {"wavespeed": "1"}),
    ("succeeded", TaskStatus.SUCCEEDED, {}),
])
def test_a_claim_the_providers_answer_contradicts_is_counted(
        store: JobStore, rt: MockedRuntime, claimed: str, answer: TaskStatus,
        counted: dict[str, str]) -> None:
    iid = submitted_item(store, "wavespeed", "pred-7")
    store.items.set_fields({iid: {"cb_status": claimed}})

    hints.compare(rt, store.items.get(iid), PollResult(answer))

    assert store.counters.read(["callback_disagreements"])[0] == counted
    assert store.items.get(iid).cb_status == ""
