"""Helpers shared by the simulator and contract tests: the running-simulator fixtures and a
handle on them, a hand-moved clock, valid request bodies, an MP4 box reader."""

from __future__ import annotations

import ssl
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from genbatch.simulator import SimProfile, running_simulator

# 1 simulated second = 1 real millisecond; every task runs exactly 5 ms after 1 ms queued.
# Output URLs live an hour of real time, so a busy machine never sees one expire mid-test.
URL_TTL_S = 3600 * 1000
FAST = {
    "time_factor": 1000, "latency_mean_s": 5, "latency_sigma": 0, "queue_delay_s": 1,
    "url_ttl_s": URL_TTL_S,
}
KEY = "sk-sim-test-key"
URL_IMAGE = "https://example.com/first.png"
BP_MODEL = "seedance-1-5-pro-251215"
# One TLS context for every client: building one per client costs ~80 ms (loopback is http).
TLS = ssl.create_default_context()


class Sim:
    """A handle on a running simulator: clients, stats, profile changes, polling helpers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.control = httpx.Client(base_url=url, verify=TLS)

    def client(self, key: str = KEY, prefix: str = "") -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.Client(base_url=self.url + prefix, headers=headers, verify=TLS)

    def get(self, url: str) -> httpx.Response:
        """An unauthenticated GET of an absolute URL (a download)."""
        return self.control.get(url)

    def asset(self, name: str = "landscape.png") -> str:
        return f"{self.url}/_sim/assets/{name}"

    def profile(self, **fields: Any) -> None:
        response = self.control.put("/_sim/profile", json={**FAST, **fields})
        assert response.status_code == 200, response.text

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.control.get("/_sim/stats").json()
        return stats


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    """The simulator on a loopback port, one per test module."""
    with running_simulator(SimProfile.model_validate(FAST)) as url:
        yield url


@pytest.fixture
def sim(sim_url: str) -> Iterator[Sim]:
    """The module's simulator, reset to the FAST profile and no tasks."""
    handle = Sim(sim_url)
    handle.profile()
    handle.control.post("/_sim/reset")
    yield handle
    handle.control.close()


def wait_until(probe: Callable[[], Any], done: Callable[[Any], bool]) -> Any:
    """Call `probe` until `done(result)`; a generous safety net, not a timing assertion."""
    deadline = time.monotonic() + 20
    while True:
        result = probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"never done; last result: {result!r}")
        time.sleep(0.002)


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def mp4_boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """The top-level boxes of an MP4 as (type, payload); fails on any broken box."""
    boxes, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        assert size >= 8 and offset + size <= len(data), "broken MP4 box"
        boxes.append((kind, data[offset + 8 : offset + size]))
        offset += size
    return boxes


def novita_body(image: str = URL_IMAGE, **extra: Any) -> dict[str, Any]:
    return {"image": image, "prompt": "a cat walks", "resolution": "720p", **extra}


def wavespeed_body(image: str = URL_IMAGE, **extra: Any) -> dict[str, Any]:
    return {"image": image, "prompt": "a cat walks", "duration": 5, **extra}


def byteplus_body(image: str = URL_IMAGE, model: str = BP_MODEL, **extra: Any) -> dict[str, Any]:
    content = [
        {"type": "text", "text": "a cat walks"},
        {"type": "image_url", "image_url": {"url": image}, "role": "first_frame"},
    ]
    return {"model": model, "content": content, **extra}
