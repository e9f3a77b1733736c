"""WaveSpeed: bodies and endpoint paths, prediction parsing, 200-with-failure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from genbatch.errors import AmbiguousSubmit, PermanentProviderError
from genbatch.models import GenerationRequest, PollResult, TaskStatus
from genbatch.providers.base import Provider

from .conftest import IMAGE, FakeProvider

Build = Callable[..., Provider]
Req = Callable[..., GenerationRequest]
V15, V1_PRO, V1_LITE = "seedance-v1.5-pro-i2v", "seedance-v1-pro-i2v", "seedance-v1-lite-i2v"


def created(task_id: str = "pred_abc123") -> dict[str, Any]:
    return {
        "code": 200,
        "message": "success",
        "data": {"id": task_id, "status": "created", "outputs": [], "error": ""},
    }


def polled(adapter: Build, fake: FakeProvider, data: Any) -> PollResult:
    fake.reply(200, {"code": 200, "message": "success", "data": data})
    return adapter("wavespeed").poll(V15, "pred_abc123")


def test_15_pro_body_uses_aspect_ratio_and_omits_unset_fields(adapter: Build, req: Req) -> None:
    made = adapter("wavespeed")
    assert made.build_body(V15, req()) == {"prompt": "a cat turns its head", "image": IMAGE}
    request = req(
        ratio="9:16",
        resolution="480p",
        duration=4,
        seed=7,
        camera_fixed=True,
        generate_audio=False,
        last_image="https://cdn.example.com/last.png",
    )
    assert made.build_body(V15, request) == {
        "prompt": "a cat turns its head",
        "image": IMAGE,
        "last_image": "https://cdn.example.com/last.png",
        "resolution": "480p",
        "aspect_ratio": "9:16",
        "duration": 4,
        "seed": 7,
        "camera_fixed": True,
        "generate_audio": False,
    }


def test_submit_15_pro(adapter: Build, req: Req, fake: FakeProvider) -> None:
    fake.reply(200, created())
    assert adapter("wavespeed").submit(V15, req()) == "pred_abc123"
    assert fake.last.url.path == "/api/v3/bytedance/seedance-v1.5-pro/image-to-video"
    assert fake.body() == {"prompt": "a cat turns its head", "image": IMAGE}


@pytest.mark.parametrize(
    ("model", "resolution", "path"),
    [
        (V1_PRO, "1080p", "/api/v3/bytedance/seedance-v1-pro-i2v-1080p"),
        (V1_PRO, None, "/api/v3/bytedance/seedance-v1-pro-i2v-720p"),
        (V1_LITE, "480p", "/api/v3/bytedance/seedance-v1-lite-i2v-480p"),
    ],
)
def test_v1_resolution_picks_the_endpoint_not_a_body_field(
    adapter: Build, req: Req, fake: FakeProvider, model: str, resolution: str | None, path: str
) -> None:
    fake.reply(200, created())
    adapter("wavespeed").submit(model, req(resolution=resolution, ratio="1:1", duration=10))
    assert fake.last.url.path == path
    assert fake.body() == {
        "prompt": "a cat turns its head",
        "image": IMAGE,
        "aspect_ratio": "1:1",
        "duration": 10,
    }


def test_a_data_uri_is_refused_before_sending(adapter: Build, req: Req, fake: FakeProvider) -> None:
    with pytest.raises(PermanentProviderError, match="takes image URLs only; upload"):
        adapter("wavespeed").submit(V15, req(image="data:image/png;base64,AAAA"))
    assert fake.requests == []


def test_a_submit_answer_without_data_id_is_ambiguous(
    adapter: Build, req: Req, fake: FakeProvider
) -> None:
    fake.reply(200, {"code": 200, "message": "success", "data": {"status": "created"}})
    with pytest.raises(AmbiguousSubmit):
        adapter("wavespeed").submit(V15, req())


def test_poll_path(adapter: Build, fake: FakeProvider) -> None:
    polled(adapter, fake, {"id": "pred_abc123", "status": "created"})
    assert fake.last.method == "GET"
    assert fake.last.url.path == "/api/v3/predictions/pred_abc123/result"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("created", TaskStatus.QUEUED),
        ("processing", TaskStatus.RUNNING),
        ("completed", TaskStatus.SUCCEEDED),
        ("failed", TaskStatus.FAILED),
        ("cancelled", TaskStatus.CANCELLED),
        ("timeout", TaskStatus.EXPIRED),
        ("deleted", TaskStatus.FAILED),
        ("paused", TaskStatus.UNKNOWN),
    ],
)
def test_each_status(adapter: Build, fake: FakeProvider, raw: str, status: TaskStatus) -> None:
    result = polled(adapter, fake, {"id": "pred_abc123", "status": raw, "outputs": []})
    assert (result.status, result.raw_status) == (status, raw)


def test_an_unknown_status_is_not_terminal(adapter: Build, fake: FakeProvider) -> None:
    assert not polled(adapter, fake, {"status": "paused"}).status.terminal


def test_completed_gives_the_first_output(adapter: Build, fake: FakeProvider) -> None:
    data = {
        "id": "pred_abc123",
        "status": "completed",
        "outputs": ["https://cdn.wavespeed.test/video.mp4", "https://cdn.wavespeed.test/b.mp4"],
        "timings": {"inference": 2500},
        "error": "",
    }
    result = polled(adapter, fake, data)
    assert result.status is TaskStatus.SUCCEEDED
    assert result.video_url == "https://cdn.wavespeed.test/video.mp4"
    assert result.video_ttl_s == 7 * 24 * 3600
    assert (result.error_code, result.error_message) == (None, None)
    assert result.run_s == 2.5  # timings.inference: the run, without the time it queued


@pytest.mark.parametrize("timings", [{}, {"inference": 0}, {"inference": "2"},
                                     {"inference": True}, "soon"])
def test_a_missing_or_odd_run_time_is_none(adapter: Build, fake: FakeProvider,
                                           timings: object) -> None:
    data = {"status": "completed", "outputs": ["https://cdn.wavespeed.test/v.mp4"],
            "timings": timings}
    assert polled(adapter, fake, data).run_s is None


def test_outputs_as_a_bare_string_is_read(adapter: Build, fake: FakeProvider) -> None:
    # SEED-WS15 types `data.outputs` as a string; the API returns an array.
    data = {"status": "completed", "outputs": "https://cdn.wavespeed.test/video.mp4"}
    assert polled(adapter, fake, data).video_url == "https://cdn.wavespeed.test/video.mp4"


def test_a_failed_task_comes_back_as_http_200(adapter: Build, fake: FakeProvider) -> None:
    data = {
        "id": "pred_abc123",
        "status": "failed",
        "code": 1402,
        "error": "Failed to download image from the provided URL.",
        "outputs": [],
    }
    result = polled(adapter, fake, data)
    assert (result.status, result.error_code, result.error_message) == (
        TaskStatus.FAILED,
        "1402",
        "Failed to download image from the provided URL.",
    )


def test_an_error_object_is_read_too(adapter: Build, fake: FakeProvider) -> None:
    data = {"status": "failed", "error": {"code": "1200", "message": "content moderation"}}
    result = polled(adapter, fake, data)
    assert (result.error_code, result.error_message) == ("1200", "content moderation")


def test_a_failure_without_detail_still_has_a_code(adapter: Build, fake: FakeProvider) -> None:
    result = polled(adapter, fake, {"status": "failed", "code": 0, "error": ""})
    assert (result.error_code, result.error_message) == ("failed", "task failed")


@pytest.mark.parametrize("data", [None, {}, {"status": None, "outputs": {"0": "x"}}, []])
def test_missing_fields_are_tolerated(adapter: Build, fake: FakeProvider, data: Any) -> None:
    result = polled(adapter, fake, data)
    assert result.status is TaskStatus.UNKNOWN
    assert result.video_url is None


def test_cancel_is_not_supported(adapter: Build, fake: FakeProvider) -> None:
    assert adapter("wavespeed").cancel(V15, "pred_abc123") is False
    assert fake.requests == []
