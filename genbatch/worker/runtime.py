"""Per-process resources of a worker or scheduler, created lazily after a fork.

Holds the settings, the job store client, object storage, one HTTP client per provider
(each adapter may keep its key in its own client's headers) and a separate HTTP client for
downloads, so a provider's key is never sent to the CDN that serves the video.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from genbatch import metrics, providers
from genbatch.config import ProviderSettings, Settings
from genbatch.errors import GenbatchError
from genbatch.images import STORED_PREFIX, data_uri, is_data_uri, is_remote, sniff_format
from genbatch.models import GenerationRequest
from genbatch.providers import accounts as provider_accounts
from genbatch.providers.base import Provider
from genbatch.storage import ObjectStorage, open_storage
from genbatch.storage.folder import BatchFolder
from genbatch.storage.urls import MAX_PRESIGN_S, ObjectUrls, is_object_url
from genbatch.store import JobStore
from genbatch.worker.app import connect, send

log = logging.getLogger(__name__)
Enqueue = Callable[[str, str], None]  # (task kind, id) -> None

CLOCK_CHECK_S = 30.0  # how often a process re-measures its offset to Redis's clock


class Runtime:
    """Lazily built, fork-safe resources for one process."""

    def __init__(self, settings: Settings, enqueue: Enqueue | None = None) -> None:
        self.settings = settings
        self._enqueue: Enqueue = send if enqueue is None else enqueue  # default: Celery
        self._pid = -1
        self._lock = threading.Lock()
        self._cache: dict[str, Any] = {}
        self.name = f"{socket.gethostname()}:{os.getpid()}"  # set by the worker to its node
        # the host its work is recorded under (heartbeat.worker_host; the worker sets it)
        self.host = settings.hostname or socket.gethostname()
        self.health_seen: dict[str, float] = {}  # account -> when its health was last written
        self.recent: dict[str, tuple[float, float]] = {}  # short-lived readings (monotonic, value)
        self._clock_offset = 0.0  # Redis's clock minus this process's (see `now`)
        self._clock_checked = -1e18

    def now(self) -> float:
        """Redis's clock, the one clock of every process: timers, leases, rate windows and
        deadlines compare times written by different machines, so a worker whose own clock
        is off must neither flood a provider nor stall the scheduler. The offset to Redis's
        `TIME` is measured at first use and every CLOCK_CHECK_S (kept while Redis is away)."""
        local = time.time() + self.settings.clock_skew_s
        if time.monotonic() >= self._clock_checked + CLOCK_CHECK_S:
            self._clock_checked = time.monotonic()
            try:
                before = time.time() + self.settings.clock_skew_s
                server = self.store.server.time()
                after = time.time() + self.settings.clock_skew_s
                self._clock_offset = server - (before + after) / 2
            except GenbatchError:  # StoreError included
                pass
        return local + self._clock_offset

    def _get(self, key: str, build: Callable[[], Any]) -> Any:
        with self._lock:
            if self._pid != os.getpid():  # forked: never share sockets with the parent
                self._cache = {}
                self._pid = os.getpid()
            if key not in self._cache:
                self._cache[key] = build()
            return self._cache[key]

    @property
    def store(self) -> JobStore:
        store: JobStore = self._get(
            "store", lambda: JobStore.from_target(self.settings.redis_target())
        )
        return store

    @property
    def storage(self) -> ObjectStorage:
        s = self.settings
        storage: ObjectStorage = self._get(
            "storage",
            lambda: open_storage(s.storage_url, endpoint_url=s.s3_endpoint_url,
                                 region=s.s3_region),
        )
        return storage

    @property
    def objects(self) -> ObjectUrls:
        """Objects named by URL (`s3://` input images), in any bucket."""
        s = self.settings
        objects: ObjectUrls = self._get(
            "objects", lambda: ObjectUrls(endpoint_url=s.s3_endpoint_url, region=s.s3_region))
        return objects

    def output_storage(self, batch_id: str) -> ObjectStorage:
        """Where batch `batch_id` keeps its videos and output manifests: its own folder when
        it was submitted with `--output URL`, else the storage (`<batch_id>/` in it)."""
        url = self.store.batches.get(batch_id).output_url or None
        return BatchFolder(self.objects.folder(url), batch_id) if url else self.storage

    def provider(self, account: str) -> Provider:
        """The adapter of provider account `account` (ConfigError: this process holds no
        key for it, or does not know it). Built again when the account's key or base URL
        changes in the accounts file."""
        ps = provider_accounts.account(self.settings, account)
        key = ps.require_key().get_secret_value()
        stamp = hashlib.sha256(f"{ps.base_url}\n{key}".encode()).hexdigest()[:16]

        def build() -> Provider:
            return providers.make_provider(
                ps, self._client(ps.max_in_flight, follow_redirects=False, count_as=account),
                submit_timeout_s=self.settings.submit_timeout_s)

        adapter: Provider = self._get(f"provider:{account}:{stamp}", build)
        return adapter

    def account_settings(self, account: str, provider: str) -> ProviderSettings:
        """The settings of `account`; the provider's own defaults when this process does not
        know it (an account removed while its tasks run)."""
        return (provider_accounts.find_account(self.settings, account)
                or provider_accounts.env_account(self.settings, provider))

    def warm(self) -> None:
        """Build the adapters of the accounts whose keys this process holds, and the
        download client, before a task needs one: each build takes tens of milliseconds
        (a TLS context), and a batch's first submits would each wait behind it."""
        try:
            labels = provider_accounts.keys_held(self.settings)
        except GenbatchError as exc:  # an accounts file being fixed: the tasks report it
            log.debug("could not read the accounts to prepare: %s", exc)
            labels = ()
        for label in labels:
            try:
                self.provider(label)
            except GenbatchError as exc:  # its first task reports it, with its item
                log.debug("could not prepare account %s: %s", label, exc)
        _ = self.downloads

    @property
    def downloads(self) -> httpx.Client:
        """The client for video URLs: no provider key, redirects followed by hand (each hop
        is checked, worker/fetch.py)."""
        client: httpx.Client = self._get("downloads",
                                         lambda: self._client(64, follow_redirects=False))
        return client

    def _client(self, pool: int, *, follow_redirects: bool,
                count_as: str | None = None) -> httpx.Client:
        """An HTTP client; with `count_as` (a provider), every request it makes is counted
        in `genbatch_provider_requests_total` (downloads are counted by the download step)."""
        s = self.settings
        timeout = httpx.Timeout(s.request_timeout_s, connect=s.connect_timeout_s)
        limits = httpx.Limits(max_connections=max(pool, s.worker_concurrency) + 4,
                              max_keepalive_connections=max(pool, s.worker_concurrency))
        transport: httpx.BaseTransport | None = None
        if count_as is not None:
            provider = count_as
            transport = CountingTransport(
                httpx.HTTPTransport(limits=limits),
                lambda kind, status: metrics.record_request(self.store, provider, kind, status))
        return httpx.Client(timeout=timeout, limits=limits, follow_redirects=follow_redirects,
                            transport=transport)

    def enqueue(self, kind: str, ident: str) -> None:
        self._enqueue(kind, ident)

    def wire_request(self, request: GenerationRequest, *,
                     inline: bool = True) -> GenerationRequest:
        """The request with stored images turned into data URIs and `s3://` images into
        presigned URLs (data URIs with GENBATCH_S3_IMAGES=inline, when `inline`: the
        provider takes them); URLs and data URIs pass through."""
        updates = {}
        for name in ("image", "last_image"):
            ref = getattr(request, name)
            if not ref or is_remote(ref) or is_data_uri(ref):
                continue
            if is_object_url(ref):
                updates[name] = self.object_image(ref, request, inline=inline)
            else:
                updates[name] = self._stored_data_uri(ref)
        return request.model_copy(update=updates) if updates else request

    def object_image(self, ref: str, request: GenerationRequest, *, inline: bool) -> str:
        """An `s3://` image as the provider gets it: a presigned URL that outlives the
        generation (the provider may fetch it only when a queued task starts), or inline."""
        if inline and self.settings.s3_images == "inline":
            return _to_data_uri(self.objects.get_bytes(ref))
        return self.objects.presigned_url(ref, presign_lifetime_s(self.settings, request))

    def _stored_data_uri(self, ref: str) -> str:
        key = ref.removeprefix(STORED_PREFIX)
        cached: Callable[[str], str] = self._get("images", lambda: functools.lru_cache(16)(
            lambda k: _to_data_uri(self.storage.get_bytes(k))))
        return cached(key)


class CountingTransport(httpx.BaseTransport):
    """Passes each request on to `inner` and reports (kind, status code) to `record`;
    status None when no answer came. The kind is named by the method (submit: POST, poll:
    GET, cancel: DELETE), the only calls an adapter makes."""

    def __init__(self, inner: httpx.BaseTransport,
                 record: Callable[[str, int | None], None]) -> None:
        self.inner = inner
        self.record = record

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        kind = metrics.KIND_OF_METHOD.get(request.method, request.method.lower())
        try:
            response = self.inner.handle_request(request)
        except httpx.TransportError:
            self.record(kind, None)
            raise
        self.record(kind, response.status_code)
        return response

    def close(self) -> None:
        self.inner.close()


def configure(settings: Settings) -> Runtime:
    """A process runtime whose `enqueue` sends Celery tasks to the settings' Redis."""
    connect(settings)
    return Runtime(settings, enqueue=send)


def presign_lifetime_s(settings: Settings, request: GenerationRequest) -> int:
    """How long an input image's URL must work: the generation's longest life (its
    execution_expires_after, else GENBATCH_ITEM_DEADLINE_S) plus an hour, at most 7 days."""
    limit = request.execution_expires_after or settings.item_deadline_s
    return int(min(float(limit) + 3600.0, MAX_PRESIGN_S))


def _to_data_uri(data: bytes) -> str:
    return data_uri(data, sniff_format(data[:64]))
