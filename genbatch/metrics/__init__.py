"""Prometheus metrics, read from Redis when Prometheus scrapes.

What happens inside workers (provider 429s, limiter waits, download bytes and failures, spend)
is counted where it happens with HINCRBY/HINCRBYFLOAT into hashes `gb:metrics:<name>`, one
field per provider account, so every worker process on every machine contributes and the
process serving `/metrics` holds no state. Everything else (items by state, in flight, poll
lag, oldest open item, Celery queue lengths) is read from the job store on each scrape by
`StoreCollector`. Metrics that outlive a batch (items completed, requests by kind and status,
generation time and poll lag histograms) are in `metrics/outcomes.py`.

Recording never fails a task: a metric lost to a Redis hiccup is better than a retried step.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from genbatch.errors import StoreError
from genbatch.metrics import health, outcomes
from genbatch.metrics.outcomes import KIND_OF_METHOD as KIND_OF_METHOD
from genbatch.models import Counter
from genbatch.records import Item
from genbatch.store import COUNTERS, JobStore, budget

log = logging.getLogger(__name__)

# Celery's queues (lists in the broker Redis).
CELERY_QUEUES: tuple[str, ...] = ("genbatch.submit", "genbatch.poll", "genbatch.download",
                                  "genbatch.control")
MAX_TIMERS_SCANNED = 10_000  # open items looked at for the oldest-item gauges

KIND_LABELLED = frozenset({"genbatch_provider_429", "genbatch_limiter_waits"})
# Counter hashes: name -> (metric name, help). Fields are provider[:label].
COUNTERS_HELP: dict[str, tuple[str, str]] = {
    "provider_429": ("genbatch_provider_429", "HTTP 429 answers from a provider, by kind"),
    "limiter_waits": ("genbatch_limiter_waits", "times an account's limiter held work back, "
                      "by kind: submit (cooldown or submit rate) or poll (poll rate)"),
    "download_bytes": ("genbatch_download_bytes", "bytes of video stored"),
    "download_failures": ("genbatch_download_failures", "failed video download attempts"),
    "callback_disagreements": ("genbatch_callback_disagreements", "callbacks the provider's "
                               "own answer contradicts (or whose task it does not know); "
                               "they change nothing"),
    "spend_usd": ("genbatch_spend_usd", "cost of succeeded items (reported usage, else the "
                  "estimate)"),
    "spend_estimate_usd": ("genbatch_spend_estimate_usd", "estimated cost of the same "
                           "succeeded items"),
}


BATCH_MONEY_FIELDS: tuple[str, ...] = ("status", Counter.PENDING, "spent_micro", "spent_est_micro",
                                       "reserved_micro", "budget_usd", "budget_exhausted")
BATCH_MONEY_HELP: dict[str, str] = {
    "spent_usd": "what an active batch has spent (provider usage, else the estimate)",
    "spent_estimate_usd": "the estimate of the same items as spent_usd",
    "reserved_usd": "estimates reserved for an active batch's items in flight",
    "budget_usd": "an active batch's --budget (batches with one)",
    "budget_exhausted": "1 while a batch's budget holds its pending items back",
}


# -- recording (workers, scheduler) ----------------------------------------------------------
def count(store: JobStore, name: str, field: str, amount: float = 1) -> None:
    """Add `amount` to counter `name` for `field` (a provider, or provider:kind)."""
    with _best_effort(name):
        store.counters.add(name, field, amount)


def record_429(store: JobStore, provider: str, kind: str, batch_id: str = "") -> None:
    """A provider answered 429 to a `kind` ("submit" or "poll") request (for an item of
    `batch_id`: counted on the batch too, for its chart)."""
    with _best_effort("provider_429"):
        store.counters.add_for_batch("provider_429", f"{provider}:{kind}", batch_id,
                                     "rate_limited")


def record_completion(store: JobStore, iid: str, state: str) -> None:
    """Item `iid` reached the terminal `state` (read back for its provider and model)."""
    with _best_effort("items_completed"):
        outcomes.completion(store, store.items.get(iid), state)


def record_request(store: JobStore, provider: str, kind: str, status: int | None) -> None:
    with _best_effort("provider_requests"):
        outcomes.request(store, provider, kind, status)


def record_generation(store: JobStore, item: Item, now: float) -> None:
    with _best_effort("generation_seconds"):
        outcomes.generation(store, item, now)


def record_poll_lag(store: JobStore, item: Item, now: float) -> None:
    with _best_effort("item_poll_lag_seconds"):
        outcomes.poll_lag(store, item, now)


def record_limiter_wait(store: JobStore, provider: str, kind: str = "submit") -> None:
    count(store, "limiter_waits", f"{provider}:{kind}")


def record_download_failure(store: JobStore, provider: str) -> None:
    count(store, "download_failures", provider)


def record_success(store: JobStore, item: Item, size: int) -> None:
    """An item's video is stored: its bytes, and its spend against its estimate (overall per
    provider, and per batch in `gb:metrics:batch:<id>` for the dashboard)."""
    provider, batch = item.provider, item.batch_id
    cost, estimate = item.cost or 0.0, item.est_cost or 0.0
    with _best_effort("record_success"):
        store.counters.add_stored_video(provider, batch, size, cost, estimate)


def batch_spend(store: JobStore, batch_ids: Iterable[str]) -> dict[str, tuple[float, float]]:
    """(spend, estimate of the same items) in USD for each batch id."""
    ids = list(batch_ids)
    spend = store.counters.batch_spend(ids)
    return {bid: (_money(s), _money(e)) for bid, (s, e) in zip(ids, spend, strict=True)}


@contextlib.contextmanager
def _best_effort(what: str) -> Iterator[None]:
    try:
        yield
    except StoreError as exc:
        log.warning("metric %s not recorded: %s", what, exc)


def _money(value: Any) -> float:
    try:
        return float(value) if value not in (None, "") else 0.0
    except (TypeError, ValueError):
        return 0.0


# -- collecting (the metrics process) ----------------------------------------------------------
class StoreCollector(Collector):
    """Reads every genbatch metric from the job store on each scrape."""

    def __init__(self, store: JobStore, limits: Mapping[str, int],
                 clock: Callable[[], float] = time.time,
                 accounts: Mapping[str, Sequence[str]] | None = None) -> None:
        self.store = store
        self.limits = dict(limits)  # provider -> max in flight
        self.clock = clock
        # provider -> its models: every counter has a series for these from the start
        self.accounts = dict(accounts) if accounts is not None else dict.fromkeys(limits, ())

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        active = self.store.batches.active()
        yield from self._items_by_state(now, active)
        yield from self._batch_spend(active)
        yield from self._in_flight()
        yield from self._counters()
        yield from self._timers(now)
        yield from self._queues()
        yield from outcomes.collect(self.store, self.accounts)
        yield from health.collect(self.store, sorted(self.limits))

    def _items_by_state(self, now: float, ids: list[str]) -> Iterator[Metric]:
        rows = self.store.batches.fields(ids, ("created_at", *COUNTERS))
        totals = dict.fromkeys(COUNTERS, 0)
        per_batch = GaugeMetricFamily("genbatch_batch_items", "items of an active batch by state",
                                      labels=["batch", "state"])
        oldest = now
        for bid, (created, *values) in zip(ids, rows, strict=True):
            oldest = min(oldest, _money(created) or now)
            for state, value in zip(COUNTERS, values, strict=True):
                totals[state] += int(value or 0)
                per_batch.add_metric([bid, state], int(value or 0))
        items = GaugeMetricFamily("genbatch_items", "items of all active batches by state",
                                  labels=["state"])
        for state, n in totals.items():
            items.add_metric([state], n)
        yield items
        yield per_batch
        yield GaugeMetricFamily("genbatch_active_batches", "batches not yet completed",
                                value=len(ids))
        yield GaugeMetricFamily("genbatch_oldest_active_batch_age_seconds",
                                "age of the oldest batch not yet completed", value=now - oldest)

    def _batch_spend(self, ids: list[str]) -> Iterator[Metric]:
        """Spend of each active batch against its estimate and its budget (budget.summary)."""
        rows = self.store.batches.fields(ids, BATCH_MONEY_FIELDS)
        families = {name: GaugeMetricFamily(f"genbatch_batch_{name}", doc, labels=["batch"])
                    for name, doc in BATCH_MONEY_HELP.items()}
        for bid, values in zip(ids, rows, strict=True):
            money = budget.summary({f: v for f, v in zip(BATCH_MONEY_FIELDS, values,
                                                         strict=True) if v is not None})
            for name in ("spent_usd", "spent_estimate_usd", "reserved_usd"):
                families[name].add_metric([bid], money[name])
            if money["budget_usd"] is not None:
                families["budget_usd"].add_metric([bid], money["budget_usd"])
                families["budget_exhausted"].add_metric([bid], int(money["exhausted"]))
        yield from families.values()

    def _in_flight(self) -> Iterator[Metric]:
        providers = sorted(self.limits)
        values = self.store.queues.in_flight_counts(providers)
        in_flight = GaugeMetricFamily("genbatch_in_flight", "generations in flight per provider "
                                      "account", labels=["provider"])
        limit = GaugeMetricFamily("genbatch_in_flight_limit", "in-flight cap per provider "
                                  "account", labels=["provider"])
        for p, v in zip(providers, values, strict=True):
            in_flight.add_metric([p], v)
            limit.add_metric([p], self.limits[p])
        yield in_flight
        yield limit

    def _counters(self) -> Iterator[Metric]:
        counted = self.store.counters.read(list(COUNTERS_HELP))
        for (metric, doc), values in zip(COUNTERS_HELP.values(), counted, strict=True):
            labels = ["provider", "kind"] if metric in KIND_LABELLED else ["provider"]
            family = CounterMetricFamily(metric, doc, labels=labels)
            kinds = ("submit", "poll") if len(labels) == 2 else ("",)
            zero = {f"{p}:{k}".rstrip(":"): "0" for p in self.accounts for k in kinds}
            for field, value in sorted({**zero, **values}.items()):
                parts = field.split(":", 1) if len(labels) == 2 else [field]
                family.add_metric([*parts, ""][: len(labels)], float(value))
            yield family

    def _timers(self, now: float) -> Iterator[Metric]:
        oldest_due, n_due = self.store.monitor.timers_due(now)
        lag = now - oldest_due if oldest_due is not None else 0.0
        yield GaugeMetricFamily("genbatch_poll_lag_seconds", "now minus the oldest due timer "
                                "(poll, download or lease) not yet acted on", value=lag)
        yield GaugeMetricFamily("genbatch_timers_due", "timers due and not yet acted on",
                                value=n_due)
        age, left = self._oldest_open(now)
        yield GaugeMetricFamily("genbatch_oldest_open_item_age_seconds", "time since the oldest "
                                "open item was submitted", value=age)
        yield GaugeMetricFamily("genbatch_oldest_open_item_deadline_seconds", "time left before "
                                "the oldest open item's deadline (negative: overdue)", value=left)

    def _oldest_open(self, now: float) -> tuple[float, float]:
        started = [(float(s), _money(d))
                   for s, d in self.store.monitor.timed_item_starts(MAX_TIMERS_SCANNED) if s]
        if not started:
            return 0.0, 0.0
        submitted_at, deadline = min(started)
        return now - submitted_at, (deadline - now) if deadline else 0.0

    def _queues(self) -> Iterator[Metric]:
        lengths, unacked = self.store.monitor.celery_backlog(CELERY_QUEUES)
        family = GaugeMetricFamily("genbatch_queue_length", "messages waiting in a Celery queue",
                                   labels=["queue"])
        for q in CELERY_QUEUES:
            family.add_metric([q], lengths[q])
        yield family
        yield GaugeMetricFamily("genbatch_celery_unacked", "messages delivered to workers and "
                                "not yet acknowledged", value=unacked)


def registry(store: JobStore, limits: Mapping[str, int],
             accounts: Mapping[str, Sequence[str]] | None = None) -> CollectorRegistry:
    """A registry holding only the genbatch collector (no process metrics of the scraper)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StoreCollector(store, limits, accounts=accounts))
    return reg
