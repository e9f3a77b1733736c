"""Fixtures for adapter tests: a scripted fake provider behind httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from genbatch.config import ProviderSettings
from genbatch.models import GenerationRequest
from genbatch.providers import make_provider
from genbatch.providers.base import Provider

API_KEY = "sk-test-0123456789-SECRET"
BASE_URLS = {
    "novita": "https://api.novita.test",
    "highwayapi": "https://api.highwayapi.test",
    "wavespeed": "https://api.wavespeed.test",
    "byteplus": "https://ark.byteplus.test",
    "fal": "https://queue.fal.test",
    "runway": "https://api.runway.test",
    "kling": "https://api.kling.test",
    "veo": "https://gemini.test",
}
IMAGE = "https://cdn.example.com/first.png"

Reply = httpx.Response | type[httpx.TransportError] | Callable[[httpx.Request], httpx.Response]


class FakeProvider:
    """Answers each request with the next scripted reply and records the request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.replies: list[Reply] = []

    def reply(self, status: int = 200, json_body: Any = None, **kwargs: Any) -> None:
        if json_body is not None:
            kwargs["json"] = json_body
        self.replies.append(httpx.Response(status, **kwargs))

    def fail(self, exc_type: type[httpx.TransportError]) -> None:
        self.replies.append(exc_type)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert self.replies, f"unexpected request {request.method} {request.url}"
        reply = self.replies.pop(0)
        if isinstance(reply, httpx.Response):
            return reply
        if isinstance(reply, type):
            raise reply(f"simulated {reply.__name__}", request=request)
        return reply(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def adapter(fake: FakeProvider) -> Iterator[Callable[..., Provider]]:
    """Build an adapter for a provider name, talking to `fake`."""
    clients: list[httpx.Client] = []

    def build(name: str, base_url: str | None = None, **kwargs: Any) -> Provider:
        client = httpx.Client(transport=httpx.MockTransport(fake), timeout=7.0)
        clients.append(client)
        settings = ProviderSettings(
            name=name,
            base_url=base_url or BASE_URLS[name],
            api_key=SecretStr(API_KEY),
            max_in_flight=4,
        )
        return make_provider(settings, client, **kwargs)

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest.fixture
def req() -> Callable[..., GenerationRequest]:
    """Build a request: a prompt and an https image unless the test overrides them."""

    def build(**fields: Any) -> GenerationRequest:
        fields.setdefault("prompt", "a cat turns its head")
        fields.setdefault("image", IMAGE)
        return GenerationRequest(**fields)

    return build
