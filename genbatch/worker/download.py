"""The download step: a finished (paid) video from its provider URL into object storage.

A downloading item carries its URL's expiry (`url_expires_at`: Novita/HighwayAPI's
`video_url_ttl`, BytePlus 24 h, WaveSpeed 7 days, GENBATCH_VIDEO_URL_TTL_S otherwise). The
scheduler claims due downloads earliest expiry first with their own short lease
(GENBATCH_DOWNLOAD_LEASE_S), which the running download renews while it streams, so a
download lost with a killed worker is sent again within seconds; a lock per item keeps a
re-sent message from fetching the same video twice at once.

    downloading ─ stored ──────────────────────────────────────────────▶ succeeded
        │ storage error, CDN 5xx, no answer: back off, until shortly before the URL expires
        │ URL lapsed (401/403/404/410) or about to: re-poll the task for a fresh URL, with
        │   backoff (GENBATCH_DOWNLOAD_MAX_ATTEMPTS re-polls at most; those storage caused
        │   are counted apart, STORAGE_REPOLLS times as many at most)
        ├─ the provider no longer serves it ──────────────────────────▶ failed/output_gone
        ├─ storage kept failing through every URL ────────────────────▶ failed/download_failed
        └─ URL, redirect or body refused (worker/fetch.py) ───────────▶ failed/bad_output

Every failure says the task was paid; `genbatch retry` downloads such items again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from genbatch import metrics, providers
from genbatch.errors import (
    BadOutput,
    ConfigError,
    GenbatchError,
    PermanentProviderError,
    ProviderError,
    StorageError,
    UrlGone,
)
from genbatch.models import ItemState, TaskStatus
from genbatch.providers.failures import failure_class
from genbatch.records import Item
from genbatch.storage import StoredObject, object_key
from genbatch.store.batches import DOWNLOADS, host_count
from genbatch.store.limits import rates_for
from genbatch.worker.fetch import open_video, policy_for, url_fields, video_chunks
from genbatch.worker.leases import lease
from genbatch.worker.polling import retry_delay
from genbatch.worker.runtime import Runtime
from genbatch.worker.steps import finish

log = logging.getLogger(__name__)
DOWNLOADING = ItemState.DOWNLOADING
PAID = "the task succeeded and was paid for"
RETRY_HINT = "`genbatch retry` downloads it again (it asks the provider for a fresh URL)"


@dataclass(frozen=True, slots=True)
class Transient:
    """A failure worth trying again while the URL lives: storage, network, CDN 5xx."""

    what: str
    storage: bool


# A storage outage may outlast this many times GENBATCH_DOWNLOAD_MAX_ATTEMPTS fresh URLs.
STORAGE_REPOLLS = 10


def download_item(rt: Runtime, iid: str) -> str:
    """downloading → succeeded | downloading (later) | failed (see the module docstring)."""
    item = rt.store.items.get(iid)
    if item.state is not DOWNLOADING:
        return "skipped"
    lease_s = rt.settings.download_lease_s
    with lease(rt, f"download:{iid}", lease_s,
               renewed=lambda: rt.store.items.set_timer(iid, rt.now() + lease_s)) as held:
        # the item's timer pushed on with the lease: the scheduler re-sends it only once
        # the lease lapsed (a killed worker); busy: another worker has it
        return _download(rt, item, iid) if held else "busy"


def _download(rt: Runtime, item: Item, iid: str) -> str:
    if item.dl_repoll:
        fresh = _fresh_url(rt, item, iid)
        if fresh is None:
            return "repoll"
        item = fresh
    key = object_key(item.batch_id, item.custom_id)
    try:
        rt.output_storage(item.batch_id).discard_partial(key)  # left by a killed download
        stored = _fetch(rt, item, key)
    except UrlGone as exc:
        return _lapsed(rt, item, iid, str(exc))
    except BadOutput as exc:
        return _fail(rt, item, iid, "bad_output", f"{PAID}, but its video was refused: {exc}; "
                     "a fresh URL may serve it: " + RETRY_HINT)
    except (httpx.HTTPError, StorageError) as exc:
        return _transient(rt, item, iid, _classify(exc))
    state = finish(rt, iid, [DOWNLOADING], ItemState.SUCCEEDED, "", "", fields={
        "output_uri": stored.uri, "sha256": stored.sha256, "bytes": stored.size,
        "download_host": rt.host}, incr={host_count(DOWNLOADS, rt.host): 1})
    if state == ItemState.SUCCEEDED:
        metrics.record_success(rt.store, item, stored.size)
    return state


def _fetch(rt: Runtime, item: Item, key: str) -> StoredObject:
    policy = policy_for(rt.settings, item.provider)
    keyed = providers.plugin(item.provider).has(providers.Capability.KEYED_DOWNLOAD)
    headers = rt.provider(item.account).download_headers if keyed else None
    try:
        with open_video(rt.downloads, item.video_url, policy,
                        rt.settings.download_timeout_s, headers=headers) as resp:
            metrics.record_request(rt.store, item.provider, "download", resp.status_code)
            return rt.output_storage(item.batch_id).put_stream(key, video_chunks(resp, policy))
    except httpx.HTTPStatusError as exc:
        metrics.record_request(rt.store, item.provider, "download", exc.response.status_code)
        raise
    except UrlGone as exc:
        metrics.record_request(rt.store, item.provider, "download", exc.status)
        raise
    except httpx.TransportError:
        metrics.record_request(rt.store, item.provider, "download", None)  # no answer
        raise
    except StorageError as exc:  # the chunks' own errors come back wrapped by storage
        if isinstance(exc.__cause__, BadOutput | httpx.HTTPError):
            raise exc.__cause__ from None
        raise


def _classify(exc: Exception) -> Transient:
    return Transient(_describe(exc), storage=isinstance(exc, StorageError))


def _transient(rt: Runtime, item: Item, iid: str, problem: Transient) -> str:
    """Try again after a backoff, while the URL lives; past that, ask for a fresh URL."""
    metrics.record_download_failure(rt.store, item.provider)
    now = rt.now()
    due = now + retry_delay(item.dl_attempts + 1, rt.settings)
    fields: dict[str, Any] = {"last_error": problem.what,
                              "dl_storage_error": "1" if problem.storage else ""}
    if due >= _retry_until(rt, item):
        return _lapsed(rt, item, iid, f"{problem.what}, and the URL is about to expire",
                       storage=problem.storage)
    rt.store.items.transition(iid, [DOWNLOADING], DOWNLOADING, timer=due, fields=fields,
                              incr={"dl_attempts": 1})
    return "retry"


def _lapsed(rt: Runtime, item: Item, iid: str, why: str, *, storage: bool = False) -> str:
    """The URL is gone or about to be: re-poll the task for a fresh one, with backoff.

    A URL that lapsed while storage was failing (this attempt's error, or the one before a
    URL answered gone) says nothing about the output: those re-polls are counted apart,
    with a bound STORAGE_REPOLLS times larger, so an outage of storage never turns a video
    the provider still serves into `output_gone`."""
    storage_caused = storage or item.dl_storage_error
    repolls, waits = item.url_repolls, item.storage_repolls
    limit = rt.settings.download_max_attempts
    if storage_caused and waits >= limit * STORAGE_REPOLLS:
        return _fail(rt, item, iid, "download_failed",
                     f"{PAID}, but storing its video kept failing ({why}); " + RETRY_HINT)
    if not storage_caused and repolls >= limit:
        return _fail(rt, item, iid, "output_gone",
                     f"{PAID}, but its video URL stayed unusable after {repolls} re-polls "
                     f"of the task ({why}); " + RETRY_HINT)
    due = rt.now() + retry_delay((waits if storage_caused else repolls) + 1, rt.settings)
    rt.store.items.transition(iid, [DOWNLOADING], DOWNLOADING, timer=due,
                              fields={"dl_repoll": "1", "last_error": why,
                                      "dl_storage_error": "1" if storage else ""},
                        incr={"storage_repolls" if storage_caused else "url_repolls": 1})
    return "repoll"


def _fresh_url(rt: Runtime, item: Item, iid: str) -> Item | None:
    """Poll the task again for a fresh video URL (within the account's poll budget); the
    item with it, or None when the item was rescheduled or ended."""
    now = rt.now()
    rate = rates_for(rt.settings, rt.account_settings(item.account, item.provider))["poll"]
    granted, wait_s = rt.store.limits.take(item.account, "poll", 1, rate, now)
    if not granted:
        rt.store.items.set_timer(iid, now + max(wait_s, 0.05))
        return None
    try:
        result = rt.provider(item.account).poll(item.model, item.remote_id)
    except PermanentProviderError as exc:
        _gone_or_later(rt, item, iid, exc)
        return None
    except (ProviderError, ConfigError) as exc:  # no answer, 5xx, no key here: later
        _repoll_later(rt, item, iid, f"re-poll for a fresh URL failed: {exc}")
        return None
    if result.status is TaskStatus.SUCCEEDED and result.video_url:
        fields = url_fields(rt.settings, rt.now(), item.provider, result)
        moved = rt.store.items.transition(iid, [DOWNLOADING], DOWNLOADING, fields=fields,
                                          incr={"polls": 1})
        return rt.store.items.get(iid) if moved.applied else None
    if result.status.terminal:
        _fail(rt, item, iid, "output_gone", f"{PAID}, but the provider now reports it "
              f"{result.raw_status or result.status.value}: its video is gone")
        return None
    _repoll_later(rt, item, iid, f"re-poll found the task {result.raw_status or 'unknown'}")
    return None


def _gone_or_later(rt: Runtime, item: Item, iid: str, exc: PermanentProviderError) -> None:
    cls = failure_class(exc)
    if cls is not None and cls.pauses:  # the account's key or balance, not the task
        _repoll_later(rt, item, iid, f"re-poll refused: {exc.code}")
        return
    _fail(rt, item, iid, "output_gone",
          f"{PAID}, but the provider no longer serves it ({exc.code}: {exc.message})")


def _repoll_later(rt: Runtime, item: Item, iid: str, why: str) -> None:
    """The re-poll told nothing (provider down, task busy): ask again after a backoff."""
    due = rt.now() + retry_delay(item.dl_attempts + 1, rt.settings)
    rt.store.items.transition(iid, [DOWNLOADING], DOWNLOADING, timer=due,
                              fields={"last_error": why[:300]}, incr={"dl_attempts": 1})


def _fail(rt: Runtime, item: Item, iid: str, code: str, message: str) -> str:
    try:
        rt.output_storage(item.batch_id).discard_partial(object_key(item.batch_id, item.custom_id))
    except GenbatchError as exc:
        log.warning("could not clean up a partial download of %s: %s", iid, exc)
    return finish(rt, iid, [DOWNLOADING], ItemState.FAILED, code, message)


def _retry_until(rt: Runtime, item: Item) -> float:
    """Shortly before the URL expires: the margin, at most a tenth of the URL's lifetime."""
    expires = item.url_expires_at or rt.now()
    ttl = item.url_ttl_s or 0.0
    margin = min(rt.settings.download_expiry_margin_s / rt.settings.time_factor, ttl / 10)
    return expires - margin


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.split("?", 1)[0][:300]  # never echo a presigned query string
