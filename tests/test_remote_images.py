"""Image URLs fetched by the worker for a provider that takes images inline only (Veo):
worker/remote_images.py. Driven through httpx.MockTransport and an injected resolver (no
network): the fetch reaches only public addresses, follows redirects only to them, caps the
size, takes only images and says which field and URL it refused."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import pytest

from genbatch.errors import RetryableProviderError
from genbatch.images import ImageProblem
from genbatch.worker.fetch import VideoPolicy
from genbatch.worker.remote_images import fetch_image

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 200
ADDRESSES = {"img.example": "93.184.216.34", "intranet.example": "10.0.0.7",
             "meta.example": "169.254.169.254", "mapped.example": "::ffff:127.0.0.1",
             "localhost": "127.0.0.1"}
POLICY = VideoPolicy(hosts=("*",), max_bytes=1000, what="image")
SIMULATOR = VideoPolicy(hosts=("*",), max_bytes=1000, what="image", allow_loopback=True)


def resolve(host: str, _port: int) -> list[str]:
    return [ADDRESSES.get(host, host)]


def fetch(url: str, handler: Callable[[httpx.Request], httpx.Response],
          policy: VideoPolicy = POLICY) -> str:
    transport = httpx.MockTransport(handler)
    with httpx.Client(transport=transport, follow_redirects=False) as client:
        return fetch_image(client, "veo", "last_image", url, policy, 5.0, resolve)


def test_a_public_image_becomes_a_data_uri_by_its_bytes_not_its_content_type() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=JPEG, headers={"content-type": "text/plain"})

    got = fetch("https://img.example/a.png?sig=secret", handler)
    assert got == "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()
    assert "x-goog-api-key" not in seen[0].headers and "authorization" not in seen[0].headers


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/a.png", "http://localhost/a.png", "https://intranet.example/a.png",
    "http://meta.example/latest/meta-data", "https://mapped.example/a.png",
    "http://[::1]/a.png", "file:///etc/passwd", "ftp://img.example/a.png"])
def test_non_public_addresses_and_other_schemes_are_refused_without_a_request(
        url: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request may be sent, got {request.url}")

    with pytest.raises(ImageProblem) as refused:
        fetch(url, handler)
    assert str(refused.value).startswith(f"last_image {url}"), refused.value


def test_loopback_only_where_the_provider_itself_is_on_loopback() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=PNG)

    assert fetch("http://127.0.0.1:8700/_sim/assets/a.png", handler, SIMULATOR).startswith(
        "data:image/png;base64,")
    with pytest.raises(ImageProblem, match="non-public"):
        fetch("https://intranet.example/a.png", handler, SIMULATOR)


def test_a_redirect_to_a_private_address_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "img.example":
            return httpx.Response(302, headers={"location": "http://meta.example/latest"})
        raise AssertionError("the redirect was followed")

    with pytest.raises(ImageProblem, match="non-public"):
        fetch("https://img.example/a.png", handler)


def test_the_size_cap_holds_with_and_without_a_declared_length() -> None:
    big = PNG + b"\x00" * 2000
    with pytest.raises(ImageProblem, match="1000-byte limit"):
        fetch("https://img.example/a.png", lambda r: httpx.Response(200, content=big))

    def chunked(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=httpx.ByteStream(big))  # no Content-Length

    with pytest.raises(ImageProblem, match="1000-byte limit"):
        fetch("https://img.example/a.png", chunked)


def test_a_body_that_is_not_an_image_is_refused() -> None:
    with pytest.raises(ImageProblem, match="not a jpeg, png"):
        fetch("https://img.example/a.png",
              lambda r: httpx.Response(200, content=b"<html>login</html>"))


def test_a_4xx_is_refused_and_a_5xx_or_a_timeout_may_pass() -> None:
    with pytest.raises(ImageProblem, match="HTTP 404"):
        fetch("https://img.example/a.png", lambda r: httpx.Response(404))
    with pytest.raises(ImageProblem, match="HTTP 400"):
        fetch("https://img.example/a.png", lambda r: httpx.Response(400))
    with pytest.raises(RetryableProviderError, match="HTTP 503"):
        fetch("https://img.example/a.png", lambda r: httpx.Response(503))

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(RetryableProviderError, match="ReadTimeout"):
        fetch("https://img.example/a.png", timeout)
