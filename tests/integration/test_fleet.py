"""A fleet: workers on three hosts against one Redis, two schedulers. Mid-batch, every worker
of one host is SIGKILLed at once and the scheduler leader is SIGKILLed; nothing may be lost
or paid twice, and the batch's page and `genbatch status --json` name the hosts that served
it.

A "host" is a set of worker processes with its own working folder and process groups
(killed together, as a machine that dies), and, where the machine lets a test make
namespaces (`unshare -nu`; `-r` when not root), its own network and hostname: its workers
see only their own loopback, where relays (tests/integration/netns.py) offer the Redis and
simulator ports of the machine and nothing else. Hosts A and B are named by
GENBATCH_HOSTNAME; host C only by its hostname (or, without namespaces, its Celery node name
`w0@host-c`), the defaults a fleet relies on. What a fleet shares is Redis and the storage
(docs/operating/deploy.md, "Workers on several hosts"); that is all these hosts share.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from genbatch.simulator import SimProfile, running_simulator
from tests.integration import netns
from tests.integration.cluster import Cluster
from tests.integration.netns import MachinePorts
from tests.integration.test_observability import free_port, wait_http

pytestmark = pytest.mark.integration
JOBS = 60
HOSTS = {"host-a": 1, "host-b": 2, "host-c": 1}  # worker processes per host
DOOMED = "host-b"
PROVIDERS = [("novita", "seedance-v1.5-pro-i2v"), ("byteplus", "seedance-v1.5-pro-i2v"),
             ("wavespeed", "seedance-v1.5-pro-i2v")]
# About 2 s of real time per generation: items are in flight on every host when one dies.
PROFILE = {"time_factor": 50.0, "latency_mean_s": 100.0, "latency_sigma": 0.3, "seed": 11,
           "queue_delay_s": 0.0}


def manifest(folder: Path, sim_url: str) -> Path:
    image = f"{sim_url}/_sim/assets/landscape.png"
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps({
        "custom_id": f"fleet-{i:03d}", "provider": PROVIDERS[i % len(PROVIDERS)][0],
        "model": PROVIDERS[i % len(PROVIDERS)][1], "prompt": f"fleet {i}", "image": image,
        "resolution": "480p", "duration": 5, "seed": i}) + "\n" for i in range(JOBS)))
    return path


def start_fleet(cluster: Cluster, tmp_path: Path, relays: MachinePorts | None) -> None:
    """Each host's workers in the host's own folder (and namespaces) under its own name;
    two schedulers on the machine."""
    for host, workers in HOSTS.items():
        home = tmp_path / host
        home.mkdir()
        prefix = netns.host_argv(host, relays.folder, relays.ports) if relays else ()
        named = {} if host == "host-c" else {"hostname": host}  # C: by its own name
        node = "%h" if relays else host
        for n in range(workers):
            cluster.start(f"{host}-worker{n}", "worker", "--hostname", f"w{n}@{node}",
                          cwd=home, prefix=prefix, **named)
    for n in range(2):
        cluster.start(f"scheduler{n}", "scheduler")


def machine_ports(cluster: Cluster) -> MachinePorts | contextlib.nullcontext[None]:
    """Relays to Redis and the simulator for hosts in namespaces, when there can be any."""
    ports = [urlparse(cluster.redis_url).port, urlparse(cluster.sim_url).port]
    return MachinePorts([p for p in ports if p]) if netns.available() else \
        contextlib.nullcontext()


def done(cluster: Cluster, batch_id: str) -> int:
    batch = cluster.store.batches.get(batch_id)
    return sum(int(batch.get(k) or 0)
               for k in ("succeeded", "failed", "expired", "cancelled", "ambiguous"))


def kill_host(cluster: Cluster, host: str) -> None:
    """Every worker process of `host` SIGKILLed at the same instant (its supervisor too)."""
    procs = [cluster.procs.pop(n) for n in list(cluster.procs) if n.startswith(host)]
    for proc in procs:
        os.killpg(proc.pid, signal.SIGKILL)
    for proc in procs:
        proc.wait(10)


def leader_pid(cluster: Cluster) -> int:
    beat = cluster.store.heartbeats.scheduler()  # the leader beats at its first tick
    return beat.pid if beat else 0


def kill_leader(cluster: Cluster) -> None:
    """SIGKILL the scheduler that leads now (its heartbeat names its pid); wait until the
    other one leads instead."""
    cluster.wait_until(lambda: leader_pid(cluster) != 0, 30, "a scheduler leader")
    leader = next(n for n, p in cluster.procs.items() if p.pid == leader_pid(cluster))
    cluster.stop(leader, signal.SIGKILL)
    survivor = next(p.pid for n, p in cluster.procs.items() if n.startswith("scheduler"))
    cluster.wait_until(lambda: leader_pid(cluster) == survivor, 60, "the other scheduler to lead")


def read_jsonl(uri: str) -> list[dict[str, Any]]:
    text = Path(urlparse(uri).path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line]


def test_a_host_and_the_leader_die_nothing_lost_nothing_paid_twice(redis_url: str,
                                                                   tmp_path: Path) -> None:
    with running_simulator(SimProfile.model_validate(PROFILE)) as sim_url:
        quotas = {f"{p}_{op}_rpm": "60000" for p, _ in PROVIDERS for op in ("submit", "poll")}
        limits = {f"{p}_max_in_flight": "12" for p, _ in PROVIDERS}
        cluster = Cluster(redis_url, sim_url, tmp_path, worker_concurrency="4",
                          log_level="WARNING", task_lease_s="8", **quotas, **limits)
        with machine_ports(cluster) as relays:
            run_fleet(cluster, tmp_path, sim_url, relays)


def run_fleet(cluster: Cluster, tmp_path: Path, sim_url: str,
              relays: MachinePorts | None) -> None:
    try:
        start_fleet(cluster, tmp_path, relays)
        batch_id = str(cluster.submit(manifest(tmp_path, sim_url), provider=None,
                                      model=None).batch_id)
        # When host B has submitted some and the batch is well under way: B dies, then
        # the leader.
        cluster.wait_until(lambda: cluster.store.batches.served_by(batch_id).get(
            DOOMED, {}).get("submits", 0) >= 3 and done(cluster, batch_id) >= JOBS // 5,
            120, "host B at work")
        kill_host(cluster, DOOMED)
        assert done(cluster, batch_id) < JOBS  # mid-batch
        kill_leader(cluster)
        batch = cluster.wait_batch(batch_id, timeout=240)
        check_outcome(cluster, batch_id, batch)
        check_pages(cluster, batch_id)
    finally:
        cluster.stop_all()


def check_outcome(cluster: Cluster, batch_id: str, batch: dict[str, str]) -> None:
    """Every line ends once; every created task is stored or reported ambiguous; none is
    created twice; hosts' counts add up to what happened."""
    stats = cluster.sim_stats()
    results, errors = read_jsonl(batch["results_jsonl"]), read_jsonl(batch["errors_jsonl"])
    placed = Counter([r["custom_id"] for r in results] + [e["custom_id"] for e in errors])
    expected = {f"fleet-{i:03d}" for i in range(JOBS)}
    assert set(placed) == expected and max(placed.values()) == 1, placed  # nothing lost
    paid_twice = sum(n - 1 for n in stats["submits_by_fingerprint"].values() if n > 1)
    assert paid_twice == 0
    # Killed mid-submit, an item is reported ambiguous (never resubmitted on a guess);
    # at most as many as host B had submits running (2 workers x 4 threads).
    ambiguous = [e for e in errors if e["status"] == "ambiguous"]
    assert len(ambiguous) <= 8 and len(results) + len(ambiguous) == JOBS, Counter(
        f"{e['status']}/{e['error_code']}" for e in errors)
    stored = {r["remote_task_id"] for r in results}
    assert len(stats["videos"]) - len(stored & set(stats["videos"])) <= len(ambiguous)
    assert stats["submits"] <= len(results) + len(ambiguous)  # no task made beside them
    served = cluster.store.batches.served_by(batch_id)
    assert set(served) == set(HOSTS), served
    assert all(served[h].get("submits", 0) > 0 for h in HOSTS), served
    assert sum(s.get("downloads", 0) for s in served.values()) == len(results)
    assert len(results) <= sum(s.get("submits", 0) for s in served.values()) <= stats["submits"]
    print(f"\nfleet: namespaces={'yes' if netns.available() else 'no'} jobs={JOBS} "
          f"succeeded={len(results)} ambiguous={len(ambiguous)} "
          f"tasks_created={stats['submits']} paid_twice={paid_twice} served_by={served}")
    hosts_of_items = Counter(it.download_host for it in cluster.store.items.of_batch(
        batch_id, JOBS) if it.download_host)
    assert hosts_of_items == Counter({h: s["downloads"] for h, s in served.items()
                                      if s.get("downloads")})


def check_pages(cluster: Cluster, batch_id: str) -> None:
    """The batch page and `genbatch status --json` list the hosts."""
    served = cluster.store.batches.served_by(batch_id)
    status = subprocess.run([sys.executable, "-m", "genbatch", "status", batch_id, "--json"],
                            env=cluster.env, capture_output=True, text=True, timeout=60,
                            check=True)
    assert json.loads(status.stdout)["served_by"] == served
    shown = subprocess.run([sys.executable, "-m", "genbatch", "status", batch_id],
                           env=cluster.env | {"COLUMNS": "250"}, capture_output=True, text=True,
                           timeout=60, check=True).stdout
    line = next(ln for ln in shown.splitlines() if ln.startswith("served by"))
    assert all(f"{host} {steps.get('submits', 0)} submitted" in line
               for host, steps in served.items()), shown
    port = free_port()
    cluster.start("dashboard", "dashboard", "--port", str(port))
    page = wait_http(f"http://127.0.0.1:{port}/batches/{batch_id}").text
    line = page.split('id="served-by"', 1)[1].split("</p>", 1)[0]
    for host, steps in served.items():
        assert f"{host} {steps.get('submits', 0)} submitted" in line, line
    api = httpx.get(f"http://127.0.0.1:{port}/api/batches/{batch_id}", timeout=10).json()
    assert api["served_by"] == served


PROBE = """
import socket, sys
print(socket.gethostname())
for port in map(int, sys.argv[1:]):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        print(port, "open")
    except OSError:
        print(port, "closed")
"""


@pytest.mark.skipif(not netns.available(), reason="no namespaces here (unshare -nu fails)")
def test_a_host_in_namespaces_reaches_only_the_ports_it_is_given(redis_url: str) -> None:
    given, other = urlparse(redis_url).port, free_port()
    assert given
    with socket.socket() as listening:  # a port of the machine the host is not given
        listening.bind(("127.0.0.1", other))
        listening.listen()
        with MachinePorts([given]) as relays:
            seen = subprocess.run(
                [*netns.host_argv("host-z", relays.folder, relays.ports), sys.executable, "-c",
                 PROBE, str(given), str(other)], capture_output=True, text=True, timeout=30)
    assert seen.stdout.split("\n")[:3] == ["host-z", f"{given} open", f"{other} closed"], seen
