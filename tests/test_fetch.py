"""Safe downloads (worker/fetch.py): what a video URL may reach and what body may be stored.
Driven through httpx.MockTransport and an injected resolver: no network."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from genbatch.config import Settings
from genbatch.errors import BadOutput, UrlGone
from genbatch.models import PollResult, TaskStatus
from genbatch.providers import plugin
from genbatch.worker.fetch import (
    VideoPolicy,
    open_video,
    policy_for,
    url_fields,
    video_chunks,
)

MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 100
PUBLIC = {"cdn.wavespeed.ai": "93.184.216.34", "evil.example": "93.184.216.35",
          "internal.wavespeed.ai": "10.0.0.7", "meta.wavespeed.ai": "169.254.169.254",
          "mapped.wavespeed.ai": "::ffff:127.0.0.1"}


def resolve(host: str, _port: int) -> list[str]:
    return [PUBLIC.get(host, host)]


def client_for(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler), follow_redirects=False)


def fetch(policy: VideoPolicy, url: str,
          handler: Callable[[httpx.Request], httpx.Response]) -> bytes:
    with client_for(handler) as client, open_video(client, url, policy, 5.0, resolve) as resp:
        return b"".join(video_chunks(resp, policy))


WAVESPEED = VideoPolicy(hosts=plugin("wavespeed").outputs.video_hosts, max_bytes=10_000)


def test_a_video_on_the_provider_s_cdn_is_fetched() -> None:
    body = fetch(WAVESPEED, "https://cdn.wavespeed.ai/v.mp4",
                 lambda r: httpx.Response(200, content=MP4))
    assert body == MP4


@pytest.mark.parametrize(("url", "why"), [
    ("file:///etc/passwd", "scheme"),
    ("ftp://cdn.wavespeed.ai/v.mp4", "scheme"),
    ("https://evil.example/v.mp4", "allow-list"),
    ("http://127.0.0.1:8080/v.mp4", "allow-list"),
    ("https://internal.wavespeed.ai/v.mp4", "non-public"),
    ("https://meta.wavespeed.ai/latest", "non-public"),
    ("https://mapped.wavespeed.ai/v.mp4", "non-public"),
])
def test_urls_off_the_allow_list_or_to_private_addresses_are_refused(url: str,
                                                                    why: str) -> None:
    with pytest.raises(BadOutput, match=why):
        fetch(WAVESPEED, url, lambda r: httpx.Response(200, content=MP4))


def test_redirects_are_followed_only_to_allowed_hosts() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/hop":
            return httpx.Response(302, headers={"location": "/v.mp4"})
        if request.url.path == "/out":
            return httpx.Response(302, headers={"location": "http://169.254.169.254/x"})
        return httpx.Response(200, content=MP4)

    assert fetch(WAVESPEED, "https://cdn.wavespeed.ai/hop", handler) == MP4
    with pytest.raises(BadOutput, match="allow-list"):
        fetch(WAVESPEED, "https://cdn.wavespeed.ai/out", handler)


def test_endless_redirects_are_refused() -> None:
    with pytest.raises(BadOutput, match="redirected more than"):
        fetch(WAVESPEED, "https://cdn.wavespeed.ai/a",
              lambda r: httpx.Response(302, headers={"location": "/a"}))


def test_a_lapsed_url_is_url_gone_and_a_5xx_an_http_error() -> None:
    with pytest.raises(UrlGone) as gone:
        fetch(WAVESPEED, "https://cdn.wavespeed.ai/v.mp4", lambda r: httpx.Response(403))
    assert gone.value.status == 403
    with pytest.raises(httpx.HTTPStatusError):
        fetch(WAVESPEED, "https://cdn.wavespeed.ai/v.mp4", lambda r: httpx.Response(503))


def test_a_body_that_is_not_a_video_is_refused_before_storage_sees_it() -> None:
    page = b"<!doctype html><html>" + b"x" * 500
    with pytest.raises(BadOutput, match=r"not an MP4/MOV video.*text/html"):
        fetch(WAVESPEED, "https://cdn.wavespeed.ai/v.mp4", lambda r: httpx.Response(
            200, content=page, headers={"content-type": "text/html"}))


def test_the_size_cap_holds_with_and_without_a_declared_length() -> None:
    big = MP4 + b"\x00" * 20_000
    with pytest.raises(BadOutput, match="over the 10000-byte limit"):
        fetch(WAVESPEED, "https://cdn.wavespeed.ai/v.mp4",
              lambda r: httpx.Response(200, content=big))

    def chunked(request: httpx.Request) -> httpx.Response:  # no Content-Length
        return httpx.Response(200, stream=httpx.ByteStream(big),
                              headers={"transfer-encoding": "chunked"})

    with pytest.raises(BadOutput, match="limit"):
        fetch(WAVESPEED, "https://cdn.wavespeed.ai/v.mp4", chunked)


def test_policy_from_settings_defaults_overrides_and_the_simulator_s_loopback() -> None:
    real = policy_for(Settings(), "novita")
    assert real.hosts == plugin("novita").outputs.video_hosts and not real.allow_loopback
    with pytest.raises(BadOutput, match="allow-list"):
        real.check_url("http://127.0.0.1:9000/v.mp4", resolve)
    real.check_url("https://faas-output-video.s3.ap-southeast-1.amazonaws.com/v.mp4?X=1",
                   lambda h, p: ["52.219.1.1"])

    sim = policy_for(Settings(novita_base_url="http://127.0.0.1:9000"), "novita")
    sim.check_url("http://127.0.0.1:9000/_sim/videos/t.mp4", resolve)  # the simulator
    with pytest.raises(BadOutput, match=r"'127\.0\.0\.1:6379': not on the provider's allow-list"):
        sim.check_url("http://127.0.0.1:6379/", resolve)  # another service on loopback
    with pytest.raises(BadOutput, match="non-public"):  # loopback only, not private
        VideoPolicy(hosts=("*",), allow_loopback=True).check_url("http://10.1.1.1/", resolve)

    custom = policy_for(Settings(byteplus_video_hosts="videos.example.com, *.cdn.example"),
                        "byteplus")
    assert custom.hosts == ("videos.example.com", "*.cdn.example")
    loose = policy_for(Settings(download_allow_private=True, wavespeed_video_hosts="*"),
                       "wavespeed")
    loose.check_url("http://10.0.0.7/v.mp4", resolve)


def test_url_lifetime_comes_from_the_answer_the_provider_or_the_setting() -> None:
    s = Settings(video_url_ttl_s=900, time_factor=10)
    done = PollResult(TaskStatus.SUCCEEDED, video_url="https://x/v.mp4")
    assert url_fields(s, 100.0, "novita", PollResult(
        TaskStatus.SUCCEEDED, video_url="u", video_ttl_s=3600))["url_expires_at"] == 460.0
    assert url_fields(s, 100.0, "byteplus", done)["url_expires_at"] == 100.0 + 8640.0
    assert url_fields(s, 100.0, "wavespeed", done)["url_ttl_s"] == 7 * 8640.0
    assert url_fields(s, 100.0, "highwayapi", done)["url_expires_at"] == 190.0


def test_an_allowed_host_on_another_port_is_refused_unless_named_with_it() -> None:
    with pytest.raises(BadOutput, match=r"'cdn\.wavespeed\.ai:8443': not on the provider's"):
        WAVESPEED.check_url("https://cdn.wavespeed.ai:8443/v.mp4", lambda h, p: ["52.1.1.1"])
    WAVESPEED.check_url("https://cdn.wavespeed.ai:443/v.mp4", lambda h, p: ["52.1.1.1"])
    named = VideoPolicy(hosts=("cdn.example.com:8443",))
    named.check_url("https://cdn.example.com:8443/v.mp4", lambda h, p: ["52.1.1.1"])
    with pytest.raises(BadOutput, match="not on the provider's allow-list"):
        named.check_url("https://cdn.example.com/v.mp4", lambda h, p: ["52.1.1.1"])
