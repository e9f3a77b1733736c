"""Failover: the qualification table, and the move itself on a real Redis (no worker: the
failures are fed to steps.finish the way the submit and poll steps do)."""

from __future__ import annotations

import json

import pytest

from genbatch.config import Settings
from genbatch.console.views import batch_summary
from genbatch.models import ItemState
from genbatch.store import JobStore
from genbatch.store.history import attempt_history, compact_history, failed_over_from
from genbatch.worker.failover import failover_reason as classify
from genbatch.worker.finalize import result_row
from genbatch.worker.runtime import Runtime
from genbatch.worker.steps import finish
from tests.dispatching import dispatch_items

QUALIFYING = [
    # submit refused for the account or the model: nothing was created
    ("submitting", "BILLING_BALANCE_NOT_ENOUGH", "account"),
    ("submitting", "NOT_ENOUGH_BALANCE", "account"),
    ("submitting", "AccountOverdueError", "account"),
    ("submitting", "INVALID_API_KEY", "account"),
    ("submitting", "AuthenticationError", "account"),
    ("submitting", "HTTP_403", "account"),
    ("submitting", "API_NOT_FOUND", "model_unavailable"),
    ("submitting", "InvalidEndpoint.ClosedEndpoint", "model_unavailable"),
    ("submitting", "InvalidEndpoint.NotFound", "model_unavailable"),
    # the remote task reported FAILED for a provider-side reason
    ("submitted", "TASK_STATUS_FAILED", "generation_failed"),
    ("submitted", "TASK_FAILED", "generation_failed"),
    ("submitted", "InternalServiceError", "generation_failed"),
    ("submitted", "1403", "generation_failed"),
    ("submitted", "5000", "generation_failed"),
    ("submitted", "failed", "generation_failed"),
]
NEVER = [
    # the row's own problem
    ("submitting", "INVALID_REQUEST_BODY"),
    ("submitting", "InvalidParameter"),
    ("submitting", "MissingParameter"),
    ("submitting", "ILLEGAL_PROMPT"),
    ("submitting", "InputImageSensitiveContentDetected"),
    ("submitting", "1401"),
    ("submitting", "HTTP_400"),
    ("submitted", "OutputVideoSensitiveContentDetected"),
    ("submitted", "1200"),
    ("submitted", "1402"),
    # a poll refused: the task exists and may still run and bill
    ("submitted", "TASK_NOT_FOUND"),
    ("submitted", "INVALID_API_KEY"),
    ("submitted", "HTTP_404"),
    ("submitted", "no_output"),
    # a generation failure code is only a verdict when the task reported it
    ("submitting", "TASK_STATUS_FAILED"),
    # ours, or already paid for
    ("dispatched", "input_unavailable"),
    ("downloading", "download_failed"),
    ("downloading", "output_gone"),
    ("downloading", "bad_output"),
    # unknown codes never qualify
    ("submitting", "SOMETHING_NEW"),
    ("submitted", "SOMETHING_NEW"),
    ("submitted", ""),
]


@pytest.mark.parametrize(("where", "code", "reason"), QUALIFYING)
def test_qualifying_failures(where: str, code: str, reason: str) -> None:
    assert classify(ItemState(where), code) == reason


@pytest.mark.parametrize(("where", "code"), NEVER)
def test_failures_that_never_fail_over(where: str, code: str) -> None:
    assert classify(ItemState(where), code) is None


# -- the move, on a real Redis -------------------------------------------------------------
REQ = {"prompt": "p", "image": "stored:inputs/abc.jpg", "resolution": "720p", "duration": 5}


def setup(store: JobStore, redis_url: str, fallback: str, req: dict[str, object] = REQ,
          state: str = "submitted", on_free: bool = False
          ) -> tuple[Runtime, list[tuple[str, str]], str]:
    bid = "b1"
    store.ingest.create(bid, {"fallback": fallback}, created_at=1.0)
    store.ingest.add_items(bid, [{"seq": "1", "state": "pending", "provider": "novita",
                                  "model": "seedance-v1.5-pro-i2v", "custom_id": "a", "line": "2",
                                  "req": json.dumps(req), "row": "{}", "est_cost": "0.1"}])
    store.ingest.commit(bid, ["novita"])
    iid = f"{bid}:1"
    assert dispatch_items(store, "novita", bid, 10, 10, 1e12) == [iid]
    store.items.transition(iid, [ItemState.DISPATCHED], ItemState.SUBMITTING, incr={"attempts": 1})
    if state == "submitted":
        store.items.transition(iid, [ItemState.SUBMITTING], ItemState.SUBMITTED,
                               fields={"remote_id": "r-1"})
    sent: list[tuple[str, str]] = []
    rt = Runtime(Settings(redis_url=redis_url, dispatch_on_free=on_free),
                 enqueue=lambda kind, ident: sent.append((kind, ident)))
    return rt, sent, iid


def test_a_failed_over_item_is_dispatched_to_the_fallback_at_once(
        store: JobStore, redis_url: str) -> None:
    """With dispatch on free (the default), the worker that fails an item over dispatches it
    to the fallback account itself, without waiting for the scheduler's tick."""
    rt, sent, iid = setup(store, redis_url, "byteplus:seedance-v1.5-pro-i2v", on_free=True)

    assert finish(rt, iid, [ItemState.SUBMITTED], ItemState.FAILED, "TASK_STATUS_FAILED",
                  "boom") == "failed_over"

    assert sent == [("submit", iid)]
    assert store.items.get(iid)["state"] == "dispatched"
    assert (store.queues.in_flight("novita"), store.queues.in_flight("byteplus")) == (0, 1)


def test_task_failure_moves_the_item_to_the_fallback_queue_in_one_step(
        store: JobStore, redis_url: str) -> None:
    rt, sent, iid = setup(store, redis_url, "byteplus:seedance-v1.5-pro-i2v")

    assert finish(rt, iid, [ItemState.SUBMITTED], ItemState.FAILED, "TASK_STATUS_FAILED",
                  "boom") == "failed_over"

    item = store.items.get(iid)
    batch = store.batches.get("b1")
    assert (item["state"], item["provider"], item["model"]) == (
        "pending", "byteplus", "seedance-v1.5-pro-i2v")
    assert item["fallback_used"] == "1"
    assert item["failed_over_from"] == "novita:seedance-v1.5-pro-i2v"
    assert item["remote_id"] == "" and item["error_code"] == ""
    assert float(item["est_cost"]) > 0
    assert store.debug.pending("byteplus", "b1") == [iid]
    assert store.queues.queued_providers("b1", ["byteplus"]) == ["byteplus"]
    assert (batch["pending"], batch["in_flight"], batch["failed"]) == ("1", "0", "0")
    assert batch_summary(batch)["failover"] == {
        "fallback": "byteplus:seedance-v1.5-pro-i2v", "failed_over": 1}
    assert store.queues.in_flight("novita") == 0  # the old account's slot is free
    assert sent == []  # the batch was never seen with no open item: no finalize
    assert store.batches.recount("b1") == {k: int(batch[k]) for k in store.batches.recount("b1")}

    # The fallback fails too: the item ends failed, exactly once failed over.
    assert dispatch_items(store, "byteplus", "b1", 10, 10, 1e12) == [iid]
    store.items.transition(iid, [ItemState.DISPATCHED], ItemState.SUBMITTING, incr={"attempts": 1})
    store.items.transition(iid, [ItemState.SUBMITTING], ItemState.SUBMITTED,
                           fields={"remote_id": "r-2"})
    assert finish(rt, iid, [ItemState.SUBMITTED], ItemState.FAILED, "InternalServiceError",
                  "again") == "failed"
    item = store.items.get(iid)
    assert item["state"] == "failed" and item["provider"] == "byteplus"
    assert "failing over from novita:seedance-v1.5-pro-i2v" in item["error_message"]
    assert sent == [("finalize", "b1")]

    history = attempt_history(item)
    assert [(a["provider"], a["remote_task_id"], a["state"], a["error_code"])
            for a in history] == [("novita", "r-1", "failed", "TASK_STATUS_FAILED"),
                                  ("byteplus", "r-2", "failed", "InternalServiceError")]
    row = result_row(item)
    assert row["failed_over_from"] == "novita:seedance-v1.5-pro-i2v"
    assert row["attempts"] == 2 and row["attempt_history"] == history
    assert compact_history(history) == ("novita:seedance-v1.5-pro-i2v:failed:TASK_STATUS_FAILED"
                                        " > byteplus:seedance-v1.5-pro-i2v:failed:"
                                        "InternalServiceError")


def test_balance_refusal_on_submit_fails_over(store: JobStore, redis_url: str) -> None:
    rt, _, iid = setup(store, redis_url, "highwayapi:seedance-v1.5-pro-i2v", state="submitting")
    assert finish(rt, iid, [ItemState.SUBMITTING], ItemState.FAILED, "BILLING_BALANCE_NOT_ENOUGH",
                  "no money") == "failed_over"
    assert store.items.get(iid)["provider"] == "highwayapi"


def test_a_row_error_is_not_failed_over(store: JobStore, redis_url: str) -> None:
    rt, sent, iid = setup(store, redis_url, "byteplus:seedance-v1.5-pro-i2v",
                          state="submitting")
    assert finish(rt, iid, [ItemState.SUBMITTING], ItemState.FAILED, "INVALID_REQUEST_BODY",
                  "bad") == "failed"
    item = store.items.get(iid)
    assert (item["state"], item["provider"], item.get("fallback_used")) == (
        "failed", "novita", None)
    assert item["error_message"] == "bad"
    assert sent == [("finalize", "b1")]


def test_a_row_that_does_not_fit_the_fallback_stays_failed_with_the_reason(
        store: JobStore, redis_url: str) -> None:
    # This WaveSpeed id is the 1080p endpoint; the row asks 720p.
    rt, _, iid = setup(store, redis_url, "wavespeed:bytedance/seedance-v1-pro-i2v-1080p")
    assert finish(rt, iid, [ItemState.SUBMITTED], ItemState.FAILED, "TASK_STATUS_FAILED",
                  "boom") == "failed"
    item = store.items.get(iid)
    assert item["state"] == "failed" and item["provider"] == "novita"
    assert item["error_message"].startswith("boom (not failed over to wavespeed:")
    assert "resolution: " in item["error_message"] and "1080p endpoint" in item["error_message"]


def test_a_fallback_named_by_a_pinning_id_moves_the_item_with_that_resolution(
        store: JobStore, redis_url: str) -> None:
    req = {**REQ, "resolution": None}
    rt, _, iid = setup(store, redis_url, "wavespeed:bytedance/seedance-v1-lite-i2v-480p", req)
    assert finish(rt, iid, [ItemState.SUBMITTED], ItemState.FAILED, "TASK_STATUS_FAILED",
                  "boom") == "failed_over"
    item = store.items.get(iid)
    assert (item["provider"], item["model"]) == ("wavespeed", "seedance-v1-lite-i2v")
    assert item.request.resolution == "480p"


def test_no_fallback_just_fails(store: JobStore, redis_url: str) -> None:
    rt, _, iid = setup(store, redis_url, "")
    assert finish(rt, iid, [ItemState.SUBMITTED], ItemState.FAILED, "TASK_STATUS_FAILED",
                  "boom") == "failed"
    assert store.items.get(iid)["error_message"] == "boom"


def test_a_cancelled_batch_does_not_fail_over(store: JobStore, redis_url: str) -> None:
    rt, _, iid = setup(store, redis_url, "byteplus:seedance-v1.5-pro-i2v")
    store.batches.set_fields("b1", {"cancel_requested": "1.0"})
    assert finish(rt, iid, [ItemState.SUBMITTED], ItemState.FAILED, "TASK_STATUS_FAILED",
                  "boom") == "failed"


def test_expired_never_fails_over(store: JobStore, redis_url: str) -> None:
    rt, _, iid = setup(store, redis_url, "byteplus:seedance-v1.5-pro-i2v")
    assert finish(rt, iid, [ItemState.SUBMITTED], ItemState.EXPIRED, "TASK_STATUS_FAILED",
                  "late") == "expired"


def test_ambiguous_never_fails_over(store: JobStore, redis_url: str) -> None:
    rt, _, iid = setup(store, redis_url, "byteplus:seedance-v1.5-pro-i2v", state="submitting")
    assert finish(rt, iid, [ItemState.SUBMITTING], ItemState.AMBIGUOUS, "HTTP_502",
                  "?") == "ambiguous"
    assert store.items.get(iid)["provider"] == "novita"


def test_history_of_a_retried_item_without_provider_fields() -> None:
    item = {"provider": "byteplus", "model": "m2", "state": "succeeded", "remote_id": "r3",
            "history": json.dumps([
                {"state": "failed", "remote_id": "r1", "error_code": "X"},  # a retry at A
                {"state": "failed", "remote_id": "r2", "error_code": "TASK_FAILED",
                 "provider": "novita", "model": "m1", "failed_over": True},
            ])}
    assert [(a["provider"], a["remote_task_id"]) for a in attempt_history(item)] == [
        ("novita", "r1"), ("novita", "r2"), ("byteplus", "r3")]


def test_failed_over_from_only_while_on_the_fallback() -> None:
    item = {"provider": "byteplus", "model": "m", "failed_over_from": "novita:m"}
    assert failed_over_from(item) == "novita:m"
    # `submit --resume` put the row back on its own provider: a new row, not failed over
    assert failed_over_from({**item, "provider": "novita"}) is None
    assert failed_over_from({"provider": "novita", "model": "m"}) is None
