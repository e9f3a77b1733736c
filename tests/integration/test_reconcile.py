"""Reconciliation on the real set-up (Redis, simulator, worker and scheduler processes): an
ambiguous submit whose task exists is adopted, one that created nothing is resubmitted once,
one with several candidates or on a provider without a task list stays ambiguous, and
`genbatch reconcile` reports the tasks no item owns. Nothing is paid twice."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from genbatch.client import Client
from genbatch.models import Counter, ItemState
from genbatch.simulator import SimProfile
from tests.integration.cluster import Cluster, running_cluster

pytestmark = pytest.mark.integration
MODEL = "seedance-v1.5-pro-i2v"
BASE = {"time_factor": 50.0, "latency_mean_s": 20.0, "seed": 9}
FAST = {"reconcile_settle_s": "20", "reconcile_every_s": "50", "submit_timeout_s": "2"}


def manifest(folder: Path, sim_url: str, provider: str, n: int, seeds: bool = False) -> Path:
    image = f"{sim_url}/_sim/assets/landscape.png"
    path = folder / f"{provider}.jsonl"
    path.write_text("".join(json.dumps({"custom_id": f"r{i}", "provider": provider,
                                        "prompt": "p", "image": image, "resolution": "480p",
                                        "duration": 5, **({"seed": 100 + i} if seeds else {})})
                            + "\n" for i in range(n)))
    return path


@contextmanager
def cluster(redis_url: str, folder: Path, settings: dict[str, str] | None = None,
            **profile: object) -> Iterator[Cluster]:
    with running_cluster(redis_url, folder, SimProfile.model_validate({**BASE, **profile}),
                         worker=True, scheduler=True,
                         **{**FAST, **(settings or {})}) as c:
        yield c


def set_profile(c: Cluster, **fields: object) -> None:
    httpx.put(f"{c.sim_url}/_sim/profile", json={**BASE, **fields},
              timeout=10).raise_for_status()


def items(c: Cluster, batch_id: str) -> list:  # type: ignore[type-arg]
    return list(c.store.items.of_batch(batch_id, c.store.batches.get(batch_id).total))


# WaveSpeed's list shows no seeds: one ambiguous submit at a time can be told apart. BytePlus
# shows them: three concurrent ones are, with the rows' seeds or, where the rows set none,
# with the seeds genbatch drew for them.
@pytest.mark.parametrize(("provider", "mode", "n", "seeds"), [
    ("wavespeed", "drop", 1, True), ("byteplus", "error", 3, True),
    ("byteplus", "drop", 3, False)])
def test_a_created_task_whose_answer_was_lost_is_adopted(
        redis_url: str, folder: Path, provider: str, mode: str, n: int, seeds: bool) -> None:
    with cluster(redis_url, folder, p_submit_timeout=1.0, submit_timeout_mode=mode) as c:
        batch_id = str(c.submit(manifest(folder, c.sim_url, provider, n, seeds=seeds),
                                provider=None, model=MODEL).batch_id)
        c.wait_until(lambda: sum(bool(i.get("adopted")) for i in items(c, batch_id)) == n,
                     what="every task adopted")
        set_profile(c)  # answers are no longer lost: nothing else changes
        batch = c.wait_batch(batch_id)
        assert batch.count(Counter.SUCCEEDED) == n and batch.count(Counter.AMBIGUOUS) == 0
        assert c.sim_stats()["submits"] == n  # created once each, paid once each
        assert batch.get("adopted") == str(n)
        for item in items(c, batch_id):
            history = json.loads(item["history"])
            assert history[-1]["note"].startswith("adopted task ")
            assert item.remote_id == item["adopted"]
        # The estimate counted as spent when each turned ambiguous is not counted again.
        assert int(batch["spent_micro"]) == pytest.approx(
            sum(float(i["cost"]) for i in items(c, batch_id)) * 1e6, abs=5)
        assert batch["reserved_micro"] == "0"


def test_a_submit_that_created_nothing_is_resubmitted_once(redis_url: str,
                                                           folder: Path) -> None:
    # A 5xx before the task is created: ambiguous to us, nothing at the provider.
    # (settling 8 s real: the simulator is fixed before the lists are read)
    with cluster(redis_url, folder, {"reconcile_settle_s": "400"}, p_5xx=1.0,
                 inject_on=["submit"]) as c:
        batch_id = str(c.submit(manifest(folder, c.sim_url, "wavespeed", 2), provider=None,
                                model=MODEL).batch_id)
        c.wait_until(lambda: c.store.batches.get(batch_id).count(Counter.AMBIGUOUS) == 2,
                     what="two ambiguous submits")
        assert c.sim_stats()["submits"] == 0
        set_profile(c)
        batch = c.wait_batch(batch_id)
        assert batch.count(Counter.SUCCEEDED) == 2
        assert batch["reconciled_resubmits"] == "2"
        assert c.sim_stats()["submits"] == 2
        assert all(i["reconciled"] == "resubmitted" for i in items(c, batch_id))


def test_several_candidates_stay_ambiguous_and_are_named(redis_url: str,
                                                        folder: Path) -> None:
    with cluster(redis_url, folder, p_submit_timeout=1.0, submit_timeout_mode="drop") as c:
        # Another client of the same account creates a task of the same model meanwhile.
        # (its answer is lost too: the simulator drops every submit's answer here)
        with pytest.raises(httpx.HTTPError):
            httpx.post(f"{c.sim_url}/api/v3/bytedance/seedance-v1.5-pro/image-to-video",
                       headers={"Authorization": "Bearer test-wavespeed-key"},
                       json={"prompt": "p", "image": "https://example.com/a.png"}, timeout=10)
        batch_id = str(c.submit(manifest(folder, c.sim_url, "wavespeed", 1), provider=None,
                                model=MODEL).batch_id)

        def named() -> bool:
            (item,) = items(c, batch_id)
            return "unowned tasks of this model" in item.get("error_message", "")

        c.wait_until(named, what="the candidates named")
        (item,) = items(c, batch_id)
        assert item.state is ItemState.AMBIGUOUS
        assert item["error_message"].count(",") >= 1  # two ids named


def test_novita_has_no_task_list_so_ambiguous_stays(redis_url: str, folder: Path) -> None:
    with cluster(redis_url, folder, p_submit_timeout=1.0, submit_timeout_mode="drop") as c:
        batch_id = str(c.submit(manifest(folder, c.sim_url, "novita", 1), provider=None,
                                model=MODEL).batch_id)
        c.wait_until(lambda: c.store.batches.get(batch_id).count(Counter.AMBIGUOUS) == 1,
                     what="an ambiguous submit")
        report = Client(c.settings).reconcile(batch_id)
        assert report.left == [(f"{batch_id}:1", "novita documents no task list")]
        assert report.adopted == [] and report.orphans == []


def stray_task(c: Cluster) -> str:
    """A task the BytePlus account creates that genbatch does not know of (as after a Redis
    restart that lost the write, or another job store on the same account)."""
    answer = httpx.post(f"{c.sim_url}/api/v3/contents/generations/tasks",
                        headers={"Authorization": "Bearer test-byteplus-key"},
                        json={"model": "seedance-1-5-pro-251215", "content": [
                            {"type": "text", "text": "p"},
                            {"type": "image_url", "image_url": {
                                "url": "https://example.com/a.png"}}],
                              "resolution": "480p", "duration": 5}, timeout=10)
    task: str = answer.json()["id"]
    return task


def test_reconcile_command_reports_tasks_no_item_owns(redis_url: str, folder: Path) -> None:
    margin = 3.0
    with cluster(redis_url, folder, {"reconcile_margin_s": str(margin)}) as c:
        batch_id = str(c.submit(manifest(folder, c.sim_url, "byteplus", 2), provider=None,
                                model=MODEL).batch_id)
        c.wait_until(lambda: all(i.submitted_at for i in items(c, batch_id)),
                     what="both submitted")
        during = stray_task(c)  # in the batch's time
        c.wait_batch(batch_id)
        # Days later, other job stores on the same account go on creating tasks: not this
        # batch's (the simulator's list shows whole seconds).
        last = max(i.submitted_at or 0.0 for i in items(c, batch_id))
        c.wait_until(lambda: time.time() > last + margin + 1.5, what="the margin passed")
        after = stray_task(c)
        report = Client(c.settings).reconcile(batch_id)
        assert report.orphans == [("byteplus", during)]
        assert after != during
        assert report.adopted == [] and report.resubmitted == [] and report.late == []
        assert report.span is not None and report.span[1] < time.time()
