"""Account health and heartbeats on a real Redis: streaks, degrade, pause, probe, resume;
the failure classes; the backoff; the waiting reasons; the tables a person reads."""

from __future__ import annotations

from typing import TypedDict

import pytest
from pydantic import SecretStr
from rich.console import Console

from genbatch.config import Settings
from genbatch.console.health import health_table, waiting_reasons
from genbatch.console.views import batches_table, shown_status
from genbatch.errors import (
    AmbiguousSubmit,
    PermanentProviderError,
    RateLimited,
    RetryableProviderError,
)
from genbatch.providers import accounts as provider_accounts
from genbatch.providers.accounts import base_url_hint, key_hint
from genbatch.providers.failures import FailureClass, failure_class
from genbatch.records import Batch
from genbatch.store import JobStore
from genbatch.store.health import AccountHealth
from genbatch.store.heartbeats import Beat
from genbatch.worker.accounts import backoff_s
from genbatch.worker.runtime import Runtime


class Limits(TypedDict):
    degrade_after: int
    pause_after: int
    probe_s: float


LIMITS = Limits(degrade_after=3, pause_after=2, probe_s=60.0)


@pytest.mark.parametrize(("exc", "cls"), [
    (RetryableProviderError("novita", "CONNECT_ERROR", "refused"), FailureClass.CONNECT),
    (AmbiguousSubmit("novita", "READ_TIMEOUT", "no answer"), FailureClass.CONNECT),
    (PermanentProviderError("novita", "INVALID_API_KEY", "bad", 403), FailureClass.AUTH),
    (PermanentProviderError("byteplus", "AuthenticationError", "bad", 401), FailureClass.AUTH),
    (PermanentProviderError("wavespeed", "HTTP_401", "", 401), FailureClass.AUTH),
    (PermanentProviderError("novita", "BILLING_BALANCE_NOT_ENOUGH", "", 400),
     FailureClass.BALANCE),
    (PermanentProviderError("byteplus", "AccountOverdueError", "", 403), FailureClass.BALANCE),
    (PermanentProviderError("wavespeed", "402", "", 402), FailureClass.BALANCE),
    (RetryableProviderError("novita", "CREATE_TASK_FAILED", "", 502), FailureClass.SERVER),
    (RateLimited("novita", "RATE_LIMIT_EXCEEDED", "", 429), FailureClass.RATE),
    (PermanentProviderError("novita", "INVALID_REQUEST_BODY", "bad", 400), None),
    (PermanentProviderError("novita", "INVALID_URL", "bad base URL", None), None),
])
def test_failure_classes(exc: RetryableProviderError, cls: FailureClass | None) -> None:
    assert failure_class(exc) == cls


def test_connect_failures_degrade_and_a_success_clears_them(store: JobStore) -> None:
    h = store.health
    for n in range(1, 4):
        got = h.record_failure("novita", "connect", "CONNECT_ERROR: refused", float(n), **LIMITS,
                               base_hint=base_url_hint("novita"))
        assert got.failures == {"connect": n}
        assert got.state == ("degraded" if n >= 3 else "ok")
    assert got.reason == "connect: CONNECT_ERROR: refused" and got.since == 3.0
    assert got.fix == ("check that GENBATCH_NOVITA_BASE_URL is right and reachable from the "
                       "workers")
    h.record_success("novita", 4.0)
    after = h.get("novita")
    assert (after.state, after.failures, after.last_ok_at) == ("ok", {}, 4.0)


def test_429s_are_counted_but_never_degrade(store: JobStore) -> None:
    for n in range(5):
        got = store.health.record_failure("novita", "429", "RATE_LIMIT_EXCEEDED", float(n),
                                          **LIMITS)
    assert got.state == "ok" and got.failures == {"429": 5}


def test_another_class_ends_a_streak(store: JobStore) -> None:
    store.health.record_failure("novita", "connect", "x", 1.0, **LIMITS)
    store.health.record_failure("novita", "connect", "x", 2.0, **LIMITS)
    got = store.health.record_failure("novita", "5xx", "y", 3.0, **LIMITS)
    assert got.failures == {"5xx": 1} and got.state == "ok"


def test_auth_refusals_pause_with_the_fix_then_a_probe_every_interval(store: JobStore) -> None:
    h = store.health
    hint = key_hint("wavespeed")
    h.record_failure("wavespeed", "auth", "HTTP_401: unauthorized", 10.0, **LIMITS, key_hint=hint)
    got = h.record_failure("wavespeed", "auth", "HTTP_401: unauthorized", 11.0, **LIMITS,
                           key_hint=hint)
    assert got.state == "paused" and got.probe_at == 71.0
    assert "GENBATCH_WAVESPEED_API_KEY" in got.fix and "accounts resume wavespeed" in got.fix
    assert not h.claim_probe("wavespeed", 70.0, 60.0)  # not yet
    assert h.claim_probe("wavespeed", 71.0, 60.0)  # one caller gets the probe ...
    assert not h.claim_probe("wavespeed", 71.5, 60.0)  # ... and only one per interval
    again = h.record_failure("wavespeed", "auth", "HTTP_401: unauthorized", 72.0, **LIMITS)
    assert again.state == "paused" and again.probe_at == 132.0
    h.resume("wavespeed", 80.0)
    assert h.get("wavespeed").state == "ok" and h.get("wavespeed").failures == {}


def test_an_ok_account_has_no_probe(store: JobStore) -> None:
    assert not store.health.claim_probe("novita", 1e12, 60.0)


def test_connect_backoff_doubles_up_to_its_cap(redis_url: str) -> None:
    rt = Runtime(Settings(redis_url=redis_url, account_backoff_max_s=30.0))
    exc = RetryableProviderError("novita", "CONNECT_ERROR", "refused")

    def after(streak: int) -> float:
        return backoff_s(rt, exc, AccountHealth("novita", failures={"connect": streak}))

    assert [after(n) for n in (1, 2, 3, 4, 5, 6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff_s(rt, RateLimited("novita", "429", "", 429, retry_after=7.0), None) == 7.0


def test_heartbeats_live_their_ttl_and_carry_key_names_only(store: JobStore) -> None:
    beat = Beat(name="w1@h:1", at=5.0, pid=1, host="h", queues=("genbatch.submit",),
                keys=("novita", "ws-a"), providers=("novita", "wavespeed"))
    store.heartbeats.beat_worker(beat, ttl_s=30)
    store.heartbeats.beat_scheduler(Beat(name="s@h:2", at=6.0), ttl_s=30)
    assert store.heartbeats.workers() == [beat]
    assert store.heartbeats.scheduler() == Beat(name="s@h:2", at=6.0)
    store.heartbeats.stop_worker("w1@h:1")
    assert store.heartbeats.workers() == []


def test_settings_name_the_keys_they_hold_never_the_values() -> None:
    s = Settings(novita_api_key=SecretStr("sk-secret"), byteplus_api_key=SecretStr(""))
    assert provider_accounts.keys_held(s) == ("novita",)


def _batch(**fields: str) -> Batch:
    return Batch({"id": "20261201-101010-abcdef", "status": "in_progress", "total": "4",
                  "pending": "2", "in_flight": "2", "created_at": "1", **fields})


def test_waiting_reasons_most_basic_first() -> None:
    batch = _batch()
    paused = AccountHealth("byteplus", state="paused", reason="auth: AuthenticationError",
                           fix="check GENBATCH_BYTEPLUS_API_KEY on the workers")
    worker = Beat(name="w", at=1.0, keys=("novita",))
    assert waiting_reasons(batch, [AccountHealth("novita")], [], None) == [
        "no scheduler running: nothing is dispatched or polled (start `genbatch scheduler`)",
        "no worker running: nothing is submitted, polled or downloaded "
        "(start `genbatch worker`)"]
    assert waiting_reasons(batch, [AccountHealth("novita"), paused], [worker],
                           Beat(name="s", at=1.0)) == [
        "no worker holds a key for byteplus (set GENBATCH_BYTEPLUS_API_KEY on a worker)",
        "account byteplus is paused: auth: AuthenticationError; check "
        "GENBATCH_BYTEPLUS_API_KEY on the workers"]
    assert waiting_reasons(batch, [AccountHealth("novita")], [worker],
                           Beat(name="s", at=1.0)) == []


def test_a_cancelled_batch_says_cancelling_while_items_finish() -> None:
    assert shown_status(_batch(cancel_requested="5")) == "cancelling"
    assert shown_status(_batch(cancel_requested="5", status="cancelled")) == "cancelled"
    assert shown_status(_batch()) == "in_progress"


@pytest.mark.parametrize("width", [80, 120])
def test_batch_ids_are_never_cut(width: int) -> None:
    batches = [_batch(succeeded="3", failed="1", expired="1", cancelled="1", ambiguous="1",
                      downloading="1")]
    console = Console(width=width, record=True, file=None, force_terminal=False)
    console.print(batches_table(batches, width=width))
    text = console.export_text()
    assert "20261201-101010-abcdef" in text
    assert max(len(line) for line in text.splitlines()) <= width


def test_the_health_table_names_state_reason_and_fix() -> None:
    console = Console(width=120, record=True, force_terminal=False)
    console.print(health_table([AccountHealth("novita", state="paused", reason="balance: X",
                                              fix="top up the account")], [(0, 20)], []))
    text = console.export_text()
    assert "paused" in text and "balance: X" in text and "top up the account" in text
    assert "0/20" in text


def test_metrics_expose_account_health_and_heartbeats(store: JobStore) -> None:
    from prometheus_client import generate_latest

    from genbatch.metrics import registry

    store.health.record_failure("byteplus", "balance", "AccountOverdueError", 1.0,
                                degrade_after=3, pause_after=1, probe_s=60.0)
    store.heartbeats.beat_worker(Beat(name="w", at=1.0, keys=("novita",)), ttl_s=30)
    text = generate_latest(registry(store, {"novita": 20, "byteplus": 20})).decode()
    assert 'genbatch_account_state{provider="byteplus",state="paused"} 1.0' in text
    assert 'genbatch_account_state{provider="novita",state="ok"} 1.0' in text
    assert 'genbatch_account_failures{class="balance",provider="byteplus"} 1.0' in text
    assert "genbatch_workers_alive 1.0" in text
    assert 'genbatch_workers_with_key{provider="novita"} 1.0' in text
    assert "genbatch_scheduler_alive 0.0" in text


def test_status_detail_names_the_providers_model_id_and_what_it_waits_on() -> None:
    from genbatch.console.detail import batch_detail
    from genbatch.console.health import Diagnosis

    batch = _batch(provider="byteplus", model="seedance-v1.5-pro-i2v", fallback="novita:m",
                   notify_url="https://hooks.example.com/t/SECRET-TOKEN")
    diagnosis = Diagnosis(("no worker running: …",), (AccountHealth("byteplus"),), (), None)
    console = Console(width=100, record=True, force_terminal=False)
    console.print(batch_detail(batch, diagnosis, []))
    text = console.export_text()
    assert "byteplus seedance-v1.5-pro-i2v (byteplus's id: seedance-1-5-pro-251215)" in text
    assert "waiting: no worker running" in text
    assert "notify hooks.example.com" in text and "SECRET-TOKEN" not in text
    assert "20261201-101010-abcdef" in text
