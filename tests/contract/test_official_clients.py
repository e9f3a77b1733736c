"""Contract: the providers' own official Python clients, unchanged, against the simulator.

`wavespeed` 2.0.5 (`Client(base_url=…).run`, `upload`) and BytePlus's Ark runtime
(`byteplus-python-sdk-v2` 3.0.63, `Ark(base_url=…/api/v3).content_generation.tasks`
create/get/list/delete, with `callback_url`): what their authors wrote against the real APIs
must work here too, and get a stored video and well-typed answers back."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from genbatch.demo import SAMPLES
from tests.simulator.helpers import KEY, Sim, wait_until

wavespeed = pytest.importorskip("wavespeed")
ark = pytest.importorskip("byteplussdkarkruntime")

BP_MODEL = "seedance-1-5-pro-251215"


def test_wavespeed_sdk_uploads_a_file_and_runs_a_prediction(sim: Sim, tmp_path: Path) -> None:
    image = tmp_path / "bottle.png"
    image.write_bytes((SAMPLES / "images" / "bottle.png").read_bytes())
    client = wavespeed.Client(api_key=KEY, base_url=sim.url)

    url = client.upload(str(image))
    output = client.run("bytedance/seedance-v1.5-pro/image-to-video",
                        {"prompt": "the bottle turns", "image": url, "duration": 5},
                        poll_interval=0.01)

    assert sim.get(url).content == image.read_bytes()
    [video] = output["outputs"]
    stats = sim.stats()
    assert stats["uploads"] == 1 and stats["submits"] == 1
    assert hashlib.sha256(sim.get(video).content).hexdigest() in stats["videos"].values()


def test_wavespeed_submit_still_refuses_an_image_that_is_not_a_url(sim: Sim) -> None:
    client = wavespeed.Client(api_key=KEY, base_url=sim.url)
    with pytest.raises(RuntimeError, match="HTTP 400"):
        client.run("bytedance/seedance-v1.5-pro/image-to-video",
                   {"prompt": "p", "image": "data:image/png;base64,AAAA"}, poll_interval=0.01)


def test_ark_runtime_creates_gets_lists_and_deletes_tasks(sim: Sim) -> None:
    client = ark.Ark(base_url=sim.url + "/api/v3", api_key=KEY, max_retries=0)
    tasks = client.content_generation.tasks
    content = [{"type": "text", "text": "a cat walks"},
               {"type": "image_url", "image_url": {"url": sim.asset()}, "role": "first_frame"}]

    created = tasks.create(model=BP_MODEL, content=content, resolution="720p", duration=5,
                           callback_url="http://127.0.0.1:9/hooks/never-listening")
    done = wait_until(lambda: tasks.get(task_id=created.id),
                      lambda t: t.status in ("succeeded", "failed"))

    assert created.id.startswith("cgt-")
    assert (done.id, done.model, done.status) == (created.id, BP_MODEL, "succeeded")
    assert isinstance(done.usage.completion_tokens, int) and done.usage.completion_tokens > 0
    assert isinstance(done.created_at, int) and done.resolution == "720p"
    video = sim.get(done.content.video_url).content
    assert hashlib.sha256(video).hexdigest() == sim.stats()["videos"][created.id]
    sent = next(e for e in sim.stats()["request_log"] if e["method"] == "POST")
    assert '"output_format":null' in sent["body"].replace(" ", "")  # nulls it knows, accepted

    second = tasks.create(model=BP_MODEL, content=content)
    listed = tasks.list(page_num=1, page_size=10)
    assert listed.total == 2 and [t.id for t in listed.items] == [second.id, created.id]
    only = tasks.list(task_ids=[created.id], status="succeeded", model=BP_MODEL)
    assert [t.id for t in only.items] == [created.id]
    assert tasks.list(page_size=1, page_num=2).items[0].id == created.id

    tasks.delete(task_id=created.id)
    assert tasks.list().total == 1


def test_ark_runtime_gets_the_providers_error_for_a_bad_value(sim: Sim) -> None:
    client = ark.Ark(base_url=sim.url + "/api/v3", api_key=KEY, max_retries=0)
    content = [{"type": "image_url", "image_url": {"url": sim.asset()}, "role": "first_frame"}]
    with pytest.raises(ark._exceptions.ArkBadRequestError) as caught:
        client.content_generation.tasks.create(model=BP_MODEL, content=content,
                                               omni_reference_task_type="not-known-here")
    assert "omni_reference_task_type: unknown field" in str(caught.value)
