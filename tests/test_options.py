"""Batch options (`submit --tier/--expires-after/--budget/--notify/--fallback/--priority`):
checked once with a clear message, stored on the batch, applied to rows as defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genbatch.console.views import batch_summary
from genbatch.errors import GenbatchError, ManifestRejected
from genbatch.producer.ingest import ingest_manifest
from genbatch.producer.options import BatchOptions
from genbatch.storage import open_storage
from genbatch.store import JobStore, item_id

HEADER = "custom_id,provider,prompt,image,service_tier\n"



@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tier": "slow"}, "--tier must be one of default, flex (got 'slow')"),
    ({"priority": "urgent"}, "--priority must be one of high, normal, low"),
    ({"expires_after": 60}, "--expires-after must be between 3600 and 259200 seconds (got 60)"),
    ({"expires_after": 345600}, "between 3600 and 259200"),
    ({"budget_usd": 0.0}, "--budget must be a positive amount"),
    ({"notify_url": "ftp://x"}, "--notify must be an http(s) URL"),
    ({"notify_url": "hooks.example.com"}, "--notify must be an http(s) URL"),
    ({"fallback": "byteplus"}, "--fallback must be PROVIDER:MODEL"),
    ({"fallback": "nosuchco:m"}, "unknown provider 'nosuchco'"),
    ({"fallback": "byteplus:nope"}, "--fallback byteplus:nope"),
])
def test_bad_options_are_one_clear_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(GenbatchError) as info:
        BatchOptions.build(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_flex_defaults_to_low_priority_unless_told() -> None:
    assert BatchOptions.build(tier="flex").priority == "low"
    assert BatchOptions.build(tier="flex", priority="high").priority == "high"
    assert BatchOptions.build(tier="default").priority == "normal"
    assert BatchOptions.build().priority == "normal"


def test_options_round_trip_through_the_batch_record() -> None:
    opts = BatchOptions.build(tier="flex", expires_after=7200, budget_usd=12.5,
                              notify_url="https://hooks.example.com/x",
                              fallback="byteplus:seedance-v1.5-pro-i2v")
    assert BatchOptions.from_meta(opts.meta()) == opts
    assert BatchOptions.from_meta({}) == BatchOptions()
    assert opts.row_defaults() == {"service_tier": "flex", "execution_expires_after": 7200}


def test_tier_applies_to_rows_without_one_and_is_stored(store: JobStore, folder: Path) -> None:
    path = folder / "m.csv"
    path.write_text(HEADER + "a,byteplus,p,images/sneaker.jpg,\n"
                    + "b,novita,p,images/bottle.png,default\n", encoding="utf-8")
    opts = BatchOptions.build(tier="flex", expires_after=7200)
    result = ingest_manifest(path, store=store, storage=open_storage(str(folder / "out")),
                             provider=None, model="seedance-v1.5-pro-i2v", options=opts)
    bid = str(result.batch_id)
    batch = store.batches.get(bid)
    assert (batch["tier"], batch["priority"], batch["expires_after"]) == ("flex", "low", "7200")
    summary = batch_summary(batch)  # what `status --json` shows
    assert (summary["tier"], summary["priority"], summary["expires_after"]) == (
        "flex", "low", 7200)
    first = json.loads(store.items.get(item_id(bid, 1))["req"])
    second = json.loads(store.items.get(item_id(bid, 2))["req"])
    assert (first["service_tier"], first["execution_expires_after"]) == ("flex", 7200)
    assert second["service_tier"] == "default"  # the row's own value wins


def test_flex_is_refused_row_by_row_on_wavespeed(store: JobStore, folder: Path) -> None:
    path = folder / "m.csv"
    path.write_text(HEADER + "a,byteplus,p,images/sneaker.jpg,\n"
                    + "w,wavespeed,p,https://example.com/a.jpg,\n", encoding="utf-8")
    with pytest.raises(ManifestRejected) as info:
        ingest_manifest(path, store=store, storage=open_storage(str(folder / "out")),
                        provider=None, model="seedance-v1.5-pro-i2v",
                        options=BatchOptions.build(tier="flex"))
    [problem] = info.value.errors
    assert (problem.line, problem.field) == (3, "service_tier")
    assert "wavespeed" in str(problem)
    assert store.batches.recent() == []  # nothing half-written
