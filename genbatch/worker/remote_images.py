"""Images a provider takes only inline, never as a URL (Veo on the Gemini API: the image is
`bytesBase64Encoded` in the request; `ModelSpec.image_urls` is False): the worker turns the
row's image into bytes before the submit.

An `s3://` image is read from object storage (no presigned URL, no HTTP). An http(s) image
comes from wherever the manifest points, so it is fetched as confined as a video download
(`fetch.py`, whose checks it reuses): http and https only; every address the host resolves
to must be public, never loopback, private, link-local (cloud metadata) or reserved, unless
GENBATCH_DOWNLOAD_ALLOW_PRIVATE (loopback only for a loopback base URL: the simulator);
redirects followed by hand, each hop checked; the connect and read timeouts of a download;
at most the model's inline limit (`extra["inline_max_bytes"]`, else 30 MB); and the body must
be an image the providers take (by its first bytes, whatever its Content-Type). Nothing is
sent with it: no key, no cookie.

A refusal is an ImageProblem naming the field and the URL: the item fails before anything
is submitted (`input_unavailable`). A fetch that may pass (a connect error, a timeout, a
5xx) is a RetryableProviderError: the item goes back to the queue uncounted.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from genbatch.errors import BadOutput, RetryableProviderError, UrlGone
from genbatch.images import MAX_BYTES, ImageProblem, data_uri, is_remote, sniff_format
from genbatch.models import GenerationRequest
from genbatch.providers.base import ModelSpec
from genbatch.storage.urls import is_object_url
from genbatch.worker.fetch import Resolve, VideoPolicy, open_video, policy_for
from genbatch.worker.runtime import Runtime

IMAGE_FIELDS = ("image", "last_image")


def inline_images(rt: Runtime, provider: str, spec: ModelSpec,
                  request: GenerationRequest) -> GenerationRequest:
    """`request` with its http(s) and `s3://` images as data URIs (see the module
    docstring); other references (stored images, data URIs) are left to the caller."""
    updates = {}
    for field in IMAGE_FIELDS:
        ref = getattr(request, field)
        if not ref:
            continue
        if is_object_url(ref):
            data = rt.objects.get_bytes(ref)
            updates[field] = data_uri(data, sniff_format(data[:64]))
        elif is_remote(ref):
            policy = image_policy(rt, provider, spec)
            updates[field] = fetch_image(rt.downloads, provider, field, ref, policy,
                                         rt.settings.download_timeout_s)
    return request.model_copy(update=updates) if updates else request


def image_policy(rt: Runtime, provider: str, spec: ModelSpec) -> VideoPolicy:
    """Any host, public addresses only (the provider's download rules for the rest)."""
    downloads = policy_for(rt.settings, provider)
    limit = int(spec.extra.get("inline_max_bytes") or MAX_BYTES)
    return VideoPolicy(hosts=("*",), allow_private=downloads.allow_private,
                       allow_loopback=downloads.allow_loopback, max_bytes=limit, what="image")


def fetch_image(client: httpx.Client, provider: str, field: str, url: str,
                policy: VideoPolicy, timeout: float, resolve: Resolve | None = None) -> str:
    """The image at `url` as a data URI; ImageProblem when refused, RetryableProviderError
    when it may pass."""
    shown = _shown(url)
    try:
        with open_video(client, url, policy, timeout, resolve) as response:
            data = _capped_body(response, policy.max_bytes, field, shown)
    except (BadOutput, UrlGone) as exc:
        raise ImageProblem(f"{field} {shown}: {exc}") from None
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        if status < 500 and status not in (408, 429):
            raise ImageProblem(f"{field} {shown}: the image URL answered HTTP {status}"
                               ) from None
        raise RetryableProviderError(provider, "IMAGE_FETCH",
                                     f"{field} {shown}: HTTP {status}") from None
    except httpx.HTTPError as exc:
        raise RetryableProviderError(provider, "IMAGE_FETCH",
                                     f"{field} {shown}: {type(exc).__name__}") from None
    try:
        fmt = sniff_format(data[:64])
    except ImageProblem as exc:
        raise ImageProblem(f"{field} {shown}: {exc}") from None
    return data_uri(data, fmt)


def _capped_body(response: httpx.Response, limit: int, field: str, shown: str) -> bytes:
    """The body, refused as soon as it is over `limit` bytes (declared or read)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ImageProblem(f"{field} {shown}: the image is {int(declared)} bytes, over the "
                           f"{limit}-byte limit for inline images")
    body = bytearray()
    for chunk in response.iter_bytes(1 << 16):
        body += chunk
        if len(body) > limit:
            raise ImageProblem(f"{field} {shown}: the image is over the {limit}-byte limit "
                               "for inline images")
    return bytes(body)


def _shown(url: str) -> str:
    """The URL without its query (a signed URL's signature is not for messages)."""
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl()
