"""The Grafana dashboard in grafana/genbatch.json queries only metrics that /metrics serves."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from genbatch import metrics
from genbatch.config import Settings
from genbatch.console.dashboard import create_app
from genbatch.records import Item
from genbatch.store import JobStore
from tests.test_metrics import _url

DASHBOARD = Path(__file__).parents[1] / "grafana" / "genbatch.json"
METRIC = re.compile(r"\bgenbatch_[a-z0-9_]+")


def queried_metrics() -> set[str]:
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    return {name for p in panels for t in p["targets"] for name in METRIC.findall(t["expr"])}


def test_every_metric_the_grafana_dashboard_queries_is_served(store: JobStore) -> None:
    now = time.time()
    item = Item({"batch": "b", "seq": "1", "provider": "novita", "model": "m",
                 "submitted_at": repr(now - 5), "poll_due": repr(now - 1)})
    metrics.record_generation(store, item, now)  # histograms have samples after a first event
    metrics.record_poll_lag(store, item, now)
    with TestClient(create_app(Settings(redis_url=_url(store)), store=store)) as client:
        text = client.get("/metrics").text
    served = {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}

    queried = queried_metrics()
    assert len(queried) >= 20
    assert sorted(queried - served) == []


def test_panels_are_well_formed() -> None:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [p["id"] for p in dash["panels"]]

    assert len(ids) == len(set(ids)) and dash["uid"] == "genbatch"
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in dash["panels"])
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource"}
