"""Webhooks on the wire: WaveSpeed's `?webhook=` on the submit URL, Novita's `extra.webhook`
in the body, nothing for providers without one; and the callback parsers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from genbatch.models import GenerationRequest, TaskStatus
from genbatch.providers import byteplus, novita, wavespeed
from genbatch.providers.base import Provider

from .conftest import IMAGE, FakeProvider

Build = Callable[..., Provider]
Req = Callable[..., GenerationRequest]
V15 = "seedance-v1.5-pro-i2v"
HOOK = "https://hooks.example.com/gb/hooks/wavespeed/b1%3A7/" + "ab" * 32


def test_wavespeed_puts_the_webhook_on_the_submit_url(adapter: Build, req: Req,
                                                       fake: FakeProvider) -> None:
    fake.reply(200, {"code": 200, "message": "success", "data": {"id": "pred_1"}})

    assert adapter("wavespeed").submit(V15, req(), webhook_url=HOOK) == "pred_1"

    assert fake.last.url.path == "/api/v3/bytedance/seedance-v1.5-pro/image-to-video"
    assert fake.last.url.params["webhook"] == HOOK  # encoded, decodes back exactly
    assert "webhook" not in fake.body()


def test_novita_puts_the_webhook_in_extra(adapter: Build, req: Req, fake: FakeProvider) -> None:
    fake.reply(200, {"task_id": "t-1"})

    assert adapter("novita").submit(V15, req(), webhook_url=HOOK) == "t-1"

    assert fake.body() == {"prompt": "a cat turns its head", "image": IMAGE,
                           "extra": {"webhook": {"url": HOOK}}}
    assert "webhook" not in fake.last.url.params


@pytest.mark.parametrize("provider", ["novita", "wavespeed"])
def test_no_webhook_url_means_nothing_extra_is_sent(adapter: Build, req: Req,
                                                    fake: FakeProvider, provider: str) -> None:
    fake.reply(200, {"task_id": "t-2", "code": 200, "data": {"id": "t-2"}})
    adapter(provider).submit(V15, req())
    assert not fake.last.url.params and "extra" not in fake.body()


def test_highwayapi_puts_the_webhook_in_extra_and_byteplus_sends_callback_url(
        adapter: Build, req: Req, fake: FakeProvider) -> None:
    fake.reply(200, {"task_id": "t-3"})
    adapter("highwayapi").submit(V15, req(), webhook_url=HOOK)
    assert fake.body()["extra"] == {"webhook": {"url": HOOK}}
    fake.reply(200, {"id": "cgt-1"})
    adapter("byteplus").submit(V15, req(), webhook_url=HOOK)
    assert fake.body()["callback_url"] == HOOK and HOOK not in str(fake.last.url)


def test_wavespeed_callback_is_the_bare_data_object_or_an_envelope() -> None:
    data = {"id": "pred_1", "status": "completed", "outputs": ["https://cdn/v.mp4"],
            "error": "", "has_nsfw_contents": [False]}
    assert wavespeed.parse_callback(data) == wavespeed.parse_callback(
        {"code": 200, "message": "success", "data": data})
    task_id, result = wavespeed.parse_callback(data)
    assert (task_id, result.status, result.video_url) == (
        "pred_1", TaskStatus.SUCCEEDED, "https://cdn/v.mp4")
    failed = wavespeed.parse_callback({"id": "p2", "status": "failed", "error": "boom",
                                       "code": 1403})[1]
    assert (failed.status, failed.error_message) == (TaskStatus.FAILED, "boom")


def test_novita_callback_is_the_task_result_body_in_its_envelope() -> None:
    body = {"task": {"task_id": "t-9", "status": "TASK_STATUS_SUCCEED"},
            "videos": [{"video_url": "https://cdn/n.mp4", "video_url_ttl": "3600"}],
            "extra": {"seed": "7"}}
    expected = ("t-9", novita.parse_task_result(body))
    assert novita.parse_callback({"event_type": "ASYNC_TASK_RESULT", "payload": body}) == expected
    assert novita.parse_callback(body) == expected  # a bare body is read as well
    assert novita.parse_callback({"event_type": "OTHER", "payload": body}) is None
    assert novita.parse_callback({}) == (None, novita.parse_task_result({}))


def test_byteplus_callback_is_the_task_object() -> None:
    task = {"id": "cgt-9", "status": "succeeded", "content": {"video_url": "https://cdn/b.mp4"}}
    expected = ("cgt-9", byteplus.parse_task(task))
    assert byteplus.parse_callback(task) == expected
    assert byteplus.parse_callback({"data": task}) == expected
    assert byteplus.parse_callback({"event": "x", "payload": task}) == expected
