"""Task lists (reconciliation): pages walked newest first back to a time, on MockTransport
and on the simulator's endpoints."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from genbatch.config import Settings
from genbatch.models import GenerationRequest
from genbatch.providers import can_list, make_provider
from genbatch.providers.accounts import env_account
from genbatch.providers.base import RemoteTask
from genbatch.providers.listing import PAGE_SIZE, timestamp, walk

REQUEST = GenerationRequest(prompt="p", image="https://example.com/a.png", resolution="480p")


def tasks(*created: float, model: str = "m") -> list[RemoteTask]:
    return [RemoteTask(f"t{c}", model, c) for c in created]


def test_walk_stops_at_a_task_older_than_since_and_is_complete() -> None:
    pages = {1: tasks(*range(300, 200, -1)), 2: tasks(*range(200, 100, -1)), 3: tasks(5)}
    asked: list[int] = []

    def fetch(page: int) -> list[RemoteTask]:
        asked.append(page)
        return pages.get(page, [])

    listing = walk(fetch, since=150.0, model="m")
    assert asked == [1, 2]  # page 2 reached past 150: no page 3
    assert listing.complete and [t.created_at for t in listing.tasks][-1] == 150


def test_walk_keeps_only_the_model_and_a_short_page_ends_it() -> None:
    listing = walk(lambda page: [*tasks(10, 9), *tasks(8, model="other")] if page == 1 else [],
                   since=0.0, model="m")
    assert listing.complete and [t.id for t in listing.tasks] == ["t10", "t9"]


def test_walk_gives_up_incomplete_after_its_page_cap() -> None:
    listing = walk(lambda page: tasks(*[1e9 - page * PAGE_SIZE - i for i in range(PAGE_SIZE)]),
                   since=0.0, model="m")
    assert not listing.complete


def test_timestamps_from_numbers_and_iso_strings() -> None:
    assert timestamp(1700000000) == 1700000000.0
    assert timestamp("2023-11-14T22:13:20.000Z") == 1700000000.0
    assert timestamp("yesterday") == 0.0 and timestamp(None) == 0.0


def test_only_wavespeed_and_byteplus_have_task_lists() -> None:
    assert [p for p in ("novita", "highwayapi", "wavespeed", "byteplus") if can_list(p)] == [
        "wavespeed", "byteplus"]


def adapter(provider: str, handler: Any) -> Any:
    settings = Settings(**{f"{provider}_api_key": "k", f"{provider}_base_url":  # type: ignore[arg-type]
                           "https://api.example.com"})
    return make_provider(env_account(settings, provider),
                         httpx.Client(transport=httpx.MockTransport(handler)))


def test_wavespeed_lists_by_model_newest_first() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        assert request.url.path == "/api/v3/predictions" and request.method == "POST"
        return httpx.Response(200, json={"code": 200, "message": "success", "data": {
            "page": 1, "items": [{"id": "a", "model": seen[-1]["model"], "status": "created",
                                  "created_at": "2026-12-01T08:00:10.000Z"}]}})

    listing = adapter("wavespeed", handler).list_tasks("seedance-v1.5-pro-i2v", REQUEST,
                                                       since=0.0)
    assert seen == [{"page": 1, "page_size": PAGE_SIZE,
                     "model": "bytedance/seedance-v1.5-pro/image-to-video"}]
    assert listing.complete and [t.id for t in listing.tasks] == ["a"]


def test_byteplus_lists_with_filters_and_reads_seeds() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["filter.model"] == "seedance-1-5-pro-251215"
        assert request.url.params["page_num"] == "1"
        return httpx.Response(200, json={"items": [
            {"id": "cgt-1", "model": "seedance-1-5-pro-251215", "created_at": 1800000000,
             "status": "queued", "seed": 7}], "total": 1})

    (task,) = adapter("byteplus", handler).list_tasks("seedance-v1.5-pro-i2v", REQUEST,
                                                      since=0.0).tasks
    assert (task.id, task.seed, task.created_at) == ("cgt-1", 7, 1800000000.0)


def test_a_provider_without_a_list_says_so() -> None:
    with pytest.raises(NotImplementedError, match="novita documents no task list"):
        adapter("novita", lambda r: httpx.Response(500)).list_tasks(
            "seedance-v1.5-pro-i2v", REQUEST, since=0.0)
