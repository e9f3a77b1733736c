"""Heartbeats of the running processes, so a batch that waits can say "no worker running".

Keys (under the store's prefix), each with a TTL a few beats long, so a process that died
disappears on its own:
    hb:worker:{name}   JSON: {"name", "queues": [...], "keys": [provider names whose API key
                       the worker holds — names only, never a value], "pid", "host", "at"}
    hb:scheduler       JSON: {"name", "pid", "host", "at"} of the leader
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis


@dataclass(frozen=True, slots=True)
class Beat:
    """One process's last heartbeat."""

    name: str
    at: float
    pid: int = 0
    host: str = ""
    queues: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()  # accounts whose API key the process holds (names only)
    providers: tuple[str, ...] = ()  # providers it holds a key of at least one account of


class Heartbeats:
    """Write and read heartbeats."""

    def __init__(self, client: redis.Redis, prefix: str = "gb:") -> None:
        self.r = client
        self.prefix = prefix

    def beat_worker(self, beat: Beat, ttl_s: float) -> None:
        self.r.set(f"{self.prefix}hb:worker:{beat.name}", _dump(beat), px=int(ttl_s * 1000))

    def beat_scheduler(self, beat: Beat, ttl_s: float) -> None:
        self.r.set(f"{self.prefix}hb:scheduler", _dump(beat), px=int(ttl_s * 1000))

    def stop_worker(self, name: str) -> None:
        self.r.delete(f"{self.prefix}hb:worker:{name}")

    def workers(self) -> list[Beat]:
        """Every worker alive now (heartbeat not expired), by name."""
        keys = sorted(self.r.scan_iter(match=f"{self.prefix}hb:worker:*", count=200))
        if not keys:
            return []
        values = self.r.mget(keys)
        return [_load(str(v)) for v in values if v]

    def scheduler(self) -> Beat | None:
        value = self.r.get(f"{self.prefix}hb:scheduler")
        return _load(str(value)) if value else None


def _dump(beat: Beat) -> str:
    return json.dumps({"name": beat.name, "at": beat.at, "pid": beat.pid, "host": beat.host,
                       "queues": list(beat.queues), "keys": list(beat.keys),
                       "providers": list(beat.providers)})


def _load(text: str) -> Beat:
    data = json.loads(text)
    return Beat(name=str(data.get("name", "")), at=float(data.get("at") or 0),
                pid=int(data.get("pid") or 0), host=str(data.get("host", "")),
                queues=tuple(data.get("queues") or ()), keys=tuple(data.get("keys") or ()),
                providers=tuple(data.get("providers") or data.get("keys") or ()))
