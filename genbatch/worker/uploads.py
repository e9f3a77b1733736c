"""Input images a provider must host before a submit may name them (WaveSpeed takes image
URLs only; its documented upload turns a file into one, docs/wire/notes.md §9).

The producer already copied every local image into object storage (`stored:<key>`), so any
worker on any machine uploads from there. Each distinct content is uploaded once per
provider account: the URL is remembered in the job store under the content's sha256 for
`KEEP_S`, well inside WaveSpeed's 7-day retention, so a task queued with it still finds it;
while one worker uploads a content, others needing it wait for its URL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time

from genbatch.config import ProviderSettings
from genbatch.images import STORED_PREFIX, ImageProblem, is_data_uri, is_remote, sniff_format
from genbatch.models import GenerationRequest
from genbatch.providers import get_spec
from genbatch.providers.base import Provider
from genbatch.records import Item
from genbatch.storage.roots import batch_object_roots, check_inside
from genbatch.storage.urls import is_object_url
from genbatch.worker import remote_images
from genbatch.worker.runtime import Runtime

KEEP_S = 5 * 24 * 3600.0
CLAIM_S = 30.0  # one worker uploads a content at a time; the others wait this long at most
UPLOADING = "uploading"
IMAGE_FIELDS = ("image", "last_image")


def wire_request(rt: Runtime, item: Item) -> GenerationRequest:
    """The item's request as it goes on the wire: images its provider must host replaced by
    their hosted URLs, other stored images as data URIs (`Runtime.wire_request`), and for a
    provider that takes no image URLs, its http(s) and s3:// images fetched and inlined.

    Raises RetryableProviderError when an upload failed (nothing was submitted, try again),
    PermanentProviderError when the provider refused the file, GenbatchError when the
    stored image cannot be read, InputNotAllowed when an `s3://` image lies outside the
    batch's input prefixes (checked here too, not only at submit: an item written another
    way, or a batch resumed from a manifest elsewhere, gets nothing signed it should not)."""
    request = item.request
    confine_objects(rt, item, request)
    spec = get_spec(item.provider, item.model)
    if not spec.image_urls:  # Veo: image bytes only, fetched here confined
        request = remote_images.inline_images(rt, item.provider, spec, request)
    if spec.upload_max_bytes is None:
        return rt.wire_request(request, inline=spec.accepts_data_uri)
    adapter = rt.provider(item.account)
    updates = {
        name: hosted_url(rt, item.account, item.provider, adapter, ref)
        for name in IMAGE_FIELDS
        if (ref := getattr(request, name)) and _uploaded(rt, ref)
    }
    request = request.model_copy(update=updates) if updates else request
    return rt.wire_request(request)  # s3:// images left: presigned URLs


def confine_objects(rt: Runtime, item: Item, request: GenerationRequest) -> None:
    """Raise InputNotAllowed when an `s3://` image of `request` is outside the prefixes
    recorded on the item's batch (storage/roots.py)."""
    refs = [(name, ref) for name in IMAGE_FIELDS
            if (ref := getattr(request, name)) and is_object_url(ref)]
    if refs:
        roots = batch_object_roots(rt.store.batches.get(item.batch_id))
        for name, ref in refs:
            check_inside(name, ref, roots)


def _uploaded(rt: Runtime, ref: str) -> bool:
    """Whether the provider must host `ref` itself: a stored image or data URI, or an
    `s3://` image with GENBATCH_S3_IMAGES=inline (else it gets a presigned URL)."""
    if is_object_url(ref):
        return rt.settings.s3_images == "inline"
    return not is_remote(ref)


def hosted_url(rt: Runtime, account_name: str, provider: str, adapter: Provider,
               ref: str) -> str:
    """The URL the account hosts the image `ref` at, uploading it unless it is known."""
    data = input_bytes(rt, ref)
    digest = hashlib.sha256(data).hexdigest()
    account = account_id(rt.account_settings(account_name, provider))
    known = _known_or_claimed(rt, account, digest)
    if known:
        return known
    fmt = sniff_format(data[:64])
    try:
        url = adapter.upload(data, f"{digest[:16]}.{fmt}", f"image/{fmt}")
        # the URL before the claim goes: a worker waiting for it would otherwise find
        # neither, claim the content itself and upload it again
        rt.store.memo.remember_upload(account, digest, url, KEEP_S)
    finally:
        rt.store.memo.forget(UPLOADING, f"{account}:{digest}")
    return url


def _known_or_claimed(rt: Runtime, account: str, digest: str) -> str | None:
    """The URL if this content is uploaded; else None once this worker may upload it. While
    another worker uploads the same content, wait for its URL (up to `CLAIM_S`)."""
    memo = rt.store.memo
    deadline = time.monotonic() + CLAIM_S
    while not (known := memo.upload_url(account, digest)):
        if memo.first_sight(UPLOADING, f"{account}:{digest}", CLAIM_S) or (
                time.monotonic() > deadline):
            return None
        time.sleep(0.05)
    return known


def input_bytes(rt: Runtime, ref: str) -> bytes:
    """The bytes of a stored image (`stored:<key>` or a bare key), an `s3://` image or a
    data URI."""
    if is_object_url(ref):
        return rt.objects.get_bytes(ref)
    if is_data_uri(ref):
        try:
            return base64.b64decode(ref.partition(",")[2], validate=True)
        except (binascii.Error, ValueError):
            raise ImageProblem("the image's data URI is not valid base64") from None
    return rt.storage.get_bytes(ref.removeprefix(STORED_PREFIX))


def account_id(settings: ProviderSettings) -> str:
    """A short stable name for one provider account (base URL and key), never the key."""
    key = settings.api_key.get_secret_value() if settings.api_key else ""
    digest = hashlib.sha256(f"{settings.base_url}\n{key}".encode()).hexdigest()[:16]
    return f"{settings.name}-{digest}"
