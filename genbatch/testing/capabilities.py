"""The suite's checks of the optional parts a plugin declares (`Capability`): callbacks and
their signatures, the task list, upload and cancel. A part that is declared must work
against the simulator; one that is not must be refused by the adapter without a request
(callbacks: skipped)."""

from __future__ import annotations

import json
import secrets
import time

import pytest

from genbatch.errors import BadSignature, PermanentProviderError
from genbatch.models import TaskStatus
from genbatch.providers.plugin import Callbacks, Capability
from genbatch.testing.harness import SAMPLE_IMAGE, Harness, expect

WRONG_SECRET = "whsec_" + "0" * 32  # a deliberately wrong secret


class CapabilityChecks:
    """Mixed into `ProviderConformance`, which gives the `kit` fixture."""

    def test_callback_is_parsed_to_its_task_and_status(self, kit: Harness) -> None:
        callbacks = _callbacks(kit)
        name = secrets.token_hex(6)
        _, remote_id = kit.submit("happy", webhook_url=kit.receiver.url(name))
        parsed = callbacks.parse(json.loads(kit.receiver.wait(name).body))
        assert parsed is not None, "the delivery of a finished task was parsed as ignorable"
        task_id, result = parsed
        assert (task_id, result.status) == (remote_id, TaskStatus.SUCCEEDED), parsed

    def test_signed_callback_verifies_and_a_forgery_is_refused(self, kit: Harness) -> None:
        callbacks = _callbacks(kit)
        if callbacks.verify is None:
            pytest.skip(f"{kit.target.provider} declares no signed callbacks")
        verify = callbacks.verify
        secret = _secret(kit, callbacks)
        name = secrets.token_hex(6)
        kit.submit("happy", webhook_url=kit.receiver.url(name))
        delivery = kit.receiver.wait(name)
        now = time.time()
        assert verify(secret, delivery.headers, delivery.body, now), "no delivery id"
        expect(BadSignature, lambda: verify(secret, delivery.headers, delivery.body + b" ", now))
        unsigned = {"content-type": delivery.headers.get("content-type", "application/json")}
        expect(BadSignature, lambda: verify(secret, unsigned, delivery.body, now))
        if secret:
            expect(BadSignature,
                   lambda: verify(WRONG_SECRET, delivery.headers, delivery.body, now))

    def test_task_list_finds_a_task_just_made(self, kit: Harness) -> None:
        adapter, request = kit.adapter("happy"), kit.request()
        since = time.time() - 5
        if not kit.plugin.has(Capability.LIST):
            expect(NotImplementedError, lambda: adapter.list_tasks(kit.model, request, since))
            return
        remote_id = adapter.submit(kit.model, request)
        listing = adapter.list_tasks(kit.model, request, since)
        assert remote_id in [task.id for task in listing.tasks], listing

    def test_account_list_shows_a_task_just_made_as_its_poll_does(self, kit: Harness) -> None:
        """Capability.LIST_POLL: the newest tasks list the one just made, with a status read
        as a poll reads it; without it, `recent` is refused without a request."""
        adapter = kit.adapter("happy")
        if not kit.plugin.has(Capability.LIST_POLL):
            expect(NotImplementedError, lambda: adapter.recent(kit.model, 10))
            return
        remote_id = adapter.submit(kit.model, kit.request())
        listed = dict(adapter.recent(kit.model, 10))
        assert remote_id in listed, listed
        assert listed[remote_id].status is not TaskStatus.UNKNOWN, listed[remote_id]

    def test_upload_returns_a_url(self, kit: Harness) -> None:
        adapter = kit.adapter("happy")
        image = kit.http.get(kit.sim_url + SAMPLE_IMAGE).content
        if not kit.plugin.has(Capability.UPLOAD):
            expect(PermanentProviderError,
                   lambda: adapter.upload(image, "landscape.png", "image/png"))
            return
        url = adapter.upload(image, "landscape.png", "image/png")
        assert url.startswith(("http://", "https://")), url

    def test_cancel_of_a_queued_task(self, kit: Harness) -> None:
        """Without Capability.CANCEL, cancel answers False without a request (the task need
        not even show as queued: a Gemini operation is only "not done" until it is)."""
        adapter, remote_id = kit.submit("queued")
        if not kit.plugin.has(Capability.CANCEL):
            assert adapter.cancel(kit.model, remote_id) is False
            return
        assert adapter.poll(kit.model, remote_id).status is TaskStatus.QUEUED
        assert adapter.cancel(kit.model, remote_id) is True
        assert adapter.poll(kit.model, remote_id).status is TaskStatus.CANCELLED


def _callbacks(kit: Harness) -> Callbacks:
    callbacks = kit.plugin.callbacks
    if callbacks is None:
        pytest.skip(f"{kit.target.provider} declares no callbacks")
    return callbacks


def _secret(kit: Harness, callbacks: Callbacks) -> str:
    """The account's signing secret ("" for a provider signing with a published key)."""
    get = kit.target.callback_secret
    if get is None:
        if callbacks.verify_unset:
            return ""
        raise pytest.UsageError(f"{kit.target.provider} signs its callbacks: give "
                                "Target.callback_secret so the kit can verify them")
    return get(kit.base_url, kit.keys["happy"])
