"""Typed views of the job store's records: `Item` (one manifest line) and `Batch`.

Redis keeps a record as a hash of strings. The store parses each record once, when it reads
it, into one of these views; the rest of genbatch reads `item.state`, `item.polls`,
`batch.total` … instead of re-parsing strings where they are used. A view is still the
record itself (a `dict[str, str]`), so the output manifests can copy fields as stored and a
record prints and serialises as it is in Redis. Views are read-only snapshots: a change goes
through the store (`store.items.transition`, `store.batches.set_fields`), never through
the view.

The item schema (fields of `item:{bid}:{seq}`):
    batch, seq, line, custom_id     where the line came from (`batch` is the batch id)
    provider, model                 where it runs now (failover may change both)
    account                         the provider account it was dispatched to (its polls
                                    use that account's key; unset before the first dispatch
                                    = the provider's own account)
    state                           an `ItemState`
    req, row, est_cost              the normalised request (JSON), the original row (JSON
                                    or its text), the price estimate (USD)
    variant                         a variant's values (JSON object; producer/variants.py)
    attempts, polls, callbacks, dl_attempts, poll_errors, not_created   counters
    submit_started_at               when the current attempt's submit began
    remote_id, submitted_at, first_poll_s, queue_wait_s, typical_s, deadline, webhook,
    remote_status, progress, polled_at, poll_due   the remote task of the current attempt
                                    (queue_wait_s: the wait expected at a provider that
                                    queues, scaled; not generation time; wait_unknown: it
                                    queued behind others before any time was learned;
                                    learning: submitted before its model's time was learned,
                                    polled by its age until it is; list_polled: seen by the
                                    account's task list, its own polls a safety net)
    video_url, video_ttl, generated_at, cost, seed   what the finished task reported
    url_expires_at, url_ttl_s       when the video URL lapses, and its lifetime
    dl_repoll, dl_storage_error     the download must re-poll for a fresh URL first; the last
                                    attempt failed on storage ("1"), not on the URL
    url_repolls, storage_repolls    fresh URLs asked for, by cause
    reconciled                      what reconciling an ambiguous submit did
    possibly_paid_twice             why a Redis restart may have lost a submit of it
                                    (worker/recovery.py); counted in its batch's field
    hold, sending                   the guard the current attempt's record waited on, and
                                    when that wait ended (worker/durable.py)
    settle_closed_at                when its reconciliation window closed (final as ambiguous)
    late_task, late_found_at, late_how   a task found for it after that (worker/settling.py)
    output_uri, sha256, bytes       the stored video
    finished_at, error_code, error_message, last_error   how it ended / the last problem
    history, failed_over_from, failed_over_at, fallback_used   past attempts (store/history)
    takes                           videos generated for it: 1 + each redo of a rejected one
    reserved_micro                  the budget reservation it holds (micro-USD)
    submit_host, download_host      the host whose worker sent the current attempt's submit,
                                    and the one that stored its video (GENBATCH_HOSTNAME)
    parent, parent_seq, children    chains: a child's parent (custom_id, seq); a parent's
                                    children (seqs, comma separated)
    last_frame_url, last_frame      the provider's last-frame URL (BytePlus); the stored
                                    copy of the last frame its children start on
    input_frame                     a child's first frame as released to it (stored ref)

The batch schema: see `genbatch/store/__init__.py` and `BATCH_COUNTERS` in models.py.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from genbatch.models import (
    FINISHED_STATUSES,
    OPEN_COUNTERS,
    BatchStatus,
    Counter,
    GenerationRequest,
    ItemState,
)


def _int(value: str | None) -> int:
    try:
        return int(float(value)) if value else 0
    except ValueError:
        return 0


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _opt_int(value: str | None) -> int | None:
    """A count or a number the provider reported, None when missing (a seed of 0 is 0)."""
    number = _float(value)
    return int(number) if number is not None else None


def parse_state(value: str | None) -> ItemState | None:
    """A stored state as an ItemState (None when missing or not one)."""
    return ItemState(value) if value and value in ItemState._value2member_map_ else None


class Item(dict[str, str]):
    """An item record with its values parsed (see the module docstring for the fields)."""

    def __init__(self, record: Mapping[str, str]) -> None:
        super().__init__(record)
        get = record.get
        self.state: ItemState | None = parse_state(get("state"))
        self.batch_id = get("batch") or ""
        self.seq = _int(get("seq"))
        self.line = _int(get("line"))
        self.custom_id = get("custom_id") or ""
        self.provider = get("provider") or ""
        self.account = get("account") or self.provider
        self.model = get("model") or ""
        self.remote_id = get("remote_id") or ""
        self.attempts = _int(get("attempts"))
        self.polls = _int(get("polls"))
        self.dl_attempts = _int(get("dl_attempts"))
        self._read_task(get)
        self.video_url = get("video_url") or ""
        self.est_cost = _float(get("est_cost"))
        self.cost = _float(get("cost"))
        self.error_code = get("error_code") or ""
        self.error_message = get("error_message") or ""
        self.submit_started_at = _float(get("submit_started_at"))
        self.finished_at = _float(get("finished_at"))
        self.generated_at = _float(get("generated_at"))
        self.poll_due = _float(get("poll_due"))
        self.url_expires_at = _float(get("url_expires_at"))
        self.url_ttl_s = _float(get("url_ttl_s"))
        self.dl_repoll = bool(get("dl_repoll"))
        self.dl_storage_error = get("dl_storage_error") == "1"
        self.url_repolls = _int(get("url_repolls"))
        self.storage_repolls = _int(get("storage_repolls"))
        self.reconciled = get("reconciled") or ""
        # a Redis restart may have lost a submit of it (worker/recovery.py): why, or ""
        self.possibly_paid_twice = get("possibly_paid_twice") or ""
        # the guard the current attempt's record waited on, and when its wait ended (the
        # POST follows): an attempt without it never sent anything (worker/durable.py)
        self.hold = get("hold") or ""
        self.sending = _float(get("sending"))
        # When its reconciliation window closed (worker/settling.py), and a task found after.
        self.settle_closed_at = _float(get("settle_closed_at"))
        self.late_task = get("late_task") or ""
        # What an unverified callback claimed (worker/hints.py): a status, or an ambiguous
        # attempt's task id and that attempt's number.
        self.cb_status = get("cb_status") or ""
        self.cb_task = get("cb_task") or ""
        self.cb_attempt = _int(get("cb_attempt"))
        self.has_request = bool(get("req"))
        self.request_json = get("req") or "{}"
        self.row_text = get("row") or ""
        self.history_json = get("history") or "[]"
        self.client_ref = get("client_ref") or ""
        self._read_outcome(get)

    def _read_task(self, get: Callable[[str], str | None]) -> None:
        """The remote task of the current attempt: when it was sent and how it is polled."""
        self.submitted_at = _float(get("submitted_at"))
        self.polled_at = _float(get("polled_at"))
        self.progress = _float(get("progress"))
        self.first_poll_s = _float(get("first_poll_s"))
        self.queue_wait_s = _float(get("queue_wait_s")) or 0.0
        self.wait_unknown = bool(get("wait_unknown"))
        self.learning = bool(get("learning"))
        self.typical_s = _float(get("typical_s"))
        self.deadline = _float(get("deadline"))
        self.webhook = bool(get("webhook"))
        self.list_polled = bool(get("list_polled"))

    def _read_outcome(self, get: Callable[[str], str | None]) -> None:
        """What the item produced and where it sits in the creative workflow: its video,
        the hosts that served it, its chain, variant and takes."""
        self.output_uri = get("output_uri") or ""
        self.sha256 = get("sha256") or ""
        self.bytes = _opt_int(get("bytes"))
        self.seed = _opt_int(get("seed"))
        self.submit_host = get("submit_host") or ""
        self.download_host = get("download_host") or ""
        self.parent = get("parent") or ""
        self.parent_seq = _int(get("parent_seq"))
        self.children = [int(s) for s in (get("children") or "").split(",") if s]
        self.last_frame_url = get("last_frame_url") or ""
        self.last_frame = get("last_frame") or ""
        self.input_frame = get("input_frame") or ""
        self.variant_json = get("variant") or ""  # a variant's values (producer/variants.py)
        self.takes = max(1, _int(get("takes")))  # videos generated: 1 + redos (worker/redo.py)

    @classmethod
    def view(cls, record: Mapping[str, str]) -> Item:
        """`record` as an Item (itself when it already is one)."""
        return record if isinstance(record, Item) else cls(record)

    @property
    def id(self) -> str:
        return f"{self.batch_id}:{self.seq}"

    @functools.cached_property
    def request(self) -> GenerationRequest:
        """The normalised request (raises pydantic's ValidationError when unreadable)."""
        return GenerationRequest.model_validate_json(self.get("req") or "{}")

    @property
    def tier(self) -> str | None:
        """The request's service_tier, without validating the whole request."""
        tier = json.loads(self.get("req") or "{}").get("service_tier")
        return str(tier) if tier is not None else None

    @property
    def history(self) -> list[dict[str, Any]]:
        """The past attempts (store/history.py), oldest first."""
        past: list[dict[str, Any]] = json.loads(self.get("history") or "[]")
        return past


class Batch(dict[str, str]):
    """A batch record with its values parsed (status, counters, options, money)."""

    def __init__(self, record: Mapping[str, str]) -> None:
        super().__init__(record)
        get = record.get
        self.id = get("id") or ""
        status = get("status") or ""
        self.status: BatchStatus | None = (
            BatchStatus(status) if status in BatchStatus._value2member_map_ else None)
        self.total = _int(get("total"))
        self.created_at = _float(get("created_at"))
        self.finished_at = _float(get("finished_at"))
        self.cancel_requested = bool(get("cancel_requested"))
        self.fallback = get("fallback") or ""
        self.notify_url = get("notify_url") or ""
        self.priority = get("priority") or "normal"
        self.budget_usd = _float(get("budget_usd"))
        self.output_url = get("output_url") or ""  # submit --output: the batch's own folder
        # submit --provider / --model: the defaults for rows that name none
        self.default_provider = get("provider") or ""
        self.default_model = get("model") or ""

    @classmethod
    def view(cls, record: Mapping[str, str]) -> Batch:
        """`record` as a Batch (itself when it already is one)."""
        return record if isinstance(record, Batch) else cls(record)

    def count(self, counter: Counter) -> int:
        """One of the batch's counters (`total`, `pending`, `in_flight`, `succeeded`, …)."""
        return _int(self.get(counter))

    @property
    def open_items(self) -> int:
        """Items not yet in a terminal state."""
        return sum(self.count(c) for c in OPEN_COUNTERS)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES
