"""The conformance suite: one class of tests a provider's adapter runs against its
simulated protocol. Subclass it and give the `conformance_target` fixture::

    from genbatch.testing import ProviderConformance, Target

    class TestAcme(ProviderConformance):
        @pytest.fixture(scope="class")
        @classmethod
        def conformance_target(cls) -> Target:
            return Target("acme")

Parametrize that fixture to run the suite over several providers (tests/conformance).
Each class (and each parameter) gets its own simulator, receiver and keys (`harness.py`).
Tests of an optional part the plugin does not declare check that the adapter refuses it
without a request, or are skipped (callbacks).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from genbatch.errors import (
    AmbiguousSubmit,
    PermanentProviderError,
    ProviderError,
    RateLimited,
    RetryableProviderError,
    SlotFull,
)
from genbatch.models import TaskStatus
from genbatch.providers.failures import FailureClass, failure_class
from genbatch.testing.capabilities import CapabilityChecks
from genbatch.testing.harness import Harness, Target, expect, running_harness


class ProviderConformance(CapabilityChecks):
    """Every check of the contract; see the module docstring and docs/writing-a-provider.md."""

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_target(cls) -> Target:
        raise pytest.UsageError(
            f"{cls.__name__}: give a `conformance_target` fixture returning a Target")

    @pytest.fixture(scope="class")
    @classmethod
    def kit(cls, conformance_target: Target,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
        workdir = tmp_path_factory.mktemp(f"conformance-{conformance_target.provider}")
        with running_harness(conformance_target, workdir) as harness:
            yield harness

    # -- the happy path --------------------------------------------------------------------

    def test_task_succeeds_and_its_video_is_stored(self, kit: Harness) -> None:
        adapter, remote_id = kit.submit("happy")
        result = kit.poll_to_end(adapter, remote_id)
        assert result.status is TaskStatus.SUCCEEDED, result
        stored = kit.download(result, remote_id.replace("/", "_"))
        assert stored.size > 0
        assert Path(stored.uri.removeprefix("file://")).is_file()
        videos = kit.stats()["videos"]
        # The simulator's task id: the remote id, or the last part of a resource name (a
        # Gemini operation is `models/<model>/operations/<id>`).
        task_id = remote_id if remote_id in videos else remote_id.rsplit("/", 1)[-1]
        assert stored.sha256 == videos[task_id], f"not the video of task {remote_id}"

    # -- failures, each classified ----------------------------------------------------------

    def test_task_failure_is_failed_with_a_code(self, kit: Harness) -> None:
        adapter, remote_id = kit.submit("task_fail")
        result = kit.poll_to_end(adapter, remote_id)
        assert result.status is TaskStatus.FAILED, result
        assert result.error_code, f"a failed task without an error code: {result}"

    def test_5xx_on_poll_is_retryable(self, kit: Harness) -> None:
        adapter, remote_id = kit.submit("poll_5xx")
        expect(RetryableProviderError, lambda: adapter.poll(kit.model, remote_id))

    def test_bad_key_is_permanent_and_an_auth_failure(self, kit: Harness) -> None:
        adapter = kit.adapter(key=kit.keys.bad)
        exc = expect(PermanentProviderError, lambda: adapter.submit(kit.model, kit.request()))
        assert failure_class(exc) is FailureClass.AUTH, exc

    def test_no_balance_is_a_balance_failure(self, kit: Harness) -> None:
        adapter = kit.adapter("no_balance")
        exc = expect(PermanentProviderError, lambda: adapter.submit(kit.model, kit.request()))
        assert failure_class(exc) is FailureClass.BALANCE, exc

    def test_429_is_rate_limited(self, kit: Harness) -> None:
        """A 429 created nothing: RateLimited (the rate is cut, the item requeued) — or, on
        a provider that declares its 429 a daily cap (Runway: it has no per-minute limit),
        that cap, which pauses the account and fails no item."""
        adapter = kit.adapter("rate")
        daily = {c.casefold() for c in kit.plugin.account_codes.daily_cap}
        refusal = expect(ProviderError, lambda: adapter.submit(kit.model, kit.request()))
        if not isinstance(refusal, RateLimited):
            cls = failure_class(refusal)
            declared = isinstance(refusal, PermanentProviderError) \
                and refusal.code.casefold() in daily and cls is not None and cls.pauses
            if not declared:
                raise AssertionError(f"a 429 must be RateLimited or a declared daily cap, "
                                     f"got {type(refusal).__name__}: {refusal}")
        assert not kit.has_tasks(kit.keys["rate"])

    # -- ambiguous submits: never retried blindly ---------------------------------------------

    def test_submit_read_timeout_is_ambiguous(self, kit: Harness) -> None:
        adapter = kit.adapter("hang", submit_timeout_s=0.5)
        expect(AmbiguousSubmit, lambda: adapter.submit(kit.model, kit.request()))
        assert kit.has_tasks(kit.keys["hang"])

    def test_dropped_answer_is_ambiguous_and_the_task_exists(self, kit: Harness) -> None:
        adapter = kit.adapter("drop")
        expect(AmbiguousSubmit, lambda: adapter.submit(kit.model, kit.request()))
        assert kit.has_tasks(kit.keys["drop"])

    @pytest.mark.parametrize(("fault", "created"), [("error_after", True),
                                                   ("error_before", False)])
    def test_500_on_submit_is_ambiguous_whether_or_not_it_created(
            self, kit: Harness, fault: str, created: bool) -> None:
        adapter = kit.adapter(fault)
        expect(AmbiguousSubmit, lambda: adapter.submit(kit.model, kit.request()))
        assert kit.has_tasks(kit.keys[fault]) is created

    # -- limits as declared --------------------------------------------------------------------

    def test_over_concurrency_queues_or_refuses_as_declared(self, kit: Harness) -> None:
        adapter, first = kit.submit("busy")
        if not kit.plugin.limits.queues:
            exc = expect(ProviderError, lambda: adapter.submit(kit.model, kit.request()))
            assert isinstance(exc, RateLimited | SlotFull), (
                f"limits.queues is False, so a submit over the concurrency must raise "
                f"RateLimited or SlotFull, not {type(exc).__name__}: {exc}")
            return
        try:
            second = adapter.submit(kit.model, kit.request())
        except ProviderError as exc:
            raise AssertionError(
                "limits.queues is True, so a submit over the concurrency must be accepted "
                f"and wait queued, not raise {type(exc).__name__}: {exc}") from exc
        assert adapter.poll(kit.model, second).status is TaskStatus.QUEUED
        assert adapter.poll(kit.model, first).status is TaskStatus.RUNNING

    # -- the key stays secret ------------------------------------------------------------------

    def test_key_appears_in_no_error_log_or_result(
            self, kit: Harness, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        seen: list[str] = []
        for fault in ("task_fail", "happy"):
            adapter, remote_id = kit.submit(fault)
            seen.append(repr(kit.poll_to_end(adapter, remote_id)))
        for key in (*(kit.keys[f] for f in ("no_balance", "rate", "error_before", "drop")),
                    kit.keys.bad):
            seen.append(_described(_refused_submit(kit, key)))
        seen.extend(record.getMessage() for record in caplog.records)
        seen.extend(str(record.exc_info) for record in caplog.records if record.exc_info)
        for secret in kit.secrets():
            leaks = [text for text in seen if secret in text]
            assert not leaks, f"a key or secret setting leaked: {leaks[0][:300]}"


def _refused_submit(kit: Harness, key: str) -> ProviderError:
    adapter = kit.adapter(key=key)
    return expect(ProviderError, lambda: adapter.submit(kit.model, kit.request()))


def _described(exc: BaseException) -> str:
    return f"{exc!s} {exc!r} {vars(exc)!r}"
