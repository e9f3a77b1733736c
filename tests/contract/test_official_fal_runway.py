"""Contract: fal's and Runway's official Python clients, unchanged, against the simulator.

`fal-client` 1.x (`SyncClient.submit` with `priority` and `start_timeout`, the handle's
`status`, `get` and `cancel`; its queue host pointed at the simulator's `/fal`) and
`runwayml` 5.x (`RunwayML(base_url=…/runway).image_to_video.create`, `tasks.retrieve`,
`tasks.delete`): what their authors wrote against the real APIs must work here too."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.simulator.helpers import KEY, Sim, wait_until

fal_client = pytest.importorskip("fal_client")
fal_module = pytest.importorskip("fal_client.client")
runwayml = pytest.importorskip("runwayml")

KLING = "fal-ai/kling-video/v2.1/standard/image-to-video"


@pytest.fixture
def fal(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> Any:
    """fal's client with its queue host (`https://queue.fal.run/`) replaced by ours."""
    monkeypatch.setattr(fal_module, "QUEUE_URL_FORMAT", f"{sim.url}/fal/")
    return fal_client.SyncClient(key=KEY)


def test_fal_client_submits_polls_and_gets_the_video(sim: Sim, fal: Any) -> None:
    handle = fal.submit(KLING, {"prompt": "the bottle turns", "image_url": sim.asset(),
                                "duration": "5"}, priority="low", start_timeout=3600)
    result = handle.get(interval=0.01)
    status = handle.status(with_logs=True)

    assert isinstance(status, fal_module.Completed) and status.error is None
    assert status.metrics["inference_time"] > 0
    video = sim.get(result["video"]["url"])
    assert hashlib.sha256(video.content).hexdigest() in sim.stats()["videos"].values()
    [post] = [e for e in sim.stats()["request_log"] if e["method"] == "POST"]
    assert post["headers"]["x-fal-queue-priority"] == "low"
    assert float(post["headers"]["x-fal-request-timeout"]) == 3600


def test_fal_client_sees_queued_requests_and_cancels_them(sim: Sim, fal: Any) -> None:
    sim.profile(queue_delay_s=100_000)
    handle = fal.submit(KLING, {"prompt": "p", "image_url": sim.asset()})
    assert isinstance(handle.status(), fal_module.Queued)
    handle.cancel()
    status = handle.status()
    assert isinstance(status, fal_module.Completed) and status.error_type


def test_fal_client_reads_a_failed_request(sim: Sim, fal: Any) -> None:
    sim.profile(p_task_fail=1)
    handle = fal.submit(KLING, {"prompt": "p", "image_url": sim.asset()})
    status = wait_until(handle.status, lambda s: isinstance(s, fal_module.Completed))
    assert status.error and status.error_type
    with pytest.raises(fal_module.FalClientHTTPError) as failed:
        handle.get(interval=0.01)
    assert failed.value.error_type == status.error_type


def test_fal_client_refusals_carry_the_detail(sim: Sim, fal: Any) -> None:
    with pytest.raises(fal_module.FalClientHTTPError) as refused:
        fal.submit(KLING, {"image_url": sim.asset(), "duration": "7"})
    assert refused.value.status_code == 422 and "prompt" in str(refused.value.response.text)


def test_runway_sdk_creates_retrieves_and_deletes_tasks(sim: Sim) -> None:
    client = runwayml.RunwayML(api_key=KEY, base_url=f"{sim.url}/runway", max_retries=0)
    created = client.image_to_video.create(model="gen4_turbo", prompt_image=sim.asset(),
                                           ratio="1280:720", prompt_text="the bottle turns",
                                           duration=5, seed=7)
    task = wait_until(lambda: client.tasks.retrieve(created.id),
                      lambda t: t.status in ("SUCCEEDED", "FAILED"))
    assert task.status == "SUCCEEDED" and task.cost.credits == 25
    video = sim.get(task.output[0])
    assert hashlib.sha256(video.content).hexdigest() == sim.stats()["videos"][created.id]

    sim.profile(concurrency=1, queue_delay_s=0, latency_mean_s=100_000)
    running = client.image_to_video.create(model="gen4_turbo", prompt_image=sim.asset(),
                                           ratio="960:960")
    waiting = client.image_to_video.create(model="gen4_turbo", prompt_image=sim.asset(),
                                           ratio="960:960")
    assert client.tasks.retrieve(waiting.id).status == "THROTTLED"
    client.tasks.delete(running.id)
    assert client.tasks.retrieve(running.id).status == "CANCELLED"


def test_runway_sdk_sees_the_daily_cap_as_429(sim: Sim) -> None:
    client = runwayml.RunwayML(api_key=KEY, base_url=f"{sim.url}/runway", max_retries=0)
    sim.profile(daily_cap=1)
    client.image_to_video.create(model="gen4_turbo", prompt_image=sim.asset(), ratio="960:960")
    with pytest.raises(runwayml.RateLimitError):
        client.image_to_video.create(model="gen4_turbo", prompt_image=sim.asset(),
                                     ratio="960:960")
