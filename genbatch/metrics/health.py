"""Account health and process heartbeats as Prometheus gauges (docs/operating/accounts.md).

    genbatch_account_state{provider,state}          1 for the account's state, 0 for the others
    genbatch_account_failures{provider,class}       consecutive failures of each class
    genbatch_workers_alive                          workers with a live heartbeat
    genbatch_workers_with_key{provider}             of those, the ones holding that key
    genbatch_scheduler_alive                        1 while a scheduler leader beats
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric

from genbatch.store import JobStore
from genbatch.store.health import CLASSES, STATES


def collect(store: JobStore, accounts: Sequence[str]) -> Iterator[Metric]:
    state = GaugeMetricFamily("genbatch_account_state", "1 for a provider account's health "
                              "state (ok, degraded, paused)", labels=["provider", "state"])
    failures = GaugeMetricFamily("genbatch_account_failures", "consecutive failures of a "
                                 "provider account, by class", labels=["provider", "class"])
    for health in store.health.get_many(accounts):
        for name in STATES:
            state.add_metric([health.account, name], int(health.state == name))
        for cls in CLASSES:
            failures.add_metric([health.account, cls], health.failures.get(cls, 0))
    yield state
    yield failures
    workers = store.heartbeats.workers()
    yield GaugeMetricFamily("genbatch_workers_alive", "workers with a live heartbeat",
                            value=len(workers))
    holders = GaugeMetricFamily("genbatch_workers_with_key", "live workers holding a provider's "
                                "API key", labels=["provider"])
    for account in accounts:
        holders.add_metric([account], sum(account in w.keys for w in workers))
    yield holders
    yield GaugeMetricFamily("genbatch_scheduler_alive", "1 while a scheduler leader beats",
                            value=int(store.heartbeats.scheduler() is not None))
