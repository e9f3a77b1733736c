"""A Redis that fails over: the job store and the broker follow the primary that Sentinel
names (a real primary, replica and three Sentinels on loopback), and a submit's record is
acknowledged by a replica before its POST, or the item goes back to its queue unsent."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from genbatch.config import RedisTarget, Settings, load_settings
from genbatch.demo.redis_sentinel import SentinelSet, start_sentinel_set
from genbatch.errors import ConfigError
from genbatch.models import ItemState
from genbatch.store import JobStore
from genbatch.worker.app import broker
from genbatch.worker.durable import check_replicas
from genbatch.worker.steps import submit_item
from tests.test_hints import MockedRuntime
from tests.test_identifiable import dispatched
from tests.test_webhooks import settings

pytestmark = pytest.mark.integration


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    found = start_sentinel_set(tmp_path / "redis")
    yield found
    found.stop()


def test_sentinel_settings_are_checked_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^GENBATCH_REDIS_SENTINELS=10.0.0.1:26379,"
                       r"sentinel2: 'sentinel2' is not host:port"):
        load_settings(redis_sentinels="10.0.0.1:26379,sentinel2")
    with pytest.raises(ConfigError, match=r"^GENBATCH_REDIS_MIN_REPLICAS=two: must be auto"):
        load_settings(redis_min_replicas="two")
    target = load_settings(redis_sentinels=" s1:26379, s2:26380 ", redis_master_name="gb",
                           redis_url="redis://:urlpw@ignored:6379/3",
                           redis_sentinel_password="spw").redis_target()
    assert target == RedisTarget(url=None, sentinels=(("s1", 26379), ("s2", 26380)),
                                 master_name="gb", password="urlpw", sentinel_password="spw",
                                 db=3)
    assert "urlpw" not in target.describe() and "s2:26380" in target.describe()
    own = load_settings(redis_sentinels="s1:26379", redis_url="redis://:urlpw@x:6379/0",
                        redis_password="own").redis_target()
    assert own.password == "own"


def test_the_broker_asks_the_sentinels_with_both_passwords() -> None:
    url, options = broker(RedisTarget(url=None, sentinels=(("s1", 26379), ("s2", 26380)),
                                      master_name="gb", password="p@ss/word",
                                      sentinel_password="spw", db=2))
    assert url == ("sentinel://:p%40ss%2Fword@s1:26379/2;"
                   "sentinel://:p%40ss%2Fword@s2:26380/2")
    assert options == {"master_name": "gb", "sentinel_kwargs": {"password": "spw"}}
    assert broker(RedisTarget(url="redis://h:1/0")) == ("redis://h:1/0", {})


def status_stderr(sentinels: SentinelSet, workdir: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENBATCH_")}
    env.update({f"GENBATCH_{k.upper()}": v for k, v in sentinels.settings().items()})
    done = subprocess.run([sys.executable, "-m", "genbatch", "status"], env=env, cwd=workdir,
                          capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_the_store_follows_a_promoted_replica_and_status_names_it(
        sentinel_set: SentinelSet, tmp_path: Path) -> None:
    store = JobStore.from_target(sentinel_set.target())
    first = sentinel_set.primary_port()
    assert store.primary() == ("127.0.0.1", first)
    assert f"redis: primary 127.0.0.1:{first} (named 'genbatch'" in status_stderr(
        sentinel_set, tmp_path)
    # A replica is connected: auto asks for its acknowledgement, and it comes.
    store.debug.client.set("gb:test:record", "kept")
    assert store.server.connected_replicas_needed() == 1
    assert store.server.wait_durable(replicas=None)

    sentinel_set.kill_primary()
    promoted = sentinel_set.wait_promoted(first)

    # The same client, no restart: the acknowledged write is on the promoted replica.
    assert store.debug.client.get("gb:test:record") == "kept"
    assert store.primary() == ("127.0.0.1", promoted)
    assert f"redis: primary 127.0.0.1:{promoted} " in status_stderr(sentinel_set, tmp_path)


def test_more_replicas_than_connected_is_not_acknowledged(sentinel_set: SentinelSet) -> None:
    store = JobStore.from_target(sentinel_set.target())
    store.debug.client.set("gb:test:record", "1")
    assert store.server.wait_durable(timeout_ms=200, replicas=1)
    assert not store.server.wait_durable(timeout_ms=200, replicas=2)


def test_a_submit_not_acknowledged_goes_back_unsent(
        store: JobStore, redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The suite's Redis has no replica: asking for one, the record is never acknowledged,
    so nothing is POSTed and the item is pending again, counted as not created."""
    posts: list[httpx.Request] = []
    rt = MockedRuntime(settings(redis_url, webhook_base_url=None, redis_min_replicas="1"),
                       enqueue=lambda kind, ident: None)

    def answer(request: httpx.Request) -> httpx.Response:
        posts.append(request)
        return httpx.Response(200, json={"task_id": "t-1"})

    rt.handler = httpx.MockTransport(answer)
    iid = dispatched(store, "novita", {"prompt": "a cat",
                                       "image": "https://cdn.example.com/a.png"}, "unacked")
    with caplog.at_level(logging.WARNING, logger="genbatch.worker.steps"):
        assert submit_item(rt, iid) == "requeued"
    assert posts == []
    item = store.items.get(iid)
    assert item.state is ItemState.PENDING and item.attempts == 1
    assert "not confirmed in time" in caplog.text and "not sent" in caplog.text

    rt_auto = MockedRuntime(settings(redis_url, webhook_base_url=None),
                            enqueue=lambda kind, ident: None)
    assert rt_auto.store.server.connected_replicas_needed() == 0  # auto: none connected


def test_no_sentinel_answering_is_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENBATCH_")}
    env.update({"GENBATCH_REDIS_SENTINELS": "127.0.0.1:1,127.0.0.1:2",
                "GENBATCH_REDIS_PASSWORD": "secret-not-shown"})
    done = subprocess.run([sys.executable, "-m", "genbatch", "status"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "no Sentinel of GENBATCH_REDIS_SENTINELS names a primary 'mymaster'" in line
    assert "connecting to 127.0.0.1:2" in line and "secret-not-shown" not in line


def test_a_worker_warns_when_records_reach_no_replica(store: JobStore, redis_url: str,
                                                     sentinel_set: SentinelSet) -> None:
    """The suite's Redis has no replica: asking for one means no submit goes out; with
    Sentinels, auto with none connected means records are not copied. The set's primary has
    its replica: no warning."""
    lone = Settings(redis_url=redis_url, redis_min_replicas="1")
    assert "no submit goes out" in str(check_replicas(store, lone))
    assert check_replicas(store, Settings(redis_url=redis_url)) is None  # one Redis, auto
    replicated = JobStore.from_target(sentinel_set.target())
    with_set = Settings(**sentinel_set.settings())  # type: ignore[arg-type]
    assert check_replicas(replicated, with_set) is None
    as_if_alone = Settings(redis_url=redis_url, redis_sentinels="127.0.0.1:1")
    assert "no replica connected" in str(check_replicas(store, as_if_alone))
