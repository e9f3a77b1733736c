"""The worker's two hooks for Kling and Veo: a download that needs the provider's key (Veo's
file URI, Capability.KEYED_DOWNLOAD) sends it to the provider's own host only, a redirect
elsewhere drops it; and each submit attempt's client_ref (Kling's external_task_id)."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from genbatch.config import ProviderSettings
from genbatch.providers import Capability, make_provider, plugin
from genbatch.worker.fetch import VideoPolicy, open_video, video_chunks
from genbatch.worker.steps import client_ref

MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 100
KEY = "AIza-test-KEY-0123"
API = "https://generativelanguage.googleapis.com"
HOSTS = {"generativelanguage.googleapis.com": "142.250.1.1",
         "video.googleusercontent.com": "142.250.1.2"}
POLICY = VideoPolicy(hosts=plugin("veo").outputs.video_hosts, max_bytes=10_000)


def resolve(host: str, _port: int) -> list[str]:
    return [HOSTS.get(host, host)]


def test_veo_declares_a_keyed_download() -> None:
    assert plugin("veo").has(Capability.KEYED_DOWNLOAD)
    assert not plugin("kling").has(Capability.KEYED_DOWNLOAD)


def test_the_key_goes_to_the_api_host_and_not_past_a_redirect_to_another() -> None:
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("x-goog-api-key")))
        if request.url.host == "generativelanguage.googleapis.com":
            return httpx.Response(302, headers={
                "location": "https://video.googleusercontent.com/v.mp4"})
        return httpx.Response(200, content=MP4)

    settings = ProviderSettings(name="veo", base_url=API, api_key=SecretStr(KEY),
                                max_in_flight=1)
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        adapter = make_provider(settings, client)
        url = f"{API}/v1beta/files/f1:download?alt=media"
        with open_video(client, url, POLICY, 5.0, resolve,
                        headers=adapter.download_headers) as response:
            assert b"".join(video_chunks(response, POLICY)) == MP4
    assert seen == [("generativelanguage.googleapis.com", KEY),
                    ("video.googleusercontent.com", None)]


def test_without_the_hook_no_key_is_sent() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-goog-api-key"))
        return httpx.Response(200, content=MP4)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client, \
            open_video(client, f"{API}/v1beta/files/f1", POLICY, 5.0, resolve) as response:
        assert b"".join(video_chunks(response, POLICY)) == MP4
    assert seen == [None]


def test_each_submit_attempt_has_its_own_client_ref() -> None:
    assert client_ref("b_123:7", 1) == "gb-b_123-7-1"
    assert client_ref("b_123:7", 2) != client_ref("b_123:7", 1)
    long = client_ref("x" * 200, 12)
    assert long.endswith("-12") and len(long) <= 64
