"""Which Redis server the job store last saw, and the restart it must recover from.

A restart (or a failover to a replica) gives Redis a new `run_id`. When the server before it
could have lost writes — its submit records had no guard (`worker/durable.py`) — the items
whose record was lost must be looked at before more work is dispatched
(`worker/recovery.py`). The first process to see the new run id records the restart; the
scheduler recovers from it; dispatch waits while one is being recovered from.

Keys (under the store's prefix):
    redis        hash: run_id, epoch (restarts seen), seen_at (the scheduler's last beat:
                 what survived of it bounds when the lost writes began), guard, covers
                 ("1": a lost record was never sent), durability (the line status shows)
    restart      hash: the last restart: epoch, at, lost_from, previous_run, guard,
                 covers, before (the old server's durability line), state (recovering |
                 recovered), flagged, unowned
    recovering   present while a restart is being recovered from: dispatch waits
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from genbatch.store.items import as_mapping


@dataclass(frozen=True, slots=True)
class Restart:
    """A restart seen by the job store (the `restart` hash)."""

    epoch: int
    at: float
    lost_from: float | None  # the last beat that survived; None: unknown
    covers: bool  # the old server's guard: a record it lost was never sent
    guard: str
    state: str
    flagged: int = 0
    unowned: int = 0
    before: str = ""  # the old server's durability line


    @classmethod
    def of(cls, rec: dict[str, str]) -> Restart:
        return cls(epoch=int(rec.get("epoch") or 0), at=float(rec.get("at") or 0),
                   lost_from=float(rec["lost_from"]) if rec.get("lost_from") else None,
                   covers=rec.get("covers") == "1", guard=rec.get("guard") or "",
                   state=rec.get("state") or "", flagged=int(rec.get("flagged") or 0),
                   unowned=int(rec.get("unowned") or 0), before=rec.get("before") or "")


class Restarts:
    def __init__(self, client: redis.Redis, prefix: str = "gb:") -> None:
        self.r = client
        self.key, self.last_key = f"{prefix}redis", f"{prefix}restart"
        self.fence_key = f"{prefix}recovering"

    def observe(self, run_id: str, now: float, guard: str, covers: bool,
                durability: str, *, promoted: bool = False) -> Restart | None:
        """Note the server's run id and guard; the restart when the run id differs from the one
        recorded (recorded once, by whichever process sees it first). The first run id a
        job store sees is only recorded: a store whose `redis` hash was itself lost (no
        append-only file) cannot tell. `promoted`: the new server is a replica that took
        over (a failover), which loses what it had not got, whatever the old one's guard."""
        with self.r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.key)  # type: ignore[no-untyped-call]
                seen: dict[str, str] = pipe.hgetall(self.key)  # type: ignore[assignment]
                pipe.multi()
                fields = {"run_id": run_id, "guard": guard, "covers": int(covers),
                          "durability": durability}
                restart = None
                if seen.get("run_id", run_id) != run_id:
                    restart = self._restart(pipe, seen, run_id, now, promoted)
                pipe.hset(self.key, mapping=as_mapping(fields))
                pipe.execute()
                return restart
            except redis.WatchError:
                return None  # another process recorded it

    def _restart(self, pipe: redis.client.Pipeline, seen: dict[str, str], run_id: str,
                 now: float, promoted: bool) -> Restart:
        epoch = int(seen.get("epoch") or 0) + 1
        rec = {"epoch": str(epoch), "at": repr(now), "lost_from": seen.get("seen_at", ""),
               "previous_run": seen.get("run_id", ""), "run_id": run_id,
               "guard": "failover" if promoted else seen.get("guard", ""),
               "covers": "0" if promoted else seen.get("covers", "0"),
               "before": seen.get("durability", ""),
               "state": "recovering", "flagged": "0", "unowned": "0"}
        pipe.hset(self.key, "epoch", epoch)
        pipe.delete(self.last_key)
        pipe.hset(self.last_key, mapping=as_mapping(rec))
        pipe.set(self.fence_key, epoch)
        return Restart.of(rec)

    def beat(self, now: float) -> None:
        """The scheduler is alive at `now` (after a restart, the last beat that survived
        tells when lost writes could have begun)."""
        self.r.hset(self.key, "seen_at", repr(now))

    def fenced(self) -> bool:
        """A restart is being recovered from: dispatch waits."""
        return bool(self.r.exists(self.fence_key))

    def last(self) -> Restart | None:
        rec: dict[str, str] = self.r.hgetall(self.last_key)  # type: ignore[assignment]
        return Restart.of(rec) if rec else None

    def run_id(self) -> str:
        """The run id of the server last seen ("" before one was)."""
        return str(self.r.hget(self.key, "run_id") or "")

    def durability(self) -> str:
        """The durability line the scheduler last recorded ("" before one ran)."""
        return str(self.r.hget(self.key, "durability") or "")

    def recovered(self, epoch: int, flagged: int, unowned: int) -> None:
        """Recovery from restart `epoch` is done: dispatch goes on."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.last_key, mapping={"state": "recovered", "flagged": flagged,
                                          "unowned": unowned})
        pipe.delete(self.fence_key)
        pipe.execute()
