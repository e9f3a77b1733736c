"""Metrics that outlive a batch: items completed, requests to providers by kind and HTTP
status, and histograms of generation time and poll lag, per provider and model.

Workers record each event into the store's counter hashes (`store/counters.py`; fields are
label values joined by `|`); `collect` turns them into metric families on each scrape,
zero-initialised for every configured account so `rate()` and alerts work before the first
event. Wall-clock seconds throughout (with GENBATCH_TIME_FACTOR > 1 against the simulator,
generations are that much shorter).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from genbatch.models import TERMINAL_STATES

if TYPE_CHECKING:
    from genbatch.records import Item
    from genbatch.store import JobStore

# What a worker asks a provider: POST a task, GET its status, DELETE it (BytePlus cancel),
# GET the finished video from the provider's CDN. (No adapter lists tasks or uploads files:
# images travel inside the submit as URLs or data URIs.)
REQUEST_KINDS: tuple[str, ...] = ("submit", "poll", "cancel", "download")
KIND_OF_METHOD: dict[str, str] = {"POST": "submit", "GET": "poll", "DELETE": "cancel"}
ZERO_STATUSES: tuple[str, ...] = ("200", "429")  # series present from the start
COMPLETED_STATES: tuple[str, ...] = tuple(sorted(TERMINAL_STATES))

GENERATION_BUCKETS: tuple[float, ...] = (
    1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800, 3600, 14400, 86400)
POLL_LAG_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800)
HISTOGRAMS: dict[str, tuple[str, tuple[float, ...]]] = {
    "generation_seconds": ("seconds from a submit accepted to the provider reporting the "
                           "video ready (as a poll or callback saw it)", GENERATION_BUCKETS),
    "item_poll_lag_seconds": ("seconds a poll ran after it was due (scheduler tick, poll "
                              "budget and queue wait)", POLL_LAG_BUCKETS),
}


# -- recording (workers) -----------------------------------------------------------------------
def completion(store: JobStore, item: Item, state: str) -> None:
    """`item` reached the terminal `state`."""
    store.counters.add("items_completed", f"{item.provider}|{item.model}|{state}")


def request(store: JobStore, provider: str, kind: str, status: int | None) -> None:
    """One HTTP request of `kind` to `provider`: its status code, None when no answer came
    (connect error, timeout, dropped connection)."""
    store.counters.add("provider_requests",
                       f"{provider}|{kind}|{status if status is not None else 'error'}")


def generation(store: JobStore, item: Item, now: float) -> None:
    """The provider reported `item`'s video ready at `now` (first time for this attempt)."""
    if item.submitted_at is not None and not item.dl_attempts:
        _observe(store, "generation_seconds", item, now - item.submitted_at)


def poll_lag(store: JobStore, item: Item, now: float) -> None:
    """A poll of `item` starts at `now`; it was due at the item's `poll_due`."""
    if item.poll_due:
        _observe(store, "item_poll_lag_seconds", item, max(0.0, now - item.poll_due))


def _observe(store: JobStore, name: str, item: Item, value: float) -> None:
    store.counters.observe(name, f"{item.provider}|{item.model}", value, HISTOGRAMS[name][1])


# -- collecting --------------------------------------------------------------------------------
def collect(store: JobStore, accounts: Mapping[str, Sequence[str]]) -> Iterator[Metric]:
    """The families above; `accounts` maps each configured provider account to its models."""
    completed, requests = store.counters.read(["items_completed", "provider_requests"])
    zero_completed = {f"{p}|{m}|{s}": "0" for p, models in accounts.items() for m in models
                      for s in COMPLETED_STATES}
    zero_requests = {f"{p}|{k}|{s}": "0" for p in accounts for k in REQUEST_KINDS
                     for s in ZERO_STATUSES}
    yield _counter("genbatch_items_completed", "items that reached a terminal state (a "
                   "retried item counts again)", ["provider", "model", "state"],
                   {**zero_completed, **completed})
    yield _counter("genbatch_provider_requests", "HTTP requests to a provider by kind "
                   "(submit, poll, cancel, download) and status code (`error`: no answer)",
                   ["provider", "kind", "status"], {**zero_requests, **requests})
    hashes = store.counters.read_histograms(list(HISTOGRAMS))
    for (name, (doc, bounds)), fields in zip(HISTOGRAMS.items(), hashes, strict=True):
        yield _histogram(f"genbatch_{name}", doc, bounds, fields)


def _counter(name: str, doc: str, labels: list[str], values: Mapping[str, str]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=labels)
    for field, value in sorted(values.items()):
        parts = field.split("|")
        if len(parts) == len(labels):
            family.add_metric(parts, float(value))
    return family


def _histogram(name: str, doc: str, bounds: Sequence[float],
               fields: Mapping[str, str]) -> Metric:
    """Bucket fields count observations in their bucket only; Prometheus wants them
    cumulative, with `+Inf` equal to the count."""
    family = HistogramMetricFamily(name, doc, labels=["provider", "model"])
    label_sets = sorted({f.rsplit("|", 1)[0] for f in fields})
    for labels in label_sets:
        running, buckets = 0.0, []
        for le in [*(repr(float(b)) for b in bounds), "+Inf"]:
            running += float(fields.get(f"{labels}|{le}", 0))
            buckets.append((le, running))
        family.add_metric(labels.split("|"), buckets,
                          sum_value=float(fields.get(f"{labels}|sum", 0)))
    return family
